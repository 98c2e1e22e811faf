//! One test per scenario: replay it, then check what became of every
//! input packet, the drop counts, every output frame field by field
//! (etherparse, checksums included) and tshark's dissection of each
//! output capture.

use crate::gen::{
    HTTP_GET, HTTP_GET_INDEX, HTTP_OK, HTTP_OK_INDEX, SSH_CLIENT_BANNER, SSH_SERVER_BANNER,
};
use crate::harness::{replay, Outcome, Replay};
use crate::pcapio::Packet;
use crate::row;
use crate::tshark;
use crate::view::{self, Frame, Tunnel, L4};
use crate::world::*;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

fn ip(a: Ipv4Addr) -> IpAddr {
    IpAddr::V4(a)
}

/// Checks common to every replay: each input accounted for once (an
/// output or a counted drop), outputs in time order at their input's
/// time, and the drop counts exactly `want`.
fn check_accounting(r: &Replay, want_drops: &[(&str, u64)]) {
    let ctx = r.describe();
    let forwarded = r
        .outcomes
        .iter()
        .filter(|o| **o == Outcome::Forwarded)
        .count();
    let hairpins = r
        .outcomes
        .iter()
        .filter(|o| **o == Outcome::Hairpinned)
        .count();
    assert_eq!(
        r.guest_out.len() + r.uplink_out.len(),
        forwarded + hairpins,
        "every forwarded or answered input makes one output; {ctx}"
    );
    let want: BTreeMap<String, u64> = want_drops
        .iter()
        .map(|(n, c)| (n.to_string(), *c))
        .collect();
    assert_eq!(r.drops, want, "drop counts by reason; {ctx}");
    let mut dropped: BTreeMap<String, u64> = BTreeMap::new();
    for o in &r.outcomes {
        if let Outcome::Dropped(reason) = o {
            *dropped.entry(reason.clone()).or_default() += 1;
        }
    }
    assert_eq!(dropped, want, "each drop counted once; {ctx}");
    for out in [&r.guest_out, &r.uplink_out] {
        assert!(
            out.windows(2).all(|w| w[0].ts <= w[1].ts),
            "outputs in time order; {ctx}"
        );
        for p in out.iter() {
            assert!(
                r.inputs.iter().any(|i| i.ts == p.ts),
                "an output at an input's time; {ctx}"
            );
        }
    }
}

/// Ends a test: the replay's temp folder goes with it.
fn done(r: Replay) {
    let dir = r.dir.path().to_path_buf();
    for f in ["guest.out.pcap", "uplink.out.pcap", "drops.json"] {
        assert!(dir.join(f).is_file(), "{f} written");
    }
    drop(r);
    assert!(!dir.exists(), "{} removed", dir.display());
}

/// The frames one output capture holds.
fn frames(out: &[Packet]) -> Vec<Frame> {
    out.iter().map(|p| view::frame(&p.frame)).collect()
}

/// What host A sends on the underlay: from its NIC to the next hop, from
/// its underlay address, hop limit 64, to `dst`, in `vni`. Boundary
/// traffic carries sluice's external option, VPC traffic no option.
fn tunnel_from_a(p: &Packet, dst: std::net::Ipv6Addr, vni: u32) -> Tunnel {
    let t = view::tunnel(&p.frame);
    assert_eq!(
        (t.src_mac, t.dst_mac),
        (HOST_A_NIC_MAC, UNDERLAY_ROUTER_MAC),
        "outer Ethernet"
    );
    assert_eq!((t.outer_src, t.outer_dst), (HOST_A, dst), "outer IPv6");
    assert_eq!(t.hop_limit, 64, "outer hop limit");
    assert_eq!(t.vni, vni, "VNI");
    assert_ne!(t.sport, 0, "an entropy source port");
    let want: &[u8] = if dst == BOUNDARY {
        &EXTERNAL_OPTION
    } else {
        &[]
    };
    assert_eq!(t.options, want, "Geneve options");
    t
}

/// The input an encapsulated input carried.
fn inner_of(frame: &[u8]) -> Vec<u8> {
    view::tunnel(frame).inner
}

/// `frame` with its Ethernet addresses replaced.
fn with_macs(frame: &[u8], src: [u8; 6], dst: [u8; 6]) -> Vec<u8> {
    let mut f = frame.to_vec();
    f[0..6].copy_from_slice(&dst);
    f[6..12].copy_from_slice(&src);
    f
}

/// The TCP segment `got` is `sent` with only addresses and ports changed:
/// same sequence numbers, flags, window, options and payload.
fn same_segment(got: &Frame, sent: &Frame) {
    let (g, s) = (got.tcp(), sent.tcp());
    assert_eq!(
        (
            g.sequence_number,
            g.acknowledgment_number,
            g.window_size,
            g.options.as_slice()
        ),
        (
            s.sequence_number,
            s.acknowledgment_number,
            s.window_size,
            s.options.as_slice()
        ),
        "TCP fields kept"
    );
    assert_eq!(got.tcp_flags(), sent.tcp_flags(), "TCP flags kept");
    assert_eq!(got.payload, sent.payload, "payload kept");
}

// ---------------------------------------------------------------- dhcp

#[test]
fn dhcp() {
    let r = replay("dhcp");
    let ctx = r.describe();
    assert_eq!(r.outcomes, vec![Outcome::Hairpinned; 3], "{ctx}");
    check_accounting(&r, &[]);
    assert!(r.uplink_out.is_empty(), "nothing leaves for the underlay");
    assert_eq!(r.flows, 0, "hairpins make no flows");

    let replies = frames(&r.guest_out);
    // (message type, xid, broadcast?, ciaddr)
    let want = [
        (2u8, 0x3903_f326u32, true, Ipv4Addr::UNSPECIFIED),
        (5, 0x3903_f326, true, Ipv4Addr::UNSPECIFIED),
        (5, 0x5a1c_07e2, false, VM1_IP),
    ];
    assert_eq!(replies.len(), want.len(), "{ctx}");
    for (f, (ty, xid, bcast, ciaddr)) in replies.iter().zip(want) {
        let (dst_mac, dst_ip) = if bcast {
            (BROADCAST_MAC, Ipv4Addr::BROADCAST)
        } else {
            (VM1_MAC, VM1_IP)
        };
        assert_eq!((f.src_mac, f.dst_mac), (GW_MAC, dst_mac), "{ctx}");
        assert_eq!((f.src_ip(), f.dst_ip()), (ip(GW_IP), ip(dst_ip)));
        assert_eq!(f.udp(), (67, 68));
        let d = view::dhcp(&f.payload);
        assert_eq!(
            (d.op, d.xid, d.ciaddr, d.yiaddr, d.chaddr),
            (2, xid, ciaddr, VM1_IP, VM1_MAC),
            "BOOTREPLY for vm1"
        );
        assert!(f.payload.len() >= 300, "at least 300 octets of BOOTP");
        assert_eq!(d.opt(53), Some(&[ty][..]), "message type");
        assert_eq!(d.opt(54), Some(&GW_IP.octets()[..]), "server id");
        assert_eq!(d.opt(1), Some(&[255, 255, 255, 0][..]), "subnet mask");
        assert_eq!(d.opt(3), Some(&GW_IP.octets()[..]), "router");
        assert_eq!(d.opt(6), Some(&DNS_IP.octets()[..]), "DNS");
        assert_eq!(d.opt(15), Some(&b"vpc.internal"[..]), "domain");
        assert_eq!(d.opt(12), Some(&b"vm1"[..]), "host name");
        assert_eq!(d.opt(26), Some(&1500u16.to_be_bytes()[..]), "MTU");
        assert_eq!(d.opt(51), Some(&86_400u32.to_be_bytes()[..]), "lease");
        assert_eq!(d.opt(58), Some(&43_200u32.to_be_bytes()[..]), "T1");
        assert_eq!(d.opt(59), Some(&75_600u32.to_be_bytes()[..]), "T2");
        let mut client_id = vec![1];
        client_id.extend_from_slice(&VM1_MAC);
        assert_eq!(d.opt(61), Some(&client_id[..]), "client id echoed");
    }

    // Message type, Ethernet and IP destination.
    let reply = |ty: u8, eth_dst: &str, ip_dst: &str| {
        row![
            "eth:ethertype:ip:udp:dhcp",
            "a8:40:25:ff:ff:01",
            eth_dst,
            GW_IP,
            ip_dst,
            67,
            68,
            ty,
            VM1_IP,
            GW_IP
        ]
    };
    tshark::expect(
        &r.out_path(Endpoint::Guest),
        &[
            "frame.protocols",
            "eth.src",
            "eth.dst",
            "ip.src",
            "ip.dst",
            "udp.srcport",
            "udp.dstport",
            "dhcp.option.dhcp",
            "dhcp.ip.your",
            "dhcp.option.router",
        ],
        &[
            reply(2, "ff:ff:ff:ff:ff:ff", "255.255.255.255"),
            reply(5, "ff:ff:ff:ff:ff:ff", "255.255.255.255"),
            reply(5, "a8:40:25:00:00:01", "10.0.0.5"),
        ],
    );
    tshark::expect(&r.out_path(Endpoint::Uplink), &["frame.protocols"], &[]);
    done(r);
}

// ------------------------------------------------------------ arp_ping

#[test]
fn arp_ping() {
    let r = replay("arp_ping");
    let ctx = r.describe();
    assert_eq!(r.outcomes, vec![Outcome::Hairpinned; 5], "{ctx}");
    check_accounting(&r, &[]);
    assert!(r.uplink_out.is_empty());
    assert_eq!(r.flows, 0, "hairpins make no flows");

    let sent: Vec<Frame> = r.inputs.iter().map(|i| view::frame(&i.frame)).collect();
    let got = frames(&r.guest_out);
    assert_eq!(got.len(), 5, "{ctx}");
    for (i, target) in [(0, GW_IP), (4, VM2_IP)] {
        let f = &got[i];
        assert_eq!(
            (f.src_mac, f.dst_mac),
            (GW_MAC, VM1_MAC),
            "ARP reply to vm1"
        );
        let a = f.arp.as_ref().expect("ARP");
        assert_eq!(a.operation, etherparse::ArpOperation::REPLY);
        assert_eq!(
            (a.sender_mac, a.sender_ipv4, a.target_mac, a.target_ipv4),
            (GW_MAC, target.octets(), VM1_MAC, VM1_IP.octets()),
            "{target} is at the gateway's MAC"
        );
    }
    for seq in 1u16..=3 {
        let (f, req) = (&got[usize::from(seq)], &sent[usize::from(seq)]);
        assert_eq!((f.src_mac, f.dst_mac), (GW_MAC, VM1_MAC));
        assert_eq!((f.src_ip(), f.dst_ip()), (ip(GW_IP), ip(VM1_IP)));
        match f.l4 {
            L4::Echo { ty, id, seq: s } => assert_eq!((ty, id, s), (0, 0x2f1a, seq)),
            ref other => panic!("not an echo reply: {other:?}"),
        }
        assert_eq!(f.payload, req.payload, "the echo data returned");
    }

    let names = [
        "frame.protocols",
        "arp.opcode",
        "arp.src.hw_mac",
        "arp.src.proto_ipv4",
        "arp.dst.proto_ipv4",
        "ip.src",
        "ip.dst",
        "icmp.type",
        "icmp.seq",
    ];
    let arp = |target: Ipv4Addr| {
        row![
            "eth:ethertype:arp",
            2,
            "a8:40:25:ff:ff:01",
            target,
            VM1_IP,
            "",
            "",
            "",
            ""
        ]
    };
    let pong = |seq: u16| {
        row![
            "eth:ethertype:ip:icmp:data",
            "",
            "",
            "",
            "",
            GW_IP,
            VM1_IP,
            0,
            seq
        ]
    };
    tshark::expect(
        &r.out_path(Endpoint::Guest),
        &names,
        &[arp(GW_IP), pong(1), pong(2), pong(3), arp(VM2_IP)],
    );
    tshark::expect(&r.out_path(Endpoint::Uplink), &["frame.protocols"], &[]);
    done(r);
}

// ------------------------------------------------------------- vpc_tcp

const UPLINK_FIELDS: [&str; 11] = [
    "frame.protocols",
    "ipv6.src",
    "ipv6.dst",
    "udp.dstport",
    "geneve.vni",
    "geneve.option.class",
    "geneve.option.type",
    "ip.src",
    "ip.dst",
    "tcp.srcport",
    "tcp.dstport",
];

#[test]
fn vpc_tcp() {
    let r = replay("vpc_tcp");
    let ctx = r.describe();
    assert!(r.outcomes.iter().all(|o| *o == Outcome::Forwarded), "{ctx}");
    check_accounting(&r, &[]);
    assert_eq!(r.flows, 1, "one flow, both directions; {ctx}");

    // vm1 → vm2: tunnelled to host B, inner frame unchanged but for the
    // MACs (routed by the gateway to vm2's MAC).
    let sent = r.sent_by(Endpoint::Guest);
    assert_eq!(r.uplink_out.len(), sent.len(), "{ctx}");
    let mut sports = Vec::new();
    for (p, input) in r.uplink_out.iter().zip(&sent) {
        let t = tunnel_from_a(p, HOST_B, VPC);
        sports.push(t.sport);
        assert_eq!(
            t.inner,
            with_macs(&input.frame, GW_MAC, VM2_MAC),
            "inner frame as sent, addressed gateway → vm2"
        );
        let f = view::frame(&t.inner);
        assert_eq!((f.src_ip(), f.dst_ip()), (ip(VM1_IP), ip(VM2_IP)));
        assert_eq!(f.ports(), (40_022, 22));
    }
    assert!(
        sports.windows(2).all(|w| w[0] == w[1]),
        "one flow, one outer source port: {sports:?}"
    );
    // vm2 → vm1: decapsulated, addressed gateway → vm1.
    let arrived = r.sent_by(Endpoint::Uplink);
    assert_eq!(r.guest_out.len(), arrived.len(), "{ctx}");
    for (p, input) in r.guest_out.iter().zip(&arrived) {
        let f = view::frame(&p.frame);
        assert_eq!((f.src_mac, f.dst_mac), (GW_MAC, VM1_MAC));
        assert_eq!((f.src_ip(), f.dst_ip()), (ip(VM2_IP), ip(VM1_IP)));
        assert_eq!(f.ports(), (22, 40_022));
        assert_eq!(p.frame, inner_of(&input.frame), "the inner frame, whole");
    }
    let flags: Vec<String> = frames(&r.guest_out).iter().map(Frame::tcp_flags).collect();
    assert_eq!(flags, ["SA", "AP", "A", "AF"]);
    assert_eq!(
        view::frame(&r.guest_out[1].frame).payload,
        SSH_SERVER_BANNER
    );
    assert_eq!(
        view::frame(&inner_of(&r.uplink_out[2].frame)).payload,
        SSH_CLIENT_BANNER
    );

    let out = |proto: &str| {
        row![
            format!("eth:ethertype:ipv6:udp:geneve:eth:ethertype:ip:tcp{proto}"),
            HOST_A,
            HOST_B,
            GENEVE_PORT,
            VPC,
            "",
            "",
            VM1_IP,
            VM2_IP,
            40_022,
            22
        ]
    };
    tshark::expect(
        &r.out_path(Endpoint::Uplink),
        &UPLINK_FIELDS,
        &[out(""), out(""), out(":ssh*"), out(""), out("")],
    );
    let back = |proto: &str| {
        row![
            format!("eth:ethertype:ip:tcp{proto}"),
            VM2_IP,
            VM1_IP,
            22,
            40_022,
            ""
        ]
    };
    tshark::expect(
        &r.out_path(Endpoint::Guest),
        &[
            "frame.protocols",
            "ip.src",
            "ip.dst",
            "tcp.srcport",
            "tcp.dstport",
            "geneve.vni",
        ],
        &[back(""), back(":ssh*"), back(""), back("")],
    );
    done(r);
}

// ---------------------------------------------------------------- snat

#[test]
fn snat() {
    let r = replay("snat");
    let ctx = r.describe();
    assert!(r.outcomes.iter().all(|o| *o == Outcome::Forwarded), "{ctx}");
    check_accounting(&r, &[]);
    assert_eq!(r.flows, 2, "DNS and HTTP; {ctx}");

    // Out: to the boundary, marked external, from the SNAT address: the
    // DNS flow on the first port, the HTTP flow on the next.
    let sent = r.sent_by(Endpoint::Guest);
    assert_eq!(r.uplink_out.len(), sent.len(), "{ctx}");
    let mut sports = Vec::new();
    for (i, (p, input)) in r.uplink_out.iter().zip(&sent).enumerate() {
        let t = tunnel_from_a(p, BOUNDARY, VPC);
        sports.push(t.sport);
        let f = view::frame(&t.inner);
        let s = view::frame(&input.frame);
        assert_eq!(
            (f.src_mac, f.dst_mac),
            (GW_MAC, GW_MAC),
            "a boundary is reached through the gateway"
        );
        assert_eq!(f.src_ip(), ip(SNAT_IP), "packet {}: SNAT source", i + 1);
        assert_eq!(f.dst_ip(), s.dst_ip(), "destination kept");
        let ext_port = if i == 0 {
            SNAT_FIRST_PORT
        } else {
            SNAT_FIRST_PORT + 1
        };
        assert_eq!(
            f.ports(),
            (ext_port, s.ports().1),
            "packet {}: SNAT port",
            i + 1
        );
        assert!((SNAT_FIRST_PORT..=SNAT_LAST_PORT).contains(&ext_port));
        if i == 0 {
            assert_eq!(f.payload, s.payload, "DNS query kept");
        } else {
            same_segment(&f, &s);
        }
    }
    assert_eq!(
        view::frame(&inner_of(&r.uplink_out[3].frame)).payload,
        HTTP_GET
    );
    assert!(
        sports[1..].windows(2).all(|w| w[0] == w[1]),
        "one flow, one outer source port: {sports:?}"
    );
    // In: back to vm1's address and port.
    let arrived = r.sent_by(Endpoint::Uplink);
    assert_eq!(r.guest_out.len(), arrived.len(), "{ctx}");
    for (i, (p, input)) in r.guest_out.iter().zip(&arrived).enumerate() {
        let f = view::frame(&p.frame);
        let s = view::frame(&inner_of(&input.frame));
        assert_eq!((f.src_mac, f.dst_mac), (GW_MAC, VM1_MAC));
        assert_eq!((f.src_ip(), f.dst_ip()), (s.src_ip(), ip(VM1_IP)));
        let guest_port = if i == 0 { 53_001 } else { 41_234 };
        assert_eq!(f.ports(), (s.ports().0, guest_port), "packet {}", i + 1);
        if i == 0 {
            assert_eq!(f.payload, s.payload, "DNS answer kept");
        } else {
            same_segment(&f, &s);
        }
    }
    assert_eq!(view::frame(&r.guest_out[3].frame).payload, HTTP_OK);

    let names = [
        "frame.protocols",
        "ipv6.dst",
        "geneve.vni",
        "geneve.option.class",
        "geneve.option.type",
        "ip.src",
        "ip.dst",
        "udp.srcport",
        "tcp.srcport",
        "tcp.dstport",
    ];
    let class = u16::from_be_bytes([EXTERNAL_OPTION[0], EXTERNAL_OPTION[1]]);
    // udp.srcport: the outer one (the port's entropy: any), then for DNS
    // the inner one, the SNAT port.
    let dns = row![
        "eth:ethertype:ipv6:udp:geneve:eth:ethertype:ip:udp:dns",
        BOUNDARY,
        VPC,
        class,
        1,
        SNAT_IP,
        RESOLVER,
        format!("*,{SNAT_FIRST_PORT}"),
        "",
        ""
    ];
    let http = |proto: &str| {
        row![
            format!("eth:ethertype:ipv6:udp:geneve:eth:ethertype:ip:tcp{proto}"),
            BOUNDARY,
            VPC,
            class,
            1,
            SNAT_IP,
            WEB_SERVER,
            "*",
            SNAT_FIRST_PORT + 1,
            80
        ]
    };
    tshark::expect(
        &r.out_path(Endpoint::Uplink),
        &names,
        &[
            dns,
            http(""),
            http(""),
            http(":http*"),
            http(""),
            http(""),
            http(""),
        ],
    );
    let back = |l4: &str, dport: (u16, &str)| {
        let (udp, tcp) = if l4.starts_with("udp") {
            (dport.0.to_string(), String::new())
        } else {
            (String::new(), dport.0.to_string())
        };
        row![
            format!("eth:ethertype:ip:{l4}{}", dport.1),
            VM1_IP,
            udp,
            tcp
        ]
    };
    tshark::expect(
        &r.out_path(Endpoint::Guest),
        &["frame.protocols", "ip.dst", "udp.dstport", "tcp.dstport"],
        &[
            back("udp", (53_001, ":dns")),
            back("tcp", (41_234, "")),
            back("tcp", (41_234, "")),
            back("tcp", (41_234, ":http*")),
            back("tcp", (41_234, "")),
        ],
    );
    done(r);
}

// --------------------------------------------------------- floating_in

#[test]
fn floating_in() {
    let r = replay("floating_in");
    let ctx = r.describe();
    assert!(r.outcomes.iter().all(|o| *o == Outcome::Forwarded), "{ctx}");
    check_accounting(&r, &[]);
    assert_eq!(r.flows, 1, "{ctx}");

    // In: the floating IP leads to vm1's private address, port kept.
    let arrived = r.sent_by(Endpoint::Uplink);
    assert_eq!(r.guest_out.len(), arrived.len(), "{ctx}");
    for (p, input) in r.guest_out.iter().zip(&arrived) {
        let f = view::frame(&p.frame);
        let s = view::frame(&inner_of(&input.frame));
        assert_eq!((f.src_mac, f.dst_mac), (GW_MAC, VM1_MAC));
        assert_eq!((f.src_ip(), f.dst_ip()), (ip(WEB_CLIENT), ip(VM1_IP)));
        assert_eq!(f.ports(), (55_312, 80));
        same_segment(&f, &s);
    }
    assert_eq!(view::frame(&r.guest_out[2].frame).payload, HTTP_GET_INDEX);
    // Out: the answers leave from the floating IP, to the boundary.
    let sent = r.sent_by(Endpoint::Guest);
    assert_eq!(r.uplink_out.len(), sent.len(), "{ctx}");
    let mut sports = Vec::new();
    for (p, input) in r.uplink_out.iter().zip(&sent) {
        let t = tunnel_from_a(p, BOUNDARY, VPC);
        sports.push(t.sport);
        let f = view::frame(&t.inner);
        assert_eq!((f.src_mac, f.dst_mac), (GW_MAC, GW_MAC));
        assert_eq!((f.src_ip(), f.dst_ip()), (ip(FLOATING_IP), ip(WEB_CLIENT)));
        assert_eq!(f.ports(), (80, 55_312), "1:1, ports untouched");
        same_segment(&f, &view::frame(&input.frame));
    }
    assert_eq!(
        view::frame(&inner_of(&r.uplink_out[2].frame)).payload,
        HTTP_OK_INDEX
    );
    assert!(
        sports.windows(2).all(|w| w[0] == w[1]),
        "one flow, one outer source port: {sports:?}"
    );

    let class = u16::from_be_bytes([EXTERNAL_OPTION[0], EXTERNAL_OPTION[1]]);
    let out = |proto: &str| {
        row![
            format!("eth:ethertype:ipv6:udp:geneve:eth:ethertype:ip:tcp{proto}"),
            HOST_A,
            BOUNDARY,
            GENEVE_PORT,
            VPC,
            class,
            1,
            FLOATING_IP,
            WEB_CLIENT,
            80,
            55_312
        ]
    };
    tshark::expect(
        &r.out_path(Endpoint::Uplink),
        &UPLINK_FIELDS,
        &[out(""), out(""), out(":http*"), out("")],
    );
    let back = |proto: &str| {
        row![
            format!("eth:ethertype:ip:tcp{proto}"),
            WEB_CLIENT,
            VM1_IP,
            55_312,
            80
        ]
    };
    tshark::expect(
        &r.out_path(Endpoint::Guest),
        &[
            "frame.protocols",
            "ip.src",
            "ip.dst",
            "tcp.srcport",
            "tcp.dstport",
        ],
        &[
            back(""),
            back(""),
            back(":http*"),
            back(""),
            back(""),
            back(""),
        ],
    );
    done(r);
}

// ------------------------------------------------------- firewall_deny

#[test]
fn firewall_deny() {
    let r = replay("firewall_deny");
    let ctx = r.describe();
    let denied = Outcome::dropped("default_denied");
    assert_eq!(
        r.outcomes,
        [vec![denied.clone(); 6], vec![Outcome::Forwarded]].concat(),
        "only HTTPS from the VPC subnet gets in; {ctx}"
    );
    check_accounting(&r, &[("default_denied", 6)]);
    assert_eq!(r.flows, 1, "denied SYNs leave no flow behind; {ctx}");
    assert!(r.uplink_out.is_empty(), "nothing answers a denied SYN");

    let got = frames(&r.guest_out);
    assert_eq!(got.len(), 1, "{ctx}");
    let f = &got[0];
    assert_eq!((f.src_mac, f.dst_mac), (GW_MAC, VM1_MAC));
    assert_eq!((f.src_ip(), f.dst_ip()), (ip(VM2_IP), ip(VM1_IP)));
    assert_eq!(f.ports(), (51_520, 443));
    assert_eq!(f.tcp_flags(), "S");

    tshark::expect(
        &r.out_path(Endpoint::Guest),
        &[
            "frame.protocols",
            "ip.src",
            "ip.dst",
            "tcp.srcport",
            "tcp.dstport",
            "tcp.flags.syn",
        ],
        &[row!["eth:ethertype:ip:tcp", VM2_IP, VM1_IP, 51_520, 443, 1]],
    );
    tshark::expect(&r.out_path(Endpoint::Uplink), &["frame.protocols"], &[]);
    done(r);
}

// --------------------------------------------------------------- spoof

#[test]
fn spoof() {
    let r = replay("spoof");
    let ctx = r.describe();
    let d = Outcome::dropped;
    assert_eq!(
        r.outcomes_of(Endpoint::Guest),
        [
            &d("spoofed_source_mac"),
            &d("spoofed_source_ip"),
            &d("multicast"),
            &d("multicast"),
            &Outcome::Forwarded,
        ],
        "{ctx}"
    );
    assert_eq!(
        r.outcomes_of(Endpoint::Uplink),
        [
            &d("spoofed_overlay_source"),
            &d("wrong_vni"),
            &d("malformed.not_geneve"),
            &d("malformed.not_geneve"),
        ],
        "{ctx}"
    );
    check_accounting(
        &r,
        &[
            ("malformed.not_geneve", 2),
            ("multicast", 2),
            ("spoofed_overlay_source", 1),
            ("spoofed_source_ip", 1),
            ("spoofed_source_mac", 1),
            ("wrong_vni", 1),
        ],
    );
    assert!(r.guest_out.is_empty(), "nothing reaches vm1; {ctx}");
    // The one proper frame, after all that, still goes out.
    assert_eq!(r.uplink_out.len(), 1, "{ctx}");
    let t = tunnel_from_a(&r.uplink_out[0], HOST_B, VPC);
    let f = view::frame(&t.inner);
    assert_eq!((f.src_mac, f.dst_mac), (GW_MAC, VM2_MAC));
    assert_eq!((f.src_ip(), f.dst_ip()), (ip(VM1_IP), ip(VM2_IP)));
    assert_eq!(f.ports(), (40_100, 22));

    tshark::expect(
        &r.out_path(Endpoint::Uplink),
        &UPLINK_FIELDS,
        &[row![
            "eth:ethertype:ipv6:udp:geneve:eth:ethertype:ip:tcp",
            HOST_A,
            HOST_B,
            GENEVE_PORT,
            VPC,
            "",
            "",
            VM1_IP,
            VM2_IP,
            40_100,
            22
        ]],
    );
    tshark::expect(&r.out_path(Endpoint::Guest), &["frame.protocols"], &[]);
    done(r);
}
