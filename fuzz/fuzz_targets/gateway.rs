//! Every gateway builder (ARP, DHCPv4, DHCPv6, NDP, ICMP echo 4/6, MTU errors) on the same frame with vm1's gateway: never panics; every reply parses and goes gateway -> guest.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../tests/fuzz_regression/checks.rs"]
mod checks;

fuzz_target!(|data: &[u8]| {
    let _ = checks::gateway(data);
});
