//! Fuzzes the token front end: arbitrary bytes as one or two `Authorization` headers through
//! `gateway::authorize::bearer_token` and then the verifier (HS256 secret, no JWKS). Nothing may
//! panic, and since no input is signed with the secret, nothing may verify.
#![no_main]

#[path = "../../gateway/tests/it/support/invariants.rs"]
#[allow(dead_code)]
mod invariants;

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

static FRONT_END: OnceLock<invariants::TokenFrontEnd> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let front_end = FRONT_END.get_or_init(invariants::TokenFrontEnd::new);
    // A NUL byte splits the input into two header values, to reach the duplicate-header path.
    let values: Vec<&[u8]> = data.splitn(2, |&b| b == 0).collect();
    front_end.check(&values);
    // The same bytes as a bare token, to reach the JWS parser without the scheme check.
    if let Ok(token) = std::str::from_utf8(data) {
        assert!(!front_end.verify(token), "unsigned input verified");
    }
});
