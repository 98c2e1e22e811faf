//! The flow-log exporter: a thread that every 200 ms drains every port's
//! flow-record queue ([`dataplane::FlowLog`], shared with the port, so
//! the workers are never asked) and sends the records as IPFIX over UDP
//! ([`crate::ipfix`]) and/or appends them as JSON lines to a file.
//!
//! Export never holds a port back: a slow collector or a full disk loses
//! records here (counted as export errors), and a port whose queue fills
//! between two drains drops records there (counted by the port).

use crate::config::FlowLogsSection;
use crate::ipfix::{Encoder, Exported};
use crate::lock;
use crate::metrics::esc;
use dataplane::{Direction, FlowLog, FlowRecord, Port};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::net::UdpSocket;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How often the queues are drained: short enough that a queue of 4096
/// records holds 20 000 flow ends a second, long enough to batch.
pub const DRAIN_EVERY: Duration = Duration::from_millis(200);

/// One port's queue and the wall-clock time its port clock started
/// logging at (to turn port moments into Unix milliseconds).
struct PortLog {
    log: Arc<FlowLog>,
    wall_ms: u64,
}

impl PortLog {
    fn wall(&self, moment: u64) -> u64 {
        let base = self.log.enabled_at();
        if moment >= base {
            self.wall_ms + (moment - base) / 1_000_000
        } else {
            self.wall_ms.saturating_sub((base - moment) / 1_000_000)
        }
    }
}

/// Exporter counters (`/metrics`).
#[derive(Default)]
struct Counters {
    exported: AtomicU64,
    errors: AtomicU64,
}

/// The host's flow logs: the ports' queues, the sinks, the counters.
pub struct FlowLogs {
    cfg: FlowLogsSection,
    ports: Mutex<BTreeMap<String, PortLog>>,
    /// Queues of deleted ports, drained once more, then dropped; their
    /// counters stay in the totals.
    retired: Mutex<Vec<(String, PortLog)>>,
    retired_stats: Mutex<BTreeMap<String, dataplane::FlowLogStats>>,
    sinks: Mutex<Sinks>,
    counters: Counters,
    stop: AtomicBool,
}

struct Sinks {
    udp: Option<UdpSocket>,
    json: Option<std::fs::File>,
    encoder: Encoder,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl FlowLogs {
    /// Opens the sinks of `cfg` (a UDP socket, the JSON file for append).
    pub fn open(cfg: FlowLogsSection) -> std::io::Result<FlowLogs> {
        let udp = match cfg.ipfix_collector {
            Some(c) => {
                let any: std::net::SocketAddr = if c.is_ipv4() {
                    ([0, 0, 0, 0], 0).into()
                } else {
                    (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
                };
                let s = UdpSocket::bind(any)?;
                s.connect(c)?;
                Some(s)
            }
            None => None,
        };
        let json = match &cfg.json_file {
            Some(p) => Some(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)
                    .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", p.display())))?,
            ),
            None => None,
        };
        Ok(FlowLogs {
            cfg,
            ports: Mutex::new(BTreeMap::new()),
            retired: Mutex::new(Vec::new()),
            retired_stats: Mutex::new(BTreeMap::new()),
            sinks: Mutex::new(Sinks {
                udp,
                json,
                encoder: Encoder::new(1),
            }),
            counters: Counters::default(),
            stop: AtomicBool::new(false),
        })
    }

    pub fn config(&self) -> &FlowLogsSection {
        &self.cfg
    }

    /// Turns logging on for a port (its queue allocated here, once).
    /// Called before the port goes to its worker, or on its worker.
    pub fn enable(&self, name: &str, port: &mut Port) {
        let log = FlowLog::new(self.cfg.queue_records);
        let wall_ms = now_ms();
        port.set_flow_log(Some((self.cfg.engine(), log.clone())));
        lock(&self.ports).insert(name.to_string(), PortLog { log, wall_ms });
    }

    /// A port is gone: what its queue holds is exported at the next drain.
    pub fn retire(&self, name: &str) {
        if let Some(p) = lock(&self.ports).remove(name) {
            lock(&self.retired).push((name.to_string(), p));
        }
    }

    /// Drains every queue once and exports what it held. Returns how many
    /// records were taken.
    pub fn drain(&self) -> usize {
        let retired = std::mem::take(&mut *lock(&self.retired));
        let mut recs: Vec<(String, Exported)> = Vec::new();
        {
            let ports = lock(&self.ports);
            let all = ports
                .iter()
                .map(|(n, p)| (n.as_str(), p))
                .chain(retired.iter().map(|(n, p)| (n.as_str(), p)));
            for (name, p) in all {
                while let Some(rec) = p.log.pop() {
                    recs.push((
                        name.to_string(),
                        Exported {
                            rec,
                            start_ms: p.wall(rec.start),
                            end_ms: p.wall(rec.end),
                        },
                    ));
                }
            }
        }
        {
            let mut st = lock(&self.retired_stats);
            for (name, p) in &retired {
                *st.entry(name.clone()).or_default() += p.log.stats();
            }
        }
        if !recs.is_empty() {
            self.export(&recs);
        }
        recs.len()
    }

    fn export(&self, recs: &[(String, Exported)]) {
        let mut sinks = lock(&self.sinks);
        let Sinks { udp, json, encoder } = &mut *sinks;
        let mut errors = 0;
        if let Some(s) = udp {
            let only: Vec<Exported> = recs.iter().map(|(_, e)| *e).collect();
            let secs = (now_ms() / 1000) as u32;
            for m in encoder.encode(&only, secs) {
                if s.send(&m).is_err() {
                    errors += 1;
                }
            }
        }
        if let Some(f) = json {
            let mut text = String::new();
            for (port, e) in recs {
                text += &json_line(port, e);
                text.push('\n');
            }
            if f.write_all(text.as_bytes()).is_err() {
                errors += 1;
            }
        }
        self.counters
            .exported
            .fetch_add(recs.len() as u64, Ordering::Relaxed);
        self.counters.errors.fetch_add(errors, Ordering::Relaxed);
    }

    /// Starts the exporter thread; it drains every [`DRAIN_EVERY`] until
    /// [`FlowLogs::stop`], then once more.
    pub fn spawn(self: &Arc<Self>) -> std::io::Result<std::thread::JoinHandle<()>> {
        let me = self.clone();
        std::thread::Builder::new()
            .name("flow-logs".into())
            .spawn(move || {
                while !me.stop.load(Ordering::Relaxed) {
                    std::thread::sleep(DRAIN_EVERY);
                    me.drain();
                }
                me.drain();
            })
    }

    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    /// Per port, the engine's flow-log counters (deleted ports' included).
    pub fn port_stats(&self) -> BTreeMap<String, dataplane::FlowLogStats> {
        let mut m = lock(&self.retired_stats).clone();
        for (n, p) in lock(&self.ports).iter() {
            *m.entry(n.clone()).or_default() += p.log.stats();
        }
        m
    }

    pub fn exported(&self) -> u64 {
        self.counters.exported.load(Ordering::Relaxed)
    }

    pub fn export_errors(&self) -> u64 {
        self.counters.errors.load(Ordering::Relaxed)
    }

    /// The counters as Prometheus text (appended to `/metrics`).
    pub fn metrics(&self) -> String {
        let mut o = String::new();
        let stats = self.port_stats();
        let fam = |o: &mut String, name: &str, help: &str| {
            let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} counter");
        };
        fam(
            &mut o,
            "sluice_flow_log_records_total",
            "Flow records a port queued for export.",
        );
        for (p, s) in &stats {
            let _ = writeln!(
                o,
                "sluice_flow_log_records_total{{port=\"{}\"}} {}",
                esc(p),
                s.records
            );
        }
        fam(
            &mut o,
            "sluice_flow_log_dropped_total",
            "Flow records a port dropped: its queue was full, or the denied-packet rate limit refused them.",
        );
        for (p, s) in &stats {
            for (reason, v) in [
                ("queue_full", s.queue_full),
                ("rate_limited", s.rate_limited),
            ] {
                let _ = writeln!(
                    o,
                    "sluice_flow_log_dropped_total{{port=\"{}\",reason=\"{reason}\"}} {v}",
                    esc(p)
                );
            }
        }
        fam(
            &mut o,
            "sluice_flow_log_exported_total",
            "Flow records the exporter sent (IPFIX and/or JSON lines).",
        );
        let _ = writeln!(o, "sluice_flow_log_exported_total {}", self.exported());
        fam(
            &mut o,
            "sluice_flow_log_export_errors_total",
            "IPFIX messages or JSON-line writes that failed.",
        );
        let _ = writeln!(
            o,
            "sluice_flow_log_export_errors_total {}",
            self.export_errors()
        );
        o
    }
}

/// A record as one JSON object (README: Flow logs).
pub fn json_line(port: &str, e: &Exported) -> String {
    let r: &FlowRecord = &e.rec;
    let (fp, fb) = r.forward();
    let (rp, rb) = r.reverse();
    let nat = r.translated.map(|t| {
        serde_json::json!({
            "src": t.src_ip().to_string(),
            "src_port": t.src_port,
            "dst": t.dst_ip().to_string(),
            "dst_port": t.dst_port,
        })
    });
    serde_json::json!({
        "port": port,
        "vni": r.vni,
        "origin": match r.origin { Direction::In => "in", Direction::Out => "out" },
        "proto": r.key.proto,
        "src": r.key.src_ip().to_string(),
        "src_port": r.key.src_port,
        "dst": r.key.dst_ip().to_string(),
        "dst_port": r.key.dst_port,
        "start_ms": e.start_ms,
        "end_ms": e.end_ms,
        "packets": fp,
        "bytes": fb,
        "reverse_packets": rp,
        "reverse_bytes": rb,
        "decision": match r.decision {
            dataplane::Decision::Allow => "allow",
            dataplane::Decision::Deny => "deny",
        },
        "layer": r.decider.layer.as_str(),
        "rule": r.decider.rule.map(|id| id.0),
        "nat": nat,
        "tcp_state": r.tcp.map(|t| t.name()),
        "reason": r.reason.name(),
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use dataplane::{CloseReason, Decider, Decision, FlowKey, LayerName, RuleId};

    #[test]
    fn json_line_names_every_field() {
        let e = Exported {
            rec: FlowRecord {
                key: FlowKey::new(
                    "10.0.0.5".parse().unwrap(),
                    "10.0.0.9".parse().unwrap(),
                    17,
                    5353,
                    53,
                ),
                origin: Direction::Out,
                vni: 100,
                start: 0,
                end: 0,
                packets: [1, 2],
                bytes: [60, 120],
                decision: Decision::Allow,
                decider: Decider {
                    layer: LayerName::new("firewall"),
                    rule: Some(RuleId(3)),
                },
                translated: None,
                tcp: None,
                reason: CloseReason::Idle,
            },
            start_ms: 10,
            end_ms: 20,
        };
        let v: serde_json::Value = serde_json::from_str(&json_line("vm1", &e)).unwrap();
        assert_eq!(v["port"], "vm1");
        assert_eq!(v["packets"], 2);
        assert_eq!(v["bytes"], 120);
        assert_eq!(v["reverse_packets"], 1);
        assert_eq!(v["reason"], "idle");
        assert_eq!(v["layer"], "firewall");
        assert_eq!(v["rule"], 3);
        assert!(v["nat"].is_null());
    }
}
