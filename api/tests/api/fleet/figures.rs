//! The fleet's figures for bench/README.md (ignored: they take a while
//! and print numbers, they do not check them):
//!
//! ```text
//! cargo test -p api --test api fleet::figures -- --ignored --nocapture --test-threads 1
//! ```
//!
//! - convergence: from one V2P write to every host having applied it,
//!   p50/p99 over 200 writes, at 20 and 100 hosts;
//! - one host's initial sync of 100 000 V2P mappings and 1 000 ports;
//! - the update rate the fleet sustains with 100 hosts watching.

use super::etcd::Cluster;
use super::world::*;
use super::{j, vni};
use api::fleet::admin::Store;
use api::fleet::keys;
use api::server::HostLimits;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

fn one_port_each(store: &mut Store, n: usize) -> i64 {
    let kvs = (0..n)
        .map(|i| {
            let name = format!("vm{i}-0");
            (
                keys::port(&format!("h{i}"), &name),
                j(&port_json(&name, guest_ip(i, 0), guest_mac(i, 0))),
            )
        })
        .collect();
    store.put_many(kvs).unwrap()
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn convergence(n: usize) {
    let Some(cluster) = Cluster::start(3, &format!("conv{n}")) else {
        return;
    };
    let eps = cluster.endpoints();
    let world = World::start(n, &eps, HostLimits::default());
    let mut store = Store::connect(&eps).unwrap();
    let rev = one_port_each(&mut store, n);
    world.wait_all(Duration::from_secs(60), "ports", |h| {
        h.agent.applied_revision() >= rev
    });
    let mut samples = Vec::new();
    for k in 0..200usize {
        let ip = Ipv4Addr::new(10, 220, (k / 250) as u8, (k % 250) as u8);
        let to = host_ip(k % n);
        let v = j(&v2p_json(VNI, ip, [0xa8, 0x40, 0x25, 220, 0, 1], to));
        let t0 = Instant::now();
        store.put_raw(&keys::v2p(vni(VNI), ip.into()), v).unwrap();
        let deadline = t0 + Duration::from_secs(10);
        while !world.hosts.iter().all(|h| v2p_host(h, VNI, ip) == Some(to)) {
            assert!(Instant::now() < deadline, "write {k} did not converge");
            std::thread::sleep(Duration::from_micros(200));
        }
        samples.push(t0.elapsed());
    }
    samples.sort();
    println!(
        "FIGURE convergence {n} hosts: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms (200 writes, 3-member etcd)",
        pct(&samples, 0.5).as_secs_f64() * 1e3,
        pct(&samples, 0.99).as_secs_f64() * 1e3,
        samples[samples.len() - 1].as_secs_f64() * 1e3,
    );
}

#[test]
#[ignore]
fn figures_convergence_20_hosts() {
    convergence(20);
}

#[test]
#[ignore]
fn figures_convergence_100_hosts() {
    convergence(100);
}

#[test]
#[ignore]
fn figures_initial_sync_of_100k_v2p_and_1000_ports() {
    let Some(cluster) = Cluster::start(1, "sync") else {
        return;
    };
    let eps = cluster.endpoints();
    let mut store = Store::connect(&eps).unwrap();
    let mut kvs = Vec::new();
    for p in 0..1000usize {
        let name = format!("p{p}");
        let ip = Ipv4Addr::new(10, 250, (p / 250) as u8, (p % 250) as u8 + 1);
        let mac = [0xa8, 0x40, 0x25, 250, (p >> 8) as u8, p as u8];
        kvs.push((keys::port("h0", &name), j(&port_json(&name, ip, mac))));
    }
    for k in 0..100_000u32 {
        let ip = Ipv4Addr::from(0x0a00_0000 + 0x1_0000 + k);
        let mac = [0xa8, 0x40, 0x26, (k >> 16) as u8, (k >> 8) as u8, k as u8];
        kvs.push((
            keys::v2p(vni(VNI), ip.into()),
            j(&v2p_json(VNI, ip, mac, host_ip(1 + (k as usize % 50)))),
        ));
    }
    let t = Instant::now();
    let rev = store.put_many(kvs).unwrap();
    println!("(written in {:.1} s)", t.elapsed().as_secs_f64());
    let t0 = Instant::now();
    let world = World::start(1, &eps, HostLimits::default());
    let h = &world.hosts[0];
    let deadline = t0 + Duration::from_secs(120);
    while h.agent.applied_revision() < rev {
        assert!(
            Instant::now() < deadline,
            "no sync: {:?}",
            h.agent.last_error()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let took = t0.elapsed();
    assert_eq!(h.sluice.host().v2p.len(), 100_000);
    assert_eq!(h.sluice.list_ports().unwrap().len(), 1000);
    println!(
        "FIGURE initial sync of 100000 V2P + 1000 ports: {:.2} s (host start to applied)",
        took.as_secs_f64()
    );
}

#[test]
#[ignore]
fn figures_sustained_update_rate_with_100_hosts() {
    let Some(cluster) = Cluster::start(3, "rate") else {
        return;
    };
    let eps = cluster.endpoints();
    let world = World::start(100, &eps, HostLimits::default());
    let mut store = Store::connect(&eps).unwrap();
    let rev = one_port_each(&mut store, 100);
    world.wait_all(Duration::from_secs(60), "ports", |h| {
        h.agent.applied_revision() >= rev
    });
    // 20 000 mappings in transactions of 128, as fast as etcd takes them.
    const N: u32 = 20_000;
    let kvs: Vec<(String, Vec<u8>)> = (0..N)
        .map(|k| {
            let ip = Ipv4Addr::from(0x0a00_0000 + 0x2_0000 + k);
            let mac = [0xa8, 0x40, 0x27, (k >> 16) as u8, (k >> 8) as u8, k as u8];
            (
                keys::v2p(vni(VNI), ip.into()),
                j(&v2p_json(VNI, ip, mac, host_ip(k as usize % 100))),
            )
        })
        .collect();
    let t0 = Instant::now();
    let last = store.put_many(kvs).unwrap();
    let written = t0.elapsed();
    world.wait_all(Duration::from_secs(300), "the stream", |h| {
        h.agent.applied_revision() >= last
    });
    let took = t0.elapsed();
    println!(
        "FIGURE sustained rate, 100 hosts watching: {:.0} mappings/s applied by every host \
         ({N} in {:.2} s; etcd took the writes in {:.2} s = {:.0}/s)",
        f64::from(N) / took.as_secs_f64(),
        took.as_secs_f64(),
        written.as_secs_f64(),
        f64::from(N) / written.as_secs_f64()
    );
}
