//! Multicast replayed through the real switch (`sluiceadm replay`'s
//! engine, `api::replay`) from the state document
//! `pcaps/mcast.state.json`: host A with vm1 (the sender), vm3 (subscribed
//! to 239.1.1.1) and vm4 (not subscribed; the same firewall as vm3), M2P
//! 239.1.1.1 -> ff04::1:1 in VPC 7777, and the group forwarded to host B
//! by the underlay group and to host C by head-end replication. The
//! captures are `pcaps/mcast.{guest,uplink}.in.pcap` (made by
//! `gen::mcast`): vm1's two datagrams to the group, and vm2's two from
//! host B (to the underlay group, then as a head-end copy).

use crate::gen::{input_name, pcaps_dir, MCAST_FROM_VM1, MCAST_FROM_VM2, MCAST_SPORT};
use crate::pcapio;
use crate::row;
use crate::tshark;
use crate::view;
use crate::world::*;
use api::replay::{ReplayOptions, ReplayReport};
use std::net::{IpAddr, Ipv6Addr};
use std::path::PathBuf;

/// A folder removed when dropped.
struct Tmp(PathBuf);

impl Tmp {
    fn new(name: &str) -> Tmp {
        let p = std::env::temp_dir().join(format!("sluice-mcast-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        Tmp(p)
    }

    fn out(&self, endpoint: &str) -> PathBuf {
        self.0.join("out").join(format!("{endpoint}.out.pcap"))
    }
}

impl Drop for Tmp {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn replay(dir: &Tmp, verbose: bool) -> ReplayReport {
    let input = |e| pcaps_dir().join(input_name("mcast", e));
    let mut o = ReplayOptions::new(
        pcaps_dir().join("mcast.state.json"),
        vec![
            ("vm1".into(), input(Endpoint::Guest)),
            ("uplink".into(), input(Endpoint::Uplink)),
        ],
        dir.0.join("out"),
    );
    o.underlay_mac = HOST_A_NIC_MAC;
    o.next_hop_mac = UNDERLAY_ROUTER_MAC;
    o.verbose = verbose;
    api::replay::run(&o).expect("replay runs")
}

const GROUP_MAC: [u8; 6] = [0x01, 0x00, 0x5e, 0x01, 0x01, 0x01];
const UNDERLAY_GROUP_MAC: [u8; 6] = [0x33, 0x33, 0x00, 0x01, 0x00, 0x01];

/// One inner datagram to the group as a receiver sees it: from the
/// gateway's MAC to the group's, `src` to 239.1.1.1:6000 from
/// MCAST_SPORT; returns its payload.
fn datagram(bytes: &[u8], src: std::net::Ipv4Addr) -> Vec<u8> {
    let f = view::frame(bytes);
    assert_eq!((f.src_mac, f.dst_mac), (GW_MAC, GROUP_MAC));
    assert_eq!(
        (f.src_ip(), f.dst_ip()),
        (IpAddr::V4(src), IpAddr::V4(MCAST_GROUP))
    );
    assert_eq!(f.udp(), (MCAST_SPORT, MCAST_PORT));
    f.payload
}

/// vm3 (subscribed) receives vm1's two datagrams and vm2's two, each
/// once, from the gateway to the group's MAC; vm4 (not subscribed, same
/// firewall) and vm1 (the sender, not subscribed) receive nothing.
#[test]
fn the_subscriber_gets_every_datagram_and_the_others_none() {
    let dir = Tmp::new("members");
    let r = replay(&dir, false);
    let got: Vec<Vec<u8>> = pcapio::read(&dir.out("vm3"))
        .iter()
        .zip([VM1_IP, VM1_IP, VM2_IP, VM2_IP])
        .map(|(p, src)| datagram(&p.frame, src))
        .collect();
    let want: Vec<Vec<u8>> = MCAST_FROM_VM1
        .iter()
        .chain(&MCAST_FROM_VM2)
        .map(|p| p.to_vec())
        .collect();
    assert_eq!(got, want, "{r:?}");
    assert_eq!(pcapio::read(&dir.out("vm3")).len(), 4);
    for quiet in ["vm1", "vm4"] {
        assert!(
            !dir.out(quiet).exists(),
            "{quiet} was sent something: {r:?}"
        );
        let ep = r.endpoints.iter().find(|e| e.name == quiet).unwrap();
        assert_eq!(ep.frames_out, 0, "{r:?}");
    }
    let vm4 = r.ports.iter().find(|p| p.name == "vm4").unwrap();
    assert_eq!(vm4.stats.inbound.packets, 0, "{r:?}");
    // Copies for local members: vm1's two and the wire's two, all vm3's.
    assert_eq!(r.switch.mcast_local, 4, "{r:?}");
    assert!(r.switch_drops.is_empty(), "{r:?}");
    tshark::expect(
        &dir.out("vm3"),
        &[
            "frame.protocols",
            "eth.dst",
            "ip.src",
            "ip.dst",
            "udp.dstport",
        ],
        &[VM1_IP, VM1_IP, VM2_IP, VM2_IP]
            .iter()
            .map(|s| {
                row![
                    "eth:ethertype:ip:udp:data",
                    "01:00:5e:01:01:01",
                    s,
                    MCAST_GROUP,
                    MCAST_PORT
                ]
            })
            .collect::<Vec<_>>(),
    );
}

/// vm1's datagrams leave per the forwarding table: for each, one
/// unicast copy to host C (`external`) and one tunnel to the underlay
/// group ff04::1:1 for host B (`underlay`), to the group's MAC (RFC 2464
/// §7). What came from the wire is not sent back to it.
#[test]
fn the_uplink_gets_a_head_end_copy_and_one_group_tunnel_per_datagram() {
    let dir = Tmp::new("uplink");
    let r = replay(&dir, false);
    let out = pcapio::read(&dir.out("uplink"));
    assert_eq!(out.len(), 4, "{r:?}");
    let mut seen = Vec::new();
    for (p, (dst, mac)) in out.iter().zip([
        (HOST_C, UNDERLAY_ROUTER_MAC),
        (MCAST_UNDERLAY, UNDERLAY_GROUP_MAC),
        (HOST_C, UNDERLAY_ROUTER_MAC),
        (MCAST_UNDERLAY, UNDERLAY_GROUP_MAC),
    ]) {
        let t = view::tunnel(&p.frame);
        assert_eq!((t.src_mac, t.dst_mac), (HOST_A_NIC_MAC, mac));
        assert_eq!((t.outer_src, t.outer_dst), (HOST_A, dst));
        assert_eq!(t.vni, VPC);
        assert!(t.options.is_empty());
        seen.push(datagram(&t.inner, VM1_IP));
    }
    let want: Vec<Vec<u8>> = [0, 0, 1, 1]
        .iter()
        .map(|&i| MCAST_FROM_VM1[i].to_vec())
        .collect();
    assert_eq!(seen, want);
    assert_eq!((r.switch.mcast_unicast, r.switch.mcast_underlay), (2, 2));
    let host_c: Ipv6Addr = HOST_C;
    let rows: Vec<Vec<String>> = [host_c, MCAST_UNDERLAY, host_c, MCAST_UNDERLAY]
        .iter()
        .map(|d| row![HOST_A, d, VPC, MCAST_GROUP])
        .collect();
    tshark::expect(
        &dir.out("uplink"),
        &["ipv6.src", "ipv6.dst", "geneve.vni", "ip.dst"],
        &rows,
    );
}

/// Frame by frame (`sluiceadm replay --verbose`): each of vm1's
/// datagrams goes to the uplink and vm3; each of vm2's, to vm3 only.
#[test]
fn each_frame_reaches_the_subscriber_and_only_it() {
    let dir = Tmp::new("fates");
    let r = replay(&dir, true);
    let fates: Vec<(&str, &str, Vec<&str>)> = r
        .frames_fate
        .iter()
        .map(|f| {
            (
                f.endpoint.as_str(),
                f.fate,
                f.to.iter().map(String::as_str).collect(),
            )
        })
        .collect();
    assert_eq!(
        fates,
        [
            ("vm1", "forwarded", vec!["uplink", "vm3"]),
            ("vm1", "forwarded", vec!["uplink", "vm3"]),
            ("uplink", "forwarded", vec!["vm3"]),
            ("uplink", "forwarded", vec!["vm3"]),
        ],
        "{r:?}"
    );
}
