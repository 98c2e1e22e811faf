//! `sluiceadm top`: a live view of the host, refreshed every interval.
//!
//! Every figure is a rate computed from two snapshots of counters the API
//! already serves, taken an interval apart: `GET /stats` (ports'
//! packets, bytes, flows created and drops by reason and layer; workers'
//! busy and idle nanoseconds) and each port's `GET /ports/{name}/uft`
//! (every flow's packets and bytes per direction). Nothing is sampled on
//! the daemon's side, so the view costs the dataplane nothing but the
//! reads, and two `top`s never disturb each other.
//!
//! A counter that went down between the snapshots (a port deleted and
//! made again, a flow slot reused by another flow) is counted from zero,
//! never as a huge wrapped rate.
//!
//! The terminal is put in non-canonical, no-echo mode on the alternate
//! screen, and put back by a guard's `Drop`: on `q` or Ctrl-C, on
//! SIGTERM or SIGHUP, on an error and on a panic alike.

use super::CliError;
use crate::client::Client;
use crate::types::{HostStats, UftDoc, UftEntryDoc};
use serde::Serialize;
use std::collections::HashMap;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The columns the port table can be sorted by, with their keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SortKey {
    /// By name, ascending.
    Name,
    /// By packets per second, in + out.
    Packets,
    /// By bytes per second, in + out.
    Bytes,
    /// By flows now.
    Flows,
    /// By new flows per second.
    NewFlows,
    /// By drops per second.
    Drops,
}

impl SortKey {
    /// Key, label, and the key that selects it in the live view.
    const KEYS: [(SortKey, &'static str, char); 6] = [
        (SortKey::Name, "name", 'n'),
        (SortKey::Packets, "pkts", 'p'),
        (SortKey::Bytes, "bytes", 'b'),
        (SortKey::Flows, "flows", 'f'),
        (SortKey::NewFlows, "new", 'c'),
        (SortKey::Drops, "drops", 'd'),
    ];

    fn from_key(c: char) -> Option<SortKey> {
        Self::KEYS.iter().find(|k| k.2 == c).map(|k| k.0)
    }
}

/// What one look at the host returned.
#[derive(Clone, Debug)]
pub struct Snapshot {
    /// When the host's counters were read: rates are over the time
    /// between two of these, not between two calls' ends.
    pub taken: Instant,
    pub stats: HostStats,
    /// Each port's UFT, by port name (a port deleted between the two
    /// calls is missing).
    pub ufts: Vec<(String, UftDoc)>,
}

/// Takes a snapshot: the host's counters, then (`with_flows`) every
/// port's UFT.
///
/// A UFT dump is made by the worker that owns the port, between bursts,
/// and describes every entry: on a port with thousands of flows it is
/// the one part of `top` a worker feels, so `--flows 0` skips it.
pub fn snapshot(c: &Client, with_flows: bool) -> Result<Snapshot, crate::client::ClientError> {
    let stats = c.stats()?;
    let taken = Instant::now();
    let mut ufts = Vec::with_capacity(stats.ports.len());
    let ports = if with_flows { &stats.ports[..] } else { &[] };
    for p in ports {
        match c.dump_uft(&p.name) {
            Ok(u) => ufts.push((p.name.clone(), u)),
            // Deleted meanwhile: its flows are simply not shown.
            Err(e) if e.status() == Some(404) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(Snapshot { taken, stats, ufts })
}

/// The rates between two snapshots: what `top` shows, and what
/// `--once --json` prints.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct TopView {
    /// Seconds between the two snapshots.
    pub interval_s: f64,
    pub ports: Vec<PortRate>,
    /// Non-zero drop rates, highest first.
    pub drops: Vec<DropRate>,
    /// The busiest flows (bytes per second, both directions), highest first.
    pub flows: Vec<FlowRate>,
    pub workers: Vec<WorkerRate>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct PortRate {
    pub name: String,
    pub packets_in_per_s: f64,
    pub packets_out_per_s: f64,
    pub bytes_in_per_s: f64,
    pub bytes_out_per_s: f64,
    /// Flows now (not a rate).
    pub flows: u32,
    pub new_flows_per_s: f64,
    pub drops_per_s: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DropRate {
    /// The port, or `worker N` for a switch's drops before any port.
    pub at: String,
    /// The layer that decided, where known (`switch` for a switch's).
    pub layer: Option<String>,
    pub reason: String,
    pub per_s: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FlowRate {
    pub port: String,
    pub flow: u32,
    /// `PROTO SRC:SPORT > DST:DPORT`, of the outbound entry if the flow
    /// has one.
    pub key: String,
    pub packets_in_per_s: f64,
    pub packets_out_per_s: f64,
    pub bytes_in_per_s: f64,
    pub bytes_out_per_s: f64,
}

impl FlowRate {
    fn bytes_per_s(&self) -> f64 {
        self.bytes_in_per_s + self.bytes_out_per_s
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct WorkerRate {
    pub worker: usize,
    pub ports: usize,
    /// Busy time over alive time in the interval, 0 to 1.
    pub busy_ratio: f64,
}

/// `b - a` as a rate over `secs`; a counter that went down restarted
/// from zero (a port made again), so its rate is `b` over the interval.
fn rate(a: u64, b: u64, secs: f64) -> f64 {
    let d = if b >= a { b - a } else { b };
    d as f64 / secs
}

fn proto_name(p: u8) -> String {
    match p {
        1 => "icmp".into(),
        6 => "tcp".into(),
        17 => "udp".into(),
        58 => "icmp6".into(),
        n => n.to_string(),
    }
}

fn flow_key(e: &UftEntryDoc) -> String {
    let k = &e.key;
    let addr = |ip: std::net::IpAddr, port: u16| match ip {
        std::net::IpAddr::V4(a) => format!("{a}:{port}"),
        std::net::IpAddr::V6(a) => format!("[{a}]:{port}"),
    };
    format!(
        "{} {} > {}",
        proto_name(k.proto),
        addr(k.src, k.src_port),
        addr(k.dst, k.dst_port)
    )
}

/// The rates from `a` to `b`, taken `secs` apart; at most `top_flows`
/// flows; ports sorted by `sort`.
pub fn rates(a: &Snapshot, b: &Snapshot, secs: f64, top_flows: usize, sort: SortKey) -> TopView {
    let secs = if secs > 0.0 { secs } else { f64::MIN_POSITIVE };
    let mut view = TopView {
        interval_s: secs,
        ..TopView::default()
    };
    for p in &b.stats.ports {
        let before = a.stats.ports.iter().find(|q| q.name == p.name);
        let (ai, ao, created) = before.map_or((Default::default(), Default::default(), 0), |q| {
            (q.stats.inbound, q.stats.outbound, q.stats.flows_created)
        });
        let old_drops: HashMap<(Option<String>, String), u64> = before
            .map(|q| {
                q.drops_by_layer()
                    .into_iter()
                    .map(|(l, r, n)| ((l, r), n))
                    .collect()
            })
            .unwrap_or_default();
        let mut drops_per_s = 0.0;
        for (layer, reason, n) in p.drops_by_layer() {
            let was = old_drops
                .get(&(layer.clone(), reason.clone()))
                .copied()
                .unwrap_or(0);
            let r = rate(was, n, secs);
            if r > 0.0 {
                drops_per_s += r;
                view.drops.push(DropRate {
                    at: p.name.clone(),
                    layer,
                    reason,
                    per_s: r,
                });
            }
        }
        let (bi, bo) = (p.stats.inbound, p.stats.outbound);
        view.ports.push(PortRate {
            name: p.name.clone(),
            packets_in_per_s: rate(ai.packets, bi.packets, secs),
            packets_out_per_s: rate(ao.packets, bo.packets, secs),
            bytes_in_per_s: rate(ai.bytes, bi.bytes, secs),
            bytes_out_per_s: rate(ao.bytes, bo.bytes, secs),
            flows: p.flows,
            new_flows_per_s: rate(created, p.stats.flows_created, secs),
            drops_per_s,
        });
    }
    for w in &b.stats.workers {
        let before = a.stats.workers.iter().find(|v| v.worker == w.worker);
        if let Some(v) = before {
            for d in &w.drops {
                let was = v
                    .drops
                    .iter()
                    .find(|x| x.reason == d.reason)
                    .map_or(0, |x| x.count);
                let r = rate(was, d.count, secs);
                if r > 0.0 {
                    view.drops.push(DropRate {
                        at: format!("worker {}", w.worker),
                        layer: Some("switch".into()),
                        reason: d.reason.clone(),
                        per_s: r,
                    });
                }
            }
        }
        let (busy, idle) = before.map_or((0, 0), |v| (v.busy_ns, v.idle_ns));
        let db = w.busy_ns.saturating_sub(busy);
        let di = w.idle_ns.saturating_sub(idle);
        let busy_ratio = if db + di > 0 {
            db as f64 / (db + di) as f64
        } else {
            // No time passed for the worker's counters (published after
            // its rounds): its ratio since start is the best there is.
            w.busy_ratio
        };
        view.workers.push(WorkerRate {
            worker: w.worker,
            ports: w.ports,
            busy_ratio,
        });
    }
    view.drops.sort_by(|x, y| y.per_s.total_cmp(&x.per_s));
    view.flows = flow_rates(a, b, secs);
    view.flows
        .sort_by(|x, y| y.bytes_per_s().total_cmp(&x.bytes_per_s()));
    view.flows.truncate(top_flows);
    sort_ports(&mut view.ports, sort, false);
    view
}

/// Every flow of `b` with its rates since `a`: an entry is the same one
/// in both when its port, direction, key and flow id agree (a reused
/// flow slot has another key, so it counts from zero).
fn flow_rates(a: &Snapshot, b: &Snapshot, secs: f64) -> Vec<FlowRate> {
    let mut out = Vec::new();
    for (port, uft) in &b.ufts {
        let old = a.ufts.iter().find(|(n, _)| n == port).map(|(_, u)| u);
        let before = |dir_entries: fn(&UftDoc) -> &Vec<UftEntryDoc>, e: &UftEntryDoc| {
            old.and_then(|u| {
                dir_entries(u)
                    .iter()
                    .find(|o| o.key == e.key && o.flow == e.flow)
            })
            .map_or((0, 0), |o| (o.packets, o.bytes))
        };
        let mut by_flow: HashMap<u32, FlowRate> = HashMap::new();
        for e in &uft.outbound {
            let (p, by) = before(|u| &u.outbound, e);
            let f = by_flow.entry(e.flow).or_insert_with(|| FlowRate {
                port: port.clone(),
                flow: e.flow,
                key: flow_key(e),
                packets_in_per_s: 0.0,
                packets_out_per_s: 0.0,
                bytes_in_per_s: 0.0,
                bytes_out_per_s: 0.0,
            });
            f.key = flow_key(e);
            f.packets_out_per_s += rate(p, e.packets, secs);
            f.bytes_out_per_s += rate(by, e.bytes, secs);
        }
        for e in &uft.inbound {
            let (p, by) = before(|u| &u.inbound, e);
            let f = by_flow.entry(e.flow).or_insert_with(|| FlowRate {
                port: port.clone(),
                flow: e.flow,
                key: flow_key(e),
                packets_in_per_s: 0.0,
                packets_out_per_s: 0.0,
                bytes_in_per_s: 0.0,
                bytes_out_per_s: 0.0,
            });
            f.packets_in_per_s += rate(p, e.packets, secs);
            f.bytes_in_per_s += rate(by, e.bytes, secs);
        }
        let mut flows: Vec<FlowRate> = by_flow.into_values().collect();
        flows.sort_by_key(|f| f.flow);
        out.extend(flows);
    }
    out
}

/// Sorts the ports by `key`: highest first (names: A to Z), or the
/// other way round when `reverse`.
pub fn sort_ports(ports: &mut [PortRate], key: SortKey, reverse: bool) {
    let val = |p: &PortRate| match key {
        SortKey::Name => 0.0,
        SortKey::Packets => p.packets_in_per_s + p.packets_out_per_s,
        SortKey::Bytes => p.bytes_in_per_s + p.bytes_out_per_s,
        SortKey::Flows => f64::from(p.flows),
        SortKey::NewFlows => p.new_flows_per_s,
        SortKey::Drops => p.drops_per_s,
    };
    ports.sort_by(|x, y| {
        let o = match key {
            SortKey::Name => x.name.cmp(&y.name),
            _ => val(y).total_cmp(&val(x)).then_with(|| x.name.cmp(&y.name)),
        };
        if reverse {
            o.reverse()
        } else {
            o
        }
    });
}

/// A rate in few characters: `0`, `950`, `12.3k`, `4.56M`, `1.20G`.
pub fn human(v: f64) -> String {
    let (d, unit) = if v >= 1e9 {
        (v / 1e9, "G")
    } else if v >= 1e6 {
        (v / 1e6, "M")
    } else if v >= 1e3 {
        (v / 1e3, "k")
    } else {
        return format!("{v:.0}");
    };
    if d >= 100.0 {
        format!("{d:.0}{unit}")
    } else if d >= 10.0 {
        format!("{d:.1}{unit}")
    } else {
        format!("{d:.2}{unit}")
    }
}

/// The help line: the sort keys, the current one in brackets.
fn help_line(sort: SortKey, reverse: bool) -> String {
    let mut s = String::from("sort:");
    for (k, label, c) in SortKey::KEYS {
        if k == sort {
            s += &format!(" [{c}:{label}{}]", if reverse { " reversed" } else { "" });
        } else {
            s += &format!(" {c}:{label}");
        }
    }
    s + "  r:reverse  q:quit"
}

/// The view as text, `width` columns and at most `height` lines.
pub fn render(
    v: &TopView,
    sort: SortKey,
    reverse: bool,
    url: &str,
    status: &str,
    width: usize,
    height: usize,
) -> Vec<String> {
    let mut l = Vec::new();
    l.push(format!(
        "sluiceadm top - {url} - every {:.1}s{}",
        v.interval_s,
        if status.is_empty() {
            String::new()
        } else {
            format!(" - {status}")
        }
    ));
    l.push(help_line(sort, reverse));
    l.push(String::new());
    let mark = |k: SortKey, label: &str| {
        if k == sort {
            format!("{label}*")
        } else {
            label.to_string()
        }
    };
    l.push(format!(
        "{:<16} {:>9} {:>9} {:>9} {:>9} {:>7} {:>7} {:>8}",
        mark(SortKey::Name, "PORT"),
        mark(SortKey::Packets, "PKT/S IN"),
        "PKT/S OUT",
        mark(SortKey::Bytes, "B/S IN"),
        "B/S OUT",
        mark(SortKey::Flows, "FLOWS"),
        mark(SortKey::NewFlows, "NEW/S"),
        mark(SortKey::Drops, "DROP/S"),
    ));
    for p in &v.ports {
        l.push(format!(
            "{:<16} {:>9} {:>9} {:>9} {:>9} {:>7} {:>7} {:>8}",
            p.name,
            human(p.packets_in_per_s),
            human(p.packets_out_per_s),
            human(p.bytes_in_per_s),
            human(p.bytes_out_per_s),
            p.flows,
            human(p.new_flows_per_s),
            human(p.drops_per_s),
        ));
    }
    l.push(String::new());
    let workers: Vec<String> = v
        .workers
        .iter()
        .map(|w| {
            format!(
                "w{} {:.1}% ({} ports)",
                w.worker,
                w.busy_ratio * 100.0,
                w.ports
            )
        })
        .collect();
    l.push(format!("WORKERS busy: {}", workers.join("  ")));
    l.push(String::new());
    l.push(format!(
        "{:<16} {:<10} {:<24} {:>8}",
        "DROPS AT", "LAYER", "REASON", "PER S"
    ));
    if v.drops.is_empty() {
        l.push("(none)".into());
    }
    for d in v.drops.iter().take(8) {
        l.push(format!(
            "{:<16} {:<10} {:<24} {:>8}",
            d.at,
            d.layer.as_deref().unwrap_or("-"),
            d.reason,
            human(d.per_s)
        ));
    }
    l.push(String::new());
    l.push(format!(
        "{:<12} {:<46} {:>8} {:>8} {:>9} {:>9}",
        "FLOWS ON", "KEY", "PKT/S IN", "PKT/S OUT", "B/S IN", "B/S OUT"
    ));
    if v.flows.is_empty() {
        l.push("(none)".into());
    }
    for f in &v.flows {
        l.push(format!(
            "{:<12} {:<46} {:>8} {:>8} {:>9} {:>9}",
            f.port,
            f.key,
            human(f.packets_in_per_s),
            human(f.packets_out_per_s),
            human(f.bytes_in_per_s),
            human(f.bytes_out_per_s)
        ));
    }
    l.truncate(height.max(1));
    for s in &mut l {
        if s.chars().count() > width {
            *s = s.chars().take(width).collect();
        }
    }
    l
}

/// What the command line asked of `top`.
pub struct TopOptions {
    pub interval: Duration,
    pub once: bool,
    pub json: bool,
    pub flows: usize,
    pub sort: SortKey,
}

/// `sluiceadm top`: one view into `out` (`--once`, or `--json`), or the
/// live view on the terminal until `q`.
pub fn run(c: &Client, o: &TopOptions, out: &mut String) -> Result<(), CliError> {
    let api = |err| CliError::Api {
        err,
        no_token: None,
    };
    let mut a = snapshot(c, o.flows > 0).map_err(api)?;
    // The next snapshot is due an interval after this one's counters
    // were read, whatever its UFT dumps took.
    let mut at = a.taken;
    if o.once || o.json {
        std::thread::sleep(o.interval.saturating_sub(at.elapsed()));
        let b = snapshot(c, o.flows > 0).map_err(api)?;
        let secs = b.taken.duration_since(a.taken).as_secs_f64();
        let v = rates(&a, &b, secs, o.flows, o.sort);
        if o.json {
            *out += &(serde_json::to_string_pretty(&v).unwrap_or_default() + "\n");
        } else {
            for line in render(&v, o.sort, false, c.base(), "", usize::MAX, usize::MAX) {
                *out += &line;
                out.push('\n');
            }
        }
        return Ok(());
    }
    let stop = watch_signals()?;
    let term = Terminal::enter()?;
    let (mut sort, mut reverse) = (o.sort, false);
    let mut view: Option<TopView> = None;
    let mut status = String::from("first sample in progress");
    let mut dirty = true;
    loop {
        if stop.load(Ordering::Relaxed) {
            return Ok(());
        }
        if dirty {
            let (w, h) = term.size();
            let v = view.get_or_insert_with(|| {
                // Until the second snapshot: the ports, no rates yet.
                let mut empty = TopView {
                    interval_s: o.interval.as_secs_f64(),
                    ..TopView::default()
                };
                for p in &a.stats.ports {
                    empty.ports.push(PortRate {
                        name: p.name.clone(),
                        flows: p.flows,
                        ..PortRate::default()
                    });
                }
                empty
            });
            sort_ports(&mut v.ports, sort, reverse);
            term.draw(&render(v, sort, reverse, c.base(), &status, w, h))?;
            dirty = false;
        }
        let left = o.interval.saturating_sub(at.elapsed());
        if left.is_zero() {
            match snapshot(c, o.flows > 0) {
                Ok(b) => {
                    let secs = b.taken.duration_since(a.taken).as_secs_f64();
                    view = Some(rates(&a, &b, secs, o.flows, sort));
                    status.clear();
                    at = b.taken;
                    a = b;
                }
                // Shown, and tried again next interval: a daemon
                // restarting is no reason to lose the screen.
                Err(e) => {
                    status = format!("error: {e}");
                    at = Instant::now();
                }
            }
            dirty = true;
            continue;
        }
        match term.key(left.min(SIGNAL_CHECK))? {
            Some('q') | Some('\u{3}') => return Ok(()),
            Some('r') => {
                reverse = !reverse;
                dirty = true;
            }
            Some(k) => {
                if let Some(s) = SortKey::from_key(k) {
                    sort = s;
                    reverse = false;
                    dirty = true;
                }
            }
            None => {}
        }
    }
}

/// How often the live view looks whether a signal asked it to stop: a
/// tenth of a second is quick for a person and costs nothing.
const SIGNAL_CHECK: Duration = Duration::from_millis(100);

/// SIGTERM and SIGHUP set the flag returned instead of killing the
/// process, so the live view stops through its usual path and the
/// terminal is put back (Ctrl-C arrives as a key: the terminal's ISIG is
/// off). A thread of its own waits for them, on a one-thread runtime.
fn watch_signals() -> Result<Arc<AtomicBool>, CliError> {
    use tokio::signal::unix::{signal, SignalKind};
    let err = |e: std::io::Error| CliError::Top(format!("watching for signals: {e}"));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .map_err(err)?;
    let (mut term, mut hup) = {
        let _in_rt = rt.enter();
        (
            signal(SignalKind::terminate()).map_err(err)?,
            signal(SignalKind::hangup()).map_err(err)?,
        )
    };
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    std::thread::Builder::new()
        .name("top-signals".into())
        .spawn(move || {
            rt.block_on(async {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = hup.recv() => {}
                }
            });
            flag.store(true, Ordering::Relaxed);
        })
        .map_err(err)?;
    Ok(stop)
}

/// The terminal in `top`'s mode; put back as it was when dropped.
struct Terminal {
    saved: rustix::termios::Termios,
}

impl Terminal {
    fn enter() -> Result<Terminal, CliError> {
        use rustix::termios::{self, LocalModes, OptionalActions, SpecialCodeIndex};
        let stdin = std::io::stdin();
        if !termios::isatty(&stdin) || !termios::isatty(std::io::stdout()) {
            return Err(CliError::Top(
                "top needs a terminal on stdin and stdout (for scripts: top --once --json)".into(),
            ));
        }
        let err = |e: rustix::io::Errno| CliError::Top(format!("setting up the terminal: {e}"));
        let saved = termios::tcgetattr(&stdin).map_err(err)?;
        let mut t = saved.clone();
        // Keys one by one, unechoed; Ctrl-C arrives as a key (and quits
        // through the same path as `q`, so the terminal is put back).
        t.local_modes
            .remove(LocalModes::ICANON | LocalModes::ECHO | LocalModes::ISIG);
        t.special_codes[SpecialCodeIndex::VMIN] = 1;
        t.special_codes[SpecialCodeIndex::VTIME] = 0;
        termios::tcsetattr(&stdin, OptionalActions::Flush, &t).map_err(err)?;
        let term = Terminal { saved };
        // The alternate screen, cursor hidden.
        term.write("\x1b[?1049h\x1b[?25l")?;
        Ok(term)
    }

    fn write(&self, s: &str) -> Result<(), CliError> {
        let mut o = std::io::stdout().lock();
        o.write_all(s.as_bytes())
            .and_then(|()| o.flush())
            .map_err(|e| CliError::Top(format!("writing to the terminal: {e}")))
    }

    fn size(&self) -> (usize, usize) {
        match rustix::termios::tcgetwinsize(std::io::stdout()) {
            Ok(w) if w.ws_col > 0 && w.ws_row > 0 => (usize::from(w.ws_col), usize::from(w.ws_row)),
            _ => (80, 24),
        }
    }

    fn draw(&self, lines: &[String]) -> Result<(), CliError> {
        let mut s = String::from("\x1b[H\x1b[2J");
        s += &lines.join("\r\n");
        self.write(&s)
    }

    /// The next key pressed within `wait`, or `None` when it passed.
    fn key(&self, wait: Duration) -> Result<Option<char>, CliError> {
        use rustix::event::{poll, PollFd, PollFlags, Timespec};
        let stdin = std::io::stdin();
        let mut fds = [PollFd::new(&stdin, PollFlags::IN)];
        let ts = Timespec {
            tv_sec: wait.as_secs() as i64,
            tv_nsec: i64::from(wait.subsec_nanos()),
        };
        let n = match poll(&mut fds, Some(&ts)) {
            Ok(n) => n,
            Err(rustix::io::Errno::INTR) => return Ok(None),
            Err(e) => return Err(CliError::Top(format!("waiting for a key: {e}"))),
        };
        if n == 0 {
            return Ok(None);
        }
        let mut b = [0u8; 16];
        match rustix::io::read(&stdin, &mut b) {
            // End of input (the terminal went away): quit.
            Ok(0) => Ok(Some('q')),
            Ok(n) => Ok(Some(char::from(b[n - 1]))),
            Err(rustix::io::Errno::INTR) => Ok(None),
            Err(e) => Err(CliError::Top(format!("reading a key: {e}"))),
        }
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        let _ = self.write("\x1b[?25h\x1b[?1049l");
        let _ = rustix::termios::tcsetattr(
            std::io::stdin(),
            rustix::termios::OptionalActions::Flush,
            &self.saved,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::*;
    use dataplane::port::DirStats;

    fn port(name: &str, pkts: (u64, u64), bytes: (u64, u64), created: u64) -> PortStatsDoc {
        PortStatsDoc {
            name: name.into(),
            flows: 2,
            flow_limit: 100,
            uft_in: 1,
            uft_out: 1,
            stats: PortCounters {
                inbound: DirStats {
                    packets: pkts.0,
                    bytes: bytes.0,
                    ..DirStats::default()
                },
                outbound: DirStats {
                    packets: pkts.1,
                    bytes: bytes.1,
                    ..DirStats::default()
                },
                flows_created: created,
                ..PortCounters::default()
            },
            layers: Vec::new(),
            drops: Vec::new(),
            guest_error: None,
        }
    }

    fn worker(busy_ns: u64, idle_ns: u64, drops: u64) -> WorkerStatsDoc {
        WorkerStatsDoc {
            worker: 0,
            ports: 2,
            busy_ratio: 0.9,
            busy_ns,
            idle_ns,
            rounds: 0,
            sleeps: 0,
            switch: Default::default(),
            drops: DropCount::list(&[("wrong_vni", drops)]),
            devices: Vec::new(),
            device_counters: Vec::new(),
        }
    }

    fn entry(flow: u32, sport: u16, packets: u64, bytes: u64) -> UftEntryDoc {
        UftEntryDoc {
            key: FlowKeyDoc {
                proto: 6,
                src: "10.0.0.5".parse().unwrap(),
                src_port: sport,
                dst: "10.0.0.6".parse().unwrap(),
                dst_port: 80,
                vni: 7777,
            },
            flow,
            packets,
            bytes,
            epoch: 1,
            stale: false,
            transform: String::new(),
        }
    }

    fn snap(ports: Vec<PortStatsDoc>, w: WorkerStatsDoc, out: Vec<UftEntryDoc>) -> Snapshot {
        Snapshot {
            taken: Instant::now(),
            stats: HostStats {
                ports,
                workers: vec![w],
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
            },
            ufts: vec![(
                "vm1".into(),
                UftDoc {
                    epoch: 1,
                    inbound: Vec::new(),
                    outbound: out,
                },
            )],
        }
    }

    #[test]
    fn rates_are_the_counters_change_over_the_interval() {
        let mut a1 = port("vm1", (100, 200), (10_000, 20_000), 5);
        a1.drops = DropCount::list(&[("no_route", 10)]);
        let mut b1 = port("vm1", (300, 600), (30_000, 60_000), 9);
        b1.drops = DropCount::list(&[("no_route", 14)]);
        // vm2 was made again between the snapshots: its counters went
        // down, so they count from zero.
        let a2 = port("vm2", (1_000, 1_000), (0, 0), 50);
        let b2 = port("vm2", (20, 10), (0, 0), 2);
        let a = snap(
            vec![a1, a2],
            worker(1_000, 3_000, 0),
            vec![entry(1, 1000, 10, 1_000), entry(2, 2000, 500, 50_000)],
        );
        // Flow 2's slot was reused by another connection (another key).
        let b = snap(
            vec![b1, b2],
            worker(2_000, 6_000, 6),
            vec![entry(1, 1000, 110, 101_000), entry(2, 3000, 4, 400)],
        );
        let v = rates(&a, &b, 2.0, 10, SortKey::Bytes);
        assert_eq!(v.interval_s, 2.0);
        let vm1 = &v.ports[0];
        assert_eq!(vm1.name, "vm1", "sorted by bytes: {v:?}");
        assert_eq!(
            (vm1.packets_in_per_s, vm1.packets_out_per_s),
            (100.0, 200.0)
        );
        assert_eq!(
            (vm1.bytes_in_per_s, vm1.bytes_out_per_s),
            (10_000.0, 20_000.0)
        );
        assert_eq!(vm1.new_flows_per_s, 2.0);
        assert_eq!(vm1.drops_per_s, 2.0);
        let vm2 = &v.ports[1];
        assert_eq!((vm2.packets_in_per_s, vm2.new_flows_per_s), (10.0, 1.0));
        // Busy 1000 ns of 4000 in the interval, not the 0.9 since start.
        assert_eq!(v.workers[0].busy_ratio, 0.25);
        assert_eq!(
            v.drops,
            vec![
                DropRate {
                    at: "worker 0".into(),
                    layer: Some("switch".into()),
                    reason: "wrong_vni".into(),
                    per_s: 3.0
                },
                DropRate {
                    at: "vm1".into(),
                    layer: None,
                    reason: "no_route".into(),
                    per_s: 2.0
                },
            ]
        );
        assert_eq!(v.flows.len(), 2);
        assert_eq!(v.flows[0].flow, 1);
        assert_eq!(v.flows[0].packets_out_per_s, 50.0);
        assert_eq!(v.flows[0].bytes_out_per_s, 50_000.0);
        assert_eq!(v.flows[0].key, "tcp 10.0.0.5:1000 > 10.0.0.6:80");
        assert_eq!(v.flows[1].bytes_out_per_s, 200.0, "reused slot from zero");
        let top1 = rates(&a, &b, 2.0, 1, SortKey::Name);
        assert_eq!(top1.flows.len(), 1);
    }

    #[test]
    fn the_sort_keys_order_the_ports() {
        let mut ps = vec![
            PortRate {
                name: "b".into(),
                drops_per_s: 5.0,
                flows: 1,
                ..PortRate::default()
            },
            PortRate {
                name: "a".into(),
                drops_per_s: 1.0,
                flows: 9,
                ..PortRate::default()
            },
        ];
        let names = |ps: &[PortRate]| ps.iter().map(|p| p.name.clone()).collect::<Vec<_>>();
        sort_ports(&mut ps, SortKey::Name, false);
        assert_eq!(names(&ps), ["a", "b"]);
        sort_ports(&mut ps, SortKey::Drops, false);
        assert_eq!(names(&ps), ["b", "a"]);
        sort_ports(&mut ps, SortKey::Flows, false);
        assert_eq!(names(&ps), ["a", "b"]);
        sort_ports(&mut ps, SortKey::Flows, true);
        assert_eq!(names(&ps), ["b", "a"]);
        assert_eq!(SortKey::from_key('d'), Some(SortKey::Drops));
        assert_eq!(SortKey::from_key('x'), None);
        assert_eq!(human(950.0), "950");
        assert_eq!(human(12_345.0), "12.3k");
        assert_eq!(human(4_560_000.0), "4.56M");
    }
}
