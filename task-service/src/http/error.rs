//! The one error type every handler and extractor returns, rendered as the FastAPI-style JSON
//! body of [`common::error::ErrorResponse`].
//!
//! Database failures become an opaque 500 (or a 503 when the database cannot be reached or a
//! statement ran past `DATABASE_STATEMENT_TIMEOUT_MS`); their cause goes to the log, never to the
//! client.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use common::error::{ErrorResponse, JSON_CONTENT_TYPE, ValidationIssue};

/// Everything a request can fail with. Each variant's doc names its status.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 401: no gateway assertion, or one that does not verify for this request.
    #[error("request did not come through the gateway")]
    NotThroughGateway,
    /// 403: the asserted user is not the `{user_id}` in the path.
    #[error("asserted user differs from the path's user")]
    Forbidden,
    /// 404: no such task for this user (whether it is missing or someone else's).
    #[error("task not found")]
    TaskNotFound,
    /// 404: no route matches the path.
    #[error("no such route")]
    RouteNotFound,
    /// 405: the route exists but not for this method.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// 415: a body that is not declared as JSON.
    #[error("body is not declared as JSON")]
    UnsupportedMediaType,
    /// 429 with `Retry-After`: the user already runs as many keyword searches as one user may at
    /// once.
    #[error("too many searches at once for this user")]
    TooManySearches,
    /// 422: the request's path, query or body failed validation.
    #[error("validation failed")]
    Validation(Vec<ValidationIssue>),
    /// The status axum chose when it could not read the request (413 for a body over the
    /// limit, 400 for a broken body stream), with a message.
    #[error("{message}")]
    Unreadable {
        status: StatusCode,
        message: &'static str,
    },
    /// 500, or 503 when the database cannot be reached or a statement was stopped at its
    /// deadline.
    #[error("database error: {0}")]
    Database(#[from] crate::store::DbError),
    /// 500: anything else that should not happen.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    /// A single validation issue.
    pub fn invalid(loc: &[&str], msg: impl Into<String>, kind: &str) -> Self {
        Self::Validation(vec![ValidationIssue::new(loc, msg, kind)])
    }

    /// The reply the client sees.
    pub fn to_error_response(&self) -> ErrorResponse {
        let message = |status: StatusCode, text: &str| ErrorResponse::new(status, text);
        match self {
            Self::NotThroughGateway => message(
                StatusCode::UNAUTHORIZED,
                "Request did not come through the gateway",
            ),
            Self::Forbidden => message(StatusCode::FORBIDDEN, common::error::USER_MISMATCH),
            Self::TaskNotFound => message(StatusCode::NOT_FOUND, "Task not found"),
            Self::RouteNotFound => message(StatusCode::NOT_FOUND, "Not Found"),
            Self::MethodNotAllowed => message(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed"),
            Self::UnsupportedMediaType => message(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "Expected a request body with Content-Type: application/json",
            ),
            Self::TooManySearches => message(
                StatusCode::TOO_MANY_REQUESTS,
                "Too many searches at once; try again when one has finished",
            ),
            Self::Validation(issues) => ErrorResponse::validation(issues.clone()),
            Self::Unreadable {
                status,
                message: text,
            } => message(*status, text),
            Self::Database(err) if err.is_timeout() => message(
                StatusCode::SERVICE_UNAVAILABLE,
                "The database took too long to answer",
            ),
            Self::Database(err) if err.is_unavailable() => {
                message(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable")
            }
            Self::Database(_) | Self::Internal(_) => {
                message(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error")
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let reply = self.to_error_response();
        if reply.status.is_server_error() {
            // The client sees an opaque message; the cause is only in the log, where the
            // request's span adds its request id.
            tracing::error!(error = %self, status = reply.status.as_u16(), "request failed");
        }
        let mut response = error_response(&reply);
        if matches!(self, Self::TooManySearches) {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

/// Renders any [`ErrorResponse`] as a JSON reply.
pub fn error_response(reply: &ErrorResponse) -> Response {
    (
        reply.status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(JSON_CONTENT_TYPE),
        )],
        reply.body(),
    )
        .into_response()
}
