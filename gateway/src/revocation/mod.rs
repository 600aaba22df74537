//! Sign-out that reaches the gateway: the set of revoked sessions (`sid`), tokens (`jti`) and
//! per-user cut-off times (`sub` + `not_before`), checked on every request.
//!
//! - [`RevocationSet`]: the entries in memory. [`RevocationSet::is_revoked`] is three hash
//!   lookups under a read lock: no I/O, whatever the store, so a cached token is checked as
//!   cheaply as a fresh one.
//! - [`Revocations`]: the set with its store and metrics; what the admin API and the proxy use.
//! - [`file`](mod@file): the default store, a JSON file under `./data/` written atomically.
//! - [`redis`]: the shared store for many replicas: stored entries with their TTL, changes
//!   published on a channel, the whole set loaded at start and again on every reconnect.
//! - [`api`]: `POST /revocations` and `GET /revocations/stats` on the admin listener.
//!
//! Every entry carries an expiry (`expires_at`, Unix seconds) after which it no longer matters
//! because every token it could match has expired too; expired entries are ignored at once and
//! dropped by the next sweep, so the set stays small.

pub mod api;
pub mod file;
pub mod redis;
mod set;

pub use set::{Counts, RevocationSet};

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::clock::now_unix;
use common::config::{ConfigError, Env};
use serde::{Deserialize, Serialize};

use crate::config::{REVOCATION_FILE, REVOCATION_REDIS_URL, REVOCATION_TTL_SECONDS};
use crate::metrics::Metrics;
use crate::token::Principal;

/// The default `REVOCATION_TTL_SECONDS`: 7 days, longer than any token the gateway is expected
/// to accept.
pub const DEFAULT_TTL_SECONDS: u64 = 7 * 24 * 3600;
/// The default `REVOCATION_FILE`.
pub const DEFAULT_FILE: &str = "data/revocations.json";
/// How often expired entries are swept and a failed store write is retried.
const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// What is revoked.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    /// One session: tokens whose `sid` claim is this.
    Session(String),
    /// One token: the token whose `jti` claim is this.
    Token(String),
    /// Every token of a user (`sub`) issued before `not_before` (its `iat`, Unix seconds).
    User { sub: String, not_before: u64 },
}

/// One revocation: a target and when it stops mattering.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revocation {
    pub target: Target,
    /// Unix seconds after which the entry is dropped.
    pub expires_at: u64,
}

/// A revocation as stored in the file, in Redis and in published messages:
/// `{"sid": "…", "expires_at": 1767225600}`, `{"jti": …}` or `{"sub": …, "not_before": …}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoredRevocation {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before: Option<u64>,
    pub expires_at: u64,
    /// When the change was published, in Unix milliseconds (messages only): the propagation lag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub published_at_ms: Option<u64>,
}

impl From<&Revocation> for StoredRevocation {
    fn from(revocation: &Revocation) -> Self {
        let mut stored = Self {
            expires_at: revocation.expires_at,
            ..Self::default()
        };
        match &revocation.target {
            Target::Session(sid) => stored.sid = Some(sid.clone()),
            Target::Token(jti) => stored.jti = Some(jti.clone()),
            Target::User { sub, not_before } => {
                stored.sub = Some(sub.clone());
                stored.not_before = Some(*not_before);
            }
        }
        stored
    }
}

impl TryFrom<StoredRevocation> for Revocation {
    type Error = &'static str;

    fn try_from(stored: StoredRevocation) -> Result<Self, Self::Error> {
        let target = match (stored.sid, stored.jti, stored.sub, stored.not_before) {
            (Some(sid), None, None, None) => Target::Session(sid),
            (None, Some(jti), None, None) => Target::Token(jti),
            (None, None, Some(sub), Some(not_before)) => Target::User { sub, not_before },
            _ => return Err("an entry must have exactly one of sid, jti or sub (with not_before)"),
        };
        Ok(Self {
            target,
            expires_at: stored.expires_at,
        })
    }
}

/// Where the set is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreConfig {
    /// `REVOCATION_FILE`: one gateway.
    File(PathBuf),
    /// `REVOCATION_REDIS_URL`: shared by every replica.
    Redis(String),
}

/// The revocation settings.
#[derive(Debug, Clone)]
pub struct RevocationConfig {
    /// `REVOCATION_TTL_SECONDS`: the default lifetime of an entry.
    pub ttl_seconds: u64,
    /// `REVOCATION_FILE` or `REVOCATION_REDIS_URL`.
    pub store: StoreConfig,
}

impl RevocationConfig {
    /// Reads the revocation variables.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let ttl_seconds = crate::config::bounded(
            env,
            REVOCATION_TTL_SECONDS,
            DEFAULT_TTL_SECONDS,
            60..=366 * 24 * 3600,
        )?;
        let store = match env.get(REVOCATION_REDIS_URL)? {
            Some(url) => {
                ::redis::Client::open(url).map_err(|err| {
                    ConfigError::new(REVOCATION_REDIS_URL, format!("is not a Redis URL: {err}"))
                })?;
                StoreConfig::Redis(url.to_owned())
            }
            None => StoreConfig::File(PathBuf::from(
                env.get(REVOCATION_FILE)?.unwrap_or(DEFAULT_FILE),
            )),
        };
        Ok(Self { ttl_seconds, store })
    }
}

/// Why the revocation set could not be loaded at start.
#[derive(Debug, thiserror::Error)]
#[error("{variable} {detail}")]
pub struct LoadError {
    pub variable: &'static str,
    pub detail: String,
}

/// What became of an accepted revocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Persisted {
    /// Enforced here and written to the store (and, with Redis, published to every replica).
    Stored,
    /// Enforced here; the store is unreachable, and it is written (and published) as soon as
    /// the store is back.
    Pending,
}

enum Store {
    File(file::FileStore),
    Redis(redis::RedisStore),
}

/// The revocation set with its store: what the proxy checks and the admin API changes.
pub struct Revocations {
    set: RevocationSet,
    store: Store,
    /// A change the store has not taken yet, retried by the background task.
    dirty: AtomicBool,
    /// Whether the whole set has been loaded from the store once (readiness).
    loaded: AtomicBool,
    metrics: Arc<Metrics>,
    ttl_seconds: u64,
}

impl Revocations {
    /// The set, loaded from the file store at once or from Redis by [`Self::run`].
    pub fn open(config: &RevocationConfig, metrics: Arc<Metrics>) -> Result<Self, LoadError> {
        let (store, initial) = match &config.store {
            StoreConfig::File(path) => {
                let store = file::FileStore::new(path.clone());
                let initial = store.load()?;
                (Store::File(store), Some(initial))
            }
            StoreConfig::Redis(url) => (Store::Redis(redis::RedisStore::new(url)?), None),
        };
        let revocations = Self {
            set: RevocationSet::default(),
            store,
            dirty: AtomicBool::new(false),
            loaded: AtomicBool::new(initial.is_some()),
            metrics,
            ttl_seconds: config.ttl_seconds,
        };
        if let Some(initial) = initial {
            let now = now_unix();
            for revocation in &initial {
                revocations.set.apply(revocation, now);
            }
            revocations.metrics.revocation_store_up.set(1);
        }
        revocations.update_gauges();
        Ok(revocations)
    }

    /// Whether the request's verified token is revoked. Memory only.
    pub fn is_revoked(&self, principal: &Principal) -> bool {
        self.set.is_revoked(principal, now_unix())
    }

    /// Whether the set has been loaded from its store (the gateway is not ready before).
    pub fn is_loaded(&self) -> bool {
        self.loaded.load(Ordering::Acquire)
    }

    /// The in-memory set.
    pub fn set(&self) -> &RevocationSet {
        &self.set
    }

    /// The default `expires_at` of a new entry: now + `REVOCATION_TTL_SECONDS`.
    pub fn default_expiry(&self, now: u64) -> u64 {
        now.saturating_add(self.ttl_seconds)
    }

    /// The store's name, for the stats.
    pub fn store_name(&self) -> &'static str {
        match self.store {
            Store::File(_) => "file",
            Store::Redis(_) => "redis",
        }
    }

    /// Enforces `revocation` at once, then writes it to the store.
    pub async fn revoke(&self, revocation: Revocation) -> Persisted {
        let kind = kind_label(&revocation.target);
        if self.set.apply(&revocation, now_unix()) {
            self.metrics
                .revocations_applied
                .with_label_values(&[kind, "api"])
                .inc();
            self.update_gauges();
        }
        let written = match &self.store {
            Store::File(store) => store
                .save(self.set.snapshot())
                .await
                .map_err(|err| err.to_string()),
            Store::Redis(store) => store
                .write(&revocation)
                .await
                .map_err(|err| err.to_string()),
        };
        match written {
            Ok(()) => Persisted::Stored,
            Err(err) => {
                self.store_failed("write", &err);
                self.dirty.store(true, Ordering::Release);
                Persisted::Pending
            }
        }
    }

    /// Applies a revocation learned from the store; returns whether it was new here.
    fn learn(&self, revocation: &Revocation, now: u64) -> bool {
        let changed = self.set.apply(revocation, now);
        if changed {
            self.metrics
                .revocations_applied
                .with_label_values(&[kind_label(&revocation.target), "store"])
                .inc();
        }
        changed
    }

    fn store_failed(&self, operation: &'static str, error: &dyn std::fmt::Display) {
        self.metrics
            .revocation_store_errors
            .with_label_values(&[operation])
            .inc();
        self.metrics.revocation_store_up.set(0);
        tracing::warn!(store = self.store_name(), operation, error = %error, "revocation store failed");
    }

    fn update_gauges(&self) {
        let counts = self.set.counts();
        for (kind, count) in [
            ("sid", counts.sid),
            ("jti", counts.jti),
            ("sub", counts.sub),
        ] {
            self.metrics
                .revocation_entries
                .with_label_values(&[kind])
                .set(i64::try_from(count).unwrap_or(i64::MAX));
        }
    }

    /// Drops expired entries; true when some were dropped.
    fn sweep(&self) -> bool {
        let dropped = self.set.sweep(now_unix());
        if dropped > 0 {
            self.update_gauges();
        }
        dropped > 0
    }

    /// The background work until `shutdown` turns true: sweeping expired entries, and either
    /// rewriting the file (compacted, and after a failed write) or keeping in step with Redis.
    pub async fn run(self: Arc<Self>, shutdown: tokio::sync::watch::Receiver<bool>) {
        match &self.store {
            Store::File(store) => file::run(&self, store, shutdown).await,
            Store::Redis(store) => store.run(&self, shutdown).await,
        }
    }
}

fn kind_label(target: &Target) -> &'static str {
    match target {
        Target::Session(_) => "sid",
        Target::Token(_) => "jti",
        Target::User { .. } => "sub",
    }
}

/// Runs [`Revocations::run`] as a pingora background service.
pub struct RevocationSync(pub Arc<Revocations>);

#[async_trait::async_trait]
impl pingora::services::background::BackgroundService for RevocationSync {
    async fn start(&self, shutdown: pingora::server::ShutdownWatch) {
        Arc::clone(&self.0).run(shutdown).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(sub: &str, sid: Option<&str>, jti: Option<&str>, iat: Option<u64>) -> Principal {
        Principal {
            sub: sub.to_owned(),
            email: None,
            sid: sid.map(str::to_owned),
            jti: jti.map(str::to_owned),
            iat,
        }
    }

    fn revocation(target: Target, expires_at: u64) -> Revocation {
        Revocation { target, expires_at }
    }

    #[test]
    fn each_kind_refuses_only_what_it_names() {
        let set = RevocationSet::default();
        let now = 1_000;
        set.apply(&revocation(Target::Session("s1".into()), 2_000), now);
        set.apply(&revocation(Target::Token("j1".into()), 2_000), now);
        set.apply(
            &revocation(
                Target::User {
                    sub: "bob".into(),
                    not_before: 900,
                },
                2_000,
            ),
            now,
        );
        assert!(set.is_revoked(&principal("alice", Some("s1"), None, Some(1)), now));
        assert!(!set.is_revoked(&principal("alice", Some("s2"), None, Some(1)), now));
        assert!(set.is_revoked(&principal("alice", None, Some("j1"), Some(1)), now));
        assert!(!set.is_revoked(&principal("alice", None, Some("j2"), Some(1)), now));
        assert!(set.is_revoked(&principal("bob", None, None, Some(899)), now));
        assert!(
            !set.is_revoked(&principal("bob", None, None, Some(900)), now),
            "issued at the cut-off"
        );
        assert!(
            set.is_revoked(&principal("bob", None, None, None), now),
            "no iat"
        );
        assert!(!set.is_revoked(&principal("carol", None, None, None), now));
    }

    #[test]
    fn expired_entries_are_ignored_then_swept() {
        let set = RevocationSet::default();
        set.apply(&revocation(Target::Session("s1".into()), 1_010), 1_000);
        set.apply(&revocation(Target::Session("s2".into()), 1_100), 1_000);
        assert!(!set.apply(&revocation(Target::Token("old".into()), 999), 1_000));
        let s1 = principal("alice", Some("s1"), None, Some(1));
        assert!(set.is_revoked(&s1, 1_009));
        assert!(!set.is_revoked(&s1, 1_010));
        assert_eq!(set.sweep(1_005), 0);
        assert_eq!(set.sweep(1_010), 1);
        assert_eq!(
            set.counts(),
            Counts {
                sid: 1,
                jti: 0,
                sub: 0
            }
        );
        assert_eq!(set.sweep(1_100), 1);
        assert_eq!(set.counts(), Counts::default());
    }

    #[test]
    fn merging_keeps_the_later_expiry_and_cut_off() {
        let set = RevocationSet::default();
        let user = |not_before, expires_at| {
            revocation(
                Target::User {
                    sub: "bob".into(),
                    not_before,
                },
                expires_at,
            )
        };
        assert!(set.apply(&user(500, 2_000), 100));
        assert!(
            !set.apply(&user(400, 1_500), 100),
            "older news changes nothing"
        );
        assert!(set.apply(&user(600, 1_500), 100));
        assert_eq!(set.snapshot(), vec![user(600, 2_000)]);
    }

    #[test]
    fn stored_form_round_trips_and_rejects_ambiguity() {
        for target in [
            Target::Session("s".into()),
            Target::Token("j".into()),
            Target::User {
                sub: "u".into(),
                not_before: 5,
            },
        ] {
            let original = revocation(target, 10);
            let stored = StoredRevocation::from(&original);
            let json = serde_json::to_string(&stored).expect("serializes");
            let back: StoredRevocation = serde_json::from_str(&json).expect("parses");
            assert_eq!(Revocation::try_from(back), Ok(original));
        }
        let both = StoredRevocation {
            sid: Some("s".into()),
            jti: Some("j".into()),
            ..StoredRevocation::default()
        };
        assert!(Revocation::try_from(both).is_err());
    }

    #[test]
    fn config_names_its_variables() {
        let env = |pairs: &[(&str, &str)]| Env::from_pairs(pairs.to_vec());
        let config = RevocationConfig::from_env(&env(&[])).expect("defaults");
        assert_eq!(config.ttl_seconds, DEFAULT_TTL_SECONDS);
        assert_eq!(config.store, StoreConfig::File(PathBuf::from(DEFAULT_FILE)));
        for (variable, value) in [
            ("REVOCATION_TTL_SECONDS", "0"),
            ("REVOCATION_TTL_SECONDS", "soon"),
            ("REVOCATION_REDIS_URL", "http://redis:6379"),
        ] {
            let error =
                RevocationConfig::from_env(&env(&[(variable, value)])).expect_err("refused");
            assert_eq!(error.variable, variable, "{variable}={value}");
        }
        let redis =
            RevocationConfig::from_env(&env(&[("REVOCATION_REDIS_URL", "redis://127.0.0.1:6379")]))
                .expect("redis");
        assert_eq!(
            redis.store,
            StoreConfig::Redis("redis://127.0.0.1:6379".into())
        );
    }
}
