//! CORS: preflights answered without a token, and the headers an allowed origin gets on
//! proxied replies and refusals alike.

use std::sync::atomic::Ordering;

use crate::support::servers::EchoUpstream;

use super::{gateway_for, token};

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
