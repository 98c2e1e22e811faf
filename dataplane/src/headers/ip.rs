//! IPv4 (with options) and IPv6 (with extension headers).

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ingot::ip::{
    IpProtocol, IpV6ExtFragmentRef, Ipv4Flags, Ipv4Ref, Ipv6Ref, ValidIpv4, ValidIpv6,
    ValidLowRentV6Eh,
};
use ingot::types::HeaderParse;

use super::{Frag, Ip, ParseError};
use crate::checksum::checksum;

/// Offset of the version and IHL byte.
pub const IPV4_VER_IHL: usize = 0;
/// Offset of the DSCP/ECN byte.
pub const IPV4_TOS: usize = 1;
/// Offset of the total length.
pub const IPV4_TOTAL_LEN: usize = 2;
/// Offset of the identification.
pub const IPV4_IDENT: usize = 4;
/// Offset of the flags and fragment offset.
pub const IPV4_FRAG: usize = 6;
/// Offset of the TTL.
pub const IPV4_TTL: usize = 8;
/// Offset of the protocol.
pub const IPV4_PROTO: usize = 9;
/// Offset of the header checksum.
pub const IPV4_CSUM: usize = 10;
/// Offset of the source address.
pub const IPV4_SRC: usize = 12;
/// Offset of the destination address.
pub const IPV4_DST: usize = 16;
/// Length of an IPv4 header without options.
pub const IPV4_HDR_LEN: usize = 20;
/// Length of an IPv4 header with the most options (IHL 15).
pub const IPV4_MAX_HDR_LEN: usize = 60;

/// Offset of the version, traffic class and flow label word.
pub const IPV6_VER_TC_FLOW: usize = 0;
/// Offset of the payload length.
pub const IPV6_PAYLOAD_LEN: usize = 4;
/// Offset of the next header.
pub const IPV6_NEXT_HDR: usize = 6;
/// Offset of the hop limit.
pub const IPV6_HOP_LIMIT: usize = 7;
/// Offset of the source address.
pub const IPV6_SRC: usize = 8;
/// Offset of the destination address.
pub const IPV6_DST: usize = 24;
/// Length of the fixed IPv6 header.
pub const IPV6_HDR_LEN: usize = 40;
/// At most this many extension headers are walked; a packet with more is
/// refused as `BadIpv6Extension`. RFC 8200 allows each at most once (the
/// destination options twice), so real packets have far fewer; the cap
/// bounds the work per packet and keeps every offset well inside `u16`.
pub const IPV6_MAX_EXT_HDRS: usize = 8;

/// A parsed IPv4 header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct V4Step {
    pub ip: Ip,
    /// Header length, options included.
    pub hdr_len: usize,
    /// Datagram length (the total length field).
    pub dg_len: usize,
}

/// Parses an IPv4 header at the start of `b` (the rest of the frame).
///
/// Checks, in order: 20 bytes and the options present (`TruncatedIpv4`),
/// version 4, IHL >= 5, the header checksum, then the total length against
/// the header length and the bytes available.
#[inline(always)]
pub(crate) fn parse_ipv4(b: &[u8]) -> Result<V4Step, ParseError> {
    let (v4, _, _) = ValidIpv4::parse(b).map_err(|_| ParseError::TruncatedIpv4)?;
    if v4.version() != 4 {
        return Err(ParseError::BadIpv4Version);
    }
    let ihl = v4.ihl();
    if ihl < 5 {
        return Err(ParseError::BadIpv4HeaderLen);
    }
    let hdr_len = usize::from(ihl) * 4;
    // ingot has already split off `(ihl * 4) - 20` option bytes.
    let hdr = b.get(..hdr_len).ok_or(ParseError::TruncatedIpv4)?;
    if checksum(hdr) != 0 {
        return Err(ParseError::BadIpv4Checksum);
    }
    let dg_len = usize::from(v4.total_len());
    if dg_len < hdr_len || dg_len > b.len() {
        return Err(ParseError::BadIpv4TotalLen);
    }
    let frag = frag_kind(
        v4.fragment_offset(),
        v4.flags().contains(Ipv4Flags::MORE_FRAGMENTS),
    );
    Ok(V4Step {
        ip: Ip {
            src: IpAddr::V4(Ipv4Addr::from(v4.source())),
            dst: IpAddr::V4(Ipv4Addr::from(v4.destination())),
            proto: v4.protocol().0,
            ttl: v4.hop_limit(),
            frag,
        },
        hdr_len,
        dg_len,
    })
}

/// A parsed IPv6 header and its extension headers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct V6Step {
    pub src: Ipv6Addr,
    pub dst: Ipv6Addr,
    pub hop_limit: u8,
    /// The upper-layer protocol after the extension headers (for a later
    /// fragment: the fragment header's next header).
    pub proto: u8,
    pub frag: Frag,
    /// Fixed header plus extension headers.
    pub hdr_len: usize,
    /// Datagram length: 40 + payload length.
    pub dg_len: usize,
}

impl V6Step {
    #[inline]
    pub fn ip(&self) -> Ip {
        Ip {
            src: IpAddr::V6(self.src),
            dst: IpAddr::V6(self.dst),
            proto: self.proto,
            ttl: self.hop_limit,
            frag: self.frag,
        }
    }
}

/// Parses an IPv6 header and walks its extension headers, at the start of
/// `b` (the rest of the frame).
///
/// Checks, in order: 40 bytes (`TruncatedIpv6`), version 6, the payload
/// length (not 0 with a hop-by-hop header, which would be a jumbogram; not
/// past `b`), then each extension header within the payload
/// (`BadIpv6Extension`). The walk stops at the first header that is not an
/// extension, or after a fragment header with a non-zero offset: the bytes
/// after it are fragment data, not headers.
#[inline(always)]
pub(crate) fn parse_ipv6(b: &[u8]) -> Result<V6Step, ParseError> {
    let fixed = b.get(..IPV6_HDR_LEN).ok_or(ParseError::TruncatedIpv6)?;
    // On exactly 40 bytes ingot parses the fixed header only: its
    // extension-header sub-parse sees no bytes and stops.
    let (v6, _, _) = ValidIpv6::parse(fixed).map_err(|_| ParseError::TruncatedIpv6)?;
    if v6.version() != 6 {
        return Err(ParseError::BadIpv6Version);
    }
    let payload_len = usize::from(v6.payload_len());
    let mut proto = v6.next_header();
    if payload_len == 0 && proto == IpProtocol::IPV6_HOP_BY_HOP {
        return Err(ParseError::BadIpv6PayloadLen);
    }
    let dg_len = IPV6_HDR_LEN + payload_len;
    let dg = b.get(..dg_len).ok_or(ParseError::BadIpv6PayloadLen)?;

    let mut hdr_len = IPV6_HDR_LEN;
    let mut frag = Frag::None;
    let mut count = 0;
    while proto.class().is_some() {
        if count == IPV6_MAX_EXT_HDRS {
            return Err(ParseError::BadIpv6Extension);
        }
        count += 1;
        let rest = dg.get(hdr_len..).ok_or(ParseError::BadIpv6Extension)?;
        let (eh, next, after) = ValidLowRentV6Eh::parse_choice(rest, Some(proto))
            .map_err(|_| ParseError::BadIpv6Extension)?;
        hdr_len += rest.len() - after.len();
        proto = next.ok_or(ParseError::BadIpv6Extension)?;
        if let ValidLowRentV6Eh::IpV6ExtFragment(f) = eh {
            match frag_kind(f.fragment_offset(), f.more_frags() != 0) {
                Frag::Later => {
                    frag = Frag::Later;
                    break;
                }
                Frag::First => frag = Frag::First,
                Frag::None => {}
            }
        }
    }
    Ok(V6Step {
        src: Ipv6Addr::from(v6.source()),
        dst: Ipv6Addr::from(v6.destination()),
        hop_limit: v6.hop_limit(),
        proto: proto.0,
        frag,
        hdr_len,
        dg_len,
    })
}

/// Offset 0 with more fragments is the first fragment; any other non-zero
/// offset a later one; offset 0 without more fragments is no fragment (an
/// atomic fragment, RFC 6946, is a whole packet).
#[inline]
fn frag_kind(offset: u16, more: bool) -> Frag {
    if offset != 0 {
        Frag::Later
    } else if more {
        Frag::First
    } else {
        Frag::None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{IpFragOffset, IpNumber, Ipv4Header, Ipv6Header};

    fn v4(payload: u16, proto: u8) -> Ipv4Header {
        Ipv4Header::new(payload, 64, IpNumber(proto), [10, 0, 0, 1], [10, 0, 0, 2]).unwrap()
    }

    fn v4_bytes(mut h: Ipv4Header, payload: usize) -> Vec<u8> {
        h.header_checksum = h.calc_header_checksum();
        let mut v = h.to_bytes().to_vec();
        v.resize(v.len() + payload, 0xee);
        v
    }

    #[test]
    fn ipv4_offsets_and_fields() {
        let b = v4_bytes(v4(8, 17), 8);
        let s = parse_ipv4(&b).unwrap();
        assert_eq!(s.hdr_len, 20);
        assert_eq!(s.dg_len, 28);
        assert_eq!(s.ip.proto, 17);
        assert_eq!(s.ip.ttl, 64);
        assert_eq!(s.ip.frag, Frag::None);
        assert_eq!(s.ip.src, IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)));
        assert_eq!(b[IPV4_SRC..IPV4_SRC + 4], [10, 0, 0, 1]);
        assert_eq!(b[IPV4_DST..IPV4_DST + 4], [10, 0, 0, 2]);
        assert_eq!(b[IPV4_TTL], 64);
        assert_eq!(b[IPV4_PROTO], 17);
        assert_eq!(b[IPV4_VER_IHL], 0x45);
        assert_eq!(
            u16::from_be_bytes([b[IPV4_TOTAL_LEN], b[IPV4_TOTAL_LEN + 1]]),
            28
        );
        let h = Ipv4Header::from_slice(&b).unwrap().0;
        assert_eq!(
            u16::from_be_bytes([b[IPV4_CSUM], b[IPV4_CSUM + 1]]),
            h.header_checksum
        );
        assert_eq!(
            u16::from_be_bytes([b[IPV4_IDENT], b[IPV4_IDENT + 1]]),
            h.identification
        );
        assert_eq!(b[IPV4_FRAG] & 0x40, 0x40); // DF
        assert_eq!(b[IPV4_TOS], 0);
    }

    #[test]
    fn ipv4_errors() {
        let good = v4_bytes(v4(8, 17), 8);
        for n in 0..20 {
            assert_eq!(parse_ipv4(&good[..n]), Err(ParseError::TruncatedIpv4));
        }
        for n in 20..28 {
            assert_eq!(parse_ipv4(&good[..n]), Err(ParseError::BadIpv4TotalLen));
        }
        let mut b = good.clone();
        b[0] = 0x65;
        assert_eq!(parse_ipv4(&b), Err(ParseError::BadIpv4Version));
        let mut b = good.clone();
        b[0] = 0x44;
        assert_eq!(parse_ipv4(&b), Err(ParseError::BadIpv4HeaderLen));
        let mut b = good.clone();
        b[IPV4_CSUM] ^= 1;
        assert_eq!(parse_ipv4(&b), Err(ParseError::BadIpv4Checksum));
        // Total length below the header length, with a correct checksum.
        let mut h = v4(0, 17);
        h.total_len = 19;
        assert_eq!(
            parse_ipv4(&v4_bytes(h, 8)),
            Err(ParseError::BadIpv4TotalLen)
        );
        // Options cut off.
        let mut h = v4(0, 17);
        h.options = [1, 1, 1, 1, 1, 1, 1, 0].into();
        h.set_payload_len(0).unwrap();
        let b = v4_bytes(h, 0);
        assert_eq!(parse_ipv4(&b).unwrap().hdr_len, 28);
        for n in 20..28 {
            assert_eq!(parse_ipv4(&b[..n]), Err(ParseError::TruncatedIpv4));
        }
    }

    #[test]
    fn ipv4_fragments() {
        let mut h = v4(8, 6);
        h.dont_fragment = false;
        h.more_fragments = true;
        assert_eq!(
            parse_ipv4(&v4_bytes(h.clone(), 8)).unwrap().ip.frag,
            Frag::First
        );
        h.fragment_offset = IpFragOffset::try_new(100).unwrap();
        assert_eq!(
            parse_ipv4(&v4_bytes(h.clone(), 8)).unwrap().ip.frag,
            Frag::Later
        );
        h.more_fragments = false;
        assert_eq!(parse_ipv4(&v4_bytes(h, 8)).unwrap().ip.frag, Frag::Later);
        assert_eq!(frag_kind(0, false), Frag::None);
    }

    fn v6_bytes(next: u8, payload: &[u8]) -> Vec<u8> {
        let h = Ipv6Header {
            payload_length: payload.len() as u16,
            next_header: IpNumber(next),
            hop_limit: 9,
            source: [0xfd; 16],
            destination: [0xfe; 16],
            ..Default::default()
        };
        let mut v = h.to_bytes().to_vec();
        v.extend_from_slice(payload);
        v
    }

    #[test]
    fn ipv6_plain() {
        let b = v6_bytes(6, &[0; 20]);
        let s = parse_ipv6(&b).unwrap();
        assert_eq!(s.proto, 6);
        assert_eq!((s.hdr_len, s.dg_len), (40, 60));
        assert_eq!(s.hop_limit, 9);
        assert_eq!(s.src, Ipv6Addr::from([0xfd; 16]));
        assert_eq!(s.dst, Ipv6Addr::from([0xfe; 16]));
        assert_eq!(b[IPV6_SRC..IPV6_SRC + 16], [0xfd; 16]);
        assert_eq!(b[IPV6_DST..IPV6_DST + 16], [0xfe; 16]);
        assert_eq!(b[IPV6_HOP_LIMIT], 9);
        assert_eq!(b[IPV6_NEXT_HDR], 6);
        assert_eq!(b[IPV6_PAYLOAD_LEN..IPV6_PAYLOAD_LEN + 2], [0, 20]);
        assert_eq!(b[IPV6_VER_TC_FLOW] >> 4, 6);
    }

    #[test]
    fn ipv6_errors() {
        let b = v6_bytes(6, &[0; 20]);
        for n in 0..40 {
            assert_eq!(parse_ipv6(&b[..n]), Err(ParseError::TruncatedIpv6));
        }
        for n in 40..60 {
            assert_eq!(parse_ipv6(&b[..n]), Err(ParseError::BadIpv6PayloadLen));
        }
        let mut v = b.clone();
        v[0] = 0x40;
        assert_eq!(parse_ipv6(&v), Err(ParseError::BadIpv6Version));
        // Jumbogram: payload length 0 with a hop-by-hop header.
        let mut j = v6_bytes(0, &[]);
        j.extend_from_slice(&[6, 0, 0xc2, 4, 0, 1, 0, 0]);
        assert_eq!(parse_ipv6(&j), Err(ParseError::BadIpv6PayloadLen));
        // An extension header announced but missing or cut.
        assert_eq!(
            parse_ipv6(&v6_bytes(60, &[])),
            Err(ParseError::BadIpv6Extension)
        );
        assert_eq!(
            parse_ipv6(&v6_bytes(60, &[6, 1, 0, 0, 0, 0, 0, 0])),
            Err(ParseError::BadIpv6Extension)
        );
        assert_eq!(
            parse_ipv6(&v6_bytes(44, &[6, 0, 0, 0])),
            Err(ParseError::BadIpv6Extension)
        );
        // Payload length 0 and no extension: a valid, empty packet.
        let s = parse_ipv6(&v6_bytes(59, &[])).unwrap();
        assert_eq!((s.proto, s.hdr_len, s.dg_len), (59, 40, 40));
    }

    #[test]
    fn ipv6_extension_chain() {
        #[rustfmt::skip]
        let exts = [
            60, 0, 1, 4, 0, 0, 0, 0,            // hop-by-hop -> dest opts (PadN)
            43, 1, 1, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // dest opts (16 B) -> routing
            44, 0, 4, 0, 0, 0, 0, 0,            // routing (type 4, segments left 0) -> fragment
            17, 0, 0, 1, 0, 0, 0, 7,            // fragment, offset 0, M=1 -> UDP
            1, 2, 3, 4, 0, 8, 0, 0,             // UDP
        ];
        let b = v6_bytes(0, &exts);
        let s = parse_ipv6(&b).unwrap();
        assert_eq!(s.proto, 17);
        assert_eq!(s.frag, Frag::First);
        assert_eq!(s.hdr_len, 40 + 40);
        // Offset 1 (8 bytes) with M=0: a later fragment, walk stops there
        // even though its next header claims another extension.
        let mut later = exts;
        later[32] = 60;
        later[34..36].copy_from_slice(&[0, 8]);
        let s = parse_ipv6(&v6_bytes(0, &later)).unwrap();
        assert_eq!((s.proto, s.frag, s.hdr_len), (60, Frag::Later, 80));
        // Too many extension headers.
        let mut many = Vec::new();
        for _ in 0..IPV6_MAX_EXT_HDRS {
            many.extend_from_slice(&[60, 0, 1, 4, 0, 0, 0, 0]);
        }
        many.extend_from_slice(&[6, 0, 1, 4, 0, 0, 0, 0]);
        assert_eq!(
            parse_ipv6(&v6_bytes(60, &many)),
            Err(ParseError::BadIpv6Extension)
        );
        let s = parse_ipv6(&v6_bytes(60, &many[8..])).unwrap();
        assert_eq!((s.proto, s.hdr_len), (6, 40 + 8 * IPV6_MAX_EXT_HDRS));
    }
}
