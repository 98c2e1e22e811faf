//! Flow keys: the 5-tuple a flow table is indexed by, and its hash.

use crate::headers::{Headers, L3, L4};
use core::fmt;
use core::hash::{BuildHasher, Hash, Hasher};
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use serde::Serialize;

/// Which way a packet crosses the port: `Out` from the guest to the
/// network, `In` from the network to the guest.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, serde::Deserialize,
)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    In,
    Out,
}

impl Direction {
    pub fn reverse(self) -> Direction {
        match self {
            Direction::In => Direction::Out,
            Direction::Out => Direction::In,
        }
    }

    pub fn index(self) -> usize {
        match self {
            Direction::In => 0,
            Direction::Out => 1,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Direction::In => "in",
            Direction::Out => "out",
        }
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The inner 5-tuple of an IP packet, and the VNI it arrived on. IPv4
/// addresses occupy the first four bytes of `src`/`dst`; `af` tells which.
/// For ICMP echo both ports are the echo identifier, so a request and its
/// reply have mirror-image keys.
///
/// The VNI is part of the key (0 for a plain frame) so that an
/// encapsulated packet can never match a flow of another virtual network
/// with the same inner addresses: tenant isolation does not rest on the
/// fast path skipping the layer that checks the VNI.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(C)]
pub struct FlowKey {
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub src_port: u16,
    pub dst_port: u16,
    pub proto: u8,
    pub af: u8,
    pub vni: u32,
}

impl FlowKey {
    /// The key of an IP packet; `None` for ARP and other non-IP frames.
    #[inline]
    pub fn of(h: &Headers) -> Option<FlowKey> {
        let inner = &h.inner;
        let ip = match &inner.l3 {
            L3::Ipv4(ip) | L3::Ipv6(ip) => ip,
            _ => return None,
        };
        let (src_port, dst_port) = match inner.l4 {
            // Only echo has an identifier; other ICMP messages are keyed
            // by addresses alone.
            L4::Icmp {
                ty: 0 | 8, ident, ..
            }
            | L4::Icmp6 {
                ty: 128 | 129,
                ident,
                ..
            } => (ident, ident),
            L4::Icmp { .. } | L4::Icmp6 { .. } => (0, 0),
            _ => inner.ports(),
        };
        let mut k = FlowKey::new(ip.src, ip.dst, ip.proto, src_port, dst_port);
        if let Some(o) = &h.outer {
            k.vni = o.geneve.vni.get();
        }
        Some(k)
    }

    pub fn new(src: IpAddr, dst: IpAddr, proto: u8, src_port: u16, dst_port: u16) -> FlowKey {
        let (s, af) = addr_bytes(src);
        let (d, _) = addr_bytes(dst);
        FlowKey {
            src: s,
            dst: d,
            src_port,
            dst_port,
            proto,
            af,
            vni: 0,
        }
    }

    /// The key of the reply direction.
    #[inline]
    pub fn reverse(&self) -> FlowKey {
        FlowKey {
            src: self.dst,
            dst: self.src,
            src_port: self.dst_port,
            dst_port: self.src_port,
            proto: self.proto,
            af: self.af,
            vni: self.vni,
        }
    }

    /// The same key on VNI `vni`.
    #[inline]
    pub fn with_vni(mut self, vni: u32) -> FlowKey {
        self.vni = vni;
        self
    }

    pub fn src_ip(&self) -> IpAddr {
        bytes_addr(&self.src, self.af)
    }

    pub fn dst_ip(&self) -> IpAddr {
        bytes_addr(&self.dst, self.af)
    }

    /// A hash of the flow that is the same in both directions: used for
    /// the outer UDP source port (ECMP entropy, RFC 8926 §3.3).
    pub fn symmetric_hash(&self) -> u32 {
        // Each end folded to one word; combined with commutative
        // operations, so swapping the ends gives the same hash.
        let end = |ip: &[u8; 16], port: u16| {
            word(&ip[0..8]) ^ word(&ip[8..16]).rotate_left(29) ^ (u64::from(port) << 48)
        };
        let (a, b) = (end(&self.src, self.src_port), end(&self.dst, self.dst_port));
        let rest = u64::from(self.proto) | (u64::from(self.af) << 8) | (u64::from(self.vni) << 16);
        let h = fold_mul(a.wrapping_add(b) ^ K0, (a ^ b) ^ rest ^ K1);
        (h ^ (h >> 32)) as u32
    }
}

fn addr_bytes(a: IpAddr) -> ([u8; 16], u8) {
    match a {
        IpAddr::V4(v4) => {
            let mut b = [0u8; 16];
            b[..4].copy_from_slice(&v4.octets());
            (b, 4)
        }
        IpAddr::V6(v6) => (v6.octets(), 6),
    }
}

fn bytes_addr(b: &[u8; 16], af: u8) -> IpAddr {
    if af == 4 {
        IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]))
    } else {
        IpAddr::V6(Ipv6Addr::from(*b))
    }
}

impl fmt::Debug for FlowKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for FlowKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = match self.proto {
            1 => "ICMP".to_string(),
            6 => "TCP".to_string(),
            17 => "UDP".to_string(),
            58 => "ICMPv6".to_string(),
            n => format!("proto {n}"),
        };
        match (self.src_ip(), self.dst_ip()) {
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                write!(f, "{p} [{s}]:{} -> [{d}]:{}", self.src_port, self.dst_port)
            }
            (s, d) => write!(f, "{p} {s}:{} -> {d}:{}", self.src_port, self.dst_port),
        }?;
        if self.vni != 0 {
            write!(f, " vni {}", self.vni)?;
        }
        Ok(())
    }
}

impl Serialize for FlowKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("FlowKey", 6)?;
        st.serialize_field("proto", &self.proto)?;
        st.serialize_field("src", &self.src_ip())?;
        st.serialize_field("src_port", &self.src_port)?;
        st.serialize_field("dst", &self.dst_ip())?;
        st.serialize_field("dst_port", &self.dst_port)?;
        st.serialize_field("vni", &self.vni)?;
        st.end()
    }
}

/// A fast keyed hash for flow tables. Keys come from guests, so the seed
/// is random per table: a guest cannot precompute colliding flows (hash
/// flooding) without knowing it. The key's words are buffered and mixed at
/// `finish` in three independent folded multiplies (as in wyhash), so the
/// multiplies run in parallel rather than as a dependent chain.
#[derive(Clone, Copy)]
pub struct FlowHasher {
    seed: u64,
    words: [u64; 6],
    n: usize,
}

const K0: u64 = 0xa076_1d64_78bd_642f;
const K1: u64 = 0xe703_7ed1_a0b4_28db;
const K2: u64 = 0x8ebc_6af0_9c88_c6e3;
const K3: u64 = 0x5899_65cc_7537_4cc3;

#[inline(always)]
fn fold_mul(a: u64, b: u64) -> u64 {
    let x = u128::from(a) * u128::from(b);
    (x as u64) ^ ((x >> 64) as u64)
}

impl FlowHasher {
    fn with_seed(seed: u64) -> Self {
        FlowHasher {
            seed,
            words: [0; 6],
            n: 0,
        }
    }
}

impl Hasher for FlowHasher {
    #[inline(always)]
    fn finish(&self) -> u64 {
        let w = &self.words;
        let s = self.seed;
        let a = fold_mul(w[0] ^ s ^ K0, w[1] ^ K1);
        let b = fold_mul(w[2] ^ s ^ K2, w[3] ^ K3);
        let c = fold_mul(w[4] ^ s ^ K1, w[5] ^ K2 ^ (self.n as u64));
        fold_mul(a ^ b.rotate_left(23) ^ K3, c ^ s)
    }

    fn write(&mut self, bytes: &[u8]) {
        for c in bytes.chunks(8) {
            let mut b = [0u8; 8];
            b[..c.len()].copy_from_slice(c);
            self.write_u64(u64::from_le_bytes(b));
        }
    }

    #[inline(always)]
    fn write_u64(&mut self, v: u64) {
        if self.n < self.words.len() {
            self.words[self.n] = v;
        } else {
            // Longer inputs (not flow keys) fold into the buffer.
            let i = self.n % self.words.len();
            self.words[i] = fold_mul(self.words[i] ^ v, K0);
        }
        self.n += 1;
    }
}

/// Builds [`FlowHasher`]s with a per-table random seed.
#[derive(Clone, Copy)]
pub struct FlowHashBuilder {
    seed: u64,
}

impl FlowHashBuilder {
    /// A builder with a random seed (from the standard library's per-process
    /// random keys, so no extra dependency).
    pub fn random() -> Self {
        let s = std::collections::hash_map::RandomState::new();
        FlowHashBuilder {
            seed: s.hash_one(0x5eed_u64),
        }
    }

    pub fn with_seed(seed: u64) -> Self {
        FlowHashBuilder { seed }
    }
}

impl BuildHasher for FlowHashBuilder {
    type Hasher = FlowHasher;
    fn build_hasher(&self) -> FlowHasher {
        FlowHasher::with_seed(self.seed)
    }
}

#[inline(always)]
fn word(b: &[u8]) -> u64 {
    u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
}

/// Word-wise hashing: five 64-bit mixes instead of byte-wise writes.
impl core::hash::Hash for FlowKey {
    #[inline]
    fn hash<H: Hasher>(&self, state: &mut H) {
        let w = |b: &[u8]| u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]);
        state.write_u64(w(&self.src[0..8]));
        state.write_u64(w(&self.src[8..16]));
        state.write_u64(w(&self.dst[0..8]));
        state.write_u64(w(&self.dst[8..16]));
        state.write_u64(
            u64::from(self.src_port)
                | (u64::from(self.dst_port) << 16)
                | (u64::from(self.proto) << 32)
                | (u64::from(self.af) << 40),
        );
        state.write_u64(u64::from(self.vni));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reverse_and_symmetric_hash() {
        let k = FlowKey::new(
            "10.0.0.1".parse().unwrap(),
            "10.0.0.2".parse().unwrap(),
            6,
            1234,
            80,
        );
        let r = k.reverse();
        assert_eq!(r.src_ip(), "10.0.0.2".parse::<IpAddr>().unwrap());
        assert_eq!((r.src_port, r.dst_port), (80, 1234));
        assert_eq!(r.reverse(), k);
        assert_eq!(k.symmetric_hash(), r.symmetric_hash());
        let other = FlowKey::new(
            "10.0.0.1".parse().unwrap(),
            "10.0.0.2".parse().unwrap(),
            6,
            1235,
            80,
        );
        assert_ne!(k.symmetric_hash(), other.symmetric_hash());
        assert_eq!(k.to_string(), "TCP 10.0.0.1:1234 -> 10.0.0.2:80");
    }

    #[test]
    fn seeded_hashes_differ() {
        use core::hash::BuildHasher;
        let k = FlowKey::new(
            "fd00::1".parse().unwrap(),
            "fd00::2".parse().unwrap(),
            17,
            1,
            2,
        );
        let a = FlowHashBuilder::with_seed(1).hash_one(k);
        let b = FlowHashBuilder::with_seed(2).hash_one(k);
        assert_ne!(a, b);
    }
}
