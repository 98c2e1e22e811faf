//! Drop reasons. Every packet the engine refuses is counted under exactly
//! one of these, by a stable name the CLI and metrics print.

use crate::headers::ParseError;
use core::fmt;
use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// The frame could not be parsed.
    Malformed(ParseError),
    /// An IP fragment: the engine does not reassemble (see `headers`).
    Fragment,
    /// A rule's `Deny` action.
    Denied,
    /// No rule matched, and the layer's default for the direction is deny.
    DefaultDenied,
    /// The port's flow table is full and nothing could be evicted.
    FlowTableFull,
    /// A layer's flow table is full.
    LayerTableFull,
    /// A stateful action ran out of its resource (e.g. NAT ports).
    Exhausted,
    /// The layers' transforms cannot be combined (e.g. two encapsulations).
    BadTransform,
    /// Not enough headroom to push an encapsulation.
    NoHeadroom,
    /// A hairpin action could not build its reply.
    HairpinFailed,
    /// The guest sent above its port's rate limit (`rate`).
    RateLimited,
    /// A Geneve control packet (the O bit set): RFC 8926 §3.4 says its
    /// payload must never reach a tenant. sluice has no control handler.
    GeneveControl,
    /// The outer UDP checksum does not match the frame (RFC 8200 §8.1).
    OuterUdpChecksum,
    /// A zero outer UDP checksum over IPv6, refused unless the underlay
    /// is configured to accept them (RFC 6936 §5).
    ZeroUdp6Checksum,
    /// A tunnel for no port on this host (its VNI and inner MAC name none).
    UnknownPort,
    /// A policy built on the engine refused the packet, for the reason
    /// named: a rule's `DenyWith`, or an action's `GenError::Refused`
    /// (e.g. `spoofed_source`, `no_v2p_mapping`). Counted per name.
    Policy(&'static str),
}

/// Number of fixed counters: one per parse error plus the others.
/// (`Policy` reasons are counted apart, by name.)
pub const DROP_REASONS: usize = ParseError::ALL.len() + 14;

impl DropReason {
    /// Every fixed reason, in counter order.
    pub fn all() -> impl Iterator<Item = DropReason> {
        ParseError::ALL
            .into_iter()
            .map(DropReason::Malformed)
            .chain([
                DropReason::Fragment,
                DropReason::Denied,
                DropReason::DefaultDenied,
                DropReason::FlowTableFull,
                DropReason::LayerTableFull,
                DropReason::Exhausted,
                DropReason::BadTransform,
                DropReason::NoHeadroom,
                DropReason::HairpinFailed,
                DropReason::RateLimited,
                DropReason::GeneveControl,
                DropReason::OuterUdpChecksum,
                DropReason::ZeroUdp6Checksum,
                DropReason::UnknownPort,
            ])
    }

    /// Dense index into per-reason counter arrays; `None` for `Policy`
    /// reasons, which are counted by name.
    #[inline]
    pub fn index(self) -> Option<usize> {
        let base = ParseError::ALL.len();
        match self {
            DropReason::Malformed(e) => Some(e.index()),
            DropReason::Fragment => Some(base),
            DropReason::Denied => Some(base + 1),
            DropReason::DefaultDenied => Some(base + 2),
            DropReason::FlowTableFull => Some(base + 3),
            DropReason::LayerTableFull => Some(base + 4),
            DropReason::Exhausted => Some(base + 5),
            DropReason::BadTransform => Some(base + 6),
            DropReason::NoHeadroom => Some(base + 7),
            DropReason::HairpinFailed => Some(base + 8),
            DropReason::RateLimited => Some(base + 9),
            DropReason::GeneveControl => Some(base + 10),
            DropReason::OuterUdpChecksum => Some(base + 11),
            DropReason::ZeroUdp6Checksum => Some(base + 12),
            DropReason::UnknownPort => Some(base + 13),
            DropReason::Policy(_) => None,
        }
    }

    /// The stable name: `malformed.truncated_tcp`, `flow_table_full`,
    /// or a policy's own (`spoofed_source`).
    pub fn name(self) -> &'static str {
        match self {
            DropReason::Malformed(e) => MALFORMED_NAMES[e.index()],
            DropReason::Fragment => "fragment",
            DropReason::Denied => "denied",
            DropReason::DefaultDenied => "default_denied",
            DropReason::FlowTableFull => "flow_table_full",
            DropReason::LayerTableFull => "layer_table_full",
            DropReason::Exhausted => "exhausted",
            DropReason::BadTransform => "bad_transform",
            DropReason::NoHeadroom => "no_headroom",
            DropReason::HairpinFailed => "hairpin_failed",
            DropReason::RateLimited => "rate_limited",
            DropReason::GeneveControl => "geneve_control",
            DropReason::OuterUdpChecksum => "outer_udp_checksum",
            DropReason::ZeroUdp6Checksum => "zero_udp6_checksum",
            DropReason::UnknownPort => "unknown_port",
            DropReason::Policy(name) => name,
        }
    }
}

const MALFORMED_NAMES: [&str; ParseError::ALL.len()] = {
    let mut names = [""; ParseError::ALL.len()];
    let mut i = 0;
    while i < names.len() {
        names[i] = malformed_name(ParseError::ALL[i]);
        i += 1;
    }
    names
};

const fn malformed_name(e: ParseError) -> &'static str {
    // Written out so the names are `&'static str` constants with the prefix.
    match e {
        ParseError::TruncatedEthernet => "malformed.truncated_ethernet",
        ParseError::TruncatedVlan => "malformed.truncated_vlan",
        ParseError::TruncatedArp => "malformed.truncated_arp",
        ParseError::UnsupportedArp => "malformed.unsupported_arp",
        ParseError::TruncatedIpv4 => "malformed.truncated_ipv4",
        ParseError::BadIpv4Version => "malformed.bad_ipv4_version",
        ParseError::BadIpv4HeaderLen => "malformed.bad_ipv4_header_len",
        ParseError::BadIpv4TotalLen => "malformed.bad_ipv4_total_len",
        ParseError::BadIpv4Checksum => "malformed.bad_ipv4_checksum",
        ParseError::TruncatedIpv6 => "malformed.truncated_ipv6",
        ParseError::BadIpv6Version => "malformed.bad_ipv6_version",
        ParseError::BadIpv6PayloadLen => "malformed.bad_ipv6_payload_len",
        ParseError::BadIpv6Extension => "malformed.bad_ipv6_extension",
        ParseError::TruncatedTcp => "malformed.truncated_tcp",
        ParseError::BadTcpDataOffset => "malformed.bad_tcp_data_offset",
        ParseError::TruncatedUdp => "malformed.truncated_udp",
        ParseError::BadUdpLength => "malformed.bad_udp_length",
        ParseError::TruncatedIcmp => "malformed.truncated_icmp",
        ParseError::TruncatedIcmp6 => "malformed.truncated_icmp6",
        ParseError::NotGeneve => "malformed.not_geneve",
        ParseError::TruncatedGeneve => "malformed.truncated_geneve",
        ParseError::BadGeneveVersion => "malformed.bad_geneve_version",
        ParseError::BadGeneveOption => "malformed.bad_geneve_option",
        ParseError::BadGeneveProtocol => "malformed.bad_geneve_protocol",
    }
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Serialize for DropReason {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indices_are_dense_and_names_unique() {
        let all: Vec<_> = DropReason::all().collect();
        assert_eq!(all.len(), DROP_REASONS);
        for (i, r) in all.iter().enumerate() {
            assert_eq!(r.index(), Some(i), "{r}");
        }
        assert_eq!(DropReason::Policy("spoofed_source").index(), None);
        assert_eq!(
            DropReason::Policy("spoofed_source").name(),
            "spoofed_source"
        );
        let mut names: Vec<_> = all.iter().map(|r| r.name()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), DROP_REASONS);
        for e in ParseError::ALL {
            assert_eq!(
                DropReason::Malformed(e).name(),
                format!("malformed.{}", e.name())
            );
        }
    }
}
