//! Operations: what the people who run the system rely on.
//!
//! - A real Prometheus server, run with the project's own scrape configuration
//!   (`deploy/prometheus/prometheus.yml`) and alert rules, scrapes both running tiers; its HTTP API
//!   must report both targets up, the key series with their expected labels, the alert rules
//!   loaded, and every expression of the Grafana dashboard valid.
//! - A graceful upgrade of the real gateway binary under keep-alive load loses no request.
//!
//! Prometheus comes from the Debian `prometheus` package, which `deploy/local/test.sh` installs
//! when it is missing. Without it the test says it was skipped, except under `CI=true`, where a
//! missing Prometheus is a failure.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::support::processes::{binary_vars, serve, signal, wait_exit};
use crate::support::servers::{EchoUpstream, JwksServer, TaskService};
use crate::support::stack::TestGateway;
use crate::support::tokens::{Ed25519Key, better_auth_claims, claims_for, hs256};
use crate::support::{PATIENCE, eventually, init_logs};

/// The repository root, where `deploy/` lives.
fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the gateway crate sits in the workspace root")
        .to_path_buf()
}

/// A Prometheus server on 127.0.0.1:0 with the project's configuration, pointed at the given
/// targets. Killed when dropped.
struct Prometheus {
    child: Child,
    base: String,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    /// Starts Prometheus, or returns `None` (after saying why) when it is not installed and this
    /// is not CI.
    async fn start(gateway_admin: &str, task_service: &str) -> Option<Self> {
        let binary = std::env::var("PROMETHEUS_BIN").unwrap_or_else(|_| "prometheus".to_owned());
        if std::process::Command::new(&binary)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_err()
        {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "CI requires a Prometheus server binary ({binary}); deploy/local/test.sh installs one"
            );
            eprintln!("skipped: no Prometheus binary ({binary}) on this machine");
            return None;
        }

        // The project's own files, with the local targets swapped for this test's ports and a
        // short scrape interval so the test does not wait 15 s for a first scrape.
        let dir = tempfile::tempdir().expect("temporary directory");
        let deploy = repo_root().join("deploy/prometheus");
        let config = std::fs::read_to_string(deploy.join("prometheus.yml"))
            .expect("deploy/prometheus/prometheus.yml");
        for expected in ["127.0.0.1:9090", "127.0.0.1:8081", "scrape_interval: 15s"] {
            assert!(
                config.contains(expected),
                "prometheus.yml lost {expected:?}"
            );
        }
        let config = config
            .replace("127.0.0.1:9090", gateway_admin)
            .replace("127.0.0.1:8081", task_service)
            .replace("scrape_interval: 15s", "scrape_interval: 1s")
            .replace("evaluation_interval: 15s", "evaluation_interval: 1s");
        std::fs::write(dir.path().join("prometheus.yml"), config).expect("write config");
        std::fs::copy(deploy.join("alerts.yml"), dir.path().join("alerts.yml"))
            .expect("copy alert rules");

        let mut child = Command::new(&binary)
            .arg(format!(
                "--config.file={}",
                dir.path().join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg("--web.listen-address=127.0.0.1:0")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start prometheus");

        // Prometheus logs the port it really bound: `msg="Listening on" address=127.0.0.1:NNNNN`.
        let stderr = child.stderr.take().expect("piped stderr");
        let mut lines = BufReader::new(stderr).lines();
        let address = tokio::time::timeout(PATIENCE, async {
            while let Some(line) = lines.next_line().await.expect("read prometheus log") {
                if line.contains("msg=\"Listening on\"")
                    && let Some(address) = line.split("address=").nth(1)
                {
                    return address.trim().to_owned();
                }
            }
            panic!("prometheus exited before it listened");
        })
        .await
        .expect("prometheus did not start listening in time");
        // Keep draining its log so that it never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });

        let prometheus = Self {
            child,
            base: format!("http://{address}"),
            http: reqwest::Client::new(),
            _dir: dir,
        };
        // It listens before its storage is open; `/-/ready` says when it can answer queries.
        let ready = format!("{}/-/ready", prometheus.base);
        eventually("prometheus ready", || {
            let request = prometheus.http.get(&ready).send();
            async move { request.await.is_ok_and(|r| r.status().is_success()) }
        })
        .await;
        Some(prometheus)
    }

    /// `GET /api/v1/<path>` and the `data` of a successful answer.
    async fn api(&self, path: &str, query: &[(&str, &str)]) -> Value {
        let response: Value = self
            .http
            .get(format!("{}/api/v1/{path}", self.base))
            .query(query)
            .send()
            .await
            .expect("prometheus API")
            .json()
            .await
            .expect("prometheus API JSON");
        assert_eq!(
            response["status"], "success",
            "{path} {query:?}: {response}"
        );
        response["data"].clone()
    }

    /// The result vector of an instant query.
    async fn query(&self, promql: &str) -> Vec<Value> {
        let data = self.api("query", &[("query", promql)]).await;
        data["result"].as_array().cloned().unwrap_or_default()
    }

    /// Waits until an instant query returns at least one series, and returns them.
    async fn wait_for_series(&self, promql: &str) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let result = self.query(promql).await;
            if !result.is_empty() {
                return result;
            }
            assert!(Instant::now() < deadline, "no series for {promql} in 30 s");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// The label `name` of each series in a query result.
fn label_values(series: &[Value], name: &str) -> Vec<String> {
    series
        .iter()
        .filter_map(|s| s["metric"][name].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_both_tiers_with_the_projects_config() {
    init_logs();
    let data = tempfile::tempdir().expect("temporary directory");
    let task_service = TaskService::start(data.path()).await;
    // Both token sources, so that the JWKS series exist too.
    let key = Ed25519Key::generate("ops-key");
    let jwks = JwksServer::start(vec![key.jwk()]).await;
    let gateway = TestGateway::builder(&task_service.url())
        .shared_secret()
        .better_auth(&jwks.base_url())
        .start()
        .await;
    gateway.wait_ready().await;

    // Traffic that should show up in the series: a create, a list, a cross-user denial and a
    // missing token.
    let alice = hs256(&claims_for("alice"));
    let created = reqwest::Client::new()
        .post(gateway.url("/api/alice/tasks"))
        .bearer_auth(&alice)
        .json(&serde_json::json!({"title": "scraped"}))
        .send()
        .await
        .expect("create through the gateway");
    assert_eq!(created.status(), 201);
    assert_eq!(gateway.get("/api/alice/tasks", &alice).await.status(), 200);
    let better_auth = key.sign(&better_auth_claims(&jwks.base_url(), "carol"));
    assert_eq!(
        gateway.get("/api/carol/tasks", &better_auth).await.status(),
        200
    );
    assert_eq!(gateway.get("/api/bob/tasks", &alice).await.status(), 403);
    let anonymous = reqwest::get(gateway.url("/api/alice/tasks"))
        .await
        .expect("anonymous request");
    assert_eq!(anonymous.status(), 401);

    let admin = gateway
        .admin_url("")
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    let Some(prometheus) = Prometheus::start(&admin, &task_service.addr.to_string()).await else {
        return;
    };

    // Both jobs of the project's config are scraped and up.
    let up = prometheus.wait_for_series("up == 1").await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut jobs = label_values(&up, "job");
    while jobs.len() < 2 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        jobs = label_values(&prometheus.query("up == 1").await, "job");
    }
    jobs.sort();
    assert_eq!(jobs, ["gateway", "task-service"], "targets up: {up:?}");
    let targets = prometheus.api("targets", &[]).await;
    for target in targets["activeTargets"].as_array().expect("active targets") {
        assert_eq!(target["health"], "up", "{target}");
    }

    // The key series, with the labels dashboards and alerts rely on, and never a user id.
    let requests = prometheus
        .wait_for_series(r#"gateway_http_requests_total{route="/api/{user_id}/tasks"}"#)
        .await;
    let mut statuses = label_values(&requests, "status");
    statuses.sort();
    statuses.dedup();
    for status in ["200", "201", "401", "403"] {
        assert!(
            statuses.iter().any(|s| s == status),
            "gateway statuses {statuses:?}"
        );
    }
    let denials = prometheus
        .wait_for_series("gateway_auth_denials_total")
        .await;
    let reasons = label_values(&denials, "reason");
    assert!(reasons.iter().any(|r| r == "user_mismatch"), "{reasons:?}");
    assert!(reasons.iter().any(|r| r == "missing_token"), "{reasons:?}");
    let served = prometheus
        .wait_for_series(r#"task_service_http_requests_total{route="/api/{user_id}/tasks", method="POST", status="201"}"#)
        .await;
    assert_eq!(served.len(), 1, "{served:?}");
    for series in [
        "gateway_http_request_duration_seconds_bucket",
        "gateway_healthy_upstreams",
        "gateway_token_cache_total",
        "task_service_http_request_duration_seconds_bucket",
        "task_service_db_query_duration_seconds_bucket",
        "task_service_db_pool_connections",
    ] {
        prometheus.wait_for_series(series).await;
    }
    // The label values the alert rules select on are the ones the gateway really writes.
    let refreshes = prometheus
        .wait_for_series(r#"gateway_jwks_refreshes_total{result="success"}"#)
        .await;
    assert_eq!(refreshes.len(), 1, "{refreshes:?}");
    let keys = prometheus.wait_for_series("gateway_jwks_keys").await;
    assert_eq!(keys[0]["value"][1], "1", "{keys:?}");
    let healthy = prometheus
        .wait_for_series("gateway_healthy_upstreams")
        .await;
    assert_eq!(healthy[0]["value"][1], "1", "{healthy:?}");
    let everything = prometheus
        .query(r#"{__name__=~"gateway_.+|task_service_.+"}"#)
        .await;
    for series in &everything {
        let labels = series["metric"].as_object().expect("labels");
        for value in labels.values() {
            let value = value.as_str().unwrap_or_default();
            assert!(
                !["alice", "bob", "carol"]
                    .iter()
                    .any(|user| value.contains(user)),
                "a user id became a label value: {series}"
            );
        }
    }

    // The project's alert rules are loaded and evaluate without error.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let rules = prometheus.api("rules", &[]).await;
        let all: Vec<Value> = rules["groups"]
            .as_array()
            .expect("rule groups")
            .iter()
            .flat_map(|group| group["rules"].as_array().cloned().unwrap_or_default())
            .collect();
        assert_eq!(all.len(), 9, "alert rules loaded: {rules}");
        if all.iter().all(|rule| rule["health"] == "ok") {
            break;
        }
        assert!(Instant::now() < deadline, "rules not healthy: {rules}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Every dashboard expression is valid PromQL against the real series.
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(repo_root().join("deploy/grafana/task-gateway.json"))
            .expect("deploy/grafana/task-gateway.json"),
    )
    .expect("dashboard JSON");
    let mut checked = 0;
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().expect("targets") {
            let expr = target["expr"]
                .as_str()
                .expect("expr")
                .replace("$__rate_interval", "1m");
            prometheus.api("query", &[("query", &expr)]).await;
            checked += 1;
        }
    }
    assert!(checked >= 12, "dashboard expressions checked: {checked}");

    drop(prometheus);
    drop(gateway);
    task_service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_upgrade_under_keep_alive_load_loses_no_request() {
    init_logs();
    let upstream = EchoUpstream::start().await;
    let dir = tempfile::tempdir().expect("temporary directory");
    let sock = dir.path().join("upgrade.sock");
    let (vars, listen, _admin) = binary_vars(&upstream, &sock);
    let mut old = serve(&vars, false);
    let url = format!("http://{listen}/api/alice/tasks");
    let token = hs256(&claims_for("alice"));
    let probe = reqwest::Client::new();
    eventually("the old gateway to serve", || {
        let request = probe.get(&url).bearer_auth(&token).send();
        async move { request.await.is_ok_and(|r| r.status() == 200) }
    })
    .await;

    // Clients that keep one connection alive and send the next request as soon as the last one
    // is answered: the pattern that loses a request if shutdown closes an idle keep-alive
    // connection while the next request is already on its way.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let clients: Vec<_> = (0..8)
        .map(|_| {
            let (url, token, stop) = (url.clone(), token.clone(), stop.clone());
            tokio::spawn(async move {
                let client = reqwest::Client::builder()
                    .pool_max_idle_per_host(1)
                    .build()
                    .expect("client");
                let (mut ok, mut failed) = (0u32, Vec::new());
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    match client.get(&url).bearer_auth(&token).send().await {
                        Ok(response) if response.status() == 200 => ok += 1,
                        Ok(response) => failed.push(format!("status {}", response.status())),
                        Err(err) => failed.push(format!("{err:?}")),
                    }
                }
                (ok, failed)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;

    let _new = serve(&vars, true);
    eventually("the new gateway to wait for the sockets", || async {
        sock.exists()
    })
    .await;
    signal(&old.child, "QUIT");
    wait_exit(&mut old, Duration::from_secs(15)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);

    let (mut ok, mut failed) = (0, Vec::new());
    for client in clients {
        let (client_ok, client_failed) = client.await.expect("client task");
        ok += client_ok;
        failed.extend(client_failed);
    }
    eprintln!(
        "graceful upgrade under load: {ok} requests answered, {} failed",
        failed.len()
    );
    assert!(ok > 100, "too little load to mean anything: {ok}");
    assert!(
        failed.is_empty(),
        "{} requests failed: {failed:?}",
        failed.len()
    );
}
