//! The control plane's model of a host: the desired state (every port's
//! configuration and guest, V2P, V2B) and the running dataplane it drives.
//!
//! Every change is validated in full before anything is touched, applied
//! to the dataplane (a job on the port's worker, between two bursts:
//! traffic never stops), then persisted before the call returns. Changes
//! are serialised by one lock, so the persisted document is always a
//! state the host actually had.

use crate::error::ApiError;
use crate::journal::Change;
use crate::lock;
use crate::state::{StateStore, STATE_VERSION};
use crate::types::*;
use dataplane::{Direction, MonotonicClock, Vni};
use overlay::layer::HostOverlay;
use overlay::v2p::PhysDest;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex};
use vmm_net::backend::{Backend, Null};
use vmm_net::switch::Capture;
use vmm_net::worker::{WorkerError, Workers};
use vnic::config::VnicConfig;
use vnic::firewall::FirewallRule;
use vnic::port::{BuildError, VnicPort};
use vnic::router::{RouteClass, RouteEntry};

mod mcast;
pub(crate) use mcast::tables_of as mcast_tables_of;
mod migration;

/// Where guest devices come from: the real host's (TAP, vhost-user) or
/// simulated ones (in-memory wires) for tests and the demo.
pub trait Devices: Send + Sync {
    /// Opens the device a port's guest sits on.
    fn open_guest(&self, port: &str, spec: &GuestSpec) -> Result<Box<dyn Backend>, String>;
    /// The port is gone for good: remove what `open_guest` made.
    fn remove_guest(&self, _port: &str, _spec: &GuestSpec) {}
    /// Why the device `open_guest` opened for a running port is gone
    /// (its namespace deleted, its TAP removed), or `None` while it is
    /// there or when that cannot be told.
    fn guest_lost(&self, _port: &str, _spec: &GuestSpec) -> Option<String> {
        None
    }
}

/// The simulated devices: every guest is an in-memory wire that tests
/// (or the demo) play the far side of.
#[derive(Default)]
pub struct SimDevices {
    wires: Mutex<BTreeMap<String, vmm_net::backend::Wire>>,
    /// Ports whose device a test took away: lost, and not openable.
    gone: Mutex<std::collections::BTreeSet<String>>,
}

impl SimDevices {
    /// The wire of a port's guest (the guest's side of it).
    pub fn wire(&self, port: &str) -> Option<vmm_net::backend::Wire> {
        lock(&self.wires).get(port).cloned()
    }

    /// Takes a port's device away (as deleting a TAP's namespace does),
    /// or with `false` brings it back.
    pub fn set_gone(&self, port: &str, gone: bool) {
        if gone {
            lock(&self.gone).insert(port.to_string());
        } else {
            lock(&self.gone).remove(port);
        }
    }
}

impl Devices for SimDevices {
    fn open_guest(&self, port: &str, _spec: &GuestSpec) -> Result<Box<dyn Backend>, String> {
        if lock(&self.gone).contains(port) {
            return Err(format!("the simulated device of {port} is gone"));
        }
        let w = vmm_net::backend::Wire::new();
        let b = w.backend();
        lock(&self.wires).insert(port.to_string(), w);
        Ok(Box::new(b))
    }

    fn remove_guest(&self, port: &str, _spec: &GuestSpec) {
        lock(&self.wires).remove(port);
    }

    fn guest_lost(&self, port: &str, _spec: &GuestSpec) -> Option<String> {
        lock(&self.gone)
            .contains(port)
            .then(|| format!("the simulated device of {port} is gone"))
    }
}

/// Shared devices (a test keeps a handle to play the guests' side).
impl<D: Devices> Devices for Arc<D> {
    fn open_guest(&self, port: &str, spec: &GuestSpec) -> Result<Box<dyn Backend>, String> {
        (**self).open_guest(port, spec)
    }

    fn remove_guest(&self, port: &str, spec: &GuestSpec) {
        (**self).remove_guest(port, spec)
    }

    fn guest_lost(&self, port: &str, spec: &GuestSpec) -> Option<String> {
        (**self).guest_lost(port, spec)
    }
}

/// Table sizes a host is created with.
#[derive(Clone, Copy, Debug)]
pub struct HostLimits {
    pub v2p: usize,
    pub v2b: usize,
    /// Ports on this host.
    pub ports: usize,
    /// The underlay's MTU (the uplink's): a port whose frames, tunnelled,
    /// would not fit is refused. `None`: not known (simulated hosts), not
    /// checked.
    pub underlay_mtu: Option<u16>,
}

impl Default for HostLimits {
    fn default() -> Self {
        // A million guest addresses is a large region's worth of VPCs;
        // at about 100 bytes each, 100 MB at most.
        HostLimits {
            v2p: 1_000_000,
            v2b: 65_536,
            ports: 1024,
            underlay_mtu: None,
        }
    }
}

/// A host's control plane.
pub struct Sluice {
    host: HostOverlay,
    workers: Workers,
    devices: Box<dyn Devices>,
    store: Option<StateStore>,
    limits: HostLimits,
    /// The desired state of the ports, by name. Its lock serialises every
    /// change (and the save that follows it).
    ports: Mutex<BTreeMap<String, CreateVnic>>,
    /// Ports whose guest device could not be opened at start, with the
    /// reason: they run on a null device until a retry opens it. Taken
    /// only with `ports` held.
    failed: Mutex<BTreeMap<String, String>>,
    /// Captures running now (each holds an API thread for its duration).
    captures: std::sync::atomic::AtomicUsize,
    /// Tests only: the step of a mutating call that fails next.
    fail_at: Mutex<Option<Step>>,
    /// Ports cut over to another host (`server/migration.rs`): when their
    /// grace period ends, and the guest device they had.
    cutovers: Mutex<BTreeMap<String, (std::time::Instant, GuestSpec)>>,
    /// The fleet whose store programs this host (`[fleet]`), if any:
    /// the API then refuses changes of the desired state.
    fleet: std::sync::OnceLock<String>,
    /// The fleet agent's gauges (`/metrics`).
    fleet_gauges: std::sync::OnceLock<Arc<crate::fleet::Gauges>>,
    /// Flow logs (`[flow_logs]`), when on: every port gets a queue.
    flow_logs: std::sync::OnceLock<Arc<crate::flowlogs::FlowLogs>>,
    /// Multicast desired state (`server/mcast.rs`); taken with `ports`
    /// held.
    mcast: Mutex<mcast::McastState>,
    /// What the workers read of it.
    mcast_live: Arc<overlay::mcast::Mcast>,
}

/// The steps of a mutating call that can fail after something changed;
/// tests make one fail ([`Sluice::fail_next`]) to check that the call
/// undoes what it did before it.
#[doc(hidden)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// `create_vnic`: after the guest device is opened.
    OpenGuest,
    /// `create_vnic`: after the port is attached to its worker.
    Attach,
    /// Any call: saving the state.
    Save,
}

impl Sluice {
    /// Starts a host's control plane over running workers, restoring the
    /// state saved in `store` if there is one.
    pub fn new(
        host: HostOverlay,
        workers: Workers,
        devices: Box<dyn Devices>,
        store: Option<StateStore>,
        limits: HostLimits,
    ) -> Result<Sluice, ApiError> {
        let s = Sluice {
            workers,
            devices,
            store,
            limits,
            ports: Mutex::new(BTreeMap::new()),
            failed: Mutex::new(BTreeMap::new()),
            fail_at: Mutex::new(None),
            cutovers: Mutex::new(BTreeMap::new()),
            captures: std::sync::atomic::AtomicUsize::new(0),
            fleet: std::sync::OnceLock::new(),
            fleet_gauges: std::sync::OnceLock::new(),
            flow_logs: std::sync::OnceLock::new(),
            mcast: Mutex::default(),
            mcast_live: host.mcast.clone(),
            host,
        };
        // The multicast datapath reads the tables the ports' overlay does.
        for w in 0..s.workers.len() {
            let (tables, mac) = (s.mcast_live.clone(), s.host.next_hop_mac);
            s.workers
                .run_on(w, move |sw| sw.set_mcast(tables, mac))
                .map_err(worker_error)?;
        }
        // Frames the uplink cannot carry are counted where they are made.
        if let Some(mtu) = s.limits.underlay_mtu {
            for w in 0..s.workers.len() {
                s.workers
                    .run_on(w, move |sw| sw.set_uplink_mtu(Some(mtu)))
                    .map_err(worker_error)?;
            }
        }
        let saved = match &s.store {
            Some(st) => st.load().map_err(|e| ApiError::Internal(e.to_string()))?,
            None => None,
        };
        if let Some(doc) = saved {
            s.restore(doc)?;
        }
        Ok(s)
    }

    fn restore(&self, doc: StateDoc) -> Result<(), ApiError> {
        if let Some(ip) = doc.underlay_ip {
            if ip != self.host.underlay_ip {
                return Err(ApiError::Internal(format!(
                    "the saved state is for underlay address {ip}, this host is {}; \
                     move the state file away or fix the configuration",
                    self.host.underlay_ip
                )));
            }
        }
        // The same checks as the API's (and replay's), on the whole
        // document before anything is built.
        crate::validate::check_state(&doc, self.limits.underlay_mtu).map_err(|e| {
            ApiError::Internal(format!(
                "the saved state is not valid for this host: {e}; \
                 fix the configuration or the state file"
            ))
        })?;
        self.set_v2p(V2pSet { mappings: doc.v2p }, false)?;
        self.set_v2b(V2bSet { routes: doc.v2b }, false)?;
        for p in doc.ports {
            let name = p.config.name.clone();
            self.create_vnic(p, false).map_err(|e| {
                ApiError::Internal(format!("restoring port '{name}' from the saved state: {e}"))
            })?;
        }
        self.restore_mcast(doc.mcast)?;
        Ok(())
    }

    pub fn host(&self) -> &HostOverlay {
        &self.host
    }

    /// Turns flow logs on: for the ports there are (restored ones) and
    /// every port made later. Once per host.
    pub fn with_flow_logs(&self, fl: Arc<crate::flowlogs::FlowLogs>) -> Result<(), ApiError> {
        let ports = lock(&self.ports);
        if self.flow_logs.set(fl.clone()).is_err() {
            return Err(ApiError::Internal("flow logs are already on".into()));
        }
        for name in ports.keys() {
            let (fl, n) = (fl.clone(), name.clone());
            self.workers
                .with_port(name, move |v| fl.enable(&n, &mut v.port))
                .map_err(worker_error)?;
        }
        Ok(())
    }

    pub fn flow_logs(&self) -> Option<&Arc<crate::flowlogs::FlowLogs>> {
        self.flow_logs.get()
    }

    pub fn workers(&self) -> &Workers {
        &self.workers
    }

    /// Where the state is persisted, if it is.
    pub fn store(&self) -> Option<&StateStore> {
        self.store.as_ref()
    }

    /// Marks the host as programmed by a fleet (`what` names it, e.g.
    /// its etcd endpoints and host name); see [`Sluice::fleet`].
    pub fn set_fleet(&self, what: String) {
        let _ = self.fleet.set(what);
    }

    /// The fleet programming this host, if one does.
    pub fn fleet(&self) -> Option<&str> {
        self.fleet.get().map(String::as_str)
    }

    /// The fleet agent's gauges (made on first use).
    pub fn fleet_gauges(&self) -> &Arc<crate::fleet::Gauges> {
        self.fleet_gauges.get_or_init(Arc::default)
    }

    /// The desired state of every port (no V2P: cheap to ask often).
    pub fn port_configs(&self) -> Vec<CreateVnic> {
        lock(&self.ports).values().cloned().collect()
    }

    /// One port's desired state.
    pub fn port_config(&self, name: &str) -> Option<CreateVnic> {
        lock(&self.ports).get(name).cloned()
    }

    pub fn underlay_mtu(&self) -> Option<u16> {
        self.limits.underlay_mtu
    }

    /// The whole persisted state.
    pub fn state(&self) -> StateDoc {
        self.doc(&lock(&self.ports))
    }

    fn doc(&self, ports: &BTreeMap<String, CreateVnic>) -> StateDoc {
        StateDoc {
            version: STATE_VERSION,
            underlay_ip: Some(self.host.underlay_ip),
            underlay_mtu: self.limits.underlay_mtu,
            ports: ports.values().cloned().collect(),
            v2p: self.dump_v2p(None),
            v2b: self.dump_v2b(None),
            mcast: self.mcast_doc(ports),
        }
    }

    /// Persists one change before its call returns: `change()` is
    /// appended to the state's journal (and fsynced); when the journal has
    /// grown past its limit, the whole state is written as a new snapshot
    /// and the journal emptied. The work is the size of the change, not
    /// of the state (see [`crate::journal`]). On failure the caller undoes
    /// its live change and returns the error (503 `NotSaved`): the host
    /// stays as it was saved, and a retry does the whole change again.
    fn record(
        &self,
        ports: &BTreeMap<String, CreateVnic>,
        change: impl FnOnce() -> Change,
    ) -> Result<(), ApiError> {
        if self.failing(Step::Save) {
            return Err(not_saved("injected failure".into()));
        }
        let Some(st) = &self.store else {
            return Ok(());
        };
        let compact = st.append(&change()).map_err(|e| not_saved(e.to_string()))?;
        if compact {
            // The change is durable in the journal already: a failed
            // compaction loses nothing, and the next change tries again.
            let _ = self.save(ports);
        }
        Ok(())
    }

    /// Writes the whole state as a new snapshot and empties the journal.
    fn save(&self, ports: &BTreeMap<String, CreateVnic>) -> Result<(), ApiError> {
        if self.failing(Step::Save) {
            return Err(not_saved("injected failure".into()));
        }
        if let Some(st) = &self.store {
            st.save(&self.doc(ports))
                .map_err(|e| not_saved(e.to_string()))?;
        }
        Ok(())
    }

    /// Tests only: makes the next mutating call fail at `step` (once).
    #[doc(hidden)]
    pub fn fail_next(&self, step: Step) {
        *lock(&self.fail_at) = Some(step);
    }

    fn failing(&self, step: Step) -> bool {
        let mut f = lock(&self.fail_at);
        if *f == Some(step) {
            *f = None;
            return true;
        }
        false
    }

    // ---- ports ----

    pub fn create_vnic(&self, req: CreateVnic, persist: bool) -> Result<PortSummary, ApiError> {
        self.create_vnic_with(req, persist, |_| ())
    }

    /// [`Self::create_vnic`], with `prepare` run on the built port before
    /// it is attached to a worker: whatever it sets up (a migration's
    /// flows) is there before the first packet, never raced by one.
    pub(crate) fn create_vnic_with(
        &self,
        req: CreateVnic,
        persist: bool,
        prepare: impl FnOnce(&mut VnicPort),
    ) -> Result<PortSummary, ApiError> {
        let mut ports = lock(&self.ports);
        let c = &req.config;
        crate::validate::check_port(c, self.limits.underlay_mtu)?;
        check_guest(&req.guest)?;
        crate::validate::check_port_among(c, ports.values().map(|o| &o.config))?;
        if ports.len() >= self.limits.ports {
            return Err(ApiError::Conflict(format!(
                "this host has {} ports, its limit",
                self.limits.ports
            )));
        }
        // A state saved before devices were compared by identity may hold
        // two ports on one device: the first keeps it, the second starts
        // without it (failed, with the reason) rather than the daemon not
        // starting.
        let shared = self.device_conflict(&ports, &c.name, &req.guest, persist);
        if let (Some(e), true) = (&shared, persist) {
            return Err(ApiError::Conflict(e.clone()));
        }
        let mut vnic =
            VnicPort::build(c, &self.host, Box::new(MonotonicClock::new())).map_err(build_error)?;
        if let Some(fl) = self.flow_logs.get() {
            fl.enable(&c.name, &mut vnic.port);
        }
        prepare(&mut vnic);
        // From here on each step undoes the ones before it if it fails:
        // a failed call leaves no device, no attached port, no record.
        let guest: Box<dyn Backend> = match req.guest {
            GuestSpec::None => Box::new(Null),
            _ if shared.is_some() => {
                lock(&self.failed).insert(c.name.clone(), shared.unwrap_or_default());
                Box::new(Null)
            }
            ref g => match self.devices.open_guest(&c.name, g) {
                Ok(b) => b,
                // Restoring: one tenant's missing device (a deleted
                // namespace, a missing socket directory) must not keep
                // the others down. The port runs without it, marked.
                Err(e) if !persist => {
                    lock(&self.failed).insert(c.name.clone(), e);
                    Box::new(Null)
                }
                Err(e) => return Err(ApiError::field("guest", e)),
            },
        };
        // Only a device this call opened is removed on undo: a port that
        // starts failed (its device shared or missing) owns none.
        let undo_guest = || {
            if let Some(fl) = self.flow_logs.get() {
                fl.retire(&c.name);
            }
            if lock(&self.failed).remove(&c.name).is_none() {
                self.devices.remove_guest(&c.name, &req.guest);
            }
        };
        if self.failing(Step::OpenGuest) {
            undo_guest();
            return Err(ApiError::Internal(
                "injected failure after opening the guest".into(),
            ));
        }
        let worker = match self.workers.attach(vnic, guest) {
            Ok(w) => w,
            Err(e) => {
                undo_guest();
                return Err(worker_error(e));
            }
        };
        let undo_attach = || {
            let _ = self.workers.detach(&c.name);
            undo_guest();
        };
        if self.failing(Step::Attach) {
            undo_attach();
            return Err(ApiError::Internal(
                "injected failure after attaching the port".into(),
            ));
        }
        let summary = match self.summary(&req, worker) {
            Ok(s) => s,
            Err(e) => {
                undo_attach();
                return Err(e);
            }
        };
        let name = c.name.clone();
        ports.insert(name.clone(), req);
        if persist {
            let saved = self.record(&ports, || Change::Port {
                port: Box::new(ports[&name].clone()),
            });
            if let Err(e) = saved {
                if let Some(req) = ports.remove(&name) {
                    let _ = self.workers.detach(&name);
                    if lock(&self.failed).remove(&name).is_none() {
                        self.devices.remove_guest(&name, &req.guest);
                    }
                }
                return Err(e);
            }
        }
        Ok(summary)
    }

    pub fn delete_vnic(&self, name: &str) -> Result<(), ApiError> {
        let mut ports = lock(&self.ports);
        let Some(p) = ports.remove(name) else {
            return Err(no_port(name));
        };
        // Saved first: if that fails the port is still there, untouched.
        let saved = self.record(&ports, || Change::DeletePort {
            name: name.to_string(),
        });
        if let Err(e) = saved {
            ports.insert(name.to_string(), p);
            return Err(e);
        }
        if let Some(fl) = self.flow_logs.get() {
            // The port's live flows end with it: logged, as `cleared`.
            let _ = self.workers.with_port(name, |v| v.port.clear_flows());
            fl.retire(name);
        }
        self.mcast_forget_port(&ports, name);
        self.workers.detach(name).map_err(worker_error)?;
        // A failed port never opened its device (it may be another
        // port's: see `device_conflict`), so there is nothing to remove.
        if lock(&self.failed).remove(name).is_none() {
            self.devices.remove_guest(name, &p.guest);
        }
        Ok(())
    }

    fn summary(&self, p: &CreateVnic, worker: usize) -> Result<PortSummary, ApiError> {
        let c = &p.config;
        let guest_error = self.guest_error(&c.name);
        let (flows, flow_limit, epoch) = self
            .workers
            .with_port(&c.name, |v| {
                (
                    v.port.flow_count(),
                    v.port.config().flow_limit,
                    v.port.epoch(),
                )
            })
            .map_err(worker_error)?;
        Ok(PortSummary {
            name: c.name.clone(),
            vni: c.vni,
            guest_mac: c.guest_mac,
            ipv4: c.ipv4.as_ref().map(|v| v.addr),
            ipv6: c.ipv6.as_ref().map(|v| v.addr),
            guest: p.guest.clone(),
            worker,
            flows,
            flow_limit,
            epoch,
            rate_limit: c.rate_limit,
            state: if guest_error.is_some() {
                PortState::GuestFailed
            } else {
                PortState::Up
            },
            guest_error,
        })
    }

    /// Which other port uses `guest`'s device, however its path is
    /// spelled, as a refusal's message. Ports whose device failed count
    /// only with `with_failed` (a new port may not take the device a
    /// failed port waits for; a retry may take one nobody holds).
    fn device_conflict(
        &self,
        ports: &BTreeMap<String, CreateVnic>,
        name: &str,
        guest: &GuestSpec,
        with_failed: bool,
    ) -> Option<String> {
        let failed = lock(&self.failed);
        ports
            .values()
            .filter(|o| {
                o.config.name != name && (with_failed || !failed.contains_key(&o.config.name))
            })
            .find(|o| crate::devices::same_device(&o.guest, guest))
            .map(|o| {
                format!(
                    "port '{}' uses the same guest device ({})",
                    o.config.name,
                    guest_text(&o.guest)
                )
            })
    }

    /// Why a port's guest device is not open, if it is not.
    fn guest_error(&self, name: &str) -> Option<String> {
        lock(&self.failed).get(name).cloned()
    }

    /// Marks failed every port whose open guest device is gone (a TAP's
    /// namespace deleted, the TAP removed): the port moves onto a null
    /// device, its flows and counters kept, and the retry reopens the
    /// device when it is back, as for one missing at start. Without this
    /// the port would look up while its frames went nowhere (a TAP whose
    /// namespace is deleted lives on, unreachable, while sluiced holds
    /// it). Returns the ports newly marked.
    pub fn check_guests(&self) -> Vec<String> {
        // Checked without the lock (a check may enter a namespace), then
        // marked under it if the port is still the one checked.
        let candidates: Vec<(String, GuestSpec)> = {
            let ports = lock(&self.ports);
            let failed = lock(&self.failed);
            ports
                .iter()
                .filter(|(n, p)| !matches!(p.guest, GuestSpec::None) && !failed.contains_key(*n))
                .map(|(n, p)| (n.clone(), p.guest.clone()))
                .collect()
        };
        let lost: Vec<(String, GuestSpec, String)> = candidates
            .into_iter()
            .filter_map(|(n, g)| {
                let why = self.devices.guest_lost(&n, &g)?;
                Some((n, g, why))
            })
            .collect();
        let ports = lock(&self.ports);
        let mut marked = Vec::new();
        for (name, guest, why) in lost {
            let same = ports.get(&name).is_some_and(|p| p.guest == guest);
            if !same || lock(&self.failed).contains_key(&name) {
                continue;
            }
            let moved = self
                .workers
                .detach(&name)
                .and_then(|vnic| self.workers.attach(vnic, Box::new(Null)));
            let why = match moved {
                Ok(_) => format!("the guest device was lost while running: {why}"),
                Err(e) => format!(
                    "the guest device was lost while running: {why}; moving the port off it: {e}"
                ),
            };
            lock(&self.failed).insert(name.clone(), why);
            marked.push(name);
        }
        marked
    }

    /// Tries again to open the guest device of every port whose device
    /// failed at start or was lost since; a port whose device opens now moves onto it (its
    /// flows and counters kept). Returns how many are still failed.
    pub fn retry_failed_guests(&self) -> usize {
        let ports = lock(&self.ports);
        let names: Vec<String> = lock(&self.failed).keys().cloned().collect();
        for name in names {
            let Some(p) = ports.get(&name) else {
                lock(&self.failed).remove(&name);
                continue;
            };
            if let Some(e) = self.device_conflict(&ports, &name, &p.guest, false) {
                lock(&self.failed).insert(name, e);
                continue;
            }
            match self.devices.open_guest(&name, &p.guest) {
                Ok(guest) => {
                    let moved = self
                        .workers
                        .detach(&name)
                        .and_then(|vnic| self.workers.attach(vnic, guest));
                    match moved {
                        Ok(_) => {
                            lock(&self.failed).remove(&name);
                        }
                        Err(e) => {
                            lock(&self.failed)
                                .insert(name, format!("moving the port onto its device: {e}"));
                        }
                    }
                }
                Err(e) => {
                    lock(&self.failed).insert(name, e);
                }
            }
        }
        lock(&self.failed).len()
    }

    pub fn list_ports(&self) -> Result<Vec<PortSummary>, ApiError> {
        let ports = lock(&self.ports).clone();
        ports
            .values()
            .map(|p| {
                let w = self.workers.owner(&p.config.name).unwrap_or(0);
                self.summary(p, w)
            })
            .collect()
    }

    pub fn get_port(&self, name: &str) -> Result<PortDetail, ApiError> {
        let p = lock(&self.ports)
            .get(name)
            .cloned()
            .ok_or_else(|| no_port(name))?;
        let w = self.workers.owner(name).unwrap_or(0);
        Ok(PortDetail {
            summary: self.summary(&p, w)?,
            config: p.config,
        })
    }

    /// Applies a change to a port's configuration: `f` edits a copy; the
    /// result is validated and programmed into the live port (all layers
    /// in one job: no packet sees half of it), then saved.
    fn reconfigure(
        &self,
        name: &str,
        f: impl FnOnce(&mut VnicConfig) -> Result<(), ApiError>,
    ) -> Result<VnicConfig, ApiError> {
        let mut ports = lock(&self.ports);
        let p = ports.get(name).ok_or_else(|| no_port(name))?;
        let old = p.config.clone();
        let mut c = old.clone();
        f(&mut c)?;
        crate::validate::check_port(&c, self.limits.underlay_mtu).map_err(strip_config)?;
        crate::validate::check_port_among(
            &c,
            ports.values().map(|o| &o.config).filter(|o| o.name != name),
        )?;
        let live = c.clone();
        self.workers
            .with_port(name, move |v| v.reconfigure(&live))
            .map_err(worker_error)?
            .map_err(build_error)?;
        if let Some(p) = ports.get_mut(name) {
            p.config = c.clone();
        }
        let saved = self.record(&ports, || Change::Port {
            port: Box::new(ports[name].clone()),
        });
        if let Err(e) = saved {
            // Back to the saved configuration, live and recorded.
            let back = old.clone();
            let _ = self.workers.with_port(name, move |v| v.reconfigure(&back));
            if let Some(p) = ports.get_mut(name) {
                p.config = old;
            }
            return Err(e);
        }
        Ok(c)
    }

    pub fn firewall(&self, name: &str) -> Result<Vec<NumberedRule>, ApiError> {
        let ports = lock(&self.ports);
        let p = ports.get(name).ok_or_else(|| no_port(name))?;
        Ok(number(&p.config.firewall))
    }

    pub fn add_fw_rule(
        &self,
        name: &str,
        rule: FirewallRule,
    ) -> Result<Vec<NumberedRule>, ApiError> {
        let c = self.reconfigure(name, |c| {
            c.firewall.push(rule);
            Ok(())
        })?;
        Ok(number(&c.firewall))
    }

    pub fn rm_fw_rule(&self, name: &str, id: usize) -> Result<Vec<NumberedRule>, ApiError> {
        let c = self.reconfigure(name, |c| {
            if id >= c.firewall.len() {
                return Err(ApiError::NotFound(format!(
                    "port '{name}' has no firewall rule {id} (it has {}: 0..={})",
                    c.firewall.len(),
                    c.firewall.len().saturating_sub(1)
                )));
            }
            c.firewall.remove(id);
            Ok(())
        })?;
        Ok(number(&c.firewall))
    }

    pub fn set_fw_rules(
        &self,
        name: &str,
        rules: Vec<FirewallRule>,
    ) -> Result<Vec<NumberedRule>, ApiError> {
        let c = self.reconfigure(name, |c| {
            c.firewall = rules;
            Ok(())
        })?;
        Ok(number(&c.firewall))
    }

    pub fn routes(&self, name: &str) -> Result<Routes, ApiError> {
        let ports = lock(&self.ports);
        let p = ports.get(name).ok_or_else(|| no_port(name))?;
        let mut routes = vnic::port::system_routes(&p.config);
        routes.extend(p.config.routes.iter().cloned());
        Ok(Routes { routes })
    }

    pub fn add_route(&self, name: &str, r: RouteEntry) -> Result<Routes, ApiError> {
        self.reconfigure(name, |c| {
            if r.class == RouteClass::System {
                return Err(ApiError::field(
                    "class",
                    "system routes are the VPC's own; add a custom route",
                ));
            }
            if let Some(old) = c.routes.iter_mut().find(|o| o.dest == r.dest) {
                *old = r;
            } else {
                c.routes.push(r);
            }
            Ok(())
        })?;
        self.routes(name)
    }

    pub fn del_route(&self, name: &str, dest: dataplane::IpCidr) -> Result<Routes, ApiError> {
        self.reconfigure(name, |c| {
            let before = c.routes.len();
            c.routes.retain(|r| r.dest != dest);
            if c.routes.len() == before {
                return Err(ApiError::NotFound(format!(
                    "port '{name}' has no custom route to {dest}"
                )));
            }
            Ok(())
        })?;
        self.routes(name)
    }

    /// Replaces a port's whole configuration in place (what a fleet's
    /// desired state says it is): validated and applied as every other
    /// change of a live port is.
    pub fn replace_config(&self, name: &str, c: VnicConfig) -> Result<VnicConfig, ApiError> {
        self.reconfigure(name, |old| {
            *old = c;
            Ok(())
        })
    }

    pub fn set_external_ips(
        &self,
        name: &str,
        e: vnic::config::ExternalIps,
    ) -> Result<VnicConfig, ApiError> {
        self.reconfigure(name, |c| {
            c.external = e;
            Ok(())
        })
    }

    /// Sets or removes the limit on what the port's guest sends.
    pub fn set_rate_limit(
        &self,
        name: &str,
        r: Option<dataplane::RateLimit>,
    ) -> Result<VnicConfig, ApiError> {
        self.reconfigure(name, |c| {
            c.rate_limit = r;
            Ok(())
        })
    }

    /// Lets the guest send from (`out`) and receive for (`in`) a transit
    /// prefix; adds to what the prefix already allows.
    pub fn allow_cidr(
        &self,
        name: &str,
        t: vnic::config::TransitIp,
    ) -> Result<VnicConfig, ApiError> {
        self.reconfigure(name, |c| {
            match c.transit_ips.iter_mut().find(|o| o.cidr == t.cidr) {
                Some(o) => o.dir = o.dir.union(t.dir),
                None => c.transit_ips.push(t),
            }
            Ok(())
        })
    }

    /// Stops allowing `dir` for a transit prefix (the prefix goes when it
    /// allows nothing more); its flows stop at their next packet.
    pub fn remove_cidr(
        &self,
        name: &str,
        cidr: dataplane::IpCidr,
        dir: vnic::config::TransitDir,
    ) -> Result<VnicConfig, ApiError> {
        self.reconfigure(name, |c| {
            let i = (c.transit_ips.iter().position(|o| o.cidr == cidr)).ok_or_else(|| {
                ApiError::NotFound(format!("port '{name}' has no transit prefix {cidr}"))
            })?;
            let had = c.transit_ips[i].dir;
            if had.minus(dir) == Some(had) {
                return Err(ApiError::NotFound(format!(
                    "transit prefix {cidr} of port '{name}' is allowed {} only",
                    had.name()
                )));
            }
            match had.minus(dir) {
                Some(left) => c.transit_ips[i].dir = left,
                None => {
                    c.transit_ips.remove(i);
                }
            }
            Ok(())
        })
    }

    /// Attaches a subnet to a live port (or moves it between private and
    /// external).
    pub fn attach_subnet(&self, name: &str, a: AttachSubnet) -> Result<VnicConfig, ApiError> {
        self.reconfigure(name, |c| {
            c.attached_subnets.retain(|s| *s != a.cidr);
            c.external_subnets.retain(|s| *s != a.cidr);
            if a.external {
                c.external_subnets.push(a.cidr);
            } else {
                c.attached_subnets.push(a.cidr);
            }
            Ok(())
        })
    }

    /// Detaches a subnet (private or external) from a live port.
    pub fn detach_subnet(
        &self,
        name: &str,
        cidr: dataplane::IpCidr,
    ) -> Result<VnicConfig, ApiError> {
        self.reconfigure(name, |c| {
            let before = c.attached_subnets.len() + c.external_subnets.len();
            c.attached_subnets.retain(|s| *s != cidr);
            c.external_subnets.retain(|s| *s != cidr);
            if c.attached_subnets.len() + c.external_subnets.len() == before {
                return Err(ApiError::NotFound(format!(
                    "port '{name}' has no attached subnet {cidr}"
                )));
            }
            Ok(())
        })
    }

    // ---- tables of a port ----

    fn on_port<R: Send + 'static>(
        &self,
        name: &str,
        f: impl FnOnce(&mut VnicPort) -> R + Send + 'static,
    ) -> Result<R, ApiError> {
        self.workers.with_port(name, f).map_err(worker_error)
    }

    pub fn list_layers(&self, name: &str) -> Result<Vec<LayerSummary>, ApiError> {
        self.on_port(name, |v| {
            v.port
                .dump_layers()
                .iter()
                .map(|l| LayerSummary::from(&LayerDoc::from(l)))
                .collect()
        })
    }

    pub fn dump_layer(&self, name: &str, layer: &str) -> Result<LayerDoc, ApiError> {
        let l = layer.to_string();
        let found = self.on_port(name, move |v| {
            v.port
                .dump_layers()
                .into_iter()
                .find(|d| d.name == l)
                .map(|d| LayerDoc::from(&d))
        })?;
        found.ok_or_else(|| {
            ApiError::NotFound(format!(
                "port '{name}' has no layer '{layer}' (layers: gateway, firewall, router, nat, overlay)"
            ))
        })
    }

    pub fn dump_uft(&self, name: &str) -> Result<UftDoc, ApiError> {
        self.on_port(name, |v| UftDoc::from(&v.port.dump_uft()))
    }

    pub fn clear_uft(&self, name: &str) -> Result<(), ApiError> {
        self.on_port(name, |v| v.port.clear_flows())
    }

    pub fn dump_tcp_flows(&self, name: &str) -> Result<Vec<TcpFlowDoc>, ApiError> {
        self.on_port(name, |v| {
            v.port
                .dump_tcp_flows()
                .iter()
                .map(TcpFlowDoc::from)
                .collect()
        })
    }

    pub fn port_stats(&self, name: &str) -> Result<PortStatsDoc, ApiError> {
        let n = name.to_string();
        let mut doc = self.on_port(name, move |v| port_stats_doc(&n, v))?;
        doc.guest_error = self.guest_error(name);
        Ok(doc)
    }

    pub fn stats(&self) -> Result<HostStats, ApiError> {
        let names = self.workers.port_names();
        let mut ports = Vec::with_capacity(names.len());
        for n in names {
            match self.port_stats(&n) {
                Ok(s) => ports.push(s),
                // Deleted meanwhile.
                Err(ApiError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        let workers = self
            .workers
            .stats()
            .map_err(worker_error)?
            .into_iter()
            .map(|w| WorkerStatsDoc {
                worker: w.worker,
                ports: w.ports,
                busy_ratio: w.busy_ratio(),
                busy_ns: w.busy_ns,
                idle_ns: w.alive_ns.saturating_sub(w.busy_ns),
                rounds: w.rounds,
                sleeps: w.sleeps,
                switch: w.switch,
                drops: DropCount::list(&w.switch.drops.counts()),
                devices: w
                    .devices
                    .iter()
                    .map(|(d, c)| DeviceDrops::from_counts(d, c))
                    .collect(),
                device_counters: w
                    .device_counters
                    .iter()
                    .map(|(d, c)| DeviceCounters::from_counts(d, c))
                    .collect(),
            })
            .collect();
        let (m2p, subs, fwd) = self.mcast_sizes();
        let n_ports = ports.len().max(1);
        let uplinks = self.dump_underlay()?.uplinks;
        Ok(HostStats {
            uplinks,
            ports,
            workers,
            v2p: TableSize {
                entries: self.host.v2p.len(),
                limit: self.host.v2p.limit(),
            },
            v2b: TableSize {
                entries: self.host.v2b.len(),
                limit: self.host.v2b.limit(),
            },
            m2p: TableSize {
                entries: m2p,
                limit: overlay::mcast::M2P_LIMIT,
            },
            mcast_subs: TableSize {
                entries: subs,
                limit: overlay::mcast::SUBS_PER_PORT * n_ports,
            },
            mcast_fwd: TableSize {
                entries: fwd,
                limit: overlay::mcast::FWD_LIMIT,
            },
        })
    }

    pub fn trace(&self, name: &str, req: TraceRequest) -> Result<TraceResponse, ApiError> {
        let config = lock(&self.ports)
            .get(name)
            .map(|p| p.config.clone())
            .ok_or_else(|| no_port(name))?;
        let frame = crate::trace::build_frame(&req, &config, &self.host)?;
        let dir: Direction = req.direction.into();
        let input = frame.clone();
        let result = self.on_port(name, move |v| v.port.trace(dir, &input))?;
        let trace = match result {
            Ok(t) => TraceDoc::from(&t),
            Err(r) => TraceDoc::refused(r),
        };
        Ok(TraceResponse {
            input_hex: crate::trace::hex(&frame),
            trace,
        })
    }

    /// Captures running now (at most [`MAX_CAPTURES`]).
    pub fn captures_running(&self) -> usize {
        self.captures.load(std::sync::atomic::Ordering::Acquire)
    }

    pub fn capture(&self, name: &str, req: CaptureRequest) -> Result<CaptureResponse, ApiError> {
        let max = req.packets.unwrap_or(100);
        let secs = req.seconds.unwrap_or(5);
        if !(1..=100_000).contains(&max) {
            return Err(ApiError::field(
                "packets",
                format!("{max} is out of range 1..=100000"),
            ));
        }
        if !(1..=60).contains(&secs) {
            return Err(ApiError::field(
                "seconds",
                format!("{secs} is out of range 1..=60"),
            ));
        }
        let _slot = CaptureSlot::take(&self.captures)?;
        let cap = Arc::new(Mutex::new(Capture {
            frames: Vec::new(),
            max: max as usize,
        }));
        let w = self.workers.owner(name).ok_or_else(|| no_port(name))?;
        let (n, c) = (name.to_string(), Arc::clone(&cap));
        if !self
            .workers
            .run_on(w, move |s| s.set_capture(&n, Some(c)))
            .map_err(worker_error)?
        {
            return Err(no_port(name));
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs.into());
        while std::time::Instant::now() < deadline && lock(&cap).frames.len() < max as usize {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let n = name.to_string();
        let _ = self.workers.run_on(w, move |s| s.set_capture(&n, None));
        let frames = std::mem::take(&mut lock(&cap).frames);
        let pcap = crate::trace::pcap_bytes(&frames);
        use base64::Engine as _;
        Ok(CaptureResponse {
            packets: frames.len() as u32,
            pcap_base64: base64::engine::general_purpose::STANDARD.encode(pcap),
        })
    }

    // ---- V2P, V2B ----

    pub fn set_v2p(&self, req: V2pSet, persist: bool) -> Result<usize, ApiError> {
        let ports = lock(&self.ports);
        crate::validate::check_v2p(&req.mappings)?;
        // What the change replaces, to put back if it cannot be saved.
        let before: Vec<(Vni, IpAddr, Option<PhysDest>)> = if persist {
            req.mappings
                .iter()
                .map(|m| (m.vni, m.ip, self.host.v2p.get(m.vni, m.ip).map(|(d, _)| d)))
                .collect()
        } else {
            Vec::new()
        };
        let journaled = (persist && self.store.is_some()).then(|| req.mappings.clone());
        let n = self
            .host
            .v2p
            .set_many(req.mappings.into_iter().map(|m| {
                (
                    m.vni,
                    m.ip,
                    PhysDest {
                        guest_mac: m.guest_mac.0,
                        host: m.host,
                    },
                )
            }))
            .map_err(|e| ApiError::Conflict(e.to_string()))?;
        if persist {
            // Without a store there is nothing to journal (and no copy).
            let mappings = journaled.unwrap_or_default();
            let saved = self.record(&ports, || Change::SetV2p { mappings });
            if let Err(e) = saved {
                self.restore_v2p(before);
                return Err(e);
            }
        }
        Ok(n)
    }

    fn restore_v2p(&self, before: Vec<(Vni, IpAddr, Option<PhysDest>)>) {
        for (vni, ip, d) in before {
            match d {
                Some(d) => {
                    let _ = self.host.v2p.set(vni, ip, d);
                }
                None => {
                    self.host.v2p.clear(vni, ip);
                }
            }
        }
    }

    pub fn clear_v2p(&self, sel: V2pSelector) -> Result<usize, ApiError> {
        let ports = lock(&self.ports);
        let vni = vni_field(sel.vni)?;
        let before: Vec<(Vni, IpAddr, Option<PhysDest>)> = self
            .host
            .v2p
            .dump(Some(vni))
            .into_iter()
            .filter(|e| sel.ip.is_none_or(|ip| ip == e.ip))
            .map(|e| {
                let d = PhysDest {
                    guest_mac: e.guest_mac,
                    host: e.host,
                };
                (e.vni, e.ip, Some(d))
            })
            .collect();
        let n = match sel.ip {
            Some(ip) => usize::from(self.host.v2p.clear(vni, ip)),
            None => self.host.v2p.clear_vni(vni),
        };
        if let Err(e) = self.record(&ports, || Change::ClearV2p { vni, ip: sel.ip }) {
            self.restore_v2p(before);
            return Err(e);
        }
        Ok(n)
    }

    pub fn dump_v2p(&self, vni: Option<Vni>) -> Vec<V2pMapping> {
        self.host
            .v2p
            .dump(vni)
            .into_iter()
            .map(|e| V2pMapping {
                vni: e.vni,
                ip: e.ip,
                guest_mac: vnic::config::MacAddr(e.guest_mac),
                host: e.host,
            })
            .collect()
    }

    pub fn set_v2b(&self, req: V2bSet, persist: bool) -> Result<usize, ApiError> {
        let ports = lock(&self.ports);
        crate::validate::check_v2b(&req.routes)?;
        let before = self.v2b_before(req.routes.iter().map(|r| (r.vni, r.prefix)));
        let journaled = (persist && self.store.is_some()).then(|| req.routes.clone());
        let n = self
            .host
            .v2b
            .set_many(
                req.routes
                    .into_iter()
                    .map(|r| (r.vni, r.prefix, r.endpoints)),
            )
            .map_err(|(i, e)| match e {
                overlay::v2b::V2bError::Full { .. } => ApiError::Conflict(e.to_string()),
                e => ApiError::field(format!("routes[{i}].endpoints"), e.to_string()),
            })?;
        if persist {
            // Without a store there is nothing to journal (and no copy).
            let routes = journaled.unwrap_or_default();
            let saved = self.record(&ports, || Change::SetV2b { routes });
            if let Err(e) = saved {
                self.restore_v2b(before);
                return Err(e);
            }
        }
        Ok(n)
    }

    /// The routes at these (VNI, prefix) keys now (`None`: no route).
    fn v2b_before(
        &self,
        keys: impl Iterator<Item = (Vni, dataplane::IpCidr)>,
    ) -> Vec<(Vni, dataplane::IpCidr, Option<Vec<Ipv6Addr>>)> {
        let mut by_vni: BTreeMap<u32, Vec<overlay::v2b::V2bEntry>> = BTreeMap::new();
        keys.map(|(vni, prefix)| {
            let entries = by_vni
                .entry(vni.get())
                .or_insert_with(|| self.host.v2b.dump(Some(vni)));
            let old = entries
                .iter()
                .find(|e| e.prefix == prefix)
                .map(|e| e.endpoints.clone());
            (vni, prefix, old)
        })
        .collect()
    }

    fn restore_v2b(&self, before: Vec<(Vni, dataplane::IpCidr, Option<Vec<Ipv6Addr>>)>) {
        for (vni, prefix, old) in before {
            match old {
                Some(eps) => {
                    let _ = self.host.v2b.set(vni, prefix, eps);
                }
                None => {
                    self.host.v2b.clear(vni, prefix);
                }
            }
        }
    }

    pub fn clear_v2b(&self, sel: V2bSelector) -> Result<usize, ApiError> {
        let ports = lock(&self.ports);
        let vni = vni_field(sel.vni)?;
        let before: Vec<_> = self
            .host
            .v2b
            .dump(Some(vni))
            .into_iter()
            .filter(|e| sel.prefix.is_none_or(|p| p == e.prefix))
            .map(|e| (e.vni, e.prefix, Some(e.endpoints)))
            .collect();
        let n = match sel.prefix {
            Some(p) => usize::from(self.host.v2b.clear(vni, p)),
            None => self.host.v2b.clear_vni(vni),
        };
        let saved = self.record(&ports, || Change::ClearV2b {
            vni,
            prefix: sel.prefix,
        });
        if let Err(e) = saved {
            self.restore_v2b(before);
            return Err(e);
        }
        Ok(n)
    }

    pub fn dump_v2b(&self, vni: Option<Vni>) -> Vec<V2bRoute> {
        self.host
            .v2b
            .dump(vni)
            .into_iter()
            .map(|e| V2bRoute {
                vni: e.vni,
                prefix: e.prefix,
                endpoints: e.endpoints,
            })
            .collect()
    }

    /// Stops the workers (ports and guest devices close; persistent TAPs
    /// stay for the next start).
    pub fn shutdown(self) {
        self.workers.shutdown();
    }
}

/// Captures at once, host-wide: each holds an API thread for up to a
/// minute, and 520 at once starved every other call.
pub const MAX_CAPTURES: usize = 8;

/// One of the [`MAX_CAPTURES`] capture slots, given back when dropped.
struct CaptureSlot<'a>(&'a std::sync::atomic::AtomicUsize);

impl<'a> CaptureSlot<'a> {
    fn take(n: &'a std::sync::atomic::AtomicUsize) -> Result<CaptureSlot<'a>, ApiError> {
        use std::sync::atomic::Ordering;
        n.fetch_update(Ordering::AcqRel, Ordering::Acquire, |c| {
            (c < MAX_CAPTURES).then_some(c + 1)
        })
        .map_err(|_| {
            ApiError::Conflict(format!(
                "{MAX_CAPTURES} captures are running, the limit: retry when one ends"
            ))
        })?;
        Ok(CaptureSlot(n))
    }
}

impl Drop for CaptureSlot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

pub fn port_stats_doc(name: &str, v: &VnicPort) -> PortStatsDoc {
    let p = &v.port;
    let mut layers = Vec::new();
    for l in p.layers() {
        for (d, dir) in [(Direction::Out, Dir::Out), (Direction::In, Dir::In)] {
            if let Ok(s) = p.layer_stats(l.name(), d) {
                layers.push(LayerStatsDoc {
                    layer: l.name().to_string(),
                    dir,
                    stats: s,
                });
            }
        }
    }
    PortStatsDoc {
        name: name.to_string(),
        flows: p.flow_count(),
        flow_limit: p.config().flow_limit,
        uft_in: p.uft_len(Direction::In),
        uft_out: p.uft_len(Direction::Out),
        stats: PortCounters::from_engine(p.stats()),
        layers,
        drops: DropCount::list(&p.stats().drop_counts()),
        guest_error: None,
    }
}

/// Marks ports whose guest device was lost and retries the failed ones
/// every `every` (see [`Sluice::check_guests`],
/// [`Sluice::retry_failed_guests`]) on a thread of its own, until `s` is
/// dropped.
pub fn spawn_guest_retry(s: &Arc<Sluice>, every: std::time::Duration) -> std::io::Result<()> {
    let weak = Arc::downgrade(s);
    std::thread::Builder::new()
        .name("sluice-guest-retry".into())
        .spawn(move || loop {
            std::thread::sleep(every);
            let Some(s) = weak.upgrade() else { return };
            s.check_guests();
            s.retry_failed_guests();
            s.end_grace_periods();
        })
        .map(drop)
}

fn number(rules: &[FirewallRule]) -> Vec<NumberedRule> {
    rules
        .iter()
        .cloned()
        .enumerate()
        .map(|(id, rule)| NumberedRule { id, rule })
        .collect()
}

/// A `vni` query parameter, checked.
pub fn vni_opt(v: Option<u32>) -> Result<Option<Vni>, ApiError> {
    v.map(|v| Vni::new(v).map_err(|e| ApiError::field("vni", e.to_string())))
        .transpose()
}

fn vni_field(v: Option<u32>) -> Result<Vni, ApiError> {
    vni_opt(v)?.ok_or_else(|| ApiError::field("vni", "required"))
}

fn check_guest(g: &GuestSpec) -> Result<(), ApiError> {
    match g {
        GuestSpec::Tap { name, netns } => {
            if let Some(why) = crate::devices::tap_name_problem(name) {
                return Err(ApiError::field(
                    "guest.name",
                    format!("TAP name {name:?} {why}"),
                ));
            }
            if let Some(ns) = netns {
                if !ns.is_absolute() {
                    return Err(ApiError::field(
                        "guest.netns",
                        format!("{} is not an absolute path", ns.display()),
                    ));
                }
            }
        }
        GuestSpec::VhostUser { socket, queues, .. } => {
            if !socket.is_absolute() {
                return Err(ApiError::field(
                    "guest.socket",
                    format!("{} is not an absolute path", socket.display()),
                ));
            }
            let max = vmm_net::vhost_user::MAX_QUEUE_PAIRS;
            if *queues == 0 || usize::from(*queues) > max {
                return Err(ApiError::field(
                    "guest.queues",
                    format!("{queues} queue pairs: a vhost-user device has 1 to {max}"),
                ));
            }
        }
        GuestSpec::Dpdk { port } => {
            if port.is_empty() || port.len() > 256 {
                return Err(ApiError::field(
                    "guest.port",
                    "a DPDK port name is 1 to 256 characters".to_string(),
                ));
            }
        }
        GuestSpec::None => {}
    }
    Ok(())
}

/// A guest device as an operator wrote it.
fn guest_text(g: &GuestSpec) -> String {
    match g {
        GuestSpec::Tap { name, netns: None } => format!("TAP {name}"),
        GuestSpec::Tap {
            name,
            netns: Some(ns),
        } => format!("TAP {name} in {}", ns.display()),
        GuestSpec::VhostUser {
            socket,
            mode: VhostUserMode::Server,
            ..
        } => format!("vhost-user socket {}", socket.display()),
        GuestSpec::VhostUser {
            socket,
            mode: VhostUserMode::Client,
            ..
        } => format!("vhost-user socket {} (client)", socket.display()),
        GuestSpec::Dpdk { port } => format!("DPDK port {port}"),
        GuestSpec::None => "no device".into(),
    }
}

/// The error of a change that could not be saved (and was undone).
fn not_saved(e: String) -> ApiError {
    ApiError::NotSaved(format!("the change was undone: saving it failed: {e}"))
}

/// A port's checks name `config.` fields; a reconfiguration names the
/// field of the port's configuration as its body gives it.
fn strip_config(e: ApiError) -> ApiError {
    match e {
        ApiError::BadField { field, problem } => ApiError::BadField {
            field: field.strip_prefix("config.").unwrap_or(&field).to_string(),
            problem,
        },
        other => other,
    }
}

fn no_port(name: &str) -> ApiError {
    ApiError::NotFound(format!("no port named '{name}'"))
}

fn build_error(e: BuildError) -> ApiError {
    match e {
        BuildError::Config(c) => ApiError::field(c.field, c.problem),
        BuildError::Immutable { field } => ApiError::field(field, e.to_string()),
        BuildError::Port(p) => ApiError::field("config", p.to_string()),
    }
}

impl Sluice {
    /// The underlay address and every uplink's state and counters.
    pub fn dump_underlay(&self) -> Result<UnderlayDoc, ApiError> {
        let uplinks = self.workers.uplinks().map_err(worker_error)?;
        Ok(UnderlayDoc {
            address: self.host.underlay_ip,
            uplinks: uplinks
                .into_iter()
                .map(|u| UplinkDoc {
                    name: u.name,
                    link_up: u.link_up,
                    in_use: u.in_use,
                    mac: vnic::config::MacAddr(u.mac),
                    next_hop_mac: vnic::config::MacAddr(u.next_hop_mac),
                    stats: u.stats,
                })
                .collect(),
        })
    }

    /// Which uplinks carry traffic (see [`UnderlaySet`]); the rest only
    /// receive. Not persisted: a host-local operational choice (draining
    /// an uplink for maintenance), undone by a restart.
    pub fn set_underlay(&self, req: UnderlaySet) -> Result<UnderlayDoc, ApiError> {
        // Checked once here, so no worker is left with a different set.
        let have = self.dump_underlay()?;
        let names: Vec<&str> = have.uplinks.iter().map(|u| u.name.as_str()).collect();
        let bad = |problem: String| ApiError::BadField {
            field: "uplinks".into(),
            problem,
        };
        if req.uplinks.is_empty() {
            return Err(bad(format!(
                "at least one uplink must stay in use (configured: {})",
                names.join(", ")
            )));
        }
        for (k, n) in req.uplinks.iter().enumerate() {
            if !names.contains(&n.as_str()) {
                return Err(bad(format!(
                    "no uplink named '{n}' (configured: {})",
                    names.join(", ")
                )));
            }
            if req.uplinks[..k].contains(n) {
                return Err(bad(format!("'{n}' is named twice")));
            }
        }
        self.workers
            .set_uplinks_in_use(&req.uplinks)
            .map_err(worker_error)?;
        self.dump_underlay()
    }
}

fn worker_error(e: WorkerError) -> ApiError {
    match e {
        WorkerError::NoSuchPort(n) => no_port(&n),
        WorkerError::Switch(s) => ApiError::Conflict(s.to_string()),
        other => ApiError::Internal(other.to_string()),
    }
}
