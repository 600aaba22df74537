//! What the gateway and the task service share, and nothing more.
//!
//! - [`assertion`]: the signed gateway assertion that carries a verified identity across the
//!   internal hop, and its verifier.
//! - [`headers`]: the names of the identity headers the gateway sets and strips, the one rule for
//!   a header that must appear exactly once, and the request id either tier keeps.
//! - [`clock`]: now in Unix seconds, the unit of token and assertion times.
//! - [`error`]: the FastAPI-compatible JSON error body both tiers answer with.
//! - [`metrics`]: the HTTP request metrics both tiers record alike, and registry rendering.
//! - [`config`]: reading typed configuration from environment variables, one error line per bad
//!   variable.
//! - [`telemetry`]: logging set-up (env filter, JSON or plain output, the `log` bridge), with
//!   [`redact`] masking credentials in every line and [`json_line`] writing the JSON line.
//! - [`trace_context`]: the W3C `traceparent`/`tracestate` both tiers continue or start, and the
//!   trace a request belongs to.
//! - [`tracing_export`]: exporting spans over OTLP/HTTP when `OTEL_EXPORTER_OTLP_ENDPOINT` is set.
//! - [`healthcheck`]: the `healthcheck` subcommand's probe of a service's own listener.
//!
//! This crate depends on neither axum nor pingora, so both tiers can use it.

pub mod assertion;
pub mod clock;
pub mod config;
pub mod error;
pub mod headers;
pub mod healthcheck;
pub mod json_line;
pub mod metrics;
pub mod redact;
pub mod telemetry;
pub mod trace_context;
pub mod tracing_export;
