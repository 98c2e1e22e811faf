//! A flow's first headers, kept in its record to re-walk the flow after a
//! rule change, in what the flow key does not already say.
//!
//! The record holds the first packet's [`FlowKey`]: addresses, protocol,
//! ports (or the echo identifier) and VNI. What else the layers may read
//! is the Ethernet header, the TTL, the fragment state and the L4 header's
//! other fields: 32 bytes here instead of the 76 of a whole
//! [`Inner`](crate::headers::Inner). The few flows that arrived tunnelled
//! keep their outer headers on the heap, and so does a flow whose headers
//! the key and these fields would not rebuild exactly (checked when the
//! record is made, so a re-check always walks the very headers the first
//! packet had).

use crate::flow::FlowKey;
use crate::headers::{Frag, Headers, Inner, Ip, Mac, Outer, Tcp, L3, L4};

/// What [`StartHeaders`] keeps of the L4 header besides the ports.
#[derive(Clone, Copy)]
enum StartL4 {
    None,
    Tcp { flags: u8, seq: u32, ack: u32 },
    Udp,
    Icmp { ty: u8, code: u8 },
    Icmp6 { ty: u8, code: u8 },
    Unknown,
}

/// The first packet's headers, minus its flow key (see the module doc).
pub(super) struct StartHeaders {
    eth_src: Mac,
    eth_dst: Mac,
    /// [`NO_VLAN`] for an untagged frame.
    vlan: u16,
    ether_type: u16,
    ttl: u8,
    frag: Frag,
    l4: StartL4,
    /// What the fields above and the key do not hold: the outer headers
    /// of a tunnelled packet, and the whole inner frame of one they would
    /// not rebuild.
    rest: Option<Box<Rest>>,
}

/// A VLAN ID has 12 bits: this one is no tag.
const NO_VLAN: u16 = u16::MAX;

struct Rest {
    outer: Option<Outer>,
    inner: Option<Inner>,
}

impl StartHeaders {
    /// The part of `h` that `key` (`FlowKey::of(h)`) does not hold.
    pub(super) fn new(h: &Headers, key: &FlowKey) -> StartHeaders {
        let i = &h.inner;
        let (ttl, frag) = match &i.l3 {
            L3::Ipv4(ip) | L3::Ipv6(ip) => (ip.ttl, ip.frag),
            L3::None | L3::Arp(_) => (0, Frag::None),
        };
        let l4 = match i.l4 {
            L4::None => StartL4::None,
            L4::Tcp(t) => StartL4::Tcp {
                flags: t.flags,
                seq: t.seq,
                ack: t.ack,
            },
            L4::Udp { .. } => StartL4::Udp,
            L4::Icmp { ty, code, .. } => StartL4::Icmp { ty, code },
            L4::Icmp6 { ty, code, .. } => StartL4::Icmp6 { ty, code },
            L4::Unknown => StartL4::Unknown,
        };
        let mut s = StartHeaders {
            eth_src: i.eth_src,
            eth_dst: i.eth_dst,
            vlan: i.vlan.unwrap_or(NO_VLAN),
            ether_type: i.ether_type,
            ttl,
            frag,
            l4,
            rest: None,
        };
        // What the key and the fields above cannot say (the proptest
        // below checks this is all of it): a tag with the VLAN ID that
        // stands for none, an identifier in an ICMP message the key has no
        // ports for, an IP version other than the key's.
        let exact = i.vlan != Some(NO_VLAN)
            && match i.l4 {
                L4::Icmp { ident, .. } | L4::Icmp6 { ident, .. } => ident == key.src_port,
                _ => true,
            }
            && matches!((&i.l3, key.af), (L3::Ipv4(_), 4) | (L3::Ipv6(_), 6));
        debug_assert!(!exact || s.inner(key) == *i);
        if h.outer.is_some() || !exact {
            s.rest = Some(Box::new(Rest {
                outer: h.outer,
                inner: (!exact).then_some(*i),
            }));
        }
        s
    }

    /// The first packet's headers again, given the record's key.
    pub(super) fn headers(&self, key: &FlowKey) -> Headers {
        match self.rest.as_deref() {
            Some(r) => Headers {
                outer: r.outer,
                inner: r.inner.unwrap_or_else(|| self.inner(key)),
            },
            None => Headers {
                outer: None,
                inner: self.inner(key),
            },
        }
    }

    fn inner(&self, key: &FlowKey) -> Inner {
        let (src, dst) = (key.src_port, key.dst_port);
        let ip = Ip {
            src: key.src_ip(),
            dst: key.dst_ip(),
            proto: key.proto,
            ttl: self.ttl,
            frag: self.frag,
        };
        Inner {
            eth_src: self.eth_src,
            eth_dst: self.eth_dst,
            vlan: (self.vlan != NO_VLAN).then_some(self.vlan),
            ether_type: self.ether_type,
            l3: if key.af == 6 {
                L3::Ipv6(ip)
            } else {
                L3::Ipv4(ip)
            },
            l4: match self.l4 {
                StartL4::None => L4::None,
                StartL4::Tcp { flags, seq, ack } => L4::Tcp(Tcp {
                    src,
                    dst,
                    flags,
                    seq,
                    ack,
                }),
                StartL4::Udp => L4::Udp { src, dst },
                StartL4::Icmp { ty, code } => L4::Icmp {
                    ty,
                    code,
                    ident: src,
                },
                StartL4::Icmp6 { ty, code } => L4::Icmp6 {
                    ty,
                    code,
                    ident: src,
                },
                StartL4::Unknown => L4::Unknown,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::headers::{ethertype, GeneveInfo, Vni};
    use proptest::prelude::*;
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

    fn l4() -> impl Strategy<Value = L4> {
        prop_oneof![
            Just(L4::None),
            (
                any::<u16>(),
                any::<u16>(),
                any::<u8>(),
                any::<u32>(),
                any::<u32>()
            )
                .prop_map(|(src, dst, flags, seq, ack)| L4::Tcp(Tcp {
                    src,
                    dst,
                    flags,
                    seq,
                    ack
                })),
            (any::<u16>(), any::<u16>()).prop_map(|(src, dst)| L4::Udp { src, dst }),
            (any::<u8>(), any::<u8>(), any::<u16>()).prop_map(|(ty, code, ident)| L4::Icmp {
                ty,
                code,
                ident
            }),
            (any::<u8>(), any::<u8>(), any::<u16>()).prop_map(|(ty, code, ident)| L4::Icmp6 {
                ty,
                code,
                ident
            }),
            Just(L4::Unknown),
        ]
    }

    fn headers() -> impl Strategy<Value = Headers> {
        (
            any::<(Mac, Mac, Option<u16>, bool, u8, u8)>(),
            any::<([u8; 16], [u8; 16])>(),
            prop_oneof![Just(Frag::None), Just(Frag::First), Just(Frag::Later)],
            l4(),
            any::<Option<(u32, u16)>>(),
        )
            .prop_map(
                |((eth_src, eth_dst, vlan, v6, proto, ttl), (s, d), frag, l4, outer)| {
                    let (src, dst, l3): (IpAddr, IpAddr, fn(Ip) -> L3) = if v6 {
                        (Ipv6Addr::from(s).into(), Ipv6Addr::from(d).into(), L3::Ipv6)
                    } else {
                        let v4 = |b: [u8; 16]| Ipv4Addr::new(b[0], b[1], b[2], b[3]);
                        (v4(s).into(), v4(d).into(), L3::Ipv4)
                    };
                    Headers {
                        outer: outer.map(|(vni, sport)| Outer {
                            eth_src,
                            eth_dst,
                            ip_src: Ipv6Addr::from(s),
                            ip_dst: Ipv6Addr::from(d),
                            hop_limit: ttl,
                            udp_src: sport,
                            udp_dst: 6081,
                            geneve: GeneveInfo {
                                vni: Vni::new(vni & 0xff_ffff).unwrap(),
                                oam: false,
                                critical: false,
                                opt_len: 0,
                            },
                        }),
                        inner: Inner {
                            eth_src,
                            eth_dst,
                            vlan,
                            ether_type: if v6 { ethertype::IPV6 } else { ethertype::IPV4 },
                            l3: l3(Ip {
                                src,
                                dst,
                                proto,
                                ttl,
                                frag,
                            }),
                            l4,
                        },
                    }
                },
            )
    }

    proptest! {
        /// Whatever the first packet was, a re-check walks exactly its
        /// headers again.
        #[test]
        fn the_first_headers_come_back_exactly(h in headers()) {
            let key = FlowKey::of(&h).expect("an IP packet has a key");
            let s = StartHeaders::new(&h, &key);
            prop_assert_eq!(s.headers(&key), h);
        }
    }

    #[test]
    fn a_plain_packet_keeps_nothing_on_the_heap() {
        let h = Headers {
            outer: None,
            inner: Inner {
                ether_type: ethertype::IPV4,
                l3: L3::Ipv4(Ip {
                    src: Ipv4Addr::new(10, 0, 0, 5).into(),
                    dst: Ipv4Addr::new(8, 8, 8, 8).into(),
                    proto: 17,
                    ttl: 64,
                    frag: Frag::None,
                }),
                l4: L4::Udp { src: 5000, dst: 53 },
                ..Inner::default()
            },
        };
        let key = FlowKey::of(&h).unwrap();
        let s = StartHeaders::new(&h, &key);
        assert!(s.rest.is_none());
        assert_eq!(s.headers(&key), h);
        assert!(core::mem::size_of::<StartHeaders>() <= 40);
    }
}
