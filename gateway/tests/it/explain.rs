//! `POST /explain` on the admin listener: the decision the proxy takes, and why, for each kind of
//! request (a revoked session too); never the token's signature; only with the admin token.

use serde_json::{Value, json};

use crate::adversarial::Arena;
use crate::support::clients::RawResponse;
use crate::support::now;
use crate::support::servers::EchoUpstream;
use crate::support::stack::TestGateway;
use crate::support::tokens::{Ed25519Key, better_auth_claims, claims_for, hs256, with_claims};
use gateway::config::{GATEWAY_ADMIN_TOKEN, REVOCATION_FILE};

/// A request to explain and send: method, path and bearer token.
type Request<'a> = (&'a str, &'a str, Option<&'a str>);

const ADMIN_TOKEN: &str = "test-admin-token-0123456789abcdefghij";

/// The adversarial suite's gateway (Better Auth EdDSA and HS256 tokens, an echo upstream) with
/// the admin API on.
async fn stack() -> Arena {
    Arena::start(&[(GATEWAY_ADMIN_TOKEN, ADMIN_TOKEN)]).await
}

/// `POST /explain` with `body` and the admin token `admin`; the status and the JSON body.
async fn explain_as(gateway: &TestGateway, admin: Option<&str>, body: &Value) -> (u16, String) {
    let mut request = gateway
        .client
        .post(gateway.admin_url("/explain"))
        .json(body);
    if let Some(admin) = admin {
        request = request.bearer_auth(admin);
    }
    let response = request.send().await.expect("admin reachable");
    let status = response.status().as_u16();
    (status, response.text().await.expect("body"))
}

async fn explain(gateway: &TestGateway, method: &str, path: &str, token: Option<&str>) -> Value {
    let authorization = token.map(|token| format!("Bearer {token}"));
    let body = json!({"method": method, "path": path, "authorization": authorization});
    let (status, text) = explain_as(gateway, Some(ADMIN_TOKEN), &body).await;
    assert_eq!(status, 200, "{text}");
    let answer: Value = serde_json::from_str(&text).expect("JSON answer");
    if let Some(token) = token {
        assert!(!text.contains(token), "the token is in the answer: {text}");
        if let Some(signature) = token.rsplit('.').next().filter(|s| !s.is_empty()) {
            assert!(
                !text.contains(signature),
                "the signature is in the answer: {text}"
            );
        }
    }
    answer
}

/// The same request through the proxy, sent as written.
async fn proxied(
    gateway: &TestGateway,
    method: &str,
    path: &str,
    token: Option<&str>,
) -> RawResponse {
    let authorization = token
        .map(|token| format!("Authorization: Bearer {token}\r\n"))
        .unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: gateway\r\n{authorization}Content-Length: 0\r\n\
         Connection: close\r\n\r\n"
    );
    gateway.raw(request.as_bytes()).await
}

/// `gateway_auth_denials_total{reason}` now.
async fn denials(gateway: &TestGateway, reason: &str) -> u64 {
    let prefix = format!("gateway_auth_denials_total{{reason=\"{reason}\"}} ");
    gateway
        .metrics()
        .await
        .lines()
        .find_map(|line| line.strip_prefix(&prefix)?.parse().ok())
        .unwrap_or(0)
}

fn outcome<'a>(answer: &'a Value, check: &str) -> &'a str {
    answer["checks"]
        .as_array()
        .and_then(|checks| checks.iter().find(|step| step["check"] == check))
        .and_then(|step| step["outcome"].as_str())
        .unwrap_or_else(|| panic!("no {check} check in {answer}"))
}

/// Explains the request, then sends it through the proxy: the explanation must be the decision
/// the proxy took (allowed: forwarded; denied: the same status, detail and denial reason), and
/// the check named `failed` the one that failed (`None`: every check passed or was not asked).
async fn assert_explained(
    stack: &Arena,
    (method, path, token): Request<'_>,
    expected: (Option<u16>, Option<&str>),
    failed: Option<&str>,
) -> Value {
    let gateway = &stack.gateway;
    let answer = explain(gateway, method, path, token).await;
    let context = format!("{method} {path}: {answer}");
    let (status, reason) = expected;
    assert_eq!(
        answer["status"].as_u64(),
        status.map(u64::from),
        "{context}"
    );
    assert_eq!(answer["reason"].as_str(), reason, "{context}");
    let outcomes: Vec<&str> = answer["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .map(|step| step["outcome"].as_str().expect("outcome"))
        .collect();
    match failed {
        Some(check) => {
            assert_eq!(answer["decision"], "deny", "{context}");
            assert_eq!(outcome(&answer, check), "fail", "{context}");
            assert_eq!(
                outcomes.iter().filter(|o| **o == "fail").count(),
                1,
                "{context}"
            );
            // Nothing after the failing check was taken.
            let position = outcomes
                .iter()
                .position(|o| *o == "fail")
                .expect("a failure");
            assert!(
                outcomes[position + 1..].iter().all(|o| *o == "skipped"),
                "{context}"
            );
        }
        None => {
            assert_eq!(answer["decision"], "allow", "{context}");
            assert!(!outcomes.contains(&"fail"), "{context}");
        }
    }

    let forwarded_before = stack.upstream.count();
    let denied_before = match reason {
        Some(reason) => denials(gateway, reason).await,
        None => 0,
    };
    let response = proxied(gateway, method, path, token).await;
    match (status, reason) {
        (Some(status), Some(reason)) => {
            assert_eq!(response.status, status, "{context}");
            assert_eq!(response.json()["detail"], answer["detail"], "{context}");
            assert_eq!(
                denials(gateway, reason).await,
                denied_before + 1,
                "{context}"
            );
            assert_eq!(stack.upstream.count(), forwarded_before, "{context}");
        }
        _ => {
            assert_eq!(response.status, 200, "{context}");
            assert_eq!(stack.upstream.count(), forwarded_before + 1, "{context}");
        }
    }
    answer
}

#[tokio::test]
async fn explanations_match_what_the_proxy_does_for_every_kind_of_request() {
    let stack = stack().await;
    let base = stack.jwks.base_url();
    let alice = better_auth_claims(&base, "alice");
    let eddsa = stack.key.sign(&alice);
    let hs = hs256(&claims_for("alice"));
    let forged = Ed25519Key::generate("key-1").sign(&alice);
    let expired = stack
        .key
        .sign(&with_claims(alice.clone(), &json!({"exp": now() - 3600})));
    let wrong_issuer = stack.key.sign(&with_claims(
        alice.clone(),
        &json!({"iss": "https://evil.example"}),
    ));
    let wrong_audience = stack.key.sign(&with_claims(
        alice.clone(),
        &json!({"aud": "https://other.example"}),
    ));
    let tasks = "/api/alice/tasks";

    let allowed = assert_explained(&stack, ("GET", tasks, Some(&eddsa)), (None, None), None).await;
    for check in [
        "path",
        "route",
        "authorization",
        "token_header",
        "key",
        "signature",
        "claims",
        "claims.exp",
        "claims.iat",
        "claims.iss",
        "claims.aud",
        "claims.sub",
        "user_binding",
    ] {
        assert_eq!(outcome(&allowed, check), "pass", "{check}: {allowed}");
    }
    assert_eq!(
        outcome(&allowed, "rate_limit"),
        "skipped",
        "no limit configured"
    );
    // The claims may be shown.
    assert_eq!(allowed["claims"]["sub"], "alice");
    assert_eq!(allowed["claims"]["email"], "alice@example.com");
    let allowed_hs = assert_explained(&stack, ("POST", tasks, Some(&hs)), (None, None), None).await;
    assert_eq!(
        outcome(&allowed_hs, "claims.iss"),
        "skipped",
        "no issuer set for HS256"
    );

    let cases: [(Request, (u16, &str), &str); 10] = [
        (
            ("GET", "/api/alice/../bob/tasks", Some(&eddsa)),
            (400, "bad_path"),
            "path",
        ),
        (
            ("GET", "/api/alice/nothing", Some(&eddsa)),
            (404, "not_found"),
            "route",
        ),
        (
            ("GET", tasks, None),
            (401, "missing_token"),
            "authorization",
        ),
        (
            ("GET", tasks, Some("not-a-jwt")),
            (401, "malformed_token"),
            "token_header",
        ),
        (
            ("GET", tasks, Some(&forged)),
            (401, "bad_signature"),
            "signature",
        ),
        (
            ("GET", tasks, Some(&expired)),
            (401, "expired"),
            "claims.exp",
        ),
        (
            ("GET", tasks, Some(&wrong_issuer)),
            (401, "wrong_issuer"),
            "claims.iss",
        ),
        (
            ("GET", tasks, Some(&wrong_audience)),
            (401, "wrong_audience"),
            "claims.aud",
        ),
        (
            ("GET", "/api/bob/tasks", Some(&eddsa)),
            (403, "user_mismatch"),
            "user_binding",
        ),
        (
            ("DELETE", tasks, Some(&eddsa)),
            (405, "method_not_allowed"),
            "route",
        ),
    ];
    for (request, (status, reason), failed) in cases {
        assert_explained(&stack, request, (Some(status), Some(reason)), Some(failed)).await;
    }
}

#[tokio::test]
async fn an_unknown_kid_is_explained_with_no_more_jwks_fetches_than_the_proxy_makes() {
    let stack = stack().await;
    let stranger = Ed25519Key::generate("key-unknown");
    let token = stranger.sign(&better_auth_claims(&stack.jwks.base_url(), "alice"));
    let fetches = stack.jwks.fetch_count();
    let answer = assert_explained(
        &stack,
        ("GET", "/api/alice/tasks", Some(&token)),
        (Some(401), Some("unknown_key")),
        Some("key"),
    )
    .await;
    assert_eq!(outcome(&answer, "token_header"), "pass");
    assert!(
        answer["checks"].to_string().contains("key-unknown"),
        "the kid is named: {answer}"
    );
    // One on-demand refetch at most (JWKS_MIN_REFETCH_MS spaces them out); the proxied request
    // a moment later finds the refetch already spent.
    assert!(
        stack.jwks.fetch_count() <= fetches + 1,
        "{} fetches",
        stack.jwks.fetch_count() - fetches
    );
    for _ in 0..5 {
        explain(&stack.gateway, "GET", "/api/alice/tasks", Some(&token)).await;
    }
    assert!(stack.jwks.fetch_count() <= fetches + 1, "explain refetched");
}

#[tokio::test]
async fn explaining_leaves_the_token_cache_and_the_upstream_alone() {
    let stack = stack().await;
    let token = stack
        .key
        .sign(&better_auth_claims(&stack.jwks.base_url(), "alice"));
    let cache_lookups = |metrics: &str| {
        metrics
            .lines()
            .filter(|line| line.starts_with("gateway_token_cache_total"))
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    let before = cache_lookups(&stack.gateway.metrics().await);
    for _ in 0..3 {
        let answer = explain(&stack.gateway, "GET", "/api/alice/tasks", Some(&token)).await;
        assert_eq!(answer["decision"], "allow");
    }
    assert_eq!(cache_lookups(&stack.gateway.metrics().await), before);
    assert_eq!(stack.upstream.count(), 0, "explain forwarded a request");
}

#[tokio::test]
async fn explain_needs_the_admin_token_and_a_well_formed_body() {
    let stack = stack().await;
    let body = json!({"method": "GET", "path": "/api/alice/tasks"});
    for admin in [None, Some("wrong-token"), Some(&ADMIN_TOKEN[1..])] {
        let (status, text) = explain_as(&stack.gateway, admin, &body).await;
        assert_eq!(status, 401, "{admin:?}: {text}");
        assert_eq!(text, r#"{"detail":"Not authenticated"}"#);
    }
    let get = stack
        .gateway
        .client
        .get(stack.gateway.admin_url("/explain"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .expect("admin reachable");
    assert_eq!(get.status(), 405);

    let bad_bodies = [
        (
            json!({"path": "/api/alice/tasks"}),
            vec![json!(["body", "method"])],
        ),
        (
            json!({"method": 7, "path": ["x"]}),
            vec![json!(["body", "method"]), json!(["body", "path"])],
        ),
        (
            json!({"method": "GET", "path": "/api/alice/tasks", "authorization": 1}),
            vec![json!(["body", "authorization"])],
        ),
        (json!(["GET", "/"]), vec![json!(["body"])]),
        (
            json!({"method": "G E T", "path": "/api/alice/tasks"}),
            vec![json!(["body", "method"])],
        ),
    ];
    for (body, locations) in bad_bodies {
        let (status, text) = explain_as(&stack.gateway, Some(ADMIN_TOKEN), &body).await;
        assert_eq!(status, 422, "{body}: {text}");
        let answer: Value = serde_json::from_str(&text).expect("JSON");
        let got: Vec<Value> = answer["detail"]
            .as_array()
            .expect("a FastAPI list of issues")
            .iter()
            .map(|issue| issue["loc"].clone())
            .collect();
        assert_eq!(got, locations, "{body}");
    }
    let not_json = stack
        .gateway
        .client
        .post(stack.gateway.admin_url("/explain"))
        .bearer_auth(ADMIN_TOKEN)
        .body("{")
        .send()
        .await
        .expect("admin reachable");
    assert_eq!(not_json.status(), 422);
    let answer: Value = not_json.json().await.expect("JSON");
    assert_eq!(answer["detail"][0]["type"], "json_invalid");
    assert_eq!(stack.upstream.count(), 0);
}

#[tokio::test]
async fn explain_is_not_served_without_an_admin_token() {
    let upstream = EchoUpstream::start().await;
    let gateway = TestGateway::with_shared_secret(&upstream.url()).await;
    let body = json!({"method": "GET", "path": "/api/alice/tasks"});
    for admin in [None, Some(ADMIN_TOKEN)] {
        let (status, _) = explain_as(&gateway, admin, &body).await;
        assert_eq!(status, 404, "{admin:?}");
    }
}

#[tokio::test]
async fn a_revoked_session_is_explained_as_the_proxy_refuses_it() {
    let data = tempfile::tempdir().expect("temp dir");
    let file = data.path().join("revocations.json");
    let file = file.to_str().expect("utf-8 path");
    let stack = Arena::start(&[(GATEWAY_ADMIN_TOKEN, ADMIN_TOKEN), (REVOCATION_FILE, file)]).await;
    let base = stack.jwks.base_url();
    let session = |sid: &str| {
        stack.key.sign(&with_claims(
            better_auth_claims(&base, "alice"),
            &json!({ "sid": sid }),
        ))
    };
    let (signed_out, other) = (session("session-1"), session("session-2"));
    let tasks = "/api/alice/tasks";
    assert_explained(
        &stack,
        ("GET", tasks, Some(&signed_out)),
        (None, None),
        None,
    )
    .await;

    let revoked = stack
        .gateway
        .client
        .post(stack.gateway.admin_url("/revocations"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({ "sid": "session-1" }))
        .send()
        .await
        .expect("admin reachable");
    assert_eq!(revoked.status(), 204);

    let answer = assert_explained(
        &stack,
        ("GET", tasks, Some(&signed_out)),
        (Some(401), Some("revoked")),
        Some("revocation"),
    )
    .await;
    // Every check before the revocation passed: the token itself is genuine.
    for check in ["signature", "claims.exp", "claims.sub"] {
        assert_eq!(outcome(&answer, check), "pass", "{check}: {answer}");
    }
    let other = assert_explained(&stack, ("GET", tasks, Some(&other)), (None, None), None).await;
    assert_eq!(outcome(&other, "revocation"), "pass", "{other}");
}
