//! Frame builders. Plain frames go through etherparse's `PacketBuilder`
//! (so their lengths and checksums come from code independent of
//! sluice's); Geneve is built by hand here, since etherparse has none.

use crate::checksum;
use etherparse::{
    ArpHardwareId, ArpOperation, ArpPacket, EtherType, PacketBuilder, PacketBuilderStep, TcpHeader,
};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The UDP port of Geneve (RFC 8926).
pub const GENEVE_PORT: u16 = 6081;
/// Geneve's protocol type for an Ethernet inner frame (transparent
/// Ethernet bridging).
pub const TEB: u16 = 0x6558;
pub const BROADCAST_MAC: [u8; 6] = [0xff; 6];

/// Source and destination MAC of a frame.
pub type Macs = ([u8; 6], [u8; 6]);

/// An ARP request from `sha`/`spa` for `tpa`, broadcast.
pub fn arp_request(sha: [u8; 6], spa: Ipv4Addr, tpa: Ipv4Addr) -> Vec<u8> {
    let arp = ArpPacket::new(
        ArpHardwareId::ETHERNET,
        EtherType::IPV4,
        ArpOperation::REQUEST,
        &sha,
        &spa.octets(),
        &[0; 6],
        &tpa.octets(),
    )
    .expect("an ARP request over Ethernet/IPv4 has valid lengths");
    let mut v = Vec::new();
    PacketBuilder::ethernet2(sha, BROADCAST_MAC)
        .arp(arp)
        .write(&mut v)
        .expect("an ARP frame");
    v
}

/// A TCP segment, IPv4 or IPv6 by the addresses' family, checksummed.
/// Defaults: sequence 1000, no ACK, window 64240, TTL/hop limit 64, no
/// payload.
#[derive(Clone, Debug)]
pub struct Tcp<'a> {
    pub macs: Macs,
    pub from: SocketAddr,
    pub to: SocketAddr,
    pub seq: u32,
    pub ack: Option<u32>,
    pub window: u16,
    pub ttl: u8,
    /// Letters: S(YN), F(IN), R(ST), P(SH); ACK comes from `ack` (see
    /// [`Tcp::flags_acking`]).
    pub flags: &'a str,
    pub payload: &'a [u8],
}

impl<'a> Tcp<'a> {
    pub fn new(macs: Macs, from: SocketAddr, to: SocketAddr) -> Self {
        Tcp {
            macs,
            from,
            to,
            seq: 1000,
            ack: None,
            window: 64240,
            ttl: 64,
            flags: "",
            payload: &[],
        }
    }

    pub fn seq(mut self, seq: u32) -> Self {
        self.seq = seq;
        self
    }

    pub fn ack(mut self, ack: u32) -> Self {
        self.ack = Some(ack);
        self
    }

    pub fn window(mut self, window: u16) -> Self {
        self.window = window;
        self
    }

    pub fn flags(mut self, flags: &'a str) -> Self {
        self.flags = flags;
        self
    }

    /// Flags from letters where `A` stands for ACK of `ack`: "SA" is a
    /// SYN-ACK acknowledging `ack`, "S" a SYN (`ack` unused).
    pub fn flags_acking(mut self, flags: &'a str, ack: u32) -> Self {
        if flags.contains('A') {
            self.ack = Some(ack);
        }
        self.flags = flags;
        self
    }

    pub fn payload(mut self, payload: &'a [u8]) -> Self {
        self.payload = payload;
        self
    }

    /// The frame. Panics (a test bug) on mixed address families or an
    /// unknown flag letter.
    pub fn build(&self) -> Vec<u8> {
        let eth = PacketBuilder::ethernet2(self.macs.0, self.macs.1);
        let step = match (self.from.ip(), self.to.ip()) {
            (IpAddr::V4(s), IpAddr::V4(d)) => eth.ipv4(s.octets(), d.octets(), self.ttl).tcp(
                self.from.port(),
                self.to.port(),
                self.seq,
                self.window,
            ),
            (IpAddr::V6(s), IpAddr::V6(d)) => eth.ipv6(s.octets(), d.octets(), self.ttl).tcp(
                self.from.port(),
                self.to.port(),
                self.seq,
                self.window,
            ),
            (s, d) => panic!("TCP from {s} to {d}: mixed address families"),
        };
        assert!(
            !self.flags.contains('A') || self.ack.is_some(),
            "TCP flag A without an acknowledgment number"
        );
        let mut step = with_flags(step, self.flags);
        if let Some(a) = self.ack {
            step = step.ack(a);
        }
        let mut v = Vec::new();
        step.write(&mut v, self.payload).expect("a TCP frame");
        v
    }
}

fn with_flags(mut t: PacketBuilderStep<TcpHeader>, flags: &str) -> PacketBuilderStep<TcpHeader> {
    for c in flags.chars() {
        t = match c {
            'S' => t.syn(),
            'F' => t.fin(),
            'R' => t.rst(),
            'P' => t.psh(),
            // ACK is set with its number, by `ack`.
            'A' => t,
            _ => panic!("TCP flag {c:?}: use S, A, F, R, P"),
        };
    }
    t
}

/// A TCP SYN from `from` to `to` (sequence 1000, no payload).
pub fn tcp_syn(macs: Macs, from: SocketAddr, to: SocketAddr) -> Vec<u8> {
    Tcp::new(macs, from, to).flags("S").build()
}

/// A UDP datagram carrying `payload`, IPv4 or IPv6 by the addresses'
/// family, TTL/hop limit 64, checksummed.
pub fn udp(macs: Macs, from: SocketAddr, to: SocketAddr, payload: &[u8]) -> Vec<u8> {
    let eth = PacketBuilder::ethernet2(macs.0, macs.1);
    let mut v = Vec::new();
    match (from.ip(), to.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => eth
            .ipv4(s.octets(), d.octets(), 64)
            .udp(from.port(), to.port())
            .write(&mut v, payload),
        (IpAddr::V6(s), IpAddr::V6(d)) => eth
            .ipv6(s.octets(), d.octets(), 64)
            .udp(from.port(), to.port())
            .write(&mut v, payload),
        (s, d) => panic!("UDP from {s} to {d}: mixed address families"),
    }
    .expect("a UDP frame");
    v
}

/// A Geneve tunnel over IPv6/UDP as a remote host sends it: Ethernet
/// `outer_macs`, IPv6 `src` -> `dst` (hop limit `hop_limit`), UDP
/// `sport` -> 6081 with its checksum filled in (or left 0, as RFC 6935
/// allows a tunnel to, when `udp_checksum` is false), Geneve header with
/// `flags` (O: 0x80, C: 0x40), `vni` and `options`, then the inner frame.
#[derive(Clone, Debug)]
pub struct Geneve {
    pub outer_macs: Macs,
    pub src: Ipv6Addr,
    pub dst: Ipv6Addr,
    pub hop_limit: u8,
    pub sport: u16,
    pub dport: u16,
    pub vni: u32,
    pub flags: u8,
    pub protocol: u16,
    pub options: Vec<u8>,
    pub udp_checksum: bool,
}

impl Geneve {
    /// A tunnel from `src` to `dst` on `vni`; outer MACs from
    /// 02:00:00:00:00:20 (the underlay router) to 02:00:00:00:00:10 (the
    /// host), hop limit 64, source port 50000, no options, checksummed.
    pub fn new(src: Ipv6Addr, dst: Ipv6Addr, vni: u32) -> Self {
        Geneve {
            outer_macs: ([2, 0, 0, 0, 0, 0x20], [2, 0, 0, 0, 0, 0x10]),
            src,
            dst,
            hop_limit: 64,
            sport: 50000,
            dport: GENEVE_PORT,
            vni,
            flags: 0,
            protocol: TEB,
            options: Vec::new(),
            udp_checksum: true,
        }
    }

    pub fn macs(mut self, src: [u8; 6], dst: [u8; 6]) -> Self {
        self.outer_macs = (src, dst);
        self
    }

    pub fn hop_limit(mut self, hop_limit: u8) -> Self {
        self.hop_limit = hop_limit;
        self
    }

    pub fn sport(mut self, sport: u16) -> Self {
        self.sport = sport;
        self
    }

    pub fn flags(mut self, flags: u8) -> Self {
        self.flags = flags;
        self
    }

    /// Options (whole TLVs, a multiple of 4 bytes).
    pub fn options(mut self, options: &[u8]) -> Self {
        self.options = options.to_vec();
        self
    }

    pub fn udp_checksum(mut self, on: bool) -> Self {
        self.udp_checksum = on;
        self
    }

    /// The Geneve header alone (RFC 8926 section 3.4).
    pub fn header(&self) -> Vec<u8> {
        assert_eq!(
            self.options.len() % 4,
            0,
            "Geneve options come in 4-byte words"
        );
        assert!(
            self.options.len() <= 252,
            "Geneve options are at most 252 bytes"
        );
        let mut g = vec![(self.options.len() / 4) as u8, self.flags];
        g.extend_from_slice(&self.protocol.to_be_bytes());
        g.extend_from_slice(&self.vni.to_be_bytes()[1..]);
        g.push(0);
        g.extend_from_slice(&self.options);
        g
    }

    /// `inner` in this tunnel; `None` if it does not fit an IPv6 payload.
    pub fn try_wrap(&self, inner: &[u8]) -> Option<Vec<u8>> {
        let g = self.header();
        let udp_len = u16::try_from(8 + g.len() + inner.len()).ok()?;
        let mut v = Vec::with_capacity(62 + g.len() + inner.len());
        v.extend_from_slice(&self.outer_macs.1);
        v.extend_from_slice(&self.outer_macs.0);
        v.extend_from_slice(&0x86ddu16.to_be_bytes());
        v.extend_from_slice(&[0x60, 0, 0, 0]);
        v.extend_from_slice(&udp_len.to_be_bytes());
        v.extend_from_slice(&[17, self.hop_limit]);
        v.extend_from_slice(&self.src.octets());
        v.extend_from_slice(&self.dst.octets());
        v.extend_from_slice(&self.sport.to_be_bytes());
        v.extend_from_slice(&self.dport.to_be_bytes());
        v.extend_from_slice(&udp_len.to_be_bytes());
        v.extend_from_slice(&[0, 0]);
        v.extend_from_slice(&g);
        v.extend_from_slice(inner);
        if self.udp_checksum {
            let c = udp6_checksum(&v[22..38], &v[38..54], &v[54..]);
            v[60..62].copy_from_slice(&c.to_be_bytes());
        }
        Some(v)
    }

    /// `inner` in this tunnel (panics if it cannot fit: a test bug).
    pub fn wrap(&self, inner: &[u8]) -> Vec<u8> {
        self.try_wrap(inner)
            .expect("the inner frame fits an IPv6 payload")
    }
}

/// The UDP checksum to write over `udp` (its checksum field ignored) as
/// carried in IPv6 `src` -> `dst`: never 0, which over IPv6 means "none"
/// (RFC 768 / 8200 section 8.1).
pub(crate) fn udp6_checksum(src: &[u8], dst: &[u8], udp: &[u8]) -> u16 {
    match checksum::transport(src, dst, 17, udp, Some(6)) {
        0 => 0xffff,
        c => c,
    }
}
