//! UDP segmentation across the underlay: a port's encapsulated TCP
//! super-frame leaves the AF_PACKET uplink as one UDP GSO send, and a UDP
//! aggregate the kernel hands over on receive is split back into its
//! datagrams.
//!
//! Sending ([`aggregate_super_frames`]): a super-frame the port
//! encapsulated once (outer Ethernet, IPv6, UDP to the Geneve port, then
//! Geneve and the inner TCP super-frame) is cut in user space into
//! complete Geneve datagrams exactly as [`Tso`] cuts it, and their UDP
//! payloads (Geneve header, inner Ethernet, IP, TCP, the segment's
//! payload) are laid back to back behind one outer header. Every payload
//! but the last has the same length, so the kernel's UDP GSO
//! (`VIRTIO_NET_HDR_GSO_UDP_L4` in the virtio-net header,
//! `gso_size` = that length) cuts the aggregate back into the same
//! datagrams, rewriting the outer lengths and checksum of each. The
//! aggregate crosses veths, bridges and the router's IPv6 forwarding as
//! one skb and is cut only where a device cannot carry it, so the host
//! pays one send per 64 KiB instead of one per segment.
//!
//! Receiving ([`UdpSplit`]): that aggregate arrives at an AF_PACKET socket
//! whole (virtio-net header `GSO_UDP_L4`), as does what GRO on an uplink
//! (`rx-udp-gro-forwarding`) puts together; it is split into its
//! datagrams, each with its own outer lengths and a full UDP checksum.
//! Only Geneve over IPv6 (the underlay sluice speaks) is split; another
//! UDP aggregate is dropped as `udp_gso`, as before.

use super::{
    be16, cut_into, pseudo_header, Csum, OffloadDrop, OffloadDrops, Tso, VirtioNetHdr,
    ETHERTYPE_IPV6, ETH_HLEN, GENEVE_PORT, IPPROTO_UDP, VIRTIO_NET_HDR_F_NEEDS_CSUM,
    VIRTIO_NET_HDR_GSO_UDP_L4,
};
use dataplane::PacketBuf;

/// Where the outer UDP header starts (after Ethernet and a 40-byte IPv6
/// header: the overlay pushes no extension headers).
const UDP: usize = ETH_HLEN + 40;

/// The outer headers in front of every datagram's UDP payload.
pub const OUTER_LEN: usize = UDP + 8;

/// The most segments one UDP GSO send may make (Linux's
/// `UDP_MAX_SEGMENTS`).
pub const UDP_MAX_SEGMENTS: usize = 128;

/// Whether `f` is Ethernet, IPv6 (no extension header), UDP to the Geneve
/// port: the encapsulation [`aggregate_super_frames`] and [`UdpSplit`]
/// handle.
fn is_geneve6(f: &[u8]) -> bool {
    be16(f, 12) == Some(ETHERTYPE_IPV6)
        && f.get(ETH_HLEN + 6) == Some(&IPPROTO_UDP)
        && be16(f, UDP + 2) == Some(GENEVE_PORT)
        && f.len() > OUTER_LEN
}

/// The virtio-net header (host byte order, the 10-byte layout AF_PACKET's
/// `PACKET_VNET_HDR` reads) that asks the kernel to cut an aggregate into
/// datagrams of `gso_size` UDP payload bytes.
pub fn gso_header_native(gso_size: u16) -> [u8; super::VNET_HDR_LEN_LEGACY] {
    let mut b = [0u8; super::VNET_HDR_LEN_LEGACY];
    b[0] = VIRTIO_NET_HDR_F_NEEDS_CSUM;
    b[1] = VIRTIO_NET_HDR_GSO_UDP_L4;
    b[2..4].copy_from_slice(&(OUTER_LEN as u16).to_ne_bytes());
    b[4..6].copy_from_slice(&gso_size.to_ne_bytes());
    b[6..8].copy_from_slice(&(UDP as u16).to_ne_bytes());
    b[8..10].copy_from_slice(&6u16.to_ne_bytes());
    b
}

/// Sets the outer IPv6 payload length and UDP length of `s` for its whole
/// length, and writes into the UDP checksum field either the
/// pseudo-header sum a device finishes (`partial`) or the full checksum.
fn fix_outer(s: &mut [u8], partial: bool) {
    // Callers keep the UDP length within 16 bits.
    let udp_len = (s.len() - UDP) as u16;
    s[ETH_HLEN + 4..ETH_HLEN + 6].copy_from_slice(&udp_len.to_be_bytes());
    s[UDP + 4..UDP + 6].copy_from_slice(&udp_len.to_be_bytes());
    s[UDP + 6..UDP + 8].fill(0);
    let mut c = pseudo_header(
        &s[ETH_HLEN + 8..ETH_HLEN + 24],
        &s[ETH_HLEN + 24..ETH_HLEN + 40],
        IPPROTO_UDP,
        u32::from(udp_len),
    );
    let v = if partial {
        c.fold()
    } else {
        let mut d = Csum::new();
        d.add_bytes(&s[UDP..]);
        c.add(d);
        match c.finish() {
            0 => 0xffff,
            v => v,
        }
    };
    s[UDP + 6..UDP + 8].copy_from_slice(&v.to_be_bytes());
}

/// Replaces every Geneve-over-IPv6 super-frame in `pkts` by UDP GSO
/// aggregates (one, or more when its datagrams do not fit one 64 KiB UDP
/// datagram or [`UDP_MAX_SEGMENTS`]), in place and in order, and cuts any
/// other super-frame into segments as [`super::cut_super_frames`] does.
/// `gso_sizes` gets, per frame of the new `pkts`, the `gso_size` to send
/// it with (0: a plain frame). `ends` maps the result back to the frames
/// given, as [`super::cut_super_frames`] documents. Aggregates are built
/// in [`BigPool`](crate::backend::BigPool) buffers, segments in `scratch`
/// first; nothing is allocated once the vectors have grown. Returns the
/// datagrams the new frames stand for, beyond one per frame given.
pub fn aggregate_super_frames(
    pkts: &mut Vec<PacketBuf>,
    spare: &mut Vec<PacketBuf>,
    ends: &mut Vec<usize>,
    gso_sizes: &mut Vec<u16>,
    pool: &mut crate::backend::BufPool,
    scratch: &mut PacketBuf,
    drops: &mut OffloadDrops,
) -> usize {
    ends.clear();
    gso_sizes.clear();
    if pkts.iter().all(|p| p.gso().is_none()) {
        return 0;
    }
    let max_segment = dataplane::packet::DEFAULT_CAPACITY - dataplane::packet::DEFAULT_HEADROOM;
    let mut made = 0;
    spare.clear();
    for p in pkts.drain(..) {
        let Some(g) = p.gso() else {
            spare.push(p);
            gso_sizes.push(0);
            ends.push(spare.len());
            continue;
        };
        let tso = match Tso::for_gso(p.as_slice(), g, max_segment) {
            Ok(t) => t,
            Err(r) => {
                drops.count(r);
                ends.push(spare.len());
                pool.put(p);
                continue;
            }
        };
        if is_geneve6(p.as_slice()) {
            made += aggregate(&p, &tso, spare, gso_sizes, scratch, drops);
        } else {
            made += cut_into(p.as_slice(), &tso, spare, pool, drops);
            gso_sizes.resize(spare.len(), 0);
        }
        ends.push(spare.len());
        pool.put(p);
    }
    std::mem::swap(pkts, spare);
    made
}

/// Pushes the aggregates of one Geneve super-frame; returns the
/// datagrams they hold.
fn aggregate(
    p: &PacketBuf,
    tso: &Tso,
    out: &mut Vec<PacketBuf>,
    gso_sizes: &mut Vec<u16>,
    scratch: &mut PacketBuf,
    drops: &mut OffloadDrops,
) -> usize {
    let frame = p.as_slice();
    // Every datagram but the last carries `mss` payload bytes behind the
    // same headers: its UDP payload is the super-frame's headers past the
    // outer UDP header plus `mss`.
    let chunk = tso.payload - OUTER_LEN + tso.mss;
    let per = ((usize::from(u16::MAX) - 8) / chunk).clamp(1, UDP_MAX_SEGMENTS);
    let mut made = 0;
    let mut first = 0;
    while first < tso.count() {
        let last = (first + per).min(tso.count());
        let mut agg = crate::backend::BigPool::get();
        let mut ok = true;
        // An aggregate's outer UDP checksum is written for it whole
        // below: its segments skip their own.
        let several = last - first > 1;
        for i in first..last {
            let written = if several {
                tso.write_segment_for_aggregate(frame, i, scratch)
            } else {
                tso.write_segment(frame, i, scratch)
            };
            if let Err(r) = written {
                drops.count(r);
                ok = false;
                break;
            }
            let s = scratch.as_slice();
            let piece = if i == first { s } else { &s[OUTER_LEN..] };
            match agg.push_back(piece.len()) {
                Ok(b) => b.copy_from_slice(piece),
                Err(_) => {
                    drops.count(OffloadDrop::SegmentTooLarge);
                    ok = false;
                    break;
                }
            }
        }
        if ok {
            // One datagram is sent as a plain frame, its checksum
            // complete; an aggregate gets the sum the kernel finishes.
            fix_outer(agg.as_mut_slice(), several);
            made += last - first;
            out.push(agg);
            // `chunk` fits 16 bits: `Tso::new` checked a segment's UDP
            // length does.
            gso_sizes.push(if several { chunk as u16 } else { 0 });
        } else {
            crate::backend::BigPool::put(agg);
        }
        first = last;
    }
    made
}

/// A UDP aggregate of Geneve-over-IPv6 datagrams, checked and ready to be
/// split: datagram `i` of [`count`](UdpSplit::count) is written by
/// [`write_segment`](UdpSplit::write_segment) from the same frame bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UdpSplit {
    gso_size: usize,
    len: usize,
    count: usize,
}

impl UdpSplit {
    /// Checks an aggregate the kernel described with `hdr` (`GSO_UDP_L4`)
    /// whose datagrams must fit `max_segment` bytes.
    pub fn new(
        frame: &[u8],
        hdr: &VirtioNetHdr,
        max_segment: usize,
    ) -> Result<UdpSplit, OffloadDrop> {
        if hdr.gso_type != VIRTIO_NET_HDR_GSO_UDP_L4 || !is_geneve6(frame) {
            return Err(OffloadDrop::UdpGso);
        }
        let gso_size = usize::from(hdr.gso_size);
        if gso_size == 0 {
            return Err(OffloadDrop::BadGsoSize);
        }
        if OUTER_LEN + gso_size > max_segment {
            return Err(OffloadDrop::SegmentTooLarge);
        }
        let count = (frame.len() - OUTER_LEN).div_ceil(gso_size);
        if count > super::MAX_SEGMENTS {
            return Err(OffloadDrop::TooManySegments);
        }
        Ok(UdpSplit {
            gso_size,
            len: frame.len(),
            count,
        })
    }

    /// How many datagrams the aggregate holds.
    pub fn count(&self) -> usize {
        self.count
    }

    /// Writes datagram `i` of `frame` (the frame given to
    /// [`UdpSplit::new`]) into `out`, replacing its contents but keeping
    /// its headroom; its UDP checksum is computed in full.
    pub fn write_segment(
        &self,
        frame: &[u8],
        i: usize,
        out: &mut PacketBuf,
    ) -> Result<(), OffloadDrop> {
        if frame.len() != self.len || i >= self.count {
            return Err(OffloadDrop::Malformed);
        }
        let from = OUTER_LEN + i * self.gso_size;
        let to = (from + self.gso_size).min(self.len);
        let chunk = frame.get(from..to).ok_or(OffloadDrop::Malformed)?;
        out.set_frame(&frame[..OUTER_LEN])
            .map_err(|_| OffloadDrop::SegmentTooLarge)?;
        out.push_back(chunk.len())
            .map_err(|_| OffloadDrop::SegmentTooLarge)?
            .copy_from_slice(chunk);
        fix_outer(out.as_mut_slice(), false);
        Ok(())
    }
}

/// What a receive path cuts a super-frame with: a TCP super-frame into
/// segments, or a UDP aggregate into datagrams.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cut {
    Tcp(Tso),
    Udp(UdpSplit),
}

impl Cut {
    /// The cut for a frame the kernel described with `hdr` (a GSO type).
    pub fn new(frame: &[u8], hdr: &VirtioNetHdr, max_segment: usize) -> Result<Cut, OffloadDrop> {
        if hdr.gso_type == VIRTIO_NET_HDR_GSO_UDP_L4 {
            UdpSplit::new(frame, hdr, max_segment).map(Cut::Udp)
        } else {
            Tso::new(frame, hdr.gso_type, hdr.gso_size, max_segment).map(Cut::Tcp)
        }
    }

    pub fn count(&self) -> usize {
        match self {
            Cut::Tcp(t) => t.count(),
            Cut::Udp(u) => u.count(),
        }
    }

    pub fn write_segment(
        &self,
        frame: &[u8],
        i: usize,
        out: &mut PacketBuf,
    ) -> Result<(), OffloadDrop> {
        match self {
            Cut::Tcp(t) => t.write_segment(frame, i, out),
            Cut::Udp(u) => u.write_segment(frame, i, out),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::BufPool;

    /// An encapsulated TCP super-frame as a port pushes it: outer
    /// Ethernet, IPv6, UDP (checksum on), Geneve, then inner Ethernet,
    /// IPv4, TCP and `n` payload bytes, marked with its MSS.
    fn super_frame(n: usize, mss: u16) -> PacketBuf {
        use etherparse::PacketBuilder;
        let payload: Vec<u8> = (0..n).map(|i| (i % 251) as u8).collect();
        let mut inner = Vec::new();
        PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4([10, 0, 0, 5], [10, 0, 0, 6], 64)
            .tcp(40000, 5201, 7, 65535)
            .ack(1)
            .write(&mut inner, &payload)
            .unwrap();
        let mut geneve = vec![0u8, 0, 0x65, 0x58, 0, 0x1e, 0x61, 0];
        geneve.extend_from_slice(&inner);
        let mut f = Vec::new();
        PacketBuilder::ethernet2([2, 0, 0, 0, 0xa, 1], [2, 0, 0, 0, 0xb, 1])
            .ipv6(
                [0xfd, 0, 0, 0x99, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xa],
                [0xfd, 0, 0, 0x99, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xb],
                64,
            )
            .udp(51000, 6081)
            .write(&mut f, &geneve)
            .unwrap();
        let mut p = crate::backend::BigPool::get();
        p.push_back(f.len()).unwrap().copy_from_slice(&f);
        p.set_gso(Some(dataplane::Gso {
            mss,
            hdr_len: 54,
            v6: false,
            ecn: false,
        }));
        p
    }

    /// What the kernel does with an aggregate: cut it every `gso_size`
    /// bytes of UDP payload behind copies of the outer headers, lengths
    /// and checksum per datagram.
    fn kernel_cut(agg: &[u8], gso_size: usize) -> Vec<Vec<u8>> {
        agg[OUTER_LEN..]
            .chunks(gso_size)
            .map(|c| {
                let mut d = agg[..OUTER_LEN].to_vec();
                d.extend_from_slice(c);
                fix_outer(&mut d, false);
                d
            })
            .collect()
    }

    #[test]
    fn an_aggregate_cut_by_the_kernel_and_split_on_receive_gives_the_segments_tso_cuts() {
        let mut pool = BufPool::new(64);
        for (n, mss) in [(60_000, 1348), (5_000, 1348), (1_000, 1348), (64_000, 536)] {
            let sf = super_frame(n, mss);
            // The reference: the segments `cut_super_frames` sends today.
            let mut want = vec![sf.clone()];
            let (mut spare, mut ends, mut drops) =
                (Vec::new(), Vec::new(), OffloadDrops::default());
            super::super::cut_super_frames(&mut want, &mut spare, &mut ends, &mut pool, &mut drops);
            let want: Vec<Vec<u8>> = want.iter().map(|p| p.as_slice().to_vec()).collect();

            let mut pkts = vec![sf];
            let (mut sizes, mut scratch) = (Vec::new(), PacketBuf::new(128, 9216));
            let made = aggregate_super_frames(
                &mut pkts,
                &mut spare,
                &mut ends,
                &mut sizes,
                &mut pool,
                &mut scratch,
                &mut drops,
            );
            assert_eq!(drops.total(), 0);
            assert_eq!(made, want.len(), "{n}/{mss}");
            assert_eq!(ends, vec![pkts.len()]);
            let mut got = Vec::new();
            let mut split = Vec::new();
            for (p, &g) in pkts.iter().zip(&sizes) {
                if g == 0 {
                    got.push(p.as_slice().to_vec());
                    split.push(p.as_slice().to_vec());
                    continue;
                }
                assert!(p.len() - UDP <= usize::from(u16::MAX));
                got.extend(kernel_cut(p.as_slice(), usize::from(g)));
                // The receiving host splits the same aggregate.
                let hdr = VirtioNetHdr::parse_native(&gso_header_native(g)).unwrap();
                let u = UdpSplit::new(p.as_slice(), &hdr, 9216 - 128).unwrap();
                for i in 0..u.count() {
                    let mut out = PacketBuf::new(128, 9216);
                    u.write_segment(p.as_slice(), i, &mut out).unwrap();
                    split.push(out.as_slice().to_vec());
                }
            }
            assert_eq!(got, want, "{n}/{mss}: the kernel's cut");
            assert_eq!(split, want, "{n}/{mss}: the receive split");
        }
    }

    #[test]
    fn only_geneve_over_ipv6_aggregates_are_split() {
        let sf = super_frame(3000, 1000);
        let hdr = VirtioNetHdr::parse_native(&gso_header_native(1000)).unwrap();
        let mut f = sf.as_slice().to_vec();
        assert!(UdpSplit::new(&f, &hdr, 9000).is_ok());
        f[UDP + 2..UDP + 4].copy_from_slice(&4789u16.to_be_bytes());
        assert_eq!(UdpSplit::new(&f, &hdr, 9000), Err(OffloadDrop::UdpGso));
        let zero = VirtioNetHdr::parse_native(&gso_header_native(0)).unwrap();
        assert_eq!(
            UdpSplit::new(sf.as_slice(), &zero, 9000),
            Err(OffloadDrop::BadGsoSize)
        );
        let u = UdpSplit::new(sf.as_slice(), &hdr, 9000).unwrap();
        let mut out = PacketBuf::new(128, 9216);
        assert_eq!(
            u.write_segment(&sf.as_slice()[..100], 0, &mut out),
            Err(OffloadDrop::Malformed)
        );
        assert_eq!(
            u.write_segment(sf.as_slice(), u.count(), &mut out),
            Err(OffloadDrop::Malformed)
        );
    }
}
