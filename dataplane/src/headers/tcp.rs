//! TCP.

use ingot::tcp::{TcpRef, ValidTcp};
use ingot::types::HeaderParse;

use super::{ParseError, Tcp};

/// Offset of the source port.
pub const TCP_SRC: usize = 0;
/// Offset of the destination port.
pub const TCP_DST: usize = 2;
/// Offset of the sequence number.
pub const TCP_SEQ: usize = 4;
/// Offset of the acknowledgement number.
pub const TCP_ACK: usize = 8;
/// Offset of the data offset (high nibble).
pub const TCP_DATA_OFF: usize = 12;
/// Offset of the flags byte.
pub const TCP_FLAGS: usize = 13;
/// Offset of the window.
pub const TCP_WINDOW: usize = 14;
/// Offset of the checksum.
pub const TCP_CSUM: usize = 16;
/// Offset of the urgent pointer.
pub const TCP_URG: usize = 18;
/// Length of a TCP header without options.
pub const TCP_HDR_LEN: usize = 20;

/// Parses a TCP header at the start of `b`, which must end where the IP
/// datagram ends. Returns the summary and the header length (options
/// included). Fewer than 20 bytes is `TruncatedTcp`; a data offset below 5
/// or past `b` is `BadTcpDataOffset`.
#[inline(always)]
pub(crate) fn parse_tcp(b: &[u8]) -> Result<(Tcp, usize), ParseError> {
    let (t, _, _) = ValidTcp::parse(b).map_err(|_| {
        if b.len() < TCP_HDR_LEN {
            ParseError::TruncatedTcp
        } else {
            // The fixed part is there: the options ran past the datagram.
            ParseError::BadTcpDataOffset
        }
    })?;
    let doff = t.data_offset();
    if doff < 5 {
        return Err(ParseError::BadTcpDataOffset);
    }
    let tcp = Tcp {
        src: t.source(),
        dst: t.destination(),
        flags: t.flags().bits(),
        seq: t.sequence(),
        ack: t.acknowledgement(),
    };
    Ok((tcp, usize::from(doff) * 4))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::headers::tcp_flags;
    use etherparse::TcpHeader;

    fn hdr() -> TcpHeader {
        let mut h = TcpHeader::new(1234, 80, 0x0102_0304, 512);
        h.syn = true;
        h.ack = true;
        h.acknowledgment_number = 0xa0b0_c0d0;
        h
    }

    #[test]
    fn fields_and_offsets() {
        let mut h = hdr();
        h.checksum = 0xbeef;
        let b = h.to_bytes();
        let (t, len) = parse_tcp(&b).unwrap();
        assert_eq!(len, 20);
        assert_eq!(
            t,
            Tcp {
                src: 1234,
                dst: 80,
                flags: tcp_flags::SYN | tcp_flags::ACK,
                seq: 0x0102_0304,
                ack: 0xa0b0_c0d0
            }
        );
        let be16 = |o: usize| u16::from_be_bytes([b[o], b[o + 1]]);
        let be32 = |o: usize| u32::from_be_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
        assert_eq!(be16(TCP_SRC), 1234);
        assert_eq!(be16(TCP_DST), 80);
        assert_eq!(be32(TCP_SEQ), 0x0102_0304);
        assert_eq!(be32(TCP_ACK), 0xa0b0_c0d0);
        assert_eq!(b[TCP_DATA_OFF] >> 4, 5);
        assert_eq!(b[TCP_FLAGS], 0x12);
        assert_eq!(be16(TCP_WINDOW), 512);
        assert_eq!(be16(TCP_CSUM), 0xbeef);
        assert_eq!(be16(TCP_URG), 0);
    }

    #[test]
    fn options_and_errors() {
        let mut h = hdr();
        h.set_options_raw(&[1, 1, 1, 0, 2, 4, 5, 0xb4]).unwrap();
        let b = h.to_bytes();
        assert_eq!(parse_tcp(&b).unwrap().1, 28);
        for n in 0..20 {
            assert_eq!(parse_tcp(&b[..n]), Err(ParseError::TruncatedTcp));
        }
        for n in 20..28 {
            assert_eq!(parse_tcp(&b[..n]), Err(ParseError::BadTcpDataOffset));
        }
        let mut v = b.to_vec();
        for d in 0..5u8 {
            v[TCP_DATA_OFF] = d << 4;
            assert_eq!(parse_tcp(&v), Err(ParseError::BadTcpDataOffset));
        }
    }
}
