//! Checksum inspectors: which checksum of a frame is wrong, if any,
//! computed here (RFC 1071 sums over the RFC 791 / 768 / 793 / 792 /
//! 4443 coverage) rather than by the code under test. Nothing here
//! panics on any input: a short or odd frame is answered with
//! [`Bad::Truncated`].

use crate::build::udp6_checksum;
use crate::checksum;
use std::fmt;

/// The checksum found wrong (or why none could be checked).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bad {
    /// The frame ends before the named header or the length it states.
    Truncated(&'static str),
    Ipv4Header,
    Tcp,
    Udp,
    /// A UDP checksum of 0 over IPv6, where it is mandatory (RFC 8200
    /// section 8.1; tunnels may omit it, RFC 6935, see [`Checked`]).
    UdpZeroOverIpv6,
    Icmpv4,
    Icmpv6,
}

impl fmt::Display for Bad {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Bad::Truncated(what) => write!(f, "frame truncated in the {what}"),
            Bad::Ipv4Header => f.write_str("IPv4 header checksum wrong"),
            Bad::Tcp => f.write_str("TCP checksum wrong"),
            Bad::Udp => f.write_str("UDP checksum wrong"),
            Bad::UdpZeroOverIpv6 => f.write_str("UDP checksum 0 over IPv6"),
            Bad::Icmpv4 => f.write_str("ICMPv4 checksum wrong"),
            Bad::Icmpv6 => f.write_str("ICMPv6 checksum wrong"),
        }
    }
}

/// What a frame's checksums were found to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Checked {
    /// The IPv4 header checksum was verified.
    pub ipv4_header: bool,
    /// The transport protocol whose checksum was verified (6, 17, 1, 58),
    /// `None` for a non-IP frame, a fragment after the first, or a
    /// protocol without a checksum known here.
    pub l4: Option<u8>,
    /// A UDP checksum of 0 over IPv4: "none", accepted (RFC 768).
    pub udp_zero: bool,
}

/// Verifies every checksum of an Ethernet frame (optionally one 802.1Q
/// tag): the IPv4 header's, then the TCP, UDP, ICMPv4 or ICMPv6
/// checksum, each over the length the IP header states (trailing padding
/// is ignored). IPv6 extension headers are walked; a fragment's
/// transport is not checked (its checksum covers the reassembled
/// datagram).
pub fn check_checksums(frame: &[u8]) -> Result<Checked, Bad> {
    let mut at = 12;
    let mut ty = be16(frame, at).ok_or(Bad::Truncated("Ethernet header"))?;
    at += 2;
    if ty == 0x8100 {
        ty = be16(frame, at + 2).ok_or(Bad::Truncated("VLAN tag"))?;
        at += 4;
    }
    let mut out = Checked::default();
    match ty {
        0x0800 => {
            let ip = frame.get(at..).ok_or(Bad::Truncated("IPv4 header"))?;
            let ihl = usize::from(*ip.first().ok_or(Bad::Truncated("IPv4 header"))? & 0x0f) * 4;
            let total = usize::from(be16(ip, 2).ok_or(Bad::Truncated("IPv4 header"))?);
            if ihl < 20 || ip.len() < ihl || total < ihl || ip.len() < total {
                return Err(Bad::Truncated("IPv4 header"));
            }
            if checksum::sum(&ip[..ihl]) != 0xffff {
                return Err(Bad::Ipv4Header);
            }
            out.ipv4_header = true;
            let frag = be16(ip, 6).unwrap_or(0) & 0x1fff;
            let more = be16(ip, 6).unwrap_or(0) & 0x2000 != 0;
            if frag != 0 || more {
                // The transport checksum covers the reassembled datagram.
                return Ok(out);
            }
            let (src, dst, l4) = (&ip[12..16], &ip[16..20], &ip[ihl..total]);
            check_l4(ip[9], src, dst, l4, false, &mut out)?;
        }
        0x86dd => {
            let ip = frame
                .get(at..at + 40)
                .ok_or(Bad::Truncated("IPv6 header"))?;
            let len = usize::from(be16(ip, 4).unwrap_or(0));
            let mut payload = frame
                .get(at + 40..at + 40 + len)
                .ok_or(Bad::Truncated("IPv6 payload"))?;
            let mut next = ip[6];
            // Hop-by-hop, routing, fragment, destination options (RFC 8200
            // section 4): walked to the upper layer.
            while matches!(next, 0 | 43 | 44 | 60) {
                let (&nh, rest) = payload
                    .split_first()
                    .ok_or(Bad::Truncated("IPv6 extension header"))?;
                let ext_len = if next == 44 {
                    let off = be16(payload, 2).ok_or(Bad::Truncated("IPv6 fragment header"))?;
                    if off & 0xfff9 != 0 {
                        // Not a whole datagram: nothing to check here.
                        return Ok(out);
                    }
                    8
                } else {
                    (usize::from(
                        *rest
                            .first()
                            .ok_or(Bad::Truncated("IPv6 extension header"))?,
                    ) + 1)
                        * 8
                };
                payload = payload
                    .get(ext_len..)
                    .ok_or(Bad::Truncated("IPv6 extension header"))?;
                next = nh;
            }
            check_l4(next, &ip[8..24], &ip[24..40], payload, true, &mut out)?;
        }
        _ => {}
    }
    Ok(out)
}

fn check_l4(
    proto: u8,
    src: &[u8],
    dst: &[u8],
    l4: &[u8],
    v6: bool,
    out: &mut Checked,
) -> Result<(), Bad> {
    let pseudo_ok = |what| -> Result<bool, Bad> {
        let acc = checksum::pseudo_header(src, dst, proto, l4.len() as u32);
        if l4.len() < what {
            return Err(Bad::Truncated("transport header"));
        }
        Ok(checksum::fold(checksum::add(acc, l4)) == 0xffff)
    };
    match proto {
        6 => {
            if !pseudo_ok(20)? {
                return Err(Bad::Tcp);
            }
        }
        17 => {
            if l4.len() < 8 {
                return Err(Bad::Truncated("UDP header"));
            }
            if l4[6..8] == [0, 0] {
                if v6 {
                    return Err(Bad::UdpZeroOverIpv6);
                }
                out.udp_zero = true;
            } else if !pseudo_ok(8)? {
                return Err(Bad::Udp);
            }
        }
        1 => {
            if l4.len() < 8 {
                return Err(Bad::Truncated("ICMPv4 header"));
            }
            if checksum::sum(l4) != 0xffff {
                return Err(Bad::Icmpv4);
            }
        }
        58 if v6 => {
            if !pseudo_ok(8)? {
                return Err(Bad::Icmpv6);
            }
        }
        _ => return Ok(()),
    }
    out.l4 = Some(proto);
    Ok(())
}

/// [`check_checksums`] for tests that want every checksum present and
/// right: panics naming the wrong one, and on a UDP checksum of 0 over
/// IPv4 (legal, but never what sluice writes), or on no transport
/// checksum found.
#[track_caller]
pub fn assert_checksums(frame: &[u8]) -> Checked {
    let c = match check_checksums(frame) {
        Ok(c) => c,
        Err(e) => panic!("{e}: {frame:02x?}"),
    };
    assert!(!c.udp_zero, "UDP checksum 0 (none written): {frame:02x?}");
    assert!(c.l4.is_some(), "no transport checksum found: {frame:02x?}");
    c
}

/// Recomputes the outer UDP checksum of a Geneve tunnel over IPv6 (IPv6
/// at 14, UDP at 54: no VLAN, no extension headers) after a test changed
/// its bytes. A frame too short for the lengths it states is left as it
/// is.
pub fn fill_outer_udp(f: &mut [u8]) {
    let Some(len) = be16(f, 58).map(usize::from) else {
        return;
    };
    if len < 8 || f.len() < 54 + len {
        return;
    }
    let c = udp6_checksum(&f[22..38], &f[38..54], &f[54..54 + len]);
    f[60..62].copy_from_slice(&c.to_be_bytes());
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    b.get(at..at + 2).map(|w| u16::from_be_bytes([w[0], w[1]]))
}
