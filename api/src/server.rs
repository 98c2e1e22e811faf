//! The control plane's model of a host: the desired state (every port's
//! configuration and guest, V2P, V2B) and the running dataplane it drives.
//!
//! Every change is validated in full before anything is touched, applied
//! to the dataplane (a job on the port's worker, between two bursts:
//! traffic never stops), then persisted before the call returns. Changes
//! are serialised by one lock, so the persisted document is always a
//! state the host actually had.

use crate::error::ApiError;
use crate::state::{StateStore, STATE_VERSION};
use crate::types::*;
use dataplane::{Direction, MonotonicClock, Vni};
use overlay::layer::HostOverlay;
use overlay::v2p::PhysDest;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use vmm_net::backend::{Backend, Null};
use vmm_net::switch::Capture;
use vmm_net::worker::{WorkerError, Workers};
use vnic::config::VnicConfig;
use vnic::firewall::FirewallRule;
use vnic::port::{BuildError, VnicPort};
use vnic::router::{RouteClass, RouteEntry};

/// Where guest devices come from: the real host's (TAP, vhost-user) or
/// simulated ones (in-memory wires) for tests and the demo.
pub trait Devices: Send + Sync {
    /// Opens the device a port's guest sits on.
    fn open_guest(&self, port: &str, spec: &GuestSpec) -> Result<Box<dyn Backend>, String>;
    /// The port is gone for good: remove what `open_guest` made.
    fn remove_guest(&self, _port: &str, _spec: &GuestSpec) {}
}

/// The simulated devices: every guest is an in-memory wire that tests
/// (or the demo) play the far side of.
#[derive(Default)]
pub struct SimDevices {
    wires: Mutex<BTreeMap<String, vmm_net::backend::Wire>>,
}

impl SimDevices {
    /// The wire of a port's guest (the guest's side of it).
    pub fn wire(&self, port: &str) -> Option<vmm_net::backend::Wire> {
        lock(&self.wires).get(port).cloned()
    }
}

impl Devices for SimDevices {
    fn open_guest(&self, port: &str, _spec: &GuestSpec) -> Result<Box<dyn Backend>, String> {
        let w = vmm_net::backend::Wire::new();
        let b = w.backend();
        lock(&self.wires).insert(port.to_string(), w);
        Ok(Box::new(b))
    }

    fn remove_guest(&self, port: &str, _spec: &GuestSpec) {
        lock(&self.wires).remove(port);
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
}

/// Table sizes a host is created with.
#[derive(Clone, Copy, Debug)]
pub struct HostLimits {
    pub v2p: usize,
    pub v2b: usize,
    /// Ports on this host.
    pub ports: usize,
}

impl Default for HostLimits {
    fn default() -> Self {
        // A million guest addresses is a large region's worth of VPCs;
        // at about 100 bytes each, 100 MB at most.
        HostLimits {
            v2p: 1_000_000,
            v2b: 65_536,
            ports: 1024,
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
            host,
            workers,
            devices,
            store,
            limits,
            ports: Mutex::new(BTreeMap::new()),
        };
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
        self.set_v2p(V2pSet { mappings: doc.v2p }, false)?;
        self.set_v2b(V2bSet { routes: doc.v2b }, false)?;
        for p in doc.ports {
            let name = p.config.name.clone();
            self.create_vnic(p, false).map_err(|e| {
                ApiError::Internal(format!("restoring port '{name}' from the saved state: {e}"))
            })?;
        }
        Ok(())
    }

    pub fn host(&self) -> &HostOverlay {
        &self.host
    }

    pub fn workers(&self) -> &Workers {
        &self.workers
    }

    /// The whole persisted state.
    pub fn state(&self) -> StateDoc {
        self.doc(&lock(&self.ports))
    }

    fn doc(&self, ports: &BTreeMap<String, CreateVnic>) -> StateDoc {
        StateDoc {
            version: STATE_VERSION,
            underlay_ip: Some(self.host.underlay_ip),
            ports: ports.values().cloned().collect(),
            v2p: self.dump_v2p(None),
            v2b: self.dump_v2b(None),
        }
    }

    fn save(&self, ports: &BTreeMap<String, CreateVnic>) -> Result<(), ApiError> {
        if let Some(st) = &self.store {
            st.save(&self.doc(ports)).map_err(|e| {
                ApiError::Internal(format!("the change is live but was not saved: {e}"))
            })?;
        }
        Ok(())
    }

    // ---- ports ----

    pub fn create_vnic(&self, req: CreateVnic, persist: bool) -> Result<PortSummary, ApiError> {
        let mut ports = lock(&self.ports);
        let c = &req.config;
        c.validate()
            .map_err(|e| ApiError::field(format!("config.{}", e.field), e.problem))?;
        check_guest(&req.guest)?;
        if ports.contains_key(&c.name) {
            return Err(ApiError::Conflict(format!(
                "a port named '{}' exists already",
                c.name
            )));
        }
        if ports.len() >= self.limits.ports {
            return Err(ApiError::Conflict(format!(
                "this host has {} ports, its limit",
                self.limits.ports
            )));
        }
        for o in ports.values() {
            let oc = &o.config;
            if oc.vni == c.vni && oc.guest_mac == c.guest_mac {
                return Err(ApiError::Conflict(format!(
                    "port '{}' has MAC {} in VNI {} already",
                    oc.name,
                    c.guest_mac,
                    c.vni.get()
                )));
            }
            let same_ip = |a: Option<IpAddr>, b: Option<IpAddr>| a.is_some() && a == b;
            if oc.vni == c.vni
                && (same_ip(
                    oc.ipv4.as_ref().map(|v| v.addr.into()),
                    c.ipv4.as_ref().map(|v| v.addr.into()),
                ) || same_ip(
                    oc.ipv6.as_ref().map(|v| v.addr.into()),
                    c.ipv6.as_ref().map(|v| v.addr.into()),
                ))
            {
                return Err(ApiError::Conflict(format!(
                    "port '{}' has the same address in VNI {}",
                    oc.name,
                    c.vni.get()
                )));
            }
            if o.guest != GuestSpec::None && o.guest == req.guest {
                return Err(ApiError::Conflict(format!(
                    "port '{}' uses the same guest device",
                    oc.name
                )));
            }
        }
        let vnic =
            VnicPort::build(c, &self.host, Box::new(MonotonicClock::new())).map_err(build_error)?;
        let guest: Box<dyn Backend> = match req.guest {
            GuestSpec::None => Box::new(Null),
            ref g => self
                .devices
                .open_guest(&c.name, g)
                .map_err(|e| ApiError::field("guest", e))?,
        };
        let worker = self.workers.attach(vnic, guest).map_err(worker_error)?;
        let summary = self.summary(&req, worker)?;
        ports.insert(c.name.clone(), req);
        if persist {
            self.save(&ports)?;
        }
        Ok(summary)
    }

    pub fn delete_vnic(&self, name: &str) -> Result<(), ApiError> {
        let mut ports = lock(&self.ports);
        let Some(p) = ports.get(name) else {
            return Err(no_port(name));
        };
        let guest = p.guest.clone();
        self.workers.detach(name).map_err(worker_error)?;
        self.devices.remove_guest(name, &guest);
        ports.remove(name);
        self.save(&ports)
    }

    fn summary(&self, p: &CreateVnic, worker: usize) -> Result<PortSummary, ApiError> {
        let c = &p.config;
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
        })
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
        let mut c = p.config.clone();
        f(&mut c)?;
        c.validate()
            .map_err(|e| ApiError::field(e.field, e.problem))?;
        let live = c.clone();
        self.workers
            .with_port(name, move |v| v.reconfigure(&live))
            .map_err(worker_error)?
            .map_err(build_error)?;
        if let Some(p) = ports.get_mut(name) {
            p.config = c.clone();
        }
        self.save(&ports)?;
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

    // ---- tables of a port ----

    fn on_port<R: Send + 'static>(
        &self,
        name: &str,
        f: impl FnOnce(&mut VnicPort) -> R + Send + 'static,
    ) -> Result<R, ApiError> {
        self.workers.with_port(name, f).map_err(worker_error)
    }

    pub fn list_layers(&self, name: &str) -> Result<serde_json::Value, ApiError> {
        self.on_port(name, |v| {
            let layers: Vec<serde_json::Value> = v
                .port
                .dump_layers()
                .into_iter()
                .map(|l| {
                    let mut j = serde_json::to_value(&l).unwrap_or_default();
                    // A listing: no rules or flows, just counts.
                    if let Some(o) = j.as_object_mut() {
                        for key in ["rules_in", "rules_out", "lft_in", "lft_out"] {
                            if let Some(a) = o.get(key).and_then(|x| x.as_array()).map(Vec::len) {
                                o.insert(key.to_string(), a.into());
                            }
                        }
                    }
                    j
                })
                .collect();
            serde_json::Value::Array(layers)
        })
    }

    pub fn dump_layer(&self, name: &str, layer: &str) -> Result<serde_json::Value, ApiError> {
        let l = layer.to_string();
        let found = self.on_port(name, move |v| {
            v.port
                .dump_layers()
                .into_iter()
                .find(|d| d.name == l)
                .map(|d| serde_json::to_value(&d).unwrap_or_default())
        })?;
        found.ok_or_else(|| {
            ApiError::NotFound(format!(
                "port '{name}' has no layer '{layer}' (layers: gateway, firewall, router, nat, overlay)"
            ))
        })
    }

    pub fn dump_uft(&self, name: &str) -> Result<serde_json::Value, ApiError> {
        self.on_port(name, |v| {
            serde_json::to_value(v.port.dump_uft()).unwrap_or_default()
        })
    }

    pub fn clear_uft(&self, name: &str) -> Result<(), ApiError> {
        self.on_port(name, |v| v.port.clear_flows())
    }

    pub fn dump_tcp_flows(&self, name: &str) -> Result<serde_json::Value, ApiError> {
        self.on_port(name, |v| {
            serde_json::to_value(v.port.dump_tcp_flows()).unwrap_or_default()
        })
    }

    pub fn port_stats(&self, name: &str) -> Result<PortStatsDoc, ApiError> {
        let n = name.to_string();
        self.on_port(name, move |v| port_stats_doc(&n, v))
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
                rounds: w.rounds,
                sleeps: w.sleeps,
                switch: serde_json::to_value(w.switch).unwrap_or_default(),
                drops: DropCount::list(&w.switch.drops.counts()),
                devices: w
                    .devices
                    .iter()
                    .map(|(d, c)| DeviceDrops::from_counts(d, c))
                    .collect(),
            })
            .collect();
        Ok(HostStats {
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
            Ok(t) => serde_json::to_value(t).unwrap_or_default(),
            Err(r) => serde_json::json!({ "verdict": format!("drop: {r}"), "steps": [] }),
        };
        Ok(TraceResponse {
            input_hex: crate::trace::hex(&frame),
            trace,
        })
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
        for (i, m) in req.mappings.iter().enumerate() {
            if m.guest_mac.is_multicast() || m.guest_mac.is_zero() {
                return Err(ApiError::field(
                    format!("mappings[{i}].guest_mac"),
                    format!("{} is not a unicast MAC", m.guest_mac),
                ));
            }
            if m.host.is_unspecified() || m.host.is_multicast() {
                return Err(ApiError::field(
                    format!("mappings[{i}].host"),
                    format!("{} is not a unicast underlay address", m.host),
                ));
            }
        }
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
            self.save(&ports)?;
        }
        Ok(n)
    }

    pub fn clear_v2p(&self, sel: V2pSelector) -> Result<usize, ApiError> {
        let ports = lock(&self.ports);
        let vni = vni_field(sel.vni)?;
        let n = match sel.ip {
            Some(ip) => usize::from(self.host.v2p.clear(vni, ip)),
            None => self.host.v2p.clear_vni(vni),
        };
        self.save(&ports)?;
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
            self.save(&ports)?;
        }
        Ok(n)
    }

    pub fn clear_v2b(&self, sel: V2bSelector) -> Result<usize, ApiError> {
        let ports = lock(&self.ports);
        let vni = vni_field(sel.vni)?;
        let n = match sel.prefix {
            Some(p) => usize::from(self.host.v2b.clear(vni, p)),
            None => self.host.v2b.clear_vni(vni),
        };
        self.save(&ports)?;
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

pub fn port_stats_doc(name: &str, v: &VnicPort) -> PortStatsDoc {
    let p = &v.port;
    let mut layers = Vec::new();
    for l in p.layers() {
        for (d, dir) in [(Direction::Out, Dir::Out), (Direction::In, Dir::In)] {
            if let Ok(s) = p.layer_stats(l.name(), d) {
                layers.push(LayerStatsDoc {
                    layer: l.name().to_string(),
                    dir,
                    stats: serde_json::to_value(s).unwrap_or_default(),
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
        stats: {
            let st = p.stats();
            serde_json::json!({
                "in": st.dir(Direction::In),
                "out": st.dir(Direction::Out),
                "flows_created": st.flows_created,
                "flows_expired": st.flows_expired,
                "flows_evicted": st.flows_evicted,
                "revalidations": st.revalidations,
                "related": st.related,
            })
        },
        layers,
        drops: p
            .stats()
            .drop_counts()
            .into_iter()
            .filter(|(_, n)| *n > 0)
            .map(|(r, n)| DropCount {
                reason: r.to_string(),
                count: n,
            })
            .collect(),
    }
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
            // IFNAMSIZ is 16 with the terminating NUL.
            if name.is_empty() || name.len() > 15 || name.contains(['/', ' ', '\0']) {
                return Err(ApiError::field(
                    "guest.name",
                    format!(
                        "'{name}' is not an interface name (1 to 15 characters, no '/' or spaces)"
                    ),
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
        GuestSpec::VhostUser { socket } => {
            if !socket.is_absolute() {
                return Err(ApiError::field(
                    "guest.socket",
                    format!("{} is not an absolute path", socket.display()),
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

fn worker_error(e: WorkerError) -> ApiError {
    match e {
        WorkerError::NoSuchPort(n) => no_port(&n),
        WorkerError::Switch(s) => ApiError::Conflict(s.to_string()),
        other => ApiError::Internal(other.to_string()),
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
