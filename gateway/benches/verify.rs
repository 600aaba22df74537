//! What verification costs per algorithm, with and without the verified-token cache, and what
//! the canonical path check costs.
//!
//! `cargo bench -p gateway --bench verify -- --warm-up-time 1 --measurement-time 3`

#[path = "../tests/it/support/mod.rs"]
#[allow(dead_code)] // the benchmark uses a few of the integration tests' helpers
mod support;

use std::hint::black_box;
use std::sync::Arc;

use common::config::Env;
use criterion::{Criterion, criterion_group, criterion_main};
use gateway::config::{BETTER_AUTH_SECRET, BETTER_AUTH_URL, TokenConfig};
use gateway::metrics::Metrics;
use gateway::path::{check_target, match_route};
use gateway::token::Verifier;
use gateway::token::cache::TokenCache;
use gateway::token::jwks::JwksStore;
use http::Method;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use p256::pkcs8::EncodePrivateKey;
use rsa::pkcs1::EncodeRsaPrivateKey;
use serde_json::Value;
use support::HMAC_SECRET;
use support::servers::JwksServer;
use support::tokens::{Ed25519Key, P521Key, better_auth_claims, hs256};

/// A JWK for `key` named `kid`, and a token it signed.
fn keyed(alg: Algorithm, key: EncodingKey, kid: &str, claims: &Value) -> (Value, String) {
    let mut jwk = Jwk::from_encoding_key(&key, alg).expect("JWK");
    jwk.common.key_id = Some(kid.to_owned());
    let mut header = Header::new(alg);
    header.typ = None;
    header.kid = Some(kid.to_owned());
    let token = jsonwebtoken::encode(&header, claims, &key).expect("sign");
    (serde_json::to_value(jwk).expect("JWK JSON"), token)
}

struct Setup {
    runtime: tokio::runtime::Runtime,
    verifier: Verifier,
    tokens: Vec<(&'static str, String)>,
    _jwks: JwksServer,
}

fn setup() -> Setup {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let ed = Ed25519Key::generate("ed");
    let p521 = P521Key::generate("es512");
    let es = p256::ecdsa::SigningKey::random(&mut rand::rngs::OsRng)
        .to_pkcs8_der()
        .expect("P-256 PKCS#8");
    let rs = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048)
        .expect("RSA key")
        .to_pkcs1_der()
        .expect("RSA PKCS#1");
    let (jwks, verifier, tokens) = runtime.block_on(async {
        let jwks = JwksServer::start(vec![]).await;
        let claims = better_auth_claims(&jwks.base_url(), "alice");
        let (es_jwk, es_token) = keyed(
            Algorithm::ES256,
            EncodingKey::from_ec_der(es.as_bytes()),
            "es",
            &claims,
        );
        let (rs_jwk, rs_token) = keyed(
            Algorithm::RS256,
            EncodingKey::from_rsa_der(rs.as_bytes()),
            "rs",
            &claims,
        );
        jwks.set_keys(vec![ed.jwk(), es_jwk, p521.jwk(), rs_jwk]);
        let env = Env::from_pairs([
            (BETTER_AUTH_URL, jwks.base_url()),
            (BETTER_AUTH_SECRET, HMAC_SECRET.to_owned()),
        ]);
        let config = TokenConfig::from_env(&env).expect("token configuration");
        let settings = config.jwks.clone().expect("JWKS configured");
        let metrics = Arc::new(Metrics::new().expect("metrics"));
        let cache = TokenCache::new(config.cache_capacity);
        let store = Arc::new(
            JwksStore::new(
                settings.url,
                settings.fetch_timeout,
                settings.min_refetch_interval,
                cache.clone(),
                Arc::clone(&metrics),
            )
            .expect("JWKS client"),
        );
        store.refresh().await.expect("JWKS fetched");
        let verifier = Verifier::new(&config, Some(store), cache, metrics);
        let mut hs_claims = claims.clone();
        hs_claims.as_object_mut().expect("object").remove("aud");
        let tokens = vec![
            ("HS256", hs256(&hs_claims)),
            ("EdDSA", ed.sign(&claims)),
            ("ES256", es_token),
            ("ES512", p521.sign(&claims)),
            ("RS256", rs_token),
        ];
        (jwks, verifier, tokens)
    });
    Setup {
        runtime,
        verifier,
        tokens,
        _jwks: jwks,
    }
}

fn verification(c: &mut Criterion) {
    let setup = setup();
    for cached in [false, true] {
        let name = if cached {
            "verify_cached"
        } else {
            "verify_uncached"
        };
        let mut group = c.benchmark_group(name);
        for (alg, token) in &setup.tokens {
            group.bench_function(*alg, |b| {
                b.to_async(&setup.runtime).iter(|| async {
                    let token = black_box(token.as_str());
                    let verified = if cached {
                        setup
                            .verifier
                            .verify(token)
                            .await
                            .map(|principal| principal.sub.len())
                    } else {
                        setup
                            .verifier
                            .verify_uncached(token)
                            .await
                            .map(|(principal, _)| principal.sub.len())
                    };
                    verified.expect("valid token")
                })
            });
        }
        group.finish();
    }
}

fn path_check(c: &mut Criterion) {
    let mut group = c.benchmark_group("path_check");
    let good = b"/api/Xk2v9QpLm4Rt7Yw1Zc8Bn3Hd6Fg0Js5A/tasks/42/complete";
    group.bench_function("accepted_and_routed", |b| {
        b.iter(|| {
            let target = check_target(black_box(good)).expect("canonical");
            match_route(&Method::PATCH, &target).expect("a route").name
        })
    });
    let query = b"/api/Xk2v9QpLm4Rt7Yw1Zc8Bn3Hd6Fg0Js5A/tasks?status=pending&sort=due_date&order=asc&q=milk&limit=20&offset=40";
    group.bench_function("list_with_query", |b| {
        b.iter(|| check_target(black_box(query)).expect("canonical"))
    });
    let trick = b"/api/alice/tasks/%2e%2e/%2e%2e/bob/tasks";
    group.bench_function("rejected_trick", |b| {
        b.iter(|| check_target(black_box(trick)).expect_err("refused"))
    });
    group.finish();
}

criterion_group!(benches, verification, path_check);
criterion_main!(benches);
