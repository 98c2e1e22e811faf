//! The replay harness: builds vm1's port for a scenario, feeds it the
//! scenario's committed input captures merged by timestamp (the port's
//! clock set from each packet's timestamp, expiry run before each packet
//! as a worker does between batches), and writes what came out:
//!
//! - `guest.out.pcap`: what the port delivered to the guest (inbound
//!   packets it forwarded, and hairpin replies to outbound ones);
//! - `uplink.out.pcap`: what it sent to the underlay (outbound packets it
//!   forwarded, and hairpin replies to inbound ones);
//! - `drops.json`: the port's drop counts by reason;
//!
//! into `$TMPDIR/sluice-replay-NAME-PID`, removed when the [`Replay`] is
//! dropped (at the end of the test, also when it fails).

use crate::gen::{input_name, pcaps_dir};
use crate::pcapio::{self, Packet};
use crate::world::*;
use dataplane::{Direction, IpCidr, ManualClock, PacketBuf, Verdict, Vni};
use overlay::layer::HostOverlay;
use overlay::v2p::PhysDest;
use overlay::{V2b, V2p};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use vnic::config::VnicConfig;
use vnic::port::VnicPort;

/// vm1's configuration in a scenario. Every scenario: 10.0.0.5/24 in VPC
/// 7777, DHCP with DNS 10.0.0.2, SNAT 203.0.113.10 ports 2048-2111, a
/// default route to the internet gateway, default firewall (outbound
/// allowed, inbound denied). `floating_in` adds the floating IP and
/// opens TCP 80 inbound; `firewall_deny` adds the floating IP and opens
/// TCP 443 to the VPC subnet only.
pub fn config(scenario: &str) -> VnicConfig {
    let mac = |m: [u8; 6]| vnic::config::MacAddr(m).to_string();
    let mut c = serde_json::json!({
        "name": "vm1",
        "guest_mac": mac(VM1_MAC),
        "gateway_mac": mac(GW_MAC),
        "vni": VPC,
        "ipv4": { "addr": VM1_IP, "subnet": "10.0.0.0/24", "gateway": GW_IP },
        "dhcp": { "dns4": [DNS_IP], "domain": "vpc.internal", "hostname": "vm1" },
        "external": { "snat": [{ "ip": SNAT_IP, "first_port": SNAT_FIRST_PORT, "last_port": SNAT_LAST_PORT }] },
        "routes": [{ "dest": "0.0.0.0/0", "target": "internet_gateway", "class": "system" }],
        "limits": { "flows": 1024 }
    });
    match scenario {
        "floating_in" => {
            c["external"]["floating"] = serde_json::json!([FLOATING_IP]);
            c["firewall"] = serde_json::json!([{
                "direction": "in", "priority": 10, "action": "allow",
                "protocol": "tcp", "ports": { "list": [80] }
            }]);
        }
        "outer_checks" => {
            c["firewall"] = serde_json::json!([{
                "direction": "in", "priority": 10, "action": "allow",
                "protocol": "tcp", "ports": { "list": [22] }
            }]);
        }
        "firewall_deny" => {
            c["external"]["floating"] = serde_json::json!([FLOATING_IP]);
            c["firewall"] = serde_json::json!([{
                "direction": "in", "priority": 10, "action": "allow",
                "hosts": { "subnet": "10.0.0.0/24" },
                "protocol": "tcp", "ports": { "list": [443] }
            }]);
        }
        _ => {}
    }
    serde_json::from_value(c).expect("vm1's configuration")
}

/// Host A with the cloud's tables: vm1 on host A, vm2 on host B, and the
/// boundary serving 0.0.0.0/0 for both VPCs.
fn host_a() -> HostOverlay {
    let v2p = Arc::new(V2p::new(1024));
    let v2b = Arc::new(V2b::new(64));
    let vpc = Vni::new(VPC).expect("VNI");
    for (ip, mac, host) in [(VM1_IP, VM1_MAC, HOST_A), (VM2_IP, VM2_MAC, HOST_B)] {
        v2p.set(
            vpc,
            IpAddr::V4(ip),
            PhysDest {
                guest_mac: mac,
                host,
            },
        )
        .expect("V2P");
    }
    for vni in [VPC, OTHER_VPC] {
        v2b.set(
            Vni::new(vni).expect("VNI"),
            "0.0.0.0/0".parse::<IpCidr>().expect("prefix"),
            [BOUNDARY],
        )
        .expect("V2B");
    }
    HostOverlay {
        underlay_ip: HOST_A,
        underlay_mac: HOST_A_NIC_MAC,
        next_hop_mac: UNDERLAY_ROUTER_MAC,
        v2p,
        v2b,
        mcast: Default::default(),
    }
}

/// One packet of the merged input.
#[derive(Clone, Debug)]
pub struct Input {
    pub endpoint: Endpoint,
    /// Its number in its own capture (from 1, as tshark counts).
    pub number: usize,
    pub ts: Duration,
    pub frame: Vec<u8>,
}

/// What the port did with one input packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Sent on to the other endpoint.
    Forwarded,
    /// Answered back to the sender.
    Hairpinned,
    Dropped(String),
}

impl Outcome {
    pub fn dropped(reason: &str) -> Outcome {
        Outcome::Dropped(reason.to_string())
    }
}

/// A folder removed when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("sluice-replay-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        TempDir(p)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A finished replay: inputs in the order replayed, what became of each,
/// the output captures (read back from the files written) and the drop
/// counts.
pub struct Replay {
    pub name: &'static str,
    pub dir: TempDir,
    pub inputs: Vec<Input>,
    pub outcomes: Vec<Outcome>,
    pub guest_out: Vec<Packet>,
    pub uplink_out: Vec<Packet>,
    /// Drops by reason name (only reasons with a non-zero count).
    pub drops: BTreeMap<String, u64>,
    /// Flows the port holds at the end.
    pub flows: u32,
}

impl Replay {
    pub fn out_path(&self, endpoint: Endpoint) -> PathBuf {
        self.dir
            .path()
            .join(format!("{}.out.pcap", endpoint.name()))
    }

    /// The input frames one endpoint sent, in order.
    pub fn sent_by(&self, endpoint: Endpoint) -> Vec<&Input> {
        self.inputs
            .iter()
            .filter(|i| i.endpoint == endpoint)
            .collect()
    }

    /// What became of each frame one endpoint sent, in order.
    pub fn outcomes_of(&self, endpoint: Endpoint) -> Vec<&Outcome> {
        self.inputs
            .iter()
            .zip(&self.outcomes)
            .filter(|(i, _)| i.endpoint == endpoint)
            .map(|(_, o)| o)
            .collect()
    }

    /// A summary for assertion messages.
    pub fn describe(&self) -> String {
        let mut s = format!("replay {} ({}):\n", self.name, self.dir.path().display());
        for (i, o) in self.inputs.iter().zip(&self.outcomes) {
            s += &format!(
                "  {}.{} #{} at {:?}: {o:?}\n",
                self.name,
                i.endpoint.name(),
                i.number,
                i.ts
            );
        }
        s += &format!(
            "  guest.out {} packets, uplink.out {} packets, drops {:?}",
            self.guest_out.len(),
            self.uplink_out.len(),
            self.drops
        );
        s
    }
}

/// Replays scenario `name` from its committed captures.
pub fn replay(name: &'static str) -> Replay {
    let mut inputs = Vec::new();
    for endpoint in Endpoint::ALL {
        let path = pcaps_dir().join(input_name(name, endpoint));
        if !path.exists() {
            continue;
        }
        for (i, p) in pcapio::read(&path).into_iter().enumerate() {
            inputs.push(Input {
                endpoint,
                number: i + 1,
                ts: p.ts,
                frame: p.frame,
            });
        }
    }
    assert!(!inputs.is_empty(), "scenario {name} has no input captures");
    // Merge by time; simultaneous packets: the guest's first, each
    // capture's in file order (the sort is stable).
    inputs.sort_by_key(|i| (i.ts, i.endpoint));

    let clock = ManualClock::new();
    clock.set(nanos(inputs[0].ts));
    let mut vnic = VnicPort::build(&config(name), &host_a(), Box::new(clock.clone()))
        .expect("vm1's port builds");
    let mut out: BTreeMap<Endpoint, Vec<Packet>> = BTreeMap::new();
    let mut outcomes = Vec::new();
    for input in &inputs {
        clock.set(nanos(input.ts));
        vnic.port.expire();
        let (dir, onward, back) = match input.endpoint {
            Endpoint::Guest => (Direction::Out, Endpoint::Uplink, Endpoint::Guest),
            Endpoint::Uplink => (Direction::In, Endpoint::Guest, Endpoint::Uplink),
        };
        let mut pkt = PacketBuf::from_frame(&input.frame);
        let (to, frame, outcome) = match vnic.port.process(dir, &mut pkt) {
            Verdict::Forward => (Some(onward), pkt.as_slice().to_vec(), Outcome::Forwarded),
            Verdict::Hairpin(reply) => (Some(back), reply.as_slice().to_vec(), Outcome::Hairpinned),
            Verdict::Drop(r) => (None, Vec::new(), Outcome::Dropped(r.name().to_string())),
        };
        if let Some(to) = to {
            out.entry(to).or_default().push(Packet {
                ts: input.ts,
                frame,
            });
        }
        outcomes.push(outcome);
    }

    let dir = TempDir::new(name);
    let drops: BTreeMap<String, u64> = vnic
        .port
        .stats()
        .drop_counts()
        .into_iter()
        .map(|(n, c)| (n.to_string(), c))
        .collect();
    let mut written = BTreeMap::new();
    for endpoint in Endpoint::ALL {
        let path = dir.path().join(format!("{}.out.pcap", endpoint.name()));
        pcapio::write(&path, out.get(&endpoint).map_or(&[][..], Vec::as_slice));
        written.insert(endpoint, pcapio::read(&path));
    }
    let json = serde_json::to_string_pretty(&drops).expect("drops as JSON");
    std::fs::write(dir.path().join("drops.json"), json).expect("drops.json");
    Replay {
        name,
        inputs,
        outcomes,
        guest_out: written.remove(&Endpoint::Guest).unwrap_or_default(),
        uplink_out: written.remove(&Endpoint::Uplink).unwrap_or_default(),
        drops,
        flows: vnic.port.flow_count(),
        dir,
    }
}

fn nanos(ts: Duration) -> u64 {
    u64::try_from(ts.as_nanos()).expect("timestamp fits 64-bit nanoseconds")
}
