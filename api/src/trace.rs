//! Building the packet a trace describes, and small encodings (hex, pcap)
//! for what the API returns.

use crate::error::ApiError;
use crate::types::{Dir, PacketDesc, TraceProto, TraceRequest};
use etherparse::PacketBuilder;
use overlay::layer::HostOverlay;
use std::net::{IpAddr, Ipv6Addr};
use std::time::SystemTime;
use vnic::config::VnicConfig;

/// The frame a trace request stands for (see [`TraceRequest`]).
pub fn build_frame(
    req: &TraceRequest,
    c: &VnicConfig,
    host: &HostOverlay,
) -> Result<Vec<u8>, ApiError> {
    match (&req.packet, &req.frame_hex) {
        (Some(_), Some(_)) => Err(ApiError::field(
            "frame_hex",
            "give either packet or frame_hex, not both",
        )),
        (None, None) => Err(ApiError::field(
            "packet",
            "a packet or frame_hex is required",
        )),
        (None, Some(h)) => {
            let f = unhex(h)
                .ok_or_else(|| ApiError::field("frame_hex", "not an even-length hex string"))?;
            if f.len() < 14 || f.len() > 9216 + 18 {
                return Err(ApiError::field(
                    "frame_hex",
                    format!(
                        "a frame of {} bytes (an Ethernet frame is 14..=9234)",
                        f.len()
                    ),
                ));
            }
            Ok(f)
        }
        (Some(p), None) => {
            let (src_mac, dst_mac) = match req.direction {
                Dir::Out => (c.guest_mac.0, c.gateway_mac.0),
                Dir::In => (c.gateway_mac.0, c.guest_mac.0),
            };
            let inner = inner_frame(p, src_mac, dst_mac)?;
            match req.direction {
                Dir::Out => Ok(inner),
                Dir::In => Ok(tunnel(p, &inner, c, host)),
            }
        }
    }
}

fn inner_frame(p: &PacketDesc, src_mac: [u8; 6], dst_mac: [u8; 6]) -> Result<Vec<u8>, ApiError> {
    let payload = vec![0u8; usize::from(p.payload_len.unwrap_or(0)).min(9000)];
    let sport = p.src_port.unwrap_or(40000);
    let dport = p.dst_port.unwrap_or(80);
    let eth = PacketBuilder::ethernet2(src_mac, dst_mac);
    let ip = match (p.src, p.dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => eth.ipv4(s.octets(), d.octets(), 64),
        (IpAddr::V6(s), IpAddr::V6(d)) => eth.ipv6(s.octets(), d.octets(), 64),
        _ => {
            return Err(ApiError::field(
                "packet.dst",
                "source and destination must be of the same IP family",
            ))
        }
    };
    let mut out = Vec::new();
    let r = match p.protocol {
        TraceProto::Udp => ip.udp(sport, dport).write(&mut out, &payload),
        TraceProto::Icmp => {
            if p.src.is_ipv4() {
                ip.icmpv4_echo_request(sport, 1).write(&mut out, &payload)
            } else {
                ip.icmpv6_echo_request(sport, 1).write(&mut out, &payload)
            }
        }
        TraceProto::Tcp => {
            let flags = p.tcp_flags.as_deref().unwrap_or("S");
            let mut t = ip.tcp(sport, dport, 1000, 64240);
            for f in flags.chars() {
                t = match f.to_ascii_uppercase() {
                    'S' => t.syn(),
                    'A' => t.ack(1),
                    'F' => t.fin(),
                    'R' => t.rst(),
                    'P' => t.psh(),
                    other => {
                        return Err(ApiError::field(
                            "packet.tcp_flags",
                            format!("'{other}' is not a TCP flag (S, A, F, R, P)"),
                        ))
                    }
                };
            }
            t.write(&mut out, &payload)
        }
    };
    r.map_err(|e| ApiError::field("packet", e.to_string()))?;
    Ok(out)
}

/// Wraps an inner frame in Geneve as the wire would bring it to this host.
fn tunnel(p: &PacketDesc, inner: &[u8], c: &VnicConfig, host: &HostOverlay) -> Vec<u8> {
    let in_vpc = host.v2p.get(c.vni, p.src).map(|(d, _)| d.host);
    let boundary = || host.v2b.get(c.vni, p.dst).map(|(e, _)| e.pick(0));
    let src = p
        .outer_src
        .or(in_vpc)
        .or_else(boundary)
        .unwrap_or(Ipv6Addr::LOCALHOST);
    let external = p.external.unwrap_or(in_vpc.is_none());
    let mut g = vec![0u8, 0, 0x65, 0x58];
    if external {
        let opts = overlay::geneve::external_option();
        let o = opts.as_bytes();
        g[0] = (o.len() / 4) as u8;
        g.extend_from_slice(&c.vni.to_bytes());
        g.push(0);
        g.extend_from_slice(o);
    } else {
        g.extend_from_slice(&c.vni.to_bytes());
        g.push(0);
    }
    g.extend_from_slice(inner);
    let mut v = Vec::new();
    let built = PacketBuilder::ethernet2(host.next_hop_mac, host.underlay_mac)
        .ipv6(src.octets(), host.underlay_ip.octets(), 64)
        .udp(51000, 6081)
        .write(&mut v, &g);
    // Only a payload beyond 64 KiB fails, and inner frames are smaller.
    if built.is_err() {
        v.clear();
    }
    v
}

pub fn hex(b: &[u8]) -> String {
    let mut s = String::with_capacity(b.len() * 2);
    for x in b {
        s.push_str(&format!("{x:02x}"));
    }
    s
}

pub fn unhex(s: &str) -> Option<Vec<u8>> {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// A pcap file (microsecond timestamps, Ethernet) of the frames.
pub fn pcap_bytes(frames: &[(SystemTime, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes()); // magic: µs timestamps
    out.extend_from_slice(&2u16.to_le_bytes()); // version 2.4
    out.extend_from_slice(&4u16.to_le_bytes());
    out.extend_from_slice(&0i32.to_le_bytes()); // UTC
    out.extend_from_slice(&0u32.to_le_bytes()); // sigfigs
    out.extend_from_slice(&65535u32.to_le_bytes()); // snaplen
    out.extend_from_slice(&1u32.to_le_bytes()); // LINKTYPE_ETHERNET
    for (t, f) in frames {
        let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
        out.extend_from_slice(&(d.as_secs() as u32).to_le_bytes());
        out.extend_from_slice(&d.subsec_micros().to_le_bytes());
        out.extend_from_slice(&(f.len() as u32).to_le_bytes());
        out.extend_from_slice(&(f.len() as u32).to_le_bytes());
        out.extend_from_slice(f);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips() {
        assert_eq!(
            unhex(&hex(&[0, 1, 0xab, 0xff])),
            Some(vec![0, 1, 0xab, 0xff])
        );
        assert_eq!(unhex("abc"), None);
        assert_eq!(unhex("zz"), None);
    }

    #[test]
    fn pcap_has_a_global_header_and_records() {
        let b = pcap_bytes(&[(SystemTime::UNIX_EPOCH, vec![1, 2, 3])]);
        assert_eq!(b.len(), 24 + 16 + 3);
        assert_eq!(&b[0..4], &0xa1b2_c3d4u32.to_le_bytes());
        assert_eq!(&b[20..24], &1u32.to_le_bytes(), "LINKTYPE_ETHERNET");
    }
}
