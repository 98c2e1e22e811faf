//! sluiced's configuration: a TOML file, overridden by flags. Every field
//! but the underlay has a default; with no file at all sluiced runs its
//! self-contained demo (see `sluiced --help`).
//!
//! ```toml
//! listen = "127.0.0.1:7480"        # the API
//! state_dir = "/var/lib/sluice"    # state.json and the token live here
//! # token_file = "/var/lib/sluice/token"
//! workers = 1                      # one per core given to sluice
//! log_level = "info"
//!
//! [underlay]
//! interface = "eth1"
//! address = "fd00:99::a"           # this host's underlay IPv6 address
//! next_hop_mac = "02:00:00:00:00:20"
//! # mac = "..."                    # default: the interface's
//! # mtu = 1500                     # default: the interface's
//! # accept_zero_udp6_checksum = false  # take tunnels without an outer
//! #                                # UDP checksum (RFC 6936); default: refuse
//!
//! # Two uplinks (one per top-of-rack switch): [underlay] keeps the
//! # address (and accept_zero_udp6_checksum) and each uplink its own
//! # interface, next hop, MAC and MTU; both of the one [uplink] kind
//! # (af_packet or none). Tunnels are spread over both by their outer
//! # flow; when one's link goes down its flows move to the other
//! # (README: Two underlay uplinks).
//! # [[uplinks]]
//! # interface = "eth1"
//! # next_hop_mac = "02:00:00:00:00:20"
//! # mac = "..."                    # default: the interface's
//! # mtu = 1500                     # default: the interface's
//! # [[uplinks]]
//! # interface = "eth2"
//! # next_hop_mac = "02:00:00:00:00:21"
//!
//! [uplink]
//! kind = "af_packet"               # af_packet | pcap | dpdk | none
//! # af_packet: rcvbuf = 4194304, sndbuf = 4194304  # socket buffers, bytes
//! #            udp_gso = false     # true: super-frames as one UDP GSO send (every peer must split aggregates)
//! # pcap: input = "in.pcap", output = "out.pcap"
//! # dpdk: eal_args = ["--no-huge", "--no-pci", "--vdev", "net_null0"]
//! #       port = "net_null0", mbufs = 8191, mbuf_data_room = 2176
//! #       zero_copy = true        # frames stay in their mbufs (false: copied)
//!
//! [api]
//! require_token_for_reads = false  # true: reads need a token from this host too
//! # read_token_file = "/var/lib/sluice/read-token"  # a token good for reads only
//! max_connections = 256            # open API connections; the longest idle goes first
//! header_timeout_secs = 10         # a request's head must arrive within this (also the idle timeout)
//! body_timeout_secs = 30           # a request's body must arrive within this
//! max_open_reads_per_client = 4    # reads without a token in progress per client address
//!
//! [limits]
//! v2p = 1000000
//! v2b = 65536
//! ports = 1024
//!
//! # [flow_logs]                    # per-flow records (README: Flow logs)
//! # ipfix_collector = "127.0.0.1:4739"       # IPFIX over UDP (RFC 7011)
//! # json_file = "/var/log/sluice/flows.jsonl" # JSON lines, appended
//! # denied_per_sec = 100           # denied first packets logged per port per second
//! # active_timeout_secs = 60       # a live flow's periodic record
//! # queue_records = 4096           # records per port between two drains (200 ms)
//!
//! # [fleet]                        # programmed from etcd (README: Fleet mode)
//! # endpoints = ["http://10.0.0.1:2379", "http://10.0.0.2:2379"]
//! # host = "rack1-h07"             # this host's name in /sluice/v1/ keys
//! ```

use serde::Deserialize;
use std::net::{Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use vnic::config::MacAddr;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:7480";
pub const DEFAULT_STATE_DIR: &str = "/var/lib/sluice";

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    #[serde(default = "one")]
    pub workers: usize,
    #[serde(default)]
    pub log_level: LogLevel,
    pub underlay: Underlay,
    #[serde(default)]
    pub uplink: Uplink,
    /// `[[uplinks]]`: the host's uplinks when it has two (in place of
    /// `[underlay]`'s interface, next hop, MAC and MTU). Empty: the one
    /// uplink `[underlay]` describes. See [`Config::uplink_list`].
    #[serde(default)]
    pub uplinks: Vec<UplinkEntry>,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub api: ApiSection,
    /// Fleet mode: the desired state comes from etcd; the API refuses
    /// changes to it (409).
    #[serde(default)]
    pub fleet: Option<FleetSection>,
    /// Flow logs: off without the section.
    #[serde(default)]
    pub flow_logs: Option<FlowLogsSection>,
}

/// `[flow_logs]`: where flow records go and how many a port may make.
/// With neither a collector nor a file the section is refused (it would
/// log into nothing).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FlowLogsSection {
    /// IPFIX (RFC 7011) over UDP to this collector.
    pub ipfix_collector: Option<SocketAddr>,
    /// JSON lines appended to this file.
    pub json_file: Option<PathBuf>,
    pub denied_per_sec: u32,
    pub active_timeout_secs: u64,
    pub queue_records: usize,
}

impl Default for FlowLogsSection {
    fn default() -> Self {
        FlowLogsSection {
            ipfix_collector: None,
            json_file: None,
            // A port under a flood logs 100 denials a second: enough to
            // see who, not enough to fill a disk or a collector.
            denied_per_sec: 100,
            // RFC 7011 collectors' usual active timeout.
            active_timeout_secs: 60,
            // 200 ms of 20 000 flows a second ending, per port.
            queue_records: 4096,
        }
    }
}

impl FlowLogsSection {
    pub fn check(&self) -> Result<(), ConfigError> {
        if self.ipfix_collector.is_none() && self.json_file.is_none() {
            return Err(ConfigError::Invalid(
                "flow_logs: needs ipfix_collector or json_file (or both)".to_string(),
            ));
        }
        if let Some(c) = self.ipfix_collector {
            if c.ip().is_unspecified() || c.port() == 0 {
                return Err(ConfigError::Invalid(format!(
                    "flow_logs.ipfix_collector: {c} is not an address to send to"
                )));
            }
        }
        for (what, n, lo, hi) in [
            (
                "flow_logs.denied_per_sec",
                self.denied_per_sec as u64,
                0,
                1_000_000,
            ),
            (
                "flow_logs.active_timeout_secs",
                self.active_timeout_secs,
                1,
                86_400,
            ),
            (
                "flow_logs.queue_records",
                self.queue_records as u64,
                16,
                1 << 20,
            ),
        ] {
            if !(lo..=hi).contains(&n) {
                return Err(ConfigError::Invalid(format!(
                    "{what}: {n} is out of range {lo}..={hi}"
                )));
            }
        }
        Ok(())
    }

    /// What each port's engine is given.
    pub fn engine(&self) -> dataplane::FlowLogConfig {
        dataplane::FlowLogConfig {
            queue_records: self.queue_records,
            denied_per_sec: self.denied_per_sec,
            active_timeout: self.active_timeout_secs * dataplane::clock::NANOS_PER_SEC,
        }
    }
}

/// `[fleet]`: where the fleet's desired state is, and who this host is.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FleetSection {
    /// etcd's client URLs (`http://HOST:PORT`), one or more members.
    pub endpoints: Vec<String>,
    /// This host's name in the fleet's keys.
    pub host: String,
}

/// `[api]`: who may read, and what a client may hold.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiSection {
    pub require_token_for_reads: bool,
    pub read_token_file: Option<PathBuf>,
    pub max_connections: usize,
    pub header_timeout_secs: u64,
    pub body_timeout_secs: u64,
    pub max_open_reads_per_client: usize,
}

impl Default for ApiSection {
    fn default() -> Self {
        ApiSection {
            require_token_for_reads: false,
            read_token_file: None,
            // A connection that has made a request costs three
            // descriptors (the client's, its relay to dropshot, and
            // dropshot's side): 256 of them fit under the usual limit of
            // 1024 with room for the state, the workers and the guests'
            // devices.
            max_connections: 256,
            // Long enough for a person typing at a slow link, short
            // enough that idle sockets do not pile up.
            header_timeout_secs: 10,
            // A 32 MB body at ~1 MB/s.
            body_timeout_secs: 30,
            max_open_reads_per_client: crate::front::OPEN_READS_PER_CLIENT,
        }
    }
}

/// One uplink: `[underlay]`'s own (one uplink), or an `[[uplinks]]` entry.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UplinkEntry {
    /// The interface (its name is the uplink's name in the API).
    pub interface: String,
    /// Its next hop's MAC (the outer Ethernet destination of what leaves on it).
    pub next_hop_mac: MacAddr,
    /// The outer Ethernet source; default: the interface's MAC.
    #[serde(default)]
    pub mac: Option<MacAddr>,
    /// Default: the interface's.
    #[serde(default)]
    pub mtu: Option<u16>,
}

/// The most uplinks a host has.
pub const MAX_UPLINKS: usize = vmm_net::uplinks::MAX_UPLINKS;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Underlay {
    /// The one uplink's interface; empty (not given) with `[[uplinks]]`.
    #[serde(default)]
    pub interface: String,
    pub address: Ipv6Addr,
    /// The underlay next hop's MAC (the outer Ethernet destination); not
    /// given with `[[uplinks]]`.
    #[serde(default)]
    pub next_hop_mac: Option<MacAddr>,
    #[serde(default)]
    pub mac: Option<MacAddr>,
    #[serde(default)]
    pub mtu: Option<u16>,
    /// Take tunnels whose outer UDP checksum over IPv6 is zero: only for
    /// an underlay whose other endpoints send them (RFC 6936 §5). Off,
    /// they are dropped as `zero_udp6_checksum`. sluice's own tunnels
    /// always carry a checksum.
    #[serde(default)]
    pub accept_zero_udp6_checksum: bool,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Uplink {
    /// AF_PACKET on the underlay interface (`recvmmsg` batches; see
    /// `vmm_net::afpacket` for the TPACKET_V3 ring): works everywhere,
    /// and the default.
    AfPacket {
        /// The socket's receive buffer in bytes: what holds a burst while
        /// the worker is busy (what does not fit is lost, counted as the
        /// device drop `socket_drops`). Set past `net.core.rmem_max` when
        /// sluiced has CAP_NET_ADMIN. Default 4 MiB.
        #[serde(default)]
        rcvbuf: Option<usize>,
        /// The send buffer likewise. Default 4 MiB.
        #[serde(default)]
        sndbuf: Option<usize>,
        /// Send an encapsulated TCP super-frame as one UDP GSO send (the
        /// kernel cuts it into the Geneve datagrams) rather than a
        /// datagram per segment. Default false (a peer reading a veth
        /// without the virtio-net header, e.g. OVS, loses the aggregates). A kernel that refuses it (EINVAL)
        /// sends the socket back to cutting either way.
        #[serde(default)]
        udp_gso: Option<bool>,
    },
    /// Frames from and to capture files (debugging, offline runs).
    Pcap {
        input: Option<PathBuf>,
        output: Option<PathBuf>,
    },
    /// DPDK (a build with the `dpdk` feature), EAL arguments passed through.
    Dpdk {
        eal_args: Vec<String>,
        port: Option<String>,
        /// Mbufs in each DPDK port's pool (the uplink's and DPDK guests'):
        /// a `net_pcap` device replaying a capture (`infinite_rx=1`) holds
        /// the whole capture in its pool. Default 8191.
        #[serde(default)]
        mbufs: Option<u32>,
        /// Bytes per mbuf, DPDK's 128-byte headroom included. Default 2176.
        #[serde(default)]
        mbuf_data_room: Option<u16>,
        /// Frames stay in their mbufs through the engine (see
        /// `vmm_net::dpdk`'s zero copy). Default true; false copies every
        /// frame both ways, for comparison.
        #[serde(default)]
        zero_copy: Option<bool>,
    },
    /// No uplink: only same-host traffic moves.
    None,
}

impl Default for Uplink {
    fn default() -> Self {
        Uplink::AfPacket {
            rcvbuf: None,
            sndbuf: None,
            udp_gso: None,
        }
    }
}

/// Socket buffers above this are surely a typo (a size in bits, an extra
/// zero): 1 GiB.
const MAX_SOCKET_BUFFER: usize = 1 << 30;

#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    pub v2p: usize,
    pub v2b: usize,
    pub ports: usize,
}

impl Default for Limits {
    fn default() -> Self {
        let d = crate::server::HostLimits::default();
        Limits {
            v2p: d.v2p,
            v2b: d.v2b,
            ports: d.ports,
        }
    }
}

fn default_listen() -> SocketAddr {
    DEFAULT_LISTEN
        .parse()
        .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 7480)))
}

fn default_state_dir() -> PathBuf {
    PathBuf::from(DEFAULT_STATE_DIR)
}

/// The log's threshold. An unknown value is refused with the accepted
/// ones (a typo must not silently become `info`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Trace,
    Debug,
    #[default]
    Info,
    Warn,
    Error,
    Critical,
}

impl LogLevel {
    pub fn dropshot(self) -> dropshot::ConfigLoggingLevel {
        use dropshot::ConfigLoggingLevel as L;
        match self {
            LogLevel::Trace => L::Trace,
            LogLevel::Debug => L::Debug,
            LogLevel::Info => L::Info,
            LogLevel::Warn => L::Warn,
            LogLevel::Error => L::Error,
            LogLevel::Critical => L::Critical,
        }
    }
}

fn one() -> usize {
    1
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {path}: {err}")]
    Read { path: PathBuf, err: std::io::Error },
    #[error("{path}: {msg}")]
    Parse { path: PathBuf, msg: String },
    #[error("{0}")]
    Invalid(String),
}

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|err| ConfigError::Read {
            path: path.to_path_buf(),
            err,
        })?;
        let c: Config = toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            msg: e.to_string(),
        })?;
        c.check()?;
        Ok(c)
    }

    pub fn check(&self) -> Result<(), ConfigError> {
        if self.workers == 0 || self.workers > 256 {
            return Err(ConfigError::Invalid(format!(
                "workers: {} is out of range 1..=256",
                self.workers
            )));
        }
        if self.underlay.address.is_unspecified() || self.underlay.address.is_multicast() {
            return Err(ConfigError::Invalid(format!(
                "underlay.address: {} is not a unicast address",
                self.underlay.address
            )));
        }
        self.check_uplinks()?;
        for (what, n, max) in [
            ("limits.v2p", self.limits.v2p, 16 << 20),
            ("limits.v2b", self.limits.v2b, 1 << 20),
            ("limits.ports", self.limits.ports, 65_536),
        ] {
            if !(1..=max).contains(&n) {
                return Err(ConfigError::Invalid(format!(
                    "{what}: {n} is out of range 1..={max}"
                )));
            }
        }
        if let Uplink::Dpdk {
            mbufs,
            mbuf_data_room,
            ..
        } = &self.uplink
        {
            // A pool smaller than a few bursts stalls the ports at once;
            // a data room below headroom + a 1518-byte frame cannot hold one.
            if let Some(n) = mbufs {
                if !(1023..=16 << 20).contains(n) {
                    return Err(ConfigError::Invalid(format!(
                        "uplink.mbufs: {n} is out of range 1023..={}",
                        16 << 20
                    )));
                }
            }
            if let Some(n) = mbuf_data_room {
                if *n < 128 + 1518 {
                    return Err(ConfigError::Invalid(format!(
                        "uplink.mbuf_data_room: {n} is below 1646 (128 bytes of headroom and a 1518-byte frame)"
                    )));
                }
            }
        }
        if let Uplink::AfPacket { rcvbuf, sndbuf, .. } = &self.uplink {
            for (name, v) in [("rcvbuf", rcvbuf), ("sndbuf", sndbuf)] {
                if let Some(v) = *v {
                    if !(4096..=MAX_SOCKET_BUFFER).contains(&v) {
                        return Err(ConfigError::Invalid(format!(
                            "uplink.{name}: {v} is out of range 4096..={MAX_SOCKET_BUFFER} (bytes)"
                        )));
                    }
                }
            }
        }
        if let Some(f) = &self.fleet {
            if f.endpoints.is_empty() {
                return Err(ConfigError::Invalid(
                    "fleet.endpoints: at least one etcd URL is needed (e.g. \"http://10.0.0.1:2379\")".into(),
                ));
            }
            for e in &f.endpoints {
                let ok = e
                    .strip_prefix("http://")
                    .or_else(|| e.strip_prefix("https://"))
                    .is_some_and(|rest| {
                        let hostport = rest.trim_end_matches('/');
                        !hostport.is_empty()
                            && !hostport.contains('/')
                            && hostport.rsplit_once(':').is_some_and(|(h, p)| {
                                !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0)
                            })
                    });
                if !ok {
                    return Err(ConfigError::Invalid(format!(
                        "fleet.endpoints: '{e}' is not an etcd client URL (http://HOST:PORT)"
                    )));
                }
            }
            if let Some(p) = crate::fleet::keys::host_name_problem(&f.host) {
                return Err(ConfigError::Invalid(format!("fleet.host: {p}")));
            }
        }
        if let Some(f) = &self.flow_logs {
            f.check()?;
        }
        let a = &self.api;
        if !(1..=100_000).contains(&a.max_connections) {
            return Err(ConfigError::Invalid(format!(
                "api.max_connections: {} is out of range 1..=100000",
                a.max_connections
            )));
        }
        if !(1..=10_000).contains(&a.max_open_reads_per_client) {
            return Err(ConfigError::Invalid(format!(
                "api.max_open_reads_per_client: {} is out of range 1..=10000",
                a.max_open_reads_per_client
            )));
        }
        for (k, v) in [
            ("header_timeout_secs", a.header_timeout_secs),
            ("body_timeout_secs", a.body_timeout_secs),
        ] {
            if !(1..=3600).contains(&v) {
                return Err(ConfigError::Invalid(format!(
                    "api.{k}: {v} is out of range 1..=3600"
                )));
            }
        }
        Ok(())
    }

    /// The host's uplinks, in order (the first's MACs are those the
    /// overlay writes): `[[uplinks]]`, or the one `[underlay]` describes.
    /// Call after [`Config::check`].
    pub fn uplink_list(&self) -> Vec<UplinkEntry> {
        if !self.uplinks.is_empty() {
            return self.uplinks.clone();
        }
        let u = &self.underlay;
        vec![UplinkEntry {
            interface: u.interface.clone(),
            next_hop_mac: u.next_hop_mac.unwrap_or(MacAddr([0; 6])),
            mac: u.mac,
            mtu: u.mtu,
        }]
    }

    /// The two forms of the uplinks, never both; at most two uplinks, of
    /// one kind that can have two; names and MTUs valid.
    fn check_uplinks(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        let u = &self.underlay;
        let entries: Vec<(String, &UplinkEntry)>;
        let one;
        if self.uplinks.is_empty() {
            let Some(hop) = u.next_hop_mac else {
                return bad(
                    "underlay.next_hop_mac: missing (the underlay next hop's MAC, \
                     or give each uplink's in [[uplinks]])"
                        .into(),
                );
            };
            one = UplinkEntry {
                interface: u.interface.clone(),
                next_hop_mac: hop,
                mac: u.mac,
                mtu: u.mtu,
            };
            entries = vec![("underlay".into(), &one)];
        } else {
            let given: Vec<&str> = [
                (!u.interface.is_empty()).then_some("interface"),
                u.next_hop_mac.map(|_| "next_hop_mac"),
                u.mac.map(|_| "mac"),
                u.mtu.map(|_| "mtu"),
            ]
            .into_iter()
            .flatten()
            .collect();
            if !given.is_empty() {
                return bad(format!(
                    "underlay.{}: with [[uplinks]] each uplink has its own;                      give it there, not in [underlay] (one form or the other)",
                    given.join(", underlay.")
                ));
            }
            if self.uplinks.len() > MAX_UPLINKS {
                return bad(format!(
                    "uplinks: {} entries; a host has at most {MAX_UPLINKS}",
                    self.uplinks.len()
                ));
            }
            if !matches!(self.uplink, Uplink::AfPacket { .. } | Uplink::None) {
                return bad(
                    "uplinks: [[uplinks]] needs uplink.kind \"af_packet\" or \"none\" \
                     (pcap and dpdk have one uplink: use [underlay])"
                        .into(),
                );
            }
            entries = (self.uplinks.iter().enumerate())
                .map(|(i, e)| (format!("uplinks[{i}]"), e))
                .collect();
        }
        for (k, (at, e)) in entries.iter().enumerate() {
            let ifname = &e.interface;
            // The kernel's rules for an interface name, as for a TAP's.
            if let Some(problem) = crate::devices::tap_name_problem(ifname) {
                return bad(format!("{at}.interface: '{ifname}' {problem}"));
            }
            if entries[..k].iter().any(|(_, o)| &o.interface == ifname) {
                return bad(format!("{at}.interface: '{ifname}' is given twice"));
            }
            if let Some(m) = e.mtu {
                if !(1280..=9216).contains(&m) {
                    return bad(format!(
                        "{at}.mtu: {m} is out of range 1280..=9216 (IPv6 needs 1280)"
                    ));
                }
            }
        }
        Ok(())
    }

    pub fn token_path(&self) -> PathBuf {
        self.token_file
            .clone()
            .unwrap_or_else(|| self.state_dir.join("token"))
    }
}

/// An interface's MAC and MTU, from sysfs.
pub fn interface_facts(ifname: &str) -> Result<(MacAddr, u16), ConfigError> {
    let base = Path::new("/sys/class/net").join(ifname);
    let read = |f: &str| {
        std::fs::read_to_string(base.join(f))
            .map(|s| s.trim().to_string())
            .map_err(|e| ConfigError::Invalid(format!("underlay.interface '{ifname}': {e}")))
    };
    let mac: MacAddr = read("address")?
        .parse()
        .map_err(|e| ConfigError::Invalid(format!("underlay.interface '{ifname}': {e}")))?;
    let mtu: u16 = read("mtu")?.parse().map_err(|_| {
        ConfigError::Invalid(format!("underlay.interface '{ifname}': unreadable MTU"))
    })?;
    Ok((mac, mtu))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn underlay_checks_and_socket_buffers_are_read_and_checked() {
        let parse = |extra: &str| {
            toml::from_str::<Config>(&format!(
                "[underlay]\ninterface = \"eth1\"\naddress = \"fd00:99::a\"\n\
                 next_hop_mac = \"02:00:00:00:00:20\"\naccept_zero_udp6_checksum = true\n{extra}"
            ))
        };
        let c =
            parse("[uplink]\nkind = \"af_packet\"\nrcvbuf = 8388608\nudp_gso = false\n").unwrap();
        assert!(c.underlay.accept_zero_udp6_checksum);
        assert!(matches!(
            c.uplink,
            Uplink::AfPacket {
                udp_gso: Some(false),
                rcvbuf: Some(8388608),
                sndbuf: None
            }
        ));
        c.check().unwrap();
        let e = parse("[uplink]\nkind = \"af_packet\"\nsndbuf = 12\n")
            .unwrap()
            .check()
            .unwrap_err()
            .to_string();
        assert!(e.contains("uplink.sndbuf: 12 is out of range"), "{e}");
        let e = parse("[uplink]\nkind = \"af_packet\"\nrcvbuff = 1\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("rcvbuff"), "{e}");
    }

    #[test]
    fn a_minimal_file_gets_defaults_and_bad_fields_are_named() {
        let c: Config = toml::from_str(
            r#"
            [underlay]
            interface = "eth1"
            address = "fd00:99::a"
            next_hop_mac = "02:00:00:00:00:20"
            "#,
        )
        .unwrap();
        assert_eq!(c.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(c.workers, 1);
        assert!(matches!(
            c.uplink,
            Uplink::AfPacket {
                rcvbuf: None,
                sndbuf: None,
                udp_gso: None,
            }
        ));
        assert!(!c.underlay.accept_zero_udp6_checksum);
        assert_eq!(c.token_path(), Path::new("/var/lib/sluice/token"));
        c.check().unwrap();

        let e = toml::from_str::<Config>(
            r#"
            colour = "blue"
            [underlay]
            interface = "eth1"
            address = "fd00:99::a"
            next_hop_mac = "02:00:00:00:00:20"
            "#,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("colour"), "{e}");
        let e = toml::from_str::<Config>(
            "[underlay]\ninterface = \"eth1\"\naddress = \"10.0.0.1\"\nnext_hop_mac = \"02:00:00:00:00:20\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("address"), "{e}");
        let mut c2 = c.clone();
        c2.workers = 0;
        assert!(c2.check().unwrap_err().to_string().starts_with("workers"));
    }

    const UNDERLAY: &str =
        "[underlay]\ninterface = \"eth1\"\naddress = \"fd00:99::a\"\nnext_hop_mac = \"02:00:00:00:00:20\"\n";

    #[test]
    fn two_uplinks_are_read_and_the_forms_never_mixed() {
        let two = r#"
            [underlay]
            address = "fd00:99::a"
            [[uplinks]]
            interface = "eth1"
            next_hop_mac = "02:00:00:00:00:20"
            [[uplinks]]
            interface = "eth2"
            next_hop_mac = "02:00:00:00:00:21"
            mac = "02:00:00:00:00:11"
            mtu = 9000
        "#;
        let c: Config = toml::from_str(two).unwrap();
        c.check().unwrap();
        let l = c.uplink_list();
        assert_eq!(l.len(), 2);
        assert_eq!(
            (l[0].interface.as_str(), l[0].mac, l[0].mtu),
            ("eth1", None, None)
        );
        assert_eq!(l[1].next_hop_mac.to_string(), "02:00:00:00:00:21");
        assert_eq!(
            (l[1].mac.map(|m| m.0[5]), l[1].mtu),
            (Some(0x11), Some(9000))
        );
        // The single form, unchanged.
        let one: Config = toml::from_str(UNDERLAY).unwrap();
        one.check().unwrap();
        let l = one.uplink_list();
        assert_eq!((l.len(), l[0].interface.as_str()), (1, "eth1"));
        let refused = |text: &str, want: &str| {
            let e = toml::from_str::<Config>(text)
                .map_err(|e| e.to_string())
                .and_then(|c| c.check().map_err(|e| e.to_string()))
                .unwrap_err();
            assert!(e.contains(want), "{e} should say {want}");
        };
        let both = two.replace(
            "address = \"fd00:99::a\"",
            "address = \"fd00:99::a\"\ninterface = \"eth1\"\nnext_hop_mac = \"02:00:00:00:00:20\"",
        );
        refused(
            &both,
            "underlay.interface, underlay.next_hop_mac: with [[uplinks]] each uplink has its own",
        );
        let three = format!(
            "{two}\n[[uplinks]]\ninterface = \"eth3\"\nnext_hop_mac = \"02:00:00:00:00:22\"\n"
        );
        refused(&three, "uplinks: 3 entries; a host has at most 2");
        refused(
            &two.replace("eth2", "eth1"),
            "uplinks[1].interface: 'eth1' is given twice",
        );
        refused(&two.replace("9000", "70000"), "mtu");
        refused(
            &two.replace("mtu = 9000", "mtu = 1000"),
            "uplinks[1].mtu: 1000 is out of range",
        );
        refused(
            &format!("{two}\n[uplink]\nkind = \"pcap\"\n"),
            "uplinks: [[uplinks]] needs uplink.kind \"af_packet\" or \"none\"",
        );
        refused(
            &two.replace("next_hop_mac = \"02:00:00:00:00:21\"", ""),
            "next_hop_mac",
        );
        refused(
            "[underlay]\ninterface = \"eth1\"\naddress = \"fd00:99::a\"\n",
            "underlay.next_hop_mac: missing",
        );
    }

    #[test]
    fn a_log_level_typo_is_refused_naming_the_accepted_ones() {
        let c: Config = toml::from_str(&format!("log_level = \"warn\"\n{UNDERLAY}")).unwrap();
        assert_eq!(c.log_level, LogLevel::Warn);
        let c: Config = toml::from_str(UNDERLAY).unwrap();
        assert_eq!(c.log_level, LogLevel::Info);
        let e = toml::from_str::<Config>(&format!("log_level = \"inof\"\n{UNDERLAY}"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("inof"), "{e}");
        for l in ["trace", "debug", "info", "warn", "error", "critical"] {
            assert!(e.contains(l), "{e} does not name {l}");
        }
    }

    #[test]
    fn limits_interface_and_dpdk_pools_out_of_range_are_refused() {
        let base: Config = toml::from_str(UNDERLAY).unwrap();
        base.check().unwrap();
        let refused = |edit: &dyn Fn(&mut Config), field: &str| {
            let mut c = base.clone();
            edit(&mut c);
            let e = c.check().unwrap_err().to_string();
            assert!(e.starts_with(field), "{e} should name {field}");
        };
        refused(&|c| c.limits.v2p = 0, "limits.v2p: 0 is out of range");
        refused(&|c| c.limits.ports = 0, "limits.ports: 0 is out of range");
        refused(&|c| c.limits.v2b = 0, "limits.v2b: 0 is out of range");
        refused(
            &|c| c.underlay.interface = String::new(),
            "underlay.interface",
        );
        refused(
            &|c| c.underlay.interface = "eth%d".into(),
            "underlay.interface: 'eth%d'",
        );
        refused(
            &|c| c.underlay.interface = "a-very-long-interface".into(),
            "underlay.interface",
        );
        let dpdk = |mbufs, room| {
            move |c: &mut Config| {
                c.uplink = Uplink::Dpdk {
                    eal_args: vec![],
                    port: None,
                    mbufs,
                    mbuf_data_room: room,
                    zero_copy: None,
                }
            }
        };
        refused(&dpdk(Some(0), None), "uplink.mbufs: 0");
        refused(&dpdk(None, Some(512)), "uplink.mbuf_data_room: 512");
        let mut c = base.clone();
        dpdk(Some(8191), Some(2176))(&mut c);
        c.check().unwrap();
    }
}
