//! Path MTU over the Geneve underlay, and the ICMP errors the gateway
//! sends a guest whose packet does not fit.
//!
//! # Which number is which
//!
//! An encapsulated packet on the underlay is
//!
//! ```text
//! [outer Ethernet 14] [IPv6 40] [UDP 8] [Geneve 8 + options] [guest frame]
//!                     |<----------- underlay MTU ----------------------->|
//!                                                            |<- frame ->|
//!                                                   [inner Ethernet 14][guest IP packet]
//! ```
//!
//! - The *underlay MTU* is the IP MTU of the underlay links: the largest
//!   outer IPv6 packet, outer Ethernet header not counted (1500 on a plain
//!   Ethernet underlay, 9000 with jumbo frames).
//! - [`max_inner_frame`] is the largest guest Ethernet frame, its 14-byte
//!   header included (no FCS): underlay MTU - 40 - 8 - 8 - options. With a
//!   1500 underlay and no options that is 1444; 8944 with 9000.
//! - [`max_inner_mtu`] is the MTU the guest's interface must have (the
//!   largest guest IP packet): [`max_inner_frame`] - 14, so 1430 with a
//!   1500 underlay, 8930 with 9000. Nothing else is subtracted: the inner
//!   Ethernet header is the only guest header outside the IP packet. A
//!   guest that sends 802.1Q-tagged frames needs 4 bytes more headroom.
//!   This is the value the ICMP errors below advertise.
//!
//! # ICMP errors
//!
//! [`frag_needed_v4`] (ICMP type 3 code 4 with the next-hop MTU, RFC 792 and
//! RFC 1191 §4) and [`packet_too_big_v6`] (ICMPv6 type 2, RFC 4443 §3.2)
//! build the gateway's reply to a guest packet larger than the MTU: from
//! the gateway's MAC and IP to the guest's MAC and IP, checksums filled
//! (the frame keeps a guest's 802.1Q tag, if any). They return `None`
//! whenever no error may be sent: the frame is not of the right kind or
//! is malformed, the packet fits, IPv4 without DF (the sender allowed
//! fragmentation: not this module's business), a non-first fragment, an
//! ICMP error (never answer an error with an error: RFC 1122 §3.2.2,
//! RFC 4443 §2.4(e)), or a source that is not one unicast host. They read
//! the frame with bounds checks only, and never panic.

use dataplane::checksum::{checksum, pseudo_header};
use dataplane::headers::{
    ethertype, proto, Mac, ETH_HDR_LEN, GENEVE_HDR_LEN, IPV4_FRAG, IPV4_HDR_LEN, IPV4_PROTO,
    IPV4_SRC, IPV4_TOTAL_LEN, IPV6_HDR_LEN, IPV6_MAX_EXT_HDRS, IPV6_NEXT_HDR, IPV6_PAYLOAD_LEN,
    IPV6_SRC, UDP_HDR_LEN,
};
use std::net::{Ipv4Addr, Ipv6Addr};

/// What the tunnel adds inside the underlay MTU, before Geneve options:
/// IPv6 (40) + UDP (8) + Geneve (8).
pub const TUNNEL_OVERHEAD: usize = IPV6_HDR_LEN + UDP_HDR_LEN + GENEVE_HDR_LEN;

/// The largest guest Ethernet frame (header included) that fits in one
/// underlay packet: `underlay_mtu` - 56 - `geneve_opt_len`. See the module
/// documentation. 0 if nothing fits.
pub fn max_inner_frame(underlay_mtu: u16, geneve_opt_len: usize) -> usize {
    usize::from(underlay_mtu).saturating_sub(TUNNEL_OVERHEAD.saturating_add(geneve_opt_len))
}

/// The guest's IP MTU: [`max_inner_frame`] less the inner Ethernet header.
pub fn max_inner_mtu(underlay_mtu: u16, geneve_opt_len: usize) -> usize {
    max_inner_frame(underlay_mtu, geneve_opt_len).saturating_sub(ETH_HDR_LEN)
}

/// The smallest MTU an IPv4 path may have (RFC 791).
pub const IPV4_MIN_MTU: u16 = 68;

/// The smallest MTU an IPv6 link may have (RFC 8200 §5), and the bound on
/// an ICMPv6 error's size (RFC 4443 §2.4(c)).
pub const IPV6_MIN_MTU: u32 = 1280;

const ICMP_DEST_UNREACH: u8 = 3;
const ICMP_FRAG_NEEDED: u8 = 4;
const ICMP6_PACKET_TOO_BIG: u8 = 2;
/// Hop limit / TTL of the errors the gateway sends.
const REPLY_TTL: u8 = 64;

fn be16(b: &[u8], at: usize) -> Option<u16> {
    let s = b.get(at..at.checked_add(2)?)?;
    Some(u16::from_be_bytes(s.try_into().ok()?))
}

fn is_group(m: &Mac) -> bool {
    m[0] & 1 != 0
}

/// The parts of a guest frame the errors need.
struct Frame<'a> {
    src: Mac,
    dst: Mac,
    vlan: Option<u16>,
    ether_type: u16,
    l3: &'a [u8],
}

fn ethernet(frame: &[u8]) -> Option<Frame<'_>> {
    let dst: Mac = frame.get(0..6)?.try_into().ok()?;
    let src: Mac = frame.get(6..12)?.try_into().ok()?;
    let mut ether_type = be16(frame, 12)?;
    let mut at = ETH_HDR_LEN;
    let mut vlan = None;
    if ether_type == ethertype::VLAN {
        vlan = Some(be16(frame, 14)?);
        ether_type = be16(frame, 16)?;
        at += 4;
    }
    Some(Frame {
        src,
        dst,
        vlan,
        ether_type,
        l3: frame.get(at..)?,
    })
}

/// Starts the reply frame: Ethernet header (and the guest's VLAN tag).
fn reply_l2(to: &Frame<'_>, from: Mac, ether_type: u16, l3_len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(ETH_HDR_LEN + 4 + l3_len);
    out.extend_from_slice(&to.src);
    out.extend_from_slice(&from);
    if let Some(tci) = to.vlan {
        out.extend_from_slice(&ethertype::VLAN.to_be_bytes());
        out.extend_from_slice(&tci.to_be_bytes());
    }
    out.extend_from_slice(&ether_type.to_be_bytes());
    out
}

/// ICMPv4 types that are not errors (RFC 792, RFC 1256, RFC 950).
fn icmp4_is_query(ty: u8) -> bool {
    matches!(ty, 0 | 8 | 9 | 10 | 13..=18)
}

/// An ICMPv4 "fragmentation needed and DF set" (type 3, code 4) from the
/// gateway to the guest that sent `frame`, advertising `mtu` (RFC 1191),
/// quoting the original IP header and the first 8 bytes of its payload.
/// `None` unless `frame` is a well-formed IPv4 packet longer than `mtu`
/// with DF set that may be answered (see the module documentation), or if
/// `mtu` is below 68.
pub fn frag_needed_v4(frame: &[u8], gw_mac: Mac, gw_ip: Ipv4Addr, mtu: u16) -> Option<Vec<u8>> {
    if mtu < IPV4_MIN_MTU {
        return None;
    }
    let f = ethernet(frame)?;
    // RFC 1122 §3.2.2: not for link-layer broadcasts or from group MACs.
    if f.ether_type != ethertype::IPV4 || is_group(&f.src) || is_group(&f.dst) {
        return None;
    }
    let ip = f.l3;
    let ver_ihl = *ip.first()?;
    let ihl = usize::from(ver_ihl & 0x0f) * 4;
    if ver_ihl >> 4 != 4 || ihl < IPV4_HDR_LEN {
        return None;
    }
    if checksum(ip.get(..ihl)?) != 0 {
        return None;
    }
    let total = usize::from(be16(ip, IPV4_TOTAL_LEN)?);
    if total < ihl || total > ip.len() || total <= usize::from(mtu) {
        return None;
    }
    let frag = be16(ip, IPV4_FRAG)?;
    // DF must be set; a non-first fragment gets no error.
    if frag & 0x4000 == 0 || frag & 0x1fff != 0 {
        return None;
    }
    let octets = |at: usize| -> Option<Ipv4Addr> {
        let b: [u8; 4] = ip.get(at..at + 4)?.try_into().ok()?;
        Some(Ipv4Addr::from(b))
    };
    let src = octets(IPV4_SRC)?;
    let dst = octets(IPV4_SRC + 4)?;
    if src.is_unspecified()
        || src.is_broadcast()
        || src.is_multicast()
        || src.is_loopback()
        || dst.is_broadcast()
        || dst.is_multicast()
    {
        return None;
    }
    if *ip.get(IPV4_PROTO)? == proto::ICMP && !icmp4_is_query(*ip.get(ihl)?) {
        return None;
    }

    let quote = ip.get(..(ihl + 8).min(total))?;
    let icmp_len = 8 + quote.len();
    let ip_len = IPV4_HDR_LEN + icmp_len;
    let mut h = [0u8; IPV4_HDR_LEN];
    h[0] = 0x45;
    h[2..4].copy_from_slice(&u16::try_from(ip_len).ok()?.to_be_bytes());
    h[8] = REPLY_TTL;
    h[9] = proto::ICMP;
    h[12..16].copy_from_slice(&gw_ip.octets());
    h[16..20].copy_from_slice(&src.octets());
    let c = checksum(&h);
    h[10..12].copy_from_slice(&c.to_be_bytes());

    let mut icmp = Vec::with_capacity(icmp_len);
    icmp.extend_from_slice(&[ICMP_DEST_UNREACH, ICMP_FRAG_NEEDED, 0, 0, 0, 0]);
    icmp.extend_from_slice(&mtu.to_be_bytes());
    icmp.extend_from_slice(quote);
    let c = checksum(&icmp);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());

    let mut out = reply_l2(&f, gw_mac, ethertype::IPV4, ip_len);
    out.extend_from_slice(&h);
    out.extend_from_slice(&icmp);
    Some(out)
}

/// Whether an IPv6 packet may be answered with an ICMPv6 error: walks its
/// extension headers (at most [`IPV6_MAX_EXT_HDRS`]) to the upper layer
/// and refuses ICMPv6 errors (types below 128), and anything whose upper
/// layer cannot be told (truncated chain, too many headers, or ICMPv6
/// behind a non-first fragment).
fn v6_may_answer(ip: &[u8]) -> bool {
    const HOP_BY_HOP: u8 = 0;
    const ROUTING: u8 = 43;
    const FRAGMENT: u8 = 44;
    const AH: u8 = 51;
    const DEST_OPTS: u8 = 60;
    const MOBILITY: u8 = 135;
    const HIP: u8 = 139;
    const SHIM6: u8 = 140;
    let Some(&first) = ip.get(IPV6_NEXT_HDR) else {
        return false;
    };
    let mut nh = first;
    let mut at = IPV6_HDR_LEN;
    let mut later_fragment = false;
    for _ in 0..=IPV6_MAX_EXT_HDRS {
        let len = match nh {
            proto::ICMPV6 => {
                return !later_fragment && ip.get(at).is_some_and(|&ty| ty >= 128);
            }
            HOP_BY_HOP | ROUTING | DEST_OPTS | MOBILITY | HIP | SHIM6 => {
                ip.get(at + 1).map(|&l| (usize::from(l) + 1) * 8)
            }
            AH => ip.get(at + 1).map(|&l| (usize::from(l) + 2) * 4),
            FRAGMENT => {
                later_fragment = be16(ip, at + 2).is_none_or(|o| o & 0xfff8 != 0);
                Some(8)
            }
            // Some other upper layer (TCP, UDP, ESP, no next header...).
            _ => return true,
        };
        let (Some(len), Some(&next)) = (len, ip.get(at)) else {
            return false;
        };
        nh = next;
        at += len;
    }
    false
}

/// An ICMPv6 Packet Too Big (type 2, RFC 4443 §3.2) from the gateway to
/// the guest that sent `frame`, advertising `mtu` and quoting as much of
/// the packet as fits in a 1280-byte error. `None` unless `frame` is a
/// well-formed IPv6 packet longer than `mtu` that may be answered (see the
/// module documentation), or if `mtu` is below 1280. Unlike other errors,
/// Packet Too Big answers packets sent to multicast (RFC 4443 §2.4(e.3)).
pub fn packet_too_big_v6(frame: &[u8], gw_mac: Mac, gw_ip: Ipv6Addr, mtu: u32) -> Option<Vec<u8>> {
    if mtu < IPV6_MIN_MTU {
        return None;
    }
    let f = ethernet(frame)?;
    if f.ether_type != ethertype::IPV6 || is_group(&f.src) {
        return None;
    }
    let ip = f.l3;
    if ip.first()? >> 4 != 6 {
        return None;
    }
    let total = IPV6_HDR_LEN + usize::from(be16(ip, IPV6_PAYLOAD_LEN)?);
    // A jumbogram (payload length 0 with a Jumbo option) is never larger
    // than a guest link's MTU here, so total <= mtu refuses it too.
    if total > ip.len() || total <= usize::try_from(mtu).unwrap_or(usize::MAX) {
        return None;
    }
    let src: [u8; 16] = ip.get(IPV6_SRC..IPV6_SRC + 16)?.try_into().ok()?;
    let src = Ipv6Addr::from(src);
    // RFC 4443 §2.4(e.6): the source must identify a single node.
    if src.is_unspecified() || src.is_multicast() || src.is_loopback() {
        return None;
    }
    if !v6_may_answer(ip) {
        return None;
    }

    let max_quote = IPV6_MIN_MTU as usize - IPV6_HDR_LEN - 8;
    let quote = ip.get(..total.min(max_quote))?;
    let icmp_len = 8 + quote.len();
    let mut icmp = Vec::with_capacity(icmp_len);
    icmp.extend_from_slice(&[ICMP6_PACKET_TOO_BIG, 0, 0, 0]);
    icmp.extend_from_slice(&mtu.to_be_bytes());
    icmp.extend_from_slice(quote);
    let mut c = pseudo_header(
        &gw_ip.octets(),
        &src.octets(),
        proto::ICMPV6,
        u32::try_from(icmp_len).ok()?,
    );
    c.add_bytes(&icmp);
    icmp[2..4].copy_from_slice(&c.finish().to_be_bytes());

    let mut h = [0u8; IPV6_HDR_LEN];
    h[0] = 0x60;
    h[4..6].copy_from_slice(&u16::try_from(icmp_len).ok()?.to_be_bytes());
    h[6] = proto::ICMPV6;
    h[7] = REPLY_TTL;
    h[8..24].copy_from_slice(&gw_ip.octets());
    h[24..40].copy_from_slice(&src.octets());

    let mut out = reply_l2(&f, gw_mac, ethertype::IPV6, IPV6_HDR_LEN + icmp_len);
    out.extend_from_slice(&h);
    out.extend_from_slice(&icmp);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{
        icmpv4::DestUnreachableHeader, IcmpEchoHeader, Icmpv4Type, Icmpv6Type, IpHeaders, IpNumber,
        Ipv4Header, Ipv6Header, NetHeaders, PacketBuilder, PacketHeaders, TransportHeader,
    };

    const GUEST_MAC: Mac = [0x02, 0x08, 0x20, 0x00, 0x00, 0x05];
    const GW_MAC: Mac = [0xa8, 0x40, 0x25, 0xff, 0x77, 0x77];
    const GUEST4: [u8; 4] = [10, 0, 0, 5];
    const REMOTE4: [u8; 4] = [10, 0, 1, 9];
    const GW4: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
    const GUEST6: &str = "fd00:1::5";
    const REMOTE6: &str = "fd00:2::9";
    const GW6: &str = "fe80::a840:25ff:feff:7777";

    fn v6(s: &str) -> [u8; 16] {
        s.parse::<Ipv6Addr>().unwrap().octets()
    }

    /// An Ethernet frame carrying a `total`-byte IPv4 UDP packet.
    fn udp4(total: usize, df: bool) -> Vec<u8> {
        let payload = vec![0xab; total - 28];
        let mut h = Ipv4Header::new(0, 64, IpNumber::UDP, GUEST4, REMOTE4).unwrap();
        h.dont_fragment = df;
        h.identification = 0x1234;
        let b = PacketBuilder::ethernet2(GUEST_MAC, GW_MAC)
            .ip(IpHeaders::Ipv4(h, Default::default()))
            .udp(40000, 443);
        let mut out = Vec::new();
        b.write(&mut out, &payload).unwrap();
        assert_eq!(out.len(), 14 + total);
        out
    }

    fn udp6(total: usize) -> Vec<u8> {
        let payload = vec![0xcd; total - 48];
        let b = PacketBuilder::ethernet2(GUEST_MAC, GW_MAC)
            .ipv6(v6(GUEST6), v6(REMOTE6), 64)
            .udp(40000, 443);
        let mut out = Vec::new();
        b.write(&mut out, &payload).unwrap();
        assert_eq!(out.len(), 14 + total);
        out
    }

    #[test]
    fn mtu_arithmetic() {
        assert_eq!(TUNNEL_OVERHEAD, 56);
        assert_eq!(max_inner_frame(1500, 0), 1444);
        assert_eq!(max_inner_mtu(1500, 0), 1430);
        assert_eq!(max_inner_frame(9000, 4), 8940);
        assert_eq!(max_inner_mtu(9000, 4), 8926);
        assert_eq!(max_inner_frame(40, 0), 0);
        assert_eq!(max_inner_mtu(60, 0), 0);
        assert_eq!(max_inner_frame(1500, usize::MAX), 0);
        // Agrees with the engine's encapsulation length.
        assert_eq!(
            ETH_HDR_LEN + TUNNEL_OVERHEAD,
            dataplane::transform::ENCAP_LEN
        );
    }

    #[test]
    fn frag_needed() {
        let mtu = max_inner_mtu(1500, 0) as u16;
        let frame = udp4(1500, true);
        let reply = frag_needed_v4(&frame, GW_MAC, GW4, mtu).expect("a reply");
        let p = PacketHeaders::from_ethernet_slice(&reply).unwrap();
        let eth = p.link.clone().unwrap().ethernet2().unwrap();
        assert_eq!((eth.source, eth.destination), (GW_MAC, GUEST_MAC));
        let Some(NetHeaders::Ipv4(ip, _)) = &p.net else {
            panic!("not IPv4: {:?}", p.net)
        };
        assert_eq!(ip.header_checksum, ip.calc_header_checksum());
        assert_eq!(ip.source, GW4.octets());
        assert_eq!(ip.destination, GUEST4);
        assert_eq!(ip.protocol, IpNumber::ICMP);
        assert_eq!(usize::from(ip.total_len), reply.len() - 14);
        let Some(TransportHeader::Icmpv4(icmp)) = &p.transport else {
            panic!("not ICMP: {:?}", p.transport)
        };
        assert_eq!(
            icmp.icmp_type,
            Icmpv4Type::DestinationUnreachable(DestUnreachableHeader::FragmentationNeeded {
                next_hop_mtu: 1430
            })
        );
        let quoted = p.payload.slice();
        let mut c = icmp.clone();
        c.update_checksum(quoted);
        assert_eq!(c.checksum, icmp.checksum, "ICMP checksum");
        // The original header (20 bytes) and 8 bytes of its payload.
        assert_eq!(quoted, &frame[14..14 + 28]);
        let (orig, _) = Ipv4Header::from_slice(quoted).unwrap();
        assert_eq!(orig.identification, 0x1234);
        assert_eq!(orig.total_len, 1500);
        assert_eq!(reply.len(), 14 + 20 + 8 + 28);
    }

    #[test]
    fn frag_needed_only_when_it_must() {
        let frame = udp4(1500, true);
        // Fits: no error.
        assert!(frag_needed_v4(&frame, GW_MAC, GW4, 1500).is_none());
        assert!(frag_needed_v4(&frame, GW_MAC, GW4, 1499).is_some());
        // DF clear: no error.
        assert!(frag_needed_v4(&udp4(1500, false), GW_MAC, GW4, 1430).is_none());
        // An MTU no IPv4 path may have.
        assert!(frag_needed_v4(&frame, GW_MAC, GW4, 67).is_none());
        // Truncated anywhere: no error, no panic.
        for n in 0..frame.len() {
            assert!(frag_needed_v4(&frame[..n], GW_MAC, GW4, 1430).is_none());
        }
        // Bad header checksum.
        let mut bad = frame.clone();
        bad[14 + 10] ^= 1;
        assert!(frag_needed_v4(&bad, GW_MAC, GW4, 1430).is_none());
        // Broadcast Ethernet destination.
        let mut bcast = frame.clone();
        bcast[..6].copy_from_slice(&[0xff; 6]);
        assert!(frag_needed_v4(&bcast, GW_MAC, GW4, 1430).is_none());
        // Not IPv4.
        assert!(frag_needed_v4(&udp6(1500), GW_MAC, GW4, 1430).is_none());
    }

    fn icmp4(ty: Icmpv4Type, total: usize) -> Vec<u8> {
        let b = PacketBuilder::ethernet2(GUEST_MAC, GW_MAC)
            .ipv4(GUEST4, REMOTE4, 64)
            .icmpv4(ty);
        let payload = vec![0; total - 28];
        let mut out = Vec::new();
        b.write(&mut out, &payload).unwrap();
        out
    }

    #[test]
    fn no_error_for_an_icmp_error() {
        let err = icmp4(
            Icmpv4Type::DestinationUnreachable(DestUnreachableHeader::Port),
            1500,
        );
        assert!(frag_needed_v4(&err, GW_MAC, GW4, 1430).is_none());
        let err = icmp4(
            Icmpv4Type::TimeExceeded(etherparse::icmpv4::TimeExceededCode::TtlExceededInTransit),
            1500,
        );
        assert!(frag_needed_v4(&err, GW_MAC, GW4, 1430).is_none());
        // An echo request is a query: it gets one.
        let echo = icmp4(
            Icmpv4Type::EchoRequest(IcmpEchoHeader { id: 1, seq: 2 }),
            1500,
        );
        assert!(frag_needed_v4(&echo, GW_MAC, GW4, 1430).is_some());
    }

    #[test]
    fn vlan_tag_is_kept() {
        let mut frame = udp4(1500, true);
        frame.splice(12..12, [0x81, 0x00, 0x00, 0x2a]);
        let reply = frag_needed_v4(&frame, GW_MAC, GW4, 1430).unwrap();
        assert_eq!(&reply[12..18], &[0x81, 0x00, 0x00, 0x2a, 0x08, 0x00]);
        let p = PacketHeaders::from_ethernet_slice(&reply).unwrap();
        assert!(matches!(p.net, Some(NetHeaders::Ipv4(..))));
    }

    #[test]
    fn packet_too_big() {
        let frame = udp6(1500);
        let gw: Ipv6Addr = GW6.parse().unwrap();
        let reply = packet_too_big_v6(&frame, GW_MAC, gw, 1430).expect("a reply");
        assert!(reply.len() - 14 <= 1280);
        assert_eq!(reply.len() - 14, 1280, "quotes as much as fits");
        let p = PacketHeaders::from_ethernet_slice(&reply).unwrap();
        let eth = p.link.clone().unwrap().ethernet2().unwrap();
        assert_eq!((eth.source, eth.destination), (GW_MAC, GUEST_MAC));
        let Some(NetHeaders::Ipv6(ip, _)) = &p.net else {
            panic!("not IPv6: {:?}", p.net)
        };
        assert_eq!(ip.source, gw.octets());
        assert_eq!(ip.destination, v6(GUEST6));
        assert_eq!(ip.next_header, IpNumber::IPV6_ICMP);
        assert_eq!(usize::from(ip.payload_length), reply.len() - 14 - 40);
        let Some(TransportHeader::Icmpv6(icmp)) = &p.transport else {
            panic!("not ICMPv6: {:?}", p.transport)
        };
        assert_eq!(icmp.icmp_type, Icmpv6Type::PacketTooBig { mtu: 1430 });
        let quoted = p.payload.slice();
        let mut c = icmp.clone();
        c.update_checksum(ip.source, ip.destination, quoted)
            .unwrap();
        assert_eq!(c.checksum, icmp.checksum, "ICMPv6 checksum");
        assert_eq!(quoted.len(), 1232);
        assert!(quoted == &frame[14..14 + 1232]);
        let (orig, _) = Ipv6Header::from_slice(quoted).unwrap();
        assert_eq!(orig.payload_length, 1460);

        // The MTU is at least 1280, so a packet over it never fits whole
        // in a 1280-byte error: the quote is always its first 1232 bytes.
        let small = udp6(1281);
        let reply = packet_too_big_v6(&small, GW_MAC, gw, 1280).unwrap();
        assert_eq!(reply.len(), 14 + 1280);
        assert!(reply[14 + 48..] == small[14..14 + 1232]);
    }

    #[test]
    fn packet_too_big_only_when_it_must() {
        let gw: Ipv6Addr = GW6.parse().unwrap();
        let frame = udp6(1500);
        assert!(packet_too_big_v6(&frame, GW_MAC, gw, 1500).is_none());
        assert!(packet_too_big_v6(&frame, GW_MAC, gw, 1279).is_none());
        for n in 0..frame.len() {
            assert!(packet_too_big_v6(&frame[..n], GW_MAC, gw, 1430).is_none());
        }
        assert!(packet_too_big_v6(&udp4(1500, true), GW_MAC, gw, 1430).is_none());
        // An unspecified source identifies no node.
        let mut anon = frame.clone();
        anon[14 + 8..14 + 24].fill(0);
        assert!(packet_too_big_v6(&anon, GW_MAC, gw, 1430).is_none());
        // To multicast: Packet Too Big is the exception that is sent.
        let mut mc = frame.clone();
        mc[14 + 24] = 0xff;
        mc[..6].copy_from_slice(&[0x33, 0x33, 0, 0, 0, 1]);
        assert!(packet_too_big_v6(&mc, GW_MAC, gw, 1430).is_some());
    }

    fn icmp6(ty: Icmpv6Type, total: usize) -> Vec<u8> {
        let b = PacketBuilder::ethernet2(GUEST_MAC, GW_MAC)
            .ipv6(v6(GUEST6), v6(REMOTE6), 64)
            .icmpv6(ty);
        let mut out = Vec::new();
        b.write(&mut out, &vec![0; total - 48]).unwrap();
        out
    }

    #[test]
    fn no_error_for_an_icmpv6_error() {
        let gw: Ipv6Addr = GW6.parse().unwrap();
        let err = icmp6(Icmpv6Type::PacketTooBig { mtu: 1400 }, 1500);
        assert!(packet_too_big_v6(&err, GW_MAC, gw, 1430).is_none());
        let echo = icmp6(
            Icmpv6Type::EchoRequest(IcmpEchoHeader { id: 1, seq: 1 }),
            1500,
        );
        assert!(packet_too_big_v6(&echo, GW_MAC, gw, 1430).is_some());
        // Behind a destination options header, the error is still seen.
        let mut hidden = err.clone();
        let ip = 14;
        hidden[ip + 6] = 60;
        hidden.splice(ip + 40..ip + 40, [58, 0, 1, 4, 0, 0, 0, 0]);
        let plen = u16::from_be_bytes([hidden[ip + 4], hidden[ip + 5]]) + 8;
        hidden[ip + 4..ip + 6].copy_from_slice(&plen.to_be_bytes());
        assert!(packet_too_big_v6(&hidden, GW_MAC, gw, 1430).is_none());
        // The same with an echo request inside is answered.
        let mut ok = hidden.clone();
        ok[ip + 48] = 128;
        assert!(packet_too_big_v6(&ok, GW_MAC, gw, 1430).is_some());
        // A chain longer than the limit: the upper layer is unknown.
        let mut long = echo.clone();
        long[ip + 6] = 60;
        let n = IPV6_MAX_EXT_HDRS + 1;
        for i in 0..n {
            let next = if i + 1 == n { 58 } else { 60 };
            long.splice(ip + 40..ip + 40, [next, 0, 1, 4, 0, 0, 0, 0]);
        }
        let plen = u16::from_be_bytes([long[ip + 4], long[ip + 5]]) + 8 * n as u16;
        long[ip + 4..ip + 6].copy_from_slice(&plen.to_be_bytes());
        assert!(packet_too_big_v6(&long, GW_MAC, gw, 1430).is_none());
    }

    #[test]
    fn random_frames_never_panic() {
        let gw: Ipv6Addr = GW6.parse().unwrap();
        let mut x = 0x853c_49e6_748f_ea9bu64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let seeds = [udp4(1500, true), udp6(1500)];
        for i in 0..4000 {
            let mut f = seeds[i % 2].clone();
            for _ in 0..(next() % 6) {
                let at = (next() % 80) as usize;
                f[at] = next() as u8;
            }
            f.truncate((next() % 1600) as usize);
            let _ = frag_needed_v4(&f, GW_MAC, GW4, 1430);
            let _ = packet_too_big_v6(&f, GW_MAC, gw, 1430);
        }
    }
}
