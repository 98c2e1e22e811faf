//! The TAP guest backend: a guest (or a network namespace standing in for
//! one) behind a Linux TAP interface, with virtio-net offloads.
//!
//! The TAP is opened with `IFF_TAP | IFF_NO_PI | IFF_VNET_HDR |
//! IFF_MULTI_QUEUE`, a 12-byte virtio-net header (`TUNSETVNETHDRSZ`; the
//! `virtio_net_hdr_v1` layout, see [`offload::VNET_HDR_LEN`]) in
//! little-endian mode (`TUNSETVNETLE`), and `TUNSETOFFLOAD` with
//! `TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN`: the kernel on
//! the guest side therefore sends TCP super-frames of up to 64 KiB and
//! leaves checksums partial, which is what a virtio-net guest with
//! offloads does and what makes bulk TCP cheap for the sender. Every queue
//! file is non-blocking.
//!
//! What a port receives (guest → sluice, [`Backend::rx_burst`]): frames
//! on the wire's terms, a partial checksum completed, except TCP
//! super-frames, which are handed over whole (up to
//! [`GSO_MAX_FRAME`]) and marked with
//! their [`Gso`](dataplane::Gso): the port processes 64 KiB of a stream
//! once, and the switch or the uplink cuts it into segments, encapsulation
//! included, only where a device cannot take it whole. With
//! `keep_super_frames: false`, or a super-frame larger than that, it is
//! cut here into `gso_size` segments with every length, sequence number,
//! flag and checksum right ([`offload`]). UDP segmentation is never
//! enabled on the TAP, so the kernel does not send it; a frame asking for
//! it anyway is dropped and counted (`udp_gso`), like every other frame
//! refused (by reason, in [`TapStats::rx_drops`]).
//!
//! What the guest receives (sluice → guest, [`Backend::tx_burst`]):
//! - a super-frame (from a guest on this host) whole, with a virtio-net
//!   header asking for segmentation and a partial checksum
//!   ([`offload::offer_whole`]): the guest's kernel takes it as one;
//! - a run of segments of one TCP flow from the wire, coalesced into one
//!   such super-frame ([`gro`], with `coalesce`, the default): each
//!   segment's checksum is verified before it joins, so telling the guest
//!   the checksum is partial hides no damage;
//! - anything else with an all-zero header: no offload asked, and in
//!   particular *not* `VIRTIO_NET_HDR_F_DATA_VALID`. sluice rewrites
//!   headers with incremental checksum updates and never verifies an L4
//!   checksum on that path, so claiming "valid" would make the guest
//!   accept a frame damaged anywhere on the path; the guest checks it.
//!
//! Costs: one `readv` per frame read (into the packet buffer directly; a
//! super-frame, which does not fit one, spills into a 64 KiB buffer from
//! the process's [`BigPool`] and is handed over in it) and one `writev`
//! per frame, super-frame or run sent (headers and payloads as pieces:
//! nothing is copied). Receive buffers come from a [`BufPool`] that
//! `tx_burst` refills with the buffers it has sent; see there for when
//! that still allocates. When super-frames are cut here, their segments
//! are produced lazily, a burst at a time, so one 64 KiB frame never
//! overruns `max`.
//!
//! The interface: [`Tap::open`] creates a TAP named `name` that disappears
//! when its last queue closes, or attaches to an existing TAP of that name
//! (for example one made with `ip tuntap add dev NAME mode tap multi_queue
//! vnet_hdr`, or by [`Tap::open_with`] with `persist`). A persistent TAP
//! stays until `ip link del NAME`.

use crate::backend::{Backend, BigPool, BufPool, SUPER_FRAME_MAX};
use crate::gro;
use crate::offload::{self, OffloadDrop, OffloadDrops, Prepared, Tso, VirtioNetHdr, VNET_HDR_LEN};
use crate::sys;
use dataplane::packet::{DEFAULT_CAPACITY, DEFAULT_HEADROOM, GSO_MAX_FRAME};
use dataplane::PacketBuf;
use serde::Serialize;
use std::fs::File;
use std::io::{self, IoSlice, IoSliceMut, Read, Write};

/// The most queues a TAP may have (the kernel's `MAX_TAP_QUEUES`).
pub const MAX_QUEUES: usize = 256;

/// The largest segment (or plain frame) a pool buffer holds.
const MAX_SEGMENT: usize = DEFAULT_CAPACITY - DEFAULT_HEADROOM;

/// Receive buffers kept per queue: two bursts' worth of the largest burst
/// a worker uses, so a steady flow recycles without allocating.
const POOL_LIMIT: usize = 512;

/// The header sent with every frame to the guest: no offloads (see the
/// module docs for why not DATA_VALID).
const TX_VNET_HDR: [u8; VNET_HDR_LEN] = [0; VNET_HDR_LEN];

/// How to open a TAP.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TapOptions {
    /// Queues to open (1..=256); each is a [`TapQueue`], for one worker.
    pub queues: usize,
    /// Keep the interface after the last queue closes (`TUNSETPERSIST`).
    pub persist: bool,
    /// Hand TCP super-frames over whole, marked with their
    /// [`Gso`](dataplane::Gso), for the port to process once and the
    /// switch to cut at the wire (true, the default), or cut them here
    /// into segments first (false).
    pub keep_super_frames: bool,
    /// Write runs of one TCP flow's segments to the guest as one
    /// super-frame (software receive offload, see [`gro`]).
    pub coalesce: bool,
}

impl Default for TapOptions {
    fn default() -> Self {
        TapOptions {
            queues: 1,
            persist: false,
            keep_super_frames: true,
            coalesce: true,
        }
    }
}

/// Counters of one TAP queue. RX is guest → sluice.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TapStats {
    /// Frames handed to the caller (each segment of a super-frame counts).
    pub rx_frames: u64,
    pub rx_bytes: u64,
    /// Super-frames read, the segments cut from those cut here, and
    /// those handed over whole (counted in `rx_frames` as one frame).
    pub gso_frames: u64,
    pub gso_segments: u64,
    pub gso_whole: u64,
    /// Frames whose partial checksum was completed.
    pub csum_completed: u64,
    /// Frames refused on receive, by reason.
    pub rx_drops: OffloadDrops,
    /// Frames written to the guest, of which super-frames handed over
    /// whole for the guest to take as one; super-frames refused.
    pub tx_frames: u64,
    pub tx_bytes: u64,
    pub tx_gso_frames: u64,
    /// Segments of one TCP flow written as one super-frame (each counts
    /// in `tx_frames` too).
    pub tx_coalesced: u64,
    pub tx_drops: OffloadDrops,
    /// Frames the TAP refused with an error other than "full" (they count
    /// as taken: retrying them would fail the same way).
    pub tx_errors: u64,
}

/// The constructors of a TAP device; what they return are its queues.
pub struct Tap;

impl Tap {
    /// Opens `queues` queues of the TAP `name` (created, or attached to
    /// when it exists) with default options.
    pub fn open(name: &str, queues: usize) -> io::Result<Vec<TapQueue>> {
        Tap::open_with(
            name,
            &TapOptions {
                queues,
                ..TapOptions::default()
            },
        )
    }

    /// Opens the TAP `name` as `opts` says.
    pub fn open_with(name: &str, opts: &TapOptions) -> io::Result<Vec<TapQueue>> {
        check_name(name)?;
        if opts.queues == 0 || opts.queues > MAX_QUEUES {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "TAP queue count {} is out of range 1..={MAX_QUEUES}",
                    opts.queues
                ),
            ));
        }
        let flags = libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_VNET_HDR | libc::IFF_MULTI_QUEUE;
        let offloads = libc::TUN_F_CSUM | libc::TUN_F_TSO4 | libc::TUN_F_TSO6 | libc::TUN_F_TSO_ECN;
        let mut queues = Vec::with_capacity(opts.queues);
        let mut ifname = name.to_string();
        for i in 0..opts.queues {
            // Later queues attach by the name the first one got.
            let (file, actual) = sys::tap::open_queue(&ifname, flags)?;
            sys::tap::set_vnet_hdr_sz(&file, VNET_HDR_LEN)?;
            sys::tap::set_vnet_le(&file)?;
            sys::tap::set_offload(&file, offloads)?;
            if i == 0 && opts.persist {
                sys::tap::set_persist(&file, true)?;
            }
            ifname = actual;
            let mut q = TapQueue::new(file, ifname.clone(), i);
            q.keep_super_frames = opts.keep_super_frames;
            q.coalesce = opts.coalesce;
            queues.push(q);
        }
        Ok(queues)
    }
}

impl Tap {
    /// Removes a persistent TAP (one opened with `persist`): clears the
    /// flag through a fresh queue, so the device goes when that queue
    /// closes. A TAP that does not exist is not an error. The name is
    /// looked up in the calling thread's network namespace (not through
    /// `/sys`, which shows the namespace it was mounted in: the wrong one
    /// for a thread that entered another with [`crate::netns::enter`]).
    pub fn remove(name: &str) -> io::Result<()> {
        check_name(name)?;
        if sys::packet::ifindex(name).is_err() {
            return Ok(());
        }
        for q in Tap::open(name, 1)? {
            sys::tap::set_persist(&q.file, false)?;
        }
        Ok(())
    }
}

fn check_name(name: &str) -> io::Result<()> {
    let why = if name.is_empty() {
        Some("it is empty")
    } else if name.len() >= libc::IFNAMSIZ {
        Some("it is longer than 15 bytes")
    } else if name
        .bytes()
        .any(|b| b == b'/' || b == 0 || b.is_ascii_whitespace())
    {
        Some("it contains '/', NUL or white space")
    } else {
        None
    };
    match why {
        Some(why) => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("TAP name '{name}' is invalid: {why}"),
        )),
        None => Ok(()),
    }
}

/// A super-frame being cut, a burst at a time.
struct Pending {
    tso: Tso,
    len: usize,
    next: usize,
}

/// One queue of a TAP: a [`Backend`] for one worker.
pub struct TapQueue {
    file: File,
    name: String,
    queue: usize,
    /// The virtio-net header of the frame being read.
    rx_hdr: [u8; VNET_HDR_LEN],
    /// Where a frame longer than a packet buffer continues, and where a
    /// super-frame is put together (to be handed over whole, or cut).
    big: PacketBuf,
    keep_super_frames: bool,
    coalesce: bool,
    pending: Option<Pending>,
    pool: BufPool,
    /// A read error met after frames were received: returned next time,
    /// so the frames are not lost with it.
    deferred: Option<io::Error>,
    stats: TapStats,
}

impl TapQueue {
    fn new(file: File, name: String, queue: usize) -> TapQueue {
        TapQueue {
            file,
            name,
            queue,
            rx_hdr: [0; VNET_HDR_LEN],
            big: BigPool::get(),
            keep_super_frames: true,
            coalesce: true,
            pending: None,
            pool: BufPool::new(POOL_LIMIT),
            deferred: None,
            stats: TapStats::default(),
        }
    }

    /// The interface's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// This queue's index (0-based, in opening order).
    pub fn queue(&self) -> usize {
        self.queue
    }

    pub fn stats(&self) -> TapStats {
        self.stats
    }

    /// Hands out the next segment of the super-frame being cut.
    fn next_segment(&mut self, bufs: &mut Vec<PacketBuf>) {
        let Some(p) = self.pending.as_mut() else {
            return;
        };
        let mut out = self.pool.get();
        match p
            .tso
            .write_segment(&self.big.as_slice()[..p.len], p.next, &mut out)
        {
            Ok(()) => {
                self.stats.gso_segments += 1;
                self.stats.rx_frames += 1;
                self.stats.rx_bytes += out.len() as u64;
                bufs.push(out);
                p.next += 1;
                if p.next == p.tso.count() {
                    self.pending = None;
                }
            }
            Err(r) => {
                // Not reachable after `Tso::new` accepted the frame; if it
                // were, the rest of the super-frame goes with a reason.
                self.stats.rx_drops.count(r);
                self.pool.put(out);
                self.pending = None;
            }
        }
    }

    /// Reads one frame. `Ok(true)`: a frame was read (and delivered, or
    /// started segmenting, or dropped with a reason); `Ok(false)`: none
    /// waits.
    fn read_one(&mut self, bufs: &mut Vec<PacketBuf>) -> io::Result<bool> {
        let mut pkt = self.pool.get();
        let room = pkt.tailroom().min(MAX_SEGMENT);
        self.big.reset(DEFAULT_HEADROOM);
        let read = match (pkt.push_back(room), self.big.push_back(SUPER_FRAME_MAX)) {
            (Ok(tail), Ok(big)) => {
                let mut iov = [
                    IoSliceMut::new(&mut self.rx_hdr),
                    IoSliceMut::new(tail),
                    IoSliceMut::new(&mut big[room..]),
                ];
                (&self.file).read_vectored(&mut iov)
            }
            _ => Ok(0),
        };
        let n = match read {
            Ok(n) => n,
            Err(e) => {
                self.pool.put(pkt);
                return match e.kind() {
                    io::ErrorKind::WouldBlock => Ok(false),
                    io::ErrorKind::Interrupted => Ok(true),
                    _ => Err(e),
                };
            }
        };
        let Some(len) = n.checked_sub(VNET_HDR_LEN) else {
            self.pool.put(pkt);
            if n == 0 {
                return Ok(false);
            }
            self.stats.rx_drops.count(OffloadDrop::BadVnetHdr);
            return Ok(true);
        };
        if n >= VNET_HDR_LEN + SUPER_FRAME_MAX {
            // The read filled every byte offered: the frame may be cut off.
            self.pool.put(pkt);
            self.stats.rx_drops.count(OffloadDrop::Truncated);
            return Ok(true);
        }
        let hdr = match VirtioNetHdr::parse(&self.rx_hdr) {
            Ok(h) => h,
            Err(r) => {
                self.pool.put(pkt);
                self.stats.rx_drops.count(r);
                return Ok(true);
            }
        };
        if !hdr.is_gso() {
            if len > room {
                self.pool.put(pkt);
                self.stats.rx_drops.count(OffloadDrop::Oversize);
                return Ok(true);
            }
            pkt.truncate(len);
            match offload::prepare(pkt.as_mut_slice(), &hdr, MAX_SEGMENT) {
                Ok(Prepared::Frame { csum_completed }) => {
                    self.stats.csum_completed += u64::from(csum_completed);
                    self.stats.rx_frames += 1;
                    self.stats.rx_bytes += len as u64;
                    bufs.push(pkt);
                }
                // `prepare` cuts only GSO frames.
                Ok(Prepared::Segment(_)) => self.pool.put(pkt),
                Err(r) => {
                    self.stats.rx_drops.count(r);
                    self.pool.put(pkt);
                }
            }
            return Ok(true);
        }
        // A super-frame: make it contiguous in `big` (the part that
        // landed in the packet buffer moves over), then hand it over
        // whole or cut it from there.
        let head = len.min(room);
        self.big.as_mut_slice()[..head].copy_from_slice(&pkt.as_slice()[..head]);
        self.big.truncate(len);
        self.pool.put(pkt);
        match offload::prepare(self.big.as_mut_slice(), &hdr, MAX_SEGMENT) {
            Ok(Prepared::Segment(tso)) if self.keep_super_frames && len <= GSO_MAX_FRAME => {
                self.stats.gso_frames += 1;
                self.stats.gso_whole += 1;
                self.stats.rx_frames += 1;
                self.stats.rx_bytes += len as u64;
                let mut whole = std::mem::replace(&mut self.big, BigPool::get());
                whole.set_gso(Some(tso.gso(hdr.gso_type)));
                bufs.push(whole);
            }
            Ok(Prepared::Segment(tso)) => {
                self.stats.gso_frames += 1;
                self.pending = Some(Pending { tso, len, next: 0 });
                self.next_segment(bufs);
            }
            Ok(Prepared::Frame { .. }) => {}
            Err(r) => self.stats.rx_drops.count(r),
        }
        Ok(true)
    }
}

impl Backend for TapQueue {
    /// `rx_refused`/`tx_refused`: frames refused for their virtio-net
    /// header or size; `tx_errors`: writes the TAP refused.
    fn device_drops(&mut self) -> Vec<(&'static str, u64)> {
        let s = self.stats;
        vec![
            ("rx_refused", s.rx_drops.total()),
            ("tx_refused", s.tx_drops.total()),
            ("tx_errors", s.tx_errors),
        ]
    }

    /// Reads until `max` frames are appended or the TAP has no more
    /// (segments of one super-frame may continue into the next burst).
    fn rx_burst(&mut self, bufs: &mut Vec<PacketBuf>, max: usize) -> io::Result<usize> {
        if let Some(e) = self.deferred.take() {
            return Err(e);
        }
        let start = bufs.len();
        while bufs.len() - start < max {
            if self.pending.is_some() {
                self.next_segment(bufs);
                continue;
            }
            match self.read_one(bufs) {
                Ok(true) => {}
                Ok(false) => break,
                Err(e) if bufs.len() == start => return Err(e),
                Err(e) => {
                    self.deferred = Some(e);
                    break;
                }
            }
        }
        Ok(bufs.len() - start)
    }

    /// Writes frames until the TAP is full (`EAGAIN`): the frames after
    /// that are not taken. Every buffer goes back to the receive pool.
    fn tx_burst(&mut self, pkts: &mut Vec<PacketBuf>) -> io::Result<usize> {
        let mut taken = 0;
        let mut fatal = None;
        let mut i = 0;
        'frames: while i < pkts.len() {
            // How many frames this write carries: a super-frame goes
            // whole (the guest's kernel takes it as one, and cuts it only
            // if it forwards it on); a run of one TCP flow's segments is
            // coalesced into one; anything else goes alone.
            let mut n = 1;
            let mut payload_at = 0;
            let hdr = match pkts[i].gso() {
                Some(g) => match offload::offer_whole(pkts[i].as_mut_slice(), g) {
                    Ok(h) => {
                        self.stats.tx_gso_frames += 1;
                        h.to_bytes()
                    }
                    Err(r) => {
                        self.stats.tx_drops.count(r);
                        taken += 1;
                        i += 1;
                        continue;
                    }
                },
                None => match self.coalesce.then(|| run_from(pkts, i)).flatten() {
                    Some(run) if run.count() > 1 => {
                        n = run.count();
                        payload_at = run.payload_offset();
                        self.stats.tx_coalesced += n as u64;
                        self.stats.tx_gso_frames += 1;
                        run.finish(pkts[i].as_mut_slice()).to_bytes()
                    }
                    _ => TX_VNET_HDR,
                },
            };
            let mut iov = [IoSlice::new(&[]); gro::MAX_RUN + 1];
            iov[0] = IoSlice::new(&hdr);
            iov[1] = IoSlice::new(pkts[i].as_slice());
            let mut bytes = pkts[i].len();
            for k in 1..n {
                let rest = &pkts[i + k].as_slice()[payload_at..];
                bytes += rest.len();
                iov[k + 1] = IoSlice::new(rest);
            }
            loop {
                match (&self.file).write_vectored(&iov[..n + 1]) {
                    Ok(_) => {
                        self.stats.tx_frames += n as u64;
                        self.stats.tx_bytes += bytes as u64;
                    }
                    Err(e) => match e.kind() {
                        io::ErrorKind::Interrupted => continue,
                        io::ErrorKind::WouldBlock => break 'frames,
                        _ if device_gone(&e) => {
                            fatal = Some(e);
                            break 'frames;
                        }
                        _ => self.stats.tx_errors += n as u64,
                    },
                }
                break;
            }
            taken += n;
            i += n;
        }
        for p in pkts.drain(..) {
            self.pool.put(p);
        }
        match fatal {
            Some(e) => Err(e),
            None => Ok(taken),
        }
    }

    fn takes_super_frames(&self) -> bool {
        true
    }

    /// Readable when the TAP holds a frame. Segments of a super-frame
    /// already read are not in the TAP: sleep only after `rx_burst`
    /// returned 0.
    fn poll_fd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        use std::os::fd::AsFd;
        Some(self.file.as_fd())
    }
}

/// The run of TCP segments of one flow that starts at `pkts[i]`, if
/// that frame may start one (see [`gro`]).
fn run_from(pkts: &[PacketBuf], i: usize) -> Option<gro::Run> {
    let head = pkts[i].as_slice();
    let mut run = gro::Run::start(gro::Segment::of(head)?);
    for p in &pkts[i + 1..] {
        if p.gso().is_some() {
            break;
        }
        match gro::Segment::of(p.as_slice()) {
            Some(s) if run.push(head, p.as_slice(), s) => {}
            _ => break,
        }
    }
    Some(run)
}

/// Errors that mean the queue is no longer attached to a device.
fn device_gone(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EBADF | libc::EBADFD | libc::ENODEV | libc::ENXIO)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_names_and_queue_counts_are_refused_with_the_value() {
        for (name, why) in [
            ("", "empty"),
            ("a-name-that-is-too-long", "longer than 15"),
            ("a/b", "'/'"),
            ("a b", "white space"),
        ] {
            let e = Tap::open(name, 1).err().unwrap();
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
            assert!(e.to_string().contains(why), "{e}");
        }
        for q in [0, MAX_QUEUES + 1] {
            let e = Tap::open("sluice-x", q).err().unwrap();
            assert!(e.to_string().contains(&q.to_string()), "{e}");
        }
    }
}
