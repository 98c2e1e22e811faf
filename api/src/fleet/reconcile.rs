//! A host's desired state as the fleet's store holds it, and the one way
//! it reaches the host: through [`Sluice`]'s own calls (`create_vnic`,
//! `set_v2p`, ...), which validate exactly as the API does and persist
//! to the state file, so that file stays a cache a host restarts from.
//!
//! Properties this module keeps:
//! - a key that does not parse or validate is refused alone: it is
//!   recorded with its reason (the host's status names it) and every
//!   other key keeps being applied; a refused update leaves the last
//!   good value in force;
//! - V2P and V2B are programmed only for VNIs this host has ports in;
//! - a re-list ([`Reconciler::resync`]) applies only the difference to
//!   what the host has: entries that stay the same are not touched, so
//!   the flows that use them keep going.

use crate::error::ApiError;
use crate::fleet::keys::{self, Key};
use crate::server::Sluice;
use crate::types::{
    CreateVnic, PortState, V2bRoute, V2bSelector, V2bSet, V2pMapping, V2pSelector, V2pSet,
};
use dataplane::IpCidr;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Arc;

/// A key the host did not apply, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Refusal {
    pub key: String,
    pub error: String,
}

/// One port's health in a host's status.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct PortHealth {
    pub name: String,
    pub state: PortState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `/sluice/v1/status/<host>`: what the host has applied.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct HostStatus {
    pub host: String,
    pub underlay_ip: Ipv6Addr,
    /// The etcd revision the host's state is at: every desired-state
    /// change up to it is applied (or refused, below).
    pub applied_revision: i64,
    pub ports: Vec<PortHealth>,
    pub v2p: usize,
    pub v2b: usize,
    pub refused: Vec<Refusal>,
}

/// A change read from the store.
#[derive(Clone, Debug)]
pub enum Event {
    Put { key: String, value: Vec<u8> },
    Delete { key: String },
}

/// The desired state of one host, and what applies it.
pub struct Reconciler {
    sluice: Arc<Sluice>,
    host: String,
    /// This host's ports, by name.
    ports: BTreeMap<String, CreateVnic>,
    /// The whole fleet's V2P and V2B, by VNI: a port that arrives for a
    /// new VNI needs them at once.
    v2p: BTreeMap<u32, BTreeMap<IpAddr, V2pMapping>>,
    v2b: BTreeMap<u32, BTreeMap<IpCidr, V2bRoute>>,
    refused: BTreeMap<String, String>,
    revision: i64,
    /// The VNIs of the host's ports (kept as the ports change: it is
    /// asked for every V2P write).
    local: BTreeSet<u32>,
}

/// What one key holds, read and checked on its own.
enum Item {
    V2p(V2pMapping),
    V2b(V2bRoute),
    Port(Box<CreateVnic>),
    /// Another host's port: not this host's business.
    Other,
}

impl Reconciler {
    pub fn new(sluice: Arc<Sluice>, host: &str) -> Reconciler {
        Reconciler {
            sluice,
            host: host.to_string(),
            ports: BTreeMap::new(),
            v2p: BTreeMap::new(),
            v2b: BTreeMap::new(),
            refused: BTreeMap::new(),
            revision: 0,
            local: BTreeSet::new(),
        }
        .with_local()
    }

    fn with_local(mut self) -> Self {
        self.local = self.local_vnis();
        self
    }

    pub fn sluice(&self) -> &Arc<Sluice> {
        &self.sluice
    }

    /// The revision everything is applied up to.
    pub fn revision(&self) -> i64 {
        self.revision
    }

    pub fn set_revision(&mut self, r: i64) {
        self.revision = self.revision.max(r);
    }

    pub fn refused(&self) -> &BTreeMap<String, String> {
        &self.refused
    }

    /// Reads one key: its layout, its JSON (unknown fields refused), that
    /// the value is the one its key names, and the API's checks.
    fn read(&self, key: &str, value: &[u8]) -> Result<Item, String> {
        fn json<T: serde::de::DeserializeOwned>(v: &[u8]) -> Result<T, String> {
            let de = &mut serde_json::Deserializer::from_slice(v);
            serde_path_to_error::deserialize(de).map_err(|e| {
                let path = e.path().to_string();
                if path == "." {
                    e.inner().to_string()
                } else {
                    format!("{path}: {}", e.inner())
                }
            })
        }
        match keys::parse(key)? {
            Key::V2p { vni, ip } => {
                let m: V2pMapping = json(value)?;
                if m.vni != vni || m.ip != ip {
                    return Err(format!(
                        "the mapping is for VNI {} {}, its key for VNI {} {ip}",
                        m.vni.get(),
                        m.ip,
                        vni.get()
                    ));
                }
                crate::validate::check_v2p(std::slice::from_ref(&m)).map_err(|e| e.to_string())?;
                Ok(Item::V2p(m))
            }
            Key::V2b { vni, prefix } => {
                let r: V2bRoute = json(value)?;
                if r.vni != vni || r.prefix != prefix {
                    return Err(format!(
                        "the route is for VNI {} {}, its key for VNI {} {prefix}",
                        r.vni.get(),
                        r.prefix,
                        vni.get()
                    ));
                }
                crate::validate::check_v2b(std::slice::from_ref(&r)).map_err(|e| e.to_string())?;
                Ok(Item::V2b(r))
            }
            Key::Port { host, .. } if host != self.host => Ok(Item::Other),
            Key::Port { name, .. } => {
                let p: CreateVnic = json(value)?;
                if p.config.name != name {
                    return Err(format!(
                        "config.name: '{}' is not the port its key names ('{name}')",
                        p.config.name
                    ));
                }
                crate::validate::check_port(&p.config, self.sluice_mtu())
                    .map_err(|e| e.to_string())?;
                Ok(Item::Port(Box::new(p)))
            }
        }
    }

    fn sluice_mtu(&self) -> Option<u16> {
        self.sluice.underlay_mtu()
    }

    /// Applies changes in the order the store made them. Consecutive V2P
    /// writes go to the host in one call.
    pub fn apply(&mut self, events: Vec<Event>, revision: i64) {
        let mut batch: Vec<V2pMapping> = Vec::new();
        for ev in events {
            match ev {
                Event::Put { key, value } => match self.read(&key, &value) {
                    Err(e) => {
                        self.flush_v2p(&mut batch);
                        self.refused.insert(key, e);
                    }
                    Ok(Item::Other) => {}
                    Ok(Item::V2p(m)) => {
                        self.refused.remove(&key);
                        let vni = m.vni.get();
                        self.v2p.entry(vni).or_default().insert(m.ip, m.clone());
                        if self.local(vni) {
                            batch.push(m);
                        }
                    }
                    Ok(Item::V2b(r)) => {
                        self.flush_v2p(&mut batch);
                        self.refused.remove(&key);
                        let vni = r.vni.get();
                        self.v2b.entry(vni).or_default().insert(r.prefix, r.clone());
                        if self.local(vni) {
                            self.try_apply(&key, |s| s.set_v2b(V2bSet { routes: vec![r] }, true));
                        }
                    }
                    Ok(Item::Port(p)) => {
                        self.flush_v2p(&mut batch);
                        self.refused.remove(&key);
                        let name = p.config.name.clone();
                        self.ports.insert(name.clone(), *p);
                        self.converge_port(&name, &key, true);
                    }
                },
                Event::Delete { key } => {
                    self.flush_v2p(&mut batch);
                    self.refused.remove(&key);
                    match keys::parse(&key) {
                        Ok(Key::V2p { vni, ip }) => {
                            let had = self
                                .v2p
                                .get_mut(&vni.get())
                                .and_then(|m| m.remove(&ip))
                                .is_some();
                            if had && self.local(vni.get()) {
                                let sel = V2pSelector {
                                    vni: Some(vni.get()),
                                    ip: Some(ip),
                                };
                                self.try_apply(&key, |s| s.clear_v2p(sel));
                            }
                        }
                        Ok(Key::V2b { vni, prefix }) => {
                            let had = self
                                .v2b
                                .get_mut(&vni.get())
                                .and_then(|m| m.remove(&prefix))
                                .is_some();
                            if had && self.local(vni.get()) {
                                let sel = V2bSelector {
                                    vni: Some(vni.get()),
                                    prefix: Some(prefix),
                                };
                                self.try_apply(&key, |s| s.clear_v2b(sel));
                            }
                        }
                        Ok(Key::Port { host, name }) if host == self.host => {
                            self.ports.remove(&name);
                            self.converge_port(&name, &key, true);
                        }
                        _ => {}
                    }
                }
            }
        }
        self.flush_v2p(&mut batch);
        self.set_revision(revision);
    }

    fn flush_v2p(&mut self, batch: &mut Vec<V2pMapping>) {
        if batch.is_empty() {
            return;
        }
        let mappings = std::mem::take(batch);
        // Each mapping was checked on its own; a batch fails only on a
        // full table, then each is tried alone so the refusal names it.
        if self
            .sluice
            .set_v2p(
                V2pSet {
                    mappings: mappings.clone(),
                },
                true,
            )
            .is_err()
        {
            for m in mappings {
                let key = keys::v2p(m.vni, m.ip);
                self.try_apply(&key, |s| s.set_v2p(V2pSet { mappings: vec![m] }, true));
            }
        }
    }

    /// Runs one call on the host; a failure is the key's refusal.
    fn try_apply<T>(&mut self, key: &str, f: impl FnOnce(&Sluice) -> Result<T, ApiError>) {
        if let Err(e) = f(&self.sluice) {
            self.refused.insert(key.to_string(), e.to_string());
        }
    }

    /// A VNI this host has a port in (running, as the host has it).
    fn local(&self, vni: u32) -> bool {
        self.local.contains(&vni)
    }

    fn local_vnis(&self) -> BTreeSet<u32> {
        self.sluice
            .port_configs()
            .iter()
            .map(|p| p.config.vni.get())
            .collect()
    }

    /// Makes one port on the host what the desired state says (created,
    /// reconfigured in place, replaced, or deleted), then the V2P/V2B of
    /// the VNIs it joined or left.
    fn converge_port(&mut self, name: &str, key: &str, tables: bool) {
        let before = self.local.clone();
        let have = self.sluice.port_config(name);
        let want = self.ports.get(name).cloned();
        match (have, want) {
            (None, None) => {}
            (Some(_), None) => self.try_apply(key, |s| s.delete_vnic(name)),
            (None, Some(w)) => self.try_apply(key, |s| s.create_vnic(w, true)),
            (Some(h), Some(w)) if same(&h, &w) => {}
            (Some(h), Some(w)) => {
                // In place when only what a live port can change differs
                // (its flows keep their state); otherwise a new port.
                let in_place = same(&h.guest, &w.guest)
                    && h.config.vni == w.config.vni
                    && h.config.limits == w.config.limits
                    && h.config.mtu == w.config.mtu;
                let r = if in_place {
                    self.sluice
                        .replace_config(name, w.config.clone())
                        .map(|_| ())
                } else {
                    Err(ApiError::Conflict(String::new()))
                };
                if r.is_err() {
                    self.try_apply(key, |s| {
                        s.delete_vnic(name)?;
                        s.create_vnic(w, true).map(|_| ())
                    });
                }
            }
        }
        if !tables {
            // The caller converges the tables of every VNI in one pass
            // (and learns the local VNIs once, after every port).
            return;
        }
        let after = self.local_vnis();
        self.local = after.clone();
        for vni in after.difference(&before) {
            self.program_vni(*vni);
        }
        for vni in before.difference(&after) {
            let v = Some(*vni);
            let _ = self.sluice.clear_v2p(V2pSelector { vni: v, ip: None });
            let _ = self.sluice.clear_v2b(V2bSelector {
                vni: v,
                prefix: None,
            });
        }
    }

    /// Programs a VNI's whole V2P and V2B (a port of it just arrived).
    fn program_vni(&mut self, vni: u32) {
        let mappings: Vec<V2pMapping> = self
            .v2p
            .get(&vni)
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default();
        let mut batch = mappings;
        self.flush_v2p(&mut batch);
        let routes: Vec<V2bRoute> = self
            .v2b
            .get(&vni)
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default();
        if !routes.is_empty()
            && self
                .sluice
                .set_v2b(
                    V2bSet {
                        routes: routes.clone(),
                    },
                    true,
                )
                .is_err()
        {
            for r in routes {
                let key = keys::v2b(r.vni, r.prefix);
                self.try_apply(&key, |s| s.set_v2b(V2bSet { routes: vec![r] }, true));
            }
        }
    }

    /// Replaces the whole desired state with a listing at `revision` and
    /// applies only the difference to what the host has (its ports, V2P
    /// and V2B, restored from its state file or applied before).
    pub fn resync(&mut self, listing: Vec<(String, Vec<u8>)>, revision: i64) {
        self.ports.clear();
        self.v2p.clear();
        self.v2b.clear();
        self.refused.clear();
        for (key, value) in listing {
            match self.read(&key, &value) {
                Err(e) => {
                    // As for a refused update: what the host has for the
                    // key stays in force.
                    self.keep_current(&key);
                    self.refused.insert(key, e);
                }
                Ok(Item::Other) => {}
                Ok(Item::V2p(m)) => {
                    self.v2p.entry(m.vni.get()).or_default().insert(m.ip, m);
                }
                Ok(Item::V2b(r)) => {
                    self.v2b.entry(r.vni.get()).or_default().insert(r.prefix, r);
                }
                Ok(Item::Port(p)) => {
                    self.ports.insert(p.config.name.clone(), *p);
                }
            }
        }
        // Ports first (gone, then changed or new), then the tables of the
        // VNIs that are local after them.
        let have: Vec<String> = self
            .sluice
            .port_configs()
            .iter()
            .map(|p| p.config.name.clone())
            .collect();
        let mut names: BTreeSet<String> = have.into_iter().collect();
        names.extend(self.ports.keys().cloned());
        for name in names {
            let key = keys::port(&self.host, &name);
            // Tables are done below, in one pass.
            self.converge_port(&name, &key, false);
        }
        self.local = self.local_vnis();
        self.converge_tables();
        self.revision = revision;
    }

    /// Keeps what the host has at `key` in the desired state (its last
    /// good value, when a re-list finds the key refused).
    fn keep_current(&mut self, key: &str) {
        match keys::parse(key) {
            Ok(Key::Port { host, name }) if host == self.host => {
                if let Some(p) = self.sluice.port_config(&name) {
                    self.ports.insert(name, p);
                }
            }
            Ok(Key::V2p { vni, ip }) => {
                if let Some((d, _)) = self.sluice.host().v2p.get(vni, ip) {
                    let m = V2pMapping {
                        vni,
                        ip,
                        guest_mac: vnic::config::MacAddr(d.guest_mac),
                        host: d.host,
                    };
                    self.v2p.entry(vni.get()).or_default().insert(ip, m);
                }
            }
            Ok(Key::V2b { vni, prefix }) => {
                let have = self.sluice.dump_v2b(Some(vni));
                if let Some(r) = have.into_iter().find(|r| r.prefix == prefix) {
                    self.v2b.entry(vni.get()).or_default().insert(prefix, r);
                }
            }
            _ => {}
        }
    }

    /// Makes the host's V2P and V2B the desired ones of its local VNIs:
    /// entries that differ are set, missing ones removed, equal ones left.
    fn converge_tables(&mut self) {
        let local = self.local.clone();
        let mut set = Vec::new();
        let mut want_ips: BTreeSet<(u32, IpAddr)> = BTreeSet::new();
        let have: BTreeMap<(u32, IpAddr), V2pMapping> = self
            .sluice
            .dump_v2p(None)
            .into_iter()
            .map(|m| ((m.vni.get(), m.ip), m))
            .collect();
        for vni in &local {
            for (ip, m) in self.v2p.get(vni).into_iter().flatten() {
                want_ips.insert((*vni, *ip));
                if have.get(&(*vni, *ip)) != Some(m) {
                    set.push(m.clone());
                }
            }
        }
        for (vni, ip) in have.keys() {
            if !want_ips.contains(&(*vni, *ip)) {
                let sel = V2pSelector {
                    vni: Some(*vni),
                    ip: Some(*ip),
                };
                let _ = self.sluice.clear_v2p(sel);
            }
        }
        self.flush_v2p(&mut set);

        let have: BTreeMap<(u32, IpCidr), V2bRoute> = self
            .sluice
            .dump_v2b(None)
            .into_iter()
            .map(|r| ((r.vni.get(), r.prefix), r))
            .collect();
        let mut want: BTreeSet<(u32, IpCidr)> = BTreeSet::new();
        let mut set = Vec::new();
        for vni in &local {
            for (prefix, r) in self.v2b.get(vni).into_iter().flatten() {
                want.insert((*vni, *prefix));
                if have.get(&(*vni, *prefix)) != Some(r) {
                    set.push(r.clone());
                }
            }
        }
        for r in set {
            let key = keys::v2b(r.vni, r.prefix);
            self.try_apply(&key, |s| s.set_v2b(V2bSet { routes: vec![r] }, true));
        }
        for (vni, prefix) in have.keys() {
            if !want.contains(&(*vni, *prefix)) {
                let sel = V2bSelector {
                    vni: Some(*vni),
                    prefix: Some(*prefix),
                };
                let _ = self.sluice.clear_v2b(sel);
            }
        }
    }

    /// The host's status document.
    pub fn status(&self) -> HostStatus {
        let ports = self
            .sluice
            .list_ports()
            .unwrap_or_default()
            .into_iter()
            .map(|p| PortHealth {
                name: p.name,
                state: p.state,
                error: p.guest_error,
            })
            .collect();
        HostStatus {
            host: self.host.clone(),
            underlay_ip: self.sluice.host().underlay_ip,
            applied_revision: self.revision,
            ports,
            v2p: self.sluice.host().v2p.len(),
            v2b: self.sluice.dump_v2b(None).len(),
            refused: self
                .refused
                .iter()
                .map(|(k, e)| Refusal {
                    key: k.clone(),
                    error: e.clone(),
                })
                .collect(),
        }
    }
}

/// The same document (by its JSON: the API's types do not all compare).
fn same<T: Serialize>(a: &T, b: &T) -> bool {
    serde_json::to_value(a).ok() == serde_json::to_value(b).ok()
}
