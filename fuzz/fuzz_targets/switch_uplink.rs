//! Host A's switch in front of vm1's port: the input from the underlay as it is, and as tunnels (well formed, a control packet, a zero outer checksum): every frame delivered, answered or counted, never lost unseen; control packets and zero-checksum tunnels never delivered.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../tests/fuzz_regression/checks.rs"]
mod checks;

fuzz_target!(|data: &[u8]| {
    let _ = checks::switch_uplink(data);
});
