//! The list: filters, sort keys, pages and their validation, with the exact JSON shapes the
//! seed's frontend reads. Every test runs on SQLite and on PostgreSQL.

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{ALICE, TestApp, backend_tests, task_path, validation};

fn ids(tasks: &[Value]) -> Vec<i64> {
    tasks
        .iter()
        .map(|task| task["id"].as_i64().expect("integer id"))
        .collect()
}

fn titles(tasks: &[Value]) -> Vec<&str> {
    tasks
        .iter()
        .map(|task| task["title"].as_str().expect("string title"))
        .collect()
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
    // Every page gives the same total: a full one, a short last one, one ending exactly at the
    // last task, the first page of all, and the same pages through a filter and a search.
    for (query, shown, expected_total) in [
        ("?limit=2&offset=3", 2, 5),
        ("?limit=2&offset=4", 1, 5),
        ("?limit=5", 5, 5),
        ("?limit=6", 5, 5),
        ("?limit=3&offset=4", 1, 5),
        ("?limit=1&offset=5", 0, 5),
        ("?q=task&limit=2&offset=4", 1, 5),
        ("?q=task&limit=2", 2, 5),
        ("?q=task%204&limit=2", 1, 1),
        ("?status=completed&limit=2", 0, 0),
        ("?status=completed&limit=2&offset=2", 0, 0),
        ("?status=pending&limit=4&offset=2", 3, 5),
    ] {
        let (page, total) = app.list(ALICE, query).await;
        assert_eq!(page.len(), shown, "{query}");
        assert_eq!(total, expected_total, "{query}");
    }
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
    // The keyword's bound, in characters (not bytes), after trimming.
    let longest = format!("%20{}%20", "%C3%A9".repeat(200));
    app.list_reply(ALICE, &format!("?q={longest}"))
        .await
        .expect_status(200);
    for too_long in ["x".repeat(201), "%C3%A9".repeat(201), "x".repeat(1000)] {
        let reply = app.list_reply(ALICE, &format!("?q={too_long}")).await;
        reply.expect_status(422);
        assert_eq!(
            reply.json(),
            validation(
                json!(["query", "q"]),
                "String should have at most 200 characters",
                "string_too_long"
            )
        );
    }
    let both = app.list_reply(ALICE, "?limit=0&offset=x").await;
    both.expect_status(422);
    assert_eq!(both.json()["detail"].as_array().map(Vec::len), Some(2));
}

backend_tests!(
    list_is_a_bare_array_newest_first_with_a_total,
    list_filters_by_status_and_keyword,
    list_sorts_by_each_key,
    list_pages_with_limit_and_offset,
    list_rejects_bad_parameters
);
