//! The virtual-to-physical (V2P) table: where a guest address lives.
//!
//! `(VNI, guest IP)` maps to [`PhysDest`]: the guest's MAC and the
//! underlay IPv6 address of the host it runs on. One table serves every
//! port of a host (`Arc<V2p>`). Workers read it on their slow paths (a
//! flow's first packet); the control plane writes it.
//!
//! # Concurrency: lock-free reads, copy-on-write shards
//!
//! The table is [`V2P_SHARDS`] shards, chosen by a hash of the key, each
//! an immutable `HashMap` behind an [`ArcSwap`]. A read loads the shard's
//! current map (no lock, no write to shared memory beyond `arc-swap`'s
//! per-thread debt slots) and looks the key up. A write clones the one
//! shard it touches, changes the copy and publishes it with one atomic
//! store; readers see the old map or the new one, never a mix. Writers are
//! serialised by a mutex that readers never take. At the 1 M entries the
//! table is sized for, a shard holds about 4 000 entries, so a single
//! update copies about 1/256 of the table; [`V2p::set_many`] and
//! [`V2p::clear_vni`] copy each shard they touch once, however many of its
//! entries change.
//!
//! Memory: an entry is a 24-byte key, a 32-byte value (MAC, host, version
//! handle) and a 32-byte version allocation, plus the hash table's slack:
//! roughly 100-130 bytes, so 1 M entries take about 120 MB, and a bulk
//! update that touches every shard briefly holds two copies.
//!
//! # Versions
//!
//! Every entry carries a [`Version`]; [`V2p::get`] returns a [`Dep`] on it
//! for the transform built from the mapping. Changing an entry (a `set`
//! with a different value) or removing it bumps its old version after the
//! new shard is published, so flows compiled from the old mapping are
//! re-checked at their next packet. A `set` with the value already there
//! changes nothing and bumps nothing. A changed entry gets a fresh
//! `Version`: a version is bumped at most once, when its value is retired,
//! which lets a lookup prove that the `Dep` it returns was taken while the
//! value was current: it reads the version again after taking the `Dep`,
//! and if it is still unbumped, any later change makes the `Dep` stale; if
//! it was bumped meanwhile, the writer had already published the new
//! shard, and the lookup retries on it. Without that, a lookup racing a
//! writer could pair the old value with the already-bumped counter, and a
//! flow would keep the stale mapping forever.

use crate::{mac_serde, mix64, stale_dep, LIVE, READ_RETRIES};
use arc_swap::ArcSwap;
use dataplane::flow::FlowHashBuilder;
use dataplane::headers::Mac;
use dataplane::{Dep, Version, Vni};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// Number of copy-on-write shards.
pub const V2P_SHARDS: usize = 256;

/// The number of entries a host's table is sized for.
pub const DEFAULT_V2P_LIMIT: usize = 1 << 20;

/// Where a guest address lives: the guest's MAC and its host's underlay
/// address (the outer IPv6 destination of a packet to it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PhysDest {
    #[serde(with = "mac_serde")]
    pub guest_mac: Mac,
    pub host: Ipv6Addr,
}

/// One mapping, as [`V2p::dump`] lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct V2pEntry {
    pub vni: Vni,
    pub ip: IpAddr,
    #[serde(with = "mac_serde")]
    pub guest_mac: Mac,
    pub host: Ipv6Addr,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum V2pError {
    #[error("V2P table is full: it holds at most {limit} mappings")]
    Full { limit: usize },
}

type Key = (Vni, IpAddr);

#[derive(Clone, Debug)]
struct Entry {
    dest: PhysDest,
    version: Version,
}

/// Seeded word-wise hashing (the flow tables'): SipHash was most of a
/// lookup, and every new flow makes one or two. The keys are the control
/// plane's; packets only look them up.
type Shard = HashMap<Key, Entry, FlowHashBuilder>;

/// The V2P table. See the module documentation.
pub struct V2p {
    shards: Box<[ArcSwap<Shard>]>,
    len: AtomicUsize,
    limit: usize,
    writer: Mutex<()>,
}

impl core::fmt::Debug for V2p {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("V2p")
            .field("len", &self.len())
            .field("limit", &self.limit)
            .finish_non_exhaustive()
    }
}

impl Default for V2p {
    fn default() -> Self {
        V2p::new(DEFAULT_V2P_LIMIT)
    }
}

/// The shard of a key: the top byte of a mix of its bits.
#[inline]
fn shard_of(vni: Vni, ip: IpAddr) -> usize {
    let (lo, hi, fam) = match ip {
        IpAddr::V4(a) => (u64::from(u32::from(a)), 0, 4),
        IpAddr::V6(a) => {
            let b = u128::from(a);
            (b as u64, (b >> 64) as u64, 6)
        }
    };
    let x = lo ^ mix64(hi ^ (u64::from(vni.get()) << 8) ^ fam);
    (mix64(x) >> 56) as usize
}

impl V2p {
    /// An empty table that refuses to hold more than `limit` mappings.
    pub fn new(limit: usize) -> Self {
        V2p {
            shards: (0..V2P_SHARDS)
                .map(|_| ArcSwap::from_pointee(Shard::with_hasher(FlowHashBuilder::random())))
                .collect(),
            len: AtomicUsize::new(0),
            limit,
            writer: Mutex::new(()),
        }
    }

    #[inline]
    fn shard(&self, vni: Vni, ip: IpAddr) -> &ArcSwap<Shard> {
        // shard_of is below 256, the number of shards.
        &self.shards[shard_of(vni, ip)]
    }

    fn lock(&self) -> MutexGuard<'_, ()> {
        // The guarded state is published atomically, shard by shard; a
        // writer that panicked left nothing half-done to protect.
        self.writer.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The number of mappings.
    pub fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The most mappings the table holds.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Where `ip` in `vni` lives, and a [`Dep`] that stays current until
    /// the mapping changes or goes. Lock-free.
    pub fn get(&self, vni: Vni, ip: IpAddr) -> Option<(PhysDest, Dep)> {
        let shard = self.shard(vni, ip);
        let key = (vni, ip);
        for _ in 0..READ_RETRIES {
            let map = shard.load();
            let e = map.get(&key)?;
            let dep = e.version.dep();
            // Still live after the Dep was taken: the value was current
            // then, and any change from now on makes the Dep stale. If it
            // was retired meanwhile, the writer published its new shard
            // before bumping, so the next load sees it.
            if e.version.current() == LIVE {
                return Some((e.dest, dep));
            }
        }
        let map = shard.load();
        map.get(&key).map(|e| (e.dest, stale_dep()))
    }

    /// Whether a packet with inner source `ip` in `vni` may come from the
    /// underlay address `host`: V2P must say `ip` lives on `host`.
    pub fn is_valid_source(&self, vni: Vni, ip: IpAddr, host: Ipv6Addr) -> bool {
        self.source_dep(vni, ip, host).is_some()
    }

    /// As [`V2p::is_valid_source`], with a [`Dep`] for the flow that
    /// accepted the packet: it goes stale when the mapping moves.
    pub fn source_dep(&self, vni: Vni, ip: IpAddr, host: Ipv6Addr) -> Option<Dep> {
        self.get(vni, ip)
            .and_then(|(d, dep)| (d.host == host).then_some(dep))
    }

    /// Maps `ip` in `vni` to `dest`. Setting the value already there is a
    /// no-op; a new mapping past the limit is refused.
    pub fn set(&self, vni: Vni, ip: IpAddr, dest: PhysDest) -> Result<(), V2pError> {
        let _w = self.lock();
        let shard = self.shard(vni, ip);
        let cur = shard.load_full();
        let key = (vni, ip);
        match cur.get(&key) {
            Some(e) if e.dest == dest => return Ok(()),
            Some(_) => {}
            None if self.len() >= self.limit => return Err(V2pError::Full { limit: self.limit }),
            None => {}
        }
        let mut next = Shard::clone(&cur);
        let old = next.insert(
            key,
            Entry {
                dest,
                version: Version::new(),
            },
        );
        shard.store(Arc::new(next));
        match old {
            Some(old) => old.version.bump(),
            None => {
                self.len.fetch_add(1, Ordering::Relaxed);
            }
        }
        Ok(())
    }

    /// Sets many mappings, copying each shard it touches once. All or
    /// nothing: if the new mappings would pass the limit, nothing changes.
    /// A key given twice takes its last value. Returns how many mappings
    /// were added or changed (identical ones are not counted).
    pub fn set_many(
        &self,
        items: impl IntoIterator<Item = (Vni, IpAddr, PhysDest)>,
    ) -> Result<usize, V2pError> {
        let mut by_shard: Vec<HashMap<Key, PhysDest>> = Vec::new();
        by_shard.resize_with(V2P_SHARDS, HashMap::new);
        for (vni, ip, dest) in items {
            if let Some(m) = by_shard.get_mut(shard_of(vni, ip)) {
                m.insert((vni, ip), dest);
            }
        }

        let _w = self.lock();
        // First pass: what changes, without touching the table.
        let mut added = 0usize;
        let mut plan = Vec::new();
        for (i, batch) in by_shard.into_iter().enumerate() {
            if batch.is_empty() {
                continue;
            }
            let Some(shard) = self.shards.get(i) else {
                continue;
            };
            let cur = shard.load_full();
            let mut changes = Vec::new();
            for (key, dest) in batch {
                match cur.get(&key) {
                    Some(e) if e.dest == dest => {}
                    Some(_) => changes.push((key, dest)),
                    None => {
                        added += 1;
                        changes.push((key, dest));
                    }
                }
            }
            if !changes.is_empty() {
                plan.push((shard, cur, changes));
            }
        }
        if self.len().saturating_add(added) > self.limit {
            return Err(V2pError::Full { limit: self.limit });
        }

        // Second pass: publish every shard, then retire the old versions.
        let mut changed = 0;
        let mut retired = Vec::new();
        for (shard, cur, changes) in plan {
            let mut next = Shard::clone(&cur);
            next.reserve(changes.len());
            changed += changes.len();
            for (key, dest) in changes {
                let e = Entry {
                    dest,
                    version: Version::new(),
                };
                if let Some(old) = next.insert(key, e) {
                    retired.push(old.version);
                }
            }
            shard.store(Arc::new(next));
        }
        self.len.fetch_add(added, Ordering::Relaxed);
        for v in retired {
            v.bump();
        }
        Ok(changed)
    }

    /// Removes the mapping of `ip` in `vni`; false if there was none.
    pub fn clear(&self, vni: Vni, ip: IpAddr) -> bool {
        let _w = self.lock();
        let shard = self.shard(vni, ip);
        let cur = shard.load_full();
        let key = (vni, ip);
        if !cur.contains_key(&key) {
            return false;
        }
        let mut next = Shard::clone(&cur);
        let old = next.remove(&key);
        shard.store(Arc::new(next));
        if let Some(old) = old {
            old.version.bump();
            self.len.fetch_sub(1, Ordering::Relaxed);
        }
        true
    }

    /// Removes every mapping in `vni` (a VPC deleted). Scans the whole
    /// table; copies only the shards that hold some of the VNI's mappings.
    /// Returns how many went.
    pub fn clear_vni(&self, vni: Vni) -> usize {
        let _w = self.lock();
        let mut retired = Vec::new();
        for shard in self.shards.iter() {
            let cur = shard.load_full();
            if !cur.keys().any(|k| k.0 == vni) {
                continue;
            }
            let mut next = Shard::with_capacity_and_hasher(cur.len(), *cur.hasher());
            for (k, e) in cur.iter() {
                if k.0 == vni {
                    retired.push(e.version.clone());
                } else {
                    next.insert(*k, e.clone());
                }
            }
            shard.store(Arc::new(next));
        }
        self.len.fetch_sub(retired.len(), Ordering::Relaxed);
        for v in &retired {
            v.bump();
        }
        retired.len()
    }

    /// The mappings of one VNI, or all, sorted by VNI then address. Each
    /// shard is read at one instant; a dump taken while a writer works may
    /// show some of a bulk update and not the rest.
    pub fn dump(&self, vni: Option<Vni>) -> Vec<V2pEntry> {
        let mut out = Vec::new();
        for shard in self.shards.iter() {
            let map = shard.load();
            out.extend(
                map.iter()
                    .filter(|(k, _)| vni.is_none_or(|v| v == k.0))
                    .map(|(k, e)| V2pEntry {
                        vni: k.0,
                        ip: k.1,
                        guest_mac: e.dest.guest_mac,
                        host: e.dest.host,
                    }),
            );
        }
        out.sort_unstable_by_key(|a| (a.vni, a.ip));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn vni(v: u32) -> Vni {
        Vni::new(v).unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn dest(n: u32) -> PhysDest {
        let b = n.to_be_bytes();
        PhysDest {
            guest_mac: [0x02, 0x08, b[0], b[1], b[2], b[3]],
            host: Ipv6Addr::new(0xfd00, 0x99, 0, 0, 0, 0, (n >> 16) as u16, n as u16),
        }
    }

    fn v4(n: u32) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(0x0a00_0000 | n))
    }

    #[test]
    fn set_get_clear_dump() {
        let t = V2p::new(100);
        assert!(t.is_empty());
        t.set(vni(7), ip("10.0.0.5"), dest(1)).unwrap();
        t.set(vni(7), ip("fd00::5"), dest(2)).unwrap();
        t.set(vni(8), ip("10.0.0.5"), dest(3)).unwrap();
        assert_eq!(t.len(), 3);
        assert_eq!(t.get(vni(7), ip("10.0.0.5")).unwrap().0, dest(1));
        assert_eq!(t.get(vni(7), ip("fd00::5")).unwrap().0, dest(2));
        assert_eq!(t.get(vni(8), ip("10.0.0.5")).unwrap().0, dest(3));
        assert!(t.get(vni(9), ip("10.0.0.5")).is_none());
        assert!(t.get(vni(7), ip("10.0.0.6")).is_none());

        t.set(vni(7), ip("10.0.0.5"), dest(4)).unwrap();
        assert_eq!(t.get(vni(7), ip("10.0.0.5")).unwrap().0, dest(4));
        assert_eq!(t.len(), 3);

        let all = t.dump(None);
        let keys: Vec<_> = all.iter().map(|e| (e.vni.get(), e.ip)).collect();
        assert_eq!(
            keys,
            vec![(7, ip("10.0.0.5")), (7, ip("fd00::5")), (8, ip("10.0.0.5"))]
        );
        assert_eq!(all[0].guest_mac, dest(4).guest_mac);
        assert_eq!(all[0].host, dest(4).host);
        assert_eq!(t.dump(Some(vni(8))).len(), 1);
        let json = serde_json::to_value(&all[2]).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "vni": 8, "ip": "10.0.0.5",
                "guest_mac": "02:08:00:00:00:03", "host": "fd00:99::3"
            })
        );
        let back: V2pEntry = serde_json::from_value(json).unwrap();
        assert_eq!(back, all[2]);

        assert!(t.clear(vni(7), ip("10.0.0.5")));
        assert!(!t.clear(vni(7), ip("10.0.0.5")));
        assert!(t.get(vni(7), ip("10.0.0.5")).is_none());
        assert_eq!(t.len(), 2);
        assert_eq!(t.clear_vni(vni(7)), 1);
        assert_eq!(t.clear_vni(vni(7)), 0);
        assert_eq!(t.len(), 1);
        assert_eq!(t.dump(None).len(), 1);
    }

    #[test]
    fn valid_source() {
        let t = V2p::new(10);
        t.set(vni(7), ip("10.0.0.5"), dest(1)).unwrap();
        let h = dest(1).host;
        assert!(t.is_valid_source(vni(7), ip("10.0.0.5"), h));
        assert!(!t.is_valid_source(vni(7), ip("10.0.0.5"), dest(2).host));
        assert!(!t.is_valid_source(vni(8), ip("10.0.0.5"), h));
        assert!(!t.is_valid_source(vni(7), ip("10.0.0.6"), h));
        let dep = t.source_dep(vni(7), ip("10.0.0.5"), h).unwrap();
        t.set(vni(7), ip("10.0.0.5"), dest(2)).unwrap();
        assert!(!dep.is_current());
        assert!(!t.is_valid_source(vni(7), ip("10.0.0.5"), h));
    }

    #[test]
    fn bulk_set_100k() {
        let t = V2p::new(DEFAULT_V2P_LIMIT);
        let n = 100_000u32;
        let items = (0..n).map(|i| (vni(1 + i % 3), v4(i), dest(i)));
        assert_eq!(t.set_many(items).unwrap(), n as usize);
        assert_eq!(t.len(), n as usize);
        for i in (0..n).step_by(997) {
            assert_eq!(t.get(vni(1 + i % 3), v4(i)).unwrap().0, dest(i), "{i}");
            assert!(t.get(vni(1 + (i + 1) % 3), v4(i)).is_none());
        }
        // Again: nothing changes, nothing counted.
        let items = (0..n).map(|i| (vni(1 + i % 3), v4(i), dest(i)));
        assert_eq!(t.set_many(items).unwrap(), 0);
        assert_eq!(t.len(), n as usize);
        // Every shard got some.
        assert!(t.shards.iter().all(|s| !s.load().is_empty()));
        let d = t.dump(Some(vni(2)));
        assert_eq!(d.len(), (n / 3) as usize);
        assert!(d.windows(2).all(|w| w[0].ip < w[1].ip));
        assert_eq!(t.clear_vni(vni(2)), (n / 3) as usize);
        assert_eq!(t.len(), (n - n / 3) as usize);
    }

    #[test]
    fn set_many_last_value_wins() {
        let t = V2p::new(10);
        let n = t
            .set_many([
                (vni(1), v4(1), dest(1)),
                (vni(1), v4(1), dest(2)),
                (vni(1), v4(2), dest(3)),
            ])
            .unwrap();
        assert_eq!(n, 2);
        assert_eq!(t.len(), 2);
        assert_eq!(t.get(vni(1), v4(1)).unwrap().0, dest(2));
    }

    #[test]
    fn limit_is_enforced_and_set_many_is_all_or_nothing() {
        let t = V2p::new(10);
        for i in 0..10 {
            t.set(vni(1), v4(i), dest(i)).unwrap();
        }
        assert_eq!(
            t.set(vni(1), v4(10), dest(10)),
            Err(V2pError::Full { limit: 10 })
        );
        assert_eq!(
            V2pError::Full { limit: 10 }.to_string(),
            "V2P table is full: it holds at most 10 mappings"
        );
        // Changing an existing entry at the limit is fine.
        t.set(vni(1), v4(3), dest(33)).unwrap();
        t.clear(vni(1), v4(0));
        let dep = t.get(vni(1), v4(5)).unwrap().1;
        // One free slot, two new keys, one change: nothing applied.
        let r = t.set_many([
            (vni(1), v4(5), dest(55)),
            (vni(1), v4(20), dest(20)),
            (vni(1), v4(21), dest(21)),
        ]);
        assert_eq!(r, Err(V2pError::Full { limit: 10 }));
        assert_eq!(t.len(), 9);
        assert_eq!(t.get(vni(1), v4(5)).unwrap().0, dest(5));
        assert!(dep.is_current());
        assert!(t.get(vni(1), v4(20)).is_none());
        assert!(t.get(vni(1), v4(21)).is_none());
        // One new key fits.
        assert_eq!(
            t.set_many([(vni(1), v4(5), dest(55)), (vni(1), v4(20), dest(20))]),
            Ok(2)
        );
        assert_eq!(t.len(), 10);
        assert!(!dep.is_current());
        // A limit of zero refuses everything, without panicking.
        let z = V2p::new(0);
        assert!(z.set(vni(1), v4(1), dest(1)).is_err());
        assert!(z.set_many([(vni(1), v4(1), dest(1))]).is_err());
        assert_eq!(z.set_many([]), Ok(0));
    }

    #[test]
    fn versions() {
        let t = V2p::new(10);
        let (a, b) = (v4(1), v4(2));
        t.set(vni(1), a, dest(1)).unwrap();
        t.set(vni(1), b, dest(2)).unwrap();
        let (_, da) = t.get(vni(1), a).unwrap();
        let (_, db) = t.get(vni(1), b).unwrap();
        assert!(da.is_current() && db.is_current());

        // Same value: no bump.
        t.set(vni(1), a, dest(1)).unwrap();
        t.set_many([(vni(1), a, dest(1))]).unwrap();
        assert!(da.is_current());

        // New value: bumped; the unrelated entry is not.
        t.set(vni(1), a, dest(3)).unwrap();
        assert!(!da.is_current());
        assert!(db.is_current());
        let (d, da2) = t.get(vni(1), a).unwrap();
        assert_eq!(d, dest(3));
        assert!(da2.is_current());
        assert_ne!(da, da2);

        // Clear: bumped; re-created: a fresh, current version.
        t.clear(vni(1), a);
        assert!(!da2.is_current());
        assert!(db.is_current());
        t.set(vni(1), a, dest(3)).unwrap();
        let (_, da3) = t.get(vni(1), a).unwrap();
        assert!(da3.is_current());
        assert!(!da2.is_current());

        // clear_vni bumps what it removes, nothing else.
        t.set(vni(2), a, dest(9)).unwrap();
        let (_, other) = t.get(vni(2), a).unwrap();
        t.clear_vni(vni(1));
        assert!(!da3.is_current() && !db.is_current());
        assert!(other.is_current());
    }

    #[test]
    fn concurrent_readers_see_old_or_new() {
        const KEYS: u32 = 64;
        let t = Arc::new(V2p::new(1000));
        // Some bulk so that shards are not trivially small.
        t.set_many((100..600).map(|i| (vni(1), v4(i), dest(i))))
            .unwrap();
        let old = |i: u32| dest(i);
        let new = |i: u32| dest(10_000 + i);
        for i in 0..KEYS {
            t.set(vni(1), v4(i), old(i)).unwrap();
        }
        // Readers and the writer start together; the writer yields between
        // updates so that they interleave with the lookups.
        let start = Arc::new(std::sync::Barrier::new(3));
        let readers: Vec<_> = (0..2u32)
            .map(|r| {
                let t = t.clone();
                let start = start.clone();
                std::thread::spawn(move || {
                    start.wait();
                    let mut last: Vec<Option<(PhysDest, Dep)>> = vec![None; KEYS as usize];
                    let mut x = 0x9e37_79b9u32 ^ r;
                    for _ in 0..200_000 {
                        x ^= x << 13;
                        x ^= x >> 17;
                        x ^= x << 5;
                        let i = x % KEYS;
                        let (d, dep) = t.get(vni(1), v4(i)).expect("never missing");
                        assert!(d == old(i) || d == new(i), "key {i}: {d:?}");
                        last[i as usize] = Some((d, dep));
                    }
                    last
                })
            })
            .collect();
        start.wait();
        for n in 0..1000u32 {
            std::thread::yield_now();
            let i = n % KEYS;
            let d = if (n / KEYS).is_multiple_of(2) {
                new(i)
            } else {
                old(i)
            };
            t.set(vni(1), v4(i), d).unwrap();
        }
        for r in readers {
            let last = r.join().expect("reader panicked");
            // The invariant flows rely on: a Dep that is still current
            // came with the value the table holds now.
            for (i, seen) in last.into_iter().enumerate() {
                if let Some((d, dep)) = seen {
                    let now = t.get(vni(1), v4(i as u32)).unwrap().0;
                    assert!(!dep.is_current() || d == now, "key {i}");
                }
            }
        }
        assert_eq!(t.len(), 500 + KEYS as usize);
    }

    #[test]
    fn shard_spread() {
        let mut counts = [0u32; V2P_SHARDS];
        for i in 0..25_600 {
            counts[shard_of(vni(5), v4(i))] += 1;
            counts[shard_of(
                vni(5),
                IpAddr::V6(Ipv6Addr::from(0xfd00_u128 << 112 | u128::from(i))),
            )] += 1;
        }
        assert!(
            counts.iter().all(|&c| (100..=320).contains(&c)),
            "{counts:?}"
        );
    }
}

#[cfg(test)]
mod million {
    use super::*;

    /// The table is sized for a million mappings: they fit, stay
    /// reachable, and the limit still holds one past them.
    #[test]
    fn a_million_entries_fit() {
        let n = 1_000_000u32;
        let t = V2p::new(n as usize);
        let vni = Vni::new(42).unwrap();
        let ip = |i: u32| IpAddr::V4(core::net::Ipv4Addr::from(0x0a00_0000 | i));
        let dest = |i: u32| PhysDest {
            guest_mac: [0xa8, 0x40, 0x25, (i >> 16) as u8, (i >> 8) as u8, i as u8],
            host: core::net::Ipv6Addr::from(0xfd00_u128 << 112 | u128::from(i % 1000)),
        };
        assert_eq!(
            t.set_many((0..n).map(|i| (vni, ip(i), dest(i)))).unwrap(),
            n as usize
        );
        assert_eq!(t.len(), n as usize);
        for i in (0..n).step_by(9973) {
            assert_eq!(t.get(vni, ip(i)).unwrap().0, dest(i));
        }
        assert!(matches!(
            t.set(vni, ip(n), dest(n)),
            Err(V2pError::Full { .. })
        ));
    }
}
