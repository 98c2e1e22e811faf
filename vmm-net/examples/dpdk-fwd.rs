//! Forwards frames between two DPDK ports through sluice's DPDK backend
//! (RX on one port, TX on the other, both ways, on one thread, as
//! `dpdk-testpmd --forward-mode=io` does) and prints the rate, and the
//! heap allocations per forwarded frame (the fast path should show none).
//!
//! ```text
//! cargo run --release -p vmm-net --features dpdk --example dpdk-fwd -- \
//!     [--packets N] [--burst B] [--ports A,B] [-- EAL arguments]
//! ```
//!
//! Without EAL arguments it runs on two `net_null` devices, without
//! hugepages: `-l 0 --no-huge --no-pci --no-shconf --no-telemetry -m 512
//! --vdev net_null0 --vdev net_null1`. With a NIC, pass e.g. `-- -l 2
//! -a 0000:01:00.0 -a 0000:01:00.1` and `--ports 0,1`.

// The counting allocator below is the only unsafe code here.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;
use vmm_net::backend::Backend;
use vmm_net::dpdk::{DpdkPort, DpdkPortOptions, DpdkQueue, Eal};

/// Counts heap allocations, to show the loop makes none per frame.
struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);

// SAFETY: defers to the system allocator; only counts calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's contract is passed on unchanged.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(p, l) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut packets: u64 = 20_000_000;
    let mut burst: usize = 32;
    let mut ports = ("net_null0".to_string(), "net_null1".to_string());
    let mut eal_args: Vec<String> = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--packets" => packets = args.next().ok_or("--packets N")?.parse()?,
            "--burst" => burst = args.next().ok_or("--burst B")?.parse()?,
            "--ports" => {
                let v = args.next().ok_or("--ports A,B")?;
                let (a, b) = v.split_once(',').ok_or("--ports A,B")?;
                ports = (a.to_string(), b.to_string());
            }
            "--" => {
                eal_args = args.by_ref().collect();
            }
            other => return Err(format!("unknown argument {other:?}").into()),
        }
    }
    if eal_args.is_empty() {
        eal_args = "-l 0 --no-huge --no-pci --no-shconf --no-telemetry -m 512 \
                    --log-level notice --vdev net_null0 --vdev net_null1"
            .split_whitespace()
            .map(str::to_string)
            .collect();
    }

    let eal = Eal::init(&eal_args)?;
    let lcore = eal.register_thread()?;
    let mut pa = DpdkPort::open(&eal, &ports.0, DpdkPortOptions::default())?;
    let mut pb = DpdkPort::open(&eal, &ports.1, DpdkPortOptions::default())?;
    let mut qa = pa.take_queues().remove(0);
    let mut qb = pb.take_queues().remove(0);
    println!(
        "forwarding {packets} frames between {} ({}) and {} ({}), burst {burst}, lcore {lcore}",
        pa.name(),
        pa.driver(),
        pb.name(),
        pb.driver()
    );

    let mut v = Vec::with_capacity(burst);
    // One direction of a round: a burst from `rx` sent on `tx`.
    // Returns (received, sent).
    let mut one_way = |rx: &mut DpdkQueue, tx: &mut DpdkQueue| -> std::io::Result<(u64, u64)> {
        v.clear();
        let n = rx.rx_burst(&mut v, burst)?;
        if n == 0 {
            return Ok((0, 0));
        }
        Ok((n as u64, tx.tx_burst(&mut v)? as u64))
    };
    let mut round = |qa: &mut DpdkQueue, qb: &mut DpdkQueue| -> std::io::Result<(u64, u64)> {
        let (g1, s1) = one_way(qa, qb)?;
        let (g2, s2) = one_way(qb, qa)?;
        Ok((g1 + g2, s1 + s2))
    };
    // Warm up (fills the queues' buffer pools and the mempool caches).
    let mut fwd = 0u64;
    while fwd < packets / 10 {
        fwd += round(&mut qa, &mut qb)?.1;
    }
    let start = Instant::now();
    let allocs0 = ALLOCS.load(Ordering::Relaxed);
    let (mut offered, mut measured) = (0u64, 0u64);
    while measured < packets {
        let (got, sent) = round(&mut qa, &mut qb)?;
        offered += got;
        measured += sent;
    }
    let secs = start.elapsed().as_secs_f64();
    let allocs = ALLOCS.load(Ordering::Relaxed) - allocs0;
    println!(
        "{measured} frames in {secs:.3} s: {:.2} Mpps ({} not taken by TX), {:.4} allocations per frame",
        measured as f64 / secs / 1e6,
        offered.saturating_sub(measured),
        allocs as f64 / measured.max(1) as f64
    );
    for p in [&pa, &pb] {
        let c = p.counters()?;
        println!("{}: {:?}", p.name(), c);
    }
    Ok(())
}
