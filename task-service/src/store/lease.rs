//! A [`Lease`]: one pooled PostgreSQL connection held for one operation, closed rather than
//! reused when the request that holds it goes away mid-statement.

use sqlx::pool::PoolConnection;
use sqlx::postgres::PgPool;
use sqlx::{Executor, PgConnection, Postgres};

/// How often PostgreSQL checks, while a statement runs, that the service is still connected
/// (PostgreSQL 14 and later): the longest a statement outlives a request that went away.
const POSTGRES_CLIENT_CHECK_INTERVAL_MS: u32 = 100;

/// One pooled connection, held for one operation. Dropped before [`Lease::finish`] (the request
/// went away mid-statement), it takes its connection out of the pool and drops it, which closes
/// the socket at once and so stops the statement at the server's next client check (the pool
/// opens a replacement when it needs one). The server enforces the statement timeout: every
/// connection's session has it ([`bound_session`]).
pub struct Lease {
    /// `Some` until the lease is finished or dropped.
    connection: Option<PoolConnection<Postgres>>,
}

impl Lease {
    /// A connection from `pool`.
    pub async fn take(pool: &PgPool) -> Result<Self, sqlx::Error> {
        Ok(Self {
            connection: Some(pool.acquire().await?),
        })
    }

    /// The connection to run the operation's statements on.
    pub fn connection(&mut self) -> &mut PgConnection {
        self.connection
            .as_mut()
            .expect("a lease holds its connection until it is dropped")
    }

    /// The operation ran to its end (success or error): the connection goes back to the pool.
    pub fn finish(mut self) {
        drop(self.connection.take());
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(connection) = self.connection.take() {
            drop(connection.detach());
        }
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
