//! Ethernet II and one optional 802.1Q tag.

use ingot::ethernet::{EthernetRef, ValidEthernet, ValidVlanBody, VlanBodyRef};
use ingot::types::HeaderParse;

use super::{ethertype, Mac, ParseError};

/// Offset of the destination MAC.
pub const ETH_DST: usize = 0;
/// Offset of the source MAC.
pub const ETH_SRC: usize = 6;
/// Offset of the EtherType (the TPID 0x8100 when a VLAN tag follows).
pub const ETH_TYPE: usize = 12;
/// Length of an untagged Ethernet header.
pub const ETH_HDR_LEN: usize = 14;

/// Length of one 802.1Q tag (TCI + inner EtherType), after `ETH_HDR_LEN`.
pub const VLAN_TAG_LEN: usize = 4;
/// Offset of the tag control information (PCP, DEI, VID) in a tagged frame.
pub const VLAN_TCI: usize = ETH_HDR_LEN;
/// Offset of the EtherType after the tag, in a tagged frame.
pub const VLAN_ETH_TYPE: usize = ETH_HDR_LEN + 2;
/// Length of an Ethernet header with one 802.1Q tag.
pub const ETH_VLAN_HDR_LEN: usize = ETH_HDR_LEN + VLAN_TAG_LEN;

/// The Ethernet fields the engine keeps, and the header length (14 or 18).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct EthStep {
    pub dst: Mac,
    pub src: Mac,
    pub vlan: Option<u16>,
    /// The EtherType after any VLAN tag.
    pub ether_type: u16,
    pub len: usize,
}

/// Parses an Ethernet header at the start of `b`, and one 802.1Q tag if
/// the EtherType says there is one. A second tag (QinQ) is not unwrapped:
/// its TPID is returned as the EtherType, which the walk treats as unknown.
#[inline(always)]
pub(crate) fn parse_ethernet(b: &[u8]) -> Result<EthStep, ParseError> {
    let (eth, _, rest) = ValidEthernet::parse(b).map_err(|_| ParseError::TruncatedEthernet)?;
    let dst = eth.destination().into_array();
    let src = eth.source().into_array();
    let ty = eth.ethertype().0;
    if ty != ethertype::VLAN {
        return Ok(EthStep {
            dst,
            src,
            vlan: None,
            ether_type: ty,
            len: ETH_HDR_LEN,
        });
    }
    let (tag, _, _) = ValidVlanBody::parse(rest).map_err(|_| ParseError::TruncatedVlan)?;
    Ok(EthStep {
        dst,
        src,
        vlan: Some(tag.vid()),
        ether_type: tag.ethertype().0,
        len: ETH_VLAN_HDR_LEN,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const FRAME: [u8; 16] = [
        1, 2, 3, 4, 5, 6, // dst
        7, 8, 9, 10, 11, 12, // src
        0x86, 0xdd, // IPv6
        0xaa, 0xbb,
    ];

    #[test]
    fn untagged() {
        let e = parse_ethernet(&FRAME).unwrap();
        assert_eq!(
            e,
            EthStep {
                dst: [1, 2, 3, 4, 5, 6],
                src: [7, 8, 9, 10, 11, 12],
                vlan: None,
                ether_type: ethertype::IPV6,
                len: 14
            }
        );
        assert_eq!(&FRAME[ETH_DST..ETH_DST + 6], &e.dst);
        assert_eq!(&FRAME[ETH_SRC..ETH_SRC + 6], &e.src);
        assert_eq!(FRAME[ETH_TYPE..ETH_TYPE + 2], [0x86, 0xdd]);
    }

    #[test]
    fn tagged() {
        let mut f = [0u8; 18];
        f[..12].copy_from_slice(&FRAME[..12]);
        f[12..14].copy_from_slice(&[0x81, 0x00]);
        // PCP 5, DEI 1, VID 0xabc.
        f[VLAN_TCI..VLAN_TCI + 2].copy_from_slice(&[0xba, 0xbc]);
        f[VLAN_ETH_TYPE..VLAN_ETH_TYPE + 2].copy_from_slice(&[0x08, 0x00]);
        let e = parse_ethernet(&f).unwrap();
        assert_eq!(e.vlan, Some(0xabc));
        assert_eq!(e.ether_type, ethertype::IPV4);
        assert_eq!(e.len, ETH_VLAN_HDR_LEN);
        for n in 0..18 {
            let want = if n < 14 {
                ParseError::TruncatedEthernet
            } else {
                ParseError::TruncatedVlan
            };
            assert_eq!(parse_ethernet(&f[..n]), Err(want), "n={n}");
        }
    }

    #[test]
    fn truncated() {
        for n in 0..14 {
            assert_eq!(
                parse_ethernet(&FRAME[..n]),
                Err(ParseError::TruncatedEthernet)
            );
        }
        assert!(parse_ethernet(&FRAME[..14]).is_ok());
    }
}
