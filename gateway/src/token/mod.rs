//! Bearer-token verification: which tokens prove which user.
//!
//! The token header's `alg` picks the path, and the paths never cross:
//!
//! - `HS256`/`HS384`/`HS512` are verified with `BETTER_AUTH_SECRET` only (when it is set);
//! - `EdDSA`, `ES256`, `ES384`, `ES512`, `RS*` and `PS*` are verified only with the JWKS key named
//!   by the header's `kid`, and only when that JWK's own `alg` is the header's `alg`.
//! - `none` and anything else are refused.
//!
//! So an HMAC algorithm is never checked against a public key (no algorithm confusion), and a
//! public key never serves as an HMAC secret. The signature is checked before any claim is read
//! ([`key`]); then one set of claim checks serves every algorithm: `exp` is required; `nbf` and
//! `iat` are honoured with the configured leeway; `iss`/`aud` are checked (always for JWKS
//! tokens, for HS tokens when configured); `sub` must be a non-empty string, which also keeps
//! Better Auth's `session_data` cookie (HS256 with the same secret, but no `sub`) from passing as
//! a bearer.

pub mod cache;
pub mod jwks;
pub mod key;
pub mod trace;

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::clock::now_unix;
use jsonwebtoken::DecodingKey;
use serde::Deserialize;

use crate::config::TokenConfig;
use crate::metrics::Metrics;
use cache::TokenCache;
use jwks::JwksStore;
use key::SignatureAlgorithm;
pub use trace::{Outcome, Step, Trace};

/// Who a verified token speaks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The token's `sub`: the user id.
    pub sub: String,
    /// The token's `email`, when it has one.
    pub email: Option<String>,
    /// The token's `sid` (its session), `jti` (its own id) and `iat`, for the revocation check.
    pub sid: Option<String>,
    pub jti: Option<String>,
    pub iat: Option<u64>,
}

/// Why a token was refused. Every variant is a 401.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("token is malformed")]
    Malformed,
    #[error("token algorithm is not accepted")]
    UnsupportedAlgorithm,
    #[error("token signing key is unknown")]
    UnknownKey,
    #[error("token signature is invalid")]
    BadSignature,
    #[error("token has expired")]
    Expired,
    #[error("token is not valid yet")]
    NotYetValid,
    #[error("token issuer is not accepted")]
    WrongIssuer,
    #[error("token audience is not accepted")]
    WrongAudience,
    #[error("token has no subject")]
    MissingSubject,
}

/// Longest `kid` looked up; longer ones are malformed rather than cache keys.
const MAX_KID_LEN: usize = 256;

/// The part of the token header that picks the verification path.
#[derive(Deserialize)]
struct TokenHeader {
    alg: String,
    kid: Option<String>,
    /// Critical extensions (RFC 7515 §4.1.11): none is understood, so any makes the token invalid.
    crit: Option<serde_json::Value>,
}

/// The claims the gateway judges, read once the signature has been verified. Loosely typed so
/// that an odd value yields a precise refusal rather than a parse error; a claim given twice is
/// malformed.
#[derive(Deserialize)]
struct Claims {
    sub: Option<serde_json::Value>,
    email: Option<serde_json::Value>,
    iss: Option<serde_json::Value>,
    aud: Option<serde_json::Value>,
    iat: Option<serde_json::Value>,
    nbf: Option<serde_json::Value>,
    exp: Option<serde_json::Value>,
    sid: Option<serde_json::Value>,
    jti: Option<serde_json::Value>,
}

/// How one family of tokens has its claims checked.
#[derive(Clone)]
struct ClaimRules {
    issuers: Option<Vec<String>>,
    audiences: Option<Vec<String>>,
}

struct HmacSource {
    key: DecodingKey,
    rules: ClaimRules,
}

struct JwksSource {
    store: Arc<JwksStore>,
    rules: ClaimRules,
}

/// Verifies bearer tokens against the configured sources, remembering verified ones.
pub struct Verifier {
    hmac: Option<HmacSource>,
    jwks: Option<JwksSource>,
    leeway: u64,
    cache: TokenCache,
    metrics: Arc<Metrics>,
}

impl Verifier {
    /// A verifier for `config`. `jwks` must be given exactly when `config.jwks` is set; the
    /// `cache` is shared with the store so withdrawn keys clear it.
    pub fn new(
        config: &TokenConfig,
        jwks: Option<Arc<JwksStore>>,
        cache: TokenCache,
        metrics: Arc<Metrics>,
    ) -> Self {
        let hmac = config.hmac.as_ref().map(|hmac| HmacSource {
            key: DecodingKey::from_secret(hmac.secret_bytes()),
            rules: ClaimRules {
                issuers: hmac.issuer.clone().map(|issuer| vec![issuer]),
                audiences: hmac.audience.clone().map(|audience| vec![audience]),
            },
        });
        let jwks = config
            .jwks
            .as_ref()
            .zip(jwks)
            .map(|(settings, store)| JwksSource {
                store,
                rules: ClaimRules {
                    issuers: Some(settings.issuers.clone()),
                    audiences: Some(settings.audiences.clone()),
                },
            });
        Self {
            hmac,
            jwks,
            leeway: config.leeway_seconds,
            cache,
            metrics,
        }
    }

    /// Verifies `token`, answering from the cache when it was verified before.
    pub async fn verify(&self, token: &str) -> Result<Arc<Principal>, TokenError> {
        match self.cached(token) {
            Some(principal) => Ok(principal),
            None => self.verify_fresh(token).await,
        }
    }

    /// The principal of `token` if it was verified before and is still remembered.
    pub fn cached(&self, token: &str) -> Option<Arc<Principal>> {
        let principal = self.cache.get(&cache::digest(token))?;
        self.metrics.token_cache.with_label_values(&["hit"]).inc();
        Some(principal)
    }

    /// Verifies a token that [`Self::cached`] did not know, and remembers it.
    pub async fn verify_fresh(&self, token: &str) -> Result<Arc<Principal>, TokenError> {
        self.metrics.token_cache.with_label_values(&["miss"]).inc();
        let (principal, exp) = self.verify_uncached(token).await?;
        let principal = Arc::new(principal);
        self.cache
            .insert(cache::digest(token), Arc::clone(&principal), exp);
        Ok(principal)
    }

    /// Verifies `token` from scratch; returns the principal and the token's `exp`.
    pub async fn verify_uncached(&self, token: &str) -> Result<(Principal, u64), TokenError> {
        self.verify_traced(token, &mut Trace::off()).await
    }

    /// Verifies `token` from scratch, recording each step in `trace` (see [`trace::STEPS`] for
    /// the order). The cache is neither read nor written, so a dry run changes nothing.
    pub async fn verify_traced(
        &self,
        token: &str,
        trace: &mut Trace,
    ) -> Result<(Principal, u64), TokenError> {
        let (token, header, alg) =
            trace.check(trace::TOKEN_HEADER, read_header(token), |(_, header, _)| {
                format!(
                    "alg {}, kid {}",
                    header.alg,
                    header.kid.as_deref().unwrap_or("(none)")
                )
            })?;
        let rules = match alg {
            SignatureAlgorithm::Jose(hmac_alg) if alg.is_hmac() => {
                let hmac = trace.check(
                    trace::KEY,
                    self.hmac.as_ref().ok_or(TokenError::UnsupportedAlgorithm),
                    |_| "the shared secret (BETTER_AUTH_SECRET)".to_owned(),
                )?;
                trace.check(
                    trace::SIGNATURE,
                    key::verify_jose(hmac_alg, &hmac.key, token.signing_input, token.signature),
                    |()| format!("{} signature verified", header.alg),
                )?;
                &hmac.rules
            }
            _ => {
                let found = async {
                    let jwks = self.jwks.as_ref().ok_or(TokenError::UnsupportedAlgorithm)?;
                    let kid = header.kid.as_deref().ok_or(TokenError::UnknownKey)?;
                    let key = jwks.store.key(kid).await.ok_or(TokenError::UnknownKey)?;
                    if key.alg() != alg {
                        return Err(TokenError::UnsupportedAlgorithm);
                    }
                    Ok::<_, TokenError>((jwks, key))
                }
                .await;
                let (jwks, key) = trace.check(trace::KEY, found, |_| {
                    format!(
                        "JWKS key {} for {}",
                        header.kid.as_deref().unwrap_or_default(),
                        header.alg
                    )
                })?;
                trace.check(
                    trace::SIGNATURE,
                    key.verify(token.signing_input, token.signature),
                    |()| format!("{} signature verified", header.alg),
                )?;
                &jwks.rules
            }
        };
        let claims = trace.check(trace::CLAIMS, token.claims(), |_| {
            "the payload is one JSON object".to_owned()
        })?;
        self.check_claims(claims, rules, trace)
    }

    /// The checks every verified token's claims must pass, whatever signed it.
    fn check_claims(
        &self,
        claims: Claims,
        rules: &ClaimRules,
        trace: &mut Trace,
    ) -> Result<(Principal, u64), TokenError> {
        let now = now_unix();
        let leeway = self.leeway;
        let date = |claim: Option<&serde_json::Value>| {
            claim
                .map(|value| numeric_date(value).ok_or(TokenError::Malformed))
                .transpose()
        };
        let exp = date(claims.exp.as_ref()).and_then(|exp| {
            let exp = exp.ok_or(TokenError::Malformed)?;
            if exp.saturating_add(leeway) < now {
                return Err(TokenError::Expired);
            }
            Ok(exp)
        });
        let exp = trace.check(trace::CLAIMS_EXP, exp, |exp| {
            format!("expires at {exp}, now {now}, leeway {leeway} s")
        })?;
        // A future `nbf`, or an `iat` in the future, beyond the leeway: not valid yet (or a
        // forged or mis-clocked token).
        for (check, claim) in [
            (trace::CLAIMS_NBF, claims.nbf.as_ref()),
            (trace::CLAIMS_IAT, claims.iat.as_ref()),
        ] {
            let not_before = date(claim).and_then(|at| match at {
                Some(at) if at > now.saturating_add(leeway) => Err(TokenError::NotYetValid),
                at => Ok(at),
            });
            trace.check(check, not_before, |at| match at {
                Some(at) => format!("{at}, now {now}, leeway {leeway} s"),
                None => "absent".to_owned(),
            })?;
        }
        // Checked just above; kept for the revocation check of a user's older tokens.
        let iat = date(claims.iat.as_ref())?;
        let iss = claims.iss.as_ref().and_then(serde_json::Value::as_str);
        match &rules.issuers {
            None => trace.record(trace::CLAIMS_ISS, Outcome::Skipped, || {
                "no issuer is configured".to_owned()
            }),
            Some(issuers) => {
                let accepted = iss.filter(|iss| issuers.iter().any(|accepted| accepted == iss));
                trace.check(
                    trace::CLAIMS_ISS,
                    accepted.ok_or(TokenError::WrongIssuer),
                    |iss| format!("{iss:?} is accepted"),
                )?;
            }
        }
        // Without a configured audience an `aud` claim is not ours to judge.
        match &rules.audiences {
            None => trace.record(trace::CLAIMS_AUD, Outcome::Skipped, || {
                "no audience is configured".to_owned()
            }),
            Some(audiences) => {
                let names_us = |aud: &serde_json::Value| {
                    aud.as_str()
                        .is_some_and(|aud| audiences.iter().any(|accepted| accepted == aud))
                };
                let addressed = match &claims.aud {
                    Some(serde_json::Value::Array(auds)) => auds.iter().any(names_us),
                    Some(aud) => names_us(aud),
                    None => false,
                };
                trace.check(
                    trace::CLAIMS_AUD,
                    if addressed {
                        Ok(())
                    } else {
                        Err(TokenError::WrongAudience)
                    },
                    |()| "names an accepted audience".to_owned(),
                )?;
            }
        }
        let sub = match claims.sub {
            Some(serde_json::Value::String(sub)) if !sub.is_empty() => Ok(sub),
            _ => Err(TokenError::MissingSubject),
        };
        let sub = trace.check(trace::CLAIMS_SUB, sub, |sub| format!("user {sub:?}"))?;
        let email = match claims.email {
            Some(serde_json::Value::String(email)) if !email.is_empty() => Some(email),
            _ => None,
        };
        // A session or token id that is not a string could never match a revocation.
        let id = |claim: Option<serde_json::Value>| match claim {
            None => Ok(None),
            Some(serde_json::Value::String(id)) => Ok(Some(id)),
            Some(_) => Err(TokenError::Malformed),
        };
        let (sid, jti) = (id(claims.sid)?, id(claims.jti)?);
        Ok((
            Principal {
                sub,
                email,
                sid,
                jti,
                iat,
            },
            exp,
        ))
    }
}

/// Splits a compact JWS and reads its header and `alg`.
fn read_header(
    token: &str,
) -> Result<(CompactToken<'_>, TokenHeader, SignatureAlgorithm), TokenError> {
    let token = CompactToken::split(token)?;
    let header = token.header()?;
    let alg: SignatureAlgorithm = header.alg.parse()?;
    Ok((token, header, alg))
}

/// A compact JWS split into its segments.
struct CompactToken<'a> {
    header: &'a str,
    payload: &'a str,
    /// `header.payload`: what the signature covers.
    signing_input: &'a [u8],
    signature: &'a str,
}

impl<'a> CompactToken<'a> {
    /// Exactly three dot-separated segments.
    fn split(token: &'a str) -> Result<Self, TokenError> {
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed);
        };
        Ok(Self {
            header,
            payload,
            signing_input: &token.as_bytes()[..header.len() + 1 + payload.len()],
            signature,
        })
    }

    /// The decoded header; a `crit` extension or an over-long `kid` makes the token malformed.
    fn header(&self) -> Result<TokenHeader, TokenError> {
        let header: TokenHeader = decode_json(self.header)?;
        if header.crit.is_some()
            || header
                .kid
                .as_ref()
                .is_some_and(|kid| kid.len() > MAX_KID_LEN)
        {
            return Err(TokenError::Malformed);
        }
        Ok(header)
    }

    /// The decoded payload.
    fn claims(&self) -> Result<Claims, TokenError> {
        decode_json(self.payload)
    }
}

/// A base64url segment holding a JSON object, read as `T`.
fn decode_json<T: serde::de::DeserializeOwned>(segment: &str) -> Result<T, TokenError> {
    let json = URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| TokenError::Malformed)?;
    // serde would also read a struct from a JSON array, by position.
    if json.trim_ascii_start().first() != Some(&b'{') {
        return Err(TokenError::Malformed);
    }
    serde_json::from_slice(&json).map_err(|_| TokenError::Malformed)
}

/// A JWT NumericDate: a non-negative number of seconds that fits in a `u64` (a larger one would
/// otherwise saturate into "valid forever").
fn numeric_date(value: &serde_json::Value) -> Option<u64> {
    /// 2^64: the first float above every `u64`.
    const BEYOND_U64: f64 = 18_446_744_073_709_551_616.0;
    value.as_u64().or_else(|| {
        value
            .as_f64()
            .filter(|seconds| (0.0..BEYOND_U64).contains(seconds))
            // Truncation is intended: a NumericDate may carry a fraction of a second.
            .map(|seconds| seconds as u64)
    })
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::{Algorithm, EncodingKey, Header};
    use serde_json::{Value, json};

    use super::*;
    use crate::config::HmacConfig;

    const SECRET: &str = "better-auth-secret-better-auth-secret-01";

    fn config(issuer: Option<&str>, audience: Option<&str>) -> TokenConfig {
        TokenConfig {
            hmac: Some(HmacConfig {
                secret: SECRET.to_owned().into(),
                issuer: issuer.map(str::to_owned),
                audience: audience.map(str::to_owned),
            }),
            jwks: None,
            leeway_seconds: 60,
            cache_capacity: 100,
            cache_max_bytes: cache::DEFAULT_MAX_BYTES,
        }
    }

    fn verifier(config: &TokenConfig) -> (Verifier, Arc<Metrics>) {
        let metrics = Arc::new(Metrics::new().expect("metrics"));
        let verifier = Verifier::new(config, None, TokenCache::new(100), Arc::clone(&metrics));
        (verifier, metrics)
    }

    fn hs(alg: Algorithm, claims: &Value) -> String {
        jsonwebtoken::encode(
            &Header::new(alg),
            claims,
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .expect("sign")
    }

    fn claims(extra: Value) -> Value {
        let mut claims = json!({"sub": "alice", "email": "alice@example.com", "iat": now_unix(), "exp": now_unix() + 600});
        if let (Some(base), Some(extra)) = (claims.as_object_mut(), extra.as_object()) {
            for (key, value) in extra {
                if value.is_null() {
                    base.remove(key);
                } else {
                    base.insert(key.clone(), value.clone());
                }
            }
        }
        claims
    }

    async fn check(verifier: &Verifier, token: &str) -> Result<Principal, TokenError> {
        verifier
            .verify_uncached(token)
            .await
            .map(|(principal, _)| principal)
    }

    #[tokio::test]
    async fn hmac_tokens_with_the_secret_are_accepted() {
        let (verifier, _) = verifier(&config(None, None));
        for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
            let principal = check(&verifier, &hs(alg, &claims(json!({}))))
                .await
                .expect("valid");
            assert_eq!(principal.sub, "alice");
            assert_eq!(principal.email.as_deref(), Some("alice@example.com"));
        }
        // Without a configured audience, an `aud` claim is not judged.
        let with_aud = hs(Algorithm::HS256, &claims(json!({"aud": "elsewhere"})));
        assert!(check(&verifier, &with_aud).await.is_ok());
    }

    #[tokio::test]
    async fn claims_are_checked_with_leeway() {
        let (verifier, _) = verifier(&config(None, None));
        let now = now_unix();
        let cases = [
            (json!({"exp": now - 120}), Err(TokenError::Expired)),
            (json!({"exp": now - 30}), Ok(())),
            (json!({"nbf": now + 600}), Err(TokenError::NotYetValid)),
            (json!({"nbf": now + 30}), Ok(())),
            (json!({"iat": now + 600}), Err(TokenError::NotYetValid)),
            (json!({"iat": "yesterday"}), Err(TokenError::Malformed)),
            (json!({"nbf": "soon"}), Err(TokenError::Malformed)),
            (json!({"nbf": -1}), Err(TokenError::Malformed)),
            (json!({"exp": -1}), Err(TokenError::Malformed)),
            (json!({"exp": [now + 600]}), Err(TokenError::Malformed)),
            (json!({"exp": 1e300}), Err(TokenError::Malformed)),
            (
                json!({"exp": 18_446_744_073_709_551_616.0}),
                Err(TokenError::Malformed),
            ),
            // A NumericDate may carry a fraction of a second.
            (json!({"exp": now as f64 + 600.5}), Ok(())),
            (json!({"exp": null}), Err(TokenError::Malformed)),
            (
                json!({"exp": (now + 600).to_string()}),
                Err(TokenError::Malformed),
            ),
            (json!({"sub": null}), Err(TokenError::MissingSubject)),
            (json!({"sub": ""}), Err(TokenError::MissingSubject)),
            (json!({"sub": 42}), Err(TokenError::MissingSubject)),
        ];
        for (extra, expected) in cases {
            let token = hs(Algorithm::HS256, &claims(extra.clone()));
            assert_eq!(
                check(&verifier, &token).await.map(|_| ()),
                expected,
                "{extra}"
            );
        }
    }

    #[tokio::test]
    async fn better_auth_session_cookie_never_passes() {
        let (verifier, _) = verifier(&config(None, None));
        // The shape of Better Auth's `session_data` cookie cache: HS256 with the same secret,
        // the session and user inside, no `sub`.
        let cookie = hs(
            Algorithm::HS256,
            &json!({
                "session": {"session": {"token": "raw-session-token", "userId": "alice"}, "user": {"id": "alice"}},
                "expiresAt": now_unix() + 300,
                "exp": now_unix() + 300,
                "iat": now_unix(),
            }),
        );
        assert_eq!(
            check(&verifier, &cookie).await,
            Err(TokenError::MissingSubject)
        );
    }

    #[tokio::test]
    async fn configured_issuer_and_audience_are_required() {
        let (verifier, _) = verifier(&config(Some("https://auth"), Some("https://api")));
        let good = json!({"iss": "https://auth", "aud": ["other", "https://api"]});
        assert!(
            check(&verifier, &hs(Algorithm::HS256, &claims(good)))
                .await
                .is_ok()
        );
        let cases = [
            (
                json!({"iss": "https://evil", "aud": "https://api"}),
                TokenError::WrongIssuer,
            ),
            (json!({"aud": "https://api"}), TokenError::WrongIssuer),
            (
                json!({"iss": "https://auth", "aud": "https://other"}),
                TokenError::WrongAudience,
            ),
            (json!({"iss": "https://auth"}), TokenError::WrongAudience),
        ];
        for (extra, expected) in cases {
            let token = hs(Algorithm::HS256, &claims(extra.clone()));
            assert_eq!(check(&verifier, &token).await, Err(expected), "{extra}");
        }
    }

    #[tokio::test]
    async fn bad_signatures_algorithms_and_headers_are_refused() {
        let (verifier, _) = verifier(&config(None, None));
        let payload = URL_SAFE_NO_PAD.encode(claims(json!({})).to_string());
        let unsigned = |header: &str| format!("{}.{payload}.", URL_SAFE_NO_PAD.encode(header));
        let good = hs(Algorithm::HS256, &claims(json!({})));
        let forged = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims(json!({})),
            &EncodingKey::from_secret(b"another-secret-another-secret-0123456789"),
        )
        .expect("sign");
        let cases = [
            (
                unsigned(r#"{"alg":"none"}"#),
                TokenError::UnsupportedAlgorithm,
            ),
            (
                unsigned(r#"{"alg":"None"}"#),
                TokenError::UnsupportedAlgorithm,
            ),
            // Asymmetric tokens need a JWKS, which this verifier does not have.
            (
                unsigned(r#"{"alg":"ES512","kid":"k"}"#),
                TokenError::UnsupportedAlgorithm,
            ),
            (
                unsigned(r#"{"alg":"EdDSA","kid":"k"}"#),
                TokenError::UnsupportedAlgorithm,
            ),
            (
                unsigned(r#"{"alg":"HS256","crit":["exp"]}"#),
                TokenError::Malformed,
            ),
            (forged, TokenError::BadSignature),
            (format!("{good}.extra"), TokenError::Malformed),
            ("not-a-token".to_owned(), TokenError::Malformed),
            ("a.b.c".to_owned(), TokenError::Malformed),
        ];
        for (token, expected) in cases {
            assert_eq!(check(&verifier, &token).await, Err(expected), "{token}");
        }
    }

    /// An HS256 token over exactly `payload`, which need not be what serde would write.
    fn hs256_raw(payload: &str) -> String {
        let message = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256"}"#),
            URL_SAFE_NO_PAD.encode(payload)
        );
        let signature = jsonwebtoken::crypto::sign(
            message.as_bytes(),
            &EncodingKey::from_secret(SECRET.as_bytes()),
            Algorithm::HS256,
        )
        .expect("sign");
        format!("{message}.{signature}")
    }

    #[tokio::test]
    async fn payloads_must_be_one_json_object_with_each_claim_once() {
        let (verifier, _) = verifier(&config(Some("https://auth"), None));
        let exp = now_unix() + 600;
        let good = format!(r#"{{"sub":"alice","iss":"https://auth","exp":{exp}}}"#);
        assert!(check(&verifier, &hs256_raw(&good)).await.is_ok());
        let cases = [
            // By position, an array would read as sub, email, iss, aud, iat, nbf, exp.
            (
                format!(r#"["alice",null,"https://auth",null,null,null,{exp}]"#),
                TokenError::Malformed,
            ),
            (
                format!(r#"{{"sub":"alice","sub":"bob","iss":"https://auth","exp":{exp}}}"#),
                TokenError::Malformed,
            ),
            (format!("{good} trailing"), TokenError::Malformed),
            (
                format!(r#"{{"sub":"alice","iss":["https://auth"],"exp":{exp}}}"#),
                TokenError::WrongIssuer,
            ),
            ("null".to_owned(), TokenError::Malformed),
        ];
        for (payload, expected) in cases {
            assert_eq!(
                check(&verifier, &hs256_raw(&payload)).await,
                Err(expected),
                "{payload}"
            );
        }
    }

    #[tokio::test]
    async fn a_trace_records_each_step_up_to_the_refusal() {
        use Outcome::{Fail, Pass, Skipped};
        let (verifier, metrics) = verifier(&config(Some("https://auth"), None));
        let steps = |trace: Trace| {
            trace
                .into_steps()
                .into_iter()
                .map(|step| (step.check, step.outcome))
                .collect::<Vec<_>>()
        };
        let expired = hs(
            Algorithm::HS256,
            &claims(json!({"iss": "https://auth", "exp": now_unix() - 3600})),
        );
        let mut trace = Trace::on();
        let result = verifier.verify_traced(&expired, &mut trace).await;
        assert_eq!(result.map(|_| ()), Err(TokenError::Expired));
        assert_eq!(
            steps(trace),
            [
                (trace::TOKEN_HEADER, Pass),
                (trace::KEY, Pass),
                (trace::SIGNATURE, Pass),
                (trace::CLAIMS, Pass),
                (trace::CLAIMS_EXP, Fail),
            ]
        );
        let good = hs(Algorithm::HS256, &claims(json!({"iss": "https://auth"})));
        let mut trace = Trace::on();
        assert!(verifier.verify_traced(&good, &mut trace).await.is_ok());
        let recorded = steps(trace);
        assert_eq!(
            recorded.iter().map(|(check, _)| *check).collect::<Vec<_>>(),
            trace::STEPS,
            "every step, in order"
        );
        assert!(
            recorded.contains(&(trace::CLAIMS_AUD, Skipped)),
            "no audience set"
        );
        assert!(!recorded.iter().any(|(_, outcome)| *outcome == Fail));
        // Tracing never touches the verified-token cache.
        assert_eq!(metrics.token_cache.with_label_values(&["miss"]).get(), 0);
        assert!(verifier.verify(&good).await.is_ok());
        assert_eq!(metrics.token_cache.with_label_values(&["miss"]).get(), 1);
    }

    #[tokio::test]
    async fn verified_tokens_are_served_from_the_cache() {
        let (verifier, metrics) = verifier(&config(None, None));
        let token = hs(Algorithm::HS256, &claims(json!({})));
        let first = verifier.verify(&token).await.expect("valid");
        let second = verifier.verify(&token).await.expect("cached");
        assert!(Arc::ptr_eq(&first, &second));
        assert_eq!(metrics.token_cache.with_label_values(&["miss"]).get(), 1);
        assert_eq!(metrics.token_cache.with_label_values(&["hit"]).get(), 1);
        // A refused token is never cached.
        assert!(verifier.verify("a.b.c").await.is_err());
        assert!(verifier.verify("a.b.c").await.is_err());
        assert_eq!(metrics.token_cache.with_label_values(&["miss"]).get(), 3);
    }
}
