//! `VnicConfig` JSON then `validate`: never panics; a valid configuration builds a port, round-trips, and processes packets within the port checks.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../tests/fuzz_regression/checks.rs"]
mod checks;

fuzz_target!(|data: &[u8]| {
    let _ = checks::vnic_config(data);
});
