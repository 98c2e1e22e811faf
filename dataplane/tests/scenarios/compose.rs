//! Composition: the compiled, composed transform of all layers equals,
//! byte for byte, running each layer's transform one after the other.

use crate::assert_forward;
use crate::common::*;
use dataplane::headers::parse as dp_parse;
use dataplane::transform::{Compiled, Transform, TransformError};
use dataplane::{Action, DefaultAction, Direction, PacketBuf, ParseMode, Predicate, Rule};

/// A VPC-like port: gateway MACs, firewall, NAT, then Geneve encap.
fn vpc_like() -> Fixture {
    let allow = DefaultAction::Allow;
    let mut fx = geneve_port(
        64,
        &[
            ("gateway", allow, allow),
            ("firewall", DefaultAction::Deny, allow),
            ("nat", allow, allow),
            ("overlay", DefaultAction::Deny, allow),
        ],
    );
    let p = &mut fx.port;
    let macs = SetMacs {
        out: (GUEST_MAC, PEER_MAC),
        inb: (GW_MAC, GUEST_MAC),
    };
    p.add_rule(
        "gateway",
        Direction::Out,
        Rule::new(1, Action::Static(arc(macs))),
    )
    .unwrap();
    let macs = SetMacs {
        out: (GUEST_MAC, PEER_MAC),
        inb: (GW_MAC, GUEST_MAC),
    };
    p.add_rule(
        "gateway",
        Direction::In,
        Rule::new(1, Action::Static(arc(macs))),
    )
    .unwrap();
    p.add_rule(
        "firewall",
        Direction::Out,
        Rule::new(1, Action::StatefulAllow),
    )
    .unwrap();
    let snat = Snat::new("203.0.113.10", 1024, 2047);
    p.add_rule(
        "nat",
        Direction::Out,
        Rule::new(1, stateful(snat)).with(Predicate::Not(Box::new(Predicate::DstIp(vec![
            "10.0.0.0/8".parse().unwrap(),
        ])))),
    )
    .unwrap();
    let encap = arc(EncapTo::new("fd00::1", "fd00::99", 4242));
    p.add_rule(
        "overlay",
        Direction::Out,
        Rule::new(1, Action::Static(encap.clone())),
    )
    .unwrap();
    p.add_rule(
        "overlay",
        Direction::In,
        Rule::new(1, Action::Static(encap))
            .with(Predicate::Vni(vec![dataplane::Vni::new(4242).unwrap()])),
    )
    .unwrap();
    fx
}

/// Applies each layer's transform in turn, re-parsing between layers.
fn layer_by_layer(frame: &[u8], dir: Direction, steps: &[Option<Transform>]) -> Vec<u8> {
    let mut p = PacketBuf::from_frame(frame);
    for t in steps.iter().flatten() {
        let mode = if t.decap {
            ParseMode::Geneve
        } else {
            ParseMode::Plain
        };
        let parsed = dp_parse(p.as_slice(), mode).expect("intermediate frame parses");
        let c = Compiled::new(t, &parsed.hdrs).expect("layer transform compiles");
        c.apply(&mut p, &parsed.off).expect("applies");
    }
    let _ = dir;
    p.as_slice().to_vec()
}

#[test]
fn composed_equals_layer_by_layer_both_directions() {
    let mut fx = vpc_like();
    for (i, f) in [
        tcp4(("10.0.0.5", 40000), ("198.51.100.1", 443), "S"),
        udp4(("10.0.0.5", 5353), ("198.51.100.1", 53)),
        ping4("10.0.0.5", "198.51.100.1", 77),
        tcp4(("10.0.0.5", 40001), ("10.0.0.6", 22), "S"), // VPC peer: no NAT
    ]
    .iter()
    .enumerate()
    {
        let (v, composed) = fx.send(Direction::Out, f);
        assert_forward!(fx, v);
        let trace = fx.port.trace(Direction::Out, f).unwrap();
        assert_eq!(trace.steps.len(), 4, "{trace:?}");
        let steps: Vec<_> = trace.steps.iter().map(|s| s.transform.clone()).collect();
        let manual = layer_by_layer(f, Direction::Out, &steps);
        assert_eq!(
            composed, manual,
            "case {i}: composed != layer by layer\n{trace:#?}"
        );

        // The independent parser agrees the result is well-formed.
        let g = parse_geneve(&composed);
        assert_eq!(g.vni, 4242);
        assert_eq!(g.udp_dst, 6081);
        assert!(
            g.udp_src >= 49152,
            "ECMP source port in the ephemeral range"
        );
        let inner = parse(&g.inner);
        if i < 3 {
            assert_eq!(inner.src_ip, ip("203.0.113.10"));
        } else {
            assert_eq!(inner.src_ip, ip("10.0.0.5"));
        }

        // The reply comes back encapsulated by the peer's host.
        let reply_inner = {
            let s = inner.src_ip.to_string();
            let d = inner.dst_ip.to_string();
            match i {
                0 | 3 => tcp4_macs(
                    PEER_MAC,
                    GUEST_MAC,
                    (&d, inner.dst_port),
                    (&s, inner.src_port),
                    "SA",
                ),
                1 => udp4((&d, inner.dst_port), (&s, inner.src_port)),
                _ => pong4(&d, &s, inner.src_port),
            }
        };
        let wire = geneve_wrap(&reply_inner, "fd00::99", "fd00::1", 4242);
        let before = fx.port.stats().clone();
        let (v, back) = fx.send(Direction::In, &wire);
        assert_forward!(fx, v);
        assert_eq!(
            Delta {
                before: &before,
                after: fx.port.stats()
            }
            .hits(Direction::In),
            1
        );
        let trace = fx.port.trace(Direction::In, &wire).unwrap();
        let steps: Vec<_> = trace.steps.iter().map(|s| s.transform.clone()).collect();
        assert_eq!(
            back,
            layer_by_layer(&wire, Direction::In, &steps),
            "case {i} inbound"
        );
        let seen = parse(&back);
        assert_eq!(seen.dst_ip, ip("10.0.0.5"));
        assert_eq!(seen.dst_mac, GUEST_MAC);
    }
}

#[test]
fn composition_refuses_nonsense() {
    let push = EncapTo::new("fd00::1", "fd00::2", 1).encap;
    let e = Transform {
        encap: Some(push.clone()),
        ..Default::default()
    };
    let d = Transform {
        decap: true,
        ..Default::default()
    };
    assert_eq!(e.then(&e).unwrap_err(), TransformError::DoubleEncap);
    assert_eq!(d.then(&d).unwrap_err(), TransformError::DoubleDecap);
    // A push then a pop cancel out; a pop then a push re-encapsulates.
    assert!(e.then(&d).unwrap().is_identity());
    let re = d.then(&e).unwrap();
    assert!(re.decap && re.encap.is_some());
    // Later field sets win.
    let a = Transform {
        ip_src: Some(ip("10.0.0.1")),
        l4_src: Some(1),
        ..Default::default()
    };
    let b = Transform {
        ip_src: Some(ip("10.0.0.2")),
        ..Default::default()
    };
    let ab = a.then(&b).unwrap();
    assert_eq!((ab.ip_src, ab.l4_src), (Some(ip("10.0.0.2")), Some(1)));
}

#[test]
fn wrong_family_rewrite_is_a_counted_drop() {
    let mut fx = port_with(8, &[("nat", DefaultAction::Allow, DefaultAction::Allow)]);
    fx.port
        .add_rule(
            "nat",
            Direction::Out,
            Rule::new(1, Action::Static(arc(SetDst(ip("fd00::1"))))),
        )
        .unwrap();
    let v = fx.out(&udp4(("10.0.0.5", 1), ("10.0.0.6", 2)));
    crate::assert_drop!(fx, v, dataplane::DropReason::BadTransform);
}

/// The outer UDP checksum is right whatever the guest frame: computed from
/// the inner checksum where that is valid, summed byte by byte otherwise.
#[test]
fn outer_checksum_is_right_for_every_inner_kind() {
    let allow = DefaultAction::Allow;
    let mut fx = port_with(64, &[("overlay", allow, allow)]);
    let encap = arc(EncapTo::new("fd00::1", "fd00::99", 9));
    fx.port
        .add_rule(
            "overlay",
            Direction::Out,
            Rule::new(1, Action::Static(encap)),
        )
        .unwrap();

    let mut padded = udp4(("10.0.0.5", 7), ("10.0.0.6", 7));
    padded.resize(60, 0); // a short frame padded to the Ethernet minimum
    let mut no_csum = udp4(("10.0.0.5", 8), ("10.0.0.6", 8));
    no_csum[40..42].copy_from_slice(&[0, 0]); // IPv4 UDP without checksum
    let mut big = Vec::new();
    etherparse::PacketBuilder::ethernet2(GUEST_MAC, GW_MAC)
        .ipv6(v6("fd00::5"), v6("fd00::6"), 64)
        .tcp(9, 9, 1, 1000)
        .ack(1)
        .write(&mut big, &[0x5a; 1400])
        .unwrap();
    let mut odd = Vec::new();
    etherparse::PacketBuilder::ethernet2(GUEST_MAC, GW_MAC)
        .ipv4(v4("10.0.0.5"), v4("10.0.0.6"), 64)
        .udp(10, 10)
        .write(
            &mut odd,
            &[
                1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21,
            ],
        )
        .unwrap();
    let frames = [
        tcp4(("10.0.0.5", 1), ("10.0.0.6", 2), "S"),
        tcp6(("fd00::5", 1), ("fd00::6", 2), "S"),
        udp6(("fd00::5", 3), ("fd00::6", 4)),
        ping4("10.0.0.5", "10.0.0.6", 5),
        ping6("fd00::5", "fd00::6", 6),
        padded,
        no_csum,
        big,
        odd,
    ];
    // The same kinds again with 1000-byte payloads, past the length where
    // the sum is derived from the inner checksum instead of summed.
    let mut frames = frames.to_vec();
    let pay = [0xa5u8; 1000];
    let b4 = || {
        etherparse::PacketBuilder::ethernet2(GUEST_MAC, GW_MAC).ipv4(
            v4("10.0.0.5"),
            v4("10.0.0.6"),
            64,
        )
    };
    let b6 = || {
        etherparse::PacketBuilder::ethernet2(GUEST_MAC, GW_MAC).ipv6(
            v6("fd00::5"),
            v6("fd00::6"),
            64,
        )
    };
    let mut add = |w: &dyn Fn(&mut Vec<u8>)| {
        let mut v = Vec::new();
        w(&mut v);
        frames.push(v);
    };
    add(&|v| b4().tcp(1, 2, 3, 4).ack(5).write(v, &pay).unwrap());
    add(&|v| b6().tcp(1, 2, 3, 4).ack(5).write(v, &pay).unwrap());
    add(&|v| b4().udp(1, 2).write(v, &pay).unwrap());
    add(&|v| b6().udp(1, 2).write(v, &pay).unwrap());
    add(&|v| b4().icmpv4_echo_request(1, 2).write(v, &pay).unwrap());
    add(&|v| b6().icmpv6_echo_request(1, 2).write(v, &pay).unwrap());
    add(&|v| b4().udp(1, 2).write(v, &pay[..999]).unwrap());
    for (i, f) in frames.iter().enumerate() {
        for pass in 0..2 {
            let (v, out) = fx.send(Direction::Out, f);
            assert_forward!(fx, v);
            // parse_geneve checks the outer UDP checksum with etherparse.
            let g = parse_geneve(&out);
            assert_eq!(&g.inner, f, "frame {i} pass {pass}: inner changed");
        }
    }
}

/// A buffer without room for the encapsulation drops that packet with a
/// reason; the flow it opened stays, and the next packet takes it.
#[test]
fn no_headroom_drops_the_packet_not_the_flow() {
    let allow = DefaultAction::Allow;
    let mut fx = port_with(8, &[("overlay", allow, allow)]);
    let encap = arc(EncapTo::new("fd00::1", "fd00::2", 3));
    fx.port
        .add_rule(
            "overlay",
            Direction::Out,
            Rule::new(1, Action::Static(encap)),
        )
        .unwrap();
    let f = udp4(("10.0.0.5", 1), ("10.0.0.6", 2));
    let mut tight = PacketBuf::new(0, 2048);
    tight.set_frame(&f).unwrap();
    let v = fx.port.process(Direction::Out, &mut tight);
    crate::assert_drop!(fx, v, dataplane::DropReason::NoHeadroom);
    assert_eq!(fx.port.flow_count(), 1);
    let before = fx.port.stats().clone();
    let (v, out) = fx.send(Direction::Out, &f);
    assert_forward!(fx, v);
    assert_eq!(
        Delta {
            before: &before,
            after: fx.port.stats()
        }
        .hits(Direction::Out),
        1
    );
    assert_eq!(parse_geneve(&out).inner, f);
}
