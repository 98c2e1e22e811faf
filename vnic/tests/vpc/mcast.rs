//! Multicast at the gateway: a guest's IGMP and MLD messages are dropped
//! with their own reason, never forwarded (membership is the control
//! plane's: `sluiceadm mcast-subscribe`).

use crate::common::*;
use etherparse::{IpNumber, PacketBuilder};

fn one_host() -> Guest {
    let cloud = Cloud::new();
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
