//! Header transformations: what a layer does to a packet, how the layers'
//! transformations compose into one, and how a composed transformation is
//! compiled once per flow and applied to every later packet.
//!
//! A [`Transform`] has three parts, applied in this order: pop the
//! encapsulation (`decap`), set inner header fields, push an encapsulation
//! (`encap`). Field sets only touch the guest's frame, so they commute with
//! the encapsulation steps, and composing two transforms is exact:
//! `a.then(b)` applied once equals `a` then `b` applied one after the other,
//! byte for byte (a scenario test checks it). Composition refuses the
//! sequences that make no sense (two pushes, two pops) rather than guess.
//!
//! [`Compiled`] is a transform specialised to one flow: the old values of
//! every rewritten field are the flow's key, the same for every packet of
//! the flow, so the checksum adjustments (RFC 1624) and the encapsulation
//! header are computed once. Applying it is a handful of stores and one
//! or two 16-bit additions per checksum.

use crate::checksum::{pseudo_header, Csum, CsumDelta};
use crate::flow::{FlowHashBuilder, FlowKey};
use crate::headers::{
    self, ethertype, proto, GeneveInfo, Headers, Mac, Offsets, Outer, Vni, GENEVE_PORT, L3, L4,
};
use crate::packet::PacketBuf;
use core::net::{IpAddr, Ipv6Addr};
use serde::Serialize;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Length of the encapsulation sluice pushes: Ethernet (14) + IPv6 (40) +
/// UDP (8) + Geneve (8), before options.
pub const ENCAP_LEN: usize = 70;

/// Geneve options sluice may push, in bytes (the header allows 252).
pub const MAX_GENEVE_OPTS: usize = 56;

/// What one layer does to a packet.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Transform {
    /// Pop the Geneve encapsulation.
    #[serde(skip_serializing_if = "is_false")]
    pub decap: bool,
    #[serde(skip_serializing_if = "Option::is_none", with = "opt_mac")]
    pub eth_src: Option<Mac>,
    #[serde(skip_serializing_if = "Option::is_none", with = "opt_mac")]
    pub eth_dst: Option<Mac>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip_src: Option<IpAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip_dst: Option<IpAddr>,
    /// TCP/UDP source port; for ICMP echo, the identifier.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub l4_src: Option<u16>,
    /// TCP/UDP destination port; for ICMP echo, the identifier when
    /// `l4_src` is not set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub l4_dst: Option<u16>,
    /// Push a Geneve encapsulation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encap: Option<Encap>,
    /// External state the transform was derived from (e.g. a V2P mapping):
    /// when any of it changes, flows compiled with it are re-checked.
    #[serde(skip)]
    pub deps: Deps,
    /// For ICMP echo, whose one identifier both `l4_src` and `l4_dst`
    /// write: the identifier a composed chain leaves (the last write
    /// wins, as when the transforms run one by one). A single transform
    /// leaves it unset: its identifier is `l4_src`, else `l4_dst`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub icmp_ident: Option<u16>,
    /// Applies only to packets from this underlay sender: a decapsulating
    /// layer that checked the sender pins it, so a packet of the same flow
    /// from another host is checked again rather than let through.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expect_outer_src: Option<Ipv6Addr>,
}

/// A version number for state outside the engine that transforms are
/// derived from. The owner bumps it when the state changes; every flow
/// whose transform depends on it is re-checked at its next packet (one
/// relaxed atomic load per dependency on the fast path; no lock, no
/// walk over the flow table).
#[derive(Clone, Debug, Default)]
pub struct Version(Arc<AtomicU64>);

impl Version {
    pub fn new() -> Self {
        Self::default()
    }

    /// Marks the state changed.
    pub fn bump(&self) {
        self.0.fetch_add(1, Ordering::Release);
    }

    pub fn current(&self) -> u64 {
        self.0.load(Ordering::Acquire)
    }

    /// A dependency on the state as it is now.
    pub fn dep(&self) -> Dep {
        Dep {
            version: self.clone(),
            seen: self.current(),
        }
    }
}

/// A transform's dependencies, inline up to two (an overlay mapping and
/// one more): no allocation to make or compose them.
pub type Deps = smallvec::SmallVec<[Dep; 2]>;

/// A transform's dependency: a [`Version`] and the value it had.
#[derive(Clone, Debug)]
pub struct Dep {
    version: Version,
    seen: u64,
}

impl Dep {
    #[inline]
    pub fn is_current(&self) -> bool {
        self.version.0.load(Ordering::Relaxed) == self.seen
    }
}

impl PartialEq for Dep {
    fn eq(&self, o: &Dep) -> bool {
        Arc::ptr_eq(&self.version.0, &o.version.0) && self.seen == o.seen
    }
}

impl Eq for Dep {}

fn is_false(b: &bool) -> bool {
    !*b
}

mod opt_mac {
    use super::Mac;
    pub fn serialize<S: serde::Serializer>(m: &Option<Mac>, s: S) -> Result<S::Ok, S::Error> {
        match m {
            Some(m) => s.serialize_str(&super::mac_string(m)),
            None => s.serialize_none(),
        }
    }
}

/// `aa:bb:cc:dd:ee:ff`.
pub fn mac_string(m: &Mac) -> String {
    format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        m[0], m[1], m[2], m[3], m[4], m[5]
    )
}

/// A Geneve-over-IPv6 encapsulation to push (RFC 8926).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Encap {
    #[serde(serialize_with = "ser_mac")]
    pub eth_src: Mac,
    #[serde(serialize_with = "ser_mac")]
    pub eth_dst: Mac,
    pub ip_src: Ipv6Addr,
    pub ip_dst: Ipv6Addr,
    pub hop_limit: u8,
    /// Outer UDP source port; 0 means "derive it from the inner flow", so
    /// that ECMP in the underlay spreads flows (RFC 8926 §3.3).
    pub udp_src: u16,
    pub vni: Vni,
    pub options: GeneveOptions,
    /// Compute the outer UDP checksum (RFC 8200 requires one over IPv6
    /// unless both tunnel ends opt out per RFC 6935).
    pub udp_csum: bool,
}

/// Hashes the fields that tell encapsulations apart in practice (where
/// and in which network); `Eq` still compares every field, so this is
/// consistent, and the encapsulation cache hashes 20 bytes, not 130.
impl core::hash::Hash for Encap {
    fn hash<H: core::hash::Hasher>(&self, h: &mut H) {
        self.ip_dst.hash(h);
        self.vni.hash(h);
    }
}

fn ser_mac<S: serde::Serializer>(m: &Mac, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&mac_string(m))
}

/// Encoded Geneve option TLVs, kept inline (no heap) and bounded.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct GeneveOptions {
    len: u8,
    critical: bool,
    bytes: [u8; MAX_GENEVE_OPTS],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum GeneveOptError {
    #[error("Geneve option data must be a multiple of 4 bytes and at most 124, got {0}")]
    DataLen(usize),
    #[error("Geneve options would exceed {MAX_GENEVE_OPTS} bytes")]
    Full,
}

impl GeneveOptions {
    pub const EMPTY: GeneveOptions = GeneveOptions {
        len: 0,
        critical: false,
        bytes: [0; MAX_GENEVE_OPTS],
    };

    /// Appends one option (RFC 8926 §3.5). The high bit of `ty` marks it
    /// critical.
    pub fn push(&mut self, class: u16, ty: u8, data: &[u8]) -> Result<(), GeneveOptError> {
        if !data.len().is_multiple_of(4) || data.len() > 124 {
            return Err(GeneveOptError::DataLen(data.len()));
        }
        let at = usize::from(self.len);
        let n = 4 + data.len();
        if at + n > MAX_GENEVE_OPTS {
            return Err(GeneveOptError::Full);
        }
        self.bytes[at..at + 2].copy_from_slice(&class.to_be_bytes());
        self.bytes[at + 2] = ty;
        self.bytes[at + 3] = (data.len() / 4) as u8;
        self.bytes[at + 4..at + n].copy_from_slice(data);
        self.len += n as u8;
        self.critical |= ty & 0x80 != 0;
        Ok(())
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    pub fn has_critical(&self) -> bool {
        self.critical
    }
}

impl Default for GeneveOptions {
    fn default() -> Self {
        Self::EMPTY
    }
}

impl core::fmt::Debug for GeneveOptions {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "GeneveOptions({:02x?})", self.as_bytes())
    }
}

impl Serialize for GeneveOptions {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let hex: String = self.as_bytes().iter().map(|b| format!("{b:02x}")).collect();
        s.serialize_str(&hex)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TransformError {
    #[error("two encapsulations pushed")]
    DoubleEncap,
    #[error("encapsulation popped twice")]
    DoubleDecap,
    #[error("decapsulation of a packet that has no encapsulation")]
    NotEncapsulated,
    #[error("IP address family of the rewrite differs from the packet's")]
    Family,
    #[error("IP rewrite of a packet that is not IP")]
    NotIp,
    #[error("port rewrite of a packet without ports")]
    NoPorts,
    #[error("no headroom for the encapsulation")]
    NoHeadroom,
}

impl Transform {
    pub fn is_identity(&self) -> bool {
        *self == Transform::default()
    }

    /// Makes `self` the transform equal to `self` followed by `next`
    /// (what [`Transform::then`] returns, without copying `self`).
    pub fn then_assign(&mut self, next: &Transform) -> Result<(), TransformError> {
        match (self.encap.is_some(), next.decap) {
            (true, true) => self.encap = next.encap.clone(),
            (true, false) if next.encap.is_some() => return Err(TransformError::DoubleEncap),
            (true, false) => {}
            (false, true) if self.decap => return Err(TransformError::DoubleDecap),
            (false, true) => {
                self.decap = true;
                self.encap = next.encap.clone();
            }
            (false, false) => {
                if next.encap.is_some() {
                    self.encap = next.encap.clone();
                }
            }
        }
        // Before the ports are merged: which write of the echo identifier
        // comes last.
        let ident = next.echo_ident().or(self.echo_ident());
        macro_rules! later_wins {
            ($($f:ident),*) => {$( if next.$f.is_some() { self.$f = next.$f; } )*};
        }
        later_wins!(
            eth_src,
            eth_dst,
            ip_src,
            ip_dst,
            l4_src,
            l4_dst,
            expect_outer_src
        );
        self.icmp_ident = ident;
        if !next.deps.is_empty() {
            self.deps.extend(next.deps.iter().cloned());
        }
        Ok(())
    }

    /// The ICMP echo identifier this transform writes, if any.
    pub fn echo_ident(&self) -> Option<u16> {
        self.icmp_ident.or(self.l4_src).or(self.l4_dst)
    }

    /// The transform equal to `self` followed by `next`.
    pub fn then(&self, next: &Transform) -> Result<Transform, TransformError> {
        let mut t = self.clone();
        t.then_assign(next)?;
        Ok(t)
    }

    /// Applies the transform to a parsed summary, as the bytes would be
    /// changed. The slow path uses this so each layer sees what the layers
    /// before it did.
    pub fn apply_headers(&self, h: &mut Headers) -> Result<(), TransformError> {
        if self.decap {
            if h.outer.is_none() {
                return Err(TransformError::NotEncapsulated);
            }
            h.outer = None;
        }
        let inner = &mut h.inner;
        if let Some(m) = self.eth_src {
            inner.eth_src = m;
        }
        if let Some(m) = self.eth_dst {
            inner.eth_dst = m;
        }
        if self.ip_src.is_some() || self.ip_dst.is_some() {
            let v4 = matches!(inner.l3, L3::Ipv4(_));
            let ip = inner.ip_mut().ok_or(TransformError::NotIp)?;
            for (new, field) in [(self.ip_src, &mut ip.src), (self.ip_dst, &mut ip.dst)] {
                if let Some(a) = new {
                    if a.is_ipv4() != v4 {
                        return Err(TransformError::Family);
                    }
                    *field = a;
                }
            }
        }
        if self.l4_src.is_some() || self.l4_dst.is_some() || self.icmp_ident.is_some() {
            match &mut inner.l4 {
                L4::Tcp(t) => {
                    t.src = self.l4_src.unwrap_or(t.src);
                    t.dst = self.l4_dst.unwrap_or(t.dst);
                }
                L4::Udp { src, dst } => {
                    *src = self.l4_src.unwrap_or(*src);
                    *dst = self.l4_dst.unwrap_or(*dst);
                }
                L4::Icmp { ident, ty, .. } if is_echo4(*ty) => {
                    *ident = self.echo_ident().unwrap_or(*ident);
                }
                L4::Icmp6 { ident, ty, .. } if is_echo6(*ty) => {
                    *ident = self.echo_ident().unwrap_or(*ident);
                }
                _ => return Err(TransformError::NoPorts),
            }
        }
        if let Some(e) = &self.encap {
            if h.outer.is_some() {
                return Err(TransformError::DoubleEncap);
            }
            let key = FlowKey::of(h);
            h.outer = Some(Outer {
                eth_src: e.eth_src,
                eth_dst: e.eth_dst,
                ip_src: e.ip_src,
                ip_dst: e.ip_dst,
                hop_limit: e.hop_limit,
                udp_src: e.effective_udp_src(key.as_ref()),
                udp_dst: GENEVE_PORT,
                geneve: GeneveInfo {
                    vni: e.vni,
                    oam: false,
                    critical: e.options.has_critical(),
                    opt_len: u16::from(e.options.len),
                },
            });
        }
        Ok(())
    }
}

fn is_echo4(ty: u8) -> bool {
    ty == 0 || ty == 8
}

fn is_echo6(ty: u8) -> bool {
    ty == 128 || ty == 129
}

impl Encap {
    /// The outer UDP source port for a flow: the configured one, or one
    /// from the flow's symmetric hash in the ephemeral range 49152-65535.
    pub fn effective_udp_src(&self, inner: Option<&FlowKey>) -> u16 {
        if self.udp_src != 0 {
            return self.udp_src;
        }
        let h = inner.map_or(0, |k| k.symmetric_hash());
        0xc000 | ((h ^ (h >> 16)) as u16 & 0x3fff)
    }
}

/// The L4 checksum a rewrite must keep right.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum L4Csum {
    None,
    Tcp,
    Udp,
    Icmp,
}

/// Below this frame length summing the bytes is as cheap as deriving the
/// sum from the inner checksum (measured with callgrind on 64-byte frames).
const LCO_MIN_LEN: usize = 192;

/// A transform compiled for one flow (see the module doc): the part
/// every flow of the same shape shares (interned in the [`EncapCache`],
/// so a million flows to the same place hold one), and what is the
/// flow's own: its ports, their checksum delta and the outer UDP source
/// port. A NAT address is part of the shape (one per external address);
/// a NAT port is a parameter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Compiled {
    shape: Arc<Shape>,
    l4_src: u16,
    l4_dst: u16,
    l4_csum: CsumDelta,
    /// The outer UDP source port of this flow (the template has none).
    encap_sport: u16,
}

impl core::ops::Deref for Compiled {
    type Target = Shape;
    #[inline(always)]
    fn deref(&self) -> &Shape {
        &self.shape
    }
}

/// What flows with the same compiled transform share (see [`Compiled`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shape {
    decap: bool,
    v4: bool,
    /// Bit 0: eth_src, 1: eth_dst, 2: ip_src, 3: ip_dst, 4: l4_src, 5: l4_dst.
    set: u8,
    eth_src: Mac,
    eth_dst: Mac,
    ip_src: [u8; 16],
    ip_dst: [u8; 16],
    l4: L4Csum,
    ip_csum: CsumDelta,
    encap: Option<Arc<EncapTemplate>>,
    /// External state the transform depends on (inline: a compile that
    /// finds its shape interned allocates nothing).
    deps: Deps,
    /// The only underlay sender whose packets this applies to.
    outer_src: Option<[u8; 16]>,
}

const SET_ETH_SRC: u8 = 1;
const SET_ETH_DST: u8 = 2;
const SET_IP_SRC: u8 = 4;
const SET_IP_DST: u8 = 8;
const SET_L4_SRC: u8 = 16;
const SET_L4_DST: u8 = 32;

/// A pushed encapsulation with every field but the UDP source port filled
/// in, shared by every flow that goes to the same place: per packet only
/// the source port, the lengths and the UDP checksum are written.
#[derive(Clone, PartialEq, Eq)]
pub struct EncapTemplate {
    len: usize,
    bytes: [u8; ENCAP_LEN + MAX_GENEVE_OPTS],
    udp_csum: bool,
    /// Sum of the constant parts of the UDP checksum: the pseudo-header's
    /// addresses and protocol, the destination port, the Geneve header and
    /// options.
    const_sum: Csum,
}

/// Interning hashes the template by address (equal templates are one
/// `Arc`, from the same cache) and the dependencies by what they saw.
impl core::hash::Hash for Shape {
    fn hash<H: core::hash::Hasher>(&self, h: &mut H) {
        let Shape {
            decap,
            v4,
            set,
            eth_src,
            eth_dst,
            ip_src,
            ip_dst,
            l4,
            ip_csum,
            encap,
            deps,
            outer_src,
        } = self;
        h.write_u64(
            u64::from(*decap)
                | u64::from(*v4) << 1
                | u64::from(*set) << 8
                | (*l4 as u64) << 16
                | u64::from(ip_csum.raw()) << 32,
        );
        let mac = |m: &Mac| u64::from_le_bytes([m[0], m[1], m[2], m[3], m[4], m[5], 0, 0]);
        h.write_u64(mac(eth_src) ^ mac(eth_dst).rotate_left(32));
        let w = |b: &[u8]| u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]);
        h.write_u64(w(&ip_src[..8]) ^ w(&ip_dst[8..]).rotate_left(17));
        h.write_u64(w(&ip_src[8..]) ^ w(&ip_dst[..8]).rotate_left(41));
        h.write_u64(encap.as_ref().map_or(0, |e| Arc::as_ptr(e) as u64));
        let d = deps
            .iter()
            .fold(deps.len() as u64, |a, x| a.rotate_left(7) ^ x.seen);
        h.write_u64(d ^ outer_src.map_or(0, |o| w(&o[..8]) ^ w(&o[8..])));
    }
}

impl core::fmt::Debug for EncapTemplate {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "EncapTemplate({} bytes)", self.len)
    }
}

// Field offsets within the pushed encapsulation.
const E_IP: usize = 14;
const E_IP_PLEN: usize = E_IP + 4;
const E_UDP: usize = 54;
const E_UDP_LEN: usize = E_UDP + 4;
const E_UDP_CSUM: usize = E_UDP + 6;
const E_GENEVE: usize = 62;

/// Encapsulation templates by destination, so that flows to the same place
/// share one (a port keeps one cache; entries no flow uses are pruned).
pub struct EncapCache {
    map: HashMap<Encap, Arc<EncapTemplate>, FlowHashBuilder>,
    /// Compiled transforms' shared parts, one per shape in use.
    shapes: std::collections::HashSet<Arc<Shape>, FlowHashBuilder>,
    /// The shapes last handed out, tried before hashing: a port's new
    /// flows mostly have the shapes its last ones had (both directions).
    recent: [Option<Arc<Shape>>; 4],
    next_recent: usize,
}

impl Default for EncapCache {
    fn default() -> Self {
        let h = FlowHashBuilder::random();
        EncapCache {
            map: HashMap::with_hasher(h),
            shapes: std::collections::HashSet::with_hasher(h),
            recent: Default::default(),
            next_recent: 0,
        }
    }
}

impl EncapCache {
    fn get(&mut self, e: &Encap) -> Arc<EncapTemplate> {
        if let Some(t) = self.map.get(e) {
            return t.clone();
        }
        let t = Arc::new(EncapTemplate::new(e));
        self.map.insert(e.clone(), t.clone());
        t
    }

    fn shape(&mut self, s: Shape) -> Arc<Shape> {
        if let Some(a) = self.recent.iter().flatten().find(|a| ***a == s) {
            return a.clone();
        }
        let a = match self.shapes.get(&s) {
            Some(a) => a.clone(),
            None => {
                let a = Arc::new(s);
                self.shapes.insert(a.clone());
                a
            }
        };
        self.recent[self.next_recent] = Some(a.clone());
        self.next_recent = (self.next_recent + 1) % self.recent.len();
        a
    }

    /// Drops shapes and templates no compiled transform holds any more.
    pub fn prune(&mut self) {
        self.recent = Default::default();
        self.shapes.retain(|s| Arc::strong_count(s) > 1);
        self.map.retain(|_, t| Arc::strong_count(t) > 1);
    }

    /// Shapes of compiled transforms in use (for tests and dumps).
    pub fn shapes(&self) -> usize {
        self.shapes.len()
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

impl Compiled {
    /// Compiles `t` for the flow whose packets look like `before`.
    pub fn new(t: &Transform, before: &Headers) -> Result<Compiled, TransformError> {
        Compiled::with_cache(t, before, &mut EncapCache::default())
    }

    /// As [`Compiled::new`], sharing encapsulation templates through `cache`.
    pub fn with_cache(
        t: &Transform,
        before: &Headers,
        cache: &mut EncapCache,
    ) -> Result<Compiled, TransformError> {
        // Check the transform against the summary first: every error a
        // packet of this flow could hit is found here, once.
        let mut after = *before;
        t.apply_headers(&mut after)?;

        let inner = &before.inner;
        // The flow's own part (see `Compiled`).
        let (mut l4_src, mut l4_dst, mut l4_csum, mut encap_sport) = (0, 0, CsumDelta::ZERO, 0);
        let mut c = Shape {
            decap: t.decap,
            v4: matches!(inner.l3, L3::Ipv4(_)),
            set: 0,
            eth_src: t.eth_src.unwrap_or_default(),
            eth_dst: t.eth_dst.unwrap_or_default(),
            ip_src: [0; 16],
            ip_dst: [0; 16],
            l4: L4Csum::None,
            ip_csum: CsumDelta::ZERO,
            encap: None,
            deps: t.deps.clone(),
            outer_src: t.expect_outer_src.map(|a| a.octets()),
        };
        if t.eth_src.is_some() {
            c.set |= SET_ETH_SRC;
        }
        if t.eth_dst.is_some() {
            c.set |= SET_ETH_DST;
        }
        c.l4 = match inner.l4 {
            L4::Tcp(_) => L4Csum::Tcp,
            L4::Udp { .. } => L4Csum::Udp,
            L4::Icmp { .. } | L4::Icmp6 { .. } => L4Csum::Icmp,
            _ => L4Csum::None,
        };
        let pseudo = matches!(inner.l4, L4::Tcp(_) | L4::Udp { .. } | L4::Icmp6 { .. });
        if let (Some(b), Some(a)) = (inner.ip(), after.inner.ip()) {
            let mut ip_delta = CsumDelta::ZERO;
            for (bit, old, new, slot) in [
                (SET_IP_SRC, b.src, a.src, &mut c.ip_src),
                (SET_IP_DST, b.dst, a.dst, &mut c.ip_dst),
            ] {
                if old == new {
                    continue;
                }
                c.set |= bit;
                let (o, n) = (ip_bytes(old), ip_bytes(new));
                let len = if c.v4 { 4 } else { 16 };
                slot[..len].copy_from_slice(&n[..len]);
                let d = CsumDelta::between(&o[..len], &n[..len]);
                ip_delta = ip_delta.combine(d);
            }
            if c.v4 {
                c.ip_csum = ip_delta;
            }
            if pseudo {
                l4_csum = ip_delta;
            }
        }
        let (os, od) = inner.ports();
        let (ns, nd) = after.inner.ports();
        match inner.l4 {
            L4::Tcp(_) | L4::Udp { .. } => {
                if os != ns {
                    c.set |= SET_L4_SRC;
                    l4_src = ns;
                    l4_csum =
                        l4_csum.combine(CsumDelta::between(&os.to_be_bytes(), &ns.to_be_bytes()));
                }
                if od != nd {
                    c.set |= SET_L4_DST;
                    l4_dst = nd;
                    l4_csum =
                        l4_csum.combine(CsumDelta::between(&od.to_be_bytes(), &nd.to_be_bytes()));
                }
            }
            L4::Icmp { .. } | L4::Icmp6 { .. } if os != ns => {
                // The echo identifier: one field, written at the source port slot.
                c.set |= SET_L4_SRC;
                l4_src = ns;
                l4_csum = l4_csum.combine(CsumDelta::between(&os.to_be_bytes(), &ns.to_be_bytes()));
            }
            _ => {}
        }
        if let Some(e) = &t.encap {
            // The source port comes from the flow as it is encapsulated.
            let mut inner = after;
            inner.outer = None;
            encap_sport = e.effective_udp_src(FlowKey::of(&inner).as_ref());
            c.encap = Some(cache.get(e));
        }
        Ok(Compiled {
            shape: cache.shape(c),
            l4_src,
            l4_dst,
            l4_csum,
            encap_sport,
        })
    }

    /// Applies the flow's transform to an ICMP error about the flow
    /// (`q`: the packet it quotes, a packet of the flow's other
    /// direction): the outer headers change as the flow's own packets do
    /// (tunnel, MACs, addresses), and the quoted packet mirrors it — its
    /// source gets the flow's destination rewrite and its destination the
    /// source rewrite — so a NAT'd guest sees the error about its own
    /// addresses. Quoted IPv4 header and L4 checksums are adjusted where
    /// quoted; the ICMP checksum is computed afresh (errors are rare).
    pub fn apply_related(
        &self,
        pkt: &mut PacketBuf,
        off: &Offsets,
        q: &crate::headers::quoted::Quoted,
    ) -> Result<(), TransformError> {
        let mut off = *off;
        if self.decap {
            let n = usize::from(off.inner_l2);
            let _ = pkt.pull_front(n);
            off.inner_l3 -= off.inner_l2;
            off.inner_l4 -= off.inner_l2;
            off.inner_end -= off.inner_l2;
            off.inner_l2 = 0;
        }
        let f = pkt.as_mut_slice();
        let (l2, l3, l4, end) = (
            usize::from(off.inner_l2),
            usize::from(off.inner_l3),
            usize::from(off.inner_l4),
            usize::from(off.inner_end),
        );
        if self.set & SET_ETH_DST != 0 {
            f[l2..l2 + 6].copy_from_slice(&self.eth_dst);
        }
        if self.set & SET_ETH_SRC != 0 {
            f[l2 + 6..l2 + 12].copy_from_slice(&self.eth_src);
        }
        let n = if self.v4 { 4 } else { 16 };
        let (src_at, dst_at) = if self.v4 {
            (headers::IPV4_SRC, headers::IPV4_DST)
        } else {
            (headers::IPV6_SRC, headers::IPV6_DST)
        };
        // The error's own addresses, as the flow's packets'.
        if self.set & SET_IP_SRC != 0 {
            f[l3 + src_at..l3 + src_at + n].copy_from_slice(&self.ip_src[..n]);
        }
        if self.set & SET_IP_DST != 0 {
            f[l3 + dst_at..l3 + dst_at + n].copy_from_slice(&self.ip_dst[..n]);
        }
        if self.v4 {
            let ihl = usize::from(f[l3] & 0x0f) * 4;
            put16(f, l3 + headers::IPV4_CSUM, 0);
            let c = crate::checksum::checksum(&f[l3..l3 + ihl]);
            put16(f, l3 + headers::IPV4_CSUM, c);
        }

        // The quoted packet, mirrored. Remember what the pseudo-header and
        // ports were, to adjust its L4 checksum by the difference.
        let (qb, ql4) = (l4 + q.l3, l4 + q.l4);
        let quoted_icmp = matches!(q.proto, proto::ICMP | proto::ICMPV6);
        // What the quoted L4 checksum covers and this rewrite changes: the
        // addresses (pseudo-header; not for ICMPv4) and the ports or echo
        // identifier. Snapshot it before and after for the difference.
        let ids = if quoted_icmp {
            ql4 + 4..ql4 + 6
        } else {
            ql4..ql4 + 4
        };
        let ids = ids.start.min(end)..ids.end.min(end);
        let pseudo = q.proto != proto::ICMP;
        let snapshot = |f: &[u8]| -> [u8; 36] {
            let mut b = [0u8; 36];
            if pseudo {
                b[..n].copy_from_slice(&f[qb + src_at..qb + src_at + n]);
                b[16..16 + n].copy_from_slice(&f[qb + dst_at..qb + dst_at + n]);
            }
            b[32..32 + ids.len()].copy_from_slice(&f[ids.clone()]);
            b
        };
        let before = snapshot(f);
        if self.set & SET_IP_DST != 0 {
            f[qb + src_at..qb + src_at + n].copy_from_slice(&self.ip_dst[..n]);
        }
        if self.set & SET_IP_SRC != 0 {
            f[qb + dst_at..qb + dst_at + n].copy_from_slice(&self.ip_src[..n]);
        }
        if quoted_icmp {
            // Echo: one identifier, which the flow's transform keeps in l4_src.
            if self.set & SET_L4_SRC != 0 && q.l4_len >= 8 {
                put16(f, ql4 + headers::ICMP_ECHO_ID, self.l4_src);
            }
        } else if q.l4_len >= 4 {
            if self.set & SET_L4_DST != 0 {
                put16(f, ql4, self.l4_dst);
            }
            if self.set & SET_L4_SRC != 0 {
                put16(f, ql4 + 2, self.l4_src);
            }
        }
        let delta = CsumDelta::between(&before, &snapshot(f));
        let csum_at = match q.proto {
            proto::TCP => Some(ql4 + headers::TCP_CSUM),
            proto::UDP => Some(ql4 + headers::UDP_CSUM),
            proto::ICMP | proto::ICMPV6 => Some(ql4 + headers::ICMP_CSUM),
            _ => None,
        };
        if let Some(at) = csum_at.filter(|at| at + 2 <= end) {
            let old = be16(f, at);
            let new = if q.proto == proto::UDP {
                delta.apply_udp(old)
            } else {
                delta.apply(old)
            };
            put16(f, at, new);
        }
        if !q.v6 {
            let ihl = usize::from(f[qb] & 0x0f) * 4;
            if qb + ihl <= end {
                put16(f, qb + headers::IPV4_CSUM, 0);
                let c = crate::checksum::checksum(&f[qb..qb + ihl]);
                put16(f, qb + headers::IPV4_CSUM, c);
            }
        }

        // The error's own checksum, over the whole message.
        put16(f, l4 + headers::ICMP_CSUM, 0);
        let mut c = if self.v4 {
            Csum::new()
        } else {
            pseudo_header(
                &f[l3 + src_at..l3 + src_at + 16],
                &f[l3 + dst_at..l3 + dst_at + 16],
                proto::ICMPV6,
                (end - l4) as u32,
            )
        };
        c.add_bytes(&f[l4..end]);
        put16(f, l4 + headers::ICMP_CSUM, c.finish());

        if let Some(e) = &self.encap {
            let mut inner = Csum::new();
            inner.add_bytes(pkt.as_slice());
            e.push(pkt, self.encap_sport, inner)?;
        }
        Ok(())
    }

    /// A one-line description for dumps: the fields it sets.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if self.decap {
            parts.push("decap".to_string());
        }
        if self.set & SET_ETH_SRC != 0 {
            parts.push(format!("eth.src={}", mac_string(&self.eth_src)));
        }
        if self.set & SET_ETH_DST != 0 {
            parts.push(format!("eth.dst={}", mac_string(&self.eth_dst)));
        }
        let ip = |b: &[u8; 16]| -> String {
            if self.v4 {
                core::net::Ipv4Addr::new(b[0], b[1], b[2], b[3]).to_string()
            } else {
                Ipv6Addr::from(*b).to_string()
            }
        };
        if self.set & SET_IP_SRC != 0 {
            parts.push(format!("ip.src={}", ip(&self.ip_src)));
        }
        if self.set & SET_IP_DST != 0 {
            parts.push(format!("ip.dst={}", ip(&self.ip_dst)));
        }
        if self.set & SET_L4_SRC != 0 {
            parts.push(format!("l4.src={}", self.l4_src));
        }
        if self.set & SET_L4_DST != 0 {
            parts.push(format!("l4.dst={}", self.l4_dst));
        }
        if let Some(e) = &self.encap {
            let b = &e.bytes;
            let mut dst = [0u8; 16];
            dst.copy_from_slice(&b[E_IP + 24..E_IP + 40]);
            let vni = u32::from_be_bytes([0, b[E_GENEVE + 4], b[E_GENEVE + 5], b[E_GENEVE + 6]]);
            parts.push(format!(
                "encap(geneve vni={vni} dst={})",
                Ipv6Addr::from(dst)
            ));
        }
        if parts.is_empty() {
            "none".to_string()
        } else {
            parts.join(" ")
        }
    }

    /// Whether the external state the transform was derived from is
    /// unchanged (see [`Version`]).
    #[inline]
    pub fn deps_current(&self) -> bool {
        self.deps.iter().all(Dep::is_current)
    }

    /// Whether the packet comes from the underlay sender the transform is
    /// pinned to (always true when it is not pinned).
    #[inline]
    pub fn outer_matches(&self, frame: &[u8], off: &Offsets) -> bool {
        match &self.outer_src {
            None => true,
            Some(want) => {
                let at = usize::from(off.outer_l3) + headers::IPV6_SRC;
                off.geneve != 0 && frame.get(at..at + 16) == Some(&want[..])
            }
        }
    }

    /// Applies the compiled transform to a packet of its flow, parsed with
    /// offsets `off`. Allocation-free; the only error is missing headroom.
    #[inline]
    pub fn apply(&self, pkt: &mut PacketBuf, off: &Offsets) -> Result<(), TransformError> {
        let mut off = *off;
        if self.decap {
            let n = usize::from(off.inner_l2);
            // parse() guarantees inner_l2 lies within the frame.
            let _ = pkt.pull_front(n);
            off.inner_l3 -= off.inner_l2;
            off.inner_l4 -= off.inner_l2;
            off.inner_end -= off.inner_l2;
            off.inner_l2 = 0;
        }
        if self.set != 0 {
            self.rewrite(pkt.as_mut_slice(), &off);
        }
        if let Some(e) = &self.encap {
            let inner = if e.udp_csum {
                self.inner_sum(pkt.as_slice(), &off)
            } else {
                Csum::new()
            };
            e.push(pkt, self.encap_sport, inner)?;
        }
        Ok(())
    }

    /// The one's-complement sum of the guest frame, for the outer UDP
    /// checksum. A TCP, UDP or ICMPv6 segment whose checksum is right sums
    /// to the complement of its pseudo-header, and an ICMPv4 message to
    /// zero, so only the Ethernet and IP headers need adding up: the cost
    /// does not grow with the payload (Linux's "local checksum offload"
    /// for tunnels). If the guest's checksum is wrong, the outer one is
    /// wrong the same way and the receiver drops the packet, as the guest's
    /// peer would have. Frames with Ethernet padding, UDP without a
    /// checksum and protocols without one are summed byte by byte.
    #[inline]
    fn inner_sum(&self, f: &[u8], off: &Offsets) -> Csum {
        let l3 = usize::from(off.inner_l3);
        let l4 = usize::from(off.inner_l4);
        let end = usize::from(off.inner_end);
        let lco = f.len() >= LCO_MIN_LEN
            && end == f.len()
            && match self.l4 {
                L4Csum::Tcp | L4Csum::Icmp => true,
                L4Csum::Udp => be16(f, l4 + headers::UDP_CSUM) != 0,
                L4Csum::None => false,
            };
        let mut c = Csum::new();
        if !lco {
            c.add_bytes(f);
            return c;
        }
        // Ethernet and IP headers: every one an even number of bytes.
        c.add_bytes(&f[..l4]);
        let proto = match (self.l4, self.v4) {
            // A valid ICMPv4 checksum makes the message sum to zero.
            (L4Csum::Icmp, true) => return c,
            (L4Csum::Icmp, false) => proto::ICMPV6,
            (L4Csum::Tcp, _) => proto::TCP,
            _ => proto::UDP,
        };
        let (src, dst) = if self.v4 {
            (
                l3 + headers::IPV4_SRC..l3 + headers::IPV4_SRC + 4,
                l3 + headers::IPV4_DST..l3 + headers::IPV4_DST + 4,
            )
        } else {
            (
                l3 + headers::IPV6_SRC..l3 + headers::IPV6_SRC + 16,
                l3 + headers::IPV6_DST..l3 + headers::IPV6_DST + 16,
            )
        };
        let pseudo = pseudo_header(&f[src], &f[dst], proto, (end - l4) as u32);
        c.add_u16(!pseudo.fold());
        c
    }

    #[inline]
    fn rewrite(&self, f: &mut [u8], off: &Offsets) {
        let l2 = usize::from(off.inner_l2);
        if self.set & SET_ETH_DST != 0 {
            f[l2..l2 + 6].copy_from_slice(&self.eth_dst);
        }
        if self.set & SET_ETH_SRC != 0 {
            f[l2 + 6..l2 + 12].copy_from_slice(&self.eth_src);
        }
        let l3 = usize::from(off.inner_l3);
        let l4 = usize::from(off.inner_l4);
        if self.set & (SET_IP_SRC | SET_IP_DST) != 0 {
            let (src, dst, n) = if self.v4 {
                (l3 + headers::IPV4_SRC, l3 + headers::IPV4_DST, 4)
            } else {
                (l3 + headers::IPV6_SRC, l3 + headers::IPV6_DST, 16)
            };
            if self.set & SET_IP_SRC != 0 {
                f[src..src + n].copy_from_slice(&self.ip_src[..n]);
            }
            if self.set & SET_IP_DST != 0 {
                f[dst..dst + n].copy_from_slice(&self.ip_dst[..n]);
            }
            if self.v4 {
                let at = l3 + headers::IPV4_CSUM;
                let v = self.ip_csum.apply(be16(f, at));
                put16(f, at, v);
            }
        }
        match self.l4 {
            L4Csum::Tcp | L4Csum::Udp => {
                if self.set & SET_L4_SRC != 0 {
                    put16(f, l4, self.l4_src);
                }
                if self.set & SET_L4_DST != 0 {
                    put16(f, l4 + 2, self.l4_dst);
                }
            }
            L4Csum::Icmp => {
                if self.set & SET_L4_SRC != 0 {
                    put16(f, l4 + headers::ICMP_ECHO_ID, self.l4_src);
                }
            }
            L4Csum::None => {}
        }
        match self.l4 {
            L4Csum::Tcp => {
                let at = l4 + headers::TCP_CSUM;
                let v = self.l4_csum.apply(be16(f, at));
                put16(f, at, v);
            }
            L4Csum::Udp => {
                let at = l4 + headers::UDP_CSUM;
                let v = self.l4_csum.apply_udp(be16(f, at));
                put16(f, at, v);
            }
            L4Csum::Icmp => {
                let at = l4 + headers::ICMP_CSUM;
                let v = self.l4_csum.apply(be16(f, at));
                put16(f, at, v);
            }
            L4Csum::None => {}
        }
    }
}

impl EncapTemplate {
    fn new(e: &Encap) -> EncapTemplate {
        let opts = e.options.as_bytes();
        let len = ENCAP_LEN + opts.len();
        let mut b = [0u8; ENCAP_LEN + MAX_GENEVE_OPTS];
        b[0..6].copy_from_slice(&e.eth_dst);
        b[6..12].copy_from_slice(&e.eth_src);
        b[12..14].copy_from_slice(&ethertype::IPV6.to_be_bytes());
        b[E_IP] = 0x60; // version 6, traffic class 0, flow label 0
        b[E_IP + 6] = proto::UDP;
        b[E_IP + 7] = e.hop_limit;
        b[E_IP + 8..E_IP + 24].copy_from_slice(&e.ip_src.octets());
        b[E_IP + 24..E_IP + 40].copy_from_slice(&e.ip_dst.octets());
        b[E_UDP + 2..E_UDP + 4].copy_from_slice(&GENEVE_PORT.to_be_bytes());
        // Geneve: version 0, option length in 4-byte words, C bit if any
        // option is critical, protocol Ethernet, VNI.
        b[E_GENEVE] = (opts.len() / 4) as u8;
        b[E_GENEVE + 1] = if e.options.has_critical() { 0x40 } else { 0 };
        b[E_GENEVE + 2..E_GENEVE + 4].copy_from_slice(&ethertype::ETHERNET.to_be_bytes());
        b[E_GENEVE + 4..E_GENEVE + 7].copy_from_slice(&e.vni.to_bytes());
        b[ENCAP_LEN..len].copy_from_slice(opts);

        let mut const_sum = pseudo_header(
            &b[E_IP + 8..E_IP + 24],
            &b[E_IP + 24..E_IP + 40],
            proto::UDP,
            0,
        );
        const_sum.add_bytes(&b[E_UDP + 2..E_UDP + 4]);
        const_sum.add_bytes(&b[E_GENEVE..len]);
        EncapTemplate {
            len,
            bytes: b,
            udp_csum: e.udp_csum,
            const_sum,
        }
    }

    #[inline]
    /// Pushes the encapsulation; `inner` is the sum of the guest frame
    /// (unused when the outer UDP checksum is off).
    fn push(&self, pkt: &mut PacketBuf, sport: u16, inner: Csum) -> Result<(), TransformError> {
        let inner_len = pkt.len();
        let mut csum = self.const_sum;
        if self.udp_csum {
            csum.add(inner);
            csum.add_u16(sport);
        }
        let hdr = pkt
            .push_front(self.len)
            .map_err(|_| TransformError::NoHeadroom)?;
        hdr.copy_from_slice(&self.bytes[..self.len]);
        put16(hdr, E_UDP, sport);
        let udp_len = (self.len - E_UDP + inner_len) as u16;
        put16(hdr, E_IP_PLEN, udp_len);
        put16(hdr, E_UDP_LEN, udp_len);
        if self.udp_csum {
            // The length appears twice: in the pseudo-header and in the header.
            csum.add_u16(udp_len);
            csum.add_u16(udp_len);
            let v = match csum.finish() {
                0 => 0xffff,
                v => v,
            };
            put16(hdr, E_UDP_CSUM, v);
        }
        Ok(())
    }
}

#[inline]
fn be16(f: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([f[at], f[at + 1]])
}

#[inline]
fn put16(f: &mut [u8], at: usize, v: u16) {
    f[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

fn ip_bytes(a: IpAddr) -> [u8; 16] {
    match a {
        IpAddr::V4(v4) => {
            let mut b = [0u8; 16];
            b[..4].copy_from_slice(&v4.octets());
            b
        }
        IpAddr::V6(v6) => v6.octets(),
    }
}
