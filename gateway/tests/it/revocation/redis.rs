//! Revocations shared through Redis by two replicas: propagation within a second, restarts,
//! and a Redis outage with a revocation made while a replica was cut off.

use std::time::Instant;

use serde_json::json;

use super::{PROPAGATION, assert_revoked, revoke, stats, status, token, until_refused, with_redis};
use crate::support::redis::RedisServer;
use crate::support::servers::EchoUpstream;
use crate::support::tokens::hs256;
use crate::support::{eventually, now};

#[tokio::test]
async fn redis_shares_revocations_between_replicas_within_a_second() {
    let Some(redis) = RedisServer::start("redis_shares_revocations_between_replicas") else {
        return;
    };
    let upstream = EchoUpstream::start().await;
    let a = with_redis(&upstream, &redis).start().await;
    let mut b = with_redis(&upstream, &redis).start().await;

    let laptop = token("alice", "laptop", "t-laptop", 10);
    let phone = token("alice", "phone", "t-phone", 10);
    let bob = token("bob", "bob-session", "t-bob", 10);
    let carol = token("carol", "carol-session", "t-carol", 10);
    for gateway in [&a, &b] {
        for (sub, token) in [
            ("alice", &laptop),
            ("alice", &phone),
            ("bob", &bob),
            ("carol", &carol),
        ] {
            assert_eq!(status(gateway, sub, token).await, 200);
        }
    }

    // A session revoked at A is refused at B; the user's other session still works.
    assert_eq!(revoke(&a, json!({"sid": "laptop"})).await, 204);
    let lag = until_refused(&b, "alice", &laptop).await;
    assert!(lag < PROPAGATION, "sid took {lag:?} to reach replica B");
    assert_revoked(&b, "alice", &laptop).await;
    assert_eq!(status(&b, "alice", &phone).await, 200);

    // Every token of bob issued before now, revoked at B, is refused at A; a newer one passes.
    let cut_off = now();
    assert_eq!(
        revoke(&b, json!({"sub": "bob", "not_before": cut_off})).await,
        204
    );
    let lag = until_refused(&a, "bob", &bob).await;
    assert!(lag < PROPAGATION, "sub took {lag:?} to reach replica A");
    let newer = hs256(&json!({"sub": "bob", "sid": "bob-2", "iat": cut_off, "exp": cut_off + 900}));
    assert_eq!(status(&a, "bob", &newer).await, 200);

    // One token, by its jti.
    assert_eq!(revoke(&a, json!({"jti": "t-carol"})).await, 204);
    let lag = until_refused(&b, "carol", &carol).await;
    assert!(lag < PROPAGATION, "jti took {lag:?} to reach replica B");

    let counts = stats(&b).await;
    assert_eq!(
        (
            &counts["sid"],
            &counts["jti"],
            &counts["sub"],
            &counts["store"],
            &counts["store_up"]
        ),
        (
            &json!(1),
            &json!(1),
            &json!(1),
            &json!("redis"),
            &json!(true)
        )
    );
    assert_eq!(redis.key_count("revoked:"), 3);
    let metrics = b.metrics().await;
    assert!(
        metrics.contains("gateway_revocation_store_up 1"),
        "{metrics}"
    );
    // Three changes published, one of them by B itself: each message is timed.
    assert!(metrics.contains("gateway_revocation_propagation_seconds_count 3"));
    assert!(metrics.contains("gateway_revocations_applied_total{kind=\"sid\",source=\"store\"} 1"));

    // A restarted replica loads every revocation before it reports ready.
    drop(b);
    b = with_redis(&upstream, &redis).start().await;
    assert_revoked(&b, "alice", &laptop).await;
    assert_revoked(&b, "bob", &bob).await;
    assert_revoked(&b, "carol", &carol).await;
    assert_eq!(status(&b, "alice", &phone).await, 200);
    assert_eq!(status(&b, "bob", &newer).await, 200);
}

#[tokio::test]
async fn redis_outage_keeps_enforcing_and_catches_up_on_reconnect() {
    let Some(mut redis) = RedisServer::start("redis_outage_keeps_enforcing") else {
        return;
    };
    let upstream = EchoUpstream::start().await;
    let a = with_redis(&upstream, &redis).start().await;
    let b = with_redis(&upstream, &redis).start().await;
    let before = token("alice", "revoked-before", "t-before", 10);
    let during = token("alice", "revoked-during", "t-during", 10);
    let other = token("alice", "kept", "t-kept", 10);
    assert_eq!(revoke(&a, json!({"sid": "revoked-before"})).await, 204);
    until_refused(&b, "alice", &before).await;
    for gateway in [&a, &b] {
        assert_eq!(status(gateway, "alice", &during).await, 200);
    }

    redis.stop();
    for gateway in [&a, &b] {
        eventually("the store to be reported down", || async {
            gateway
                .metrics()
                .await
                .contains("gateway_revocation_store_up 0")
        })
        .await;
        assert_eq!(gateway.readyz().await, 200, "still ready without Redis");
        assert_revoked(gateway, "alice", &before).await;
        assert_eq!(status(gateway, "alice", &other).await, 200, "still serving");
    }
    // Accepted and enforced at A while Redis is down; B, cut off, cannot know yet.
    assert_eq!(revoke(&a, json!({"sid": "revoked-during"})).await, 202);
    assert_revoked(&a, "alice", &during).await;
    assert_eq!(status(&b, "alice", &during).await, 200);
    assert!(
        b.metrics()
            .await
            .contains("gateway_revocation_store_errors_total{operation=\"sync\"}")
    );

    // Redis comes back empty: A writes back what it holds, and B enforces it within a second.
    redis.restart();
    let back = Instant::now();
    eventually(
        "B to refuse the revocation made during the outage",
        || async { status(&b, "alice", &during).await == 401 },
    )
    .await;
    let lag = back.elapsed();
    assert!(
        lag < PROPAGATION,
        "B caught up {lag:?} after Redis came back"
    );
    for gateway in [&a, &b] {
        assert_revoked(gateway, "alice", &before).await;
        assert_eq!(status(gateway, "alice", &other).await, 200);
        eventually("the store to be reported up", || async {
            gateway
                .metrics()
                .await
                .contains("gateway_revocation_store_up 1")
        })
        .await;
    }
    // Nothing was forgotten by the Redis that restarted empty: a new replica loads both.
    eventually("both entries to be back in Redis", || async {
        redis.key_count("revoked:") == 2
    })
    .await;
    let c = with_redis(&upstream, &redis).start().await;
    assert_revoked(&c, "alice", &before).await;
    assert_revoked(&c, "alice", &during).await;
    assert_eq!(status(&c, "alice", &other).await, 200);
}
