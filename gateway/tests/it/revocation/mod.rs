//! Sign-out reaches the gateway: revoked sessions, tokens and users are refused on every request
//! (cached tokens too), by every replica, across restarts and Redis outages; the admin API is
//! guarded and validates what it is given; and the real Better Auth, configured as the README
//! says, revokes a token by signing out.

mod better_auth;
mod redis;

use std::path::Path;
use std::time::{Duration, Instant};

use gateway::config::{GATEWAY_ADMIN_TOKEN, REVOCATION_FILE, REVOCATION_REDIS_URL};
use serde_json::{Value, json};

use crate::support::redis::RedisServer;
use crate::support::servers::EchoUpstream;
use crate::support::stack::{GatewayBuilder, TestGateway};
use crate::support::tokens::hs256;
use crate::support::{eventually, now};

pub(super) const ADMIN_TOKEN: &str = "test-admin-token-0123456789abcdef-0123";
/// How quickly a revocation made at one replica must be enforced at another.
pub(super) const PROPAGATION: Duration = Duration::from_secs(1);

/// An HS256 token of `sub` for session `sid`, with its own `jti`, issued `age` seconds ago.
pub(super) fn token(sub: &str, sid: &str, jti: &str, age: u64) -> String {
    let iat = now() - age;
    hs256(&json!({"sub": sub, "sid": sid, "jti": jti, "iat": iat, "exp": iat + 900}))
}

/// A gateway with the admin token, keeping its revocations in `file`.
pub(super) fn with_file(upstream: &EchoUpstream, file: &Path) -> GatewayBuilder {
    TestGateway::builder(&upstream.url())
        .var(GATEWAY_ADMIN_TOKEN, ADMIN_TOKEN)
        .var(REVOCATION_FILE, file.display().to_string())
}

/// An HS256 gateway with the admin token, sharing its revocations through `redis`.
pub(super) fn with_redis(upstream: &EchoUpstream, redis: &RedisServer) -> GatewayBuilder {
    TestGateway::builder(&upstream.url())
        .shared_secret()
        .var(GATEWAY_ADMIN_TOKEN, ADMIN_TOKEN)
        .var(REVOCATION_REDIS_URL, redis.url())
}

/// `POST /revocations` with the admin token; the status.
pub(super) async fn revoke(gateway: &TestGateway, body: Value) -> u16 {
    gateway
        .client
        .post(gateway.admin_url("/revocations"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&body)
        .send()
        .await
        .expect("admin reachable")
        .status()
        .as_u16()
}

/// `GET /revocations/stats`.
pub(super) async fn stats(gateway: &TestGateway) -> Value {
    gateway
        .client
        .get(gateway.admin_url("/revocations/stats"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .expect("admin reachable")
        .json()
        .await
        .expect("stats JSON")
}

/// The status of the user's task list with `token`.
pub(super) async fn status(gateway: &TestGateway, sub: &str, token: &str) -> u16 {
    gateway
        .get(&format!("/api/{sub}/tasks"), token)
        .await
        .status()
        .as_u16()
}

/// Polls until `token` is refused at `gateway`; how long that took.
pub(super) async fn until_refused(gateway: &TestGateway, sub: &str, token: &str) -> Duration {
    let started = Instant::now();
    eventually("the revoked token to be refused", || async {
        status(gateway, sub, token).await == 401
    })
    .await;
    started.elapsed()
}

pub(super) async fn assert_revoked(gateway: &TestGateway, sub: &str, token: &str) {
    let response = gateway.get(&format!("/api/{sub}/tasks"), token).await;
    assert_eq!(response.status(), 401);
    assert_eq!(
        response
            .headers()
            .get("www-authenticate")
            .and_then(|value| value.to_str().ok()),
        Some("Bearer error=\"invalid_token\", error_description=\"revoked\"")
    );
    let body: Value = response.json().await.expect("JSON body");
    assert_eq!(body, json!({"detail": "Token has been revoked"}));
}

#[tokio::test]
async fn file_store_refuses_each_kind_and_survives_a_restart() {
    let upstream = EchoUpstream::start().await;
    let data = tempfile::tempdir().expect("temp dir");
    let file = data.path().join("data/revocations.json");
    let gateway = with_file(&upstream, &file).shared_secret().start().await;

    let first = token("alice", "session-1", "token-1", 10);
    let second = token("alice", "session-2", "token-2", 10);
    let third = token("alice", "session-3", "token-3", 10);
    let bob = token("bob", "session-b", "token-b", 10);
    for (sub, token) in [
        ("alice", &first),
        ("alice", &second),
        ("alice", &third),
        ("bob", &bob),
    ] {
        // Verified and cached before any revocation.
        assert_eq!(status(&gateway, sub, token).await, 200);
    }
    let received = upstream.count();

    assert_eq!(revoke(&gateway, json!({"sid": "session-1"})).await, 204);
    assert_revoked(&gateway, "alice", &first).await;
    assert_eq!(
        status(&gateway, "alice", &second).await,
        200,
        "other session"
    );

    assert_eq!(revoke(&gateway, json!({"jti": "token-2"})).await, 204);
    assert_revoked(&gateway, "alice", &second).await;
    assert_eq!(status(&gateway, "alice", &third).await, 200);

    // Every token of bob issued before now; one issued at the cut-off or later passes.
    let cut_off = now();
    assert_eq!(
        revoke(&gateway, json!({"sub": "bob", "not_before": cut_off})).await,
        204
    );
    assert_revoked(&gateway, "bob", &bob).await;
    let fresh = hs256(&json!({"sub": "bob", "iat": cut_off, "exp": cut_off + 900}));
    assert_eq!(status(&gateway, "bob", &fresh).await, 200);
    assert_eq!(
        upstream.count(),
        received + 3,
        "no revoked request reached the upstream"
    );

    let counts = stats(&gateway).await;
    assert_eq!(
        (&counts["sid"], &counts["jti"], &counts["sub"]),
        (&json!(1), &json!(1), &json!(1))
    );
    assert_eq!(counts["store"], "file");
    assert!(
        gateway
            .metrics()
            .await
            .contains("gateway_auth_denials_total{reason=\"revoked\"} 3")
    );

    drop(gateway);
    let restarted = with_file(&upstream, &file).shared_secret().start().await;
    assert_revoked(&restarted, "alice", &first).await;
    assert_revoked(&restarted, "alice", &second).await;
    assert_revoked(&restarted, "bob", &bob).await;
    assert_eq!(status(&restarted, "alice", &third).await, 200);
    assert_eq!(status(&restarted, "bob", &fresh).await, 200);
}

#[tokio::test]
async fn entries_expire_and_the_file_is_compacted() {
    let upstream = EchoUpstream::start().await;
    let data = tempfile::tempdir().expect("temp dir");
    let file = data.path().join("revocations.json");
    let gateway = with_file(&upstream, &file).shared_secret().start().await;
    let short = token("alice", "short-lived", "j-short", 0);
    let long = token("alice", "long-lived", "j-long", 0);
    let expires_at = now() + 2;
    assert_eq!(
        revoke(
            &gateway,
            json!({"sid": "short-lived", "expires_at": expires_at})
        )
        .await,
        204
    );
    assert_eq!(revoke(&gateway, json!({"sid": "long-lived"})).await, 204);
    assert_revoked(&gateway, "alice", &short).await;
    eventually("the entry to expire", || async {
        status(&gateway, "alice", &short).await == 200
    })
    .await;
    assert!(now() >= expires_at, "accepted only once expired");
    assert_revoked(&gateway, "alice", &long).await;
    eventually("the sweep to drop the entry from the file", || async {
        let stored: Value =
            serde_json::from_slice(&std::fs::read(&file).expect("file")).expect("JSON");
        stats(&gateway).await["sid"] == json!(1)
            && stored["entries"].as_array().is_some_and(|e| e.len() == 1)
    })
    .await;
}

#[tokio::test]
async fn admin_api_needs_the_token_and_a_valid_body() {
    let upstream = EchoUpstream::start().await;
    let data = tempfile::tempdir().expect("temp dir");
    let gateway = with_file(&upstream, &data.path().join("r.json"))
        .shared_secret()
        .start()
        .await;
    let post = |token: Option<&str>, body: &'static str| {
        let mut request = gateway
            .client
            .post(gateway.admin_url("/revocations"))
            .header("content-type", "application/json")
            .body(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send()
    };

    for token in [None, Some("wrong-token"), Some(&ADMIN_TOKEN[1..])] {
        let response = post(token, r#"{"sid":"s"}"#).await.expect("reachable");
        assert_eq!(response.status(), 401, "{token:?}");
        assert_eq!(
            response
                .headers()
                .get("www-authenticate")
                .map(|v| v.as_bytes()),
            Some(&b"Bearer"[..])
        );
    }
    let unauthenticated_stats = gateway
        .client
        .get(gateway.admin_url("/revocations/stats"))
        .send()
        .await
        .expect("reachable");
    assert_eq!(unauthenticated_stats.status(), 401);

    for (body, loc, kind) in [
        ("{", json!(["body"]), "json_invalid"),
        ("[1]", json!(["body"]), "dict_type"),
        ("{}", json!(["body"]), "missing"),
        (r#"{"sid":"a","sub":"b"}"#, json!(["body"]), "value_error"),
        (r#"{"sid":7}"#, json!(["body", "sid"]), "string_type"),
        (r#"{"sid":""}"#, json!(["body", "sid"]), "string_too_short"),
        (
            r#"{"jti":"j","admin":true}"#,
            json!(["body", "admin"]),
            "extra_forbidden",
        ),
        (
            r#"{"sid":"s","expires_at":1}"#,
            json!(["body", "expires_at"]),
            "greater_than",
        ),
        (
            r#"{"sub":"u","not_before":"now"}"#,
            json!(["body", "not_before"]),
            "int_type",
        ),
        (
            r#"{"sid":"s","not_before":1}"#,
            json!(["body", "not_before"]),
            "value_error",
        ),
    ] {
        let response = post(Some(ADMIN_TOKEN), body).await.expect("reachable");
        assert_eq!(response.status(), 422, "{body}");
        let detail: Value = response.json().await.expect("JSON");
        let issue = &detail["detail"][0];
        assert_eq!(
            (&issue["loc"], &issue["type"]),
            (&loc, &json!(kind)),
            "{body}: {detail}"
        );
        assert!(issue["msg"].is_string());
    }
    let wrong_method = gateway
        .client
        .get(gateway.admin_url("/revocations"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .expect("reachable");
    assert_eq!(wrong_method.status(), 405);
    let too_large = gateway
        .client
        .post(gateway.admin_url("/revocations"))
        .bearer_auth(ADMIN_TOKEN)
        .body(vec![b' '; 20_000])
        .send()
        .await
        .expect("reachable");
    assert_eq!(too_large.status(), 413);
    assert_eq!(
        stats(&gateway).await["sid"],
        json!(0),
        "nothing was revoked"
    );

    // Without GATEWAY_ADMIN_TOKEN the endpoints do not exist, whatever is presented.
    let without = TestGateway::with_shared_secret(&upstream.url()).await;
    for path in ["/revocations", "/revocations/stats"] {
        let response = without
            .client
            .post(without.admin_url(path))
            .bearer_auth(ADMIN_TOKEN)
            .body(r#"{"sid":"s"}"#)
            .send()
            .await
            .expect("reachable");
        assert_eq!(response.status(), 404, "{path}");
    }
}

#[tokio::test]
async fn a_replica_is_not_ready_before_it_has_loaded_the_set() {
    let Some(mut redis) = RedisServer::start("a_replica_is_not_ready_before_loading") else {
        return;
    };
    let upstream = EchoUpstream::start().await;
    redis.stop();
    let gateway = with_redis(&upstream, &redis).start_unready().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        gateway.readyz().await,
        503,
        "ready without the revocation set"
    );
    redis.restart();
    gateway.wait_ready().await;
}

// ---------------------------------------------------------------------------------------------
// The real Better Auth
