//! Wall-clock time as both tiers compare it: whole seconds since the Unix epoch, the unit of a
//! JWT's `exp`/`nbf`/`iat` and of the gateway assertion's `t=`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Now, since the Unix epoch (zero if the clock is before it).
fn since_epoch() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

/// Now, in seconds since the Unix epoch (0 if the clock is before it).
pub fn now_unix() -> u64 {
    since_epoch().as_secs()
}

/// Now, in milliseconds since the Unix epoch: for measuring how long a message took between
/// two processes.
pub fn now_unix_millis() -> u64 {
    u64::try_from(since_epoch().as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn now_is_after_the_time_this_was_written() {
        // 2026-01-01T00:00:00Z
        assert!(now_unix() > 1_767_225_600);
    }
}
