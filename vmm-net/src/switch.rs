//! The switch: moves frames between a host's uplink, its vNIC ports and
//! their guests.
//!
//! - Uplink → guest: every frame first passes the outer checks, then is
//!   demultiplexed by (VNI, inner destination MAC) to the port that owns
//!   that guest, whose inbound path decides the rest. The outer checks,
//!   in order: a Geneve packet (`malformed.*`) to this host's underlay
//!   address (`not_our_underlay_address`); its outer UDP checksum right
//!   (`outer_udp_checksum`: RFC 8200 §8.1; sluice reads the wire itself,
//!   so no kernel checked it) and not zero unless the underlay accepts
//!   zero checksums (`zero_udp6_checksum`: RFC 6936 §5); not a control
//!   packet (`geneve_control`: RFC 8926 §3.4, a control packet's payload
//!   never reaches a tenant); every Geneve option known or non-critical
//!   (`geneve_unknown_critical_option`: RFC 8926 §3.5, fail closed); and
//!   a port for its VNI and MAC (`wrong_vni` when the MAC is a guest's on
//!   another VNI, else `unknown_port`).
//! - Guest → uplink: the port's outbound path tunnels the frame; a tunnel
//!   addressed to this very host is delivered to the local port it names
//!   without touching the wire (same-host VPC traffic).
//! - Hairpin replies go back where the packet came from.
//! - Multicast ([`Switch::set_mcast`]): a guest's datagram to an overlay
//!   group leaves its port tunnelled to the group's M2P underlay group.
//!   The switch delivers a copy to every other subscribed local port of
//!   that VNI whose source filter admits the sender, each through that
//!   port's own inbound path (its firewall included), and sends it on
//!   per the group's forwarding table: once to the underlay group
//!   (`underlay`), one unicast copy per next-hop host (`external`, the
//!   head end replicating), or both. A tunnel from the wire to an
//!   underlay group this host carries (by M2P, in the tunnel's VNI) is
//!   delivered to the local subscribers the same way, after the outer
//!   checks (the destination check aside). A member copy is re-addressed
//!   to this host (`overlay::mcast::retarget`) so it meets the same
//!   overlay checks as any tunnel; members on another worker get theirs
//!   through the hand-off queue. A group that lost its M2P entry since
//!   the flow was set up is dropped (`multicast`); a group tunnel this
//!   host does not carry, `not_our_underlay_address`.
//!
//! - Uplinks ([`Switch::with_uplinks`]): one or two; every one is read,
//!   and what goes to the underlay is spread over the live ones by its
//!   outer flow, as `uplinks.rs` says (a link down, or taken out of use
//!   by the operator, carries nothing; its flows go to the other).
//!
//! A round ([`Switch::poll`]) reads each port's clock once and hands each
//! port its frames as bursts (`Port::process_burst`): a guest's RX burst
//! whole, the uplink's frames collected per port after the outer checks.
//!
//! Every frame the switch itself refuses is counted by [`DropReason`] in
//! [`SwitchDrops`] (the names ports use for the same faults), its other
//! counters are in [`SwitchStats`]; the ports count their own drops.

use crate::backend::Backend;
use crate::uplinks::{
    UplinkDevice, UplinkError, UplinkState, UplinkStats, Uplinks, NO_LIVE_UPLINK,
};
use arc_swap::ArcSwap;
use dataplane::checksum::{verify_udp6, UdpCheck};
use dataplane::drop::DROP_REASONS;
use dataplane::flow::FlowHashBuilder;
use dataplane::headers::{self, FastParsed, Mac, ParseMode};
use dataplane::{Direction, DropReason, Moment, PacketBuf, Verdict, Vni};
use overlay::layer::reason;
use overlay::mcast::{self, Mcast};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::os::fd::BorrowedFd;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;
use vnic::port::VnicPort;

/// Frames per burst, RX and TX: a typical NIC burst.
pub const BURST: usize = 32;

/// First-packet work (ns) a guest earns per round while other ports have
/// traffic, and the most it can save up: a guest setting up flows as fast
/// as it can (a SYN flood) gets about a tenth of a worker whose other
/// ports forward established traffic (32 UFT hits take ~8 µs a round),
/// and all of it when they are idle.
const SLOW_QUANTUM: i64 = 1_000;
const SLOW_CREDIT_MAX: i64 = 32 * SLOW_QUANTUM;

/// Where the buffer of a frame that goes no further (dropped, refused,
/// answered by a hairpin, not taken by a device) goes: back to the
/// process's pool for the next receive, so a flood of bad frames costs no
/// allocation per frame (a lent buffer goes back to its lender).
fn recycle(pkt: PacketBuf) {
    crate::backend::SharedPool::put(pkt);
}

/// The most flow slots a port checks for expiry in one poll (the sweep
/// is paced by the clock, [`Port::expire_paced`]: this only bounds the
/// catch-up after a long pause, so it never stalls a burst).
///
/// [`Port::expire_paced`]: dataplane::Port::expire_paced
const EXPIRE_BUDGET: usize = 256;

/// How the switch checks what arrives from the underlay.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SwitchOptions {
    /// Take tunnels whose outer UDP checksum over IPv6 is zero (RFC 6936
    /// allows it only for tunnels configured so; sluice's own sender
    /// always fills it in). Off: they are dropped, `zero_udp6_checksum`.
    pub accept_zero_udp6_checksum: bool,
}

/// The policy-named reasons the switch gives (the overlay layer's names
/// for the same faults, so one fault reads the same wherever it is caught).
const NAMED: [&str; 6] = [
    reason::NOT_OUR_HOST,
    reason::CRITICAL_OPTION,
    reason::WRONG_VNI,
    UNDERLAY_MTU_EXCEEDED,
    reason::MULTICAST,
    NO_LIVE_UPLINK,
];

/// A frame for the uplink larger than the underlay's MTU: dropped here,
/// where it is known, rather than lost without a count on the way.
pub const UNDERLAY_MTU_EXCEEDED: &str = "underlay_mtu_exceeded";

/// Frames the switch itself dropped, by reason. Fixed-size: counting
/// never allocates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SwitchDrops {
    fixed: [u64; DROP_REASONS],
    named: [u64; NAMED.len()],
}

impl Default for SwitchDrops {
    fn default() -> Self {
        SwitchDrops {
            fixed: [0; DROP_REASONS],
            named: [0; NAMED.len()],
        }
    }
}

impl SwitchDrops {
    #[inline]
    fn count(&mut self, r: DropReason) {
        match (r.index(), r) {
            (Some(i), _) => self.fixed[i] += 1,
            (None, DropReason::Policy(name)) => {
                if let Some(i) = NAMED.iter().position(|n| *n == name) {
                    self.named[i] += 1;
                }
            }
            (None, _) => {}
        }
    }

    /// The count of one reason.
    pub fn get(&self, r: DropReason) -> u64 {
        match (r.index(), r) {
            (Some(i), _) => self.fixed[i],
            (None, DropReason::Policy(name)) => NAMED
                .iter()
                .position(|n| *n == name)
                .map_or(0, |i| self.named[i]),
            (None, _) => 0,
        }
    }

    /// Every reason with a non-zero count, by name.
    pub fn counts(&self) -> Vec<(&'static str, u64)> {
        DropReason::all()
            .map(|r| (r.name(), self.get(r)))
            .chain(NAMED.iter().copied().zip(self.named))
            .filter(|(_, n)| *n > 0)
            .collect()
    }

    pub fn total(&self) -> u64 {
        self.fixed.iter().chain(&self.named).sum()
    }

    /// Adds another switch's counts (a host's workers summed).
    pub fn add(&mut self, o: &SwitchDrops) {
        for (a, b) in self.fixed.iter_mut().zip(o.fixed) {
            *a += b;
        }
        for (a, b) in self.named.iter_mut().zip(o.named) {
            *a += b;
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct SwitchStats {
    /// Frames received from the uplink.
    pub uplink_rx: u64,
    /// Frames sent to the uplink.
    pub uplink_tx: u64,
    /// Outer UDP checksums verified in software (the device did not
    /// vouch for them): what the check costs is paid this many times.
    pub csum_verified_sw: u64,
    /// Outer UDP checksums the receiving device had verified.
    pub csum_verified_hw: u64,
    /// Frames delivered from one local port to another without the wire.
    pub local: u64,
    /// Frames a backend did not take (full queue).
    pub tx_dropped: u64,
    /// Tunnelled frames handed to the worker that owns their port.
    pub handed_off: u64,
    /// Frames for another worker's port dropped because its queue was full.
    pub handoff_dropped: u64,
    /// Errors a backend returned (the burst is lost; the backend stays).
    pub io_errors: u64,
    /// Segments the switch cut from super-frames for devices that cannot
    /// take them whole, and super-frames it could not cut (dropped).
    pub gso_segments: u64,
    pub gso_dropped: u64,
    /// Rounds a guest was not polled because its first packets (flows
    /// being set up) had used its share of the worker while other ports
    /// had traffic (see [`Switch::poll`]).
    pub slow_path_deferred: u64,
    /// Multicast copies handed to a subscribed local port's inbound path
    /// (which may still drop one, counted by that port).
    #[serde(default)]
    pub mcast_local: u64,
    /// Subscribed local ports a datagram skipped: their source filter
    /// does not admit its sender.
    #[serde(default)]
    pub mcast_filtered: u64,
    /// Multicast copies sent to an underlay group.
    #[serde(default)]
    pub mcast_underlay: u64,
    /// Multicast copies sent as unicast to a next-hop host (head end).
    #[serde(default)]
    pub mcast_unicast: u64,
    /// Frames the outer checks and the demultiplexing refused, by reason
    /// (reported apart, as drops, not among these counters).
    #[serde(skip)]
    pub drops: SwitchDrops,
}

impl SwitchStats {
    /// Every counter by its (serialized) name, the drops aside (see
    /// [`SwitchDrops::counts`]): what metrics and the CLI export.
    /// Destructured whole, so a counter added or renamed here fails the
    /// build until it is listed.
    pub fn counters(&self) -> [(&'static str, u64); 16] {
        let SwitchStats {
            uplink_rx,
            uplink_tx,
            csum_verified_sw,
            csum_verified_hw,
            local,
            tx_dropped,
            handed_off,
            handoff_dropped,
            io_errors,
            gso_segments,
            gso_dropped,
            slow_path_deferred,
            mcast_local,
            mcast_filtered,
            mcast_underlay,
            mcast_unicast,
            drops: _,
        } = *self;
        [
            ("uplink_rx", uplink_rx),
            ("uplink_tx", uplink_tx),
            ("csum_verified_sw", csum_verified_sw),
            ("csum_verified_hw", csum_verified_hw),
            ("local", local),
            ("tx_dropped", tx_dropped),
            ("handed_off", handed_off),
            ("handoff_dropped", handoff_dropped),
            ("io_errors", io_errors),
            ("gso_segments", gso_segments),
            ("gso_dropped", gso_dropped),
            ("slow_path_deferred", slow_path_deferred),
            ("mcast_local", mcast_local),
            ("mcast_filtered", mcast_filtered),
            ("mcast_underlay", mcast_underlay),
            ("mcast_unicast", mcast_unicast),
        ]
    }
}

/// Which worker owns the port of each (VNI, guest MAC): shared by every
/// worker's switch, replaced whole (RCU style) when a port is attached or
/// detached, read without a lock.
pub type Owners = Arc<ArcSwap<HashMap<(u32, Mac), usize>>>;

/// A local port's (VNI, guest MAC), the switch's demultiplexing key:
/// hashed as two words with the flow table's seeded hasher, not SipHash
/// (the table holds only attached ports; a frame can look a key up, never
/// add one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct DemuxKey {
    vni: u32,
    mac: Mac,
}

impl From<(u32, Mac)> for DemuxKey {
    #[inline]
    fn from((vni, mac): (u32, Mac)) -> Self {
        DemuxKey { vni, mac }
    }
}

impl std::hash::Hash for DemuxKey {
    #[inline]
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        let m = self.mac;
        state.write_u64(u64::from_le_bytes([
            m[0], m[1], m[2], m[3], m[4], m[5], 0, 0,
        ]));
        state.write_u64(u64::from(self.vni));
    }
}

/// A frame handed from one worker to another.
pub struct Handed {
    pub pkt: PacketBuf,
    /// It came from a local port (same-host traffic), not from the wire:
    /// a hairpin answer to it goes back locally too.
    pub local: bool,
    /// A multicast datagram (outer destination its underlay group) for
    /// the receiving worker's own subscribed ports.
    pub group: bool,
}

/// Another worker, as a switch sees it: a bounded queue of frames and a
/// way to wake it if it sleeps.
#[derive(Clone)]
pub struct Peer {
    pub queue: SyncSender<Handed>,
    pub wake: Arc<dyn Fn() + Send + Sync>,
}

/// How a switch on one of several workers reaches the others: a tunnel
/// for a port another worker owns goes to that worker's queue (a port is
/// owned by one worker; nothing is shared but this queue).
pub struct Handoff {
    /// This worker's index in `peers` and in the owners map.
    pub me: usize,
    pub owners: Owners,
    pub peers: Vec<Peer>,
    pub inbox: Receiver<Handed>,
}

/// Where a tunnelled frame goes.
enum Target {
    Here(usize),
    Worker(usize),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SwitchError {
    #[error("a port named '{0}' is attached already")]
    DuplicateName(String),
    #[error("a port with MAC {mac} on VNI {vni} is attached already ('{other}')")]
    DuplicateMac {
        vni: u32,
        mac: String,
        other: String,
    },
}

struct Attached {
    vnic: VnicPort,
    guest: Box<dyn Backend>,
    to_guest: Vec<PacketBuf>,
    capture: Option<Arc<Mutex<Capture>>>,
    /// The port's clock, read once at the start of each round: every
    /// frame of the round is processed at this moment.
    now: Moment,
    /// This round's frames from the uplink for this port, demultiplexed,
    /// processed as one burst.
    from_uplink: Vec<PacketBuf>,
    /// What the outer checks' fast parse read of each of `from_uplink`
    /// (handed to the port, which does not parse those frames again).
    from_uplink_parsed: Vec<Option<FastParsed>>,
    /// The verdicts of the burst being processed (kept: no allocation).
    verdicts: Vec<Verdict>,
    /// The verdict of one frame processed alone ([`Attached::process_one`]),
    /// apart from `verdicts`, which a burst's loop holds meanwhile.
    one: Vec<Verdict>,
    /// Cut over to another host by a migration (see `migrated.rs`).
    moved: Option<crate::migrated::Moved>,
    /// Nanoseconds of first-packet work the guest may still do while other
    /// ports have traffic (see [`Switch::poll`]); not polled below zero.
    slow_credit: i64,
    /// Frames received from the guest in the last round.
    last_rx: usize,
}

impl Attached {
    /// Processes a burst through the port at the round's moment.
    #[inline]
    fn process_burst(&mut self, dir: Direction, pkts: &mut [PacketBuf]) {
        self.vnic
            .port
            .process_burst(dir, pkts, self.now, &mut self.verdicts);
    }

    /// Processes the round's burst from the uplink, with what the outer
    /// checks parsed of it.
    #[inline]
    fn process_from_uplink(&mut self, pkts: &mut [PacketBuf]) {
        self.vnic.port.process_burst_parsed(
            Direction::In,
            pkts,
            &self.from_uplink_parsed,
            self.now,
            &mut self.verdicts,
        );
        self.from_uplink_parsed.clear();
    }

    /// One frame at the round's moment (local deliveries, hand-offs).
    fn process_one(&mut self, dir: Direction, pkt: &mut PacketBuf) -> Verdict {
        self.vnic
            .port
            .process_burst(dir, std::slice::from_mut(pkt), self.now, &mut self.one);
        // One frame in, one verdict out; fail closed all the same.
        self.one
            .pop()
            .unwrap_or(Verdict::Drop(DropReason::UnknownPort))
    }
}

/// Frames recorded from a port while an operator captures it: what the
/// guest sent (before the outbound path) and what it was sent (after the
/// inbound path). A debugging aid: recording copies each frame.
#[derive(Debug, Default)]
pub struct Capture {
    pub frames: Vec<(SystemTime, Vec<u8>)>,
    /// Recording stops at this many frames.
    pub max: usize,
}

impl Capture {
    fn record(c: &Option<Arc<Mutex<Capture>>>, frame: &[u8]) {
        if let Some(c) = c {
            let mut c = c.lock().unwrap_or_else(|e| e.into_inner());
            if c.frames.len() < c.max {
                c.frames.push((SystemTime::now(), frame.to_vec()));
            }
        }
    }
}

pub struct Switch {
    underlay_ip: Ipv6Addr,
    /// The host's uplinks, 1 or 2 (see `uplinks.rs`).
    uplinks: Uplinks,
    ports: Vec<Option<Attached>>,
    by_name: HashMap<String, usize>,
    demux: HashMap<DemuxKey, usize, FlowHashBuilder>,
    stats: SwitchStats,
    rx: Vec<PacketBuf>,
    /// The ports that got frames from the uplink this round, in the order
    /// of their first frame: each one's burst is processed in turn.
    rx_ports: Vec<usize>,
    to_uplink: Vec<PacketBuf>,
    /// The underlay's MTU, if known ([`Switch::set_uplink_mtu`]).
    uplink_mtu: Option<u16>,
    /// Local tunnels produced while delivering, for the next poll.
    loopback: Vec<PacketBuf>,
    handoff: Option<Handoff>,
    cutter: Cutter,
    options: SwitchOptions,
    mcast: Option<McastPath>,
}

/// What the multicast datapath reads (see [`Switch::set_mcast`]).
struct McastPath {
    tables: Arc<Mcast>,
    /// The underlay next hop's MAC: the outer Ethernet destination of a
    /// head-end (unicast) copy.
    next_hop_mac: Mac,
}

/// What a multicast tunnel says about itself: its VNI, the inner source
/// and group, and its outer destination.
#[derive(Clone, Copy)]
struct GroupKey {
    vni: Vni,
    src: IpAddr,
    group: IpAddr,
    outer_dst: Ipv6Addr,
}

/// Whether a tunnel carries a group's datagram: its outer IPv6
/// destination is a multicast address (an underlay group), or its inner
/// destination MAC is a group MAC (a head-end copy, unicast to this host).
#[inline]
fn is_group_tunnel(pkt: &PacketBuf) -> bool {
    let f = pkt.as_slice();
    if f.get(12..14) != Some(&[0x86, 0xdd]) {
        return false;
    }
    if f.get(38) == Some(&0xff) {
        return true;
    }
    // Ethernet 14, IPv6 40, UDP 8, Geneve 8 and its options.
    let inner = 70 + usize::from(f.get(62).map_or(0, |b| b & 0x3f)) * 4;
    f.get(inner).is_some_and(|b| b & 1 == 1)
}

/// A copy of a frame for one more receiver: from the pool when it fits a
/// pool buffer (no allocation once warm), else a heap copy.
fn copy_of(pkt: &PacketBuf) -> PacketBuf {
    if pkt.gso().is_none() && pkt.len() <= dataplane::packet::DEFAULT_CAPACITY / 2 {
        let mut c = crate::backend::SharedPool::get();
        if let Ok(b) = c.push_back(pkt.len()) {
            b.copy_from_slice(pkt.as_slice());
            return c;
        }
        recycle(c);
    }
    pkt.clone()
}

/// Cuts super-frames for a device that cannot take them whole (see
/// [`Backend::takes_super_frames`]). Its buffers come from its own pool,
/// which the devices it feeds do not refill: this path allocates per
/// segment, and is only for devices that rarely see super-frames (pcap,
/// DPDK's virtual devices, the in-memory test double).
#[derive(Default)]
struct Cutter {
    spare: Vec<PacketBuf>,
    ends: Vec<usize>,
    pool: crate::backend::BufPool,
    drops: crate::offload::OffloadDrops,
}

impl Cutter {
    fn cut_for(&mut self, b: &dyn Backend, pkts: &mut Vec<PacketBuf>, stats: &mut SwitchStats) {
        if b.takes_super_frames() {
            return;
        }
        let before = self.drops.total();
        stats.gso_segments += crate::offload::cut_super_frames(
            pkts,
            &mut self.spare,
            &mut self.ends,
            &mut self.pool,
            &mut self.drops,
        ) as u64;
        stats.gso_dropped += self.drops.total() - before;
    }
}

impl Switch {
    /// A switch with one uplink (named `uplink`).
    pub fn new(underlay_ip: Ipv6Addr, uplink: Box<dyn Backend>) -> Switch {
        Self::with_uplinks(
            underlay_ip,
            vec![UplinkDevice {
                name: "uplink".into(),
                backend: uplink,
                mac: [0; 6],
                next_hop_mac: [0; 6],
            }],
        )
    }

    /// A switch with these uplinks (1 or [`MAX_UPLINKS`]; more are
    /// ignored): the first's outer Ethernet addresses are those the
    /// overlay layer writes (see `uplinks.rs`).
    ///
    /// [`MAX_UPLINKS`]: crate::uplinks::MAX_UPLINKS
    pub fn with_uplinks(underlay_ip: Ipv6Addr, uplinks: Vec<UplinkDevice>) -> Switch {
        Switch {
            underlay_ip,
            uplinks: Uplinks::new(uplinks),
            ports: Vec::new(),
            by_name: HashMap::new(),
            demux: HashMap::with_hasher(FlowHashBuilder::random()),
            stats: SwitchStats::default(),
            rx: Vec::with_capacity(BURST),
            rx_ports: Vec::with_capacity(BURST),
            to_uplink: Vec::with_capacity(BURST * 2),
            uplink_mtu: None,
            loopback: Vec::new(),
            handoff: None,
            cutter: Cutter {
                pool: crate::backend::BufPool::new(BURST * 2),
                ..Cutter::default()
            },
            options: SwitchOptions::default(),
            mcast: None,
        }
    }

    /// Turns the multicast datapath on (see the module docs): `tables`
    /// are the host's multicast tables (the ports' overlay reads the same
    /// ones), `next_hop_mac` the underlay next hop's MAC. Without it a
    /// group tunnel is refused like any tunnel not for this host.
    pub fn set_mcast(&mut self, tables: Arc<Mcast>, next_hop_mac: Mac) {
        self.mcast = Some(McastPath {
            tables,
            next_hop_mac,
        });
    }

    /// Sets how the outer checks treat what arrives (see [`SwitchOptions`]).
    pub fn set_options(&mut self, o: SwitchOptions) {
        self.options = o;
    }

    /// Connects this switch to the other workers' (see [`Handoff`]).
    pub fn set_handoff(&mut self, h: Handoff) {
        self.handoff = Some(h);
    }

    /// Sets the underlay's MTU: frames for the uplink that do not fit are
    /// dropped and counted (`underlay_mtu_exceeded`). The control plane
    /// refuses vNICs whose frames would not fit; this catches the rest.
    pub fn set_uplink_mtu(&mut self, mtu: Option<u16>) {
        self.uplink_mtu = mtu;
    }

    pub fn stats(&self) -> SwitchStats {
        self.stats
    }

    /// Reads every uplink's link state from its device (see
    /// [`Backend::link_up`]): a link gone down carries no more frames
    /// from the next burst on, its flows going to the other uplink.
    /// The worker calls it every few milliseconds. Returns whether a
    /// link changed.
    pub fn check_links(&mut self) -> bool {
        self.uplinks.check_links()
    }

    /// Which uplinks carry traffic, by name (`set-underlay`); all still
    /// receive. Refused, changing nothing, for an unknown or repeated
    /// name or an empty list.
    pub fn set_uplinks_in_use(&mut self, names: &[String]) -> Result<(), UplinkError> {
        self.uplinks.set_in_use(names)
    }

    /// Each uplink's state and counters, in configuration order.
    pub fn uplinks(&self) -> Vec<UplinkState> {
        self.uplinks.states()
    }

    /// The descriptors that become readable when a backend of this switch
    /// (or its handoff queue's waker, which the worker owns) has frames.
    /// Returns whether every backend that can receive has one: if not, an
    /// idle worker must wake on a timer to poll the others.
    pub fn poll_fds<'a>(&'a self, out: &mut Vec<BorrowedFd<'a>>) -> bool {
        let mut all = true;
        let backends = (self.uplinks.list.iter().map(|u| &u.backend))
            .chain(self.ports.iter().flatten().map(|a| &a.guest));
        for b in backends.filter(|b| !b.never_receives()) {
            match b.poll_fd() {
                Some(fd) => out.push(fd),
                None => all = false,
            }
        }
        all && self.loopback.is_empty()
    }

    /// Every device's own drop counters (see [`Backend::device_drops`]):
    /// the uplink's as `uplink`, each guest's by its port's name. Reads
    /// the devices (a system call for some): call it between bursts.
    pub fn device_drops(&mut self) -> Vec<(String, Vec<(&'static str, u64)>)> {
        let mut v = Vec::new();
        for (name, u) in self.uplink_device_names() {
            v.push((name, u.backend.device_drops()));
        }
        for a in self.ports.iter_mut().flatten() {
            v.push((a.vnic.config().name.clone(), a.guest.device_drops()));
        }
        v
    }

    /// Every device's other counters (see [`Backend::device_counters`]),
    /// named like [`Switch::device_drops`]; a device without any is left
    /// out.
    pub fn device_counters(&mut self) -> Vec<(String, Vec<(&'static str, u64)>)> {
        let mut v = Vec::new();
        for (name, u) in self.uplink_device_names() {
            let up = u.backend.device_counters();
            if !up.is_empty() {
                v.push((name, up));
            }
        }
        for a in self.ports.iter_mut().flatten() {
            let c = a.guest.device_counters();
            if !c.is_empty() {
                v.push((a.vnic.config().name.clone(), c));
            }
        }
        v
    }

    /// The uplinks by their device name: `uplink` for a host's only one,
    /// else `uplink:NAME`.
    fn uplink_device_names(
        &mut self,
    ) -> impl Iterator<Item = (String, &mut crate::uplinks::Uplink)> {
        let one = self.uplinks.list.len() == 1;
        self.uplinks.list.iter_mut().map(move |u| {
            let name = if one {
                "uplink".to_string()
            } else {
                format!("uplink:{}", u.name)
            };
            (name, u)
        })
    }

    /// How many ports are attached.
    pub fn port_count(&self) -> usize {
        self.by_name.len()
    }

    /// Attaches a vNIC's port and its guest backend.
    pub fn attach(&mut self, vnic: VnicPort, guest: Box<dyn Backend>) -> Result<(), SwitchError> {
        let c = vnic.config();
        let key = (c.vni.get(), c.guest_mac.0);
        if self.by_name.contains_key(&c.name) {
            return Err(SwitchError::DuplicateName(c.name.clone()));
        }
        if let Some(&i) = self.demux.get(&DemuxKey::from(key)) {
            let other = self.ports[i]
                .as_ref()
                .map_or(String::new(), |a| a.vnic.config().name.clone());
            return Err(SwitchError::DuplicateMac {
                vni: key.0,
                mac: c.guest_mac.to_string(),
                other,
            });
        }
        let i = match self.ports.iter().position(Option::is_none) {
            Some(i) => i,
            None => {
                self.ports.push(None);
                self.ports.len() - 1
            }
        };
        self.by_name.insert(c.name.clone(), i);
        self.demux.insert(DemuxKey::from(key), i);
        let now = vnic.port.now();
        self.ports[i] = Some(Attached {
            vnic,
            guest,
            to_guest: Vec::with_capacity(BURST * 2),
            capture: None,
            now,
            from_uplink: Vec::with_capacity(BURST),
            from_uplink_parsed: Vec::with_capacity(BURST),
            verdicts: Vec::with_capacity(BURST),
            one: Vec::with_capacity(1),
            moved: None,
            slow_credit: SLOW_CREDIT_MAX,
            last_rx: 0,
        });
        Ok(())
    }

    /// Detaches a port; its guest backend is closed with it.
    pub fn detach(&mut self, name: &str) -> Option<VnicPort> {
        let i = self.by_name.remove(name)?;
        let a = self.ports[i].take()?;
        let c = a.vnic.config();
        self.demux
            .remove(&DemuxKey::from((c.vni.get(), c.guest_mac.0)));
        Some(a.vnic)
    }

    pub fn port(&self, name: &str) -> Option<&VnicPort> {
        self.ports[*self.by_name.get(name)?]
            .as_ref()
            .map(|a| &a.vnic)
    }

    pub fn port_mut(&mut self, name: &str) -> Option<&mut VnicPort> {
        let i = *self.by_name.get(name)?;
        self.ports[i].as_mut().map(|a| &mut a.vnic)
    }

    /// Starts (`Some`) or stops (`None`) recording a port's frames;
    /// false if there is no such port.
    pub fn set_capture(&mut self, name: &str, c: Option<Arc<Mutex<Capture>>>) -> bool {
        let Some(&i) = self.by_name.get(name) else {
            return false;
        };
        match self.ports[i].as_mut() {
            Some(a) => {
                a.capture = c;
                true
            }
            None => false,
        }
    }

    /// Cuts a port over to `to` (a migration: its frames from the
    /// underlay and from local ports are tunnelled on to that host, what
    /// its guest sends is dropped, counted) or, with `None`, resumes it.
    /// `guest` replaces its guest device if given (the old one is closed:
    /// a TAP's queue is let go so the target can take it). Returns the
    /// cut-over's counters before the change; `None` if no such port.
    pub fn set_moved(
        &mut self,
        name: &str,
        to: Option<Ipv6Addr>,
        guest: Option<Box<dyn Backend>>,
    ) -> Option<crate::migrated::MovedStats> {
        let i = *self.by_name.get(name)?;
        let a = self.ports[i].as_mut()?;
        let before = a.moved.as_ref().map(|m| m.stats()).unwrap_or_default();
        a.moved = to.map(crate::migrated::Moved::new);
        if let Some(g) = guest {
            a.guest = g;
        }
        Some(before)
    }

    /// A port's cut-over counters; `None` if no such port, default if it
    /// is not cut over.
    pub fn moved_stats(&self, name: &str) -> Option<crate::migrated::MovedStats> {
        let a = self.ports[*self.by_name.get(name)?].as_ref()?;
        Some(a.moved.as_ref().map(|m| m.stats()).unwrap_or_default())
    }

    pub fn port_names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.by_name.keys().cloned().collect();
        v.sort();
        v
    }

    /// One round: a burst from the uplink, a burst from every guest, and
    /// everything they produced sent on. Returns the frames received.
    ///
    /// Each port's clock is read once, at the start of the round, and
    /// every port gets its frames as bursts: the guest's RX burst whole,
    /// and the uplink's frames demultiplexed into one burst per port.
    ///
    /// A backend's error does not stop the round: every other backend is
    /// still served, the error is counted (`io_errors`) and the first one
    /// is returned at the end.
    ///
    /// First packets are shared out, so that one guest setting up flows as
    /// fast as it can (a SYN flood) cannot take the worker from its
    /// neighbours' established traffic: a guest is charged the time its
    /// port spent on UFT misses (`PortStats::slow_path_ns`), against a
    /// credit each guest earns per round
    /// ([`SLOW_QUANTUM`], up to [`SLOW_CREDIT_MAX`]); a guest whose credit
    /// is spent is not polled (its frames wait in its device, counted
    /// `slow_path_deferred`) until it has earned some back. When no other
    /// port moved a frame in the round, the credit is refilled: there is
    /// nobody to protect. A port's UFT hits cost it nothing.
    pub fn poll(&mut self) -> std::io::Result<usize> {
        let mut moved = 0;
        let mut first_err = None;
        for a in self.ports.iter_mut().flatten() {
            a.now = a.vnic.port.now();
        }
        // One RX vector, reused for the uplink and every guest: polling
        // allocates nothing of its own.
        let mut rx = std::mem::take(&mut self.rx);
        rx.clear();
        // Every uplink, down or not in use as it may be: what arrives on
        // it is the far hosts' choice.
        for k in 0..self.uplinks.list.len() {
            let u = &mut self.uplinks.list[k];
            let n = u.backend.rx_burst(&mut rx, BURST).unwrap_or_else(|e| {
                self.stats.io_errors += 1;
                first_err.get_or_insert(e);
                0
            });
            u.stats.rx += n as u64;
            self.stats.uplink_rx += n as u64;
            moved += n;
            self.handle_uplink_burst(&mut rx);
        }
        for pkt in std::mem::take(&mut self.loopback) {
            self.deliver_local(pkt);
        }
        moved += self.drain_inbox();
        // Whether any guest is short of first-packet credit (then all earn).
        let mut owed = false;
        for i in 0..self.ports.len() {
            let Some(a) = self.ports[i].as_mut() else {
                continue;
            };
            a.last_rx = 0;
            if a.slow_credit <= 0 {
                self.stats.slow_path_deferred += 1;
                owed = true;
                continue;
            }
            let n = a.guest.rx_burst(&mut rx, BURST).unwrap_or_else(|e| {
                self.stats.io_errors += 1;
                first_err.get_or_insert(e);
                0
            });
            moved += n;
            a.last_rx = n;
            let slow = a.vnic.port.stats().slow_path_ns;
            self.handle_guest_burst(i, &mut rx);
            if let Some(a) = self.ports[i].as_mut() {
                let spent = a.vnic.port.stats().slow_path_ns - slow;
                if spent > 0 {
                    let spent = i64::try_from(spent).unwrap_or(i64::MAX);
                    a.slow_credit = a.slow_credit.saturating_sub(spent);
                }
                owed |= a.slow_credit < SLOW_CREDIT_MAX;
            }
        }
        self.rx = rx;
        if owed {
            self.earn_slow_credit(moved);
        }
        if let Err(e) = self.flush() {
            first_err.get_or_insert(e);
        }
        for a in self.ports.iter_mut().flatten() {
            a.vnic.port.expire_paced(a.now, EXPIRE_BUDGET);
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(moved),
        }
    }

    /// Each guest's first-packet credit after a round that moved `moved`
    /// frames (see [`Switch::poll`]): refilled when only its own frames
    /// moved (or none), else one quantum more.
    fn earn_slow_credit(&mut self, moved: usize) {
        for a in self.ports.iter_mut().flatten() {
            let own = a.last_rx;
            a.slow_credit = if moved <= own {
                SLOW_CREDIT_MAX
            } else {
                (a.slow_credit + SLOW_QUANTUM).min(SLOW_CREDIT_MAX)
            };
        }
    }

    /// Frames other workers handed over, a burst at most.
    fn drain_inbox(&mut self) -> usize {
        let mut n = 0;
        while n < BURST {
            let Some(h) = self.handoff.as_ref().and_then(|h| h.inbox.try_recv().ok()) else {
                break;
            };
            n += 1;
            if h.group {
                self.group_members(&h.pkt, None, h.local, false);
                recycle(h.pkt);
            } else if h.local {
                self.deliver_local(h.pkt);
            } else {
                self.handle_uplink(h.pkt);
            }
        }
        n
    }

    /// Hands a frame to the worker that owns its port.
    fn hand_off(&mut self, w: usize, pkt: PacketBuf, local: bool) {
        self.hand_off_as(w, pkt, local, false)
    }

    fn hand_off_as(&mut self, w: usize, pkt: PacketBuf, local: bool, group: bool) {
        let Some(peer) = self.handoff.as_ref().and_then(|h| h.peers.get(w)) else {
            self.stats.drops.count(DropReason::UnknownPort);
            return;
        };
        match peer.queue.try_send(Handed { pkt, local, group }) {
            Ok(()) => {
                self.stats.handed_off += 1;
                (peer.wake)();
            }
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.stats.handoff_dropped += 1;
            }
        }
    }

    /// The outer checks and the demultiplexing of a burst from the uplink
    /// (drained): each frame that passes joins its port's burst, then each
    /// port processes its burst at once. Every frame keeps its order among
    /// its port's frames; inbound hairpin answers go to the uplink port by
    /// port, in the order the ports first appeared in the burst.
    fn handle_uplink_burst(&mut self, rx: &mut Vec<PacketBuf>) {
        for pkt in rx.drain(..) {
            if self.mcast.is_some() && is_group_tunnel(&pkt) {
                self.group_in(pkt);
                continue;
            }
            match self.tunnel_target(&pkt, true) {
                Some((Target::Here(i), parsed)) => {
                    if let Some(a) = self.ports[i].as_mut() {
                        if let Some(m) = a.moved.as_mut() {
                            m.forward(pkt, &mut self.to_uplink);
                            continue;
                        }
                        if a.from_uplink.is_empty() {
                            self.rx_ports.push(i);
                        }
                        a.from_uplink.push(pkt);
                        a.from_uplink_parsed.push(parsed);
                    }
                }
                Some((Target::Worker(w), _)) => self.hand_off(w, pkt, false),
                None => recycle(pkt),
            }
        }
        for &i in &self.rx_ports {
            let Some(a) = self.ports[i].as_mut() else {
                continue;
            };
            let mut burst = std::mem::take(&mut a.from_uplink);
            a.process_from_uplink(&mut burst);
            for (pkt, v) in burst.drain(..).zip(a.verdicts.drain(..)) {
                match v {
                    Verdict::Forward => a.to_guest.push(pkt),
                    // An inbound hairpin answers the sender, over the underlay.
                    Verdict::Hairpin(reply) => {
                        self.to_uplink.push(reply);
                        recycle(pkt);
                    }
                    Verdict::Drop(_) => recycle(pkt),
                }
            }
            a.from_uplink = burst;
        }
        self.rx_ports.clear();
    }

    /// The outer checks and the demultiplexing of one frame from the
    /// uplink, handed over by another worker.
    fn handle_uplink(&mut self, pkt: PacketBuf) {
        if self.mcast.is_some() && is_group_tunnel(&pkt) {
            return self.group_in(pkt);
        }
        let i = match self.tunnel_target(&pkt, true) {
            Some((Target::Here(i), _)) => i,
            Some((Target::Worker(w), _)) => return self.hand_off(w, pkt, false),
            None => return recycle(pkt),
        };
        // An inbound hairpin answers the sender, over the underlay.
        self.deliver_member(i, pkt, false);
    }

    /// Which local port a tunnelled frame is for, after the outer checks
    /// (`from_wire`: the frame came from the uplink, so its destination
    /// must be this host), with the fast parse of the frame when it is
    /// one the fast parse reads.
    fn tunnel_target(
        &mut self,
        pkt: &PacketBuf,
        from_wire: bool,
    ) -> Option<(Target, Option<FastParsed>)> {
        match self.outer_checks(pkt, from_wire) {
            Ok(t) => Some(t),
            Err(r) => {
                self.stats.drops.count(r);
                None
            }
        }
    }

    /// The outer checks of the module documentation, in that order.
    ///
    /// The commonest tunnel (no Geneve options, a plain TCP or UDP guest
    /// frame) is read by [`headers::parse_fast`], whose contract is that
    /// the full parse reads such a frame the same way: the same checks on
    /// the same fields, without building the whole `Headers`, and the
    /// port is handed that parse. Anything else takes the full parse.
    fn outer_checks(
        &mut self,
        pkt: &PacketBuf,
        from_wire: bool,
    ) -> Result<(Target, Option<FastParsed>), DropReason> {
        let frame = pkt.as_slice();
        if let Some(f) = headers::parse_fast(frame, ParseMode::Geneve) {
            let l3 = usize::from(f.off.outer_l3);
            let inner = usize::from(f.off.inner_l2);
            let geneve = usize::from(f.off.geneve);
            // All within what the fast parse has read.
            let (Some(ip6), Some(flags), Some(dst_mac)) = (
                frame.get(l3..l3 + headers::IPV6_HDR_LEN),
                frame.get(geneve + headers::GENEVE_FLAGS),
                frame.get(inner..inner + 6),
            ) else {
                return Err(DropReason::Malformed(headers::ParseError::NotGeneve));
            };
            let mut src = [0u8; 16];
            let mut dst = [0u8; 16];
            src.copy_from_slice(&ip6[8..24]);
            dst.copy_from_slice(&ip6[24..40]);
            if from_wire {
                if Ipv6Addr::from(dst) != self.underlay_ip {
                    return Err(DropReason::Policy(reason::NOT_OUR_HOST));
                }
                self.check_outer_udp(pkt, &src, &dst, usize::from(f.off.outer_l4))?;
            }
            if flags & headers::GENEVE_FLAG_OAM != 0 {
                return Err(DropReason::GeneveControl);
            }
            // No options to check: the fast parse takes none.
            let mut mac: Mac = [0; 6];
            mac.copy_from_slice(dst_mac);
            return self.demux_target(f.key.vni, mac).map(|t| (t, Some(f)));
        }
        let p = headers::parse(frame, ParseMode::Geneve).map_err(DropReason::Malformed)?;
        let outer = p
            .hdrs
            .outer
            .ok_or(DropReason::Malformed(headers::ParseError::NotGeneve))?;
        if from_wire {
            if outer.ip_dst != self.underlay_ip {
                return Err(DropReason::Policy(reason::NOT_OUR_HOST));
            }
            let (src, dst) = (outer.ip_src.octets(), outer.ip_dst.octets());
            self.check_outer_udp(pkt, &src, &dst, usize::from(p.off.outer_l4))?;
        }
        if outer.geneve.oam {
            return Err(DropReason::GeneveControl);
        }
        let g = usize::from(p.off.geneve) + headers::GENEVE_HDR_LEN;
        let opts = frame
            .get(g..g + usize::from(outer.geneve.opt_len))
            .unwrap_or(&[]);
        match overlay::check_options(opts) {
            Ok(_) => {}
            Err(overlay::geneve::OptionError::UnknownCritical { .. }) => {
                return Err(DropReason::Policy(reason::CRITICAL_OPTION))
            }
            Err(overlay::geneve::OptionError::Malformed) => {
                return Err(DropReason::Malformed(headers::ParseError::BadGeneveOption))
            }
        }
        self.demux_target(outer.geneve.vni.get(), p.hdrs.inner.eth_dst)
            .map(|t| (t, None))
    }

    /// The port (here or on another worker) a tunnel for guest `mac` on
    /// `vni` is for.
    #[inline]
    fn demux_target(&self, vni: u32, mac: Mac) -> Result<Target, DropReason> {
        let key = (vni, mac);
        if let Some(&i) = self.demux.get(&DemuxKey::from(key)) {
            return Ok(Target::Here(i));
        }
        if let Some(h) = &self.handoff {
            let owners = h.owners.load();
            if let Some(&w) = owners.get(&key) {
                if w != h.me {
                    return Ok(Target::Worker(w));
                }
            }
            if owners.keys().any(|(_, m)| *m == mac) {
                return Err(DropReason::Policy(reason::WRONG_VNI));
            }
        }
        // A scan, on the drop path only: a guest's MAC on another VNI
        // than the tunnel's says the sender has the wrong VPC.
        if self.demux.keys().any(|k| k.mac == mac) {
            return Err(DropReason::Policy(reason::WRONG_VNI));
        }
        Err(DropReason::UnknownPort)
    }

    /// The outer UDP checksum of a tunnel from the wire: the device's
    /// verdict when it gave one, else verified here. A super-frame the
    /// device put together (GRO) had every segment's checksum verified
    /// before it was merged, and its own field is not meaningful.
    #[inline]
    fn check_outer_udp(
        &mut self,
        pkt: &PacketBuf,
        src: &[u8; 16],
        dst: &[u8; 16],
        l4: usize,
    ) -> Result<(), DropReason> {
        if pkt.gso().is_some() {
            self.stats.csum_verified_hw += 1;
            return Ok(());
        }
        let frame = pkt.as_slice();
        let udp_len = frame
            .get(l4 + 4..l4 + 6)
            .map_or(0, |b| usize::from(u16::from_be_bytes([b[0], b[1]])));
        let udp = frame.get(l4..l4 + udp_len).unwrap_or(&[]);
        // A zero checksum is the sender's choice, whatever the device says.
        if udp.get(6..8) == Some(&[0, 0]) {
            return if self.options.accept_zero_udp6_checksum {
                Ok(())
            } else {
                Err(DropReason::ZeroUdp6Checksum)
            };
        }
        if pkt.l4_csum_valid() {
            self.stats.csum_verified_hw += 1;
            return Ok(());
        }
        self.stats.csum_verified_sw += 1;
        match verify_udp6(src, dst, udp) {
            UdpCheck::Good => Ok(()),
            UdpCheck::Bad | UdpCheck::Zero => Err(DropReason::OuterUdpChecksum),
        }
    }

    /// A burst from guest `i` (drained) through its port's outbound path
    /// at once, then each frame where its verdict sends it.
    fn handle_guest_burst(&mut self, i: usize, rx: &mut Vec<PacketBuf>) {
        if rx.is_empty() {
            return;
        }
        let Some(a) = self.ports[i].as_mut() else {
            rx.drain(..).for_each(recycle);
            return;
        };
        if let Some(m) = a.moved.as_mut() {
            // The guest runs on the target now: the source forwards nothing.
            m.guest_dropped += rx.len() as u64;
            rx.drain(..).for_each(recycle);
            return;
        }
        if a.capture.is_some() {
            for p in rx.iter() {
                Capture::record(&a.capture, p.as_slice());
            }
        }
        a.process_burst(Direction::Out, rx);
        // Taken for the loop (delivering locally borrows the switch), put
        // back after: no allocation.
        let mut verdicts = std::mem::take(&mut a.verdicts);
        for (pkt, v) in rx.drain(..).zip(verdicts.drain(..)) {
            match v {
                Verdict::Forward => {
                    if self.mcast.is_some() && is_group_tunnel(&pkt) {
                        self.group_out(i, pkt);
                    } else if self.is_local(&pkt) {
                        // Same host: straight to the local port, as if it
                        // had come from the wire (and through the same
                        // checks).
                        self.stats.local += 1;
                        self.deliver_local(pkt);
                    } else {
                        self.to_uplink.push(pkt);
                    }
                }
                Verdict::Hairpin(reply) => {
                    if let Some(a) = self.ports[i].as_mut() {
                        a.to_guest.push(reply);
                    }
                    recycle(pkt);
                }
                Verdict::Drop(_) => recycle(pkt),
            }
        }
        if let Some(a) = self.ports[i].as_mut() {
            a.verdicts = verdicts;
        }
    }

    /// Delivers a tunnel addressed to this host to the local port it names.
    fn deliver_local(&mut self, mut pkt: PacketBuf) {
        let j = match self.tunnel_target(&pkt, false) {
            Some((Target::Here(j), _)) => j,
            Some((Target::Worker(w), _)) => return self.hand_off(w, pkt, true),
            None => return recycle(pkt),
        };
        let Some(b) = self.ports[j].as_mut() else {
            return recycle(pkt);
        };
        if let Some(m) = b.moved.as_mut() {
            return m.forward(pkt, &mut self.to_uplink);
        }
        match b.process_one(Direction::In, &mut pkt) {
            Verdict::Forward => b.to_guest.push(pkt),
            // The answer to a local tunnel is a local tunnel too: it goes
            // round again next poll, through the same checks.
            Verdict::Hairpin(reply) => {
                self.loopback.push(reply);
                recycle(pkt);
            }
            Verdict::Drop(_) => recycle(pkt),
        }
    }

    /// What a multicast tunnel carries (a full parse: multicast is not
    /// the fast path's commonest frame), or the drop reason.
    fn group_key(pkt: &PacketBuf) -> Result<(GroupKey, headers::Parsed), DropReason> {
        let p = headers::parse(pkt.as_slice(), ParseMode::Geneve).map_err(DropReason::Malformed)?;
        let outer = p
            .hdrs
            .outer
            .ok_or(DropReason::Malformed(headers::ParseError::NotGeneve))?;
        let ip = (p.hdrs.inner.ip()).ok_or(DropReason::Policy(reason::MULTICAST))?;
        let k = GroupKey {
            vni: outer.geneve.vni,
            src: ip.src,
            group: ip.dst,
            outer_dst: outer.ip_dst,
        };
        Ok((k, p))
    }

    /// A guest's multicast datagram, as its port tunnelled it to the
    /// group's underlay group: to the other local subscribers, then on
    /// per the forwarding table (see the module docs).
    fn group_out(&mut self, from: usize, mut pkt: PacketBuf) {
        let Some(tables) = self.mcast.as_ref().map(|m| m.tables.load()) else {
            return recycle(pkt);
        };
        let k = match Self::group_key(&pkt) {
            Ok((k, _)) => k,
            Err(r) => {
                self.stats.drops.count(r);
                return recycle(pkt);
            }
        };
        // The port checked M2P when the flow was set up; the tables may
        // have changed since (the flow is re-checked at its next packet).
        let Some(&underlay) = tables.m2p.get(&(k.vni, k.group)) else {
            self.stats
                .drops
                .count(DropReason::Policy(reason::MULTICAST));
            return recycle(pkt);
        };
        self.group_members(&pkt, Some(from), true, true);
        let next_hop_mac = self.mcast.as_ref().map_or([0; 6], |m| m.next_hop_mac);
        let mut to_group = false;
        if let Some(hops) = tables.fwd.get(&(k.vni, k.group)) {
            for (&hop, &r) in hops {
                to_group |= r.underlay();
                // This host's own members were served above.
                if r.external() && hop != self.underlay_ip {
                    let mut c = copy_of(&pkt);
                    if mcast::retarget(c.as_mut_slice(), hop, next_hop_mac) {
                        self.stats.mcast_unicast += 1;
                        self.to_uplink.push(c);
                    } else {
                        recycle(c);
                    }
                }
            }
        }
        if to_group && mcast::retarget(pkt.as_mut_slice(), underlay, mcast::underlay_mac(underlay))
        {
            self.stats.mcast_underlay += 1;
            self.to_uplink.push(pkt);
        } else {
            recycle(pkt);
        }
    }

    /// A multicast tunnel from the wire: the outer checks (its
    /// destination the underlay group of a group this host carries in the
    /// tunnel's VNI, or this host for a head-end copy of one), then to the
    /// local subscribers.
    fn group_in(&mut self, pkt: PacketBuf) {
        if let Err(r) = self.group_checks(&pkt) {
            self.stats.drops.count(r);
        } else {
            self.group_members(&pkt, None, false, true);
        }
        recycle(pkt);
    }

    fn group_checks(&mut self, pkt: &PacketBuf) -> Result<(), DropReason> {
        let (k, p) = Self::group_key(pkt)?;
        let carried = self
            .mcast
            .as_ref()
            .and_then(|m| m.tables.load().m2p.get(&(k.vni, k.group)).copied());
        // To the group's underlay group, or a head-end copy to this host.
        let ours = carried.is_some_and(|u| k.outer_dst == u || k.outer_dst == self.underlay_ip);
        if !ours {
            return Err(DropReason::Policy(reason::NOT_OUR_HOST));
        }
        let outer = p
            .hdrs
            .outer
            .ok_or(DropReason::Malformed(headers::ParseError::NotGeneve))?;
        let (src, dst) = (outer.ip_src.octets(), outer.ip_dst.octets());
        self.check_outer_udp(pkt, &src, &dst, usize::from(p.off.outer_l4))?;
        if outer.geneve.oam {
            return Err(DropReason::GeneveControl);
        }
        let g = usize::from(p.off.geneve) + headers::GENEVE_HDR_LEN;
        let opts = (pkt.as_slice())
            .get(g..g + usize::from(outer.geneve.opt_len))
            .unwrap_or(&[]);
        match overlay::check_options(opts) {
            Ok(_) => Ok(()),
            Err(overlay::geneve::OptionError::UnknownCritical { .. }) => {
                Err(DropReason::Policy(reason::CRITICAL_OPTION))
            }
            Err(overlay::geneve::OptionError::Malformed) => {
                Err(DropReason::Malformed(headers::ParseError::BadGeneveOption))
            }
        }
    }

    /// Delivers a copy of a multicast tunnel to each of this switch's
    /// ports subscribed to its group in its VNI whose filter admits the
    /// sender, `except` the sender's own; each copy is re-addressed to
    /// this host and goes through the member's inbound path. With
    /// `peers`, members this switch does not own get one copy handed to
    /// every other worker (which serves its own).
    fn group_members(&mut self, pkt: &PacketBuf, except: Option<usize>, local: bool, peers: bool) {
        let Some(tables) = self.mcast.as_ref().map(|m| m.tables.load()) else {
            return;
        };
        let Ok((k, _)) = Self::group_key(pkt) else {
            return;
        };
        let Some(members) = tables.members.get(&(k.vni, k.group)) else {
            return;
        };
        let mut elsewhere = false;
        for m in members {
            let Some(&j) = self.by_name.get(m.port.as_str()) else {
                elsewhere = true;
                continue;
            };
            if Some(j) == except {
                continue;
            }
            if !m.membership.admits(k.src) {
                self.stats.mcast_filtered += 1;
                continue;
            }
            let mut c = copy_of(pkt);
            let mac = {
                let mut m: Mac = [0; 6];
                m.copy_from_slice(&c.as_slice()[0..6]);
                m
            };
            if !mcast::retarget(c.as_mut_slice(), self.underlay_ip, mac) {
                recycle(c);
                continue;
            }
            self.stats.mcast_local += 1;
            self.deliver_member(j, c, local);
        }
        if !(elsewhere && peers) {
            return;
        }
        let (me, n) = match &self.handoff {
            Some(h) => (h.me, h.peers.len()),
            None => return,
        };
        for w in (0..n).filter(|&w| w != me) {
            let c = copy_of(pkt);
            self.hand_off_as(w, c, local, true);
        }
    }

    /// A frame through port `j`'s inbound path (a tunnel from the wire, or
    /// one member's copy of a group datagram); a hairpin reply goes back
    /// the way the frame came (`local`: from a port on this host).
    fn deliver_member(&mut self, j: usize, mut pkt: PacketBuf, local: bool) {
        let Some(b) = self.ports[j].as_mut() else {
            return recycle(pkt);
        };
        if let Some(m) = b.moved.as_mut() {
            return m.forward(pkt, &mut self.to_uplink);
        }
        match b.process_one(Direction::In, &mut pkt) {
            Verdict::Forward => b.to_guest.push(pkt),
            Verdict::Hairpin(reply) => {
                if local {
                    self.loopback.push(reply);
                } else {
                    self.to_uplink.push(reply);
                }
                recycle(pkt);
            }
            Verdict::Drop(_) => recycle(pkt),
        }
    }

    /// The round's frames for the underlay spread over the live uplinks
    /// by their outer flow's hash (see `uplinks.rs`), then each uplink's
    /// share sent. With no live uplink they are dropped, counted
    /// (`no_live_uplink`).
    fn flush_spread(&mut self) -> std::io::Result<()> {
        let mut first_err = None;
        let live = self.uplinks.live();
        match *live {
            [] => {
                for p in self.to_uplink.drain(..) {
                    self.stats.drops.count(DropReason::Policy(NO_LIVE_UPLINK));
                    recycle(p);
                }
            }
            [only] => {
                for p in self.to_uplink.drain(..) {
                    self.uplinks.enqueue(usize::from(only), p);
                }
            }
            [a, b, ..] => {
                for p in self.to_uplink.drain(..) {
                    let i = if crate::uplinks::outer_hash(p.as_slice()) & 1 == 0 {
                        a
                    } else {
                        b
                    };
                    self.uplinks.enqueue(usize::from(i), p);
                }
            }
        }
        for u in &mut self.uplinks.list {
            send_burst(
                &mut *u.backend,
                &mut u.stats,
                &mut u.txq,
                &mut self.stats,
                &mut first_err,
            );
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Whether an outbound tunnel is addressed to this host.
    fn is_local(&self, pkt: &PacketBuf) -> bool {
        // Outer IPv6 destination at Ethernet 14 + 24.
        pkt.as_slice()
            .get(38..54)
            .is_some_and(|d| d == self.underlay_ip.octets())
    }

    /// Sends what the round produced. A backend that fails loses its
    /// frames (counted as dropped); the others are still served.
    fn flush(&mut self) -> std::io::Result<()> {
        let mut first_err = None;
        let first = &*self.uplinks.list[0].backend;
        self.cutter
            .cut_for(first, &mut self.to_uplink, &mut self.stats);
        if let Some(mtu) = self.uplink_mtu {
            // An Ethernet frame carries MTU bytes of IP; a super-frame the
            // uplink takes whole is cut by its device.
            let max = usize::from(mtu) + 14;
            for p in self
                .to_uplink
                .extract_if(.., |p| p.gso().is_none() && p.len() > max)
            {
                self.stats
                    .drops
                    .count(DropReason::Policy(UNDERLAY_MTU_EXCEEDED));
                recycle(p);
            }
        }
        if self.uplinks.list.len() == 1 {
            // One uplink: every frame to it, as the overlay addressed it.
            let u = &mut self.uplinks.list[0];
            send_burst(
                &mut *u.backend,
                &mut u.stats,
                &mut self.to_uplink,
                &mut self.stats,
                &mut first_err,
            );
        } else if !self.to_uplink.is_empty() {
            if let Err(e) = self.flush_spread() {
                first_err.get_or_insert(e);
            }
        }
        for a in self.ports.iter_mut().flatten() {
            if a.to_guest.is_empty() {
                continue;
            }
            self.cutter
                .cut_for(&*a.guest, &mut a.to_guest, &mut self.stats);
            let want = a.to_guest.len();
            if a.capture.is_some() {
                for p in &a.to_guest {
                    Capture::record(&a.capture, p.as_slice());
                }
            }
            let sent = a.guest.tx_burst(&mut a.to_guest).unwrap_or_else(|e| {
                self.stats.io_errors += 1;
                first_err.get_or_insert(e);
                0
            });
            self.stats.tx_dropped += (want - sent) as u64;
            a.to_guest.drain(..).for_each(recycle);
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// Sends `q` on one uplink, counting what the device took and what it
/// refused (on the switch and on the uplink), and recycles the burst. A
/// device error loses the burst and is kept in `first_err` if it is the
/// round's first.
#[inline]
fn send_burst(
    backend: &mut dyn Backend,
    ustats: &mut UplinkStats,
    q: &mut Vec<PacketBuf>,
    stats: &mut SwitchStats,
    first_err: &mut Option<std::io::Error>,
) {
    let want = q.len();
    if want == 0 {
        return;
    }
    let sent = backend.tx_burst(q).unwrap_or_else(|e| {
        stats.io_errors += 1;
        first_err.get_or_insert(e);
        0
    });
    stats.uplink_tx += sent as u64;
    stats.tx_dropped += (want - sent) as u64;
    ustats.tx += sent as u64;
    ustats.tx_dropped += (want - sent) as u64;
    q.drain(..).for_each(recycle);
}
