//! The OpenAPI 3.1 description of the public task API, served at `/openapi.json`.
//!
//! Operations come from the `#[utoipa::path]` attribute on each handler, and the router is built
//! from the same handlers (`utoipa_axum::routes!`), so the document cannot list a route the
//! service does not serve or miss one it does. This module adds the shared parts: the API's title,
//! and the error replies every operation may give.

use utoipa::{IntoParams, IntoResponses, OpenApi, ToSchema};

/// The document's fixed parts; [`crate::http`] adds the operations.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Task service",
        description = "The task API behind the gateway. Every path is relative to the gateway; \
                       the gateway authenticates the caller and only forwards a user's own `{user_id}`.",
    ),
    tags((name = "tasks", description = "A user's tasks")),
    components(schemas(ErrorMessage, ValidationErrors, ValidationIssue))
)]
pub struct ApiDoc;

/// `{"detail": "…"}`: every error except validation failures.
// Describes the body `common::error::ErrorResponse` renders; never built here.
#[allow(dead_code)]
#[derive(ToSchema)]
#[schema(example = json!({"detail": "Task not found"}))]
pub struct ErrorMessage {
    pub detail: String,
}

/// `{"detail": [{"loc": […], "msg": "…", "type": "…"}]}`: what failed validation, and where.
#[allow(dead_code)]
#[derive(ToSchema)]
#[schema(example = json!({"detail": [{
    "loc": ["body", "title"],
    "msg": "String should have at most 200 characters",
    "type": "string_too_long"
}]}))]
pub struct ValidationErrors {
    pub detail: Vec<ValidationIssue>,
}

/// One validation problem, as pydantic reports it.
#[allow(dead_code)]
#[derive(ToSchema)]
pub struct ValidationIssue {
    /// Where: `["body", "title"]`, `["path", "task_id"]`, `["query", "limit"]`, …
    pub loc: Vec<String>,
    pub msg: String,
    /// A machine-readable kind: `missing`, `string_too_long`, `int_parsing`, `json_invalid`, …
    #[schema(rename = "type")]
    pub kind: String,
}

/// The error replies any task operation may give.
#[allow(dead_code)]
#[derive(IntoResponses)]
pub enum ApiErrors {
    /// No valid gateway assertion.
    #[response(
        status = 401,
        description = "The request did not come through the gateway"
    )]
    NotThroughGateway(ErrorMessage),
    /// The asserted user is not the path's user.
    #[response(status = 403, description = "Not the path's user")]
    Forbidden(ErrorMessage),
    /// A body over 64 KiB.
    #[response(status = 413, description = "Request body too large")]
    TooLarge(ErrorMessage),
    /// A body not declared as JSON.
    #[response(status = 415, description = "Request body is not JSON")]
    NotJson(ErrorMessage),
    /// A malformed path, query or body.
    #[response(status = 422, description = "Validation failed")]
    Invalid(ValidationErrors),
    /// The database failed.
    #[response(status = 500, description = "Internal Server Error")]
    Internal(ErrorMessage),
    /// The database cannot be reached, or a statement ran past its deadline.
    #[response(
        status = 503,
        description = "Database unavailable, or a statement ran past DATABASE_STATEMENT_TIMEOUT_MS"
    )]
    Unavailable(ErrorMessage),
}

/// A task that does not exist for this user (missing, or someone else's).
#[allow(dead_code)]
#[derive(IntoResponses)]
#[response(status = 404, description = "Task not found")]
pub struct NotFound(ErrorMessage);

/// The path parameter of every operation.
#[allow(dead_code)]
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct UserPath {
    /// The user, as asserted by the gateway: an opaque string.
    pub user_id: String,
}

/// The path parameters of the operations on one task.
#[allow(dead_code)]
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct TaskPath {
    /// The user, as asserted by the gateway: an opaque string.
    pub user_id: String,
    /// The task's id.
    pub task_id: i64,
}
