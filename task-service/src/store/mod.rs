//! Where the tasks live: a SQLite file or a PostgreSQL server, chosen by `DATABASE_URL`.
//!
//! This module is the one place where the two backends differ: how a URL is parsed, how the pool
//! is tuned, which migrations run. Queries are written once, next to the handlers that run them,
//! and [`run_query!`] runs the same query text on whichever pool the store holds. That works
//! because both backends accept the same SQL: `$1`-style placeholders (SQLite reads `$NNN` as
//! parameter NNN), `returning`, `lower`, `like … escape`, and the schema in each backend's
//! migrations stores values that sort alike (see the migrations' comments). The keyword search's
//! index is the one part of a query that differs ([`Backend::keyword_index_condition`]).
//!
//! Every operation runs on a [`Lease`](lease::Lease): one pooled connection, with a deadline on its database
//! work (`DATABASE_STATEMENT_TIMEOUT_MS`) and closed rather than reused when the request that
//! holds it goes away mid-statement, so that a client that disconnects stops its query:
//!
//! - PostgreSQL runs each statement under `statement_timeout`, and with
//!   `client_connection_check_interval` it notices a closed connection while a statement runs
//!   and aborts it (dropping a query future alone would leave the statement running).
//! - SQLite runs statements on a worker thread that a dropped future does not stop; a progress
//!   handler interrupts the statement once the deadline passes or the lease is abandoned.

use std::str::FromStr;
use std::time::{Duration, Instant};

use common::config::ConfigError;
use common::tracing_export::SPAN_TARGET;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{ConnectOptions, Connection};

use crate::Error;
use crate::config::DATABASE_URL;
use crate::metrics::Metrics;

mod lease;

use lease::bound_session;

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/postgres");

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

/// A connection pool on one of the two backends. Match on it through [`run_query!`].
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
    statement_timeout: Duration,
    metrics: Metrics,
}

/// Runs `$body` with `$connection` bound to the mutable connection of a [`Lease`](lease::Lease) taken from
/// `$pool`; the lease is finished once the body's future completes.
macro_rules! on_lease {
    ($store:expr, $pool:expr, |$connection:ident| $body:expr) => {
        match $store.lease($pool).await {
            Ok(mut lease) => {
                let $connection = lease.connection();
                let result = $body;
                lease.finish();
                result
            }
            Err(err) => Err(err),
        }
    };
}
pub(crate) use on_lease;

/// Runs one database operation on a [`Lease`](lease::Lease) of the store's pool, whichever backend it is, and
/// records its duration (and failure) under `operation`, in a `query` span when spans are
/// exported ([`query_span`]).
///
/// `$body` is written once and compiled once per backend, with `$connection` bound to a
/// `&mut SqliteConnection` or a `&mut PgConnection` (reborrow it, `&mut *connection`, to run
/// several statements); both arms must produce the same `Result<_, sqlx::Error>`.
macro_rules! run_query {
    ($store:expr, $operation:literal, |$connection:ident| $body:expr) => {{
        let store: &$crate::store::Store = $store;
        let started = ::std::time::Instant::now();
        let result = ::tracing::Instrument::instrument(
            async {
                match store.pool() {
                    $crate::store::Pool::Sqlite(pool) => {
                        $crate::store::on_lease!(store, pool, |$connection| $body)
                    }
                    $crate::store::Pool::Postgres(pool) => {
                        $crate::store::on_lease!(store, pool, |$connection| $body)
                    }
                }
            },
            $crate::store::query_span($operation, store.backend()),
        )
        .await;
        store.observe($operation, started, result.is_ok());
        result
    }};
}
pub(crate) use run_query;

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
                let pool = SqlitePoolOptions::new()
                    .max_connections(limits.max_connections.unwrap_or(SQLITE_MAX_CONNECTIONS))
                    .acquire_timeout(ACQUIRE_TIMEOUT)
                    .connect_lazy_with(options);
                Pool::Sqlite(pool)
            }
            DatabaseOptions::Postgres(options) => {
                check_connection(&options).await?;
                let migrations = PgPoolOptions::new()
                    .max_connections(1)
                    .connect_lazy_with(options.clone());
                POSTGRES_MIGRATIONS.run(&migrations).await?;
                migrations.close().await;
                let timeout_ms = limits.statement_timeout.as_millis().to_string();
                let pool = PgPoolOptions::new()
                    .max_connections(limits.max_connections.unwrap_or(POSTGRES_MAX_CONNECTIONS))
                    .acquire_timeout(ACQUIRE_TIMEOUT)
                    // Set per session rather than as startup options, which connection poolers
                    // such as PgBouncer refuse.
                    .after_connect(move |connection, _| {
                        let timeout_ms = timeout_ms.clone();
                        Box::pin(async move { bound_session(connection, &timeout_ms).await })
                    })
                    .connect_lazy_with(options);
                Pool::Postgres(pool)
            }
        };
        Ok(Self {
            pool,
            statement_timeout: limits.statement_timeout,
            metrics,
        })
    }

    /// Which backend the store is on.
    pub fn backend(&self) -> Backend {
        match self.pool {
            Pool::Sqlite(_) => Backend::Sqlite,
            Pool::Postgres(_) => Backend::Postgres,
        }
    }

    /// The pool, for [`run_query!`].
    pub fn pool(&self) -> &Pool {
        &self.pool
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
    pub async fn ping(&self) -> Result<(), sqlx::Error> {
        run_query!(self, "ping", |connection| sqlx::query("select 1")
            .execute(connection)
            .await
            .map(|_| ()))
    }

    /// Sets the pool gauges to the pool's current state.
    pub fn record_pool_state(&self) {
        let (size, idle) = match &self.pool {
            Pool::Sqlite(pool) => (pool.size(), pool.num_idle()),
            Pool::Postgres(pool) => (pool.size(), pool.num_idle()),
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

/// Whether a database error means a statement was stopped at its deadline
/// (`DATABASE_STATEMENT_TIMEOUT_MS`): PostgreSQL's `query_canceled` (57014), SQLite's
/// `SQLITE_INTERRUPT` (9).
pub fn is_timeout(err: &sqlx::Error) -> bool {
    err.as_database_error()
        .and_then(|err| err.code())
        .is_some_and(|code| code == "57014" || code == "9")
}

/// Whether a database error means the database cannot be reached right now (503) rather than
/// that this request went wrong (500). A protocol error means the other end broke off the
/// conversation: a proxy in front of a managed database (Neon's, a cloud load balancer) accepts
/// the connection and closes it at once while the database behind it is down.
pub fn is_unavailable(err: &sqlx::Error) -> bool {
    matches!(
        err,
        sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_)
    )
}
