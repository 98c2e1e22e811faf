//! The fuzzers' seed inputs under `fuzz/seeds/`, built here (frames with
//! etherparse) so they are reviewable and can be regenerated:
//! `SLUICE_WRITE_FUZZ_SEEDS=1 cargo test -p sluice-tests --test
//! fuzz_regression seeds_are_current` rewrites them.
//!
//! Every frame belongs to the fixed VPC of `checks` (vm1 10.0.0.5 /
//! fd00:7777::5 on host A, vm2 10.0.0.6 / fd00:7777::6 on host B).

use crate::checks::{
    self, BOUNDARY, GUEST_MAC, GW_MAC, HOST_A, HOST_B, HOST_MAC, REMOTE_IP4, REMOTE_IP6,
    ROUTER_MAC, VM1_IP4, VM1_IP6, VM2_IP4, VNI,
};
use etherparse::{Icmpv6Type, PacketBuilder};
use sluice_test_support::Geneve;
use std::net::{Ipv4Addr, Ipv6Addr};

/// The guest's IPv6 link-local address (EUI-64 of its MAC).
fn guest_ll6() -> Ipv6Addr {
    vnic::gateway::link_local_from_mac(GUEST_MAC)
}

fn multicast_mac6(a: Ipv6Addr) -> [u8; 6] {
    let o = a.octets();
    [0x33, 0x33, o[12], o[13], o[14], o[15]]
}

/// The frame a final etherparse builder step writes with `payload`.
macro_rules! frame {
    ($builder:expr, $payload:expr $(,)?) => {{
        let mut v = Vec::new();
        $builder.write(&mut v, $payload).expect("seed frame");
        v
    }};
}

fn tcp4(src: ([u8; 4], u16), dst: ([u8; 4], u16), smac: [u8; 6], dmac: [u8; 6]) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(smac, dmac)
        .ipv4(src.0, dst.0, 64)
        .tcp(src.1, dst.1, 1, 64240)
        .syn();
    frame!(b, &[])
}

fn dhcp4_discover() -> Vec<u8> {
    let mut d = vec![1u8, 1, 6, 0]; // BOOTREQUEST, Ethernet, hlen 6, hops 0
    d.extend_from_slice(&0x1d2c_3b4au32.to_be_bytes()); // xid
    d.extend_from_slice(&[0; 4 + 16]); // secs, flags, ciaddr..giaddr
    d.extend_from_slice(&GUEST_MAC);
    d.resize(236, 0); // chaddr padding, sname, file
    d.extend_from_slice(&[99, 130, 83, 99]); // magic cookie
    d.extend_from_slice(&[53, 1, 1]); // DHCPDISCOVER
    d.extend_from_slice(&[55, 6, 1, 3, 6, 12, 15, 26]); // parameter request list
    d.push(255);
    let b = PacketBuilder::ethernet2(GUEST_MAC, [0xff; 6])
        .ipv4([0; 4], [255; 4], 64)
        .udp(68, 67);
    frame!(b, &d)
}

fn dhcp6_solicit() -> Vec<u8> {
    let servers: Ipv6Addr = "ff02::1:2".parse().expect("address");
    let mut m = vec![1u8, 0x12, 0x34, 0x56]; // SOLICIT, transaction id
    let mut opt = |code: u16, data: &[u8]| {
        m.extend_from_slice(&code.to_be_bytes());
        m.extend_from_slice(&(data.len() as u16).to_be_bytes());
        m.extend_from_slice(data);
    };
    let mut duid = vec![0u8, 3, 0, 1]; // DUID-LL, Ethernet
    duid.extend_from_slice(&GUEST_MAC);
    opt(1, &duid); // client id
    opt(8, &[0, 0]); // elapsed time
    opt(3, &[0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0]); // IA_NA, IAID 1
    let b = PacketBuilder::ethernet2(GUEST_MAC, multicast_mac6(servers))
        .ipv6(guest_ll6().octets(), servers.octets(), 1)
        .udp(546, 547);
    frame!(b, &m)
}

fn ndp_rs() -> Vec<u8> {
    let routers: Ipv6Addr = "ff02::2".parse().expect("address");
    let [a, b, c, d, e, f] = GUEST_MAC;
    let rs = PacketBuilder::ethernet2(GUEST_MAC, multicast_mac6(routers))
        .ipv6(guest_ll6().octets(), routers.octets(), 255)
        .icmpv6(Icmpv6Type::RouterSolicitation);
    frame!(rs, &[1, 1, a, b, c, d, e, f])
}

fn arp_request() -> Vec<u8> {
    sluice_test_support::arp_request(GUEST_MAC, VM1_IP4, Ipv4Addr::new(10, 0, 0, 1))
}

/// ICMP port unreachable quoting a UDP datagram 10.0.0.5:5353 -> 10.0.0.6:53.
fn unreach4_message() -> Vec<u8> {
    let mut m = vec![3, 3, 0, 0, 0, 0, 0, 0];
    let mut ip = vec![0x45, 0, 0, 36, 0, 0, 0, 0, 64, 17, 0, 0];
    ip.extend_from_slice(&VM1_IP4.octets());
    ip.extend_from_slice(&VM2_IP4.octets());
    let c = dataplane::checksum::checksum(&ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    m.extend_from_slice(&ip);
    m.extend_from_slice(&[0x14, 0xe9, 0, 53, 0, 16, 0, 0]);
    let c = dataplane::checksum::checksum(&m);
    m[2..4].copy_from_slice(&c.to_be_bytes());
    m
}

/// ICMPv6 packet too big (MTU 1280) quoting a TCP segment
/// fd00:7777::5:40000 -> 2001:db8::7:443 (checksum left 0).
fn too_big6_message() -> Vec<u8> {
    let mut m = vec![2, 0, 0, 0, 0, 0, 5, 0];
    m.extend_from_slice(&[0x60, 0, 0, 0, 0, 20, 6, 64]);
    m.extend_from_slice(&VM1_IP6.octets());
    m.extend_from_slice(&REMOTE_IP6.octets());
    m.extend_from_slice(&40000u16.to_be_bytes());
    m.extend_from_slice(&443u16.to_be_bytes());
    m.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xfa, 0xf0, 0, 0, 0, 0]);
    m
}

/// A TCP SYN from the internet to vm1's floating IPv6 address, port 22,
/// tunnelled by the boundary with sluice's "external" option.
fn tcp6_from_internet() -> Vec<u8> {
    let floating: Ipv6Addr = "2001:db8:f::10".parse().expect("address");
    let inner = frame!(
        PacketBuilder::ethernet2(GW_MAC, GUEST_MAC)
            .ipv6(REMOTE_IP6.octets(), floating.octets(), 64)
            .tcp(50123, 22, 1, 64240)
            .syn(),
        &[],
    );
    Geneve::new(BOUNDARY, HOST_A, VNI)
        .macs(ROUTER_MAC, HOST_MAC)
        .sport(50001)
        .options(overlay::external_option().as_bytes())
        .wrap(&inner)
}

/// vm2's TCP SYN to vm1:22 as host B tunnels it.
fn tcp4_syn_from_vm2() -> Vec<u8> {
    // As the overlay sends it: from the gateway's MAC to vm1's.
    tcp4(
        (VM2_IP4.octets(), 41000),
        (VM1_IP4.octets(), 22),
        GW_MAC,
        GUEST_MAC,
    )
}

/// Every seed: (folder under `fuzz/seeds/`, file name, bytes).
pub fn all() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    let vm2 = tcp4_syn_from_vm2();
    let wrapped = checks::geneve_wrap(&vm2, HOST_B, HOST_A, VNI).expect("tunnel");
    let config = serde_json::to_string_pretty(&checks::vpc_config()).expect("JSON") + "\n";
    let mut external = dataplane::GeneveOptions::EMPTY;
    external.push(0x0129, 0x05, &[1, 2, 3, 4]).expect("option");
    external
        .push(overlay::SLUICE_OPT_CLASS, overlay::EXTERNAL, &[])
        .expect("option");
    vec![
        (
            "frames",
            "tcp4_syn_vm2.bin",
            tcp4(
                (VM1_IP4.octets(), 40000),
                (VM2_IP4.octets(), 22),
                GUEST_MAC,
                GW_MAC,
            ),
        ),
        (
            "frames",
            "tcp4_syn_internet.bin",
            tcp4(
                (VM1_IP4.octets(), 40001),
                (REMOTE_IP4.octets(), 443),
                GUEST_MAC,
                GW_MAC,
            ),
        ),
        (
            "frames",
            "udp6_internet.bin",
            frame!(
                PacketBuilder::ethernet2(GUEST_MAC, GW_MAC)
                    .ipv6(VM1_IP6.octets(), REMOTE_IP6.octets(), 64)
                    .udp(40002, 53),
                b"dns?",
            ),
        ),
        ("frames", "tcp4_syn_from_vm2.bin", vm2),
        ("frames", "arp_request.bin", arp_request()),
        ("frames", "dhcp4_discover.bin", dhcp4_discover()),
        ("frames", "dhcp6_solicit.bin", dhcp6_solicit()),
        ("frames", "ndp_rs.bin", ndp_rs()),
        (
            "frames",
            "icmp4_echo_gw.bin",
            frame!(
                PacketBuilder::ethernet2(GUEST_MAC, GW_MAC)
                    .ipv4(VM1_IP4.octets(), [10, 0, 0, 1], 64)
                    .icmpv4_echo_request(0x4242, 1),
                b"ping",
            ),
        ),
        ("geneve", "tcp4_from_vm2.bin", wrapped),
        ("geneve", "tcp6_from_internet.bin", tcp6_from_internet()),
        ("icmp", "unreach4.bin", unreach4_message()),
        ("icmp", "too_big6.bin", too_big6_message()),
        (
            "options",
            "external.bin",
            overlay::external_option().as_bytes().to_vec(),
        ),
        ("options", "mixed.bin", external.as_bytes().to_vec()),
        ("config", "vm1.json", config.into_bytes()),
    ]
}
