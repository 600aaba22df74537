//! The verified-token cache: a bounded map from a token's SHA-256 to the identity it proved, so an
//! asymmetric signature is verified once per token rather than once per request.
//!
//! Each entry expires no later than the token's own `exp` (and never later than
//! [`MAX_ENTRY_TTL`], so a key removed from the JWKS stops being honoured within that time even
//! if the cache were not cleared); every lookup checks the entry's deadline, so an expired token
//! is never answered from the cache. The key is a hash, so the cache never holds a usable token.
//!
//! The cache is bounded in bytes as well as in entries: each entry is weighed by an estimate of
//! the memory it holds ([`entry_bytes`]: the strings it remembers plus a fixed overhead), so
//! tokens with huge claims cannot grow the gateway past its memory limit. Each entry weighs at
//! least `max_bytes / capacity`, so that one weight budget enforces both bounds. A token whose
//! entry would take more than [`MAX_ENTRY_SHARE`] of the budget is verified but not cached.
//!
//! The map is split into shards by digest bits, each a hash map under its own read-write lock
//! holding an equal share of the budget, so a lookup takes a shared lock on one shard. The digest
//! is already uniformly distributed, so the maps use 8 of its bytes as the hash rather than
//! hashing it again (only verified tokens are inserted, so nobody can choose the digests). When
//! an insert would put a shard over its share, the shard drops its expired entries and, if that
//! frees too little, a pseudo-random eighth of the rest (picked by digest bits, a different eighth
//! each time), so eviction costs O(1) per insert, amortised. Eviction is random rather than
//! least-recently-used: a token evicted early only costs one more verification.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use common::clock::now_unix;
use sha2::{Digest, Sha256};

use super::Principal;

/// The longest any verified token is remembered.
pub const MAX_ENTRY_TTL: Duration = Duration::from_secs(300);

/// The default byte budget (`TOKEN_CACHE_MAX_BYTES`): a quarter of a 512 MiB pod.
pub const DEFAULT_MAX_BYTES: u64 = 128 * 1024 * 1024;

/// What one entry costs besides the bytes of its strings: its map slot (the 32-byte key, the
/// `Principal` pointer and the deadline, 48 bytes and a control byte, at a load factor of 44 to
/// 88%), the `Principal` allocation (128 bytes) and the allocator's rounding of its strings. With
/// 100,000 to 200,000 cached tokens whose strings hold 28 bytes, the gateway's RSS grows by about
/// 265 bytes per token.
pub const ENTRY_OVERHEAD_BYTES: u64 = 240;

/// The largest share of the budget one entry may take; bigger ones are not cached.
pub const MAX_ENTRY_SHARE: u64 = 256;

/// The most shards a cache is split into.
const MAX_SHARDS: usize = 64;

/// The fewest entries of the least weight a shard is sized for: small caches have fewer shards,
/// so that the capacity is not cut into shares too small to use.
const MIN_SHARD_ENTRIES: u64 = 64;

/// The digest byte that picks an entry's shard; bytes 0 to 7 are its hash within the shard.
const SHARD_BYTE: usize = 8;

/// The digest byte that puts an entry in one of [`EVICTION_GROUPS`] groups.
const GROUP_BYTE: usize = 9;

/// A full shard drops the entries of one group in this many (after its expired ones).
const EVICTION_GROUPS: u8 = 8;

/// Eviction leaves free at least one part in this many of a shard's budget, so that it runs
/// again only after many more inserts (which keeps its cost per insert constant).
const EVICTION_HEADROOM: u64 = 16;

/// A token's cache key: its SHA-256.
pub type TokenDigest = [u8; 32];

/// Hashes a token for the cache.
pub fn digest(token: &str) -> TokenDigest {
    Sha256::digest(token.as_bytes()).into()
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

/// A digest as a map key. It is a uniform hash already, so it hashes as 8 of its bytes.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Key(TokenDigest);

impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        let [b0, b1, b2, b3, b4, b5, b6, b7, ..] = self.0;
        state.write_u64(u64::from_le_bytes([b0, b1, b2, b3, b4, b5, b6, b7]));
    }
}

/// The hasher of the shards' maps: a [`Key`]'s hash is the word it writes.
#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write_u64(&mut self, word: u64) {
        self.0 = word;
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `Key` is hashed, and it writes one `u64`; any other input is still folded in.
        for &byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(byte);
        }
    }
}

struct Entry {
    principal: Arc<Principal>,
    /// When the cache must stop answering for this token, in nanoseconds since the cache's
    /// epoch.
    valid_until: u64,
}

/// One shard: its entries and their total weight.
#[derive(Default)]
struct Slots {
    entries: HashMap<Key, Entry, BuildHasherDefault<KeyHasher>>,
    bytes: u64,
    /// The group the next eviction drops.
    next_group: u8,
}

/// A shard, alone on its cache lines so that lookups in neighbouring shards do not contend.
#[derive(Default)]
#[repr(align(128))]
struct Shard(RwLock<Slots>);

/// How entries are weighed and how much each shard may hold.
#[derive(Clone, Copy)]
struct Limits {
    /// The weight of an entry whose own estimate is smaller: `max_bytes / capacity`.
    least_weight: u64,
    /// Entries heavier than this are not cached.
    max_entry_bytes: u64,
    /// Each shard's share of the budget.
    shard_bytes: u64,
}

impl Limits {
    fn weight(self, principal: &Principal) -> u64 {
        entry_bytes(principal).max(self.least_weight)
    }
}

/// Verified tokens, bounded in number, in bytes and in time. Clones share the entries.
#[derive(Clone)]
pub struct TokenCache {
    shards: Arc<[Shard]>,
    /// `shards.len() - 1`; the count is a power of two.
    shard_mask: usize,
    limits: Limits,
    /// The instant deadlines are counted from.
    epoch: Instant,
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
        // The largest power of two that leaves each shard room for MIN_SHARD_ENTRIES entries.
        let wanted = usize::try_from(capacity / MIN_SHARD_ENTRIES).unwrap_or(MAX_SHARDS);
        let shard_count = 1 << wanted.clamp(1, MAX_SHARDS).ilog2();
        let shards: Arc<[Shard]> = (0..shard_count).map(|_| Shard::default()).collect();
        Self {
            shards,
            shard_mask: shard_count - 1,
            limits: Limits {
                // Every entry weighs at least this, so no more than `capacity` fit in the budget.
                least_weight: budget.div_ceil(capacity.max(1)),
                max_entry_bytes: budget / MAX_ENTRY_SHARE,
                shard_bytes: budget / u64::try_from(shard_count).unwrap_or(u64::MAX),
            },
            epoch: Instant::now(),
        }
    }

    /// The identity a token proved, if it was verified and has not expired since.
    pub fn get(&self, key: &TokenDigest) -> Option<Arc<Principal>> {
        let slots = self.read(key);
        let entry = slots.entries.get(&Key(*key))?;
        (self.nanos_at(Instant::now()) < entry.valid_until).then(|| Arc::clone(&entry.principal))
    }

    /// Remembers a verified token until `exp` (seconds since the epoch), capped at
    /// [`MAX_ENTRY_TTL`]. Tokens already past `exp` (accepted within the leeway) are not cached.
    pub fn insert(&self, key: TokenDigest, principal: Arc<Principal>, exp: u64) {
        let remaining = Duration::from_secs(exp.saturating_sub(now_unix())).min(MAX_ENTRY_TTL);
        if remaining.is_zero() {
            return;
        }
        self.insert_until(key, principal, Instant::now() + remaining);
    }

    /// Remembers a verified token until `valid_until`, replacing any entry it had.
    fn insert_until(&self, key: TokenDigest, principal: Arc<Principal>, valid_until: Instant) {
        let limits = self.limits;
        if entry_bytes(&principal) > limits.max_entry_bytes {
            return;
        }
        let weight = limits.weight(&principal);
        let entry = Entry {
            principal,
            valid_until: self.nanos_at(valid_until),
        };
        let mut slots = self.write(&key);
        let key = Key(key);
        if let Some(old) = slots.entries.remove(&key) {
            slots.bytes = slots.bytes.saturating_sub(limits.weight(&old.principal));
        }
        if slots.bytes + weight > limits.shard_bytes {
            slots.make_room(weight, limits, self.nanos_at(Instant::now()));
        }
        slots.entries.insert(key, entry);
        slots.bytes += weight;
    }

    /// The estimated bytes held (for tests and measurements).
    pub fn weighed_bytes(&self) -> u64 {
        self.shards.iter().map(|shard| lock_read(shard).bytes).sum()
    }

    /// Forgets every token, e.g. when a signing key disappears from the JWKS.
    pub fn clear(&self) {
        for shard in self.shards.iter() {
            let mut slots = lock_write(shard);
            slots.entries.clear();
            slots.bytes = 0;
        }
    }

    /// The entries held, expired ones included.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|shard| lock_read(shard).entries.len())
            .sum()
    }

    fn shard(&self, key: &TokenDigest) -> &Shard {
        &self.shards[usize::from(key[SHARD_BYTE]) & self.shard_mask]
    }

    fn read(&self, key: &TokenDigest) -> RwLockReadGuard<'_, Slots> {
        lock_read(self.shard(key))
    }

    fn write(&self, key: &TokenDigest) -> RwLockWriteGuard<'_, Slots> {
        lock_write(self.shard(key))
    }

    /// `instant` in nanoseconds since the epoch (0 for earlier instants).
    fn nanos_at(&self, instant: Instant) -> u64 {
        let since = instant.saturating_duration_since(self.epoch);
        u64::try_from(since.as_nanos()).unwrap_or(u64::MAX)
    }
}

// Nothing that can panic runs while a shard is locked; were it to, the map would still be whole
// (at worst its byte count off until it is cleared), so a poisoned lock is used as it is.
fn lock_read(shard: &Shard) -> RwLockReadGuard<'_, Slots> {
    shard.0.read().unwrap_or_else(PoisonError::into_inner)
}

fn lock_write(shard: &Shard) -> RwLockWriteGuard<'_, Slots> {
    shard.0.write().unwrap_or_else(PoisonError::into_inner)
}

impl Slots {
    /// Frees room for an entry of `weight` and some headroom: drops the expired entries, then
    /// groups of the others until enough is free (at worst all of them, after every group).
    fn make_room(&mut self, weight: u64, limits: Limits, now: u64) {
        let target = limits.shard_bytes - limits.shard_bytes / EVICTION_HEADROOM;
        self.drop_where(limits, |_, entry| entry.valid_until <= now);
        for _ in 0..EVICTION_GROUPS {
            if self.bytes + weight <= target || self.entries.is_empty() {
                return;
            }
            let group = self.next_group;
            self.next_group = (group + 1) % EVICTION_GROUPS;
            self.drop_where(limits, |key, _| {
                key.0[GROUP_BYTE] % EVICTION_GROUPS == group
            });
        }
    }

    /// Drops the entries `doomed` picks, in one pass.
    fn drop_where(&mut self, limits: Limits, mut doomed: impl FnMut(&Key, &Entry) -> bool) {
        let mut freed = 0;
        self.entries.retain(|key, entry| {
            let drop = doomed(key, entry);
            if drop {
                freed += limits.weight(&entry.principal);
            }
            !drop
        });
        self.bytes = self.bytes.saturating_sub(freed);
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

    fn principal(sub: &str, email_bytes: usize) -> Arc<Principal> {
        Arc::new(Principal {
            sub: sub.to_owned(),
            email: Some("e".repeat(email_bytes)),
            sid: None,
            jti: None,
            iat: None,
        })
    }

    /// The weights of the entries held, counted afresh.
    fn recount(cache: &TokenCache) -> u64 {
        cache
            .shards
            .iter()
            .flat_map(|shard| {
                lock_read(shard)
                    .entries
                    .values()
                    .map(|entry| cache.limits.weight(&entry.principal))
                    .collect::<Vec<_>>()
            })
            .sum()
    }

    #[test]
    #[cfg(target_pointer_width = "64")]
    fn a_map_slot_takes_48_bytes() {
        assert_eq!(std::mem::size_of::<(Key, Entry)>(), 48);
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
    fn clones_share_the_entries() {
        let cache = TokenCache::new(10);
        let clone = cache.clone();
        clone.insert(digest("token"), alice(), now_unix() + 600);
        assert!(cache.get(&digest("token")).is_some());
        cache.clear();
        assert!(clone.get(&digest("token")).is_none());
    }

    #[test]
    fn expired_tokens_are_not_cached() {
        let cache = TokenCache::new(10);
        let key = digest("token");
        cache.insert(key, alice(), now_unix().saturating_sub(1));
        assert!(cache.get(&key).is_none());
        assert_eq!(cache.len(), 0);
    }

    #[test]
    fn an_expired_entry_is_never_answered() {
        let cache = TokenCache::new(10);
        let key = digest("token");
        cache.insert_until(key, alice(), Instant::now());
        assert_eq!(cache.len(), 1, "held, but past its deadline");
        assert!(cache.get(&key).is_none());

        let deadline = Instant::now() + Duration::from_millis(100);
        cache.insert_until(key, alice(), deadline);
        assert!(cache.get(&key).is_some());
        std::thread::sleep(deadline.saturating_duration_since(Instant::now()));
        assert!(cache.get(&key).is_none(), "answered past its deadline");
    }

    #[test]
    fn the_entry_ttl_is_capped() {
        let cache = TokenCache::new(10);
        let key = digest("token");
        let before = Instant::now();
        cache.insert(key, alice(), now_unix() + 3_600);
        let slots = cache.read(&key);
        let valid_until = slots.entries[&Key(key)].valid_until;
        let cap = cache.nanos_at(Instant::now() + MAX_ENTRY_TTL);
        assert!(valid_until <= cap && valid_until >= cache.nanos_at(before + MAX_ENTRY_TTL));
    }

    #[test]
    fn reinserting_replaces_without_counting_twice() {
        // A capacity large enough that the least weight is not what counts.
        let cache = TokenCache::with_budget(1_000_000, 1024 * 1024);
        let key = digest("token");
        cache.insert(key, principal("alice", 100), now_unix() + 600);
        let first = cache.weighed_bytes();
        cache.insert(key, principal("alice", 1_000), now_unix() + 600);
        assert_eq!(cache.len(), 1);
        assert_eq!(cache.weighed_bytes(), first + 900);
        assert_eq!(
            cache
                .get(&key)
                .and_then(|p| p.email.clone())
                .map(|e| e.len()),
            Some(1_000)
        );
        cache.insert(key, principal("alice", 100), now_unix() + 600);
        assert_eq!(cache.weighed_bytes(), first);
        assert_eq!(recount(&cache), first);
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
        assert!(cache.len() as u64 <= budget / 3_000);
    }

    #[test]
    fn eviction_keeps_the_bytes_within_the_budget() {
        let budget = 4 * 1024 * 1024;
        let cache = TokenCache::with_budget(1_000_000, budget);
        assert_eq!(cache.shards.len(), MAX_SHARDS);
        for n in 0..50_000_usize {
            let token = format!("token-{n}");
            // Sizes from the overhead alone to the largest entry cached.
            let email = (n * 7_919) % 16_000;
            cache.insert(digest(&token), principal(&token, email), now_unix() + 600);
            if n % 5_000 == 0 {
                assert!(cache.weighed_bytes() <= budget);
            }
        }
        let held = cache.weighed_bytes();
        assert!(held <= budget, "{held} bytes held");
        assert!(held > budget * 3 / 4, "the budget is used: {held}");
        assert_eq!(recount(&cache), held, "the byte count matches the entries");
    }

    #[test]
    fn expired_entries_are_evicted_first() {
        let cache = TokenCache::with_budget(100, DEFAULT_MAX_BYTES);
        assert_eq!(cache.shards.len(), 1);
        for n in 0..90 {
            cache.insert_until(digest(&format!("stale-{n}")), alice(), Instant::now());
        }
        for n in 0..90 {
            cache.insert(digest(&format!("fresh-{n}")), alice(), now_unix() + 600);
        }
        for n in 0..90 {
            assert!(
                cache.get(&digest(&format!("fresh-{n}"))).is_some(),
                "fresh-{n}"
            );
        }
        assert_eq!(cache.len(), 90);
    }

    #[test]
    fn the_entry_count_still_bounds_small_entries() {
        let cache = TokenCache::with_budget(10, DEFAULT_MAX_BYTES);
        // The budget is not a multiple of 10, so 9 entries of the least weight fit in it.
        for n in 0..9 {
            cache.insert(digest(&format!("token-{n}")), alice(), now_unix() + 600);
        }
        for n in 0..9 {
            assert!(
                cache.get(&digest(&format!("token-{n}"))).is_some(),
                "token-{n}"
            );
        }
        for n in 9..100 {
            cache.insert(digest(&format!("token-{n}")), alice(), now_unix() + 600);
        }
        assert!(cache.len() <= 10);
        assert!(cache.get(&digest("token-99")).is_some());
    }

    #[test]
    fn the_entry_count_bounds_a_sharded_cache() {
        let capacity = 4_096;
        let cache = TokenCache::with_budget(capacity, DEFAULT_MAX_BYTES);
        assert_eq!(cache.shards.len(), MAX_SHARDS);
        for n in 0..40_000 {
            let token = format!("token-{n}");
            cache.insert(digest(&token), alice(), now_unix() + 600);
        }
        let held = cache.len() as u64;
        assert!(held <= capacity, "{held} entries held");
        assert!(held > capacity * 3 / 4, "the capacity is used: {held}");
        assert!(cache.weighed_bytes() <= DEFAULT_MAX_BYTES);
    }

    #[test]
    fn clear_forgets_every_byte() {
        let cache = TokenCache::with_budget(100_000, DEFAULT_MAX_BYTES);
        for n in 0..1_000 {
            let token = format!("token-{n}");
            cache.insert(digest(&token), principal(&token, 100), now_unix() + 600);
        }
        assert!(cache.weighed_bytes() > 0);
        cache.clear();
        assert_eq!(cache.weighed_bytes(), 0);
        assert_eq!(cache.len(), 0);
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
    fn zero_capacity_or_budget_disables_the_cache() {
        for cache in [TokenCache::new(0), TokenCache::with_budget(100, 0)] {
            let key = digest("token");
            cache.insert(key, alice(), now_unix() + 600);
            assert!(cache.get(&key).is_none());
            assert_eq!(cache.len(), 0);
            assert_eq!(cache.weighed_bytes(), 0);
        }
    }
}
