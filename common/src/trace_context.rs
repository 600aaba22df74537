//! The W3C trace context (`traceparent`, `tracestate`) both tiers read, and the trace a request
//! belongs to.
//!
//! A valid `traceparent` is continued; anything else (absent, repeated, another length, an
//! unknown layout, upper-case hex, all-zero ids, version `ff`) starts a new trace, and its
//! `tracestate` is then dropped, as the W3C recommendation says. [`RequestTrace::start`] does
//! that for a request whatever the exporting state: when the request's server span is exported
//! (see [`crate::tracing_export`]) its ids come from the span, otherwise the trace id is the
//! continued one or a random one and only travels on (`traceparent`) and into the access log.

use std::fmt;
use std::str::FromStr;

use http::HeaderMap;
use opentelemetry::Context;
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use rand::Rng;
use rand::distributions::{Distribution, Standard};
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::headers::single_value;

/// The W3C trace context header.
pub const TRACEPARENT: &str = "traceparent";
/// The vendors' part of the trace context, passed on with a continued `traceparent`.
pub const TRACESTATE: &str = "tracestate";

/// A `tracestate` longer than this is dropped (the W3C limit a sender must keep to).
const MAX_TRACESTATE_BYTES: usize = 512;

/// The length of a version-00 `traceparent`: `00-<32 hex>-<16 hex>-<2 hex>`.
const TRACEPARENT_LEN: usize = 55;

/// One hop's place in a trace: the trace, the span that is the parent of the next hop, and the
/// flags (sampled or not).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    pub trace_id: TraceId,
    pub parent_id: SpanId,
    pub flags: TraceFlags,
}

impl TraceParent {
    /// Parses a `traceparent` value; `None` unless it is valid.
    ///
    /// Version 00 must be exactly 55 characters; a later version may be longer, with a `-` after
    /// the four fields this version knows. Version `ff` is never valid.
    pub fn parse(value: &[u8]) -> Option<Self> {
        if value.len() < TRACEPARENT_LEN {
            return None;
        }
        let version = lower_hex(&value[0..2])?;
        match version {
            "ff" => return None,
            "00" if value.len() != TRACEPARENT_LEN => return None,
            _ if value.len() > TRACEPARENT_LEN && value[TRACEPARENT_LEN] != b'-' => return None,
            _ => {}
        }
        if value[2] != b'-' || value[35] != b'-' || value[52] != b'-' {
            return None;
        }
        let trace_id = TraceId::from_hex(lower_hex(&value[3..35])?).ok()?;
        let parent_id = SpanId::from_hex(lower_hex(&value[36..52])?).ok()?;
        let flags = u8::from_str_radix(lower_hex(&value[53..55])?, 16).ok()?;
        if trace_id == TraceId::INVALID || parent_id == SpanId::INVALID {
            return None;
        }
        Some(Self {
            trace_id,
            parent_id,
            // Only the sampled bit is defined; the others are not passed on.
            flags: TraceFlags::new(flags & TraceFlags::SAMPLED.to_u8()),
        })
    }

    /// The request's `traceparent`: `None` when there is none, more than one, or it is invalid.
    pub fn from_headers(headers: &HeaderMap) -> Option<Self> {
        single_value(headers, TRACEPARENT).and_then(|value| Self::parse(value.as_bytes()))
    }

    /// A new trace, sampled, whose first span is this hop's.
    pub fn new_trace() -> Self {
        Self {
            trace_id: random_trace_id(),
            parent_id: random_span_id(),
            flags: TraceFlags::SAMPLED,
        }
    }

    /// The same trace with a new span of this hop's as the parent.
    pub fn next_hop(self) -> Self {
        Self {
            parent_id: random_span_id(),
            ..self
        }
    }

    /// The ids of an exported span, when it has any.
    pub fn of_span(span: &Span) -> Option<Self> {
        if span.is_disabled() {
            return None;
        }
        let context = span.context();
        let span_context = context.span().span_context().clone();
        span_context.is_valid().then(|| Self {
            trace_id: span_context.trace_id(),
            parent_id: span_context.span_id(),
            flags: span_context.trace_flags(),
        })
    }

    /// This context as the remote parent of a span.
    pub fn as_remote_parent(&self, state: &TraceState) -> Context {
        Context::new().with_remote_span_context(SpanContext::new(
            self.trace_id,
            self.parent_id,
            self.flags,
            true,
            state.clone(),
        ))
    }
}

/// The `traceparent` header value (version 00).
impl fmt::Display for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "00-{:032x}-{:016x}-{:02x}",
            self.trace_id,
            self.parent_id,
            self.flags.to_u8()
        )
    }
}

/// `bytes` as text when they are lower-case hex digits only.
fn lower_hex(bytes: &[u8]) -> Option<&str> {
    bytes
        .iter()
        .all(|byte| byte.is_ascii_digit() || (b'a'..=b'f').contains(byte))
        .then(|| std::str::from_utf8(bytes).ok())
        .flatten()
}

fn random_trace_id() -> TraceId {
    TraceId::from(nonzero_random::<u128>())
}

fn random_span_id() -> SpanId {
    SpanId::from(nonzero_random::<u64>())
}

/// A random id; zero means "no id" in the trace context, so it is drawn again.
fn nonzero_random<T>() -> T
where
    T: Default + PartialEq,
    Standard: Distribution<T>,
{
    let mut rng = rand::thread_rng();
    loop {
        let id: T = rng.r#gen();
        if id != T::default() {
            return id;
        }
    }
}

/// The request's `tracestate`, when it is one well-formed list of at most 512 bytes; several
/// headers are one list joined by commas.
pub fn trace_state_from_headers(headers: &HeaderMap) -> Option<TraceState> {
    let mut joined = String::new();
    for value in headers.get_all(TRACESTATE) {
        let value = value.to_str().ok()?;
        if !joined.is_empty() {
            joined.push(',');
        }
        joined.push_str(value);
    }
    if joined.is_empty() || joined.len() > MAX_TRACESTATE_BYTES {
        return None;
    }
    let members: Vec<&str> = joined
        .split(',')
        .map(str::trim)
        .filter(|member| !member.is_empty())
        .collect();
    TraceState::from_str(&members.join(","))
        .ok()
        .filter(|state| *state != TraceState::NONE)
}

/// The trace one request belongs to in this tier, and the server span that records it (a
/// disabled span when this tier does not export).
#[derive(Debug)]
pub struct RequestTrace {
    /// This hop: the trace id, and the span id the next hop's parent is.
    pub hop: TraceParent,
    /// The `tracestate` continued with the incoming `traceparent`, as received.
    pub state: Option<TraceState>,
    /// The server span; disabled when nothing is exported.
    pub span: Span,
}

impl RequestTrace {
    /// Continues the trace of `headers` (or starts one) in `span`: the span's parent is the
    /// incoming `traceparent`, and [`RequestTrace::hop`] is the span's own context when it is
    /// exported, the continued trace with a new span id otherwise.
    pub fn start(headers: &HeaderMap, span: Span) -> Self {
        let incoming = TraceParent::from_headers(headers);
        let state = incoming.and_then(|_| trace_state_from_headers(headers));
        if !span.is_disabled()
            && let Some(parent) = incoming
        {
            // Fails only when the span is not exported, which `of_span` below then shows.
            let _ = span
                .set_parent(parent.as_remote_parent(state.as_ref().unwrap_or(&TraceState::NONE)));
        }
        let hop = TraceParent::of_span(&span)
            .or_else(|| incoming.map(TraceParent::next_hop))
            .unwrap_or_else(TraceParent::new_trace);
        Self { hop, state, span }
    }

    /// The trace id, as the access log and the exported spans write it (32 hex digits).
    pub fn trace_id(&self) -> impl fmt::Display + use<> {
        let id = self.hop.trace_id;
        fmt::from_fn(move |f| write!(f, "{id:032x}"))
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_str(value).expect("header value"));
        }
        map
    }

    #[test]
    fn a_valid_traceparent_round_trips() {
        let parsed = TraceParent::parse(VALID.as_bytes()).expect("valid");
        assert_eq!(
            parsed.trace_id,
            TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").expect("hex")
        );
        assert_eq!(
            parsed.parent_id,
            SpanId::from_hex("00f067aa0ba902b7").expect("hex")
        );
        assert!(parsed.flags.is_sampled());
        assert_eq!(parsed.to_string(), VALID);
    }

    #[test]
    fn invalid_traceparents_are_refused() {
        let refused = [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-011",
            "00-4bf92f3577b34da6a3ce929d0e0e473-600f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "0g-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-+bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
        ];
        for value in refused {
            assert_eq!(TraceParent::parse(value.as_bytes()), None, "{value:?}");
        }
    }

    #[test]
    fn a_later_version_is_read_as_far_as_version_00_goes() {
        let later = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03-extra";
        let parsed = TraceParent::parse(later.as_bytes()).expect("later version");
        assert_eq!(parsed.to_string(), VALID, "only the sampled flag is kept");
    }

    #[test]
    fn two_traceparents_are_no_traceparent() {
        let other = "00-11111111111111111111111111111111-2222222222222222-01";
        let map = headers(&[(TRACEPARENT, VALID), (TRACEPARENT, other)]);
        assert_eq!(TraceParent::from_headers(&map), None);
        assert!(TraceParent::from_headers(&headers(&[(TRACEPARENT, VALID)])).is_some());
    }

    #[test]
    fn tracestate_is_kept_only_when_well_formed_and_short() {
        let map = headers(&[(TRACESTATE, "congo=t61rcWkgMzE, rojo=00f067aa0ba902b7")]);
        assert_eq!(
            trace_state_from_headers(&map).map(|state| state.header()),
            Some("congo=t61rcWkgMzE,rojo=00f067aa0ba902b7".to_owned())
        );
        let long = format!("congo={}", "a".repeat(MAX_TRACESTATE_BYTES));
        assert_eq!(
            trace_state_from_headers(&headers(&[(TRACESTATE, &long)])),
            None
        );
        assert_eq!(
            trace_state_from_headers(&headers(&[(TRACESTATE, "no member")])),
            None
        );
    }

    #[test]
    fn a_request_continues_a_valid_trace_or_starts_one() {
        let continued = RequestTrace::start(
            &headers(&[(TRACEPARENT, VALID), (TRACESTATE, "congo=t61rcWkgMzE")]),
            Span::none(),
        );
        let incoming = TraceParent::parse(VALID.as_bytes()).expect("valid");
        assert_eq!(continued.hop.trace_id, incoming.trace_id);
        assert_ne!(
            continued.hop.parent_id, incoming.parent_id,
            "this hop's own span id"
        );
        assert_eq!(
            continued.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert!(continued.state.is_some());

        let invalid = "00-00000000000000000000000000000000-00f067aa0ba902b7-01";
        let started = RequestTrace::start(
            &headers(&[(TRACEPARENT, invalid), (TRACESTATE, "congo=t61rcWkgMzE")]),
            Span::none(),
        );
        assert_ne!(started.hop.trace_id, TraceId::INVALID);
        assert!(started.hop.flags.is_sampled());
        assert_eq!(
            started.state, None,
            "a tracestate without its traceparent is dropped"
        );
        let other = RequestTrace::start(&HeaderMap::new(), Span::none());
        assert_ne!(other.hop.trace_id, started.hop.trace_id);
    }
}
