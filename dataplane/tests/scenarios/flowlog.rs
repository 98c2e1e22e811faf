//! Flow logs: a record per flow that ends (FIN, RST, idle, evicted,
//! cleared, revoked), periodic `Active` records for long flows, and
//! rate-limited records of denied first packets.

use crate::assert_forward;
use crate::common::*;
use dataplane::clock::NANOS_PER_SEC;
use dataplane::tcp::TcpState;
use dataplane::{
    Action, CloseReason, Decision, DefaultAction, Direction, FlowLog, FlowLogConfig, FlowRecord,
    Rule, RuleId,
};
use std::sync::Arc;

const IN: usize = 0;
const OUT: usize = 1;

fn enable(fx: &mut Fixture, cfg: FlowLogConfig) -> Arc<FlowLog> {
    let log = FlowLog::new(cfg.queue_records);
    fx.port.set_flow_log(Some((cfg, log.clone())));
    log
}

fn drain(log: &FlowLog) -> Vec<FlowRecord> {
    std::iter::from_fn(|| log.pop()).collect()
}

/// A firewall that allows outbound flows statefully by rule `fw` 1 and
/// denies the rest; logging on with the defaults.
fn logged_fw(limit: u32) -> (Fixture, RuleId, Arc<FlowLog>) {
    let mut fx = port_with(limit, &[("fw", DefaultAction::Deny, DefaultAction::Deny)]);
    let id = fx
        .port
        .add_rule("fw", Direction::Out, Rule::new(1, Action::StatefulAllow))
        .unwrap();
    let log = enable(&mut fx, FlowLogConfig::default());
    (fx, id, log)
}

fn out_tcp(fx: &mut Fixture, flags: &str) -> usize {
    let f = tcp4(("10.0.0.5", 40000), ("10.0.0.9", 80), flags);
    assert_forward!(fx, fx.out(&f));
    f.len()
}

fn in_tcp(fx: &mut Fixture, flags: &str) -> usize {
    let f = tcp4(("10.0.0.9", 80), ("10.0.0.5", 40000), flags);
    assert_forward!(fx, fx.inb(&f));
    f.len()
}

/// RFC 9293 §3.6: a close by FIN from both ends. The flow is removed
/// only after TIME-WAIT (30 s); its record says FIN and counts both
/// directions' packets and bytes.
#[test]
fn fin_closed_flow_is_logged_after_time_wait() {
    let (mut fx, rule, log) = logged_fw(64);
    let t0 = fx.port.now();
    let mut bytes = [0u64; 2];
    bytes[OUT] += out_tcp(&mut fx, "S") as u64;
    bytes[IN] += in_tcp(&mut fx, "SA") as u64;
    bytes[OUT] += out_tcp(&mut fx, "A") as u64;
    fx.clock.advance_secs(1);
    bytes[OUT] += out_tcp(&mut fx, "FA") as u64;
    bytes[IN] += in_tcp(&mut fx, "A") as u64;
    bytes[IN] += in_tcp(&mut fx, "FA") as u64;
    bytes[OUT] += out_tcp(&mut fx, "A") as u64;
    let last = fx.port.now();
    let k = key(&tcp4(("10.0.0.5", 40000), ("10.0.0.9", 80), "S"));
    assert_eq!(
        fx.port.tcp_state(Direction::Out, &k),
        Some(TcpState::TimeWait)
    );
    assert_eq!(fx.port.expire(), 0);
    assert!(
        drain(&log).is_empty(),
        "nothing logged before the flow ends"
    );

    fx.clock.advance_secs(31);
    assert_eq!(fx.port.expire(), 1);
    let recs = drain(&log);
    assert_eq!(recs.len(), 1, "{recs:?}");
    let r = recs[0];
    assert_eq!(r.reason, CloseReason::Fin);
    assert_eq!(r.key, k);
    assert_eq!(r.origin, Direction::Out);
    assert_eq!(r.packets[OUT], 4);
    assert_eq!(r.packets[IN], 3);
    assert_eq!(r.bytes, bytes);
    assert_eq!(r.forward(), (4, bytes[OUT]));
    assert_eq!(r.reverse(), (3, bytes[IN]));
    assert_eq!((r.start, r.end), (t0, last));
    assert_eq!(r.decision, Decision::Allow);
    assert_eq!(r.decider.layer.as_str(), "fw");
    assert_eq!(r.decider.rule, Some(rule));
    assert_eq!(r.translated, None, "no NAT on this port");
    assert_eq!(r.tcp, Some(TcpState::TimeWait));
    assert_eq!(fx.port.flow_log_stats().records, 1);
}

#[test]
fn reset_flow_is_logged_as_rst() {
    let (mut fx, _, log) = logged_fw(64);
    out_tcp(&mut fx, "S");
    in_tcp(&mut fx, "R");
    fx.clock.advance_secs(11);
    assert_eq!(fx.port.expire(), 1);
    let recs = drain(&log);
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0].reason, CloseReason::Rst);
    assert_eq!(recs[0].tcp, Some(TcpState::Closed));
    assert_eq!((recs[0].packets[OUT], recs[0].packets[IN]), (1, 1));
}

#[test]
fn idle_udp_flow_is_logged_when_it_expires() {
    let (mut fx, _, log) = logged_fw(64);
    let q = udp4(("10.0.0.5", 5353), ("10.0.0.9", 53));
    let a = udp4(("10.0.0.9", 53), ("10.0.0.5", 5353));
    assert_forward!(fx, fx.out(&q));
    assert_forward!(fx, fx.out(&q));
    assert_forward!(fx, fx.inb(&a));
    fx.clock.advance_secs(61);
    assert_eq!(fx.port.expire(), 1);
    let recs = drain(&log);
    assert_eq!(recs.len(), 1);
    let r = recs[0];
    assert_eq!(r.reason, CloseReason::Idle);
    assert_eq!(r.key.proto, 17);
    assert_eq!(r.packets, [1, 2]);
    assert_eq!(r.bytes, [a.len() as u64, 2 * q.len() as u64]);
    assert_eq!(r.tcp, None);
}

/// A flow idle past its timeout that a packet finds (before the sweep
/// does) is logged as idle too.
#[test]
fn idle_flow_found_by_a_lookup_is_logged() {
    let (mut fx, _, log) = logged_fw(64);
    let q = udp4(("10.0.0.5", 5353), ("10.0.0.9", 53));
    assert_forward!(fx, fx.out(&q));
    fx.clock.advance_secs(61);
    assert_forward!(fx, fx.out(&q));
    let recs = drain(&log);
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0].reason, CloseReason::Idle);
    assert_eq!(recs[0].packets, [0, 1]);
}

#[test]
fn evicted_half_open_flow_is_logged() {
    let (mut fx, _, log) = logged_fw(1);
    out_tcp(&mut fx, "S");
    assert_forward!(fx, fx.out(&udp4(("10.0.0.5", 4), ("10.0.0.9", 53))));
    assert_eq!(fx.port.stats().flows_evicted, 1);
    let recs = drain(&log);
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0].reason, CloseReason::Evicted);
    assert_eq!(recs[0].tcp, Some(TcpState::SynSent));
    assert_eq!(recs[0].key.proto, 6);
}

/// A flood of denied first packets: at most `denied_per_sec` records per
/// second (the bucket starts full, burst the same), the rest counted.
#[test]
fn denied_flood_is_rate_limited() {
    let (mut fx, _, _) = logged_fw(64);
    let cfg = FlowLogConfig {
        denied_per_sec: 10,
        ..FlowLogConfig::default()
    };
    let log = enable(&mut fx, cfg);
    let flood = |fx: &mut Fixture, n: u16| {
        for i in 0..n {
            let f = udp4(("198.51.100.7", 1000 + i), ("10.0.0.5", 22));
            assert!(matches!(fx.inb(&f), dataplane::Verdict::Drop(_)));
        }
    };
    flood(&mut fx, 100);
    let recs = drain(&log);
    assert_eq!(recs.len(), 10, "the bucket's burst, no more");
    let st = fx.port.flow_log_stats();
    assert_eq!((st.records, st.rate_limited, st.queue_full), (10, 90, 0));
    let r = recs[0];
    assert_eq!(r.reason, CloseReason::Denied);
    assert_eq!(r.decision, Decision::Deny);
    assert_eq!(r.origin, Direction::In);
    assert_eq!(r.decider.layer.as_str(), "fw");
    assert_eq!(r.decider.rule, None, "the default action denied it");
    assert_eq!(r.packets, [1, 0]);
    assert_eq!(fx.port.flow_count(), 0);

    // Half a second refills half the bucket.
    fx.clock.advance_nanos(NANOS_PER_SEC / 2);
    flood(&mut fx, 100);
    assert_eq!(drain(&log).len(), 5);
    assert_eq!(fx.port.flow_log_stats().rate_limited, 90 + 95);
}

/// A long flow gets a record every `active_timeout` with its counts since
/// the last one; its final record counts what is left.
#[test]
fn long_flows_get_periodic_active_records() {
    let (mut fx, _, _) = logged_fw(64);
    let cfg = FlowLogConfig {
        active_timeout: 10 * NANOS_PER_SEC,
        ..FlowLogConfig::default()
    };
    let log = enable(&mut fx, cfg);
    let q = udp4(("10.0.0.5", 5353), ("10.0.0.9", 53));
    for _ in 0..3 {
        assert_forward!(fx, fx.out(&q));
    }
    fx.clock.advance_secs(5);
    fx.port.expire();
    assert!(drain(&log).is_empty(), "younger than the active timeout");
    fx.clock.advance_secs(6);
    fx.port.expire();
    let recs = drain(&log);
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0].reason, CloseReason::Active);
    assert_eq!(recs[0].packets, [0, 3]);
    assert_eq!(recs[0].end, fx.port.now());

    assert_forward!(fx, fx.out(&q));
    assert_forward!(fx, fx.inb(&udp4(("10.0.0.9", 53), ("10.0.0.5", 5353))));
    fx.clock.advance_secs(11);
    fx.port.expire();
    let recs = drain(&log);
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0].reason, CloseReason::Active);
    assert_eq!(recs[0].packets, [1, 1], "counts since the last record");

    fx.clock.advance_secs(61);
    fx.port.expire();
    let recs = drain(&log);
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0].reason, CloseReason::Idle);
    assert_eq!(recs[0].packets, [0, 0]);
}

/// An SNAT'd flow's record carries the translated source (RFC 8158's
/// postNAPTSourceTransportPort); a clear of the tables logs it `Cleared`.
#[test]
fn snat_translation_is_in_the_record() {
    let mut fx = port_with(64, &[("nat", DefaultAction::Deny, DefaultAction::Allow)]);
    let snat = Snat::new("203.0.113.10", 1024, 2047);
    let rule = fx
        .port
        .add_rule("nat", Direction::Out, Rule::new(1, stateful(snat)))
        .unwrap();
    let log = enable(&mut fx, FlowLogConfig::default());
    let syn = tcp4(("10.0.0.5", 40000), ("198.51.100.1", 443), "S");
    let (v, out) = fx.send(Direction::Out, &syn);
    assert_forward!(fx, v);
    assert_forward!(fx, fx.inb(&reply_tcp4(&out, "SA")));
    fx.port.clear_flows();
    let recs = drain(&log);
    assert_eq!(recs.len(), 1);
    let r = recs[0];
    assert_eq!(r.reason, CloseReason::Cleared);
    assert_eq!(r.key, key(&syn));
    assert_eq!(r.decider.layer.as_str(), "nat");
    assert_eq!(r.decider.rule, Some(rule));
    let t = r.translated.expect("the NAT translation");
    assert_eq!((t.src_ip(), t.src_port), (ip("203.0.113.10"), 1024));
    assert_eq!((t.dst_ip(), t.dst_port), (ip("198.51.100.1"), 443));
    assert_eq!(r.packets, [1, 1]);
}

/// Rules that no longer allow a flow end it: logged `Revoked`.
#[test]
fn flow_the_new_rules_refuse_is_logged_revoked() {
    let (mut fx, _, log) = logged_fw(64);
    out_tcp(&mut fx, "S");
    fx.port.set_rules("fw", vec![], vec![]).unwrap();
    let f = tcp4(("10.0.0.5", 40000), ("10.0.0.9", 80), "A");
    assert!(matches!(fx.out(&f), dataplane::Verdict::Drop(_)));
    let recs = drain(&log);
    assert_eq!(recs[0].reason, CloseReason::Revoked, "{recs:?}");
    assert_eq!(recs[0].packets, [0, 1]);
}

#[test]
fn a_full_queue_drops_and_counts() {
    let (mut fx, _, _) = logged_fw(64);
    let cfg = FlowLogConfig {
        queue_records: 2,
        ..FlowLogConfig::default()
    };
    let log = enable(&mut fx, cfg);
    for p in 0..3 {
        assert_forward!(fx, fx.out(&udp4(("10.0.0.5", 100 + p), ("10.0.0.9", 53))));
    }
    fx.port.clear_flows();
    let st = fx.port.flow_log_stats();
    assert_eq!((st.records, st.queue_full), (2, 1));
    assert_eq!(drain(&log).len(), 2);
}

#[test]
fn nothing_is_logged_when_off() {
    let (mut fx, _, log) = logged_fw(64);
    fx.port.set_flow_log(None);
    assert_forward!(fx, fx.out(&udp4(("10.0.0.5", 1), ("10.0.0.9", 53))));
    assert!(matches!(
        fx.inb(&udp4(("198.51.100.7", 1), ("10.0.0.5", 22))),
        dataplane::Verdict::Drop(_)
    ));
    fx.port.clear_flows();
    assert!(drain(&log).is_empty());
    assert_eq!(fx.port.flow_log_stats(), Default::default());
}
