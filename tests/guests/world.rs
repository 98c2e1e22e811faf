//! The world the scenarios run in: guests that are real smoltcp stacks,
//! each behind its vNIC's sluice port, hosts joined by an in-memory IPv6
//! underlay, a boundary, and one host on the internet.
//!
//! ```text
//!  guest stack ──TX──▶ port.process(Out) ──Forward──▶ underlay ──▶ switch of the
//!      ▲                     │ Hairpin                   │        outer dst host
//!      └────────RX───────────┘                           │        (VNI, inner dst MAC)
//!      ▲                                                 ▼
//!      └────RX──── port.process(In) ◀────────────────────┘
//!
//!  underlay to BOUNDARY ──▶ boundary: decap, route ──▶ internet stack
//!  internet stack ──▶ boundary: NAT table (external IP, port) ──▶ Geneve to the guest's host
//! ```
//!
//! Time is simulated: [`World::step`] advances smoltcp's clock and the
//! ports' [`ManualClock`] by [`STEP_MS`], polls every stack once and then
//! moves every frame the stacks queued to where it goes, so one exchange
//! across the fabric costs one step. Nothing here reads the system clock or
//! iterates a hash map: a scenario runs the same way every time.

use dataplane::{Direction, ManualClock, PacketBuf, Port, Verdict, Vni};
use etherparse::{NetHeaders, PacketHeaders, TransportHeader};
use overlay::layer::HostOverlay;
use overlay::v2p::PhysDest;
use overlay::{V2b, V2p};
use sluice_test_support::{check_checksums, Bad, Geneve};
use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::phy::{self, ChecksumCapabilities, Device, DeviceCapabilities, Medium};
use smoltcp::socket::{dhcpv4, icmp, tcp};
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetProtocol,
    EthernetRepr, HardwareAddress, Icmpv4Packet, Icmpv4Repr, Icmpv6Packet, Icmpv6Repr, IpAddress,
    IpCidr, IpEndpoint, Ipv4Cidr, Ipv6Cidr,
};
use std::collections::{BTreeMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use vnic::config::{MacAddr, VnicConfig};
use vnic::firewall::FirewallRule;
use vnic::port::VnicPort;

/// Simulated time per step.
pub const STEP_MS: u64 = 10;

pub const GW_MAC: [u8; 6] = [0xa8, 0x40, 0x25, 0xff, 0xff, 0x01];
pub const HOST_A: &str = "fd00:99::a";
pub const HOST_B: &str = "fd00:99::b";
pub const BOUNDARY: &str = "fd00:99::bd";
pub const VPC: u32 = 7777;
pub const OTHER_VPC: u32 = 8888;
/// The shared SNAT address every `vpc_vnic` gets a port range of.
pub const SNAT_IP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
/// The internet host, and its router (the boundary's internet side).
pub const INTERNET_HOST: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);
pub const INTERNET_ROUTER: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
const INTERNET_MAC: [u8; 6] = [0x02, 0x00, 0x5e, 0x00, 0x00, 0x07];
const BOUNDARY_MAC: [u8; 6] = [0x02, 0x00, 0x5e, 0x00, 0x00, 0x01];
const GENEVE_PORT: u16 = 6081;
/// How many fabric events the failure dump shows.
const TRACE_KEEP: usize = 80;

/// The MAC of guest number `last` (as `vnic/tests/vpc` numbers them).
pub fn mac(last: u8) -> [u8; 6] {
    [0xa8, 0x40, 0x25, 0x00, 0x00, last]
}

fn v6(s: &str) -> Ipv6Addr {
    s.parse().expect("an IPv6 literal")
}

/// A vNIC in 10.0.0.0/24 (gateway 10.0.0.1, DNS 10.0.0.2) with outbound
/// internet through SNAT on [`SNAT_IP`], ports 2048-2111.
pub fn vpc_vnic(name: &str, last: u8, addr: &str, vni: u32) -> VnicConfig {
    serde_json::from_value(serde_json::json!({
        "name": name,
        "guest_mac": MacAddr(mac(last)).to_string(),
        "gateway_mac": MacAddr(GW_MAC).to_string(),
        "vni": vni,
        "ipv4": { "addr": addr, "subnet": "10.0.0.0/24", "gateway": "10.0.0.1" },
        "dhcp": { "dns4": ["10.0.0.2"], "domain": "vpc.internal", "hostname": name },
        "external": { "snat": [{ "ip": SNAT_IP.to_string(), "first_port": 2048, "last_port": 2111 }] },
        "routes": [{ "dest": "0.0.0.0/0", "target": "internet_gateway", "class": "system" }],
        "limits": { "flows": 1024 }
    }))
    .expect("a valid vNIC configuration")
}

/// A firewall rule in the API's JSON form.
pub fn fw(json: &str) -> FirewallRule {
    serde_json::from_str(json).expect("a valid firewall rule")
}

/// How a guest gets its IPv4 address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Addressing {
    /// Configured from the vNIC's configuration before the first step
    /// (IPv6 too, if the vNIC has it), default routes via the gateway.
    Static,
    /// Nothing configured: a smoltcp DHCPv4 client asks the gateway.
    Dhcp,
}

/// Something with a TCP/IP stack: a guest, or the internet host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Node {
    Guest(usize),
    Internet,
}

/// A network device whose queues are the guest's side of a vNIC (or the
/// internet host's link to its router).
#[derive(Default)]
pub struct Nic {
    pub rx: VecDeque<Vec<u8>>,
    pub tx: VecDeque<Vec<u8>>,
}

pub struct RxTok(Vec<u8>);
pub struct TxTok<'a>(&'a mut VecDeque<Vec<u8>>);

impl phy::RxToken for RxTok {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

impl phy::TxToken for TxTok<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut frame = vec![0; len];
        let r = f(&mut frame);
        self.0.push_back(frame);
        r
    }
}

impl Device for Nic {
    type RxToken<'a> = RxTok;
    type TxToken<'a> = TxTok<'a>;

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        // The guest MTU (1500) plus the Ethernet header. Checksums are
        // computed on TX and verified on RX (the default): a rewrite that
        // breaks one shows up as a stack ignoring the packet.
        caps.max_transmission_unit = 1514;
        caps
    }

    fn receive(&mut self, _: Instant) -> Option<(RxTok, TxTok<'_>)> {
        let frame = self.rx.pop_front()?;
        Some((RxTok(frame), TxTok(&mut self.tx)))
    }

    fn transmit(&mut self, _: Instant) -> Option<TxTok<'_>> {
        Some(TxTok(&mut self.tx))
    }
}

/// What a DHCP lease configured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    pub address: Ipv4Cidr,
    pub router: Option<Ipv4Addr>,
    pub dns: Vec<Ipv4Addr>,
}

/// A smoltcp interface, its sockets and its device.
pub struct Stack {
    pub name: String,
    pub iface: Interface,
    pub sockets: SocketSet<'static>,
    pub nic: Nic,
    dhcp: Option<SocketHandle>,
    pub lease: Option<Lease>,
    /// Frames put in this stack's RX queue since it was made.
    pub received: usize,
    next_port: u16,
}

impl Stack {
    fn new(name: &str, mac: [u8; 6], seed: u64, now: Instant) -> Stack {
        let mut nic = Nic::default();
        let mut cfg = Config::new(HardwareAddress::Ethernet(EthernetAddress(mac)));
        // Fixed seeds: ISNs, DHCP transaction ids and ports are the same
        // every run.
        cfg.random_seed = seed;
        let iface = Interface::new(cfg, &mut nic, now);
        Stack {
            name: name.to_string(),
            iface,
            sockets: SocketSet::new(vec![]),
            nic,
            dhcp: None,
            lease: None,
            received: 0,
            next_port: 49152,
        }
    }

    pub fn set_ipv4(&mut self, addr: Ipv4Cidr, router: Ipv4Addr) {
        self.iface.update_ip_addrs(|a| {
            a.retain(|c| !matches!(c, IpCidr::Ipv4(_)));
            a.push(IpCidr::Ipv4(addr)).expect("room for an address");
        });
        self.iface
            .routes_mut()
            .add_default_ipv4_route(router)
            .expect("room for a route");
    }

    pub fn add_ipv6(&mut self, addr: Ipv6Cidr, router: Ipv6Addr) {
        self.iface.update_ip_addrs(|a| {
            a.push(IpCidr::Ipv6(addr)).expect("room for an address");
        });
        self.iface
            .routes_mut()
            .add_default_ipv6_route(router)
            .expect("room for a route");
    }

    fn start_dhcp(&mut self) {
        self.dhcp = Some(self.sockets.add(dhcpv4::Socket::new()));
    }

    fn deliver(&mut self, frame: Vec<u8>) {
        self.received += 1;
        self.nic.rx.push_back(frame);
    }

    fn poll(&mut self, now: Instant) {
        self.iface.poll(now, &mut self.nic, &mut self.sockets);
        let Some(h) = self.dhcp else { return };
        // As smoltcp's DHCP client example does: the lease configures the
        // interface's address and default route.
        match self.sockets.get_mut::<dhcpv4::Socket>(h).poll() {
            None => {}
            Some(dhcpv4::Event::Configured(c)) => {
                let lease = Lease {
                    address: c.address,
                    router: c.router,
                    dns: c.dns_servers.iter().copied().collect(),
                };
                self.iface.update_ip_addrs(|a| {
                    a.clear();
                    a.push(IpCidr::Ipv4(lease.address))
                        .expect("room for an address");
                });
                match lease.router {
                    Some(r) => {
                        self.iface
                            .routes_mut()
                            .add_default_ipv4_route(r)
                            .expect("room for a route");
                    }
                    None => {
                        self.iface.routes_mut().remove_default_ipv4_route();
                    }
                }
                self.lease = Some(lease);
            }
            Some(dhcpv4::Event::Deconfigured) => {
                self.iface.update_ip_addrs(|a| a.clear());
                self.iface.routes_mut().remove_default_ipv4_route();
                self.lease = None;
            }
        }
    }

    fn tcp_socket() -> tcp::Socket<'static> {
        tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0; 16 * 1024]),
            tcp::SocketBuffer::new(vec![0; 16 * 1024]),
        )
    }

    /// A TCP socket listening on `port`.
    pub fn listen(&mut self, port: u16) -> SocketHandle {
        let mut s = Self::tcp_socket();
        s.listen(port).expect("listen");
        self.sockets.add(s)
    }

    /// A TCP socket connecting to `to`:`port` from the next ephemeral port.
    pub fn connect(&mut self, to: impl Into<IpAddr>, port: u16) -> SocketHandle {
        let mut s = Self::tcp_socket();
        let local = self.next_port;
        self.next_port += 1;
        let remote = IpEndpoint::new(IpAddress::from(to.into()), port);
        s.connect(self.iface.context(), remote, local)
            .expect("connect");
        self.sockets.add(s)
    }

    pub fn tcp(&mut self, h: SocketHandle) -> &mut tcp::Socket<'static> {
        self.sockets.get_mut::<tcp::Socket>(h)
    }

    /// An ICMP socket bound to echo identifier `ident`.
    pub fn pinger(&mut self, ident: u16) -> SocketHandle {
        let buf = || icmp::PacketBuffer::new(vec![icmp::PacketMetadata::EMPTY; 4], vec![0; 1024]);
        let mut s = icmp::Socket::new(buf(), buf());
        s.bind(icmp::Endpoint::Ident(ident)).expect("bind");
        self.sockets.add(s)
    }

    /// Queues an ICMP (v4 or v6) echo request to `to` on a pinger.
    pub fn ping(&mut self, h: SocketHandle, ident: u16, seq_no: u16, to: IpAddr) {
        let data = b"sluice guests ping";
        let caps = ChecksumCapabilities::default();
        let src6 = match to {
            IpAddr::V6(d) => Some(self.iface.get_source_address_ipv6(&d)),
            IpAddr::V4(_) => None,
        };
        let s = self.sockets.get_mut::<icmp::Socket>(h);
        match (to, src6) {
            (IpAddr::V4(_), _) => {
                let repr = Icmpv4Repr::EchoRequest {
                    ident,
                    seq_no,
                    data,
                };
                let buf = s.send(repr.buffer_len(), to.into()).expect("room to send");
                repr.emit(&mut Icmpv4Packet::new_unchecked(buf), &caps);
            }
            (IpAddr::V6(dst), Some(src)) => {
                let repr = Icmpv6Repr::EchoRequest {
                    ident,
                    seq_no,
                    data,
                };
                let buf = s.send(repr.buffer_len(), to.into()).expect("room to send");
                repr.emit(&src, &dst, &mut Icmpv6Packet::new_unchecked(buf), &caps);
            }
            (IpAddr::V6(_), None) => unreachable!(),
        }
    }

    /// The echo replies a pinger received since last asked: (from, seq_no).
    pub fn pongs(&mut self, h: SocketHandle) -> Vec<(IpAddr, u16)> {
        let caps = ChecksumCapabilities::default();
        let mut own6 = None;
        if let Some(IpCidr::Ipv6(c)) = self
            .iface
            .ip_addrs()
            .iter()
            .find(|c| matches!(c, IpCidr::Ipv6(_)))
        {
            own6 = Some(c.address());
        }
        let s = self.sockets.get_mut::<icmp::Socket>(h);
        let mut v = Vec::new();
        while let Ok((payload, from)) = s.recv() {
            let from: IpAddr = from.into();
            let seq = match from {
                IpAddr::V4(_) => Icmpv4Packet::new_checked(payload)
                    .ok()
                    .and_then(|p| Icmpv4Repr::parse(&p, &caps).ok())
                    .and_then(|r| match r {
                        Icmpv4Repr::EchoReply { seq_no, .. } => Some(seq_no),
                        _ => None,
                    }),
                IpAddr::V6(src) => Icmpv6Packet::new_checked(payload)
                    .ok()
                    .and_then(|p| {
                        Icmpv6Repr::parse(&src, &own6.unwrap_or(Ipv6Addr::UNSPECIFIED), &p, &caps)
                            .ok()
                    })
                    .and_then(|r| match r {
                        Icmpv6Repr::EchoReply { seq_no, .. } => Some(seq_no),
                        _ => None,
                    }),
            };
            if let Some(seq) = seq {
                v.push((from, seq));
            }
        }
        v
    }
}

/// A VM: its stack, its vNIC's port, and where it runs.
pub struct Guest {
    pub stack: Stack,
    pub vnic: VnicPort,
    pub host: Ipv6Addr,
    pub vni: u32,
    pub mac: [u8; 6],
}

/// Where the boundary sends internet traffic for an external address (and
/// port range): what Oxide's boundary switches are programmed with
/// (sled, VNI, inner MAC).
#[derive(Clone, Copy, Debug)]
struct NatTarget {
    ip: IpAddr,
    ports: (u16, u16),
    host: Ipv6Addr,
    vni: u32,
    mac: [u8; 6],
    guest: usize,
}

/// A Geneve packet on the underlay, taken apart.
#[derive(Debug)]
pub struct Tunnel {
    pub outer_src: Ipv6Addr,
    pub outer_dst: Ipv6Addr,
    pub vni: u32,
    pub options: Vec<u8>,
    pub inner: Vec<u8>,
}

/// Reads an underlay frame: Ethernet, IPv6, UDP to 6081 with a correct
/// checksum, Geneve carrying Ethernet.
pub fn tunnel(frame: &[u8]) -> Result<Tunnel, String> {
    let p = PacketHeaders::from_ethernet_slice(frame).map_err(|e| format!("outer: {e}"))?;
    let Some(NetHeaders::Ipv6(ip, _)) = &p.net else {
        return Err("outer not IPv6".into());
    };
    let Some(TransportHeader::Udp(u)) = &p.transport else {
        return Err("outer not UDP".into());
    };
    let g = p.payload.slice();
    if u.destination_port != GENEVE_PORT {
        return Err(format!("outer UDP to port {}", u.destination_port));
    }
    // 0 is "no checksum", which tunnels may send (RFC 6935).
    if check_checksums(frame) == Err(Bad::Udp) {
        return Err("bad outer UDP checksum".into());
    }
    if g.len() < 8 || g[2..4] != [0x65, 0x58] {
        return Err("not Geneve carrying Ethernet".into());
    }
    let opt_len = usize::from(g[0] & 0x3f) * 4;
    if g.len() < 8 + opt_len {
        return Err("Geneve options overrun".into());
    }
    Ok(Tunnel {
        outer_src: ip.source.into(),
        outer_dst: ip.destination.into(),
        vni: u32::from_be_bytes([0, g[4], g[5], g[6]]),
        options: g[8..8 + opt_len].to_vec(),
        inner: g[8 + opt_len..].to_vec(),
    })
}

/// Encapsulates `inner` as the boundary sends it to a host: with sluice's
/// "external" option (class 0xff59, type 1).
fn from_boundary(inner: &[u8], host: Ipv6Addr, vni: u32) -> Vec<u8> {
    let opt = overlay::external_option();
    let opt = opt.as_bytes();
    Geneve::new(v6(BOUNDARY), host, vni)
        .macs([2, 0, 0, 0, 0, 0xbd], [2, 0, 0, 0, 0, 0x10])
        .options(opt)
        .wrap(inner)
}

/// One line about a frame, for the trace: addresses, protocol, TCP flags;
/// a tunnel shows its outer addresses and VNI, then the inner frame.
pub fn describe(frame: &[u8]) -> String {
    let Ok(p) = PacketHeaders::from_ethernet_slice(frame) else {
        return format!("unparsable {} bytes", frame.len());
    };
    let (src, dst) = match &p.net {
        Some(NetHeaders::Ipv4(h, _)) => (IpAddr::from(h.source), IpAddr::from(h.destination)),
        Some(NetHeaders::Ipv6(h, _)) => (IpAddr::from(h.source), IpAddr::from(h.destination)),
        Some(NetHeaders::Arp(a)) => {
            return match a.try_eth_ipv4() {
                Ok(a) if a.operation == etherparse::ArpOperation::REQUEST => format!(
                    "ARP who-has {} tell {}",
                    Ipv4Addr::from(a.target_ipv4),
                    Ipv4Addr::from(a.sender_ipv4)
                ),
                Ok(a) => format!(
                    "ARP {} is-at {} (to {})",
                    Ipv4Addr::from(a.sender_ipv4),
                    MacAddr(a.sender_mac),
                    Ipv4Addr::from(a.target_ipv4)
                ),
                Err(_) => "ARP (not Ethernet/IPv4)".into(),
            };
        }
        None => return format!("{} bytes, not IP", frame.len()),
    };
    let payload = p.payload.slice().len();
    match &p.transport {
        Some(TransportHeader::Udp(u)) if u.destination_port == GENEVE_PORT => match tunnel(frame) {
            Ok(t) => format!(
                "geneve {} -> {} vni {}{} [{}]",
                t.outer_src,
                t.outer_dst,
                t.vni,
                if t.options.is_empty() { "" } else { " +opt" },
                describe(&t.inner)
            ),
            Err(e) => format!("broken tunnel {src} -> {dst}: {e}"),
        },
        Some(TransportHeader::Tcp(t)) => {
            let flags: String = [
                (t.syn, 'S'),
                (t.ack, 'A'),
                (t.fin, 'F'),
                (t.rst, 'R'),
                (t.psh, 'P'),
            ]
            .iter()
            .filter(|(on, _)| *on)
            .map(|(_, c)| *c)
            .collect();
            format!(
                "TCP {src}:{} -> {dst}:{} [{flags}] seq {} ack {} len {payload}",
                t.source_port, t.destination_port, t.sequence_number, t.acknowledgment_number
            )
        }
        Some(TransportHeader::Udp(u)) => format!(
            "UDP {src}:{} -> {dst}:{} len {payload}",
            u.source_port, u.destination_port
        ),
        Some(TransportHeader::Icmpv4(i)) => format!("ICMP {src} -> {dst} {:?}", i.icmp_type),
        Some(TransportHeader::Icmpv6(i)) => format!("ICMPv6 {src} -> {dst} {:?}", i.icmp_type),
        _ => format!("IP {src} -> {dst}"),
    }
}

/// The fabric and everything on it.
pub struct World {
    pub v2p: Arc<V2p>,
    pub v2b: Arc<V2b>,
    /// The ports' clock (shared by all of them).
    pub clock: ManualClock,
    /// smoltcp's clock.
    pub now: Instant,
    pub steps: u64,
    guests: Vec<Guest>,
    pub internet: Stack,
    boundary: Vec<NatTarget>,
    /// Frames the fabric itself could not deliver, by why (the ports count
    /// their own drops).
    pub fabric_drops: BTreeMap<String, u64>,
    trace: VecDeque<String>,
    /// Print every fabric event as it happens (`GUESTS_TRACE=1`).
    live_trace: bool,
}

impl Default for World {
    fn default() -> Self {
        Self::new()
    }
}

impl World {
    /// The cloud with no guests: V2B sends all of VPC 7777's and 8888's
    /// internet traffic to the boundary; the internet host is up.
    pub fn new() -> World {
        let v2b = Arc::new(V2b::new(64));
        for vni in [VPC, OTHER_VPC] {
            v2b.set(
                Vni::new(vni).expect("a VNI"),
                "0.0.0.0/0".parse().expect("a prefix"),
                [v6(BOUNDARY)],
            )
            .expect("a V2B entry");
        }
        let clock = ManualClock::new();
        clock.set(1_000_000_000);
        let now = Instant::from_secs(1);
        let mut internet = Stack::new("internet", INTERNET_MAC, 0x1e7, now);
        internet.set_ipv4(Ipv4Cidr::new(INTERNET_HOST, 24), INTERNET_ROUTER);
        World {
            v2p: Arc::new(V2p::new(1024)),
            v2b,
            clock,
            now,
            steps: 0,
            guests: Vec::new(),
            internet,
            boundary: Vec::new(),
            fabric_drops: BTreeMap::new(),
            trace: VecDeque::new(),
            live_trace: std::env::var_os("GUESTS_TRACE").is_some(),
        }
    }

    fn host_overlay(&self, host: Ipv6Addr) -> HostOverlay {
        HostOverlay {
            underlay_ip: host,
            underlay_mac: [2, 0, 0, 0, 0, 0x10],
            next_hop_mac: [2, 0, 0, 0, 0, 0x20],
            v2p: self.v2p.clone(),
            v2b: self.v2b.clone(),
            mcast: Default::default(),
        }
    }

    /// Starts a VM with vNIC `cfg` on `host`, as the control plane would:
    /// builds its port, publishes its addresses in V2P and its external
    /// addresses at the boundary, and boots its stack.
    pub fn add_guest(&mut self, cfg: VnicConfig, host: &str, addressing: Addressing) -> Node {
        let host = v6(host);
        let vnic = VnicPort::build(&cfg, &self.host_overlay(host), Box::new(self.clock.clone()))
            .expect("the vNIC builds");
        let vni = Vni::new(cfg.vni.get()).expect("a VNI");
        let addrs = [
            cfg.ipv4.as_ref().map(|v| IpAddr::V4(v.addr)),
            cfg.ipv6.as_ref().map(|v| IpAddr::V6(v.addr)),
        ];
        for a in addrs.into_iter().flatten() {
            let dest = PhysDest {
                guest_mac: cfg.guest_mac.0,
                host,
            };
            self.v2p.set(vni, a, dest).expect("a V2P entry");
        }
        let id = self.guests.len();
        let mut stack = Stack::new(&cfg.name, cfg.guest_mac.0, 1 + id as u64, self.now);
        if addressing == Addressing::Static {
            if let Some(v) = &cfg.ipv4 {
                stack.set_ipv4(Ipv4Cidr::new(v.addr, v.subnet.prefix_len()), v.gateway);
            }
            if let Some(v) = &cfg.ipv6 {
                stack.add_ipv6(Ipv6Cidr::new(v.addr, v.subnet.prefix_len()), v.gateway);
            }
        } else {
            stack.start_dhcp();
        }
        self.guests.push(Guest {
            stack,
            vnic,
            host,
            vni: cfg.vni.get(),
            mac: cfg.guest_mac.0,
        });
        self.publish_external(id);
        Node::Guest(id)
    }

    /// Applies a new configuration to a running guest's vNIC (the port's
    /// own `reconfigure`), and its external addresses at the boundary.
    pub fn reconfigure(&mut self, n: Node, cfg: &VnicConfig) {
        self.vnic_mut(n)
            .reconfigure(cfg)
            .expect("the new configuration applies");
        self.publish_external(self.index(n));
    }

    fn publish_external(&mut self, id: usize) {
        self.boundary.retain(|t| t.guest != id);
        let g = &self.guests[id];
        let ext = &g.vnic.config().external;
        let target = |ip, ports| NatTarget {
            ip,
            ports,
            host: g.host,
            vni: g.vni,
            mac: g.mac,
            guest: id,
        };
        let mut v: Vec<NatTarget> = ext
            .snat
            .iter()
            .map(|s| target(s.ip, (s.first_port, s.last_port)))
            .collect();
        for ip in ext.floating.iter().chain(&ext.ephemeral) {
            v.push(target(*ip, (0, u16::MAX)));
        }
        self.boundary.extend(v);
    }

    fn index(&self, n: Node) -> usize {
        match n {
            Node::Guest(i) => i,
            Node::Internet => panic!("the internet host has no vNIC"),
        }
    }

    pub fn guest(&self, n: Node) -> &Guest {
        &self.guests[self.index(n)]
    }

    pub fn stack(&mut self, n: Node) -> &mut Stack {
        match n {
            Node::Guest(i) => &mut self.guests[i].stack,
            Node::Internet => &mut self.internet,
        }
    }

    pub fn port(&self, n: Node) -> &Port {
        &self.guest(n).vnic.port
    }

    pub fn vnic_mut(&mut self, n: Node) -> &mut VnicPort {
        let i = self.index(n);
        &mut self.guests[i].vnic
    }

    /// How many packets `n`'s port dropped for `reason` (a policy reason
    /// name like `no_v2p_mapping`, or a fixed one like `default_denied`).
    pub fn drops(&self, n: Node, reason: &str) -> u64 {
        self.port(n)
            .stats()
            .drop_counts()
            .iter()
            .find(|(r, _)| *r == reason)
            .map_or(0, |(_, c)| *c)
    }

    /// Shorthand for a TCP socket's state.
    pub fn tcp_state(&mut self, n: Node, h: SocketHandle) -> tcp::State {
        self.stack(n).tcp(h).state()
    }

    fn note(&mut self, line: String) {
        let line = format!("{:>5} {line}", self.steps);
        if self.live_trace {
            eprintln!("{line}");
        }
        if self.trace.len() == TRACE_KEEP {
            self.trace.pop_front();
        }
        self.trace.push_back(line);
    }

    fn fabric_drop(&mut self, why: String, frame: &[u8]) {
        self.note(format!("fabric DROP ({why}): {}", describe(frame)));
        *self.fabric_drops.entry(why).or_default() += 1;
    }

    /// One tick: every stack polls once (reading what it was sent, sending
    /// what it has), then every frame sent is carried to its destination's
    /// RX queue through the ports, the switches and the boundary.
    pub fn step(&mut self) {
        self.steps += 1;
        self.now += Duration::from_millis(STEP_MS);
        self.clock.advance_nanos(STEP_MS * 1_000_000);
        let now = self.now;
        for g in &mut self.guests {
            g.stack.poll(now);
        }
        self.internet.poll(now);

        let mut underlay = VecDeque::new();
        for i in 0..self.guests.len() {
            while let Some(frame) = self.guests[i].stack.nic.tx.pop_front() {
                let g = &mut self.guests[i];
                let mut p = PacketBuf::from_frame(&frame);
                let verdict = g.vnic.port.process(Direction::Out, &mut p);
                let name = g.stack.name.clone();
                match verdict {
                    Verdict::Forward => {
                        let wire = p.as_slice().to_vec();
                        let via = match tunnel(&wire) {
                            Ok(t) => format!("{} -> {} vni {}", t.outer_src, t.outer_dst, t.vni),
                            Err(e) => format!("not a tunnel: {e}"),
                        };
                        self.note(format!("{name} out: {} => {via}", describe(&frame)));
                        underlay.push_back(wire);
                    }
                    Verdict::Hairpin(r) => {
                        let r = r.as_slice().to_vec();
                        self.note(format!(
                            "{name} out: {} => hairpin {}",
                            describe(&frame),
                            describe(&r)
                        ));
                        self.guests[i].stack.deliver(r);
                    }
                    Verdict::Drop(why) => {
                        self.note(format!(
                            "{name} out: {} => DROP {}",
                            describe(&frame),
                            why.name()
                        ));
                    }
                }
            }
        }
        while let Some(frame) = self.internet.nic.tx.pop_front() {
            if let Some(t) = self.boundary_ingress(&frame) {
                underlay.push_back(t);
            }
        }
        // A port's inbound hairpin goes back onto the underlay; bounded so
        // that two ports answering each other cannot spin forever.
        let mut budget = 10_000;
        while let Some(frame) = underlay.pop_front() {
            budget -= 1;
            assert!(budget > 0, "the underlay is looping");
            if let Some(back) = self.switch(&frame) {
                underlay.push_back(back);
            }
        }
        for g in &mut self.guests {
            g.vnic.port.expire();
        }
    }

    /// The underlay and the receiving host's switch: by outer destination
    /// to a host (or the boundary), then by (VNI, inner destination MAC)
    /// to a port, whose inbound processing decides. Returns a hairpin the
    /// port sent back onto the underlay.
    fn switch(&mut self, frame: &[u8]) -> Option<Vec<u8>> {
        let t = match tunnel(frame) {
            Ok(t) => t,
            Err(e) => {
                self.fabric_drop(format!("underlay: {e}"), frame);
                return None;
            }
        };
        // The switch's receive policy for Geneve options, before demux.
        let options = match overlay::check_options(&t.options) {
            Ok(o) => o,
            Err(e) => {
                self.fabric_drop(format!("switch: {e}"), frame);
                return None;
            }
        };
        if t.outer_dst == v6(BOUNDARY) {
            if !options.external {
                self.fabric_drop("boundary: no external option".into(), frame);
                return None;
            }
            self.boundary_egress(&t);
            return None;
        }
        let dst_mac: [u8; 6] = match t.inner.get(..6) {
            Some(m) => m.try_into().expect("six bytes"),
            None => {
                self.fabric_drop("switch: runt inner frame".into(), frame);
                return None;
            }
        };
        if !self.guests.iter().any(|g| g.host == t.outer_dst) {
            self.fabric_drop(format!("underlay: no host {}", t.outer_dst), frame);
            return None;
        }
        let Some(j) = self
            .guests
            .iter()
            .position(|g| g.host == t.outer_dst && g.vni == t.vni && g.mac == dst_mac)
        else {
            self.fabric_drop(
                format!(
                    "switch {}: no port for vni {} mac {}",
                    t.outer_dst,
                    t.vni,
                    MacAddr(dst_mac)
                ),
                frame,
            );
            return None;
        };
        let g = &mut self.guests[j];
        let mut p = PacketBuf::from_frame(frame);
        let verdict = g.vnic.port.process(Direction::In, &mut p);
        let name = g.stack.name.clone();
        match verdict {
            Verdict::Forward => {
                let f = p.as_slice().to_vec();
                self.note(format!("{name} in: {}", describe(&f)));
                self.guests[j].stack.deliver(f);
                None
            }
            Verdict::Hairpin(r) => {
                let r = r.as_slice().to_vec();
                self.note(format!(
                    "{name} in: {} => hairpin {}",
                    describe(frame),
                    describe(&r)
                ));
                Some(r)
            }
            Verdict::Drop(why) => {
                self.note(format!(
                    "{name} in: {} => DROP {}",
                    describe(frame),
                    why.name()
                ));
                None
            }
        }
    }

    /// The boundary's inside: decapsulate and route to the internet host.
    fn boundary_egress(&mut self, t: &Tunnel) {
        let dst = PacketHeaders::from_ethernet_slice(&t.inner)
            .ok()
            .and_then(|p| match p.net {
                Some(NetHeaders::Ipv4(h, _)) => Some(Ipv4Addr::from(h.destination)),
                _ => None,
            });
        if dst != Some(INTERNET_HOST) {
            self.fabric_drop(format!("internet: no route to {dst:?}"), &t.inner.clone());
            return;
        }
        let mut inner = t.inner.clone();
        inner[0..6].copy_from_slice(&INTERNET_MAC);
        inner[6..12].copy_from_slice(&BOUNDARY_MAC);
        self.note(format!("boundary -> internet: {}", describe(&inner)));
        self.internet.deliver(inner);
    }

    /// The boundary's outside: answer the internet host's ARP for its
    /// router; tunnel IPv4 to the host its NAT table names for the
    /// destination address and port.
    fn boundary_ingress(&mut self, frame: &[u8]) -> Option<Vec<u8>> {
        let eth = EthernetFrame::new_checked(frame).ok()?;
        if eth.ethertype() == EthernetProtocol::Arp {
            let arp = ArpPacket::new_checked(eth.payload())
                .ok()
                .and_then(|a| ArpRepr::parse(&a).ok());
            if let Some(ArpRepr::EthernetIpv4 {
                operation: ArpOperation::Request,
                source_hardware_addr,
                source_protocol_addr,
                target_protocol_addr,
                ..
            }) = arp
            {
                if target_protocol_addr == INTERNET_ROUTER {
                    self.note(format!("internet: {} => answered", describe(frame)));
                    let reply = ArpRepr::EthernetIpv4 {
                        operation: ArpOperation::Reply,
                        source_hardware_addr: EthernetAddress(BOUNDARY_MAC),
                        source_protocol_addr: INTERNET_ROUTER,
                        target_hardware_addr: source_hardware_addr,
                        target_protocol_addr: source_protocol_addr,
                    };
                    let e = EthernetRepr {
                        src_addr: EthernetAddress(BOUNDARY_MAC),
                        dst_addr: source_hardware_addr,
                        ethertype: EthernetProtocol::Arp,
                    };
                    let mut buf = vec![0; e.buffer_len() + reply.buffer_len()];
                    let mut f = EthernetFrame::new_unchecked(&mut buf[..]);
                    e.emit(&mut f);
                    reply.emit(&mut ArpPacket::new_unchecked(f.payload_mut()));
                    self.internet.deliver(buf);
                }
            }
            return None;
        }
        let p = PacketHeaders::from_ethernet_slice(frame).ok()?;
        let Some(NetHeaders::Ipv4(ip, _)) = &p.net else {
            self.fabric_drop("boundary: not IPv4".into(), frame);
            return None;
        };
        let dst = IpAddr::from(ip.destination);
        let dport = match &p.transport {
            Some(TransportHeader::Tcp(t)) => t.destination_port,
            Some(TransportHeader::Udp(u)) => u.destination_port,
            _ => 0,
        };
        let Some(t) = self
            .boundary
            .iter()
            .find(|t| t.ip == dst && (t.ports.0..=t.ports.1).contains(&dport))
            .copied()
        else {
            self.fabric_drop(format!("boundary: no NAT entry for {dst}:{dport}"), frame);
            return None;
        };
        let mut inner = frame.to_vec();
        inner[0..6].copy_from_slice(&t.mac);
        inner[6..12].copy_from_slice(&BOUNDARY_MAC);
        self.note(format!("internet -> boundary: {}", describe(frame)));
        Some(from_boundary(&inner, t.host, t.vni))
    }

    /// Steps until `done` holds, checking it before every step; returns
    /// the steps taken. After `max_steps` without it, prints the state of
    /// every port and the fabric's last events, and fails.
    #[track_caller]
    pub fn run_until(&mut self, mut done: impl FnMut(&mut World) -> bool, max_steps: u64) -> u64 {
        for taken in 0..=max_steps {
            if done(self) {
                return taken;
            }
            if taken < max_steps {
                self.step();
            }
        }
        eprintln!("{}", self.dump());
        panic!(
            "condition not met within {max_steps} steps ({} ms simulated); state above",
            max_steps * STEP_MS
        );
    }

    /// Steps `n` times, whatever happens.
    pub fn run_for(&mut self, n: u64) {
        for _ in 0..n {
            self.step();
        }
    }

    /// Everything a failing scenario's reader needs: each port's layers
    /// (rules with hit counts, flow tables), counters and drops, the
    /// fabric's drops and its last events.
    pub fn dump(&self) -> String {
        let mut s = format!("==== world after {} steps ====\n", self.steps);
        for g in &self.guests {
            let port = &g.vnic.port;
            s += &format!(
                "---- {} (host {}, vni {}) addrs {:?} lease {:?}\n",
                g.stack.name,
                g.host,
                g.vni,
                g.stack.iface.ip_addrs(),
                g.stack.lease
            );
            s += &format!(
                "out {:?}\nin  {:?}\ndrops {:?}\n",
                port.stats().dir(Direction::Out),
                port.stats().dir(Direction::In),
                port.stats().drop_counts()
            );
            s += &serde_json::to_string_pretty(&port.dump_layers()).unwrap_or_default();
            s += "\n";
            s += &serde_json::to_string_pretty(&port.dump_tcp_flows()).unwrap_or_default();
            s += "\n";
        }
        s += &format!("---- fabric drops {:?}\n", self.fabric_drops);
        s += &format!("---- last {} fabric events\n", self.trace.len());
        for l in &self.trace {
            s += l;
            s += "\n";
        }
        s
    }

    /// What a TCP exchange ended with.
    #[track_caller]
    pub fn tcp_exchange(
        &mut self,
        client: (Node, SocketHandle),
        server: (Node, SocketHandle),
        upload: &[u8],
        reply: &[u8],
        max_steps: u64,
    ) -> Exchange {
        let mut x = Exchange::default();
        let (mut sent, mut answered, mut client_closed, mut server_closed) = (0, 0, false, false);
        let mut buf = vec![0u8; 4096];
        self.run_until(
            |w| {
                // The client uploads everything, reads the answer, then
                // closes.
                let c = w.stack(client.0).tcp(client.1);
                if c.may_send() && sent < upload.len() {
                    sent += c.send_slice(&upload[sent..]).expect("client send");
                }
                while c.can_recv() {
                    let n = c.recv_slice(&mut buf).expect("client recv");
                    x.downloaded.extend_from_slice(&buf[..n]);
                }
                if x.downloaded.len() == reply.len() && !client_closed {
                    c.close();
                    client_closed = true;
                }
                let client_state = c.state();
                // The server reads everything, answers once it has it all,
                // and closes when the client has.
                let s = w.stack(server.0).tcp(server.1);
                if x.server_saw.is_none() {
                    x.server_saw = s.remote_endpoint();
                }
                while s.can_recv() {
                    let n = s.recv_slice(&mut buf).expect("server recv");
                    x.uploaded.extend_from_slice(&buf[..n]);
                }
                if x.uploaded.len() == upload.len() && s.may_send() && answered < reply.len() {
                    answered += s.send_slice(&reply[answered..]).expect("server send");
                }
                if answered == reply.len() && !s.may_recv() && !server_closed {
                    s.close();
                    server_closed = true;
                }
                s.state() == tcp::State::Closed
                    && matches!(client_state, tcp::State::TimeWait | tcp::State::Closed)
            },
            max_steps,
        );
        x
    }
}

/// The bytes a [`World::tcp_exchange`] moved, and the client address the
/// server saw.
#[derive(Default, Debug)]
pub struct Exchange {
    pub uploaded: Vec<u8>,
    pub downloaded: Vec<u8>,
    pub server_saw: Option<IpEndpoint>,
}
