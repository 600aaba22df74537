//! Defends the per-user rate limit: a user over `RATE_LIMIT_PER_USER_PER_SECOND` gets a JSON 429
//! with `Retry-After`, counted in `gateway_auth_denials_total{reason="rate_limited"}`; the budget
//! belongs to the verified subject alone, so another user is unaffected, forged tokens cannot
//! spend anyone's budget, and no header or address a client picks can dodge or move it.

use futures::future::join_all;
use gateway::config::RATE_LIMIT_PER_USER_PER_SECOND;
use serde_json::Value;

use crate::adversarial::Arena;
use crate::support::stack::assert_still_serving;
use crate::support::tokens::{claims_for, hmac_token, hs256};

const LIMIT: usize = 5;

/// Sends `count` concurrent `GET path` with `token` and extra headers; the statuses.
async fn burst(
    arena: &Arena,
    path: &str,
    token: &str,
    headers: &[(&str, &str)],
    count: usize,
) -> Vec<u16> {
    let requests = (0..count).map(|_| {
        let mut request = arena
            .gateway
            .client
            .get(arena.gateway.url(path))
            .bearer_auth(token);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        async move { request.send().await.expect("reachable").status().as_u16() }
    });
    join_all(requests).await
}

fn count(statuses: &[u16], status: u16) -> usize {
    statuses.iter().filter(|s| **s == status).count()
}

#[tokio::test]
async fn a_user_over_the_limit_gets_429_and_other_users_do_not() {
    let arena = Arena::start(&[(RATE_LIMIT_PER_USER_PER_SECOND, "5")]).await;
    let alice = hs256(&claims_for("alice"));
    let bob = arena.eddsa("bob");

    // Forged tokens naming alice are refused before the limit, so they spend nothing of hers.
    let forged = hmac_token(
        jsonwebtoken::Algorithm::HS256,
        b"wrong-secret-wrong-secret-0123456789",
        &claims_for("alice"),
    );
    let refused = burst(&arena, "/api/alice/tasks", &forged, &[], 40).await;
    assert_eq!(count(&refused, 401), 40, "{refused:?}");
    let admitted = burst(&arena, "/api/alice/tasks", &alice, &[], LIMIT).await;
    assert_eq!(
        count(&admitted, 200),
        LIMIT,
        "forged tokens spent alice's budget: {admitted:?}"
    );

    // Alice goes over: at most two windows' worth pass (the burst may straddle a boundary).
    let statuses = burst(&arena, "/api/alice/tasks", &alice, &[], 30).await;
    assert!(count(&statuses, 429) >= 30 - 3 * LIMIT, "{statuses:?}");
    assert_eq!(
        count(&statuses, 200) + count(&statuses, 429),
        30,
        "{statuses:?}"
    );
    let response = arena.gateway.get("/api/alice/tasks", &alice).await;
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()["retry-after"], "1");
    assert_eq!(response.headers()["content-type"], "application/json");
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(body["detail"], "Too many requests");

    // Nothing a client chooses moves alice to another budget.
    for (name, value) in [
        ("x-forwarded-for", "203.0.113.7"),
        ("x-real-ip", "203.0.113.8"),
        ("x-user-id", "bob"),
        ("forwarded", "for=203.0.113.9"),
        ("x-request-id", "fresh-id-1"),
    ] {
        // More than two windows' worth, so a window starting mid-burst cannot hide the limit.
        let statuses = burst(
            &arena,
            "/api/alice/tasks",
            &alice,
            &[(name, value)],
            2 * LIMIT + 1,
        )
        .await;
        assert!(statuses.contains(&429), "{name}: {statuses:?}");
    }
    // Bob, with his own token, has his own budget.
    let statuses = burst(&arena, "/api/bob/tasks", &bob, &[], LIMIT).await;
    assert_eq!(
        count(&statuses, 200),
        LIMIT,
        "bob was limited by alice: {statuses:?}"
    );

    let metrics = arena.gateway.metrics().await;
    let limited = metrics
        .lines()
        .find_map(|line| line.strip_prefix("gateway_auth_denials_total{reason=\"rate_limited\"} "))
        .and_then(|value| value.parse::<u64>().ok())
        .unwrap_or(0);
    assert!(limited >= 15, "{limited} rate-limited requests counted");
    assert!(
        !metrics.contains("alice"),
        "a user id became a metric label"
    );
    assert_still_serving(&arena.gateway).await;
}

#[tokio::test]
async fn requests_for_another_users_path_count_against_the_sender() {
    let arena = Arena::start(&[(RATE_LIMIT_PER_USER_PER_SECOND, "5")]).await;
    let alice = hs256(&claims_for("alice"));
    let bob = hs256(&claims_for("bob"));
    // Alice hammers bob's path: 403s, then 429s, all on her budget, none on bob's.
    let statuses = burst(&arena, "/api/bob/tasks", &alice, &[], 30).await;
    assert!(statuses.contains(&429), "{statuses:?}");
    assert!(
        statuses.iter().all(|s| matches!(s, 403 | 429)),
        "{statuses:?}"
    );
    let statuses = burst(&arena, "/api/bob/tasks", &bob, &[], LIMIT).await;
    assert_eq!(count(&statuses, 200), LIMIT, "{statuses:?}");
}

#[tokio::test]
async fn the_limit_is_off_by_default() {
    let arena = Arena::start(&[]).await;
    let alice = hs256(&claims_for("alice"));
    let statuses = burst(&arena, "/api/alice/tasks", &alice, &[], 100).await;
    assert_eq!(count(&statuses, 200), 100, "{statuses:?}");
}
