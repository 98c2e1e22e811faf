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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{DeviceDrops, DropCount, TableSize, WorkerStatsDoc};

    #[test]
    fn device_and_switch_drops_are_exported_by_worker_device_and_reason() {
        let s = HostStats {
            ports: Vec::new(),
            workers: vec![WorkerStatsDoc {
                worker: 1,
                ports: 0,
                busy_ratio: 0.0,
                rounds: 0,
                sleeps: 0,
                switch: serde_json::json!({}),
                drops: DropCount::list(&[("geneve_control", 3), ("wrong_vni", 0)]),
                devices: vec![DeviceDrops::from_counts(
                    "uplink",
                    &[("socket_drops", 28046), ("tx_errors", 0)],
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
        };
        let text = render(&s);
        for line in [
            "sluice_drops_total{layer=\"switch\",worker=\"1\",reason=\"geneve_control\"} 3",
            "sluice_device_drops_total{worker=\"1\",device=\"uplink\",reason=\"socket_drops\"} 28046",
            // A device's counters are exported from zero, so a rate works
            // from the first scrape.
            "sluice_device_drops_total{worker=\"1\",device=\"uplink\",reason=\"tx_errors\"} 0",
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
