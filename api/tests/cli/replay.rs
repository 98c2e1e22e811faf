//! `sluiceadm replay`: a state made through the API on a simulated host,
//! dumped with `dump-state`, replayed offline against captures crafted
//! here; the output captures read back with pcap-file and etherparse.
//!
//! The world: VPC 7777; vm1 (10.0.0.5) and vm2 (10.0.0.6, TCP 22 open
//! inbound) on this host (fd00:99::a), vm3 (10.0.0.7) on host B
//! (fd00:99::b).

use crate::fixtures::*;
use etherparse::{NetSlice, PacketBuilder, SlicedPacket, TransportSlice};
use pcap_file::pcap::{PcapPacket, PcapReader, PcapWriter};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::time::Duration;

const VM1_MAC: [u8; 6] = [0xa8, 0x40, 0x25, 0, 0, 5];
const VM3_MAC: [u8; 6] = [0xa8, 0x40, 0x25, 0, 0, 7];
const GW_MAC: [u8; 6] = [0xa8, 0x40, 0x25, 0xff, 0xff, 1];
const HOST_A: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x99, 0, 0, 0, 0, 0, 0xa);
const HOST_B: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x99, 0, 0, 0, 0, 0, 0xb);
/// The capture's clock: the first frame at this second.
const T0: u64 = 1_700_000_000;

fn at(ms: u64) -> Duration {
    Duration::from_secs(T0) + Duration::from_millis(ms)
}

fn write_pcap(path: &Path, frames: &[(Duration, Vec<u8>)]) {
    let mut w = PcapWriter::new(std::fs::File::create(path).unwrap()).unwrap();
    for (ts, f) in frames {
        w.write_packet(&PcapPacket::new(*ts, f.len() as u32, f))
            .unwrap();
    }
}

fn read_pcap(path: &Path) -> Vec<(Duration, Vec<u8>)> {
    let f = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut r = PcapReader::new(f).unwrap();
    let mut out = Vec::new();
    while let Some(p) = r.next_packet() {
        let p = p.unwrap();
        out.push((p.timestamp, p.data.into_owned()));
    }
    out
}

use sluice_test_support::arp_request;

/// A TCP segment between two guests' inner addresses.
fn tcp(
    macs: ([u8; 6], [u8; 6]),
    src: ([u8; 4], u16),
    dst: ([u8; 4], u16),
    seq: u32,
    ack: Option<u32>,
) -> Vec<u8> {
    let mut t = PacketBuilder::ethernet2(macs.0, macs.1)
        .ipv4(src.0, dst.0, 64)
        .tcp(src.1, dst.1, seq, 64240)
        .syn();
    if let Some(a) = ack {
        t = t.ack(a);
    }
    let mut v = Vec::new();
    t.write(&mut v, &[]).unwrap();
    v
}

/// `inner` in Geneve (VNI, no options) from `src` to `dst` on the underlay.
fn geneve(inner: &[u8], src: Ipv6Addr, dst: Ipv6Addr, vni: u32) -> Vec<u8> {
    sluice_test_support::Geneve::new(src, dst, vni)
        .sport(51000)
        .wrap(inner)
}

/// The world's state, made through the CLI and dumped to `state.json`.
fn world_state(tmp: &TempDir) -> String {
    let h = host_with_vm1(tmp);
    let vm2 = tmp.file("vm2.json", vm_config("vm2", 6).to_string().as_bytes());
    ok(&h, &["create-vnic", "--config", &vm2, "--tap", "tap-vm2"]);
    ok(
        &h,
        &[
            "add-fw-rule",
            "vm2",
            "--direction",
            "in",
            "--priority",
            "10",
            "--action",
            "allow",
            "--protocol",
            "tcp",
            "--ports",
            "22",
        ],
    );
    for (ip, mac, host) in [
        ("10.0.0.5", "a8:40:25:00:00:05", "fd00:99::a"),
        ("10.0.0.6", "a8:40:25:00:00:06", "fd00:99::a"),
        ("10.0.0.7", "a8:40:25:00:00:07", "fd00:99::b"),
    ] {
        ok(&h, &["set-v2p", "7777", ip, mac, host]);
    }
    ok(&h, &["set-v2b", "7777", "0.0.0.0/0", "fd00:99::100"]);
    tmp.file("state.json", ok(&h, &["dump-state"]).as_bytes())
}

/// vm1: ARP for its gateway, a SYN to vm3 (host B) and one to vm2 (this
/// host). The uplink: vm3's SYN-ACK, after vm1's SYN (it passes only if
/// the replay keeps that order), and a SYN from vm3 to vm1's closed port
/// 80 (the firewall drops it).
fn inputs(tmp: &TempDir) -> (String, String) {
    let vm1 = tmp.path().join("vm1.pcap");
    write_pcap(
        &vm1,
        &[
            (
                at(0),
                arp_request(
                    VM1_MAC,
                    Ipv4Addr::new(10, 0, 0, 5),
                    Ipv4Addr::new(10, 0, 0, 1),
                ),
            ),
            (
                at(500),
                tcp(
                    (VM1_MAC, GW_MAC),
                    ([10, 0, 0, 5], 40000),
                    ([10, 0, 0, 7], 22),
                    1000,
                    None,
                ),
            ),
            (
                at(1000),
                tcp(
                    (VM1_MAC, GW_MAC),
                    ([10, 0, 0, 5], 40001),
                    ([10, 0, 0, 6], 22),
                    7000,
                    None,
                ),
            ),
        ],
    );
    let uplink = tmp.path().join("uplink.pcap");
    let syn_ack = tcp(
        (VM3_MAC, VM1_MAC),
        ([10, 0, 0, 7], 22),
        ([10, 0, 0, 5], 40000),
        5000,
        Some(1001),
    );
    let to_80 = tcp(
        (VM3_MAC, VM1_MAC),
        ([10, 0, 0, 7], 41000),
        ([10, 0, 0, 5], 80),
        9000,
        None,
    );
    write_pcap(
        &uplink,
        &[
            (at(750), geneve(&syn_ack, HOST_B, HOST_A, 7777)),
            (at(800), geneve(&to_80, HOST_B, HOST_A, 7777)),
        ],
    );
    (vm1.display().to_string(), uplink.display().to_string())
}

fn ipv4_tcp(f: &[u8]) -> ([u8; 4], [u8; 4], u16, u16, bool, bool) {
    let p = SlicedPacket::from_ethernet(f).expect("an Ethernet frame");
    let Some(NetSlice::Ipv4(ip)) = p.net else {
        panic!("not IPv4: {f:02x?}")
    };
    let Some(TransportSlice::Tcp(t)) = p.transport else {
        panic!("not TCP")
    };
    (
        ip.header().source(),
        ip.header().destination(),
        t.source_port(),
        t.destination_port(),
        t.syn(),
        t.ack(),
    )
}

#[test]
fn replay_runs_a_dumped_state_against_captures() {
    let tmp = TempDir::new("replay");
    let state = world_state(&tmp);
    let (vm1, uplink) = inputs(&tmp);
    let out_dir = tmp.path().join("out");
    let od = out_dir.display().to_string();
    // Offline: no --url, nothing listens, no token.
    let r = sluiceadm(
        &[
            "--json",
            "replay",
            "--state",
            &state,
            "--in",
            &format!("vm1={vm1}"),
            "--in",
            &format!("uplink={uplink}"),
            "--out-dir",
            &od,
        ],
        None,
    );
    assert_eq!(r.code, 0, "{r:?}");
    let j = r.json();
    assert_eq!(j["frames"], 5, "{j}");
    let ep = |name: &str| {
        j["endpoints"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == name)
            .unwrap_or_else(|| panic!("no endpoint {name}: {j}"))
            .clone()
    };
    assert_eq!(
        (
            ep("vm1")["frames_in"].as_u64(),
            ep("vm1")["frames_out"].as_u64()
        ),
        (Some(3), Some(2)),
        "{j}"
    );
    assert_eq!(
        (
            ep("uplink")["frames_in"].as_u64(),
            ep("uplink")["frames_out"].as_u64()
        ),
        (Some(2), Some(1)),
        "{j}"
    );
    assert_eq!(
        (
            ep("vm2")["frames_in"].as_u64(),
            ep("vm2")["frames_out"].as_u64()
        ),
        (Some(0), Some(1)),
        "{j}"
    );
    assert_eq!(j["switch"]["local"], 1, "vm1 to vm2 without the wire: {j}");
    let port = |name: &str| {
        j["ports"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap()
            .clone()
    };
    let vm1_stats = port("vm1");
    assert_eq!(vm1_stats["stats"]["out"]["packets"], 3, "{vm1_stats}");
    assert_eq!(vm1_stats["stats"]["in"]["packets"], 2, "{vm1_stats}");
    let drops = vm1_stats["drops"].as_array().unwrap();
    assert_eq!(drops.len(), 1, "the SYN to port 80: {vm1_stats}");
    assert_eq!(drops[0]["count"], 1);
    assert_eq!(port("vm2")["stats"]["in"]["forwarded"], 1, "{j}");

    // vm1 got its ARP reply and vm3's SYN-ACK, when they were sent.
    let got = read_pcap(&out_dir.join("vm1.out.pcap"));
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].0, at(0));
    let arp = SlicedPacket::from_ethernet(&got[0].1).unwrap();
    let Some(NetSlice::Arp(a)) = arp.net else {
        panic!("not ARP")
    };
    let a = a.to_packet().try_eth_ipv4().unwrap();
    assert_eq!(a.operation, etherparse::ArpOperation::REPLY);
    assert_eq!(a.sender_ipv4, [10, 0, 0, 1]);
    assert_eq!(a.sender_mac, GW_MAC);
    assert_eq!(a.target_mac, VM1_MAC);
    assert_eq!(&got[0].1[0..6], &VM1_MAC, "to vm1");
    assert_eq!(got[1].0, at(750));
    assert_eq!(
        ipv4_tcp(&got[1].1),
        ([10, 0, 0, 7], [10, 0, 0, 5], 22, 40000, true, true)
    );

    // The uplink got vm1's SYN to vm3 in a tunnel to host B.
    let wire = read_pcap(&out_dir.join("uplink.out.pcap"));
    assert_eq!(wire.len(), 1);
    assert_eq!(wire[0].0, at(500));
    let p = SlicedPacket::from_ethernet(&wire[0].1).unwrap();
    let Some(etherparse::LinkSlice::Ethernet2(eth)) = &p.link else {
        panic!("not Ethernet")
    };
    assert_eq!(eth.source(), api::replay::UNDERLAY_MAC);
    assert_eq!(eth.destination(), api::replay::NEXT_HOP_MAC);
    let Some(NetSlice::Ipv6(ip)) = &p.net else {
        panic!("not IPv6")
    };
    assert_eq!(ip.header().source_addr(), HOST_A);
    assert_eq!(ip.header().destination_addr(), HOST_B);
    let Some(TransportSlice::Udp(udp)) = &p.transport else {
        panic!("not UDP")
    };
    assert_eq!(udp.destination_port(), 6081);
    let g = udp.payload();
    assert_eq!(&g[2..4], &[0x65, 0x58], "Ethernet in Geneve");
    assert_eq!(
        u32::from_be_bytes([0, g[4], g[5], g[6]]),
        7777,
        "the VPC's VNI"
    );
    let inner = &g[8 + usize::from(g[0] & 0x3f) * 4..];
    assert_eq!(
        ipv4_tcp(inner),
        ([10, 0, 0, 5], [10, 0, 0, 7], 40000, 22, true, false)
    );
    assert_eq!(&inner[0..6], &VM3_MAC, "to vm3's MAC, from V2P");

    // vm2 had no input, and still its output: vm1's SYN.
    let to_vm2 = read_pcap(&out_dir.join("vm2.out.pcap"));
    assert_eq!(to_vm2.len(), 1);
    assert_eq!(to_vm2[0].0, at(1000));
    assert_eq!(ipv4_tcp(&to_vm2[0].1).0, [10, 0, 0, 5]);

    // The tables, run again: the same, and earlier outputs replaced.
    let r = sluiceadm(
        &[
            "replay",
            "--state",
            &state,
            "--in",
            &format!("vm1={vm1}"),
            "--out-dir",
            &od,
        ],
        None,
    );
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stdout
            .starts_with("Replayed 3 frames (1.000 s of capture)\n"),
        "{}",
        r.stdout
    );
    assert_eq!(
        header(&r.stdout, "ENDPOINT"),
        ["ENDPOINT", "FRAMES-IN", "FRAMES-OUT", "OUTPUT"]
    );
    let eps = rows(&r.stdout, "ENDPOINT");
    assert_eq!(
        eps[0][..4],
        [
            "uplink",
            "0",
            "1",
            &out_dir.join("uplink.out.pcap").display().to_string()
        ]
    );
    assert_eq!(
        eps[1][..3],
        ["vm1", "3", "1"],
        "no SYN-ACK without the uplink input"
    );
    assert_eq!(rows(&r.stdout, "PORT")[0][0], "vm1");
    assert!(r.stdout.contains("\nSwitch: "), "{}", r.stdout);
    assert_eq!(read_pcap(&out_dir.join("vm1.out.pcap")).len(), 1);
}

#[test]
fn replay_refuses_what_it_cannot_replay() {
    let tmp = TempDir::new("replay-bad");
    let state = world_state(&tmp);
    let (vm1, _) = inputs(&tmp);
    let od = tmp.path().join("out").display().to_string();
    let replay = |state: &str, input: &str| {
        let r = sluiceadm(
            &["replay", "--state", state, "--in", input, "--out-dir", &od],
            None,
        );
        assert_eq!(r.code, 1, "{r:?}");
        r.stderr
    };

    // Another state format version.
    let mut doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&state).unwrap()).unwrap();
    doc["version"] = serde_json::json!(99);
    let v99 = tmp.file("v99.json", doc.to_string().as_bytes());
    let e = replay(&v99, &format!("vm1={vm1}"));
    assert!(
        e.starts_with(&format!(
            "sluiceadm: error: {v99} has state format version 99; this sluiced reads version 1"
        )),
        "{e}"
    );

    let e = replay(&state, &format!("vm9={vm1}"));
    assert_eq!(
        e,
        format!("sluiceadm: error: 'vm9' is neither 'uplink' nor a port of {state} (its ports: vm1, vm2)\n")
    );
    let missing = tmp.path().join("missing.pcap").display().to_string();
    let e = replay(&state, &format!("vm1={missing}"));
    assert!(
        e.starts_with(&format!(
            "sluiceadm: error: input vm1={missing}: No such file"
        )),
        "{e}"
    );
    let junk = tmp.file("junk.pcap", b"this is not a capture at all");
    let e = replay(&state, &format!("uplink={junk}"));
    assert!(
        e.starts_with(&format!(
            "sluiceadm: error: input uplink={junk}: not a pcap capture"
        )),
        "{e}"
    );
    let mut sll = PcapWriter::with_header(
        Vec::new(),
        pcap_file::pcap::PcapHeader {
            datalink: pcap_file::DataLink::LINUX_SLL,
            ..Default::default()
        },
    )
    .unwrap();
    sll.write_packet(&PcapPacket::new(at(0), 4, &[0; 4]))
        .unwrap();
    let sll = tmp.file("sll.pcap", &sll.into_writer());
    let e = replay(&state, &format!("vm1={sll}"));
    assert_eq!(
        e,
        format!("sluiceadm: error: input vm1={sll}: link type 113 is not Ethernet (1)\n")
    );
    let twice = format!("vm1={vm1}");
    let r = sluiceadm(
        &[
            "replay",
            "--state",
            &state,
            "--in",
            &twice,
            "--in",
            &twice,
            "--out-dir",
            &od,
        ],
        None,
    );
    assert_eq!(r.code, 1);
    assert_eq!(
        r.stderr,
        "sluiceadm: error: 'vm1' is given more than one input capture\n"
    );
    let no_state = tmp.path().join("none.json").display().to_string();
    let e = replay(&no_state, &format!("vm1={vm1}"));
    assert!(
        e.starts_with(&format!(
            "sluiceadm: error: reading the state document {no_state}: "
        )),
        "{e}"
    );
    let e = replay(&vm1, &format!("vm1={vm1}"));
    assert!(e.contains("is not a sluice state document"), "{e}");

    // A capture cut in the middle of a frame: an error, not a panic.
    let whole = std::fs::read(&vm1).unwrap();
    let cut = tmp.file("cut.pcap", &whole[..whole.len() - 10]);
    let r = sluiceadm(
        &[
            "replay",
            "--state",
            &state,
            "--in",
            &format!("vm1={cut}"),
            "--out-dir",
            &od,
        ],
        None,
    );
    assert_eq!(r.code, 1, "{r:?}");
    let want =
        format!("sluiceadm: error: input vm1={cut}: frame 3: a truncated or malformed record");
    assert!(r.stderr.starts_with(&want), "{r:?}");
}

#[test]
fn replay_says_what_is_wrong_with_a_capture_an_out_dir_or_a_document() {
    let tmp = TempDir::new("replay-msgs");
    let state = world_state(&tmp);
    let (vm1, _) = inputs(&tmp);
    let od = tmp.path().join("out").display().to_string();
    let replay = |state: &str, input: &str, od: &str| {
        let r = sluiceadm(
            &["replay", "--state", state, "--in", input, "--out-dir", od],
            None,
        );
        assert_eq!(r.code, 1, "{r:?}");
        r.stderr
    };
    let dir = tmp.path().join("a-dir");
    std::fs::create_dir_all(&dir).unwrap();
    let dir = dir.display().to_string();
    assert_eq!(
        replay(&state, &format!("vm1={dir}"), &od),
        format!("sluiceadm: error: input vm1={dir}: is a directory, not a capture file\n")
    );
    let empty = tmp.file("empty.pcap", b"");
    assert_eq!(
        replay(&state, &format!("vm1={empty}"), &od),
        format!(
            "sluiceadm: error: input vm1={empty}: is empty (a pcap capture starts with a 24-byte header)\n"
        )
    );
    // A pcapng Section Header Block, as tshark writes by default.
    let mut shb = vec![
        0x0a, 0x0d, 0x0d, 0x0a, 28, 0, 0, 0, 0x4d, 0x3c, 0x2b, 0x1a, 1, 0, 0, 0,
    ];
    shb.extend_from_slice(&[0xff; 8]);
    shb.extend_from_slice(&[28, 0, 0, 0]);
    let ng = tmp.file("ng.pcapng", &shb);
    assert_eq!(
        replay(&state, &format!("vm1={ng}"), &od),
        format!(
            "sluiceadm: error: input vm1={ng}: is pcapng; replay reads pcap: convert it with `editcap -F pcap {ng} OUT.pcap`\n"
        )
    );
    let file_od = tmp.file("not-a-dir", b"x");
    assert_eq!(
        replay(&state, &format!("vm1={vm1}"), &file_od),
        format!("sluiceadm: error: --out-dir {file_od}: exists and is not a directory\n")
    );
    let arr = tmp.file("array.json", b"[1, 2]");
    let e = replay(&arr, &format!("vm1={vm1}"), &od);
    assert!(
        e.starts_with(&format!(
            "sluiceadm: error: {arr} is an array in JSON, not a state document"
        )),
        "{e}"
    );
    assert!(!e.contains("VersionOnly"), "{e}");
    let nov = tmp.file("noversion.json", b"{\"ports\": []}");
    assert_eq!(
        replay(&nov, &format!("vm1={vm1}"), &od),
        format!(
            "sluiceadm: error: {nov} has no \"version\": a state document starts {{\"version\": 1, ...}}\n"
        )
    );
}

#[test]
fn replay_verbose_tells_each_frames_fate() {
    let tmp = TempDir::new("replay-verbose");
    let state = world_state(&tmp);
    let (vm1, uplink) = inputs(&tmp);
    let od = tmp.path().join("out").display().to_string();
    let args = |json: bool| {
        let mut a = vec![];
        if json {
            a.push("--json".to_string());
        }
        a.extend(
            [
                "replay",
                "--verbose",
                "--state",
                &state,
                "--in",
                &format!("vm1={vm1}"),
                "--in",
                &format!("uplink={uplink}"),
                "--out-dir",
                &od,
            ]
            .map(String::from),
        );
        a
    };
    let a = args(true);
    let r = sluiceadm(&a.iter().map(String::as_str).collect::<Vec<_>>(), None);
    assert_eq!(r.code, 0, "{r:?}");
    let j = r.json();
    let fates: Vec<(String, u64, String, String, String)> = j["frames_fate"]
        .as_array()
        .expect("frames_fate")
        .iter()
        .map(|f| {
            let drops: Vec<String> = f["drops"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| format!("{} {} {}", d["at"], d["reason"], d["layer"]))
                .collect();
            (
                f["endpoint"].as_str().unwrap().to_string(),
                f["frame"].as_u64().unwrap(),
                f["fate"].as_str().unwrap().to_string(),
                f["to"].to_string(),
                drops.join(";"),
            )
        })
        .collect();
    let row = |e: &str, n: u64, fate: &str, to: &str, drops: &str| {
        (
            e.to_string(),
            n,
            fate.to_string(),
            to.to_string(),
            drops.to_string(),
        )
    };
    assert_eq!(
        fates,
        vec![
            // ARP for the gateway: answered by the gateway.
            row("vm1", 1, "hairpinned", r#"["vm1"]"#, ""),
            // SYN to vm3 on host B: into a tunnel.
            row("vm1", 2, "forwarded", r#"["uplink"]"#, ""),
            // vm3's SYN-ACK: to vm1.
            row("uplink", 1, "forwarded", r#"["vm1"]"#, ""),
            // A SYN to vm1's closed port 80: its firewall drops it.
            row(
                "uplink",
                2,
                "dropped",
                "[]",
                r#""vm1" "default_denied" "firewall (in)""#
            ),
            // SYN to vm2 on this host: delivered without the wire.
            row("vm1", 3, "forwarded", r#"["vm2"]"#, ""),
        ],
        "{}",
        j["frames_fate"]
    );
    let a = args(false);
    let r = sluiceadm(&a.iter().map(String::as_str).collect::<Vec<_>>(), None);
    assert_eq!(r.code, 0, "{r:?}");
    let t = rows(&r.stdout, "FROM");
    assert_eq!(t.len(), 5, "{}", r.stdout);
    assert_eq!(t[3][3], "dropped", "{}", r.stdout);
    assert!(
        r.stdout.contains("default_denied at vm1 firewall (in)"),
        "{}",
        r.stdout
    );
}

/// The README's walkthrough: the example state `pcaps/vpc.state.json`
/// (vm1 of the replay captures, on host A) replays the SSH capture pair.
#[test]
fn the_example_state_replays_the_vpc_tcp_captures() {
    let tmp = TempDir::new("replay-example");
    let pcaps = Path::new(env!("CARGO_MANIFEST_DIR")).join("../pcaps");
    let p = |f: &str| pcaps.join(f).display().to_string();
    let od = tmp.path().join("out").display().to_string();
    let r = sluiceadm(
        &[
            "--json",
            "replay",
            "--verbose",
            "--state",
            &p("vpc.state.json"),
            "--in",
            &format!("vm1={}", p("vpc_tcp.guest.in.pcap")),
            "--in",
            &format!("uplink={}", p("vpc_tcp.uplink.in.pcap")),
            "--out-dir",
            &od,
        ],
        None,
    );
    assert_eq!(r.code, 0, "{r:?}");
    let j = r.json();
    let ep = |n: &str| {
        j["endpoints"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == n)
            .cloned()
            .unwrap()
    };
    assert_eq!(
        (
            ep("vm1")["frames_in"].as_u64(),
            ep("uplink")["frames_out"].as_u64()
        ),
        (Some(5), Some(5))
    );
    assert_eq!(
        (
            ep("uplink")["frames_in"].as_u64(),
            ep("vm1")["frames_out"].as_u64()
        ),
        (Some(4), Some(4))
    );
    let fates = j["frames_fate"].as_array().unwrap();
    assert_eq!(fates.len(), 9);
    assert!(
        fates.iter().all(|f| f["fate"] == "forwarded"),
        "{}",
        j["frames_fate"]
    );
    // What went to vm1 is what host B's vm2 sent it, decapsulated.
    let out = read_pcap(&tmp.path().join("out/vm1.out.pcap"));
    let (src, dst, sport, dport, _, _) = ipv4_tcp(&out[0].1);
    assert_eq!((src, dst, sport), ([10, 0, 0, 6], [10, 0, 0, 5], 22));
    assert!(dport > 1024);
}
