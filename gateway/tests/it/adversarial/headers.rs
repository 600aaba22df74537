//! Defends the request head: exactly one `Authorization: Bearer` header is the only place a
//! token is read from; oversized and overfull heads get a clean 4xx (or a closed connection)
//! without hurting anyone else; no client-sent identity header, in any spelling or by way of
//! `Connection`, reaches the task service; and no header can change the method or target the
//! gateway authorized.

use std::time::Duration;

use common::headers::CLIENT_IDENTITY_HEADERS;
use gateway::forward::OVERRIDE_HEADERS;
use serde_json::Value;

use crate::adversarial::Arena;
use crate::support::clients::raw_exchange;
use crate::support::servers::echoed_headers;
use crate::support::stack::assert_still_serving;
use crate::support::tokens::{claims_for, hmac_token, hs256};
use crate::support::{SIGNING_SECRET, now};

/// `GET /api/alice/tasks` with the given extra header lines, on its own connection.
fn get_alice(header_lines: &str) -> Vec<u8> {
    format!(
        "GET /api/alice/tasks HTTP/1.1\r\nHost: gateway\r\n{header_lines}Connection: close\r\n\r\n"
    )
    .into_bytes()
}

/// The values of header `name` that the echo upstream received.
fn received<'a>(headers: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    headers
        .iter()
        .filter(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
        .collect()
}

#[tokio::test]
async fn duplicate_or_comma_joined_authorization_headers_are_refused() {
    let arena = Arena::start(&[]).await;
    let alice = hs256(&claims_for("alice"));
    let bob = hs256(&claims_for("bob"));
    let cases = [
        format!("Authorization: Bearer {alice}\r\nAuthorization: Bearer {alice}\r\n"),
        format!("Authorization: Bearer {alice}\r\nAuthorization: Bearer {bob}\r\n"),
        format!("Authorization: Bearer {alice}\r\nauthorization: Bearer garbage\r\n"),
        format!("Authorization: Bearer garbage\r\nAUTHORIZATION: Bearer {alice}\r\n"),
        format!("Authorization: Bearer {alice}, Bearer {bob}\r\n"),
        format!("Authorization: Bearer {bob}, Bearer {alice}\r\n"),
        format!("Authorization: Bearer {alice},{bob}\r\n"),
        format!("Authorization: Bearer {alice} {bob}\r\n"),
        format!("Authorization: Basic YWxpY2U6cHc=, Bearer {alice}\r\n"),
        format!("Authorization: Bearer\t{alice}\r\n"),
        format!("Authorization: Bearer{alice}\r\n"),
        format!("Authorization: Bearer \"{alice}\"\r\n"),
        format!("Authorization: {alice}\r\n"),
        "Authorization: Bearer \r\n".to_owned(),
        "Authorization: \r\n".to_owned(),
    ];
    for lines in &cases {
        let response = arena.gateway.raw(&get_alice(lines)).await;
        assert_eq!(response.status, 401, "{lines:?}");
        assert!(
            response
                .header("www-authenticate")
                .is_some_and(|challenge| challenge.starts_with("Bearer")),
            "{lines:?}"
        );
    }
    assert_eq!(arena.upstream.count(), 0, "{:?}", arena.upstream.seen());
    // The scheme is case-insensitive (RFC 9110 §11.1), and one header is all it takes.
    let response = arena
        .gateway
        .raw(&get_alice(&format!("authorization: bEaReR {alice}\r\n")))
        .await;
    assert_eq!(response.status, 200);
    assert_still_serving(&arena.gateway).await;
}

#[tokio::test]
async fn a_token_in_the_query_string_or_a_cookie_is_ignored() {
    let arena = Arena::start(&[]).await;
    let alice = hs256(&claims_for("alice"));
    let bob = hs256(&claims_for("bob"));
    for query in [
        "access_token",
        "token",
        "jwt",
        "id_token",
        "authorization",
        "bearer",
    ] {
        let request = format!(
            "GET /api/alice/tasks?{query}={alice} HTTP/1.1\r\nHost: gateway\r\nConnection: close\r\n\r\n"
        );
        let response = arena.gateway.raw(request.as_bytes()).await;
        assert_eq!(response.status, 401, "?{query}=");
    }
    for cookie in [
        format!("token={alice}"),
        format!("access_token={alice}"),
        format!("jwt={alice}"),
        format!("Authorization=Bearer {alice}"),
        format!("better-auth.session_token={alice}"),
        format!("better-auth.session_data={alice}"),
        format!("__Secure-better-auth.session_token={alice}"),
    ] {
        let response = arena
            .gateway
            .raw(&get_alice(&format!("Cookie: {cookie}\r\n")))
            .await;
        assert_eq!(response.status, 401, "Cookie: {cookie}");
    }
    // Another user's token elsewhere changes nothing about who the request is from.
    let request = format!(
        "GET /api/bob/tasks?access_token={bob} HTTP/1.1\r\nHost: gateway\r\n\
         Authorization: Bearer {alice}\r\nCookie: token={bob}\r\nConnection: close\r\n\r\n"
    );
    assert_eq!(arena.gateway.raw(request.as_bytes()).await.status, 403);
    assert_eq!(arena.upstream.count(), 0, "{:?}", arena.upstream.seen());
    assert_still_serving(&arena.gateway).await;
}

#[tokio::test]
async fn huge_and_numerous_headers_get_a_clean_4xx_and_the_gateway_keeps_serving() {
    let arena = Arena::start(&[]).await;
    let alice = hs256(&claims_for("alice"));
    let quiet = Duration::from_millis(500);
    let mut cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "Authorization of 8 KiB + 1",
            get_alice(&format!("Authorization: Bearer {}\r\n", "a".repeat(8 * 1024 - 6))),
        ),
        (
            "Authorization of 64 KiB",
            get_alice(&format!("Authorization: Bearer {alice}{}\r\n", "A".repeat(64 * 1024))),
        ),
        (
            "Authorization of 900 KiB",
            get_alice(&format!("Authorization: Bearer {}\r\n", "A".repeat(900 * 1024))),
        ),
        (
            "one 2 MiB header (beyond pingora's 1 MiB head)",
            get_alice(&format!(
                "Authorization: Bearer {alice}\r\nX-Filler: {}\r\n",
                "x".repeat(2 * 1024 * 1024)
            )),
        ),
        (
            "300 headers (beyond pingora's 256)",
            get_alice(&format!(
                "Authorization: Bearer {alice}\r\n{}",
                (0..300).map(|i| format!("X-Filler-{i}: {i}\r\n")).collect::<String>()
            )),
        ),
        (
            "2000 headers of 1 KiB",
            get_alice(
                &(0..2000)
                    .map(|i| format!("X-Filler-{i}: {}\r\n", "y".repeat(1024)))
                    .collect::<String>(),
            ),
        ),
        (
            "a 64 KiB request line",
            format!(
                "GET /api/alice/tasks?q={} HTTP/1.1\r\nHost: gateway\r\nAuthorization: Bearer {alice}\r\n\r\n",
                "q".repeat(64 * 1024)
            )
            .into_bytes(),
        ),
    ];
    // A head that never ends, ending in the middle of a header line.
    cases.push((
        "1.5 MiB of header lines with no end",
        format!(
            "GET /api/alice/tasks HTTP/1.1\r\nX-Filler: {}",
            "z".repeat(1536 * 1024)
        )
        .into_bytes(),
    ));
    for (name, request) in &cases {
        let (responses, closed) = raw_exchange(arena.gateway.addr, request, quiet).await;
        let statuses: Vec<u16> = responses.iter().map(|response| response.status).collect();
        println!("{name}: {statuses:?}, closed: {closed}");
        // A 4xx, or a closed connection; never a 2xx or a 5xx.
        assert!(
            statuses.iter().all(|status| (400..500).contains(status)),
            "{name}: {statuses:?}"
        );
        assert!(
            !statuses.is_empty() || closed,
            "{name}: no answer and left open"
        );
        assert_still_serving(&arena.gateway).await;
    }
    assert_eq!(arena.upstream.seen_besides_canary(), Vec::<String>::new());

    // Many headers within the limits are fine (80: hyper, under the task service, takes 100).
    let many = (0..80)
        .map(|i| format!("X-Filler-{i}: {i}\r\n"))
        .collect::<String>();
    let response = arena
        .gateway
        .raw(&get_alice(&format!(
            "Authorization: Bearer {alice}\r\n{many}"
        )))
        .await;
    assert_eq!(response.status, 200);
}

/// Title-Case, UPPER, lower and mixed spellings of a header name.
fn spellings(name: &str) -> Vec<String> {
    let title = name
        .split('-')
        .map(|word| {
            let mut chars = word.chars();
            chars.next().map_or_else(String::new, |first| {
                first.to_ascii_uppercase().to_string() + chars.as_str()
            })
        })
        .collect::<Vec<_>>()
        .join("-");
    let mixed = name
        .chars()
        .enumerate()
        .map(|(i, c)| {
            if i % 2 == 0 {
                c.to_ascii_uppercase()
            } else {
                c
            }
        })
        .collect();
    vec![name.to_owned(), name.to_ascii_uppercase(), title, mixed]
}

#[tokio::test]
async fn identity_headers_in_every_spelling_and_via_connection_never_reach_the_task_service() {
    let arena = Arena::start(&[]).await;
    let alice = hs256(&claims_for("alice"));
    let verifier = common::assertion::AssertionVerifier::new(
        common::assertion::SigningSecret::new(SIGNING_SECRET).expect("secret"),
        None,
    );
    let mut spoofed = String::new();
    let mut nominated = Vec::new();
    for name in CLIENT_IDENTITY_HEADERS {
        // Four spellings, each with other whitespace around the value: 100 lines in all, within
        // pingora's 256-header limit.
        for (index, spelling) in spellings(name).into_iter().enumerate() {
            let line = match index {
                0 => format!("{spelling}: mallory-{index}\r\n"),
                1 => format!("{spelling}:mallory-tight\r\n"),
                2 => format!("{spelling}:   mallory-padded   \r\n"),
                _ => format!("{spelling}:\tmallory-tab\r\n"),
            };
            spoofed.push_str(&line);
        }
        nominated.push(name.to_ascii_uppercase());
    }
    // Underscore spellings are a different header to the task service, but must not be read as
    // identity by anyone either: the gateway's own header is the only `x-user-id`.
    spoofed.push_str("X_User_Id: mallory\r\nx_gateway_assertion: t=1,v1=00\r\n");
    // Nominating identity headers as hop-by-hop removes the client's copies only (pingora takes
    // at most 9 nominations per request, so they go in groups of 8 plus keep-alive); nominating
    // the credentials after they were read changes nothing.
    let mut connections: Vec<String> = nominated
        .chunks(8)
        .map(|group| format!("Connection: keep-alive, {}\r\n", group.join(", ")))
        .collect();
    connections.push("Connection: authorization, x-request-id, cookie\r\n".to_owned());
    connections.push(String::new());
    for connection in &connections {
        let request = format!(
            "GET /api/alice/tasks?spoof=1 HTTP/1.1\r\nHost: gateway\r\nAuthorization: Bearer {alice}\r\n\
             {spoofed}{connection}\r\n"
        );
        let response = arena.gateway.raw(request.as_bytes()).await;
        assert_eq!(response.status, 200, "{connection:?}");
        let echo = response.json();
        let headers = echoed_headers(&echo);
        assert_eq!(received(&headers, "x-user-id"), ["alice"], "{connection:?}");
        assert_eq!(received(&headers, "x-user-email"), ["alice@example.com"]);
        let assertions = received(&headers, "x-gateway-assertion");
        assert_eq!(assertions.len(), 1);
        let signed = common::assertion::AssertedRequest {
            method: "GET",
            path_and_query: "/api/alice/tasks?spoof=1",
            user_id: "alice",
        };
        assert_eq!(verifier.verify(assertions[0], &signed, now()), Ok(()));
        for name in CLIENT_IDENTITY_HEADERS {
            if !matches!(*name, "x-user-id" | "x-user-email" | "x-gateway-assertion") {
                assert!(
                    received(&headers, name).is_empty(),
                    "{name} reached the upstream"
                );
            }
        }
        assert!(
            headers.iter().all(|(_, value)| !value.contains("mallory-")),
            "a spoofed identity reached the upstream: {headers:?}"
        );
    }
    // More nominations than that are refused outright, as JSON, and nothing is forwarded.
    let before = arena.upstream.count();
    let request = format!(
        "GET /api/alice/tasks HTTP/1.1\r\nHost: gateway\r\nAuthorization: Bearer {alice}\r\n\
         {spoofed}Connection: {}\r\n\r\n",
        nominated.join(", ")
    );
    let response = arena.gateway.raw(request.as_bytes()).await;
    assert_eq!(response.status, 400);
    assert_eq!(response.json()["detail"], "Bad Request");
    assert_eq!(arena.upstream.count(), before);
    assert_still_serving(&arena.gateway).await;
}

#[tokio::test]
async fn method_and_url_override_headers_are_ignored_and_stripped() {
    let arena = Arena::start(&[]).await;
    let alice = hs256(&claims_for("alice"));
    let mut overrides = String::new();
    for name in OVERRIDE_HEADERS {
        let value = if name.contains("method") {
            "DELETE"
        } else {
            "/api/bob/tasks/1"
        };
        for spelling in spellings(name) {
            overrides.push_str(&format!("{spelling}: {value}\r\n"));
        }
    }
    overrides.push_str("X-Forwarded-Host: admin.internal\r\nForwarded: for=1.2.3.4;host=evil\r\n");
    for (method, target) in [("GET", "/api/alice/tasks"), ("POST", "/api/alice/tasks")] {
        let request = format!(
            "{method} {target} HTTP/1.1\r\nHost: gateway\r\nAuthorization: Bearer {alice}\r\n\
             {overrides}Content-Length: 0\r\nConnection: close\r\n\r\n"
        );
        let response = arena.gateway.raw(request.as_bytes()).await;
        assert_eq!(response.status, 200);
        let echo: Value = response.json();
        assert_eq!(echo["method"], method, "the upstream saw another method");
        assert_eq!(echo["target"], target, "the upstream saw another target");
        let headers = echoed_headers(&echo);
        for name in OVERRIDE_HEADERS {
            assert!(
                received(&headers, name).is_empty(),
                "{name} reached the upstream"
            );
        }
    }
    // An override never changes the authorization decision either.
    let request = format!(
        "GET /api/bob/tasks HTTP/1.1\r\nHost: gateway\r\nAuthorization: Bearer {alice}\r\n\
         X-Original-URL: /api/alice/tasks\r\nX-Rewrite-URL: /api/alice/tasks\r\nConnection: close\r\n\r\n"
    );
    assert_eq!(arena.gateway.raw(request.as_bytes()).await.status, 403);
    assert_still_serving(&arena.gateway).await;
}

#[tokio::test]
async fn ambiguous_host_headers_are_refused() {
    let arena = Arena::start(&[]).await;
    let alice = hs256(&claims_for("alice"));
    for hosts in [
        "Host: gateway\r\nHost: evil.example\r\n",
        "Host: alice@gateway\r\n",
        "Host: gateway\r\nhost: gateway\r\n",
    ] {
        let request = format!(
            "GET /api/alice/tasks HTTP/1.1\r\n{hosts}Authorization: Bearer {alice}\r\nConnection: close\r\n\r\n"
        );
        let (responses, closed) = raw_exchange(
            arena.gateway.addr,
            request.as_bytes(),
            Duration::from_millis(500),
        )
        .await;
        let statuses: Vec<u16> = responses.iter().map(|response| response.status).collect();
        assert!(
            statuses == [400] || (statuses.is_empty() && closed),
            "{hosts:?}: {statuses:?}"
        );
    }
    assert_eq!(arena.upstream.count(), 0, "{:?}", arena.upstream.seen());
    assert_still_serving(&arena.gateway).await;
}

#[tokio::test]
async fn client_chosen_methods_paths_and_ids_never_become_metric_labels() {
    let arena = Arena::start(&[]).await;
    let alice = hs256(&claims_for("alice"));
    for (method, target) in [
        ("BREW", "/api/alice/tasks"),
        ("PURGE", "/api/alice/tasks/1"),
        ("GET", "/api/alice-label-probe/tasks"),
        ("GET", "/label-probe-path"),
        ("PROPFIND", "/label-probe-other"),
    ] {
        let request = format!(
            "{method} {target} HTTP/1.1\r\nHost: gateway\r\nAuthorization: Bearer {alice}\r\n\
             X-Request-Id: label-probe-id\r\nConnection: close\r\n\r\n"
        );
        let status = arena.gateway.raw(request.as_bytes()).await.status;
        assert!((400..500).contains(&status), "{method} {target}: {status}");
    }
    let metrics = arena.gateway.metrics().await;
    for chosen in ["BREW", "PURGE", "PROPFIND", "label-probe", "alice"] {
        assert!(!metrics.contains(chosen), "{chosen} became a label");
    }
    assert!(metrics.contains("method=\"OTHER\""));
    assert_still_serving(&arena.gateway).await;
}

#[tokio::test]
async fn an_unauthenticated_expect_100_continue_is_refused_before_its_body() {
    let arena = Arena::start(&[]).await;
    let forged = hmac_token(
        jsonwebtoken::Algorithm::HS256,
        b"wrong-secret-wrong-secret-0123456789",
        &claims_for("alice"),
    );
    for authorization in [format!("Authorization: Bearer {forged}\r\n"), String::new()] {
        // Only the head is sent: a gateway that answered 100 Continue, or waited for the
        // megabyte, would let anyone make it read bodies before checking who they are.
        let head = format!(
            "POST /api/alice/tasks HTTP/1.1\r\nHost: gateway\r\n{authorization}\
             Content-Type: application/json\r\nContent-Length: 1048576\r\nExpect: 100-continue\r\n\r\n"
        );
        let (responses, closed) = raw_exchange(
            arena.gateway.addr,
            head.as_bytes(),
            Duration::from_millis(500),
        )
        .await;
        let statuses: Vec<u16> = responses.iter().map(|response| response.status).collect();
        assert_eq!(statuses, [401], "{authorization:?}");
        assert!(closed, "the connection stayed open for the body");
    }
    assert_eq!(arena.upstream.count(), 0);
    assert_still_serving(&arena.gateway).await;
}
