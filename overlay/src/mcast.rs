//! Multicast in a VPC: which overlay groups exist, who on this host
//! listens to them, and where a guest's multicast datagram goes next.
//!
//! Three host-wide tables, programmed by the control plane (there is no
//! IGMP/MLD snooping: a guest's membership reports are dropped by its
//! gateway, see `vnic::gateway::layer`):
//!
//! - **M2P** (multicast-to-physical): `(VNI, overlay group)` to the
//!   underlay IPv6 group (admin-local scope, `ff04::/16`, RFC 7346) that
//!   carries it between hosts whose underlay routes multicast.
//! - **subscriptions**: `(port, overlay group)` to an optional include-mode
//!   source list (RFC 3376 §3.1 INCLUDE): empty means any source.
//! - **forwarding**: `(VNI, overlay group)` to the next hops a datagram is
//!   sent to once each, with its [`Replication`]: `underlay` sends one
//!   Geneve packet to the M2P group address, `external` replicates it at
//!   the head end as unicast Geneve to the next hop (for underlays without
//!   multicast), `both` does both.
//!
//! Overlay groups are IPv4 `224.0.0.0/4` outside the link-local block
//! `224.0.0.0/24` (RFC 5771 §4: never forwarded), and IPv6 `ff00::/8`
//! outside link-local scope `ff02::/16` and the smaller interface- and
//! link-scoped ones (RFC 7346 §2: scopes 0-2 never leave a link). Multicast
//! never crosses VNIs: every key carries the VNI, and a datagram only
//! reaches ports of the sender's VNI.
//!
//! The tables are published together as one immutable [`McastTables`]
//! behind an [`ArcSwap`]: a worker loads the current snapshot without a
//! lock; the control plane builds a new one and swaps it in whole, so a
//! reader never sees an M2P entry without the forwarding entries that go
//! with it. They are small (bounded by the limits below), so a whole copy
//! per change costs little.

use arc_swap::ArcSwap;
use dataplane::Vni;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Arc;

/// M2P entries per host: far more groups than a host's guests use, small
/// enough that a whole-table copy per change stays cheap.
pub const M2P_LIMIT: usize = 4096;
/// Groups one port may subscribe to (IGMPv3 hosts rarely join dozens).
pub const SUBS_PER_PORT: usize = 64;
/// Sources in one include-mode filter.
pub const SOURCES_PER_SUB: usize = 16;
/// Forwarding entries (group, next hop) per host: a datagram's
/// replication is bounded by the next hops of its group.
pub const FWD_LIMIT: usize = 4096;
/// Next hops of one group: the head-end replication of one datagram.
pub const NEXT_HOPS_PER_GROUP: usize = 64;

/// The VNI the CLI assumes when `--vni` is not given (OPTE's
/// `DEFAULT_MULTICAST_VNI`: the fleet-wide multicast VPC).
pub const DEFAULT_MCAST_VNI: u32 = 77;

/// How a datagram reaches a next hop.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Replication {
    /// Head-end: unicast Geneve to the next hop's underlay address.
    External,
    /// One Geneve packet to the group's M2P underlay address.
    Underlay,
    /// Both of the above.
    Both,
}

impl Replication {
    pub fn name(self) -> &'static str {
        match self {
            Replication::External => "external",
            Replication::Underlay => "underlay",
            Replication::Both => "both",
        }
    }

    /// Sends unicast to the next hop.
    pub fn external(self) -> bool {
        matches!(self, Replication::External | Replication::Both)
    }

    /// Sends to the underlay group.
    pub fn underlay(self) -> bool {
        matches!(self, Replication::Underlay | Replication::Both)
    }
}

/// Why an address or an entry is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum McastError {
    #[error("{0} is not a multicast address (IPv4 224.0.0.0/4, IPv6 ff00::/8)")]
    NotMulticast(IpAddr),
    #[error(
        "{0} is link-local (224.0.0.0/24 and IPv6 scopes 0-2 such as ff02::/16 never leave a link)"
    )]
    LinkLocal(IpAddr),
    #[error("{0} is not an admin-local underlay group (ff04::/16)")]
    NotAdminLocal(Ipv6Addr),
    #[error("{0} is not a unicast source address")]
    BadSource(IpAddr),
    #[error("source {src} is IPv{} and group {group} is not", if src.is_ipv4() { 4 } else { 6 })]
    SourceFamily { src: IpAddr, group: IpAddr },
}

/// Checks an overlay group: multicast, and wider than link-local.
pub fn check_group(g: IpAddr) -> Result<(), McastError> {
    match g {
        IpAddr::V4(a) => {
            if !a.is_multicast() {
                return Err(McastError::NotMulticast(g));
            }
            let [a0, a1, a2, _] = a.octets();
            if (a0, a1, a2) == (224, 0, 0) {
                return Err(McastError::LinkLocal(g));
            }
        }
        IpAddr::V6(a) => {
            if !a.is_multicast() {
                return Err(McastError::NotMulticast(g));
            }
            // RFC 4291 §2.7: the scope is the low 4 bits of the second octet.
            if v6_scope(a) <= 2 {
                return Err(McastError::LinkLocal(g));
            }
        }
    }
    Ok(())
}

/// Checks an underlay group: IPv6 multicast of admin-local scope, the
/// scope RFC 7346 gives administratively configured groups.
pub fn check_underlay_group(u: Ipv6Addr) -> Result<(), McastError> {
    if u.segments()[0] == 0xff04 {
        Ok(())
    } else {
        Err(McastError::NotAdminLocal(u))
    }
}

/// Checks an include-mode source of `group`: unicast, same family.
pub fn check_source(group: IpAddr, s: IpAddr) -> Result<(), McastError> {
    let unicast = match s {
        IpAddr::V4(a) => !(a.is_unspecified() || a.is_multicast() || a.is_broadcast()),
        IpAddr::V6(a) => !(a.is_unspecified() || a.is_multicast() || a.is_loopback()),
    };
    if !unicast {
        return Err(McastError::BadSource(s));
    }
    if s.is_ipv4() != group.is_ipv4() {
        return Err(McastError::SourceFamily { src: s, group });
    }
    Ok(())
}

/// Whether a packet's destination is a multicast address at all.
pub fn is_multicast(a: IpAddr) -> bool {
    match a {
        IpAddr::V4(a) => a.is_multicast(),
        IpAddr::V6(a) => a.is_multicast(),
    }
}

fn v6_scope(a: Ipv6Addr) -> u8 {
    a.octets()[1] & 0x0f
}

/// The Ethernet destination of an IP multicast group: RFC 1112 §6.4
/// (`01:00:5e` and the low 23 bits) and RFC 2464 §7 (`33:33` and the low
/// 32 bits).
pub fn group_mac(g: IpAddr) -> [u8; 6] {
    match g {
        IpAddr::V4(a) => {
            let o = a.octets();
            [0x01, 0x00, 0x5e, o[1] & 0x7f, o[2], o[3]]
        }
        IpAddr::V6(a) => {
            let o = a.octets();
            [0x33, 0x33, o[12], o[13], o[14], o[15]]
        }
    }
}

/// Offsets in a Geneve-over-IPv6 frame as sluice builds it (Ethernet
/// without a tag, IPv6 without extension headers, UDP).
const ETH_DST: core::ops::Range<usize> = 0..6;
const OUTER_DST: core::ops::Range<usize> = 38..54;
const OUTER_UDP_CSUM: core::ops::Range<usize> = 60..62;

/// Re-addresses one copy of a Geneve frame to another underlay
/// destination (an underlay group, or a next hop's unicast address for
/// head-end replication): the outer IPv6 destination, the outer
/// Ethernet destination, and the outer UDP checksum updated
/// incrementally (RFC 1624), since the destination is in the pseudo
/// header (RFC 8200 §8.1). The checksum must be a complete one (not an
/// offload's partial sum). Returns `false`, leaving the frame as it was,
/// when it is not such a frame.
pub fn retarget(frame: &mut [u8], dst: Ipv6Addr, dst_mac: [u8; 6]) -> bool {
    let is_udp6 = frame.len() >= OUTER_UDP_CSUM.end
        && frame[12..14] == [0x86, 0xdd]
        && frame[14] >> 4 == 6
        && frame[20] == 17;
    if !is_udp6 {
        return false;
    }
    let new = dst.octets();
    let delta = dataplane::checksum::CsumDelta::between(&frame[OUTER_DST], &new);
    let field = u16::from_be_bytes([frame[OUTER_UDP_CSUM.start], frame[OUTER_UDP_CSUM.start + 1]]);
    frame[OUTER_UDP_CSUM].copy_from_slice(&delta.apply_udp(field).to_be_bytes());
    frame[OUTER_DST].copy_from_slice(&new);
    frame[ETH_DST].copy_from_slice(&dst_mac);
    true
}

/// The Ethernet destination of an underlay group (RFC 2464 §7).
pub fn underlay_mac(u: Ipv6Addr) -> [u8; 6] {
    group_mac(IpAddr::V6(u))
}

/// One port's membership of a group.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Membership {
    /// Include-mode sources; empty: every source.
    pub sources: Vec<IpAddr>,
}

impl Membership {
    /// Whether a datagram from `src` passes the filter.
    pub fn admits(&self, src: IpAddr) -> bool {
        self.sources.is_empty() || self.sources.contains(&src)
    }
}

/// A local port listening to a group: its name and filter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    pub port: String,
    pub membership: Membership,
}

/// One snapshot of the three tables, as the workers read it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct McastTables {
    /// `(VNI, overlay group)` to underlay group.
    pub m2p: BTreeMap<(Vni, IpAddr), Ipv6Addr>,
    /// `(VNI, overlay group)` to the local ports listening to it.
    pub members: BTreeMap<(Vni, IpAddr), Vec<Member>>,
    /// `(VNI, overlay group)` to next hops and how each is reached.
    pub fwd: BTreeMap<(Vni, IpAddr), BTreeMap<Ipv6Addr, Replication>>,
    /// Underlay group to the `(VNI, overlay group)` it carries, for
    /// inbound demux (derived from `m2p`).
    pub by_underlay: BTreeMap<Ipv6Addr, Vec<(Vni, IpAddr)>>,
}

impl McastTables {
    /// Fills the derived index from `m2p`.
    pub fn index(mut self) -> McastTables {
        self.by_underlay.clear();
        for (&k, &u) in &self.m2p {
            self.by_underlay.entry(u).or_default().push(k);
        }
        self
    }

    /// The local ports a datagram of `vni` from `src` to `group` is
    /// delivered to, source filter applied; `except` (the sender's own
    /// port) is left out. Also says whether any port listened at all,
    /// so a caller tells "no subscribers" from "filtered".
    pub fn receivers<'a>(
        &'a self,
        vni: Vni,
        group: IpAddr,
        src: IpAddr,
        except: Option<&'a str>,
    ) -> (impl Iterator<Item = &'a str> + 'a, bool) {
        let ms = self
            .members
            .get(&(vni, group))
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        let any = ms.iter().any(|m| Some(m.port.as_str()) != except);
        let it = ms
            .iter()
            .filter(move |m| Some(m.port.as_str()) != except && m.membership.admits(src))
            .map(|m| m.port.as_str());
        (it, any)
    }

    /// Where a datagram of `vni` to `group` leaves this host: the
    /// underlay group (at most once, whatever the number of next hops
    /// asking for it) and the unicast next hops.
    pub fn next_hops(&self, vni: Vni, group: IpAddr) -> Egress {
        let mut e = Egress::default();
        if let Some(hops) = self.fwd.get(&(vni, group)) {
            for (&hop, &r) in hops {
                if r.underlay() {
                    e.underlay = self.m2p.get(&(vni, group)).copied();
                    e.underlay_missing |= e.underlay.is_none();
                }
                if r.external() {
                    e.unicast.push(hop);
                }
            }
        }
        e
    }

    /// Whether an underlay group carries any group of `vni` (an inbound
    /// packet to it is ours to deliver).
    pub fn carries(&self, underlay: Ipv6Addr, vni: Vni) -> bool {
        self.by_underlay
            .get(&underlay)
            .is_some_and(|ks| ks.iter().any(|k| k.0 == vni))
    }
}

/// The copies a datagram leaves the host as.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Egress {
    /// The underlay group, sent to once.
    pub underlay: Option<Ipv6Addr>,
    /// A next hop asked for underlay replication and the group has no
    /// M2P entry: counted as a drop of that copy.
    pub underlay_missing: bool,
    /// Unicast next hops (head-end replication).
    pub unicast: Vec<Ipv6Addr>,
}

/// The host's multicast tables, shared by every worker (`Arc<Mcast>`).
#[derive(Default)]
pub struct Mcast {
    tables: ArcSwap<McastTables>,
    /// Bumped by every publish: a port's multicast flow depends on it
    /// (its outer destination is the M2P group), so a change of the
    /// tables re-checks exactly the multicast flows.
    version: dataplane::transform::Version,
}

impl Mcast {
    pub fn new() -> Mcast {
        Mcast::default()
    }

    /// The current snapshot (no lock).
    pub fn load(&self) -> Arc<McastTables> {
        self.tables.load_full()
    }

    /// Replaces every table at once.
    pub fn publish(&self, t: McastTables) {
        self.tables.store(Arc::new(t.index()));
        self.version.bump();
    }

    /// A dependency on the tables as they are now.
    pub fn dep(&self) -> dataplane::Dep {
        self.version.dep()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn vni(v: u32) -> Vni {
        Vni::new(v).unwrap()
    }

    #[test]
    fn groups() {
        for ok in [
            "224.0.1.1",
            "239.255.255.255",
            "ff04::1",
            "ff05::2",
            "ff0e::1",
            "ff15::9",
        ] {
            assert_eq!(check_group(ip(ok)), Ok(()), "{ok}");
        }
        for ll in [
            "224.0.0.1",
            "224.0.0.251",
            "ff02::1",
            "ff01::1",
            "ff12::fb",
            "ff00::1",
        ] {
            assert_eq!(
                check_group(ip(ll)),
                Err(McastError::LinkLocal(ip(ll))),
                "{ll}"
            );
        }
        for no in ["10.0.0.1", "240.0.0.1", "255.255.255.255", "fe80::1", "::"] {
            assert_eq!(
                check_group(ip(no)),
                Err(McastError::NotMulticast(ip(no))),
                "{no}"
            );
        }
        let msg = check_group(ip("ff02::1")).unwrap_err().to_string();
        assert!(
            msg.contains("ff02::1") && msg.contains("link-local"),
            "{msg}"
        );
    }

    #[test]
    fn underlay_groups() {
        assert!(check_underlay_group("ff04::1:2".parse().unwrap()).is_ok());
        for bad in ["ff05::1", "ff02::1", "fd00::1", "ff14::1"] {
            let a: Ipv6Addr = bad.parse().unwrap();
            assert_eq!(check_underlay_group(a), Err(McastError::NotAdminLocal(a)));
        }
    }

    #[test]
    fn sources() {
        let g = ip("239.1.1.1");
        assert!(check_source(g, ip("10.0.0.5")).is_ok());
        assert!(matches!(
            check_source(g, ip("fd00::5")),
            Err(McastError::SourceFamily { .. })
        ));
        assert_eq!(
            check_source(g, ip("239.1.1.2")),
            Err(McastError::BadSource(ip("239.1.1.2")))
        );
        assert_eq!(
            check_source(g, ip("0.0.0.0")),
            Err(McastError::BadSource(ip("0.0.0.0")))
        );
    }

    #[test]
    fn macs() {
        // RFC 1112 §6.4: the high bit of the second octet is not mapped.
        assert_eq!(group_mac(ip("239.129.2.3")), [1, 0, 0x5e, 1, 2, 3]);
        assert_eq!(group_mac(ip("ff04::1:2:3")), [0x33, 0x33, 0, 2, 0, 3]);
    }

    fn tables() -> McastTables {
        let (v, g) = (vni(7), ip("239.1.1.1"));
        let mut t = McastTables::default();
        t.m2p.insert((v, g), "ff04::7".parse().unwrap());
        t.members.insert(
            (v, g),
            vec![
                Member {
                    port: "a".into(),
                    membership: Membership::default(),
                },
                Member {
                    port: "b".into(),
                    membership: Membership {
                        sources: vec![ip("10.0.0.9")],
                    },
                },
            ],
        );
        let hops = t.fwd.entry((v, g)).or_default();
        hops.insert("fd00::b".parse().unwrap(), Replication::Underlay);
        hops.insert("fd00::c".parse().unwrap(), Replication::Both);
        hops.insert("fd00::d".parse().unwrap(), Replication::External);
        t.index()
    }

    #[test]
    fn receivers_filter_by_source_and_sender() {
        let t = tables();
        let (v, g) = (vni(7), ip("239.1.1.1"));
        let got = |src: &str, except| {
            let (it, any) = t.receivers(v, g, ip(src), except);
            (it.collect::<Vec<_>>(), any)
        };
        assert_eq!(got("10.0.0.9", None), (vec!["a", "b"], true));
        assert_eq!(got("10.0.0.8", None), (vec!["a"], true));
        assert_eq!(got("10.0.0.8", Some("a")), (vec![], true));
        // Another VNI's members are never receivers.
        let (it, any) = t.receivers(vni(8), g, ip("10.0.0.9"), None);
        assert_eq!((it.count(), any), (0, false));
    }

    #[test]
    fn egress_sends_the_underlay_copy_once() {
        let t = tables();
        let e = t.next_hops(vni(7), ip("239.1.1.1"));
        assert_eq!(e.underlay, Some("ff04::7".parse().unwrap()));
        assert!(!e.underlay_missing);
        let hops: Vec<Ipv6Addr> = ["fd00::c", "fd00::d"].map(|h| h.parse().unwrap()).into();
        assert_eq!(e.unicast, hops);
        assert_eq!(t.next_hops(vni(8), ip("239.1.1.1")), Egress::default());
        assert!(t.carries("ff04::7".parse().unwrap(), vni(7)));
        assert!(!t.carries("ff04::7".parse().unwrap(), vni(8)));
    }

    #[test]
    fn underlay_without_m2p_is_reported() {
        let mut t = tables();
        t.m2p.clear();
        let e = t.index().next_hops(vni(7), ip("239.1.1.1"));
        assert_eq!(e.underlay, None);
        assert!(e.underlay_missing);
    }

    fn geneve_frame() -> Vec<u8> {
        let inner = [0u8; 60];
        sluice_test_support::Geneve::new(
            "fd00:99::a".parse().unwrap(),
            "fd00:99::b".parse().unwrap(),
            7,
        )
        .wrap(&inner)
    }

    #[test]
    fn a_retargeted_copy_keeps_a_valid_checksum() {
        let mut f = geneve_frame();
        sluice_test_support::assert_checksums(&f);
        let group: Ipv6Addr = "ff04::7".parse().unwrap();
        assert!(retarget(&mut f, group, underlay_mac(group)));
        assert_eq!(&f[38..54], &group.octets());
        assert_eq!(&f[0..6], &[0x33, 0x33, 0, 0, 0, 7]);
        sluice_test_support::assert_checksums(&f);
        // Back to a unicast next hop: still right (RFC 1624 both ways).
        let hop: Ipv6Addr = "fd00:99::c".parse().unwrap();
        assert!(retarget(&mut f, hop, [2, 0, 0, 0, 0, 0x20]));
        assert_eq!(&f[38..54], &hop.octets());
        sluice_test_support::assert_checksums(&f);
    }

    #[test]
    fn retarget_refuses_what_is_not_a_tunnel() {
        let mut short = vec![0u8; 40];
        assert!(!retarget(&mut short, "ff04::1".parse().unwrap(), [0; 6]));
        let mut f = geneve_frame();
        f[12] = 0x08;
        let before = f.clone();
        assert!(!retarget(&mut f, "ff04::1".parse().unwrap(), [0; 6]));
        assert_eq!(f, before);
    }

    #[test]
    fn publish_swaps_whole() {
        let m = Mcast::new();
        assert!(m.load().m2p.is_empty());
        m.publish(tables());
        assert_eq!(m.load().by_underlay.len(), 1);
    }
}
