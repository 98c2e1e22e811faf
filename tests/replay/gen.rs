//! The generator of the committed input captures under `pcaps/`.
//!
//! Each scenario is a timeline of frames, each sent by one endpoint: the
//! guest (`NAME.guest.in.pcap`) or the underlay (`NAME.uplink.in.pcap`).
//! Frames are built the way the real senders build them: the guest's
//! DHCP client, ping and TCP stack; vm2's host and the boundary
//! encapsulating in Geneve. Underlay frames of a flow carry what a peer's
//! sluice port would have put there (for vm2, inner MACs gateway to vm1;
//! for the boundary, gateway to gateway and sluice's "external" option).
//!
//! `regenerate_captures` (ignored) rewrites the files;
//! `committed_captures_are_what_the_generator_makes` fails when they
//! drift from this code. Regenerate with
//! `cargo test -p sluice-tests --test replay -- --ignored regenerate_captures`.

use crate::pcapio::{self, Packet};
use crate::world::*;
use etherparse::{
    ip_number, IpHeaders, Ipv4Header, Ipv6FlowLabel, Ipv6Header, PacketBuilder, TcpOptionElement,
};
use sluice_test_support::Geneve;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4};
use std::path::PathBuf;
use std::time::Duration;

/// When every scenario starts: 2024-06-01T12:00:00Z.
const START_SECS: u64 = 1_717_243_200;

/// The committed captures' folder (`pcaps/` at the workspace root).
pub fn pcaps_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../pcaps")
}

/// The file name of a scenario's input capture from one endpoint.
pub fn input_name(scenario: &str, endpoint: Endpoint) -> String {
    format!("{scenario}.{}.in.pcap", endpoint.name())
}

/// One input capture: what one endpoint sends in one scenario.
pub struct Capture {
    pub scenario: &'static str,
    pub endpoint: Endpoint,
    pub packets: Vec<Packet>,
}

impl Capture {
    pub fn file_name(&self) -> String {
        input_name(self.scenario, self.endpoint)
    }
}

/// Every input capture of every scenario.
pub fn captures() -> Vec<Capture> {
    SCENARIOS
        .iter()
        .flat_map(|&s| {
            let mut t = Timeline::default();
            match s {
                "dhcp" => dhcp(&mut t),
                "arp_ping" => arp_ping(&mut t),
                "vpc_tcp" => vpc_tcp(&mut t),
                "snat" => snat(&mut t),
                "floating_in" => floating_in(&mut t),
                "firewall_deny" => firewall_deny(&mut t),
                "spoof" => spoof(&mut t),
                "outer_checks" => outer_checks(&mut t),
                "mcast" => mcast(&mut t),
                other => unreachable!("scenario {other} has no generator"),
            }
            t.into_captures(s)
        })
        .collect()
}

/// Frames in the order they are sent, each with its time (µs after the
/// scenario's start) and sender.
#[derive(Default)]
struct Timeline {
    events: Vec<(u64, Endpoint, Vec<u8>)>,
}

impl Timeline {
    fn guest(&mut self, us: u64, frame: Vec<u8>) {
        self.push(us, Endpoint::Guest, frame);
    }

    fn uplink(&mut self, us: u64, frame: Vec<u8>) {
        self.push(us, Endpoint::Uplink, frame);
    }

    fn push(&mut self, us: u64, endpoint: Endpoint, frame: Vec<u8>) {
        if let Some((last, _, _)) = self.events.last() {
            assert!(us > *last, "frames are added in time order ({us} µs)");
        }
        self.events.push((us, endpoint, frame));
    }

    fn into_captures(self, scenario: &'static str) -> Vec<Capture> {
        Endpoint::ALL
            .into_iter()
            .filter_map(|endpoint| {
                let packets: Vec<Packet> = self
                    .events
                    .iter()
                    .filter(|(_, e, _)| *e == endpoint)
                    .map(|(us, _, frame)| Packet {
                        ts: Duration::from_secs(START_SECS) + Duration::from_micros(*us),
                        frame: frame.clone(),
                    })
                    .collect();
                (!packets.is_empty()).then_some(Capture {
                    scenario,
                    endpoint,
                    packets,
                })
            })
            .collect()
    }
}

// ------------------------------------------------------------ scenarios

/// A guest boots: DHCPDISCOVER, DHCPREQUEST (selecting), and 12 hours
/// later (T1 = lease/2) the unicast DHCPREQUEST of a renewal.
fn dhcp(t: &mut Timeline) {
    let none = Ipv4Addr::UNSPECIFIED;
    let bcast = Ipv4Addr::BROADCAST;
    t.guest(
        0,
        dhcp_client(1, 0x3903_f326, none, &[], (BROADCAST_MAC, none, bcast), 0),
    );
    t.guest(
        2_104,
        dhcp_client(
            3,
            0x3903_f326,
            none,
            &[(50, &VM1_IP.octets()), (54, &GW_IP.octets())],
            (BROADCAST_MAC, none, bcast),
            0,
        ),
    );
    t.guest(
        43_200_000_517,
        dhcp_client(3, 0x5a1c_07e2, VM1_IP, &[], (GW_MAC, VM1_IP, GW_IP), 0x4d21),
    );
}

/// ARP for the gateway, three pings to it a second apart, then ARP for a
/// subnet neighbour (answered by proxy ARP).
fn arp_ping(t: &mut Timeline) {
    t.guest(0, arp_request(VM1_MAC, VM1_IP, GW_IP));
    for (seq, us) in [(1u16, 97u64), (2, 1_000_153), (3, 2_000_241)] {
        t.guest(us, echo_request(0x2f1a, seq, 0x8c40 + seq, us));
    }
    t.guest(2_731_006, arp_request(VM1_MAC, VM1_IP, VM2_IP));
}

/// vm1 opens SSH to vm2 (host B): handshake, banners both ways, close.
fn vpc_tcp(t: &mut Timeline) {
    let guest = SocketAddrV4::new(VM1_IP, 40022);
    let peer = SocketAddrV4::new(VM2_IP, 22);
    let mut c = Conn::new(
        Side::new((VM1_MAC, GW_MAC), guest, peer, 0x6b8b_4567, 0x1c4e),
        Side::new((GW_MAC, VM1_MAC), peer, guest, 0x327b_23c6, 0x83a0),
    );
    let from_b = |inner: &[u8]| geneve(inner, HOST_B, HOST_A, VPC, &[], 54_321);
    t.guest(0, c.a("S", b""));
    t.uplink(212, from_b(&c.b("SA", b"")));
    t.guest(261, c.a("A", b""));
    t.uplink(5_380, from_b(&c.b("PA", SSH_SERVER_BANNER)));
    t.guest(5_402, c.a("PA", SSH_CLIENT_BANNER));
    t.uplink(5_655, from_b(&c.b("A", b"")));
    t.guest(9_120, c.a("FA", b""));
    t.uplink(9_301, from_b(&c.b("FA", b"")));
    t.guest(9_340, c.a("A", b""));
}

pub const SSH_SERVER_BANNER: &[u8] = b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n";
pub const SSH_CLIENT_BANNER: &[u8] = b"SSH-2.0-OpenSSH_9.6\r\n";
pub const HTTP_GET: &[u8] =
    b"GET / HTTP/1.1\r\nHost: 198.51.100.7\r\nUser-Agent: curl/7.88.1\r\nAccept: */*\r\n\r\n";
pub const HTTP_OK: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\r\nok\n";

/// vm1 resolves a name and fetches a page from the internet through
/// SNAT: the DNS flow gets the first SNAT port (2048), the TCP flow the
/// next (2049). The answers come back from the boundary.
fn snat(t: &mut Timeline) {
    let from_boundary =
        |inner: &[u8], sport| geneve(inner, BOUNDARY, HOST_A, VPC, &EXTERNAL_OPTION, sport);
    // DNS through SNAT port 2048.
    let q = SocketAddrV4::new(VM1_IP, 53_001);
    let r = SocketAddrV4::new(RESOLVER, 53);
    t.guest(0, udp4((VM1_MAC, GW_MAC), q, r, 0x9e01, &dns_query()));
    let ext = SocketAddrV4::new(SNAT_IP, SNAT_FIRST_PORT);
    t.uplink(
        11_204,
        from_boundary(
            &udp4((GW_MAC, VM1_MAC), r, ext, 0x0d12, &dns_response()),
            49_870,
        ),
    );
    // HTTP through SNAT port 2049.
    let guest = SocketAddrV4::new(VM1_IP, 41_234);
    let web = SocketAddrV4::new(WEB_SERVER, 80);
    let ext = SocketAddrV4::new(SNAT_IP, SNAT_FIRST_PORT + 1);
    let mut c = Conn::new(
        Side::new((VM1_MAC, GW_MAC), guest, web, 0x2ae8_944a, 0xa7f0),
        Side::new((GW_MAC, VM1_MAC), web, ext, 0x6a2f_d104, 0x0000),
    );
    let u = |f: Vec<u8>| from_boundary(&f, 61_003);
    t.guest(11_650, c.a("S", b""));
    t.uplink(20_561, u(c.b("SA", b"")));
    t.guest(20_600, c.a("A", b""));
    t.guest(20_662, c.a("PA", HTTP_GET));
    t.uplink(29_670, u(c.b("A", b"")));
    t.uplink(30_027, u(c.b("PA", HTTP_OK)));
    t.guest(30_065, c.a("A", b""));
    t.guest(30_453, c.a("FA", b""));
    t.uplink(39_394, u(c.b("FA", b"")));
    t.guest(39_440, c.a("A", b""));
}

pub const HTTP_GET_INDEX: &[u8] =
    b"GET /index.html HTTP/1.1\r\nHost: 203.0.113.50\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n\r\n";
pub const HTTP_OK_INDEX: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 19\r\n\r\n<p>hello vm1</p>\r\n\r\n";

/// An internet client fetches a page from vm1's web server at its
/// floating IP, and closes.
fn floating_in(t: &mut Timeline) {
    let client = SocketAddrV4::new(WEB_CLIENT, 55_312);
    let floating = SocketAddrV4::new(FLOATING_IP, 80);
    let server = SocketAddrV4::new(VM1_IP, 80);
    let mut c = Conn::new(
        Side::new((GW_MAC, VM1_MAC), client, floating, 0x0f3e_11d7, 0x5b09),
        Side::new((VM1_MAC, GW_MAC), server, client, 0x7545_e146, 0x0000),
    );
    let u = |f: Vec<u8>| geneve(&f, BOUNDARY, HOST_A, VPC, &EXTERNAL_OPTION, 50_617);
    t.uplink(0, u(c.a("S", b"")));
    t.guest(145, c.b("SA", b""));
    t.uplink(9_020, u(c.a("A", b"")));
    t.uplink(9_061, u(c.a("PA", HTTP_GET_INDEX)));
    t.guest(9_233, c.b("A", b""));
    t.guest(9_877, c.b("PA", HTTP_OK_INDEX));
    t.uplink(18_950, u(c.a("A", b"")));
    t.uplink(19_002, u(c.a("FA", b"")));
    t.guest(19_240, c.b("FA", b""));
    t.uplink(28_100, u(c.a("A", b"")));
}

/// Inbound SYNs vm1's firewall drops: vm2 tries SSH (with the two
/// retransmissions a Linux client makes, 1 s and 3 s later) and RDP;
/// internet clients try HTTPS and SSH at the floating IP. Only HTTPS from
/// the VPC subnet is allowed: vm2's last SYN reaches vm1.
fn firewall_deny(t: &mut Timeline) {
    let vm1 = |port| SocketAddrV4::new(VM1_IP, port);
    let from_vm2 = |port, dport, id, isn| {
        let inner = tcp4(
            (GW_MAC, VM1_MAC),
            SocketAddrV4::new(VM2_IP, port),
            vm1(dport),
            id,
            isn,
            None,
            "S",
            &[],
        );
        geneve(&inner, HOST_B, HOST_A, VPC, &[], 40_000 + port % 20_000)
    };
    let from_internet = |port, dport, id, isn| {
        let inner = tcp4(
            (GW_MAC, VM1_MAC),
            SocketAddrV4::new(WEB_CLIENT, port),
            SocketAddrV4::new(FLOATING_IP, dport),
            id,
            isn,
            None,
            "S",
            &[],
        );
        geneve(
            &inner,
            BOUNDARY,
            HOST_A,
            VPC,
            &EXTERNAL_OPTION,
            50_000 + port % 10_000,
        )
    };
    t.uplink(0, from_vm2(51_514, 22, 0x1001, 0x0a5c_3301));
    t.uplink(1_003_418, from_vm2(51_514, 22, 0x1002, 0x0a5c_3301));
    t.uplink(3_011_873, from_vm2(51_514, 22, 0x1003, 0x0a5c_3301));
    t.uplink(3_500_022, from_vm2(47_720, 3389, 0x1004, 0x51e0_8a12));
    t.uplink(4_000_310, from_internet(60_001, 443, 0x2201, 0x7d00_0001));
    t.uplink(4_250_007, from_internet(60_002, 22, 0x2202, 0x7d00_0002));
    t.uplink(5_000_115, from_vm2(51_520, 443, 0x1005, 0x0c11_9e40));
}

/// Frames that must not get through: the guest sending as someone else
/// or to broadcast and multicast, and underlay frames from a host that
/// does not have the inner source, with another VPC's VNI, or not Geneve
/// at all. Last, a proper SYN from the guest shows the port still works.
fn spoof(t: &mut Timeline) {
    let vm1 = SocketAddrV4::new(VM1_IP, 40_100);
    let vm2_ssh = SocketAddrV4::new(VM2_IP, 22);
    let syn = |macs, src, dst, id| tcp4(macs, src, dst, id, 0x4a7f_0c21, None, "S", &[]);
    t.guest(0, syn((ROGUE_MAC, GW_MAC), vm1, vm2_ssh, 0x0101));
    t.guest(
        1_000,
        syn(
            (VM1_MAC, GW_MAC),
            SocketAddrV4::new(ROGUE_IP, 40_100),
            vm2_ssh,
            0x0102,
        ),
    );
    t.guest(
        2_000,
        udp4(
            (VM1_MAC, BROADCAST_MAC),
            SocketAddrV4::new(VM1_IP, 137),
            SocketAddrV4::new(SUBNET_BROADCAST, 137),
            0x0103,
            &nbns_query(),
        ),
    );
    t.guest(
        3_000,
        udp4(
            (VM1_MAC, [0x01, 0x00, 0x5e, 0x7f, 0xff, 0xfa]),
            SocketAddrV4::new(VM1_IP, 50_000),
            SocketAddrV4::new(Ipv4Addr::new(239, 255, 255, 250), 1900),
            0x0104,
            SSDP_SEARCH,
        ),
    );
    // vm2's SSH SYN, but from host C, which does not have vm2.
    let inner = syn(
        (GW_MAC, VM1_MAC),
        SocketAddrV4::new(VM2_IP, 51_000),
        SocketAddrV4::new(VM1_IP, 22),
        0x0201,
    );
    t.uplink(4_000, geneve(&inner, HOST_C, HOST_A, VPC, &[], 44_001));
    // From the right host, with another VPC's VNI.
    t.uplink(
        5_000,
        geneve(&inner, HOST_B, HOST_A, OTHER_VPC, &[], 44_002),
    );
    // The inner frame bare on the underlay, not encapsulated at all.
    t.uplink(6_000, inner.clone());
    // Encapsulated, but in VXLAN (UDP 4789), not Geneve.
    t.uplink(7_000, vxlan(&inner, HOST_B, HOST_A, VPC));
    t.guest(10_000, syn((VM1_MAC, GW_MAC), vm1, vm2_ssh, 0x0105));
}

/// What host A's switch must check on every tunnel before any port sees
/// it (replayed through the real switch: `tests/replay/outer.rs`): vm2's
/// SSH SYNs from host B, each from its own source port, as a control
/// packet (the Geneve O bit, RFC 8926 §3.4), with a damaged outer UDP
/// checksum (RFC 8200 §8.1), with none (zero, RFC 6936), and well formed.
fn outer_checks(t: &mut Timeline) {
    let syn = |sport| {
        tcp4(
            (GW_MAC, VM1_MAC),
            SocketAddrV4::new(VM2_IP, sport),
            SocketAddrV4::new(VM1_IP, 22),
            0x0300 + (sport & 0xff),
            0x1c0f_fee0,
            None,
            "S",
            &[],
        )
    };
    let tunnel = |sport, flags| {
        geneve_flags(
            &syn(sport),
            HOST_B,
            HOST_A,
            VPC,
            &[],
            45_000 + sport % 1000,
            flags,
        )
    };
    t.uplink(0, tunnel(OUTER_OAM_SPORT, GENEVE_FLAG_OAM));
    let mut damaged = tunnel(OUTER_DAMAGED_SPORT, 0);
    // Any non-zero value but the right one: the sum is off by one.
    let at = OUTER_UDP_CSUM;
    let bad = match u16::from_be_bytes([damaged[at], damaged[at + 1]]) {
        0xffff => 0xfffe,
        v => v + 1,
    };
    damaged[at..at + 2].copy_from_slice(&bad.to_be_bytes());
    t.uplink(1_000, damaged);
    let mut zero = tunnel(OUTER_ZERO_SPORT, 0);
    zero[OUTER_UDP_CSUM..OUTER_UDP_CSUM + 2].copy_from_slice(&[0, 0]);
    t.uplink(2_000, zero);
    t.uplink(3_000, tunnel(OUTER_GOOD_SPORT, 0));
}

/// Multicast through host A's switch (replayed through the real switch:
/// `tests/replay/mcast.rs`): vm1 sends two UDP datagrams to the group;
/// vm2 on host B sends two, the first to the group's underlay group (an
/// underlay that carries multicast), the second as host B's head-end
/// copy, unicast to host A (RFC 1112 §6.4 and RFC 2464 §7 for the group
/// MACs, inner and outer).
fn mcast(t: &mut Timeline) {
    let g = MCAST_GROUP.octets();
    let group_mac = [0x01, 0x00, 0x5e, g[1] & 0x7f, g[2], g[3]];
    let u = MCAST_UNDERLAY.octets();
    let underlay_mac = [0x33, 0x33, u[12], u[13], u[14], u[15]];
    let to_group = |macs, src, n: usize, payload: &[u8]| {
        udp4(
            macs,
            SocketAddrV4::new(src, MCAST_SPORT),
            SocketAddrV4::new(MCAST_GROUP, MCAST_PORT),
            0x0600 + n as u16,
            payload,
        )
    };
    t.guest(
        0,
        to_group((VM1_MAC, group_mac), VM1_IP, 1, MCAST_FROM_VM1[0]),
    );
    t.guest(
        1_000,
        to_group((VM1_MAC, group_mac), VM1_IP, 2, MCAST_FROM_VM1[1]),
    );
    // As host B's port tunnels it: from the gateway MAC to the group's.
    let vm2 = |n, p| to_group((GW_MAC, group_mac), VM2_IP, n, p);
    t.uplink(
        2_000,
        Geneve::new(HOST_B, MCAST_UNDERLAY, VPC)
            .macs(UNDERLAY_ROUTER_MAC, underlay_mac)
            .hop_limit(63)
            .sport(49_001)
            .wrap(&vm2(3, MCAST_FROM_VM2[0])),
    );
    t.uplink(
        3_000,
        geneve(&vm2(4, MCAST_FROM_VM2[1]), HOST_B, HOST_A, VPC, &[], 49_002),
    );
}

/// The `mcast` datagrams' source port and payloads.
pub const MCAST_SPORT: u16 = 5_000;
pub const MCAST_FROM_VM1: [&[u8]; 2] = [b"vm1 to the group, 1", b"vm1 to the group, 2"];
pub const MCAST_FROM_VM2: [&[u8]; 2] = [b"vm2 to the group, 1", b"vm2 to the group, 2"];

/// The inner source ports of the `outer_checks` frames, in order.
pub const OUTER_OAM_SPORT: u16 = 51_001;
pub const OUTER_DAMAGED_SPORT: u16 = 51_002;
pub const OUTER_ZERO_SPORT: u16 = 51_003;
pub const OUTER_GOOD_SPORT: u16 = 51_004;
/// The Geneve O bit (flags byte).
const GENEVE_FLAG_OAM: u8 = 0x80;
/// Where a tunnel's outer UDP checksum is: Ethernet 14 + IPv6 40 + 6.
const OUTER_UDP_CSUM: usize = 60;

pub const SSDP_SEARCH: &[u8] = b"M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nMAN: \"ssdp:discover\"\r\nMX: 1\r\nST: ssdp:all\r\n\r\n";

// ------------------------------------------------------------- builders

fn ipv4(src: Ipv4Addr, dst: Ipv4Addr, ttl: u8, id: u16, df: bool) -> IpHeaders {
    let mut h =
        Ipv4Header::new(0, ttl, ip_number::TCP, src.octets(), dst.octets()).expect("IPv4 header");
    h.identification = id;
    h.dont_fragment = df;
    IpHeaders::Ipv4(h, Default::default())
}

/// A TCP segment. `flags`: S(YN), A(CK, with `ack`), P(SH), F(IN), R(ST).
/// SYNs carry the options Linux sends (MSS, window scale, SACK).
#[allow(clippy::too_many_arguments)]
pub fn tcp4(
    macs: ([u8; 6], [u8; 6]),
    src: SocketAddrV4,
    dst: SocketAddrV4,
    ip_id: u16,
    seq: u32,
    ack: Option<u32>,
    flags: &str,
    payload: &[u8],
) -> Vec<u8> {
    let syn = flags.contains('S');
    let window = if syn { 64_240 } else { 502 };
    let mut b = PacketBuilder::ethernet2(macs.0, macs.1)
        .ip(ipv4(*src.ip(), *dst.ip(), 64, ip_id, true))
        .tcp(src.port(), dst.port(), seq, window);
    for f in flags.chars() {
        b = match f {
            'S' => b.syn(),
            'A' => b.ack(ack.expect("an ACK number")),
            'P' => b.psh(),
            'F' => b.fin(),
            'R' => b.rst(),
            other => panic!("TCP flag {other}"),
        };
    }
    if syn {
        b = b
            .options(&[
                TcpOptionElement::MaximumSegmentSize(1460),
                TcpOptionElement::Noop,
                TcpOptionElement::WindowScale(7),
                TcpOptionElement::Noop,
                TcpOptionElement::Noop,
                TcpOptionElement::SelectiveAcknowledgementPermitted,
            ])
            .expect("TCP options");
    }
    let mut v = Vec::new();
    b.write(&mut v, payload).expect("TCP frame");
    v
}

pub fn udp4(
    macs: ([u8; 6], [u8; 6]),
    src: SocketAddrV4,
    dst: SocketAddrV4,
    ip_id: u16,
    payload: &[u8],
) -> Vec<u8> {
    let ttl = if dst.ip().is_multicast() { 4 } else { 64 };
    let mut v = Vec::new();
    PacketBuilder::ethernet2(macs.0, macs.1)
        .ip(ipv4(*src.ip(), *dst.ip(), ttl, ip_id, false))
        .udp(src.port(), dst.port())
        .write(&mut v, payload)
        .expect("UDP frame");
    v
}

/// One end of a TCP connection as its segments look on the wire it is
/// sent on (addresses may differ between the ends: NAT).
struct Side {
    macs: ([u8; 6], [u8; 6]),
    src: SocketAddrV4,
    dst: SocketAddrV4,
    next_seq: u32,
    ip_id: u16,
}

impl Side {
    fn new(
        macs: ([u8; 6], [u8; 6]),
        src: SocketAddrV4,
        dst: SocketAddrV4,
        isn: u32,
        ip_id: u16,
    ) -> Side {
        Side {
            macs,
            src,
            dst,
            next_seq: isn,
            ip_id,
        }
    }

    /// The next segment from this end, acknowledging all the peer sent.
    fn send(&mut self, peer_next: u32, flags: &str, payload: &[u8]) -> Vec<u8> {
        let ack = flags.contains('A').then_some(peer_next);
        let f = tcp4(
            self.macs,
            self.src,
            self.dst,
            self.ip_id,
            self.next_seq,
            ack,
            flags,
            payload,
        );
        let len =
            payload.len() + usize::from(flags.contains('S')) + usize::from(flags.contains('F'));
        self.next_seq = self.next_seq.wrapping_add(len as u32);
        self.ip_id = self.ip_id.wrapping_add(1);
        f
    }
}

/// A TCP connection between `a` (the opener) and `b`.
struct Conn {
    a: Side,
    b: Side,
}

impl Conn {
    fn new(a: Side, b: Side) -> Conn {
        Conn { a, b }
    }

    fn a(&mut self, flags: &str, payload: &[u8]) -> Vec<u8> {
        self.a.send(self.b.next_seq, flags, payload)
    }

    fn b(&mut self, flags: &str, payload: &[u8]) -> Vec<u8> {
        self.b.send(self.a.next_seq, flags, payload)
    }
}

/// `inner` as host `src` tunnels it to host A: outer Ethernet from the
/// underlay router, IPv6, UDP to 6081 (checksummed), Geneve with
/// `options`.
pub fn geneve(
    inner: &[u8],
    src: Ipv6Addr,
    dst: Ipv6Addr,
    vni: u32,
    options: &[u8],
    sport: u16,
) -> Vec<u8> {
    geneve_flags(inner, src, dst, vni, options, sport, 0)
}

/// The same with the Geneve flags byte `flags` (O: 0x80, C: 0x40).
pub fn geneve_flags(
    inner: &[u8],
    src: Ipv6Addr,
    dst: Ipv6Addr,
    vni: u32,
    options: &[u8],
    sport: u16,
    flags: u8,
) -> Vec<u8> {
    Geneve::new(src, dst, vni)
        .macs(UNDERLAY_ROUTER_MAC, HOST_A_NIC_MAC)
        .hop_limit(63)
        .sport(sport)
        .flags(flags)
        .options(options)
        .wrap(inner)
}

/// `inner` in VXLAN (RFC 7348): not what sluice's underlay speaks.
fn vxlan(inner: &[u8], src: Ipv6Addr, dst: Ipv6Addr, vni: u32) -> Vec<u8> {
    let mut x = vec![0x08, 0, 0, 0];
    x.extend_from_slice(&(vni << 8).to_be_bytes());
    x.extend_from_slice(inner);
    underlay_udp(src, dst, 51_500, 4789, &x)
}

fn underlay_udp(src: Ipv6Addr, dst: Ipv6Addr, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let ip = Ipv6Header {
        traffic_class: 0,
        flow_label: Ipv6FlowLabel::ZERO,
        hop_limit: 63,
        source: src.octets(),
        destination: dst.octets(),
        ..Default::default()
    };
    let mut v = Vec::new();
    PacketBuilder::ethernet2(UNDERLAY_ROUTER_MAC, HOST_A_NIC_MAC)
        .ip(IpHeaders::Ipv6(ip, Default::default()))
        .udp(sport, dport)
        .write(&mut v, payload)
        .expect("underlay frame");
    v
}

pub use sluice_test_support::arp_request;

/// A ping as Linux `ping` sends it: 56 bytes of data, a timeval (sent at
/// `us` after the start) then 0x10, 0x11, ...
fn echo_request(id: u16, seq: u16, ip_id: u16, us: u64) -> Vec<u8> {
    let sent = Duration::from_secs(START_SECS) + Duration::from_micros(us);
    let mut data = Vec::with_capacity(56);
    data.extend_from_slice(&sent.as_secs().to_le_bytes());
    data.extend_from_slice(&u64::from(sent.subsec_micros()).to_le_bytes());
    data.extend(0x10u8..0x38);
    let mut v = Vec::new();
    PacketBuilder::ethernet2(VM1_MAC, GW_MAC)
        .ip(ipv4(VM1_IP, GW_IP, 64, ip_id, true))
        .icmpv4_echo_request(id, seq)
        .write(&mut v, &data)
        .expect("echo request");
    v
}

/// A DHCP client message (RFC 2131) from vm1: message type `msg`, the
/// options a Linux client sends plus `extra`, padded to 300 octets.
/// `to` is (Ethernet destination, IP source, IP destination).
fn dhcp_client(
    msg: u8,
    xid: u32,
    ciaddr: Ipv4Addr,
    extra: &[(u8, &[u8])],
    to: ([u8; 6], Ipv4Addr, Ipv4Addr),
    ip_id: u16,
) -> Vec<u8> {
    let mut b = vec![0u8; 236];
    b[0] = 1; // BOOTREQUEST
    b[1] = 1; // Ethernet
    b[2] = 6;
    b[4..8].copy_from_slice(&xid.to_be_bytes());
    b[12..16].copy_from_slice(&ciaddr.octets());
    b[28..34].copy_from_slice(&VM1_MAC);
    b.extend_from_slice(&[99, 130, 83, 99]);
    let mut client_id = vec![1u8];
    client_id.extend_from_slice(&VM1_MAC);
    let prl: &[u8] = &[1, 3, 6, 12, 15, 26, 28, 51, 58, 59, 119];
    let msg = [msg];
    let mut opts: Vec<(u8, &[u8])> = vec![(53, &msg), (61, &client_id)];
    opts.extend_from_slice(extra);
    opts.extend_from_slice(&[(57, &[0x05, 0xdc][..]), (12, b"vm1"), (55, prl)]);
    for (code, data) in opts {
        b.push(code);
        b.push(data.len() as u8);
        b.extend_from_slice(data);
    }
    b.push(255);
    b.resize(300, 0);
    udp4(
        (VM1_MAC, to.0),
        SocketAddrV4::new(to.1, 68),
        SocketAddrV4::new(to.2, 67),
        ip_id,
        &b,
    )
}

const DNS_QUESTION: &[u8] = b"\x07example\x03com\x00\x00\x01\x00\x01";

fn dns_query() -> Vec<u8> {
    let mut v = vec![0x7a, 0x3c, 0x01, 0x20, 0, 1, 0, 0, 0, 0, 0, 0];
    v.extend_from_slice(DNS_QUESTION);
    v
}

fn dns_response() -> Vec<u8> {
    let mut v = vec![0x7a, 0x3c, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0];
    v.extend_from_slice(DNS_QUESTION);
    // example.com A 192.0.2.80, TTL 3600.
    v.extend_from_slice(&[
        0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0x0e, 0x10, 0, 4, 192, 0, 2, 80,
    ]);
    v
}

/// A NetBIOS node status query for `*` (what Windows and Samba
/// broadcast).
fn nbns_query() -> Vec<u8> {
    let mut v = vec![0x81, 0x3e, 0x00, 0x10, 0, 1, 0, 0, 0, 0, 0, 0, 0x20];
    v.extend_from_slice(b"CKAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
    v.extend_from_slice(&[0, 0x00, 0x21, 0x00, 0x01]);
    v
}

// ---------------------------------------------------------------- tests

#[test]
#[ignore = "rewrites pcaps/*.in.pcap; run with --ignored regenerate_captures"]
fn regenerate_captures() {
    let dir = pcaps_dir();
    for c in captures() {
        let path = dir.join(c.file_name());
        pcapio::write(&path, &c.packets);
        println!("wrote {} ({} packets)", path.display(), c.packets.len());
    }
}

#[test]
fn committed_captures_are_what_the_generator_makes() {
    let dir = pcaps_dir();
    let made = captures();
    let mut total = 0;
    for c in &made {
        let path = dir.join(c.file_name());
        let committed = std::fs::read(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e}; regenerate with `cargo test -p sluice-tests --test replay -- --ignored regenerate_captures`",
                path.display()
            )
        });
        assert!(
            committed == pcapio::encode(&c.packets),
            "{} differs from what tests/replay/gen.rs makes; regenerate with \
             `cargo test -p sluice-tests --test replay -- --ignored regenerate_captures` \
             (and review the diff)",
            path.display()
        );
        total += committed.len();
    }
    // No stray input captures the generator does not make.
    for e in std::fs::read_dir(&dir).expect("pcaps/") {
        let name = e.expect("entry").file_name().into_string().expect("UTF-8");
        if name.ends_with(".in.pcap") {
            assert!(
                made.iter().any(|c| c.file_name() == name),
                "pcaps/{name} is not made by the generator"
            );
        }
    }
    assert!(total < 100 * 1024, "captures stay small: {total} bytes");
}
