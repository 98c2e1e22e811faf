//! The builders' frames are what etherparse reads and checks, and the
//! inspectors agree with etherparse on right checksums and name each
//! wrong one.

use etherparse::{NetSlice, PacketBuilder, SlicedPacket, TransportSlice};
use sluice_test_support::{
    arp_request, assert_checksums, build::Tcp, check_checksums, fill_outer_udp, tcp_syn, udp, Bad,
    Geneve,
};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

const MACS: ([u8; 6], [u8; 6]) = (
    [0xa8, 0x40, 0x25, 0, 0, 1],
    [0xa8, 0x40, 0x25, 0xff, 0xff, 1],
);

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// etherparse's verdict on the transport checksum of a frame.
fn etherparse_l4_ok(f: &[u8]) -> bool {
    let p = SlicedPacket::from_ethernet(f).expect("etherparse reads the frame");
    match (&p.net, &p.transport) {
        (Some(NetSlice::Ipv4(ip)), Some(TransportSlice::Tcp(t))) => {
            let h = ip.header();
            t.to_header()
                .calc_checksum_ipv4_raw(h.source(), h.destination(), t.payload())
                .unwrap()
                == t.checksum()
        }
        (Some(NetSlice::Ipv6(ip)), Some(TransportSlice::Tcp(t))) => {
            let h = ip.header();
            t.to_header()
                .calc_checksum_ipv6_raw(h.source(), h.destination(), t.payload())
                .unwrap()
                == t.checksum()
        }
        (Some(NetSlice::Ipv4(ip)), Some(TransportSlice::Udp(u))) => {
            let h = ip.header();
            u.to_header()
                .calc_checksum_ipv4_raw(h.source(), h.destination(), u.payload())
                .unwrap()
                == u.checksum()
        }
        (Some(NetSlice::Ipv6(ip)), Some(TransportSlice::Udp(u))) => {
            let h = ip.header();
            u.to_header()
                .calc_checksum_ipv6_raw(h.source(), h.destination(), u.payload())
                .unwrap()
                == u.checksum()
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn built_frames_pass_etherparse_and_the_inspector() {
    let frames = [
        tcp_syn(MACS, sa("10.0.0.5:40000"), sa("10.0.0.6:80")),
        tcp_syn(MACS, sa("[fd00::5]:40000"), sa("[fd00::6]:443")),
        Tcp::new(MACS, sa("10.0.0.5:1"), sa("192.0.2.1:2"))
            .seq(7)
            .ack(9)
            .flags("P")
            .payload(b"odd length")
            .build(),
        udp(MACS, sa("10.0.0.5:53"), sa("10.0.0.1:53"), b"query"),
        udp(MACS, sa("[fd00::5]:546"), sa("[ff02::1:2]:547"), b"solicit"),
    ];
    for f in &frames {
        assert!(etherparse_l4_ok(f), "etherparse disagrees: {f:02x?}");
        let c = check_checksums(f).expect("all checksums right");
        assert!(c.l4.is_some(), "{c:?}");
    }
    let v4 = check_checksums(&frames[0]).unwrap();
    assert!(v4.ipv4_header);
    assert_eq!(v4.l4, Some(6));
    let p = SlicedPacket::from_ethernet(&frames[2]).unwrap();
    let Some(TransportSlice::Tcp(t)) = p.transport else {
        panic!()
    };
    assert_eq!((t.sequence_number(), t.acknowledgment_number()), (7, 9));
    assert!(t.psh() && t.ack() && !t.syn());
}

#[test]
fn each_wrong_checksum_is_named() {
    // Offsets: IPv4 header at 14 (checksum at 24), transport at 34.
    let tcp4 = tcp_syn(MACS, sa("10.0.0.5:40000"), sa("10.0.0.6:80"));
    let mut f = tcp4.clone();
    f[24] ^= 1;
    assert_eq!(check_checksums(&f), Err(Bad::Ipv4Header));
    let mut f = tcp4.clone();
    f[34 + 16] ^= 1;
    assert_eq!(check_checksums(&f), Err(Bad::Tcp));
    // A changed address breaks the pseudo-header sum too (and the IPv4
    // header's): the header is checked first.
    let mut f = tcp4.clone();
    f[29] ^= 1;
    assert_eq!(check_checksums(&f), Err(Bad::Ipv4Header));

    let mut f = udp(MACS, sa("10.0.0.5:53"), sa("10.0.0.1:53"), b"query");
    f[34 + 8] ^= 0x20;
    assert_eq!(check_checksums(&f), Err(Bad::Udp));
    f[40..42].copy_from_slice(&[0, 0]);
    assert!(
        check_checksums(&f).unwrap().udp_zero,
        "0 is 'none' over IPv4"
    );

    let mut f = udp(MACS, sa("[fd00::5]:1"), sa("[fd00::6]:2"), b"x");
    f[54 + 6..54 + 8].copy_from_slice(&[0, 0]);
    assert_eq!(check_checksums(&f), Err(Bad::UdpZeroOverIpv6));

    let mut ping = Vec::new();
    PacketBuilder::ethernet2(MACS.0, MACS.1)
        .ipv4([10, 0, 0, 5], [10, 0, 0, 1], 64)
        .icmpv4_echo_request(1, 2)
        .write(&mut ping, b"ping")
        .unwrap();
    assert_eq!(check_checksums(&ping).unwrap().l4, Some(1));
    ping[34 + 8] ^= 1;
    assert_eq!(check_checksums(&ping), Err(Bad::Icmpv4));

    let mut ping6 = Vec::new();
    PacketBuilder::ethernet2(MACS.0, MACS.1)
        .ipv6([0xfd; 16], [0xfe; 16], 64)
        .icmpv6_echo_request(1, 2)
        .write(&mut ping6, b"ping")
        .unwrap();
    assert_eq!(check_checksums(&ping6).unwrap().l4, Some(58));
    ping6[54 + 9] ^= 1;
    assert_eq!(check_checksums(&ping6), Err(Bad::Icmpv6));
}

#[test]
fn short_and_odd_frames_are_answered_not_panicked_on() {
    let f = tcp_syn(MACS, sa("10.0.0.5:40000"), sa("10.0.0.6:80"));
    for n in 0..f.len() {
        let r = check_checksums(&f[..n]);
        assert!(matches!(r, Err(Bad::Truncated(_))), "{n}: {r:?}");
    }
    // A non-IP frame has nothing to check.
    assert_eq!(
        check_checksums(&arp_request(
            MACS.0,
            Ipv4Addr::new(10, 0, 0, 5),
            Ipv4Addr::new(10, 0, 0, 1)
        ))
        .unwrap()
        .l4,
        None
    );
}

#[test]
fn a_vlan_tag_is_looked_through() {
    let mut f = udp(MACS, sa("10.0.0.5:53"), sa("10.0.0.1:53"), b"query");
    f.splice(12..12, [0x81, 0x00, 0x00, 0x07]);
    assert_eq!(check_checksums(&f).unwrap().l4, Some(17));
    f[18 + 20 + 8] ^= 1;
    assert_eq!(check_checksums(&f), Err(Bad::Udp));
}

#[test]
fn arp_requests_are_what_etherparse_reads() {
    let f = arp_request(
        MACS.0,
        Ipv4Addr::new(10, 0, 0, 5),
        Ipv4Addr::new(10, 0, 0, 1),
    );
    assert_eq!(&f[..6], &[0xff; 6]);
    let p = etherparse::SlicedPacket::from_ethernet(&f).unwrap();
    let Some(NetSlice::Arp(a)) = p.net else {
        panic!("{p:?}")
    };
    assert_eq!(a.operation(), etherparse::ArpOperation::REQUEST);
    assert_eq!(a.sender_protocol_addr(), &[10, 0, 0, 5]);
    assert_eq!(a.target_protocol_addr(), &[10, 0, 0, 1]);
}

#[test]
fn geneve_tunnels_carry_their_fields_and_a_right_outer_checksum() {
    let inner = tcp_syn(MACS, sa("10.0.0.5:40000"), sa("10.0.0.6:80"));
    let src: Ipv6Addr = "fd00:99::1".parse().unwrap();
    let dst: Ipv6Addr = "fd00:99::2".parse().unwrap();
    let opts = [0x01, 0x29, 0x80, 0x01, 0, 0, 0, 0];
    let f = Geneve::new(src, dst, 0x12345)
        .options(&opts)
        .flags(0x40)
        .sport(51000)
        .hop_limit(63)
        .wrap(&inner);
    // etherparse reads the outer headers and agrees on the UDP checksum.
    let p = SlicedPacket::from_ethernet(&f).unwrap();
    let Some(NetSlice::Ipv6(ip)) = &p.net else {
        panic!()
    };
    assert_eq!(ip.header().hop_limit(), 63);
    assert_eq!(Ipv6Addr::from(ip.header().source()), src);
    let Some(TransportSlice::Udp(u)) = &p.transport else {
        panic!()
    };
    assert_eq!((u.source_port(), u.destination_port()), (51000, 6081));
    assert!(etherparse_l4_ok(&f));
    assert_eq!(check_checksums(&f).unwrap().l4, Some(17));
    let g = u.payload();
    assert_eq!(g[0], 2, "option length in words");
    assert_eq!(g[1], 0x40);
    assert_eq!(&g[2..4], &[0x65, 0x58]);
    assert_eq!(&g[4..8], &[0x01, 0x23, 0x45, 0]);
    assert_eq!(&g[8..16], &opts);
    assert_eq!(&g[16..], &inner[..]);

    // Without a checksum: 0, which the inspector names over IPv6; filled
    // in afterwards, right again.
    let mut z = Geneve::new(src, dst, 7).udp_checksum(false).wrap(&inner);
    assert_eq!(&z[60..62], &[0, 0]);
    assert_eq!(check_checksums(&z), Err(Bad::UdpZeroOverIpv6));
    z[80] ^= 0xff;
    fill_outer_udp(&mut z);
    assert!(etherparse_l4_ok(&z));
    assert_eq!(check_checksums(&z).unwrap().l4, Some(17));
    // A damaged byte after the fill is caught.
    z[70] ^= 1;
    assert_eq!(check_checksums(&z), Err(Bad::Udp));
    // Short frames are left as they are.
    let mut short = z[..50].to_vec();
    fill_outer_udp(&mut short);
    assert_eq!(short, &z[..50]);
    assert!(Geneve::new(src, dst, 1)
        .try_wrap(&vec![0; 70_000])
        .is_none());
}

#[test]
fn ipv6_extension_headers_are_walked_to_the_transport() {
    let mut f = Vec::new();
    PacketBuilder::ethernet2(MACS.0, MACS.1)
        .ip(etherparse::IpHeaders::Ipv6(
            etherparse::Ipv6Header {
                source: [0xfd; 16],
                destination: [0xfe; 16],
                hop_limit: 64,
                ..Default::default()
            },
            etherparse::Ipv6Extensions {
                hop_by_hop_options: Some(
                    etherparse::Ipv6RawExtHeader::new_raw(0.into(), &[0; 6]).unwrap(),
                ),
                ..Default::default()
            },
        ))
        .udp(1, 2)
        .write(&mut f, b"after options")
        .unwrap();
    assert!(etherparse_l4_ok(&f));
    assert_eq!(f[20], 0, "hop-by-hop first");
    assert_eq!(assert_checksums(&f).l4, Some(17));
    let n = f.len();
    f[n - 1] ^= 1;
    assert_eq!(check_checksums(&f), Err(Bad::Udp));
}

#[test]
#[should_panic(expected = "UDP checksum 0 (none written)")]
fn assert_checksums_wants_a_udp_checksum_written() {
    let mut f = udp(MACS, sa("10.0.0.5:53"), sa("10.0.0.1:53"), b"query");
    f[40..42].copy_from_slice(&[0, 0]);
    assert_checksums(&f);
}

#[test]
fn flag_letters_set_the_flags_and_a_acks_the_number_given() {
    let t = |f: &[u8]| {
        let p = SlicedPacket::from_ethernet(f).unwrap();
        let Some(TransportSlice::Tcp(t)) = p.transport else {
            panic!()
        };
        (
            t.syn(),
            t.ack(),
            t.fin(),
            t.rst(),
            t.psh(),
            t.acknowledgment_number(),
        )
    };
    let m = |flags| {
        Tcp::new(MACS, sa("10.0.0.5:1"), sa("10.0.0.6:2"))
            .flags_acking(flags, 77)
            .build()
    };
    assert_eq!(t(&m("S")), (true, false, false, false, false, 0));
    assert_eq!(t(&m("SA")), (true, true, false, false, false, 77));
    assert_eq!(t(&m("FA")), (false, true, true, false, false, 77));
    assert_eq!(t(&m("R")), (false, false, false, true, false, 0));
    assert_eq!(t(&m("PA")), (false, true, false, false, true, 77));
}

#[test]
#[should_panic(expected = "TCP flag A without an acknowledgment number")]
fn an_ack_flag_needs_its_number() {
    Tcp::new(MACS, sa("10.0.0.5:1"), sa("10.0.0.6:2"))
        .flags("A")
        .build();
}
