//! The DPDK uplink on DPDK's virtual devices, without hugepages or PCI:
//! frames replayed from a capture (`net_pcap`) are received, sent to
//! another `net_pcap` and compared byte for byte with what it wrote; a
//! `net_ring` loops frames back and fills up; `net_null` sinks and sources.
//!
//! Built only with `--features dpdk` (which needs DPDK: run
//! `scripts/install-dpdk.sh`). DPDK's EAL starts once per process, so
//! every scenario runs in order inside the one test below.

#![cfg(feature = "dpdk")]

use dataplane::PacketBuf;
use pcap_file::pcap::{PcapPacket, PcapReader, PcapWriter};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Duration;
use vmm_net::backend::Backend;
use vmm_net::dpdk::{DpdkError, DpdkPort, DpdkPortOptions, DpdkQueue, Eal};

/// A frame of `len` bytes that says which one it is: broadcast to a
/// locally administered source, EtherType 0x88b5 (IEEE local
/// experimental), then `n` and a pattern that depends on it.
fn frame(n: u16, len: usize) -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&[0x02, 0, 0, 0, 0, (n & 0xff) as u8]);
    f.extend_from_slice(&[0x88, 0xb5]);
    f.extend_from_slice(&n.to_be_bytes());
    f.extend((0..len.saturating_sub(f.len())).map(|i| (i as u16 ^ n.wrapping_mul(31)) as u8));
    f.truncate(len);
    f
}

/// The frames replayed through `net_pcap`: minimum, odd and full sizes,
/// and a 9000-byte jumbo that spans several mbufs both ways.
fn capture_frames() -> Vec<Vec<u8>> {
    let sizes = [60, 64, 65, 128, 255, 512, 1000, 1514, 9000, 60, 1514, 333];
    let mut v: Vec<Vec<u8>> = sizes
        .iter()
        .enumerate()
        .map(|(i, &len)| frame(i as u16, len))
        .collect();
    // More than one burst's worth, so replay spans several rx_burst calls.
    v.extend((0..200).map(|i| frame(100 + i, 60 + usize::from(i) * 7)));
    v
}

fn write_pcap(path: &Path, frames: &[Vec<u8>]) {
    let mut w = PcapWriter::new(File::create(path).unwrap()).unwrap();
    for (i, f) in frames.iter().enumerate() {
        let ts = Duration::from_millis(i as u64);
        w.write_packet(&PcapPacket::new(ts, f.len() as u32, f))
            .unwrap();
    }
}

fn read_pcap(path: &Path) -> Vec<Vec<u8>> {
    let mut r = PcapReader::new(File::open(path).unwrap()).unwrap();
    let mut v = Vec::new();
    while let Some(p) = r.next_packet() {
        v.push(p.unwrap().data.into_owned());
    }
    v
}

fn bufs(frames: &[Vec<u8>]) -> Vec<PacketBuf> {
    frames.iter().map(|f| PacketBuf::from_frame(f)).collect()
}

/// Polls `q` until `want` frames came or nothing more comes.
fn receive(q: &mut DpdkQueue, want: usize) -> Vec<Vec<u8>> {
    let mut got = Vec::new();
    let mut rx = Vec::with_capacity(64);
    let mut idle = 0;
    while got.len() < want && idle < 1000 {
        rx.clear();
        let n = q.rx_burst(&mut rx, 32).unwrap();
        assert_eq!(n, rx.len(), "rx_burst returns what it appended");
        if n == 0 {
            idle += 1;
            std::thread::sleep(Duration::from_micros(100));
        }
        got.extend(rx.iter().map(|p| p.as_slice().to_vec()));
    }
    got
}

fn one_queue(port: &mut DpdkPort) -> DpdkQueue {
    let mut qs = port.take_queues();
    assert_eq!(qs.len(), 1);
    assert!(port.take_queues().is_empty(), "queues are handed out once");
    qs.pop().unwrap()
}

struct Dir(PathBuf);

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn dpdk_virtual_devices() {
    let dir = Dir(std::env::temp_dir().join(format!("sluice-dpdk-{}", std::process::id())));
    std::fs::create_dir_all(&dir.0).unwrap();
    let input = dir.0.join("in.pcap");
    let output = dir.0.join("out.pcap");
    let frames = capture_frames();
    write_pcap(&input, &frames);

    // -l 0: one lcore (no EAL worker threads); --no-huge -m 256: 256 MB
    // of ordinary memory; --no-pci: no device scan; --no-shconf and
    // --no-telemetry: no files or sockets under /var/run/dpdk, so tests
    // may run side by side.
    let args: Vec<String> = [
        "-l",
        "0",
        "--no-huge",
        "--no-pci",
        "--no-shconf",
        "--no-telemetry",
        "-m",
        "256",
        "--log-level",
        "notice",
        "--vdev",
        &format!("net_pcap0,rx_pcap={}", input.display()),
        "--vdev",
        &format!("net_pcap1,tx_pcap={}", output.display()),
        "--vdev",
        "net_ring0",
        "--vdev",
        "net_ring1",
        "--vdev",
        "net_null0",
        "--vdev",
        "net_null1",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let eal = Eal::init(&args).expect("EAL starts on virtual devices without hugepages");

    init_is_once_per_process();
    ports_are_listed(&eal);
    bad_options_are_errors(&eal);
    ring_loops_back_and_fills(&eal);
    received_frames_are_lent_and_sent_in_place(&eal);
    null_sinks_and_sources(&eal);
    pcap_replay_and_record(&eal, &frames, &output);
}

fn init_is_once_per_process() {
    match Eal::init(&[]) {
        Err(DpdkError::EalAlreadyInitialised) => {}
        other => panic!("second init: {:?}", other.err()),
    }
}

fn ports_are_listed(eal: &Eal) {
    let names: Vec<String> = eal.ports().into_iter().map(|(_, n)| n).collect();
    for want in [
        "net_pcap0",
        "net_pcap1",
        "net_ring0",
        "net_null0",
        "net_null1",
    ] {
        assert!(names.iter().any(|n| n == want), "{want} in {names:?}");
    }
}

fn bad_options_are_errors(eal: &Eal) {
    let e = DpdkPort::open(eal, "net_nope7", DpdkPortOptions::default()).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("net_nope7") && msg.contains("net_null0"),
        "the error names the port and those that exist: {msg}"
    );
    let e = DpdkPort::open(
        eal,
        "net_null1",
        DpdkPortOptions {
            rx_queues: 0,
            tx_queues: 0,
            ..Default::default()
        },
    )
    .unwrap_err();
    assert!(e.to_string().contains("rx_queues 0"), "{e}");
    let e = DpdkPort::open(
        eal,
        "net_null1",
        DpdkPortOptions {
            mbufs: 100,
            ..Default::default()
        },
    )
    .unwrap_err();
    assert!(e.to_string().contains("mbufs 100 is out of range"), "{e}");
    // The options were refused before the device was touched: it opens.
    let mut p = DpdkPort::open(eal, "net_null1", DpdkPortOptions::default()).unwrap();
    let e = DpdkPort::open(eal, "net_null1", DpdkPortOptions::default()).unwrap_err();
    assert!(e.to_string().contains("already open"), "{e}");
    drop(p.take_queues());
}

/// Frames replayed from `in.pcap` by net_pcap0 go through sluice (RX, a
/// PacketBuf, TX) to net_pcap1, which records them: the recording is the
/// capture, byte for byte, jumbo frame included.
fn pcap_replay_and_record(eal: &Eal, frames: &[Vec<u8>], output: &Path) {
    let small = DpdkPortOptions {
        ring_size: 256,
        mbufs: 2047,
        ..Default::default()
    };
    let mut rx_port = DpdkPort::open(
        eal,
        "net_pcap0",
        DpdkPortOptions {
            tx_queues: 0,
            ..small.clone()
        },
    )
    .unwrap();
    // net_pcap (22.11) does not say it takes mbuf chains, so the jumbo
    // frame must fit one mbuf on TX. On RX it arrives as a chain (the
    // driver splits it over the default 2 KB mbufs) and is copied out of
    // every segment.
    let mut tx_port = DpdkPort::open(
        eal,
        "net_pcap1",
        DpdkPortOptions {
            rx_queues: 0,
            mbuf_data_room: 9216 + 128,
            ..small.clone()
        },
    )
    .unwrap();
    assert_eq!(tx_port.max_frame(), 9216);
    assert_eq!(rx_port.driver(), "net_pcap");
    let mut rxq = one_queue(&mut rx_port);
    let mut txq = one_queue(&mut tx_port);

    let mut rx = Vec::new();
    let mut sent = 0;
    let mut idle = 0;
    while idle < 1000 {
        let n = rxq.rx_burst(&mut rx, 32).unwrap();
        if n == 0 {
            idle += 1;
            continue;
        }
        let want = rx.len();
        let took = txq.tx_burst(&mut rx).unwrap();
        assert_eq!(
            took,
            want,
            "net_pcap takes every frame: {:?}",
            txq.counters()
        );
        assert!(rx.is_empty(), "tx_burst leaves the vector empty");
        sent += took;
    }
    assert_eq!(sent, frames.len());
    let rc = rxq.counters();
    let tc = txq.counters();
    let bytes: u64 = frames.iter().map(|f| f.len() as u64).sum();
    assert_eq!((rc.rx_packets, rc.rx_bytes), (frames.len() as u64, bytes));
    assert_eq!((tc.tx_packets, tc.tx_bytes), (frames.len() as u64, bytes));
    assert_eq!(tc.tx_ring_full + tc.tx_no_mbuf + tc.tx_bad_size, 0);

    // A receive-only queue sends nothing, and says why.
    let mut stray = bufs(&frames[..3]);
    assert_eq!(rxq.tx_burst(&mut stray).unwrap(), 0);
    assert_eq!(rxq.counters().tx_no_queue, 3);

    let pc = tx_port.counters().unwrap();
    assert_eq!(pc.queues.tx_packets, frames.len() as u64);
    assert_eq!(pc.dev_tx_packets, frames.len() as u64);
    // Mbufs all came back (none leaked by the copies or chains).
    assert_eq!(tx_port.mbufs_available(), 2047);

    // Closing net_pcap1 (the last handle going) writes the file out.
    drop((rxq, txq, rx_port, tx_port));
    let recorded = read_pcap(output);
    assert_eq!(recorded.len(), frames.len());
    for (i, (got, want)) in recorded.iter().zip(frames).enumerate() {
        assert_eq!(got, want, "frame {i} ({} bytes)", want.len());
    }
}

/// `net_ring0` on its own is a loopback: what its TX queue takes comes
/// back on its RX queue. Its ring is finite: sending without receiving
/// fills it, and the frames not taken are counted, not lost silently.
fn ring_loops_back_and_fills(eal: &Eal) {
    let mut port = DpdkPort::open(eal, "net_ring0", DpdkPortOptions::default()).unwrap();
    let mut q = one_queue(&mut port);
    // net_ring takes mbuf chains: jumbo frames go out (and come back) as
    // chains of 2 KB mbufs.
    assert_eq!(port.max_frame(), 65535);
    let mut frames: Vec<Vec<u8>> = (0..100)
        .map(|i| frame(i, 60 + usize::from(i) * 13))
        .collect();
    frames[10] = frame(10, 9000);
    frames[20] = frame(20, 20_000);
    frames[30] = frame(30, 65535);
    let mut out = bufs(&frames);
    assert_eq!(q.tx_burst(&mut out).unwrap(), 100);
    let back = receive(&mut q, 100);
    assert_eq!(back, frames);
    let frames = &frames[40..];

    // Flood without receiving: the ring takes what it can hold.
    let mut sent = 0;
    let mut offered = 0;
    for _ in 0..40 {
        let mut out = bufs(frames);
        offered += out.len();
        sent += q.tx_burst(&mut out).unwrap();
    }
    let c = q.counters();
    assert!(
        sent < offered,
        "the ring filled ({sent} of {offered} taken)"
    );
    assert_eq!(c.tx_ring_full, (offered - sent) as u64);
    assert_eq!(c.tx_packets, 100 + sent as u64);
    assert_eq!(c.tx_no_mbuf + c.tx_bad_size, 0);
    let drained = receive(&mut q, sent);
    assert_eq!(drained.len(), sent);
    assert_eq!(receive(&mut q, 1).len(), 0);
    let pc = port.counters().unwrap();
    assert_eq!(pc.queues.rx_packets, 100 + sent as u64);
}

/// Zero copy on `net_ring1` (a loopback): a received frame is lent to the
/// engine in its mbuf, changed there (an encapsulation pushed into the
/// mbuf's headroom) and sent as the same mbuf — no mbuf is allocated for
/// it, which the pool's count shows — and comes back as changed. A
/// frame in a chain of mbufs is copied instead, and with zero copy off
/// every frame is.
fn received_frames_are_lent_and_sent_in_place(eal: &Eal) {
    let mut port = DpdkPort::open(eal, "net_ring1", DpdkPortOptions::default()).unwrap();
    let mut q = one_queue(&mut port);
    let total = port.mbufs_available();
    let frames: Vec<Vec<u8>> = (0..20)
        .map(|i| frame(i, 60 + usize::from(i) * 50))
        .collect();
    let mut out = bufs(&frames);
    assert_eq!(q.tx_burst(&mut out).unwrap(), 20);
    let mut rx = Vec::new();
    assert_eq!(q.rx_burst(&mut rx, 32).unwrap(), 20);
    assert!(
        rx.iter().all(|p| p.lender().is_some()),
        "every one-mbuf frame is lent"
    );
    assert!(
        rx.iter().all(|p| p.headroom() == 128),
        "DPDK's headroom is the buffer's"
    );
    for p in &mut rx {
        p.push_front(70).unwrap().fill(0xab);
    }
    let lent_out = port.mbufs_available();
    assert_eq!(lent_out, total - 20, "the lent frames hold their mbufs");
    assert_eq!(q.tx_burst(&mut rx).unwrap(), 20);
    assert_eq!(
        port.mbufs_available(),
        lent_out,
        "sent as the same mbufs: none allocated"
    );
    let back = receive(&mut q, 20);
    let want: Vec<Vec<u8>> = frames
        .iter()
        .map(|f| [vec![0xab; 70], f.clone()].concat())
        .collect();
    assert_eq!(back, want);
    assert_eq!(port.mbufs_available(), total, "every mbuf back in the pool");

    // A jumbo frame comes back as a chain of mbufs: copied out, not lent.
    let mut out = bufs(&[frame(1, 9000)]);
    assert_eq!(q.tx_burst(&mut out).unwrap(), 1);
    let mut rx = Vec::new();
    assert_eq!(q.rx_burst(&mut rx, 32).unwrap(), 1);
    assert_eq!((rx[0].lender(), rx[0].len()), (None, 9000));
    drop(rx);
    assert_eq!(port.mbufs_available(), total);
    let c = q.counters();
    assert_eq!((c.tx_packets, c.rx_packets), (41, 41));
    assert_eq!(c.tx_no_mbuf + c.tx_bad_size + c.tx_ring_full, 0);
}

/// `net_null0` takes (and frees) whatever it is sent and makes up 64-byte
/// frames on receive; a frame too large for the device, or empty, is
/// refused.
fn null_sinks_and_sources(eal: &Eal) {
    let mut port = DpdkPort::open(eal, "net_null0", DpdkPortOptions::default()).unwrap();
    let mut q = one_queue(&mut port);
    // A started net_null port's link is up (rte_eth_link_get_nowait).
    assert!(q.link_up(), "net_null0's link");
    let frames: Vec<Vec<u8>> = (0..1000)
        .map(|i| frame(i, 60 + usize::from(i % 1455)))
        .collect();
    let mut out = bufs(&frames);
    let mut sent = 0;
    while !out.is_empty() {
        let mut burst: Vec<PacketBuf> = out.drain(..out.len().min(256)).collect();
        sent += q.tx_burst(&mut burst).unwrap();
    }
    assert_eq!(sent, 1000);
    let mut rx = Vec::new();
    assert_eq!(q.rx_burst(&mut rx, 100).unwrap(), 100);
    assert!(rx.iter().all(|p| p.len() == 64));
    // A frame longer than the device takes (one mbuf, or 64 KiB chained).
    let max = port.max_frame();
    let mut huge = vec![
        PacketBuf::from_frame(&vec![0u8; max + 1]),
        PacketBuf::from_frame(&[]),
    ];
    assert_eq!(q.tx_burst(&mut huge).unwrap(), 0);
    let c = port.counters().unwrap();
    assert_eq!(c.queues.tx_packets, 1000);
    assert_eq!(c.queues.tx_bad_size, 2);
    assert_eq!(c.queues.rx_packets, 100);
    assert_eq!(c.dev_tx_packets, 1000);
    let names: Vec<&str> = c.named().iter().map(|(n, _)| *n).collect();
    assert!(names.contains(&"tx_ring_full") && names.contains(&"imissed"));
    // The received frames are lent mbufs: dropping them gives them back.
    assert!(rx.iter().all(|p| p.lender().is_some()));
    drop(rx);
    drop(q);
    assert_eq!(port.mbufs_available(), 8191, "no mbuf leaked");
}
