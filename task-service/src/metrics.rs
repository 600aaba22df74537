//! The service's Prometheus metrics, in a registry owned by one app instance.
//!
//! A registry per instance (rather than the process-global one) lets several servers run in one
//! process, as the tests do, without their counters mixing or their registrations clashing.
//! Labels are low-cardinality by construction: a route is a template such as
//! `/api/{user_id}/tasks/{id}` (as the gateway spells it), never a concrete path, so a user id never becomes a label.

use common::metrics::{HttpMetrics, latency_opts};
use prometheus::{HistogramVec, IntCounter, IntGaugeVec, Opts, Registry};

/// Every metric the service exports, registered in this instance's own registry.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// `task_service_http_requests_total{route,method,status}` and
    /// `task_service_http_request_duration_seconds{route,method}`.
    pub http: HttpMetrics,
    /// `task_service_db_query_duration_seconds{operation}`.
    pub db_duration: HistogramVec,
    /// `task_service_db_pool_connections{state}`, `state` being `idle` or `in_use`; set at scrape.
    pub db_pool_connections: IntGaugeVec,
    /// `task_service_db_errors_total`.
    pub db_errors: IntCounter,
}

impl Metrics {
    /// Creates and registers every metric in a fresh registry.
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let http = HttpMetrics::register(&registry, "task_service")?;
        let db_duration = HistogramVec::new(
            latency_opts(
                "task_service_db_query_duration_seconds",
                "Time spent in one database operation, including waiting for a connection.",
            ),
            &["operation"],
        )?;
        let db_pool_connections = IntGaugeVec::new(
            Opts::new(
                "task_service_db_pool_connections",
                "Database pool connections, by state (idle or in_use).",
            ),
            &["state"],
        )?;
        let db_errors = IntCounter::new(
            "task_service_db_errors_total",
            "Database operations that failed.",
        )?;
        registry.register(Box::new(db_duration.clone()))?;
        registry.register(Box::new(db_pool_connections.clone()))?;
        registry.register(Box::new(db_errors.clone()))?;
        Ok(Self {
            registry,
            http,
            db_duration,
            db_pool_connections,
            db_errors,
        })
    }

    /// The registry in the Prometheus text format.
    pub fn render(&self) -> Result<String, prometheus::Error> {
        common::metrics::render(&self.registry)
    }
}
