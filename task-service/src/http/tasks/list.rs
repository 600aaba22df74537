//! `GET /api/{user_id}/tasks`: the list's query string (filters, order, page), validated the
//! way FastAPI does, and the dynamic SQL built from it.

use std::fmt::Write as _;

use axum::extract::{FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::response::IntoResponse;
use common::error::ValidationIssue;
use serde_json::Value;

use super::input::{Task, TaskJson};
use crate::http::AppState;
use crate::http::auth::User;
use crate::http::error::ApiError;
use crate::http::extract::{Problem, one_of, string};
use crate::http::openapi::{ApiErrors, ErrorMessage, UserPath};
use crate::store::{Backend, Count, FromSqliteRow, KEYWORD_INDEX_MIN_CHARS, SqliteRow, Statement};

/// The page size when the client gives none, and the largest it may ask for.
const DEFAULT_LIMIT: i64 = 100;
const MAX_LIMIT: i64 = 500;
/// The longest search keyword, in characters. A `like` match costs about the keyword's length
/// times the text's, so the bound keeps one search's cost small; a title is at most this long.
const MAX_KEYWORD_CHARS: usize = 200;

/// The list's sort keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SortKey {
    Created,
    Updated,
    Title,
    DueDate,
    Priority,
}

/// The list's query string, validated: filters, order and page.
#[derive(Debug)]
pub(super) struct ListQuery {
    /// `None` for all tasks, else only completed (`true`) or pending (`false`) ones.
    completed: Option<bool>,
    /// The keyword searched for, trimmed, with its `like` pattern.
    keyword: Option<Keyword>,
    sort: SortKey,
    descending: bool,
    limit: i64,
    offset: i64,
}

/// A search keyword: as given (trimmed), and as a `like` pattern matching it anywhere with its
/// wildcards escaped.
#[derive(Debug)]
struct Keyword {
    text: String,
    pattern: String,
}

impl Keyword {
    /// Whether the backend's trigram index can narrow the search: only keywords of at least
    /// three characters hold a trigram. Shorter ones scan the user's tasks, as the list does.
    fn uses_index(&self) -> bool {
        self.text.chars().count() >= KEYWORD_INDEX_MIN_CHARS
    }
}

impl ListQuery {
    /// The `where` clause shared by the count and the page, with its placeholders numbered from
    /// `$1` (the user); returns the clause and the next free placeholder number.
    fn conditions(&self, backend: Backend) -> (String, usize) {
        let mut conditions = String::from("user_id = $1");
        let mut next = 2;
        if self.completed.is_some() {
            let _ = write!(conditions, " and completed = ${next}");
            next += 1;
        }
        if let Some(keyword) = &self.keyword {
            // lower() on both sides: case-insensitive on both backends (SQLite folds ASCII
            // only, PostgreSQL all of Unicode).
            let _ = write!(
                conditions,
                " and (lower(title) like lower(${next}) escape '\\' \
                 or lower(description) like lower(${next}) escape '\\')"
            );
            next += 1;
            // The index finds the candidates; the `like` above decides, so the results are
            // the same with or without it.
            if keyword.uses_index() {
                let _ = write!(conditions, " and {}", backend.keyword_index_condition(next));
                next += 1;
            }
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

    /// The page's statement: the matching tasks in order, `limit` and `offset` bound after the
    /// conditions. On PostgreSQL the page and the number of matching tasks come in one
    /// statement: `count(*) over ()` is taken before `limit`, so every row carries the total,
    /// and the plan still walks the index in the requested order. SQLite computes a window in a
    /// subquery it then sorts, so there the page is read without one (a walk of the index that
    /// stops at `limit`), and the total is counted only when the page cannot tell it.
    fn page_sql(&self, backend: Backend) -> String {
        let (conditions, next) = self.conditions(backend);
        let window = match backend {
            Backend::Postgres => ", count(*) over () as total_matching",
            Backend::Sqlite => "",
        };
        format!(
            "select *{window} from tasks where {conditions} order by {} limit ${next} offset ${}",
            self.order_by(),
            next + 1
        )
    }

    /// The statement counting the matching tasks, bound like the page without its window.
    fn count_sql(&self, backend: Backend) -> String {
        let (conditions, _) = self.conditions(backend);
        format!("select count(*) from tasks where {conditions}")
    }

    /// Binds the user and the filters to `statement`, in the order [`ListQuery::conditions`]
    /// numbers them.
    fn bind_conditions(&self, statement: Statement, user: &User, backend: Backend) -> Statement {
        let mut statement = statement.bind(user.id());
        if let Some(completed) = self.completed {
            statement = statement.bind(completed);
        }
        if let Some(keyword) = &self.keyword {
            statement = statement.bind(keyword.pattern.clone());
            if keyword.uses_index() {
                statement =
                    statement.bind(backend.keyword_index_key(&keyword.text, &keyword.pattern));
            }
        }
        statement
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
        let keyword = query_param(&pairs, &["q"], &mut issues, &keyword);
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
            keyword: keyword.flatten(),
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

/// `q`, trimmed, at most [`MAX_KEYWORD_CHARS`]; `None` for a blank keyword.
fn keyword(keyword: &str) -> Result<Option<Keyword>, Problem> {
    let text = string(0, MAX_KEYWORD_CHARS, true)(&Value::from(keyword))?;
    Ok((!text.is_empty()).then(|| Keyword {
        pattern: format!("%{}%", escape_like(&text)),
        text,
    }))
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

/// A row of the list's page on PostgreSQL: the task and the number of tasks matching the
/// filters.
#[derive(sqlx::FromRow)]
struct CountedTask {
    #[sqlx(flatten)]
    task: Task,
    total_matching: i64,
}

impl FromSqliteRow for CountedTask {
    fn from_sqlite_row(row: &SqliteRow<'_, '_>) -> rusqlite::Result<Self> {
        Ok(Self {
            task: Task::from_sqlite_row(row)?,
            total_matching: row.get("total_matching")?,
        })
    }
}

/// List the user's tasks.
///
/// Filtered by `status` (or `status_filter`) and keyword `q` (case-insensitive, in the title or
/// the description), sorted, and paged; `X-Total-Count` gives the number of matching tasks
/// before paging. A user runs at most two searches at once; further ones wait up to five
/// seconds for a turn, then get a 429.
#[utoipa::path(
    get,
    path = "/api/{user_id}/tasks",
    tag = "tasks",
    params(
        UserPath,
        ("status" = Option<String>, Query, description = "`all` (default), `pending` or `completed`; `status_filter` is accepted too"),
        ("sort" = Option<String>, Query, description = "`created` (default), `updated`, `title`, `due_date` or `priority`"),
        ("order" = Option<String>, Query, description = "`asc` or `desc`; default `desc` for `created`, `updated` and `priority`, else `asc`"),
        ("q" = Option<String>, Query, max_length = 200, description = "Keyword searched in title and description, case-insensitively; at most 200 characters"),
        ("limit" = Option<i64>, Query, minimum = 1, maximum = 500, description = "Page size, default 100"),
        ("offset" = Option<i64>, Query, minimum = 0, description = "Tasks to skip, default 0"),
    ),
    responses(
        (status = 200, description = "The matching tasks", body = [Task],
            headers(("X-Total-Count" = i64, description = "Matching tasks before paging"))),
        (status = 429, description = "The user already runs two searches", body = ErrorMessage),
        ApiErrors,
    )
)]
pub(super) async fn list_tasks(
    user: User,
    State(state): State<AppState>,
    query: ListQuery,
) -> Result<impl IntoResponse, ApiError> {
    // A search waits for one of its user's few slots, so that one user's searches cannot take
    // every connection; the slot is held until the reply is built.
    let _slot = match &query.keyword {
        Some(_) => Some(
            state
                .searches()
                .acquire(user.id())
                .await
                .ok_or(ApiError::TooManySearches)?,
        ),
        None => None,
    };
    let backend = state.store().backend();
    // Both statements are assembled from fixed fragments only; every value is a bound parameter.
    let page = Statement::new(query.page_sql(backend));
    let page = query
        .bind_conditions(page, &user, backend)
        .bind(query.limit)
        .bind(query.offset);
    let (tasks, counted): (Vec<Task>, _) = match backend {
        Backend::Postgres => {
            let rows: Vec<CountedTask> = state.store().fetch_all("list_tasks", page).await?;
            let total = rows.first().map(|row| row.total_matching);
            (rows.into_iter().map(|row| row.task).collect(), total)
        }
        Backend::Sqlite => (state.store().fetch_all("list_tasks", page).await?, None),
    };
    let shown = i64::try_from(tasks.len()).unwrap_or(i64::MAX);
    let total = match counted {
        Some(total) => total,
        // A page shorter than the limit is the end of the list: past the offset there are
        // exactly the tasks it shows (an empty page says so only at offset 0: past the end it
        // says nothing about what comes before).
        None if shown < query.limit && (shown > 0 || query.offset == 0) => query.offset + shown,
        None => {
            let count_sql = query.count_sql(backend);
            let count = query.bind_conditions(Statement::new(count_sql), &user, backend);
            let count = state
                .store()
                .fetch_optional::<Count>("list_tasks", count)
                .await?
                .map_or(0, |Count(total)| total);
            // A separate statement may see tasks deleted since the page was read: a total is
            // never fewer than a page that shows tasks reaches.
            if shown > 0 {
                count.max(query.offset + shown)
            } else {
                count
            }
        }
    };
    Ok(([("x-total-count", total.to_string())], TaskJson(tasks)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_wildcards_are_escaped() {
        assert_eq!(escape_like(r"50%_off\now"), r"50\%\_off\\now");
    }

    /// The lists by creation time: every status filter, newest and oldest first.
    fn lists_by_creation() -> impl Iterator<Item = ListQuery> {
        [None, Some(true), Some(false)]
            .into_iter()
            .flat_map(|completed| [true, false].map(|descending| (completed, descending)))
            .map(|(completed, descending)| ListQuery {
                completed,
                keyword: None,
                sort: SortKey::Created,
                descending,
                limit: DEFAULT_LIMIT,
                offset: 0,
            })
    }

    /// On PostgreSQL, with scans that ignore the index disabled (an almost empty table would
    /// otherwise be read whole), the lists by creation time, with and without a status, are
    /// scans of the one user index in order: no sort of the user's tasks.
    #[cfg(feature = "testing")]
    #[tokio::test]
    async fn postgres_lists_by_creation_scan_the_user_index_in_order() {
        use sqlx::Connection as _;
        let Some(db) = crate::testing::PostgresTestDatabase::create("list_plans").await else {
            return;
        };
        let mut connection = sqlx::PgConnection::connect(db.url.as_str())
            .await
            .expect("connect");
        crate::store::POSTGRES_MIGRATIONS
            .run(&mut connection)
            .await
            .expect("the migrations apply");
        sqlx::raw_sql("set enable_seqscan = off; set enable_bitmapscan = off")
            .execute(&mut connection)
            .await
            .expect("planner settings");
        for query in lists_by_creation() {
            let (completed, descending) = (query.completed, query.descending);
            let sql = format!("explain (costs off) {}", query.page_sql(Backend::Postgres));
            let mut explain =
                sqlx::query_scalar::<_, String>(sqlx::AssertSqlSafe(sql)).bind("user-1");
            if let Some(completed) = completed {
                explain = explain.bind(completed);
            }
            let plan = explain
                .bind(query.limit)
                .bind(query.offset)
                .fetch_all(&mut connection)
                .await
                .expect("explain")
                .join("\n");
            assert!(
                plan.contains("Index Scan")
                    && plan.contains("using tasks_user_created")
                    && !plan.contains("Sort"),
                "status {completed:?}, descending {descending}: {plan}"
            );
        }
        drop(connection);
        db.drop_now().await;
    }

    /// SQLite's plan for `sql` on a database built by the service's migrations, one line per
    /// step.
    fn sqlite_plan(connection: &rusqlite::Connection, sql: &str) -> String {
        let mut statement = connection
            .prepare(&format!("explain query plan {sql}"))
            .expect("the list's statement prepares");
        // Unbound parameters are null: the plan does not depend on their values.
        let nulls = vec![rusqlite::types::Null; statement.parameter_count()];
        let steps = statement
            .query_map(rusqlite::params_from_iter(nulls), |row| {
                row.get::<_, String>(3)
            })
            .expect("plan")
            .collect::<rusqlite::Result<Vec<_>>>()
            .expect("plan rows");
        steps.join("\n")
    }

    /// Newest-first and oldest-first lists, with and without a status filter, are walks of the
    /// one user index in order (no sort of the user's tasks), and their counts read the index
    /// alone: the plans the SQLite migrations' comments promise.
    #[test]
    fn sqlite_lists_by_creation_read_the_user_index_in_order() {
        let connection = rusqlite::Connection::open_in_memory().expect("in-memory database");
        for migration in crate::store::SQLITE_MIGRATIONS.iter() {
            connection
                .execute_batch(migration.sql.as_str())
                .expect("the migration applies");
        }
        for query in lists_by_creation() {
            let (completed, descending) = (query.completed, query.descending);
            let page = sqlite_plan(&connection, &query.page_sql(Backend::Sqlite));
            assert!(
                page.contains("USING INDEX tasks_user_created (user_id=?)")
                    && !page.contains("TEMP B-TREE"),
                "status {completed:?}, descending {descending}: {page}"
            );
            let count = sqlite_plan(&connection, &query.count_sql(Backend::Sqlite));
            assert!(
                count.contains("USING COVERING INDEX tasks_user_created (user_id=?)"),
                "status {completed:?}: {count}"
            );
        }
    }
}
