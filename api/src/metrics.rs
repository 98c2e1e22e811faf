//! Prometheus text exposition of a host's counters: per port and
//! direction packets and bytes, per layer hits, per drop reason, flow
//! table occupancy and limits, V2P/V2B occupancy, per worker busy ratio.

use crate::types::{Dir, HostStats, PortCounters};
use dataplane::layer::LayerDirStats;
use dataplane::port::DirStats;
use std::fmt::Write;

/// A label value escaped as the exposition format wants it.
pub(crate) fn esc(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The name and help of the family each per-direction port counter
/// ([`dataplane::port::DirStats`]) is exported as.
fn port_dir_family(counter: &str) -> (String, String) {
    let help = match counter {
        "packets" => "Packets a port processed, by direction.",
        "bytes" => "Bytes a port processed, by direction.",
        "uft_hits" => "Packets that hit the unified flow table.",
        "uft_misses" => "Packets that missed the unified flow table (the layers decided them).",
        "forwarded" => "Packets a port forwarded, by direction.",
        "hairpins" => "Packets a port answered itself (a hairpin reply), by direction.",
        "dropped" => "Packets a port dropped, by direction (by reason: sluice_drops_total).",
        _ => "A port counter, by direction.",
    };
    (format!("sluice_port_{counter}_total"), help.to_string())
}

/// The family each per-port flow counter ([`PortCounters::flow_counters`])
/// is exported as.
fn port_flow_family(counter: &str) -> (String, String) {
    let help = match counter {
        "flows_created" => "Flows a port created.",
        "flows_expired" => "Flows that expired.",
        "flows_evicted" => "Half-open flows evicted to make room for a new flow.",
        "revalidations" => "Flows re-checked after a rule change.",
        "related" => "ICMP errors passed as part of the flow they are about.",
        "slow_path_ns" => {
            "Nanoseconds a port spent on packets that missed the flow table (layer walks, flow set-up)."
        }
        _ => "A port's flow counter.",
    };
    (format!("sluice_port_{counter}_total"), help.to_string())
}

/// The family each per-layer counter ([`dataplane::layer::LayerDirStats`])
/// is exported as.
fn layer_family(counter: &str) -> (String, String) {
    let help = match counter {
        "packets" => "Packets a layer decided (slow path), by direction.",
        "lft_hits" => "Packets that found state in the layer's flow table.",
        "default_hits" => "Packets no rule of the layer matched.",
        "dropped" => "Packets the layer dropped.",
        "denied" => "Packets a deny rule of the layer dropped.",
        "default_denied" => "Packets the layer's default dropped.",
        "hairpins" => "Packets the layer answered with a hairpin.",
        _ => "A layer counter, by direction.",
    };
    (format!("sluice_layer_{counter}_total"), help.to_string())
}

/// The family each device counter ([`crate::types::DeviceCounters`], not
/// a drop) is exported as.
fn device_family(counter: &str) -> (String, String) {
    let help = match counter {
        "tx_udp_gso" => "UDP GSO sends: super-frames the kernel cut into datagrams.",
        "udp_gso_refused" => {
            "UDP GSO sends the kernel refused (the device cuts super-frames from then on)."
        }
        "udp_gro_frames" => "UDP aggregates (GRO) a device received and split into datagrams.",
        "udp_gro_datagrams" => "Datagrams split from received UDP aggregates.",
        "tx_gso_frames" => "TCP super-frames a vhost-user guest took whole (GUEST_TSO).",
        "tx_gso_cut" => {
            "TCP super-frames cut for a vhost-user guest that could not take them whole."
        }
        "tx_gso_segments" => "Segments cut from super-frames for vhost-user guests.",
        "tx_buffers" => "Receive buffers (descriptor chains) frames for a vhost-user guest filled.",
        _ => "A device counter, by worker and device.",
    };
    (format!("sluice_device_{counter}_total"), help.to_string())
}

pub fn render(s: &HostStats) -> String {
    let mut o = String::new();
    let family = |o: &mut String, name: &str, kind: &str, help: &str| {
        let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}");
    };
    // Every engine counter of a port, by its own name: the list comes
    // from the typed counters, so a new or renamed one is exported under
    // its name rather than missed.
    let dir_names = DirStats::default().counters().map(|(k, _)| k);
    for (i, name) in dir_names.iter().enumerate() {
        let (fam, help) = port_dir_family(name);
        family(&mut o, &fam, "counter", &help);
        for p in &s.ports {
            for (d, label) in [(Dir::In, "in"), (Dir::Out, "out")] {
                let (_, v) = p.stats.dir(d).counters()[i];
                let _ = writeln!(o, "{fam}{{port=\"{}\",dir=\"{label}\"}} {v}", esc(&p.name));
            }
        }
    }
    let flow_names = PortCounters::default().flow_counters().map(|(k, _)| k);
    for (i, name) in flow_names.iter().enumerate() {
        let (fam, help) = port_flow_family(name);
        family(&mut o, &fam, "counter", &help);
        for p in &s.ports {
            let (_, v) = p.stats.flow_counters()[i];
            let _ = writeln!(o, "{fam}{{port=\"{}\"}} {v}", esc(&p.name));
        }
    }
    family(
        &mut o,
        "sluice_port_guest_failed",
        "gauge",
        "1 when the port's guest device could not be opened (retried), else 0.",
    );
    for p in &s.ports {
        let _ = writeln!(
            o,
            "sluice_port_guest_failed{{port=\"{}\"}} {}",
            esc(&p.name),
            u8::from(p.guest_error.is_some())
        );
    }
    let layer_names = LayerDirStats::default().counters().map(|(k, _)| k);
    for (i, name) in layer_names.iter().enumerate() {
        let (fam, help) = layer_family(name);
        family(&mut o, &fam, "counter", &help);
        for p in &s.ports {
            for l in &p.layers {
                let d = match l.dir {
                    Dir::In => "in",
                    Dir::Out => "out",
                };
                let (_, v) = l.stats.counters()[i];
                let _ = writeln!(
                    o,
                    "{fam}{{port=\"{}\",layer=\"{}\",dir=\"{d}\"}} {v}",
                    esc(&p.name),
                    esc(&l.layer)
                );
            }
        }
    }
    family(
        &mut o,
        "sluice_drops_total",
        "counter",
        "Packets dropped, by reason: by a port (port label), or by a worker's switch before any port (layer=\"switch\", worker label).",
    );
    for w in &s.workers {
        for crate::types::DropCount { reason, count } in &w.drops {
            let _ = writeln!(
                o,
                "sluice_drops_total{{layer=\"switch\",worker=\"{}\",reason=\"{}\"}} {count}",
                w.worker,
                esc(reason)
            );
        }
    }
    for p in &s.ports {
        for (layer, r, n) in p.drops_by_layer() {
            match layer {
                Some(l) => {
                    let _ = writeln!(
                        o,
                        "sluice_drops_total{{port=\"{}\",layer=\"{}\",reason=\"{}\"}} {n}",
                        esc(&p.name),
                        esc(&l),
                        esc(&r)
                    );
                }
                None => {
                    let _ = writeln!(
                        o,
                        "sluice_drops_total{{port=\"{}\",reason=\"{}\"}} {n}",
                        esc(&p.name),
                        esc(&r)
                    );
                }
            }
        }
    }
    family(
        &mut o,
        "sluice_device_drops_total",
        "counter",
        "Frames a device lost or refused before the switch saw them (a full socket ring, a guest without buffers, a NIC's missed frames), by worker, device and reason.",
    );
    for w in &s.workers {
        for d in &w.devices {
            for c in &d.drops {
                let _ = writeln!(
                    o,
                    "sluice_device_drops_total{{worker=\"{}\",device=\"{}\",reason=\"{}\"}} {}",
                    w.worker,
                    esc(&d.device),
                    esc(&c.reason),
                    c.count
                );
            }
        }
    }
    // A family per counter name, in the order the devices first report
    // them; every device reporting it under it.
    let mut device_counter_names: Vec<&str> = Vec::new();
    for d in s.workers.iter().flat_map(|w| &w.device_counters) {
        for c in &d.counters {
            if !device_counter_names.contains(&c.name.as_str()) {
                device_counter_names.push(&c.name);
            }
        }
    }
    for name in device_counter_names {
        let (fam, help) = device_family(name);
        family(&mut o, &fam, "counter", &help);
        for w in &s.workers {
            for d in &w.device_counters {
                for c in d.counters.iter().filter(|c| c.name == name) {
                    let _ = writeln!(
                        o,
                        "{fam}{{worker=\"{}\",device=\"{}\"}} {}",
                        w.worker,
                        esc(&d.device),
                        c.count
                    );
                }
            }
        }
    }
    family(&mut o, "sluice_flows", "gauge", "Live flows of a port.");
    for p in &s.ports {
        let _ = writeln!(o, "sluice_flows{{port=\"{}\"}} {}", esc(&p.name), p.flows);
    }
    family(
        &mut o,
        "sluice_flow_limit",
        "gauge",
        "The flow limit of a port.",
    );
    for p in &s.ports {
        let _ = writeln!(
            o,
            "sluice_flow_limit{{port=\"{}\"}} {}",
            esc(&p.name),
            p.flow_limit
        );
    }
    family(
        &mut o,
        "sluice_table_entries",
        "gauge",
        "Entries of a host table.",
    );
    let tables = [
        ("v2p", &s.v2p),
        ("v2b", &s.v2b),
        ("m2p", &s.m2p),
        ("mcast_subs", &s.mcast_subs),
        ("mcast_fwd", &s.mcast_fwd),
    ];
    for (name, t) in tables {
        let _ = writeln!(o, "sluice_table_entries{{table=\"{name}\"}} {}", t.entries);
    }
    family(
        &mut o,
        "sluice_table_limit",
        "gauge",
        "The limit of a host table.",
    );
    for (name, t) in tables {
        let _ = writeln!(o, "sluice_table_limit{{table=\"{name}\"}} {}", t.limit);
    }
    family(
        &mut o,
        "sluice_worker_busy_ratio",
        "gauge",
        "Share of its time a worker spent moving packets.",
    );
    for w in &s.workers {
        let _ = writeln!(
            o,
            "sluice_worker_busy_ratio{{worker=\"{}\"}} {:.6}",
            w.worker, w.busy_ratio
        );
    }
    family(
        &mut o,
        "sluice_worker_busy_seconds_total",
        "counter",
        "Time a worker spent in rounds that moved frames; with sluice_worker_idle_seconds_total, the busy ratio over any window.",
    );
    for w in &s.workers {
        let _ = writeln!(
            o,
            "sluice_worker_busy_seconds_total{{worker=\"{}\"}} {:.6}",
            w.worker,
            w.busy_ns as f64 / 1e9
        );
    }
    family(
        &mut o,
        "sluice_worker_idle_seconds_total",
        "counter",
        "Time a worker was alive and not busy (polling empty devices or asleep).",
    );
    for w in &s.workers {
        let _ = writeln!(
            o,
            "sluice_worker_idle_seconds_total{{worker=\"{}\"}} {:.6}",
            w.worker,
            w.idle_ns as f64 / 1e9
        );
    }
    family(
        &mut o,
        "sluice_switch_frames_total",
        "counter",
        "Frames the switch handled or refused, by worker and kind.",
    );
    for w in &s.workers {
        for (k, v) in w.switch.counters() {
            let _ = writeln!(
                o,
                "sluice_switch_frames_total{{worker=\"{}\",kind=\"{k}\"}} {v}",
                w.worker
            );
        }
    }
    uplinks(&mut o, s);
    o
}

/// Each uplink's counters (summed over the workers), link state and use.
fn uplinks(o: &mut String, s: &HostStats) {
    let _ = writeln!(
        o,
        "# HELP sluice_uplink_frames_total Frames an underlay uplink received, sent, failed to send or sent with its own outer MACs (rewritten), and its link's transitions (link_downs, link_ups), by uplink and kind.\n# TYPE sluice_uplink_frames_total counter"
    );
    for u in &s.uplinks {
        for (k, v) in u.stats.counters() {
            let _ = writeln!(
                o,
                "sluice_uplink_frames_total{{uplink=\"{}\",kind=\"{k}\"}} {v}",
                esc(&u.name)
            );
        }
    }
    for (fam, help, f) in [
        (
            "sluice_uplink_link_up",
            "1 when an uplink's link is up (carrier, or the NIC's link status).",
            (|u: &crate::types::UplinkDoc| u.link_up) as fn(&crate::types::UplinkDoc) -> bool,
        ),
        (
            "sluice_uplink_in_use",
            "1 when an uplink is chosen to carry traffic (sluiceadm set-underlay).",
            |u| u.in_use,
        ),
        (
            "sluice_uplink_live",
            "1 when an uplink carries traffic now (link up and in use).",
            |u| u.live(),
        ),
    ] {
        let _ = writeln!(o, "# HELP {fam} {help}\n# TYPE {fam} gauge");
        for u in &s.uplinks {
            let _ = writeln!(o, "{fam}{{uplink=\"{}\"}} {}", esc(&u.name), u8::from(f(u)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{
        DeviceCounters, DeviceDrops, DropCount, LayerStatsDoc, PortStatsDoc, TableSize,
        WorkerStatsDoc,
    };
    use dataplane::port::PortStats;
    use dataplane::DropReason;
    use serde::de::DeserializeOwned;
    use serde::Serialize;
    use vmm_net::switch::SwitchStats;

    /// A counters struct whose every field (by its serialized name) holds
    /// a distinct value from `base`, and those names and values: built
    /// through serde, so the names are the wire's, not the ones the
    /// exporter lists.
    fn numbered<T: Default + Serialize + DeserializeOwned>(base: u64) -> (T, Vec<(String, u64)>) {
        let mut doc = serde_json::to_value(T::default()).unwrap();
        let serde_json::Value::Object(fields) = &mut doc else {
            panic!("counters serialize as an object, not {doc}");
        };
        let mut want = Vec::new();
        for (i, (k, v)) in fields.iter_mut().enumerate() {
            // Nested per-direction counters are filled by their own type.
            if v.is_object() {
                continue;
            }
            let n = base + i as u64;
            *v = n.into();
            want.push((k.clone(), n));
        }
        (serde_json::from_value(doc).unwrap(), want)
    }

    /// Every counter the engine keeps (a port's per direction and per
    /// flow table, a layer's, the switch's, every drop reason) is in
    /// `/metrics` under its own name and with its value: a counter
    /// renamed or added in the engine is exported, never silently 0.
    #[test]
    fn every_engine_counter_is_exported_under_its_name() {
        let (inbound, dir_in) = numbered::<DirStats>(100);
        let (outbound, dir_out) = numbered::<DirStats>(200);
        let (mut counters, flows) = numbered::<PortCounters>(300);
        counters.inbound = inbound;
        counters.outbound = outbound;
        let (layer, layer_want) = numbered::<LayerDirStats>(400);
        let (switch, switch_want) = numbered::<SwitchStats>(500);
        let (uplink, uplink_want) = numbered::<vmm_net::uplinks::UplinkStats>(700);
        let mut engine = PortStats::default();
        for (i, d) in engine.drops.iter_mut().enumerate() {
            *d = 600 + i as u64;
        }
        let port = PortStatsDoc {
            name: "p".into(),
            flows: 0,
            flow_limit: 1,
            uft_in: 0,
            uft_out: 0,
            stats: counters,
            layers: vec![LayerStatsDoc {
                layer: "firewall".into(),
                dir: Dir::Out,
                stats: layer,
            }],
            drops: DropCount::list(&engine.drop_counts()),
            guest_error: None,
        };
        let s = HostStats {
            ports: vec![port],
            workers: vec![WorkerStatsDoc {
                worker: 0,
                ports: 1,
                busy_ratio: 0.25,
                busy_ns: 1_500_000_000,
                idle_ns: 4_500_000_000,
                rounds: 0,
                sleeps: 0,
                switch,
                drops: Vec::new(),
                devices: Vec::new(),
                device_counters: Vec::new(),
            }],
            v2p: TableSize {
                entries: 0,
                limit: 1,
            },
            v2b: TableSize {
                entries: 0,
                limit: 1,
            },
            m2p: TableSize::default(),
            mcast_subs: TableSize::default(),
            mcast_fwd: TableSize::default(),
            uplinks: vec![crate::types::UplinkDoc {
                name: "eth2".into(),
                link_up: false,
                in_use: true,
                mac: vnic::config::MacAddr([2, 0, 0, 0, 0, 0x11]),
                next_hop_mac: vnic::config::MacAddr([2, 0, 0, 0, 0, 0x21]),
                stats: uplink,
            }],
        };
        let text = render(&s);
        let has = |line: String| {
            assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
        };
        has("sluice_worker_busy_seconds_total{worker=\"0\"} 1.500000".into());
        has("sluice_worker_idle_seconds_total{worker=\"0\"} 4.500000".into());
        assert_eq!(dir_in.len(), 7, "{dir_in:?}");
        for (k, v) in dir_in {
            has(format!(
                "sluice_port_{k}_total{{port=\"p\",dir=\"in\"}} {v}"
            ));
        }
        for (k, v) in dir_out {
            has(format!(
                "sluice_port_{k}_total{{port=\"p\",dir=\"out\"}} {v}"
            ));
        }
        assert_eq!(flows.len(), 6, "{flows:?}");
        for (k, v) in flows {
            has(format!("sluice_port_{k}_total{{port=\"p\"}} {v}"));
        }
        for (k, v) in layer_want {
            has(format!(
                "sluice_layer_{k}_total{{port=\"p\",layer=\"firewall\",dir=\"out\"}} {v}"
            ));
        }
        assert_eq!(switch_want.len(), 16, "{switch_want:?}");
        for (k, v) in switch_want {
            has(format!(
                "sluice_switch_frames_total{{worker=\"0\",kind=\"{k}\"}} {v}"
            ));
        }
        assert_eq!(uplink_want.len(), 6, "{uplink_want:?}");
        for (k, v) in uplink_want {
            has(format!(
                "sluice_uplink_frames_total{{uplink=\"eth2\",kind=\"{k}\"}} {v}"
            ));
        }
        has("sluice_uplink_link_up{uplink=\"eth2\"} 0".into());
        has("sluice_uplink_in_use{uplink=\"eth2\"} 1".into());
        has("sluice_uplink_live{uplink=\"eth2\"} 0".into());
        // A reason may be split by the layer that decided it (`denied`,
        // `default_denied`): its lines add up to its count.
        let mut reasons = 0;
        for (i, r) in DropReason::all().enumerate() {
            reasons += 1;
            let tail = format!("reason=\"{}\"}}", r.name());
            let sum: u64 = text
                .lines()
                .filter(|l| l.starts_with("sluice_drops_total{port=\"p\","))
                .filter_map(|l| l.split_once(' '))
                .filter(|(labels, _)| labels.ends_with(&tail))
                .map(|(_, v)| v.parse::<u64>().unwrap())
                .sum();
            assert_eq!(sum, 600 + i as u64, "{} in\n{text}", r.name());
        }
        assert!(reasons > 10, "{reasons} drop reasons");
    }

    #[test]
    fn device_and_switch_drops_are_exported_by_worker_device_and_reason() {
        let s = HostStats {
            ports: Vec::new(),
            workers: vec![WorkerStatsDoc {
                worker: 1,
                ports: 0,
                busy_ratio: 0.0,
                busy_ns: 0,
                idle_ns: 0,
                rounds: 0,
                sleeps: 0,
                switch: Default::default(),
                drops: DropCount::list(&[("geneve_control", 3), ("wrong_vni", 0)]),
                devices: vec![DeviceDrops::from_counts(
                    "uplink",
                    &[("socket_drops", 28046), ("tx_errors", 0)],
                )],
                device_counters: vec![DeviceCounters::from_counts(
                    "uplink",
                    &[
                        ("tx_udp_gso", 812),
                        ("udp_gso_refused", 0),
                        ("udp_gro_frames", 97),
                        ("udp_gro_datagrams", 1204),
                    ],
                )],
            }],
            v2p: TableSize {
                entries: 0,
                limit: 1,
            },
            v2b: TableSize {
                entries: 0,
                limit: 1,
            },
            m2p: TableSize::default(),
            mcast_subs: TableSize::default(),
            mcast_fwd: TableSize::default(),
            uplinks: Vec::new(),
        };
        let text = render(&s);
        for line in [
            "sluice_drops_total{layer=\"switch\",worker=\"1\",reason=\"geneve_control\"} 3",
            "sluice_device_drops_total{worker=\"1\",device=\"uplink\",reason=\"socket_drops\"} 28046",
            // A device's counters are exported from zero, so a rate works
            // from the first scrape.
            "sluice_device_drops_total{worker=\"1\",device=\"uplink\",reason=\"tx_errors\"} 0",
            // The uplink's other counters, a family each, zeros included.
            "sluice_device_tx_udp_gso_total{worker=\"1\",device=\"uplink\"} 812",
            "sluice_device_udp_gso_refused_total{worker=\"1\",device=\"uplink\"} 0",
            "sluice_device_udp_gro_frames_total{worker=\"1\",device=\"uplink\"} 97",
            "sluice_device_udp_gro_datagrams_total{worker=\"1\",device=\"uplink\"} 1204",
            "# TYPE sluice_device_tx_udp_gso_total counter",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
        }
        assert!(
            !text.contains("wrong_vni"),
            "zero switch drops are not listed"
        );
        let table = crate::cli::show::host_stats(&s);
        assert!(
            table
                .lines()
                .any(|l| l.split_whitespace().collect::<Vec<_>>()
                    == ["1", "uplink", "socket_drops", "28046"]),
            "{table}"
        );
    }
}
