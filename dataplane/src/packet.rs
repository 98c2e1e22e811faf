//! Packet buffers with headroom.
//!
//! A frame sits somewhere inside a larger allocation so that an
//! encapsulation can be pushed in front of it (and popped off) by moving
//! the start index: the payload is never copied. Buffers are allocated once
//! by the I/O layer and reused: only `new` and `from_frame` allocate, and a
//! buffer never grows (what does not fit is refused: `NoHeadroom`,
//! `NoTailroom`).

/// Room left in front of a received frame: an IPv6 Geneve encapsulation is
/// 70 bytes plus options, and 128 keeps the frame start cache-line aligned.
pub const DEFAULT_HEADROOM: usize = 128;

/// Room for the largest single frame (a 9216-byte jumbo MTU plus Ethernet,
/// VLAN and encapsulation); TCP super-frames get [`GSO_CAPACITY`].
pub const DEFAULT_CAPACITY: usize = 9216 + 18 + 128;

/// The largest frame carried whole as a TCP super-frame (see [`Gso`]):
/// after a 70-byte Geneve encapsulation with options, every IP length
/// field and every offset the parser keeps still fits 16 bits. A device
/// that hands over a larger super-frame has it cut before the port.
pub const GSO_MAX_FRAME: usize = 65535 - 128;

/// Room for a super-frame of [`GSO_MAX_FRAME`] bytes and an encapsulation.
pub const GSO_CAPACITY: usize = GSO_MAX_FRAME + DEFAULT_HEADROOM + 128;

/// A TCP super-frame still to be cut into segments (TSO/GSO): the guest's
/// device handed over up to 64 KiB of one TCP stream as a single frame,
/// and the port processes it once. Whoever finally puts it on a wire that
/// cannot take it whole (a veth, a NIC without tunnel offloads) cuts it
/// into segments of `mss` payload bytes, encapsulation included; a device
/// that can take it whole (a TAP, a virtio-net guest that offers TSO) gets
/// it as it is.
///
/// While a frame carries a `Gso`, its TCP checksum field is not
/// meaningful (a device gives a partial sum there, and rewrites may
/// adjust it): it is computed afresh for every segment, and the outer UDP
/// checksum of an encapsulated super-frame likewise.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gso {
    /// TCP payload bytes per segment.
    pub mss: u16,
    /// The bytes in front of the TCP payload in the frame as the device
    /// handed it over (Ethernet, IP and TCP headers): `hdr_len + mss` is
    /// the largest segment the guest meant to send, which is what its MTU
    /// is checked against.
    pub hdr_len: u16,
    /// IPv6 (else IPv4) inside.
    pub v6: bool,
    /// The segments may carry ECN's CWR (on the first only).
    pub ecn: bool,
}

#[derive(Clone, PartialEq, Eq)]
pub struct PacketBuf {
    buf: Box<[u8]>,
    start: usize,
    end: usize,
    gso: Option<Gso>,
    /// The device vouched for the outermost L4 checksum (AF_PACKET's
    /// `TP_STATUS_CSUM_VALID`, virtio-net's `DATA_VALID`, DPDK's
    /// `RTE_MBUF_F_RX_L4_CKSUM_GOOD`): the switch need not verify it.
    l4_csum_valid: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BufError {
    #[error("{need} bytes of headroom needed, {have} available")]
    NoHeadroom { need: usize, have: usize },
    #[error("{need} bytes of tailroom needed, {have} available")]
    NoTailroom { need: usize, have: usize },
    #[error("cannot remove {need} bytes from a {have}-byte frame")]
    TooShort { need: usize, have: usize },
}

impl PacketBuf {
    /// An empty buffer of `capacity` bytes whose frame starts `headroom` in.
    pub fn new(headroom: usize, capacity: usize) -> Self {
        let headroom = headroom.min(capacity);
        PacketBuf {
            buf: vec![0u8; capacity].into_boxed_slice(),
            start: headroom,
            end: headroom,
            gso: None,
            l4_csum_valid: false,
        }
    }

    /// A buffer holding a copy of `frame` with [`DEFAULT_HEADROOM`].
    pub fn from_frame(frame: &[u8]) -> Self {
        let cap = DEFAULT_HEADROOM + frame.len().max(DEFAULT_CAPACITY - DEFAULT_HEADROOM);
        let mut p = PacketBuf::new(DEFAULT_HEADROOM, cap);
        p.end = p.start + frame.len();
        p.buf[p.start..p.end].copy_from_slice(frame);
        p
    }

    /// Empties the buffer for reuse, with the frame starting `headroom` in.
    pub fn reset(&mut self, headroom: usize) {
        self.start = headroom.min(self.buf.len());
        self.end = self.start;
        self.gso = None;
        self.l4_csum_valid = false;
    }

    /// The bytes the buffer can hold in all (headroom, frame and tailroom).
    pub fn capacity(&self) -> usize {
        self.buf.len()
    }

    /// The segmentation still owed to this frame, if it is a super-frame.
    #[inline]
    pub fn gso(&self) -> Option<Gso> {
        self.gso
    }

    /// Marks the frame as a super-frame to be cut (or as an ordinary one).
    pub fn set_gso(&mut self, gso: Option<Gso>) {
        self.gso = gso;
    }

    /// Whether the device that received the frame verified its outermost
    /// TCP/UDP checksum (false when it did not say: then it is unknown).
    #[inline]
    pub fn l4_csum_valid(&self) -> bool {
        self.l4_csum_valid
    }

    /// Records the device's verdict on the outermost L4 checksum. Only a
    /// receiving device sets it; a rewrite that keeps the checksum
    /// correct (RFC 1624) may keep it.
    pub fn set_l4_csum_valid(&mut self, valid: bool) {
        self.l4_csum_valid = valid;
    }

    /// Replaces the frame with a copy of `frame`, keeping the headroom.
    pub fn set_frame(&mut self, frame: &[u8]) -> Result<(), BufError> {
        let have = self.buf.len() - self.start;
        if frame.len() > have {
            return Err(BufError::NoTailroom {
                need: frame.len(),
                have,
            });
        }
        self.end = self.start + frame.len();
        self.buf[self.start..self.end].copy_from_slice(frame);
        self.gso = None;
        self.l4_csum_valid = false;
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.end - self.start
    }

    pub fn is_empty(&self) -> bool {
        self.end == self.start
    }

    pub fn headroom(&self) -> usize {
        self.start
    }

    pub fn tailroom(&self) -> usize {
        self.buf.len() - self.end
    }

    pub fn as_slice(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.buf[self.start..self.end]
    }

    /// Grows the frame at the front by `n` bytes and returns them (their
    /// contents are whatever the headroom held). The payload does not move.
    pub fn push_front(&mut self, n: usize) -> Result<&mut [u8], BufError> {
        if n > self.start {
            return Err(BufError::NoHeadroom {
                need: n,
                have: self.start,
            });
        }
        self.start -= n;
        Ok(&mut self.buf[self.start..self.start + n])
    }

    /// Removes `n` bytes from the front of the frame.
    pub fn pull_front(&mut self, n: usize) -> Result<(), BufError> {
        if n > self.len() {
            return Err(BufError::TooShort {
                need: n,
                have: self.len(),
            });
        }
        self.start += n;
        Ok(())
    }

    /// Grows the frame at the back by `n` bytes and returns them.
    pub fn push_back(&mut self, n: usize) -> Result<&mut [u8], BufError> {
        if n > self.tailroom() {
            return Err(BufError::NoTailroom {
                need: n,
                have: self.tailroom(),
            });
        }
        let old = self.end;
        self.end += n;
        Ok(&mut self.buf[old..self.end])
    }

    /// Shortens the frame to `len` bytes (no-op if already shorter).
    pub fn truncate(&mut self, len: usize) {
        if len < self.len() {
            self.end = self.start + len;
        }
    }
}

impl core::fmt::Debug for PacketBuf {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("PacketBuf")
            .field("len", &self.len())
            .field("headroom", &self.start)
            .field("gso", &self.gso)
            .field("l4_csum_valid", &self.l4_csum_valid)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_front_does_not_move_payload() {
        let mut p = PacketBuf::from_frame(&[1, 2, 3, 4]);
        let payload_ptr = p.as_slice().as_ptr();
        let hdr = p.push_front(70).unwrap();
        hdr.fill(0xee);
        assert_eq!(p.len(), 74);
        assert_eq!(&p.as_slice()[70..], &[1, 2, 3, 4]);
        // The payload is where it was: the push only moved the start.
        assert_eq!(p.as_slice()[70..].as_ptr(), payload_ptr);
        p.pull_front(70).unwrap();
        assert_eq!(p.as_slice(), &[1, 2, 3, 4]);
    }

    #[test]
    fn limits_are_errors_not_panics() {
        let mut p = PacketBuf::new(8, 16);
        assert_eq!(
            p.push_front(9).unwrap_err(),
            BufError::NoHeadroom { need: 9, have: 8 }
        );
        assert!(p.pull_front(1).is_err());
        assert!(p.push_back(9).is_err());
        assert!(p.set_frame(&[0; 9]).is_err());
        p.push_back(8).unwrap();
        p.truncate(3);
        assert_eq!(p.len(), 3);
    }
}
