//! A bounded soak of the whole host in process: the real control plane
//! served over HTTP, real worker threads, simulated guest and uplink
//! wires (no root, no network). For `SOAK_SECS` seconds (default 2;
//! `scripts/test.sh` runs 60):
//!
//! - three guests (two VPCs) send mixed traffic: TCP SYNs on ever new
//!   ports (flows churn: half-open flows idle out after 5 s or are
//!   evicted), long-lived UDP flows, pings, and a few spoofed frames;
//!   the peer opens connections to them from the underlay;
//! - every second each port's firewall rule set is replaced through the
//!   API, alternating between two sets;
//! - every second the process's resident memory and the ports' flow
//!   counts are sampled.
//!
//! Then: resident memory after the warm-up stays within 10 % + 8 MB of
//! its level when the warm-up ended; the flows idle out back to the
//! long-lived ones once traffic stops; the only drop reasons are the
//! expected ones (spoofed frames, inbound SYNs the current rule set
//! refuses, half-open floods evicted when full).

use crate::common::*;
use api::client::Client;
use api::serve::SimHost;
use api::types::{CreateVnic, FirewallRules, GuestSpec, V2bRoute, V2bSet, V2pMapping, V2pSet};
use dataplane::Vni;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};
use vnic::firewall::FirewallRule;

/// Resident memory of this process, in kB (Linux `/proc/self/status`).
fn rss_kb() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn rules(open_ssh_only: bool) -> Vec<FirewallRule> {
    let r = if open_ssh_only {
        serde_json::json!([{ "direction": "in", "priority": 10, "action": "allow",
            "protocol": "tcp", "ports": { "list": [22] } }])
    } else {
        serde_json::json!([{ "direction": "in", "priority": 10, "action": "allow",
            "hosts": { "subnet": "10.0.0.0/24" } },
            { "direction": "in", "priority": 5, "action": "deny",
            "protocol": "tcp", "ports": { "list": [22] } }])
    };
    serde_json::from_value(r).expect("rules")
}

/// The drop reasons this traffic may cause.
const EXPECTED: &[&str] = &[
    // The spoofed frames.
    "spoofed_source_ip",
    // Inbound SYNs to port 23 (one rule set) or 22 (the other).
    "denied",
    "default_denied",
];

#[test]
fn soak_mixed_traffic_with_rules_changing_every_second() {
    let secs: u64 = std::env::var("SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2);
    let h = SimHost::start(None, 2).expect("simulated host");
    let c = Client::new(&h.url(), Some(h.token.clone()));
    let guests = [("vm1", 5, VPC_A), ("vm2", 6, VPC_A), ("vm3", 5, VPC_B)];
    for (i, (name, last, vni)) in guests.into_iter().enumerate() {
        let mut cfg = vnic(name, last, vni, 4096);
        cfg.rate_limit = None;
        // A host refuses two ports sharing SNAT ports: 2048 each.
        for s in &mut cfg.external.snat {
            s.first_port = 2048 + 2048 * i as u16;
            s.last_port = s.first_port + 2047;
        }
        c.create_vnic(&CreateVnic {
            config: cfg,
            guest: GuestSpec::Tap {
                name: format!("tap-{name}"),
                netns: None,
            },
        })
        .expect("create");
    }
    let mut mappings = Vec::new();
    let mut routes = Vec::new();
    for vni in [VPC_A, VPC_B] {
        let vni = Vni::new(vni).unwrap();
        mappings.push(V2pMapping {
            vni,
            ip: v4(PEER_LAST).into(),
            guest_mac: vnic::config::MacAddr(mac(PEER_LAST)),
            host: ip6(PEER_HOST),
        });
        for (last, host) in [(5, api::serve::SIM_UNDERLAY), (6, api::serve::SIM_UNDERLAY)] {
            mappings.push(V2pMapping {
                vni,
                ip: v4(last).into(),
                guest_mac: vnic::config::MacAddr(mac(last)),
                host,
            });
        }
        routes.push(V2bRoute {
            vni,
            prefix: "0.0.0.0/0".parse().unwrap(),
            endpoints: vec![ip6(BOUNDARY)],
        });
    }
    c.set_v2p(&V2pSet { mappings }).expect("V2P");
    c.set_v2b(&V2bSet { routes }).expect("V2B");
    let wires: Vec<_> = guests
        .iter()
        .map(|(n, ..)| h.devices.wire(n).expect("wire"))
        .collect();
    let sim = api::serve::SIM_UNDERLAY.to_string();

    let start = Instant::now();
    let warmup = Duration::from_secs((secs / 5).max(1));
    let mut baseline = None;
    let mut samples: Vec<(u64, u64, Vec<u32>)> = Vec::new();
    let mut sport: u16 = 1024;
    let mut second = 0u64;
    let mut sent = 0u64;
    while start.elapsed() < Duration::from_secs(secs) {
        let tick = Instant::now();
        // One second of traffic, in 20 slices of 50 ms.
        for _ in 0..20 {
            for (i, (_, last, vni)) in guests.iter().enumerate() {
                let w = &wires[i];
                for _ in 0..10 {
                    sport = if sport == u16::MAX { 1024 } else { sport + 1 };
                    w.send(&tcp4(*last, sport, v4(PEER_LAST), 80, "S"));
                    w.send(&tcp4(
                        *last,
                        sport,
                        Ipv4Addr::new(198, 51, 100, 7),
                        443,
                        "S",
                    ));
                }
                for p in 0..4 {
                    w.send(&udp4(*last, 5000 + p, v4(PEER_LAST), 53));
                }
                let mut spoofed = Vec::new();
                etherparse::PacketBuilder::ethernet2(mac(*last), GW_MAC)
                    .ipv4([10, 0, 0, 99], v4(PEER_LAST).octets(), 64)
                    .udp(6000, 53)
                    .write(&mut spoofed, b"x")
                    .unwrap();
                w.send(&spoofed);
                // The peer connects in, to 22 and 23.
                for dport in [22u16, 23] {
                    let mut f = Vec::new();
                    etherparse::PacketBuilder::ethernet2(mac(PEER_LAST), mac(*last))
                        .ipv4(v4(PEER_LAST).octets(), v4(*last).octets(), 64)
                        .tcp(sport, dport, 1, 64_000)
                        .syn()
                        .write(&mut f, &[])
                        .unwrap();
                    h.uplink.send(&wrap(&f, PEER_HOST, &sim, *vni));
                }
                sent += 26;
            }
            // What the host sends on the uplink and to the guests is
            // discarded, as a network would.
            let _ = h.uplink.take();
            for w in &wires {
                let _ = w.take();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        second += 1;
        for (name, ..) in guests {
            c.set_fw_rules(
                name,
                &FirewallRules {
                    rules: rules(second.is_multiple_of(2)),
                },
            )
            .expect("rules replaced");
        }
        let flows: Vec<u32> = c
            .list_ports()
            .expect("ports")
            .iter()
            .map(|p| p.flows)
            .collect();
        let rss = rss_kb().unwrap_or(0);
        if baseline.is_none() && start.elapsed() >= warmup {
            baseline = Some(rss);
        }
        println!(
            "soak t={:>3}s rss={rss} kB flows={flows:?} ({} ms)",
            start.elapsed().as_secs(),
            tick.elapsed().as_millis()
        );
        samples.push((start.elapsed().as_secs(), rss, flows));
    }
    println!("soak: {sent} frames sent by the guests in {secs} s");

    // Memory: flat after the warm-up.
    let base = baseline.unwrap_or(samples[0].1);
    let peak = samples.iter().map(|s| s.1).max().unwrap_or(0);
    if rss_kb().is_some() {
        assert!(
            peak <= base + base / 10 + 8 * 1024,
            "resident memory grew from {base} kB to {peak} kB: {samples:?}"
        );
    }
    // Flows: bounded while running, back to the long-lived ones (4 UDP
    // flows per guest) once the half-open ones idle out (5 s).
    for (_, _, flows) in &samples {
        assert!(flows.iter().all(|f| *f <= 4096), "{flows:?}");
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    let settled = loop {
        let flows: Vec<u32> = c.list_ports().unwrap().iter().map(|p| p.flows).collect();
        if flows.iter().all(|f| *f <= 4) || Instant::now() > deadline {
            break flows;
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    assert!(
        settled.iter().all(|f| *f <= 4),
        "flows left after expiry: {settled:?}"
    );
    // Drops: only the expected reasons.
    let mut reasons: BTreeMap<String, u64> = BTreeMap::new();
    for (name, ..) in guests {
        let s = c.port_stats(name).expect("stats");
        for d in s.drops {
            *reasons.entry(d.reason).or_default() += d.count;
        }
    }
    println!("soak drops: {reasons:?}");
    let unexpected: Vec<_> = reasons
        .keys()
        .filter(|r| !EXPECTED.contains(&r.as_str()))
        .collect();
    assert!(
        unexpected.is_empty(),
        "unexpected drop reasons: {reasons:?}"
    );
    assert!(reasons.get("spoofed_source_ip").copied().unwrap_or(0) > 0);
}
