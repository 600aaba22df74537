//! The service's Prometheus metrics, in a registry owned by one app instance.
//!
//! A registry per instance (rather than the process-global one) lets several servers run in one
//! process, as the tests do, without their counters mixing or their registrations clashing.
//! Labels are low-cardinality by construction: a route is a template such as
//! `/api/{user_id}/tasks/{task_id}`, never a concrete path, so a user id never becomes a label.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

/// Every metric the service exports, registered in this instance's own registry.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// `task_service_http_requests_total{route,method,status}`.
    pub http_requests: IntCounterVec,
    /// `task_service_http_request_duration_seconds{route,method}`.
    pub http_duration: HistogramVec,
    /// `task_service_db_query_duration_seconds{operation}`.
    pub db_duration: HistogramVec,
    /// `task_service_db_pool_connections{state}`, `state` being `idle` or `in_use`; set at scrape.
    pub db_pool_connections: IntGaugeVec,
    /// `task_service_db_errors_total`.
    pub db_errors: IntCounter,
}

/// Latency buckets from 0.5 ms to 5 s: requests and queries on a healthy service land in the
/// low milliseconds, and anything near the pool's 5 s acquire timeout is an outage.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

impl Metrics {
    /// Creates and registers every metric in a fresh registry.
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let http_requests = IntCounterVec::new(
            Opts::new(
                "task_service_http_requests_total",
                "HTTP requests answered, by route template, method and status code.",
            ),
            &["route", "method", "status"],
        )?;
        let http_duration = HistogramVec::new(
            HistogramOpts::new(
                "task_service_http_request_duration_seconds",
                "Time to answer an HTTP request, by route template and method.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["route", "method"],
        )?;
        let db_duration = HistogramVec::new(
            HistogramOpts::new(
                "task_service_db_query_duration_seconds",
                "Time spent in one database operation, including waiting for a connection.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
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
        registry.register(Box::new(http_requests.clone()))?;
        registry.register(Box::new(http_duration.clone()))?;
        registry.register(Box::new(db_duration.clone()))?;
        registry.register(Box::new(db_pool_connections.clone()))?;
        registry.register(Box::new(db_errors.clone()))?;
        Ok(Self {
            registry,
            http_requests,
            http_duration,
            db_duration,
            db_pool_connections,
            db_errors,
        })
    }

    /// The registry in the Prometheus text format.
    pub fn render(&self) -> Result<String, prometheus::Error> {
        let mut buffer = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut buffer)?;
        // The text encoder writes only UTF-8.
        Ok(String::from_utf8_lossy(&buffer).into_owned())
    }
}
