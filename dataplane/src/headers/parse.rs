//! The walk: one pass over a frame, header by header.

use super::arp::parse_arp;
use super::ethernet::parse_ethernet;
use super::geneve::{parse_geneve, GENEVE_PORT};
use super::icmp::{parse_icmp, parse_icmp6};
use super::ip::{parse_ipv4, parse_ipv6};
use super::tcp::parse_tcp;
use super::udp::{parse_udp, UDP_HDR_LEN};
use super::{
    ethertype, proto, Frag, Headers, Inner, Offsets, Outer, ParseError, ParseMode, Parsed, L3, L4,
};

/// Parses `frame` as `mode` says. Never panics and never allocates; see
/// the module documentation for the contract.
#[inline]
pub fn parse(frame: &[u8], mode: ParseMode) -> Result<Parsed, ParseError> {
    match mode {
        ParseMode::Plain => {
            let mut off = Offsets::default();
            let inner = walk(frame, 0, &mut off)?;
            Ok(Parsed {
                hdrs: Headers { outer: None, inner },
                off,
            })
        }
        ParseMode::Geneve => parse_encap(frame),
    }
}

/// An offset as stored in [`Offsets`]. Only an IP datagram ending past
/// 64 KiB into the frame can overflow (the IPv6 extension-header cap keeps
/// every other offset far below); `err` is the length error of that header.
#[inline]
fn off16(v: usize, err: ParseError) -> Result<u16, ParseError> {
    u16::try_from(v).map_err(|_| err)
}

/// Parses the guest frame that starts at `frame[l2]` and ends at the end
/// of `frame`, filling the inner offsets (absolute, from `frame[0]`).
#[inline(always)]
fn walk(frame: &[u8], l2: usize, off: &mut Offsets) -> Result<Inner, ParseError> {
    let b = frame.get(l2..).ok_or(ParseError::TruncatedEthernet)?;
    let eth = parse_ethernet(b)?;
    let l3 = l2 + eth.len;
    let rest = frame.get(l3..).ok_or(ParseError::TruncatedEthernet)?;
    let mut inner = Inner {
        eth_src: eth.src,
        eth_dst: eth.dst,
        vlan: eth.vlan,
        ether_type: eth.ether_type,
        l3: L3::None,
        l4: L4::None,
    };
    // l2 and l3 are below 64 KiB: Ethernet sits right after the bounded
    // outer headers (or at 0).
    off.inner_l2 = off16(l2, ParseError::TruncatedEthernet)?;
    off.inner_l3 = off16(l3, ParseError::TruncatedEthernet)?;
    match eth.ether_type {
        ethertype::IPV4 => {
            let s = parse_ipv4(rest)?;
            let err = ParseError::BadIpv4TotalLen;
            let l4 = rest.get(s.hdr_len..s.dg_len).ok_or(err)?;
            inner.l4 = parse_l4(l4, s.ip.proto, s.ip.frag, false)?;
            inner.l3 = L3::Ipv4(s.ip);
            off.inner_l4 = off16(l3 + s.hdr_len, err)?;
            off.inner_end = off16(l3 + s.dg_len, err)?;
        }
        ethertype::IPV6 => {
            let s = parse_ipv6(rest)?;
            let err = ParseError::BadIpv6PayloadLen;
            let l4 = rest.get(s.hdr_len..s.dg_len).ok_or(err)?;
            inner.l4 = parse_l4(l4, s.proto, s.frag, true)?;
            inner.l3 = L3::Ipv6(s.ip());
            off.inner_l4 = off16(l3 + s.hdr_len, err)?;
            off.inner_end = off16(l3 + s.dg_len, err)?;
        }
        other => {
            if other == ethertype::ARP {
                inner.l3 = L3::Arp(parse_arp(rest)?);
            }
            // No IP length: the frame ends the packet. Saturates for a
            // (nonsensical) non-IP frame longer than 64 KiB.
            off.inner_end = u16::try_from(frame.len()).unwrap_or(u16::MAX);
        }
    }
    Ok(inner)
}

/// Parses the L4 header in `b`, the bytes from the end of the IP headers
/// to the end of the datagram.
#[inline(always)]
fn parse_l4(b: &[u8], proto: u8, frag: Frag, v6: bool) -> Result<L4, ParseError> {
    if frag == Frag::Later {
        return Ok(L4::None);
    }
    match proto {
        proto::TCP => Ok(L4::Tcp(parse_tcp(b)?.0)),
        proto::UDP => {
            let u = parse_udp(b, frag == Frag::None)?;
            Ok(L4::Udp {
                src: u.src,
                dst: u.dst,
            })
        }
        // ICMP is IPv4's, ICMPv6 IPv6's; the other way round they are
        // just unknown protocols.
        proto::ICMP if !v6 => parse_icmp(b),
        proto::ICMPV6 if v6 => parse_icmp6(b),
        _ => Ok(L4::Unknown),
    }
}

/// Ethernet / IPv6 / UDP 6081 / Geneve / guest frame.
#[inline(always)]
fn parse_encap(frame: &[u8]) -> Result<Parsed, ParseError> {
    let eth = parse_ethernet(frame)?;
    if eth.ether_type != ethertype::IPV6 {
        return Err(ParseError::NotGeneve);
    }
    let l3 = eth.len;
    let v6 = parse_ipv6(frame.get(l3..).ok_or(ParseError::TruncatedEthernet)?)?;
    // A fragmented underlay packet is not reassembled.
    if v6.proto != proto::UDP || v6.frag != Frag::None {
        return Err(ParseError::NotGeneve);
    }
    let l4 = l3 + v6.hdr_len;
    let dg_end = l3 + v6.dg_len;
    let udp_bytes = frame.get(l4..dg_end).ok_or(ParseError::TruncatedUdp)?;
    let udp = parse_udp(udp_bytes, true)?;
    if udp.dst != GENEVE_PORT {
        return Err(ParseError::NotGeneve);
    }
    let g = l4 + UDP_HDR_LEN;
    // The UDP length bounds the Geneve packet and so the guest frame.
    let g_end = l4 + udp.len;
    let gb = frame.get(g..g_end).ok_or(ParseError::BadUdpLength)?;
    let (geneve, g_len) = parse_geneve(gb)?;

    let err = ParseError::BadIpv6PayloadLen;
    let mut off = Offsets {
        outer_l3: off16(l3, err)?,
        outer_l4: off16(l4, err)?,
        geneve: off16(g, err)?,
        ..Offsets::default()
    };
    let guest = frame.get(..g_end).ok_or(ParseError::BadUdpLength)?;
    let inner = walk(guest, g + g_len, &mut off)?;
    let outer = Outer {
        eth_src: eth.src,
        eth_dst: eth.dst,
        ip_src: v6.src,
        ip_dst: v6.dst,
        hop_limit: v6.hop_limit,
        udp_src: udp.src,
        udp_dst: udp.dst,
        geneve,
    };
    Ok(Parsed {
        hdrs: Headers {
            outer: Some(outer),
            inner,
        },
        off,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checksum::checksum;
    use crate::headers::{
        geneve_options, tcp_flags, Arp, ArpOp, GeneveInfo, GeneveOptView, Ip, Mac, Tcp, Vni,
        GENEVE_FLAG_CRITICAL, GENEVE_FLAG_OAM, IPV4_CSUM, IPV4_TOTAL_LEN, IPV6_PAYLOAD_LEN,
        UDP_LEN,
    };
    use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};
    use etherparse::{
        ArpHardwareId, ArpOperation, ArpPacket, EtherType, Ethernet2Header, IpFragOffset,
        IpHeaders, IpNumber, Ipv4Header, Ipv6Extensions, Ipv6FragmentHeader, Ipv6Header,
        Ipv6RawExtHeader, PacketBuilder, VlanId,
    };

    const SMAC: Mac = [0x02, 0, 0, 0, 0, 0x0a];
    const DMAC: Mac = [0x02, 0, 0, 0, 0, 0x0b];
    const SIP4: [u8; 4] = [10, 0, 0, 1];
    const DIP4: [u8; 4] = [192, 168, 7, 9];
    const SIP6: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
    const DIP6: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
    const PAYLOAD: &[u8] = b"sluice!";

    fn v4(a: [u8; 4]) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(a))
    }

    fn v6(a: [u8; 16]) -> IpAddr {
        IpAddr::V6(Ipv6Addr::from(a))
    }

    fn plain(f: &[u8]) -> Result<Parsed, ParseError> {
        let r = parse(f, ParseMode::Plain);
        if let Ok(p) = &r {
            check_invariants(f, p);
        }
        r
    }

    fn encap(f: &[u8]) -> Result<Parsed, ParseError> {
        let r = parse(f, ParseMode::Geneve);
        if let Ok(p) = &r {
            check_invariants(f, p);
        }
        r
    }

    /// The contract: every offset points inside the frame with the header
    /// it names present.
    fn check_invariants(f: &[u8], p: &Parsed) {
        let o = p.off;
        let (l2, l3, l4, end) = (
            usize::from(o.inner_l2),
            usize::from(o.inner_l3),
            usize::from(o.inner_l4),
            usize::from(o.inner_end),
        );
        assert!(end <= f.len());
        assert!(l2 + 14 <= l3 && l3 <= end);
        match p.hdrs.outer {
            Some(out) => {
                let (ol3, ol4, g) = (
                    usize::from(o.outer_l3),
                    usize::from(o.outer_l4),
                    usize::from(o.geneve),
                );
                assert!(ol3 >= 14 && ol3 + 40 <= ol4 && ol4 + 8 == g);
                assert_eq!(g + 8 + usize::from(out.geneve.opt_len), l2);
                assert_eq!(out.udp_dst, GENEVE_PORT);
            }
            None => {
                assert_eq!((o.outer_l3, o.outer_l4, o.geneve, o.inner_l2), (0, 0, 0, 0));
            }
        }
        let inner = &p.hdrs.inner;
        match inner.l3 {
            L3::Ipv4(_) => assert!(l3 + 20 <= l4 && l4 <= end),
            L3::Ipv6(_) => assert!(l3 + 40 <= l4 && l4 <= end),
            L3::Arp(_) => assert!(l3 + 28 <= end),
            L3::None => assert!(matches!(inner.l4, L4::None)),
        }
        let need = match inner.l4 {
            L4::Tcp(_) => 20,
            L4::Udp { .. } | L4::Icmp { .. } | L4::Icmp6 { .. } => 8,
            L4::None | L4::Unknown => 0,
        };
        assert!(l4 + need <= end);
        if let Some(ip) = inner.ip() {
            if ip.frag == Frag::Later {
                assert_eq!(inner.l4, L4::None);
            }
        }
    }

    fn eth() -> etherparse::PacketBuilderStep<Ethernet2Header> {
        PacketBuilder::ethernet2(SMAC, DMAC)
    }

    fn v4_tcp() -> Vec<u8> {
        let b = eth()
            .ipv4(SIP4, DIP4, 64)
            .tcp(40000, 443, 1000, 8192)
            .syn()
            .ack(77);
        let mut v = Vec::new();
        b.write(&mut v, PAYLOAD).unwrap();
        v
    }

    fn v4_udp(payload: &[u8]) -> Vec<u8> {
        let b = eth().ipv4(SIP4, DIP4, 3).udp(5353, 53);
        let mut v = Vec::new();
        b.write(&mut v, payload).unwrap();
        v
    }

    fn v4_icmp() -> Vec<u8> {
        let b = eth().ipv4(SIP4, DIP4, 255).icmpv4_echo_request(0x4242, 9);
        let mut v = Vec::new();
        b.write(&mut v, PAYLOAD).unwrap();
        v
    }

    fn v6_tcp() -> Vec<u8> {
        let b = eth().ipv6(SIP6, DIP6, 33).tcp(1, 2, 3, 4).fin().psh().rst();
        let mut v = Vec::new();
        b.write(&mut v, PAYLOAD).unwrap();
        v
    }

    fn v6_udp() -> Vec<u8> {
        let b = eth().ipv6(SIP6, DIP6, 1).udp(546, 547);
        let mut v = Vec::new();
        b.write(&mut v, PAYLOAD).unwrap();
        v
    }

    fn v6_icmp() -> Vec<u8> {
        let b = eth().ipv6(SIP6, DIP6, 255).icmpv6_echo_reply(0x0101, 2);
        let mut v = Vec::new();
        b.write(&mut v, PAYLOAD).unwrap();
        v
    }

    fn vlan_v4_icmp() -> Vec<u8> {
        let b = eth()
            .single_vlan(VlanId::try_new(0x123).unwrap())
            .ipv4(SIP4, DIP4, 8)
            .icmpv4_echo_reply(7, 8);
        let mut v = Vec::new();
        b.write(&mut v, &[]).unwrap();
        v
    }

    fn arp(op: ArpOperation) -> Vec<u8> {
        let a = ArpPacket::new(
            ArpHardwareId::ETHERNET,
            EtherType::IPV4,
            op,
            &SMAC,
            &SIP4,
            &DMAC,
            &DIP4,
        )
        .unwrap();
        let mut v = Vec::new();
        eth().arp(a).write(&mut v).unwrap();
        v
    }

    fn v4_hdr(proto: u8, payload_len: u16) -> Ipv4Header {
        let mut h = Ipv4Header::new(payload_len, 64, IpNumber(proto), SIP4, DIP4).unwrap();
        h.header_checksum = h.calc_header_checksum();
        h
    }

    fn v4_opts_tcp() -> Vec<u8> {
        let mut h = v4_hdr(6, 0);
        h.options = [0x94, 0x04, 0, 0, 0x01, 0x01, 0x01, 0x00].into(); // router alert, NOPs
        let b = eth()
            .ip(IpHeaders::Ipv4(h, Default::default()))
            .tcp(80, 8080, 5, 6)
            .ack(9);
        let mut v = Vec::new();
        b.write(&mut v, PAYLOAD).unwrap();
        v
    }

    /// Hop-by-hop, destination options (16 bytes) and a fragment header,
    /// then UDP.
    fn v6_ext_udp(frag_offset: u16, more: bool) -> Vec<u8> {
        let exts = Ipv6Extensions {
            hop_by_hop_options: Some(
                Ipv6RawExtHeader::new_raw(IpNumber(0), &[1, 4, 0, 0, 0, 0]).unwrap(),
            ),
            destination_options: Some(
                Ipv6RawExtHeader::new_raw(
                    IpNumber(0),
                    &[1, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
                )
                .unwrap(),
            ),
            fragment: Some(Ipv6FragmentHeader::new(
                IpNumber(0),
                IpFragOffset::try_new(frag_offset).unwrap(),
                more,
                0xdead_beef,
            )),
            ..Default::default()
        };
        let h = Ipv6Header {
            hop_limit: 5,
            source: SIP6,
            destination: DIP6,
            ..Default::default()
        };
        let b = eth().ip(IpHeaders::Ipv6(h, exts)).udp(1111, 2222);
        let mut v = Vec::new();
        b.write(&mut v, PAYLOAD).unwrap();
        v
    }

    /// Ethernet + IPv4 (protocol `proto`) + `payload`, no L4 parsing by
    /// the builder.
    fn v4_raw(h: Ipv4Header, payload: &[u8]) -> Vec<u8> {
        let mut h = h;
        h.set_payload_len(payload.len()).unwrap();
        h.header_checksum = h.calc_header_checksum();
        let e = Ethernet2Header {
            source: SMAC,
            destination: DMAC,
            ether_type: EtherType::IPV4,
        };
        let mut v = e.to_bytes().to_vec();
        v.extend_from_slice(&h.to_bytes());
        v.extend_from_slice(payload);
        v
    }

    fn geneve_hdr(opt: &[u8], flags: u8, vni: u32, proto: u16) -> Vec<u8> {
        assert_eq!(opt.len() % 4, 0);
        let mut g = vec![(opt.len() / 4) as u8, flags];
        g.extend_from_slice(&proto.to_be_bytes());
        g.extend_from_slice(&Vni::new(vni).unwrap().to_bytes());
        g.push(0);
        g.extend_from_slice(opt);
        g
    }

    const OSMAC: Mac = [0xa8, 0x40, 0x25, 0, 0, 1];
    const ODMAC: Mac = [0xa8, 0x40, 0x25, 0, 0, 2];
    const OSIP: [u8; 16] = [0xfd, 0, 0x99, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10];
    const ODIP: [u8; 16] = [0xfd, 0, 0x99, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x20];

    /// Ethernet / IPv6 / UDP to `port` / `geneve` (header, options, frame).
    fn underlay(port: u16, geneve: &[u8]) -> Vec<u8> {
        let b = PacketBuilder::ethernet2(OSMAC, ODMAC)
            .ipv6(OSIP, ODIP, 62)
            .udp(49152, port);
        let mut v = Vec::new();
        b.write(&mut v, geneve).unwrap();
        v
    }

    #[rustfmt::skip]
    const OPTS: [u8; 20] = [
        0x01, 0x29, 0x80, 0x01, 1, 2, 3, 4, // Oxide class, critical, 4 bytes
        0x01, 0x29, 0x01, 0x02, 5, 6, 7, 8, 9, 10, 11, 12, // not critical, 8 bytes
    ];

    fn geneve_tcp(opts: &[u8], flags: u8) -> Vec<u8> {
        let mut g = geneve_hdr(opts, flags, 0xabcdef, ethertype::ETHERNET);
        g.extend_from_slice(&v4_tcp());
        underlay(GENEVE_PORT, &g)
    }

    fn expect_v4_tcp_inner(inner: &Inner) {
        assert_eq!(
            *inner,
            Inner {
                eth_src: SMAC,
                eth_dst: DMAC,
                vlan: None,
                ether_type: ethertype::IPV4,
                l3: L3::Ipv4(Ip {
                    src: v4(SIP4),
                    dst: v4(DIP4),
                    proto: 6,
                    ttl: 64,
                    frag: Frag::None
                }),
                l4: L4::Tcp(Tcp {
                    src: 40000,
                    dst: 443,
                    flags: tcp_flags::SYN | tcp_flags::ACK,
                    seq: 1000,
                    ack: 77
                }),
            }
        );
    }

    #[test]
    fn ipv4_tcp() {
        let f = v4_tcp();
        let p = plain(&f).unwrap();
        assert_eq!(p.hdrs.outer, None);
        expect_v4_tcp_inner(&p.hdrs.inner);
        assert_eq!(
            p.off,
            Offsets {
                inner_l3: 14,
                inner_l4: 34,
                inner_end: 61,
                ..Default::default()
            }
        );
        assert_eq!(f.len(), 61);
        assert_eq!(p.hdrs.inner.ports(), (40000, 443));
    }

    #[test]
    fn ipv4_udp_and_padding() {
        let mut f = v4_udp(&[1, 2]);
        assert_eq!(f.len(), 44);
        f.resize(60, 0);
        let p = plain(&f).unwrap();
        let want = Inner {
            eth_src: SMAC,
            eth_dst: DMAC,
            vlan: None,
            ether_type: ethertype::IPV4,
            l3: L3::Ipv4(Ip {
                src: v4(SIP4),
                dst: v4(DIP4),
                proto: 17,
                ttl: 3,
                frag: Frag::None,
            }),
            l4: L4::Udp { src: 5353, dst: 53 },
        };
        assert_eq!(p.hdrs.inner, want);
        assert_eq!(
            p.off,
            Offsets {
                inner_l3: 14,
                inner_l4: 34,
                inner_end: 44,
                ..Default::default()
            }
        );
    }

    #[test]
    fn ipv4_icmp_echo() {
        let f = v4_icmp();
        let p = plain(&f).unwrap();
        assert_eq!(
            p.hdrs.inner.l3,
            L3::Ipv4(Ip {
                src: v4(SIP4),
                dst: v4(DIP4),
                proto: 1,
                ttl: 255,
                frag: Frag::None
            })
        );
        assert_eq!(
            p.hdrs.inner.l4,
            L4::Icmp {
                ty: 8,
                code: 0,
                ident: 0x4242
            }
        );
        assert_eq!(
            p.off,
            Offsets {
                inner_l3: 14,
                inner_l4: 34,
                inner_end: 49,
                ..Default::default()
            }
        );
        assert_eq!(p.hdrs.inner.ports(), (0x4242, 0x4242));
    }

    #[test]
    fn ipv6_tcp_udp_icmp() {
        let f = v6_tcp();
        let p = plain(&f).unwrap();
        assert_eq!(p.hdrs.inner.ether_type, ethertype::IPV6);
        assert_eq!(
            p.hdrs.inner.l3,
            L3::Ipv6(Ip {
                src: v6(SIP6),
                dst: v6(DIP6),
                proto: 6,
                ttl: 33,
                frag: Frag::None
            })
        );
        assert_eq!(
            p.hdrs.inner.l4,
            L4::Tcp(Tcp {
                src: 1,
                dst: 2,
                flags: tcp_flags::FIN | tcp_flags::PSH | tcp_flags::RST,
                seq: 3,
                ack: 0
            })
        );
        assert_eq!(
            p.off,
            Offsets {
                inner_l3: 14,
                inner_l4: 54,
                inner_end: 81,
                ..Default::default()
            }
        );

        let f = v6_udp();
        let p = plain(&f).unwrap();
        assert_eq!(
            p.hdrs.inner.l3,
            L3::Ipv6(Ip {
                src: v6(SIP6),
                dst: v6(DIP6),
                proto: 17,
                ttl: 1,
                frag: Frag::None
            })
        );
        assert_eq!(p.hdrs.inner.l4, L4::Udp { src: 546, dst: 547 });
        assert_eq!(
            p.off,
            Offsets {
                inner_l3: 14,
                inner_l4: 54,
                inner_end: 69,
                ..Default::default()
            }
        );

        let f = v6_icmp();
        let p = plain(&f).unwrap();
        assert_eq!(
            p.hdrs.inner.l3,
            L3::Ipv6(Ip {
                src: v6(SIP6),
                dst: v6(DIP6),
                proto: 58,
                ttl: 255,
                frag: Frag::None
            })
        );
        assert_eq!(
            p.hdrs.inner.l4,
            L4::Icmp6 {
                ty: 129,
                code: 0,
                ident: 0x0101
            }
        );
        assert_eq!(
            p.off,
            Offsets {
                inner_l3: 14,
                inner_l4: 54,
                inner_end: 69,
                ..Default::default()
            }
        );
    }

    #[test]
    fn vlan_tagged_ipv4() {
        let f = vlan_v4_icmp();
        let p = plain(&f).unwrap();
        let i = &p.hdrs.inner;
        assert_eq!(
            (i.eth_src, i.eth_dst, i.vlan, i.ether_type),
            (SMAC, DMAC, Some(0x123), ethertype::IPV4)
        );
        assert_eq!(
            i.l3,
            L3::Ipv4(Ip {
                src: v4(SIP4),
                dst: v4(DIP4),
                proto: 1,
                ttl: 8,
                frag: Frag::None
            })
        );
        assert_eq!(
            i.l4,
            L4::Icmp {
                ty: 0,
                code: 0,
                ident: 7
            }
        );
        assert_eq!(
            p.off,
            Offsets {
                inner_l3: 18,
                inner_l4: 38,
                inner_end: 46,
                ..Default::default()
            }
        );
    }

    #[test]
    fn arp_request_reply() {
        for (op, want) in [
            (ArpOperation::REQUEST, ArpOp::Request),
            (ArpOperation::REPLY, ArpOp::Reply),
        ] {
            let mut f = arp(op);
            assert_eq!(f.len(), 42);
            f.resize(60, 0);
            let p = plain(&f).unwrap();
            let i = &p.hdrs.inner;
            assert_eq!(i.ether_type, ethertype::ARP);
            assert_eq!(
                i.l3,
                L3::Arp(Arp {
                    op: want,
                    sha: SMAC,
                    spa: Ipv4Addr::from(SIP4),
                    tha: DMAC,
                    tpa: Ipv4Addr::from(DIP4)
                })
            );
            assert_eq!(i.l4, L4::None);
            assert_eq!(
                p.off,
                Offsets {
                    inner_l3: 14,
                    inner_l4: 0,
                    inner_end: 60,
                    ..Default::default()
                }
            );
        }
        // ARP for IPv6-sized protocol addresses is refused.
        let a = ArpPacket::new(
            ArpHardwareId::ETHERNET,
            EtherType::IPV6,
            ArpOperation::REQUEST,
            &SMAC,
            &SIP6,
            &DMAC,
            &DIP6,
        )
        .unwrap();
        let mut f = Vec::new();
        eth().arp(a).write(&mut f).unwrap();
        assert_eq!(plain(&f), Err(ParseError::UnsupportedArp));
    }

    #[test]
    fn ipv4_options() {
        let f = v4_opts_tcp();
        let p = plain(&f).unwrap();
        assert_eq!(
            p.hdrs.inner.l4,
            L4::Tcp(Tcp {
                src: 80,
                dst: 8080,
                flags: tcp_flags::ACK,
                seq: 5,
                ack: 9
            })
        );
        assert_eq!(
            p.off,
            Offsets {
                inner_l3: 14,
                inner_l4: 42,
                inner_end: 69,
                ..Default::default()
            }
        );
    }

    #[test]
    fn ipv6_extension_headers_and_fragments() {
        let f = v6_ext_udp(0, true);
        // 40 + hop-by-hop 8 + dest opts 16 + fragment 8.
        let p = plain(&f).unwrap();
        assert_eq!(
            p.hdrs.inner.l3,
            L3::Ipv6(Ip {
                src: v6(SIP6),
                dst: v6(DIP6),
                proto: 17,
                ttl: 5,
                frag: Frag::First
            })
        );
        assert_eq!(
            p.hdrs.inner.l4,
            L4::Udp {
                src: 1111,
                dst: 2222
            }
        );
        assert_eq!(
            p.off,
            Offsets {
                inner_l3: 14,
                inner_l4: 86,
                inner_end: f.len() as u16,
                ..Default::default()
            }
        );
        // An atomic fragment (offset 0, no more) is a whole packet.
        let p = plain(&v6_ext_udp(0, false)).unwrap();
        assert_eq!(p.hdrs.inner.ip().unwrap().frag, Frag::None);
        // A later fragment: no L4 header, even if the bytes look like one.
        let f = v6_ext_udp(185, true);
        let p = plain(&f).unwrap();
        assert_eq!(
            p.hdrs.inner.l3,
            L3::Ipv6(Ip {
                src: v6(SIP6),
                dst: v6(DIP6),
                proto: 17,
                ttl: 5,
                frag: Frag::Later
            })
        );
        assert_eq!(p.hdrs.inner.l4, L4::None);
        assert_eq!(p.off.inner_l4, 86);
        // A first fragment too short for its UDP header.
        let mut f = v6_ext_udp(0, true);
        f.truncate(14 + 72 + 4);
        f[14 + IPV6_PAYLOAD_LEN..14 + IPV6_PAYLOAD_LEN + 2].copy_from_slice(&36u16.to_be_bytes());
        assert_eq!(plain(&f), Err(ParseError::TruncatedUdp));
    }

    #[test]
    fn ipv4_fragments() {
        let mut h = v4_hdr(17, 0);
        h.dont_fragment = false;
        h.more_fragments = true;
        // First fragment: the UDP length counts the later fragments too.
        let mut udp = vec![0x04, 0xd2, 0x16, 0x2e, 0x05, 0xdc, 0, 0];
        udp.extend_from_slice(&[0xab; 24]);
        let f = v4_raw(h.clone(), &udp);
        let p = plain(&f).unwrap();
        assert_eq!(
            p.hdrs.inner.l3,
            L3::Ipv4(Ip {
                src: v4(SIP4),
                dst: v4(DIP4),
                proto: 17,
                ttl: 64,
                frag: Frag::First
            })
        );
        assert_eq!(
            p.hdrs.inner.l4,
            L4::Udp {
                src: 1234,
                dst: 5678
            }
        );
        assert_eq!(
            p.off,
            Offsets {
                inner_l3: 14,
                inner_l4: 34,
                inner_end: 66,
                ..Default::default()
            }
        );
        // Later fragment: L4 bytes not parsed, even when too short for UDP.
        h.fragment_offset = IpFragOffset::try_new(4).unwrap();
        let f = v4_raw(h, &[0xab; 3]);
        let p = plain(&f).unwrap();
        assert_eq!(p.hdrs.inner.ip().unwrap().frag, Frag::Later);
        assert_eq!(p.hdrs.inner.l4, L4::None);
        assert_eq!(
            p.off,
            Offsets {
                inner_l3: 14,
                inner_l4: 34,
                inner_end: 37,
                ..Default::default()
            }
        );
    }

    #[test]
    fn unknown_protocol_and_ethertype() {
        let f = v4_raw(v4_hdr(47, 0), &[0, 0, 0x65, 0x58]);
        let p = plain(&f).unwrap();
        assert_eq!(
            p.hdrs.inner.l3,
            L3::Ipv4(Ip {
                src: v4(SIP4),
                dst: v4(DIP4),
                proto: 47,
                ttl: 64,
                frag: Frag::None
            })
        );
        assert_eq!(p.hdrs.inner.l4, L4::Unknown);
        assert_eq!(p.hdrs.inner.ports(), (0, 0));
        assert_eq!(
            p.off,
            Offsets {
                inner_l3: 14,
                inner_l4: 34,
                inner_end: 38,
                ..Default::default()
            }
        );
        // ICMPv6 over IPv4 is not ICMPv6.
        let p = plain(&v4_raw(v4_hdr(58, 0), &[])).unwrap();
        assert_eq!(p.hdrs.inner.l4, L4::Unknown);

        let mut f = Ethernet2Header {
            source: SMAC,
            destination: DMAC,
            ether_type: EtherType(0x88cc),
        }
        .to_bytes()
        .to_vec();
        f.extend_from_slice(&[1; 30]);
        let p = plain(&f).unwrap();
        assert_eq!(
            p.hdrs.inner,
            Inner {
                eth_src: SMAC,
                eth_dst: DMAC,
                vlan: None,
                ether_type: 0x88cc,
                l3: L3::None,
                l4: L4::None
            }
        );
        assert_eq!(
            p.off,
            Offsets {
                inner_l3: 14,
                inner_l4: 0,
                inner_end: 44,
                ..Default::default()
            }
        );
        // A second VLAN tag is not unwrapped.
        let mut f = vlan_v4_icmp();
        f[16..18].copy_from_slice(&[0x81, 0]);
        let p = plain(&f).unwrap();
        assert_eq!(
            (p.hdrs.inner.ether_type, p.hdrs.inner.l3),
            (ethertype::VLAN, L3::None)
        );
    }

    #[test]
    fn bad_ipv4_checksum_and_version() {
        let mut f = v4_tcp();
        f[14 + IPV4_CSUM] ^= 0x80;
        assert_eq!(plain(&f), Err(ParseError::BadIpv4Checksum));
        let mut f = v4_tcp();
        f[14] = 0x65;
        assert_eq!(plain(&f), Err(ParseError::BadIpv4Version));
        // An IPv6 packet behind an IPv4 EtherType.
        let mut f = v6_tcp();
        f[12..14].copy_from_slice(&[8, 0]);
        assert_eq!(plain(&f), Err(ParseError::BadIpv4Version));
        let mut f = v4_tcp();
        f[12..14].copy_from_slice(&[0x86, 0xdd]);
        assert_eq!(plain(&f), Err(ParseError::BadIpv6Version));
    }

    #[test]
    fn geneve_with_inner_tcp() {
        let f = geneve_tcp(&[], 0);
        let p = encap(&f).unwrap();
        assert_eq!(
            p.hdrs.outer,
            Some(Outer {
                eth_src: OSMAC,
                eth_dst: ODMAC,
                ip_src: Ipv6Addr::from(OSIP),
                ip_dst: Ipv6Addr::from(ODIP),
                hop_limit: 62,
                udp_src: 49152,
                udp_dst: 6081,
                geneve: GeneveInfo {
                    vni: Vni::new(0xabcdef).unwrap(),
                    oam: false,
                    critical: false,
                    opt_len: 0
                },
            })
        );
        expect_v4_tcp_inner(&p.hdrs.inner);
        assert_eq!(
            p.off,
            Offsets {
                outer_l3: 14,
                outer_l4: 54,
                geneve: 62,
                inner_l2: 70,
                inner_l3: 84,
                inner_l4: 104,
                inner_end: 131
            }
        );
        assert_eq!(f.len(), 131);
        assert_eq!(p.geneve_options(&f).count(), 0);
        // One 802.1Q tag on the underlay is accepted; every offset moves by 4.
        let mut t = f[..12].to_vec();
        t.extend_from_slice(&[0x81, 0x00, 0x00, 0x07]);
        t.extend_from_slice(&f[12..]);
        let q = encap(&t).unwrap();
        assert_eq!(q.hdrs, p.hdrs);
        assert_eq!(
            q.off,
            Offsets {
                outer_l3: 18,
                outer_l4: 58,
                geneve: 66,
                inner_l2: 74,
                inner_l3: 88,
                inner_l4: 108,
                inner_end: 135
            }
        );
        // The same frame read as plain is just UDP.
        let p = plain(&f).unwrap();
        assert_eq!(
            p.hdrs.inner.l4,
            L4::Udp {
                src: 49152,
                dst: 6081
            }
        );
    }

    #[test]
    fn geneve_with_options() {
        for flags in [
            0,
            GENEVE_FLAG_CRITICAL,
            GENEVE_FLAG_OAM | GENEVE_FLAG_CRITICAL,
        ] {
            let f = geneve_tcp(&OPTS, flags);
            let p = encap(&f).unwrap();
            let g = p.hdrs.outer.unwrap().geneve;
            assert_eq!(
                g,
                GeneveInfo {
                    vni: Vni::new(0xabcdef).unwrap(),
                    oam: flags & GENEVE_FLAG_OAM != 0,
                    critical: flags & GENEVE_FLAG_CRITICAL != 0,
                    opt_len: 20
                }
            );
            expect_v4_tcp_inner(&p.hdrs.inner);
            assert_eq!(
                p.off,
                Offsets {
                    outer_l3: 14,
                    outer_l4: 54,
                    geneve: 62,
                    inner_l2: 90,
                    inner_l3: 104,
                    inner_l4: 124,
                    inner_end: 151
                }
            );
            let opts: Vec<_> = p.geneve_options(&f).collect();
            assert_eq!(
                opts,
                vec![
                    Ok(GeneveOptView {
                        class: 0x129,
                        ty: 0x80,
                        data: &[1, 2, 3, 4]
                    }),
                    Ok(GeneveOptView {
                        class: 0x129,
                        ty: 0x01,
                        data: &[5, 6, 7, 8, 9, 10, 11, 12]
                    }),
                ]
            );
            assert!(opts[0].unwrap().critical() && !opts[1].unwrap().critical());
            assert_eq!(geneve_options(&f[70..90]).count(), 2);
        }
    }

    #[test]
    fn geneve_errors() {
        let bad = |opts: &[u8], flags: u8, proto: u16, g0: Option<u8>| {
            let mut g = geneve_hdr(opts, flags, 1, proto);
            if let Some(b) = g0 {
                g[0] = b;
            }
            g.extend_from_slice(&v4_tcp());
            encap(&underlay(GENEVE_PORT, &g))
        };
        assert_eq!(
            bad(&[], 0, ethertype::ETHERNET, Some(0x40)),
            Err(ParseError::BadGeneveVersion)
        );
        assert_eq!(
            bad(&[], 0, ethertype::ETHERNET, Some(0xc0)),
            Err(ParseError::BadGeneveVersion)
        );
        assert_eq!(
            bad(&[], 0, ethertype::IPV4, None),
            Err(ParseError::BadGeneveProtocol)
        );
        assert_eq!(
            bad(&OPTS, 0, ethertype::IPV6, None),
            Err(ParseError::BadGeneveProtocol)
        );
        // Second option claims 12 bytes of data; only 8 are in the area.
        let mut o = OPTS;
        o[11] = 3;
        assert_eq!(
            bad(&o, 0, ethertype::ETHERNET, None),
            Err(ParseError::BadGeneveOption)
        );
        // The options length runs past the UDP payload.
        let mut g = geneve_hdr(&[], 0, 1, ethertype::ETHERNET);
        g[0] = 63;
        g.extend_from_slice(&[0; 100]);
        assert_eq!(
            encap(&underlay(GENEVE_PORT, &g)),
            Err(ParseError::TruncatedGeneve)
        );
        // Not Geneve: another port, IPv4 underlay, TCP, a fragment.
        assert_eq!(
            encap(&underlay(4789, &geneve_hdr(&[], 0, 1, 0x6558))),
            Err(ParseError::NotGeneve)
        );
        assert_eq!(encap(&v4_udp(&[0; 20])), Err(ParseError::NotGeneve));
        assert_eq!(encap(&v6_tcp()), Err(ParseError::NotGeneve));
        assert_eq!(encap(&v6_ext_udp(0, true)), Err(ParseError::NotGeneve));
        // A cut inner Ethernet header.
        let mut g = geneve_hdr(&[], 0, 1, ethertype::ETHERNET);
        g.extend_from_slice(&[1; 13]);
        assert_eq!(
            encap(&underlay(GENEVE_PORT, &g)),
            Err(ParseError::TruncatedEthernet)
        );
        // An inner frame with an error names the inner header.
        let mut g = geneve_hdr(&[], 0, 1, ethertype::ETHERNET);
        let mut inner = v4_tcp();
        inner[14 + IPV4_CSUM] ^= 1;
        g.extend_from_slice(&inner);
        assert_eq!(
            encap(&underlay(GENEVE_PORT, &g)),
            Err(ParseError::BadIpv4Checksum)
        );
    }

    #[test]
    fn geneve_inner_bounded_by_udp_length() {
        // Bytes after the UDP datagram (but inside the IPv6 one) are not
        // part of the guest frame.
        let mut f = geneve_tcp(&[], 0);
        let udp_len = u16::from_be_bytes([f[54 + UDP_LEN], f[54 + UDP_LEN + 1]]);
        f.extend_from_slice(&[0xee; 8]);
        let plen = u16::from_be_bytes([f[14 + 4], f[14 + 5]]) + 8;
        f[18..20].copy_from_slice(&plen.to_be_bytes());
        let p = encap(&f).unwrap();
        assert_eq!(usize::from(p.off.inner_end), 54 + usize::from(udp_len));
        // A UDP length that cuts the guest frame's IP datagram.
        f[54 + UDP_LEN..54 + UDP_LEN + 2].copy_from_slice(&(udp_len - 1).to_be_bytes());
        assert_eq!(encap(&f), Err(ParseError::BadIpv4TotalLen));
    }

    #[test]
    fn offsets_past_64k() {
        // Offsets are u16: a datagram ending past 65535 bytes into the
        // frame is refused with its IP length error.
        let ipv6 = |tagged: bool, plen: u16| {
            let l3 = if tagged { 18 } else { 14 };
            let mut f = vec![0u8; l3 + 40 + usize::from(plen)];
            if tagged {
                f[12..14].copy_from_slice(&[0x81, 0]);
            }
            f[l3 - 2..l3].copy_from_slice(&[0x86, 0xdd]);
            f[l3] = 0x60;
            f[l3 + 4..l3 + 6].copy_from_slice(&plen.to_be_bytes());
            f[l3 + 6] = 59;
            f
        };
        assert_eq!(plain(&ipv6(false, 65481)).unwrap().off.inner_end, 65535);
        assert_eq!(
            plain(&ipv6(false, 65482)),
            Err(ParseError::BadIpv6PayloadLen)
        );
        assert_eq!(
            plain(&ipv6(true, 65481)),
            Err(ParseError::BadIpv6PayloadLen)
        );
        let f = v4_raw(v4_hdr(47, 0), &[0; 65535 - 20]);
        assert_eq!(plain(&f), Err(ParseError::BadIpv4TotalLen));
        let f = v4_raw(v4_hdr(47, 0), &[0; 65535 - 20 - 14]);
        assert_eq!(plain(&f).unwrap().off.inner_end, 65535);
        // A non-IP frame that long saturates.
        let mut f = ipv6(false, 65535);
        f[12..14].copy_from_slice(&[0x88, 0xb5]);
        assert_eq!(plain(&f).unwrap().off.inner_end, u16::MAX);
    }

    // ---- truncation ----

    /// `(end, error)`: a cut at `n < end` (and past the previous `end`)
    /// gives `error`; a cut past the last `end` parses.
    type Regions = &'static [(usize, ParseError)];

    fn expect_regions(
        f: &[u8],
        mode: ParseMode,
        regions: Regions,
        n: usize,
        r: Result<Parsed, ParseError>,
    ) {
        let want = regions.iter().find(|(end, _)| n < *end).map(|(_, e)| *e);
        match (want, r) {
            (Some(e), Err(got)) => assert_eq!(got, e, "{mode:?} cut at {n} of {}", f.len()),
            (None, Ok(_)) => {}
            (w, got) => panic!(
                "{mode:?} cut at {n} of {}: want {w:?}, got {got:?}",
                f.len()
            ),
        }
    }

    use ParseError::*;

    /// Raw cuts: the IP header's length no longer matches the frame, so
    /// any cut after it is the IP length error.
    #[test]
    fn truncation_raw() {
        let cases: Vec<(Vec<u8>, ParseMode, Regions)> = vec![
            (
                v4_tcp(),
                ParseMode::Plain,
                &[
                    (14, TruncatedEthernet),
                    (34, TruncatedIpv4),
                    (61, BadIpv4TotalLen),
                ],
            ),
            (
                v4_opts_tcp(),
                ParseMode::Plain,
                &[
                    (14, TruncatedEthernet),
                    (42, TruncatedIpv4),
                    (69, BadIpv4TotalLen),
                ],
            ),
            (
                v4_udp(PAYLOAD),
                ParseMode::Plain,
                &[
                    (14, TruncatedEthernet),
                    (34, TruncatedIpv4),
                    (49, BadIpv4TotalLen),
                ],
            ),
            (
                vlan_v4_icmp(),
                ParseMode::Plain,
                &[
                    (14, TruncatedEthernet),
                    (18, TruncatedVlan),
                    (38, TruncatedIpv4),
                    (46, BadIpv4TotalLen),
                ],
            ),
            (
                v6_tcp(),
                ParseMode::Plain,
                &[
                    (14, TruncatedEthernet),
                    (54, TruncatedIpv6),
                    (81, BadIpv6PayloadLen),
                ],
            ),
            (
                v6_ext_udp(0, true),
                ParseMode::Plain,
                &[
                    (14, TruncatedEthernet),
                    (54, TruncatedIpv6),
                    (101, BadIpv6PayloadLen),
                ],
            ),
            (
                v6_icmp(),
                ParseMode::Plain,
                &[
                    (14, TruncatedEthernet),
                    (54, TruncatedIpv6),
                    (69, BadIpv6PayloadLen),
                ],
            ),
            (
                arp(ArpOperation::REQUEST),
                ParseMode::Plain,
                &[(14, TruncatedEthernet), (42, TruncatedArp)],
            ),
            (
                geneve_tcp(&OPTS, GENEVE_FLAG_CRITICAL),
                ParseMode::Geneve,
                &[
                    (14, TruncatedEthernet),
                    (54, TruncatedIpv6),
                    (151, BadIpv6PayloadLen),
                ],
            ),
            (
                geneve_tcp(&[], 0),
                ParseMode::Geneve,
                &[
                    (14, TruncatedEthernet),
                    (54, TruncatedIpv6),
                    (131, BadIpv6PayloadLen),
                ],
            ),
        ];
        for (f, mode, regions) in cases {
            assert_eq!(regions.last().unwrap().0, f.len());
            for n in 0..=f.len() {
                let r = parse(&f[..n], mode);
                if let Ok(p) = &r {
                    check_invariants(&f[..n], p);
                }
                expect_regions(&f, mode, regions, n, r);
                // The other mode must not panic either.
                let _ = parse(
                    &f[..n],
                    if mode == ParseMode::Plain {
                        ParseMode::Geneve
                    } else {
                        ParseMode::Plain
                    },
                );
            }
        }
    }

    /// Where the length-bearing headers of a test frame are, so a cut can
    /// be made consistent: `(l3, is_v6)` for each IP header, and each UDP
    /// header whose length bounds what follows.
    struct Lengths {
        ips: &'static [(usize, bool)],
        udps: &'static [usize],
    }

    /// Cuts `f` at `n` and rewrites every length field that the cut leaves
    /// whole so that it ends at `n`: the cut then lands inside a header as
    /// far as the parser can tell, and the error must name that header.
    fn consistent_cut(f: &[u8], n: usize, l: &Lengths) -> Vec<u8> {
        let mut v = f[..n].to_vec();
        for &(l3, is_v6) in l.ips {
            if is_v6 {
                if n >= l3 + 40 {
                    let plen = (n - l3 - 40) as u16;
                    v[l3 + IPV6_PAYLOAD_LEN..l3 + IPV6_PAYLOAD_LEN + 2]
                        .copy_from_slice(&plen.to_be_bytes());
                }
            } else {
                let hl = usize::from(f[l3] & 0xf) * 4;
                if n >= l3 + hl {
                    let tl = (n - l3) as u16;
                    v[l3 + IPV4_TOTAL_LEN..l3 + IPV4_TOTAL_LEN + 2]
                        .copy_from_slice(&tl.to_be_bytes());
                    v[l3 + IPV4_CSUM..l3 + IPV4_CSUM + 2].copy_from_slice(&[0, 0]);
                    let c = checksum(&v[l3..l3 + hl]);
                    v[l3 + IPV4_CSUM..l3 + IPV4_CSUM + 2].copy_from_slice(&c.to_be_bytes());
                }
            }
        }
        for &u in l.udps {
            if n >= u + 8 {
                v[u + UDP_LEN..u + UDP_LEN + 2].copy_from_slice(&((n - u) as u16).to_be_bytes());
            }
        }
        v
    }

    #[test]
    fn truncation_consistent() {
        let cases: Vec<(Vec<u8>, ParseMode, Lengths, Regions)> = vec![
            (
                v4_tcp(),
                ParseMode::Plain,
                Lengths {
                    ips: &[(14, false)],
                    udps: &[],
                },
                &[
                    (14, TruncatedEthernet),
                    (34, TruncatedIpv4),
                    (54, TruncatedTcp),
                ],
            ),
            (
                v4_opts_tcp(),
                ParseMode::Plain,
                Lengths {
                    ips: &[(14, false)],
                    udps: &[],
                },
                &[
                    (14, TruncatedEthernet),
                    (42, TruncatedIpv4),
                    (62, TruncatedTcp),
                ],
            ),
            (
                v4_udp(PAYLOAD),
                ParseMode::Plain,
                Lengths {
                    ips: &[(14, false)],
                    udps: &[34],
                },
                &[
                    (14, TruncatedEthernet),
                    (34, TruncatedIpv4),
                    (42, TruncatedUdp),
                ],
            ),
            (
                v4_udp(PAYLOAD),
                ParseMode::Plain,
                Lengths {
                    ips: &[(14, false)],
                    udps: &[],
                },
                &[
                    (14, TruncatedEthernet),
                    (34, TruncatedIpv4),
                    (42, TruncatedUdp),
                    (49, BadUdpLength),
                ],
            ),
            (
                v4_icmp(),
                ParseMode::Plain,
                Lengths {
                    ips: &[(14, false)],
                    udps: &[],
                },
                &[
                    (14, TruncatedEthernet),
                    (34, TruncatedIpv4),
                    (42, TruncatedIcmp),
                ],
            ),
            (
                vlan_v4_icmp(),
                ParseMode::Plain,
                Lengths {
                    ips: &[(18, false)],
                    udps: &[],
                },
                &[
                    (14, TruncatedEthernet),
                    (18, TruncatedVlan),
                    (38, TruncatedIpv4),
                    (46, TruncatedIcmp),
                ],
            ),
            (
                v6_tcp(),
                ParseMode::Plain,
                Lengths {
                    ips: &[(14, true)],
                    udps: &[],
                },
                &[
                    (14, TruncatedEthernet),
                    (54, TruncatedIpv6),
                    (74, TruncatedTcp),
                ],
            ),
            (
                v6_icmp(),
                ParseMode::Plain,
                Lengths {
                    ips: &[(14, true)],
                    udps: &[],
                },
                &[
                    (14, TruncatedEthernet),
                    (54, TruncatedIpv6),
                    (62, TruncatedIcmp6),
                ],
            ),
            (
                // A payload length of 0 with a hop-by-hop header reads as a
                // jumbogram; any other cut in the extensions is an
                // extension error.
                v6_ext_udp(0, false),
                ParseMode::Plain,
                Lengths {
                    ips: &[(14, true)],
                    udps: &[86],
                },
                &[
                    (14, TruncatedEthernet),
                    (54, TruncatedIpv6),
                    (55, BadIpv6PayloadLen),
                    (86, BadIpv6Extension),
                    (94, TruncatedUdp),
                ],
            ),
            (
                geneve_tcp(&OPTS, GENEVE_FLAG_CRITICAL),
                ParseMode::Geneve,
                Lengths {
                    ips: &[(14, true), (104, false)],
                    udps: &[54],
                },
                &[
                    (14, TruncatedEthernet),
                    (54, TruncatedIpv6),
                    (62, TruncatedUdp),
                    (90, TruncatedGeneve),
                    (104, TruncatedEthernet),
                    (124, TruncatedIpv4),
                    (144, TruncatedTcp),
                ],
            ),
        ];
        for (f, mode, lengths, regions) in cases {
            for n in 0..=f.len() {
                let v = consistent_cut(&f, n, &lengths);
                let r = parse(&v, mode);
                if let Ok(p) = &r {
                    check_invariants(&v, p);
                }
                expect_regions(&f, mode, regions, n, r);
            }
        }
    }

    // ---- fuzzing ----

    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.0 = x;
            x
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    #[test]
    fn random_byte_flips_never_panic() {
        let frames = [
            v4_tcp(),
            v4_opts_tcp(),
            v4_udp(PAYLOAD),
            vlan_v4_icmp(),
            v6_tcp(),
            v6_ext_udp(0, true),
            v6_icmp(),
            arp(ArpOperation::REPLY),
            geneve_tcp(&OPTS, GENEVE_FLAG_CRITICAL),
            geneve_tcp(&[], 0),
        ];
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        let (mut ok, mut err) = (0, 0);
        for _ in 0..10_000 {
            let mut f = frames[rng.below(frames.len())].clone();
            for _ in 0..1 + rng.below(4) {
                let i = rng.below(f.len());
                f[i] ^= 1 + rng.below(255) as u8;
            }
            if rng.below(4) == 0 {
                f.truncate(rng.below(f.len() + 1));
            }
            for mode in [ParseMode::Plain, ParseMode::Geneve] {
                match parse(&f, mode) {
                    Ok(p) => {
                        check_invariants(&f, &p);
                        for o in p.geneve_options(&f) {
                            let _ = o;
                        }
                        ok += 1;
                    }
                    Err(_) => err += 1,
                }
            }
        }
        // Both outcomes are exercised.
        assert!(ok > 1000 && err > 1000, "ok {ok} err {err}");
    }
}
