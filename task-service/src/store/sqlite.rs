//! The SQLite backend: a small pool of connections on which each operation runs whole (its
//! statements and the decoding of its rows) in one call: on the calling thread when it is cheap,
//! else on a thread of the runtime's blocking pool ([`SqlitePool::run`]).
//!
//! An operation's statements are bounded together by the statement timeout, and stopped when
//! the request that runs them goes away: a progress handler interrupts the running statement
//! (SQLITE_INTERRUPT) once the deadline passes or the operation is abandoned, and the connection
//! then returns to the pool, usable.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rusqlite::config::DbConfig;
use rusqlite::{Connection, OpenFlags};
use tokio::sync::{OwnedMutexGuard, OwnedSemaphorePermit, Semaphore};

use super::DbError;
use super::statement::{Columns, FromSqliteRow, Param, SqliteRow, Statement, sqlite_time};

/// SQLite virtual-machine instructions between two looks at an operation's deadline: a few
/// microseconds of work.
const PROGRESS_INSTRUCTIONS: i32 = 1000;
/// How long an operation may run on the calling (runtime) thread before it is moved to a
/// blocking thread.
const INLINE_BUDGET: Duration = Duration::from_millis(1);
/// Prepared statements kept per connection: the list's filters and orders make a few dozen
/// distinct texts.
const STATEMENT_CACHE_CAPACITY: usize = 128;

/// How each connection is opened.
#[derive(Debug, Clone)]
pub struct SqliteSettings {
    pub path: PathBuf,
    pub busy_timeout: Duration,
    pub max_connections: u32,
    pub acquire_timeout: Duration,
    pub statement_timeout: Duration,
}

/// A pool of SQLite connections.
#[derive(Clone)]
pub struct SqlitePool {
    shared: Arc<Shared>,
}

struct Shared {
    settings: SqliteSettings,
    /// Connections not in use.
    idle: Mutex<Vec<Connection>>,
    /// One permit per connection that may exist; an operation holds one until it has ended,
    /// so an abandoned operation keeps its connection until it has stopped.
    permits: Arc<Semaphore>,
    /// Connections open, in use or idle.
    open: AtomicU32,
    /// Held by the operation that writes.
    writer: Arc<tokio::sync::Mutex<()>>,
}

impl std::fmt::Debug for SqlitePool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (open, idle) = self.state();
        f.debug_struct("SqlitePool")
            .field("path", &self.shared.settings.path)
            .field("open", &open)
            .field("idle", &idle)
            .finish()
    }
}

impl SqlitePool {
    /// A pool that opens connections when first needed.
    pub fn new(settings: SqliteSettings) -> Self {
        let permits = Arc::new(Semaphore::new(settings.max_connections.max(1) as usize));
        Self {
            shared: Arc::new(Shared {
                settings,
                idle: Mutex::new(Vec::new()),
                permits,
                open: AtomicU32::new(0),
                writer: Arc::default(),
            }),
        }
    }

    /// Runs `operation` on a connection of the pool.
    ///
    /// It is first tried on the calling thread, when a connection is idle, within
    /// [`INLINE_BUDGET`] and without waiting for another writer: most operations (a page of a
    /// user's tasks, one task by id) end well within that, with no hand-off between threads.
    /// One that needs longer or meets a writer is stopped (SQLite rolls an interrupted or
    /// refused statement back, so nothing is half-done) and run again on a blocking thread,
    /// with the whole statement timeout and the busy timeout. Dropping the returned future then
    /// stops the running statement at its next progress check.
    ///
    /// SQLite lets one writer write at a time; operations that `write` take the pool's writer
    /// lock first, so they queue here rather than meet each other inside SQLite, where a
    /// waiting writer sleeps and retries.
    pub async fn run<T, F>(&self, write: bool, operation: F) -> Result<T, DbError>
    where
        F: Fn(&Connection) -> rusqlite::Result<T> + Send + 'static,
        T: Send + 'static,
    {
        let shared = Arc::clone(&self.shared);
        let deadline = Instant::now() + shared.settings.statement_timeout;
        let writer = if write {
            let lock = Arc::clone(&shared.writer).lock_owned();
            match tokio::time::timeout(shared.settings.acquire_timeout, lock).await {
                Ok(guard) => Some(guard),
                Err(_) => return Err(DbError::PoolTimedOut),
            }
        } else {
            None
        };
        let inline = Arc::clone(&shared.permits)
            .try_acquire_owned()
            .ok()
            .and_then(|permit| Some((permit, shared.take_idle()?)));
        let (permit, connection) = match inline {
            Some((permit, connection)) => match run_inline(&connection, deadline, &operation) {
                Inline::Done(result) => {
                    shared.give_back(connection);
                    return result.map_err(DbError::Sqlite);
                }
                Inline::Retry => (permit, Some(connection)),
            },
            None => {
                let permit = match tokio::time::timeout(
                    shared.settings.acquire_timeout,
                    Arc::clone(&shared.permits).acquire_owned(),
                )
                .await
                {
                    Ok(Ok(permit)) => permit,
                    Ok(Err(_)) => return Err(DbError::PoolClosed),
                    Err(_) => return Err(DbError::PoolTimedOut),
                };
                (permit, None)
            }
        };
        let abandoned = Abandoned::default();
        let stop = Arc::clone(&abandoned.0);
        let task = tokio::task::spawn_blocking(move || {
            let _held: (OwnedSemaphorePermit, Option<OwnedMutexGuard<()>>) = (permit, writer);
            let connection = match connection {
                Some(connection) => connection,
                None => shared.take()?,
            };
            let result = run_blocking(&connection, &shared.settings, deadline, stop, &operation);
            shared.give_back(connection);
            result
        });
        let result = task.await;
        abandoned.finish();
        match result {
            Ok(result) => result,
            Err(err) => Err(DbError::Worker(err.to_string())),
        }
    }

    /// Connections open, and how many of them are idle.
    pub fn state(&self) -> (u32, usize) {
        let idle = self.shared.idle.lock().map_or(0, |idle| idle.len());
        (self.shared.open.load(Ordering::Relaxed), idle)
    }

    /// Refuses new operations, waits for those running, and closes every connection.
    pub async fn close(&self) {
        let all = self.shared.settings.max_connections.max(1);
        let _all = self.shared.permits.acquire_many(all).await;
        self.shared.permits.close();
        let idle = match self.shared.idle.lock() {
            Ok(mut idle) => std::mem::take(&mut *idle),
            Err(_) => Vec::new(),
        };
        for connection in idle {
            self.shared.open.fetch_sub(1, Ordering::Relaxed);
            let _ = connection.close();
        }
    }
}

impl Shared {
    /// An idle connection, if there is one.
    fn take_idle(&self) -> Option<Connection> {
        self.idle.lock().ok().and_then(|mut idle| idle.pop())
    }

    /// An idle connection, or a new one.
    fn take(&self) -> Result<Connection, DbError> {
        if let Some(connection) = self.take_idle() {
            return Ok(connection);
        }
        let connection = open(&self.settings).map_err(DbError::Open)?;
        self.open.fetch_add(1, Ordering::Relaxed);
        Ok(connection)
    }

    fn give_back(&self, connection: Connection) {
        match self.idle.lock() {
            Ok(mut idle) => idle.push(connection),
            Err(_) => {
                self.open.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }
}

/// How an operation tried on the calling thread ended.
enum Inline<T> {
    Done(rusqlite::Result<T>),
    /// It was stopped at the inline budget or met another writer, and changed nothing.
    Retry,
}

/// Runs `operation` within [`INLINE_BUDGET`] (and the operation's deadline), refusing to wait
/// for another writer: the connection's busy timeout is zero between operations.
fn run_inline<T>(
    connection: &Connection,
    deadline: Instant,
    operation: &impl Fn(&Connection) -> rusqlite::Result<T>,
) -> Inline<T> {
    let budget_end = (Instant::now() + INLINE_BUDGET).min(deadline);
    let over_budget = Arc::new(AtomicBool::new(false));
    let stopped = Arc::clone(&over_budget);
    let handler = connection.progress_handler(
        PROGRESS_INSTRUCTIONS,
        Some(move || {
            let over = Instant::now() >= budget_end;
            stopped.store(over, Ordering::Relaxed);
            over
        }),
    );
    if let Err(err) = handler {
        return Inline::Done(Err(err));
    }
    let result = operation(connection);
    let _ = connection.progress_handler(0, None::<fn() -> bool>);
    match result {
        Err(err)
            if err.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy)
                || (over_budget.load(Ordering::Relaxed) && Instant::now() < deadline) =>
        {
            Inline::Retry
        }
        result => Inline::Done(result),
    }
}

/// Runs `operation` on a blocking thread: bounded by `deadline`, stopped once `abandoned` is
/// set, waiting up to the busy timeout for another writer.
fn run_blocking<T>(
    connection: &Connection,
    settings: &SqliteSettings,
    deadline: Instant,
    abandoned: Arc<AtomicBool>,
    operation: &impl Fn(&Connection) -> rusqlite::Result<T>,
) -> Result<T, DbError> {
    // Returning true interrupts the running statement.
    connection.progress_handler(
        PROGRESS_INSTRUCTIONS,
        Some(move || abandoned.load(Ordering::Relaxed) || Instant::now() >= deadline),
    )?;
    connection.busy_timeout(settings.busy_timeout)?;
    let result = operation(connection);
    connection.busy_timeout(Duration::ZERO)?;
    connection.progress_handler(0, None::<fn() -> bool>)?;
    Ok(result?)
}

/// Set when the future running an operation is dropped before the operation ended.
#[derive(Default)]
struct Abandoned(Arc<AtomicBool>);

impl Abandoned {
    fn finish(self) {
        std::mem::forget(self);
    }
}

impl Drop for Abandoned {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Opens one connection: WAL (readers proceed while one writer writes), NORMAL sync (safe with
/// WAL: a power cut may lose the last commits, never corrupt the file). Between operations the
/// busy timeout is zero; an operation on a blocking thread waits up to the configured one for
/// another writer.
pub fn open(settings: &SqliteSettings) -> rusqlite::Result<Connection> {
    let connection = Connection::open_with_flags(
        &settings.path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    // Opening may meet a writer (switching to WAL on a new file takes a lock).
    connection.busy_timeout(settings.busy_timeout)?;
    connection.pragma_update(None, "journal_mode", "wal")?;
    connection.pragma_update(None, "synchronous", "normal")?;
    connection.set_prepared_statement_cache_capacity(STATEMENT_CACHE_CAPACITY);
    // Plans that do not depend on the values bound: otherwise binding a `limit` or a `like`
    // pattern expires the cached statement, and every run compiles it again.
    connection.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
    connection.busy_timeout(Duration::ZERO)?;
    Ok(connection)
}

/// Binds a statement's values to a prepared statement. SQLite numbers named placeholders by
/// first appearance, so `$n` is looked up by name: `$3` takes the third value wherever it is.
fn bind(prepared: &mut rusqlite::CachedStatement<'_>, params: &[Param]) -> rusqlite::Result<()> {
    for index in 1..=prepared.parameter_count() {
        let number = prepared
            .parameter_name(index)
            .and_then(|name| name.strip_prefix('$'))
            .and_then(|number| number.parse::<usize>().ok())
            .filter(|number| (1..=params.len()).contains(number))
            .ok_or(rusqlite::Error::InvalidParameterCount(index, params.len()))?;
        match &params[number - 1] {
            Param::Text(value) => prepared.raw_bind_parameter(index, value.as_deref())?,
            Param::Int(value) => prepared.raw_bind_parameter(index, *value)?,
            Param::Bool(value) => prepared.raw_bind_parameter(index, *value)?,
            Param::Time(value) => {
                prepared.raw_bind_parameter(index, value.as_ref().map(sqlite_time))?
            }
        }
    }
    Ok(())
}

/// Runs `statement` and decodes each row it returns.
pub fn query<T: FromSqliteRow>(
    connection: &Connection,
    statement: &Statement,
) -> rusqlite::Result<Vec<T>> {
    let mut prepared = connection.prepare_cached(statement.sql())?;
    bind(&mut prepared, statement.params())?;
    let columns = Columns::of(&prepared);
    let mut rows = prepared.raw_query();
    let mut decoded = Vec::new();
    while let Some(row) = rows.next()? {
        decoded.push(T::from_sqlite_row(&SqliteRow::new(row, &columns))?);
    }
    Ok(decoded)
}

/// Runs `statement`, which returns no rows, and counts the rows it changed.
pub fn execute(connection: &Connection, statement: &Statement) -> rusqlite::Result<u64> {
    let mut prepared = connection.prepare_cached(statement.sql())?;
    bind(&mut prepared, statement.params())?;
    prepared.raw_execute().map(|changed| changed as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(dir: &tempfile::TempDir, max_connections: u32, timeout: Duration) -> SqlitePool {
        SqlitePool::new(SqliteSettings {
            path: dir.path().join("test.db"),
            busy_timeout: Duration::from_secs(5),
            max_connections,
            acquire_timeout: Duration::from_secs(5),
            statement_timeout: timeout,
        })
    }

    /// A statement that runs for a while: counts to `n` in a recursive CTE.
    fn count_to(n: i64) -> impl Fn(&Connection) -> rusqlite::Result<i64> + Send + 'static {
        move |connection| {
            connection.query_row(
                "with recursive c(x) as (select 1 union all select x + 1 from c where x < ?1) \
                 select count(*) from c",
                [n],
                |row| row.get(0),
            )
        }
    }

    #[tokio::test]
    async fn an_operation_over_the_inline_budget_finishes_on_a_blocking_thread() {
        let dir = tempfile::tempdir().expect("temp dir");
        let pool = pool(&dir, 1, Duration::from_secs(30));
        // Opens the connection, so the next operation is tried inline.
        assert_eq!(pool.run(false, count_to(10)).await.expect("short"), 10);
        let started = Instant::now();
        assert_eq!(
            pool.run(false, count_to(3_000_000)).await.expect("long"),
            3_000_000
        );
        assert!(started.elapsed() > INLINE_BUDGET, "the count took longer");
        assert_eq!(pool.state(), (1, 1));
    }

    #[tokio::test]
    async fn the_deadline_still_stops_an_operation_with_an_interrupt() {
        let dir = tempfile::tempdir().expect("temp dir");
        let pool = pool(&dir, 1, Duration::from_millis(50));
        let err = pool
            .run(false, count_to(i64::MAX))
            .await
            .expect_err("stopped at the deadline");
        assert!(err.is_timeout(), "{err}");
        assert_eq!(pool.run(false, count_to(3)).await.expect("usable"), 3);
    }

    #[tokio::test]
    async fn a_write_that_meets_another_writer_waits_for_it_and_happens_once() {
        let dir = tempfile::tempdir().expect("temp dir");
        let pool = pool(&dir, 2, Duration::from_secs(30));
        pool.run(true, |connection| {
            connection.execute("create table t (x integer)", [])
        })
        .await
        .expect("create");
        // Another process holds the write lock for a moment.
        let holder = open(&pool.shared.settings).expect("open");
        holder.execute_batch("begin immediate").expect("lock");
        let release = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            holder.execute_batch("commit").expect("unlock");
        });
        let inserted = pool
            .run(true, |connection| {
                connection.execute("insert into t values (1)", [])
            })
            .await
            .expect("waited for the lock");
        release.join().expect("holder");
        assert_eq!(inserted, 1);
        let rows = pool
            .run(false, |connection| {
                connection.query_row("select count(*) from t", [], |row| row.get::<_, i64>(0))
            })
            .await;
        assert_eq!(rows.expect("count"), 1);
    }

    #[tokio::test]
    async fn an_abandoned_operation_stops_and_frees_its_connection() {
        let dir = tempfile::tempdir().expect("temp dir");
        let pool = pool(&dir, 1, Duration::from_secs(60));
        let long = tokio::time::timeout(
            Duration::from_millis(100),
            pool.run(false, count_to(i64::MAX)),
        );
        assert!(long.await.is_err(), "still running when given up");
        let started = Instant::now();
        assert_eq!(pool.run(false, count_to(3)).await.expect("next"), 3);
        assert!(started.elapsed() < Duration::from_secs(2));
    }
}
