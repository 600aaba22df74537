//! Upstream failures: JSON 502/503/504 quickly, replicas that refuse connections skipped, and
//! readiness that follows the healthy replicas.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use gateway::config::{HEALTH_CHECK_INTERVAL_MS, UPSTREAM_READ_TIMEOUT_MS};
use serde_json::{Value, json};

use crate::support::eventually;
use crate::support::servers::EchoUpstream;
use crate::support::stack::TestGateway;
use crate::support::tokens::{claims_for, hs256};

use super::{gateway_for, token};

#[tokio::test]
async fn a_stopped_upstream_gives_json_502_or_503_quickly_and_recovers() {
    let upstream = EchoUpstream::start().await;
    let address = upstream.addr;
    let gateway = gateway_for(&upstream, &[]).await;
    let alice = token("alice");
    assert_eq!(gateway.get("/api/alice/tasks", &alice).await.status(), 200);

    upstream.stop().await;
    for _ in 0..5 {
        let started = Instant::now();
        let response = gateway.get("/api/alice/tasks", &alice).await;
        let status = response.status().as_u16();
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "took {:?}",
            started.elapsed()
        );
        assert!(matches!(status, 502 | 503), "status {status}");
        let body: Value = response.json().await.expect("JSON body");
        assert!(
            body["detail"]
                .as_str()
                .is_some_and(|d| d.starts_with("Task service"))
        );
    }
    eventually("readiness to drop", || async {
        gateway.readyz().await == 503
    })
    .await;
    let response = gateway.get("/api/alice/tasks", &alice).await;
    assert_eq!(response.status(), 503);

    let _back = EchoUpstream::start_on(address).await;
    eventually("the upstream to be used again", || async {
        gateway.get("/api/alice/tasks", &alice).await.status() == 200
    })
    .await;
    assert_eq!(gateway.readyz().await, 200);
    assert!(
        gateway
            .metrics()
            .await
            .contains("gateway_upstream_errors_total{kind=\"no_healthy_upstream\"}")
    );
}

#[tokio::test]
async fn a_slow_upstream_gives_json_504() {
    let upstream = EchoUpstream::start().await;
    let gateway = gateway_for(&upstream, &[(UPSTREAM_READ_TIMEOUT_MS, "200")]).await;
    let started = Instant::now();
    let response = gateway
        .client
        .get(gateway.url("/api/alice/tasks"))
        .bearer_auth(token("alice"))
        .header("x-test-delay-ms", "3000")
        .send()
        .await
        .expect("reachable");
    assert_eq!(response.status(), 504);
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(
        response.json::<Value>().await.expect("JSON"),
        json!({"detail": "Task service timed out"})
    );
}

#[tokio::test]
async fn a_replica_that_refuses_connections_is_skipped_before_health_checks_notice() {
    let up = EchoUpstream::start().await;
    let down = EchoUpstream::start().await;
    // One health check at start, then none during the test: only the retry can save requests
    // routed to the replica that goes down.
    let gateway = TestGateway::builder(&format!("{},{}", up.url(), down.url()))
        .shared_secret()
        .var(HEALTH_CHECK_INTERVAL_MS, "600000")
        .start()
        .await;
    eventually("both replicas to be checked", || async {
        up.health_checks.load(Ordering::SeqCst) > 0 && down.health_checks.load(Ordering::SeqCst) > 0
    })
    .await;
    down.stop().await;
    let alice = hs256(&claims_for("alice"));
    for _ in 0..6 {
        assert_eq!(gateway.get("/api/alice/tasks", &alice).await.status(), 200);
    }
    assert_eq!(up.requests.load(Ordering::SeqCst), 6);
    assert!(
        gateway
            .metrics()
            .await
            .contains("gateway_upstream_errors_total{kind=\"connect_refused\"}")
    );
}

#[tokio::test]
async fn readiness_needs_a_healthy_replica() {
    let upstream = EchoUpstream::start().await;
    let url = upstream.url();
    upstream.stop().await;
    let gateway = TestGateway::builder(&url)
        .shared_secret()
        .start_unready()
        .await;
    eventually("readiness to report the dead replica", || async {
        gateway.readyz().await == 503
    })
    .await;
    let response = gateway
        .client
        .get(gateway.admin_url("/readyz"))
        .send()
        .await
        .expect("reachable");
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(body["detail"], "no healthy task-service replica");
    let health = gateway
        .client
        .get(gateway.admin_url("/healthz"))
        .send()
        .await
        .expect("reachable");
    assert_eq!(health.status(), 200);
}
