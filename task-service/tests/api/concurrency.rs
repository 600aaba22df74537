//! Many writers at once: SQLite's WAL and busy timeout, and PostgreSQL's pool, must absorb them
//! without an error.

use std::collections::HashSet;

use reqwest::Method;
use serde_json::json;

use crate::support::{ALICE, TestApp, backend_tests, tasks_path};

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
    for reply in &replies {
        reply.expect_status(201);
        ids.insert(reply.json()["id"].as_i64().expect("integer id"));
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
