//! Logging set-up for both tiers: an env filter (`RUST_LOG`, default `info`), JSON or plain
//! output (`LOG_FORMAT`, default `json`), and the `log` bridge so that records written by pingora
//! and other `log` users appear in the same stream.
//!
//! Both tiers write one access-log line per request (target `gateway::access` or `access`) with
//! the same field names: `method`, `route` (the route template, never a concrete path),
//! `status` and `latency_ms`.

use std::str::FromStr;

use tracing_subscriber::EnvFilter;

use crate::config::{ConfigError, Env};

/// The env filter's variable (default `info`).
pub const RUST_LOG: &str = "RUST_LOG";
/// `json` or `plain`.
pub const LOG_FORMAT: &str = "LOG_FORMAT";
/// Set in tests to see logs (they are quiet otherwise).
pub const TEST_LOG: &str = "TEST_LOG";

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line, for log shippers.
    Json,
    /// Human-readable lines, for a terminal.
    Plain,
}

impl FromStr for LogFormat {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value.to_ascii_lowercase().as_str() {
            "json" => Ok(Self::Json),
            "plain" | "text" | "pretty" => Ok(Self::Plain),
            _ => Err("expected json or plain".to_owned()),
        }
    }
}

/// What to log and how, read from `RUST_LOG` and `LOG_FORMAT`.
#[derive(Debug, Clone)]
pub struct LogSettings {
    pub filter: String,
    pub format: LogFormat,
}

impl LogSettings {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let filter = env.get(RUST_LOG)?.unwrap_or("info").to_owned();
        EnvFilter::try_new(&filter).map_err(|err| ConfigError::new(RUST_LOG, err))?;
        let format = env.parse_or(LOG_FORMAT, LogFormat::Json)?;
        Ok(Self { filter, format })
    }
}

/// Installs the global subscriber. A second call does nothing, so tests may call it freely.
pub fn init(settings: &LogSettings) {
    let filter = EnvFilter::try_new(&settings.filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _already_set = match settings.format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
        LogFormat::Plain => builder.try_init(),
    };
}

/// For tests: logs only when `TEST_LOG` is set (plain output, filter from `RUST_LOG`), so test
/// output stays quiet by default.
pub fn init_for_tests() {
    if std::env::var_os(TEST_LOG).is_some() {
        let filter = std::env::var(RUST_LOG).unwrap_or_else(|_| "debug".to_owned());
        init(&LogSettings {
            filter,
            format: LogFormat::Plain,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_info_and_json() {
        let settings = LogSettings::from_env(&Env::default()).expect("defaults");
        assert_eq!(settings.filter, "info");
        assert_eq!(settings.format, LogFormat::Json);
    }

    #[test]
    fn bad_values_name_the_variable() {
        let bad_format =
            LogSettings::from_env(&Env::from_pairs([(LOG_FORMAT, "xml")])).expect_err("bad format");
        assert_eq!(bad_format.variable, LOG_FORMAT);
        let bad_filter =
            LogSettings::from_env(&Env::from_pairs([(RUST_LOG, "a=b=c")])).expect_err("bad filter");
        assert_eq!(bad_filter.variable, RUST_LOG);
    }
}
