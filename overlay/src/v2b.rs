//! The virtual-to-boundary (V2B) table: where traffic for the internet
//! leaves the VPC.
//!
//! `(VNI, external prefix)` maps to the boundary tunnel endpoints, the
//! underlay IPv6 addresses of the gateways that carry the VNI's traffic to
//! and from the internet. A lookup finds the longest prefix holding the
//! address, per VNI and per address family, and [`pick`] chooses one of
//! its endpoints for a flow, the same one for every packet of the flow.
//!
//! # Layout
//!
//! A VNI's routes are two short lists, IPv4 and IPv6, each sorted by
//! prefix length, longest first: a lookup is a scan that stops at the
//! first prefix holding the address. That is right for what V2B holds: a
//! default route and a few tens of more specific prefixes per VPC. A VPC
//! with thousands of external prefixes would want a trie or a hash per
//! prefix length instead; the table's limit bounds the scan meanwhile.
//!
//! The concurrency scheme is [`crate::v2p`]'s: [`V2B_SHARDS`] copy-on-write
//! shards, here chosen by VNI (a VNI's routes must be in one place for the
//! longest-prefix match), each a map `VNI -> Arc<routes>` behind an
//! [`ArcSwap`]. Reads take no lock; a write copies the shard's map (one
//! `Arc` per VNI in it) and the changed VNI's route lists, and publishes.
//!
//! # Versions
//!
//! Each route has a [`Version`]; [`V2b::get`] returns a [`Dep`] on the
//! route that matched. It is bumped (and the route given a fresh one) when
//! the route's endpoints change, when the route is removed, and when a
//! longer prefix that overlaps it is added, since some of the addresses
//! that matched it now match the new route (this re-checks every flow on
//! the shorter route, not only those in the new prefix: prefix changes
//! are rare, and a re-check that finds the same answer is cheap).

use crate::{mix64, stale_dep, LIVE, READ_RETRIES};
use arc_swap::ArcSwap;
use dataplane::flow::FlowHashBuilder;
use dataplane::{Dep, IpCidr, Version, Vni};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// Number of copy-on-write shards.
pub const V2B_SHARDS: usize = 256;

/// The number of routes a host's table is sized for (all VNIs together).
pub const DEFAULT_V2B_LIMIT: usize = 1 << 16;

/// The most endpoints one route may have.
pub const MAX_ENDPOINTS: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum V2bError {
    #[error("V2B table is full: it holds at most {limit} routes")]
    Full { limit: usize },
    #[error("a boundary route needs at least one tunnel endpoint")]
    NoEndpoints,
    #[error("a boundary route has at most {max} tunnel endpoints, got {got}")]
    TooManyEndpoints { max: usize, got: usize },
}

/// A route's boundary tunnel endpoints: never empty, sorted, no
/// duplicates (so the order they were given in does not matter), at most
/// [`MAX_ENDPOINTS`]. Cheap to clone.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Endpoints(Arc<[Ipv6Addr]>);

impl Endpoints {
    pub fn new(addrs: impl IntoIterator<Item = Ipv6Addr>) -> Result<Self, V2bError> {
        let mut v: Vec<Ipv6Addr> = addrs.into_iter().collect();
        v.sort_unstable();
        v.dedup();
        if v.is_empty() {
            return Err(V2bError::NoEndpoints);
        }
        if v.len() > MAX_ENDPOINTS {
            return Err(V2bError::TooManyEndpoints {
                max: MAX_ENDPOINTS,
                got: v.len(),
            });
        }
        Ok(Endpoints(v.into()))
    }

    pub fn as_slice(&self) -> &[Ipv6Addr] {
        &self.0
    }

    /// See [`pick`].
    pub fn pick(&self, flow_hash: u32) -> Ipv6Addr {
        pick(self, flow_hash)
    }
}

impl core::ops::Deref for Endpoints {
    type Target = [Ipv6Addr];
    fn deref(&self) -> &[Ipv6Addr] {
        &self.0
    }
}

/// The endpoint for a flow, by rendezvous (highest random weight) hashing:
/// each endpoint scores `hash(flow_hash, endpoint)` and the highest wins.
/// The same flow hash always picks the same endpoint from the same set,
/// flows spread evenly, and when an endpoint is added or removed only the
/// flows that move to or from it change endpoint. Use the flow's
/// `FlowKey::symmetric_hash` so both directions of a flow agree.
pub fn pick(endpoints: &Endpoints, flow_hash: u32) -> Ipv6Addr {
    let score = |a: &Ipv6Addr| {
        let b = u128::from(*a);
        mix64(mix64(b as u64 ^ u64::from(flow_hash)) ^ (b >> 64) as u64)
    };
    endpoints
        .iter()
        .max_by_key(|a| score(a))
        .copied()
        // Endpoints are never empty.
        .unwrap_or(Ipv6Addr::UNSPECIFIED)
}

/// One route, as [`V2b::dump`] lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct V2bEntry {
    pub vni: Vni,
    pub prefix: IpCidr,
    pub endpoints: Vec<Ipv6Addr>,
}

#[derive(Clone, Debug)]
struct Route {
    prefix: IpCidr,
    endpoints: Endpoints,
    version: Version,
}

/// A VNI's routes, per family, longest prefix first.
#[derive(Clone, Debug, Default)]
struct VniRoutes {
    v4: Vec<Route>,
    v6: Vec<Route>,
}

impl VniRoutes {
    fn family(&self, v4: bool) -> &Vec<Route> {
        if v4 {
            &self.v4
        } else {
            &self.v6
        }
    }

    fn family_mut(&mut self, v4: bool) -> &mut Vec<Route> {
        if v4 {
            &mut self.v4
        } else {
            &mut self.v6
        }
    }

    fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }
}

/// Seeded word-wise hashing (the flow tables'): SipHash was most of a
/// lookup, and every new flow makes one or two. The keys are the control
/// plane's; packets only look them up.
type Shard = HashMap<Vni, Arc<VniRoutes>, FlowHashBuilder>;

/// The V2B table. See the module documentation.
pub struct V2b {
    shards: Box<[ArcSwap<Shard>]>,
    len: AtomicUsize,
    limit: usize,
    writer: Mutex<()>,
}

impl core::fmt::Debug for V2b {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("V2b")
            .field("len", &self.len())
            .field("limit", &self.limit)
            .finish_non_exhaustive()
    }
}

impl Default for V2b {
    fn default() -> Self {
        V2b::new(DEFAULT_V2B_LIMIT)
    }
}

fn sort_routes(r: &mut [Route]) {
    r.sort_unstable_by(|a, b| {
        b.prefix
            .prefix_len()
            .cmp(&a.prefix.prefix_len())
            .then(a.prefix.addr().cmp(&b.prefix.addr()))
    });
}

impl V2b {
    /// An empty table that refuses to hold more than `limit` routes.
    pub fn new(limit: usize) -> Self {
        V2b {
            shards: (0..V2B_SHARDS)
                .map(|_| ArcSwap::from_pointee(Shard::with_hasher(FlowHashBuilder::random())))
                .collect(),
            len: AtomicUsize::new(0),
            limit,
            writer: Mutex::new(()),
        }
    }

    #[inline]
    fn shard(&self, vni: Vni) -> &ArcSwap<Shard> {
        // The index is below 256, the number of shards.
        &self.shards[(mix64(u64::from(vni.get())) >> 56) as usize]
    }

    fn lock(&self) -> MutexGuard<'_, ()> {
        // State is published atomically; a panicked writer left nothing
        // half-done to protect.
        self.writer.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The number of routes, all VNIs together.
    pub fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    /// The endpoints of the longest prefix in `vni` holding `ip`, and a
    /// [`Dep`] that stays current until that answer may change. Lock-free.
    pub fn get(&self, vni: Vni, ip: IpAddr) -> Option<(Endpoints, Dep)> {
        let shard = self.shard(vni);
        for _ in 0..READ_RETRIES {
            let map = shard.load();
            let r = lookup(&map, vni, ip)?;
            let dep = r.version.dep();
            // As in V2p::get: live after the Dep was taken means current.
            if r.version.current() == LIVE {
                return Some((r.endpoints.clone(), dep));
            }
        }
        let map = shard.load();
        lookup(&map, vni, ip).map(|r| (r.endpoints.clone(), stale_dep()))
    }

    /// Routes `prefix` in `vni` to `endpoints`. Setting the endpoints
    /// already there is a no-op; a new route past the limit is refused.
    pub fn set(
        &self,
        vni: Vni,
        prefix: IpCidr,
        endpoints: impl IntoIterator<Item = Ipv6Addr>,
    ) -> Result<(), V2bError> {
        let endpoints = Endpoints::new(endpoints)?;
        let _w = self.lock();
        self.set_locked(vni, prefix, endpoints)
    }

    /// Sets many routes, all or nothing: if one has bad endpoints or the
    /// new ones would pass the limit, nothing changes. A (VNI, prefix)
    /// given twice takes its last endpoints. Returns how many were given.
    pub fn set_many(
        &self,
        items: impl IntoIterator<Item = (Vni, IpCidr, Vec<Ipv6Addr>)>,
    ) -> Result<usize, (usize, V2bError)> {
        let mut routes = Vec::new();
        for (i, (vni, prefix, eps)) in items.into_iter().enumerate() {
            routes.push((vni, prefix, Endpoints::new(eps).map_err(|e| (i, e))?));
        }
        let _w = self.lock();
        let mut new = std::collections::HashSet::new();
        for (vni, prefix, _) in &routes {
            let v4 = prefix.addr().is_ipv4();
            let exists = self
                .shard(*vni)
                .load()
                .get(vni)
                .is_some_and(|r| r.family(v4).iter().any(|r| r.prefix == *prefix));
            if !exists {
                new.insert((*vni, *prefix));
            }
        }
        if self.len() + new.len() > self.limit {
            return Err((0, V2bError::Full { limit: self.limit }));
        }
        let n = routes.len();
        for (vni, prefix, eps) in routes {
            // Cannot fail: endpoints are valid and room was checked.
            self.set_locked(vni, prefix, eps).map_err(|e| (0, e))?;
        }
        Ok(n)
    }

    /// [`V2b::set`] with the writer lock held.
    fn set_locked(&self, vni: Vni, prefix: IpCidr, endpoints: Endpoints) -> Result<(), V2bError> {
        let shard = self.shard(vni);
        let cur = shard.load_full();
        let v4 = prefix.addr().is_ipv4();
        let mut routes = cur
            .get(&vni)
            .map(|r| VniRoutes::clone(r))
            .unwrap_or_default();
        let list = routes.family_mut(v4);
        let mut retired = Vec::new();
        match list.iter_mut().find(|r| r.prefix == prefix) {
            Some(r) if r.endpoints == endpoints => return Ok(()),
            Some(r) => {
                r.endpoints = endpoints;
                retired.push(core::mem::take(&mut r.version));
            }
            None => {
                if self.len() >= self.limit {
                    return Err(V2bError::Full { limit: self.limit });
                }
                // Shorter prefixes that hold the new one lose some of
                // their addresses to it: their flows must re-check.
                for r in list.iter_mut() {
                    if r.prefix.prefix_len() < prefix.prefix_len()
                        && r.prefix.contains(prefix.addr())
                    {
                        retired.push(core::mem::take(&mut r.version));
                    }
                }
                list.push(Route {
                    prefix,
                    endpoints,
                    version: Version::new(),
                });
                sort_routes(list);
                self.len.fetch_add(1, Ordering::Relaxed);
            }
        }
        let mut next = Shard::clone(&cur);
        next.insert(vni, Arc::new(routes));
        shard.store(Arc::new(next));
        for v in retired {
            v.bump();
        }
        Ok(())
    }

    /// Removes the route for `prefix` in `vni`; false if there was none.
    pub fn clear(&self, vni: Vni, prefix: IpCidr) -> bool {
        let _w = self.lock();
        let shard = self.shard(vni);
        let cur = shard.load_full();
        let Some(old) = cur.get(&vni) else {
            return false;
        };
        let v4 = prefix.addr().is_ipv4();
        let Some(at) = old.family(v4).iter().position(|r| r.prefix == prefix) else {
            return false;
        };
        let mut routes = VniRoutes::clone(old);
        let gone = routes.family_mut(v4).remove(at);
        let mut next = Shard::clone(&cur);
        if routes.len() == 0 {
            next.remove(&vni);
        } else {
            next.insert(vni, Arc::new(routes));
        }
        shard.store(Arc::new(next));
        gone.version.bump();
        self.len.fetch_sub(1, Ordering::Relaxed);
        true
    }

    /// Removes every route of `vni`; returns how many went.
    pub fn clear_vni(&self, vni: Vni) -> usize {
        let _w = self.lock();
        let shard = self.shard(vni);
        let cur = shard.load_full();
        let Some(old) = cur.get(&vni).cloned() else {
            return 0;
        };
        let mut next = Shard::clone(&cur);
        next.remove(&vni);
        shard.store(Arc::new(next));
        for r in old.v4.iter().chain(&old.v6) {
            r.version.bump();
        }
        self.len.fetch_sub(old.len(), Ordering::Relaxed);
        old.len()
    }

    /// The routes of one VNI, or all, sorted by VNI then prefix.
    pub fn dump(&self, vni: Option<Vni>) -> Vec<V2bEntry> {
        let mut out = Vec::new();
        let mut add = |v: Vni, routes: &VniRoutes| {
            out.extend(routes.v4.iter().chain(&routes.v6).map(|r| V2bEntry {
                vni: v,
                prefix: r.prefix,
                endpoints: r.endpoints.to_vec(),
            }));
        };
        match vni {
            Some(v) => {
                if let Some(r) = self.shard(v).load().get(&v) {
                    add(v, r);
                }
            }
            None => {
                for shard in self.shards.iter() {
                    for (v, r) in shard.load().iter() {
                        add(*v, r);
                    }
                }
            }
        }
        out.sort_unstable_by_key(|a| (a.vni, a.prefix));
        out
    }
}

#[inline]
fn lookup(map: &Shard, vni: Vni, ip: IpAddr) -> Option<&Route> {
    map.get(&vni)?
        .family(ip.is_ipv4())
        .iter()
        .find(|r| r.prefix.contains(ip))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vni(v: u32) -> Vni {
        Vni::new(v).unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn cidr(s: &str) -> IpCidr {
        s.parse().unwrap()
    }

    fn ep(n: u16) -> Ipv6Addr {
        Ipv6Addr::new(0xfd00, 0xb, 0, 0, 0, 0, 0, n)
    }

    fn first(t: &V2b, v: u32, a: &str) -> Option<Ipv6Addr> {
        t.get(vni(v), ip(a)).map(|(e, _)| e[0])
    }

    #[test]
    fn longest_prefix_per_family_per_vni() {
        let t = V2b::new(100);
        t.set(vni(1), cidr("0.0.0.0/0"), [ep(1)]).unwrap();
        t.set(vni(1), cidr("10.0.0.0/8"), [ep(2)]).unwrap();
        t.set(vni(1), cidr("10.1.0.0/16"), [ep(3)]).unwrap();
        t.set(vni(1), cidr("10.1.2.3/32"), [ep(4)]).unwrap();
        t.set(vni(1), cidr("2001:db8::/32"), [ep(5)]).unwrap();
        t.set(vni(2), cidr("::/0"), [ep(6)]).unwrap();
        assert_eq!(t.len(), 6);

        assert_eq!(first(&t, 1, "192.0.2.1"), Some(ep(1)));
        assert_eq!(first(&t, 1, "10.9.9.9"), Some(ep(2)));
        assert_eq!(first(&t, 1, "10.1.9.9"), Some(ep(3)));
        assert_eq!(first(&t, 1, "10.1.2.3"), Some(ep(4)));
        assert_eq!(first(&t, 1, "10.1.2.4"), Some(ep(3)));
        // Per family: the IPv4 default does not catch IPv6.
        assert_eq!(first(&t, 1, "2001:db8::1"), Some(ep(5)));
        assert_eq!(first(&t, 1, "2001:db9::1"), None);
        // Per VNI.
        assert_eq!(first(&t, 2, "2001:db9::1"), Some(ep(6)));
        assert_eq!(first(&t, 2, "10.1.2.3"), None);
        assert_eq!(first(&t, 3, "10.1.2.3"), None);

        // Insertion order does not matter.
        let u = V2b::new(100);
        u.set(vni(1), cidr("10.1.0.0/16"), [ep(3)]).unwrap();
        u.set(vni(1), cidr("0.0.0.0/0"), [ep(1)]).unwrap();
        u.set(vni(1), cidr("10.0.0.0/8"), [ep(2)]).unwrap();
        assert_eq!(first(&u, 1, "10.1.9.9"), Some(ep(3)));
        assert_eq!(first(&u, 1, "10.2.9.9"), Some(ep(2)));

        // Removal falls back to the next longest.
        assert!(t.clear(vni(1), cidr("10.1.0.0/16")));
        assert!(!t.clear(vni(1), cidr("10.1.0.0/16")));
        assert!(!t.clear(vni(9), cidr("10.1.0.0/16")));
        assert_eq!(first(&t, 1, "10.1.9.9"), Some(ep(2)));
        assert_eq!(t.len(), 5);
    }

    #[test]
    fn set_dump_clear() {
        let t = V2b::new(100);
        t.set(vni(2), cidr("0.0.0.0/0"), [ep(2), ep(1), ep(2)])
            .unwrap();
        t.set(vni(1), cidr("::/0"), [ep(3)]).unwrap();
        t.set(vni(1), cidr("0.0.0.0/0"), [ep(4)]).unwrap();
        let (e, _) = t.get(vni(2), ip("1.1.1.1")).unwrap();
        assert_eq!(e.as_slice(), &[ep(1), ep(2)]);
        let d = t.dump(None);
        let keys: Vec<_> = d.iter().map(|e| (e.vni.get(), e.prefix)).collect();
        assert_eq!(
            keys,
            vec![
                (1, cidr("0.0.0.0/0")),
                (1, cidr("::/0")),
                (2, cidr("0.0.0.0/0"))
            ]
        );
        assert_eq!(d[2].endpoints, vec![ep(1), ep(2)]);
        assert_eq!(t.dump(Some(vni(1))).len(), 2);
        assert!(t.dump(Some(vni(3))).is_empty());
        let json = serde_json::to_value(&d[2]).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"vni": 2, "prefix": "0.0.0.0/0",
                "endpoints": ["fd00:b::1", "fd00:b::2"]})
        );
        assert_eq!(t.set(vni(1), cidr("::/0"), []), Err(V2bError::NoEndpoints));
        assert!(matches!(
            t.set(vni(1), cidr("::/0"), (0..100).map(ep)),
            Err(V2bError::TooManyEndpoints { max: 64, got: 100 })
        ));
        assert_eq!(t.clear_vni(vni(1)), 2);
        assert_eq!(t.clear_vni(vni(1)), 0);
        assert_eq!(t.len(), 1);
        assert!(t.get(vni(1), ip("1.1.1.1")).is_none());
    }

    #[test]
    fn limit() {
        let t = V2b::new(2);
        t.set(vni(1), cidr("0.0.0.0/0"), [ep(1)]).unwrap();
        t.set(vni(2), cidr("0.0.0.0/0"), [ep(1)]).unwrap();
        assert_eq!(
            t.set(vni(3), cidr("0.0.0.0/0"), [ep(1)]),
            Err(V2bError::Full { limit: 2 })
        );
        assert_eq!(
            V2bError::Full { limit: 2 }.to_string(),
            "V2B table is full: it holds at most 2 routes"
        );
        // Changing an existing route at the limit is fine.
        t.set(vni(2), cidr("0.0.0.0/0"), [ep(2)]).unwrap();
        assert_eq!(t.len(), 2);
        assert!(t.get(vni(3), ip("1.1.1.1")).is_none());
        assert!(V2b::new(0).set(vni(1), cidr("::/0"), [ep(1)]).is_err());
    }

    #[test]
    fn versions() {
        let t = V2b::new(100);
        t.set(vni(1), cidr("0.0.0.0/0"), [ep(1)]).unwrap();
        t.set(vni(1), cidr("::/0"), [ep(1)]).unwrap();
        t.set(vni(2), cidr("0.0.0.0/0"), [ep(1)]).unwrap();
        let (_, d4) = t.get(vni(1), ip("192.0.2.1")).unwrap();
        let (_, d6) = t.get(vni(1), ip("2001:db8::1")).unwrap();
        let (_, other) = t.get(vni(2), ip("192.0.2.1")).unwrap();

        // Same endpoints (in another order): no bump.
        t.set(vni(1), cidr("0.0.0.0/0"), [ep(1), ep(1)]).unwrap();
        assert!(d4.is_current());

        // A longer prefix inside the default: the default's flows re-check.
        t.set(vni(1), cidr("192.0.2.0/24"), [ep(2)]).unwrap();
        assert!(!d4.is_current());
        assert!(d6.is_current() && other.is_current());
        let (e, d24) = t.get(vni(1), ip("192.0.2.1")).unwrap();
        assert_eq!(e[0], ep(2));
        let (e, d0) = t.get(vni(1), ip("198.51.100.1")).unwrap();
        assert_eq!(e[0], ep(1));

        // A disjoint longer prefix leaves the /24 alone.
        t.set(vni(1), cidr("198.51.100.0/24"), [ep(3)]).unwrap();
        assert!(d24.is_current());
        assert!(!d0.is_current());

        // Changed endpoints: bumped.
        t.set(vni(1), cidr("192.0.2.0/24"), [ep(4)]).unwrap();
        assert!(!d24.is_current());
        let (_, d24) = t.get(vni(1), ip("192.0.2.1")).unwrap();
        assert!(d24.is_current());

        // Removed: bumped; the lookup falls back with a current Dep.
        assert!(t.clear(vni(1), cidr("192.0.2.0/24")));
        assert!(!d24.is_current());
        let (e, d) = t.get(vni(1), ip("192.0.2.1")).unwrap();
        assert_eq!(e[0], ep(1));
        assert!(d.is_current());
        assert!(d6.is_current() && other.is_current());

        // clear_vni bumps its routes only.
        t.clear_vni(vni(1));
        assert!(!d.is_current() && !d6.is_current());
        assert!(other.is_current());
    }

    #[test]
    fn concurrent_readers_see_old_or_new() {
        let t = Arc::new(V2b::new(100));
        t.set(vni(1), cidr("0.0.0.0/0"), [ep(1)]).unwrap();
        t.set(vni(1), cidr("10.0.0.0/8"), [ep(10)]).unwrap();
        // Readers and the writer start together; the writer yields between
        // updates so that they interleave with the lookups.
        let start = Arc::new(std::sync::Barrier::new(3));
        let readers: Vec<_> = (0..2)
            .map(|_| {
                let t = t.clone();
                let start = start.clone();
                std::thread::spawn(move || {
                    start.wait();
                    let mut last = None;
                    for _ in 0..200_000u32 {
                        let (e, dep) = t.get(vni(1), ip("10.1.1.1")).expect("never missing");
                        assert!(e[0] == ep(10) || e[0] == ep(11), "{e:?}");
                        let (o, _) = t.get(vni(1), ip("192.0.2.1")).expect("never missing");
                        assert_eq!(o[0], ep(1));
                        last = Some((e, dep));
                    }
                    last
                })
            })
            .collect();
        start.wait();
        for n in 0..1000u16 {
            std::thread::yield_now();
            t.set(vni(1), cidr("10.0.0.0/8"), [ep(10 + n % 2)]).unwrap();
        }
        let now = t.get(vni(1), ip("10.1.1.1")).unwrap().0;
        for r in readers {
            let (e, dep) = r.join().expect("reader panicked").unwrap();
            // A Dep still current came with the value the table holds now.
            assert!(!dep.is_current() || e == now);
        }
    }

    #[test]
    fn pick_is_stable_and_spreads() {
        let e = Endpoints::new((1..=4).map(ep)).unwrap();
        let mut counts = HashMap::new();
        let hashes: Vec<u32> = (0..20_000u32)
            .map(|i| (mix64(u64::from(i)) >> 32) as u32)
            .collect();
        for &h in &hashes {
            let a = pick(&e, h);
            assert_eq!(a, e.pick(h));
            assert_eq!(a, pick(&e, h));
            *counts.entry(a).or_insert(0u32) += 1;
        }
        assert_eq!(counts.len(), 4);
        assert!(
            counts.values().all(|&c| (4000..=6000).contains(&c)),
            "{counts:?}"
        );
        // Order given does not matter.
        let r = Endpoints::new((1..=4).rev().map(ep)).unwrap();
        assert!(hashes.iter().all(|&h| pick(&r, h) == pick(&e, h)));
        // Removing an endpoint moves only its own flows.
        let three = Endpoints::new([ep(1), ep(2), ep(4)]).unwrap();
        for &h in &hashes {
            let before = pick(&e, h);
            if before != ep(3) {
                assert_eq!(pick(&three, h), before);
            }
        }
        let one = Endpoints::new([ep(9)]).unwrap();
        assert_eq!(pick(&one, 12345), ep(9));
    }

    #[test]
    fn set_many_is_all_or_nothing() {
        let t = V2b::new(3);
        t.set(vni(1), cidr("10.0.0.0/8"), [ep(1)]).unwrap();
        // A longer prefix inside an existing one is a new route: 1 + 3 > 3.
        let too_many = vec![
            (vni(1), cidr("10.1.0.0/16"), vec![ep(2)]),
            (vni(1), cidr("10.2.0.0/16"), vec![ep(2)]),
            (vni(1), cidr("10.3.0.0/16"), vec![ep(2)]),
        ];
        assert!(matches!(
            t.set_many(too_many),
            Err((_, V2bError::Full { limit: 3 }))
        ));
        assert_eq!(t.len(), 1, "nothing changed");
        let bad = vec![
            (vni(1), cidr("10.1.0.0/16"), vec![ep(2)]),
            (vni(1), cidr("10.2.0.0/16"), vec![]),
        ];
        assert!(matches!(t.set_many(bad), Err((1, V2bError::NoEndpoints))));
        assert_eq!(t.len(), 1);
        // Replacing an existing route and the same new one twice fit.
        let ok = vec![
            (vni(1), cidr("10.0.0.0/8"), vec![ep(3)]),
            (vni(1), cidr("10.1.0.0/16"), vec![ep(2)]),
            (vni(1), cidr("10.1.0.0/16"), vec![ep(4)]),
        ];
        assert_eq!(t.set_many(ok), Ok(3));
        assert_eq!(t.len(), 2);
        assert_eq!(
            t.get(vni(1), "10.1.2.3".parse().unwrap())
                .unwrap()
                .0
                .as_slice(),
            &[ep(4)]
        );
    }
}
