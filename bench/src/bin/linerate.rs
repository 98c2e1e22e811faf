//! The line-rate scenario's tools (see `bench::flows` and bench/run.sh):
//!
//! ```text
//! linerate gen --dir egress|ingress --flows N --out FILE.pcap
//! linerate setup --url URL --token-file F --guest-port NAME --flows N
//! linerate measure --url URL --dir egress|ingress --warm-flows N --secs S
//! linerate conn-rate --url URL --token-file F --flows N
//! linerate setup ... [--no-vm1] [--vm1-flow-limit L] [--neighbour-port NAME --neighbour-flows M]
//! linerate measure --dir neighbour --warm-flows M --secs S
//! ```
//!
//! `gen` writes a capture of N flows, one frame each. `setup` programs a
//! running sluiced: V2P (vm1 and the ingress peers), V2B (the internet via
//! the boundary) and vm1, whose guest is the DPDK port NAME. `measure`
//! waits until vm1 holds N flows (the capture's first pass made them),
//! then counts vm1's forwarded packets in that direction over S seconds
//! and prints one JSON line: `{"dir":..,"mpps":..,"flows":..,"drops":..}`.
//!
//! `conn-rate` is for a `--dir connect` capture (a SYN per connection):
//! it samples vm1's flow count from the moment vm1 exists until the
//! capture's first pass has made all N, and prints the rate connections
//! were set up at between its first and last samples:
//! `{"conns_per_s":..,"flows":..,"secs":..,"drops":..}`.
//!
//! The SYN-flood case: `setup --neighbour-port` adds vm2 (same VPC and
//! policy, its own address) on a second DPDK port, replaying a
//! `--dir neighbour` capture; `--vm1-flow-limit` gives vm1 (replaying a
//! `--dir connect` capture larger than the limit) a full table, so each
//! of its SYNs is a new flow evicting another half-open one, for as long
//! as the run lasts; `--no-vm1` leaves vm1 out (the baseline).
//! `measure --dir neighbour` counts vm2's forwarded packets.

use api::client::Client;
use api::types::GuestSpec;
use bench::flows::{self, Dir};
use std::io::BufWriter;
use std::process::ExitCode;
use std::time::{Duration, Instant};

fn usage() -> ExitCode {
    eprintln!(
        "usage:\n  linerate gen --dir egress|ingress --flows N --out FILE\n  \
         linerate setup --url URL --token-file F --guest-port NAME --flows N\n  \
         linerate measure --url URL --dir egress|ingress --warm-flows N --secs S\n  \
         linerate conn-rate --url URL --token-file F --flows N\n  \
         setup also: [--no-vm1] [--vm1-flow-limit L] [--neighbour-port NAME --neighbour-flows M]\n\
         (gen --dir connect: a TCP SYN per connection, for conn-rate)"
    );
    ExitCode::from(2)
}

#[derive(Default)]
struct Opts {
    dir: Option<Dir>,
    flows: u32,
    out: Option<String>,
    url: String,
    token_file: Option<String>,
    guest_port: Option<String>,
    secs: f64,
    no_vm1: bool,
    vm1_flow_limit: Option<u32>,
    neighbour_port: Option<String>,
    neighbour_flows: u32,
}

fn parse(args: impl Iterator<Item = String>) -> Result<Opts, String> {
    let mut o = Opts {
        flows: 1024,
        neighbour_flows: 1024,
        url: "http://127.0.0.1:7480".into(),
        secs: 3.0,
        ..Default::default()
    };
    let mut args = args.peekable();
    while let Some(a) = args.next() {
        let mut val = || args.next().ok_or_else(|| format!("{a} needs a value"));
        match a.as_str() {
            "--dir" => {
                o.dir = Some(match val()?.as_str() {
                    "egress" => Dir::Egress,
                    "ingress" => Dir::Ingress,
                    "connect" => Dir::Connect,
                    "neighbour" => Dir::Neighbour,
                    d => {
                        return Err(format!(
                            "--dir: '{d}' is not egress, ingress, connect or neighbour"
                        ))
                    }
                })
            }
            "--flows" | "--warm-flows" | "--vm1-flow-limit" | "--neighbour-flows" => {
                let v = val()?;
                let n = v
                    .parse()
                    .ok()
                    .filter(|n| (1..=flows::MAX_FLOWS).contains(n))
                    .ok_or_else(|| format!("{a}: '{v}' is not in 1..={}", flows::MAX_FLOWS))?;
                match a.as_str() {
                    "--vm1-flow-limit" => o.vm1_flow_limit = Some(n),
                    "--neighbour-flows" => o.neighbour_flows = n,
                    _ => o.flows = n,
                }
            }
            "--no-vm1" => o.no_vm1 = true,
            "--neighbour-port" => o.neighbour_port = Some(val()?),
            "--out" => o.out = Some(val()?),
            "--url" => o.url = val()?,
            "--token-file" => o.token_file = Some(val()?),
            "--guest-port" => o.guest_port = Some(val()?),
            "--secs" => {
                let v = val()?;
                o.secs = v
                    .parse()
                    .ok()
                    .filter(|s: &f64| *s > 0.0 && *s <= 600.0)
                    .ok_or_else(|| format!("--secs: '{v}' is not in (0, 600]"))?;
            }
            other => return Err(format!("unknown argument '{other}'")),
        }
    }
    Ok(o)
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let Some(cmd) = args.next() else {
        return usage();
    };
    let o = match parse(args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("linerate: {e}");
            return usage();
        }
    };
    let r = match cmd.as_str() {
        "gen" => gen(&o),
        "setup" => setup(&o),
        "measure" => measure(&o),
        "conn-rate" => conn_rate(&o),
        _ => return usage(),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("linerate {cmd}: {e}");
            ExitCode::FAILURE
        }
    }
}

fn gen(o: &Opts) -> Result<(), String> {
    let dir = o.dir.ok_or("--dir is required")?;
    let out = o.out.as_deref().ok_or("--out is required")?;
    let f = std::fs::File::create(out).map_err(|e| format!("{out}: {e}"))?;
    let mut w = BufWriter::with_capacity(1 << 20, f);
    flows::write_pcap(&mut w, dir, o.flows).map_err(|e| format!("{out}: {e}"))?;
    std::io::Write::flush(&mut w).map_err(|e| format!("{out}: {e}"))
}

fn client(o: &Opts) -> Result<Client, String> {
    let token = match &o.token_file {
        Some(f) => Some(
            std::fs::read_to_string(f)
                .map_err(|e| format!("--token-file {f}: {e}"))?
                .trim()
                .to_string(),
        ),
        None => None,
    };
    Ok(Client::new(&o.url, token))
}

fn setup(o: &Opts) -> Result<(), String> {
    let c = client(o)?;
    c.set_v2p(&flows::v2p(o.flows))
        .map_err(|e| format!("PUT /v2p: {e}"))?;
    c.set_v2b(&flows::v2b())
        .map_err(|e| format!("PUT /v2b: {e}"))?;
    // The neighbour first: its traffic is flowing when the flood starts.
    if let Some(port) = o.neighbour_port.clone() {
        c.create_vnic(&flows::neighbour_vnic(
            GuestSpec::Dpdk { port },
            o.neighbour_flows,
        ))
        .map_err(|e| format!("POST /ports (vm2): {e}"))?;
    }
    if !o.no_vm1 {
        let port = o.guest_port.clone().ok_or("--guest-port is required")?;
        let mut v = flows::vnic(GuestSpec::Dpdk { port }, o.flows);
        if let Some(l) = o.vm1_flow_limit {
            v.config.limits.flows = l;
        }
        c.create_vnic(&v).map_err(|e| format!("POST /ports: {e}"))?;
    }
    Ok(())
}

/// The forwarded packets in `dir` of the port that direction is about
/// (vm2 for `neighbour`, else vm1), its flow count and its drops.
fn sample(c: &Client, dir: Dir) -> Result<(u64, u32, u64), String> {
    let port = if dir == Dir::Neighbour { "vm2" } else { "vm1" };
    let s = c
        .port_stats(port)
        .map_err(|e| format!("GET /ports/{port}/stats: {e}"))?;
    let fwd = match dir {
        Dir::Egress | Dir::Connect | Dir::Neighbour => s.stats.outbound.forwarded,
        Dir::Ingress => s.stats.inbound.forwarded,
    };
    let drops = s.drops.iter().map(|d| d.count).sum();
    Ok((fwd, s.flows, drops))
}

fn measure(o: &Opts) -> Result<(), String> {
    let dir = o.dir.ok_or("--dir is required")?;
    let c = client(o)?;
    // The capture's first pass creates the flows; measure the steady
    // state after it (bounded: new flows take a few µs each).
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (_, flows, _) = sample(&c, dir)?;
        if flows >= o.flows {
            break;
        }
        if Instant::now() > deadline {
            let port = if dir == Dir::Neighbour { "vm2" } else { "vm1" };
            return Err(format!(
                "{port} holds {flows} flows after 120 s, expected {}",
                o.flows
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(300));
    let (f0, _, d0) = sample(&c, dir)?;
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs_f64(o.secs));
    let (f1, flows, d1) = sample(&c, dir)?;
    let dt = t0.elapsed().as_secs_f64();
    let mpps = (f1 - f0) as f64 / dt / 1e6;
    println!(
        "{}",
        serde_json::json!({
            "dir": match dir {
                Dir::Egress => "egress",
                Dir::Ingress => "ingress",
                Dir::Connect => "connect",
                Dir::Neighbour => "neighbour",
            },
            "mpps": (mpps * 1000.0).round() / 1000.0,
            "flows": flows,
            "drops": d1 - d0,
            "secs": (dt * 100.0).round() / 100.0,
        })
    );
    Ok(())
}

/// Samples vm1's flow count every few milliseconds while the first pass
/// of a `--dir connect` capture sets its connections up (see the module
/// docs). Started right after `setup`, so it sees most of the pass.
fn conn_rate(o: &Opts) -> Result<(), String> {
    let c = client(o)?;
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut first: Option<(Instant, u32, u64)> = None;
    loop {
        let (_, flows, drops) = sample(&c, Dir::Connect)?;
        let now = Instant::now();
        let (t0, f0, d0) = *first.get_or_insert((now, flows, drops));
        if flows >= o.flows {
            let dt = now.duration_since(t0).as_secs_f64();
            if f0 >= o.flows || dt <= 0.0 {
                return Err(format!(
                    "the first pass was over before the first sample ({flows} flows): \
                     use a larger --flows"
                ));
            }
            let rate = f64::from(flows - f0) / dt;
            println!(
                "{}",
                serde_json::json!({
                    "conns_per_s": rate.round(),
                    "flows": flows,
                    "sampled_from": f0,
                    "secs": (dt * 1000.0).round() / 1000.0,
                    "drops": drops - d0,
                })
            );
            return Ok(());
        }
        if now > deadline {
            return Err(format!(
                "vm1 holds {flows} flows after 60 s, expected {}",
                o.flows
            ));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}
