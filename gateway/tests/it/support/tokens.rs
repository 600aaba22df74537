//! Keys and tokens: Ed25519 and P-521 keys as Better Auth's JWT plugin makes them, Better Auth's
//! claims, HS256 tokens with the test secret, and raw or unsigned tokens for attacks.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::pkcs8::EncodePrivateKey;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use super::{HMAC_SECRET, now};

/// An Ed25519 signing key, as Better Auth's JWT plugin makes by default.
pub struct Ed25519Key {
    pub kid: String,
    encoding: EncodingKey,
    public: [u8; 32],
}

impl Ed25519Key {
    pub fn generate(kid: &str) -> Self {
        let signing = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
        let der = signing.to_pkcs8_der().expect("PKCS#8");
        Self {
            kid: kid.to_owned(),
            encoding: EncodingKey::from_ed_der(der.as_bytes()),
            public: signing.verifying_key().to_bytes(),
        }
    }

    /// The public JWK, exactly as Better Auth publishes it (no `use`).
    pub fn jwk(&self) -> Value {
        json!({
            "kty": "OKP",
            "crv": "Ed25519",
            "x": URL_SAFE_NO_PAD.encode(self.public),
            "kid": self.kid,
            "alg": "EdDSA",
        })
    }

    /// The raw public key bytes (what an algorithm-confusion attacker would use as an HMAC key).
    pub fn public_bytes(&self) -> [u8; 32] {
        self.public
    }

    /// The public key as SubjectPublicKeyInfo PEM and DER, the other encodings an attacker
    /// might try as an HMAC key.
    pub fn public_pem_and_der(&self) -> (String, Vec<u8>) {
        use ed25519_dalek::pkcs8::EncodePublicKey;
        let key = ed25519_dalek::VerifyingKey::from_bytes(&self.public).expect("public key");
        let pem = key
            .to_public_key_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
            .expect("PEM");
        let der = key.to_public_key_der().expect("DER").as_bytes().to_vec();
        (pem, der)
    }

    /// A token with any header JSON (odd `kid`s, `jku`, embedded `jwk`…), signed with this key.
    pub fn sign_raw(&self, header: &Value, claims: &Value) -> String {
        sign_raw(header, claims, &self.encoding, Algorithm::EdDSA)
    }

    /// A token signed with this key: header `{"alg":"EdDSA","kid":...}`, no `typ`.
    pub fn sign(&self, claims: &Value) -> String {
        self.sign_as(&self.kid, claims)
    }

    /// Signed with this key but naming another `kid`.
    pub fn sign_as(&self, kid: &str, claims: &Value) -> String {
        let mut header = Header::new(Algorithm::EdDSA);
        header.typ = None;
        header.kid = Some(kid.to_owned());
        jsonwebtoken::encode(&header, claims, &self.encoding).expect("sign EdDSA")
    }
}

/// A P-521 key, as Better Auth's JWT plugin makes when configured for ES512.
pub struct P521Key {
    pub kid: String,
    signing: p521::ecdsa::SigningKey,
}

impl P521Key {
    pub fn generate(kid: &str) -> Self {
        use rand::RngCore;
        // Below 2^520, so always less than the group order.
        let mut secret = [0_u8; 66];
        rand::rngs::OsRng.fill_bytes(&mut secret[1..]);
        Self {
            kid: kid.to_owned(),
            signing: p521::ecdsa::SigningKey::from_slice(&secret).expect("a P-521 scalar"),
        }
    }

    /// The public JWK as Better Auth (jose) exports it: 66-byte `x` and `y`.
    pub fn jwk(&self) -> Value {
        let point = self.signing.verifying_key().to_sec1_point(false);
        json!({
            "kty": "EC",
            "crv": "P-521",
            "x": URL_SAFE_NO_PAD.encode(point.x().expect("x")),
            "y": URL_SAFE_NO_PAD.encode(point.y().expect("y")),
            "kid": self.kid,
            "alg": "ES512",
        })
    }

    /// A token with any header JSON, signed with this key (ES512: SHA-512, r || s).
    pub fn sign_raw(&self, header: &Value, claims: &Value) -> String {
        use p521::ecdsa::signature::Signer;
        let signing_input = signing_input(header, claims);
        let signature: p521::ecdsa::Signature = self.signing.sign(signing_input.as_bytes());
        format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature.to_bytes())
        )
    }

    /// A token signed with this key: header `{"alg":"ES512","kid":...}`, no `typ`.
    pub fn sign(&self, claims: &Value) -> String {
        self.sign_raw(&json!({"alg": "ES512", "kid": self.kid}), claims)
    }
}

/// The payload Better Auth's JWT plugin signs by default: the user object, `sub`, `iat`, a
/// 15-minute `exp`, and `iss` = `aud` = the base URL.
pub fn better_auth_claims(base_url: &str, user_id: &str) -> Value {
    let iat = now();
    json!({
        "id": user_id,
        "name": "Alice Example",
        "email": format!("{user_id}@example.com"),
        "emailVerified": true,
        "image": null,
        "createdAt": "2026-11-01T10:00:00.000Z",
        "updatedAt": "2026-11-02T10:00:00.000Z",
        "sub": user_id,
        "iat": iat,
        "exp": iat + 15 * 60,
        "iss": base_url,
        "aud": base_url,
    })
}

/// Plain claims for an HS256 token: `sub`, `iat`, `exp` in 15 minutes.
pub fn claims_for(sub: &str) -> Value {
    json!({"sub": sub, "email": format!("{sub}@example.com"), "iat": now(), "exp": now() + 900})
}

/// `claims` with `changes` applied; a `null` change removes the claim.
pub fn with_claims(mut claims: Value, changes: &Value) -> Value {
    for (key, value) in changes.as_object().expect("changes are an object") {
        if value.is_null() {
            claims
                .as_object_mut()
                .expect("claims are an object")
                .remove(key);
        } else {
            claims[key] = value.clone();
        }
    }
    claims
}

/// Signs `claims` with `alg` (an HMAC algorithm) and `secret`.
pub fn hmac_token(alg: Algorithm, secret: &[u8], claims: &Value) -> String {
    jsonwebtoken::encode(&Header::new(alg), claims, &EncodingKey::from_secret(secret))
        .expect("sign HMAC")
}

/// An HS256 token with the test secret.
pub fn hs256(claims: &Value) -> String {
    hmac_token(Algorithm::HS256, HMAC_SECRET.as_bytes(), claims)
}

/// A compact JWS with any header and claims JSON, signed with `key` under `alg` (which the header
/// need not name: that is the point of some attacks).
pub fn sign_raw(header: &Value, claims: &Value, key: &EncodingKey, alg: Algorithm) -> String {
    let signing_input = signing_input(header, claims);
    let signature =
        jsonwebtoken::crypto::sign(signing_input.as_bytes(), key, alg).expect("sign raw JWS");
    format!("{signing_input}.{signature}")
}

/// `header.payload`, each base64url JSON: what a JWS signature covers.
pub fn signing_input(header: &Value, claims: &Value) -> String {
    format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    )
}

/// A token with the given header and claims and an empty signature.
pub fn unsigned(header: &Value, claims: &Value) -> String {
    format!("{}.", signing_input(header, claims))
}
