//! A [`Lease`]: one pooled connection held for one operation, its database work bounded by the
//! statement timeout and stopped when the request that holds it goes away.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use sqlx::pool::PoolConnection;
use sqlx::postgres::PgPool;
use sqlx::sqlite::SqlitePool;
use sqlx::{Database, Executor};

use super::Store;

/// How often PostgreSQL checks, while a statement runs, that the service is still connected
/// (PostgreSQL 14 and later): the longest a statement outlives a request that went away.
const POSTGRES_CLIENT_CHECK_INTERVAL_MS: u32 = 100;
/// SQLite virtual-machine instructions between two looks at a statement's deadline: a few
/// microseconds of work.
const SQLITE_PROGRESS_INSTRUCTIONS: i32 = 1000;

/// One pooled connection, held for one operation. Dropped before [`Lease::finish`] (the request
/// went away mid-statement), it marks itself abandoned, which stops a SQLite statement at its
/// next progress check (the connection then returns to the pool, usable); a PostgreSQL lease
/// instead takes its connection out of the pool and drops it, which closes the socket at once
/// and so stops the statement at the server's next client check (the pool opens a replacement
/// when it needs one).
pub struct Lease<DB: Database> {
    /// `Some` until the lease is dropped.
    connection: Option<PoolConnection<DB>>,
    abandoned: Arc<AtomicBool>,
    close_when_abandoned: bool,
}

impl<DB: Database> Lease<DB> {
    fn new(
        connection: PoolConnection<DB>,
        abandoned: Arc<AtomicBool>,
        close_when_abandoned: bool,
    ) -> Self {
        Self {
            connection: Some(connection),
            abandoned,
            close_when_abandoned,
        }
    }

    /// The connection to run the operation's statements on.
    pub fn connection(&mut self) -> &mut DB::Connection {
        self.connection
            .as_mut()
            .expect("a lease holds its connection until it is dropped")
    }

    /// The operation ran to its end (success or error): the connection goes back to the pool.
    pub fn finish(mut self) {
        drop(self.connection.take());
    }
}

impl<DB: Database> Drop for Lease<DB> {
    fn drop(&mut self) {
        if let Some(connection) = self.connection.take() {
            self.abandoned.store(true, Ordering::Relaxed);
            if self.close_when_abandoned {
                drop(connection.detach());
            }
        }
    }
}

/// Taking a [`Lease`] on each backend's pool.
pub(crate) trait LeasePool<DB: Database> {
    /// A connection from the pool, its statements bounded by `timeout`.
    async fn lease(&self, timeout: Duration) -> Result<Lease<DB>, sqlx::Error>;
}

impl LeasePool<sqlx::Sqlite> for SqlitePool {
    async fn lease(&self, timeout: Duration) -> Result<Lease<sqlx::Sqlite>, sqlx::Error> {
        let mut connection = self.acquire().await?;
        let abandoned = Arc::new(AtomicBool::new(false));
        let deadline = Instant::now() + timeout;
        let stop = Arc::clone(&abandoned);
        // Returning false interrupts the running statement (SQLITE_INTERRUPT). The handler stays
        // installed while the connection idles; the next lease replaces it.
        connection
            .lock_handle()
            .await?
            .set_progress_handler(SQLITE_PROGRESS_INSTRUCTIONS, move || {
                !stop.load(Ordering::Relaxed) && Instant::now() < deadline
            });
        Ok(Lease::new(connection, abandoned, false))
    }
}

impl LeasePool<sqlx::Postgres> for PgPool {
    async fn lease(&self, _timeout: Duration) -> Result<Lease<sqlx::Postgres>, sqlx::Error> {
        // The server enforces the timeout: every connection's session has it (bound_session).
        Ok(Lease::new(self.acquire().await?, Arc::default(), true))
    }
}

impl Store {
    /// A lease on `pool`, bounded by the configured statement timeout.
    pub(crate) async fn lease<DB: Database, P: LeasePool<DB>>(
        &self,
        pool: &P,
    ) -> Result<Lease<DB>, sqlx::Error> {
        pool.lease(self.statement_timeout).await
    }
}

/// Bounds a new PostgreSQL session: `statement_timeout`, and on PostgreSQL 14 and later a check,
/// while a statement runs, that the service is still connected.
pub(super) async fn bound_session(
    connection: &mut sqlx::PgConnection,
    timeout_ms: &str,
) -> Result<(), sqlx::Error> {
    let check_interval_ms = if connection.server_version_num().unwrap_or(0) >= 140_000 {
        POSTGRES_CLIENT_CHECK_INTERVAL_MS.to_string()
    } else {
        String::new()
    };
    let statement = if check_interval_ms.is_empty() {
        "select set_config('statement_timeout', $1, false)"
    } else {
        "select set_config('statement_timeout', $1, false), \
                set_config('client_connection_check_interval', $2, false)"
    };
    let mut query = sqlx::query(statement).bind(timeout_ms);
    if !check_interval_ms.is_empty() {
        query = query.bind(check_interval_ms);
    }
    connection.execute(query).await.map(|_| ())
}
