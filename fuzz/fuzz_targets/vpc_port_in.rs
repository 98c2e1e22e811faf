//! vm1's full VPC port, the input as an underlay frame and wrapped in a tunnel from a V2P-valid host: only frames on vm1's VNI, to this host, from a known host are delivered, to the guest.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../tests/fuzz_regression/checks.rs"]
mod checks;

fuzz_target!(|data: &[u8]| {
    let _ = checks::vpc_port_in(data);
});
