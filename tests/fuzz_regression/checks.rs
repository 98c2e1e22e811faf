//! The fuzz targets' checks, shared word for word by the cargo-fuzz
//! targets (`fuzz/fuzz_targets/*.rs` include this file with `#[path]`)
//! and by the stable regression test that replays saved crash inputs
//! (`tests/fuzz_regression/main.rs`), so a saved input runs exactly the
//! code that crashed.
//!
//! Each `pub fn TARGET(data)` is one target: it must not panic whatever
//! `data` is, and it asserts the contracts the code under test documents.
//! Only `dataplane`, `overlay`, `vnic`, `vmm-net`, `serde_json` and
//! `sluice-test-support` are used: both crates that include this file
//! depend on them.

#![allow(dead_code)]

use dataplane::checksum::checksum;
use dataplane::headers::quoted::{self, Quoted};
use dataplane::headers::{
    geneve_options, parse, parse_fast, Frag, ParseMode, Parsed, GENEVE_MAX_OPT_LEN, GENEVE_PORT,
    L3, L4,
};
use dataplane::{Direction, IpCidr, ManualClock, PacketBuf, Verdict, Vni};
use overlay::layer::HostOverlay;
use overlay::v2p::PhysDest;
use overlay::{V2b, V2p};
use sluice_test_support::{fill_outer_udp, Geneve};
use std::cell::RefCell;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use vnic::config::VnicConfig;
use vnic::gateway::{self, GatewayConfig};
use vnic::port::VnicPort;

/// Every target, by name (the fuzz target and regression-case prefix).
pub const TARGETS: &[&str] = &[
    "parse_plain",
    "parse_geneve",
    "quoted",
    "geneve_options",
    "gateway",
    "vpc_port_out",
    "vpc_port_in",
    "switch_uplink",
    "vnic_config",
];

/// The seed folders (under `fuzz/seeds/`) of each target; `fuzz/run.sh`
/// passes the same ones to libFuzzer.
pub fn seed_dirs(target: &str) -> &'static [&'static str] {
    match target {
        "parse_plain" | "gateway" | "vpc_port_out" => &["frames"],
        "parse_geneve" | "vpc_port_in" | "switch_uplink" => &["geneve", "frames"],
        "quoted" => &["icmp"],
        "geneve_options" => &["options"],
        "vnic_config" => &["config"],
        _ => &[],
    }
}

/// Runs `target`'s check on `data`. `false` for an unknown target.
pub fn run(target: &str, data: &[u8]) -> bool {
    match target {
        "parse_plain" => _ = parse_plain(data),
        "parse_geneve" => _ = parse_geneve(data),
        "quoted" => _ = quoted(data),
        "geneve_options" => _ = geneve_options_check(data),
        "gateway" => _ = gateway(data),
        "vpc_port_out" => _ = vpc_port_out(data),
        "vpc_port_in" => _ = vpc_port_in(data),
        "switch_uplink" => _ = switch_uplink(data),
        "vnic_config" => _ = vnic_config(data),
        _ => return false,
    }
    true
}

// ---------------------------------------------------------------------
// The fixed VPC: vm1 (this port) on host A, vm2 on host B, a boundary.

pub const VNI: u32 = 7777;
pub const OTHER_VNI: u32 = 8888;
pub const GUEST_MAC: [u8; 6] = [0xa8, 0x40, 0x25, 0, 0, 1];
pub const VM2_MAC: [u8; 6] = [0xa8, 0x40, 0x25, 0, 0, 2];
pub const GW_MAC: [u8; 6] = [0xa8, 0x40, 0x25, 0xff, 0xff, 1];
pub const HOST_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0x10];
pub const ROUTER_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0x20];
pub const HOST_A: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x99, 0, 0, 0, 0, 0, 0xa);
pub const HOST_B: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x99, 0, 0, 0, 0, 0, 0xb);
pub const BOUNDARY: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x99, 0, 0, 0, 0, 0, 0xbd);
/// An underlay host no table knows.
pub const STRANGER: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x99, 0, 0, 0, 0, 0, 0x66);
pub const VM1_IP4: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 5);
pub const VM2_IP4: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 6);
pub const VM1_IP6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x7777, 0, 0, 0, 0, 0, 5);
pub const VM2_IP6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x7777, 0, 0, 0, 0, 0, 6);
/// An internet host.
pub const REMOTE_IP4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);
pub const REMOTE_IP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 7);

/// vm1's configuration: dual stack, DHCP, SNAT for IPv4 and a floating
/// IPv6 address, default routes to the internet, some inbound firewall
/// openings and one outbound deny.
pub fn vpc_config() -> VnicConfig {
    let c = serde_json::json!({
        "name": "vm1",
        "guest_mac": "a8:40:25:00:00:01",
        "gateway_mac": "a8:40:25:ff:ff:01",
        "vni": VNI,
        "ipv4": { "addr": "10.0.0.5", "subnet": "10.0.0.0/24", "gateway": "10.0.0.1" },
        "ipv6": { "addr": "fd00:7777::5", "subnet": "fd00:7777::/64", "gateway": "fd00:7777::1" },
        "mtu": 1500,
        "dhcp": {
            "dns4": ["10.0.0.2"],
            "dns6": ["fd00:7777::2"],
            "domain": "vpc.internal",
            "hostname": "vm1",
            "lease_secs": 3600
        },
        "external": {
            "snat": [{ "ip": "203.0.113.10", "first_port": 2048, "last_port": 2111 }],
            "floating": ["2001:db8:f::10"]
        },
        // One of each kind of extra prefix, so the port targets meet
        // their rules and the API target can remove them.
        "attached_subnets": ["192.168.50.0/24"],
        "external_subnets": ["198.18.0.0/24"],
        "transit_ips": [{ "cidr": "172.16.0.0/24", "dir": "both" }],
        "firewall": [
            { "direction": "in", "priority": 10, "action": "allow",
              "protocol": "tcp", "ports": { "list": [22, 80] } },
            { "direction": "in", "priority": 20, "action": "allow", "protocol": "icmp" },
            { "direction": "in", "priority": 21, "action": "allow", "protocol": "icmp6" },
            { "direction": "in", "priority": 30, "action": "allow",
              "hosts": { "subnet": "10.0.0.0/24" }, "protocol": "udp" },
            { "direction": "out", "priority": 40, "action": "deny",
              "protocol": "tcp", "ports": { "list": [25] } }
        ],
        "routes": [
            { "dest": "0.0.0.0/0", "target": "internet_gateway", "class": "system" },
            { "dest": "::/0", "target": "internet_gateway", "class": "system" }
        ],
        "limits": { "flows": 256 }
    });
    serde_json::from_value(c).expect("the fixed VPC configuration")
}

/// Host A with the cloud's tables: vm1 on A, vm2 on B, the boundary for
/// every internet prefix.
pub fn host_a() -> HostOverlay {
    let v2p = Arc::new(V2p::new(64));
    let v2b = Arc::new(V2b::new(16));
    let vni = Vni::new(VNI).expect("VNI");
    for other in [VNI, OTHER_VNI] {
        let other = Vni::new(other).expect("VNI");
        for prefix in ["0.0.0.0/0", "::/0"] {
            v2b.set(other, prefix.parse().expect("prefix"), [BOUNDARY])
                .expect("V2B");
        }
    }
    for (ip, guest_mac, host) in [
        (IpAddr::V4(VM1_IP4), GUEST_MAC, HOST_A),
        (IpAddr::V4(VM2_IP4), VM2_MAC, HOST_B),
        (IpAddr::V6(VM1_IP6), GUEST_MAC, HOST_A),
        (IpAddr::V6(VM2_IP6), VM2_MAC, HOST_B),
    ] {
        v2p.set(vni, ip, PhysDest { guest_mac, host }).expect("V2P");
    }
    HostOverlay {
        underlay_ip: HOST_A,
        underlay_mac: HOST_MAC,
        next_hop_mac: ROUTER_MAC,
        v2p,
        v2b,
        mcast: Default::default(),
    }
}

fn clock() -> Box<ManualClock> {
    let c = ManualClock::new();
    c.set(1_000_000_000);
    Box::new(c)
}

/// What the port checks need to know about the vNIC under test.
pub struct Ctx {
    pub vni: Vni,
    pub guest_mac: [u8; 6],
    pub gw_mac: [u8; 6],
    /// The guest's own addresses.
    pub guest_ips: Vec<IpAddr>,
    /// What inbound traffic may be for: those, attached subnets (private
    /// and external) and transit prefixes allowed in.
    pub guest_prefixes: Vec<IpCidr>,
    pub host: HostOverlay,
}

impl Ctx {
    fn of(c: &VnicConfig, host: &HostOverlay) -> Ctx {
        let mut guest_ips = Vec::new();
        guest_ips.extend(c.ipv4.as_ref().map(|v| IpAddr::V4(v.addr)));
        guest_ips.extend(c.ipv6.as_ref().map(|v| IpAddr::V6(v.addr)));
        Ctx {
            vni: c.vni,
            guest_mac: c.guest_mac.0,
            gw_mac: c.gateway_mac.0,
            guest_ips,
            guest_prefixes: vnic::gateway::layer::inbound_prefixes(c),
            host: host.clone(),
        }
    }
}

struct Vpc {
    vnic: VnicPort,
    ctx: Ctx,
}

thread_local! {
    /// vm1's port, built once per thread (per fuzzing process).
    static VPC: RefCell<Option<Vpc>> = const { RefCell::new(None) };
}

fn with_vpc<R>(f: impl FnOnce(&mut Vpc) -> R) -> R {
    VPC.with(|cell| {
        let mut slot = cell.borrow_mut();
        let vpc = slot.get_or_insert_with(|| {
            let host = host_a();
            let cfg = vpc_config();
            let vnic = VnicPort::build(&cfg, &host, clock()).expect("vm1's port builds");
            let ctx = Ctx::of(&cfg, &host);
            Vpc { vnic, ctx }
        });
        // Every input starts from an empty flow table, so a crash input
        // replays on its own.
        vpc.vnic.port.clear_flows();
        f(vpc)
    })
}

// ---------------------------------------------------------------------
// Frame builders (no etherparse: the fuzz crate does not depend on it).

fn eth(dst: [u8; 6], src: [u8; 6], ether_type: u16) -> Vec<u8> {
    let mut v = Vec::with_capacity(128);
    v.extend_from_slice(&dst);
    v.extend_from_slice(&src);
    v.extend_from_slice(&ether_type.to_be_bytes());
    v
}

/// `inner` as the underlay carries it: Ethernet / IPv6 `src` -> `dst` /
/// UDP to 6081 / Geneve on `vni` (no options). `None` if it cannot fit
/// an IPv6 payload length.
pub fn geneve_wrap(inner: &[u8], src: Ipv6Addr, dst: Ipv6Addr, vni: u32) -> Option<Vec<u8>> {
    Geneve::new(src, dst, vni)
        .macs(ROUTER_MAC, HOST_MAC)
        .sport(50000)
        .udp_checksum(false) // none (RFC 6935 tunnels)
        .try_wrap(inner)
}

/// A TCP segment with `flags` and no payload, IPv4 or IPv6 (by `src`);
/// `None` if `src` and `dst` are of different families. The TCP checksum
/// is left 0 (nothing here verifies it).
pub fn tcp_frame(
    smac: [u8; 6],
    dmac: [u8; 6],
    (src, sport): (IpAddr, u16),
    (dst, dport): (IpAddr, u16),
    flags: u8,
) -> Option<Vec<u8>> {
    let mut tcp = Vec::with_capacity(20);
    tcp.extend_from_slice(&sport.to_be_bytes());
    tcp.extend_from_slice(&dport.to_be_bytes());
    tcp.extend_from_slice(&1u32.to_be_bytes());
    tcp.extend_from_slice(&0u32.to_be_bytes());
    tcp.extend_from_slice(&[0x50, flags, 0xfa, 0xf0, 0, 0, 0, 0]);
    let v = match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let mut v = eth(dmac, smac, 0x0800);
            let mut ip = vec![0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, 6, 0, 0];
            ip.extend_from_slice(&s.octets());
            ip.extend_from_slice(&d.octets());
            let c = checksum(&ip);
            ip[10..12].copy_from_slice(&c.to_be_bytes());
            v.extend_from_slice(&ip);
            v.extend_from_slice(&tcp);
            v
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let mut v = eth(dmac, smac, 0x86dd);
            v.extend_from_slice(&[0x60, 0, 0, 0, 0, 20, 6, 64]);
            v.extend_from_slice(&s.octets());
            v.extend_from_slice(&d.octets());
            v.extend_from_slice(&tcp);
            v
        }
        _ => return None,
    };
    Some(v)
}

// ---------------------------------------------------------------------
// Parsing.

/// The parse contract (`dataplane::headers` module documentation): after
/// `Ok`, every offset points inside the frame with the whole header it
/// names present.
pub fn check_offsets(f: &[u8], p: &Parsed) {
    let o = p.off;
    let (l2, l3, l4, end) = (
        usize::from(o.inner_l2),
        usize::from(o.inner_l3),
        usize::from(o.inner_l4),
        usize::from(o.inner_end),
    );
    assert!(
        end <= f.len(),
        "inner_end {end} past the frame ({}): {o:?}",
        f.len()
    );
    assert!(l2 + 14 <= l3 && l3 <= end, "l2/l3/end out of order: {o:?}");
    match p.hdrs.outer {
        Some(out) => {
            let (ol3, ol4, g) = (
                usize::from(o.outer_l3),
                usize::from(o.outer_l4),
                usize::from(o.geneve),
            );
            assert!(
                ol3 >= 14 && ol3 + 40 <= ol4 && ol4 + 8 == g,
                "outer offsets: {o:?}"
            );
            assert_eq!(
                g + 8 + usize::from(out.geneve.opt_len),
                l2,
                "the guest frame does not follow the Geneve options: {o:?} {out:?}"
            );
            assert_eq!(out.udp_dst, GENEVE_PORT);
        }
        None => assert_eq!(
            (o.outer_l3, o.outer_l4, o.geneve, o.inner_l2),
            (0, 0, 0, 0),
            "outer offsets of a plain frame"
        ),
    }
    let inner = &p.hdrs.inner;
    match inner.l3 {
        L3::Ipv4(_) => {
            assert!(l3 + 20 <= l4 && l4 <= end, "IPv4 offsets: {o:?}");
            assert_eq!(checksum(&f[l3..l4]), 0, "IPv4 header checksum not verified");
        }
        L3::Ipv6(_) => assert!(l3 + 40 <= l4 && l4 <= end, "IPv6 offsets: {o:?}"),
        L3::Arp(_) => assert!(l3 + 28 <= end, "ARP offsets: {o:?}"),
        L3::None => assert_eq!(inner.l4, L4::None, "an L4 header without L3"),
    }
    let need = match inner.l4 {
        L4::Tcp(_) => 20,
        L4::Udp { .. } | L4::Icmp { .. } | L4::Icmp6 { .. } => 8,
        L4::None | L4::Unknown => 0,
    };
    assert!(
        l4 + need <= end,
        "L4 header past the datagram: {o:?} {:?}",
        inner.l4
    );
    if let Some(ip) = inner.ip() {
        if ip.frag == Frag::Later {
            assert_eq!(inner.l4, L4::None, "a later fragment with an L4 header");
        }
    }
    // What the port does with an ICMP error: read the packet it quotes.
    if quoted::is_error(&inner.l4) {
        let v6 = matches!(inner.l3, L3::Ipv6(_));
        let icmp = &f[l4..end];
        if let Some(q) = quoted::quoted(icmp, v6) {
            check_quoted(icmp, v6, &q);
        }
    }
}

/// `parse_fast`'s contract: a frame it reads, the full parse reads too,
/// with the same flow key, offsets and TCP flags.
fn check_fast(data: &[u8], mode: ParseMode, full: Option<&Parsed>) {
    let Some(f) = parse_fast(data, mode) else {
        return;
    };
    let Some(p) = full else {
        panic!("parse_fast reads a frame the full parse refuses");
    };
    assert_eq!(
        Some(f.key),
        dataplane::FlowKey::of(&p.hdrs),
        "flow keys differ"
    );
    assert_eq!(f.off, p.off, "offsets differ");
    let flags = match p.hdrs.inner.l4 {
        L4::Tcp(t) => Some(t.flags),
        _ => None,
    };
    assert_eq!(f.tcp_flags, flags, "TCP flags differ");
}

pub fn parse_plain(data: &[u8]) -> Option<Parsed> {
    let r = parse(data, ParseMode::Plain).ok();
    check_fast(data, ParseMode::Plain, r.as_ref());
    let p = r?;
    check_offsets(data, &p);
    Some(p)
}

pub fn parse_geneve(data: &[u8]) -> Option<Parsed> {
    let r = parse(data, ParseMode::Geneve).ok();
    check_fast(data, ParseMode::Geneve, r.as_ref());
    let p = r?;
    check_offsets(data, &p);
    // The guest frame parses the same on its own as in its tunnel.
    let (l2, end) = (usize::from(p.off.inner_l2), usize::from(p.off.inner_end));
    if end < usize::from(u16::MAX) {
        let alone = parse(&data[l2..end], ParseMode::Plain).unwrap_or_else(|e| {
            panic!("the guest frame parses in its tunnel but not on its own: {e}")
        });
        assert_eq!(alone.hdrs.inner, p.hdrs.inner, "inner headers differ");
        let shift = |v: u16| v.checked_sub(p.off.inner_l2);
        assert_eq!(
            (
                Some(alone.off.inner_l3),
                Some(alone.off.inner_l4),
                Some(alone.off.inner_end)
            ),
            (
                shift(p.off.inner_l3),
                match p.hdrs.inner.l3 {
                    L3::Ipv4(_) | L3::Ipv6(_) => shift(p.off.inner_l4),
                    _ => Some(0),
                },
                shift(p.off.inner_end)
            ),
            "inner offsets differ"
        );
    }
    Some(p)
}

// ---------------------------------------------------------------------
// ICMP quotes.

fn check_quoted(icmp: &[u8], v6: bool, q: &Quoted) {
    let ip_hdr = if v6 { 40 } else { 20 };
    assert_eq!(q.v6, v6);
    assert_eq!(q.l3, 8, "the quote starts after the ICMP header");
    assert!(
        q.l3 + ip_hdr <= q.l4,
        "quoted L4 inside the IP header: {q:?}"
    );
    assert_eq!(q.l4 + q.l4_len, icmp.len(), "quoted L4 length: {q:?}");
    let ip = &icmp[q.l3..];
    let (src, dst, proto) = if v6 {
        let a = |o: usize| IpAddr::from(<[u8; 16]>::try_from(&ip[o..o + 16]).unwrap());
        (a(8), a(24), ip[6])
    } else {
        let a = |o: usize| IpAddr::from(<[u8; 4]>::try_from(&ip[o..o + 4]).unwrap());
        (a(12), a(16), ip[9])
    };
    assert_eq!((q.src, q.dst, q.proto), (src, dst, proto), "quoted fields");
    if matches!(proto, 6 | 17) {
        let p = &icmp[q.l4..];
        assert!(p.len() >= 4, "ports read past the quote: {q:?}");
        let ports = (
            u16::from_be_bytes([p[0], p[1]]),
            u16::from_be_bytes([p[2], p[3]]),
        );
        assert_eq!((q.src_port, q.dst_port), ports, "quoted ports");
    }
}

pub fn quoted(data: &[u8]) -> [Option<Quoted>; 2] {
    [false, true].map(|v6| {
        let q = quoted::quoted(data, v6)?;
        check_quoted(data, v6, &q);
        Some(q)
    })
}

// ---------------------------------------------------------------------
// Geneve options.

pub fn geneve_options_check(data: &[u8]) -> Result<overlay::OptionSummary, overlay::OptionError> {
    let r = overlay::check_options(data);
    if data.len() > GENEVE_MAX_OPT_LEN {
        assert_eq!(r, Err(overlay::OptionError::Malformed), "oversize area");
        return r;
    }
    // The policy agrees with the option walk it is built on.
    let mut walked = 0usize;
    let mut malformed = false;
    let mut external = false;
    for o in geneve_options(data).take(GENEVE_MAX_OPT_LEN) {
        match o {
            Ok(o) => {
                assert!(o.data.len() % 4 == 0 && o.data.len() <= 124, "{o:?}");
                walked += 4 + o.data.len();
                external |= o.class == overlay::SLUICE_OPT_CLASS && o.ty == overlay::EXTERNAL;
            }
            Err(_) => malformed = true,
        }
    }
    if let Ok(s) = r {
        assert!(!malformed, "options accepted that the walk refuses");
        assert_eq!(walked, data.len(), "accepted options do not fill the area");
        assert_eq!(s.external, external, "external option seen differently");
    }
    if !malformed {
        assert_eq!(
            walked,
            data.len(),
            "the walk stopped early without an error"
        );
    }
    r
}

// ---------------------------------------------------------------------
// Gateway builders.

/// The gateway of vm1 (the fixed VPC configuration).
pub fn gateway_config() -> GatewayConfig {
    GatewayConfig::from(&vpc_config())
}

thread_local! {
    static GATEWAY: GatewayConfig = gateway_config();
}

/// Every builder on `data`; returns how many answered. Each reply must
/// parse, come from the gateway's MAC and go to the guest's (or to a
/// group address).
pub fn gateway(data: &[u8]) -> usize {
    GATEWAY.with(|cfg| {
        let builders: [(&str, gateway::Reply); 6] = [
            ("arp", gateway::arp::reply(cfg, data)),
            ("dhcp4", gateway::dhcp4::reply(cfg, data)),
            ("dhcp6", gateway::dhcp6::reply(cfg, data)),
            ("ndp", gateway::ndp::reply(cfg, data)),
            ("echo4", gateway::icmp::echo4(cfg, data)),
            ("echo6", gateway::icmp::echo6(cfg, data)),
        ];
        let mut n = 0;
        for (name, r) in builders {
            if let Ok(reply) = r {
                let p = parse(&reply, ParseMode::Plain)
                    .unwrap_or_else(|e| panic!("{name} reply does not parse: {e}"));
                check_offsets(&reply, &p);
                assert_eq!(p.hdrs.inner.eth_src, cfg.gateway_mac, "{name} reply source");
                // To the guest, or broadcast / multicast (a DHCPOFFER to a
                // client without an address, an RA to all-nodes).
                let dst = p.hdrs.inner.eth_dst;
                assert!(
                    dst == cfg.guest_mac || dst[0] & 1 == 1,
                    "{name} reply to {dst:02x?}, neither the guest nor a group"
                );
                assert!(reply.len() >= 60, "{name} reply not padded");
                n += 1;
            }
        }
        // The errors the gateway sends for packets over the MTU.
        let src_mac = data.get(6..12);
        let errors = [
            ("frag_needed_v4", {
                let gw = cfg.gateway_ip4.unwrap_or(Ipv4Addr::UNSPECIFIED);
                overlay::frag_needed_v4(data, cfg.gateway_mac, gw, overlay::mtu::IPV4_MIN_MTU)
            }),
            ("packet_too_big_v6", {
                let gw = cfg.gateway_ip6.unwrap_or(Ipv6Addr::UNSPECIFIED);
                overlay::packet_too_big_v6(data, cfg.gateway_mac, gw, overlay::mtu::IPV6_MIN_MTU)
            }),
        ];
        for (name, r) in errors {
            if let Some(reply) = r {
                let p = parse(&reply, ParseMode::Plain)
                    .unwrap_or_else(|e| panic!("{name} error does not parse: {e}"));
                check_offsets(&reply, &p);
                assert_eq!(p.hdrs.inner.eth_src, cfg.gateway_mac, "{name} source");
                assert_eq!(
                    Some(&p.hdrs.inner.eth_dst[..]),
                    src_mac,
                    "{name} destination"
                );
                n += 1;
            }
        }
        n
    })
}

// ---------------------------------------------------------------------
// The VPC port.

/// A verdict's name, for the regression test's expectations.
pub fn verdict_name(v: &Verdict) -> &'static str {
    match v {
        Verdict::Forward => "forward",
        Verdict::Hairpin(_) => "hairpin",
        Verdict::Drop(r) => r.name(),
    }
}

/// An outbound verdict: a forwarded frame is tunnelled on the vNIC's VNI,
/// from this host (tenant isolation); a hairpin reply parses.
fn check_out(ctx: &Ctx, v: &Verdict, pkt: &PacketBuf) {
    match v {
        Verdict::Forward => {
            let f = pkt.as_slice();
            let p = parse(f, ParseMode::Geneve)
                .unwrap_or_else(|e| panic!("forwarded outbound frame is not Geneve: {e}"));
            check_offsets(f, &p);
            let o = p.hdrs.outer.expect("Geneve has outer headers");
            assert_eq!(o.geneve.vni, ctx.vni, "tunnelled on another VNI");
            assert_eq!(o.ip_src, ctx.host.underlay_ip, "outer source not this host");
            assert_eq!(
                o.eth_src, ctx.host.underlay_mac,
                "outer MAC not this host's"
            );
            assert!(!o.geneve.critical, "sluice sends no critical option");
        }
        Verdict::Hairpin(r) => {
            let f = r.as_slice();
            let p = parse(f, ParseMode::Plain)
                .unwrap_or_else(|e| panic!("outbound hairpin reply does not parse: {e}"));
            check_offsets(f, &p);
        }
        Verdict::Drop(_) => {}
    }
}

/// An inbound verdict on `input`: a frame is delivered only if it came on
/// the vNIC's VNI to this host, from a host the tables know, and it goes
/// to the guest's MAC and one of its addresses.
fn check_in(ctx: &Ctx, input: &[u8], v: &Verdict, pkt: &PacketBuf) {
    if let Verdict::Forward = v {
        let came = parse(input, ParseMode::Geneve)
            .unwrap_or_else(|e| panic!("delivered a frame that is not Geneve: {e}"));
        let o = came.hdrs.outer.expect("Geneve has outer headers");
        assert_eq!(o.geneve.vni, ctx.vni, "delivered a frame of another VNI");
        assert_eq!(
            o.ip_dst, ctx.host.underlay_ip,
            "delivered a frame for another host"
        );
        assert!(
            [HOST_A, HOST_B, BOUNDARY].contains(&o.ip_src),
            "delivered a frame from unknown host {}",
            o.ip_src
        );
        let f = pkt.as_slice();
        let p = parse(f, ParseMode::Plain)
            .unwrap_or_else(|e| panic!("delivered frame does not parse: {e}"));
        check_offsets(f, &p);
        assert_eq!(
            p.hdrs.inner.eth_src, ctx.gw_mac,
            "not from the gateway's MAC"
        );
        let dst = p.hdrs.inner.ip().map(|ip| ip.dst);
        // A group's datagram (a member's copy, as the switch hands it):
        // routable, to the group's MAC, never to the guest's.
        if let Some(g) = dst.filter(|d| overlay::mcast::is_multicast(*d)) {
            assert_eq!(
                overlay::mcast::check_group(g),
                Ok(()),
                "delivered to link-local group {g}"
            );
            assert_ne!(
                p.hdrs.inner.eth_dst, ctx.guest_mac,
                "a group datagram to the guest's MAC"
            );
            return;
        }
        assert_eq!(
            p.hdrs.inner.eth_dst, ctx.guest_mac,
            "delivered to another MAC"
        );
        assert!(
            dst.is_some_and(|d| ctx.guest_prefixes.iter().any(|p| p.contains(d))),
            "delivered to {dst:?}, not the guest's address"
        );
    }
}

fn process(port: &mut dataplane::Port, dir: Direction, frame: &[u8]) -> (Verdict, PacketBuf) {
    let mut p = PacketBuf::from_frame(frame);
    let v = port.process(dir, &mut p);
    (v, p)
}

/// `data` as a guest frame, twice (slow path, then the flow table's fast
/// path). Returns the first verdict's name.
pub fn vpc_port_out(data: &[u8]) -> &'static str {
    with_vpc(|vpc| {
        let mut first = "";
        for _ in 0..2 {
            let (v, p) = process(&mut vpc.vnic.port, Direction::Out, data);
            check_out(&vpc.ctx, &v, &p);
            if first.is_empty() {
                first = verdict_name(&v);
            }
        }
        first
    })
}

/// The underlay host `inner` would come from: where V2P says its source
/// lives, else the boundary.
fn sender(host: &HostOverlay, vni: Vni, inner: &[u8]) -> Ipv6Addr {
    parse(inner, ParseMode::Plain)
        .ok()
        .and_then(|p| p.hdrs.inner.ip().map(|ip| ip.src))
        .and_then(|src| host.v2p.get(vni, src))
        .map_or(BOUNDARY, |(d, _)| d.host)
}

/// A delivered underlay frame rewritten in place to come on another VNI,
/// and from an unknown host (checksum-free fields: UDP checksums are not
/// verified).
fn retunnelled(frame: &[u8]) -> Vec<Vec<u8>> {
    let Ok(p) = parse(frame, ParseMode::Geneve) else {
        return Vec::new();
    };
    let vni_at = usize::from(p.off.geneve) + 4;
    let src_at = usize::from(p.off.outer_l3) + 8;
    let mut other_vni = frame.to_vec();
    other_vni[vni_at..vni_at + 3].copy_from_slice(&OTHER_VNI.to_be_bytes()[1..]);
    let mut stranger = frame.to_vec();
    stranger[src_at..src_at + 16].copy_from_slice(&STRANGER.octets());
    vec![other_vni, stranger]
}

/// `data` as an underlay frame, then wrapped in a Geneve tunnel on the
/// vNIC's VNI from the host its source lives on (each twice when
/// delivered: slow path, then fast path). A delivered frame is then
/// replayed on another VNI and from an unknown host: neither may be
/// delivered, whatever flow state the first left. Returns the verdicts'
/// names (raw, wrapped).
pub fn vpc_port_in(data: &[u8]) -> [&'static str; 2] {
    with_vpc(|vpc| {
        let mut names = ["", ""];
        let vni = vpc.ctx.vni;
        let from = sender(&vpc.ctx.host, vni, data);
        let wrapped = geneve_wrap(data, from, HOST_A, vni.get());
        let inputs = [Some(data.to_vec()), wrapped];
        for (i, frame) in inputs.iter().enumerate() {
            let Some(frame) = frame else { continue };
            for round in 0..2 {
                let (v, p) = process(&mut vpc.vnic.port, Direction::In, frame);
                check_in(&vpc.ctx, frame, &v, &p);
                if round == 0 {
                    names[i] = verdict_name(&v);
                }
                if !matches!(v, Verdict::Forward) {
                    break;
                }
            }
        }
        let mut others = Vec::new();
        if names[0] == "forward" {
            others.extend(retunnelled(data));
        }
        if names[1] == "forward" {
            others.extend(geneve_wrap(data, from, HOST_A, OTHER_VNI));
            others.extend(geneve_wrap(data, STRANGER, HOST_A, vni.get()));
        }
        for frame in &others {
            let (v, p) = process(&mut vpc.vnic.port, Direction::In, frame);
            check_in(&vpc.ctx, frame, &v, &p);
        }
        names
    })
}

// ---------------------------------------------------------------------
// Host A's switch: the outer checks before any port.

struct SwitchHost {
    switch: vmm_net::switch::Switch,
    uplink: vmm_net::backend::Wire,
    guest: vmm_net::backend::Wire,
}

thread_local! {
    static SWITCH: RefCell<Option<SwitchHost>> = const { RefCell::new(None) };
}

/// `data` from the underlay through host A's switch to vm1's port: as
/// it is, wrapped in a tunnel from the host its source lives on with the
/// outer checksum filled in, the same with the Geneve O bit, and with a
/// zero checksum. Each frame is delivered to the guest, answered, or
/// counted as a drop by the switch or the port: never lost unseen. A
/// control packet (O bit) and a zero-checksum tunnel (refused by
/// default, RFC 6936) are never delivered. Returns how many of the four
/// reached the guest.
pub fn switch_uplink(data: &[u8]) -> usize {
    SWITCH.with(|cell| {
        let mut slot = cell.borrow_mut();
        let h = slot.get_or_insert_with(|| {
            let host = host_a();
            let uplink = vmm_net::backend::Wire::new();
            let guest = vmm_net::backend::Wire::new();
            let mut switch = vmm_net::switch::Switch::new(HOST_A, Box::new(uplink.backend()));
            let vnic = VnicPort::build(&vpc_config(), &host, clock()).expect("vm1's port builds");
            switch
                .attach(vnic, Box::new(guest.backend()))
                .expect("vm1 attaches");
            SwitchHost {
                switch,
                uplink,
                guest,
            }
        });
        let vni = Vni::new(VNI).expect("VNI");
        let from = sender(&host_a(), vni, data);
        let mut frames = vec![(data.to_vec(), true)];
        if let Some(mut t) = geneve_wrap(data, from, HOST_A, VNI) {
            fill_outer_udp(&mut t);
            let mut oam = t.clone();
            oam[63] |= 0x80;
            fill_outer_udp(&mut oam);
            let mut zero = t.clone();
            zero[60..62].copy_from_slice(&[0, 0]);
            frames.extend([(t, true), (oam, false), (zero, false)]);
        }
        let mut delivered = 0;
        for (frame, may_deliver) in frames {
            if let Some(v) = h.switch.port_mut("vm1") {
                v.port.clear_flows();
            }
            let drops = |h: &SwitchHost| {
                let port: u64 = h.switch.port("vm1").map_or(0, |v| {
                    v.port.stats().drop_counts().iter().map(|(_, n)| n).sum()
                });
                h.switch.stats().drops.total() + port
            };
            let before = drops(h);
            h.uplink.send(&frame);
            let _ = h.switch.poll();
            let to_guest = h.guest.take().len();
            let answered = h.uplink.take().len();
            let dropped = drops(h) - before;
            assert_eq!(
                to_guest as u64 + answered as u64 + dropped,
                1,
                "one frame: {to_guest} to the guest, {answered} answered, {dropped} counted as \
                 dropped ({:?})",
                h.switch.stats().drops.counts()
            );
            assert!(
                may_deliver || to_guest == 0,
                "a control packet or a zero-checksum tunnel reached the guest"
            );
            delivered += to_guest;
        }
        delivered
    })
}

// ---------------------------------------------------------------------
// vNIC configuration.

thread_local! {
    static HOST: HostOverlay = host_a();
}

/// Whether `data` is a `VnicConfig` that validates. A valid one must
/// build a port, survive a JSON round trip unchanged, and process a few
/// packets (its guest's TCP out, a tunnelled TCP in) within the port
/// checks; an invalid one must not build.
pub fn vnic_config(data: &[u8]) -> bool {
    let Ok(c) = serde_json::from_slice::<VnicConfig>(data) else {
        return false;
    };
    let host = HOST.with(|h| h.clone());
    if let Err(e) = c.validate() {
        let _ = e.to_string();
        assert!(
            VnicPort::build(&c, &host, clock()).is_err(),
            "an invalid configuration built a port ({e})"
        );
        return false;
    }
    let json = serde_json::to_vec(&c).expect("a configuration serializes");
    let back: VnicConfig = serde_json::from_slice(&json)
        .unwrap_or_else(|e| panic!("a valid configuration does not read back: {e}"));
    assert_eq!(back, c, "JSON round trip changed the configuration");
    let mut vnic = VnicPort::build(&c, &host, clock())
        .unwrap_or_else(|e| panic!("a valid configuration does not build: {e}"));
    let ctx = Ctx::of(&c, &host);
    let remote = |ip: &IpAddr| match ip {
        IpAddr::V4(_) => IpAddr::V4(REMOTE_IP4),
        IpAddr::V6(_) => IpAddr::V6(REMOTE_IP6),
    };
    for ip in &ctx.guest_ips {
        let out = tcp_frame(
            ctx.guest_mac,
            ctx.gw_mac,
            (*ip, 40000),
            (remote(ip), 443),
            0x02,
        );
        let inb = tcp_frame(
            ctx.gw_mac,
            ctx.guest_mac,
            (remote(ip), 443),
            (*ip, 22),
            0x02,
        )
        .and_then(|f| geneve_wrap(&f, BOUNDARY, HOST_A, ctx.vni.get()));
        if let Some(f) = out {
            let (v, p) = process(&mut vnic.port, Direction::Out, &f);
            check_out(&ctx, &v, &p);
        }
        if let Some(f) = inb {
            let (v, p) = process(&mut vnic.port, Direction::In, &f);
            check_in(&ctx, &f, &v, &p);
        }
    }
    true
}
