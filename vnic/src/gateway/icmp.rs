//! ICMP and ICMPv6 echo (RFC 792, RFC 4443 §4): the gateway answers pings
//! from the guest to any of its addresses.

use std::net::Ipv4Addr;

use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    EthernetProtocol, Icmpv4Message, Icmpv4Packet, Icmpv4Repr, Icmpv6Message, Icmpv6Packet,
    Icmpv6Repr, IpProtocol,
};

use super::{
    build_ipv4, build_ipv6, ethernet, from_guest, ipv4, ipv6, is_unicast6, GatewayConfig, Refusal,
    Reply, REPLY_HOP_LIMIT,
};

/// Answers an ICMP echo request (type 8, code 0) from the guest to
/// `gateway_ip4` with an echo reply (type 0) carrying the same identifier,
/// sequence number and data (RFC 792, "Echo or Echo Reply Message"), from
/// the gateway to the request's source, TTL 64.
///
/// Refusals:
/// - `Malformed`: truncated or inconsistent Ethernet/IPv4/ICMP, bad IPv4
///   header or ICMP checksum, echo request with a code other than 0.
/// - `NotForGateway`: not IPv4/ICMP, not an echo request, or not sent to
///   `gateway_ip4` at `gateway_mac`.
/// - `Unsupported`: a VLAN tag or an IP fragment.
/// - `NoAddress`: the gateway has no IPv4 address.
/// - `WrongAddress`: not from `guest_mac`, or from an IP source that cannot
///   be answered (0.0.0.0, broadcast, multicast).
pub fn echo4(cfg: &GatewayConfig, frame: &[u8]) -> Reply {
    let eth = ethernet(frame, EthernetProtocol::Ipv4)?;
    let (ip, payload) = ipv4(&eth, IpProtocol::Icmp)?;
    let packet = Icmpv4Packet::new_checked(payload).map_err(|_| Refusal::Malformed)?;
    if packet.msg_type() != Icmpv4Message::EchoRequest {
        return Err(Refusal::NotForGateway);
    }
    let Ok(Icmpv4Repr::EchoRequest {
        ident,
        seq_no,
        data,
    }) = Icmpv4Repr::parse(&packet, &ChecksumCapabilities::default())
    else {
        return Err(Refusal::Malformed);
    };
    let gateway = cfg.gateway_ip4.ok_or(Refusal::NoAddress)?;
    if ip.dst_addr != gateway || eth.dst_addr().0 != cfg.gateway_mac {
        return Err(Refusal::NotForGateway);
    }
    from_guest(cfg, &eth)?;
    if !is_unicast4(ip.src_addr) {
        return Err(Refusal::WrongAddress);
    }
    let answer = Icmpv4Repr::EchoReply {
        ident,
        seq_no,
        data,
    };
    build_ipv4(
        cfg.gateway_mac,
        eth.src_addr().0,
        gateway,
        ip.src_addr,
        IpProtocol::Icmp,
        answer.buffer_len(),
        |buf| {
            answer.emit(
                &mut Icmpv4Packet::new_unchecked(buf),
                &ChecksumCapabilities::default(),
            )
        },
    )
}

/// Answers an ICMPv6 echo request (type 128, code 0) from the guest to the
/// gateway's link-local address or `gateway_ip6` with an echo reply (type
/// 129) carrying the same identifier, sequence number and data (RFC 4443
/// §4.2), from the address the request was sent to, hop limit 64.
///
/// Refusals:
/// - `Malformed`: truncated or inconsistent Ethernet/IPv6/ICMPv6, bad
///   ICMPv6 checksum, echo request with a code other than 0.
/// - `NotForGateway`: not IPv6/ICMPv6, not an echo request, or not sent to
///   a gateway address at `gateway_mac`.
/// - `Unsupported`: a VLAN tag or IPv6 extension headers.
/// - `WrongAddress`: not from `guest_mac`, or from the unspecified or a
///   multicast address.
pub fn echo6(cfg: &GatewayConfig, frame: &[u8]) -> Reply {
    let eth = ethernet(frame, EthernetProtocol::Ipv6)?;
    let (ip, payload) = ipv6(&eth, IpProtocol::Icmpv6)?;
    let packet = Icmpv6Packet::new_checked(payload).map_err(|_| Refusal::Malformed)?;
    if packet.msg_type() != Icmpv6Message::EchoRequest {
        return Err(Refusal::NotForGateway);
    }
    let Ok(Icmpv6Repr::EchoRequest {
        ident,
        seq_no,
        data,
    }) = Icmpv6Repr::parse(
        &ip.src_addr,
        &ip.dst_addr,
        &packet,
        &ChecksumCapabilities::default(),
    )
    else {
        return Err(Refusal::Malformed);
    };
    if !cfg.is_gateway_ip6(ip.dst_addr) || eth.dst_addr().0 != cfg.gateway_mac {
        return Err(Refusal::NotForGateway);
    }
    from_guest(cfg, &eth)?;
    if !is_unicast6(ip.src_addr) {
        return Err(Refusal::WrongAddress);
    }
    let answer = Icmpv6Repr::EchoReply {
        ident,
        seq_no,
        data,
    };
    let (src, dst) = (ip.dst_addr, ip.src_addr);
    build_ipv6(
        cfg.gateway_mac,
        eth.src_addr().0,
        src,
        dst,
        IpProtocol::Icmpv6,
        REPLY_HOP_LIMIT,
        answer.buffer_len(),
        |buf| {
            answer.emit(
                &src,
                &dst,
                &mut Icmpv6Packet::new_unchecked(buf),
                &ChecksumCapabilities::default(),
            )
        },
    )
}

fn is_unicast4(addr: Ipv4Addr) -> bool {
    !addr.is_unspecified() && !addr.is_broadcast() && !addr.is_multicast()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::testutil::{self, cfg, guest_ll6, GATEWAY_MAC, GUEST_MAC, OTHER_MAC};
    use etherparse::{IcmpEchoHeader, Icmpv4Type, Icmpv6Type, PacketBuilder, TransportSlice};
    use std::net::Ipv6Addr;

    const DATA: &[u8] = b"sluice ping payload 0123456789";

    fn ping4(src_mac: [u8; 6], src: Ipv4Addr, dst: Ipv4Addr) -> Vec<u8> {
        let b = PacketBuilder::ethernet2(src_mac, GATEWAY_MAC)
            .ipv4(src.octets(), dst.octets(), 64)
            .icmpv4_echo_request(0x1234, 7);
        let mut out = Vec::new();
        b.write(&mut out, DATA).unwrap();
        out
    }

    fn ping6(src_mac: [u8; 6], src: Ipv6Addr, dst: Ipv6Addr) -> Vec<u8> {
        let b = PacketBuilder::ethernet2(src_mac, GATEWAY_MAC)
            .ipv6(src.octets(), dst.octets(), 64)
            .icmpv6_echo_request(0x4321, 9);
        let mut out = Vec::new();
        b.write(&mut out, DATA).unwrap();
        out
    }

    fn guest_ping4() -> Vec<u8> {
        let c = cfg();
        ping4(GUEST_MAC, c.guest_ip4.unwrap(), c.gateway_ip4.unwrap())
    }

    fn guest_ping6() -> Vec<u8> {
        let c = cfg();
        ping6(GUEST_MAC, c.guest_ip6.unwrap(), c.gateway_ip6.unwrap())
    }

    /// RFC 792 "Echo or Echo Reply Message": addresses swapped, type 0,
    /// identifier, sequence number and data returned, checksum recomputed.
    #[test]
    fn echo4_reply_fields_and_checksums() {
        let c = cfg();
        let reply = echo4(&c, &guest_ping4()).unwrap();
        let sliced = testutil::check_ipv4(&reply);
        assert_eq!(testutil::macs(&sliced), (GATEWAY_MAC, GUEST_MAC));
        let Some(etherparse::NetSlice::Ipv4(ip)) = &sliced.net else {
            panic!()
        };
        assert_eq!(ip.header().source_addr(), c.gateway_ip4.unwrap());
        assert_eq!(ip.header().destination_addr(), c.guest_ip4.unwrap());
        let Some(TransportSlice::Icmpv4(icmp)) = &sliced.transport else {
            panic!()
        };
        assert_eq!(
            icmp.icmp_type(),
            Icmpv4Type::EchoReply(IcmpEchoHeader { id: 0x1234, seq: 7 })
        );
        assert_eq!(icmp.payload(), DATA);

        // smoltcp agrees, checksums included.
        let eth = smoltcp::wire::EthernetFrame::new_checked(&reply[..]).unwrap();
        let ip = smoltcp::wire::Ipv4Packet::new_checked(eth.payload()).unwrap();
        assert!(ip.verify_checksum());
        let icmp = Icmpv4Packet::new_checked(ip.payload()).unwrap();
        let repr = Icmpv4Repr::parse(&icmp, &ChecksumCapabilities::default()).unwrap();
        assert_eq!(
            repr,
            Icmpv4Repr::EchoReply {
                ident: 0x1234,
                seq_no: 7,
                data: DATA
            }
        );
    }

    /// RFC 4443 §4.2: reply to an echo request to the global and to the
    /// link-local gateway address, from the address that was pinged.
    #[test]
    fn echo6_reply_fields_and_checksums() {
        let c = cfg();
        for (src, dst) in [
            (c.guest_ip6.unwrap(), c.gateway_ip6.unwrap()),
            (guest_ll6(), c.gateway_ll6()),
        ] {
            let reply = echo6(&c, &ping6(GUEST_MAC, src, dst)).unwrap();
            let sliced = testutil::check_ipv6(&reply, 64);
            assert_eq!(testutil::macs(&sliced), (GATEWAY_MAC, GUEST_MAC));
            let Some(etherparse::NetSlice::Ipv6(ip)) = &sliced.net else {
                panic!()
            };
            assert_eq!(ip.header().source_addr(), dst);
            assert_eq!(ip.header().destination_addr(), src);
            let Some(TransportSlice::Icmpv6(icmp)) = &sliced.transport else {
                panic!()
            };
            assert_eq!(
                icmp.icmp_type(),
                Icmpv6Type::EchoReply(IcmpEchoHeader { id: 0x4321, seq: 9 })
            );
            assert_eq!(icmp.payload(), DATA);

            let eth = smoltcp::wire::EthernetFrame::new_checked(&reply[..]).unwrap();
            let ip = smoltcp::wire::Ipv6Packet::new_checked(eth.payload()).unwrap();
            let icmp = Icmpv6Packet::new_checked(ip.payload()).unwrap();
            assert!(icmp.verify_checksum(&dst, &src));
            let repr = Icmpv6Repr::parse(&dst, &src, &icmp, &ChecksumCapabilities::default());
            assert_eq!(
                repr,
                Ok(Icmpv6Repr::EchoReply {
                    ident: 0x4321,
                    seq_no: 9,
                    data: DATA
                })
            );
        }
    }

    /// RFC 792 / RFC 4443 §4.1: only echo requests to the gateway are
    /// answered; a corrupted checksum is dropped.
    #[test]
    fn refusals() {
        let c = cfg();
        let guest4 = c.guest_ip4.unwrap();
        let elsewhere4 = ping4(GUEST_MAC, guest4, Ipv4Addr::new(10, 0, 0, 8));
        assert_eq!(echo4(&c, &elsewhere4), Err(Refusal::NotForGateway));
        let other = ping4(OTHER_MAC, guest4, c.gateway_ip4.unwrap());
        assert_eq!(echo4(&c, &other), Err(Refusal::WrongAddress));
        let mut bad_sum = guest_ping4();
        let last = bad_sum.len() - 1;
        bad_sum[last] ^= 0xff;
        assert_eq!(echo4(&c, &bad_sum), Err(Refusal::Malformed));
        let mut reply_type = guest_ping4();
        reply_type[14 + 20] = 0; // echo reply, not request
        assert_eq!(echo4(&c, &reply_type), Err(Refusal::NotForGateway));
        assert_eq!(echo4(&c, &guest_ping6()), Err(Refusal::NotForGateway));
        let mut no_v4 = cfg();
        no_v4.gateway_ip4 = None;
        assert_eq!(echo4(&no_v4, &guest_ping4()), Err(Refusal::NoAddress));

        let guest6 = c.guest_ip6.unwrap();
        let elsewhere6 = ping6(GUEST_MAC, guest6, "fd00:1122:3344:101::9".parse().unwrap());
        assert_eq!(echo6(&c, &elsewhere6), Err(Refusal::NotForGateway));
        let other6 = ping6(OTHER_MAC, guest6, c.gateway_ip6.unwrap());
        assert_eq!(echo6(&c, &other6), Err(Refusal::WrongAddress));
        let mut bad_sum6 = guest_ping6();
        let last = bad_sum6.len() - 1;
        bad_sum6[last] ^= 0xff;
        assert_eq!(echo6(&c, &bad_sum6), Err(Refusal::Malformed));
        assert_eq!(echo6(&c, &guest_ping4()), Err(Refusal::NotForGateway));
    }

    /// Robustness (RFC 1122 §1.2.2: assume the network is full of malformed
    /// packets): every truncation is refused, and random corruption, fed to
    /// every builder, never panics.
    #[test]
    fn never_panics() {
        let c = cfg();
        testutil::truncations_refused(echo4, &c, &guest_ping4());
        testutil::truncations_refused(echo6, &c, &guest_ping6());
        testutil::random_flips(echo4, &c, &guest_ping4(), 3000, 4);
        testutil::random_flips(echo6, &c, &guest_ping6(), 3000, 6);
    }
}
