//! The NAT layer: the guest's internet traffic leaves from an external
//! address, and its replies come back to the guest's private one.
//!
//! The layer sits after the router (outbound order: gateway, firewall,
//! router, nat, overlay; inbound the reverse) and acts on what the router
//! decided: only outbound packets the router sent to the internet
//! ([`RouteKind::Internet`] in [`meta::ROUTE_KIND`]) and that come from the
//! guest's own address of their family are translated.
//!
//! Per address family the layer uses one kind of external address, the
//! best one configured:
//!
//! 1. a floating IP: 1:1 (ports untouched), and reachable inbound: a
//!    connection opened from the internet to a floating IP reaches the
//!    guest's private address (the firewall, after NAT inbound, still
//!    decides whether it is allowed). Outbound flows use the first one.
//! 2. an ephemeral IP: 1:1, outbound only (the first one is used).
//! 3. SNAT: an external address shared with other vNICs, of which this
//!    vNIC owns a port range; each flow takes one port (one ICMP echo
//!    identifier for a ping) from the first pool with one free.
//!
//! Guarantees:
//!
//! - A flow's translation is chosen once, by its first packet, and kept in
//!   the layer's flow table for both directions: every later packet, and
//!   every reply, is rewritten the same way (replies: destination address,
//!   and port, back to the guest's). It ends when the engine drops the
//!   flow (expiry, removal, or a rule change that refuses it).
//! - Translations never mix families: an IPv4 flow only ever uses IPv4
//!   external addresses, an IPv6 flow IPv6 ones.
//! - A SNAT port serves one flow at a time, whatever its destination. That
//!   is simpler than sharing a port among flows to different destinations
//!   (no per-destination bookkeeping, and the reply key alone names the
//!   flow), and per-vNIC ranges are sized for it; the cost is that a
//!   vNIC's concurrent SNAT flows are bounded by its range. When every
//!   port is taken, a new flow is dropped with reason `exhausted`; flows
//!   that have a port keep working.
//! - A flow's port returns to its pool when the engine drops the flow's
//!   state, and freed ports are handed out oldest-first, after every port
//!   never used: a just-freed port is not reused while others are free,
//!   so a late packet of a dead flow (or the remote end's TIME_WAIT state
//!   for it) does not meet a new flow on the same port.
//! - Inbound packets to the guest's private address pass untouched.
//!   Inbound packets to an ephemeral or SNAT address that no flow expects
//!   are dropped (reason `nat_unsolicited`): those addresses are outbound
//!   only.
//! - A family without external addresses (or without a guest address) gets
//!   no rules at all: its internet-bound traffic passes this layer
//!   untranslated, with the guest's private source, and what happens to
//!   it is for the router's routes and the overlay to decide.
//!
//! ICMP errors about a translated flow (RFC 792, RFC 4443: unreachable,
//! packet too big) are not this layer's: the engine finds the flow the
//! quoted packet belongs to and rewrites the error as that flow's packets
//! are rewritten, quoted header included (`Port::related`), so path MTU
//! discovery works through NAT.
//!
//! Not handled: SNAT of protocols without ports (refused, reason
//! `snat_no_port`), and traffic from addresses other than the guest's own
//! (attached subnets), which is not translated.
//!
//! The port pools are shared by the SNAT action and the per-flow
//! descriptors that hold ports, behind a mutex: it is taken only on the
//! slow path (a flow's first packet, its expiry), by the one worker that
//! owns the port, so it is never contended in practice.

use crate::config::{ExternalIps, SnatConfig};
use crate::meta;
use crate::router::RouteKind;
use core::fmt;
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use dataplane::headers::L4;
use dataplane::port::PortError;
use dataplane::{
    Action, ActionDesc, DefaultAction, DescState, Direction, FlowKey, GenError, Headers, IpCidr,
    LayerConfig, Meta, Port, Predicate, Rule, StatefulAction, StatefulRef, Transform,
};
use serde::Serialize;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// The layer's name in dumps and the API.
pub const LAYER: &str = "nat";

/// Priority of the translating rules (outbound, and inbound to floating IPs).
const TRANSLATE_PRIORITY: u16 = 100;
/// Priority of the inbound rule refusing unsolicited traffic to outbound-only
/// external addresses: after the floating rule, so a floating IP is never
/// refused even if it is also listed as ephemeral or SNAT.
const DENY_PRIORITY: u16 = 200;

/// The drop reason of unsolicited inbound packets to an outbound-only
/// external address.
pub const UNSOLICITED: &str = "nat_unsolicited";

/// The drop reason of a packet from an external attached subnet routed
/// to a VPC recipient.
pub const EXTERNAL_TO_VPC: &str = "external_subnet_to_vpc";

/// The layer as a port is built with it: both defaults allow, so traffic
/// the layer does not translate (VPC-internal, inbound to the guest's
/// private address, a family without external addresses) passes untouched.
pub fn layer_config() -> LayerConfig {
    LayerConfig::new(LAYER, DefaultAction::Allow, DefaultAction::Allow)
}

/// The kind of external address a family is translated to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NatKind {
    Floating,
    Ephemeral,
    Snat,
}

impl NatKind {
    pub fn name(self) -> &'static str {
        match self {
            NatKind::Floating => "floating",
            NatKind::Ephemeral => "ephemeral",
            NatKind::Snat => "snat",
        }
    }
}

impl fmt::Display for NatKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Counters of one SNAT port pool, for dumps and metrics.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SnatPoolStats {
    pub ip: IpAddr,
    pub first_port: u16,
    pub last_port: u16,
    /// Ports held by live flows.
    pub in_use: u32,
    /// Ports available to new flows.
    pub free: u32,
    /// Times a new flow asked this pool for a port and it had none (a later
    /// pool of the same family may have served it; the engine counts the
    /// flows that were dropped under reason `exhausted`).
    pub refused: u64,
}

// ---------------------------------------------------------------- pools

/// One SNAT address and this vNIC's port range on it.
struct PortPool {
    ip: IpAddr,
    first: u16,
    last: u16,
    state: Mutex<PoolState>,
}

#[derive(Default)]
struct PoolState {
    /// The next port never handed out; past `last` once all have been.
    /// Never-used ports are handed out first, so the free list only holds
    /// returned ports and grows with the ports actually used, not with the
    /// range.
    fresh: u32,
    /// Returned ports, oldest first (FIFO: see the module doc).
    free: VecDeque<u16>,
    in_use: u32,
    refused: u64,
}

impl PortPool {
    fn new(c: &SnatConfig) -> PortPool {
        PortPool {
            ip: c.ip,
            first: c.first_port,
            last: c.last_port,
            state: Mutex::new(PoolState {
                fresh: u32::from(c.first_port),
                ..PoolState::default()
            }),
        }
    }

    /// The state; a poisoned lock is taken over, since every critical
    /// section leaves the state consistent (none can panic half-way).
    fn state(&self) -> MutexGuard<'_, PoolState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn capacity(&self) -> u32 {
        (u32::from(self.last) + 1).saturating_sub(u32::from(self.first))
    }

    fn alloc(&self) -> Option<u16> {
        let mut s = self.state();
        let port = if s.fresh <= u32::from(self.last) {
            let p = u16::try_from(s.fresh).ok();
            s.fresh += 1;
            p
        } else {
            s.free.pop_front()
        };
        match port {
            Some(p) => {
                s.in_use += 1;
                Some(p)
            }
            None => {
                s.refused += 1;
                None
            }
        }
    }

    /// Takes `port` for a flow carried here by a migration: it must be in
    /// this range and free (never handed out, or returned). Never-used
    /// ports below it stay free (they join the free list, in order).
    fn take(&self, port: u16) -> bool {
        if !(self.first..=self.last).contains(&port) {
            return false;
        }
        let mut s = self.state();
        let p = u32::from(port);
        if p >= s.fresh {
            let skipped: Vec<u16> = (s.fresh..p).filter_map(|q| u16::try_from(q).ok()).collect();
            s.free.extend(skipped);
            s.fresh = p + 1;
        } else if let Some(i) = s.free.iter().position(|&q| q == port) {
            s.free.remove(i);
        } else {
            // Held by a flow of this host already.
            return false;
        }
        s.in_use += 1;
        true
    }

    fn release(&self, port: u16) {
        let mut s = self.state();
        // Only ports of this range, and never more than were handed out:
        // a double release cannot make a port appear twice in the list.
        if (self.first..=self.last).contains(&port) && s.in_use > 0 {
            s.in_use -= 1;
            s.free.push_back(port);
        }
    }

    fn stats(&self) -> SnatPoolStats {
        let s = self.state();
        SnatPoolStats {
            ip: self.ip,
            first_port: self.first,
            last_port: self.last,
            in_use: s.in_use,
            free: self.capacity().saturating_sub(s.in_use),
            refused: s.refused,
        }
    }

    fn same_range(&self, c: &SnatConfig) -> bool {
        (self.ip, self.first, self.last) == (c.ip, c.first_port, c.last_port)
    }
}

// ---------------------------------------------------------------- actions

/// Whether a packet has a port (or echo identifier) SNAT can rewrite.
fn has_port(h: &Headers) -> bool {
    matches!(
        h.inner.l4,
        L4::Tcp(_) | L4::Udp { .. } | L4::Icmp { ty: 0 | 8, .. } | L4::Icmp6 { ty: 128 | 129, .. }
    )
}

/// Source NAT over this family's port pools.
struct Snat {
    pools: Vec<Arc<PortPool>>,
}

impl fmt::Display for Snat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("snat")?;
        for (i, p) in self.pools.iter().enumerate() {
            let sep = if i == 0 { " " } else { ", " };
            match p.ip {
                IpAddr::V4(a) => write!(f, "{sep}{a}:{}-{}", p.first, p.last)?,
                IpAddr::V6(a) => write!(f, "{sep}[{a}]:{}-{}", p.first, p.last)?,
            }
        }
        Ok(())
    }
}

impl StatefulAction for Snat {
    fn generate(
        &self,
        dir: Direction,
        key: &FlowKey,
        hdrs: &Headers,
        _: &Meta,
    ) -> Result<Arc<dyn ActionDesc>, GenError> {
        if dir != Direction::Out {
            return Err(GenError::Refused("nat_outbound_only"));
        }
        if !has_port(hdrs) {
            return Err(GenError::Refused("snat_no_port"));
        }
        let private = (key.src_ip(), key.src_port);
        for pool in &self.pools {
            if pool.ip.is_ipv4() != private.0.is_ipv4() {
                continue;
            }
            if let Some(port) = pool.alloc() {
                return Ok(Arc::new(SnatDesc {
                    private,
                    external: (pool.ip, port),
                    pool: pool.clone(),
                }));
            }
        }
        Err(GenError::Exhausted("snat ports"))
    }

    fn restore(
        &self,
        dir: Direction,
        key: &FlowKey,
        state: &DescState,
    ) -> Option<Arc<dyn ActionDesc>> {
        if dir != Direction::Out {
            return None;
        }
        let (ip, port) = (state.out.ip_src?, state.out.l4_src?);
        let pool = self
            .pools
            .iter()
            .find(|p| p.ip == ip && (p.first..=p.last).contains(&port))?;
        if !pool.take(port) {
            return None;
        }
        Some(Arc::new(SnatDesc {
            private: (key.src_ip(), key.src_port),
            external: (ip, port),
            pool: pool.clone(),
        }))
    }
}

/// One flow's SNAT mapping; holds its port until dropped.
struct SnatDesc {
    private: (IpAddr, u16),
    external: (IpAddr, u16),
    pool: Arc<PortPool>,
}

impl Drop for SnatDesc {
    fn drop(&mut self) {
        // The engine drops the descriptor with the flow's last state
        // (expiry or removal): the port is free for another flow.
        self.pool.release(self.external.1);
    }
}

impl fmt::Debug for SnatDesc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "snat {} <-> {}",
            endpoint(self.private),
            endpoint(self.external)
        )
    }
}

fn endpoint((ip, port): (IpAddr, u16)) -> String {
    match ip {
        IpAddr::V4(a) => format!("{a}:{port}"),
        IpAddr::V6(a) => format!("[{a}]:{port}"),
    }
}

impl ActionDesc for SnatDesc {
    fn transform(&self, dir: Direction) -> Transform {
        // For ICMP echo the port fields rewrite the identifier.
        match dir {
            Direction::Out => Transform {
                ip_src: Some(self.external.0),
                l4_src: Some(self.external.1),
                ..Default::default()
            },
            Direction::In => Transform {
                ip_dst: Some(self.private.0),
                l4_dst: Some(self.private.1),
                ..Default::default()
            },
        }
    }
}

/// A 1:1 mapping of the guest's address: floating (both ways) or ephemeral
/// (outbound only, `inbound` empty).
struct OneToOne {
    kind: NatKind,
    /// The guest's private address (inbound flows are sent to it).
    private: IpAddr,
    /// The source of outbound flows.
    outbound: IpAddr,
    /// Addresses inbound flows may be opened to.
    inbound: Vec<IpAddr>,
}

impl fmt::Display for OneToOne {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.kind, self.outbound)?;
        for a in self.inbound.iter().filter(|a| **a != self.outbound) {
            write!(f, ", {a}")?;
        }
        write!(f, " <-> {}", self.private)
    }
}

impl StatefulAction for OneToOne {
    fn generate(
        &self,
        dir: Direction,
        key: &FlowKey,
        _: &Headers,
        _: &Meta,
    ) -> Result<Arc<dyn ActionDesc>, GenError> {
        let (private, external) = match dir {
            // The source the guest used, restored exactly on replies.
            Direction::Out => (key.src_ip(), self.outbound),
            Direction::In => {
                let dst = key.dst_ip();
                if !self.inbound.contains(&dst) {
                    return Err(GenError::Refused("nat_not_inbound_address"));
                }
                (self.private, dst)
            }
        };
        if private.is_ipv4() != external.is_ipv4() {
            return Err(GenError::Refused("nat_family_mismatch"));
        }
        Ok(Arc::new(OneToOneDesc {
            kind: self.kind,
            private,
            external,
        }))
    }
}

struct OneToOneDesc {
    kind: NatKind,
    private: IpAddr,
    external: IpAddr,
}

impl fmt::Debug for OneToOneDesc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} <-> {}", self.kind, self.private, self.external)
    }
}

impl ActionDesc for OneToOneDesc {
    fn transform(&self, dir: Direction) -> Transform {
        match dir {
            Direction::Out => Transform {
                ip_src: Some(self.external),
                ..Default::default()
            },
            Direction::In => Transform {
                ip_dst: Some(self.private),
                ..Default::default()
            },
        }
    }
}

// ---------------------------------------------------------------- the layer

/// What decides a family's translation; when [`Nat::update`] finds it
/// unchanged, the family keeps its action, so its flows keep their state.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Spec {
    kind: NatKind,
    private: IpAddr,
    /// Floating: every floating IP (the first is the outbound source).
    /// Ephemeral: the one used.
    external: Vec<IpAddr>,
    /// SNAT: the pools, in order.
    pools: Vec<(IpAddr, u16, u16)>,
}

/// One family's translation.
#[derive(Clone)]
struct FamilyNat {
    spec: Spec,
    /// Kept, identity and all, while the translation is unchanged.
    action: StatefulRef,
    pools: Vec<Arc<PortPool>>,
    /// External addresses of the family that are outbound only.
    deny: Vec<IpAddr>,
}

/// The NAT of one vNIC: which external addresses it uses, per family, and
/// the SNAT port pools. Build it with [`Nat::new`], put its rules in a port
/// with [`Nat::install`]; keep it to read the pools' counters and to
/// [`Nat::update`] it.
pub struct Nat {
    v4: Option<FamilyNat>,
    v6: Option<FamilyNat>,
}

impl Nat {
    pub fn new(
        external: &ExternalIps,
        guest_ipv4: Option<Ipv4Addr>,
        guest_ipv6: Option<Ipv6Addr>,
    ) -> Nat {
        Nat::build(external, guest_ipv4, guest_ipv6, None)
    }

    /// Replaces the configuration. A family whose translation is unchanged
    /// keeps its action (so its flows keep their translation and ports
    /// through the next [`Nat::install`]); a SNAT pool with the same
    /// address and range is carried over with the ports its flows hold, so
    /// it never hands out a port a flow still uses. Install again after.
    pub fn update(
        &mut self,
        external: &ExternalIps,
        guest_ipv4: Option<Ipv4Addr>,
        guest_ipv6: Option<Ipv6Addr>,
    ) {
        *self = Nat::build(external, guest_ipv4, guest_ipv6, Some(self));
    }

    fn build(
        external: &ExternalIps,
        guest_ipv4: Option<Ipv4Addr>,
        guest_ipv6: Option<Ipv6Addr>,
        prev: Option<&Nat>,
    ) -> Nat {
        Nat {
            v4: guest_ipv4.and_then(|a| family(external, IpAddr::V4(a), prev)),
            v6: guest_ipv6.and_then(|a| family(external, IpAddr::V6(a), prev)),
        }
    }

    /// The kind of address IPv4 internet traffic is translated to, if any.
    pub fn kind_v4(&self) -> Option<NatKind> {
        self.v4.as_ref().map(|f| f.spec.kind)
    }

    /// The kind of address IPv6 internet traffic is translated to, if any.
    pub fn kind_v6(&self) -> Option<NatKind> {
        self.v6.as_ref().map(|f| f.spec.kind)
    }

    /// Counters of every SNAT pool in use (IPv4 first, in config order).
    pub fn snat_pools(&self) -> Vec<SnatPoolStats> {
        self.families()
            .flat_map(|f| f.pools.iter())
            .map(|p| p.stats())
            .collect()
    }

    fn families(&self) -> impl Iterator<Item = &FamilyNat> {
        self.v4.iter().chain(self.v6.iter())
    }

    /// The layer's rules: (inbound, outbound).
    fn rules(&self) -> (Vec<Rule>, Vec<Rule>) {
        let hosts = |v: &[IpAddr]| v.iter().map(|a| IpCidr::host(*a)).collect::<Vec<_>>();
        let (mut inbound, mut outbound) = (Vec::new(), Vec::new());
        for f in self.families() {
            let action = Action::Stateful(f.action.clone());
            // The source predicate also fixes the family: the rule never
            // sees a packet of the other one.
            outbound.push(
                Rule::new(TRANSLATE_PRIORITY, action.clone())
                    .with(Predicate::Meta(
                        meta::ROUTE_KIND,
                        RouteKind::Internet as u64,
                    ))
                    .with(Predicate::SrcIp(vec![IpCidr::host(f.spec.private)])),
            );
            if f.spec.kind == NatKind::Floating {
                inbound.push(
                    Rule::new(TRANSLATE_PRIORITY, action)
                        .with(Predicate::DstIp(hosts(&f.spec.external))),
                );
            }
            // Flow state is consulted before rules, so replies to the
            // guest's flows never meet this rule: only unsolicited packets.
            if !f.deny.is_empty() {
                inbound.push(
                    Rule::new(DENY_PRIORITY, Action::DenyWith(UNSOLICITED))
                        .with(Predicate::DstIp(hosts(&f.deny))),
                );
            }
        }
        (inbound, outbound)
    }

    /// Replaces the layer's rules, both directions, in one step.
    pub fn install(&self, port: &mut Port) -> Result<(), PortError> {
        self.install_with(port, &[])
    }

    /// [`Nat::install`] for a vNIC with external attached subnets: their
    /// traffic is never translated (no rule here matches a source but the
    /// guest's own address) and goes to the internet only: routed anywhere
    /// else (a VPC subnet, a next hop in the VPC) it is dropped as
    /// [`EXTERNAL_TO_VPC`]. OPTE's rule: an external address block must
    /// never reach a private VPC recipient, which would see a public
    /// source it cannot tell from the internet's.
    pub fn install_with(&self, port: &mut Port, external: &[IpCidr]) -> Result<(), PortError> {
        let (inbound, mut outbound) = self.rules();
        if !external.is_empty() {
            outbound.push(
                Rule::new(DENY_PRIORITY, Action::DenyWith(EXTERNAL_TO_VPC))
                    .with(Predicate::SrcIp(external.to_vec()))
                    .with(Predicate::Not(Box::new(Predicate::Meta(
                        meta::ROUTE_KIND,
                        RouteKind::Internet as u64,
                    )))),
            );
        }
        port.set_rules(LAYER, inbound, outbound)?;
        Ok(())
    }
}

/// Addresses of `private`'s family from `v`, first occurrence kept.
fn of_family<'a>(v: impl IntoIterator<Item = &'a IpAddr>, private: IpAddr) -> Vec<IpAddr> {
    let mut out: Vec<IpAddr> = Vec::new();
    for a in v {
        if a.is_ipv4() == private.is_ipv4() && !out.contains(a) {
            out.push(*a);
        }
    }
    out
}

/// SNAT configs of `private`'s family. Validation refuses empty ranges;
/// a range overlapping an earlier one on the same address is skipped too,
/// since two pools handing out the same port would give two flows one
/// external address and port.
fn snat_of_family(external: &ExternalIps, private: IpAddr) -> Vec<SnatConfig> {
    let mut out: Vec<SnatConfig> = Vec::new();
    for c in &external.snat {
        let overlaps = out
            .iter()
            .any(|o| o.ip == c.ip && o.first_port <= c.last_port && c.first_port <= o.last_port);
        if c.ip.is_ipv4() == private.is_ipv4() && c.first_port <= c.last_port && !overlaps {
            out.push(c.clone());
        }
    }
    out
}

/// The translation of `private`'s family, `None` without external
/// addresses of that family.
fn family(external: &ExternalIps, private: IpAddr, prev: Option<&Nat>) -> Option<FamilyNat> {
    let floating = of_family(&external.floating, private);
    let ephemeral = of_family(&external.ephemeral, private);
    let snat = snat_of_family(external, private);
    let deny: Vec<IpAddr> = of_family(ephemeral.iter().chain(snat.iter().map(|c| &c.ip)), private)
        .into_iter()
        .filter(|a| !floating.contains(a))
        .collect();

    let (kind, ext) = if !floating.is_empty() {
        (NatKind::Floating, floating)
    } else if let Some(e) = ephemeral.first() {
        (NatKind::Ephemeral, vec![*e])
    } else if !snat.is_empty() {
        (NatKind::Snat, Vec::new())
    } else {
        return None;
    };
    let spec = Spec {
        kind,
        private,
        external: ext,
        pools: if kind == NatKind::Snat {
            snat.iter()
                .map(|c| (c.ip, c.first_port, c.last_port))
                .collect()
        } else {
            Vec::new()
        },
    };

    let prev_family = prev.and_then(|p| {
        if private.is_ipv4() {
            p.v4.as_ref()
        } else {
            p.v6.as_ref()
        }
    });
    if let Some(old) = prev_family.filter(|o| o.spec == spec) {
        return Some(FamilyNat {
            deny,
            ..old.clone()
        });
    }

    let (action, pools): (Arc<dyn StatefulAction>, _) = match kind {
        NatKind::Snat => {
            let pools: Vec<Arc<PortPool>> = snat
                .iter()
                .map(|c| {
                    prev.into_iter()
                        .flat_map(|p| p.families())
                        .flat_map(|f| f.pools.iter())
                        .find(|p| p.same_range(c))
                        .cloned()
                        .unwrap_or_else(|| Arc::new(PortPool::new(c)))
                })
                .collect();
            (
                Arc::new(Snat {
                    pools: pools.clone(),
                }),
                pools,
            )
        }
        NatKind::Floating | NatKind::Ephemeral => {
            let outbound = spec.external.first().copied()?;
            let inbound = if kind == NatKind::Floating {
                spec.external.clone()
            } else {
                Vec::new()
            };
            let a = OneToOne {
                kind,
                private,
                outbound,
                inbound,
            };
            (Arc::new(a), Vec::new())
        }
    };
    Some(FamilyNat {
        spec,
        action: StatefulRef::new(action),
        pools,
        deny,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::router::{self, RouteClass, RouteEntry, RouteTarget};
    use dataplane::clock::NANOS_PER_SEC;
    use dataplane::{DropReason, ManualClock, PacketBuf, PortConfig, Verdict};
    use etherparse::{NetHeaders, PacketBuilder, PacketHeaders, TransportHeader};

    const GUEST4: &str = "10.0.0.5";
    const GUEST6: &str = "fd00:1::5";
    const PEER4: &str = "10.0.0.7";
    const PEER6: &str = "fd00:1::7";
    const REMOTE4: &str = "192.0.2.80";
    const REMOTE6: &str = "2001:db8:ffff::80";
    const SNAT4: &str = "203.0.113.10";
    const SNAT6: &str = "2001:db8::10";
    const EPH4: &str = "203.0.113.20";
    const EPH6: &str = "2001:db8::20";
    const FIP4: &str = "203.0.113.30";
    const FIP6: &str = "2001:db8::30";

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn snat(ip_: &str, first: u16, last: u16) -> SnatConfig {
        SnatConfig {
            ip: ip(ip_),
            first_port: first,
            last_port: last,
        }
    }

    /// A migrated flow's SNAT port is taken out of the target's pool
    /// exactly: never handed to a new flow while the flow holds it, the
    /// never-used ports below it still free, a port already held refused.
    #[test]
    fn a_migrated_snat_port_is_taken_from_the_pool_exactly() {
        let pool = PortPool::new(&snat(SNAT4, 100, 103));
        assert!(pool.take(102));
        assert!(!pool.take(102), "held already");
        assert!(!pool.take(99) && !pool.take(104), "outside the range");
        let mut got: Vec<u16> = (0..3).filter_map(|_| pool.alloc()).collect();
        got.sort();
        assert_eq!(got, [100, 101, 103], "every other port, never 102");
        assert_eq!(pool.alloc(), None);
        pool.release(102);
        assert_eq!(pool.alloc(), Some(102));
        assert_eq!(pool.stats().in_use, 4);
    }

    #[test]
    fn snat_restores_the_exported_translation_and_nothing_else() {
        let pool = Arc::new(PortPool::new(&snat(SNAT4, 100, 103)));
        let a = Snat {
            pools: vec![pool.clone()],
        };
        let key = FlowKey::new(ip(GUEST4), ip(REMOTE4), 6, 40000, 443);
        let state = DescState {
            out: dataplane::Rewrite {
                ip_src: Some(ip(SNAT4)),
                l4_src: Some(101),
                ..Default::default()
            },
            inbound: dataplane::Rewrite::default(),
        };
        let d = a.restore(Direction::Out, &key, &state).expect("restored");
        assert_eq!(DescState::of(d.as_ref()).out, state.out);
        assert_eq!(d.transform(Direction::In).l4_dst, Some(40000));
        assert_eq!(pool.stats().in_use, 1);
        drop(d);
        assert_eq!(pool.stats().in_use, 0, "released with the flow");
        let other = DescState {
            out: dataplane::Rewrite {
                ip_src: Some(ip(EPH4)),
                l4_src: Some(101),
                ..Default::default()
            },
            ..state
        };
        assert!(
            a.restore(Direction::Out, &key, &other).is_none(),
            "not this pool's"
        );
    }

    #[derive(Clone, Copy, Debug)]
    enum Kind {
        Syn,
        SynAck,
        Udp,
        EchoRequest,
        EchoReply,
        /// ICMPv4 timestamp request: ICMP without an identifier SNAT uses.
        Timestamp,
    }

    /// A frame from `src` to `dst`; for ICMP echo the identifier is the
    /// source "port".
    fn pkt(kind: Kind, src: (&str, u16), dst: (&str, u16)) -> Vec<u8> {
        let (s, d) = (ip(src.0), ip(dst.0));
        let eth = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]);
        let b = match (s, d) {
            (IpAddr::V4(s), IpAddr::V4(d)) => eth.ipv4(s.octets(), d.octets(), 64),
            (IpAddr::V6(s), IpAddr::V6(d)) => eth.ipv6(s.octets(), d.octets(), 64),
            _ => panic!("mixed families"),
        };
        let v6 = s.is_ipv6();
        let mut v = Vec::new();
        let payload = b"hello sluice nat";
        match kind {
            Kind::Syn => b
                .tcp(src.1, dst.1, 1000, 64240)
                .syn()
                .write(&mut v, payload),
            Kind::SynAck => b
                .tcp(src.1, dst.1, 7000, 64240)
                .syn()
                .ack(1001)
                .write(&mut v, payload),
            Kind::Udp => b.udp(src.1, dst.1).write(&mut v, payload),
            Kind::EchoRequest if v6 => b.icmpv6_echo_request(src.1, 1).write(&mut v, payload),
            Kind::EchoRequest => b.icmpv4_echo_request(src.1, 1).write(&mut v, payload),
            Kind::EchoReply if v6 => b.icmpv6_echo_reply(src.1, 1).write(&mut v, payload),
            Kind::EchoReply => b.icmpv4_echo_reply(src.1, 1).write(&mut v, payload),
            Kind::Timestamp => b.icmpv4_raw(13, 0, [0, 1, 0, 1]).write(&mut v, &[0; 12]),
        }
        .unwrap();
        v
    }

    /// Addresses and ports (echo identifier for ICMP echo) of a frame, as
    /// etherparse reads them, every checksum checked.
    #[derive(Debug, PartialEq, Eq)]
    struct Seen {
        src: IpAddr,
        dst: IpAddr,
        sport: u16,
        dport: u16,
    }

    fn seen(frame: &[u8]) -> Seen {
        let p = PacketHeaders::from_ethernet_slice(frame).expect("etherparse reads the frame");
        let payload = p.payload.slice();
        let (src, dst) = match &p.net {
            Some(NetHeaders::Ipv4(h, _)) => {
                assert_eq!(h.header_checksum, h.calc_header_checksum(), "IPv4 checksum");
                (IpAddr::from(h.source), IpAddr::from(h.destination))
            }
            Some(NetHeaders::Ipv6(h, _)) => (IpAddr::from(h.source), IpAddr::from(h.destination)),
            other => panic!("not IP: {other:?}"),
        };
        let (sport, dport) = match (&p.net, &p.transport) {
            (Some(NetHeaders::Ipv4(ip, _)), Some(TransportHeader::Tcp(t))) => {
                let c = t.calc_checksum_ipv4(ip, payload).unwrap();
                assert_eq!(t.checksum, c, "TCP checksum");
                (t.source_port, t.destination_port)
            }
            (Some(NetHeaders::Ipv6(ip, _)), Some(TransportHeader::Tcp(t))) => {
                let c = t.calc_checksum_ipv6(ip, payload).unwrap();
                assert_eq!(t.checksum, c, "TCP checksum");
                (t.source_port, t.destination_port)
            }
            (Some(NetHeaders::Ipv4(ip, _)), Some(TransportHeader::Udp(u))) => {
                let c = u.calc_checksum_ipv4(ip, payload).unwrap();
                assert_eq!(u.checksum, c, "UDP checksum");
                (u.source_port, u.destination_port)
            }
            (Some(NetHeaders::Ipv6(ip, _)), Some(TransportHeader::Udp(u))) => {
                let c = u.calc_checksum_ipv6(ip, payload).unwrap();
                assert_eq!(u.checksum, c, "UDP checksum");
                (u.source_port, u.destination_port)
            }
            (Some(NetHeaders::Ipv4(_, _)), Some(TransportHeader::Icmpv4(i))) => {
                let mut c = i.clone();
                c.update_checksum(payload);
                assert_eq!(i.checksum, c.checksum, "ICMP checksum");
                let id = match i.icmp_type {
                    etherparse::Icmpv4Type::EchoRequest(e)
                    | etherparse::Icmpv4Type::EchoReply(e) => e.id,
                    _ => 0,
                };
                (id, id)
            }
            (Some(NetHeaders::Ipv6(ip, _)), Some(TransportHeader::Icmpv6(i))) => {
                let mut c = i.clone();
                c.update_checksum(ip.source, ip.destination, payload)
                    .unwrap();
                assert_eq!(i.checksum, c.checksum, "ICMPv6 checksum");
                let id = match i.icmp_type {
                    etherparse::Icmpv6Type::EchoRequest(e)
                    | etherparse::Icmpv6Type::EchoReply(e) => e.id,
                    _ => 0,
                };
                (id, id)
            }
            other => panic!("unexpected transport {other:?}"),
        };
        Seen {
            src,
            dst,
            sport,
            dport,
        }
    }

    fn routes() -> Vec<RouteEntry> {
        let r = |dest: &str, target| RouteEntry {
            dest: dest.parse().unwrap(),
            target,
            class: RouteClass::System,
        };
        vec![
            r("0.0.0.0/0", RouteTarget::InternetGateway),
            r("::/0", RouteTarget::InternetGateway),
            r(
                "10.0.0.0/24",
                RouteTarget::VpcSubnet("10.0.0.0/24".parse().unwrap()),
            ),
            r(
                "fd00:1::/64",
                RouteTarget::VpcSubnet("fd00:1::/64".parse().unwrap()),
            ),
        ]
    }

    struct Fx {
        port: Port,
        clock: ManualClock,
        nat: Nat,
    }

    /// A port with the router and NAT layers, the guest at GUEST4/GUEST6.
    fn fx(ext: ExternalIps) -> Fx {
        let clock = ManualClock::new();
        clock.set(NANOS_PER_SEC);
        let mut port = Port::with_clock(PortConfig::new("vm1"), Box::new(clock.clone()));
        port.add_layer(router::layer_config()).unwrap();
        router::install(&mut port, &routes(), None).unwrap();
        port.add_layer(layer_config()).unwrap();
        let nat = Nat::new(&ext, GUEST4.parse().ok(), GUEST6.parse().ok());
        nat.install(&mut port).unwrap();
        Fx { port, clock, nat }
    }

    impl Fx {
        fn send(&mut self, dir: Direction, frame: &[u8]) -> (Verdict, Vec<u8>) {
            let mut p = PacketBuf::from_frame(frame);
            let v = self.port.process(dir, &mut p);
            (v, p.as_slice().to_vec())
        }

        /// Sends a frame that must be forwarded; returns what left.
        fn pass(&mut self, dir: Direction, frame: &[u8]) -> Seen {
            let (v, out) = self.send(dir, frame);
            assert!(
                matches!(v, Verdict::Forward),
                "expected forward, got {v:?}\n{}",
                self.dump()
            );
            seen(&out)
        }

        fn verdict(&mut self, dir: Direction, frame: &[u8]) -> Verdict {
            self.send(dir, frame).0
        }

        fn dump(&self) -> String {
            serde_json::to_string_pretty(&self.port.dump_layers()).unwrap()
        }

        fn nat_rules(&self, dir: Direction) -> usize {
            let l = self.port.layers().iter().find(|l| l.name() == LAYER);
            l.unwrap().rule_count(dir)
        }
    }

    fn snat_both(first: u16, last: u16) -> ExternalIps {
        ExternalIps {
            snat: vec![snat(SNAT4, first, last), snat(SNAT6, first, last)],
            ..Default::default()
        }
    }

    #[test]
    fn snat_tcp_udp_and_echo_both_families_and_replies_come_back() {
        let mut f = fx(snat_both(1024, 1100));
        assert_eq!(f.nat.kind_v4(), Some(NatKind::Snat));
        assert_eq!(f.nat.kind_v6(), Some(NatKind::Snat));
        let cases = [(GUEST4, REMOTE4, SNAT4), (GUEST6, REMOTE6, SNAT6)];
        let kinds = [
            (Kind::Syn, Kind::SynAck),
            (Kind::Udp, Kind::Udp),
            (Kind::EchoRequest, Kind::EchoReply),
        ];
        let mut used = Vec::new();
        for (guest, remote, ext) in cases {
            for (i, (out_kind, reply_kind)) in kinds.into_iter().enumerate() {
                let sport = 40_000 + i as u16;
                // ICMP echo: the remote "port" is the identifier too.
                let dport = if matches!(out_kind, Kind::EchoRequest) {
                    sport
                } else {
                    443
                };
                let out = pkt(out_kind, (guest, sport), (remote, dport));
                let s = f.pass(Direction::Out, &out);
                assert_eq!((s.src, s.dst), (ip(ext), ip(remote)), "{out_kind:?}");
                assert!((1024..=1100).contains(&s.sport), "{s:?}");
                if !matches!(out_kind, Kind::EchoRequest) {
                    assert_eq!(s.dport, dport);
                }
                assert!(!used.contains(&(s.src, s.sport)), "port handed out twice");
                used.push((s.src, s.sport));
                // The next packet of the flow (fast path) keeps the port.
                let again = f.pass(Direction::Out, &out);
                assert_eq!(again, s);

                // The internet replies to the external address and port.
                let rport = if matches!(out_kind, Kind::EchoRequest) {
                    s.sport
                } else {
                    dport
                };
                let reply = pkt(reply_kind, (remote, rport), (ext, s.sport));
                let r = f.pass(Direction::In, &reply);
                assert_eq!((r.src, r.dst), (ip(remote), ip(guest)), "{reply_kind:?}");
                assert_eq!(r.dport, sport, "{reply_kind:?} back to the guest's port");
            }
        }
        let pools = f.nat.snat_pools();
        assert_eq!(pools.len(), 2);
        for p in pools {
            assert_eq!((p.in_use, p.free, p.refused), (3, 74, 0), "{p:?}");
        }
    }

    #[test]
    fn vpc_internal_traffic_is_not_translated() {
        let mut f = fx(snat_both(1024, 1100));
        for (guest, peer) in [(GUEST4, PEER4), (GUEST6, PEER6)] {
            for kind in [Kind::Syn, Kind::Udp, Kind::EchoRequest] {
                let s = f.pass(Direction::Out, &pkt(kind, (guest, 40_000), (peer, 40_000)));
                assert_eq!(
                    (s.src, s.sport, s.dst, s.dport),
                    (ip(guest), 40_000, ip(peer), 40_000)
                );
            }
            // Inbound to the guest's private address passes untouched.
            let s = f.pass(Direction::In, &pkt(Kind::Udp, (peer, 53), (guest, 5353)));
            assert_eq!((s.src, s.dst, s.dport), (ip(peer), ip(guest), 5353));
        }
        assert!(f.nat.snat_pools().iter().all(|p| p.in_use == 0));
    }

    #[test]
    fn ephemeral_is_preferred_over_snat_and_is_outbound_only() {
        let mut ext = snat_both(1024, 1100);
        ext.ephemeral = vec![ip(EPH4), ip(EPH6)];
        let mut f = fx(ext);
        assert_eq!(f.nat.kind_v4(), Some(NatKind::Ephemeral));
        assert_eq!(f.nat.kind_v6(), Some(NatKind::Ephemeral));
        assert!(f.nat.snat_pools().is_empty());
        for (guest, remote, eph, snat_ip) in [
            (GUEST4, REMOTE4, EPH4, SNAT4),
            (GUEST6, REMOTE6, EPH6, SNAT6),
        ] {
            let s = f.pass(
                Direction::Out,
                &pkt(Kind::Syn, (guest, 40_000), (remote, 443)),
            );
            // 1:1: the address changes, the port does not.
            assert_eq!((s.src, s.sport, s.dst), (ip(eph), 40_000, ip(remote)));
            let r = f.pass(
                Direction::In,
                &pkt(Kind::SynAck, (remote, 443), (eph, 40_000)),
            );
            assert_eq!((r.dst, r.dport), (ip(guest), 40_000));
            // Nobody may open a connection to the ephemeral or SNAT address.
            for to in [eph, snat_ip] {
                let v = f.verdict(Direction::In, &pkt(Kind::Syn, (remote, 5555), (to, 22)));
                assert!(
                    matches!(v, Verdict::Drop(DropReason::Policy(UNSOLICITED))),
                    "{v:?}"
                );
            }
        }
    }

    #[test]
    fn floating_is_preferred_and_reachable_inbound() {
        let mut ext = snat_both(1024, 1100);
        ext.ephemeral = vec![ip(EPH4), ip(EPH6)];
        ext.floating = vec![ip(FIP4), ip(FIP6)];
        let mut f = fx(ext);
        assert_eq!(f.nat.kind_v4(), Some(NatKind::Floating));
        assert_eq!(f.nat.kind_v6(), Some(NatKind::Floating));
        for (guest, remote, fip) in [(GUEST4, REMOTE4, FIP4), (GUEST6, REMOTE6, FIP6)] {
            // Outbound: from the floating IP, port kept; replies come back.
            let s = f.pass(
                Direction::Out,
                &pkt(Kind::Udp, (guest, 40_000), (remote, 53)),
            );
            assert_eq!((s.src, s.sport, s.dst), (ip(fip), 40_000, ip(remote)));
            let r = f.pass(Direction::In, &pkt(Kind::Udp, (remote, 53), (fip, 40_000)));
            assert_eq!((r.src, r.dst, r.dport), (ip(remote), ip(guest), 40_000));

            // Inbound: a connection opened from the internet to the
            // floating IP reaches the guest's private address ...
            let syn = pkt(Kind::Syn, (remote, 5555), (fip, 22));
            let s = f.pass(Direction::In, &syn);
            assert_eq!(
                (s.src, s.sport, s.dst, s.dport),
                (ip(remote), 5555, ip(guest), 22)
            );
            // ... and the guest's answer leaves from the floating IP.
            let syn_ack = pkt(Kind::SynAck, (guest, 22), (remote, 5555));
            let r = f.pass(Direction::Out, &syn_ack);
            assert_eq!(
                (r.src, r.sport, r.dst, r.dport),
                (ip(fip), 22, ip(remote), 5555)
            );
            // Echo to the floating IP too (1:1 keeps the identifier).
            let s = f.pass(
                Direction::In,
                &pkt(Kind::EchoRequest, (remote, 9), (fip, 9)),
            );
            assert_eq!((s.dst, s.dport), (ip(guest), 9));
            let r = f.pass(
                Direction::Out,
                &pkt(Kind::EchoReply, (guest, 9), (remote, 9)),
            );
            assert_eq!((r.src, r.sport), (ip(fip), 9));
        }
    }

    /// UDP from the guest's IPv4 address, source port `sport`, to REMOTE4.
    fn udp_out(sport: u16) -> Vec<u8> {
        pkt(Kind::Udp, (GUEST4, sport), (REMOTE4, 53))
    }

    #[test]
    fn exhausted_pool_drops_new_flows_only_and_ports_return_after_expiry() {
        let mut f = fx(ExternalIps {
            snat: vec![snat(SNAT4, 2000, 2001)],
            ..Default::default()
        });
        let a = f.pass(Direction::Out, &udp_out(40_000));
        let b = f.pass(Direction::Out, &udp_out(40_001));
        assert_eq!((a.sport, b.sport), (2000, 2001));
        let before = f.port.stats().drops(DropReason::Exhausted);
        let v = f.verdict(Direction::Out, &udp_out(40_002));
        assert!(matches!(v, Verdict::Drop(DropReason::Exhausted)), "{v:?}");
        assert_eq!(f.port.stats().drops(DropReason::Exhausted), before + 1);
        let p = &f.nat.snat_pools()[0];
        assert_eq!((p.in_use, p.free, p.refused), (2, 0, 1));

        // The flows that have a port keep working, both ways.
        assert_eq!(f.pass(Direction::Out, &udp_out(40_000)), a);
        assert_eq!(f.pass(Direction::Out, &udp_out(40_001)), b);
        let r = f.pass(Direction::In, &pkt(Kind::Udp, (REMOTE4, 53), (SNAT4, 2001)));
        assert_eq!((r.dst, r.dport), (ip(GUEST4), 40_001));

        // Past the UDP timeout the flows expire and give their ports back.
        f.clock.advance_secs(61);
        assert_eq!(f.port.expire(), 2);
        let p = &f.nat.snat_pools()[0];
        assert_eq!((p.in_use, p.free), (0, 2));
        let c = f.pass(Direction::Out, &udp_out(40_002));
        assert!((2000..=2001).contains(&c.sport), "{c:?}");
        // A reply to the other, now unused, port finds no flow: refused.
        let unused = if c.sport == 2000 { 2001 } else { 2000 };
        let v = f.verdict(
            Direction::In,
            &pkt(Kind::Udp, (REMOTE4, 53), (SNAT4, unused)),
        );
        assert!(
            matches!(v, Verdict::Drop(DropReason::Policy(UNSOLICITED))),
            "{v:?}"
        );
    }

    #[test]
    fn a_freed_port_is_not_handed_out_while_others_are_free() {
        let mut f = fx(ExternalIps {
            snat: vec![snat(SNAT4, 3000, 3002)],
            ..Default::default()
        });
        assert_eq!(f.pass(Direction::Out, &udp_out(1)).sport, 3000);
        assert_eq!(f.pass(Direction::Out, &udp_out(2)).sport, 3001);
        // Keep the second flow alive; let the first one expire.
        f.clock.advance_secs(40);
        assert_eq!(f.pass(Direction::Out, &udp_out(2)).sport, 3001);
        f.clock.advance_secs(21);
        assert_eq!(f.port.expire(), 1);
        // 3000 is free again, but 3002 has been free for longer.
        assert_eq!(f.pass(Direction::Out, &udp_out(3)).sport, 3002);
        assert_eq!(f.pass(Direction::Out, &udp_out(4)).sport, 3000);
        let v = f.verdict(Direction::Out, &udp_out(5));
        assert!(matches!(v, Verdict::Drop(DropReason::Exhausted)), "{v:?}");
    }

    #[test]
    fn pool_hands_out_fresh_ports_then_freed_ones_oldest_first() {
        let p = PortPool::new(&snat(SNAT4, 10, 13));
        let got: Vec<u16> = (0..3).filter_map(|_| p.alloc()).collect();
        assert_eq!(got, [10, 11, 12]);
        p.release(11);
        p.release(10);
        // Out-of-range and excess releases change nothing.
        p.release(99);
        assert_eq!(p.alloc(), Some(13));
        assert_eq!(p.alloc(), Some(11));
        assert_eq!(p.alloc(), Some(10));
        assert_eq!(p.alloc(), None);
        for port in [10, 11, 12, 13] {
            p.release(port);
        }
        p.release(10);
        let s = p.stats();
        assert_eq!((s.in_use, s.free, s.refused), (0, 4, 1));
        assert_eq!(p.state().free.len(), 4);
    }

    #[test]
    fn a_family_without_external_addresses_has_no_rules() {
        let mut f = fx(ExternalIps {
            snat: vec![snat(SNAT4, 1024, 1100)],
            ..Default::default()
        });
        assert_eq!(f.nat.kind_v6(), None);
        // IPv4: one translating rule out; one refusing unsolicited traffic
        // to the SNAT address in. Nothing for IPv6.
        assert_eq!(f.nat_rules(Direction::Out), 1);
        assert_eq!(f.nat_rules(Direction::In), 1);
        // IPv6 internet traffic passes this layer untranslated: the router
        // and the overlay decide what becomes of it.
        let s = f.pass(
            Direction::Out,
            &pkt(Kind::Udp, (GUEST6, 40_000), (REMOTE6, 53)),
        );
        assert_eq!((s.src, s.sport), (ip(GUEST6), 40_000));
        let s = f.pass(
            Direction::Out,
            &pkt(Kind::Udp, (GUEST4, 40_000), (REMOTE4, 53)),
        );
        assert_eq!(s.src, ip(SNAT4));

        // No external addresses at all: no rules, nothing translated.
        let mut f = fx(ExternalIps::default());
        assert_eq!(f.nat_rules(Direction::Out), 0);
        assert_eq!(f.nat_rules(Direction::In), 0);
        let s = f.pass(
            Direction::Out,
            &pkt(Kind::Udp, (GUEST4, 40_000), (REMOTE4, 53)),
        );
        assert_eq!((s.src, s.sport), (ip(GUEST4), 40_000));

        // A guest without an IPv6 address gets no IPv6 translation, even
        // if (against validation) IPv6 external addresses are given.
        let nat = Nat::new(&snat_both(1024, 1100), GUEST4.parse().ok(), None);
        assert_eq!((nat.kind_v4(), nat.kind_v6()), (Some(NatKind::Snat), None));
        assert_eq!(nat.snat_pools().len(), 1);
    }

    #[test]
    fn snat_refuses_what_has_no_port_and_never_mixes_families() {
        let mut f = fx(snat_both(1024, 1100));
        let v = f.verdict(
            Direction::Out,
            &pkt(Kind::Timestamp, (GUEST4, 0), (REMOTE4, 0)),
        );
        assert!(
            matches!(v, Verdict::Drop(DropReason::Policy("snat_no_port"))),
            "{v:?}"
        );
        // The action itself refuses a key of the other family.
        let a = Snat {
            pools: vec![Arc::new(PortPool::new(&snat(SNAT6, 1024, 1100)))],
        };
        let frame = pkt(Kind::Udp, (GUEST4, 1), (REMOTE4, 2));
        let h = dataplane::headers::parse(&frame, dataplane::ParseMode::Plain)
            .unwrap()
            .hdrs;
        let k = FlowKey::of(&h).unwrap();
        let e = a.generate(Direction::Out, &k, &h, &Meta::default());
        assert_eq!(e.unwrap_err(), GenError::Exhausted("snat ports"));
        assert_eq!(a.pools[0].stats().in_use, 0);
    }

    #[test]
    fn overlapping_snat_ranges_are_not_both_used() {
        let ext = ExternalIps {
            snat: vec![
                snat(SNAT4, 1024, 2047),
                snat(SNAT4, 2000, 3000),
                snat("203.0.113.11", 2000, 3000),
            ],
            ..Default::default()
        };
        let nat = Nat::new(&ext, GUEST4.parse().ok(), None);
        let pools: Vec<_> = nat
            .snat_pools()
            .into_iter()
            .map(|p| (p.ip, p.first_port))
            .collect();
        assert_eq!(pools, [(ip(SNAT4), 1024), (ip("203.0.113.11"), 2000)]);
    }

    #[test]
    fn update_keeps_flows_whose_translation_is_unchanged() {
        let ext = snat_both(1024, 1100);
        let mut f = fx(ext.clone());
        let a = f.pass(Direction::Out, &udp_out(40_000));
        // The same configuration again, e.g. with another field changed.
        f.nat.update(&ext, GUEST4.parse().ok(), GUEST6.parse().ok());
        f.nat.install(&mut f.port).unwrap();
        assert_eq!(f.pass(Direction::Out, &udp_out(40_000)), a);
        assert_eq!(f.nat.snat_pools()[0].in_use, 1);

        // A second pool added: a new action, but the first pool (and the
        // port the flow holds) carries over.
        let mut more = ext.clone();
        more.snat.push(snat("203.0.113.11", 5000, 5001));
        f.nat
            .update(&more, GUEST4.parse().ok(), GUEST6.parse().ok());
        f.nat.install(&mut f.port).unwrap();
        let b = f.pass(Direction::Out, &udp_out(40_001));
        assert_eq!((b.src, b.sport), (ip(SNAT4), 1025));
        assert_eq!(f.nat.snat_pools()[0].in_use, 2);

        // Ephemeral replaces SNAT: flows are re-translated and give their
        // ports back.
        let pool = f.nat.v4.as_ref().unwrap().pools[0].clone();
        let mut eph = more.clone();
        eph.ephemeral = vec![ip(EPH4)];
        f.nat.update(&eph, GUEST4.parse().ok(), GUEST6.parse().ok());
        f.nat.install(&mut f.port).unwrap();
        let s = f.pass(Direction::Out, &udp_out(40_000));
        assert_eq!((s.src, s.sport), (ip(EPH4), 40_000));
        assert_eq!(pool.stats().in_use, 1);
        f.pass(Direction::Out, &udp_out(40_001));
        assert_eq!(pool.stats().in_use, 0);
    }

    #[test]
    fn dumps_name_the_translation() {
        let mut ext = snat_both(1024, 1100);
        ext.floating = vec![ip(FIP6)];
        let mut f = fx(ext);
        f.pass(
            Direction::Out,
            &pkt(Kind::Udp, (GUEST4, 40_000), (REMOTE4, 53)),
        );
        let d = f.dump();
        assert!(d.contains("stateful(snat 203.0.113.10:1024-1100)"), "{d}");
        assert!(
            d.contains("stateful(floating 2001:db8::30 <-> fd00:1::5)"),
            "{d}"
        );
        assert!(
            d.contains("snat 10.0.0.5:40000 <-> 203.0.113.10:1024"),
            "{d}"
        );
    }
}
