//! The router layer: where an outbound packet goes, by longest-prefix
//! match on its destination per address family.
//!
//! Routes compile to engine rules whose priorities encode the match
//! order: a longer prefix first; at equal length a system route (the VPC's
//! own subnets, the default route the control plane manages) before a
//! custom one. A matching route either drops the packet or records the
//! decision in metadata ([`crate::meta::ROUTE_KIND`]) for the NAT and
//! overlay layers, which act on it. A packet no route covers is dropped
//! (the layer's outbound default is deny). Inbound packets pass: their
//! path was decided by the sender.
//!
//! Above every route, martian destinations are dropped (`martian_destination`)
//! as a router drops them (RFC 1812 §5.3.7, RFC 4291 §2.5.3 and §2.5.6):
//! loopback (127.0.0.0/8, ::1), "this network" (0.0.0.0/8, ::) and
//! link-local (169.254.0.0/16, fe80::/10) other than the gateway's own
//! link-local address. Without this, a default route would carry them
//! to the boundary. Likewise multicast (224.0.0.0/4, ff00::/8) is never
//! routed: it is marked [`RouteKind::Multicast`] for the overlay, which
//! tunnels it to the group (see `overlay::mcast`).

use crate::meta;
use core::fmt;
use core::net::IpAddr;
use dataplane::{
    Action, DefaultAction, Direction, Headers, IpCidr, LayerConfig, Meta, MetaAction, Port,
    Predicate, Rule,
};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

pub const LAYER: &str = "router";

/// The drop reason of a martian destination.
pub const MARTIAN: &str = "martian_destination";

/// The martian rule's priority: before every route ([`RouteEntry::priority`]
/// starts at 1).
const MARTIAN_PRIORITY: u16 = 0;

/// Destinations no router forwards.
const MARTIANS: [&str; 7] = [
    "127.0.0.0/8",
    "0.0.0.0/8",
    "169.254.0.0/16",
    "::1/128",
    "::/128",
    "fe80::/10",
    // IPv4-mapped loopback: the same host as 127.0.0.1 to a dual stack.
    "::ffff:127.0.0.0/104",
];

/// Where a route sends packets.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum RouteTarget {
    /// Drop the packet.
    Drop,
    /// To the internet through the VPC's boundary (NAT applies).
    InternetGateway,
    /// To a subnet of the VPC: the destination itself is the next hop.
    VpcSubnet(IpCidr),
    /// To a next-hop address inside the VPC (an appliance VM).
    Ip(IpAddr),
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum RouteClass {
    /// Managed by the control plane: the VPC's subnets, the default route.
    System,
    /// The tenant's own routes.
    #[default]
    Custom,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RouteEntry {
    pub dest: IpCidr,
    pub target: RouteTarget,
    #[serde(default)]
    pub class: RouteClass,
}

/// What the router decided (defined with the overlay, which acts on it).
pub use overlay::layer::RouteKind;

impl RouteEntry {
    pub fn validate(&self) -> Result<(), crate::firewall::FieldError> {
        let fam = |a: IpAddr| a.is_ipv4() == self.dest.addr().is_ipv4();
        let problem = match &self.target {
            RouteTarget::VpcSubnet(s) if !fam(s.addr()) => {
                Some(format!("subnet {s} is not of the family of {}", self.dest))
            }
            RouteTarget::Ip(a) if !fam(*a) => Some(format!(
                "next hop {a} is not of the family of {}",
                self.dest
            )),
            RouteTarget::Ip(a) if a.is_unspecified() || a.is_multicast() => {
                Some(format!("next hop {a} is not a unicast address"))
            }
            _ => None,
        };
        match problem {
            Some(p) => Err(crate::firewall::FieldError {
                field: "target",
                problem: p,
            }),
            None => Ok(()),
        }
    }

    /// Match order as an engine priority: longer prefixes first (both
    /// families on one scale: a packet only ever matches routes of its
    /// own), system before custom at equal length.
    pub fn priority(&self) -> u16 {
        let len = u16::from(self.dest.prefix_len());
        let len = if self.dest.addr().is_ipv4() {
            len + 96
        } else {
            len
        };
        (128 - len) * 2 + u16::from(self.class == RouteClass::Custom) + 1
    }
}

/// The metadata a route sets.
struct SetRoute {
    kind: RouteKind,
    arg: u64,
    target: RouteTarget,
}

impl fmt::Display for SetRoute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.target {
            RouteTarget::Drop => f.write_str("drop"),
            RouteTarget::InternetGateway => f.write_str("internet-gateway"),
            RouteTarget::VpcSubnet(s) => write!(f, "vpc-subnet {s}"),
            RouteTarget::Ip(a) => write!(f, "next-hop {a}"),
        }
    }
}

impl MetaAction for SetRoute {
    fn update(&self, _: Direction, _: &Headers, m: &mut Meta) {
        m.set(meta::ROUTE_KIND, self.kind as u64);
        m.set(meta::ROUTE_ARG, self.arg);
    }
}

/// The layer as a port is built with it.
pub fn layer_config() -> LayerConfig {
    LayerConfig::new(LAYER, DefaultAction::Allow, DefaultAction::Deny)
}

/// Compiled routes: the engine rules and the next-hop table their
/// `ROUTE_ARG` indexes.
pub struct Compiled {
    pub rules: Vec<Rule>,
    pub next_hops: Vec<IpAddr>,
}

/// The rule dropping martian destinations; `gateway_ll` (the gateway's
/// IPv6 link-local address) is exempt.
pub fn martian_rule(gateway_ll: Option<core::net::Ipv6Addr>) -> Rule {
    let cidrs = MARTIANS
        .iter()
        .filter_map(|c| c.parse::<IpCidr>().ok())
        .collect();
    let r = Rule::new(MARTIAN_PRIORITY, Action::DenyWith(MARTIAN)).with(Predicate::DstIp(cidrs));
    match gateway_ll {
        Some(ll) => r.with(Predicate::Not(Box::new(Predicate::DstIp(vec![
            IpCidr::host(IpAddr::V6(ll)),
        ])))),
        None => r,
    }
}

/// Multicast goes to the overlay as a group datagram, whatever the routes
/// say: a group is not a prefix any route of the VPC leads to (the gateway
/// has already dropped the link-local ones).
struct SetMulticast;

impl fmt::Display for SetMulticast {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("multicast")
    }
}

impl MetaAction for SetMulticast {
    fn update(&self, _: Direction, _: &Headers, m: &mut Meta) {
        m.set(meta::ROUTE_KIND, RouteKind::Multicast as u64);
        m.set(meta::ROUTE_ARG, 0);
    }
}

/// The rule sending multicast to the overlay; the martian rule's priority
/// (the two never match the same destination), before every route.
pub fn multicast_rule() -> Rule {
    Rule::new(MARTIAN_PRIORITY, Action::Meta(Arc::new(SetMulticast)))
        .with(Predicate::DstIp(crate::gateway::layer::groups()))
}

/// Compiles `routes`, after the martian and multicast rules (see the
/// module docs).
pub fn compile(routes: &[RouteEntry], gateway_ll: Option<core::net::Ipv6Addr>) -> Compiled {
    let mut next_hops = Vec::new();
    let mut rules = Vec::with_capacity(routes.len() + 2);
    rules.push(martian_rule(gateway_ll));
    rules.push(multicast_rule());
    for r in routes {
        let action = match &r.target {
            RouteTarget::Drop => Action::Deny,
            RouteTarget::InternetGateway => set(RouteKind::Internet, 0, r),
            RouteTarget::VpcSubnet(_) => set(RouteKind::VpcSubnet, 0, r),
            RouteTarget::Ip(a) => {
                next_hops.push(*a);
                set(RouteKind::NextHop, (next_hops.len() - 1) as u64, r)
            }
        };
        rules.push(Rule::new(r.priority(), action).with(Predicate::DstIp(vec![r.dest])));
    }
    Compiled { rules, next_hops }
}

fn set(kind: RouteKind, arg: u64, r: &RouteEntry) -> Action {
    Action::Meta(Arc::new(SetRoute {
        kind,
        arg,
        target: r.target.clone(),
    }))
}

/// Replaces the port's routes in one step; returns the next-hop table.
pub fn install(
    port: &mut Port,
    routes: &[RouteEntry],
    gateway_ll: Option<core::net::Ipv6Addr>,
) -> Result<Vec<IpAddr>, dataplane::port::PortError> {
    let c = compile(routes, gateway_ll);
    port.set_rules(LAYER, Vec::new(), c.rules)?;
    Ok(c.next_hops)
}

#[cfg(test)]
mod tests {
    use super::*;
    use dataplane::{PacketBuf, PortConfig, Verdict};

    fn route(dest: &str, target: RouteTarget, class: RouteClass) -> RouteEntry {
        RouteEntry {
            dest: dest.parse().unwrap(),
            target,
            class,
        }
    }

    const GW_LL: core::net::Ipv6Addr = core::net::Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1);

    fn udp6_to(dst: core::net::Ipv6Addr) -> PacketBuf {
        let mut v = Vec::new();
        etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv6(
                [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5],
                dst.octets(),
                64,
            )
            .udp(1, 2)
            .write(&mut v, b"x")
            .unwrap();
        PacketBuf::from_frame(&v)
    }

    fn udp_to(dst: [u8; 4]) -> PacketBuf {
        let mut v = Vec::new();
        etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4([10, 0, 0, 5], dst, 64)
            .udp(1, 2)
            .write(&mut v, b"x")
            .unwrap();
        PacketBuf::from_frame(&v)
    }

    /// A router layer and a probe layer after it that denies packets whose
    /// ROUTE_KIND is not the expected one, so the verdict shows the route.
    fn port(routes: &[RouteEntry]) -> Port {
        let mut p = Port::new(PortConfig::new("r"));
        p.add_layer(layer_config()).unwrap();
        install(&mut p, routes, Some(GW_LL)).unwrap();
        p
    }

    fn route_of(p: &mut Port, dst: [u8; 4]) -> Result<String, dataplane::DropReason> {
        let pkt = udp_to(dst);
        let t = p.trace(Direction::Out, pkt.as_slice())?;
        if t.verdict != "forward" {
            return Ok(t.verdict);
        }
        Ok(t.steps[0].action.clone())
    }

    #[test]
    fn longest_prefix_wins_and_system_beats_custom() {
        let routes = vec![
            route(
                "0.0.0.0/0",
                RouteTarget::InternetGateway,
                RouteClass::System,
            ),
            route(
                "10.0.0.0/16",
                RouteTarget::VpcSubnet("10.0.0.0/16".parse().unwrap()),
                RouteClass::System,
            ),
            route(
                "10.0.5.0/24",
                RouteTarget::Ip("10.0.0.9".parse().unwrap()),
                RouteClass::Custom,
            ),
            route("10.0.6.0/24", RouteTarget::Drop, RouteClass::Custom),
            // Same prefix as the system one: the system route wins.
            route("10.0.0.0/16", RouteTarget::Drop, RouteClass::Custom),
        ];
        let mut p = port(&routes);
        assert_eq!(
            route_of(&mut p, [8, 8, 8, 8]).unwrap(),
            "meta(internet-gateway)"
        );
        assert_eq!(
            route_of(&mut p, [10, 0, 1, 1]).unwrap(),
            "meta(vpc-subnet 10.0.0.0/16)"
        );
        assert_eq!(
            route_of(&mut p, [10, 0, 5, 1]).unwrap(),
            "meta(next-hop 10.0.0.9)"
        );
        assert_eq!(route_of(&mut p, [10, 0, 6, 1]).unwrap(), "drop: denied");
    }

    /// RFC 1812 §5.3.7: a router does not forward to loopback, "this
    /// network" or link-local destinations; with a default route to the
    /// internet they would otherwise go to the boundary.
    #[test]
    fn martian_destinations_are_dropped_above_every_route() {
        let routes = vec![
            route(
                "0.0.0.0/0",
                RouteTarget::InternetGateway,
                RouteClass::System,
            ),
            route("::/0", RouteTarget::InternetGateway, RouteClass::System),
            // Even a tenant's /32 to loopback does not win.
            route(
                "127.0.0.1/32",
                RouteTarget::Ip("10.0.0.9".parse().unwrap()),
                RouteClass::Custom,
            ),
        ];
        let mut p = port(&routes);
        for dst in [
            [127, 0, 0, 1],
            [127, 9, 9, 9],
            [0, 1, 2, 3],
            [169, 254, 169, 254],
        ] {
            let mut pkt = udp_to(dst);
            assert!(
                matches!(
                    p.process(Direction::Out, &mut pkt),
                    Verdict::Drop(dataplane::DropReason::Policy(MARTIAN))
                ),
                "{dst:?}"
            );
        }
        for dst in ["::1", "fe80::99", "::ffff:127.0.0.1"] {
            let mut pkt = udp6_to(dst.parse().unwrap());
            assert!(
                matches!(
                    p.process(Direction::Out, &mut pkt),
                    Verdict::Drop(dataplane::DropReason::Policy(MARTIAN))
                ),
                "{dst}"
            );
        }
        // Not martian: the internet, and the gateway's own link-local.
        assert_eq!(
            route_of(&mut p, [8, 8, 8, 8]).unwrap(),
            "meta(internet-gateway)"
        );
        let t = p.trace(Direction::Out, udp6_to(GW_LL).as_slice()).unwrap();
        assert_eq!(t.steps[0].action, "meta(internet-gateway)", "{t:?}");
    }

    #[test]
    fn no_route_drops() {
        let mut p = port(&[route(
            "10.0.0.0/16",
            RouteTarget::VpcSubnet("10.0.0.0/16".parse().unwrap()),
            RouteClass::System,
        )]);
        let mut pkt = udp_to([8, 8, 8, 8]);
        assert!(matches!(
            p.process(Direction::Out, &mut pkt),
            Verdict::Drop(dataplane::DropReason::DefaultDenied)
        ));
    }

    #[test]
    fn family_mismatch_is_refused() {
        let r = route(
            "10.0.0.0/8",
            RouteTarget::Ip("fd00::1".parse().unwrap()),
            RouteClass::Custom,
        );
        assert_eq!(r.validate().unwrap_err().field, "target");
        let r = route(
            "fd00::/64",
            RouteTarget::VpcSubnet("10.0.0.0/8".parse().unwrap()),
            RouteClass::System,
        );
        assert_eq!(r.validate().unwrap_err().field, "target");
    }

    #[test]
    fn priorities_order_prefixes_across_families() {
        let p = |d: &str, c| route(d, RouteTarget::Drop, c).priority();
        assert!(p("10.0.0.0/24", RouteClass::Custom) < p("10.0.0.0/16", RouteClass::System));
        assert!(p("10.0.0.0/16", RouteClass::System) < p("10.0.0.0/16", RouteClass::Custom));
        assert!(p("fd00::/64", RouteClass::System) < p("::/0", RouteClass::System));
        assert_eq!(
            p("0.0.0.0/0", RouteClass::System),
            p("::/96", RouteClass::System)
        );
    }
}
