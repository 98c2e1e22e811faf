//! The switch between two hosts' uplinks and their guests, with in-memory
//! backends: demux by (VNI, inner MAC), local delivery, outer checks; and
//! the workers that run switches on threads, owning ports and handing
//! frames to each other.

use dataplane::{Clock, ManualClock, Moment, Vni};
use overlay::layer::HostOverlay;
use overlay::v2p::PhysDest;
use overlay::{V2b, V2p};
use sluice_test_support::build::Tcp;
use sluice_test_support::{assert_checksums, fill_outer_udp};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use vmm_net::backend::Wire;
use vmm_net::switch::{Switch, SwitchError, SwitchOptions};
use vnic::config::VnicConfig;
use vnic::port::VnicPort;

const GW_MAC: [u8; 6] = [0xa8, 0x40, 0x25, 0xff, 0xff, 0x01];
const VPC: u32 = 7777;

fn mac(last: u8) -> [u8; 6] {
    [0xa8, 0x40, 0x25, 0, 0, last]
}

fn host_ip(h: char) -> Ipv6Addr {
    format!("fd00:99::{h}").parse().unwrap()
}

struct Cloud {
    v2p: Arc<V2p>,
    v2b: Arc<V2b>,
    mcast: Arc<overlay::mcast::Mcast>,
}

impl Cloud {
    fn new() -> Cloud {
        Cloud {
            v2p: Arc::new(V2p::new(64)),
            v2b: Arc::new(V2b::new(8)),
            mcast: Arc::default(),
        }
    }

    fn overlay(&self, h: char) -> HostOverlay {
        HostOverlay {
            underlay_ip: host_ip(h),
            underlay_mac: [2, 0, 0, 0, 0, 0x10],
            next_hop_mac: [2, 0, 0, 0, 0, 0x20],
            v2p: self.v2p.clone(),
            v2b: self.v2b.clone(),
            mcast: self.mcast.clone(),
        }
    }

    /// A guest `10.0.0.(10 + last)` on host `h`, mapped in V2P, allowing
    /// everything in; returns the wire its guest sits on.
    fn guest(&self, sw: &mut Switch, h: char, last: u8) -> Wire {
        let (port, wire) = self.guest_port(h, last);
        sw.attach(port, Box::new(wire.backend())).unwrap();
        wire
    }

    /// The same guest's port, not attached yet.
    fn guest_port(&self, h: char, last: u8) -> (VnicPort, Wire) {
        self.guest_port_clocked(h, last, Box::new(ManualClock::new()))
    }

    /// The same, its port on `clock`.
    fn guest_port_clocked(&self, h: char, last: u8, clock: Box<dyn Clock>) -> (VnicPort, Wire) {
        let ip: IpAddr = format!("10.0.0.{}", 10 + last).parse().unwrap();
        self.v2p
            .set(
                Vni::new(VPC).unwrap(),
                ip,
                PhysDest {
                    guest_mac: mac(last),
                    host: host_ip(h),
                },
            )
            .unwrap();
        let c: VnicConfig = serde_json::from_value(serde_json::json!({
            "name": format!("vm{last}"),
            "guest_mac": vnic::config::MacAddr(mac(last)).to_string(),
            "gateway_mac": vnic::config::MacAddr(GW_MAC).to_string(),
            "vni": VPC,
            "ipv4": { "addr": ip, "subnet": "10.0.0.0/24", "gateway": "10.0.0.1" },
            "firewall": [{ "direction": "in", "priority": 1, "action": "allow" }],
        }))
        .unwrap();
        let port = VnicPort::build(&c, &self.overlay(h), clock).unwrap();
        (port, Wire::new())
    }
}

fn tcp(src_last: u8, dst_last: u8, flags_syn: bool) -> Vec<u8> {
    Tcp::new(
        (mac(src_last), GW_MAC),
        (Ipv4Addr::new(10, 0, 0, 10 + src_last), 40000).into(),
        (Ipv4Addr::new(10, 0, 0, 10 + dst_last), 22).into(),
    )
    .seq(1)
    .window(1000)
    .flags_acking(if flags_syn { "S" } else { "A" }, 1)
    .payload(b"x")
    .build()
}

/// Moves what one host's uplink sent to the other's (the underlay).
fn underlay(from: &Wire, to: &Wire) -> usize {
    let frames = from.take();
    for f in &frames {
        to.send(f);
    }
    frames.len()
}

#[test]
fn guests_on_two_hosts_talk_through_the_uplinks() {
    let cloud = Cloud::new();
    let (up_a, up_b) = (Wire::new(), Wire::new());
    let mut a = Switch::new(host_ip('a'), Box::new(up_a.backend()));
    let mut b = Switch::new(host_ip('b'), Box::new(up_b.backend()));
    let vm1 = cloud.guest(&mut a, 'a', 1);
    let vm2 = cloud.guest(&mut b, 'b', 2);
    vm1.send(&tcp(1, 2, true));
    a.poll().unwrap();
    assert_eq!(underlay(&up_a, &up_b), 1, "one tunnel on the wire");
    b.poll().unwrap();
    let got = vm2.take();
    assert_eq!(got.len(), 1, "delivered to vm2: {:?}", b.stats());
    assert_eq!(&got[0][0..6], &mac(2));
    // And back.
    vm2.send(&tcp(2, 1, true));
    b.poll().unwrap();
    underlay(&up_b, &up_a);
    a.poll().unwrap();
    assert_eq!(vm1.take().len(), 1);
    assert_eq!((a.stats().uplink_tx, a.stats().uplink_rx), (1, 1));
}

#[test]
fn same_host_traffic_never_touches_the_wire() {
    let cloud = Cloud::new();
    let up = Wire::new();
    let mut a = Switch::new(host_ip('a'), Box::new(up.backend()));
    let vm1 = cloud.guest(&mut a, 'a', 1);
    let vm4 = cloud.guest(&mut a, 'a', 4);
    vm1.send(&tcp(1, 4, true));
    a.poll().unwrap();
    assert!(up.take().is_empty(), "nothing on the uplink");
    assert_eq!(vm4.take().len(), 1);
    assert_eq!(a.stats().local, 1);
}

/// A TCP super-frame from vm `src_last` to vm `dst_last`: `n` bytes of
/// payload, to be cut at `mss`, its checksum only partial (as a device
/// hands it over).
fn super_frame(src_last: u8, dst_last: u8, n: usize, mss: u16) -> (Vec<u8>, dataplane::Gso) {
    let payload: Vec<u8> = (0..n).map(|i| (i % 251) as u8).collect();
    let mut v = Vec::new();
    etherparse::PacketBuilder::ethernet2(mac(src_last), GW_MAC)
        .ipv4([10, 0, 0, 10 + src_last], [10, 0, 0, 10 + dst_last], 64)
        .tcp(40000, 22, 2, 1000)
        .ack(1)
        .write(&mut v, &payload)
        .unwrap();
    v[34 + 16] ^= 0x77; // not a checksum anyone may rely on
    let gso = dataplane::Gso {
        mss,
        hdr_len: 54,
        v6: false,
        ecn: false,
    };
    (v, gso)
}

/// The TCP payloads of `frames` in order, every IPv4 and TCP checksum
/// checked on the way.
fn payloads(frames: &[Vec<u8>]) -> Vec<u8> {
    let mut data = Vec::new();
    for f in frames {
        let p = etherparse::SlicedPacket::from_ethernet(f).unwrap();
        let Some(etherparse::NetSlice::Ipv4(_)) = p.net else {
            panic!("IPv4")
        };
        let Some(etherparse::TransportSlice::Tcp(t)) = p.transport else {
            panic!("TCP")
        };
        assert_checksums(f);
        data.extend_from_slice(t.payload());
    }
    data
}

#[test]
fn a_guest_super_frame_is_processed_once_and_cut_at_the_wire() {
    let cloud = Cloud::new();
    let (up_a, up_b) = (Wire::new(), Wire::new());
    let mut a = Switch::new(host_ip('a'), Box::new(up_a.backend()));
    let mut b = Switch::new(host_ip('b'), Box::new(up_b.backend()));
    let vm1 = cloud.guest(&mut a, 'a', 1);
    let vm2 = cloud.guest(&mut b, 'b', 2);
    let vm4 = cloud.guest(&mut a, 'a', 4);
    vm1.send(&tcp(1, 2, true));
    vm1.send(&tcp(1, 4, true));
    a.poll().unwrap();
    underlay(&up_a, &up_b);
    b.poll().unwrap();
    assert_eq!((vm2.take().len(), vm4.take().len()), (1, 1));

    // Across hosts: one pass through the port, ten tunnels on the wire.
    let (f, gso) = super_frame(1, 2, 10_000, 1000);
    vm1.send_super_frame(&f, gso);
    a.poll().unwrap();
    let out = a.port("vm1").unwrap().port.stats().dir[dataplane::Direction::Out.index()].packets;
    assert_eq!(out, 3, "SYN, SYN, one super-frame: processed once");
    assert_eq!(underlay(&up_a, &up_b), 10, "cut into ten tunnels");
    assert_eq!(a.stats().gso_segments, 10);
    b.poll().unwrap();
    let got = vm2.take();
    assert_eq!(got.len(), 10);
    let want: Vec<u8> = (0..10_000).map(|i| (i % 251) as u8).collect();
    assert!(
        payloads(&got) == want,
        "the stream arrives whole, checksums right"
    );

    // Same host: delivered to a device that cannot take it whole, cut there.
    let (f, gso) = super_frame(1, 4, 2500, 1000);
    vm1.send_super_frame(&f, gso);
    a.poll().unwrap();
    assert!(up_a.take().is_empty(), "nothing on the uplink");
    let got = vm4.take();
    assert_eq!(got.len(), 3);
    assert!(payloads(&got) == want[..2500]);
    assert_eq!(a.stats().gso_dropped, 0);
}

/// A clock that counts how often it is read (time stands still).
struct ReadCount(Arc<AtomicU64>);

impl Clock for ReadCount {
    fn now(&self) -> Moment {
        self.0.fetch_add(1, Ordering::Relaxed);
        1_000_000_000
    }
}

#[test]
fn a_round_reads_each_ports_clock_once_and_moves_whole_bursts() {
    let cloud = Cloud::new();
    let (up_a, up_b) = (Wire::new(), Wire::new());
    let mut a = Switch::new(host_ip('a'), Box::new(up_a.backend()));
    let mut b = Switch::new(host_ip('b'), Box::new(up_b.backend()));
    let reads = Arc::new(AtomicU64::new(0));
    let (port, vm1) = cloud.guest_port_clocked('a', 1, Box::new(ReadCount(reads.clone())));
    a.attach(port, Box::new(vm1.backend())).unwrap();
    let vm2 = cloud.guest(&mut b, 'b', 2);
    // A burst out: one SYN, then segments of the same flow.
    vm1.send(&tcp(1, 2, true));
    for _ in 0..7 {
        vm1.send(&tcp(1, 2, false));
    }
    let before = reads.load(Ordering::Relaxed);
    assert_eq!(a.poll().unwrap(), 8);
    assert_eq!(
        reads.load(Ordering::Relaxed) - before,
        1 + 2,
        "one clock read for the round, not one per frame, and two timing \
         the one first packet (the SYN)"
    );
    assert_eq!(underlay(&up_a, &up_b), 8);
    b.poll().unwrap();
    assert_eq!(vm2.take().len(), 8, "the whole burst reached vm2");
    // A burst in: vm2's answers, demultiplexed from the uplink to vm1.
    vm2.send(&tcp(2, 1, true));
    for _ in 0..7 {
        vm2.send(&tcp(2, 1, false));
    }
    b.poll().unwrap();
    assert_eq!(underlay(&up_b, &up_a), 8);
    let before = reads.load(Ordering::Relaxed);
    assert_eq!(a.poll().unwrap(), 8);
    assert_eq!(
        reads.load(Ordering::Relaxed) - before,
        1 + 2,
        "one for the round, two timing the answering SYN (a UFT miss)"
    );
    assert_eq!(vm1.take().len(), 8, "the whole burst reached vm1");
    assert_eq!(a.stats().uplink_rx, 8);
    assert_eq!(a.stats().uplink_tx, 8);
}

#[test]
fn hairpins_go_back_to_the_guest() {
    let cloud = Cloud::new();
    let up = Wire::new();
    let mut a = Switch::new(host_ip('a'), Box::new(up.backend()));
    let vm1 = cloud.guest(&mut a, 'a', 1);
    let mut ping = Vec::new();
    etherparse::PacketBuilder::ethernet2(mac(1), GW_MAC)
        .ipv4([10, 0, 0, 11], [10, 0, 0, 1], 64)
        .icmpv4_echo_request(1, 1)
        .write(&mut ping, b"hi")
        .unwrap();
    vm1.send(&ping);
    a.poll().unwrap();
    assert!(
        up.take().is_empty(),
        "the gateway's answer never leaves the host"
    );
    let got = vm1.take();
    assert_eq!(got.len(), 1);
    assert_eq!((&got[0][0..6], &got[0][6..12]), (&mac(1)[..], &GW_MAC[..]));
}

#[test]
fn the_uplink_checks_come_first() {
    let cloud = Cloud::new();
    let (up_a, up_b) = (Wire::new(), Wire::new());
    let mut a = Switch::new(host_ip('a'), Box::new(up_a.backend()));
    let mut b = Switch::new(host_ip('b'), Box::new(up_b.backend()));
    let vm1 = cloud.guest(&mut a, 'a', 1);
    let vm2 = cloud.guest(&mut b, 'b', 2);
    vm1.send(&tcp(1, 2, true));
    a.poll().unwrap();
    let tunnel = up_a.take().pop().unwrap();

    // Not Geneve at all.
    up_b.send(&tcp(1, 2, true));
    // Addressed to host C.
    let mut to_c = tunnel.clone();
    to_c[38..54].copy_from_slice(&host_ip('c').octets());
    fill_outer_udp(&mut to_c);
    up_b.send(&to_c);
    // A critical option sluice does not know.
    // Class 0x0102, type 0x80 (critical), no data.
    up_b.send(&with_option(&tunnel, [0x01, 0x02, 0x80, 0x00]));
    // For a MAC nobody here has.
    let mut stranger = tunnel.clone();
    stranger[70..76].copy_from_slice(&mac(9));
    fill_outer_udp(&mut stranger);
    up_b.send(&stranger);
    // For vm2's MAC, on another VNI.
    let mut other_vni = tunnel.clone();
    other_vni[66..69].copy_from_slice(&[0, 0x22, 0xb8]);
    fill_outer_udp(&mut other_vni);
    up_b.send(&other_vni);
    // A control packet (RFC 8926 §3.4: O bit).
    let mut oam = tunnel.clone();
    oam[63] |= 0x80;
    fill_outer_udp(&mut oam);
    up_b.send(&oam);
    // Damaged on the way: one payload bit flipped, the checksum kept.
    let mut damaged = tunnel.clone();
    *damaged.last_mut().unwrap() ^= 0x01;
    up_b.send(&damaged);
    // No outer checksum at all (refused by default: RFC 6936 §5).
    let mut zero = tunnel.clone();
    zero[60..62].copy_from_slice(&[0, 0]);
    up_b.send(&zero);
    // And the real one.
    up_b.send(&tunnel);
    b.poll().unwrap();
    let s = b.stats();
    let named: Vec<_> = s.drops.counts();
    assert_eq!(
        named,
        vec![
            ("malformed.not_geneve", 1),
            ("geneve_control", 1),
            ("outer_udp_checksum", 1),
            ("zero_udp6_checksum", 1),
            ("unknown_port", 1),
            ("not_our_underlay_address", 1),
            ("geneve_unknown_critical_option", 1),
            ("wrong_vni", 1),
        ],
        "{s:?}"
    );
    // Every tunnel to this host with a checksum had it checked here, in
    // software (the in-memory device vouches for nothing): six of them.
    assert_eq!((s.csum_verified_sw, s.csum_verified_hw), (6, 0), "{s:?}");
    assert_eq!(vm2.take().len(), 1, "only the real one reaches vm2");
}

#[test]
fn zero_outer_checksums_pass_when_the_underlay_accepts_them() {
    let cloud = Cloud::new();
    let (up_a, up_b) = (Wire::new(), Wire::new());
    let mut a = Switch::new(host_ip('a'), Box::new(up_a.backend()));
    let mut b = Switch::new(host_ip('b'), Box::new(up_b.backend()));
    b.set_options(SwitchOptions {
        accept_zero_udp6_checksum: true,
    });
    cloud.guest(&mut a, 'a', 1).send(&tcp(1, 2, true));
    let vm2 = cloud.guest(&mut b, 'b', 2);
    a.poll().unwrap();
    let tunnel = up_a.take().pop().unwrap();
    // sluice's own sender fills the checksum in.
    assert_ne!(&tunnel[60..62], &[0, 0]);
    let mut zero = tunnel.clone();
    zero[60..62].copy_from_slice(&[0, 0]);
    up_b.send(&zero);
    // Accepting zero does not mean accepting wrong ones.
    let mut damaged = tunnel.clone();
    *damaged.last_mut().unwrap() ^= 0x01;
    up_b.send(&damaged);
    b.poll().unwrap();
    assert_eq!(b.stats().drops.counts(), vec![("outer_udp_checksum", 1)]);
    assert_eq!(vm2.take().len(), 1, "the zero-checksum tunnel is delivered");
}

#[test]
fn a_device_that_verified_the_checksum_is_believed() {
    let cloud = Cloud::new();
    let (up_a, up_b) = (Wire::new(), Wire::new());
    let mut a = Switch::new(host_ip('a'), Box::new(up_a.backend()));
    let mut b = Switch::new(host_ip('b'), Box::new(up_b.backend()));
    cloud.guest(&mut a, 'a', 1).send(&tcp(1, 2, true));
    let vm2 = cloud.guest(&mut b, 'b', 2);
    a.poll().unwrap();
    let tunnel = up_a.take().pop().unwrap();
    up_b.vouch_checksums(true);
    up_b.send(&tunnel);
    // A zero checksum is the sender's choice: no device verdict covers it.
    let mut zero = tunnel.clone();
    zero[60..62].copy_from_slice(&[0, 0]);
    up_b.send(&zero);
    b.poll().unwrap();
    let s = b.stats();
    assert_eq!((s.csum_verified_sw, s.csum_verified_hw), (0, 1), "{s:?}");
    assert_eq!(s.drops.counts(), vec![("zero_udp6_checksum", 1)]);
    assert_eq!(vm2.take().len(), 1);
}

#[test]
fn attach_refuses_duplicates_and_detach_frees() {
    let cloud = Cloud::new();
    let up = Wire::new();
    let mut a = Switch::new(host_ip('a'), Box::new(up.backend()));
    cloud.guest(&mut a, 'a', 1);
    let again = VnicPort::build(
        a.port("vm1").unwrap().config(),
        &cloud.overlay('a'),
        Box::new(ManualClock::new()),
    )
    .unwrap();
    assert_eq!(
        a.attach(again, Box::new(Wire::new().backend()))
            .unwrap_err(),
        SwitchError::DuplicateName("vm1".into())
    );
    let mut c = a.port("vm1").unwrap().config().clone();
    c.name = "vm1-twin".into();
    let twin = VnicPort::build(&c, &cloud.overlay('a'), Box::new(ManualClock::new())).unwrap();
    assert!(matches!(
        a.attach(twin, Box::new(Wire::new().backend())),
        Err(SwitchError::DuplicateMac { .. })
    ));
    assert!(a.detach("vm1").is_some());
    assert_eq!(a.port_names(), Vec::<String>::new());
}

/// Waits (bounded) until `f` returns something.
fn eventually<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

fn frames_on(w: &Wire, n: usize) -> Option<Vec<Vec<u8>>> {
    let got = w.take();
    (got.len() >= n).then_some(got)
}

#[test]
fn workers_own_ports_and_hand_frames_to_each_other() {
    use vmm_net::worker::Workers;
    let cloud = Cloud::new();
    let (q0, q1) = (Wire::new(), Wire::new());
    let workers = Workers::start(
        host_ip('a'),
        vec![Box::new(q0.backend()), Box::new(q1.backend())],
    )
    .unwrap();
    let (p1, vm1) = cloud.guest_port('a', 1);
    let (p2, vm2) = cloud.guest_port('a', 2);
    let w1 = workers.attach(p1, Box::new(vm1.backend())).unwrap();
    let w2 = workers.attach(p2, Box::new(vm2.backend())).unwrap();
    assert_ne!(w1, w2, "ports spread over the workers");

    // Same host, different workers: local delivery through the handoff.
    vm1.send(&tcp(1, 2, true));
    let got = eventually("vm2 to receive vm1's SYN", || frames_on(&vm2, 1));
    assert_eq!(&got[0][0..6], &mac(2));
    assert!(
        q0.take().is_empty() && q1.take().is_empty(),
        "nothing on the wire"
    );

    // A tunnel from host b for vm2 that the uplink queue of vm1's worker
    // received is handed to vm2's worker.
    let up_b = Wire::new();
    let mut b2 = Switch::new(host_ip('b'), Box::new(up_b.backend()));
    let vm3 = cloud.guest(&mut b2, 'b', 3);
    vm3.send(&tcp(3, 2, true));
    b2.poll().unwrap();
    let tunnel = up_b.take().pop().expect("host b tunnels the SYN");
    let wrong_queue = if w1 == 0 { &q0 } else { &q1 };
    wrong_queue.send(&tunnel);
    eventually("the tunnel to reach vm2 via the other worker", || {
        frames_on(&vm2, 1)
    });
    let stats = workers.stats().unwrap();
    let handed: u64 = stats.iter().map(|s| s.switch.handed_off).sum();
    assert_eq!(handed, 2, "{stats:?}");
    assert!(stats.iter().all(|s| s.switch.handoff_dropped == 0));

    // Control: jobs reach the port's worker while traffic flows.
    let out = workers
        .with_port("vm1", |p| {
            p.port.stats().dir(dataplane::Direction::Out).packets
        })
        .unwrap();
    assert_eq!(out, 1);
    assert!(matches!(
        workers.with_port("nope", |_| ()),
        Err(vmm_net::worker::WorkerError::NoSuchPort(_))
    ));
    workers.detach("vm2").unwrap();
    assert_eq!(workers.port_names(), vec!["vm1".to_string()]);
    // vm2 gone: a frame for it is refused, not handed to a stale owner.
    vm1.send(&tcp(1, 2, false));
    eventually("vm1's frame to be counted", || {
        let s = workers.stats().unwrap();
        (s.iter()
            .map(|s| s.switch.drops.get(dataplane::DropReason::UnknownPort))
            .sum::<u64>()
            == 1)
            .then_some(())
    });
    workers.shutdown();
}

#[test]
fn workers_refuse_a_second_port_with_the_same_name_or_mac() {
    use vmm_net::worker::{WorkerError, Workers};
    let cloud = Cloud::new();
    let workers = Workers::start(host_ip('a'), vec![Box::new(Wire::new().backend())]).unwrap();
    let (p1, w) = cloud.guest_port('a', 1);
    workers.attach(p1, Box::new(w.backend())).unwrap();
    let (again, w) = cloud.guest_port('a', 1);
    let err = workers.attach(again, Box::new(w.backend())).unwrap_err();
    assert!(
        matches!(err, WorkerError::Switch(SwitchError::DuplicateName(_))),
        "{err}"
    );
}

/// A frame for the uplink larger than the underlay's MTU is dropped and
/// counted at the switch, not lost without a trace on the wire.
#[test]
fn frames_over_the_underlay_mtu_are_counted() {
    let cloud = Cloud::new();
    let up = Wire::new();
    let mut a = Switch::new(host_ip('a'), Box::new(up.backend()));
    a.set_uplink_mtu(Some(1280));
    let vm1 = cloud.guest(&mut a, 'a', 1);
    cloud.guest_port('b', 2);
    let big = |payload: usize| {
        let mut v = Vec::new();
        etherparse::PacketBuilder::ethernet2(mac(1), GW_MAC)
            .ipv4([10, 0, 0, 11], [10, 0, 0, 12], 64)
            .udp(5000, 5001)
            .write(&mut v, &vec![0u8; payload])
            .unwrap();
        v
    };
    // 1400 bytes of IP fit the guest's 1500 but not, tunnelled, 1280.
    vm1.send(&big(1372));
    vm1.send(&big(100));
    a.poll().unwrap();
    assert_eq!(up.take().len(), 1, "only the small one on the wire");
    assert_eq!(
        a.stats()
            .drops
            .get(dataplane::DropReason::Policy("underlay_mtu_exceeded")),
        1,
        "{:?}",
        a.stats().drops.counts()
    );
}

/// Nothing from the wire is dropped unseen: whatever a tunnel's bytes
/// become (every single-byte change of a real one, through every header),
/// each frame is delivered, answered, or counted as a drop by the switch
/// or by the port, and nothing panics.
#[test]
fn every_uplink_frame_is_delivered_or_counted() {
    let cloud = Cloud::new();
    let (up_a, up_b) = (Wire::new(), Wire::new());
    let mut a = Switch::new(host_ip('a'), Box::new(up_a.backend()));
    let mut b = Switch::new(host_ip('b'), Box::new(up_b.backend()));
    let vm1 = cloud.guest(&mut a, 'a', 1);
    let vm2 = cloud.guest(&mut b, 'b', 2);
    vm1.send(&tcp(1, 2, true));
    a.poll().unwrap();
    let tunnel = up_a.take().pop().unwrap();
    let mut sent = 0u64;
    // xorshift: a fixed, reproducible sequence of changes.
    let mut x: u32 = 0x9e37_79b9;
    for at in 0..tunnel.len() {
        for _ in 0..4 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            let mut f = tunnel.clone();
            f[at] ^= (x as u8) | 1;
            up_b.send(&f);
            sent += 1;
        }
        b.poll().unwrap();
    }
    let delivered = vm2.take().len() as u64;
    let hairpins = up_b.take().len() as u64;
    let s = b.stats();
    let port = b.port("vm2").unwrap().port.stats();
    let port_drops: u64 = port.drop_counts().iter().map(|(_, n)| n).sum();
    assert_eq!(s.uplink_rx, sent);
    assert_eq!(
        delivered + hairpins + s.drops.total() + port_drops,
        sent,
        "delivered {delivered}, answered {hairpins}, switch {:?}, port {:?}",
        s.drops.counts(),
        port.drop_counts()
    );
    // A change the parse does not catch first (it checks the inner IPv4
    // checksum, lengths, versions) the outer checksum does.
    assert!(
        s.drops.get(dataplane::DropReason::OuterUdpChecksum) > sent / 3,
        "{:?}",
        s.drops.counts()
    );
}

/// An idle worker whose devices can all wake it (in-memory wires; a port
/// with no device at all) blocks in the kernel: over half a second its
/// round counter barely moves, where a worker on a 1 ms timer runs
/// hundreds of thousands of rounds. A frame from a guest, a frame from
/// the underlay and a control command each still get through.
#[test]
fn an_idle_worker_blocks_and_wakes_for_frames_and_commands() {
    use vmm_net::worker::Workers;
    let cloud = Cloud::new();
    let up = Wire::new();
    let workers = Workers::start(host_ip('a'), vec![Box::new(up.backend())]).unwrap();
    let (p1, vm1) = cloud.guest_port('a', 1);
    let (p2, vm2) = cloud.guest_port('a', 2);
    let (p3, _) = cloud.guest_port('a', 3);
    workers.attach(p1, Box::new(vm1.backend())).unwrap();
    workers.attach(p2, Box::new(vm2.backend())).unwrap();
    // A port whose guest is not attached never receives: it must not
    // keep the worker on a timer.
    workers
        .attach(p3, Box::new(vmm_net::backend::Null))
        .unwrap();
    let stats = || workers.stats().unwrap().remove(0);
    eventually("the worker to fall asleep", || {
        (stats().sleeps > 0).then_some(())
    });

    let before = stats();
    std::thread::sleep(std::time::Duration::from_millis(500));
    let after = stats();
    // What may run meanwhile: the busy rounds after the first stats
    // job woke it (256), then a few timed-out sleeps (100 ms) of 16
    // rounds each. A load that slows the machine only makes it fewer.
    let rounds = after.rounds - before.rounds;
    let sleeps = after.sleeps - before.sleeps;
    assert!(
        rounds < 2_000 && sleeps < 50,
        "an idle worker ran {rounds} rounds and slept {sleeps} times in 500 ms"
    );

    // A guest's frame wakes it and is delivered.
    vm1.send(&tcp(1, 2, true));
    let got = eventually("vm2 to receive vm1's SYN", || frames_on(&vm2, 1));
    assert_eq!(&got[0][0..6], &mac(2));

    // So is a tunnelled frame from the underlay, once it sleeps again.
    let asleep = stats().sleeps;
    eventually("the worker to sleep again", || {
        (stats().sleeps > asleep + 1).then_some(())
    });
    let up_b = Wire::new();
    let mut b = Switch::new(host_ip('b'), Box::new(up_b.backend()));
    let vm4 = cloud.guest(&mut b, 'b', 4);
    vm4.send(&tcp(4, 2, true));
    b.poll().unwrap();
    up.send(&up_b.take().pop().expect("host b tunnels the SYN"));
    eventually("vm2 to receive vm4's SYN from the underlay", || {
        frames_on(&vm2, 1)
    });

    // And a command sent to a sleeping worker is answered.
    let asleep = stats().sleeps;
    eventually("the worker to sleep again", || {
        (stats().sleeps > asleep + 1).then_some(())
    });
    let out = workers
        .with_port("vm1", |p| {
            p.port.stats().dir(dataplane::Direction::Out).packets
        })
        .unwrap();
    assert_eq!(out, 1);
    workers.shutdown();
}

/// vm2's TCP segment to vm1 from source port `sport`.
fn tcp_from(sport: u16, flags: &str) -> Vec<u8> {
    Tcp::new(
        (mac(2), GW_MAC),
        (Ipv4Addr::new(10, 0, 0, 12), sport).into(),
        (Ipv4Addr::new(10, 0, 0, 11), 22).into(),
    )
    .seq(1)
    .window(1000)
    .flags_acking(flags, 1)
    .payload(&sport.to_be_bytes())
    .build()
}

/// A tunnel with one 4-byte Geneve option (class, type, no data)
/// inserted after the base header.
fn with_option(tunnel: &[u8], option: [u8; 4]) -> Vec<u8> {
    let mut t = tunnel.to_vec();
    t.splice(70..70, option);
    t[62] += 1; // one more 4-byte word of options
    let plen = u16::from_be_bytes([t[18], t[19]]) + 4;
    t[18..20].copy_from_slice(&plen.to_be_bytes());
    t[58..60].copy_from_slice(&plen.to_be_bytes());
    fill_outer_udp(&mut t);
    t
}

#[test]
fn a_burst_mixing_fast_and_fully_parsed_tunnels_keeps_each_frame_its_own_parse() {
    // The switch hands the port what its outer checks parsed of each
    // frame of a burst; a frame the fast parse leaves alone (a Geneve
    // option, ICMP) has none. Were the two out of step, a frame would be
    // rewritten at another frame's offsets or matched to another flow.
    let cloud = Cloud::new();
    let (up_a, up_b) = (Wire::new(), Wire::new());
    let mut a = Switch::new(host_ip('a'), Box::new(up_a.backend()));
    let mut b = Switch::new(host_ip('b'), Box::new(up_b.backend()));
    let vm1 = cloud.guest(&mut a, 'a', 1);
    let vm2 = cloud.guest(&mut b, 'b', 2);
    let mut ping = Vec::new();
    etherparse::PacketBuilder::ethernet2(mac(2), GW_MAC)
        .ipv4([10, 0, 0, 12], [10, 0, 0, 11], 64)
        .icmpv4_echo_request(7, 1)
        .write(&mut ping, b"ping!")
        .unwrap();
    // First the flows' opening segments, then a mixed burst of them.
    let sent = [
        tcp_from(41000, "S"),
        tcp_from(42000, "S"),
        tcp_from(41000, "A"),
        ping,
        tcp_from(42000, "A"),
        tcp_from(41000, "A"),
    ];
    let mut tunnels = Vec::new();
    for f in &sent {
        vm2.send(f);
        b.poll().unwrap();
        tunnels.extend(up_b.take());
    }
    assert_eq!(tunnels.len(), sent.len());
    for t in &tunnels[..2] {
        up_a.send(t);
    }
    a.poll().unwrap();
    assert_eq!(vm1.take().len(), 2, "{:?}", a.stats());
    // 41000 (fast), the ping (full), 42000 with an option (full), 41000.
    up_a.send(&tunnels[2]);
    up_a.send(&tunnels[3]);
    // Class 0x0102, type 1 (not critical).
    up_a.send(&with_option(&tunnels[4], [0x01, 0x02, 0x01, 0x00]));
    up_a.send(&tunnels[5]);
    a.poll().unwrap();
    let got = vm1.take();
    assert_eq!(got.len(), 4, "{:?}", a.stats());
    for (g, s) in got.iter().zip(&sent[2..]) {
        assert_eq!(&g[0..6], &mac(1), "to vm1");
        assert_eq!(&g[6..12], &GW_MAC, "from the gateway");
        assert_eq!(&g[12..], &s[12..], "the guest's frame as vm2 sent it");
        assert_checksums(g);
    }
    let st = a.port("vm1").unwrap().port.stats();
    let inbound = &st.dir[dataplane::Direction::In.index()];
    assert!(
        inbound.uft_hits >= 2,
        "the two fast-parsed segments of 41000 were UFT hits: {inbound:?}"
    );
}

/// A clock whose every read is `step` ns after the last: each first
/// packet of a port on it costs `step` (its slow path is timed by two
/// reads).
struct Steps(AtomicU64, u64);

impl Clock for Steps {
    fn now(&self) -> Moment {
        self.0.fetch_add(self.1, Ordering::Relaxed)
    }
}

/// vm1's SYN from source port `sport` to vm2 (a new flow each).
fn syn_from(sport: u16) -> Vec<u8> {
    Tcp::new(
        (mac(1), GW_MAC),
        (Ipv4Addr::new(10, 0, 0, 11), sport).into(),
        (Ipv4Addr::new(10, 0, 0, 12), 22).into(),
    )
    .flags("S")
    .build()
}

#[test]
fn a_guest_setting_up_flows_flat_out_waits_while_its_neighbour_has_traffic() {
    let cloud = Cloud::new();
    let (up_a, up_b) = (Wire::new(), Wire::new());
    let mut a = Switch::new(host_ip('a'), Box::new(up_a.backend()));
    let mut b = Switch::new(host_ip('b'), Box::new(up_b.backend()));
    // vm1 floods SYNs, each costing 10 µs on its clock; vm3 (same host)
    // sends an established flow's segments; both to vm2 on host b.
    let (p1, vm1) = cloud.guest_port_clocked('a', 1, Box::new(Steps(AtomicU64::new(0), 10_000)));
    a.attach(p1, Box::new(vm1.backend())).unwrap();
    let vm3 = cloud.guest(&mut a, 'a', 3);
    let _vm2 = cloud.guest(&mut b, 'b', 2);
    vm3.send(&tcp(3, 2, true));
    a.poll().unwrap();
    assert_eq!(up_a.take().len(), 1, "vm3's flow is set up");

    let mut sport = 1000;
    let mut flood = |n: usize| {
        for _ in 0..n {
            vm1.send(&syn_from(sport));
            sport += 1;
        }
    };
    // Round 1: vm1's 32 SYNs take 320 µs, its whole credit and more.
    flood(32);
    vm3.send(&tcp(3, 2, false));
    a.poll().unwrap();
    assert_eq!(up_a.take().len(), 33);
    // While vm3 has traffic, vm1 is not polled: vm3 gets every round.
    for round in 0..20 {
        flood(32);
        for _ in 0..8 {
            vm3.send(&tcp(3, 2, false));
        }
        a.poll().unwrap();
        assert_eq!(up_a.take().len(), 8, "round {round}: vm3's segments only");
    }
    assert_eq!(a.stats().slow_path_deferred, 20);
    let ns = a.port("vm1").unwrap().port.stats().slow_path_ns;
    assert_eq!(ns, 32 * 10_000, "vm1's 32 first packets, 10 µs each");
    // vm3 idle: nobody to protect, vm1's queued SYNs go out again.
    a.poll().unwrap();
    a.poll().unwrap();
    assert_eq!(
        up_a.take().len(),
        32,
        "a burst of vm1's SYNs once vm3 is idle"
    );
}

#[path = "switch/mcast.rs"]
mod mcast;

#[path = "switch/uplinks.rs"]
mod uplinks;
