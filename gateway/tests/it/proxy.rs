//! The proxy against an echo upstream that reports exactly what it received: identity
//! forwarding, header spoofing, path tricks, token refusals, CORS, request ids and upstream
//! failures. Tokens here are HS256 with the shared secret.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::assertion::{AssertedRequest, AssertionVerifier, SigningSecret};
use common::headers::CLIENT_IDENTITY_HEADERS;
use gateway::config::{
    HEALTH_CHECK_INTERVAL_MS, JWT_AUDIENCE, JWT_ISSUER, UPSTREAM_READ_TIMEOUT_MS,
};
use jsonwebtoken::Algorithm;
use serde_json::{Value, json};

use crate::support::servers::{EchoUpstream, echoed_headers};
use crate::support::stack::TestGateway;
use crate::support::tokens::{claims_for, hmac_token, hs256, unsigned, with_claims};
use crate::support::{HMAC_SECRET, SIGNING_SECRET, eventually, now};

const ISSUER: &str = "https://auth.example.test";
const AUDIENCE: &str = "https://api.example.test";

/// A gateway in front of `upstream`, taking HS256 tokens with a configured issuer and audience.
async fn gateway_for(upstream: &EchoUpstream, extra: &[(&str, &str)]) -> TestGateway {
    TestGateway::builder(&upstream.url())
        .shared_secret()
        .var(JWT_ISSUER, ISSUER)
        .var(JWT_AUDIENCE, AUDIENCE)
        .vars(extra)
        .start()
        .await
}

fn claims(sub: &str) -> Value {
    let mut claims = claims_for(sub);
    claims["iss"] = json!(ISSUER);
    claims["aud"] = json!(AUDIENCE);
    claims
}

fn token(sub: &str) -> String {
    hs256(&claims(sub))
}

fn verifier() -> AssertionVerifier {
    AssertionVerifier::new(SigningSecret::new(SIGNING_SECRET).expect("secret"), None)
}

/// Asserts that the echoed request carries the gateway's identity for `user` and nothing a
/// client could have chosen.
fn assert_forwarded_identity(echo: &Value, method: &str, target: &str, user: &str) {
    let headers = echoed_headers(echo);
    let values = |name: &str| -> Vec<&str> {
        headers
            .iter()
            .filter(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
            .collect()
    };
    assert_eq!(values("x-user-id"), [user], "{headers:?}");
    assert_eq!(echo["target"], target);
    let assertion = values("x-gateway-assertion");
    assert_eq!(assertion.len(), 1, "{headers:?}");
    let request = AssertedRequest {
        method,
        path_and_query: target,
        user_id: user,
    };
    assert_eq!(verifier().verify(assertion[0], &request, now()), Ok(()));
    for name in CLIENT_IDENTITY_HEADERS {
        if !matches!(*name, "x-user-id" | "x-user-email" | "x-gateway-assertion") {
            assert!(values(name).is_empty(), "{name} reached the upstream");
        }
    }
    assert!(
        values("x-user-email")
            .iter()
            .all(|email| *email == format!("{user}@example.com"))
    );
    assert!(
        values("authorization").is_empty(),
        "the bearer token was forwarded"
    );
    assert!(values("cookie").is_empty(), "cookies were forwarded");
}

#[tokio::test]
async fn verified_identity_and_a_signed_assertion_reach_the_upstream() {
    let upstream = EchoUpstream::start().await;
    let gateway = gateway_for(&upstream, &[]).await;
    let response = gateway
        .get("/api/alice/tasks?status=all&sort=created", &token("alice"))
        .await;
    assert_eq!(response.status(), 200);
    let request_id = response
        .headers()
        .get("x-request-id")
        .expect("request id returned")
        .to_str()
        .expect("ascii")
        .to_owned();
    let echo: Value = response.json().await.expect("echo JSON");
    assert_forwarded_identity(
        &echo,
        "GET",
        "/api/alice/tasks?status=all&sort=created",
        "alice",
    );
    let headers = echoed_headers(&echo);
    assert!(headers.contains(&("x-request-id".to_owned(), request_id)));
    assert!(headers.contains(&("x-user-email".to_owned(), "alice@example.com".to_owned())));
}

#[tokio::test]
async fn spoofed_identity_headers_never_reach_the_upstream() {
    let upstream = EchoUpstream::start().await;
    let gateway = gateway_for(&upstream, &[]).await;
    let request = format!(
        "POST /api/alice/tasks HTTP/1.1\r\n\
         Host: gateway\r\n\
         Authorization: Bearer {}\r\n\
         X-User-Id: mallory\r\n\
         x-USER-id: mallory2\r\n\
         X-User-Id: mallory3\r\n\
         X-User-Email: mallory@example.com\r\n\
         X-Gateway-Assertion: t=1,v1=00\r\n\
         X-Forwarded-User: mallory\r\n\
         x-auth-request-user: mallory\r\n\
         X-Jwt-Payload: e30\r\n\
         Remote-User: mallory\r\n\
         Cookie: better-auth.session_token=secret\r\n\
         Connection: x-user-id, X-Gateway-Assertion, x-request-id\r\n\
         Content-Type: application/json\r\n\
         Content-Length: 17\r\n\
         \r\n\
         {{\"title\":\"milk\"}}",
        token("alice")
    );
    let response = gateway.raw(request.as_bytes()).await;
    assert_eq!(
        response.status,
        200,
        "{:?}",
        String::from_utf8_lossy(&response.body)
    );
    let echo = response.json();
    assert_eq!(echo["method"], "POST");
    assert_forwarded_identity(&echo, "POST", "/api/alice/tasks", "alice");

    // A token without an email: the client's X-User-Email must not stand in for one.
    let no_email = hs256(&with_claims(claims("alice"), &json!({"email": null})));
    let request = format!(
        "GET /api/alice/tasks HTTP/1.1\r\nHost: gateway\r\nAuthorization: Bearer {no_email}\r\n\
         X-User-Email: mallory@example.com\r\nx-user-email: mallory@example.com\r\n\
         Connection: close\r\n\r\n"
    );
    let echo = gateway.raw(request.as_bytes()).await.json();
    assert_forwarded_identity(&echo, "GET", "/api/alice/tasks", "alice");
    assert!(
        !echoed_headers(&echo)
            .iter()
            .any(|(name, _)| name == "x-user-email")
    );
}

#[tokio::test]
async fn every_path_trick_is_a_400_before_authentication() {
    let upstream = EchoUpstream::start().await;
    let gateway = gateway_for(&upstream, &[]).await;
    let alice = token("alice");
    for target in [
        "/api/alice/../bob/tasks",
        "/api/bob/tasks/..",
        "/api/./alice/tasks",
        "/api//alice/tasks",
        "/api/alice/tasks/",
        "//api/alice/tasks",
        "/api/alice%2fbob/tasks",
        "/api/alice%2F..%2Fbob/tasks",
        "/api/alice/tasks/%2e%2e",
        "/api/%2E%2E/bob/tasks",
        "/api/alice%5cbob/tasks",
        "/api/alice%00/tasks",
        "/api/alice%0d%0a/tasks",
        "/api/alice;jsessionid=x/tasks",
        "/api/alice/tasks;x",
        "/api/al%69ce/tasks",
        "/api/alice%zz/tasks",
        "/api/alice\\..\\bob/tasks",
        "/api/al\u{e9}/tasks",
    ] {
        for authorization in [String::new(), format!("Authorization: Bearer {alice}\r\n")] {
            let request = format!(
                "GET {target} HTTP/1.1\r\nHost: gateway\r\n{authorization}Connection: close\r\n\r\n"
            );
            let response = gateway.raw(request.as_bytes()).await;
            assert_eq!(response.status, 400, "{target}");
            assert_eq!(
                response.json()["detail"],
                "Malformed request path",
                "{target}"
            );
        }
    }
    assert_eq!(upstream.requests.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn absolute_form_targets_are_forwarded_in_origin_form() {
    let upstream = EchoUpstream::start().await;
    let gateway = gateway_for(&upstream, &[]).await;
    let request = format!(
        "GET http://elsewhere.example/api/alice/tasks?status=all HTTP/1.1\r\nHost: elsewhere.example\r\n\
         Authorization: Bearer {}\r\nConnection: close\r\n\r\n",
        token("alice")
    );
    let response = gateway.raw(request.as_bytes()).await;
    assert_eq!(
        response.status,
        200,
        "{response:?} {}",
        String::from_utf8_lossy(&response.body)
    );
    assert_forwarded_identity(
        &response.json(),
        "GET",
        "/api/alice/tasks?status=all",
        "alice",
    );
}

#[tokio::test]
async fn only_the_six_routes_are_proxied() {
    let upstream = EchoUpstream::start().await;
    let gateway = gateway_for(&upstream, &[]).await;
    let alice = token("alice");
    for path in [
        "/",
        "/healthz",
        "/metrics",
        "/api/alice",
        "/api/alice/tasks/1/share",
        "/docs",
    ] {
        let response = gateway.get(path, &alice).await;
        assert_eq!(response.status(), 404, "{path}");
        let body: Value = response.json().await.expect("JSON");
        assert_eq!(body, json!({"detail": "Not Found"}));
    }
    let response = gateway
        .client
        .delete(gateway.url("/api/alice/tasks"))
        .bearer_auth(&alice)
        .send()
        .await
        .expect("reachable");
    assert_eq!(response.status(), 405);
    assert_eq!(response.headers()["allow"], "GET, POST");
    let routes: [(reqwest::Method, &str); 6] = [
        (reqwest::Method::GET, "/api/alice/tasks"),
        (reqwest::Method::POST, "/api/alice/tasks"),
        (reqwest::Method::GET, "/api/alice/tasks/7"),
        (reqwest::Method::PUT, "/api/alice/tasks/7"),
        (reqwest::Method::DELETE, "/api/alice/tasks/7"),
        (reqwest::Method::PATCH, "/api/alice/tasks/7/complete"),
    ];
    for (method, path) in routes {
        let response = gateway
            .client
            .request(method.clone(), gateway.url(path))
            .bearer_auth(&alice)
            .send()
            .await
            .expect("reachable");
        assert_eq!(response.status(), 200, "{method} {path}");
    }
    assert_eq!(upstream.requests.load(Ordering::SeqCst), 6);
}

#[tokio::test]
async fn refused_tokens_are_401_with_a_bearer_challenge() {
    let upstream = EchoUpstream::start().await;
    let gateway = gateway_for(&upstream, &[]).await;
    let alice = claims("alice");
    let now = now();
    let session_cookie = json!({
        "session": {"session": {"token": "raw", "userId": "alice"}, "user": {"id": "alice"}},
        "expiresAt": now + 300, "exp": now + 300, "iat": now,
    });
    let cases: Vec<(&str, String)> = vec![
        (
            "expired",
            hs256(&with_claims(alice.clone(), &json!({"exp": now - 3600}))),
        ),
        (
            "future nbf",
            hs256(&with_claims(alice.clone(), &json!({"nbf": now + 3600}))),
        ),
        (
            "future iat",
            hs256(&with_claims(alice.clone(), &json!({"iat": now + 3600}))),
        ),
        (
            "no exp",
            hs256(&with_claims(alice.clone(), &json!({"exp": null}))),
        ),
        (
            "wrong iss",
            hs256(&with_claims(
                alice.clone(),
                &json!({"iss": "https://evil.test"}),
            )),
        ),
        (
            "no iss",
            hs256(&with_claims(alice.clone(), &json!({"iss": null}))),
        ),
        (
            "wrong aud",
            hs256(&with_claims(
                alice.clone(),
                &json!({"aud": ["https://evil.test"]}),
            )),
        ),
        (
            "missing sub",
            hs256(&with_claims(alice.clone(), &json!({"sub": null}))),
        ),
        (
            "empty sub",
            hs256(&with_claims(alice.clone(), &json!({"sub": ""}))),
        ),
        ("session cookie", hs256(&session_cookie)),
        (
            "alg none",
            unsigned(&json!({"alg": "none", "typ": "JWT"}), &alice),
        ),
        ("alg NONE", unsigned(&json!({"alg": "NONE"}), &alice)),
        (
            "wrong secret",
            hmac_token(
                Algorithm::HS256,
                b"another-secret-another-secret-0123456789",
                &alice,
            ),
        ),
        ("garbage", "not.a.token".to_owned()),
        (
            "HS512",
            hmac_token(
                Algorithm::HS512,
                b"another-secret-another-secret-0123456789",
                &alice,
            ),
        ),
    ];
    for (name, token) in cases {
        let response = gateway.get("/api/alice/tasks", &token).await;
        assert_eq!(response.status(), 401, "{name}");
        assert_eq!(
            response.headers()["www-authenticate"],
            "Bearer error=\"invalid_token\"",
            "{name}"
        );
        let body: Value = response.json().await.expect("JSON");
        assert!(body["detail"].is_string(), "{name}");
    }

    let missing = gateway
        .client
        .get(gateway.url("/api/alice/tasks"))
        .send()
        .await
        .expect("reachable");
    assert_eq!(missing.status(), 401);
    assert_eq!(missing.headers()["www-authenticate"], "Bearer");
    assert_eq!(
        missing.json::<Value>().await.expect("JSON"),
        json!({"detail": "Not authenticated"})
    );

    let good = token("alice");
    let oversized = format!("Bearer {good}{}", "A".repeat(9 * 1024));
    for authorization in [
        format!("Authorization: Bearer {good}\r\nAuthorization: Bearer {good}\r\n"),
        format!("Authorization: {oversized}\r\n"),
        format!("Authorization: Basic {good}\r\n"),
    ] {
        let request = format!(
            "GET /api/alice/tasks HTTP/1.1\r\nHost: gateway\r\n{authorization}Connection: close\r\n\r\n"
        );
        let response = gateway.raw(request.as_bytes()).await;
        assert_eq!(response.status, 401, "{}", &authorization[..40]);
        assert_eq!(
            response.header("www-authenticate"),
            Some("Bearer error=\"invalid_token\"")
        );
    }
    // HS384 and HS512 with the right secret pass.
    for alg in [Algorithm::HS384, Algorithm::HS512] {
        let token = hmac_token(alg, HMAC_SECRET.as_bytes(), &alice);
        assert_eq!(gateway.get("/api/alice/tasks", &token).await.status(), 200);
    }
    assert_eq!(upstream.requests.load(Ordering::SeqCst), 2);

    let metrics = gateway.metrics().await;
    for reason in [
        "expired",
        "not_yet_valid",
        "wrong_issuer",
        "wrong_audience",
        "missing_subject",
        "unsupported_algorithm",
        "bad_signature",
        "malformed_token",
        "missing_token",
        "token_too_large",
    ] {
        assert!(
            metrics.contains(&format!(
                "gateway_auth_denials_total{{reason=\"{reason}\"}}"
            )),
            "{reason} not counted"
        );
    }
    assert!(
        !metrics.contains("alice"),
        "a user id became a metric label"
    );
}

#[tokio::test]
async fn another_users_tasks_are_403() {
    let upstream = EchoUpstream::start().await;
    let gateway = gateway_for(&upstream, &[]).await;
    for path in ["/api/bob/tasks", "/api/bob/tasks/1", "/api/Alice/tasks"] {
        let response = gateway.get(path, &token("alice")).await;
        assert_eq!(response.status(), 403, "{path}");
        assert!(response.headers().get("www-authenticate").is_none());
        let body: Value = response.json().await.expect("JSON");
        assert!(body["detail"].is_string());
    }
    assert_eq!(upstream.requests.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn cors_preflight_is_answered_without_a_token() {
    let upstream = EchoUpstream::start().await;
    let gateway = gateway_for(&upstream, &[]).await;
    let preflight = |origin: &'static str| {
        gateway
            .client
            .request(reqwest::Method::OPTIONS, gateway.url("/api/alice/tasks/3"))
            .header("origin", origin)
            .header("access-control-request-method", "PUT")
            .header(
                "access-control-request-headers",
                "authorization, content-type",
            )
            .send()
    };
    let allowed = preflight("http://localhost:3000").await.expect("reachable");
    assert_eq!(allowed.status(), 204);
    let headers = allowed.headers();
    assert_eq!(
        headers["access-control-allow-origin"],
        "http://localhost:3000"
    );
    assert_eq!(
        headers["access-control-allow-headers"],
        "authorization, content-type"
    );
    assert!(
        headers["access-control-allow-methods"]
            .to_str()
            .expect("ascii")
            .contains("PUT")
    );
    assert_eq!(headers["vary"], "Origin");

    let refused = preflight("http://evil.example").await.expect("reachable");
    assert_eq!(refused.status(), 403);
    assert!(
        refused
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
    assert_eq!(upstream.requests.load(Ordering::SeqCst), 0);

    // Errors carry CORS headers for an allowed origin, so the frontend can read them.
    let unauthenticated = gateway
        .client
        .get(gateway.url("/api/alice/tasks"))
        .header("origin", "http://localhost:3000")
        .send()
        .await
        .expect("reachable");
    assert_eq!(unauthenticated.status(), 401);
    assert_eq!(
        unauthenticated.headers()["access-control-allow-origin"],
        "http://localhost:3000"
    );
    let exposed = unauthenticated.headers()["access-control-expose-headers"]
        .to_str()
        .expect("ascii");
    for name in [
        "X-Request-Id",
        "X-Total-Count",
        "Location",
        "WWW-Authenticate",
    ] {
        assert!(exposed.contains(name), "{name} not exposed");
    }
    // Proxied replies too; other origins get no CORS headers.
    let proxied = gateway
        .client
        .get(gateway.url("/api/alice/tasks"))
        .header("origin", "http://localhost:3000")
        .bearer_auth(token("alice"))
        .send()
        .await
        .expect("reachable");
    assert_eq!(proxied.status(), 200);
    assert_eq!(
        proxied.headers()["access-control-allow-origin"],
        "http://localhost:3000"
    );
    let foreign = gateway
        .client
        .get(gateway.url("/api/alice/tasks"))
        .header("origin", "http://evil.example")
        .bearer_auth(token("alice"))
        .send()
        .await
        .expect("reachable");
    assert!(
        foreign
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
}

#[tokio::test]
async fn request_ids_are_kept_when_well_formed_and_generated_otherwise() {
    let upstream = EchoUpstream::start().await;
    let gateway = gateway_for(&upstream, &[]).await;
    let send = |id: &'static str| {
        gateway
            .client
            .get(gateway.url("/api/alice/tasks"))
            .bearer_auth(token("alice"))
            .header("x-request-id", id)
            .send()
    };
    let kept = send("trace-123.abc_DEF").await.expect("reachable");
    assert_eq!(kept.headers()["x-request-id"], "trace-123.abc_DEF");
    let echo: Value = kept.json().await.expect("JSON");
    assert!(echoed_headers(&echo).contains(&("x-request-id".into(), "trace-123.abc_DEF".into())));

    let replaced = send("bad id\"").await.expect("reachable");
    let id = replaced.headers()["x-request-id"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert!(uuid::Uuid::parse_str(&id).is_ok(), "{id}");

    // Replies written by the gateway carry one too.
    let denied = gateway
        .client
        .get(gateway.url("/api/alice/tasks"))
        .send()
        .await
        .expect("reachable");
    assert!(denied.headers().get("x-request-id").is_some());
}

#[tokio::test]
async fn a_stopped_upstream_gives_json_502_or_503_quickly_and_recovers() {
    let upstream = EchoUpstream::start().await;
    let address = upstream.addr;
    let gateway = gateway_for(&upstream, &[]).await;
    let alice = token("alice");
    assert_eq!(gateway.get("/api/alice/tasks", &alice).await.status(), 200);

    upstream.stop().await;
    for _ in 0..5 {
        let started = Instant::now();
        let response = gateway.get("/api/alice/tasks", &alice).await;
        let status = response.status().as_u16();
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "took {:?}",
            started.elapsed()
        );
        assert!(matches!(status, 502 | 503), "status {status}");
        let body: Value = response.json().await.expect("JSON body");
        assert!(
            body["detail"]
                .as_str()
                .is_some_and(|d| d.starts_with("Task service"))
        );
    }
    eventually("readiness to drop", || async {
        gateway.readyz().await == 503
    })
    .await;
    let response = gateway.get("/api/alice/tasks", &alice).await;
    assert_eq!(response.status(), 503);

    let _back = EchoUpstream::start_on(address).await;
    eventually("the upstream to be used again", || async {
        gateway.get("/api/alice/tasks", &alice).await.status() == 200
    })
    .await;
    assert_eq!(gateway.readyz().await, 200);
    assert!(
        gateway
            .metrics()
            .await
            .contains("gateway_upstream_errors_total{kind=\"no_healthy_upstream\"}")
    );
}

#[tokio::test]
async fn a_slow_upstream_gives_json_504() {
    let upstream = EchoUpstream::start().await;
    let gateway = gateway_for(&upstream, &[(UPSTREAM_READ_TIMEOUT_MS, "200")]).await;
    let started = Instant::now();
    let response = gateway
        .client
        .get(gateway.url("/api/alice/tasks"))
        .bearer_auth(token("alice"))
        .header("x-test-delay-ms", "3000")
        .send()
        .await
        .expect("reachable");
    assert_eq!(response.status(), 504);
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(
        response.json::<Value>().await.expect("JSON"),
        json!({"detail": "Task service timed out"})
    );
}

#[tokio::test]
async fn a_replica_that_refuses_connections_is_skipped_before_health_checks_notice() {
    let up = EchoUpstream::start().await;
    let down = EchoUpstream::start().await;
    // One health check at start, then none during the test: only the retry can save requests
    // routed to the replica that goes down.
    let gateway = TestGateway::builder(&format!("{},{}", up.url(), down.url()))
        .shared_secret()
        .var(HEALTH_CHECK_INTERVAL_MS, "600000")
        .start()
        .await;
    eventually("both replicas to be checked", || async {
        up.health_checks.load(Ordering::SeqCst) > 0 && down.health_checks.load(Ordering::SeqCst) > 0
    })
    .await;
    down.stop().await;
    let alice = hs256(&claims_for("alice"));
    for _ in 0..6 {
        assert_eq!(gateway.get("/api/alice/tasks", &alice).await.status(), 200);
    }
    assert_eq!(up.requests.load(Ordering::SeqCst), 6);
    assert!(
        gateway
            .metrics()
            .await
            .contains("gateway_upstream_errors_total{kind=\"connect_refused\"}")
    );
}

#[tokio::test]
async fn readiness_needs_a_healthy_replica() {
    let upstream = EchoUpstream::start().await;
    let url = upstream.url();
    upstream.stop().await;
    let gateway = TestGateway::builder(&url)
        .shared_secret()
        .start_unready()
        .await;
    eventually("readiness to report the dead replica", || async {
        gateway.readyz().await == 503
    })
    .await;
    let response = gateway
        .client
        .get(gateway.admin_url("/readyz"))
        .send()
        .await
        .expect("reachable");
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(body["detail"], "no healthy task-service replica");
    let health = gateway
        .client
        .get(gateway.admin_url("/healthz"))
        .send()
        .await
        .expect("reachable");
    assert_eq!(health.status(), 200);
}
