//! The switch: moves frames between a host's uplink, its vNIC ports and
//! their guests.
//!
//! - Uplink → guest: every frame first passes the outer checks (a Geneve
//!   packet to this host's underlay address, every Geneve option known or
//!   non-critical: RFC 8926 fail-closed), then is demultiplexed by (VNI,
//!   inner destination MAC) to the port that owns that guest, whose
//!   inbound path decides the rest.
//! - Guest → uplink: the port's outbound path tunnels the frame; a tunnel
//!   addressed to this very host is delivered to the local port it names
//!   without touching the wire (same-host VPC traffic).
//! - Hairpin replies go back where the packet came from.
//!
//! Every frame the switch itself refuses is counted in [`SwitchStats`];
//! the ports count their own drops.

use crate::backend::Backend;
use arc_swap::ArcSwap;
use dataplane::headers::{self, Mac, ParseMode};
use dataplane::{Direction, PacketBuf, Verdict};
use serde::Serialize;
use std::collections::HashMap;
use std::net::Ipv6Addr;
use std::os::fd::BorrowedFd;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;
use vnic::port::VnicPort;

/// Frames per burst, RX and TX: a typical NIC burst.
pub const BURST: usize = 32;

/// Flow slots each port checks for expiry per poll: expiry keeps up with
/// a busy port without ever stalling a burst.
const EXPIRE_BUDGET: usize = 64;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SwitchStats {
    /// Frames received from the uplink.
    pub uplink_rx: u64,
    /// Frames sent to the uplink.
    pub uplink_tx: u64,
    /// Uplink frames that are not Geneve over IPv6/UDP 6081 (or malformed).
    pub not_geneve: u64,
    /// Uplink frames to another underlay address than this host's.
    pub not_ours: u64,
    /// Uplink frames with a critical Geneve option sluice does not know,
    /// or malformed options.
    pub bad_options: u64,
    /// Tunnelled frames for no port here (unknown VNI and MAC).
    pub unknown_port: u64,
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
    /// Frames for the uplink larger than the underlay's MTU (dropped
    /// here, where they are known, rather than lost silently on the way).
    pub underlay_mtu_exceeded: u64,
}

/// Which worker owns the port of each (VNI, guest MAC): shared by every
/// worker's switch, replaced whole (RCU style) when a port is attached or
/// detached, read without a lock.
pub type Owners = Arc<ArcSwap<HashMap<(u32, Mac), usize>>>;

/// A frame handed from one worker to another.
pub struct Handed {
    pub pkt: PacketBuf,
    /// It came from a local port (same-host traffic), not from the wire:
    /// a hairpin answer to it goes back locally too.
    pub local: bool,
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
    uplink: Box<dyn Backend>,
    ports: Vec<Option<Attached>>,
    by_name: HashMap<String, usize>,
    demux: HashMap<(u32, Mac), usize>,
    stats: SwitchStats,
    rx: Vec<PacketBuf>,
    to_uplink: Vec<PacketBuf>,
    /// The underlay's MTU, if known ([`Switch::set_uplink_mtu`]).
    uplink_mtu: Option<u16>,
    /// Local tunnels produced while delivering, for the next poll.
    loopback: Vec<PacketBuf>,
    handoff: Option<Handoff>,
    cutter: Cutter,
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
    pub fn new(underlay_ip: Ipv6Addr, uplink: Box<dyn Backend>) -> Switch {
        Switch {
            underlay_ip,
            uplink,
            ports: Vec::new(),
            by_name: HashMap::new(),
            demux: HashMap::new(),
            stats: SwitchStats::default(),
            rx: Vec::with_capacity(BURST),
            to_uplink: Vec::with_capacity(BURST * 2),
            uplink_mtu: None,
            loopback: Vec::new(),
            handoff: None,
            cutter: Cutter {
                pool: crate::backend::BufPool::new(BURST * 2),
                ..Cutter::default()
            },
        }
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

    /// The descriptors that become readable when a backend of this switch
    /// (or its handoff queue's waker, which the worker owns) has frames.
    /// Returns whether every backend has one: if not, an idle worker must
    /// wake on a timer to poll the others.
    pub fn poll_fds<'a>(&'a self, out: &mut Vec<BorrowedFd<'a>>) -> bool {
        let mut all = true;
        let backends =
            std::iter::once(&self.uplink).chain(self.ports.iter().flatten().map(|a| &a.guest));
        for b in backends {
            match b.poll_fd() {
                Some(fd) => out.push(fd),
                None => all = false,
            }
        }
        all && self.loopback.is_empty()
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
        if let Some(&i) = self.demux.get(&key) {
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
        self.demux.insert(key, i);
        self.ports[i] = Some(Attached {
            vnic,
            guest,
            to_guest: Vec::with_capacity(BURST * 2),
            capture: None,
        });
        Ok(())
    }

    /// Detaches a port; its guest backend is closed with it.
    pub fn detach(&mut self, name: &str) -> Option<VnicPort> {
        let i = self.by_name.remove(name)?;
        let a = self.ports[i].take()?;
        let c = a.vnic.config();
        self.demux.remove(&(c.vni.get(), c.guest_mac.0));
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

    pub fn port_names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.by_name.keys().cloned().collect();
        v.sort();
        v
    }

    /// One round: a burst from the uplink, a burst from every guest, and
    /// everything they produced sent on. Returns the frames received.
    ///
    /// A backend's error does not stop the round: every other backend is
    /// still served, the error is counted (`io_errors`) and the first one
    /// is returned at the end.
    pub fn poll(&mut self) -> std::io::Result<usize> {
        let mut moved = 0;
        let mut first_err = None;
        // One RX vector, reused for the uplink and every guest: polling
        // allocates nothing of its own.
        let mut rx = std::mem::take(&mut self.rx);
        rx.clear();
        let n = self.uplink.rx_burst(&mut rx, BURST).unwrap_or_else(|e| {
            self.stats.io_errors += 1;
            first_err.get_or_insert(e);
            0
        });
        self.stats.uplink_rx += n as u64;
        moved += n;
        for pkt in rx.drain(..) {
            self.handle_uplink(pkt);
        }
        for pkt in std::mem::take(&mut self.loopback) {
            self.deliver_local(pkt);
        }
        moved += self.drain_inbox();
        for i in 0..self.ports.len() {
            let Some(a) = self.ports[i].as_mut() else {
                continue;
            };
            let n = a.guest.rx_burst(&mut rx, BURST).unwrap_or_else(|e| {
                self.stats.io_errors += 1;
                first_err.get_or_insert(e);
                0
            });
            moved += n;
            for pkt in rx.drain(..) {
                self.handle_guest(i, pkt);
            }
        }
        self.rx = rx;
        if let Err(e) = self.flush() {
            first_err.get_or_insert(e);
        }
        for a in self.ports.iter_mut().flatten() {
            let now = a.vnic.port.now();
            a.vnic.port.expire_step(now, EXPIRE_BUDGET);
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(moved),
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
            if h.local {
                self.deliver_local(h.pkt);
            } else {
                self.handle_uplink(h.pkt);
            }
        }
        n
    }

    /// Hands a frame to the worker that owns its port.
    fn hand_off(&mut self, w: usize, pkt: PacketBuf, local: bool) {
        let Some(peer) = self.handoff.as_ref().and_then(|h| h.peers.get(w)) else {
            self.stats.unknown_port += 1;
            return;
        };
        match peer.queue.try_send(Handed { pkt, local }) {
            Ok(()) => {
                self.stats.handed_off += 1;
                (peer.wake)();
            }
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.stats.handoff_dropped += 1;
            }
        }
    }

    /// The outer checks and the demultiplexing of a frame from the uplink.
    fn handle_uplink(&mut self, mut pkt: PacketBuf) {
        let i = match self.tunnel_target(&pkt, true) {
            Some(Target::Here(i)) => i,
            Some(Target::Worker(w)) => return self.hand_off(w, pkt, false),
            None => return,
        };
        let Some(a) = self.ports[i].as_mut() else {
            return;
        };
        match a.vnic.port.process(Direction::In, &mut pkt) {
            Verdict::Forward => a.to_guest.push(pkt),
            // An inbound hairpin answers the sender, over the underlay.
            Verdict::Hairpin(reply) => self.to_uplink.push(reply),
            Verdict::Drop(_) => {}
        }
    }

    /// Which local port a tunnelled frame is for, after the outer checks
    /// (`from_wire`: the frame came from the uplink, so its destination
    /// must be this host).
    fn tunnel_target(&mut self, pkt: &PacketBuf, from_wire: bool) -> Option<Target> {
        let frame = pkt.as_slice();
        let Ok(p) = headers::parse(frame, ParseMode::Geneve) else {
            self.stats.not_geneve += 1;
            return None;
        };
        let outer = p.hdrs.outer?;
        if from_wire && outer.ip_dst != self.underlay_ip {
            self.stats.not_ours += 1;
            return None;
        }
        let g = usize::from(p.off.geneve) + headers::GENEVE_HDR_LEN;
        let opts = frame
            .get(g..g + usize::from(outer.geneve.opt_len))
            .unwrap_or(&[]);
        if overlay::check_options(opts).is_err() {
            self.stats.bad_options += 1;
            return None;
        }
        let key = (outer.geneve.vni.get(), p.hdrs.inner.eth_dst);
        if let Some(&i) = self.demux.get(&key) {
            return Some(Target::Here(i));
        }
        if let Some(h) = &self.handoff {
            if let Some(&w) = h.owners.load().get(&key) {
                if w != h.me {
                    return Some(Target::Worker(w));
                }
            }
        }
        self.stats.unknown_port += 1;
        None
    }

    fn handle_guest(&mut self, i: usize, mut pkt: PacketBuf) {
        let Some(a) = self.ports[i].as_mut() else {
            return;
        };
        Capture::record(&a.capture, pkt.as_slice());
        match a.vnic.port.process(Direction::Out, &mut pkt) {
            Verdict::Forward => {
                if self.is_local(&pkt) {
                    // Same host: straight to the local port, as if it had
                    // come from the wire (and through the same checks).
                    self.stats.local += 1;
                    self.deliver_local(pkt);
                } else {
                    self.to_uplink.push(pkt);
                }
            }
            Verdict::Hairpin(reply) => a.to_guest.push(reply),
            Verdict::Drop(_) => {}
        }
    }

    /// Delivers a tunnel addressed to this host to the local port it names.
    fn deliver_local(&mut self, mut pkt: PacketBuf) {
        let j = match self.tunnel_target(&pkt, false) {
            Some(Target::Here(j)) => j,
            Some(Target::Worker(w)) => return self.hand_off(w, pkt, true),
            None => return,
        };
        let Some(b) = self.ports[j].as_mut() else {
            return;
        };
        match b.vnic.port.process(Direction::In, &mut pkt) {
            Verdict::Forward => b.to_guest.push(pkt),
            // The answer to a local tunnel is a local tunnel too: it goes
            // round again next poll, through the same checks.
            Verdict::Hairpin(reply) => self.loopback.push(reply),
            Verdict::Drop(_) => {}
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
        self.cutter
            .cut_for(&*self.uplink, &mut self.to_uplink, &mut self.stats);
        if let Some(mtu) = self.uplink_mtu {
            // An Ethernet frame carries MTU bytes of IP; a super-frame the
            // uplink takes whole is cut by its device.
            let max = usize::from(mtu) + 14;
            let before = self.to_uplink.len();
            self.to_uplink
                .retain(|p| p.gso().is_some() || p.len() <= max);
            self.stats.underlay_mtu_exceeded += (before - self.to_uplink.len()) as u64;
        }
        let want = self.to_uplink.len();
        let sent = if want == 0 {
            0
        } else {
            self.uplink
                .tx_burst(&mut self.to_uplink)
                .unwrap_or_else(|e| {
                    self.stats.io_errors += 1;
                    first_err.get_or_insert(e);
                    0
                })
        };
        self.stats.uplink_tx += sent as u64;
        self.stats.tx_dropped += (want - sent) as u64;
        self.to_uplink.clear();
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
            a.to_guest.clear();
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}
