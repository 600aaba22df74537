//! The six task endpoints under `/api/{user_id}/tasks`: the router, and the five single-task
//! handlers with the SQL each one runs. The list lives in [`list`], the task model and the
//! request bodies in [`input`].
//!
//! Every handler takes a [`User`], and every statement filters by `user_id = <that user>`: a task
//! id that exists but belongs to someone else reads exactly like one that does not exist (404).
//! The SQL is written once for both backends; see [`crate::store`] for why that works.

mod input;
mod list;
mod search_slots;

pub use self::search_slots::SearchSlots;

use axum::extract::{OriginalUri, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use self::input::{CompletionChange, NewTask, Priority, Task, TaskChanges, TaskJson, now};
use super::AppState;
use super::auth::User;
use super::error::ApiError;
use super::extract::{JsonBody, TaskId};
use super::openapi::{ApiErrors, NotFound, TaskPath, UserPath};
use crate::store::{Insert, InsertInto, SqlType, Statement};

/// A new task's row: every column but its identity.
static NEW_TASK: InsertInto = InsertInto::new(
    "tasks",
    &[
        ("user_id", SqlType::Text),
        ("title", SqlType::Text),
        ("description", SqlType::Text),
        ("completed", SqlType::Bool),
        ("priority", SqlType::Text),
        ("due_date", SqlType::Time),
        ("created_at", SqlType::Time),
        ("updated_at", SqlType::Time),
    ],
);

/// The routes of this module, with their OpenAPI operations.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list::list_tasks, create_task))
        .routes(routes!(get_task, update_task, delete_task))
        .routes(routes!(set_completion))
}

/// Create a task.
#[utoipa::path(
    post,
    path = "/api/{user_id}/tasks",
    tag = "tasks",
    params(UserPath),
    request_body = NewTask,
    responses(
        (status = 201, description = "The new task", body = Task,
            headers(("Location" = String, description = "The new task's URL"))),
        ApiErrors,
    )
)]
async fn create_task(
    user: User,
    State(state): State<AppState>,
    OriginalUri(uri): OriginalUri,
    JsonBody(new): JsonBody<NewTask>,
) -> Result<impl IntoResponse, ApiError> {
    let now = now();
    let insert = Insert::new(&NEW_TASK)
        .value(user.id())
        .value(new.title)
        .value(new.description)
        .value(false)
        .value(new.priority.as_str())
        .value(new.due_date)
        .value(now)
        .value(now);
    let task: Task = state.store().insert("create_task", insert).await?;
    // The path as received (with the user id as the client encoded it) plus the new id.
    let location = format!("{}/{}", uri.path().trim_end_matches('/'), task.id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        TaskJson(task),
    ))
}

/// Get one task.
#[utoipa::path(
    get,
    path = "/api/{user_id}/tasks/{task_id}",
    tag = "tasks",
    params(TaskPath),
    responses((status = 200, description = "The task", body = Task), NotFound, ApiErrors)
)]
async fn get_task(
    user: User,
    State(state): State<AppState>,
    TaskId(id): TaskId,
) -> Result<TaskJson<Task>, ApiError> {
    let select = Statement::new("select * from tasks where id = $1 and user_id = $2")
        .bind(id)
        .bind(user.id());
    let task = state.store().fetch_optional("get_task", select).await?;
    found(task)
}

/// Change some of a task's fields; `updated_at` is refreshed.
#[utoipa::path(
    put,
    path = "/api/{user_id}/tasks/{task_id}",
    tag = "tasks",
    params(TaskPath),
    request_body = TaskChanges,
    responses((status = 200, description = "The updated task", body = Task), NotFound, ApiErrors)
)]
async fn update_task(
    user: User,
    State(state): State<AppState>,
    TaskId(id): TaskId,
    JsonBody(changes): JsonBody<TaskChanges>,
) -> Result<TaskJson<Task>, ApiError> {
    // One statement, so concurrent partial updates of different fields never undo each other:
    // an absent field keeps the stored value.
    let update = Statement::new(
        "update tasks set \
             title = coalesce($3, title), \
             description = case when $4 then $5 else description end, \
             completed = coalesce($6, completed), \
             priority = coalesce($7, priority), \
             due_date = case when $8 then $9 else due_date end, \
             updated_at = $10 \
         where id = $1 and user_id = $2 \
         returning *",
    )
    .bind(id)
    .bind(user.id())
    .bind(changes.title)
    .bind(changes.description.is_some())
    .bind(changes.description.flatten())
    .bind(changes.completed)
    .bind(changes.priority.map(Priority::as_str))
    .bind(changes.due_date.is_some())
    .bind(changes.due_date.flatten())
    .bind(now());
    let task = state.store().fetch_optional("update_task", update).await?;
    found(task)
}

/// Delete a task.
#[utoipa::path(
    delete,
    path = "/api/{user_id}/tasks/{task_id}",
    tag = "tasks",
    params(TaskPath),
    responses((status = 204, description = "Deleted"), NotFound, ApiErrors)
)]
async fn delete_task(
    user: User,
    State(state): State<AppState>,
    TaskId(id): TaskId,
) -> Result<StatusCode, ApiError> {
    let delete = Statement::new("delete from tasks where id = $1 and user_id = $2")
        .bind(id)
        .bind(user.id());
    let deleted = state.store().execute("delete_task", delete).await?;
    if deleted == 0 {
        Err(ApiError::TaskNotFound)
    } else {
        Ok(StatusCode::NO_CONTENT)
    }
}

/// Toggle a task's completion (no body), or set it (`{"completed": bool}`).
#[utoipa::path(
    patch,
    path = "/api/{user_id}/tasks/{task_id}/complete",
    tag = "tasks",
    params(TaskPath),
    request_body(content = CompletionChange, description = "Optional: without a body (or without `completed`) the task is toggled"),
    responses((status = 200, description = "The updated task", body = Task), NotFound, ApiErrors)
)]
async fn set_completion(
    user: User,
    State(state): State<AppState>,
    TaskId(id): TaskId,
    JsonBody(change): JsonBody<CompletionChange>,
) -> Result<TaskJson<Task>, ApiError> {
    let update = Statement::new(
        "update tasks set completed = coalesce($3, not completed), updated_at = $4 \
         where id = $1 and user_id = $2 \
         returning *",
    )
    .bind(id)
    .bind(user.id())
    .bind(change.completed)
    .bind(now());
    let task = state
        .store()
        .fetch_optional("set_completion", update)
        .await?;
    found(task)
}

/// The task, or the 404 that does not say whether it is missing or someone else's.
fn found(task: Option<Task>) -> Result<TaskJson<Task>, ApiError> {
    task.map(TaskJson).ok_or(ApiError::TaskNotFound)
}
