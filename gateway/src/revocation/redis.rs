//! The shared store (`REVOCATION_REDIS_URL`): one Redis for every gateway replica.
//!
//! - Each entry is a key, `revoked:sid:<sid>`, `revoked:jti:<jti>` or `revoked:sub:<sub>`, whose
//!   value is the entry's JSON and which Redis itself expires at the entry's `expires_at`.
//! - Each change is also published on the channel [`CHANNEL`], with the time it was published,
//!   so every replica applies it within milliseconds and records the propagation lag.
//! - Each replica subscribes first and then loads the whole set (`SCAN`), on start and on every
//!   reconnect; a change is therefore either in the scan or in a message that arrives after it.
//!   The same pass writes back every entry this replica holds that Redis lacks: revocations
//!   accepted while Redis was unreachable, or entries lost by a Redis that restarted empty.
//! - While Redis is unreachable the replica keeps enforcing what it holds, keeps serving, reports
//!   `gateway_revocation_store_up` 0 and reconnects with a backoff capped well under a second.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::clock::{now_unix, now_unix_millis};
use futures::StreamExt;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncCommands, Client, RedisError};
use tokio::sync::watch;

use super::{LoadError, Revocation, Revocations, SWEEP_INTERVAL, StoredRevocation, Target};
use crate::config::REVOCATION_REDIS_URL;

/// The pub/sub channel of changes.
pub const CHANNEL: &str = "gateway:revocations";
/// The prefix of every entry's key.
pub const KEY_PREFIX: &str = "revoked:";
/// How long one connection attempt or command may take.
const TIMEOUT: Duration = Duration::from_millis(500);
/// The first and the longest wait between reconnection attempts: a replica that was cut off
/// catches up within a second of Redis coming back.
const MIN_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_millis(500);
/// Keys per `SCAN` step and per `MGET`.
const BATCH: usize = 500;

/// The Redis store.
pub struct RedisStore {
    client: Client,
    /// The connection for writes, made by the first successful sync and reconnecting by itself.
    writer: tokio::sync::RwLock<Option<ConnectionManager>>,
}

/// The key of an entry.
pub fn key(target: &Target) -> String {
    match target {
        Target::Session(sid) => format!("{KEY_PREFIX}sid:{sid}"),
        Target::Token(jti) => format!("{KEY_PREFIX}jti:{jti}"),
        Target::User { sub, .. } => format!("{KEY_PREFIX}sub:{sub}"),
    }
}

#[derive(Debug, thiserror::Error)]
enum SyncError {
    #[error("{0}")]
    Redis(#[from] RedisError),
    #[error("timed out")]
    Timeout,
    #[error("connection lost")]
    Closed,
}

async fn timed<T, E: Into<SyncError>>(
    future: impl Future<Output = Result<T, E>>,
) -> Result<T, SyncError> {
    tokio::time::timeout(TIMEOUT, future)
        .await
        .map_err(|_| SyncError::Timeout)?
        .map_err(Into::into)
}

impl RedisStore {
    /// A store for `url`; nothing connects yet.
    pub fn new(url: &str) -> Result<Self, LoadError> {
        let client = Client::open(url).map_err(|err| LoadError {
            variable: REVOCATION_REDIS_URL,
            detail: format!("is not a Redis URL: {err}"),
        })?;
        Ok(Self {
            client,
            writer: tokio::sync::RwLock::new(None),
        })
    }

    /// Stores `revocation` with its expiry and publishes it.
    pub(super) async fn write(&self, revocation: &Revocation) -> Result<(), RedisError> {
        let Some(mut connection) = self.writer.read().await.clone() else {
            return Err(RedisError::from((
                redis::ErrorKind::Io,
                "not connected to Redis yet",
            )));
        };
        write_entries(&mut connection, std::slice::from_ref(revocation)).await
    }

    /// Keeps this replica in step with Redis until `shutdown` turns true.
    pub(super) async fn run(&self, revocations: &Revocations, mut shutdown: watch::Receiver<bool>) {
        let mut backoff = MIN_BACKOFF;
        loop {
            let synced = tokio::select! {
                result = self.sync(revocations, &mut backoff) => result,
                _ = shutdown.changed() => return,
            };
            if let Err(err) = synced {
                revocations.store_failed("sync", &err);
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = shutdown.changed() => return,
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// One connection's life: subscribe, load and reconcile, then apply messages until the
    /// connection fails.
    async fn sync(
        &self,
        revocations: &Revocations,
        backoff: &mut Duration,
    ) -> Result<(), SyncError> {
        let mut pubsub = timed(self.client.get_async_pubsub()).await?;
        timed(pubsub.subscribe(CHANNEL)).await?;
        let mut connection = self.writer_connection().await?;
        self.reconcile(revocations, &mut connection).await?;
        revocations.loaded.store(true, Ordering::Release);
        revocations.metrics.revocation_store_up.set(1);
        *backoff = MIN_BACKOFF;
        tracing::info!(
            entries = revocations.set.snapshot().len(),
            "revocation set in step with Redis"
        );

        let (mut sink, mut messages) = pubsub.split();
        let mut tick = tokio::time::interval(SWEEP_INTERVAL);
        loop {
            tokio::select! {
                message = messages.next() => {
                    let message = message.ok_or(SyncError::Closed)?;
                    self.apply_message(revocations, &message);
                }
                _ = tick.tick() => {
                    revocations.sweep();
                    // A silent connection (a network cut without a reset) is noticed here.
                    // In subscribed mode PING answers an array, read as any value.
                    timed(sink.ping::<redis::Value>()).await?;
                    if revocations.dirty.swap(false, Ordering::AcqRel)
                        && let Err(err) = self.reconcile(revocations, &mut connection).await
                    {
                        revocations.dirty.store(true, Ordering::Release);
                        return Err(err);
                    }
                }
            }
        }
    }

    async fn writer_connection(&self) -> Result<ConnectionManager, SyncError> {
        if let Some(connection) = self.writer.read().await.clone() {
            return Ok(connection);
        }
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(TIMEOUT))
            .set_response_timeout(Some(TIMEOUT))
            .set_number_of_retries(1)
            .set_min_delay(MIN_BACKOFF)
            .set_max_delay(MAX_BACKOFF);
        let connection = timed(ConnectionManager::new_with_config(
            self.client.clone(),
            config,
        ))
        .await?;
        *self.writer.write().await = Some(connection.clone());
        Ok(connection)
    }

    /// Loads every stored entry into the set, then writes back the entries this replica holds
    /// that Redis lacks or holds older.
    async fn reconcile(
        &self,
        revocations: &Revocations,
        connection: &mut ConnectionManager,
    ) -> Result<(), SyncError> {
        let keys = scan_keys(connection).await?;
        let mut remote: HashMap<String, Revocation> = HashMap::with_capacity(keys.len());
        for chunk in keys.chunks(BATCH) {
            let values: Vec<Option<String>> = timed(connection.mget(chunk)).await?;
            for (key, value) in chunk.iter().zip(values) {
                let parsed = value
                    .as_deref()
                    .and_then(|json| serde_json::from_str::<StoredRevocation>(json).ok())
                    .and_then(|stored| Revocation::try_from(stored).ok());
                match parsed {
                    Some(revocation) => {
                        remote.insert(key.clone(), revocation);
                    }
                    // Expired between SCAN and MGET, or not ours: skipped.
                    None if value.is_none() => {}
                    None => tracing::warn!(%key, "unreadable revocation entry in Redis skipped"),
                }
            }
        }
        let now = now_unix();
        let mut learned = 0_usize;
        for revocation in remote.values() {
            if revocations.learn(revocation, now) {
                learned += 1;
            }
        }
        if learned > 0 {
            revocations.update_gauges();
        }
        let missing: Vec<Revocation> = revocations
            .set
            .snapshot()
            .into_iter()
            .filter(|held| remote.get(&key(&held.target)) != Some(held))
            .collect();
        for chunk in missing.chunks(BATCH) {
            tokio::time::timeout(TIMEOUT * 4, write_entries(connection, chunk))
                .await
                .map_err(|_| SyncError::Timeout)??;
        }
        if !missing.is_empty() {
            tracing::info!(
                written = missing.len(),
                "revocations Redis lacked written back"
            );
        }
        Ok(())
    }

    fn apply_message(&self, revocations: &Revocations, message: &redis::Msg) {
        let parsed = message
            .get_payload::<String>()
            .ok()
            .and_then(|json| serde_json::from_str::<StoredRevocation>(&json).ok());
        let Some(stored) = parsed else {
            revocations
                .metrics
                .revocation_store_errors
                .with_label_values(&["message"])
                .inc();
            tracing::warn!("unreadable revocation message ignored");
            return;
        };
        if let Some(published) = stored.published_at_ms {
            let lag = now_unix_millis().saturating_sub(published);
            #[allow(clippy::cast_precision_loss)]
            revocations
                .metrics
                .revocation_propagation
                .observe(lag as f64 / 1000.0);
        }
        if let Ok(revocation) = Revocation::try_from(stored)
            && revocations.learn(&revocation, now_unix())
        {
            revocations.update_gauges();
        }
    }
}

/// Every key under [`KEY_PREFIX`].
async fn scan_keys(connection: &mut ConnectionManager) -> Result<Vec<String>, SyncError> {
    let mut keys = Vec::new();
    let mut cursor: u64 = 0;
    loop {
        let (next, batch): (u64, Vec<String>) = timed(
            redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(format!("{KEY_PREFIX}*"))
                .arg("COUNT")
                .arg(BATCH)
                .query_async(connection),
        )
        .await?;
        keys.extend(batch);
        if next == 0 {
            return Ok(keys);
        }
        cursor = next;
    }
}

/// Stores each entry with its expiry and publishes it, in one pipeline.
async fn write_entries(
    connection: &mut ConnectionManager,
    entries: &[Revocation],
) -> Result<(), RedisError> {
    let mut pipeline = redis::pipe();
    let published_at_ms = now_unix_millis();
    for revocation in entries {
        let stored = StoredRevocation::from(revocation);
        let value = serde_json::to_string(&stored).map_err(|err| {
            RedisError::from((redis::ErrorKind::Client, "serialize", err.to_string()))
        })?;
        let message = serde_json::to_string(&StoredRevocation {
            published_at_ms: Some(published_at_ms),
            ..stored
        })
        .map_err(|err| {
            RedisError::from((redis::ErrorKind::Client, "serialize", err.to_string()))
        })?;
        pipeline
            .cmd("SET")
            .arg(key(&revocation.target))
            .arg(value)
            .arg("EXAT")
            .arg(revocation.expires_at)
            .ignore()
            .cmd("PUBLISH")
            .arg(CHANNEL)
            .arg(message)
            .ignore();
    }
    pipeline.query_async::<()>(connection).await
}
