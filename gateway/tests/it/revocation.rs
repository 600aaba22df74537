//! Sign-out reaches the gateway: revoked sessions, tokens and users are refused on every request
//! (cached tokens too), by every replica, across restarts and Redis outages; the admin API is
//! guarded and validates what it is given; and the real Better Auth, configured as the README
//! says, revokes a token by signing out.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use gateway::config::{
    BETTER_AUTH_URL, GATEWAY_ADMIN_TOKEN, REVOCATION_FILE, REVOCATION_REDIS_URL,
};
use serde_json::{Value, json};

use crate::support::processes::{free_port, installed};
use crate::support::redis::RedisServer;
use crate::support::servers::EchoUpstream;
use crate::support::stack::{GatewayBuilder, TestGateway};
use crate::support::tokens::hs256;
use crate::support::{eventually, now};

const ADMIN_TOKEN: &str = "test-admin-token-0123456789abcdef-0123";
/// How quickly a revocation made at one replica must be enforced at another.
const PROPAGATION: Duration = Duration::from_secs(1);

/// An HS256 token of `sub` for session `sid`, with its own `jti`, issued `age` seconds ago.
fn token(sub: &str, sid: &str, jti: &str, age: u64) -> String {
    let iat = now() - age;
    hs256(&json!({"sub": sub, "sid": sid, "jti": jti, "iat": iat, "exp": iat + 900}))
}

/// A gateway with the admin token, keeping its revocations in `file`.
fn with_file(upstream: &EchoUpstream, file: &Path) -> GatewayBuilder {
    TestGateway::builder(&upstream.url())
        .var(GATEWAY_ADMIN_TOKEN, ADMIN_TOKEN)
        .var(REVOCATION_FILE, file.display().to_string())
}

/// An HS256 gateway with the admin token, sharing its revocations through `redis`.
fn with_redis(upstream: &EchoUpstream, redis: &RedisServer) -> GatewayBuilder {
    TestGateway::builder(&upstream.url())
        .shared_secret()
        .var(GATEWAY_ADMIN_TOKEN, ADMIN_TOKEN)
        .var(REVOCATION_REDIS_URL, redis.url())
}

/// `POST /revocations` with the admin token; the status.
async fn revoke(gateway: &TestGateway, body: Value) -> u16 {
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
async fn stats(gateway: &TestGateway) -> Value {
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
async fn status(gateway: &TestGateway, sub: &str, token: &str) -> u16 {
    gateway
        .get(&format!("/api/{sub}/tasks"), token)
        .await
        .status()
        .as_u16()
}

/// Polls until `token` is refused at `gateway`; how long that took.
async fn until_refused(gateway: &TestGateway, sub: &str, token: &str) -> Duration {
    let started = Instant::now();
    eventually("the revoked token to be refused", || async {
        status(gateway, sub, token).await == 401
    })
    .await;
    started.elapsed()
}

async fn assert_revoked(gateway: &TestGateway, sub: &str, token: &str) {
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
async fn redis_shares_revocations_between_replicas_within_a_second() {
    let Some(redis) = RedisServer::start("redis_shares_revocations_between_replicas") else {
        return;
    };
    let upstream = EchoUpstream::start().await;
    let a = with_redis(&upstream, &redis).start().await;
    let mut b = with_redis(&upstream, &redis).start().await;

    let laptop = token("alice", "laptop", "t-laptop", 10);
    let phone = token("alice", "phone", "t-phone", 10);
    let bob = token("bob", "bob-session", "t-bob", 10);
    let carol = token("carol", "carol-session", "t-carol", 10);
    for gateway in [&a, &b] {
        for (sub, token) in [
            ("alice", &laptop),
            ("alice", &phone),
            ("bob", &bob),
            ("carol", &carol),
        ] {
            assert_eq!(status(gateway, sub, token).await, 200);
        }
    }

    // A session revoked at A is refused at B; the user's other session still works.
    assert_eq!(revoke(&a, json!({"sid": "laptop"})).await, 204);
    let lag = until_refused(&b, "alice", &laptop).await;
    assert!(lag < PROPAGATION, "sid took {lag:?} to reach replica B");
    assert_revoked(&b, "alice", &laptop).await;
    assert_eq!(status(&b, "alice", &phone).await, 200);

    // Every token of bob issued before now, revoked at B, is refused at A; a newer one passes.
    let cut_off = now();
    assert_eq!(
        revoke(&b, json!({"sub": "bob", "not_before": cut_off})).await,
        204
    );
    let lag = until_refused(&a, "bob", &bob).await;
    assert!(lag < PROPAGATION, "sub took {lag:?} to reach replica A");
    let newer = hs256(&json!({"sub": "bob", "sid": "bob-2", "iat": cut_off, "exp": cut_off + 900}));
    assert_eq!(status(&a, "bob", &newer).await, 200);

    // One token, by its jti.
    assert_eq!(revoke(&a, json!({"jti": "t-carol"})).await, 204);
    let lag = until_refused(&b, "carol", &carol).await;
    assert!(lag < PROPAGATION, "jti took {lag:?} to reach replica B");

    let counts = stats(&b).await;
    assert_eq!(
        (
            &counts["sid"],
            &counts["jti"],
            &counts["sub"],
            &counts["store"],
            &counts["store_up"]
        ),
        (
            &json!(1),
            &json!(1),
            &json!(1),
            &json!("redis"),
            &json!(true)
        )
    );
    assert_eq!(redis.key_count("revoked:"), 3);
    let metrics = b.metrics().await;
    assert!(
        metrics.contains("gateway_revocation_store_up 1"),
        "{metrics}"
    );
    // Three changes published, one of them by B itself: each message is timed.
    assert!(metrics.contains("gateway_revocation_propagation_seconds_count 3"));
    assert!(metrics.contains("gateway_revocations_applied_total{kind=\"sid\",source=\"store\"} 1"));

    // A restarted replica loads every revocation before it reports ready.
    drop(b);
    b = with_redis(&upstream, &redis).start().await;
    assert_revoked(&b, "alice", &laptop).await;
    assert_revoked(&b, "bob", &bob).await;
    assert_revoked(&b, "carol", &carol).await;
    assert_eq!(status(&b, "alice", &phone).await, 200);
    assert_eq!(status(&b, "bob", &newer).await, 200);
}

#[tokio::test]
async fn redis_outage_keeps_enforcing_and_catches_up_on_reconnect() {
    let Some(mut redis) = RedisServer::start("redis_outage_keeps_enforcing") else {
        return;
    };
    let upstream = EchoUpstream::start().await;
    let a = with_redis(&upstream, &redis).start().await;
    let b = with_redis(&upstream, &redis).start().await;
    let before = token("alice", "revoked-before", "t-before", 10);
    let during = token("alice", "revoked-during", "t-during", 10);
    let other = token("alice", "kept", "t-kept", 10);
    assert_eq!(revoke(&a, json!({"sid": "revoked-before"})).await, 204);
    until_refused(&b, "alice", &before).await;
    for gateway in [&a, &b] {
        assert_eq!(status(gateway, "alice", &during).await, 200);
    }

    redis.stop();
    for gateway in [&a, &b] {
        eventually("the store to be reported down", || async {
            gateway
                .metrics()
                .await
                .contains("gateway_revocation_store_up 0")
        })
        .await;
        assert_eq!(gateway.readyz().await, 200, "still ready without Redis");
        assert_revoked(gateway, "alice", &before).await;
        assert_eq!(status(gateway, "alice", &other).await, 200, "still serving");
    }
    // Accepted and enforced at A while Redis is down; B, cut off, cannot know yet.
    assert_eq!(revoke(&a, json!({"sid": "revoked-during"})).await, 202);
    assert_revoked(&a, "alice", &during).await;
    assert_eq!(status(&b, "alice", &during).await, 200);
    assert!(
        b.metrics()
            .await
            .contains("gateway_revocation_store_errors_total{operation=\"sync\"}")
    );

    // Redis comes back empty: A writes back what it holds, and B enforces it within a second.
    redis.restart();
    let back = Instant::now();
    eventually(
        "B to refuse the revocation made during the outage",
        || async { status(&b, "alice", &during).await == 401 },
    )
    .await;
    let lag = back.elapsed();
    assert!(
        lag < PROPAGATION,
        "B caught up {lag:?} after Redis came back"
    );
    for gateway in [&a, &b] {
        assert_revoked(gateway, "alice", &before).await;
        assert_eq!(status(gateway, "alice", &other).await, 200);
        eventually("the store to be reported up", || async {
            gateway
                .metrics()
                .await
                .contains("gateway_revocation_store_up 1")
        })
        .await;
    }
    // Nothing was forgotten by the Redis that restarted empty: a new replica loads both.
    eventually("both entries to be back in Redis", || async {
        redis.key_count("revoked:") == 2
    })
    .await;
    let c = with_redis(&upstream, &redis).start().await;
    assert_revoked(&c, "alice", &before).await;
    assert_revoked(&c, "alice", &during).await;
    assert_eq!(status(&c, "alice", &other).await, 200);
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

/// The harness in `tests/better-auth`: a real Better Auth server with the README's hooks.
struct BetterAuth {
    child: Child,
    base_url: String,
}

impl Drop for BetterAuth {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl BetterAuth {
    /// Starts it, posting revocations to `admin_url`; `None` (skipped) without node outside CI.
    fn start(admin_url: &str) -> Option<Self> {
        let harness = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/better-auth");
        if !installed(
            "node",
            "better_auth_sign_out_revokes_the_token_within_a_second",
        ) {
            return None;
        }
        if !harness.join("node_modules/better-auth").exists() {
            let installed = Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
                .current_dir(&harness)
                .status()
                .is_ok_and(|status| status.success());
            assert!(installed, "npm ci in {} failed", harness.display());
        }
        let mut child = Command::new("node")
            .arg("server.mjs")
            .current_dir(&harness)
            .env("GATEWAY_ADMIN_URL", admin_url)
            .env("GATEWAY_ADMIN_TOKEN", ADMIN_TOKEN)
            .stdout(Stdio::piped())
            .stderr(if std::env::var_os("TEST_LOG").is_some() {
                Stdio::inherit()
            } else {
                Stdio::null()
            })
            .spawn()
            .expect("node starts");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line)
            .expect("the harness prints its port");
        let port = line
            .trim()
            .strip_prefix("listening ")
            .unwrap_or_else(|| panic!("unexpected harness output {line:?}"));
        Some(Self {
            base_url: format!("http://127.0.0.1:{port}"),
            child,
        })
    }

    /// Signs in (after signing up, the first time); the session cookie.
    async fn sign_in(&self, client: &reqwest::Client, email: &str, sign_up: bool) -> String {
        let (path, body) = if sign_up {
            (
                "/api/auth/sign-up/email",
                json!({"email": email, "password": "correct horse battery", "name": "Alice"}),
            )
        } else {
            (
                "/api/auth/sign-in/email",
                json!({"email": email, "password": "correct horse battery"}),
            )
        };
        let response = client
            .post(format!("{}{path}", self.base_url))
            .header("origin", &self.base_url)
            .json(&body)
            .send()
            .await
            .expect("Better Auth reachable");
        assert_eq!(response.status(), 200, "{path}");
        response
            .headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|value| value.to_str().ok())
            .find_map(|cookie| {
                cookie
                    .split(';')
                    .next()
                    .filter(|pair| pair.starts_with("better-auth.session_token="))
            })
            .expect("a session cookie")
            .to_owned()
    }

    /// The session's JWT from `/api/auth/token`, and its user id.
    async fn token(&self, client: &reqwest::Client, cookie: &str) -> (String, String) {
        let body: Value = client
            .get(format!("{}/api/auth/token", self.base_url))
            .header("cookie", cookie)
            .send()
            .await
            .expect("Better Auth reachable")
            .json()
            .await
            .expect("token JSON");
        let token = body["token"].as_str().expect("a token").to_owned();
        let payload = token.split('.').nth(1).expect("a JWT");
        let claims: Value = serde_json::from_slice(
            &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, payload)
                .expect("base64url"),
        )
        .expect("claims JSON");
        assert!(
            claims["sid"].is_string(),
            "definePayload adds sid: {claims}"
        );
        (token, claims["sub"].as_str().expect("sub").to_owned())
    }

    async fn post(&self, client: &reqwest::Client, path: &str, cookie: &str) {
        let response = client
            .post(format!("{}{path}", self.base_url))
            .header("origin", &self.base_url)
            .header("cookie", cookie)
            .json(&json!({}))
            .send()
            .await
            .expect("Better Auth reachable");
        assert_eq!(response.status(), 200, "{path}");
    }
}

#[tokio::test]
async fn better_auth_sign_out_revokes_the_token_within_a_second() {
    let upstream = EchoUpstream::start().await;
    let data = tempfile::tempdir().expect("temp dir");
    // Better Auth is told the gateway's admin address before the gateway (which needs Better
    // Auth's URL) starts there.
    let admin = free_port();
    let Some(auth) = BetterAuth::start(&format!("http://{admin}")) else {
        return;
    };
    let gateway = with_file(&upstream, &data.path().join("revocations.json"))
        .var(BETTER_AUTH_URL, auth.base_url.clone())
        .admin_at(admin)
        .start()
        .await;
    let client = reqwest::Client::new();

    let laptop = auth.sign_in(&client, "alice@example.com", true).await;
    let phone = auth.sign_in(&client, "alice@example.com", false).await;
    let (laptop_token, user) = auth.token(&client, &laptop).await;
    let (phone_token, _) = auth.token(&client, &phone).await;
    assert_eq!(status(&gateway, &user, &laptop_token).await, 200);
    assert_eq!(status(&gateway, &user, &phone_token).await, 200);

    auth.post(&client, "/api/auth/sign-out", &laptop).await;
    let lag = until_refused(&gateway, &user, &laptop_token).await;
    assert!(
        lag < PROPAGATION,
        "sign-out took {lag:?} to reach the gateway"
    );
    assert_revoked(&gateway, &user, &laptop_token).await;
    assert_eq!(
        status(&gateway, &user, &phone_token).await,
        200,
        "other session"
    );

    // "Sign out everywhere": every token of the user issued before now.
    auth.post(&client, "/api/auth/revoke-sessions", &phone)
        .await;
    until_refused(&gateway, &user, &phone_token).await;
    assert_revoked(&gateway, &user, &phone_token).await;
    // The cut-off covers the whole second it was made in (`iat` has whole seconds): a token
    // issued in the next second passes.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let again = auth.sign_in(&client, "alice@example.com", false).await;
    let (fresh, _) = auth.token(&client, &again).await;
    assert_eq!(
        status(&gateway, &user, &fresh).await,
        200,
        "signed in again"
    );
}
