//! One-line summaries of frames, as `tcpdump` would print them, from an
//! independent parser (etherparse, not the engine's): a trace's output
//! packet is shown as the wire would see it, tunnel and inner flow.
//!
//! A Geneve tunnel reads `IPv6 fd00:99::a > fd00:99::b UDP 6081 Geneve
//! VNI 7777 | <inner frame>`. Nothing here panics on a short or odd
//! frame: what cannot be parsed is named and its length given.

use etherparse::{NetHeaders, PacketHeaders, TransportHeader};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

const GENEVE_PORT: u16 = 6081;
/// Geneve's protocol type for an Ethernet frame (RFC 8926 §3.4).
const TRANSPARENT_ETHERNET: u16 = 0x6558;

/// A one-line summary of an Ethernet frame.
pub fn frame(f: &[u8]) -> String {
    summarize(f, 0)
}

fn mac(m: &[u8; 6]) -> String {
    vnic::config::MacAddr(*m).to_string()
}

fn summarize(f: &[u8], depth: u8) -> String {
    let h = match PacketHeaders::from_ethernet_slice(f) {
        Ok(h) => h,
        Err(e) => return format!("{} bytes, not parsed ({e})", f.len()),
    };
    let mut s = match &h.link {
        Some(etherparse::LinkHeader::Ethernet2(e)) => {
            format!("{} > {}", mac(&e.source), mac(&e.destination))
        }
        _ => String::from("?"),
    };
    let (src, dst): (IpAddr, IpAddr) = match &h.net {
        None => {
            s += &format!(" ethertype unknown, {} bytes", f.len());
            return s;
        }
        Some(NetHeaders::Arp(a)) => {
            s += " ";
            s += &match a.try_eth_ipv4() {
                Ok(a) if a.operation == etherparse::ArpOperation::REQUEST => format!(
                    "ARP who-has {} tell {}",
                    Ipv4Addr::from(a.target_ipv4),
                    Ipv4Addr::from(a.sender_ipv4)
                ),
                Ok(a) if a.operation == etherparse::ArpOperation::REPLY => format!(
                    "ARP reply {} is-at {}",
                    Ipv4Addr::from(a.sender_ipv4),
                    mac(&a.sender_mac)
                ),
                Ok(a) => format!("ARP operation {}", a.operation.0),
                Err(_) => "ARP (not Ethernet/IPv4)".to_string(),
            };
            return s;
        }
        Some(NetHeaders::Ipv4(ip, _)) => (
            Ipv4Addr::from(ip.source).into(),
            Ipv4Addr::from(ip.destination).into(),
        ),
        Some(NetHeaders::Ipv6(ip, _)) => (
            Ipv6Addr::from(ip.source).into(),
            Ipv6Addr::from(ip.destination).into(),
        ),
    };
    let fam = if src.is_ipv4() { "IPv4" } else { "IPv6" };
    let hp = |a: IpAddr, p: u16| match a {
        IpAddr::V4(a) => format!("{a}:{p}"),
        IpAddr::V6(a) => format!("[{a}]:{p}"),
    };
    match &h.transport {
        Some(TransportHeader::Udp(u)) if u.destination_port == GENEVE_PORT && depth == 0 => {
            s += &format!(
                " {fam} {src} > {dst} UDP {} > {}",
                u.source_port, GENEVE_PORT
            );
            s += &geneve(h.payload.slice(), depth);
        }
        Some(TransportHeader::Udp(u)) => {
            s += &format!(
                " {fam} {} > {} UDP len {}",
                hp(src, u.source_port),
                hp(dst, u.destination_port),
                h.payload.slice().len()
            );
        }
        Some(TransportHeader::Tcp(t)) => {
            let mut flags = String::new();
            for (on, c) in [
                (t.syn, 'S'),
                (t.fin, 'F'),
                (t.rst, 'R'),
                (t.psh, 'P'),
                (t.ack, 'A'),
            ] {
                if on {
                    flags.push(c);
                }
            }
            s += &format!(
                " {fam} {} > {} TCP [{flags}] seq {} len {}",
                hp(src, t.source_port),
                hp(dst, t.destination_port),
                t.sequence_number,
                h.payload.slice().len()
            );
        }
        Some(TransportHeader::Icmpv4(i)) => {
            let b = i.to_bytes();
            s += &format!(" {fam} {src} > {dst} ICMP {}", icmp4_name(b[0], b[1]));
        }
        Some(TransportHeader::Icmpv6(i)) => {
            let b = i.to_bytes();
            s += &format!(" {fam} {src} > {dst} ICMPv6 {}", icmp6_name(b[0], b[1]));
        }
        Some(TransportHeader::Igmp(_)) => s += &format!(" {fam} {src} > {dst} IGMP"),
        None => s += &format!(" {fam} {src} > {dst} ({} bytes)", f.len()),
    }
    s
}

/// The Geneve header and the frame it carries.
fn geneve(p: &[u8], depth: u8) -> String {
    let Some(hdr) = p.get(..8) else {
        return format!(" Geneve? ({} bytes)", p.len());
    };
    let opt_len = usize::from(hdr[0] & 0x3f) * 4;
    let proto = u16::from_be_bytes([hdr[2], hdr[3]]);
    let vni = u32::from_be_bytes([0, hdr[4], hdr[5], hdr[6]]);
    let mut s = format!(" Geneve VNI {vni}");
    if opt_len > 0 {
        let opts = p.get(8..8 + opt_len).unwrap_or(&[]);
        let hex: String = opts.iter().map(|b| format!("{b:02x}")).collect();
        s += &format!(" opts {hex}");
    }
    if proto != TRANSPARENT_ETHERNET {
        return s + &format!(" protocol {proto:#06x}");
    }
    match p.get(8 + opt_len..) {
        Some(inner) => s + " | " + &summarize(inner, depth + 1),
        None => s + " (truncated)",
    }
}

fn icmp4_name(ty: u8, code: u8) -> String {
    match ty {
        0 => "echo reply".into(),
        8 => "echo request".into(),
        3 => format!("unreachable code {code}"),
        11 => "time exceeded".into(),
        t => format!("type {t} code {code}"),
    }
}

fn icmp6_name(ty: u8, code: u8) -> String {
    match ty {
        128 => "echo request".into(),
        129 => "echo reply".into(),
        133 => "router solicitation".into(),
        134 => "router advertisement".into(),
        135 => "neighbor solicitation".into(),
        136 => "neighbor advertisement".into(),
        1 => format!("unreachable code {code}"),
        2 => "packet too big".into(),
        t => format!("type {t} code {code}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::PacketBuilder;

    #[test]
    fn a_tunnelled_syn_reads_outer_then_inner() {
        let mut inner = Vec::new();
        PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4([10, 0, 0, 5], [10, 0, 0, 6], 64)
            .tcp(40000, 22, 1, 1000)
            .syn()
            .write(&mut inner, &[])
            .unwrap();
        let mut g = vec![0, 0, 0x65, 0x58, 0, 0x1e, 0x61, 0];
        g.extend_from_slice(&inner);
        let mut outer = Vec::new();
        PacketBuilder::ethernet2([2, 0, 0, 0, 0, 0x10], [2, 0, 0, 0, 0, 0x20])
            .ipv6(
                "fd00:99::a".parse::<Ipv6Addr>().unwrap().octets(),
                "fd00:99::b".parse::<Ipv6Addr>().unwrap().octets(),
                64,
            )
            .udp(51000, 6081)
            .write(&mut outer, &g)
            .unwrap();
        let s = frame(&outer);
        assert!(
            s.contains("IPv6 fd00:99::a > fd00:99::b UDP 51000 > 6081 Geneve VNI 7777 | "),
            "{s}"
        );
        assert!(
            s.ends_with("IPv4 10.0.0.5:40000 > 10.0.0.6:22 TCP [S] seq 1 len 0"),
            "{s}"
        );
    }

    #[test]
    fn junk_is_named_not_a_panic() {
        assert!(frame(&[1, 2, 3]).contains("3 bytes"));
        let mut arp_ish = vec![0xffu8; 12];
        arp_ish.extend_from_slice(&[0x08, 0x06, 0, 1]);
        let _ = frame(&arp_ish);
    }
}
