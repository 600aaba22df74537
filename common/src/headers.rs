//! Names of the headers that carry identity between the tiers.
//!
//! The gateway removes every name in [`CLIENT_IDENTITY_HEADERS`] from each client request before it
//! sets its own, so no client can choose the identity the task service sees.

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
