//! A statement as the handlers write it, once for both backends: SQL text with `$1`-style
//! placeholders and the values bound to them, each with its SQL type (a typed null stays typed,
//! which PostgreSQL needs to plan `coalesce($n, column)`).

use chrono::{DateTime, SecondsFormat, Utc};
use sqlx::Arguments;
use sqlx::postgres::{PgArguments, PgRow};

/// One bound value.
#[derive(Debug, Clone, PartialEq)]
pub enum Param {
    Text(Option<String>),
    Int(Option<i64>),
    Bool(Option<bool>),
    Time(Option<DateTime<Utc>>),
}

impl From<&str> for Param {
    fn from(value: &str) -> Self {
        Self::Text(Some(value.to_owned()))
    }
}

impl From<String> for Param {
    fn from(value: String) -> Self {
        Self::Text(Some(value))
    }
}

impl From<Option<String>> for Param {
    fn from(value: Option<String>) -> Self {
        Self::Text(value)
    }
}

impl From<Option<&'static str>> for Param {
    fn from(value: Option<&'static str>) -> Self {
        Self::Text(value.map(str::to_owned))
    }
}

impl From<i64> for Param {
    fn from(value: i64) -> Self {
        Self::Int(Some(value))
    }
}

impl From<bool> for Param {
    fn from(value: bool) -> Self {
        Self::Bool(Some(value))
    }
}

impl From<Option<bool>> for Param {
    fn from(value: Option<bool>) -> Self {
        Self::Bool(value)
    }
}

impl From<DateTime<Utc>> for Param {
    fn from(value: DateTime<Utc>) -> Self {
        Self::Time(Some(value))
    }
}

impl From<Option<DateTime<Utc>>> for Param {
    fn from(value: Option<DateTime<Utc>>) -> Self {
        Self::Time(value)
    }
}

/// SQL text and its values, in placeholder order.
#[derive(Debug, Clone)]
pub struct Statement {
    sql: String,
    params: Vec<Param>,
}

impl Statement {
    /// A statement with no values bound yet. The text must be assembled from fixed fragments
    /// only: every value is a bound parameter.
    pub fn new(sql: impl Into<String>) -> Self {
        Self {
            sql: sql.into(),
            params: Vec::new(),
        }
    }

    /// Binds the next placeholder.
    pub fn bind(mut self, value: impl Into<Param>) -> Self {
        self.params.push(value.into());
        self
    }

    /// The SQL text.
    pub fn sql(&self) -> &str {
        &self.sql
    }

    /// Whether the statement may change the database: anything but a `select`.
    pub fn writes(&self) -> bool {
        let keyword = self.sql.split_whitespace().next().unwrap_or_default();
        !keyword.eq_ignore_ascii_case("select")
    }

    /// The values, in placeholder order.
    pub fn params(&self) -> &[Param] {
        &self.params
    }

    /// The values as sqlx's arguments for PostgreSQL.
    pub(super) fn postgres_arguments(&self) -> Result<PgArguments, sqlx::Error> {
        let mut arguments = PgArguments::default();
        for param in &self.params {
            match param {
                Param::Text(value) => arguments.add(value.clone()),
                Param::Int(value) => arguments.add(*value),
                Param::Bool(value) => arguments.add(*value),
                Param::Time(value) => arguments.add(*value),
            }
            .map_err(sqlx::Error::Encode)?;
        }
        Ok(arguments)
    }
}

/// How times are stored in SQLite: RFC 3339 in UTC with a `+00:00` offset, so that text order
/// is time order (see the SQLite migration).
pub fn sqlite_time(time: &DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::AutoSi, false)
}

/// A row type the store decodes on either backend: sqlx's `FromRow` on PostgreSQL, and
/// [`FromSqliteRow`] on SQLite.
pub trait Record:
    for<'r> sqlx::FromRow<'r, PgRow> + FromSqliteRow + Send + Unpin + 'static
{
}

impl<T> Record for T where
    T: for<'r> sqlx::FromRow<'r, PgRow> + FromSqliteRow + Send + Unpin + 'static
{
}

/// Decoding a SQLite row.
pub trait FromSqliteRow: Sized {
    fn from_sqlite_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Self>;
}

/// Reads a time stored by [`sqlite_time`] (or any RFC 3339 text) from column `name`.
pub fn sqlite_time_column(
    row: &rusqlite::Row<'_>,
    name: &str,
) -> rusqlite::Result<Option<DateTime<Utc>>> {
    let Some(text) = row.get_ref(name)?.as_str_or_null()? else {
        return Ok(None);
    };
    DateTime::parse_from_rfc3339(text)
        .map(|time| Some(time.with_timezone(&Utc)))
        .map_err(|err| {
            let index = row.as_ref().column_index(name).unwrap_or_default();
            rusqlite::Error::FromSqlConversionFailure(
                index,
                rusqlite::types::Type::Text,
                Box::new(err),
            )
        })
}

/// A row holding one integer, such as a `count(*)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::FromRow)]
pub struct Count(pub i64);

impl FromSqliteRow for Count {
    fn from_sqlite_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        row.get(0).map(Self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_select_is_read_only() {
        assert!(!Statement::new("select * from tasks").writes());
        assert!(!Statement::new("  SELECT count(*) from tasks").writes());
        for sql in [
            "insert into tasks values ($1) returning *",
            "update tasks set title = $1 returning *",
            "delete from tasks where id = $1",
            "with x as (select 1) insert into tasks select * from x",
        ] {
            assert!(Statement::new(sql).writes(), "{sql}");
        }
    }
}
