//! No reply may be kept by a cache: every one, success or error, whichever layer wrote it (a
//! handler, an extractor, a fallback), says `Cache-Control: no-store`. The 500 and 503 replies
//! are checked where a test makes the database fail (`operations`, `search`). Every test runs on
//! SQLite and on PostgreSQL.

use reqwest::Method;
use serde_json::json;

use crate::support::{ALICE, BOB, Reply, TestApp, backend_tests, send, task_path, tasks_path};

#[track_caller]
fn assert_not_cacheable(reply: &Reply, what: &str, status: u16) {
    assert_eq!(reply.status, status, "{what}: {}", reply.text);
    assert_eq!(
        reply.header("cache-control"),
        Some("no-store"),
        "{what} ({status})"
    );
}

async fn every_task_endpoint_says_no_store(app: TestApp) {
    let created = app.post_task(ALICE, json!({"title": "private"})).await;
    assert_not_cacheable(&created, "create", 201);
    let task = created.json();
    let path = task_path(ALICE, &task);
    for (what, method, target, body, status) in [
        ("list", Method::GET, tasks_path(ALICE), None, 200),
        (
            "search",
            Method::GET,
            format!("{}?q=priv", tasks_path(ALICE)),
            None,
            200,
        ),
        ("get", Method::GET, path.clone(), None, 200),
        (
            "replace",
            Method::PUT,
            path.clone(),
            Some(json!({"title": "still private"})),
            200,
        ),
        (
            "complete",
            Method::PATCH,
            format!("{path}/complete"),
            None,
            200,
        ),
        ("delete", Method::DELETE, path.clone(), None, 204),
    ] {
        let reply = app.call(ALICE, method, &target, body).await;
        assert_not_cacheable(&reply, what, status);
    }
}

async fn every_error_says_no_store(app: TestApp) {
    let task = app.create_task(ALICE, "private").await;
    let path = task_path(ALICE, &task);
    let unsigned = send(app.client().get(app.url(&tasks_path(ALICE)))).await;
    assert_not_cacheable(&unsigned, "no assertion", 401);
    let other_user = app.call(BOB, Method::GET, &tasks_path(ALICE), None).await;
    assert_not_cacheable(&other_user, "another user's path", 403);
    let missing = app
        .call(
            ALICE,
            Method::GET,
            &format!("{}/999999", tasks_path(ALICE)),
            None,
        )
        .await;
    assert_not_cacheable(&missing, "missing task", 404);
    let no_route = app
        .call(ALICE, Method::GET, &format!("{path}/nowhere"), None)
        .await;
    assert_not_cacheable(&no_route, "unknown route", 404);
    let wrong_method = app.call(ALICE, Method::POST, &path, None).await;
    assert_not_cacheable(&wrong_method, "wrong method", 405);
    let huge = app
        .post_task(
            ALICE,
            json!({"title": "t", "description": "x".repeat(70 * 1024)}),
        )
        .await;
    assert_not_cacheable(&huge, "body over the limit", 413);
    let form = send(
        app.signed(ALICE, Method::POST, &tasks_path(ALICE))
            .header("content-type", "application/x-www-form-urlencoded")
            .body("title=t"),
    )
    .await;
    assert_not_cacheable(&form, "not JSON", 415);
    let bad_body = app.post_task(ALICE, json!({"title": ""})).await;
    assert_not_cacheable(&bad_body, "invalid body", 422);
    let bad_query = app
        .list_reply(ALICE, &format!("?q={}", "x".repeat(201)))
        .await;
    assert_not_cacheable(&bad_query, "keyword too long", 422);
    let bad_id = app
        .call(
            ALICE,
            Method::GET,
            &format!("{}/abc", tasks_path(ALICE)),
            None,
        )
        .await;
    assert_not_cacheable(&bad_id, "invalid task id", 422);
}

async fn operator_endpoints_say_no_store(app: TestApp) {
    for path in ["/healthz", "/readyz", "/metrics", "/openapi.json"] {
        let reply = send(app.client().get(app.url(path))).await;
        assert_not_cacheable(&reply, path, 200);
    }
}

backend_tests!(
    every_task_endpoint_says_no_store,
    every_error_says_no_store,
    operator_endpoints_say_no_store
);
