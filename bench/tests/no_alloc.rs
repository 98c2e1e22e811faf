//! The fast path allocates nothing: every UFT-hit case, run through the
//! batch API under a counting allocator, makes zero allocations. A count,
//! not a timing, so it is stable on a shared machine.

use bench::alloc::{thread_allocations as allocations, Counting};
use bench::cases::{batch_bufs, Case, BATCH};
use bench::round::{Round, ROUND_CASES};

#[global_allocator]
static ALLOC: Counting = Counting;

// One test function, counting the calling thread's allocations only: the
// harness's threads allocate too (e.g. to report a test that runs long).
#[test]
fn allocation_counts() {
    uft_hits_allocate_nothing();
    flow_logs_allocate_nothing();
    new_flows_allocate_but_stay_bounded();
    switch_rounds_allocate_nothing();
}

/// Whole `Switch::poll` rounds of UFT hits, guest to uplink and uplink to
/// guest (the outer checks, the demultiplexing, the per-port bursts),
/// over devices that recycle their buffers: nothing allocated; and the
/// same with floods of frames the switch or the port refuses (the
/// switch gives their buffers back for the next receive).
fn switch_rounds_allocate_nothing() {
    for name in ROUND_CASES {
        let mut r = Round::with(name).unwrap();
        // Warm up outside the count.
        r.run(BATCH as u64);
        let before = allocations();
        let dropped_before = dropped(&r);
        let fwd = r.run(100 * BATCH as u64);
        let allocs = allocations() - before;
        let dropped = dropped(&r) - dropped_before;
        assert_eq!(allocs, 0, "{name}: {allocs} allocations in switch rounds");
        if name.starts_with("round-flood") {
            // Frames in turn: one of the flow's, the rest refused (four
            // from the guest, five from the wire), each counted.
            let turn: u64 = if name.ends_with("out") { 5 } else { 6 };
            let n = 100 * BATCH as u64;
            let (want_fwd, want_dropped) = (n.div_ceil(turn), n - n.div_ceil(turn));
            assert!(
                fwd.abs_diff(want_fwd) <= 1 && dropped.abs_diff(want_dropped) <= 1,
                "{name}: {fwd} frames out (want {want_fwd}), {dropped} dropped (want {want_dropped})"
            );
        } else {
            assert_eq!(fwd, 100 * BATCH as u64, "{name}: every packet forwarded");
        }
    }
}

/// Frames the switch or vm1's port dropped, for any reason.
fn dropped(r: &Round) -> u64 {
    let port = r.switch.port("vm1").expect("vm1 is attached").port.stats();
    r.switch.stats().drops.total() + port.dir.iter().map(|d| d.dropped).sum::<u64>()
}

fn uft_hits_allocate_nothing() {
    for name in [
        "parse-tcp4",
        "uft-out-tcp4",
        "uft-in-tcp4",
        "uft-out-tcp6",
        "uft-in-tcp6",
        "vpc-out-tcp4",
        "vpc-in-tcp4",
        "vpc-snat-out-tcp4",
    ] {
        let mut c = Case::new(name, 1).unwrap();
        let mut bufs = batch_bufs();
        let mut verdicts = Vec::with_capacity(BATCH);
        // Warm up outside the count.
        c.run_batch(&mut bufs, &mut verdicts, 0);
        let before = allocations();
        let mut fwd = 0;
        for i in 0..100 {
            fwd += c.run_batch(&mut bufs, &mut verdicts, i * BATCH);
        }
        let allocs = allocations() - before;
        assert_eq!(fwd, 100 * BATCH, "{name}: every packet forwarded");
        assert_eq!(allocs, 0, "{name}: {allocs} allocations on the fast path");
    }
}

/// With flow logs on, the hit path and the records the sweep and the
/// denials push (into a queue allocated when logging was enabled)
/// allocate nothing either.
fn flow_logs_allocate_nothing() {
    use dataplane::{FlowLog, FlowLogConfig};
    for name in [
        "uft-out-tcp4",
        "vpc-out-tcp4",
        "vpc-snat-out-tcp4",
        "vpc-in-tcp4",
    ] {
        let mut c = Case::new(name, 1).unwrap();
        // An active timeout of 0: every sweep makes an `Active` record of
        // every live flow; a queue of 16 fills and then counts.
        let cfg = FlowLogConfig {
            queue_records: 16,
            active_timeout: 0,
            ..FlowLogConfig::default()
        };
        let log = FlowLog::new(cfg.queue_records);
        c.port.set_flow_log(Some((cfg, log.clone())));
        let mut bufs = batch_bufs();
        let mut verdicts = Vec::with_capacity(BATCH);
        c.run_batch(&mut bufs, &mut verdicts, 0);
        let before = allocations();
        let mut fwd = 0;
        for i in 0..100 {
            fwd += c.run_batch(&mut bufs, &mut verdicts, i * BATCH);
            let now = c.port.now();
            c.port.expire_step(now, 64);
            if i % 50 == 49 {
                while log.pop().is_some() {}
            }
        }
        let allocs = allocations() - before;
        let st = c.port.flow_log_stats();
        assert_eq!(fwd, 100 * BATCH, "{name}: every packet forwarded");
        assert!(
            st.records > 0 && st.records + st.queue_full >= 100,
            "{name}: a record per sweep: {st:?}"
        );
        assert!(st.queue_full > 0, "{name}: a full queue was met: {st:?}");
        assert_eq!(allocs, 0, "{name}: {allocs} allocations with flow logs on");
    }
}

fn new_flows_allocate_but_stay_bounded() {
    // A new flow may allocate (slow path), but a bounded, small number of
    // times: this catches accidental per-layer formatting or cloning.
    let mut c = Case::new("new-flow-out-udp4", 10 * BATCH as u64).unwrap();
    let mut bufs = batch_bufs();
    let mut verdicts = Vec::with_capacity(BATCH);
    let before = allocations();
    let mut fwd = 0;
    for i in 0..10 {
        fwd += c.run_batch(&mut bufs, &mut verdicts, i * BATCH);
    }
    let per_flow = (allocations() - before) as f64 / (10 * BATCH) as f64;
    assert_eq!(fwd, 10 * BATCH);
    assert!(per_flow <= 4.0, "{per_flow} allocations per new flow");
}
