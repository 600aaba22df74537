//! Oracles for the parsers that face the network, shared by the property tests
//! (`tests/it/properties.rs`) and the cargo-fuzz targets (`fuzz/`, which include this file by path):
//! each runs one parser on arbitrary input and panics if what it accepted breaks a promise of the
//! contract. They depend only on `gateway`, `common`, `http`, `pingora` and `tokio`, so the fuzz
//! crate can build them.

use std::sync::Arc;

use common::assertion::{AssertedRequest, AssertionVerifier, SigningSecret, sign};
use common::config::Env;
use common::config::GATEWAY_SIGNING_SECRET;
use gateway::authorize::{MAX_AUTHORIZATION_BYTES, bearer_token};
use gateway::config::BETTER_AUTH_SECRET;
use gateway::metrics::Metrics;
use gateway::path::{check_target, match_route};
use gateway::token::Verifier;
use gateway::token::cache::TokenCache;
use http::Method;
use pingora::http::RequestHeader;

/// The HS256 secret the token oracle verifies with.
pub const ORACLE_HMAC_SECRET: &str = "oracle-better-auth-secret-0123456789abcdef";
/// The assertion secret of the assertion oracle.
pub const ORACLE_SIGNING_SECRET: &str = "oracle-signing-secret-0123456789abcdef";

/// The bytes that the `%XX` escapes of `segment` stand for; `None` when an escape is broken.
pub fn escaped_bytes(segment: &str) -> Option<Vec<u8>> {
    let bytes = segment.as_bytes();
    let mut escaped = Vec::new();
    let mut index = 0;
    while let Some(offset) = bytes[index..].iter().position(|&b| b == b'%') {
        let at = index + offset;
        let hex = std::str::from_utf8(bytes.get(at + 1..at + 3)?).ok()?;
        escaped.push(u8::from_str_radix(hex, 16).ok()?);
        index = at + 3;
    }
    Some(escaped)
}

/// Runs the canonical path check on `raw` and, when it accepts, checks that what is forwarded
/// can be read only one way: printable ASCII, a suffix of the input in origin-form, no empty,
/// `.`/`..` or `;` segment, no escape that decodes to a separator, a dot or a control byte, and a
/// routed `{user_id}` that decodes to itself. Returns whether the target was accepted.
pub fn path_check(raw: &[u8]) -> bool {
    let Ok(target) = check_target(raw) else {
        return false;
    };
    let origin = target.origin_form;
    assert!(origin.starts_with('/'), "not origin-form: {origin:?}");
    assert!(raw.ends_with(origin.as_bytes()), "not a suffix: {origin:?}");
    assert!(
        origin
            .bytes()
            .all(|b| (0x21..0x7f).contains(&b) && b != b'\\'),
        "forbidden byte forwarded: {origin:?}"
    );
    assert!(origin.starts_with(target.path), "path is not the prefix");
    if target.path != "/" {
        for segment in target.path[1..].split('/') {
            assert!(!segment.is_empty(), "empty segment in {origin:?}");
            assert!(!matches!(segment, "." | ".."), "dot segment in {origin:?}");
            assert!(!segment.contains(';'), "parameter in {origin:?}");
            let escaped = escaped_bytes(segment).expect("accepted escapes decode");
            assert!(
                !escaped
                    .iter()
                    .any(|b| matches!(b, b'/' | b'\\' | b'.') || b.is_ascii_control()),
                "escape decodes to a separator, dot or control byte in {origin:?}"
            );
        }
    }
    for method in [
        Method::GET,
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::PATCH,
    ] {
        if let Ok(route) = match_route(&method, &target) {
            assert_eq!(target.segments().nth(1), Some(route.user_id));
            assert_eq!(
                escaped_bytes(route.user_id),
                Some(Vec::new()),
                "user id changes when decoded: {origin:?}"
            );
            assert!(target.path.starts_with("/api/"));
        }
    }
    true
}

/// The bearer front end and the verifier behind it, with an HS256 secret and no JWKS.
pub struct TokenFrontEnd {
    verifier: Verifier,
    runtime: tokio::runtime::Runtime,
}

impl TokenFrontEnd {
    pub fn new() -> Self {
        let env = Env::from_pairs([
            (GATEWAY_SIGNING_SECRET, ORACLE_SIGNING_SECRET),
            (BETTER_AUTH_SECRET, ORACLE_HMAC_SECRET),
        ]);
        let config = gateway::Config::from_env(&env).expect("oracle configuration");
        let metrics = Arc::new(Metrics::new().expect("metrics"));
        Self {
            verifier: Verifier::new(&config.tokens, None, TokenCache::new(0), metrics),
            runtime: tokio::runtime::Builder::new_current_thread()
                .build()
                .expect("runtime"),
        }
    }

    /// Feeds `values` as `Authorization` headers. Whatever `bearer_token` extracts must be a
    /// b64token inside the one header, at most 8 KiB; and since the input was not signed with
    /// the secret, the verifier must refuse it. Returns the extracted token, if any.
    pub fn check(&self, values: &[&[u8]]) -> Option<String> {
        let mut request = RequestHeader::build("GET", b"/api/alice/tasks", None).expect("head");
        for value in values {
            let Ok(value) = http::HeaderValue::from_bytes(value) else {
                return None;
            };
            request
                .append_header(http::header::AUTHORIZATION, value)
                .expect("header");
        }
        let token = bearer_token(&request).ok()?;
        assert_eq!(values.len(), 1, "a token was taken from several headers");
        assert!(values[0].len() <= MAX_AUTHORIZATION_BYTES);
        assert!(
            std::str::from_utf8(values[0]).is_ok_and(|value| value.ends_with(token)),
            "token is not the end of the header"
        );
        assert!(!token.is_empty());
        assert!(
            token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._~+/=".contains(&b))
        );
        let verdict = self.runtime.block_on(self.verifier.verify_uncached(token));
        assert!(verdict.is_err(), "an unsigned input verified: {token:?}");
        Some(token.to_owned())
    }

    /// Verifies `token` as the gateway would (without the cache).
    pub fn verify(&self, token: &str) -> bool {
        self.runtime
            .block_on(self.verifier.verify_uncached(token))
            .is_ok()
    }
}

impl Default for TokenFrontEnd {
    fn default() -> Self {
        Self::new()
    }
}

/// The assertion verifier with [`ORACLE_SIGNING_SECRET`].
pub fn assertion_verifier() -> AssertionVerifier {
    AssertionVerifier::new(
        SigningSecret::new(ORACLE_SIGNING_SECRET).expect("secret"),
        None,
    )
}

/// An arbitrary header never verifies unless it is exactly the signature of this request at a
/// time within the window; a genuine one verifies for exactly the request it was made for.
pub fn assertion(header: &str, method: &str, path: &str, user: &str, now: u64) {
    let verifier = assertion_verifier();
    let secret = SigningSecret::new(ORACLE_SIGNING_SECRET).expect("secret");
    let request = AssertedRequest {
        method,
        path_and_query: path,
        user_id: user,
    };
    if verifier.verify(header, &request, now).is_ok() {
        let time = header
            .strip_prefix("t=")
            .and_then(|rest| rest.split_once(','))
            .and_then(|(time, _)| time.parse::<u64>().ok())
            .expect("an accepted header has a time");
        assert_eq!(
            header,
            sign(&secret, time, &request),
            "forged header passed"
        );
    }
    let genuine = sign(&secret, now, &request);
    assert_eq!(verifier.verify(&genuine, &request, now), Ok(()));
    let other_user = format!("{user}x");
    let other = AssertedRequest {
        user_id: &other_user,
        ..request
    };
    assert!(verifier.verify(&genuine, &other, now).is_err());
}
