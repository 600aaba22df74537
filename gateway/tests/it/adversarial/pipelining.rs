//! HTTP/1.1 pipelining: requests sent back to back on one connection are all answered, in
//! order, or the connection is closed after an answer that says `Connection: close`.

use std::time::Duration;

use crate::support::clients::{RawResponse, raw_exchange};
use crate::support::servers::EchoUpstream;
use crate::support::stack::TestGateway;
use crate::support::tokens::{claims_for, hs256};

/// Two requests written back to back on one connection are both answered in order, or the
/// first answer says `Connection: close` and the connection then closes: never a request
/// silently dropped. Returns the responses.
async fn assert_pipelined(
    gateway: &TestGateway,
    what: &str,
    first: &str,
    second: &str,
) -> Vec<RawResponse> {
    let bytes = format!("{first}{second}");
    let (responses, closed) =
        raw_exchange(gateway.addr, bytes.as_bytes(), Duration::from_millis(1500)).await;
    let statuses: Vec<u16> = responses.iter().map(|response| response.status).collect();
    println!("{what}: {statuses:?}, closed {closed}");
    match responses.as_slice() {
        [_, _] => {}
        [only] => {
            assert!(
                only.header("connection")
                    .is_some_and(|value| value.eq_ignore_ascii_case("close")),
                "{what}: one answer without Connection: close for two requests: {statuses:?} {:?}",
                only.headers
            );
            assert!(
                closed,
                "{what}: the connection stayed open after Connection: close"
            );
        }
        _ => panic!("{what}: {statuses:?} for two requests (closed {closed})"),
    }
    responses
}

fn get(path: &str, token: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {token}\r\n\r\n")
}

#[tokio::test]
async fn pipelined_requests_are_all_answered_in_order_or_refused_with_connection_close() {
    let upstream = EchoUpstream::start().await;
    let gateway = TestGateway::with_shared_secret(&upstream.url()).await;
    let alice = hs256(&claims_for("alice"));
    let body = r#"{"title":"pipelined"}"#;
    let post = format!(
        "POST /api/alice/tasks HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {alice}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );

    let both = assert_pipelined(
        &gateway,
        "GET + GET",
        &get("/api/alice/tasks?n=1", &alice),
        &get("/api/alice/tasks?n=2", &alice),
    )
    .await;
    assert_eq!(both.len(), 2, "two valid GETs are both served");
    for (response, n) in both.iter().zip(["1", "2"]) {
        assert_eq!(response.status, 200);
        assert_eq!(response.json()["target"], format!("/api/alice/tasks?n={n}"));
    }

    let after_post = assert_pipelined(
        &gateway,
        "POST with a body + GET",
        &post,
        &get("/api/alice/tasks?n=3", &alice),
    )
    .await;
    assert_eq!(after_post[0].status, 200);
    assert_eq!(after_post[0].json()["method"], "POST");
    if let Some(second) = after_post.get(1) {
        assert_eq!(second.json()["target"], "/api/alice/tasks?n=3");
    }

    for (what, refused, status) in [
        ("401 first", get("/api/alice/tasks", "not.a.token"), 401),
        ("403 first", get("/api/bob/tasks", &alice), 403),
        ("404 first", get("/nowhere", &alice), 404),
        (
            "401 POST with a body first",
            post.replace(&alice, "forged"),
            401,
        ),
    ] {
        let responses = assert_pipelined(
            &gateway,
            what,
            &refused,
            &get("/api/alice/tasks?n=4", &alice),
        )
        .await;
        assert_eq!(responses[0].status, status, "{what}");
        if let Some(second) = responses.get(1) {
            assert_eq!(second.status, 200, "{what}");
        }
    }
}
