//! Criterion benches for the engine: parse, UFT hit and UFT miss (a new
//! flow), both directions, IPv4 and IPv6. Each iteration restores the
//! template frames into reused buffers (small memcpys) and processes them.

use bench::cases::{batch_bufs, Case, BATCH};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::hint::black_box;

/// One iteration is one batch of 32 packets through `process_batch`.
fn bench_case(c: &mut Criterion, name: &str, packets: u64) {
    let mut case = Case::new(name, packets).expect("known case");
    let mut bufs = batch_bufs();
    let mut verdicts = Vec::with_capacity(BATCH);
    let mut g = c.benchmark_group("engine");
    g.throughput(Throughput::Elements(BATCH as u64));
    let mut i = 0usize;
    g.bench_function(name, |b| {
        b.iter(|| {
            i += BATCH;
            black_box(case.run_batch(&mut bufs, &mut verdicts, i));
        })
    });
    g.finish();
}

fn engine(c: &mut Criterion) {
    for name in [
        "parse-tcp4",
        "uft-out-tcp4",
        "uft-in-tcp4",
        "uft-out-tcp6",
        "uft-in-tcp6",
    ] {
        bench_case(c, name, 1);
    }
    // New flows: every timed packet must be a miss, so each measurement
    // gets a fresh port sized for exactly its iterations (set-up untimed).
    for name in ["new-flow-out-udp4", "new-flow-out-udp6"] {
        let mut g = c.benchmark_group("engine");
        g.throughput(Throughput::Elements(BATCH as u64));
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut case = Case::new(name, iters * BATCH as u64).expect("known case");
                let mut bufs = batch_bufs();
                let mut verdicts = Vec::with_capacity(BATCH);
                let t = std::time::Instant::now();
                for i in 0..iters as usize {
                    black_box(case.run_batch(&mut bufs, &mut verdicts, i * BATCH));
                }
                t.elapsed()
            })
        });
        g.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(std::time::Duration::from_secs(3));
    targets = engine
}
criterion_main!(benches);
