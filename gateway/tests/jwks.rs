//! Better Auth JWT-plugin tokens: EdDSA keys from a JWKS served by the test, key rotation, a
//! flood of unknown key ids, algorithm confusion, and a JWKS outage.

mod support;

use std::sync::atomic::Ordering;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use futures::future::join_all;
use jsonwebtoken::Algorithm;
use serde_json::{Value, json};
use support::*;

/// A gateway configured with nothing but `BETTER_AUTH_URL` for tokens (plus `extra`).
async fn better_auth_gateway(
    jwks: &JwksServer,
    upstream: &EchoUpstream,
    extra: &[(&str, &str)],
) -> TestGateway {
    let mut vars = base_vars(&upstream.url());
    vars.push(("BETTER_AUTH_URL".into(), jwks.base_url()));
    vars.extend(
        extra
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string())),
    );
    TestGateway::start(vars).await
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

    let response = gateway.get("/api/alice/tasks", &token).await;
    assert_eq!(response.status(), 200);
    let echo: Value = response.json().await.expect("echo");
    let headers = echoed_headers(&echo);
    assert!(headers.contains(&("x-user-id".into(), "alice".into())));
    assert!(headers.contains(&("x-user-email".into(), "alice@example.com".into())));

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
async fn a_rotated_key_is_picked_up_without_restart() {
    let old = Ed25519Key::generate("old");
    let new = Ed25519Key::generate("new");
    let jwks = JwksServer::start(vec![old.jwk()]).await;
    let upstream = EchoUpstream::start().await;
    let gateway = better_auth_gateway(
        &jwks,
        &upstream,
        &[("JWKS_MIN_REFETCH_MS", "1"), ("JWKS_REFRESH_SECONDS", "1")],
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
    let gateway = better_auth_gateway(&jwks, &upstream, &[("JWKS_MIN_REFETCH_MS", "60000")]).await;
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
async fn algorithm_confusion_is_refused() {
    let key = Ed25519Key::generate("key-1");
    let jwks = JwksServer::start(vec![key.jwk()]).await;
    let upstream = EchoUpstream::start().await;
    let base = jwks.base_url();
    let claims = better_auth_claims(&base, "alice");
    let public = key.public_bytes();
    let jwk_json = key.jwk().to_string();
    let forgeries = || {
        let with_kid = |alg: Algorithm, secret: &[u8]| {
            let mut header = jsonwebtoken::Header::new(alg);
            header.kid = Some("key-1".into());
            jsonwebtoken::encode(
                &header,
                &claims,
                &jsonwebtoken::EncodingKey::from_secret(secret),
            )
            .expect("sign")
        };
        vec![
            (
                "HS256 with the public key bytes",
                with_kid(Algorithm::HS256, &public),
            ),
            (
                "HS256 with the JWK JSON",
                with_kid(Algorithm::HS256, jwk_json.as_bytes()),
            ),
            (
                "HS512 with the base64 key",
                with_kid(Algorithm::HS512, URL_SAFE_NO_PAD.encode(public).as_bytes()),
            ),
            (
                "alg none",
                unsigned(&json!({"alg": "none", "kid": "key-1"}), &claims),
            ),
            (
                "RS256 naming an EdDSA key",
                unsigned(&json!({"alg": "RS256", "kid": "key-1"}), &claims),
            ),
            (
                "ES512",
                unsigned(&json!({"alg": "ES512", "kid": "key-1"}), &claims),
            ),
        ]
    };

    // With the JWKS only, and with the JWKS and a shared secret.
    for extra in [&[][..], &[("BETTER_AUTH_SECRET", HMAC_SECRET)]] {
        let gateway = better_auth_gateway(&jwks, &upstream, extra).await;
        assert_eq!(
            gateway
                .get("/api/alice/tasks", &key.sign(&claims))
                .await
                .status(),
            200
        );
        for (name, token) in forgeries() {
            let response = gateway.get("/api/alice/tasks", &token).await;
            assert_eq!(response.status(), 401, "{name} with {extra:?}");
        }
    }
    assert_eq!(upstream.requests.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn keys_are_kept_while_the_jwks_endpoint_is_down() {
    let key = Ed25519Key::generate("key-1");
    let jwks = JwksServer::start(vec![key.jwk()]).await;
    let upstream = EchoUpstream::start().await;
    let gateway = better_auth_gateway(&jwks, &upstream, &[("JWKS_REFRESH_SECONDS", "1")]).await;
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
    let mut vars = base_vars(&upstream.url());
    vars.push(("BETTER_AUTH_URL".into(), jwks.base_url()));
    let gateway = TestGateway::start_unready(vars).await;
    eventually("a JWKS fetch", || async { jwks.fetch_count() >= 1 }).await;
    assert_eq!(gateway.readyz().await, 503);
    jwks.set_keys(vec![key.jwk()]);
    gateway.wait_ready().await;
}
