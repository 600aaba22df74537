//! Defends the task service and the data in it: it answers nothing without a fresh assertion
//! signed for exactly that request; a user can neither read nor change another's tasks with any
//! verb; fields a client must not set (`id`, `user_id`, timestamps) are ignored (hostile bodies
//! are [`super::hostile_bodies`]).
//! Runs the real task service on SQLite behind the real gateway.

use common::assertion::{AssertedRequest, SigningSecret, sign};
use common::headers::{GATEWAY_ASSERTION, USER_ID};
use reqwest::Method;
use serde_json::{Value, json};
use task_service::testing::PostgresTestDatabase;

use crate::support::clients::User;
use crate::support::servers::TaskService;
use crate::support::stack::{TestGateway, assert_still_serving};
use crate::support::{HMAC_SECRET, SIGNING_SECRET, now};

/// The real system: the task service on a fresh SQLite file, the gateway in front of it.
pub(super) struct System {
    _data: tempfile::TempDir,
    pub(super) tasks: TaskService,
    pub(super) gateway: TestGateway,
}

impl System {
    pub(super) async fn start() -> Self {
        let data = tempfile::tempdir().expect("temp dir");
        let tasks = TaskService::start(data.path()).await;
        let gateway = TestGateway::with_shared_secret(&tasks.url()).await;
        Self {
            _data: data,
            tasks,
            gateway,
        }
    }

    /// The same on a fresh PostgreSQL database; `None` when `TEST_POSTGRES_URL` is unset.
    pub(super) async fn start_on_postgres() -> Option<(Self, PostgresTestDatabase)> {
        let database = PostgresTestDatabase::create("gateway_test").await?;
        let tasks = TaskService::start_with_database(
            "127.0.0.1:0".parse().expect("address"),
            database.url.as_str(),
        )
        .await;
        let gateway = TestGateway::with_shared_secret(&tasks.url()).await;
        let system = Self {
            _data: tempfile::tempdir().expect("temp dir"),
            tasks,
            gateway,
        };
        Some((system, database))
    }

    /// A request straight to the task service, bypassing the gateway.
    pub(super) fn direct(&self, method: Method, target: &str) -> reqwest::RequestBuilder {
        self.gateway
            .client
            .request(method, format!("{}{target}", self.tasks.url()))
    }
}

/// An assertion header for `user`, `method` and `target`, signed with `secret` at `time`.
fn assertion(secret: &str, time: u64, method: &Method, target: &str, user: &str) -> String {
    sign(
        &SigningSecret::new(secret).expect("secret long enough"),
        time,
        &AssertedRequest {
            method: method.as_str(),
            path_and_query: target,
            user_id: user,
        },
    )
}

#[tokio::test]
async fn direct_requests_without_a_valid_assertion_are_401_and_change_nothing() {
    let system = System::start().await;
    let victim = User::new(&system.gateway, "victim");
    let task = victim.create("private").await;
    let before = victim.snapshot().await;

    let item = format!("/api/victim/tasks/{task}");
    let routes = [
        (Method::GET, "/api/victim/tasks".to_owned()),
        (Method::POST, "/api/victim/tasks".to_owned()),
        (Method::GET, item.clone()),
        (Method::PUT, item.clone()),
        (Method::DELETE, item.clone()),
        (Method::PATCH, format!("{item}/complete")),
    ];
    let other_secret = "another-signing-secret-0123456789abcdef";
    let mut refused = 0;
    for (method, target) in &routes {
        let now = now();
        let genuine_get = assertion(
            SIGNING_SECRET,
            now,
            &Method::GET,
            "/api/victim/tasks",
            "victim",
        );
        let forgeries: Vec<(&str, Vec<(&str, String)>)> = vec![
            ("no identity at all", vec![]),
            ("a user id alone", vec![(USER_ID, "victim".into())]),
            (
                "a user id and a garbage assertion",
                vec![
                    (USER_ID, "victim".into()),
                    (GATEWAY_ASSERTION, "t=1,v1=00".into()),
                ],
            ),
            (
                "signed with another secret",
                vec![
                    (USER_ID, "victim".into()),
                    (
                        GATEWAY_ASSERTION,
                        assertion(other_secret, now, method, target, "victim"),
                    ),
                ],
            ),
            (
                "signed with BETTER_AUTH_SECRET",
                vec![
                    (USER_ID, "victim".into()),
                    (
                        GATEWAY_ASSERTION,
                        assertion(HMAC_SECRET, now, method, target, "victim"),
                    ),
                ],
            ),
            (
                "expired",
                vec![
                    (USER_ID, "victim".into()),
                    (
                        GATEWAY_ASSERTION,
                        assertion(SIGNING_SECRET, now - 120, method, target, "victim"),
                    ),
                ],
            ),
            (
                "from the future",
                vec![
                    (USER_ID, "victim".into()),
                    (
                        GATEWAY_ASSERTION,
                        assertion(SIGNING_SECRET, now + 120, method, target, "victim"),
                    ),
                ],
            ),
            (
                "signed for another user",
                vec![
                    (USER_ID, "victim".into()),
                    (
                        GATEWAY_ASSERTION,
                        assertion(SIGNING_SECRET, now, method, target, "mallory"),
                    ),
                ],
            ),
            (
                "a genuine GET list assertion replayed",
                vec![
                    (USER_ID, "victim".into()),
                    (GATEWAY_ASSERTION, genuine_get.clone()),
                ],
            ),
            (
                "duplicated identity headers",
                vec![
                    (USER_ID, "victim".into()),
                    (USER_ID, "victim".into()),
                    (
                        GATEWAY_ASSERTION,
                        assertion(SIGNING_SECRET, now, method, target, "victim"),
                    ),
                ],
            ),
        ];
        for (name, headers) in forgeries {
            // The replayed assertion is genuine for exactly one route.
            if name.starts_with("a genuine")
                && *method == Method::GET
                && target == "/api/victim/tasks"
            {
                continue;
            }
            let mut request = system.direct(method.clone(), target);
            for (header, value) in headers {
                request = request.header(header, value);
            }
            if matches!(*method, Method::POST | Method::PUT) {
                request = request.json(&json!({"title": "pwned", "completed": true}));
            }
            let response = request.send().await.expect("task service reachable");
            assert!(
                matches!(response.status().as_u16(), 401 | 403),
                "{method} {target} with {name}: {}",
                response.status()
            );
            let body: Value = response.json().await.expect("JSON");
            assert!(body["detail"].is_string());
            refused += 1;
        }
    }
    // An assertion for one's own path does not open another user's: the path names the owner.
    let now = now();
    let target = "/api/victim/tasks";
    let response = system
        .direct(Method::GET, target)
        .header(USER_ID, "mallory")
        .header(
            GATEWAY_ASSERTION,
            assertion(SIGNING_SECRET, now, &Method::GET, target, "mallory"),
        )
        .send()
        .await
        .expect("reachable");
    assert_eq!(response.status(), 403);
    println!("direct requests: {} refused", refused + 1);
    assert_eq!(victim.snapshot().await, before, "the victim's data changed");
    assert_still_serving(&system.gateway).await;
}

#[tokio::test]
async fn cross_user_access_on_every_verb_leaves_the_victims_data_unchanged() {
    let system = System::start().await;
    let victim = User::new(&system.gateway, "victim");
    let attacker = User::new(&system.gateway, "mallory");
    let task = victim.create("victim's task").await;
    victim.create("another").await;
    let own = attacker.create("mallory's own").await;
    let before = victim.snapshot().await;

    // The victim's paths with the attacker's token: 403 at the gateway.
    let item = format!("/api/victim/tasks/{task}");
    for (method, target, body) in [
        (Method::GET, "/api/victim/tasks".to_owned(), None),
        (
            Method::POST,
            "/api/victim/tasks".to_owned(),
            Some(json!({"title": "planted"})),
        ),
        (Method::GET, item.clone(), None),
        (
            Method::PUT,
            item.clone(),
            Some(json!({"title": "defaced", "completed": true})),
        ),
        (Method::DELETE, item.clone(), None),
        (Method::PATCH, format!("{item}/complete"), None),
        (
            Method::PATCH,
            format!("{item}/complete"),
            Some(json!({"completed": true})),
        ),
    ] {
        let mut request = system
            .gateway
            .client
            .request(method.clone(), system.gateway.url(&target))
            .bearer_auth(&attacker.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("reachable");
        assert_eq!(response.status(), 403, "{method} {target}");
    }
    // The victim's task id under the attacker's own path: 404, as if it did not exist.
    let id = format!("/{task}");
    for (method, path, body) in [
        (Method::GET, id.clone(), None),
        (Method::PUT, id.clone(), Some(json!({"title": "defaced"}))),
        (Method::DELETE, id.clone(), None),
        (Method::PATCH, format!("{id}/complete"), None),
        (
            Method::PATCH,
            format!("{id}/complete"),
            Some(json!({"completed": true})),
        ),
    ] {
        let response = attacker.call(method.clone(), &path, body).await;
        assert_eq!(response.status(), 404, "{method} {path}");
        let missing = attacker.call(Method::GET, "/999999", None).await;
        assert_eq!(
            response.text().await.expect("body"),
            missing.text().await.expect("body"),
            "a foreign task reads differently from a missing one"
        );
    }
    // The attacker's list never shows the victim's tasks, whatever the query.
    for query in [
        "",
        "?status=all",
        "?q=victim",
        "?limit=500&offset=0",
        "?user_id=victim",
    ] {
        let listed: Value = attacker
            .call(Method::GET, query, None)
            .await
            .json()
            .await
            .expect("list");
        let ids: Vec<i64> = listed
            .as_array()
            .expect("array")
            .iter()
            .map(|task| task["id"].as_i64().expect("id"))
            .collect();
        assert!(ids.iter().all(|id| *id == own), "{query}: {ids:?}");
        assert!(query.contains("victim") || ids == [own], "{query}: {ids:?}");
    }
    assert_eq!(victim.snapshot().await, before, "the victim's data changed");
    assert_still_serving(&system.gateway).await;
}

#[tokio::test]
async fn fields_a_client_must_not_set_are_ignored() {
    let system = System::start().await;
    let alice = User::new(&system.gateway, "alice");
    let bob = User::new(&system.gateway, "bob");
    bob.create("bob's").await;
    let bob_before = bob.snapshot().await;

    let planted = json!({
        "title": "mine",
        "id": 999_999,
        "user_id": "bob",
        "owner": "bob",
        "created_at": "2000-01-01T00:00:00Z",
        "updated_at": "2000-01-01T00:00:00Z",
        "completed": true,
    });
    let response = alice.call(Method::POST, "", Some(planted)).await;
    assert_eq!(response.status(), 201);
    let task: Value = response.json().await.expect("task");
    let id = task["id"].as_i64().expect("id");
    assert_ne!(id, 999_999);
    assert_eq!(task["user_id"], "alice");
    assert_eq!(task["completed"], false, "POST ignores completed");
    for stamp in ["created_at", "updated_at"] {
        assert!(
            !task[stamp].as_str().expect("timestamp").starts_with("2000"),
            "{stamp} was set by the client"
        );
    }

    let response = alice
        .call(
            Method::PUT,
            &format!("/{id}"),
            Some(json!({"title": "renamed", "id": 1, "user_id": "bob", "created_at": "2000-01-01T00:00:00Z"})),
        )
        .await;
    assert_eq!(response.status(), 200);
    let updated: Value = response.json().await.expect("task");
    assert_eq!(updated["id"], id);
    assert_eq!(updated["user_id"], "alice");
    assert_eq!(updated["title"], "renamed");
    assert_eq!(updated["created_at"], task["created_at"]);
    assert_eq!(bob.snapshot().await, bob_before, "bob's data changed");
    assert_still_serving(&system.gateway).await;
}
