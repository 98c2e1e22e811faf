//! The AF_PACKET uplink: a host interface (a NIC, or a veth in tests)
//! read with `recvmmsg` (or through a TPACKET_V3 ring) and written with
//! `sendmmsg`.
//!
//! Receiving ([`RxMode`]): by default `recvmmsg` batches, straight into
//! packet buffers, each frame seen as soon as the kernel has it. The
//! TPACKET_V3 ring (`RxMode::Ring`, described below) saves the system
//! call per burst but hands frames over a block at a time: at low rates a
//! block waits for its retire timer, one kernel tick (4 ms at HZ=250),
//! and that delay is added to every round trip a TCP flow makes — it
//! capped a guest-to-guest iperf3 at a fraction of what the path carries.
//! In `recvmmsg` mode a super-frame (GRO on the interface, a veth peer
//! sending TSO) is handed over whole with its [`Gso`](dataplane::Gso);
//! VLAN tags the kernel stripped are not put back (use the ring on a
//! tagged uplink).
//!
//! Sending super-frames: a port processes a guest's TCP super-frame whole
//! and encapsulates it once; [`Backend::tx_burst`] cuts it into
//! segments, each with its own outer IPv6/UDP lengths and checksum
//! ([`offload::cut_super_frames`]), from and into this socket's own
//! buffers.
//!
//! The ring:
//! Setup, in the order the kernel needs it: a raw socket that receives
//! nothing yet (protocol 0), `PACKET_VERSION` = TPACKET_V3,
//! `PACKET_VNET_HDR` (before the ring: the kernel refuses it after), a
//! `PACKET_RX_RING` of `ring_blocks` blocks of `block_size` bytes with
//! `tp_retire_blk_tov` = `retire_blk_tov_ms`, the ring mapped,
//! `PACKET_QDISC_BYPASS`, `PACKET_IGNORE_OUTGOING`, then `bind` to the
//! interface's index with ETH_P_ALL and, when asked, `PACKET_FANOUT`.
//! Membership (`PACKET_ADD_MEMBERSHIP`: promiscuous when asked, all
//! multicast by default, for the underlay's multicast groups) comes
//! before the bind.
//!
//! Why TPACKET_V3: blocks hold frames of any length back to back, so a
//! 64 KiB super-frame and a 64-byte ACK both fit without every slot being
//! sized for the largest; one poll wakeup hands over a whole block. The
//! cost is latency at low rates: a block is handed over when it is full
//! or when `retire_blk_tov_ms` has passed (rounded up to the kernel's
//! timer tick).
//!
//! Why `sendmmsg` and not a TX ring: both cost one system call per burst
//! and one copy per frame (into the ring by us, or into an skb by the
//! kernel); `sendmmsg` needs no second mapping, no frame-size limit (a
//! TPACKET_V3 TX slot has a fixed size) and no slot status to track, and
//! reports a failing frame precisely so it can be counted and skipped.
//!
//! What a port receives is always a frame as the wire would carry it:
//! - Checksums: a frame sent by this host's own stack over a veth still
//!   has a partial checksum (CHECKSUM_PARTIAL). With `PACKET_VNET_HDR` the
//!   ring carries a virtio-net header before every frame (host byte order)
//!   with `csum_start`/`csum_offset`, and the checksum is completed
//!   exactly; without it (the option refused, or `vnet_hdr: false`) the
//!   frame's `tp_status` says `TP_STATUS_CSUMNOTREADY` and the TCP/UDP
//!   checksum is completed at the offsets its headers give.
//! - Super-frames: GRO on the interface, or a veth peer sending TSO, hands
//!   over TCP super-frames. With the virtio-net header they are cut into
//!   segments ([`offload`]); without it they cannot be and are dropped
//!   (`gso_without_vnet_hdr`). GSO kinds virtio-net cannot describe (UDP
//!   tunnels, fraglist) are dropped by the kernel itself and show in
//!   `ring_drops`: turn GRO off on an uplink (`ethtool -K IF gro off
//!   rx-gro-list off`) to be safe. The kernel fills the header in ring
//!   frames since commit 58d19b19cd99 ("packet: vnet_hdr support for
//!   tpacket_rcv"); older kernels accept the option but leave the bytes
//!   alone, so it is only asked for on Linux 5.10 or later.
//! - VLAN tags: the kernel strips an 802.1Q/802.1ad tag before AF_PACKET
//!   sees the frame and reports it in the ring header; it is put back.
//! - Our own transmissions: frames the kernel loops back as
//!   `PACKET_OUTGOING` are never received (`PACKET_IGNORE_OUTGOING`, and
//!   checked again per frame for kernels without it: `outgoing_ignored`).
//!
//! Fanout: with `fanout: Some(id)`, every socket opened on the same
//! interface with the same id joins one `PACKET_FANOUT_HASH` group: the
//! kernel spreads frames by flow hash, so N workers each open one
//! [`AfPacket`] and together see every frame exactly once, each flow on
//! one worker.
//!
//! Buffers: frames are copied from the ring into pool buffers ([`BufPool`],
//! refilled by `tx_burst`); the hot path allocates only when the pool is
//! empty. Every refused frame is counted by reason; the kernel's own ring
//! drops (`tp_drops`) are read by [`AfPacket::stats`].

use crate::backend::{Backend, BufPool};
use crate::offload::{
    self, udp::Cut, udp::UdpSplit, OffloadDrop, OffloadDrops, Prepared, Tso, VirtioNetHdr,
    VNET_HDR_LEN_LEGACY,
};
use crate::sys::packet::{self as sys, PacketSocket, RxRing};
use dataplane::packet::{DEFAULT_CAPACITY, DEFAULT_HEADROOM};
use dataplane::PacketBuf;
use serde::Serialize;
use std::io;
use std::mem::{offset_of, size_of};

const ETH_P_ALL: u16 = 0x0003;
const TPACKET_V3: libc::c_int = 2;
/// `tp_status`: a TCP GSO frame (set by recent kernels; not in libc yet).
/// Without it, a super-frame seen without a virtio-net header is caught
/// only when it is longer than a packet buffer (`oversize`).
const TP_STATUS_GSO_TCP: u32 = 1 << 8;

/// `tp_status`: the kernel (or the NIC) verified the frame's outermost
/// L4 checksum (`CHECKSUM_UNNECESSARY`); the switch need not redo it.
const TP_STATUS_CSUM_VALID: u32 = 1 << 7;

/// Whether the kernel vouches for a received frame's outermost L4
/// checksum: it verified it (`TP_STATUS_CSUM_VALID`, or virtio-net's
/// `DATA_VALID` in the header), or the frame is partial and sluice just
/// completed it over the bytes it has (`csum_completed` of a frame whose
/// only partial checksum is the outermost, `TP_STATUS_CSUMNOTREADY`).
fn vouched(status: Option<u32>, hdr: Option<&VirtioNetHdr>, completed_outer: bool) -> bool {
    completed_outer
        || status.is_some_and(|s| s & TP_STATUS_CSUM_VALID != 0)
        || hdr.is_some_and(|h| h.flags & offload::VIRTIO_NET_HDR_F_DATA_VALID != 0)
}

/// Whether the partial checksum the virtio-net header announced, now
/// completed, is the frame's outermost L4 checksum (a tunnel's outer UDP
/// one), not an inner one: only then does completing it vouch for the
/// outer checksum.
fn completed_outermost(frame: &[u8], hdr: &VirtioNetHdr) -> bool {
    hdr.flags & offload::VIRTIO_NET_HDR_F_NEEDS_CSUM != 0
        && offload::Layout::parse(frame).is_ok_and(|l| l.l4 == usize::from(hdr.csum_start))
}

/// Slot size the kernel checks V3 requests against (V3 does not use it
/// for the layout); 2 KiB divides every page-multiple block.
const FRAME_SIZE: usize = 2048;
const MAX_SEGMENT: usize = DEFAULT_CAPACITY - DEFAULT_HEADROOM;
const POOL_LIMIT: usize = 2048;
/// The virtio-net header sent with every frame when the socket has
/// `PACKET_VNET_HDR`: no offload asked.
const TX_VNET_HDR: [u8; VNET_HDR_LEN_LEGACY] = [0; VNET_HDR_LEN_LEGACY];

// Where things are in the ring (offsets from the kernel's structs).
const BD_NUM_PKTS: usize =
    offset_of!(libc::tpacket_block_desc, hdr) + offset_of!(libc::tpacket_hdr_v1, num_pkts);
const BD_FIRST_PKT: usize = offset_of!(libc::tpacket_block_desc, hdr)
    + offset_of!(libc::tpacket_hdr_v1, offset_to_first_pkt);
const H_NEXT: usize = offset_of!(libc::tpacket3_hdr, tp_next_offset);
const H_SNAPLEN: usize = offset_of!(libc::tpacket3_hdr, tp_snaplen);
const H_LEN: usize = offset_of!(libc::tpacket3_hdr, tp_len);
const H_STATUS: usize = offset_of!(libc::tpacket3_hdr, tp_status);
const H_MAC: usize = offset_of!(libc::tpacket3_hdr, tp_mac);
const H_VLAN_TCI: usize =
    offset_of!(libc::tpacket3_hdr, hv1) + offset_of!(libc::tpacket_hdr_variant1, tp_vlan_tci);
const H_VLAN_TPID: usize =
    offset_of!(libc::tpacket3_hdr, hv1) + offset_of!(libc::tpacket_hdr_variant1, tp_vlan_tpid);
/// The `sockaddr_ll` follows the header, aligned to 16.
const H_SLL: usize = (size_of::<libc::tpacket3_hdr>() + 15) & !15;
const H_PKTTYPE: usize = H_SLL + offset_of!(libc::sockaddr_ll, sll_pkttype);
const H_MIN: usize = H_SLL + size_of::<libc::sockaddr_ll>();

/// How to open an AF_PACKET uplink.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AfPacketOptions {
    /// Join the `PACKET_FANOUT_HASH` group with this id (one socket per
    /// worker on the same interface); `None`: this socket sees everything.
    pub fanout: Option<u16>,
    /// Blocks in the receive ring.
    pub ring_blocks: usize,
    /// Bytes per block: a multiple of the page size, and at least 128 KiB
    /// so a 64 KiB super-frame fits (smaller works, but such frames are
    /// cut short by the kernel and dropped as `truncated`).
    pub block_size: usize,
    /// How long a partly filled block waits before the kernel hands it
    /// over (ms; 0 lets the kernel choose from the link speed).
    pub retire_blk_tov_ms: u32,
    /// Send straight to the driver, past the qdisc layer
    /// (`PACKET_QDISC_BYPASS`): what a dataplane wants, at the price of
    /// no traffic shaping on the uplink.
    pub qdisc_bypass: bool,
    /// Ask for a virtio-net header per frame (`PACKET_VNET_HDR`): exact
    /// checksum offsets and super-frames that can be cut. Falls back to
    /// header parsing when the kernel cannot (see the module docs).
    pub vnet_hdr: bool,
    /// Put the interface in promiscuous mode while the socket is open.
    pub promiscuous: bool,
    /// Receive every multicast frame while the socket is open
    /// (`PACKET_MR_ALLMULTI`, the interface's `allmulti` count; undone by
    /// the kernel when the socket closes). A NIC passes only the
    /// multicast MACs it was asked for, and the underlay groups of M2P
    /// (ff04::/16, MACs 33:33:xx:xx:xx:xx, RFC 2464 §7) are joined by no
    /// kernel on an uplink whose IPv6 sluice owns: without it a group
    /// tunnel never reaches the socket. The switch refuses a group tunnel
    /// it does not carry (`not_our_underlay_address`). Default true.
    pub allmulti: bool,
    /// How frames are received: see [`RxMode`].
    pub rx: RxMode,
    /// The socket's receive and send buffers (bytes; 0 keeps the kernel's
    /// default). In [`RxMode::Recv`] the receive buffer is what absorbs a
    /// burst while the worker is busy: the kernel's default (about 200
    /// KiB) holds some 140 full-size frames, a millisecond of a busy 1
    /// Gb/s link; what does not fit is lost, counted as `socket_drops`.
    pub rcvbuf: usize,
    pub sndbuf: usize,
    /// Send an encapsulated TCP super-frame as one UDP GSO send (see
    /// [`offload::udp`]) instead of a datagram per segment. Needs the
    /// virtio-net header; if the kernel refuses it, the socket goes back
    /// to cutting (counted in `udp_gso_refused`). Default false.
    pub udp_gso: bool,
}

/// The default socket buffer size: 4 MiB holds about 2800 full-size
/// frames, some 30 ms of a full 1 Gb/s link or 3 ms at 10 Gb/s, enough to
/// ride out a worker's pause without holding much memory per socket.
pub const DEFAULT_SOCKET_BUFFER: usize = 4 * 1024 * 1024;

/// How an [`AfPacket`] receives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RxMode {
    /// `recvmmsg` batches straight into packet buffers: a frame is seen
    /// as soon as the kernel has it. One system call per burst. Needs
    /// virtio-net headers (to know which checksums are partial): without
    /// them the ring is used.
    Recv,
    /// The TPACKET_V3 ring (`ring_blocks`, `block_size`,
    /// `retire_blk_tov_ms`): no system call while frames flow, but a
    /// block is handed over only when full or when its timer fires — a
    /// kernel tick (4 ms at HZ=250) of latency at low rates, which is
    /// what TCP sees as round-trip time.
    Ring,
}

impl Default for AfPacketOptions {
    /// 64 blocks of 256 KiB (16 MiB: about 13 ms of a 10 Gb/s link),
    /// blocks handed over after at most 1 ms, qdisc bypassed, virtio-net
    /// headers on, no fanout.
    fn default() -> Self {
        AfPacketOptions {
            fanout: None,
            ring_blocks: 64,
            block_size: 256 * 1024,
            retire_blk_tov_ms: 1,
            qdisc_bypass: true,
            vnet_hdr: true,
            promiscuous: false,
            allmulti: true,
            rx: RxMode::Recv,
            rcvbuf: DEFAULT_SOCKET_BUFFER,
            sndbuf: DEFAULT_SOCKET_BUFFER,
            // Off: over a veth or bridge the aggregate reaches the peer
            // whole, and a peer that reads its uplink without the
            // virtio-net header (Open vSwitch's userspace datapath in
            // tests/ovs) loses it. Turn it on where every peer splits
            // aggregates (sluice does) or a NIC segments them.
            udp_gso: false,
        }
    }
}

/// Counters of one AF_PACKET socket. RX is wire → sluice.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct AfPacketStats {
    /// Frames handed to the caller (each segment of a super-frame counts).
    pub rx_frames: u64,
    pub rx_bytes: u64,
    /// Super-frames cut, and the segments they made.
    pub gso_frames: u64,
    pub gso_segments: u64,
    /// Frames whose partial checksum was completed.
    pub csum_completed: u64,
    /// Frames whose VLAN tag was put back.
    pub vlan_restored: u64,
    /// Our own transmissions seen on receive and skipped.
    pub outgoing_ignored: u64,
    /// Frames refused on receive, by reason.
    pub rx_drops: OffloadDrops,
    /// Frames the kernel put in the ring (`tp_packets`, cumulative).
    pub ring_packets: u64,
    /// Frames the kernel dropped because the ring was full or it could not
    /// describe them (`tp_drops`, cumulative).
    pub ring_drops: u64,
    /// Times the ring was full and froze (`tp_freeze_q_cnt`, cumulative).
    pub ring_freezes: u64,
    pub tx_frames: u64,
    pub tx_bytes: u64,
    /// Segments cut from super-frames a port processed whole (each also
    /// counts in `tx_frames`), and super-frames that could not be cut.
    pub tx_segments: u64,
    pub tx_drops: OffloadDrops,
    /// Frames the kernel refused with an error other than "full" (too
    /// long for the MTU, interface down...): counted here, and reported as
    /// taken, since sending them again would fail the same way.
    pub tx_errors: u64,
    /// UDP GSO sends (each an aggregate of `tx_segments` datagrams).
    pub tx_udp_gso: u64,
    /// UDP GSO sends the kernel refused (the aggregate is counted in
    /// `tx_errors` and the socket cuts from then on).
    pub udp_gso_refused: u64,
    /// UDP aggregates received and split, and the datagrams they held
    /// (each also counts in `rx_frames`).
    pub udp_gro_frames: u64,
    pub udp_gro_datagrams: u64,
}

/// Walking the block user space owns now.
#[derive(Clone, Copy, Debug)]
struct Walk {
    block: usize,
    left: u32,
    off: usize,
}

/// A super-frame in the current block, being cut.
#[derive(Clone, Copy, Debug)]
struct Pending {
    start: usize,
    len: usize,
    tso: Cut,
    next: usize,
    vlan: Option<[u8; 4]>,
}

/// One AF_PACKET socket bound to one interface: a [`Backend`] for one
/// worker.
pub struct AfPacket {
    // Unmapped before the socket closes (fields drop in this order).
    ring: Option<RxRing>,
    recv: Option<Box<Recv>>,
    sock: PacketSocket,
    ifname: String,
    ifindex: u32,
    vnet_hdr: bool,
    /// The next block to look at.
    next_block: usize,
    walk: Option<Walk>,
    pending: Option<Pending>,
    pool: BufPool,
    /// Where super-frames are cut into segments before sending.
    spare: Vec<PacketBuf>,
    ends: Vec<usize>,
    /// UDP GSO sends: per frame to send, its `gso_size` (0: plain), and
    /// where a segment is cut before it joins its aggregate.
    udp_gso: bool,
    gso_sizes: Vec<u16>,
    scratch: PacketBuf,
    /// A received UDP aggregate being split (in [`RxMode::Recv`]): the
    /// aggregate, its split and the next datagram.
    split: Option<(PacketBuf, UdpSplit, usize)>,
    stats: AfPacketStats,
    /// The interface's link state from the kernel (rtnetlink); `None`
    /// if the socket could not be opened (then the link counts as up).
    link: Option<crate::sys::netlink::LinkWatch>,
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

/// Whether this kernel fills the virtio-net header in ring frames.
fn kernel_has_ring_vnet_hdr() -> bool {
    let Ok(rel) = std::fs::read_to_string("/proc/sys/kernel/osrelease") else {
        return false;
    };
    let mut it = rel
        .trim()
        .split(|c: char| !c.is_ascii_digit())
        .map(|s| s.parse::<u32>().unwrap_or(0));
    let (major, minor) = (it.next().unwrap_or(0), it.next().unwrap_or(0));
    (major, minor) >= (5, 10)
}

impl AfPacket {
    /// Opens an AF_PACKET socket on `ifname` (in the calling thread's
    /// network namespace) as `opts` says.
    pub fn open(ifname: &str, opts: AfPacketOptions) -> io::Result<AfPacket> {
        let page = sys::page_size();
        if opts.block_size == 0 || !opts.block_size.is_multiple_of(page) {
            return Err(invalid(format!(
                "block_size {} is not a positive multiple of the page size {page}",
                opts.block_size
            )));
        }
        if opts.block_size > u32::MAX as usize {
            return Err(invalid(format!(
                "block_size {} is out of range (at most 4 GiB)",
                opts.block_size
            )));
        }
        if opts.ring_blocks == 0 || opts.ring_blocks > 65536 {
            return Err(invalid(format!(
                "ring_blocks {} is out of range 1..=65536",
                opts.ring_blocks
            )));
        }
        let frames = (opts.block_size / FRAME_SIZE)
            .checked_mul(opts.ring_blocks)
            .filter(|&n| n <= u32::MAX as usize)
            .ok_or_else(|| {
                invalid(format!(
                    "ring_blocks {} × block_size {} is too large",
                    opts.ring_blocks, opts.block_size
                ))
            })?;
        let ifindex = sys::ifindex(ifname).map_err(|e| {
            io::Error::new(e.kind(), format!("interface '{ifname}' not found: {e}"))
        })?;

        let sock = PacketSocket::new()?;
        sock.set_int(libc::PACKET_VERSION, TPACKET_V3)?;
        for (receive, bytes, name) in [
            (true, opts.rcvbuf, "rcvbuf"),
            (false, opts.sndbuf, "sndbuf"),
        ] {
            if bytes > 0 {
                sock.set_buffer(receive, bytes).map_err(|e| {
                    io::Error::new(
                        e.kind(),
                        format!("setting the socket's {name} to {bytes}: {e}"),
                    )
                })?;
            }
        }
        let vnet_hdr = opts.vnet_hdr
            && kernel_has_ring_vnet_hdr()
            && sock.set_int(libc::PACKET_VNET_HDR, 1).is_ok();
        let req = libc::tpacket_req3 {
            tp_block_size: opts.block_size as u32,
            tp_block_nr: opts.ring_blocks as u32,
            tp_frame_size: FRAME_SIZE as u32,
            tp_frame_nr: frames as u32,
            tp_retire_blk_tov: opts.retire_blk_tov_ms,
            tp_sizeof_priv: 0,
            tp_feature_req_word: 0,
        };
        // Without virtio-net headers only the ring says which checksums
        // are partial: `recvmmsg` would hand them over unfinished.
        let rx = if vnet_hdr { opts.rx } else { RxMode::Ring };
        let ring = match rx {
            RxMode::Ring => {
                sock.set_rx_ring(&req)?;
                Some(RxRing::map(&sock, opts.block_size, opts.ring_blocks)?)
            }
            RxMode::Recv => None,
        };
        let recv = (rx == RxMode::Recv).then(|| {
            Box::new(Recv {
                heads: Vec::with_capacity(sys::RECV_BATCH),
                hdrs: [[0; VNET_HDR_LEN_LEGACY]; sys::RECV_BATCH],
                spill: vec![0; sys::RECV_BATCH * SPILL].into_boxed_slice(),
                lens: [(0, false); sys::RECV_BATCH],
                next: 0,
                got: 0,
            })
        });
        if opts.qdisc_bypass {
            sock.set_int(libc::PACKET_QDISC_BYPASS, 1)?;
        }
        // Linux 4.20+; older kernels loop our frames back and the receive
        // path skips them by their packet type instead.
        let _ = sock.set_int(libc::PACKET_IGNORE_OUTGOING, 1);
        if opts.promiscuous {
            sock.add_promiscuous(ifindex)?;
        }
        if opts.allmulti {
            sock.add_allmulti(ifindex)?;
        }
        sock.bind(ifindex, ETH_P_ALL)?;
        if let Some(id) = opts.fanout {
            let arg = libc::c_int::from(id) | ((libc::PACKET_FANOUT_HASH as libc::c_int) << 16);
            sock.set_int(libc::PACKET_FANOUT, arg)?;
        }
        Ok(AfPacket {
            ring,
            recv,
            sock,
            ifname: ifname.to_string(),
            ifindex,
            vnet_hdr,
            next_block: 0,
            walk: None,
            pending: None,
            pool: BufPool::new(POOL_LIMIT),
            spare: Vec::new(),
            ends: Vec::new(),
            udp_gso: opts.udp_gso && vnet_hdr,
            gso_sizes: Vec::new(),
            scratch: PacketBuf::new(DEFAULT_HEADROOM, DEFAULT_CAPACITY),
            split: None,
            stats: AfPacketStats::default(),
            link: crate::sys::netlink::LinkWatch::open(ifindex).ok(),
        })
    }

    pub fn ifname(&self) -> &str {
        &self.ifname
    }

    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// Whether frames come with a virtio-net header (exact checksum
    /// offsets, super-frames cut) or without (offsets from the headers,
    /// super-frames dropped).
    pub fn vnet_hdr(&self) -> bool {
        self.vnet_hdr
    }

    /// The counters, with the kernel's ring counters brought up to date
    /// (one `getsockopt`; call it from the owning worker, not per packet).
    pub fn stats(&mut self) -> AfPacketStats {
        if let Ok(st) = self.sock.stats() {
            self.stats.ring_packets += u64::from(st.tp_packets);
            self.stats.ring_drops += u64::from(st.tp_drops);
            self.stats.ring_freezes += u64::from(st.tp_freeze_q_cnt);
        }
        self.stats
    }

    /// Hands out the next segment of the super-frame being cut.
    fn next_segment(&mut self, bufs: &mut Vec<PacketBuf>) {
        let Some(p) = self.pending.as_mut() else {
            return;
        };
        let frame = self
            .walk
            .and_then(|w| self.ring.as_ref()?.block(w.block))
            .and_then(|b| b.get(p.start..p.start + p.len));
        let mut out = self.pool.get();
        let r = match frame {
            Some(f) => p.tso.write_segment(f, p.next, &mut out),
            None => Err(OffloadDrop::Malformed),
        };
        match r.and_then(|()| restore_vlan(&mut out, p.vlan, &mut self.stats)) {
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

    /// Handles the frame at `off` in block `block`: delivers it, starts
    /// cutting it, or drops it with a reason. Returns its `tp_next_offset`.
    fn take_frame(&mut self, block: usize, off: usize, bufs: &mut Vec<PacketBuf>) -> Option<usize> {
        let b = self.ring.as_ref()?.block(block)?;
        let h = b.get(off..off + H_MIN)?;
        let next = rd32(h, H_NEXT) as usize;
        if h[H_PKTTYPE] == libc::PACKET_OUTGOING {
            self.stats.outgoing_ignored += 1;
            return Some(next);
        }
        let snaplen = rd32(h, H_SNAPLEN) as usize;
        let len = rd32(h, H_LEN) as usize;
        let status = rd32(h, H_STATUS);
        let mac = usize::from(rd16(h, H_MAC));
        let vlan = (status & libc::TP_STATUS_VLAN_VALID != 0).then(|| {
            let tpid = if status & libc::TP_STATUS_VLAN_TPID_VALID != 0 {
                rd16(h, H_VLAN_TPID)
            } else {
                0x8100
            };
            let tci = rd32(h, H_VLAN_TCI) as u16;
            let [t0, t1] = tpid.to_be_bytes();
            let [c0, c1] = tci.to_be_bytes();
            [t0, t1, c0, c1]
        });
        let start = off + mac;
        let Some(frame) = b.get(start..start + snaplen) else {
            self.stats.rx_drops.count(OffloadDrop::Malformed);
            return Some(next);
        };
        if snaplen < len {
            self.stats.rx_drops.count(OffloadDrop::Truncated);
            return Some(next);
        }
        let hdr = if self.vnet_hdr {
            match start
                .checked_sub(VNET_HDR_LEN_LEGACY)
                .and_then(|s| b.get(s..start))
                .map(VirtioNetHdr::parse_native)
            {
                Some(Ok(h)) => Some(h),
                Some(Err(r)) => {
                    self.stats.rx_drops.count(r);
                    return Some(next);
                }
                None => {
                    self.stats.rx_drops.count(OffloadDrop::BadVnetHdr);
                    return Some(next);
                }
            }
        } else {
            None
        };
        match hdr {
            Some(hdr) if hdr.is_gso() => {
                match Cut::new(frame, &hdr, MAX_SEGMENT) {
                    Ok(tso) => {
                        match tso {
                            Cut::Tcp(_) => self.stats.gso_frames += 1,
                            Cut::Udp(u) => {
                                self.stats.udp_gro_frames += 1;
                                self.stats.udp_gro_datagrams += u.count() as u64;
                            }
                        }
                        self.pending = Some(Pending {
                            start,
                            len: snaplen,
                            tso,
                            next: 0,
                            vlan,
                        });
                    }
                    Err(r) => self.stats.rx_drops.count(r),
                }
                return Some(next);
            }
            None if status & TP_STATUS_GSO_TCP != 0 => {
                self.stats.rx_drops.count(OffloadDrop::GsoWithoutVnetHdr);
                return Some(next);
            }
            _ => {}
        }
        // A plain frame: copy, complete the checksum, put the tag back.
        let mut pkt = self.pool.get();
        if snaplen > MAX_SEGMENT || pkt.set_frame(frame).is_err() {
            self.pool.put(pkt);
            self.stats.rx_drops.count(OffloadDrop::Oversize);
            return Some(next);
        }
        let done = match hdr {
            Some(hdr) => offload::prepare(pkt.as_mut_slice(), &hdr, MAX_SEGMENT).map(|p| {
                matches!(
                    p,
                    Prepared::Frame {
                        csum_completed: true
                    }
                )
            }),
            None if status & libc::TP_STATUS_CSUMNOTREADY != 0 => {
                offload::complete_csum_from_headers(pkt.as_mut_slice()).map(|()| true)
            }
            None => Ok(false),
        };
        match done.and_then(|c| restore_vlan(&mut pkt, vlan, &mut self.stats).map(|()| c)) {
            Ok(completed) => {
                let outer = completed
                    && hdr
                        .as_ref()
                        .is_none_or(|h| completed_outermost(pkt.as_slice(), h));
                pkt.set_l4_csum_valid(vouched(Some(status), hdr.as_ref(), outer));
                self.stats.csum_completed += u64::from(completed);
                self.stats.rx_frames += 1;
                self.stats.rx_bytes += pkt.len() as u64;
                bufs.push(pkt);
            }
            Err(r) => {
                self.stats.rx_drops.count(r);
                self.pool.put(pkt);
            }
        }
        Some(next)
    }
}

/// Where a frame longer than a packet buffer continues, per message of a
/// `recvmmsg` batch: up to the largest super-frame.
const SPILL: usize = crate::backend::SUPER_FRAME_MAX - MAX_SEGMENT;

/// The receive side in [`RxMode::Recv`]: one batch's buffers, kept.
struct Recv {
    /// Packet buffers ready to receive into (refilled from the pool).
    heads: Vec<PacketBuf>,
    hdrs: [[u8; VNET_HDR_LEN_LEGACY]; sys::RECV_BATCH],
    spill: Box<[u8]>,
    lens: [(usize, bool); sys::RECV_BATCH],
    /// The batch's messages not taken yet: `next..got`. A UDP aggregate
    /// is split before the messages after it are taken (in order, and
    /// one split at a time).
    next: usize,
    got: usize,
}

impl AfPacket {
    /// [`Backend::rx_burst`] in [`RxMode::Recv`]: `recvmmsg` batches into
    /// pool buffers; a super-frame (longer than one) is put together in a
    /// [`BigPool`](crate::backend::BigPool) buffer and handed over whole,
    /// marked with its [`Gso`](dataplane::Gso). VLAN tags the kernel
    /// stripped are not restored in this mode (the ring's header carries
    /// them; `recvmmsg` would need `PACKET_AUXDATA`). A UDP aggregate is
    /// split into its datagrams before the frames that came after it in
    /// the same batch are taken.
    fn rx_burst_recv(&mut self, bufs: &mut Vec<PacketBuf>, max: usize) -> io::Result<usize> {
        let start = bufs.len();
        let Some(mut r) = self.recv.take() else {
            return Ok(0);
        };
        let hdr_len = if self.vnet_hdr {
            VNET_HDR_LEN_LEGACY
        } else {
            0
        };
        let mut result = Ok(());
        // The last batch was short: nothing more waits once it is taken.
        let mut short = false;
        while bufs.len() - start < max {
            if self.split.is_some() {
                self.next_datagram(bufs);
                continue;
            }
            if r.next < r.got {
                let i = r.next;
                r.next += 1;
                let fresh = self.pool.get();
                let pkt = std::mem::replace(&mut r.heads[i], fresh);
                let (n, trunc) = r.lens[i];
                let hdr = r.hdrs[i];
                let spill = &r.spill[i * SPILL..(i + 1) * SPILL];
                self.take_received(pkt, &hdr[..hdr_len], n, trunc, spill, bufs);
                continue;
            }
            if short {
                break;
            }
            let want = (max - (bufs.len() - start)).min(sys::RECV_BATCH);
            while r.heads.len() < want {
                r.heads.push(self.pool.get());
            }
            for h in &mut r.heads[..want] {
                h.reset(DEFAULT_HEADROOM);
                let room = h.tailroom().min(MAX_SEGMENT);
                let _ = h.push_back(room);
            }
            let got = match self.sock.recv_batch(
                &mut r.hdrs,
                hdr_len,
                &mut r.heads[..want],
                &mut r.spill,
                SPILL,
                &mut r.lens,
            ) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    result = Err(e);
                    break;
                }
            };
            // Taken one at a time above: a message after an aggregate
            // waits until the aggregate is split.
            r.next = 0;
            r.got = got;
            short = got < want;
        }
        self.recv = Some(r);
        match result {
            Err(e) if bufs.len() == start => Err(e),
            _ => Ok(bufs.len() - start),
        }
    }

    /// Starts splitting a received UDP aggregate (or drops it with a
    /// reason); its datagrams are handed out by [`AfPacket::next_datagram`].
    fn start_split(&mut self, agg: PacketBuf, hdr: &VirtioNetHdr) {
        match UdpSplit::new(agg.as_slice(), hdr, MAX_SEGMENT) {
            Ok(u) => {
                self.stats.udp_gro_frames += 1;
                self.stats.udp_gro_datagrams += u.count() as u64;
                self.split = Some((agg, u, 0));
            }
            Err(r) => {
                self.stats.rx_drops.count(r);
                self.pool.put(agg);
            }
        }
    }

    /// Hands out the next datagram of the aggregate being split.
    fn next_datagram(&mut self, bufs: &mut Vec<PacketBuf>) {
        let Some((agg, u, next)) = self.split.as_mut() else {
            return;
        };
        let mut out = self.pool.get();
        match u.write_segment(agg.as_slice(), *next, &mut out) {
            Ok(()) => {
                // Its checksum was just computed in full.
                out.set_l4_csum_valid(true);
                self.stats.rx_frames += 1;
                self.stats.rx_bytes += out.len() as u64;
                bufs.push(out);
                *next += 1;
                if *next < u.count() {
                    return;
                }
            }
            Err(r) => {
                self.stats.rx_drops.count(r);
                self.pool.put(out);
            }
        }
        if let Some((agg, _, _)) = self.split.take() {
            self.pool.put(agg);
        }
    }

    /// Delivers (or drops with a reason) one frame `recvmmsg` put in
    /// `pkt` (and `spill`, past the buffer's room): `n` bytes in all,
    /// header included.
    fn take_received(
        &mut self,
        mut pkt: PacketBuf,
        hdr: &[u8],
        n: usize,
        trunc: bool,
        spill: &[u8],
        bufs: &mut Vec<PacketBuf>,
    ) {
        let room = pkt.len();
        let len = match n.checked_sub(hdr.len()) {
            Some(len) if !trunc => len,
            _ => {
                self.pool.put(pkt);
                self.stats.rx_drops.count(OffloadDrop::Truncated);
                return;
            }
        };
        let hdr = if hdr.is_empty() {
            None
        } else {
            match VirtioNetHdr::parse_native(hdr) {
                Ok(h) => Some(h),
                Err(r) => {
                    self.pool.put(pkt);
                    self.stats.rx_drops.count(r);
                    return;
                }
            }
        };
        if len > room {
            // Longer than a packet buffer: a super-frame, put together.
            let mut big = crate::backend::BigPool::get();
            let whole = big
                .push_back(len)
                .map(|b| {
                    b[..room].copy_from_slice(pkt.as_slice());
                    b[room..].copy_from_slice(&spill[..len - room]);
                })
                .is_ok();
            self.pool.put(pkt);
            if let (true, Some(h)) = (whole, hdr) {
                if h.gso_type == offload::VIRTIO_NET_HDR_GSO_UDP_L4 {
                    self.start_split(big, &h);
                    return;
                }
            }
            let gso = match (whole, hdr) {
                (true, Some(h)) if h.is_gso() => {
                    Tso::new(big.as_slice(), h.gso_type, h.gso_size, MAX_SEGMENT)
                        .map(|t| t.gso(h.gso_type))
                }
                (true, None) => Err(OffloadDrop::GsoWithoutVnetHdr),
                _ => Err(OffloadDrop::Oversize),
            };
            match gso {
                Ok(g) => {
                    big.set_gso(Some(g));
                    self.stats.gso_frames += 1;
                    self.stats.rx_frames += 1;
                    self.stats.rx_bytes += len as u64;
                    bufs.push(big);
                }
                Err(r) => {
                    self.stats.rx_drops.count(r);
                    crate::backend::BigPool::put(big);
                }
            }
            return;
        }
        pkt.truncate(len);
        if let Some(h) = hdr.filter(|h| h.gso_type == offload::VIRTIO_NET_HDR_GSO_UDP_L4) {
            self.start_split(pkt, &h);
            return;
        }
        let done = match hdr {
            Some(h) if h.is_gso() => {
                // A super-frame short enough to fit: cut as the switch would.
                match Tso::new(pkt.as_slice(), h.gso_type, h.gso_size, MAX_SEGMENT) {
                    Ok(t) => {
                        pkt.set_gso(Some(t.gso(h.gso_type)));
                        self.stats.gso_frames += 1;
                        Ok(false)
                    }
                    Err(r) => Err(r),
                }
            }
            Some(h) => offload::prepare(pkt.as_mut_slice(), &h, MAX_SEGMENT).map(|p| {
                matches!(
                    p,
                    Prepared::Frame {
                        csum_completed: true
                    }
                )
            }),
            None => Ok(false),
        };
        match done {
            Ok(completed) => {
                // No `tp_status` in this mode (it needs PACKET_AUXDATA):
                // only the virtio-net header can vouch.
                let outer = completed
                    && hdr
                        .as_ref()
                        .is_some_and(|h| completed_outermost(pkt.as_slice(), h));
                pkt.set_l4_csum_valid(vouched(None, hdr.as_ref(), outer));
                self.stats.csum_completed += u64::from(completed);
                self.stats.rx_frames += 1;
                self.stats.rx_bytes += pkt.len() as u64;
                bufs.push(pkt);
            }
            Err(r) => {
                self.stats.rx_drops.count(r);
                self.pool.put(pkt);
            }
        }
    }
}

/// Puts an 802.1Q/802.1ad tag the kernel stripped back after the MACs.
fn restore_vlan(
    pkt: &mut PacketBuf,
    tag: Option<[u8; 4]>,
    stats: &mut AfPacketStats,
) -> Result<(), OffloadDrop> {
    let Some(tag) = tag else {
        return Ok(());
    };
    if pkt.len() < 12 {
        return Err(OffloadDrop::Malformed);
    }
    pkt.push_front(4).map_err(|_| OffloadDrop::Oversize)?;
    let s = pkt.as_mut_slice();
    s.copy_within(4..16, 0);
    s[12..16].copy_from_slice(&tag);
    stats.vlan_restored += 1;
    Ok(())
}

fn rd32(b: &[u8], at: usize) -> u32 {
    b.get(at..at + 4)
        .map_or(0, |s| u32::from_ne_bytes([s[0], s[1], s[2], s[3]]))
}

fn rd16(b: &[u8], at: usize) -> u16 {
    b.get(at..at + 2)
        .map_or(0, |s| u16::from_ne_bytes([s[0], s[1]]))
}

impl Backend for AfPacket {
    /// The interface is up and has its carrier (IFF_UP and IFF_LOWER_UP),
    /// as the kernel's last link message said: a veth whose peer went
    /// down, a NIC whose cable or switch port did, is not.
    fn link_up(&mut self) -> bool {
        self.link.as_mut().is_none_or(|l| l.poll())
    }

    /// `socket_drops`: frames the kernel could not queue for sluice (the
    /// ring or the receive buffer was full: `PACKET_STATISTICS`'
    /// `tp_drops`, which resets on every read and is added up here);
    /// `rx_refused`/`tx_refused`: frames refused for their offload
    /// metadata; `tx_errors`: sends the kernel refused.
    fn device_drops(&mut self) -> Vec<(&'static str, u64)> {
        let s = self.stats();
        vec![
            ("socket_drops", s.ring_drops),
            ("rx_refused", s.rx_drops.total()),
            ("tx_refused", s.tx_drops.total()),
            ("tx_errors", s.tx_errors),
        ]
    }

    fn device_counters(&mut self) -> Vec<(&'static str, u64)> {
        let s = self.stats();
        vec![
            ("tx_udp_gso", s.tx_udp_gso),
            ("udp_gso_refused", s.udp_gso_refused),
            ("udp_gro_frames", s.udp_gro_frames),
            ("udp_gro_datagrams", s.udp_gro_datagrams),
        ]
    }

    /// Takes frames from the ring until `max` are appended or no retired
    /// block is left; a block goes back to the kernel once walked.
    fn rx_burst(&mut self, bufs: &mut Vec<PacketBuf>, max: usize) -> io::Result<usize> {
        if self.ring.is_none() {
            return self.rx_burst_recv(bufs, max);
        }
        let start = bufs.len();
        while bufs.len() - start < max {
            if self.pending.is_some() {
                self.next_segment(bufs);
                continue;
            }
            let Some(mut w) = self.walk else {
                let i = self.next_block;
                let Some(b) = self.ring.as_ref().and_then(|r| r.block(i)) else {
                    break;
                };
                self.walk = Some(Walk {
                    block: i,
                    left: rd32(b, BD_NUM_PKTS),
                    off: rd32(b, BD_FIRST_PKT) as usize,
                });
                continue;
            };
            if w.left == 0 {
                if let Some(r) = self.ring.as_mut() {
                    r.release(w.block);
                    self.next_block = (w.block + 1) % r.blocks();
                }
                self.walk = None;
                continue;
            }
            let next = self.take_frame(w.block, w.off, bufs);
            w.left -= 1;
            match next {
                Some(n) if n > 0 || w.left == 0 => w.off += n,
                // A block that does not hold together: skip its rest.
                _ => {
                    self.stats.rx_drops.count(OffloadDrop::Malformed);
                    w.left = 0;
                }
            }
            self.walk = Some(w);
        }
        Ok(bufs.len() - start)
    }

    /// Sends in `sendmmsg` batches until the kernel says "full" (`EAGAIN`
    /// or `ENOBUFS`); the frames after that are not taken. Every buffer
    /// goes back to the receive pool.
    /// Super-frames are cut into segments first, from and into this
    /// socket's own buffers (so a steady flow allocates nothing); what the
    /// caller learns is how many of the resulting frames were taken.
    fn tx_burst(&mut self, pkts: &mut Vec<PacketBuf>) -> io::Result<usize> {
        if self.udp_gso {
            self.stats.tx_segments += offload::udp::aggregate_super_frames(
                pkts,
                &mut self.spare,
                &mut self.ends,
                &mut self.gso_sizes,
                &mut self.pool,
                &mut self.scratch,
                &mut self.stats.tx_drops,
            ) as u64;
        } else {
            self.stats.tx_segments += offload::cut_super_frames(
                pkts,
                &mut self.spare,
                &mut self.ends,
                &mut self.pool,
                &mut self.stats.tx_drops,
            ) as u64;
            self.gso_sizes.clear();
        }
        let plain: &[u8] = if self.vnet_hdr { &TX_VNET_HDR } else { &[] };
        let mut i = 0;
        let mut fatal = None;
        while i < pkts.len() {
            // A run of plain frames goes in one `sendmmsg`; an aggregate
            // on its own, with its own header.
            let gso = self.gso_sizes.get(i).copied().unwrap_or(0);
            let agg_hdr;
            let (prefix, end) = if gso == 0 {
                let run = self
                    .gso_sizes
                    .get(i..)
                    .map_or(0, |g| g.iter().position(|&g| g != 0).unwrap_or(g.len()));
                (plain, if run == 0 { pkts.len() } else { i + run })
            } else {
                agg_hdr = offload::udp::gso_header_native(gso);
                (&agg_hdr[..], i + 1)
            };
            match self.sock.send_batch(prefix, &pkts[i..end]) {
                Ok(k) => {
                    for p in &pkts[i..i + k] {
                        self.stats.tx_bytes += p.len() as u64;
                    }
                    self.stats.tx_frames += k as u64;
                    self.stats.tx_udp_gso += u64::from(gso != 0 && k > 0);
                    i += k;
                    if k == 0 {
                        break;
                    }
                }
                Err(e) => match (e.kind(), e.raw_os_error()) {
                    (io::ErrorKind::Interrupted, _) => {}
                    (io::ErrorKind::WouldBlock, _) | (_, Some(libc::ENOBUFS)) => break,
                    (_, Some(libc::EBADF | libc::ENOTSOCK)) => {
                        fatal = Some(e);
                        break;
                    }
                    // A kernel without UDP GSO on packet sockets: cut
                    // from now on (this aggregate is lost, counted).
                    (_, Some(libc::EINVAL)) if gso != 0 => {
                        self.udp_gso = false;
                        self.stats.udp_gso_refused += 1;
                        self.stats.tx_errors += 1;
                        i += 1;
                    }
                    // This frame fails on its own: count it, go on.
                    _ => {
                        self.stats.tx_errors += 1;
                        i += 1;
                    }
                },
            }
        }
        for p in pkts.drain(..) {
            self.pool.put(p);
        }
        let taken = if self.ends.is_empty() {
            i
        } else {
            offload::taken_before_cut(&self.ends, i)
        };
        match fatal {
            Some(e) => Err(e),
            None => Ok(taken),
        }
    }

    /// Cut here, into this socket's own buffers.
    fn takes_super_frames(&self) -> bool {
        true
    }

    /// Readable when a retired block waits. A burst can stop inside a
    /// block or a super-frame, which the descriptor does not show: sleep
    /// only after `rx_burst` returned 0.
    fn poll_fd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        Some(self.sock.borrow())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_offsets_match_the_kernel_layout() {
        // include/uapi/linux/if_packet.h, as the kernel lays them out.
        assert_eq!(BD_NUM_PKTS, 12);
        assert_eq!(BD_FIRST_PKT, 16);
        assert_eq!((H_NEXT, H_SNAPLEN, H_LEN, H_STATUS), (0, 12, 16, 20));
        assert_eq!((H_MAC, H_VLAN_TCI, H_VLAN_TPID), (24, 32, 36));
        assert_eq!((H_SLL, H_PKTTYPE), (48, 58));
    }

    #[test]
    fn bad_options_are_refused_naming_the_field() {
        let o = AfPacketOptions {
            block_size: 5000,
            ..AfPacketOptions::default()
        };
        let e = AfPacket::open("lo", o).err().unwrap();
        assert!(e.to_string().contains("block_size 5000"), "{e}");
        let o = AfPacketOptions {
            ring_blocks: 0,
            ..AfPacketOptions::default()
        };
        let e = AfPacket::open("lo", o).err().unwrap();
        assert!(e.to_string().contains("ring_blocks 0"), "{e}");
        let e = AfPacket::open("sluice-nonexistent0", AfPacketOptions::default())
            .err()
            .unwrap();
        assert!(e.to_string().contains("sluice-nonexistent0"), "{e}");
    }

    #[test]
    fn a_stripped_vlan_tag_goes_back_after_the_macs() {
        let mut st = AfPacketStats::default();
        let frame: Vec<u8> = (0..20).collect();
        let mut p = PacketBuf::from_frame(&frame);
        restore_vlan(&mut p, Some([0x81, 0, 0x0f, 0xff]), &mut st).unwrap();
        let s = p.as_slice();
        assert_eq!(&s[..12], &frame[..12]);
        assert_eq!(&s[12..16], &[0x81, 0, 0x0f, 0xff]);
        assert_eq!(&s[16..], &frame[12..]);
        assert_eq!(st.vlan_restored, 1);
        let mut short = PacketBuf::from_frame(&[0; 11]);
        assert_eq!(
            restore_vlan(&mut short, Some([0; 4]), &mut st),
            Err(OffloadDrop::Malformed)
        );
    }
}
