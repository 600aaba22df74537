//! The per-user rate limit: at most `RATE_LIMIT_PER_USER_PER_SECOND` requests per verified user
//! in each one-second window, counted with `pingora-limits`.
//!
//! The key is the verified token's `sub` and nothing else: not the client address (many users
//! share a NAT, and one user moves between addresses), not a header or a path segment (a client
//! chooses those freely, so it could spend another user's budget or dodge its own). The check
//! runs after the token is verified, so a forged or expired token is refused with 401 before it
//! can touch anyone's budget.
//!
//! `Rate` is a count-min sketch with per-process random hash seeds: it may over-count when two
//! users' ids collide in every row (rare with the table size below, and not steerable, since no
//! one picks their own `sub` and the seeds are secret), and never under-counts. Each gateway
//! replica counts on its own, so the limit a user sees is per replica.

use std::time::Duration;

use pingora_limits::rate::Rate;

use crate::token::Principal;

/// The counting window.
const WINDOW: Duration = Duration::from_secs(1);
/// Hash rows and columns of the sketch: 2 windows × 4 × 4096 counters of 8 bytes = 256 KiB.
const HASHES: usize = 4;
const SLOTS: usize = 4096;
/// What a refused client is told to wait, in seconds: the window cannot be further away.
pub const RETRY_AFTER_SECONDS: u64 = 1;

/// Requests per user per second.
pub struct UserRateLimit {
    limit: isize,
    rate: Rate,
}

impl UserRateLimit {
    /// A limit of `per_second` requests per user; `None` when `per_second` is 0 (no limit).
    pub fn new(per_second: u64) -> Option<Self> {
        let limit = isize::try_from(per_second).unwrap_or(isize::MAX);
        (limit > 0).then(|| Self {
            limit,
            rate: Rate::new_with_estimator_config(WINDOW, HASHES, SLOTS),
        })
    }

    /// Counts one request for `principal`; `false` when it is over the limit in this window.
    pub fn admit(&self, principal: &Principal) -> bool {
        self.rate.observe(&principal.sub.as_str(), 1) <= self.limit
    }

    /// Whether [`Self::admit`] would let `principal` through now, without counting a request
    /// (for `POST /explain`, which must not spend a user's budget).
    pub fn would_admit(&self, principal: &Principal) -> bool {
        self.rate.observe(&principal.sub.as_str(), 0) < self.limit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(sub: &str) -> Principal {
        Principal {
            sub: sub.to_owned(),
            email: None,
            sid: None,
            jti: None,
            iat: None,
        }
    }

    #[test]
    fn zero_means_no_limit() {
        assert!(UserRateLimit::new(0).is_none());
    }

    #[test]
    fn each_user_has_a_budget_of_their_own() {
        let limit = UserRateLimit::new(3).expect("a limit");
        let (alice, bob) = (user("alice"), user("bob"));
        let alice_admitted = (0..10).filter(|_| limit.admit(&alice)).count();
        // The window may roll over during the loop, which can only admit more.
        assert!((3..=6).contains(&alice_admitted), "{alice_admitted}");
        assert!(limit.admit(&bob), "bob is not limited by alice's requests");
    }

    #[test]
    fn asking_whether_a_user_would_be_admitted_spends_nothing() {
        let limit = UserRateLimit::new(2).expect("a limit");
        let alice = user("alice");
        for _ in 0..100 {
            assert!(limit.would_admit(&alice));
        }
        // Unless the window rolls over between them, the third request is the one refused.
        let admitted = (0..3).filter(|_| limit.admit(&alice)).count();
        assert!(
            admitted >= 2,
            "the questions spent the budget: {admitted} admitted"
        );
        if admitted == 2 {
            assert!(!limit.would_admit(&alice));
        }
    }
}
