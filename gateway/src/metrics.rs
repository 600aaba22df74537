//! The gateway's Prometheus metrics, in a registry owned by each gateway instance (so tests can
//! run several gateways in one process). Labels are low-cardinality by construction: route
//! templates, methods, status codes, denial reasons, error kinds. A user id is never a label.

use common::metrics::{HttpMetrics, latency_opts};
use prometheus::{Histogram, IntCounterVec, IntGauge, Opts, Registry};

/// Every metric the gateway records.
pub struct Metrics {
    registry: Registry,
    /// `gateway_http_requests_total{route,method,status}` and
    /// `gateway_http_request_duration_seconds{route,method}`
    pub http: HttpMetrics,
    /// `gateway_auth_denials_total{reason}`
    pub auth_denials: IntCounterVec,
    /// `gateway_upstream_errors_total{kind}`
    pub upstream_errors: IntCounterVec,
    /// `gateway_upstream_duration_seconds`: from choosing a replica to its response header.
    pub upstream_duration: Histogram,
    /// `gateway_jwks_refreshes_total{result}`
    pub jwks_refreshes: IntCounterVec,
    /// `gateway_jwks_keys`
    pub jwks_keys: IntGauge,
    /// `gateway_jwks_age_seconds`: since the key set in use was fetched (-1 before the first).
    pub jwks_age: IntGauge,
    /// `gateway_token_cache_total{result=hit|miss}`
    pub token_cache: IntCounterVec,
    /// `gateway_healthy_upstreams`
    pub healthy_upstreams: IntGauge,
    /// `gateway_tls_certificate_reloads_total{result=success|error}`
    pub tls_certificate_reloads: IntCounterVec,
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let metric = IntCounterVec::new(Opts::new(name, help), labels)?;
            registry.register(Box::new(metric.clone()))?;
            Ok::<_, prometheus::Error>(metric)
        };
        let gauge = |name: &str, help: &str| {
            let metric = IntGauge::new(name, help)?;
            registry.register(Box::new(metric.clone()))?;
            Ok::<_, prometheus::Error>(metric)
        };
        let http = HttpMetrics::register(&registry, "gateway")?;
        let upstream_duration = Histogram::with_opts(latency_opts(
            "gateway_upstream_duration_seconds",
            "Time from choosing a task-service replica to its response header.",
        ))?;
        registry.register(Box::new(upstream_duration.clone()))?;
        Ok(Self {
            http,
            auth_denials: counter(
                "gateway_auth_denials_total",
                "Requests refused before reaching the task service, by reason.",
                &["reason"],
            )?,
            upstream_errors: counter(
                "gateway_upstream_errors_total",
                "Failures talking to the task service, by kind.",
                &["kind"],
            )?,
            upstream_duration,
            jwks_refreshes: counter(
                "gateway_jwks_refreshes_total",
                "JWKS fetches, by result.",
                &["result"],
            )?,
            jwks_keys: gauge("gateway_jwks_keys", "Usable keys from the JWKS.")?,
            jwks_age: gauge(
                "gateway_jwks_age_seconds",
                "Seconds since the JWKS in use was fetched successfully.",
            )?,
            token_cache: counter(
                "gateway_token_cache_total",
                "Verified-token cache lookups, by result.",
                &["result"],
            )?,
            healthy_upstreams: gauge(
                "gateway_healthy_upstreams",
                "Task-service replicas passing health checks.",
            )?,
            tls_certificate_reloads: counter(
                "gateway_tls_certificate_reloads_total",
                "Reloads of the public listener's TLS certificate after its files changed, by result.",
                &["result"],
            )?,
            registry,
        })
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> Vec<u8> {
        common::metrics::render(&self.registry)
            .map(String::into_bytes)
            .unwrap_or_else(|err| {
                tracing::error!(error = %err, "cannot encode metrics");
                Vec::new()
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_is_exposed_with_its_name() {
        let metrics = Metrics::new().expect("metrics register");
        metrics.http.observe(
            "/api/{user_id}/tasks",
            "GET",
            200,
            std::time::Duration::from_millis(10),
        );
        metrics.auth_denials.with_label_values(&["expired"]).inc();
        metrics
            .upstream_errors
            .with_label_values(&["connect"])
            .inc();
        metrics.jwks_refreshes.with_label_values(&["success"]).inc();
        metrics.token_cache.with_label_values(&["hit"]).inc();
        metrics
            .tls_certificate_reloads
            .with_label_values(&["error"])
            .inc();
        let text = String::from_utf8(metrics.render()).expect("utf-8");
        for name in [
            "gateway_http_requests_total",
            "gateway_http_request_duration_seconds",
            "gateway_auth_denials_total",
            "gateway_upstream_errors_total",
            "gateway_upstream_duration_seconds",
            "gateway_jwks_refreshes_total",
            "gateway_jwks_keys",
            "gateway_jwks_age_seconds",
            "gateway_token_cache_total",
            "gateway_healthy_upstreams",
            "gateway_tls_certificate_reloads_total",
        ] {
            assert!(text.contains(name), "{name} missing from\n{text}");
        }
    }
}
