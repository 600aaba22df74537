//! Masking credentials in log lines, whichever crate wrote them.
//!
//! Our own log lines never carry a token, a cookie, an assertion or a secret, but the libraries
//! underneath do at their most verbose levels: pingora logs whole request heads at `trace`
//! (`Authorization`, `Cookie`, `X-Gateway-Assertion` included), and hyper and h2 dump what they
//! read. Every formatted line passes through [`Redactor::redact`] on its way out, which masks:
//!
//! - the value of a `Cookie`, `Set-Cookie`, `Authorization`, `Proxy-Authorization` or
//!   `X-Gateway-Assertion` header, in any letter case, as `name: value`, `"name": "value"` or
//!   JSON-escaped inside a message;
//! - anything after `Bearer ` and anything shaped like a JWT (`eyJ…` segments joined by dots);
//! - the HMAC of a gateway assertion (`v1=<hex>`) and any run of 64 hex digits (an HMAC-SHA256
//!   seen without its `v1=`);
//! - the exact values of the configured secrets.
//!
//! Most lines hold none of these, so a line is first scanned for what every one of them must
//! contain (one of a few literals, a secret, or a run of 64 hex digits) and only a line that
//! has such a thing goes through the full pattern.

use std::borrow::Cow;
use std::sync::LazyLock;

use aho_corasick::AhoCorasick;
use regex::{Captures, Regex};

/// What replaces a masked value.
pub const MASK: &str = "[REDACTED]";

static CREDENTIALS: LazyLock<Regex> = LazyLock::new(|| {
    // One pass, leftmost-first: a header name with its value, a bearer token, a JWT, an
    // assertion's HMAC, a bare SHA-256-sized hex run. A header value ends at a quote, a
    // backslash (the start of an escaped quote or `\r\n`) or the end of the line.
    Regex::new(
        r#"(?ix)
        (?P<name>set-cookie|cookie|proxy-authorization|authorization|x-gateway-assertion)
            (?P<sep>\\?"?\s*[:=]\s*\\?"?)[^"\\\r\n]*
        | (?P<bearer>bearer)(?:\s|%20|\+)+[a-z0-9._~+/-]+=*
        | eyJ[a-z0-9_-]*(?:\.[a-z0-9_-]*){1,2}
        | v1=[0-9a-f]+
        | \b[0-9a-f]{64}\b
        "#,
    )
    .unwrap_or_else(|err| unreachable!("the credential pattern is valid: {err}"))
});

/// What every match of [`CREDENTIALS`] but a bare hex run contains, in some letter case:
/// `set-cookie` and `proxy-authorization` contain two of them.
const TRIGGERS: &[&str] = &[
    "cookie",
    "authorization",
    "x-gateway-assertion",
    "bearer",
    "eyj",
    "v1=",
];

/// A short piece of each of [`TRIGGERS`]: a line without any of them, in any letter case,
/// holds no trigger. Short, so that every letter case of every piece is one small literal set
/// for a SIMD search; rare in ordinary lines, so that few lines take the full pattern.
const FINGERPRINTS: &[&str] = &["ki", "za", "x-", "bea", "yj", "1="];

/// The length of the bare hex run [`CREDENTIALS`] masks.
const HEX_RUN: usize = 64;

/// Masks credentials and the given secrets in text.
#[derive(Clone)]
pub struct Redactor {
    secrets: Vec<String>,
    /// Finds a line that may hold a trigger or a secret.
    scan: Scan,
}

/// A search for [`FINGERPRINTS`] (every letter case) and the secrets: SIMD where the CPU has
/// it, else an automaton over [`TRIGGERS`] and the secrets ignoring ASCII case.
#[derive(Clone)]
enum Scan {
    Packed(aho_corasick::packed::Searcher),
    Automaton(AhoCorasick),
}

impl Scan {
    fn new(secrets: &[String]) -> Self {
        let mut literals: Vec<String> = FINGERPRINTS.iter().flat_map(|f| letter_cases(f)).collect();
        literals.extend(secrets.iter().cloned());
        if let Some(searcher) = aho_corasick::packed::Searcher::new(&literals) {
            return Self::Packed(searcher);
        }
        let automaton = AhoCorasick::builder()
            .ascii_case_insensitive(true)
            .build(
                TRIGGERS
                    .iter()
                    .copied()
                    .chain(secrets.iter().map(String::as_str)),
            )
            .unwrap_or_else(|err| unreachable!("literal patterns always build: {err}"));
        Self::Automaton(automaton)
    }

    fn may_hold_credential(&self, text: &str) -> bool {
        let found = match self {
            Self::Packed(searcher) => searcher.find(text).is_some(),
            Self::Automaton(automaton) => automaton.is_match(text),
        };
        found || has_hex_run(text.as_bytes())
    }
}

/// `text` in every combination of ASCII letter case.
fn letter_cases(text: &str) -> Vec<String> {
    text.chars().fold(vec![String::new()], |cases, ch| {
        let (lower, upper) = (ch.to_ascii_lowercase(), ch.to_ascii_uppercase());
        cases
            .into_iter()
            .flat_map(|case| {
                let mut both = vec![format!("{case}{lower}")];
                if upper != lower {
                    both.push(format!("{case}{upper}"));
                }
                both
            })
            .collect()
    })
}

impl Default for Redactor {
    fn default() -> Self {
        Self::new([])
    }
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Redactor({} secrets)", self.secrets.len())
    }
}

impl Redactor {
    /// A redactor that also masks each of `secrets` (empty ones are ignored).
    pub fn new(secrets: impl IntoIterator<Item = String>) -> Self {
        let mut secrets: Vec<String> = secrets.into_iter().filter(|s| !s.is_empty()).collect();
        // Longest first, so a secret containing another is masked whole.
        secrets.sort_by_key(|secret| std::cmp::Reverse(secret.len()));
        let scan = Scan::new(&secrets);
        Self { secrets, scan }
    }

    /// `text` with every credential and secret masked; borrowed when there was none.
    pub fn redact<'a>(&self, text: &'a str) -> Cow<'a, str> {
        if self.scan.may_hold_credential(text) {
            self.redact_all(text)
        } else {
            Cow::Borrowed(text)
        }
    }

    /// [`Self::redact`] without the scan that lets most lines skip the full pattern.
    fn redact_all<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let mut text = CREDENTIALS.replace_all(text, |caps: &Captures<'_>| {
            if let (Some(name), Some(sep)) = (caps.name("name"), caps.name("sep")) {
                format!("{}{}{MASK}", name.as_str(), sep.as_str())
            } else if let Some(bearer) = caps.name("bearer") {
                format!("{} {MASK}", bearer.as_str())
            } else {
                MASK.to_owned()
            }
        });
        for secret in &self.secrets {
            if text.contains(secret.as_str()) {
                text = Cow::Owned(text.replace(secret.as_str(), MASK));
            }
        }
        text
    }
}

/// Whether `bytes` holds [`HEX_RUN`] hex digits in a row. Such a run covers one of every
/// [`HEX_RUN`] positions, so only those are looked at until one is a hex digit.
fn has_hex_run(bytes: &[u8]) -> bool {
    let mut probe = HEX_RUN - 1;
    while let Some(byte) = bytes.get(probe) {
        if !byte.is_ascii_hexdigit() {
            probe += HEX_RUN;
            continue;
        }
        let before = bytes[..probe]
            .iter()
            .rev()
            .take_while(|b| b.is_ascii_hexdigit())
            .count();
        let from = bytes[probe..]
            .iter()
            .take_while(|b| b.is_ascii_hexdigit())
            .count();
        if before + from >= HEX_RUN {
            return true;
        }
        // The run ends at `probe + from`, a non-hex byte; a later run starts after it.
        probe += from + HEX_RUN;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const JWT: &str = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLXNpZ25hdHVyZQ";

    fn redact(text: &str) -> String {
        Redactor::new(["a-configured-secret-value".to_owned()])
            .redact(text)
            .into_owned()
    }

    #[test]
    fn header_values_are_masked_in_every_shape() {
        for (line, kept) in [
            ("cookie: session=abc123\r\nhost: x", "host: x"),
            (
                r#"{"Cookie": "session=abc123", "host": "x"}"#,
                r#""host": "x""#,
            ),
            (
                r#"message":"headers: {\"cookie\": \"session=abc123\", \"host\": \"x\"}"#,
                r#"\"host\": \"x\""#,
            ),
            (
                "Set-Cookie: session=abc123; HttpOnly",
                "Set-Cookie: [REDACTED]",
            ),
            (
                "authorization: Basic YWxpY2U6c2VjcmV0",
                "authorization: [REDACTED]",
            ),
            (
                "x-gateway-assertion: t=1,v1=0123abcd\\r\\nhost",
                "\\r\\nhost",
            ),
        ] {
            let masked = redact(line);
            for secret in ["abc123", "YWxpY2U6c2VjcmV0", "0123abcd"] {
                assert!(!masked.contains(secret), "{line} -> {masked}");
            }
            assert!(masked.contains(kept), "{line} -> {masked}");
            assert!(masked.contains(MASK), "{line} -> {masked}");
        }
    }

    #[test]
    fn tokens_hmacs_and_secrets_are_masked_anywhere() {
        let hmac = "ab".repeat(32);
        for line in [
            format!("Bearer {JWT}"),
            format!("got token {JWT} from client"),
            format!("t=1796134481,v1={hmac}"),
            format!("digest {hmac} end"),
            "the secret is a-configured-secret-value!".to_owned(),
        ] {
            let masked = redact(&line);
            for secret in [JWT, &JWT[..20], &hmac, "a-configured-secret-value"] {
                assert!(!masked.contains(secret), "{line} -> {masked}");
            }
        }
    }

    #[test]
    fn ordinary_lines_are_left_alone() {
        let line = r#"{"level":"INFO","route":"/api/{user_id}/tasks","status":200,"request_id":"0b9f2c1e-7d2a-4c55-9e35-0a6f8c3b2d10"}"#;
        assert!(matches!(Redactor::default().redact(line), Cow::Borrowed(_)));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2048))]

        /// Skipping the full pattern never leaves a credential or a secret in a line: lines
        /// built from the pieces credentials are made of (mostly one credential among ordinary
        /// text) redact the same with and without the scan.
        #[test]
        fn the_scan_never_skips_what_the_pattern_masks(
            pieces in prop::collection::vec(
                prop_oneof![
                    1 => Just("Cookie".to_owned()),
                    1 => Just("sET-cOOKIE".to_owned()),
                    1 => Just("Proxy-Authorization".to_owned()),
                    1 => Just("x-gateway-ASSERTION".to_owned()),
                    1 => Just("BeArEr".to_owned()),
                    1 => Just("eYj".to_owned()),
                    1 => Just("V1=".to_owned()),
                    1 => Just("a-configured-secret-value".to_owned()),
                    1 => Just("0123456789abcdef".repeat(4)),
                    4 => Just(".".to_owned()),
                    4 => Just(": ".to_owned()),
                    4 => Just("a-configured".to_owned()),
                    4 => "[0-9a-fA-F]{1,70}",
                    4 => "[ :=\"\\\r\n.%+_-]{1,3}",
                    4 => "[a-zA-Z0-9]{1,8}",
                ],
                0..10,
            )
        ) {
            let line = pieces.concat();
            let redactor = Redactor::new(["a-configured-secret-value".to_owned()]);
            prop_assert_eq!(redactor.redact(&line), redactor.redact_all(&line));
        }
    }

    #[test]
    fn a_long_hex_run_is_found_wherever_it_starts() {
        let run = "a".repeat(HEX_RUN);
        let short = &run[1..];
        for start in 0..3 * HEX_RUN {
            let pad = "-".repeat(start);
            assert!(has_hex_run(format!("{pad}{run}").as_bytes()), "at {start}");
            assert!(
                has_hex_run(format!("{pad}{short}-{run}x").as_bytes()),
                "at {start}"
            );
            assert!(!has_hex_run(format!("{pad}{short}-{short}").as_bytes()));
        }
    }

    #[test]
    fn every_trigger_holds_a_fingerprint() {
        for trigger in TRIGGERS {
            assert!(
                FINGERPRINTS.iter().any(|f| trigger.contains(f)),
                "{trigger}"
            );
        }
        assert_eq!(letter_cases("x-").len(), 2);
        assert_eq!(letter_cases("bea").len(), 8);
        assert!(letter_cases("bea").contains(&"bEa".to_owned()));
    }
}
