//! Wall-clock time as both tiers compare it: whole seconds since the Unix epoch, the unit of a
//! JWT's `exp`/`nbf`/`iat` and of the gateway assertion's `t=`.

use std::time::{SystemTime, UNIX_EPOCH};

/// Now, in seconds since the Unix epoch (0 if the clock is before it).
pub fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
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
