//! What `sluiceadm --etcd` does to the fleet's store: read a part of the
//! desired state, write back what a verb changed (guarded: a key changed
//! by someone else in between fails the write, nothing is half done per
//! transaction), and read the hosts' status for `fleet-status`.
//!
//! The verbs themselves run against a staging host (see
//! `cli::fleet`): the desired state is validated by the API's own code.

use crate::fleet::agent::{self, HostRecord};
use crate::fleet::keys::{self, Key};
use crate::fleet::reconcile::{HostStatus, Refusal};
use crate::types::{CreateVnic, StateDoc, V2bRoute, V2pMapping};
use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, GetOptions, SortOrder, SortTarget, Txn, TxnOp,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// etcd refuses a transaction of more operations than this (its
/// `--max-txn-ops` default).
pub const MAX_TXN_OPS: usize = 128;

/// A connection to the fleet's store, for a program that is not async.
pub struct Store {
    rt: tokio::runtime::Runtime,
    client: Client,
}

/// Desired state as read, with each key's revision (to guard the write).
#[derive(Default)]
pub struct Loaded {
    pub revision: i64,
    /// key → (value, mod revision)
    pub ports: BTreeMap<String, (CreateVnic, i64)>,
    pub v2p: BTreeMap<String, (V2pMapping, i64)>,
    pub v2b: BTreeMap<String, (V2bRoute, i64)>,
}

/// What a write did.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Written {
    pub puts: usize,
    pub deletes: usize,
    pub revision: i64,
}

/// One host in `fleet-status`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct HostRow {
    pub host: String,
    pub underlay_ip: Option<std::net::Ipv6Addr>,
    /// A live status (its lease held): the host's agent is connected.
    pub alive: bool,
    pub applied_revision: Option<i64>,
    /// Revisions of desired state the host has not applied yet.
    pub lag: Option<i64>,
    pub desired_ports: usize,
    pub status: Option<HostStatus>,
}

/// `sluiceadm fleet-status`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FleetStatus {
    /// The store's revision now.
    pub revision: i64,
    /// The last revision that changed desired state (what hosts must
    /// reach; a deletion is not counted until a later write).
    pub desired_revision: i64,
    pub hosts: Vec<HostRow>,
    /// Port keys for a host that never joined the fleet: no host will
    /// apply them.
    pub unknown_host_keys: Vec<Refusal>,
}

fn e(what: &'static str) -> impl Fn(etcd_client::Error) -> String {
    move |err| format!("{what}: {err}")
}

impl Store {
    pub fn connect(endpoints: &[String]) -> Result<Store, String> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|err| format!("no runtime: {err}"))?;
        let opts = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(3))
            .with_timeout(Duration::from_secs(10));
        let client = rt
            .block_on(Client::connect(endpoints, Some(opts)))
            .map_err(|err| format!("connecting to etcd at {}: {err}", endpoints.join(",")))?;
        Ok(Store { rt, client })
    }

    pub fn client(&mut self) -> &mut Client {
        &mut self.client
    }

    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    /// Writes one key as is (tools and tests: nothing is checked).
    /// Returns the revision of the write.
    pub fn put_raw(&mut self, key: &str, value: impl Into<Vec<u8>>) -> Result<i64, String> {
        let c = &mut self.client;
        let r = self
            .rt
            .block_on(c.put(key, value.into(), None))
            .map_err(e("writing"))?;
        Ok(r.header().map(|h| h.revision()).unwrap_or(0))
    }

    /// Writes many keys, [`MAX_TXN_OPS`] to a transaction. Returns the
    /// revision of the last.
    pub fn put_many(&mut self, kvs: Vec<(String, Vec<u8>)>) -> Result<i64, String> {
        let mut rev = 0;
        for chunk in kvs.chunks(MAX_TXN_OPS) {
            let ops: Vec<TxnOp> = chunk
                .iter()
                .map(|(k, v)| TxnOp::put(k.as_str(), v.clone(), None))
                .collect();
            let c = &mut self.client;
            let r = self
                .rt
                .block_on(c.txn(Txn::new().and_then(ops)))
                .map_err(e("writing"))?;
            rev = r.header().map(|h| h.revision()).unwrap_or(0);
        }
        Ok(rev)
    }

    pub fn delete_raw(&mut self, key: &str) -> Result<i64, String> {
        let c = &mut self.client;
        let r = self
            .rt
            .block_on(c.delete(key, None))
            .map_err(e("deleting"))?;
        Ok(r.header().map(|h| h.revision()).unwrap_or(0))
    }

    /// The store's revision now.
    pub fn revision(&mut self) -> Result<i64, String> {
        let c = &mut self.client;
        let r = self
            .rt
            .block_on(c.get(keys::ROOT, Some(GetOptions::new().with_count_only())))
            .map_err(e("reading the revision"))?;
        Ok(r.header().map(|h| h.revision()).unwrap_or(0))
    }

    /// Compacts the store's history up to `revision` (a watch from
    /// before it then fails and its watcher must list again).
    pub fn compact(&mut self, revision: i64) -> Result<(), String> {
        let c = &mut self.client;
        self.rt
            .block_on(c.compact(
                revision,
                Some(etcd_client::CompactionOptions::new().with_physical()),
            ))
            .map_err(e("compacting"))?;
        Ok(())
    }

    /// The member answering and the cluster's leader, by member id.
    pub fn member_and_leader(&mut self) -> Option<(u64, u64)> {
        let c = &mut self.client;
        let r = self.rt.block_on(c.status()).ok()?;
        Some((r.header()?.member_id(), r.leader()))
    }

    /// Whether `host` has joined the fleet (its sluiced wrote its record).
    pub fn host_known(&mut self, host: &str) -> Result<bool, String> {
        let c = &mut self.client;
        let r = self
            .rt
            .block_on(c.get(
                keys::host_record(host),
                Some(GetOptions::new().with_count_only()),
            ))
            .map_err(e("reading the host record"))?;
        Ok(r.count() > 0)
    }

    /// The fleet's V2P and V2B, and `host`'s ports if one is named. Keys
    /// that do not parse are left out (the hosts refuse them too).
    pub fn load(&mut self, host: Option<&str>) -> Result<Loaded, String> {
        let c = &mut self.client;
        let (kvs, revision) = self.rt.block_on(agent::list(c))?;
        // The revision of each key, read again at the same revision
        // (the listing keeps only keys and values).
        let mut out = Loaded {
            revision,
            ..Loaded::default()
        };
        let mods = self.rt.block_on(mod_revisions(c, revision))?;
        for (key, value) in kvs {
            let m = mods.get(&key).copied().unwrap_or(0);
            match keys::parse(&key) {
                Ok(Key::V2p { .. }) => {
                    if let Ok(v) = serde_json::from_slice(&value) {
                        out.v2p.insert(key, (v, m));
                    }
                }
                Ok(Key::V2b { .. }) => {
                    if let Ok(v) = serde_json::from_slice(&value) {
                        out.v2b.insert(key, (v, m));
                    }
                }
                Ok(Key::Port { host: h, .. }) if Some(h.as_str()) == host => {
                    if let Ok(v) = serde_json::from_slice(&value) {
                        out.ports.insert(key, (v, m));
                    }
                }
                _ => {}
            }
        }
        Ok(out)
    }

    /// Writes the difference between what was loaded and `after` (a
    /// staging host's state): each transaction checks that the keys it
    /// writes are still at the revision they were read at.
    pub fn write(
        &mut self,
        host: Option<&str>,
        before: &Loaded,
        after: &StateDoc,
    ) -> Result<Written, String> {
        // (key, Some(value) | None: delete, expected mod revision)
        let mut ops: Vec<(String, Option<Vec<u8>>, i64)> = Vec::new();
        let to_json = |v: &dyn erased::Ser| v.json();
        let mut want: BTreeMap<String, Vec<u8>> = BTreeMap::new();
        for m in &after.v2p {
            want.insert(keys::v2p(m.vni, m.ip), to_json(m));
        }
        for r in &after.v2b {
            want.insert(keys::v2b(r.vni, r.prefix), to_json(r));
        }
        if let Some(h) = host {
            for p in &after.ports {
                want.insert(keys::port(h, &p.config.name), to_json(p));
            }
        }
        let mut had: BTreeMap<&str, (Vec<u8>, i64)> = BTreeMap::new();
        for (k, (v, m)) in &before.v2p {
            had.insert(k, (to_json(v), *m));
        }
        for (k, (v, m)) in &before.v2b {
            had.insert(k, (to_json(v), *m));
        }
        for (k, (v, m)) in &before.ports {
            had.insert(k, (to_json(v), *m));
        }
        for (k, v) in &want {
            match had.get(k.as_str()) {
                Some((old, _)) if old == v => {}
                Some((_, m)) => ops.push((k.clone(), Some(v.clone()), *m)),
                None => ops.push((k.clone(), Some(v.clone()), 0)),
            }
        }
        for (k, (_, m)) in &had {
            if !want.contains_key(*k) {
                ops.push((k.to_string(), None, *m));
            }
        }
        let mut w = Written::default();
        for chunk in ops.chunks(MAX_TXN_OPS) {
            let guards: Vec<Compare> = chunk
                .iter()
                .map(|(k, _, m)| Compare::mod_revision(k.as_str(), CompareOp::Equal, *m))
                .collect();
            let writes: Vec<TxnOp> = chunk
                .iter()
                .map(|(k, v, _)| match v {
                    Some(v) => TxnOp::put(k.as_str(), v.clone(), None),
                    None => TxnOp::delete(k.as_str(), None),
                })
                .collect();
            let txn = Txn::new().when(guards).and_then(writes);
            let c = &mut self.client;
            let r = self
                .rt
                .block_on(c.txn(txn))
                .map_err(e("writing the desired state"))?;
            if !r.succeeded() {
                return Err(format!(
                    "the desired state changed while this command ran ({} of {} change(s) written); run it again",
                    w.puts + w.deletes,
                    ops.len()
                ));
            }
            w.revision = r.header().map(|h| h.revision()).unwrap_or(0);
            for (_, v, _) in chunk {
                if v.is_some() {
                    w.puts += 1;
                } else {
                    w.deletes += 1;
                }
            }
        }
        Ok(w)
    }

    /// Hosts, their applied revision and lag.
    pub fn fleet_status(&mut self) -> Result<FleetStatus, String> {
        let c = &mut self.client;
        let rt = &self.rt;
        let prefix = |p: &str| GetOptions::new().with_range(keys::range_end(p));
        let records = rt
            .block_on(c.get(keys::HOSTS, Some(prefix(keys::HOSTS))))
            .map_err(e("reading the hosts"))?;
        let revision = records.header().map(|h| h.revision()).unwrap_or(0);
        let statuses = rt
            .block_on(c.get(keys::STATUS, Some(prefix(keys::STATUS))))
            .map_err(e("reading the hosts' status"))?;
        let latest = rt
            .block_on(
                c.get(
                    keys::DESIRED,
                    Some(
                        prefix(keys::DESIRED)
                            .with_sort(SortTarget::Mod, SortOrder::Descend)
                            .with_limit(1)
                            .with_keys_only(),
                    ),
                ),
            )
            .map_err(e("reading the desired state's revision"))?;
        let desired_revision = latest
            .kvs()
            .first()
            .map(|kv| kv.mod_revision())
            .unwrap_or(0);
        let port_keys = rt
            .block_on(c.get(
                keys::DESIRED_HOSTS,
                Some(prefix(keys::DESIRED_HOSTS).with_keys_only()),
            ))
            .map_err(e("reading the ports"))?;
        let mut rows: BTreeMap<String, HostRow> = BTreeMap::new();
        for kv in records.kvs() {
            let k = String::from_utf8_lossy(kv.key());
            let Some(h) = k.strip_prefix(keys::HOSTS) else {
                continue;
            };
            let rec: Option<HostRecord> = serde_json::from_slice(kv.value()).ok();
            rows.insert(
                h.to_string(),
                HostRow {
                    host: h.to_string(),
                    underlay_ip: rec.map(|r| r.underlay_ip),
                    alive: false,
                    applied_revision: None,
                    lag: None,
                    desired_ports: 0,
                    status: None,
                },
            );
        }
        for kv in statuses.kvs() {
            let k = String::from_utf8_lossy(kv.key());
            let Some(h) = k.strip_prefix(keys::STATUS) else {
                continue;
            };
            let Some(row) = rows.get_mut(h) else { continue };
            if let Ok(st) = serde_json::from_slice::<HostStatus>(kv.value()) {
                row.alive = true;
                row.applied_revision = Some(st.applied_revision);
                row.lag = Some((desired_revision - st.applied_revision).max(0));
                row.status = Some(st);
            }
        }
        let mut unknown = Vec::new();
        for kv in port_keys.kvs() {
            let k = String::from_utf8_lossy(kv.key()).into_owned();
            match keys::parse(&k) {
                Ok(Key::Port { host, .. }) => match rows.get_mut(&host) {
                    Some(r) => r.desired_ports += 1,
                    None => unknown.push(Refusal {
                        error: format!("no host '{host}' has joined the fleet"),
                        key: k,
                    }),
                },
                Err(err) => unknown.push(Refusal { key: k, error: err }),
                _ => {}
            }
        }
        Ok(FleetStatus {
            revision,
            desired_revision,
            hosts: rows.into_values().collect(),
            unknown_host_keys: unknown,
        })
    }
}

/// Each desired key's mod revision at `revision`.
async fn mod_revisions(c: &mut Client, revision: i64) -> Result<BTreeMap<String, i64>, String> {
    let end = keys::range_end(keys::DESIRED);
    let mut start = keys::DESIRED.as_bytes().to_vec();
    let mut out = BTreeMap::new();
    loop {
        let o = GetOptions::new()
            .with_range(end.clone())
            .with_keys_only()
            .with_limit(10_000)
            .with_revision(revision);
        let r = c
            .get(start.clone(), Some(o))
            .await
            .map_err(e("reading the keys' revisions"))?;
        let mut last = None;
        for kv in r.kvs() {
            out.insert(
                String::from_utf8_lossy(kv.key()).into_owned(),
                kv.mod_revision(),
            );
            last = Some(kv.key().to_vec());
        }
        match (r.more(), last) {
            (true, Some(mut l)) => {
                l.push(0);
                start = l;
            }
            _ => return Ok(out),
        }
    }
}

/// JSON of any of the value types, for comparing and writing.
mod erased {
    pub trait Ser {
        fn json(&self) -> Vec<u8>;
    }
    impl<T: serde::Serialize> Ser for T {
        fn json(&self) -> Vec<u8> {
            serde_json::to_vec(self).unwrap_or_default()
        }
    }
}
