//! What one access-log line costs before its `write`: formatting the gateway's access event as
//! JSON (this crate's format beside tracing-subscriber's own, the one the binaries used
//! before), and redacting the line (a clean line, which the scan lets skip the full pattern,
//! and one holding a credential, which goes through it).
//!
//! `cargo bench -p common --bench log_line -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;
use std::io;

use common::json_line::JsonLine;
use common::redact::Redactor;
use criterion::{Criterion, criterion_group, criterion_main};

/// Takes the formatted bytes and drops them.
struct Sink;

impl io::Write for Sink {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        black_box(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The gateway's access event for a served request, with its fields' usual types.
fn access_event() {
    let upstream = std::net::SocketAddr::from(([127, 0, 0, 1], 8081));
    tracing::info!(
        target: "gateway::access",
        request_id = %"b7820a84-5bec-49eb-90f0-2d86af2e478f",
        trace_id = Some(tracing::field::display("3b5e78542cb799a3ef91d6c76f14ae40")),
        method = %http::Method::GET,
        route = "/api/{user_id}/tasks",
        status = 200_u16,
        latency_ms = 0.737_71,
        user = Some("KNr4i7fFzRl3JWslb4oOdZSgDQUlk3ou"),
        denial = None::<&str>,
        upstream = Some(tracing::field::display(upstream)),
        upstream_error = None::<&str>,
        error = None::<&str>,
        "request"
    );
}

fn format(c: &mut Criterion) {
    let mut group = c.benchmark_group("format");
    let ours = tracing_subscriber::fmt()
        .event_format(JsonLine)
        .with_writer(|| Sink)
        .finish();
    tracing::subscriber::with_default(ours, || {
        group.bench_function("json_line", |b| b.iter(access_event));
    });
    let theirs = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_writer(|| Sink)
        .finish();
    tracing::subscriber::with_default(theirs, || {
        group.bench_function("tracing_subscriber_json", |b| b.iter(access_event));
    });
    group.finish();
}

fn redact(c: &mut Criterion) {
    let clean = r#"{"timestamp":"2026-12-01T23:33:40.792281Z","level":"INFO","message":"request","request_id":"b7820a84-5bec-49eb-90f0-2d86af2e478f","trace_id":"3b5e78542cb799a3ef91d6c76f14ae40","method":"GET","route":"/api/{user_id}/tasks","status":200,"latency_ms":0.73771,"user":"KNr4i7fFzRl3JWslb4oOdZSgDQUlk3ou","upstream":"127.0.0.1:8081","target":"gateway::access"}"#;
    let credential = clean.replace(
        r#""route""#,
        r#""headers":"authorization: Bearer eyJhbGciOiJIUzI1NiJ9.e30.c2ln","route""#,
    );
    let redactor = Redactor::new([
        "a-better-auth-secret-of-at-least-32-bytes".to_owned(),
        "a-gateway-signing-secret-of-32-bytes!".to_owned(),
    ]);
    let mut group = c.benchmark_group("redact");
    group.bench_function("clean_access_line", |b| {
        b.iter(|| redactor.redact(black_box(clean)).len());
    });
    group.bench_function("line_with_a_credential", |b| {
        b.iter(|| redactor.redact(black_box(&credential)).len());
    });
    group.finish();
}

criterion_group!(benches, format, redact);
criterion_main!(benches);
