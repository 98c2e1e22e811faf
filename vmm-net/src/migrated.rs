//! A port cut over to another host by a live migration: for a grace
//! period the source host keeps the port's place in the switch, and every
//! tunnel that still arrives for its guest (from the underlay, or from a
//! local port) is sent on to the target host unchanged but for its outer
//! destination, so the target's port sees the frame the source would have
//! seen: same inner frame, same VNI, same outer source (which flows that
//! pin their underlay sender check). Nothing of the port's own processing
//! runs on the source any more: the flows live on the target.
//!
//! The frame goes back out the uplink to the hop it came from (its
//! Ethernet addresses swapped): the source host has one next hop, the
//! one that delivered it. The outer UDP checksum is adjusted for the new
//! destination (RFC 1624), so it stays valid end to end.

use crate::switch::BURST;
use dataplane::PacketBuf;
use serde::Serialize;
use std::net::Ipv6Addr;

/// Counters of a cut-over port.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct MovedStats {
    /// The target host, if cut over.
    pub to: Option<Ipv6Addr>,
    /// Tunnels sent on to the target.
    pub forwarded: u64,
    /// Tunnels that could not be (not Ethernet/IPv6/UDP, or the round's
    /// uplink queue was full).
    pub forward_dropped: u64,
    /// Frames the guest still sent on the source (dropped).
    pub guest_dropped: u64,
}

pub struct Moved {
    to: Ipv6Addr,
    forwarded: u64,
    forward_dropped: u64,
    pub(crate) guest_dropped: u64,
}

/// Outer header offsets of a tunnel without IPv6 extension headers (the
/// switch's outer checks passed it; sluice sends none).
const ETH_TYPE: usize = 12;
const IP6_NEXT: usize = 14 + 6;
const IP6_DST: usize = 14 + 24;
const UDP_CSUM: usize = 14 + 40 + 6;

impl Moved {
    pub fn new(to: Ipv6Addr) -> Moved {
        Moved {
            to,
            forwarded: 0,
            forward_dropped: 0,
            guest_dropped: 0,
        }
    }

    pub fn stats(&self) -> MovedStats {
        MovedStats {
            to: Some(self.to),
            forwarded: self.forwarded,
            forward_dropped: self.forward_dropped,
            guest_dropped: self.guest_dropped,
        }
    }

    /// Sends a tunnel for the moved guest on to the target (module doc).
    pub fn forward(&mut self, mut pkt: PacketBuf, to_uplink: &mut Vec<PacketBuf>) {
        if to_uplink.len() >= BURST * 4 || !retarget(pkt.as_mut_slice(), self.to) {
            self.forward_dropped += 1;
            return;
        }
        self.forwarded += 1;
        to_uplink.push(pkt);
    }
}

/// Rewrites a tunnel's outer IPv6 destination to `to`, swaps its Ethernet
/// addresses and adjusts its UDP checksum. False if it is not a tunnel of
/// that shape.
fn retarget(f: &mut [u8], to: Ipv6Addr) -> bool {
    if f.len() < UDP_CSUM + 2 || f[ETH_TYPE..ETH_TYPE + 2] != [0x86, 0xdd] || f[IP6_NEXT] != 17 {
        return false;
    }
    let new = to.octets();
    let mut old = [0u8; 16];
    old.copy_from_slice(&f[IP6_DST..IP6_DST + 16]);
    f[IP6_DST..IP6_DST + 16].copy_from_slice(&new);
    for i in 0..6 {
        f.swap(i, 6 + i);
    }
    let c = u16::from_be_bytes([f[UDP_CSUM], f[UDP_CSUM + 1]]);
    if c != 0 {
        // RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m'), word by word.
        let mut sum = u32::from(!c);
        for w in 0..8 {
            let m = u16::from_be_bytes([old[2 * w], old[2 * w + 1]]);
            let m2 = u16::from_be_bytes([new[2 * w], new[2 * w + 1]]);
            sum += u32::from(!m) + u32::from(m2);
        }
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        let mut out = !(sum as u16);
        if out == 0 {
            // UDP over IPv6 never sends 0 (RFC 8200 §8.1).
            out = 0xffff;
        }
        f[UDP_CSUM..UDP_CSUM + 2].copy_from_slice(&out.to_be_bytes());
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_test_support as ts;

    #[test]
    fn a_retargeted_tunnel_keeps_a_valid_outer_checksum() {
        let macs = ([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]);
        let inner = ts::udp(
            macs,
            "10.0.0.6:4000".parse().unwrap(),
            "10.0.0.5:53".parse().unwrap(),
            b"hello",
        );
        let from: Ipv6Addr = "fd00:99::100".parse().unwrap();
        let here: Ipv6Addr = "fd00:99::a".parse().unwrap();
        let mut f = ts::Geneve::new(from, here, 7777).wrap(&inner);
        let eth: Vec<u8> = f[..12].to_vec();
        ts::assert_checksums(&f);
        let to: Ipv6Addr = "fd00:99::b".parse().unwrap();
        assert!(retarget(&mut f, to));
        assert_eq!(&f[IP6_DST..IP6_DST + 16], &to.octets());
        assert_eq!(&f[..6], &eth[6..12]);
        assert_eq!(&f[6..12], &eth[..6]);
        // The outer UDP checksum, and the inner frame's, verified from scratch.
        assert_eq!(ts::check_checksums(&f).map(|c| c.l4), Ok(Some(17)));
    }

    #[test]
    fn what_is_not_an_ipv6_tunnel_is_refused() {
        let mut f = vec![0u8; 80];
        assert!(!retarget(&mut f, Ipv6Addr::LOCALHOST));
    }
}
