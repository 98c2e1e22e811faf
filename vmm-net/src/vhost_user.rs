//! The vhost-user guest backend: a VM's virtio-net device (QEMU, cloud
//! hypervisor, DPDK's virtio-user) attached to a port through a unix
//! socket. Either sluice listens on it and the VMM connects
//! ([`VhostUser::listen`], server mode), or the VMM listens and sluice
//! connects ([`VhostUser::connect`], client mode: sluice reconnects
//! whenever the connection is lost, so a restarted sluice re-attaches to
//! VMs that kept running, as Open vSwitch's `dpdkvhostuserclient` does).
//!
//! Two threads share one device:
//!
//! - the *protocol thread* (one per backend, `sluice-vhost`) accepts (or
//!   makes) the VMM's connection and answers its messages (`SET_MEM_TABLE`,
//!   `SET_VRING_*`...) through the rust-vmm `vhost` crate. It maps guest
//!   memory, sets up the virtqueues and registers the guest's kick
//!   eventfds of the transmit queues in an epoll set. When the VMM hangs up
//!   (or restarts) it resets the device and listens (or connects) again:
//!   the port keeps
//!   its state and works again once the VMM reconnects.
//! - the *worker* that owns the port moves the frames: [`Backend::rx_burst`]
//!   pops the guest's transmit queues, [`Backend::tx_burst`] fills its
//!   receive queues, in bursts, and interrupts the guest (the call eventfd)
//!   once per burst when the ring asks for it. Its `poll_fd` is the epoll
//!   set, which is readable when the guest kicks: an idle worker sleeps
//!   until then.
//!
//! The device state (memory map, queues, eventfds) sits behind one mutex
//! that only these two threads take. The worker takes it once per burst
//! with `try_lock`: while the protocol thread changes the device (rare:
//! at start, reset and reconnection), the worker skips the burst instead
//! of waiting, and frames for the guest in that burst are not taken
//! (the switch counts them).
//!
//! Features offered: `VERSION_1`, `VHOST_USER_F_PROTOCOL_FEATURES`,
//! `RING_EVENT_IDX`, `RING_INDIRECT_DESC`, `NET_F_CSUM` and `HOST_TSO4`,
//! `HOST_TSO6`, `HOST_ECN` (the guest may send partial checksums and TCP
//! super-frames: completed and cut with [`offload`], like the TAP backend
//! does), the receive offloads `GUEST_CSUM`, `GUEST_TSO4`, `GUEST_TSO6`,
//! `GUEST_ECN` and `MRG_RXBUF`, and `NET_F_MQ` with
//! `VHOST_USER_PROTOCOL_F_MQ` when more than one queue pair is asked for.
//!
//! Frames for the guest: a TCP super-frame (one the port processed whole)
//! goes to a guest that took `GUEST_TSO4`/`GUEST_TSO6` (and `GUEST_ECN`
//! when it carries CWR) as one frame, its virtio-net header filled as
//! Linux's `virtio_net_hdr_from_skb` does: `gso_type` TCPV4/TCPV6 (|ECN),
//! `gso_size` the MSS, `hdr_len` the headers, `NEEDS_CSUM` with
//! `csum_start`/`csum_offset` on the TCP checksum, which holds the
//! pseudo-header sum (the guest's stack takes it as `CHECKSUM_PARTIAL`,
//! and cuts it only if it forwards it on). Otherwise it is cut here into
//! MSS-sized segments. Every other frame gets an all-zero header (no
//! offload, and not `DATA_VALID`: see [`crate::tap`] for why).
//!
//! With `MRG_RXBUF` a frame is spread over as many descriptor chains
//! ("buffers") as it needs, `num_buffers` in its header says how many,
//! and the used entries of a burst are published together (one used
//! index update; [`used`]), so the guest never sees part of a frame. A
//! frame for which the guest has not posted enough buffers is not taken,
//! and nothing of it is written (counted here in `tx_no_buffers`, and by
//! the switch as drops): nothing is queued. Without `MRG_RXBUF` a frame
//! must fit the one chain it gets (Linux then posts 1 518-byte buffers,
//! or ~64 KiB ones when it took `GUEST_TSO`): a plain frame that does
//! not is dropped and counted (`tx_oversize`), never truncated; a
//! super-frame that does not is cut.
//!
//! Every descriptor chain, on either ring, is walked by [`chain::walk`],
//! which trusts nothing the guest wrote: a loop, a chain longer than the
//! queue, an index past the table, a buffer outside guest memory or whose
//! end wraps the address space, a zero length or a bad indirect table
//! refuses the chain (counted in `ring_errors`, given back used and
//! empty), never a panic.
//!
//! All queue pairs of a device are served by the worker owning the port,
//! transmit queues in turn; frames to the guest go to the first enabled
//! receive queue that has buffers.

use crate::backend::{Backend, BufPool};
use crate::offload::{
    self, OffloadDrop, OffloadDrops, Prepared, Tso, VirtioNetHdr, VIRTIO_NET_HDR_GSO_ECN,
    VNET_HDR_LEN,
};
use dataplane::packet::{DEFAULT_CAPACITY, DEFAULT_HEADROOM};
use dataplane::PacketBuf;
use rustix::event::epoll;
use serde::Serialize;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};
use std::thread::JoinHandle;
use std::time::Duration;
use vhost::vhost_user::message::{
    VhostTransferStateDirection, VhostTransferStatePhase, VhostUserConfigFlags, VhostUserInflight,
    VhostUserLog, VhostUserMemoryRegion, VhostUserShMemConfig, VhostUserSharedMsg,
    VhostUserSingleMemoryRegion, VhostUserVringAddrFlags, VhostUserVringState,
};
use vhost::vhost_user::{
    BackendReqHandler, Error as VuError, GpuBackend, VhostUserBackendReqHandlerMut,
    VhostUserProtocolFeatures, VhostUserVirtioFeatures,
};
use vhost::VhostUserMemoryRegionBase;
use virtio_bindings::virtio_config::VIRTIO_F_VERSION_1;
use virtio_bindings::virtio_net::{
    VIRTIO_NET_F_CSUM, VIRTIO_NET_F_GUEST_CSUM, VIRTIO_NET_F_GUEST_ECN, VIRTIO_NET_F_GUEST_TSO4,
    VIRTIO_NET_F_GUEST_TSO6, VIRTIO_NET_F_HOST_ECN, VIRTIO_NET_F_HOST_TSO4, VIRTIO_NET_F_HOST_TSO6,
    VIRTIO_NET_F_MQ, VIRTIO_NET_F_MRG_RXBUF,
};
use virtio_bindings::virtio_ring::{VIRTIO_RING_F_EVENT_IDX, VIRTIO_RING_F_INDIRECT_DESC};
use virtio_queue::{Queue, QueueOwnedT, QueueT};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap, GuestRegionMmap};

mod chain;
mod used;

use chain::Seg;

/// The most queue pairs a device may have.
pub const MAX_QUEUE_PAIRS: usize = 16;

/// The largest virtqueue accepted (what QEMU allows for virtio-net).
const MAX_QUEUE_SIZE: u16 = 1024;

/// The largest frame a guest may hand over: a 64 KiB IP super-frame plus
/// Ethernet and two VLAN tags, rounded up.
const SUPER_FRAME_MAX: usize = 65536 + 512;

/// The largest segment (or plain frame) a pool buffer holds.
const MAX_SEGMENT: usize = DEFAULT_CAPACITY - DEFAULT_HEADROOM;

/// Receive buffers kept (see [`BufPool`]).
const POOL_LIMIT: usize = 512;

/// Empty polls of a transmit queue before the guest is asked to kick
/// again: well before the worker goes to sleep
/// ([`crate::worker::SPIN_POLLS`] empty rounds), so a sleeping worker is
/// always woken by the guest's next frame.
const ARM_AFTER: u32 = crate::worker::SPIN_POLLS / 4;

/// How often the protocol thread looks at its stop flag while it waits
/// for a VMM to connect.
const ACCEPT_POLL: Duration = Duration::from_millis(100);

/// The header written before a frame for the guest that is not a
/// super-frame: no offload (`num_buffers` is set per frame).
const PLAIN_HDR: VirtioNetHdr = VirtioNetHdr {
    flags: 0,
    gso_type: 0,
    hdr_len: 0,
    gso_size: 0,
    csum_start: 0,
    csum_offset: 0,
    num_buffers: 1,
};

/// The most guest-memory pieces one frame is read from or written to:
/// a 64 KiB super-frame in 32-byte descriptors. A frame needing more is
/// refused (such a guest is not one that wants speed).
const SEGS_MAX: usize = 2048;

/// TCP's CWR flag (in the flags byte, 13 bytes into the TCP header).
const TCP_CWR: u8 = 0x80;

/// How to create a vhost-user device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VhostUserOptions {
    /// Queue pairs offered to the VMM (1..=[`MAX_QUEUE_PAIRS`]); more than
    /// one offers `VIRTIO_NET_F_MQ`.
    pub queue_pairs: usize,
}

impl Default for VhostUserOptions {
    fn default() -> Self {
        VhostUserOptions { queue_pairs: 1 }
    }
}

/// Counters of one vhost-user device. RX is guest → sluice.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct VhostUserStats {
    /// Frames handed to the caller (each segment of a super-frame counts).
    pub rx_frames: u64,
    pub rx_bytes: u64,
    /// Super-frames received and cut, and the segments they made.
    pub gso_frames: u64,
    pub gso_segments: u64,
    /// Frames whose partial checksum was completed.
    pub csum_completed: u64,
    /// Frames refused on receive, by reason.
    pub rx_drops: OffloadDrops,
    /// Frames written to the guest (a super-frame written whole counts
    /// once; one cut here counts its segments).
    pub tx_frames: u64,
    pub tx_bytes: u64,
    /// Receive buffers (descriptor chains) those frames filled: more
    /// than `tx_frames` when frames were merged over several
    /// (`MRG_RXBUF`).
    pub tx_buffers: u64,
    /// TCP super-frames written whole (the guest took `GUEST_TSO4/6`).
    pub tx_gso_frames: u64,
    /// TCP super-frames cut here (the guest did not take them whole, or
    /// its buffer was too small), and the segments they made.
    pub tx_gso_cut: u64,
    pub tx_gso_segments: u64,
    /// Super-frames for the guest refused, by reason (dropped).
    pub tx_drops: OffloadDrops,
    /// Frames (or segments of a super-frame already partly written) for
    /// the guest that found too few receive buffers: not taken, nothing
    /// of them written.
    pub tx_no_buffers: u64,
    /// Frames for the guest larger than the buffer chain it posted
    /// (without `MRG_RXBUF`), or than its whole ring (dropped).
    pub tx_oversize: u64,
    /// Descriptor chains refused: loops, chains longer than the queue,
    /// indices past the table, buffers outside guest memory or wrapping
    /// the address space, zero lengths, bad indirect tables (the chain
    /// is given back used with nothing written; a frame being written
    /// moves on to the next chain).
    pub ring_errors: u64,
    /// Interrupts sent to the guest.
    pub calls: u64,
}

/// One virtqueue as the two threads see it.
struct Vring {
    queue: Queue,
    kick: Option<File>,
    call: Option<File>,
    /// `SET_VRING_ENABLE` (or no protocol features: enabled at start).
    enabled: bool,
    /// The guest was asked to kick on its next frame (EVENT_IDX:
    /// `avail_event` set; else the ring's no-notify flag cleared).
    armed: bool,
    /// Polls that found the ring empty since it last had frames.
    idle: u32,
}

impl Vring {
    fn new() -> Vring {
        Vring {
            // MAX_QUEUE_SIZE is a power of two: `new` cannot fail.
            queue: Queue::new(MAX_QUEUE_SIZE).unwrap_or_else(|_| unreachable!()),
            kick: None,
            call: None,
            enabled: false,
            armed: true,
            idle: 0,
        }
    }

    /// Frames may move: the ring was started (kick received, addresses
    /// checked) and enabled.
    fn runnable(&self) -> bool {
        self.enabled && self.queue.ready()
    }

    /// Empties the kick eventfd (so the epoll set stops being readable).
    fn drain_kick(&self) {
        if let Some(k) = &self.kick {
            let mut b = [0u8; 8];
            let _ = (&*k).read(&mut b);
        }
    }

    fn signal(&self) -> bool {
        match &self.call {
            Some(c) => (&*c).write(&1u64.to_ne_bytes()).is_ok(),
            None => false,
        }
    }
}

/// Where a VMM virtual address range lies in guest physical memory.
struct Mapping {
    vmm_addr: u64,
    size: u64,
    gpa: u64,
}

/// The device: what the protocol thread sets up and the worker uses.
struct Device {
    pairs: usize,
    acked_features: u64,
    acked_protocol: u64,
    mem: Option<GuestMemoryMmap>,
    mappings: Vec<Mapping>,
    vrings: Vec<Vring>,
}

impl Device {
    fn new(pairs: usize) -> Device {
        Device {
            pairs,
            acked_features: 0,
            acked_protocol: 0,
            mem: None,
            mappings: Vec::new(),
            vrings: (0..2 * pairs).map(|_| Vring::new()).collect(),
        }
    }

    fn features(&self) -> u64 {
        let mut f = 1u64 << VIRTIO_F_VERSION_1
            | VhostUserVirtioFeatures::PROTOCOL_FEATURES.bits()
            | 1 << VIRTIO_RING_F_EVENT_IDX
            | 1 << VIRTIO_RING_F_INDIRECT_DESC
            | 1 << VIRTIO_NET_F_CSUM
            | 1 << VIRTIO_NET_F_GUEST_CSUM
            | 1 << VIRTIO_NET_F_HOST_TSO4
            | 1 << VIRTIO_NET_F_HOST_TSO6
            | 1 << VIRTIO_NET_F_HOST_ECN
            | 1 << VIRTIO_NET_F_GUEST_TSO4
            | 1 << VIRTIO_NET_F_GUEST_TSO6
            | 1 << VIRTIO_NET_F_GUEST_ECN
            | 1 << VIRTIO_NET_F_MRG_RXBUF;
        if self.pairs > 1 {
            f |= 1 << VIRTIO_NET_F_MQ;
        }
        f
    }

    fn protocol_features(&self) -> VhostUserProtocolFeatures {
        // REPLY_ACK is answered by the `vhost` crate (QEMU acks it even
        // when not offered).
        let mut p = VhostUserProtocolFeatures::REPLY_ACK;
        if self.pairs > 1 {
            p |= VhostUserProtocolFeatures::MQ;
        }
        p
    }

    fn vring(&mut self, index: u32) -> Result<&mut Vring, VuError> {
        // A VMM naming a ring this device never offered is refused, as
        // the vhost-user spec asks of a back-end.
        self.vrings
            .get_mut(index as usize)
            .ok_or(VuError::InvalidParam)
    }

    fn vmm_to_gpa(&self, va: u64) -> Result<GuestAddress, VuError> {
        // Every value here is the VMM's: a region whose guest address
        // plus offset wraps is refused, not wrapped.
        self.mappings
            .iter()
            .find_map(|m| {
                let off = va.checked_sub(m.vmm_addr).filter(|&o| o < m.size)?;
                m.gpa.checked_add(off).map(GuestAddress)
            })
            .ok_or(VuError::InvalidParam)
    }
}

/// What both threads share.
struct Shared {
    dev: Mutex<Device>,
    /// The transmit queues' kick eventfds (the worker's `poll_fd`).
    epoll: OwnedFd,
    stop: AtomicBool,
    /// The current VMM connection (shut down to stop the protocol thread).
    conn: Mutex<Option<UnixStream>>,
    connections: AtomicU64,
    /// Messages refused (the connection went on).
    refused: AtomicU64,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Device> {
        // The device stays consistent whatever a panicking holder did.
        self.dev.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers (or unregisters, with `None`) the kick of vring `index`
    /// in the epoll set; only transmit queues (odd indices) wake the
    /// worker.
    fn watch_kick(&self, index: usize, old: Option<&File>, new: Option<&File>) {
        if index.is_multiple_of(2) {
            return;
        }
        if let Some(o) = old {
            let _ = epoll::delete(&self.epoll, o);
        }
        if let Some(n) = new {
            let _ = epoll::add(
                &self.epoll,
                n,
                epoll::EventData::new_u64(index as u64),
                epoll::EventFlags::IN,
            );
        }
    }

    /// Forgets everything the VMM set up (it hung up, or reset the owner).
    fn reset(&self, dev: &mut Device) {
        for (i, v) in dev.vrings.iter().enumerate() {
            self.watch_kick(i, v.kick.as_ref(), None);
        }
        *dev = Device::new(dev.pairs);
    }
}

/// The protocol side: answers the VMM's messages.
struct Protocol {
    shared: Arc<Shared>,
}

fn unsupported<T>() -> Result<T, VuError> {
    Err(VuError::InvalidOperation("not supported by sluice"))
}

impl VhostUserBackendReqHandlerMut for Protocol {
    fn set_owner(&mut self) -> Result<(), VuError> {
        Ok(())
    }

    fn reset_owner(&mut self) -> Result<(), VuError> {
        let mut d = self.shared.lock();
        self.shared.reset(&mut d);
        Ok(())
    }

    fn reset_device(&mut self) -> Result<(), VuError> {
        self.reset_owner()
    }

    fn get_features(&mut self) -> Result<u64, VuError> {
        Ok(self.shared.lock().features())
    }

    fn set_features(&mut self, features: u64) -> Result<(), VuError> {
        let mut d = self.shared.lock();
        if features & !d.features() != 0 {
            return Err(VuError::InvalidParam);
        }
        d.acked_features = features;
        let event_idx = features & (1 << VIRTIO_RING_F_EVENT_IDX) != 0;
        // Without protocol features, rings are enabled from the start.
        let enable = features & VhostUserVirtioFeatures::PROTOCOL_FEATURES.bits() == 0;
        for v in &mut d.vrings {
            v.queue.set_event_idx(event_idx);
            if enable {
                v.enabled = true;
            }
        }
        Ok(())
    }

    fn set_mem_table(
        &mut self,
        ctx: &[VhostUserMemoryRegion],
        files: Vec<File>,
        postcopy_listening: Option<bool>,
    ) -> Result<Option<Vec<VhostUserMemoryRegionBase>>, VuError> {
        if postcopy_listening.is_some() {
            return Err(VuError::InvalidOperation("postcopy is not supported"));
        }
        let mut regions = Vec::with_capacity(ctx.len());
        let mut mappings = Vec::with_capacity(ctx.len());
        for (r, file) in ctx.iter().zip(files) {
            let region =
                GuestRegionMmap::new(r.mmap_region(file)?, GuestAddress(r.guest_phys_addr))
                    .ok_or(VuError::InvalidParam)?;
            regions.push(region);
            mappings.push(Mapping {
                vmm_addr: r.user_addr,
                size: r.memory_size,
                gpa: r.guest_phys_addr,
            });
        }
        let mem = GuestMemoryMmap::from_regions(regions)
            .map_err(|e| VuError::ReqHandlerError(io::Error::other(e)))?;
        let mut d = self.shared.lock();
        d.mem = Some(mem);
        d.mappings = mappings;
        Ok(None)
    }

    fn set_vring_num(&mut self, index: u32, num: u32) -> Result<(), VuError> {
        let mut d = self.shared.lock();
        let num = u16::try_from(num).map_err(|_| VuError::InvalidParam)?;
        d.vring(index)?
            .queue
            .try_set_size(num)
            .map_err(|_| VuError::InvalidParam)
    }

    fn set_vring_addr(
        &mut self,
        index: u32,
        _flags: VhostUserVringAddrFlags,
        descriptor: u64,
        used: u64,
        available: u64,
        _log: u64,
    ) -> Result<(), VuError> {
        let mut d = self.shared.lock();
        let desc = d.vmm_to_gpa(descriptor)?;
        let avail = d.vmm_to_gpa(available)?;
        let used = d.vmm_to_gpa(used)?;
        let d = &mut *d;
        let v = d
            .vrings
            .get_mut(index as usize)
            .ok_or(VuError::InvalidParam)?;
        let q = &mut v.queue;
        q.try_set_desc_table_address(desc)
            .map_err(|_| VuError::InvalidParam)?;
        q.try_set_avail_ring_address(avail)
            .map_err(|_| VuError::InvalidParam)?;
        q.try_set_used_ring_address(used)
            .map_err(|_| VuError::InvalidParam)?;
        // The used index the guest sees (QEMU's library does the same:
        // SET_VRING_BASE restores only the available index).
        if let Some(mem) = &d.mem {
            if let Ok(idx) = q.used_idx(mem, std::sync::atomic::Ordering::Acquire) {
                q.set_next_used(idx.0);
            }
        }
        Ok(())
    }

    fn set_vring_base(&mut self, index: u32, base: u32) -> Result<(), VuError> {
        let mut d = self.shared.lock();
        let base = u16::try_from(base).map_err(|_| VuError::InvalidParam)?;
        d.vring(index)?.queue.set_next_avail(base);
        Ok(())
    }

    fn get_vring_base(&mut self, index: u32) -> Result<VhostUserVringState, VuError> {
        // Stops the ring. The worker holds the lock for whole bursts, so
        // no burst is half done on it from here on.
        let mut d = self.shared.lock();
        let v = d.vring(index)?;
        v.queue.set_ready(false);
        let next = v.queue.next_avail();
        let kick = v.kick.take();
        v.call = None;
        self.shared.watch_kick(index as usize, kick.as_ref(), None);
        Ok(VhostUserVringState::new(index, u32::from(next)))
    }

    fn set_vring_kick(&mut self, index: u8, fd: Option<File>) -> Result<(), VuError> {
        let mut d = self.shared.lock();
        let d = &mut *d;
        let v = d
            .vrings
            .get_mut(usize::from(index))
            .ok_or(VuError::InvalidParam)?;
        if let Some(f) = &fd {
            // The worker reads it without blocking (QEMU's are already
            // non-blocking; this is the same open file).
            let _ = rustix::fs::fcntl_setfl(f, rustix::fs::OFlags::NONBLOCK);
        }
        self.shared
            .watch_kick(usize::from(index), v.kick.as_ref(), fd.as_ref());
        v.kick = fd;
        // The ring starts on its kick (spec: "ring starts upon a kick"),
        // if its addresses are valid in guest memory.
        // (`is_valid` also checks that the queue is marked ready.)
        v.queue.set_ready(true);
        let valid = d.mem.as_ref().is_some_and(|m| v.queue.is_valid(m));
        v.queue.set_ready(valid);
        v.armed = true;
        v.idle = 0;
        // A started ring is enabled. QEMU (7.2) sends SET_VRING_ENABLE(1)
        // when the guest negotiates, before SET_FEATURES, and the `vhost`
        // crate refuses it then (PROTOCOL_FEATURES not acked yet); QEMU
        // does not send it again when it starts the rings. A later
        // SET_VRING_ENABLE(0) still disables the ring.
        v.enabled = true;
        if !valid {
            return Err(VuError::InvalidParam);
        }
        Ok(())
    }

    fn set_vring_call(&mut self, index: u8, fd: Option<File>) -> Result<(), VuError> {
        self.shared.lock().vring(u32::from(index))?.call = fd;
        Ok(())
    }

    fn set_vring_err(&mut self, index: u8, _fd: Option<File>) -> Result<(), VuError> {
        self.shared.lock().vring(u32::from(index)).map(|_| ())
    }

    fn get_protocol_features(&mut self) -> Result<VhostUserProtocolFeatures, VuError> {
        Ok(self.shared.lock().protocol_features())
    }

    fn set_protocol_features(&mut self, features: u64) -> Result<(), VuError> {
        let mut d = self.shared.lock();
        if features & !d.protocol_features().bits() != 0 {
            return Err(VuError::InvalidParam);
        }
        d.acked_protocol = features;
        Ok(())
    }

    fn get_queue_num(&mut self) -> Result<u64, VuError> {
        // For virtio-net, QEMU and DPDK count queue pairs.
        Ok(self.shared.lock().pairs as u64)
    }

    fn set_vring_enable(&mut self, index: u32, enable: bool) -> Result<(), VuError> {
        self.shared.lock().vring(index)?.enabled = enable;
        Ok(())
    }

    fn get_config(
        &mut self,
        _offset: u32,
        _size: u32,
        _flags: VhostUserConfigFlags,
    ) -> Result<Vec<u8>, VuError> {
        unsupported()
    }

    fn set_config(
        &mut self,
        _offset: u32,
        _buf: &[u8],
        _flags: VhostUserConfigFlags,
    ) -> Result<(), VuError> {
        unsupported()
    }

    fn set_gpu_socket(&mut self, _gpu_backend: GpuBackend) -> Result<(), VuError> {
        unsupported()
    }

    fn get_shared_object(&mut self, _uuid: VhostUserSharedMsg) -> Result<File, VuError> {
        unsupported()
    }

    fn get_inflight_fd(
        &mut self,
        _inflight: &VhostUserInflight,
    ) -> Result<(VhostUserInflight, File), VuError> {
        unsupported()
    }

    fn set_inflight_fd(
        &mut self,
        _inflight: &VhostUserInflight,
        _file: File,
    ) -> Result<(), VuError> {
        unsupported()
    }

    fn get_max_mem_slots(&mut self) -> Result<u64, VuError> {
        unsupported()
    }

    fn add_mem_region(
        &mut self,
        _region: &VhostUserSingleMemoryRegion,
        _fd: File,
        _postcopy_listening: Option<bool>,
    ) -> Result<Option<VhostUserMemoryRegionBase>, VuError> {
        unsupported()
    }

    fn remove_mem_region(&mut self, _region: &VhostUserSingleMemoryRegion) -> Result<(), VuError> {
        unsupported()
    }

    fn set_device_state_fd(
        &mut self,
        _direction: VhostTransferStateDirection,
        _phase: VhostTransferStatePhase,
        _fd: File,
    ) -> Result<Option<File>, VuError> {
        unsupported()
    }

    fn check_device_state(&mut self) -> Result<(), VuError> {
        unsupported()
    }

    fn get_shmem_config(&mut self) -> Result<VhostUserShMemConfig, VuError> {
        unsupported()
    }

    fn set_log_base(&mut self, _log: &VhostUserLog, _file: File) -> Result<(), VuError> {
        unsupported()
    }
}

/// Where the protocol thread gets its VMM connections from.
enum Source {
    /// sluice listens on the socket and the VMM connects (QEMU's
    /// `-chardev socket,path=...`, a client).
    Listen(UnixListener),
    /// The VMM listens on the socket and sluice connects, again after
    /// every hang-up (QEMU's `-chardev socket,path=...,server=on`; Open
    /// vSwitch's `dpdkvhostuserclient`). A restarted sluice finds the VMM
    /// still there and re-attaches.
    Connect(PathBuf),
}

impl Source {
    /// Waits for the next connection; `None` when none came within about
    /// [`ACCEPT_POLL`] (the caller looks at its stop flag and asks again).
    fn next(&self) -> Option<UnixStream> {
        match self {
            Source::Listen(l) => match l.accept() {
                Ok((s, _)) => Some(s),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let mut fds = [rustix::event::PollFd::new(l, rustix::event::PollFlags::IN)];
                    let ts = rustix::event::Timespec {
                        tv_sec: 0,
                        tv_nsec: ACCEPT_POLL.as_nanos() as _,
                    };
                    let _ = rustix::event::poll(&mut fds, Some(&ts));
                    None
                }
                Err(_) => {
                    std::thread::sleep(ACCEPT_POLL);
                    None
                }
            },
            // Nobody listens yet (the VMM has not started, or is
            // restarting): try again shortly. A connect to a unix socket
            // does not block.
            Source::Connect(path) => match UnixStream::connect(path) {
                Ok(s) => Some(s),
                Err(_) => {
                    std::thread::sleep(ACCEPT_POLL);
                    None
                }
            },
        }
    }
}

/// The protocol thread: takes one VMM connection at a time and serves it
/// until it hangs up, then resets the device and waits for (or, as a
/// client, makes) the next.
fn serve(shared: Arc<Shared>, source: Source) {
    let handler = Arc::new(Mutex::new(Protocol {
        shared: shared.clone(),
    }));
    while !shared.stop.load(Ordering::Acquire) {
        let Some(stream) = source.next() else {
            continue;
        };
        if stream.set_nonblocking(false).is_err() {
            continue;
        }
        match stream.try_clone() {
            Ok(c) => *lock(&shared.conn) = Some(c),
            Err(_) => continue,
        }
        if shared.stop.load(Ordering::Acquire) {
            // Dropped between the accept and here: its shutdown missed us.
            break;
        }
        shared.connections.fetch_add(1, Ordering::Relaxed);
        let mut req = BackendReqHandler::from_stream(stream, handler.clone());
        // Serve until the VMM hangs up or a message breaks the protocol;
        // either way the device goes back to its initial state.
        while !shared.stop.load(Ordering::Acquire) {
            match req.handle_request() {
                Ok(()) => {}
                Err(e) if connection_lost(&e) => break,
                // A message refused (the VMM was told when it asked for a
                // reply); the connection goes on. QEMU, for one, sends
                // SET_VRING_ENABLE before SET_FEATURES.
                Err(_) => {
                    shared.refused.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        *lock(&shared.conn) = None;
        let mut d = shared.lock();
        shared.reset(&mut d);
        drop(d);
        if matches!(source, Source::Connect(_)) {
            // A VMM that accepts and hangs up at once is not retried in a
            // tight loop.
            std::thread::sleep(ACCEPT_POLL);
        }
    }
}

/// Errors after which the connection cannot go on.
fn connection_lost(e: &VuError) -> bool {
    matches!(
        e,
        VuError::Disconnected
            | VuError::PartialMessage
            | VuError::SocketBroken(_)
            | VuError::SocketError(_)
            | VuError::SocketConnect(_)
            | VuError::InvalidSocketFd(_)
            | VuError::NotUnixSocket
            | VuError::NotStreamSocket
            | VuError::OversizedMsg
            | VuError::InvalidMessage
            | VuError::IncorrectFds
    )
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A super-frame being cut, a burst at a time.
struct Pending {
    tso: Tso,
    len: usize,
    next: usize,
}

/// A vhost-user virtio-net device on a unix socket: a [`Backend`] for the
/// worker that owns the port.
pub struct VhostUser {
    shared: Arc<Shared>,
    path: PathBuf,
    /// The inode of the socket it made (server mode), so `drop` removes
    /// only that one; `None` in client mode, where the socket is the VMM's.
    ino: Option<u64>,
    thread: Option<JoinHandle<()>>,
    /// The transmit queue to start the next burst on (queue pairs take
    /// turns).
    next_pair: usize,
    rx_hdr: [u8; VNET_HDR_LEN],
    big: Box<[u8]>,
    pending: Option<Pending>,
    /// The pieces of the transmit chain being read, and the chains of a
    /// burst not yet given back.
    rx_segs: Vec<Seg>,
    rx_used: used::Used,
    /// Where frames for the guest are being written.
    fill: Fill,
    /// A segment of a super-frame being cut for the guest.
    seg: PacketBuf,
    pool: BufPool,
    stats: VhostUserStats,
}

impl VhostUser {
    /// Listens on `path` for a VMM. A stale socket there (nobody
    /// listening) is replaced; a live one or anything that is not a
    /// socket is refused.
    pub fn listen(path: &Path, opts: &VhostUserOptions) -> io::Result<VhostUser> {
        check_queue_pairs(opts)?;
        check_socket_path(path)?;
        let listener = UnixListener::bind(path)?;
        listener.set_nonblocking(true)?;
        let ino = std::fs::metadata(path)?.ino();
        VhostUser::start(path, opts, Source::Listen(listener), Some(ino))
    }

    /// Connects to a VMM listening on `path` (client mode), and again
    /// whenever it hangs up or is not there yet: the VMM may start after
    /// the port, and a restarted sluice re-attaches to a running VMM. The
    /// socket is the VMM's: it is never removed. A path that exists and is
    /// not a socket is refused.
    pub fn connect(path: &Path, opts: &VhostUserOptions) -> io::Result<VhostUser> {
        check_queue_pairs(opts)?;
        match std::fs::symlink_metadata(path) {
            Ok(m) if !m.file_type().is_socket() => {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!(
                        "vhost-user socket path {} exists and is not a socket",
                        path.display()
                    ),
                ))
            }
            _ => {}
        }
        VhostUser::start(path, opts, Source::Connect(path.to_path_buf()), None)
    }

    fn start(
        path: &Path,
        opts: &VhostUserOptions,
        source: Source,
        ino: Option<u64>,
    ) -> io::Result<VhostUser> {
        let shared = Arc::new(Shared {
            dev: Mutex::new(Device::new(opts.queue_pairs)),
            epoll: epoll::create(epoll::CreateFlags::CLOEXEC)?,
            stop: AtomicBool::new(false),
            conn: Mutex::new(None),
            connections: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        });
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("sluice-vhost".into())
            .spawn(move || serve(s, source))?;
        Ok(VhostUser {
            shared,
            path: path.to_path_buf(),
            ino,
            thread: Some(thread),
            next_pair: 0,
            rx_hdr: [0; VNET_HDR_LEN],
            big: vec![0; SUPER_FRAME_MAX].into_boxed_slice(),
            pending: None,
            rx_segs: Vec::with_capacity(SEGS_MAX),
            rx_used: Vec::with_capacity(2 * usize::from(MAX_QUEUE_SIZE)),
            fill: Fill::new(),
            seg: PacketBuf::new(DEFAULT_HEADROOM, DEFAULT_CAPACITY),
            pool: BufPool::new(POOL_LIMIT),
            stats: VhostUserStats::default(),
        })
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn stats(&self) -> VhostUserStats {
        self.stats
    }

    /// VMM connections made so far (accepted, or in client mode
    /// connected).
    pub fn connections(&self) -> u64 {
        self.shared.connections.load(Ordering::Relaxed)
    }

    /// Protocol messages refused so far (the connection went on).
    pub fn refused_messages(&self) -> u64 {
        self.shared.refused.load(Ordering::Relaxed)
    }

    /// Whether a VMM has set the device up and at least one queue pair
    /// runs (both its queues started and enabled).
    pub fn is_running(&self) -> bool {
        let d = self.shared.lock();
        d.mem.is_some() && d.vrings.chunks(2).any(|p| p.iter().all(Vring::runnable))
    }

    /// Hands out the next segment of the super-frame being cut.
    fn next_segment(&mut self, bufs: &mut Vec<PacketBuf>) {
        let Some(p) = self.pending.as_mut() else {
            return;
        };
        let mut out = self.pool.get();
        match p.tso.write_segment(&self.big[..p.len], p.next, &mut out) {
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
                self.stats.rx_drops.count(r);
                self.pool.put(out);
                self.pending = None;
            }
        }
    }
}

fn check_queue_pairs(opts: &VhostUserOptions) -> io::Result<()> {
    if opts.queue_pairs == 0 || opts.queue_pairs > MAX_QUEUE_PAIRS {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "vhost-user queue pairs {} is out of range 1..={MAX_QUEUE_PAIRS}",
                opts.queue_pairs
            ),
        ));
    }
    Ok(())
}

/// Refuses a path that exists and is not a stale socket.
fn check_socket_path(path: &Path) -> io::Result<()> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if !meta.file_type().is_socket() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!(
                "vhost-user socket path {} exists and is not a socket",
                path.display()
            ),
        ));
    }
    if UnixStream::connect(path).is_ok() {
        return Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            format!(
                "vhost-user socket {} is in use (something listens on it)",
                path.display()
            ),
        ));
    }
    std::fs::remove_file(path)
}

impl Drop for VhostUser {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        if let Some(c) = lock(&self.shared.conn).as_ref() {
            let _ = c.shutdown(std::net::Shutdown::Both);
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        if std::fs::metadata(&self.path).is_ok_and(|m| Some(m.ino()) == self.ino) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Where the bytes of a guest's transmit chain go: the virtio-net header,
/// then a packet buffer's tail, then the side buffer.
struct Scatter<'a> {
    hdr: &'a mut [u8; VNET_HDR_LEN],
    tail: &'a mut [u8],
    rest: &'a mut [u8],
    at: usize,
}

impl Scatter<'_> {
    /// Copies `len` bytes of guest memory at `addr` in. `Ok(false)`: they
    /// did not all fit.
    fn copy_from(
        &mut self,
        mem: &GuestMemoryMmap,
        addr: GuestAddress,
        len: usize,
    ) -> Result<bool, vm_memory::GuestMemoryError> {
        let mut done = 0;
        while done < len {
            let t = self.tail.len();
            let (dst, off) = if self.at < VNET_HDR_LEN {
                (&mut self.hdr[..], self.at)
            } else if self.at < VNET_HDR_LEN + t {
                (&mut *self.tail, self.at - VNET_HDR_LEN)
            } else {
                (&mut *self.rest, self.at - VNET_HDR_LEN - t)
            };
            let Some(room) = dst.get_mut(off..).filter(|r| !r.is_empty()) else {
                return Ok(false);
            };
            let n = room.len().min(len - done);
            // `walk` checked that `addr + len` lies in guest memory.
            let at = addr
                .0
                .checked_add(done as u64)
                .ok_or(vm_memory::GuestMemoryError::InvalidGuestAddress(addr))?;
            mem.read_slice(&mut room[..n], GuestAddress(at))?;
            done += n;
            self.at += n;
        }
        Ok(true)
    }
}

/// What became of one chain popped from a transmit queue.
enum Taken {
    /// A frame (or the first segment of a super-frame) was appended, or it
    /// was dropped with a reason.
    Done,
    /// The chain pointed outside guest memory.
    RingError,
}

impl VhostUser {
    /// Gives the chains read from transmit ring `v` back to the guest
    /// (one index update) and interrupts it if it asks for it.
    fn publish_rx(&mut self, mem: &GuestMemoryMmap, v: &mut Vring) {
        match used::publish(mem, &mut v.queue, &mut self.rx_used) {
            Ok(true) => {
                if v.signal() {
                    self.stats.calls += 1;
                }
            }
            Ok(false) => {}
            Err(_) => self.stats.ring_errors += 1,
        }
    }

    /// Reads one chain (already popped) into a frame.
    fn take_chain<I>(&mut self, mem: &GuestMemoryMmap, descs: I, bufs: &mut Vec<PacketBuf>) -> Taken
    where
        I: Iterator<Item = (GuestAddress, usize, bool)>,
    {
        let mut pkt = self.pool.get();
        let room = pkt.tailroom().min(MAX_SEGMENT);
        let Ok(tail) = pkt.push_back(room) else {
            self.pool.put(pkt);
            return Taken::Done;
        };
        let mut sc = Scatter {
            hdr: &mut self.rx_hdr,
            tail,
            rest: &mut self.big[room..],
            at: 0,
        };
        let mut fits = true;
        for (addr, len, write_only) in descs {
            if write_only {
                continue;
            }
            match sc.copy_from(mem, addr, len) {
                Ok(true) => {}
                Ok(false) => {
                    fits = false;
                    break;
                }
                Err(_) => {
                    self.pool.put(pkt);
                    return Taken::RingError;
                }
            }
        }
        let n = sc.at;
        if !fits {
            self.pool.put(pkt);
            self.stats.rx_drops.count(OffloadDrop::Truncated);
            return Taken::Done;
        }
        let Some(len) = n.checked_sub(VNET_HDR_LEN) else {
            self.pool.put(pkt);
            self.stats.rx_drops.count(OffloadDrop::BadVnetHdr);
            return Taken::Done;
        };
        let hdr = match VirtioNetHdr::parse(&self.rx_hdr) {
            Ok(h) => h,
            Err(r) => {
                self.pool.put(pkt);
                self.stats.rx_drops.count(r);
                return Taken::Done;
            }
        };
        if !hdr.is_gso() {
            if len > room {
                self.pool.put(pkt);
                self.stats.rx_drops.count(OffloadDrop::Oversize);
                return Taken::Done;
            }
            pkt.truncate(len);
            match offload::prepare(pkt.as_mut_slice(), &hdr, MAX_SEGMENT) {
                Ok(Prepared::Frame { csum_completed }) => {
                    self.stats.csum_completed += u64::from(csum_completed);
                    self.stats.rx_frames += 1;
                    self.stats.rx_bytes += len as u64;
                    bufs.push(pkt);
                }
                Ok(Prepared::Segment(_)) => self.pool.put(pkt),
                Err(r) => {
                    self.stats.rx_drops.count(r);
                    self.pool.put(pkt);
                }
            }
            return Taken::Done;
        }
        // A super-frame: contiguous in `big`, then cut from there.
        let head = len.min(room);
        self.big[..head].copy_from_slice(&pkt.as_slice()[..head]);
        self.pool.put(pkt);
        match offload::prepare(&mut self.big[..len], &hdr, MAX_SEGMENT) {
            Ok(Prepared::Segment(tso)) => {
                self.stats.gso_frames += 1;
                self.pending = Some(Pending { tso, len, next: 0 });
                self.next_segment(bufs);
            }
            Ok(Prepared::Frame { .. }) => {}
            Err(r) => self.stats.rx_drops.count(r),
        }
        Taken::Done
    }
}

/// Takes the device for one burst, or `None` while the protocol thread
/// changes it.
fn try_device(shared: &Shared) -> Option<MutexGuard<'_, Device>> {
    match shared.dev.try_lock() {
        Ok(g) => Some(g),
        Err(TryLockError::Poisoned(e)) => Some(e.into_inner()),
        Err(TryLockError::WouldBlock) => None,
    }
}

impl Backend for VhostUser {
    /// `tx_no_buffers`: frames for the guest that found too few receive
    /// buffers (the guest did not post them fast enough: an overrun);
    /// `tx_oversize`: larger than the buffers it posted; `tx_refused`:
    /// super-frames for it that could be neither offered nor cut;
    /// `ring_errors`: descriptor chains refused (see
    /// [`VhostUserStats::ring_errors`]); `rx_refused`: frames from the
    /// guest refused for their virtio-net header.
    fn device_drops(&mut self) -> Vec<(&'static str, u64)> {
        let s = self.stats;
        vec![
            ("tx_no_buffers", s.tx_no_buffers),
            ("tx_oversize", s.tx_oversize),
            ("tx_refused", s.tx_drops.total()),
            ("ring_errors", s.ring_errors),
            ("rx_refused", s.rx_drops.total()),
        ]
    }

    /// Receive offloads to the guest: `tx_gso_frames` super-frames it
    /// took whole, `tx_gso_cut` cut here into `tx_gso_segments`, and the
    /// `tx_buffers` (descriptor chains) all frames for it filled.
    fn device_counters(&mut self) -> Vec<(&'static str, u64)> {
        let s = self.stats;
        vec![
            ("tx_gso_frames", s.tx_gso_frames),
            ("tx_gso_cut", s.tx_gso_cut),
            ("tx_gso_segments", s.tx_gso_segments),
            ("tx_buffers", s.tx_buffers),
        ]
    }

    /// Pops frames the guest sent, queue pairs in turn, until `max` are
    /// appended or every transmit queue is empty. A queue found empty
    /// [`ARM_AFTER`] times in a row re-arms the guest's kick (EVENT_IDX:
    /// `avail_event`; else the ring's flag), empties the kick eventfd and
    /// checks once more, so no frame posted meanwhile waits for a kick
    /// that will not come; while frames keep coming the guest does not
    /// kick at all.
    fn rx_burst(&mut self, bufs: &mut Vec<PacketBuf>, max: usize) -> io::Result<usize> {
        let start = bufs.len();
        while bufs.len() - start < max && self.pending.is_some() {
            self.next_segment(bufs);
        }
        let shared = self.shared.clone();
        let Some(mut dev) = try_device(&shared) else {
            return Ok(bufs.len() - start);
        };
        let dev = &mut *dev;
        let Some(mem) = dev.mem.as_ref() else {
            for v in &dev.vrings {
                v.drain_kick();
            }
            return Ok(bufs.len() - start);
        };
        let pairs = dev.pairs;
        for k in 0..pairs {
            if bufs.len() - start >= max {
                break;
            }
            let i = 2 * ((self.next_pair + k) % pairs) + 1;
            let v = &mut dev.vrings[i];
            if !v.runnable() {
                // A kick before the ring runs: nothing to do but clear it.
                v.drain_kick();
                continue;
            }
            while bufs.len() - start < max {
                if self.pending.is_some() {
                    self.next_segment(bufs);
                    continue;
                }
                match v.queue.pop_descriptor_chain(mem) {
                    Some(chain) => {
                        v.idle = 0;
                        if v.armed {
                            // With EVENT_IDX, not moving `avail_event`
                            // any more is what disarms.
                            if !v.queue.event_idx_enabled() {
                                let _ = v.queue.disable_notification(mem);
                            }
                            v.armed = false;
                        }
                        let head = chain.head_index();
                        let table = GuestAddress(v.queue.desc_table());
                        let mut segs = std::mem::take(&mut self.rx_segs);
                        segs.clear();
                        match chain::walk(
                            mem,
                            table,
                            v.queue.size(),
                            head,
                            false,
                            &mut segs,
                            SEGS_MAX,
                        ) {
                            Ok(_) => {
                                let descs = segs
                                    .iter()
                                    .map(|s| (GuestAddress(s.addr), s.len as usize, false));
                                if let Taken::RingError = self.take_chain(mem, descs, bufs) {
                                    self.stats.ring_errors += 1;
                                }
                            }
                            Err(_) => self.stats.ring_errors += 1,
                        }
                        self.rx_segs = segs;
                        self.rx_used.push((head, 0));
                        if self.rx_used.len() >= usize::from(v.queue.size()) {
                            // (Never more unpublished than the ring holds.)
                            self.publish_rx(mem, v);
                        }
                    }
                    None => {
                        if v.armed {
                            break;
                        }
                        v.idle += 1;
                        if v.idle < ARM_AFTER {
                            // A busy guest refills soon: poll again
                            // rather than have it kick (a syscall on
                            // both sides).
                            break;
                        }
                        v.drain_kick();
                        v.armed = true;
                        match v.queue.enable_notification(mem) {
                            // More arrived while re-arming: keep going.
                            Ok(true) => continue,
                            Ok(false) => break,
                            Err(_) => {
                                self.stats.ring_errors += 1;
                                break;
                            }
                        }
                    }
                }
            }
            self.publish_rx(mem, v);
        }
        self.next_pair = (self.next_pair + 1) % pairs;
        Ok(bufs.len() - start)
    }

    /// Writes frames into the guest's receive buffers until they run out
    /// (the frames after that are not taken), then publishes the used
    /// chains and interrupts the guest once per ring if it asks for it.
    ///
    /// A TCP super-frame goes whole, with a virtio-net header asking the
    /// guest to take it as one (`gso_type`, `gso_size`, `NEEDS_CSUM`), when
    /// the guest accepted `GUEST_TSO4`/`GUEST_TSO6` (and `GUEST_ECN` if
    /// the frame carries ECN's CWR) and its buffers hold it: merged over
    /// as many chains as needed with `MRG_RXBUF`, else in the one chain
    /// it posted. Otherwise it is cut here into segments, each written as
    /// a plain frame. Every buffer goes back to the pool.
    fn tx_burst(&mut self, pkts: &mut Vec<PacketBuf>) -> io::Result<usize> {
        let shared = self.shared.clone();
        let mut taken = 0;
        if let Some(mut dev) = try_device(&shared) {
            let dev = &mut *dev;
            if let Some(mem) = dev.mem.as_ref() {
                let f = dev.acked_features;
                let has = |bit: u32| f & (1u64 << bit) != 0;
                let csum = has(VIRTIO_NET_F_GUEST_CSUM);
                let (tso4, tso6) = (
                    csum && has(VIRTIO_NET_F_GUEST_TSO4),
                    csum && has(VIRTIO_NET_F_GUEST_TSO6),
                );
                let ecn = has(VIRTIO_NET_F_GUEST_ECN);
                let mut rings = Rings {
                    mem,
                    cur: next_rx(&dev.vrings, 0),
                    vrings: &mut dev.vrings,
                    merge: has(VIRTIO_NET_F_MRG_RXBUF),
                    fill: &mut self.fill,
                    stats: &mut self.stats,
                };
                'frames: for p in pkts.iter_mut() {
                    let Some(g) = p.gso() else {
                        match rings.put(&PLAIN_HDR, p.as_slice()) {
                            None => break,
                            Some(Fit::Done(n)) => rings.sent(p.len(), n),
                            Some(Fit::TooSmall) => rings.stats.tx_oversize += 1,
                        }
                        taken += 1;
                        continue;
                    };
                    // Header fields as Linux's `virtio_net_hdr_from_skb`
                    // fills them (see `offload::offer_whole`); ECN when
                    // the segments carry CWR, as GRO marks such a frame.
                    let mut hdr = match offload::offer_whole(p.as_mut_slice(), g) {
                        Ok(h) => h,
                        Err(r) => {
                            rings.stats.tx_drops.count(r);
                            taken += 1;
                            continue;
                        }
                    };
                    let cwr = p
                        .as_slice()
                        .get(usize::from(hdr.csum_start) + 13)
                        .is_some_and(|b| b & TCP_CWR != 0);
                    if cwr {
                        hdr.gso_type |= VIRTIO_NET_HDR_GSO_ECN;
                    }
                    let whole = if g.v6 { tso6 } else { tso4 }
                        && (hdr.gso_type & VIRTIO_NET_HDR_GSO_ECN == 0 || ecn);
                    if whole {
                        match rings.put(&hdr, p.as_slice()) {
                            None => break,
                            Some(Fit::Done(n)) => {
                                rings.stats.tx_gso_frames += 1;
                                rings.sent(p.len(), n);
                                taken += 1;
                                continue;
                            }
                            // Its one chain is too small: cut it instead.
                            Some(Fit::TooSmall) => {}
                        }
                    }
                    let tso = match Tso::for_gso(p.as_slice(), g, MAX_SEGMENT) {
                        Ok(t) => t,
                        Err(r) => {
                            rings.stats.tx_drops.count(r);
                            taken += 1;
                            continue;
                        }
                    };
                    rings.stats.tx_gso_cut += 1;
                    for k in 0..tso.count() {
                        if let Err(r) = tso.write_segment(p.as_slice(), k, &mut self.seg) {
                            rings.stats.tx_drops.count(r);
                            continue;
                        }
                        match rings.put(&PLAIN_HDR, self.seg.as_slice()) {
                            None if k == 0 => break 'frames,
                            None => {
                                // Part of it is with the guest: the frame
                                // is taken, its other segments counted.
                                rings.stats.tx_no_buffers += (tso.count() - k) as u64;
                                taken += 1;
                                break 'frames;
                            }
                            Some(Fit::Done(n)) => {
                                rings.stats.tx_gso_segments += 1;
                                rings.sent(self.seg.len(), n);
                            }
                            Some(Fit::TooSmall) => rings.stats.tx_oversize += 1,
                        }
                    }
                    taken += 1;
                }
                rings.finish();
            }
        }
        self.stats.tx_no_buffers += (pkts.len() - taken) as u64;
        for p in pkts.drain(..) {
            self.pool.put(p);
        }
        Ok(taken)
    }

    fn takes_super_frames(&self) -> bool {
        true
    }

    /// Readable when the guest kicked a transmit queue.
    fn poll_fd(&self) -> Option<BorrowedFd<'_>> {
        Some(self.shared.epoll.as_fd())
    }
}

/// The first runnable receive queue of pair `from` or after.
fn next_rx(vrings: &[Vring], from: usize) -> Option<usize> {
    (from..vrings.len() / 2)
        .map(|p| 2 * p)
        .find(|&i| vrings[i].runnable())
}

/// One chain taken for the frame being written: its head, where its
/// pieces end in [`Fill::segs`], and the bytes they hold.
#[derive(Clone, Copy)]
struct Chain {
    head: u16,
    end: usize,
    room: u64,
}

/// Scratch space for writing frames to the guest, kept across bursts so
/// that the data path does not allocate.
struct Fill {
    segs: Vec<Seg>,
    chains: Vec<Chain>,
    /// Chains of the current ring written and not yet published.
    used: used::Used,
}

impl Fill {
    fn new() -> Fill {
        let q = usize::from(MAX_QUEUE_SIZE);
        Fill {
            segs: Vec::with_capacity(SEGS_MAX),
            chains: Vec::with_capacity(q),
            used: Vec::with_capacity(2 * q),
        }
    }
}

/// How a frame went into a receive ring.
enum Fit {
    /// Written, in this many chains.
    Done(u16),
    /// Too large for the chain the guest posted (without `MRG_RXBUF`),
    /// or for the whole ring; the chains were given back untouched.
    TooSmall,
}

/// What one enqueue looked like before it was written.
enum Gathered {
    /// Chains enough for the frame are in [`Fill::chains`].
    Enough,
    TooSmall,
    /// The ring ran out of buffers: nothing was taken.
    NoBuffers,
}

/// The guest's receive queues during one `tx_burst`: frames go into the
/// current one until it runs out of buffers, then into the next.
struct Rings<'a> {
    mem: &'a GuestMemoryMmap,
    vrings: &'a mut [Vring],
    cur: Option<usize>,
    merge: bool,
    fill: &'a mut Fill,
    stats: &'a mut VhostUserStats,
}

impl Rings<'_> {
    /// Writes `hdr` and `frame` into the current ring, or the next ones
    /// when it has too few buffers; `None` when none has enough (the
    /// frame is not taken).
    fn put(&mut self, hdr: &VirtioNetHdr, frame: &[u8]) -> Option<Fit> {
        loop {
            let i = self.cur?;
            let q = &mut self.vrings[i].queue;
            if self.fill.used.len() >= usize::from(q.size()) / 2 {
                // Room for a frame's chains before the ring wraps over
                // entries the guest has not seen yet.
                self.flush(i);
            }
            let q = &mut self.vrings[i].queue;
            match gather(self.mem, q, self.fill, self.stats, frame.len(), self.merge) {
                Gathered::Enough => {
                    let n = write_frame(self.mem, self.fill, self.stats, hdr, frame);
                    return Some(Fit::Done(n));
                }
                Gathered::TooSmall => return Some(Fit::TooSmall),
                Gathered::NoBuffers => {
                    self.flush(i);
                    self.cur = next_rx(self.vrings, i / 2 + 1);
                }
            }
        }
    }

    /// Counts a frame of `len` bytes written in `chains` buffers.
    fn sent(&mut self, len: usize, chains: u16) {
        self.stats.tx_frames += 1;
        self.stats.tx_bytes += len as u64;
        self.stats.tx_buffers += u64::from(chains);
    }

    /// Publishes what was written to ring `i` and interrupts the guest if
    /// it asks for it.
    fn flush(&mut self, i: usize) {
        let v = &mut self.vrings[i];
        match used::publish(self.mem, &mut v.queue, &mut self.fill.used) {
            Ok(true) => {
                if v.signal() {
                    self.stats.calls += 1;
                }
            }
            Ok(false) => {}
            Err(_) => self.stats.ring_errors += 1,
        }
    }

    /// Ends the burst.
    fn finish(&mut self) {
        if let Some(i) = self.cur {
            self.flush(i);
        }
    }
}

/// Takes chains from `q` until they hold the header and `len` bytes
/// (without `merge`, one chain must). Refused chains are counted and go
/// to the used list empty. A frame that does not fit gives every chain
/// it took back to the ring (or, if a refused chain sits between them,
/// to the guest, empty), so no part of it is ever visible.
fn gather(
    mem: &GuestMemoryMmap,
    q: &mut Queue,
    fill: &mut Fill,
    stats: &mut VhostUserStats,
    len: usize,
    merge: bool,
) -> Gathered {
    let want = (VNET_HDR_LEN + len) as u64;
    let table = GuestAddress(q.desc_table());
    let size = q.size();
    let used_before = fill.used.len();
    fill.segs.clear();
    fill.chains.clear();
    let mut have = 0u64;
    let mut popped = 0usize;
    let outcome = loop {
        if have >= want {
            break Gathered::Enough;
        }
        if popped + used_before >= usize::from(size) {
            // More chains than the ring holds.
            break Gathered::TooSmall;
        }
        let Some(c) = q.pop_descriptor_chain(mem) else {
            break Gathered::NoBuffers;
        };
        popped += 1;
        let head = c.head_index();
        let room = SEGS_MAX - fill.segs.len();
        match chain::walk(mem, table, size, head, true, &mut fill.segs, room) {
            Ok(n) => {
                have += n;
                fill.chains.push(Chain {
                    head,
                    end: fill.segs.len(),
                    room: n,
                });
                if !merge && have < want {
                    // The chain just taken goes back as it was, whatever
                    // came before it.
                    q.go_to_previous_position();
                    fill.chains.clear();
                    return Gathered::TooSmall;
                }
            }
            Err(_) => {
                stats.ring_errors += 1;
                fill.used.push((head, 0));
            }
        }
    };
    if matches!(outcome, Gathered::Enough) {
        return outcome;
    }
    if fill.used.len() == used_before {
        for _ in 0..popped {
            q.go_to_previous_position();
        }
    } else {
        // The refused chains are consumed; the good ones cannot go back
        // to the ring past them.
        for c in &fill.chains {
            fill.used.push((c.head, 0));
        }
    }
    fill.chains.clear();
    outcome
}

/// Writes `hdr` (with `num_buffers` set) and `frame` across the chains
/// [`gather`] took, and lists them as used; returns how many.
fn write_frame(
    mem: &GuestMemoryMmap,
    fill: &mut Fill,
    stats: &mut VhostUserStats,
    hdr: &VirtioNetHdr,
    frame: &[u8],
) -> u16 {
    // At most the ring's size (`gather` checked): fits 16 bits.
    let n = fill.chains.len() as u16;
    let mut h = *hdr;
    h.num_buffers = n;
    let hb = h.to_bytes();
    let mut src = Src {
        parts: [&hb[..], frame],
    };
    let used_before = fill.used.len();
    let mut from = 0;
    let mut failed = false;
    for c in &fill.chains {
        let mut wrote = 0u32;
        for s in &fill.segs[from..c.end] {
            if src.is_empty() {
                break;
            }
            match src.write_to(mem, *s) {
                Ok(k) => wrote += k,
                Err(_) => failed = true,
            }
        }
        debug_assert!(u64::from(wrote) <= c.room);
        fill.used.push((c.head, wrote));
        from = c.end;
    }
    if failed {
        // Checked in guest memory a moment ago: only a reset races here.
        stats.ring_errors += 1;
        for u in &mut fill.used[used_before..] {
            u.1 = 0;
        }
    }
    n
}

/// The bytes still to write: the header, then the frame.
struct Src<'a> {
    parts: [&'a [u8]; 2],
}

impl Src<'_> {
    fn is_empty(&self) -> bool {
        self.parts.iter().all(|p| p.is_empty())
    }

    /// Fills `seg` (or as much of it as there are bytes left); returns
    /// the bytes written.
    fn write_to(
        &mut self,
        mem: &GuestMemoryMmap,
        seg: Seg,
    ) -> Result<u32, vm_memory::GuestMemoryError> {
        let mut done = 0usize;
        let room = seg.len as usize;
        for p in &mut self.parts {
            if done == room {
                break;
            }
            let k = p.len().min(room - done);
            if k == 0 {
                continue;
            }
            let (now, rest) = p.split_at(k);
            // `walk` checked `addr + len` against guest memory.
            mem.write_slice(now, GuestAddress(seg.addr + done as u64))?;
            *p = rest;
            done += k;
        }
        Ok(done as u32)
    }
}
