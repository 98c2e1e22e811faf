//! The outer checks, replayed through the real switch (`sluiceadm
//! replay`'s engine, `api::replay`): what host A's switch refuses before
//! any port sees it, by the drop names `sluiceadm stats` and
//! `sluice_drops_total{layer="switch"}` print. The capture is
//! `pcaps/outer_checks.uplink.in.pcap` (made by `gen::outer_checks`):
//! vm2's SYNs to vm1's SSH port from host B as a Geneve control packet,
//! with a damaged outer UDP checksum, with a zero one, and well formed.

use crate::gen::{
    input_name, pcaps_dir, OUTER_DAMAGED_SPORT, OUTER_GOOD_SPORT, OUTER_OAM_SPORT, OUTER_ZERO_SPORT,
};
use crate::harness::config;
use crate::pcapio;
use crate::row;
use crate::tshark;
use crate::view;
use crate::world::*;
use api::replay::{ReplayOptions, ReplayReport};
use std::net::IpAddr;
use std::path::PathBuf;

/// A folder removed when dropped.
struct Tmp(PathBuf);

impl Tmp {
    fn new(name: &str) -> Tmp {
        let p = std::env::temp_dir().join(format!("sluice-outer-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        Tmp(p)
    }
}

impl Drop for Tmp {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Host A's state: vm1 (the scenario's configuration: SSH open inbound)
/// and the V2P that vouches for vm2 on host B.
fn state(dir: &Tmp) -> PathBuf {
    let doc = serde_json::json!({
        "version": 1,
        "underlay_ip": HOST_A,
        "ports": [{ "config": config("outer_checks"), "guest": { "kind": "tap", "name": "tap-vm1" } }],
        "v2p": [
            { "vni": VPC, "ip": VM1_IP, "guest_mac": vnic::config::MacAddr(VM1_MAC), "host": HOST_A },
            { "vni": VPC, "ip": VM2_IP, "guest_mac": vnic::config::MacAddr(VM2_MAC), "host": HOST_B },
        ],
        "v2b": [],
    });
    let p = dir.0.join("state.json");
    std::fs::write(&p, doc.to_string()).expect("state.json");
    p
}

fn input() -> PathBuf {
    pcaps_dir().join(input_name("outer_checks", Endpoint::Uplink))
}

/// Replays the capture with the host's `accept_zero_udp6_checksum`.
fn replay(dir: &Tmp, accept_zero: bool) -> ReplayReport {
    let mut o = ReplayOptions::new(
        state(dir),
        vec![("uplink".into(), input())],
        dir.0.join("out"),
    );
    o.underlay_mac = HOST_A_NIC_MAC;
    o.next_hop_mac = UNDERLAY_ROUTER_MAC;
    o.accept_zero_udp6_checksum = accept_zero;
    api::replay::run(&o).expect("replay runs")
}

fn drops(r: &ReplayReport) -> Vec<(&str, u64)> {
    r.switch_drops
        .iter()
        .map(|d| (d.reason.as_str(), d.count))
        .collect()
}

/// The inner source ports of what vm1 was delivered, each frame checked
/// as vm2's SYN to vm1's SSH port (etherparse verifies its checksums),
/// and tshark's reading of the same capture.
fn delivered(dir: &Tmp) -> Vec<u16> {
    let path = dir.0.join("out").join("vm1.out.pcap");
    if !path.exists() {
        return Vec::new();
    }
    let sports: Vec<u16> = pcapio::read(&path)
        .iter()
        .map(|p| {
            let f = view::frame(&p.frame);
            assert_eq!((f.src_mac, f.dst_mac), (GW_MAC, VM1_MAC));
            assert_eq!(
                (f.src_ip(), f.dst_ip()),
                (IpAddr::V4(VM2_IP), IpAddr::V4(VM1_IP))
            );
            assert_eq!(f.tcp_flags(), "S");
            let (s, d) = f.ports();
            assert_eq!(d, 22);
            s
        })
        .collect();
    let want: Vec<Vec<String>> = sports
        .iter()
        .map(|s| row!["eth:ethertype:ip:tcp", VM2_IP, VM1_IP, s, 22, 1])
        .collect();
    tshark::expect(
        &path,
        &[
            "frame.protocols",
            "ip.src",
            "ip.dst",
            "tcp.srcport",
            "tcp.dstport",
            "tcp.flags.syn",
        ],
        &want,
    );
    sports
}

/// The capture holds what it says, as tshark reads it (an independent
/// reader): the O bit on the first, a checksum tshark finds bad on the
/// second, none on the third, a good one on the last.
#[test]
fn the_capture_is_what_tshark_says() {
    let Some(rows) = tshark::fields_of_faulty(
        &input(),
        &[
            "geneve.flags.oam",
            "udp.checksum.status",
            "udp.checksum",
            "tcp.srcport",
        ],
    ) else {
        return;
    };
    let get = |i: usize, c: usize| rows[i][c].as_str();
    assert_eq!(rows.len(), 4, "{rows:?}");
    // tshark prints booleans as True/False or 1/0 by version.
    let truthy = |v: &str| v == "1" || v.eq_ignore_ascii_case("true");
    assert!(truthy(get(0, 0)), "O bit: {rows:?}");
    assert!((1..4).all(|i| !truthy(get(i, 0))), "{rows:?}");
    // udp.checksum.status: 0 bad, 1 good.
    assert_eq!(get(0, 1), "1", "{rows:?}");
    assert_eq!(get(1, 1), "0", "damaged: {rows:?}");
    assert_eq!(get(2, 2), "0", "zero: {rows:?}");
    assert_eq!(get(3, 1), "1", "{rows:?}");
    let sports: Vec<&str> = (0..4).map(|i| get(i, 3)).collect();
    let want: Vec<String> = [
        OUTER_OAM_SPORT,
        OUTER_DAMAGED_SPORT,
        OUTER_ZERO_SPORT,
        OUTER_GOOD_SPORT,
    ]
    .iter()
    .map(u16::to_string)
    .collect();
    assert_eq!(sports, want);
}

/// RFC 8926 §3.4, RFC 8200 §8.1, RFC 6936 §5: by default only the well
/// formed tunnel reaches vm1; the others are dropped by the switch, each
/// under its name, and no port ever sees them.
#[test]
fn the_switch_refuses_control_damaged_and_zero_checksum_tunnels() {
    let dir = Tmp::new("refuse");
    let r = replay(&dir, false);
    assert_eq!(
        drops(&r),
        [
            ("geneve_control", 1),
            ("outer_udp_checksum", 1),
            ("zero_udp6_checksum", 1)
        ],
        "{r:?}"
    );
    // The three with a checksum were verified in software (a capture
    // vouches for nothing).
    assert_eq!(r.switch.csum_verified_sw, 3, "{r:?}");
    assert_eq!(r.ports[0].drops.len(), 0, "no port saw them: {r:?}");
    assert_eq!(r.ports[0].stats.inbound.packets, 1, "{r:?}");
    assert_eq!(delivered(&dir), [OUTER_GOOD_SPORT]);
    // The report's text shows them in the drop table.
    let text = api::cli::show::replay(&r);
    assert!(
        text.contains("(switch)") && text.contains("geneve_control"),
        "{text}"
    );
}

/// With `accept_zero_udp6_checksum`, the tunnel without a checksum is
/// taken too; control packets and damaged checksums still are not.
#[test]
fn zero_checksums_pass_when_the_underlay_accepts_them() {
    let dir = Tmp::new("accept");
    let r = replay(&dir, true);
    assert_eq!(
        drops(&r),
        [("geneve_control", 1), ("outer_udp_checksum", 1)],
        "{r:?}"
    );
    assert_eq!(delivered(&dir), [OUTER_ZERO_SPORT, OUTER_GOOD_SPORT]);
}
