//! The verified-token cache: a bounded map from a token's SHA-256 to the identity it proved, so an
//! asymmetric signature is verified once per token rather than once per request.
//!
//! Each entry expires no later than the token's own `exp` (and never later than
//! [`MAX_ENTRY_TTL`], so a key removed from the JWKS stops being honoured within that time even
//! if the cache were not cleared). The key is a hash, so the cache never holds a usable token.

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::clock::now_unix;
use moka::Expiry;
use moka::sync::Cache;
use sha2::{Digest, Sha256};

use super::Principal;

/// The longest any verified token is remembered.
pub const MAX_ENTRY_TTL: Duration = Duration::from_secs(300);

/// A token's cache key: its SHA-256.
pub type TokenDigest = [u8; 32];

/// Hashes a token for the cache.
pub fn digest(token: &str) -> TokenDigest {
    Sha256::digest(token.as_bytes()).into()
}

#[derive(Clone)]
struct Entry {
    principal: Arc<Principal>,
    /// When the cache must stop answering for this token.
    valid_until: Instant,
}

struct UntilTokenExpiry;

impl Expiry<TokenDigest, Entry> for UntilTokenExpiry {
    fn expire_after_create(
        &self,
        _key: &TokenDigest,
        value: &Entry,
        created_at: Instant,
    ) -> Option<Duration> {
        Some(value.valid_until.saturating_duration_since(created_at))
    }
}

/// Verified tokens, bounded in number and in time.
#[derive(Clone)]
pub struct TokenCache {
    entries: Cache<TokenDigest, Entry>,
}

impl TokenCache {
    /// A cache holding at most `capacity` tokens; 0 disables caching.
    pub fn new(capacity: u64) -> Self {
        Self {
            entries: Cache::builder()
                .max_capacity(capacity)
                .expire_after(UntilTokenExpiry)
                .build(),
        }
    }

    /// The identity a token proved, if it was verified and has not expired since.
    pub fn get(&self, key: &TokenDigest) -> Option<Arc<Principal>> {
        let entry = self.entries.get(key)?;
        // moka evicts lazily; the exact deadline is checked here so an expired token is never
        // answered from the cache, even for a moment.
        (Instant::now() < entry.valid_until).then_some(entry.principal)
    }

    /// Remembers a verified token until `exp` (seconds since the epoch), capped at
    /// [`MAX_ENTRY_TTL`]. Tokens already past `exp` (accepted within the leeway) are not cached.
    pub fn insert(&self, key: TokenDigest, principal: Arc<Principal>, exp: u64) {
        let remaining = Duration::from_secs(exp.saturating_sub(now_unix())).min(MAX_ENTRY_TTL);
        if remaining.is_zero() {
            return;
        }
        let valid_until = Instant::now() + remaining;
        self.entries.insert(
            key,
            Entry {
                principal,
                valid_until,
            },
        );
    }

    /// Forgets every token, e.g. when a signing key disappears from the JWKS.
    pub fn clear(&self) {
        self.entries.invalidate_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alice() -> Arc<Principal> {
        Arc::new(Principal {
            sub: "alice".into(),
            email: None,
            sid: None,
            jti: None,
            iat: None,
        })
    }

    #[test]
    fn remembers_until_cleared() {
        let cache = TokenCache::new(10);
        let key = digest("token");
        cache.insert(key, alice(), now_unix() + 600);
        assert_eq!(cache.get(&key).as_deref(), Some(&*alice()));
        assert!(cache.get(&digest("other")).is_none());
        cache.clear();
        assert!(cache.get(&key).is_none());
    }

    #[test]
    fn expired_tokens_are_not_cached() {
        let cache = TokenCache::new(10);
        let key = digest("token");
        cache.insert(key, alice(), now_unix().saturating_sub(1));
        assert!(cache.get(&key).is_none());
    }

    #[test]
    fn zero_capacity_disables_the_cache() {
        let cache = TokenCache::new(0);
        let key = digest("token");
        cache.insert(key, alice(), now_unix() + 600);
        cache.entries.run_pending_tasks();
        assert!(cache.get(&key).is_none());
    }
}
