//! ICMP (IPv4) and ICMPv6. Both start with type, code and checksum and
//! carry an echo identifier and sequence number in the same place.

use ingot::icmp::{IcmpV4Ref, IcmpV6Ref, ValidIcmpV4, ValidIcmpV6};
use ingot::types::HeaderParse;

use super::{ParseError, L4};

/// Offset of the type.
pub const ICMP_TYPE: usize = 0;
/// Offset of the code.
pub const ICMP_CODE: usize = 1;
/// Offset of the checksum.
pub const ICMP_CSUM: usize = 2;
/// Offset of the echo identifier (echo request/reply only).
pub const ICMP_ECHO_ID: usize = 4;
/// Offset of the echo sequence number (echo request/reply only).
pub const ICMP_ECHO_SEQ: usize = 6;
/// Length of the ICMP/ICMPv6 header (type, code, checksum, 4 more bytes).
pub const ICMP_HDR_LEN: usize = 8;

/// ICMPv4 echo reply type.
pub const ICMP_ECHO_REPLY: u8 = 0;
/// ICMPv4 echo request type.
pub const ICMP_ECHO_REQUEST: u8 = 8;
/// ICMPv6 echo request type.
pub const ICMP6_ECHO_REQUEST: u8 = 128;
/// ICMPv6 echo reply type.
pub const ICMP6_ECHO_REPLY: u8 = 129;

#[inline]
fn echo_ident(is_echo: bool, rest: [u8; 4]) -> u16 {
    if is_echo {
        u16::from_be_bytes([rest[0], rest[1]])
    } else {
        0
    }
}

/// Parses an ICMP header at the start of `b` (datagram-bounded).
#[inline(always)]
pub(crate) fn parse_icmp(b: &[u8]) -> Result<L4, ParseError> {
    let (i, _, _) = ValidIcmpV4::parse(b).map_err(|_| ParseError::TruncatedIcmp)?;
    let ty = i.ty().0;
    let is_echo = ty == ICMP_ECHO_REQUEST || ty == ICMP_ECHO_REPLY;
    Ok(L4::Icmp {
        ty,
        code: i.code(),
        ident: echo_ident(is_echo, i.rest_of_hdr()),
    })
}

/// Parses an ICMPv6 header at the start of `b` (datagram-bounded).
#[inline(always)]
pub(crate) fn parse_icmp6(b: &[u8]) -> Result<L4, ParseError> {
    let (i, _, _) = ValidIcmpV6::parse(b).map_err(|_| ParseError::TruncatedIcmp6)?;
    let ty = i.ty().0;
    let is_echo = ty == ICMP6_ECHO_REQUEST || ty == ICMP6_ECHO_REPLY;
    Ok(L4::Icmp6 {
        ty,
        code: i.code(),
        ident: echo_ident(is_echo, i.rest_of_hdr()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{IcmpEchoHeader, Icmpv4Header, Icmpv4Type, Icmpv6Header, Icmpv6Type};

    #[test]
    fn icmp4() {
        let echo = IcmpEchoHeader { id: 0x1234, seq: 7 };
        let mut h = Icmpv4Header::new(Icmpv4Type::EchoRequest(echo));
        h.checksum = 0x5555;
        let b = h.to_bytes();
        assert_eq!(
            parse_icmp(&b),
            Ok(L4::Icmp {
                ty: 8,
                code: 0,
                ident: 0x1234
            })
        );
        assert_eq!((b[ICMP_TYPE], b[ICMP_CODE]), (8, 0));
        assert_eq!(b[ICMP_CSUM..ICMP_CSUM + 2], [0x55, 0x55]);
        assert_eq!(b[ICMP_ECHO_ID..ICMP_ECHO_ID + 2], [0x12, 0x34]);
        assert_eq!(b[ICMP_ECHO_SEQ..ICMP_ECHO_SEQ + 2], [0, 7]);
        let b = Icmpv4Header::new(Icmpv4Type::EchoReply(echo)).to_bytes();
        assert_eq!(
            parse_icmp(&b),
            Ok(L4::Icmp {
                ty: 0,
                code: 0,
                ident: 0x1234
            })
        );
        // Destination unreachable, port unreachable: no identifier.
        let b = [3u8, 3, 0, 0, 0x12, 0x34, 0, 0];
        assert_eq!(
            parse_icmp(&b),
            Ok(L4::Icmp {
                ty: 3,
                code: 3,
                ident: 0
            })
        );
        for n in 0..ICMP_HDR_LEN {
            assert_eq!(parse_icmp(&b[..n]), Err(ParseError::TruncatedIcmp));
        }
    }

    #[test]
    fn icmp6() {
        let echo = IcmpEchoHeader { id: 0xfeed, seq: 1 };
        let b = Icmpv6Header::new(Icmpv6Type::EchoRequest(echo)).to_bytes();
        assert_eq!(
            parse_icmp6(&b),
            Ok(L4::Icmp6 {
                ty: 128,
                code: 0,
                ident: 0xfeed
            })
        );
        let b = Icmpv6Header::new(Icmpv6Type::EchoReply(echo)).to_bytes();
        assert_eq!(
            parse_icmp6(&b),
            Ok(L4::Icmp6 {
                ty: 129,
                code: 0,
                ident: 0xfeed
            })
        );
        // Neighbour solicitation: no identifier.
        let b = [135u8, 0, 0, 0, 0xfe, 0xed, 0, 0];
        assert_eq!(
            parse_icmp6(&b),
            Ok(L4::Icmp6 {
                ty: 135,
                code: 0,
                ident: 0
            })
        );
        for n in 0..ICMP_HDR_LEN {
            assert_eq!(parse_icmp6(&b[..n]), Err(ParseError::TruncatedIcmp6));
        }
    }
}
