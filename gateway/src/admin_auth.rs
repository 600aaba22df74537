//! The admin API's credential: `Authorization: Bearer <GATEWAY_ADMIN_TOKEN>`.
//!
//! Both sides are hashed with SHA-256 and the digests compared in constant time, so neither the
//! token's bytes nor its length can be learnt from response times.

use http::HeaderMap;
use http::header::AUTHORIZATION;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Whether `headers` carry exactly one `Authorization: Bearer <expected>`.
pub fn is_admin(headers: &HeaderMap, expected: &SecretString) -> bool {
    let Some(value) = common::headers::single_value(headers, AUTHORIZATION) else {
        return false;
    };
    let Some((scheme, token)) = value.to_str().ok().and_then(|value| value.split_once(' ')) else {
        return false;
    };
    let presented = Sha256::digest(token.trim_start_matches(' ').as_bytes());
    let expected = Sha256::digest(expected.expose_secret().as_bytes());
    scheme.eq_ignore_ascii_case("bearer") && bool::from(presented[..].ct_eq(&expected[..]))
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    const TOKEN: &str = "admin-token-admin-token-0123456789abc";

    fn headers(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(AUTHORIZATION, HeaderValue::from_str(value).expect("value"));
        }
        headers
    }

    #[test]
    fn only_the_configured_bearer_token_is_admin() {
        let expected = SecretString::from(TOKEN.to_owned());
        assert!(is_admin(&headers(&[&format!("Bearer {TOKEN}")]), &expected));
        assert!(is_admin(&headers(&[&format!("bearer {TOKEN}")]), &expected));
        for refused in [
            vec![],
            vec![TOKEN.to_owned()],
            vec![format!("Basic {TOKEN}")],
            vec![format!("Bearer {TOKEN}x")],
            vec![format!("Bearer {}", &TOKEN[1..])],
            vec!["Bearer ".to_owned()],
            vec![format!("Bearer {TOKEN}"), format!("Bearer {TOKEN}")],
        ] {
            let refused: Vec<&str> = refused.iter().map(String::as_str).collect();
            assert!(!is_admin(&headers(&refused), &expected), "{refused:?}");
        }
    }
}
