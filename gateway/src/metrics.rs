//! The gateway's Prometheus metrics, in a registry owned by each gateway instance (so tests can
//! run several gateways in one process). Labels are low-cardinality by construction: route
//! templates, methods, status codes, denial reasons, error kinds. A user id is never a label.

use common::metrics::{HttpMetrics, latency_opts};
use prometheus::{Histogram, HistogramOpts, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

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
    /// `gateway_revocation_entries{kind=sid|jti|sub}`
    pub revocation_entries: IntGaugeVec,
    /// `gateway_revocations_applied_total{kind,source=api|store}`: new entries, posted here or
    /// learned from the store.
    pub revocations_applied: IntCounterVec,
    /// `gateway_revocation_store_errors_total{operation}`
    pub revocation_store_errors: IntCounterVec,
    /// `gateway_revocation_store_up`: 1 while the revocation store answers.
    pub revocation_store_up: IntGauge,
    /// `gateway_revocation_propagation_seconds`: from publishing a revocation at one replica to
    /// applying it at this one.
    pub revocation_propagation: Histogram,
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
        let revocation_entries = IntGaugeVec::new(
            Opts::new(
                "gateway_revocation_entries",
                "Revoked sessions, tokens and users held, by kind.",
            ),
            &["kind"],
        )?;
        registry.register(Box::new(revocation_entries.clone()))?;
        let revocation_propagation = Histogram::with_opts(
            HistogramOpts::new(
                "gateway_revocation_propagation_seconds",
                "Time from a revocation being published to this replica applying it.",
            )
            .buckets(vec![
                0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
        )?;
        registry.register(Box::new(revocation_propagation.clone()))?;
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
            revocation_entries,
            revocations_applied: counter(
                "gateway_revocations_applied_total",
                "Revocations that were new to this replica, by kind and source (api or store).",
                &["kind", "source"],
            )?,
            revocation_store_errors: counter(
                "gateway_revocation_store_errors_total",
                "Failed reads and writes of the revocation store, by operation.",
                &["operation"],
            )?,
            revocation_store_up: gauge(
                "gateway_revocation_store_up",
                "1 while the revocation store answers, else 0.",
            )?,
            revocation_propagation,
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
        metrics
            .revocation_entries
            .with_label_values(&["sid"])
            .set(1);
        metrics
            .revocations_applied
            .with_label_values(&["sid", "api"])
            .inc();
        metrics
            .revocation_store_errors
            .with_label_values(&["write"])
            .inc();
        metrics.revocation_propagation.observe(0.01);
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
            "gateway_revocation_entries",
            "gateway_revocations_applied_total",
            "gateway_revocation_store_errors_total",
            "gateway_revocation_store_up",
            "gateway_revocation_propagation_seconds",
        ] {
            assert!(text.contains(name), "{name} missing from\n{text}");
        }
    }
}
