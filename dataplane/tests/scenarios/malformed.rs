//! Malformed input: every truncation is a counted drop with a reason that
//! names the header, never a panic and never a forwarded packet.

use crate::common::*;
use dataplane::headers::ParseError;
use dataplane::{DefaultAction, Direction, DropReason, Verdict};

fn allow_all(geneve: bool) -> Fixture {
    let l = [("any", DefaultAction::Allow, DefaultAction::Allow)];
    if geneve {
        geneve_port(64, &l)
    } else {
        port_with(64, &l)
    }
}

/// Rewrites the IPv4 total length (and header checksum) of a frame cut to
/// `len` bytes, so the cut shows up in the header it falls in rather than
/// as an inconsistent IP length.
fn fix_ipv4_len(frame: &mut [u8]) {
    if frame.len() < 34 {
        return;
    }
    let total = (frame.len() - 14) as u16;
    frame[16..18].copy_from_slice(&total.to_be_bytes());
    frame[24..26].copy_from_slice(&[0, 0]);
    let c = dataplane::checksum::checksum(&frame[14..34]);
    frame[24..26].copy_from_slice(&c.to_be_bytes());
}

#[test]
fn every_truncation_of_every_kind_is_dropped_with_a_reason() {
    let frames = [
        tcp4(("10.0.0.5", 1), ("10.0.0.9", 80), "S"),
        udp4(("10.0.0.5", 1), ("10.0.0.9", 53)),
        ping4("10.0.0.5", "10.0.0.9", 1),
        tcp6(("fd00::5", 1), ("fd00::9", 80), "S"),
        udp6(("fd00::5", 1), ("fd00::9", 53)),
        ping6("fd00::5", "fd00::9", 1),
    ];
    let mut fx = allow_all(false);
    let mut total = 0;
    for f in &frames {
        for n in 0..f.len() {
            let cut = &f[..n];
            let (v, _) = fx.send(Direction::Out, cut);
            match v {
                Verdict::Drop(DropReason::Malformed(_)) => total += 1,
                other => panic!("{n}-byte cut of a {}-byte frame: {other:?}", f.len()),
            }
        }
    }
    let counted: u64 = ParseError::ALL
        .iter()
        .map(|e| fx.port.stats().drops(DropReason::Malformed(*e)))
        .sum();
    assert_eq!(counted, total);
}

#[test]
fn cut_inside_a_header_names_that_header() {
    let mut fx = allow_all(false);
    let tcp = tcp4(("10.0.0.5", 1), ("10.0.0.9", 80), "S");
    let udp = udp4(("10.0.0.5", 1), ("10.0.0.9", 53));
    let icmp = ping4("10.0.0.5", "10.0.0.9", 1);
    let cases: [(&[u8], usize, ParseError); 6] = [
        (&tcp, 10, ParseError::TruncatedEthernet),
        (&tcp, 20, ParseError::TruncatedIpv4),
        (&tcp, 14 + 20 + 10, ParseError::TruncatedTcp),
        (&udp, 14 + 20 + 4, ParseError::TruncatedUdp),
        (&icmp, 14 + 20 + 4, ParseError::TruncatedIcmp),
        (&tcp, 14 + 20 + 19, ParseError::TruncatedTcp),
    ];
    for (f, n, want) in cases {
        let mut cut = f[..n].to_vec();
        fix_ipv4_len(&mut cut);
        let (v, _) = fx.send(Direction::Out, &cut);
        assert!(
            matches!(v, Verdict::Drop(DropReason::Malformed(e)) if e == want),
            "{n} bytes: want {want:?}, got {v:?}"
        );
    }
}

#[test]
fn truncated_geneve_is_dropped_inbound() {
    let mut fx = allow_all(true);
    let inner = tcp4(("10.0.0.9", 80), ("10.0.0.5", 1), "SA");
    let wire = geneve_wrap(&inner, "fd00::2", "fd00::1", 5);
    for n in 0..wire.len() {
        let (v, _) = fx.send(Direction::In, &wire[..n]);
        assert!(
            matches!(v, Verdict::Drop(DropReason::Malformed(_))),
            "{n}: {v:?}"
        );
    }
    // A plain frame on the underlay is not Geneve.
    let (v, _) = fx.send(Direction::In, &inner);
    assert!(
        matches!(
            v,
            Verdict::Drop(DropReason::Malformed(ParseError::NotGeneve))
        ),
        "{v:?}"
    );
}

#[test]
fn fragments_are_dropped_with_their_own_reason() {
    let mut fx = allow_all(false);
    let mut f = udp4(("10.0.0.5", 1), ("10.0.0.9", 53));
    // Set More Fragments, then fix the header checksum.
    f[20] |= 0x20;
    f[24..26].copy_from_slice(&[0, 0]);
    let c = dataplane::checksum::checksum(&f[14..34]);
    f[24..26].copy_from_slice(&c.to_be_bytes());
    let (v, _) = fx.send(Direction::Out, &f);
    assert!(matches!(v, Verdict::Drop(DropReason::Fragment)), "{v:?}");
    assert_eq!(fx.port.stats().drops(DropReason::Fragment), 1);
}

#[test]
fn random_bytes_never_panic() {
    let mut fx = allow_all(false);
    let mut gx = allow_all(true);
    let seeds = [
        tcp4(("10.0.0.5", 1), ("10.0.0.9", 80), "S"),
        tcp6(("fd00::5", 1), ("fd00::9", 80), "SA"),
        ping4("10.0.0.5", "10.0.0.9", 1),
    ];
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for i in 0..20_000 {
        let base = &seeds[i % seeds.len()];
        let mut f = if i % 2 == 0 {
            base.clone()
        } else {
            geneve_wrap(base, "fd00::2", "fd00::1", 5)
        };
        for _ in 0..(1 + next() % 4) {
            let at = (next() as usize) % f.len();
            f[at] = next() as u8;
        }
        let _ = fx.send(Direction::Out, &f);
        let _ = fx.send(Direction::In, &f);
        let _ = gx.send(Direction::In, &f);
    }
}
