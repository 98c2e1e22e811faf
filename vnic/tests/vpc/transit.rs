//! Transit prefixes and attached subnets on a live port (issue 19): a
//! guest acting as a router or VPN endpoint sends from and receives for
//! prefixes other than its own address, untranslated; the prefixes change
//! on the running port (`VnicPort::reconfigure`, what the API's
//! `allow-cidr`, `attach-subnet` and friends call) without disturbing the
//! flows they do not concern, and flows a removal no longer allows stop at
//! their next packet (the epoch re-check of UFT entries).

use crate::common::*;
use vnic::config::{TransitDir, TransitIp, VnicConfig};

/// vm1 (10.0.0.5, host A) lets TCP in from anywhere; vm2 (10.0.0.6,
/// host B) is its VPC peer.
fn router_guest() -> (Cloud, Guest, VnicConfig) {
    let cloud = Cloud::new();
    cloud.map(VPC, "10.0.0.5", 1, HOST_A);
    cloud.map(VPC, "10.0.0.6", 2, HOST_B);
    let mut c = vnic_cfg("vm1", 1, "10.0.0.5", VPC);
    c.firewall = vec![serde_json::from_str(
        r#"{"direction":"in","priority":10,"action":"allow","protocol":"tcp"}"#,
    )
    .unwrap()];
    let vm1 = guest(&c, &cloud.host(HOST_A), "10.0.0.5");
    (cloud, vm1, c)
}

fn from_internet(inner: &[u8]) -> Vec<u8> {
    wrap(inner, BOUNDARY, HOST_A, VPC)
}

fn transit(cidr: &str, dir: TransitDir) -> TransitIp {
    TransitIp {
        cidr: cidr.parse().unwrap(),
        dir,
    }
}

fn policy_drops(g: &Guest, reason: &str) -> u64 {
    let s = g.vnic.port.stats();
    (s.policy_drops.iter())
        .find(|(n, _)| *n == reason)
        .map_or(0, |(_, v)| *v)
}

/// From the guest's LAN behind it (172.16.0.0/24) to the internet.
fn lan_syn() -> Vec<u8> {
    tcp(
        mac(1),
        GW_MAC,
        ("172.16.0.5", 40000),
        ("198.51.100.7", 443),
        "S",
    )
}

#[test]
fn a_transit_prefix_out_lets_the_guest_send_for_it_untranslated() {
    let (_cloud, mut vm1, mut c) = router_guest();
    assert_eq!(vm1.out(&lan_syn()).unwrap_err(), "spoofed_source_ip");

    c.transit_ips = vec![transit("172.16.0.0/24", TransitDir::Out)];
    vm1.vnic.reconfigure(&c).unwrap();
    let t = tunnel(&vm1.out(&lan_syn()).expect("now it leaves"));
    assert_eq!(t.outer_dst, BOUNDARY.parse::<std::net::Ipv6Addr>().unwrap());
    let s = seen(&t.inner);
    assert_eq!(
        (s.src, s.sport, s.dst),
        (ip("172.16.0.5"), 40000, ip("198.51.100.7")),
        "no NAT for a transit source (the SNAT address is the guest's own only)"
    );

    // Out only: nothing unsolicited comes in for the prefix.
    let stray = tcp(
        GW_MAC,
        mac(1),
        ("198.51.100.9", 443),
        ("172.16.0.9", 80),
        "S",
    );
    assert_eq!(
        vm1.inb(&from_internet(&stray)).unwrap_err(),
        "not_for_guest"
    );
}

#[test]
fn a_transit_prefix_in_lets_the_guest_receive_for_it() {
    let (_cloud, mut vm1, mut c) = router_guest();
    // vm2 sends to 172.16.1.9, a host behind vm1 (its route says so).
    let to_lan = tcp(mac(2), mac(1), ("10.0.0.6", 50000), ("172.16.1.9", 80), "S");
    let wire = wrap(&to_lan, HOST_B, HOST_A, VPC);
    assert_eq!(vm1.inb(&wire).unwrap_err(), "not_for_guest");

    c.transit_ips = vec![transit("172.16.1.0/24", TransitDir::In)];
    vm1.vnic.reconfigure(&c).unwrap();
    let s = seen(&vm1.inb(&wire).expect("delivered to the router guest"));
    assert_eq!(
        (s.src, s.dst, s.dport),
        (ip("10.0.0.6"), ip("172.16.1.9"), 80)
    );
    assert_eq!(
        (s.src_mac, s.dst_mac),
        (GW_MAC, mac(1)),
        "as routed by the gateway"
    );

    // In only: the guest may not send from it.
    let from_lan = tcp(
        mac(1),
        GW_MAC,
        ("172.16.1.9", 80),
        ("198.51.100.7", 443),
        "S",
    );
    assert_eq!(vm1.out(&from_lan).unwrap_err(), "spoofed_source_ip");
}

#[test]
fn removing_a_transit_prefix_stops_its_flows_and_no_other() {
    let (_cloud, mut vm1, mut c) = router_guest();
    c.transit_ips = vec![
        transit("172.16.0.0/24", TransitDir::Both),
        transit("172.16.9.0/24", TransitDir::Out),
    ];
    vm1.vnic.reconfigure(&c).unwrap();
    // Three flows: the guest's own to vm2, one from each transit prefix.
    let own = vm1.tcp(("10.0.0.6", 22), 41000, "S");
    let lan = lan_syn();
    let other = tcp(
        mac(1),
        GW_MAC,
        ("172.16.9.1", 40001),
        ("198.51.100.7", 443),
        "S",
    );
    for f in [&own, &lan, &other] {
        vm1.out(f).expect("established before the change");
    }
    let own_ack = vm1.tcp(("10.0.0.6", 22), 41000, "A");
    let lan_ack = tcp(
        mac(1),
        GW_MAC,
        ("172.16.0.5", 40000),
        ("198.51.100.7", 443),
        "A",
    );
    let other_ack = tcp(
        mac(1),
        GW_MAC,
        ("172.16.9.1", 40001),
        ("198.51.100.7", 443),
        "A",
    );
    for f in [&own_ack, &lan_ack, &other_ack] {
        vm1.out(f).expect("a later packet of each flow");
    }
    let flows = vm1.vnic.port.flow_count();

    // Remove 172.16.0.0/24 (what `remove-cidr vm1 172.16.0.0/24 --dir both` does).
    c.transit_ips
        .retain(|t| t.cidr != "172.16.0.0/24".parse().unwrap());
    vm1.vnic.reconfigure(&c).unwrap();
    let before = policy_drops(&vm1, "spoofed_source_ip");
    assert_eq!(
        vm1.out(&lan_ack).unwrap_err(),
        "spoofed_source_ip",
        "the removed prefix's flow stops at its next packet"
    );
    assert_eq!(
        policy_drops(&vm1, "spoofed_source_ip"),
        before + 1,
        "counted"
    );
    vm1.out(&own_ack)
        .expect("the guest's own flow keeps passing");
    vm1.out(&other_ack)
        .expect("the other prefix's flow keeps passing");
    assert!(
        vm1.vnic.port.flow_count() >= flows - 1,
        "the others kept their state"
    );
    // And a reply for the removed prefix is no longer delivered.
    let reply = tcp(
        GW_MAC,
        mac(1),
        ("198.51.100.7", 443),
        ("172.16.0.5", 40000),
        "SA",
    );
    assert_eq!(
        vm1.inb(&from_internet(&reply)).unwrap_err(),
        "not_for_guest"
    );
}

#[test]
fn attaching_and_detaching_a_subnet_on_a_live_port() {
    let (_cloud, mut vm1, mut c) = router_guest();
    let own = vm1.tcp(("10.0.0.6", 22), 42000, "S");
    vm1.out(&own).expect("the guest's own flow");
    let to_sub = tcp(
        mac(2),
        mac(1),
        ("10.0.0.6", 50001),
        ("192.168.50.7", 80),
        "S",
    );
    let wire = wrap(&to_sub, HOST_B, HOST_A, VPC);
    assert_eq!(vm1.inb(&wire).unwrap_err(), "not_for_guest");

    c.attached_subnets = vec!["192.168.50.0/24".parse().unwrap()];
    vm1.vnic.reconfigure(&c).unwrap();
    vm1.inb(&wire)
        .expect("the attached subnet is the guest's now");
    let answer = tcp(
        mac(1),
        GW_MAC,
        ("192.168.50.7", 80),
        ("10.0.0.6", 50001),
        "SA",
    );
    let t = tunnel(&vm1.out(&answer).expect("and it answers from it"));
    assert_eq!(seen(&t.inner).src, ip("192.168.50.7"));
    let own_ack = vm1.tcp(("10.0.0.6", 22), 42000, "A");
    vm1.out(&own_ack)
        .expect("the attach did not disturb the other flow");

    c.attached_subnets.clear();
    vm1.vnic.reconfigure(&c).unwrap();
    let more = tcp(
        mac(2),
        mac(1),
        ("10.0.0.6", 50001),
        ("192.168.50.7", 80),
        "A",
    );
    assert_eq!(
        vm1.inb(&wrap(&more, HOST_B, HOST_A, VPC)).unwrap_err(),
        "not_for_guest",
        "the detached subnet's flow stops"
    );
    let answer_ack = tcp(
        mac(1),
        GW_MAC,
        ("192.168.50.7", 80),
        ("10.0.0.6", 50001),
        "A",
    );
    assert_eq!(vm1.out(&answer_ack).unwrap_err(), "spoofed_source_ip");
    vm1.out(&own_ack).expect("the other flow still passes");
}

#[test]
fn an_external_subnet_reaches_the_internet_untranslated_and_never_the_vpc() {
    let (_cloud, mut vm1, mut c) = router_guest();
    c.external_subnets = vec!["198.18.0.0/24".parse().unwrap()];
    c.routes.push(
        serde_json::from_str(
            r#"{"dest":"192.168.0.0/16","target":{"ip":"10.0.0.6"},"class":"custom"}"#,
        )
        .unwrap(),
    );
    vm1.vnic.reconfigure(&c).unwrap();

    let out = tcp(
        mac(1),
        GW_MAC,
        ("198.18.0.4", 40000),
        ("198.51.100.7", 443),
        "S",
    );
    let t = tunnel(&vm1.out(&out).expect("to the internet"));
    assert_eq!(seen(&t.inner).src, ip("198.18.0.4"), "not translated");
    let back = tcp(
        GW_MAC,
        mac(1),
        ("198.51.100.7", 443),
        ("198.18.0.4", 40000),
        "SA",
    );
    vm1.inb(&from_internet(&back))
        .expect("the reply comes back");

    // Never to a private VPC recipient: not a VPC subnet, not a next hop.
    let before = policy_drops(&vm1, "external_subnet_to_vpc");
    for dst in [("10.0.0.6", 22), ("192.168.1.1", 80)] {
        let f = tcp(mac(1), GW_MAC, ("198.18.0.4", 40002), dst, "S");
        assert_eq!(
            vm1.out(&f).unwrap_err(),
            "external_subnet_to_vpc",
            "{dst:?}"
        );
    }
    assert_eq!(policy_drops(&vm1, "external_subnet_to_vpc"), before + 2);
    // The guest's own address still reaches the VPC.
    vm1.out(&vm1.tcp(("10.0.0.6", 22), 40003, "S"))
        .expect("own address");
}

#[test]
fn an_attached_subnet_turned_external_stops_its_vpc_flows() {
    let (_cloud, mut vm1, mut c) = router_guest();
    c.attached_subnets = vec!["198.18.0.0/24".parse().unwrap()];
    vm1.vnic.reconfigure(&c).unwrap();
    let syn = tcp(mac(1), GW_MAC, ("198.18.0.4", 40000), ("10.0.0.6", 22), "S");
    vm1.out(&syn)
        .expect("a private attached subnet may reach the VPC");
    // `attach-subnet vm1 198.18.0.0/24 --external` on the live port.
    c.attached_subnets.clear();
    c.external_subnets = vec!["198.18.0.0/24".parse().unwrap()];
    vm1.vnic.reconfigure(&c).unwrap();
    let ack = tcp(mac(1), GW_MAC, ("198.18.0.4", 40000), ("10.0.0.6", 22), "A");
    assert_eq!(vm1.out(&ack).unwrap_err(), "external_subnet_to_vpc");
}

#[test]
fn prefixes_are_validated() {
    let (_cloud, _vm1, c) = router_guest();
    let field = |c: &VnicConfig| c.validate().unwrap_err().field;
    let mut o = c.clone();
    o.attached_subnets = vec!["192.168.0.0/16".parse().unwrap()];
    o.transit_ips = vec![transit("192.168.4.0/24", TransitDir::In)];
    assert_eq!(
        field(&o),
        "transit_ips[0].cidr",
        "overlaps an attached subnet"
    );
    let mut o = c.clone();
    o.external_subnets = vec!["2001:db8::/64".parse().unwrap()];
    assert_eq!(field(&o), "external_subnets[0]", "no IPv6 on this guest");
    let mut o = c.clone();
    o.transit_ips = vec![transit("0.0.0.0/0", TransitDir::Out)];
    assert_eq!(field(&o), "transit_ips[0].cidr", "not every address");
    let mut o = c;
    o.transit_ips = vec![transit("172.16.0.0/24", TransitDir::Both)];
    o.validate().unwrap();
}

/// The whole path of a transit prefix inside the VPC: vm2 routes
/// 172.16.1.0/24 through vm1 (a next-hop route), the tunnel goes to vm1's
/// host and MAC, and vm1's port delivers it once `allow-cidr --dir in`
/// says so.
#[test]
fn a_vpc_peer_reaches_a_lan_behind_a_router_guest() {
    let (cloud, mut vm1, mut c1) = router_guest();
    let mut c2 = vnic_cfg("vm2", 2, "10.0.0.6", VPC);
    c2.routes.push(
        serde_json::from_str(
            r#"{"dest":"172.16.1.0/24","target":{"ip":"10.0.0.5"},"class":"custom"}"#,
        )
        .unwrap(),
    );
    let mut vm2 = guest(&c2, &cloud.host(HOST_B), "10.0.0.6");
    let wire = vm2
        .out(&vm2.tcp(("172.16.1.9", 80), 50000, "S"))
        .expect("vm2's packet leaves toward its next hop");
    let t = tunnel(&wire);
    assert_eq!(t.outer_dst, HOST_A.parse::<std::net::Ipv6Addr>().unwrap());
    assert_eq!(seen(&t.inner).dst_mac, mac(1), "to the router guest's MAC");
    assert_eq!(vm1.inb(&wire).unwrap_err(), "not_for_guest");

    c1.transit_ips = vec![transit("172.16.1.0/24", TransitDir::In)];
    vm1.vnic.reconfigure(&c1).unwrap();
    let s = seen(&vm1.inb(&wire).expect("delivered to the router guest"));
    assert_eq!((s.src, s.dst), (ip("10.0.0.6"), ip("172.16.1.9")));
    // The LAN host's answer goes back out through vm1 from its own
    // address space only if vm1 may send from it: `in` alone does not.
    let answer = tcp(
        mac(1),
        GW_MAC,
        ("172.16.1.9", 80),
        ("10.0.0.6", 50000),
        "SA",
    );
    assert_eq!(vm1.out(&answer).unwrap_err(), "spoofed_source_ip");
}

/// The LAN behind a router guest answers a VPC peer, and calls it: the
/// peer has no V2P entry for 172.16.1.9, but its route to 172.16.1.0/24
/// names vm1 as next hop, and the tunnel comes from vm1's host (a
/// reverse-path check). From any other host it is still a spoof.
#[test]
fn a_lan_behind_a_router_guest_answers_and_calls_a_vpc_peer() {
    let (cloud, mut vm1, mut c1) = router_guest();
    cloud.map(VPC, "10.0.0.7", 3, HOST_C);
    let mut c2 = vnic_cfg("vm2", 2, "10.0.0.6", VPC);
    c2.routes.push(
        serde_json::from_str(
            r#"{"dest":"172.16.1.0/24","target":{"ip":"10.0.0.5"},"class":"custom"}"#,
        )
        .unwrap(),
    );
    c2.firewall = vec![serde_json::from_str(
        r#"{"direction":"in","priority":10,"action":"allow","protocol":"tcp","ports":{"list":[22]}}"#,
    )
    .unwrap()];
    let mut vm2 = guest(&c2, &cloud.host(HOST_B), "10.0.0.6");
    c1.transit_ips = vec![transit("172.16.1.0/24", TransitDir::Both)];
    vm1.vnic.reconfigure(&c1).unwrap();

    let wire = vm2.out(&vm2.tcp(("172.16.1.9", 80), 50000, "S")).unwrap();
    vm1.inb(&wire).expect("to the LAN through vm1");
    let answer = tcp(
        mac(1),
        GW_MAC,
        ("172.16.1.9", 80),
        ("10.0.0.6", 50000),
        "SA",
    );
    let back = vm1.out(&answer).expect("vm1 forwards the LAN's answer");
    assert_eq!(
        tunnel(&back).outer_dst,
        HOST_B.parse::<std::net::Ipv6Addr>().unwrap()
    );
    let s = seen(
        &vm2.inb(&back)
            .expect("vm2 takes it: vm1 is its next hop for it"),
    );
    assert_eq!(
        (s.src, s.dst, s.sport),
        (ip("172.16.1.9"), ip("10.0.0.6"), 80)
    );

    // A LAN host calls vm2 (SSH, allowed by vm2's firewall).
    let call = tcp(
        mac(1),
        GW_MAC,
        ("172.16.1.20", 33000),
        ("10.0.0.6", 22),
        "S",
    );
    let wire = vm1.out(&call).expect("leaves vm1");
    vm2.inb(&wire).expect("reaches vm2");
    // The same source from a host that is not vm1's is refused.
    let forged = tcp(
        mac(3),
        mac(2),
        ("172.16.1.21", 33000),
        ("10.0.0.6", 22),
        "S",
    );
    assert_eq!(
        vm2.inb(&wrap(&forged, HOST_C, HOST_B, VPC)).unwrap_err(),
        "spoofed_overlay_source"
    );
}

/// The same rules for IPv6: a transit prefix out, an external subnet
/// kept from the VPC.
#[test]
fn ipv6_transit_and_external_prefixes() {
    let cloud = Cloud::new();
    cloud.map(VPC, "fd00:7777::6", 2, HOST_B);
    let mut c: VnicConfig = serde_json::from_value(serde_json::json!({
        "name": "vm1",
        "guest_mac": vnic::config::MacAddr(mac(1)).to_string(),
        "gateway_mac": vnic::config::MacAddr(GW_MAC).to_string(),
        "vni": VPC,
        "ipv6": { "addr": "fd00:7777::5", "subnet": "fd00:7777::/64", "gateway": "fd00:7777::1" },
        "routes": [{ "dest": "::/0", "target": "internet_gateway", "class": "system" }],
        "limits": { "flows": 1024 }
    }))
    .unwrap();
    let mut vm1 = guest(&c, &cloud.host(HOST_A), "fd00:7777::5");
    let from_lan = tcp(
        mac(1),
        GW_MAC,
        ("fd00:1234::5", 40000),
        ("fd00:7777::6", 22),
        "S",
    );
    let from_ext = tcp(
        mac(1),
        GW_MAC,
        ("2001:db8:e::5", 40000),
        ("fd00:7777::6", 22),
        "S",
    );
    assert_eq!(vm1.out(&from_lan).unwrap_err(), "spoofed_source_ip");
    c.transit_ips = vec![transit("fd00:1234::/64", TransitDir::Out)];
    c.external_subnets = vec!["2001:db8:e::/48".parse().unwrap()];
    vm1.vnic.reconfigure(&c).unwrap();
    let t = tunnel(
        &vm1.out(&from_lan)
            .expect("a transit source reaches the VPC"),
    );
    assert_eq!(t.outer_dst, HOST_B.parse::<std::net::Ipv6Addr>().unwrap());
    let p = etherparse::PacketHeaders::from_ethernet_slice(&t.inner).expect("parses");
    let Some(etherparse::NetHeaders::Ipv6(h, _)) = p.net else {
        panic!("not IPv6: {:?}", p.net)
    };
    assert_eq!(
        ip("fd00:1234::5"),
        std::net::IpAddr::from(h.source),
        "untranslated"
    );
    assert_eq!(vm1.out(&from_ext).unwrap_err(), "external_subnet_to_vpc");
}
