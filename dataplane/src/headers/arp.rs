//! ARP for IPv4 over Ethernet (RFC 826), the only kind the engine parses.

use core::net::Ipv4Addr;

use zerocopy::network_endian::U16;
use zerocopy::{FromBytes, Immutable, KnownLayout, Unaligned};

use super::{ethertype, Arp, ParseError};

/// Offset of the hardware type.
pub const ARP_HTYPE: usize = 0;
/// Offset of the protocol type.
pub const ARP_PTYPE: usize = 2;
/// Offset of the hardware address length.
pub const ARP_HLEN: usize = 4;
/// Offset of the protocol address length.
pub const ARP_PLEN: usize = 5;
/// Offset of the operation.
pub const ARP_OP: usize = 6;
/// Offset of the sender hardware address.
pub const ARP_SHA: usize = 8;
/// Offset of the sender protocol address.
pub const ARP_SPA: usize = 14;
/// Offset of the target hardware address.
pub const ARP_THA: usize = 18;
/// Offset of the target protocol address.
pub const ARP_TPA: usize = 24;
/// Length of an IPv4-over-Ethernet ARP packet.
pub const ARP_LEN: usize = 28;
/// The hardware type of Ethernet.
pub const ARP_HTYPE_ETHERNET: u16 = 1;

/// The wire layout of an IPv4-over-Ethernet ARP packet, read in place.
///
/// Not an `ingot` header: `#[derive(ingot::Ingot)]` expands to code naming
/// `::alloc`, which resolves only with `extern crate alloc;` at the crate
/// root. zerocopy (what ingot's views are built on) gives the same
/// bounds-checked, unaligned, zero-copy view.
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub(crate) struct ArpEthWire {
    pub htype: U16,
    pub ptype: U16,
    pub hlen: u8,
    pub plen: u8,
    pub op: U16,
    pub sha: [u8; 6],
    pub spa: [u8; 4],
    pub tha: [u8; 6],
    pub tpa: [u8; 4],
}

const _: () = assert!(core::mem::size_of::<ArpEthWire>() == ARP_LEN);

/// An ARP operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub enum ArpOp {
    Request,
    Reply,
    Other(u16),
}

impl ArpOp {
    #[inline]
    pub const fn from_u16(v: u16) -> Self {
        match v {
            1 => ArpOp::Request,
            2 => ArpOp::Reply,
            v => ArpOp::Other(v),
        }
    }

    #[inline]
    pub const fn to_u16(self) -> u16 {
        match self {
            ArpOp::Request => 1,
            ArpOp::Reply => 2,
            ArpOp::Other(v) => v,
        }
    }
}

/// Parses an ARP packet at the start of `b` (trailing bytes, such as
/// Ethernet padding, are ignored). Fewer than 28 bytes is `TruncatedArp`,
/// whatever the packet claims to be; a full packet that is not IPv4 over
/// Ethernet is `UnsupportedArp`.
#[inline(always)]
pub(crate) fn parse_arp(b: &[u8]) -> Result<Arp, ParseError> {
    let (a, _) = ArpEthWire::ref_from_prefix(b).map_err(|_| ParseError::TruncatedArp)?;
    if a.htype.get() != ARP_HTYPE_ETHERNET
        || a.ptype.get() != ethertype::IPV4
        || a.hlen != 6
        || a.plen != 4
    {
        return Err(ParseError::UnsupportedArp);
    }
    Ok(Arp {
        op: ArpOp::from_u16(a.op.get()),
        sha: a.sha,
        spa: Ipv4Addr::from(a.spa),
        tha: a.tha,
        tpa: Ipv4Addr::from(a.tpa),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[rustfmt::skip]
    const REQ: [u8; 28] = [
        0, 1, 0x08, 0x00, 6, 4, 0, 1,
        0x02, 0, 0, 0, 0, 1, 10, 0, 0, 1,
        0, 0, 0, 0, 0, 0, 10, 0, 0, 2,
    ];

    #[test]
    fn op_round_trip() {
        for v in [0u16, 1, 2, 3, 0xffff] {
            assert_eq!(ArpOp::from_u16(v).to_u16(), v);
        }
        assert_eq!(ArpOp::from_u16(1), ArpOp::Request);
        assert_eq!(ArpOp::from_u16(2), ArpOp::Reply);
        assert_eq!(ArpOp::from_u16(9), ArpOp::Other(9));
    }

    #[test]
    fn request() {
        let a = parse_arp(&REQ).unwrap();
        assert_eq!(
            a,
            Arp {
                op: ArpOp::Request,
                sha: [2, 0, 0, 0, 0, 1],
                spa: Ipv4Addr::new(10, 0, 0, 1),
                tha: [0; 6],
                tpa: Ipv4Addr::new(10, 0, 0, 2),
            }
        );
        assert_eq!(REQ[ARP_OP..ARP_OP + 2], [0, 1]);
        assert_eq!(REQ[ARP_SHA..ARP_SHA + 6], a.sha);
        assert_eq!(REQ[ARP_SPA..ARP_SPA + 4], a.spa.octets());
        assert_eq!(REQ[ARP_THA..ARP_THA + 6], a.tha);
        assert_eq!(REQ[ARP_TPA..ARP_TPA + 4], a.tpa.octets());
        assert_eq!(REQ[ARP_HTYPE..ARP_HTYPE + 2], [0, 1]);
        assert_eq!(REQ[ARP_PTYPE..ARP_PTYPE + 2], [8, 0]);
        assert_eq!((REQ[ARP_HLEN], REQ[ARP_PLEN]), (6, 4));
    }

    #[test]
    fn truncated_and_unsupported() {
        for n in 0..ARP_LEN {
            assert_eq!(parse_arp(&REQ[..n]), Err(ParseError::TruncatedArp));
        }
        for (i, v) in [
            (ARP_HTYPE + 1, 6),
            (ARP_PTYPE, 0x86),
            (ARP_HLEN, 8),
            (ARP_PLEN, 16),
        ] {
            let mut p = REQ;
            p[i] = v;
            assert_eq!(parse_arp(&p), Err(ParseError::UnsupportedArp));
        }
    }
}
