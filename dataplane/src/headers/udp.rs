//! UDP.

use ingot::types::HeaderParse;
use ingot::udp::{UdpRef, ValidUdp};

use super::ParseError;

/// Offset of the source port.
pub const UDP_SRC: usize = 0;
/// Offset of the destination port.
pub const UDP_DST: usize = 2;
/// Offset of the length.
pub const UDP_LEN: usize = 4;
/// Offset of the checksum.
pub const UDP_CSUM: usize = 6;
/// Length of the UDP header.
pub const UDP_HDR_LEN: usize = 8;

/// A parsed UDP header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct UdpStep {
    pub src: u16,
    pub dst: u16,
    /// The length field: header plus payload.
    pub len: usize,
}

/// Parses a UDP header at the start of `b`, which must end where the IP
/// datagram ends. Fewer than 8 bytes is `TruncatedUdp`; a length field
/// below 8 is `BadUdpLength`, and so is one past `b` when `whole` (the
/// datagram is not a first fragment, whose UDP length counts the bytes of
/// the later fragments too).
#[inline(always)]
pub(crate) fn parse_udp(b: &[u8], whole: bool) -> Result<UdpStep, ParseError> {
    let (u, _, _) = ValidUdp::parse(b).map_err(|_| ParseError::TruncatedUdp)?;
    let len = usize::from(u.length());
    if len < UDP_HDR_LEN || (whole && len > b.len()) {
        return Err(ParseError::BadUdpLength);
    }
    Ok(UdpStep {
        src: u.source(),
        dst: u.destination(),
        len,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::UdpHeader;

    #[test]
    fn fields_offsets_errors() {
        let h = UdpHeader {
            source_port: 5353,
            destination_port: 53,
            length: 12,
            checksum: 0xabcd,
        };
        let mut b = h.to_bytes().to_vec();
        b.extend_from_slice(&[1, 2, 3, 4, 5]);
        let be16 = |b: &[u8], o: usize| u16::from_be_bytes([b[o], b[o + 1]]);
        assert_eq!(be16(&b, UDP_SRC), 5353);
        assert_eq!(be16(&b, UDP_DST), 53);
        assert_eq!(be16(&b, UDP_LEN), 12);
        assert_eq!(be16(&b, UDP_CSUM), 0xabcd);
        assert_eq!(
            parse_udp(&b, true),
            Ok(UdpStep {
                src: 5353,
                dst: 53,
                len: 12
            })
        );
        for n in 0..8 {
            assert_eq!(parse_udp(&b[..n], true), Err(ParseError::TruncatedUdp));
        }
        for n in 8..12 {
            assert_eq!(parse_udp(&b[..n], true), Err(ParseError::BadUdpLength));
            assert!(parse_udp(&b[..n], false).is_ok());
        }
        for l in 0..8u16 {
            b[UDP_LEN..UDP_LEN + 2].copy_from_slice(&l.to_be_bytes());
            assert_eq!(parse_udp(&b, true), Err(ParseError::BadUdpLength));
            assert_eq!(parse_udp(&b, false), Err(ParseError::BadUdpLength));
        }
    }
}
