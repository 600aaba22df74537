//! The six task endpoints under `/api/{user_id}/tasks`, their request and response shapes, and
//! the SQL each one runs.
//!
//! Every handler takes a [`User`], and every statement filters by `user_id = <that user>`: a task
//! id that exists but belongs to someone else reads exactly like one that does not exist (404).
//! The SQL is written once for both backends; see [`crate::store`] for why that works.

use std::fmt::Write as _;

use axum::Json;
use axum::extract::{FromRequestParts, OriginalUri, Query, State};
use axum::http::{StatusCode, header, request::Parts};
use axum::response::IntoResponse;
use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, SubsecRound, Utc};
use common::error::ValidationIssue;
use serde::Serialize;
use serde_json::Value;
use sqlx::{AssertSqlSafe, Database, Encode, Type, query::QueryAs};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::extract::{
    BodyFields, FromJsonBody, JsonBody, Problem, TaskId, boolean, nullable, one_of, string,
};
use crate::auth::User;
use crate::error::ApiError;
use crate::openapi::{ApiErrors, NotFound, TaskPath, UserPath};
use crate::store::run_query;

/// The most characters a title may have, after trimming.
const TITLE_MAX_CHARS: usize = 200;
/// The most characters a description may have.
const DESCRIPTION_MAX_CHARS: usize = 1000;
/// The page size when the client gives none, and the largest it may ask for.
const DEFAULT_LIMIT: i64 = 100;
const MAX_LIMIT: i64 = 500;
/// A search keyword longer than any title or description could never match.
const MAX_KEYWORD_CHARS: usize = DESCRIPTION_MAX_CHARS;

/// The routes of this module, with their OpenAPI operations.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_tasks, create_task))
        .routes(routes!(get_task, update_task, delete_task))
        .routes(routes!(set_completion))
}

/// How urgent a task is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    Low,
    #[default]
    Medium,
    High,
}

impl Priority {
    const ALL: [Self; 3] = [Self::Low, Self::Medium, Self::High];

    fn as_str(self) -> &'static str {
        match self {
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
        }
    }

    fn parse(text: &str) -> Result<Self, Problem> {
        one_of(
            text,
            &Self::ALL.map(|priority| (priority.as_str(), priority)),
        )
    }

    fn from_json(value: &Value) -> Result<Self, Problem> {
        Self::parse(value.as_str().unwrap_or_default())
    }
}

/// A stored priority that is none of the three (only possible if the table was edited by hand).
#[derive(Debug, thiserror::Error)]
#[error("unknown priority {0:?} in the database")]
pub struct UnknownPriority(String);

impl TryFrom<String> for Priority {
    type Error = UnknownPriority;

    fn try_from(stored: String) -> Result<Self, UnknownPriority> {
        Self::parse(&stored).map_err(|_| UnknownPriority(stored))
    }
}

/// A task, as the API returns it and as it is stored.
#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
pub struct Task {
    pub id: i64,
    /// The owner; always the user in the request's path.
    pub user_id: String,
    pub title: String,
    pub description: Option<String>,
    pub completed: bool,
    #[sqlx(try_from = "String")]
    pub priority: Priority,
    pub due_date: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// The body of `POST /api/{user_id}/tasks`. Other fields (`id`, `user_id`, `completed`, …) are
/// ignored.
#[derive(Debug, ToSchema)]
pub struct NewTask {
    /// 1 to 200 characters once surrounding whitespace is trimmed.
    #[schema(min_length = 1, max_length = 200)]
    pub title: String,
    /// At most 1000 characters.
    #[schema(max_length = 1000)]
    pub description: Option<String>,
    /// `medium` when absent.
    #[schema(required = false)]
    pub priority: Priority,
    /// RFC 3339; a date alone means its midnight UTC, a time without offset means UTC.
    pub due_date: Option<DateTime<Utc>>,
}

impl FromJsonBody for NewTask {
    fn from_json_body(body: Option<Value>) -> Result<Self, Vec<ValidationIssue>> {
        let mut fields = BodyFields::new(body)?;
        let title = fields.required("title", string(1, TITLE_MAX_CHARS, true));
        let description = fields.optional("description", nullable(description));
        let priority = fields.optional("priority", Priority::from_json);
        let due_date = fields.optional("due_date", nullable(datetime));
        let task = (|| {
            Some(Self {
                title: title?,
                description: description?.flatten(),
                priority: priority?.unwrap_or_default(),
                due_date: due_date?.flatten(),
            })
        })();
        fields.finish(task)
    }
}

/// The body of `PUT /api/{user_id}/tasks/{task_id}`: only the fields present change.
/// `description` and `due_date` may be `null` to clear them; `title`, `completed` and
/// `priority` may not.
#[derive(Debug, ToSchema)]
pub struct TaskChanges {
    #[schema(min_length = 1, max_length = 200)]
    pub title: Option<String>,
    #[schema(value_type = Option<String>, max_length = 1000)]
    pub description: Option<Option<String>>,
    pub completed: Option<bool>,
    pub priority: Option<Priority>,
    #[schema(value_type = Option<DateTime<Utc>>)]
    pub due_date: Option<Option<DateTime<Utc>>>,
}

impl FromJsonBody for TaskChanges {
    fn from_json_body(body: Option<Value>) -> Result<Self, Vec<ValidationIssue>> {
        let mut fields = BodyFields::new(body)?;
        let title = fields.optional("title", string(1, TITLE_MAX_CHARS, true));
        let description = fields.optional("description", nullable(description));
        let completed = fields.optional("completed", boolean);
        let priority = fields.optional("priority", Priority::from_json);
        let due_date = fields.optional("due_date", nullable(datetime));
        let changes = (|| {
            Some(Self {
                title: title?,
                description: description?,
                completed: completed?,
                priority: priority?,
                due_date: due_date?,
            })
        })();
        fields.finish(changes)
    }
}

/// The optional body of `PATCH /api/{user_id}/tasks/{task_id}/complete`: no body (or no
/// `completed`) toggles the task, `{"completed": true|false}` sets it.
#[derive(Debug, ToSchema)]
pub struct CompletionChange {
    pub completed: Option<bool>,
}

impl FromJsonBody for CompletionChange {
    fn from_json_body(body: Option<Value>) -> Result<Self, Vec<ValidationIssue>> {
        let Some(body) = body else {
            return Ok(Self { completed: None });
        };
        let mut fields = BodyFields::new(Some(body))?;
        let completed = fields.optional("completed", boolean);
        fields.finish(completed.map(|completed| Self { completed }))
    }
}

fn description(value: &Value) -> Result<String, Problem> {
    string(0, DESCRIPTION_MAX_CHARS, false)(value)
}

/// A due date: RFC 3339, or (as pydantic accepts) a time without offset, read as UTC, or a bare
/// date, read as its midnight UTC. Kept to microseconds, the precision PostgreSQL stores, so both
/// backends return the same value; kept to four-digit years so SQLite's text order stays time
/// order.
fn datetime(value: &Value) -> Result<DateTime<Utc>, Problem> {
    let Value::String(text) = value else {
        return Err((
            "Input should be a valid datetime".to_owned(),
            "datetime_type",
        ));
    };
    DateTime::parse_from_rfc3339(text)
        .map(|time| time.with_timezone(&Utc))
        .ok()
        .or_else(|| {
            NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f")
                .ok()
                .map(|time| time.and_utc())
        })
        .or_else(|| {
            NaiveDate::parse_from_str(text, "%Y-%m-%d")
                .ok()
                .map(|date| date.and_time(chrono::NaiveTime::MIN).and_utc())
        })
        .filter(|time| (1..=9999).contains(&time.year()))
        .map(|time| time.trunc_subsecs(6))
        .ok_or_else(|| {
            (
                "Input should be a valid datetime, expected RFC 3339 such as 2026-01-31T17:00:00Z"
                    .to_owned(),
                "datetime_parsing",
            )
        })
}

/// Now, to the microsecond (see [`datetime`]).
fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

/// The list's sort keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SortKey {
    Created,
    Updated,
    Title,
    DueDate,
    Priority,
}

/// The list's query string, validated: filters, order and page.
#[derive(Debug)]
struct ListQuery {
    /// `None` for all tasks, else only completed (`true`) or pending (`false`) ones.
    completed: Option<bool>,
    /// A `like` pattern matching the keyword anywhere, its wildcards escaped.
    pattern: Option<String>,
    sort: SortKey,
    descending: bool,
    limit: i64,
    offset: i64,
}

impl ListQuery {
    /// The `where` clause shared by the count and the page, with its placeholders numbered from
    /// `$1` (the user); returns the clause and the next free placeholder number.
    fn conditions(&self) -> (String, usize) {
        let mut conditions = String::from("user_id = $1");
        let mut next = 2;
        if self.completed.is_some() {
            let _ = write!(conditions, " and completed = ${next}");
            next += 1;
        }
        if self.pattern.is_some() {
            // lower() on both sides: case-insensitive on both backends (SQLite folds ASCII
            // only, PostgreSQL all of Unicode).
            let _ = write!(
                conditions,
                " and (lower(title) like lower(${next}) escape '\\' \
                 or lower(description) like lower(${next}) escape '\\')"
            );
            next += 1;
        }
        (conditions, next)
    }

    /// The `order by` clause; `id` breaks ties so pages never overlap or skip.
    fn order_by(&self) -> String {
        let direction = if self.descending { "desc" } else { "asc" };
        let key = match self.sort {
            SortKey::Created => "created_at",
            SortKey::Updated => "updated_at",
            SortKey::Title => "lower(title)",
            // Tasks without a due date come last in either direction, on both backends (they
            // would otherwise disagree on where nulls go).
            SortKey::DueDate => "due_date is null, due_date",
            SortKey::Priority => "case priority when 'low' then 0 when 'medium' then 1 else 2 end",
        };
        format!("{key} {direction}, id {direction}")
    }

    /// Binds the user and the filters, in the order [`ListQuery::conditions`] numbers them.
    fn bind_conditions<'q, DB: Database, O>(
        &self,
        query: QueryAs<'q, DB, O, DB::Arguments>,
        user: &User,
    ) -> QueryAs<'q, DB, O, DB::Arguments>
    where
        String: Encode<'q, DB> + Type<DB>,
        bool: Encode<'q, DB> + Type<DB>,
    {
        let mut query = query.bind(user.id().to_owned());
        if let Some(completed) = self.completed {
            query = query.bind(completed);
        }
        if let Some(pattern) = &self.pattern {
            query = query.bind(pattern.clone());
        }
        query
    }
}

impl<S: Send + Sync> FromRequestParts<S> for ListQuery {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let Query(pairs) = Query::<Vec<(String, String)>>::try_from_uri(&parts.uri)
            .map_err(|_| ApiError::invalid(&["query"], "Invalid query string", "value_error"))?;
        let mut issues = Vec::new();
        let completed = query_param(
            &pairs,
            &["status", "status_filter"],
            &mut issues,
            &|value| {
                one_of(
                    value,
                    &[
                        ("all", None),
                        ("pending", Some(false)),
                        ("completed", Some(true)),
                    ],
                )
            },
        );
        let sort = query_param(&pairs, &["sort"], &mut issues, &|value| {
            one_of(
                value,
                &[
                    ("created", SortKey::Created),
                    ("updated", SortKey::Updated),
                    ("title", SortKey::Title),
                    ("due_date", SortKey::DueDate),
                    ("priority", SortKey::Priority),
                ],
            )
        });
        let descending = query_param(&pairs, &["order"], &mut issues, &|value| {
            one_of(value, &[("asc", false), ("desc", true)])
        });
        let pattern = query_param(&pairs, &["q"], &mut issues, &keyword_pattern);
        let limit = query_param(&pairs, &["limit"], &mut issues, &|value| {
            bounded_int(value, 1, MAX_LIMIT)
        });
        let offset = query_param(&pairs, &["offset"], &mut issues, &|value| {
            bounded_int(value, 0, i64::MAX)
        });
        if !issues.is_empty() {
            return Err(ApiError::Validation(issues));
        }
        let sort = sort.unwrap_or(SortKey::Created);
        Ok(Self {
            completed: completed.flatten(),
            pattern: pattern.flatten(),
            sort,
            // Without an explicit order: newest first for times, high before low for
            // priority, A to Z for titles and soonest first for due dates.
            descending: descending.unwrap_or(matches!(
                sort,
                SortKey::Created | SortKey::Updated | SortKey::Priority
            )),
            limit: limit.unwrap_or(DEFAULT_LIMIT),
            offset: offset.unwrap_or(0),
        })
    }
}

/// The last value given under any of `names` (FastAPI too takes a repeated parameter's last
/// value), parsed; `None` when absent or invalid (the problem is added to `issues`). Unknown
/// parameters are never looked at.
fn query_param<T>(
    pairs: &[(String, String)],
    names: &[&str],
    issues: &mut Vec<ValidationIssue>,
    parse: &dyn Fn(&str) -> Result<T, Problem>,
) -> Option<T> {
    let (name, value) = pairs
        .iter()
        .rev()
        .find(|(name, _)| names.contains(&name.as_str()))?;
    parse(value)
        .map_err(|(msg, kind)| issues.push(ValidationIssue::new(&["query", name], msg, kind)))
        .ok()
}

/// `q`: a `like` pattern matching the trimmed keyword anywhere; `None` for a blank keyword.
fn keyword_pattern(keyword: &str) -> Result<Option<String>, Problem> {
    let keyword = string(0, MAX_KEYWORD_CHARS, true)(&Value::from(keyword))?;
    Ok((!keyword.is_empty()).then(|| format!("%{}%", escape_like(&keyword))))
}

/// An integer within `min..=max`, with pydantic's messages.
fn bounded_int(value: &str, min: i64, max: i64) -> Result<i64, Problem> {
    let number: i64 = value.trim().parse().map_err(|_| {
        (
            "Input should be a valid integer, unable to parse string as an integer".to_owned(),
            "int_parsing",
        )
    })?;
    if number < min {
        Err((
            format!("Input should be greater than or equal to {min}"),
            "greater_than_equal",
        ))
    } else if number > max {
        Err((
            format!("Input should be less than or equal to {max}"),
            "less_than_equal",
        ))
    } else {
        Ok(number)
    }
}

/// Makes `%`, `_` and the escape character itself match literally in a `like … escape '\'`.
fn escape_like(keyword: &str) -> String {
    let mut escaped = String::with_capacity(keyword.len());
    for c in keyword.chars() {
        if matches!(c, '\\' | '%' | '_') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

/// List the user's tasks.
///
/// Filtered by `status` (or `status_filter`) and keyword `q` (case-insensitive, in the title or
/// the description), sorted, and paged; `X-Total-Count` gives the number of matching tasks
/// before paging.
#[utoipa::path(
    get,
    path = "/api/{user_id}/tasks",
    tag = "tasks",
    params(
        UserPath,
        ("status" = Option<String>, Query, description = "`all` (default), `pending` or `completed`; `status_filter` is accepted too"),
        ("sort" = Option<String>, Query, description = "`created` (default), `updated`, `title`, `due_date` or `priority`"),
        ("order" = Option<String>, Query, description = "`asc` or `desc`; default `desc` for `created`, `updated` and `priority`, else `asc`"),
        ("q" = Option<String>, Query, description = "Keyword searched in title and description, case-insensitively"),
        ("limit" = Option<i64>, Query, minimum = 1, maximum = 500, description = "Page size, default 100"),
        ("offset" = Option<i64>, Query, minimum = 0, description = "Tasks to skip, default 0"),
    ),
    responses(
        (status = 200, description = "The matching tasks", body = [Task],
            headers(("X-Total-Count" = i64, description = "Matching tasks before paging"))),
        ApiErrors,
    )
)]
async fn list_tasks(
    user: User,
    State(state): State<AppState>,
    query: ListQuery,
) -> Result<impl IntoResponse, ApiError> {
    let (conditions, next) = query.conditions();
    let count_sql = format!("select count(*) from tasks where {conditions}");
    let page_sql = format!(
        "select * from tasks where {conditions} order by {} limit ${next} offset ${}",
        query.order_by(),
        next + 1
    );
    // Both statements are assembled from fixed fragments only; every value is a bound parameter.
    let (total, tasks) = run_query!(state.store(), "list_tasks", |pool| async {
        let (total,) = query
            .bind_conditions(sqlx::query_as::<_, (i64,)>(AssertSqlSafe(count_sql)), &user)
            .fetch_one(pool)
            .await?;
        let tasks = query
            .bind_conditions(sqlx::query_as::<_, Task>(AssertSqlSafe(page_sql)), &user)
            .bind(query.limit)
            .bind(query.offset)
            .fetch_all(pool)
            .await?;
        Ok::<_, sqlx::Error>((total, tasks))
    }
    .await)?;
    Ok(([("x-total-count", total.to_string())], Json(tasks)))
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
    let task = run_query!(state.store(), "create_task", |pool| {
        sqlx::query_as::<_, Task>(
            "insert into tasks \
                 (user_id, title, description, completed, priority, due_date, created_at, updated_at) \
             values ($1, $2, $3, false, $4, $5, $6, $6) \
             returning *",
        )
        .bind(user.id())
        .bind(&new.title)
        .bind(&new.description)
        .bind(new.priority.as_str())
        .bind(new.due_date)
        .bind(now())
        .fetch_one(pool)
        .await
    })?;
    // The path as received (with the user id as the client encoded it) plus the new id.
    let location = format!("{}/{}", uri.path().trim_end_matches('/'), task.id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(task),
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
) -> Result<Json<Task>, ApiError> {
    let task = run_query!(state.store(), "get_task", |pool| {
        sqlx::query_as::<_, Task>("select * from tasks where id = $1 and user_id = $2")
            .bind(id)
            .bind(user.id())
            .fetch_optional(pool)
            .await
    })?;
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
) -> Result<Json<Task>, ApiError> {
    // One statement, so concurrent partial updates of different fields never undo each other:
    // an absent field keeps the stored value.
    let task = run_query!(state.store(), "update_task", |pool| {
        sqlx::query_as::<_, Task>(
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
        .bind(&changes.title)
        .bind(changes.description.is_some())
        .bind(changes.description.clone().flatten())
        .bind(changes.completed)
        .bind(changes.priority.map(Priority::as_str))
        .bind(changes.due_date.is_some())
        .bind(changes.due_date.flatten())
        .bind(now())
        .fetch_optional(pool)
        .await
    })?;
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
    let deleted = run_query!(state.store(), "delete_task", |pool| {
        sqlx::query("delete from tasks where id = $1 and user_id = $2")
            .bind(id)
            .bind(user.id())
            .execute(pool)
            .await
            .map(|done| done.rows_affected())
    })?;
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
) -> Result<Json<Task>, ApiError> {
    let task = run_query!(state.store(), "set_completion", |pool| {
        sqlx::query_as::<_, Task>(
            "update tasks set completed = coalesce($3, not completed), updated_at = $4 \
             where id = $1 and user_id = $2 \
             returning *",
        )
        .bind(id)
        .bind(user.id())
        .bind(change.completed)
        .bind(now())
        .fetch_optional(pool)
        .await
    })?;
    found(task)
}

/// The task, or the 404 that does not say whether it is missing or someone else's.
fn found(task: Option<Task>) -> Result<Json<Task>, ApiError> {
    task.map(Json).ok_or(ApiError::TaskNotFound)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_wildcards_are_escaped() {
        assert_eq!(escape_like(r"50%_off\now"), r"50\%\_off\\now");
    }

    #[test]
    fn due_dates_accept_what_pydantic_accepts() {
        let parse = |text: &str| datetime(&Value::String(text.to_owned())).map(|t| t.to_rfc3339());
        assert_eq!(
            parse("2026-01-31T17:00:00+02:00"),
            Ok("2026-01-31T15:00:00+00:00".to_owned())
        );
        assert_eq!(
            parse("2026-01-31T17:00:00.1234567"),
            Ok("2026-01-31T17:00:00.123456+00:00".to_owned())
        );
        assert_eq!(
            parse("2026-01-31"),
            Ok("2026-01-31T00:00:00+00:00".to_owned())
        );
        for bad in ["tomorrow", "2026-13-01", "31/01/2026", ""] {
            assert_eq!(
                parse(bad).map_err(|(_, kind)| kind),
                Err("datetime_parsing"),
                "{bad}"
            );
        }
        assert_eq!(
            datetime(&Value::from(5)).map_err(|(_, kind)| kind),
            Err("datetime_type")
        );
    }

    #[test]
    fn titles_are_counted_in_characters_after_trimming() {
        let title = string(1, TITLE_MAX_CHARS, true);
        assert_eq!(
            title(&Value::from(format!("  {}  ", "é".repeat(200)))).map(|t| t.chars().count()),
            Ok(200)
        );
        assert_eq!(
            title(&Value::from("é".repeat(201))).map_err(|(_, kind)| kind),
            Err("string_too_long")
        );
        assert_eq!(
            title(&Value::from("   ")).map_err(|(_, kind)| kind),
            Err("string_too_short")
        );
        assert_eq!(
            title(&Value::Null).map_err(|(_, kind)| kind),
            Err("string_type")
        );
    }
}
