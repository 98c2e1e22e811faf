//! The Internet checksum (RFC 1071), written out plainly so tests check
//! sluice's optimised sum against a second implementation.

/// The one's-complement sum of `data` as big-endian 16-bit words (an odd
/// last byte padded with zero), folded to 16 bits, not complemented.
pub fn sum(data: &[u8]) -> u16 {
    fold(add(0, data))
}

/// Adds `data` as big-endian 16-bit words to an unfolded sum.
pub fn add(mut acc: u64, data: &[u8]) -> u64 {
    let mut words = data.chunks_exact(2);
    for w in &mut words {
        acc += u64::from(u16::from_be_bytes([w[0], w[1]]));
    }
    if let [last] = words.remainder() {
        acc += u64::from(*last) << 8;
    }
    acc
}

/// Folds an unfolded sum to 16 bits.
pub fn fold(mut acc: u64) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// The checksum to write over `data`: the complement of its sum.
pub fn internet(data: &[u8]) -> u16 {
    !sum(data)
}

/// The unfolded sum of the TCP/UDP/ICMPv6 pseudo-header (RFC 793, 768,
/// 8200 section 8.1) for addresses of either family.
pub fn pseudo_header(src: &[u8], dst: &[u8], proto: u8, len: u32) -> u64 {
    let mut acc = add(add(0, src), dst);
    acc += u64::from(proto);
    acc += u64::from(len >> 16) + u64::from(len & 0xffff);
    acc
}

/// The checksum of a transport segment `l4` (its checksum field zeroed or
/// not: pass `skip` as the field's offset to leave it out) under a
/// pseudo-header.
pub fn transport(src: &[u8], dst: &[u8], proto: u8, l4: &[u8], skip: Option<usize>) -> u16 {
    let mut acc = pseudo_header(src, dst, proto, l4.len() as u32);
    match skip {
        Some(at) if at + 2 <= l4.len() => {
            acc = add(acc, &l4[..at]);
            // Keep word alignment: the field sits at an even offset.
            acc = add(acc, &[0, 0]);
            acc = add(acc, &l4[at + 2..]);
        }
        _ => acc = add(acc, l4),
    }
    !fold(acc)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 1071 section 3's worked example: 00 01 f2 03 f4 f5 f6 f7 sums
    /// to ddf2.
    #[test]
    fn rfc1071_example() {
        assert_eq!(
            sum(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]),
            0xddf2
        );
        assert_eq!(
            internet(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]),
            !0xddf2
        );
    }

    #[test]
    fn an_odd_byte_is_padded_on_the_right() {
        assert_eq!(sum(&[0x12]), 0x1200);
        assert_eq!(sum(&[0xff, 0xff, 0x00, 0x02]), 0x0002);
    }

    #[test]
    fn a_buffer_with_its_checksum_sums_to_all_ones() {
        let mut b = vec![
            0x45, 0, 0, 40, 0x12, 0x34, 0x40, 0, 64, 6, 0, 0, 10, 0, 0, 5, 10, 0, 0, 1,
        ];
        let c = internet(&b);
        b[10..12].copy_from_slice(&c.to_be_bytes());
        assert_eq!(sum(&b), 0xffff);
    }
}
