//! `sluiceadm replay`: a host's state replayed offline against captures.
//!
//! The host is built as sluiced builds it — the state document's
//! underlay address, V2P and V2B, every port through
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
use std::sync::{Arc, Mutex, MutexGuard};
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
    pub underlay_mac: [u8; 6],
    pub next_hop_mac: [u8; 6],
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
            underlay_mac: UNDERLAY_MAC,
            next_hop_mac: NEXT_HOP_MAC,
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
    /// Frames the switch dropped before any port saw them, by reason.
    pub switch_drops: Vec<DropCount>,
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
            match self.pending.take() {
                Some((ts, f)) if nanos(ts) <= now => {
                    bufs.push(f);
                    n += 1;
                    self.read_ahead();
                }
                other => {
                    self.pending = other;
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

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
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
    let f = std::fs::File::open(path).map_err(ierr)?;
    let r = pcap_file::pcap::PcapReader::new(io::BufReader::new(f)).map_err(|e| {
        ierr(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("not a pcap capture ({e})"),
        ))
    })?;
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

/// Runs a replay (see the module documentation).
pub fn run(o: &ReplayOptions) -> Result<ReplayReport, ReplayError> {
    let bytes = std::fs::read(&o.state).map_err(|err| ReplayError::ReadState {
        path: o.state.clone(),
        err,
    })?;
    let doc = state::parse(&o.state, &bytes)?;
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

    let oerr = |path: &Path, err| ReplayError::Output {
        path: path.to_path_buf(),
        err,
    };
    std::fs::create_dir_all(&o.out_dir).map_err(|e| oerr(&o.out_dir, e))?;

    // Every endpoint, paced by one clock: the uplink, then the ports.
    let clock = ManualClock::new();
    let names = std::iter::once(UPLINK).chain(ports.iter().copied());
    let mut endpoints = Vec::new();
    let mut backends = Vec::new();
    for name in names {
        let input = inputs.get(name).map(|p| p.to_path_buf());
        let pcap = match &input {
            Some(p) => Some(open_input(name, p, &clock)?),
            None => None,
        };
        let out_path = o.out_dir.join(format!("{name}.out.pcap"));
        // A previous run's output would pass for this one's.
        match std::fs::remove_file(&out_path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(oerr(&out_path, e)),
            _ => {}
        }
        let (paced, tally) = Paced::new(pcap, out_path.clone(), clock.clone());
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

    let next = |eps: &[Endpoint]| eps.iter().filter_map(|e| lock(&e.tally).next).min();
    let first = next(&endpoints);
    clock.set(first.map_or(0, nanos));

    let mut backends = backends.into_iter();
    let uplink = backends
        .next()
        .ok_or_else(|| build("no uplink".to_string()))?;
    let mut switch = Switch::new(underlay_ip, Box::new(uplink));
    switch.set_options(vmm_net::switch::SwitchOptions {
        accept_zero_udp6_checksum: o.accept_zero_udp6_checksum,
    });
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
    loop {
        loop {
            let moved = switch.poll();
            check(&endpoints)?;
            match moved {
                Ok(0) => break,
                Ok(_) => {}
                // Counted by the switch; a backend of ours would have said
                // what failed (checked above).
                Err(e) => return Err(build(format!("the switch: {e}"))),
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
    })
}
