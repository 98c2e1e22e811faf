//! Per-vNIC rate limits: a guest flooding its port is held to its limit
//! (token buckets, counted as `rate_limited`), while its neighbour on the
//! same worker keeps all of its traffic.

use crate::common::*;
use dataplane::{DropReason, RateLimit};
use vmm_net::backend::Wire;
use vmm_net::switch::Switch;

const STEP_NS: u64 = 1_000_000;

/// Runs `steps` 1 ms steps: each step `vm1` offers `flood` frames and
/// `vm2` offers `calm`, the switch polls once; returns the frames of each
/// guest that reached the uplink.
fn run(
    cloud: &Cloud,
    sw: &mut Switch,
    up: &Wire,
    (vm1, vm2): (&Wire, &Wire),
    steps: u64,
    (flood, calm): (u16, u16),
) -> (u64, u64) {
    let mut got = (0, 0);
    for _ in 0..steps {
        for i in 0..flood {
            vm1.send(&udp4(5, 40000 + i, v4(PEER_LAST), 5000));
        }
        for i in 0..calm {
            vm2.send(&udp4(6, 40000 + i, v4(PEER_LAST), 5000));
        }
        sw.poll().unwrap();
        for f in up.take() {
            let t = tunnel(&f).unwrap();
            match source(&t.inner).unwrap().1 {
                Some(ip) if ip == v4(5) => got.0 += 1,
                Some(ip) if ip == v4(6) => got.1 += 1,
                ip => panic!("a frame from {ip:?}"),
            }
        }
        cloud.clock.advance_nanos(STEP_NS);
    }
    (got.0, got.1)
}

#[test]
fn a_flooding_guest_is_held_to_its_limit_and_its_neighbour_keeps_its_rate() {
    let cloud = Cloud::new();
    let (mut sw, up) = cloud.switch();
    let mut c1 = vnic("vm1", 5, VPC_A, 1024);
    c1.rate_limit = Some(RateLimit {
        packets_per_sec: 1000,
        burst_packets: Some(100),
        ..RateLimit::default()
    });
    let vm1 = cloud.attach(&mut sw, &c1);
    let vm2 = cloud.attach(&mut sw, &vnic("vm2", 6, VPC_A, 1024));

    // Two simulated seconds: vm1 offers 20 000 frames/s, twenty times its
    // limit; vm2 offers 2000/s and has no limit.
    let (sent1, sent2) = run(&cloud, &mut sw, &up, (&vm1, &vm2), 2000, (20, 2));
    // The burst, then one frame per millisecond for the 1.999 s after the
    // first frame.
    assert!((2098..=2100).contains(&sent1), "vm1 sent {sent1}");
    assert_eq!(sent2, 4000, "vm2 keeps all of its traffic");

    let s1 = sw.port("vm1").unwrap().port.stats().clone();
    assert_eq!(s1.dir[1].packets, 40_000);
    assert_eq!(s1.drops(DropReason::RateLimited), 40_000 - sent1);
    assert_eq!(
        s1.drop_counts(),
        [("rate_limited", 40_000 - sent1)],
        "the limit is vm1's only reason to drop"
    );
    let s2 = sw.port("vm2").unwrap().port.stats();
    assert!(s2.drop_counts().is_empty(), "{:?}", s2.drop_counts());

    // The limit changes on the live port: removed, vm1 sends everything.
    let mut c1 = sw.port("vm1").unwrap().config().clone();
    c1.rate_limit = None;
    sw.port_mut("vm1").unwrap().reconfigure(&c1).unwrap();
    let (sent1, _) = run(&cloud, &mut sw, &up, (&vm1, &vm2), 100, (20, 0));
    assert_eq!(sent1, 2000);

    // A byte limit: 1 MB/s of 60-byte frames (etherparse's UDP frame) is
    // about 16 700 frames a second.
    c1.rate_limit = Some(RateLimit {
        bytes_per_sec: 1_000_000,
        burst_bytes: Some(10_000),
        ..RateLimit::default()
    });
    sw.port_mut("vm1").unwrap().reconfigure(&c1).unwrap();
    let len = udp4(5, 1, v4(PEER_LAST), 1).len() as u64;
    let (sent1, sent2) = run(&cloud, &mut sw, &up, (&vm1, &vm2), 1000, (30, 1));
    let expect = (10_000 + 999 * 1000) / len;
    assert!(
        sent1.abs_diff(expect) <= 2,
        "vm1 sent {sent1} frames of {len} bytes, expected about {expect}"
    );
    assert_eq!(sent2, 1000);
}

/// A firewall change on the port must not refill the buckets (it would
/// hand the guest a fresh burst every time the operator edits a rule).
#[test]
fn other_changes_leave_the_buckets_alone() {
    let cloud = Cloud::new();
    let (mut sw, up) = cloud.switch();
    let mut c1 = vnic("vm1", 5, VPC_A, 1024);
    c1.rate_limit = Some(RateLimit {
        packets_per_sec: 10,
        burst_packets: Some(5),
        ..RateLimit::default()
    });
    let vm1 = cloud.attach(&mut sw, &c1);
    let idle = Wire::new();
    let (sent, _) = run(&cloud, &mut sw, &up, (&vm1, &idle), 1, (20, 0));
    assert_eq!(sent, 5, "the burst");
    c1.firewall.pop();
    sw.port_mut("vm1").unwrap().reconfigure(&c1).unwrap();
    let (sent, _) = run(&cloud, &mut sw, &up, (&vm1, &idle), 1, (20, 0));
    assert_eq!(sent, 0, "no new burst after a firewall change");
}
