//! The service's configuration, read once from the environment at start, and the names of the
//! variables it reads. The gateway signing secrets (`common::config`), the log settings
//! (`common::telemetry`) and the span export (`common::tracing_export`) are read by the code
//! shared with the gateway, under the same names.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use common::assertion::AssertionVerifier;
use common::config::{ConfigError, Env};
use common::telemetry::LogSettings;
use common::tracing_export::ExportSettings;

use crate::store::{DatabaseLimits, DatabaseOptions};

/// The variable naming the database: `sqlite:…` or `postgres://…`.
pub const DATABASE_URL: &str = "DATABASE_URL";
/// The variable bounding each database statement's time, in milliseconds.
pub const DATABASE_STATEMENT_TIMEOUT_MS: &str = "DATABASE_STATEMENT_TIMEOUT_MS";
/// The variable sizing the connection pool.
pub const DATABASE_MAX_CONNECTIONS: &str = "DATABASE_MAX_CONNECTIONS";
/// Long enough for any request the API allows, short enough that a runaway query gives its
/// connection back within seconds.
pub const DEFAULT_STATEMENT_TIMEOUT_MS: u64 = 5000;
/// The variable naming the address to listen on.
pub const TASK_SERVICE_LISTEN: &str = "TASK_SERVICE_LISTEN";
/// The internal listener: loopback unless deployment says otherwise.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8081";
/// A SQLite file under `./data/`, created on first start.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://data/tasks.db";

/// Everything the service needs to start. Its `Debug` output hides the database password and the
/// signing secrets.
#[derive(Clone)]
pub struct Config {
    /// `DATABASE_URL`, parsed once by [`Config::from_env`].
    pub database: DatabaseOptions,
    /// `DATABASE_URL` as given, for `Debug` (with its password hidden).
    database_url: String,
    /// `DATABASE_STATEMENT_TIMEOUT_MS` and `DATABASE_MAX_CONNECTIONS`.
    pub database_limits: DatabaseLimits,
    /// Checks gateway assertions (`GATEWAY_SIGNING_SECRET`, `GATEWAY_SIGNING_SECRET_PREVIOUS`).
    pub verifier: AssertionVerifier,
    /// `TASK_SERVICE_LISTEN`: where `main` binds. [`crate::run`] takes an already bound listener.
    pub listen: SocketAddr,
    /// `RUST_LOG` and `LOG_FORMAT`.
    pub log: LogSettings,
    /// Where spans are exported (`OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_SERVICE_NAME`, by default
    /// `task-service`); `None` when they are not.
    pub tracing: Option<ExportSettings>,
}

impl Config {
    /// Reads and checks every variable; the error names the first bad one.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let database_url = env
            .get(DATABASE_URL)?
            .unwrap_or(DEFAULT_DATABASE_URL)
            .to_owned();
        let default_listen: SocketAddr = DEFAULT_LISTEN
            .parse()
            .map_err(|err| ConfigError::new(TASK_SERVICE_LISTEN, err))?;
        Ok(Self {
            database: DatabaseOptions::parse(&database_url)?,
            database_url,
            database_limits: database_limits(env)?,
            verifier: common::config::assertion_verifier(env)?,
            listen: env.parse_or(TASK_SERVICE_LISTEN, default_listen)?,
            log: LogSettings::from_env(env)?,
            tracing: ExportSettings::from_env(env, "task-service")?,
        })
    }
}

/// The database bounds; zero is refused for both (no bound, no connection).
fn database_limits(env: &Env) -> Result<DatabaseLimits, ConfigError> {
    let timeout_ms: u64 =
        env.parse_or(DATABASE_STATEMENT_TIMEOUT_MS, DEFAULT_STATEMENT_TIMEOUT_MS)?;
    // PostgreSQL's statement_timeout is a 32-bit count of milliseconds.
    if timeout_ms == 0 || timeout_ms > i32::MAX as u64 {
        return Err(ConfigError::new(
            DATABASE_STATEMENT_TIMEOUT_MS,
            format!("must be between 1 and {} milliseconds", i32::MAX),
        ));
    }
    let max_connections: Option<u32> = env.parse(DATABASE_MAX_CONNECTIONS)?;
    if max_connections == Some(0) {
        return Err(ConfigError::new(
            DATABASE_MAX_CONNECTIONS,
            "must be at least 1",
        ));
    }
    Ok(DatabaseLimits {
        statement_timeout: Duration::from_millis(timeout_ms),
        max_connections,
    })
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("database_url", &redact_password(&self.database_url))
            .field("database_limits", &self.database_limits)
            .field("verifier", &self.verifier)
            .field("listen", &self.listen)
            .field("log", &self.log)
            .field("tracing", &self.tracing)
            .finish()
    }
}

/// `scheme://user:password@host/…` with the password replaced by `***`.
fn redact_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let Some((userinfo, host)) = authority.rsplit_once('@') else {
        return url.to_owned();
    };
    let Some((user, _password)) = userinfo.split_once(':') else {
        return url.to_owned();
    };
    format!("{scheme}://{user}:***@{host}{path}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: (&str, &str) = (
        common::config::GATEWAY_SIGNING_SECRET,
        "0123456789abcdef0123456789abcdef",
    );

    #[test]
    fn defaults_need_only_the_secret() {
        let config = Config::from_env(&Env::from_pairs([SECRET])).expect("defaults");
        assert_eq!(config.database_url, DEFAULT_DATABASE_URL);
        assert_eq!(config.listen.to_string(), DEFAULT_LISTEN);
    }

    #[test]
    fn postgres_urls_are_accepted() {
        for url in [
            "postgres://postgres@127.0.0.1:5432/tasks",
            "postgresql://u:p@db.example.com/tasks?sslmode=require",
        ] {
            let env = Env::from_pairs([SECRET, (DATABASE_URL, url)]);
            assert!(Config::from_env(&env).is_ok(), "{url}");
        }
    }

    #[test]
    fn bad_database_urls_name_the_variable() {
        for url in [
            "mysql://localhost/tasks",
            "tasks.db",
            "postgres://u@host:notaport/tasks",
            "postgres://u@host/tasks?sslmode=sometimes",
        ] {
            let env = Env::from_pairs([SECRET, (DATABASE_URL, url)]);
            let err = Config::from_env(&env).expect_err(url);
            assert_eq!(err.variable, DATABASE_URL, "{url}");
        }
    }

    #[test]
    fn database_limits_default_and_refuse_zero() {
        let config = Config::from_env(&Env::from_pairs([SECRET])).expect("defaults");
        assert_eq!(
            config.database_limits,
            DatabaseLimits {
                statement_timeout: Duration::from_millis(DEFAULT_STATEMENT_TIMEOUT_MS),
                max_connections: None,
            }
        );
        for (variable, value) in [
            (DATABASE_STATEMENT_TIMEOUT_MS, "0"),
            (DATABASE_STATEMENT_TIMEOUT_MS, "5s"),
            (DATABASE_STATEMENT_TIMEOUT_MS, "3000000000"),
            (DATABASE_MAX_CONNECTIONS, "0"),
            (DATABASE_MAX_CONNECTIONS, "-1"),
        ] {
            let env = Env::from_pairs([SECRET, (variable, value)]);
            let err = Config::from_env(&env).expect_err(value);
            assert_eq!(err.variable, variable, "{value}");
        }
    }

    #[test]
    fn bad_listen_address_names_the_variable() {
        let env = Env::from_pairs([SECRET, (TASK_SERVICE_LISTEN, "localhost")]);
        let err = Config::from_env(&env).expect_err("not a socket address");
        assert_eq!(err.variable, TASK_SERVICE_LISTEN);
    }

    #[test]
    fn debug_hides_the_database_password() {
        let env = Env::from_pairs([
            SECRET,
            (
                DATABASE_URL,
                "postgres://app:hunter2@db:5432/tasks?sslmode=require",
            ),
        ]);
        let shown = format!("{:?}", Config::from_env(&env).expect("valid"));
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(!shown.contains(SECRET.1), "{shown}");
        assert!(
            shown.contains("postgres://app:***@db:5432/tasks?sslmode=require"),
            "{shown}"
        );
        assert_eq!(
            redact_password("sqlite://data/tasks.db"),
            "sqlite://data/tasks.db"
        );
    }
}
