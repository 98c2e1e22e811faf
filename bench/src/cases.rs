//! The engine benchmark cases.
//!
//! The bare-engine port has three layers, the shape a VPC port has without
//! the VPC's specifics: `gateway` (a static rewrite of the guest-facing
//! MACs), `firewall` (stateful allow outbound, default deny inbound; for
//! the new-flow cases 100 rules, of which only the last matches) and
//! `overlay` (a static Geneve encapsulation outbound, decapsulation
//! inbound).

use dataplane::action::{GenError, StaticAction};
use dataplane::headers::{Headers, Mac};
use dataplane::packet::DEFAULT_HEADROOM;
use dataplane::transform::Encap;
use dataplane::{
    Action, DefaultAction, Direction, LayerConfig, Meta, PacketBuf, ParseMode, Port, PortConfig,
    PortRange, Predicate, Rule, Transform, Verdict, Vni,
};
use etherparse::PacketBuilder;
use sluice_test_support::Geneve;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

pub const GUEST_MAC: Mac = [0xa8, 0x40, 0x25, 0, 0, 1];
pub const GW_MAC: Mac = [0xa8, 0x40, 0x25, 0xff, 0xff, 1];
pub const PEER_MAC: Mac = [0xa8, 0x40, 0x25, 0, 0, 2];
pub const HOST_MAC: Mac = [2, 0, 0, 0, 0, 0x10];
pub const ROUTER_MAC: Mac = [2, 0, 0, 0, 0, 0x20];
pub const VNI: u32 = 7777;

/// The cases `engine-loop --case` accepts.
pub const CASES: &[&str] = &[
    "noop",
    "parse-tcp4",
    "uft-out-tcp4",
    "uft-in-tcp4",
    "uft-out-tcp6",
    "uft-in-tcp6",
    "new-flow-out-udp4",
    "new-flow-out-udp6",
    "new-flow-vpc-snat-tcp4",
    "vpc-out-tcp4",
    "vpc-in-tcp4",
    "vpc-in-tcp4-csum",
    "vpc-in-tcp4-1400",
    "vpc-in-tcp4-1400-csum",
    "vpc-snat-out-tcp4",
];

/// Scaling cases (`engine-loop --case C --flows N --rules R`), not in
/// [`CASES`] (the README's table): their cost depends on the options.
///
/// - `uft-out-udp4-flows`: UFT hits on the bare engine cycling over N
///   established UDP flows (set up before timing): the table's size,
///   not the packet, changes.
/// - `new-flow-out-udp4-rules`: every packet a new UDP flow, with R
///   outbound firewall rules of a mixed rule-set before the allow (see
///   [`mixed_rules`]).
pub const SCALING_CASES: &[&str] = &["uft-out-udp4-flows", "new-flow-out-udp4-rules"];

/// Options of the scaling cases.
#[derive(Clone, Copy, Debug)]
pub struct Scale {
    /// Live flows to cycle over (`uft-out-udp4-flows`).
    pub flows: u32,
    /// Firewall rules (`new-flow-out-udp4-rules`).
    pub rules: usize,
}

impl Default for Scale {
    fn default() -> Self {
        Scale {
            flows: 1,
            rules: 100,
        }
    }
}

/// `n` outbound rules a tenant might write, none matching the benchmark's
/// traffic (UDP to 10.1.x.x:53): a quarter each of single-port TCP/UDP
/// rules with a destination network, port ranges, address-only rules
/// (any protocol and port to a /24 or /32: a port index cannot skip
/// them) and protocol rules with a network (ICMP, GRE).
pub fn mixed_rules(n: usize) -> Vec<Rule> {
    (0..n)
        .map(|i| {
            let prio = 10 + (i % 60000) as u16;
            let net = |len: u8| -> dataplane::IpCidr {
                format!(
                    "172.{}.{}.{}/{len}",
                    16 + i % 16,
                    (i / 16) % 256,
                    (i / 4096) % 256
                )
                .parse()
                .unwrap()
            };
            let r = Rule::new(prio, Action::Deny);
            match i % 4 {
                0 => r
                    .with(Predicate::Proto(vec![if i % 8 == 0 { 6 } else { 17 }]))
                    .with(Predicate::DstPort(vec![PortRange::single(
                        1000 + (i % 20000) as u16,
                    )]))
                    .with(Predicate::DstIp(vec![net(16)])),
                1 => {
                    let first = 20000 + (i % 40000) as u16;
                    r.with(Predicate::Proto(vec![17]))
                        .with(Predicate::DstPort(vec![PortRange::new(
                            first,
                            first.saturating_add(7),
                        )
                        .unwrap()]))
                }
                2 => r.with(Predicate::DstIp(vec![net(if i % 8 == 2 {
                    24
                } else {
                    32
                })])),
                _ => r
                    .with(Predicate::Proto(vec![if i % 8 == 3 { 1 } else { 47 }]))
                    .with(Predicate::DstIp(vec![net(16)])),
            }
        })
        .collect()
}

struct Macs;

impl fmt::Display for Macs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("gateway-macs")
    }
}

impl StaticAction for Macs {
    fn transform(&self, dir: Direction, _: &Headers, _: &mut Meta) -> Result<Transform, GenError> {
        let (s, d) = match dir {
            Direction::Out => (GW_MAC, PEER_MAC),
            Direction::In => (GW_MAC, GUEST_MAC),
        };
        Ok(Transform {
            eth_src: Some(s),
            eth_dst: Some(d),
            ..Default::default()
        })
    }
}

struct Overlay(Encap);

impl fmt::Display for Overlay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("overlay")
    }
}

impl StaticAction for Overlay {
    fn transform(&self, dir: Direction, _: &Headers, _: &mut Meta) -> Result<Transform, GenError> {
        Ok(match dir {
            Direction::Out => Transform {
                encap: Some(self.0.clone()),
                ..Default::default()
            },
            Direction::In => Transform {
                decap: true,
                ..Default::default()
            },
        })
    }
}

pub fn host_ip() -> Ipv6Addr {
    "fd00:1::1".parse().unwrap()
}

pub fn peer_host_ip() -> Ipv6Addr {
    "fd00:1::2".parse().unwrap()
}

/// The bare-engine port. `fw_rules` non-matching rules precede the one
/// stateful allow rule in the firewall's outbound direction.
pub fn engine_port(flow_limit: u32, fw_rules: usize) -> Port {
    engine_port_with(flow_limit, fw_rules, None)
}

/// [`engine_port`], with `rules` (when given) as the firewall's outbound
/// rules before the allow instead of the UDP deny rules.
pub fn engine_port_with(flow_limit: u32, fw_rules: usize, rules: Option<Vec<Rule>>) -> Port {
    let mut cfg = PortConfig::new("bench");
    cfg.flow_limit = flow_limit;
    cfg.inbound = ParseMode::Geneve;
    let mut p = Port::new(cfg);
    let allow = DefaultAction::Allow;
    p.add_layer(LayerConfig::new("gateway", allow, allow))
        .unwrap();
    p.add_layer(LayerConfig::new("firewall", DefaultAction::Deny, allow))
        .unwrap();
    p.add_layer(LayerConfig::new("overlay", DefaultAction::Deny, allow))
        .unwrap();
    let macs: Arc<dyn StaticAction> = Arc::new(Macs);
    p.add_rule(
        "gateway",
        Direction::Out,
        Rule::new(1, Action::Static(macs.clone())),
    )
    .unwrap();
    p.add_rule("gateway", Direction::In, Rule::new(1, Action::Static(macs)))
        .unwrap();
    let custom = rules.is_some();
    for i in 0..if custom {
        0
    } else {
        fw_rules.saturating_sub(1)
    } {
        // Rules that look like a real rule-set but never match the traffic:
        // deny UDP (the new-flow cases' protocol, so the rule index cannot
        // skip them) to assorted service ports and networks.
        let r = Rule::new(10 + i as u16, Action::Deny)
            .with(Predicate::Proto(vec![17]))
            .with(Predicate::DstPort(vec![PortRange::single(1000 + i as u16)]))
            .with(Predicate::DstIp(vec![format!(
                "172.{}.0.0/16",
                16 + i % 16
            )
            .parse()
            .unwrap()]));
        p.add_rule("firewall", Direction::Out, r).unwrap();
    }
    p.add_rule(
        "firewall",
        Direction::Out,
        Rule::new(u16::MAX, Action::StatefulAllow),
    )
    .unwrap();
    if let Some(mut rs) = rules {
        // One atomic replace (one index build), as the API does.
        rs.push(Rule::new(u16::MAX, Action::StatefulAllow));
        p.set_rules("firewall", Vec::new(), rs).unwrap();
    }
    let encap = Encap {
        eth_src: HOST_MAC,
        eth_dst: ROUTER_MAC,
        ip_src: host_ip(),
        ip_dst: peer_host_ip(),
        hop_limit: 64,
        udp_src: 0,
        vni: Vni::new(VNI).unwrap(),
        options: Default::default(),
        udp_csum: true,
    };
    let ov: Arc<dyn StaticAction> = Arc::new(Overlay(encap));
    p.add_rule(
        "overlay",
        Direction::Out,
        Rule::new(1, Action::Static(ov.clone())),
    )
    .unwrap();
    p.add_rule(
        "overlay",
        Direction::In,
        Rule::new(1, Action::Static(ov)).with(Predicate::Vni(vec![Vni::new(VNI).unwrap()])),
    )
    .unwrap();
    p
}

fn addrs(v6: bool) -> (IpAddr, IpAddr) {
    if v6 {
        (
            IpAddr::V6("fd00:a::5".parse().unwrap()),
            IpAddr::V6("fd00:a::6".parse().unwrap()),
        )
    } else {
        (
            IpAddr::V4(Ipv4Addr::new(10, 0, 0, 5)),
            IpAddr::V4(Ipv4Addr::new(10, 0, 0, 6)),
        )
    }
}

fn builder(
    smac: Mac,
    dmac: Mac,
    src: IpAddr,
    dst: IpAddr,
) -> etherparse::PacketBuilderStep<etherparse::IpHeaders> {
    let b = PacketBuilder::ethernet2(smac, dmac);
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => b.ipv4(s.octets(), d.octets(), 64),
        (IpAddr::V6(s), IpAddr::V6(d)) => b.ipv6(s.octets(), d.octets(), 64),
        _ => unreachable!(),
    }
}

/// A guest's TCP segment (ACK, 64-byte frame class with a small payload).
pub fn guest_tcp(v6: bool, sport: u16, flags_syn: bool) -> Vec<u8> {
    let (s, d) = addrs(v6);
    let t = builder(GUEST_MAC, GW_MAC, s, d).tcp(sport, 80, 1, 64240);
    let t = if flags_syn { t.syn() } else { t.ack(1) };
    let mut v = Vec::new();
    t.write(&mut v, &[0u8; 6]).unwrap();
    v
}

/// The peer's reply as it arrives on the underlay, Geneve-encapsulated.
pub fn wire_tcp_reply(v6: bool, dport: u16) -> Vec<u8> {
    let (s, d) = addrs(v6);
    let mut inner = Vec::new();
    builder(PEER_MAC, GW_MAC, d, s)
        .tcp(80, dport, 1, 64240)
        .ack(2)
        .write(&mut inner, &[0u8; 6])
        .unwrap();
    Geneve::new(peer_host_ip(), host_ip(), VNI)
        .macs(ROUTER_MAC, HOST_MAC)
        .wrap(&inner)
}

/// A guest UDP datagram of flow number `i` (distinct 5-tuples).
pub fn guest_udp_flow(v6: bool, i: u32) -> Vec<u8> {
    let (s, _) = addrs(v6);
    let d = match s {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::from(0x0a01_0000 | (i >> 16))),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::from(0xfd00_000b_u128 << 96 | u128::from(i >> 16))),
    };
    let mut v = Vec::new();
    builder(GUEST_MAC, GW_MAC, s, d)
        .udp((i & 0xffff) as u16, 53)
        .write(&mut v, &[0u8; 18])
        .unwrap();
    v
}

/// Makes a `guest_udp_flow` template into flow `i`: the UDP source port
/// and the low bytes of the destination address carry the flow number.
/// The UDP checksum is left stale (the engine does not verify it); the
/// IPv4 header checksum, which it does verify, is recomputed.
#[inline]
fn set_flow(f: &mut [u8], i: u32) {
    let v6 = u16::from_be_bytes([f[12], f[13]]) == 0x86dd;
    let (l4, dst_end) = if v6 { (54, 54) } else { (34, 34) };
    f[l4..l4 + 2].copy_from_slice(&((i & 0xffff) as u16).to_be_bytes());
    f[dst_end - 2..dst_end].copy_from_slice(&((i >> 16) as u16).to_be_bytes());
    if !v6 {
        f[24..26].copy_from_slice(&[0, 0]);
        let c = dataplane::checksum::checksum(&f[14..34]);
        f[24..26].copy_from_slice(&c.to_be_bytes());
    }
}

const VPC_HOST_A: &str = "fd00:99::a";
const VPC_HOST_B: &str = "fd00:99::b";
const VPC_GW_MAC: Mac = [0xa8, 0x40, 0x25, 0xff, 0xff, 0x01];
const VM1_MAC: Mac = [0xa8, 0x40, 0x25, 0, 0, 1];
const VM2_MAC: Mac = [0xa8, 0x40, 0x25, 0, 0, 2];

/// The full VPC port of vm1 (10.0.0.5 on host A, VPC 7777), built by
/// `vnic::port::VnicPort::build`: gateway, firewall, router, nat,
/// overlay; vm2 (10.0.0.6) lives on host B; the internet is behind a
/// boundary (V2B 0.0.0.0/0) through SNAT.
pub fn vpc_port() -> Port {
    vpc_vnic().port
}

/// The same vm1, as the vNIC port a switch attaches (see [`vpc_port`]).
pub fn vpc_vnic() -> vnic::port::VnicPort {
    vpc_vnic_with(vpc_config(65_536, 1, (2048, 4095)))
}

/// vm1's configuration: `flows` flows at once, SNAT over `snat_ips`
/// external addresses (203.0.113.10 and up), `ports` of each (the
/// new-flow case's million flows need a million ports).
fn vpc_config(flows: u32, snat_ips: u8, ports: (u16, u16)) -> vnic::config::VnicConfig {
    let (first, last) = ports;
    let snat: Vec<_> = (0..snat_ips)
        .map(|i| {
            serde_json::json!({ "ip": format!("203.0.113.{}", 10 + i), "first_port": first, "last_port": last })
        })
        .collect();
    serde_json::from_value(serde_json::json!({
        "name": "vm1",
        "guest_mac": "a8:40:25:00:00:01",
        "gateway_mac": "a8:40:25:ff:ff:01",
        "vni": 7777,
        "ipv4": { "addr": "10.0.0.5", "subnet": "10.0.0.0/24", "gateway": "10.0.0.1" },
        "routes": [{ "dest": "0.0.0.0/0", "target": "internet_gateway", "class": "system" }],
        "external": { "snat": snat },
        "limits": { "flows": flows },
    }))
    .unwrap()
}

fn vpc_vnic_with(cfg: vnic::config::VnicConfig) -> vnic::port::VnicPort {
    let v2p = Arc::new(overlay::V2p::new(1024));
    let v2b = Arc::new(overlay::V2b::new(16));
    let vni = Vni::new(7777).unwrap();
    let boundary: Ipv6Addr = "fd00:99::bd".parse().unwrap();
    v2b.set(vni, "0.0.0.0/0".parse().unwrap(), [boundary])
        .unwrap();
    for (ip, mac, host) in [
        ("10.0.0.5", VM1_MAC, VPC_HOST_A),
        ("10.0.0.6", VM2_MAC, VPC_HOST_B),
    ] {
        let dest = overlay::v2p::PhysDest {
            guest_mac: mac,
            host: host.parse().unwrap(),
        };
        v2p.set(vni, ip.parse().unwrap(), dest).unwrap();
    }
    let host = overlay::layer::HostOverlay {
        underlay_ip: VPC_HOST_A.parse().unwrap(),
        underlay_mac: HOST_MAC,
        next_hop_mac: ROUTER_MAC,
        v2p,
        v2b,
        mcast: Default::default(),
    };
    vnic::port::VnicPort::build(&cfg, &host, Box::new(dataplane::MonotonicClock::new())).unwrap()
}

/// Host A, where vm1 lives (its switch's underlay address).
pub fn vpc_host_a() -> Ipv6Addr {
    VPC_HOST_A.parse().unwrap()
}

/// vm1's TCP segment to an internet server (SNAT, boundary tunnel).
fn vpc_internet_tcp(syn: bool) -> Vec<u8> {
    let t = PacketBuilder::ethernet2(VM1_MAC, VPC_GW_MAC)
        .ipv4([10, 0, 0, 5], [198, 51, 100, 7], 64)
        .tcp(40000, 443, 1, 64240);
    let t = if syn { t.syn() } else { t.ack(1) };
    let mut v = Vec::new();
    t.write(&mut v, &[0u8; 6]).unwrap();
    v
}

/// vm1's TCP segment to vm2:22.
pub fn vpc_guest_tcp(syn: bool) -> Vec<u8> {
    let t = PacketBuilder::ethernet2(VM1_MAC, VPC_GW_MAC)
        .ipv4([10, 0, 0, 5], [10, 0, 0, 6], 64)
        .tcp(40000, 22, 1, 64240);
    let t = if syn { t.syn() } else { t.ack(1) };
    let mut v = Vec::new();
    t.write(&mut v, &[0u8; 6]).unwrap();
    v
}

/// What vm1's guest sends in the flood cases, in turn: its established
/// segment to vm2 (forwarded), then frames the port refuses — a
/// truncated one, a spoofed source address, a spoofed source MAC, a
/// non-IP frame. (Not a hairpin: an answer is built in a new buffer,
/// two allocations, see bench/README.md.)
pub fn vpc_guest_flood() -> Vec<Vec<u8>> {
    // Each a first packet of its own (another source port than the
    // established flow's), so every one walks the layers.
    let tcp = |smac: Mac, src: [u8; 4]| {
        let mut v = Vec::new();
        PacketBuilder::ethernet2(smac, VPC_GW_MAC)
            .ipv4(src, [10, 0, 0, 6], 64)
            .tcp(40001, 22, 1, 64240)
            .ack(1)
            .write(&mut v, &[0u8; 6])
            .unwrap();
        v
    };
    let mut non_ip = tcp(VM1_MAC, [10, 0, 0, 5]);
    non_ip[12..14].copy_from_slice(&[0x88, 0xb5]);
    vec![
        vpc_guest_tcp(false),
        vpc_guest_tcp(false)[..30].to_vec(),
        tcp(VM1_MAC, [10, 0, 0, 99]),
        tcp([0xa8, 0x40, 0x25, 0, 0, 0x99], [10, 0, 0, 5]),
        non_ip,
    ]
}

/// What the uplink receives in the flood cases, in turn: vm2's reply
/// (delivered), then tunnels host A refuses — to a VNI it has no port
/// in, to another host's underlay address, truncated, a guest source
/// address the sending host does not hold (V2P), and vm2's new
/// connection to a port vm1's firewall does not open.
pub fn vpc_wire_flood() -> Vec<Vec<u8>> {
    let host = |s: &str| s.parse::<Ipv6Addr>().unwrap();
    let inner = |src: [u8; 4], dport: u16, syn_only: bool| {
        let t = PacketBuilder::ethernet2(VPC_GW_MAC, VM1_MAC)
            .ipv4(src, [10, 0, 0, 5], 64)
            .tcp(22, dport, 1, 64240)
            .syn();
        let t = if syn_only { t } else { t.ack(2) };
        let mut v = Vec::new();
        t.write(&mut v, &[0u8; 6]).unwrap();
        v
    };
    let tunnel = |vni: u32, dst: &str, f: &[u8]| {
        Geneve::new(host(VPC_HOST_B), host(dst), vni)
            .macs(ROUTER_MAC, HOST_MAC)
            .wrap(f)
    };
    let reply = inner([10, 0, 0, 6], 40000, false);
    vec![
        vpc_wire_reply(),
        tunnel(9999, VPC_HOST_A, &reply),
        tunnel(7777, "fd00:99::c", &reply),
        vpc_wire_reply()[..60].to_vec(),
        tunnel(7777, VPC_HOST_A, &inner([10, 0, 0, 99], 40000, false)),
        tunnel(7777, VPC_HOST_A, &inner([10, 0, 0, 6], 23, true)),
    ]
}

/// vm2's reply as host B's tunnel delivers it to host A.
pub fn vpc_wire_reply() -> Vec<u8> {
    vpc_wire_reply_len(6)
}

/// The same segment with `payload` bytes of TCP payload.
fn vpc_wire_reply_len(payload: usize) -> Vec<u8> {
    let mut inner = Vec::new();
    PacketBuilder::ethernet2(VPC_GW_MAC, VM1_MAC)
        .ipv4([10, 0, 0, 6], [10, 0, 0, 5], 64)
        .tcp(22, 40000, 1, 64240)
        .syn()
        .ack(2)
        .write(&mut inner, &vec![0u8; payload])
        .unwrap();
    let host = |s: &str| s.parse::<Ipv6Addr>().unwrap();
    Geneve::new(host(VPC_HOST_B), host(VPC_HOST_A), 7777)
        .macs(ROUTER_MAC, HOST_MAC)
        .wrap(&inner)
}

/// A ready-to-run case: a port with its flows set up, and the template
/// packets to send.
pub struct Case {
    pub name: &'static str,
    pub port: Port,
    pub dir: Direction,
    /// Packets to send in turn (one for hit cases, many for new flows).
    pub frames: Vec<Vec<u8>>,
    pub parse_only: Option<ParseMode>,
    /// New-flow cases: write flow number `i` into the template per packet
    /// (so set-up does not grow with the packet count).
    pub vary: bool,
    /// The harness floor: restore the frames, process nothing.
    pub noop: bool,
    /// With `vary`: flow numbers cycle over this many (0: no cycle).
    pub cycle: u32,
    /// Verify each frame's outer UDP checksum in software first, as the
    /// switch does for a tunnel no device vouched for (`vpc-in-tcp4-csum`:
    /// `vpc-in-tcp4` plus that check, so the difference is its cost).
    pub outer_csum: bool,
}

impl Case {
    /// Sets up `name` for `packets` packets.
    pub fn new(name: &str, packets: u64) -> Option<Case> {
        Case::with(name, packets, Scale::default())
    }

    /// Sets up `name` (one of [`CASES`] or [`SCALING_CASES`]) for
    /// `packets` packets with the scaling options.
    pub fn with(name: &str, packets: u64, scale: Scale) -> Option<Case> {
        if let Some(n) = SCALING_CASES.iter().find(|c| **c == name) {
            return Some(Case::scaling(n, packets, scale));
        }
        let (name, v6): (&'static str, bool) = match CASES.iter().find(|c| **c == name) {
            Some(n) => (n, n.ends_with('6')),
            None => return None,
        };
        let case = match name {
            "parse-tcp4" => Case {
                name,
                port: engine_port(16, 1),
                dir: Direction::Out,
                frames: vec![guest_tcp(false, 40000, false)],
                parse_only: Some(ParseMode::Plain),
                vary: false,
                noop: false,
                cycle: 0,
                outer_csum: false,
            },
            "noop" => Case {
                name,
                port: engine_port(16, 1),
                dir: Direction::Out,
                frames: vec![guest_tcp(false, 40000, false)],
                parse_only: None,
                vary: false,
                noop: true,
                cycle: 0,
                outer_csum: false,
            },
            "uft-out-tcp4" | "uft-out-tcp6" | "uft-in-tcp4" | "uft-in-tcp6" => {
                let mut port = engine_port(1024, 1);
                // Establish the flow: SYN out, reply in, ACK out.
                let mut p = PacketBuf::from_frame(&guest_tcp(v6, 40000, true));
                assert!(matches!(
                    port.process(Direction::Out, &mut p),
                    dataplane::Verdict::Forward
                ));
                let mut p = PacketBuf::from_frame(&wire_tcp_reply(v6, 40000));
                assert!(matches!(
                    port.process(Direction::In, &mut p),
                    dataplane::Verdict::Forward
                ));
                let out = name.starts_with("uft-out");
                Case {
                    name,
                    port,
                    dir: if out { Direction::Out } else { Direction::In },
                    frames: vec![if out {
                        guest_tcp(v6, 40000, false)
                    } else {
                        wire_tcp_reply(v6, 40000)
                    }],
                    parse_only: None,
                    vary: false,
                    noop: false,
                    cycle: 0,
                    outer_csum: false,
                }
            }
            "vpc-out-tcp4"
            | "vpc-in-tcp4"
            | "vpc-in-tcp4-csum"
            | "vpc-in-tcp4-1400"
            | "vpc-in-tcp4-1400-csum" => {
                let mut port = vpc_port();
                // Establish vm1 (10.0.0.5) -> vm2 (10.0.0.6):22 both ways.
                let mut p = PacketBuf::from_frame(&vpc_guest_tcp(true));
                assert!(matches!(
                    port.process(Direction::Out, &mut p),
                    dataplane::Verdict::Forward
                ));
                let mut p = PacketBuf::from_frame(&vpc_wire_reply());
                assert!(matches!(
                    port.process(Direction::In, &mut p),
                    dataplane::Verdict::Forward
                ));
                let out = name == "vpc-out-tcp4";
                let outer_csum = name.ends_with("-csum");
                let payload = if name.contains("-1400") { 1400 } else { 6 };
                Case {
                    name,
                    port,
                    dir: if out { Direction::Out } else { Direction::In },
                    frames: vec![if out {
                        vpc_guest_tcp(false)
                    } else {
                        vpc_wire_reply_len(payload)
                    }],
                    parse_only: None,
                    vary: false,
                    noop: false,
                    cycle: 0,
                    outer_csum,
                }
            }
            "vpc-snat-out-tcp4" => {
                let mut port = vpc_port();
                let syn = vpc_internet_tcp(true);
                let mut p = PacketBuf::from_frame(&syn);
                assert!(matches!(
                    port.process(Direction::Out, &mut p),
                    dataplane::Verdict::Forward
                ));
                Case {
                    name,
                    port,
                    dir: Direction::Out,
                    frames: vec![vpc_internet_tcp(false)],
                    parse_only: None,
                    vary: false,
                    noop: false,
                    cycle: 0,
                    outer_csum: false,
                }
            }
            "new-flow-vpc-snat-tcp4" => {
                // Every packet a new TCP connection to the internet through
                // the full VPC port: firewall state, router, SNAT, Geneve to
                // the boundary.
                let n = packets.clamp(1, 4 << 20) as u32;
                let ips = (n / 64_000 + 1).min(64) as u8;
                Case {
                    name,
                    port: vpc_vnic_with(vpc_config(n, ips, (1024, 65535))).port,
                    dir: Direction::Out,
                    frames: vec![vpc_internet_tcp(true)],
                    parse_only: None,
                    vary: true,
                    noop: false,
                    cycle: 0,
                    outer_csum: false,
                }
            }
            "new-flow-out-udp4" | "new-flow-out-udp6" => {
                let n = packets.clamp(1, 4 << 20) as u32;
                Case {
                    name,
                    port: engine_port(n, 100),
                    dir: Direction::Out,
                    frames: vec![guest_udp_flow(v6, 0)],
                    parse_only: None,
                    vary: true,
                    noop: false,
                    cycle: 0,
                    outer_csum: false,
                }
            }
            _ => return None,
        };
        Some(case)
    }

    fn scaling(name: &'static str, packets: u64, scale: Scale) -> Case {
        if name == "new-flow-out-udp4-rules" {
            let n = packets.clamp(1, 4 << 20) as u32;
            return Case {
                name,
                port: engine_port_with(n, 0, Some(mixed_rules(scale.rules))),
                dir: Direction::Out,
                frames: vec![guest_udp_flow(false, 0)],
                parse_only: None,
                vary: true,
                noop: false,
                cycle: 0,
                outer_csum: false,
            };
        }
        let flows = scale.flows.clamp(1, 4 << 20);
        let mut c = Case {
            name,
            port: engine_port(flows, 1),
            dir: Direction::Out,
            frames: vec![guest_udp_flow(false, 0)],
            parse_only: None,
            vary: true,
            noop: false,
            cycle: flows,
            outer_csum: false,
        };
        // Establish every flow before timing.
        let mut bufs = batch_bufs();
        let mut verdicts = Vec::with_capacity(BATCH);
        let mut done = 0usize;
        while done < flows as usize {
            let n = (flows as usize - done).min(BATCH);
            c.run_batch(&mut bufs[..n], &mut verdicts, done);
            done += n;
        }
        c
    }

    /// Runs packets `first..first + bufs.len()` as one batch through
    /// `Port::process_batch` (one clock read per batch, as a worker does).
    /// Returns how many were forwarded.
    #[inline]
    pub fn run_batch(
        &mut self,
        bufs: &mut [PacketBuf],
        verdicts: &mut Vec<Verdict>,
        first: usize,
    ) -> usize {
        let n = self.frames.len();
        for (j, b) in bufs.iter_mut().enumerate() {
            b.reset(DEFAULT_HEADROOM);
            let _ = b.set_frame(&self.frames[(first + j) % n]);
            if self.vary {
                let i = if self.cycle > 0 {
                    ((first + j) % self.cycle as usize) as u32
                } else {
                    (first + j) as u32
                };
                set_flow(b.as_mut_slice(), i);
            }
        }
        if self.noop {
            return std::hint::black_box(bufs).len();
        }
        if self.outer_csum {
            let ok = bufs.iter().filter(|b| outer_udp_ok(b.as_slice())).count();
            if ok != bufs.len() {
                return 0;
            }
        }
        if let Some(mode) = self.parse_only {
            return bufs
                .iter()
                .filter(|b| dataplane::headers::parse(b.as_slice(), mode).is_ok())
                .count();
        }
        self.port.process_batch(self.dir, bufs, verdicts);
        verdicts
            .iter()
            .filter(|v| matches!(v, Verdict::Forward))
            .count()
    }
}

/// The switch's software check of a tunnel's outer UDP checksum (IPv6 at
/// 14, UDP at 54), as `vmm_net::switch` runs it.
#[inline]
fn outer_udp_ok(f: &[u8]) -> bool {
    let (Some(src), Some(dst), Some(len)) = (f.get(22..38), f.get(38..54), f.get(58..60)) else {
        return false;
    };
    let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
    let (Ok(src), Ok(dst)) = (<[u8; 16]>::try_from(src), <[u8; 16]>::try_from(dst)) else {
        return false;
    };
    f.get(54..54 + len).is_some_and(|udp| {
        dataplane::checksum::verify_udp6(&src, &dst, udp) == dataplane::checksum::UdpCheck::Good
    })
}

/// Packets per batch in the harness: a typical RX burst size.
pub const BATCH: usize = 32;

/// Buffers for one batch.
pub fn batch_bufs() -> Vec<PacketBuf> {
    (0..BATCH)
        .map(|_| PacketBuf::new(DEFAULT_HEADROOM, dataplane::packet::DEFAULT_CAPACITY))
        .collect()
}
