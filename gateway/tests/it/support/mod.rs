//! Test support, split by role, shared by every module of the integration-test binary (and by the
//! benchmarks): [`servers`] the test stands up, the gateway under test and its [`stack`], [`clients`] that talk
//! to it, [`tokens`] they carry, the real binary as one of the [`processes`], and the
//! [`invariants`] that property tests and fuzz targets share; a [`redis`] server of the test's own.

pub mod clients;
pub mod invariants;
pub mod processes;
pub mod redis;
pub mod servers;
pub mod stack;
pub mod tokens;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The assertion secret shared by the gateway and the upstreams in tests.
pub const SIGNING_SECRET: &str = "test-signing-secret-0123456789abcdef";
/// The HS256 secret (`BETTER_AUTH_SECRET`) in tests.
pub const HMAC_SECRET: &str = "test-better-auth-secret-0123456789abcd";
/// How long a test waits for something that should happen quickly.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// Logs only when `TEST_LOG` is set.
pub fn init_logs() {
    common::telemetry::init_for_tests();
}

/// Seconds since the epoch.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// Polls `condition` every 20 ms until it holds, failing the test after [`PATIENCE`].
pub async fn eventually<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + PATIENCE;
    while !condition().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
