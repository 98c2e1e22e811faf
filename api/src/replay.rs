//! `sluiceadm replay`: a host's state replayed offline against captures.
//!
//! The host is built as sluiced builds it — the state document's
//! underlay address, V2P, V2B and multicast tables (M2P, subscriptions,
//! forwarding; the switch's multicast datapath on), every port through
//! [`VnicPort::build`] — and run through the real
//! [`vmm_net::switch::Switch`] on one thread, with no daemon, no devices
//! and no privilege. Every endpoint (the uplink, and each port's guest)
//! is a [`Paced`] backend over [`vmm_net::pcap::Pcap`]: it reads the
//! endpoint's input capture, if it has one, and records what the switch
//! sends it to `DIR/NAME.out.pcap`, created when the first frame comes.
//!
//! Time is the captures': one [`ManualClock`] drives every port (flow
//! expiry, TCP timers) and stamps the output frames. Inputs are merged by
//! timestamp: the driver sets the clock to the earliest frame any input
//! holds, and each paced backend releases only the frames due by then, so
//! frames from different captures reach the switch in time order (at the
//! same instant, in the switch's own poll order: the uplink, then the
//! ports by name). The clock never goes back: a capture whose timestamps
//! do releases its late frames at once.
//!
//! What the replay cannot know from a state document — the host NIC's and
//! the underlay next hop's MACs — are fixed ([`UNDERLAY_MAC`],
//! [`NEXT_HOP_MAC`]) unless given.

use crate::lock;
use crate::server::{port_stats_doc, HostLimits};
use crate::state::{self, StateError};
use crate::types::{DropCount, PortStatsDoc};
use dataplane::{Clock, ManualClock, PacketBuf};
use overlay::layer::HostOverlay;
use overlay::v2p::PhysDest;
use overlay::{V2b, V2p};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::net::Ipv6Addr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use vmm_net::backend::Backend;
use vmm_net::pcap::Pcap;
use vmm_net::switch::{Switch, SwitchStats};
use vnic::port::VnicPort;

/// The endpoint name of the host's uplink (the underlay).
pub const UPLINK: &str = "uplink";
/// The host NIC's MAC in a replay (the outer source of its tunnels), as
/// the simulated host and the replay scenarios use.
pub const UNDERLAY_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x10];
/// The underlay next hop's MAC in a replay (the outer destination).
pub const NEXT_HOP_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x20];

/// Extra polls after the inputs due at an instant are consumed: a hairpin
/// answering a same-host tunnel goes round the switch once more.
const SETTLE_POLLS: usize = 2;

#[derive(Debug, Clone)]
pub struct ReplayOptions {
    /// The state document (what `sluiceadm dump-state` prints).
    pub state: PathBuf,
    /// Input captures by endpoint: `uplink` or a port's name.
    pub inputs: Vec<(String, PathBuf)>,
    pub out_dir: PathBuf,
    /// Overrides the document's `underlay_ip` (required if it has none).
    pub underlay_ip: Option<Ipv6Addr>,
    /// The underlay's MTU; overrides the document's `underlay_mtu`
    /// (neither: not checked).
    pub underlay_mtu: Option<u16>,
    pub underlay_mac: [u8; 6],
    pub next_hop_mac: [u8; 6],
    /// Report each input frame's fate ([`ReplayReport::frames_fate`]):
    /// frames go through the switch one at a time.
    pub verbose: bool,
    /// The host's `[underlay] accept_zero_udp6_checksum`.
    pub accept_zero_udp6_checksum: bool,
}

impl ReplayOptions {
    pub fn new(state: PathBuf, inputs: Vec<(String, PathBuf)>, out_dir: PathBuf) -> Self {
        ReplayOptions {
            state,
            inputs,
            out_dir,
            underlay_ip: None,
            underlay_mtu: None,
            underlay_mac: UNDERLAY_MAC,
            next_hop_mac: NEXT_HOP_MAC,
            verbose: false,
            accept_zero_udp6_checksum: false,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("reading the state document {path}: {err}")]
    ReadState { path: PathBuf, err: io::Error },
    #[error(transparent)]
    State(#[from] StateError),
    #[error(
        "{path} is {kind} in JSON, not a state document (an object: \
         {{\"version\": 1, \"underlay_ip\": ..., \"ports\": [...], \"v2p\": [...], \"v2b\": [...]}})"
    )]
    NotADocument { path: PathBuf, kind: &'static str },
    #[error("{path} has no \"version\": a state document starts {{\"version\": 1, ...}}")]
    NoVersion { path: PathBuf },
    #[error("{path} has no underlay_ip: give the host's address with --underlay-ip")]
    NoUnderlay { path: PathBuf },
    #[error("'{name}' is neither '{UPLINK}' nor a port of {state} (its ports: {ports})")]
    UnknownEndpoint {
        name: String,
        state: PathBuf,
        ports: String,
    },
    #[error("'{name}' is given more than one input capture")]
    DuplicateInput { name: String },
    #[error("{state} has a port named '{UPLINK}', the name replay gives the underlay")]
    ReservedName { state: PathBuf },
    #[error("input {name}={path}: {err}")]
    Input {
        name: String,
        path: PathBuf,
        err: io::Error,
    },
    #[error("input {name}={path}: link type {link} is not Ethernet (1)")]
    LinkType {
        name: String,
        path: PathBuf,
        link: u32,
    },
    /// The document is one the API would refuse (the same checks, the
    /// same message).
    #[error("{state} is not a valid desired state: {problem}")]
    Invalid { state: PathBuf, problem: String },
    #[error("--out-dir {path}: {problem}")]
    OutDir { path: PathBuf, problem: String },
    #[error("building the host from {state}: {problem}")]
    Build { state: PathBuf, problem: String },
    #[error("{path}: {err}")]
    Output { path: PathBuf, err: io::Error },
}

/// What one endpoint received from its capture and was sent.
#[derive(Clone, Debug, Serialize)]
pub struct EndpointReport {
    pub name: String,
    pub input: Option<PathBuf>,
    /// Frames read from the input capture.
    pub frames_in: u64,
    /// Where the frames sent to it were written (`None`: it was sent
    /// nothing, and no file was made).
    pub output: Option<PathBuf>,
    pub frames_out: u64,
}

/// The outcome of a replay: per endpoint, per port (the daemon's counter
/// documents), and the switch's own counters.
#[derive(Clone, Debug, Serialize)]
pub struct ReplayReport {
    /// Input frames replayed, all captures together.
    pub frames: u64,
    /// From the first input frame to the last.
    pub duration_secs: f64,
    pub endpoints: Vec<EndpointReport>,
    pub ports: Vec<PortStatsDoc>,
    pub switch: SwitchStats,
    /// With `verbose`: what became of each input frame, in replay order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub frames_fate: Vec<FrameFate>,
    /// Frames the switch dropped before any port saw them, by reason.
    pub switch_drops: Vec<DropCount>,
}

/// What became of one input frame.
#[derive(Clone, Debug, Serialize)]
pub struct FrameFate {
    /// The endpoint whose capture held it, and its place there (from 1).
    pub endpoint: String,
    pub frame: u64,
    /// Seconds since the first input frame.
    pub at_secs: f64,
    /// `forwarded`, `hairpinned`, `dropped` or `consumed` (taken by the
    /// port, nothing sent, no drop: e.g. a reply it answered in place).
    pub fate: &'static str,
    /// Endpoints sent something because of it (a hairpin: its own).
    pub to: Vec<String>,
    /// Drops it caused: where, why, and by which layer.
    pub drops: Vec<FrameDrop>,
}

#[derive(Clone, Debug, Serialize)]
pub struct FrameDrop {
    /// A port, or `switch` (before any port: not for this host, unknown
    /// port, bad options).
    pub at: String,
    pub reason: String,
    /// The layer that dropped it, and in which direction (`out`: from
    /// the guest).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub layer: Option<String>,
}

/// Counters a frame may move, to tell its fate by difference.
#[derive(Default)]
struct Snapshot {
    received: Vec<u64>,
    sent: Vec<u64>,
    /// Per port: drop counts by reason, and per (layer, dir) the layer's
    /// dropped and hairpinned counts.
    drops: Vec<BTreeMap<String, u64>>,
    layers: Vec<BTreeMap<String, (u64, u64)>>,
    switch: BTreeMap<String, u64>,
}

fn snapshot(eps: &[Endpoint], switch: &Switch, names: &[String]) -> Snapshot {
    let mut s = Snapshot::default();
    for e in eps {
        let t = lock(&e.tally);
        s.received.push(t.received);
        s.sent.push(t.sent);
    }
    for n in names {
        let (mut d, mut l) = (BTreeMap::new(), BTreeMap::new());
        if let Some(v) = switch.port(n) {
            for (r, c) in v.port.stats().drop_counts() {
                d.insert(r.to_string(), c);
            }
            for layer in v.port.layers() {
                for (dir, tag) in [
                    (dataplane::Direction::Out, "out"),
                    (dataplane::Direction::In, "in"),
                ] {
                    if let Ok(st) = v.port.layer_stats(layer.name(), dir) {
                        l.insert(
                            format!("{} ({tag})", layer.name()),
                            (st.dropped, st.hairpins),
                        );
                    }
                }
            }
        }
        s.drops.push(d);
        s.layers.push(l);
    }
    let stats = switch.stats();
    // Switch counters (beside its drops by reason) that mean a frame lost.
    for (k, v) in [
        ("tx_dropped", stats.tx_dropped),
        ("handoff_dropped", stats.handoff_dropped),
        ("gso_dropped", stats.gso_dropped),
    ] {
        s.switch.insert(k.to_string(), v);
    }
    // The outer checks' and the demultiplexing's drops, by reason.
    for (k, v) in stats.drops.counts() {
        s.switch.insert(k.to_string(), v);
    }
    s
}

fn fate(
    eps: &[Endpoint],
    names: &[String],
    before: &Snapshot,
    after: &Snapshot,
    at_secs: f64,
) -> Option<FrameFate> {
    let src = (0..eps.len()).find(|&i| after.received[i] > before.received[i])?;
    let to: Vec<String> = (0..eps.len())
        .filter(|&i| after.sent[i] > before.sent[i])
        .map(|i| eps[i].name.clone())
        .collect();
    let mut drops = Vec::new();
    let mut hairpin = false;
    for (i, n) in names.iter().enumerate() {
        let layer = after.layers[i]
            .iter()
            .find(|(k, v)| before.layers[i].get(*k).map_or(0, |b| b.0) < v.0)
            .map(|(k, _)| k.clone());
        hairpin |= after.layers[i]
            .iter()
            .any(|(k, v)| before.layers[i].get(k).map_or(0, |b| b.1) < v.1);
        for (r, c) in &after.drops[i] {
            if before.drops[i].get(r).copied().unwrap_or(0) < *c {
                drops.push(FrameDrop {
                    at: n.clone(),
                    reason: r.clone(),
                    layer: layer.clone(),
                });
            }
        }
    }
    for (k, n) in &after.switch {
        if before.switch.get(k).copied().unwrap_or(0) < *n {
            drops.push(FrameDrop {
                at: "switch".into(),
                reason: k.clone(),
                layer: None,
            });
        }
    }
    let own = &eps[src].name;
    let fate = if !drops.is_empty() && to.is_empty() {
        "dropped"
    } else if hairpin || to.contains(own) {
        "hairpinned"
    } else if !to.is_empty() {
        "forwarded"
    } else {
        "consumed"
    };
    Some(FrameFate {
        endpoint: own.clone(),
        frame: after.received[src],
        at_secs,
        fate,
        to,
        drops,
    })
}

/// What the driver sees of one paced backend once the switch owns it.
#[derive(Debug, Default)]
struct Tally {
    /// The timestamp of the next input frame (`None`: input done).
    next: Option<Duration>,
    received: u64,
    sent: u64,
    /// A read or write failed: the replay stops with this.
    error: Option<Failure>,
}

#[derive(Debug)]
enum Failure {
    Read(io::Error),
    Write(io::Error),
}

/// A backend that plays one endpoint in time: frames of its input
/// capture are released only once the shared clock reaches their
/// timestamps; what it is sent goes to an output capture made on the
/// first frame.
struct Paced {
    input: Option<Pcap>,
    /// The next input frame, read ahead to know when it is due.
    pending: Option<(Duration, PacketBuf)>,
    /// Frames read from the input so far.
    read: u64,
    out_path: PathBuf,
    output: Option<Pcap>,
    clock: ManualClock,
    tally: Arc<Mutex<Tally>>,
    /// Frames all paced backends together may still release (verbose
    /// replays: one per round); `None`: no limit.
    budget: Option<Arc<std::sync::atomic::AtomicUsize>>,
}

impl Paced {
    fn new(
        input: Option<Pcap>,
        out_path: PathBuf,
        clock: ManualClock,
    ) -> (Paced, Arc<Mutex<Tally>>) {
        let tally = Arc::new(Mutex::new(Tally::default()));
        let mut p = Paced {
            input,
            pending: None,
            read: 0,
            out_path,
            output: None,
            clock,
            tally: Arc::clone(&tally),
            budget: None,
        };
        p.read_ahead();
        (p, tally)
    }

    /// Reads the next input frame into `pending` and publishes its time.
    fn read_ahead(&mut self) {
        let mut t = lock(&self.tally);
        self.pending = None;
        if let Some(inp) = self.input.as_mut() {
            let mut one = Vec::with_capacity(1);
            match inp.rx_burst(&mut one, 1) {
                Ok(_) => match (one.pop(), inp.last_rx()) {
                    (Some(f), Some(ts)) => {
                        self.read += 1;
                        self.pending = Some((ts, f));
                    }
                    _ => self.input = None,
                },
                Err(e) => {
                    self.input = None;
                    let e = io::Error::new(
                        e.kind(),
                        format!(
                            "frame {}: a truncated or malformed record ({e})",
                            self.read + 1
                        ),
                    );
                    t.error.get_or_insert(Failure::Read(e));
                }
            }
        }
        t.next = self.pending.as_ref().map(|(ts, _)| *ts);
    }
}

impl Backend for Paced {
    fn rx_burst(&mut self, bufs: &mut Vec<PacketBuf>, max: usize) -> io::Result<usize> {
        let now = self.clock.now();
        let mut n = 0;
        while n < max {
            if let Some(b) = &self.budget {
                use std::sync::atomic::Ordering;
                if b.fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| v.checked_sub(1))
                    .is_err()
                {
                    break;
                }
            }
            match self.pending.take() {
                Some((ts, f)) if nanos(ts) <= now => {
                    bufs.push(f);
                    n += 1;
                    self.read_ahead();
                }
                other => {
                    self.pending = other;
                    // Not used: give it back.
                    if let Some(b) = &self.budget {
                        b.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
                    }
                    break;
                }
            }
        }
        lock(&self.tally).received += n as u64;
        Ok(n)
    }

    fn tx_burst(&mut self, pkts: &mut Vec<PacketBuf>) -> io::Result<usize> {
        if pkts.is_empty() {
            return Ok(0);
        }
        let out = match self.output.as_mut() {
            Some(o) => o,
            None => {
                let o = Pcap::open(
                    None,
                    Some(&self.out_path),
                    Box::new(self.clock.clone()),
                    Duration::ZERO,
                )
                .map_err(|e| fail(&self.tally, e))?;
                self.output.insert(o)
            }
        };
        let n = out.tx_burst(pkts).map_err(|e| fail(&self.tally, e))?;
        lock(&self.tally).sent += n as u64;
        Ok(n)
    }
}

/// Records a write failure for the driver, and returns it for the
/// switch (which counts it).
fn fail(tally: &Mutex<Tally>, e: io::Error) -> io::Error {
    let copy = io::Error::new(e.kind(), e.to_string());
    lock(tally).error.get_or_insert(Failure::Write(copy));
    e
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// One endpoint being replayed.
struct Endpoint {
    name: String,
    input: Option<PathBuf>,
    out_path: PathBuf,
    tally: Arc<Mutex<Tally>>,
}

/// Opens an input capture, checking it is one and of Ethernet frames.
fn open_input(name: &str, path: &Path, clock: &ManualClock) -> Result<Pcap, ReplayError> {
    let ierr = |err: io::Error| ReplayError::Input {
        name: name.to_string(),
        path: path.to_path_buf(),
        err,
    };
    let bad = |m: String| ierr(io::Error::new(io::ErrorKind::InvalidData, m));
    let meta = std::fs::metadata(path).map_err(ierr)?;
    if meta.is_dir() {
        return Err(bad("is a directory, not a capture file".into()));
    }
    if meta.len() == 0 {
        return Err(bad(
            "is empty (a pcap capture starts with a 24-byte header)".into(),
        ));
    }
    let mut f = std::fs::File::open(path).map_err(ierr)?;
    let mut magic = [0u8; 4];
    {
        use std::io::{Read, Seek};
        let n = f.read(&mut magic).map_err(ierr)?;
        f.seek(io::SeekFrom::Start(0)).map_err(ierr)?;
        // The pcapng Section Header Block's type (RFC draft-ietf-opsawg-pcapng §4.1).
        if n == 4 && magic == [0x0a, 0x0d, 0x0d, 0x0a] {
            return Err(bad(format!(
                "is pcapng; replay reads pcap: convert it with `editcap -F pcap {} OUT.pcap`",
                path.display()
            )));
        }
    }
    let r = pcap_file::pcap::PcapReader::new(io::BufReader::new(f))
        .map_err(|e| bad(format!("not a pcap capture ({e})")))?;
    let link = r.header().datalink;
    if link != pcap_file::DataLink::ETHERNET {
        return Err(ReplayError::LinkType {
            name: name.to_string(),
            path: path.to_path_buf(),
            link: u32::from(link),
        });
    }
    Pcap::open(Some(path), None, Box::new(clock.clone()), Duration::ZERO).map_err(ierr)
}

/// `--out-dir` is a directory, or nothing yet (it is made).
fn check_out_dir(dir: &Path) -> Result<(), ReplayError> {
    match std::fs::symlink_metadata(dir) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(m) if m.file_type().is_symlink() && dir.is_dir() => Ok(()),
        Ok(_) => Err(ReplayError::OutDir {
            path: dir.to_path_buf(),
            problem: "exists and is not a directory".into(),
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(ReplayError::OutDir {
            path: dir.to_path_buf(),
            problem: e.to_string(),
        }),
    }
}

/// The output capture of an endpoint: a file directly in `dir`, never
/// anywhere else whatever the name (validated names cannot hold a `/`;
/// this holds even if that check changes).
fn out_file(dir: &Path, name: &str) -> Result<PathBuf, ReplayError> {
    let file = format!("{name}.out.pcap");
    let mut parts = Path::new(&file).components();
    match (parts.next(), parts.next()) {
        (Some(std::path::Component::Normal(_)), None) => Ok(dir.join(file)),
        _ => Err(ReplayError::OutDir {
            path: dir.to_path_buf(),
            problem: format!("'{name}' would name a file outside it"),
        }),
    }
}

/// Runs a replay (see the module documentation).
pub fn run(o: &ReplayOptions) -> Result<ReplayReport, ReplayError> {
    let bytes = std::fs::read(&o.state).map_err(|err| ReplayError::ReadState {
        path: o.state.clone(),
        err,
    })?;
    // A document of the wrong JSON type is named as such (serde would
    // name an internal type).
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&bytes) {
        let kind = match &v {
            serde_json::Value::Object(_) => None,
            serde_json::Value::Array(_) => Some("an array"),
            serde_json::Value::String(_) => Some("a string"),
            serde_json::Value::Number(_) => Some("a number"),
            serde_json::Value::Bool(_) => Some("a boolean"),
            serde_json::Value::Null => Some("null"),
        };
        if let Some(kind) = kind {
            return Err(ReplayError::NotADocument {
                path: o.state.clone(),
                kind,
            });
        }
        if v.get("version").is_none() {
            return Err(ReplayError::NoVersion {
                path: o.state.clone(),
            });
        }
    }
    let doc = state::parse(&o.state, &bytes)?;
    // Before anything is built, written or removed: the document must be
    // one the API would have taken (port names among them, which name
    // the output files).
    crate::validate::check_state(&doc, o.underlay_mtu).map_err(|e| ReplayError::Invalid {
        state: o.state.clone(),
        problem: e.to_string(),
    })?;
    check_out_dir(&o.out_dir)?;
    let underlay_ip = o
        .underlay_ip
        .or(doc.underlay_ip)
        .ok_or_else(|| ReplayError::NoUnderlay {
            path: o.state.clone(),
        })?;

    let ports: BTreeSet<&str> = doc.ports.iter().map(|p| p.config.name.as_str()).collect();
    if ports.contains(UPLINK) {
        return Err(ReplayError::ReservedName {
            state: o.state.clone(),
        });
    }
    let mut inputs: BTreeMap<&str, &Path> = BTreeMap::new();
    for (name, path) in &o.inputs {
        if name != UPLINK && !ports.contains(name.as_str()) {
            let list: Vec<&str> = ports.iter().copied().collect();
            return Err(ReplayError::UnknownEndpoint {
                name: name.clone(),
                state: o.state.clone(),
                ports: if list.is_empty() {
                    "none".to_string()
                } else {
                    list.join(", ")
                },
            });
        }
        if inputs.insert(name, path).is_some() {
            return Err(ReplayError::DuplicateInput { name: name.clone() });
        }
    }

    let build = |problem: String| ReplayError::Build {
        state: o.state.clone(),
        problem,
    };
    let limits = HostLimits::default();
    let host = HostOverlay {
        underlay_ip,
        underlay_mac: o.underlay_mac,
        next_hop_mac: o.next_hop_mac,
        v2p: Arc::new(V2p::new(limits.v2p.max(doc.v2p.len()))),
        v2b: Arc::new(V2b::new(limits.v2b.max(doc.v2b.len()))),
        mcast: Default::default(),
    };
    host.v2p
        .set_many(doc.v2p.iter().map(|m| {
            (
                m.vni,
                m.ip,
                PhysDest {
                    guest_mac: m.guest_mac.0,
                    host: m.host,
                },
            )
        }))
        .map_err(|e| build(format!("v2p: {e}")))?;
    for (i, r) in doc.v2b.iter().enumerate() {
        host.v2b
            .set(r.vni, r.prefix, r.endpoints.iter().copied())
            .map_err(|e| build(format!("v2b[{i}]: {e}")))?;
    }
    // Multicast (M2P, subscriptions, forwarding), as restore publishes it:
    // the ports' overlay and the switch read the same tables.
    host.mcast
        .publish(crate::server::mcast_tables_of(&doc.mcast, &doc.ports));

    let oerr = |path: &Path, err| ReplayError::Output {
        path: path.to_path_buf(),
        err,
    };
    std::fs::create_dir_all(&o.out_dir).map_err(|e| oerr(&o.out_dir, e))?;

    // Every endpoint, paced by one clock: the uplink, then the ports.
    let clock = ManualClock::new();
    let budget = Arc::new(std::sync::atomic::AtomicUsize::new(usize::MAX));
    let names = std::iter::once(UPLINK).chain(ports.iter().copied());
    let mut endpoints = Vec::new();
    let mut backends = Vec::new();
    for name in names {
        let input = inputs.get(name).map(|p| p.to_path_buf());
        let pcap = match &input {
            Some(p) => Some(open_input(name, p, &clock)?),
            None => None,
        };
        let out_path = out_file(&o.out_dir, name)?;
        let (mut paced, tally) = Paced::new(pcap, out_path.clone(), clock.clone());
        if o.verbose {
            paced.budget = Some(Arc::clone(&budget));
        }
        if let Some(Failure::Read(err) | Failure::Write(err)) = lock(&tally).error.take() {
            return Err(ReplayError::Input {
                name: name.to_string(),
                path: input.unwrap_or_default(),
                err,
            });
        }
        endpoints.push(Endpoint {
            name: name.to_string(),
            input,
            out_path,
            tally,
        });
        backends.push(paced);
    }

    // Every input opened and read ahead: only now are a previous run's
    // outputs removed (they would pass for this one's).
    for e in &endpoints {
        match std::fs::remove_file(&e.out_path) {
            Err(err) if err.kind() != io::ErrorKind::NotFound => {
                return Err(oerr(&e.out_path, err))
            }
            _ => {}
        }
    }

    let next = |eps: &[Endpoint]| eps.iter().filter_map(|e| lock(&e.tally).next).min();
    let first = next(&endpoints);
    clock.set(first.map_or(0, nanos));

    let mut backends = backends.into_iter();
    let uplink = backends
        .next()
        .ok_or_else(|| build("no uplink".to_string()))?;
    let mut switch = Switch::new(underlay_ip, Box::new(uplink));
    switch.set_uplink_mtu(o.underlay_mtu.or(doc.underlay_mtu));
    switch.set_options(vmm_net::switch::SwitchOptions {
        accept_zero_udp6_checksum: o.accept_zero_udp6_checksum,
    });
    switch.set_mcast(Arc::clone(&host.mcast), o.next_hop_mac);
    for (p, guest) in doc.ports.iter().zip(backends) {
        let name = &p.config.name;
        let vnic = VnicPort::build(&p.config, &host, Box::new(clock.clone()))
            .map_err(|e| build(format!("port '{name}': {e}")))?;
        switch
            .attach(vnic, Box::new(guest))
            .map_err(|e| build(format!("port '{name}': {e}")))?;
    }

    // Check for a failed read or write after each poll: the first one
    // stops the replay, named by its endpoint.
    let check = |eps: &[Endpoint]| -> Result<(), ReplayError> {
        for e in eps {
            match lock(&e.tally).error.take() {
                None => {}
                Some(Failure::Read(err)) => {
                    return Err(ReplayError::Input {
                        name: e.name.clone(),
                        path: e.input.clone().unwrap_or_default(),
                        err,
                    })
                }
                Some(Failure::Write(err)) => {
                    return Err(ReplayError::Output {
                        path: e.out_path.clone(),
                        err,
                    })
                }
            }
        }
        Ok(())
    };
    let port_names: Vec<String> = doc.ports.iter().map(|p| p.config.name.clone()).collect();
    let mut fates = Vec::new();
    let t0 = first.map_or(0, nanos);
    loop {
        if o.verbose {
            // One frame per round, then the polls its consequences take;
            // its fate is what the counters moved by.
            use std::sync::atomic::Ordering;
            loop {
                let before = snapshot(&endpoints, &switch, &port_names);
                budget.store(1, Ordering::Release);
                let moved = switch.poll();
                check(&endpoints)?;
                budget.store(0, Ordering::Release);
                for _ in 0..SETTLE_POLLS {
                    let _ = switch.poll();
                    check(&endpoints)?;
                }
                if let Err(e) = moved {
                    return Err(build(format!("the switch: {e}")));
                }
                let after = snapshot(&endpoints, &switch, &port_names);
                let at = Duration::from_nanos(clock.now().saturating_sub(t0)).as_secs_f64();
                match fate(&endpoints, &port_names, &before, &after, at) {
                    Some(f) => fates.push(f),
                    None => break,
                }
            }
        } else {
            loop {
                let moved = switch.poll();
                check(&endpoints)?;
                match moved {
                    Ok(0) => break,
                    Ok(_) => {}
                    // Counted by the switch; a backend of ours would have
                    // said what failed (checked above).
                    Err(e) => return Err(build(format!("the switch: {e}"))),
                }
            }
        }
        for _ in 0..SETTLE_POLLS {
            let _ = switch.poll();
            check(&endpoints)?;
        }
        match next(&endpoints) {
            Some(t) => clock.set(nanos(t).max(clock.now())),
            None => break,
        }
    }

    let port_docs: Vec<PortStatsDoc> = doc
        .ports
        .iter()
        .filter_map(|p| {
            let n = &p.config.name;
            switch.port(n).map(|v| port_stats_doc(n, v))
        })
        .collect();
    let switch_stats = switch.stats();
    // Dropping the switch closes the output captures (flushing them).
    drop(switch);

    let last = clock.now();
    let mut frames = 0;
    let endpoints = endpoints
        .into_iter()
        .map(|e| {
            let t = lock(&e.tally);
            frames += t.received;
            EndpointReport {
                name: e.name.clone(),
                input: e.input.clone(),
                frames_in: t.received,
                output: (t.sent > 0).then(|| e.out_path.clone()),
                frames_out: t.sent,
            }
        })
        .collect();
    Ok(ReplayReport {
        frames,
        duration_secs: first.map_or(0.0, |f| {
            Duration::from_nanos(last.saturating_sub(nanos(f))).as_secs_f64()
        }),
        endpoints,
        ports: port_docs,
        switch_drops: DropCount::list(&switch_stats.drops.counts()),
        switch: switch_stats,
        frames_fate: fates,
    })
}
