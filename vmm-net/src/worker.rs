//! Workers: one thread per core given to sluiced, each running its own
//! [`Switch`] to completion in bursts (RX burst → ports → TX burst).
//!
//! - A port is owned by exactly one worker; nothing on the packet path is
//!   shared between workers but the read-mostly owners map (replaced
//!   whole, RCU style) and the bounded queues that carry a tunnelled frame
//!   to the worker owning its port.
//! - The control plane never stops traffic: it sends a job (a closure over
//!   the worker's switch) through the worker's command queue; the worker
//!   runs it between two bursts and answers through a one-shot channel.
//!   Heavy preparation (building a port from its configuration) happens on
//!   the caller's thread before the job is sent.
//! - An idle worker does not spin forever: after [`SPIN_POLLS`] empty
//!   rounds it sleeps in `poll(2)` on its backends' descriptors (TAP,
//!   AF_PACKET socket, vhost-user kick epoll, the in-memory wire's
//!   eventfd) and its wake-up eventfd, which the command queue and the
//!   other workers' handoffs signal. When every backend that can receive
//!   has a descriptor it sleeps up to [`IDLE_TIMEOUT`] (flow expiry is
//!   the only timed work); when one has none (DPDK, pcap replay) it
//!   polls on a timer from [`IDLE_SLEEP`], doubling while nothing comes,
//!   up to [`IDLE_SLEEP_MAX`]. A round that moves frames never sleeps,
//!   so latency under load is that of busy polling; a frame or command
//!   ends a sleep at once and starts [`SPIN_POLLS`] busy rounds again.
//!   Its busy ratio (time spent in rounds that moved frames over time
//!   alive) is reported in [`WorkerStats`].
//! - Every [`LINK_CHECK`] a worker asks its uplinks for their link state
//!   (between bursts; a non-blocking read at most), so a link that goes
//!   down stops carrying frames within that time (see `uplinks.rs`).

use crate::backend::Backend;
use crate::switch::{
    Handed, Handoff, Owners, Peer, Switch, SwitchError, SwitchOptions, SwitchStats,
};
use crate::uplinks::{UplinkDevice, UplinkError, UplinkState};
use arc_swap::ArcSwap;
use rustix::event::{eventfd, poll, EventfdFlags, PollFd, PollFlags, Timespec};
use serde::Serialize;
use std::collections::HashMap;
use std::io;
use std::net::Ipv6Addr;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use vnic::port::VnicPort;

/// Empty rounds before an idle worker sleeps: long enough that a steady
/// stream never pays for a wake-up, short enough (a few µs) that an idle
/// daemon costs nothing.
pub const SPIN_POLLS: u32 = 256;

/// The first sleep of an idle worker that has a backend that cannot wake
/// it (no descriptor): such a backend's first frame after a pause waits
/// this long at most.
pub const IDLE_SLEEP: Duration = Duration::from_millis(1);

/// The longest sleep, after repeated empty ones, when a backend cannot
/// wake the worker: 4 ms of a 1 Gbit/s stream of full frames (~330) fits
/// a NIC's receive ring, while an idle DPDK or pcap worker wakes 250
/// times a second, not 1 000.
pub const IDLE_SLEEP_MAX: Duration = Duration::from_millis(4);

/// The longest sleep when every backend can wake the worker: flow expiry
/// still runs ten times a second, far below any flow timeout.
pub const IDLE_TIMEOUT: Duration = Duration::from_millis(100);

/// Rounds a worker runs after a sleep that timed out before it sleeps
/// again: enough for flow expiry to advance (each round looks at 64 flow
/// slots per port), few enough that waking costs little.
pub const ROUNDS_AFTER_TIMEOUT: u32 = 16;

/// Frames one worker may have queued for another: a burst per port on a
/// busy host, bounded so a stalled worker cannot grow memory.
pub const HANDOFF_DEPTH: usize = 4096;

/// How often a worker reads its uplinks' link state: a link that goes
/// down loses at most this much of its traffic before its flows move to
/// the other uplink (TCP retransmits it, well within the second the
/// failover is allowed), at the cost of one non-blocking read per uplink
/// every 10 ms.
pub const LINK_CHECK: Duration = Duration::from_millis(10);

/// How long a control call waits for a worker to run its job.
pub const JOB_TIMEOUT: Duration = Duration::from_secs(10);

/// A control-plane job: runs on the worker, between two bursts.
pub type Job = Box<dyn FnOnce(&mut Switch) + Send>;

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error(transparent)]
    Switch(#[from] SwitchError),
    #[error("no port named '{0}'")]
    NoSuchPort(String),
    #[error("worker {0} did not answer within {1:?}")]
    Timeout(usize, Duration),
    #[error("worker {0} has stopped")]
    Stopped(usize),
    #[error(transparent)]
    Uplink(#[from] UplinkError),
    #[error("starting worker {0}: {1}")]
    Start(usize, io::Error),
}

/// What a worker reports about itself.
#[derive(Clone, Debug, Default, Serialize)]
pub struct WorkerStats {
    pub worker: usize,
    pub ports: usize,
    /// Nanoseconds spent in rounds that moved at least one frame.
    pub busy_ns: u64,
    /// Nanoseconds since the worker started.
    pub alive_ns: u64,
    pub rounds: u64,
    /// Times the worker went to sleep for lack of work.
    pub sleeps: u64,
    pub jobs: u64,
    pub switch: SwitchStats,
    /// Its devices' own drop counters: (device, [(reason, count)]), the
    /// uplink's as `uplink`, guests' by port name.
    pub devices: Vec<(String, Vec<(&'static str, u64)>)>,
    /// Its devices' other counters (UDP GSO sends...), named likewise;
    /// devices without any are left out.
    pub device_counters: Vec<(String, Vec<(&'static str, u64)>)>,
}

impl WorkerStats {
    /// The share of its time the worker spent moving frames, 0 to 1.
    pub fn busy_ratio(&self) -> f64 {
        if self.alive_ns == 0 {
            0.0
        } else {
            self.busy_ns as f64 / self.alive_ns as f64
        }
    }
}

/// What the control side keeps of a worker: its command queue, its
/// wake-up descriptor and the counters it publishes.
struct Handle {
    jobs: Sender<Job>,
    waker: Arc<Waker>,
    counters: Arc<Counters>,
    thread: Option<JoinHandle<()>>,
}

/// Counters a worker publishes after each round (relaxed atomics: read by
/// the control plane for metrics, never on the packet path).
#[derive(Default)]
struct Counters {
    busy_ns: AtomicU64,
    alive_ns: AtomicU64,
    rounds: AtomicU64,
    sleeps: AtomicU64,
    jobs: AtomicU64,
}

/// An eventfd that wakes a sleeping worker; writes are skipped when the
/// worker is awake, so a busy worker costs its peers no syscall.
struct Waker {
    fd: OwnedFd,
    sleeping: AtomicBool,
}

impl Waker {
    fn new() -> io::Result<Waker> {
        let fd = eventfd(0, EventfdFlags::NONBLOCK | EventfdFlags::CLOEXEC)?;
        Ok(Waker {
            fd,
            sleeping: AtomicBool::new(false),
        })
    }

    fn wake(&self) {
        // SeqCst pairs with the store in `Worker::sleep`: either the
        // sleeper's last poll sees the frame, or this load sees it asleep.
        if self.sleeping.load(Ordering::SeqCst) {
            self.force();
        }
    }

    fn force(&self) {
        // A full counter (EAGAIN) already means "wake up".
        let _ = rustix::io::write(&self.fd, &1u64.to_ne_bytes());
    }

    fn drain(&self) {
        let mut b = [0u8; 8];
        let _ = rustix::io::read(&self.fd, &mut b);
    }
}

/// The workers of one host.
pub struct Workers {
    handles: Vec<Handle>,
    owners: Owners,
    stop: Arc<AtomicBool>,
    /// Which worker owns each port, by name (control side only).
    placement: Mutex<HashMap<String, usize>>,
}

impl Workers {
    /// Starts one worker per uplink queue (an uplink opened with as many
    /// queues as workers: AF_PACKET fanout, DPDK RX queues).
    pub fn start(
        underlay_ip: Ipv6Addr,
        uplinks: Vec<Box<dyn Backend>>,
    ) -> Result<Workers, WorkerError> {
        Self::start_with(underlay_ip, uplinks, None)
    }

    /// The same, running `on_start` first on every worker thread (e.g. to
    /// register it with DPDK's EAL).
    pub fn start_with(
        underlay_ip: Ipv6Addr,
        uplinks: Vec<Box<dyn Backend>>,
        on_start: Option<Arc<dyn Fn(usize) + Send + Sync>>,
    ) -> Result<Workers, WorkerError> {
        Self::start_configured(underlay_ip, SwitchOptions::default(), uplinks, on_start)
    }

    /// The same, every worker's switch checking with `options`.
    pub fn start_configured(
        underlay_ip: Ipv6Addr,
        options: SwitchOptions,
        uplinks: Vec<Box<dyn Backend>>,
        on_start: Option<Arc<dyn Fn(usize) + Send + Sync>>,
    ) -> Result<Workers, WorkerError> {
        let per_worker = uplinks
            .into_iter()
            .map(|b| {
                vec![UplinkDevice {
                    name: "uplink".into(),
                    backend: b,
                    mac: [0; 6],
                    next_hop_mac: [0; 6],
                }]
            })
            .collect();
        Self::start_uplinks(underlay_ip, options, per_worker, on_start)
    }

    /// The same with one or two uplinks: `per_worker[w]` are worker `w`'s
    /// queues of the host's uplinks, in the same order on every worker.
    pub fn start_uplinks(
        underlay_ip: Ipv6Addr,
        options: SwitchOptions,
        per_worker: Vec<Vec<UplinkDevice>>,
        on_start: Option<Arc<dyn Fn(usize) + Send + Sync>>,
    ) -> Result<Workers, WorkerError> {
        let uplinks = per_worker;
        let n = uplinks.len();
        let owners: Owners = Arc::new(ArcSwap::from_pointee(HashMap::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let mut wakers = Vec::with_capacity(n);
        let mut queues = Vec::with_capacity(n);
        let mut inboxes = Vec::with_capacity(n);
        for i in 0..n {
            wakers.push(Arc::new(
                Waker::new().map_err(|e| WorkerError::Start(i, e))?,
            ));
            let (tx, rx) = mpsc::sync_channel::<Handed>(HANDOFF_DEPTH);
            queues.push(tx);
            inboxes.push(rx);
        }
        let peers: Vec<Peer> = queues
            .iter()
            .zip(&wakers)
            .map(|(q, w)| {
                let w = Arc::clone(w);
                Peer {
                    queue: q.clone(),
                    wake: Arc::new(move || w.wake()),
                }
            })
            .collect();
        let mut handles = Vec::with_capacity(n);
        for (i, (uplink, inbox)) in uplinks.into_iter().zip(inboxes).enumerate() {
            let mut switch = Switch::with_uplinks(underlay_ip, uplink);
            switch.set_options(options);
            switch.set_handoff(Handoff {
                me: i,
                owners: Arc::clone(&owners),
                peers: peers.clone(),
                inbox,
            });
            let (jobs, job_rx) = mpsc::channel::<Job>();
            let counters = Arc::new(Counters::default());
            let waker = Arc::clone(&wakers[i]);
            let w = Worker {
                switch,
                jobs: job_rx,
                waker: Arc::clone(&waker),
                counters: Arc::clone(&counters),
                stop: Arc::clone(&stop),
            };
            let hook = on_start.clone();
            let thread = std::thread::Builder::new()
                .name(format!("sluice-worker-{i}"))
                .spawn(move || {
                    if let Some(h) = hook {
                        h(i);
                    }
                    w.run()
                })
                .map_err(|e| WorkerError::Start(i, e))?;
            handles.push(Handle {
                jobs,
                waker,
                counters,
                thread: Some(thread),
            });
        }
        Ok(Workers {
            handles,
            owners,
            stop,
            placement: Mutex::new(HashMap::new()),
        })
    }

    pub fn len(&self) -> usize {
        self.handles.len()
    }

    pub fn is_empty(&self) -> bool {
        self.handles.is_empty()
    }

    /// Runs `f` on worker `w`'s switch between two bursts and returns its
    /// result.
    pub fn run_on<R: Send + 'static>(
        &self,
        w: usize,
        f: impl FnOnce(&mut Switch) -> R + Send + 'static,
    ) -> Result<R, WorkerError> {
        let h = self.handles.get(w).ok_or(WorkerError::Stopped(w))?;
        let (tx, rx) = mpsc::sync_channel(1);
        let job: Job = Box::new(move |s| {
            let _ = tx.send(f(s));
        });
        h.jobs.send(job).map_err(|_| WorkerError::Stopped(w))?;
        h.waker.force();
        rx.recv_timeout(JOB_TIMEOUT).map_err(|e| match e {
            mpsc::RecvTimeoutError::Timeout => WorkerError::Timeout(w, JOB_TIMEOUT),
            mpsc::RecvTimeoutError::Disconnected => WorkerError::Stopped(w),
        })
    }

    /// Attaches a port and its guest to the worker with the fewest ports.
    pub fn attach(&self, vnic: VnicPort, guest: Box<dyn Backend>) -> Result<usize, WorkerError> {
        let mut placement = lock(&self.placement);
        let name = vnic.config().name.clone();
        if placement.contains_key(&name) {
            return Err(SwitchError::DuplicateName(name).into());
        }
        let key = (vnic.config().vni.get(), vnic.config().guest_mac.0);
        if let Some(&w) = self.owners.load().get(&key) {
            let other = placement
                .iter()
                .find(|(_, &o)| o == w)
                .map(|(n, _)| n.clone())
                .unwrap_or_default();
            return Err(SwitchError::DuplicateMac {
                vni: key.0,
                mac: vnic.config().guest_mac.to_string(),
                other,
            }
            .into());
        }
        let mut load = vec![0usize; self.handles.len()];
        for &w in placement.values() {
            load[w] += 1;
        }
        let w = (0..load.len()).min_by_key(|&i| load[i]).unwrap_or(0);
        self.run_on(w, move |s| s.attach(vnic, guest))??;
        placement.insert(name, w);
        let mut owners = (**self.owners.load()).clone();
        owners.insert(key, w);
        self.owners.store(Arc::new(owners));
        Ok(w)
    }

    /// Detaches a port; returns it (its guest backend is closed).
    pub fn detach(&self, name: &str) -> Result<VnicPort, WorkerError> {
        let mut placement = lock(&self.placement);
        let &w = placement
            .get(name)
            .ok_or_else(|| WorkerError::NoSuchPort(name.to_string()))?;
        let owned = name.to_string();
        let vnic = self
            .run_on(w, move |s| s.detach(&owned))?
            .ok_or_else(|| WorkerError::NoSuchPort(name.to_string()))?;
        placement.remove(name);
        let key = (vnic.config().vni.get(), vnic.config().guest_mac.0);
        let mut owners = (**self.owners.load()).clone();
        owners.remove(&key);
        self.owners.store(Arc::new(owners));
        Ok(vnic)
    }

    /// Runs `f` on the port named `name`, on its worker.
    pub fn with_port<R: Send + 'static>(
        &self,
        name: &str,
        f: impl FnOnce(&mut VnicPort) -> R + Send + 'static,
    ) -> Result<R, WorkerError> {
        let w = *lock(&self.placement)
            .get(name)
            .ok_or_else(|| WorkerError::NoSuchPort(name.to_string()))?;
        let owned = name.to_string();
        self.run_on(w, move |s| s.port_mut(&owned).map(f))?
            .ok_or_else(|| WorkerError::NoSuchPort(name.to_string()))
    }

    /// The names of the attached ports, sorted.
    pub fn port_names(&self) -> Vec<String> {
        let mut v: Vec<String> = lock(&self.placement).keys().cloned().collect();
        v.sort();
        v
    }

    /// Which worker owns a port.
    pub fn owner(&self, name: &str) -> Option<usize> {
        lock(&self.placement).get(name).copied()
    }

    /// Every worker's counters (the switch's from a job on the worker).
    pub fn stats(&self) -> Result<Vec<WorkerStats>, WorkerError> {
        (0..self.handles.len())
            .map(|w| {
                let (switch, ports, devices, device_counters) = self.run_on(w, |s| {
                    (
                        s.stats(),
                        s.port_count(),
                        s.device_drops(),
                        s.device_counters(),
                    )
                })?;
                let c = &self.handles[w].counters;
                Ok(WorkerStats {
                    worker: w,
                    ports,
                    busy_ns: c.busy_ns.load(Ordering::Relaxed),
                    alive_ns: c.alive_ns.load(Ordering::Relaxed),
                    rounds: c.rounds.load(Ordering::Relaxed),
                    sleeps: c.sleeps.load(Ordering::Relaxed),
                    jobs: c.jobs.load(Ordering::Relaxed),
                    switch,
                    devices,
                    device_counters,
                })
            })
            .collect()
    }

    /// Sets which uplinks carry traffic on every worker (see
    /// [`Switch::set_uplinks_in_use`]).
    pub fn set_uplinks_in_use(&self, names: &[String]) -> Result<(), WorkerError> {
        for w in 0..self.handles.len() {
            let names = names.to_vec();
            self.run_on(w, move |s| s.set_uplinks_in_use(&names))??;
        }
        Ok(())
    }

    /// The host's uplinks: their state as worker 0 sees it (every worker
    /// reads the same links) and their counters summed over the workers.
    pub fn uplinks(&self) -> Result<Vec<UplinkState>, WorkerError> {
        let mut all: Vec<UplinkState> = Vec::new();
        for w in 0..self.handles.len() {
            let v = self.run_on(w, |s| s.uplinks())?;
            if all.is_empty() {
                all = v;
                continue;
            }
            for (a, b) in all.iter_mut().zip(&v) {
                a.stats.add(&b.stats);
            }
        }
        Ok(all)
    }

    /// Stops every worker and waits for it; ports and backends are closed.
    pub fn shutdown(mut self) {
        self.stop_all();
    }

    fn stop_all(&mut self) {
        self.stop.store(true, Ordering::Release);
        for h in &self.handles {
            h.waker.force();
        }
        for h in &mut self.handles {
            if let Some(t) = h.thread.take() {
                let _ = t.join();
            }
        }
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        self.stop_all();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// One worker's thread state.
struct Worker {
    switch: Switch,
    jobs: Receiver<Job>,
    waker: Arc<Waker>,
    counters: Arc<Counters>,
    stop: Arc<AtomicBool>,
}

impl Worker {
    fn run(mut self) {
        let start = Instant::now();
        let mut idle = 0u32;
        let mut nap = IDLE_SLEEP;
        let mut busy = Duration::ZERO;
        let mut rounds = 0u64;
        let mut links_read = start;
        self.switch.check_links();
        while !self.stop.load(Ordering::Acquire) {
            while let Ok(job) = self.jobs.try_recv() {
                job(&mut self.switch);
                self.counters.jobs.fetch_add(1, Ordering::Relaxed);
            }
            let t0 = Instant::now();
            if t0.duration_since(links_read) >= LINK_CHECK {
                self.switch.check_links();
                links_read = t0;
            }
            // Errors are counted by the switch (`io_errors`); a failing
            // backend must not stop the others.
            let moved = self.switch.poll().unwrap_or(1);
            let t1 = Instant::now();
            rounds += 1;
            if moved > 0 {
                busy += t1 - t0;
                idle = 0;
                nap = IDLE_SLEEP;
            } else {
                idle += 1;
            }
            // Publishing every round would cost a cache line per round
            // for nothing: every 64 rounds, and before sleeping.
            if rounds.is_multiple_of(64) || idle >= SPIN_POLLS {
                self.publish(start, busy, rounds);
            }
            if idle >= SPIN_POLLS {
                if self.sleep(nap) {
                    idle = 0;
                    nap = IDLE_SLEEP;
                } else {
                    // Nothing came: a short look round (expiry), then
                    // sleep again, longer when it is on a timer.
                    idle = SPIN_POLLS - ROUNDS_AFTER_TIMEOUT;
                    nap = (nap * 2).min(IDLE_SLEEP_MAX);
                }
            }
        }
        self.publish(start, busy, rounds);
    }

    fn publish(&self, start: Instant, busy: Duration, rounds: u64) {
        let c = &self.counters;
        c.rounds.store(rounds, Ordering::Relaxed);
        c.busy_ns.store(busy.as_nanos() as u64, Ordering::Relaxed);
        c.alive_ns
            .store(start.elapsed().as_nanos() as u64, Ordering::Relaxed);
    }

    /// Sleeps until a descriptor is readable or the timeout (`nap` when a
    /// backend has no descriptor) passes. Returns whether something woke
    /// it (a frame, a command, a peer's handoff; or a frame found by the
    /// last look before sleeping) rather than the timeout.
    fn sleep(&mut self, nap: Duration) -> bool {
        self.waker.sleeping.store(true, Ordering::SeqCst);
        // One more round after announcing the sleep: a frame a peer
        // queued before it saw us asleep is served now, not after the
        // timeout.
        if self.switch.poll().unwrap_or(1) > 0 {
            self.waker.sleeping.store(false, Ordering::SeqCst);
            return true;
        }
        self.counters.sleeps.fetch_add(1, Ordering::Relaxed);
        let mut fds = Vec::new();
        let all = self.switch.poll_fds(&mut fds);
        let mut pfds: Vec<PollFd<'_>> = fds
            .iter()
            .map(|fd| PollFd::new(fd, PollFlags::IN))
            .collect();
        pfds.push(PollFd::new(&self.waker.fd, PollFlags::IN));
        let timeout = if all { IDLE_TIMEOUT } else { nap };
        let ts = Timespec {
            tv_sec: 0,
            tv_nsec: timeout.as_nanos() as _,
        };
        // An error (EINTR) counts as a wake-up: look round at once.
        let woke = poll(&mut pfds, Some(&ts)).map_or(true, |n| n > 0);
        drop(pfds);
        self.waker.sleeping.store(false, Ordering::SeqCst);
        self.waker.drain();
        woke
    }
}
