//! What a task is and what clients may send: the task model, the three request bodies, and
//! the field rules they share (title and description lengths, due dates).

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, SubsecRound, Utc};
use common::error::JSON_CONTENT_TYPE;
use common::error::ValidationIssue;
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::http::error::ApiError;
use crate::http::extract::{BodyFields, FromJsonBody, Problem, boolean, nullable, one_of, string};
use crate::store::{FromSqliteRow, SqliteRow};
use crate::timestamp;

/// The most characters a title may have, after trimming.
const TITLE_MAX_CHARS: usize = 200;
/// The most characters a description may have.
pub(super) const DESCRIPTION_MAX_CHARS: usize = 1000;

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

    pub(super) fn as_str(self) -> &'static str {
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
    #[serde(serialize_with = "timestamp::serialize_option")]
    pub due_date: Option<DateTime<Utc>>,
    #[serde(serialize_with = "timestamp::serialize")]
    pub created_at: DateTime<Utc>,
    #[serde(serialize_with = "timestamp::serialize")]
    pub updated_at: DateTime<Utc>,
}

/// A task or a page of tasks as a reply's JSON body, written into a buffer sized for it up
/// front: axum's `Json` starts at 128 bytes and doubles, copying, as a page of tasks fills it.
pub struct TaskJson<T>(pub T);

/// About how many bytes a value's JSON takes (more when its text needs escaping).
pub trait JsonSize {
    fn json_size(&self) -> usize;
}

impl JsonSize for Task {
    fn json_size(&self) -> usize {
        // The field names, three times, the id and the fixed values take under 256 bytes.
        256 + self.user_id.len()
            + self.title.len()
            + self.description.as_ref().map_or(0, String::len)
    }
}

impl JsonSize for Vec<Task> {
    fn json_size(&self) -> usize {
        2 + self.iter().map(|task| task.json_size() + 1).sum::<usize>()
    }
}

impl<T: Serialize + JsonSize> IntoResponse for TaskJson<T> {
    fn into_response(self) -> Response {
        let mut body = Vec::with_capacity(self.0.json_size());
        match serde_json::to_writer(&mut body, &self.0) {
            Ok(()) => (
                [(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static(JSON_CONTENT_TYPE),
                )],
                body,
            )
                .into_response(),
            Err(err) => {
                ApiError::Internal(format!("cannot write a task as JSON: {err}")).into_response()
            }
        }
    }
}

impl FromSqliteRow for Task {
    fn from_sqlite_row(row: &SqliteRow<'_, '_>) -> rusqlite::Result<Self> {
        Ok(Self {
            id: row.get("id")?,
            user_id: row.get("user_id")?,
            title: row.get("title")?,
            description: row.get("description")?,
            completed: row.get("completed")?,
            priority: row.get_with("priority", <Priority as TryFrom<String>>::try_from)?,
            due_date: row.time("due_date")?,
            created_at: row.required_time("created_at")?,
            updated_at: row.required_time("updated_at")?,
        })
    }
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
pub(super) fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

#[cfg(test)]
mod tests {
    use super::*;

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
