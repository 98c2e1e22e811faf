//! The overlay layer: the last layer outbound, the first inbound.
//!
//! Outbound it tunnels what the router decided: to the host a VPC
//! destination (or a next-hop appliance) lives on, by V2P, or to a
//! boundary for internet traffic, by V2B, marked with sluice's "external"
//! Geneve option. The inner frame is addressed as if routed by the
//! gateway (source MAC the gateway's, destination the peer guest's).
//!
//! Inbound it takes the tunnel off only packets on this vNIC's VNI, sent to
//! this host, by a sender the tables vouch for: the host V2P says the
//! inner source lives on, or a boundary V2B lists for the inner source's
//! prefix. The sender is pinned in the flow, so an established flow does
//! not accept packets from anyone else either. The VNI is recorded in
//! metadata for the firewall's VNI filters.
//!
//! Every transform carries the version of the table entry it came from:
//! a mapping that changes or goes re-checks exactly the flows that used it.

use crate::{V2b, V2p};
use core::fmt;
use core::net::{IpAddr, Ipv6Addr};
use dataplane::headers::Headers;
use dataplane::transform::Encap;
use dataplane::{
    Action, DefaultAction, Direction, FlowKey, GenError, GeneveOptions, IpCidr, LayerConfig, Meta,
    Port, Predicate, Rule, StaticAction, Transform, Vni,
};
use std::sync::Arc;

/// Metadata slots the VPC layers pass decisions in (see
/// `dataplane::meta`). The router (in `vnic`) decides where a packet goes;
/// this layer acts on it.
pub mod meta {
    use dataplane::MetaKey;

    /// Set on inbound packets: the VNI they arrived on.
    pub const SRC_VNI: MetaKey = MetaKey(0);
    /// Set by the router on outbound packets: a [`super::RouteKind`].
    pub const ROUTE_KIND: MetaKey = MetaKey(1);
    /// Set with `ROUTE_KIND`: for `NextHop`, an index into the vNIC's
    /// next-hop table.
    pub const ROUTE_ARG: MetaKey = MetaKey(2);
}

/// Where the router sent an outbound packet, as stored in
/// [`meta::ROUTE_KIND`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u64)]
pub enum RouteKind {
    /// To the internet through a boundary (NAT applies).
    Internet = 1,
    /// To a subnet of the VPC: the destination is the next hop.
    VpcSubnet = 2,
    /// To a next-hop address inside the VPC.
    NextHop = 3,
    /// To an overlay multicast group: tunnelled to the group's M2P
    /// underlay group, replicated by the switch (`vmm-net`).
    Multicast = 4,
}

pub const LAYER: &str = "overlay";

/// Policy drop reasons this layer gives.
pub mod reason {
    /// No V2P entry for a VPC destination (or next hop).
    pub const NO_V2P: &str = "no_v2p_mapping";
    /// No V2B entry for an internet destination.
    pub const NO_V2B: &str = "no_v2b_mapping";
    /// An encapsulated packet from an underlay host the tables do not
    /// vouch for.
    pub const SPOOFED: &str = "spoofed_overlay_source";
    /// An encapsulated packet on another VNI than this vNIC's.
    pub const WRONG_VNI: &str = "wrong_vni";
    /// An encapsulated packet to another underlay address than this host's.
    pub const NOT_OUR_HOST: &str = "not_our_underlay_address";
    /// Outbound without a routing decision (not IP).
    pub const NO_ROUTE: &str = "no_route";
    /// An encapsulated frame that is not IP.
    pub const NOT_IP: &str = "overlay_not_ip";
    /// A Geneve packet announcing a critical option (RFC 8926 §3.5:
    /// an endpoint that does not know a critical option must drop).
    pub const CRITICAL_OPTION: &str = "geneve_unknown_critical_option";
    /// A datagram to a multicast group without an M2P entry in the
    /// sender's VNI (the gateway's name for multicast it does not carry).
    pub const MULTICAST: &str = "multicast";
}

/// What the overlay needs to know about the host it runs on.
#[derive(Clone)]
pub struct HostOverlay {
    /// This host's underlay address (outer source of every tunnel).
    pub underlay_ip: Ipv6Addr,
    /// This host's NIC MAC and the underlay next hop's (outer Ethernet).
    pub underlay_mac: [u8; 6],
    pub next_hop_mac: [u8; 6],
    pub v2p: Arc<V2p>,
    pub v2b: Arc<V2b>,
    /// The host's multicast tables (M2P for the outer destination of a
    /// multicast datagram; the switch reads the rest).
    pub mcast: Arc<crate::mcast::Mcast>,
}

/// One outbound tunnelling decision.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Toward {
    Vpc,
    NextHop,
    Boundary,
    Multicast,
}

struct Encapsulate {
    toward: Toward,
    vni: Vni,
    gateway_mac: [u8; 6],
    host: HostOverlay,
    next_hops: Arc<Vec<IpAddr>>,
}

impl fmt::Display for Encapsulate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = match self.toward {
            Toward::Vpc => "vpc",
            Toward::NextHop => "next-hop",
            Toward::Boundary => "boundary",
            Toward::Multicast => "multicast",
        };
        write!(f, "encap-{t} vni {}", self.vni.get())
    }
}

impl Encapsulate {
    fn encap(&self, host: Ipv6Addr, options: GeneveOptions) -> Encap {
        Encap {
            eth_src: self.host.underlay_mac,
            eth_dst: self.host.next_hop_mac,
            ip_src: self.host.underlay_ip,
            ip_dst: host,
            hop_limit: 64,
            udp_src: 0,
            vni: self.vni,
            options,
            udp_csum: true,
        }
    }
}

impl StaticAction for Encapsulate {
    fn transform(&self, _: Direction, h: &Headers, m: &mut Meta) -> Result<Transform, GenError> {
        let dst = h.inner.ip().ok_or(GenError::Refused(reason::NO_ROUTE))?.dst;
        let (host, mac, options, dep) = match self.toward {
            Toward::Multicast => return self.to_group(dst),
            Toward::Vpc | Toward::NextHop => {
                let target = if self.toward == Toward::Vpc {
                    dst
                } else {
                    let i = m.get(meta::ROUTE_ARG).unwrap_or(u64::MAX) as usize;
                    *self
                        .next_hops
                        .get(i)
                        .ok_or(GenError::Refused(reason::NO_V2P))?
                };
                let (phys, dep) = self
                    .host
                    .v2p
                    .get(self.vni, target)
                    .ok_or(GenError::Refused(reason::NO_V2P))?;
                (phys.host, phys.guest_mac, GeneveOptions::EMPTY, dep)
            }
            Toward::Boundary => {
                let (eps, dep) = self
                    .host
                    .v2b
                    .get(self.vni, dst)
                    .ok_or(GenError::Refused(reason::NO_V2B))?;
                // Both directions of a flow pick the same boundary.
                let hash = FlowKey::of(h).map_or(0, |k| k.symmetric_hash());
                // A boundary is not a guest: the inner destination MAC is
                // the gateway's own, as for any routed hop.
                (
                    crate::pick(&eps, hash),
                    self.gateway_mac,
                    crate::external_option(),
                    dep,
                )
            }
        };
        Ok(Transform {
            eth_src: Some(self.gateway_mac),
            eth_dst: Some(mac),
            encap: Some(self.encap(host, options)),
            deps: [dep].into_iter().collect(),
            ..Default::default()
        })
    }
}

impl Encapsulate {
    /// A datagram to overlay group `group`: one tunnel to the group's
    /// underlay group (RFC 2464 §7 MAC), the inner frame addressed to the
    /// group's MAC (RFC 1112 §6.4, RFC 2464 §7) as on a LAN. The switch
    /// delivers it to local subscribers and replicates it per the
    /// forwarding table. Depends on the multicast tables: a change
    /// re-checks the flow.
    fn to_group(&self, group: IpAddr) -> Result<Transform, GenError> {
        // The dependency first: a publish between the two is seen.
        let dep = self.host.mcast.dep();
        let underlay = *self
            .host
            .mcast
            .load()
            .m2p
            .get(&(self.vni, group))
            .ok_or(GenError::Refused(reason::MULTICAST))?;
        let mut encap = self.encap(underlay, GeneveOptions::EMPTY);
        encap.eth_dst = crate::mcast::underlay_mac(underlay);
        Ok(Transform {
            eth_src: Some(self.gateway_mac),
            eth_dst: Some(crate::mcast::group_mac(group)),
            encap: Some(encap),
            deps: [dep].into_iter().collect(),
            ..Default::default()
        })
    }
}

struct Decapsulate {
    vni: Vni,
    host: HostOverlay,
    /// The vNIC's next-hop routes, (prefix, next hop): a source no V2P
    /// entry vouches for is still a peer's if the route this vNIC would
    /// use toward it names a next hop on the sending host (a reverse-path
    /// check, RFC 3704 §2.2 strict mode): the LAN behind a router or VPN
    /// guest (its transit prefixes) answering, or calling in.
    return_paths: Arc<Vec<(IpCidr, IpAddr)>>,
}

impl Decapsulate {
    /// The V2P dependency of the next hop vouching for `src` from underlay
    /// host `outer`, if one does (the longest next-hop route covering it).
    fn via_next_hop(&self, src: IpAddr, outer: Ipv6Addr) -> Option<dataplane::Dep> {
        let (_, nh) = (self.return_paths.iter())
            .filter(|(p, _)| p.contains(src))
            .max_by_key(|(p, _)| p.prefix_len())?;
        self.host.v2p.source_dep(self.vni, *nh, outer)
    }
}

impl fmt::Display for Decapsulate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "decap vni {}", self.vni.get())
    }
}

impl StaticAction for Decapsulate {
    fn transform(&self, _: Direction, h: &Headers, m: &mut Meta) -> Result<Transform, GenError> {
        let outer = h.outer.ok_or(GenError::Refused(reason::SPOOFED))?;
        // sluice defines no critical option, so a set C bit announces one
        // we cannot know: fail closed. (The switch walks every option with
        // `check_options` before demux; this holds for a port on its own.)
        if outer.geneve.critical {
            return Err(GenError::Refused(reason::CRITICAL_OPTION));
        }
        let src = h.inner.ip().ok_or(GenError::Refused(reason::NOT_IP))?.src;
        let vouched = (self.host.v2p.source_dep(self.vni, src, outer.ip_src))
            .or_else(|| self.via_next_hop(src, outer.ip_src));
        let dep = match vouched {
            Some(dep) => dep,
            None => {
                // Not a VPC peer: it must come from a boundary serving the
                // source's prefix.
                let (eps, dep) = self
                    .host
                    .v2b
                    .get(self.vni, src)
                    .ok_or(GenError::Refused(reason::SPOOFED))?;
                if !eps.as_slice().contains(&outer.ip_src) {
                    return Err(GenError::Refused(reason::SPOOFED));
                }
                dep
            }
        };
        m.set(meta::SRC_VNI, u64::from(self.vni.get()));
        Ok(Transform {
            decap: true,
            expect_outer_src: Some(outer.ip_src),
            deps: [dep].into_iter().collect(),
            ..Default::default()
        })
    }
}

pub fn layer_config() -> LayerConfig {
    LayerConfig::new(LAYER, DefaultAction::Deny, DefaultAction::Deny)
}

/// Sets the overlay layer's rules for a vNIC on `vni`.
pub fn install(
    port: &mut Port,
    vni: Vni,
    gateway_mac: [u8; 6],
    host: &HostOverlay,
    next_hops: Vec<IpAddr>,
) -> Result<(), dataplane::port::PortError> {
    install_with_return_paths(port, vni, gateway_mac, host, next_hops, Vec::new())
}

/// [`install`], with the vNIC's next-hop routes as (prefix, next hop):
/// inbound, a source inside one of those prefixes is accepted from the
/// underlay host of its next hop (see `Decapsulate::return_paths`).
pub fn install_with_return_paths(
    port: &mut Port,
    vni: Vni,
    gateway_mac: [u8; 6],
    host: &HostOverlay,
    next_hops: Vec<IpAddr>,
    return_paths: Vec<(IpCidr, IpAddr)>,
) -> Result<(), dataplane::port::PortError> {
    let next_hops = Arc::new(next_hops);
    let encap = |toward| {
        Action::Static(Arc::new(Encapsulate {
            toward,
            vni,
            gateway_mac,
            host: host.clone(),
            next_hops: next_hops.clone(),
        }))
    };
    let route = |k: RouteKind| Predicate::Meta(meta::ROUTE_KIND, k as u64);
    let out = vec![
        Rule::new(10, encap(Toward::Vpc)).with(route(RouteKind::VpcSubnet)),
        Rule::new(11, encap(Toward::NextHop)).with(route(RouteKind::NextHop)),
        Rule::new(12, encap(Toward::Boundary)).with(route(RouteKind::Internet)),
        Rule::new(13, encap(Toward::Multicast)).with(route(RouteKind::Multicast)),
        Rule::new(u16::MAX, Action::DenyWith(reason::NO_ROUTE)),
    ];
    let decap = Action::Static(Arc::new(Decapsulate {
        vni,
        host: host.clone(),
        return_paths: Arc::new(return_paths),
    }));
    let inbound = vec![
        Rule::new(10, Action::DenyWith(reason::NOT_OUR_HOST)).with(Predicate::Not(Box::new(
            Predicate::OuterDstIp(vec![IpCidr::host(IpAddr::V6(host.underlay_ip))]),
        ))),
        Rule::new(20, decap).with(Predicate::Vni(vec![vni])),
        Rule::new(u16::MAX, Action::DenyWith(reason::WRONG_VNI)),
    ];
    port.set_rules(LAYER, inbound, out).map(|_| ())
}
