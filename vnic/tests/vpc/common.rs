#![allow(dead_code)]

use dataplane::{Direction, ManualClock, PacketBuf, Verdict, Vni};
use etherparse::{NetHeaders, PacketBuilder, PacketHeaders, TransportHeader};
use overlay::layer::HostOverlay;
use overlay::v2p::PhysDest;
use overlay::{V2b, V2p};
use sluice_test_support::build::Tcp;
use sluice_test_support::{assert_checksums, Geneve};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use vnic::config::VnicConfig;

pub const GW_MAC: [u8; 6] = [0xa8, 0x40, 0x25, 0xff, 0xff, 0x01];
pub const HOST_A: &str = "fd00:99::a";
pub const HOST_B: &str = "fd00:99::b";
pub const HOST_C: &str = "fd00:99::c";
pub const BOUNDARY: &str = "fd00:99::bd";
pub const VPC: u32 = 7777;
pub const OTHER_VPC: u32 = 8888;

pub fn mac(last: u8) -> [u8; 6] {
    [0xa8, 0x40, 0x25, 0x00, 0x00, last]
}

pub fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

pub fn v4(s: &str) -> [u8; 4] {
    s.parse::<Ipv4Addr>().unwrap().octets()
}

/// The shared tables of the "cloud".
pub struct Cloud {
    pub v2p: Arc<V2p>,
    pub v2b: Arc<V2b>,
    pub mcast: Arc<overlay::mcast::Mcast>,
}

impl Cloud {
    pub fn new() -> Cloud {
        let c = Cloud {
            v2p: Arc::new(V2p::new(1024)),
            v2b: Arc::new(V2b::new(64)),
            mcast: Arc::default(),
        };
        for vni in [VPC, OTHER_VPC] {
            c.v2b
                .set(
                    Vni::new(vni).unwrap(),
                    "0.0.0.0/0".parse().unwrap(),
                    [BOUNDARY.parse::<Ipv6Addr>().unwrap()],
                )
                .unwrap();
        }
        c
    }

    pub fn host(&self, addr: &str) -> HostOverlay {
        HostOverlay {
            underlay_ip: addr.parse().unwrap(),
            underlay_mac: [2, 0, 0, 0, 0, 0x10],
            next_hop_mac: [2, 0, 0, 0, 0, 0x20],
            v2p: self.v2p.clone(),
            v2b: self.v2b.clone(),
            mcast: self.mcast.clone(),
        }
    }

    pub fn map(&self, vni: u32, guest: &str, last: u8, host: &str) {
        self.v2p
            .set(
                Vni::new(vni).unwrap(),
                ip(guest),
                PhysDest {
                    guest_mac: mac(last),
                    host: host.parse().unwrap(),
                },
            )
            .unwrap();
    }
}

/// A vNIC in 10.0.0.0/24 with outbound internet through SNAT.
pub fn vnic_cfg(name: &str, last: u8, addr: &str, vni: u32) -> VnicConfig {
    serde_json::from_value(serde_json::json!({
        "name": name,
        "guest_mac": vnic::config::MacAddr(mac(last)).to_string(),
        "gateway_mac": vnic::config::MacAddr(GW_MAC).to_string(),
        "vni": vni,
        "ipv4": { "addr": addr, "subnet": "10.0.0.0/24", "gateway": "10.0.0.1" },
        "dhcp": { "dns4": ["10.0.0.2"], "domain": "vpc.internal", "hostname": name },
        "external": { "snat": [{ "ip": "203.0.113.10", "first_port": 2048, "last_port": 2111 }] },
        "routes": [{ "dest": "0.0.0.0/0", "target": "internet_gateway", "class": "system" }],
        "limits": { "flows": 1024 }
    }))
    .unwrap()
}

pub struct Guest {
    pub vnic: vnic::port::VnicPort,
    pub clock: ManualClock,
    pub mac: [u8; 6],
    pub addr: &'static str,
}

pub fn guest(cfg: &VnicConfig, host: &HostOverlay, addr: &'static str) -> Guest {
    let clock = ManualClock::new();
    clock.set(1_000_000_000);
    let vnic = vnic::port::VnicPort::build(cfg, host, Box::new(clock.clone())).unwrap();
    Guest {
        vnic,
        clock,
        mac: cfg.guest_mac.0,
        addr,
    }
}

impl Guest {
    pub fn send(&mut self, dir: Direction, frame: &[u8]) -> (Verdict, Vec<u8>) {
        let mut p = PacketBuf::from_frame(frame);
        let v = self.vnic.port.process(dir, &mut p);
        (v, p.as_slice().to_vec())
    }

    /// What the guest sends, and what comes out of its port.
    pub fn out(&mut self, frame: &[u8]) -> Result<Vec<u8>, String> {
        match self.send(Direction::Out, frame) {
            (Verdict::Forward, f) => Ok(f),
            (Verdict::Hairpin(p), _) => Ok(p.as_slice().to_vec()),
            (Verdict::Drop(r), _) => Err(r.name().to_string()),
        }
    }

    /// What the underlay delivers to this guest's port.
    pub fn inb(&mut self, frame: &[u8]) -> Result<Vec<u8>, String> {
        match self.send(Direction::In, frame) {
            (Verdict::Forward, f) => Ok(f),
            (Verdict::Hairpin(p), _) => Ok(p.as_slice().to_vec()),
            (Verdict::Drop(r), _) => Err(r.name().to_string()),
        }
    }

    pub fn tcp(&self, dst: (&str, u16), sport: u16, flags: &str) -> Vec<u8> {
        tcp(self.mac, GW_MAC, (self.addr, sport), dst, flags)
    }
}

pub fn tcp(
    smac: [u8; 6],
    dmac: [u8; 6],
    src: (&str, u16),
    dst: (&str, u16),
    flags: &str,
) -> Vec<u8> {
    let sock = |(a, p): (&str, u16)| std::net::SocketAddr::new(ip(a), p);
    Tcp::new((smac, dmac), sock(src), sock(dst))
        .seq(1)
        .flags_acking(flags, 1)
        .payload(b"payload")
        .build()
}

/// The fields of a frame etherparse reads, checksums checked.
#[derive(Debug)]
pub struct Seen {
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    pub src: IpAddr,
    pub dst: IpAddr,
    pub sport: u16,
    pub dport: u16,
}

pub fn seen(frame: &[u8]) -> Seen {
    assert_checksums(frame);
    let p = PacketHeaders::from_ethernet_slice(frame).expect("etherparse reads it");
    let eth = p.link.clone().and_then(|l| l.ethernet2()).unwrap();
    let (src, dst) = match &p.net {
        Some(NetHeaders::Ipv4(h, _)) => (IpAddr::from(h.source), IpAddr::from(h.destination)),
        Some(NetHeaders::Ipv6(h, _)) => (IpAddr::from(h.source), IpAddr::from(h.destination)),
        other => panic!("{other:?}"),
    };
    let (sport, dport) = match (&p.net, &p.transport) {
        (Some(NetHeaders::Ipv4(_, _)), Some(TransportHeader::Tcp(t))) => {
            (t.source_port, t.destination_port)
        }
        (_, Some(TransportHeader::Udp(u))) => (u.source_port, u.destination_port),
        (_, Some(TransportHeader::Icmpv4(_))) => (0, 0),
        other => panic!("{other:?}"),
    };
    Seen {
        src_mac: eth.source,
        dst_mac: eth.destination,
        src,
        dst,
        sport,
        dport,
    }
}

/// The underlay view of an encapsulated frame.
#[derive(Debug)]
pub struct Tunnel {
    pub outer_src: Ipv6Addr,
    pub outer_dst: Ipv6Addr,
    pub vni: u32,
    pub options: Vec<u8>,
    pub inner: Vec<u8>,
}

pub fn tunnel(frame: &[u8]) -> Tunnel {
    let p = PacketHeaders::from_ethernet_slice(frame).expect("outer frame");
    let Some(NetHeaders::Ipv6(ip, _)) = &p.net else {
        panic!("outer not IPv6")
    };
    let Some(TransportHeader::Udp(u)) = &p.transport else {
        panic!("outer not UDP")
    };
    let g = p.payload.slice();
    assert_eq!(u.destination_port, 6081);
    assert_checksums(frame); // the outer UDP checksum
    let opt_len = usize::from(g[0] & 0x3f) * 4;
    Tunnel {
        outer_src: ip.source.into(),
        outer_dst: ip.destination.into(),
        vni: u32::from_be_bytes([0, g[4], g[5], g[6]]),
        options: g[8..8 + opt_len].to_vec(),
        inner: g[8 + opt_len..].to_vec(),
    }
}

/// Encapsulates an inner frame as host `src` would send it to `dst`.
pub fn wrap(inner: &[u8], src: &str, dst: &str, vni: u32) -> Vec<u8> {
    Geneve::new(src.parse().unwrap(), dst.parse().unwrap(), vni)
        .sport(51000)
        .wrap(inner)
}

/// A DHCPDISCOVER (RFC 2131 §4.4.1) from `chaddr`, built by hand.
pub fn dhcp_discover(chaddr: [u8; 6]) -> Vec<u8> {
    let mut b = vec![0u8; 236];
    b[0] = 1; // BOOTREQUEST
    b[1] = 1; // Ethernet
    b[2] = 6;
    b[4..8].copy_from_slice(&0x1234_5678u32.to_be_bytes());
    b[10] = 0x80; // broadcast flag
    b[28..34].copy_from_slice(&chaddr);
    b.extend_from_slice(&[99, 130, 83, 99]); // magic cookie
    b.extend_from_slice(&[53, 1, 1]); // DHCPDISCOVER
    b.extend_from_slice(&[55, 3, 1, 3, 6]); // ask for mask, router, DNS
    b.push(255);
    let mut v = Vec::new();
    PacketBuilder::ethernet2(chaddr, [0xff; 6])
        .ipv4([0, 0, 0, 0], [255, 255, 255, 255], 64)
        .udp(68, 67)
        .write(&mut v, &b)
        .unwrap();
    v
}

/// (yiaddr, options) of a DHCP reply frame.
pub fn dhcp_reply(frame: &[u8]) -> (Ipv4Addr, Vec<(u8, Vec<u8>)>) {
    let p = PacketHeaders::from_ethernet_slice(frame).unwrap();
    let b = p.payload.slice();
    let yiaddr = Ipv4Addr::new(b[16], b[17], b[18], b[19]);
    let mut opts = Vec::new();
    let mut i = 240;
    while i < b.len() && b[i] != 255 {
        if b[i] == 0 {
            i += 1;
            continue;
        }
        let (code, len) = (b[i], usize::from(b[i + 1]));
        opts.push((code, b[i + 2..i + 2 + len].to_vec()));
        i += 2 + len;
    }
    (yiaddr, opts)
}
