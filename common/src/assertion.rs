//! The gateway assertion: how the task service knows a request came through the gateway.
//!
//! The gateway verifies the caller's JWT, then signs a short-lived statement binding the verified
//! user id to this exact request (method, path with query) and the current time, with
//! `GATEWAY_SIGNING_SECRET`. The header value looks like a webhook signature:
//!
//! ```text
//! t=1767225600,v1=5f2b…(64 hex digits)
//! ```
//!
//! where `v1` is HMAC-SHA256 over `t`, the method, the path with query and the user id, joined by
//! `\n`. A newline cannot occur in any of the four parts (the gateway rejects control bytes in
//! paths, and header values cannot hold one), so the signed message is unambiguous even when a
//! user id or a path contains dots.
//!
//! The task service accepts an assertion only if it is at most [`MAX_AGE`] old, not from the future
//! beyond [`MAX_CLOCK_SKEW`], and signed with the current secret or, during a rotation, the previous
//! one. The comparison is constant-time.

use std::fmt;

use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// How old an assertion may be when it reaches the task service, in seconds.
pub const MAX_AGE: u64 = 30;
/// How far in the future an assertion's time may be (clock drift between hosts), in seconds.
pub const MAX_CLOCK_SKEW: u64 = 5;
/// The shortest secret accepted, in bytes.
pub const MIN_SECRET_BYTES: usize = 32;
/// Longer header values are refused before parsing.
const MAX_HEADER_LEN: usize = 128;

/// A secret that signs or verifies assertions. Never printed.
#[derive(Clone)]
pub struct SigningSecret(SecretString);

impl fmt::Debug for SigningSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningSecret([REDACTED])")
    }
}

/// Why a secret was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("must be at least {MIN_SECRET_BYTES} bytes long (got {0})")]
    TooShort(usize),
}

impl SigningSecret {
    /// Accepts a secret of at least [`MIN_SECRET_BYTES`] bytes.
    pub fn new(secret: impl Into<String>) -> Result<Self, SecretError> {
        let secret: String = secret.into();
        if secret.len() < MIN_SECRET_BYTES {
            return Err(SecretError::TooShort(secret.len()));
        }
        Ok(Self(SecretString::from(secret)))
    }

    fn mac(&self, unix_time: u64, request: &AssertedRequest<'_>) -> HmacSha256 {
        // HMAC accepts keys of any length, so this cannot fail.
        let mut mac = HmacSha256::new_from_slice(self.0.expose_secret().as_bytes())
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(unix_time.to_string().as_bytes());
        for part in [request.method, request.path_and_query, request.user_id] {
            mac.update(b"\n");
            mac.update(part.as_bytes());
        }
        mac
    }
}

/// What an assertion binds: the verified user and the exact request it was made for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AssertedRequest<'a> {
    /// The HTTP method, upper case as sent (`GET`, `POST`, …).
    pub method: &'a str,
    /// The request target as forwarded: path, and `?query` when there is one.
    pub path_and_query: &'a str,
    /// The verified user id (the token's `sub`).
    pub user_id: &'a str,
}

/// Signs an assertion for `request` at `unix_time`: the value of the
/// [`GATEWAY_ASSERTION`](crate::headers::GATEWAY_ASSERTION) header.
pub fn sign(secret: &SigningSecret, unix_time: u64, request: &AssertedRequest<'_>) -> String {
    let tag = secret.mac(unix_time, request).finalize().into_bytes();
    format!("t={unix_time},v1={}", hex::encode(tag))
}

/// Why an assertion was refused. The task service answers all of them with the same 401, and logs
/// the reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AssertionError {
    #[error("assertion is malformed")]
    Malformed,
    #[error("assertion has expired")]
    Expired,
    #[error("assertion is dated in the future")]
    FromTheFuture,
    #[error("assertion signature does not match")]
    BadSignature,
}

/// Checks assertions against the current secret and, during a rotation, the previous one.
#[derive(Debug, Clone)]
pub struct AssertionVerifier {
    current: SigningSecret,
    previous: Option<SigningSecret>,
}

impl AssertionVerifier {
    pub fn new(current: SigningSecret, previous: Option<SigningSecret>) -> Self {
        Self { current, previous }
    }

    /// Accepts `header` only if it is well formed, fresh at `now_unix`, and signed over exactly
    /// `request` with a known secret.
    pub fn verify(
        &self,
        header: &str,
        request: &AssertedRequest<'_>,
        now_unix: u64,
    ) -> Result<(), AssertionError> {
        let (issued_at, tag) = parse(header)?;
        if issued_at > now_unix.saturating_add(MAX_CLOCK_SKEW) {
            return Err(AssertionError::FromTheFuture);
        }
        if now_unix.saturating_sub(issued_at) > MAX_AGE {
            return Err(AssertionError::Expired);
        }
        let matches = |secret: &SigningSecret| {
            // `verify_slice` compares in constant time.
            secret.mac(issued_at, request).verify_slice(&tag).is_ok()
        };
        if matches(&self.current) || self.previous.as_ref().is_some_and(matches) {
            Ok(())
        } else {
            Err(AssertionError::BadSignature)
        }
    }
}

/// Splits `t=<decimal>,v1=<64 hex>` into its time and tag; anything else is malformed.
fn parse(header: &str) -> Result<(u64, [u8; 32]), AssertionError> {
    if header.len() > MAX_HEADER_LEN {
        return Err(AssertionError::Malformed);
    }
    let (t_part, v1_part) = header.split_once(',').ok_or(AssertionError::Malformed)?;
    let time = t_part.strip_prefix("t=").ok_or(AssertionError::Malformed)?;
    let tag_hex = v1_part
        .strip_prefix("v1=")
        .ok_or(AssertionError::Malformed)?;
    if time.is_empty() || time.len() > 19 || !time.bytes().all(|b| b.is_ascii_digit()) {
        return Err(AssertionError::Malformed);
    }
    let issued_at = time.parse().map_err(|_| AssertionError::Malformed)?;
    let mut tag = [0u8; 32];
    hex::decode_to_slice(tag_hex, &mut tag).map_err(|_| AssertionError::Malformed)?;
    Ok((issued_at, tag))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn secret(fill: char) -> SigningSecret {
        SigningSecret::new(fill.to_string().repeat(40)).expect("long enough")
    }

    const REQUEST: AssertedRequest<'static> = AssertedRequest {
        method: "GET",
        path_and_query: "/api/alice/tasks?status=all",
        user_id: "alice",
    };
    const NOW: u64 = 1_767_225_600;

    #[test]
    fn short_secret_is_refused() {
        assert_eq!(
            SigningSecret::new("x".repeat(31)).map(|_| ()),
            Err(SecretError::TooShort(31))
        );
    }

    #[test]
    fn debug_never_shows_the_secret() {
        assert!(!format!("{:?}", secret('k')).contains("kkkk"));
    }

    #[test]
    fn fresh_assertion_for_the_same_request_verifies() {
        let verifier = AssertionVerifier::new(secret('a'), None);
        let header = sign(&secret('a'), NOW, &REQUEST);
        assert_eq!(verifier.verify(&header, &REQUEST, NOW + MAX_AGE), Ok(()));
    }

    #[test]
    fn previous_secret_verifies_during_rotation() {
        let verifier = AssertionVerifier::new(secret('b'), Some(secret('a')));
        let header = sign(&secret('a'), NOW, &REQUEST);
        assert_eq!(verifier.verify(&header, &REQUEST, NOW), Ok(()));
    }

    #[test]
    fn wrong_secret_is_refused() {
        let verifier = AssertionVerifier::new(secret('a'), Some(secret('b')));
        let header = sign(&secret('c'), NOW, &REQUEST);
        assert_eq!(
            verifier.verify(&header, &REQUEST, NOW),
            Err(AssertionError::BadSignature)
        );
    }

    #[test]
    fn old_and_future_assertions_are_refused() {
        let verifier = AssertionVerifier::new(secret('a'), None);
        let header = sign(&secret('a'), NOW, &REQUEST);
        assert_eq!(
            verifier.verify(&header, &REQUEST, NOW + MAX_AGE + 1),
            Err(AssertionError::Expired)
        );
        assert_eq!(
            verifier.verify(&header, &REQUEST, NOW - MAX_CLOCK_SKEW - 1),
            Err(AssertionError::FromTheFuture)
        );
    }

    #[test]
    fn assertion_for_another_method_path_or_user_is_refused() {
        let verifier = AssertionVerifier::new(secret('a'), None);
        let header = sign(&secret('a'), NOW, &REQUEST);
        let others = [
            AssertedRequest {
                method: "DELETE",
                ..REQUEST
            },
            AssertedRequest {
                path_and_query: "/api/alice/tasks?status=completed",
                ..REQUEST
            },
            AssertedRequest {
                user_id: "mallory",
                ..REQUEST
            },
        ];
        for other in others {
            assert_eq!(
                verifier.verify(&header, &other, NOW),
                Err(AssertionError::BadSignature),
                "{other:?}"
            );
        }
    }

    #[test]
    fn dots_cannot_shift_bytes_between_path_and_user() {
        let verifier = AssertionVerifier::new(secret('a'), None);
        let one = AssertedRequest {
            method: "GET",
            path_and_query: "/a.b",
            user_id: "c",
        };
        let other = AssertedRequest {
            method: "GET",
            path_and_query: "/a",
            user_id: "b.c",
        };
        let header = sign(&secret('a'), NOW, &one);
        assert_eq!(
            verifier.verify(&header, &other, NOW),
            Err(AssertionError::BadSignature)
        );
    }

    #[test]
    fn malformed_headers_are_refused() {
        let verifier = AssertionVerifier::new(secret('a'), None);
        let good = sign(&secret('a'), NOW, &REQUEST);
        let tag = good.split_once(",v1=").map(|(_, t)| t).unwrap_or_default();
        for bad in [
            String::new(),
            "t=,v1=".to_owned(),
            format!("v1={tag},t={NOW}"),
            format!("t=+{NOW},v1={tag}"),
            format!("t={NOW},v1={}", &tag[..63]),
            format!("t={NOW},v1={tag}00"),
            format!("t={NOW},v1={tag},v1={tag}"),
            format!("t={NOW} ,v1={tag}"),
            format!("t=99999999999999999999,v1={tag}"),
        ] {
            assert_eq!(
                verifier.verify(&bad, &REQUEST, NOW),
                Err(AssertionError::Malformed),
                "{bad:?}"
            );
        }
    }

    proptest! {
        #[test]
        fn arbitrary_headers_never_verify_or_panic(header in ".{0,200}") {
            let verifier = AssertionVerifier::new(secret('a'), None);
            prop_assert!(verifier.verify(&header, &REQUEST, NOW).is_err());
        }

        #[test]
        fn any_request_round_trips(
            method in "[A-Z]{1,7}",
            path in "/[!-~]{0,80}",
            user in "[!-~]{1,64}",
            t in 0u64..4_000_000_000,
        ) {
            let request = AssertedRequest { method: &method, path_and_query: &path, user_id: &user };
            let verifier = AssertionVerifier::new(secret('a'), None);
            prop_assert_eq!(verifier.verify(&sign(&secret('a'), t, &request), &request, t), Ok(()));
        }
    }
}
