//! `dataplane::headers::parse` in `ParseMode::Plain`: never panics; after `Ok` the offsets contract holds; `parse_fast` reads nothing the full parse does not, and reads it the same.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../tests/fuzz_regression/checks.rs"]
mod checks;

fuzz_target!(|data: &[u8]| {
    let _ = checks::parse_plain(data);
});
