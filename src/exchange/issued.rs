//! What a token service issued, checked before it is used: the answer's labels, the token
//! (signed by an issuer the verifier trusts), and that it names the same end user as the token
//! it replaces. Shared by the [`Exchange`](super::Exchange) policy and the
//! [`Propagator`](crate::Propagator).

use std::time::SystemTime;

use crate::error::{Error, ErrorKind, Result, quote};
use crate::exchange::{ACCESS_TOKEN_TYPE, ExchangeRequest, IssuedToken, JWT_TOKEN_TYPE};
use crate::verify::context::AuthContext;
use crate::verify::verifier::Verifier;

/// Whom the issued token is for.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Recipient<'a> {
    /// This service: it must verify as any token consumed here.
    Here,
    /// The next hop: it must name one of these audiences (any, when empty) instead of ours.
    NextHop(&'a [String]),
}

/// Checks `issued`, the answer to `request`, which exchanged `original`'s token, and returns
/// the issued token's verified context: labels first ([`check_labels`]), then the token with
/// `verifier` as of `now`, then its subject ([`check_subject`]).
pub(crate) async fn verify_issued(
    verifier: &Verifier,
    request: &ExchangeRequest,
    issued: &IssuedToken,
    original: &AuthContext,
    recipient: Recipient<'_>,
    now: SystemTime,
) -> Result<AuthContext> {
    check_labels(request, issued)?;
    let token = &issued.access_token;
    let fresh = match recipient {
        Recipient::Here => verifier.verify_at(token, now).await?,
        Recipient::NextHop(audiences) => verifier.verify_for(token, audiences, now).await?,
    };
    check_subject(original, &fresh)?;
    Ok(fresh)
}

/// `token_type` is `Bearer` or `N_A` (any case: RFC 6749 §5.1, RFC 8693 §2.2.1), and
/// `issued_token_type`, when the server gave it, is the type asked for (an access token or a
/// JWT when none was). RFC 8693 requires `issued_token_type`, but some servers leave it out;
/// the token is verified either way.
fn check_labels(request: &ExchangeRequest, issued: &IssuedToken) -> Result<()> {
    let usage = issued.token_type.as_str();
    if !usage.eq_ignore_ascii_case("Bearer") && !usage.eq_ignore_ascii_case("N_A") {
        return Err(Error::new(
            ErrorKind::ExchangeWrongTokenType,
            format!(
                "the token service issued a token of token_type {}; only `Bearer` and `N_A` tokens are used",
                quote(usage)
            ),
        ));
    }
    let Some(kind) = issued.issued_token_type.as_deref() else {
        return Ok(());
    };
    let expected = match request.requested_token_type.as_deref() {
        Some(wanted) => kind == wanted,
        None => kind == ACCESS_TOKEN_TYPE || kind == JWT_TOKEN_TYPE,
    };
    if expected {
        return Ok(());
    }
    let wanted = request
        .requested_token_type
        .as_deref()
        .map_or_else(|| format!("`{ACCESS_TOKEN_TYPE}` or `{JWT_TOKEN_TYPE}`"), quote);
    Err(Error::new(
        ErrorKind::ExchangeWrongTokenType,
        format!(
            "the token service issued a token of type {}, not {wanted}",
            quote(kind)
        ),
    ))
}

/// The issued token names the same end user (`sub`) as the one it replaces. A subject is
/// never written into the message: it identifies a person.
fn check_subject(original: &AuthContext, fresh: &AuthContext) -> Result<()> {
    let Some(subject) = original.subject() else {
        return Err(Error::new(
            ErrorKind::ExchangeWrongSubject,
            "the token given to the token service has no `sub`, so the token it issued cannot be shown \
             to be for the same user",
        ));
    };
    if fresh.subject() == Some(subject) {
        return Ok(());
    }
    let which = if fresh.subject().is_some() {
        "another subject"
    } else {
        "no subject"
    };
    Err(Error::new(
        ErrorKind::ExchangeWrongSubject,
        format!(
            "the token service (issuer `{}`) issued a token for {which}, not for the subject of the token it \
             was given (issuer `{}`)",
            fresh.issuer(),
            original.issuer()
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(token_type: &str, issued_token_type: Option<&str>) -> IssuedToken {
        IssuedToken {
            access_token: "a.b.c".into(),
            issued_token_type: issued_token_type.map(str::to_owned),
            token_type: token_type.into(),
            expires_in: None,
            scope: None,
        }
    }

    #[test]
    fn labels_are_bearer_or_n_a_and_the_type_asked_for() {
        let plain = ExchangeRequest::new("t");
        let jwt = ExchangeRequest::new("t").requested_token_type(JWT_TOKEN_TYPE);
        let ok = |request: &ExchangeRequest, token_type, issued| {
            check_labels(request, &answer(token_type, issued))
        };
        assert!(ok(&plain, "Bearer", Some(ACCESS_TOKEN_TYPE)).is_ok());
        assert!(ok(&plain, "bearer", Some(JWT_TOKEN_TYPE)).is_ok());
        assert!(ok(&plain, "N_A", None).is_ok(), "left out: the token decides");
        assert!(ok(&plain, "n_a", Some(ACCESS_TOKEN_TYPE)).is_ok());
        assert!(ok(&jwt, "Bearer", Some(JWT_TOKEN_TYPE)).is_ok());

        let refused = [
            ok(&plain, "DPoP", Some(ACCESS_TOKEN_TYPE)),
            ok(&plain, "mac", None),
            ok(
                &plain,
                "Bearer",
                Some("urn:ietf:params:oauth:token-type:refresh_token"),
            ),
            ok(
                &plain,
                "Bearer",
                Some("urn:ietf:params:oauth:token-type:id_token"),
            ),
            ok(&jwt, "Bearer", Some(ACCESS_TOKEN_TYPE)),
        ];
        for error in refused.into_iter().map(|r| r.expect_err("refused")) {
            assert_eq!(error.kind(), ErrorKind::ExchangeWrongTokenType, "{error}");
            assert_eq!(error.class(), crate::ErrorClass::Permanent);
            assert!(!error.message().contains("a.b.c"), "{error}");
        }
        let error = ok(
            &plain,
            "Bearer",
            Some("urn:ietf:params:oauth:token-type:refresh_token"),
        )
        .unwrap_err();
        assert!(
            error
                .message()
                .contains("`urn:ietf:params:oauth:token-type:refresh_token`"),
            "{error}"
        );
    }
}
