//! ARP (RFC 826): the gateway answers the guest's requests for its IPv4
//! address.

use smoltcp::wire::{
    ArpHardware, ArpOperation, ArpPacket, ArpRepr, EthernetAddress, EthernetProtocol,
};

use super::{build_frame, ethernet, GatewayConfig, Refusal, Reply};

/// Answers an ARP request (op 1) from the guest for the gateway's IPv4
/// address with an ARP reply (op 2) saying it is at `gateway_mac`, sent
/// from `gateway_mac` to the requester's MAC (RFC 826, "Packet Reception").
///
/// Refusals:
/// - `Malformed`: truncated Ethernet header or ARP packet.
/// - `NotForGateway`: not an ARP frame; not a request (replies, RARP, ...);
///   Ethernet destination neither broadcast nor `gateway_mac`; a probe
///   (sender IP 0.0.0.0, RFC 5227) or gratuitous ARP (sender IP = target
///   IP); a target other than `gateway_ip4`.
/// - `Unsupported`: a VLAN tag, or ARP for other hardware/protocol than
///   Ethernet/IPv4.
/// - `NoAddress`: the gateway has no IPv4 address.
/// - `WrongAddress`: Ethernet source or sender hardware address is not
///   `guest_mac`, or the sender IP is not `guest_ip4` (when it is set).
pub fn reply(cfg: &GatewayConfig, frame: &[u8]) -> Reply {
    let eth = ethernet(frame, EthernetProtocol::Arp)?;
    let packet = ArpPacket::new_checked(eth.payload()).map_err(|_| Refusal::Malformed)?;
    if packet.hardware_type() != ArpHardware::Ethernet
        || packet.protocol_type() != EthernetProtocol::Ipv4
        || packet.hardware_len() != 6
        || packet.protocol_len() != 4
    {
        return Err(Refusal::Unsupported);
    }
    let ArpRepr::EthernetIpv4 {
        operation,
        source_hardware_addr: sha,
        source_protocol_addr: spa,
        target_protocol_addr: tpa,
        ..
    } = ArpRepr::parse(&packet).map_err(|_| Refusal::Malformed)?
    else {
        return Err(Refusal::Unsupported);
    };
    if operation != ArpOperation::Request {
        return Err(Refusal::NotForGateway);
    }
    let dst = eth.dst_addr();
    if !dst.is_broadcast() && dst.0 != cfg.gateway_mac {
        return Err(Refusal::NotForGateway);
    }
    let gateway_ip4 = cfg.gateway_ip4.ok_or(Refusal::NoAddress)?;
    if spa.is_unspecified() || spa == tpa || tpa != gateway_ip4 {
        return Err(Refusal::NotForGateway);
    }
    if eth.src_addr().0 != cfg.guest_mac || sha.0 != cfg.guest_mac {
        return Err(Refusal::WrongAddress);
    }
    if cfg.guest_ip4.is_some_and(|guest| guest != spa) {
        return Err(Refusal::WrongAddress);
    }

    let answer = ArpRepr::EthernetIpv4 {
        operation: ArpOperation::Reply,
        source_hardware_addr: EthernetAddress(cfg.gateway_mac),
        source_protocol_addr: gateway_ip4,
        target_hardware_addr: sha,
        target_protocol_addr: spa,
    };
    Ok(build_frame(
        cfg.gateway_mac,
        sha.0,
        EthernetProtocol::Arp,
        answer.buffer_len(),
        |buf| answer.emit(&mut ArpPacket::new_unchecked(buf)),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::testutil::{self, cfg, GATEWAY_MAC, GUEST_MAC, OTHER_MAC};
    use etherparse::{
        ArpHardwareId, ArpOperation as EpOp, ArpPacket as EpArp, EtherType, PacketBuilder,
        SlicedPacket,
    };
    use std::net::Ipv4Addr;

    fn request(src_mac: [u8; 6], spa: Ipv4Addr, tpa: Ipv4Addr, op: EpOp) -> Vec<u8> {
        let arp = EpArp::new(
            ArpHardwareId::ETHERNET,
            EtherType::IPV4,
            op,
            &src_mac,
            &spa.octets(),
            &[0; 6],
            &tpa.octets(),
        )
        .unwrap();
        let builder = PacketBuilder::ethernet2(src_mac, [0xff; 6]).arp(arp);
        let mut out = Vec::new();
        builder.write(&mut out).unwrap();
        out
    }

    fn guest_request() -> Vec<u8> {
        let c = cfg();
        request(
            GUEST_MAC,
            c.guest_ip4.unwrap(),
            c.gateway_ip4.unwrap(),
            EpOp::REQUEST,
        )
    }

    /// RFC 826 "Packet Reception": the target answers with op REPLY, its own
    /// hardware/protocol address as sender and the requester's as target.
    #[test]
    fn answers_request_for_gateway() {
        let c = cfg();
        let reply = reply(&c, &guest_request()).unwrap();
        assert_eq!(reply.len(), 60, "padded to the Ethernet minimum");

        // etherparse
        let sliced = SlicedPacket::from_ethernet(&reply).unwrap();
        assert_eq!(testutil::macs(&sliced), (GATEWAY_MAC, GUEST_MAC));
        let Some(etherparse::NetSlice::Arp(arp)) = sliced.net else {
            panic!("not ARP")
        };
        let arp = arp.to_packet().try_eth_ipv4().unwrap();
        assert_eq!(arp.operation, EpOp::REPLY);
        assert_eq!(arp.sender_mac, GATEWAY_MAC);
        assert_eq!(arp.sender_ipv4, c.gateway_ip4.unwrap().octets());
        assert_eq!(arp.target_mac, GUEST_MAC);
        assert_eq!(arp.target_ipv4, c.guest_ip4.unwrap().octets());

        // smoltcp
        let frame = smoltcp::wire::EthernetFrame::new_checked(&reply[..]).unwrap();
        assert_eq!(frame.ethertype(), EthernetProtocol::Arp);
        let repr = ArpRepr::parse(&ArpPacket::new_checked(frame.payload()).unwrap()).unwrap();
        assert_eq!(
            repr,
            ArpRepr::EthernetIpv4 {
                operation: ArpOperation::Reply,
                source_hardware_addr: EthernetAddress(GATEWAY_MAC),
                source_protocol_addr: c.gateway_ip4.unwrap(),
                target_hardware_addr: EthernetAddress(GUEST_MAC),
                target_protocol_addr: c.guest_ip4.unwrap(),
            }
        );
    }

    /// RFC 826: only the owner of the target protocol address replies.
    #[test]
    fn refuses_other_targets_probes_and_gratuitous() {
        let c = cfg();
        let guest = c.guest_ip4.unwrap();
        let other = Ipv4Addr::new(10, 0, 0, 77);
        let r = |f: Vec<u8>| reply(&c, &f);
        assert_eq!(
            r(request(GUEST_MAC, guest, other, EpOp::REQUEST)),
            Err(Refusal::NotForGateway)
        );
        // RFC 5227 probe: sender IP 0.0.0.0.
        assert_eq!(
            r(request(
                GUEST_MAC,
                Ipv4Addr::UNSPECIFIED,
                c.gateway_ip4.unwrap(),
                EpOp::REQUEST
            )),
            Err(Refusal::NotForGateway)
        );
        // Gratuitous ARP: sender IP = target IP.
        assert_eq!(
            r(request(GUEST_MAC, guest, guest, EpOp::REQUEST)),
            Err(Refusal::NotForGateway)
        );
        // An ARP reply from the guest.
        assert_eq!(
            r(request(
                GUEST_MAC,
                guest,
                c.gateway_ip4.unwrap(),
                EpOp::REPLY
            )),
            Err(Refusal::NotForGateway)
        );
    }

    /// RFC 826: the reply goes to the sender hardware address, so it must
    /// be the guest's.
    #[test]
    fn refuses_other_senders_and_missing_address() {
        let c = cfg();
        let gw = c.gateway_ip4.unwrap();
        assert_eq!(
            reply(
                &c,
                &request(OTHER_MAC, c.guest_ip4.unwrap(), gw, EpOp::REQUEST)
            ),
            Err(Refusal::WrongAddress)
        );
        assert_eq!(
            reply(
                &c,
                &request(GUEST_MAC, Ipv4Addr::new(10, 0, 0, 9), gw, EpOp::REQUEST)
            ),
            Err(Refusal::WrongAddress)
        );
        let mut no_v4 = cfg();
        no_v4.gateway_ip4 = None;
        assert_eq!(reply(&no_v4, &guest_request()), Err(Refusal::NoAddress));
    }

    /// RFC 826: only Ethernet (hardware 1) / IPv4 (0x0800) resolution is
    /// spoken; other EtherTypes are not ARP at all.
    #[test]
    fn refuses_other_protocols() {
        let c = cfg();
        let mut f = guest_request();
        f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
        assert_eq!(reply(&c, &f), Err(Refusal::NotForGateway));
        let mut f = guest_request();
        f[12..14].copy_from_slice(&0x86ddu16.to_be_bytes());
        assert_eq!(reply(&c, &f), Err(Refusal::NotForGateway));
        let mut f = guest_request();
        f[14..16].copy_from_slice(&6u16.to_be_bytes()); // IEEE 802 hardware
        assert_eq!(reply(&c, &f), Err(Refusal::Unsupported));
    }

    /// Robustness (RFC 1122 §1.2.2: assume the network is full of malformed
    /// packets): every truncation is refused, and random corruption, fed to
    /// every builder, never panics.
    #[test]
    fn never_panics() {
        testutil::truncations_refused(reply, &cfg(), &guest_request());
        testutil::random_flips(reply, &cfg(), &guest_request(), 3000, 0xa5);
    }
}
