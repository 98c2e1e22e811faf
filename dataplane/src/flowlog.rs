//! Flow logs: one fixed-size [`FlowRecord`] per flow that ends (and
//! periodically per long flow, and per denied first packet), pushed into
//! a bounded queue the control plane drains.
//!
//! The property: logging never costs the fast path an allocation, a lock
//! or a syscall, and a flood cannot turn logging into a denial of
//! service. The queue ([`FlowLog`]) is allocated whole when logging is
//! enabled on a port; a record is `Copy` and goes in by value; a full
//! queue drops the record and counts it. Denied first packets pass a
//! per-port token bucket first, so at most `denied_per_sec` of them (burst
//! the same) are logged, the rest counted. A UFT hit does nothing for
//! logging at all: records are made where a flow is removed, where a miss
//! is denied, and in the periodic sweep (`Active` records).
//!
//! The counters are atomics in the shared [`FlowLog`] so the drainer can
//! export them without asking the port's worker; the port is their only
//! writer (a plain load and store, no locked instruction).

use crate::clock::{Moment, NANOS_PER_SEC};
use crate::flow::{Direction, FlowKey};
use crate::rate::{RateLimit, RateLimiter};
use crate::rule::RuleId;
use crate::tcp::TcpState;
use crossbeam_queue::ArrayQueue;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Why a record was made.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CloseReason {
    /// A TCP flow closed by FIN from both ends (removed after TIME-WAIT,
    /// or idle while closing).
    Fin,
    /// A TCP flow reset.
    Rst,
    /// Idle past its timeout.
    Idle,
    /// Removed to make room for a new flow (half-open TCP).
    Evicted,
    /// Removed by a clear of the flow tables.
    Cleared,
    /// The rules changed and no longer allow the flow.
    Revoked,
    /// A periodic record of a live flow (counts since the last record).
    Active,
    /// A first packet the layers denied: no flow was made.
    Denied,
}

impl CloseReason {
    pub const ALL: [CloseReason; 8] = [
        CloseReason::Fin,
        CloseReason::Rst,
        CloseReason::Idle,
        CloseReason::Evicted,
        CloseReason::Cleared,
        CloseReason::Revoked,
        CloseReason::Active,
        CloseReason::Denied,
    ];

    /// The stable name JSON lines and metrics use.
    pub fn name(self) -> &'static str {
        match self {
            CloseReason::Fin => "fin",
            CloseReason::Rst => "rst",
            CloseReason::Idle => "idle",
            CloseReason::Evicted => "evicted",
            CloseReason::Cleared => "cleared",
            CloseReason::Revoked => "revoked",
            CloseReason::Active => "active",
            CloseReason::Denied => "denied",
        }
    }

    /// A small stable code (exported as sluice's own IPFIX element).
    pub fn code(self) -> u8 {
        match self {
            CloseReason::Fin => 1,
            CloseReason::Rst => 2,
            CloseReason::Idle => 3,
            CloseReason::Evicted => 4,
            CloseReason::Cleared => 5,
            CloseReason::Revoked => 6,
            CloseReason::Active => 7,
            CloseReason::Denied => 8,
        }
    }
}

/// What the layers decided for the flow's first packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    Allow,
    Deny,
}

/// A layer's name, inline (no heap): names longer than 16 bytes are cut.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct LayerName([u8; 16]);

impl LayerName {
    pub fn new(s: &str) -> LayerName {
        let mut b = [0; 16];
        // Cut at a char boundary so `as_str` is always valid UTF-8.
        let mut n = s.len().min(16);
        while !s.is_char_boundary(n) {
            n -= 1;
        }
        b[..n].copy_from_slice(&s.as_bytes()[..n]);
        LayerName(b)
    }

    pub fn as_str(&self) -> &str {
        let n = self.0.iter().position(|&c| c == 0).unwrap_or(16);
        core::str::from_utf8(&self.0[..n]).unwrap_or("")
    }

    pub fn bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

impl core::fmt::Debug for LayerName {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

/// Which layer and rule decided a flow. For an allowed flow: the layer
/// whose stateful action made the flow (typically the firewall) and its
/// rule; for a denied packet: the layer that denied it. `rule` is `None`
/// when the layer's default action decided. Rule ids are the layer's own
/// ([`RuleId`], stable while the rule exists).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Decider {
    pub layer: LayerName,
    pub rule: Option<RuleId>,
}

/// One flow-log record. `Copy`, no heap: it goes into the queue by value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowRecord {
    /// The flow's first packet as it entered the port (as the guest sees
    /// it for an outbound flow); the reverse direction is `key.reverse()`.
    pub key: FlowKey,
    /// Which way the first packet went.
    pub origin: Direction,
    /// The VNI the flow belongs to (0 when the port saw none).
    pub vni: u32,
    /// Port-clock moments: the flow's first packet, and the last packet
    /// (for `Active` and close records) or the denial.
    pub start: Moment,
    pub end: Moment,
    /// Packets and bytes in each direction (indexed by
    /// [`Direction::index`]) since the flow's previous record: the whole
    /// flow when there was none.
    pub packets: [u64; 2],
    pub bytes: [u64; 2],
    pub decision: Decision,
    pub decider: Decider,
    /// The first packet as it left the layers, when NAT changed its
    /// addresses or ports (SNAT, floating IP): `None` otherwise.
    pub translated: Option<FlowKey>,
    /// TCP state when the record was made.
    pub tcp: Option<TcpState>,
    pub reason: CloseReason,
}

impl FlowRecord {
    /// Packets/bytes in the direction the flow was opened, and back.
    pub fn forward(&self) -> (u64, u64) {
        let d = self.origin.index();
        (self.packets[d], self.bytes[d])
    }

    pub fn reverse(&self) -> (u64, u64) {
        let d = self.origin.reverse().index();
        (self.packets[d], self.bytes[d])
    }
}

/// Flow logging of one port, as the control plane sets it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowLogConfig {
    /// Records the queue holds between two drains.
    pub queue_records: usize,
    /// Denied first packets logged per second (also the burst).
    pub denied_per_sec: u32,
    /// A live flow gets an `Active` record this long after its last one.
    pub active_timeout: Moment,
}

impl Default for FlowLogConfig {
    fn default() -> Self {
        FlowLogConfig {
            queue_records: 4096,
            denied_per_sec: 100,
            active_timeout: 60 * NANOS_PER_SEC,
        }
    }
}

/// Counters of a port's flow log.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowLogStats {
    /// Records put in the queue.
    pub records: u64,
    /// Records dropped because the queue was full.
    pub queue_full: u64,
    /// Denied-packet records refused by the rate limit.
    pub rate_limited: u64,
}

impl FlowLogStats {
    /// Every counter by name: what metrics export. Destructured whole so a
    /// counter added here fails the build until it is listed.
    pub fn counters(&self) -> [(&'static str, u64); 3] {
        let FlowLogStats {
            records,
            queue_full,
            rate_limited,
        } = *self;
        [
            ("records", records),
            ("queue_full", queue_full),
            ("rate_limited", rate_limited),
        ]
    }
}

impl std::ops::AddAssign for FlowLogStats {
    fn add_assign(&mut self, o: FlowLogStats) {
        let FlowLogStats {
            records,
            queue_full,
            rate_limited,
        } = o;
        self.records += records;
        self.queue_full += queue_full;
        self.rate_limited += rate_limited;
    }
}

/// The queue and counters a port shares with whatever drains it.
pub struct FlowLog {
    queue: ArrayQueue<FlowRecord>,
    records: AtomicU64,
    queue_full: AtomicU64,
    rate_limited: AtomicU64,
    /// The port-clock moment logging was enabled at, so the drainer can
    /// map port moments to wall-clock time it read at the same instant.
    enabled_at: AtomicU64,
}

impl FlowLog {
    pub fn new(capacity: usize) -> Arc<FlowLog> {
        Arc::new(FlowLog {
            queue: ArrayQueue::new(capacity.max(1)),
            records: AtomicU64::new(0),
            queue_full: AtomicU64::new(0),
            rate_limited: AtomicU64::new(0),
            enabled_at: AtomicU64::new(0),
        })
    }

    /// Takes the oldest record, if any (any thread).
    pub fn pop(&self) -> Option<FlowRecord> {
        self.queue.pop()
    }

    pub fn len(&self) -> usize {
        self.queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    pub fn capacity(&self) -> usize {
        self.queue.capacity()
    }

    pub fn stats(&self) -> FlowLogStats {
        FlowLogStats {
            records: self.records.load(Ordering::Relaxed),
            queue_full: self.queue_full.load(Ordering::Relaxed),
            rate_limited: self.rate_limited.load(Ordering::Relaxed),
        }
    }

    /// The port-clock moment the port started logging into this queue.
    pub fn enabled_at(&self) -> Moment {
        self.enabled_at.load(Ordering::Relaxed)
    }
}

/// One writer (the port): no read-modify-write instruction needed.
fn bump(c: &AtomicU64) {
    c.store(c.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
}

/// What a flow's records need that the fast path never reads, kept by
/// the logger beside the flow table (indexed by flow id) so that a port
/// without flow logs pays nothing for it per flow.
#[derive(Clone, Copy, Default)]
pub(crate) struct LogState {
    pub(crate) decider: Decider,
    /// The first packet's key as it left the layers, when NAT changed it.
    pub(crate) translated: Option<FlowKey>,
    pub(crate) vni: u32,
    /// When the flow's last record was made, and its counts then.
    pub(crate) logged_at: Moment,
    pub(crate) logged_packets: [u64; 2],
    pub(crate) logged_bytes: [u64; 2],
}

/// The port's side of its flow log: the shared queue, the token bucket
/// for denied packets and each flow's [`LogState`].
pub(crate) struct FlowLogger {
    pub(crate) cfg: FlowLogConfig,
    log: Arc<FlowLog>,
    /// By flow id, one per flow-table slot; a slot is reset when its flow
    /// is made. A flow made before logging was enabled has a slot from
    /// the enabling (its counts from its start, its decider unknown).
    states: Vec<LogState>,
    /// The bucket denied records pass (`denied_per_sec`, burst the same);
    /// `None` when no denied packet is to be logged.
    denied: Option<RateLimiter>,
}

impl FlowLogger {
    /// `flows`: the port's flow-table slots now; the flows in them are
    /// logged from `now` on (their records count from their start).
    pub(crate) fn new(
        cfg: FlowLogConfig,
        log: Arc<FlowLog>,
        now: Moment,
        flows: usize,
    ) -> FlowLogger {
        log.enabled_at.store(now, Ordering::Relaxed);
        FlowLogger {
            cfg,
            log,
            // A slot for every flow there is: the sweep's records of them
            // allocate nothing.
            states: vec![
                LogState {
                    logged_at: now,
                    ..LogState::default()
                };
                flows
            ],
            denied: (cfg.denied_per_sec > 0).then(|| {
                let rate = u64::from(cfg.denied_per_sec);
                RateLimiter::new(RateLimit {
                    packets_per_sec: rate,
                    burst_packets: Some(rate),
                    ..RateLimit::default()
                })
            }),
        }
    }

    pub(crate) fn log(&self) -> &Arc<FlowLog> {
        &self.log
    }

    /// Flow `id`'s state (a default one for a flow it has not seen).
    pub(crate) fn state(&self, id: u32) -> LogState {
        self.states.get(id as usize).copied().unwrap_or_default()
    }

    /// Flow `id`'s state, to change.
    pub(crate) fn state_mut(&mut self, id: u32) -> &mut LogState {
        let i = id as usize;
        if i >= self.states.len() {
            self.states.resize(i + 1, LogState::default());
        }
        &mut self.states[i]
    }

    /// A new flow at `id`: its records count from `now`.
    pub(crate) fn start(&mut self, id: u32, now: Moment) {
        *self.state_mut(id) = LogState {
            logged_at: now,
            ..LogState::default()
        };
    }

    pub(crate) fn push(&self, r: FlowRecord) {
        match self.log.queue.push(r) {
            Ok(()) => bump(&self.log.records),
            Err(_) => bump(&self.log.queue_full),
        }
    }

    /// Pushes a denied-packet record if the bucket has a token for it.
    pub(crate) fn push_denied(&mut self, r: FlowRecord, now: Moment) {
        if self.denied.as_mut().is_some_and(|b| b.admit(now, 0)) {
            self.push(r);
        } else {
            bump(&self.log.rate_limited);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_names_are_cut_at_char_boundaries() {
        assert_eq!(LayerName::new("firewall").as_str(), "firewall");
        assert_eq!(
            LayerName::new("a-very-long-layer-name").as_str(),
            "a-very-long-laye"
        );
        assert_eq!(LayerName::new("ééééééééé").as_str(), "éééééééé");
    }
}
