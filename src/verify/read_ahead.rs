//! Which waiting messages a consumer verifies ahead of their turn.

use crate::carrier::Extractor;
use crate::verify::verifier::Verifier;

/// While this many messages in a row found their token already verified, only one in this
/// many looks.
const IDLE_STRIDE: u32 = 16;

/// What a consumer holds to verify the tokens of the messages it has read but not handled yet
/// ([`Verifier::verify_ahead`]). Every waiting message is looked at while they carry tokens not
/// verified yet; once their tokens are found verified already (a stream sharing one token),
/// only one message in 16 is, so that such a stream pays next to nothing for it. A token missed
/// that way is verified in its message's turn, as without reading ahead.
#[derive(Debug, Clone)]
pub struct ReadAhead {
    verifier: Verifier,
    /// Messages looked at or skipped since one last started a verification.
    idle: u32,
}

impl ReadAhead {
    /// Reads ahead for `verifier`.
    pub fn new(verifier: Verifier) -> Self {
        ReadAhead { verifier, idle: 0 }
    }

    /// Offers a waiting message's headers; `true` if its token's verification started.
    pub fn offer(&mut self, headers: &dyn Extractor) -> bool {
        let look = self.idle < IDLE_STRIDE || self.idle.is_multiple_of(IDLE_STRIDE);
        if look && self.verifier.verify_ahead(headers) {
            self.idle = 0;
            return true;
        }
        self.idle = self.idle.wrapping_add(1).max(1);
        false
    }
}
