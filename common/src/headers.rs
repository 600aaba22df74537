//! Names of the headers that carry identity between the tiers, and the rules both tiers apply to
//! a header that must appear once.
//!
//! The gateway removes every name in [`CLIENT_IDENTITY_HEADERS`] from each client request before it
//! sets its own, so no client can choose the identity the task service sees.

use http::header::AsHeaderName;
use http::{HeaderMap, HeaderValue};

/// The verified subject (`sub`) of the caller's token.
pub const USER_ID: &str = "x-user-id";
/// The verified email of the caller, when the token carries one.
pub const USER_EMAIL: &str = "x-user-email";
/// The gateway's signed assertion over the request; see [`crate::assertion`].
pub const GATEWAY_ASSERTION: &str = "x-gateway-assertion";
/// A per-request identifier: kept when the client sends a well-formed one, generated otherwise,
/// forwarded upstream and returned to the client.
pub const REQUEST_ID: &str = "x-request-id";

/// Every header that some proxy, framework or identity-aware backend treats as an identity claim.
/// The gateway strips all of them (in any letter case, every duplicate) on every request.
pub const CLIENT_IDENTITY_HEADERS: &[&str] = &[
    USER_ID,
    USER_EMAIL,
    GATEWAY_ASSERTION,
    "x-user",
    "x-user-name",
    "x-user-roles",
    "x-forwarded-user",
    "x-forwarded-email",
    "x-forwarded-preferred-username",
    "x-forwarded-groups",
    "x-forwarded-access-token",
    "x-auth-request-user",
    "x-auth-request-email",
    "x-auth-request-preferred-username",
    "x-auth-request-groups",
    "x-auth-request-access-token",
    "x-auth-user",
    "x-authenticated-user",
    "x-authenticated-userid",
    "x-remote-user",
    "remote-user",
    "x-consumer-id",
    "x-consumer-username",
    "x-jwt-payload",
    "x-jwt-claims",
];

/// The value of a header that must appear exactly once: `None` when it is missing or repeated,
/// so that a second copy can never override (or be overridden by) the first.
pub fn single_value(headers: &HeaderMap, name: impl AsHeaderName) -> Option<&HeaderValue> {
    let mut values = headers.get_all(name).iter();
    match (values.next(), values.next()) {
        (Some(value), None) => Some(value),
        _ => None,
    }
}

/// The longest client-chosen request id either tier keeps.
pub const MAX_REQUEST_ID_LEN: usize = 128;

/// Whether a received [`REQUEST_ID`] may be kept: 1 to [`MAX_REQUEST_ID_LEN`] characters of
/// `[A-Za-z0-9._-]`, which is safe to forward, return to the client and write in a log line.
/// Anything else is replaced by a fresh UUID.
pub fn is_well_formed_request_id(id: &[u8]) -> bool {
    (1..=MAX_REQUEST_ID_LEN).contains(&id.len())
        && id
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// The id of a request: its one well-formed [`REQUEST_ID`] when it has one, a new UUID otherwise.
/// It is forwarded upstream, returned to the client and written in the access log, so it must be
/// safe in all three places.
pub fn request_id(headers: &HeaderMap) -> String {
    single_value(headers, REQUEST_ID)
        .filter(|value| is_well_formed_request_id(value.as_bytes()))
        .and_then(|value| value.to_str().ok())
        .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_ids(ids: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for id in ids {
            headers.append(REQUEST_ID, HeaderValue::from_str(id).expect("header value"));
        }
        headers
    }

    #[test]
    fn a_header_counts_only_when_it_appears_once() {
        assert_eq!(
            single_value(&with_ids(&["a"]), REQUEST_ID).map(HeaderValue::as_bytes),
            Some(&b"a"[..])
        );
        assert_eq!(single_value(&with_ids(&[]), REQUEST_ID), None);
        assert_eq!(single_value(&with_ids(&["a", "a"]), REQUEST_ID), None);
    }

    #[test]
    fn a_well_formed_client_id_is_kept() {
        assert_eq!(request_id(&with_ids(&["abc-123_x.y"])), "abc-123_x.y");
    }

    #[test]
    fn other_ids_are_replaced_by_a_uuid() {
        let long = "a".repeat(MAX_REQUEST_ID_LEN + 1);
        for ids in [
            &[][..],
            &["has space"],
            &["inject\"quote"],
            &[long.as_str()],
            &["a", "b"],
            &[""],
        ] {
            let id = request_id(&with_ids(ids));
            assert!(uuid::Uuid::parse_str(&id).is_ok(), "{ids:?} gave {id}");
        }
    }
}
