//! Cache-Control on every reply the gateway writes itself: refusals, failures and preflights
//! must never be stored by a browser or a shared cache.

use gateway::config::{
    HEALTH_CHECK_INTERVAL_MS, RATE_LIMIT_PER_USER_PER_SECOND, UPSTREAM_READ_TIMEOUT_MS,
};

use crate::support::clients::raw_request;
use crate::support::eventually;
use crate::support::servers::EchoUpstream;
use crate::support::stack::TestGateway;
use crate::support::tokens::{claims_for, hs256};

fn assert_no_store(what: &str, status: u16, expected: u16, cache_control: Option<&str>) {
    assert_eq!(status, expected, "{what}");
    // Pingora's own 400 for an unparsable head says `private, no-store`.
    assert!(
        cache_control.is_some_and(|value| value.split(',').any(|d| d.trim() == "no-store")),
        "{what}: Cache-Control {cache_control:?}"
    );
}

async fn check_reply(what: &str, expected: u16, request: reqwest::RequestBuilder) {
    let response = request.send().await.expect("a response");
    let cache_control = response
        .headers()
        .get("cache-control")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    assert_no_store(
        what,
        response.status().as_u16(),
        expected,
        cache_control.as_deref(),
    );
}

#[tokio::test]
async fn every_reply_the_gateway_writes_itself_says_no_store() {
    let upstream = EchoUpstream::start().await;
    let gateway = TestGateway::builder(&upstream.url())
        .shared_secret()
        .var(RATE_LIMIT_PER_USER_PER_SECOND, "1")
        .var(UPSTREAM_READ_TIMEOUT_MS, "200")
        // Health checks at start only, so a stopped replica is still tried: a 502.
        .var(HEALTH_CHECK_INTERVAL_MS, "600000")
        .start()
        .await;
    let (alice, carol) = (hs256(&claims_for("alice")), hs256(&claims_for("carol")));
    let url = |path: &str| gateway.url(path);
    let client = &gateway.client;

    for (what, target, status) in [
        ("400 bad path", "/api/alice/../bob/tasks", 400),
        ("400 encoded slash", "/api/alice%2Fbob/tasks", 400),
    ] {
        let response = raw_request(
            gateway.addr,
            format!("GET {target} HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {alice}\r\n\r\n")
                .as_bytes(),
        )
        .await;
        assert_no_store(
            what,
            response.status,
            status,
            response.header("cache-control"),
        );
    }
    let malformed = raw_request(
        gateway.addr,
        b"GET /api/alice/tasks HTTP/1.1\r\nHost: gw\r\nContent-Length: -1\r\n\r\n",
    )
    .await;
    assert_no_store(
        "400 malformed head",
        malformed.status,
        400,
        malformed.header("cache-control"),
    );
    check_reply("401", 401, client.get(url("/api/alice/tasks"))).await;
    check_reply(
        "401 bad token",
        401,
        client.get(url("/api/alice/tasks")).bearer_auth("a.b.c"),
    )
    .await;
    check_reply(
        "403",
        403,
        client.get(url("/api/bob/tasks")).bearer_auth(&alice),
    )
    .await;
    check_reply(
        "404",
        404,
        client.get(url("/elsewhere")).bearer_auth(&alice),
    )
    .await;
    check_reply(
        "405",
        405,
        client.post(url("/api/alice/tasks/1")).bearer_auth(&alice),
    )
    .await;
    check_reply(
        "preflight",
        204,
        client
            .request(reqwest::Method::OPTIONS, url("/api/alice/tasks"))
            .header("origin", "http://localhost:3000")
            .header("access-control-request-method", "POST"),
    )
    .await;
    check_reply(
        "403 preflight from another origin",
        403,
        client
            .request(reqwest::Method::OPTIONS, url("/api/alice/tasks"))
            .header("origin", "https://evil.example")
            .header("access-control-request-method", "POST"),
    )
    .await;
    check_reply(
        "504",
        504,
        client
            .get(url("/api/carol/tasks"))
            .bearer_auth(&carol)
            .header("x-test-delay-ms", "3000"),
    )
    .await;
    // One request a second: of a few sent at once, all but the first of a window are refused.
    let mut limited = None;
    for _ in 0..5 {
        let response = client
            .get(url("/api/carol/tasks"))
            .bearer_auth(&carol)
            .send()
            .await
            .expect("a response");
        if response.status() == 429 {
            limited = Some(response);
            break;
        }
    }
    let limited = limited.expect("a 429");
    let cache_control = limited.headers().get("cache-control");
    assert_no_store(
        "429",
        429,
        429,
        cache_control.and_then(|value| value.to_str().ok()),
    );
    upstream.stop().await;
    // Alice and Carol have spent this second's budget.
    let dave = hs256(&claims_for("dave"));
    check_reply(
        "502",
        502,
        client.get(url("/api/dave/tasks")).bearer_auth(&dave),
    )
    .await;

    // No replica healthy at all.
    let dead = EchoUpstream::start().await;
    let dead_url = dead.url();
    dead.stop().await;
    let unhealthy = TestGateway::builder(&dead_url)
        .shared_secret()
        .start_unready()
        .await;
    eventually("the replica to be marked down", || async {
        unhealthy.readyz().await == 503
    })
    .await;
    check_reply(
        "503",
        503,
        unhealthy
            .client
            .get(unhealthy.url("/api/alice/tasks"))
            .bearer_auth(&alice),
    )
    .await;
}
