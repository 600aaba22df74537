//! Failed token verifications per client address: a flood of forged asymmetric tokens naming a
//! real `kid` is refused before its signatures are checked, without locking out tokens already
//! verified.

use gateway::config::{FAILED_AUTH_PER_ADDRESS_PER_MINUTE, TRUSTED_PROXY_CIDRS};
use serde_json::{Value, json};

use crate::support::clients::metric_value;
use crate::support::servers::{EchoUpstream, JwksServer};
use crate::support::stack::TestGateway;
use crate::support::tokens::{P521Key, better_auth_claims, with_claims};

/// A token naming `key`'s kid, with a valid shape but another key's signature.
fn forged_es512(key_id: &str, claims: &Value) -> String {
    P521Key::generate(key_id).sign(claims)
}

async fn status_with(gateway: &TestGateway, token: &str, forwarded_for: Option<&str>) -> u16 {
    let mut request = gateway
        .client
        .get(gateway.url("/api/alice/tasks"))
        .bearer_auth(token);
    if let Some(client) = forwarded_for {
        request = request.header("x-forwarded-for", client);
    }
    request.send().await.expect("a response").status().as_u16()
}

#[tokio::test]
async fn failed_verifications_per_address_are_limited_before_the_signature_check() {
    let key = P521Key::generate("es512-key");
    let jwks = JwksServer::start(vec![key.jwk()]).await;
    let upstream = EchoUpstream::start().await;
    let gateway = TestGateway::builder(&upstream.url())
        .better_auth(&jwks.base_url())
        .vars(&[(FAILED_AUTH_PER_ADDRESS_PER_MINUTE, "5")])
        .start()
        .await;
    let claims = better_auth_claims(&jwks.base_url(), "alice");
    let valid = key.sign(&claims);
    assert_eq!(status_with(&gateway, &valid, None).await, 200);

    for _ in 0..5 {
        let forged = forged_es512("es512-key", &claims);
        assert_eq!(status_with(&gateway, &forged, None).await, 401);
    }
    // Over the budget: refused before any signature is checked, whatever the client claims
    // in X-Forwarded-For (not trusted by default).
    for forwarded in [None, Some("203.0.113.9")] {
        let response = gateway
            .client
            .get(gateway.url("/api/alice/tasks"))
            .bearer_auth(forged_es512("es512-key", &claims))
            .header("x-forwarded-for", forwarded.unwrap_or("127.0.0.1"))
            .send()
            .await
            .expect("a response");
        assert_eq!(response.status(), 429);
        assert_eq!(response.headers()["retry-after"], "60");
        assert_eq!(response.headers()["cache-control"], "no-store");
        let body: Value = response.json().await.expect("JSON");
        assert_eq!(body["detail"], "Too many failed authentication attempts");
    }
    let metrics = gateway.metrics().await;
    assert_eq!(
        metric_value(
            &metrics,
            "gateway_auth_denials_total{reason=\"bad_signature\"}"
        ),
        5,
        "no signature was checked once the limit engaged:\n{metrics}"
    );
    assert_eq!(
        metric_value(
            &metrics,
            "gateway_auth_denials_total{reason=\"too_many_failed_tokens\"}"
        ),
        2
    );
    // A token verified before keeps working from the same address; a new one waits.
    assert_eq!(status_with(&gateway, &valid, None).await, 200);
    let fresh = key.sign(&with_claims(claims.clone(), &json!({"jti": "2"})));
    assert_eq!(status_with(&gateway, &fresh, None).await, 429);
    assert_eq!(
        upstream.count(),
        2,
        "only the valid requests were forwarded"
    );
}

#[tokio::test]
async fn behind_a_trusted_balancer_each_forwarded_client_has_its_own_budget() {
    let key = P521Key::generate("es512-key");
    let jwks = JwksServer::start(vec![key.jwk()]).await;
    let upstream = EchoUpstream::start().await;
    let gateway = TestGateway::builder(&upstream.url())
        .better_auth(&jwks.base_url())
        .vars(&[
            (FAILED_AUTH_PER_ADDRESS_PER_MINUTE, "3"),
            (TRUSTED_PROXY_CIDRS, "127.0.0.0/8, 10.0.0.0/8"),
        ])
        .start()
        .await;
    let claims = better_auth_claims(&jwks.base_url(), "alice");
    let forged = || forged_es512("es512-key", &claims);
    // The balancer appends the address it saw; whatever the client wrote is to its left.
    let attacker = "198.51.100.1, 203.0.113.7, 10.0.0.2";
    for _ in 0..3 {
        assert_eq!(status_with(&gateway, &forged(), Some(attacker)).await, 401);
    }
    assert_eq!(status_with(&gateway, &forged(), Some(attacker)).await, 429);
    // Changing the part the client controls does not reset its budget.
    let rewritten = "192.0.2.50, 203.0.113.7, 10.0.0.2";
    assert_eq!(status_with(&gateway, &forged(), Some(rewritten)).await, 429);
    // Another client behind the same balancer is not affected.
    let neighbour = "203.0.113.8, 10.0.0.2";
    assert_eq!(status_with(&gateway, &forged(), Some(neighbour)).await, 401);
    assert_eq!(
        status_with(&gateway, &key.sign(&claims), Some(neighbour)).await,
        200
    );
}
