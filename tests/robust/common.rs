//! The vocabulary of the robustness tests: one host's switch (one worker)
//! with in-memory guest and uplink wires, vNICs in VPCs A and B with the
//! same addresses, a simulated clock, and packet builders.

use dataplane::{ManualClock, Vni};
use etherparse::{NetHeaders, PacketHeaders, TransportHeader};
use overlay::layer::HostOverlay;
use overlay::v2p::PhysDest;
use overlay::{V2b, V2p};
use sluice_test_support::build::Tcp;
use sluice_test_support::Geneve;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use vmm_net::backend::Wire;
use vmm_net::switch::Switch;
use vnic::config::{MacAddr, VnicConfig};
use vnic::port::VnicPort;

pub const GW_MAC: [u8; 6] = [0xa8, 0x40, 0x25, 0xff, 0xff, 0x01];
pub const VPC_A: u32 = 7777;
pub const VPC_B: u32 = 8888;
/// This host, another host of the VPCs, and the boundary.
pub const HOST: &str = "fd00:99::a";
pub const PEER_HOST: &str = "fd00:99::b";
pub const BOUNDARY: &str = "fd00:99::bd";
pub const SNAT_IP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
pub const SNAT_IP6: &str = "2001:db8:5::10";
/// A guest of each VPC on the peer host (V2P-mapped): 10.0.0.30.
pub const PEER_LAST: u8 = 30;

pub fn mac(last: u8) -> [u8; 6] {
    [0xa8, 0x40, 0x25, 0x00, 0x00, last]
}

pub fn v4(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 0, 0, last)
}

pub fn v6(last: u8) -> Ipv6Addr {
    Ipv6Addr::new(0xfd00, 1, 0, 0, 0, 0, 0, u16::from(last))
}

pub fn ip6(s: &str) -> Ipv6Addr {
    s.parse().expect("an IPv6 literal")
}

/// The V2P and V2B tables every host of the test shares, and the clock
/// of every port.
pub struct Cloud {
    pub v2p: Arc<V2p>,
    pub v2b: Arc<V2b>,
    pub clock: ManualClock,
}

impl Cloud {
    /// The peer guest of both VPCs mapped, and both VPCs' internet
    /// traffic to the boundary.
    pub fn new() -> Cloud {
        let c = Cloud {
            v2p: Arc::new(V2p::new(1024)),
            v2b: Arc::new(V2b::new(64)),
            clock: ManualClock::new(),
        };
        for vni in [VPC_A, VPC_B] {
            let vni = Vni::new(vni).unwrap();
            for ip in [IpAddr::V4(v4(PEER_LAST)), IpAddr::V6(v6(PEER_LAST))] {
                let dest = PhysDest {
                    guest_mac: mac(PEER_LAST),
                    host: ip6(PEER_HOST),
                };
                c.v2p.set(vni, ip, dest).unwrap();
            }
            for p in ["0.0.0.0/0", "::/0"] {
                c.v2b.set(vni, p.parse().unwrap(), [ip6(BOUNDARY)]).unwrap();
            }
        }
        // Time starts away from zero, as on a real host.
        c.clock.advance_secs(1000);
        c
    }

    pub fn overlay(&self) -> HostOverlay {
        HostOverlay {
            underlay_ip: ip6(HOST),
            underlay_mac: [2, 0, 0, 0, 0, 0x10],
            next_hop_mac: [2, 0, 0, 0, 0, 0x20],
            v2p: self.v2p.clone(),
            v2b: self.v2b.clone(),
            mcast: Default::default(),
        }
    }

    /// A switch (one worker's) with its uplink wire.
    pub fn switch(&self) -> (Switch, Wire) {
        let up = Wire::new();
        (Switch::new(ip6(HOST), Box::new(up.backend())), up)
    }

    /// Builds `c`'s port on this host, maps its addresses in V2P, and
    /// attaches it to `sw`; returns its guest's wire.
    pub fn attach(&self, sw: &mut Switch, c: &VnicConfig) -> Wire {
        for ip in guest_ips(c) {
            let dest = PhysDest {
                guest_mac: c.guest_mac.0,
                host: ip6(HOST),
            };
            self.v2p.set(c.vni, ip, dest).unwrap();
        }
        let port = VnicPort::build(c, &self.overlay(), Box::new(self.clock.clone())).unwrap();
        let wire = Wire::new();
        sw.attach(port, Box::new(wire.backend())).unwrap();
        wire
    }
}

/// Guest `last` of VPC `vni`: 10.0.0.`last`/24 and fd00:1::`last`/64,
/// SNAT on [`SNAT_IP`] (ports 2048-4095) and [`SNAT_IP6`], internet
/// routes, inbound allowed from the VPC, `flows` flows at most.
pub fn vnic(name: &str, last: u8, vni: u32, flows: u32) -> VnicConfig {
    serde_json::from_value(serde_json::json!({
        "name": name,
        "guest_mac": MacAddr(mac(last)).to_string(),
        "gateway_mac": MacAddr(GW_MAC).to_string(),
        "vni": vni,
        "ipv4": { "addr": v4(last), "subnet": "10.0.0.0/24", "gateway": "10.0.0.1" },
        "ipv6": { "addr": v6(last), "subnet": "fd00:1::/64", "gateway": "fd00:1::1" },
        "external": { "snat": [
            { "ip": SNAT_IP.to_string(), "first_port": 2048, "last_port": 4095 },
            { "ip": SNAT_IP6, "first_port": 2048, "last_port": 4095 }
        ] },
        "routes": [
            { "dest": "0.0.0.0/0", "target": "internet_gateway", "class": "custom" },
            { "dest": "::/0", "target": "internet_gateway", "class": "custom" }
        ],
        "firewall": [{ "direction": "in", "priority": 100, "action": "allow",
                       "hosts": { "subnet": "10.0.0.0/24" } },
                     { "direction": "in", "priority": 100, "action": "allow",
                       "hosts": { "subnet": "fd00:1::/64" } }],
        "limits": { "flows": flows }
    }))
    .expect("a valid vNIC configuration")
}

/// The guest's own addresses.
pub fn guest_ips(c: &VnicConfig) -> Vec<IpAddr> {
    c.ipv4
        .iter()
        .map(|v| IpAddr::V4(v.addr))
        .chain(c.ipv6.iter().map(|v| IpAddr::V6(v.addr)))
        .collect()
}

/// A UDP/IPv4 frame from guest `last` to `dst`.
pub fn udp4(last: u8, sport: u16, dst: Ipv4Addr, dport: u16) -> Vec<u8> {
    sluice_test_support::udp(
        (mac(last), GW_MAC),
        (v4(last), sport).into(),
        (dst, dport).into(),
        b"payload",
    )
}

/// A TCP/IPv4 segment from guest `last` to `dst`: `S` (SYN) or `A` (ACK).
pub fn tcp4(last: u8, sport: u16, dst: Ipv4Addr, dport: u16, flags: &str) -> Vec<u8> {
    let flags = if flags == "S" { "S" } else { "A" };
    Tcp::new(
        (mac(last), GW_MAC),
        (v4(last), sport).into(),
        (dst, dport).into(),
    )
    .window(64_000)
    .flags_acking(flags, 1)
    .build()
}

/// The reply of the peer to a TCP segment (`SA` or `A`), tunnelled from
/// the peer host to this one.
pub fn tcp4_from_peer(vni: u32, to_last: u8, sport: u16, dport: u16, synack: bool) -> Vec<u8> {
    let v = Tcp::new(
        (mac(PEER_LAST), mac(to_last)),
        (v4(PEER_LAST), sport).into(),
        (v4(to_last), dport).into(),
    )
    .seq(5000)
    .window(64_000)
    .flags_acking(if synack { "SA" } else { "A" }, 1001)
    .build();
    wrap(&v, PEER_HOST, HOST, vni)
}

/// Encapsulates an inner frame as host `src` sends it to `dst`
/// (RFC 8926, no options).
pub fn wrap(inner: &[u8], src: &str, dst: &str, vni: u32) -> Vec<u8> {
    Geneve::new(ip6(src), ip6(dst), vni)
        .sport(51000)
        .wrap(inner)
}

/// A Geneve frame on the underlay, taken apart.
#[derive(Debug)]
pub struct Tunnel {
    pub outer_dst: Ipv6Addr,
    pub vni: u32,
    pub inner: Vec<u8>,
}

/// Takes a frame sluice sent on the uplink apart; `Err` says why it is
/// not a well-formed Geneve frame.
pub fn tunnel(frame: &[u8]) -> Result<Tunnel, String> {
    let p = PacketHeaders::from_ethernet_slice(frame).map_err(|e| format!("outer: {e}"))?;
    let Some(NetHeaders::Ipv6(ip, _)) = &p.net else {
        return Err("outer not IPv6".into());
    };
    let Some(TransportHeader::Udp(u)) = &p.transport else {
        return Err("outer not UDP".into());
    };
    if u.destination_port != 6081 {
        return Err(format!("UDP port {}", u.destination_port));
    }
    let g = p.payload.slice();
    if g.len() < 8 {
        return Err("short Geneve header".into());
    }
    let opt_len = usize::from(g[0] & 0x3f) * 4;
    Ok(Tunnel {
        outer_dst: ip.destination.into(),
        vni: u32::from_be_bytes([0, g[4], g[5], g[6]]),
        inner: g.get(8 + opt_len..).ok_or("options past the end")?.to_vec(),
    })
}

/// The source MAC and IP of an Ethernet frame (IP `None` for ARP and
/// the like).
pub fn source(frame: &[u8]) -> Result<([u8; 6], Option<IpAddr>), String> {
    let p = PacketHeaders::from_ethernet_slice(frame).map_err(|e| format!("inner: {e}"))?;
    let eth = p
        .link
        .clone()
        .and_then(|l| l.ethernet2())
        .ok_or("no Ethernet")?;
    let ip = match &p.net {
        Some(NetHeaders::Ipv4(h, _)) => Some(IpAddr::V4(h.source.into())),
        Some(NetHeaders::Ipv6(h, _)) => Some(IpAddr::V6(h.source.into())),
        _ => None,
    };
    Ok((eth.source, ip))
}
