//! Neighbor Discovery (RFC 4861): the gateway answers the guest's Router
//! Solicitations and its Neighbor Solicitations for the gateway's
//! addresses.
//!
//! # What the Router Advertisement says
//!
//! A VPC has no shared link: the guest's only neighbor is the gateway, which
//! answers neighbor solicitations for its own addresses only. So the RA:
//! - sets **M** (managed): the guest's address comes from DHCPv6 (see
//!   [`super::dhcp6`]), and **O** (other configuration: DNS servers and
//!   domain from DHCPv6);
//! - carries a Prefix Information option for `guest_ip6/guest_prefix6` with
//!   **L = 0** (not on-link: every destination, the guest's own subnet
//!   included, is reached through the gateway, whose NDP would otherwise
//!   have to answer for every address of the prefix) and **A = 0** (no
//!   SLAAC: the one address is the DHCPv6-assigned one, which the VPC's
//!   anti-spoofing knows). Valid and preferred lifetimes are `lease_secs`;
//!   with L = A = 0 hosts record nothing from it (RFC 4861 §6.3.4, RFC 4862
//!   §5.5.3), so it documents the prefix without changing routing. This is
//!   OPTE's disposition too (M set, no autonomous configuration);
//! - advertises the gateway as default router for 9000 s (the maximum of
//!   RFC 4861 §6.2.1), with a Source Link-Layer Address option
//!   (`gateway_mac`), an MTU option (`mtu`, when it is at least IPv6's
//!   1280), current hop limit 64, reachable time and retransmit timer 0
//!   (unspecified).

use std::net::Ipv6Addr;

use smoltcp::phy::ChecksumCapabilities;
use smoltcp::time::Duration;
use smoltcp::wire::{
    EthernetAddress, EthernetFrame, EthernetProtocol, Icmpv6Message, Icmpv6Packet, Icmpv6Repr,
    IpProtocol, Ipv6Repr, NdiscNeighborFlags, NdiscPrefixInfoFlags, NdiscPrefixInformation,
    NdiscRepr, NdiscRouterFlags, RawHardwareAddress, IPV6_MIN_MTU,
};

use super::{
    build_ipv6, ethernet, from_guest, ipv6, multicast_mac6, solicited_node, GatewayConfig, Refusal,
    Reply,
};

/// Router lifetime of the advertisements, seconds (RFC 4861 §6.2.1 maximum).
pub const ROUTER_LIFETIME_SECS: u16 = 9000;
/// Current hop limit advertised to the guest.
pub const ADVERTISED_HOP_LIMIT: u8 = 64;
/// Hop limit of every NDP message (RFC 4861 §6.1.1, §7.1.1).
const NDP_HOP_LIMIT: u8 = 255;
const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
const ALL_ROUTERS: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 2);

/// Answers a Router Solicitation with a Router Advertisement, or a Neighbor
/// Solicitation for one of the gateway's addresses with a Neighbor
/// Advertisement.
///
/// - RS (type 133) to all-routers (ff02::2) or a gateway address → RA (type
///   134) from the gateway's link-local address to the solicitation's
///   source, or to all-nodes (ff02::1) if that is `::`; hop limit 255;
///   contents in the module documentation.
/// - NS (type 135) whose target is the gateway's link-local address or
///   `gateway_ip6`, sent to the target or its solicited-node group → NA
///   (type 136) from the target address with Router and Override set, a
///   Target Link-Layer Address option (`gateway_mac`), hop limit 255, to the
///   solicitation's source; for duplicate address detection (source `::`)
///   to all-nodes with Solicited clear (RFC 4861 §7.2.4), else Solicited
///   set.
///
/// Refusals:
/// - `Malformed`: truncated or inconsistent frame; an RS/NS failing RFC 4861
///   §6.1.1/§7.1.1 validation (IP hop limit not 255, bad ICMPv6 checksum,
///   code not 0, ICMP length under 8 (RS) / 24 (NS), an option of length 0,
///   source `::` with a source link-layer address option, a multicast
///   target, DAD not sent to a solicited-node group), or a multicast source.
/// - `NotForGateway`: not IPv6/ICMPv6, not an RS or NS, an RS not sent to
///   all-routers or the gateway, an NS for another target or sent elsewhere
///   than the target or its solicited-node group, an Ethernet destination
///   that is neither `gateway_mac` nor the IP destination's multicast MAC.
/// - `Unsupported`: a VLAN tag or IPv6 extension headers.
/// - `WrongAddress`: not from `guest_mac`.
/// - `NoAddress`: an RS while the guest has no IPv6 address (IPv6 service is
///   off).
pub fn reply(cfg: &GatewayConfig, frame: &[u8]) -> Reply {
    let eth = ethernet(frame, EthernetProtocol::Ipv6)?;
    let (ip, payload) = ipv6(&eth, IpProtocol::Icmpv6)?;
    let packet = Icmpv6Packet::new_checked(payload).map_err(|_| Refusal::Malformed)?;
    match packet.msg_type() {
        Icmpv6Message::RouterSolicit | Icmpv6Message::NeighborSolicit => {}
        _ => return Err(Refusal::NotForGateway),
    }
    // RFC 4861 §6.1.1 / §7.1.1: checks common to RS and NS. The ICMP
    // length minimum is smoltcp's check_len (done by new_checked); options
    // of length 0 make NdiscRepr::parse fail.
    if ip.hop_limit != NDP_HOP_LIMIT
        || !packet.verify_checksum(&ip.src_addr, &ip.dst_addr)
        || packet.msg_code() != 0
        || ip.src_addr.is_multicast()
    {
        return Err(Refusal::Malformed);
    }
    let ndisc = NdiscRepr::parse(&packet).map_err(|_| Refusal::Malformed)?;
    match ndisc {
        NdiscRepr::RouterSolicit { lladdr } => router_advert(cfg, &eth, &ip, lladdr.is_some()),
        NdiscRepr::NeighborSolicit {
            target_addr,
            lladdr,
        } => neighbor_advert(cfg, &eth, &ip, target_addr, lladdr.is_some()),
        _ => Err(Refusal::NotForGateway),
    }
}

/// Whether the Ethernet destination fits the IP destination: the gateway's
/// MAC, or the multicast MAC of a multicast destination.
fn eth_dst_fits(cfg: &GatewayConfig, eth: &EthernetFrame<&[u8]>, dst: Ipv6Addr) -> bool {
    let mac = eth.dst_addr().0;
    mac == cfg.gateway_mac || (dst.is_multicast() && mac == multicast_mac6(dst))
}

fn router_advert(
    cfg: &GatewayConfig,
    eth: &EthernetFrame<&[u8]>,
    ip: &Ipv6Repr,
    has_slla: bool,
) -> Reply {
    // RFC 4861 §6.1.1: from `::`, no source link-layer address option.
    if ip.src_addr.is_unspecified() && has_slla {
        return Err(Refusal::Malformed);
    }
    if !(ip.dst_addr == ALL_ROUTERS || cfg.is_gateway_ip6(ip.dst_addr))
        || !eth_dst_fits(cfg, eth, ip.dst_addr)
    {
        return Err(Refusal::NotForGateway);
    }
    from_guest(cfg, eth)?;
    if cfg.guest_ip6.is_none() {
        return Err(Refusal::NoAddress);
    }
    let ra = NdiscRepr::RouterAdvert {
        hop_limit: ADVERTISED_HOP_LIMIT,
        flags: NdiscRouterFlags::MANAGED | NdiscRouterFlags::OTHER,
        router_lifetime: Duration::from_secs(u64::from(ROUTER_LIFETIME_SECS)),
        reachable_time: Duration::ZERO,
        retrans_time: Duration::ZERO,
        lladdr: Some(RawHardwareAddress::from(EthernetAddress(cfg.gateway_mac))),
        mtu: (usize::from(cfg.mtu) >= IPV6_MIN_MTU).then_some(u32::from(cfg.mtu)),
        prefix_info: prefix_information(cfg),
    };
    let (dst, dst_mac) = if ip.src_addr.is_unspecified() {
        (ALL_NODES, multicast_mac6(ALL_NODES))
    } else {
        (ip.src_addr, eth.src_addr().0)
    };
    emit(cfg, cfg.gateway_ll6(), dst, dst_mac, ra)
}

fn neighbor_advert(
    cfg: &GatewayConfig,
    eth: &EthernetFrame<&[u8]>,
    ip: &Ipv6Repr,
    target: Ipv6Addr,
    has_slla: bool,
) -> Reply {
    let dad = ip.src_addr.is_unspecified();
    // RFC 4861 §7.1.1: the target is not multicast; a solicitation from
    // `::` goes to a solicited-node group and has no source link-layer
    // address option.
    if target.is_multicast() || (dad && (has_slla || !is_solicited_node(ip.dst_addr))) {
        return Err(Refusal::Malformed);
    }
    if !cfg.is_gateway_ip6(target)
        || !(ip.dst_addr == target || ip.dst_addr == solicited_node(target))
        || !eth_dst_fits(cfg, eth, ip.dst_addr)
    {
        return Err(Refusal::NotForGateway);
    }
    from_guest(cfg, eth)?;
    let mut flags = NdiscNeighborFlags::ROUTER | NdiscNeighborFlags::OVERRIDE;
    let (dst, dst_mac) = if dad {
        (ALL_NODES, multicast_mac6(ALL_NODES))
    } else {
        flags |= NdiscNeighborFlags::SOLICITED;
        (ip.src_addr, eth.src_addr().0)
    };
    let na = NdiscRepr::NeighborAdvert {
        flags,
        target_addr: target,
        lladdr: Some(RawHardwareAddress::from(EthernetAddress(cfg.gateway_mac))),
    };
    emit(cfg, target, dst, dst_mac, na)
}

fn emit(
    cfg: &GatewayConfig,
    src: Ipv6Addr,
    dst: Ipv6Addr,
    dst_mac: [u8; 6],
    ndisc: NdiscRepr<'_>,
) -> Reply {
    let icmp = Icmpv6Repr::Ndisc(ndisc);
    build_ipv6(
        cfg.gateway_mac,
        dst_mac,
        src,
        dst,
        IpProtocol::Icmpv6,
        NDP_HOP_LIMIT,
        icmp.buffer_len(),
        |buf| {
            icmp.emit(
                &src,
                &dst,
                &mut Icmpv6Packet::new_unchecked(buf),
                &ChecksumCapabilities::default(),
            )
        },
    )
}

/// ff02::1:ffXX:XXXX (RFC 4291 §2.7.1).
fn is_solicited_node(addr: Ipv6Addr) -> bool {
    let o = addr.octets();
    o[..13] == [0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0xff]
}

/// The guest's prefix, not on-link and not for SLAAC (see the module
/// documentation). None without a guest address or with a prefix length
/// over 128.
fn prefix_information(cfg: &GatewayConfig) -> Option<NdiscPrefixInformation> {
    let addr = cfg.guest_ip6?;
    let len = cfg.guest_prefix6;
    if len > 128 {
        return None;
    }
    let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
    let lifetime = Duration::from_secs(u64::from(cfg.lease_secs));
    Some(NdiscPrefixInformation {
        prefix_len: len,
        flags: NdiscPrefixInfoFlags::empty(),
        valid_lifetime: lifetime,
        preferred_lifetime: lifetime,
        prefix: Ipv6Addr::from(u128::from(addr) & mask),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::testutil::{self, cfg, guest_ll6, GATEWAY_MAC, GUEST_MAC, OTHER_MAC};
    use etherparse::icmpv6::{
        NdpOptionSlice, NeighborAdvertisementHeader, RouterAdvertisementHeader,
    };
    use etherparse::{Icmpv6Type, PacketBuilder, TransportSlice};

    /// An NDP frame built by etherparse (which computes the checksum).
    fn ndp(
        src_mac: [u8; 6],
        dst_mac: [u8; 6],
        src: Ipv6Addr,
        dst: Ipv6Addr,
        hop_limit: u8,
        kind: Icmpv6Type,
        body: &[u8],
    ) -> Vec<u8> {
        let b = PacketBuilder::ethernet2(src_mac, dst_mac)
            .ipv6(src.octets(), dst.octets(), hop_limit)
            .icmpv6(kind);
        let mut out = Vec::new();
        b.write(&mut out, body).unwrap();
        out
    }

    fn slla(mac: [u8; 6]) -> [u8; 8] {
        let [a, b, c, d, e, f] = mac;
        [1, 1, a, b, c, d, e, f]
    }

    fn rs(src: Ipv6Addr, hop_limit: u8, with_slla: bool) -> Vec<u8> {
        let body = if with_slla {
            slla(GUEST_MAC).to_vec()
        } else {
            vec![]
        };
        ndp(
            GUEST_MAC,
            multicast_mac6(ALL_ROUTERS),
            src,
            ALL_ROUTERS,
            hop_limit,
            Icmpv6Type::RouterSolicitation,
            &body,
        )
    }

    fn ns(src_mac: [u8; 6], src: Ipv6Addr, dst: Ipv6Addr, target: Ipv6Addr, hop: u8) -> Vec<u8> {
        let mut body = target.octets().to_vec();
        if !src.is_unspecified() {
            body.extend(slla(src_mac));
        }
        let dst_mac = if dst.is_multicast() {
            multicast_mac6(dst)
        } else {
            GATEWAY_MAC
        };
        ndp(
            src_mac,
            dst_mac,
            src,
            dst,
            hop,
            Icmpv6Type::NeighborSolicitation,
            &body,
        )
    }

    /// RFC 4861 §6.2.6 / §4.2: a solicited RA goes unicast to the
    /// soliciting host, from the router's link-local address, hop limit
    /// 255, with M/O flags, router lifetime, SLLA, MTU and prefix options.
    #[test]
    fn router_advertisement_fields() {
        let c = cfg();
        let reply = reply(&c, &rs(guest_ll6(), 255, true)).unwrap();
        let sliced = testutil::check_ipv6(&reply, 255);
        assert_eq!(testutil::macs(&sliced), (GATEWAY_MAC, GUEST_MAC));
        let Some(etherparse::NetSlice::Ipv6(ip)) = &sliced.net else {
            panic!()
        };
        assert_eq!(ip.header().source_addr(), c.gateway_ll6());
        assert_eq!(ip.header().destination_addr(), guest_ll6());
        let Some(TransportSlice::Icmpv6(icmp)) = &sliced.transport else {
            panic!()
        };
        assert_eq!(
            icmp.icmp_type(),
            Icmpv6Type::RouterAdvertisement(RouterAdvertisementHeader {
                cur_hop_limit: 64,
                managed_address_config: true,
                other_config: true,
                router_lifetime: 9000,
            })
        );
        let Ok(etherparse::icmpv6::Icmpv6PayloadSlice::RouterAdvertisement(ra)) =
            icmp.payload_slice()
        else {
            panic!("RA payload")
        };
        assert_eq!((ra.reachable_time(), ra.retrans_timer()), (0, 0));
        let (mut saw_slla, mut saw_mtu, mut saw_prefix) = (false, false, false);
        for opt in ra.options_iterator() {
            match opt.unwrap() {
                NdpOptionSlice::SourceLinkLayerAddress(o) => {
                    assert_eq!(o.link_layer_address(), GATEWAY_MAC);
                    saw_slla = true;
                }
                NdpOptionSlice::Mtu(o) => {
                    assert_eq!(o.mtu(), 1500);
                    saw_mtu = true;
                }
                NdpOptionSlice::PrefixInformation(o) => {
                    assert_eq!(o.prefix_length(), 64);
                    assert_eq!(
                        Ipv6Addr::from(o.prefix()),
                        "fd00:1122:3344:101::".parse::<Ipv6Addr>().unwrap()
                    );
                    assert!(!o.on_link() && !o.autonomous_address_configuration());
                    assert_eq!(
                        (o.valid_lifetime(), o.preferred_lifetime()),
                        (86_400, 86_400)
                    );
                    saw_prefix = true;
                }
                other => panic!("unexpected option {other:?}"),
            }
        }
        assert!(saw_slla && saw_mtu && saw_prefix);

        // smoltcp reads the same.
        let eth = EthernetFrame::new_checked(&reply[..]).unwrap();
        let ip6 = smoltcp::wire::Ipv6Packet::new_checked(eth.payload()).unwrap();
        let icmp = Icmpv6Packet::new_checked(ip6.payload()).unwrap();
        let (src, dst) = (ip6.src_addr(), ip6.dst_addr());
        let repr = Icmpv6Repr::parse(&src, &dst, &icmp, &ChecksumCapabilities::default());
        let Ok(Icmpv6Repr::Ndisc(NdiscRepr::RouterAdvert {
            hop_limit,
            flags,
            router_lifetime,
            lladdr,
            mtu,
            prefix_info,
            ..
        })) = repr
        else {
            panic!("{repr:?}")
        };
        assert_eq!(hop_limit, 64);
        assert_eq!(flags, NdiscRouterFlags::MANAGED | NdiscRouterFlags::OTHER);
        assert_eq!(router_lifetime, Duration::from_secs(9000));
        assert_eq!(lladdr.unwrap().as_bytes(), GATEWAY_MAC);
        assert_eq!(mtu, Some(1500));
        assert_eq!(prefix_info.unwrap().flags, NdiscPrefixInfoFlags::empty());
    }

    /// RFC 4861 §6.2.6: an RS from the unspecified address is answered to
    /// all-nodes.
    #[test]
    fn rs_from_unspecified_goes_to_all_nodes() {
        let c = cfg();
        let reply = reply(&c, &rs(Ipv6Addr::UNSPECIFIED, 255, false)).unwrap();
        let sliced = testutil::check_ipv6(&reply, 255);
        assert_eq!(
            testutil::macs(&sliced),
            (GATEWAY_MAC, [0x33, 0x33, 0, 0, 0, 1])
        );
        let Some(etherparse::NetSlice::Ipv6(ip)) = &sliced.net else {
            panic!()
        };
        assert_eq!(ip.header().destination_addr(), ALL_NODES);
        // §6.1.1: from :: with an SLLA option is invalid.
        assert_eq!(
            reply_of(&rs(Ipv6Addr::UNSPECIFIED, 255, true)),
            Err(Refusal::Malformed)
        );
    }

    fn reply_of(frame: &[u8]) -> Reply {
        reply(&cfg(), frame)
    }

    /// RFC 4861 §7.2.4: a solicited NA from the target address, R/S/O set,
    /// TLLA option, to the solicitor; for the link-local and the global
    /// gateway address, multicast (solicited-node) and unicast (NUD).
    #[test]
    fn neighbor_advertisement_fields() {
        let c = cfg();
        let cases = [
            (guest_ll6(), c.gateway_ll6(), true),
            (guest_ll6(), c.gateway_ll6(), false),
            (c.guest_ip6.unwrap(), c.gateway_ip6.unwrap(), true),
            (c.guest_ip6.unwrap(), c.gateway_ip6.unwrap(), false),
        ];
        for (src, target, multicast) in cases {
            let dst = if multicast {
                solicited_node(target)
            } else {
                target
            };
            let reply = reply(&c, &ns(GUEST_MAC, src, dst, target, 255)).unwrap();
            let sliced = testutil::check_ipv6(&reply, 255);
            assert_eq!(testutil::macs(&sliced), (GATEWAY_MAC, GUEST_MAC));
            let Some(etherparse::NetSlice::Ipv6(ip)) = &sliced.net else {
                panic!()
            };
            assert_eq!(ip.header().source_addr(), target);
            assert_eq!(ip.header().destination_addr(), src);
            let Some(TransportSlice::Icmpv6(icmp)) = &sliced.transport else {
                panic!()
            };
            assert_eq!(
                icmp.icmp_type(),
                Icmpv6Type::NeighborAdvertisement(NeighborAdvertisementHeader {
                    router: true,
                    solicited: true,
                    r#override: true,
                })
            );
            let Ok(etherparse::icmpv6::Icmpv6PayloadSlice::NeighborAdvertisement(na)) =
                icmp.payload_slice()
            else {
                panic!("NA payload")
            };
            assert_eq!(na.target_address(), target);
            let opts: Vec<_> = na.options_iterator().map(|o| o.unwrap()).collect();
            let [NdpOptionSlice::TargetLinkLayerAddress(tlla)] = &opts[..] else {
                panic!("{opts:?}")
            };
            assert_eq!(tlla.link_layer_address(), GATEWAY_MAC);

            let eth = EthernetFrame::new_checked(&reply[..]).unwrap();
            let ip6 = smoltcp::wire::Ipv6Packet::new_checked(eth.payload()).unwrap();
            let icmp = Icmpv6Packet::new_checked(ip6.payload()).unwrap();
            let repr = Icmpv6Repr::parse(&target, &src, &icmp, &ChecksumCapabilities::default());
            assert_eq!(
                repr,
                Ok(Icmpv6Repr::Ndisc(NdiscRepr::NeighborAdvert {
                    flags: NdiscNeighborFlags::ROUTER
                        | NdiscNeighborFlags::SOLICITED
                        | NdiscNeighborFlags::OVERRIDE,
                    target_addr: target,
                    lladdr: Some(RawHardwareAddress::from(EthernetAddress(GATEWAY_MAC))),
                }))
            );
        }
    }

    /// RFC 4861 §7.2.4: DAD (NS from ::) for a gateway address is answered
    /// to all-nodes with the Solicited flag clear.
    #[test]
    fn dad_for_gateway_address_is_defended() {
        let c = cfg();
        let target = c.gateway_ll6();
        let frame = ns(
            GUEST_MAC,
            Ipv6Addr::UNSPECIFIED,
            solicited_node(target),
            target,
            255,
        );
        let reply = reply(&c, &frame).unwrap();
        let sliced = testutil::check_ipv6(&reply, 255);
        assert_eq!(
            testutil::macs(&sliced),
            (GATEWAY_MAC, [0x33, 0x33, 0, 0, 0, 1])
        );
        let Some(TransportSlice::Icmpv6(icmp)) = &sliced.transport else {
            panic!()
        };
        assert_eq!(
            icmp.icmp_type(),
            Icmpv6Type::NeighborAdvertisement(NeighborAdvertisementHeader {
                router: true,
                solicited: false,
                r#override: true,
            })
        );
        // §7.1.1: DAD must go to the solicited-node group.
        let unicast_dad = ns(GUEST_MAC, Ipv6Addr::UNSPECIFIED, target, target, 255);
        assert_eq!(reply_of(&unicast_dad), Err(Refusal::Malformed));
    }

    /// RFC 4861 §6.1.1 / §7.1.1 validation: hop limit 255, code 0, valid
    /// checksum, ICMP length, option lengths.
    #[test]
    fn invalid_ndp_is_malformed() {
        let c = cfg();
        assert_eq!(
            reply_of(&rs(guest_ll6(), 64, true)),
            Err(Refusal::Malformed)
        );
        let target = c.gateway_ll6();
        let ns64 = ns(GUEST_MAC, guest_ll6(), solicited_node(target), target, 64);
        assert_eq!(reply_of(&ns64), Err(Refusal::Malformed));

        let icmp_at = 14 + 40;
        // Code 1 (checksum fixed up by rebuilding).
        let code1 = ndp(
            GUEST_MAC,
            multicast_mac6(ALL_ROUTERS),
            guest_ll6(),
            ALL_ROUTERS,
            255,
            Icmpv6Type::Unknown {
                type_u8: 133,
                code_u8: 1,
                bytes5to8: [0; 4],
            },
            &[],
        );
        assert_eq!(reply_of(&code1), Err(Refusal::Malformed));
        // Bad checksum.
        let mut bad = rs(guest_ll6(), 255, true);
        bad[icmp_at + 2] ^= 0x55;
        assert_eq!(reply_of(&bad), Err(Refusal::Malformed));
        // An option of length 0.
        let zero_opt = ndp(
            GUEST_MAC,
            multicast_mac6(ALL_ROUTERS),
            guest_ll6(),
            ALL_ROUTERS,
            255,
            Icmpv6Type::RouterSolicitation,
            &[1, 0, 0, 0, 0, 0, 0, 0],
        );
        assert_eq!(reply_of(&zero_opt), Err(Refusal::Malformed));
        // NS shorter than 24 octets of ICMP.
        let short_ns = ndp(
            GUEST_MAC,
            GATEWAY_MAC,
            guest_ll6(),
            target,
            255,
            Icmpv6Type::NeighborSolicitation,
            &target.octets()[..8],
        );
        assert_eq!(reply_of(&short_ns), Err(Refusal::Malformed));
        // Multicast target.
        let mcast = ns(GUEST_MAC, guest_ll6(), ALL_NODES, ALL_NODES, 255);
        assert_eq!(reply_of(&mcast), Err(Refusal::Malformed));
    }

    /// RFC 4861 §7.2.3: a node answers only for its own target addresses.
    #[test]
    fn other_targets_senders_and_messages_are_refused() {
        let c = cfg();
        let other: Ipv6Addr = "fd00:1122:3344:101::9".parse().unwrap();
        let frame = ns(GUEST_MAC, guest_ll6(), solicited_node(other), other, 255);
        assert_eq!(reply_of(&frame), Err(Refusal::NotForGateway));
        let target = c.gateway_ll6();
        let from_other = ns(OTHER_MAC, guest_ll6(), solicited_node(target), target, 255);
        assert_eq!(reply_of(&from_other), Err(Refusal::WrongAddress));
        // Right target, sent to another node's solicited-node group.
        let misdirected = ns(GUEST_MAC, guest_ll6(), solicited_node(other), target, 255);
        assert_eq!(reply_of(&misdirected), Err(Refusal::NotForGateway));
        // An RA or NA from the guest is not answered.
        let na = ndp(
            GUEST_MAC,
            GATEWAY_MAC,
            guest_ll6(),
            target,
            255,
            Icmpv6Type::NeighborAdvertisement(NeighborAdvertisementHeader {
                router: false,
                solicited: true,
                r#override: true,
            }),
            &guest_ll6().octets(),
        );
        assert_eq!(reply_of(&na), Err(Refusal::NotForGateway));
        let mut no_v6 = cfg();
        no_v6.guest_ip6 = None;
        assert_eq!(
            reply(&no_v6, &rs(guest_ll6(), 255, true)),
            Err(Refusal::NoAddress)
        );
    }

    /// Robustness (RFC 1122 §1.2.2: assume the network is full of malformed
    /// packets): every truncation is refused, and random corruption, fed to
    /// every builder, never panics.
    #[test]
    fn never_panics() {
        let c = cfg();
        let target = c.gateway_ip6.unwrap();
        let frames = [
            rs(guest_ll6(), 255, true),
            rs(Ipv6Addr::UNSPECIFIED, 255, false),
            ns(GUEST_MAC, guest_ll6(), solicited_node(target), target, 255),
            ns(
                GUEST_MAC,
                Ipv6Addr::UNSPECIFIED,
                solicited_node(target),
                target,
                255,
            ),
        ];
        for (i, f) in frames.iter().enumerate() {
            testutil::truncations_refused(reply, &c, f);
            testutil::random_flips(reply, &c, f, 2000, 40 + i as u64);
        }
    }
}
