//! Simulated fleet hosts in one process: each is the real control plane
//! (`Sluice`), workers and engine, with its own fleet agent (its own
//! etcd connection and watch). Guests are in-memory wires; the underlay
//! is a thread that carries every host's Geneve frames to the host
//! whose underlay address they are for.

use api::fleet::{Agent, AgentOptions};
use api::server::{HostLimits, SimDevices, Sluice};
use overlay::layer::HostOverlay;
use overlay::v2b::V2b;
use overlay::v2p::V2p;
use serde_json::json;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use vmm_net::backend::Wire;
use vmm_net::worker::Workers;

pub const VNI: u32 = 7777;
pub const GW_MAC: [u8; 6] = [0xa8, 0x40, 0x25, 0xff, 0xff, 0x01];

pub struct Host {
    pub name: String,
    pub sluice: Arc<Sluice>,
    pub devices: Arc<SimDevices>,
    pub agent: Agent,
}

pub struct World {
    pub hosts: Vec<Host>,
    stop: Arc<AtomicBool>,
    underlay: Option<std::thread::JoinHandle<()>>,
}

pub fn host_ip(i: usize) -> Ipv6Addr {
    Ipv6Addr::new(0xfd00, 0x99, 0, 0, 0, 0, 1, i as u16)
}

fn host_mac(i: usize) -> [u8; 6] {
    [2, 0, 0, 1, (i >> 8) as u8, i as u8]
}

/// A guest's addresses by (host, slot): 10.<host>.<slot>.5 style,
/// unique in the VPC 10.0.0.0/8.
pub fn guest_ip(host: usize, slot: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, (host >> 8) as u8 + 1, host as u8, slot as u8 + 10)
}

pub fn guest_mac(host: usize, slot: usize) -> [u8; 6] {
    [
        0xa8,
        0x40,
        0x25,
        (host >> 8) as u8,
        host as u8,
        slot as u8 + 10,
    ]
}

fn mac_text(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// A port's desired state (CreateVnic JSON): VNI 7777, the whole VPC
/// allowed in.
pub fn port_json(name: &str, ip: Ipv4Addr, mac: [u8; 6]) -> serde_json::Value {
    json!({
        "config": {
            "name": name,
            "guest_mac": mac_text(mac),
            "gateway_mac": mac_text(GW_MAC),
            "vni": VNI,
            "ipv4": { "addr": ip.to_string(), "subnet": "10.0.0.0/8", "gateway": "10.0.0.1" },
            "firewall": [{
                "direction": "in", "priority": 10, "action": "allow",
                "hosts": { "subnet": "10.0.0.0/8" }, "protocol": "any", "ports": "any"
            }],
            "limits": { "flows": 1024 }
        },
        "guest": { "kind": "tap", "name": format!("tap-{name}") }
    })
}

pub fn v2p_json(vni: u32, ip: Ipv4Addr, mac: [u8; 6], host: Ipv6Addr) -> serde_json::Value {
    json!({ "vni": vni, "ip": ip.to_string(), "guest_mac": mac_text(mac), "host": host.to_string() })
}

impl World {
    /// `n` hosts named h0.., each with an agent on `endpoints`.
    pub fn start(n: usize, endpoints: &[String], limits: HostLimits) -> World {
        let mut hosts = Vec::new();
        let mut wires = Vec::new();
        for i in 0..n {
            let ip = host_ip(i);
            let overlay = HostOverlay {
                underlay_ip: ip,
                underlay_mac: host_mac(i),
                next_hop_mac: [2, 0, 0, 0, 0, 0x20],
                v2p: Arc::new(V2p::new(limits.v2p)),
                v2b: Arc::new(V2b::new(limits.v2b)),
                mcast: Default::default(),
            };
            let uplink = Wire::new();
            let workers = Workers::start(ip, vec![Box::new(uplink.backend())]).unwrap();
            let devices = Arc::new(SimDevices::default());
            let sluice = Arc::new(
                Sluice::new(
                    overlay,
                    workers,
                    Box::new(Arc::clone(&devices)),
                    None,
                    limits,
                )
                .unwrap(),
            );
            let name = format!("h{i}");
            let agent = Agent::start(
                Arc::clone(&sluice),
                AgentOptions::new(endpoints.to_vec(), &name),
            )
            .unwrap();
            wires.push((ip, host_mac(i), uplink));
            hosts.push(Host {
                name,
                sluice,
                devices,
                agent,
            });
        }
        let stop = Arc::new(AtomicBool::new(false));
        let s = Arc::clone(&stop);
        let underlay = std::thread::spawn(move || {
            // Bounded by the world's life; 1 ms rounds.
            while !s.load(Ordering::Relaxed) {
                for (_, _, w) in &wires {
                    for mut f in w.take() {
                        // Outer IPv6 destination: Ethernet 14 + IPv6 24..40.
                        let Some(dst) = f.get(38..54) else { continue };
                        let dst = Ipv6Addr::from(<[u8; 16]>::try_from(dst).unwrap_or([0; 16]));
                        if let Some((_, mac, to)) = wires.iter().find(|(ip, _, _)| *ip == dst) {
                            // As the underlay's router would: to the host's NIC.
                            f[0..6].copy_from_slice(mac);
                            to.send(&f);
                        }
                    }
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        });
        World {
            hosts,
            stop,
            underlay: Some(underlay),
        }
    }

    /// Waits until `f` holds for every host (or panics after `limit`).
    pub fn wait_all(&self, limit: Duration, what: &str, f: impl Fn(&Host) -> bool) {
        let deadline = Instant::now() + limit;
        loop {
            let behind: Vec<&str> = self
                .hosts
                .iter()
                .filter(|h| !f(h))
                .map(|h| h.name.as_str())
                .collect();
            if behind.is_empty() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: hosts {behind:?} did not converge in {limit:?} (applied, sessions, last error: {:?})",
                self.hosts
                    .iter()
                    .filter(|h| behind.contains(&h.name.as_str()))
                    .map(|h| (h.agent.applied_revision(), h.agent.sessions(), h.agent.last_error()))
                    .take(3)
                    .collect::<Vec<_>>()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for World {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.underlay.take() {
            let _ = t.join();
        }
        // Agents stop (and drop their leases) before the hosts go.
        for h in self.hosts.drain(..) {
            h.agent.stop();
        }
    }
}

/// The host a V2P mapping sends `ip` to, as `h` has it now.
pub fn v2p_host(h: &Host, vni: u32, ip: Ipv4Addr) -> Option<Ipv6Addr> {
    let vni = dataplane::Vni::new(vni).ok()?;
    h.sluice
        .host()
        .v2p
        .get(vni, IpAddr::V4(ip))
        .map(|(d, _)| d.host)
}

/// Frames a guest got within `limit` (polling its wire).
pub fn recv(h: &Host, port: &str, limit: Duration) -> Vec<Vec<u8>> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(w) = h.devices.wire(port) {
            let got = w.take();
            if !got.is_empty() {
                return got;
            }
        }
        if Instant::now() >= deadline {
            return Vec::new();
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

pub fn send(h: &Host, port: &str, frame: &[u8]) {
    h.devices
        .wire(port)
        .unwrap_or_else(|| panic!("{} has no port {port}", h.name))
        .send(frame);
}
