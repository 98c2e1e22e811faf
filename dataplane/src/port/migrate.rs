//! A port's flow state carried to another host (live migration).
//!
//! [`Port::export_state`] writes down every live flow as the port knows
//! it: the headers of the packet that opened it (what a re-check walks),
//! its TCP state, its age, idle time and counters, and the state its
//! stateful layers hold for it (an allow, or a rewrite such as a NAT
//! translation, as [`DescState`]), plus the port's counters and its
//! rate limiter's buckets.
//!
//! [`Port::import_state`] rebuilds the flows on the target's port: each is
//! walked once through the target's layers, at import, the way a re-check
//! after a rule change walks it, with the exported state offered back to
//! the stateful actions ([`StatefulAction::restore`]): the same action
//! deciding keeps the same translation (a SNAT port stays the flow's and
//! is taken out of the target's pool), and the overlay compiles the
//! target's own encapsulation. The flows' UFT entries, both directions,
//! are in place before the guest's first packet there, so that packet is
//! a UFT hit. A flow the target's rules refuse is not imported (counted in
//! the result).
//!
//! [`StatefulAction::restore`]: crate::action::StatefulAction::restore

use super::*;
use crate::action::DescState;
use core::net::IpAddr;

/// A flow key as a migration document writes it (the same fields as the
/// key's JSON in dumps).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct KeyDoc {
    pub proto: u8,
    pub src: IpAddr,
    pub src_port: u16,
    pub dst: IpAddr,
    pub dst_port: u16,
    pub vni: u32,
}

impl From<&FlowKey> for KeyDoc {
    fn from(k: &FlowKey) -> KeyDoc {
        KeyDoc {
            proto: k.proto,
            src: k.src_ip(),
            src_port: k.src_port,
            dst: k.dst_ip(),
            dst_port: k.dst_port,
            vni: k.vni,
        }
    }
}

impl KeyDoc {
    pub fn key(&self) -> FlowKey {
        let mut k = FlowKey::new(self.src, self.dst, self.proto, self.src_port, self.dst_port);
        k.vni = self.vni;
        k
    }
}

/// One layer's state for a flow.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct LftExport {
    pub layer: String,
    pub dir: Direction,
    pub key: KeyDoc,
    /// The rewrite a stateful action made for the flow; absent for a
    /// stateful allow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rewrite: Option<DescState>,
}

/// One flow.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct FlowExport {
    /// The direction of its first packet.
    pub origin: Direction,
    /// The headers of its first packet as it entered the port.
    pub origin_hdrs: Headers,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<TcpState>,
    pub age_ms: u64,
    pub idle_ms: u64,
    /// Per direction (out, in).
    pub packets: [u64; 2],
    pub bytes: [u64; 2],
    pub state: Vec<LftExport>,
}

/// The port's own counters.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct StatsExport {
    /// Per direction (out, in).
    pub dir: [DirStats; 2],
    /// Drops by fixed reason, in `DropReason::index` order.
    pub drops: Vec<u64>,
    pub flows_created: u64,
    pub flows_expired: u64,
    pub flows_evicted: u64,
    pub revalidations: u64,
    pub related: u64,
}

/// Everything [`Port::export_state`] writes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct PortExport {
    pub flows: Vec<FlowExport>,
    pub stats: StatsExport,
    /// The rate limiter's buckets in whole tokens (packets, bytes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_packets: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_bytes: Option<u64>,
}

/// What an import did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ImportCount {
    pub imported: usize,
    /// Flows the target's rules refused, or that found no room.
    pub refused: usize,
}

const NS_PER_MS: u64 = 1_000_000;

impl Port {
    /// Every live flow, the counters and the rate buckets (module doc).
    pub fn export_state(&self) -> PortExport {
        let now = self.clock.now();
        let mut flows = Vec::with_capacity(self.flows.live as usize);
        for f in self.flows.slots.iter().flatten() {
            if self.cfg.expiry.is_expired(f.class, f.last_hit, now) {
                continue;
            }
            let mut state = Vec::new();
            for &(li, dir, k) in f.lft.iter() {
                let Some(l) = self.layers.get(usize::from(li)) else {
                    continue;
                };
                let Some(e) = l.lft[dir.index()].get(&k) else {
                    continue;
                };
                if e.flow_gen != f.gen {
                    continue;
                }
                state.push(LftExport {
                    layer: l.name.to_string(),
                    dir,
                    key: KeyDoc::from(&k),
                    rewrite: match &e.state {
                        LftState::Allow => None,
                        LftState::Desc(d) => Some(DescState::of(d.as_ref())),
                    },
                });
            }
            // Folded state, as the layer entries it stands for.
            for (li, l) in self.layers.iter().enumerate().take(32) {
                if f.folds_at(li) {
                    let rewrite = self
                        .flows
                        .held_at(f, li)
                        .map(|h| DescState::of(h.desc.as_ref()));
                    for dir in [f.origin, f.origin.reverse()] {
                        state.push(LftExport {
                            layer: l.name.to_string(),
                            dir,
                            key: KeyDoc::from(&f.fold_key(li, dir)),
                            rewrite,
                        });
                    }
                }
            }
            flows.push(FlowExport {
                origin: f.origin,
                origin_hdrs: f.origin_hdrs.headers(&f.key),
                tcp: f.tcp,
                age_ms: now.saturating_sub(f.created) / NS_PER_MS,
                idle_ms: now.saturating_sub(f.last_hit) / NS_PER_MS,
                packets: f.packets,
                bytes: f.bytes,
                state,
            });
        }
        let s = &self.stats;
        let (rate_packets, rate_bytes) = self.rate.as_ref().map_or((None, None), |r| r.levels());
        PortExport {
            flows,
            stats: StatsExport {
                dir: s.dir,
                drops: s.drops.to_vec(),
                flows_created: s.flows_created,
                flows_expired: s.flows_expired,
                flows_evicted: s.flows_evicted,
                revalidations: s.revalidations,
                related: s.related,
            },
            rate_packets,
            rate_bytes,
        }
    }

    /// Rebuilds exported flows, counters and buckets on this port (module
    /// doc). Meant for a port that has no flows yet.
    pub fn import_state(&mut self, doc: &PortExport) -> ImportCount {
        let mut n = ImportCount::default();
        for f in &doc.flows {
            if self.import_flow(f) {
                n.imported += 1;
            } else {
                n.refused += 1;
            }
        }
        let s = &doc.stats;
        let st = &mut self.stats;
        for d in 0..2 {
            let mine = st.dir[d];
            st.dir[d] = s.dir[d];
            // What this port counted while importing stays counted too.
            st.dir[d].packets += mine.packets;
            st.dir[d].bytes += mine.bytes;
        }
        for (mine, theirs) in st.drops.iter_mut().zip(&s.drops) {
            *mine += theirs;
        }
        st.flows_created = s.flows_created.max(st.flows_created);
        st.flows_expired += s.flows_expired;
        st.flows_evicted += s.flows_evicted;
        st.revalidations += s.revalidations;
        st.related += s.related;
        if let Some(r) = &mut self.rate {
            r.set_levels(doc.rate_packets, doc.rate_bytes);
        }
        n
    }

    fn import_flow(&mut self, x: &FlowExport) -> bool {
        let now = self.clock.now();
        let Some(key) = FlowKey::of(&x.origin_hdrs) else {
            return false;
        };
        if self.lookup(x.origin, &key).is_some() {
            // Already here (imported twice): the first one stands.
            return false;
        }
        if self.flows.live >= self.cfg.flow_limit && !self.make_room(now) {
            return false;
        }
        let mut rec = FlowRec::start(x.origin, &x.origin_hdrs, key, x.tcp, now);
        rec.created = now.saturating_sub(x.age_ms.saturating_mul(NS_PER_MS));
        rec.last_hit = now.saturating_sub(x.idle_ms.saturating_mul(NS_PER_MS));
        rec.packets = x.packets;
        rec.bytes = x.bytes;
        let class = rec.class;
        let (id, gen) = self.flows.insert(rec);
        // The flow's records count from its start, here or before.
        if let Some(l) = &mut self.flow_log {
            l.start(id, now);
        }
        if class == ExpiryClass::TcpHalfOpen {
            self.note_half_open((id, gen));
        }
        let mut kept = self.restored_state(x, id, gen);
        let mut w = Walk::new(x.origin, x.origin_hdrs, false);
        w.flow = Some((id, gen));
        let ok = matches!(
            self.walk(&mut w, Mode::Recheck(&mut kept), now),
            WalkEnd::Pass
        );
        // What the walk did not take back (another action decided) is
        // dropped here, and with it what it held.
        drop(kept);
        if !ok {
            self.remove_flow(id);
            return false;
        }
        match Compiled::with_cache(&w.transform, &x.origin_hdrs, &mut self.encaps) {
            Ok(c) => {
                self.install(x.origin, key, c, id, gen, None);
                self.install_reply(&w, id, gen, now);
                self.note_decision(&w, id, gen, &key);
                true
            }
            Err(_) => {
                self.remove_flow(id);
                false
            }
        }
    }

    /// The exported layer state of a flow as a re-check's kept entries:
    /// each rewrite restored by the first stateful action of its layer
    /// that recognises it (one descriptor per layer, shared by both
    /// directions, as the walk made it).
    fn restored_state(
        &self,
        x: &FlowExport,
        id: u32,
        gen: u32,
    ) -> Vec<(u16, Direction, FlowKey, LftEntry)> {
        let mut kept = Vec::new();
        let mut made: Vec<(usize, DescState, LftState, ActionId)> = Vec::new();
        for s in &x.state {
            let Some(li) = self.layers.iter().position(|l| l.name.as_str() == s.layer) else {
                continue;
            };
            let key = s.key.key();
            let (state, action_id) = match &s.rewrite {
                None => (LftState::Allow, ActionId::STATEFUL_ALLOW),
                Some(ds) => {
                    if let Some((_, _, st, aid)) =
                        made.iter().find(|(l, d, _, _)| *l == li && d == ds)
                    {
                        (st.clone(), *aid)
                    } else {
                        let Some((st, aid)) = self.restore_desc(li, s.dir, &key, ds) else {
                            continue;
                        };
                        made.push((li, *ds, st.clone(), aid));
                        (st, aid)
                    }
                }
            };
            let entry = LftEntry {
                flow: id,
                flow_gen: gen,
                state,
                epoch: self.epoch,
                action_id,
            };
            kept.push((li as u16, s.dir, key, entry));
        }
        kept
    }

    fn restore_desc(
        &self,
        li: usize,
        dir: Direction,
        key: &FlowKey,
        ds: &DescState,
    ) -> Option<(LftState, ActionId)> {
        let l = &self.layers[li];
        for table in &l.rules {
            for e in table.entries() {
                if let Action::Stateful(a) = &e.rule.action {
                    if let Some(d) = a.restore(dir, key, ds) {
                        return Some((LftState::Desc(d), a.id()));
                    }
                }
            }
        }
        None
    }
}
