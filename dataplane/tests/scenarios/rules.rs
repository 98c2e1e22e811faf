//! Rule order, predicates, counters, hairpins.

use crate::common::*;
use crate::{assert_drop, assert_forward};
use dataplane::headers::proto;
use dataplane::{
    Action, DefaultAction, Direction, DropReason, PortRange, Predicate, Rule, Verdict,
};

#[test]
fn lower_priority_value_wins_and_ties_keep_insertion_order() {
    let mut fx = port_with(64, &[("fw", DefaultAction::Deny, DefaultAction::Deny)]);
    let ssh = Predicate::DstPort(vec![PortRange::single(22)]);
    let tcp = Predicate::Proto(vec![proto::TCP]);
    // Added out of order: the priority decides, not the order of adding.
    let allow_tcp = fx
        .port
        .add_rule(
            "fw",
            Direction::Out,
            Rule::new(20, Action::Allow).with(tcp.clone()),
        )
        .unwrap();
    let deny_ssh = fx
        .port
        .add_rule(
            "fw",
            Direction::Out,
            Rule::new(10, Action::Deny).with(ssh.clone()),
        )
        .unwrap();

    let v = fx.out(&tcp4(("10.0.0.5", 40000), ("10.0.0.9", 22), "S"));
    assert_drop!(fx, v, DropReason::Denied);
    let v = fx.out(&tcp4(("10.0.0.5", 40000), ("10.0.0.9", 80), "S"));
    assert_forward!(fx, v);
    assert_eq!(fx.port.rule_hits("fw", Direction::Out, deny_ssh), Some(1));
    assert_eq!(fx.port.rule_hits("fw", Direction::Out, allow_tcp), Some(1));

    // Equal priorities: the first added wins.
    let mut fx = port_with(64, &[("fw", DefaultAction::Deny, DefaultAction::Deny)]);
    fx.port
        .add_rule(
            "fw",
            Direction::Out,
            Rule::new(5, Action::Allow).with(tcp.clone()),
        )
        .unwrap();
    fx.port
        .add_rule("fw", Direction::Out, Rule::new(5, Action::Deny).with(tcp))
        .unwrap();
    let v = fx.out(&tcp4(("10.0.0.5", 40000), ("10.0.0.9", 22), "S"));
    assert_forward!(fx, v);
}

#[test]
fn default_deny_counts_separately_from_rule_deny() {
    let mut fx = fw_port(64);
    let v = fx.inb(&tcp4(("192.0.2.1", 5555), ("10.0.0.5", 22), "S"));
    assert_drop!(fx, v, DropReason::DefaultDenied);
    let s = fx.port.layer_stats("fw", Direction::In).unwrap();
    assert_eq!((s.packets, s.default_hits, s.dropped), (1, 1, 1));
    assert_eq!(fx.port.stats().drops(DropReason::DefaultDenied), 1);
    assert_eq!(fx.port.stats().drops(DropReason::Denied), 0);
    assert_eq!(
        fx.port.flow_count(),
        0,
        "a dropped packet leaves no flow behind"
    );
}

#[test]
fn predicates_on_cidr_sets_port_ranges_icmp_type_vni() {
    let mut fx = port_with(64, &[("fw", DefaultAction::Deny, DefaultAction::Deny)]);
    let r = Rule::new(1, Action::Allow)
        .with(Predicate::DstIp(vec![
            "10.1.0.0/16".parse().unwrap(),
            "192.0.2.7".parse().unwrap(),
        ]))
        .with(Predicate::DstPort(vec![
            PortRange::new(8000, 8999).unwrap(),
            PortRange::single(443),
        ]));
    fx.port.add_rule("fw", Direction::Out, r).unwrap();
    fx.port
        .add_rule(
            "fw",
            Direction::Out,
            Rule::new(2, Action::Allow).with(Predicate::IcmpType(vec![8])),
        )
        .unwrap();
    let ok = [
        tcp4(("10.0.0.5", 1), ("10.1.200.3", 8080), "S"),
        tcp4(("10.0.0.5", 1), ("192.0.2.7", 443), "S"),
        udp4(("10.0.0.5", 1), ("10.1.0.1", 8999)),
        ping4("10.0.0.5", "8.8.8.8", 7),
    ];
    for f in &ok {
        let v = fx.out(f);
        assert_forward!(fx, v);
    }
    let bad = [
        tcp4(("10.0.0.5", 1), ("10.2.0.1", 8080), "S"),
        tcp4(("10.0.0.5", 1), ("192.0.2.8", 443), "S"),
        tcp4(("10.0.0.5", 1), ("10.1.0.1", 9000), "S"),
    ];
    for f in &bad {
        let v = fx.out(f);
        assert_drop!(fx, v, DropReason::DefaultDenied);
    }

    // VNI predicates see the outer header of encapsulated packets.
    let mut fx = geneve_port(
        64,
        &[("overlay", DefaultAction::Deny, DefaultAction::Allow)],
    );
    fx.port
        .add_rule(
            "overlay",
            Direction::In,
            Rule::new(
                1,
                Action::Static(arc(EncapTo::new("fd00::1", "fd00::2", 77))),
            )
            .with(Predicate::Vni(vec![dataplane::Vni::new(77).unwrap()])),
        )
        .unwrap();
    let inner = tcp4(("10.0.0.9", 80), ("10.0.0.5", 40000), "SA");
    let v = fx.inb(&geneve_wrap(&inner, "fd00::2", "fd00::1", 77));
    assert_forward!(fx, v);
    let v = fx.inb(&geneve_wrap(&inner, "fd00::2", "fd00::1", 78));
    assert_drop!(fx, v, DropReason::DefaultDenied);
}

#[test]
fn hairpin_answers_without_making_a_flow() {
    let mut fx = port_with(
        64,
        &[("gateway", DefaultAction::Deny, DefaultAction::Allow)],
    );
    fx.port
        .add_rule(
            "gateway",
            Direction::Out,
            Rule::new(1, Action::Hairpin(arc(EchoResponder { mac: GW_MAC })))
                .with(Predicate::DstIp(vec!["10.0.0.1".parse().unwrap()]))
                .with(Predicate::IcmpType(vec![8])),
        )
        .unwrap();
    let (v, _) = fx.send(Direction::Out, &ping4("10.0.0.5", "10.0.0.1", 0x1234));
    let Verdict::Hairpin(reply) = v else {
        panic!("expected a hairpin, got {v:?}\n{}", fx.dump())
    };
    let seen = parse(reply.as_slice());
    assert_eq!(seen.src_ip, ip("10.0.0.1"));
    assert_eq!(seen.dst_ip, ip("10.0.0.5"));
    assert_eq!(seen.dst_mac, GUEST_MAC);
    assert_eq!(seen.src_port, 0x1234, "echo identifier kept");
    assert_eq!(fx.port.flow_count(), 0);
    assert_eq!(fx.port.stats().dir(Direction::Out).hairpins, 1);
    assert_eq!(
        fx.port
            .layer_stats("gateway", Direction::Out)
            .unwrap()
            .hairpins,
        1
    );
    // Other pings are not answered: they go on.
    let v = fx.out(&ping4("10.0.0.5", "10.0.0.99", 1));
    assert_forward!(fx, v);
}

#[test]
fn batch_reads_clock_once_and_counts_per_direction() {
    let mut fx = fw_port(64);
    let frames: Vec<_> = (0..32u16)
        .map(|i| udp4(("10.0.0.5", 1000 + i), ("10.0.0.9", 53)))
        .collect();
    let mut pkts: Vec<_> = frames
        .iter()
        .map(|f| dataplane::PacketBuf::from_frame(f))
        .collect();
    let mut verdicts = Vec::with_capacity(32);
    fx.port
        .process_batch(Direction::Out, &mut pkts, &mut verdicts);
    assert_eq!(verdicts.len(), 32);
    assert!(verdicts.iter().all(|v| matches!(v, Verdict::Forward)));
    let s = fx.port.stats().dir(Direction::Out);
    assert_eq!((s.packets, s.uft_misses, s.forwarded), (32, 32, 32));
    let bytes: usize = frames.iter().map(Vec::len).sum();
    assert_eq!(s.bytes, bytes as u64);
    // Second pass: all hits.
    let mut pkts: Vec<_> = frames
        .iter()
        .map(|f| dataplane::PacketBuf::from_frame(f))
        .collect();
    fx.port
        .process_batch(Direction::Out, &mut pkts, &mut verdicts);
    assert_eq!(fx.port.stats().dir(Direction::Out).uft_hits, 32);
}

struct Refuses;

impl std::fmt::Display for Refuses {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("refuses")
    }
}

impl dataplane::StaticAction for Refuses {
    fn transform(
        &self,
        _: Direction,
        _: &dataplane::Headers,
        _: &mut dataplane::Meta,
    ) -> Result<dataplane::Transform, dataplane::GenError> {
        Err(dataplane::GenError::Refused("no_v2p_mapping"))
    }
}

#[test]
fn policy_drops_are_counted_by_their_own_names() {
    let mut fx = port_with(8, &[("gateway", DefaultAction::Deny, DefaultAction::Allow)]);
    let not_guest = Predicate::Not(Box::new(Predicate::EthSrc(vec![GUEST_MAC])));
    fx.port
        .add_rule(
            "gateway",
            Direction::Out,
            Rule::new(1, Action::DenyWith("spoofed_source")).with(not_guest),
        )
        .unwrap();
    fx.port
        .add_rule(
            "gateway",
            Direction::Out,
            Rule::new(2, Action::Static(arc(Refuses)))
                .with(Predicate::DstIp(vec!["10.9.0.0/16".parse().unwrap()])),
        )
        .unwrap();
    let spoofed = tcp4_macs(PEER_MAC, GW_MAC, ("10.0.0.5", 1), ("10.0.0.9", 80), "S");
    for _ in 0..2 {
        let v = fx.out(&spoofed);
        assert_drop!(fx, v, DropReason::Policy("spoofed_source"));
    }
    let v = fx.out(&tcp4(("10.0.0.5", 1), ("10.9.0.9", 80), "S"));
    assert_drop!(fx, v, DropReason::Policy("no_v2p_mapping"));
    let v = fx.out(&tcp4(("10.0.0.5", 1), ("10.0.0.9", 80), "S"));
    assert_forward!(fx, v);
    let s = fx.port.stats();
    assert_eq!(s.drops(DropReason::Policy("spoofed_source")), 2);
    assert_eq!(
        s.drop_counts(),
        vec![("spoofed_source", 2), ("no_v2p_mapping", 1)]
    );
    assert_eq!(
        fx.port
            .layer_stats("gateway", Direction::Out)
            .unwrap()
            .dropped,
        3
    );
}
