//! Signature algorithms and the keys that check them.
//!
//! jsonwebtoken verifies every algorithm the gateway accepts except ES512, for which it has no
//! `Algorithm` variant; ES512 (ECDSA on P-521 with SHA-512, RFC 7518 §3.4) is verified here with
//! the p521 crate. Both go through [`VerificationKey::verify`], so the verifier treats every key
//! the same way and one set of claim checks serves all of them.

use std::str::FromStr;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey};
use p521::ecdsa::signature::Verifier as _;

use super::TokenError;

/// Bytes in one P-521 coordinate, and in each half (`r`, `s`) of an ES512 signature.
const P521_FIELD_BYTES: usize = 66;

/// A JWS `alg` the gateway can verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureAlgorithm {
    /// One jsonwebtoken verifies.
    Jose(Algorithm),
    /// ECDSA on P-521 with SHA-512.
    Es512,
}

impl SignatureAlgorithm {
    /// Whether this is an HMAC algorithm, checked only with the shared secret.
    pub fn is_hmac(self) -> bool {
        matches!(self, Self::Jose(alg) if alg.family() == AlgorithmFamily::Hmac)
    }
}

impl FromStr for SignatureAlgorithm {
    type Err = TokenError;

    fn from_str(alg: &str) -> Result<Self, TokenError> {
        match alg {
            "ES512" => Ok(Self::Es512),
            other => Algorithm::from_str(other)
                .map(Self::Jose)
                .map_err(|_| TokenError::UnsupportedAlgorithm),
        }
    }
}

/// A public key from the JWKS, bound to the one algorithm its JWK declares.
pub enum VerificationKey {
    Jose { alg: Algorithm, key: DecodingKey },
    Es512(p521::ecdsa::VerifyingKey),
}

impl VerificationKey {
    /// The P-521 key of an `EC` JWK from its base64url `x` and `y`, each the full 66 bytes
    /// (RFC 7518 §6.2.1.2). A point that is not on the curve is refused.
    pub fn p521_from_coordinates(x: &str, y: &str) -> Result<Self, &'static str> {
        let mut sec1 = Vec::with_capacity(1 + 2 * P521_FIELD_BYTES);
        sec1.push(0x04);
        for coordinate in [x, y] {
            let bytes = URL_SAFE_NO_PAD
                .decode(coordinate)
                .map_err(|_| "malformed key material")?;
            if bytes.len() != P521_FIELD_BYTES {
                return Err("P-521 coordinate is not 66 bytes");
            }
            sec1.extend_from_slice(&bytes);
        }
        p521::ecdsa::VerifyingKey::from_sec1_bytes(&sec1)
            .map(Self::Es512)
            .map_err(|_| "not a point on P-521")
    }

    /// The only algorithm this key verifies.
    pub fn alg(&self) -> SignatureAlgorithm {
        match self {
            Self::Jose { alg, .. } => SignatureAlgorithm::Jose(*alg),
            Self::Es512(_) => SignatureAlgorithm::Es512,
        }
    }

    /// Checks `signature` (the token's third segment, base64url) over `message` (the first two
    /// segments with their dot).
    pub fn verify(&self, message: &[u8], signature: &str) -> Result<(), TokenError> {
        match self {
            Self::Jose { alg, key } => verify_jose(*alg, key, message, signature),
            Self::Es512(key) => {
                let bytes = URL_SAFE_NO_PAD
                    .decode(signature)
                    .map_err(|_| TokenError::Malformed)?;
                // Exactly r || s, each 66 bytes, each in [1, n-1].
                let signature = p521::ecdsa::Signature::from_slice(&bytes)
                    .map_err(|_| TokenError::BadSignature)?;
                key.verify(message, &signature)
                    .map_err(|_| TokenError::BadSignature)
            }
        }
    }
}

/// Checks a signature with jsonwebtoken's implementation of `alg`.
pub fn verify_jose(
    alg: Algorithm,
    key: &DecodingKey,
    message: &[u8],
    signature: &str,
) -> Result<(), TokenError> {
    match jsonwebtoken::crypto::verify(signature, message, key, alg) {
        Ok(true) => Ok(()),
        Ok(false) => Err(TokenError::BadSignature),
        Err(err) if matches!(err.kind(), ErrorKind::Base64(_)) => Err(TokenError::Malformed),
        // A key jsonwebtoken cannot use for `alg` verifies nothing.
        Err(_) => Err(TokenError::BadSignature),
    }
}

/// A fresh P-521 signing key, and the base64url `x` and `y` of its public JWK.
#[cfg(test)]
pub(crate) fn test_p521_key() -> (p521::ecdsa::SigningKey, String, String) {
    use rand::RngCore;
    // Below 2^520, so always less than the group order; zero has probability 2^-520.
    let mut secret = [0_u8; P521_FIELD_BYTES];
    rand::rngs::OsRng.fill_bytes(&mut secret[1..]);
    let signing = p521::ecdsa::SigningKey::from_slice(&secret).expect("a P-521 scalar");
    let point = signing.verifying_key().to_sec1_point(false);
    let x = URL_SAFE_NO_PAD.encode(point.x().expect("x"));
    let y = URL_SAFE_NO_PAD.encode(point.y().expect("y"));
    (signing, x, y)
}

#[cfg(test)]
mod tests {
    use p521::ecdsa::signature::Signer;

    use super::*;

    fn p521_key() -> (p521::ecdsa::SigningKey, VerificationKey) {
        let (signing, x, y) = test_p521_key();
        let key = VerificationKey::p521_from_coordinates(&x, &y).expect("P-521 JWK");
        (signing, key)
    }

    #[test]
    fn algorithm_names_parse_exactly() {
        assert_eq!("ES512".parse(), Ok(SignatureAlgorithm::Es512));
        assert_eq!(
            "EdDSA".parse(),
            Ok(SignatureAlgorithm::Jose(Algorithm::EdDSA))
        );
        for refused in ["es512", "ES512 ", "none", "ES521", ""] {
            assert_eq!(
                refused.parse::<SignatureAlgorithm>(),
                Err(TokenError::UnsupportedAlgorithm),
                "{refused:?}"
            );
        }
        assert!(
            "HS512"
                .parse::<SignatureAlgorithm>()
                .expect("HS512")
                .is_hmac()
        );
        assert!(!SignatureAlgorithm::Es512.is_hmac());
    }

    /// RFC 7515 Appendix A.4: the published ES512 example verifies, and not over another payload.
    #[test]
    fn the_rfc_7515_es512_example_verifies() {
        let key = VerificationKey::p521_from_coordinates(
            "AekpBQ8ST8a8VcfVOTNl353vSrDCLLJXmPk06wTjxrrjcBpXp5EOnYG_NjFZ6OvLFV1jSfS9tsz4qUxcWceqwQGk",
            "ADSmRA43Z1DSNx_RvcLI87cdL07l6jQyyBXMoxVg_l2Th-x3S1WDhjDly79ajL4Kkd0AZMaZmh9ubmf63e3kyMj2",
        )
        .expect("the RFC's P-521 key");
        let signature = "AdwMgeerwtHoh-l192l60hp9wAHZFVJbLfD_UxMi70cwnZOYaRI1bKPWROc-mZZqwqT2SI-KGDKB34XO0aw_7XdtAG8GaSwFKdCAPZgoXD2YBJZCPEX3xKpRwcdOO8KpEHwJjyqOgzDO7iKvU8vcnwNrmxYbSW9ERBXukOXolLzeO_Jn";
        assert_eq!(
            key.verify(b"eyJhbGciOiJFUzUxMiJ9.UGF5bG9hZA", signature),
            Ok(())
        );
        assert_eq!(
            key.verify(b"eyJhbGciOiJFUzUxMiJ9.UGF5bG9hZQ", signature),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn es512_signatures_verify_only_over_their_message() {
        let (signing, key) = p521_key();
        assert_eq!(key.alg(), SignatureAlgorithm::Es512);
        let message = b"eyJhbGciOiJFUzUxMiJ9.eyJzdWIiOiJhbGljZSJ9";
        let signature: p521::ecdsa::Signature = signing.sign(message);
        let bytes = signature.to_bytes().to_vec();
        assert_eq!(bytes.len(), 2 * P521_FIELD_BYTES);
        let encoded = URL_SAFE_NO_PAD.encode(&bytes);
        assert_eq!(key.verify(message, &encoded), Ok(()));

        assert_eq!(
            key.verify(b"eyJhbGciOiJFUzUxMiJ9.eyJzdWIiOiJib2IifQ", &encoded),
            Err(TokenError::BadSignature)
        );
        let mut flipped = bytes.clone();
        flipped[70] ^= 1;
        assert_eq!(
            key.verify(message, &URL_SAFE_NO_PAD.encode(&flipped)),
            Err(TokenError::BadSignature)
        );
        // Short, long and zero signatures are not ES512 signatures.
        for bad in [
            bytes[..131].to_vec(),
            [bytes.clone(), vec![0]].concat(),
            vec![0; 132],
        ] {
            assert_eq!(
                key.verify(message, &URL_SAFE_NO_PAD.encode(&bad)),
                Err(TokenError::BadSignature)
            );
        }
        assert_eq!(
            key.verify(message, "not base64!"),
            Err(TokenError::Malformed)
        );
        // Another key's signature does not verify.
        let (_, other) = p521_key();
        assert_eq!(
            other.verify(message, &encoded),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn p521_coordinates_must_be_a_full_length_point_on_the_curve() {
        let (_, x, y) = test_p521_key();
        let (x, y) = (
            URL_SAFE_NO_PAD.decode(x).expect("x"),
            URL_SAFE_NO_PAD.decode(y).expect("y"),
        );
        let mut off_curve = y.clone();
        off_curve[65] ^= 1;
        let cases = [
            (x[1..].to_vec(), y.clone()),
            ([x.as_slice(), &[0]].concat(), y.clone()),
            (x.clone(), off_curve),
            (vec![0; 66], vec![0; 66]),
        ];
        for (x, y) in cases {
            assert!(
                VerificationKey::p521_from_coordinates(
                    &URL_SAFE_NO_PAD.encode(x),
                    &URL_SAFE_NO_PAD.encode(y)
                )
                .is_err()
            );
        }
        assert!(VerificationKey::p521_from_coordinates("!!", "AA").is_err());
    }
}
