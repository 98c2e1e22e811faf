//! The port: one vNIC's layers, flow tables and counters, and the two
//! packet paths through them.
//!
//! Fast path: read the flow key and offsets straight from the frame
//! ([`headers::parse_fast`]; the full parse only for frames it leaves
//! alone), look the flow up in the unified flow table (UFT) of the
//! packet's direction, and apply the flow's compiled transform. No layer
//! runs, nothing is allocated, no lock is taken.
//!
//! Idle timeouts hold at every lookup: a flow found idle past its timeout
//! (in the UFT, a layer's flow table, or as the flow an ICMP error quotes)
//! is removed there and then and the packet treated as a miss, whether or
//! not the periodic sweep ([`Port::expire_paced`]) has reached it.
//!
//! Slow path (a UFT miss): walk the layers (outbound in order, inbound in
//! reverse order). Each layer first looks for state an earlier packet of
//! the flow, or of its reverse, left: in the flow record, found through
//! the connection table (a stateful allow where the layer sees the flow's
//! own keys; a NAT translation where the replies reach the layer with the
//! key they arrive with, minus the VNI), else in its own flow table
//! (LFT); otherwise its rules decide. The layers' transforms are composed and
//! compiled, and UFT entries are made for the flow and for its reverse —
//! the reverse by walking the other direction's layers over the reply the
//! flow will get, so a reply takes the fast path from its first packet.
//!
//! Rule changes bump the port's epoch. A UFT entry made under an older
//! epoch is never applied blindly: its flow is re-checked by walking the
//! layers again with the packet that opened it, keeping what stateful
//! actions allocated when the same action (by its [`ActionId`], never its
//! address) still decides; a flow the new rules refuse is removed and its
//! packets dropped.

use crate::action::{Action, ActionDesc, ActionId, GenError, HairpinAction};
use crate::clock::{Clock, Moment, MonotonicClock};
use crate::drop::{DropReason, DROP_REASONS};
use crate::flow::{Direction, FlowHashBuilder, FlowKey};
use crate::flowlog::{
    CloseReason, Decider, Decision, FlowLog, FlowLogConfig, FlowLogStats, FlowLogger, FlowRecord,
    LayerName, LogState,
};
use crate::headers::{self, Frag, Headers, Offsets, ParseMode, Parsed, L3, L4};
use crate::layer::{DefaultAction, Layer, LayerConfig, LayerDirStats, LftEntry, LftState};
use crate::meta::Meta;
use crate::packet::PacketBuf;
use crate::rate::{RateLimit, RateLimiter};
use crate::rule::{Rule, RuleId};
use crate::tcp::{ExpiryClass, ExpiryPolicy, Side, TcpState};
use crate::transform::{Compiled, EncapCache, Transform, TransformError};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::sync::Arc;

mod conns;
mod migrate;
mod start;
use conns::Conns;
pub use migrate::{FlowExport, ImportCount, KeyDoc, LftExport, PortExport, StatsExport};
use start::StartHeaders;

/// The largest frame a guest may send, and what answers a larger one
/// (typically ICMP "fragmentation needed" / "packet too big", so the
/// guest's path MTU discovery works instead of the packet vanishing).
#[derive(Clone)]
pub struct MtuCheck {
    pub max_frame: usize,
    pub too_big: Arc<dyn HairpinAction>,
}

impl core::fmt::Debug for MtuCheck {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "MtuCheck {{ max_frame: {}, too_big: {} }}",
            self.max_frame, self.too_big
        )
    }
}

/// How long [`Port::expire_paced`] takes to visit every flow slot once.
pub const SWEEP_PERIOD: Moment = crate::clock::NANOS_PER_SEC;

/// Limits and behaviour fixed when a port is made.
#[derive(Clone, Debug)]
pub struct PortConfig {
    pub name: String,
    /// Flows the port tracks at once (each with its UFT entries for both
    /// directions). When full: expired flows go first, then half-open TCP,
    /// never an established flow; failing that the new flow is dropped.
    pub flow_limit: u32,
    pub expiry: ExpiryPolicy,
    /// How inbound frames arrive: plain, or Geneve-encapsulated.
    pub inbound: ParseMode,
    /// Outbound frames longer than this are answered, never forwarded.
    /// Checked before the flow table, so no flow carries one either.
    pub mtu: Option<MtuCheck>,
    /// The only Ethernet source an outbound frame may take the flow table
    /// with (a vNIC's guest MAC): the flow key is the 5-tuple, so without
    /// it a frame of an established flow from another MAC would pass as
    /// its flow does. Another source goes through the layers, whose rules
    /// decide (a gateway's anti-spoofing drops it). `None`: not checked.
    pub source_mac: Option<[u8; 6]>,
}

impl PortConfig {
    pub fn new(name: &str) -> Self {
        PortConfig {
            name: name.to_string(),
            flow_limit: 8192,
            expiry: ExpiryPolicy::default(),
            inbound: ParseMode::Plain,
            mtu: None,
            source_mac: None,
        }
    }
}

/// What to do with a processed packet.
#[derive(Debug)]
pub enum Verdict {
    /// The packet was transformed in place: send it on (to the network for
    /// `Out`, to the guest for `In`).
    Forward,
    /// Drop the packet and send this reply back the way it came.
    Hairpin(PacketBuf),
    Drop(DropReason),
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct DirStats {
    pub packets: u64,
    pub bytes: u64,
    pub uft_hits: u64,
    pub uft_misses: u64,
    pub forwarded: u64,
    pub hairpins: u64,
    pub dropped: u64,
}

impl DirStats {
    /// Every counter by its (serialized) name: what metrics and the CLI
    /// export. Destructured whole, so a counter added or renamed here
    /// fails the build until it is listed.
    pub fn counters(&self) -> [(&'static str, u64); 7] {
        let DirStats {
            packets,
            bytes,
            uft_hits,
            uft_misses,
            forwarded,
            hairpins,
            dropped,
        } = *self;
        [
            ("packets", packets),
            ("bytes", bytes),
            ("uft_hits", uft_hits),
            ("uft_misses", uft_misses),
            ("forwarded", forwarded),
            ("hairpins", hairpins),
            ("dropped", dropped),
        ]
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortStats {
    pub dir: [DirStats; 2],
    /// Drops by fixed reason, indexed by `DropReason::index`.
    pub drops: [u64; DROP_REASONS],
    /// Drops by policy reason (`DropReason::Policy`), in order first seen.
    pub policy_drops: Vec<(&'static str, u64)>,
    pub flows_created: u64,
    pub flows_expired: u64,
    /// Half-open flows evicted to make room for a new flow.
    pub flows_evicted: u64,
    /// Flows re-checked after a rule change.
    pub revalidations: u64,
    /// ICMP errors passed as part of the flow they are about.
    pub related: u64,
    /// Time spent on packets that missed the UFT (layer walks, flow set-up),
    /// in nanoseconds of the port's clock: what the switch shares out
    /// between guests (see `vmm_net::Switch::poll`).
    pub slow_path_ns: u64,
}

impl Default for PortStats {
    fn default() -> Self {
        PortStats {
            dir: [DirStats::default(); 2],
            drops: [0; DROP_REASONS],
            policy_drops: Vec::new(),
            flows_created: 0,
            flows_expired: 0,
            flows_evicted: 0,
            revalidations: 0,
            related: 0,
            slow_path_ns: 0,
        }
    }
}

impl PortStats {
    pub fn drops(&self, r: DropReason) -> u64 {
        match (r.index(), r) {
            (Some(i), _) => self.drops[i],
            (None, DropReason::Policy(name)) => self
                .policy_drops
                .iter()
                .find(|(n, _)| *n == name)
                .map_or(0, |(_, c)| *c),
            (None, _) => 0,
        }
    }

    /// Every drop reason with a non-zero count, by name.
    pub fn drop_counts(&self) -> Vec<(&'static str, u64)> {
        DropReason::all()
            .map(|r| (r.name(), self.drops(r)))
            .chain(self.policy_drops.iter().copied())
            .filter(|(_, n)| *n > 0)
            .collect()
    }

    fn count_drop(&mut self, r: DropReason) {
        match (r.index(), r) {
            (Some(i), _) => self.drops[i] += 1,
            (None, DropReason::Policy(name)) => {
                // A handful of names per port: a scan beats a map here.
                match self.policy_drops.iter_mut().find(|(n, _)| *n == name) {
                    Some((_, c)) => *c += 1,
                    None => self.policy_drops.push((name, 1)),
                }
            }
            (None, _) => {}
        }
    }

    pub fn dir(&self, d: Direction) -> &DirStats {
        &self.dir[d.index()]
    }
}

/// An LFT entry a flow owns: (layer, direction, key).
type LftRef = (u16, Direction, FlowKey);

/// The LFT entries of a flow: none for most (their firewall state and
/// their NAT translation are folded into the record), two for a stateful
/// layer's state the record cannot hold (both directions), on the heap
/// behind one thin pointer so a flow without any pays 8 bytes.
#[derive(Default)]
// A `Vec` would take 24 bytes in every record for what most never have.
#[allow(clippy::box_collection)]
struct LftRefs(Option<Box<Vec<LftRef>>>);

impl LftRefs {
    /// Adds these (at a flow's walks only, never per packet).
    fn extend(&mut self, rs: impl IntoIterator<Item = LftRef>) {
        let mut rs = rs.into_iter().peekable();
        if rs.peek().is_some() {
            self.0.get_or_insert_with(Default::default).extend(rs);
        }
    }

    fn iter(&self) -> impl Iterator<Item = &LftRef> {
        self.0.iter().flat_map(|v| v.iter())
    }
}

/// Everything the port knows about one flow and its reverse: one record
/// per connection, found from either direction's key through the
/// connection table ([`Conns`]).
struct FlowRec {
    gen: u32,
    origin: Direction,
    /// The flow key of the first packet, as it entered the port.
    key: FlowKey,
    /// Layers (bit = layer index) whose `StatefulAllow` let this flow in
    /// with the flow's own keys: that state is these bits, not entries in
    /// the layer's flow table (see [`FlowRec::fold_key`]).
    allowed: u32,
    /// Port epoch when the first of those bits was set.
    allowed_epoch: u64,
    /// The first packet's headers as it entered the port: re-walked to
    /// re-check the flow after a rule change.
    origin_hdrs: StartHeaders,
    /// The reply direction's UFT key (the origin direction's is `key`).
    rkey: FlowKey,
    /// Bit `Direction::index`: that direction has a UFT entry (`ukey`).
    keyed: u8,
    /// A stateful action's state (a NAT translation) folded into the
    /// record instead of two entries in its layer's flow table (see
    /// [`Held`]; the translation itself is in the side slab,
    /// `Flows::held`); its layer's bit is set in `allowed` too.
    held: Option<HeldRef>,
    /// Per direction: the compiled transform, and the port epoch it was
    /// compiled under (stale when the port's has moved on).
    xform: [Option<Compiled>; 2],
    epoch: [u64; 2],
    lft: LftRefs,
    tcp: Option<TcpState>,
    class: ExpiryClass,
    created: Moment,
    last_hit: Moment,
    packets: [u64; 2],
    bytes: [u64; 2],
}

impl FlowRec {
    /// A new flow's record, with no UFT entries, layer state or traffic
    /// yet: its first packet went `origin` with headers `h` and key `key`.
    fn start(
        origin: Direction,
        h: &Headers,
        key: FlowKey,
        tcp: Option<TcpState>,
        now: Moment,
    ) -> FlowRec {
        let class = match (tcp, h.inner.l4) {
            (Some(t), _) => t.class(),
            (None, L4::Udp { .. }) => ExpiryClass::Udp,
            (None, L4::Icmp { .. } | L4::Icmp6 { .. }) => ExpiryClass::Icmp,
            _ => ExpiryClass::Other,
        };
        FlowRec {
            gen: 0,
            origin,
            key,
            allowed: 0,
            allowed_epoch: 0,
            origin_hdrs: StartHeaders::new(h, &key),
            rkey: key.reverse(),
            keyed: 0,
            held: None,
            xform: [None, None],
            epoch: [0; 2],
            lft: LftRefs::default(),
            tcp,
            class,
            created: now,
            last_hit: now,
            packets: [0; 2],
            bytes: [0; 2],
        }
    }

    /// The UFT key of packets going direction `d` (an index), if any.
    #[inline]
    fn ukey(&self, d: usize) -> Option<FlowKey> {
        if self.keyed & (1 << d) == 0 {
            None
        } else if d == self.origin.index() {
            Some(self.key)
        } else {
            Some(self.rkey)
        }
    }

    /// Both directions' UFT keys, by direction index.
    fn ukeys(&self) -> [Option<FlowKey>; 2] {
        [self.ukey(0), self.ukey(1)]
    }

    /// The key layer `li`, holding this flow's folded state, sees packets
    /// going `dir` with: the flow's key; for the replies its reverse, or,
    /// at the layer whose stateful action's state is [`held`](Held), the
    /// reply's key as it arrives at the port (`rkey`), with the VNI
    /// cleared when the layer sees it decapsulated. State is folded only
    /// for a layer that sees exactly those keys (for the origin
    /// direction: nothing before it rewrote the addresses or ports, or the
    /// VNI); other layers keep entries in their own flow table.
    #[inline]
    fn fold_key(&self, li: usize, dir: Direction) -> FlowKey {
        if dir == self.origin {
            self.key
        } else {
            match &self.held {
                Some(h) if usize::from(h.layer) == li => h.reply_key(self.rkey),
                _ => self.key.reverse(),
            }
        }
    }

    /// Whether layer `li` holds folded state for this flow.
    #[inline]
    fn folds_at(&self, li: usize) -> bool {
        li < 32 && self.allowed & (1 << li) != 0
    }
}

/// A stateful action's per-flow state (a NAT translation) kept in the flow
/// record. The forward walk's layer sees the flow's own key; the replies
/// reach it with the key they arrive at the port with (the record's
/// reply UFT key, `FlowRec::rkey`), minus the VNI when the layers before
/// it decapsulated them: the SNAT case, where the NAT layer's reverse key
/// is the reversed post-NAT key with VNI 0 and the reply's UFT key the
/// same with the VPC's VNI. So the connection table finds the state from
/// both directions and the layer needs no entries of its own. A flow
/// whose reply key is not of that form (or has no UFT entry) keeps its
/// state in the layer's flow table instead (`Port::spill_held`).
///
/// Most flows hold none, so the translation lives in a side slab
/// (`Flows::held`) and the record keeps only this 8-byte [`HeldRef`] to it.
struct Held {
    /// The action that made it, to recognise it in a re-check.
    action_id: ActionId,
    desc: Arc<dyn ActionDesc>,
}

/// A flow record's reference to its [`Held`] translation, with what the
/// connection table's lookups read inline: the layer, and the form of the
/// key the replies reach it with.
#[derive(Clone, Copy)]
struct HeldRef {
    /// The translation's index in `Flows::held`.
    slot: u32,
    layer: u8,
    /// The layer sees the replies with VNI 0 (decapsulated).
    no_vni: bool,
}

impl HeldRef {
    #[inline]
    fn reply_key(&self, rkey: FlowKey) -> FlowKey {
        let mut k = rkey;
        if self.no_vni {
            k.vni = 0;
        }
        k
    }
}

/// Flow records in a slab: ids are indices, reused after a free; the
/// generation tells a live record from a stale reference to its slot.
/// The translations some of them hold ([`Held`]) are in a second slab
/// beside it, freed with their record.
struct Flows {
    slots: Vec<Option<FlowRec>>,
    gens: Vec<u32>,
    free: Vec<u32>,
    live: u32,
    held: Vec<Option<Held>>,
    held_free: Vec<u32>,
}

impl Flows {
    fn new() -> Self {
        Flows {
            slots: Vec::new(),
            gens: Vec::new(),
            free: Vec::new(),
            live: 0,
            held: Vec::new(),
            held_free: Vec::new(),
        }
    }

    /// Gives flow (id, gen), which holds no translation, `h` for layer
    /// `layer`. False (and `h` dropped) if the flow is gone or holds one.
    fn hold(&mut self, id: u32, gen: u32, layer: u8, h: Held) -> bool {
        if self.get(id, gen).is_none_or(|f| f.held.is_some()) {
            return false;
        }
        let slot = match self.held_free.pop() {
            Some(i) => {
                self.held[i as usize] = Some(h);
                i
            }
            None => {
                self.held.push(Some(h));
                (self.held.len() - 1) as u32
            }
        };
        if let Some(f) = self.get_mut(id, gen) {
            f.held = Some(HeldRef {
                slot,
                layer,
                no_vni: false,
            });
        }
        true
    }

    /// Takes flow (id, gen)'s translation out of the record and the slab.
    fn take_held(&mut self, id: u32, gen: u32) -> Option<(HeldRef, Held)> {
        let r = self.get_mut(id, gen)?.held.take()?;
        let h = self.held.get_mut(r.slot as usize)?.take()?;
        self.held_free.push(r.slot);
        Some((r, h))
    }

    /// The translation `f` (a record of this slab) holds for layer `li`.
    #[inline]
    fn held_at(&self, f: &FlowRec, li: usize) -> Option<&Held> {
        let r = f.held.filter(|h| usize::from(h.layer) == li)?;
        self.held.get(r.slot as usize)?.as_ref()
    }

    fn insert(&mut self, mut rec: FlowRec) -> (u32, u32) {
        let id = match self.free.pop() {
            Some(id) => id,
            None => {
                self.slots.push(None);
                self.gens.push(0);
                (self.slots.len() - 1) as u32
            }
        };
        let g = self.gens[id as usize].wrapping_add(1);
        self.gens[id as usize] = g;
        rec.gen = g;
        self.slots[id as usize] = Some(rec);
        self.live += 1;
        (id, g)
    }

    fn get(&self, id: u32, gen: u32) -> Option<&FlowRec> {
        match self.slots.get(id as usize) {
            Some(Some(r)) if r.gen == gen => Some(r),
            _ => None,
        }
    }

    #[inline]
    fn get_mut(&mut self, id: u32, gen: u32) -> Option<&mut FlowRec> {
        match self.slots.get_mut(id as usize) {
            Some(Some(r)) if r.gen == gen => Some(r),
            _ => None,
        }
    }

    /// Flow `id`'s key going `dir`, for the connection table's lookups.
    #[inline]
    fn key(&self, id: u32, dir: Direction) -> Option<FlowKey> {
        match self.slots.get(id as usize) {
            Some(Some(r)) => r.ukey(dir.index()),
            _ => None,
        }
    }

    /// The generation of live flow `id`.
    #[inline]
    fn gen_of(&self, id: u32) -> Option<u32> {
        match self.slots.get(id as usize) {
            Some(Some(r)) => Some(r.gen),
            _ => None,
        }
    }

    fn take(&mut self, id: u32) -> Option<FlowRec> {
        let mut r = self.slots.get_mut(id as usize)?.take()?;
        if let Some(h) = r.held.take() {
            if let Some(slot) = self.held.get_mut(h.slot as usize) {
                *slot = None;
                self.held_free.push(h.slot);
            }
        }
        self.free.push(id);
        self.live -= 1;
        Some(r)
    }
}

/// The outcome of looking a packet up in the UFT.
enum Hit {
    /// The flow's transform was applied (or failed, with a counted drop).
    Done(Verdict),
    /// An entry exists but cannot be used: made under an older epoch.
    Stale,
    /// An entry exists but does not apply to this packet (another
    /// underlay sender than the flow's).
    Miss,
    /// No entry for the key (or only one past its idle timeout, now gone).
    Absent,
}

/// How a walk of the layers is being made.
enum Mode<'a> {
    /// For a real packet; hairpins get the frame.
    Packet(&'a [u8]),
    /// For the reply a new flow will get: no packet, nothing sent.
    Reply,
    /// Re-checking a flow after a rule change, with the state it owned.
    Recheck(&'a mut Vec<(u16, Direction, FlowKey, LftEntry)>),
}

/// One layer's decision, recorded when tracing.
#[derive(Clone, Debug, Serialize)]
pub struct TraceStep {
    pub layer: String,
    /// `lft`, `rule N` or `default`.
    pub matched: String,
    pub action: String,
    pub transform: Option<Transform>,
    /// Headers after the layer, as the next layer sees them.
    #[serde(skip)]
    pub after: Headers,
}

enum WalkEnd {
    Pass,
    Drop(DropReason),
    Hairpin(PacketBuf),
    /// A layer holds state made under older rules for flow (id, gen).
    Stale(u32, u32),
}

struct Walk {
    dir: Direction,
    start: Headers,
    hdrs: Headers,
    meta: Meta,
    transform: Transform,
    flow: Option<(u32, u32)>,
    /// The key the walk's packet came in with, when the UFT holds no
    /// entry for it going `dir` (see `Port::slow_path`).
    absent: Option<FlowKey>,
    /// The key the layer whose stateful action's state this walk folded
    /// into the flow record (`FlowRec::held`) gave the replies: the
    /// reverse of what left it. `Port::install_reply` checks it against
    /// the reply's UFT key.
    held_rev: Option<FlowKey>,
    /// The layer and rule that decided: the stateful action that made the
    /// flow, or the deny (for flow logs).
    decider: Option<(usize, Option<RuleId>)>,
    trace: Option<Vec<TraceStep>>,
}

pub struct Port {
    cfg: PortConfig,
    layers: Vec<Layer>,
    epoch: u64,
    /// Both directions' keys of every flow, to its record.
    uft: Conns,
    flows: Flows,
    /// Half-open TCP flows in creation order: eviction candidates.
    half_open: VecDeque<(u32, u32)>,
    expire_cursor: usize,
    /// When [`Port::expire_paced`] last swept.
    swept_at: Moment,
    stats: PortStats,
    clock: Box<dyn Clock>,
    hasher: FlowHashBuilder,
    encaps: EncapCache,
    /// The guest's egress limit, checked before anything else on `Out`.
    rate: Option<RateLimiter>,
    /// Flow logging, when enabled (see [`crate::flowlog`]).
    flow_log: Option<FlowLogger>,
}

/// Errors from the control operations on a port.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PortError {
    #[error("no layer named '{0}'")]
    NoLayer(String),
    #[error("layer '{0}' already exists")]
    DuplicateLayer(String),
    #[error("no rule {id} in layer '{layer}' direction {dir}")]
    NoRule {
        layer: String,
        dir: Direction,
        id: u64,
    },
}

impl Port {
    pub fn new(cfg: PortConfig) -> Port {
        Port::with_clock(cfg, Box::new(MonotonicClock::new()))
    }

    pub fn with_clock(cfg: PortConfig, clock: Box<dyn Clock>) -> Port {
        let hasher = FlowHashBuilder::random();
        Port {
            cfg,
            layers: Vec::new(),
            epoch: 1,
            uft: Conns::new(hasher),
            flows: Flows::new(),
            half_open: VecDeque::new(),
            expire_cursor: 0,
            swept_at: 0,
            stats: PortStats::default(),
            clock,
            hasher,
            encaps: EncapCache::default(),
            rate: None,
            flow_log: None,
        }
    }

    pub fn name(&self) -> &str {
        &self.cfg.name
    }

    pub fn config(&self) -> &PortConfig {
        &self.cfg
    }

    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Sets (or with `None` removes) the limit on what the guest sends.
    /// A new limit starts with full buckets. The caller validates it
    /// ([`RateLimit::validate`]).
    pub fn set_rate_limit(&mut self, limit: Option<RateLimit>) {
        self.rate = limit.map(RateLimiter::new);
    }

    pub fn rate_limit(&self) -> Option<&RateLimit> {
        self.rate.as_ref().map(|r| r.limit())
    }

    /// Enables flow logging into `log` (a queue allocated once, by the
    /// caller, and drained by it), or with `None` disables it. Records
    /// start with the flows that end from now on.
    pub fn set_flow_log(&mut self, log: Option<(FlowLogConfig, Arc<FlowLog>)>) {
        let now = self.clock.now();
        let flows = self.flows.slots.len();
        self.flow_log = log.map(|(cfg, q)| FlowLogger::new(cfg, q, now, flows));
    }

    /// The queue flow records go to, when logging is on.
    pub fn flow_log(&self) -> Option<&Arc<FlowLog>> {
        self.flow_log.as_ref().map(|l| l.log())
    }

    pub fn flow_log_config(&self) -> Option<FlowLogConfig> {
        self.flow_log.as_ref().map(|l| l.cfg)
    }

    /// The flow log's counters (zero when logging is off).
    pub fn flow_log_stats(&self) -> FlowLogStats {
        self.flow_log
            .as_ref()
            .map_or_else(FlowLogStats::default, |l| l.log().stats())
    }

    pub fn stats(&self) -> &PortStats {
        &self.stats
    }

    pub fn now(&self) -> Moment {
        self.clock.now()
    }

    /// Appends a layer: outbound packets meet layers in the order added,
    /// inbound packets in the reverse order.
    pub fn add_layer(&mut self, cfg: LayerConfig) -> Result<(), PortError> {
        if self.layers.iter().any(|l| l.name == cfg.name) {
            return Err(PortError::DuplicateLayer(cfg.name));
        }
        self.layers.push(Layer::new(cfg, self.hasher));
        self.bump_epoch(None);
        Ok(())
    }

    pub fn layers(&self) -> &[Layer] {
        &self.layers
    }

    fn layer_index(&self, name: &str) -> Result<usize, PortError> {
        self.layers
            .iter()
            .position(|l| l.name == name)
            .ok_or_else(|| PortError::NoLayer(name.to_string()))
    }

    fn bump_epoch(&mut self, layer: Option<usize>) {
        self.epoch += 1;
        if let Some(i) = layer {
            self.layers[i].changed = self.epoch;
        }
    }

    pub fn add_rule(
        &mut self,
        layer: &str,
        dir: Direction,
        rule: Rule,
    ) -> Result<RuleId, PortError> {
        let i = self.layer_index(layer)?;
        let id = self.layers[i].alloc_rule_id();
        self.layers[i].rules[dir.index()].insert(id, rule);
        self.bump_epoch(Some(i));
        Ok(id)
    }

    pub fn remove_rule(
        &mut self,
        layer: &str,
        dir: Direction,
        id: RuleId,
    ) -> Result<Rule, PortError> {
        let i = self.layer_index(layer)?;
        let r = self.layers[i].rules[dir.index()]
            .remove(id)
            .ok_or(PortError::NoRule {
                layer: layer.to_string(),
                dir,
                id: id.0,
            })?;
        self.bump_epoch(Some(i));
        Ok(r)
    }

    /// Replaces every rule of a layer, both directions, in one step: no
    /// packet sees a mix of the old and new rule-sets.
    pub fn set_rules(
        &mut self,
        layer: &str,
        inbound: Vec<Rule>,
        outbound: Vec<Rule>,
    ) -> Result<Vec<RuleId>, PortError> {
        let i = self.layer_index(layer)?;
        let l = &mut self.layers[i];
        let mut ids = Vec::with_capacity(inbound.len() + outbound.len());
        for (dir, rules) in [(Direction::In, inbound), (Direction::Out, outbound)] {
            let with_ids: Vec<_> = rules
                .into_iter()
                .map(|r| {
                    let id = l.alloc_rule_id();
                    ids.push(id);
                    (id, r)
                })
                .collect();
            l.rules[dir.index()] = crate::rule::RuleTable::from_rules(with_ids);
        }
        self.bump_epoch(Some(i));
        Ok(ids)
    }

    pub fn set_default(
        &mut self,
        layer: &str,
        dir: Direction,
        d: DefaultAction,
    ) -> Result<(), PortError> {
        let i = self.layer_index(layer)?;
        self.layers[i].default[dir.index()] = d;
        self.bump_epoch(Some(i));
        Ok(())
    }

    pub fn flow_count(&self) -> u32 {
        self.flows.live
    }

    pub fn uft_len(&self, dir: Direction) -> usize {
        self.uft.len(dir)
    }

    /// Entries in layer `layer`'s own flow table going `dir`. State folded
    /// into flow records (a stateful allow, a held NAT translation) is not
    /// counted: [`Port::dump_layers`] shows both.
    pub fn layer_table_len(&self, layer: &str, dir: Direction) -> Result<usize, PortError> {
        Ok(self.layers[self.layer_index(layer)?].lft[dir.index()].len())
    }

    /// The live flow (id, gen) whose packets going `dir` have key `k`.
    #[inline]
    fn lookup(&self, dir: Direction, k: &FlowKey) -> Option<(u32, u32)> {
        let flows = &self.flows;
        let id = self.uft.find(dir, k, |id| flows.key(id, dir))?;
        Some((id, flows.gen_of(id)?))
    }

    pub fn layer_stats(&self, layer: &str, dir: Direction) -> Result<LayerDirStats, PortError> {
        Ok(self.layers[self.layer_index(layer)?].stats(dir))
    }

    pub fn rule_hits(&self, layer: &str, dir: Direction, id: RuleId) -> Option<u64> {
        let l = &self.layers[self.layer_index(layer).ok()?];
        l.rules[dir.index()]
            .entries()
            .iter()
            .find(|e| e.id == id)
            .map(|e| e.hits)
    }

    /// Removes every flow (UFT and LFT state alike).
    pub fn clear_flows(&mut self) {
        for id in 0..self.flows.slots.len() as u32 {
            if self.flows.slots[id as usize].is_some() {
                self.end_flow(id, Some(CloseReason::Cleared));
            }
        }
        self.half_open.clear();
    }

    // ----------------------------------------------------------------
    // Packet processing

    /// Processes one packet. See the module doc for the paths it takes.
    pub fn process(&mut self, dir: Direction, pkt: &mut PacketBuf) -> Verdict {
        let now = self.clock.now();
        self.process_at(dir, pkt, None, now)
    }

    /// Processes a batch, reading the clock once. `verdicts` is cleared
    /// and gets one verdict per packet, in order; give it the capacity of
    /// the batch and nothing is allocated on the fast path.
    pub fn process_batch(
        &mut self,
        dir: Direction,
        pkts: &mut [PacketBuf],
        verdicts: &mut Vec<Verdict>,
    ) {
        let now = self.clock.now();
        self.process_burst(dir, pkts, now, verdicts);
    }

    /// Processes a burst at `now` (a moment of this port's clock,
    /// [`Port::now`], read once by the caller for a whole round): what a
    /// switch calls once per port per burst. `verdicts` is cleared and gets
    /// one verdict per packet, in order; give it the capacity of the burst
    /// and nothing is allocated on the fast path.
    pub fn process_burst(
        &mut self,
        dir: Direction,
        pkts: &mut [PacketBuf],
        now: Moment,
        verdicts: &mut Vec<Verdict>,
    ) {
        verdicts.clear();
        for p in pkts.iter_mut() {
            verdicts.push(self.process_at(dir, p, None, now));
        }
    }

    /// [`Port::process_burst`] for inbound frames the caller has parsed
    /// already: `parsed[i]` is [`headers::parse_fast`] of `pkts[i]` in
    /// [`ParseMode::Geneve`] (what a switch's outer checks read), or
    /// `None`. The port does not parse those frames again for the hit
    /// path. A port whose inbound frames are not Geneve, and an outbound
    /// burst, ignore `parsed`.
    pub fn process_burst_parsed(
        &mut self,
        dir: Direction,
        pkts: &mut [PacketBuf],
        parsed: &[Option<headers::FastParsed>],
        now: Moment,
        verdicts: &mut Vec<Verdict>,
    ) {
        verdicts.clear();
        let usable = dir == Direction::In && self.cfg.inbound == ParseMode::Geneve;
        for (i, p) in pkts.iter_mut().enumerate() {
            let pre = parsed.get(i).filter(|_| usable).copied().flatten();
            verdicts.push(self.process_at(dir, p, pre, now));
        }
    }

    /// `pre`: the frame's fast parse in this direction's mode, when the
    /// caller has it (else it is made here).
    #[inline]
    fn process_at(
        &mut self,
        dir: Direction,
        pkt: &mut PacketBuf,
        pre: Option<headers::FastParsed>,
        now: Moment,
    ) -> Verdict {
        let d = dir.index();
        let len = pkt.len() as u64;
        self.stats.dir[d].packets += 1;
        self.stats.dir[d].bytes += len;
        if dir == Direction::Out {
            if let Some(r) = &mut self.rate {
                if !r.admit(now, pkt.len()) {
                    return self.dropped(dir, DropReason::RateLimited);
                }
            }
        }
        let mode = if dir == Direction::In {
            self.cfg.inbound
        } else {
            ParseMode::Plain
        };
        // The hit path first: for the commonest frames the flow key and
        // offsets come straight from the bytes, and a hit never builds the
        // full `Headers`. What it cannot read (or what an oversized frame
        // needs answered) goes through the full parse below.
        let mut fast_tried = None;
        // The UFT was found to hold no entry for the packet's key.
        let mut absent = false;
        // A frame from another source than the guest's never takes the
        // flow table (see `PortConfig::source_mac`).
        let from_source = dir == Direction::In
            || self.cfg.source_mac.is_none_or(|m| {
                // As an array: two integer compares, not a memcmp call.
                pkt.as_slice()
                    .get(6..12)
                    .and_then(|s| <[u8; 6]>::try_from(s).ok())
                    == Some(m)
            });
        if !from_source {
            fast_tried = Some(false);
        }
        if from_source && !self.oversized(dir, pkt) {
            if let Some(f) = pre.or_else(|| headers::parse_fast(pkt.as_slice(), mode)) {
                match self.try_hit(dir, &f.key, pkt, &f.off, f.tcp_flags, len, now) {
                    Hit::Done(v) => {
                        self.stats.dir[d].uft_hits += 1;
                        return v;
                    }
                    Hit::Stale => fast_tried = Some(true),
                    Hit::Miss => fast_tried = Some(false),
                    Hit::Absent => {
                        fast_tried = Some(false);
                        absent = true;
                    }
                }
            }
        }
        let parsed = match headers::parse(pkt.as_slice(), mode) {
            Ok(p) => p,
            Err(e) => return self.dropped(dir, DropReason::Malformed(e)),
        };
        if dir == Direction::Out {
            if let Some(m) = self.cfg.mtu.as_ref().filter(|_| self.oversized(dir, pkt)) {
                let too_big = m.too_big.clone();
                return match too_big.reply(&parsed.hdrs, pkt.as_slice(), &Meta::default()) {
                    Ok(reply) => {
                        self.stats.dir[d].hairpins += 1;
                        Verdict::Hairpin(reply)
                    }
                    Err(GenError::Refused(r)) => self.dropped(dir, DropReason::Policy(r)),
                    Err(GenError::Exhausted(_)) => self.dropped(dir, DropReason::HairpinFailed),
                };
            }
        }
        if let Some(ip) = parsed.hdrs.inner.ip() {
            if ip.frag != Frag::None {
                return self.dropped(dir, DropReason::Fragment);
            }
        }
        if headers::quoted::is_error(&parsed.hdrs.inner.l4) {
            if let Some(v) = self.related(dir, pkt, &parsed, now) {
                return v;
            }
        }
        let key = FlowKey::of(&parsed.hdrs);
        // Whether an entry exists that could not be used (stale epoch). A
        // frame the fast parse read has been looked up already, with the
        // same key (its contract): not again.
        let mut stale = fast_tried.unwrap_or(false);
        if let Some(k) = key.as_ref().filter(|_| fast_tried.is_none()) {
            let flags = tcp_flags(&parsed.hdrs);
            match self.try_hit(dir, k, pkt, &parsed.off, flags, len, now) {
                Hit::Done(v) => {
                    self.stats.dir[d].uft_hits += 1;
                    return v;
                }
                Hit::Stale => stale = true,
                Hit::Miss => {}
                Hit::Absent => absent = true,
            }
        }
        self.stats.dir[d].uft_misses += 1;
        let absent = key.filter(|_| absent && !stale);
        // Timed by the port's clock (two reads per miss, none per hit).
        let t0 = self.clock.now();
        let v = self.slow_path(dir, pkt, &parsed, key, absent, stale, now);
        self.stats.slow_path_ns += self.clock.now().saturating_sub(t0);
        v
    }

    /// Whether an outbound frame is over the port's MTU (a super-frame
    /// counts as the segments it will be cut into).
    #[inline]
    fn oversized(&self, dir: Direction, pkt: &PacketBuf) -> bool {
        let Some(m) = self.cfg.mtu.as_ref().filter(|_| dir == Direction::Out) else {
            return false;
        };
        let frame_len = pkt
            .gso()
            .map_or(pkt.len(), |g| usize::from(g.hdr_len) + usize::from(g.mss));
        frame_len > m.max_frame
    }

    /// Applies the flow's compiled transform if `k` has a usable UFT entry.
    /// `off` and `tcp_flags` are the packet's, from either parse.
    #[allow(clippy::too_many_arguments)]
    #[inline]
    fn try_hit(
        &mut self,
        dir: Direction,
        k: &FlowKey,
        pkt: &mut PacketBuf,
        off: &Offsets,
        tcp_flags: Option<u8>,
        len: u64,
        now: Moment,
    ) -> Hit {
        let d = dir.index();
        let Some((id, gen)) = self.lookup(dir, k) else {
            return Hit::Absent;
        };
        let epoch = self.epoch;
        let Some(f) = self.flows.get_mut(id, gen) else {
            return Hit::Stale;
        };
        if self.cfg.expiry.is_expired(f.class, f.last_hit, now) {
            // Idle past its timeout: the flow is gone whether or not the
            // sweep has reached it yet, and this packet is a new one.
            self.expire_flow(id);
            return Hit::Absent;
        }
        let usable = |x: &&Compiled| f.epoch[d] == epoch && x.deps_current();
        let Some(x) = f.xform[d].as_ref().filter(usable) else {
            return Hit::Stale;
        };
        if !x.outer_matches(pkt.as_slice(), off) {
            // Another underlay sender than the flow's: this packet goes
            // through the layers, which decide about it; the flow stays.
            return Hit::Miss;
        }
        if let Err(e) = x.apply(pkt, off) {
            return Hit::Done(self.dropped(dir, transform_drop(e)));
        }
        f.last_hit = now;
        f.packets[d] += 1;
        f.bytes[d] += len;
        if let (Some(st), Some(flags)) = (f.tcp, tcp_flags) {
            let side = if dir == f.origin {
                Side::Originator
            } else {
                Side::Responder
            };
            let next = st.next(side, flags);
            if next != st {
                f.tcp = Some(next);
                f.class = next.class();
            }
        }
        self.stats.dir[d].forwarded += 1;
        Hit::Done(Verdict::Forward)
    }

    /// An ICMP error about one of the port's flows (RFC 792, RFC 4443):
    /// it passes as that flow's packets do, rewritten the same way, so a
    /// guest behind NAT still learns of an unreachable port or a smaller
    /// path MTU. `None` when the quoted packet belongs to no current flow:
    /// then the error is an ordinary packet to the layers.
    fn related(
        &mut self,
        dir: Direction,
        pkt: &mut PacketBuf,
        parsed: &Parsed,
        now: Moment,
    ) -> Option<Verdict> {
        let d = dir.index();
        let v6 = matches!(parsed.hdrs.inner.l3, L3::Ipv6(_));
        let icmp = pkt
            .as_slice()
            .get(usize::from(parsed.off.inner_l4)..usize::from(parsed.off.inner_end))?;
        let q = headers::quoted::quoted(icmp, v6)?;
        let k = q.reply_key(&parsed.hdrs);
        let (id, gen) = self.lookup(dir, &k)?;
        let epoch = self.epoch;
        let f = self.flows.get_mut(id, gen)?;
        if self.cfg.expiry.is_expired(f.class, f.last_hit, now) {
            // An error about a flow that has timed out relates to nothing.
            self.expire_flow(id);
            return None;
        }
        let x = f.xform[d]
            .as_ref()
            .filter(|x| f.epoch[d] == epoch && x.deps_current())?;
        if !x.outer_matches(pkt.as_slice(), &parsed.off) {
            return None;
        }
        let r = x.apply_related(pkt, &parsed.off, &q);
        self.stats.related += 1;
        Some(match r {
            Ok(()) => {
                self.stats.dir[d].forwarded += 1;
                Verdict::Forward
            }
            Err(e) => self.dropped(dir, transform_drop(e)),
        })
    }

    fn dropped(&mut self, dir: Direction, r: DropReason) -> Verdict {
        self.stats.dir[dir.index()].dropped += 1;
        self.stats.count_drop(r);
        Verdict::Drop(r)
    }

    /// `absent`: the packet's key, when the UFT was just found to hold no
    /// entry for it going `dir` (lookups the walk and the install can
    /// skip; nothing the walk does adds one).
    #[allow(clippy::too_many_arguments)]
    fn slow_path(
        &mut self,
        dir: Direction,
        pkt: &mut PacketBuf,
        parsed: &Parsed,
        key: Option<FlowKey>,
        absent: Option<FlowKey>,
        stale: bool,
        now: Moment,
    ) -> Verdict {
        let d = dir.index();
        // A UFT entry exists but is stale: re-check its flow, then use
        // whatever the re-check left.
        if let Some(k) = key.as_ref().filter(|_| stale) {
            if let Some((id, gen)) = self.lookup(dir, k) {
                self.recheck(id, gen, now);
                let len = pkt.len() as u64;
                let flags = tcp_flags(&parsed.hdrs);
                if let Hit::Done(v) = self.try_hit(dir, k, pkt, &parsed.off, flags, len, now) {
                    return v;
                }
            }
        }

        let mut w = Walk::new(dir, parsed.hdrs, false);
        w.absent = absent;
        let mut end = self.walk(&mut w, Mode::Packet(pkt.as_slice()), now);
        if let WalkEnd::Stale(id, gen) = end {
            // State of an existing flow was made under older rules:
            // re-check that flow, then decide this packet afresh (the
            // re-check may have keyed it).
            self.recheck(id, gen, now);
            w = Walk::new(dir, parsed.hdrs, false);
            end = self.walk(&mut w, Mode::Packet(pkt.as_slice()), now);
        }
        match end {
            WalkEnd::Pass => {}
            WalkEnd::Drop(r) => {
                self.abandon(&w);
                if self.flow_log.is_some() {
                    self.log_denied(&w, key, r, pkt.len() as u64, now);
                }
                return self.dropped(dir, r);
            }
            WalkEnd::Hairpin(reply) => {
                self.abandon(&w);
                self.stats.dir[d].hairpins += 1;
                return Verdict::Hairpin(reply);
            }
            WalkEnd::Stale(..) => {
                // Still stale after a re-check: the state belongs to a flow
                // that no longer exists. Refuse rather than loop.
                self.abandon(&w);
                return self.dropped(dir, DropReason::Denied);
            }
        }

        let compiled = match Compiled::with_cache(&w.transform, &parsed.hdrs, &mut self.encaps) {
            Ok(c) => c,
            Err(e) => {
                self.abandon(&w);
                return self.dropped(dir, transform_drop(e));
            }
        };
        let Some(k) = key else {
            // Not IP (e.g. ARP the layers let through): no flow to cache.
            if let Err(e) = compiled.apply(pkt, &parsed.off) {
                return self.dropped(dir, transform_drop(e));
            }
            self.stats.dir[d].forwarded += 1;
            return Verdict::Forward;
        };
        let (id, gen) = match w.flow {
            Some(f) => f,
            None => match self.new_flow(dir, &parsed.hdrs, k, now) {
                Ok(f) => f,
                Err(r) => return self.dropped(dir, r),
            },
        };
        // The flow is installed before the packet is rewritten: a failure
        // to apply (no headroom) is this packet's, not the flow's.
        let len = pkt.len() as u64;
        let applied = compiled.apply(pkt, &parsed.off);
        let holder = (w.absent == Some(k)).then_some(None);
        self.install(dir, k, compiled, id, gen, holder);
        self.install_reply(&w, id, gen, now);
        self.note_decision(&w, id, gen, &k);
        if let Err(e) = applied {
            return self.dropped(dir, transform_drop(e));
        }
        if let Some(f) = self.flows.get_mut(id, gen) {
            f.last_hit = now;
            f.packets[d] += 1;
            f.bytes[d] += len;
            if let (Some(st), L4::Tcp(t)) = (f.tcp, parsed.hdrs.inner.l4) {
                if f.packets[0] + f.packets[1] > 1 {
                    let side = if dir == f.origin {
                        Side::Originator
                    } else {
                        Side::Responder
                    };
                    let next = st.next(side, t.flags);
                    f.tcp = Some(next);
                    f.class = next.class();
                }
            }
        }
        self.stats.dir[d].forwarded += 1;
        Verdict::Forward
    }

    /// Gives flow (id, gen) the UFT entry `k` going `dir`. `holder`: what
    /// a lookup of `k` going `dir` would return, when the caller knows.
    fn install(
        &mut self,
        dir: Direction,
        k: FlowKey,
        xform: Compiled,
        id: u32,
        gen: u32,
        holder: Option<Option<(u32, u32)>>,
    ) {
        let d = dir.index();
        let epoch = self.epoch;
        match self.flows.get(id, gen) {
            // The origin direction's key is the flow's own key: a packet
            // that found this flow's state with another key (at a layer)
            // takes the slow path again, rather than re-key the flow.
            Some(f) if dir != f.origin || k == f.key => {}
            _ => return,
        }
        // Another flow holding this key going `dir` gives it up (its
        // packets that way now walk the layers).
        let holder = holder.unwrap_or_else(|| self.lookup(dir, &k));
        if let Some((other, ogen)) = holder.filter(|&(o, _)| o != id) {
            // Its translation is found by the key it gives up no more.
            self.spill_held(other, ogen, None);
            self.uft.remove(dir, &k, other);
            if let Some(o) = self.flows.get_mut(other, ogen) {
                o.keyed &= !(1 << d);
                o.xform[d] = None;
            }
        }
        if self.flows.get(id, gen).is_some_and(|f| {
            f.held.is_some() && dir != f.origin && f.ukey(d).is_some_and(|o| o != k)
        }) {
            // Re-keyed replies: the translation goes where the old key
            // does not matter.
            self.spill_held(id, gen, None);
        }
        let Some(f) = self.flows.get_mut(id, gen) else {
            return;
        };
        let old = f.ukey(d);
        f.keyed |= 1 << d;
        if dir != f.origin {
            f.rkey = k;
        }
        f.xform[d] = Some(xform);
        f.epoch[d] = epoch;
        match old {
            Some(o) if o == k => {}
            Some(o) => {
                self.uft.remove(dir, &o, id);
                self.uft.insert(dir, &k, id);
            }
            None => self.uft.insert(dir, &k, id),
        }
    }

    /// Makes the UFT entry for the reply to the flow `w` just walked, and
    /// settles a translation `w` folded into the flow record: kept there
    /// when the reply's UFT key is the key the layer gave the replies
    /// (minus the VNI the reply arrives with), else spilled into the
    /// layer's flow table as two entries.
    fn install_reply(&mut self, w: &Walk, id: u32, gen: u32, now: Moment) {
        let reply = reply_headers(&w.hdrs).and_then(|r| Some((r, FlowKey::of(&r)?)));
        if let Some(rev) = w.held_rev {
            let fits =
                reply.is_some_and(|(_, rk)| rk == rev || (rk.vni != 0 && rk.with_vni(0) == rev));
            match self.flows.get_mut(id, gen) {
                Some(f) if fits && f.keyed & (1 << w.dir.reverse().index()) == 0 => {
                    if let (Some(h), Some((_, rk))) = (&mut f.held, reply) {
                        h.no_vni = rk != rev;
                        // The key the reply walk finds the state with.
                        f.rkey = rk;
                    }
                }
                _ => self.spill_held(id, gen, Some(rev)),
            }
        }
        if let Some((reply, rk)) = reply {
            self.install_reply_walk(w.dir.reverse(), reply, rk, id, gen, now);
        }
        if w.held_rev.is_some() {
            let rdir = w.dir.reverse();
            let keyed = self
                .flows
                .get(id, gen)
                .is_some_and(|f| f.held.is_none() || f.keyed & (1 << rdir.index()) != 0);
            if !keyed {
                // No UFT entry for the replies: the layer's table finds
                // their state, as for any flow the record cannot hold.
                self.spill_held(id, gen, None);
            }
        }
    }

    fn install_reply_walk(
        &mut self,
        rdir: Direction,
        reply: Headers,
        rk: FlowKey,
        id: u32,
        gen: u32,
        now: Moment,
    ) {
        let holder = self.lookup(rdir, &rk);
        if let Some((eid, egen)) = holder {
            if eid != id || egen != gen {
                // Another live flow's reply already has this key: leave it.
                if self.flow_live(eid, egen, now) {
                    return;
                }
            }
        }
        let mut rw = Walk::new(rdir, reply, false);
        rw.flow = Some((id, gen));
        if let WalkEnd::Pass = self.walk(&mut rw, Mode::Reply, now) {
            if let Ok(c) = Compiled::with_cache(&rw.transform, &reply, &mut self.encaps) {
                // The walk removes entries at most (expired flows): the
                // holder found is still the one to displace, if any.
                self.install(rdir, rk, c, id, gen, Some(holder));
            }
        }
    }

    /// Moves flow (id, gen)'s [`Held`] translation into its layer's flow
    /// table, as two entries (the flow's key, and `rev` or the key the
    /// record gave the replies), which the flow then owns: for a flow
    /// whose replies the record cannot find it for.
    fn spill_held(&mut self, id: u32, gen: u32, rev: Option<FlowKey>) {
        let Some((r, h)) = self.flows.take_held(id, gen) else {
            return;
        };
        let Some(f) = self.flows.get_mut(id, gen) else {
            return;
        };
        let li = usize::from(r.layer);
        let rev = rev.unwrap_or_else(|| r.reply_key(f.rkey));
        f.allowed &= !(1 << li);
        let (origin, key, epoch) = (f.origin, f.key, f.allowed_epoch);
        let state = LftState::Desc(h.desc);
        // A table too full for them leaves the flow without them: its
        // packets the state is not found for are decided by the rules.
        let fwd = self.add_lft(
            li,
            origin,
            key,
            (id, gen),
            state.clone(),
            h.action_id,
            epoch,
        );
        let rev = self.add_lft(
            li,
            origin.reverse(),
            rev,
            (id, gen),
            state,
            h.action_id,
            epoch,
        );
        if let Some(f) = self.flows.get_mut(id, gen) {
            f.lft
                .extend((fwd.ok().flatten().into_iter()).chain(rev.ok().flatten()));
        }
    }

    fn new_flow(
        &mut self,
        dir: Direction,
        h: &Headers,
        key: FlowKey,
        now: Moment,
    ) -> Result<(u32, u32), DropReason> {
        if self.flows.live >= self.cfg.flow_limit && !self.make_room(now) {
            return Err(DropReason::FlowTableFull);
        }
        let tcp = match h.inner.l4 {
            L4::Tcp(t) => Some(TcpState::initial(t.flags)),
            _ => None,
        };
        let rec = FlowRec::start(dir, h, key, tcp, now);
        let class = rec.class;
        let f = self.flows.insert(rec);
        if let Some(l) = &mut self.flow_log {
            l.start(f.0, now);
        }
        self.stats.flows_created += 1;
        if class == ExpiryClass::TcpHalfOpen {
            self.note_half_open(f);
        }
        Ok(f)
    }

    /// Queues a half-open flow for eviction when the table is full. The
    /// queue holds at most one entry per flow slot: the oldest entry goes
    /// first (it is stale by then, or the flow the oldest).
    fn note_half_open(&mut self, f: (u32, u32)) {
        if self.half_open.len() >= self.cfg.flow_limit as usize {
            self.half_open.pop_front();
        }
        self.half_open.push_back(f);
    }

    /// Frees one flow slot: an expired flow if one is found, else the
    /// oldest half-open TCP flow. Established flows are never evicted.
    fn make_room(&mut self, now: Moment) -> bool {
        if self.expire_step(now, 256) > 0 {
            return true;
        }
        while let Some((id, gen)) = self.half_open.pop_front() {
            let still_half_open = matches!(
                self.flows.get_mut(id, gen),
                Some(f) if f.class == ExpiryClass::TcpHalfOpen
            );
            if still_half_open {
                self.end_flow(id, Some(CloseReason::Evicted));
                self.stats.flows_evicted += 1;
                return true;
            }
        }
        false
    }

    /// Undoes what a failed walk made: a flow record it created, and the
    /// LFT state that record owned.
    fn abandon(&mut self, w: &Walk) {
        if let Some((id, gen)) = w.flow {
            let fresh = matches!(self.flows.get_mut(id, gen), Some(f) if f.keyed == 0);
            if fresh {
                self.remove_flow(id);
                self.stats.flows_created -= 1;
            }
        }
    }

    /// Whether flow (id, gen) exists and is within its idle timeout at
    /// `now`. A flow found past its timeout is removed here, as the sweep
    /// would have: every lookup of flow state goes through this or the
    /// same check, so an idle flow is never used late.
    fn flow_live(&mut self, id: u32, gen: u32, now: Moment) -> bool {
        let Some(f) = self.flows.get(id, gen) else {
            return false;
        };
        if self.cfg.expiry.is_expired(f.class, f.last_hit, now) {
            self.expire_flow(id);
            return false;
        }
        true
    }

    /// Removes a flow found idle past its timeout.
    fn expire_flow(&mut self, id: u32) {
        let reason = self.flows.slots[id as usize].as_ref().map(|f| match f.tcp {
            Some(TcpState::Closed) => CloseReason::Rst,
            Some(TcpState::FinWait { .. } | TcpState::LastAck { .. } | TcpState::TimeWait) => {
                CloseReason::Fin
            }
            _ => CloseReason::Idle,
        });
        self.end_flow(id, reason);
        self.stats.flows_expired += 1;
    }

    /// Removes a flow that ends for `reason`, logging it.
    fn end_flow(&mut self, id: u32, reason: Option<CloseReason>) {
        if let (Some(l), Some(reason)) = (&self.flow_log, reason) {
            // A flow that ends has its last packet as its end: no clock read.
            if let Some(r) = self.flows.slots[id as usize]
                .as_ref()
                .and_then(|f| flow_record(f, &l.state(id), reason, f.last_hit))
            {
                l.push(r);
            }
        }
        self.remove_flow(id);
    }

    /// Remembers, for the flow's records, which layer and rule decided it
    /// and what NAT made of its first packet.
    fn note_decision(&mut self, w: &Walk, id: u32, gen: u32, k: &FlowKey) {
        if self.flow_log.is_none() || self.flows.get(id, gen).is_none() {
            return;
        }
        let decider = self.decider(w);
        let Some(l) = &mut self.flow_log else {
            return;
        };
        let s = l.state_mut(id);
        s.decider = decider;
        let after = FlowKey::of(&w.hdrs);
        s.vni = after.map_or(k.vni, |a| a.vni.max(k.vni));
        s.translated = after.filter(|a| {
            (a.src, a.dst, a.src_port, a.dst_port) != (k.src, k.dst, k.src_port, k.dst_port)
        });
    }

    fn decider(&self, w: &Walk) -> Decider {
        w.decider
            .map_or_else(Decider::default, |(li, rule)| Decider {
                layer: LayerName::new(&self.layers[li].name),
                rule,
            })
    }

    /// Logs a first packet the layers denied (rate-limited).
    fn log_denied(&mut self, w: &Walk, key: Option<FlowKey>, r: DropReason, len: u64, now: Moment) {
        let denied = matches!(
            r,
            DropReason::Denied | DropReason::DefaultDenied | DropReason::Policy(_)
        );
        let Some(k) = key.filter(|_| denied) else {
            return;
        };
        let decider = self.decider(w);
        let Some(l) = &mut self.flow_log else { return };
        let mut packets = [0; 2];
        packets[w.dir.index()] = 1;
        let mut bytes = [0; 2];
        bytes[w.dir.index()] = len;
        l.push_denied(
            FlowRecord {
                key: k,
                origin: w.dir,
                vni: k.vni,
                start: now,
                end: now,
                packets,
                bytes,
                decision: Decision::Deny,
                decider,
                translated: None,
                tcp: None,
                reason: CloseReason::Denied,
            },
            now,
        );
    }

    fn remove_flow(&mut self, id: u32) {
        let Some(f) = self.flows.take(id) else { return };
        for (dir, k) in [Direction::In, Direction::Out].into_iter().zip(f.ukeys()) {
            if let Some(k) = k {
                self.uft.remove(dir, &k, id);
            }
        }
        for (layer, dir, k) in f.lft.iter() {
            let t = &mut self.layers[usize::from(*layer)].lft[dir.index()];
            if matches!(t.get(k), Some(e) if e.flow == id && e.flow_gen == f.gen) {
                t.remove(k);
            }
        }
    }

    /// Re-checks a flow after a rule change (see the module doc).
    fn recheck(&mut self, id: u32, gen: u32, now: Moment) {
        self.stats.revalidations += 1;
        let held = self.flows.take_held(id, gen);
        let Some(f) = self.flows.get_mut(id, gen) else {
            return;
        };
        let origin = f.origin;
        let start = f.origin_hdrs.headers(&f.key);
        let owned = std::mem::take(&mut f.lft);
        let ufts = f.ukeys();
        f.keyed = 0;
        f.xform = [None, None];
        // Folded layer state is decided afresh too.
        f.allowed = 0;
        // Lift the flow's state out of the layers, so the walk decides
        // afresh but can hand a stateful action back what it allocated.
        let mut kept = Vec::new();
        if let Some((r, h)) = held {
            // As the entry it stands for: the flow's key going its way.
            let e = LftEntry {
                flow: id,
                flow_gen: gen,
                state: LftState::Desc(h.desc),
                epoch: f.allowed_epoch,
                action_id: h.action_id,
            };
            kept.push((u16::from(r.layer), origin, f.key, e));
        }
        for &(layer, dir, k) in owned.iter() {
            let t = &mut self.layers[usize::from(layer)].lft[dir.index()];
            if matches!(t.get(&k), Some(e) if e.flow == id && e.flow_gen == gen) {
                if let Some(e) = t.remove(&k) {
                    kept.push((layer, dir, k, e));
                }
            }
        }
        for (dir, k) in [Direction::In, Direction::Out].into_iter().zip(ufts) {
            if let Some(k) = k {
                self.uft.remove(dir, &k, id);
            }
        }
        let mut w = Walk::new(origin, start, false);
        w.flow = Some((id, gen));
        let ok = matches!(
            self.walk(&mut w, Mode::Recheck(&mut kept), now),
            WalkEnd::Pass
        );
        drop(kept);
        if !ok {
            self.end_flow(id, Some(CloseReason::Revoked));
            return;
        }
        match (
            FlowKey::of(&start),
            Compiled::with_cache(&w.transform, &start, &mut self.encaps),
        ) {
            (Some(k), Ok(c)) => {
                self.install(origin, k, c, id, gen, None);
                self.install_reply(&w, id, gen, now);
                self.note_decision(&w, id, gen, &k);
            }
            _ => self.remove_flow(id),
        }
    }

    /// Walks the layers for `w.dir`, accumulating the transform.
    fn walk(&mut self, w: &mut Walk, mut mode: Mode<'_>, now: Moment) -> WalkEnd {
        let n = self.layers.len();
        for step in 0..n {
            let li = if w.dir == Direction::Out {
                step
            } else {
                n - 1 - step
            };
            let d = w.dir.index();
            self.layers[li].stats[d].packets += 1;
            // The packet's key at this layer, made only where state is
            // looked up here (a stateful rule makes it below).
            let folds = self.layers[li].folds || self.layers[li].holds;
            let key = if folds || !self.layers[li].lft[d].is_empty() {
                FlowKey::of(&w.hdrs)
            } else {
                None
            };

            // 1a. A stateful allow folded into a flow record: the flow
            // whose key, or whose reverse's, this packet has at this layer.
            if let Some(k) = key.as_ref().filter(|_| folds) {
                if let Some((fid, fgen)) = self.folded(li, w, k, now) {
                    let (stale, t) = match self.flows.get(fid, fgen) {
                        Some(f) => (
                            f.allowed_epoch < self.layers[li].changed,
                            self.flows.held_at(f, li).map(|h| h.desc.transform(w.dir)),
                        ),
                        None => (false, None),
                    };
                    if !stale {
                        let l = &mut self.layers[li];
                        l.stats[d].lft_hits += 1;
                        if w.flow.is_none() {
                            w.flow = Some((fid, fgen));
                        }
                        w.note(l.name.as_str(), "lft", "flow state", t.as_ref());
                        if let Some(t) = t {
                            if let Err(r) = w.apply(&t) {
                                self.layers[li].stats[d].dropped += 1;
                                return WalkEnd::Drop(r);
                            }
                        }
                        continue;
                    }
                    if !matches!(mode, Mode::Recheck(_)) {
                        return WalkEnd::Stale(fid, fgen);
                    }
                }
            }

            // 1. State left by this flow or its reverse (a layer without
            // stateful rules has none: skip the lookup).
            if let Some(k) = key.as_ref().filter(|_| !self.layers[li].lft[d].is_empty()) {
                let found = self.layers[li].lft[d].get(k).map(|e| (e.flow, e.flow_gen));
                let live = found.filter(|&(fid, fgen)| self.flow_live(fid, fgen, now));
                if found.is_some() && live.is_none() {
                    // State of a flow that is gone or timed out: the rules
                    // decide this packet.
                    self.layers[li].lft[d].remove(k);
                }
                if let Some(e) = live.and_then(|_| self.layers[li].lft[d].get(k)) {
                    let (fid, fgen) = (e.flow, e.flow_gen);
                    if e.epoch < self.layers[li].changed {
                        if !matches!(mode, Mode::Recheck(_)) {
                            return WalkEnd::Stale(fid, fgen);
                        }
                    } else {
                        let t = match &e.state {
                            LftState::Allow => None,
                            LftState::Desc(desc) => Some(desc.transform(w.dir)),
                        };
                        let l = &mut self.layers[li];
                        l.stats[d].lft_hits += 1;
                        if w.flow.is_none() {
                            w.flow = Some((fid, fgen));
                        }
                        w.note(l.name.as_str(), "lft", "flow state", t.as_ref());
                        if let Some(t) = t {
                            if let Err(r) = w.apply(&t) {
                                self.layers[li].stats[d].dropped += 1;
                                return WalkEnd::Drop(r);
                            }
                        }
                        continue;
                    }
                }
            }

            // 2. The rules.
            let l = &mut self.layers[li];
            let (action, matched) = match l.rules[d].find(&w.hdrs, &w.meta) {
                Some(i) => {
                    l.rules[d].hit(i);
                    let e = l.rules[d].get(i);
                    (e.rule.action.clone(), Some(e.id))
                }
                None => {
                    l.stats[d].default_hits += 1;
                    let a = match l.default[d] {
                        DefaultAction::Allow => Action::Allow,
                        DefaultAction::Deny => Action::Deny,
                    };
                    (a, None)
                }
            };
            match &action {
                Action::Allow => w.note_s(&self.layers[li].name, matched, &action, None),
                Action::Deny => {
                    w.decider = Some((li, matched));
                    w.note_s(&self.layers[li].name, matched, &action, None);
                    let s = &mut self.layers[li].stats[d];
                    s.dropped += 1;
                    return WalkEnd::Drop(if matched.is_some() {
                        s.denied += 1;
                        DropReason::Denied
                    } else {
                        s.default_denied += 1;
                        DropReason::DefaultDenied
                    });
                }
                Action::DenyWith(reason) => {
                    w.decider = Some((li, matched));
                    w.note_s(&self.layers[li].name, matched, &action, None);
                    self.layers[li].stats[d].dropped += 1;
                    return WalkEnd::Drop(DropReason::Policy(reason));
                }
                Action::Meta(a) => {
                    a.update(w.dir, &w.hdrs, &mut w.meta);
                    w.note_s(&self.layers[li].name, matched, &action, None);
                }
                Action::Static(a) => {
                    let t = match a.transform(w.dir, &w.hdrs, &mut w.meta) {
                        Ok(t) => t,
                        Err(e) => {
                            self.layers[li].stats[d].dropped += 1;
                            return WalkEnd::Drop(gen_drop(e));
                        }
                    };
                    w.note_s(&self.layers[li].name, matched, &action, Some(&t));
                    if let Err(r) = w.apply(&t) {
                        self.layers[li].stats[d].dropped += 1;
                        return WalkEnd::Drop(r);
                    }
                }
                Action::Hairpin(a) => {
                    let Mode::Packet(frame) = mode else {
                        // A reply or a re-check never answers anything.
                        return WalkEnd::Drop(DropReason::Denied);
                    };
                    w.note_s(&self.layers[li].name, matched, &action, None);
                    let l = &mut self.layers[li];
                    return match a.reply(&w.hdrs, frame, &w.meta) {
                        Ok(p) => {
                            l.stats[d].hairpins += 1;
                            WalkEnd::Hairpin(p)
                        }
                        Err(e) => {
                            l.stats[d].dropped += 1;
                            WalkEnd::Drop(match e {
                                // A refusal says why, like any action's.
                                GenError::Refused(reason) => DropReason::Policy(reason),
                                GenError::Exhausted(_) => DropReason::HairpinFailed,
                            })
                        }
                    };
                }
                Action::StatefulAllow | Action::Stateful(_) => {
                    let Some(k) = key.or_else(|| FlowKey::of(&w.hdrs)) else {
                        // Not IP: no flow to keep state for; it passes.
                        w.note_s(&self.layers[li].name, matched, &action, None);
                        continue;
                    };
                    // What the state will remember of the action that made
                    // it, to recognise it in a re-check.
                    let aid = match &action {
                        Action::Stateful(a) => a.id(),
                        _ => ActionId::STATEFUL_ALLOW,
                    };
                    let (state, t) = match &action {
                        Action::Stateful(a) => {
                            let reuse = match &mut mode {
                                Mode::Recheck(kept) => take_kept(kept, li, w.dir, &k, aid),
                                _ => None,
                            };
                            let desc = match reuse {
                                Some(LftState::Desc(d)) => d,
                                _ => match a.generate(w.dir, &k, &w.hdrs, &w.meta) {
                                    Ok(d) => d,
                                    Err(e) => {
                                        self.layers[li].stats[d].dropped += 1;
                                        return WalkEnd::Drop(gen_drop(e));
                                    }
                                },
                            };
                            let t = desc.transform(w.dir);
                            (LftState::Desc(desc), Some(t))
                        }
                        _ => (LftState::Allow, None),
                    };
                    let fid = match w.flow {
                        Some(f) => f,
                        None => {
                            let Some(sk) = FlowKey::of(&w.start) else {
                                return WalkEnd::Drop(DropReason::BadTransform);
                            };
                            match self.new_flow(w.dir, &w.start, sk, now) {
                                Ok(f) => {
                                    w.flow = Some(f);
                                    f
                                }
                                Err(r) => return WalkEnd::Drop(r),
                            }
                        }
                    };
                    // The first stateful action is the one that let the flow in.
                    w.decider.get_or_insert((li, matched));
                    w.note_s(&self.layers[li].name, matched, &action, t.as_ref());
                    if let Some(t) = &t {
                        if let Err(r) = w.apply(t) {
                            self.layers[li].stats[d].dropped += 1;
                            return WalkEnd::Drop(r);
                        }
                    }
                    if matches!(action, Action::StatefulAllow) && li < 32 {
                        // Folded into the flow record when this layer sees
                        // the flow's own keys (see `FlowRec::fold_key`).
                        let epoch = self.epoch;
                        if let Some(f) = self
                            .flows
                            .get_mut(fid.0, fid.1)
                            .filter(|f| f.fold_key(li, w.dir) == k)
                        {
                            if f.allowed == 0 {
                                f.allowed_epoch = epoch;
                            }
                            f.allowed |= 1 << li;
                            self.layers[li].folds = true;
                            continue;
                        }
                    }
                    // The reverse key is the reply to what leaves this layer.
                    let Some(after) = FlowKey::of(&w.hdrs) else {
                        return WalkEnd::Drop(DropReason::BadTransform);
                    };
                    if let LftState::Desc(desc) = &state {
                        // A translation made by the flow's first walk (or
                        // its re-check) going the way the flow started:
                        // held by the record, if the reply's key turns out
                        // to be what this layer will see (settled by
                        // `install_reply`, which spills it into the
                        // layer's table otherwise).
                        let epoch = self.epoch;
                        let fits = self.flows.get(fid.0, fid.1).is_some_and(|f| {
                            li < 32
                                && f.keyed == 0
                                && f.origin == w.dir
                                && f.key == k
                                && w.held_rev.is_none()
                        });
                        let held = || Held {
                            action_id: aid,
                            desc: desc.clone(),
                        };
                        if fits && self.flows.hold(fid.0, fid.1, li as u8, held()) {
                            if let Some(f) = self.flows.get_mut(fid.0, fid.1) {
                                if f.allowed == 0 {
                                    f.allowed_epoch = epoch;
                                }
                                f.allowed |= 1 << li;
                            }
                            w.held_rev = Some(after.reverse());
                            self.layers[li].holds = true;
                            continue;
                        }
                    }
                    let epoch = self.epoch;
                    let fwd = match self.add_lft(li, w.dir, k, fid, state.clone(), aid, epoch) {
                        Ok(r) => r,
                        Err(r) => return WalkEnd::Drop(r),
                    };
                    let rev =
                        self.add_lft(li, w.dir.reverse(), after.reverse(), fid, state, aid, epoch);
                    // Recorded in the flow even when the second failed: the
                    // first is the flow's to remove.
                    if let Some(f) = self.flows.get_mut(fid.0, fid.1) {
                        f.lft
                            .extend(fwd.into_iter().chain(rev.as_ref().ok().copied().flatten()));
                    }
                    if let Err(r) = rev {
                        return WalkEnd::Drop(r);
                    }
                }
            }
        }
        WalkEnd::Pass
    }

    /// The live flow that holds folded state of layer `li` for a packet
    /// going `w.dir` with key `k` at that layer: the walk's own flow, else
    /// the flow whose first packet had key `k` going that way, or whose
    /// first packet `k` answers (a folded `StatefulAllow`), or whose reply
    /// arrived with the walk's starting key (a [`Held`] translation).
    fn folded(&mut self, li: usize, w: &Walk, k: &FlowKey, now: Moment) -> Option<(u32, u32)> {
        let dir = w.dir;
        let holds = |f: &FlowRec| f.folds_at(li) && f.fold_key(li, dir) == *k;
        if let Some((id, gen)) = w.flow {
            if self.flows.get(id, gen).is_some_and(holds) {
                return Some((id, gen));
            }
        }
        let l = &self.layers[li];
        let allows = l.folds.then(|| k.reverse());
        // The reply as it arrived, for a layer holding translations.
        let start = if l.holds {
            FlowKey::of(&w.start).filter(|s| s != k)
        } else {
            None
        };
        for (d, kk) in [(dir, Some(*k)), (dir.reverse(), allows), (dir, start)] {
            let Some(kk) = kk else {
                continue;
            };
            if d == dir && w.absent == Some(kk) {
                continue;
            }
            let Some((id, gen)) = self.lookup(d, &kk) else {
                continue;
            };
            let Some(f) = self.flows.get(id, gen) else {
                continue;
            };
            if (f.origin == d || f.held.is_some_and(|h| usize::from(h.layer) == li)) && holds(f) {
                return self.flow_live(id, gen, now).then_some((id, gen));
            }
        }
        None
    }

    /// Puts flow (id, gen)'s state in layer `li`'s table; the reference
    /// the flow must keep to remove it (none when it was there already).
    /// `epoch`: when the state was made.
    #[allow(clippy::too_many_arguments)]
    fn add_lft(
        &mut self,
        li: usize,
        dir: Direction,
        k: FlowKey,
        (id, gen): (u32, u32),
        state: LftState,
        action_id: ActionId,
        epoch: u64,
    ) -> Result<Option<LftRef>, DropReason> {
        let limit = self.cfg.flow_limit as usize * 2;
        let t = &mut self.layers[li].lft[dir.index()];
        let full = t.len() >= limit;
        let entry = LftEntry {
            flow: id,
            flow_gen: gen,
            state,
            epoch,
            action_id,
        };
        match t.entry(k) {
            std::collections::hash_map::Entry::Occupied(mut o) => {
                if o.get().flow == id && o.get().flow_gen == gen {
                    return Ok(None);
                }
                // State of a flow that is gone (or replaced): take the slot.
                o.insert(entry);
            }
            std::collections::hash_map::Entry::Vacant(_) if full => {
                return Err(DropReason::LayerTableFull)
            }
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(entry);
            }
        }
        Ok(Some((li as u16, dir, k)))
    }

    // ----------------------------------------------------------------
    // Expiry

    /// Removes every flow idle past its timeout. Returns how many went.
    pub fn expire(&mut self) -> usize {
        let now = self.clock.now();
        let n = self.flows.slots.len();
        self.expire_cursor = 0;
        self.expire_step(now, n)
    }

    /// The periodic sweep, paced by the clock: called as often as a
    /// worker likes (between bursts), it checks the flow slots due since
    /// its last call so that every slot is visited about once per
    /// [`SWEEP_PERIOD`], at most `max` per call. Idle timeouts do not
    /// wait for it (they hold at lookup); the sweep frees what idle flows
    /// hold and writes flow logs' active records. A busy port sweeping a
    /// fixed number of slots per burst would read a flow record or two per
    /// packet, whole tables over per second, for nothing. Returns how many
    /// flows went.
    pub fn expire_paced(&mut self, now: Moment, max: usize) -> usize {
        let elapsed = now.saturating_sub(self.swept_at).min(SWEEP_PERIOD);
        let due = (self.flows.slots.len() as u64 * elapsed / SWEEP_PERIOD) as usize;
        if due == 0 {
            // Less than a slot's worth of time: it adds up until there is.
            return 0;
        }
        self.swept_at = now;
        self.expire_step(now, due.min(max))
    }

    /// Checks up to `budget` flow slots for expiry, continuing where the
    /// last call stopped. Returns how many flows went.
    pub fn expire_step(&mut self, now: Moment, budget: usize) -> usize {
        let n = self.flows.slots.len();
        let mut gone = 0;
        for _ in 0..budget.min(n) {
            if self.expire_cursor >= n {
                self.expire_cursor = 0;
                // Once per sweep: templates of destinations no flow uses.
                self.encaps.prune();
            }
            let id = self.expire_cursor;
            self.expire_cursor += 1;
            let expired = match &self.flows.slots[id] {
                Some(f) => self.cfg.expiry.is_expired(f.class, f.last_hit, now),
                None => false,
            };
            if !expired && self.flow_log.is_some() {
                self.log_active(id, now);
            }
            if expired {
                self.expire_flow(id as u32);
                gone += 1;
            }
        }
        gone
    }

    /// An `Active` record for a live flow whose last record is older than
    /// the active timeout (RFC 7011's "active timeout").
    fn log_active(&mut self, id: usize, now: Moment) {
        let (Some(l), Some(Some(f))) = (&mut self.flow_log, self.flows.slots.get(id)) else {
            return;
        };
        let s = l.state(id as u32);
        if now.saturating_sub(s.logged_at) < l.cfg.active_timeout {
            return;
        }
        if let Some(r) = flow_record(f, &s, CloseReason::Active, now) {
            l.push(r);
        }
        let s = l.state_mut(id as u32);
        s.logged_at = now;
        s.logged_packets = f.packets;
        s.logged_bytes = f.bytes;
    }

    // ----------------------------------------------------------------
    // Tracing and dumps

    /// Runs a frame through the layers and reports each layer's decision
    /// (like `ovs-appctl ofproto/trace`). The flow tables are left as they
    /// were (a flow the walk creates is removed again, freeing anything a
    /// stateful action allocated for it); the walk does count in the layer
    /// and rule counters, as a packet would.
    pub fn trace(&mut self, dir: Direction, frame: &[u8]) -> Result<Trace, DropReason> {
        let mode = if dir == Direction::In {
            self.cfg.inbound
        } else {
            ParseMode::Plain
        };
        let parsed = headers::parse(frame, mode).map_err(DropReason::Malformed)?;
        let mut w = Walk::new(dir, parsed.hdrs, true);
        // The walk may make flow state (a stateful action's allocation);
        // a flow it created is removed again below, which frees it.
        let before_flow = self.flows.live;
        let now = self.clock.now();
        let end = self.walk(&mut w, Mode::Packet(frame), now);
        let (verdict, fate, output) = match end {
            WalkEnd::Pass => {
                // The packet as it would leave: the composed transform,
                // compiled as the fast path would, applied to a copy.
                let out = Compiled::new(&w.transform, &parsed.hdrs)
                    .ok()
                    .and_then(|c| {
                        let mut p = PacketBuf::from_frame(frame);
                        c.apply(&mut p, &parsed.off).ok()?;
                        Some(p.as_slice().to_vec())
                    });
                ("forward".to_string(), TraceFate::Forward, out)
            }
            WalkEnd::Drop(r) => (format!("drop: {r}"), TraceFate::Drop(r), None),
            WalkEnd::Hairpin(reply) => (
                "hairpin".to_string(),
                TraceFate::Hairpin,
                Some(reply.as_slice().to_vec()),
            ),
            WalkEnd::Stale(..) => (
                "stale state: re-checked on the next packet".to_string(),
                TraceFate::Stale,
                None,
            ),
        };
        if self.flows.live > before_flow {
            self.abandon(&w);
        }
        Ok(Trace {
            steps: w.trace.take().unwrap_or_default(),
            transform: w.transform,
            verdict,
            fate,
            output,
        })
    }

    pub fn dump_uft(&self) -> UftDump {
        let dump = |d: Direction| {
            let mut v: Vec<UftEntryDump> = (self.flows.slots.iter().enumerate())
                .filter_map(|(id, f)| {
                    let f = f.as_ref()?;
                    let key = f.ukey(d.index())?;
                    let epoch = f.epoch[d.index()];
                    let xform = f.xform[d.index()].as_ref();
                    Some(UftEntryDump {
                        key,
                        flow: id as u32,
                        packets: f.packets[d.index()],
                        bytes: f.bytes[d.index()],
                        epoch,
                        stale: epoch != self.epoch || !xform.is_some_and(Compiled::deps_current),
                        transform: xform.map_or_else(|| "none".to_string(), Compiled::describe),
                    })
                })
                .collect();
            v.sort_by_key(|e| e.key);
            v
        };
        UftDump {
            epoch: self.epoch,
            inbound: dump(Direction::In),
            outbound: dump(Direction::Out),
        }
    }

    pub fn dump_layers(&self) -> Vec<LayerDump> {
        self.layers
            .iter()
            .enumerate()
            .map(|(li, l)| {
                let rules = |d: Direction| {
                    l.rules[d.index()]
                        .entries()
                        .iter()
                        .map(|e| RuleDump {
                            id: e.id.0,
                            priority: e.rule.priority,
                            predicates: e.rule.predicates.iter().map(|p| p.to_string()).collect(),
                            action: e.rule.action.to_string(),
                            hits: e.hits,
                        })
                        .collect()
                };
                let lft = |d: Direction| {
                    let mut v: Vec<LftDump> = l.lft[d.index()]
                        .iter()
                        .map(|(k, e)| LftDump {
                            key: *k,
                            flow: e.flow,
                            state: match &e.state {
                                LftState::Allow => "allow".to_string(),
                                LftState::Desc(d) => d.describe(),
                            },
                        })
                        .collect();
                    // State folded into flow records reads as the entries
                    // it stands for.
                    if l.folds || l.holds {
                        v.extend(self.folded_state(li).map(|(id, f)| {
                            LftDump {
                                key: f.fold_key(li, d),
                                flow: id,
                                state: self
                                    .flows
                                    .held_at(f, li)
                                    .map_or_else(|| "allow".to_string(), |h| h.desc.describe()),
                            }
                        }));
                    }
                    v.sort_by_key(|e| e.key);
                    v
                };
                LayerDump {
                    name: l.name.clone(),
                    default_in: l.default[0],
                    default_out: l.default[1],
                    rules_in: rules(Direction::In),
                    rules_out: rules(Direction::Out),
                    lft_in: lft(Direction::In),
                    lft_out: lft(Direction::Out),
                    stats_in: l.stats[0],
                    stats_out: l.stats[1],
                }
            })
            .collect()
    }

    /// The flows holding layer `li`'s folded state.
    fn folded_state(&self, li: usize) -> impl Iterator<Item = (u32, &FlowRec)> + '_ {
        let bit = 1u32.checked_shl(li as u32).unwrap_or(0);
        (self.flows.slots.iter().enumerate()).filter_map(move |(id, f)| {
            Some((id as u32, f.as_ref().filter(|f| f.allowed & bit != 0)?))
        })
    }

    pub fn dump_tcp_flows(&self) -> Vec<TcpFlowDump> {
        let now = self.clock.now();
        let mut v: Vec<TcpFlowDump> = self
            .flows
            .slots
            .iter()
            .enumerate()
            .filter_map(|(id, f)| {
                let f = f.as_ref()?;
                let st = f.tcp?;
                Some(TcpFlowDump {
                    flow: id as u32,
                    key: f.key,
                    origin: f.origin,
                    state: st,
                    age_ms: now.saturating_sub(f.created) / 1_000_000,
                    idle_ms: now.saturating_sub(f.last_hit) / 1_000_000,
                    packets_out: f.packets[Direction::Out.index()],
                    packets_in: f.packets[Direction::In.index()],
                })
            })
            .collect();
        v.sort_by_key(|f| f.key);
        v
    }

    /// The TCP state of the flow whose packets going `dir` have key `k`.
    /// A flow past its idle timeout has none, as a packet would find.
    pub fn tcp_state(&self, dir: Direction, k: &FlowKey) -> Option<TcpState> {
        let (id, gen) = self.lookup(dir, k)?;
        let f = self.flows.get(id, gen)?;
        let now = self.clock.now();
        if self.cfg.expiry.is_expired(f.class, f.last_hit, now) {
            return None;
        }
        f.tcp
    }
}

/// The record of flow `f` for `reason`: its counts since its last record.
/// `now` is the end of an `Active` record; a flow that ended ends at its
/// last packet.
fn flow_record(f: &FlowRec, l: &LogState, reason: CloseReason, now: Moment) -> Option<FlowRecord> {
    let key = f.key;
    let sub = |a: [u64; 2], b: [u64; 2]| [a[0].saturating_sub(b[0]), a[1].saturating_sub(b[1])];
    let end = if reason == CloseReason::Active {
        now
    } else {
        f.last_hit
    };
    Some(FlowRecord {
        key,
        origin: f.origin,
        vni: l.vni.max(key.vni),
        start: f.created,
        end,
        packets: sub(f.packets, l.logged_packets),
        bytes: sub(f.bytes, l.logged_bytes),
        decision: Decision::Allow,
        decider: l.decider,
        translated: l.translated,
        tcp: f.tcp,
        reason,
    })
}

fn take_kept(
    kept: &mut Vec<(u16, Direction, FlowKey, LftEntry)>,
    li: usize,
    dir: Direction,
    k: &FlowKey,
    aid: ActionId,
) -> Option<LftState> {
    let i = kept.iter().position(|(l, d, kk, e)| {
        usize::from(*l) == li && *d == dir && kk == k && e.action_id == aid
    })?;
    Some(kept.swap_remove(i).3.state)
}

/// The TCP flags of a parsed packet, for TCP segments.
fn tcp_flags(h: &Headers) -> Option<u8> {
    match h.inner.l4 {
        L4::Tcp(t) => Some(t.flags),
        _ => None,
    }
}

fn gen_drop(e: GenError) -> DropReason {
    match e {
        GenError::Exhausted(_) => DropReason::Exhausted,
        GenError::Refused(reason) => DropReason::Policy(reason),
    }
}

fn transform_drop(e: TransformError) -> DropReason {
    match e {
        TransformError::NoHeadroom => DropReason::NoHeadroom,
        _ => DropReason::BadTransform,
    }
}

impl Walk {
    fn new(dir: Direction, h: Headers, trace: bool) -> Walk {
        Walk {
            dir,
            start: h,
            hdrs: h,
            meta: Meta::default(),
            transform: Transform::default(),
            flow: None,
            absent: None,
            held_rev: None,
            decider: None,
            trace: trace.then(Vec::new),
        }
    }

    fn apply(&mut self, t: &Transform) -> Result<(), DropReason> {
        self.transform.then_assign(t).map_err(transform_drop)?;
        t.apply_headers(&mut self.hdrs).map_err(transform_drop)?;
        if let Some(s) = self.trace.as_mut().and_then(|v| v.last_mut()) {
            s.after = self.hdrs;
        }
        Ok(())
    }

    fn note(&mut self, layer: &str, matched: &str, action: &str, t: Option<&Transform>) {
        if let Some(v) = &mut self.trace {
            v.push(TraceStep {
                layer: layer.to_string(),
                matched: matched.to_string(),
                action: action.to_string(),
                transform: t.cloned(),
                after: self.hdrs,
            });
        }
    }

    /// Records a rule's decision when tracing; formats nothing otherwise.
    fn note_s(
        &mut self,
        layer: &str,
        matched: Option<RuleId>,
        action: &Action,
        t: Option<&Transform>,
    ) {
        if self.trace.is_some() {
            let m = matched.map_or_else(|| "default".to_string(), |id| format!("rule {}", id.0));
            self.note(layer, &m, &action.to_string(), t);
        }
    }
}

/// The headers of the first reply to a packet with headers `h` (as it
/// leaves the port): addresses and ports swapped, an echo request answered
/// by an echo reply, a SYN by a SYN+ACK. `None` for packets that get no
/// reply of their own (ICMP errors).
pub fn reply_headers(h: &Headers) -> Option<Headers> {
    let mut r = *h;
    if let Some(o) = &mut r.outer {
        core::mem::swap(&mut o.eth_src, &mut o.eth_dst);
        core::mem::swap(&mut o.ip_src, &mut o.ip_dst);
    }
    let i = &mut r.inner;
    core::mem::swap(&mut i.eth_src, &mut i.eth_dst);
    match &mut i.l3 {
        L3::Ipv4(ip) | L3::Ipv6(ip) => core::mem::swap(&mut ip.src, &mut ip.dst),
        _ => return None,
    }
    match &mut i.l4 {
        L4::Tcp(t) => {
            core::mem::swap(&mut t.src, &mut t.dst);
            use crate::headers::tcp_flags::{ACK, SYN};
            t.flags = if t.flags & SYN != 0 { SYN | ACK } else { ACK };
        }
        L4::Udp { src, dst } => core::mem::swap(src, dst),
        L4::Icmp { ty, .. } => match *ty {
            8 => *ty = 0,
            0 => *ty = 8,
            _ => return None,
        },
        L4::Icmp6 { ty, .. } => match *ty {
            128 => *ty = 129,
            129 => *ty = 128,
            _ => return None,
        },
        L4::None | L4::Unknown => {}
    }
    Some(r)
}

/// The result of [`Port::trace`].
#[derive(Clone, Debug, Serialize)]
pub struct Trace {
    pub steps: Vec<TraceStep>,
    /// The composed transform of every layer.
    pub transform: Transform,
    pub verdict: String,
    /// The verdict as a value (what `verdict` says in words).
    #[serde(skip)]
    pub fate: TraceFate,
    /// The packet that would leave (forwarded, or the hairpin reply),
    /// as hex.
    #[serde(serialize_with = "hex_bytes")]
    pub output: Option<Vec<u8>>,
}

/// What a traced packet's walk ended in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TraceFate {
    /// Sent on, transformed.
    Forward,
    /// Answered by the port (the reply is the output).
    Hairpin,
    Drop(DropReason),
    /// A layer held state made under older rules: the next packet of the
    /// flow is checked again.
    Stale,
}

fn hex_bytes<S: serde::Serializer>(b: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
    match b {
        Some(b) => {
            let mut h = String::with_capacity(b.len() * 2);
            for x in b {
                h.push(char::from_digit(u32::from(x >> 4), 16).unwrap_or('0'));
                h.push(char::from_digit(u32::from(x & 15), 16).unwrap_or('0'));
            }
            s.serialize_some(&h)
        }
        None => s.serialize_none(),
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct UftDump {
    pub epoch: u64,
    pub inbound: Vec<UftEntryDump>,
    pub outbound: Vec<UftEntryDump>,
}

#[derive(Clone, Debug, Serialize)]
pub struct UftEntryDump {
    pub key: FlowKey,
    pub flow: u32,
    /// The flow's packets and bytes in this entry's direction (what
    /// `sluiceadm top` turns into rates between two dumps).
    pub packets: u64,
    pub bytes: u64,
    pub epoch: u64,
    pub stale: bool,
    pub transform: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct LayerDump {
    pub name: String,
    pub default_in: DefaultAction,
    pub default_out: DefaultAction,
    pub rules_in: Vec<RuleDump>,
    pub rules_out: Vec<RuleDump>,
    pub lft_in: Vec<LftDump>,
    pub lft_out: Vec<LftDump>,
    pub stats_in: LayerDirStats,
    pub stats_out: LayerDirStats,
}

#[derive(Clone, Debug, Serialize)]
pub struct RuleDump {
    pub id: u64,
    pub priority: u16,
    pub predicates: Vec<String>,
    pub action: String,
    pub hits: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct LftDump {
    pub key: FlowKey,
    pub flow: u32,
    pub state: String,
}

fn tcp_state_name<S: serde::Serializer>(st: &TcpState, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(st.name())
}

#[derive(Clone, Debug, Serialize)]
pub struct TcpFlowDump {
    pub flow: u32,
    pub key: FlowKey,
    pub origin: Direction,
    /// Written as [`TcpState::name`] (`ESTABLISHED`, ...).
    #[serde(serialize_with = "tcp_state_name")]
    pub state: TcpState,
    pub age_ms: u64,
    pub idle_ms: u64,
    pub packets_out: u64,
    pub packets_in: u64,
}
