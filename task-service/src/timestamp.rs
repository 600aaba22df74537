//! RFC 3339 times as the service spells them, written and read without chrono's general
//! formatter and parser in the common case.
//!
//! Every task carries three times, so a list of 20 formats 60 and, on SQLite, parses 60. Chrono
//! formats through `fmt::Write` one character at a time, and through serde's `collect_str`
//! serde_json escapes each of those pieces separately; its RFC 3339 parser accepts every
//! variant the RFC allows. Here the four-digit-year UTC time is written into a stack buffer in
//! one go, and the canonical stored text is read by position. Anything else (a year outside
//! 0–9999, a leap second, text in another layout) is left to chrono, so the bytes written and
//! the times read are chrono's in every case (the property tests below compare the two).

use chrono::{DateTime, Datelike, NaiveDate, NaiveTime, SecondsFormat, Timelike, Utc};
use serde::Serializer;

/// How the UTC offset is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offset {
    /// `Z`: what the API returns (chrono's serde format).
    Zulu,
    /// `+00:00`: what SQLite stores, so that text order is time order.
    Colon,
}

/// `YYYY-MM-DDTHH:MM:SS.nnnnnnnnn+00:00`, the longest fast-path spelling.
const MAX_LEN: usize = 35;

/// One time's text: on the stack when the fast path wrote it.
pub enum Text {
    Buffer { bytes: [u8; MAX_LEN], len: usize },
    Chrono(String),
}

impl Text {
    pub fn as_str(&self) -> &str {
        match self {
            // Only ASCII digits and separators are written into the buffer.
            Self::Buffer { bytes, len } => std::str::from_utf8(&bytes[..*len]).unwrap_or_default(),
            Self::Chrono(text) => text,
        }
    }
}

/// `time` in RFC 3339 with chrono's `SecondsFormat::AutoSi` (no fraction, or 3, 6 or 9
/// digits, whichever is exact).
pub fn format(time: &DateTime<Utc>, offset: Offset) -> Text {
    let year = time.year();
    let nano = time.nanosecond();
    if !(0..=9999).contains(&year) || nano >= 1_000_000_000 {
        return Text::Chrono(time.to_rfc3339_opts(SecondsFormat::AutoSi, offset == Offset::Zulu));
    }
    let mut text = Buffer {
        bytes: [0; MAX_LEN],
        len: 0,
    };
    text.digits(year as u32, 4);
    text.byte(b'-');
    text.digits(time.month(), 2);
    text.byte(b'-');
    text.digits(time.day(), 2);
    text.byte(b'T');
    text.digits(time.hour(), 2);
    text.byte(b':');
    text.digits(time.minute(), 2);
    text.byte(b':');
    text.digits(time.second(), 2);
    if nano != 0 {
        text.byte(b'.');
        if nano.is_multiple_of(1_000_000) {
            text.digits(nano / 1_000_000, 3);
        } else if nano.is_multiple_of(1_000) {
            text.digits(nano / 1_000, 6);
        } else {
            text.digits(nano, 9);
        }
    }
    match offset {
        Offset::Zulu => text.byte(b'Z'),
        Offset::Colon => b"+00:00".iter().for_each(|&byte| text.byte(byte)),
    }
    Text::Buffer {
        bytes: text.bytes,
        len: text.len,
    }
}

struct Buffer {
    bytes: [u8; MAX_LEN],
    len: usize,
}

impl Buffer {
    fn byte(&mut self, byte: u8) {
        self.bytes[self.len] = byte;
        self.len += 1;
    }

    /// `value`'s last `count` decimal digits, zero-padded.
    fn digits(&mut self, value: u32, count: u32) {
        for place in (0..count).rev() {
            self.byte(b'0' + (value / 10u32.pow(place) % 10) as u8);
        }
    }
}

/// Serializes a time as the API spells it (`serialize_with` for `DateTime<Utc>` fields).
pub fn serialize<S: Serializer>(time: &DateTime<Utc>, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(format(time, Offset::Zulu).as_str())
}

/// [`serialize`] for an optional time: `null` when absent.
pub fn serialize_option<S: Serializer>(
    time: &Option<DateTime<Utc>>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match time {
        Some(time) => serialize(time, serializer),
        None => serializer.serialize_none(),
    }
}

/// Reads RFC 3339 text: the stored spelling by position, anything else by chrono.
pub fn parse(text: &str) -> Result<DateTime<Utc>, chrono::ParseError> {
    match parse_canonical(text.as_bytes()) {
        Some(time) => Ok(time),
        None => DateTime::parse_from_rfc3339(text).map(|time| time.with_timezone(&Utc)),
    }
}

/// `YYYY-MM-DDTHH:MM:SS[.f{1,9}](Z|+00:00)` holding a valid date and time, or `None`.
fn parse_canonical(text: &[u8]) -> Option<DateTime<Utc>> {
    let number = |range: std::ops::Range<usize>| -> Option<u32> {
        let digits = text.get(range)?;
        digits.iter().try_fold(0u32, |value, &byte| {
            byte.is_ascii_digit()
                .then(|| value * 10 + u32::from(byte - b'0'))
        })
    };
    let separators = [(4, b'-'), (7, b'-'), (10, b'T'), (13, b':'), (16, b':')];
    if text.len() < 20 || separators.iter().any(|&(at, byte)| text[at] != byte) {
        return None;
    }
    let mut end = 19;
    let mut nano = 0;
    if text[end] == b'.' {
        let digits = text[end + 1..]
            .iter()
            .take_while(|byte| byte.is_ascii_digit())
            .count();
        if !(1..=9).contains(&digits) {
            return None;
        }
        nano = number(end + 1..end + 1 + digits)? * 10u32.pow(9 - digits as u32);
        end += 1 + digits;
    }
    if !matches!(&text[end..], b"Z" | b"+00:00") {
        return None;
    }
    let date = NaiveDate::from_ymd_opt(
        i32::try_from(number(0..4)?).ok()?,
        number(5..7)?,
        number(8..10)?,
    )?;
    // A second of 60 (a leap second) is refused here and left to chrono.
    let time =
        NaiveTime::from_hms_nano_opt(number(11..13)?, number(14..16)?, number(17..19)?, nano)?;
    Some(date.and_time(time).and_utc())
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use proptest::prelude::*;

    use super::*;

    fn chrono_text(time: &DateTime<Utc>, offset: Offset) -> String {
        time.to_rfc3339_opts(SecondsFormat::AutoSi, offset == Offset::Zulu)
    }

    /// Times across and beyond the four-digit years, with every kind of fraction.
    fn any_time() -> impl Strategy<Value = DateTime<Utc>> {
        let seconds = prop_oneof![
            -62_167_219_200i64..253_402_300_800, // years 0000..=9999
            -100_000_000_000i64..-62_167_219_200,
            253_402_300_800i64..300_000_000_000,
        ];
        let nanos = prop_oneof![
            Just(0u32),
            (0u32..1000).prop_map(|ms| ms * 1_000_000),
            (0u32..1_000_000).prop_map(|us| us * 1_000),
            0u32..1_000_000_000,
            1_000_000_000u32..2_000_000_000, // a leap second
        ];
        (seconds, nanos).prop_filter_map("a representable time", |(seconds, nanos)| {
            DateTime::from_timestamp(seconds, nanos)
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4096))]

        #[test]
        fn formats_as_chrono_does(time in any_time()) {
            for offset in [Offset::Zulu, Offset::Colon] {
                let text = format(&time, offset);
                prop_assert_eq!(text.as_str(), chrono_text(&time, offset));
            }
        }

        #[test]
        fn reads_what_it_writes_as_chrono_does(time in any_time()) {
            for offset in [Offset::Zulu, Offset::Colon] {
                let text = chrono_text(&time, offset);
                prop_assert_eq!(
                    parse(&text).ok(),
                    DateTime::parse_from_rfc3339(&text).ok().map(|t| t.with_timezone(&Utc))
                );
            }
        }

        /// Near-misses of the stored layout: each is read as chrono reads it, or refused as
        /// chrono refuses it.
        #[test]
        fn reads_any_text_as_chrono_does(
            text in concat!(
                "[0-9]{4}-(0[0-9]|1[0-3])-([0-2][0-9]|3[0-2])",
                "(T|T|t| )([01][0-9]|2[0-5]):[0-5][0-9]:([0-5][0-9]|60|61)",
                "(\\.[0-9]{0,11})?(Z|Z|\\+00:00|\\+00:00|z|-00:00|\\+01:30|\\+00:0|)",
            )
        ) {
            prop_assert_eq!(
                parse(&text).ok(),
                DateTime::parse_from_rfc3339(&text).ok().map(|t| t.with_timezone(&Utc))
            );
        }
    }

    #[test]
    fn the_stored_and_the_api_spellings() {
        let time = Utc.with_ymd_and_hms(2026, 11, 24, 8, 0, 0).unwrap()
            + chrono::Duration::microseconds(123_456);
        assert_eq!(
            format(&time, Offset::Colon).as_str(),
            "2026-11-24T08:00:00.123456+00:00"
        );
        assert_eq!(
            format(&time, Offset::Zulu).as_str(),
            "2026-11-24T08:00:00.123456Z"
        );
        assert_eq!(parse("2026-11-24T08:00:00.123456+00:00").ok(), Some(time));
        assert!(parse("2026-02-30T08:00:00+00:00").is_err());
    }
}
