//! Refused requests: every kind of bad token is a 401 with a bearer challenge, another user's
//! path a 403, and none of them reaches the upstream.

use std::sync::atomic::Ordering;

use jsonwebtoken::Algorithm;
use serde_json::{Value, json};

use crate::support::servers::EchoUpstream;
use crate::support::tokens::{hmac_token, hs256, unsigned, with_claims};
use crate::support::{HMAC_SECRET, now};

use super::{claims, gateway_for, token};

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
