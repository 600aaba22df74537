//! What operators and client generators rely on: health, readiness, metrics, request ids, the
//! OpenAPI document, and a graceful stop.

use std::collections::BTreeSet;

use common::headers::{GATEWAY_ASSERTION, USER_ID};
use reqwest::Method;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{
    ALICE, Backend, TestApp, backend_tests, detail, now_unix, run_on, send, tasks_path,
};

async fn health_and_readiness_answer(app: TestApp) {
    let health = send(app.client().get(app.url("/healthz"))).await;
    health.expect_status(200);
    assert_eq!(health.json(), serde_json::json!({"status": "ok"}));
    let ready = send(app.client().get(app.url("/readyz"))).await;
    ready.expect_status(200);
    assert_eq!(ready.json(), serde_json::json!({"status": "ready"}));
}

async fn metrics_use_route_templates_never_user_ids(app: TestApp) {
    let task = app.create_task(ALICE, "measured").await;
    app.call(
        ALICE,
        Method::GET,
        &format!("{}/{}", tasks_path(ALICE), task["id"]),
        None,
    )
    .await
    .expect_status(200);
    app.call(ALICE, Method::GET, "/nowhere", None)
        .await
        .expect_status(404);
    let reply = send(app.client().get(app.url("/metrics"))).await;
    reply.expect_status(200);
    assert!(
        reply
            .header("content-type")
            .is_some_and(|t| t.starts_with("text/plain"))
    );
    let text = reply.text;
    for expected in [
        r#"task_service_http_requests_total{method="POST",route="/api/{user_id}/tasks",status="201"} 1"#,
        r#"task_service_http_requests_total{method="GET",route="/api/{user_id}/tasks/{id}",status="200"} 1"#,
        r#"task_service_http_requests_total{method="GET",route="unmatched",status="404"} 1"#,
        r#"task_service_http_request_duration_seconds_count{method="POST",route="/api/{user_id}/tasks"} 1"#,
        r#"task_service_db_query_duration_seconds_count{operation="create_task"} 1"#,
        r#"task_service_db_query_duration_seconds_count{operation="get_task"} 1"#,
        r#"task_service_db_pool_connections{state="idle"}"#,
        r#"task_service_db_pool_connections{state="in_use"}"#,
        "task_service_db_errors_total 0",
    ] {
        assert!(text.contains(expected), "missing {expected} in:\n{text}");
    }
    assert!(
        !text.contains(ALICE),
        "a user id leaked into a label:\n{text}"
    );
}

async fn request_ids_are_kept_or_generated_and_returned(app: TestApp) {
    let kept = send(
        app.client()
            .get(app.url("/healthz"))
            .header("x-request-id", "gw-1234"),
    )
    .await;
    assert_eq!(kept.header("x-request-id"), Some("gw-1234"));
    let generated = send(app.signed(ALICE, Method::GET, &tasks_path(ALICE))).await;
    let id = generated
        .header("x-request-id")
        .expect("a generated request id");
    assert_eq!(id.len(), 36, "a UUID: {id}");
    // An id that would pollute the logs is replaced.
    let replaced = send(
        app.client()
            .get(app.url("/healthz"))
            .header("x-request-id", "a b\"c"),
    )
    .await;
    assert_ne!(replaced.header("x-request-id"), Some("a b\"c"));
    // Errors carry one too.
    let refused = send(app.client().get(app.url(&tasks_path(ALICE)))).await;
    refused.expect_status(401);
    assert!(refused.header("x-request-id").is_some());
}

backend_tests!(
    health_and_readiness_answer,
    metrics_use_route_templates_never_user_ids,
    request_ids_are_kept_or_generated_and_returned
);

#[tokio::test]
async fn readiness_fails_and_requests_get_json_errors_when_the_database_is_gone() {
    run_on(Backend::Postgres, |app: TestApp| async move {
        app.create_task(ALICE, "before the outage").await;
        app.drop_database().await;
        let ready = send(app.client().get(app.url("/readyz"))).await;
        ready.expect_status(503);
        assert_eq!(ready.json(), detail("Database unavailable"));
        let list = app.list_reply(ALICE, "").await;
        assert!(matches!(list.status, 500 | 503), "{}", list.status);
        assert!(
            list.json() == detail("Internal Server Error")
                || list.json() == detail("Service Unavailable"),
            "opaque error: {}",
            list.text
        );
        assert_eq!(list.header("cache-control"), Some("no-store"));
        let health = send(app.client().get(app.url("/healthz"))).await;
        health.expect_status(200);
    })
    .await;
}

/// `(METHOD, path)` of every operation in the document.
fn documented_operations(document: &Value) -> BTreeSet<(String, String)> {
    let mut operations = BTreeSet::new();
    for (path, item) in document["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("path item").keys() {
            operations.insert((method.to_uppercase(), path.clone()));
        }
    }
    operations
}

#[tokio::test]
async fn the_openapi_document_matches_the_routes() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let reply = send(app.client().get(app.url("/openapi.json"))).await;
    reply.expect_status(200);
    let document = reply.json();
    assert!(
        document["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1")),
        "{}",
        document["openapi"]
    );
    let operations = documented_operations(&document);
    let expected: BTreeSet<(String, String)> = [
        ("GET", "/api/{user_id}/tasks"),
        ("POST", "/api/{user_id}/tasks"),
        ("GET", "/api/{user_id}/tasks/{task_id}"),
        ("PUT", "/api/{user_id}/tasks/{task_id}"),
        ("DELETE", "/api/{user_id}/tasks/{task_id}"),
        ("PATCH", "/api/{user_id}/tasks/{task_id}/complete"),
    ]
    .into_iter()
    .map(|(method, path)| (method.to_owned(), path.to_owned()))
    .collect();
    assert_eq!(operations, expected);

    let concrete = |path: &str| path.replace("{user_id}", ALICE).replace("{task_id}", "1");
    for (method, path) in &operations {
        // A documented operation is served: it asks for the gateway's assertion rather than
        // answering a routing 404 or 405.
        let method = Method::from_bytes(method.as_bytes()).expect("method");
        let reply = send(
            app.client()
                .request(method.clone(), app.url(&concrete(path))),
        )
        .await;
        reply.expect_status(401);
    }
    let paths: BTreeSet<&String> = operations.iter().map(|(_, path)| path).collect();
    for path in paths {
        for method in ["GET", "POST", "PUT", "PATCH", "DELETE"] {
            if !operations.contains(&(method.to_owned(), path.clone())) {
                // And nothing undocumented is served on a documented path.
                let method = Method::from_bytes(method.as_bytes()).expect("method");
                let reply = send(
                    app.client()
                        .request(method.clone(), app.url(&concrete(path))),
                )
                .await;
                assert_eq!(reply.status, 405, "{method} {path}");
            }
        }
    }
    for schema in [
        "Task",
        "NewTask",
        "TaskChanges",
        "CompletionChange",
        "Priority",
        "ErrorMessage",
        "ValidationErrors",
    ] {
        assert!(
            document["components"]["schemas"][schema].is_object(),
            "schema {schema}"
        );
    }
}

#[tokio::test]
async fn shutdown_lets_an_in_flight_request_finish_then_stops() {
    let mut app = TestApp::spawn(Backend::Sqlite).await;
    let path = tasks_path(ALICE);
    let body = br#"{"title": "finished during shutdown"}"#;
    let assertion = app.assertion(
        &common::assertion::SigningSecret::new(crate::support::SECRET).expect("secret"),
        now_unix(),
        ALICE,
        &Method::POST,
        &path,
    );
    // A raw HTTP/1.1 request that waits for "100 Continue" before sending its body: the server
    // sends that only once the handler is reading the body, so the request is provably in flight.
    let mut stream = TcpStream::connect(app.address).await.expect("connect");
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {}\r\n{USER_ID}: {ALICE}\r\n{GATEWAY_ASSERTION}: {assertion}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nExpect: 100-continue\r\n\r\n",
        app.address,
        body.len()
    );
    stream
        .write_all(head.as_bytes())
        .await
        .expect("send the head");
    let mut interim = [0u8; 25];
    stream
        .read_exact(&mut interim)
        .await
        .expect("read 100 Continue");
    assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");

    let stopping = tokio::spawn(async move {
        let result = app.stop().await;
        (app, result)
    });
    stream.write_all(body).await.expect("send the body");
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .await
        .expect("read the response");
    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.1 201"), "{response}");

    let (app, result) = stopping.await.expect("stop task");
    assert!(result.is_ok(), "run returned {result:?}");
    assert!(
        TcpStream::connect(app.address).await.is_err(),
        "the listener is closed"
    );
}
