//! Defends path canonicalisation and route binding: the gateway decides on exactly the bytes it
//! forwards. A target that another parser could read as a different path (dot segments, encoded
//! separators, double encoding, overlong UTF-8, fullwidth characters, parameters) is a
//! 400 before authorization, or is forwarded byte for byte with the assertion signing those very
//! bytes, so the task service can only read the user the token proved. (Fragments never get that
//! far: pingora drops everything from `#` before the gateway sees the target.)

use common::assertion::{AssertedRequest, AssertionVerifier, SigningSecret};
use serde_json::Value;

use crate::adversarial::Arena;
use crate::support::clients::{RawResponse, raw_exchange};
use crate::support::servers::echoed_headers;
use crate::support::stack::assert_still_serving;
use crate::support::tokens::{claims_for, hs256};
use crate::support::{SIGNING_SECRET, now};

/// `GET target` with alice's token, on its own connection.
async fn get(arena: &Arena, target: &str) -> RawResponse {
    let token = hs256(&claims_for("alice"));
    arena.gateway.raw_get(target, Some(&token)).await
}

#[tokio::test]
async fn targets_another_parser_could_read_differently_are_400_before_authorization() {
    let arena = Arena::start(&[]).await;
    let refused = [
        // Dot segments, raw and encoded in every case and mix.
        "/api/alice/../bob/tasks",
        "/api/bob/tasks/..",
        "/api/alice/tasks/../../bob/tasks",
        "/api/./alice/tasks",
        "/api/%2e%2e/bob/tasks",
        "/api/alice/%2E%2E/bob/tasks",
        "/api/alice/.%2e/bob/tasks",
        "/api/alice/%2e./bob/tasks",
        "/api/alice/tasks/%2e",
        // Encoded separators.
        "/api/alice%2fbob/tasks",
        "/api/alice%2F..%2Fbob/tasks",
        "/api/alice/tasks%2f1",
        "/api/alice%5cbob/tasks",
        "/api/alice/tasks/1%5C..%5C2",
        // Backslashes, raw.
        "/api/alice\\..\\bob/tasks",
        "\\api\\alice\\tasks",
        // Empty segments.
        "//api/alice/tasks",
        "/api//alice/tasks",
        "/api/alice//tasks",
        "/api/alice/tasks/",
        "/api/alice/tasks//1",
        // Parameters.
        "/api/alice;/tasks",
        "/api/alice;x=bob/tasks",
        "/api/alice/tasks;jsessionid=1",
        "/api/alice/tasks/1;.css",
        // Double encoding, overlong UTF-8 and fullwidth characters in the user id, which must
        // read the same decoded or not.
        "/api/%252e%252e/tasks",
        "/api/alice%252fbob/tasks",
        "/api/%61lice/tasks",
        "/api/%c0%ae%c0%ae/tasks",
        "/api/alice%c0%afbob/tasks",
        "/api/%ef%bc%8e%ef%bc%8e/tasks",
        "/api/alice%ef%bc%8fbob/tasks",
        // Control bytes, encoded.
        "/api/alice%00/tasks",
        "/api/alice/tasks/1%0d%0aX-User-Id:%20bob",
        "/api/alice/tasks%09",
        "/api/alice/tasks/1%7f",
        // Broken escapes.
        "/api/alice/tasks/%",
        "/api/alice/tasks/%g0",
        "/api/alice/tasks/1%2",
        // Absolute-form with tricks in the authority or the path, or an authority other than
        // the Host header (pingora refuses that as ambiguous).
        "http://alice@gateway/api/bob/tasks",
        "https://evil.example/api/alice/tasks",
        "HTTP://GATEWAY:8080/api/alice/tasks",
        "http://gateway/api/alice/../bob/tasks",
        "http://gateway//api/alice/tasks",
        "http:/api/alice/tasks",
        "//gateway/api/alice/tasks",
        // Other target forms.
        "*",
        "gateway:443",
        "api/alice/tasks",
    ];
    let bodies_before = arena.upstream.count();
    for target in refused {
        for token in [true, false] {
            let request = if token {
                get(&arena, target).await
            } else {
                arena.gateway.raw_get(target, None).await
            };
            assert_eq!(request.status, 400, "{target} (token: {token})");
            if !request.body.is_empty() {
                assert_eq!(
                    request.json()["detail"],
                    "Malformed request path",
                    "{target}"
                );
            }
        }
    }
    // Raw bytes a client library would never send: non-ASCII (fullwidth solidus and full stop,
    // overlong UTF-8) and control bytes in the target.
    for raw in [
        &b"/api/alice\xef\xbc\x8fbob/tasks"[..],
        b"/api/\xef\xbc\x8e\xef\xbc\x8e/tasks",
        b"/api/\xc0\xae\xc0\xae/tasks",
        b"/api/alice/tasks\x7f",
        b"/api/alice/tasks/1\x00",
    ] {
        let mut request = b"GET ".to_vec();
        request.extend_from_slice(raw);
        request.extend_from_slice(b" HTTP/1.1\r\nHost: gateway\r\nConnection: close\r\n\r\n");
        let (responses, closed) = raw_exchange(
            arena.gateway.addr,
            &request,
            std::time::Duration::from_millis(500),
        )
        .await;
        let statuses: Vec<u16> = responses.iter().map(|r| r.status).collect();
        assert!(
            statuses == [400] || (statuses.is_empty() && closed),
            "{}: {statuses:?}",
            String::from_utf8_lossy(raw)
        );
    }
    assert_eq!(
        arena.upstream.count(),
        bodies_before,
        "{:?}",
        arena.upstream.seen()
    );
    assert_still_serving(&arena.gateway).await;
}

#[tokio::test]
async fn case_variants_and_unknown_prefixes_are_not_routes() {
    let arena = Arena::start(&[]).await;
    for target in [
        "/API/alice/tasks",
        "/Api/alice/tasks",
        "/api/alice/TASKS",
        "/api/alice/Tasks",
        "/api/alice/t%61sks",
        "/%61pi/alice/tasks",
        "/api/alice/tasks/1/COMPLETE",
        "/v1/api/alice/tasks",
        "/api/v1/alice/tasks",
        "/gateway/api/alice/tasks",
        "/admin",
        "/metrics",
        "/readyz",
    ] {
        assert_eq!(get(&arena, target).await.status, 404, "{target}");
    }
    // The user id is compared byte for byte: another case is another user.
    for target in ["/api/ALICE/tasks", "/api/Alice/tasks", "/api/alice2/tasks"] {
        assert_eq!(get(&arena, target).await.status, 403, "{target}");
    }
    assert_eq!(arena.upstream.count(), 0, "{:?}", arena.upstream.seen());
    assert_still_serving(&arena.gateway).await;
}

#[tokio::test]
async fn what_is_forwarded_is_exactly_what_was_checked_and_signed() {
    let arena = Arena::start(&[]).await;
    let verifier =
        AssertionVerifier::new(SigningSecret::new(SIGNING_SECRET).expect("secret"), None);
    // Escapes outside the user id pass the gateway unchanged; the task service decodes them
    // once and refuses what is not a task id, but the gateway never normalises them into
    // something else, and the signed target is these bytes.
    let forwarded = [
        ("/api/alice/tasks/%31", "/api/alice/tasks/%31"),
        ("/api/alice/tasks/%252e%252e", "/api/alice/tasks/%252e%252e"),
        (
            "/api/alice/tasks/%c0%ae%c0%ae",
            "/api/alice/tasks/%c0%ae%c0%ae",
        ),
        ("/api/alice/tasks/%ef%bc%8f", "/api/alice/tasks/%ef%bc%8f"),
        (
            "/api/alice/tasks?user_id=bob&q=%2e%2e%2f",
            "/api/alice/tasks?user_id=bob&q=%2e%2e%2f",
        ),
        (
            "/api/alice/tasks?q=../../bob",
            "/api/alice/tasks?q=../../bob",
        ),
        ("http://gateway/api/alice/tasks?x=1", "/api/alice/tasks?x=1"),
        ("HTTP://gateway/api/alice/tasks", "/api/alice/tasks"),
        ("https://gateway/api/alice/tasks", "/api/alice/tasks"),
        // A fragment is not part of a request target: pingora drops it before the gateway sees
        // the target, so what is checked, signed and forwarded is the path before the `#`.
        (
            "/api/alice/tasks/1#/../../bob/tasks/1",
            "/api/alice/tasks/1",
        ),
        ("/api/alice/tasks?q=#/../bob", "/api/alice/tasks?q="),
    ];
    for (target, expected) in forwarded {
        let response = get(&arena, target).await;
        assert_eq!(response.status, 200, "{target}");
        let echo: Value = response.json();
        assert_eq!(echo["target"], expected, "{target}");
        let headers = echoed_headers(&echo);
        let assertion = headers
            .iter()
            .find(|(name, _)| name == "x-gateway-assertion")
            .map(|(_, value)| value.as_str())
            .expect("an assertion");
        let signed = AssertedRequest {
            method: "GET",
            path_and_query: expected,
            user_id: "alice",
        };
        assert_eq!(
            verifier.verify(assertion, &signed, now()),
            Ok(()),
            "{target}"
        );
    }
    // An absolute-form target naming another user is bound like any other, and so is a path
    // whose fragment would name alice.
    assert_eq!(
        get(&arena, "http://gateway/api/bob/tasks").await.status,
        403
    );
    assert_eq!(
        get(&arena, "/api/bob/tasks#/../../alice/tasks")
            .await
            .status,
        403
    );
    assert_still_serving(&arena.gateway).await;
}
