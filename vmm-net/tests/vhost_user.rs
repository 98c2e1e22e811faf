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

const MEM: usize = 1 << 20;
const QSIZE: u16 = 16;
const F_NEXT: u16 = 1;
const F_WRITE: u16 = 2;
const VERSION_1: u64 = 1 << 32;
const PROTOCOL_FEATURES: u64 = 1 << 30;
const EVENT_IDX: u64 = 1 << 29;
const NET_F_CSUM: u64 = 1;
const NET_F_MQ: u64 = 1 << 22;

/// One split virtqueue in guest memory, driven by the test.
struct Ring {
    desc: u64,
    avail: u64,
    used: u64,
    /// The first data buffer of this ring.
    bufs: u64,
    next_desc: u16,
    avail_idx: u16,
    kick: EventFd,
    call: EventFd,
}

impl Ring {
    fn new(base: u64) -> Ring {
        Ring {
            desc: base,
            avail: base + 16 * u64::from(QSIZE),
            used: base + 0x1000,
            bufs: base + 0x2000,
            next_desc: 0,
            avail_idx: 0,
            kick: EventFd::new(libc::EFD_NONBLOCK).unwrap(),
            call: EventFd::new(libc::EFD_NONBLOCK).unwrap(),
        }
    }

    /// Posts one chain of (data, write-only) pieces; data pieces are
    /// written to guest memory, write-only ones are `len` bytes of room.
    fn post(&mut self, mem: &GuestMemoryMmap, pieces: &[(&[u8], u32, bool)]) -> u16 {
        let head = self.next_desc;
        for (k, (data, len, write)) in pieces.iter().enumerate() {
            let i = self.next_desc;
            let addr = self.bufs + u64::from(i) * 0x1_0000 / u64::from(QSIZE) * 2;
            mem.write_slice(data, GuestAddress(addr)).unwrap();
            let mut flags = if *write { F_WRITE } else { 0 };
            if k + 1 < pieces.len() {
                flags |= F_NEXT;
            }
            let d = self.desc + 16 * u64::from(i);
            mem.write_obj(addr.to_le(), GuestAddress(d)).unwrap();
            mem.write_obj(len.to_le(), GuestAddress(d + 8)).unwrap();
            mem.write_obj(flags.to_le(), GuestAddress(d + 12)).unwrap();
            mem.write_obj(((i + 1) % QSIZE).to_le(), GuestAddress(d + 14))
                .unwrap();
            self.next_desc = (self.next_desc + 1) % QSIZE;
        }
        let slot = self.avail + 4 + 2 * u64::from(self.avail_idx % QSIZE);
        mem.write_obj(head.to_le(), GuestAddress(slot)).unwrap();
        self.avail_idx = self.avail_idx.wrapping_add(1);
        mem.write_obj(self.avail_idx.to_le(), GuestAddress(self.avail + 2))
            .unwrap();
        head
    }

    fn used_idx(&self, mem: &GuestMemoryMmap) -> u16 {
        u16::from_le(mem.read_obj(GuestAddress(self.used + 2)).unwrap())
    }

    /// The used element `n`: (descriptor head, length written).
    fn used_elem(&self, mem: &GuestMemoryMmap, n: u16) -> (u32, u32) {
        let e = self.used + 4 + 8 * u64::from(n % QSIZE);
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

    /// Sets the device up over `fe`, a connection either side made.
    fn set_up(mut fe: Frontend, pairs: usize) -> Vm {
        let fd = rustix::fs::memfd_create("vm", rustix::fs::MemfdFlags::CLOEXEC).unwrap();
        let file = File::from(fd);
        file.set_len(MEM as u64).unwrap();
        let region = MmapRegion::<()>::from_file(FileOffset::new(file, 0), MEM).unwrap();
        let region = GuestRegionMmap::new(region, GuestAddress(0)).unwrap();
        let info = VhostUserMemoryRegionInfo::from_guest_region(&region).unwrap();
        let mem = GuestMemoryMmap::from_regions(vec![region]).unwrap();
        fe.set_owner().unwrap();
        let offered = fe.get_features().unwrap();
        let mut want = VERSION_1 | PROTOCOL_FEATURES | EVENT_IDX | NET_F_CSUM;
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
            .map(|i| Ring::new(0x1_0000 + i * 0x3_0000))
            .collect();
        for (q, r) in rings.iter().enumerate() {
            fe.set_vring_num(q, QSIZE).unwrap();
            fe.set_vring_addr(
                q,
                &VringConfigData {
                    queue_max_size: QSIZE,
                    queue_size: QSIZE,
                    flags: 0,
                    desc_table_addr: info.userspace_addr + r.desc,
                    used_ring_addr: info.userspace_addr + r.used,
                    avail_ring_addr: info.userspace_addr + r.avail,
                    log_addr: None,
                },
            )
            .unwrap();
            fe.set_vring_base(q, 0).unwrap();
            fe.set_vring_call(q, &r.call).unwrap();
            fe.set_vring_kick(q, &r.kick).unwrap();
            fe.set_vring_enable(q, true).unwrap();
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
