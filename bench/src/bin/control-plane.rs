//! Control-plane speed through the real HTTP API of a simulated host
//! (the real control plane, workers and engine; in-memory devices):
//! V2P mappings per second in bulk calls, and the time to replace a
//! firewall rule set of N rules atomically (one call, one job on the
//! port's worker), each persisted before the call returns, as sluiced
//! does. Prints `name: value` lines.
//!
//!   cargo run --release -p bench --bin control-plane -- [--v2p N] [--rules N] [--rounds R]

use api::serve::SimHost;
use serde_json::{json, Value};
use std::time::Instant;

fn arg(name: &str, default: usize) -> usize {
    let a: Vec<String> = std::env::args().collect();
    a.iter()
        .position(|x| x == name)
        .and_then(|i| a.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn put(h: &SimHost, path: &str, body: Value) -> f64 {
    let t = Instant::now();
    let r = ureq::put(&format!("{}{path}", h.url()))
        .set("Authorization", &format!("Bearer {}", h.token))
        .send_json(body);
    if let Err(e) = r {
        eprintln!("PUT {path}: {e}");
        std::process::exit(1);
    }
    t.elapsed().as_secs_f64()
}

fn main() {
    let n_v2p = arg("--v2p", 100_000);
    let n_rules = arg("--rules", 10_000);
    let rounds = arg("--rounds", 3).max(1);
    // Persisting, as sluiced does: every call is saved (write, fsync,
    // rename) before it returns, and that is part of what is measured.
    let dir = std::env::temp_dir().join(format!("sluice-cp-bench-{}", std::process::id()));
    let h = SimHost::start(Some(&dir), 1).unwrap_or_else(|e| panic!("simulated host: {e}"));
    let mut best_v2p = f64::MAX;
    for r in 0..rounds {
        let mappings: Vec<Value> = (0..n_v2p as u32)
            .map(|i| json!({ "vni": 7777 + r as u32, "ip": format!("10.{}.{}.{}", i / 65536, (i / 256) % 256, i % 256), "guest_mac": "a8:40:25:00:10:01", "host": "fd00:99::b" }))
            .collect();
        best_v2p = best_v2p.min(put(&h, "/v2p", json!({ "mappings": mappings })));
    }
    println!("v2p_bulk_entries: {n_v2p}");
    println!("v2p_bulk_seconds: {best_v2p:.3}");
    println!("v2p_entries_per_second: {:.0}", n_v2p as f64 / best_v2p);

    let vm = json!({
        "config": { "name": "vm1", "guest_mac": "a8:40:25:00:00:05", "gateway_mac": "a8:40:25:ff:ff:01", "vni": 7777,
                    "ipv4": { "addr": "10.0.0.5", "subnet": "10.0.0.0/24", "gateway": "10.0.0.1" } },
        "guest": { "kind": "none" }
    });
    if let Err(e) = ureq::post(&format!("{}/ports", h.url()))
        .set("Authorization", &format!("Bearer {}", h.token))
        .send_json(vm)
    {
        eprintln!("POST /ports: {e}");
        std::process::exit(1);
    }
    let mut best_fw = f64::MAX;
    for r in 0..rounds {
        let rules: Vec<Value> = (0..n_rules as u32)
            .map(|i| json!({ "direction": "in", "priority": i % 1000, "action": if (i + r as u32).is_multiple_of(2) { "allow" } else { "deny" }, "protocol": "udp", "hosts": { "ip": format!("192.0.{}.{}", (i / 256) % 256, i % 256) }, "ports": { "list": [10000 + (i % 5000) as u16] } }))
            .collect();
        best_fw = best_fw.min(put(&h, "/ports/vm1/firewall", json!({ "rules": rules })));
    }
    println!("fw_rules: {n_rules}");
    println!("fw_replace_seconds: {best_fw:.3}");
    println!("fw_rules_per_second: {:.0}", n_rules as f64 / best_fw);
    drop(h);
    let _ = std::fs::remove_dir_all(&dir);
}
