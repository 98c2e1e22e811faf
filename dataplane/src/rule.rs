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
use std::collections::HashMap;

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

/// `v.contains(x)` without the memchr call `contains` makes for bytes:
/// predicate lists are short, a plain loop is faster.
#[inline(always)]
#[allow(clippy::manual_contains)] // deliberately not `contains` (see above)
fn has<T: PartialEq + Copy>(v: &[T], x: T) -> bool {
    v.iter().any(|&y| y == x)
}

impl Predicate {
    #[inline]
    pub fn matches(&self, h: &Headers, meta: &Meta) -> bool {
        let inner = &h.inner;
        match self {
            Predicate::EtherType(v) => has(v, inner.ether_type),
            Predicate::EthSrc(v) => v.contains(&inner.eth_src),
            Predicate::EthDst(v) => v.contains(&inner.eth_dst),
            Predicate::IpVersion(4) => matches!(inner.l3, L3::Ipv4(_)),
            Predicate::IpVersion(6) => matches!(inner.l3, L3::Ipv6(_)),
            Predicate::IpVersion(_) => false,
            Predicate::SrcIp(set) => inner.ip().is_some_and(|ip| any_cidr(set, ip.src)),
            Predicate::DstIp(set) => inner.ip().is_some_and(|ip| any_cidr(set, ip.dst)),
            Predicate::Proto(v) => inner.ip().is_some_and(|ip| has(v, ip.proto)),
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
                L4::Icmp { ty, .. } | L4::Icmp6 { ty, .. } => has(v, ty),
                _ => false,
            },
            Predicate::TcpFlags { mask, value } => {
                matches!(inner.l4, L4::Tcp(t) if t.flags & mask == *value)
            }
            Predicate::Vni(v) => h.outer.is_some_and(|o| has(v, o.geneve.vni)),
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

/// Protocol classes the rule index partitions on.
const CLASSES: usize = 6;
const C_TCP: u8 = 1 << 0;
const C_UDP: u8 = 1 << 1;
const C_ICMP: u8 = 1 << 2;
const C_ICMP6: u8 = 1 << 3;
const C_OTHER_IP: u8 = 1 << 4;
const C_NON_IP: u8 = 1 << 5;
const C_IP: u8 = C_TCP | C_UDP | C_ICMP | C_ICMP6 | C_OTHER_IP;
const C_ALL: u8 = C_IP | C_NON_IP;

fn proto_class(p: u8) -> u8 {
    match p {
        6 => C_TCP,
        17 => C_UDP,
        1 => C_ICMP,
        58 => C_ICMP6,
        _ => C_OTHER_IP,
    }
}

/// The class of a packet (one bit).
#[inline]
fn packet_class(h: &Headers) -> u8 {
    match h.inner.ip() {
        Some(ip) => proto_class(ip.proto),
        None => C_NON_IP,
    }
}

impl Predicate {
    /// The classes of packets this predicate can possibly match: a
    /// superset, so the index never hides a rule that would match.
    fn classes(&self) -> u8 {
        match self {
            Predicate::Proto(v) => v.iter().fold(0, |c, p| c | proto_class(*p)),
            Predicate::SrcPort(_) | Predicate::DstPort(_) => C_TCP | C_UDP,
            Predicate::TcpFlags { .. } => C_TCP,
            Predicate::IcmpType(_) => C_ICMP | C_ICMP6,
            Predicate::ArpOp(_) | Predicate::ArpTargetIp(_) | Predicate::ArpSenderIp(_) => C_NON_IP,
            Predicate::SrcIp(_) | Predicate::DstIp(_) | Predicate::IpVersion(_) => C_IP,
            _ => C_ALL,
        }
    }
}

/// A rule whose destination-port predicate names at most this many ports
/// is indexed by port; wider ranges stay in the unindexed list.
const MAX_INDEXED_PORTS: u32 = 64;

/// The rule index's hasher: one multiply for the integer keys a rule
/// table is indexed by (a port, a prefix's [`dst_key`]). The keys come
/// from the port's own rules and a packet only looks them up, so there is
/// nothing for packets to flood; SipHash cost two of these lookups per
/// layer per first packet.
#[derive(Clone, Copy, Debug, Default)]
struct IndexHash;

impl core::hash::BuildHasher for IndexHash {
    type Hasher = IndexHasher;
    fn build_hasher(&self) -> IndexHasher {
        IndexHasher(0)
    }
}

struct IndexHasher(u64);

impl core::hash::Hasher for IndexHasher {
    fn finish(&self) -> u64 {
        // Fibonacci hashing: hashbrown takes its top 7 bits as the tag
        // and the low bits as the bucket, both well mixed by this.
        (self.0 ^ (self.0 >> 29)).wrapping_mul(0x9e37_79b9_7f4a_7c15)
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
        }
    }
    fn write_u16(&mut self, n: u16) {
        self.0 ^= u64::from(n);
    }
    fn write_u64(&mut self, n: u64) {
        self.0 ^= n;
    }
}

/// Candidate rules for one protocol class, as indices in match order.
#[derive(Clone, Debug, Default)]
struct ClassIndex {
    /// Rules that constrain the destination port to a few values (TCP and
    /// UDP classes only), by port.
    by_dport: HashMap<u16, Vec<u32>, IndexHash>,
    /// Rules not indexed by port whose destination prefixes are all at
    /// least /16 (IPv4) or /32 (IPv6), by [`dst_key`] of each prefix.
    by_dst: HashMap<u64, Vec<u32>, IndexHash>,
    /// Every other rule of the class.
    rest: Vec<u32>,
}

/// The destination-address bucket of `ip`: its first 16 bits (IPv4) or
/// 32 bits (IPv6), tagged with the family. A prefix at least that long
/// lies in exactly one bucket.
#[inline]
fn dst_key(ip: IpAddr) -> u64 {
    match ip {
        IpAddr::V4(a) => u64::from(u32::from(a) >> 16),
        IpAddr::V6(a) => (1 << 32) | (u128::from(a) >> 96) as u64,
    }
}

/// The destination-address buckets a rule is limited to, if every prefix
/// of its destination predicate is long enough to lie in one bucket.
fn indexed_dsts(r: &Rule) -> Option<Vec<u64>> {
    r.predicates.iter().find_map(|p| match p {
        Predicate::DstIp(cidrs) => cidrs
            .iter()
            .map(|c| {
                let min = if c.addr().is_ipv4() { 16 } else { 32 };
                (c.prefix_len() >= min).then(|| dst_key(c.addr()))
            })
            .collect(),
        _ => None,
    })
}

/// The rules of one layer in one direction, kept in match order, with an
/// index: by protocol class (a TCP packet never looks at ICMP or ARP
/// rules), then, for TCP and UDP, by destination port, and for rules
/// without a few ports, by destination network (the /16 of IPv4 prefixes
/// of /16 or longer, the /32 of IPv6 prefixes of /32 or longer). A
/// lookup merges the packet's port bucket and address bucket with the
/// unindexed rules in rule order, so the first match is the same rule a
/// plain scan would find, while a rule-set of many port or address rules
/// costs two buckets, not a scan.
#[derive(Clone, Debug, Default)]
pub(crate) struct RuleTable {
    entries: Vec<RuleEntry>,
    index: [ClassIndex; CLASSES],
}

/// The destination ports a rule is limited to, if few enough to index.
fn indexed_ports(r: &Rule) -> Option<Vec<u16>> {
    r.predicates.iter().find_map(|p| match p {
        Predicate::DstPort(ranges) => {
            let n: u32 = ranges.iter().map(|r| u32::from(r.last - r.first) + 1).sum();
            (n <= MAX_INDEXED_PORTS).then(|| ranges.iter().flat_map(|r| r.first..=r.last).collect())
        }
        _ => None,
    })
}

impl RuleTable {
    pub fn insert(&mut self, id: RuleId, rule: Rule) {
        // After every rule of the same or higher precedence: stable order.
        let at = self
            .entries
            .partition_point(|e| e.rule.priority <= rule.priority);
        self.entries.insert(at, RuleEntry { id, rule, hits: 0 });
        self.reindex();
    }

    /// Builds a table from rules in one go (an atomic rule-set replace).
    pub fn from_rules(rules: impl IntoIterator<Item = (RuleId, Rule)>) -> Self {
        let mut entries: Vec<RuleEntry> = rules
            .into_iter()
            .map(|(id, rule)| RuleEntry { id, rule, hits: 0 })
            .collect();
        // A stable sort keeps the given order among equal priorities.
        entries.sort_by_key(|e| e.rule.priority);
        let mut t = RuleTable {
            entries,
            index: Default::default(),
        };
        t.reindex();
        t
    }

    pub fn remove(&mut self, id: RuleId) -> Option<Rule> {
        let at = self.entries.iter().position(|e| e.id == id)?;
        let r = self.entries.remove(at).rule;
        self.reindex();
        Some(r)
    }

    fn reindex(&mut self) {
        self.index = Default::default();
        for (i, e) in self.entries.iter().enumerate() {
            let c = e.rule.predicates.iter().fold(C_ALL, |c, p| c & p.classes());
            let ports = indexed_ports(&e.rule);
            let dsts = indexed_dsts(&e.rule);
            for (k, ix) in self.index.iter_mut().enumerate() {
                if c & (1 << k) == 0 {
                    continue;
                }
                let by_port = (1u8 << k) & (C_TCP | C_UDP) != 0;
                let by_dst = (1u8 << k) & C_IP != 0;
                match (&ports, &dsts) {
                    (Some(ps), _) if by_port => {
                        for p in ps {
                            let b = ix.by_dport.entry(*p).or_default();
                            if b.last() != Some(&(i as u32)) {
                                b.push(i as u32);
                            }
                        }
                    }
                    (_, Some(ds)) if by_dst => {
                        for d in ds {
                            let b = ix.by_dst.entry(*d).or_default();
                            if b.last() != Some(&(i as u32)) {
                                b.push(i as u32);
                            }
                        }
                    }
                    _ => ix.rest.push(i as u32),
                }
            }
        }
    }

    /// The index of the first matching rule.
    #[inline]
    pub fn find(&self, h: &Headers, meta: &Meta) -> Option<usize> {
        let class = packet_class(h).trailing_zeros() as usize;
        let ix = &self.index[class];
        let bucket: &[u32] = if ix.by_dport.is_empty() {
            &[]
        } else {
            match h.inner.l4 {
                L4::Tcp(t) => ix.by_dport.get(&t.dst).map_or(&[], Vec::as_slice),
                L4::Udp { dst, .. } => ix.by_dport.get(&dst).map_or(&[], Vec::as_slice),
                _ => &[],
            }
        };
        let dst_bucket: &[u32] = match h.inner.ip() {
            Some(ip) if !ix.by_dst.is_empty() => {
                ix.by_dst.get(&dst_key(ip.dst)).map_or(&[], Vec::as_slice)
            }
            _ => &[],
        };
        // Merge the three ascending lists (a rule is in one of them),
        // testing rules in match order.
        let rest = ix.rest.as_slice();
        let (mut a, mut b, mut c) = (0, 0, 0);
        loop {
            let x = bucket.get(a).copied().unwrap_or(u32::MAX);
            let y = dst_bucket.get(b).copied().unwrap_or(u32::MAX);
            let z = rest.get(c).copied().unwrap_or(u32::MAX);
            let i = x.min(y).min(z);
            if i == u32::MAX {
                return None;
            }
            if i == x {
                a += 1;
            } else if i == y {
                b += 1;
            } else {
                c += 1;
            }
            if self.entries[i as usize].rule.matches(h, meta) {
                return Some(i as usize);
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::headers::{parse, ParseMode};

    fn udp_frame() -> Vec<u8> {
        // Ethernet / IPv4 10.0.0.1 -> 10.0.0.2 / UDP 1 -> 53, checksum valid.
        let mut f = vec![0u8; 14 + 20 + 8];
        f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
        let ip = &mut f[14..34];
        ip[0] = 0x45;
        ip[2..4].copy_from_slice(&28u16.to_be_bytes());
        ip[8] = 64;
        ip[9] = 17;
        ip[12..16].copy_from_slice(&[10, 0, 0, 1]);
        ip[16..20].copy_from_slice(&[10, 0, 0, 2]);
        let c = crate::checksum::checksum(ip);
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        f[34..36].copy_from_slice(&1u16.to_be_bytes());
        f[36..38].copy_from_slice(&53u16.to_be_bytes());
        f[38..40].copy_from_slice(&8u16.to_be_bytes());
        f
    }

    #[test]
    fn index_never_hides_a_matching_rule() {
        let h = parse(&udp_frame(), ParseMode::Plain).unwrap().hdrs;
        let m = Meta::default();
        let rules = vec![
            (
                RuleId(1),
                Rule::new(1, Action::Deny).with(Predicate::Proto(vec![6])),
            ),
            (
                RuleId(2),
                Rule::new(2, Action::Deny).with(Predicate::TcpFlags { mask: 2, value: 2 }),
            ),
            (
                RuleId(3),
                Rule::new(3, Action::Deny).with(Predicate::ArpOp(1)),
            ),
            // Negations are not indexed on: they can match any class.
            (
                RuleId(4),
                Rule::new(4, Action::Allow)
                    .with(Predicate::Not(Box::new(Predicate::Proto(vec![17])))),
            ),
            (
                RuleId(5),
                Rule::new(5, Action::Allow).with(Predicate::DstPort(vec![PortRange::single(53)])),
            ),
            (RuleId(6), Rule::new(6, Action::Allow)),
        ];
        let t = RuleTable::from_rules(rules.clone());
        let got = t.find(&h, &m).map(|i| t.get(i).id);
        // The same answer as a plain scan in priority order.
        let scan = rules
            .iter()
            .find(|(_, r)| r.matches(&h, &m))
            .map(|(id, _)| *id);
        assert_eq!(got, scan);
        assert_eq!(got, Some(RuleId(5)));
        // The UDP packet's candidates skip the TCP- and ARP-only rules;
        // the port rule sits in its port's bucket.
        assert_eq!(t.index[1].rest, vec![3, 5]);
        assert_eq!(t.index[1].by_dport[&53], vec![4]);
    }

    #[test]
    fn address_rules_are_bucketed_by_destination_network() {
        let h = parse(&udp_frame(), ParseMode::Plain).unwrap().hdrs;
        let m = Meta::default();
        let net = |s: &str| Predicate::DstIp(vec![s.parse().unwrap()]);
        let mut rules: Vec<(RuleId, Rule)> = (0..1000)
            .map(|i| {
                let r = Rule::new(1, Action::Deny).with(net(&format!(
                    "172.{}.{}.0/24",
                    16 + i % 16,
                    i / 16
                )));
                (RuleId(i), r)
            })
            .collect();
        // A /8 cannot be bucketed: it stays in the scanned list.
        rules.push((
            RuleId(1000),
            Rule::new(2, Action::Deny).with(net("11.0.0.0/8")),
        ));
        rules.push((
            RuleId(1001),
            Rule::new(3, Action::Allow).with(net("10.0.0.0/16")),
        ));
        let t = RuleTable::from_rules(rules);
        assert_eq!(t.find(&h, &m).map(|i| t.get(i).id), Some(RuleId(1001)));
        let udp = &t.index[1];
        assert_eq!(udp.rest, vec![1000]);
        assert_eq!(
            udp.by_dst[&dst_key("10.0.0.2".parse().unwrap())],
            vec![1001]
        );
        // The 1000 /24s fall in 16 buckets; the packet's holds one rule.
        assert_eq!(udp.by_dst.len(), 17);
    }

    /// Many random rule-sets and packets: the index finds exactly the rule
    /// a plain scan in match order finds.
    #[test]
    fn index_agrees_with_a_scan() {
        let mut x: u64 = 88172645463325252;
        let mut rnd = move |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        let m = Meta::default();
        for _ in 0..300 {
            let mut rules = Vec::new();
            for id in 0..(1 + rnd(40)) {
                let mut r = Rule::new(rnd(8) as u16, Action::Allow);
                if rnd(2) == 0 {
                    r = r.with(Predicate::Proto(vec![[6, 17, 1][rnd(3) as usize]]));
                }
                if rnd(2) == 0 {
                    let a = 50 + rnd(10) as u16;
                    let ranges = if rnd(4) == 0 {
                        vec![PortRange::new(a, a + rnd(200) as u16).unwrap()]
                    } else {
                        vec![PortRange::single(a), PortRange::single(a + 2)]
                    };
                    r = r.with(Predicate::DstPort(ranges));
                }
                if rnd(3) == 0 {
                    r = r.with(Predicate::SrcPort(vec![PortRange::single(rnd(3) as u16)]));
                }
                if rnd(2) == 0 {
                    // Prefixes inside and outside the packets' 10.0.0.2,
                    // long enough to index and not.
                    let nets = [
                        "10.0.0.0/16",
                        "10.0.0.2/32",
                        "10.0.0.0/24",
                        "10.1.0.0/16",
                        "10.0.0.0/8",
                        "0.0.0.0/0",
                        "192.168.1.0/24",
                        "fd00::/16",
                        "fd00::/48",
                    ];
                    let n = 1 + rnd(2) as usize;
                    let set = (0..n)
                        .map(|_| nets[rnd(nets.len() as u64) as usize].parse().unwrap())
                        .collect();
                    r = r.with(Predicate::DstIp(set));
                }
                rules.push((RuleId(id), r));
            }
            let t = RuleTable::from_rules(rules.clone());
            let mut sorted = rules.clone();
            sorted.sort_by_key(|(_, r)| r.priority);
            for _ in 0..20 {
                let mut f = udp_frame();
                if rnd(2) == 0 {
                    // Make it a TCP segment: 20-byte header, data offset 5.
                    f.resize(14 + 20 + 20, 0);
                    f[23] = 6;
                    f[16..18].copy_from_slice(&40u16.to_be_bytes());
                    f[34 + 12] = 5 << 4;
                }
                f[34..36].copy_from_slice(&(rnd(3) as u16).to_be_bytes());
                f[36..38].copy_from_slice(&(45 + rnd(30) as u16).to_be_bytes());
                f[24..26].copy_from_slice(&[0, 0]);
                let c = crate::checksum::checksum(&f[14..34]);
                f[24..26].copy_from_slice(&c.to_be_bytes());
                let Ok(p) = parse(&f, ParseMode::Plain) else {
                    continue;
                };
                let got = t.find(&p.hdrs, &m).map(|i| t.get(i).id);
                let want = sorted
                    .iter()
                    .find(|(_, r)| r.matches(&p.hdrs, &m))
                    .map(|(id, _)| *id);
                assert_eq!(got, want);
            }
        }
    }
}
