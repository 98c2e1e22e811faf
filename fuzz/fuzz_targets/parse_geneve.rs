//! `dataplane::headers::parse` in `ParseMode::Geneve`: never panics; after `Ok` the offsets contract holds and the guest frame parses the same on its own; `parse_fast` agrees with it.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../tests/fuzz_regression/checks.rs"]
mod checks;

fuzz_target!(|data: &[u8]| {
    let _ = checks::parse_geneve(data);
});
