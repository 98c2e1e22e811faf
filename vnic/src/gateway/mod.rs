//! The virtual gateway: replies to the guest's ARP, NDP, DHCPv4, DHCPv6 and
//! ICMP echo, built from the guest's request frame alone.
//!
//! Every guest sees a gateway (a MAC, an IPv4 and an IPv6 address) that does
//! not exist on any wire. The port answers the guest's link-level and
//! configuration traffic for it itself, sending the reply straight back to
//! the guest ("hairpin"). This module holds the pure builders of those
//! replies: each takes the vNIC's [`GatewayConfig`] and the guest's full
//! Ethernet frame and returns the full reply frame, or a [`Refusal`] saying
//! why there is none. They never panic, whatever the bytes.
//!
//! | builder | request | reply |
//! | --- | --- | --- |
//! | [`arp::reply`] | ARP request for the gateway's IPv4 (RFC 826) | ARP reply |
//! | [`icmp::echo4`] | ICMP echo request to the gateway (RFC 792) | echo reply |
//! | [`icmp::echo6`] | ICMPv6 echo request to the gateway (RFC 4443) | echo reply |
//! | [`ndp::reply`] | Router / Neighbor Solicitation (RFC 4861) | Router / Neighbor Advertisement |
//! | [`dhcp4::reply`] | DHCPDISCOVER, REQUEST, INFORM (RFC 2131/2132) | OFFER, ACK, NAK |
//! | [`dhcp6::reply`] | SOLICIT, REQUEST, RENEW, REBIND, CONFIRM, INFORMATION-REQUEST (RFC 8415) | ADVERTISE, REPLY |
//!
//! Common rules, for every builder:
//! - Frames with an 802.1Q/802.1ad tag, IPv4 fragments and IPv6 extension
//!   headers are [`Refusal::Unsupported`]: a guest's gateway traffic has none.
//! - A frame of another protocol than the builder's is
//!   [`Refusal::NotForGateway`], so the builders can be tried in turn.
//! - The guest must send from its own MAC (`guest_mac`), else
//!   [`Refusal::WrongAddress`]; replies go back to that MAC.
//! - IPv4 header checksums and ICMP/ICMPv6 checksums of requests are
//!   verified ([`Refusal::Malformed`]); UDP checksums of DHCP requests are
//!   not, since a guest may leave them to (virtual) checksum offload.
//! - Replies are padded to the 60-octet Ethernet minimum.

pub mod arp;
pub mod dhcp4;
pub mod dhcp6;
pub mod icmp;
pub mod layer;
pub mod ndp;

#[cfg(test)]
mod testutil;

use core::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use serde::{Deserialize, Serialize};
use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    EthernetAddress, EthernetFrame, EthernetProtocol, EthernetRepr, IpProtocol, Ipv4Packet,
    Ipv4Repr, Ipv6Packet, Ipv6Repr, ETHERNET_HEADER_LEN,
};

/// What the gateway of one vNIC answers with: its own addresses, the guest's,
/// and the configuration handed out by DHCP and router advertisements.
///
/// Plain data; any value is accepted (the builders skip what they cannot
/// encode, e.g. a domain longer than 255 octets, rather than fail).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewayConfig {
    /// The gateway's MAC: the source of every reply.
    pub gateway_mac: [u8; 6],
    /// The gateway's IPv4 address (ARP target, DHCP server id, router).
    pub gateway_ip4: Option<Ipv4Addr>,
    /// The gateway's global or ULA IPv6 address. Its link-local address is
    /// derived from `gateway_mac` (see [`GatewayConfig::gateway_ll6`]).
    pub gateway_ip6: Option<Ipv6Addr>,
    /// The guest's MAC: requests must come from it, replies go to it.
    pub guest_mac: [u8; 6],
    /// The guest's IPv4 address, handed out by DHCPv4.
    pub guest_ip4: Option<Ipv4Addr>,
    /// The guest's IPv4 prefix length (DHCP subnet mask), e.g. 24.
    pub guest_prefix4: u8,
    /// The guest's IPv6 address, handed out by DHCPv6 (IA_NA). IPv6 service
    /// (router advertisements, DHCPv6 addresses) is on only when it is set.
    pub guest_ip6: Option<Ipv6Addr>,
    /// The guest's IPv6 prefix length (RA prefix information), e.g. 64.
    pub guest_prefix6: u8,
    /// DNS servers for DHCPv4 (option 6).
    pub dns4: Vec<Ipv4Addr>,
    /// DNS servers for DHCPv6 (option 23, RFC 3646).
    pub dns6: Vec<Ipv6Addr>,
    /// DNS domain (DHCPv4 option 15, DHCPv6 option 24).
    pub domain: Option<String>,
    /// The guest's host name (DHCPv4 option 12).
    pub hostname: Option<String>,
    /// The link MTU (DHCPv4 option 26, RA MTU option).
    pub mtu: u16,
    /// Lease / valid lifetime of the addresses handed out, in seconds
    /// (`u32::MAX` is infinite).
    pub lease_secs: u32,
}

impl GatewayConfig {
    /// The gateway's IPv6 link-local address: `fe80::/64` with the modified
    /// EUI-64 interface identifier of `gateway_mac` (RFC 4291 §2.5.1,
    /// appendix A). Source of router advertisements and DHCPv6 replies.
    pub fn gateway_ll6(&self) -> Ipv6Addr {
        link_local_from_mac(self.gateway_mac)
    }

    /// Whether `addr` is one of the gateway's IPv6 addresses (link-local or
    /// `gateway_ip6`).
    pub fn is_gateway_ip6(&self, addr: Ipv6Addr) -> bool {
        addr == self.gateway_ll6() || Some(addr) == self.gateway_ip6
    }
}

/// The `fe80::/64` address with the modified EUI-64 interface identifier of
/// `mac` (RFC 4291 appendix A): the universal/local bit flipped and `ff:fe`
/// inserted in the middle.
pub fn link_local_from_mac(mac: [u8; 6]) -> Ipv6Addr {
    let [a, b, c, d, e, f] = mac;
    Ipv6Addr::from([
        0xfe,
        0x80,
        0,
        0,
        0,
        0,
        0,
        0,
        a ^ 0x02,
        b,
        c,
        0xff,
        0xfe,
        d,
        e,
        f,
    ])
}

/// Why a builder produced no reply. Stable snake_case names
/// ([`Refusal::as_str`], serde) for counters and traces.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Refusal {
    /// Well formed, but not a request this builder answers: another
    /// protocol or message type, or addressed to someone else than the
    /// gateway.
    NotForGateway,
    /// Truncated, inconsistent lengths, bad checksum, or failing the
    /// protocol's validity checks.
    Malformed,
    /// From a MAC or IP address that is not the guest's (or, for DHCP,
    /// for a client hardware address that is not the guest's).
    WrongAddress,
    /// Valid, but using something the gateway does not implement (VLAN tags,
    /// IP fragments, IPv6 extension headers, DHCP relays, other ARP
    /// hardware).
    Unsupported,
    /// The configuration lacks the address the reply needs (no gateway or
    /// guest IPv4, no guest IPv6).
    NoAddress,
    /// A valid request that calls for no answer (DHCPRELEASE, DHCPDECLINE,
    /// DHCPv6 RELEASE/DECLINE, a DHCPv6 CONFIRM with no addresses).
    NoReply,
}

impl Refusal {
    /// Every refusal, in declaration order.
    pub const ALL: [Refusal; 6] = [
        Refusal::NotForGateway,
        Refusal::Malformed,
        Refusal::WrongAddress,
        Refusal::Unsupported,
        Refusal::NoAddress,
        Refusal::NoReply,
    ];

    /// The stable snake_case name (the same as serde's).
    pub const fn as_str(self) -> &'static str {
        match self {
            Refusal::NotForGateway => "not_for_gateway",
            Refusal::Malformed => "malformed",
            Refusal::WrongAddress => "wrong_address",
            Refusal::Unsupported => "unsupported",
            Refusal::NoAddress => "no_address",
            Refusal::NoReply => "no_reply",
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::error::Error for Refusal {}

/// What every builder returns: the reply frame, or why there is none.
pub type Reply = Result<Vec<u8>, Refusal>;

/// The smallest Ethernet frame without FCS; shorter replies are padded.
pub(crate) const ETH_MIN_FRAME: usize = 60;
/// Hop limit / TTL of the replies that are not NDP.
pub(crate) const REPLY_HOP_LIMIT: u8 = 64;

/// Checks the Ethernet header and returns the frame. A VLAN-tagged frame
/// is `Unsupported`, a frame whose EtherType is not `want` `NotForGateway`.
pub(crate) fn ethernet(
    frame: &[u8],
    want: EthernetProtocol,
) -> Result<EthernetFrame<&[u8]>, Refusal> {
    let eth = EthernetFrame::new_checked(frame).map_err(|_| Refusal::Malformed)?;
    match eth.ethertype() {
        t if t == want => Ok(eth),
        EthernetProtocol::Unknown(0x8100 | 0x88a8 | 0x9100) => Err(Refusal::Unsupported),
        _ => Err(Refusal::NotForGateway),
    }
}

/// `WrongAddress` unless the frame comes from the guest's MAC.
pub(crate) fn from_guest(cfg: &GatewayConfig, eth: &EthernetFrame<&[u8]>) -> Result<(), Refusal> {
    if eth.src_addr().0 == cfg.guest_mac {
        Ok(())
    } else {
        Err(Refusal::WrongAddress)
    }
}

/// Parses the IPv4 header of `eth`'s payload (checksum verified) and returns
/// it with the IP payload (bounded by the total length, so without Ethernet
/// padding). Fragments are `Unsupported`; a protocol other than `want`
/// `NotForGateway`.
pub(crate) fn ipv4<'a>(
    eth: &EthernetFrame<&'a [u8]>,
    want: IpProtocol,
) -> Result<(Ipv4Repr, &'a [u8]), Refusal> {
    let packet = Ipv4Packet::new_checked(eth.payload()).map_err(|_| Refusal::Malformed)?;
    if packet.version() != 4 {
        return Err(Refusal::Malformed);
    }
    if packet.more_frags() || packet.frag_offset() != 0 {
        return Err(Refusal::Unsupported);
    }
    let repr = Ipv4Repr::parse(&packet, &ChecksumCapabilities::default())
        .map_err(|_| Refusal::Malformed)?;
    if repr.next_header != want {
        return Err(Refusal::NotForGateway);
    }
    Ok((repr, packet.payload()))
}

/// Parses the IPv6 header of `eth`'s payload and returns it with the IP
/// payload (bounded by the payload length). Extension headers are
/// `Unsupported`; another upper-layer protocol than `want` `NotForGateway`.
pub(crate) fn ipv6<'a>(
    eth: &EthernetFrame<&'a [u8]>,
    want: IpProtocol,
) -> Result<(Ipv6Repr, &'a [u8]), Refusal> {
    let packet = Ipv6Packet::new_checked(eth.payload()).map_err(|_| Refusal::Malformed)?;
    let repr = Ipv6Repr::parse(&packet).map_err(|_| Refusal::Malformed)?;
    match repr.next_header {
        p if p == want => Ok((repr, packet.payload())),
        IpProtocol::HopByHop
        | IpProtocol::Ipv6Route
        | IpProtocol::Ipv6Frag
        | IpProtocol::Ipv6Opts
        | IpProtocol::IpSecAh
        | IpProtocol::IpSecEsp => Err(Refusal::Unsupported),
        _ => Err(Refusal::NotForGateway),
    }
}

/// Whether an IPv6 source can be answered: not unspecified, not multicast.
pub(crate) fn is_unicast6(addr: Ipv6Addr) -> bool {
    !addr.is_unspecified() && !addr.is_multicast()
}

/// The Ethernet multicast MAC of an IPv6 multicast address (RFC 2464 §7).
pub(crate) fn multicast_mac6(addr: Ipv6Addr) -> [u8; 6] {
    let o = addr.octets();
    [0x33, 0x33, o[12], o[13], o[14], o[15]]
}

/// The solicited-node multicast address of `addr` (RFC 4291 §2.7.1).
pub(crate) fn solicited_node(addr: Ipv6Addr) -> Ipv6Addr {
    let o = addr.octets();
    Ipv6Addr::from([
        0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0xff, o[13], o[14], o[15],
    ])
}

/// Allocates a reply frame (padded to [`ETH_MIN_FRAME`]) with its Ethernet
/// header written, and hands the payload area (`payload_len` octets) to
/// `fill`.
pub(crate) fn build_frame(
    src: [u8; 6],
    dst: [u8; 6],
    ethertype: EthernetProtocol,
    payload_len: usize,
    fill: impl FnOnce(&mut [u8]),
) -> Vec<u8> {
    let len = ETHERNET_HEADER_LEN + payload_len;
    let mut buf = vec![0u8; len.max(ETH_MIN_FRAME)];
    let mut eth = EthernetFrame::new_unchecked(&mut buf[..]);
    EthernetRepr {
        src_addr: EthernetAddress(src),
        dst_addr: EthernetAddress(dst),
        ethertype,
    }
    .emit(&mut eth);
    if let Some(payload) = eth.payload_mut().get_mut(..payload_len) {
        fill(payload);
    }
    buf
}

/// Builds an Ethernet + IPv4 reply whose IP payload (`payload_len` octets)
/// `fill` writes. `Unsupported` if the datagram would not fit IPv4's
/// 16-bit total length.
pub(crate) fn build_ipv4(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src: Ipv4Addr,
    dst: Ipv4Addr,
    protocol: IpProtocol,
    payload_len: usize,
    fill: impl FnOnce(&mut [u8]),
) -> Reply {
    let ip = Ipv4Repr {
        src_addr: src,
        dst_addr: dst,
        next_header: protocol,
        payload_len,
        hop_limit: REPLY_HOP_LIMIT,
    };
    let total = ip.buffer_len() + payload_len;
    if u16::try_from(total).is_err() {
        return Err(Refusal::Unsupported);
    }
    Ok(build_frame(
        src_mac,
        dst_mac,
        EthernetProtocol::Ipv4,
        total,
        |buf| {
            let mut packet = Ipv4Packet::new_unchecked(buf);
            ip.emit(&mut packet, &ChecksumCapabilities::default());
            fill(packet.payload_mut());
        },
    ))
}

/// Builds an Ethernet + IPv6 reply whose payload (`payload_len` octets)
/// `fill` writes. `Unsupported` if it would not fit the 16-bit payload
/// length.
#[allow(clippy::too_many_arguments)]
pub(crate) fn build_ipv6(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src: Ipv6Addr,
    dst: Ipv6Addr,
    protocol: IpProtocol,
    hop_limit: u8,
    payload_len: usize,
    fill: impl FnOnce(&mut [u8]),
) -> Reply {
    if u16::try_from(payload_len).is_err() {
        return Err(Refusal::Unsupported);
    }
    let ip = Ipv6Repr {
        src_addr: src,
        dst_addr: dst,
        next_header: protocol,
        payload_len,
        hop_limit,
    };
    Ok(build_frame(
        src_mac,
        dst_mac,
        EthernetProtocol::Ipv6,
        ip.buffer_len() + payload_len,
        |buf| {
            let mut packet = Ipv6Packet::new_unchecked(buf);
            ip.emit(&mut packet);
            fill(packet.payload_mut());
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 4291 appendix A: 00:1a:2b:3c:4d:5e → fe80::21a:2bff:fe3c:4d5e.
    #[test]
    fn eui64_link_local() {
        let ll = link_local_from_mac([0x00, 0x1a, 0x2b, 0x3c, 0x4d, 0x5e]);
        assert_eq!(ll, "fe80::21a:2bff:fe3c:4d5e".parse::<Ipv6Addr>().unwrap());
    }

    /// RFC 4291 §2.7.1 and RFC 2464 §7.
    #[test]
    fn solicited_node_and_multicast_mac() {
        let a: Ipv6Addr = "fd00::1:2:3:4567:89ab".parse().unwrap();
        let sn = solicited_node(a);
        assert_eq!(sn, "ff02::1:ff67:89ab".parse::<Ipv6Addr>().unwrap());
        assert_eq!(multicast_mac6(sn), [0x33, 0x33, 0xff, 0x67, 0x89, 0xab]);
    }

    #[test]
    fn refusal_names_are_stable_and_match_serde() {
        let names: Vec<&str> = Refusal::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(
            names,
            [
                "not_for_gateway",
                "malformed",
                "wrong_address",
                "unsupported",
                "no_address",
                "no_reply"
            ]
        );
        for r in Refusal::ALL {
            assert_eq!(serde_json::to_string(&r).unwrap(), format!("\"{r}\""));
            let back: Refusal = serde_json::from_str(&format!("\"{r}\"")).unwrap();
            assert_eq!(back, r);
        }
    }

    #[test]
    fn config_round_trips_through_serde() {
        let cfg = testutil::cfg();
        let json = serde_json::to_string(&cfg).unwrap();
        let back: GatewayConfig = serde_json::from_str(&json).unwrap();
        assert_eq!(back, cfg);
    }
}
