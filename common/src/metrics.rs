//! The Prometheus pieces both tiers use alike: the HTTP request metrics every tier records (the
//! same names under its own prefix, the same labels and buckets, so that dashboards and alerts
//! read both tiers the same way), latency buckets, and the text rendering of a registry. Each
//! tier owns its registry, so that several servers can run in one process (as tests do).

use std::time::Duration;

use http::Method;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry, TextEncoder,
};

/// Latency buckets from 0.5 ms to 10 s: healthy requests and queries land in the low
/// milliseconds; the top buckets catch timeouts.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Histogram options with [`LATENCY_BUCKETS`].
pub fn latency_opts(name: &str, help: &str) -> HistogramOpts {
    HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec())
}

/// `{tier}_http_requests_total{route,method,status}` and
/// `{tier}_http_request_duration_seconds{route,method}`. `route` is always a template such as
/// `/api/{user_id}/tasks`, never a concrete path, so a user id never becomes a label.
#[derive(Clone)]
pub struct HttpMetrics {
    requests: IntCounterVec,
    duration: HistogramVec,
}

impl HttpMetrics {
    /// Creates both metrics for `tier` (e.g. `gateway`) and registers them in `registry`.
    pub fn register(registry: &Registry, tier: &str) -> Result<Self, prometheus::Error> {
        let requests = IntCounterVec::new(
            Opts::new(
                format!("{tier}_http_requests_total"),
                "Requests answered, by route template, method and status code.",
            ),
            &["route", "method", "status"],
        )?;
        let duration = HistogramVec::new(
            latency_opts(
                &format!("{tier}_http_request_duration_seconds"),
                "Time to answer a request, by route template and method.",
            ),
            &["route", "method"],
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        Ok(Self { requests, duration })
    }

    /// Records one answered request.
    pub fn observe(&self, route: &str, method: &str, status: u16, elapsed: Duration) {
        // A known code's label is borrowed, not formatted for every request.
        let code = http::StatusCode::from_u16(status);
        let formatted;
        let status = match &code {
            Ok(code) => code.as_str(),
            Err(_) => {
                formatted = status.to_string();
                &formatted
            }
        };
        self.requests
            .with_label_values(&[route, method, status])
            .inc();
        self.duration
            .with_label_values(&[route, method])
            .observe(elapsed.as_secs_f64());
    }
}

/// A bounded method label: the methods an API uses by name, anything else as `OTHER`, so that a
/// client cannot create series with made-up methods.
pub fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        Method::HEAD => "HEAD",
        _ => "OTHER",
    }
}

/// `registry` in the Prometheus text format.
pub fn render(registry: &Registry) -> Result<String, prometheus::Error> {
    let mut buffer = Vec::new();
    TextEncoder::new().encode(&registry.gather(), &mut buffer)?;
    // The text encoder writes only UTF-8.
    Ok(String::from_utf8_lossy(&buffer).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_metrics_are_named_by_tier_and_labelled_by_template() {
        let registry = Registry::new();
        let http = HttpMetrics::register(&registry, "example").expect("register");
        http.observe("/api/{user_id}/tasks", "GET", 200, Duration::from_millis(3));
        let text = render(&registry).expect("render");
        assert!(text.contains(
            r#"example_http_requests_total{method="GET",route="/api/{user_id}/tasks",status="200"} 1"#
        ));
        assert!(text.contains(
            r#"example_http_request_duration_seconds_bucket{method="GET",route="/api/{user_id}/tasks",le="0.005"} 1"#
        ));
    }

    #[test]
    fn unusual_methods_share_one_label() {
        assert_eq!(method_label(&Method::PATCH), "PATCH");
        let made_up = Method::from_bytes(b"BREW").expect("a valid token");
        assert_eq!(method_label(&made_up), "OTHER");
        assert_eq!(method_label(&Method::TRACE), "OTHER");
    }

    #[test]
    fn a_tier_registers_its_request_metrics_once() {
        let registry = Registry::new();
        HttpMetrics::register(&registry, "example").expect("first");
        assert!(HttpMetrics::register(&registry, "example").is_err());
    }
}
