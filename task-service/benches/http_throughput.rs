//! Throughput of the real HTTP server: creates and lists per second, with p50/p99 latency, on
//! SQLite and (when `TEST_POSTGRES_URL` is set) PostgreSQL.
//!
//! ```text
//! TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/postgres \
//!     cargo bench -p task-service --bench http_throughput
//! ```
//!
//! `BENCH_REQUESTS` (default 5000) requests of each kind are sent with `BENCH_CONCURRENCY`
//! (default 32) in flight, spread over `BENCH_USERS` (default 50) users, by a client in the same
//! process as the server: on a small machine the two share the cores, so the figures are a floor.

#[path = "../tests/api/support.rs"]
#[allow(dead_code, unused_imports, unused_macros)]
mod support;

use std::time::{Duration, Instant};

use futures::StreamExt;
use reqwest::Method;
use serde_json::json;
use support::{Backend, TestApp, percentile, tasks_path};
use task_service::testing::postgres_admin_url;

/// A positive number from the environment, or `default`.
fn setting(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .filter(|value| *value > 0)
        .unwrap_or(default)
}

struct Settings {
    requests: usize,
    concurrency: usize,
    users: usize,
}

impl Settings {
    fn user(&self, n: usize) -> String {
        format!("bench-user-{:03}", n % self.users)
    }
}

/// What one operation measured.
struct Figures {
    requests: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

impl Figures {
    fn percentile(&self, fraction: f64) -> Duration {
        percentile(&self.latencies, fraction)
    }

    fn print(&self, backend: Backend, operation: &str) {
        println!(
            "{:<10} {:<7} {:>7} requests {:>9.0} req/s   p50 {:>7.2} ms   p99 {:>7.2} ms",
            format!("{backend:?}"),
            operation,
            self.requests,
            self.requests as f64 / self.elapsed.as_secs_f64(),
            self.percentile(0.50).as_secs_f64() * 1000.0,
            self.percentile(0.99).as_secs_f64() * 1000.0,
        );
    }
}

/// Sends `settings.requests` requests made by `request`, `settings.concurrency` at a time.
async fn drive(
    app: &TestApp,
    settings: &Settings,
    expected_status: u16,
    request: impl Fn(usize) -> (String, Method, String, Option<serde_json::Value>),
) -> Figures {
    let started = Instant::now();
    let mut latencies: Vec<Duration> = futures::stream::iter(0..settings.requests)
        .map(|n| {
            let (user, method, path, body) = request(n);
            async move {
                let sent = Instant::now();
                let reply = app.call(&user, method, &path, body).await;
                assert_eq!(reply.status, expected_status, "{}", reply.text);
                sent.elapsed()
            }
        })
        .buffer_unordered(settings.concurrency)
        .collect()
        .await;
    let elapsed = started.elapsed();
    latencies.sort_unstable();
    Figures {
        requests: settings.requests,
        elapsed,
        latencies,
    }
}

async fn bench(backend: Backend, settings: &Settings) {
    let app = TestApp::spawn(backend).await;
    let creates = drive(&app, settings, 201, |n| {
        let user = settings.user(n);
        let path = tasks_path(&user);
        let body =
            json!({"title": format!("task {n}"), "description": "benchmark", "priority": "high"});
        (user, Method::POST, path, Some(body))
    })
    .await;
    creates.print(backend, "create");
    // Each list returns the user's first page (all of their tasks, at these sizes) and a total.
    let lists = drive(&app, settings, 200, |n| {
        let user = settings.user(n);
        let path = tasks_path(&user);
        (user, Method::GET, path, None)
    })
    .await;
    lists.print(backend, "list");
}

#[tokio::main]
async fn main() {
    let settings = Settings {
        requests: setting("BENCH_REQUESTS", 5000),
        concurrency: setting("BENCH_CONCURRENCY", 32),
        users: setting("BENCH_USERS", 50),
    };
    println!(
        "http_throughput: {} requests per operation, {} in flight, {} users",
        settings.requests, settings.concurrency, settings.users
    );
    bench(Backend::Sqlite, &settings).await;
    if postgres_admin_url().is_some() {
        bench(Backend::Postgres, &settings).await;
    } else {
        println!("Postgres   skipped: TEST_POSTGRES_URL not set");
    }
}
