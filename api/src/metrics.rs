//! Prometheus text exposition of a host's counters: per port and
//! direction packets and bytes, per layer hits, per drop reason, flow
//! table occupancy and limits, V2P/V2B occupancy, per worker busy ratio.

use crate::types::HostStats;
use std::fmt::Write;

fn esc(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn u(v: &serde_json::Value, path: &[&str]) -> u64 {
    let mut v = v;
    for p in path {
        v = &v[*p];
    }
    v.as_u64().unwrap_or(0)
}

pub fn render(s: &HostStats) -> String {
    let mut o = String::new();
    let family = |o: &mut String, name: &str, kind: &str, help: &str| {
        let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}");
    };
    family(
        &mut o,
        "sluice_port_packets_total",
        "counter",
        "Packets a port processed, by direction.",
    );
    for p in &s.ports {
        for d in ["in", "out"] {
            let _ = writeln!(
                o,
                "sluice_port_packets_total{{port=\"{}\",dir=\"{d}\"}} {}",
                esc(&p.name),
                u(&p.stats, &[d, "packets"])
            );
        }
    }
    family(
        &mut o,
        "sluice_port_bytes_total",
        "counter",
        "Bytes a port processed, by direction.",
    );
    for p in &s.ports {
        for d in ["in", "out"] {
            let _ = writeln!(
                o,
                "sluice_port_bytes_total{{port=\"{}\",dir=\"{d}\"}} {}",
                esc(&p.name),
                u(&p.stats, &[d, "bytes"])
            );
        }
    }
    family(
        &mut o,
        "sluice_port_uft_hits_total",
        "counter",
        "Packets that hit the unified flow table.",
    );
    for p in &s.ports {
        for d in ["in", "out"] {
            let _ = writeln!(
                o,
                "sluice_port_uft_hits_total{{port=\"{}\",dir=\"{d}\"}} {}",
                esc(&p.name),
                u(&p.stats, &[d, "uft_hits"])
            );
        }
    }
    family(
        &mut o,
        "sluice_layer_packets_total",
        "counter",
        "Packets a layer decided (slow path), by direction.",
    );
    for p in &s.ports {
        for l in &p.layers {
            let d = match l.dir {
                crate::types::Dir::In => "in",
                crate::types::Dir::Out => "out",
            };
            let _ = writeln!(
                o,
                "sluice_layer_packets_total{{port=\"{}\",layer=\"{}\",dir=\"{d}\"}} {}",
                esc(&p.name),
                esc(&l.layer),
                u(&l.stats, &["packets"])
            );
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
    let _ = writeln!(o, "sluice_table_entries{{table=\"v2p\"}} {}", s.v2p.entries);
    let _ = writeln!(o, "sluice_table_entries{{table=\"v2b\"}} {}", s.v2b.entries);
    family(
        &mut o,
        "sluice_table_limit",
        "gauge",
        "The limit of a host table.",
    );
    let _ = writeln!(o, "sluice_table_limit{{table=\"v2p\"}} {}", s.v2p.limit);
    let _ = writeln!(o, "sluice_table_limit{{table=\"v2b\"}} {}", s.v2b.limit);
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
        "sluice_switch_frames_total",
        "counter",
        "Frames the switch handled or refused, by worker and kind.",
    );
    for w in &s.workers {
        if let Some(m) = w.switch.as_object() {
            for (k, v) in m {
                let _ = writeln!(
                    o,
                    "sluice_switch_frames_total{{worker=\"{}\",kind=\"{}\"}} {}",
                    w.worker,
                    esc(k),
                    v.as_u64().unwrap_or(0)
                );
            }
        }
    }
    o
}
