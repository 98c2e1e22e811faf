//! Packet headers: zero-copy parsing with `ingot`, one file per protocol.
//!
//! [`parse`] walks a frame once with ingot's validated views and returns
//! [`Parsed`]: a compact, `Copy` summary of every field the engine matches
//! on ([`Headers`]) and the byte offsets the fast path rewrites at
//! ([`Offsets`]). Nothing is copied out of the packet but those fields.
//!
//! Contract: `parse` never panics, whatever the bytes. A frame it cannot
//! make sense of is refused with a [`ParseError`] that names the header and
//! the fault; the port turns it into a counted drop. After a successful
//! parse, every offset in [`Offsets`] points inside the frame with the whole
//! header it names present, so the rewrites in `transform` never go out of
//! bounds.
//!
//! Defined behaviour for the awkward cases:
//! - IPv4 and IPv6 fragments parse; [`Ip::frag`] says which kind. A first
//!   fragment carries its L4 header and parses it; later fragments have no
//!   L4 header ([`L4::None`]). The port drops fragments with
//!   `DropReason::Fragment` (no reassembly: guests use path MTU discovery,
//!   and the gateway advertises the MTU).
//! - An IP protocol without a parser here (GRE, SCTP, ...) is
//!   [`L4::Unknown`]: rules can still match it by protocol number; its flow
//!   key has ports 0.
//! - An EtherType other than IPv4, IPv6 or ARP is [`L3::None`], and has no
//!   flow key: it can only be dropped or hairpinned by the layers.
//! - Trailing bytes after the IP datagram (Ethernet padding of short
//!   frames) are ignored: lengths come from the IP header.
//! - The IPv4 header checksum is verified. TCP/UDP/ICMP checksums are not
//!   (a guest with checksum offload sends them unfilled); rewrites update
//!   them incrementally, so a bad one stays bad end to end.

mod arp;
mod ethernet;
mod fast;
mod geneve;
mod icmp;
mod ip;
mod parse;
pub mod quoted;
mod tcp;
mod udp;

pub use arp::{
    ArpOp, ARP_HLEN, ARP_HTYPE, ARP_HTYPE_ETHERNET, ARP_LEN, ARP_OP, ARP_PLEN, ARP_PTYPE, ARP_SHA,
    ARP_SPA, ARP_THA, ARP_TPA,
};
pub use ethernet::{
    ETH_DST, ETH_HDR_LEN, ETH_SRC, ETH_TYPE, ETH_VLAN_HDR_LEN, VLAN_ETH_TYPE, VLAN_TAG_LEN,
    VLAN_TCI,
};
pub use fast::{parse_fast, FastParsed};
pub use geneve::{
    options as geneve_options, GeneveOptView, GeneveOpts, GENEVE_FLAGS, GENEVE_FLAG_CRITICAL,
    GENEVE_FLAG_OAM, GENEVE_HDR_LEN, GENEVE_MAX_OPT_LEN, GENEVE_OPT_CRITICAL, GENEVE_OPT_HDR_LEN,
    GENEVE_PORT, GENEVE_PROTO, GENEVE_VERSION, GENEVE_VER_OPT_LEN, GENEVE_VNI,
};
pub use icmp::{
    ICMP6_ECHO_REPLY, ICMP6_ECHO_REQUEST, ICMP_CODE, ICMP_CSUM, ICMP_ECHO_ID, ICMP_ECHO_REPLY,
    ICMP_ECHO_REQUEST, ICMP_ECHO_SEQ, ICMP_HDR_LEN, ICMP_TYPE,
};
pub use ip::{
    IPV4_CSUM, IPV4_DST, IPV4_FRAG, IPV4_HDR_LEN, IPV4_IDENT, IPV4_MAX_HDR_LEN, IPV4_PROTO,
    IPV4_SRC, IPV4_TOS, IPV4_TOTAL_LEN, IPV4_TTL, IPV4_VER_IHL, IPV6_DST, IPV6_HDR_LEN,
    IPV6_HOP_LIMIT, IPV6_MAX_EXT_HDRS, IPV6_NEXT_HDR, IPV6_PAYLOAD_LEN, IPV6_SRC, IPV6_VER_TC_FLOW,
};
pub use parse::parse;
pub use tcp::{
    TCP_ACK, TCP_CSUM, TCP_DATA_OFF, TCP_DST, TCP_FLAGS, TCP_HDR_LEN, TCP_SEQ, TCP_SRC, TCP_URG,
    TCP_WINDOW,
};
pub use udp::{UDP_CSUM, UDP_DST, UDP_HDR_LEN, UDP_LEN, UDP_SRC};

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use serde::{Deserialize, Serialize};

/// A MAC address in wire order.
pub type Mac = [u8; 6];

/// EtherType values the engine knows.
pub mod ethertype {
    pub const IPV4: u16 = 0x0800;
    pub const ARP: u16 = 0x0806;
    pub const VLAN: u16 = 0x8100;
    pub const IPV6: u16 = 0x86dd;
    /// Transparent Ethernet bridging: Geneve's protocol type for an inner frame.
    pub const ETHERNET: u16 = 0x6558;
}

/// IP protocol numbers the engine knows.
pub mod proto {
    pub const ICMP: u8 = 1;
    pub const TCP: u8 = 6;
    pub const UDP: u8 = 17;
    pub const ICMPV6: u8 = 58;
}

/// A 24-bit Geneve Virtual Network Identifier.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(try_from = "u32", into = "u32")]
pub struct Vni(u32);

impl Vni {
    pub const MAX: u32 = (1 << 24) - 1;

    pub fn new(v: u32) -> Result<Self, VniError> {
        if v > Self::MAX {
            Err(VniError(v))
        } else {
            Ok(Vni(v))
        }
    }

    pub fn get(self) -> u32 {
        self.0
    }

    pub fn to_bytes(self) -> [u8; 3] {
        let b = self.0.to_be_bytes();
        [b[1], b[2], b[3]]
    }

    pub fn from_bytes(b: [u8; 3]) -> Self {
        Vni(u32::from_be_bytes([0, b[0], b[1], b[2]]))
    }
}

#[cfg(feature = "schema")]
impl schemars::JsonSchema for Vni {
    fn schema_name() -> String {
        "Vni".to_string()
    }

    fn json_schema(_: &mut schemars::gen::SchemaGenerator) -> schemars::schema::Schema {
        use schemars::schema::{InstanceType, Metadata, NumberValidation, SchemaObject};
        SchemaObject {
            instance_type: Some(InstanceType::Integer.into()),
            metadata: Some(Box::new(Metadata {
                description: Some("A 24-bit Geneve VNI (0..=16777215).".to_string()),
                ..Default::default()
            })),
            number: Some(Box::new(NumberValidation {
                minimum: Some(0.0),
                maximum: Some(f64::from(Vni::MAX)),
                ..Default::default()
            })),
            ..Default::default()
        }
        .into()
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("VNI {0} is out of range 0..=16777215")]
pub struct VniError(pub u32);

impl TryFrom<u32> for Vni {
    type Error = VniError;
    fn try_from(v: u32) -> Result<Self, VniError> {
        Vni::new(v)
    }
}

impl From<Vni> for u32 {
    fn from(v: Vni) -> u32 {
        v.0
    }
}

/// How to read a frame: as it comes from a guest, or as it comes from the
/// underlay (Ethernet / IPv6 / UDP 6081 / Geneve / inner Ethernet).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParseMode {
    Plain,
    Geneve,
}

/// The result of a successful parse.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Parsed {
    pub hdrs: Headers,
    pub off: Offsets,
}

/// Every field the engine matches on, copied out of the frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Headers {
    /// The encapsulation, when the frame came from the underlay.
    pub outer: Option<Outer>,
    /// The guest's frame (the only frame of a plain packet).
    pub inner: Inner,
}

/// The underlay headers of a Geneve frame: Ethernet / IPv6 / UDP / Geneve.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Outer {
    pub eth_src: Mac,
    pub eth_dst: Mac,
    pub ip_src: Ipv6Addr,
    pub ip_dst: Ipv6Addr,
    pub hop_limit: u8,
    pub udp_src: u16,
    pub udp_dst: u16,
    pub geneve: GeneveInfo,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct GeneveInfo {
    pub vni: Vni,
    /// The O (control packet) bit.
    pub oam: bool,
    /// The C (critical options present) bit.
    pub critical: bool,
    /// Total length of the options, in bytes.
    pub opt_len: u16,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Inner {
    pub eth_src: Mac,
    pub eth_dst: Mac,
    /// The VLAN ID of one 802.1Q tag, if present.
    pub vlan: Option<u16>,
    /// The EtherType after any VLAN tag.
    pub ether_type: u16,
    pub l3: L3,
    pub l4: L4,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub enum L3 {
    /// An EtherType the engine does not parse.
    None,
    Arp(Arp),
    Ipv4(Ip),
    Ipv6(Ip),
}

/// An ARP packet for IPv4 over Ethernet (the only kind parsed).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Arp {
    pub op: ArpOp,
    pub sha: Mac,
    pub spa: Ipv4Addr,
    pub tha: Mac,
    pub tpa: Ipv4Addr,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Ip {
    pub src: IpAddr,
    pub dst: IpAddr,
    /// The upper-layer protocol (after IPv6 extension headers).
    pub proto: u8,
    /// TTL or hop limit.
    pub ttl: u8,
    pub frag: Frag,
}

/// Where a packet stands in IP fragmentation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub enum Frag {
    /// Not a fragment.
    None,
    /// Offset 0 with more fragments to come: carries the L4 header.
    First,
    /// Offset > 0: no L4 header.
    Later,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub enum L4 {
    /// No L4 header: not IP, or a later fragment.
    None,
    Tcp(Tcp),
    Udp {
        src: u16,
        dst: u16,
    },
    /// ICMPv4; `ident` is the echo identifier (0 for other types).
    Icmp {
        ty: u8,
        code: u8,
        ident: u16,
    },
    /// ICMPv6; `ident` is the echo identifier (0 for other types).
    Icmp6 {
        ty: u8,
        code: u8,
        ident: u16,
    },
    /// An IP protocol without a parser here.
    Unknown,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Tcp {
    pub src: u16,
    pub dst: u16,
    pub flags: u8,
    pub seq: u32,
    pub ack: u32,
}

/// TCP flag bits.
pub mod tcp_flags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
}

/// Byte offsets from the start of the frame. Outer offsets are 0 when the
/// frame has no encapsulation; `inner_l3`/`inner_l4` are meaningful only
/// when `Inner::l3`/`Inner::l4` say there is such a header.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Offsets {
    pub outer_l3: u16,
    pub outer_l4: u16,
    pub geneve: u16,
    /// Start of the guest's Ethernet header (0 for a plain frame).
    pub inner_l2: u16,
    pub inner_l3: u16,
    pub inner_l4: u16,
    /// End of the IP datagram (start of any Ethernet padding), or the frame
    /// length when there is no IP header.
    pub inner_end: u16,
}

/// Why a frame could not be parsed. Each is a distinct drop counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
pub enum ParseError {
    #[error("truncated Ethernet header")]
    TruncatedEthernet,
    #[error("truncated 802.1Q tag")]
    TruncatedVlan,
    #[error("truncated ARP packet")]
    TruncatedArp,
    #[error("ARP for something other than IPv4 over Ethernet")]
    UnsupportedArp,
    #[error("truncated IPv4 header")]
    TruncatedIpv4,
    #[error("IPv4 header with a version other than 4")]
    BadIpv4Version,
    #[error("IPv4 header length below 20 bytes")]
    BadIpv4HeaderLen,
    #[error("IPv4 total length inconsistent with the header length or the frame")]
    BadIpv4TotalLen,
    #[error("bad IPv4 header checksum")]
    BadIpv4Checksum,
    #[error("truncated IPv6 header")]
    TruncatedIpv6,
    #[error("IPv6 header with a version other than 6")]
    BadIpv6Version,
    #[error("IPv6 payload length larger than the frame (or a jumbogram)")]
    BadIpv6PayloadLen,
    #[error("truncated or malformed IPv6 extension header")]
    BadIpv6Extension,
    #[error("truncated TCP header")]
    TruncatedTcp,
    #[error("TCP data offset below 5 or past the datagram")]
    BadTcpDataOffset,
    #[error("truncated UDP header")]
    TruncatedUdp,
    #[error("UDP length inconsistent with the datagram")]
    BadUdpLength,
    #[error("truncated ICMP header")]
    TruncatedIcmp,
    #[error("truncated ICMPv6 header")]
    TruncatedIcmp6,
    #[error("underlay frame is not IPv6/UDP to the Geneve port")]
    NotGeneve,
    #[error("truncated Geneve header or options")]
    TruncatedGeneve,
    #[error("Geneve version other than 0")]
    BadGeneveVersion,
    #[error("Geneve option length past the options area")]
    BadGeneveOption,
    #[error("Geneve protocol type is not Ethernet")]
    BadGeneveProtocol,
}

impl ParseError {
    pub const ALL: [ParseError; 24] = [
        ParseError::TruncatedEthernet,
        ParseError::TruncatedVlan,
        ParseError::TruncatedArp,
        ParseError::UnsupportedArp,
        ParseError::TruncatedIpv4,
        ParseError::BadIpv4Version,
        ParseError::BadIpv4HeaderLen,
        ParseError::BadIpv4TotalLen,
        ParseError::BadIpv4Checksum,
        ParseError::TruncatedIpv6,
        ParseError::BadIpv6Version,
        ParseError::BadIpv6PayloadLen,
        ParseError::BadIpv6Extension,
        ParseError::TruncatedTcp,
        ParseError::BadTcpDataOffset,
        ParseError::TruncatedUdp,
        ParseError::BadUdpLength,
        ParseError::TruncatedIcmp,
        ParseError::TruncatedIcmp6,
        ParseError::NotGeneve,
        ParseError::TruncatedGeneve,
        ParseError::BadGeneveVersion,
        ParseError::BadGeneveOption,
        ParseError::BadGeneveProtocol,
    ];

    /// A stable snake_case name for counters, metrics and the CLI.
    pub const fn name(self) -> &'static str {
        match self {
            ParseError::TruncatedEthernet => "truncated_ethernet",
            ParseError::TruncatedVlan => "truncated_vlan",
            ParseError::TruncatedArp => "truncated_arp",
            ParseError::UnsupportedArp => "unsupported_arp",
            ParseError::TruncatedIpv4 => "truncated_ipv4",
            ParseError::BadIpv4Version => "bad_ipv4_version",
            ParseError::BadIpv4HeaderLen => "bad_ipv4_header_len",
            ParseError::BadIpv4TotalLen => "bad_ipv4_total_len",
            ParseError::BadIpv4Checksum => "bad_ipv4_checksum",
            ParseError::TruncatedIpv6 => "truncated_ipv6",
            ParseError::BadIpv6Version => "bad_ipv6_version",
            ParseError::BadIpv6PayloadLen => "bad_ipv6_payload_len",
            ParseError::BadIpv6Extension => "bad_ipv6_extension",
            ParseError::TruncatedTcp => "truncated_tcp",
            ParseError::BadTcpDataOffset => "bad_tcp_data_offset",
            ParseError::TruncatedUdp => "truncated_udp",
            ParseError::BadUdpLength => "bad_udp_length",
            ParseError::TruncatedIcmp => "truncated_icmp",
            ParseError::TruncatedIcmp6 => "truncated_icmp6",
            ParseError::NotGeneve => "not_geneve",
            ParseError::TruncatedGeneve => "truncated_geneve",
            ParseError::BadGeneveVersion => "bad_geneve_version",
            ParseError::BadGeneveOption => "bad_geneve_option",
            ParseError::BadGeneveProtocol => "bad_geneve_protocol",
        }
    }

    /// Dense index into per-reason counter arrays.
    pub fn index(self) -> usize {
        self as usize
    }
}

impl Inner {
    /// Source and destination addresses, when the frame is IP.
    pub fn ip(&self) -> Option<&Ip> {
        match &self.l3 {
            L3::Ipv4(ip) | L3::Ipv6(ip) => Some(ip),
            _ => None,
        }
    }

    pub fn ip_mut(&mut self) -> Option<&mut Ip> {
        match &mut self.l3 {
            L3::Ipv4(ip) | L3::Ipv6(ip) => Some(ip),
            _ => None,
        }
    }

    /// Source and destination L4 ports (echo identifier for ICMP echo).
    pub fn ports(&self) -> (u16, u16) {
        match self.l4 {
            L4::Tcp(t) => (t.src, t.dst),
            L4::Udp { src, dst } => (src, dst),
            L4::Icmp { ident, .. } | L4::Icmp6 { ident, .. } => (ident, ident),
            L4::None | L4::Unknown => (0, 0),
        }
    }
}

impl Default for Inner {
    fn default() -> Self {
        Inner {
            eth_src: [0; 6],
            eth_dst: [0; 6],
            vlan: None,
            ether_type: 0,
            l3: L3::None,
            l4: L4::None,
        }
    }
}

/// An unspecified IPv4 address, for defaults.
pub const V4_ANY: IpAddr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
