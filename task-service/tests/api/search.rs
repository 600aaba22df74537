//! The keyword search's bounds: the keyword's length, every statement's time, the work of a
//! request whose client went away, and the trigram index that answers it. Every test runs on
//! SQLite and on PostgreSQL.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};
use task_service::config::{DATABASE_MAX_CONNECTIONS, DATABASE_STATEMENT_TIMEOUT_MS};

use sqlx::Connection;

use crate::support::{ALICE, BOB, Backend, TestApp, backend_tests, detail, task_path, tasks_path};

/// Tasks on which a long keyword is slow to match: the keyword is found, but only at the end,
/// after a `like` has tried it at every earlier position (about 150 × 1000 comparisons a task).
const SLOW_TITLE: &str = "a slow task";
fn slow_description() -> String {
    format!("{}b", "a".repeat(999))
}
fn slow_keyword() -> String {
    format!("{}b", "a".repeat(150))
}

fn ids(tasks: &[Value]) -> Vec<i64> {
    tasks
        .iter()
        .filter_map(|task| task["id"].as_i64())
        .collect()
}

async fn search_finds_tasks_after_creates_updates_and_deletes(app: TestApp) {
    let report = app
        .create_task_with(
            ALICE,
            json!({"title": "Quarterly REPORT", "description": "for the board"}),
        )
        .await;
    let quoted = app.create_task(ALICE, r#"say "hello" twice"#).await;
    let _other = app.create_task(BOB, "quarterly report of bob").await;
    for (keyword, expected) in [
        ("terly rep", vec![&report]),
        ("THE BOARD", vec![&report]),
        (r#""hello""#, vec![&quoted]),
        ("y \"h", vec![&quoted]),
        ("missing", vec![]),
    ] {
        let query = format!("?q={}", urlencode(keyword));
        let (tasks, total) = app.list(ALICE, &query).await;
        assert_eq!(
            ids(&tasks),
            ids(&expected.into_iter().cloned().collect::<Vec<_>>()),
            "{keyword}"
        );
        assert_eq!(
            total,
            i64::try_from(tasks.len()).expect("small"),
            "{keyword}"
        );
    }

    app.call(
        ALICE,
        Method::PUT,
        &task_path(ALICE, &report),
        Some(json!({"title": "Annual summary", "description": "for the auditors"})),
    )
    .await
    .expect_status(200);
    assert!(
        app.list(ALICE, "?q=terly").await.0.is_empty(),
        "old title still found"
    );
    assert!(
        app.list(ALICE, "?q=board").await.0.is_empty(),
        "old description still found"
    );
    assert_eq!(
        ids(&app.list(ALICE, "?q=nual%20sum").await.0),
        ids(std::slice::from_ref(&report))
    );
    assert_eq!(
        ids(&app.list(ALICE, "?q=AUDITOR").await.0),
        ids(std::slice::from_ref(&report))
    );

    app.call(ALICE, Method::DELETE, &task_path(ALICE, &report), None)
        .await
        .expect_status(204);
    assert!(
        app.list(ALICE, "?q=nual%20sum").await.0.is_empty(),
        "deleted task still found"
    );
}

/// The search reads the trigram index: on SQLite, a task whose index entry is removed behind the
/// service's back is no longer found by a long keyword (a short one, which cannot use the
/// index, still finds it); on PostgreSQL, the index's scan counter grows with each search over a
/// large table.
async fn search_reads_the_trigram_index(app: TestApp) {
    let task = app
        .create_task_with(ALICE, json!({"title": "needle in a haystack"}))
        .await;
    match app.backend {
        Backend::Sqlite => {
            assert_eq!(
                ids(&app.list(ALICE, "?q=needle").await.0),
                ids(std::slice::from_ref(&task))
            );
            let mut db = sqlx::SqliteConnection::connect(&app.database_url)
                .await
                .expect("open the SQLite file");
            sqlx::query(
                "insert into tasks_search (tasks_search, rowid, title, description) \
                 select 'delete', id, title, description from tasks where id = $1",
            )
            .bind(task["id"].as_i64())
            .execute(&mut db)
            .await
            .expect("remove the index entry");
            assert!(
                app.list(ALICE, "?q=needle").await.0.is_empty(),
                "search bypassed the index"
            );
            assert_eq!(ids(&app.list(ALICE, "?q=ne").await.0), ids(&[task]));
        }
        Backend::Postgres => {
            app.seed_tasks(ALICE, 10_000, "hay", "more hay").await;
            app.seed_tasks(BOB, 10_000, "straw", "more straw").await;
            let scans = || async {
                let mut db = app.postgres().await;
                let (scans,): (i64,) = sqlx::query_as(
                    "select coalesce(idx_scan, 0) from pg_stat_user_indexes \
                     where indexrelname = 'tasks_search'",
                )
                .fetch_one(&mut db)
                .await
                .expect("index statistics");
                scans
            };
            let before = scans().await;
            for _ in 0..3 {
                let (tasks, _) = app.list(ALICE, "?q=needle").await;
                assert_eq!(ids(&tasks), ids(std::slice::from_ref(&task)));
            }
            // A server process publishes its statistics at the end of a transaction at most once
            // a second (or after ten idle seconds): one more search a second later flushes them.
            tokio::time::sleep(Duration::from_millis(1100)).await;
            app.list(ALICE, "?q=needle").await;
            let started = Instant::now();
            while scans().await <= before {
                assert!(
                    started.elapsed() < Duration::from_secs(15),
                    "the index was not scanned"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

fn short_deadline() -> Vec<(&'static str, &'static str)> {
    vec![(DATABASE_STATEMENT_TIMEOUT_MS, "100")]
}

async fn a_statement_past_its_deadline_is_stopped_with_a_503(app: TestApp) {
    app.seed_tasks(ALICE, 3_000, SLOW_TITLE, &slow_description())
        .await;
    let started = Instant::now();
    let reply = app
        .list_reply(ALICE, &format!("?q={}", slow_keyword()))
        .await;
    reply.expect_status(503);
    assert_eq!(reply.json(), detail("The database took too long to answer"));
    assert_eq!(reply.header("cache-control"), Some("no-store"));
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the statement ran for {:?}",
        started.elapsed()
    );
    // The connection is still good, and cheap requests are within the deadline.
    let (tasks, total) = app.list(ALICE, "?limit=1").await;
    assert_eq!((tasks.len(), total), (1, 3_000));
}

/// One connection and a long deadline: only giving up on the abandoned statement frees the
/// connection for the next request (SQLite), and only the server's client check stops it
/// (PostgreSQL).
fn one_connection_long_deadline() -> Vec<(&'static str, &'static str)> {
    vec![
        (DATABASE_STATEMENT_TIMEOUT_MS, "120000"),
        (DATABASE_MAX_CONNECTIONS, "1"),
    ]
}

async fn a_search_whose_client_went_away_stops(app: TestApp) {
    let backend = app.backend;
    let slow_rows = match backend {
        Backend::Sqlite => 10_000,
        Backend::Postgres => 40_000,
    };
    app.seed_tasks(ALICE, slow_rows, SLOW_TITLE, &slow_description())
        .await;
    let gave_up = app
        .signed(
            ALICE,
            Method::GET,
            &format!("{}?q={}", tasks_path(ALICE), slow_keyword()),
        )
        .timeout(Duration::from_millis(500))
        .send()
        .await;
    assert!(
        gave_up.is_err_and(|err| err.is_timeout()),
        "the search should still be running"
    );
    let left_at = Instant::now();

    let reply = app.list_reply(BOB, "").await;
    reply.expect_status(200);
    let next_answered = left_at.elapsed();
    assert!(
        next_answered < Duration::from_secs(2),
        "the next request waited {next_answered:?}"
    );
    if backend == Backend::Postgres {
        let mut db = app.postgres().await;
        loop {
            let (running,): (i64,) = sqlx::query_as(
                "select count(*) from pg_stat_activity \
                 where datname = current_database() and pid <> pg_backend_pid() \
                 and state = 'active' and query like '%like lower%'",
            )
            .fetch_one(&mut db)
            .await
            .expect("pg_stat_activity");
            if running == 0 {
                break;
            }
            assert!(
                left_at.elapsed() < Duration::from_secs(3),
                "the abandoned search still runs on the server"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// A long deadline, so that only the per-user slots limit the slow searches.
fn long_deadline() -> Vec<(&'static str, &'static str)> {
    vec![(DATABASE_STATEMENT_TIMEOUT_MS, "120000")]
}

async fn one_user_runs_at_most_two_searches_at_once(app: TestApp) {
    // Enough rows that each search outlasts the third one's five-second wait on an idle machine.
    let slow_rows = match app.backend {
        Backend::Sqlite => 10_000,
        Backend::Postgres => 40_000,
    };
    app.seed_tasks(ALICE, slow_rows, SLOW_TITLE, &slow_description())
        .await;
    let needle = app.create_task(BOB, "bob's needle").await;
    let slow_path = format!("{}?q={}", tasks_path(ALICE), slow_keyword());
    let started = Instant::now();
    let searches: Vec<_> = (0..3)
        .map(|_| tokio::spawn(app.signed(ALICE, Method::GET, &slow_path).send()))
        .collect();

    // Another user's search is not held up by them.
    let (found, _) = app.list(BOB, "?q=needle").await;
    assert_eq!(ids(&found), ids(&[needle]));
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );

    // Two run (for many seconds); the third waits for a slot and is refused after five.
    let (first, _, running) = futures::future::select_all(searches).await;
    let refused = first.expect("request task").expect("a reply");
    assert_eq!(refused.status(), 429);
    assert_eq!(
        refused.headers().get("retry-after").map(|v| v.as_bytes()),
        Some(&b"1"[..])
    );
    assert!(started.elapsed() >= Duration::from_secs(5));
    let body: Value = refused.json().await.expect("JSON body");
    assert_eq!(
        body,
        detail("Too many searches at once; try again when one has finished")
    );
    for search in running {
        search.abort();
    }
}

/// `%`-encodes everything but ASCII letters and digits.
fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|byte| {
            if byte.is_ascii_alphanumeric() {
                (byte as char).to_string()
            } else {
                format!("%{byte:02X}")
            }
        })
        .collect()
}

/// One connection, so that every search runs in the server process whose statistics are read.
fn one_connection() -> Vec<(&'static str, &'static str)> {
    vec![(DATABASE_MAX_CONNECTIONS, "1")]
}

backend_tests!(search_finds_tasks_after_creates_updates_and_deletes);

backend_tests!(env = one_connection; search_reads_the_trigram_index);

backend_tests!(env = short_deadline; a_statement_past_its_deadline_is_stopped_with_a_503);

backend_tests!(env = one_connection_long_deadline; a_search_whose_client_went_away_stops);

backend_tests!(env = long_deadline; one_user_runs_at_most_two_searches_at_once);
