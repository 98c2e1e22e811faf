//! DHCPv4 (RFC 2131, options RFC 2132): the gateway is the guest's DHCP
//! server and hands out `guest_ip4` and the vNIC's configuration.
//!
//! # Replies
//!
//! | request | reply |
//! | --- | --- |
//! | DHCPDISCOVER | DHCPOFFER of `guest_ip4` |
//! | DHCPREQUEST for `guest_ip4` (requested-IP option, else `ciaddr`) | DHCPACK |
//! | DHCPREQUEST for another address | DHCPNAK |
//! | DHCPREQUEST naming another server (server identifier) | none: `NotForGateway` |
//! | DHCPINFORM | DHCPACK with configuration only: no `yiaddr`, no lease times (§4.3.5) |
//! | DHCPRELEASE, DHCPDECLINE | none: `NoReply` |
//!
//! OFFER and ACK carry: server identifier and router (`gateway_ip4`), lease
//! time (`lease_secs`), renewal T1 = lease/2 and rebinding T2 = lease·7/8
//! (both left out for an infinite lease), subnet mask (`guest_prefix4`),
//! DNS servers, domain name, host name, interface MTU (option 26), and the
//! client identifier echoed back (RFC 6842). If they would not fit the
//! client's maximum message size (option 57, at least 576 octets, never
//! above the MTU), host name, then domain, then DNS servers are left out.
//! A NAK carries only the server identifier, a message (option 56) and the
//! echoed client identifier. Replies are at least 300 octets of BOOTP
//! message (RFC 1542 §2.1), padded with zeros after the end option.
//!
//! # Where replies go
//!
//! From `gateway_ip4`:67 and `gateway_mac` to port 68. A NAK, and any reply
//! to a client without an address (`ciaddr` 0) or that set the BROADCAST
//! flag, goes to 255.255.255.255 / ff:ff:ff:ff:ff:ff; otherwise unicast to
//! `ciaddr` at the guest's MAC (RFC 2131 §4.1, simplified: a guest without
//! an address always gets a broadcast, which every client accepts).

use std::net::Ipv4Addr;

use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    DhcpMessageType, DhcpOpCode, DhcpOption, DhcpPacket, DhcpRepr, EthernetProtocol, IpAddress,
    IpProtocol, UdpPacket, UdpRepr, DHCP_CLIENT_PORT, DHCP_SERVER_PORT, UDP_HEADER_LEN,
};

use super::{build_ipv4, ethernet, from_guest, ipv4, GatewayConfig, Refusal, Reply};

/// The smallest BOOTP message sent (RFC 1542 §2.1).
const MIN_MESSAGE: usize = 300;
/// The largest DHCP datagram every client takes (RFC 2131 §2, option 57).
const MIN_MAX_DATAGRAM: usize = 576;
/// IPv4 + UDP header octets in front of the DHCP message.
const IP_UDP_HEADERS: usize = 20 + UDP_HEADER_LEN;

const OPT_HOST_NAME: u8 = 12;
const OPT_DOMAIN_NAME: u8 = 15;
const OPT_DNS: u8 = 6;
const OPT_INTERFACE_MTU: u8 = 26;
const OPT_MESSAGE: u8 = 56;
const OPT_RENEWAL_TIME: u8 = 58;
const OPT_REBINDING_TIME: u8 = 59;
const OPT_CLIENT_ID: u8 = 61;

/// Answers the guest's DHCPv4 message; see the module documentation for
/// what is answered with what.
///
/// Refusals:
/// - `Malformed`: truncated or inconsistent Ethernet/IPv4/UDP/BOOTP, bad
///   IPv4 header checksum, a bad magic cookie, hardware type not Ethernet
///   or length not 6, no (valid) message type option, a DHCPREQUEST with
///   neither requested-IP option nor `ciaddr`.
/// - `NotForGateway`: not IPv4/UDP to port 67; not sent to 255.255.255.255
///   or `gateway_ip4`, or to an Ethernet destination other than broadcast
///   and `gateway_mac`; a BOOTREPLY (a DHCP server in the guest); a
///   DHCPREQUEST whose server identifier is another server's.
/// - `Unsupported`: a VLAN tag, an IP fragment, an unknown message type, a
///   relayed message (`giaddr` set).
/// - `WrongAddress`: not from `guest_mac`, or `chaddr` is not `guest_mac`.
/// - `NoAddress`: no `gateway_ip4`; DISCOVER or REQUEST without a
///   `guest_ip4` to hand out.
/// - `NoReply`: DHCPRELEASE or DHCPDECLINE.
pub fn reply(cfg: &GatewayConfig, frame: &[u8]) -> Reply {
    let eth = ethernet(frame, EthernetProtocol::Ipv4)?;
    let (ip, payload) = ipv4(&eth, IpProtocol::Udp)?;
    let udp = UdpPacket::new_checked(payload).map_err(|_| Refusal::Malformed)?;
    if udp.dst_port() != DHCP_SERVER_PORT {
        return Err(Refusal::NotForGateway);
    }
    let eth_dst = eth.dst_addr();
    if !(ip.dst_addr.is_broadcast() || Some(ip.dst_addr) == cfg.gateway_ip4)
        || !(eth_dst.is_broadcast() || eth_dst.0 == cfg.gateway_mac)
    {
        return Err(Refusal::NotForGateway);
    }
    let packet = DhcpPacket::new_checked(udp.payload()).map_err(|_| Refusal::Malformed)?;
    if packet.opcode() != DhcpOpCode::Request {
        return Err(Refusal::NotForGateway);
    }
    let req = DhcpRepr::parse(&packet).map_err(|_| Refusal::Malformed)?;
    if matches!(req.message_type, DhcpMessageType::Unknown(_)) {
        return Err(Refusal::Unsupported);
    }
    from_guest(cfg, &eth)?;
    if req.client_hardware_address.0 != cfg.guest_mac {
        return Err(Refusal::WrongAddress);
    }
    if !req.relay_agent_ip.is_unspecified() {
        return Err(Refusal::Unsupported);
    }
    if matches!(
        req.message_type,
        DhcpMessageType::Release | DhcpMessageType::Decline
    ) {
        return Err(Refusal::NoReply);
    }
    let server = cfg.gateway_ip4.ok_or(Refusal::NoAddress)?;

    let answer = match req.message_type {
        DhcpMessageType::Discover => Answer::Offer(cfg.guest_ip4.ok_or(Refusal::NoAddress)?),
        DhcpMessageType::Request => {
            if req.server_identifier.is_some_and(|id| id != server) {
                return Err(Refusal::NotForGateway);
            }
            let wanted = req
                .requested_ip
                .or(Some(req.client_ip).filter(|ip| !ip.is_unspecified()))
                .ok_or(Refusal::Malformed)?;
            let guest = cfg.guest_ip4.ok_or(Refusal::NoAddress)?;
            if wanted == guest {
                Answer::Ack(guest)
            } else {
                Answer::Nak
            }
        }
        DhcpMessageType::Inform => Answer::InformAck,
        _ => return Err(Refusal::NotForGateway),
    };
    let client_id = packet
        .options()
        .find(|o| o.kind == OPT_CLIENT_ID)
        .map(|o| o.data);
    let message = build_message(cfg, server, &req, answer, client_id)?;

    let (dst_ip, dst_mac) =
        if answer == Answer::Nak || req.broadcast || req.client_ip.is_unspecified() {
            (Ipv4Addr::BROADCAST, [0xff; 6])
        } else {
            (req.client_ip, eth.src_addr().0)
        };
    udp_reply(cfg, server, dst_ip, dst_mac, &message)
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Answer {
    Offer(Ipv4Addr),
    Ack(Ipv4Addr),
    InformAck,
    Nak,
}

/// Builds the DHCP message (the UDP payload) of the answer.
fn build_message(
    cfg: &GatewayConfig,
    server: Ipv4Addr,
    req: &DhcpRepr<'_>,
    answer: Answer,
    client_id: Option<&[u8]>,
) -> Result<Vec<u8>, Refusal> {
    let (message_type, your_ip, client_ip, leased) = match answer {
        Answer::Offer(addr) => (DhcpMessageType::Offer, addr, Ipv4Addr::UNSPECIFIED, true),
        Answer::Ack(addr) => (DhcpMessageType::Ack, addr, req.client_ip, true),
        Answer::InformAck => (
            DhcpMessageType::Ack,
            Ipv4Addr::UNSPECIFIED,
            req.client_ip,
            false,
        ),
        Answer::Nak => (
            DhcpMessageType::Nak,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::UNSPECIFIED,
            false,
        ),
    };
    let nak = answer == Answer::Nak;
    let mut repr = DhcpRepr {
        message_type,
        transaction_id: req.transaction_id,
        secs: 0,
        client_hardware_address: req.client_hardware_address,
        client_ip,
        your_ip,
        server_ip: Ipv4Addr::UNSPECIFIED,
        router: (!nak).then_some(server),
        subnet_mask: if nak {
            None
        } else {
            subnet_mask(cfg.guest_prefix4)
        },
        relay_agent_ip: Ipv4Addr::UNSPECIFIED,
        broadcast: req.broadcast,
        requested_ip: None,
        client_identifier: None,
        server_identifier: Some(server),
        parameter_request_list: None,
        dns_servers: None,
        max_size: None,
        lease_duration: leased.then_some(cfg.lease_secs),
        renew_duration: None,
        rebind_duration: None,
        additional_options: &[],
    };

    // Further options, most important first; each is added while it fits.
    let mut extra: Vec<(u8, Vec<u8>)> = Vec::new();
    if nak {
        extra.push((
            OPT_MESSAGE,
            b"requested address is not this client's".to_vec(),
        ));
    }
    if leased && cfg.lease_secs != u32::MAX {
        let t1 = cfg.lease_secs / 2;
        let t2 = u32::try_from(u64::from(cfg.lease_secs) * 7 / 8).unwrap_or(u32::MAX);
        extra.push((OPT_RENEWAL_TIME, t1.to_be_bytes().to_vec()));
        extra.push((OPT_REBINDING_TIME, t2.to_be_bytes().to_vec()));
    }
    if !nak && cfg.mtu >= 68 {
        extra.push((OPT_INTERFACE_MTU, cfg.mtu.to_be_bytes().to_vec()));
    }
    if let Some(id) = client_id.filter(|id| !id.is_empty()) {
        extra.push((OPT_CLIENT_ID, id.to_vec()));
    }
    if !nak {
        let dns: Vec<u8> = cfg.dns4.iter().take(63).flat_map(|a| a.octets()).collect();
        if !dns.is_empty() {
            extra.push((OPT_DNS, dns));
        }
        if let Some(domain) = cfg.domain.as_deref().and_then(name_option) {
            extra.push((OPT_DOMAIN_NAME, domain));
        }
        if let Some(host) = cfg.hostname.as_deref().and_then(name_option) {
            extra.push((OPT_HOST_NAME, host));
        }
    }

    let limit = max_message_len(cfg, req);
    let mut len = repr.buffer_len();
    let mut options: Vec<DhcpOption<'_>> = Vec::with_capacity(extra.len());
    for (kind, data) in &extra {
        if data.len() <= usize::from(u8::MAX) && len + 2 + data.len() <= limit {
            len += 2 + data.len();
            options.push(DhcpOption { kind: *kind, data });
        }
    }
    repr.additional_options = &options;

    let mut buf = vec![0u8; repr.buffer_len().max(MIN_MESSAGE)];
    repr.emit(&mut DhcpPacket::new_unchecked(&mut buf[..]))
        .map_err(|_| Refusal::Unsupported)?;
    Ok(buf)
}

/// The largest DHCP message the client takes: its option 57 if at least
/// 576, else 576, but never more than the MTU allows; minus IP and UDP.
fn max_message_len(cfg: &GatewayConfig, req: &DhcpRepr<'_>) -> usize {
    let client = req
        .max_size
        .map(usize::from)
        .filter(|&m| m >= MIN_MAX_DATAGRAM)
        .unwrap_or(MIN_MAX_DATAGRAM);
    let link = usize::from(cfg.mtu).max(MIN_MAX_DATAGRAM);
    client.min(link) - IP_UDP_HEADERS
}

/// The subnet mask of a prefix length; None beyond 32.
fn subnet_mask(prefix: u8) -> Option<Ipv4Addr> {
    if prefix > 32 {
        return None;
    }
    let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
    Some(Ipv4Addr::from(mask))
}

/// A host or domain name as an option value (RFC 2132 §3.14, §3.17):
/// without a trailing dot, 1 to 255 octets; None otherwise.
fn name_option(name: &str) -> Option<Vec<u8>> {
    let name = name.strip_suffix('.').unwrap_or(name);
    (1..=255)
        .contains(&name.len())
        .then(|| name.as_bytes().to_vec())
}

/// Wraps a DHCP message in UDP 67 → 68, IPv4 and Ethernet.
fn udp_reply(
    cfg: &GatewayConfig,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    dst_mac: [u8; 6],
    message: &[u8],
) -> Reply {
    let udp = UdpRepr {
        src_port: DHCP_SERVER_PORT,
        dst_port: DHCP_CLIENT_PORT,
    };
    let len = udp.header_len() + message.len();
    build_ipv4(
        cfg.gateway_mac,
        dst_mac,
        src,
        dst,
        IpProtocol::Udp,
        len,
        |buf| {
            udp.emit(
                &mut UdpPacket::new_unchecked(buf),
                &IpAddress::Ipv4(src),
                &IpAddress::Ipv4(dst),
                message.len(),
                |payload| {
                    if let Some(dst) = payload.get_mut(..message.len()) {
                        dst.copy_from_slice(message);
                    }
                },
                &ChecksumCapabilities::default(),
            )
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::testutil::{self, cfg, GATEWAY_MAC, GUEST_MAC, OTHER_MAC};
    use etherparse::{NetSlice, PacketBuilder, TransportSlice};
    use smoltcp::wire::EthernetAddress;

    const XID: u32 = 0x1d2c_3b4a;

    /// A client message: BOOTP built by smoltcp's `DhcpRepr`, IP/UDP/Ethernet
    /// by etherparse.
    struct Msg {
        kind: DhcpMessageType,
        eth_src: [u8; 6],
        chaddr: [u8; 6],
        ciaddr: Ipv4Addr,
        requested: Option<Ipv4Addr>,
        server_id: Option<Ipv4Addr>,
        broadcast: bool,
        max_size: Option<u16>,
        client_id: Option<Vec<u8>>,
    }

    impl Msg {
        fn new(kind: DhcpMessageType) -> Self {
            Msg {
                kind,
                eth_src: GUEST_MAC,
                chaddr: GUEST_MAC,
                ciaddr: Ipv4Addr::UNSPECIFIED,
                requested: None,
                server_id: None,
                broadcast: false,
                max_size: None,
                client_id: None,
            }
        }

        fn frame(&self) -> Vec<u8> {
            let extra: Vec<DhcpOption<'_>> = self
                .client_id
                .iter()
                .map(|id| DhcpOption {
                    kind: OPT_CLIENT_ID,
                    data: id,
                })
                .collect();
            let repr = DhcpRepr {
                message_type: self.kind,
                transaction_id: XID,
                secs: 3,
                client_hardware_address: EthernetAddress(self.chaddr),
                client_ip: self.ciaddr,
                your_ip: Ipv4Addr::UNSPECIFIED,
                server_ip: Ipv4Addr::UNSPECIFIED,
                router: None,
                subnet_mask: None,
                relay_agent_ip: Ipv4Addr::UNSPECIFIED,
                broadcast: self.broadcast,
                requested_ip: self.requested,
                client_identifier: None,
                server_identifier: self.server_id,
                parameter_request_list: Some(&[1, 3, 6, 12, 15, 26, 51, 58, 59]),
                dns_servers: None,
                max_size: self.max_size,
                lease_duration: None,
                renew_duration: None,
                rebind_duration: None,
                additional_options: &extra,
            };
            let mut dhcp = vec![0u8; repr.buffer_len()];
            repr.emit(&mut DhcpPacket::new_unchecked(&mut dhcp[..]))
                .unwrap();
            // A client with an address unicasts to the server (RENEWING).
            let (src, dst, dst_mac) = if self.ciaddr.is_unspecified() || self.broadcast {
                (self.ciaddr, Ipv4Addr::BROADCAST, [0xff; 6])
            } else {
                (self.ciaddr, cfg().gateway_ip4.unwrap(), GATEWAY_MAC)
            };
            let b = PacketBuilder::ethernet2(self.eth_src, dst_mac)
                .ipv4(src.octets(), dst.octets(), 64)
                .udp(68, 67);
            let mut out = Vec::new();
            b.write(&mut out, &dhcp).unwrap();
            out
        }
    }

    fn discover() -> Vec<u8> {
        Msg::new(DhcpMessageType::Discover).frame()
    }

    fn request_selecting(addr: Ipv4Addr) -> Vec<u8> {
        let mut m = Msg::new(DhcpMessageType::Request);
        m.requested = Some(addr);
        m.server_id = cfg().gateway_ip4;
        m.frame()
    }

    /// What a reply frame says, read with etherparse (IP/UDP, checksums)
    /// and smoltcp (BOOTP), plus the raw options walked independently.
    struct Seen {
        eth_dst: [u8; 6],
        ip_src: Ipv4Addr,
        ip_dst: Ipv4Addr,
        dhcp_len: usize,
        repr: DhcpRepr<'static>,
        options: Vec<(u8, Vec<u8>)>,
    }

    impl Seen {
        fn opt(&self, kind: u8) -> Option<&[u8]> {
            self.options
                .iter()
                .find(|(k, _)| *k == kind)
                .map(|(_, v)| &v[..])
        }
        fn kinds(&self) -> Vec<u8> {
            self.options.iter().map(|(k, _)| *k).collect()
        }
    }

    fn seen(reply: &[u8]) -> Seen {
        let sliced = testutil::check_ipv4(reply);
        let (eth_src, eth_dst) = testutil::macs(&sliced);
        assert_eq!(eth_src, GATEWAY_MAC);
        let Some(NetSlice::Ipv4(ip)) = &sliced.net else {
            panic!()
        };
        let Some(TransportSlice::Udp(udp)) = &sliced.transport else {
            panic!()
        };
        assert_eq!((udp.source_port(), udp.destination_port()), (67, 68));
        let dhcp: &'static [u8] = Vec::leak(udp.payload().to_vec());
        // Independent walk of the options (RFC 2132 §2).
        assert_eq!(&dhcp[236..240], &[99, 130, 83, 99], "magic cookie");
        let mut options = Vec::new();
        let mut at = 240;
        loop {
            match dhcp[at] {
                0 => at += 1,
                255 => break,
                kind => {
                    let len = usize::from(dhcp[at + 1]);
                    options.push((kind, dhcp[at + 2..at + 2 + len].to_vec()));
                    at += 2 + len;
                }
            }
        }
        let packet: &'static DhcpPacket<&'static [u8]> =
            Box::leak(Box::new(DhcpPacket::new_checked(dhcp).unwrap()));
        assert_eq!(packet.opcode(), DhcpOpCode::Reply);
        assert_eq!(packet.hops(), 0);
        assert_eq!(packet.server_ip(), Ipv4Addr::UNSPECIFIED);
        assert_eq!(packet.relay_agent_ip(), Ipv4Addr::UNSPECIFIED);
        let repr = DhcpRepr::parse(packet).unwrap();
        assert_eq!(repr.transaction_id, XID);
        assert_eq!(repr.client_hardware_address.0, GUEST_MAC);
        Seen {
            eth_dst,
            ip_src: ip.header().source_addr(),
            ip_dst: ip.header().destination_addr(),
            dhcp_len: dhcp.len(),
            repr,
            options,
        }
    }

    /// The configuration options of an OFFER/ACK (RFC 2132 §3.3, 3.5, 3.8,
    /// 3.14, 3.17, 5.1, 9.2, 9.7, 9.11, 9.12).
    fn assert_config_options(s: &Seen, c: &GatewayConfig) {
        let gw = c.gateway_ip4.unwrap();
        assert_eq!(s.repr.server_identifier, Some(gw));
        assert_eq!(s.repr.router, Some(gw));
        assert_eq!(s.repr.subnet_mask, Some(Ipv4Addr::new(255, 255, 255, 0)));
        assert_eq!(
            s.repr.dns_servers.as_deref(),
            Some(&[Ipv4Addr::new(1, 1, 1, 1), Ipv4Addr::new(8, 8, 8, 8)][..])
        );
        assert_eq!(s.opt(OPT_DNS), Some(&[1, 1, 1, 1, 8, 8, 8, 8][..]));
        assert_eq!(s.opt(OPT_DOMAIN_NAME), Some(&b"vpc.example.com"[..]));
        assert_eq!(s.opt(OPT_HOST_NAME), Some(&b"guest-1"[..]));
        assert_eq!(s.opt(OPT_INTERFACE_MTU), Some(&1500u16.to_be_bytes()[..]));
        assert_eq!(s.opt(54), Some(&gw.octets()[..]));
        assert_eq!(s.opt(3), Some(&gw.octets()[..]));
        assert_eq!(s.opt(1), Some(&[255, 255, 255, 0][..]));
    }

    fn assert_lease_options(s: &Seen) {
        assert_eq!(s.repr.lease_duration, Some(86_400));
        assert_eq!(s.repr.renew_duration, Some(43_200));
        assert_eq!(s.repr.rebind_duration, Some(75_600));
    }

    /// RFC 2131 §4.3.1 / table 3: DISCOVER → OFFER with yiaddr, server id,
    /// lease and configuration; broadcast since the client has no address
    /// (§4.1); at least 300 octets (RFC 1542 §2.1).
    #[test]
    fn discover_gets_offer() {
        let c = cfg();
        let s = seen(&reply(&c, &discover()).unwrap());
        assert_eq!(s.repr.message_type, DhcpMessageType::Offer);
        assert_eq!(s.opt(53), Some(&[2][..]));
        assert_eq!(s.repr.your_ip, c.guest_ip4.unwrap());
        assert_eq!(s.repr.client_ip, Ipv4Addr::UNSPECIFIED);
        assert_eq!(s.eth_dst, [0xff; 6]);
        assert_eq!(s.ip_src, c.gateway_ip4.unwrap());
        assert_eq!(s.ip_dst, Ipv4Addr::BROADCAST);
        assert!(s.dhcp_len >= 300);
        assert_config_options(&s, &c);
        assert_lease_options(&s);
    }

    /// RFC 2131 §4.3.2 SELECTING: REQUEST with server id and requested IP
    /// for the offered address → ACK.
    #[test]
    fn request_for_guest_address_gets_ack() {
        let c = cfg();
        let s = seen(&reply(&c, &request_selecting(c.guest_ip4.unwrap())).unwrap());
        assert_eq!(s.repr.message_type, DhcpMessageType::Ack);
        assert_eq!(s.repr.your_ip, c.guest_ip4.unwrap());
        assert_eq!(s.ip_dst, Ipv4Addr::BROADCAST);
        assert_config_options(&s, &c);
        assert_lease_options(&s);
    }

    /// RFC 2131 §4.3.2 RENEWING: ciaddr filled, unicast to the server →
    /// ACK unicast to ciaddr at the client's MAC (§4.1); with the BROADCAST
    /// flag, broadcast.
    #[test]
    fn renewing_request_is_unicast_unless_broadcast_flag() {
        let c = cfg();
        let guest = c.guest_ip4.unwrap();
        let mut m = Msg::new(DhcpMessageType::Request);
        m.ciaddr = guest;
        let s = seen(&reply(&c, &m.frame()).unwrap());
        assert_eq!(s.repr.message_type, DhcpMessageType::Ack);
        assert_eq!(s.repr.client_ip, guest);
        assert_eq!(s.repr.your_ip, guest);
        assert_eq!((s.eth_dst, s.ip_dst), (GUEST_MAC, guest));

        m.broadcast = true;
        let s = seen(&reply(&c, &m.frame()).unwrap());
        assert!(s.repr.broadcast, "flags echoed");
        assert_eq!((s.eth_dst, s.ip_dst), ([0xff; 6], Ipv4Addr::BROADCAST));
    }

    /// RFC 2131 §4.3.2: a REQUEST for an address that is not the client's
    /// → NAK, broadcast (§4.1), no yiaddr, server id only (table 3).
    #[test]
    fn request_for_wrong_address_gets_nak() {
        let c = cfg();
        for frame in [
            request_selecting(Ipv4Addr::new(10, 0, 0, 99)),
            {
                let mut m = Msg::new(DhcpMessageType::Request);
                m.requested = Some(Ipv4Addr::new(192, 168, 1, 7)); // INIT-REBOOT
                m.frame()
            },
            {
                let mut m = Msg::new(DhcpMessageType::Request);
                m.ciaddr = Ipv4Addr::new(10, 0, 0, 42); // RENEWING
                m.frame()
            },
        ] {
            let s = seen(&reply(&c, &frame).unwrap());
            assert_eq!(s.repr.message_type, DhcpMessageType::Nak);
            assert_eq!(s.repr.your_ip, Ipv4Addr::UNSPECIFIED);
            assert_eq!(s.repr.client_ip, Ipv4Addr::UNSPECIFIED);
            assert_eq!((s.eth_dst, s.ip_dst), ([0xff; 6], Ipv4Addr::BROADCAST));
            assert_eq!(s.kinds(), [53, 54, OPT_MESSAGE]);
        }
    }

    /// RFC 2131 §4.3.2: a REQUEST naming another server means the client
    /// declined our offer: no answer.
    #[test]
    fn request_to_other_server_is_not_ours() {
        let c = cfg();
        let mut m = Msg::new(DhcpMessageType::Request);
        m.requested = c.guest_ip4;
        m.server_id = Some(Ipv4Addr::new(10, 0, 0, 254));
        assert_eq!(reply(&c, &m.frame()), Err(Refusal::NotForGateway));
        let mut m = Msg::new(DhcpMessageType::Request);
        m.server_id = c.gateway_ip4;
        assert_eq!(
            reply(&c, &m.frame()),
            Err(Refusal::Malformed),
            "nothing requested"
        );
    }

    /// RFC 2131 §4.3.5: INFORM → ACK without yiaddr or lease time,
    /// unicast to ciaddr.
    #[test]
    fn inform_gets_configuration_only() {
        let c = cfg();
        let guest = c.guest_ip4.unwrap();
        let mut m = Msg::new(DhcpMessageType::Inform);
        m.ciaddr = guest;
        let s = seen(&reply(&c, &m.frame()).unwrap());
        assert_eq!(s.repr.message_type, DhcpMessageType::Ack);
        assert_eq!(s.repr.your_ip, Ipv4Addr::UNSPECIFIED);
        assert_eq!(s.repr.client_ip, guest);
        assert_eq!((s.eth_dst, s.ip_dst), (GUEST_MAC, guest));
        assert_config_options(&s, &c);
        for kind in [51, OPT_RENEWAL_TIME, OPT_REBINDING_TIME] {
            assert_eq!(s.opt(kind), None, "option {kind}");
        }
    }

    /// RFC 2131 §4.3.3 / §4.3.4: RELEASE and DECLINE get no answer.
    #[test]
    fn release_and_decline_get_no_reply() {
        let c = cfg();
        for kind in [DhcpMessageType::Release, DhcpMessageType::Decline] {
            let mut m = Msg::new(kind);
            m.ciaddr = c.guest_ip4.unwrap();
            m.server_id = c.gateway_ip4;
            assert_eq!(reply(&c, &m.frame()), Err(Refusal::NoReply));
        }
    }

    /// RFC 2131 §4.2: the server answers the client identified by chaddr;
    /// the gateway serves only its guest.
    #[test]
    fn other_clients_are_wrong_address() {
        let c = cfg();
        let mut m = Msg::new(DhcpMessageType::Discover);
        m.eth_src = OTHER_MAC;
        m.chaddr = OTHER_MAC;
        assert_eq!(reply(&c, &m.frame()), Err(Refusal::WrongAddress));
        m.eth_src = GUEST_MAC;
        assert_eq!(reply(&c, &m.frame()), Err(Refusal::WrongAddress));
        m.chaddr = GUEST_MAC;
        m.eth_src = OTHER_MAC;
        assert_eq!(reply(&c, &m.frame()), Err(Refusal::WrongAddress));
    }

    /// RFC 2131 §4.3.1: a server offers only an address it has, and needs
    /// its own for the server identifier (§4.3.1 table 3); else NoAddress.
    #[test]
    fn missing_addresses() {
        let mut c = cfg();
        c.guest_ip4 = None;
        assert_eq!(reply(&c, &discover()), Err(Refusal::NoAddress));
        let mut c = cfg();
        c.gateway_ip4 = None;
        assert_eq!(reply(&c, &discover()), Err(Refusal::NoAddress));
    }

    /// RFC 6842: the client identifier is echoed in OFFER, ACK and NAK.
    #[test]
    fn client_identifier_is_echoed() {
        let c = cfg();
        let id = vec![0xff, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12];
        let mut m = Msg::new(DhcpMessageType::Discover);
        m.client_id = Some(id.clone());
        let s = seen(&reply(&c, &m.frame()).unwrap());
        assert_eq!(s.opt(OPT_CLIENT_ID), Some(&id[..]));
        let mut m = Msg::new(DhcpMessageType::Request);
        m.requested = Some(Ipv4Addr::new(10, 0, 0, 99));
        m.client_id = Some(id.clone());
        let s = seen(&reply(&c, &m.frame()).unwrap());
        assert_eq!(s.kinds(), [53, 54, OPT_MESSAGE, OPT_CLIENT_ID]);
    }

    /// RFC 2131 §2 / RFC 2132 §9.10: replies fit 576-octet datagrams
    /// unless the client says it takes more; optional names are dropped
    /// first.
    #[test]
    fn oversized_configuration_is_trimmed_to_fit() {
        let mut c = cfg();
        c.dns4 = (0..40).map(|i| Ipv4Addr::new(10, 1, 0, i)).collect();
        c.domain = Some("d".repeat(200));
        c.hostname = Some("h".repeat(200));
        let s = seen(&reply(&c, &discover()).unwrap());
        assert!(s.dhcp_len + 28 <= 576, "{}", s.dhcp_len);
        assert!(s.opt(OPT_RENEWAL_TIME).is_some() && s.opt(OPT_INTERFACE_MTU).is_some());
        assert_eq!(s.opt(OPT_DNS).map(<[u8]>::len), Some(160));
        assert_eq!(s.opt(OPT_HOST_NAME), None);

        let mut m = Msg::new(DhcpMessageType::Discover);
        m.max_size = Some(1500);
        let s = seen(&reply(&c, &m.frame()).unwrap());
        assert!(s.opt(OPT_DOMAIN_NAME).is_some() && s.opt(OPT_HOST_NAME).is_some());
        assert!(s.dhcp_len + 28 <= 1500);
    }

    /// RFC 2131 §4.1 (server port 67), §2 (op BOOTREQUEST, giaddr for
    /// relays), §3 / RFC 2132 §2 (magic cookie): what is not a client's
    /// message to this server is refused.
    #[test]
    fn not_dhcp_for_gateway() {
        let c = cfg();
        let mut f = discover();
        f[14 + 20 + 2..14 + 20 + 4].copy_from_slice(&53u16.to_be_bytes());
        assert_eq!(reply(&c, &f), Err(Refusal::NotForGateway));
        let mut f = discover();
        f[14 + 20 + 8] = 2; // op BOOTREPLY
        assert_eq!(reply(&c, &f), Err(Refusal::NotForGateway));
        let mut f = discover();
        f[14 + 20 + 8 + 24] = 10; // giaddr 10.0.0.0
        assert_eq!(reply(&c, &f), Err(Refusal::Unsupported));
        let mut f = discover();
        f[14 + 20 + 8 + 236] = 0; // magic cookie
        assert_eq!(reply(&c, &f), Err(Refusal::Malformed));
    }

    /// Robustness (RFC 1122 §1.2.2: assume the network is full of malformed
    /// packets): every truncation is refused, and random corruption, fed to
    /// every builder, never panics.
    #[test]
    fn never_panics() {
        let c = cfg();
        let mut renew = Msg::new(DhcpMessageType::Request);
        renew.ciaddr = c.guest_ip4.unwrap();
        let frames = [
            discover(),
            request_selecting(c.guest_ip4.unwrap()),
            renew.frame(),
        ];
        for (i, f) in frames.iter().enumerate() {
            testutil::truncations_refused(reply, &c, f);
            let answered = testutil::random_flips(reply, &c, f, 3000, 70 + i as u64);
            assert!(
                answered > 0,
                "some corruptions (e.g. in padding) are harmless"
            );
        }
    }
}
