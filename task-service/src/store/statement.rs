//! A statement as the handlers write it, once for both backends: SQL text with `$1`-style
//! placeholders and the values bound to them, each with its SQL type (a typed null stays typed,
//! which PostgreSQL needs to plan `coalesce($n, column)`).

use chrono::{DateTime, Utc};
use sqlx::Arguments;
use sqlx::postgres::{PgArguments, PgRow};

use crate::timestamp::{self, Offset};

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

    /// The SQL text and the values as sqlx's arguments, for PostgreSQL; both are moved, not
    /// copied.
    pub(super) fn into_postgres(self) -> Result<(String, PgArguments), sqlx::Error> {
        let mut arguments = PgArguments::default();
        for param in self.params {
            match param {
                Param::Text(value) => arguments.add(value),
                Param::Int(value) => arguments.add(value),
                Param::Bool(value) => arguments.add(value),
                Param::Time(value) => arguments.add(value),
            }
            .map_err(sqlx::Error::Encode)?;
        }
        Ok((self.sql, arguments))
    }
}

/// How times are stored in SQLite: RFC 3339 in UTC with a `+00:00` offset, so that text order
/// is time order (see the SQLite migration).
pub fn sqlite_time(time: &DateTime<Utc>) -> String {
    timestamp::format(time, Offset::Colon).as_str().to_owned()
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
    fn from_sqlite_row(row: &SqliteRow<'_, '_>) -> rusqlite::Result<Self>;
}

/// A statement's column names, read once per run rather than once per value.
#[derive(Debug, Clone)]
pub struct Columns(Vec<String>);

impl Columns {
    /// The columns `statement` returns.
    pub fn of(statement: &rusqlite::Statement<'_>) -> Self {
        Self(
            statement
                .column_names()
                .into_iter()
                .map(str::to_owned)
                .collect(),
        )
    }

    fn index(&self, name: &str) -> rusqlite::Result<usize> {
        self.0
            .iter()
            .position(|column| column == name)
            .ok_or_else(|| rusqlite::Error::InvalidColumnName(name.to_owned()))
    }
}

/// One row of a SQLite result, its columns looked up by name.
pub struct SqliteRow<'a, 'r> {
    row: &'a rusqlite::Row<'r>,
    columns: &'a Columns,
}

impl<'a, 'r> SqliteRow<'a, 'r> {
    pub(super) fn new(row: &'a rusqlite::Row<'r>, columns: &'a Columns) -> Self {
        Self { row, columns }
    }

    /// The value of column `name`.
    pub fn get<T: rusqlite::types::FromSql>(&self, name: &str) -> rusqlite::Result<T> {
        self.row.get(self.columns.index(name)?)
    }

    /// The value of column `name`, converted by `convert`; its error is reported against the
    /// column.
    pub fn get_with<T, U, E>(
        &self,
        name: &str,
        convert: impl FnOnce(T) -> Result<U, E>,
    ) -> rusqlite::Result<U>
    where
        T: rusqlite::types::FromSql,
        E: std::error::Error + Send + Sync + 'static,
    {
        let index = self.columns.index(name)?;
        let value = self.row.get(index)?;
        convert(value).map_err(|err| conversion_failure(index, err))
    }

    /// A time stored by [`sqlite_time`] (or any RFC 3339 text) in column `name`.
    pub fn time(&self, name: &str) -> rusqlite::Result<Option<DateTime<Utc>>> {
        let index = self.columns.index(name)?;
        let text = self.row.get_ref(index)?.as_str_or_null()?;
        text.map(timestamp::parse)
            .transpose()
            .map_err(|err| conversion_failure(index, err))
    }

    /// A time that must be there.
    pub fn required_time(&self, name: &str) -> rusqlite::Result<DateTime<Utc>> {
        self.time(name)?.ok_or_else(|| {
            rusqlite::Error::InvalidColumnType(
                self.columns.index(name).unwrap_or_default(),
                name.to_owned(),
                rusqlite::types::Type::Null,
            )
        })
    }
}

/// A text column's value that does not convert to what the row type holds.
fn conversion_failure(
    index: usize,
    err: impl std::error::Error + Send + Sync + 'static,
) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(index, rusqlite::types::Type::Text, Box::new(err))
}

/// A row holding one integer, such as a `count(*)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::FromRow)]
pub struct Count(pub i64);

impl FromSqliteRow for Count {
    fn from_sqlite_row(row: &SqliteRow<'_, '_>) -> rusqlite::Result<Self> {
        row.row.get(0).map(Self)
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
