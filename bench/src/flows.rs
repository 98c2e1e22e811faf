//! The line-rate scenario: one VPC port (vm1) on a host whose guest and
//! uplink are both DPDK devices, and the captures that feed it.
//!
//! - **egress**: vm1's UDP datagrams to `N` distinct internet endpoints
//!   (destination address and port carry the flow number). Each one goes
//!   through the whole VPC egress path: firewall state (outbound
//!   stateful allow), the router's default route to the internet gateway,
//!   SNAT (17 external addresses × 64 512 ports, so 1 M flows fit) and the
//!   Geneve tunnel to the boundary (V2B `0.0.0.0/0`).
//! - **ingress**: Geneve-over-IPv6 frames from the peer host
//!   ([`PEER_HOST`]) carrying UDP datagrams from VPC peers (`10.0.1.x`,
//!   in V2P on that host) to vm1's port [`INBOUND_PORT`], which a firewall
//!   rule allows: decapsulation, the pinned-sender (V2P) check, firewall
//!   state, MAC rewrite. Flow `i` is peer `i / 60 000`, source port
//!   `2000 + i % 60 000`.
//!
//! Inner frames are 60 bytes (64 on the wire with the FCS); ingress frames
//! are those plus the 70-byte IPv6/UDP/Geneve tunnel.

use api::types::{CreateVnic, GuestSpec, V2bRoute, V2bSet, V2pMapping, V2pSet};
use etherparse::PacketBuilder;
use sluice_test_support::Geneve;
use std::io::{self, Write};
use std::net::{Ipv4Addr, Ipv6Addr};

pub const VNI: u32 = 7777;
pub const GUEST_MAC: [u8; 6] = [0xa8, 0x40, 0x25, 0, 0, 1];
pub const GATEWAY_MAC: [u8; 6] = [0xa8, 0x40, 0x25, 0xff, 0xff, 1];
pub const GUEST_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 5);
/// This host's underlay address and MAC (sluiced's `[underlay]`).
pub const HOST: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x99, 0, 0, 0, 0, 0, 0xa);
pub const HOST_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0x10];
/// The underlay next hop (a router).
pub const ROUTER_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0x20];
/// The host of the VPC peers that send the ingress traffic.
pub const PEER_HOST: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x99, 0, 0, 0, 0, 0, 0xb);
/// The internet boundary (V2B `0.0.0.0/0`).
pub const BOUNDARY: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x99, 0, 0, 0, 0, 0, 0xbd);
/// vm1's UDP port the firewall opens to the VPC.
pub const INBOUND_PORT: u16 = 5201;
/// vm1's source port for egress datagrams.
pub const EGRESS_SPORT: u16 = 40000;
/// Ingress flows per VPC peer address (source ports 2000..62000).
pub const FLOWS_PER_PEER: u32 = 60_000;
/// SNAT external addresses (203.0.113.10 ..) of 64 512 ports each: 17
/// cover [`MAX_FLOWS`].
pub const SNAT_ADDRS: u8 = 17;
/// The largest flow count the scenario supports.
pub const MAX_FLOWS: u32 = 1 << 20;
const UDP_PAYLOAD: [u8; 18] = *b"sluice-bench-flow!";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dir {
    Egress,
    Ingress,
    /// vm1 opening TCP connections: a SYN to each of egress's endpoints
    /// (the connection-rate capture, and the SYN flood).
    Connect,
    /// vm2, vm1's neighbour on the host: egress's datagrams from its own
    /// address (the SYN-flood case's established traffic).
    Neighbour,
}

/// vm2, the neighbour (see [`Dir::Neighbour`]).
pub const NEIGHBOUR_MAC: [u8; 6] = [0xa8, 0x40, 0x25, 0, 0, 2];
pub const NEIGHBOUR_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 6);

/// Egress flow `i`'s destination: 100.64.0.0/10 addresses, 1 024 ports
/// each (`i / 1024`, `10000 + i % 1024`).
pub fn egress_dst(i: u32) -> (Ipv4Addr, u16) {
    let host = 0x6440_0001u32 + (i >> 10);
    (Ipv4Addr::from(host), 10_000 + (i & 1023) as u16)
}

/// Ingress flow `i`'s source: a VPC peer and a port.
pub fn ingress_src(i: u32) -> (Ipv4Addr, u16) {
    (
        peer_ip(i / FLOWS_PER_PEER),
        2000 + (i % FLOWS_PER_PEER) as u16,
    )
}

fn peer_ip(n: u32) -> Ipv4Addr {
    Ipv4Addr::new(10, 0, 1, 1 + n as u8)
}

fn peer_mac(n: u32) -> [u8; 6] {
    [0xa8, 0x40, 0x25, 0, 1, 1 + n as u8]
}

/// How many VPC peers `flows` ingress flows need.
pub fn peers(flows: u32) -> u32 {
    flows.div_ceil(FLOWS_PER_PEER).max(1)
}

/// vm1's datagram of egress flow `i`, as the guest sends it.
pub fn egress_frame(i: u32) -> Vec<u8> {
    let (dst, dport) = egress_dst(i);
    let mut v = Vec::with_capacity(64);
    PacketBuilder::ethernet2(GUEST_MAC, GATEWAY_MAC)
        .ipv4(GUEST_IP.octets(), dst.octets(), 64)
        .udp(EGRESS_SPORT, dport)
        .write(&mut v, &UDP_PAYLOAD)
        .expect("writing to a Vec");
    v
}

/// vm2's datagram of its flow `i` (egress flow `i`'s endpoint).
pub fn neighbour_frame(i: u32) -> Vec<u8> {
    let (dst, dport) = egress_dst(i);
    let mut v = Vec::with_capacity(64);
    PacketBuilder::ethernet2(NEIGHBOUR_MAC, GATEWAY_MAC)
        .ipv4(NEIGHBOUR_IP.octets(), dst.octets(), 64)
        .udp(EGRESS_SPORT, dport)
        .write(&mut v, &UDP_PAYLOAD)
        .expect("writing to a Vec");
    v
}

/// vm1's SYN opening connection `i` (to egress flow `i`'s endpoint).
pub fn connect_frame(i: u32) -> Vec<u8> {
    let (dst, dport) = egress_dst(i);
    let mut v = Vec::with_capacity(64);
    PacketBuilder::ethernet2(GUEST_MAC, GATEWAY_MAC)
        .ipv4(GUEST_IP.octets(), dst.octets(), 64)
        .tcp(EGRESS_SPORT, dport, i.wrapping_mul(2_654_435_761), 64240)
        .syn()
        .write(&mut v, &[])
        .expect("writing to a Vec");
    v
}

/// Ingress flow `i`'s datagram as the peer host's tunnel delivers it.
pub fn ingress_frame(i: u32) -> Vec<u8> {
    let (src, sport) = ingress_src(i);
    let peer = i / FLOWS_PER_PEER;
    let mut inner = Vec::with_capacity(64);
    PacketBuilder::ethernet2(peer_mac(peer), GUEST_MAC)
        .ipv4(src.octets(), GUEST_IP.octets(), 64)
        .udp(sport, INBOUND_PORT)
        .write(&mut inner, &UDP_PAYLOAD)
        .expect("writing to a Vec");
    // The outer source port carries the inner flow's entropy, as senders do.
    let entropy = 49152 + (i.wrapping_mul(2_654_435_761) >> 18) as u16;
    // Geneve: no options, Ethernet payload, the VNI.
    Geneve::new(PEER_HOST, HOST, VNI)
        .macs(ROUTER_MAC, HOST_MAC)
        .sport(entropy)
        .wrap(&inner)
}

/// Writes a pcap file (microsecond timestamps, Ethernet) of `flows`
/// frames, one per flow, in flow order.
pub fn write_pcap(out: &mut impl Write, dir: Dir, flows: u32) -> io::Result<()> {
    let mut hdr = Vec::with_capacity(24);
    hdr.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    hdr.extend_from_slice(&2u16.to_le_bytes());
    hdr.extend_from_slice(&4u16.to_le_bytes());
    hdr.extend_from_slice(&0i32.to_le_bytes());
    hdr.extend_from_slice(&0u32.to_le_bytes());
    hdr.extend_from_slice(&65535u32.to_le_bytes());
    hdr.extend_from_slice(&1u32.to_le_bytes());
    out.write_all(&hdr)?;
    for i in 0..flows {
        let f = match dir {
            Dir::Egress => egress_frame(i),
            Dir::Ingress => ingress_frame(i),
            Dir::Connect => connect_frame(i),
            Dir::Neighbour => neighbour_frame(i),
        };
        let mut rec = [0u8; 16];
        rec[4..8].copy_from_slice(&i.to_le_bytes());
        rec[8..12].copy_from_slice(&(f.len() as u32).to_le_bytes());
        rec[12..16].copy_from_slice(&(f.len() as u32).to_le_bytes());
        out.write_all(&rec)?;
        out.write_all(&f)?;
    }
    Ok(())
}

/// vm1 as `POST /ports` takes it, with `guest` as its device and room
/// for `flows` flows.
pub fn vnic(guest: GuestSpec, flows: u32) -> CreateVnic {
    let snat: Vec<serde_json::Value> = (0..SNAT_ADDRS)
        .map(|k| {
            serde_json::json!({
                "ip": Ipv4Addr::new(203, 0, 113, 10 + k).to_string(),
                "first_port": 1024, "last_port": 65535,
            })
        })
        .collect();
    let config = serde_json::from_value(serde_json::json!({
        "name": "vm1",
        "guest_mac": "a8:40:25:00:00:01",
        "gateway_mac": "a8:40:25:ff:ff:01",
        "vni": VNI,
        "ipv4": { "addr": GUEST_IP.to_string(), "subnet": "10.0.0.0/16", "gateway": "10.0.0.1" },
        "routes": [{ "dest": "0.0.0.0/0", "target": "internet_gateway", "class": "system" }],
        "external": { "snat": snat },
        "firewall": [{
            "direction": "in", "priority": 100, "action": "allow",
            "hosts": { "subnet": "10.0.0.0/16" }, "protocol": "udp",
            "ports": { "list": [INBOUND_PORT] },
        }],
        "limits": { "flows": flows.saturating_add(1024).min(4 << 20) },
    }))
    .expect("a valid VNIC document");
    CreateVnic { config, guest }
}

/// vm2 as `POST /ports` takes it: vm1's VPC, policy and routes, its own
/// address and one SNAT address (its flows are few).
pub fn neighbour_vnic(guest: GuestSpec, flows: u32) -> CreateVnic {
    let mut v = vnic(guest, flows);
    let c = &mut v.config;
    c.name = "vm2".into();
    c.guest_mac = vnic::config::MacAddr(NEIGHBOUR_MAC);
    if let Some(v4) = c.ipv4.as_mut() {
        v4.addr = NEIGHBOUR_IP;
    }
    let snat =
        serde_json::json!([{ "ip": "198.51.100.10", "first_port": 1024, "last_port": 65535 }]);
    c.external.snat = serde_json::from_value(snat).expect("a valid SNAT list");
    v
}

/// The V2P mappings of vm1 and vm2 (here) and of the ingress peers (on
/// [`PEER_HOST`]).
pub fn v2p(flows: u32) -> V2pSet {
    let vni = dataplane::Vni::new(VNI).expect("a 24-bit VNI");
    let mut mappings = vec![
        V2pMapping {
            vni,
            ip: GUEST_IP.into(),
            guest_mac: vnic::config::MacAddr(GUEST_MAC),
            host: HOST,
        },
        V2pMapping {
            vni,
            ip: NEIGHBOUR_IP.into(),
            guest_mac: vnic::config::MacAddr(NEIGHBOUR_MAC),
            host: HOST,
        },
    ];
    for n in 0..peers(flows) {
        mappings.push(V2pMapping {
            vni,
            ip: peer_ip(n).into(),
            guest_mac: vnic::config::MacAddr(peer_mac(n)),
            host: PEER_HOST,
        });
    }
    V2pSet { mappings }
}

/// The internet through the boundary.
pub fn v2b() -> V2bSet {
    V2bSet {
        routes: vec![V2bRoute {
            vni: dataplane::Vni::new(VNI).expect("a 24-bit VNI"),
            prefix: "0.0.0.0/0".parse().expect("a prefix"),
            endpoints: vec![BOUNDARY],
        }],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{NetSlice, SlicedPacket, TransportSlice};
    use std::collections::HashSet;

    fn udp4(frame: &[u8]) -> (Ipv4Addr, Ipv4Addr, u16, u16) {
        let p = SlicedPacket::from_ethernet(frame).unwrap();
        let Some(NetSlice::Ipv4(ip)) = p.net else {
            panic!("not IPv4")
        };
        let Some(TransportSlice::Udp(u)) = p.transport else {
            panic!("not UDP")
        };
        let h = ip.header();
        assert_eq!(
            h.header_checksum(),
            h.to_header().calc_header_checksum(),
            "IPv4 checksum"
        );
        (
            h.source_addr(),
            h.destination_addr(),
            u.source_port(),
            u.destination_port(),
        )
    }

    #[test]
    fn egress_frames_are_distinct_guest_flows_to_the_internet() {
        let mut seen = HashSet::new();
        for i in (0..MAX_FLOWS)
            .step_by(997)
            .chain([0, 1023, 1024, MAX_FLOWS - 1])
        {
            let f = egress_frame(i);
            assert_eq!(f.len(), 60, "64 bytes on the wire with the FCS");
            assert_eq!(&f[..6], &GATEWAY_MAC);
            assert_eq!(&f[6..12], &GUEST_MAC);
            let (src, dst, sport, dport) = udp4(&f);
            assert_eq!((src, sport), (GUEST_IP, EGRESS_SPORT));
            assert_eq!((dst, dport), egress_dst(i));
            // Outside the VPC's 10.0.0.0/16: the internet route and SNAT.
            assert_eq!(dst.octets()[0], 100);
            seen.insert((dst, dport));
        }
        assert_eq!(seen.len(), (0..MAX_FLOWS).step_by(997).count() + 3);
    }

    #[test]
    fn ingress_frames_are_geneve_from_the_peer_host_to_the_open_port() {
        let mut seen = HashSet::new();
        for i in (0..MAX_FLOWS).step_by(991).chain([59_999, 60_000]) {
            let f = ingress_frame(i);
            assert_eq!(f.len(), 130);
            let p = SlicedPacket::from_ethernet(&f).unwrap();
            let Some(etherparse::LinkSlice::Ethernet2(eth)) = p.link else {
                panic!("not Ethernet")
            };
            assert_eq!(eth.destination(), HOST_MAC);
            let Some(NetSlice::Ipv6(ip)) = p.net else {
                panic!("not IPv6")
            };
            assert_eq!(ip.header().source_addr(), PEER_HOST);
            assert_eq!(ip.header().destination_addr(), HOST);
            let Some(TransportSlice::Udp(u)) = p.transport else {
                panic!("not UDP")
            };
            assert_eq!(u.destination_port(), 6081);
            // The outer UDP checksum is right (IPv6 requires one).
            sluice_test_support::assert_checksums(&f);
            let g = u.payload();
            assert_eq!(&g[..4], &[0, 0, 0x65, 0x58], "Geneve, Ethernet payload");
            assert_eq!(u32::from_be_bytes([0, g[4], g[5], g[6]]), VNI);
            let inner = &g[8..];
            assert_eq!(&inner[..6], &GUEST_MAC);
            let (src, dst, sport, dport) = udp4(inner);
            assert_eq!((dst, dport), (GUEST_IP, INBOUND_PORT));
            assert_eq!((src, sport), ingress_src(i));
            seen.insert((src, sport));
        }
        assert_eq!(seen.len(), (0..MAX_FLOWS).step_by(991).count() + 2);
        // Every peer of the largest capture is in V2P, on the peer host.
        let set = v2p(MAX_FLOWS);
        let (last, _) = ingress_src(MAX_FLOWS - 1);
        assert!(set
            .mappings
            .iter()
            .any(|m| m.ip == std::net::IpAddr::V4(last) && m.host == PEER_HOST));
    }

    #[test]
    fn the_connect_capture_is_one_syn_per_endpoint() {
        let mut v = Vec::new();
        write_pcap(&mut v, Dir::Connect, 2).unwrap();
        let f = connect_frame(1);
        assert_eq!(v.len(), 24 + 2 * (16 + f.len()));
        let h = etherparse::SlicedPacket::from_ethernet(&f).unwrap();
        let Some(etherparse::TransportSlice::Tcp(t)) = h.transport else {
            panic!("not TCP");
        };
        assert!(t.syn() && !t.ack());
        assert_eq!(
            (t.source_port(), t.destination_port()),
            (EGRESS_SPORT, egress_dst(1).1)
        );
    }

    #[test]
    fn the_neighbour_is_vm1s_policy_with_its_own_addresses() {
        let v = neighbour_vnic(GuestSpec::None, 1024);
        v.config.validate().unwrap();
        assert_eq!(v.config.name, "vm2");
        let (src, dst, _, dport) = udp4(&neighbour_frame(5));
        assert_eq!(src, NEIGHBOUR_IP);
        assert_eq!((dst, dport), egress_dst(5));
        let a = serde_json::to_value(&vnic(GuestSpec::None, 1024).config.external).unwrap();
        let b = serde_json::to_value(&v.config.external).unwrap();
        assert_ne!(a, b, "vm1 and vm2 share no SNAT address");
    }

    #[test]
    fn pcap_holds_one_record_per_flow() {
        let mut v = Vec::new();
        write_pcap(&mut v, Dir::Ingress, 3).unwrap();
        assert_eq!(v.len(), 24 + 3 * (16 + 130));
        assert_eq!(&v[..4], &0xa1b2_c3d4u32.to_le_bytes());
        assert_eq!(&v[24 + 16..24 + 16 + 130], ingress_frame(0).as_slice());
    }

    #[test]
    fn the_vnic_document_is_valid_and_has_room_for_a_million_flows() {
        let v = vnic(GuestSpec::None, MAX_FLOWS);
        v.config.validate().unwrap();
        assert!(v.config.limits.flows >= MAX_FLOWS);
        let ports: u32 = v
            .config
            .external
            .snat
            .iter()
            .map(|s| u32::from(s.last_port - s.first_port) + 1)
            .sum();
        assert!(ports >= MAX_FLOWS);
    }
}
