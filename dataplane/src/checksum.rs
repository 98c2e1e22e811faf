//! The Internet checksum (RFC 1071) and its incremental update (RFC 1624).
//!
//! The fast path never recomputes a checksum over a payload it rewrites: it
//! folds the difference between the old and new header words into the
//! existing checksum (RFC 1624, eqn. 3: `HC' = ~(~HC + ~m + m')`). The few
//! places that build a header from nothing (an encapsulation push, a hairpin
//! reply) sum the bytes with [`Csum::add_bytes`].

/// A running one's-complement sum, kept unfolded in a `u64` so that adding
/// never needs a carry fold until the end.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Csum(u64);

impl Csum {
    pub const fn new() -> Self {
        Csum(0)
    }

    /// Adds bytes as big-endian 16-bit words; an odd trailing byte is
    /// padded with zero, as RFC 1071 says. Callers that sum a message in
    /// several pieces must give every piece but the last an even length.
    pub fn add_bytes(&mut self, bytes: &[u8]) {
        // RFC 1071 §2(B): the sum does not depend on byte order, so sum
        // native-order 32-bit words (no byte swap per word; 2^32 of them
        // would be needed to overflow the u64), fold, and swap the 16-bit
        // result once. 16 bytes a round: what a tunnel's outer checksum
        // check costs per byte (bench/README.md).
        let mut acc: u64 = 0;
        let mut chunks = bytes.chunks_exact(16);
        for c in &mut chunks {
            let w = |i: usize| u64::from(u32::from_ne_bytes([c[i], c[i + 1], c[i + 2], c[i + 3]]));
            acc += w(0) + w(4) + w(8) + w(12);
        }
        let rest = chunks.remainder();
        let mut words = rest.chunks_exact(2);
        for w in &mut words {
            acc += u64::from(u16::from_ne_bytes([w[0], w[1]]));
        }
        if let [last] = words.remainder() {
            // The odd byte is the high half of a big-endian word padded
            // with zero: in native order, the bytes [last, 0].
            acc += u64::from(u16::from_ne_bytes([*last, 0]));
        }
        let native = Csum(acc).fold();
        self.0 += u64::from(u16::from_be(native));
    }

    pub fn add_u16(&mut self, v: u16) {
        self.0 += u64::from(v);
    }

    pub fn add_u32(&mut self, v: u32) {
        self.0 += u64::from(v >> 16) + u64::from(v & 0xffff);
    }

    /// Removes bytes previously summed (adds their one's complement).
    pub fn sub_bytes(&mut self, bytes: &[u8]) {
        let mut words = bytes.chunks_exact(2);
        for w in &mut words {
            self.0 += u64::from(!u16::from_be_bytes([w[0], w[1]]));
        }
        if let [last] = words.remainder() {
            self.0 += u64::from(!(u16::from(*last) << 8));
        }
    }

    pub fn add(&mut self, other: Csum) {
        self.0 += other.fold() as u64;
    }

    /// Folds the carries into 16 bits: the one's-complement sum.
    pub fn fold(self) -> u16 {
        let mut s = self.0;
        while s > 0xffff {
            s = (s & 0xffff) + (s >> 16);
        }
        s as u16
    }

    /// The value to write into a checksum field.
    pub fn finish(self) -> u16 {
        !self.fold()
    }
}

/// A precomputed checksum adjustment: the one's-complement difference
/// between two sets of header words. A flow's rewrite always replaces the
/// same old values (its key) with the same new ones, so the adjustment is
/// computed once when the flow is compiled and applied to every packet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CsumDelta(u16);

impl CsumDelta {
    pub const ZERO: CsumDelta = CsumDelta(0);

    /// The delta's value, for hashing.
    pub fn raw(self) -> u16 {
        self.0
    }

    /// The delta for replacing `old` with `new` (equal lengths, even).
    pub fn between(old: &[u8], new: &[u8]) -> Self {
        let mut c = Csum::new();
        c.sub_bytes(old);
        c.add_bytes(new);
        CsumDelta(c.fold())
    }

    pub fn combine(self, other: CsumDelta) -> Self {
        let mut c = Csum(u64::from(self.0));
        c.add_u16(other.0);
        CsumDelta(c.fold())
    }

    pub fn is_zero(self) -> bool {
        // Both representations of one's-complement zero.
        self.0 == 0 || self.0 == 0xffff
    }

    /// Applies the delta to a checksum field value (RFC 1624 eqn. 3).
    #[inline]
    pub fn apply(self, field: u16) -> u16 {
        let mut s = u32::from(!field) + u32::from(self.0);
        s = (s & 0xffff) + (s >> 16);
        s = (s & 0xffff) + (s >> 16);
        !(s as u16)
    }

    /// Applies the delta to a UDP checksum field, where 0 means "no
    /// checksum" (IPv4 only) and a computed 0 is sent as 0xffff (RFC 768).
    #[inline]
    pub fn apply_udp(self, field: u16) -> u16 {
        if field == 0 {
            return 0;
        }
        match self.apply(field) {
            0 => 0xffff,
            v => v,
        }
    }
}

/// The checksum of `bytes` as a complete message.
pub fn checksum(bytes: &[u8]) -> u16 {
    let mut c = Csum::new();
    c.add_bytes(bytes);
    c.finish()
}

/// The pseudo-header sum for TCP/UDP/ICMPv6 (RFC 793, RFC 8200 §8.1).
pub fn pseudo_header(src: &[u8], dst: &[u8], proto: u8, l4_len: u32) -> Csum {
    let mut c = Csum::new();
    c.add_bytes(src);
    c.add_bytes(dst);
    c.add_u16(u16::from(proto));
    c.add_u32(l4_len);
    c
}

/// What the UDP checksum of an IPv6 datagram says about it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UdpCheck {
    /// The checksum covers the datagram as received.
    Good,
    /// The checksum does not match: the datagram was damaged on the way
    /// (RFC 8200 §8.1, RFC 1122 §4.1.3.4: discard it).
    Bad,
    /// The sender put 0 (no checksum), which IPv6 allows only for
    /// tunnels configured for it (RFC 6936).
    Zero,
}

/// Verifies the UDP checksum of `udp` (the UDP header and payload, as
/// long as the UDP length says) carried in IPv6 from `src` to `dst`
/// (RFC 8200 §8.1 pseudo-header). The sum of a correct datagram,
/// checksum field included, is 0xffff. Never panics.
pub fn verify_udp6(src: &[u8; 16], dst: &[u8; 16], udp: &[u8]) -> UdpCheck {
    if udp.get(6..8) == Some(&[0, 0]) {
        return UdpCheck::Zero;
    }
    let mut c = pseudo_header(src, dst, 17, udp.len() as u32);
    c.add_bytes(udp);
    if c.fold() == 0xffff {
        UdpCheck::Good
    } else {
        UdpCheck::Bad
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A UDP datagram over IPv6 with its checksum filled in.
    fn udp6(src: &[u8; 16], dst: &[u8; 16], payload: &[u8]) -> Vec<u8> {
        let len = (8 + payload.len()) as u16;
        let mut u = vec![0x1f, 0x90, 0x17, 0xc1];
        u.extend_from_slice(&len.to_be_bytes());
        u.extend_from_slice(&[0, 0]);
        u.extend_from_slice(payload);
        let mut c = pseudo_header(src, dst, 17, u32::from(len));
        c.add_bytes(&u);
        let sum = match c.finish() {
            0 => 0xffff,
            v => v,
        };
        u[6..8].copy_from_slice(&sum.to_be_bytes());
        u
    }

    const A: [u8; 16] = [0xfd, 0, 0, 0x99, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x0b];
    const B: [u8; 16] = [0xfd, 0, 0, 0x99, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x0a];

    #[test]
    fn udp6_checksum_verifies_and_catches_damage() {
        // Odd and even payload lengths (the odd byte is padded, RFC 1071).
        for payload in [&b"geneve!"[..], &b"geneve!!"[..], &[][..]] {
            let u = udp6(&A, &B, payload);
            assert_eq!(verify_udp6(&A, &B, &u), UdpCheck::Good, "{payload:?}");
            // Every single-bit error anywhere is caught (one's complement
            // sums catch all of them).
            for byte in 0..u.len() {
                for bit in 0..8 {
                    let mut d = u.clone();
                    d[byte] ^= 1 << bit;
                    if d[6..8] == [0, 0] {
                        continue;
                    }
                    assert_eq!(
                        verify_udp6(&A, &B, &d),
                        UdpCheck::Bad,
                        "byte {byte} bit {bit}"
                    );
                }
            }
            // The pseudo-header counts: another source address fails.
            assert_eq!(verify_udp6(&B, &B, &u), UdpCheck::Bad);
        }
    }

    #[test]
    fn udp6_zero_checksum_is_told_apart() {
        let mut u = udp6(&A, &B, b"x");
        u[6..8].copy_from_slice(&[0, 0]);
        assert_eq!(verify_udp6(&A, &B, &u), UdpCheck::Zero);
        // Too short to hold a checksum: not valid, and no panic.
        assert_eq!(verify_udp6(&A, &B, &[1, 2, 3]), UdpCheck::Bad);
    }

    // RFC 1071 §3 worked example: 00 01 f2 03 f4 f5 f6 f7 sums to 0xddf2.
    #[test]
    fn rfc1071_example() {
        let mut c = Csum::new();
        c.add_bytes(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]);
        assert_eq!(c.fold(), 0xddf2);
    }

    /// RFC 1071's sum as written: big-endian 16-bit words, one by one.
    fn reference(bytes: &[u8]) -> u16 {
        let mut s: u32 = 0;
        for w in bytes.chunks(2) {
            s += u32::from(w[0]) << 8 | u32::from(*w.get(1).unwrap_or(&0));
            s = (s & 0xffff) + (s >> 16);
        }
        s as u16
    }

    #[test]
    fn add_bytes_is_rfc1071_for_every_length_and_in_pieces() {
        let mut x: u32 = 0x1234_5678;
        let mut data = vec![0u8; 300];
        for round in 0..20 {
            for b in &mut data {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                // Some rounds all 0xff: the carries at their worst.
                *b = if round % 5 == 0 { 0xff } else { x as u8 };
            }
            for len in 0..data.len() {
                let d = &data[..len];
                let mut c = Csum::new();
                c.add_bytes(d);
                assert_eq!(c.fold(), reference(d), "length {len}, round {round}");
                // In pieces of even length, then the rest.
                let cut = (len / 3) & !1;
                let mut p = Csum::new();
                p.add_bytes(&d[..cut]);
                p.add_bytes(&d[cut..]);
                assert_eq!(p.fold(), reference(d), "pieces of {len} at {cut}");
            }
        }
    }

    #[test]
    fn odd_length_pads_with_zero() {
        assert_eq!(checksum(&[0xab]), checksum(&[0xab, 0x00]));
        let long: Vec<u8> = (0..=200u8).collect();
        let mut padded = long.clone();
        padded.push(0);
        assert_eq!(checksum(&long), checksum(&padded));
    }

    #[test]
    fn known_ipv4_header() {
        // A real IPv4 header (from a capture) whose checksum is 0xb861.
        let mut h = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(checksum(&h), 0xb861);
        h[10..12].copy_from_slice(&0xb861u16.to_be_bytes());
        assert_eq!(checksum(&h), 0);
    }

    #[test]
    fn incremental_update_matches_recompute() {
        let mut h = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        let c0 = checksum(&h);
        h[10..12].copy_from_slice(&c0.to_be_bytes());
        let new_src = [10, 1, 2, 3];
        let d = CsumDelta::between(&h[12..16], &new_src);
        h[12..16].copy_from_slice(&new_src);
        let inc = d.apply(c0);
        h[10..12].copy_from_slice(&[0, 0]);
        assert_eq!(inc, checksum(&h));
    }

    #[test]
    fn delta_combine_and_zero() {
        let a = CsumDelta::between(&[1, 2, 3, 4], &[5, 6, 7, 8]);
        let b = CsumDelta::between(&[5, 6, 7, 8], &[1, 2, 3, 4]);
        assert!(a.combine(b).is_zero());
        assert!(CsumDelta::between(&[9, 9], &[9, 9]).is_zero());
    }

    #[test]
    fn udp_zero_checksum_is_kept() {
        let d = CsumDelta::between(&[1, 2], &[3, 4]);
        assert_eq!(d.apply_udp(0), 0);
    }
}
