//! The JSON log line: one object per event, written straight into the line buffer.
//!
//! The same object as tracing-subscriber's JSON format with `flatten_event(true)` and no span
//! fields: `timestamp` (RFC 3339, UTC, microseconds), `level`, the event's fields in the order
//! they were recorded (`message` among them), then `target`. Records bridged from `log` carry
//! the `log` record's own target and the `log.*` fields. Unlike that format it builds no
//! serializer and no string per field: a `%value` or `?value` is escaped as it is formatted.
//! An access-log line is written for every request, so this is on the request path.

use std::fmt::{self, Write};

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_log::NormalizeEvent;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// Formats each event as one JSON object on one line.
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonLine;

impl<S, N> FormatEvent<S, N> for JsonLine
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let normalized = event.normalized_metadata();
        let meta = normalized.as_ref().unwrap_or_else(|| event.metadata());
        writer.write_str("{\"timestamp\":\"")?;
        SystemTime.format_time(&mut writer)?;
        write!(writer, "\",\"level\":\"{}\"", meta.level())?;
        let mut fields = Fields {
            writer: &mut writer,
            result: Ok(()),
        };
        event.record(&mut fields);
        fields.result?;
        writer.write_str(",\"target\":")?;
        write_str(&mut writer, meta.target())?;
        writer.write_str("}\n")
    }
}

/// Writes each recorded field as `,"name":value`.
struct Fields<'a, 'w> {
    writer: &'a mut Writer<'w>,
    result: fmt::Result,
}

impl Fields<'_, '_> {
    fn field(&mut self, field: &Field, value: impl FnOnce(&mut Writer<'_>) -> fmt::Result) {
        if self.result.is_ok() {
            self.result = self
                .writer
                .write_char(',')
                .and_then(|()| write_str(self.writer, field.name()))
                .and_then(|()| self.writer.write_char(':'))
                .and_then(|()| value(self.writer));
        }
    }
}

impl Visit for Fields<'_, '_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.field(field, |w| {
            if value.is_finite() {
                write!(w, "{value}")
            } else {
                w.write_str("null")
            }
        });
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.field(field, |w| write!(w, "{value}"));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.field(field, |w| write!(w, "{value}"));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.field(field, |w| write!(w, "{value}"));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.field(field, |w| write_str(w, value));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.field(field, |w| {
            w.write_char('"')?;
            write!(Escaped(&mut *w), "{value:?}")?;
            w.write_char('"')
        });
    }
}

/// `text` as a JSON string.
fn write_str(writer: &mut impl Write, text: &str) -> fmt::Result {
    writer.write_char('"')?;
    Escaped(&mut *writer).write_str(text)?;
    writer.write_char('"')
}

/// Escapes what it is given as the inside of a JSON string (as serde_json does: `"`, `\` and
/// the control characters).
struct Escaped<W>(W);

impl<W: Write> Write for Escaped<W> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        let mut plain = 0;
        for (at, byte) in text.bytes().enumerate() {
            let escape = match byte {
                b'"' => "\\\"",
                b'\\' => "\\\\",
                b'\n' => "\\n",
                b'\r' => "\\r",
                b'\t' => "\\t",
                0x08 => "\\b",
                0x0c => "\\f",
                0x00..=0x1f => "",
                _ => continue,
            };
            self.0.write_str(&text[plain..at])?;
            if escape.is_empty() {
                write!(self.0, "\\u{byte:04x}")?;
            } else {
                self.0.write_str(escape)?;
            }
            plain = at + 1;
        }
        self.0.write_str(&text[plain..])
    }
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::sync::{Arc, Mutex};

    use serde_json::{Map, Value};
    use tracing_subscriber::fmt::MakeWriter;

    use super::*;

    /// Lines written by a test's subscriber.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            self.0
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Captured {
        type Writer = Self;

        fn make_writer(&'a self) -> Self {
            self.clone()
        }
    }

    impl Captured {
        fn lines(&self) -> Vec<Map<String, Value>> {
            let bytes = self.0.lock().expect("not poisoned").clone();
            String::from_utf8(bytes)
                .expect("utf-8")
                .lines()
                .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
                .collect()
        }
    }

    fn emit() {
        let upstream: std::net::SocketAddr = "127.0.0.1:8081".parse().expect("address");
        tracing::info!(
            target: "gateway::access",
            request_id = %"0b9f2c1e-7d2a",
            method = "GET",
            route = "/api/{user_id}/tasks",
            status = 200_u64,
            latency_ms = 0.125,
            slow = false,
            delta = -3_i64,
            user = Some("alice \"the\" \\ admin\n\u{1}é"),
            denial = None::<&str>,
            upstream = %upstream,
            debug = ?vec!["a\"b"],
            "request"
        );
        tracing::warn!(not_a_number = f64::NAN, "odd {} message", "formatted");
    }

    /// The same event through this format and through tracing-subscriber's own JSON format
    /// (as the binaries configured it before) gives the same object, timestamp aside.
    #[test]
    fn lines_match_tracing_subscribers_json_format() {
        let ours = Captured::default();
        let subscriber = tracing_subscriber::fmt()
            .event_format(JsonLine)
            .with_writer(ours.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, emit);
        let theirs = Captured::default();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_writer(theirs.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, emit);

        let (ours, theirs) = (ours.lines(), theirs.lines());
        assert_eq!(ours.len(), 2);
        for (mut ours, mut theirs) in ours.into_iter().zip(theirs) {
            let stamp = ours.remove("timestamp").expect("a timestamp");
            let stamp = stamp.as_str().expect("a string");
            assert_eq!(
                stamp.len(),
                theirs["timestamp"].as_str().expect("a string").len()
            );
            assert!(stamp.ends_with('Z'), "{stamp}");
            theirs.remove("timestamp");
            assert_eq!(
                ours.keys().collect::<Vec<_>>(),
                theirs.keys().collect::<Vec<_>>()
            );
            assert_eq!(ours, theirs);
        }
    }

    #[test]
    fn control_characters_are_escaped() {
        let mut out = String::new();
        write_str(&mut out, "a\"b\\c\nd\re\tf\u{8}\u{c}\u{0}\u{1f}g").expect("written");
        assert_eq!(out, r#""a\"b\\c\nd\re\tf\b\f\u0000\u001fg""#);
        let parsed: String = serde_json::from_str(&out).expect("valid JSON");
        assert_eq!(parsed, "a\"b\\c\nd\re\tf\u{8}\u{c}\u{0}\u{1f}g");
    }
}
