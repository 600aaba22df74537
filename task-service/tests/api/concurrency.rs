//! Many writers at once: SQLite's WAL and busy timeout, and PostgreSQL's pool, must absorb them
//! without an error.

use std::collections::HashSet;

use reqwest::Method;
use serde_json::json;

use std::time::Duration;

use crate::support::{ALICE, Backend, TestApp, backend_tests, run_on, tasks_path};

const WRITERS: usize = 100;

async fn one_hundred_concurrent_creates_all_succeed(app: TestApp) {
    let path = tasks_path(ALICE);
    let replies = futures::future::join_all((0..WRITERS).map(|n| {
        app.call(
            ALICE,
            Method::POST,
            &path,
            Some(json!({"title": format!("task {n}")})),
        )
    }))
    .await;
    let mut ids = HashSet::new();
    for (n, reply) in replies.iter().enumerate() {
        reply.expect_status(201);
        let task = reply.json();
        // On PostgreSQL concurrent creates are inserted together: each reply is its own row.
        assert_eq!(task["title"], format!("task {n}"), "{task}");
        let id = task["id"].as_i64().expect("integer id");
        let location = reply.headers["location"].to_str().expect("location");
        assert_eq!(location, format!("{path}/{id}"));
        ids.insert(id);
    }
    assert_eq!(ids.len(), WRITERS, "ids are unique");
    let (tasks, total) = app.list(ALICE, "?limit=500").await;
    assert_eq!(total, i64::try_from(WRITERS).expect("small"));
    let listed: HashSet<i64> = tasks
        .iter()
        .map(|task| task["id"].as_i64().expect("id"))
        .collect();
    assert_eq!(listed, ids);
}

backend_tests!(one_hundred_concurrent_creates_all_succeed);

/// The service's sessions on its database: (pid, the last statement each ran).
async fn service_sessions(app: &TestApp) -> Vec<(i32, String)> {
    let mut db = app.postgres().await;
    sqlx::query_as(
        "select pid, query from pg_stat_activity \
         where datname = current_database() and pid <> pg_backend_pid() \
         and backend_type = 'client backend' order by pid",
    )
    .fetch_all(&mut db)
    .await
    .expect("pg_stat_activity")
}

/// One round trip per operation: a connection goes back to the pool with no check of its own
/// (the last statement a session ran is the request's), and the same sessions serve request
/// after request.
#[tokio::test]
async fn postgres_connections_are_reused_without_a_check_per_request() {
    run_on(Backend::Postgres, |app| async move {
        app.create_task(ALICE, "first").await;
        let before = service_sessions(&app).await;
        assert!(!before.is_empty(), "the service holds a session");
        for _ in 0..20 {
            app.list_reply(ALICE, "").await.expect_status(200);
        }
        let after = service_sessions(&app).await;
        let pids = |sessions: &[(i32, String)]| -> Vec<i32> {
            sessions.iter().map(|(pid, _)| *pid).collect()
        };
        assert_eq!(pids(&after), pids(&before), "no session was replaced");
        assert!(
            after.iter().any(|(_, query)| query.contains("from tasks")),
            "the last statement is a request's: {after:?}"
        );
        assert!(
            after
                .iter()
                .all(|(_, query)| !query.to_lowercase().contains("ping")),
            "no check after the request: {after:?}"
        );
    })
    .await;
}

/// A session the server ends (a restart, an administrator) is not handed out again once it
/// has idled: the pool checks it, finds it gone and opens another; a request that meets a
/// session cut while busy gets a 503, and the session is dropped.
#[tokio::test]
async fn postgres_connections_cut_by_the_server_are_replaced() {
    run_on(Backend::Postgres, |app| async move {
        app.create_task(ALICE, "first").await;
        let terminate = || async {
            let mut db = app.postgres().await;
            sqlx::query(
                "select pg_terminate_backend(pid) from pg_stat_activity \
                 where datname = current_database() and pid <> pg_backend_pid() \
                 and backend_type = 'client backend'",
            )
            .execute(&mut db)
            .await
            .expect("terminate");
        };
        terminate().await;
        tokio::time::sleep(Duration::from_millis(1200)).await;
        app.list_reply(ALICE, "").await.expect_status(200);

        terminate().await;
        let first = app.list_reply(ALICE, "").await;
        assert!(
            [200, 503].contains(&first.status),
            "a cut session gives a 503 at worst: {first:?}"
        );
        for _ in 0..3 {
            app.list_reply(ALICE, "").await.expect_status(200);
        }
    })
    .await;
}
