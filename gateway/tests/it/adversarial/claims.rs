//! Defends the claims of a genuinely signed token: time claims of the wrong type or out of
//! range, subjects that are missing, empty, not strings or path tricks, and an email claim
//! that tries to inject headers are all refused or made harmless.

use serde_json::{Value, json};

use crate::adversarial::Arena;
use crate::support::now;
use crate::support::servers::echoed_headers;
use crate::support::stack::assert_still_serving;
use crate::support::tokens::{claims_for, hs256, with_claims};

#[tokio::test]
async fn time_claims_of_the_wrong_type_or_out_of_range_are_refused() {
    let arena = Arena::start(&[]).await;
    let now = now();
    let wrong = [
        json!({"exp": (now + 600).to_string()}),
        json!({"exp": "never"}),
        json!({"exp": true}),
        json!({"exp": null}),
        json!({"exp": []}),
        json!({"exp": {"$gt": 0}}),
        json!({"exp": -1}),
        json!({"exp": 0}),
        json!({"exp": 1}),
        json!({"exp": 1e300}),
        json!({"exp": -1e300}),
        json!({"exp": 18_446_744_073_709_551_616.0_f64}),
        json!({"nbf": (now - 600).to_string()}),
        json!({"nbf": true}),
        json!({"nbf": now + 3600}),
        json!({"nbf": u64::MAX}),
        json!({"nbf": 1e19}),
        json!({"iat": now.to_string()}),
        json!({"iat": false}),
        json!({"iat": -5}),
        json!({"iat": [now]}),
        json!({"iat": now + 3600}),
        json!({"iat": u64::MAX}),
        json!({"iat": 1e300}),
    ];
    for change in &wrong {
        for (kind, token) in [
            ("HS256", hs256(&with_claims(claims_for("alice"), change))),
            (
                "EdDSA",
                arena.key.sign(&with_claims(arena.claims("alice"), change)),
            ),
        ] {
            arena
                .assert_refused(&format!("{kind} {change}"), &token)
                .await;
        }
    }
    // Fractional NumericDates are valid JWT, and a missing iat is fine.
    for change in [
        json!({"exp": now as f64 + 600.5}),
        json!({"iat": now as f64 - 0.25}),
        json!({"iat": null}),
    ] {
        let token = hs256(&with_claims(claims_for("alice"), &change));
        assert_eq!(
            arena.status("/api/alice/tasks", &token).await,
            200,
            "{change}"
        );
    }
    assert_still_serving(&arena.gateway).await;
}

#[tokio::test]
async fn subjects_that_are_missing_empty_non_strings_or_path_tricks_never_pass() {
    let arena = Arena::start(&[]).await;
    let not_strings = [
        json!({"sub": null}),
        json!({"sub": ""}),
        json!({"sub": 42}),
        json!({"sub": true}),
        json!({"sub": ["alice"]}),
        json!({"sub": {"id": "alice"}}),
    ];
    for change in &not_strings {
        let token = hs256(&with_claims(claims_for("alice"), change));
        arena.assert_refused(&change.to_string(), &token).await;
        let token = arena.key.sign(&with_claims(arena.claims("alice"), change));
        arena.assert_refused(&change.to_string(), &token).await;
    }
    // String subjects that try to reach another user's path: the path's user id must equal the
    // subject byte for byte, and a path that could hold these bytes is refused before that.
    let tricky = [
        "alice/../bob",
        "../bob",
        "..",
        ".",
        "bob/",
        "alice\r\nX-User-Id: bob",
        "alice\nbob",
        "alice\u{0000}",
        " alice",
        "alice ",
        "ALICE",
        "alice%2f..%2fbob",
        "alicé",
    ];
    let before = arena.upstream.count();
    for sub in tricky {
        let token = hs256(&claims_for(sub));
        for path in [
            "/api/alice/tasks",
            "/api/bob/tasks",
            "/api/alice/../bob/tasks",
            "/api/alice%2f..%2fbob/tasks",
            "/api/../tasks",
        ] {
            // Raw, since a client library would resolve the dot segments itself.
            let status = arena.gateway.raw_get(path, Some(&token)).await.status;
            assert!(
                matches!(status, 400 | 403),
                "sub {sub:?} on {path}: {status}"
            );
        }
    }
    assert_eq!(
        arena.upstream.count(),
        before,
        "{:?}",
        arena.upstream.seen()
    );
    // Better Auth's user object has an `id` too; only `sub` counts.
    let mut claims = arena.claims("alice");
    claims["id"] = json!("bob");
    assert_eq!(
        arena
            .status("/api/bob/tasks", &arena.key.sign(&claims))
            .await,
        403
    );
    assert_still_serving(&arena.gateway).await;
}

#[tokio::test]
async fn an_email_claim_cannot_inject_headers() {
    let arena = Arena::start(&[]).await;
    for email in [
        json!("alice@example.com\r\nX-User-Id: bob"),
        json!("alice@example.com\nx-gateway-assertion: t=1,v1=00"),
        json!("al\u{0}ice@example.com"),
        json!(["bob@example.com"]),
        json!(42),
    ] {
        let token = hs256(&with_claims(
            claims_for("alice"),
            &json!({ "email": email }),
        ));
        let response = arena.gateway.get("/api/alice/tasks", &token).await;
        assert_eq!(response.status(), 200, "{email}");
        let echo: Value = response.json().await.expect("echo");
        let headers = echoed_headers(&echo);
        let values = |name: &str| -> Vec<String> {
            headers
                .iter()
                .filter(|(key, _)| key == name)
                .map(|(_, value)| value.clone())
                .collect()
        };
        assert_eq!(values("x-user-id"), ["alice"], "{email}");
        assert_eq!(values("x-gateway-assertion").len(), 1, "{email}");
        // An email that cannot be a header value is left out, never mangled into one.
        assert!(
            values("x-user-email").is_empty(),
            "{email}: {:?}",
            values("x-user-email")
        );
    }
    assert_still_serving(&arena.gateway).await;
}
