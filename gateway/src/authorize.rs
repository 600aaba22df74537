//! The access decision over a request head, in the contract's order: CORS preflight, canonical
//! path (400), route (404/405), bearer token (401), its revocation (401, see
//! [`crate::revocation`]), the per-user rate limit (429, see [`crate::rate_limit`]), then the
//! path's `{user_id}` against the token's subject (403).
//!
//! [`authorize`] is the whole decision and the only place it is made. It reads nothing but the
//! request head and the answers of the stateful parts it is handed, the token verifier, the
//! revocation set and the rate limit, so it is tested here without a server. Each refusal is a [`Denial`], which
//! knows its status, its JSON body, its metrics label and the `WWW-Authenticate` challenge that
//! goes with it. A new access check belongs in [`authorize`], as one more step in this order,
//! with its own [`Denial`] variant.

use std::future::Future;
use std::sync::Arc;

use common::error::ErrorResponse;
use common::headers::single_value;
use http::{Method, StatusCode, header};
use pingora::http::RequestHeader;

use crate::cors;
use crate::path::{self, PathError, Route, RouteError, RouteName, Target};
use crate::token::{Principal, TokenError};

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
    /// 429: the client address failed too many verifications this minute, and its token is
    /// not one already verified (see [`crate::client_limit`]).
    TooManyFailedTokens,
}

impl From<TokenError> for Denial {
    fn from(error: TokenError) -> Self {
        Self::Token(error)
    }
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
            Self::TooManyFailedTokens => "too_many_failed_tokens",
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
            Self::RateLimited | Self::TooManyFailedTokens => StatusCode::TOO_MANY_REQUESTS,
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
            Self::TooManyFailedTokens => "Too many failed authentication attempts",
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
            Self::TooManyFailedTokens => Some(crate::client_limit::RETRY_AFTER_SECONDS.to_string()),
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

/// What the gateway does with a request, decided by [`authorize`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Answer a CORS preflight from an allowed origin with 204.
    Preflight { route: RouteName },
    /// Answer with the denial; `route` is known when the target matched one.
    Deny {
        route: Option<RouteName>,
        denial: Denial,
    },
    /// Forward `target` (the origin-form path and query that was checked) for `principal`.
    Forward {
        route: RouteName,
        target: String,
        principal: Arc<Principal>,
    },
}

impl Decision {
    /// The matched route, the low-cardinality label of metrics and the access log.
    pub fn route(&self) -> Option<RouteName> {
        match self {
            Self::Preflight { route } | Self::Forward { route, .. } => Some(*route),
            Self::Deny { route, .. } => *route,
        }
    }
}

/// Decides what happens to `request`. `origin_allowed` is the CORS policy's answer for its
/// `Origin`; `verify` is the token verifier, called only once the path and route are sound;
/// `revoked` is the revocation check of every verified principal, cached or not; `admit` is the per-user rate limit, asked only for a verified principal, before the path
/// binding, so every request a user authenticates counts against their own budget, whichever
/// path it names.
pub async fn authorize<'a, Verify, Verified, Refused>(
    request: &'a RequestHeader,
    origin_allowed: bool,
    verify: Verify,
    revoked: impl FnOnce(&Principal) -> bool,
    admit: impl FnOnce(&Principal) -> bool,
) -> Decision
where
    Verify: FnOnce(&'a str) -> Verified,
    Verified: Future<Output = Result<Arc<Principal>, Refused>>,
    Refused: Into<Denial>,
{
    let deny = |route: Option<RouteName>, denial| Decision::Deny { route, denial };
    if let Some(requested) = cors::preflight_method(request) {
        if !origin_allowed {
            return deny(None, Denial::OriginNotAllowed);
        }
        return match resolve(&requested, request.raw_path()) {
            Ok((_, route)) => Decision::Preflight { route: route.name },
            Err(denial) => deny(None, denial),
        };
    }
    let (target, route) = match resolve(&request.method, request.raw_path()) {
        Ok(resolved) => resolved,
        Err(denial) => return deny(None, denial),
    };
    let name = Some(route.name);
    let token = match bearer_token(request) {
        Ok(token) => token,
        Err(denial) => return deny(name, denial),
    };
    let principal = match verify(token).await {
        Ok(principal) => principal,
        Err(refused) => return deny(name, refused.into()),
    };
    if revoked(&principal) {
        return deny(name, Denial::Revoked);
    }
    if !admit(&principal) {
        return deny(name, Denial::RateLimited);
    }
    if let Err(denial) = bind(&route, &principal) {
        return deny(name, denial);
    }
    Decision::Forward {
        route: route.name,
        target: target.origin_form.to_owned(),
        principal,
    }
}

/// Checks the raw target and matches it to a route for `method`.
fn resolve<'a>(method: &Method, raw_target: &'a [u8]) -> Result<(Target<'a>, Route<'a>), Denial> {
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
    if !request.headers.contains_key(header::AUTHORIZATION) {
        return Err(Denial::MissingToken);
    }
    let value = single_value(&request.headers, header::AUTHORIZATION)
        .ok_or(Denial::MalformedAuthorization)?;
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
fn bind(route: &Route<'_>, principal: &Principal) -> Result<(), Denial> {
    if route.user_id == principal.sub {
        Ok(())
    } else {
        Err(Denial::UserMismatch)
    }
}

#[cfg(test)]
mod tests {
    use std::future::{Ready, ready};

    use super::*;

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

    fn alice() -> Arc<Principal> {
        Arc::new(Principal {
            sub: "alice".to_owned(),
            email: None,
            sid: None,
            jti: None,
            iat: None,
        })
    }

    fn head(method: &str, target: &[u8], headers: &[(&str, &str)]) -> RequestHeader {
        let mut request = RequestHeader::build(method, target, None).expect("request head");
        for (name, value) in headers {
            request
                .append_header(name.to_string(), *value)
                .expect("header");
        }
        request
    }

    /// Runs [`authorize`] with a verifier that accepts exactly the token `good` as alice.
    async fn decide(request: &RequestHeader, origin_allowed: bool, admit: bool) -> Decision {
        let verify = |token: &str| -> Ready<Result<Arc<Principal>, TokenError>> {
            assert!(
                !request.raw_path().contains(&b'.'),
                "a bad path never reaches the verifier"
            );
            ready(if token == "good" {
                Ok(alice())
            } else {
                Err(TokenError::BadSignature)
            })
        };
        authorize(request, origin_allowed, verify, |_| false, |_| admit).await
    }

    #[tokio::test]
    async fn a_revoked_token_is_refused_before_the_rate_limit_counts_it() {
        let request = head(
            "GET",
            b"/api/alice/tasks",
            &[("authorization", "Bearer good")],
        );
        let decision = authorize(
            &request,
            false,
            |_| ready(Ok::<_, TokenError>(alice())),
            |principal| principal.sub == "alice",
            |_| panic!("a revoked token is not counted against the rate limit"),
        )
        .await;
        assert_eq!(
            decision,
            Decision::Deny {
                route: Some(RouteName::ListTasks),
                denial: Denial::Revoked
            }
        );
    }

    #[tokio::test]
    async fn a_verified_owner_is_forwarded_with_the_checked_target() {
        let request = head(
            "GET",
            b"/api/alice/tasks?status=pending",
            &[("authorization", "Bearer good")],
        );
        assert_eq!(
            decide(&request, false, true).await,
            Decision::Forward {
                route: RouteName::ListTasks,
                target: "/api/alice/tasks?status=pending".to_owned(),
                principal: alice(),
            }
        );
    }

    #[tokio::test]
    async fn the_checks_run_in_the_contract_order() {
        let denial = |decision: Decision| match decision {
            Decision::Deny { denial, .. } => Some(denial),
            _ => None,
        };
        let bearer = |token| [("authorization", token)];
        // The path comes before the token, the token before the rate limit, the rate limit
        // before the user binding.
        let bad_path = head("GET", b"/api/alice/../bob/tasks", &bearer("Bearer bad"));
        assert_eq!(
            denial(decide(&bad_path, true, false).await),
            Some(Denial::BadPath(PathError::DotSegment))
        );
        let no_route = head("GET", b"/admin", &[]);
        assert_eq!(
            denial(decide(&no_route, true, true).await),
            Some(Denial::NotFound)
        );
        let missing = head("GET", b"/api/bob/tasks", &[]);
        assert_eq!(
            decide(&missing, true, false).await,
            Decision::Deny {
                route: Some(RouteName::ListTasks),
                denial: Denial::MissingToken
            }
        );
        let forged = head("GET", b"/api/bob/tasks", &bearer("Bearer bad"));
        assert_eq!(
            denial(decide(&forged, true, false).await),
            Some(Denial::Token(TokenError::BadSignature))
        );
        let over_budget = head("GET", b"/api/bob/tasks", &bearer("Bearer good"));
        assert_eq!(
            denial(decide(&over_budget, true, false).await),
            Some(Denial::RateLimited)
        );
        assert_eq!(
            denial(decide(&over_budget, true, true).await),
            Some(Denial::UserMismatch)
        );
    }

    #[tokio::test]
    async fn preflights_are_answered_for_allowed_origins_only() {
        let preflight = |target: &[u8]| {
            head(
                "OPTIONS",
                target,
                &[
                    ("origin", "https://app.example"),
                    ("access-control-request-method", "DELETE"),
                ],
            )
        };
        assert_eq!(
            decide(&preflight(b"/api/alice/tasks/1"), true, true).await,
            Decision::Preflight {
                route: RouteName::DeleteTask
            }
        );
        assert_eq!(
            decide(&preflight(b"/api/alice/tasks/1"), false, true).await,
            Decision::Deny {
                route: None,
                denial: Denial::OriginNotAllowed
            }
        );
        assert_eq!(
            decide(&preflight(b"/api/alice/tasks"), true, true).await,
            Decision::Deny {
                route: None,
                denial: Denial::MethodNotAllowed(&[Method::GET, Method::POST])
            }
        );
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
