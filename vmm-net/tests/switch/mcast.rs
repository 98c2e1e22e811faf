//! Multicast through the switches of three hosts: a guest's datagram to
//! an overlay group reaches the subscribed ports on its own host and, per
//! the group's forwarding table, the other hosts' subscribers, by the
//! underlay group (`underlay`), head-end unicast copies (`external`) or
//! both; source filters (RFC 3376 §3.1 INCLUDE), unsubscribing
//! mid-stream, and neither unmapped groups nor other VNIs get anything.

use super::*;
use overlay::mcast::{McastTables, Member, Membership, Replication};

const GROUP: &str = "239.1.1.1";
const UNDERLAY_GROUP: &str = "ff04::1:1";
const OTHER_VNI: u32 = 8888;

fn vni(v: u32) -> Vni {
    Vni::new(v).unwrap()
}

fn guest_ip(last: u8) -> IpAddr {
    format!("10.0.0.{}", 10 + last).parse().unwrap()
}

/// A UDP datagram from guest `last` to `group`.
fn to_group(last: u8, group: &str) -> Vec<u8> {
    let g: IpAddr = group.parse().unwrap();
    sluice_test_support::build::udp(
        (mac(last), overlay::mcast::group_mac(g)),
        (guest_ip(last), 5000).into(),
        (g, 6000).into(),
        b"to the group",
    )
}

fn member(port: &str, sources: &[u8]) -> Member {
    Member {
        port: port.into(),
        membership: Membership {
            sources: sources.iter().map(|&l| guest_ip(l)).collect(),
        },
    }
}

/// Three hosts: a holds vm1 (the sender), vm2 (subscribed), vm3 (not);
/// b holds vm4 (subscribed), vm5 (not); c holds vm6 (subscribed to vm2's
/// datagrams only) and vm7 (subscribed).
struct Fabric {
    cloud: Cloud,
    up: [Wire; 3],
    sw: [Switch; 3],
    vms: Vec<Wire>,
}

impl Fabric {
    fn new() -> Fabric {
        let cloud = Cloud::new();
        let up = [Wire::new(), Wire::new(), Wire::new()];
        let mut sw = [
            Switch::new(host_ip('a'), Box::new(up[0].backend())),
            Switch::new(host_ip('b'), Box::new(up[1].backend())),
            Switch::new(host_ip('c'), Box::new(up[2].backend())),
        ];
        for s in &mut sw {
            s.set_mcast(cloud.mcast.clone(), [2, 0, 0, 0, 0, 0x20]);
        }
        let mut vms = vec![Wire::new()]; // vm0: unused
        for (h, lasts) in [('a', 1..=3), ('b', 4..=5), ('c', 6..=7)] {
            let i = (h as u8 - b'a') as usize;
            for last in lasts {
                vms.push(cloud.guest(&mut sw[i], h, last));
            }
        }
        Fabric { cloud, up, sw, vms }
    }

    /// Publishes the group with `members` and next hops b and c, both
    /// reached by `r`.
    fn publish(&self, members: Vec<Member>, r: Replication) {
        let (v, g) = (vni(VPC), GROUP.parse().unwrap());
        let mut t = McastTables::default();
        t.m2p.insert((v, g), UNDERLAY_GROUP.parse().unwrap());
        t.members.insert((v, g), members);
        let hops = t.fwd.entry((v, g)).or_default();
        hops.insert(host_ip('b'), r);
        hops.insert(host_ip('c'), r);
        self.cloud.mcast.publish(t);
    }

    fn all_members(&self, r: Replication) {
        self.publish(
            vec![
                member("vm2", &[]),
                member("vm4", &[]),
                member("vm6", &[2]),
                member("vm7", &[]),
            ],
            r,
        );
    }

    /// vm1 sends one datagram; returns what host a put on the underlay.
    fn send(&mut self, last: u8) -> Vec<Vec<u8>> {
        self.vms[usize::from(last)].send(&to_group(last, GROUP));
        self.sw[0].poll().unwrap();
        self.up[0].take()
    }

    /// Delivers underlay frames: a group frame to every host that is not
    /// the sender (the underlay's multicast), a unicast one to its host.
    fn carry(&mut self, frames: &[Vec<u8>]) {
        let group: Ipv6Addr = UNDERLAY_GROUP.parse().unwrap();
        for f in frames {
            let dst = Ipv6Addr::from(<[u8; 16]>::try_from(&f[38..54]).unwrap());
            for (i, h) in ['a', 'b', 'c'].into_iter().enumerate() {
                if (dst == group && i != 0) || dst == host_ip(h) {
                    self.up[i].send(f);
                }
            }
        }
        for s in &mut self.sw[1..] {
            s.poll().unwrap();
        }
    }

    /// How many frames each guest received since the last look (index by
    /// guest number; 0 unused).
    fn received(&self) -> Vec<usize> {
        self.vms.iter().map(|w| w.take().len()).collect()
    }
}

fn outer_dst(f: &[u8]) -> Ipv6Addr {
    Ipv6Addr::from(<[u8; 16]>::try_from(&f[38..54]).unwrap())
}

#[test]
fn underlay_replication_reaches_every_subscriber_once() {
    let mut f = Fabric::new();
    f.all_members(Replication::Underlay);
    let wire = f.send(1);
    // One copy on the wire whatever the number of next hops, to the
    // underlay group's MAC (RFC 2464 §7).
    assert_eq!(wire.len(), 1, "{:?}", f.sw[0].stats());
    assert_checksums(&wire[0]);
    assert_eq!(
        outer_dst(&wire[0]),
        UNDERLAY_GROUP.parse::<Ipv6Addr>().unwrap()
    );
    assert_eq!(&wire[0][0..6], &[0x33, 0x33, 0, 1, 0, 1]);
    f.carry(&wire);
    // vm2 (same host) and vm4, vm7; not vm1 (the sender), vm3 and vm5
    // (not subscribed), nor vm6 (its filter admits vm2 only).
    assert_eq!(f.received(), vec![0, 0, 1, 0, 1, 0, 0, 1]);
    assert_eq!(f.sw[0].stats().mcast_local, 1);
    assert_eq!(f.sw[0].stats().mcast_underlay, 1);
    assert_eq!(f.sw[2].stats().mcast_filtered, 1);
    // A member sees the datagram from the gateway, to the group's MAC.
    f.send(1);
    let got = f.vms[2].take();
    assert_eq!(&got[0][0..6], &[0x01, 0, 0x5e, 1, 1, 1]);
    assert_eq!(&got[0][6..12], &GW_MAC);
    assert_checksums(&got[0]);
}

#[test]
fn a_source_filter_admits_its_sources() {
    let mut f = Fabric::new();
    f.all_members(Replication::Underlay);
    // From vm2: vm6 takes it now, and vm2 (the sender) does not.
    let wire = f.send(2);
    f.carry(&wire);
    assert_eq!(f.received(), vec![0, 0, 0, 0, 1, 0, 1, 1]);
}

#[test]
fn head_end_replication_sends_one_unicast_copy_per_host() {
    let mut f = Fabric::new();
    f.all_members(Replication::External);
    let wire = f.send(1);
    let mut dsts: Vec<Ipv6Addr> = wire.iter().map(|w| outer_dst(w)).collect();
    dsts.sort();
    assert_eq!(dsts, vec![host_ip('b'), host_ip('c')]);
    for w in &wire {
        assert_checksums(w);
        assert_eq!(&w[0..6], &[2, 0, 0, 0, 0, 0x20], "the next hop's MAC");
    }
    f.carry(&wire);
    assert_eq!(f.received(), vec![0, 0, 1, 0, 1, 0, 0, 1]);
    assert_eq!(f.sw[0].stats().mcast_unicast, 2);
    assert_eq!(f.sw[0].stats().mcast_underlay, 0);
}

#[test]
fn both_sends_the_group_copy_and_the_unicast_ones() {
    let mut f = Fabric::new();
    f.all_members(Replication::Both);
    let wire = f.send(1);
    assert_eq!(wire.len(), 3);
    let groups = wire
        .iter()
        .filter(|w| outer_dst(w) == UNDERLAY_GROUP.parse::<Ipv6Addr>().unwrap())
        .count();
    assert_eq!(groups, 1);
    f.carry(&wire);
    // Each remote member gets the group copy and its host's unicast one:
    // `both` is for an underlay that is part multicast, part not.
    assert_eq!(f.received(), vec![0, 0, 1, 0, 2, 0, 0, 2]);
}

#[test]
fn unsubscribing_mid_stream_stops_the_copies() {
    let mut f = Fabric::new();
    f.all_members(Replication::Underlay);
    let wire = f.send(1);
    f.carry(&wire);
    assert_eq!(f.received(), vec![0, 0, 1, 0, 1, 0, 0, 1]);
    // vm4 and vm2 leave; the flow vm1 set up keeps going.
    f.publish(
        vec![member("vm6", &[2]), member("vm7", &[])],
        Replication::Underlay,
    );
    let wire = f.send(1);
    f.carry(&wire);
    assert_eq!(f.received(), vec![0, 0, 0, 0, 0, 0, 0, 1]);
    // The group loses its M2P entry: dropped at the sender's port.
    f.cloud.mcast.publish(McastTables::default());
    assert!(f.send(1).is_empty());
    assert_eq!(f.received(), vec![0; 8]);
    let drops = f.sw[0].port("vm1").unwrap().port.stats().drop_counts();
    assert!(
        drops.iter().any(|(n, c)| *n == "multicast" && *c == 1),
        "{drops:?}"
    );
}

#[test]
fn unmapped_groups_and_other_vnis_get_nothing() {
    let mut f = Fabric::new();
    f.all_members(Replication::Both);
    // A group without M2P: dropped as before, counted.
    f.vms[1].send(&to_group(1, "239.9.9.9"));
    f.sw[0].poll().unwrap();
    assert!(f.up[0].take().is_empty());
    assert_eq!(f.received(), vec![0; 8]);
    // The same group in another VNI, with vm3 as its member: vm3 (on
    // VPC) never sees VPC's datagrams through it.
    let mut t = McastTables::default();
    let g: IpAddr = GROUP.parse().unwrap();
    for v in [VPC, OTHER_VNI] {
        t.m2p.insert((vni(v), g), UNDERLAY_GROUP.parse().unwrap());
    }
    t.members
        .insert((vni(OTHER_VNI), g), vec![member("vm3", &[])]);
    f.cloud.mcast.publish(t);
    assert!(f.send(1).is_empty(), "no forwarding entries: no wire copy");
    assert_eq!(f.received(), vec![0; 8]);
    // A tunnel of the other VNI to the group is not delivered to VPC's
    // ports either (vm3's port takes only its own VNI).
    let inner = to_group(1, GROUP);
    let mut wire =
        sluice_test_support::Geneve::new(host_ip('b'), UNDERLAY_GROUP.parse().unwrap(), OTHER_VNI)
            .wrap(&inner);
    fill_outer_udp(&mut wire);
    f.up[0].send(&wire);
    f.sw[0].poll().unwrap();
    assert_eq!(f.received(), vec![0; 8]);
}

#[test]
fn a_group_tunnel_this_host_does_not_carry_is_refused() {
    let mut f = Fabric::new();
    f.all_members(Replication::Underlay);
    let inner = to_group(4, GROUP);
    let other: Ipv6Addr = "ff04::9".parse().unwrap();
    let wire = sluice_test_support::Geneve::new(host_ip('b'), other, VPC).wrap(&inner);
    f.up[0].send(&wire);
    f.sw[0].poll().unwrap();
    assert_eq!(f.received(), vec![0; 8]);
    let d = f.sw[0].stats().drops;
    assert_eq!(
        d.get(dataplane::DropReason::Policy("not_our_underlay_address")),
        1,
        "{:?}",
        d.counts()
    );
}

#[test]
fn a_member_firewall_decides_for_its_own_port() {
    let mut f = Fabric::new();
    f.all_members(Replication::Underlay);
    // vm2's firewall: only its own inbound rules count. Deny the group.
    let deny: vnic::firewall::FirewallRule = serde_json::from_value(serde_json::json!({
        "direction": "in", "priority": 0, "action": "deny",
        "hosts": { "ip": GROUP }
    }))
    .unwrap();
    let allow: vnic::firewall::FirewallRule = serde_json::from_value(serde_json::json!({
        "direction": "in", "priority": 1, "action": "allow"
    }))
    .unwrap();
    let port = f.sw[0].port_mut("vm2").unwrap();
    let mut c = port.config().clone();
    c.firewall = vec![deny, allow];
    port.reconfigure(&c).unwrap();
    let wire = f.send(1);
    f.carry(&wire);
    assert_eq!(f.received(), vec![0, 0, 0, 0, 1, 0, 0, 1]);
    let drops = f.sw[0].port("vm2").unwrap().port.stats().drop_counts();
    assert!(drops.iter().any(|(_, c)| *c == 1), "{drops:?}");
}

#[test]
fn group_tunnels_from_the_wire_pass_the_outer_checks() {
    let mut f = Fabric::new();
    f.all_members(Replication::Underlay);
    let inner = to_group(4, GROUP);
    let group: Ipv6Addr = UNDERLAY_GROUP.parse().unwrap();
    // A damaged outer UDP checksum (RFC 8200 §8.1): dropped before any
    // member sees it, whether to the group or a head-end copy.
    for dst in [group, host_ip('a')] {
        let mut wire = sluice_test_support::Geneve::new(host_ip('b'), dst, VPC).wrap(&inner);
        wire[60] ^= 0x5a;
        f.up[0].send(&wire);
    }
    f.sw[0].poll().unwrap();
    assert_eq!(f.received(), vec![0; 8]);
    let d = f.sw[0].stats().drops;
    assert_eq!(
        d.get(dataplane::DropReason::OuterUdpChecksum),
        2,
        "{:?}",
        d.counts()
    );
    // Intact, both reach vm2 (vm1, vm3 are not subscribed).
    for dst in [group, host_ip('a')] {
        let wire = sluice_test_support::Geneve::new(host_ip('b'), dst, VPC).wrap(&inner);
        f.up[0].send(&wire);
    }
    f.sw[0].poll().unwrap();
    assert_eq!(f.received(), vec![0, 0, 2, 0, 0, 0, 0, 0]);
}

/// Frames each wire got, gathered until every one has at least `want`
/// (or the deadline passes), then for a little longer: a duplicate
/// arriving late still shows.
fn gather(wires: &[&Wire], want: &[usize]) -> Vec<Vec<Vec<u8>>> {
    let mut got: Vec<Vec<Vec<u8>>> = vec![Vec::new(); wires.len()];
    let take = |got: &mut Vec<Vec<Vec<u8>>>| {
        for (g, w) in got.iter_mut().zip(wires) {
            g.extend(w.take());
        }
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::time::Instant::now() < deadline && got.iter().zip(want).any(|(g, &n)| g.len() < n) {
        take(&mut got);
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    // Settle: the workers poll at least every few milliseconds.
    std::thread::sleep(std::time::Duration::from_millis(200));
    take(&mut got);
    got
}

/// Subscribers on two workers of one host: the sender's worker serves
/// its own subscribers and hands one copy to the other worker, which
/// serves its own (`Handed::group`); a group tunnel from the wire that
/// one worker's uplink queue received reaches the other worker's
/// subscriber the same way. Each subscriber gets exactly one copy of
/// each datagram; the non-subscriber, none; the wire, one per datagram.
#[test]
fn subscribers_on_another_worker_get_one_copy_through_the_hand_off() {
    use vmm_net::worker::Workers;
    let cloud = Cloud::new();
    let (q0, q1) = (Wire::new(), Wire::new());
    let workers = Workers::start(
        host_ip('a'),
        vec![Box::new(q0.backend()), Box::new(q1.backend())],
    )
    .unwrap();
    for w in 0..workers.len() {
        let tables = cloud.mcast.clone();
        workers
            .run_on(w, move |sw| sw.set_mcast(tables, [2, 0, 0, 0, 0, 0x20]))
            .unwrap();
    }
    // Placement takes the worker with the fewest ports: vm1 (the sender)
    // and vm3 on worker 0, vm2 and vm4 on worker 1.
    let mut vms = vec![Wire::new()]; // vm0: unused
    for last in 1..=4 {
        let (p, wire) = cloud.guest_port('a', last);
        let w = workers.attach(p, Box::new(wire.backend())).unwrap();
        assert_eq!(w, usize::from(1 - last % 2), "vm{last}'s worker");
        vms.push(wire);
    }
    // vm2 (worker 1) and vm3 (worker 0) subscribe; vm4 (worker 1) does
    // not; the group goes to host b by the underlay group.
    let (v, g) = (vni(VPC), GROUP.parse().unwrap());
    let mut t = McastTables::default();
    t.m2p.insert((v, g), UNDERLAY_GROUP.parse().unwrap());
    t.members
        .insert((v, g), vec![member("vm2", &[]), member("vm3", &[])]);
    t.fwd
        .entry((v, g))
        .or_default()
        .insert(host_ip('b'), Replication::Underlay);
    cloud.mcast.publish(t);

    const N: usize = 3;
    for _ in 0..N {
        vms[1].send(&to_group(1, GROUP));
    }
    let all: Vec<&Wire> = vms.iter().chain([&q0, &q1]).collect();
    let got = gather(&all, &[0, 0, N, N, 0, N, 0]);
    let counts: Vec<usize> = got.iter().map(Vec::len).collect();
    // vm1..vm4, then the uplink queues of worker 0 and worker 1.
    assert_eq!(
        counts,
        vec![0, 0, N, N, 0, N, 0],
        "{:?}",
        workers.stats().unwrap()
    );
    for f in got[2].iter().chain(&got[3]) {
        assert_eq!(&f[0..6], &[0x01, 0, 0x5e, 1, 1, 1], "to the group's MAC");
        assert_eq!(&f[6..12], &GW_MAC);
        assert_checksums(f);
    }
    for f in &got[5] {
        assert_eq!(outer_dst(f), UNDERLAY_GROUP.parse::<Ipv6Addr>().unwrap());
    }
    let stats = workers.stats().unwrap();
    assert_eq!(stats[0].switch.mcast_local, N as u64, "vm3's copies");
    assert_eq!(stats[1].switch.mcast_local, N as u64, "vm2's copies");
    assert_eq!(stats[0].switch.handed_off, N as u64, "one per datagram");
    assert!(stats.iter().all(|s| s.switch.handoff_dropped == 0));

    // From the wire: host b's datagram to the underlay group, received
    // by worker 1's uplink queue. vm2 (worker 1) and vm3 (worker 0, via
    // the hand-off) get it; vm1 and vm4 (not subscribed) do not.
    // Its sender, guest 9, lives on host b.
    cloud
        .v2p
        .set(
            v,
            guest_ip(9),
            PhysDest {
                guest_mac: mac(9),
                host: host_ip('b'),
            },
        )
        .unwrap();
    let inner = to_group(9, GROUP);
    let mut wire =
        sluice_test_support::Geneve::new(host_ip('b'), UNDERLAY_GROUP.parse().unwrap(), VPC)
            .wrap(&inner);
    fill_outer_udp(&mut wire);
    q1.send(&wire);
    let got = gather(&all, &[0, 0, 1, 1, 0, 0, 0]);
    let counts: Vec<usize> = got.iter().map(Vec::len).collect();
    assert_eq!(
        counts,
        vec![0, 0, 1, 1, 0, 0, 0],
        "{:?}",
        workers.stats().unwrap()
    );
    let stats = workers.stats().unwrap();
    assert_eq!(stats[1].switch.handed_off, 1, "{stats:?}");
    workers.shutdown();
}
