//! The vhost-user backend against a VMM played by this test: the rust-vmm
//! `vhost` frontend speaks the protocol, and the test is the guest driver
//! (it writes the split virtqueues in a memfd it shares, posts buffers and
//! kicks). No root needed.

use dataplane::PacketBuf;
use std::fs::File;
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use vhost::vhost_user::{Frontend, VhostUserFrontend, VhostUserProtocolFeatures};
use vhost::{VhostBackend, VhostUserMemoryRegionInfo, VringConfigData};
use vm_memory::{Bytes, FileOffset, GuestAddress, GuestMemoryMmap, GuestRegionMmap, MmapRegion};
use vmm_net::backend::Backend;
use vmm_net::vhost_user::{VhostUser, VhostUserOptions};
use vmm_sys_util::eventfd::EventFd;

const MEM: usize = 16 << 20;
const QSIZE: u16 = 16;
/// Room per descriptor index in a ring's buffer area.
const SLOT: u64 = 0x1000;
/// Guest memory per ring (a 256-entry ring and its buffers fit).
const RING_STRIDE: u64 = 0x20_0000;
const F_NEXT: u16 = 1;
const F_WRITE: u16 = 2;
const F_INDIRECT: u16 = 4;
const VERSION_1: u64 = 1 << 32;
const PROTOCOL_FEATURES: u64 = 1 << 30;
const EVENT_IDX: u64 = 1 << 29;
const NET_F_CSUM: u64 = 1;
const NET_F_GUEST_CSUM: u64 = 1 << 1;
const NET_F_GUEST_TSO4: u64 = 1 << 7;
const NET_F_GUEST_TSO6: u64 = 1 << 8;
const NET_F_GUEST_ECN: u64 = 1 << 9;
const NET_F_MRG_RXBUF: u64 = 1 << 15;
const NET_F_MQ: u64 = 1 << 22;
/// What a Linux guest with offloads on accepts.
const GUEST_OFFLOADS: u64 =
    NET_F_GUEST_CSUM | NET_F_GUEST_TSO4 | NET_F_GUEST_TSO6 | NET_F_GUEST_ECN;

/// One split virtqueue in guest memory, driven by the test.
struct Ring {
    q: u16,
    desc: u64,
    avail: u64,
    used: u64,
    /// The first data buffer of this ring (descriptor `i` uses
    /// `bufs + i * SLOT`).
    bufs: u64,
    next_desc: u16,
    avail_idx: u16,
    kick: EventFd,
    call: EventFd,
}

impl Ring {
    fn new(base: u64, q: u16) -> Ring {
        let desc = base;
        let avail = desc + 16 * u64::from(q);
        let used = avail + 0x1000;
        Ring {
            q,
            desc,
            avail,
            used,
            bufs: used + 0x1000,
            next_desc: 0,
            avail_idx: 0,
            kick: EventFd::new(libc::EFD_NONBLOCK).unwrap(),
            call: EventFd::new(libc::EFD_NONBLOCK).unwrap(),
        }
    }

    /// Writes descriptor `i` of the table at `table`.
    fn put_desc(
        mem: &GuestMemoryMmap,
        table: u64,
        i: u16,
        addr: u64,
        len: u32,
        flags: u16,
        next: u16,
    ) {
        let d = table + 16 * u64::from(i);
        mem.write_obj(addr.to_le(), GuestAddress(d)).unwrap();
        mem.write_obj(len.to_le(), GuestAddress(d + 8)).unwrap();
        mem.write_obj(flags.to_le(), GuestAddress(d + 12)).unwrap();
        mem.write_obj(next.to_le(), GuestAddress(d + 14)).unwrap();
    }

    /// Makes the chain at `head` available.
    fn offer(&mut self, mem: &GuestMemoryMmap, head: u16) {
        let slot = self.avail + 4 + 2 * u64::from(self.avail_idx % self.q);
        mem.write_obj(head.to_le(), GuestAddress(slot)).unwrap();
        self.avail_idx = self.avail_idx.wrapping_add(1);
        mem.write_obj(self.avail_idx.to_le(), GuestAddress(self.avail + 2))
            .unwrap();
    }

    /// Posts one chain of (data, write-only) pieces; data pieces are
    /// written to guest memory, write-only ones are `len` bytes of room.
    fn post(&mut self, mem: &GuestMemoryMmap, pieces: &[(&[u8], u32, bool)]) -> u16 {
        let head = self.next_desc;
        for (k, (data, len, write)) in pieces.iter().enumerate() {
            let i = self.next_desc;
            let addr = self.bufs + u64::from(i) * SLOT;
            mem.write_slice(data, GuestAddress(addr)).unwrap();
            let mut flags = if *write { F_WRITE } else { 0 };
            if k + 1 < pieces.len() {
                flags |= F_NEXT;
            }
            Ring::put_desc(mem, self.desc, i, addr, *len, flags, (i + 1) % self.q);
            self.next_desc = (self.next_desc + 1) % self.q;
        }
        self.offer(mem, head);
        head
    }

    /// Posts `n` receive buffers, each a chain of `pieces` write-only
    /// descriptors of `len` bytes.
    fn post_rx(&mut self, mem: &GuestMemoryMmap, n: usize, pieces: usize, len: u32) {
        let p: Vec<(&[u8], u32, bool)> = vec![(&[][..], len, true); pieces];
        for _ in 0..n {
            self.post(mem, &p);
        }
    }

    /// What the guest received in used entries `from..to`: for each, its
    /// bytes (the chain's write-only descriptors read in order, up to the
    /// length written).
    fn received(&self, mem: &GuestMemoryMmap, from: u16, to: u16) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut n = from;
        while n != to {
            let (id, len) = self.used_elem(mem, n);
            let mut bytes = Vec::new();
            let mut i = id as u16;
            while bytes.len() < len as usize {
                let d = self.desc + 16 * u64::from(i);
                let addr: u64 = u64::from_le(mem.read_obj(GuestAddress(d)).unwrap());
                let dlen: u32 = u32::from_le(mem.read_obj(GuestAddress(d + 8)).unwrap());
                let next: u16 = u16::from_le(mem.read_obj(GuestAddress(d + 14)).unwrap());
                let k = (dlen as usize).min(len as usize - bytes.len());
                let mut b = vec![0u8; k];
                mem.read_slice(&mut b, GuestAddress(addr)).unwrap();
                bytes.extend_from_slice(&b);
                i = next;
            }
            out.push(bytes);
            n = n.wrapping_add(1);
        }
        out
    }

    fn used_idx(&self, mem: &GuestMemoryMmap) -> u16 {
        u16::from_le(mem.read_obj(GuestAddress(self.used + 2)).unwrap())
    }

    /// The used element `n`: (descriptor head, length written).
    fn used_elem(&self, mem: &GuestMemoryMmap, n: u16) -> (u32, u32) {
        let e = self.used + 4 + 8 * u64::from(n % self.q);
        (
            u32::from_le(mem.read_obj(GuestAddress(e)).unwrap()),
            u32::from_le(mem.read_obj(GuestAddress(e + 4)).unwrap()),
        )
    }

    fn desc_addr(&self, mem: &GuestMemoryMmap, i: u32) -> u64 {
        u64::from_le(
            mem.read_obj(GuestAddress(self.desc + 16 * u64::from(i)))
                .unwrap(),
        )
    }
}

/// The guest: shared memory, a frontend connection and its queue pairs
/// (`rx`/`tx` are pair 0's, `more` holds the others' rx, tx in turn).
struct Vm {
    mem: GuestMemoryMmap,
    _fe: Frontend,
    rx: Ring,
    tx: Ring,
    more: Vec<Ring>,
}

impl Vm {
    /// Connects to `path` and sets the device up as QEMU does.
    fn boot(path: &PathBuf) -> Vm {
        Vm::boot_pairs(path, 1)
    }

    fn boot_pairs(path: &PathBuf, pairs: usize) -> Vm {
        Vm::set_up(Frontend::connect(path, 2 * pairs as u64).unwrap(), pairs)
    }

    /// One queue pair of `q` entries, with `features` acked on top of the
    /// basic ones.
    fn boot_with(path: &PathBuf, q: u16, features: u64) -> Vm {
        Vm::set_up_with(Frontend::connect(path, 2).unwrap(), 1, q, features)
    }

    /// Sets the device up over `fe`, a connection either side made.
    fn set_up(fe: Frontend, pairs: usize) -> Vm {
        Vm::set_up_with(fe, pairs, QSIZE, 0)
    }

    fn set_up_with(mut fe: Frontend, pairs: usize, q: u16, features: u64) -> Vm {
        let fd = rustix::fs::memfd_create("vm", rustix::fs::MemfdFlags::CLOEXEC).unwrap();
        let file = File::from(fd);
        file.set_len(MEM as u64).unwrap();
        let region = MmapRegion::<()>::from_file(FileOffset::new(file, 0), MEM).unwrap();
        let region = GuestRegionMmap::new(region, GuestAddress(0)).unwrap();
        let info = VhostUserMemoryRegionInfo::from_guest_region(&region).unwrap();
        let mem = GuestMemoryMmap::from_regions(vec![region]).unwrap();
        fe.set_owner().unwrap();
        let offered = fe.get_features().unwrap();
        let mut want = VERSION_1 | PROTOCOL_FEATURES | EVENT_IDX | NET_F_CSUM | features;
        if pairs > 1 {
            want |= NET_F_MQ;
        }
        assert_eq!(offered & want, want, "features offered: {offered:#x}");
        fe.set_features(want).unwrap();
        let proto = fe.get_protocol_features().unwrap();
        assert_eq!(proto.contains(VhostUserProtocolFeatures::MQ), pairs > 1);
        if pairs > 1 {
            fe.set_protocol_features(VhostUserProtocolFeatures::MQ)
                .unwrap();
            // (GET_QUEUE_NUM answers queue pairs, as QEMU and DPDK read
            // it for virtio-net; this frontend would take it as queues.)
        } else {
            fe.set_protocol_features(VhostUserProtocolFeatures::empty())
                .unwrap();
        }
        fe.set_mem_table(&[info]).unwrap();
        let rings: Vec<Ring> = (0..2 * pairs as u64)
            .map(|i| Ring::new(0x1_0000 + i * RING_STRIDE, q))
            .collect();
        for (qi, r) in rings.iter().enumerate() {
            fe.set_vring_num(qi, q).unwrap();
            fe.set_vring_addr(
                qi,
                &VringConfigData {
                    queue_max_size: q,
                    queue_size: q,
                    flags: 0,
                    desc_table_addr: info.userspace_addr + r.desc,
                    used_ring_addr: info.userspace_addr + r.used,
                    avail_ring_addr: info.userspace_addr + r.avail,
                    log_addr: None,
                },
            )
            .unwrap();
            fe.set_vring_base(qi, 0).unwrap();
            fe.set_vring_call(qi, &r.call).unwrap();
            fe.set_vring_kick(qi, &r.kick).unwrap();
            fe.set_vring_enable(qi, true).unwrap();
        }
        let mut rings = rings.into_iter();
        let (Some(rx), Some(tx)) = (rings.next(), rings.next()) else {
            unreachable!()
        };
        Vm {
            mem,
            _fe: fe,
            rx,
            tx,
            more: rings.collect(),
        }
    }
}

fn socket_path(tag: &str) -> PathBuf {
    std::env::temp_dir().join(format!("sluice-vu-{tag}-{}.sock", std::process::id()))
}

fn wait(what: &str, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < Duration::from_secs(10), "timed out: {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Whether the backend's poll fd is readable within `ms`.
fn readable(b: &VhostUser, ms: i32) -> bool {
    let fd = b.poll_fd().unwrap();
    let mut p = [rustix::event::PollFd::new(
        &fd,
        rustix::event::PollFlags::IN,
    )];
    let ts = rustix::event::Timespec {
        tv_sec: i64::from(ms / 1000),
        tv_nsec: i64::from(ms % 1000) * 1_000_000,
    };
    rustix::event::poll(&mut p, Some(&ts)).unwrap() == 1
}

fn frame(n: u8, len: usize) -> Vec<u8> {
    let mut f = vec![n; len];
    f[..6].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
    f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 2]);
    f[12..14].copy_from_slice(&[0x88, 0xb5]); // local experimental
    f
}

/// The guest sends `f` (header and frame in separate descriptors) and
/// kicks; the worker side must wake and receive exactly `f`.
fn guest_sends(vm: &mut Vm, b: &mut VhostUser, f: &[u8]) {
    let used0 = vm.tx.used_idx(&vm.mem);
    vm.tx.post(
        &vm.mem,
        &[(&[0u8; 12], 12, false), (f, f.len() as u32, false)],
    );
    vm.tx.kick.write(1).unwrap();
    assert!(readable(b, 5000), "the kick wakes the worker");
    let mut bufs: Vec<PacketBuf> = Vec::new();
    wait("the frame arrives", || {
        b.rx_burst(&mut bufs, 32).unwrap();
        !bufs.is_empty()
    });
    assert_eq!(bufs.len(), 1);
    assert_eq!(bufs[0].as_slice(), f);
    assert_eq!(
        vm.tx.used_idx(&vm.mem),
        used0.wrapping_add(1),
        "chain returned"
    );
    // Nothing more: once the ring has been found empty long enough the
    // kick is re-armed and consumed, well before an idle worker sleeps.
    bufs.clear();
    for _ in 0..vmm_net::worker::SPIN_POLLS / 2 {
        assert_eq!(b.rx_burst(&mut bufs, 32).unwrap(), 0);
    }
    assert!(
        !readable(b, 0),
        "no kick pending after the ring was drained"
    );
}

#[test]
fn frames_flow_both_ways_and_the_device_survives_a_vmm_restart() {
    let path = socket_path("flow");
    let _ = std::fs::remove_file(&path);
    let mut b = VhostUser::listen(&path, &VhostUserOptions::default()).unwrap();
    let mut vm = Vm::boot(&path);
    wait("the rings run", || b.is_running());

    // Guest -> sluice.
    let f1 = frame(1, 100);
    guest_sends(&mut vm, &mut b, &f1);

    // Sluice -> guest: no buffer posted yet, so nothing is taken.
    let mut out = vec![PacketBuf::from_frame(&frame(2, 60))];
    assert_eq!(b.tx_burst(&mut out).unwrap(), 0);
    assert_eq!(b.stats().tx_no_buffers, 1);
    // A buffer in two pieces; the frame goes in with its header.
    let head = vm.rx.post(&vm.mem, &[(&[], 8, true), (&[], 2040, true)]);
    let f2 = frame(2, 300);
    let mut out = vec![PacketBuf::from_frame(&f2)];
    assert_eq!(b.tx_burst(&mut out).unwrap(), 1);
    assert_eq!(vm.rx.used_idx(&vm.mem), 1);
    let (id, len) = vm.rx.used_elem(&vm.mem, 0);
    assert_eq!((id, len as usize), (u32::from(head), 12 + f2.len()));
    let mut got = vec![0u8; 12 + f2.len()];
    let a0 = vm.rx.desc_addr(&vm.mem, id);
    let a1 = vm.rx.desc_addr(&vm.mem, id + 1);
    vm.mem.read_slice(&mut got[..8], GuestAddress(a0)).unwrap();
    vm.mem.read_slice(&mut got[8..], GuestAddress(a1)).unwrap();
    assert_eq!(&got[..12], &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0], "header");
    assert_eq!(&got[12..], &f2[..]);
    assert_eq!(vm.rx.call.read().unwrap(), 1, "the guest was interrupted");

    // A frame larger than the posted buffer is dropped, the buffer kept.
    vm.rx.post(&vm.mem, &[(&[], 200, true)]);
    let mut out = vec![PacketBuf::from_frame(&frame(3, 400))];
    assert_eq!(b.tx_burst(&mut out).unwrap(), 1);
    assert_eq!(b.stats().tx_oversize, 1);
    assert_eq!(vm.rx.used_idx(&vm.mem), 1, "the small buffer is still free");

    // The VMM goes away and comes back: the backend listens again and a
    // fresh device works.
    drop(vm);
    wait("the device resets after the hang-up", || !b.is_running());
    let mut out = vec![PacketBuf::from_frame(&frame(4, 60))];
    assert_eq!(b.tx_burst(&mut out).unwrap(), 0, "no guest: not taken");
    let mut vm = Vm::boot(&path);
    wait("the rings run again", || b.is_running());
    assert_eq!(b.connections(), 2);
    let f5 = frame(5, 1500);
    guest_sends(&mut vm, &mut b, &f5);
    drop(vm);

    // Deleting the port removes the socket.
    drop(b);
    assert!(!path.exists());
}

/// Client mode: the VMM listens (QEMU's `server=on`), the backend connects
/// and reconnects.
#[test]
fn in_client_mode_the_backend_connects_reconnects_and_a_new_backend_reattaches() {
    use std::os::unix::net::UnixListener;
    let path = socket_path("client");
    let _ = std::fs::remove_file(&path);
    // The port comes first: nobody listens yet, the backend keeps trying.
    let mut b = VhostUser::connect(&path, &VhostUserOptions::default()).unwrap();
    std::thread::sleep(Duration::from_millis(250));
    assert_eq!(b.connections(), 0);
    let vmm = UnixListener::bind(&path).unwrap();
    let accept = |vmm: &UnixListener| {
        let (s, _) = vmm.accept().unwrap();
        Vm::set_up(Frontend::from_stream(s, 2), 1)
    };
    let mut vm = accept(&vmm);
    wait("the rings run", || b.is_running());
    guest_sends(&mut vm, &mut b, &frame(1, 120));

    // The connection breaks (the VMM's side closes): the device resets and
    // the backend connects again to the same listening VMM.
    drop(vm);
    wait("the device resets after the hang-up", || !b.is_running());
    let mut vm = accept(&vmm);
    wait("the rings run again", || b.is_running());
    assert_eq!(b.connections(), 2);
    guest_sends(&mut vm, &mut b, &frame(2, 700));

    // sluice goes away (a restart): the VMM's socket stays, and a new
    // backend on it re-attaches to the VMM, which is still running.
    drop(b);
    assert!(path.exists(), "the VMM's socket is left alone");
    let mut b = VhostUser::connect(&path, &VhostUserOptions::default()).unwrap();
    let mut vm2 = accept(&vmm);
    wait("the new backend runs", || b.is_running());
    guest_sends(&mut vm2, &mut b, &frame(3, 1400));
    drop(vm);
    drop(b);
    assert!(path.exists());
    std::fs::remove_file(&path).unwrap();

    // A path that exists and is not a socket is refused.
    std::fs::write(&path, b"x").unwrap();
    let e = VhostUser::connect(&path, &VhostUserOptions::default())
        .err()
        .unwrap();
    assert!(e.to_string().contains("not a socket"), "{e}");
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn a_path_that_is_not_a_socket_is_refused_and_a_live_socket_too() {
    let path = socket_path("bad");
    std::fs::write(&path, b"x").unwrap();
    let e = VhostUser::listen(&path, &VhostUserOptions::default())
        .err()
        .unwrap();
    assert!(e.to_string().contains("not a socket"), "{e}");
    assert!(path.exists(), "the file is left alone");
    std::fs::remove_file(&path).unwrap();

    let b = VhostUser::listen(&path, &VhostUserOptions::default()).unwrap();
    let e = VhostUser::listen(&path, &VhostUserOptions::default())
        .err()
        .unwrap();
    assert!(e.to_string().contains("in use"), "{e}");
    drop(b);
    // A stale socket (nobody listening) is replaced.
    let l = std::os::unix::net::UnixListener::bind(&path).unwrap();
    drop(l);
    let b = VhostUser::listen(&path, &VhostUserOptions::default()).unwrap();
    assert!(b
        .poll_fd()
        .is_some_and(|fd| fd.as_fd().try_clone_to_owned().is_ok()));
    let e = VhostUser::listen(&path, &VhostUserOptions { queue_pairs: 0 })
        .err()
        .unwrap();
    assert!(e.to_string().contains("queue pairs 0"), "{e}");
}

#[test]
fn every_queue_pair_carries_frames() {
    let path = socket_path("mq");
    let _ = std::fs::remove_file(&path);
    let mut b = VhostUser::listen(&path, &VhostUserOptions { queue_pairs: 2 }).unwrap();
    let mut vm = Vm::boot_pairs(&path, 2);
    wait("the rings run", || b.is_running());
    // Pair 0's transmit queue, then pair 1's.
    guest_sends(&mut vm, &mut b, &frame(1, 80));
    std::mem::swap(&mut vm.tx, &mut vm.more[1]);
    guest_sends(&mut vm, &mut b, &frame(2, 90));
    std::mem::swap(&mut vm.tx, &mut vm.more[1]);
    // To the guest: pair 0's receive queue has no buffer, pair 1's has.
    vm.more[0].post(&vm.mem, &[(&[], 2048, true)]);
    let f = frame(3, 100);
    let mut out = vec![PacketBuf::from_frame(&f)];
    assert_eq!(b.tx_burst(&mut out).unwrap(), 1);
    assert_eq!(vm.more[0].used_idx(&vm.mem), 1);
    assert_eq!(vm.rx.used_idx(&vm.mem), 0);
    let (id, len) = vm.more[0].used_elem(&vm.mem, 0);
    assert_eq!(len as usize, 12 + f.len());
    let mut got = vec![0u8; f.len()];
    let a = vm.more[0].desc_addr(&vm.mem, id);
    vm.mem.read_slice(&mut got, GuestAddress(a + 12)).unwrap();
    assert_eq!(got, f);
}

#[test]
fn a_tcp_super_frame_from_the_guest_is_cut_into_checked_segments() {
    use etherparse::{PacketBuilder, SlicedPacket, TransportSlice};
    let path = socket_path("tso");
    let _ = std::fs::remove_file(&path);
    let mut b = VhostUser::listen(&path, &VhostUserOptions::default()).unwrap();
    let mut vm = Vm::boot(&path);
    wait("the rings run", || b.is_running());
    let payload: Vec<u8> = (0..3000u32).map(|i| (i % 251) as u8).collect();
    let mut sf = Vec::new();
    PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4([10, 0, 0, 5], [10, 0, 0, 6], 64)
        .tcp(40000, 5201, 1_000_000, 65535)
        .ack(7)
        .psh()
        .write(&mut sf, &payload)
        .unwrap();
    // virtio_net_hdr_v1: NEEDS_CSUM, GSO_TCPV4, hdr_len 54, gso_size
    // 1000, csum_start 34, csum_offset 16, num_buffers 0.
    let mut hdr = [0u8; 12];
    hdr[0] = 1;
    hdr[1] = 1;
    hdr[2..4].copy_from_slice(&54u16.to_le_bytes());
    hdr[4..6].copy_from_slice(&1000u16.to_le_bytes());
    hdr[6..8].copy_from_slice(&34u16.to_le_bytes());
    hdr[8..10].copy_from_slice(&16u16.to_le_bytes());
    // Header, headers + some payload, the rest: three descriptors.
    vm.tx.post(
        &vm.mem,
        &[
            (&hdr, 12, false),
            (&sf[..1054], 1054, false),
            (&sf[1054..], (sf.len() - 1054) as u32, false),
        ],
    );
    vm.tx.kick.write(1).unwrap();
    let mut segs: Vec<PacketBuf> = Vec::new();
    wait("the segments arrive", || {
        b.rx_burst(&mut segs, 2).unwrap();
        segs.len() >= 3
    });
    assert_eq!(segs.len(), 3);
    assert_eq!((b.stats().gso_frames, b.stats().gso_segments), (1, 3));
    let mut got = Vec::new();
    for (i, s) in segs.iter().enumerate() {
        let p = SlicedPacket::from_ethernet(s.as_slice()).unwrap();
        let Some(etherparse::NetSlice::Ipv4(_)) = &p.net else {
            panic!("segment {i} is not IPv4")
        };
        let Some(TransportSlice::Tcp(tcp)) = &p.transport else {
            panic!("segment {i} is not TCP")
        };
        assert_eq!(tcp.sequence_number(), 1_000_000 + 1000 * i as u32);
        assert_eq!(tcp.psh(), i == 2, "PSH only on the last segment");
        let c = sluice_test_support::assert_checksums(s.as_slice());
        assert!(c.ipv4_header, "segment {i} IPv4 header checksum");
        got.extend_from_slice(tcp.payload());
    }
    assert_eq!(got, payload);
}

/// TCP payload per segment in the super-frame tests: what a 1 500-byte
/// MTU carries with timestamps.
const MSS: u16 = 1448;
/// 45 segments: about 64 KiB of payload.
const SEGMENTS: usize = 45;

/// A TCP super-frame of `SEGMENTS` × `MSS` payload bytes as a port hands
/// it to a guest backend (IPv4 or IPv6; CWR set when `cwr`).
fn super_frame(v6: bool, cwr: bool) -> PacketBuf {
    use etherparse::PacketBuilder;
    let payload: Vec<u8> = (0..SEGMENTS * usize::from(MSS))
        .map(|i| (i % 253) as u8)
        .collect();
    let eth = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]);
    let ip = if v6 {
        eth.ipv6([0xfd; 16], [0xfe; 16], 64)
    } else {
        eth.ipv4([10, 0, 0, 6], [10, 0, 0, 5], 64)
    };
    let mut tcp = ip.tcp(5201, 40000, 7_000_000, 65535).ack(1).psh();
    if cwr {
        tcp = tcp.cwr();
    }
    let mut f = Vec::new();
    tcp.write(&mut f, &payload).unwrap();
    let mut p = PacketBuf::from_frame(&f);
    p.set_gso(Some(dataplane::Gso {
        mss: MSS,
        hdr_len: if v6 { 74 } else { 54 },
        v6,
        ecn: false,
    }));
    p
}

/// The TCP payload of `f` (an Ethernet frame), its sequence number and
/// whether all its checksums hold.
fn tcp_of(f: &[u8]) -> (Vec<u8>, u32) {
    use etherparse::{SlicedPacket, TransportSlice};
    let p = SlicedPacket::from_ethernet(f).unwrap();
    let Some(TransportSlice::Tcp(tcp)) = &p.transport else {
        panic!("not TCP")
    };
    (tcp.payload().to_vec(), tcp.sequence_number())
}

fn hdr_of(b: &[u8]) -> vmm_net::offload::VirtioNetHdr {
    vmm_net::offload::VirtioNetHdr::parse(&b[..12]).unwrap()
}

/// Joins the buffers of one merged frame: the header, then the frame.
fn join(bufs: &[Vec<u8>]) -> Vec<u8> {
    bufs.concat()
}

fn listen(tag: &str) -> (PathBuf, VhostUser) {
    let path = socket_path(tag);
    let _ = std::fs::remove_file(&path);
    let b = VhostUser::listen(&path, &VhostUserOptions::default()).unwrap();
    (path, b)
}

/// Checks a super-frame delivered whole: header fields as Linux fills
/// them, the frame as sent (with the TCP checksum left partial), and,
/// once the guest completes the checksum, every checksum right.
fn check_whole(whole: &[u8], sent: &PacketBuf, gso_type: u8, l4: u16) {
    let h = hdr_of(whole);
    assert_eq!(h.flags, 1, "NEEDS_CSUM");
    assert_eq!(h.gso_type, gso_type);
    assert_eq!(h.gso_size, MSS);
    assert_eq!(h.hdr_len, l4 + 20, "headers up to the TCP payload");
    assert_eq!((h.csum_start, h.csum_offset), (l4, 16));
    let mut f = whole[12..].to_vec();
    assert_eq!(f.len(), sent.len());
    let l4 = usize::from(l4);
    assert_eq!(f[..l4 + 16], sent.as_slice()[..l4 + 16]);
    assert_eq!(f[l4 + 18..], sent.as_slice()[l4 + 18..]);
    vmm_net::offload::complete_csum(&mut f, l4, 16).unwrap();
    sluice_test_support::assert_checksums(&f);
}

#[test]
fn a_super_frame_goes_whole_to_a_guest_that_took_tso_and_merged_buffers() {
    let (path, mut b) = listen("mrg");
    let mut vm = Vm::boot_with(&path, 256, NET_F_MRG_RXBUF | GUEST_OFFLOADS);
    wait("the rings run", || b.is_running());
    // Linux's mergeable buffers: one 4 KiB descriptor per chain.
    vm.rx.post_rx(&vm.mem, 40, 1, 4096);
    let sf = super_frame(false, false);
    let mut out = vec![sf.clone()];
    assert_eq!(b.tx_burst(&mut out).unwrap(), 1);
    let need = (12 + sf.len()).div_ceil(4096) as u16;
    assert_eq!(vm.rx.used_idx(&vm.mem), need, "published together");
    let bufs = vm.rx.received(&vm.mem, 0, need);
    assert_eq!(hdr_of(&bufs[0]).num_buffers, need);
    assert!(bufs[..bufs.len() - 1].iter().all(|b| b.len() == 4096));
    check_whole(&join(&bufs), &sf, 1, 34);
    let s = b.stats();
    assert_eq!(
        (s.tx_frames, s.tx_gso_frames, s.tx_buffers),
        (1, 1, u64::from(need))
    );
    assert_eq!(s.tx_gso_cut, 0);
    assert_eq!(vm.rx.call.read().unwrap(), 1, "one interrupt for the burst");

    // IPv6, and CWR: the ECN bit rides along (the guest took GUEST_ECN).
    let sf = super_frame(true, true);
    let mut out = vec![sf.clone()];
    assert_eq!(b.tx_burst(&mut out).unwrap(), 1);
    let end = vm.rx.used_idx(&vm.mem);
    let bufs = vm.rx.received(&vm.mem, need, end);
    check_whole(&join(&bufs), &sf, 0x80 | 4, 54);
    drop(vm);
}

#[test]
fn merged_buffers_of_many_small_descriptors_short_and_exact_chains() {
    let (path, mut b) = listen("layouts");
    let mut vm = Vm::boot_with(&path, 256, NET_F_MRG_RXBUF | GUEST_OFFLOADS);
    wait("the rings run", || b.is_running());
    // Chains of three 700-byte descriptors: a super-frame over ~94
    // descriptors; its last chain ends short.
    vm.rx.post_rx(&vm.mem, 40, 3, 700);
    let sf = super_frame(false, false);
    let mut out = vec![sf.clone()];
    assert_eq!(b.tx_burst(&mut out).unwrap(), 1);
    let need = (12 + sf.len()).div_ceil(2100) as u16;
    assert_eq!(vm.rx.used_idx(&vm.mem), need);
    let bufs = vm.rx.received(&vm.mem, 0, need);
    assert_eq!(hdr_of(&bufs[0]).num_buffers, need);
    assert_eq!(
        bufs.last().unwrap().len(),
        (12 + sf.len()) % 2100,
        "ends short"
    );
    check_whole(&join(&bufs), &sf, 1, 34);

    // The next frame starts on a fresh chain, not in the rest of the
    // short one; a plain frame that fits exactly two chains takes two.
    let f = frame(9, 2 * 2100 - 12);
    let mut out = vec![PacketBuf::from_frame(&f)];
    assert_eq!(b.tx_burst(&mut out).unwrap(), 1);
    assert_eq!(vm.rx.used_idx(&vm.mem), need + 2);
    let bufs = vm.rx.received(&vm.mem, need, need + 2);
    assert_eq!(bufs.iter().map(Vec::len).collect::<Vec<_>>(), [2100, 2100]);
    let h = hdr_of(&bufs[0]);
    assert_eq!((h.num_buffers, h.flags, h.gso_type), (2, 0, 0));
    assert_eq!(&join(&bufs)[12..], &f[..]);
    // A frame that fits one chain exactly takes one, and the one after
    // it the next.
    let f = frame(10, 2100 - 12);
    let mut out = vec![
        PacketBuf::from_frame(&f),
        PacketBuf::from_frame(&frame(11, 60)),
    ];
    assert_eq!(b.tx_burst(&mut out).unwrap(), 2);
    assert_eq!(vm.rx.used_idx(&vm.mem), need + 4);
    let bufs = vm.rx.received(&vm.mem, need + 2, need + 4);
    assert_eq!(bufs[0].len(), 2100);
    assert_eq!(&bufs[0][12..], &f[..]);
    assert_eq!((hdr_of(&bufs[1]).num_buffers, bufs[1].len()), (1, 72));
    drop(vm);
}

#[test]
fn too_few_buffers_take_nothing_and_are_counted() {
    let (path, mut b) = listen("few");
    let mut vm = Vm::boot_with(&path, 256, NET_F_MRG_RXBUF | GUEST_OFFLOADS);
    wait("the rings run", || b.is_running());
    // 10 × 4 KiB: not enough for the super-frame.
    vm.rx.post_rx(&vm.mem, 10, 1, 4096);
    // A pattern in the buffers, to see that nothing is written to them.
    let pattern = vec![0xa5u8; 10 * SLOT as usize];
    vm.mem
        .write_slice(&pattern, GuestAddress(vm.rx.bufs))
        .unwrap();
    let sf = super_frame(false, false);
    let mut out = vec![sf.clone(), PacketBuf::from_frame(&frame(1, 60))];
    assert_eq!(b.tx_burst(&mut out).unwrap(), 0, "nothing taken");
    assert_eq!(b.stats().tx_no_buffers, 2);
    assert_eq!(vm.rx.used_idx(&vm.mem), 0, "the used ring is untouched");
    assert_eq!(vm.rx.used_elem(&vm.mem, 0), (0, 0));
    let mut after = vec![0u8; pattern.len()];
    vm.mem
        .read_slice(&mut after, GuestAddress(vm.rx.bufs))
        .unwrap();
    assert!(after == pattern, "nothing written to the buffers");
    // More buffers: the frame goes, into the first buffers posted.
    vm.rx.post_rx(&vm.mem, 10, 1, 4096);
    let mut out = vec![sf.clone()];
    assert_eq!(b.tx_burst(&mut out).unwrap(), 1);
    let need = (12 + sf.len()).div_ceil(4096) as u16;
    assert_eq!(vm.rx.used_idx(&vm.mem), need);
    assert_eq!(vm.rx.used_elem(&vm.mem, 0).0, 0, "from the first chain");
    check_whole(&join(&vm.rx.received(&vm.mem, 0, need)), &sf, 1, 34);
    drop(vm);
}

/// Frames the guest receives for one ~64 KiB super-frame: 1 when it
/// took GUEST_TSO, `SEGMENTS` (each a checked TCP segment) when not.
#[test]
fn frames_per_64k_of_payload_with_and_without_guest_tso() {
    for (tag, features, frames) in [
        ("tso-on", NET_F_MRG_RXBUF | GUEST_OFFLOADS, 1),
        ("tso-off", NET_F_MRG_RXBUF | NET_F_GUEST_CSUM, SEGMENTS),
        // IPv6 to a guest that took only GUEST_TSO4: cut.
        (
            "v6-no-tso6",
            NET_F_MRG_RXBUF | NET_F_GUEST_CSUM | NET_F_GUEST_TSO4 | NET_F_GUEST_ECN,
            SEGMENTS,
        ),
        // GUEST_TSO but not GUEST_ECN: a frame with CWR is cut.
        (
            "no-ecn",
            NET_F_MRG_RXBUF | NET_F_GUEST_CSUM | NET_F_GUEST_TSO4,
            SEGMENTS,
        ),
    ] {
        let (path, mut b) = listen(tag);
        let mut vm = Vm::boot_with(&path, 256, features);
        wait("the rings run", || b.is_running());
        vm.rx.post_rx(&vm.mem, 60, 1, 4096);
        let sf = super_frame(tag == "v6-no-tso6", tag == "no-ecn");
        let mut out = vec![sf.clone()];
        assert_eq!(b.tx_burst(&mut out).unwrap(), 1, "{tag}");
        let n = vm.rx.used_idx(&vm.mem);
        let bufs = vm.rx.received(&vm.mem, 0, n);
        let mut got = Vec::new();
        let mut count = 0;
        let mut i = 0;
        while i < bufs.len() {
            let k = usize::from(hdr_of(&bufs[i]).num_buffers);
            let whole = join(&bufs[i..i + k]);
            if frames == 1 {
                check_whole(&whole, &sf, 1, 34);
                got.extend_from_slice(&tcp_of(&whole[12..]).0);
            } else {
                let h = hdr_of(&whole);
                assert_eq!((h.flags, h.gso_type), (0, 0), "{tag}: a plain segment");
                sluice_test_support::assert_checksums(&whole[12..]);
                let (p, seq) = tcp_of(&whole[12..]);
                assert_eq!(seq, 7_000_000 + (count * usize::from(MSS)) as u32);
                got.extend_from_slice(&p);
            }
            count += 1;
            i += k;
        }
        assert_eq!(count, frames, "{tag}: frames delivered per 64 KiB");
        assert_eq!(got, tcp_of(sf.as_slice()).0, "{tag}: the payload");
        let s = b.stats();
        assert_eq!(s.tx_frames, frames as u64, "{tag}");
        assert_eq!(s.tx_gso_cut, u64::from(frames > 1), "{tag}");
        drop(vm);
    }
}

/// Without MRG_RXBUF a super-frame must fit the one chain posted (Linux
/// posts big buffers then), else it is cut.
#[test]
fn without_merged_buffers_a_super_frame_fits_one_big_chain_or_is_cut() {
    let (path, mut b) = listen("big");
    let mut vm = Vm::boot_with(&path, 256, GUEST_OFFLOADS);
    wait("the rings run", || b.is_running());
    // Linux's "big packets": 17 × 4 KiB in one chain.
    vm.rx.post_rx(&vm.mem, 1, 17, 4096);
    let sf = super_frame(false, false);
    let mut out = vec![sf.clone()];
    assert_eq!(b.tx_burst(&mut out).unwrap(), 1);
    assert_eq!(vm.rx.used_idx(&vm.mem), 1);
    let bufs = vm.rx.received(&vm.mem, 0, 1);
    assert_eq!(hdr_of(&bufs[0]).num_buffers, 1);
    check_whole(&bufs[0], &sf, 1, 34);
    // Small buffers: cut, one segment per chain.
    vm.rx.post_rx(&vm.mem, SEGMENTS, 1, 1600);
    let mut out = vec![sf.clone()];
    assert_eq!(b.tx_burst(&mut out).unwrap(), 1);
    assert_eq!(vm.rx.used_idx(&vm.mem), 1 + SEGMENTS as u16);
    let s = b.stats();
    assert_eq!(
        (s.tx_gso_frames, s.tx_gso_cut, s.tx_gso_segments),
        (1, 1, SEGMENTS as u64)
    );
    for seg in vm.rx.received(&vm.mem, 1, 1 + SEGMENTS as u16) {
        assert_eq!(
            hdr_of(&seg),
            vmm_net::offload::VirtioNetHdr {
                num_buffers: 1,
                ..Default::default()
            }
        );
        sluice_test_support::assert_checksums(&seg[12..]);
    }
    drop(vm);
}

/// The malicious chains the hardening tests post, by name.
const BAD_CHAINS: [&str; 7] = [
    "a loop",
    "a next index past the table",
    "a length past guest memory",
    "an address whose end overflows",
    "a zero-length descriptor",
    "an indirect table longer than the queue",
    "a nested indirect table",
];

/// Posts bad chain `case` (see [`BAD_CHAINS`]) on `r`, with write-only
/// descriptors when `write`.
fn post_bad(r: &mut Ring, mem: &GuestMemoryMmap, case: usize, write: bool) {
    let q = r.q;
    let b = r.next_desc;
    let f = if write { F_WRITE } else { 0 };
    let ok = r.bufs + u64::from(b) * SLOT;
    let table = r.bufs + u64::from(q) * SLOT;
    let n1 = (b + 1) % q;
    let descs: Vec<(u64, u32, u16, u16)> = match case {
        0 => vec![(ok, 64, f | F_NEXT, n1), (ok, 64, f | F_NEXT, b)],
        1 => vec![(ok, 64, f | F_NEXT, q + 5)],
        2 => vec![(MEM as u64 - 10, 100, f, 0)],
        3 => vec![(u64::MAX - 10, 100, f, 0)],
        4 => vec![(ok, 64, f | F_NEXT, n1), (ok, 0, f, 0)],
        5 => {
            for i in 0..=q {
                Ring::put_desc(mem, table, i, ok, 64, f | F_NEXT, i + 1);
            }
            vec![(table, 16 * (u32::from(q) + 1), F_INDIRECT, 0)]
        }
        _ => {
            Ring::put_desc(mem, table, 0, table, 32, F_INDIRECT, 0);
            Ring::put_desc(mem, table, 1, ok, 64, f, 0);
            vec![(table, 32, F_INDIRECT, 0)]
        }
    };
    for (k, (addr, len, flags, next)) in descs.iter().enumerate() {
        Ring::put_desc(mem, r.desc, (b + k as u16) % q, *addr, *len, *flags, *next);
    }
    r.next_desc = (b + descs.len() as u16) % q;
    r.offer(mem, b);
}

#[test]
fn malicious_transmit_chains_are_refused_counted_and_given_back() {
    let (path, mut b) = listen("bad-tx");
    let mut vm = Vm::boot(&path);
    wait("the rings run", || b.is_running());
    let mut bufs: Vec<PacketBuf> = Vec::new();
    for (case, what) in BAD_CHAINS.iter().enumerate() {
        let errors = b.stats().ring_errors;
        let used = vm.tx.used_idx(&vm.mem);
        post_bad(&mut vm.tx, &vm.mem, case, false);
        vm.tx.kick.write(1).unwrap();
        wait(what, || {
            b.rx_burst(&mut bufs, 32).unwrap();
            vm.tx.used_idx(&vm.mem) != used
        });
        assert!(bufs.is_empty(), "{what}: no frame");
        assert_eq!(b.stats().ring_errors, errors + 1, "{what}: counted");
        assert_eq!(
            vm.tx.used_idx(&vm.mem),
            used.wrapping_add(1),
            "{what}: given back"
        );
        assert_eq!(
            vm.tx.used_elem(&vm.mem, used).1,
            0,
            "{what}: nothing written"
        );
        // The device goes on: a good frame after it arrives.
        guest_sends(&mut vm, &mut b, &frame(case as u8, 100));
    }
    assert_eq!(b.stats().rx_frames, BAD_CHAINS.len() as u64);
}

#[test]
fn malicious_receive_chains_are_refused_and_the_frame_takes_the_next_one() {
    for features in [0, NET_F_MRG_RXBUF] {
        let (path, mut b) = listen(if features == 0 {
            "bad-rx"
        } else {
            "bad-rx-mrg"
        });
        let mut vm = Vm::boot_with(&path, QSIZE, features);
        wait("the rings run", || b.is_running());
        for (case, what) in BAD_CHAINS.iter().enumerate() {
            let errors = b.stats().ring_errors;
            let used = vm.rx.used_idx(&vm.mem);
            post_bad(&mut vm.rx, &vm.mem, case, true);
            let good = vm.rx.post(&vm.mem, &[(&[], 2048, true)]);
            let f = frame(case as u8, 1000);
            let mut out = vec![PacketBuf::from_frame(&f)];
            assert_eq!(b.tx_burst(&mut out).unwrap(), 1, "{what}");
            assert_eq!(b.stats().ring_errors, errors + 1, "{what}: counted");
            assert_eq!(vm.rx.used_idx(&vm.mem), used.wrapping_add(2), "{what}");
            assert_eq!(
                vm.rx.used_elem(&vm.mem, used).1,
                0,
                "{what}: the bad chain, empty"
            );
            let (id, _) = vm.rx.used_elem(&vm.mem, used.wrapping_add(1));
            assert_eq!(id, u32::from(good), "{what}");
            let got = vm
                .rx
                .received(&vm.mem, used.wrapping_add(1), used.wrapping_add(2));
            assert_eq!(&got[0][12..], &f[..], "{what}");
        }
        // Only bad chains posted: the frame is not taken.
        let used = vm.rx.used_idx(&vm.mem);
        post_bad(&mut vm.rx, &vm.mem, 0, true);
        let mut out = vec![PacketBuf::from_frame(&frame(1, 60))];
        assert_eq!(b.tx_burst(&mut out).unwrap(), 0);
        assert_eq!(
            vm.rx.used_idx(&vm.mem),
            used.wrapping_add(1),
            "the bad chain given back"
        );
        drop(vm);
    }
}
