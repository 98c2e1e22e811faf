//! Where frames come from and go to: one small trait for every backend
//! (vhost-user and TAP guests, AF_PACKET, DPDK and pcap uplinks), in
//! batches, and an in-memory backend that tests use in place of a device.

use dataplane::packet::{DEFAULT_CAPACITY, DEFAULT_HEADROOM};
use dataplane::PacketBuf;
use rustix::event::{eventfd, EventfdFlags};
use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// A source and sink of Ethernet frames, used in batches.
pub trait Backend: Send {
    /// Appends up to `max` received frames to `bufs`; returns how many.
    fn rx_burst(&mut self, bufs: &mut Vec<PacketBuf>, max: usize) -> io::Result<usize>;
    /// Sends the frames (all, or as many as the device takes: it returns
    /// how many). Frames not taken are the caller's to count as dropped.
    fn tx_burst(&mut self, pkts: &mut Vec<PacketBuf>) -> io::Result<usize>;
    /// A file descriptor that becomes readable when frames wait, so an
    /// idle worker can sleep in `poll(2)` instead of spinning. `None`:
    /// the backend cannot wake anyone (the worker polls it on a timer).
    fn poll_fd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        None
    }
    /// Whether the backend never has a frame to give (a port whose guest
    /// is not attached): an idle worker need not wait on it, so it does
    /// not need a [`poll_fd`](Backend::poll_fd) to sleep long.
    fn never_receives(&self) -> bool {
        false
    }
    /// Whether `tx_burst` takes TCP super-frames (frames carrying a
    /// [`Gso`](dataplane::Gso)): whole, for a device that segments, or
    /// cut by the backend itself. When false, the switch cuts them first
    /// ([`offload::cut_super_frames`](crate::offload::cut_super_frames)).
    fn takes_super_frames(&self) -> bool {
        false
    }
    /// The device's own drop counters, cumulative, by stable name: what
    /// it lost or refused that the switch never saw (a socket's full
    /// ring, a guest that posted no buffers, a NIC's missed frames). Read
    /// by the control plane between bursts, never per packet; a backend
    /// may make a system call here.
    fn device_drops(&mut self) -> Vec<(&'static str, u64)> {
        Vec::new()
    }
    /// The device's other counters, cumulative, by stable name: work it
    /// did that is not a drop (a socket's UDP GSO sends, the UDP
    /// aggregates it split). Read like [`Backend::device_drops`].
    fn device_counters(&mut self) -> Vec<(&'static str, u64)> {
        Vec::new()
    }
    /// Whether the device's link is up (carrier; a NIC's link status), as
    /// far as the backend knows now. Asked by the worker every few
    /// milliseconds, between bursts, never per packet; it must not block
    /// (a backend reads a non-blocking event socket, or a status the
    /// driver keeps). Default: always up.
    fn link_up(&mut self) -> bool {
        true
    }
}

/// A frame offered to sluice by a device's far side, and its
/// segmentation if it is a super-frame.
pub type Offered = (Vec<u8>, Option<dataplane::Gso>);

/// Queues shared between a backend and the test that plays the device's
/// far side: what the far side sends is `to_sluice`; what sluice sends
/// lands in `from_sluice`.
///
/// Like a device, the wire has a descriptor that is readable while frames
/// wait for sluice (an eventfd), so a worker whose devices are all wires
/// (tests, the demo) sleeps in `poll(2)` when idle instead of waking every
/// millisecond.
#[derive(Clone)]
pub struct Wire {
    /// Frames for sluice, each maybe a super-frame (see [`Wire::send_super_frame`]).
    /// Private: every push goes through [`Wire::send`], which signals.
    to_sluice: Arc<Mutex<VecDeque<Offered>>>,
    pub from_sluice: Arc<Mutex<VecDeque<Vec<u8>>>>,
    /// The device vouches for the outer L4 checksum of what it hands
    /// over (as a NIC that verified it does; see
    /// [`PacketBuf::l4_csum_valid`]).
    pub vouches: Arc<std::sync::atomic::AtomicBool>,
    /// The wire's link state, as its backend reports it
    /// ([`Backend::link_up`]): cleared by a test that pulls the cable.
    link: Arc<AtomicBool>,
    ready: Arc<Ready>,
}

/// The wire's "frames wait" signal. `armed` (read and written only under
/// the `to_sluice` lock) says the eventfd holds a count, so a steady
/// stream writes it once, not once per frame, and the receiver reads it
/// only to clear it.
struct Ready {
    /// `None` when no eventfd could be made: the worker then polls the
    /// wire on its short timer, as for any backend without a descriptor.
    fd: Option<OwnedFd>,
    armed: AtomicBool,
}

impl Default for Wire {
    fn default() -> Self {
        let fd = eventfd(0, EventfdFlags::NONBLOCK | EventfdFlags::CLOEXEC).ok();
        Wire {
            to_sluice: Arc::default(),
            from_sluice: Arc::default(),
            vouches: Arc::default(),
            link: Arc::new(AtomicBool::new(true)),
            ready: Arc::new(Ready {
                fd,
                armed: AtomicBool::new(false),
            }),
        }
    }
}

impl Wire {
    pub fn new() -> Self {
        Self::default()
    }

    /// The far side sends a frame.
    pub fn send(&self, frame: &[u8]) {
        self.offer((frame.to_vec(), None));
    }

    /// The far side hands over a TCP super-frame, as a device with
    /// segmentation offload would.
    pub fn send_super_frame(&self, frame: &[u8], gso: dataplane::Gso) {
        self.offer((frame.to_vec(), Some(gso)));
    }

    /// Queues a frame and, if the signal was clear, raises it. Both under
    /// the queue's lock, so the receiver never clears a signal that
    /// stands for a frame it has not taken.
    fn offer(&self, o: Offered) {
        let mut q = lock(&self.to_sluice);
        q.push_back(o);
        if !self.ready.armed.swap(true, Ordering::Relaxed) {
            if let Some(fd) = &self.ready.fd {
                // A full counter (EAGAIN) is still readable.
                let _ = rustix::io::write(fd, &1u64.to_ne_bytes());
            }
        }
    }

    /// From now on the device says it verified the checksums (or not).
    pub fn vouch_checksums(&self, yes: bool) {
        self.vouches
            .store(yes, std::sync::atomic::Ordering::Relaxed);
    }

    /// The link goes down (false) or comes back (true).
    pub fn set_link(&self, up: bool) {
        self.link.store(up, Ordering::Relaxed);
    }

    /// Everything sluice has sent so far, oldest first.
    pub fn take(&self) -> Vec<Vec<u8>> {
        lock(&self.from_sluice).drain(..).collect()
    }

    /// A backend on this wire.
    pub fn backend(&self) -> Memory {
        Memory { wire: self.clone() }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The queues stay consistent whatever a panicking holder did.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The in-memory backend (the test double of a device).
pub struct Memory {
    wire: Wire,
}

impl Backend for Memory {
    fn rx_burst(&mut self, bufs: &mut Vec<PacketBuf>, max: usize) -> io::Result<usize> {
        let mut q = lock(&self.wire.to_sluice);
        let n = q.len().min(max);
        let vouched = self.wire.vouches.load(std::sync::atomic::Ordering::Relaxed);
        for (f, gso) in q.drain(..n) {
            // Buffers from the process's pools, as a device backend's
            // (where the switch gives back those of dropped frames).
            let mut p = if f.len() <= DEFAULT_CAPACITY - DEFAULT_HEADROOM {
                SharedPool::get()
            } else {
                BigPool::get()
            };
            if p.set_frame(&f).is_err() {
                p = PacketBuf::from_frame(&f);
            }
            p.set_gso(gso);
            p.set_l4_csum_valid(vouched);
            bufs.push(p);
        }
        let ready = &self.wire.ready;
        if q.is_empty() && ready.armed.load(Ordering::Relaxed) {
            if let Some(fd) = &ready.fd {
                let mut b = [0u8; 8];
                let _ = rustix::io::read(fd, &mut b);
            }
            ready.armed.store(false, Ordering::Relaxed);
        }
        Ok(n)
    }

    fn poll_fd(&self) -> Option<BorrowedFd<'_>> {
        self.wire.ready.fd.as_ref().map(|f| f.as_fd())
    }

    fn tx_burst(&mut self, pkts: &mut Vec<PacketBuf>) -> io::Result<usize> {
        let n = pkts.len();
        let mut out = lock(&self.wire.from_sluice);
        for p in pkts.drain(..) {
            out.push_back(p.as_slice().to_vec());
            SharedPool::put(p);
        }
        Ok(n)
    }

    fn link_up(&mut self) -> bool {
        self.wire.link.load(Ordering::Relaxed)
    }
}

/// Packet buffers kept for reuse, so a backend's receive path allocates
/// only when no buffer has come back yet.
///
/// A device backend puts every buffer it has finished transmitting back
/// here and takes its receive buffers from here: in a steady two-way flow
/// the same buffers go round and the hot path allocates nothing. Traffic
/// that flows one way (all RX here, all TX on another backend) goes
/// round through the process's [`SharedPool`]: a full pool passes what
/// it is given there, an empty one takes from there before allocating,
/// so a steady one-way flow allocates nothing either. Buffers smaller than
/// [`DEFAULT_CAPACITY`](dataplane::packet::DEFAULT_CAPACITY) are not kept:
/// every buffer handed out can hold a full jumbo frame.
#[derive(Debug, Default)]
pub struct BufPool {
    bufs: Vec<PacketBuf>,
    limit: usize,
}

impl BufPool {
    /// A pool that keeps at most `limit` buffers (the memory it may pin:
    /// `limit` × ~9.5 KiB).
    pub fn new(limit: usize) -> BufPool {
        BufPool {
            bufs: Vec::with_capacity(limit),
            limit,
        }
    }

    /// An empty buffer of at least the default capacity, with the default
    /// headroom.
    pub fn get(&mut self) -> PacketBuf {
        use dataplane::packet::DEFAULT_HEADROOM;
        match self.bufs.pop() {
            Some(mut b) => {
                b.reset(DEFAULT_HEADROOM);
                b
            }
            None => SharedPool::get(),
        }
    }

    /// Keeps `b` for reuse: here, or in the process's [`SharedPool`] when
    /// this pool is full (it is freed when both are, or when it is too
    /// small). A super-frame buffer goes back to the process's
    /// [`BigPool`] instead, whoever's pool it reaches.
    pub fn put(&mut self, b: PacketBuf) {
        let capacity = b.capacity();
        if capacity >= BIG_CAPACITY {
            BigPool::put(b);
        } else if capacity >= dataplane::packet::DEFAULT_CAPACITY {
            if self.bufs.len() < self.limit {
                self.bufs.push(b);
            } else {
                SharedPool::put(b);
            }
        }
    }

    /// Buffers held now.
    pub fn len(&self) -> usize {
        self.bufs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bufs.is_empty()
    }
}

/// Standard buffers kept process-wide, at most this many (≈ 38 MiB).
const SHARED_POOL_LIMIT: usize = 4096;

/// Standard-size buffers ([`DEFAULT_CAPACITY`](dataplane::packet::DEFAULT_CAPACITY))
/// shared by every backend of the process, where one-way traffic's
/// buffers go round: the backend that transmits has more than it needs,
/// the one that receives fewer. A lock-free bounded queue: one push or
/// pop per buffer that crosses, no lock.
pub struct SharedPool;

fn shared_pool() -> &'static crossbeam_queue::ArrayQueue<PacketBuf> {
    static POOL: std::sync::OnceLock<crossbeam_queue::ArrayQueue<PacketBuf>> =
        std::sync::OnceLock::new();
    POOL.get_or_init(|| crossbeam_queue::ArrayQueue::new(SHARED_POOL_LIMIT))
}

impl SharedPool {
    /// An empty buffer of the default capacity and headroom (allocated
    /// only when none waits).
    pub fn get() -> PacketBuf {
        use dataplane::packet::{DEFAULT_CAPACITY, DEFAULT_HEADROOM};
        match shared_pool().pop() {
            Some(mut b) => {
                b.reset(DEFAULT_HEADROOM);
                b
            }
            None => PacketBuf::new(DEFAULT_HEADROOM, DEFAULT_CAPACITY),
        }
    }

    /// Keeps `b` for another backend (frees it when the pool is full or
    /// `b` is smaller than the default capacity).
    pub fn put(b: PacketBuf) {
        if b.capacity() >= BIG_CAPACITY {
            BigPool::put(b);
        } else if b.capacity() >= dataplane::packet::DEFAULT_CAPACITY {
            let _ = shared_pool().push(b);
        }
    }
}

/// The capacity of a super-frame buffer: the largest frame a device
/// hands over (a 64 KiB IP super-frame, Ethernet and two VLAN tags,
/// rounded up) after the default headroom.
pub const BIG_CAPACITY: usize = dataplane::packet::DEFAULT_HEADROOM + SUPER_FRAME_MAX;

/// The largest frame a device with segmentation offload hands over.
pub const SUPER_FRAME_MAX: usize = 65536 + 512;

/// Super-frame buffers kept process-wide: at most this many (≈ 16 MiB).
const BIG_POOL_LIMIT: usize = 256;

/// Buffers for whole TCP super-frames (see [`dataplane::Gso`]), shared by
/// every backend of the process. A super-frame read whole by one worker's
/// TAP may leave by another worker's uplink, cut into segments: the
/// buffer comes back here (through [`BufPool::put`]) rather than into
/// the pool of a backend that only needs small ones. A lock-free bounded
/// queue: one push and one pop per super-frame (≈ 45 packets), no lock.
pub struct BigPool;

fn big_pool() -> &'static crossbeam_queue::ArrayQueue<PacketBuf> {
    static POOL: std::sync::OnceLock<crossbeam_queue::ArrayQueue<PacketBuf>> =
        std::sync::OnceLock::new();
    POOL.get_or_init(|| crossbeam_queue::ArrayQueue::new(BIG_POOL_LIMIT))
}

impl BigPool {
    /// An empty super-frame buffer with the default headroom (allocated
    /// only when none has come back yet).
    pub fn get() -> PacketBuf {
        use dataplane::packet::DEFAULT_HEADROOM;
        match big_pool().pop() {
            Some(mut b) => {
                b.reset(DEFAULT_HEADROOM);
                b
            }
            None => PacketBuf::new(DEFAULT_HEADROOM, BIG_CAPACITY),
        }
    }

    /// Keeps `b` for reuse (frees it when the pool is full).
    pub fn put(b: PacketBuf) {
        let _ = big_pool().push(b);
    }
}

/// A device that sends nothing and takes nothing: a port whose guest is
/// not attached. Frames sent to it are reported as not taken, so the
/// switch counts them as dropped.
pub struct Null;

impl Backend for Null {
    fn rx_burst(&mut self, _bufs: &mut Vec<PacketBuf>, _max: usize) -> io::Result<usize> {
        Ok(0)
    }

    fn tx_burst(&mut self, _pkts: &mut Vec<PacketBuf>) -> io::Result<usize> {
        Ok(0)
    }

    fn never_receives(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn readable(fd: BorrowedFd<'_>) -> bool {
        let mut fds = [rustix::event::PollFd::new(
            &fd,
            rustix::event::PollFlags::IN,
        )];
        let zero = rustix::event::Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        rustix::event::poll(&mut fds, Some(&zero)).unwrap() > 0
    }

    /// The wire's descriptor is readable exactly while frames wait: a
    /// worker sleeping on it wakes for a frame and sleeps again once it
    /// has taken them all.
    #[test]
    fn a_wire_is_readable_while_frames_wait() {
        let w = Wire::new();
        let mut b = w.backend();
        let fd = b.poll_fd().expect("a wire has a descriptor");
        assert!(!readable(fd), "nothing sent yet");
        w.send(&[1; 60]);
        w.send_super_frame(
            &[2; 60],
            dataplane::Gso {
                mss: 1448,
                hdr_len: 54,
                v6: false,
                ecn: false,
            },
        );
        w.send(&[3; 60]);
        assert!(readable(b.poll_fd().unwrap()));
        let mut got = Vec::new();
        assert_eq!(b.rx_burst(&mut got, 2).unwrap(), 2);
        assert!(readable(b.poll_fd().unwrap()), "one frame still waits");
        assert_eq!(b.rx_burst(&mut got, 8).unwrap(), 1);
        assert!(!readable(b.poll_fd().unwrap()), "all taken");
        // An empty poll of a quiet wire leaves it quiet; the next frame
        // raises it again.
        assert_eq!(b.rx_burst(&mut got, 8).unwrap(), 0);
        assert!(!readable(b.poll_fd().unwrap()));
        w.send(&[4; 60]);
        assert!(readable(b.poll_fd().unwrap()));
        assert!(!w.backend().never_receives());
        assert!(Null.never_receives());
    }
    use dataplane::packet::{DEFAULT_CAPACITY, DEFAULT_HEADROOM};

    #[test]
    fn the_pool_recycles_full_size_buffers_up_to_its_limit() {
        let mut pool = BufPool::new(2);
        let mut a = pool.get();
        assert_eq!(a.headroom(), DEFAULT_HEADROOM);
        assert_eq!(a.tailroom(), DEFAULT_CAPACITY - DEFAULT_HEADROOM);
        a.set_frame(&[1, 2, 3]).unwrap();
        a.pull_front(1).unwrap();
        let ptr = a.as_slice().as_ptr();
        pool.put(a);
        pool.put(PacketBuf::new(0, 64)); // too small: freed
        assert_eq!(pool.len(), 1);
        let b = pool.get();
        assert!(
            b.is_empty() && b.headroom() == DEFAULT_HEADROOM,
            "reset for reuse"
        );
        assert_eq!(
            b.as_slice().as_ptr(),
            ptr.wrapping_sub(1),
            "the same memory"
        );
        for _ in 0..3 {
            pool.put(PacketBuf::from_frame(&[0; 60]));
        }
        assert_eq!(pool.len(), 2, "the limit holds");
    }
}
