//! Coalescing TCP segments into a super-frame for a device that takes
//! them whole (receive offload in software, as Linux's GRO does).
//!
//! A bulk TCP stream arrives from the wire one MTU at a time. Handing
//! each segment to a guest costs a system call on a TAP and a trip up the
//! guest's stack per segment; handing a run of them as one super-frame
//! with a virtio-net header asking for segmentation costs one. A run is a
//! sequence of frames of one flow, back to back in a burst, that Linux's
//! own GRO would merge:
//!
//! - IPv4 without fragments or IPv6 without extension headers, TCP with
//!   only ACK (and PSH on the last segment of a run) set, some payload;
//! - every header byte the same as the first segment's but the IP
//!   length, IPv4 identification and header checksum, the sequence number
//!   (exactly where the previous segment's payload ended), PSH and the
//!   TCP checksum — so TCP options (timestamps) must match too;
//! - every segment but the last exactly as long as the first; the whole
//!   within [`GSO_MAX_FRAME`].
//!
//! The device is told the checksum is partial (`NEEDS_CSUM`), which a
//! guest's stack takes as checked; so every segment's TCP checksum is
//! verified before it joins a run, and a segment that fails goes alone
//! with no offload, for the guest to drop as it would have.

use crate::offload::{Layout, VirtioNetHdr, WholeTcp};
use crate::offload::{VIRTIO_NET_HDR_GSO_TCPV4, VIRTIO_NET_HDR_GSO_TCPV6};
use dataplane::checksum::{checksum, pseudo_header};
use dataplane::packet::GSO_MAX_FRAME;

const IPPROTO_TCP: u8 = 6;
const TCP_ACK: u8 = 0x10;
const TCP_PSH: u8 = 0x08;

/// The most segments one run may hold (a writev of this many pieces).
pub const MAX_RUN: usize = 64;

/// A TCP segment that may join a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    l3: usize,
    l4: usize,
    /// Where the payload starts (the end of the TCP header).
    payload: usize,
    len: usize,
    v6: bool,
    seq: u32,
    psh: bool,
}

impl Segment {
    /// The segment `f` is, if it may be coalesced (see the module docs),
    /// its checksum verified.
    pub fn of(f: &[u8]) -> Option<Segment> {
        let l = Layout::parse(f).ok()?;
        if l.proto != IPPROTO_TCP || l.ip_end != Some(f.len()) {
            return None;
        }
        if l.v6 && l.l4 != l.l3 + 40 {
            return None; // extension headers
        }
        let (l3, l4) = (l.l3, l.l4);
        let doff = usize::from(*f.get(l4 + 12)? >> 4) * 4;
        let payload = l4 + doff;
        if doff < 20 || payload >= f.len() {
            return None;
        }
        let flags = f[l4 + 13];
        if flags & !TCP_PSH != TCP_ACK {
            return None;
        }
        let tcp_len = (f.len() - l4) as u32;
        let mut c = if l.v6 {
            pseudo_header(
                &f[l3 + 8..l3 + 24],
                &f[l3 + 24..l3 + 40],
                IPPROTO_TCP,
                tcp_len,
            )
        } else {
            if checksum(&f[l3..l4]) != 0 {
                return None;
            }
            pseudo_header(
                &f[l3 + 12..l3 + 16],
                &f[l3 + 16..l3 + 20],
                IPPROTO_TCP,
                tcp_len,
            )
        };
        c.add_bytes(&f[l4..]);
        if c.finish() != 0 {
            return None;
        }
        Some(Segment {
            l3,
            l4,
            payload,
            len: f.len(),
            v6: l.v6,
            seq: u32::from_be_bytes([f[l4 + 4], f[l4 + 5], f[l4 + 6], f[l4 + 7]]),
            psh: flags & TCP_PSH != 0,
        })
    }

    fn payload_len(&self) -> usize {
        self.len - self.payload
    }
}

/// A run being built: its first segment and where it has got to.
#[derive(Clone, Copy, Debug)]
pub struct Run {
    first: Segment,
    mss: usize,
    next_seq: u32,
    total: usize,
    count: usize,
    /// The last segment was shorter than the first or carried PSH: the
    /// run is complete.
    closed: bool,
    psh: bool,
}

impl Run {
    pub fn start(first: Segment) -> Run {
        Run {
            first,
            mss: first.payload_len(),
            next_seq: first.seq.wrapping_add(first.payload_len() as u32),
            total: first.len,
            count: 1,
            closed: first.psh,
            psh: first.psh,
        }
    }

    /// Segments in the run.
    pub fn count(&self) -> usize {
        self.count
    }

    /// Adds `s` (frame `f`; `head` is the first segment's frame) if it
    /// continues the run; false leaves the run as it was.
    pub fn push(&mut self, head: &[u8], f: &[u8], s: Segment) -> bool {
        let a = self.first;
        if self.closed
            || self.count == MAX_RUN
            || s.payload != a.payload
            || s.v6 != a.v6
            || s.seq != self.next_seq
            || s.payload_len() > self.mss
            || self.total + s.payload_len() > GSO_MAX_FRAME
            || !same_headers(head, f, &a)
        {
            return false;
        }
        self.next_seq = s.seq.wrapping_add(s.payload_len() as u32);
        self.total += s.payload_len();
        self.count += 1;
        self.psh = s.psh;
        self.closed = s.psh || s.payload_len() < self.mss;
        true
    }

    /// Turns the first segment's headers (`head`, that frame) into those
    /// of the whole run and returns the virtio-net header that asks the
    /// device to take it as a super-frame. The payloads follow the
    /// headers: the first's in `head`, the others' from their frames.
    pub fn finish(&self, head: &mut [u8]) -> VirtioNetHdr {
        let a = self.first;
        if self.psh {
            head[a.l4 + 13] |= TCP_PSH;
        }
        let gso_type = if a.v6 {
            VIRTIO_NET_HDR_GSO_TCPV6
        } else {
            VIRTIO_NET_HDR_GSO_TCPV4
        };
        let whole = WholeTcp {
            l3: a.l3,
            l4: a.l4,
            payload: a.payload,
            v6: a.v6,
        };
        // The total is within GSO_MAX_FRAME: lengths fit 16 bits.
        whole.offer(head, self.total, gso_type, self.mss as u16)
    }

    /// Where the payload starts in every segment of the run.
    pub fn payload_offset(&self) -> usize {
        self.first.payload
    }
}

/// Whether `f`'s headers equal `head`'s but for the fields a run's
/// segments differ in (see the module docs).
fn same_headers(head: &[u8], f: &[u8], a: &Segment) -> bool {
    let (l3, l4, end) = (a.l3, a.l4, a.payload);
    let eq = |r: std::ops::Range<usize>| head.get(r.clone()) == f.get(r);
    if !eq(0..l3) {
        return false;
    }
    let ip_same = if a.v6 {
        // Version, class, flow label; then next header, hop limit, addresses.
        eq(l3..l3 + 4) && eq(l3 + 6..l3 + 40)
    } else {
        // Skip total length (2..4), identification (4..6), checksum (10..12).
        eq(l3..l3 + 2) && eq(l3 + 6..l3 + 10) && eq(l3 + 12..l4)
    };
    // TCP: ports (0..4), then skip seq (4..8); ack, offset (8..13);
    // flags but PSH (13); window (14..16); skip checksum (16..18);
    // urgent pointer and options (18..).
    ip_same
        && eq(l4..l4 + 4)
        && eq(l4 + 8..l4 + 13)
        && (head[l4 + 13] | TCP_PSH) == (f[l4 + 13] | TCP_PSH)
        && eq(l4 + 14..l4 + 16)
        && eq(l4 + 18..end)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::offload::complete_csum;
    use etherparse::{PacketBuilder, SlicedPacket, TransportSlice};

    fn seg(v6: bool, seq: u32, payload: &[u8], psh: bool, ts: u32) -> Vec<u8> {
        let b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]);
        let b = if v6 {
            b.ipv6([0xfd; 16], [0xfe; 16], 64)
        } else {
            b.ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
        };
        let mut b = b
            .tcp(5201, 40000, seq, 1000)
            .ack(99)
            .options(&[etherparse::TcpOptionElement::Timestamp(ts, 7)])
            .unwrap();
        if psh {
            b = b.psh();
        }
        let mut f = Vec::new();
        b.write_to_vec(&mut f, payload).unwrap();
        f
    }

    fn data(n: usize, from: usize) -> Vec<u8> {
        (from..from + n).map(|i| (i % 241) as u8).collect()
    }

    /// Coalesces `frames` as the TAP does; returns the super-frames built
    /// (whole frames) with their headers, and the frames left alone.
    fn coalesce(frames: &[Vec<u8>]) -> Vec<(Option<VirtioNetHdr>, Vec<u8>)> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < frames.len() {
            let Some(s) = Segment::of(&frames[i]) else {
                out.push((None, frames[i].clone()));
                i += 1;
                continue;
            };
            let mut run = Run::start(s);
            let mut j = i + 1;
            while j < frames.len() {
                match Segment::of(&frames[j]) {
                    Some(t) if run.push(&frames[i], &frames[j], t) => j += 1,
                    _ => break,
                }
            }
            if run.count() == 1 {
                out.push((None, frames[i].clone()));
            } else {
                let mut whole = frames[i].clone();
                let h = run.finish(&mut whole);
                for f in &frames[i + 1..j] {
                    whole.extend_from_slice(&f[run.payload_offset()..]);
                }
                out.push((Some(h), whole));
            }
            i = j;
        }
        out
    }

    #[test]
    fn a_stream_becomes_one_super_frame_a_device_can_finish() {
        for v6 in [false, true] {
            let frames: Vec<Vec<u8>> = (0..5)
                .map(|k| {
                    seg(
                        v6,
                        1000 + k * 1400,
                        &data(if k == 4 { 500 } else { 1400 }, k as usize * 1400),
                        k == 4,
                        42,
                    )
                })
                .collect();
            let out = coalesce(&frames);
            assert_eq!(out.len(), 1, "one run");
            let (Some(h), mut whole) = out.into_iter().next().unwrap() else {
                panic!("coalesced")
            };
            assert_eq!(h.gso_size, 1400);
            assert_eq!(
                h.gso_type,
                if v6 {
                    VIRTIO_NET_HDR_GSO_TCPV6
                } else {
                    VIRTIO_NET_HDR_GSO_TCPV4
                }
            );
            // The device finishes the checksum over the whole: then it is a
            // valid (large) segment carrying all the data, PSH from the last.
            complete_csum(
                &mut whole,
                usize::from(h.csum_start),
                usize::from(h.csum_offset),
            )
            .unwrap();
            let p = SlicedPacket::from_ethernet(&whole).unwrap();
            let Some(TransportSlice::Tcp(t)) = p.transport else {
                panic!()
            };
            let want = match p.net.unwrap() {
                etherparse::NetSlice::Ipv4(ip) => {
                    let h = ip.header().to_header();
                    assert_eq!(h.calc_header_checksum(), h.header_checksum);
                    assert_eq!(usize::from(h.total_len), whole.len() - 14);
                    t.calc_checksum_ipv4(h.source, h.destination).unwrap()
                }
                etherparse::NetSlice::Ipv6(ip) => {
                    let h = ip.header().to_header();
                    assert_eq!(usize::from(h.payload_length), whole.len() - 54);
                    t.calc_checksum_ipv6(h.source, h.destination).unwrap()
                }
                _ => panic!(),
            };
            assert_eq!(t.checksum(), want);
            assert_eq!(t.sequence_number(), 1000);
            assert!(t.psh() && t.ack());
            assert_eq!(t.payload(), &data(4 * 1400 + 500, 0)[..]);
        }
    }

    #[test]
    fn runs_stop_where_linux_gro_would() {
        let full = |k: u32, ts| seg(false, k * 100, &data(100, 0), false, ts);
        // A gap in sequence numbers.
        let gap = vec![full(0, 1), full(1, 1), full(3, 1)];
        assert_eq!(
            coalesce(&gap)
                .iter()
                .map(|(h, _)| h.is_some())
                .collect::<Vec<_>>(),
            [true, false]
        );
        // Different timestamps: options differ.
        let ts = vec![full(0, 1), full(1, 2)];
        assert!(coalesce(&ts).iter().all(|(h, _)| h.is_none()));
        // A short segment ends the run; PSH too.
        let short = vec![
            full(0, 1),
            seg(false, 100, &data(50, 0), false, 1),
            full(2, 1),
        ];
        assert_eq!(coalesce(&short).len(), 2);
        let psh = vec![seg(false, 0, &data(100, 0), true, 1), full(1, 1)];
        assert!(coalesce(&psh).iter().all(|(h, _)| h.is_none()));
        // A bad checksum never joins (nor starts) a run.
        let mut bad = full(1, 1);
        let n = bad.len();
        bad[n - 1] ^= 0xff;
        let out = coalesce(&[full(0, 1), bad.clone(), full(2, 1)]);
        assert!(out.iter().all(|(h, _)| h.is_none()));
        assert_eq!(out[1].1, bad, "left as it came, for the guest to drop");
        // SYN/FIN, no payload, UDP, garbage: not segments of a run.
        let mut f = Vec::new();
        PacketBuilder::ethernet2([2; 6], [3; 6])
            .ipv4([1; 4], [2; 4], 9)
            .tcp(1, 2, 3, 4)
            .syn()
            .write_to_vec(&mut f, &[1, 2])
            .unwrap();
        assert!(Segment::of(&f).is_none());
        assert!(Segment::of(&seg(false, 0, &[], false, 1)).is_none());
        for n in 0..80 {
            assert!(Segment::of(&vec![0x45; n]).is_none());
        }
    }
}
