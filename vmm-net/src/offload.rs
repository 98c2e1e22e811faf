//! Guest offloads done in software: the virtio-net header, checksum
//! completion and TCP segmentation (TSO/GSO).
//!
//! A guest (or the kernel behind a TAP or a veth) that is told its device
//! can checksum and segment hands over two kinds of frames a port must not
//! see as they are: frames whose TCP/UDP checksum is only *partial* (the
//! pseudo-header sum, with `csum_start`/`csum_offset` saying where to
//! finish it), and TCP *super-frames* of up to 64 KiB that the device is
//! to cut into `gso_size`-byte segments. This module turns both into what
//! a wire would carry:
//!
//! - [`complete_csum`] finishes a partial checksum exactly as Linux's
//!   `skb_checksum_help` does (a computed zero is written as `0xffff`);
//! - [`Tso`] cuts a TCP super-frame (IPv4 or IPv6, ECN or not) into
//!   segments of at most `gso_size` payload bytes, each a complete frame:
//!   IPv4 total length, identification (incremented per segment, as Linux
//!   does without `FIXEDID`) and header checksum; IPv6 payload length; TCP
//!   sequence number advanced by the payload before it; FIN and PSH only on
//!   the last segment, CWR only on the first; a full TCP checksum.
//!
//! What is guaranteed: no function here panics, whatever the bytes; a
//! frame that cannot be handled is refused with an [`OffloadDrop`] whose
//! [`name`](OffloadDrop::name) is stable (the backends count every refusal
//! in [`OffloadDrops`]). Nothing here allocates: segments are written into
//! the caller's [`PacketBuf`]s, one at a time, so a backend can hand them
//! out across bursts without queueing them.
//!
//! Not supported (refused with a reason): UDP fragmentation/segmentation
//! offload (`GSO_UDP`, `GSO_UDP_L4`), IPv4 fragments and IPv6 routing or
//! fragment headers in a super-frame (the pseudo-header would need the
//! final destination), unknown GSO types.

pub mod udp;

use dataplane::checksum::{checksum, pseudo_header, Csum};
use dataplane::PacketBuf;
use serde::Serialize;

/// The virtio-net header TAP uses here (`TUNSETVNETHDRSZ` 12): the layout
/// of virtio 1.0's `virtio_net_hdr_v1`, byte for byte the legacy
/// `virtio_net_hdr_mrg_rxbuf` (the 10-byte `virtio_net_hdr` plus
/// `num_buffers`), fields little-endian (the TAP is put in little-endian
/// mode with `TUNSETVNETLE`).
pub const VNET_HDR_LEN: usize = 12;
/// The 10-byte legacy `virtio_net_hdr` (what AF_PACKET's
/// `PACKET_VNET_HDR` puts in front of a frame, in host byte order).
pub const VNET_HDR_LEN_LEGACY: usize = 10;

/// `flags`: the checksum at `csum_start + csum_offset` is partial.
pub const VIRTIO_NET_HDR_F_NEEDS_CSUM: u8 = 1;
/// `flags`: the checksum was already checked (receive side only).
pub const VIRTIO_NET_HDR_F_DATA_VALID: u8 = 2;
pub const VIRTIO_NET_HDR_GSO_NONE: u8 = 0;
pub const VIRTIO_NET_HDR_GSO_TCPV4: u8 = 1;
pub const VIRTIO_NET_HDR_GSO_UDP: u8 = 3;
pub const VIRTIO_NET_HDR_GSO_TCPV6: u8 = 4;
pub const VIRTIO_NET_HDR_GSO_UDP_L4: u8 = 5;
/// `gso_type` bit: the super-frame may carry CWR (TSO with ECN).
pub const VIRTIO_NET_HDR_GSO_ECN: u8 = 0x80;

/// The most segments one super-frame may make: 64 KiB cut at the
/// smallest MSS Linux sends (48 bytes, `tcp_min_snd_mss`). A frame asking
/// for more is refused rather than allowed to burn a worker's time.
pub const MAX_SEGMENTS: usize = 65536 / 48 + 1;

const ETH_HLEN: usize = 14;
const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const ETHERTYPE_VLAN: u16 = 0x8100;
const ETHERTYPE_QINQ: u16 = 0x88a8;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;
const TCP_FIN: u8 = 0x01;
const TCP_PSH: u8 = 0x08;
const TCP_CWR: u8 = 0x80;

/// Why a frame was refused. The names are stable: counters and metrics
/// print them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OffloadDrop {
    /// The virtio-net header is missing or short.
    BadVnetHdr,
    /// `csum_start`/`csum_offset` point outside the frame.
    BadCsumOffsets,
    /// UDP segmentation (UFO or USO) was asked; sluice does not do it.
    UdpGso,
    /// A GSO type that virtio-net does not define.
    UnknownGso,
    /// A TCP super-frame with `gso_size` 0.
    BadGsoSize,
    /// The headers of a frame that needs work do not parse: not
    /// Ethernet/IPv4/IPv6/TCP-or-UDP, truncated, an IPv4 fragment, or an
    /// IPv6 routing or fragment header.
    Malformed,
    /// The GSO type does not match the frame (TCPv4 on IPv6, not TCP...).
    GsoMismatch,
    /// More than [`MAX_SEGMENTS`] segments would be made.
    TooManySegments,
    /// A segment (headers + `gso_size`) does not fit a packet buffer.
    SegmentTooLarge,
    /// The frame was longer than the device's read buffer or ring slot.
    Truncated,
    /// A super-frame arrived with nothing saying how to cut it (AF_PACKET
    /// without `PACKET_VNET_HDR`).
    GsoWithoutVnetHdr,
    /// A frame that is no super-frame but does not fit a packet buffer
    /// (an MTU above sluice's 9216-byte jumbo limit).
    Oversize,
}

impl OffloadDrop {
    pub const ALL: [OffloadDrop; 12] = [
        OffloadDrop::BadVnetHdr,
        OffloadDrop::BadCsumOffsets,
        OffloadDrop::UdpGso,
        OffloadDrop::UnknownGso,
        OffloadDrop::BadGsoSize,
        OffloadDrop::Malformed,
        OffloadDrop::GsoMismatch,
        OffloadDrop::TooManySegments,
        OffloadDrop::SegmentTooLarge,
        OffloadDrop::Truncated,
        OffloadDrop::GsoWithoutVnetHdr,
        OffloadDrop::Oversize,
    ];

    /// The stable name counters and metrics use.
    pub fn name(self) -> &'static str {
        match self {
            OffloadDrop::BadVnetHdr => "bad_vnet_hdr",
            OffloadDrop::BadCsumOffsets => "bad_csum_offsets",
            OffloadDrop::UdpGso => "udp_gso",
            OffloadDrop::UnknownGso => "unknown_gso",
            OffloadDrop::BadGsoSize => "bad_gso_size",
            OffloadDrop::Malformed => "malformed",
            OffloadDrop::GsoMismatch => "gso_mismatch",
            OffloadDrop::TooManySegments => "too_many_segments",
            OffloadDrop::SegmentTooLarge => "segment_too_large",
            OffloadDrop::Truncated => "truncated",
            OffloadDrop::GsoWithoutVnetHdr => "gso_without_vnet_hdr",
            OffloadDrop::Oversize => "oversize",
        }
    }
}

/// A counter per [`OffloadDrop`] reason (field names are the reasons'
/// names).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct OffloadDrops {
    pub bad_vnet_hdr: u64,
    pub bad_csum_offsets: u64,
    pub udp_gso: u64,
    pub unknown_gso: u64,
    pub bad_gso_size: u64,
    pub malformed: u64,
    pub gso_mismatch: u64,
    pub too_many_segments: u64,
    pub segment_too_large: u64,
    pub truncated: u64,
    pub gso_without_vnet_hdr: u64,
    pub oversize: u64,
}

impl OffloadDrops {
    fn slot(&mut self, r: OffloadDrop) -> &mut u64 {
        match r {
            OffloadDrop::BadVnetHdr => &mut self.bad_vnet_hdr,
            OffloadDrop::BadCsumOffsets => &mut self.bad_csum_offsets,
            OffloadDrop::UdpGso => &mut self.udp_gso,
            OffloadDrop::UnknownGso => &mut self.unknown_gso,
            OffloadDrop::BadGsoSize => &mut self.bad_gso_size,
            OffloadDrop::Malformed => &mut self.malformed,
            OffloadDrop::GsoMismatch => &mut self.gso_mismatch,
            OffloadDrop::TooManySegments => &mut self.too_many_segments,
            OffloadDrop::SegmentTooLarge => &mut self.segment_too_large,
            OffloadDrop::Truncated => &mut self.truncated,
            OffloadDrop::GsoWithoutVnetHdr => &mut self.gso_without_vnet_hdr,
            OffloadDrop::Oversize => &mut self.oversize,
        }
    }

    pub fn count(&mut self, r: OffloadDrop) {
        *self.slot(r) += 1;
    }

    pub fn get(&self, r: OffloadDrop) -> u64 {
        let mut c = *self;
        *c.slot(r)
    }

    pub fn total(&self) -> u64 {
        OffloadDrop::ALL.iter().map(|&r| self.get(r)).sum()
    }
}

/// The virtio-net header in front of every frame of a TAP with
/// `IFF_VNET_HDR` (see [`VNET_HDR_LEN`] for the layout).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VirtioNetHdr {
    pub flags: u8,
    pub gso_type: u8,
    /// Length of the headers; only a hint (Linux fills in its linear
    /// length), so segmentation finds the headers itself.
    pub hdr_len: u16,
    pub gso_size: u16,
    pub csum_start: u16,
    pub csum_offset: u16,
    /// Only in the 12-byte layout; 0 otherwise.
    pub num_buffers: u16,
}

impl VirtioNetHdr {
    /// Reads a little-endian header of 10 or 12 bytes (`b.len()` says
    /// which; longer input is read as 12).
    pub fn parse(b: &[u8]) -> Result<Self, OffloadDrop> {
        Self::parse_with(b, u16::from_le_bytes)
    }

    /// Reads a header in host byte order: what AF_PACKET's
    /// `PACKET_VNET_HDR` writes.
    pub fn parse_native(b: &[u8]) -> Result<Self, OffloadDrop> {
        Self::parse_with(b, u16::from_ne_bytes)
    }

    fn parse_with(b: &[u8], rd: fn([u8; 2]) -> u16) -> Result<Self, OffloadDrop> {
        let [flags, gso_type, h0, h1, g0, g1, s0, s1, o0, o1, rest @ ..] = b else {
            return Err(OffloadDrop::BadVnetHdr);
        };
        let num_buffers = match rest {
            [n0, n1, ..] => rd([*n0, *n1]),
            _ => 0,
        };
        Ok(VirtioNetHdr {
            flags: *flags,
            gso_type: *gso_type,
            hdr_len: rd([*h0, *h1]),
            gso_size: rd([*g0, *g1]),
            csum_start: rd([*s0, *s1]),
            csum_offset: rd([*o0, *o1]),
            num_buffers,
        })
    }

    /// The 12-byte little-endian form.
    pub fn to_bytes(&self) -> [u8; VNET_HDR_LEN] {
        let mut b = [0u8; VNET_HDR_LEN];
        b[0] = self.flags;
        b[1] = self.gso_type;
        b[2..4].copy_from_slice(&self.hdr_len.to_le_bytes());
        b[4..6].copy_from_slice(&self.gso_size.to_le_bytes());
        b[6..8].copy_from_slice(&self.csum_start.to_le_bytes());
        b[8..10].copy_from_slice(&self.csum_offset.to_le_bytes());
        b[10..12].copy_from_slice(&self.num_buffers.to_le_bytes());
        b
    }

    /// Whether the frame is a super-frame to segment.
    pub fn is_gso(&self) -> bool {
        self.gso_type != VIRTIO_NET_HDR_GSO_NONE
    }
}

/// What a frame needs after [`prepare`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Prepared {
    /// The frame is ready as it is (its checksum was completed in place
    /// when `csum_completed`).
    Frame { csum_completed: bool },
    /// A super-frame: write its segments with [`Tso::write_segment`].
    Segment(Tso),
}

/// Handles the virtio-net header of a frame read from a device:
/// completes a partial checksum in place, or validates a TCP super-frame
/// for segmentation into segments of at most `max_segment` bytes.
pub fn prepare(
    frame: &mut [u8],
    hdr: &VirtioNetHdr,
    max_segment: usize,
) -> Result<Prepared, OffloadDrop> {
    match hdr.gso_type {
        VIRTIO_NET_HDR_GSO_NONE => {
            if hdr.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM == 0 {
                return Ok(Prepared::Frame {
                    csum_completed: false,
                });
            }
            complete_csum(
                frame,
                usize::from(hdr.csum_start),
                usize::from(hdr.csum_offset),
            )?;
            Ok(Prepared::Frame {
                csum_completed: true,
            })
        }
        t => match t & !VIRTIO_NET_HDR_GSO_ECN {
            VIRTIO_NET_HDR_GSO_TCPV4 | VIRTIO_NET_HDR_GSO_TCPV6 => {
                Tso::new(frame, t, hdr.gso_size, max_segment).map(Prepared::Segment)
            }
            VIRTIO_NET_HDR_GSO_UDP | VIRTIO_NET_HDR_GSO_UDP_L4 => Err(OffloadDrop::UdpGso),
            _ => Err(OffloadDrop::UnknownGso),
        },
    }
}

/// Finishes a partial checksum: the one's-complement sum of everything
/// from `start` to the end of the frame (the checksum field holds the
/// pseudo-header sum the sender put there) is written, complemented, at
/// `start + offset`. A computed zero is written as `0xffff` (the same
/// value in one's complement, and what UDP requires; Linux does the same).
pub fn complete_csum(frame: &mut [u8], start: usize, offset: usize) -> Result<(), OffloadDrop> {
    let end = frame.len();
    complete_csum_region(frame, start, offset, end)
}

fn complete_csum_region(
    frame: &mut [u8],
    start: usize,
    offset: usize,
    end: usize,
) -> Result<(), OffloadDrop> {
    let field = start
        .checked_add(offset)
        .ok_or(OffloadDrop::BadCsumOffsets)?;
    if end > frame.len() || start >= end || field + 2 > end {
        return Err(OffloadDrop::BadCsumOffsets);
    }
    let mut c = Csum::new();
    c.add_bytes(&frame[start..end]);
    let v = match c.finish() {
        0 => 0xffff,
        v => v,
    };
    frame[field..field + 2].copy_from_slice(&v.to_be_bytes());
    Ok(())
}

/// Completes the TCP or UDP checksum of a frame whose checksum is known to
/// be partial but whose offsets are not (AF_PACKET rings without
/// `PACKET_VNET_HDR` say only "not ready"): the L4 header is found by
/// parsing, and the checksum covers the IP payload (not any Ethernet
/// padding).
pub fn complete_csum_from_headers(frame: &mut [u8]) -> Result<(), OffloadDrop> {
    let l = Layout::parse(frame)?;
    let offset = match l.proto {
        IPPROTO_TCP => 16,
        IPPROTO_UDP => 6,
        _ => return Err(OffloadDrop::Malformed),
    };
    let end = l.ip_end.ok_or(OffloadDrop::Malformed)?;
    complete_csum_region(frame, l.l4, offset, end)
}

/// Where the headers of an Ethernet/IP frame are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Layout {
    pub(crate) l3: usize,
    pub(crate) v6: bool,
    pub(crate) l4: usize,
    pub(crate) proto: u8,
    /// The end of the IP packet by its own length field, when that is
    /// consistent with the frame (a GSO super-frame may carry 0 there).
    pub(crate) ip_end: Option<usize>,
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

impl Layout {
    pub(crate) fn parse(f: &[u8]) -> Result<Layout, OffloadDrop> {
        let bad = OffloadDrop::Malformed;
        let mut l3 = ETH_HLEN;
        let mut ethertype = be16(f, 12).ok_or(bad)?;
        // Up to two VLAN tags (802.1Q, 802.1ad QinQ).
        for _ in 0..2 {
            if ethertype != ETHERTYPE_VLAN && ethertype != ETHERTYPE_QINQ {
                break;
            }
            ethertype = be16(f, l3 + 2).ok_or(bad)?;
            l3 += 4;
        }
        match ethertype {
            ETHERTYPE_IPV4 => {
                let vihl = *f.get(l3).ok_or(bad)?;
                let ihl = usize::from(vihl & 0x0f) * 4;
                if vihl >> 4 != 4 || ihl < 20 || l3 + ihl > f.len() {
                    return Err(bad);
                }
                // No fragments: MF set or a fragment offset.
                if be16(f, l3 + 6).ok_or(bad)? & 0x3fff != 0 {
                    return Err(bad);
                }
                let tot = usize::from(be16(f, l3 + 2).ok_or(bad)?);
                let ip_end = (tot >= ihl && l3 + tot <= f.len()).then_some(l3 + tot);
                Ok(Layout {
                    l3,
                    v6: false,
                    l4: l3 + ihl,
                    proto: f[l3 + 9],
                    ip_end,
                })
            }
            ETHERTYPE_IPV6 => {
                if f.len() < l3 + 40 || f[l3] >> 4 != 6 {
                    return Err(bad);
                }
                let plen = usize::from(be16(f, l3 + 4).ok_or(bad)?);
                let ip_end = (l3 + 40 + plen <= f.len()).then_some(l3 + 40 + plen);
                let mut next = f[l3 + 6];
                let mut at = l3 + 40;
                // Hop-by-hop and destination options only: a routing
                // header changes the pseudo-header's destination, a
                // fragment cannot be offloaded.
                for _ in 0..8 {
                    match next {
                        0 | 60 => {
                            let len = (usize::from(*f.get(at + 1).ok_or(bad)?) + 1) * 8;
                            next = f[at];
                            at += len;
                        }
                        _ => break,
                    }
                }
                if matches!(next, 0 | 60 | 43 | 44) || at > f.len() {
                    return Err(bad);
                }
                Ok(Layout {
                    l3,
                    v6: true,
                    l4: at,
                    proto: next,
                    ip_end,
                })
            }
            _ => Err(bad),
        }
    }
}

/// A TCP super-frame, checked and ready to be cut: segment `i` of
/// [`count`](Tso::count) is written by [`write_segment`](Tso::write_segment)
/// from the same frame bytes. It holds offsets only, so a backend can keep
/// it across bursts while the frame stays in its buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tso {
    /// A Geneve-over-IPv6 encapsulation in front of the TCP frame (the
    /// super-frame went through the port whole and is cut on its way to
    /// the wire): its lengths and UDP checksum are rewritten per segment.
    outer: Option<Outer>,
    l3: usize,
    l4: usize,
    payload: usize,
    len: usize,
    mss: usize,
    v6: bool,
    count: usize,
}

impl Tso {
    /// Checks a super-frame of GSO type `gso_type` (TCPV4 or TCPV6, ECN
    /// bit allowed) to be cut at `gso_size` payload bytes into segments of
    /// at most `max_segment` bytes.
    pub fn new(
        frame: &[u8],
        gso_type: u8,
        gso_size: u16,
        max_segment: usize,
    ) -> Result<Tso, OffloadDrop> {
        let want_v6 = match gso_type & !VIRTIO_NET_HDR_GSO_ECN {
            VIRTIO_NET_HDR_GSO_TCPV4 => false,
            VIRTIO_NET_HDR_GSO_TCPV6 => true,
            VIRTIO_NET_HDR_GSO_UDP | VIRTIO_NET_HDR_GSO_UDP_L4 => return Err(OffloadDrop::UdpGso),
            _ => return Err(OffloadDrop::UnknownGso),
        };
        if gso_size == 0 {
            return Err(OffloadDrop::BadGsoSize);
        }
        let outer = Outer::parse(frame);
        let inner_l2 = outer.map_or(0, |o| o.inner_l2);
        let mut l = Layout::parse(&frame[inner_l2..])?;
        l.l3 += inner_l2;
        l.l4 += inner_l2;
        l.ip_end = l.ip_end.map(|e| e + inner_l2);
        if l.v6 != want_v6 || l.proto != IPPROTO_TCP {
            return Err(OffloadDrop::GsoMismatch);
        }
        let doff = usize::from(*frame.get(l.l4 + 12).ok_or(OffloadDrop::Malformed)? >> 4) * 4;
        let payload = l.l4 + doff;
        if doff < 20 || payload > frame.len() {
            return Err(OffloadDrop::Malformed);
        }
        let mss = usize::from(gso_size);
        if payload + mss > max_segment {
            return Err(OffloadDrop::SegmentTooLarge);
        }
        // An IPv4 total length or IPv6 payload length must fit 16 bits.
        let ip_fixed = if l.v6 { 40 } else { 0 };
        if payload - l.l3 - ip_fixed + mss > usize::from(u16::MAX) {
            return Err(OffloadDrop::SegmentTooLarge);
        }
        let count = (frame.len() - payload).div_ceil(mss).max(1);
        if count > MAX_SEGMENTS {
            return Err(OffloadDrop::TooManySegments);
        }
        if let Some(o) = outer {
            // The outer IPv6 payload and UDP lengths fit 16 bits too.
            if payload - o.udp + mss > usize::from(u16::MAX) {
                return Err(OffloadDrop::SegmentTooLarge);
            }
        }
        Ok(Tso {
            outer,
            l3: l.l3,
            l4: l.l4,
            payload,
            len: frame.len(),
            mss,
            v6: l.v6,
            count,
        })
    }

    /// Checks a super-frame a port has processed whole (see
    /// [`Gso`](dataplane::Gso)), encapsulated in Geneve or not.
    pub fn for_gso(
        frame: &[u8],
        gso: dataplane::Gso,
        max_segment: usize,
    ) -> Result<Tso, OffloadDrop> {
        Tso::new(frame, gso_type_of(gso), gso.mss, max_segment)
    }

    /// What the super-frame is, for a port to carry it whole:
    /// `gso_type` is the virtio-net header's (for its ECN bit).
    pub fn gso(&self, gso_type: u8) -> dataplane::Gso {
        dataplane::Gso {
            // `new` checked that a segment's lengths fit 16 bits.
            mss: self.mss as u16,
            hdr_len: (self.payload - self.outer.map_or(0, |o| o.inner_l2)) as u16,
            v6: self.v6,
            ecn: gso_type & VIRTIO_NET_HDR_GSO_ECN != 0,
        }
    }

    /// How many segments the super-frame makes.
    pub fn count(&self) -> usize {
        self.count
    }

    /// The payload bytes per full segment (`gso_size`).
    pub fn mss(&self) -> usize {
        self.mss
    }

    /// Writes segment `i` of `frame` (the frame given to [`Tso::new`])
    /// into `out`, replacing its contents but keeping its headroom.
    pub fn write_segment(
        &self,
        frame: &[u8],
        i: usize,
        out: &mut PacketBuf,
    ) -> Result<(), OffloadDrop> {
        self.write_segment_with(frame, i, out, true)
    }

    /// [`Tso::write_segment`], but an encapsulation's outer UDP checksum
    /// is left as it is (its lengths are still set): for a segment that
    /// joins a UDP GSO aggregate, whose outer checksum is written for the
    /// whole aggregate.
    pub(crate) fn write_segment_for_aggregate(
        &self,
        frame: &[u8],
        i: usize,
        out: &mut PacketBuf,
    ) -> Result<(), OffloadDrop> {
        self.write_segment_with(frame, i, out, false)
    }

    fn write_segment_with(
        &self,
        frame: &[u8],
        i: usize,
        out: &mut PacketBuf,
        outer_csum: bool,
    ) -> Result<(), OffloadDrop> {
        if frame.len() != self.len || i >= self.count {
            return Err(OffloadDrop::Malformed);
        }
        let from = self.payload + i * self.mss;
        let to = (from + self.mss).min(self.len);
        let chunk = frame.get(from..to).ok_or(OffloadDrop::Malformed)?;
        out.set_frame(&frame[..self.payload])
            .map_err(|_| OffloadDrop::SegmentTooLarge)?;
        out.push_back(chunk.len())
            .map_err(|_| OffloadDrop::SegmentTooLarge)?
            .copy_from_slice(chunk);
        let s = out.as_mut_slice();
        let (l3, l4, seg_len) = (self.l3, self.l4, s.len());
        // Lengths fit 16 bits: checked in `new`.
        if self.v6 {
            s[l3 + 4..l3 + 6].copy_from_slice(&((seg_len - l3 - 40) as u16).to_be_bytes());
        } else {
            let ihl = usize::from(s[l3] & 0x0f) * 4;
            s[l3 + 2..l3 + 4].copy_from_slice(&((seg_len - l3) as u16).to_be_bytes());
            let id = u16::from_be_bytes([s[l3 + 4], s[l3 + 5]]).wrapping_add(i as u16);
            s[l3 + 4..l3 + 6].copy_from_slice(&id.to_be_bytes());
            s[l3 + 10..l3 + 12].fill(0);
            let c = checksum(&s[l3..l3 + ihl]);
            s[l3 + 10..l3 + 12].copy_from_slice(&c.to_be_bytes());
        }
        let seq = u32::from_be_bytes([s[l4 + 4], s[l4 + 5], s[l4 + 6], s[l4 + 7]])
            .wrapping_add((i * self.mss) as u32);
        s[l4 + 4..l4 + 8].copy_from_slice(&seq.to_be_bytes());
        if i + 1 != self.count {
            s[l4 + 13] &= !(TCP_FIN | TCP_PSH);
        }
        if i != 0 {
            s[l4 + 13] &= !TCP_CWR;
        }
        s[l4 + 16..l4 + 18].fill(0);
        let l4_len = (seg_len - l4) as u32;
        let mut c = if self.v6 {
            pseudo_header(
                &s[l3 + 8..l3 + 24],
                &s[l3 + 24..l3 + 40],
                IPPROTO_TCP,
                l4_len,
            )
        } else {
            pseudo_header(
                &s[l3 + 12..l3 + 16],
                &s[l3 + 16..l3 + 20],
                IPPROTO_TCP,
                l4_len,
            )
        };
        let mut tcp = Csum::new();
        tcp.add_bytes(&s[l4..]);
        c.add(tcp);
        let tcp_csum = c.finish();
        s[l4 + 16..l4 + 18].copy_from_slice(&tcp_csum.to_be_bytes());
        if let Some(o) = self.outer {
            o.fix(s, l4, outer_csum.then_some((tcp, tcp_csum)));
        }
        Ok(())
    }
}

/// Readies a super-frame (not encapsulated) for a device that cuts it
/// itself — a TAP, a virtio-net guest that took TSO: its IP length and
/// IPv4 header checksum are set for the whole frame, the TCP checksum
/// field gets the pseudo-header sum the device finishes per segment, and
/// the returned virtio-net header asks for the segmentation.
pub fn offer_whole(frame: &mut [u8], gso: dataplane::Gso) -> Result<VirtioNetHdr, OffloadDrop> {
    let tso = Tso::for_gso(frame, gso, usize::MAX)?;
    if tso.outer.is_some() {
        return Err(OffloadDrop::GsoMismatch);
    }
    let total = frame.len();
    let l = WholeTcp {
        l3: tso.l3,
        l4: tso.l4,
        payload: tso.payload,
        v6: tso.v6,
    };
    let fixed = if l.v6 { 40 } else { 0 };
    if total - l.l3 - fixed > usize::from(u16::MAX) {
        return Err(OffloadDrop::SegmentTooLarge);
    }
    Ok(l.offer(frame, total, gso_type_of(gso), gso.mss))
}

/// Where the headers of a TCP super-frame (not encapsulated) are, for
/// [`WholeTcp::offer`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct WholeTcp {
    pub(crate) l3: usize,
    pub(crate) l4: usize,
    /// Where the TCP payload starts.
    pub(crate) payload: usize,
    pub(crate) v6: bool,
}

impl WholeTcp {
    /// Writes into `head` (the super-frame's headers: its first bytes,
    /// up to at least the end of the TCP header) the IP length and IPv4
    /// header checksum of a `total`-byte frame, and the pseudo-header sum
    /// a device finishes per segment into the TCP checksum field; returns
    /// the virtio-net header that asks the device to cut it at `mss`.
    /// `total - l3` must fit 16 bits.
    pub(crate) fn offer(
        &self,
        head: &mut [u8],
        total: usize,
        gso_type: u8,
        mss: u16,
    ) -> VirtioNetHdr {
        let (l3, l4) = (self.l3, self.l4);
        let tcp_len = (total - l4) as u32;
        let pseudo = if self.v6 {
            head[l3 + 4..l3 + 6].copy_from_slice(&((total - l3 - 40) as u16).to_be_bytes());
            pseudo_header(
                &head[l3 + 8..l3 + 24],
                &head[l3 + 24..l3 + 40],
                IPPROTO_TCP,
                tcp_len,
            )
        } else {
            let ihl = usize::from(head[l3] & 0x0f) * 4;
            head[l3 + 2..l3 + 4].copy_from_slice(&((total - l3) as u16).to_be_bytes());
            head[l3 + 10..l3 + 12].fill(0);
            let c = checksum(&head[l3..l3 + ihl]);
            head[l3 + 10..l3 + 12].copy_from_slice(&c.to_be_bytes());
            pseudo_header(
                &head[l3 + 12..l3 + 16],
                &head[l3 + 16..l3 + 20],
                IPPROTO_TCP,
                tcp_len,
            )
        };
        // The device adds the segment's bytes to this sum and complements.
        head[l4 + 16..l4 + 18].copy_from_slice(&pseudo.fold().to_be_bytes());
        VirtioNetHdr {
            flags: VIRTIO_NET_HDR_F_NEEDS_CSUM,
            gso_type,
            hdr_len: self.payload as u16,
            gso_size: mss,
            csum_start: l4 as u16,
            csum_offset: 16,
            num_buffers: 0,
        }
    }
}

/// Replaces every super-frame in `pkts` by its segments, in place and in
/// order, for a device that cannot take them whole. Segments are written
/// into buffers from `pool` and the super-frames' buffers are put back
/// there ([`BufPool::put`](crate::backend::BufPool::put) returns them to the process's
/// [`BigPool`](crate::backend::BigPool)). A super-frame that cannot be cut
/// is dropped and counted in `drops`. `spare` is an empty vector kept by
/// the caller, so this allocates nothing once it has grown.
///
/// `ends` maps the result back to the frames given: when something was
/// cut, it gets for every frame given the index just past its last
/// frame in the new `pkts` ([`taken_before_cut`] turns a count of frames
/// sent into a count of frames given); when nothing was, it is left
/// empty. Returns the segments made.
pub fn cut_super_frames(
    pkts: &mut Vec<PacketBuf>,
    spare: &mut Vec<PacketBuf>,
    ends: &mut Vec<usize>,
    pool: &mut crate::backend::BufPool,
    drops: &mut OffloadDrops,
) -> usize {
    ends.clear();
    if pkts.iter().all(|p| p.gso().is_none()) {
        return 0;
    }
    let max_segment = dataplane::packet::DEFAULT_CAPACITY - dataplane::packet::DEFAULT_HEADROOM;
    let mut cut = 0;
    spare.clear();
    for p in pkts.drain(..) {
        let Some(g) = p.gso() else {
            spare.push(p);
            ends.push(spare.len());
            continue;
        };
        match Tso::for_gso(p.as_slice(), g, max_segment) {
            Ok(tso) => cut += cut_into(p.as_slice(), &tso, spare, pool, drops),
            Err(r) => drops.count(r),
        }
        ends.push(spare.len());
        pool.put(p);
    }
    std::mem::swap(pkts, spare);
    cut
}

/// Cuts `frame`, checked as `tso`, into segments in buffers from `pool`
/// pushed onto `out`; a segment that cannot be written is dropped and
/// counted. Returns the segments pushed.
fn cut_into(
    frame: &[u8],
    tso: &Tso,
    out: &mut Vec<PacketBuf>,
    pool: &mut crate::backend::BufPool,
    drops: &mut OffloadDrops,
) -> usize {
    let mut cut = 0;
    for i in 0..tso.count() {
        let mut seg = pool.get();
        match tso.write_segment(frame, i, &mut seg) {
            Ok(()) => {
                cut += 1;
                out.push(seg);
            }
            Err(r) => {
                drops.count(r);
                pool.put(seg);
            }
        }
    }
    cut
}

/// How many of the frames given to [`cut_super_frames`] went whole, when
/// `sent` of the frames it returned were sent (a super-frame counts only
/// when every one of its segments went).
pub fn taken_before_cut(ends: &[usize], sent: usize) -> usize {
    ends.partition_point(|&e| e <= sent)
}

/// The virtio-net GSO type that describes `gso`.
pub fn gso_type_of(gso: dataplane::Gso) -> u8 {
    let t = if gso.v6 {
        VIRTIO_NET_HDR_GSO_TCPV6
    } else {
        VIRTIO_NET_HDR_GSO_TCPV4
    };
    if gso.ecn {
        t | VIRTIO_NET_HDR_GSO_ECN
    } else {
        t
    }
}

/// Where a Geneve-over-IPv6 encapsulation (as the overlay pushes it:
/// Ethernet, IPv6 without extension headers, UDP to port 6081) sits in
/// front of an inner Ethernet frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Outer {
    /// Offset of the UDP header (the IPv6 header is the 40 bytes before).
    udp: usize,
    inner_l2: usize,
    /// The encapsulation carries a UDP checksum (else it stays zero).
    udp_csum: bool,
}

const GENEVE_PORT: u16 = 6081;

impl Outer {
    fn parse(f: &[u8]) -> Option<Outer> {
        let l3 = ETH_HLEN;
        let udp = l3 + 40;
        if be16(f, 12)? != ETHERTYPE_IPV6 || *f.get(l3 + 6)? != IPPROTO_UDP {
            return None;
        }
        if be16(f, udp + 2)? != GENEVE_PORT {
            return None;
        }
        let opt_len = usize::from(*f.get(udp + 8)? & 0x3f) * 4;
        let inner_l2 = udp + 8 + 8 + opt_len;
        (inner_l2 < f.len()).then_some(Outer {
            udp,
            inner_l2,
            udp_csum: be16(f, udp + 6)? != 0,
        })
    }

    /// Rewrites the outer lengths of segment `s` and, if the tunnel
    /// carries one and `csum` is given, its UDP checksum. `l4` is where
    /// the inner TCP header starts; `csum` holds the sum of the inner TCP
    /// header and payload as they were summed with a zero checksum field
    /// and the checksum then written: the inner segment is summed once
    /// for both checksums. Without `csum` the checksum field is left
    /// alone (the caller writes it).
    fn fix(&self, s: &mut [u8], l4: usize, csum: Option<(Csum, u16)>) {
        let (udp, l3) = (self.udp, self.udp - 40);
        // Within 16 bits: checked in `Tso::new`.
        let udp_len = (s.len() - udp) as u16;
        s[l3 + 4..l3 + 6].copy_from_slice(&udp_len.to_be_bytes());
        s[udp + 4..udp + 6].copy_from_slice(&udp_len.to_be_bytes());
        let Some((tcp, tcp_csum)) = csum.filter(|_| self.udp_csum) else {
            return;
        };
        s[udp + 6..udp + 8].fill(0);
        let mut c = pseudo_header(
            &s[l3 + 8..l3 + 24],
            &s[l3 + 24..l3 + 40],
            IPPROTO_UDP,
            u32::from(udp_len),
        );
        // Every header before the inner TCP one has an even length.
        c.add_bytes(&s[udp..l4]);
        c.add(tcp);
        c.add_u16(tcp_csum);
        let v = match c.finish() {
            0 => 0xffff,
            v => v,
        };
        s[udp + 6..udp + 8].copy_from_slice(&v.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dataplane::packet::{DEFAULT_CAPACITY, DEFAULT_HEADROOM};
    use etherparse::{NetSlice, PacketBuilder, SlicedPacket, TransportSlice};

    const MAX_SEG: usize = DEFAULT_CAPACITY - DEFAULT_HEADROOM;
    const SRC4: [u8; 4] = [10, 0, 0, 1];
    const DST4: [u8; 4] = [10, 0, 0, 2];
    const SRC6: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
    const DST6: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];

    fn payload(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i % 251) as u8).collect()
    }

    /// A TCP super-frame as a guest would hand it: PSH, FIN and CWR set,
    /// lengths and checksums as the builder makes them, then spoilt (the
    /// segmenter must not trust them).
    fn super_frame(v6: bool, n: usize) -> Vec<u8> {
        let b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]);
        let b = if v6 {
            b.ipv6(SRC6, DST6, 64)
        } else {
            b.ipv4(SRC4, DST4, 64)
        };
        let b = b
            .tcp(40000, 80, 0xffff_f000, 512)
            .ack(77)
            .psh()
            .fin()
            .cwr()
            .ece();
        let mut f = Vec::new();
        // The builder refuses IPv4 total lengths over 64 KiB; build with
        // one byte and append the rest, as a super-frame's header does
        // not describe its length anyway.
        b.write_to_vec(&mut f, &payload(n.min(1000))).unwrap();
        let have = f.len() - 54 - if v6 { 20 } else { 0 };
        f.extend_from_slice(&payload(n)[have..]);
        let l4 = if v6 { 54 } else { 34 };
        f[l4 + 16] ^= 0x5a; // a partial checksum, for all we know
        if !v6 {
            f[16..18].copy_from_slice(&0u16.to_be_bytes()); // tot_len
            f[18..20].copy_from_slice(&0xfffeu16.to_be_bytes()); // id, to wrap
        }
        f
    }

    struct Seg {
        seq: u32,
        fin: bool,
        psh: bool,
        cwr: bool,
        ece: bool,
        ack: bool,
        payload: Vec<u8>,
        ip_id: Option<u16>,
    }

    /// Parses a segment with etherparse and checks every length and
    /// checksum; returns what the caller checks further.
    fn check_segment(f: &[u8]) -> Seg {
        check_segment_l2(f, 14)
    }

    fn check_segment_l2(f: &[u8], l2: usize) -> Seg {
        let p = SlicedPacket::from_ethernet(f).expect("segment parses");
        let Some(TransportSlice::Tcp(tcp)) = p.transport else {
            panic!("not TCP")
        };
        let (csum, ip_id) = match p.net.unwrap() {
            NetSlice::Ipv4(ip) => {
                let h = ip.header().to_header();
                assert_eq!(usize::from(h.total_len), f.len() - l2, "IPv4 total length");
                assert_eq!(h.calc_header_checksum(), h.header_checksum, "IPv4 checksum");
                (
                    tcp.calc_checksum_ipv4(h.source, h.destination).unwrap(),
                    Some(h.identification),
                )
            }
            NetSlice::Ipv6(ip) => {
                let h = ip.header().to_header();
                assert_eq!(
                    usize::from(h.payload_length),
                    f.len() - l2 - 40,
                    "IPv6 length"
                );
                (
                    tcp.calc_checksum_ipv6(h.source, h.destination).unwrap(),
                    None,
                )
            }
            NetSlice::Arp(_) => panic!("ARP"),
        };
        assert_eq!(csum, tcp.checksum(), "TCP checksum");
        Seg {
            seq: tcp.sequence_number(),
            fin: tcp.fin(),
            psh: tcp.psh(),
            cwr: tcp.cwr(),
            ece: tcp.ece(),
            ack: tcp.ack(),
            payload: tcp.payload().to_vec(),
            ip_id,
        }
    }

    fn segment_all(f: &[u8], gso_type: u8, mss: u16) -> Vec<Vec<u8>> {
        let t = Tso::new(f, gso_type, mss, MAX_SEG).unwrap();
        let mut out = PacketBuf::new(DEFAULT_HEADROOM, DEFAULT_CAPACITY);
        (0..t.count())
            .map(|i| {
                t.write_segment(f, i, &mut out).unwrap();
                assert_eq!(out.headroom(), DEFAULT_HEADROOM);
                out.as_slice().to_vec()
            })
            .collect()
    }

    fn check_super_frame(v6: bool, n: usize, mss: u16) {
        let f = super_frame(v6, n);
        let gso = if v6 {
            VIRTIO_NET_HDR_GSO_TCPV6
        } else {
            VIRTIO_NET_HDR_GSO_TCPV4
        } | VIRTIO_NET_HDR_GSO_ECN;
        let segs = segment_all(&f, gso, mss);
        let mss = usize::from(mss);
        assert_eq!(segs.len(), n.div_ceil(mss).max(1));
        let mut data = Vec::new();
        for (i, s) in segs.iter().enumerate() {
            let last = i + 1 == segs.len();
            let seg = check_segment(s);
            assert_eq!(
                seg.seq,
                0xffff_f000u32.wrapping_add((i * mss) as u32),
                "seq of segment {i}"
            );
            assert_eq!(seg.fin, last, "FIN only on the last");
            assert_eq!(seg.psh, last, "PSH only on the last");
            assert_eq!(seg.cwr, i == 0, "CWR only on the first");
            assert!(seg.ece && seg.ack, "other flags are kept");
            if let Some(id) = seg.ip_id {
                assert_eq!(id, 0xfffeu16.wrapping_add(i as u16), "IPv4 id");
            }
            assert!(seg.payload.len() <= mss);
            if !last {
                assert_eq!(seg.payload.len(), mss);
            }
            data.extend_from_slice(&seg.payload);
        }
        assert_eq!(data, payload(n), "the payload, in order, nothing lost");
    }

    #[test]
    fn ipv4_super_frames_are_cut_into_valid_segments() {
        check_super_frame(false, 10_000, 1448);
        check_super_frame(false, 65_000, 1460);
        check_super_frame(false, 2896, 1448); // exactly two
        check_super_frame(false, 100, 1448); // one, smaller than the MSS
        check_super_frame(false, 0, 1448); // headers only (a bare FIN)
    }

    #[test]
    fn ipv6_super_frames_are_cut_into_valid_segments() {
        check_super_frame(true, 10_000, 1440);
        check_super_frame(true, 64_000, 8940);
        check_super_frame(true, 1441, 1440);
    }

    /// `inner` in Geneve over IPv6 (an 8-byte header and one 4-byte
    /// option, as the overlay pushes it), the outer UDP checksum right or
    /// zero; then the outer lengths and checksum spoilt, as a port leaves
    /// them on a super-frame.
    fn encapsulate(inner: &[u8], udp_csum: bool) -> Vec<u8> {
        let mut geneve = vec![0x01, 0x00, 0x65, 0x58, 0x00, 0x1e, 0x61, 0x00];
        geneve.extend_from_slice(&[0x01, 0x29, 0x00, 0x00]);
        geneve.extend_from_slice(inner);
        let mut f = Vec::new();
        PacketBuilder::ethernet2([2, 0, 0, 0, 0, 0xa], [2, 0, 0, 0, 0, 0xb])
            .ipv6(
                [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xa],
                [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xb],
                64,
            )
            .udp(51000, 6081)
            .write_to_vec(&mut f, &geneve)
            .unwrap();
        // What the overlay pushed before the port: lengths of the whole
        // super-frame and a sum over it (or none).
        f[60..62].copy_from_slice(&if udp_csum { 0x1234u16 } else { 0 }.to_be_bytes());
        f
    }

    fn check_encapsulated(v6: bool, n: usize, mss: u16, udp_csum: bool) {
        let inner = super_frame(v6, n);
        let f = encapsulate(&inner, udp_csum);
        let gso = dataplane::Gso {
            mss,
            hdr_len: if v6 { 74 } else { 54 },
            v6,
            ecn: true,
        };
        let t = Tso::for_gso(&f, gso, MAX_SEG).unwrap();
        assert_eq!(t.count(), n.div_ceil(usize::from(mss)).max(1));
        let mut out = PacketBuf::new(DEFAULT_HEADROOM, DEFAULT_CAPACITY);
        let mut data = Vec::new();
        for i in 0..t.count() {
            t.write_segment(&f, i, &mut out).unwrap();
            let s = out.as_slice();
            let p = SlicedPacket::from_ethernet(s).expect("outer parses");
            let Some(NetSlice::Ipv6(ip)) = p.net else {
                panic!("outer IPv6")
            };
            let ip = ip.header().to_header();
            assert_eq!(
                usize::from(ip.payload_length),
                s.len() - 54,
                "outer IPv6 length"
            );
            let Some(TransportSlice::Udp(udp)) = p.transport else {
                panic!("outer UDP")
            };
            assert_eq!(usize::from(udp.length()), s.len() - 54, "outer UDP length");
            if udp_csum {
                let want = udp
                    .to_header()
                    .calc_checksum_ipv6(&ip, udp.payload())
                    .unwrap();
                assert_eq!(udp.checksum(), want, "outer UDP checksum of segment {i}");
            } else {
                assert_eq!(udp.checksum(), 0, "no outer checksum stays none");
            }
            let seg = check_segment(&s[74..]);
            assert_eq!(
                seg.seq,
                0xffff_f000u32.wrapping_add(i as u32 * u32::from(mss))
            );
            assert_eq!(seg.fin, i + 1 == t.count());
            data.extend_from_slice(&seg.payload);
        }
        assert_eq!(data, payload(n), "the payload, in order, nothing lost");
    }

    #[test]
    fn encapsulated_super_frames_are_cut_with_their_tunnel() {
        check_encapsulated(false, 30_000, 1448, true);
        check_encapsulated(true, 30_000, 1428, true);
        check_encapsulated(false, 64_000, 1448, false);
        check_encapsulated(false, 100, 1448, true);
    }

    /// A device given `offer_whole`'s header finishes the checksum over
    /// the whole super-frame from `csum_start`: the pseudo-header sum it
    /// starts from must be the one for the frame's length.
    #[test]
    fn a_super_frame_offered_whole_carries_the_pseudo_header_sum() {
        for v6 in [false, true] {
            let mut f = super_frame(v6, 20_000);
            let gso = dataplane::Gso {
                mss: 1400,
                hdr_len: 0,
                v6,
                ecn: false,
            };
            let h = offer_whole(&mut f, gso).unwrap();
            assert_eq!(h.flags, VIRTIO_NET_HDR_F_NEEDS_CSUM);
            assert_eq!(h.gso_size, 1400);
            assert_eq!(usize::from(h.hdr_len), if v6 { 74 } else { 54 });
            assert_eq!(
                h.gso_type,
                if v6 {
                    VIRTIO_NET_HDR_GSO_TCPV6
                } else {
                    VIRTIO_NET_HDR_GSO_TCPV4
                }
            );
            complete_csum(
                &mut f,
                usize::from(h.csum_start),
                usize::from(h.csum_offset),
            )
            .unwrap();
            // Now a valid (if large) TCP segment, lengths and all.
            let seg = check_segment(&f);
            assert_eq!(seg.payload, payload(20_000));
        }
        let enc = encapsulate(&super_frame(false, 3000), true);
        let gso = dataplane::Gso {
            mss: 1400,
            hdr_len: 0,
            v6: false,
            ecn: false,
        };
        assert_eq!(
            offer_whole(&mut enc.clone(), gso),
            Err(OffloadDrop::GsoMismatch)
        );
    }

    #[test]
    fn super_frames_in_a_batch_are_cut_in_place_and_counted_back() {
        let mut pool = crate::backend::BufPool::new(64);
        let (mut spare, mut ends, mut drops) = (Vec::new(), Vec::new(), OffloadDrops::default());
        let plain = PacketBuf::from_frame(&super_frame(false, 100));
        let mut big = PacketBuf::from_frame(&super_frame(false, 5000));
        big.set_gso(Some(dataplane::Gso {
            mss: 1448,
            hdr_len: 54,
            v6: false,
            ecn: false,
        }));
        let mut bad = PacketBuf::from_frame(&[0u8; 60]);
        bad.set_gso(Some(dataplane::Gso {
            mss: 1448,
            hdr_len: 54,
            v6: false,
            ecn: false,
        }));

        let mut pkts = vec![plain.clone(), plain.clone()];
        assert_eq!(
            cut_super_frames(&mut pkts, &mut spare, &mut ends, &mut pool, &mut drops),
            0
        );
        assert!(
            ends.is_empty() && pkts.len() == 2,
            "nothing to cut: untouched"
        );

        let mut pkts = vec![plain.clone(), big, bad, plain.clone()];
        assert_eq!(
            cut_super_frames(&mut pkts, &mut spare, &mut ends, &mut pool, &mut drops),
            4
        );
        assert_eq!(pkts.len(), 1 + 4 + 1);
        assert!(pkts.iter().all(|p| p.gso().is_none()));
        assert_eq!(pkts[0].as_slice(), plain.as_slice());
        assert_eq!(pkts[5].as_slice(), plain.as_slice());
        let mut data = Vec::new();
        for p in &pkts[1..5] {
            data.extend_from_slice(&check_segment(p.as_slice()).payload);
        }
        assert_eq!(data, payload(5000));
        assert_eq!(
            drops.total(),
            1,
            "the frame that could not be cut is counted"
        );
        assert_eq!(ends, vec![1, 5, 5, 6]);
        // Sending stopped inside the super-frame's segments: it is not taken.
        assert_eq!(taken_before_cut(&ends, 0), 0);
        assert_eq!(taken_before_cut(&ends, 3), 1);
        assert_eq!(taken_before_cut(&ends, 5), 3);
        assert_eq!(taken_before_cut(&ends, 6), 4);
    }

    #[test]
    fn ipv6_hop_by_hop_options_are_skipped() {
        let mut f = super_frame(true, 3000);
        // Insert an 8-byte hop-by-hop header (PadN) after the IPv6 header.
        let hbh = [6u8, 0, 1, 4, 0, 0, 0, 0];
        f[20] = 0; // next header: hop-by-hop
        f.splice(54..54, hbh);
        let t = Tso::new(&f, VIRTIO_NET_HDR_GSO_TCPV6, 1000, MAX_SEG).unwrap();
        assert_eq!(t.count(), 3);
        let mut out = PacketBuf::new(DEFAULT_HEADROOM, DEFAULT_CAPACITY);
        for i in 0..3 {
            t.write_segment(&f, i, &mut out).unwrap();
            let s = out.as_slice();
            let p = SlicedPacket::from_ethernet(s).unwrap();
            let Some(NetSlice::Ipv6(ip)) = p.net else {
                panic!()
            };
            let h = ip.header().to_header();
            assert_eq!(usize::from(h.payload_length), s.len() - 54);
            let Some(TransportSlice::Tcp(tcp)) = p.transport else {
                panic!()
            };
            assert_eq!(
                tcp.calc_checksum_ipv6(h.source, h.destination).unwrap(),
                tcp.checksum()
            );
        }
    }

    #[test]
    fn a_vlan_tagged_super_frame_is_cut_too() {
        let f = super_frame(false, 5000);
        let mut tagged = f[..12].to_vec();
        tagged.extend_from_slice(&[0x81, 0x00, 0x00, 0x2a]);
        tagged.extend_from_slice(&f[12..]);
        let segs = segment_all(&tagged, VIRTIO_NET_HDR_GSO_TCPV4, 1448);
        assert_eq!(segs.len(), 4);
        for s in segs {
            assert_eq!(&s[12..16], &[0x81, 0x00, 0x00, 0x2a]);
            check_segment_l2(&s, 18);
        }
    }

    /// A UDP datagram whose checksum field holds the pseudo-header sum, as
    /// the kernel leaves it with CHECKSUM_PARTIAL.
    fn partial_udp(v6: bool, n: usize) -> (Vec<u8>, usize) {
        let b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]);
        let b = if v6 {
            b.ipv6(SRC6, DST6, 64)
        } else {
            b.ipv4(SRC4, DST4, 64)
        };
        let mut f = Vec::new();
        b.udp(5353, 7777).write_to_vec(&mut f, &payload(n)).unwrap();
        let l4 = if v6 { 54 } else { 34 };
        let len = (f.len() - l4) as u32;
        let ps = if v6 {
            pseudo_header(&SRC6, &DST6, IPPROTO_UDP, len)
        } else {
            pseudo_header(&SRC4, &DST4, IPPROTO_UDP, len)
        };
        f[l4 + 6..l4 + 8].copy_from_slice(&ps.fold().to_be_bytes());
        (f, l4)
    }

    fn udp_checksum_ok(f: &[u8]) -> bool {
        let p = SlicedPacket::from_ethernet(f).unwrap();
        let Some(TransportSlice::Udp(u)) = p.transport else {
            panic!("not UDP")
        };
        let h = u.to_header();
        let want = match p.net.unwrap() {
            NetSlice::Ipv4(ip) => {
                let ip = ip.header().to_header();
                h.calc_checksum_ipv4_raw(ip.source, ip.destination, u.payload())
                    .unwrap()
            }
            NetSlice::Ipv6(ip) => {
                let ip = ip.header().to_header();
                h.calc_checksum_ipv6_raw(ip.source, ip.destination, u.payload())
                    .unwrap()
            }
            NetSlice::Arp(_) => panic!(),
        };
        want == h.checksum
    }

    #[test]
    fn needs_csum_frames_are_completed() {
        for v6 in [false, true] {
            for n in [0, 1, 17, 1000] {
                let (mut f, l4) = partial_udp(v6, n);
                assert!(!udp_checksum_ok(&f));
                let hdr = VirtioNetHdr {
                    flags: VIRTIO_NET_HDR_F_NEEDS_CSUM,
                    csum_start: l4 as u16,
                    csum_offset: 6,
                    ..Default::default()
                };
                assert_eq!(
                    prepare(&mut f, &hdr, MAX_SEG),
                    Ok(Prepared::Frame {
                        csum_completed: true
                    })
                );
                assert!(udp_checksum_ok(&f), "v6 {v6} len {n}");

                let (mut g, _) = partial_udp(v6, n);
                complete_csum_from_headers(&mut g).unwrap();
                assert_eq!(f, g, "from the headers: the same result");
            }
        }
    }

    #[test]
    fn padding_is_not_summed_when_offsets_come_from_the_headers() {
        let (mut f, _) = partial_udp(false, 4);
        let (want, _) = {
            let (mut g, l4) = partial_udp(false, 4);
            complete_csum(&mut g, l4, 6).unwrap();
            (g, l4)
        };
        f.resize(60, 0xab); // Ethernet padding after the IP packet
        complete_csum_from_headers(&mut f).unwrap();
        assert_eq!(&f[..want.len()], &want[..]);
    }

    #[test]
    fn a_frame_without_offloads_is_left_alone() {
        let (mut f, _) = partial_udp(false, 10);
        let before = f.clone();
        let hdr = VirtioNetHdr {
            flags: VIRTIO_NET_HDR_F_DATA_VALID,
            ..Default::default()
        };
        assert_eq!(
            prepare(&mut f, &hdr, MAX_SEG),
            Ok(Prepared::Frame {
                csum_completed: false
            })
        );
        assert_eq!(f, before);
    }

    #[test]
    fn the_header_round_trips_and_short_ones_are_refused() {
        let h = VirtioNetHdr {
            flags: 1,
            gso_type: VIRTIO_NET_HDR_GSO_TCPV6,
            hdr_len: 74,
            gso_size: 1440,
            csum_start: 54,
            csum_offset: 16,
            num_buffers: 1,
        };
        assert_eq!(VirtioNetHdr::parse(&h.to_bytes()), Ok(h));
        let legacy = VirtioNetHdr::parse(&h.to_bytes()[..10]).unwrap();
        assert_eq!(legacy.num_buffers, 0);
        assert_eq!(legacy.gso_size, 1440);
        assert!(h.is_gso());
        for n in 0..10 {
            assert_eq!(
                VirtioNetHdr::parse(&[0xff; 12][..n]),
                Err(OffloadDrop::BadVnetHdr)
            );
        }
    }

    #[test]
    fn udp_and_unknown_gso_are_refused_with_a_reason() {
        let (mut f, _) = partial_udp(false, 3000);
        for (t, why) in [
            (VIRTIO_NET_HDR_GSO_UDP, OffloadDrop::UdpGso),
            (VIRTIO_NET_HDR_GSO_UDP_L4, OffloadDrop::UdpGso),
            (2, OffloadDrop::UnknownGso),
            (VIRTIO_NET_HDR_GSO_ECN, OffloadDrop::UnknownGso),
            (0x7f, OffloadDrop::UnknownGso),
        ] {
            let hdr = VirtioNetHdr {
                gso_type: t,
                gso_size: 1400,
                ..Default::default()
            };
            assert_eq!(prepare(&mut f, &hdr, MAX_SEG), Err(why), "type {t}");
        }
        // TCPv4 GSO on a UDP frame, TCPv6 on an IPv4 frame.
        assert_eq!(
            Tso::new(&f, VIRTIO_NET_HDR_GSO_TCPV4, 1400, MAX_SEG),
            Err(OffloadDrop::GsoMismatch)
        );
        let t = super_frame(false, 3000);
        assert_eq!(
            Tso::new(&t, VIRTIO_NET_HDR_GSO_TCPV6, 1400, MAX_SEG),
            Err(OffloadDrop::GsoMismatch)
        );
        assert_eq!(
            Tso::new(&t, VIRTIO_NET_HDR_GSO_TCPV4, 0, MAX_SEG),
            Err(OffloadDrop::BadGsoSize)
        );
        assert_eq!(
            Tso::new(&t, VIRTIO_NET_HDR_GSO_TCPV4, 9500, MAX_SEG),
            Err(OffloadDrop::SegmentTooLarge)
        );
        assert_eq!(
            Tso::new(&t, VIRTIO_NET_HDR_GSO_TCPV4, 1, MAX_SEG),
            Err(OffloadDrop::TooManySegments)
        );
    }

    #[test]
    fn fragments_and_routing_headers_are_refused() {
        let mut t = super_frame(false, 3000);
        t[20] = 0x20; // MF
        assert_eq!(
            Tso::new(&t, VIRTIO_NET_HDR_GSO_TCPV4, 1400, MAX_SEG),
            Err(OffloadDrop::Malformed)
        );
        let mut t6 = super_frame(true, 3000);
        t6[20] = 43; // a routing header where TCP was
        assert_eq!(
            Tso::new(&t6, VIRTIO_NET_HDR_GSO_TCPV6, 1400, MAX_SEG),
            Err(OffloadDrop::Malformed)
        );
    }

    #[test]
    fn bad_checksum_offsets_are_refused() {
        let (mut f, l4) = partial_udp(false, 10);
        let len = f.len();
        for (start, off) in [
            (len, 0),
            (len - 1, 0),
            (l4, len),
            (0xffff, 0xffff),
            (l4, len - l4 - 1),
        ] {
            let hdr = VirtioNetHdr {
                flags: VIRTIO_NET_HDR_F_NEEDS_CSUM,
                csum_start: start as u16,
                csum_offset: off as u16,
                ..Default::default()
            };
            assert_eq!(
                prepare(&mut f, &hdr, MAX_SEG),
                Err(OffloadDrop::BadCsumOffsets),
                "start {start} offset {off}"
            );
        }
    }

    #[test]
    fn short_and_garbage_frames_never_panic() {
        let t = super_frame(false, 4000);
        let t6 = super_frame(true, 4000);
        let mut out = PacketBuf::new(DEFAULT_HEADROOM, DEFAULT_CAPACITY);
        let mut seed = 0x1234_5678u32;
        let mut rnd = || {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            seed
        };
        for base in [&t, &t6] {
            // Every truncation of a valid super-frame.
            for n in 0..base.len().min(200) {
                let f = &base[..n];
                for gso in [VIRTIO_NET_HDR_GSO_TCPV4, VIRTIO_NET_HDR_GSO_TCPV6] {
                    if let Ok(tso) = Tso::new(f, gso, 1000, MAX_SEG) {
                        for i in 0..tso.count() {
                            tso.write_segment(f, i, &mut out).unwrap();
                        }
                    }
                }
                let mut g = f.to_vec();
                let _ = complete_csum_from_headers(&mut g);
            }
            // Random corruption of the headers.
            for _ in 0..2000 {
                let mut f = base.clone();
                for _ in 0..4 {
                    let at = rnd() as usize % 80;
                    f[at] = rnd() as u8;
                }
                let hdr = VirtioNetHdr {
                    flags: rnd() as u8,
                    gso_type: rnd() as u8 & 0x85,
                    gso_size: rnd() as u16,
                    csum_start: rnd() as u16 % 128,
                    csum_offset: rnd() as u16 % 32,
                    ..Default::default()
                };
                if let Ok(Prepared::Segment(tso)) = prepare(&mut f, &hdr, MAX_SEG) {
                    for i in 0..tso.count().min(50) {
                        tso.write_segment(&f, i, &mut out).unwrap();
                    }
                }
                let _ = complete_csum_from_headers(&mut f);
            }
        }
        // A segment for another frame or out of range is an error.
        let tso = Tso::new(&t, VIRTIO_NET_HDR_GSO_TCPV4, 1000, MAX_SEG).unwrap();
        assert!(tso.write_segment(&t[..100], 0, &mut out).is_err());
        assert!(tso.write_segment(&t, tso.count(), &mut out).is_err());
        // An output buffer too small for a segment.
        let mut tiny = PacketBuf::new(0, 100);
        assert_eq!(
            tso.write_segment(&t, 0, &mut tiny),
            Err(OffloadDrop::SegmentTooLarge)
        );
    }

    #[test]
    fn drop_counters_count_by_name() {
        let mut d = OffloadDrops::default();
        d.count(OffloadDrop::UdpGso);
        d.count(OffloadDrop::UdpGso);
        d.count(OffloadDrop::Truncated);
        assert_eq!(d.udp_gso, 2);
        assert_eq!(d.get(OffloadDrop::Truncated), 1);
        assert_eq!(d.total(), 3);
        let json = serde_json::to_value(d).unwrap();
        for r in OffloadDrop::ALL {
            assert!(json.get(r.name()).is_some(), "{} is a field", r.name());
        }
    }
}
