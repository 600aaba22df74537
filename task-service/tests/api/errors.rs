//! Requests the service cannot read or route: every one gets a JSON error body, never axum's
//! plain text. Every test runs on SQLite and on PostgreSQL.

use reqwest::Method;
use serde_json::json;

use crate::support::{ALICE, TestApp, backend_tests, detail, tasks_path, validation};

async fn unreadable_bodies_get_json_errors(app: TestApp) {
    let path = tasks_path(ALICE);
    let raw = |body: &'static str, content_type: &'static str| {
        app.signed(ALICE, Method::POST, &path)
            .header("content-type", content_type)
            .body(body)
    };
    let broken = crate::support::send(raw("{\"title\": ", "application/json")).await;
    broken.expect_status(422);
    assert_eq!(
        broken.json(),
        validation(json!(["body"]), "JSON decode error", "json_invalid")
    );

    let not_object = crate::support::send(raw("[\"buy milk\"]", "application/json")).await;
    not_object.expect_status(422);
    assert_eq!(
        not_object.json(),
        validation(
            json!(["body"]),
            "Input should be a valid dictionary or object to extract fields from",
            "model_attributes_type"
        )
    );

    let empty = crate::support::send(raw("", "application/json")).await;
    empty.expect_status(422);
    assert_eq!(
        empty.json(),
        validation(json!(["body"]), "Field required", "missing")
    );

    let form =
        crate::support::send(raw("title=buy+milk", "application/x-www-form-urlencoded")).await;
    form.expect_status(415);
    assert_eq!(
        form.json(),
        detail("Expected a request body with Content-Type: application/json")
    );

    let huge = app
        .call(
            ALICE,
            Method::POST,
            &path,
            Some(json!({"title": "t", "description": "x".repeat(70 * 1024)})),
        )
        .await;
    huge.expect_status(413);
    assert_eq!(huge.json(), detail("Request body too large"));
    assert_eq!(huge.header("content-type"), Some("application/json"));

    let (_, total) = app.list(ALICE, "").await;
    assert_eq!(total, 0, "nothing was created");
}

async fn unknown_routes_and_methods_get_json_errors(app: TestApp) {
    for path in [
        "/",
        "/api",
        "/api/alice",
        "/api/alice/task",
        "/api/alice/tasks/1/done",
        "/docs",
    ] {
        let reply = app.call(ALICE, Method::GET, path, None).await;
        reply.expect_status(404);
        assert_eq!(reply.json(), detail("Not Found"), "{path}");
    }
    for (method, path) in [
        (Method::DELETE, tasks_path(ALICE)),
        (Method::PATCH, format!("{}/1", tasks_path(ALICE))),
        (Method::GET, format!("{}/1/complete", tasks_path(ALICE))),
        (Method::POST, "/healthz".to_owned()),
    ] {
        let reply = app.call(ALICE, method.clone(), &path, None).await;
        reply.expect_status(405);
        assert_eq!(
            reply.json(),
            detail("Method Not Allowed"),
            "{method} {path}"
        );
    }
}

backend_tests!(
    unreadable_bodies_get_json_errors,
    unknown_routes_and_methods_get_json_errors
);
