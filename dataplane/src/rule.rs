//! Rules: a priority, predicates over parsed header fields, and an action.
//!
//! A rule matches when every predicate holds (a rule without predicates
//! matches everything). Lower priority values are consulted first; among
//! equal priorities, the rule added first wins, so replacing a rule-set
//! with the same rules in the same order changes nothing.

use crate::action::Action;
use crate::addr::{IpCidr, PortRange};
use crate::headers::{Headers, Mac, Vni, L3, L4};
use crate::meta::{Meta, MetaKey};
use crate::transform::mac_string;
use core::fmt;
use core::net::IpAddr;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Predicate {
    /// The guest frame's EtherType (after any VLAN tag).
    EtherType(Vec<u16>),
    EthSrc(Vec<Mac>),
    EthDst(Vec<Mac>),
    /// IP version 4 or 6.
    IpVersion(u8),
    SrcIp(Vec<IpCidr>),
    DstIp(Vec<IpCidr>),
    /// IP protocol number (after IPv6 extension headers).
    Proto(Vec<u8>),
    SrcPort(Vec<PortRange>),
    DstPort(Vec<PortRange>),
    /// ICMP or ICMPv6 type.
    IcmpType(Vec<u8>),
    /// TCP flags: `flags & mask == value`.
    TcpFlags {
        mask: u8,
        value: u8,
    },
    /// The Geneve VNI of an encapsulated packet.
    Vni(Vec<Vni>),
    OuterSrcIp(Vec<IpCidr>),
    OuterDstIp(Vec<IpCidr>),
    /// ARP operation (1 request, 2 reply).
    ArpOp(u16),
    /// ARP target protocol address.
    ArpTargetIp(Vec<IpCidr>),
    /// ARP sender protocol address.
    ArpSenderIp(Vec<IpCidr>),
    /// A metadata slot holds this value.
    Meta(MetaKey, u64),
    Not(Box<Predicate>),
}

fn any_cidr(set: &[IpCidr], ip: IpAddr) -> bool {
    set.iter().any(|c| c.contains(ip))
}

fn any_port(set: &[PortRange], p: u16) -> bool {
    set.iter().any(|r| r.contains(p))
}

impl Predicate {
    #[inline]
    pub fn matches(&self, h: &Headers, meta: &Meta) -> bool {
        let inner = &h.inner;
        match self {
            Predicate::EtherType(v) => v.contains(&inner.ether_type),
            Predicate::EthSrc(v) => v.contains(&inner.eth_src),
            Predicate::EthDst(v) => v.contains(&inner.eth_dst),
            Predicate::IpVersion(4) => matches!(inner.l3, L3::Ipv4(_)),
            Predicate::IpVersion(6) => matches!(inner.l3, L3::Ipv6(_)),
            Predicate::IpVersion(_) => false,
            Predicate::SrcIp(set) => inner.ip().is_some_and(|ip| any_cidr(set, ip.src)),
            Predicate::DstIp(set) => inner.ip().is_some_and(|ip| any_cidr(set, ip.dst)),
            Predicate::Proto(v) => inner.ip().is_some_and(|ip| v.contains(&ip.proto)),
            Predicate::SrcPort(set) => match inner.l4 {
                L4::Tcp(t) => any_port(set, t.src),
                L4::Udp { src, .. } => any_port(set, src),
                _ => false,
            },
            Predicate::DstPort(set) => match inner.l4 {
                L4::Tcp(t) => any_port(set, t.dst),
                L4::Udp { dst, .. } => any_port(set, dst),
                _ => false,
            },
            Predicate::IcmpType(v) => match inner.l4 {
                L4::Icmp { ty, .. } | L4::Icmp6 { ty, .. } => v.contains(&ty),
                _ => false,
            },
            Predicate::TcpFlags { mask, value } => {
                matches!(inner.l4, L4::Tcp(t) if t.flags & mask == *value)
            }
            Predicate::Vni(v) => h.outer.is_some_and(|o| v.contains(&o.geneve.vni)),
            Predicate::OuterSrcIp(set) => h.outer.is_some_and(|o| any_cidr(set, o.ip_src.into())),
            Predicate::OuterDstIp(set) => h.outer.is_some_and(|o| any_cidr(set, o.ip_dst.into())),
            Predicate::ArpOp(op) => matches!(inner.l3, L3::Arp(a) if a.op.to_u16() == *op),
            Predicate::ArpTargetIp(set) => {
                matches!(inner.l3, L3::Arp(a) if any_cidr(set, a.tpa.into()))
            }
            Predicate::ArpSenderIp(set) => {
                matches!(inner.l3, L3::Arp(a) if any_cidr(set, a.spa.into()))
            }
            Predicate::Meta(k, v) => meta.get(*k) == Some(*v),
            Predicate::Not(p) => !p.matches(h, meta),
        }
    }
}

fn list<T: fmt::Display>(f: &mut fmt::Formatter<'_>, name: &str, v: &[T]) -> fmt::Result {
    write!(f, "{name}=")?;
    for (i, x) in v.iter().enumerate() {
        if i > 0 {
            f.write_str(",")?;
        }
        write!(f, "{x}")?;
    }
    Ok(())
}

impl fmt::Display for Predicate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Predicate::EtherType(v) => {
                let v: Vec<String> = v.iter().map(|t| format!("0x{t:04x}")).collect();
                list(f, "ethertype", &v)
            }
            Predicate::EthSrc(v) => {
                list(f, "eth.src", &v.iter().map(mac_string).collect::<Vec<_>>())
            }
            Predicate::EthDst(v) => {
                list(f, "eth.dst", &v.iter().map(mac_string).collect::<Vec<_>>())
            }
            Predicate::IpVersion(v) => write!(f, "ip.version={v}"),
            Predicate::SrcIp(v) => list(f, "ip.src", v),
            Predicate::DstIp(v) => list(f, "ip.dst", v),
            Predicate::Proto(v) => list(f, "ip.proto", v),
            Predicate::SrcPort(v) => list(f, "l4.src", v),
            Predicate::DstPort(v) => list(f, "l4.dst", v),
            Predicate::IcmpType(v) => list(f, "icmp.type", v),
            Predicate::TcpFlags { mask, value } => {
                write!(f, "tcp.flags&0x{mask:02x}=0x{value:02x}")
            }
            Predicate::Vni(v) => list(f, "vni", &v.iter().map(|v| v.get()).collect::<Vec<_>>()),
            Predicate::OuterSrcIp(v) => list(f, "outer.ip.src", v),
            Predicate::OuterDstIp(v) => list(f, "outer.ip.dst", v),
            Predicate::ArpOp(op) => write!(f, "arp.op={op}"),
            Predicate::ArpTargetIp(v) => list(f, "arp.tpa", v),
            Predicate::ArpSenderIp(v) => list(f, "arp.spa", v),
            Predicate::Meta(k, v) => write!(f, "meta[{}]={v}", k.0),
            Predicate::Not(p) => write!(f, "!({p})"),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Rule {
    pub priority: u16,
    pub predicates: Vec<Predicate>,
    pub action: Action,
}

impl Rule {
    pub fn new(priority: u16, action: Action) -> Self {
        Rule {
            priority,
            predicates: Vec::new(),
            action,
        }
    }

    pub fn with(mut self, p: Predicate) -> Self {
        self.predicates.push(p);
        self
    }

    #[inline]
    pub fn matches(&self, h: &Headers, meta: &Meta) -> bool {
        self.predicates.iter().all(|p| p.matches(h, meta))
    }
}

/// A rule's identity within its layer, stable across other rules' changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub struct RuleId(pub u64);

#[derive(Clone, Debug)]
pub(crate) struct RuleEntry {
    pub id: RuleId,
    pub rule: Rule,
    pub hits: u64,
}

/// The rules of one layer in one direction, kept in match order.
#[derive(Clone, Debug, Default)]
pub(crate) struct RuleTable {
    entries: Vec<RuleEntry>,
}

impl RuleTable {
    pub fn insert(&mut self, id: RuleId, rule: Rule) {
        // After every rule of the same or higher precedence: stable order.
        let at = self
            .entries
            .partition_point(|e| e.rule.priority <= rule.priority);
        self.entries.insert(at, RuleEntry { id, rule, hits: 0 });
    }

    pub fn remove(&mut self, id: RuleId) -> Option<Rule> {
        let at = self.entries.iter().position(|e| e.id == id)?;
        Some(self.entries.remove(at).rule)
    }

    /// The index of the first matching rule.
    #[inline]
    pub fn find(&self, h: &Headers, meta: &Meta) -> Option<usize> {
        self.entries.iter().position(|e| e.rule.matches(h, meta))
    }

    pub fn get(&self, i: usize) -> &RuleEntry {
        &self.entries[i]
    }

    pub fn hit(&mut self, i: usize) {
        self.entries[i].hits += 1;
    }

    pub fn entries(&self) -> &[RuleEntry] {
        &self.entries
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }
}
