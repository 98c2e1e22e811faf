//! The human-readable renderings: one function per kind of answer, each
//! returning text that ends in a newline. Every answer, the engine's
//! counters, dumps and traces included, arrives as its typed document
//! (`crate::types`): a field renamed in the API fails the build here.

use super::summary;
use super::table::{opt, Table};
use crate::replay::ReplayReport;
use crate::types::*;
use dataplane::RateLimit;
use vmm_net::switch::SwitchStats;
use vnic::config::{ExternalIps, VnicConfig};
use vnic::firewall::{FirewallRule, HostFilter, PortFilter, ProtoFilter};
use vnic::router::{RouteClass, RouteTarget};

pub fn guest(g: &GuestSpec) -> String {
    match g {
        GuestSpec::Tap { name, netns: None } => format!("tap:{name}"),
        GuestSpec::Tap {
            name,
            netns: Some(ns),
        } => format!("tap:{name}@{}", ns.display()),
        GuestSpec::VhostUser {
            socket,
            mode,
            queues,
        } => {
            let mut s = format!("vhost-user:{}", socket.display());
            if *mode == VhostUserMode::Client {
                s += " (client)";
            }
            if *queues > 1 {
                s += &format!(" x{queues}");
            }
            s
        }
        GuestSpec::Dpdk { port } => format!("dpdk:{port}"),
        GuestSpec::None => "none".into(),
    }
}

pub fn ports(ps: &[PortSummary]) -> String {
    let mut t = Table::new(&[
        "NAME",
        "VNI",
        "MAC",
        "IPv4",
        "IPv6",
        "GUEST",
        "STATE",
        "WORKER",
        "FLOWS",
        "EPOCH",
        "RATE-LIMIT",
    ]);
    for p in ps {
        t.row(vec![
            p.name.clone(),
            p.vni.get().to_string(),
            p.guest_mac.to_string(),
            opt(p.ipv4),
            opt(p.ipv6),
            guest(&p.guest),
            state(p.state).into(),
            p.worker.to_string(),
            format!("{}/{}", p.flows, p.flow_limit),
            p.epoch.to_string(),
            rate_short(p.rate_limit.as_ref()),
        ]);
    }
    let mut out = t.render();
    out += &guest_failures(ps.iter().map(|p| (&p.name, p.guest_error.as_deref())));
    out
}

fn state(s: PortState) -> &'static str {
    match s {
        PortState::Up => "up",
        PortState::GuestFailed => "guest-failed",
    }
}

/// A line for each port whose guest device is not open, with the reason.
fn guest_failures<'a>(ps: impl Iterator<Item = (&'a String, Option<&'a str>)>) -> String {
    let mut out = String::new();
    for (name, e) in ps {
        if let Some(e) = e {
            out += &format!("port {name}: guest device failed (retried every 2 s): {e}\n");
        }
    }
    out
}

/// A flow key document: `TCP 10.0.0.5:40000 > 1.1.1.1:443 vni 7777`.
pub fn flow_key(k: &FlowKeyDoc) -> String {
    let proto = match k.proto {
        1 => "ICMP".to_string(),
        6 => "TCP".to_string(),
        17 => "UDP".to_string(),
        58 => "ICMPv6".to_string(),
        p => format!("proto {p}"),
    };
    let hp = |a: std::net::IpAddr, p: u16| match a {
        std::net::IpAddr::V6(a) => format!("[{a}]:{p}"),
        std::net::IpAddr::V4(a) => format!("{a}:{p}"),
    };
    let mut out = format!(
        "{proto} {} > {}",
        hp(k.src, k.src_port),
        hp(k.dst, k.dst_port)
    );
    if k.vni != 0 {
        out += &format!(" vni {}", k.vni);
    }
    out
}

/// The wire's name of a default, as `--json` shows it.
fn default_action(a: dataplane::DefaultAction) -> String {
    match a {
        dataplane::DefaultAction::Allow => "allow",
        dataplane::DefaultAction::Deny => "deny",
    }
    .into()
}

pub fn list_layers(v: &[LayerSummary]) -> String {
    let mut t = Table::new(&[
        "LAYER",
        "RULES-OUT",
        "RULES-IN",
        "FLOWS-OUT",
        "FLOWS-IN",
        "DEFAULT-OUT",
        "DEFAULT-IN",
    ]);
    for l in v {
        t.row(vec![
            l.name.clone(),
            l.rules_out.to_string(),
            l.rules_in.to_string(),
            l.lft_out.to_string(),
            l.lft_in.to_string(),
            default_action(l.default_out),
            default_action(l.default_in),
        ]);
    }
    t.render()
}

fn layer_stats(v: &dataplane::layer::LayerDirStats) -> String {
    format!(
        "packets {}, lft hits {}, default hits {}, dropped {}, hairpins {}",
        v.packets, v.lft_hits, v.default_hits, v.dropped, v.hairpins
    )
}

pub fn dump_layer(port: &str, v: &LayerDoc) -> String {
    let mut out = format!(
        "Layer {} of port {port}: default out {}, in {}\n",
        v.name,
        default_action(v.default_out),
        default_action(v.default_in)
    );
    out += &format!("  out: {}\n", layer_stats(&v.stats_out));
    out += &format!("  in:  {}\n\nRules\n", layer_stats(&v.stats_in));
    let mut t = Table::new(&["DIR", "ID", "PRIORITY", "PREDICATES", "ACTION", "HITS"]);
    for (dir, rules) in [("out", &v.rules_out), ("in", &v.rules_in)] {
        for r in rules {
            t.row(vec![
                dir.into(),
                r.id.to_string(),
                r.priority.to_string(),
                if r.predicates.is_empty() {
                    "*".into()
                } else {
                    r.predicates.join(" ")
                },
                r.action.clone(),
                r.hits.to_string(),
            ]);
        }
    }
    out += &t.render();
    out += "\nFlows (LFT)\n";
    let mut t = Table::new(&["DIR", "KEY", "FLOW", "STATE"]);
    for (dir, lft) in [("out", &v.lft_out), ("in", &v.lft_in)] {
        for e in lft {
            t.row(vec![
                dir.into(),
                flow_key(&e.key),
                e.flow.to_string(),
                e.state.clone(),
            ]);
        }
    }
    out += &t.render();
    out
}

pub fn dump_uft(port: &str, v: &UftDoc) -> String {
    let mut out = format!("UFT of port {port} (port epoch {})\n", v.epoch);
    let mut t = Table::new(&["DIR", "KEY", "FLOW", "EPOCH", "TRANSFORM"]);
    let mut stale = false;
    for (dir, entries) in [("out", &v.outbound), ("in", &v.inbound)] {
        for e in entries {
            let mut epoch = e.epoch.to_string();
            if e.stale {
                epoch.push('*');
                stale = true;
            }
            t.row(vec![
                dir.into(),
                flow_key(&e.key),
                e.flow.to_string(),
                epoch,
                e.transform.clone(),
            ]);
        }
    }
    out += &t.render();
    if stale {
        out += "* stale: made under older rules or tables, re-checked at its next packet\n";
    }
    out
}

fn millis(ms: u64) -> String {
    if ms >= 1000 {
        format!("{:.1}s", ms as f64 / 1000.0)
    } else {
        format!("{ms}ms")
    }
}

pub fn tcp_flows(v: &[TcpFlowDoc]) -> String {
    let mut t = Table::new(&[
        "FLOW", "KEY", "ORIGIN", "STATE", "AGE", "IDLE", "PKTS-OUT", "PKTS-IN",
    ]);
    for f in v {
        t.row(vec![
            f.flow.to_string(),
            flow_key(&f.key),
            match f.origin {
                Dir::Out => "out".into(),
                Dir::In => "in".into(),
            },
            f.state.name().into(),
            millis(f.age_ms),
            millis(f.idle_ms),
            f.packets_out.to_string(),
            f.packets_in.to_string(),
        ]);
    }
    t.render()
}

pub fn hosts(h: &HostFilter) -> String {
    match h {
        HostFilter::Any => "any".into(),
        HostFilter::Ip(a) => format!("ip={a}"),
        HostFilter::Subnet(c) => format!("subnet={c}"),
        HostFilter::Vni(v) => format!("vni={}", v.get()),
    }
}

pub fn protocol(p: &ProtoFilter) -> String {
    match p {
        ProtoFilter::Any => "any".into(),
        ProtoFilter::Tcp => "tcp".into(),
        ProtoFilter::Udp => "udp".into(),
        ProtoFilter::Icmp => "icmp".into(),
        ProtoFilter::Icmp6 => "icmp6".into(),
        ProtoFilter::Number(n) => n.to_string(),
    }
}

pub fn port_filter(p: &PortFilter) -> String {
    match p {
        PortFilter::Any => "any".into(),
        PortFilter::List(l) => l.iter().map(u16::to_string).collect::<Vec<_>>().join(","),
        PortFilter::Range { first, last } => format!("{first}-{last}"),
    }
}

fn fw_rule_cells(r: &FirewallRule) -> Vec<String> {
    let lower = |x: &dyn std::fmt::Debug| format!("{x:?}").to_lowercase();
    vec![
        lower(&r.direction),
        r.priority.to_string(),
        lower(&r.action),
        hosts(&r.hosts),
        protocol(&r.protocol),
        port_filter(&r.ports),
    ]
}

pub fn fw_rules(rules: &[NumberedRule]) -> String {
    let mut t = Table::new(&[
        "ID", "DIR", "PRIORITY", "ACTION", "HOSTS", "PROTOCOL", "PORTS",
    ]);
    for r in rules {
        let mut cells = vec![r.id.to_string()];
        cells.extend(fw_rule_cells(&r.rule));
        t.row(cells);
    }
    let mut out = t.render();
    if rules.is_empty() {
        out += "(no rules: outbound allowed, inbound denied)\n";
    }
    out
}

pub fn route_target(t: &RouteTarget) -> String {
    match t {
        RouteTarget::Drop => "drop".into(),
        RouteTarget::InternetGateway => "internet_gateway".into(),
        RouteTarget::VpcSubnet(c) => format!("vpc_subnet={c}"),
        RouteTarget::Ip(a) => format!("ip={a}"),
    }
}

pub fn routes(r: &Routes) -> String {
    let mut t = Table::new(&["DEST", "TARGET", "CLASS"]);
    for e in &r.routes {
        t.row(vec![
            e.dest.to_string(),
            route_target(&e.target),
            match e.class {
                RouteClass::System => "system".into(),
                RouteClass::Custom => "custom".into(),
            },
        ]);
    }
    t.render()
}

/// `rate limit: 10000 packets/s (burst 1000), 12500000 bytes/s (burst 1250000)`.
pub fn rate_limit(r: Option<&RateLimit>) -> String {
    let Some(r) = r else {
        return "rate limit: none\n".into();
    };
    let mut parts = Vec::new();
    if r.packets_per_sec > 0 {
        parts.push(format!(
            "{} packets/s (burst {})",
            r.packets_per_sec,
            r.packet_burst()
        ));
    }
    if r.bytes_per_sec > 0 {
        parts.push(format!(
            "{} bytes/s (burst {})",
            r.bytes_per_sec,
            r.byte_burst()
        ));
    }
    format!("rate limit: {}\n", parts.join(", "))
}

/// The rate-limit column of the port listing: `10000pps,12500000B/s` or `-`.
fn rate_short(r: Option<&RateLimit>) -> String {
    let Some(r) = r else {
        return "-".into();
    };
    let mut parts = Vec::new();
    if r.packets_per_sec > 0 {
        parts.push(format!("{}pps", r.packets_per_sec));
    }
    if r.bytes_per_sec > 0 {
        parts.push(format!("{}B/s", r.bytes_per_sec));
    }
    parts.join(",")
}

/// A port's prefixes beyond its own addresses: attached subnets (private
/// and external) and transit prefixes with their directions.
pub fn prefixes(c: &VnicConfig) -> String {
    let mut t = Table::new(&["KIND", "PREFIX", "DIR"]);
    for s in &c.attached_subnets {
        t.row(vec!["attached".into(), s.to_string(), "both".into()]);
    }
    for s in &c.external_subnets {
        t.row(vec!["external".into(), s.to_string(), "both".into()]);
    }
    for x in &c.transit_ips {
        t.row(vec![
            "transit".into(),
            x.cidr.to_string(),
            x.dir.name().into(),
        ]);
    }
    let mut out = t.render();
    if t.is_empty() {
        out += "(no attached subnets or transit prefixes)\n";
    }
    out
}

pub fn external(e: &ExternalIps) -> String {
    let mut t = Table::new(&["KIND", "ADDRESS", "PORTS"]);
    for f in &e.floating {
        t.row(vec!["floating".into(), f.to_string(), "all".into()]);
    }
    for a in &e.ephemeral {
        t.row(vec!["ephemeral".into(), a.to_string(), "all".into()]);
    }
    for sn in &e.snat {
        t.row(vec![
            "snat".into(),
            sn.ip.to_string(),
            format!("{}-{}", sn.first_port, sn.last_port),
        ]);
    }
    let mut out = t.render();
    if t.is_empty() {
        out += "(no external IPs: no internet access)\n";
    }
    out
}

pub fn v2p(ms: &[V2pMapping]) -> String {
    let mut t = Table::new(&["VNI", "IP", "MAC", "HOST"]);
    for m in ms {
        t.row(vec![
            m.vni.get().to_string(),
            m.ip.to_string(),
            m.guest_mac.to_string(),
            m.host.to_string(),
        ]);
    }
    t.render()
}

pub fn m2p(ms: &[M2pMapping]) -> String {
    let mut t = Table::new(&["VNI", "GROUP", "UNDERLAY"]);
    for m in ms {
        t.row(vec![
            m.vni.get().to_string(),
            m.group.to_string(),
            m.underlay.to_string(),
        ]);
    }
    t.render()
}

pub fn mcast_subs(ss: &[McastSub]) -> String {
    let mut t = Table::new(&["PORT", "GROUP", "SOURCES"]);
    for s in ss {
        let src: Vec<String> = s.sources.iter().map(|a| a.to_string()).collect();
        t.row(vec![
            s.port.clone(),
            s.group.to_string(),
            if src.is_empty() {
                "any".to_string()
            } else {
                src.join(",")
            },
        ]);
    }
    t.render()
}

pub fn mcast_fwd(fs: &[McastFwdEntry]) -> String {
    let mut t = Table::new(&["VNI", "GROUP", "NEXT-HOP", "REPLICATION"]);
    for f in fs {
        let r = overlay::mcast::Replication::from(f.replication);
        t.row(vec![
            f.vni.get().to_string(),
            f.group.to_string(),
            f.next_hop.to_string(),
            r.name().to_string(),
        ]);
    }
    t.render()
}

pub fn v2b(rs: &[V2bRoute]) -> String {
    let mut t = Table::new(&["VNI", "PREFIX", "ENDPOINTS"]);
    for r in rs {
        let eps: Vec<String> = r.endpoints.iter().map(|e| e.to_string()).collect();
        t.row(vec![
            r.vni.get().to_string(),
            r.prefix.to_string(),
            eps.join(","),
        ]);
    }
    t.render()
}

pub fn underlay(u: &UnderlayDoc) -> String {
    let mut t = Table::new(&[
        "UPLINK",
        "LINK",
        "IN USE",
        "LIVE",
        "MAC",
        "NEXT HOP",
        "RX",
        "TX",
        "TX DROPPED",
        "REWRITTEN",
        "DOWNS",
    ]);
    let yes = |b: bool| if b { "yes" } else { "no" }.to_string();
    for l in &u.uplinks {
        t.row(vec![
            l.name.clone(),
            if l.link_up { "up" } else { "down" }.into(),
            yes(l.in_use),
            yes(l.live()),
            l.mac.to_string(),
            l.next_hop_mac.to_string(),
            l.stats.rx.to_string(),
            l.stats.tx.to_string(),
            l.stats.tx_dropped.to_string(),
            l.stats.rewritten.to_string(),
            l.stats.link_downs.to_string(),
        ]);
    }
    format!("underlay address {}\n{}", u.address, t.render())
}

fn drops_table(ports: &[&PortStatsDoc], switch: &[DropCount]) -> String {
    let mut t = Table::new(&["PORT", "LAYER", "REASON", "COUNT"]);
    // The switch's drops happen before any port: no port to name.
    for d in switch {
        t.row(vec![
            "(switch)".into(),
            "switch".into(),
            d.reason.clone(),
            d.count.to_string(),
        ]);
    }
    for p in ports {
        for (layer, reason, n) in p.drops_by_layer() {
            t.row(vec![
                p.name.clone(),
                layer.unwrap_or_else(|| "-".into()),
                reason,
                n.to_string(),
            ]);
        }
    }
    if t.is_empty() {
        "Drops: none\n".into()
    } else {
        format!("Drops by reason\n{}", t.render())
    }
}

/// The devices' own drops (non-zero only), per worker and device.
fn devices_table(workers: &[WorkerStatsDoc]) -> String {
    let mut t = Table::new(&["WORKER", "DEVICE", "REASON", "COUNT"]);
    for w in workers {
        for d in &w.devices {
            for c in d.drops.iter().filter(|c| c.count > 0) {
                t.row(vec![
                    w.worker.to_string(),
                    d.device.clone(),
                    c.reason.clone(),
                    c.count.to_string(),
                ]);
            }
        }
    }
    let drops = if t.is_empty() {
        "Devices: no drops\n".into()
    } else {
        format!("Devices\n{}", t.render())
    };
    drops + &device_counters_table(workers)
}

/// The devices' other counters (UDP GSO sends, vhost-user offloads...),
/// non-zero only, per worker and device; nothing when all are zero.
fn device_counters_table(workers: &[WorkerStatsDoc]) -> String {
    let mut t = Table::new(&["WORKER", "DEVICE", "COUNTER", "COUNT"]);
    for w in workers {
        for d in &w.device_counters {
            for c in d.counters.iter().filter(|c| c.count > 0) {
                t.row(vec![
                    w.worker.to_string(),
                    d.device.clone(),
                    c.name.clone(),
                    c.count.to_string(),
                ]);
            }
        }
    }
    if t.is_empty() {
        String::new()
    } else {
        format!("Device counters\n{}", t.render())
    }
}

/// Every worker's switch drops added up, by reason (first seen first).
fn switch_drops(workers: &[WorkerStatsDoc]) -> Vec<DropCount> {
    let mut all: Vec<DropCount> = Vec::new();
    for d in workers.iter().flat_map(|w| &w.drops) {
        match all.iter_mut().find(|a| a.reason == d.reason) {
            Some(a) => a.count += d.count,
            None => all.push(d.clone()),
        }
    }
    all
}

/// One row per port: packets, bytes, flows, drops.
fn ports_counters(ports: &[&PortStatsDoc]) -> String {
    let mut t = Table::new(&[
        "PORT",
        "PKTS-OUT",
        "PKTS-IN",
        "BYTES-OUT",
        "BYTES-IN",
        "FLOWS",
        "UFT-OUT",
        "UFT-IN",
        "DROPS",
    ]);
    for p in ports {
        let (i, o) = (&p.stats.inbound, &p.stats.outbound);
        let drops: u64 = p.drops.iter().map(|d| d.count).sum();
        t.row(vec![
            p.name.clone(),
            o.packets.to_string(),
            i.packets.to_string(),
            o.bytes.to_string(),
            i.bytes.to_string(),
            format!("{}/{}", p.flows, p.flow_limit),
            p.uft_out.to_string(),
            p.uft_in.to_string(),
            drops.to_string(),
        ]);
    }
    let mut out = t.render();
    out += &guest_failures(ports.iter().map(|p| (&p.name, p.guest_error.as_deref())));
    out
}

pub fn port_stats(p: &PortStatsDoc) -> String {
    let mut out = format!(
        "Port {}: flows {}/{} (UFT out {}, in {}); created {}, expired {}, evicted {}\n",
        p.name,
        p.flows,
        p.flow_limit,
        p.uft_out,
        p.uft_in,
        p.stats.flows_created,
        p.stats.flows_expired,
        p.stats.flows_evicted,
    );
    out += &guest_failures(std::iter::once((&p.name, p.guest_error.as_deref())));
    let mut t = Table::new(&[
        "DIR",
        "PACKETS",
        "BYTES",
        "UFT-HITS",
        "UFT-MISSES",
        "FORWARDED",
        "HAIRPINS",
        "DROPPED",
    ]);
    for (dir, d) in [("out", &p.stats.outbound), ("in", &p.stats.inbound)] {
        t.row(vec![
            dir.into(),
            d.packets.to_string(),
            d.bytes.to_string(),
            d.uft_hits.to_string(),
            d.uft_misses.to_string(),
            d.forwarded.to_string(),
            d.hairpins.to_string(),
            d.dropped.to_string(),
        ]);
    }
    out += &t.render();
    out += "\n";
    out += &drops_table(&[p], &[]);
    out += "\nLayers (slow path)\n";
    let mut t = Table::new(&[
        "LAYER",
        "DIR",
        "PACKETS",
        "LFT-HITS",
        "DEFAULT-HITS",
        "DROPPED",
        "HAIRPINS",
    ]);
    for l in &p.layers {
        t.row(vec![
            l.layer.clone(),
            match l.dir {
                Dir::Out => "out".into(),
                Dir::In => "in".into(),
            },
            l.stats.packets.to_string(),
            l.stats.lft_hits.to_string(),
            l.stats.default_hits.to_string(),
            l.stats.dropped.to_string(),
            l.stats.hairpins.to_string(),
        ]);
    }
    out += &t.render();
    out
}

/// The switch counters that are not zero, `name value` pairs.
fn switch_counters(v: &SwitchStats) -> String {
    let parts: Vec<String> = v
        .counters()
        .iter()
        .filter(|(_, x)| *x != 0)
        .map(|(k, x)| format!("{k} {x}"))
        .collect();
    if parts.is_empty() {
        "-".into()
    } else {
        parts.join(", ")
    }
}

pub fn host_stats(h: &HostStats) -> String {
    let ports: Vec<&PortStatsDoc> = h.ports.iter().collect();
    let mut out = ports_counters(&ports);
    out += "\n";
    out += &drops_table(&ports, &switch_drops(&h.workers));
    out += "\n";
    let mut t = Table::new(&["WORKER", "PORTS", "BUSY", "ROUNDS", "SLEEPS", "SWITCH"]);
    for w in &h.workers {
        t.row(vec![
            w.worker.to_string(),
            w.ports.to_string(),
            format!("{:.1}%", w.busy_ratio * 100.0),
            w.rounds.to_string(),
            w.sleeps.to_string(),
            switch_counters(&w.switch),
        ]);
    }
    out += &t.render();
    out += "\n";
    out += &devices_table(&h.workers);
    out += &format!(
        "\nV2P {}/{} mappings, V2B {}/{} routes\n",
        h.v2p.entries, h.v2p.limit, h.v2b.entries, h.v2b.limit
    );
    out
}

/// A transform document in one line: `ip.src=203.0.113.10 l4.src=2048
/// encap(fd00:99::a>fd00:99::100 vni 7777 opts ff590100)`: inner headers
/// first, outer last, as the packet is built.
pub fn transform(t: Option<&TransformDoc>) -> String {
    let Some(t) = t else {
        return "-".into();
    };
    let TransformDoc {
        decap,
        eth_src,
        eth_dst,
        ip_src,
        ip_dst,
        l4_src,
        l4_dst,
        encap,
        icmp_ident,
        expect_outer_src,
    } = t;
    let mut parts = Vec::new();
    if *decap {
        parts.push("decap".to_string());
    }
    let mut field = |name: &str, v: Option<String>| {
        if let Some(v) = v {
            parts.push(format!("{name}={v}"));
        }
    };
    // eth_src reads eth.src, as the UFT's transforms do.
    field("eth.src", eth_src.map(|m| m.to_string()));
    field("eth.dst", eth_dst.map(|m| m.to_string()));
    field("ip.src", ip_src.map(|a| a.to_string()));
    field("ip.dst", ip_dst.map(|a| a.to_string()));
    field("l4.src", l4_src.map(|p| p.to_string()));
    field("l4.dst", l4_dst.map(|p| p.to_string()));
    field("icmp_ident", icmp_ident.map(|p| p.to_string()));
    field("expect_outer_src", expect_outer_src.map(|a| a.to_string()));
    if let Some(e) = encap {
        let mut p = format!("encap({}>{} vni {}", e.ip_src, e.ip_dst, e.vni.get());
        if !e.options.is_empty() {
            p += &format!(" opts {}", e.options);
        }
        parts.push(p + ")");
    }
    if parts.is_empty() {
        "-".into()
    } else {
        parts.join(" ")
    }
}

pub fn trace(r: &TraceResponse) -> String {
    let mut t = Table::new(&["LAYER", "MATCHED", "ACTION", "TRANSFORM"]);
    for st in &r.trace.steps {
        t.row(vec![
            st.layer.clone(),
            st.matched.clone(),
            st.action.clone(),
            transform(st.transform.as_ref()),
        ]);
    }
    let mut out = t.render();
    out += &format!("\nverdict: {}\n", r.trace.verdict);
    if let Some(input) = crate::trace::unhex(&r.input_hex) {
        out += &format!("input:   {}\n", summary::frame(&input));
    }
    match r.trace.output.as_deref().and_then(crate::trace::unhex) {
        Some(o) => out += &format!("output:  {}\n", summary::frame(&o)),
        None => out += "output:  -\n",
    }
    out
}

pub fn replay(r: &ReplayReport) -> String {
    let mut out = format!(
        "Replayed {} frames ({:.3} s of capture)\n",
        r.frames, r.duration_secs
    );
    let mut t = Table::new(&["ENDPOINT", "FRAMES-IN", "FRAMES-OUT", "OUTPUT"]);
    for e in &r.endpoints {
        t.row(vec![
            e.name.clone(),
            e.frames_in.to_string(),
            e.frames_out.to_string(),
            e.output
                .as_ref()
                .map_or("-".into(), |p| p.display().to_string()),
        ]);
    }
    out += &t.render();
    out += "\n";
    let ports: Vec<&PortStatsDoc> = r.ports.iter().collect();
    out += &ports_counters(&ports);
    out += "\n";
    out += &drops_table(&ports, &r.switch_drops);
    out += &format!("\nSwitch: {}\n", switch_counters(&r.switch));
    if !r.frames_fate.is_empty() {
        let mut t = Table::new(&["FROM", "FRAME", "AT(s)", "FATE", "TO", "DROPS"]);
        for f in &r.frames_fate {
            let drops: Vec<String> = f
                .drops
                .iter()
                .map(|d| match &d.layer {
                    Some(l) => format!("{} at {} {l}", d.reason, d.at),
                    None => format!("{} at {}", d.reason, d.at),
                })
                .collect();
            t.row(vec![
                f.endpoint.clone(),
                f.frame.to_string(),
                format!("{:.6}", f.at_secs),
                f.fate.to_string(),
                if f.to.is_empty() {
                    "-".into()
                } else {
                    f.to.join(",")
                },
                if drops.is_empty() {
                    "-".into()
                } else {
                    drops.join("; ")
                },
            ]);
        }
        out += "\n";
        out += &t.render();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{DeviceCounters, DeviceDrops};

    #[test]
    fn the_devices_table_shows_nonzero_drops_and_counters() {
        let w = WorkerStatsDoc {
            worker: 1,
            ports: 2,
            busy_ratio: 0.0,
            busy_ns: 0,
            idle_ns: 0,
            rounds: 0,
            sleeps: 0,
            switch: Default::default(),
            drops: Vec::new(),
            devices: vec![DeviceDrops::from_counts(
                "uplink",
                &[("rx_ring_full", 0), ("tx_refused", 3)],
            )],
            device_counters: vec![DeviceCounters::from_counts(
                "vm1",
                &[("tx_gso_frames", 7), ("tx_gso_cut", 0)],
            )],
        };
        let out = devices_table(std::slice::from_ref(&w));
        assert!(
            out.contains("tx_refused") && !out.contains("rx_ring_full"),
            "{out}"
        );
        assert!(out.contains("Device counters"), "{out}");
        assert!(
            out.contains("tx_gso_frames") && !out.contains("tx_gso_cut"),
            "{out}"
        );
        let idle = WorkerStatsDoc {
            devices: Vec::new(),
            device_counters: vec![DeviceCounters::from_counts("vm1", &[("tx_gso_frames", 0)])],
            ..w
        };
        assert_eq!(devices_table(&[idle]), "Devices: no drops\n");
    }
}
