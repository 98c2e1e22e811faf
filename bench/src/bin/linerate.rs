//! The line-rate scenario's tools (see `bench::flows` and bench/run.sh):
//!
//! ```text
//! linerate gen --dir egress|ingress --flows N --out FILE.pcap
//! linerate setup --url URL --token-file F --guest-port NAME --flows N
//! linerate measure --url URL --dir egress|ingress --warm-flows N --secs S
//! ```
//!
//! `gen` writes a capture of N flows, one frame each. `setup` programs a
//! running sluiced: V2P (vm1 and the ingress peers), V2B (the internet via
//! the boundary) and vm1, whose guest is the DPDK port NAME. `measure`
//! waits until vm1 holds N flows (the capture's first pass made them),
//! then counts vm1's forwarded packets in that direction over S seconds
//! and prints one JSON line: `{"dir":..,"mpps":..,"flows":..,"drops":..}`.

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
         linerate measure --url URL --dir egress|ingress --warm-flows N --secs S"
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
}

fn parse(args: impl Iterator<Item = String>) -> Result<Opts, String> {
    let mut o = Opts {
        flows: 1024,
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
                    d => return Err(format!("--dir: '{d}' is not egress or ingress")),
                })
            }
            "--flows" | "--warm-flows" => {
                let v = val()?;
                o.flows = v
                    .parse()
                    .ok()
                    .filter(|n| (1..=flows::MAX_FLOWS).contains(n))
                    .ok_or_else(|| format!("{a}: '{v}' is not in 1..={}", flows::MAX_FLOWS))?;
            }
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
    let port = o.guest_port.clone().ok_or("--guest-port is required")?;
    c.set_v2p(&flows::v2p(o.flows))
        .map_err(|e| format!("PUT /v2p: {e}"))?;
    c.set_v2b(&flows::v2b())
        .map_err(|e| format!("PUT /v2b: {e}"))?;
    c.create_vnic(&flows::vnic(GuestSpec::Dpdk { port }, o.flows))
        .map_err(|e| format!("POST /ports: {e}"))?;
    Ok(())
}

/// vm1's forwarded packets in `dir`, its flow count and its drops.
fn sample(c: &Client, dir: Dir) -> Result<(u64, u32, u64), String> {
    let s = c
        .port_stats("vm1")
        .map_err(|e| format!("GET /ports/vm1/stats: {e}"))?;
    let fwd = match dir {
        Dir::Egress => s.stats.outbound.forwarded,
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
            return Err(format!(
                "vm1 holds {flows} flows after 120 s, expected {}",
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
            "dir": match dir { Dir::Egress => "egress", Dir::Ingress => "ingress" },
            "mpps": (mpps * 1000.0).round() / 1000.0,
            "flows": flows,
            "drops": d1 - d0,
            "secs": (dt * 100.0).round() / 100.0,
        })
    );
    Ok(())
}
