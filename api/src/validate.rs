//! One validation of a host's desired state, used by every path that
//! changes it: the API's mutating calls, `sluiced`'s restore of its saved
//! state and `sluiceadm replay --state`. A document the API would refuse
//! is refused everywhere, with the same message (the whole-document
//! checks only add where in the document the problem is).
//!
//! What is checked here, beyond each port's own [`VnicConfig::validate`]:
//! - per port: the limits below, a guest IPv4 address that is its
//!   subnet's broadcast, duplicate external addresses, and the MTU
//!   against the underlay's (when the host knows it);
//! - across the ports of a host: names, (VNI, MAC), (VNI, IP), and
//!   external addresses (a floating or ephemeral IP, or an overlapping
//!   SNAT range, on two ports would answer for two guests);
//! - V2P: unicast guest MAC, unicast guest IP, a unicast underlay host;
//!   V2B: unicast underlay endpoints;
//! - multicast: overlay groups outside link-local scope, admin-local
//!   underlay groups, unicast same-family sources and next hops, the
//!   tables' limits ([`overlay::mcast`]), subscriptions of existing ports.
//!
//! Guest devices are checked where they are opened (`server.rs`): a
//! replay has none.

use crate::error::ApiError;
use crate::types::{
    CreateVnic, M2pMapping, McastDoc, McastFwdEntry, StateDoc, V2bRoute, V2pMapping,
};
use overlay::mcast;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use vnic::config::VnicConfig;

/// Firewall rules per port: compiling them is linear and runs on the
/// port's worker between bursts; 16 Ki rules compile in a few ms, where
/// 350 000 held a worker for ~0.3 s.
pub const MAX_FW_RULES: usize = 16_384;
/// Custom routes per port (a VPC's route table is tens, not thousands).
pub const MAX_ROUTES: usize = 4_096;
/// External addresses of each kind (floating, ephemeral, SNAT) per port.
pub const MAX_EXTERNAL_IPS: usize = 256;
/// Attached subnets per port (private and external each).
pub const MAX_ATTACHED_SUBNETS: usize = 256;
/// Transit prefixes per port: each is a gateway rule predicate entry and
/// the overlap check is quadratic; a router guest has tens.
pub const MAX_TRANSIT_IPS: usize = 256;

/// Checks one port on its own: its configuration, the per-port limits,
/// and, if `underlay_mtu` is known, that its frames fit the underlay.
pub fn check_port(c: &VnicConfig, underlay_mtu: Option<u16>) -> Result<(), ApiError> {
    let field = |f: String, p: String| ApiError::field(format!("config.{f}"), p);
    c.validate().map_err(|e| field(e.field, e.problem))?;
    for (what, n, max) in [
        ("firewall", c.firewall.len(), MAX_FW_RULES),
        ("routes", c.routes.len(), MAX_ROUTES),
        ("external.snat", c.external.snat.len(), MAX_EXTERNAL_IPS),
        (
            "external.ephemeral",
            c.external.ephemeral.len(),
            MAX_EXTERNAL_IPS,
        ),
        (
            "external.floating",
            c.external.floating.len(),
            MAX_EXTERNAL_IPS,
        ),
        (
            "attached_subnets",
            c.attached_subnets.len(),
            MAX_ATTACHED_SUBNETS,
        ),
        (
            "external_subnets",
            c.external_subnets.len(),
            MAX_ATTACHED_SUBNETS,
        ),
        ("transit_ips", c.transit_ips.len(), MAX_TRANSIT_IPS),
    ] {
        if n > max {
            return Err(field(
                what.to_string(),
                format!("{n} entries is more than the limit of {max}"),
            ));
        }
    }
    if let Some(v4) = &c.ipv4 {
        if let IpAddr::V4(net) = v4.subnet.addr() {
            let len = u32::from(v4.subnet.prefix_len());
            let bcast = Ipv4Addr::from(u32::from(net) | (u32::MAX.checked_shr(len).unwrap_or(0)));
            if v4.addr == bcast {
                return Err(field(
                    "ipv4.addr".into(),
                    format!("{} is the broadcast address of {}", v4.addr, v4.subnet),
                ));
            }
        }
    }
    for (what, list) in [
        ("ephemeral", &c.external.ephemeral),
        ("floating", &c.external.floating),
    ] {
        for (i, a) in list.iter().enumerate() {
            if !is_unicast(*a) {
                return Err(field(
                    format!("external.{what}[{i}]"),
                    format!("{a} is not a unicast address"),
                ));
            }
            if let Some(j) = list[..i].iter().position(|b| b == a) {
                return Err(field(
                    format!("external.{what}[{i}]"),
                    format!("{a} is external.{what}[{j}] already"),
                ));
            }
        }
    }
    for (i, s) in c.external.snat.iter().enumerate() {
        if !is_unicast(s.ip) {
            return Err(field(
                format!("external.snat[{i}].ip"),
                format!("{} is not a unicast address", s.ip),
            ));
        }
    }
    if let Some(mtu) = underlay_mtu {
        c.check_underlay_mtu(mtu)
            .map_err(|e| field(e.field, e.problem))?;
    }
    Ok(())
}

/// Checks a port against the other ports of its host (`others` excludes
/// it): names, guest MACs and addresses per VPC, external addresses
/// host-wide.
pub fn check_port_among<'a>(
    c: &VnicConfig,
    others: impl IntoIterator<Item = &'a VnicConfig>,
) -> Result<(), ApiError> {
    let addrs = |c: &VnicConfig| -> Vec<IpAddr> {
        c.ipv4
            .iter()
            .map(|v| IpAddr::V4(v.addr))
            .chain(c.ipv6.iter().map(|v| IpAddr::V6(v.addr)))
            .collect()
    };
    let mine = addrs(c);
    let externals = |c: &VnicConfig| -> Vec<IpAddr> {
        c.external
            .floating
            .iter()
            .chain(&c.external.ephemeral)
            .copied()
            .collect()
    };
    let my_ext = externals(c);
    for o in others {
        if o.name == c.name {
            return Err(ApiError::Conflict(format!(
                "a port named '{}' exists already",
                c.name
            )));
        }
        if o.vni == c.vni && o.guest_mac == c.guest_mac {
            return Err(ApiError::Conflict(format!(
                "port '{}' has MAC {} in VNI {} already",
                o.name,
                c.guest_mac,
                c.vni.get()
            )));
        }
        if o.vni == c.vni {
            if let Some(a) = addrs(o).into_iter().find(|a| mine.contains(a)) {
                return Err(ApiError::Conflict(format!(
                    "port '{}' has address {a} in VNI {} already",
                    o.name,
                    c.vni.get()
                )));
            }
        }
        // An external address answers for one guest: the same floating or
        // ephemeral IP on two ports would take each other's inbound
        // traffic, whatever their VPCs.
        let theirs = externals(o);
        if let Some(a) = my_ext.iter().find(|a| theirs.contains(a)) {
            return Err(ApiError::Conflict(format!(
                "port '{}' has external address {a} already",
                o.name
            )));
        }
        for s in &c.external.snat {
            if theirs.contains(&s.ip) {
                return Err(ApiError::Conflict(format!(
                    "port '{}' has external address {} already (as a floating or ephemeral IP)",
                    o.name, s.ip
                )));
            }
            for t in &o.external.snat {
                if s.ip == t.ip && s.first_port <= t.last_port && t.first_port <= s.last_port {
                    return Err(ApiError::Conflict(format!(
                        "SNAT ports {}-{} of {} overlap port '{}''s {}-{}",
                        s.first_port, s.last_port, s.ip, o.name, t.first_port, t.last_port
                    )));
                }
            }
        }
        for a in &my_ext {
            if o.external.snat.iter().any(|t| t.ip == *a) {
                return Err(ApiError::Conflict(format!(
                    "port '{}' uses {a} for SNAT already",
                    o.name
                )));
            }
        }
    }
    Ok(())
}

/// Checks V2P mappings (fields named `mappings[i]...`).
pub fn check_v2p(mappings: &[V2pMapping]) -> Result<(), ApiError> {
    for (i, m) in mappings.iter().enumerate() {
        if m.guest_mac.is_multicast() || m.guest_mac.is_zero() {
            return Err(ApiError::field(
                format!("mappings[{i}].guest_mac"),
                format!("{} is not a unicast MAC", m.guest_mac),
            ));
        }
        if !is_unicast(m.ip) {
            return Err(ApiError::field(
                format!("mappings[{i}].ip"),
                format!("{} is not a unicast guest address", m.ip),
            ));
        }
        if !is_unicast_v6(m.host) {
            return Err(ApiError::field(
                format!("mappings[{i}].host"),
                format!("{} is not a unicast underlay address", m.host),
            ));
        }
    }
    Ok(())
}

/// Checks V2B routes (fields named `routes[i]...`); the table itself
/// refuses empty and oversized endpoint lists.
pub fn check_v2b(routes: &[V2bRoute]) -> Result<(), ApiError> {
    for (i, r) in routes.iter().enumerate() {
        for (j, e) in r.endpoints.iter().enumerate() {
            if !is_unicast_v6(*e) {
                return Err(ApiError::field(
                    format!("routes[{i}].endpoints[{j}]"),
                    format!("{e} is not a unicast underlay address"),
                ));
            }
        }
    }
    Ok(())
}

/// Checks a whole state document, as the API would have checked each
/// change that made it: every port on its own and against those before
/// it, then V2P and V2B. `underlay_mtu` is the host's (the caller's, or
/// the document's own `underlay_mtu`).
pub fn check_state(doc: &StateDoc, underlay_mtu: Option<u16>) -> Result<(), ApiError> {
    let mtu = underlay_mtu.or(doc.underlay_mtu);
    for (i, p) in doc.ports.iter().enumerate() {
        let c = &p.config;
        let at = |e: ApiError| locate(&format!("ports[{i}]"), &c.name, e);
        check_port(c, mtu).map_err(at)?;
        check_port_among(c, doc.ports[..i].iter().map(|p| &p.config)).map_err(at)?;
    }
    check_v2p(&doc.v2p).map_err(|e| rename(e, "mappings", "v2p"))?;
    check_v2b(&doc.v2b).map_err(|e| rename(e, "routes", "v2b"))?;
    check_mcast(&doc.mcast, &doc.ports)?;
    Ok(())
}

/// Checks M2P mappings (fields named `mappings[i]...`).
pub fn check_m2p(mappings: &[M2pMapping]) -> Result<(), ApiError> {
    for (i, m) in mappings.iter().enumerate() {
        mcast::check_group(m.group)
            .map_err(|e| ApiError::field(format!("mappings[{i}].group"), e.to_string()))?;
        mcast::check_underlay_group(m.underlay)
            .map_err(|e| ApiError::field(format!("mappings[{i}].underlay"), e.to_string()))?;
    }
    Ok(())
}

/// Checks a subscription (fields `group`, `sources[j]`).
pub fn check_mcast_sub(group: IpAddr, sources: &[IpAddr]) -> Result<(), ApiError> {
    mcast::check_group(group).map_err(|e| ApiError::field("group", e.to_string()))?;
    if sources.len() > mcast::SOURCES_PER_SUB {
        return Err(ApiError::field(
            "sources",
            format!(
                "{} sources is more than the {} a filter may hold",
                sources.len(),
                mcast::SOURCES_PER_SUB
            ),
        ));
    }
    for (j, &src) in sources.iter().enumerate() {
        mcast::check_source(group, src)
            .map_err(|e| ApiError::field(format!("sources[{j}]"), e.to_string()))?;
        if sources[..j].contains(&src) {
            return Err(ApiError::field(
                format!("sources[{j}]"),
                format!("{src} is given twice"),
            ));
        }
    }
    Ok(())
}

/// Checks a forwarding entry (fields `group`, `next_hop`).
pub fn check_mcast_fwd(e: &McastFwdEntry) -> Result<(), ApiError> {
    mcast::check_group(e.group).map_err(|err| ApiError::field("group", err.to_string()))?;
    if !is_unicast_v6(e.next_hop) {
        return Err(ApiError::field(
            "next_hop",
            format!("{} is not a unicast underlay address", e.next_hop),
        ));
    }
    Ok(())
}

/// Checks the limits of the multicast tables as a whole.
pub fn check_mcast_limits(doc: &McastDoc) -> Result<(), ApiError> {
    let full = |what: &str, n: usize, limit: usize| {
        ApiError::Conflict(format!(
            "{what} is full ({n} entries; the limit is {limit})"
        ))
    };
    if doc.m2p.len() > mcast::M2P_LIMIT {
        return Err(full("the M2P table", doc.m2p.len(), mcast::M2P_LIMIT));
    }
    if doc.fwd.len() > mcast::FWD_LIMIT {
        return Err(full(
            "the multicast forwarding table",
            doc.fwd.len(),
            mcast::FWD_LIMIT,
        ));
    }
    let mut per_port: BTreeMap<&str, usize> = BTreeMap::new();
    for s in &doc.subs {
        let n = per_port.entry(&s.port).or_default();
        *n += 1;
        if *n > mcast::SUBS_PER_PORT {
            return Err(ApiError::Conflict(format!(
                "port '{}' is subscribed to {} groups already, the limit",
                s.port,
                mcast::SUBS_PER_PORT
            )));
        }
    }
    let mut per_group: BTreeMap<(dataplane::Vni, IpAddr), usize> = BTreeMap::new();
    for f in &doc.fwd {
        let n = per_group.entry((f.vni, f.group)).or_default();
        *n += 1;
        if *n > mcast::NEXT_HOPS_PER_GROUP {
            return Err(ApiError::Conflict(format!(
                "group {} of VNI {} has {} next hops already, the limit",
                f.group,
                f.vni.get(),
                mcast::NEXT_HOPS_PER_GROUP
            )));
        }
    }
    Ok(())
}

/// Checks a state document's multicast part, as the API checked each
/// change that made it (fields named `mcast.m2p[i]...`).
pub fn check_mcast(doc: &McastDoc, ports: &[CreateVnic]) -> Result<(), ApiError> {
    check_m2p(&doc.m2p).map_err(|e| rename(e, "mappings", "mcast.m2p"))?;
    for (i, s) in doc.subs.iter().enumerate() {
        if !ports.iter().any(|p| p.config.name == s.port) {
            return Err(ApiError::field(
                format!("mcast.subs[{i}].port"),
                format!("no port named '{}'", s.port),
            ));
        }
        check_mcast_sub(s.group, &s.sources).map_err(|e| prefix(e, &format!("mcast.subs[{i}]")))?;
    }
    for (i, f) in doc.fwd.iter().enumerate() {
        check_mcast_fwd(f).map_err(|e| prefix(e, &format!("mcast.fwd[{i}]")))?;
    }
    check_mcast_limits(doc)
}

/// `group` in a subscription is `mcast.subs[2].group` in a document.
fn prefix(e: ApiError, at: &str) -> ApiError {
    match e {
        ApiError::BadField { field, problem } => ApiError::BadField {
            field: format!("{at}.{field}"),
            problem,
        },
        other => other,
    }
}

/// Says where in a document a port's error is.
fn locate(at: &str, name: &str, e: ApiError) -> ApiError {
    match e {
        ApiError::BadField { field, problem } => ApiError::BadField {
            field: format!("{at}.{field}"),
            problem,
        },
        ApiError::Conflict(m) => ApiError::Conflict(format!("{at} ('{name}'): {m}")),
        other => other,
    }
}

/// `mappings[3].host` in a `PUT /v2p` is `v2p[3].host` in a document.
fn rename(e: ApiError, from: &str, to: &str) -> ApiError {
    match e {
        ApiError::BadField { field, problem } => ApiError::BadField {
            field: field.replacen(from, to, 1),
            problem,
        },
        other => other,
    }
}

fn is_unicast(a: IpAddr) -> bool {
    match a {
        IpAddr::V4(a) => !(a.is_unspecified() || a.is_multicast() || a.is_broadcast()),
        IpAddr::V6(a) => is_unicast_v6(a),
    }
}

fn is_unicast_v6(a: Ipv6Addr) -> bool {
    !(a.is_unspecified() || a.is_multicast() || a.is_loopback())
}
