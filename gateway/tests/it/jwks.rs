//! Better Auth JWT-plugin tokens: EdDSA (its default) and ES512 keys from a JWKS served by the
//! test, key rotation, a flood of unknown key ids, algorithm confusion, and a JWKS outage.

use std::sync::atomic::Ordering;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use futures::future::join_all;
use gateway::config::{JWKS_MAX_AGE_SECONDS, JWKS_MIN_REFETCH_MS, JWKS_REFRESH_SECONDS};
use jsonwebtoken::Algorithm;
use serde_json::{Value, json};

use crate::support::clients::metric_value;
use crate::support::servers::{EchoUpstream, JwksServer, echoed_headers};
use crate::support::stack::TestGateway;
use crate::support::tokens::{Ed25519Key, P521Key, better_auth_claims, sign_raw, with_claims};
use crate::support::{eventually, now};

/// A gateway configured with nothing but `BETTER_AUTH_URL` for tokens (plus `extra`).
async fn better_auth_gateway(
    jwks: &JwksServer,
    upstream: &EchoUpstream,
    extra: &[(&str, &str)],
) -> TestGateway {
    TestGateway::builder(&upstream.url())
        .better_auth(&jwks.base_url())
        .vars(extra)
        .start()
        .await
}

/// `token` reaches the upstream as alice's request: her id and email, no bearer token.
async fn assert_forwarded_as_alice(gateway: &TestGateway, token: &str) {
    let response = gateway.get("/api/alice/tasks", token).await;
    assert_eq!(response.status(), 200);
    let echo: Value = response.json().await.expect("echo");
    let headers = echoed_headers(&echo);
    assert!(headers.contains(&("x-user-id".into(), "alice".into())));
    assert!(headers.contains(&("x-user-email".into(), "alice@example.com".into())));
    assert!(!headers.iter().any(|(name, _)| name == "authorization"));
}

#[tokio::test]
async fn better_auth_default_tokens_are_accepted_with_only_its_url() {
    let key = Ed25519Key::generate("key-1");
    let jwks = JwksServer::start(vec![key.jwk()]).await;
    let upstream = EchoUpstream::start().await;
    let gateway = better_auth_gateway(&jwks, &upstream, &[]).await;

    let token = key.sign(&better_auth_claims(&jwks.base_url(), "alice"));
    let header: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(token.split('.').next().expect("header"))
            .expect("base64"),
    )
    .expect("JSON header");
    assert_eq!(header, json!({"alg": "EdDSA", "kid": "key-1"}));

    assert_forwarded_as_alice(&gateway, &token).await;

    // The second use is served from the verified-token cache.
    assert_eq!(gateway.get("/api/alice/tasks", &token).await.status(), 200);
    let metrics = gateway.metrics().await;
    assert!(
        metrics.contains("gateway_token_cache_total{result=\"hit\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("gateway_jwks_keys 1"));

    // iss and aud are checked against the base URL.
    let base = jwks.base_url();
    for (claim, value) in [
        ("iss", json!("http://evil.test")),
        ("aud", json!("http://evil.test")),
        ("iss", Value::Null),
        ("aud", Value::Null),
    ] {
        let mut claims = better_auth_claims(&base, "alice");
        if value.is_null() {
            claims.as_object_mut().expect("object").remove(claim);
        } else {
            claims[claim] = value.clone();
        }
        let response = gateway.get("/api/alice/tasks", &key.sign(&claims)).await;
        assert_eq!(response.status(), 401, "{claim}={value}");
    }
    let mut array_audience = better_auth_claims(&base, "alice");
    array_audience["aud"] = json!(["http://other.test", base]);
    assert_eq!(
        gateway
            .get("/api/alice/tasks", &key.sign(&array_audience))
            .await
            .status(),
        200
    );

    // Expired and cross-user tokens are refused as with HS256.
    let mut expired = better_auth_claims(&base, "alice");
    expired["exp"] = json!(now() - 3600);
    assert_eq!(
        gateway
            .get("/api/alice/tasks", &key.sign(&expired))
            .await
            .status(),
        401
    );
    assert_eq!(gateway.get("/api/bob/tasks", &token).await.status(), 403);
}

#[tokio::test]
async fn better_auth_es512_tokens_are_verified_like_eddsa_ones() {
    // Better Auth configured with `jwks: { keyPairConfig: { alg: "ES512" } }`, next to an
    // EdDSA key from before the switch.
    let p521 = P521Key::generate("es512-key");
    let ed = Ed25519Key::generate("ed-key");
    let jwks = JwksServer::start(vec![p521.jwk(), ed.jwk()]).await;
    let upstream = EchoUpstream::start().await;
    let gateway = better_auth_gateway(&jwks, &upstream, &[]).await;
    let base = jwks.base_url();
    let claims = better_auth_claims(&base, "alice");

    let token = p521.sign(&claims);
    assert_forwarded_as_alice(&gateway, &token).await;
    assert_eq!(gateway.get("/api/bob/tasks", &token).await.status(), 403);
    assert!(gateway.metrics().await.contains("gateway_jwks_keys 2"));

    // The same claim checks as every other algorithm.
    let mut refused = Vec::new();
    for (claim, value) in [
        ("exp", json!(now() - 3600)),
        ("exp", Value::Null),
        ("nbf", json!(now() + 3600)),
        ("iss", json!("http://evil.test")),
        ("aud", json!("http://evil.test")),
        ("sub", Value::Null),
        ("sub", json!("")),
    ] {
        let mut bad = claims.clone();
        if value.is_null() {
            bad.as_object_mut().expect("object").remove(claim);
        } else {
            bad[claim] = value.clone();
        }
        refused.push((format!("{claim}={value}"), p521.sign(&bad)));
    }
    // Forged and confused signatures.
    let mut flipped = URL_SAFE_NO_PAD
        .decode(token.rsplit('.').next().expect("signature"))
        .expect("base64url");
    flipped[100] ^= 0x01;
    let (signing_input, _) = token.rsplit_once('.').expect("three segments");
    refused.push((
        "flipped signature bit".into(),
        format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(&flipped)),
    ));
    refused.push((
        "truncated signature".into(),
        format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(&flipped[..131])
        ),
    ));
    let other = P521Key::generate("es512-key");
    refused.push(("another P-521 key, same kid".into(), other.sign(&claims)));
    refused.push((
        "ES512 naming the EdDSA key".into(),
        p521.sign_raw(&json!({"alg": "ES512", "kid": "ed-key"}), &claims),
    ));
    refused.push((
        "EdDSA naming the P-521 key".into(),
        ed.sign_as("es512-key", &claims),
    ));
    refused.push((
        "ES256 naming the P-521 key".into(),
        p521.sign_raw(&json!({"alg": "ES256", "kid": "es512-key"}), &claims),
    ));
    let jwk_json = p521.jwk().to_string();
    refused.push((
        "HS512 with the P-521 JWK as the secret".into(),
        sign_raw(
            &json!({"alg": "HS512", "kid": "es512-key"}),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(jwk_json.as_bytes()),
            Algorithm::HS512,
        ),
    ));
    for (name, token) in refused {
        let response = gateway.get("/api/alice/tasks", &token).await;
        assert_eq!(response.status(), 401, "{name}");
    }
    assert_eq!(upstream.requests.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_rotated_key_is_picked_up_without_restart() {
    let old = Ed25519Key::generate("old");
    let new = Ed25519Key::generate("new");
    let jwks = JwksServer::start(vec![old.jwk()]).await;
    let upstream = EchoUpstream::start().await;
    let gateway = better_auth_gateway(
        &jwks,
        &upstream,
        &[(JWKS_MIN_REFETCH_MS, "1"), (JWKS_REFRESH_SECONDS, "1")],
    )
    .await;
    let base = jwks.base_url();
    let old_token = old.sign(&better_auth_claims(&base, "alice"));
    let new_token = new.sign(&better_auth_claims(&base, "alice"));
    assert_eq!(
        gateway.get("/api/alice/tasks", &old_token).await.status(),
        200
    );
    assert_eq!(
        gateway.get("/api/alice/tasks", &new_token).await.status(),
        401
    );

    // Better Auth rotates: a new kid appears, the old one stays for a grace period.
    jwks.set_keys(vec![new.jwk(), old.jwk()]);
    assert_eq!(
        gateway.get("/api/alice/tasks", &new_token).await.status(),
        200
    );
    assert_eq!(
        gateway.get("/api/alice/tasks", &old_token).await.status(),
        200
    );

    // After the grace period the old key is withdrawn, and its tokens stop working even
    // though they were cached.
    jwks.set_keys(vec![new.jwk()]);
    eventually("the withdrawn key to be refused", || async {
        gateway.get("/api/alice/tasks", &old_token).await.status() == 401
    })
    .await;
    assert_eq!(
        gateway.get("/api/alice/tasks", &new_token).await.status(),
        200
    );
}

#[tokio::test]
async fn a_flood_of_unknown_key_ids_causes_at_most_one_fetch() {
    let key = Ed25519Key::generate("real");
    let jwks = JwksServer::start(vec![key.jwk()]).await;
    let upstream = EchoUpstream::start().await;
    let gateway = better_auth_gateway(&jwks, &upstream, &[(JWKS_MIN_REFETCH_MS, "60000")]).await;
    assert_eq!(jwks.fetch_count(), 1, "the start-up fetch");

    let claims = better_auth_claims(&jwks.base_url(), "alice");
    for _round in 0..2 {
        let requests = (0..50).map(|_| {
            let token = key.sign_as(&uuid::Uuid::new_v4().to_string(), &claims);
            let gateway = &gateway;
            async move {
                gateway
                    .get("/api/alice/tasks", &token)
                    .await
                    .status()
                    .as_u16()
            }
        });
        let statuses = join_all(requests).await;
        assert!(statuses.iter().all(|status| *status == 401), "{statuses:?}");
    }
    assert_eq!(
        jwks.fetch_count(),
        2,
        "one on-demand refetch for 100 unknown kids"
    );
    assert_eq!(upstream.requests.load(Ordering::SeqCst), 0);
    assert!(
        gateway
            .metrics()
            .await
            .contains("gateway_auth_denials_total{reason=\"unknown_key\"} 100")
    );
}

#[tokio::test]
async fn keys_are_kept_while_the_jwks_endpoint_is_down() {
    let key = Ed25519Key::generate("key-1");
    let jwks = JwksServer::start(vec![key.jwk()]).await;
    let upstream = EchoUpstream::start().await;
    let gateway = better_auth_gateway(&jwks, &upstream, &[(JWKS_REFRESH_SECONDS, "1")]).await;
    let token = key.sign(&better_auth_claims(&jwks.base_url(), "alice"));
    drop(jwks);
    eventually("a failed refresh", || async {
        gateway
            .metrics()
            .await
            .contains("gateway_jwks_refreshes_total{result=\"error\"}")
    })
    .await;
    assert_eq!(gateway.get("/api/alice/tasks", &token).await.status(), 200);
    assert_eq!(gateway.readyz().await, 200);
}

#[tokio::test]
async fn not_ready_until_the_jwks_is_loaded() {
    let key = Ed25519Key::generate("key-1");
    let jwks = JwksServer::start(vec![]).await;
    let upstream = EchoUpstream::start().await;
    let gateway = TestGateway::builder(&upstream.url())
        .better_auth(&jwks.base_url())
        .start_unready()
        .await;
    eventually("a JWKS fetch", || async { jwks.fetch_count() >= 1 }).await;
    assert_eq!(gateway.readyz().await, 503);
    jwks.set_keys(vec![key.jwk()]);
    gateway.wait_ready().await;
}

async fn readyz_body(gateway: &TestGateway) -> (u16, Value) {
    let response = gateway
        .client
        .get(gateway.admin_url("/readyz"))
        .send()
        .await
        .expect("readyz");
    let status = response.status().as_u16();
    (status, response.json().await.expect("JSON"))
}

#[tokio::test]
async fn a_jwks_answer_without_usable_keys_keeps_the_held_keys_and_reports_their_age() {
    let key = Ed25519Key::generate("ed-key");
    let jwks = JwksServer::start(vec![key.jwk()]).await;
    let upstream = EchoUpstream::start().await;
    let gateway = better_auth_gateway(
        &jwks,
        &upstream,
        &[(JWKS_REFRESH_SECONDS, "1"), (JWKS_MAX_AGE_SECONDS, "2")],
    )
    .await;
    let claims = better_auth_claims(&jwks.base_url(), "alice");
    let cached = key.sign(&claims);
    assert_eq!(gateway.get("/api/alice/tasks", &cached).await.status(), 200);
    assert_eq!(readyz_body(&gateway).await.1["jwks_stale"], Value::Null);

    let unsupported = vec![
        json!({"kty": "oct", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQ", "kid": "hmac", "alg": "HS256"}),
        json!({"kty": "OKP", "crv": "Ed448", "x": "AAAA", "kid": "ed448", "alg": "EdDSA"}),
    ];
    let error = "gateway_jwks_refreshes_total{result=\"error\"}";
    for (answer, keys) in [
        ("an empty key set", vec![]),
        ("only unsupported keys", unsupported),
    ] {
        jwks.set_keys(keys);
        let failures = metric_value(&gateway.metrics().await, error);
        eventually("a failed refresh to be counted", || async {
            metric_value(&gateway.metrics().await, error) > failures
        })
        .await;
        // The held key still verifies, both the cached token and one it has not seen.
        assert_eq!(
            gateway.get("/api/alice/tasks", &cached).await.status(),
            200,
            "{answer}"
        );
        let fresh = key.sign(&with_claims(claims.clone(), &json!({"jti": answer})));
        assert_eq!(
            gateway.get("/api/alice/tasks", &fresh).await.status(),
            200,
            "{answer}"
        );
        assert!(
            gateway.metrics().await.contains("gateway_jwks_keys 1"),
            "{answer}"
        );
    }

    // Still ready (an auth outage must not take every replica out), but the keys are stale.
    eventually("the keys to be reported stale", || async {
        readyz_body(&gateway).await.1["jwks_stale"] == true
    })
    .await;
    let (status, body) = readyz_body(&gateway).await;
    assert_eq!(status, 200);
    assert!(
        body["jwks_age_seconds"]
            .as_u64()
            .is_some_and(|age| age >= 2),
        "{body}"
    );
    assert!(metric_value(&gateway.metrics().await, "gateway_jwks_age_seconds") >= 2);

    jwks.set_keys(vec![key.jwk()]);
    eventually("a good refresh to make the keys fresh again", || async {
        readyz_body(&gateway).await.1["jwks_stale"].is_null()
    })
    .await;
}
