//! Packet buffers with headroom.
//!
//! A frame sits somewhere inside a larger allocation so that an
//! encapsulation can be pushed in front of it (and popped off) by moving
//! the start index: the payload is never copied. Buffers are allocated once
//! by the I/O layer and reused: only `new` and `from_frame` allocate, and a
//! buffer never grows (what does not fit is refused: `NoHeadroom`,
//! `NoTailroom`).
//!
//! The storage is the buffer's own heap allocation, or memory a backend
//! lends ([`Lent`]): a DPDK mbuf's data room, so the engine works on the
//! frame where the NIC put it and the same mbuf is transmitted (zero
//! copy). A lent buffer goes back to its lender when it is dropped, or is
//! taken back whole by the lender's transmit ([`PacketBuf::into_lent`]).

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

/// Frame storage a backend owns and lends to a [`PacketBuf`]: `bytes`
/// stay valid and untouched by the lender until `release(token)` runs
/// (when the `Lent` is dropped) or the lender takes the storage back with
/// [`Lent::reclaim`]. Whoever makes the `&'static mut` slice (the DPDK
/// backend, from an mbuf) vouches for that; nothing here is `unsafe`.
///
/// `repr(C)` with `bytes` first, and [`Storage`] `repr(C, u8)`: both kinds
/// of storage keep their slice at the same offset, so reading a buffer's
/// bytes compiles to the same loads whatever the kind, with no branch
/// (the hit path reads them half a dozen times per packet).
#[repr(C)]
pub struct Lent {
    bytes: &'static mut [u8],
    lender: u32,
    token: usize,
    release: fn(usize),
}

impl Lent {
    /// Storage `bytes` of lender `lender` (a tag the lender recognises its
    /// own storage by), given back by calling `release(token)`.
    pub fn new(bytes: &'static mut [u8], lender: u32, token: usize, release: fn(usize)) -> Lent {
        Lent {
            bytes,
            lender,
            token,
            release,
        }
    }

    /// The lender's tag.
    pub fn lender(&self) -> u32 {
        self.lender
    }

    /// Hands the storage back to its lender without releasing it: the
    /// token (e.g. the mbuf), which the lender now owns again.
    pub fn reclaim(self) -> usize {
        let token = self.token;
        core::mem::forget(self);
        token
    }
}

impl Drop for Lent {
    fn drop(&mut self) {
        (self.release)(self.token);
    }
}

/// Where a buffer's bytes live (see [`Lent`] for the layout).
#[repr(C, u8)]
enum Storage {
    Owned(Box<[u8]>),
    Lent(Lent),
}

impl Storage {
    #[inline(always)]
    fn bytes(&self) -> &[u8] {
        match self {
            Storage::Owned(b) => b,
            Storage::Lent(l) => l.bytes,
        }
    }

    #[inline(always)]
    fn bytes_mut(&mut self) -> &mut [u8] {
        match self {
            Storage::Owned(b) => b,
            Storage::Lent(l) => l.bytes,
        }
    }

    #[inline(always)]
    fn len(&self) -> usize {
        self.bytes().len()
    }
}

pub struct PacketBuf {
    buf: Storage,
    start: usize,
    end: usize,
    gso: Option<Gso>,
    /// The device vouched for the outermost L4 checksum (AF_PACKET's
    /// `TP_STATUS_CSUM_VALID`, virtio-net's `DATA_VALID`, DPDK's
    /// `RTE_MBUF_F_RX_L4_CKSUM_GOOD`): the switch need not verify it.
    l4_csum_valid: bool,
}

impl Clone for PacketBuf {
    /// A copy on the heap, whatever the storage (a lent buffer's copy is
    /// not lent: the lender's storage has one owner).
    fn clone(&self) -> PacketBuf {
        PacketBuf {
            buf: Storage::Owned(self.buf.bytes().into()),
            start: self.start,
            end: self.end,
            gso: self.gso,
            l4_csum_valid: self.l4_csum_valid,
        }
    }
}

impl PartialEq for PacketBuf {
    fn eq(&self, o: &PacketBuf) -> bool {
        (self.start, self.end, self.gso, self.l4_csum_valid)
            == (o.start, o.end, o.gso, o.l4_csum_valid)
            && self.buf.bytes() == o.buf.bytes()
    }
}

impl Eq for PacketBuf {}

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
            buf: Storage::Owned(vec![0u8; capacity].into_boxed_slice()),
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
        p.buf.bytes_mut()[p.start..p.end].copy_from_slice(frame);
        p
    }

    /// A buffer over lent storage holding the frame at `start..end` of it
    /// (clamped to the storage). Allocates nothing.
    pub fn from_lent(storage: Lent, start: usize, end: usize) -> Self {
        let n = storage.bytes.len();
        let end = end.min(n);
        PacketBuf {
            buf: Storage::Lent(storage),
            start: start.min(end),
            end,
            gso: None,
            l4_csum_valid: false,
        }
    }

    /// The lender's tag, if the storage is lent.
    #[inline]
    pub fn lender(&self) -> Option<u32> {
        match &self.buf {
            Storage::Lent(l) => Some(l.lender),
            Storage::Owned(_) => None,
        }
    }

    /// The lent storage and where the frame lies in it (`start..end`), for
    /// the lender to transmit in place; the buffer itself if it is not lent.
    pub fn into_lent(self) -> Result<(Lent, usize, usize), PacketBuf> {
        match self.buf {
            Storage::Lent(l) => Ok((l, self.start, self.end)),
            buf => Err(PacketBuf { buf, ..self }),
        }
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
        self.buf.bytes_mut()[self.start..self.end].copy_from_slice(frame);
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
        &self.buf.bytes()[self.start..self.end]
    }

    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.buf.bytes_mut()[self.start..self.end]
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
        Ok(&mut self.buf.bytes_mut()[self.start..self.start + n])
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
        Ok(&mut self.buf.bytes_mut()[old..self.end])
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

    static RELEASED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

    fn count_release(token: usize) {
        RELEASED.fetch_add(token, std::sync::atomic::Ordering::SeqCst);
    }

    #[test]
    fn lent_storage_goes_back_to_its_lender_once() {
        use std::sync::atomic::Ordering::SeqCst;
        let storage: &'static mut [u8] = Box::leak(vec![0u8; 256].into_boxed_slice());
        storage[128..132].copy_from_slice(&[1, 2, 3, 4]);
        let mut p = PacketBuf::from_lent(Lent::new(storage, 7, 1000, count_release), 128, 132);
        assert_eq!(p.lender(), Some(7));
        assert_eq!(p.as_slice(), &[1, 2, 3, 4]);
        // Works like any buffer: the encapsulation goes in the headroom.
        p.push_front(70).unwrap().fill(0xee);
        assert_eq!(p.len(), 74);
        assert_eq!(p.headroom(), 58);
        // A copy is the buffer's own, and equal.
        let c = p.clone();
        assert_eq!((c.lender(), &c), (None, &p));
        drop(c);
        let before = RELEASED.load(SeqCst);
        // Taken back by the lender: not released.
        let (lent, start, end) = p.into_lent().unwrap();
        assert_eq!((start, end), (58, 132));
        assert_eq!(lent.reclaim(), 1000);
        assert_eq!(RELEASED.load(SeqCst), before);
        // Dropped: released, once.
        let storage: &'static mut [u8] = Box::leak(vec![0u8; 64].into_boxed_slice());
        let p = PacketBuf::from_lent(Lent::new(storage, 7, 1, count_release), 0, 100);
        assert_eq!(p.len(), 64, "clamped to the storage");
        drop(p);
        assert_eq!(RELEASED.load(SeqCst), before + 1);
        // An owned buffer is not lent.
        assert!(PacketBuf::from_frame(&[1]).into_lent().is_err());
    }

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
