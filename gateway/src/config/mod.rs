//! The gateway's typed configuration, read once at start from a [`common::config::Env`].
//!
//! Every bad value becomes a [`ConfigError`] naming its variable, so `main` can stop with one
//! clear line. Secrets are held in types that never print their value.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use common::assertion::SigningSecret;
use common::config::{ConfigError, Env, signing_secret};
use common::tracing_export::ExportSettings;
use reqwest::Url;
use secrecy::{ExposeSecret, SecretString};

use crate::revocation::RevocationConfig;

mod upstream;

pub use upstream::{ReplicaAddress, UpstreamConfig};

// The name of each variable the gateway reads, once; the shared signing secret's names are in
// `common::config`, the logging ones in `common::telemetry`.
/// The public listener.
pub const GATEWAY_LISTEN: &str = "GATEWAY_LISTEN";
/// The admin listener (`/metrics`, `/healthz`, `/readyz`).
pub const GATEWAY_ADMIN_LISTEN: &str = "GATEWAY_ADMIN_LISTEN";
/// Where a graceful upgrade hands over the listening sockets.
pub const GATEWAY_UPGRADE_SOCK: &str = "GATEWAY_UPGRADE_SOCK";
/// Better Auth's base URL: the default JWKS URL, issuer and audience.
pub const BETTER_AUTH_URL: &str = "BETTER_AUTH_URL";
/// The shared secret of HS256/384/512 tokens.
pub const BETTER_AUTH_SECRET: &str = "BETTER_AUTH_SECRET";
/// The JWKS endpoint, when not under `BETTER_AUTH_URL`.
pub const JWKS_URL: &str = "JWKS_URL";
/// The accepted `iss`.
pub const JWT_ISSUER: &str = "JWT_ISSUER";
/// The accepted `aud`.
pub const JWT_AUDIENCE: &str = "JWT_AUDIENCE";
/// Clock skew tolerated on `exp`, `nbf` and `iat`.
pub const JWT_LEEWAY_SECONDS: &str = "JWT_LEEWAY_SECONDS";
/// How many verified tokens are remembered.
pub const TOKEN_CACHE_CAPACITY: &str = "TOKEN_CACHE_CAPACITY";
/// About how much memory the remembered tokens may take, in bytes.
pub const TOKEN_CACHE_MAX_BYTES: &str = "TOKEN_CACHE_MAX_BYTES";
/// Keys not refreshed for longer are reported stale.
pub const JWKS_MAX_AGE_SECONDS: &str = "JWKS_MAX_AGE_SECONDS";
/// Failed verifications allowed per client address per minute; 0 is off.
pub const FAILED_AUTH_PER_ADDRESS_PER_MINUTE: &str = "FAILED_AUTH_PER_ADDRESS_PER_MINUTE";
/// Load balancers whose `X-Forwarded-For` names the client, comma-separated CIDRs.
pub const TRUSTED_PROXY_CIDRS: &str = "TRUSTED_PROXY_CIDRS";
/// How often the key set is refreshed.
pub const JWKS_REFRESH_SECONDS: &str = "JWKS_REFRESH_SECONDS";
/// The least time between two fetches caused by unknown `kid`s.
pub const JWKS_MIN_REFETCH_MS: &str = "JWKS_MIN_REFETCH_MS";
/// Timeout of one JWKS request.
pub const JWKS_FETCH_TIMEOUT_MS: &str = "JWKS_FETCH_TIMEOUT_MS";
/// The task-service replicas, comma-separated.
pub const TASK_SERVICE_URL: &str = "TASK_SERVICE_URL";
/// Connect timeout to a replica.
pub const UPSTREAM_CONNECT_TIMEOUT_MS: &str = "UPSTREAM_CONNECT_TIMEOUT_MS";
/// Longest wait for each read of a replica's reply.
pub const UPSTREAM_READ_TIMEOUT_MS: &str = "UPSTREAM_READ_TIMEOUT_MS";
/// Write timeout to a replica.
pub const UPSTREAM_WRITE_TIMEOUT_MS: &str = "UPSTREAM_WRITE_TIMEOUT_MS";
/// How long a pooled upstream connection may stay idle.
pub const UPSTREAM_IDLE_TIMEOUT_MS: &str = "UPSTREAM_IDLE_TIMEOUT_MS";
/// How often each replica's `/healthz` is probed.
pub const HEALTH_CHECK_INTERVAL_MS: &str = "HEALTH_CHECK_INTERVAL_MS";
/// Origins allowed to call the API from a browser, comma-separated.
pub const CORS_ALLOWED_ORIGINS: &str = "CORS_ALLOWED_ORIGINS";
/// Requests each verified user may make per second; 0 is off.
pub const RATE_LIMIT_PER_USER_PER_SECOND: &str = "RATE_LIMIT_PER_USER_PER_SECOND";
/// The public listener's certificate chain (PEM); with `GATEWAY_TLS_KEY`, turns TLS on.
pub const GATEWAY_TLS_CERT: &str = "GATEWAY_TLS_CERT";
/// The private key of `GATEWAY_TLS_CERT` (PEM).
pub const GATEWAY_TLS_KEY: &str = "GATEWAY_TLS_KEY";
/// How often the certificate files are checked for a change.
pub const GATEWAY_TLS_RELOAD_MS: &str = "GATEWAY_TLS_RELOAD_MS";
/// The bearer token of the admin API (`POST /explain`, the revocation endpoints); unset turns
/// the admin API off.
pub const GATEWAY_ADMIN_TOKEN: &str = "GATEWAY_ADMIN_TOKEN";
/// The default lifetime of a revocation, in seconds.
pub const REVOCATION_TTL_SECONDS: &str = "REVOCATION_TTL_SECONDS";
/// Where a single gateway keeps its revocations.
pub const REVOCATION_FILE: &str = "REVOCATION_FILE";
/// The Redis shared by every replica for revocations.
pub const REVOCATION_REDIS_URL: &str = "REVOCATION_REDIS_URL";
/// Worker threads of the public listener.
pub const GATEWAY_THREADS: &str = "GATEWAY_THREADS";

/// The shortest `BETTER_AUTH_SECRET` accepted, in bytes.
pub const MIN_HMAC_SECRET_BYTES: usize = 32;

/// Everything the gateway needs to run.
#[derive(Debug, Clone)]
pub struct Config {
    /// Public listener (`GATEWAY_LISTEN`).
    pub listen: SocketAddr,
    /// Admin listener for `/metrics`, `/healthz`, `/readyz` (`GATEWAY_ADMIN_LISTEN`).
    pub admin_listen: SocketAddr,
    /// How tokens are verified.
    pub tokens: TokenConfig,
    /// The task-service replicas and how to talk to them.
    pub upstream: UpstreamConfig,
    /// Origins allowed to call the API from a browser (`CORS_ALLOWED_ORIGINS`).
    pub cors_allowed_origins: Vec<String>,
    /// Signs the assertion forwarded to the task service (`GATEWAY_SIGNING_SECRET`).
    pub signing_secret: SigningSecret,
    /// Where a graceful upgrade hands over the listening sockets (`GATEWAY_UPGRADE_SOCK`, by
    /// default in a private runtime directory); `None` when upgrades are off.
    pub upgrade_sock: Option<PathBuf>,
    /// Requests each verified user may make per second (`RATE_LIMIT_PER_USER_PER_SECOND`);
    /// 0, the default, turns the limit off.
    pub rate_limit_per_user_per_second: u64,
    /// Failed verifications allowed per client address, and how that address is found.
    pub client_limit: crate::client_limit::ClientLimitConfig,
    /// TLS on the public listener (`GATEWAY_TLS_CERT`, `GATEWAY_TLS_KEY`); plain HTTP when unset.
    pub tls: Option<TlsConfig>,
    /// The admin API's bearer token (`GATEWAY_ADMIN_TOKEN`); the admin API is off when unset.
    pub admin_token: Option<SecretString>,
    /// Sign-out: the entries' lifetime and the store.
    pub revocation: RevocationConfig,
    /// Where spans are exported (`OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_SERVICE_NAME`, by default
    /// `gateway`); `None` when they are not.
    pub tracing: Option<ExportSettings>,
    /// Worker threads serving the public listener (`GATEWAY_THREADS`, by default one per CPU).
    pub threads: usize,
}

/// The public listener's certificate and key files, re-read when they change.
#[derive(Debug, Clone)]
pub struct TlsConfig {
    /// `GATEWAY_TLS_CERT`: the certificate chain, leaf first (PEM).
    pub cert_path: std::path::PathBuf,
    /// `GATEWAY_TLS_KEY`: the leaf's private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key_path: std::path::PathBuf,
    /// `GATEWAY_TLS_RELOAD_MS` (default 5 s): how often the files' modification times are checked.
    pub reload_interval: Duration,
}

/// The two token sources and the claim checks shared by both.
#[derive(Debug, Clone)]
pub struct TokenConfig {
    /// HS256/384/512 tokens signed with `BETTER_AUTH_SECRET`, when set.
    pub hmac: Option<HmacConfig>,
    /// Asymmetric tokens verified against a JWKS (Better Auth's JWT plugin), when configured.
    pub jwks: Option<JwksConfig>,
    /// Clock skew tolerated on `exp`, `nbf` and `iat` (`JWT_LEEWAY_SECONDS`).
    pub leeway_seconds: u64,
    /// How many verified tokens are remembered (`TOKEN_CACHE_CAPACITY`).
    pub cache_capacity: u64,
    /// About how much memory the remembered tokens may take (`TOKEN_CACHE_MAX_BYTES`).
    pub cache_max_bytes: u64,
}

/// Shared-secret tokens.
#[derive(Clone)]
pub struct HmacConfig {
    /// `BETTER_AUTH_SECRET`: at least [`MIN_HMAC_SECRET_BYTES`] bytes.
    pub secret: SecretString,
    /// `JWT_ISSUER`, checked only when set.
    pub issuer: Option<String>,
    /// `JWT_AUDIENCE`, checked only when set.
    pub audience: Option<String>,
}

impl fmt::Debug for HmacConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HmacConfig")
            .field("secret", &"[REDACTED]")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .finish()
    }
}

impl HmacConfig {
    /// The secret's bytes, for signing and verifying.
    pub fn secret_bytes(&self) -> &[u8] {
        self.secret.expose_secret().as_bytes()
    }
}

/// Tokens signed by Better Auth's JWT plugin, with keys from its JWKS endpoint.
#[derive(Debug, Clone)]
pub struct JwksConfig {
    /// `JWKS_URL`, by default `{BETTER_AUTH_URL}/api/auth/jwks`.
    pub url: Url,
    /// Accepted `iss` values: `JWT_ISSUER`, or the `BETTER_AUTH_URL` origin (and the URL itself
    /// when it carries a path).
    pub issuers: Vec<String>,
    /// Accepted `aud` values, chosen like `issuers` from `JWT_AUDIENCE`.
    pub audiences: Vec<String>,
    /// How often the key set is refreshed (`JWKS_REFRESH_SECONDS`).
    pub refresh_interval: Duration,
    /// The least time between two fetches caused by unknown `kid`s
    /// (`JWKS_MIN_REFETCH_MS`), so a flood of made-up key ids cannot flood Better Auth.
    pub min_refetch_interval: Duration,
    /// Timeout of one JWKS request (`JWKS_FETCH_TIMEOUT_MS`).
    pub fetch_timeout: Duration,
    /// Keys not refreshed for longer are reported stale by `/readyz` (`JWKS_MAX_AGE_SECONDS`).
    pub max_age: Duration,
}

/// Whether two listeners would take the same port: the same port (not 0, which picks a free
/// one) on the same address, or on any address when either is unspecified (`0.0.0.0`, `[::]`).
fn share_a_port(one: SocketAddr, other: SocketAddr) -> bool {
    one.port() != 0
        && one.port() == other.port()
        && (one.ip() == other.ip() || one.ip().is_unspecified() || other.ip().is_unspecified())
}

impl Config {
    /// Reads and checks every variable; the first bad one is returned.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let listen = env.parse_or(GATEWAY_LISTEN, SocketAddr::from(([0, 0, 0, 0], 8080)))?;
        let admin_listen =
            env.parse_or(GATEWAY_ADMIN_LISTEN, SocketAddr::from(([0, 0, 0, 0], 9090)))?;
        if share_a_port(listen, admin_listen) {
            // Both would bind (pingora's listeners reuse ports), and the kernel would hand some
            // public connections to the admin listener: its metrics, to anyone.
            return Err(ConfigError::new(
                GATEWAY_ADMIN_LISTEN,
                format!("{admin_listen} shares its port with {GATEWAY_LISTEN}={listen}"),
            ));
        }
        Ok(Self {
            listen,
            admin_listen,
            tokens: TokenConfig::from_env(env)?,
            upstream: UpstreamConfig::from_env(env)?,
            cors_allowed_origins: cors_origins(env)?,
            signing_secret: signing_secret(env)?,
            upgrade_sock: crate::upgrade_socket::from_env(env)?,
            rate_limit_per_user_per_second: bounded(
                env,
                RATE_LIMIT_PER_USER_PER_SECOND,
                0,
                0..=1_000_000,
            )?,
            tls: tls_config(env)?,
            admin_token: admin_token(env)?,
            revocation: RevocationConfig::from_env(env)?,
            client_limit: crate::client_limit::ClientLimitConfig::from_env(env)?,
            tracing: ExportSettings::from_env(env, "gateway")?,
            threads: threads(env)?,
        })
    }
}

/// `GATEWAY_THREADS`, by default the CPUs this process may use.
fn threads(env: &Env) -> Result<usize, ConfigError> {
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    let threads = bounded(env, GATEWAY_THREADS, cpus as u64, 1..=1024)?;
    Ok(usize::try_from(threads).unwrap_or(cpus))
}

/// Both TLS files or neither: one alone is a mistake, not a request for plain HTTP.
fn tls_config(env: &Env) -> Result<Option<TlsConfig>, ConfigError> {
    let reload_interval = millis(env, GATEWAY_TLS_RELOAD_MS, 5_000)?;
    match (env.get(GATEWAY_TLS_CERT)?, env.get(GATEWAY_TLS_KEY)?) {
        (None, None) => Ok(None),
        (Some(cert), Some(key)) => Ok(Some(TlsConfig {
            cert_path: cert.into(),
            key_path: key.into(),
            reload_interval,
        })),
        (Some(_), None) => Err(ConfigError::new(
            GATEWAY_TLS_KEY,
            "is required when GATEWAY_TLS_CERT is set",
        )),
        (None, Some(_)) => Err(ConfigError::new(
            GATEWAY_TLS_CERT,
            "is required when GATEWAY_TLS_KEY is set",
        )),
    }
}

/// The shortest `GATEWAY_ADMIN_TOKEN` accepted, in bytes.
pub const MIN_ADMIN_TOKEN_BYTES: usize = 32;

fn admin_token(env: &Env) -> Result<Option<SecretString>, ConfigError> {
    secret(env, GATEWAY_ADMIN_TOKEN, MIN_ADMIN_TOKEN_BYTES)
}

impl TokenConfig {
    /// Reads the token sources; at least one must be configured.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let base_url = env
            .get(BETTER_AUTH_URL)?
            .map(|value| http_url(BETTER_AUTH_URL, value))
            .transpose()?;
        let issuer = env.get(JWT_ISSUER)?.map(str::to_owned);
        let audience = env.get(JWT_AUDIENCE)?.map(str::to_owned);
        let hmac =
            secret(env, BETTER_AUTH_SECRET, MIN_HMAC_SECRET_BYTES)?.map(|secret| HmacConfig {
                secret,
                issuer: issuer.clone(),
                audience: audience.clone(),
            });
        let jwks = jwks_config(env, base_url.as_ref(), issuer, audience)?;
        if hmac.is_none() && jwks.is_none() {
            return Err(ConfigError::new(
                BETTER_AUTH_SECRET,
                "no token source: set BETTER_AUTH_URL (Better Auth JWKS), JWKS_URL or BETTER_AUTH_SECRET",
            ));
        }
        Ok(Self {
            hmac,
            jwks,
            leeway_seconds: bounded(env, JWT_LEEWAY_SECONDS, 60, 0..=3600)?,
            cache_capacity: bounded(env, TOKEN_CACHE_CAPACITY, 100_000, 0..=10_000_000)?,
            cache_max_bytes: bounded(
                env,
                TOKEN_CACHE_MAX_BYTES,
                crate::token::cache::DEFAULT_MAX_BYTES,
                0..=(64 << 30),
            )?,
        })
    }
}

/// The JWKS source, from `JWKS_URL` or `BETTER_AUTH_URL`. Tokens verified with it always have
/// their issuer and audience checked, so one of each must be known.
fn jwks_config(
    env: &Env,
    base_url: Option<&Url>,
    issuer: Option<String>,
    audience: Option<String>,
) -> Result<Option<JwksConfig>, ConfigError> {
    let url = match (env.get(JWKS_URL)?, base_url) {
        (Some(url), _) => http_url(JWKS_URL, url)?,
        (None, Some(base)) => {
            let jwks = format!("{}/api/auth/jwks", base.as_str().trim_end_matches('/'));
            http_url(BETTER_AUTH_URL, &jwks)?
        }
        (None, None) => return Ok(None),
    };
    let defaults = base_url.map(better_auth_identifiers).unwrap_or_default();
    let pick = |configured: Option<String>, variable: &str| match configured {
        Some(value) => Ok(vec![value]),
        None if !defaults.is_empty() => Ok(defaults.clone()),
        None => Err(ConfigError::new(
            variable,
            "is required when JWKS_URL is set without BETTER_AUTH_URL",
        )),
    };
    Ok(Some(JwksConfig {
        url,
        issuers: pick(issuer, JWT_ISSUER)?,
        audiences: pick(audience, JWT_AUDIENCE)?,
        refresh_interval: Duration::from_secs(bounded(env, JWKS_REFRESH_SECONDS, 300, 1..=86_400)?),
        min_refetch_interval: millis(env, JWKS_MIN_REFETCH_MS, 10_000)?,
        fetch_timeout: millis(env, JWKS_FETCH_TIMEOUT_MS, 5_000)?,
        max_age: Duration::from_secs(bounded(env, JWKS_MAX_AGE_SECONDS, 3_600, 1..=30 * 86_400)?),
    }))
}

/// What Better Auth puts in `iss` and `aud` by default: its base URL's origin. A base URL with a
/// path is accepted as written too, since deployments set `issuer` to either.
fn better_auth_identifiers(base: &Url) -> Vec<String> {
    let origin = base.origin().ascii_serialization();
    let written = base.as_str().trim_end_matches('/').to_owned();
    if written == origin {
        vec![origin]
    } else {
        vec![origin, written]
    }
}

/// An `http` or `https` URL.
fn http_url(variable: &str, value: &str) -> Result<Url, ConfigError> {
    let url = Url::parse(value)
        .map_err(|err| ConfigError::new(variable, format!("{value:?} is not a URL: {err}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(ConfigError::new(
            variable,
            format!("{value:?} must be an http:// or https:// URL"),
        ));
    }
    Ok(url)
}

/// Each entry must be an exact origin (`scheme://host[:port]`), compared byte for byte with the
/// browser's `Origin` header; a wildcard is refused so no site can read another user's tasks.
fn cors_origins(env: &Env) -> Result<Vec<String>, ConfigError> {
    let variable = CORS_ALLOWED_ORIGINS;
    let origins = env
        .list(variable)?
        .unwrap_or_else(|| vec!["http://localhost:3000".to_owned()]);
    origins
        .into_iter()
        .map(|origin| {
            let url = http_url(variable, &origin)?;
            let canonical = url.origin().ascii_serialization();
            if canonical != origin.trim_end_matches('/') {
                return Err(ConfigError::new(
                    variable,
                    format!("{origin:?} is not an origin (expected e.g. {canonical:?})"),
                ));
            }
            Ok(canonical)
        })
        .collect()
}

/// A secret of at least `min_bytes` bytes, when `variable` is set.
pub(crate) fn secret(
    env: &Env,
    variable: &str,
    min_bytes: usize,
) -> Result<Option<SecretString>, ConfigError> {
    env.get(variable)?
        .map(|secret| {
            if secret.len() < min_bytes {
                return Err(ConfigError::new(
                    variable,
                    format!(
                        "must be at least {min_bytes} bytes long (got {})",
                        secret.len()
                    ),
                ));
            }
            Ok(SecretString::from(secret.to_owned()))
        })
        .transpose()
}

/// A whole number within `range`, or `default` when unset.
pub(crate) fn bounded(
    env: &Env,
    variable: &str,
    default: u64,
    range: std::ops::RangeInclusive<u64>,
) -> Result<u64, ConfigError> {
    let value = env.parse_or(variable, default)?;
    if !range.contains(&value) {
        return Err(ConfigError::new(
            variable,
            format!(
                "must be between {} and {} (got {value})",
                range.start(),
                range.end()
            ),
        ));
    }
    Ok(value)
}

/// A duration given in milliseconds: at least 1 ms, at most a day.
pub(super) fn millis(env: &Env, variable: &str, default: u64) -> Result<Duration, ConfigError> {
    bounded(env, variable, default, 1..=86_400_000).map(Duration::from_millis)
}

#[cfg(test)]
mod tests {
    use common::config::GATEWAY_SIGNING_SECRET;

    use super::*;

    const SIGNING: &str = "signing-secret-signing-secret-0123456789";
    const HMAC: &str = "better-auth-secret-better-auth-secret-01";

    fn env(pairs: &[(&str, &str)]) -> Env {
        let mut all = vec![(GATEWAY_SIGNING_SECRET, SIGNING)];
        all.extend_from_slice(pairs);
        Env::from_pairs(all)
    }

    fn error_variable(pairs: &[(&str, &str)]) -> String {
        Config::from_env(&env(pairs))
            .expect_err("configuration should be refused")
            .variable
    }

    #[test]
    fn better_auth_url_alone_configures_jwks_with_origin_claims() {
        let config = Config::from_env(&env(&[(BETTER_AUTH_URL, "https://auth.example.com/")]))
            .expect("valid");
        let jwks = config.tokens.jwks.expect("jwks configured");
        assert_eq!(jwks.url.as_str(), "https://auth.example.com/api/auth/jwks");
        assert_eq!(jwks.issuers, ["https://auth.example.com"]);
        assert_eq!(jwks.audiences, ["https://auth.example.com"]);
        assert!(config.tokens.hmac.is_none());
        assert_eq!(config.tokens.leeway_seconds, 60);
    }

    #[test]
    fn defaults_match_the_contract() {
        let config = Config::from_env(&env(&[(BETTER_AUTH_SECRET, HMAC)])).expect("valid");
        assert_eq!(config.listen, SocketAddr::from(([0, 0, 0, 0], 8080)));
        assert_eq!(config.admin_listen, SocketAddr::from(([0, 0, 0, 0], 9090)));
        assert_eq!(config.cors_allowed_origins, ["http://localhost:3000"]);
        assert_eq!(
            config.upstream.replicas,
            [ReplicaAddress {
                host: "127.0.0.1".into(),
                port: 8081
            }]
        );
        assert!(config.tokens.jwks.is_none());
        assert_eq!(config.rate_limit_per_user_per_second, 0, "off by default");
        assert!(config.tls.is_none(), "plain HTTP by default");
        assert!(config.admin_token.is_none(), "admin API off by default");
        let hmac = config.tokens.hmac.expect("hmac configured");
        assert_eq!(hmac.issuer, None);
        assert!(!format!("{hmac:?}").contains(HMAC));
    }

    #[test]
    fn bad_values_name_their_variable() {
        assert_eq!(error_variable(&[]), BETTER_AUTH_SECRET);
        assert_eq!(
            error_variable(&[(BETTER_AUTH_SECRET, "short")]),
            BETTER_AUTH_SECRET
        );
        assert_eq!(
            error_variable(&[(BETTER_AUTH_URL, "not a url")]),
            BETTER_AUTH_URL
        );
        assert_eq!(
            error_variable(&[(JWKS_URL, "http://auth/jwks")]),
            JWT_ISSUER
        );
        for (variable, value) in [
            (TASK_SERVICE_URL, "https://task:8081"),
            (TASK_SERVICE_URL, "http://task:8081/api"),
            (CORS_ALLOWED_ORIGINS, "*"),
            (CORS_ALLOWED_ORIGINS, "http://localhost:3000/app"),
            (JWT_LEEWAY_SECONDS, "-1"),
            (GATEWAY_LISTEN, "8080"),
            (UPSTREAM_READ_TIMEOUT_MS, "0"),
            (RATE_LIMIT_PER_USER_PER_SECOND, "-5"),
            (RATE_LIMIT_PER_USER_PER_SECOND, "many"),
            (GATEWAY_TLS_RELOAD_MS, "0"),
            (GATEWAY_ADMIN_TOKEN, "short"),
            (TOKEN_CACHE_MAX_BYTES, "128MiB"),
        ] {
            assert_eq!(
                error_variable(&[(BETTER_AUTH_SECRET, HMAC), (variable, value)]),
                variable,
                "{variable}={value}"
            );
        }
        // One TLS file without the other names the missing one.
        assert_eq!(
            error_variable(&[
                (BETTER_AUTH_SECRET, HMAC),
                (GATEWAY_TLS_CERT, "/etc/tls/cert.pem")
            ]),
            GATEWAY_TLS_KEY
        );
        assert_eq!(
            error_variable(&[
                (BETTER_AUTH_SECRET, HMAC),
                (GATEWAY_TLS_KEY, "/etc/tls/key.pem")
            ]),
            GATEWAY_TLS_CERT
        );
        // The admin listener on the public one's port.
        for (public, admin) in [
            ("127.0.0.1:8080", "127.0.0.1:8080"),
            ("0.0.0.0:8080", "127.0.0.1:8080"),
            ("127.0.0.1:9090", "[::]:9090"),
        ] {
            assert_eq!(
                error_variable(&[
                    (BETTER_AUTH_SECRET, HMAC),
                    (GATEWAY_LISTEN, public),
                    (GATEWAY_ADMIN_LISTEN, admin)
                ]),
                GATEWAY_ADMIN_LISTEN,
                "{public} and {admin}"
            );
        }
        // Different addresses, or ports picked by the system, are two listeners.
        for (public, admin) in [
            ("127.0.0.1:8080", "127.0.0.2:8080"),
            ("127.0.0.1:0", "127.0.0.1:0"),
        ] {
            Config::from_env(&env(&[
                (BETTER_AUTH_SECRET, HMAC),
                (GATEWAY_LISTEN, public),
                (GATEWAY_ADMIN_LISTEN, admin),
            ]))
            .expect("two listeners");
        }
        let missing_signing = Config::from_env(&Env::from_pairs([(BETTER_AUTH_SECRET, HMAC)]))
            .expect_err("no signing secret");
        assert_eq!(missing_signing.variable, GATEWAY_SIGNING_SECRET);
    }

    #[test]
    fn replica_list_accepts_names_and_ipv6() {
        let config = Config::from_env(&env(&[
            (BETTER_AUTH_SECRET, HMAC),
            (TASK_SERVICE_URL, "http://task-a:9000, http://[::1]:9001"),
        ]))
        .expect("valid");
        let shown: Vec<String> = config
            .upstream
            .replicas
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(shown, ["task-a:9000", "[::1]:9001"]);
    }

    #[test]
    fn explicit_issuer_and_audience_override_the_base_url() {
        let config = Config::from_env(&env(&[
            (BETTER_AUTH_URL, "http://localhost:3000"),
            (JWT_ISSUER, "issuer"),
            (JWT_AUDIENCE, "audience"),
            (BETTER_AUTH_SECRET, HMAC),
        ]))
        .expect("valid");
        let jwks = config.tokens.jwks.expect("jwks");
        assert_eq!(jwks.issuers, ["issuer"]);
        assert_eq!(jwks.audiences, ["audience"]);
        let hmac = config.tokens.hmac.expect("hmac");
        assert_eq!(hmac.issuer.as_deref(), Some("issuer"));
        assert_eq!(hmac.audience.as_deref(), Some("audience"));
    }
}
