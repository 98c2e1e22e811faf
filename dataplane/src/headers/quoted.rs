//! The packet an ICMP error quotes (RFC 792, RFC 4443 §2.4(c)): its
//! addresses and ports, so the error can be matched to the flow it is
//! about. Bounded and never panicking: whatever is cut off is simply
//! absent.

use super::{proto, Headers, L4};
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Whether an ICMP message is an error about another packet (and so
/// quotes it): destination unreachable, time exceeded, parameter problem,
/// and for IPv6 packet too big.
pub fn is_error(l4: &L4) -> bool {
    match *l4 {
        L4::Icmp { ty, .. } => matches!(ty, 3 | 11 | 12),
        L4::Icmp6 { ty, .. } => matches!(ty, 1..=4),
        _ => false,
    }
}

/// The quoted packet: where its headers are (offsets from the start of
/// the ICMP message) and the fields that identify its flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quoted {
    pub v6: bool,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub proto: u8,
    /// Source and destination ports; for ICMP echo both the identifier.
    pub src_port: u16,
    pub dst_port: u16,
    /// Offset of the quoted IP header, and of its L4 header.
    pub l3: usize,
    pub l4: usize,
    /// Bytes of the L4 header (and beyond) quoted.
    pub l4_len: usize,
}

/// Reads the packet an ICMP error message (`icmp`, from its type byte to
/// the end of the datagram) quotes. `None` if too little is quoted to
/// know its flow (addresses and the first 4 L4 bytes, as RFC 792 assures).
pub fn quoted(icmp: &[u8], v6: bool) -> Option<Quoted> {
    let l3 = 8;
    let ip = icmp.get(l3..)?;
    let (src, dst, proto, hdr) = if v6 {
        if ip.len() < 40 || ip[0] >> 4 != 6 {
            return None;
        }
        let a = |o: usize| -> Option<Ipv6Addr> {
            Some(Ipv6Addr::from(
                <[u8; 16]>::try_from(ip.get(o..o + 16)?).ok()?,
            ))
        };
        // Extension headers are not followed: an error about such a packet
        // is not matched (and goes through the layers as any ICMP).
        (IpAddr::V6(a(8)?), IpAddr::V6(a(24)?), ip[6], 40)
    } else {
        if ip.len() < 20 || ip[0] >> 4 != 4 {
            return None;
        }
        let ihl = usize::from(ip[0] & 0x0f) * 4;
        if ihl < 20 {
            return None;
        }
        let a = |o: usize| Ipv4Addr::new(ip[o], ip[o + 1], ip[o + 2], ip[o + 3]);
        (IpAddr::V4(a(12)), IpAddr::V4(a(16)), ip[9], ihl)
    };
    let l4 = l3 + hdr;
    let b = icmp.get(l4..)?;
    let (src_port, dst_port) = match proto {
        proto::TCP | proto::UDP => {
            let p = b.get(..4)?;
            (
                u16::from_be_bytes([p[0], p[1]]),
                u16::from_be_bytes([p[2], p[3]]),
            )
        }
        proto::ICMP | proto::ICMPV6 => {
            let p = b.get(..8)?;
            // Only echo has an identifier (as in `FlowKey::of`).
            let echo = matches!(p[0], 0 | 8 | 128 | 129);
            let id = if echo {
                u16::from_be_bytes([p[4], p[5]])
            } else {
                0
            };
            (id, id)
        }
        _ => (0, 0),
    };
    Some(Quoted {
        v6,
        src,
        dst,
        proto,
        src_port,
        dst_port,
        l3,
        l4,
        l4_len: b.len(),
    })
}

impl Quoted {
    /// The key of the quoted packet's flow as the error's receiver sees
    /// the flow's *reply*: the error travels opposite to the quoted packet.
    pub fn reply_key(&self, h: &Headers) -> crate::flow::FlowKey {
        let mut k =
            crate::flow::FlowKey::new(self.dst, self.src, self.proto, self.dst_port, self.src_port);
        if let Some(o) = &h.outer {
            k.vni = o.geneve.vni.get();
        }
        k
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_udp4_and_truncations() {
        // ICMP port unreachable quoting 10.0.0.5:5353 -> 10.0.0.6:53 UDP.
        let mut m = vec![3, 3, 0, 0, 0, 0, 0, 0];
        let mut ip = vec![
            0x45, 0, 0, 36, 0, 0, 0, 0, 64, 17, 0, 0, 10, 0, 0, 5, 10, 0, 0, 6,
        ];
        ip.extend_from_slice(&[0x14, 0xe9, 0, 53, 0, 16, 0, 0]);
        m.extend_from_slice(&ip);
        let q = quoted(&m, false).unwrap();
        assert_eq!(
            (q.src, q.dst, q.proto, q.src_port, q.dst_port),
            (
                "10.0.0.5".parse().unwrap(),
                "10.0.0.6".parse().unwrap(),
                17,
                5353,
                53
            )
        );
        assert_eq!((q.l3, q.l4, q.l4_len), (8, 28, 8));
        for n in 0..m.len() {
            let r = quoted(&m[..n], false);
            assert_eq!(r.is_some(), n >= 8 + 20 + 4, "{n}");
        }
        assert!(quoted(&m, true).is_none(), "not IPv6");
    }

    #[test]
    fn errors_are_told_apart_from_queries() {
        assert!(is_error(&L4::Icmp {
            ty: 3,
            code: 4,
            ident: 0
        }));
        assert!(is_error(&L4::Icmp {
            ty: 11,
            code: 0,
            ident: 0
        }));
        assert!(!is_error(&L4::Icmp {
            ty: 8,
            code: 0,
            ident: 1
        }));
        assert!(is_error(&L4::Icmp6 {
            ty: 2,
            code: 0,
            ident: 0
        }));
        assert!(!is_error(&L4::Icmp6 {
            ty: 128,
            code: 0,
            ident: 1
        }));
        assert!(!is_error(&L4::Udp { src: 1, dst: 2 }));
    }
}
