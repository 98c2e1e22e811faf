//! vm1's full VPC port, the input as a guest frame: a forwarded frame is Geneve on vm1's VNI from this host (tenant isolation).
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../tests/fuzz_regression/checks.rs"]
mod checks;

fuzz_target!(|data: &[u8]| {
    let _ = checks::vpc_port_out(data);
});
