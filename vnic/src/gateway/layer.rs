//! The gateway layer: the first layer outbound, the last inbound.
//!
//! Outbound it answers what the guest asks of its virtual gateway (ARP,
//! DHCPv4, DHCPv6, NDP, ping) with hairpin replies, and lets through only
//! what the guest may send: frames from its own MAC and its own addresses
//! (or attached subnets and transit prefixes allowed out), not to
//! broadcast nor to link-local multicast (a routable group's datagram
//! goes on: the overlay tunnels it if the group has an M2P entry, else
//! drops it as `multicast` too). A guest's IGMP and MLD messages are dropped
//! (`mcast_membership_report`), never answered nor forwarded: which
//! groups a port receives is set by the control plane
//! (`sluiceadm mcast-subscribe`). Everything else
//! is dropped here, before any other layer sees it, with a reason naming
//! what was wrong. Inbound it lets through only packets for the guest's
//! addresses (and attached subnets, transit prefixes allowed in) and makes them look routed by the gateway (source MAC the
//! gateway's, destination the guest's), and a group's datagram the
//! switch hands a subscribed port (destination MAC the group's).
//!
//! ARP: the gateway also answers for every other address of the guest's
//! IPv4 subnet (proxy ARP) with its own MAC. A VPC has no shared link, so
//! a guest's "neighbours" are reached through the gateway like any other
//! destination; this keeps the subnet mask DHCP hands out meaningful to
//! guests without classless static routes. IPv6 needs no such trick: the
//! router advertisement marks the prefix off-link, so guests send
//! everything to the router.

use super::{arp, dhcp4, dhcp6, icmp, ndp, GatewayConfig, Refusal, Reply};
use crate::config::VnicConfig;
use core::fmt;
use core::net::IpAddr;
use dataplane::headers::{Headers, L3};
use dataplane::{
    Action, DefaultAction, Direction, GenError, HairpinAction, IpCidr, LayerConfig, Meta,
    PacketBuf, Port, PortRange, Predicate, Rule, StaticAction, Transform,
};
use std::sync::Arc;

pub const LAYER: &str = "gateway";

/// Policy drop reasons this layer gives.
pub mod reason {
    /// The frame's source MAC is not the guest's.
    pub const SPOOFED_MAC: &str = "spoofed_source_mac";
    /// The packet's source address is not the guest's (nor an attached subnet's).
    pub const SPOOFED_IP: &str = "spoofed_source_ip";
    /// Multicast or broadcast other than what the gateway itself serves.
    pub const MULTICAST: &str = "multicast";
    /// A guest's IGMP (RFC 3376) or MLD (RFC 3810) message: membership
    /// is the control plane's (`mcast-subscribe`), not the guest's to
    /// claim, and the reports are never forwarded or answered.
    pub const MEMBERSHIP_REPORT: &str = "mcast_membership_report";
    /// Neither IPv4, IPv6 nor ARP.
    pub const ETHERTYPE: &str = "unsupported_ethertype";
    /// Inbound, but not to any of the guest's addresses.
    pub const NOT_FOR_GUEST: &str = "not_for_guest";
    /// Larger than the guest's MTU, and no ICMP error can be sent for it.
    pub const OVERSIZE: &str = "oversize";
}

/// The policy reason for a request the gateway would not answer.
pub fn refusal_reason(r: Refusal) -> &'static str {
    match r {
        Refusal::NotForGateway => "gateway_not_for_us",
        Refusal::Malformed => "gateway_malformed_request",
        Refusal::WrongAddress => "gateway_wrong_address",
        Refusal::Unsupported => "gateway_unsupported_request",
        Refusal::NoAddress => "gateway_no_address",
        Refusal::NoReply => "gateway_no_reply",
    }
}

impl From<&VnicConfig> for GatewayConfig {
    fn from(c: &VnicConfig) -> GatewayConfig {
        GatewayConfig {
            gateway_mac: c.gateway_mac.0,
            gateway_ip4: c.ipv4.as_ref().map(|v| v.gateway),
            gateway_ip6: c.ipv6.as_ref().map(|v| v.gateway),
            guest_mac: c.guest_mac.0,
            guest_ip4: c.ipv4.as_ref().map(|v| v.addr),
            guest_prefix4: c.ipv4.as_ref().map_or(32, |v| v.subnet.prefix_len()),
            guest_ip6: c.ipv6.as_ref().map(|v| v.addr),
            guest_prefix6: c.ipv6.as_ref().map_or(128, |v| v.subnet.prefix_len()),
            dns4: c.dhcp.dns4.clone(),
            dns6: c.dhcp.dns6.clone(),
            domain: c.dhcp.domain.clone(),
            hostname: c.dhcp.hostname.clone(),
            mtu: c.mtu,
            lease_secs: c.dhcp.lease_secs,
        }
    }
}

/// A hairpin action running one of the gateway's reply builders.
struct Responder {
    name: &'static str,
    cfg: Arc<GatewayConfig>,
    build: fn(&GatewayConfig, &[u8]) -> Reply,
}

impl fmt::Display for Responder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)
    }
}

impl HairpinAction for Responder {
    fn reply(&self, _: &Headers, frame: &[u8], _: &Meta) -> Result<PacketBuf, GenError> {
        (self.build)(&self.cfg, frame)
            .map(|v| PacketBuf::from_frame(&v))
            .map_err(|r| GenError::Refused(refusal_reason(r)))
    }
}

/// ARP with proxy answers for the rest of the guest's subnet.
struct ProxyArp {
    cfg: Arc<GatewayConfig>,
    subnet: Option<IpCidr>,
}

impl fmt::Display for ProxyArp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("arp")
    }
}

impl HairpinAction for ProxyArp {
    fn reply(&self, h: &Headers, frame: &[u8], _: &Meta) -> Result<PacketBuf, GenError> {
        let refused = |r| GenError::Refused(refusal_reason(r));
        match arp::reply(&self.cfg, frame) {
            Ok(v) => Ok(PacketBuf::from_frame(&v)),
            Err(Refusal::NotForGateway) => {
                let L3::Arp(a) = h.inner.l3 else {
                    return Err(refused(Refusal::NotForGateway));
                };
                // Any other address of the guest's subnet but the guest's
                // own and the subnet's network address.
                let target = IpAddr::V4(a.tpa);
                let proxied = self
                    .subnet
                    .is_some_and(|s| s.contains(target) && s.addr() != target)
                    && Some(a.tpa) != self.cfg.guest_ip4;
                if !proxied {
                    return Err(refused(Refusal::NotForGateway));
                }
                // Answer as if the target were the gateway: same checks on
                // the request, our MAC in the reply.
                let mut as_target = (*self.cfg).clone();
                as_target.gateway_ip4 = Some(a.tpa);
                arp::reply(&as_target, frame)
                    .map(|v| PacketBuf::from_frame(&v))
                    .map_err(refused)
            }
            Err(r) => Err(refused(r)),
        }
    }
}

/// Inbound: make the packet look routed by the gateway.
struct ToGuest {
    gateway_mac: [u8; 6],
    guest_mac: [u8; 6],
}

impl fmt::Display for ToGuest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("to-guest")
    }
}

impl StaticAction for ToGuest {
    fn transform(&self, _: Direction, _: &Headers, _: &mut Meta) -> Result<Transform, GenError> {
        Ok(Transform {
            eth_src: Some(self.gateway_mac),
            eth_dst: Some(self.guest_mac),
            ..Default::default()
        })
    }
}

/// Inbound to a group member: from the gateway, to the group's MAC as
/// on a LAN (RFC 1112 §6.4, RFC 2464 §7), which the guest's NIC filter
/// takes for a group it joined.
struct ToMember {
    gateway_mac: [u8; 6],
}

impl fmt::Display for ToMember {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("to-member")
    }
}

impl StaticAction for ToMember {
    fn transform(&self, _: Direction, _: &Headers, _: &mut Meta) -> Result<Transform, GenError> {
        Ok(Transform {
            eth_src: Some(self.gateway_mac),
            ..Default::default()
        })
    }
}

/// Every multicast address (IPv4 224.0.0.0/4, IPv6 ff00::/8).
pub fn groups() -> Vec<IpCidr> {
    vec![
        "224.0.0.0/4".parse().expect("literal"),
        "ff00::/8".parse().expect("literal"),
    ]
}

/// The groups that never leave a link: IPv4 224.0.0.0/24 (RFC 5771 §4)
/// and IPv6 scopes 0-2 under every flag value (RFC 4291 §2.7, RFC 7346
/// §2), the same rule as `overlay::mcast::check_group`.
pub fn link_local_groups() -> Vec<IpCidr> {
    let mut v: Vec<IpCidr> = vec!["224.0.0.0/24".parse().expect("literal")];
    for flags in 0u16..16 {
        for scope in 0u16..3 {
            let a = core::net::Ipv6Addr::new(0xff00 | (flags << 4) | scope, 0, 0, 0, 0, 0, 0, 0);
            v.push(IpCidr::new(IpAddr::V6(a), 16).expect("a /16 of ff00::/8"));
        }
    }
    v
}

/// Answers a guest frame larger than its MTU with ICMP "fragmentation
/// needed" (RFC 1191, DF set) or ICMPv6 "packet too big" (RFC 8201) from
/// the gateway, so path MTU discovery works instead of the packet
/// vanishing. A frame that cannot be answered (IPv4 without DF, an ICMP
/// error itself) is dropped as `oversize`.
struct TooBig {
    gateway_mac: [u8; 6],
    gw4: Option<core::net::Ipv4Addr>,
    gw6: Option<core::net::Ipv6Addr>,
    mtu: u16,
}

impl fmt::Display for TooBig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "too-big mtu {}", self.mtu)
    }
}

impl HairpinAction for TooBig {
    fn reply(&self, h: &Headers, frame: &[u8], _: &Meta) -> Result<PacketBuf, GenError> {
        let reply = match (h.inner.l3, self.gw4, self.gw6) {
            (L3::Ipv4(_), Some(gw), _) => {
                overlay::frag_needed_v4(frame, self.gateway_mac, gw, self.mtu)
            }
            (L3::Ipv6(_), _, Some(gw)) => {
                overlay::packet_too_big_v6(frame, self.gateway_mac, gw, u32::from(self.mtu))
            }
            _ => None,
        };
        reply
            .map(|v| PacketBuf::from_frame(&v))
            .ok_or(GenError::Refused(reason::OVERSIZE))
    }
}

/// The port's MTU check for `c`: frames over the guest's MTU (plus the
/// Ethernet header) are answered by the gateway.
pub fn mtu_check(c: &VnicConfig) -> dataplane::port::MtuCheck {
    dataplane::port::MtuCheck {
        max_frame: 14 + usize::from(c.mtu),
        too_big: Arc::new(TooBig {
            gateway_mac: c.gateway_mac.0,
            gw4: c.ipv4.as_ref().map(|v| v.gateway),
            gw6: c.ipv6.as_ref().map(|v| v.gateway),
            mtu: c.mtu,
        }),
    }
}

pub fn layer_config() -> LayerConfig {
    LayerConfig::new(LAYER, DefaultAction::Deny, DefaultAction::Deny)
}

/// The guest's own addresses and attached subnets: what it may send from
/// and what inbound traffic may be for.
pub fn guest_prefixes(c: &VnicConfig) -> Vec<IpCidr> {
    let mut v: Vec<IpCidr> = Vec::new();
    if let Some(v4) = &c.ipv4 {
        v.push(IpCidr::host(IpAddr::V4(v4.addr)));
    }
    if let Some(v6) = &c.ipv6 {
        v.push(IpCidr::host(IpAddr::V6(v6.addr)));
    }
    v.extend(c.attached_subnets.iter().copied());
    v
}

/// What the guest may send from: its addresses, attached subnets
/// (private and external) and transit prefixes allowed outbound.
pub fn outbound_prefixes(c: &VnicConfig) -> Vec<IpCidr> {
    let mut v = guest_prefixes(c);
    v.extend(c.external_subnets.iter().copied());
    let out = c.transit_ips.iter().filter(|t| t.dir.allows_out());
    v.extend(out.map(|t| t.cidr));
    v
}

/// What inbound traffic may be for: the guest's addresses, attached
/// subnets and transit prefixes allowed inbound.
pub fn inbound_prefixes(c: &VnicConfig) -> Vec<IpCidr> {
    let mut v = guest_prefixes(c);
    v.extend(c.external_subnets.iter().copied());
    let inb = c.transit_ips.iter().filter(|t| t.dir.allows_in());
    v.extend(inb.map(|t| t.cidr));
    v
}

/// Sets the gateway layer's rules for `c` (both directions, in one step).
pub fn install(port: &mut Port, c: &VnicConfig) -> Result<(), dataplane::port::PortError> {
    let cfg = Arc::new(GatewayConfig::from(c));
    let hairpin = |name, build| {
        Action::Hairpin(Arc::new(Responder {
            name,
            cfg: cfg.clone(),
            build,
        }))
    };
    let udp_to = |port| {
        vec![
            Predicate::Proto(vec![17]),
            Predicate::DstPort(vec![PortRange::single(port)]),
        ]
    };
    let guest_mac = Predicate::EthSrc(vec![c.guest_mac.0]);
    let mut out = Vec::new();

    // 1. What the gateway answers itself (requests are checked in full by
    //    the builders: wrong sender, wrong target and so on are refused
    //    there with a reason).
    out.push(
        Rule::new(
            10,
            Action::Hairpin(Arc::new(ProxyArp {
                cfg: cfg.clone(),
                subnet: c.ipv4.as_ref().map(|v| v.subnet),
            })),
        )
        .with(Predicate::EtherType(vec![0x0806])),
    );
    let mut dhcp4 = Rule::new(20, hairpin("dhcp4", dhcp4::reply)).with(Predicate::IpVersion(4));
    dhcp4.predicates.extend(udp_to(67));
    out.push(dhcp4);
    let mut dhcp6 = Rule::new(21, hairpin("dhcp6", dhcp6::reply)).with(Predicate::IpVersion(6));
    dhcp6.predicates.extend(udp_to(547));
    out.push(dhcp6);
    // Router and neighbor solicitations (RFC 4861 types 133 and 135).
    out.push(
        Rule::new(30, hairpin("ndp", ndp::reply))
            .with(Predicate::Proto(vec![58]))
            .with(Predicate::IcmpType(vec![133, 135])),
    );
    let mut gw_ips: Vec<IpCidr> = Vec::new();
    if let Some(v4) = &c.ipv4 {
        gw_ips.push(IpCidr::host(IpAddr::V4(v4.gateway)));
    }
    if let Some(v6) = &c.ipv6 {
        gw_ips.push(IpCidr::host(IpAddr::V6(v6.gateway)));
        gw_ips.push(IpCidr::host(IpAddr::V6(cfg.gateway_ll6())));
    }
    out.push(
        Rule::new(40, hairpin("ping4", icmp::echo4))
            .with(Predicate::Proto(vec![1]))
            .with(Predicate::IcmpType(vec![8]))
            .with(Predicate::DstIp(gw_ips.clone())),
    );
    out.push(
        Rule::new(41, hairpin("ping6", icmp::echo6))
            .with(Predicate::Proto(vec![58]))
            .with(Predicate::IcmpType(vec![128]))
            .with(Predicate::DstIp(gw_ips)),
    );

    // 2. Anti-spoofing and what the guest may not send anywhere.
    out.push(
        Rule::new(50, Action::DenyWith(reason::SPOOFED_MAC))
            .with(Predicate::Not(Box::new(guest_mac))),
    );
    out.push(
        Rule::new(51, Action::DenyWith(reason::ETHERTYPE)).with(Predicate::Not(Box::new(
            Predicate::EtherType(vec![0x0800, 0x86dd]),
        ))),
    );
    // IGMP and MLD (query, report, done, v2 report): dropped, not
    // snooped. Priority 51 like the EtherType rule: the two never match
    // the same frame.
    out.push(
        Rule::new(51, Action::DenyWith(reason::MEMBERSHIP_REPORT)).with(Predicate::Proto(vec![2])),
    );
    out.push(
        Rule::new(51, Action::DenyWith(reason::MEMBERSHIP_REPORT))
            .with(Predicate::Proto(vec![58]))
            .with(Predicate::IcmpType(vec![130, 131, 132, 143])),
    );
    // Multicast that never leaves a link, and broadcast: dropped. A
    // routable group passes on (the firewall, then the router sends it to
    // the overlay, which drops it as `multicast` too unless the group has
    // an M2P entry in the port's VNI).
    let mut group: Vec<IpCidr> = link_local_groups();
    group.push(IpCidr::host(IpAddr::V4(core::net::Ipv4Addr::BROADCAST)));
    if let Some(v4) = &c.ipv4 {
        // The subnet's broadcast address.
        if let IpAddr::V4(n) = v4.subnet.addr() {
            let host_bits = 32 - u32::from(v4.subnet.prefix_len());
            let bcast = u32::from(n) | ((1u64 << host_bits) - 1) as u32;
            group.push(IpCidr::host(IpAddr::V4(bcast.into())));
        }
    }
    out.push(Rule::new(52, Action::DenyWith(reason::MULTICAST)).with(Predicate::DstIp(group)));
    out.push(Rule::new(60, Action::Allow).with(Predicate::SrcIp(outbound_prefixes(c))));
    out.push(Rule::new(u16::MAX, Action::DenyWith(reason::SPOOFED_IP)));

    // Inbound: only to the guest, delivered as from the gateway.
    let to_guest = Arc::new(ToGuest {
        gateway_mac: c.gateway_mac.0,
        guest_mac: c.guest_mac.0,
    });
    let to_member = Arc::new(ToMember {
        gateway_mac: c.gateway_mac.0,
    });
    let inbound = vec![
        Rule::new(10, Action::Static(to_guest)).with(Predicate::DstIp(inbound_prefixes(c))),
        // A group's datagram, as the switch hands it to a subscribed port
        // (inner destination the group's MAC, never the guest's: a tunnel
        // demultiplexed to this guest by its MAC is not a member's copy).
        Rule::new(11, Action::Static(to_member))
            .with(Predicate::DstIp(groups()))
            .with(Predicate::Not(Box::new(Predicate::DstIp(
                link_local_groups(),
            ))))
            .with(Predicate::Not(Box::new(Predicate::EthDst(vec![
                c.guest_mac.0,
            ])))),
        Rule::new(u16::MAX, Action::DenyWith(reason::NOT_FOR_GUEST)),
    ];
    port.set_rules(LAYER, inbound, out).map(|_| ())
}
