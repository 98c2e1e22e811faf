//! Shared test fixtures: a configuration, robustness loops, and checks of
//! reply frames with etherparse and sluice-test-support (independent of
//! smoltcp, which builds them).

use std::net::{Ipv4Addr, Ipv6Addr};

use etherparse::{NetSlice, SlicedPacket, TransportSlice};
use sluice_test_support::assert_checksums;

use super::{GatewayConfig, Reply};

pub const GATEWAY_MAC: [u8; 6] = [0xa8, 0x40, 0x25, 0xff, 0x77, 0x77];
pub const GUEST_MAC: [u8; 6] = [0xa8, 0x40, 0x25, 0xfa, 0x01, 0x02];
pub const OTHER_MAC: [u8; 6] = [0xa8, 0x40, 0x25, 0xfa, 0x09, 0x09];

pub fn cfg() -> GatewayConfig {
    GatewayConfig {
        gateway_mac: GATEWAY_MAC,
        gateway_ip4: Some(Ipv4Addr::new(10, 0, 0, 1)),
        gateway_ip6: Some("fd00:1122:3344:101::1".parse().unwrap()),
        guest_mac: GUEST_MAC,
        guest_ip4: Some(Ipv4Addr::new(10, 0, 0, 5)),
        guest_prefix4: 24,
        guest_ip6: Some("fd00:1122:3344:101::5".parse().unwrap()),
        guest_prefix6: 64,
        dns4: vec![Ipv4Addr::new(1, 1, 1, 1), Ipv4Addr::new(8, 8, 8, 8)],
        dns6: vec![
            "2606:4700:4700::1111".parse().unwrap(),
            "2001:4860:4860::8888".parse().unwrap(),
        ],
        domain: Some("vpc.example.com".into()),
        hostname: Some("guest-1".into()),
        mtu: 1500,
        lease_secs: 86_400,
    }
}

/// The guest's own link-local address (EUI-64 of its MAC).
pub fn guest_ll6() -> Ipv6Addr {
    super::link_local_from_mac(GUEST_MAC)
}

type Builder = fn(&GatewayConfig, &[u8]) -> Reply;

/// Every strict prefix of a valid request is refused, without panicking.
pub fn truncations_refused(f: Builder, cfg: &GatewayConfig, frame: &[u8]) {
    assert!(f(cfg, frame).is_ok(), "the untruncated request is answered");
    for n in 0..frame.len() {
        let got = f(cfg, &frame[..n]);
        assert!(got.is_err(), "truncation to {n} octets answered: {got:?}");
    }
}

/// A small deterministic PRNG (xorshift64*), so failures reproduce.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Every builder, to cross-feed frames.
pub const ALL: [Builder; 6] = [
    super::arp::reply,
    super::icmp::echo4,
    super::icmp::echo6,
    super::ndp::reply,
    super::dhcp4::reply,
    super::dhcp6::reply,
];

/// `iterations` corrupted copies of `frame` (1–4 random octets changed,
/// sometimes also cut short or extended) never panic, given to `f` and to
/// every other builder; whatever is answered is still a parseable Ethernet
/// frame. Also checks that the pristine `frame` is answered by exactly one
/// builder (so they can be tried in turn). Returns how many corrupted
/// copies `f` answered. `SLUICE_FUZZ_ITERATIONS` overrides `iterations`.
pub fn random_flips(
    f: Builder,
    cfg: &GatewayConfig,
    frame: &[u8],
    iterations: usize,
    seed: u64,
) -> usize {
    let answering = ALL.iter().filter(|g| g(cfg, frame).is_ok()).count();
    assert_eq!(answering, 1, "exactly one builder answers a valid request");
    let iterations = std::env::var("SLUICE_FUZZ_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(iterations);
    let mut rng = Rng::new(seed);
    let mut answered = 0;
    for _ in 0..iterations {
        let mut bad = frame.to_vec();
        for _ in 0..1 + rng.below(4) {
            let at = rng.below(bad.len());
            bad[at] ^= 1 + rng.below(255) as u8;
        }
        match rng.below(8) {
            0 => bad.truncate(rng.below(frame.len())),
            1 => bad.extend((0..rng.below(64)).map(|_| rng.next() as u8)),
            _ => {}
        }
        if let Ok(reply) = f(cfg, &bad) {
            answered += 1;
            assert!(SlicedPacket::from_ethernet(&reply).is_ok());
        }
        for g in ALL {
            let _ = g(cfg, &bad);
        }
    }
    answered
}

/// Parses an IPv4 reply with etherparse, asserting that the IPv4 header
/// checksum and the UDP or ICMP checksum are valid (checked by
/// sluice-test-support's inspector).
pub fn check_ipv4(reply: &[u8]) -> SlicedPacket<'_> {
    let sliced = SlicedPacket::from_ethernet(reply).expect("etherparse parses the reply");
    let Some(NetSlice::Ipv4(ip)) = &sliced.net else {
        panic!("not IPv4")
    };
    assert_eq!(ip.header().ttl(), 64);
    match &sliced.transport {
        Some(TransportSlice::Udp(_)) | Some(TransportSlice::Icmpv4(_)) => {
            assert_checksums(reply);
        }
        other => panic!("unexpected transport {other:?}"),
    }
    sliced
}

/// Parses an IPv6 reply with etherparse, asserting that the UDP or ICMPv6
/// checksum is valid (UDP's is mandatory over IPv6) and the hop limit is
/// `hop_limit`.
pub fn check_ipv6(reply: &[u8], hop_limit: u8) -> SlicedPacket<'_> {
    let sliced = SlicedPacket::from_ethernet(reply).expect("etherparse parses the reply");
    let Some(NetSlice::Ipv6(ip)) = &sliced.net else {
        panic!("not IPv6")
    };
    assert_eq!(ip.header().hop_limit(), hop_limit);
    match &sliced.transport {
        Some(TransportSlice::Udp(_)) | Some(TransportSlice::Icmpv6(_)) => {
            assert_checksums(reply);
        }
        other => panic!("unexpected transport {other:?}"),
    }
    sliced
}

/// The Ethernet source and destination of a frame, via etherparse.
pub fn macs(sliced: &SlicedPacket<'_>) -> ([u8; 6], [u8; 6]) {
    let Some(etherparse::LinkSlice::Ethernet2(eth)) = &sliced.link else {
        panic!("not Ethernet II")
    };
    (eth.source(), eth.destination())
}
