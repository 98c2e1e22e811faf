//! Idle timeouts enforced where flow state is looked up, not only by the
//! periodic sweep: a packet that finds a flow idle past its timeout finds
//! no flow (the port removes it then and there), in both directions and
//! for every expiry class, for the UFT, the layers' flow tables, the TCP
//! state and NAT mappings, and ICMP errors matched to a flow. No test here
//! calls `Port::expire`: the sweep has not run.

use crate::common::*;
use crate::{assert_drop, assert_forward};
use dataplane::tcp::TcpState;
use dataplane::{DefaultAction, Direction, DropReason, Rule};
use std::sync::atomic::Ordering;

fn out_seg(sport: u16, flags: &str) -> Vec<u8> {
    tcp4(("10.0.0.5", sport), ("10.0.0.9", 80), flags)
}

fn in_seg(sport: u16, flags: &str) -> Vec<u8> {
    tcp4(("10.0.0.9", 80), ("10.0.0.5", sport), flags)
}

/// RFC 9293 §3.5 three-way handshake from the guest.
fn handshake(fx: &mut Fixture, sport: u16) {
    assert_forward!(fx, fx.out(&out_seg(sport, "S")));
    assert_forward!(fx, fx.inb(&in_seg(sport, "SA")));
    assert_forward!(fx, fx.out(&out_seg(sport, "A")));
}

/// The flow is gone from every table the port has.
fn assert_no_flow_state(fx: &Fixture) {
    assert_eq!(fx.port.flow_count(), 0, "{}", fx.dump());
    assert_eq!(fx.port.uft_len(Direction::In), 0, "{}", fx.dump());
    assert_eq!(fx.port.uft_len(Direction::Out), 0, "{}", fx.dump());
    for l in fx.port.dump_layers() {
        assert!(l.lft_in.is_empty() && l.lft_out.is_empty(), "{}", fx.dump());
    }
}

#[test]
fn syn_ack_after_the_half_open_timeout_is_not_delivered() {
    let mut fx = stateful_fw(64);
    let syn = out_seg(1000, "S");
    assert_forward!(fx, fx.out(&syn));
    // Half-open timeout 5 s; the SYN-ACK comes 10 s later.
    fx.clock.advance_secs(10);
    let v = fx.inb(&reply_tcp4(&syn, "SA"));
    assert_drop!(fx, v, DropReason::DefaultDenied);
    assert_eq!(fx.port.stats().flows_expired, 1);
    assert_no_flow_state(&fx);
}

#[test]
fn syn_ack_within_the_half_open_timeout_is_delivered() {
    let mut fx = stateful_fw(64);
    let syn = out_seg(1000, "S");
    assert_forward!(fx, fx.out(&syn));
    fx.clock.advance_secs(4);
    assert_forward!(fx, fx.inb(&reply_tcp4(&syn, "SA")));
    assert_eq!(fx.port.stats().flows_expired, 0);
    assert_eq!(
        fx.port.tcp_state(Direction::Out, &key(&syn)),
        Some(TcpState::SynReceived)
    );
}

#[test]
fn udp_reply_an_hour_after_its_request_is_not_delivered() {
    let mut fx = stateful_fw(64);
    assert_forward!(fx, fx.out(&udp4(("10.0.0.5", 53000), ("10.0.0.53", 53))));
    fx.clock.advance_secs(3600);
    let v = fx.inb(&udp4(("10.0.0.53", 53), ("10.0.0.5", 53000)));
    assert_drop!(fx, v, DropReason::DefaultDenied);
    assert_eq!(fx.port.stats().flows_expired, 1);
    assert_no_flow_state(&fx);
}

#[test]
fn an_active_flow_outlives_its_timeout() {
    let mut fx = stateful_fw(64);
    let req = udp4(("10.0.0.5", 53000), ("10.0.0.53", 53));
    let reply = udp4(("10.0.0.53", 53), ("10.0.0.5", 53000));
    assert_forward!(fx, fx.out(&req));
    // 50 s gaps (UDP timeout 60 s), 200 s in all: each packet keeps it.
    for i in 0..4 {
        fx.clock.advance_secs(50);
        let v = if i % 2 == 0 {
            fx.inb(&reply)
        } else {
            fx.out(&req)
        };
        assert_forward!(fx, v);
    }
    assert_eq!(fx.port.stats().flows_created, 1);
    assert_eq!(fx.port.stats().flows_expired, 0);
    assert_eq!(fx.port.stats().dir(Direction::In).uft_hits, 2);
}

/// Outbound, a packet of a timed-out flow is a new flow's first packet:
/// the old flow is counted expired and a new one is made by the rules.
#[test]
fn an_outbound_packet_of_a_timed_out_flow_opens_a_new_flow() {
    let mut fx = stateful_fw(64);
    let req = udp4(("10.0.0.5", 53000), ("10.0.0.53", 53));
    assert_forward!(fx, fx.out(&req));
    fx.clock.advance_secs(61);
    let before = fx.port.stats().clone();
    assert_forward!(fx, fx.out(&req));
    let after = fx.port.stats();
    assert_eq!(after.flows_expired - before.flows_expired, 1);
    assert_eq!(after.flows_created - before.flows_created, 1);
    let d = Delta {
        before: &before,
        after,
    };
    assert_eq!(d.hits(Direction::Out), 0, "the stale entry was not used");
    assert_eq!(d.misses(Direction::Out), 1);
    assert_eq!(fx.port.flow_count(), 1);
    // An established TCP flow idle past an hour: its next segment from the
    // guest makes a new flow, picked up mid-stream.
    handshake(&mut fx, 2000);
    fx.clock.advance_secs(3601);
    assert_forward!(fx, fx.out(&out_seg(2000, "A")));
    assert_eq!(
        fx.port.tcp_state(Direction::Out, &key(&out_seg(2000, "A"))),
        Some(TcpState::Unverified)
    );
}

/// Every TCP class, inbound: with two flows in the same state, one seen at
/// `ttl - 1` s (delivered) and one at `ttl + 1` s (refused, removed).
#[test]
fn every_tcp_class_times_out_at_lookup() {
    // (state, the segments after the handshake that reach it, its idle
    // timeout in s); an inbound ACK leaves each of these states as it is.
    type Setup = fn(&mut Fixture, u16);
    let est: Setup = |_, _| {};
    let closing: Setup = |fx, p| assert_forward!(fx, fx.out(&out_seg(p, "FA")));
    let time_wait: Setup = |fx, p| {
        assert_forward!(fx, fx.out(&out_seg(p, "FA")));
        assert_forward!(fx, fx.inb(&in_seg(p, "FA")));
        assert_forward!(fx, fx.out(&out_seg(p, "A")));
    };
    let closed: Setup = |fx, p| assert_forward!(fx, fx.inb(&in_seg(p, "R")));
    let cases: [(&str, Setup, u64); 4] = [
        ("ESTABLISHED", est, 3600),
        ("FIN_WAIT", closing, 120),
        ("TIME_WAIT", time_wait, 30),
        ("CLOSED", closed, 10),
    ];
    for (name, setup, ttl) in cases {
        let mut fx = stateful_fw(64);
        for p in [1, 2] {
            handshake(&mut fx, p);
            setup(&mut fx, p);
            let st = fx.port.tcp_state(Direction::Out, &key(&out_seg(p, "A")));
            assert_eq!(st.map(TcpState::name), Some(name));
        }
        fx.clock.advance_secs(ttl - 1);
        let v = fx.inb(&in_seg(1, "A"));
        assert_forward!(fx, v);
        fx.clock.advance_secs(2);
        let v = fx.inb(&in_seg(2, "A"));
        assert_drop!(fx, v, DropReason::DefaultDenied);
        assert_eq!(fx.port.stats().flows_expired, 1, "{name}");
        assert_eq!(fx.port.flow_count(), 1, "{name}: only the idle one went");
        assert_eq!(
            fx.port
                .tcp_state(Direction::Out, &key(&out_seg(1, "A")))
                .map(TcpState::name),
            Some(name)
        );
    }
}

#[test]
fn an_echo_reply_after_the_icmp_timeout_is_not_delivered() {
    let mut fx = stateful_fw(64);
    assert_forward!(fx, fx.out(&ping4("10.0.0.5", "10.0.0.9", 7)));
    assert_forward!(fx, fx.out(&ping4("10.0.0.5", "10.0.0.9", 8)));
    fx.clock.advance_secs(29);
    assert_forward!(fx, fx.inb(&pong4("10.0.0.9", "10.0.0.5", 7)));
    fx.clock.advance_secs(2);
    let v = fx.inb(&pong4("10.0.0.9", "10.0.0.5", 8));
    assert_drop!(fx, v, DropReason::DefaultDenied);
    assert_eq!(fx.port.stats().flows_expired, 1);
    assert_eq!(fx.port.flow_count(), 1);
}

/// An ICMP error (RFC 792) quoting a packet of a timed-out flow relates to
/// nothing: it is an ordinary inbound packet, which this firewall denies.
#[test]
fn an_icmp_error_about_a_timed_out_flow_is_not_related() {
    let mut fx = stateful_fw(64);
    let req = udp4(("10.0.0.5", 53000), ("10.0.0.53", 53));
    let (_, sent) = fx.send(Direction::Out, &req);
    let mut err = Vec::new();
    etherparse::PacketBuilder::ethernet2(PEER_MAC, GW_MAC)
        .ipv4(v4("10.0.0.53"), v4("10.0.0.5"), 64)
        .icmpv4(etherparse::Icmpv4Type::DestinationUnreachable(
            etherparse::icmpv4::DestUnreachableHeader::Port,
        ))
        .write(&mut err, &sent[14..])
        .unwrap();
    // Within the timeout it is the flow's (the check this test relies on).
    fx.clock.advance_secs(59);
    assert_forward!(fx, fx.inb(&err));
    assert_eq!(fx.port.stats().related, 1);
    // Errors do not keep a flow alive: 61 s after its last packet it is gone.
    fx.clock.advance_secs(2);
    let v = fx.inb(&err);
    assert_drop!(fx, v, DropReason::DefaultDenied);
    assert_eq!(fx.port.stats().related, 1);
    assert_eq!(fx.port.stats().flows_expired, 1);
    assert_no_flow_state(&fx);
}

/// A NAT mapping goes with its flow at lookup: the reply to a timed-out
/// flow is not translated, and the external port is free for a new flow
/// at once (the pool has one port).
#[test]
fn a_timed_out_nat_mapping_is_not_used_and_its_port_is_freed() {
    let mut fx = port_with(64, &[("nat", DefaultAction::Deny, DefaultAction::Allow)]);
    let snat = Snat::new("203.0.113.10", 1024, 1024);
    fx.port
        .add_rule("nat", Direction::Out, Rule::new(1, stateful(snat.clone())))
        .unwrap();
    let a = udp4(("10.0.0.5", 1), ("198.51.100.1", 53));
    let b = udp4(("10.0.0.5", 2), ("198.51.100.1", 53));
    assert_forward!(fx, fx.out(&a));
    assert_drop!(fx, fx.out(&b), DropReason::Exhausted);
    fx.clock.advance_secs(61);
    let v = fx.inb(&udp4(("198.51.100.1", 53), ("203.0.113.10", 1024)));
    assert_drop!(fx, v, DropReason::DefaultDenied);
    assert_eq!(snat.free.lock().unwrap().as_slice(), &[1024]);
    assert_no_flow_state(&fx);
    let (v, out) = fx.send(Direction::Out, &b);
    assert_forward!(fx, v);
    assert_eq!(parse(&out).src_port, 1024);
    assert_eq!(snat.generated.load(Ordering::Relaxed), 2);
}

/// The flow table's slot of a flow found timed out is free for a new flow
/// straight away, without eviction.
#[test]
fn a_timed_out_flow_frees_its_slot_at_lookup() {
    let mut fx = stateful_fw(1);
    assert_forward!(fx, fx.out(&udp4(("10.0.0.5", 1), ("10.0.0.9", 53))));
    fx.clock.advance_secs(61);
    let v = fx.inb(&udp4(("10.0.0.9", 53), ("10.0.0.5", 1)));
    assert_drop!(fx, v, DropReason::DefaultDenied);
    assert_eq!(fx.port.flow_count(), 0);
    let before = fx.port.stats().clone();
    assert_forward!(fx, fx.out(&udp4(("10.0.0.5", 2), ("10.0.0.9", 53))));
    assert_eq!(fx.port.stats().flows_evicted, before.flows_evicted);
    assert_eq!(fx.port.stats().flows_expired, before.flows_expired);
}
