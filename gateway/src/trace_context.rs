//! The gateway's part in a request's trace.
//!
//! Every request continues the client's `traceparent` or starts a trace
//! ([`common::trace_context`]), sends the task service a `traceparent` whose parent is this hop,
//! and writes the `trace_id` into the access log. Only when the gateway exports spans
//! (`OTEL_EXPORTER_OTLP_ENDPOINT` set) does it create them: the server span `gateway.request`
//! (method label, route template, status, denial reason) and its children `verify` (the token
//! check) and `upstream` (the exchange with a replica, the parent of the task service's span).
//! Without exporting, a request costs a parse or a random id and one formatted header, and no
//! span: [`GatewayTrace::start`] is told by the proxy's flag, not by the subscriber.

use common::metrics::method_label;
use common::trace_context::{RequestTrace, TraceParent};
use common::tracing_export::SPAN_TARGET;
use opentelemetry::trace::TraceState;
use pingora::http::RequestHeader;
use tracing::Span;
use tracing::field::Empty;

/// One request's trace in the gateway.
#[derive(Debug)]
pub struct GatewayTrace {
    request: RequestTrace,
    /// The `upstream` span, once a replica was picked (exporting only).
    upstream: Option<Span>,
}

impl GatewayTrace {
    /// Continues or starts the request's trace; with `exporting`, in a new `gateway.request` span.
    pub fn start(request: &RequestHeader, exporting: bool) -> Self {
        let span = if exporting {
            tracing::info_span!(
                target: SPAN_TARGET,
                "gateway.request",
                otel.kind = "server",
                http.request.method = method_label(&request.method),
                http.route = Empty,
                http.response.status_code = Empty,
                gateway.denial = Empty,
                otel.status_code = Empty,
            )
        } else {
            Span::none()
        };
        Self {
            request: RequestTrace::start(&request.headers, span),
            upstream: None,
        }
    }

    /// The span of the token check: a child of the request's, or none when not exporting.
    pub fn verify_span(&self) -> Span {
        if self.request.span.is_disabled() {
            return Span::none();
        }
        tracing::info_span!(target: SPAN_TARGET, parent: &self.request.span, "verify")
    }

    /// Opens the `upstream` span (once, whatever the retries) when exporting.
    pub fn start_upstream(&mut self) {
        if self.upstream.is_none() && !self.request.span.is_disabled() {
            self.upstream = Some(tracing::info_span!(
                target: SPAN_TARGET,
                parent: &self.request.span,
                "upstream",
                otel.kind = "client",
                error.type = Empty,
            ));
        }
    }

    /// What the task service receives as `traceparent` and `tracestate`: the `upstream` span
    /// when exporting, this hop otherwise, and the `tracestate` that came with the trace.
    pub fn upstream_context(&self) -> (TraceParent, Option<&TraceState>) {
        let parent = self
            .upstream
            .as_ref()
            .and_then(TraceParent::of_span)
            .unwrap_or(self.request.hop);
        (parent, self.request.state.as_ref())
    }

    /// Records how the request ended and ends its spans.
    pub fn finish(
        &mut self,
        route: &'static str,
        status: u16,
        denial: Option<&'static str>,
        upstream_error: Option<&'static str>,
    ) {
        if let Some(upstream) = self.upstream.take()
            && let Some(kind) = upstream_error
        {
            upstream.record("error.type", kind);
        }
        let span = std::mem::replace(&mut self.request.span, Span::none());
        if span.is_disabled() {
            return;
        }
        span.record("http.route", route);
        span.record("http.response.status_code", status);
        if let Some(reason) = denial {
            span.record("gateway.denial", reason);
        }
        if status >= 500 || status == 0 {
            span.record("otel.status_code", "error");
        }
    }

    /// The trace id for the access log.
    pub fn trace_id(&self) -> impl std::fmt::Display + use<> {
        self.request.trace_id()
    }
}

#[cfg(test)]
mod tests {
    use common::trace_context::TRACEPARENT;

    use super::*;

    const CLIENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn request(traceparent: Option<&str>) -> RequestHeader {
        let mut request = RequestHeader::build("GET", b"/api/alice/tasks", None).expect("head");
        if let Some(value) = traceparent {
            request.insert_header(TRACEPARENT, value).expect("header");
        }
        request
    }

    #[test]
    fn without_exporting_the_client_trace_goes_on_under_a_new_parent() {
        let mut trace = GatewayTrace::start(&request(Some(CLIENT)), false);
        trace.start_upstream();
        assert!(trace.verify_span().is_disabled());
        let (parent, state) = trace.upstream_context();
        let sent = parent.to_string();
        assert!(
            sent.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
            "{sent}"
        );
        assert_ne!(sent, CLIENT, "the gateway's hop is the parent");
        assert_eq!(state, None);
        assert_eq!(
            trace.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
    }

    #[test]
    fn an_invalid_traceparent_starts_a_new_trace() {
        let trace = GatewayTrace::start(&request(Some("00-abc-def-01")), false);
        let (parent, _) = trace.upstream_context();
        assert_eq!(parent.trace_id, trace.request.hop.trace_id);
        assert_eq!(
            TraceParent::parse(parent.to_string().as_bytes()),
            Some(parent)
        );
        assert!(parent.flags.is_sampled());
    }
}
