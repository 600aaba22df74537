//! No user reads or changes another user's tasks: through the other user's path the service
//! answers 403, through their own path another user's task id is a plain 404, and the owner's
//! data is byte-for-byte unchanged afterwards.

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{ALICE, BOB, TestApp, backend_tests, detail, task_path, tasks_path};

/// Every operation, as (method, path under `/api/{user}/tasks`, body).
fn operations(task_id: &Value) -> Vec<(Method, String, Option<Value>)> {
    vec![
        (Method::GET, String::new(), None),
        (
            Method::POST,
            String::new(),
            Some(json!({"title": "planted"})),
        ),
        (Method::GET, format!("/{task_id}"), None),
        (
            Method::PUT,
            format!("/{task_id}"),
            Some(json!({"title": "hijacked"})),
        ),
        (Method::PATCH, format!("/{task_id}/complete"), None),
        (Method::DELETE, format!("/{task_id}"), None),
    ]
}

async fn another_user_gets_403_through_the_owners_path(app: TestApp) {
    let task = app
        .create_task_with(ALICE, json!({"title": "private", "description": "secret"}))
        .await;
    let before = app.snapshot(ALICE).await;
    for (method, suffix, body) in operations(&task["id"]) {
        let path = format!("{}{suffix}", tasks_path(ALICE));
        let reply = app.call(BOB, method.clone(), &path, body).await;
        reply.expect_status(403);
        assert_eq!(
            reply.json(),
            detail("Not authorized to access this user's tasks"),
            "{method} {path}"
        );
    }
    assert_eq!(app.snapshot(ALICE).await, before);
    assert_eq!(app.list(BOB, "").await.1, 0);
}

async fn another_users_task_is_a_404_through_ones_own_path(app: TestApp) {
    let task = app
        .create_task_with(ALICE, json!({"title": "private", "description": "secret"}))
        .await;
    let before = app.snapshot(ALICE).await;
    for (method, suffix, body) in operations(&task["id"]) {
        let path = format!("{}{suffix}", tasks_path(BOB));
        let reply = app.call(BOB, method.clone(), &path, body).await;
        if suffix.is_empty() && method == Method::GET {
            // Bob's own collection holds none of Alice's tasks.
            reply.expect_status(200);
            assert_eq!(reply.text, "[]");
        } else if suffix.is_empty() {
            // And what he creates is his.
            reply.expect_status(201);
            assert_eq!(reply.json()["user_id"], BOB);
        } else {
            reply.expect_status(404);
            assert_eq!(reply.json(), detail("Task not found"), "{method} {path}");
        }
    }
    // Indistinguishable from a task that never existed.
    let never = app
        .call(
            BOB,
            Method::GET,
            &format!("{}/424242", tasks_path(BOB)),
            None,
        )
        .await;
    let someone_elses = app
        .call(BOB, Method::GET, &task_path(BOB, &task), None)
        .await;
    assert_eq!(
        (never.status, never.text),
        (someone_elses.status, someone_elses.text)
    );

    assert_eq!(app.snapshot(ALICE).await, before);
    let (bobs, total) = app.list(BOB, "").await;
    assert_eq!(total, 1);
    assert_eq!(bobs[0]["user_id"], BOB);
    assert_eq!(bobs[0]["title"], "planted");
}

backend_tests!(
    another_user_gets_403_through_the_owners_path,
    another_users_task_is_a_404_through_ones_own_path
);
