//! Defends availability and durability when parts fail: the task service stopped and restarted
//! under load (JSON 502/503 only while it is down, no hang, no write lost or applied twice); the
//! database cut and restored under a running task service (503 and `/readyz` false while cut,
//! recovery without a restart); the JWKS endpoint down when the gateway starts (not ready,
//! retrying, ready once it is up; the JWKS going down later is `jwks.rs`'s
//! `keys_are_kept_while_the_jwks_endpoint_is_down`); and SIGTERM to the real binary with requests
//! in flight (they complete). Each test prints its figures. The database outages are in
//! [`database`].

mod database;

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures::future::join_all;
use gateway::config::JWKS_REFRESH_SECONDS;
use serde_json::{Value, json};

use crate::support::clients::User;
use crate::support::processes::{binary_vars, free_port, serve, signal, wait_exit};
use crate::support::servers::{EchoUpstream, JwksServer, TaskService};
use crate::support::stack::TestGateway;
use crate::support::tokens::{Ed25519Key, better_auth_claims, claims_for, hs256};
use crate::support::{PATIENCE, eventually};

/// One request's outcome under load.
#[derive(Debug, Clone)]
pub(super) struct Outcome {
    pub(super) title: String,
    pub(super) status: u16,
    pub(super) sent_at: Instant,
    pub(super) latency: Duration,
}

/// Figures over a run: requests by status and the longest latency.
pub(super) fn summarize(outcomes: &[Outcome]) -> (BTreeMap<u16, usize>, Duration) {
    let mut by_status = BTreeMap::new();
    for outcome in outcomes {
        *by_status.entry(outcome.status).or_insert(0) += 1;
    }
    let longest = outcomes.iter().map(|o| o.latency).max().unwrap_or_default();
    (by_status, longest)
}

/// Every task title of `user`, paging through the list.
pub(super) async fn all_titles(user: &User<'_>) -> Vec<String> {
    let mut titles = Vec::new();
    loop {
        let page: Value = user
            .call(
                reqwest::Method::GET,
                &format!("?sort=created&order=asc&limit=500&offset={}", titles.len()),
                None,
            )
            .await
            .json()
            .await
            .expect("list");
        let page = page.as_array().expect("array");
        if page.is_empty() {
            return titles;
        }
        titles.extend(
            page.iter()
                .map(|task| task["title"].as_str().expect("title").to_owned()),
        );
    }
}

/// Creates tasks with unique titles from `workers` concurrent clients until `stop` is set.
pub(super) async fn create_until(
    user: &User<'_>,
    workers: usize,
    stop: &AtomicBool,
) -> Vec<Outcome> {
    let runs = (0..workers).map(|worker| async move {
        let mut outcomes = Vec::new();
        for sequence in 0.. {
            if stop.load(Ordering::SeqCst) {
                break;
            }
            let title = format!("w{worker}-{sequence}");
            let sent_at = Instant::now();
            let response = user
                .call(reqwest::Method::POST, "", Some(json!({ "title": title })))
                .await;
            let status = response.status().as_u16();
            if status != 201 {
                let body: Value = response.json().await.expect("a JSON error body");
                assert!(body["detail"].is_string(), "{status}: {body}");
            }
            outcomes.push(Outcome {
                title,
                status,
                sent_at,
                latency: sent_at.elapsed(),
            });
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        outcomes
    });
    join_all(runs).await.into_iter().flatten().collect()
}

/// Compares what was acknowledged with what is stored: (lost, duplicated, applied without a 201).
pub(super) fn reconcile(outcomes: &[Outcome], stored: &[String]) -> (usize, usize, usize) {
    let acknowledged: HashSet<&str> = outcomes
        .iter()
        .filter(|o| o.status == 201)
        .map(|o| o.title.as_str())
        .collect();
    let stored_set: HashSet<&str> = stored.iter().map(String::as_str).collect();
    let lost = acknowledged.difference(&stored_set).count();
    let duplicated = stored.len() - stored_set.len();
    let unacknowledged = stored_set.difference(&acknowledged).count();
    (lost, duplicated, unacknowledged)
}

#[tokio::test]
async fn the_task_service_stopped_and_restarted_under_load_loses_no_write() {
    let data = tempfile::tempdir().expect("temp dir");
    let tasks = TaskService::start(data.path()).await;
    let address = tasks.addr;
    let gateway = TestGateway::with_shared_secret(&tasks.url()).await;
    let loader = User::new(&gateway, "loader");
    let stop = AtomicBool::new(false);

    let started = Instant::now();
    let (outcomes, (down_at, up_at, _restarted)) =
        tokio::join!(create_until(&loader, 4, &stop), async {
            tokio::time::sleep(Duration::from_millis(800)).await;
            let down_at = Instant::now();
            tasks.stop().await;
            tokio::time::sleep(Duration::from_millis(1000)).await;
            let restarted = TaskService::start_on(address, data.path()).await;
            let up_at = Instant::now();
            // Load keeps running until the gateway has used the restarted service for a while.
            eventually("the restarted service to be used", || async {
                loader
                    .call(reqwest::Method::GET, "?limit=1", None)
                    .await
                    .status()
                    == 200
            })
            .await;
            tokio::time::sleep(Duration::from_millis(800)).await;
            stop.store(true, Ordering::SeqCst);
            (down_at, up_at, restarted)
        });
    let stored = all_titles(&loader).await;
    let (lost, duplicated, unacknowledged) = reconcile(&outcomes, &stored);
    let (by_status, longest) = summarize(&outcomes);
    let recovered_after = outcomes
        .iter()
        .filter(|o| o.status != 201)
        .map(|o| o.sent_at + o.latency)
        .max()
        .map(|last_failure| last_failure.saturating_duration_since(up_at));
    println!(
        "task service stop/restart under load ({:?}): {} requests sent, by status {by_status:?}, \
         longest latency {longest:?}, down for {:?}, last failure {recovered_after:?} after the \
         restart; {} rows stored for {} 201s: writes lost {lost}, applied twice {duplicated}, \
         applied without a 201 {unacknowledged}",
        started.elapsed(),
        outcomes.len(),
        up_at - down_at,
        stored.len(),
        by_status.get(&201).copied().unwrap_or(0),
    );
    assert_eq!(lost, 0, "acknowledged writes were lost");
    assert_eq!(duplicated, 0, "a write was applied twice");
    assert_eq!(
        unacknowledged, 0,
        "a write was applied but reported as failed"
    );
    assert!(
        by_status
            .keys()
            .all(|status| matches!(status, 201 | 502 | 503)),
        "{by_status:?}"
    );
    assert!(
        longest < Duration::from_secs(2),
        "a request hung for {longest:?}"
    );
    for failure in outcomes.iter().filter(|o| o.status != 201) {
        // Failures only while the service is down (a request sent just before the stop may
        // land on it), and for at most a few health-check intervals after it is back.
        assert!(
            failure.sent_at + failure.latency >= down_at
                && failure.sent_at <= up_at + Duration::from_secs(2),
            "a {} outside the outage",
            failure.status
        );
    }
    assert!(
        by_status.get(&201).copied().unwrap_or(0) > 20,
        "too little load: {by_status:?}"
    );
}

#[tokio::test]
async fn a_gateway_started_while_the_jwks_is_down_retries_and_becomes_ready() {
    let upstream = EchoUpstream::start().await;
    let jwks_addr = free_port();
    let key = Ed25519Key::generate("key-1");
    let gateway = TestGateway::builder(&upstream.url())
        .better_auth(&format!("http://{jwks_addr}"))
        .var(JWKS_REFRESH_SECONDS, "1")
        .start_unready()
        .await;
    let token = key.sign(&better_auth_claims(&format!("http://{jwks_addr}"), "alice"));
    let failed_fetches = || async {
        let metrics = gateway.metrics().await;
        metrics
            .lines()
            .find_map(|line| line.strip_prefix("gateway_jwks_refreshes_total{result=\"error\"} "))
            .and_then(|value| value.parse::<u64>().ok())
            .unwrap_or(0)
    };
    eventually("two failed JWKS fetches", || async {
        failed_fetches().await >= 2
    })
    .await;
    assert_eq!(gateway.readyz().await, 503, "ready without keys");
    assert_eq!(gateway.get("/api/alice/tasks", &token).await.status(), 401);

    let up_at = Instant::now();
    let _jwks = JwksServer::start_on(jwks_addr, vec![key.jwk()]).await;
    gateway.wait_ready().await;
    let ready_in = up_at.elapsed();
    assert_eq!(gateway.get("/api/alice/tasks", &token).await.status(), 200);
    println!(
        "JWKS down at start: {} failed fetches while down, ready {ready_in:?} after it came up",
        failed_fetches().await
    );
    assert!(ready_in < Duration::from_secs(3), "took {ready_in:?}");
}

#[tokio::test]
async fn sigterm_lets_in_flight_requests_complete() {
    let upstream = EchoUpstream::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let (vars, listen, _admin) = binary_vars(&upstream, &dir.path().join("upgrade.sock"));
    let mut served = serve(&vars, false);
    let client = reqwest::Client::builder()
        .timeout(PATIENCE)
        .build()
        .expect("client");
    let token = hs256(&claims_for("alice"));
    let api = format!("http://{listen}/api/alice/tasks");
    eventually("the binary to serve", || async {
        client
            .get(&api)
            .bearer_auth(&token)
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;

    // Slow requests (the echo upstream waits 1.5 s before answering), all in flight at SIGTERM.
    const IN_FLIGHT: usize = 20;
    let before = upstream.count();
    let requests = (0..IN_FLIGHT).map(|i| {
        let request = client
            .get(format!("{api}/{i}"))
            .bearer_auth(&token)
            .header("x-test-delay-ms", "1500");
        async move {
            let sent_at = Instant::now();
            let status = request.send().await.map_or(0, |r| r.status().as_u16());
            Outcome {
                title: i.to_string(),
                status,
                sent_at,
                latency: sent_at.elapsed(),
            }
        }
    });
    let (outcomes, exit) = tokio::join!(join_all(requests), async {
        eventually("every slow request to reach the upstream", || async {
            upstream.count() - before == IN_FLIGHT
        })
        .await;
        signal(&served.child, "TERM");
        wait_exit(&mut served, Duration::from_secs(10)).await
    });
    let (by_status, longest) = summarize(&outcomes);
    println!(
        "SIGTERM with {IN_FLIGHT} requests in flight: by status {by_status:?} (0 = no response), \
         longest latency {longest:?}, process exited {exit:?} after the signal"
    );
    assert_eq!(
        by_status.get(&200).copied(),
        Some(IN_FLIGHT),
        "{by_status:?}"
    );
}
