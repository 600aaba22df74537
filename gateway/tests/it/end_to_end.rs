//! The whole system: the real gateway in front of the real task service (SQLite in a temporary
//! directory), both on 127.0.0.1:0, with HS256 tokens, Better Auth EdDSA and ES512 tokens from a
//! JWKS served by the test, and tokens minted by `gateway mint-token`.

use std::process::Command;
use std::time::{Duration, Instant};

use gateway::config::BETTER_AUTH_SECRET;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::clients::User;
use crate::support::servers::{JwksServer, TaskService};
use crate::support::stack::TestGateway;
use crate::support::tokens::{Ed25519Key, P521Key, better_auth_claims, claims_for, hs256};
use crate::support::{HMAC_SECRET, eventually};

impl User<'_> {
    /// Runs all six endpoints and checks each reply.
    async fn exercise_every_endpoint(&self) {
        use reqwest::Method;
        let created = self
            .call(
                Method::POST,
                "",
                Some(json!({"title": "buy milk", "priority": "high"})),
            )
            .await;
        assert_eq!(created.status(), StatusCode::CREATED);
        let location = created.headers()["location"]
            .to_str()
            .expect("ascii")
            .to_owned();
        let task: Value = created.json().await.expect("task");
        let id = task["id"].as_i64().expect("id");
        assert_eq!(task["user_id"], self.id.as_str());
        assert_eq!(task["title"], "buy milk");
        assert!(
            location.ends_with(&format!("/api/{}/tasks/{id}", self.id)),
            "{location}"
        );

        let listed = self
            .call(Method::GET, "?status=all&sort=created&order=desc", None)
            .await;
        assert_eq!(listed.status(), StatusCode::OK);
        assert_eq!(listed.headers()["x-total-count"], "1");
        let tasks: Value = listed.json().await.expect("list");
        assert_eq!(tasks.as_array().map(Vec::len), Some(1));

        let fetched = self.call(Method::GET, &format!("/{id}"), None).await;
        assert_eq!(fetched.status(), StatusCode::OK);

        let updated = self
            .call(
                Method::PUT,
                &format!("/{id}"),
                Some(json!({"title": "buy oat milk"})),
            )
            .await;
        assert_eq!(updated.status(), StatusCode::OK);
        assert_eq!(
            updated.json::<Value>().await.expect("task")["title"],
            "buy oat milk"
        );

        let completed = self
            .call(
                Method::PATCH,
                &format!("/{id}/complete"),
                Some(json!({"completed": true})),
            )
            .await;
        assert_eq!(completed.status(), StatusCode::OK);
        assert_eq!(
            completed.json::<Value>().await.expect("task")["completed"],
            true
        );

        let deleted = self.call(Method::DELETE, &format!("/{id}"), None).await;
        assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
        let gone = self.call(Method::GET, &format!("/{id}"), None).await;
        assert_eq!(gone.status(), StatusCode::NOT_FOUND);
    }
}

#[tokio::test]
async fn all_six_endpoints_work_with_hs256_and_better_auth_eddsa_and_es512_tokens() {
    let data = tempfile::tempdir().expect("temp dir");
    let tasks = TaskService::start(data.path()).await;
    let key = Ed25519Key::generate("better-auth-key");
    let p521 = P521Key::generate("better-auth-es512-key");
    let jwks = JwksServer::start(vec![key.jwk(), p521.jwk()]).await;
    let gateway = TestGateway::builder(&format!("http://{}", tasks.addr))
        .shared_secret()
        .better_auth(&jwks.base_url())
        .start()
        .await;

    let alice = User {
        gateway: &gateway,
        id: "alice".into(),
        token: hs256(&claims_for("alice")),
    };
    // Better Auth ids are 32 alphanumerics.
    let bob_id = "Xk2v9QpLm4Rt7Yw1Zc8Bn3Hd6Fg0Js5A";
    let bob = User {
        gateway: &gateway,
        id: bob_id.into(),
        token: key.sign(&better_auth_claims(&jwks.base_url(), bob_id)),
    };
    let carol = User {
        gateway: &gateway,
        id: "carol".into(),
        token: p521.sign(&better_auth_claims(&jwks.base_url(), "carol")),
    };
    alice.exercise_every_endpoint().await;
    bob.exercise_every_endpoint().await;
    carol.exercise_every_endpoint().await;

    // A user never reaches another's tasks: 403 at the gateway for the other's path, and 404 from
    // the task service for the other's task id under one's own path.
    let created = bob
        .call(reqwest::Method::POST, "", Some(json!({"title": "bob's"})))
        .await;
    let bob_task = created.json::<Value>().await.expect("task")["id"]
        .as_i64()
        .expect("id");
    let cross = gateway
        .get(&format!("/api/{bob_id}/tasks/{bob_task}"), &alice.token)
        .await;
    assert_eq!(cross.status(), StatusCode::FORBIDDEN);
    let hidden = alice
        .call(reqwest::Method::GET, &format!("/{bob_task}"), None)
        .await;
    assert_eq!(hidden.status(), StatusCode::NOT_FOUND);
    tasks.stop().await;
}

#[tokio::test]
async fn a_minted_token_is_accepted_end_to_end() {
    let data = tempfile::tempdir().expect("temp dir");
    let tasks = TaskService::start(data.path()).await;
    let output = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args([
            "mint-token",
            "--sub",
            "carol",
            "--email",
            "carol@example.com",
            "--ttl",
            "15m",
        ])
        .env_clear()
        .env(BETTER_AUTH_SECRET, HMAC_SECRET)
        .output()
        .expect("mint-token runs");
    assert!(output.status.success());
    let token = String::from_utf8(output.stdout)
        .expect("utf-8")
        .trim()
        .to_owned();

    let gateway = TestGateway::with_shared_secret(&format!("http://{}", tasks.addr)).await;
    let carol = User {
        gateway: &gateway,
        id: "carol".into(),
        token,
    };
    carol.exercise_every_endpoint().await;
    tasks.stop().await;
}

#[tokio::test]
async fn a_stopped_task_service_gives_json_errors_quickly_and_recovers() {
    let data = tempfile::tempdir().expect("temp dir");
    let tasks = TaskService::start(data.path()).await;
    let address = tasks.addr;
    let gateway = TestGateway::with_shared_secret(&format!("http://{address}")).await;
    let dave = User {
        gateway: &gateway,
        id: "dave".into(),
        token: hs256(&claims_for("dave")),
    };
    let created = dave
        .call(
            reqwest::Method::POST,
            "",
            Some(json!({"title": "survive a restart"})),
        )
        .await;
    assert_eq!(created.status(), StatusCode::CREATED);

    tasks.stop().await;
    for _ in 0..5 {
        let started = Instant::now();
        let response = dave.call(reqwest::Method::GET, "", None).await;
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "took {:?}",
            started.elapsed()
        );
        let status = response.status().as_u16();
        assert!(matches!(status, 502 | 503), "status {status}");
        let body: Value = response.json().await.expect("JSON error");
        assert!(body["detail"].is_string());
    }

    let _back = TaskService::start_on(address, data.path()).await;
    eventually("the task service to be used again", || async {
        dave.call(reqwest::Method::GET, "", None).await.status() == StatusCode::OK
    })
    .await;
    let tasks: Value = dave
        .call(reqwest::Method::GET, "", None)
        .await
        .json()
        .await
        .expect("list");
    assert_eq!(tasks[0]["title"], "survive a restart");
}
