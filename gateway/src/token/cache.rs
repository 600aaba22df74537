//! The verified-token cache: a bounded map from a token's SHA-256 to the identity it proved, so an
//! asymmetric signature is verified once per token rather than once per request.
//!
//! Each entry expires no later than the token's own `exp` (and never later than
//! [`MAX_ENTRY_TTL`], so a key removed from the JWKS stops being honoured within that time even
//! if the cache were not cleared). The key is a hash, so the cache never holds a usable token.
//!
//! The cache is bounded in bytes as well as in entries: moka weighs each entry by an estimate of
//! the memory it holds ([`entry_bytes`]: the subject and email it remembers plus a fixed
//! overhead), so tokens with huge claims cannot grow the gateway past its memory limit. Each
//! entry weighs at least `max_bytes / capacity`, so that one weight budget enforces both bounds.
//! A token whose entry would take more than [`MAX_ENTRY_SHARE`] of the budget is verified but
//! not cached.

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::clock::now_unix;
use moka::Expiry;
use moka::sync::Cache;
use sha2::{Digest, Sha256};

use super::Principal;

/// The longest any verified token is remembered.
pub const MAX_ENTRY_TTL: Duration = Duration::from_secs(300);

/// The default byte budget (`TOKEN_CACHE_MAX_BYTES`): a quarter of a 512 MiB pod.
pub const DEFAULT_MAX_BYTES: u64 = 128 * 1024 * 1024;

/// What one entry costs besides the strings it remembers: the 32-byte key, the entry, the
/// `Principal` allocation and moka's own bookkeeping (hash table slot, access-order and
/// expiry-timer nodes, frequency sketch), measured at about this much per entry.
pub const ENTRY_OVERHEAD_BYTES: u64 = 320;

/// The largest share of the budget one entry may take; bigger ones are not cached.
pub const MAX_ENTRY_SHARE: u64 = 256;

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

/// The memory an entry for `principal` holds, estimated: its strings (`sub`, `email`, `sid`,
/// `jti`) and a fixed overhead.
pub fn entry_bytes(principal: &Principal) -> u64 {
    let strings = [&principal.email, &principal.sid, &principal.jti]
        .into_iter()
        .map(|claim| claim.as_ref().map_or(0, String::len))
        .sum::<usize>()
        + principal.sub.len();
    ENTRY_OVERHEAD_BYTES + u64::try_from(strings).unwrap_or(u64::MAX)
}

/// Verified tokens, bounded in number, in bytes and in time.
#[derive(Clone)]
pub struct TokenCache {
    entries: Cache<TokenDigest, Entry>,
    /// Entries heavier than this are not cached.
    max_entry_bytes: u64,
}

impl TokenCache {
    /// A cache holding at most `capacity` tokens within [`DEFAULT_MAX_BYTES`]; 0 disables it.
    pub fn new(capacity: u64) -> Self {
        Self::with_budget(capacity, DEFAULT_MAX_BYTES)
    }

    /// A cache holding at most `capacity` tokens and about `max_bytes` of memory; either 0
    /// disables caching.
    pub fn with_budget(capacity: u64, max_bytes: u64) -> Self {
        let budget = if capacity == 0 { 0 } else { max_bytes };
        // Every entry weighs at least this, so no more than `capacity` fit in the budget.
        let least_weight = budget.div_ceil(capacity.max(1));
        Self {
            entries: Cache::builder()
                .max_capacity(budget)
                .weigher(move |_key, entry: &Entry| {
                    let weight = entry_bytes(&entry.principal).max(least_weight);
                    u32::try_from(weight).unwrap_or(u32::MAX)
                })
                .expire_after(UntilTokenExpiry)
                .build(),
            max_entry_bytes: budget / MAX_ENTRY_SHARE,
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
        if remaining.is_zero() || entry_bytes(&principal) > self.max_entry_bytes {
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

    /// The estimated bytes held, once pending evictions are done (for tests and measurements).
    pub fn weighed_bytes(&self) -> u64 {
        self.entries.run_pending_tasks();
        self.entries.weighted_size()
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

    fn principal(sub: &str, email_bytes: usize) -> Arc<Principal> {
        Arc::new(Principal {
            sub: sub.to_owned(),
            email: Some("e".repeat(email_bytes)),
            sid: None,
            jti: None,
            iat: None,
        })
    }

    #[test]
    fn the_byte_budget_bounds_the_cache() {
        let budget = 1024 * 1024;
        let cache = TokenCache::with_budget(1_000_000, budget);
        for n in 0..2_000 {
            let token = format!("token-{n}");
            cache.insert(digest(&token), principal(&token, 3_000), now_unix() + 600);
        }
        let held = cache.weighed_bytes();
        assert!(held <= budget, "{held} bytes held");
        assert!(held > budget / 2, "the budget is used: {held}");
        cache.entries.run_pending_tasks();
        assert!(cache.entries.entry_count() <= budget / 3_000);
    }

    #[test]
    fn the_entry_count_still_bounds_small_entries() {
        let cache = TokenCache::with_budget(10, DEFAULT_MAX_BYTES);
        for n in 0..100 {
            let token = format!("token-{n}");
            cache.insert(digest(&token), alice(), now_unix() + 600);
        }
        cache.entries.run_pending_tasks();
        assert!(cache.entries.entry_count() <= 10);
    }

    #[test]
    fn an_entry_too_big_for_its_share_is_not_cached() {
        let budget = 1024 * 1024;
        let cache = TokenCache::with_budget(1_000, budget);
        let huge = principal(
            "alice",
            usize::try_from(budget / MAX_ENTRY_SHARE).expect("small"),
        );
        cache.insert(digest("huge"), huge, now_unix() + 600);
        assert!(cache.get(&digest("huge")).is_none());
        let fits = principal("alice", 100);
        cache.insert(digest("fits"), fits, now_unix() + 600);
        assert!(cache.get(&digest("fits")).is_some());
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
