//! Fuzzes the gateway-assertion verifier (`common::assertion`): an arbitrary header and request
//! never verify unless the header is the genuine signature, and a genuine one verifies for its
//! own request only (see `invariants::assertion`).
#![no_main]

#[path = "../../gateway/tests/it/support/invariants.rs"]
#[allow(dead_code)]
mod invariants;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // Fields separated by newlines, which none of them can contain on the wire.
    let mut fields = text.split('\n');
    let header = fields.next().unwrap_or_default();
    let method = fields.next().unwrap_or("GET");
    let path = fields.next().unwrap_or("/api/alice/tasks");
    let user = fields.next().unwrap_or("alice");
    let now = 1_767_225_600 + u64::from(data.first().copied().unwrap_or(0));
    invariants::assertion(header, method, path, user, now);
});
