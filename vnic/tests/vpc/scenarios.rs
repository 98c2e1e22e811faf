use crate::common::*;
use dataplane::Direction;
use std::net::Ipv4Addr;

/// vm1 on host A (10.0.0.5) and vm2 on host B (10.0.0.6), VPC 7777;
/// vm2's firewall lets SSH in from the VPC subnet.
fn two_hosts() -> (Cloud, Guest, Guest) {
    let cloud = Cloud::new();
    cloud.map(VPC, "10.0.0.5", 1, HOST_A);
    cloud.map(VPC, "10.0.0.6", 2, HOST_B);
    let vm1 = guest(
        &vnic_cfg("vm1", 1, "10.0.0.5", VPC),
        &cloud.host(HOST_A),
        "10.0.0.5",
    );
    let mut c2 = vnic_cfg("vm2", 2, "10.0.0.6", VPC);
    c2.firewall = vec![serde_json::from_str(
        r#"{"direction":"in","priority":10,"action":"allow","hosts":{"subnet":"10.0.0.0/24"},"protocol":"tcp","ports":{"list":[22]}}"#,
    )
    .unwrap()];
    let vm2 = guest(&c2, &cloud.host(HOST_B), "10.0.0.6");
    (cloud, vm1, vm2)
}

/// RFC 2131 §4.4.1, RFC 826, RFC 792: a guest's first moments.
#[test]
fn guest_gets_its_address_resolves_and_pings_the_gateway() {
    let (_cloud, mut vm1, _) = two_hosts();
    let offer = vm1.out(&dhcp_discover(mac(1))).expect("an offer");
    let (yiaddr, opts) = dhcp_reply(&offer);
    assert_eq!(yiaddr, Ipv4Addr::new(10, 0, 0, 5));
    let opt = |c: u8| opts.iter().find(|(k, _)| *k == c).map(|(_, v)| v.clone());
    assert_eq!(opt(53), Some(vec![2]), "DHCPOFFER");
    assert_eq!(opt(1), Some(vec![255, 255, 255, 0]));
    assert_eq!(opt(3), Some(vec![10, 0, 0, 1]));
    assert_eq!(opt(6), Some(vec![10, 0, 0, 2]));

    // ARP for the gateway, and proxy ARP for a subnet neighbour.
    for target in ["10.0.0.1", "10.0.0.6"] {
        let req = arp_request(mac(1), "10.0.0.5", target);
        let reply = vm1.out(&req).expect("ARP answered");
        assert_eq!(&reply[0..6], &mac(1), "to the guest");
        assert_eq!(&reply[6..12], &GW_MAC, "from the gateway");
        assert_eq!(&reply[20..22], &[0, 2], "ARP reply");
        assert_eq!(&reply[22..28], &GW_MAC, "the gateway's MAC as the answer");
        assert_eq!(&reply[28..32], &v4(target));
    }
    // Not for the guest's own address.
    assert_eq!(
        vm1.out(&arp_request(mac(1), "10.0.0.5", "10.0.0.5"))
            .unwrap_err(),
        "gateway_not_for_us"
    );

    let mut ping = Vec::new();
    etherparse::PacketBuilder::ethernet2(mac(1), GW_MAC)
        .ipv4(v4("10.0.0.5"), v4("10.0.0.1"), 64)
        .icmpv4_echo_request(7, 1)
        .write(&mut ping, b"hello gateway")
        .unwrap();
    let pong = seen(&vm1.out(&ping).expect("echo reply"));
    assert_eq!((pong.src, pong.dst), (ip("10.0.0.1"), ip("10.0.0.5")));
    assert_eq!(vm1.vnic.port.flow_count(), 0, "hairpins make no flows");
}

fn arp_request(smac: [u8; 6], spa: &str, tpa: &str) -> Vec<u8> {
    sluice_test_support::arp_request(smac, spa.parse().unwrap(), tpa.parse().unwrap())
}

#[test]
fn tcp_to_a_vpc_peer_on_another_host_and_back() {
    let (_cloud, mut vm1, mut vm2) = two_hosts();
    let syn = vm1.tcp(("10.0.0.6", 22), 40000, "S");
    let wire = vm1.out(&syn).expect("vm1's SYN leaves");
    let t = tunnel(&wire);
    assert_eq!(
        (t.outer_src, t.outer_dst, t.vni),
        (HOST_A.parse().unwrap(), HOST_B.parse().unwrap(), VPC)
    );
    assert!(
        t.options.is_empty(),
        "VPC traffic carries no external option"
    );
    let s = seen(&t.inner);
    assert_eq!(
        (s.src_mac, s.dst_mac),
        (GW_MAC, mac(2)),
        "addressed as routed by the gateway to vm2"
    );

    let at_vm2 = seen(&vm2.inb(&wire).expect("vm2's firewall lets SSH in"));
    assert_eq!(
        (at_vm2.src, at_vm2.dst, at_vm2.dport),
        (ip("10.0.0.5"), ip("10.0.0.6"), 22)
    );
    assert_eq!((at_vm2.src_mac, at_vm2.dst_mac), (GW_MAC, mac(2)));

    // vm2 answers; the reply crosses back and reaches vm1.
    let synack = vm2.tcp(("10.0.0.5", 40000), 22, "SA");
    let back = vm2.out(&synack).expect("reply leaves");
    assert_eq!(
        tunnel(&back).outer_dst,
        HOST_A.parse::<std::net::Ipv6Addr>().unwrap()
    );
    let at_vm1 = seen(&vm1.inb(&back).expect("the reply of an allowed flow passes"));
    assert_eq!(
        (at_vm1.src, at_vm1.sport, at_vm1.dst_mac),
        (ip("10.0.0.6"), 22, mac(1))
    );

    // A port vm2 does not open is refused by its firewall.
    let wire = vm1.out(&vm1.tcp(("10.0.0.6", 80), 40001, "S")).unwrap();
    assert_eq!(vm2.inb(&wire).unwrap_err(), "default_denied");
}

#[test]
fn the_guest_sends_only_as_itself() {
    let (_cloud, mut vm1, _) = two_hosts();
    let wrong_mac = tcp(mac(9), GW_MAC, ("10.0.0.5", 1), ("10.0.0.6", 22), "S");
    assert_eq!(vm1.out(&wrong_mac).unwrap_err(), "spoofed_source_mac");
    let wrong_ip = tcp(mac(1), GW_MAC, ("10.0.0.99", 1), ("10.0.0.6", 22), "S");
    assert_eq!(vm1.out(&wrong_ip).unwrap_err(), "spoofed_source_ip");
    let bcast = tcp(mac(1), GW_MAC, ("10.0.0.5", 1), ("10.0.0.255", 22), "S");
    assert_eq!(vm1.out(&bcast).unwrap_err(), "multicast");
    // A group without an M2P entry in the VNI is still dropped as
    // `multicast` (the overlay's check); a link-local group always is
    // (RFC 5771 §4), by the gateway.
    let mcast = tcp(mac(1), GW_MAC, ("10.0.0.5", 1), ("239.1.1.1", 22), "S");
    assert_eq!(vm1.out(&mcast).unwrap_err(), "multicast");
    let ll = tcp(mac(1), GW_MAC, ("10.0.0.5", 1), ("224.0.0.251", 22), "S");
    assert_eq!(vm1.out(&ll).unwrap_err(), "multicast");
    let mut lldp = vec![0u8; 60];
    lldp[0..6].copy_from_slice(&[0x01, 0x80, 0xc2, 0, 0, 0x0e]);
    lldp[6..12].copy_from_slice(&mac(1));
    lldp[12..14].copy_from_slice(&0x88ccu16.to_be_bytes());
    assert_eq!(vm1.out(&lldp).unwrap_err(), "unsupported_ethertype");
    // A frame of an established flow from another MAC is refused too: it
    // does not take the flow's table entry.
    let syn = tcp(mac(1), GW_MAC, ("10.0.0.5", 2), ("10.0.0.6", 22), "S");
    vm1.out(&syn).expect("vm1's own SYN leaves");
    let ack = tcp(mac(1), GW_MAC, ("10.0.0.5", 2), ("10.0.0.6", 22), "A");
    vm1.out(&ack).expect("and its flow's next segment");
    let spoofed = tcp(mac(9), GW_MAC, ("10.0.0.5", 2), ("10.0.0.6", 22), "A");
    assert_eq!(vm1.out(&spoofed).unwrap_err(), "spoofed_source_mac");
    vm1.out(&ack).expect("the flow itself still passes");
    let counts = vm1.vnic.port.stats().drop_counts();
    for name in [
        "spoofed_source_mac",
        "spoofed_source_ip",
        "multicast",
        "unsupported_ethertype",
    ] {
        assert!(
            counts.iter().any(|(n, c)| *n == name && *c > 0),
            "{name} counted: {counts:?}"
        );
    }
}

#[test]
fn inbound_tunnels_are_checked() {
    let (_cloud, mut vm1, mut vm2) = two_hosts();
    let inner = tcp(mac(1), GW_MAC, ("10.0.0.5", 40000), ("10.0.0.6", 22), "S");
    // The right packet from the right host passes.
    assert!(vm2.inb(&wrap(&inner, HOST_A, HOST_B, VPC)).is_ok());
    // Claiming vm1's address from another host.
    assert_eq!(
        vm2.inb(&wrap(&inner, HOST_C, HOST_B, VPC)).unwrap_err(),
        "spoofed_overlay_source"
    );
    // Another VPC's VNI.
    assert_eq!(
        vm2.inb(&wrap(&inner, HOST_A, HOST_B, OTHER_VPC))
            .unwrap_err(),
        "wrong_vni"
    );
    // To another host's underlay address (a new flow: the switch checks
    // the outer destination of every packet before demux, DESIGN.md; the
    // layer's rule guards flows that would otherwise be set up).
    let fresh = tcp(mac(1), GW_MAC, ("10.0.0.5", 40001), ("10.0.0.6", 22), "S");
    assert_eq!(
        vm2.inb(&wrap(&fresh, HOST_A, HOST_C, VPC)).unwrap_err(),
        "not_our_underlay_address"
    );
    // Not for vm2.
    let other = tcp(mac(1), GW_MAC, ("10.0.0.5", 40000), ("10.0.0.7", 22), "S");
    assert_eq!(
        vm2.inb(&wrap(&other, HOST_A, HOST_B, VPC)).unwrap_err(),
        "not_for_guest"
    );
    // Not a tunnel at all.
    assert_eq!(vm1.inb(&inner).unwrap_err(), "malformed.not_geneve");
}

#[test]
fn another_vpc_with_the_same_addresses_sees_nothing() {
    let (cloud, mut vm1, _vm2) = two_hosts();
    // VPC 8888 reuses 10.0.0.6 on host B.
    cloud.map(OTHER_VPC, "10.0.0.6", 3, HOST_B);
    let mut c3 = vnic_cfg("vm3", 3, "10.0.0.6", OTHER_VPC);
    c3.firewall =
        vec![serde_json::from_str(r#"{"direction":"in","priority":1,"action":"allow"}"#).unwrap()];
    let mut vm3 = guest(&c3, &cloud.host(HOST_B), "10.0.0.6");
    let wire = vm1.out(&vm1.tcp(("10.0.0.6", 22), 40000, "S")).unwrap();
    assert_eq!(tunnel(&wire).vni, VPC);
    assert_eq!(
        vm3.inb(&wire).unwrap_err(),
        "wrong_vni",
        "VPC 7777's packet is not VPC 8888's"
    );
    // And vm3's own traffic to 10.0.0.5 finds no mapping in its VPC.
    assert_eq!(
        vm3.out(&vm3.tcp(("10.0.0.5", 22), 1, "S")).unwrap_err(),
        "no_v2p_mapping"
    );
}

#[test]
fn a_moved_peer_is_followed_by_established_flows() {
    let (cloud, mut vm1, _) = two_hosts();
    let ack = vm1.tcp(("10.0.0.6", 22), 40000, "A");
    assert_eq!(
        tunnel(&vm1.out(&ack).unwrap()).outer_dst,
        HOST_B.parse::<std::net::Ipv6Addr>().unwrap()
    );
    assert_eq!(
        tunnel(&vm1.out(&ack).unwrap()).outer_dst,
        HOST_B.parse::<std::net::Ipv6Addr>().unwrap()
    );
    // vm2 migrates to host C: the flow's next packet goes there.
    cloud.map(VPC, "10.0.0.6", 2, HOST_C);
    assert_eq!(
        tunnel(&vm1.out(&ack).unwrap()).outer_dst,
        HOST_C.parse::<std::net::Ipv6Addr>().unwrap()
    );
    // Its mapping removed: the flow stops, with a reason.
    cloud
        .v2p
        .clear(dataplane::Vni::new(VPC).unwrap(), ip("10.0.0.6"));
    assert_eq!(vm1.out(&ack).unwrap_err(), "no_v2p_mapping");
}

#[test]
fn firewall_blocks_then_allows_inbound_after_a_rule_change() {
    let (cloud, mut vm1, mut vm2) = two_hosts();
    let wire = vm1.out(&vm1.tcp(("10.0.0.6", 8080), 40000, "S")).unwrap();
    assert_eq!(vm2.inb(&wire).unwrap_err(), "default_denied");
    let mut c2 = vnic_cfg("vm2", 2, "10.0.0.6", VPC);
    c2.firewall = vec![serde_json::from_str(
        r#"{"direction":"in","priority":10,"action":"allow","protocol":"tcp","ports":{"range":{"first":8000,"last":8999}}}"#,
    )
    .unwrap()];
    let _ = &cloud;
    vm2.vnic.reconfigure(&c2).unwrap();
    assert!(vm2.inb(&wire).is_ok(), "allowed after the change");
    let _ = Direction::In;
}

/// What the boundary would deliver back from the internet.
fn from_internet(inner: &[u8]) -> Vec<u8> {
    wrap(inner, BOUNDARY, HOST_A, VPC)
}

#[test]
fn internet_through_snat_and_the_boundary() {
    let (_cloud, mut vm1, _) = two_hosts();
    let wire = vm1
        .out(&vm1.tcp(("198.51.100.7", 443), 40000, "S"))
        .expect("leaves for the internet");
    let t = tunnel(&wire);
    assert_eq!(
        t.outer_dst,
        BOUNDARY.parse::<std::net::Ipv6Addr>().unwrap(),
        "to the boundary V2B names"
    );
    assert_eq!(
        &t.options[0..3],
        &[0xff, 0x59, 0x01],
        "marked external (sluice class, type 1)"
    );
    let s = seen(&t.inner);
    assert_eq!(
        (s.src, s.dst, s.dport),
        (ip("203.0.113.10"), ip("198.51.100.7"), 443),
        "the internet sees the SNAT address"
    );
    let ext_port = s.sport;
    assert!(
        (2048..=2111).contains(&ext_port),
        "from the vNIC's port range: {ext_port}"
    );

    // The server's answer, to the external address and port.
    let reply = tcp(
        GW_MAC,
        mac(1),
        ("198.51.100.7", 443),
        ("203.0.113.10", ext_port),
        "SA",
    );
    let back = seen(
        &vm1.inb(&from_internet(&reply))
            .expect("the reply reaches vm1"),
    );
    assert_eq!(
        (back.dst, back.dport, back.src),
        (ip("10.0.0.5"), 40000, ip("198.51.100.7"))
    );

    // Nobody else gets in through the SNAT address.
    let stray = tcp(
        GW_MAC,
        mac(1),
        ("198.51.100.8", 443),
        ("203.0.113.10", ext_port + 1),
        "S",
    );
    assert_eq!(
        vm1.inb(&from_internet(&stray)).unwrap_err(),
        "nat_unsolicited"
    );
    // Nor through a host that is not the boundary for that source.
    assert_eq!(
        vm1.inb(&wrap(&reply, HOST_C, HOST_A, VPC)).unwrap_err(),
        "spoofed_overlay_source"
    );
}

#[test]
fn a_floating_ip_is_reachable_from_the_internet() {
    let cloud = Cloud::new();
    cloud.map(VPC, "10.0.0.5", 1, HOST_A);
    let mut c = vnic_cfg("vm1", 1, "10.0.0.5", VPC);
    c.external.floating = vec![ip("203.0.113.50")];
    c.firewall = vec![serde_json::from_str(
        r#"{"direction":"in","priority":10,"action":"allow","protocol":"tcp","ports":{"list":[80]}}"#,
    )
    .unwrap()];
    let mut vm1 = guest(&c, &cloud.host(HOST_A), "10.0.0.5");
    let syn = tcp(
        GW_MAC,
        mac(1),
        ("198.51.100.7", 55000),
        ("203.0.113.50", 80),
        "S",
    );
    let at_vm1 = seen(
        &vm1.inb(&from_internet(&syn))
            .expect("the floating IP leads to vm1"),
    );
    assert_eq!(
        (at_vm1.dst, at_vm1.dport, at_vm1.dst_mac),
        (ip("10.0.0.5"), 80, mac(1))
    );
    let wire = vm1
        .out(&vm1.tcp(("198.51.100.7", 55000), 80, "SA"))
        .expect("the answer leaves");
    let s = seen(&tunnel(&wire).inner);
    assert_eq!(
        (s.src, s.sport),
        (ip("203.0.113.50"), 80),
        "from the floating IP"
    );
    // Outbound connections use the floating IP too (preferred over SNAT).
    let wire = vm1
        .out(&vm1.tcp(("198.51.100.9", 443), 41000, "S"))
        .unwrap();
    let s = seen(&tunnel(&wire).inner);
    assert_eq!((s.src, s.sport), (ip("203.0.113.50"), 41000));
    // Ports the firewall does not open stay closed.
    let ssh = tcp(
        GW_MAC,
        mac(1),
        ("198.51.100.7", 55001),
        ("203.0.113.50", 22),
        "S",
    );
    assert_eq!(vm1.inb(&from_internet(&ssh)).unwrap_err(), "default_denied");
}

#[test]
fn snat_exhaustion_drops_new_flows_only() {
    let cloud = Cloud::new();
    cloud.map(VPC, "10.0.0.5", 1, HOST_A);
    let mut c = vnic_cfg("vm1", 1, "10.0.0.5", VPC);
    c.external.snat[0].first_port = 5000;
    c.external.snat[0].last_port = 5001;
    let mut vm1 = guest(&c, &cloud.host(HOST_A), "10.0.0.5");
    let a = vm1.tcp(("198.51.100.7", 443), 1, "S");
    let b = vm1.tcp(("198.51.100.7", 443), 2, "S");
    assert!(vm1.out(&a).is_ok());
    assert!(vm1.out(&b).is_ok());
    assert_eq!(
        vm1.out(&vm1.tcp(("198.51.100.7", 443), 3, "S"))
            .unwrap_err(),
        "exhausted"
    );
    assert!(vm1.out(&a).is_ok(), "established flows keep working");
    // Half-open flows expire after 5 s and give their ports back.
    vm1.clock.advance_secs(6);
    vm1.vnic.port.expire();
    assert!(vm1.out(&vm1.tcp(("198.51.100.7", 443), 3, "S")).is_ok());
}

/// RFC 8926 §3.5: a tunnel endpoint drops packets with critical options
/// it does not understand.
#[test]
fn unknown_critical_geneve_options_fail_closed() {
    let (_cloud, mut vm1, mut vm2) = two_hosts();
    let wire = vm1.out(&vm1.tcp(("10.0.0.6", 22), 40000, "S")).unwrap();
    let mut crit = wire.clone();
    // Set the C bit in the Geneve header (after Ethernet 14, IPv6 40, UDP 8).
    crit[62 + 1] |= 0x40;
    // Fix the outer UDP checksum for the changed byte (RFC 1624).
    let old = u16::from_be_bytes([wire[62], wire[63]]);
    let new = u16::from_be_bytes([crit[62], crit[63]]);
    let d = dataplane::checksum::CsumDelta::between(&old.to_be_bytes(), &new.to_be_bytes());
    let c = d.apply(u16::from_be_bytes([crit[60], crit[61]]));
    crit[60..62].copy_from_slice(&c.to_be_bytes());
    assert_eq!(
        vm2.inb(&crit).unwrap_err(),
        "geneve_unknown_critical_option"
    );
    assert!(
        vm2.inb(&wire).is_ok(),
        "the same packet without the C bit passes"
    );
}

/// RFC 1191: a guest frame over its MTU is answered with ICMP
/// "fragmentation needed" carrying the MTU, never forwarded, even on an
/// established flow.
#[test]
fn oversize_frames_get_fragmentation_needed() {
    let (_cloud, mut vm1, _) = two_hosts();
    let small = vm1.tcp(("10.0.0.6", 22), 40000, "A");
    assert!(vm1.out(&small).is_ok());
    let mut big = Vec::new();
    etherparse::PacketBuilder::ethernet2(mac(1), GW_MAC)
        .ipv4(v4("10.0.0.5"), v4("10.0.0.6"), 64)
        .tcp(40000, 22, 1, 64240)
        .ack(1)
        .write(&mut big, &[0u8; 1500])
        .unwrap();
    assert!(big.len() > 14 + 1500);
    let icmp = vm1.out(&big).expect("answered");
    let p = etherparse::PacketHeaders::from_ethernet_slice(&icmp).unwrap();
    let Some(etherparse::NetHeaders::Ipv4(ip4, _)) = &p.net else {
        panic!("IPv4")
    };
    assert_eq!(
        (ip4.source, ip4.destination),
        (v4("10.0.0.1"), v4("10.0.0.5"))
    );
    let Some(etherparse::TransportHeader::Icmpv4(h)) = &p.transport else {
        panic!("ICMP")
    };
    match &h.icmp_type {
        etherparse::Icmpv4Type::DestinationUnreachable(
            etherparse::icmpv4::DestUnreachableHeader::FragmentationNeeded { next_hop_mtu },
        ) => assert_eq!(*next_hop_mtu, 1500),
        other => panic!("{other:?}"),
    }
    // Without DF there is nothing to tell the guest: dropped, counted.
    let mut no_df = big.clone();
    no_df[20] &= !0x40;
    no_df[24..26].copy_from_slice(&[0, 0]);
    let c = dataplane::checksum::checksum(&no_df[14..34]);
    no_df[24..26].copy_from_slice(&c.to_be_bytes());
    assert_eq!(vm1.out(&no_df).unwrap_err(), "oversize");
}

#[test]
fn guest_mtu_must_fit_the_underlay() {
    let c = vnic_cfg("vm1", 1, "10.0.0.5", VPC);
    assert_eq!(c.check_underlay_mtu(1500).unwrap_err().field, "mtu");
    c.check_underlay_mtu(9000).unwrap();
    let mut c = c;
    c.mtu = 1426;
    c.check_underlay_mtu(1500).unwrap();
    c.mtu = 1427;
    assert!(c.check_underlay_mtu(1500).is_err());
}

/// Two vNICs of one VPC on one host: the tunnel is addressed to the host
/// itself, which the switch delivers locally (demux by VNI and inner
/// destination MAC) without touching the wire.
#[test]
fn same_host_peers_reach_each_other_without_the_wire() {
    let (cloud, mut vm1, _) = two_hosts();
    cloud.map(VPC, "10.0.0.8", 4, HOST_A);
    let mut c4 = vnic_cfg("vm4", 4, "10.0.0.8", VPC);
    c4.firewall =
        vec![serde_json::from_str(r#"{"direction":"in","priority":1,"action":"allow"}"#).unwrap()];
    let mut vm4 = guest(&c4, &cloud.host(HOST_A), "10.0.0.8");
    let wire = vm1.out(&vm1.tcp(("10.0.0.8", 22), 40000, "S")).unwrap();
    let t = tunnel(&wire);
    assert_eq!(
        t.outer_dst,
        HOST_A.parse::<std::net::Ipv6Addr>().unwrap(),
        "addressed to this very host"
    );
    assert_eq!(
        (t.vni, &seen(&t.inner).dst_mac),
        (VPC, &mac(4)),
        "the demux key: VNI and vm4's MAC"
    );
    let at_vm4 = seen(&vm4.inb(&wire).expect("delivered to vm4"));
    assert_eq!((at_vm4.src, at_vm4.dst), (ip("10.0.0.5"), ip("10.0.0.8")));
    let back = vm4.out(&vm4.tcp(("10.0.0.5", 40000), 22, "SA")).unwrap();
    assert!(vm1.inb(&back).is_ok());
}

fn dual_stack(name: &str, last: u8, v4addr: &str, v6addr: &str) -> vnic::config::VnicConfig {
    let mut c = vnic_cfg(name, last, v4addr, VPC);
    c.ipv6 = Some(vnic::config::Ipv6Config {
        addr: v6addr.parse().unwrap(),
        subnet: "fd00:1::/64".parse().unwrap(),
        gateway: "fd00:1::1".parse().unwrap(),
    });
    c
}

/// An ICMPv6 message with a valid checksum, hop limit 255 (RFC 4861 §6.1).
fn icmp6(src_mac: [u8; 6], dst_mac: [u8; 6], src: &str, dst: &str, ty: u8, body: &[u8]) -> Vec<u8> {
    let (s, d): (std::net::Ipv6Addr, std::net::Ipv6Addr) =
        (src.parse().unwrap(), dst.parse().unwrap());
    let mut msg = vec![ty, 0, 0, 0];
    msg.extend_from_slice(body);
    let sum = sluice_test_support::checksum::transport(&s.octets(), &d.octets(), 58, &msg, None);
    msg[2..4].copy_from_slice(&sum.to_be_bytes());
    let mut v = Vec::new();
    v.extend_from_slice(&dst_mac);
    v.extend_from_slice(&src_mac);
    v.extend_from_slice(&0x86ddu16.to_be_bytes());
    v.extend_from_slice(&[0x60, 0, 0, 0]);
    v.extend_from_slice(&(msg.len() as u16).to_be_bytes());
    v.extend_from_slice(&[58, 255]);
    v.extend_from_slice(&s.octets());
    v.extend_from_slice(&d.octets());
    v.extend_from_slice(&msg);
    v
}

/// RFC 4861 §6.3.7, §7.2.4 and RFC 4443 §4.1 through the whole port.
#[test]
fn ipv6_guest_finds_its_router_and_pings_it() {
    let cloud = Cloud::new();
    cloud.map(VPC, "10.0.0.5", 1, HOST_A);
    let mut vm1 = guest(
        &dual_stack("vm1", 1, "10.0.0.5", "fd00:1::5"),
        &cloud.host(HOST_A),
        "10.0.0.5",
    );
    let ll = "fe80::aa40:25ff:fe00:1";
    // Router solicitation (with the source link-layer option).
    let mut rs_body = vec![0u8; 4];
    rs_body.extend_from_slice(&[1, 1]);
    rs_body.extend_from_slice(&mac(1));
    let ra = vm1
        .out(&icmp6(
            mac(1),
            [0x33, 0x33, 0, 0, 0, 2],
            ll,
            "ff02::2",
            133,
            &rs_body,
        ))
        .expect("an RA");
    assert_eq!(ra[54], 134, "router advertisement");
    assert_eq!(ra[21], 255, "hop limit 255");
    // Neighbour solicitation for the gateway.
    let target: std::net::Ipv6Addr = "fd00:1::1".parse().unwrap();
    let mut ns_body = vec![0u8; 4];
    ns_body.extend_from_slice(&target.octets());
    ns_body.extend_from_slice(&[1, 1]);
    ns_body.extend_from_slice(&mac(1));
    let na = vm1
        .out(&icmp6(
            mac(1),
            [0x33, 0x33, 0xff, 0, 0, 1],
            ll,
            "ff02::1:ff00:1",
            135,
            &ns_body,
        ))
        .expect("an NA");
    assert_eq!(na[54], 136);
    assert_eq!(&na[62..78], &target.octets());
    // Echo to the gateway's address.
    let echo = icmp6(
        mac(1),
        GW_MAC,
        "fd00:1::5",
        "fd00:1::1",
        128,
        &[0, 7, 0, 1, 1, 2, 3, 4],
    );
    let reply = vm1.out(&echo).expect("echo reply");
    assert_eq!(reply[54], 129);
}

#[test]
fn ipv6_tcp_to_a_vpc_peer() {
    let cloud = Cloud::new();
    cloud.map(VPC, "fd00:1::5", 1, HOST_A);
    cloud.map(VPC, "fd00:1::6", 2, HOST_B);
    let mut vm1 = guest(
        &dual_stack("vm1", 1, "10.0.0.5", "fd00:1::5"),
        &cloud.host(HOST_A),
        "10.0.0.5",
    );
    let mut c2 = dual_stack("vm2", 2, "10.0.0.6", "fd00:1::6");
    c2.firewall = vec![serde_json::from_str(
        r#"{"direction":"in","priority":1,"action":"allow","protocol":"tcp"}"#,
    )
    .unwrap()];
    let mut vm2 = guest(&c2, &cloud.host(HOST_B), "10.0.0.6");
    let mut syn = Vec::new();
    etherparse::PacketBuilder::ethernet2(mac(1), GW_MAC)
        .ipv6(
            "fd00:1::5".parse::<std::net::Ipv6Addr>().unwrap().octets(),
            "fd00:1::6".parse::<std::net::Ipv6Addr>().unwrap().octets(),
            64,
        )
        .tcp(40000, 22, 1, 1000)
        .syn()
        .write(&mut syn, b"v6")
        .unwrap();
    let wire = vm1.out(&syn).unwrap();
    assert_eq!(
        tunnel(&wire).outer_dst,
        HOST_B.parse::<std::net::Ipv6Addr>().unwrap()
    );
    let at_vm2 = vm2.inb(&wire).expect("delivered");
    let p = etherparse::PacketHeaders::from_ethernet_slice(&at_vm2).unwrap();
    let Some(etherparse::NetHeaders::Ipv6(ip6, _)) = &p.net else {
        panic!()
    };
    assert_eq!(
        ip6.destination,
        "fd00:1::6".parse::<std::net::Ipv6Addr>().unwrap().octets()
    );
}

/// The remaining drop paths, each through a whole port.
#[test]
fn every_vpc_drop_path_is_named() {
    let cloud = Cloud::new();
    cloud.map(VPC, "10.0.0.5", 1, HOST_A);
    cloud.map(VPC, "10.0.0.6", 2, HOST_B);
    // No default route: internet destinations have no route.
    let mut c = vnic_cfg("vm1", 1, "10.0.0.5", VPC);
    c.routes.clear();
    c.firewall = vec![serde_json::from_str(
        r#"{"direction":"out","priority":1,"action":"deny","protocol":"udp","ports":{"list":[53]}}"#,
    )
    .unwrap()];
    let mut vm1 = guest(&c, &cloud.host(HOST_A), "10.0.0.5");
    assert_eq!(
        vm1.out(&vm1.tcp(("8.8.8.8", 443), 1, "S")).unwrap_err(),
        "default_denied",
        "no route"
    );
    let mut dns = Vec::new();
    etherparse::PacketBuilder::ethernet2(mac(1), GW_MAC)
        .ipv4(v4("10.0.0.5"), v4("10.0.0.6"), 64)
        .udp(5353, 53)
        .write(&mut dns, b"q")
        .unwrap();
    assert_eq!(
        vm1.out(&dns).unwrap_err(),
        "denied",
        "the firewall's deny rule"
    );

    // A VPC whose boundary mapping is gone.
    let mut vm = guest(
        &vnic_cfg("vmx", 1, "10.0.0.5", VPC),
        &cloud.host(HOST_A),
        "10.0.0.5",
    );
    cloud.v2b.clear(
        dataplane::Vni::new(VPC).unwrap(),
        "0.0.0.0/0".parse().unwrap(),
    );
    assert_eq!(
        vm.out(&vm.tcp(("8.8.8.8", 443), 1, "S")).unwrap_err(),
        "no_v2b_mapping"
    );
    // An encapsulated frame that is not IP.
    let mut arp = vec![0u8; 42];
    arp[0..6].copy_from_slice(&mac(1));
    arp[6..12].copy_from_slice(&mac(2));
    arp[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
    arp[14..22].copy_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
    assert_eq!(
        vm.inb(&wrap(&arp, HOST_B, HOST_A, VPC)).unwrap_err(),
        "overlay_not_ip"
    );
}

/// A rule-set replace is atomic and retroactive: an established flow the
/// new set no longer allows stops at its next packet; a flow it still
/// allows goes on untouched.
#[test]
fn replacing_the_firewall_stops_flows_it_no_longer_allows() {
    let (_cloud, mut vm1, mut vm2) = two_hosts();
    let rule = |ports: &str| -> vnic::firewall::FirewallRule {
        serde_json::from_str(&format!(
            r#"{{"direction":"in","priority":10,"action":"allow","protocol":"tcp","ports":{{"list":[{ports}]}}}}"#
        ))
        .unwrap()
    };
    let mut c2 = vm2.vnic.config().clone();
    c2.firewall = vec![rule("22, 2222")];
    vm2.vnic.reconfigure(&c2).unwrap();
    // Two established flows into vm2: to 22 and to 2222.
    let mut data = Vec::new();
    for dport in [22, 2222] {
        let wire = vm1.out(&vm1.tcp(("10.0.0.6", dport), 40000, "S")).unwrap();
        vm2.inb(&wire).expect("allowed in");
        vm2.out(&vm2.tcp(("10.0.0.5", 40000), dport, "SA"))
            .expect("reply out");
        data.push(vm1.out(&vm1.tcp(("10.0.0.6", dport), 40000, "A")).unwrap());
    }
    // The new set allows only 2222.
    c2.firewall = vec![rule("2222")];
    vm2.vnic.reconfigure(&c2).unwrap();
    assert_eq!(
        vm2.inb(&data[0]).unwrap_err(),
        "default_denied",
        "the SSH flow stops"
    );
    assert!(vm2.inb(&data[1]).is_ok(), "the 2222 flow goes on");
    let s = vm2.vnic.port.stats();
    assert!(
        s.revalidations >= 2,
        "both flows were re-checked: {}",
        s.revalidations
    );
}

/// An ICMP error message quoting `quoted` (the offending packet's IP
/// header and beyond), from `router` to `to`.
fn icmp_error(ty: etherparse::Icmpv4Type, router: &str, to: &str, quoted: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    etherparse::PacketBuilder::ethernet2(GW_MAC, mac(1))
        .ipv4(v4(router), v4(to), 64)
        .icmpv4(ty)
        .write(&mut v, quoted)
        .unwrap();
    v
}

fn udp(smac: [u8; 6], src: (&str, u16), dst: (&str, u16)) -> Vec<u8> {
    let sock = |(a, p): (&str, u16)| std::net::SocketAddr::new(ip(a), p);
    sluice_test_support::udp((smac, GW_MAC), sock(src), sock(dst), b"query")
}

/// The IP header and first 8 payload bytes of a frame (RFC 792 quoting).
fn quote(frame: &[u8]) -> Vec<u8> {
    frame[14..14 + 28].to_vec()
}

/// The quoted packet inside an ICMPv4 error frame, with its header
/// checksum checked.
fn quoted_of(frame: &[u8]) -> (std::net::IpAddr, u16, std::net::IpAddr, u16) {
    let q = &frame[14 + 20 + 8..];
    assert_eq!(
        sluice_test_support::checksum::sum(&q[..20]),
        0xffff,
        "quoted IPv4 header checksum"
    );
    let a = |o: usize| ip(&std::net::Ipv4Addr::new(q[o], q[o + 1], q[o + 2], q[o + 3]).to_string());
    (
        a(12),
        u16::from_be_bytes([q[20], q[21]]),
        a(16),
        u16::from_be_bytes([q[22], q[23]]),
    )
}

/// RFC 1191 through NAT: a router on the internet says the SNAT'd flow's
/// packets are too big; the guest gets the error about *its* packet.
#[test]
fn icmp_errors_about_a_natted_flow_reach_the_guest_translated() {
    let (_cloud, mut vm1, _) = two_hosts();
    let q = udp(mac(1), ("10.0.0.5", 5353), ("198.51.100.7", 53));
    let wire = vm1.out(&q).unwrap();
    let sent = tunnel(&wire).inner;
    let ext_port = seen(&sent).sport;
    let frag_needed = etherparse::Icmpv4Type::DestinationUnreachable(
        etherparse::icmpv4::DestUnreachableHeader::FragmentationNeeded { next_hop_mtu: 1400 },
    );
    let err = icmp_error(
        frag_needed.clone(),
        "192.0.2.254",
        "203.0.113.10",
        &quote(&sent),
    );
    let before = vm1.vnic.port.stats().related;
    let got = vm1
        .inb(&from_internet(&err))
        .expect("delivered to the guest");
    assert_eq!(vm1.vnic.port.stats().related, before + 1);
    let s = seen(&got); // checks the ICMP checksum too
    assert_eq!(
        (s.src, s.dst, s.dst_mac),
        (ip("192.0.2.254"), ip("10.0.0.5"), mac(1))
    );
    assert_eq!(
        quoted_of(&got),
        (ip("10.0.0.5"), 5353, ip("198.51.100.7"), 53),
        "quoting the guest's own packet"
    );
    assert_ne!(ext_port, 5353, "the flow really was translated");
    // An error about no flow of this guest is just a packet: refused.
    let stray_q = udp(mac(1), ("203.0.113.10", 9), ("198.51.100.7", 53));
    let stray = icmp_error(frag_needed, "192.0.2.254", "203.0.113.10", &quote(&stray_q));
    assert!(vm1.inb(&from_internet(&stray)).is_err());
}

/// RFC 792 port unreachable between VPC peers: the peer's error crosses
/// its own port (as part of the inbound flow) and the sender's.
#[test]
fn port_unreachable_from_a_vpc_peer_reaches_the_sender() {
    let (_cloud, mut vm1, mut vm2) = two_hosts();
    let mut c2 = vm2.vnic.config().clone();
    c2.firewall = vec![serde_json::from_str(
        r#"{"direction":"in","priority":1,"action":"allow","protocol":"udp"}"#,
    )
    .unwrap()];
    vm2.vnic.reconfigure(&c2).unwrap();
    let q = udp(mac(1), ("10.0.0.5", 5353), ("10.0.0.6", 9999));
    let at_vm2 = vm2
        .inb(&vm1.out(&q).unwrap())
        .expect("the datagram reaches vm2");
    // vm2 has nothing on 9999 and says so.
    let unreachable = etherparse::Icmpv4Type::DestinationUnreachable(
        etherparse::icmpv4::DestUnreachableHeader::Port,
    );
    let mut err = Vec::new();
    etherparse::PacketBuilder::ethernet2(mac(2), GW_MAC)
        .ipv4(v4("10.0.0.6"), v4("10.0.0.5"), 64)
        .icmpv4(unreachable)
        .write(&mut err, &quote(&at_vm2))
        .unwrap();
    let wire = vm2
        .out(&err)
        .expect("the error leaves vm2 as part of the flow");
    assert_eq!(
        tunnel(&wire).outer_dst,
        HOST_A.parse::<std::net::Ipv6Addr>().unwrap()
    );
    let got = vm1.inb(&wire).expect("and reaches vm1");
    assert_eq!(seen(&got).dst, ip("10.0.0.5"));
    assert_eq!(
        quoted_of(&got),
        (ip("10.0.0.5"), 5353, ip("10.0.0.6"), 9999)
    );
}

/// RFC 1812 §5.3.7: a guest with a default route to the internet sends to
/// loopback, "this network" and link-local addresses; a router would not
/// forward them, and neither does the port (before this they went to the
/// boundary as internet traffic).
#[test]
fn martian_destinations_go_nowhere_even_with_a_default_route() {
    let (_cloud, mut vm1, _) = two_hosts();
    for dst in ["127.0.0.1", "0.0.0.7", "169.254.169.254"] {
        let f = vm1.tcp((dst, 80), 40000, "S");
        assert_eq!(vm1.out(&f).unwrap_err(), "martian_destination", "{dst}");
    }
    // The internet still goes out.
    vm1.out(&vm1.tcp(("198.51.100.7", 80), 40001, "S"))
        .expect("leaves for the internet");
    let counts = vm1.vnic.port.stats().drop_counts();
    assert!(
        counts
            .iter()
            .any(|(n, c)| *n == "martian_destination" && *c == 3),
        "{counts:?}"
    );
}
