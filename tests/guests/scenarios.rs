use crate::world::*;
use dataplane::Direction;
use smoltcp::socket::tcp::State;
use smoltcp::wire::Ipv4Cidr;
use std::net::{IpAddr, Ipv4Addr};

/// 64 KiB that are not all the same byte, so a reordering or a lost
/// segment shows.
fn payload(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 + i / 251) as u8).collect()
}

/// A guest with no address on host A (vm1 of VPC 7777, 10.0.0.5 in its
/// vNIC's configuration), leased by DHCP.
fn dhcp_guest(w: &mut World) -> Node {
    let vm1 = w.add_guest(
        vpc_vnic("vm1", 1, "10.0.0.5", VPC),
        HOST_A,
        Addressing::Dhcp,
    );
    w.run_until(|w| w.stack(vm1).lease.is_some(), 500);
    vm1
}

/// RFC 2131: a guest without an address broadcasts DHCPDISCOVER; the
/// virtual gateway offers the vNIC's address and acknowledges the
/// request, and smoltcp's client configures the interface from the lease
/// (address and mask, router, DNS servers).
#[test]
fn a_guest_gets_its_address_by_dhcp() {
    let mut w = World::new();
    let vm1 = dhcp_guest(&mut w);
    let lease = w.stack(vm1).lease.clone().expect("a lease");
    assert_eq!(
        lease,
        Lease {
            address: Ipv4Cidr::new(Ipv4Addr::new(10, 0, 0, 5), 24),
            router: Some(Ipv4Addr::new(10, 0, 0, 1)),
            dns: vec![Ipv4Addr::new(10, 0, 0, 2)],
        }
    );
    assert_eq!(
        w.stack(vm1).iface.ipv4_addr(),
        Some(Ipv4Addr::new(10, 0, 0, 5))
    );
    // DISCOVER and REQUEST were both answered by the gateway itself: no
    // flow, nothing on the underlay.
    let out = *w.port(vm1).stats().dir(Direction::Out);
    assert!(out.hairpins >= 2, "{out:?}");
    assert_eq!(out.forwarded, 0);
    assert_eq!(w.port(vm1).flow_count(), 0);
}

/// RFC 826 and RFC 792: the leased guest resolves the gateway's MAC by
/// ARP (smoltcp does it before its first echo request) and pings it.
#[test]
fn the_leased_guest_pings_its_gateway() {
    let mut w = World::new();
    let vm1 = dhcp_guest(&mut w);
    let gw = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
    let pinger = w.stack(vm1).pinger(0x51);
    for seq in 0..3 {
        w.stack(vm1).ping(pinger, 0x51, seq, gw);
    }
    let mut pongs = Vec::new();
    w.run_until(
        |w| {
            pongs.extend(w.stack(vm1).pongs(pinger));
            pongs.len() == 3
        },
        300,
    );
    assert_eq!(pongs, vec![(gw, 0), (gw, 1), (gw, 2)]);
    // The ARP request went to the gateway layer's ARP responder.
    let layers = w.port(vm1).dump_layers();
    let gateway = layers.iter().find(|l| l.name == "gateway").unwrap();
    let arp = gateway
        .rules_out
        .iter()
        .find(|r| r.action == "hairpin(arp)")
        .expect("an ARP rule");
    assert!(arp.hits >= 1, "ARP answered: {arp:?}");
    assert_eq!(w.port(vm1).stats().dir(Direction::Out).forwarded, 0);
}

/// vm1 (10.0.0.5, host A) and vm2 (10.0.0.6, host B) in VPC 7777; vm2's
/// firewall lets TCP 22 in from the VPC subnet.
fn two_hosts(w: &mut World) -> (Node, Node) {
    let vm1 = w.add_guest(
        vpc_vnic("vm1", 1, "10.0.0.5", VPC),
        HOST_A,
        Addressing::Static,
    );
    let mut c2 = vpc_vnic("vm2", 2, "10.0.0.6", VPC);
    c2.firewall.push(fw(
        r#"{"direction":"in","priority":10,"action":"allow","hosts":{"subnet":"10.0.0.0/24"},"protocol":"tcp","ports":{"list":[22]}}"#,
    ));
    let vm2 = w.add_guest(c2, HOST_B, Addressing::Static);
    (vm1, vm2)
}

/// RFC 9293: a whole TCP connection between guests on two hosts: the
/// three-way handshake, 64 KiB one way (flow control, many segments on
/// the fast path), an answer the other way, and both FINs.
#[test]
fn tcp_between_guests_on_two_hosts() {
    let mut w = World::new();
    let (vm1, vm2) = two_hosts(&mut w);
    let server = w.stack(vm2).listen(22);
    let client = w.stack(vm1).connect(Ipv4Addr::new(10, 0, 0, 6), 22);
    let upload = payload(64 * 1024);
    let x = w.tcp_exchange(
        (vm1, client),
        (vm2, server),
        &upload,
        b"got 65536 bytes",
        2000,
    );
    assert!(x.uploaded == upload, "the 64 KiB arrived intact");
    assert_eq!(x.downloaded, b"got 65536 bytes");
    assert_eq!(
        x.server_saw.map(|e| e.addr),
        Some(Ipv4Addr::new(10, 0, 0, 5).into())
    );
    for vm in [vm1, vm2] {
        let drops = w.port(vm).stats().drop_counts();
        assert!(drops.is_empty(), "no drops: {drops:?}");
    }
    assert!(w.fabric_drops.is_empty(), "{:?}", w.fabric_drops);
}

/// RFC 9293 through source NAT (RFC 3022 NAPT): vm1 connects to an
/// internet server; the boundary carries its packets out, and the server
/// sees the SNAT address and a port of vm1's range, not 10.0.0.5.
#[test]
fn a_guest_reaches_the_internet_through_snat() {
    let mut w = World::new();
    let (vm1, _) = two_hosts(&mut w);
    let server = w.internet.listen(443);
    let client = w.stack(vm1).connect(INTERNET_HOST, 443);
    let x = w.tcp_exchange(
        (vm1, client),
        (Node::Internet, server),
        b"GET / HTTP/1.0\r\n\r\n",
        b"HTTP/1.0 200 OK\r\n\r\nhello from the internet",
        1000,
    );
    assert_eq!(
        x.downloaded,
        b"HTTP/1.0 200 OK\r\n\r\nhello from the internet"
    );
    let peer = x.server_saw.expect("the server saw a peer");
    assert_eq!(peer.addr, IpAddr::V4(SNAT_IP).into(), "the SNAT address");
    assert!(
        (2048..=2111).contains(&peer.port),
        "a port of vm1's SNAT range: {}",
        peer.port
    );
    assert!(w.port(vm1).stats().drop_counts().is_empty());
    assert!(w.fabric_drops.is_empty(), "{:?}", w.fabric_drops);
}

/// RFC 9293 to a floating IP (1:1 NAT): an internet client connects to
/// 203.0.113.50:80, which the boundary sends to vm1's host, and vm1's
/// port translates to 10.0.0.5; vm1 sees the client's real address.
#[test]
fn an_internet_client_reaches_a_floating_ip() {
    let mut w = World::new();
    let mut c = vpc_vnic("vm1", 1, "10.0.0.5", VPC);
    c.external.floating = vec!["203.0.113.50".parse().unwrap()];
    c.firewall.push(fw(
        r#"{"direction":"in","priority":10,"action":"allow","protocol":"tcp","ports":{"list":[80]}}"#,
    ));
    let vm1 = w.add_guest(c, HOST_A, Addressing::Static);
    let server = w.stack(vm1).listen(80);
    let client = w.internet.connect(Ipv4Addr::new(203, 0, 113, 50), 80);
    let x = w.tcp_exchange(
        (Node::Internet, client),
        (vm1, server),
        b"GET / HTTP/1.0\r\n\r\n",
        b"HTTP/1.0 200 OK\r\n\r\nhello from vm1",
        1000,
    );
    assert_eq!(x.downloaded, b"HTTP/1.0 200 OK\r\n\r\nhello from vm1");
    assert_eq!(
        x.server_saw.map(|e| e.addr),
        Some(IpAddr::V4(INTERNET_HOST).into()),
        "vm1 sees the client itself"
    );
    assert!(w.port(vm1).stats().drop_counts().is_empty());
    assert!(w.fabric_drops.is_empty(), "{:?}", w.fabric_drops);
}

/// RFC 9293 §3.8.1 (SYN retransmission) against a stateful firewall: vm2
/// does not let TCP 8080 in, so vm1's SYNs go unanswered (counted as
/// `default_denied` on vm2's port); once vm2's vNIC is reconfigured with
/// an allow rule, a retransmitted SYN of the same connection gets through.
#[test]
fn the_firewall_blocks_then_allows_after_reconfigure() {
    let mut w = World::new();
    let (vm1, vm2) = two_hosts(&mut w);
    let server = w.stack(vm2).listen(8080);
    let client = w.stack(vm1).connect(Ipv4Addr::new(10, 0, 0, 6), 8080);
    // The first SYN and at least one retransmission, refused.
    w.run_until(|w| w.drops(vm2, "default_denied") >= 2, 500);
    assert_eq!(w.tcp_state(vm1, client), State::SynSent);
    assert_eq!(w.tcp_state(vm2, server), State::Listen);
    assert_eq!(w.stack(vm2).received, 0, "nothing reached vm2");

    let mut c2 = w.guest(vm2).vnic.config().clone();
    c2.firewall.push(fw(
        r#"{"direction":"in","priority":20,"action":"allow","hosts":{"subnet":"10.0.0.0/24"},"protocol":"tcp","ports":{"list":[8080]}}"#,
    ));
    w.reconfigure(vm2, &c2);
    let denied = w.drops(vm2, "default_denied");
    let x = w.tcp_exchange((vm1, client), (vm2, server), b"ping", b"pong", 2000);
    assert_eq!(
        (x.uploaded.as_slice(), x.downloaded.as_slice()),
        (&b"ping"[..], &b"pong"[..])
    );
    assert_eq!(
        w.drops(vm2, "default_denied"),
        denied,
        "nothing denied after the change"
    );
}

/// VPC isolation (RFC 8926 VNIs): vm3 lives in VPC 8888 on host B with
/// the same private address as vm2 (10.0.0.6). While vm1 and vm2 talk in
/// VPC 7777, vm3's port is handed nothing and vm3 receives nothing; and
/// vm3's own connection to 10.0.0.5 fails, since VPC 8888 has no
/// 10.0.0.5 (`no_v2p_mapping` on vm3's port), even though vm1 listens.
#[test]
fn another_vpc_with_the_same_addresses_sees_nothing() {
    let mut w = World::new();
    let mut c1 = vpc_vnic("vm1", 1, "10.0.0.5", VPC);
    c1.firewall.push(fw(
        r#"{"direction":"in","priority":10,"action":"allow","protocol":"tcp","ports":{"list":[22]}}"#,
    ));
    let vm1 = w.add_guest(c1, HOST_A, Addressing::Static);
    let mut c2 = vpc_vnic("vm2", 2, "10.0.0.6", VPC);
    c2.firewall.push(fw(
        r#"{"direction":"in","priority":10,"action":"allow","protocol":"tcp","ports":{"list":[22]}}"#,
    ));
    let vm2 = w.add_guest(c2, HOST_B, Addressing::Static);
    let mut c3 = vpc_vnic("vm3", 3, "10.0.0.6", OTHER_VPC);
    c3.firewall
        .push(fw(r#"{"direction":"in","priority":1,"action":"allow"}"#));
    let vm3 = w.add_guest(c3, HOST_B, Addressing::Static);

    let server = w.stack(vm2).listen(22);
    let client = w.stack(vm1).connect(Ipv4Addr::new(10, 0, 0, 6), 22);
    let x = w.tcp_exchange((vm1, client), (vm2, server), &payload(8192), b"ok", 1000);
    assert_eq!(x.downloaded, b"ok");
    assert_eq!(w.stack(vm3).received, 0, "vm3's RX queue stayed empty");
    assert_eq!(
        w.port(vm3).stats().dir(Direction::In).packets,
        0,
        "the switch handed vm3's port nothing"
    );

    let listener = w.stack(vm1).listen(22);
    let vm1_in = w.port(vm1).stats().dir(Direction::In).packets;
    let attempt = w.stack(vm3).connect(Ipv4Addr::new(10, 0, 0, 5), 22);
    w.run_for(300);
    assert_eq!(w.tcp_state(vm3, attempt), State::SynSent);
    assert_eq!(w.tcp_state(vm1, listener), State::Listen);
    assert!(
        w.drops(vm3, "no_v2p_mapping") >= 2,
        "SYN and a retransmission refused: {:?}",
        w.port(vm3).stats().drop_counts()
    );
    assert_eq!(
        w.port(vm1).stats().dir(Direction::In).packets,
        vm1_in,
        "nothing of VPC 8888 reached vm1's port"
    );
}

/// RFC 4861 and RFC 4443: a guest with a static fd00:1::5/64 resolves the
/// gateway fd00:1::1 by neighbor solicitation (smoltcp's NDP) and pings it.
#[test]
fn ipv6_neighbor_discovery_and_ping_to_the_gateway() {
    let mut w = World::new();
    let mut c = vpc_vnic("vm1", 1, "10.0.0.5", VPC);
    c.ipv6 = Some(
        serde_json::from_str(
            r#"{"addr":"fd00:1::5","subnet":"fd00:1::/64","gateway":"fd00:1::1"}"#,
        )
        .unwrap(),
    );
    let vm1 = w.add_guest(c, HOST_A, Addressing::Static);
    let gw: IpAddr = "fd00:1::1".parse().unwrap();
    let pinger = w.stack(vm1).pinger(0x66);
    w.stack(vm1).ping(pinger, 0x66, 1, gw);
    let mut pongs = Vec::new();
    w.run_until(
        |w| {
            pongs.extend(w.stack(vm1).pongs(pinger));
            !pongs.is_empty()
        },
        300,
    );
    assert_eq!(pongs, vec![(gw, 1)]);
    let layers = w.port(vm1).dump_layers();
    let gateway = layers.iter().find(|l| l.name == "gateway").unwrap();
    let ndp = gateway
        .rules_out
        .iter()
        .find(|r| r.action == "hairpin(ndp)")
        .expect("an NDP rule");
    assert!(
        ndp.hits >= 1,
        "the neighbor solicitation was answered: {ndp:?}"
    );
}
