//! Fuzzes the canonical path check (`gateway::path::check_target`) and the route table with
//! arbitrary request-target bytes: it must never panic, and whatever it accepts must be readable
//! only one way (see `invariants::path_check`).
#![no_main]

#[path = "../../gateway/tests/it/support/invariants.rs"]
#[allow(dead_code)]
mod invariants;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    invariants::path_check(data);
});
