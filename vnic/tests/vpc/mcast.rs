//! Multicast at the gateway: a guest's IGMP and MLD messages are dropped
//! with their own reason, never forwarded (membership is the control
//! plane's: `sluiceadm mcast-subscribe`).

use crate::common::*;
use etherparse::{IpNumber, PacketBuilder};

fn one_host() -> Guest {
    one_host_in(&Cloud::new())
}

fn one_host_in(cloud: &Cloud) -> Guest {
    cloud.map(VPC, "10.0.0.5", 1, HOST_A);
    let mut cfg = vnic_cfg("vm1", 1, "10.0.0.5", VPC);
    cfg.ipv6 = serde_json::from_value(serde_json::json!({
        "addr": "fd00:7777::5", "subnet": "fd00:7777::/64", "gateway": "fd00:7777::1"
    }))
    .unwrap();
    guest(&cfg, &cloud.host(HOST_A), "10.0.0.5")
}

/// RFC 3376 §4.2: an IGMPv3 membership report (to 224.0.0.22) joining
/// 239.1.2.3, one group record of type CHANGE_TO_EXCLUDE.
fn igmpv3_report() -> Vec<u8> {
    let mut igmp = vec![0x22, 0, 0, 0, 0, 0, 0, 1];
    igmp.extend_from_slice(&[4, 0, 0, 0, 239, 1, 2, 3]);
    let mut out = Vec::new();
    PacketBuilder::ethernet2(mac(1), [0x01, 0, 0x5e, 0, 0, 0x16])
        .ipv4(v4("10.0.0.5"), v4("224.0.0.22"), 1)
        .write(&mut out, IpNumber(2), &igmp)
        .unwrap();
    out
}

/// RFC 3810 §5.2: an MLDv2 report (ICMPv6 type 143, to ff02::16) from
/// the guest's link-local address.
fn mldv2_report(icmp_type: u8) -> Vec<u8> {
    let src: std::net::Ipv6Addr = "fe80::aa40:25ff:fe00:1".parse().unwrap();
    let dst: std::net::Ipv6Addr = "ff02::16".parse().unwrap();
    let record = [
        4u8, 0, 0, 0, 0xff, 0x05, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1,
    ];
    let mut out = Vec::new();
    PacketBuilder::ethernet2(mac(1), [0x33, 0x33, 0, 0, 0, 0x16])
        .ipv6(src.octets(), dst.octets(), 1)
        .icmpv6(etherparse::Icmpv6Type::Unknown {
            type_u8: icmp_type,
            code_u8: 0,
            bytes5to8: [0, 0, 0, 1],
        })
        .write(&mut out, &record)
        .unwrap();
    out
}

#[test]
fn membership_reports_are_dropped_and_counted() {
    let mut vm1 = one_host();
    assert_eq!(
        vm1.out(&igmpv3_report()).unwrap_err(),
        "mcast_membership_report"
    );
    // Report (v1 and v2), done, query: all of MLD.
    for t in [143, 131, 132, 130] {
        assert_eq!(
            vm1.out(&mldv2_report(t)).unwrap_err(),
            "mcast_membership_report",
            "MLD type {t}"
        );
    }
    let counts = vm1.vnic.port.stats().drop_counts();
    assert!(
        counts
            .iter()
            .any(|(n, c)| *n == "mcast_membership_report" && *c == 5),
        "{counts:?}"
    );
}

#[test]
fn a_report_from_another_mac_is_a_spoof_first() {
    let mut vm1 = one_host();
    let mut f = igmpv3_report();
    f[6..12].copy_from_slice(&mac(9));
    assert_eq!(vm1.out(&f).unwrap_err(), "spoofed_source_mac");
}

fn udp_to_group(group: &str) -> Vec<u8> {
    let g = ip(group);
    sluice_test_support::build::udp(
        (mac(1), overlay::mcast::group_mac(g)),
        (ip("10.0.0.5"), 5000).into(),
        (g, 6000).into(),
        b"hello group",
    )
}

fn mapped_cloud() -> Cloud {
    let cloud = Cloud::new();
    let mut t = overlay::mcast::McastTables::default();
    t.m2p.insert(
        (dataplane::Vni::new(VPC).unwrap(), ip("239.1.1.1")),
        "ff04::1:1".parse().unwrap(),
    );
    cloud.mcast.publish(t);
    cloud
}

/// A group with an M2P entry leaves as one tunnel to its underlay group
/// (RFC 2464 §7 MAC), the inner frame to the group's MAC (RFC 1112 §6.4);
/// clearing the entry stops the flow at its next packet.
#[test]
fn a_mapped_group_is_tunnelled_to_its_underlay_group() {
    let cloud = mapped_cloud();
    let mut vm1 = one_host_in(&cloud);
    let t = tunnel(
        &vm1.out(&udp_to_group("239.1.1.1"))
            .expect("mapped: it leaves"),
    );
    assert_eq!(
        t.outer_dst,
        "ff04::1:1".parse::<std::net::Ipv6Addr>().unwrap()
    );
    assert_eq!(t.vni, VPC);
    let s = seen(&t.inner);
    assert_eq!(
        (s.src, s.dst, s.dst_mac),
        (ip("10.0.0.5"), ip("239.1.1.1"), [1, 0, 0x5e, 1, 1, 1])
    );
    assert_eq!(
        vm1.out(&udp_to_group("239.2.2.2")).unwrap_err(),
        "multicast"
    );
    cloud.mcast.publish(Default::default());
    assert_eq!(
        vm1.out(&udp_to_group("239.1.1.1")).unwrap_err(),
        "multicast"
    );
}

/// Firewall rules match multicast destinations: outbound by `hosts`
/// (the destination), inbound by a multicast `hosts` (the group: no packet
/// comes from a group, RFC 1112 §4).
#[test]
fn firewall_rules_match_groups() {
    let cloud = mapped_cloud();
    let mut vm1 = one_host_in(&cloud);
    let mut c = vm1.vnic.config().clone();
    c.firewall = vec![serde_json::from_value(serde_json::json!({
        "direction": "out", "priority": 1, "action": "deny", "hosts": { "ip": "239.1.1.1" }
    }))
    .unwrap()];
    vm1.vnic.reconfigure(&c).unwrap();
    assert_eq!(vm1.out(&udp_to_group("239.1.1.1")).unwrap_err(), "denied");

    // Inbound: vm2 receives a member's copy (outer destination its host,
    // inner destination the group's MAC) only if a rule lets the group in.
    cloud.map(VPC, "10.0.0.6", 2, HOST_B);
    let mut c2 = vnic_cfg("vm2", 2, "10.0.0.6", VPC);
    let mut vm2 = guest(&c2, &cloud.host(HOST_B), "10.0.0.6");
    let copy = wrap(&udp_to_group("239.1.1.1"), HOST_A, HOST_B, VPC);
    assert_eq!(vm2.inb(&copy).unwrap_err(), "default_denied");
    c2.firewall = vec![serde_json::from_value(serde_json::json!({
        "direction": "in", "priority": 1, "action": "allow", "hosts": { "subnet": "239.0.0.0/8" }
    }))
    .unwrap()];
    vm2.vnic.reconfigure(&c2).unwrap();
    let got = seen(&vm2.inb(&copy).expect("the group is let in"));
    assert_eq!(
        (got.dst, got.dst_mac, got.src_mac),
        (ip("239.1.1.1"), [1, 0, 0x5e, 1, 1, 1], GW_MAC)
    );
    // A tunnel to the guest's own MAC with a group inside is not a
    // member's copy: not for the guest.
    let inner = sluice_test_support::build::udp(
        (mac(1), mac(2)),
        (ip("10.0.0.5"), 5001).into(),
        (ip("239.1.1.1"), 6000).into(),
        b"not a copy",
    );
    let spoof = wrap(&inner, HOST_A, HOST_B, VPC);
    assert_eq!(vm2.inb(&spoof).unwrap_err(), "not_for_guest");
}
