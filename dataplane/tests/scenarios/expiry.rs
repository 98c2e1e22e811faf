//! Expiry by TCP state with a hand-driven clock, and the eviction order
//! when the flow table is full.

use crate::common::*;
use crate::{assert_drop, assert_forward};
use dataplane::tcp::TcpState;
use dataplane::{Direction, DropReason, PacketBuf};

/// Opens a TCP connection from the guest (RFC 9293 §3.5 handshake).
fn handshake(fx: &mut Fixture, sport: u16) -> Vec<u8> {
    let syn = tcp4(("10.0.0.5", sport), ("10.0.0.9", 80), "S");
    let v = fx.out(&syn);
    assert_forward!(fx, v);
    let v = fx.inb(&reply_tcp4(&syn, "SA"));
    assert_forward!(fx, v);
    let v = fx.out(&tcp4(("10.0.0.5", sport), ("10.0.0.9", 80), "A"));
    assert_forward!(fx, v);
    syn
}

#[test]
fn half_open_expires_fast_established_slowly() {
    let mut fx = stateful_fw(64);
    let half = tcp4(("10.0.0.5", 1000), ("10.0.0.9", 80), "S");
    let v = fx.out(&half);
    assert_forward!(fx, v);
    let est = handshake(&mut fx, 2000);
    assert_eq!(
        fx.port.tcp_state(Direction::Out, &key(&est)),
        Some(TcpState::Established)
    );
    assert_eq!(
        fx.port.tcp_state(Direction::Out, &key(&half)),
        Some(TcpState::SynSent)
    );

    fx.clock.advance_secs(6);
    assert_eq!(fx.port.expire(), 1);
    assert_eq!(
        fx.port.tcp_state(Direction::Out, &key(&half)),
        None,
        "half-open gone after 5 s"
    );
    assert_eq!(
        fx.port.tcp_state(Direction::Out, &key(&est)),
        Some(TcpState::Established)
    );
    // The reply to the expired SYN now finds nothing and is refused.
    let v = fx.inb(&reply_tcp4(&half, "SA"));
    assert_drop!(fx, v, DropReason::DefaultDenied);

    fx.clock.advance_secs(3590);
    assert_eq!(fx.port.expire(), 0);
    fx.clock.advance_secs(20);
    assert_eq!(fx.port.expire(), 1, "established gone after an idle hour");
    assert_eq!(fx.port.flow_count(), 0);
    assert_eq!(fx.port.stats().flows_expired, 2);
    // Expiry removed the LFT state too.
    assert!(fx.port.dump_layers()[0].lft_in.is_empty());
    assert!(fx.port.dump_layers()[0].lft_out.is_empty());
}

#[test]
fn traffic_keeps_a_flow_alive() {
    let mut fx = stateful_fw(64);
    let syn = handshake(&mut fx, 2000);
    for _ in 0..5 {
        fx.clock.advance_secs(3000);
        let v = fx.out(&tcp4(("10.0.0.5", 2000), ("10.0.0.9", 80), "A"));
        assert_forward!(fx, v);
        assert_eq!(fx.port.expire(), 0);
    }
    assert!(fx.port.tcp_state(Direction::Out, &key(&syn)).is_some());
}

#[test]
fn closing_time_wait_and_rst_sit_in_between() {
    let mut fx = stateful_fw(64);
    // Normal close (RFC 9293 §3.6): FIN, ACK, FIN, ACK -> TIME_WAIT.
    let a = handshake(&mut fx, 3000);
    let out = |f: &str| tcp4(("10.0.0.5", 3000), ("10.0.0.9", 80), f);
    let inn = |f: &str| tcp4(("10.0.0.9", 80), ("10.0.0.5", 3000), f);
    assert_forward!(fx, fx.out(&out("FA")));
    assert!(matches!(
        fx.port.tcp_state(Direction::Out, &key(&a)),
        Some(TcpState::FinWait { .. })
    ));
    assert_forward!(fx, fx.inb(&inn("A")));
    assert_forward!(fx, fx.inb(&inn("FA")));
    assert!(matches!(
        fx.port.tcp_state(Direction::Out, &key(&a)),
        Some(TcpState::LastAck { .. })
    ));
    assert_forward!(fx, fx.out(&out("A")));
    assert_eq!(
        fx.port.tcp_state(Direction::Out, &key(&a)),
        Some(TcpState::TimeWait)
    );

    // A reset connection.
    let b = handshake(&mut fx, 3001);
    assert_forward!(fx, fx.inb(&tcp4(("10.0.0.9", 80), ("10.0.0.5", 3001), "R")));
    assert_eq!(
        fx.port.tcp_state(Direction::Out, &key(&b)),
        Some(TcpState::Closed)
    );

    // And one that stays open.
    let c = handshake(&mut fx, 3002);

    fx.clock.advance_secs(11);
    assert_eq!(fx.port.expire(), 1, "closed by RST: 10 s");
    assert_eq!(fx.port.tcp_state(Direction::Out, &key(&b)), None);
    fx.clock.advance_secs(20);
    assert_eq!(fx.port.expire(), 1, "TIME_WAIT: 30 s");
    assert_eq!(fx.port.tcp_state(Direction::Out, &key(&a)), None);
    assert_eq!(
        fx.port.tcp_state(Direction::Out, &key(&c)),
        Some(TcpState::Established)
    );
}

#[test]
fn udp_and_icmp_idle_expiry() {
    let mut fx = stateful_fw(64);
    assert_forward!(fx, fx.out(&udp4(("10.0.0.5", 53000), ("10.0.0.53", 53))));
    assert_forward!(fx, fx.out(&ping4("10.0.0.5", "10.0.0.9", 1)));
    fx.clock.advance_secs(31);
    assert_eq!(fx.port.expire(), 1, "ICMP after 30 s");
    fx.clock.advance_secs(30);
    assert_eq!(fx.port.expire(), 1, "UDP after 60 s");
}

#[test]
fn full_table_evicts_expired_then_half_open_never_established() {
    let mut fx = stateful_fw(3);
    handshake(&mut fx, 1); // established
    assert_forward!(fx, fx.out(&udp4(("10.0.0.5", 2), ("10.0.0.9", 53)))); // UDP
    let half = tcp4(("10.0.0.5", 3), ("10.0.0.9", 80), "S"); // half-open
    assert_forward!(fx, fx.out(&half));
    assert_eq!(fx.port.flow_count(), 3);

    // Full, nothing expired: the half-open flow makes room.
    let before = fx.port.stats().clone();
    assert_forward!(fx, fx.out(&udp4(("10.0.0.5", 4), ("10.0.0.9", 53))));
    assert_eq!(fx.port.stats().flows_evicted - before.flows_evicted, 1);
    assert_eq!(fx.port.tcp_state(Direction::Out, &key(&half)), None);

    // Full, nothing expired, nothing half-open: the new flow is refused.
    let v = fx.out(&udp4(("10.0.0.5", 5), ("10.0.0.9", 53)));
    assert_drop!(fx, v, DropReason::FlowTableFull);
    assert_eq!(fx.port.stats().drops(DropReason::FlowTableFull), 1);

    // A new half-open flow plus an expired UDP flow: the expired one goes
    // first, the half-open one stays.
    fx.clock.advance_secs(59);
    assert_forward!(fx, fx.out(&tcp4(("10.0.0.5", 1), ("10.0.0.9", 80), "A"))); // keep established alive
    assert_forward!(fx, fx.out(&udp4(("10.0.0.5", 4), ("10.0.0.9", 53)))); // keep UDP 4 alive
    fx.clock.advance_secs(2); // UDP 2 is now idle 61 s
                              // Evict the expired UDP 2 for a new half-open flow.
    let half2 = tcp4(("10.0.0.5", 6), ("10.0.0.9", 80), "S");
    assert_forward!(fx, fx.out(&half2));
    assert_eq!(fx.port.stats().flows_expired, 1);
    let evicted = fx.port.stats().flows_evicted;
    // The next new flow evicts the half-open one, not the established.
    assert_forward!(fx, fx.out(&udp4(("10.0.0.5", 7), ("10.0.0.9", 53))));
    assert_eq!(fx.port.stats().flows_evicted, evicted + 1);
    assert_eq!(fx.port.tcp_state(Direction::Out, &key(&half2)), None);
    let est = tcp4(("10.0.0.5", 1), ("10.0.0.9", 80), "A");
    assert_eq!(
        fx.port.tcp_state(Direction::Out, &key(&est)),
        Some(TcpState::Established)
    );
}

/// `process_burst` stamps flows with the moment its caller read (a
/// switch reads each port's clock once per round), not the port's clock.
#[test]
fn a_burst_is_processed_at_the_moment_given() {
    let mut fx = stateful_fw(64);
    let t0 = fx.port.now();
    let later = t0 + 6 * dataplane::clock::NANOS_PER_SEC;
    let syns: Vec<Vec<u8>> = (0..4u16)
        .map(|i| tcp4(("10.0.0.5", 1000 + i), ("10.0.0.9", 80), "S"))
        .collect();
    let mut burst: Vec<PacketBuf> = syns.iter().map(|f| PacketBuf::from_frame(f)).collect();
    let mut verdicts = Vec::with_capacity(burst.len());
    fx.port
        .process_burst(Direction::Out, &mut burst, later, &mut verdicts);
    assert_eq!(verdicts.len(), 4, "one verdict per frame");
    assert!(
        verdicts
            .iter()
            .all(|v| matches!(v, dataplane::Verdict::Forward)),
        "{verdicts:?}"
    );
    assert_eq!(fx.port.flow_count(), 4);
    // Half-open flows live 5 s: seen at `later`, alive 1 s after it
    // (stamped with the port's clock, t0, they would be 7 s old).
    assert_eq!(
        fx.port
            .expire_step(later + dataplane::clock::NANOS_PER_SEC, 1024),
        0
    );
    assert_eq!(fx.port.flow_count(), 4);
    // And gone once 5 s have passed since that moment.
    assert_eq!(
        fx.port
            .expire_step(later + 6 * dataplane::clock::NANOS_PER_SEC, 1024),
        4
    );
}

/// A SYN flood into a full table, sustained (thousands of new flows per
/// established flow, each burst of SYNs followed by the established
/// flows' traffic and replies): every SYN past the free room evicts the
/// oldest half-open flow, never an established one; the established
/// flows pass every packet throughout; nothing is refused while there is
/// a half-open flow to evict, and every new flow is counted. Then, with
/// the table all established, the flood is refused and counted, and the
/// established flows still pass.
#[test]
fn a_syn_flood_at_a_full_table_never_evicts_established_flows() {
    const LIMIT: u32 = 256;
    const ESTABLISHED: u16 = 64;
    const SYNS: u32 = 8_000;
    let mut fx = stateful_fw(LIMIT);
    let est: Vec<Vec<u8>> = (0..ESTABLISHED)
        .map(|i| handshake(&mut fx, 40_000 + i))
        .collect();
    let syn = |i: u32| {
        let dst = format!("10.1.{}.{}", i / 250, i % 250 + 1);
        tcp4(
            ("10.0.0.5", 1024 + (i % 50_000) as u16),
            (dst.as_str(), 80),
            "S",
        )
    };
    let before = fx.port.stats().clone();
    for i in 0..SYNS {
        assert_forward!(fx, fx.out(&syn(i)));
        if i % 32 == 31 {
            // 32 SYNs in 10 µs: 3.2 M/s, far from any timeout.
            fx.clock.advance_nanos(10_000);
            for f in &est {
                let data = tcp4(("10.0.0.5", key(f).src_port), ("10.0.0.9", 80), "A");
                assert_forward!(fx, fx.out(&data));
                assert_forward!(fx, fx.inb(&reply_tcp4(&data, "A")));
            }
        }
    }
    let s = fx.port.stats();
    let room = LIMIT - u32::from(ESTABLISHED);
    assert_eq!(fx.port.flow_count(), LIMIT);
    assert_eq!(s.flows_created - before.flows_created, u64::from(SYNS));
    assert_eq!(
        s.flows_evicted - before.flows_evicted,
        u64::from(SYNS - room)
    );
    assert_eq!(s.drops(DropReason::FlowTableFull), 0);
    // The oldest half-open flows went; the newest `room` are there.
    assert_eq!(
        fx.port
            .tcp_state(Direction::Out, &key(&syn(SYNS - room - 1))),
        None
    );
    for i in SYNS - room..SYNS {
        assert_eq!(
            fx.port.tcp_state(Direction::Out, &key(&syn(i))),
            Some(TcpState::SynSent),
            "SYN {i}"
        );
    }
    for f in &est {
        assert_eq!(
            fx.port.tcp_state(Direction::Out, &key(f)),
            Some(TcpState::Established)
        );
    }

    // The half-open flows time out; the table fills with established
    // flows, and the flood is refused, each SYN counted.
    fx.clock.advance_secs(6);
    // Keep the established flows inside their idle timeout.
    for f in &est {
        let data = tcp4(("10.0.0.5", key(f).src_port), ("10.0.0.9", 80), "A");
        assert_forward!(fx, fx.out(&data));
    }
    let more: Vec<Vec<u8>> = (0..LIMIT as u16 - ESTABLISHED)
        .map(|i| handshake(&mut fx, 10_000 + i))
        .collect();
    assert_eq!(fx.port.flow_count(), LIMIT);
    assert_eq!(
        fx.port.stats().flows_expired - before.flows_expired,
        u64::from(room),
        "every half-open flow expired to make room"
    );
    for i in 0..1_000 {
        let v = fx.out(&syn(SYNS + i));
        assert_drop!(fx, v, DropReason::FlowTableFull);
    }
    assert_eq!(fx.port.stats().drops(DropReason::FlowTableFull), 1_000);
    for f in est.iter().chain(&more) {
        let data = tcp4(("10.0.0.5", key(f).src_port), ("10.0.0.9", 80), "A");
        assert_forward!(fx, fx.out(&data));
    }
}
