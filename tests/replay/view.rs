//! Output frames as etherparse reads them, with every length and checksum
//! checked on the way (a frame that fails panics with what was wrong).

use etherparse::{
    ArpEthIpv4Packet, Icmpv4Type, NetHeaders, PacketHeaders, TcpHeader, TransportHeader,
};
use sluice_test_support::{assert_checksums, check_checksums, Bad};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

#[derive(Clone, Debug)]
pub struct Frame {
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    pub arp: Option<ArpEthIpv4Packet>,
    pub ip: Option<Ip>,
    pub l4: L4,
    /// What follows the transport header (or the IP header).
    pub payload: Vec<u8>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ip {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub ttl: u8,
}

#[derive(Clone, Debug)]
pub enum L4 {
    None,
    Tcp(TcpHeader),
    Udp {
        sport: u16,
        dport: u16,
    },
    /// ICMP echo request (8) or reply (0), with identifier and sequence.
    Echo {
        ty: u8,
        id: u16,
        seq: u16,
    },
    OtherIcmp,
}

impl Frame {
    pub fn src_ip(&self) -> IpAddr {
        self.ip.expect("an IP packet").src
    }

    pub fn dst_ip(&self) -> IpAddr {
        self.ip.expect("an IP packet").dst
    }

    pub fn tcp(&self) -> &TcpHeader {
        match &self.l4 {
            L4::Tcp(t) => t,
            other => panic!("not TCP: {other:?}"),
        }
    }

    pub fn udp(&self) -> (u16, u16) {
        match &self.l4 {
            L4::Udp { sport, dport } => (*sport, *dport),
            other => panic!("not UDP: {other:?}"),
        }
    }

    /// (source, destination) as socket addresses, for TCP and UDP.
    pub fn ports(&self) -> (u16, u16) {
        match &self.l4 {
            L4::Tcp(t) => (t.source_port, t.destination_port),
            L4::Udp { sport, dport } => (*sport, *dport),
            other => panic!("no ports: {other:?}"),
        }
    }

    /// The TCP flags as the generator writes them (S, A, P, F, R).
    pub fn tcp_flags(&self) -> String {
        let t = self.tcp();
        [
            (t.syn, 'S'),
            (t.ack, 'A'),
            (t.psh, 'P'),
            (t.fin, 'F'),
            (t.rst, 'R'),
        ]
        .iter()
        .filter(|(on, _)| *on)
        .map(|(_, c)| *c)
        .collect()
    }
}

/// Parses an Ethernet frame; IPv4 header, TCP, UDP and ICMP checksums and
/// the IP length must be right.
pub fn frame(bytes: &[u8]) -> Frame {
    let p = PacketHeaders::from_ethernet_slice(bytes)
        .unwrap_or_else(|e| panic!("etherparse cannot read the frame: {e}"));
    let eth = p
        .link
        .clone()
        .and_then(|l| l.ethernet2())
        .expect("an Ethernet II frame");
    let payload = p.payload.slice().to_vec();
    let mut f = Frame {
        src_mac: eth.source,
        dst_mac: eth.destination,
        arp: None,
        ip: None,
        l4: L4::None,
        payload: payload.clone(),
    };
    match &p.net {
        Some(NetHeaders::Arp(a)) => {
            f.arp = Some(a.try_eth_ipv4().expect("Ethernet/IPv4 ARP"));
            return f;
        }
        Some(NetHeaders::Ipv4(h, _)) => {
            assert_ne!(
                check_checksums(bytes),
                Err(Bad::Ipv4Header),
                "IPv4 header checksum"
            );
            f.ip = Some(Ip {
                src: Ipv4Addr::from(h.source).into(),
                dst: Ipv4Addr::from(h.destination).into(),
                ttl: h.time_to_live,
            });
        }
        Some(NetHeaders::Ipv6(h, _)) => {
            f.ip = Some(Ip {
                src: Ipv6Addr::from(h.source).into(),
                dst: Ipv6Addr::from(h.destination).into(),
                ttl: h.hop_limit,
            });
        }
        None => panic!("neither ARP nor IP"),
    }
    f.l4 = match &p.transport {
        Some(TransportHeader::Tcp(t)) => {
            assert_checksums(bytes);
            L4::Tcp(t.clone())
        }
        Some(TransportHeader::Udp(u)) => {
            // A UDP checksum present and right.
            assert_checksums(bytes);
            assert_eq!(usize::from(u.length), 8 + payload.len(), "UDP length field");
            L4::Udp {
                sport: u.source_port,
                dport: u.destination_port,
            }
        }
        Some(TransportHeader::Icmpv4(i)) => {
            assert_checksums(bytes);
            match i.icmp_type {
                Icmpv4Type::EchoRequest(e) => L4::Echo {
                    ty: 8,
                    id: e.id,
                    seq: e.seq,
                },
                Icmpv4Type::EchoReply(e) => L4::Echo {
                    ty: 0,
                    id: e.id,
                    seq: e.seq,
                },
                _ => L4::OtherIcmp,
            }
        }
        None => L4::None,
        other => panic!("unexpected transport {other:?}"),
    };
    f
}

/// The underlay view of a Geneve-encapsulated frame.
#[derive(Clone, Debug)]
pub struct Tunnel {
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    pub outer_src: Ipv6Addr,
    pub outer_dst: Ipv6Addr,
    pub hop_limit: u8,
    pub sport: u16,
    pub vni: u32,
    pub options: Vec<u8>,
    pub inner: Vec<u8>,
}

/// Parses an encapsulated frame: IPv6, UDP to 6081 with a valid checksum
/// and length, Geneve version 0 carrying Ethernet (0x6558), no flags.
pub fn tunnel(bytes: &[u8]) -> Tunnel {
    let f = frame(bytes);
    let (sport, dport) = f.udp();
    assert_eq!(
        dport,
        crate::world::GENEVE_PORT,
        "outer UDP to Geneve's port"
    );
    let IpAddr::V6(outer_src) = f.src_ip() else {
        panic!("outer header not IPv6")
    };
    let IpAddr::V6(outer_dst) = f.dst_ip() else {
        panic!("outer header not IPv6")
    };
    let g = &f.payload;
    assert!(g.len() >= 8, "Geneve header");
    assert_eq!(g[0] >> 6, 0, "Geneve version 0");
    assert_eq!(g[1], 0, "no Geneve flags (O, C)");
    assert_eq!(&g[2..4], &[0x65, 0x58], "Geneve carries Ethernet");
    assert_eq!(g[7], 0, "Geneve reserved byte");
    let opt_len = usize::from(g[0] & 0x3f) * 4;
    assert!(g.len() >= 8 + opt_len + 14, "options and inner frame fit");
    Tunnel {
        src_mac: f.src_mac,
        dst_mac: f.dst_mac,
        outer_src,
        outer_dst,
        hop_limit: f.ip.expect("IP").ttl,
        sport,
        vni: u32::from_be_bytes([0, g[4], g[5], g[6]]),
        options: g[8..8 + opt_len].to_vec(),
        inner: g[8 + opt_len..].to_vec(),
    }
}

/// A DHCP message's fixed fields and options.
#[derive(Debug)]
pub struct Dhcp {
    pub op: u8,
    pub xid: u32,
    pub ciaddr: Ipv4Addr,
    pub yiaddr: Ipv4Addr,
    pub chaddr: [u8; 6],
    pub options: Vec<(u8, Vec<u8>)>,
}

impl Dhcp {
    pub fn opt(&self, code: u8) -> Option<&[u8]> {
        self.options
            .iter()
            .find(|(c, _)| *c == code)
            .map(|(_, v)| v.as_slice())
    }
}

pub fn dhcp(b: &[u8]) -> Dhcp {
    assert!(b.len() >= 240, "BOOTP message");
    assert_eq!(&b[236..240], &[99, 130, 83, 99], "DHCP magic cookie");
    let ip4 = |i: usize| Ipv4Addr::new(b[i], b[i + 1], b[i + 2], b[i + 3]);
    let mut options = Vec::new();
    let mut i = 240;
    while b[i] != 255 {
        if b[i] == 0 {
            i += 1;
            continue;
        }
        let len = usize::from(b[i + 1]);
        options.push((b[i], b[i + 2..i + 2 + len].to_vec()));
        i += 2 + len;
    }
    Dhcp {
        op: b[0],
        xid: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
        ciaddr: ip4(12),
        yiaddr: ip4(16),
        chaddr: b[28..34].try_into().expect("six bytes"),
        options,
    }
}
