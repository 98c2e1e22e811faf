//! `sluiceadm`, the admin CLI: opteadm-style verb-noun commands, one per
//! API call, over [`crate::client::Client`].
//!
//! Output is an aligned table by default and the server's JSON with
//! `--json` (for scripts; the verbs whose call answers nothing,
//! `delete-vnic` and `clear-uft`, then print nothing); `dump-state`
//! always prints JSON, being the input of `replay`. Exit status: 0 on success, 1 when the call (or a
//! file) failed, with the server's own message
//! (`sluiceadm: error: 404 Not Found: no port named 'x'`), 2 for a usage
//! error (clap's: a bad flag or value is refused before any call).
//!
//! `replay` is the exception to "over the API": it runs a state document
//! offline against captures ([`crate::replay`]), with no daemon.

pub mod args;
mod commands;
#[cfg(feature = "fleet")]
mod fleet;
mod migrate;
pub mod show;
pub mod summary;
pub mod table;
pub mod top;

use clap::{Args, Parser, Subcommand, ValueEnum};
use dataplane::IpCidr;
use std::net::{IpAddr, Ipv6Addr};
use std::path::PathBuf;
use std::process::ExitCode;
use vnic::config::{MacAddr, SnatConfig};
use vnic::firewall::{HostFilter, PortFilter, ProtoFilter};
use vnic::router::RouteTarget;

/// Where sluiced serves its API unless told otherwise.
pub const DEFAULT_URL: &str = "http://127.0.0.1:7480";
/// sluiced's token file unless told otherwise.
pub const DEFAULT_TOKEN_FILE: &str = "/var/lib/sluice/token";

#[derive(Debug, Parser)]
#[command(
    name = "sluiceadm",
    version,
    about = "Administer sluice, a host's virtual networking dataplane, through sluiced's API",
    long_about = None,
    after_help = "Examples:\n  \
        sluiceadm list-ports\n  \
        sluiceadm create-vnic --config vm1.json --tap tap-vm1\n  \
        sluiceadm add-fw-rule vm1 --direction in --priority 10 --action allow --protocol tcp --ports 22\n  \
        sluiceadm trace vm1 --proto tcp --src 10.0.0.5 --dst 1.1.1.1 --dport 443\n  \
        sluiceadm --json stats vm1\n  \
        sluiceadm top\n  \
        sluiceadm --etcd http://10.0.0.1:2379 --fleet-host h1 create-vnic --config vm1.json --tap tap-vm1\n  \
        sluiceadm --etcd http://10.0.0.1:2379 set-v2p 7777 10.0.0.6 a8:40:25:00:00:06 fd00:99::b\n  \
        sluiceadm --etcd http://10.0.0.1:2379 fleet-status\n\n\
        Reads need no token from the daemon's own host; changes need the token\n\
        (read from --token-file, /var/lib/sluice/token by default). With --etcd\n\
        the desired-state verbs write the fleet's store (a host in fleet mode\n\
        refuses them on its API with 409)."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
#[command(next_help_heading = "Global options")]
pub struct Global {
    /// sluiced's API.
    #[arg(long, global = true, env = "SLUICE_URL", default_value = DEFAULT_URL, value_name = "URL")]
    pub url: String,
    /// The API token (default: read from --token-file).
    #[arg(
        long,
        global = true,
        env = "SLUICE_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub token: Option<String>,
    /// The file holding the API token (a missing file is fine for reads).
    #[arg(long, global = true, env = "SLUICE_TOKEN_FILE", default_value = DEFAULT_TOKEN_FILE, value_name = "PATH")]
    pub token_file: PathBuf,
    /// Print the server's JSON instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
    /// Work on the fleet's desired state in etcd (client URLs, comma
    /// separated) instead of one host's API: the verbs that change
    /// desired state write it there, validated as the API validates it.
    #[arg(long, global = true, env = "SLUICE_ETCD", value_name = "URL[,URL..]")]
    pub etcd: Option<String>,
    /// With --etcd: the fleet host whose ports a port verb is about.
    #[arg(long, global = true, value_name = "NAME")]
    pub fleet_host: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// List the ports (vNICs) of this host.
    ///
    /// STATE is `up`, or `guest-failed` when the port's guest device could
    /// not be opened at start (a deleted network namespace, a missing
    /// socket directory): the reason follows the table, and sluiced
    /// retries the device every 2 s.
    #[command(after_help = "Examples:\n  sluiceadm list-ports\n  sluiceadm list-ports --json")]
    ListPorts,

    /// Create a port for a vNIC and attach its guest device.
    #[command(
        after_help = "The configuration is a VnicConfig as JSON (see api/openapi.json), from\n\
        a file or '-' for stdin.\n\n\
        Examples:\n  \
        sluiceadm create-vnic --config vm1.json --tap tap-vm1\n  \
        sluiceadm create-vnic --config vm2.json --vhost-user /run/sluice/vm2.sock\n  \
        sluiceadm create-vnic --config vm4.json --vhost-user-client /run/qemu/vm4.sock --queues 4\n  \
        cat vm3.json | sluiceadm create-vnic --config - --no-guest"
    )]
    CreateVnic(CreateVnicArgs),

    /// Delete a port (its flows go with it; its guest device is closed).
    #[command(after_help = "Example:\n  sluiceadm delete-vnic vm1")]
    DeleteVnic { port: String },

    /// A port's layers in processing order, with rule and flow counts.
    #[command(after_help = "Example:\n  sluiceadm list-layers vm1")]
    ListLayers { port: String },

    /// One layer of a port: its rules (with hits), then its flow table.
    #[command(after_help = "Layers: gateway, firewall, router, nat, overlay.\n\n\
        Examples:\n  sluiceadm dump-layer vm1 firewall\n  sluiceadm dump-layer vm1 nat --json")]
    DumpLayer { port: String, layer: String },

    /// A port's unified flow table, both directions.
    #[command(after_help = "Example:\n  sluiceadm dump-uft vm1")]
    DumpUft { port: String },

    /// Clear a port's flow tables: every flow is decided again.
    #[command(after_help = "Example:\n  sluiceadm clear-uft vm1")]
    ClearUft { port: String },

    /// The TCP connections a port tracks, with their states.
    #[command(after_help = "Example:\n  sluiceadm dump-tcp-flows vm1")]
    DumpTcpFlows { port: String },

    /// A port's firewall rules, numbered (the numbers rm-fw-rule takes).
    #[command(after_help = "Example:\n  sluiceadm list-fw-rules vm1")]
    ListFwRules { port: String },

    /// Add a firewall rule to a port.
    #[command(
        after_help = "Hosts: any, ip=ADDR, subnet=ADDR/LEN, vni=N (the remote side: the\n\
        destination outbound, the source inbound). Protocol: any, tcp, udp, icmp,\n\
        icmp6 or a number. Ports (tcp/udp only): any, a list 22,80 or a range 8000-8080.\n\n\
        Examples:\n  \
        sluiceadm add-fw-rule vm1 --direction in --priority 10 --action allow --protocol tcp --ports 22,80 --hosts subnet=10.0.0.0/24\n  \
        sluiceadm add-fw-rule vm1 --direction out --priority 5 --action deny --hosts ip=192.0.2.1"
    )]
    AddFwRule(AddFwRuleArgs),

    /// Remove a firewall rule by its number (see list-fw-rules).
    #[command(after_help = "Example:\n  sluiceadm rm-fw-rule vm1 0")]
    RmFwRule { port: String, id: usize },

    /// Replace a port's whole firewall rule set atomically.
    #[command(
        after_help = "The file holds {\"rules\": [FirewallRule, ...]} or just the array, as\n\
        list-fw-rules --json prints rules; '-' reads stdin. An empty list leaves the\n\
        defaults (outbound allowed, inbound denied).\n\n\
        Example:\n  sluiceadm set-fw-rules vm1 --file rules.json"
    )]
    SetFwRules {
        port: String,
        /// The rules as JSON ('-': stdin).
        #[arg(long, value_name = "FILE")]
        file: PathBuf,
    },

    /// A port's routes: the VPC's system routes, then custom ones.
    #[command(after_help = "Example:\n  sluiceadm list-routes vm1")]
    ListRoutes { port: String },

    /// Add a custom route to a port (or replace the one to DEST).
    #[command(
        after_help = "TARGET: drop, internet_gateway, ip=ADDR (a next hop in the VPC) or\n\
        vpc_subnet=ADDR/LEN.\n\n\
        Examples:\n  \
        sluiceadm add-router-entry vm1 192.168.0.0/16 ip=10.0.0.9\n  \
        sluiceadm add-router-entry vm1 0.0.0.0/0 internet_gateway\n  \
        sluiceadm add-router-entry vm1 198.51.100.0/24 drop"
    )]
    AddRouterEntry {
        port: String,
        #[arg(value_parser = args::cidr)]
        dest: IpCidr,
        #[arg(value_parser = args::route_target)]
        target: RouteTarget,
    },

    /// Delete a port's custom route to DEST.
    #[command(after_help = "Example:\n  sluiceadm del-router-entry vm1 192.168.0.0/16")]
    DelRouterEntry {
        port: String,
        #[arg(value_parser = args::cidr)]
        dest: IpCidr,
    },

    /// Add or replace V2P mappings: one from the arguments, or many from a file.
    #[command(
        after_help = "A bulk file holds {\"mappings\": [V2pMapping, ...]} or just the array\n\
        (as dump-v2p --json prints it); all are set or none.\n\n\
        Examples:\n  \
        sluiceadm set-v2p 7777 10.0.0.6 a8:40:25:00:00:06 fd00:99::b\n  \
        sluiceadm set-v2p --file mappings.json"
    )]
    SetV2p(SetV2pArgs),

    /// Remove one V2P mapping (VNI and IP) or a whole VPC's (VNI).
    #[command(
        after_help = "Examples:\n  sluiceadm clear-v2p 7777 10.0.0.6\n  sluiceadm clear-v2p 7777"
    )]
    ClearV2p {
        #[arg(value_parser = args::vni)]
        vni: u32,
        ip: Option<IpAddr>,
    },

    /// The V2P mappings, of one VPC or all.
    #[command(after_help = "Examples:\n  sluiceadm dump-v2p\n  sluiceadm dump-v2p --vni 7777")]
    DumpV2p {
        #[arg(long, value_parser = args::vni)]
        vni: Option<u32>,
    },

    /// Add or replace a V2B route: an external prefix of a VPC and its boundary endpoints.
    #[command(
        after_help = "A bulk file holds {\"routes\": [V2bRoute, ...]} or just the array.\n\n\
        Examples:\n  \
        sluiceadm set-v2b 7777 0.0.0.0/0 fd00:99::100,fd00:99::101\n  \
        sluiceadm set-v2b --file routes.json"
    )]
    SetV2b(SetV2bArgs),

    /// Remove one V2B route (VNI and PREFIX) or a whole VPC's (VNI).
    #[command(
        after_help = "Examples:\n  sluiceadm clear-v2b 7777 0.0.0.0/0\n  sluiceadm clear-v2b 7777"
    )]
    ClearV2b {
        #[arg(value_parser = args::vni)]
        vni: u32,
        #[arg(value_parser = args::cidr)]
        prefix: Option<IpCidr>,
    },

    /// The V2B routes, of one VPC or all.
    #[command(after_help = "Examples:\n  sluiceadm dump-v2b\n  sluiceadm dump-v2b --vni 7777")]
    DumpV2b {
        #[arg(long, value_parser = args::vni)]
        vni: Option<u32>,
    },

    /// Choose which of this host's uplinks carry traffic: tunnels are
    /// spread over the named ones (those whose link is up) by their outer
    /// flow; the others still receive.
    #[command(
        after_help = "UPLINK is an uplink's name (its interface), as dump-underlay lists them.\n\
        Name one to drain the other (for maintenance of its switch), both to spread\n\
        again. The choice lasts until sluiced restarts (all configured uplinks are in\n\
        use at start). A link that goes down stops carrying traffic by itself, within\n\
        10 ms, whatever this says; its flows move to the other uplink and return\n\
        when it comes back.\n\n\
        Examples:\n  \
        sluiceadm set-underlay eth1 eth2     # both (the default)\n  \
        sluiceadm set-underlay eth2          # eth1 drained: only receives\n  \
        sluiceadm --json set-underlay eth1 eth2"
    )]
    SetUnderlay {
        /// The uplinks that carry traffic (one or two).
        #[arg(required = true, num_args = 1..=2)]
        uplinks: Vec<String>,
    },

    /// This host's underlay address and uplinks: link state, in use, MACs
    /// and counters.
    #[command(
        after_help = "LIVE uplinks (link up and in use) carry the host's tunnels; every uplink\n\
        receives. Counters are frames, summed over the workers; REWRITTEN counts frames\n\
        sent with that uplink's own outer MACs (the overlay writes the first uplink's).\n\n\
        Examples:\n  \
        sluiceadm dump-underlay\n  \
        sluiceadm --json dump-underlay"
    )]
    DumpUnderlay,

    /// Map an overlay multicast group of a VPC to the underlay group
    /// (admin-local, ff04::/16) that carries it between hosts.
    #[command(
        after_help = "GROUP is IPv4 224.0.0.0/4 outside the link-local 224.0.0.0/24, or IPv6\n\
        ff00::/8 of a scope wider than link-local (not ff01::/16, ff02::/16). Without\n\
        --vni the group is of VNI 77 (OPTE's default multicast VPC).\n\n\
        Examples:\n  \
        sluiceadm set-m2p 239.1.2.3 ff04::1:2:3 --vni 7777\n  \
        sluiceadm set-m2p ff05::db8:1 ff04::db8:1 --vni 7777\n  \
        sluiceadm --json set-m2p 239.1.2.3 ff04::1:2:3"
    )]
    SetM2p {
        /// The overlay group (IPv4 224.0.0.0/4, IPv6 ff00::/8; not link-local).
        group: IpAddr,
        /// The underlay group (IPv6 admin-local, ff04::/16).
        underlay: Ipv6Addr,
        #[arg(long, value_parser = args::vni, default_value_t = overlay::mcast::DEFAULT_MCAST_VNI)]
        vni: u32,
    },

    /// Remove one M2P mapping (GROUP), or every mapping of a VPC.
    #[command(after_help = "Examples:\n  \
        sluiceadm clear-m2p 239.1.2.3 --vni 7777\n  \
        sluiceadm clear-m2p --vni 7777")]
    ClearM2p {
        /// The overlay group (without: every group of the VPC).
        group: Option<IpAddr>,
        #[arg(long, value_parser = args::vni, default_value_t = overlay::mcast::DEFAULT_MCAST_VNI)]
        vni: u32,
    },

    /// The M2P mappings, of one VPC or all.
    #[command(
        after_help = "Examples:\n  sluiceadm dump-m2p\n  sluiceadm dump-m2p --vni 7777 --json"
    )]
    DumpM2p {
        #[arg(long, value_parser = args::vni)]
        vni: Option<u32>,
    },

    /// Subscribe a port to a multicast group of its VPC: datagrams to the
    /// group are delivered to its guest (through its firewall). Again:
    /// replaces the source filter.
    #[command(
        after_help = "--sources is an include-mode filter (RFC 3376): only datagrams from\n\
        these sources are delivered; without it, from any source. The guest's own\n\
        IGMP/MLD reports are not listened to (the gateway drops them, counted as\n\
        mcast_membership_report): the control plane subscribes ports.\n\n\
        Examples:\n  \
        sluiceadm mcast-subscribe vm1 239.1.2.3\n  \
        sluiceadm mcast-subscribe vm1 239.1.2.3 --sources 10.0.0.5,10.0.0.6\n  \
        sluiceadm --json mcast-subscribe vm2 ff05::db8:1"
    )]
    McastSubscribe {
        port: String,
        /// The overlay group (IPv4 224.0.0.0/4, IPv6 ff00::/8; not link-local).
        group: IpAddr,
        /// Include-mode sources, comma-separated (at most 16).
        #[arg(long, value_delimiter = ',', value_name = "S1,S2")]
        sources: Vec<IpAddr>,
    },

    /// Unsubscribe a port from a multicast group.
    #[command(after_help = "Examples:\n  sluiceadm mcast-unsubscribe vm1 239.1.2.3")]
    McastUnsubscribe { port: String, group: IpAddr },

    /// Unsubscribe a port from every multicast group.
    #[command(after_help = "Examples:\n  sluiceadm mcast-unsubscribe-all vm1")]
    McastUnsubscribeAll { port: String },

    /// The multicast subscriptions, of one port or every port.
    #[command(
        after_help = "Examples:\n  sluiceadm dump-mcast-subs\n  sluiceadm dump-mcast-subs --port vm1 --json"
    )]
    DumpMcastSubs {
        #[arg(long)]
        port: Option<String>,
    },

    /// Send a VPC's datagrams to a group on to a next hop, once each.
    #[command(
        after_help = "--replication underlay sends one Geneve packet to the group's M2P\n\
        underlay group (needs set-m2p first); external replicates at the head end:\n\
        unicast Geneve to NEXT-HOP (an underlay without multicast); both does both.\n\
        Without --vni the group is of VNI 77.\n\n\
        Examples:\n  \
        sluiceadm set-mcast-fwd 239.1.2.3 fd00:99::b --replication external --vni 7777\n  \
        sluiceadm set-mcast-fwd 239.1.2.3 fd00:99::c --replication underlay --vni 7777\n  \
        sluiceadm --json set-mcast-fwd ff05::db8:1 fd00:99::b --replication both --vni 7777"
    )]
    SetMcastFwd {
        /// The overlay group (IPv4 224.0.0.0/4, IPv6 ff00::/8; not link-local).
        group: IpAddr,
        /// The next hop's underlay (unicast) address.
        next_hop: Ipv6Addr,
        #[arg(long, value_enum)]
        replication: ReplicationArg,
        #[arg(long, value_parser = args::vni, default_value_t = overlay::mcast::DEFAULT_MCAST_VNI)]
        vni: u32,
    },

    /// Remove one next hop of a group (NEXT-HOP), or all of them.
    #[command(after_help = "Examples:\n  \
        sluiceadm clear-mcast-fwd 239.1.2.3 fd00:99::b --vni 7777\n  \
        sluiceadm clear-mcast-fwd 239.1.2.3 --vni 7777")]
    ClearMcastFwd {
        /// The overlay group (IPv4 224.0.0.0/4, IPv6 ff00::/8; not link-local).
        group: IpAddr,
        /// One next hop (without: every next hop of the group).
        next_hop: Option<Ipv6Addr>,
        #[arg(long, value_parser = args::vni, default_value_t = overlay::mcast::DEFAULT_MCAST_VNI)]
        vni: u32,
    },

    /// The multicast forwarding table, of one VPC or all.
    #[command(
        after_help = "Examples:\n  sluiceadm dump-mcast-fwd\n  sluiceadm dump-mcast-fwd --vni 7777 --json"
    )]
    DumpMcastFwd {
        #[arg(long, value_parser = args::vni)]
        vni: Option<u32>,
    },

    /// Set a port's external IPs (all of them: what is not given is removed).
    #[command(
        after_help = "For outbound internet traffic a floating IP is preferred, then an\n\
        ephemeral IP, then SNAT. No option at all removes every external IP.\n\n\
        Examples:\n  \
        sluiceadm set-external-ips vm1 --snat 203.0.113.10:2048-4095\n  \
        sluiceadm set-external-ips vm1 --ephemeral 203.0.113.20 --floating 203.0.113.50"
    )]
    SetExternalIps(SetExternalIpsArgs),

    /// Limit what a port's guest sends: packets and/or bytes per second.
    #[command(
        after_help = "Token buckets on the guest's egress, checked before any other work:
        packets over the limit are dropped and counted as rate_limited. --bps is
        BYTES per second (whole frames). A burst defaults to a tenth of a second's
        worth. The limit replaces the previous one; --none removes it.

        Examples:
          sluiceadm set-rate-limit vm1 --pps 10000
          sluiceadm set-rate-limit vm1 --pps 10000 --burst-packets 500 --bps 12500000
          sluiceadm set-rate-limit vm1 --none"
    )]
    SetRateLimit(SetRateLimitArgs),

    /// Let a port's guest send from (out) and/or receive for (in) a prefix
    /// that is not its own: a router or VPN endpoint. No anti-spoofing drop,
    /// no NAT for it. Adds to what the prefix allowed already.
    #[command(after_help = "Examples:\n  \
        sluiceadm allow-cidr vm1 172.16.0.0/24 --dir both\n  \
        sluiceadm allow-cidr vm1 192.168.8.0/22 --dir in\n  \
        sluiceadm --json allow-cidr vm1 fd00:1234::/64 --dir out")]
    AllowCidr {
        port: String,
        #[arg(value_parser = args::cidr)]
        cidr: IpCidr,
        #[arg(long, value_enum)]
        dir: TransitDirArg,
    },

    /// Stop allowing a direction of a port's transit prefix; the flows it
    /// carried stop at their next packet, other flows are untouched.
    #[command(after_help = "Examples:\n  \
        sluiceadm remove-cidr vm1 172.16.0.0/24 --dir both\n  \
        sluiceadm remove-cidr vm1 172.16.0.0/24 --dir in   # keeps 'out'")]
    RemoveCidr {
        port: String,
        #[arg(value_parser = args::cidr)]
        cidr: IpCidr,
        #[arg(long, value_enum)]
        dir: TransitDirArg,
    },

    /// Attach a subnet to a running port: routed to the guest, which may
    /// send from it, untranslated. --external marks an external address
    /// block: its traffic reaches the internet only, never a VPC recipient
    /// (dropped as external_subnet_to_vpc).
    #[command(after_help = "Examples:\n  \
        sluiceadm attach-subnet vm1 192.168.50.0/24\n  \
        sluiceadm attach-subnet vm1 198.18.0.0/24 --external\n  \
        sluiceadm --json attach-subnet vm1 192.168.50.0/24")]
    AttachSubnet {
        port: String,
        #[arg(value_parser = args::cidr)]
        cidr: IpCidr,
        #[arg(long)]
        external: bool,
    },

    /// Detach a subnet (private or external) from a running port; its flows
    /// stop at their next packet, other flows are untouched.
    #[command(after_help = "Examples:\n  \
        sluiceadm detach-subnet vm1 192.168.50.0/24\n  \
        sluiceadm --json detach-subnet vm1 198.18.0.0/24")]
    DetachSubnet {
        port: String,
        #[arg(value_parser = args::cidr)]
        cidr: IpCidr,
    },

    /// Counters: of one port, or every port and worker.
    #[command(
        after_help = "Examples:\n  sluiceadm stats\n  sluiceadm stats vm1\n  sluiceadm --json stats vm1"
    )]
    Stats { port: Option<String> },

    /// A live view: per port rates, drops, the busiest flows, workers.
    ///
    /// Rates are computed from two snapshots of the counters (`/stats` and
    /// every port's UFT) taken --interval apart. Keys: n p b f c d sort by
    /// name, packets, bytes, flows, new flows, drops; r reverses; q quits.
    /// --once prints one view and exits; --json (implies --once) prints
    /// it as JSON for scripts.
    #[command(after_help = "Examples:\n  \
        sluiceadm top\n  \
        sluiceadm top --interval 2 --sort drops\n  \
        sluiceadm top --once\n  \
        sluiceadm --json top --once --interval 1 | jq '.ports[] | {name, packets_in_per_s}'")]
    Top(TopArgs),

    /// Record a port's guest-side frames for a while, to a pcap file.
    #[command(
        after_help = "Stops after --packets frames or --seconds, whichever comes first.\n\n\
        Example:\n  sluiceadm capture vm1 --out vm1.pcap --packets 100 --seconds 10"
    )]
    Capture {
        port: String,
        /// Where to write the capture.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// Stop after this many frames (1..=100000; the server's default: 100).
        #[arg(long)]
        packets: Option<u32>,
        /// Stop after this many seconds (1..=60; the server's default: 5).
        #[arg(long)]
        seconds: Option<u32>,
    },

    /// Walk a packet through a port's layers, without changing its flows.
    #[command(
        after_help = "Outbound packets are the guest's (from its MAC to the gateway's);\n\
        inbound ones arrive in Geneve from the sender's V2P host (or a boundary).\n\
        Prints, per layer, the rule that matched, its action and transform; then\n\
        the verdict and the packet that would leave.\n\n\
        Examples:\n  \
        sluiceadm trace vm1 --direction out --proto tcp --src 10.0.0.5 --dst 1.1.1.1 --dport 443\n  \
        sluiceadm trace vm1 --direction in --proto tcp --src 10.0.0.6 --dst 10.0.0.5 --dport 22 --flags S\n  \
        sluiceadm trace vm1 --direction out --frame a84025ffff01a84025000005..."
    )]
    Trace(TraceArgs),

    /// Move a port to another host with its flows: cut over, import there, move its V2P.
    #[command(
        after_help = "Steps: cut the port over on this host (it stops forwarding, lets go of its\n\
        guest device and, for --grace seconds, tunnels what still arrives for the guest\n\
        to the target), import its document on the target (--to), then point the V2P\n\
        mapping of its addresses at the target on both hosts. Reports the gap: the time\n\
        from the cut-over to the V2P move. If the import is refused the cut-over is\n\
        aborted and the port resumes here. The target's token: --to-token or\n\
        --to-token-file. --tap/--netns/--vhost-user: the guest device as the target\n\
        opens it (default: the source's).\n\n\
        Examples:\n  \
        sluiceadm migrate-out vm1 --to http://10.1.0.2:7480 --target-underlay fd00:99::b --to-token-file /etc/sluice/hostB.token\n  \
        sluiceadm migrate-out vm1 --to http://127.0.0.1:7481 --target-underlay fd00:99::b --tap tap-vm1 --netns /run/netns/vm1\n  \
        sluiceadm --json migrate-out vm1 --to http://10.1.0.2:7480 --target-underlay fd00:99::b --grace 10\n  \
        sluiceadm migrate-out vm1 --abort"
    )]
    MigrateOut(MigrateOutArgs),

    /// Import a port from a migration document (GET /ports/NAME/migration's output).
    #[command(
        after_help = "Refused, naming the conflict, if the port's name, VNI and MAC, or addresses\n\
        clash with a port here; refused if the document's version is not this host's.\n\n\
        Examples:\n  \
        curl -s http://hostA:7480/ports/vm1/migration > vm1.migration.json\n  \
        sluiceadm migrate-in --file vm1.migration.json --tap tap-vm1 --netns /run/netns/vm1\n  \
        sluiceadm --json migrate-in --file - < vm1.migration.json"
    )]
    MigrateIn(MigrateInArgs),

    /// Print the whole persisted state as JSON (the input of replay).
    #[command(after_help = "Example:\n  sluiceadm dump-state > state.json")]
    DumpState,

    /// The fleet's hosts (needs --etcd): applied revision, lag, ports, refused keys.
    ///
    /// LAG is how many revisions of desired state a host has not applied
    /// yet (0: converged); ALIVE is whether its status lease is held (its
    /// sluiced is connected). Keys no host will apply (a port for a host
    /// that never joined) and keys a host refused follow the table.
    #[command(after_help = "Examples:\n  \
        sluiceadm --etcd http://10.0.0.1:2379 fleet-status\n  \
        sluiceadm --etcd http://10.0.0.1:2379,http://10.0.0.2:2379 --json fleet-status")]
    FleetStatus,

    /// Replay captures through a state offline (no daemon, no root).
    #[command(
        after_help = "NAME is 'uplink' or a port's name; each input is NAME=FILE.pcap\n\
        (Ethernet). Inputs are merged by timestamp and their timestamps drive the\n\
        ports' clock. DIR gets NAME.out.pcap for every endpoint sent anything.\n\n\
        Example:\n  \
        sluiceadm dump-state > state.json\n  \
        sluiceadm replay --state state.json --in vm1=vm1.pcap --in uplink=underlay.pcap --out-dir out/\n  \
        sluiceadm replay --verbose --state pcaps/vpc_tcp.state.json --in vm1=pcaps/vpc_tcp.guest.in.pcap --out-dir out/\n  \
        sluiceadm replay --state state.json --in uplink=underlay.pcap --out-dir out/ --accept-zero-udp6-checksum"
    )]
    Replay(ReplayArgs),
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("guest").required(true).args(["tap", "vhost_user", "vhost_user_client", "no_guest"])))]
#[command(group(clap::ArgGroup::new("vhost").args(["vhost_user", "vhost_user_client"])))]
pub struct CreateVnicArgs {
    /// The vNIC's configuration as JSON ('-': stdin).
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
    /// The guest is a TAP interface (created if missing): 1-15 printable
    /// ASCII characters, not '.' or '..', without '/', ':' or '%' (a
    /// kernel name template such as 'x%d' is refused).
    #[arg(long, value_name = "IFNAME")]
    pub tap: Option<String>,
    /// With --tap: the network namespace the TAP lives in (a path such as
    /// /run/netns/NAME), so a restarted sluiced finds it there again.
    #[arg(long, value_name = "PATH", requires = "tap")]
    pub netns: Option<PathBuf>,
    /// The guest connects to this vhost-user socket (sluice listens).
    #[arg(long, value_name = "SOCKET")]
    pub vhost_user: Option<PathBuf>,
    /// The VMM listens on this vhost-user socket (QEMU's -chardev
    /// socket,path=SOCKET,server=on) and sluice connects, again after
    /// every hang-up: a restarted sluiced re-attaches to the running VM.
    #[arg(long, value_name = "SOCKET")]
    pub vhost_user_client: Option<PathBuf>,
    /// With --vhost-user or --vhost-user-client: queue pairs offered to the
    /// VMM, 1 to 16 (more than one is multiqueue; the VMM may use fewer).
    #[arg(long, value_name = "N", requires = "vhost")]
    pub queues: Option<u16>,
    /// No guest device: the port is programmed, frames to the guest dropped.
    #[arg(long)]
    pub no_guest: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum DirArg {
    In,
    Out,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ReplicationArg {
    External,
    Underlay,
    Both,
}

impl From<ReplicationArg> for crate::types::Replication {
    fn from(r: ReplicationArg) -> Self {
        match r {
            ReplicationArg::External => crate::types::Replication::External,
            ReplicationArg::Underlay => crate::types::Replication::Underlay,
            ReplicationArg::Both => crate::types::Replication::Both,
        }
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum TransitDirArg {
    In,
    Out,
    Both,
}

impl From<TransitDirArg> for vnic::config::TransitDir {
    fn from(d: TransitDirArg) -> Self {
        match d {
            TransitDirArg::In => vnic::config::TransitDir::In,
            TransitDirArg::Out => vnic::config::TransitDir::Out,
            TransitDirArg::Both => vnic::config::TransitDir::Both,
        }
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum FwActionArg {
    Allow,
    Deny,
}

#[derive(Debug, Args)]
pub struct AddFwRuleArgs {
    pub port: String,
    #[arg(long, value_enum)]
    pub direction: DirArg,
    /// Lower first (0..=65534).
    #[arg(long)]
    pub priority: u16,
    #[arg(long, value_enum)]
    pub action: FwActionArg,
    /// The remote hosts: any, ip=ADDR, subnet=ADDR/LEN, vni=N.
    #[arg(long, value_parser = args::hosts, default_value = "any")]
    pub hosts: HostFilter,
    /// any, tcp, udp, icmp, icmp6 or a protocol number.
    #[arg(long, value_parser = args::protocol, default_value = "any")]
    pub protocol: ProtoFilter,
    /// Destination ports: any, a list (22,80) or a range (8000-8080).
    #[arg(long, value_parser = args::ports, default_value = "any")]
    pub ports: PortFilter,
}

#[derive(Debug, Args)]
pub struct SetV2pArgs {
    #[arg(value_parser = args::vni, required_unless_present = "file", conflicts_with = "file")]
    pub vni: Option<u32>,
    /// The guest's address in the VPC.
    #[arg(required_unless_present = "file")]
    pub ip: Option<IpAddr>,
    /// The guest's MAC.
    #[arg(value_parser = args::mac, required_unless_present = "file")]
    pub mac: Option<MacAddr>,
    /// The underlay address of the guest's host.
    #[arg(required_unless_present = "file")]
    pub host: Option<Ipv6Addr>,
    /// Many mappings from a JSON file ('-': stdin).
    #[arg(long, value_name = "FILE")]
    pub file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct SetV2bArgs {
    #[arg(value_parser = args::vni, required_unless_present = "file", conflicts_with = "file")]
    pub vni: Option<u32>,
    /// The external prefix (0.0.0.0/0 for the whole internet).
    #[arg(value_parser = args::cidr, required_unless_present = "file")]
    pub prefix: Option<IpCidr>,
    /// Boundary tunnel endpoints (underlay IPv6 addresses, comma-separated).
    #[arg(value_parser = args::endpoints, required_unless_present = "file")]
    pub endpoints: Option<args::Endpoints>,
    /// Many routes from a JSON file ('-': stdin).
    #[arg(long, value_name = "FILE")]
    pub file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct SetExternalIpsArgs {
    pub port: String,
    /// A shared address and this port's slice of its ports: IP:FIRST-LAST.
    #[arg(long, value_parser = args::snat, value_name = "IP:FIRST-LAST")]
    pub snat: Vec<SnatConfig>,
    /// An address of this port's own for outbound traffic.
    #[arg(long, value_name = "IP")]
    pub ephemeral: Vec<IpAddr>,
    /// A 1:1 address, reachable inbound.
    #[arg(long, value_name = "IP")]
    pub floating: Vec<IpAddr>,
}

#[derive(Debug, Args)]
pub struct MigrateOutArgs {
    pub port: String,
    /// The target host's API.
    #[arg(long, value_name = "URL", required_unless_present = "abort")]
    pub to: Option<String>,
    /// The target host's underlay address (where the source tunnels what still arrives).
    #[arg(long, value_name = "IPV6", required_unless_present = "abort")]
    pub target_underlay: Option<Ipv6Addr>,
    /// The target's token.
    #[arg(
        long,
        value_name = "TOKEN",
        env = "SLUICE_TO_TOKEN",
        hide_env_values = true
    )]
    pub to_token: Option<String>,
    /// A file holding the target's token.
    #[arg(long, value_name = "PATH")]
    pub to_token_file: Option<PathBuf>,
    /// Seconds the source keeps forwarding to the target (1..=3600; default 30).
    #[arg(long, value_name = "SECS")]
    pub grace: Option<u64>,
    /// The guest's TAP as the target opens it.
    #[arg(long, value_name = "IFNAME")]
    pub tap: Option<String>,
    /// The namespace the target opens the TAP in.
    #[arg(long, value_name = "PATH", requires = "tap")]
    pub netns: Option<PathBuf>,
    /// The guest's vhost-user socket on the target.
    #[arg(long, value_name = "SOCKET", conflicts_with = "tap")]
    pub vhost_user: Option<PathBuf>,
    /// Abort a cut-over of PORT on this host instead: it resumes forwarding.
    #[arg(long, conflicts_with_all = ["to", "target_underlay"])]
    pub abort: bool,
}

#[derive(Debug, Args)]
pub struct MigrateInArgs {
    /// The migration document ('-': stdin).
    #[arg(long, value_name = "FILE")]
    pub file: PathBuf,
    /// The guest's TAP as this host opens it (default: the document's).
    #[arg(long, value_name = "IFNAME")]
    pub tap: Option<String>,
    #[arg(long, value_name = "PATH", requires = "tap")]
    pub netns: Option<PathBuf>,
    #[arg(long, value_name = "SOCKET", conflicts_with = "tap")]
    pub vhost_user: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct SetRateLimitArgs {
    pub port: String,
    /// Packets per second.
    #[arg(long, value_name = "N", required_unless_present_any = ["bps", "none"])]
    pub pps: Option<u64>,
    /// Bytes (not bits) per second, Ethernet headers included.
    #[arg(long, value_name = "N")]
    pub bps: Option<u64>,
    /// Packets that may go at once above the rate.
    #[arg(long, value_name = "N", requires = "pps")]
    pub burst_packets: Option<u64>,
    /// Bytes that may go at once above the rate.
    #[arg(long, value_name = "N", requires = "bps")]
    pub burst_bytes: Option<u64>,
    /// Remove the port's limit.
    #[arg(long, conflicts_with_all = ["pps", "bps", "burst_packets", "burst_bytes"])]
    pub none: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ProtoArg {
    Tcp,
    Udp,
    /// ICMP or ICMPv6 echo request, by the addresses' family.
    Icmp,
}

#[derive(Debug, Args)]
pub struct TraceArgs {
    pub port: String,
    /// out: from the guest; in: to the guest, from the underlay.
    #[arg(long, value_enum, default_value = "out")]
    pub direction: DirArg,
    #[arg(long, value_enum, required_unless_present = "frame")]
    pub proto: Option<ProtoArg>,
    #[arg(long, required_unless_present = "frame")]
    pub src: Option<IpAddr>,
    #[arg(long, required_unless_present = "frame")]
    pub dst: Option<IpAddr>,
    /// Source port (ICMP: the echo identifier); default 40000.
    #[arg(long)]
    pub sport: Option<u16>,
    /// Destination port; default 80.
    #[arg(long)]
    pub dport: Option<u16>,
    /// TCP flags as letters: S, A, F, R, P (default S).
    #[arg(long, value_parser = args::tcp_flags)]
    pub flags: Option<String>,
    /// Payload bytes (zeros).
    #[arg(long)]
    pub len: Option<u16>,
    /// Inbound: the outer source (the sender's host; default from V2P/V2B).
    #[arg(long)]
    pub outer_src: Option<Ipv6Addr>,
    /// Inbound: whether the tunnel is marked as from the boundary
    /// (default: when the source is not in the VPC).
    #[arg(long)]
    pub external: Option<bool>,
    /// The whole frame as hex (Ethernet first), instead of the fields.
    #[arg(long, value_name = "HEX", conflicts_with_all = ["proto", "src", "dst", "sport", "dport", "flags", "len", "outer_src", "external"])]
    pub frame: Option<String>,
}

#[derive(Debug, Args)]
pub struct TopArgs {
    /// Seconds between two snapshots (0.1..=60).
    #[arg(long, default_value_t = 1.0, value_parser = interval)]
    pub interval: f64,
    /// Print one view (rates over one interval) and exit.
    #[arg(long)]
    pub once: bool,
    /// How many of the busiest flows to show; 0 shows none and skips the
    /// ports' UFT dumps (each made by the port's worker, between bursts:
    /// on ports with many thousands of flows, the part of top a worker feels).
    #[arg(long, default_value_t = 10)]
    pub flows: usize,
    /// The port table's first sort column.
    #[arg(long, value_enum, default_value = "bytes")]
    pub sort: top::SortKey,
}

fn interval(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (0.1..=60.0).contains(&v) => Ok(v),
        _ => Err(format!("'{s}' is not an interval in seconds (0.1..=60)")),
    }
}

#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// The state document (sluiceadm dump-state's output).
    #[arg(long, value_name = "STATE.json")]
    pub state: PathBuf,
    /// An input capture: NAME=FILE.pcap (NAME: uplink or a port).
    #[arg(long = "in", value_name = "NAME=FILE", value_parser = args::named_file)]
    pub inputs: Vec<(String, PathBuf)>,
    /// Where the output captures go (created if missing).
    #[arg(long, value_name = "DIR")]
    pub out_dir: PathBuf,
    /// The host's underlay address, if the state has none (or to override it).
    #[arg(long, value_name = "IPV6")]
    pub underlay_ip: Option<Ipv6Addr>,
    /// The underlay's MTU: ports whose MTU does not fit it with the tunnel
    /// are refused, as sluiced refuses them [default: the state's
    /// underlay_mtu, else unchecked].
    #[arg(long, value_name = "BYTES")]
    pub underlay_mtu: Option<u16>,
    /// Report each input frame's fate: forwarded to where, hairpinned, or
    /// dropped (where, why, by which layer). With --json: `frames_fate`.
    #[arg(long)]
    pub verbose: bool,
    /// The host NIC's MAC (outer source of tunnels) [default: 02:00:00:00:00:10].
    #[arg(long, value_parser = args::mac, value_name = "MAC")]
    pub underlay_mac: Option<MacAddr>,
    /// The underlay next hop's MAC [default: 02:00:00:00:00:20].
    #[arg(long, value_parser = args::mac, value_name = "MAC")]
    pub next_hop_mac: Option<MacAddr>,
    /// Take tunnels with a zero outer UDP checksum, as a host with
    /// `[underlay] accept_zero_udp6_checksum = true` does [default: drop
    /// them as zero_udp6_checksum].
    #[arg(long)]
    pub accept_zero_udp6_checksum: bool,
}

/// The program: parses the command line, runs the verb, prints the
/// result or the error. Usage errors exit 2 (clap's own handling).
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut out = String::new();
    let result = commands::run(&cli, &mut out);
    print_out(&out);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sluiceadm: error: {e}");
            if let Some(note) = e.note() {
                eprintln!("sluiceadm: note: {note}");
            }
            ExitCode::from(1)
        }
    }
}

/// Prints to stdout; a closed pipe (`sluiceadm dump-uft vm1 | head`) is
/// not an error worth a panic.
fn print_out(s: &str) {
    use std::io::Write;
    let mut o = std::io::stdout().lock();
    let _ = o.write_all(s.as_bytes());
    let _ = o.flush();
}

pub use commands::CliError;

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }
}
