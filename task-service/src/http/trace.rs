//! The task service's part in a request's trace: the server span, continued from the gateway's
//! `traceparent` (the task service is reached only through the gateway, so that is just the
//! parent link), with the handler's span under it; the store adds a `query` span per database
//! operation ([`crate::store::query_span`]).
//!
//! The spans are of [`SPAN_TARGET`], so they exist only while spans are exported; the trace id
//! of the access-log line is there either way (the gateway's, or a new one). Probes (`/healthz`,
//! `/readyz`, `/metrics`, every second from every gateway) get no span.

use axum::http::HeaderMap;
use common::trace_context::RequestTrace;
use common::tracing_export::SPAN_TARGET;
use tracing::Span;
use tracing::field::Empty;

/// Continues the gateway's trace in a `task-service.request` span, unless `probe`.
pub(super) fn start(
    headers: &HeaderMap,
    method: &'static str,
    route: &str,
    probe: bool,
) -> RequestTrace {
    let span = if probe {
        Span::none()
    } else {
        tracing::info_span!(
            target: SPAN_TARGET,
            "task-service.request",
            otel.kind = "server",
            http.request.method = method,
            http.route = route,
            http.response.status_code = Empty,
            otel.status_code = Empty,
        )
    };
    RequestTrace::start(headers, span)
}

/// The span of the handler (extractors included), under the server span.
pub(super) fn handler_span(trace: &RequestTrace) -> Span {
    if trace.span.is_disabled() {
        return Span::none();
    }
    tracing::info_span!(target: SPAN_TARGET, parent: &trace.span, "handler")
}

/// Records the status the request was answered with.
pub(super) fn finish(trace: &RequestTrace, status: u16) {
    trace.span.record("http.response.status_code", status);
    if status >= 500 {
        trace.span.record("otel.status_code", "error");
    }
}
