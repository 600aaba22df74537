//! The SQLite backend: a small pool of connections on which each operation runs whole (its
//! statements and the decoding of its rows) in one call: on the calling thread when it is cheap,
//! else on a thread of the runtime's blocking pool ([`SqlitePool::run`]).
//!
//! An operation's statements are bounded together by the statement timeout, and stopped when
//! the request that runs them goes away: a progress handler interrupts the running statement
//! (SQLITE_INTERRUPT) once the deadline passes or the operation is abandoned, and the connection
//! then returns to the pool, usable.
//!
//! Writes go to the pool's writer thread (`writes`), which commits them in groups; a checkpoint
//! thread copies what they committed from the WAL into the database file (`checkpoint`).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rusqlite::config::DbConfig;
use rusqlite::{Connection, OpenFlags};
use tokio::sync::{OwnedSemaphorePermit, oneshot};

use super::DbError;
use super::slots::Slots;
use super::statement::{Columns, FromSqliteRow, Param, SqliteRow, Statement, sqlite_time};

mod checkpoint;
mod writes;

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
    /// The reading connections.
    slots: Slots<Connection>,
    writes: Arc<writes::Queue>,
    /// Told when the writer thread has ended.
    writer_ended: Mutex<Option<oneshot::Receiver<()>>>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.writes.close();
    }
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
    /// A pool that opens connections when first needed: one for its writer thread, and the
    /// rest of `max_connections` (at least one) for reading.
    pub fn new(settings: SqliteSettings) -> Self {
        let writes = Arc::new(writes::Queue::default());
        let writer_ended = writes::start(&writes, settings.clone());
        Self {
            shared: Arc::new(Shared {
                slots: Slots::new(settings.max_connections.saturating_sub(1)),
                settings,
                writes,
                writer_ended: Mutex::new(Some(writer_ended)),
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
    /// SQLite lets one writer write at a time. Operations that `write` queue for the pool's
    /// writer thread, which commits every write queued meanwhile together ([`writes`]).
    pub async fn run<T, F>(&self, write: bool, operation: F) -> Result<T, DbError>
    where
        F: Fn(&Connection) -> rusqlite::Result<T> + Send + 'static,
        T: Send + 'static,
    {
        if write {
            return writes::write(&self.shared, operation).await;
        }
        let shared = Arc::clone(&self.shared);
        let deadline = Instant::now() + shared.settings.statement_timeout;
        let inline = shared
            .slots
            .try_permit()
            .and_then(|permit| Some((permit, shared.slots.take_idle()?)));
        let (permit, connection) = match inline {
            Some((permit, connection)) => match run_inline(&connection, deadline, &operation) {
                Inline::Done(result) => {
                    shared.slots.give_back(connection);
                    return result.map_err(DbError::Sqlite);
                }
                Inline::Retry => (permit, Some(connection)),
            },
            None => (
                shared.slots.permit(shared.settings.acquire_timeout).await?,
                None,
            ),
        };
        let state = Arc::new(AtomicU8::new(0));
        let gone = Gone(Arc::clone(&state));
        let task = tokio::task::spawn_blocking(move || {
            let _held: OwnedSemaphorePermit = permit;
            let connection = match connection {
                Some(connection) => connection,
                None => shared.take()?,
            };
            let result = run_blocking(&connection, &shared.settings, deadline, state, &operation);
            shared.slots.give_back(connection);
            result
        });
        let result = task.await;
        gone.finish();
        match result {
            Ok(result) => result,
            Err(err) => Err(DbError::Worker(err.to_string())),
        }
    }

    /// Connections open, and how many of them are idle.
    pub fn state(&self) -> (u32, usize) {
        let (open, idle) = self.shared.slots.state();
        (open + u32::from(self.shared.writes.connected()), idle)
    }

    /// Refuses new operations, waits for those running (writes queued included), and closes
    /// every connection.
    pub async fn close(&self) {
        self.shared.writes.close();
        let writer_ended = self
            .shared
            .writer_ended
            .lock()
            .ok()
            .and_then(|mut ended| ended.take());
        if let Some(ended) = writer_ended {
            let _ = ended.await;
        }
        for connection in self.shared.slots.close().await {
            let _ = connection.close();
        }
    }
}

impl Shared {
    /// An idle connection, or a new one.
    fn take(&self) -> Result<Connection, DbError> {
        if let Some(connection) = self.slots.take_idle() {
            return Ok(connection);
        }
        let connection = open(&self.settings).map_err(DbError::Open)?;
        self.slots.opened();
        Ok(connection)
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

/// Runs `operation` on a blocking thread: bounded by `deadline`, stopped once `state` is
/// [`GONE`], waiting up to the busy timeout for another writer.
fn run_blocking<T>(
    connection: &Connection,
    settings: &SqliteSettings,
    deadline: Instant,
    state: Arc<AtomicU8>,
    operation: &impl Fn(&Connection) -> rusqlite::Result<T>,
) -> Result<T, DbError> {
    // Returning true interrupts the running statement.
    connection.progress_handler(
        PROGRESS_INSTRUCTIONS,
        Some(move || state.load(Ordering::Acquire) == GONE || Instant::now() >= deadline),
    )?;
    connection.busy_timeout(settings.busy_timeout)?;
    let result = operation(connection);
    connection.busy_timeout(Duration::ZERO)?;
    connection.progress_handler(0, None::<fn() -> bool>)?;
    Ok(result?)
}

/// An operation's state once its caller has gone away: its future was dropped before the
/// operation ended.
const GONE: u8 = u8::MAX;

/// Sets an operation's state to [`GONE`] when its caller's future is dropped; forgotten once
/// the operation has ended.
struct Gone(Arc<AtomicU8>);

impl Gone {
    fn finish(self) {
        std::mem::forget(self);
    }
}

impl Drop for Gone {
    fn drop(&mut self) {
        self.0.store(GONE, Ordering::Release);
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

    /// A pool with table `t (x integer unique check (x < 100))` whose writer is held up, so
    /// that the writes started next queue up.
    async fn queued_writes(dir: &tempfile::TempDir, timeout: Duration) -> (SqlitePool, Held) {
        let pool = pool(dir, 2, timeout);
        create_t(&pool).await;
        let held = hold(&pool).await;
        (pool, held)
    }

    /// The writer thread held up: another connection holds the write lock, and a write waits
    /// for it there.
    struct Held {
        holder: Connection,
        waiting: tokio::task::JoinHandle<Result<usize, DbError>>,
    }

    async fn hold(pool: &SqlitePool) -> Held {
        let holder = open(&pool.shared.settings).expect("open");
        holder.execute_batch("begin immediate").expect("lock");
        let waiting = start(pool, |connection| {
            connection.execute("delete from t where x < 0", [])
        })
        .await;
        Held { holder, waiting }
    }

    impl Held {
        /// Lets the writer go on: the waiting write, then the writes queued meanwhile.
        async fn release(self) {
            self.holder.execute_batch("commit").expect("unlock");
            self.waiting
                .await
                .expect("task")
                .expect("the waiting write");
        }
    }

    async fn create_t(pool: &SqlitePool) {
        pool.run(true, |connection| {
            connection.execute_batch("create table t (x integer unique check (x < 100))")
        })
        .await
        .expect("create");
    }

    /// Counts the commits of the connections the writes it makes run on.
    #[derive(Clone, Default)]
    struct Commits(Arc<std::sync::atomic::AtomicUsize>);

    impl Commits {
        /// A write that inserts `x`.
        fn insert(&self, x: i64) -> impl Fn(&Connection) -> rusqlite::Result<()> + Send + 'static {
            let commits = Arc::clone(&self.0);
            move |connection| {
                let commits = Arc::clone(&commits);
                connection.commit_hook(Some(move || {
                    commits.fetch_add(1, Ordering::Relaxed);
                    false
                }))?;
                connection.execute("insert into t values (?1)", [x])?;
                Ok(())
            }
        }

        fn count(&self) -> usize {
            self.0.load(Ordering::Relaxed)
        }
    }

    async fn values(pool: &SqlitePool) -> Vec<i64> {
        pool.run(false, |connection| {
            let mut select = connection.prepare("select x from t order by x")?;
            select
                .query_map([], |row| row.get(0))?
                .collect::<rusqlite::Result<Vec<i64>>>()
        })
        .await
        .expect("select")
    }

    /// Starts `write` on its own task and lets it reach the queue.
    async fn start<T: Send + 'static>(
        pool: &SqlitePool,
        write: impl Fn(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> tokio::task::JoinHandle<Result<T, DbError>> {
        let pool = pool.clone();
        let task = tokio::spawn(async move { pool.run(true, write).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        task
    }

    fn constraint_violation(err: &DbError) -> bool {
        matches!(
            err,
            DbError::Sqlite(err)
                if err.sqlite_error_code() == Some(rusqlite::ErrorCode::ConstraintViolation)
        )
    }

    #[tokio::test]
    async fn writes_queued_meanwhile_commit_together_and_each_gets_its_own_result() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (pool, held) = queued_writes(&dir, Duration::from_secs(30)).await;
        let commits = Commits::default();
        let mut writes = Vec::new();
        for x in 1..=8 {
            writes.push(start(&pool, commits.insert(x)).await);
        }
        held.release().await;
        for write in writes {
            write.await.expect("task").expect("written");
        }
        assert_eq!(values(&pool).await, (1..=8).collect::<Vec<_>>());
        assert_eq!(commits.count(), 1, "one commit for the eight writes");
        // A lone write commits on its own.
        pool.run(true, commits.insert(9)).await.expect("lone");
        assert_eq!(commits.count(), 2);
    }

    #[tokio::test]
    async fn a_write_that_fails_in_a_batch_fails_alone() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (pool, held) = queued_writes(&dir, Duration::from_secs(30)).await;
        let commits = Commits::default();
        let first = start(&pool, commits.insert(1)).await;
        let refused = start(&pool, commits.insert(100)).await;
        let duplicate = start(&pool, commits.insert(1)).await;
        let last = start(&pool, commits.insert(3)).await;
        held.release().await;
        first.await.expect("task").expect("first");
        for failed in [refused, duplicate] {
            let err = failed.await.expect("task").expect_err("constraint");
            assert!(constraint_violation(&err), "{err}");
        }
        last.await.expect("task").expect("last");
        assert_eq!(values(&pool).await, vec![1, 3]);
        assert_eq!(commits.count(), 1);
    }

    #[tokio::test]
    async fn a_lone_write_that_fails_changes_nothing() {
        let dir = tempfile::tempdir().expect("temp dir");
        let pool = pool(&dir, 2, Duration::from_secs(30));
        create_t(&pool).await;
        let err = pool
            .run(true, |connection| {
                connection.execute("insert into t values (1)", [])?;
                connection.execute("insert into t values (100)", [])
            })
            .await
            .expect_err("the second insert is refused");
        assert!(constraint_violation(&err), "{err}");
        assert_eq!(
            values(&pool).await,
            Vec::<i64>::new(),
            "the first is undone"
        );
    }

    #[tokio::test]
    async fn a_write_stopped_at_its_deadline_in_a_batch_leaves_the_others_written_once() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (pool, held) = queued_writes(&dir, Duration::from_millis(300)).await;
        let commits = Commits::default();
        let first = start(&pool, commits.insert(1)).await;
        // Runs past its deadline. SQLite rolls the whole transaction back on the interrupt.
        let endless = start(&pool, |connection| {
            connection.execute(
                "insert into t with recursive c(x) as \
                     (select 1000 union all select x + 1 from c) \
                 select x from c where x < 0",
                [],
            )
        })
        .await;
        let last = start(&pool, commits.insert(3)).await;
        held.release().await;
        first.await.expect("task").expect("first");
        let err = endless.await.expect("task").expect_err("stopped");
        assert!(err.is_timeout(), "{err}");
        last.await.expect("task").expect("last");
        assert_eq!(values(&pool).await, vec![1, 3]);
    }

    #[tokio::test]
    async fn a_long_write_of_several_statements_is_written_once() {
        let dir = tempfile::tempdir().expect("temp dir");
        let pool = pool(&dir, 2, Duration::from_secs(30));
        create_t(&pool).await;
        // Its insert is done long before its second statement ends (a read's inline budget
        // many times over).
        let counted = pool
            .run(true, |connection| {
                connection.execute("insert into t values (5)", [])?;
                count_to(3_000_000)(connection)
            })
            .await
            .expect("written");
        assert_eq!(counted, 3_000_000);
        assert_eq!(values(&pool).await, vec![5]);
    }

    #[tokio::test]
    async fn a_write_given_up_while_queued_never_runs() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (pool, held) = queued_writes(&dir, Duration::from_secs(30)).await;
        let commits = Commits::default();
        let abandoned = start(&pool, commits.insert(1)).await;
        abandoned.abort();
        assert!(abandoned.await.expect_err("aborted").is_cancelled());
        let kept = start(&pool, commits.insert(2)).await;
        held.release().await;
        kept.await.expect("task").expect("kept");
        assert_eq!(values(&pool).await, vec![2]);
    }

    #[tokio::test]
    async fn a_write_that_waits_past_the_acquire_timeout_is_refused_and_never_runs() {
        let dir = tempfile::tempdir().expect("temp dir");
        let pool = SqlitePool::new(SqliteSettings {
            acquire_timeout: Duration::from_millis(100),
            ..pool(&dir, 2, Duration::from_secs(30))
                .shared
                .settings
                .clone()
        });
        create_t(&pool).await;
        let commits = Commits::default();
        let held = hold(&pool).await;
        let err = pool
            .run(true, commits.insert(1))
            .await
            .expect_err("timed out");
        assert!(matches!(err, DbError::PoolTimedOut), "{err}");
        held.release().await;
        pool.run(true, commits.insert(2)).await.expect("next");
        assert_eq!(values(&pool).await, vec![2]);
    }

    /// The rows in the database file alone, as a copy of it without its WAL reads them (none
    /// while a copy taken in the middle of a checkpoint does not read).
    fn rows_in_the_database_file(dir: &tempfile::TempDir) -> i64 {
        let copy = dir.path().join("copy.db");
        std::fs::copy(dir.path().join("test.db"), &copy).expect("copy the database file");
        let rows = Connection::open(&copy).and_then(|connection| {
            connection.query_row("select count(*) from t", [], |row| row.get(0))
        });
        for file in ["copy.db", "copy.db-wal", "copy.db-shm"] {
            let _ = std::fs::remove_file(dir.path().join(file));
        }
        rows.unwrap_or(0)
    }

    #[tokio::test]
    async fn commits_reach_the_database_file_without_the_writer_checkpointing() {
        let dir = tempfile::tempdir().expect("temp dir");
        let pool = pool(&dir, 2, Duration::from_secs(30));
        create_t(&pool).await;
        // Each its own commit, far fewer pages than the writer's own checkpoint waits for.
        for x in 0..20 {
            pool.run(true, move |connection| {
                connection.execute("insert into t values (?1)", [x])
            })
            .await
            .expect("insert");
        }
        let started = Instant::now();
        while rows_in_the_database_file(&dir) < 20 {
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "the commits are still only in the WAL"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // And the WAL is still in use: the pool did not close and checkpoint on its way out.
        assert!(dir.path().join("test.db-wal").exists());
        assert_eq!(values(&pool).await.len(), 20);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_writers_are_each_written_exactly_once() {
        const WRITERS: i64 = 16;
        const EACH: i64 = 25;
        let dir = tempfile::tempdir().expect("temp dir");
        let pool = pool(&dir, 4, Duration::from_secs(30));
        pool.run(true, |connection| {
            connection.execute_batch("create table w (x integer primary key, payload text)")
        })
        .await
        .expect("create");
        let writers = (0..WRITERS).map(|writer| {
            let pool = pool.clone();
            tokio::spawn(async move {
                for n in 0..EACH {
                    let x = writer * 1000 + n;
                    let returned = pool
                        .run(true, move |connection| {
                            connection.query_row(
                                "insert into w values (?1, hex(randomblob(64))) returning x",
                                [x],
                                |row| row.get::<_, i64>(0),
                            )
                        })
                        .await
                        .expect("written");
                    assert_eq!(returned, x, "each write gets its own result");
                }
            })
        });
        for writer in futures::future::join_all(writers).await {
            writer.expect("writer");
        }
        let count = pool
            .run(false, |connection| {
                connection.query_row("select count(*) from w", [], |row| row.get::<_, i64>(0))
            })
            .await
            .expect("count");
        assert_eq!(count, WRITERS * EACH);
    }
}
