//! The bodies the API takes and returns. Configuration types come from
//! `vnic` (one definition for the API, the state file and the engine);
//! counters are the engine's own structs (`DirStats`, `LayerDirStats`,
//! `SwitchStats`); table dumps and traces are typed documents built from
//! the engine's by destructuring them whole, so no answer is untyped
//! JSON and a field changed in the engine fails the build, not a reader.

use dataplane::layer::LayerDirStats;
use dataplane::port::{
    DirStats, LayerDump, LftDump, PortStats, RuleDump, TcpFlowDump, Trace, TraceFate, TraceStep,
    UftDump, UftEntryDump,
};
use dataplane::tcp::TcpState;
use dataplane::{
    DefaultAction, Direction, DropReason, Encap, FlowKey, IpCidr, RateLimit, Transform, Vni,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use vmm_net::switch::SwitchStats;
use vnic::config::{ExternalIps, MacAddr, VnicConfig};
use vnic::firewall::FirewallRule;
use vnic::router::RouteEntry;

/// The guest device a port serves.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(
    tag = "kind",
    rename_all = "snake_case",
    deny_unknown_fields,
    from = "GuestWire"
)]
pub enum GuestSpec {
    /// A TAP interface (created if missing, made persistent so a guest
    /// network namespace keeps it across daemon restarts).
    Tap {
        /// The interface name: 1-15 printable ASCII characters, not `.` or
        /// `..`, without `/`, `:` or `%` (the kernel would refuse it or
        /// take it as a name template and make `x0`, `x1`, ...).
        name: String,
        /// The network namespace the TAP lives in: a path such as
        /// `/run/netns/NAME` (`ip netns add NAME`) or `/proc/PID/ns/net`.
        /// sluiced opens the TAP from inside it, so a missing TAP is
        /// created there and a restarted daemon re-attaches to a TAP that
        /// is not in its own namespace (the kernel looks TAP names up in
        /// the opener's namespace only). Without it, the daemon's own
        /// namespace: a TAP moved elsewhere after creation keeps working
        /// but cannot be re-attached after a restart.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        netns: Option<PathBuf>,
    },
    /// A vhost-user socket: sluice listens on it and the VMM connects
    /// (`mode: server`, the default), or the VMM listens and sluice
    /// connects (`mode: client`).
    VhostUser {
        socket: PathBuf,
        /// Which side listens. `client` (QEMU's `-chardev
        /// socket,path=SOCK,server=on`) survives a `sluiced` restart: the
        /// restarted daemon restores the port and connects to the VMM
        /// again, and the guest's network comes back without touching the
        /// VM. In `server` mode the VMM must reconnect itself.
        #[serde(default, skip_serializing_if = "VhostUserMode::is_server")]
        mode: VhostUserMode,
        /// Queue pairs offered to the VMM, 1 to 16 (default 1); more than
        /// one offers multiqueue (`VIRTIO_NET_F_MQ`). The VMM may use
        /// fewer (QEMU's `-netdev vhost-user,queues=N`) but not more. The
        /// worker that owns the port serves all of them.
        #[serde(default = "one_queue", skip_serializing_if = "is_one_queue")]
        queues: u16,
    },
    /// A DPDK port (a `--vdev` in the uplink's EAL arguments, or a NIC),
    /// polled by the port's worker: for benchmarks on DPDK's virtual
    /// devices (a capture replayed by `net_pcap`, a `net_null` sink).
    /// Needs a sluiced built with the `dpdk` feature and a DPDK uplink
    /// (whose EAL it shares).
    Dpdk {
        /// The device's DPDK name (`net_pcap0`) or port number.
        port: String,
    },
    /// No device: the port is programmed but frames for the guest are
    /// dropped and counted (control-plane testing, staging).
    #[default]
    None,
}

/// Which side of a vhost-user socket listens.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum VhostUserMode {
    /// sluice listens, the VMM connects.
    #[default]
    Server,
    /// The VMM listens, sluice connects (and reconnects).
    Client,
}

impl VhostUserMode {
    fn is_server(&self) -> bool {
        *self == VhostUserMode::Server
    }
}

fn one_queue() -> u16 {
    1
}

fn is_one_queue(q: &u16) -> bool {
    *q == 1
}

/// How a [`GuestSpec`] is read: serde ignores unknown fields beside the
/// tag of a unit variant (`{"kind": "none", "socket": "/x"}` was taken),
/// so `none` is read as an empty struct, which refuses them.
#[derive(Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
enum GuestWire {
    Tap {
        name: String,
        #[serde(default)]
        netns: Option<PathBuf>,
    },
    VhostUser {
        socket: PathBuf,
        #[serde(default)]
        mode: VhostUserMode,
        #[serde(default = "one_queue")]
        queues: u16,
    },
    Dpdk {
        port: String,
    },
    None {},
}

impl From<GuestWire> for GuestSpec {
    fn from(w: GuestWire) -> GuestSpec {
        match w {
            GuestWire::Tap { name, netns } => GuestSpec::Tap { name, netns },
            GuestWire::VhostUser {
                socket,
                mode,
                queues,
            } => GuestSpec::VhostUser {
                socket,
                mode,
                queues,
            },
            GuestWire::Dpdk { port } => GuestSpec::Dpdk { port },
            GuestWire::None {} => GuestSpec::None,
        }
    }
}

/// `POST /ports`.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateVnic {
    pub config: VnicConfig,
    /// Default: `none` (what a replay's state document needs).
    #[serde(default)]
    pub guest: GuestSpec,
}

/// A port in a listing.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct PortSummary {
    pub name: String,
    pub vni: Vni,
    pub guest_mac: MacAddr,
    pub ipv4: Option<Ipv4Addr>,
    pub ipv6: Option<Ipv6Addr>,
    pub guest: GuestSpec,
    /// The worker that owns the port.
    pub worker: usize,
    /// Live flows and the port's limit.
    pub flows: u32,
    pub flow_limit: u32,
    /// The port's rule version (bumped by every rule change).
    pub epoch: u64,
    /// The limit on what the guest sends, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
    /// `up`, or `guest_failed` when the guest device could not be opened
    /// at start (its network namespace or socket directory missing): the
    /// port is programmed, frames for the guest are dropped, and sluiced
    /// retries the device every few seconds.
    #[serde(default)]
    pub state: PortState,
    /// Why the guest device could not be opened (with `guest_failed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guest_error: Option<String>,
}

/// Whether a port's guest device is open.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PortState {
    #[default]
    Up,
    /// The device could not be opened; retried.
    GuestFailed,
}

/// `GET /ports/{name}`.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct PortDetail {
    pub summary: PortSummary,
    pub config: VnicConfig,
}

/// A firewall rule with its position, which `rm-fw-rule` names.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct NumberedRule {
    pub id: usize,
    pub rule: FirewallRule,
}

/// `PUT /ports/{name}/firewall`: the whole rule set, replaced atomically.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FirewallRules {
    pub rules: Vec<FirewallRule>,
}

/// `PUT /ports/{name}/routes`: the port's custom routes, all at once.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Routes {
    pub routes: Vec<RouteEntry>,
}

/// `DELETE /ports/{name}/routes?dest=...`.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct RouteDest {
    pub dest: IpCidr,
}

/// `POST /ports/{name}/attached-subnets`: a prefix routed to the guest;
/// `external` marks an external address block (never translated, never
/// to a VPC recipient). Attaching a prefix already attached replaces its
/// `external` flag.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AttachSubnet {
    pub cidr: IpCidr,
    #[serde(default)]
    pub external: bool,
}

/// `DELETE /ports/{name}/attached-subnets?cidr=...`.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct SubnetCidr {
    pub cidr: IpCidr,
}

/// `DELETE /ports/{name}/transit-ips?cidr=...&dir=in|out|both`: what
/// to stop allowing for the prefix.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct TransitRemove {
    pub cidr: IpCidr,
    pub dir: vnic::config::TransitDir,
}

/// `PUT /ports/{name}/rate-limit`: the new limit, or `null` for none.
/// The field is required: `{}` is refused rather than read as "remove
/// the limit" (removing one takes an explicit `null`).
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SetRateLimit {
    #[serde(deserialize_with = "present")]
    #[schemars(required)]
    pub rate_limit: Option<RateLimit>,
}

/// An `Option` field that must be present (`null` allowed): serde takes a
/// missing `Option` field as `None` unless it has its own deserializer.
fn present<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d)
}

/// `PUT /ports/{name}/external-ips`.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SetExternalIps {
    pub external: ExternalIps,
}

/// One V2P mapping: where a guest address of a VPC lives.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct V2pMapping {
    pub vni: Vni,
    pub ip: IpAddr,
    pub guest_mac: MacAddr,
    /// The underlay address of the guest's host.
    pub host: Ipv6Addr,
}

/// `PUT /v2p`: mappings to add or replace, in one call.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct V2pSet {
    pub mappings: Vec<V2pMapping>,
}

/// `GET /v2p` and `DELETE /v2p`: a VPC, and for a delete, one address of
/// it (without: the whole VPC's mappings).
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct V2pSelector {
    pub vni: Option<u32>,
    pub ip: Option<IpAddr>,
}

/// One V2B route: an external prefix of a VPC and its boundary endpoints.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct V2bRoute {
    pub vni: Vni,
    pub prefix: IpCidr,
    pub endpoints: Vec<Ipv6Addr>,
}

/// `PUT /v2b`.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct V2bSet {
    pub routes: Vec<V2bRoute>,
}

/// `GET /v2b` and `DELETE /v2b`.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct V2bSelector {
    pub vni: Option<u32>,
    pub prefix: Option<IpCidr>,
}

/// One M2P mapping: the underlay group that carries an overlay
/// multicast group of a VPC between hosts (see [`overlay::mcast`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct M2pMapping {
    pub vni: Vni,
    /// The overlay group: IPv4 224.0.0.0/4 outside 224.0.0.0/24, or IPv6
    /// ff00::/8 of a scope wider than link-local.
    pub group: IpAddr,
    /// The underlay group: IPv6 admin-local (ff04::/16).
    pub underlay: Ipv6Addr,
}

/// `PUT /m2p`: mappings to add or replace, in one call.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct M2pSet {
    pub mappings: Vec<M2pMapping>,
}

/// `GET /m2p` and `DELETE /m2p`: a VPC, and for a delete, one group of it
/// (without: every group of the VPC).
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct M2pSelector {
    pub vni: Option<u32>,
    pub group: Option<IpAddr>,
}

/// `PUT /ports/{name}/mcast-subs`: the port joins a group of its VPC
/// (again: its source filter is replaced).
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct McastSubscribe {
    pub group: IpAddr,
    /// Include-mode source filter: only datagrams from these sources are
    /// delivered. Empty: every source.
    #[serde(default)]
    pub sources: Vec<IpAddr>,
}

/// `DELETE /ports/{name}/mcast-subs`: one group, or (without) all.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct McastUnsubscribe {
    pub group: Option<IpAddr>,
}

/// `GET /mcast-subs`: one port's subscriptions, or every port's.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct McastSubsSelector {
    pub port: Option<String>,
}

/// One port's subscription to a group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct McastSub {
    pub port: String,
    pub group: IpAddr,
    /// Include-mode sources; empty: every source.
    #[serde(default)]
    pub sources: Vec<IpAddr>,
}

/// How a datagram reaches a next hop.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Replication {
    /// Head-end replication: unicast Geneve to the next hop.
    External,
    /// One Geneve packet to the group's M2P underlay group.
    Underlay,
    /// Both.
    Both,
}

impl From<Replication> for overlay::mcast::Replication {
    fn from(r: Replication) -> Self {
        match r {
            Replication::External => overlay::mcast::Replication::External,
            Replication::Underlay => overlay::mcast::Replication::Underlay,
            Replication::Both => overlay::mcast::Replication::Both,
        }
    }
}

/// One multicast forwarding entry: a next hop a VPC's datagrams to a
/// group are sent to, once per datagram.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct McastFwdEntry {
    pub vni: Vni,
    pub group: IpAddr,
    /// The underlay (unicast) address of the next hop: a host with
    /// members, or a switch replicating further.
    pub next_hop: Ipv6Addr,
    pub replication: Replication,
}

/// `GET /mcast-fwd` and `DELETE /mcast-fwd`: a VPC; for a delete also a
/// group, and optionally one next hop of it (without: all of them).
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct McastFwdSelector {
    pub vni: Option<u32>,
    pub group: Option<IpAddr>,
    pub next_hop: Option<Ipv6Addr>,
}

/// The host's multicast state: M2P, subscriptions, forwarding.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct McastDoc {
    #[serde(default)]
    pub m2p: Vec<M2pMapping>,
    #[serde(default)]
    pub subs: Vec<McastSub>,
    #[serde(default)]
    pub fwd: Vec<McastFwdEntry>,
}

impl McastDoc {
    pub fn is_empty(&self) -> bool {
        self.m2p.is_empty() && self.subs.is_empty() && self.fwd.is_empty()
    }
}

/// How many entries a table holds and may hold.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, JsonSchema)]
pub struct TableSize {
    pub entries: usize,
    pub limit: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Dir {
    /// From the guest.
    Out,
    /// To the guest (from the underlay).
    In,
}

impl From<Dir> for dataplane::Direction {
    fn from(d: Dir) -> Self {
        match d {
            Dir::Out => dataplane::Direction::Out,
            Dir::In => dataplane::Direction::In,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum TraceProto {
    Tcp,
    Udp,
    /// ICMP or ICMPv6 echo request (by the addresses' family).
    Icmp,
}

/// `POST /ports/{name}/trace`: a packet described by its fields (the
/// server builds it; checksums right) or given whole.
///
/// Outbound packets are the guest's frames (from its MAC to the gateway's
/// unless given). Inbound packets are described by their inner headers
/// and wrapped in Geneve with the port's VNI, from the V2P host of the
/// source (or a V2B boundary endpoint), to this host, as the wire brings
/// them.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TraceRequest {
    pub direction: Dir,
    #[serde(default)]
    pub packet: Option<PacketDesc>,
    /// The whole frame as hex (Ethernet first), instead of `packet`.
    #[serde(default)]
    pub frame_hex: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PacketDesc {
    pub protocol: TraceProto,
    pub src: IpAddr,
    pub dst: IpAddr,
    #[serde(default)]
    pub src_port: Option<u16>,
    #[serde(default)]
    pub dst_port: Option<u16>,
    /// TCP flags as letters: S (SYN), A (ACK), F, R, P. Default "S".
    #[serde(default)]
    pub tcp_flags: Option<String>,
    /// Payload bytes (zeros). Default 0.
    #[serde(default)]
    pub payload_len: Option<u16>,
    /// Inbound only: the outer source (the sender's host).
    #[serde(default)]
    pub outer_src: Option<Ipv6Addr>,
    /// Inbound only: mark the tunnel as from the boundary (the external
    /// Geneve option). Default: when the source is not in the VPC.
    #[serde(default)]
    pub external: Option<bool>,
}

/// The answer to a trace: the frame that went in, and the engine's
/// account of the walk (per layer: rule, action, transform; the verdict
/// and the packet that would leave).
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct TraceResponse {
    pub input_hex: String,
    pub trace: TraceDoc,
}

/// `POST /ports/{name}/capture`: record the port's traffic to pcap.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CaptureRequest {
    /// Stop after this many frames (1..=100000). Default 100.
    #[serde(default)]
    pub packets: Option<u32>,
    /// Stop after this many seconds (1..=60). Default 5.
    #[serde(default)]
    pub seconds: Option<u32>,
}

/// What a capture recorded (a pcap file, base64, frames from and to the
/// guest as the port saw them: guest frames before the outbound path,
/// inner frames after the inbound path).
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct CaptureResponse {
    pub packets: u32,
    pub pcap_base64: String,
}

/// `GET /state`: everything sluiced persists. `sluiceadm dump-state`
/// prints it; `sluiceadm replay --state` reads it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StateDoc {
    /// The state format's version (see [`crate::state::STATE_VERSION`]).
    pub version: u32,
    /// This host's underlay address (the replay's host).
    #[serde(default)]
    pub underlay_ip: Option<Ipv6Addr>,
    /// The underlay's MTU (the uplink's): every port's MTU, tunnelled,
    /// fits it. Absent: not known (a simulated host), not checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub underlay_mtu: Option<u16>,
    #[serde(default)]
    pub ports: Vec<CreateVnic>,
    #[serde(default)]
    pub v2p: Vec<V2pMapping>,
    #[serde(default)]
    pub v2b: Vec<V2bRoute>,
    /// Multicast: M2P, subscriptions, forwarding.
    #[serde(default, skip_serializing_if = "McastDoc::is_empty")]
    pub mcast: McastDoc,
}

impl PartialEq for CreateVnic {
    fn eq(&self, o: &Self) -> bool {
        self.config == o.config && self.guest == o.guest
    }
}

/// One underlay uplink of the host (`GET /underlay`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct UplinkDoc {
    /// Its name: its interface's.
    pub name: String,
    /// Its link (carrier, or a NIC's link status), as the device last said.
    pub link_up: bool,
    /// It carries traffic (`set-underlay`): with its link up, it is live.
    pub in_use: bool,
    /// The outer Ethernet source of what leaves on it, and its next hop.
    pub mac: MacAddr,
    pub next_hop_mac: MacAddr,
    /// Its counters, summed over the workers.
    pub stats: vmm_net::uplinks::UplinkStats,
}

impl UplinkDoc {
    /// Live: carrying traffic now (link up and in use).
    pub fn live(&self) -> bool {
        self.link_up && self.in_use
    }
}

/// `GET /underlay`: this host's underlay address and its uplinks, in
/// configuration order. Tunnels are spread over the live uplinks by
/// their outer flow; every uplink receives.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct UnderlayDoc {
    pub address: Ipv6Addr,
    pub uplinks: Vec<UplinkDoc>,
}

/// `PUT /underlay`: which configured uplinks carry traffic (one or all,
/// by name, any order); the others only receive. Lasts until sluiced
/// restarts (every configured uplink is in use at start).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UnderlaySet {
    pub uplinks: Vec<String>,
}

/// `GET /stats`: counters of every port and worker.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct HostStats {
    pub ports: Vec<PortStatsDoc>,
    pub workers: Vec<WorkerStatsDoc>,
    pub v2p: TableSize,
    pub v2b: TableSize,
    #[serde(default)]
    pub m2p: TableSize,
    /// Subscriptions (port, group) of every port.
    #[serde(default)]
    pub mcast_subs: TableSize,
    /// Forwarding entries (group, next hop).
    #[serde(default)]
    pub mcast_fwd: TableSize,
    /// The underlay uplinks, their state and counters.
    #[serde(default)]
    pub uplinks: Vec<UplinkDoc>,
}

#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct PortStatsDoc {
    pub name: String,
    pub flows: u32,
    pub flow_limit: u32,
    pub uft_in: usize,
    pub uft_out: usize,
    /// Packets/bytes per direction, UFT hits and misses, and the flow
    /// table's events: the engine's counters.
    pub stats: PortCounters,
    pub layers: Vec<LayerStatsDoc>,
    /// Drop counts by reason (non-zero only).
    pub drops: Vec<DropCount>,
    /// Why the guest device is not open, when it is not (see
    /// [`PortState::GuestFailed`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guest_error: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct DropCount {
    pub reason: String,
    pub count: u64,
}

impl PortStatsDoc {
    /// The port's drops with the layer that decided each where the
    /// engine knows it: `denied` and `default_denied` split by the layer
    /// whose rule or default denied (from the layers' counters); every
    /// other reason, and any part of those the layers do not account for
    /// (a re-check of a flow), with no layer.
    pub fn drops_by_layer(&self) -> Vec<(Option<String>, String, u64)> {
        let mut out = Vec::new();
        // The layers count these two by layer (`LayerDirStats::denied`,
        // `default_denied`); the reasons' names come from the engine's.
        let denied = dataplane::DropReason::Denied.name();
        let default_denied = dataplane::DropReason::DefaultDenied.name();
        for d in &self.drops {
            let by_rule = if d.reason == denied {
                true
            } else if d.reason == default_denied {
                false
            } else {
                out.push((None, d.reason.clone(), d.count));
                continue;
            };
            let mut by_layer: Vec<(String, u64)> = Vec::new();
            for l in &self.layers {
                let n = if by_rule {
                    l.stats.denied
                } else {
                    l.stats.default_denied
                };
                if n == 0 {
                    continue;
                }
                match by_layer.iter_mut().find(|(name, _)| *name == l.layer) {
                    Some((_, c)) => *c += n,
                    None => by_layer.push((l.layer.clone(), n)),
                }
            }
            let mut left = d.count;
            for (layer, n) in by_layer {
                let n = n.min(left);
                left -= n;
                out.push((Some(layer), d.reason.clone(), n));
            }
            if left > 0 {
                out.push((None, d.reason.clone(), left));
            }
        }
        out
    }
}

impl DropCount {
    /// The non-zero counts of an engine or switch tally, in its order.
    pub fn list(counts: &[(&'static str, u64)]) -> Vec<DropCount> {
        counts
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|&(r, n)| DropCount {
                reason: r.to_string(),
                count: n,
            })
            .collect()
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct LayerStatsDoc {
    pub layer: String,
    pub dir: Dir,
    pub stats: LayerDirStats,
}

/// A port's own counters (`stats` of a port's statistics): per
/// direction (`in`, `out`), and what happened to its flows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PortCounters {
    #[serde(rename = "in")]
    pub inbound: DirStats,
    #[serde(rename = "out")]
    pub outbound: DirStats,
    pub flows_created: u64,
    pub flows_expired: u64,
    /// Half-open flows evicted to make room for a new flow.
    pub flows_evicted: u64,
    /// Flows re-checked after a rule change.
    pub revalidations: u64,
    /// ICMP errors passed as part of the flow they are about.
    pub related: u64,
    /// Nanoseconds spent on packets that missed the flow table (layer
    /// walks, flow set-up): a guest that spends its share of the worker
    /// on them while other ports have traffic waits (the worker's
    /// `slow_path_deferred`).
    #[serde(default)]
    pub slow_path_ns: u64,
}

impl PortCounters {
    /// The engine's counters of a port. The drops are reported apart
    /// ([`PortStatsDoc::drops`]). Destructured whole, so a counter added
    /// to the engine fails the build until it is reported here.
    pub fn from_engine(st: &PortStats) -> PortCounters {
        let PortStats {
            dir: _,
            drops: _,
            policy_drops: _,
            flows_created,
            flows_expired,
            flows_evicted,
            revalidations,
            related,
            slow_path_ns,
        } = st;
        PortCounters {
            inbound: *st.dir(Direction::In),
            outbound: *st.dir(Direction::Out),
            flows_created: *flows_created,
            flows_expired: *flows_expired,
            flows_evicted: *flows_evicted,
            revalidations: *revalidations,
            related: *related,
            slow_path_ns: *slow_path_ns,
        }
    }

    /// The per-port (not per-direction) counters by their serialized
    /// names: what metrics export. Destructured whole, like the engine's.
    pub fn flow_counters(&self) -> [(&'static str, u64); 6] {
        let PortCounters {
            inbound: _,
            outbound: _,
            flows_created,
            flows_expired,
            flows_evicted,
            revalidations,
            related,
            slow_path_ns,
        } = *self;
        [
            ("flows_created", flows_created),
            ("flows_expired", flows_expired),
            ("flows_evicted", flows_evicted),
            ("revalidations", revalidations),
            ("related", related),
            ("slow_path_ns", slow_path_ns),
        ]
    }

    /// The counters of one direction.
    pub fn dir(&self, d: Dir) -> &DirStats {
        match d {
            Dir::In => &self.inbound,
            Dir::Out => &self.outbound,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct WorkerStatsDoc {
    pub worker: usize,
    pub ports: usize,
    /// Since the worker started: the share of its time spent in rounds
    /// that moved frames (a ratio over a while is the change of
    /// `busy_ns` over the change of `busy_ns + idle_ns`).
    pub busy_ratio: f64,
    /// Nanoseconds spent in rounds that moved at least one frame.
    #[serde(default)]
    pub busy_ns: u64,
    /// Nanoseconds the worker was alive and not busy (polling empty
    /// devices, or asleep).
    #[serde(default)]
    pub idle_ns: u64,
    pub rounds: u64,
    pub sleeps: u64,
    /// The switch's frame counters (its drops are `drops`).
    pub switch: SwitchStats,
    /// Frames this worker's switch dropped before any port saw them
    /// (the outer checks and the demultiplexing), by reason, non-zero
    /// only: layer `switch` in the drop table and in metrics.
    #[serde(default)]
    pub drops: Vec<DropCount>,
    /// This worker's devices' own drop counters (every counter, zeros
    /// included): what a device lost that the switch never saw.
    #[serde(default)]
    pub devices: Vec<DeviceDrops>,
    /// This worker's devices' other counters (every counter, zeros
    /// included; devices without any left out): the AF_PACKET uplink's
    /// UDP GSO sends and the UDP aggregates it split.
    #[serde(default)]
    pub device_counters: Vec<DeviceCounters>,
}

/// One device's own drop counters.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct DeviceDrops {
    /// `uplink`, or the name of the port whose guest the device is.
    pub device: String,
    pub drops: Vec<DropCount>,
}

impl DeviceDrops {
    pub fn from_counts(device: &str, counts: &[(&'static str, u64)]) -> DeviceDrops {
        DeviceDrops {
            device: device.to_string(),
            drops: counts
                .iter()
                .map(|&(r, n)| DropCount {
                    reason: r.to_string(),
                    count: n,
                })
                .collect(),
        }
    }
}

/// One device's counters other than drops.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct DeviceCounters {
    /// `uplink`, or the name of the port whose guest the device is.
    pub device: String,
    pub counters: Vec<DeviceCount>,
}

/// One counter of a device, by its stable name.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct DeviceCount {
    pub name: String,
    pub count: u64,
}

impl DeviceCounters {
    pub fn from_counts(device: &str, counts: &[(&'static str, u64)]) -> DeviceCounters {
        DeviceCounters {
            device: device.to_string(),
            counters: counts
                .iter()
                .map(|&(name, n)| DeviceCount {
                    name: name.to_string(),
                    count: n,
                })
                .collect(),
        }
    }
}

/// A port name in a path.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
pub struct PortPath {
    pub name: String,
}

#[derive(Clone, Debug, Deserialize, JsonSchema)]
pub struct LayerPath {
    pub name: String,
    pub layer: String,
}

#[derive(Clone, Debug, Deserialize, JsonSchema)]
pub struct RulePath {
    pub name: String,
    pub id: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The API's TCP state reads, and is written, as the engine names
    /// it, for every state the engine has.
    #[test]
    fn tcp_states_keep_the_engines_names() {
        use dataplane::tcp::SideBit;
        for st in [
            TcpState::Unverified,
            TcpState::SynSent,
            TcpState::SynReceived,
            TcpState::Established,
            TcpState::FinWait {
                first: SideBit::Originator,
            },
            TcpState::LastAck {
                second: SideBit::Responder,
            },
            TcpState::TimeWait,
            TcpState::Closed,
        ] {
            let doc = TcpStateDoc::from(st);
            assert_eq!(doc.name(), st.name(), "{st:?}");
            let wire = serde_json::to_value(doc).unwrap();
            assert_eq!(wire, serde_json::json!(st.name()), "{st:?}");
            assert_eq!(serde_json::from_value::<TcpStateDoc>(wire).unwrap(), doc);
        }
    }

    #[test]
    fn every_guest_kind_refuses_unknown_fields() {
        for body in [
            r#"{"kind":"none","socket":"/x"}"#,
            r#"{"kind":"tap","name":"t","colour":"blue"}"#,
            r#"{"kind":"vhost_user","socket":"/x","name":"t"}"#,
        ] {
            let e = serde_json::from_str::<GuestSpec>(body)
                .unwrap_err()
                .to_string();
            assert!(e.contains("unknown field"), "{body}: {e}");
        }
        let g: GuestSpec = serde_json::from_str(r#"{"kind":"none"}"#).unwrap();
        assert_eq!(g, GuestSpec::None);
        assert_eq!(serde_json::to_string(&g).unwrap(), r#"{"kind":"none"}"#);
    }
}

// ---- a port's tables: the wire form of the engine's dumps ----
//
// Each is built from the engine's dump by destructuring it whole, so a
// field added to or renamed in the engine fails the build here rather
// than vanishing from the API.

/// A flow's 5-tuple and VNI (0: none).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct FlowKeyDoc {
    /// The IP protocol number (6 TCP, 17 UDP, 1 ICMP, 58 ICMPv6).
    pub proto: u8,
    pub src: IpAddr,
    pub src_port: u16,
    pub dst: IpAddr,
    pub dst_port: u16,
    pub vni: u32,
}

impl From<&FlowKey> for FlowKeyDoc {
    fn from(k: &FlowKey) -> Self {
        FlowKeyDoc {
            proto: k.proto,
            src: k.src_ip(),
            src_port: k.src_port,
            dst: k.dst_ip(),
            dst_port: k.dst_port,
            vni: k.vni,
        }
    }
}

/// `GET /ports/{name}/layers/{layer}`: one layer, whole.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct LayerDoc {
    pub name: String,
    pub default_in: DefaultAction,
    pub default_out: DefaultAction,
    pub rules_in: Vec<RuleDoc>,
    pub rules_out: Vec<RuleDoc>,
    pub lft_in: Vec<LftEntryDoc>,
    pub lft_out: Vec<LftEntryDoc>,
    pub stats_in: LayerDirStats,
    pub stats_out: LayerDirStats,
}

/// `GET /ports/{name}/layers`: one layer's entry, its rules and flows
/// counted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct LayerSummary {
    pub name: String,
    pub default_in: DefaultAction,
    pub default_out: DefaultAction,
    /// How many inbound rules.
    pub rules_in: usize,
    pub rules_out: usize,
    /// How many inbound flows the layer's flow table holds.
    pub lft_in: usize,
    pub lft_out: usize,
    pub stats_in: LayerDirStats,
    pub stats_out: LayerDirStats,
}

/// One rule of a layer, with its hit count.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RuleDoc {
    pub id: u64,
    pub priority: u16,
    /// What the rule matches, one predicate each (`ip.dst=10.0.0.0/24`).
    pub predicates: Vec<String>,
    pub action: String,
    pub hits: u64,
}

/// One entry of a layer's flow table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct LftEntryDoc {
    pub key: FlowKeyDoc,
    pub flow: u32,
    pub state: String,
}

impl From<&LayerDump> for LayerDoc {
    fn from(d: &LayerDump) -> Self {
        let LayerDump {
            name,
            default_in,
            default_out,
            rules_in,
            rules_out,
            lft_in,
            lft_out,
            stats_in,
            stats_out,
        } = d;
        let rules = |rs: &[RuleDump]| {
            rs.iter()
                .map(|r| {
                    let RuleDump {
                        id,
                        priority,
                        predicates,
                        action,
                        hits,
                    } = r;
                    RuleDoc {
                        id: *id,
                        priority: *priority,
                        predicates: predicates.clone(),
                        action: action.clone(),
                        hits: *hits,
                    }
                })
                .collect()
        };
        let lft = |es: &[LftDump]| {
            es.iter()
                .map(|e| {
                    let LftDump { key, flow, state } = e;
                    LftEntryDoc {
                        key: key.into(),
                        flow: *flow,
                        state: state.clone(),
                    }
                })
                .collect()
        };
        LayerDoc {
            name: name.clone(),
            default_in: *default_in,
            default_out: *default_out,
            rules_in: rules(rules_in),
            rules_out: rules(rules_out),
            lft_in: lft(lft_in),
            lft_out: lft(lft_out),
            stats_in: *stats_in,
            stats_out: *stats_out,
        }
    }
}

impl From<&LayerDoc> for LayerSummary {
    fn from(d: &LayerDoc) -> Self {
        LayerSummary {
            name: d.name.clone(),
            default_in: d.default_in,
            default_out: d.default_out,
            rules_in: d.rules_in.len(),
            rules_out: d.rules_out.len(),
            lft_in: d.lft_in.len(),
            lft_out: d.lft_out.len(),
            stats_in: d.stats_in,
            stats_out: d.stats_out,
        }
    }
}

/// `GET /ports/{name}/uft`: the unified flow table, both directions.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct UftDoc {
    /// The port's rule epoch now.
    pub epoch: u64,
    pub inbound: Vec<UftEntryDoc>,
    pub outbound: Vec<UftEntryDoc>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct UftEntryDoc {
    pub key: FlowKeyDoc,
    pub flow: u32,
    /// The flow's packets and bytes in this entry's direction, since the
    /// flow was made.
    #[serde(default)]
    pub packets: u64,
    #[serde(default)]
    pub bytes: u64,
    /// The epoch the entry was made under.
    pub epoch: u64,
    /// Made under older rules or tables: re-checked at its next packet.
    pub stale: bool,
    /// The compiled transform, in one line.
    pub transform: String,
}

impl From<&UftDump> for UftDoc {
    fn from(d: &UftDump) -> Self {
        let UftDump {
            epoch,
            inbound,
            outbound,
        } = d;
        let entries = |es: &[UftEntryDump]| {
            es.iter()
                .map(|e| {
                    let UftEntryDump {
                        key,
                        flow,
                        packets,
                        bytes,
                        epoch,
                        stale,
                        transform,
                    } = e;
                    UftEntryDoc {
                        key: key.into(),
                        flow: *flow,
                        packets: *packets,
                        bytes: *bytes,
                        epoch: *epoch,
                        stale: *stale,
                        transform: transform.clone(),
                    }
                })
                .collect()
        };
        UftDoc {
            epoch: *epoch,
            inbound: entries(inbound),
            outbound: entries(outbound),
        }
    }
}

/// `GET /ports/{name}/tcp-flows`: one TCP connection the port tracks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TcpFlowDoc {
    pub flow: u32,
    pub key: FlowKeyDoc,
    /// Which side opened it: `out` the guest, `in` the network.
    pub origin: Dir,
    pub state: TcpStateDoc,
    pub age_ms: u64,
    pub idle_ms: u64,
    pub packets_out: u64,
    pub packets_in: u64,
}

impl From<&TcpFlowDump> for TcpFlowDoc {
    fn from(d: &TcpFlowDump) -> Self {
        let TcpFlowDump {
            flow,
            key,
            origin,
            state,
            age_ms,
            idle_ms,
            packets_out,
            packets_in,
        } = d;
        TcpFlowDoc {
            flow: *flow,
            key: key.into(),
            origin: Dir::from(*origin),
            state: TcpStateDoc::from(*state),
            age_ms: *age_ms,
            idle_ms: *idle_ms,
            packets_out: *packets_out,
            packets_in: *packets_in,
        }
    }
}

/// Where a tracked TCP connection is (the engine's [`TcpState`], by its
/// name).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum TcpStateDoc {
    /// First segment was not a SYN (the flow predates the port, or its
    /// entry was evicted); established once the other end answers.
    #[serde(rename = "UNVERIFIED")]
    Unverified,
    #[serde(rename = "SYN_SENT")]
    SynSent,
    #[serde(rename = "SYN_RCVD")]
    SynReceived,
    #[serde(rename = "ESTABLISHED")]
    Established,
    /// One end sent a FIN.
    #[serde(rename = "FIN_WAIT")]
    FinWait,
    /// Both ends sent a FIN; waiting for the ACK of the second.
    #[serde(rename = "LAST_ACK")]
    LastAck,
    #[serde(rename = "TIME_WAIT")]
    TimeWait,
    #[serde(rename = "CLOSED")]
    Closed,
}

impl From<TcpState> for TcpStateDoc {
    fn from(s: TcpState) -> Self {
        match s {
            TcpState::Unverified => TcpStateDoc::Unverified,
            TcpState::SynSent => TcpStateDoc::SynSent,
            TcpState::SynReceived => TcpStateDoc::SynReceived,
            TcpState::Established => TcpStateDoc::Established,
            TcpState::FinWait { .. } => TcpStateDoc::FinWait,
            TcpState::LastAck { .. } => TcpStateDoc::LastAck,
            TcpState::TimeWait => TcpStateDoc::TimeWait,
            TcpState::Closed => TcpStateDoc::Closed,
        }
    }
}

impl TcpStateDoc {
    /// The name on the wire (the engine's [`TcpState::name`]).
    pub fn name(self) -> &'static str {
        match self {
            TcpStateDoc::Unverified => "UNVERIFIED",
            TcpStateDoc::SynSent => "SYN_SENT",
            TcpStateDoc::SynReceived => "SYN_RCVD",
            TcpStateDoc::Established => "ESTABLISHED",
            TcpStateDoc::FinWait => "FIN_WAIT",
            TcpStateDoc::LastAck => "LAST_ACK",
            TcpStateDoc::TimeWait => "TIME_WAIT",
            TcpStateDoc::Closed => "CLOSED",
        }
    }
}

impl From<Direction> for Dir {
    fn from(d: Direction) -> Self {
        match d {
            Direction::In => Dir::In,
            Direction::Out => Dir::Out,
        }
    }
}

/// The engine's account of a trace: per layer what matched and what it
/// did, the composed transform, the verdict and the packet that leaves.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TraceDoc {
    pub steps: Vec<TraceStepDoc>,
    /// The composed transform of every layer (absent when the frame was
    /// refused before any layer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transform: Option<TransformDoc>,
    /// `forward`, `hairpin`, `drop: REASON`, or `stale state: ...`.
    pub verdict: String,
    /// The verdict as a value, for scripts.
    pub fate: TraceFateDoc,
    /// When `fate` is `drop`: the drop reason's name (as in the drop
    /// table and `sluice_drops_total`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drop_reason: Option<String>,
    /// The packet that would leave (forwarded, or the hairpin reply), as
    /// hex.
    #[serde(default)]
    pub output: Option<String>,
}

/// What a traced packet's walk ended in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TraceFateDoc {
    /// Sent on, transformed (`output` is the packet that leaves).
    Forward,
    /// Answered by the port (`output` is the reply).
    Hairpin,
    /// Dropped, for `drop_reason`.
    Drop,
    /// A layer held state made under older rules: the flow's next packet
    /// is checked again.
    Stale,
}

impl TraceDoc {
    /// The trace of a frame refused before any layer saw it.
    pub fn refused(r: DropReason) -> TraceDoc {
        TraceDoc {
            steps: Vec::new(),
            transform: None,
            verdict: format!("drop: {r}"),
            fate: TraceFateDoc::Drop,
            drop_reason: Some(r.name().to_string()),
            output: None,
        }
    }
}

/// One layer's decision in a trace.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TraceStepDoc {
    pub layer: String,
    /// `lft`, `rule N` or `default`.
    pub matched: String,
    pub action: String,
    #[serde(default)]
    pub transform: Option<TransformDoc>,
}

/// The header changes of a layer or of a whole flow; absent fields are
/// left as they are.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TransformDoc {
    /// Pop the Geneve encapsulation.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub decap: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eth_src: Option<MacAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eth_dst: Option<MacAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_src: Option<IpAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_dst: Option<IpAddr>,
    /// TCP/UDP source port; for ICMP echo, the identifier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub l4_src: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub l4_dst: Option<u16>,
    /// Push a Geneve encapsulation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encap: Option<EncapDoc>,
    /// For ICMP echo: the identifier a composed chain leaves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icmp_ident: Option<u16>,
    /// Applies only to packets from this underlay sender.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect_outer_src: Option<Ipv6Addr>,
}

/// A Geneve-over-IPv6 encapsulation (RFC 8926).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct EncapDoc {
    pub eth_src: MacAddr,
    pub eth_dst: MacAddr,
    pub ip_src: Ipv6Addr,
    pub ip_dst: Ipv6Addr,
    pub hop_limit: u8,
    /// Outer UDP source port; 0: derived from the inner flow.
    pub udp_src: u16,
    pub vni: Vni,
    /// The Geneve options, encoded, as hex.
    pub options: String,
    pub udp_csum: bool,
}

impl From<&Transform> for TransformDoc {
    fn from(t: &Transform) -> Self {
        let Transform {
            decap,
            eth_src,
            eth_dst,
            ip_src,
            ip_dst,
            l4_src,
            l4_dst,
            encap,
            deps: _,
            icmp_ident,
            expect_outer_src,
        } = t;
        TransformDoc {
            decap: *decap,
            eth_src: eth_src.map(MacAddr),
            eth_dst: eth_dst.map(MacAddr),
            ip_src: *ip_src,
            ip_dst: *ip_dst,
            l4_src: *l4_src,
            l4_dst: *l4_dst,
            encap: encap.as_ref().map(EncapDoc::from),
            icmp_ident: *icmp_ident,
            expect_outer_src: *expect_outer_src,
        }
    }
}

impl From<&Encap> for EncapDoc {
    fn from(e: &Encap) -> Self {
        let Encap {
            eth_src,
            eth_dst,
            ip_src,
            ip_dst,
            hop_limit,
            udp_src,
            vni,
            options,
            udp_csum,
        } = e;
        EncapDoc {
            eth_src: MacAddr(*eth_src),
            eth_dst: MacAddr(*eth_dst),
            ip_src: *ip_src,
            ip_dst: *ip_dst,
            hop_limit: *hop_limit,
            udp_src: *udp_src,
            vni: *vni,
            options: crate::trace::hex(options.as_bytes()),
            udp_csum: *udp_csum,
        }
    }
}

impl From<&Trace> for TraceDoc {
    fn from(t: &Trace) -> Self {
        let Trace {
            steps,
            transform,
            verdict,
            fate,
            output,
        } = t;
        let (fate, drop_reason) = match *fate {
            TraceFate::Forward => (TraceFateDoc::Forward, None),
            TraceFate::Hairpin => (TraceFateDoc::Hairpin, None),
            TraceFate::Drop(r) => (TraceFateDoc::Drop, Some(r.name().to_string())),
            TraceFate::Stale => (TraceFateDoc::Stale, None),
        };
        TraceDoc {
            steps: steps
                .iter()
                .map(|s| {
                    let TraceStep {
                        layer,
                        matched,
                        action,
                        transform,
                        after: _,
                    } = s;
                    TraceStepDoc {
                        layer: layer.clone(),
                        matched: matched.clone(),
                        action: action.clone(),
                        transform: transform.as_ref().map(TransformDoc::from),
                    }
                })
                .collect(),
            transform: Some(TransformDoc::from(transform)),
            verdict: verdict.clone(),
            fate,
            drop_reason,
            output: output.as_deref().map(crate::trace::hex),
        }
    }
}
