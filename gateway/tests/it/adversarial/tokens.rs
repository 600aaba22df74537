//! Defends token verification: only a token signed by Better Auth's published key (with that
//! key's own algorithm) or by `BETTER_AUTH_SECRET`, carrying well-typed, current claims and a
//! string subject, proves a user. Everything else is a 401 that never reaches the task service,
//! and nothing in a token makes the gateway fetch or trust a key from anywhere but its JWKS.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::json;

use crate::adversarial::Arena;
use crate::support::servers::{EchoUpstream, JwksServer};
use crate::support::stack::{TestGateway, assert_still_serving};
use crate::support::tokens::{
    Ed25519Key, claims_for, hmac_token, hs256, sign_raw, unsigned, with_claims,
};
use crate::support::{HMAC_SECRET, SIGNING_SECRET, now};

const HMAC_ALGS: [Algorithm; 3] = [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512];

/// Replaces the signature segment of `token`.
fn with_signature(token: &str, signature: &str) -> String {
    let (signing_input, _) = token.rsplit_once('.').expect("three segments");
    format!("{signing_input}.{signature}")
}

/// `token` with one bit of its decoded signature flipped.
fn flip_signature_bit(token: &str, bit: usize) -> String {
    let (_, signature) = token.rsplit_once('.').expect("three segments");
    let mut bytes = URL_SAFE_NO_PAD.decode(signature).expect("base64url");
    let index = (bit / 8) % bytes.len();
    bytes[index] ^= 1 << (bit % 8);
    with_signature(token, &URL_SAFE_NO_PAD.encode(bytes))
}

#[tokio::test]
async fn alg_none_in_every_spelling_is_refused() {
    let arena = Arena::start(&[]).await;
    let hs_claims = claims_for("alice");
    let ba_claims = arena.claims("alice");
    let genuine_hs = hs256(&hs_claims);
    let (_, genuine_signature) = genuine_hs.rsplit_once('.').expect("segments");
    let mut tried = 0;
    for alg in ["none", "None", "NONE", "nOnE", "none ", " none", "", "null"] {
        for header in [
            json!({"alg": alg}),
            json!({"alg": alg, "typ": "JWT"}),
            json!({"alg": alg, "kid": "key-1"}),
        ] {
            for claims in [&hs_claims, &ba_claims] {
                let bare = unsigned(&header, claims);
                for token in [
                    bare.clone(),
                    bare.trim_end_matches('.').to_owned(),
                    format!("{bare}{genuine_signature}"),
                    format!("{bare}AAAA"),
                ] {
                    arena.assert_refused(&format!("alg {alg:?}"), &token).await;
                    tried += 1;
                }
            }
        }
    }
    // `alg` of the wrong JSON type, or missing.
    for header in [
        json!({"alg": null}),
        json!({"alg": 0}),
        json!({"typ": "JWT"}),
    ] {
        arena
            .assert_refused(&header.to_string(), &unsigned(&header, &hs_claims))
            .await;
        tried += 1;
    }
    println!("alg none: {tried} tokens refused");
    assert_still_serving(&arena.gateway).await;
}

#[tokio::test]
async fn empty_truncated_and_flipped_signatures_are_refused() {
    let arena = Arena::start(&[]).await;
    for (kind, genuine) in [
        ("HS256", hs256(&claims_for("alice"))),
        ("EdDSA", arena.eddsa("alice")),
    ] {
        assert_eq!(arena.status("/api/alice/tasks", &genuine).await, 200);
        let (signing_input, signature) = genuine.rsplit_once('.').expect("segments");
        let mut forged = vec![
            format!("{signing_input}."),
            signing_input.to_owned(),
            with_signature(&genuine, &signature[..signature.len() / 2]),
            with_signature(&genuine, &signature[..signature.len() - 1]),
            with_signature(&genuine, &format!("{signature}A")),
            with_signature(&genuine, &format!("{signature}=")),
            with_signature(&genuine, &"A".repeat(signature.len())),
            format!("{genuine}."),
            format!(".{genuine}"),
        ];
        for bit in [0, 1, 7, 8, 100, 255] {
            forged.push(flip_signature_bit(&genuine, bit));
        }
        // Claims changed under the genuine signature: another subject, a later expiry.
        let (header, _) = genuine.split_once('.').expect("segments");
        for claims in [
            with_claims(claims_for("alice"), &json!({"sub": "bob"})),
            with_claims(arena.claims("alice"), &json!({"exp": now() + 86_400})),
        ] {
            let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
            forged.push(format!("{header}.{payload}.{signature}"));
        }
        for token in &forged {
            arena.assert_refused(kind, token).await;
        }
        println!("{kind}: {} forged signatures refused", forged.len());
    }
    assert_still_serving(&arena.gateway).await;
}

#[tokio::test]
async fn wrong_and_well_known_secrets_are_refused() {
    let arena = Arena::start(&[]).await;
    let claims = claims_for("alice");
    let secrets: Vec<Vec<u8>> = vec![
        b"secret".to_vec(),
        b"your-256-bit-secret".to_vec(),
        Vec::new(),
        b"password".to_vec(),
        b"changeme".to_vec(),
        // The gateway's assertion secret must never sign a bearer token.
        SIGNING_SECRET.as_bytes().to_vec(),
        // Near misses of the real secret.
        format!("{HMAC_SECRET}\n").into_bytes(),
        HMAC_SECRET.as_bytes()[..HMAC_SECRET.len() - 1].to_vec(),
        HMAC_SECRET.to_uppercase().into_bytes(),
    ];
    for secret in &secrets {
        for alg in HMAC_ALGS {
            let token = hmac_token(alg, secret, &claims);
            let name = format!("{alg:?} with {:?}", String::from_utf8_lossy(secret));
            arena.assert_refused(&name, &token).await;
        }
    }
    // The genuine secret still works with each HMAC algorithm.
    for alg in HMAC_ALGS {
        let token = hmac_token(alg, HMAC_SECRET.as_bytes(), &claims);
        assert_eq!(arena.status("/api/alice/tasks", &token).await, 200);
    }
    assert_still_serving(&arena.gateway).await;
}

#[tokio::test]
async fn algorithm_confusion_with_every_encoding_of_the_public_key_is_refused() {
    let arena = Arena::start(&[]).await;
    // A gateway with the JWKS only, where no HMAC secret exists at all.
    let jwks_only = TestGateway::builder(&arena.upstream.url())
        .better_auth(&arena.jwks.base_url())
        .start()
        .await;

    let public = arena.key.public_bytes();
    let jwk = arena.key.jwk();
    let (pem, der) = arena.key.public_pem_and_der();
    let x = URL_SAFE_NO_PAD.encode(public);
    let keys: Vec<(&str, Vec<u8>)> = vec![
        ("raw public key", public.to_vec()),
        ("JWK JSON", jwk.to_string().into_bytes()),
        (
            "JWK JSON, pretty",
            serde_json::to_vec_pretty(&jwk).expect("JSON"),
        ),
        ("JWKS JSON", json!({"keys": [jwk]}).to_string().into_bytes()),
        ("base64url x", x.clone().into_bytes()),
        ("base64 x with padding", format!("{x}=").into_bytes()),
        ("PEM", pem.clone().into_bytes()),
        ("PEM without newline", pem.trim_end().as_bytes().to_vec()),
        ("DER", der),
    ];
    let claims = arena.claims("alice");
    let mut tried = 0;
    for (encoding, key) in &keys {
        for alg in HMAC_ALGS {
            for kid in [Some("key-1"), None] {
                let mut header = json!({"alg": format!("{alg:?}"), "typ": "JWT"});
                if let Some(kid) = kid {
                    header["kid"] = json!(kid);
                }
                let token = sign_raw(&header, &claims, &EncodingKey::from_secret(key), alg);
                let name = format!("{alg:?} keyed with the {encoding}, kid {kid:?}");
                arena.assert_refused(&name, &token).await;
                let status = jwks_only.get("/api/alice/tasks", &token).await.status();
                assert_eq!(status, 401, "{name} on a JWKS-only gateway");
                tried += 2;
            }
        }
    }
    // An asymmetric `alg` other than the key's own, naming the key.
    for alg in [
        "RS256",
        "PS256",
        "ES256",
        "ES384",
        "ES512",
        "EdDSA25519",
        "ed25519",
    ] {
        // A genuine EdDSA signature by the real key, under a header naming another algorithm.
        let header = json!({"alg": alg, "kid": "key-1"});
        let token = arena.key.sign_raw(&header, &claims);
        arena.assert_refused(alg, &token).await;
        tried += 1;
    }
    // No signature at all under `none` or another asymmetric `alg`, naming the key, on both
    // gateways.
    for alg in ["none", "RS256", "ES512"] {
        let token = unsigned(&json!({"alg": alg, "kid": "key-1"}), &claims);
        let name = format!("unsigned {alg} naming the EdDSA key");
        arena.assert_refused(&name, &token).await;
        let status = jwks_only.get("/api/alice/tasks", &token).await.status();
        assert_eq!(status, 401, "{name} on a JWKS-only gateway");
        tried += 2;
    }
    println!("algorithm confusion: {tried} tokens refused");
    for gateway in [&arena.gateway, &jwks_only] {
        let genuine = gateway.get("/api/alice/tasks", &arena.eddsa("alice")).await;
        assert_eq!(genuine.status(), 200);
    }
    assert_still_serving(&arena.gateway).await;
}

#[tokio::test]
async fn keys_and_key_urls_named_in_the_token_are_never_fetched_or_trusted() {
    let arena = Arena::start(&[]).await;
    // The attacker's own key, published at a URL the attacker controls, and a decoy that counts
    // every request whatever its path.
    let attacker = Ed25519Key::generate("attacker");
    let attacker_jwks = JwksServer::start(vec![attacker.jwk()]).await;
    let decoy = EchoUpstream::start().await;
    let jwks_fetches = arena.jwks.fetch_count();
    let claims = arena.claims("alice");
    let jku = format!("{}/api/auth/jwks", attacker_jwks.base_url());
    let x5u = format!("{}/cert.pem", decoy.url());
    let headers = [
        json!({"alg": "EdDSA", "kid": "attacker", "jwk": attacker.jwk()}),
        json!({"alg": "EdDSA", "kid": "key-1", "jwk": attacker.jwk()}),
        json!({"alg": "EdDSA", "jwk": attacker.jwk()}),
        json!({"alg": "EdDSA", "kid": "attacker", "jku": jku}),
        json!({"alg": "EdDSA", "kid": "key-1", "jku": jku}),
        json!({"alg": "EdDSA", "jku": jku}),
        json!({"alg": "EdDSA", "kid": "attacker", "x5u": x5u}),
        json!({"alg": "EdDSA", "x5u": x5u}),
        json!({"alg": "EdDSA", "kid": "attacker", "x5c": ["MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA"]}),
        json!({"alg": "EdDSA", "kid": "key-1", "x5c": ["AAAA"], "x5t": "AAAA"}),
    ];
    for header in &headers {
        arena
            .assert_refused(&header.to_string(), &attacker.sign_raw(header, &claims))
            .await;
    }
    // `kid`s that would mean something to a file system, a database or a cache key.
    let long_kid = "k".repeat(5000);
    let odd_kids = [
        json!("../../../../etc/passwd"),
        json!("/dev/null"),
        json!("key-1/../key-1"),
        json!("' OR '1'='1"),
        json!("key-1' --"),
        json!("key-1\u{0000}"),
        json!("KEY-1"),
        json!(" key-1"),
        json!(long_kid),
        json!(""),
        json!(42),
        json!(true),
        json!(null),
        json!(["key-1"]),
        json!({"$ne": null}),
    ];
    for kid in &odd_kids {
        let header = json!({"alg": "EdDSA", "kid": kid});
        let name = format!("kid {}", &kid.to_string()[..kid.to_string().len().min(40)]);
        arena
            .assert_refused(&name, &attacker.sign_raw(&header, &claims))
            .await;
    }
    assert_eq!(
        attacker_jwks.fetch_count(),
        0,
        "the token's jku was fetched"
    );
    assert_eq!(
        decoy.count(),
        0,
        "the token's x5u was fetched: {:?}",
        decoy.seen()
    );
    // Unknown kids may cause one refetch of the configured JWKS (a rotation), no more.
    assert!(
        arena.jwks.fetch_count() <= jwks_fetches + 1,
        "{} fetches of the real JWKS",
        arena.jwks.fetch_count() - jwks_fetches
    );
    assert_still_serving(&arena.gateway).await;
}
