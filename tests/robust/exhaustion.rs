//! Full tables on one worker: a guest that floods its port's flow table
//! or runs out of NAT ports loses only its own new flows, with a counted
//! reason; its established flows and its neighbours' flows keep working,
//! and the tables stay within their limits.

use crate::common::*;
use dataplane::tcp::TcpState;
use dataplane::{Direction, DropReason, FlowKey};
use std::net::Ipv4Addr;
use vmm_net::backend::Wire;
use vmm_net::switch::Switch;

/// Sends the frames from a guest, polls, and returns what reached the
/// uplink.
fn send(sw: &mut Switch, up: &Wire, guest: &Wire, frames: &[Vec<u8>]) -> Vec<Vec<u8>> {
    for chunk in frames.chunks(vmm_net::switch::BURST) {
        for f in chunk {
            guest.send(f);
        }
        sw.poll().unwrap();
    }
    up.take()
}

fn key(frame: &[u8]) -> FlowKey {
    let p = dataplane::headers::parse(frame, dataplane::ParseMode::Plain).unwrap();
    FlowKey::of(&p.hdrs).unwrap()
}

/// vm`last` opens TCP port `sport` to the peer: SYN out, SYN-ACK in, ACK out.
fn establish(sw: &mut Switch, up: &Wire, guest: &Wire, last: u8, sport: u16) {
    let out = send(sw, up, guest, &[tcp4(last, sport, v4(PEER_LAST), 22, "S")]);
    assert_eq!(out.len(), 1, "the SYN leaves");
    up.send(&tcp4_from_peer(VPC_A, last, 22, sport, true));
    sw.poll().unwrap();
    assert_eq!(guest.take().len(), 1, "the SYN-ACK reaches the guest");
    let out = send(sw, up, guest, &[tcp4(last, sport, v4(PEER_LAST), 22, "A")]);
    assert_eq!(out.len(), 1, "the ACK leaves");
}

fn tcp_state(sw: &Switch, port: &str, frame: &[u8]) -> Option<TcpState> {
    sw.port(port)
        .unwrap()
        .port
        .tcp_state(Direction::Out, &key(frame))
}

#[test]
fn a_flooded_flow_table_keeps_established_flows_and_the_neighbours() {
    let cloud = Cloud::new();
    let (mut sw, up) = cloud.switch();
    let vm1 = cloud.attach(&mut sw, &vnic("vm1", 5, VPC_A, 64));
    let vm2 = cloud.attach(&mut sw, &vnic("vm2", 6, VPC_A, 64));
    establish(&mut sw, &up, &vm1, 5, 40000);
    let est = tcp4(5, 40000, v4(PEER_LAST), 22, "A");
    assert_eq!(tcp_state(&sw, "vm1", &est), Some(TcpState::Established));

    // A SYN flood: 5000 half-open connections from vm1.
    let syns: Vec<_> = (0..5000u16)
        .map(|i| tcp4(5, 1024 + i, v4(PEER_LAST), 80, "S"))
        .collect();
    let out = send(&mut sw, &up, &vm1, &syns);
    let p1 = &sw.port("vm1").unwrap().port;
    assert!(p1.flow_count() <= 64, "{} flows", p1.flow_count());
    // Each new SYN pushed out the oldest half-open one (the newest SYNs
    // always get their chance), counted as evictions.
    assert_eq!(out.len(), 5000);
    assert!(p1.stats().flows_evicted >= 5000 - 64);
    assert_eq!(tcp_state(&sw, "vm1", &est), Some(TcpState::Established));
    assert_eq!(
        send(&mut sw, &up, &vm1, std::slice::from_ref(&est)).len(),
        1
    );

    // A UDP flood: flows that cannot be evicted until they idle out. The
    // table fills; new flows are dropped as `flow_table_full`.
    let udp: Vec<_> = (0..5000u16)
        .map(|i| udp4(5, 1024 + i, v4(PEER_LAST), 53))
        .collect();
    let out = send(&mut sw, &up, &vm1, &udp);
    let p1 = &sw.port("vm1").unwrap().port;
    assert_eq!(p1.flow_count(), 64);
    let full = p1.stats().drops(DropReason::FlowTableFull);
    assert_eq!(out.len() as u64 + full, 5000);
    assert!(full >= 5000 - 64, "{full}");
    assert_eq!(
        p1.stats()
            .drop_counts()
            .iter()
            .map(|(r, _)| *r)
            .collect::<Vec<_>>(),
        ["flow_table_full"]
    );
    // The established flow still passes, both ways.
    assert_eq!(
        send(&mut sw, &up, &vm1, std::slice::from_ref(&est)).len(),
        1
    );
    up.send(&tcp4_from_peer(VPC_A, 5, 22, 40000, false));
    sw.poll().unwrap();
    assert_eq!(vm1.take().len(), 1, "the peer's segment reaches vm1");

    // vm2, on the same worker, opens new flows as if nothing happened.
    establish(&mut sw, &up, &vm2, 6, 40000);
    let out = send(&mut sw, &up, &vm2, &[udp4(6, 999, v4(PEER_LAST), 53)]);
    assert_eq!(out.len(), 1);
    assert!(sw
        .port("vm2")
        .unwrap()
        .port
        .stats()
        .drop_counts()
        .is_empty());

    // The flood's flows idle out; the established flow stays.
    cloud.clock.advance_secs(120);
    sw.port_mut("vm1").unwrap().port.expire();
    assert_eq!(sw.port("vm1").unwrap().port.flow_count(), 1);
    assert_eq!(tcp_state(&sw, "vm1", &est), Some(TcpState::Established));
    // ... and new flows pass again.
    assert_eq!(
        send(&mut sw, &up, &vm1, &[udp4(5, 7, v4(PEER_LAST), 53)]).len(),
        1
    );
}

const INTERNET: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);

#[test]
fn nat_port_exhaustion_drops_only_the_guests_new_flows() {
    let cloud = Cloud::new();
    let (mut sw, up) = cloud.switch();
    let mut c1 = vnic("vm1", 5, VPC_A, 1024);
    c1.external.snat[0].first_port = 2048;
    c1.external.snat[0].last_port = 2055;
    let mut c2 = vnic("vm2", 6, VPC_A, 1024);
    c2.external.snat[0].first_port = 3000;
    c2.external.snat[0].last_port = 3999;
    let vm1 = cloud.attach(&mut sw, &c1);
    let vm2 = cloud.attach(&mut sw, &c2);

    // vm1 has 8 ports on the shared address: the 9th flow and after
    // are refused, the first 8 keep working.
    let flows: Vec<_> = (0..20u16)
        .map(|i| udp4(5, 50000 + i, INTERNET, 443))
        .collect();
    let out = send(&mut sw, &up, &vm1, &flows);
    assert_eq!(out.len(), 8);
    let s1 = sw.port("vm1").unwrap().port.stats().clone();
    assert_eq!(s1.drop_counts(), [("exhausted", 12)]);
    let again = send(&mut sw, &up, &vm1, &flows[..8]);
    assert_eq!(again.len(), 8, "flows holding a port keep it");
    for f in &again {
        let t = tunnel(f).unwrap();
        assert_eq!(t.outer_dst, ip6(BOUNDARY));
        assert_eq!(source(&t.inner).unwrap().1, Some(SNAT_IP.into()));
    }

    // vm2 shares the address but not the ports.
    let flows2: Vec<_> = (0..100u16)
        .map(|i| udp4(6, 50000 + i, INTERNET, 443))
        .collect();
    assert_eq!(send(&mut sw, &up, &vm2, &flows2).len(), 100);

    // When vm1's flows idle out their ports come back.
    cloud.clock.advance_secs(120);
    sw.port_mut("vm1").unwrap().port.expire();
    assert_eq!(send(&mut sw, &up, &vm1, &flows[8..16]).len(), 8);
}

/// What the NAT layer does when it is asked for a port that was never
/// there (all of vm1's ports taken) must not leak flow records: the
/// table's count of live flows is what it holds.
#[test]
fn refused_flows_leave_nothing_behind() {
    let cloud = Cloud::new();
    let (mut sw, up) = cloud.switch();
    let mut c1 = vnic("vm1", 5, VPC_A, 1024);
    c1.external.snat[0].last_port = 2048;
    let vm1 = cloud.attach(&mut sw, &c1);
    let flows: Vec<_> = (0..500u16)
        .map(|i| udp4(5, 10000 + i, INTERNET, 443))
        .collect();
    assert_eq!(send(&mut sw, &up, &vm1, &flows).len(), 1);
    let p = &sw.port("vm1").unwrap().port;
    assert_eq!(p.flow_count(), 1);
    assert_eq!(p.uft_len(Direction::Out), 1);
    assert_eq!(p.uft_len(Direction::In), 1);
    let nat_lft: usize = p
        .dump_layers()
        .iter()
        .filter(|l| l.name == "nat")
        .map(|l| l.lft_out.len() + l.lft_in.len())
        .sum();
    assert!(nat_lft <= 2, "{nat_lft} NAT entries for one flow");
}
