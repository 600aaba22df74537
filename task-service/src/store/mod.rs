//! Where the tasks live: a SQLite file or a PostgreSQL server, chosen by `DATABASE_URL`.
//!
//! This module is the one place where the two backends differ: how a URL is parsed, how the pool
//! is tuned, which migrations run, how a statement is run. Queries are written once, next to the
//! handlers that run them, as a [`Statement`]: SQL text and typed values, which both backends
//! accept because they share the SQL: `$1`-style placeholders, `returning`, `lower`,
//! `like … escape`, and the schema in each backend's migrations stores values that sort alike
//! (see the migrations' comments). The keyword search's index is the one part of a query that
//! differs ([`Backend::keyword_index_condition`]).
//!
//! Every operation's database work has a deadline (`DATABASE_STATEMENT_TIMEOUT_MS`) and stops
//! when the request that runs it goes away, so that a client that disconnects stops its query:
//!
//! - PostgreSQL runs each statement under `statement_timeout`, and with
//!   `client_connection_check_interval` it notices a closed connection while a statement runs
//!   and aborts it (dropping a query future alone would leave the statement running); a
//!   [`Lease`](postgres::Lease) closes its connection when dropped mid-operation.
//! - SQLite runs each operation whole on a blocking thread ([`sqlite`]); a progress handler
//!   interrupts the statement once the deadline passes or the operation is abandoned.

use std::str::FromStr;
use std::time::{Duration, Instant};

use common::config::ConfigError;
use common::tracing_export::SPAN_TARGET;
use sqlx::AssertSqlSafe;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{ConnectOptions, Connection};
use tracing::Instrument;

use crate::Error;
use crate::config::DATABASE_URL;
use crate::metrics::Metrics;

mod batch;
mod insert;
mod postgres;
mod slots;
pub mod sqlite;
mod statement;

pub use insert::{Insert, InsertInto, SqlType};
pub use statement::{Count, FromSqliteRow, Record, SqliteRow, Statement};

use postgres::{PgPool, PgSettings};
use sqlite::{SqlitePool, SqliteSettings};

pub(crate) static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/sqlite");
pub(crate) static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/postgres");

/// How long a request may wait for a pooled connection before it gets a 503. Short, so that a
/// database outage shows up as quick errors rather than piled-up requests.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a SQLite writer waits for another writer to finish before failing.
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// SQLite serialises writers anyway; a few connections let reads proceed beside a write (WAL).
const SQLITE_MAX_CONNECTIONS: u32 = 8;
/// Per replica. PostgreSQL allows 100 connections by default, so this leaves room for several
/// replicas plus migrations and administration.
const POSTGRES_MAX_CONNECTIONS: u32 = 10;
/// Keywords shorter than this (in characters) cannot use the trigram indexes.
pub const KEYWORD_INDEX_MIN_CHARS: usize = 3;

/// How the database is used: the bounds from the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DatabaseLimits {
    /// `DATABASE_STATEMENT_TIMEOUT_MS`: the longest one statement (on SQLite, one operation's
    /// statements together) may run before it is stopped.
    pub statement_timeout: Duration,
    /// `DATABASE_MAX_CONNECTIONS`: the pool's size; `None` for the backend's default.
    pub max_connections: Option<u32>,
}

/// A parsed `DATABASE_URL`.
#[derive(Debug, Clone)]
pub enum DatabaseOptions {
    /// `sqlite:path` or `sqlite://path`, relative to the working directory.
    Sqlite(SqliteConnectOptions),
    /// `postgres://…` or `postgresql://…`; `sslmode=require` turns TLS on.
    Postgres(PgConnectOptions),
}

impl DatabaseOptions {
    /// Parses a database URL; the error names `DATABASE_URL`.
    pub fn parse(url: &str) -> Result<Self, ConfigError> {
        let parsed = if url.starts_with("sqlite:") {
            SqliteConnectOptions::from_str(url).map(Self::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            PgConnectOptions::from_str(url).map(Self::Postgres)
        } else {
            return Err(ConfigError::new(
                DATABASE_URL,
                "expected a URL starting with sqlite:, postgres:// or postgresql://",
            ));
        };
        // The parser's messages describe the fault without repeating the URL, which may hold a
        // password.
        parsed.map_err(|err| ConfigError::new(DATABASE_URL, format!("cannot parse: {err}")))
    }
}

/// A connection pool on one of the two backends.
#[derive(Debug, Clone)]
pub enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Which backend a [`Pool`] is on, for the few SQL fragments that differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// The backend's name in OpenTelemetry's `db.system.name`.
    pub fn system_name(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgresql",
        }
    }

    /// A condition, true for every task whose title or description may contain the keyword,
    /// that the backend answers from its trigram index (see the `0002` migrations); the exact
    /// match is still the `like` beside it. `$param` is bound to [`Backend::keyword_index_key`].
    pub fn keyword_index_condition(self, param: usize) -> String {
        match self {
            Self::Sqlite => {
                format!("id in (select rowid from tasks_search where tasks_search match ${param})")
            }
            Self::Postgres => format!(
                "lower(title || ' ' || coalesce(description, '')) like lower(${param}) escape '\\'"
            ),
        }
    }

    /// The value [`Backend::keyword_index_condition`] looks up: the `like` pattern on
    /// PostgreSQL, an FTS5 phrase (the keyword in double quotes, its own quotes doubled) on
    /// SQLite, which the trigram tokenizer matches as a case-insensitive substring.
    pub fn keyword_index_key(self, keyword: &str, pattern: &str) -> String {
        match self {
            Self::Sqlite => format!("\"{}\"", keyword.replace('"', "\"\"")),
            Self::Postgres => pattern.to_owned(),
        }
    }
}

/// The database, with the metrics its operations report to.
#[derive(Clone)]
pub struct Store {
    pool: Pool,
    metrics: Metrics,
}

/// The span of one database operation: its name and the backend, never a statement's text or
/// values (which hold a user's tasks). Disabled, and free, unless spans are exported.
pub fn query_span(operation: &'static str, backend: Backend) -> tracing::Span {
    tracing::info_span!(
        target: SPAN_TARGET,
        "query",
        otel.kind = "client",
        db.operation.name = operation,
        db.system.name = backend.system_name(),
    )
}

impl Store {
    /// Opens the database (creating a SQLite file and its directory when missing) and applies
    /// the migrations. Several replicas may start at once: sqlx takes an advisory lock on
    /// PostgreSQL while it migrates. Migrations run on a connection of their own, outside the
    /// statement timeout: building an index over a large table may take longer.
    pub async fn open(
        options: DatabaseOptions,
        limits: DatabaseLimits,
        metrics: Metrics,
    ) -> Result<Self, Error> {
        let pool = match options {
            DatabaseOptions::Sqlite(options) => {
                create_parent_dir(options.get_filename())?;
                let options = options
                    .create_if_missing(true)
                    // WAL lets readers proceed while one writer writes; NORMAL sync is safe
                    // with WAL (a power cut may lose the last commits, never corrupt the file).
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Normal)
                    .busy_timeout(SQLITE_BUSY_TIMEOUT);
                check_connection(&options).await?;
                // One connection of its own, without the pool's deadline.
                let migrations = SqlitePoolOptions::new()
                    .max_connections(1)
                    .connect_lazy_with(options.clone());
                SQLITE_MIGRATIONS.run(&migrations).await?;
                migrations.close().await;
                Pool::Sqlite(SqlitePool::new(SqliteSettings {
                    path: options.get_filename().to_owned(),
                    busy_timeout: SQLITE_BUSY_TIMEOUT,
                    max_connections: limits.max_connections.unwrap_or(SQLITE_MAX_CONNECTIONS),
                    acquire_timeout: ACQUIRE_TIMEOUT,
                    statement_timeout: limits.statement_timeout,
                }))
            }
            DatabaseOptions::Postgres(options) => {
                check_connection(&options).await?;
                let migrations = PgPoolOptions::new()
                    .max_connections(1)
                    .connect_lazy_with(options.clone());
                POSTGRES_MIGRATIONS.run(&migrations).await?;
                migrations.close().await;
                Pool::Postgres(PgPool::new(PgSettings {
                    options,
                    max_connections: limits.max_connections.unwrap_or(POSTGRES_MAX_CONNECTIONS),
                    acquire_timeout: ACQUIRE_TIMEOUT,
                    statement_timeout: limits.statement_timeout,
                }))
            }
        };
        Ok(Self { pool, metrics })
    }

    /// Which backend the store is on.
    pub fn backend(&self) -> Backend {
        match self.pool {
            Pool::Sqlite(_) => Backend::Sqlite,
            Pool::Postgres(_) => Backend::Postgres,
        }
    }

    /// Records one operation's duration and outcome.
    pub fn observe(&self, operation: &str, started: Instant, succeeded: bool) {
        self.metrics
            .db_duration
            .with_label_values(&[operation])
            .observe(started.elapsed().as_secs_f64());
        if !succeeded {
            self.metrics.db_errors.inc();
        }
    }

    /// Succeeds when the database answers a trivial query.
    pub async fn ping(&self) -> Result<(), DbError> {
        self.fetch_optional::<Count>("ping", Statement::new("select cast(1 as bigint)"))
            .await
            .map(|_| ())
    }

    /// Runs `statement` as `operation` and decodes every row it returns.
    pub async fn fetch_all<T: Record>(
        &self,
        operation: &'static str,
        statement: Statement,
    ) -> Result<Vec<T>, DbError> {
        self.observed(operation, async {
            match &self.pool {
                Pool::Sqlite(pool) => {
                    pool.run(statement.writes(), move |connection| {
                        sqlite::query::<T>(connection, &statement)
                    })
                    .await
                }
                Pool::Postgres(pool) => {
                    let (sql, arguments) = statement.into_postgres()?;
                    let mut lease = pool.lease().await?;
                    let rows = sqlx::query_as_with::<_, T, _>(AssertSqlSafe(sql), arguments)
                        .fetch_all(lease.connection())
                        .await;
                    lease.finish(&rows);
                    Ok(rows?)
                }
            }
        })
        .await
    }

    /// Runs `statement` as `operation` and decodes the first row it returns, if any.
    pub async fn fetch_optional<T: Record>(
        &self,
        operation: &'static str,
        statement: Statement,
    ) -> Result<Option<T>, DbError> {
        Ok(self
            .fetch_all(operation, statement)
            .await?
            .into_iter()
            .next())
    }

    /// Inserts one row as `operation` and decodes it as inserted. On PostgreSQL the rows for
    /// the same table that arrive meanwhile go to the server together ([`batch`]); SQLite's
    /// writer commits concurrent writes together anyway.
    pub async fn insert<T: Record>(
        &self,
        operation: &'static str,
        insert: Insert,
    ) -> Result<T, DbError> {
        let statement = match &self.pool {
            Pool::Sqlite(_) => insert.into_statement()?,
            Pool::Postgres(pool) => {
                return self
                    .observed(operation, async {
                        let row = pool.insert(insert).await?;
                        Ok(T::from_row(&row)?)
                    })
                    .await;
            }
        };
        self.fetch_optional(operation, statement)
            .await?
            .ok_or_else(|| DbError::Worker("the insert returned no row".to_owned()))
    }

    /// Runs `statement`, which returns no rows, as `operation`; returns the rows it changed.
    pub async fn execute(
        &self,
        operation: &'static str,
        statement: Statement,
    ) -> Result<u64, DbError> {
        self.observed(operation, async {
            match &self.pool {
                Pool::Sqlite(pool) => {
                    pool.run(statement.writes(), move |connection| {
                        sqlite::execute(connection, &statement)
                    })
                    .await
                }
                Pool::Postgres(pool) => {
                    let (sql, arguments) = statement.into_postgres()?;
                    let mut lease = pool.lease().await?;
                    let done = sqlx::query_with(AssertSqlSafe(sql), arguments)
                        .execute(lease.connection())
                        .await;
                    lease.finish(&done);
                    Ok(done?.rows_affected())
                }
            }
        })
        .await
    }

    /// Runs one operation's database work in a `query` span when spans are exported
    /// ([`query_span`]), recording its duration and failure under `operation`.
    async fn observed<T>(
        &self,
        operation: &'static str,
        work: impl Future<Output = Result<T, DbError>>,
    ) -> Result<T, DbError> {
        let started = Instant::now();
        let result = work.instrument(query_span(operation, self.backend())).await;
        self.observe(operation, started, result.is_ok());
        result
    }

    /// Sets the pool gauges to the pool's current state.
    pub fn record_pool_state(&self) {
        let (size, idle) = match &self.pool {
            Pool::Sqlite(pool) => pool.state(),
            Pool::Postgres(pool) => pool.state(),
        };
        let idle = i64::try_from(idle).unwrap_or(i64::MAX);
        let gauge = &self.metrics.db_pool_connections;
        gauge.with_label_values(&["idle"]).set(idle);
        gauge
            .with_label_values(&["in_use"])
            .set((i64::from(size) - idle).max(0));
    }

    /// Closes every connection, waiting for those in use to be returned.
    pub async fn close(&self) {
        match &self.pool {
            Pool::Sqlite(pool) => pool.close().await,
            Pool::Postgres(pool) => pool.close().await,
        }
    }
}
/// Opens one connection and closes it again. A pool retries failed connections until its acquire
/// timeout and then reports only "timed out"; one direct attempt fails at once with the cause
/// ("connection refused", "password authentication failed", "unable to open database file").
async fn check_connection<O>(options: &O) -> Result<(), Error>
where
    O: ConnectOptions,
    O::Connection: Sized,
{
    let connection = options.connect().await.map_err(Error::Connect)?;
    connection.close().await.map_err(Error::Connect)
}

/// Creates the directory a SQLite file lives in, so that the default `sqlite://data/tasks.db`
/// works on a fresh checkout.
fn create_parent_dir(file: &std::path::Path) -> Result<(), Error> {
    match file.parent() {
        // A bare file name (or an in-memory database) lives in the working directory.
        Some(dir) if !dir.as_os_str().is_empty() => {
            std::fs::create_dir_all(dir).map_err(|source| Error::CreateDir {
                path: dir.display().to_string(),
                source,
            })
        }
        _ => Ok(()),
    }
}

/// Why a database operation failed.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error(transparent)]
    Postgres(#[from] sqlx::Error),
    #[error("{0}")]
    Sqlite(rusqlite::Error),
    #[error("cannot open the database: {0}")]
    Open(rusqlite::Error),
    #[error("no database connection was free in time")]
    PoolTimedOut,
    #[error("the database pool is closed")]
    PoolClosed,
    #[error("the database operation failed: {0}")]
    Worker(String),
    /// The failure of a group of operations run together (rows inserted together), which each
    /// of them reports.
    #[error(transparent)]
    Group(std::sync::Arc<DbError>),
}

impl From<rusqlite::Error> for DbError {
    fn from(err: rusqlite::Error) -> Self {
        Self::Sqlite(err)
    }
}

impl DbError {
    /// Whether the operation was stopped at its deadline (`DATABASE_STATEMENT_TIMEOUT_MS`):
    /// PostgreSQL's `query_canceled` (57014), SQLite's `SQLITE_INTERRUPT`.
    pub fn is_timeout(&self) -> bool {
        match self {
            Self::Postgres(err) => err
                .as_database_error()
                .and_then(|err| err.code())
                .is_some_and(|code| code == "57014"),
            Self::Sqlite(err) => {
                err.sqlite_error_code() == Some(rusqlite::ErrorCode::OperationInterrupted)
            }
            Self::Group(err) => err.is_timeout(),
            _ => false,
        }
    }

    /// Whether the database cannot be reached right now (503) rather than that this request
    /// went wrong (500). On PostgreSQL a protocol error means the other end broke off the
    /// conversation: a proxy in front of a managed database (Neon's, a cloud load balancer)
    /// accepts the connection and closes it at once while the database behind it is down.
    ///
    /// A server that ends the session (shutting down, restarting, or an administrator's
    /// `pg_terminate_backend`) says so with an error of class 57P (operator intervention) or 08
    /// (connection exception) before it closes the connection: unavailable too.
    pub fn is_unavailable(&self) -> bool {
        match self {
            Self::Postgres(sqlx::Error::Database(err)) => err
                .code()
                .is_some_and(|code| code.starts_with("57P") || code.starts_with("08")),
            Self::Postgres(err) => matches!(
                err,
                sqlx::Error::PoolTimedOut
                    | sqlx::Error::PoolClosed
                    | sqlx::Error::Io(_)
                    | sqlx::Error::Tls(_)
                    | sqlx::Error::Protocol(_)
            ),
            Self::Open(_) | Self::PoolTimedOut | Self::PoolClosed => true,
            Self::Group(err) => err.is_unavailable(),
            Self::Sqlite(_) | Self::Worker(_) => false,
        }
    }
}
