//! `dataplane::headers::quoted::quoted` (IPv4 and IPv6) on an ICMP message: never panics; a quote it returns lies inside the message and reads the right bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../tests/fuzz_regression/checks.rs"]
mod checks;

fuzz_target!(|data: &[u8]| {
    let _ = checks::quoted(data);
});
