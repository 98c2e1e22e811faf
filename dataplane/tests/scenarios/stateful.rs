//! Stateful allow, both-direction UFT entries, epoch re-checks, NAT state.

use crate::common::*;
use crate::{assert_drop, assert_forward};
use dataplane::headers::proto;
use dataplane::tcp::TcpState;
use dataplane::{
    Action, DefaultAction, Direction, DropReason, FlowKey, PortRange, Predicate, Rule,
};
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

fn allow_web_out(fx: &mut Fixture) -> dataplane::RuleId {
    let r = Rule::new(10, Action::StatefulAllow)
        .with(Predicate::Proto(vec![proto::TCP]))
        .with(Predicate::DstPort(vec![PortRange::single(80)]));
    fx.port.add_rule("fw", Direction::Out, r).unwrap()
}

#[test]
fn stateful_allow_lets_replies_in_and_nothing_else() {
    let mut fx = port_with(64, &[("fw", DefaultAction::Deny, DefaultAction::Deny)]);
    allow_web_out(&mut fx);
    let syn = tcp4(("10.0.0.5", 40000), ("10.0.0.9", 80), "S");
    let v = fx.out(&syn);
    assert_forward!(fx, v);
    // One slow-path walk made UFT entries for the flow and its reverse.
    assert_eq!(fx.port.uft_len(Direction::Out), 1, "{}", fx.dump());
    assert_eq!(fx.port.uft_len(Direction::In), 1, "{}", fx.dump());

    let before = fx.port.stats().clone();
    let v = fx.inb(&reply_tcp4(&syn, "SA"));
    assert_forward!(fx, v);
    let d = Delta {
        before: &before,
        after: fx.port.stats(),
    };
    assert_eq!(
        d.hits(Direction::In),
        1,
        "the first reply takes the fast path"
    );

    // Not replies: other port, other source, other protocol.
    for f in [
        tcp4(("10.0.0.9", 81), ("10.0.0.5", 40000), "SA"),
        tcp4(("10.0.0.8", 80), ("10.0.0.5", 40000), "SA"),
        tcp4(("10.0.0.9", 80), ("10.0.0.5", 40001), "SA"),
        udp4(("10.0.0.9", 80), ("10.0.0.5", 40000)),
    ] {
        let v = fx.inb(&f);
        assert_drop!(fx, v, DropReason::DefaultDenied);
    }
    // And an outbound flow the rules do not allow stays refused.
    let v = fx.out(&tcp4(("10.0.0.5", 40000), ("10.0.0.9", 443), "S"));
    assert_drop!(fx, v, DropReason::DefaultDenied);
}

#[test]
fn uft_hit_gives_the_same_bytes_as_the_slow_path() {
    let mut fx = port_with(
        64,
        &[
            ("gw", DefaultAction::Allow, DefaultAction::Allow),
            ("nat", DefaultAction::Allow, DefaultAction::Allow),
        ],
    );
    fx.port
        .add_rule(
            "gw",
            Direction::Out,
            Rule::new(
                1,
                Action::Static(arc(SetMacs {
                    out: (GW_MAC, PEER_MAC),
                    inb: (GW_MAC, GUEST_MAC),
                })),
            ),
        )
        .unwrap();
    let snat = Snat::new("203.0.113.10", 1024, 2047);
    fx.port
        .add_rule("nat", Direction::Out, Rule::new(1, stateful(snat.clone())))
        .unwrap();
    for f in [
        tcp4(("10.0.0.5", 40000), ("198.51.100.1", 443), "S"),
        udp4(("10.0.0.5", 5353), ("198.51.100.1", 53)),
        ping4("10.0.0.5", "198.51.100.1", 99),
    ] {
        let (v1, slow) = fx.send(Direction::Out, &f);
        assert_forward!(fx, v1);
        let before = fx.port.stats().clone();
        let (v2, fast) = fx.send(Direction::Out, &f);
        assert_forward!(fx, v2);
        assert_eq!(
            Delta {
                before: &before,
                after: fx.port.stats()
            }
            .hits(Direction::Out),
            1
        );
        assert_eq!(slow, fast, "slow path and UFT hit disagree");
        let seen = parse(&fast);
        assert_eq!(seen.src_ip, ip("203.0.113.10"));
        assert_eq!((seen.src_mac, seen.dst_mac), (GW_MAC, PEER_MAC));
    }
    assert_eq!(
        snat.generated.load(Ordering::Relaxed),
        3,
        "one NAT allocation per flow"
    );
}

#[test]
fn snat_reply_is_translated_back() {
    let mut fx = port_with(64, &[("nat", DefaultAction::Deny, DefaultAction::Allow)]);
    let snat = Snat::new("203.0.113.10", 1024, 2047);
    fx.port
        .add_rule("nat", Direction::Out, Rule::new(1, stateful(snat)))
        .unwrap();
    let syn = tcp4(("10.0.0.5", 40000), ("198.51.100.1", 443), "S");
    let (_, out) = fx.send(Direction::Out, &syn);
    let seen = parse(&out);
    assert_eq!((seen.src_ip, seen.src_port), (ip("203.0.113.10"), 1024));
    // The reply, as the internet sends it, to the external address.
    let (v, back) = fx.send(Direction::In, &reply_tcp4(&out, "SA"));
    assert_forward!(fx, v);
    let seen = parse(&back);
    assert_eq!((seen.dst_ip, seen.dst_port), (ip("10.0.0.5"), 40000));
    assert_eq!((seen.src_ip, seen.src_port), (ip("198.51.100.1"), 443));
    let k = FlowKey::of(
        &dataplane::headers::parse(&syn, dataplane::ParseMode::Plain)
            .unwrap()
            .hdrs,
    )
    .unwrap();
    assert_eq!(
        fx.port.tcp_state(Direction::Out, &k),
        Some(TcpState::SynReceived)
    );
}

/// A SNAT flow's translation is held by its flow record, not by two
/// entries in the NAT layer's table; a re-check keeps it (same external
/// port), and the flow's end gives the port back.
#[test]
fn snat_translation_is_held_by_the_flow_not_the_layer_table() {
    let mut fx = port_with(64, &[("nat", DefaultAction::Deny, DefaultAction::Allow)]);
    let snat = Snat::new("203.0.113.10", 1024, 1024);
    fx.port
        .add_rule("nat", Direction::Out, Rule::new(1, stateful(snat.clone())))
        .unwrap();
    let syn = tcp4(("10.0.0.5", 40000), ("198.51.100.1", 443), "S");
    let (v, out) = fx.send(Direction::Out, &syn);
    assert_forward!(fx, v);
    assert_eq!(parse(&out).src_port, 1024);
    let (v, back) = fx.send(Direction::In, &reply_tcp4(&out, "SA"));
    assert_forward!(fx, v);
    assert_eq!(parse(&back).dst_port, 40000);
    let table = |fx: &Fixture| {
        [Direction::Out, Direction::In].map(|d| fx.port.layer_table_len("nat", d).unwrap())
    };
    assert_eq!(table(&fx), [0, 0], "the translation is in the flow record");
    // The layer's dump still shows the state, as the entries it stands for.
    let nat = fx
        .port
        .dump_layers()
        .into_iter()
        .find(|l| l.name == "nat")
        .unwrap();
    assert_eq!(nat.lft_out.len() + nat.lft_in.len(), 2);

    // A rule change: the flow is re-checked and keeps its translation.
    fx.port
        .add_rule(
            "nat",
            Direction::In,
            Rule::new(9, Action::Deny).with(Predicate::Proto(vec![proto::UDP])),
        )
        .unwrap();
    let ack = tcp4(("10.0.0.5", 40000), ("198.51.100.1", 443), "A");
    let (v, out) = fx.send(Direction::Out, &ack);
    assert_forward!(fx, v);
    assert_eq!(parse(&out).src_port, 1024);
    let (v, back) = fx.send(Direction::In, &reply_tcp4(&out, "A"));
    assert_forward!(fx, v);
    assert_eq!(parse(&back).dst_port, 40000);
    assert_eq!(table(&fx), [0, 0]);
    assert_eq!(snat.generated.load(Ordering::Relaxed), 1);

    // The only port is taken; the flow's end returns it.
    let v = fx.out(&udp4(("10.0.0.5", 1), ("198.51.100.1", 53)));
    assert_drop!(fx, v, DropReason::Exhausted);
    fx.port.clear_flows();
    assert_eq!(*snat.free.lock().unwrap(), vec![1024]);
    let (v, out) = fx.send(Direction::Out, &udp4(("10.0.0.5", 1), ("198.51.100.1", 53)));
    assert_forward!(fx, v);
    assert_eq!(parse(&out).src_port, 1024);
    assert_eq!(table(&fx), [0, 0]);
}

#[test]
fn nat_exhaustion_drops_new_flows_and_keeps_old_ones() {
    let mut fx = port_with(64, &[("nat", DefaultAction::Deny, DefaultAction::Allow)]);
    let snat = Snat::new("203.0.113.10", 1024, 1025);
    fx.port
        .add_rule("nat", Direction::Out, Rule::new(1, stateful(snat)))
        .unwrap();
    let a = udp4(("10.0.0.5", 1), ("198.51.100.1", 53));
    let b = udp4(("10.0.0.5", 2), ("198.51.100.1", 53));
    let c = udp4(("10.0.0.5", 3), ("198.51.100.1", 53));
    for f in [&a, &b] {
        let v = fx.out(f);
        assert_forward!(fx, v);
    }
    let v = fx.out(&c);
    assert_drop!(fx, v, DropReason::Exhausted);
    assert_eq!(fx.port.stats().drops(DropReason::Exhausted), 1);
    let v = fx.out(&a);
    assert_forward!(fx, v);
    // When a flow expires its port comes back.
    fx.clock.advance_secs(61);
    fx.port.expire();
    let v = fx.out(&c);
    assert_forward!(fx, v);
}

#[test]
fn rule_change_rechecks_established_flows() {
    let mut fx = port_with(64, &[("fw", DefaultAction::Deny, DefaultAction::Deny)]);
    allow_web_out(&mut fx);
    let syn = tcp4(("10.0.0.5", 40000), ("10.0.0.9", 80), "S");
    let v = fx.out(&syn);
    assert_forward!(fx, v);
    let v = fx.inb(&reply_tcp4(&syn, "SA"));
    assert_forward!(fx, v);
    let ack = tcp4(("10.0.0.5", 40000), ("10.0.0.9", 80), "A");
    let v = fx.out(&ack);
    assert_forward!(fx, v);

    // An unrelated change bumps the epoch; the flow is re-checked and kept.
    let epoch = fx.port.epoch();
    fx.port
        .add_rule(
            "fw",
            Direction::Out,
            Rule::new(50, Action::Allow).with(Predicate::Proto(vec![proto::UDP])),
        )
        .unwrap();
    assert!(fx.port.epoch() > epoch);
    let before = fx.port.stats().clone();
    let v = fx.out(&ack);
    assert_forward!(fx, v);
    assert_eq!(fx.port.stats().revalidations - before.revalidations, 1);
    let v = fx.inb(&reply_tcp4(&syn, "A"));
    assert_forward!(fx, v);
    assert_eq!(
        fx.port.stats().revalidations - before.revalidations,
        1,
        "the reverse entry was refreshed too"
    );
    assert_eq!(fx.port.flow_count(), 1);

    // The new rule-set no longer allows port 80: the flow stops, both ways.
    fx.port
        .set_rules(
            "fw",
            vec![],
            vec![Rule::new(1, Action::StatefulAllow)
                .with(Predicate::DstPort(vec![PortRange::single(443)]))],
        )
        .unwrap();
    let v = fx.out(&ack);
    assert_drop!(fx, v, DropReason::DefaultDenied);
    let v = fx.inb(&reply_tcp4(&syn, "A"));
    assert_drop!(fx, v, DropReason::DefaultDenied);
    assert_eq!(fx.port.flow_count(), 0, "{}", fx.dump());
    assert_eq!(
        fx.port.uft_len(Direction::In) + fx.port.uft_len(Direction::Out),
        0
    );
}

#[test]
fn recheck_keeps_stateful_allocation_when_same_action_decides() {
    let mut fx = port_with(64, &[("nat", DefaultAction::Deny, DefaultAction::Allow)]);
    let snat = Snat::new("203.0.113.10", 1024, 2047);
    fx.port
        .add_rule("nat", Direction::Out, Rule::new(10, stateful(snat.clone())))
        .unwrap();
    let f = udp4(("10.0.0.5", 1), ("198.51.100.1", 53));
    let (_, first) = fx.send(Direction::Out, &f);
    // An unrelated rule: the flow is re-checked, its NAT port kept.
    fx.port
        .add_rule(
            "nat",
            Direction::Out,
            Rule::new(1, Action::Deny).with(Predicate::Proto(vec![proto::ICMP])),
        )
        .unwrap();
    let (v, again) = fx.send(Direction::Out, &f);
    assert_forward!(fx, v);
    assert_eq!(first, again);
    assert_eq!(snat.generated.load(Ordering::Relaxed), 1);
    // Replies still find their way back through the re-made reverse entry.
    let back = udp4(("198.51.100.1", 53), ("203.0.113.10", 1024));
    let (v, b) = fx.send(Direction::In, &back);
    assert_forward!(fx, v);
    assert_eq!(parse(&b).dst_ip, ip("10.0.0.5"));
}

#[test]
fn ipv6_flows_are_stateful_too() {
    let mut fx = fw_port(64);
    let syn = tcp6(("fd00::5", 40000), ("fd00::9", 22), "S");
    let v = fx.out(&syn);
    assert_forward!(fx, v);
    let v = fx.inb(&tcp6(("fd00::9", 22), ("fd00::5", 40000), "SA"));
    assert_drop!(fx, v, DropReason::DefaultDenied);
    fx.port
        .add_rule("fw", Direction::Out, Rule::new(1, Action::StatefulAllow))
        .unwrap();
    let v = fx.out(&syn);
    assert_forward!(fx, v);
    let v = fx.inb(&tcp6(("fd00::9", 22), ("fd00::5", 40000), "SA"));
    assert_forward!(fx, v);
    let v = fx.out(&ping6("fd00::5", "fd00::9", 3));
    assert_forward!(fx, v);
}

/// Rewrites the destination to wherever a shared mapping points now, as an
/// overlay does from its V2P table, and says the transform depends on it.
struct Mapped {
    to: std::sync::Mutex<std::net::IpAddr>,
    version: dataplane::Version,
}

impl std::fmt::Display for Mapped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("mapped")
    }
}

impl dataplane::StaticAction for Mapped {
    fn transform(
        &self,
        _: Direction,
        _: &dataplane::Headers,
        _: &mut dataplane::Meta,
    ) -> Result<dataplane::Transform, dataplane::GenError> {
        Ok(dataplane::Transform {
            ip_dst: Some(*self.to.lock().unwrap()),
            deps: [self.version.dep()].into_iter().collect(),
            ..Default::default()
        })
    }
}

#[test]
fn a_changed_dependency_rechecks_only_the_flows_that_use_it() {
    let mut fx = port_with(64, &[("map", DefaultAction::Allow, DefaultAction::Allow)]);
    let m = std::sync::Arc::new(Mapped {
        to: std::sync::Mutex::new(ip("192.0.2.1")),
        version: dataplane::Version::new(),
    });
    fx.port
        .add_rule(
            "map",
            Direction::Out,
            Rule::new(1, Action::Static(m.clone())).with(Predicate::Proto(vec![proto::UDP])),
        )
        .unwrap();
    let mapped = udp4(("10.0.0.5", 1), ("10.9.9.9", 53));
    let other = tcp4(("10.0.0.5", 2), ("10.0.0.9", 80), "S");
    assert_eq!(
        parse(&fx.send(Direction::Out, &mapped).1).dst_ip,
        ip("192.0.2.1")
    );
    assert_forward!(fx, fx.out(&other));
    let before = fx.port.stats().clone();
    assert_eq!(
        parse(&fx.send(Direction::Out, &mapped).1).dst_ip,
        ip("192.0.2.1")
    );
    assert_eq!(
        Delta {
            before: &before,
            after: fx.port.stats()
        }
        .hits(Direction::Out),
        1
    );

    // The mapping moves: the flow follows at its next packet, re-checked
    // once; the flow that does not depend on it is untouched.
    *m.to.lock().unwrap() = ip("192.0.2.2");
    m.version.bump();
    let before = fx.port.stats().clone();
    assert!(fx.port.dump_uft().outbound.iter().any(|e| e.stale));
    assert_eq!(
        parse(&fx.send(Direction::Out, &mapped).1).dst_ip,
        ip("192.0.2.2")
    );
    assert_forward!(fx, fx.out(&other));
    assert_eq!(
        parse(&fx.send(Direction::Out, &mapped).1).dst_ip,
        ip("192.0.2.2")
    );
    let after = fx.port.stats();
    assert_eq!(after.revalidations - before.revalidations, 1);
    assert_eq!(
        Delta {
            before: &before,
            after
        }
        .hits(Direction::Out),
        2
    );
    assert_eq!(fx.port.flow_count(), 2);
}

/// Decapsulates packets from one allowed underlay sender and pins it, as
/// the VPC overlay does after checking V2P.
struct DecapFrom(std::net::Ipv6Addr);

impl std::fmt::Display for DecapFrom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "decap-from {}", self.0)
    }
}

impl dataplane::StaticAction for DecapFrom {
    fn transform(
        &self,
        _: Direction,
        h: &dataplane::Headers,
        _: &mut dataplane::Meta,
    ) -> Result<dataplane::Transform, dataplane::GenError> {
        let src = h.outer.map(|o| o.ip_src);
        if src != Some(self.0) {
            return Err(dataplane::GenError::Refused("spoofed_overlay_source"));
        }
        Ok(dataplane::Transform {
            decap: true,
            expect_outer_src: src,
            ..Default::default()
        })
    }
}

#[test]
fn an_established_inbound_flow_accepts_only_its_underlay_sender() {
    let mut fx = geneve_port(
        64,
        &[("overlay", DefaultAction::Deny, DefaultAction::Allow)],
    );
    let peer: std::net::Ipv6Addr = "fd00::2".parse().unwrap();
    fx.port
        .add_rule(
            "overlay",
            Direction::In,
            Rule::new(1, Action::Static(arc(DecapFrom(peer)))),
        )
        .unwrap();
    let inner = udp4(("10.0.0.9", 53), ("10.0.0.5", 5353));
    let real = geneve_wrap(&inner, "fd00::2", "fd00::1", 5);
    let spoof = geneve_wrap(&inner, "fd00::66", "fd00::1", 5);
    let v = fx.inb(&real);
    assert_forward!(fx, v);
    let before = fx.port.stats().clone();
    let v = fx.inb(&real);
    assert_forward!(fx, v);
    assert_eq!(
        Delta {
            before: &before,
            after: fx.port.stats()
        }
        .hits(Direction::In),
        1
    );
    // Same VNI, same inner 5-tuple, another sender: not the flow's packet.
    let v = fx.inb(&spoof);
    assert_drop!(fx, v, DropReason::Policy("spoofed_overlay_source"));
    // The real flow is untouched and still on the fast path.
    let before = fx.port.stats().clone();
    let (v, out) = fx.send(Direction::In, &real);
    assert_forward!(fx, v);
    assert_eq!(out, inner);
    assert_eq!(
        Delta {
            before: &before,
            after: fx.port.stats()
        }
        .hits(Direction::In),
        1
    );
}

/// RFC 792 / RFC 1812 §4.3.2.3: an error quoting as much as fits. The
/// quote is rewritten back to the guest's addresses with every checksum in
/// it still right: the quoted TCP segment's included.
#[test]
fn icmp_errors_quoting_whole_segments_keep_their_checksums() {
    let mut fx = port_with(64, &[("nat", DefaultAction::Deny, DefaultAction::Allow)]);
    let snat = Snat::new("203.0.113.10", 1024, 2047);
    fx.port
        .add_rule("nat", Direction::Out, Rule::new(1, stateful(snat)))
        .unwrap();
    for (i, f) in [
        tcp4(("10.0.0.5", 40000), ("198.51.100.1", 443), "S"),
        ping4("10.0.0.5", "198.51.100.1", 77),
    ]
    .iter()
    .enumerate()
    {
        let (_, sent) = fx.send(Direction::Out, f);
        // Time exceeded (as a traceroute hop sends), quoting everything.
        let mut err = Vec::new();
        etherparse::PacketBuilder::ethernet2(PEER_MAC, GW_MAC)
            .ipv4(v4("192.0.2.254"), v4("203.0.113.10"), 64)
            .icmpv4(etherparse::Icmpv4Type::TimeExceeded(
                etherparse::icmpv4::TimeExceededCode::TtlExceededInTransit,
            ))
            .write(&mut err, &sent[14..])
            .unwrap();
        let before = fx.port.stats().related;
        let (v, got) = fx.send(Direction::In, &err);
        assert_forward!(fx, v);
        assert_eq!(fx.port.stats().related, before + 1, "case {i}");
        let outer = parse(&got); // the ICMP checksum
        assert_eq!(outer.dst_ip, ip("10.0.0.5"));
        // The quote is the guest's own packet again, byte for byte.
        assert_eq!(&got[14 + 20 + 8..], &f[14..], "case {i}: quote restored");
    }
}

/// A NAT whose pool is `free` (so making one allocates nothing else).
fn snat_with(external: &str, first: u16, free: &Arc<Mutex<Vec<u16>>>) -> Arc<Snat> {
    Arc::new(Snat {
        external: ip(external),
        next: AtomicU16::new(first),
        last: first + 999,
        free: free.clone(),
        generated: AtomicUsize::new(0),
    })
}

/// A rule-set dropped, then a new one with another NAT whose action the
/// allocator puts where the old action was. The new action is still not
/// the old one: the established flow is re-checked and translated by the
/// new action, and the old mapping is released.
#[test]
fn a_new_action_at_a_freed_action_s_address_is_not_taken_for_it() {
    let mut fx = port_with(64, &[("nat", DefaultAction::Deny, DefaultAction::Allow)]);
    let (old_pool, new_pool) = (Arc::default(), Arc::default());
    let old = snat_with("203.0.113.10", 1024, &old_pool);
    let old_addr = Arc::as_ptr(&old) as usize;
    fx.port
        .add_rule("nat", Direction::Out, Rule::new(10, stateful(old)))
        .unwrap();
    let f = udp4(("10.0.0.5", 1), ("198.51.100.1", 53));
    let (v, first) = fx.send(Direction::Out, &f);
    assert_forward!(fx, v);
    assert_eq!(parse(&first).src_ip, ip("203.0.113.10"));

    // The old rule-set goes, and with it the last handle on the old action
    // (the flow's state holds only the mapping the action made).
    fx.port.set_rules("nat", vec![], vec![]).unwrap();
    // The allocator usually hands the freed address back within a few
    // tries; when another test thread's frees got it first it may not, and
    // the checks below then run with a fresh action (the same assertions,
    // only the address trap is missing).
    let mut tries = Vec::new();
    let new = loop {
        let n = snat_with("203.0.113.99", 3000, &new_pool);
        if Arc::as_ptr(&n) as usize == old_addr {
            break n;
        }
        if tries.len() == 10_000 {
            eprintln!("note: the freed address was not reused; checked with a fresh action");
            break n;
        }
        tries.push(n);
    };
    fx.port
        .set_rules("nat", vec![], vec![Rule::new(10, stateful(new.clone()))])
        .unwrap();

    let (v, again) = fx.send(Direction::Out, &f);
    assert_forward!(fx, v);
    let seen = parse(&again);
    assert_eq!(
        (seen.src_ip, seen.src_port),
        (ip("203.0.113.99"), 3000),
        "translated by the new action\n{}",
        fx.dump()
    );
    assert_eq!(new.generated.load(Ordering::Relaxed), 1);
    assert_eq!(
        old_pool.lock().unwrap().as_slice(),
        &[1024],
        "old mapping freed"
    );
    // Replies: to the new mapping they come back; to the old one, no more.
    let (v, back) = fx.send(
        Direction::In,
        &udp4(("198.51.100.1", 53), ("203.0.113.99", 3000)),
    );
    assert_forward!(fx, v);
    assert_eq!(
        (parse(&back).dst_ip, parse(&back).dst_port),
        (ip("10.0.0.5"), 1)
    );
    let v = fx.inb(&udp4(("198.51.100.1", 53), ("203.0.113.10", 1024)));
    assert_drop!(fx, v, DropReason::DefaultDenied);
}

/// An action replaced by a new one at the same priority, in one step:
/// the established TCP flow is translated by the new action, never the old.
#[test]
fn an_action_replaced_at_the_same_priority_translates_established_flows() {
    let mut fx = port_with(64, &[("nat", DefaultAction::Deny, DefaultAction::Allow)]);
    let old = Snat::new("203.0.113.10", 1024, 2047);
    fx.port
        .add_rule("nat", Direction::Out, Rule::new(10, stateful(old.clone())))
        .unwrap();
    let syn = tcp4(("10.0.0.5", 40000), ("198.51.100.1", 443), "S");
    let (_, out) = fx.send(Direction::Out, &syn);
    assert_forward!(fx, fx.inb(&reply_tcp4(&out, "SA")));
    let ack = tcp4(("10.0.0.5", 40000), ("198.51.100.1", 443), "A");
    assert_forward!(fx, fx.out(&ack));

    let new = Snat::new("203.0.113.99", 5000, 5999);
    fx.port
        .set_rules("nat", vec![], vec![Rule::new(10, stateful(new.clone()))])
        .unwrap();
    for _ in 0..2 {
        let (v, sent) = fx.send(Direction::Out, &ack);
        assert_forward!(fx, v);
        let seen = parse(&sent);
        assert_eq!((seen.src_ip, seen.src_port), (ip("203.0.113.99"), 5000));
    }
    assert_eq!(new.generated.load(Ordering::Relaxed), 1);
    assert_eq!(old.free.lock().unwrap().as_slice(), &[1024]);
    let back = tcp4(("198.51.100.1", 443), ("203.0.113.99", 5000), "A");
    let (v, b) = fx.send(Direction::In, &back);
    assert_forward!(fx, v);
    assert_eq!(parse(&b).dst_ip, ip("10.0.0.5"));
}
