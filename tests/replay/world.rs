//! The fixed world every replay runs in: one VPC (VNI 7777) with vm1 on
//! host A (the port under test) and vm2 on host B, a boundary for the
//! internet, and the external addresses vm1 may use. The generator builds
//! the captures from these constants, the harness builds the port from
//! them, and the checks compare against them.

use std::net::{Ipv4Addr, Ipv6Addr};

/// The virtual gateway's MAC (every vNIC's).
pub const GW_MAC: [u8; 6] = [0xa8, 0x40, 0x25, 0xff, 0xff, 0x01];
/// vm1, the guest whose port every scenario replays through.
pub const VM1_MAC: [u8; 6] = [0xa8, 0x40, 0x25, 0x00, 0x00, 0x01];
/// vm2, vm1's VPC peer on host B.
pub const VM2_MAC: [u8; 6] = [0xa8, 0x40, 0x25, 0x00, 0x00, 0x02];
/// A MAC that is nobody's in the VPC (a spoofing guest uses it).
pub const ROGUE_MAC: [u8; 6] = [0xa8, 0x40, 0x25, 0x00, 0x00, 0x99];
pub const BROADCAST_MAC: [u8; 6] = [0xff; 6];

pub const GW_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
pub const DNS_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
pub const VM1_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 5);
pub const VM2_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 6);
/// The multicast replay's overlay group (VPC 7777), its M2P underlay
/// group (admin-local scope), and the UDP ports its datagrams use.
pub const MCAST_GROUP: Ipv4Addr = Ipv4Addr::new(239, 1, 1, 1);
pub const MCAST_UNDERLAY: Ipv6Addr = Ipv6Addr::new(0xff04, 0, 0, 0, 0, 0, 1, 1);
pub const MCAST_PORT: u16 = 6000;
/// An address of vm1's subnet that is not vm1's (a spoofing guest uses it).
pub const ROGUE_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 99);
pub const SUBNET_BROADCAST: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 255);

/// Underlay addresses of the hosts and of the boundary.
pub const HOST_A: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x99, 0, 0, 0, 0, 0, 0xa);
pub const HOST_B: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x99, 0, 0, 0, 0, 0, 0xb);
pub const HOST_C: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x99, 0, 0, 0, 0, 0, 0xc);
pub const BOUNDARY: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x99, 0, 0, 0, 0, 0, 0xbd);
/// Host A's underlay NIC and the underlay next hop (outer Ethernet).
pub const HOST_A_NIC_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x10];
pub const UNDERLAY_ROUTER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x20];

pub const VPC: u32 = 7777;
pub const OTHER_VPC: u32 = 8888;
pub const GENEVE_PORT: u16 = 6081;
/// sluice's Geneve "external" option (class 0xff59, type 1, no data):
/// what boundary traffic carries.
pub const EXTERNAL_OPTION: [u8; 4] = [0xff, 0x59, 0x01, 0x00];

/// vm1's SNAT address and port range (flows get ports in order, from the
/// first: the first flow 2048, the second 2049).
pub const SNAT_IP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
pub const SNAT_FIRST_PORT: u16 = 2048;
pub const SNAT_LAST_PORT: u16 = 2111;
/// vm1's floating IP (scenarios `floating_in` and `firewall_deny`).
pub const FLOATING_IP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 50);

/// Internet hosts (documentation ranges).
pub const WEB_SERVER: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);
pub const RESOLVER: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 53);
pub const WEB_CLIENT: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 77);

/// Every scenario, by name: the captures `pcaps/NAME.*.in.pcap`.
pub const SCENARIOS: [&str; 9] = [
    "dhcp",
    "arp_ping",
    "vpc_tcp",
    "snat",
    "floating_in",
    "firewall_deny",
    "spoof",
    "outer_checks",
    "mcast",
];

/// Which side of the port a frame comes from or goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Endpoint {
    /// The guest's vNIC (frames the guest sends; what it is delivered).
    Guest,
    /// The underlay (encapsulated frames from other hosts and the boundary).
    Uplink,
}

impl Endpoint {
    pub const ALL: [Endpoint; 2] = [Endpoint::Guest, Endpoint::Uplink];

    pub fn name(self) -> &'static str {
        match self {
            Endpoint::Guest => "guest",
            Endpoint::Uplink => "uplink",
        }
    }
}
