//! The host's multicast state (see [`overlay::mcast`]): M2P, each port's
//! subscriptions, the forwarding table.
//!
//! The desired state lives here as ordered maps; every change builds the
//! next state whole, checks it (the same checks restore and replay run),
//! publishes it to the workers as one [`McastTables`] snapshot, and
//! persists it as one journal record ([`Change::Mcast`]): the tables are
//! small (bounded by the limits in [`overlay::mcast`]), so a record of
//! the whole is simpler than one per kind and never torn between them.
//! A subscription belongs to its port: deleting the port removes it.

use super::*;
use overlay::mcast::{Mcast, McastTables, Member, Membership};

/// The multicast desired state, by key.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct McastState {
    m2p: BTreeMap<(Vni, IpAddr), Ipv6Addr>,
    /// `(port, group)` to include-mode sources (empty: any).
    subs: BTreeMap<(String, IpAddr), Vec<IpAddr>>,
    fwd: BTreeMap<(Vni, IpAddr, Ipv6Addr), Replication>,
}

impl McastState {
    fn of(doc: McastDoc) -> McastState {
        McastState {
            m2p: doc
                .m2p
                .into_iter()
                .map(|m| ((m.vni, m.group), m.underlay))
                .collect(),
            subs: doc
                .subs
                .into_iter()
                .map(|s| ((s.port, s.group), s.sources))
                .collect(),
            fwd: doc
                .fwd
                .into_iter()
                .map(|f| ((f.vni, f.group, f.next_hop), f.replication))
                .collect(),
        }
    }

    /// The document, without subscriptions of ports not in `ports` (a
    /// port deleted since: its subscriptions went with it).
    pub(crate) fn doc(&self, ports: &BTreeMap<String, CreateVnic>) -> McastDoc {
        McastDoc {
            m2p: self
                .m2p
                .iter()
                .map(|(&(vni, group), &underlay)| M2pMapping {
                    vni,
                    group,
                    underlay,
                })
                .collect(),
            subs: self
                .subs
                .iter()
                .filter(|((p, _), _)| ports.contains_key(p))
                .map(|((port, group), sources)| McastSub {
                    port: port.clone(),
                    group: *group,
                    sources: sources.clone(),
                })
                .collect(),
            fwd: self
                .fwd
                .iter()
                .map(|(&(vni, group, next_hop), &replication)| McastFwdEntry {
                    vni,
                    group,
                    next_hop,
                    replication,
                })
                .collect(),
        }
    }

    /// The workers' snapshot: members by the VNI of their port.
    fn tables(&self, ports: &BTreeMap<String, CreateVnic>) -> McastTables {
        let mut t = McastTables {
            m2p: self.m2p.clone(),
            ..Default::default()
        };
        for ((port, group), sources) in &self.subs {
            let Some(p) = ports.get(port) else { continue };
            t.members
                .entry((p.config.vni, *group))
                .or_default()
                .push(Member {
                    port: port.clone(),
                    membership: Membership {
                        sources: sources.clone(),
                    },
                });
        }
        for (&(vni, group, hop), &r) in &self.fwd {
            t.fwd.entry((vni, group)).or_default().insert(hop, r.into());
        }
        t
    }

    pub(crate) fn sizes(&self) -> (usize, usize, usize) {
        (self.m2p.len(), self.subs.len(), self.fwd.len())
    }
}

/// The workers' tables for a state document's multicast state and ports
/// (what restore publishes; `sluiceadm replay` builds its host with it).
pub(crate) fn tables_of(doc: &McastDoc, ports: &[CreateVnic]) -> McastTables {
    let ports: BTreeMap<String, CreateVnic> = ports
        .iter()
        .map(|p| (p.config.name.clone(), p.clone()))
        .collect();
    McastState::of(doc.clone()).tables(&ports)
}

impl Sluice {
    /// The multicast tables the workers read.
    pub fn mcast_tables(&self) -> &Arc<Mcast> {
        &self.mcast_live
    }

    /// Makes one change of the multicast state: `f` edits a copy and says
    /// how many entries it changed; the copy is checked, published and
    /// (with `persist`) saved, or nothing changes.
    fn change_mcast(
        &self,
        persist: bool,
        f: impl FnOnce(&mut McastState, &BTreeMap<String, CreateVnic>) -> Result<usize, ApiError>,
    ) -> Result<usize, ApiError> {
        let ports = lock(&self.ports);
        // The new state is in place before it is recorded: a record that
        // compacts the journal writes a snapshot of the whole state,
        // this change included (and takes `mcast` itself, so it is not
        // held across the record).
        let (before, doc, n) = {
            let mut state = lock(&self.mcast);
            let mut next = state.clone();
            let n = f(&mut next, &ports)?;
            if next == *state {
                return Ok(0);
            }
            let doc = next.doc(&ports);
            crate::validate::check_mcast_limits(&doc)?;
            self.mcast_live.publish(next.tables(&ports));
            (std::mem::replace(&mut *state, next), doc, n)
        };
        if persist {
            if let Err(e) = self.record(&ports, || Change::Mcast { mcast: doc }) {
                let mut state = lock(&self.mcast);
                self.mcast_live.publish(before.tables(&ports));
                *state = before;
                return Err(e);
            }
        }
        Ok(n)
    }

    /// Restores the saved multicast state (after the ports).
    pub(super) fn restore_mcast(&self, doc: McastDoc) -> Result<(), ApiError> {
        self.change_mcast(false, |s, _| {
            *s = McastState::of(doc);
            Ok(0)
        })
        .map(|_| ())
    }

    /// A deleted port's subscriptions go with it (its journal record
    /// says so on replay: see `journal.rs`).
    pub(super) fn mcast_forget_port(&self, ports: &BTreeMap<String, CreateVnic>, name: &str) {
        let mut state = lock(&self.mcast);
        state.subs.retain(|(p, _), _| p != name);
        self.mcast_live.publish(state.tables(ports));
    }

    pub(super) fn mcast_doc(&self, ports: &BTreeMap<String, CreateVnic>) -> McastDoc {
        lock(&self.mcast).doc(ports)
    }

    pub(super) fn mcast_sizes(&self) -> (usize, usize, usize) {
        lock(&self.mcast).sizes()
    }

    // ---- M2P ----

    pub fn set_m2p(&self, req: M2pSet, persist: bool) -> Result<usize, ApiError> {
        crate::validate::check_m2p(&req.mappings)?;
        self.change_mcast(persist, |s, _| {
            let mut n = 0;
            for m in req.mappings {
                n += usize::from(s.m2p.insert((m.vni, m.group), m.underlay) != Some(m.underlay));
            }
            Ok(n)
        })
    }

    pub fn clear_m2p(&self, sel: M2pSelector) -> Result<usize, ApiError> {
        let vni = vni_field(sel.vni)?;
        self.change_mcast(true, |s, _| {
            let before = s.m2p.len();
            s.m2p
                .retain(|&(v, g), _| v != vni || sel.group.is_some_and(|sg| sg != g));
            Ok(before - s.m2p.len())
        })
    }

    pub fn dump_m2p(&self, vni: Option<Vni>) -> Vec<M2pMapping> {
        let ports = lock(&self.ports);
        let mut d = self.mcast_doc(&ports).m2p;
        d.retain(|m| vni.is_none_or(|v| v == m.vni));
        d
    }

    // ---- subscriptions ----

    /// The port joins a group (or changes its source filter); returns
    /// the port's subscriptions.
    pub fn mcast_subscribe(
        &self,
        port: &str,
        req: McastSubscribe,
    ) -> Result<Vec<McastSub>, ApiError> {
        crate::validate::check_mcast_sub(req.group, &req.sources)?;
        self.change_mcast(true, |s, ports| {
            if !ports.contains_key(port) {
                return Err(no_port(port));
            }
            let key = (port.to_string(), req.group);
            Ok(usize::from(
                s.subs.insert(key, req.sources.clone()).as_ref() != Some(&req.sources),
            ))
        })?;
        self.dump_mcast_subs(Some(port))
    }

    /// The port leaves one group, or (without) every group.
    pub fn mcast_unsubscribe(&self, port: &str, sel: McastUnsubscribe) -> Result<usize, ApiError> {
        self.change_mcast(true, |s, ports| {
            if !ports.contains_key(port) {
                return Err(no_port(port));
            }
            let before = s.subs.len();
            s.subs
                .retain(|(p, g), _| p != port || sel.group.is_some_and(|sg| sg != *g));
            Ok(before - s.subs.len())
        })
    }

    pub fn dump_mcast_subs(&self, port: Option<&str>) -> Result<Vec<McastSub>, ApiError> {
        let ports = lock(&self.ports);
        if let Some(p) = port {
            if !ports.contains_key(p) {
                return Err(no_port(p));
            }
        }
        let mut d = self.mcast_doc(&ports).subs;
        d.retain(|s| port.is_none_or(|p| p == s.port));
        Ok(d)
    }

    // ---- forwarding ----

    pub fn set_mcast_fwd(&self, e: McastFwdEntry) -> Result<usize, ApiError> {
        crate::validate::check_mcast_fwd(&e)?;
        self.change_mcast(true, |s, _| {
            let underlay = matches!(e.replication, Replication::Underlay | Replication::Both);
            if underlay && !s.m2p.contains_key(&(e.vni, e.group)) {
                return Err(ApiError::Conflict(format!(
                    "group {} of VNI {} has no M2P mapping, so it has no underlay group to \
                     replicate to: set-m2p first, or use --replication external",
                    e.group,
                    e.vni.get()
                )));
            }
            let key = (e.vni, e.group, e.next_hop);
            Ok(usize::from(
                s.fwd.insert(key, e.replication) != Some(e.replication),
            ))
        })
    }

    pub fn clear_mcast_fwd(&self, sel: McastFwdSelector) -> Result<usize, ApiError> {
        let vni = vni_field(sel.vni)?;
        let group = sel
            .group
            .ok_or_else(|| ApiError::field("group", "required"))?;
        self.change_mcast(true, |s, _| {
            let before = s.fwd.len();
            s.fwd.retain(|&(v, g, h), _| {
                v != vni || g != group || sel.next_hop.is_some_and(|sh| sh != h)
            });
            Ok(before - s.fwd.len())
        })
    }

    pub fn dump_mcast_fwd(&self, vni: Option<Vni>) -> Vec<McastFwdEntry> {
        let ports = lock(&self.ports);
        let mut d = self.mcast_doc(&ports).fwd;
        d.retain(|f| vni.is_none_or(|v| v == f.vni));
        d
    }
}
