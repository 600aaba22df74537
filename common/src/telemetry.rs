//! Logging set-up for both tiers: an env filter (`RUST_LOG`, default `info`), JSON or plain
//! output (`LOG_FORMAT`, default `json`), and the `log` bridge so that records written by pingora
//! and other `log` users appear in the same stream.
//!
//! Both tiers write one access-log line per request (target `gateway::access` or `access`) with
//! the same field names: `method`, `route` (the route template, never a concrete path),
//! `status`, `latency_ms` and `trace_id` (see [`crate::trace_context`]).
//!
//! No level may print a credential, also not the libraries' own records at `trace`: every line
//! passes through a [`Redactor`] (header values of `Cookie`, `Authorization` and the assertion,
//! bearer tokens, JWTs, HMACs, and the configured secrets' values), and the crates that dump raw
//! protocol bytes and frames at `trace` ([`CAPPED_TARGETS`]) are held at `debug` whatever
//! `RUST_LOG` asks.

use std::io::Write;
use std::str::FromStr;
use std::sync::Arc;

use tracing_subscriber::filter::{Directive, LevelFilter};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::{ConfigError, Env, GATEWAY_SIGNING_SECRET, GATEWAY_SIGNING_SECRET_PREVIOUS};
use crate::json_line::JsonLine;
use crate::redact::Redactor;
use crate::tracing_export::{SPAN_TARGET, TraceExport};

/// Crates whose `trace` records are raw bytes or protocol frames (header blocks included): they
/// log at most at `debug`.
pub const CAPPED_TARGETS: &[&str] = &["h2", "hyper", "hyper_util", "rustls"];

/// The variables whose values are masked wherever they would appear in a log line.
const SECRET_VARIABLES: &[&str] = &[
    "BETTER_AUTH_SECRET",
    GATEWAY_SIGNING_SECRET,
    GATEWAY_SIGNING_SECRET_PREVIOUS,
];

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
    /// Masks credentials and the configured secrets in every line.
    pub redactor: Redactor,
}

impl LogSettings {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let filter = env.get(RUST_LOG)?.unwrap_or("info").to_owned();
        EnvFilter::try_new(&filter).map_err(|err| ConfigError::new(RUST_LOG, err))?;
        let format = env.parse_or(LOG_FORMAT, LogFormat::Json)?;
        let mut secrets = Vec::new();
        for variable in SECRET_VARIABLES {
            secrets.extend(env.get(variable)?.map(str::to_owned));
        }
        secrets.extend(
            env.get("DATABASE_URL")?
                .and_then(url_password)
                .map(str::to_owned),
        );
        Ok(Self {
            filter,
            format,
            redactor: Redactor::new(secrets),
        })
    }
}

/// The password of a `scheme://user:password@host/…` URL.
fn url_password(url: &str) -> Option<&str> {
    let (_, rest) = url.split_once("://")?;
    let userinfo = rest.split(['/', '?', '#']).next()?.rsplit_once('@')?.0;
    userinfo.split_once(':').map(|(_, password)| password)
}

/// Standard error, with every event's line redacted before it is written.
struct RedactedStderr {
    redactor: Arc<Redactor>,
}

impl<'a> MakeWriter<'a> for RedactedStderr {
    type Writer = RedactedLine;

    fn make_writer(&'a self) -> Self::Writer {
        RedactedLine {
            redactor: Arc::clone(&self.redactor),
            buffer: Vec::new(),
        }
    }
}

/// One event's output, collected whole (the formatter may write it in pieces) and redacted
/// when the formatter is done with it.
struct RedactedLine {
    redactor: Arc<Redactor>,
    buffer: Vec<u8>,
}

impl Write for RedactedLine {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.buffer.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for RedactedLine {
    fn drop(&mut self) {
        if self.buffer.is_empty() {
            return;
        }
        let text = String::from_utf8_lossy(&self.buffer);
        let line = self.redactor.redact(&text);
        // Nowhere to report a failure to write a log line.
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }
}

/// The log filter: `RUST_LOG`'s directives, then the caps on [`CAPPED_TARGETS`], which override
/// a directive naming the same target, and [`SPAN_TARGET`] off: exported spans never reach a log
/// line.
fn filter(directives: &str) -> EnvFilter {
    let mut filter = EnvFilter::try_new(directives).unwrap_or_else(|_| EnvFilter::new("info"));
    // A cap only matters under `trace`; added to a quieter filter, `h2=debug` would turn those
    // crates' debug records on, and raise the level every `log` record is formatted at.
    let verbose = filter
        .max_level_hint()
        .is_none_or(|level| level > LevelFilter::DEBUG);
    let caps = CAPPED_TARGETS
        .iter()
        .filter(|_| verbose)
        .map(|target| format!("{target}=debug"))
        .chain([format!("{SPAN_TARGET}=off")]);
    for cap in caps {
        if let Ok(cap) = cap.parse::<Directive>() {
            filter = filter.add_directive(cap);
        }
    }
    filter
}

/// Installs the global subscriber, with the span exporter's layer when `export` is given. A
/// second call does nothing, so tests may call it freely.
pub fn init(settings: &LogSettings, export: Option<&TraceExport>) {
    let writer = RedactedStderr {
        redactor: Arc::new(settings.redactor.clone()),
    };
    let Some(export) = export else {
        // Without an exporter, the one filter is global: the exported spans' callsites are off.
        let builder = tracing_subscriber::fmt()
            .with_env_filter(filter(&settings.filter))
            .with_writer(writer);
        let _already_set = match settings.format {
            LogFormat::Json => builder.event_format(JsonLine).try_init(),
            LogFormat::Plain => builder.try_init(),
        };
        return;
    };
    let output = match settings.format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .with_writer(writer)
            .event_format(JsonLine)
            .boxed(),
        LogFormat::Plain => tracing_subscriber::fmt::layer().with_writer(writer).boxed(),
    };
    let _already_set = tracing_subscriber::registry()
        .with(output.with_filter(filter(&settings.filter)))
        .with(export.layer())
        .try_init();
}

/// For tests: logs only when `TEST_LOG` is set (plain output, filter from `RUST_LOG`), so test
/// output stays quiet by default.
pub fn init_for_tests() {
    if std::env::var_os(TEST_LOG).is_some() {
        let filter = std::env::var(RUST_LOG).unwrap_or_else(|_| "debug".to_owned());
        let settings = LogSettings {
            filter,
            format: LogFormat::Plain,
            redactor: Redactor::default(),
        };
        init(&settings, None);
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
    fn configured_secrets_are_masked() {
        let settings = LogSettings::from_env(&Env::from_pairs([
            ("GATEWAY_SIGNING_SECRET", "signing-secret-value"),
            ("DATABASE_URL", "postgres://app:db-password@db:5432/tasks"),
        ]))
        .expect("valid");
        let line = "signing-secret-value postgres://app:db-password@db:5432/tasks";
        let masked = settings.redactor.redact(line);
        assert!(!masked.contains("signing-secret-value") && !masked.contains("db-password"));
        assert!(masked.contains("postgres://app:"), "{masked}");
    }

    #[test]
    fn caps_never_make_a_quiet_filter_louder() {
        assert_eq!(filter("warn").max_level_hint(), Some(LevelFilter::WARN));
        assert_eq!(filter("info").max_level_hint(), Some(LevelFilter::INFO));
    }

    #[test]
    fn capped_targets_stay_at_debug_under_trace() {
        let shown = filter("trace,hyper=trace").to_string();
        for target in CAPPED_TARGETS {
            assert!(shown.contains(&format!("{target}=debug")), "{shown}");
        }
        assert!(!shown.contains("hyper=trace"), "{shown}");
        assert!(
            filter("trace")
                .to_string()
                .contains(&format!("{SPAN_TARGET}=off"))
        );
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
