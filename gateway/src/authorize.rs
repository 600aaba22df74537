//! The access decision over a request head, in the contract's order: canonical path (400), route
//! (404/405), bearer token (401), the per-user rate limit (429, see [`crate::rate_limit`]), then
//! the path's `{user_id}` against the token's subject (403).
//!
//! Each refusal is a [`Denial`], which knows its status, its JSON body, its metrics label and
//! the `WWW-Authenticate` challenge that goes with it.

use std::sync::Arc;

use common::error::ErrorResponse;
use http::{Method, StatusCode, header};
use pingora::http::RequestHeader;

use crate::path::{self, PathError, Route, RouteError, Target};
use crate::token::{Principal, TokenError, Verifier};

/// Authorization headers longer than this are refused before any decoding.
pub const MAX_AUTHORIZATION_BYTES: usize = 8 * 1024;

/// Why a request is answered by the gateway instead of reaching the task service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denial {
    /// 400: the request target failed the canonical path check.
    BadPath(PathError),
    /// 404: no API route has this path.
    NotFound,
    /// 405: the path exists, the method does not.
    MethodNotAllowed(&'static [Method]),
    /// 401: no `Authorization` header.
    MissingToken,
    /// 401: the `Authorization` header is over [`MAX_AUTHORIZATION_BYTES`].
    TokenTooLarge,
    /// 401: not exactly one `Authorization: Bearer <token>`.
    MalformedAuthorization,
    /// 401: the token itself was refused.
    Token(TokenError),
    /// 401: a valid token whose session, id or user was revoked (sign-out).
    Revoked,
    /// 403: a valid token for another user than the path's.
    UserMismatch,
    /// 403: a CORS preflight from an origin that is not allowed.
    OriginNotAllowed,
    /// 429: the verified user is over the per-user rate limit.
    RateLimited,
}

impl Denial {
    /// The metrics label and access-log field for this denial.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::BadPath(_) => "bad_path",
            Self::NotFound => "not_found",
            Self::MethodNotAllowed(_) => "method_not_allowed",
            Self::MissingToken => "missing_token",
            Self::TokenTooLarge => "token_too_large",
            Self::MalformedAuthorization | Self::Token(TokenError::Malformed) => "malformed_token",
            Self::Token(TokenError::UnsupportedAlgorithm) => "unsupported_algorithm",
            Self::Token(TokenError::UnknownKey) => "unknown_key",
            Self::Token(TokenError::BadSignature) => "bad_signature",
            Self::Token(TokenError::Expired) => "expired",
            Self::Token(TokenError::NotYetValid) => "not_yet_valid",
            Self::Token(TokenError::WrongIssuer) => "wrong_issuer",
            Self::Token(TokenError::WrongAudience) => "wrong_audience",
            Self::Token(TokenError::MissingSubject) => "missing_subject",
            Self::Revoked => "revoked",
            Self::UserMismatch => "user_mismatch",
            Self::OriginNotAllowed => "origin_not_allowed",
            Self::RateLimited => "rate_limited",
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadPath(_) => StatusCode::BAD_REQUEST,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Self::MissingToken
            | Self::TokenTooLarge
            | Self::MalformedAuthorization
            | Self::Token(_)
            | Self::Revoked => StatusCode::UNAUTHORIZED,
            Self::UserMismatch | Self::OriginNotAllowed => StatusCode::FORBIDDEN,
            Self::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        }
    }

    /// The JSON error reply, worded as FastAPI words its own.
    pub fn response(&self) -> ErrorResponse {
        let detail = match self {
            Self::BadPath(_) => "Malformed request path",
            Self::NotFound => "Not Found",
            Self::MethodNotAllowed(_) => "Method Not Allowed",
            Self::MissingToken => "Not authenticated",
            Self::Token(TokenError::Expired) => "Token has expired",
            Self::TokenTooLarge | Self::MalformedAuthorization | Self::Token(_) => {
                "Could not validate credentials"
            }
            Self::Revoked => "Token has been revoked",
            Self::UserMismatch => common::error::USER_MISMATCH,
            Self::OriginNotAllowed => "Origin not allowed",
            Self::RateLimited => "Too many requests",
        };
        ErrorResponse::new(self.status(), detail)
    }

    /// The `WWW-Authenticate` challenge of a 401 (RFC 6750 §3): `error="invalid_token"` when a
    /// token was sent.
    pub fn www_authenticate(&self) -> Option<&'static str> {
        match self {
            Self::MissingToken => Some("Bearer"),
            Self::TokenTooLarge | Self::MalformedAuthorization | Self::Token(_) => {
                Some("Bearer error=\"invalid_token\"")
            }
            Self::Revoked => Some("Bearer error=\"invalid_token\", error_description=\"revoked\""),
            _ => None,
        }
    }

    /// The `Retry-After` header of a 429, in seconds.
    pub fn retry_after(&self) -> Option<String> {
        match self {
            Self::RateLimited => Some(crate::rate_limit::RETRY_AFTER_SECONDS.to_string()),
            _ => None,
        }
    }

    /// The `Allow` header of a 405.
    pub fn allow(&self) -> Option<String> {
        match self {
            Self::MethodNotAllowed(methods) => Some(
                methods
                    .iter()
                    .map(Method::as_str)
                    .collect::<Vec<_>>()
                    .join(", "),
            ),
            _ => None,
        }
    }
}

/// Checks the raw target and matches it to a route for `method`.
pub fn resolve<'a>(
    method: &Method,
    raw_target: &'a [u8],
) -> Result<(Target<'a>, Route<'a>), Denial> {
    let target = path::check_target(raw_target).map_err(Denial::BadPath)?;
    let route = path::match_route(method, &target).map_err(|err| match err {
        RouteError::NotFound => Denial::NotFound,
        RouteError::MethodNotAllowed(allowed) => Denial::MethodNotAllowed(allowed),
    })?;
    Ok((target, route))
}

/// The bearer token of a request: exactly one `Authorization: Bearer <token>` header, at most
/// [`MAX_AUTHORIZATION_BYTES`] long.
pub fn bearer_token(request: &RequestHeader) -> Result<&str, Denial> {
    let mut values = request.headers.get_all(header::AUTHORIZATION).iter();
    let value = values.next().ok_or(Denial::MissingToken)?;
    if values.next().is_some() {
        return Err(Denial::MalformedAuthorization);
    }
    if value.len() > MAX_AUTHORIZATION_BYTES {
        return Err(Denial::TokenTooLarge);
    }
    let value = value.to_str().map_err(|_| Denial::MalformedAuthorization)?;
    let (scheme, token) = value
        .split_once(' ')
        .ok_or(Denial::MalformedAuthorization)?;
    let token = token.trim_start_matches(' ');
    // RFC 6750 b64token; a JWT uses a subset of it.
    let well_formed = !token.is_empty()
        && token.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/' | b'=')
        });
    if !scheme.eq_ignore_ascii_case("bearer") || !well_formed {
        return Err(Denial::MalformedAuthorization);
    }
    Ok(token)
}

/// The path's `{user_id}` must be the token's subject, byte for byte.
pub fn bind(route: &Route<'_>, principal: &Principal) -> Result<(), Denial> {
    if route.user_id == principal.sub {
        Ok(())
    } else {
        Err(Denial::UserMismatch)
    }
}

/// The verified principal of a request's bearer token, or the denial. The caller then applies
/// the rate limit and [`bind`]s the principal to the route.
pub async fn authenticate(
    request: &RequestHeader,
    verifier: &Verifier,
) -> Result<Arc<Principal>, Denial> {
    let token = bearer_token(request)?;
    verifier.verify(token).await.map_err(Denial::Token)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::path::RouteName;

    fn request(authorization: &[&str]) -> RequestHeader {
        let mut request =
            RequestHeader::build("GET", b"/api/alice/tasks", None).expect("request head");
        for value in authorization {
            request
                .append_header(header::AUTHORIZATION, *value)
                .expect("header");
        }
        request
    }

    #[test]
    fn exactly_one_bearer_token_is_accepted() {
        assert_eq!(bearer_token(&request(&["Bearer a.b.c"])), Ok("a.b.c"));
        assert_eq!(bearer_token(&request(&["bearer a.b.c"])), Ok("a.b.c"));
        assert_eq!(bearer_token(&request(&[])), Err(Denial::MissingToken));
        for bad in [
            &["Bearer a.b.c", "Bearer a.b.c"][..],
            &["Basic YWxpY2U6cHc="],
            &["Bearer"],
            &["Bearer a.b c"],
            &["Token a.b.c"],
        ] {
            assert_eq!(
                bearer_token(&request(bad)),
                Err(Denial::MalformedAuthorization),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn oversized_authorization_is_refused_before_decoding() {
        let huge = format!("Bearer {}", "a".repeat(MAX_AUTHORIZATION_BYTES));
        assert_eq!(bearer_token(&request(&[&huge])), Err(Denial::TokenTooLarge));
    }

    #[test]
    fn the_path_user_must_be_the_subject() {
        let route = Route {
            name: RouteName::ListTasks,
            user_id: "alice",
        };
        let principal = |sub: &str| Principal {
            sub: sub.to_owned(),
            email: None,
            sid: None,
            jti: None,
            iat: None,
        };
        assert_eq!(bind(&route, &principal("alice")), Ok(()));
        assert_eq!(bind(&route, &principal("bob")), Err(Denial::UserMismatch));
        assert_eq!(bind(&route, &principal("Alice")), Err(Denial::UserMismatch));
    }

    #[test]
    fn path_is_checked_before_routing() {
        assert_eq!(
            resolve(&Method::GET, b"/api/alice/../bob/tasks").map(|(_, route)| route),
            Err(Denial::BadPath(PathError::DotSegment))
        );
        assert_eq!(
            resolve(&Method::GET, b"/admin").map(|(_, route)| route),
            Err(Denial::NotFound)
        );
        assert_eq!(
            resolve(&Method::POST, b"/api/alice/tasks/1").map_err(|d| d.allow()),
            Err(Some("GET, PUT, DELETE".to_owned()))
        );
    }

    #[test]
    fn denials_map_to_status_and_challenge() {
        assert_eq!(Denial::MissingToken.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(Denial::MissingToken.www_authenticate(), Some("Bearer"));
        assert_eq!(
            Denial::Token(TokenError::Expired).www_authenticate(),
            Some("Bearer error=\"invalid_token\"")
        );
        assert_eq!(Denial::Revoked.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            Denial::Revoked.www_authenticate(),
            Some("Bearer error=\"invalid_token\", error_description=\"revoked\"")
        );
        assert_eq!(Denial::UserMismatch.status(), StatusCode::FORBIDDEN);
        assert_eq!(Denial::UserMismatch.www_authenticate(), None);
        assert_eq!(Denial::RateLimited.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(Denial::RateLimited.retry_after().as_deref(), Some("1"));
        assert_eq!(Denial::MissingToken.retry_after(), None);
        assert_eq!(
            Denial::MissingToken.response().body(),
            br#"{"detail":"Not authenticated"}"#
        );
        assert_eq!(
            Denial::NotFound.response().body(),
            br#"{"detail":"Not Found"}"#
        );
    }
}
