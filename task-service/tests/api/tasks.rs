//! The task endpoints except the list (in `listing`): success and error paths, with the exact
//! JSON shapes the seed's frontend reads. Every test runs on SQLite and on PostgreSQL.

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{ALICE, TestApp, backend_tests, detail, task_path, tasks_path, validation};

/// The keys of a task, in the order they are sent.
const TASK_KEYS: [&str; 9] = [
    "id",
    "user_id",
    "title",
    "description",
    "completed",
    "priority",
    "due_date",
    "created_at",
    "updated_at",
];

fn keys(task: &Value) -> Vec<&str> {
    task.as_object()
        .expect("a task is an object")
        .keys()
        .map(String::as_str)
        .collect()
}

/// A timestamp field, parsed: RFC 3339 text with varying fraction digits does not compare as text.
fn time(value: &Value) -> chrono::DateTime<chrono::FixedOffset> {
    chrono::DateTime::parse_from_rfc3339(value.as_str().expect("a timestamp string"))
        .expect("an RFC 3339 timestamp")
}

async fn create_returns_201_with_location_and_the_task(app: TestApp) {
    let reply = app
        .post_task(
            ALICE,
            json!({
                "title": "  buy milk  ",
                "description": "2 litres",
                "priority": "high",
                "due_date": "2026-12-01T10:00:00+02:00",
                // Never mass-assigned:
                "id": 999_999,
                "user_id": "mallory",
                "completed": true,
                "created_at": "2000-01-01T00:00:00Z",
            }),
        )
        .await;
    reply.expect_status(201);
    let task = reply.json();
    let mut sorted_keys = keys(&task);
    sorted_keys.sort_unstable();
    let mut expected_keys = TASK_KEYS.to_vec();
    expected_keys.sort_unstable();
    assert_eq!(sorted_keys, expected_keys);
    assert_ne!(task["id"], 999_999);
    assert_eq!(task["user_id"], ALICE);
    assert_eq!(task["title"], "buy milk");
    assert_eq!(task["description"], "2 litres");
    assert_eq!(task["completed"], false);
    assert_eq!(task["priority"], "high");
    assert_eq!(task["due_date"], "2026-12-01T08:00:00Z");
    assert_eq!(task["created_at"], task["updated_at"]);
    let created = time(&task["created_at"]);
    assert!(created.offset().local_minus_utc() == 0, "created_at is UTC");
    assert!((chrono::Utc::now() - created.to_utc()).num_seconds().abs() < 60);
    assert_eq!(
        reply.header("location"),
        Some(format!("/api/{ALICE}/tasks/{}", task["id"]).as_str())
    );
    assert_eq!(reply.header("content-type"), Some("application/json"));
    // The stored task reads back identically.
    let fetched = app
        .call(ALICE, Method::GET, &task_path(ALICE, &task), None)
        .await;
    fetched.expect_status(200);
    assert_eq!(fetched.json(), task);
}

async fn create_applies_defaults(app: TestApp) {
    let task = app.create_task(ALICE, "walk the dog").await;
    assert_eq!(task["description"], Value::Null);
    assert_eq!(task["due_date"], Value::Null);
    assert_eq!(task["priority"], "medium");
    assert_eq!(task["completed"], false);
    // A date alone, as an HTML date input sends it, is its midnight UTC.
    let dated = app
        .create_task_with(
            ALICE,
            json!({"title": "t", "due_date": "2026-03-04", "description": null}),
        )
        .await;
    assert_eq!(dated["due_date"], "2026-03-04T00:00:00Z");
    assert_eq!(dated["description"], Value::Null);
}

async fn title_limits_are_counted_in_characters(app: TestApp) {
    for unit in ["a", "é", "🦀"] {
        let exactly = unit.repeat(200);
        let task = app.create_task(ALICE, &exactly).await;
        assert_eq!(task["title"], exactly.as_str());
        let reply = app
            .post_task(ALICE, json!({"title": unit.repeat(201)}))
            .await;
        reply.expect_status(422);
        assert_eq!(
            reply.json(),
            validation(
                json!(["body", "title"]),
                "String should have at most 200 characters",
                "string_too_long"
            )
        );
    }
    let (_, total) = app.list(ALICE, "").await;
    assert_eq!(total, 3);
}

async fn create_reports_every_invalid_field(app: TestApp) {
    let reply = app
        .post_task(
            ALICE,
            json!({
                "title": "   ",
                "description": "d".repeat(1001),
                "priority": "urgent",
                "due_date": "tomorrow",
            }),
        )
        .await;
    reply.expect_status(422);
    assert_eq!(
        reply.json(),
        json!({"detail": [
            {"loc": ["body", "title"], "msg": "String should have at least 1 character", "type": "string_too_short"},
            {"loc": ["body", "description"], "msg": "String should have at most 1000 characters", "type": "string_too_long"},
            {"loc": ["body", "priority"], "msg": "Input should be 'low', 'medium' or 'high'", "type": "enum"},
            {"loc": ["body", "due_date"], "msg": "Input should be a valid datetime, expected RFC 3339 such as 2026-01-31T17:00:00Z", "type": "datetime_parsing"},
        ]})
    );
    let missing = app.post_task(ALICE, json!({"description": "x"})).await;
    missing.expect_status(422);
    assert_eq!(
        missing.json(),
        validation(json!(["body", "title"]), "Field required", "missing")
    );
    let wrong_type = app.post_task(ALICE, json!({"title": 5})).await;
    wrong_type.expect_status(422);
    assert_eq!(
        wrong_type.json(),
        validation(
            json!(["body", "title"]),
            "Input should be a valid string",
            "string_type"
        )
    );
    // A description of exactly 1000 characters is fine.
    app.create_task_with(
        ALICE,
        json!({"title": "t", "description": "ü".repeat(1000)}),
    )
    .await;
    let (_, total) = app.list(ALICE, "").await;
    assert_eq!(total, 1);
}

async fn get_answers_404_for_a_missing_task_and_422_for_a_bad_id(app: TestApp) {
    let missing = app
        .call(
            ALICE,
            Method::GET,
            &format!("{}/424242", tasks_path(ALICE)),
            None,
        )
        .await;
    missing.expect_status(404);
    assert_eq!(missing.json(), detail("Task not found"));
    for bad in ["abc", "1.5", "99999999999999999999"] {
        let reply = app
            .call(
                ALICE,
                Method::GET,
                &format!("{}/{bad}", tasks_path(ALICE)),
                None,
            )
            .await;
        reply.expect_status(422);
        assert_eq!(
            reply.json(),
            validation(
                json!(["path", "task_id"]),
                "Input should be a valid integer, unable to parse string as an integer",
                "int_parsing"
            ),
            "{bad}"
        );
    }
}

async fn put_changes_only_the_fields_sent(app: TestApp) {
    let task = app
        .create_task_with(
            ALICE,
            json!({"title": "draft", "description": "notes", "due_date": "2026-06-01T12:00:00Z"}),
        )
        .await;
    let path = task_path(ALICE, &task);
    let reply = app
        .call(ALICE, Method::PUT, &path, Some(json!({"priority": "low", "id": 7, "user_id": "mallory", "created_at": "2000-01-01T00:00:00Z"})))
        .await;
    reply.expect_status(200);
    let updated = reply.json();
    assert_eq!(updated["priority"], "low");
    for unchanged in [
        "id",
        "user_id",
        "title",
        "description",
        "completed",
        "due_date",
        "created_at",
    ] {
        assert_eq!(updated[unchanged], task[unchanged], "{unchanged}");
    }
    assert!(
        time(&updated["updated_at"]) > time(&task["updated_at"]),
        "updated_at refreshed"
    );

    let cleared = app
        .call(ALICE, Method::PUT, &path, Some(json!({"title": " final ", "description": null, "due_date": null, "completed": true})))
        .await;
    cleared.expect_status(200);
    let cleared = cleared.json();
    assert_eq!(cleared["title"], "final");
    assert_eq!(cleared["description"], Value::Null);
    assert_eq!(cleared["due_date"], Value::Null);
    assert_eq!(cleared["completed"], true);
    assert_eq!(cleared["priority"], "low");

    let fetched = app.call(ALICE, Method::GET, &path, None).await;
    assert_eq!(fetched.json(), cleared);
}

async fn put_rejects_invalid_fields_and_missing_tasks(app: TestApp) {
    let task = app.create_task(ALICE, "keep me").await;
    let path = task_path(ALICE, &task);
    for (body, loc, msg, kind) in [
        (
            json!({"title": null}),
            "title",
            "Input should be a valid string",
            "string_type",
        ),
        (
            json!({"title": "x".repeat(201)}),
            "title",
            "String should have at most 200 characters",
            "string_too_long",
        ),
        // Neither backend stores NUL faithfully (a 500 before it was refused here).
        (
            json!({"title": "\u{0}"}),
            "title",
            "String should not contain NUL characters",
            "string_pattern_mismatch",
        ),
        (
            json!({"description": "a\u{0}b"}),
            "description",
            "String should not contain NUL characters",
            "string_pattern_mismatch",
        ),
        (
            json!({"completed": "yes"}),
            "completed",
            "Input should be a valid boolean",
            "bool_type",
        ),
        (
            json!({"priority": null}),
            "priority",
            "Input should be 'low', 'medium' or 'high'",
            "enum",
        ),
        (
            json!({"due_date": 1_700_000_000}),
            "due_date",
            "Input should be a valid datetime",
            "datetime_type",
        ),
    ] {
        let reply = app
            .call(ALICE, Method::PUT, &path, Some(body.clone()))
            .await;
        reply.expect_status(422);
        assert_eq!(
            reply.json(),
            validation(json!(["body", loc]), msg, kind),
            "{body}"
        );
    }
    let fetched = app.call(ALICE, Method::GET, &path, None).await;
    assert_eq!(fetched.json(), task, "nothing changed");
    let missing = app
        .call(
            ALICE,
            Method::PUT,
            &format!("{}/424242", tasks_path(ALICE)),
            Some(json!({"title": "x"})),
        )
        .await;
    missing.expect_status(404);
    assert_eq!(missing.json(), detail("Task not found"));
}

async fn delete_answers_204_then_404(app: TestApp) {
    let task = app.create_task(ALICE, "temporary").await;
    let keep = app.create_task(ALICE, "permanent").await;
    let path = task_path(ALICE, &task);
    let reply = app.call(ALICE, Method::DELETE, &path, None).await;
    reply.expect_status(204);
    assert_eq!(reply.text, "");
    for method in [Method::GET, Method::DELETE] {
        let gone = app.call(ALICE, method, &path, None).await;
        gone.expect_status(404);
        assert_eq!(gone.json(), detail("Task not found"));
    }
    let (tasks, _) = app.list(ALICE, "").await;
    assert_eq!(tasks, vec![keep]);
}

async fn patch_complete_toggles_or_sets(app: TestApp) {
    let task = app.create_task(ALICE, "toggle me").await;
    let path = format!("{}/complete", task_path(ALICE, &task));
    let mut previous_update = task["updated_at"].clone();
    for (body, expected) in [
        (None, true),
        (None, false),
        (Some(json!({})), true),
        (Some(json!({"completed": true})), true),
        (Some(json!({"completed": false})), false),
        (Some(json!({"completed": false})), false),
    ] {
        let reply = app.call(ALICE, Method::PATCH, &path, body.clone()).await;
        reply.expect_status(200);
        let updated = reply.json();
        assert_eq!(updated["completed"], expected, "{body:?}");
        assert!(time(&updated["updated_at"]) >= time(&previous_update));
        previous_update = updated["updated_at"].clone();
    }
    let invalid = app
        .call(
            ALICE,
            Method::PATCH,
            &path,
            Some(json!({"completed": "yes"})),
        )
        .await;
    invalid.expect_status(422);
    assert_eq!(
        invalid.json(),
        validation(
            json!(["body", "completed"]),
            "Input should be a valid boolean",
            "bool_type"
        )
    );
    let missing = app
        .call(
            ALICE,
            Method::PATCH,
            &format!("{}/424242/complete", tasks_path(ALICE)),
            None,
        )
        .await;
    missing.expect_status(404);
    assert_eq!(missing.json(), detail("Task not found"));
}

backend_tests!(
    create_returns_201_with_location_and_the_task,
    create_applies_defaults,
    title_limits_are_counted_in_characters,
    create_reports_every_invalid_field,
    get_answers_404_for_a_missing_task_and_422_for_a_bad_id,
    put_changes_only_the_fields_sent,
    put_rejects_invalid_fields_and_missing_tasks,
    delete_answers_204_then_404,
    patch_complete_toggles_or_sets
);
