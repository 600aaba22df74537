//! Who is asking: the [`User`] extractor, which trusts nothing but a valid gateway assertion.
//!
//! The gateway verifies the caller's token, then signs an assertion binding the user id to this
//! exact request (method, path with query) and the time. A handler that takes a [`User`] runs
//! only when that assertion verifies (otherwise 401, before anything else is read) and when the
//! asserted user is the path's `{user_id}` (otherwise 403). Handlers cannot forget the check:
//! without a `User` they have no user id to filter their queries by.

use std::sync::Arc;

use axum::extract::{FromRef, FromRequestParts, OriginalUri, RawPathParams};
use axum::http::request::Parts;
use common::assertion::{AssertedRequest, AssertionVerifier};
use common::clock::now_unix;
use common::headers;

use crate::http::error::ApiError;

/// The path parameter every `/api/` route names its owner with.
const PATH_USER_PARAM: &str = "user_id";

/// The user the gateway vouched for, who is also the owner named in the path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    id: String,
}

impl User {
    /// The verified user id: every query is filtered by it.
    pub fn id(&self) -> &str {
        &self.id
    }
}

/// Needs only the verifier from the state, which it takes through [`FromRef`].
impl<S> FromRequestParts<S> for User
where
    S: Send + Sync,
    Arc<AssertionVerifier>: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let verifier = Arc::<AssertionVerifier>::from_ref(state);
        let user = verify_assertion(parts, &verifier, now_unix())?;
        // Fail closed: a route without `{user_id}` (or with one that is not UTF-8 once decoded)
        // names no owner the user could match.
        let params = RawPathParams::from_request_parts(parts, state)
            .await
            .map_err(|_| ApiError::Forbidden)?;
        let owner = params
            .iter()
            .find_map(|(name, value)| (name == PATH_USER_PARAM).then_some(value));
        if owner == Some(user.id()) {
            Ok(user)
        } else {
            Err(ApiError::Forbidden)
        }
    }
}

/// Checks the identity headers against the request exactly as it was received.
fn verify_assertion(
    parts: &Parts,
    verifier: &AssertionVerifier,
    now_unix: u64,
) -> Result<User, ApiError> {
    let refuse = |reason: &dyn std::fmt::Display| {
        // Debug, not info: the access-log line already records the 401, once per request.
        tracing::debug!(%reason, "refused a request without a valid gateway assertion");
        ApiError::NotThroughGateway
    };
    // Each header must be sent exactly once, in visible ASCII.
    let single_header =
        |name| headers::single_value(&parts.headers, name).and_then(|value| value.to_str().ok());
    let user_id = single_header(headers::USER_ID)
        .filter(|id| !id.is_empty())
        .ok_or_else(|| refuse(&"missing, repeated or unreadable user id header"))?;
    let assertion = single_header(headers::GATEWAY_ASSERTION)
        .ok_or_else(|| refuse(&"missing, repeated or unreadable assertion header"))?;
    // The gateway signed the target it forwarded; axum may have rewritten `parts.uri` if this
    // router is ever nested, but `OriginalUri` keeps what arrived.
    let uri = parts
        .extensions
        .get::<OriginalUri>()
        .map_or(&parts.uri, |original| &original.0);
    let request = AssertedRequest {
        method: parts.method.as_str(),
        path_and_query: uri.path_and_query().map_or("/", |target| target.as_str()),
        user_id,
    };
    verifier
        .verify(assertion, &request, now_unix)
        .map_err(|err| refuse(&err))?;
    Ok(User {
        id: user_id.to_owned(),
    })
}
