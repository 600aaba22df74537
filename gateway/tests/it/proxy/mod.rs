//! The proxy against an echo upstream that reports exactly what it received. This module:
//! identity forwarding, header spoofing, path tricks, the route table and request ids; token
//! refusals, CORS, upstream failures and the `Cache-Control` of the gateway's own replies are in
//! the submodules. Tokens here are HS256 with the shared secret.

mod cache_control;
mod cors;
mod refusals;
mod upstream;

use std::sync::atomic::Ordering;

use common::assertion::{AssertedRequest, AssertionVerifier, SigningSecret};
use common::headers::CLIENT_IDENTITY_HEADERS;
use gateway::config::{JWT_AUDIENCE, JWT_ISSUER};
use serde_json::{Value, json};

use crate::support::servers::{EchoUpstream, echoed_headers};
use crate::support::stack::TestGateway;
use crate::support::tokens::{claims_for, hs256, with_claims};
use crate::support::{SIGNING_SECRET, now};

const ISSUER: &str = "https://auth.example.test";
const AUDIENCE: &str = "https://api.example.test";

/// A gateway in front of `upstream`, taking HS256 tokens with a configured issuer and audience.
pub(super) async fn gateway_for(upstream: &EchoUpstream, extra: &[(&str, &str)]) -> TestGateway {
    TestGateway::builder(&upstream.url())
        .shared_secret()
        .var(JWT_ISSUER, ISSUER)
        .var(JWT_AUDIENCE, AUDIENCE)
        .vars(extra)
        .start()
        .await
}

pub(super) fn claims(sub: &str) -> Value {
    let mut claims = claims_for(sub);
    claims["iss"] = json!(ISSUER);
    claims["aud"] = json!(AUDIENCE);
    claims
}

pub(super) fn token(sub: &str) -> String {
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
