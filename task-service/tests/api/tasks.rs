//! The six endpoints: success and error paths, with the exact JSON shapes the seed's frontend
//! reads. Every test runs on SQLite and on PostgreSQL.

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

fn ids(tasks: &[Value]) -> Vec<i64> {
    tasks
        .iter()
        .map(|task| task["id"].as_i64().expect("integer id"))
        .collect()
}

/// A timestamp field, parsed: RFC 3339 text with varying fraction digits does not compare as text.
fn time(value: &Value) -> chrono::DateTime<chrono::FixedOffset> {
    chrono::DateTime::parse_from_rfc3339(value.as_str().expect("a timestamp string"))
        .expect("an RFC 3339 timestamp")
}

fn titles(tasks: &[Value]) -> Vec<&str> {
    tasks
        .iter()
        .map(|task| task["title"].as_str().expect("string title"))
        .collect()
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

async fn list_is_a_bare_array_newest_first_with_a_total(app: TestApp) {
    let (empty, total) = app.list(ALICE, "").await;
    assert!(empty.is_empty());
    assert_eq!(total, 0);
    let first = app.create_task(ALICE, "first").await;
    let second = app.create_task(ALICE, "second").await;
    let third = app.create_task(ALICE, "third").await;
    let (tasks, total) = app.list(ALICE, "").await;
    assert_eq!(total, 3);
    assert_eq!(tasks, vec![third.clone(), second.clone(), first.clone()]);
    let (oldest_first, _) = app.list(ALICE, "?order=asc").await;
    assert_eq!(ids(&oldest_first), ids(&[first, second, third]));
}

async fn list_filters_by_status_and_keyword(app: TestApp) {
    let milk = app
        .create_task_with(
            ALICE,
            json!({"title": "Buy MILK", "description": "semi-skimmed"}),
        )
        .await;
    let bread = app
        .create_task_with(
            ALICE,
            json!({"title": "bake bread", "description": "with Milk and 100% rye"}),
        )
        .await;
    let tax = app
        .create_task_with(ALICE, json!({"title": "file_taxes"}))
        .await;
    app.call(
        ALICE,
        Method::PATCH,
        &format!("{}/complete", task_path(ALICE, &bread)),
        None,
    )
    .await
    .expect_status(200);

    for (query, expected) in [
        ("?status=all", vec![&tax, &bread, &milk]),
        ("?status=pending", vec![&tax, &milk]),
        ("?status=completed", vec![&bread]),
        ("?status_filter=completed", vec![&bread]),
        ("?q=milk", vec![&bread, &milk]),
        ("?q=%20MiLk%20", vec![&bread, &milk]),
        ("?q=milk&status=pending", vec![&milk]),
        ("?q=100%25", vec![&bread]),
        ("?q=%25", vec![&bread]),
        ("?q=e_t", vec![&tax]),
        ("?q=nothing", vec![]),
    ] {
        let (tasks, total) = app.list(ALICE, query).await;
        let expected: Vec<i64> = expected
            .iter()
            .map(|task| task["id"].as_i64().expect("id"))
            .collect();
        assert_eq!(ids(&tasks), expected, "{query}");
        assert_eq!(
            total,
            i64::try_from(expected.len()).expect("small"),
            "{query}"
        );
    }
}

async fn list_sorts_by_each_key(app: TestApp) {
    let plain = |title: &str, priority: &str, due: Value| json!({"title": title, "priority": priority, "due_date": due});
    app.create_task_with(ALICE, plain("banana", "low", json!("2026-05-01T00:00:00Z")))
        .await;
    let apple = app
        .create_task_with(ALICE, plain("Apple", "high", Value::Null))
        .await;
    app.create_task_with(
        ALICE,
        plain("cherry", "medium", json!("2026-04-01T00:00:00Z")),
    )
    .await;
    // Touch "Apple" last, so it is the most recently updated.
    app.call(
        ALICE,
        Method::PUT,
        &task_path(ALICE, &apple),
        Some(json!({"description": "red"})),
    )
    .await
    .expect_status(200);

    for (query, expected) in [
        ("?sort=title", vec!["Apple", "banana", "cherry"]),
        ("?sort=title&order=desc", vec!["cherry", "banana", "Apple"]),
        ("?sort=priority", vec!["Apple", "cherry", "banana"]),
        (
            "?sort=priority&order=asc",
            vec!["banana", "cherry", "Apple"],
        ),
        ("?sort=due_date", vec!["cherry", "banana", "Apple"]),
        (
            "?sort=due_date&order=desc",
            vec!["banana", "cherry", "Apple"],
        ),
        ("?sort=created", vec!["cherry", "Apple", "banana"]),
        ("?sort=updated", vec!["Apple", "cherry", "banana"]),
    ] {
        let (tasks, _) = app.list(ALICE, query).await;
        assert_eq!(titles(&tasks), expected, "{query}");
    }
}

async fn list_pages_with_limit_and_offset(app: TestApp) {
    for n in 0..5 {
        app.create_task(ALICE, &format!("task {n}")).await;
    }
    let (page, total) = app.list(ALICE, "?order=asc&limit=2&offset=1").await;
    assert_eq!(titles(&page), ["task 1", "task 2"]);
    assert_eq!(total, 5);
    let (past_the_end, total) = app.list(ALICE, "?limit=2&offset=10").await;
    assert!(past_the_end.is_empty());
    assert_eq!(total, 5);
    let (all, _) = app.list(ALICE, "?limit=500").await;
    assert_eq!(all.len(), 5);
}

async fn list_rejects_bad_parameters(app: TestApp) {
    for (query, loc, msg, kind) in [
        (
            "?limit=0",
            "limit",
            "Input should be greater than or equal to 1",
            "greater_than_equal",
        ),
        (
            "?limit=501",
            "limit",
            "Input should be less than or equal to 500",
            "less_than_equal",
        ),
        (
            "?limit=ten",
            "limit",
            "Input should be a valid integer, unable to parse string as an integer",
            "int_parsing",
        ),
        (
            "?offset=-1",
            "offset",
            "Input should be greater than or equal to 0",
            "greater_than_equal",
        ),
        (
            "?status=done",
            "status",
            "Input should be 'all', 'pending' or 'completed'",
            "enum",
        ),
        (
            "?status_filter=done",
            "status_filter",
            "Input should be 'all', 'pending' or 'completed'",
            "enum",
        ),
        (
            "?sort=size",
            "sort",
            "Input should be 'created', 'updated', 'title', 'due_date' or 'priority'",
            "enum",
        ),
        (
            "?order=up",
            "order",
            "Input should be 'asc' or 'desc'",
            "enum",
        ),
    ] {
        let reply = app.list_reply(ALICE, query).await;
        reply.expect_status(422);
        assert_eq!(
            reply.json(),
            validation(json!(["query", loc]), msg, kind),
            "{query}"
        );
    }
    let long_keyword = app
        .list_reply(ALICE, &format!("?q={}", "x".repeat(1001)))
        .await;
    long_keyword.expect_status(422);
    assert_eq!(
        long_keyword.json(),
        validation(
            json!(["query", "q"]),
            "String should have at most 1000 characters",
            "string_too_long"
        )
    );
    let both = app.list_reply(ALICE, "?limit=0&offset=x").await;
    both.expect_status(422);
    assert_eq!(both.json()["detail"].as_array().map(Vec::len), Some(2));
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
    create_returns_201_with_location_and_the_task,
    create_applies_defaults,
    title_limits_are_counted_in_characters,
    create_reports_every_invalid_field,
    unreadable_bodies_get_json_errors,
    get_answers_404_for_a_missing_task_and_422_for_a_bad_id,
    list_is_a_bare_array_newest_first_with_a_total,
    list_filters_by_status_and_keyword,
    list_sorts_by_each_key,
    list_pages_with_limit_and_offset,
    list_rejects_bad_parameters,
    put_changes_only_the_fields_sent,
    put_rejects_invalid_fields_and_missing_tasks,
    delete_answers_204_then_404,
    patch_complete_toggles_or_sets,
    unknown_routes_and_methods_get_json_errors
);
