//! A row to insert, written once for both backends like a [`Statement`], but as its values
//! rather than SQL text, so that the store can insert it together with the rows for the same
//! table that arrive meanwhile: PostgreSQL takes a group of rows as one statement
//! ([`super::batch`]), one round trip and one commit for all of them. SQLite's writer thread
//! already commits concurrent writes together; there each row is its own statement.

use std::sync::OnceLock;

use chrono::{DateTime, Utc};
use sqlx::Arguments;
use sqlx::postgres::PgArguments;

use super::statement::{Param, Statement};

/// A column's SQL type, which a group insert needs for its arrays even when every value is
/// null.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqlType {
    Text,
    Int,
    Bool,
    Time,
}

impl SqlType {
    /// PostgreSQL's name for an array of this type.
    fn postgres_array(self) -> &'static str {
        match self {
            Self::Text => "text[]",
            Self::Int => "int8[]",
            Self::Bool => "bool[]",
            Self::Time => "timestamptz[]",
        }
    }

    /// Whether `param` holds a value of this type.
    fn holds(self, param: &Param) -> bool {
        matches!(
            (self, param),
            (Self::Text, Param::Text(_))
                | (Self::Int, Param::Int(_))
                | (Self::Bool, Param::Bool(_))
                | (Self::Time, Param::Time(_))
        )
    }
}

/// Where rows go: a table and the columns each row gives, in order. Its two statements are
/// written once, when first used.
#[derive(Debug)]
pub struct InsertInto {
    table: &'static str,
    columns: &'static [(&'static str, SqlType)],
    one: OnceLock<String>,
    group: OnceLock<String>,
}

impl InsertInto {
    pub const fn new(table: &'static str, columns: &'static [(&'static str, SqlType)]) -> Self {
        Self {
            table,
            columns,
            one: OnceLock::new(),
            group: OnceLock::new(),
        }
    }

    fn column_list(&self) -> String {
        let names: Vec<&str> = self.columns.iter().map(|(name, _)| *name).collect();
        names.join(", ")
    }

    /// `insert … values ($1, …) returning *`: one row.
    pub(super) fn one_sql(&self) -> &str {
        self.one.get_or_init(|| {
            let placeholders: Vec<String> =
                (1..=self.columns.len()).map(|n| format!("${n}")).collect();
            format!(
                "insert into {} ({}) values ({}) returning *",
                self.table,
                self.column_list(),
                placeholders.join(", ")
            )
        })
    }

    /// [`InsertInto::one_sql`] with one row's `values`, in column order.
    pub(super) fn one_statement(&self, values: Vec<Param>) -> Statement {
        values
            .into_iter()
            .fold(Statement::new(self.one_sql()), Statement::bind)
    }

    /// `insert … select … from unnest($1::text[], …) … returning *` (PostgreSQL): any number
    /// of rows, one array per column. The rows are inserted, and returned, in the arrays'
    /// order: the insert takes them one at a time from a select ordered by position.
    pub(super) fn group_sql(&self) -> &str {
        self.group.get_or_init(|| {
            let arrays: Vec<String> = self
                .columns
                .iter()
                .enumerate()
                .map(|(i, (_, kind))| format!("${}::{}", i + 1, kind.postgres_array()))
                .collect();
            let columns = self.column_list();
            format!(
                "insert into {table} ({columns}) \
                 select {columns} from unnest({arrays}) with ordinality as r ({columns}, position) \
                 order by position \
                 returning *",
                table = self.table,
                arrays = arrays.join(", "),
            )
        })
    }

    /// The arrays of [`InsertInto::group_sql`] for `rows`, each row's values in column order.
    pub(super) fn group_arguments<'r>(
        &self,
        rows: impl Iterator<Item = &'r [Param]> + Clone,
    ) -> Result<PgArguments, sqlx::Error> {
        let mut arguments = PgArguments::default();
        for (index, (name, kind)) in self.columns.iter().enumerate() {
            let values = rows.clone().map(|row| &row[index]);
            let added = match kind {
                SqlType::Text => arguments.add(collect(values, name, |p| match p {
                    Param::Text(v) => Some(v.clone()),
                    _ => None,
                })?),
                SqlType::Int => arguments.add(collect(values, name, |p| match p {
                    Param::Int(v) => Some(*v),
                    _ => None,
                })?),
                SqlType::Bool => arguments.add(collect(values, name, |p| match p {
                    Param::Bool(v) => Some(*v),
                    _ => None,
                })?),
                SqlType::Time => arguments.add(collect::<Option<DateTime<Utc>>>(
                    values,
                    name,
                    |p| match p {
                        Param::Time(v) => Some(*v),
                        _ => None,
                    },
                )?),
            };
            added.map_err(sqlx::Error::Encode)?;
        }
        Ok(arguments)
    }
}

/// One column's values across the rows, refusing a value of another type.
fn collect<'r, T>(
    values: impl Iterator<Item = &'r Param>,
    column: &str,
    take: impl Fn(&Param) -> Option<T>,
) -> Result<Vec<T>, sqlx::Error> {
    values
        .map(|param| {
            take(param).ok_or_else(|| {
                sqlx::Error::Encode(format!("column {column} takes another type").into())
            })
        })
        .collect()
}

/// One row for an [`InsertInto`]: its values, in column order.
#[derive(Debug, Clone)]
pub struct Insert {
    into: &'static InsertInto,
    values: Vec<Param>,
}

impl Insert {
    /// A row with no values yet.
    pub fn new(into: &'static InsertInto) -> Self {
        Self {
            into,
            values: Vec::with_capacity(into.columns.len()),
        }
    }

    /// Gives the next column's value.
    pub fn value(mut self, value: impl Into<Param>) -> Self {
        self.values.push(value.into());
        self
    }

    /// Where the row goes.
    pub(super) fn table(&self) -> &'static InsertInto {
        self.into
    }

    /// The row's values, once each column has one of its type.
    pub(super) fn into_values(self) -> Result<Vec<Param>, sqlx::Error> {
        let columns = self.into.columns;
        if self.values.len() != columns.len() {
            return Err(sqlx::Error::Encode(
                format!(
                    "{} values for the {} columns of {}",
                    self.values.len(),
                    columns.len(),
                    self.into.table
                )
                .into(),
            ));
        }
        if let Some((name, _)) = columns
            .iter()
            .zip(&self.values)
            .find_map(|(column, value)| (!column.1.holds(value)).then_some(column))
        {
            return Err(sqlx::Error::Encode(
                format!("column {name} takes another type").into(),
            ));
        }
        Ok(self.values)
    }

    /// The row as a statement of its own.
    pub(super) fn into_statement(self) -> Result<Statement, sqlx::Error> {
        let into = self.into;
        Ok(into.one_statement(self.into_values()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static NOTES: InsertInto = InsertInto::new(
        "notes",
        &[
            ("owner", SqlType::Text),
            ("rank", SqlType::Int),
            ("done", SqlType::Bool),
            ("due", SqlType::Time),
        ],
    );

    #[test]
    fn one_row_is_a_plain_insert() {
        assert_eq!(
            NOTES.one_sql(),
            "insert into notes (owner, rank, done, due) values ($1, $2, $3, $4) returning *"
        );
    }

    #[test]
    fn a_group_is_one_array_per_column_in_the_rows_order() {
        assert_eq!(
            NOTES.group_sql(),
            "insert into notes (owner, rank, done, due) select owner, rank, done, due from \
             unnest($1::text[], $2::int8[], $3::bool[], $4::timestamptz[]) with ordinality \
             as r (owner, rank, done, due, position) order by position returning *"
        );
    }

    #[test]
    fn a_row_needs_each_column_once_with_its_type() {
        let full = Insert::new(&NOTES)
            .value("ann")
            .value(1)
            .value(false)
            .value(None::<DateTime<Utc>>);
        let statement = full.clone().into_statement().expect("a whole row");
        assert_eq!(statement.params().len(), 4);
        assert!(full.clone().into_values().is_ok());

        let short = Insert::new(&NOTES).value("ann").value(1).value(false);
        assert!(short.into_values().is_err());
        let mistyped = Insert::new(&NOTES)
            .value("ann")
            .value("one")
            .value(false)
            .value(None::<DateTime<Utc>>);
        let err = mistyped.into_values().expect_err("rank is an integer");
        assert!(err.to_string().contains("rank"), "{err}");
    }
}
