//! Group inserts on PostgreSQL: the rows for one table that arrive while earlier ones are being
//! inserted wait, and go to the server together, as one statement ([`InsertInto::group_sql`]):
//! one round trip, one plan, one commit and one WAL flush for the group instead of one each.
//!
//! A row waits only while [`MAX_INSERTERS`] groups are already on their way; a lone row goes
//! at once, as a plain insert. Each group runs on a task of its own, so a request that goes away
//! never stops the rows of others; a row whose request has gone before its group is taken is
//! left out.
//!
//! Each row's outcome is its own. A group statement is atomic: when the server refuses it for a
//! value (a constraint, a bad datum: SQLSTATE classes 22 and 23), none of its rows was written,
//! and each is then inserted alone, so that only the offending one fails. Any other failure
//! (no connection, the statement timeout, a broken connection) is every row's.

use std::sync::{Arc, Mutex};

use sqlx::AssertSqlSafe;
use sqlx::postgres::PgRow;
use tokio::sync::oneshot;

use super::DbError;
use super::insert::{Insert, InsertInto};
use super::postgres::{Lease, PgPool};
use super::statement::{Param, Statement};

/// The most rows one statement takes; the rest wait for the next.
const MAX_GROUP: usize = 64;
/// Groups being inserted at once, per table (fewer when the pool is smaller).
pub(super) const MAX_INSERTERS: usize = 4;

/// The waiting rows of every table the pool has inserted into.
#[derive(Default)]
pub(super) struct Groups {
    tables: Mutex<Vec<TableRows>>,
}

/// A table and its waiting rows.
type TableRows = (&'static InsertInto, Arc<Mutex<Waiting>>);

/// One table's rows waiting to be inserted.
#[derive(Default)]
struct Waiting {
    rows: Vec<Pending>,
    /// Tasks inserting groups now: each takes the next group when it is done with its own.
    inserters: usize,
}

/// A waiting row and where its outcome goes.
struct Pending {
    values: Vec<Param>,
    outcome: oneshot::Sender<Result<PgRow, DbError>>,
}

impl Groups {
    /// The waiting rows of `table`.
    fn waiting(&self, table: &'static InsertInto) -> Arc<Mutex<Waiting>> {
        let mut tables = self
            .tables
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some((_, waiting)) = tables.iter().find(|(t, _)| std::ptr::eq(*t, table)) {
            return Arc::clone(waiting);
        }
        let waiting = Arc::new(Mutex::new(Waiting::default()));
        tables.push((table, Arc::clone(&waiting)));
        waiting
    }
}

/// Inserts `insert` on `pool`, with the rows for the same table that wait beside it; returns
/// the inserted row (`returning *`).
pub(super) async fn insert(
    pool: &PgPool,
    groups: &Groups,
    inserters: usize,
    insert: Insert,
) -> Result<PgRow, DbError> {
    let table = insert.table();
    let values = insert.into_values()?;
    let waiting = groups.waiting(table);
    let (outcome, received) = oneshot::channel();
    let start = {
        let mut queue = lock(&waiting);
        queue.rows.push(Pending { values, outcome });
        let start = queue.inserters < inserters.max(1);
        if start {
            queue.inserters += 1;
        }
        start
    };
    if start {
        tokio::spawn(insert_groups(pool.clone(), table, waiting));
    }
    received.await.unwrap_or_else(|_| {
        Err(DbError::Worker(
            "the insert ended without an outcome".into(),
        ))
    })
}

fn lock(waiting: &Mutex<Waiting>) -> std::sync::MutexGuard<'_, Waiting> {
    waiting
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Takes up to [`MAX_GROUP`] waiting rows whose requests are still there; `None` (and one
/// inserter fewer) when there are none.
fn next_group(waiting: &Mutex<Waiting>) -> Option<Vec<Pending>> {
    let mut queue = lock(waiting);
    queue.rows.retain(|row| !row.outcome.is_closed());
    if queue.rows.is_empty() {
        queue.inserters -= 1;
        return None;
    }
    let take = queue.rows.len().min(MAX_GROUP);
    Some(queue.rows.drain(..take).collect())
}

/// One inserter: inserts groups of `table`'s waiting rows until none is left.
async fn insert_groups(pool: PgPool, table: &'static InsertInto, waiting: Arc<Mutex<Waiting>>) {
    loop {
        // The connection first: the rows that arrive while it is found join the group.
        let lease = pool.lease().await;
        let Some(group) = next_group(&waiting) else {
            if let Ok(lease) = lease {
                lease.finish(&Ok(()));
            }
            return;
        };
        match lease {
            Ok(lease) => insert_group(lease, table, group).await,
            Err(err) => every_row(group, err),
        }
    }
}

/// Gives every row of a group the same failure.
fn every_row(group: impl IntoIterator<Item = Pending>, err: DbError) {
    let err = Arc::new(err);
    for row in group {
        let _ = row.outcome.send(Err(DbError::Group(Arc::clone(&err))));
    }
}

/// Inserts a group on `lease`: one statement, or each row alone when the server refused the
/// group for one of its values.
async fn insert_group(mut lease: Lease, table: &'static InsertInto, group: Vec<Pending>) {
    if group.len() > 1 {
        let inserted = insert_together(&mut lease, table, &group).await;
        if !matches!(&inserted, Err(err) if refused_a_value(err)) {
            lease.finish(&inserted);
            match inserted {
                Ok(rows) if rows.len() == group.len() => {
                    for (row, inserted) in group.into_iter().zip(rows) {
                        let _ = row.outcome.send(Ok(inserted));
                    }
                }
                Ok(rows) => {
                    let err = format!("{} rows inserted for {}", rows.len(), group.len());
                    every_row(group, DbError::Worker(err));
                }
                Err(err) => every_row(group, DbError::Postgres(err)),
            }
            return;
        }
    }
    let mut rows = group.into_iter();
    while let Some(Pending { values, outcome }) = rows.next() {
        let inserted = insert_alone(&mut lease, table.one_statement(values)).await;
        if matches!(&inserted, Err(err) if !matches!(err, sqlx::Error::Database(_))) {
            // The conversation broke: the rest would meet the same.
            lease.finish(&inserted);
            if let Err(err) = inserted {
                let this = Pending {
                    values: Vec::new(),
                    outcome,
                };
                every_row(std::iter::once(this).chain(rows), DbError::Postgres(err));
            }
            return;
        }
        let _ = outcome.send(inserted.map_err(DbError::Postgres));
    }
    lease.finish(&Ok(()));
}

async fn insert_together(
    lease: &mut Lease,
    table: &'static InsertInto,
    group: &[Pending],
) -> Result<Vec<PgRow>, sqlx::Error> {
    let arguments = table.group_arguments(group.iter().map(|row| row.values.as_slice()))?;
    sqlx::query_with(AssertSqlSafe(table.group_sql()), arguments)
        .fetch_all(lease.connection())
        .await
}

async fn insert_alone(lease: &mut Lease, statement: Statement) -> Result<PgRow, sqlx::Error> {
    let (sql, arguments) = statement.into_postgres()?;
    sqlx::query_with(AssertSqlSafe(sql), arguments)
        .fetch_one(lease.connection())
        .await
}

/// Whether the server refused a statement for one of its values (SQLSTATE classes 22, data
/// exception, and 23, integrity constraint violation): nothing was written.
fn refused_a_value(err: &sqlx::Error) -> bool {
    err.as_database_error()
        .and_then(|err| err.code())
        .is_some_and(|code| code.starts_with("22") || code.starts_with("23"))
}

#[cfg(all(test, feature = "testing"))]
mod tests {
    use std::str::FromStr;
    use std::time::Duration;

    use sqlx::postgres::PgConnectOptions;
    use sqlx::{Connection, PgConnection, Row};

    use super::*;
    use crate::store::insert::SqlType;
    use crate::store::postgres::PgSettings;
    use crate::testing::PostgresTestDatabase;

    static NOTES: InsertInto = InsertInto::new(
        "notes",
        &[("owner", SqlType::Text), ("title", SqlType::Text)],
    );

    /// A pool of one connection on a fresh database with a `notes` table, and that
    /// connection, held: rows inserted meanwhile wait.
    async fn held_pool(db: &PostgresTestDatabase, acquire_timeout: Duration) -> (PgPool, Lease) {
        let mut admin = PgConnection::connect(db.url.as_str())
            .await
            .expect("connect");
        sqlx::query(
            "create table notes (id bigint generated always as identity primary key, \
             owner text not null, title text not null check (char_length(title) <= 10))",
        )
        .execute(&mut admin)
        .await
        .expect("create table");
        let pool = PgPool::new(PgSettings {
            options: PgConnectOptions::from_str(db.url.as_str()).expect("url"),
            max_connections: 1,
            acquire_timeout,
            statement_timeout: Duration::from_secs(10),
        });
        let held = pool.lease().await.expect("the one connection");
        (pool, held)
    }

    const WAIT: Duration = Duration::from_secs(10);

    fn note(owner: &str, title: &str) -> Insert {
        Insert::new(&NOTES).value(owner).value(title)
    }

    /// Starts inserting `rows` and waits until all of them wait for the held connection.
    async fn queue(
        pool: &PgPool,
        rows: Vec<Insert>,
    ) -> Vec<tokio::task::JoinHandle<Result<PgRow, DbError>>> {
        let count = rows.len();
        let handles = rows
            .into_iter()
            .map(|row| {
                let pool = pool.clone();
                tokio::spawn(async move { pool.insert(row).await })
            })
            .collect();
        let waiting = pool.groups().waiting(&NOTES);
        for _ in 0..500 {
            if lock(&waiting).rows.len() == count {
                return handles;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the rows did not all queue");
    }

    /// The transaction that wrote each row, by id.
    async fn writers(db: &PostgresTestDatabase) -> Vec<(i64, String)> {
        let mut admin = PgConnection::connect(db.url.as_str())
            .await
            .expect("connect");
        sqlx::query_as("select id, xmin::text from notes order by id")
            .fetch_all(&mut admin)
            .await
            .expect("notes")
    }

    fn text(row: &PgRow, column: &str) -> String {
        row.try_get(column).expect(column)
    }

    #[tokio::test]
    async fn rows_that_wait_together_are_one_statement_and_each_gets_its_own_row() {
        let Some(db) = PostgresTestDatabase::create("batch_group").await else {
            return;
        };
        let (pool, held) = held_pool(&db, WAIT).await;
        let rows = (0..6)
            .map(|n| note(&format!("owner{n}"), &format!("title{n}")))
            .collect();
        let handles = queue(&pool, rows).await;
        held.finish(&Ok(()));
        let mut ids = Vec::new();
        for (n, handle) in handles.into_iter().enumerate() {
            let row = handle.await.expect("task").expect("inserted");
            assert_eq!(text(&row, "owner"), format!("owner{n}"));
            assert_eq!(text(&row, "title"), format!("title{n}"));
            ids.push(row.try_get::<i64, _>("id").expect("id"));
        }
        let written = writers(&db).await;
        assert_eq!(
            written.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
            ids,
            "the rows were inserted in the order they queued"
        );
        let transactions: std::collections::HashSet<&String> =
            written.iter().map(|(_, xmin)| xmin).collect();
        assert_eq!(
            transactions.len(),
            1,
            "one statement wrote them: {written:?}"
        );
    }

    #[tokio::test]
    async fn a_refused_row_fails_alone_and_the_others_are_written() {
        let Some(db) = PostgresTestDatabase::create("batch_refused").await else {
            return;
        };
        let (pool, held) = held_pool(&db, WAIT).await;
        let rows = vec![
            note("a", "short"),
            note("b", "far too long a title"),
            note("c", "fine"),
        ];
        let handles = queue(&pool, rows).await;
        held.finish(&Ok(()));
        let mut outcomes = Vec::new();
        for handle in handles {
            outcomes.push(handle.await.expect("task"));
        }
        assert_eq!(text(outcomes[0].as_ref().expect("a"), "title"), "short");
        let refused = outcomes[1].as_ref().expect_err("b breaks the check");
        assert!(
            matches!(refused, DbError::Postgres(err)
                if err.as_database_error().and_then(|e| e.code()).as_deref() == Some("23514")),
            "{refused:?}"
        );
        assert_eq!(text(outcomes[2].as_ref().expect("c"), "title"), "fine");
        let written = writers(&db).await;
        assert_eq!(written.len(), 2, "{written:?}");
        assert_ne!(written[0].1, written[1].1, "each was inserted alone");
    }

    #[tokio::test]
    async fn a_row_whose_caller_went_away_before_its_group_is_left_out() {
        let Some(db) = PostgresTestDatabase::create("batch_gone").await else {
            return;
        };
        let (pool, held) = held_pool(&db, WAIT).await;
        let mut handles = queue(&pool, vec![note("a", "kept"), note("b", "gone")]).await;
        let gone = handles.pop().expect("two");
        gone.abort();
        assert!(gone.await.expect_err("aborted").is_cancelled());
        held.finish(&Ok(()));
        let kept = handles
            .pop()
            .expect("one")
            .await
            .expect("task")
            .expect("kept");
        assert_eq!(text(&kept, "title"), "kept");
        assert_eq!(writers(&db).await.len(), 1);
    }

    #[tokio::test]
    async fn without_a_connection_every_waiting_row_gets_the_failure() {
        let Some(db) = PostgresTestDatabase::create("batch_no_connection").await else {
            return;
        };
        let (pool, held) = held_pool(&db, Duration::from_millis(500)).await;
        let handles = queue(&pool, vec![note("a", "one"), note("b", "two")]).await;
        for handle in handles {
            let err = handle
                .await
                .expect("task")
                .expect_err("no connection in time");
            assert!(
                matches!(&err, DbError::Group(err) if matches!(**err, DbError::PoolTimedOut)),
                "{err:?}"
            );
            assert!(err.is_unavailable(), "a 503: {err:?}");
        }
        held.finish(&Ok(()));
        assert!(writers(&db).await.is_empty());
    }
}
