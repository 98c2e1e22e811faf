//! The scenario vocabulary: packet builders (etherparse, an implementation
//! independent of ours), canned ports, small test actions, and assertions.

#![allow(dead_code)]

use dataplane::action::{ActionDesc, GenError, HairpinAction, StatefulAction, StaticAction};
use dataplane::headers::{Headers, Mac, L3, L4};
use dataplane::port::PortStats;
use dataplane::transform::Encap;
use dataplane::{
    Action, DefaultAction, Direction, FlowKey, LayerConfig, ManualClock, Meta, PacketBuf,
    ParseMode, Port, PortConfig, Rule, Transform, Vni,
};
use etherparse::{NetHeaders, PacketBuilder, PacketHeaders, TransportHeader};
use sluice_test_support::build::Tcp;
use sluice_test_support::{assert_checksums, udp, Geneve};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

pub const GUEST_MAC: Mac = [0xa8, 0x40, 0x25, 0x00, 0x00, 0x01];
pub const GW_MAC: Mac = [0xa8, 0x40, 0x25, 0xff, 0xff, 0x01];
pub const PEER_MAC: Mac = [0xa8, 0x40, 0x25, 0x00, 0x00, 0x02];
pub const HOST_MAC: Mac = [0x02, 0x00, 0x00, 0x00, 0x00, 0x10];
pub const ROUTER_MAC: Mac = [0x02, 0x00, 0x00, 0x00, 0x00, 0x20];

pub fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

pub fn v4(s: &str) -> [u8; 4] {
    s.parse::<Ipv4Addr>().unwrap().octets()
}

pub fn v6(s: &str) -> [u8; 16] {
    s.parse::<Ipv6Addr>().unwrap().octets()
}

// ---------------------------------------------------------------- packets

/// A TCP/IPv4 segment from `src` to `dst` with flags like "S", "SA", "A",
/// "FA", "R", and a small payload.
pub fn tcp4(src: (&str, u16), dst: (&str, u16), flags: &str) -> Vec<u8> {
    tcp4_macs(GUEST_MAC, GW_MAC, src, dst, flags)
}

pub fn tcp4_macs(smac: Mac, dmac: Mac, src: (&str, u16), dst: (&str, u16), flags: &str) -> Vec<u8> {
    Tcp::new((smac, dmac), sock(src), sock(dst))
        .window(64240)
        .flags_acking(flags, 5000)
        .payload(b"hello sluice")
        .build()
}

pub fn tcp6(src: (&str, u16), dst: (&str, u16), flags: &str) -> Vec<u8> {
    Tcp::new((GUEST_MAC, GW_MAC), sock(src), sock(dst))
        .flags_acking(flags, 5000)
        .payload(b"hello sluice v6")
        .build()
}

fn sock((addr, port): (&str, u16)) -> SocketAddr {
    SocketAddr::new(ip(addr), port)
}

pub fn udp4(src: (&str, u16), dst: (&str, u16)) -> Vec<u8> {
    udp((GUEST_MAC, GW_MAC), sock(src), sock(dst), b"datagram")
}

pub fn udp6(src: (&str, u16), dst: (&str, u16)) -> Vec<u8> {
    udp((GUEST_MAC, GW_MAC), sock(src), sock(dst), b"datagram6")
}

pub fn ping4(src: &str, dst: &str, id: u16) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ethernet2(GUEST_MAC, GW_MAC)
        .ipv4(v4(src), v4(dst), 64)
        .icmpv4_echo_request(id, 1)
        .write(&mut v, b"ping payload")
        .unwrap();
    v
}

pub fn pong4(src: &str, dst: &str, id: u16) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ethernet2(GW_MAC, GUEST_MAC)
        .ipv4(v4(src), v4(dst), 64)
        .icmpv4_echo_reply(id, 1)
        .write(&mut v, b"ping payload")
        .unwrap();
    v
}

pub fn ping6(src: &str, dst: &str, id: u16) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ethernet2(GUEST_MAC, GW_MAC)
        .ipv6(v6(src), v6(dst), 64)
        .icmpv6_echo_request(id, 1)
        .write(&mut v, b"ping6 payload")
        .unwrap();
    v
}

/// The reply to a frame as the network would deliver it back (MACs,
/// addresses, ports swapped; flags as given).
pub fn reply_tcp4(frame: &[u8], flags: &str) -> Vec<u8> {
    let h = parse(frame);
    let (s, d) = (h.src_ip.to_string(), h.dst_ip.to_string());
    tcp4_macs(
        h.dst_mac,
        h.src_mac,
        (&d, h.dst_port),
        (&s, h.src_port),
        flags,
    )
}

/// Fields of a frame as etherparse reads them.
#[derive(Debug, Clone)]
pub struct Seen {
    pub src_mac: Mac,
    pub dst_mac: Mac,
    pub src_ip: IpAddr,
    pub dst_ip: IpAddr,
    pub src_port: u16,
    pub dst_port: u16,
}

/// Parses a plain frame with etherparse and checks every checksum in it
/// (with the test-support inspector: code independent of ours).
pub fn parse(frame: &[u8]) -> Seen {
    assert_checksums(frame);
    let p = PacketHeaders::from_ethernet_slice(frame).expect("etherparse reads the frame");
    let eth = p
        .link
        .clone()
        .and_then(|l| l.ethernet2())
        .expect("ethernet");
    let (src_ip, dst_ip) = match &p.net {
        Some(NetHeaders::Ipv4(h, _)) => (IpAddr::from(h.source), IpAddr::from(h.destination)),
        Some(NetHeaders::Ipv6(h, _)) => (IpAddr::from(h.source), IpAddr::from(h.destination)),
        other => panic!("not IP: {other:?}"),
    };
    let (src_port, dst_port) =
        match &p.transport {
            Some(TransportHeader::Tcp(t)) => (t.source_port, t.destination_port),
            Some(TransportHeader::Udp(u)) => (u.source_port, u.destination_port),
            Some(TransportHeader::Icmpv4(i)) => {
                let id = match i.icmp_type {
                    etherparse::Icmpv4Type::EchoRequest(e)
                    | etherparse::Icmpv4Type::EchoReply(e) => e.id,
                    _ => 0,
                };
                (id, id)
            }
            Some(TransportHeader::Icmpv6(i)) => {
                let id = match i.icmp_type {
                    etherparse::Icmpv6Type::EchoRequest(e)
                    | etherparse::Icmpv6Type::EchoReply(e) => e.id,
                    _ => 0,
                };
                (id, id)
            }
            other => panic!("unexpected transport {other:?}"),
        };
    Seen {
        src_mac: eth.source,
        dst_mac: eth.destination,
        src_ip,
        dst_ip,
        src_port,
        dst_port,
    }
}

/// The outer headers of a Geneve frame as etherparse reads them.
#[derive(Debug)]
pub struct SeenGeneve {
    pub outer_src_mac: Mac,
    pub outer_dst_mac: Mac,
    pub outer_src: Ipv6Addr,
    pub outer_dst: Ipv6Addr,
    pub udp_src: u16,
    pub udp_dst: u16,
    pub vni: u32,
    pub inner: Vec<u8>,
}

/// Parses an encapsulated frame, checking the outer UDP checksum and the
/// Geneve header by hand (etherparse has no Geneve), and returns the inner
/// frame.
pub fn parse_geneve(frame: &[u8]) -> SeenGeneve {
    let p = PacketHeaders::from_ethernet_slice(frame).expect("etherparse reads the outer frame");
    let eth = p.link.clone().and_then(|l| l.ethernet2()).unwrap();
    let payload = p.payload.slice();
    let Some(NetHeaders::Ipv6(ip, _)) = &p.net else {
        panic!("outer is not IPv6")
    };
    let Some(TransportHeader::Udp(u)) = &p.transport else {
        panic!("outer is not UDP")
    };
    // The outer UDP checksum (never 0 from sluice).
    assert_checksums(frame);
    assert_eq!(
        usize::from(ip.payload_length),
        8 + payload.len(),
        "IPv6 payload length"
    );
    assert_eq!(usize::from(u.length), 8 + payload.len(), "UDP length");
    assert_eq!(payload[0] >> 6, 0, "Geneve version");
    let opt_len = usize::from(payload[0] & 0x3f) * 4;
    assert_eq!(
        u16::from_be_bytes([payload[2], payload[3]]),
        0x6558,
        "Geneve protocol"
    );
    let vni = u32::from_be_bytes([0, payload[4], payload[5], payload[6]]);
    SeenGeneve {
        outer_src_mac: eth.source,
        outer_dst_mac: eth.destination,
        outer_src: Ipv6Addr::from(ip.source),
        outer_dst: Ipv6Addr::from(ip.destination),
        udp_src: u.source_port,
        udp_dst: u.destination_port,
        vni,
        inner: payload[8 + opt_len..].to_vec(),
    }
}

/// Wraps an inner frame in Geneve the way a remote host would (built here
/// by hand, independently of the engine's encapsulation code).
pub fn geneve_wrap(inner: &[u8], src: &str, dst: &str, vni: u32) -> Vec<u8> {
    Geneve::new(src.parse().unwrap(), dst.parse().unwrap(), vni)
        .macs(ROUTER_MAC, HOST_MAC)
        .wrap(inner)
}

// ---------------------------------------------------------------- ports

pub struct Fixture {
    pub port: Port,
    pub clock: ManualClock,
}

/// A port with one layer `fw`: inbound denied, outbound allowed by
/// default, like a VPC firewall before any rule.
pub fn fw_port(flow_limit: u32) -> Fixture {
    port_with(
        flow_limit,
        &[("fw", DefaultAction::Deny, DefaultAction::Allow)],
    )
}

pub fn port_with(flow_limit: u32, layers: &[(&str, DefaultAction, DefaultAction)]) -> Fixture {
    port_parsing(ParseMode::Plain, flow_limit, layers)
}

/// A port whose inbound frames come Geneve-encapsulated from the underlay.
pub fn geneve_port(flow_limit: u32, layers: &[(&str, DefaultAction, DefaultAction)]) -> Fixture {
    port_parsing(ParseMode::Geneve, flow_limit, layers)
}

fn port_parsing(
    inbound: ParseMode,
    flow_limit: u32,
    layers: &[(&str, DefaultAction, DefaultAction)],
) -> Fixture {
    let clock = ManualClock::new();
    clock.set(1_000_000_000);
    let mut cfg = PortConfig::new("vm1");
    cfg.flow_limit = flow_limit;
    cfg.inbound = inbound;
    let mut port = Port::with_clock(cfg, Box::new(clock.clone()));
    for (name, din, dout) in layers {
        port.add_layer(LayerConfig::new(name, *din, *dout)).unwrap();
    }
    Fixture { port, clock }
}

impl Fixture {
    /// Sends a frame through the port and returns the verdict and the
    /// frame as it left.
    pub fn send(&mut self, dir: Direction, frame: &[u8]) -> (dataplane::Verdict, Vec<u8>) {
        let mut p = PacketBuf::from_frame(frame);
        let v = self.port.process(dir, &mut p);
        (v, p.as_slice().to_vec())
    }

    pub fn out(&mut self, frame: &[u8]) -> dataplane::Verdict {
        self.send(Direction::Out, frame).0
    }

    pub fn inb(&mut self, frame: &[u8]) -> dataplane::Verdict {
        self.send(Direction::In, frame).0
    }

    /// The port's tables, for assertion messages.
    pub fn dump(&self) -> String {
        format!(
            "layers: {}\nuft: {}\ntcp: {}",
            serde_json::to_string_pretty(&self.port.dump_layers()).unwrap(),
            serde_json::to_string_pretty(&self.port.dump_uft()).unwrap(),
            serde_json::to_string_pretty(&self.port.dump_tcp_flows()).unwrap(),
        )
    }
}

/// Counter differences between two snapshots.
pub struct Delta<'a> {
    pub before: &'a PortStats,
    pub after: &'a PortStats,
}

impl Delta<'_> {
    pub fn drops(&self, r: dataplane::DropReason) -> u64 {
        self.after.drops(r) - self.before.drops(r)
    }
    pub fn hits(&self, d: Direction) -> u64 {
        self.after.dir(d).uft_hits - self.before.dir(d).uft_hits
    }
    pub fn misses(&self, d: Direction) -> u64 {
        self.after.dir(d).uft_misses - self.before.dir(d).uft_misses
    }
}

#[macro_export]
macro_rules! assert_drop {
    ($fx:expr, $v:expr, $reason:expr) => {{
        match &$v {
            dataplane::Verdict::Drop(r) if *r == $reason => {}
            other => panic!(
                "expected drop {:?}, got {:?}\n{}",
                $reason,
                other,
                $fx.dump()
            ),
        }
    }};
}

#[macro_export]
macro_rules! assert_forward {
    ($fx:expr, $v:expr) => {{
        match &$v {
            dataplane::Verdict::Forward => {}
            other => panic!("expected forward, got {:?}\n{}", other, $fx.dump()),
        }
    }};
}

// ---------------------------------------------------------------- actions

/// Sets the guest-facing MACs, as a gateway layer does.
pub struct SetMacs {
    pub out: (Mac, Mac),
    pub inb: (Mac, Mac),
}

impl fmt::Display for SetMacs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("set-macs")
    }
}

impl StaticAction for SetMacs {
    fn transform(&self, dir: Direction, _: &Headers, _: &mut Meta) -> Result<Transform, GenError> {
        let (s, d) = if dir == Direction::Out {
            self.out
        } else {
            self.inb
        };
        Ok(Transform {
            eth_src: Some(s),
            eth_dst: Some(d),
            ..Default::default()
        })
    }
}

/// Rewrites the destination address (a static 1:1 mapping).
pub struct SetDst(pub IpAddr);

impl fmt::Display for SetDst {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "set-dst {}", self.0)
    }
}

impl StaticAction for SetDst {
    fn transform(&self, _: Direction, _: &Headers, _: &mut Meta) -> Result<Transform, GenError> {
        Ok(Transform {
            ip_dst: Some(self.0),
            ..Default::default()
        })
    }
}

/// A source NAT: one external address, ports handed out from a range;
/// each flow's port returns to the pool when the flow's state is dropped.
pub struct Snat {
    pub external: IpAddr,
    pub next: AtomicU16,
    pub last: u16,
    pub free: Arc<Mutex<Vec<u16>>>,
    pub generated: AtomicUsize,
}

impl Snat {
    pub fn new(external: &str, first: u16, last: u16) -> Arc<Snat> {
        Arc::new(Snat {
            external: ip(external),
            next: AtomicU16::new(first),
            last,
            free: Arc::new(Mutex::new(Vec::new())),
            generated: AtomicUsize::new(0),
        })
    }
}

impl fmt::Display for Snat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "snat {}", self.external)
    }
}

#[derive(Debug)]
pub struct SnatDesc {
    pub orig: (IpAddr, u16),
    pub ext: (IpAddr, u16),
    pub free: Arc<Mutex<Vec<u16>>>,
}

impl Drop for SnatDesc {
    fn drop(&mut self) {
        self.free.lock().unwrap().push(self.ext.1);
    }
}

impl ActionDesc for SnatDesc {
    fn transform(&self, dir: Direction) -> Transform {
        match dir {
            Direction::Out => Transform {
                ip_src: Some(self.ext.0),
                l4_src: Some(self.ext.1),
                ..Default::default()
            },
            Direction::In => Transform {
                ip_dst: Some(self.orig.0),
                l4_dst: Some(self.orig.1),
                ..Default::default()
            },
        }
    }
}

impl StatefulAction for Snat {
    fn generate(
        &self,
        _: Direction,
        key: &FlowKey,
        _: &Headers,
        _: &Meta,
    ) -> Result<Arc<dyn ActionDesc>, GenError> {
        let port = match self.free.lock().unwrap().pop() {
            Some(p) => p,
            None => {
                let p = self.next.load(Ordering::Relaxed);
                if p > self.last {
                    return Err(GenError::Exhausted("snat ports"));
                }
                self.next.store(p + 1, Ordering::Relaxed);
                p
            }
        };
        self.generated.fetch_add(1, Ordering::Relaxed);
        Ok(Arc::new(SnatDesc {
            orig: (key.src_ip(), key.src_port),
            ext: (self.external, port),
            free: self.free.clone(),
        }))
    }
}

/// Pushes a Geneve encapsulation toward one remote host.
pub struct EncapTo {
    pub encap: Encap,
}

impl EncapTo {
    pub fn new(src: &str, dst: &str, vni: u32) -> Self {
        EncapTo {
            encap: Encap {
                eth_src: HOST_MAC,
                eth_dst: ROUTER_MAC,
                ip_src: src.parse().unwrap(),
                ip_dst: dst.parse().unwrap(),
                hop_limit: 64,
                udp_src: 0,
                vni: Vni::new(vni).unwrap(),
                options: Default::default(),
                udp_csum: true,
            },
        }
    }
}

impl fmt::Display for EncapTo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "encap {}", self.encap.ip_dst)
    }
}

impl StaticAction for EncapTo {
    fn transform(&self, dir: Direction, _: &Headers, _: &mut Meta) -> Result<Transform, GenError> {
        Ok(match dir {
            Direction::Out => Transform {
                encap: Some(self.encap.clone()),
                ..Default::default()
            },
            Direction::In => Transform {
                decap: true,
                ..Default::default()
            },
        })
    }
}

/// Answers ICMP echo requests to `addr` (a gateway's ping responder).
pub struct EchoResponder {
    pub mac: Mac,
}

impl fmt::Display for EchoResponder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("echo-responder")
    }
}

impl HairpinAction for EchoResponder {
    fn reply(&self, h: &Headers, frame: &[u8], _: &Meta) -> Result<PacketBuf, GenError> {
        let (L3::Ipv4(ip), L4::Icmp { ty: 8, ident, .. }) = (h.inner.l3, h.inner.l4) else {
            return Err(GenError::Refused("not an echo request"));
        };
        let (IpAddr::V4(s), IpAddr::V4(d)) = (ip.src, ip.dst) else {
            unreachable!()
        };
        // The echo payload follows the 8-byte ICMP header.
        let p =
            PacketHeaders::from_ethernet_slice(frame).map_err(|_| GenError::Refused("parse"))?;
        let seq = match &p.transport {
            Some(TransportHeader::Icmpv4(i)) => match i.icmp_type {
                etherparse::Icmpv4Type::EchoRequest(e) => e.seq,
                _ => 0,
            },
            _ => 0,
        };
        let mut v = Vec::new();
        PacketBuilder::ethernet2(self.mac, h.inner.eth_src)
            .ipv4(d.octets(), s.octets(), 64)
            .icmpv4_echo_reply(ident, seq)
            .write(&mut v, p.payload.slice())
            .map_err(|_| GenError::Refused("build"))?;
        Ok(PacketBuf::from_frame(&v))
    }
}

pub fn arc<T>(t: T) -> Arc<T> {
    Arc::new(t)
}

/// The action, with an identity of its own (each call makes a new one).
pub fn stateful(a: Arc<Snat>) -> Action {
    Action::Stateful(a.into())
}

/// The flow key of a frame, as the engine builds it.
pub fn key(frame: &[u8]) -> FlowKey {
    FlowKey::of(
        &dataplane::headers::parse(frame, ParseMode::Plain)
            .unwrap()
            .hdrs,
    )
    .unwrap()
}

/// A port with one firewall layer, denying both ways by default:
/// outbound allowed and remembered, inbound only as replies.
pub fn stateful_fw(limit: u32) -> Fixture {
    let mut fx = port_with(limit, &[("fw", DefaultAction::Deny, DefaultAction::Deny)]);
    fx.port
        .add_rule("fw", Direction::Out, Rule::new(1, Action::StatefulAllow))
        .unwrap();
    fx
}
