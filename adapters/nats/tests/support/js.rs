//! A JetStream work stream with its dead-letter stream, per test, and a
//! handler that records what it saw.

use std::sync::{Arc, Mutex};

use async_nats::jetstream::{self, stream::StorageType};
use jwt_relay::Acceptance;
use jwt_relay_nats::{Received, Topology, async_nats};

use super::unique;
/// A work stream `<S>` on `<s>.*` with its dead-letter stream, deleted by
/// [`Setup::delete`].
pub struct Setup {
    pub js: jetstream::Context,
    pub topology: Topology,
    pub declared: jwt_relay_nats::Declared,
    /// The subject prefix: messages go to `<prefix>.<something>`.
    pub prefix: String,
}

impl Setup {
    pub async fn new(client: async_nats::Client) -> Setup {
        let js = jetstream::new(client);
        let prefix = unique("js");
        let topology =
            Topology::new(prefix.to_uppercase(), [format!("{prefix}.*")]).storage(StorageType::Memory);
        let declared = topology.declare(&js).await.expect("the topology is declared");
        Setup {
            js,
            topology,
            declared,
            prefix,
        }
    }

    pub fn subject(&self, name: &str) -> String {
        format!("{}.{name}", self.prefix)
    }

    pub async fn delete(self) {
        self.topology
            .delete(&self.js)
            .await
            .expect("the streams are deleted");
    }
}

pub type Seen = Arc<Mutex<Vec<(Option<String>, Acceptance, String)>>>;

/// A handler recording (subject, acceptance, x-id) and succeeding.
pub fn recorder(
    seen: &Seen,
) -> impl Fn(Received) -> std::future::Ready<Result<(), String>> + Send + Sync + 'static {
    let seen = seen.clone();
    move |d: Received| {
        let id = d
            .headers()
            .and_then(|h| h.get("x-id"))
            .map(|v| v.as_str().to_owned())
            .unwrap_or_default();
        seen.lock().unwrap().push((
            d.context().subject().map(str::to_owned),
            d.context().acceptance(),
            id,
        ));
        std::future::ready(Ok(()))
    }
}
