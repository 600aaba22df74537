//! Distributed tracing through both real binaries: the W3C trace context continued or started,
//! passed from the gateway to the task service, spans exported over OTLP/HTTP to a collector of
//! the test's own, the same trace id in both tiers' access logs, and nothing secret or private
//! in any span. Without a collector configured, the trace context still travels and is logged;
//! with one that is down, serving goes on.

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::config::GATEWAY_SIGNING_SECRET;
use common::tracing_export::{OTEL_BSP_SCHEDULE_DELAY, OTEL_EXPORTER_OTLP_ENDPOINT};
use gateway::config::{GATEWAY_ADMIN_LISTEN, GATEWAY_LISTEN};
use serde_json::{Value, json};
use task_service::config::{DATABASE_URL, TASK_SERVICE_LISTEN};

use crate::support::clients::status_of;
use crate::support::processes::{
    GATEWAY_BINARY, Served, free_port, free_ports, signal, spawn_logging, task_service_binary,
    wait_exit, wait_serving,
};
use crate::support::servers::{Collector, EchoUpstream, ExportedSpan, echoed_headers};
use crate::support::stack::TestGateway;
use crate::support::tokens::{claims_for, hs256, with_claims};
use crate::support::{HMAC_SECRET, SIGNING_SECRET, now};

/// A client's trace context, continued by both tiers.
const CLIENT_TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_PARENT_ID: &str = "00f067aa0ba902b7";

/// Both real binaries, the gateway in front of the task service (SQLite in a temporary
/// directory), logging JSON to files; stopped with SIGTERM by [`Tiers::stop`], killed if dropped.
struct Tiers {
    listen: std::net::SocketAddr,
    gateway: Served,
    task_service: Served,
    gateway_log: PathBuf,
    task_log: PathBuf,
    client: reqwest::Client,
    _dir: tempfile::TempDir,
}

/// The real gateway binary in front of `upstream_url`, with `extra` in its environment and its
/// log in `dir`, once ready; and its public address.
async fn start_gateway(
    upstream_url: &str,
    extra: &[(&str, &str)],
    dir: &Path,
) -> (Served, std::net::SocketAddr) {
    let [listen, admin] = free_ports();
    let vars = TestGateway::builder(upstream_url)
        .shared_secret()
        .var(GATEWAY_LISTEN, listen.to_string())
        .var(GATEWAY_ADMIN_LISTEN, admin.to_string())
        .var("RUNTIME_DIRECTORY", dir.join("run").display().to_string())
        .vars(extra)
        .into_vars();
    let gateway = spawn_logging(Path::new(GATEWAY_BINARY), &vars, &dir.join("gateway.log"));
    wait_serving(&reqwest::Client::new(), admin, listen).await;
    (gateway, listen)
}

impl Tiers {
    /// Both tiers exporting to `collector` every `delay_ms`.
    async fn exporting_to(collector: &Collector, delay_ms: &str) -> Self {
        let endpoint = collector.url();
        Self::start(&[
            (OTEL_EXPORTER_OTLP_ENDPOINT, &endpoint),
            (OTEL_BSP_SCHEDULE_DELAY, delay_ms),
        ])
        .await
    }

    /// Starts both with `otel` added to each environment, and waits until the gateway is ready.
    async fn start(otel: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let task_log = dir.path().join("task.log");
        let task_addr = free_port();
        let database = format!("sqlite://{}", dir.path().join("tasks.db").display());
        let task_vars: Vec<(String, String)> = [
            (TASK_SERVICE_LISTEN, task_addr.to_string().as_str()),
            (DATABASE_URL, database.as_str()),
            (GATEWAY_SIGNING_SECRET, SIGNING_SECRET),
        ]
        .into_iter()
        .chain(otel.iter().copied())
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect();
        let task_service = spawn_logging(&task_service_binary(), &task_vars, &task_log);
        let (gateway, listen) =
            start_gateway(&format!("http://{task_addr}"), otel, dir.path()).await;
        Self {
            listen,
            gateway,
            task_service,
            gateway_log: dir.path().join("gateway.log"),
            task_log,
            client: reqwest::Client::new(),
            _dir: dir,
        }
    }

    fn api(&self, user: &str) -> String {
        format!("http://{}/api/{user}/tasks", self.listen)
    }

    /// SIGTERM to the gateway, then to the task service; waits for both to exit.
    async fn stop(&mut self) {
        for served in [&mut self.gateway, &mut self.task_service] {
            signal(&served.child, "TERM");
            wait_exit(served, Duration::from_secs(15)).await;
        }
    }
}

/// The JSON lines of `log` whose target is `target`.
fn log_lines(log: &Path, target: &str) -> Vec<Value> {
    std::fs::read_to_string(log)
        .expect("log")
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|line| line["target"] == target)
        .collect()
}

/// The `trace_id` of each access-log line in `log` (target `target`) for an API request.
fn logged_trace_ids(log: &Path, target: &str) -> Vec<String> {
    log_lines(log, target)
        .into_iter()
        .filter(|line| {
            line["route"]
                .as_str()
                .is_some_and(|r| r.starts_with("/api/"))
        })
        .map(|line| line["trace_id"].as_str().expect("trace_id").to_owned())
        .collect()
}

/// The span named `name` of `service` in `trace_id`, when exported.
fn find<'a>(
    spans: &'a [ExportedSpan],
    service: &str,
    name: &str,
    trace_id: &str,
) -> Option<&'a ExportedSpan> {
    spans
        .iter()
        .find(|span| span.service == service && span.name == name && span.trace_id == trace_id)
}

/// The children of `parent` named `name`.
fn children<'a>(
    spans: &'a [ExportedSpan],
    parent: &ExportedSpan,
    name: &str,
) -> Vec<&'a ExportedSpan> {
    spans
        .iter()
        .filter(|span| {
            span.trace_id == parent.trace_id
                && span.parent_span_id == parent.span_id
                && span.name == name
        })
        .collect()
}

/// Checks the shape of one allowed request's trace in both tiers; returns the task service's
/// server span.
fn assert_one_trace(spans: &[ExportedSpan], gateway_span: &ExportedSpan) -> ExportedSpan {
    let trace = &gateway_span.trace_id;
    let [_verify] = children(spans, gateway_span, "verify")[..] else {
        panic!("one verify span under {gateway_span:?}: {spans:#?}");
    };
    let [upstream] = children(spans, gateway_span, "upstream")[..] else {
        panic!("one upstream span under {gateway_span:?}: {spans:#?}");
    };
    let server = find(spans, "task-service", "task-service.request", trace)
        .unwrap_or_else(|| panic!("the task service's span in trace {trace}: {spans:#?}"));
    assert_eq!(
        server.parent_span_id, upstream.span_id,
        "the task service's span is a child of the gateway's upstream span"
    );
    let [handler] = children(spans, server, "handler")[..] else {
        panic!("one handler span under {server:?}: {spans:#?}");
    };
    assert!(
        !children(spans, handler, "query").is_empty(),
        "a query span under the handler: {spans:#?}"
    );
    server.clone()
}

#[tokio::test]
async fn both_tiers_export_one_trace_per_request_without_credentials_or_task_text() {
    let collector = Collector::start().await;
    let mut tiers = Tiers::exporting_to(&collector, "100").await;
    let token = hs256(&claims_for("alice"));
    let signature = token.rsplit('.').next().expect("a signature").to_owned();
    let title = "Distinctive-task-title-9c41e7";
    let description = "a private description 52be0d";
    let created = tiers
        .client
        .post(tiers.api("alice"))
        .bearer_auth(&token)
        .header("cookie", "better-auth.session_token=cookie-value-77aa")
        .json(&json!({"title": title, "description": description}))
        .send()
        .await
        .expect("create");
    assert_eq!(created.status(), 201);
    let listed = tiers
        .client
        .get(format!("{}?q=Distinctive", tiers.api("alice")))
        .bearer_auth(&token)
        .send()
        .await
        .expect("list");
    assert_eq!(listed.status(), 200);

    for method in ["POST", "GET"] {
        let gateway_span = collector
            .wait_for("the gateway's span", |span| {
                span.service == "gateway"
                    && span.name == "gateway.request"
                    && span.attribute("http.request.method") == Some(method)
            })
            .await;
        collector
            .wait_for("the task service's span", |span| {
                span.service == "task-service" && span.trace_id == gateway_span.trace_id
            })
            .await;
    }
    tiers.stop().await;

    let spans = collector.spans();
    let gateway_spans: Vec<&ExportedSpan> = spans
        .iter()
        .filter(|span| span.service == "gateway" && span.name == "gateway.request")
        .collect();
    assert_eq!(gateway_spans.len(), 2, "{spans:#?}");
    for gateway_span in &gateway_spans {
        assert_eq!(
            gateway_span.parent_span_id, "",
            "a new trace: {gateway_span:?}"
        );
        assert_eq!(
            gateway_span.attribute("http.route"),
            Some("/api/{user_id}/tasks")
        );
        assert_eq!(gateway_span.attribute("gateway.denial"), None);
        let server = assert_one_trace(&spans, gateway_span);
        assert_eq!(server.attribute("http.route"), Some("/api/{user_id}/tasks"));
    }
    let statuses: Vec<_> = gateway_spans
        .iter()
        .map(|span| span.attribute("http.response.status_code"))
        .collect();
    assert_eq!(statuses, [Some("201"), Some("200")]);

    for span in &spans {
        for text in span.texts() {
            for (what, secret) in [
                ("the token", token.as_str()),
                ("the token's signature", signature.as_str()),
                ("the cookie", "cookie-value-77aa"),
                ("BETTER_AUTH_SECRET", HMAC_SECRET),
                ("GATEWAY_SIGNING_SECRET", SIGNING_SECRET),
                ("the task title", title),
                ("the task description", description),
                ("the search keyword", "Distinctive"),
                ("the user id", "alice"),
                ("an assertion", "v1="),
            ] {
                assert!(!text.contains(secret), "a span holds {what}: {span:?}");
            }
        }
    }

    // The access-log lines carry the exported trace ids, in both tiers.
    let mut exported: Vec<String> = gateway_spans.iter().map(|s| s.trace_id.clone()).collect();
    exported.sort();
    for (log, target) in [
        (&tiers.gateway_log, "gateway::access"),
        (&tiers.task_log, "access"),
    ] {
        let mut logged = logged_trace_ids(log, target);
        logged.sort();
        assert_eq!(logged, exported, "{target} access log");
    }
}

#[tokio::test]
async fn a_client_trace_is_continued_and_a_denial_is_an_attribute() {
    let collector = Collector::start().await;
    let mut tiers = Tiers::exporting_to(&collector, "100").await;
    let alice = hs256(&claims_for("alice"));
    let expired = hs256(&with_claims(
        claims_for("alice"),
        &json!({"exp": now() - 3600, "iat": now() - 7200}),
    ));
    let denied_trace = "11111111111111111111111111111111";
    for (token, user, trace_id, status) in [
        (&alice, "bob", denied_trace, 403),
        (&expired, "alice", "22222222222222222222222222222222", 401),
        (&alice, "alice", CLIENT_TRACE_ID, 200),
    ] {
        let response = tiers
            .client
            .get(tiers.api(user))
            .bearer_auth(token)
            .header(
                "traceparent",
                format!("00-{trace_id}-{CLIENT_PARENT_ID}-01"),
            )
            .header("tracestate", "congo=t61rcWkgMzE")
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), status, "{user} in trace {trace_id}");
    }
    // Spans end and are exported in order: once the allowed request's task-service span is in,
    // a task-service span of either denied request would be too.
    collector
        .wait_for("the allowed request in the task service", |span| {
            span.service == "task-service" && span.trace_id == CLIENT_TRACE_ID
        })
        .await;
    tiers.stop().await;
    let spans = collector.spans();

    let allowed = find(&spans, "gateway", "gateway.request", CLIENT_TRACE_ID)
        .expect("the gateway's span of the client's trace");
    assert_eq!(
        allowed.parent_span_id, CLIENT_PARENT_ID,
        "the client's span is the parent"
    );
    assert_one_trace(&spans, allowed);

    for (trace_id, reason, status) in [
        (denied_trace, "user_mismatch", "403"),
        ("22222222222222222222222222222222", "expired", "401"),
    ] {
        let denied = find(&spans, "gateway", "gateway.request", trace_id)
            .unwrap_or_else(|| panic!("the denied request's span: {spans:#?}"));
        assert_eq!(denied.attribute("gateway.denial"), Some(reason));
        assert_eq!(denied.attribute("http.response.status_code"), Some(status));
        assert!(children(&spans, denied, "upstream").is_empty());
        assert!(
            spans
                .iter()
                .all(|span| span.service != "task-service" || span.trace_id != trace_id),
            "a denied request reached the task service: {spans:#?}"
        );
    }
    let mut logged = logged_trace_ids(&tiers.gateway_log, "gateway::access");
    logged.sort();
    assert_eq!(
        logged,
        [
            denied_trace,
            "22222222222222222222222222222222",
            CLIENT_TRACE_ID
        ]
    );
    assert_eq!(
        logged_trace_ids(&tiers.task_log, "access"),
        [CLIENT_TRACE_ID]
    );
}

#[tokio::test]
async fn spans_still_queued_at_sigterm_are_exported() {
    let collector = Collector::start().await;
    // No export would happen for a minute: only the flush at exit can deliver these spans.
    let mut tiers = Tiers::exporting_to(&collector, "60000").await;
    let token = hs256(&claims_for("alice"));
    assert_eq!(
        status_of(&tiers.client, &tiers.api("alice"), &token).await,
        200
    );
    tiers.stop().await;

    let spans = collector.spans();
    let gateway_span = spans
        .iter()
        .find(|span| span.service == "gateway" && span.name == "gateway.request")
        .unwrap_or_else(|| panic!("the gateway's span after SIGTERM: {spans:#?}"));
    assert_one_trace(&spans, gateway_span);
}

#[tokio::test]
async fn a_collector_that_is_down_does_not_affect_serving() {
    let closed = format!("http://{}", free_port());
    let mut tiers = Tiers::start(&[
        (OTEL_EXPORTER_OTLP_ENDPOINT, &closed),
        (OTEL_BSP_SCHEDULE_DELAY, "10"),
    ])
    .await;
    let token = hs256(&claims_for("alice"));
    for _ in 0..20 {
        assert_eq!(
            status_of(&tiers.client, &tiers.api("alice"), &token).await,
            200
        );
    }
    tiers.stop().await;
    assert_eq!(
        logged_trace_ids(&tiers.gateway_log, "gateway::access").len(),
        20
    );
}

#[tokio::test]
async fn a_bad_endpoint_stops_each_tier_with_one_line_naming_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let database = format!("sqlite://{}", dir.path().join("tasks.db").display());
    let task_vars = [
        (GATEWAY_SIGNING_SECRET, SIGNING_SECRET),
        (DATABASE_URL, database.as_str()),
        (OTEL_EXPORTER_OTLP_ENDPOINT, "collector:4318"),
    ];
    let gateway_vars = TestGateway::builder("http://127.0.0.1:1")
        .shared_secret()
        .var(
            "RUNTIME_DIRECTORY",
            dir.path().join("run").display().to_string(),
        )
        .var(OTEL_EXPORTER_OTLP_ENDPOINT, "collector:4318")
        .into_vars();
    let task_vars: Vec<(String, String)> = task_vars
        .iter()
        .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
        .collect();
    for (binary, vars) in [
        (task_service_binary(), task_vars),
        (PathBuf::from(GATEWAY_BINARY), gateway_vars),
    ] {
        let output = std::process::Command::new(&binary)
            .env_clear()
            .envs(vars.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .output()
            .expect("the binary runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{}: {stderr}",
            binary.display()
        );
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(
            stderr.starts_with(&format!(
                "error: invalid configuration: {OTEL_EXPORTER_OTLP_ENDPOINT}: "
            )),
            "{stderr}"
        );
    }
}

#[tokio::test]
async fn without_a_collector_the_trace_context_still_travels_and_is_logged() {
    let upstream = EchoUpstream::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let (mut gateway, listen) = start_gateway(&upstream.url(), &[], dir.path()).await;
    let log = dir.path().join("gateway.log");
    let client = reqwest::Client::new();
    let token = hs256(&claims_for("alice"));
    let api = format!("http://{listen}/api/alice/tasks");
    let client_traceparent = format!("00-{CLIENT_TRACE_ID}-{CLIENT_PARENT_ID}-01");
    let mut forwarded = Vec::new();
    for traceparent in [
        Some(client_traceparent.as_str()),
        None,
        Some("00-zz-bad-01"),
    ] {
        let mut request = client.get(&api).bearer_auth(&token);
        if let Some(value) = traceparent {
            request = request
                .header("traceparent", value)
                .header("tracestate", "congo=t61rcWkgMzE");
        }
        let response = request.send().await.expect("request");
        assert_eq!(response.status(), 200);
        let echo: Value = response.json().await.expect("echo");
        let headers = echoed_headers(&echo);
        let sent: Vec<&String> = headers
            .iter()
            .filter(|(name, _)| name == "traceparent")
            .map(|(_, value)| value)
            .collect();
        let [sent] = sent[..] else {
            panic!("one traceparent forwarded: {headers:?}");
        };
        let state: Vec<String> = headers
            .iter()
            .filter(|(name, _)| name == "tracestate")
            .map(|(_, value)| value.clone())
            .collect();
        forwarded.push((sent.clone(), state));
    }
    signal(&gateway.child, "TERM");
    wait_exit(&mut gateway, Duration::from_secs(15)).await;

    let fields =
        |traceparent: &str| -> Vec<String> { traceparent.split('-').map(str::to_owned).collect() };
    let continued = fields(&forwarded[0].0);
    assert_eq!(continued[1], CLIENT_TRACE_ID);
    assert_ne!(
        continued[2], CLIENT_PARENT_ID,
        "the gateway's hop is the parent"
    );
    assert_eq!(forwarded[0].1, ["congo=t61rcWkgMzE"]);
    for (traceparent, state) in &forwarded[1..] {
        let started = fields(traceparent);
        assert_eq!(started.len(), 4, "{traceparent}");
        assert_eq!((started[0].as_str(), started[3].as_str()), ("00", "01"));
        assert_eq!(started[1].len(), 32);
        assert_ne!(started[1], CLIENT_TRACE_ID);
        assert!(
            state.is_empty(),
            "a tracestate without a valid traceparent is dropped"
        );
    }
    assert_ne!(fields(&forwarded[1].0)[1], fields(&forwarded[2].0)[1]);
    let sent_ids: Vec<String> = forwarded
        .iter()
        .map(|(tp, _)| fields(tp)[1].clone())
        .collect();
    assert_eq!(logged_trace_ids(&log, "gateway::access"), sent_ids);
}
