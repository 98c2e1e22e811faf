//! `overlay::check_options` on a Geneve options area: never panics, and agrees with the option walk.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../tests/fuzz_regression/checks.rs"]
mod checks;

fuzz_target!(|data: &[u8]| {
    let _ = checks::geneve_options_check(data);
});
