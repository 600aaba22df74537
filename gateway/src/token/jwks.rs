//! The Better Auth key set: fetched from the JWKS endpoint, held in a moka cache by `kid`, and
//! refreshed periodically and on demand.
//!
//! - A token with an unknown `kid` triggers one refetch (the key may just have rotated in), but
//!   such refetches are single-flight (one at a time, later callers reuse its result) and at most
//!   one per `min_refetch_interval`, so a flood of made-up key ids costs Better Auth nothing.
//! - When a fetch fails, the keys already held are kept: an outage of Better Auth does not log
//!   every user out. An answer with no usable key (an empty set, or only keys the gateway does not
//!   verify) is a failed fetch too, never "every key withdrawn": a misconfigured or half-started
//!   Better Auth must not revoke every session at once.
//! - The age of the keys in use (the time since the last successful fetch) is kept for
//!   readiness and the `gateway_jwks_age_seconds` metric.
//! - Only asymmetric keys whose own `alg` is one the gateway verifies are kept; an `oct` (HMAC)
//!   key in a JWKS is ignored, so a public key set can never turn into a shared secret.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey};
use moka::sync::Cache;
use reqwest::Url;
use serde::Deserialize;
use tokio::sync::Mutex;

use super::cache::TokenCache;
use super::key::{SignatureAlgorithm, VerificationKey};
use crate::metrics::Metrics;

/// Larger JWKS bodies are refused: Better Auth's holds a handful of keys.
const MAX_JWKS_BYTES: usize = 256 * 1024;
/// At most this many keys are held.
const MAX_KEYS: u64 = 256;

/// Why a JWKS fetch failed.
#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    #[error("request failed: {0}")]
    Request(#[from] reqwest::Error),
    #[error("answered HTTP {0}")]
    Status(u16),
    #[error("body is larger than {MAX_JWKS_BYTES} bytes")]
    TooLarge,
    #[error("body is not a JWKS: {0}")]
    NotAJwks(#[from] serde_json::Error),
    #[error("has no key the gateway can use")]
    NoUsableKey,
}

#[derive(Deserialize)]
struct KeySet {
    keys: Vec<serde_json::Value>,
}

/// The keys of a JWKS document that the gateway can use, by `kid`. Entries without a `kid`, without
/// a supported asymmetric `alg`, or whose key does not match that `alg` are skipped (and logged).
pub fn parse_jwks(body: &[u8]) -> Result<Vec<(String, VerificationKey)>, JwksError> {
    let set: KeySet = serde_json::from_slice(body)?;
    Ok(set
        .keys
        .into_iter()
        .filter_map(|value| match usable_key(&value) {
            Ok(key) => Some(key),
            Err(reason) => {
                let kid = value.get("kid").and_then(|kid| kid.as_str()).unwrap_or("");
                tracing::warn!(kid, reason, "ignoring JWKS key");
                None
            }
        })
        .collect())
}

/// One JWK, if the gateway may verify with it.
fn usable_key(value: &serde_json::Value) -> Result<(String, VerificationKey), &'static str> {
    let text = |field: &str| value.get(field).and_then(|v| v.as_str());
    let kid = text("kid").filter(|kid| !kid.is_empty()).ok_or("no kid")?;
    if text("use").is_some_and(|usage| usage != "sig") {
        return Err("not a signing key");
    }
    let alg: SignatureAlgorithm = text("alg")
        .ok_or("no alg")?
        .parse()
        .map_err(|_| "an alg the gateway does not verify")?;
    let (kty, curve) = match alg {
        SignatureAlgorithm::Es512 => ("EC", Some("P-521")),
        SignatureAlgorithm::Jose(Algorithm::EdDSA) => ("OKP", Some("Ed25519")),
        SignatureAlgorithm::Jose(Algorithm::ES256) => ("EC", Some("P-256")),
        SignatureAlgorithm::Jose(Algorithm::ES384) => ("EC", Some("P-384")),
        SignatureAlgorithm::Jose(
            Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512,
        ) => ("RSA", None),
        // HMAC (and anything new) never comes from a public key set.
        SignatureAlgorithm::Jose(_) => return Err("not an asymmetric algorithm"),
    };
    if text("kty") != Some(kty) || curve.is_some_and(|crv| text("crv") != Some(crv)) {
        return Err("key type or curve does not match its alg");
    }
    let key = match alg {
        SignatureAlgorithm::Es512 => VerificationKey::p521_from_coordinates(
            text("x").ok_or("malformed JWK")?,
            text("y").ok_or("malformed JWK")?,
        )?,
        SignatureAlgorithm::Jose(alg) => VerificationKey::Jose {
            alg,
            key: jose_key(value, alg)?,
        },
    };
    Ok((kid.to_owned(), key))
}

/// The jsonwebtoken key of a JWK whose `kty` and `crv` already match `alg`.
fn jose_key(value: &serde_json::Value, alg: Algorithm) -> Result<DecodingKey, &'static str> {
    let jwk: Jwk = serde_json::from_value(value.clone()).map_err(|_| "malformed JWK")?;
    let key = DecodingKey::from_jwk(&jwk).map_err(|_| "malformed key material")?;
    if key.family() != alg.family() {
        return Err("key family does not match its alg");
    }
    // jsonwebtoken slices the first 32 bytes of an Ed25519 key without checking its length.
    if alg == Algorithm::EdDSA && !key.try_get_as_bytes().is_ok_and(|bytes| bytes.len() == 32) {
        return Err("Ed25519 key is not 32 bytes");
    }
    Ok(key)
}

/// The key set and how to refresh it.
pub struct JwksStore {
    url: Url,
    client: reqwest::Client,
    keys: Cache<String, Arc<VerificationKey>>,
    loaded: AtomicBool,
    /// When the key set was last fetched successfully.
    refreshed_at: std::sync::Mutex<Option<Instant>>,
    /// Serialises fetches (single flight) and remembers the last on-demand one.
    last_on_demand_fetch: Mutex<Option<Instant>>,
    min_refetch_interval: Duration,
    /// Cleared when a key disappears, so tokens it signed stop being honoured at once.
    token_cache: TokenCache,
    metrics: Arc<Metrics>,
}

impl JwksStore {
    /// A store for the JWKS at `url`; nothing is fetched until [`Self::refresh`].
    pub fn new(
        url: Url,
        fetch_timeout: Duration,
        min_refetch_interval: Duration,
        token_cache: TokenCache,
        metrics: Arc<Metrics>,
    ) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .timeout(fetch_timeout)
            .user_agent(concat!("gateway/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            url,
            client,
            keys: Cache::builder().max_capacity(MAX_KEYS).build(),
            loaded: AtomicBool::new(false),
            refreshed_at: std::sync::Mutex::new(None),
            last_on_demand_fetch: Mutex::new(None),
            min_refetch_interval,
            token_cache,
            metrics,
        })
    }

    /// Whether a fetch has succeeded with at least one usable key.
    pub fn is_loaded(&self) -> bool {
        self.loaded.load(Ordering::Acquire)
    }

    /// How long ago the key set in use was fetched; `None` before the first success.
    pub fn age(&self) -> Option<Duration> {
        let refreshed_at = *self
            .refreshed_at
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        refreshed_at.map(|at| at.elapsed())
    }

    /// The key for `kid`, refetching the JWKS once if it is unknown and no on-demand fetch
    /// happened within the minimum interval.
    pub async fn key(&self, kid: &str) -> Option<Arc<VerificationKey>> {
        if let Some(key) = self.keys.get(kid) {
            return Some(key);
        }
        let mut last = self.last_on_demand_fetch.lock().await;
        // While this caller waited, another fetch may have brought the key in.
        if let Some(key) = self.keys.get(kid) {
            return Some(key);
        }
        if last.is_some_and(|at| at.elapsed() < self.min_refetch_interval) {
            return None;
        }
        *last = Some(Instant::now());
        // A failure is logged and counted by `fetch_and_store`; the old keys stay.
        let _ = self.fetch_and_store().await;
        self.keys.get(kid)
    }

    /// Fetches the JWKS now and replaces the key set; on failure the old keys stay.
    pub async fn refresh(&self) -> Result<usize, JwksError> {
        let _single_flight = self.last_on_demand_fetch.lock().await;
        self.fetch_and_store().await
    }

    async fn fetch_and_store(&self) -> Result<usize, JwksError> {
        let result = self.fetch().await;
        match &result {
            Ok(keys) => {
                self.metrics
                    .jwks_refreshes
                    .with_label_values(&["success"])
                    .inc();
                tracing::debug!(keys = keys.len(), "JWKS refreshed");
            }
            Err(err) => {
                self.metrics
                    .jwks_refreshes
                    .with_label_values(&["error"])
                    .inc();
                tracing::warn!(url = %self.url, error = %err, "JWKS refresh failed; keeping the current keys");
            }
        }
        let keys = result?;
        let count = keys.len();
        self.replace_keys(keys);
        Ok(count)
    }

    async fn fetch(&self) -> Result<Vec<(String, VerificationKey)>, JwksError> {
        let mut response = self.client.get(self.url.clone()).send().await?;
        if !response.status().is_success() {
            return Err(JwksError::Status(response.status().as_u16()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await? {
            if body.len() + chunk.len() > MAX_JWKS_BYTES {
                return Err(JwksError::TooLarge);
            }
            body.extend_from_slice(&chunk);
        }
        let keys = parse_jwks(&body)?;
        if keys.is_empty() {
            return Err(JwksError::NoUsableKey);
        }
        Ok(keys)
    }

    fn replace_keys(&self, keys: Vec<(String, VerificationKey)>) {
        let fresh: HashSet<&str> = keys.iter().map(|(kid, _)| kid.as_str()).collect();
        let removed: Vec<Arc<String>> = self
            .keys
            .iter()
            .map(|(kid, _)| kid)
            .filter(|kid| !fresh.contains(kid.as_str()))
            .collect();
        for kid in &removed {
            self.keys.invalidate(kid.as_str());
        }
        if !removed.is_empty() {
            // A key was withdrawn (revoked or past its grace period): tokens it signed must stop
            // working now, not when their cache entries lapse.
            self.token_cache.clear();
        }
        let usable = !keys.is_empty();
        if usable {
            *self
                .refreshed_at
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Instant::now());
        }
        for (kid, key) in keys {
            self.keys.insert(kid, Arc::new(key));
        }
        self.keys.run_pending_tasks();
        self.metrics
            .jwks_keys
            .set(i64::try_from(self.keys.entry_count()).unwrap_or(i64::MAX));
        if usable {
            self.loaded.store(true, Ordering::Release);
        }
    }
}

/// Refreshes the key set in the background: at start, then every `interval`, and every few
/// seconds while the last attempt failed (so the gateway becomes ready soon after Better Auth
/// does).
pub struct JwksRefresher {
    pub store: Arc<JwksStore>,
    pub interval: Duration,
}

/// How soon a failed refresh is retried.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(2);

#[async_trait::async_trait]
impl pingora::services::background::BackgroundService for JwksRefresher {
    async fn start(&self, mut shutdown: pingora::server::ShutdownWatch) {
        loop {
            let wait = match self.store.refresh().await {
                Ok(_) if self.store.is_loaded() => self.interval,
                _ => RETRY_AFTER_FAILURE.min(self.interval),
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ED_X: &str = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";

    #[test]
    fn keeps_only_keys_whose_alg_matches_their_type() {
        let (_, x, y) = super::super::key::test_p521_key();
        let body = serde_json::json!({"keys": [
            {"kty": "OKP", "crv": "Ed25519", "x": ED_X, "kid": "ed", "alg": "EdDSA"},
            {"kty": "EC", "crv": "P-521", "x": x, "y": y, "kid": "p521", "alg": "ES512"},
            {"kty": "OKP", "crv": "Ed25519", "x": ED_X, "kid": "no-alg"},
            {"kty": "OKP", "crv": "Ed25519", "x": ED_X, "alg": "EdDSA"},
            {"kty": "OKP", "crv": "Ed25519", "x": ED_X, "kid": "lying", "alg": "ES256"},
            {"kty": "OKP", "crv": "Ed25519", "x": ED_X, "kid": "lying-512", "alg": "ES512"},
            {"kty": "OKP", "crv": "X25519", "x": ED_X, "kid": "ecdh", "alg": "EdDSA"},
            {"kty": "oct", "k": "c2VjcmV0", "kid": "hmac", "alg": "HS256"},
            {"kty": "EC", "crv": "P-256", "x": x, "y": y, "kid": "p521-as-p256", "alg": "ES512"},
            {"kty": "EC", "crv": "P-521", "x": x, "y": x, "kid": "off-curve", "alg": "ES512"},
            {"kty": "EC", "crv": "P-521", "x": "AA", "y": "AA", "kid": "short", "alg": "ES512"},
            {"kty": "EC", "crv": "P-521", "x": x, "kid": "no-y", "alg": "ES512"},
            {"kty": "EC", "crv": "P-521", "x": x, "y": y, "kid": "p521-as-es256", "alg": "ES256"},
            {"kty": "OKP", "crv": "Ed25519", "x": ED_X, "kid": "enc", "alg": "EdDSA", "use": "enc"},
            {"kty": "OKP", "crv": "Ed25519", "x": "AAAA", "kid": "short", "alg": "EdDSA"},
        ]});
        let keys = parse_jwks(body.to_string().as_bytes()).expect("a JWKS");
        let kids: Vec<(&str, SignatureAlgorithm)> = keys
            .iter()
            .map(|(kid, key)| (kid.as_str(), key.alg()))
            .collect();
        assert_eq!(
            kids,
            [
                ("ed", SignatureAlgorithm::Jose(Algorithm::EdDSA)),
                ("p521", SignatureAlgorithm::Es512),
            ]
        );
    }

    #[test]
    fn a_body_without_keys_is_an_error() {
        assert!(matches!(
            parse_jwks(b"{\"detail\":\"Not Found\"}"),
            Err(JwksError::NotAJwks(_))
        ));
    }
}
