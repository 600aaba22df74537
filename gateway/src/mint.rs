//! `gateway mint-token`: an HS256 token signed with `BETTER_AUTH_SECRET`, for trying the system
//! without a frontend. It carries what the gateway checks: `sub`, `iat`, `exp`, `email` when
//! given, and `iss`/`aud` when `JWT_ISSUER`/`JWT_AUDIENCE` (or else `BETTER_AUTH_URL`) is set.

use std::time::Duration;

use common::clock::now_unix;
use common::config::{ConfigError, Env};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;

use crate::config::{BETTER_AUTH_SECRET, BETTER_AUTH_URL, TokenConfig};

/// What to put in the token.
#[derive(Debug, Clone)]
pub struct MintRequest {
    pub sub: String,
    pub email: Option<String>,
    pub ttl: Duration,
}

#[derive(Serialize)]
struct Claims<'a> {
    sub: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<&'a str>,
    iat: u64,
    exp: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    iss: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    aud: Option<&'a str>,
}

/// Signs a token for `request` with the configuration in `env`.
pub fn mint_token(env: &Env, request: &MintRequest) -> Result<String, ConfigError> {
    let tokens = TokenConfig::from_env(env)?;
    let hmac = tokens
        .hmac
        .ok_or_else(|| ConfigError::new(BETTER_AUTH_SECRET, "is required to mint a token"))?;
    let base_url = env.get(BETTER_AUTH_URL)?;
    let iss = hmac.issuer.as_deref().or(base_url);
    let aud = hmac.audience.as_deref().or(base_url);
    let iat = now_unix();
    let claims = Claims {
        sub: &request.sub,
        email: request.email.as_deref(),
        iat,
        exp: iat.saturating_add(request.ttl.as_secs()),
        iss,
        aud,
    };
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(hmac.secret_bytes()),
    )
    .map_err(|err| ConfigError::new(BETTER_AUTH_SECRET, format!("cannot sign: {err}")))
}

/// Parses a lifetime such as `90s`, `15m`, `1h`, `2d` or a bare number of seconds.
pub fn parse_ttl(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 90s, 15m, 1h or 2d"))?;
    let seconds = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("{text:?} has an unknown unit (use s, m, h or d)")),
    };
    let total = number
        .checked_mul(seconds)
        .filter(|total| *total > 0)
        .ok_or_else(|| format!("{text:?} is out of range"))?;
    Ok(Duration::from_secs(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_units() {
        assert_eq!(parse_ttl("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_ttl("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_ttl("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_ttl("2d"), Ok(Duration::from_secs(172_800)));
        for bad in ["", "h", "1w", "-1h", "0s", "1.5h"] {
            assert!(parse_ttl(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn minting_needs_the_shared_secret() {
        let env = Env::from_pairs([(BETTER_AUTH_URL, "http://localhost:3000")]);
        let request = MintRequest {
            sub: "alice".into(),
            email: None,
            ttl: Duration::from_secs(60),
        };
        assert_eq!(
            mint_token(&env, &request).expect_err("no secret").variable,
            BETTER_AUTH_SECRET
        );
    }
}
