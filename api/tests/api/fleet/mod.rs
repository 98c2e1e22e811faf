//! Fleet mode against a real etcd (issue 18): hosts list and watch their
//! desired state and apply it through the API's own code; traffic moves
//! between ports on different hosts over an in-memory underlay; a VM
//! move is followed by its established flows; leader and member kills
//! lose no acknowledged change; a host cut off past a compaction
//! converges by listing again without touching its flows; bad keys are
//! refused alone; `sluiced` in fleet mode, `sluiceadm --etcd` and
//! `fleet-status` end to end.

mod etcd;
mod figures;
mod sluiced;
mod world;

use api::fleet::admin::Store;
use api::fleet::keys;
use api::server::HostLimits;
use dataplane::Vni;
use etcd::Cluster;
use sluice_test_support::build::{udp, Tcp};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};
use world::*;

fn vni(v: u32) -> Vni {
    Vni::new(v).unwrap()
}

fn j(v: &serde_json::Value) -> Vec<u8> {
    serde_json::to_vec(v).unwrap()
}

/// Ports vm<i>-0 on every host (and vm<i>-1 on even ones), each with
/// its V2P mapping, in one batch of writes. Returns its revision.
fn program_vpc(store: &mut Store, n: usize) -> (i64, Vec<(usize, usize)>) {
    let mut kvs = Vec::new();
    let mut guests = Vec::new();
    for i in 0..n {
        for slot in 0..(1 + usize::from(i % 2 == 0)) {
            let name = format!("vm{i}-{slot}");
            let (ip, mac) = (guest_ip(i, slot), guest_mac(i, slot));
            kvs.push((
                keys::port(&format!("h{i}"), &name),
                j(&port_json(&name, ip, mac)),
            ));
            kvs.push((
                keys::v2p(vni(VNI), ip.into()),
                j(&v2p_json(VNI, ip, mac, host_ip(i))),
            ));
            guests.push((i, slot));
        }
    }
    (store.put_many(kvs).unwrap(), guests)
}

fn addr(ip: Ipv4Addr, port: u16) -> SocketAddr {
    SocketAddr::from((ip, port))
}

fn got_payload(frames: &[Vec<u8>], payload: &[u8]) -> bool {
    frames.iter().any(|f| f.ends_with(payload))
}

#[test]
fn a_vpc_over_twenty_hosts_passes_traffic_follows_a_move_and_refuses_bad_keys() {
    let Some(cluster) = Cluster::start(3, "vpc") else {
        return;
    };
    let eps = cluster.endpoints();
    let world = World::start(20, &eps, HostLimits::default());
    let mut store = Store::connect(&eps).unwrap();
    world.wait_all(Duration::from_secs(30), "first sync", |h| {
        h.agent.applied_revision() > 0
    });

    let (rev, guests) = program_vpc(&mut store, 20);
    // A VPC only h0 has a port in: nobody else programs its V2P.
    let mut other = port_json(
        "other",
        Ipv4Addr::new(10, 9, 0, 5),
        [0xa8, 0x40, 0x25, 9, 0, 5],
    );
    other["config"]["vni"] = 8888.into();
    store
        .put_raw(&keys::port("h0", "other"), j(&other))
        .unwrap();
    let other_ip = Ipv4Addr::new(10, 9, 0, 6);
    let rev = rev.max(
        store
            .put_raw(
                &keys::v2p(vni(8888), other_ip.into()),
                j(&v2p_json(
                    8888,
                    other_ip,
                    [0xa8, 0x40, 0x25, 9, 0, 6],
                    host_ip(0),
                )),
            )
            .unwrap(),
    );
    world.wait_all(Duration::from_secs(30), "the VPC programmed", |h| {
        h.agent.applied_revision() >= rev
            && guests
                .iter()
                .all(|&(i, s)| v2p_host(h, VNI, guest_ip(i, s)) == Some(host_ip(i)))
    });
    assert_eq!(v2p_host(&world.hosts[0], 8888, other_ip), Some(host_ip(0)));
    for h in &world.hosts[1..] {
        assert_eq!(
            v2p_host(h, 8888, other_ip),
            None,
            "{} has VNI 8888's V2P",
            h.name
        );
    }
    for (i, h) in world.hosts.iter().enumerate() {
        let n = h.sluice.list_ports().unwrap().len();
        assert_eq!(
            n,
            1 + usize::from(i % 2 == 0) + usize::from(i == 0),
            "{}",
            h.name
        );
    }

    // UDP from h0's guest to h5's, through both ports and the underlay.
    let (a, b) = (&world.hosts[0], &world.hosts[5]);
    let f = udp(
        (guest_mac(0, 0), GW_MAC),
        addr(guest_ip(0, 0), 4000),
        addr(guest_ip(5, 0), 5000),
        b"across-hosts",
    );
    send(a, "vm0-0", &f);
    let got = recv(b, "vm5-0", Duration::from_secs(3));
    assert!(got_payload(&got, b"across-hosts"), "h5's guest got {got:?}");

    // A TCP connection vm1-0 (h1) -> vm2-0 (h2), established.
    let (ma, mb) = (guest_mac(1, 0), guest_mac(2, 0));
    let (sa, sb) = (addr(guest_ip(1, 0), 40000), addr(guest_ip(2, 0), 22));
    let (h1, h2, h3) = (&world.hosts[1], &world.hosts[2], &world.hosts[3]);
    send(
        h1,
        "vm1-0",
        &Tcp::new((ma, GW_MAC), sa, sb).seq(1000).flags("S").build(),
    );
    assert!(
        !recv(h2, "vm2-0", Duration::from_secs(3)).is_empty(),
        "no SYN at h2"
    );
    let synack = Tcp::new((mb, GW_MAC), sb, sa)
        .seq(5000)
        .flags_acking("SA", 1001)
        .build();
    send(h2, "vm2-0", &synack);
    assert!(
        !recv(h1, "vm1-0", Duration::from_secs(3)).is_empty(),
        "no SYN-ACK at h1"
    );
    let data = |p: &'static [u8], seq: u32| {
        Tcp::new((ma, GW_MAC), sa, sb)
            .seq(seq)
            .flags_acking("A", 5001)
            .payload(p)
            .build()
    };
    send(h1, "vm1-0", &data(b"before-move", 1001));
    assert!(got_payload(
        &recv(h2, "vm2-0", Duration::from_secs(3)),
        b"before-move"
    ));
    let flows_before = h1.sluice.dump_tcp_flows("vm1-0").unwrap();
    assert_eq!(flows_before.len(), 1, "{flows_before:?}");

    // The VM moves to h3: its port there, its V2P to h3.
    store.delete_raw(&keys::port("h2", "vm2-0")).unwrap();
    store
        .put_raw(
            &keys::port("h3", "vm2-0"),
            j(&port_json("vm2-0", guest_ip(2, 0), mb)),
        )
        .unwrap();
    store
        .put_raw(
            &keys::v2p(vni(VNI), guest_ip(2, 0).into()),
            j(&v2p_json(VNI, guest_ip(2, 0), mb, host_ip(3))),
        )
        .unwrap();
    world.wait_all(Duration::from_secs(10), "the move", |h| {
        v2p_host(h, VNI, guest_ip(2, 0)) == Some(host_ip(3))
    });
    assert!(
        h2.sluice.get_port("vm2-0").is_err(),
        "h2 kept the moved port"
    );
    assert!(h3.sluice.get_port("vm2-0").is_ok(), "h3 has no moved port");
    // The established flow follows: same flow on h1, now to h3.
    send(h1, "vm1-0", &data(b"after-move", 1012));
    let got = recv(h3, "vm2-0", Duration::from_secs(3));
    assert!(got_payload(&got, b"after-move"), "h3's guest got {got:?}");
    let flows_after = h1.sluice.dump_tcp_flows("vm1-0").unwrap();
    assert_eq!(flows_after.len(), 1, "{flows_after:?}");
    assert_eq!(
        flows_after[0].flow, flows_before[0].flow,
        "the flow was remade"
    );
    assert!(flows_after[0].packets_out > flows_before[0].packets_out);

    // Bad desired state, written straight into etcd.
    let bad_json = keys::v2p(vni(VNI), "10.99.0.1".parse().unwrap());
    store.put_raw(&bad_json, "{not json").unwrap();
    let bad_field = keys::port("h4", "vm-bad");
    let mut v = port_json(
        "vm-bad",
        Ipv4Addr::new(10, 99, 0, 3),
        [0xa8, 0x40, 0x25, 99, 0, 3],
    );
    v["config"]["mtu"] = 70000.into();
    store.put_raw(&bad_field, j(&v)).unwrap();
    let ghost = keys::port("ghost", "vm-ghost");
    store
        .put_raw(
            &ghost,
            j(&port_json("vm-ghost", Ipv4Addr::new(10, 99, 0, 4), [2; 6])),
        )
        .unwrap();
    // ... and everything else keeps working.
    let good = Ipv4Addr::new(10, 99, 0, 2);
    store
        .put_raw(
            &keys::v2p(vni(VNI), good.into()),
            j(&v2p_json(
                VNI,
                good,
                [0xa8, 0x40, 0x25, 99, 0, 2],
                host_ip(7),
            )),
        )
        .unwrap();
    world.wait_all(Duration::from_secs(10), "a good key after bad ones", |h| {
        v2p_host(h, VNI, good) == Some(host_ip(7))
    });
    for h in &world.hosts {
        let st = h.agent.status();
        let r = st.refused.iter().find(|r| r.key == bad_json);
        assert!(
            r.is_some(),
            "{} did not refuse {bad_json}: {:?}",
            h.name,
            st.refused
        );
        assert_eq!(v2p_host(h, VNI, "10.99.0.1".parse().unwrap()), None);
    }
    let st = world.hosts[4].agent.status();
    let r = st
        .refused
        .iter()
        .find(|r| r.key == bad_field)
        .expect("h4 refuses vm-bad");
    assert!(r.error.contains("mtu"), "{}", r.error);
    assert!(world.hosts[4].sluice.get_port("vm-bad").is_err());
    // fleet-status: every host alive and caught up, the ghost's key named.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let fs = store.fleet_status().unwrap();
        assert!(
            fs.unknown_host_keys.iter().any(|r| r.key == ghost),
            "{:?}",
            fs.unknown_host_keys
        );
        let caught_up =
            fs.hosts.len() == 20 && fs.hosts.iter().all(|h| h.alive && h.lag == Some(0));
        if caught_up {
            let h4 = fs.hosts.iter().find(|h| h.host == "h4").unwrap();
            let refused = &h4.status.as_ref().unwrap().refused;
            assert!(refused.iter().any(|r| r.key == bad_field), "{refused:?}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "fleet-status never caught up: {:?}",
            fs.hosts
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(world);
    drop(cluster);
}

#[test]
fn killing_the_leader_then_a_second_member_loses_no_acknowledged_change() {
    let Some(mut cluster) = Cluster::start(3, "quorum") else {
        return;
    };
    let eps = cluster.endpoints();
    let world = World::start(20, &eps, HostLimits::default());
    let mut store = Store::connect(&eps).unwrap();
    let (rev, _) = program_vpc(&mut store, 20);
    world.wait_all(Duration::from_secs(30), "the VPC programmed", |h| {
        h.agent.applied_revision() >= rev
    });

    // A stream of changes; each is retried until acknowledged, within
    // a bounded time. Mapping k goes to host k % 20.
    const CHANGES: usize = 300;
    let acked = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let writer = {
        let (eps, acked) = (eps.clone(), std::sync::Arc::clone(&acked));
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(90);
            let mut store: Option<Store> = None;
            let mut k = 0;
            while k < CHANGES && Instant::now() < deadline {
                let ip = Ipv4Addr::new(10, 200, (k / 250) as u8, (k % 250) as u8);
                let v = j(&v2p_json(
                    VNI,
                    ip,
                    [0xa8, 0x40, 0x25, 200, 0, 1],
                    host_ip(k % 20),
                ));
                let s = match store.as_mut() {
                    Some(s) => s,
                    None => match Store::connect(&eps) {
                        Ok(s) => store.insert(s),
                        Err(_) => {
                            std::thread::sleep(Duration::from_millis(100));
                            continue;
                        }
                    },
                };
                match s.put_raw(&keys::v2p(vni(VNI), ip.into()), v) {
                    Ok(_) => {
                        k += 1;
                        acked.store(k, std::sync::atomic::Ordering::Release);
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Err(_) => {
                        store = None;
                        std::thread::sleep(Duration::from_millis(100));
                    }
                }
            }
            k
        })
    };
    let wait_acked = |n: usize| {
        let deadline = Instant::now() + Duration::from_secs(60);
        while acked.load(std::sync::atomic::Ordering::Acquire) < n {
            assert!(Instant::now() < deadline, "the writer is stuck below {n}");
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    wait_acked(50);
    let leader = cluster.leader().expect("a leader");
    cluster.kill(leader);
    wait_acked(100);
    let second = (0..3).find(|&i| i != leader).unwrap();
    cluster.kill(second);
    // No quorum: nothing is acknowledged for a while.
    std::thread::sleep(Duration::from_secs(2));
    let during = acked.load(std::sync::atomic::Ordering::Acquire);
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        acked.load(std::sync::atomic::Ordering::Acquire),
        during,
        "a write was acknowledged without a quorum"
    );
    cluster.restart(leader);
    let done = writer.join().unwrap();
    assert_eq!(done, CHANGES, "the writer gave up after {done} changes");
    cluster.restart(second);
    world.wait_all(Duration::from_secs(60), "every acknowledged change", |h| {
        (0..CHANGES).all(|k| {
            let ip = Ipv4Addr::new(10, 200, (k / 250) as u8, (k % 250) as u8);
            v2p_host(h, VNI, ip) == Some(host_ip(k % 20))
        })
    });
}

#[test]
fn a_host_cut_off_past_a_compaction_lists_again_and_keeps_its_flows() {
    let Some(cluster) = Cluster::start(1, "compact") else {
        return;
    };
    let eps = cluster.endpoints();
    let world = World::start(4, &eps, HostLimits::default());
    let mut store = Store::connect(&eps).unwrap();
    let (rev, _) = program_vpc(&mut store, 4);
    world.wait_all(Duration::from_secs(30), "the VPC programmed", |h| {
        h.agent.applied_revision() >= rev
    });
    let (h0, h1) = (&world.hosts[0], &world.hosts[1]);
    // vm0-0 (h0) -> vm1-0 (h1), established.
    let (ma, mb) = (guest_mac(0, 0), guest_mac(1, 0));
    let (sa, sb) = (addr(guest_ip(0, 0), 40001), addr(guest_ip(1, 0), 80));
    send(
        h0,
        "vm0-0",
        &Tcp::new((ma, GW_MAC), sa, sb).seq(1).flags("S").build(),
    );
    assert!(
        !recv(h1, "vm1-0", Duration::from_secs(3)).is_empty(),
        "no SYN at h1"
    );
    let synack = Tcp::new((mb, GW_MAC), sb, sa)
        .seq(100)
        .flags_acking("SA", 2)
        .build();
    send(h1, "vm1-0", &synack);
    assert!(
        !recv(h0, "vm0-0", Duration::from_secs(3)).is_empty(),
        "no SYN-ACK at h0"
    );
    let before = h1.sluice.dump_tcp_flows("vm1-0").unwrap();
    assert_eq!(before.len(), 1, "{before:?}");
    let relists = h1.agent.relists();

    h1.agent.set_connected(false);
    std::thread::sleep(Duration::from_millis(300));
    // Changes h1 misses: a new port of its own, new mappings, and one
    // mapping made and removed again.
    store
        .put_raw(
            &keys::port("h1", "vm1-9"),
            j(&port_json("vm1-9", guest_ip(1, 9), guest_mac(1, 9))),
        )
        .unwrap();
    for k in 0..20u8 {
        let ip = Ipv4Addr::new(10, 50, 0, k);
        store
            .put_raw(
                &keys::v2p(vni(VNI), ip.into()),
                j(&v2p_json(VNI, ip, [0xa8, 0x40, 0x25, 50, 0, k], host_ip(2))),
            )
            .unwrap();
    }
    store
        .delete_raw(&keys::v2p(vni(VNI), Ipv4Addr::new(10, 50, 0, 0).into()))
        .unwrap();
    // And a bad value for the port whose flow we watch: refused, its last
    // good value stays.
    let vm1_key = keys::port("h1", "vm1-0");
    store.put_raw(&vm1_key, "{\"config\": 5}").unwrap();
    let now = store.revision().unwrap();
    store.compact(now).unwrap();
    let cut_at = h1.agent.applied_revision();
    assert!(cut_at < now);
    eprintln!("h1 cut off at {cut_at}, compacted at {now}");

    h1.agent.set_connected(true);
    let deadline = Instant::now() + Duration::from_secs(15);
    while h1.agent.applied_revision() < now {
        assert!(
            Instant::now() < deadline,
            "h1 did not catch up: {:?}",
            h1.agent.last_error()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(
        h1.agent.relists(),
        relists + 1,
        "h1 did not list again (sessions {}, last error {:?}, applied {}, compacted at {now})",
        h1.agent.sessions(),
        h1.agent.last_error(),
        h1.agent.applied_revision()
    );
    assert!(h1.sluice.get_port("vm1-9").is_ok());
    let refused = h1.agent.status().refused;
    assert!(refused.iter().any(|r| r.key == vm1_key), "{refused:?}");
    assert_eq!(v2p_host(h1, VNI, Ipv4Addr::new(10, 50, 0, 0)), None);
    for k in 1..20u8 {
        assert_eq!(
            v2p_host(h1, VNI, Ipv4Addr::new(10, 50, 0, k)),
            Some(host_ip(2))
        );
    }
    // The established flow is the same one and still passes.
    let after = h1.sluice.dump_tcp_flows("vm1-0").unwrap();
    assert_eq!(after.len(), 1, "{after:?}");
    assert_eq!(after[0].flow, before[0].flow, "the flow was flushed");
    let data = Tcp::new((ma, GW_MAC), sa, sb)
        .seq(2)
        .flags_acking("A", 101)
        .payload(b"after-relist")
        .build();
    send(h0, "vm0-0", &data);
    assert!(got_payload(
        &recv(h1, "vm1-0", Duration::from_secs(3)),
        b"after-relist"
    ));
    let again = h1.sluice.dump_tcp_flows("vm1-0").unwrap();
    assert_eq!(again[0].flow, before[0].flow);
    assert!(again[0].packets_in > before[0].packets_in);
}
