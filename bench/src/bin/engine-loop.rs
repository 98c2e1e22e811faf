//! Runs N packets through a port and prints per-packet figures, for
//! stable instruction counts under `valgrind --tool=callgrind` (run two
//! packet counts and take the difference to cancel start-up).
//!
//! ```text
//! cargo run --release -p bench --bin engine-loop -- --case uft-out-tcp4 --packets 1000000
//! ```
//!
//! Output is `name: value` lines: `case`, `packets`, `forwarded`,
//! `ns_per_packet`, `allocs_per_packet`, and for new-flow cases
//! `flows_per_sec` and `bytes_per_flow`. Packets go in batches of 32
//! through `Port::process_batch`, as a worker sends them. With no arguments every case
//! runs with 1 000 000 packets (the README's quick start).
//!
//! `--flow-logs` turns the port's flow logs on (the defaults of
//! `[flow_logs]`, a queue nothing drains: records past its 4096 are
//! counted as `queue_full`, as under a stalled exporter), to measure what
//! logging costs the packet path; `flow_log_records` is printed.

use bench::alloc::{allocations, live_bytes, Counting};
use bench::cases::{batch_bufs, Case, Scale, BATCH, CASES, SCALING_CASES};
use bench::round::{Round, ROUND_CASES};
use std::process::ExitCode;
use std::time::Instant;

#[global_allocator]
static ALLOC: Counting = Counting;

fn usage() -> ExitCode {
    eprintln!(
        "usage: engine-loop [--case CASE|all] [--packets N] [--flows N] [--rules N] [--flow-logs]\ncases: {}\nscaling cases: {} (--flows for the first, --rules for the second)\nworker-round cases (a real Switch::poll over in-memory devices): {}",
        CASES.join(", "),
        SCALING_CASES.join(", "),
        ROUND_CASES.join(", ")
    );
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let mut case = "all".to_string();
    let mut packets: u64 = 1_000_000;
    let mut scale = Scale::default();
    let mut flow_logs = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--case" => match args.next() {
                Some(c) => case = c,
                None => return usage(),
            },
            "--packets" => match args.next().and_then(|n| n.parse().ok()) {
                Some(n) if n > 0 => packets = n,
                _ => {
                    eprintln!("--packets needs a positive whole number");
                    return usage();
                }
            },
            "--flows" => match args.next().and_then(|n| n.parse().ok()) {
                Some(n) if (1..=4 << 20).contains(&n) => scale.flows = n,
                _ => {
                    eprintln!("--flows needs a whole number in 1..=4194304");
                    return usage();
                }
            },
            "--rules" => match args.next().and_then(|n| n.parse().ok()) {
                Some(n) if n <= 60_000 => scale.rules = n,
                _ => {
                    eprintln!("--rules needs a whole number in 0..=60000");
                    return usage();
                }
            },
            "--flow-logs" => flow_logs = true,
            "-h" | "--help" => {
                usage();
                return ExitCode::SUCCESS;
            }
            other => {
                eprintln!("unknown argument '{other}'");
                return usage();
            }
        }
    }
    let names: Vec<&str> = if case == "all" {
        CASES.to_vec()
    } else {
        vec![case.as_str()]
    };
    for (i, name) in names.iter().enumerate() {
        if i > 0 {
            println!();
        }
        if !run(name, packets, scale, flow_logs) {
            eprintln!("unknown case '{name}'");
            return usage();
        }
    }
    ExitCode::SUCCESS
}

fn run(name: &str, packets: u64, scale: Scale, flow_logs: bool) -> bool {
    if ROUND_CASES.contains(&name) {
        return run_round(name, packets);
    }
    let live_before = live_bytes();
    let Some(mut c) = Case::with(name, packets, scale) else {
        return false;
    };
    if flow_logs {
        let cfg = dataplane::FlowLogConfig::default();
        let log = dataplane::FlowLog::new(cfg.queue_records);
        c.port.set_flow_log(Some((cfg, log)));
    }
    let new_flows = name.starts_with("new-flow");
    if c.cycle > 0 {
        println!("active_flows: {}", c.port.flow_count());
    }
    if name.ends_with("-rules") {
        println!("rules: {}", scale.rules);
    }
    // Memory the templates take is not the engine's: count it out.
    let templates: usize = c.frames.iter().map(|f| f.capacity()).sum::<usize>()
        + c.frames.capacity() * std::mem::size_of::<Vec<u8>>();
    let live_setup = live_bytes();
    let mut bufs = batch_bufs();
    let mut verdicts = Vec::with_capacity(BATCH);
    // One warm-up batch outside the count for hit cases (caches, lazily
    // grown tables); new-flow cases must not pre-create a flow.
    if !new_flows {
        c.run_batch(&mut bufs, &mut verdicts, 0);
    }
    let a0 = allocations();
    let t0 = Instant::now();
    let mut fwd = 0u64;
    let mut sent = 0u64;
    while sent < packets {
        let n = (packets - sent).min(BATCH as u64) as usize;
        fwd += c.run_batch(&mut bufs[..n], &mut verdicts, sent as usize) as u64;
        sent += n as u64;
    }
    let dt = t0.elapsed();
    let allocs = allocations() - a0;
    println!("case: {name}");
    println!("packets: {packets}");
    println!("forwarded: {fwd}");
    println!(
        "ns_per_packet: {:.1}",
        dt.as_nanos() as f64 / packets as f64
    );
    println!("allocs_per_packet: {:.3}", allocs as f64 / packets as f64);
    if flow_logs {
        let s = c.port.flow_log_stats();
        println!("flow_log_records: {}", s.records + s.queue_full);
    }
    if new_flows {
        let flows = c.port.flow_count() as f64;
        println!("flows: {flows}");
        println!("flows_per_sec: {:.0}", flows / dt.as_secs_f64());
        let grown = live_bytes().saturating_sub(live_setup) as f64;
        println!("bytes_per_flow: {:.0}", grown / flows.max(1.0));
    }
    let _ = (live_before, templates);
    true
}

/// A worker-round case: whole `Switch::poll` rounds over in-memory
/// devices (see `bench::round`), a burst per round.
fn run_round(name: &str, packets: u64) -> bool {
    let Some(mut r) = Round::with(name) else {
        return false;
    };
    // One warm-up burst outside the count (pools, lazily grown tables).
    r.run(BATCH as u64);
    let a0 = allocations();
    let t0 = Instant::now();
    let fwd = r.run(packets);
    let dt = t0.elapsed();
    let allocs = allocations() - a0;
    println!("case: {name}");
    println!("packets: {packets}");
    println!("forwarded: {fwd}");
    println!(
        "ns_per_packet: {:.1}",
        dt.as_nanos() as f64 / packets as f64
    );
    println!("allocs_per_packet: {:.3}", allocs as f64 / packets as f64);
    true
}
