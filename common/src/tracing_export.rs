//! Exporting spans over OTLP/HTTP (protobuf), when `OTEL_EXPORTER_OTLP_ENDPOINT` is set.
//!
//! The spans exported are only those of [`SPAN_TARGET`]: each tier's server span per request and
//! its children. They are created with that target and never reach the log output, and the log
//! filter turns the target off, so a tier that does not export creates none of them: a disabled
//! callsite costs one load of its cached interest. Their fields are written so that none holds a
//! credential or a user's text: the method label, the route template, the status, the denial
//! reason and query names; events are never exported.
//!
//! The batch processor runs on a thread of its own and posts with a blocking client there, so a
//! collector that is slow or down delays nothing but its own exports; spans it cannot take are
//! dropped. [`TraceExport::shutdown`], called when the server has stopped, sends what is left.
//!
//! Variables (the SDK's standard names): `OTEL_EXPORTER_OTLP_ENDPOINT` (the collector's base
//! URL; spans go to `<base>/v1/traces`), `OTEL_SERVICE_NAME` (the resource's `service.name`, by
//! default the tier's name) and `OTEL_BSP_SCHEDULE_DELAY` (milliseconds between two exports,
//! 5000 by default). The SDK reads the others it knows (`OTEL_EXPORTER_OTLP_HEADERS`,
//! `OTEL_TRACES_SAMPLER`, `OTEL_RESOURCE_ATTRIBUTES`, ...) itself.

use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{BatchConfigBuilder, BatchSpanProcessor, SdkTracerProvider};
use tracing::Subscriber;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::registry::LookupSpan;

use crate::config::{ConfigError, Env};

/// The collector's base URL; exporting is off when unset.
pub const OTEL_EXPORTER_OTLP_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
/// The `service.name` of the exported spans.
pub const OTEL_SERVICE_NAME: &str = "OTEL_SERVICE_NAME";
/// Milliseconds between two exports.
pub const OTEL_BSP_SCHEDULE_DELAY: &str = "OTEL_BSP_SCHEDULE_DELAY";

/// The `tracing` target of every span that is exported, and of no log line.
pub const SPAN_TARGET: &str = "trace_export";

/// The SDK's default delay between two exports.
const DEFAULT_SCHEDULE_DELAY_MS: u64 = 5_000;

/// Where and as what a tier exports its spans.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportSettings {
    /// The traces URL: `OTEL_EXPORTER_OTLP_ENDPOINT` followed by `/v1/traces`.
    pub traces_url: String,
    /// `OTEL_SERVICE_NAME`, or the tier's name.
    pub service_name: String,
    /// `OTEL_BSP_SCHEDULE_DELAY`.
    pub schedule_delay: Duration,
}

impl ExportSettings {
    /// The export settings, or `None` when `OTEL_EXPORTER_OTLP_ENDPOINT` is unset.
    pub fn from_env(env: &Env, default_service_name: &str) -> Result<Option<Self>, ConfigError> {
        let Some(endpoint) = env.get(OTEL_EXPORTER_OTLP_ENDPOINT)? else {
            return Ok(None);
        };
        let uri: http::Uri = endpoint.parse().map_err(|err| {
            ConfigError::new(
                OTEL_EXPORTER_OTLP_ENDPOINT,
                format!("{endpoint:?} is not a URL: {err}"),
            )
        })?;
        if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
            return Err(ConfigError::new(
                OTEL_EXPORTER_OTLP_ENDPOINT,
                format!("{endpoint:?} must be an http:// or https:// URL"),
            ));
        }
        if uri.query().is_some() {
            return Err(ConfigError::new(
                OTEL_EXPORTER_OTLP_ENDPOINT,
                format!("{endpoint:?} must not have a query: it is the base of /v1/traces"),
            ));
        }
        let delay_ms = env.parse_or(OTEL_BSP_SCHEDULE_DELAY, DEFAULT_SCHEDULE_DELAY_MS)?;
        if delay_ms == 0 {
            return Err(ConfigError::new(
                OTEL_BSP_SCHEDULE_DELAY,
                "must be at least 1 millisecond",
            ));
        }
        Ok(Some(Self {
            traces_url: format!("{}/v1/traces", endpoint.trim_end_matches('/')),
            service_name: env
                .get(OTEL_SERVICE_NAME)?
                .unwrap_or(default_service_name)
                .to_owned(),
            schedule_delay: Duration::from_millis(delay_ms),
        }))
    }
}

/// The running exporter: its tracer provider, to be shut down when the process ends.
#[derive(Debug)]
pub struct TraceExport {
    provider: SdkTracerProvider,
}

impl TraceExport {
    /// Builds the exporter and its batch processor. Nothing is sent until spans end.
    pub fn start(settings: &ExportSettings) -> Result<Self, ConfigError> {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(settings.traces_url.as_str())
            .build()
            .map_err(|err| ConfigError::new(OTEL_EXPORTER_OTLP_ENDPOINT, err))?;
        let batch = BatchConfigBuilder::default()
            .with_scheduled_delay(settings.schedule_delay)
            .build();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(
                BatchSpanProcessor::builder(exporter)
                    .with_batch_config(batch)
                    .build(),
            )
            .with_resource(
                Resource::builder()
                    .with_service_name(settings.service_name.clone())
                    .build(),
            )
            .build();
        Ok(Self { provider })
    }

    /// The `tracing` layer that turns [`SPAN_TARGET`] spans into exported spans, and sees nothing
    /// else (no log event becomes a span event).
    pub fn layer<S>(&self) -> impl Layer<S> + Send + Sync + 'static
    where
        S: Subscriber + for<'span> LookupSpan<'span> + Send + Sync,
    {
        let tracer = self.provider.tracer(env!("CARGO_PKG_NAME"));
        tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_location(false)
            .with_threads(false)
            .with_filter(Targets::new().with_target(SPAN_TARGET, tracing::Level::INFO))
    }

    /// Sends the spans not yet exported and stops the processor. Blocks for at most the export
    /// timeout; a failure is reported on standard error, since logging may be gone by then.
    pub fn shutdown(self) {
        if let Err(err) = self.provider.shutdown() {
            eprintln!("warning: cannot export the last spans: {err}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exporting_is_off_without_an_endpoint() {
        assert_eq!(
            ExportSettings::from_env(&Env::default(), "gateway"),
            Ok(None)
        );
    }

    #[test]
    fn the_endpoint_is_the_base_of_the_traces_url() {
        let settings = ExportSettings::from_env(
            &Env::from_pairs([(OTEL_EXPORTER_OTLP_ENDPOINT, "http://collector:4318/")]),
            "gateway",
        )
        .expect("valid")
        .expect("on");
        assert_eq!(settings.traces_url, "http://collector:4318/v1/traces");
        assert_eq!(settings.service_name, "gateway");
        assert_eq!(settings.schedule_delay, Duration::from_secs(5));

        let named = ExportSettings::from_env(
            &Env::from_pairs([
                (OTEL_EXPORTER_OTLP_ENDPOINT, "https://otel.example/base"),
                (OTEL_SERVICE_NAME, "tasks-eu"),
                (OTEL_BSP_SCHEDULE_DELAY, "100"),
            ]),
            "task-service",
        )
        .expect("valid")
        .expect("on");
        assert_eq!(named.traces_url, "https://otel.example/base/v1/traces");
        assert_eq!(named.service_name, "tasks-eu");
        assert_eq!(named.schedule_delay, Duration::from_millis(100));
    }

    #[test]
    fn bad_values_name_the_variable() {
        for endpoint in [
            "collector:4318",
            "ftp://collector",
            "http://",
            "not a url",
            "http://c/?a=b",
        ] {
            let err = ExportSettings::from_env(
                &Env::from_pairs([(OTEL_EXPORTER_OTLP_ENDPOINT, endpoint)]),
                "gateway",
            )
            .expect_err(endpoint);
            assert_eq!(err.variable, OTEL_EXPORTER_OTLP_ENDPOINT, "{endpoint}");
        }
        for delay in ["0", "soon"] {
            let err = ExportSettings::from_env(
                &Env::from_pairs([
                    (OTEL_EXPORTER_OTLP_ENDPOINT, "http://collector:4318"),
                    (OTEL_BSP_SCHEDULE_DELAY, delay),
                ]),
                "gateway",
            )
            .expect_err(delay);
            assert_eq!(err.variable, OTEL_BSP_SCHEDULE_DELAY);
        }
    }
}
