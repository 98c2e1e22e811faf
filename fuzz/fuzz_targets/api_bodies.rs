//! The API's request bodies from arbitrary bytes (first byte: which request), applied to the real control plane over simulated devices: never panics, refusals are 4xx and change nothing.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../tests/fuzz_regression/checks.rs"]
mod checks;

#[path = "../../tests/fuzz_regression/api_checks.rs"]
mod api_checks;

fuzz_target!(|data: &[u8]| {
    let _ = api_checks::api_bodies(data);
});
