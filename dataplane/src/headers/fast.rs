//! The hit path's parse: the flow key, the offsets and the TCP flags of
//! the commonest frames, plain or Geneve-encapsulated, read straight from
//! the bytes.
//!
//! A UFT hit needs only what finds the flow (the 5-tuple) and where to
//! rewrite (the offsets); the full [`parse`](super::parse) builds every
//! field the layers match on, which a hit never reads. This parse accepts
//! only untagged Ethernet carrying IPv4 without options or IPv6 without
//! extension headers, not fragmented, carrying TCP or UDP; anything else
//! (VLAN tags, options, fragments, ICMP, ARP, malformed frames) is `None`
//! and goes through the full parse as before. Encapsulated, the same guest
//! frames inside Ethernet / IPv6 without extension headers / UDP to the
//! Geneve port / Geneve version 0 without options.
//!
//! Contract: when [`parse_fast`] returns `Some`, the full parse of the same
//! frame in the same mode succeeds, and its flow key, offsets and TCP
//! flags are the ones returned here (tested against the full parse,
//! including on randomly damaged frames). It never panics.

use super::{
    ethertype, proto, Offsets, ParseMode, ETH_HDR_LEN, GENEVE_HDR_LEN, GENEVE_PORT, IPV4_HDR_LEN,
    IPV6_HDR_LEN, UDP_HDR_LEN,
};
use crate::checksum::checksum;
use crate::flow::FlowKey;

/// What the hit path needs of a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FastParsed {
    pub key: FlowKey,
    pub off: Offsets,
    /// The TCP flags, for TCP segments.
    pub tcp_flags: Option<u8>,
}

#[inline(always)]
fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

/// See the module documentation.
#[inline]
pub fn parse_fast(frame: &[u8], mode: ParseMode) -> Option<FastParsed> {
    match mode {
        ParseMode::Plain => guest(frame, 0, 0, Offsets::default()),
        ParseMode::Geneve => encap(frame),
    }
}

/// Ethernet / IPv6 / UDP 6081 / Geneve without options / guest frame.
#[inline(always)]
fn encap(frame: &[u8]) -> Option<FastParsed> {
    let l3 = ETH_HDR_LEN;
    if be16(frame.get(..l3)?, 12) != ethertype::IPV6 {
        return None;
    }
    let h = frame.get(l3..l3 + IPV6_HDR_LEN)?;
    if h[0] >> 4 != 6 || h[6] != proto::UDP {
        return None;
    }
    let l4 = l3 + IPV6_HDR_LEN;
    let udp = frame.get(l4..l4 + usize::from(be16(h, 4)))?;
    let len = usize::from(be16(udp.get(..UDP_HDR_LEN)?, 4));
    if len < UDP_HDR_LEN || len > udp.len() || be16(udp, 2) != GENEVE_PORT {
        return None;
    }
    let g = l4 + UDP_HDR_LEN;
    // The UDP length bounds the Geneve packet and so the guest frame.
    let g_end = l4 + len;
    let gh = frame.get(g..g_end)?.get(..GENEVE_HDR_LEN)?;
    // Version 0 and no options (a frame with options takes the full
    // parse, which checks them); the payload is an Ethernet frame.
    if gh[0] != 0 || be16(gh, 2) != ethertype::ETHERNET {
        return None;
    }
    let vni = u32::from_be_bytes([0, gh[4], gh[5], gh[6]]);
    let off = Offsets {
        outer_l3: l3 as u16,
        outer_l4: l4 as u16,
        geneve: g as u16,
        ..Offsets::default()
    };
    guest(&frame[..g_end], g + GENEVE_HDR_LEN, vni, off)
}

/// The guest frame at `frame[l2..]`, to the end of `frame`.
#[inline(always)]
fn guest(frame: &[u8], l2: usize, vni: u32, mut off: Offsets) -> Option<FastParsed> {
    let l3 = l2 + ETH_HDR_LEN;
    let ip = frame.get(l3..)?;
    let mut key = FlowKey {
        src: [0; 16],
        dst: [0; 16],
        src_port: 0,
        dst_port: 0,
        proto: 0,
        af: 0,
        vni,
    };
    // (header length, datagram length) of the IP header at `l3`.
    let (hdr_len, dg_len) = match be16(frame.get(l2..l3)?, 12) {
        ethertype::IPV4 => {
            let h = ip.get(..IPV4_HDR_LEN)?;
            // Version 4, no options.
            if h[0] != 0x45 || checksum(h) != 0 {
                return None;
            }
            let total = usize::from(be16(h, 2));
            // Neither a fragment (offset 0, no more fragments) nor too
            // short or long for the frame.
            if be16(h, 6) & 0x3fff != 0 || total < IPV4_HDR_LEN || total > ip.len() {
                return None;
            }
            key.proto = h[9];
            key.af = 4;
            key.src[..4].copy_from_slice(&h[12..16]);
            key.dst[..4].copy_from_slice(&h[16..20]);
            (IPV4_HDR_LEN, total)
        }
        ethertype::IPV6 => {
            let h = ip.get(..IPV6_HDR_LEN)?;
            if h[0] >> 4 != 6 {
                return None;
            }
            let dg = IPV6_HDR_LEN + usize::from(be16(h, 4));
            if dg > ip.len() {
                return None;
            }
            // The next header is the upper layer: no extension headers.
            key.proto = h[6];
            key.af = 6;
            key.src.copy_from_slice(&h[8..24]);
            key.dst.copy_from_slice(&h[24..40]);
            (IPV6_HDR_LEN, dg)
        }
        _ => return None,
    };
    let l4 = ip.get(hdr_len..dg_len)?;
    let tcp_flags = match key.proto {
        proto::TCP => {
            let doff = usize::from(*l4.get(12)? >> 4) * 4;
            if doff < 20 || doff > l4.len() {
                return None;
            }
            Some(l4[13])
        }
        proto::UDP => {
            let len = usize::from(be16(l4.get(..UDP_HDR_LEN)?, 4));
            if len < UDP_HDR_LEN || len > l4.len() {
                return None;
            }
            None
        }
        _ => return None,
    };
    key.src_port = be16(l4, 0);
    key.dst_port = be16(l4, 2);
    off.inner_l2 = u16::try_from(l2).ok()?;
    off.inner_l3 = u16::try_from(l3).ok()?;
    off.inner_l4 = u16::try_from(l3 + hdr_len).ok()?;
    off.inner_end = u16::try_from(l3 + dg_len).ok()?;
    Some(FastParsed {
        key,
        off,
        tcp_flags,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::headers::{parse, ParseMode, L4};
    use etherparse::PacketBuilder;

    const SMAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
    const DMAC: [u8; 6] = [2, 0, 0, 0, 0, 2];

    /// The full parse's view of what `parse_fast` returns.
    fn full(frame: &[u8], mode: ParseMode) -> Option<FastParsed> {
        let p = parse(frame, mode).ok()?;
        let tcp_flags = match p.hdrs.inner.l4 {
            L4::Tcp(t) => Some(t.flags),
            _ => None,
        };
        Some(FastParsed {
            key: FlowKey::of(&p.hdrs)?,
            off: p.off,
            tcp_flags,
        })
    }

    fn frames() -> Vec<Vec<u8>> {
        let mut v = Vec::new();
        let eth = || PacketBuilder::ethernet2(SMAC, DMAC);
        let mut f = Vec::new();
        eth()
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .tcp(40000, 80, 7, 1000)
            .syn()
            .ack(9)
            .write(&mut f, b"payload")
            .unwrap();
        v.push(f);
        let mut f = Vec::new();
        eth()
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .udp(5353, 53)
            .write(&mut f, b"query")
            .unwrap();
        v.push(f);
        let mut f = Vec::new();
        let (s6, d6) = ([0xfd; 16], [0xfe; 16]);
        eth()
            .ipv6(s6, d6, 64)
            .tcp(1, 2, 3, 4)
            .fin()
            .psh()
            .write(&mut f, b"v6 data")
            .unwrap();
        v.push(f);
        let mut f = Vec::new();
        eth()
            .ipv6(s6, d6, 64)
            .udp(9, 10)
            .write(&mut f, &[0u8; 300])
            .unwrap();
        v.push(f);
        // Padded to a minimum-size frame: the padding is not the datagram.
        let mut f = Vec::new();
        eth()
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .udp(1, 2)
            .write(&mut f, b"")
            .unwrap();
        f.resize(64, 0);
        v.push(f);
        v
    }

    /// `inner` in Ethernet / IPv6 / UDP 6081 / Geneve (VNI 0x123456).
    fn geneve(inner: &[u8]) -> Vec<u8> {
        let mut g = vec![0, 0, 0x65, 0x58, 0x12, 0x34, 0x56, 0];
        g.extend_from_slice(inner);
        let mut v = Vec::new();
        PacketBuilder::ethernet2(DMAC, SMAC)
            .ipv6([0xfd; 16], [0xfc; 16], 62)
            .udp(49152, GENEVE_PORT)
            .write(&mut v, &g)
            .unwrap();
        v
    }

    /// Every frame: plain, and encapsulated.
    fn cases() -> Vec<(ParseMode, Vec<u8>)> {
        let plain = frames();
        let encap = plain.iter().map(|f| (ParseMode::Geneve, geneve(f)));
        plain
            .iter()
            .map(|f| (ParseMode::Plain, f.clone()))
            .chain(encap)
            .collect()
    }

    #[test]
    fn common_frames_take_the_fast_parse_and_agree_with_the_full_one() {
        for (i, (mode, f)) in cases().iter().enumerate() {
            let fast = parse_fast(f, *mode);
            assert!(fast.is_some(), "frame {i} should parse fast");
            assert_eq!(fast, full(f, *mode), "frame {i}");
        }
        let g = parse_fast(&geneve(&frames()[0]), ParseMode::Geneve).unwrap();
        assert_eq!(g.key.vni, 0x12_3456);
        assert_eq!(g.off.inner_l2, 14 + 40 + 8 + 8);
    }

    #[test]
    fn other_frames_are_left_to_the_full_parse() {
        let eth = || PacketBuilder::ethernet2(SMAC, DMAC);
        let mut icmp = Vec::new();
        eth()
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .icmpv4_echo_request(1, 1)
            .write(&mut icmp, b"ping")
            .unwrap();
        let mut vlan = Vec::new();
        eth()
            .single_vlan(7.try_into().unwrap())
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .udp(1, 2)
            .write(&mut vlan, b"x")
            .unwrap();
        let mut frag = frames()[1].clone();
        frag[14 + 6] |= 0x20; // more fragments
        let mut bad_csum = frames()[0].clone();
        bad_csum[14 + 10] ^= 1;
        let mut short = frames()[0].clone();
        short.truncate(14 + 20 + 10);
        for (name, f) in [
            ("icmp", icmp),
            ("vlan", vlan),
            ("fragment", frag),
            ("bad checksum", bad_csum),
            ("truncated", short),
        ] {
            assert_eq!(parse_fast(&f, ParseMode::Plain), None, "{name}");
            let g = geneve(&f);
            assert_eq!(parse_fast(&g, ParseMode::Geneve), None, "{name} in Geneve");
        }
        // Geneve options are left to the full parse, which checks them.
        let mut opts = geneve(&frames()[0]);
        opts[14 + 40 + 8] = 1;
        assert_eq!(parse_fast(&opts, ParseMode::Geneve), None);
        // A plain frame is not an encapsulated one, nor the other way.
        assert_eq!(parse_fast(&frames()[0], ParseMode::Geneve), None);
    }

    /// Whatever the damage, a frame the fast parse accepts is one the full
    /// parse accepts, read the same way.
    #[test]
    fn random_damage_never_makes_the_parses_disagree() {
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut accepted = 0;
        for (mode, base) in cases() {
            for _ in 0..20_000 {
                let mut f = base.clone();
                for _ in 0..(next() % 3 + 1) {
                    let i = (next() as usize) % f.len();
                    f[i] = next() as u8;
                }
                if next() % 8 == 0 {
                    f.truncate((next() as usize) % (f.len() + 1));
                }
                if let Some(fast) = parse_fast(&f, mode) {
                    accepted += 1;
                    assert_eq!(Some(fast), full(&f, mode), "{mode:?} frame {f:02x?}");
                }
            }
        }
        // Most damage lands in payload or addresses: plenty still parse.
        assert!(accepted > 20_000, "{accepted}");
    }
}
