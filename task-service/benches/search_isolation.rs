//! What one user's heavy keyword searches cost everyone else: while one user runs 12 concurrent
//! searches of the longest keyword allowed (200 characters) over their own 10,000 tasks, another
//! user lists their tasks one request after the other; both are measured, on SQLite and (when
//! `TEST_POSTGRES_URL` is set) PostgreSQL, through the real HTTP server on `127.0.0.1:0`.
//!
//! ```text
//! TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/postgres \
//!     cargo bench -p task-service --bench search_isolation
//! ```
//!
//! Two kinds of tasks: `everyday` (short sentences; the keyword's trigrams rule nearly all of
//! them out) and `adversarial` (a thousand `a`s and a `b`, searched for with 150 `a`s and a `b`:
//! every task matches, found only after the `like` has tried each position, some 1 ms a task,
//! so that each search runs into the statement deadline). `BENCH_SECONDS` (default 15) is how
//! long each load runs. The client shares the process (and the cores) with the server.

#[path = "../tests/api/support.rs"]
#[allow(dead_code, unused_imports, unused_macros)]
mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use reqwest::Method;
use support::{Backend, TestApp, percentile, send, tasks_path};
use task_service::testing::postgres_admin_url;

const HEAVY_USER: &str = "heavy-searcher";
const OTHER_USER: &str = "everyone-else";
const HEAVY_TASKS: i32 = 10_000;
const CONCURRENT_SEARCHES: usize = 12;

/// One kind of data, and the keyword searched over it.
struct Scenario {
    name: &'static str,
    title: &'static str,
    description: String,
    keyword: String,
}

fn scenarios() -> Vec<Scenario> {
    let sentence = "pick up the dry cleaning and call the plumber about the kitchen sink ";
    vec![
        Scenario {
            name: "everyday",
            title: "Buy groceries for the week",
            description: "milk, eggs, bread and coffee beans from the corner shop".to_owned(),
            // 200 characters of ordinary words that no task contains.
            keyword: sentence.repeat(3).chars().take(200).collect(),
        },
        Scenario {
            name: "adversarial",
            title: "a slow task",
            description: format!("{}b", "a".repeat(999)),
            keyword: format!("{}b", "a".repeat(150)),
        },
    ]
}

/// Latencies of one kind of request, and how many got each status.
#[derive(Default)]
struct Sample {
    latencies: Vec<Duration>,
    statuses: BTreeMap<u16, usize>,
}

impl Sample {
    fn record(&mut self, status: u16, latency: Duration) {
        self.latencies.push(latency);
        *self.statuses.entry(status).or_default() += 1;
    }

    fn line(mut self, label: &str) -> String {
        self.latencies.sort_unstable();
        let ms = |fraction| percentile(&self.latencies, fraction).as_secs_f64() * 1000.0;
        format!(
            "{label:<34} {:>6} requests   p50 {:>8.2} ms   p99 {:>8.2} ms   statuses {:?}",
            self.latencies.len(),
            ms(0.50),
            ms(0.99),
            self.statuses
        )
    }
}

/// Sends `path` as `user` again and again until `until`, one at a time.
async fn repeat(app: &TestApp, user: &str, path: &str, until: Instant) -> Sample {
    let mut sample = Sample::default();
    while Instant::now() < until {
        let sent = Instant::now();
        let reply = send(app.signed(user, Method::GET, path)).await;
        sample.record(reply.status, sent.elapsed());
    }
    sample
}

async fn bench(backend: Backend, scenario: &Scenario, seconds: u64) {
    let app = TestApp::spawn(backend).await;
    app.seed_tasks(
        HEAVY_USER,
        HEAVY_TASKS,
        scenario.title,
        &scenario.description,
    )
    .await;
    app.seed_tasks(OTHER_USER, 100, "water the plants", "")
        .await;
    let heavy_path = |keyword: &str| format!("{}?q={keyword}", tasks_path(HEAVY_USER));
    let other_path = tasks_path(OTHER_USER);
    let label = format!("{backend:?} {}", scenario.name);

    let refused = send(app.signed(HEAVY_USER, Method::GET, &heavy_path(&"x".repeat(1000)))).await;
    println!("{label}: a 1000-character keyword gets {}", refused.status);

    // One search at a time first: what a search over 10,000 tasks costs on its own.
    let keyword = scenario.keyword.replace(' ', "%20");
    let alone = repeat(
        &app,
        HEAVY_USER,
        &heavy_path(&keyword),
        Instant::now() + Duration::from_secs(3),
    )
    .await;
    println!("{}", alone.line(&format!("{label}: one 200-char search")));
    let baseline = repeat(
        &app,
        OTHER_USER,
        &other_path,
        Instant::now() + Duration::from_secs(3),
    )
    .await;
    println!(
        "{}",
        baseline.line(&format!("{label}: other user's list, idle"))
    );

    let until = Instant::now() + Duration::from_secs(seconds);
    let search_path = heavy_path(&keyword);
    let searches = (0..CONCURRENT_SEARCHES).map(|_| repeat(&app, HEAVY_USER, &search_path, until));
    let (searches, others) = tokio::join!(
        futures::future::join_all(searches),
        repeat(&app, OTHER_USER, &other_path, until)
    );
    let mut heavy = Sample::default();
    for sample in searches {
        heavy.latencies.extend(sample.latencies);
        for (status, count) in sample.statuses {
            *heavy.statuses.entry(status).or_default() += count;
        }
    }
    println!(
        "{}",
        heavy.line(&format!("{label}: 12 concurrent searches"))
    );
    println!(
        "{}",
        others.line(&format!("{label}: other user's list, loaded"))
    );
}

#[tokio::main]
async fn main() {
    let seconds = std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|value| value.parse().ok())
        .filter(|value| *value > 0)
        .unwrap_or(15);
    let postgres = postgres_admin_url().is_some();
    for scenario in scenarios() {
        bench(Backend::Sqlite, &scenario, seconds).await;
        if postgres {
            bench(Backend::Postgres, &scenario, seconds).await;
        }
    }
    if !postgres {
        println!("Postgres skipped: TEST_POSTGRES_URL not set");
    }
}
