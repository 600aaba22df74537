//! The PostgreSQL backend's pool: sqlx connections, each held by one operation at a time
//! ([`Lease`]).
//!
//! An operation costs one round trip: a connection that ends an operation cleanly goes straight
//! back to the pool, unchecked (sqlx's own pool sends a query on every release to learn whether
//! the connection survived). It is checked before its next use only when it has idled for a
//! while, since the server may have cut it meanwhile. A connection whose operation was abandoned
//! mid-statement, or ended in a broken conversation, is dropped instead: dropping closes the
//! socket at once, which stops a running statement at the server's next client check.

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use sqlx::postgres::{PgConnectOptions, PgDatabaseError, PgRow, PgSeverity};
use sqlx::{Connection, Executor, PgConnection};
use tokio::sync::OwnedSemaphorePermit;

use super::DbError;
use super::batch::{self, Groups, MAX_INSERTERS};
use super::insert::Insert;
use super::slots::Slots;

/// How often PostgreSQL checks, while a statement runs, that the service is still connected
/// (PostgreSQL 14 and later): the longest a statement outlives a request that went away.
const POSTGRES_CLIENT_CHECK_INTERVAL_MS: u32 = 100;
/// A pooled connection idle for longer is checked (a trivial query) before use.
const RECHECK_IDLE: Duration = Duration::from_secs(1);
/// A connection idle for longer is closed: a pool sized for a burst gives the server its
/// connections back afterwards.
const IDLE_TIMEOUT: Duration = Duration::from_secs(600);
/// A connection open for longer is closed when its operation ends, so that connections spread
/// again over servers behind a load balancer and a server's per-session memory is renewed.
const MAX_LIFETIME: Duration = Duration::from_secs(1800);
/// How often idle connections are looked at for [`IDLE_TIMEOUT`].
const REAP_INTERVAL: Duration = Duration::from_secs(30);

/// How the pool opens and bounds its connections.
#[derive(Debug, Clone)]
pub struct PgSettings {
    pub options: PgConnectOptions,
    pub max_connections: u32,
    pub acquire_timeout: Duration,
    pub statement_timeout: Duration,
}

/// A pool of PostgreSQL connections, opened when first needed.
#[derive(Clone)]
pub struct PgPool {
    shared: Arc<Shared>,
}

struct Shared {
    settings: PgSettings,
    slots: Slots<Pooled>,
    /// Rows waiting to be inserted together ([`batch`]).
    groups: Groups,
}

/// A connection and its age.
struct Pooled {
    connection: PgConnection,
    opened: Instant,
    /// When it last went back to the pool.
    released: Instant,
}

impl std::fmt::Debug for PgPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (open, idle) = self.state();
        f.debug_struct("PgPool")
            .field("open", &open)
            .field("idle", &idle)
            .finish()
    }
}

impl PgPool {
    /// A pool that opens connections when first needed and closes those idle for
    /// [`IDLE_TIMEOUT`] (from a task on the current runtime).
    pub fn new(settings: PgSettings) -> Self {
        let shared = Arc::new(Shared {
            slots: Slots::new(settings.max_connections),
            settings,
            groups: Groups::default(),
        });
        tokio::spawn(reap(Arc::downgrade(&shared)));
        Self { shared }
    }

    /// A connection for one operation: an idle one, or a new one. Waits up to the acquire
    /// timeout for a free slot and for a new connection to open.
    pub async fn lease(&self) -> Result<Lease, DbError> {
        let shared = &self.shared;
        let deadline = Instant::now() + shared.settings.acquire_timeout;
        let mut permit = shared.slots.permit(shared.settings.acquire_timeout).await?;
        while let Some(pooled) = shared.slots.take_idle() {
            let recheck = pooled.released.elapsed() >= RECHECK_IDLE;
            let mut lease = Lease::new(shared, permit, pooled);
            if !recheck || lease.connection().ping().await.is_ok() {
                return Ok(lease);
            }
            permit = lease.discard();
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        let connection = tokio::time::timeout(remaining, shared.connect())
            .await
            .map_err(|_| DbError::PoolTimedOut)??;
        shared.slots.opened();
        let now = Instant::now();
        let pooled = Pooled {
            connection,
            opened: now,
            released: now,
        };
        Ok(Lease::new(shared, permit, pooled))
    }

    /// Inserts one row, together with the rows for the same table that wait beside it
    /// ([`batch`]); returns it as inserted.
    pub async fn insert(&self, insert: Insert) -> Result<PgRow, DbError> {
        let inserters = MAX_INSERTERS.min(self.shared.settings.max_connections as usize);
        batch::insert(self, &self.shared.groups, inserters, insert).await
    }

    #[cfg(test)]
    pub(super) fn groups(&self) -> &Groups {
        &self.shared.groups
    }

    /// Connections open, and how many of them are idle.
    pub fn state(&self) -> (u32, usize) {
        self.shared.slots.state()
    }

    /// Refuses new operations, waits for those running, and closes every connection.
    pub async fn close(&self) {
        for pooled in self.shared.slots.close().await {
            let _ = pooled.connection.close().await;
        }
    }
}

impl Shared {
    /// Opens a connection and bounds its session.
    async fn connect(&self) -> Result<PgConnection, sqlx::Error> {
        let mut connection = PgConnection::connect_with(&self.settings.options).await?;
        let timeout_ms = self.settings.statement_timeout.as_millis().to_string();
        bound_session(&mut connection, &timeout_ms).await?;
        Ok(connection)
    }
}

/// Closes connections idle for longer than [`IDLE_TIMEOUT`], until the pool is gone.
async fn reap(shared: Weak<Shared>) {
    let mut interval = tokio::time::interval(REAP_INTERVAL);
    interval.tick().await;
    loop {
        interval.tick().await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        while let Some(stale) = shared
            .slots
            .take_stale(|pooled| pooled.released.elapsed() >= IDLE_TIMEOUT)
        {
            shared.slots.closed();
            let _ = stale.connection.close().await;
        }
    }
}

/// One pooled connection, held for one operation. Dropped before [`Lease::finish`] (the request
/// went away mid-statement), it drops its connection, which closes the socket at once and so
/// stops the statement at the server's next client check (the pool opens a replacement when it
/// needs one). The server enforces the statement timeout: every connection's session has it
/// ([`bound_session`]).
pub struct Lease {
    shared: Arc<Shared>,
    /// `Some` until the lease is finished or dropped.
    pooled: Option<Pooled>,
    /// Released after the connection is back in the pool.
    permit: Option<OwnedSemaphorePermit>,
}

impl Lease {
    fn new(shared: &Arc<Shared>, permit: OwnedSemaphorePermit, pooled: Pooled) -> Self {
        Self {
            shared: Arc::clone(shared),
            pooled: Some(pooled),
            permit: Some(permit),
        }
    }

    /// Drops the connection (it failed its check) and keeps the slot.
    fn discard(mut self) -> OwnedSemaphorePermit {
        self.permit
            .take()
            .expect("a lease holds its permit until it is dropped")
    }

    /// The connection to run the operation's statements on.
    pub fn connection(&mut self) -> &mut PgConnection {
        &mut self
            .pooled
            .as_mut()
            .expect("a lease holds its connection until it is finished or dropped")
            .connection
    }

    /// The operation ran to its end with `outcome`. The connection goes back to the pool unless
    /// the conversation broke (an I/O or protocol error, or the server ended the session) or
    /// the connection is past its lifetime; any other error the server reported (a constraint,
    /// the statement timeout) leaves it usable.
    pub fn finish<T>(mut self, outcome: &Result<T, sqlx::Error>) {
        let Some(mut pooled) = self.pooled.take() else {
            return;
        };
        let usable = match outcome {
            Ok(_) => true,
            Err(sqlx::Error::Database(err)) => err
                .try_downcast_ref::<PgDatabaseError>()
                .is_some_and(|err| {
                    !matches!(err.severity(), PgSeverity::Fatal | PgSeverity::Panic)
                }),
            Err(_) => false,
        };
        if usable && pooled.opened.elapsed() < MAX_LIFETIME {
            pooled.released = Instant::now();
            self.shared.slots.give_back(pooled);
        } else {
            self.shared.slots.closed();
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if self.pooled.take().is_some() {
            self.shared.slots.closed();
        }
    }
}

/// Bounds a new PostgreSQL session: `statement_timeout`, and on PostgreSQL 14 and later a check,
/// while a statement runs, that the service is still connected. Set per session rather than as
/// startup options, which connection poolers such as PgBouncer refuse.
pub(super) async fn bound_session(
    connection: &mut PgConnection,
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
