//! Defends the task service against hostile bodies: malformed, deeply nested, oversized or
//! full of control characters, each is refused with a 4xx or stored as sent, never a 500, and
//! the service stays healthy. Runs the real task service (SQLite and PostgreSQL) behind the
//! real gateway.

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::clients::User;
use crate::support::stack::assert_still_serving;

use crate::adversarial::task_service::System;

#[tokio::test]
async fn hostile_bodies_are_refused_with_a_4xx_and_the_service_stays_healthy() {
    let system = System::start().await;
    let alice = User::new(&system.gateway, "alice");
    let task = alice.create("target").await;
    let before = alice.snapshot().await;
    let nested = |depth: usize| format!("{}{}", "[".repeat(depth), "]".repeat(depth));
    let deep_object = format!(
        "{{\"title\": {}}}",
        "{\"a\":".repeat(10_000) + "1" + &"}".repeat(10_000)
    );
    let bodies: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "truncated object",
            b"{\"title\": \"x\"".to_vec(),
            "application/json",
        ),
        (
            "missing value",
            b"{\"title\":}".to_vec(),
            "application/json",
        ),
        (
            "trailing garbage",
            b"{\"title\": \"x\"} x".to_vec(),
            "application/json",
        ),
        ("bare word", b"nul".to_vec(), "application/json"),
        (
            "invalid UTF-8",
            b"{\"title\": \"\xff\xfe\"}".to_vec(),
            "application/json",
        ),
        (
            "lone surrogate",
            b"{\"title\": \"\\ud800\"}".to_vec(),
            "application/json",
        ),
        (
            "duplicate keys",
            b"{\"title\": \"a\", \"title\": 5}".to_vec(),
            "application/json",
        ),
        ("not an object", b"[\"title\"]".to_vec(), "application/json"),
        ("a string", b"\"title\"".to_vec(), "application/json"),
        (
            "10 000 nested arrays",
            nested(10_000).into_bytes(),
            "application/json",
        ),
        (
            "100 000 nested arrays",
            nested(100_000).into_bytes(),
            "application/json",
        ),
        (
            "10 000 nested objects",
            deep_object.into_bytes(),
            "application/json",
        ),
        (
            "title of the wrong type",
            b"{\"title\": {\"$ne\": null}}".to_vec(),
            "application/json",
        ),
        (
            "title of 201 characters",
            json!({"title": "t".repeat(201)}).to_string().into_bytes(),
            "application/json",
        ),
        (
            "huge number",
            b"{\"title\": \"x\", \"priority\": 1e999999}".to_vec(),
            "application/json",
        ),
        (
            "form-encoded",
            b"title=x".to_vec(),
            "application/x-www-form-urlencoded",
        ),
        (
            "JSON without a JSON type",
            b"{\"title\": \"x\"}".to_vec(),
            "text/plain",
        ),
        (
            "1 MiB",
            json!({"title": "x", "description": "d".repeat(1 << 20)})
                .to_string()
                .into_bytes(),
            "application/json",
        ),
        ("8 MiB", vec![b' '; 8 << 20], "application/json"),
    ];
    for (name, body, content_type) in bodies {
        for (method, path) in [
            (Method::POST, String::new()),
            (Method::PUT, format!("/{task}")),
        ] {
            let response = alice
                .gateway
                .client
                .request(
                    method.clone(),
                    alice.gateway.url(&format!("/api/alice/tasks{path}")),
                )
                .bearer_auth(&alice.token)
                .header("content-type", content_type)
                .body(body.clone())
                .send()
                .await;
            // A server may answer 413 and close before reading an oversized body; then the
            // client sees its write fail, which is a refusal too.
            let Ok(response) = response else {
                assert!(name.ends_with("MiB"), "{name}: {response:?}");
                continue;
            };
            let status = response.status().as_u16();
            assert!(
                matches!(status, 400 | 413 | 415 | 422),
                "{method} {name}: {status}"
            );
            let detail: Value = response.json().await.expect("JSON error");
            assert!(!detail["detail"].is_null(), "{name}");
        }
        assert_still_serving(&system.gateway).await;
    }
    assert_eq!(
        alice.snapshot().await,
        before,
        "a refused body changed data"
    );
    // Method overrides in headers change nothing on the real service either.
    let response = system
        .gateway
        .client
        .post(system.gateway.url("/api/alice/tasks"))
        .bearer_auth(&alice.token)
        .header("x-http-method-override", "DELETE")
        .json(&json!({"title": "created, not deleted"}))
        .send()
        .await
        .expect("reachable");
    assert_eq!(response.status(), 201);
    assert_still_serving(&system.gateway).await;
}

/// Text fields holding control characters, NUL included (which PostgreSQL's `text` cannot
/// store), in every writable field: each is stored or refused with a 4xx, never a 500.
async fn control_characters_are_stored_or_refused(system: &System) {
    let alice = User::new(&system.gateway, "alice");
    let task = alice.create("plain").await;
    for text in [
        "a\u{0}b",
        "\u{0}",
        "line\nbreak\r\n",
        "\u{1b}[31mred",
        "\u{7f}\u{85}\u{2028}",
    ] {
        for (method, path, body) in [
            (Method::POST, String::new(), json!({"title": text})),
            (
                Method::POST,
                String::new(),
                json!({"title": "t", "description": text}),
            ),
            (Method::PUT, format!("/{task}"), json!({"title": text})),
            (
                Method::PUT,
                format!("/{task}"),
                json!({"description": text}),
            ),
            (
                Method::GET,
                format!("?q={}", text.replace('\u{0}', "%00")),
                Value::Null,
            ),
        ] {
            let body = (!body.is_null()).then_some(body);
            let response = alice.call(method.clone(), &path, body).await;
            let status = response.status().as_u16();
            assert!(
                matches!(status, 200 | 201 | 400 | 422),
                "{method} {path} with {text:?}: {status} {}",
                response.text().await.unwrap_or_default()
            );
        }
    }
    assert_still_serving(&system.gateway).await;
}

#[tokio::test]
async fn control_characters_in_text_fields_never_give_a_500_on_sqlite() {
    control_characters_are_stored_or_refused(&System::start().await).await;
}

#[tokio::test]
async fn control_characters_in_text_fields_never_give_a_500_on_postgres() {
    let Some((system, database)) = System::start_on_postgres().await else {
        return;
    };
    control_characters_are_stored_or_refused(&system).await;
    system.tasks.stop().await;
    drop(database);
}
