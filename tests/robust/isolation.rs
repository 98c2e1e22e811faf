//! Tenant isolation as properties, over generated packets.
//!
//! One switch (one worker) holds two ports with the same MAC and the same
//! addresses, vm5 of VPC A and vm5 of VPC B. For any frame guest A sends,
//! whatever leaves is either a reply to guest A (a gateway hairpin) or a
//! Geneve frame of VNI A whose inner source is guest A's own MAC and IP
//! (or its SNAT address); anything else is a drop counted with a reason.
//! For any Geneve frame of VNI A arriving from the underlay, nothing ever
//! reaches guest B.
//!
//! (That the composed transform of a flow equals the layers' transforms
//! applied one by one is a property of the engine, checked by
//! `composed_transforms_equal_layer_by_layer` in
//! `dataplane/tests/scenarios/props.rs`.)

use crate::common::*;
use dataplane::Direction;
use etherparse::{Icmpv6Type, PacketBuilder};
use proptest::prelude::*;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use vmm_net::backend::Wire;
use vmm_net::switch::Switch;

const GUEST: u8 = 5;
const INTERNET4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);
const BROADCAST: [u8; 6] = [0xff; 6];

/// What a generated frame carries.
#[derive(Clone, Copy, Debug)]
enum Kind {
    Arp {
        op: u16,
    },
    Tcp {
        flags: u8,
    },
    Udp,
    Icmp,
    Dhcp,
    /// ICMPv6 of this type (133 RS, 135 NS, 128 echo, or any).
    Icmp6 {
        ty: u8,
    },
}

#[derive(Clone, Debug)]
struct Spec {
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    kind: Kind,
    v6: bool,
    src4: Ipv4Addr,
    dst4: Ipv4Addr,
    src6: Ipv6Addr,
    dst6: Ipv6Addr,
    sport: u16,
    dport: u16,
    payload: Vec<u8>,
    /// A byte to overwrite after building: (position, value).
    flip: Option<(usize, u8)>,
}

fn mac_from(own: [u8; 6]) -> impl Strategy<Value = [u8; 6]> {
    prop_oneof![4 => Just(own), 1 => Just(mac(6)), 1 => any::<[u8; 6]>()]
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        1 => (1u16..=2).prop_map(|op| Kind::Arp { op }),
        3 => any::<u8>().prop_map(|flags| Kind::Tcp { flags }),
        3 => Just(Kind::Udp),
        1 => Just(Kind::Icmp),
        1 => Just(Kind::Dhcp),
        2 => prop_oneof![Just(133u8), Just(135), Just(128), any::<u8>()]
            .prop_map(|ty| Kind::Icmp6 { ty }),
    ]
}

fn spec(own_last: u8) -> impl Strategy<Value = Spec> {
    let src4 = prop_oneof![4 => Just(v4(own_last)), 1 => any::<[u8; 4]>().prop_map(Ipv4Addr::from)];
    let dst4 = prop_oneof![
        Just(v4(PEER_LAST)),
        Just(v4(1)),
        Just(v4(own_last)),
        Just(INTERNET4),
        Just(Ipv4Addr::BROADCAST),
        any::<[u8; 4]>().prop_map(Ipv4Addr::from),
    ];
    let src6 = prop_oneof![
        4 => Just(v6(own_last)),
        1 => Just("fe80::a840:25ff:fe00:5".parse().unwrap()),
        1 => any::<[u8; 16]>().prop_map(Ipv6Addr::from),
    ];
    let dst6 = prop_oneof![
        Just(v6(PEER_LAST)),
        Just(v6(1)),
        Just("ff02::2".parse().unwrap()),
        Just("2001:db8:99::7".parse().unwrap()),
        any::<[u8; 16]>().prop_map(Ipv6Addr::from),
    ];
    (
        (
            mac_from(mac(own_last)),
            prop_oneof![4 => Just(GW_MAC), 1 => Just(BROADCAST), 1 => any::<[u8; 6]>()],
        ),
        kind(),
        any::<bool>(),
        (src4, dst4, src6, dst6),
        (
            prop_oneof![Just(40000u16), any::<u16>()],
            prop_oneof![Just(22u16), Just(53), Just(443), any::<u16>()],
        ),
        proptest::collection::vec(any::<u8>(), 0..64),
        proptest::option::weighted(0.2, (0usize..120, any::<u8>())),
    )
        .prop_map(
            |(
                (src_mac, dst_mac),
                kind,
                v6,
                (src4, dst4, src6, dst6),
                (sport, dport),
                payload,
                flip,
            )| Spec {
                src_mac,
                dst_mac,
                kind,
                v6,
                src4,
                dst4,
                src6,
                dst6,
                sport,
                dport,
                payload,
                flip,
            },
        )
}

/// An ARP packet (RFC 826) for IPv4 over Ethernet.
fn arp(s: &Spec, op: u16) -> Vec<u8> {
    let mut f = Vec::with_capacity(42);
    f.extend_from_slice(&s.dst_mac);
    f.extend_from_slice(&s.src_mac);
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0x00, 6, 4]);
    f.extend_from_slice(&op.to_be_bytes());
    f.extend_from_slice(&s.src_mac);
    f.extend_from_slice(&s.src4.octets());
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&s.dst4.octets());
    f
}

/// A DHCPDISCOVER (RFC 2131 §4.4.1) from the frame's source MAC.
fn dhcp_discover(chaddr: [u8; 6]) -> Vec<u8> {
    let mut b = vec![0u8; 236];
    b[0] = 1;
    b[1] = 1;
    b[2] = 6;
    b[4..8].copy_from_slice(&0x1234_5678u32.to_be_bytes());
    b[10] = 0x80;
    b[28..34].copy_from_slice(&chaddr);
    b.extend_from_slice(&[99, 130, 83, 99, 53, 1, 1, 55, 3, 1, 3, 6, 255]);
    b
}

fn build(s: &Spec) -> Vec<u8> {
    let eth = || PacketBuilder::ethernet2(s.src_mac, s.dst_mac);
    let mut v = Vec::new();
    let r = match (s.kind, s.v6) {
        (Kind::Arp { op }, _) => return arp(s, op),
        (Kind::Dhcp, _) => eth()
            .ipv4([0; 4], [255; 4], 64)
            .udp(68, 67)
            .write(&mut v, &dhcp_discover(s.src_mac)),
        (Kind::Icmp6 { ty }, _) => {
            // NDP wants hop limit 255 (RFC 4861 §6.1); an NS its target.
            let mut body = Vec::new();
            if ty == 135 {
                body.extend_from_slice(&v6(1).octets());
            }
            body.extend_from_slice(&[1, 1]);
            body.extend_from_slice(&s.src_mac);
            body.extend_from_slice(&s.payload);
            eth()
                .ipv6(s.src6.octets(), s.dst6.octets(), 255)
                .icmpv6(Icmpv6Type::Unknown {
                    type_u8: ty,
                    code_u8: 0,
                    bytes5to8: [0; 4],
                })
                .write(&mut v, &body)
        }
        (Kind::Tcp { flags }, v6) => {
            let b = if v6 {
                eth().ipv6(s.src6.octets(), s.dst6.octets(), 64)
            } else {
                eth().ipv4(s.src4.octets(), s.dst4.octets(), 64)
            };
            let mut t = b.tcp(s.sport, s.dport, 1000, 64_000);
            if flags & 1 != 0 {
                t = t.fin();
            }
            if flags & 2 != 0 {
                t = t.syn();
            }
            if flags & 4 != 0 {
                t = t.rst();
            }
            if flags & 8 != 0 {
                t = t.psh();
            }
            if flags & 16 != 0 {
                t = t.ack(1);
            }
            t.write(&mut v, &s.payload)
        }
        (Kind::Udp, false) => eth()
            .ipv4(s.src4.octets(), s.dst4.octets(), 64)
            .udp(s.sport, s.dport)
            .write(&mut v, &s.payload),
        (Kind::Udp, true) => eth()
            .ipv6(s.src6.octets(), s.dst6.octets(), 64)
            .udp(s.sport, s.dport)
            .write(&mut v, &s.payload),
        (Kind::Icmp, false) => eth()
            .ipv4(s.src4.octets(), s.dst4.octets(), 64)
            .icmpv4_echo_request(s.sport, s.dport)
            .write(&mut v, &s.payload),
        (Kind::Icmp, true) => eth()
            .ipv6(s.src6.octets(), s.dst6.octets(), 64)
            .icmpv6_echo_request(s.sport, s.dport)
            .write(&mut v, &s.payload),
    };
    r.expect("etherparse builds it");
    if let Some((at, b)) = s.flip {
        if let Some(x) = v.get_mut(at) {
            *x = b;
        }
    }
    v
}

/// vm5 of VPC A and vm5 of VPC B (same MAC, same addresses) on one switch.
struct Twins {
    _cloud: Cloud,
    sw: Switch,
    up: Wire,
    a: Wire,
    b: Wire,
}

fn twins() -> Twins {
    let cloud = Cloud::new();
    let (mut sw, up) = cloud.switch();
    let a = cloud.attach(&mut sw, &vnic("a", GUEST, VPC_A, 256));
    let b = cloud.attach(&mut sw, &vnic("b", GUEST, VPC_B, 256));
    Twins {
        _cloud: cloud,
        sw,
        up,
        a,
        b,
    }
}

fn is_multicast(m: &[u8]) -> bool {
    m[0] & 1 == 1
}

/// Checks everything that left the switch after guest A sent `sent`
/// frames; `Err` describes the first violation.
fn check_egress(t: &Twins, sent: u64) -> Result<(), String> {
    let own: Vec<IpAddr> = vec![
        v4(GUEST).into(),
        v6(GUEST).into(),
        SNAT_IP.into(),
        ip6(SNAT_IP6).into(),
    ];
    for f in t.up.take() {
        let tn = tunnel(&f)?;
        if tn.vni != VPC_A {
            return Err(format!(
                "VNI {} on the wire from a guest of {VPC_A}",
                tn.vni
            ));
        }
        let (smac, sip) = source(&tn.inner)?;
        if smac != GW_MAC {
            return Err(format!("inner source MAC {smac:02x?}"));
        }
        match sip {
            Some(ip) if own.contains(&ip) => {}
            other => return Err(format!("inner source IP {other:?}")),
        }
    }
    for f in t.a.take() {
        if f.len() < 14 {
            return Err("a runt to the guest".into());
        }
        if f[0..6] != mac(GUEST) && !is_multicast(&f[0..6]) {
            return Err(format!("to guest A but for {:02x?}", &f[0..6]));
        }
    }
    let leaked = t.b.take();
    if !leaked.is_empty() {
        return Err(format!("{} frame(s) reached guest B", leaked.len()));
    }
    let s = t.sw.port("a").unwrap().port.stats();
    let out = s.dir(Direction::Out);
    if out.packets != sent {
        return Err(format!("{} of {sent} frames counted", out.packets));
    }
    let reasons: u64 = s.drop_counts().iter().map(|(_, n)| n).sum();
    if out.forwarded + out.hairpins + out.dropped != out.packets || reasons < out.dropped {
        return Err(format!("unaccounted: {out:?}, drops {:?}", s.drop_counts()));
    }
    Ok(())
}

proptest! {
    // 64 cases in `cargo test`; PROPTEST_CASES=N for a longer run.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(64),
        ..ProptestConfig::default()
    })]

    #[test]
    fn what_a_guest_sends_leaves_as_its_own_or_is_dropped_with_a_reason(
        frames in proptest::collection::vec(spec(GUEST), 1..24),
    ) {
        let mut t = twins();
        for s in &frames {
            t.a.send(&build(s));
        }
        // Twice: frames for a port on this host are delivered a poll later.
        t.sw.poll().unwrap();
        t.sw.poll().unwrap();
        let r = check_egress(&t, frames.len() as u64);
        prop_assert!(r.is_ok(), "{:?}", r);
    }

    #[test]
    fn frames_of_one_vpc_never_reach_a_twin_in_another(
        inner in proptest::collection::vec(spec(PEER_LAST), 1..24),
        from_boundary in any::<bool>(),
    ) {
        let mut t = twins();
        for s in &inner {
            let mut s = s.clone();
            // Addressed to the guest both VPCs have (or anyone).
            if s.dst_mac == GW_MAC {
                s.dst_mac = mac(GUEST);
            }
            s.dst4 = if s.sport % 3 == 0 { s.dst4 } else { v4(GUEST) };
            s.dst6 = if s.sport % 3 == 0 { s.dst6 } else { v6(GUEST) };
            let src = if from_boundary { BOUNDARY } else { PEER_HOST };
            t.up.send(&wrap(&build(&s), src, HOST, VPC_A));
        }
        t.sw.poll().unwrap();
        let to_b = t.b.take();
        prop_assert!(to_b.is_empty(), "{} frame(s) of VNI {VPC_A} reached VNI {VPC_B}'s port", to_b.len());
        let sb = t.sw.port("b").unwrap().port.stats().dir(Direction::In).packets;
        prop_assert_eq!(sb, 0, "B's port saw VNI A's frames");
        for f in t.a.take() {
            prop_assert!(f[0..6] == mac(GUEST) || is_multicast(&f[0..6]));
        }
    }
}

/// The property above is not vacuous: a well-formed frame of VNI A from
/// the peer reaches guest A, and the same frame in VNI B reaches guest B.
#[test]
fn each_twin_gets_its_own_vpcs_frames() {
    let mut t = twins();
    t.up.send(&tcp4_from_peer(VPC_A, GUEST, 22, 40000, true));
    t.sw.poll().unwrap();
    assert_eq!(
        t.a.take().len(),
        1,
        "{:?}",
        t.sw.port("a").unwrap().port.stats().drop_counts()
    );
    assert!(t.b.take().is_empty());
    t.up.send(&tcp4_from_peer(VPC_B, GUEST, 22, 40000, true));
    t.sw.poll().unwrap();
    assert!(t.a.take().is_empty());
    assert_eq!(t.b.take().len(), 1);
}

/// And the egress property is not vacuous: the guest's own traffic leaves
/// (to the peer, to the internet through SNAT), spoofed traffic is
/// dropped with its reason.
#[test]
fn own_traffic_leaves_and_spoofed_traffic_is_counted() {
    let mut t = twins();
    let spoofed_ip = {
        let mut v = Vec::new();
        PacketBuilder::ethernet2(mac(GUEST), GW_MAC)
            .ipv4([10, 0, 0, 99], v4(PEER_LAST).octets(), 64)
            .udp(40001, 53)
            .write(&mut v, b"x")
            .unwrap();
        v
    };
    // A new flow from another MAC (on an existing flow the MAC is
    // rewritten to the gateway's like every routed frame's).
    let spoofed_mac = {
        let mut f = udp4(GUEST, 40002, v4(PEER_LAST), 53);
        f[6..12].copy_from_slice(&mac(99));
        f
    };
    for f in [
        udp4(GUEST, 40000, v4(PEER_LAST), 53),
        udp4(GUEST, 40000, INTERNET4, 53),
        spoofed_ip,
        spoofed_mac,
    ] {
        t.a.send(&f);
    }
    t.sw.poll().unwrap();
    let wire: Vec<_> = t.up.take();
    assert_eq!(wire.len(), 2);
    let srcs: Vec<_> = wire
        .iter()
        .map(|f| source(&tunnel(f).unwrap().inner).unwrap().1.unwrap())
        .collect();
    assert_eq!(srcs, [IpAddr::from(v4(GUEST)), IpAddr::from(SNAT_IP)]);
    let mut drops = t.sw.port("a").unwrap().port.stats().drop_counts();
    drops.sort();
    assert_eq!(drops, [("spoofed_source_ip", 1), ("spoofed_source_mac", 1)]);
}
