//! sluiced: one per host. Reads its configuration, restores the saved
//! state (ports, rules, V2P, V2B), runs the workers and serves the API
//! until SIGTERM or SIGINT.
//!
//! With no configuration file it runs a self-contained demo on simulated
//! devices (no root needed): see `sluiced --help`.

use api::config::{self, Config, Uplink};
use api::devices::HostDevices;
use api::http::Auth;
use api::serve::{self, SimHost};
use api::server::{HostLimits, Sluice};
use api::state::StateStore;
use clap::Parser;
use dropshot::ConfigLoggingLevel;
use overlay::layer::HostOverlay;
use overlay::{V2b, V2p};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use vmm_net::backend::Backend;
use vmm_net::uplinks::UplinkDevice;
use vmm_net::worker::Workers;

/// How often a guest device that failed at start is tried again.
const GUEST_RETRY: std::time::Duration = std::time::Duration::from_secs(2);

#[derive(Parser, Debug)]
#[command(
    name = "sluiced",
    version,
    about = "sluice's per-host daemon: VPC dataplane workers and the control API",
    after_help = "Examples:
  sluiced                                  # the demo: a simulated host on 127.0.0.1:7480
  sluiced --config /etc/sluice/sluiced.toml
  sluiced --config host.toml --workers 2 --listen 127.0.0.1:7481

Without --config, sluiced runs a demo: a simulated host (the real control
plane, workers and engine over in-memory devices) with a small VPC, a
scripted exchange printed as it happens, then the API on loopback for
sluiceadm to explore. The configuration file's format is documented in
api/src/config.rs and the README."
)]
struct Args {
    /// The configuration file (TOML).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Serve the API here (overrides the file's `listen`).
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Persist state here (overrides the file's `state_dir`).
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// Worker threads (overrides the file's `workers`).
    #[arg(long)]
    workers: Option<usize>,
    /// Demo only: exit after the scripted exchange (status 1 if a step failed).
    #[arg(long)]
    demo_exit: bool,
    /// Print the API's OpenAPI document and exit.
    #[arg(long)]
    openapi: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.openapi {
        print!("{}", api::api::openapi_json());
        return ExitCode::SUCCESS;
    }
    let r = match &args.config {
        None => demo(&args),
        Some(p) => match Config::load(p) {
            Ok(c) => run(c, &args),
            Err(e) => Err(e.to_string()),
        },
    };
    match r {
        Ok(code) => code,
        Err(e) => {
            eprintln!("sluiced: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Waits for SIGTERM or SIGINT.
async fn until_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut t), Ok(mut i)) => {
            tokio::select! {
                _ = t.recv() => {}
                _ = i.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

fn demo(args: &Args) -> Result<ExitCode, String> {
    let listen = args.listen.unwrap_or_else(|| {
        config::DEFAULT_LISTEN
            .parse()
            .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 7480)))
    });
    let workers = args.workers.unwrap_or(2);
    let h = SimHost::start_on(
        args.state_dir.as_deref(),
        workers,
        HostLimits::default(),
        listen,
        ConfigLoggingLevel::Warn,
    )?;
    println!(
        "sluiced demo: a simulated host (underlay {}), {workers} workers, API on {}",
        h.sluice.host().underlay_ip,
        h.url()
    );
    if h.sluice.list_ports().map(|p| p.is_empty()).unwrap_or(true) {
        api::demo::program(&h)?;
    }
    println!("VPC {}: vm1 10.0.0.5 and vm2 10.0.0.6 here, vm3 10.0.0.7 on host fd00:99::b, internet via boundary fd00:99::100\n", api::demo::VNI);
    let (lines, ok) = api::demo::script(&h);
    for l in &lines {
        println!("{l}");
    }
    let token_path = api::demo::write_token(&h.token)?;
    println!(
        "\nThe API is up. Try (from the repository):
  cargo run -q -p api --bin sluiceadm -- --url {url} list-ports
  cargo run -q -p api --bin sluiceadm -- --url {url} dump-uft vm1
  cargo run -q -p api --bin sluiceadm -- --url {url} stats
  cargo run -q -p api --bin sluiceadm -- --url {url} --token-file {tok} trace vm1 --direction out --proto tcp --src 10.0.0.5 --dst 93.184.216.34 --dport 443
  curl -s {url}/metrics | head
Stop with Ctrl-C.",
        url = h.url(),
        tok = token_path.display()
    );
    if args.demo_exit {
        api::demo::remove_token(&token_path);
        return Ok(if ok {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        });
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(until_signal());
    api::demo::remove_token(&token_path);
    println!("sluiced demo: stopping");
    Ok(ExitCode::SUCCESS)
}

/// One uplink as configured, with the addresses it sends from and to.
struct UplinkPlan {
    interface: String,
    mac: [u8; 6],
    next_hop_mac: [u8; 6],
    mtu: Option<u16>,
}

/// The configured uplinks with their MACs and MTUs resolved: from the
/// interface (AF_PACKET), else only what the file says.
fn plan_uplinks(c: &Config) -> Result<Vec<UplinkPlan>, String> {
    c.uplink_list()
        .into_iter()
        .map(|e| {
            let (if_mac, if_mtu) = match &c.uplink {
                Uplink::AfPacket { .. } => {
                    let (mac, mtu) =
                        config::interface_facts(&e.interface).map_err(|e| e.to_string())?;
                    (mac, Some(mtu))
                }
                _ => (vnic::config::MacAddr([2, 0, 0, 0, 0, 1]), None),
            };
            Ok(UplinkPlan {
                mac: e.mac.unwrap_or(if_mac).0,
                next_hop_mac: e.next_hop_mac.0,
                mtu: e.mtu.or(if_mtu),
                interface: e.interface,
            })
        })
        .collect()
}

/// Each worker's queues of every uplink, in the plan's order.
fn uplinks(c: &Config, plan: &[UplinkPlan]) -> Result<Vec<Vec<UplinkDevice>>, String> {
    let queues: Vec<Vec<Box<dyn Backend>>> = match &c.uplink {
        Uplink::AfPacket { .. } | Uplink::None => plan
            .iter()
            .enumerate()
            .map(|(i, p)| uplink_queues(c, i, &p.interface))
            .collect::<Result<_, _>>()?,
        _ => vec![uplink_queues(c, 0, &plan[0].interface)?],
    };
    let mut per_worker: Vec<Vec<UplinkDevice>> = (0..c.workers).map(|_| Vec::new()).collect();
    for (p, qs) in plan.iter().zip(queues) {
        for (w, q) in qs.into_iter().enumerate() {
            if let Some(v) = per_worker.get_mut(w) {
                v.push(UplinkDevice {
                    name: p.interface.clone(),
                    backend: q,
                    mac: p.mac,
                    next_hop_mac: p.next_hop_mac,
                });
            }
        }
    }
    Ok(per_worker)
}

/// One uplink's queues, one per worker (`index`: its place among the
/// host's uplinks).
fn uplink_queues(c: &Config, index: usize, ifname: &str) -> Result<Vec<Box<dyn Backend>>, String> {
    let n = c.workers;
    match &c.uplink {
        Uplink::AfPacket {
            rcvbuf,
            sndbuf,
            udp_gso,
        } => {
            let d = vmm_net::afpacket::DEFAULT_SOCKET_BUFFER;
            // One socket per worker, in one fanout group per uplink (the
            // kernel spreads flows; the switch hands mis-steered tunnels
            // over).
            let group = ((std::process::id() + index as u32) & 0xffff) as u16;
            (0..n)
                .map(|_| {
                    let opts = vmm_net::afpacket::AfPacketOptions {
                        fanout: (n > 1).then_some(group),
                        rcvbuf: rcvbuf.unwrap_or(d),
                        sndbuf: sndbuf.unwrap_or(d),
                        udp_gso: udp_gso.unwrap_or(false),
                        ..Default::default()
                    };
                    vmm_net::afpacket::AfPacket::open(ifname, opts)
                        .map(|a| Box::new(a) as Box<dyn Backend>)
                        .map_err(|e| format!("opening AF_PACKET on {ifname}: {e}"))
                })
                .collect()
        }
        Uplink::Pcap { input, output } => {
            if n != 1 {
                return Err("a pcap uplink needs workers = 1".into());
            }
            let p = vmm_net::pcap::Pcap::open(
                input.as_deref(),
                output.as_deref(),
                Box::new(dataplane::MonotonicClock::new()),
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default(),
            )
            .map_err(|e| format!("opening the pcap uplink: {e}"))?;
            Ok(vec![Box::new(p)])
        }
        #[cfg(feature = "dpdk")]
        Uplink::Dpdk {
            eal_args,
            port,
            mbufs,
            mbuf_data_room,
            zero_copy,
        } => {
            use vmm_net::dpdk::{DpdkPort, DpdkPortOptions, Eal};
            let eal = Eal::init(eal_args).map_err(|e| format!("DPDK EAL: {e}"))?;
            let name = port.clone().unwrap_or_else(|| "0".into());
            let d = DpdkPortOptions::default();
            let pool = DpdkPortOptions {
                mbufs: mbufs.unwrap_or(d.mbufs),
                mbuf_data_room: mbuf_data_room.unwrap_or(d.mbuf_data_room),
                zero_copy: zero_copy.unwrap_or(d.zero_copy),
                ..d
            };
            let opts = DpdkPortOptions {
                rx_queues: n as u16,
                tx_queues: n as u16,
                ..pool.clone()
            };
            let mut p =
                DpdkPort::open(&eal, &name, opts).map_err(|e| format!("DPDK port {name}: {e}"))?;
            let queues = p.take_queues();
            // The port and the EAL live as long as the process: the
            // queues keep the device; the EAL handle is kept for the
            // workers to register their threads and for DPDK guests.
            api::dpdk::set_eal(eal, pool);
            std::mem::forget(p);
            Ok(queues
                .into_iter()
                .map(|q| Box::new(q) as Box<dyn Backend>)
                .collect())
        }
        #[cfg(not(feature = "dpdk"))]
        Uplink::Dpdk { .. } => {
            Err("uplink kind 'dpdk' needs a sluiced built with --features dpdk".into())
        }
        Uplink::None => Ok((0..n)
            .map(|_| Box::new(vmm_net::backend::Null) as Box<dyn Backend>)
            .collect()),
    }
}

/// What each worker thread does first: with DPDK, register with the EAL
/// (per-lcore mempool caches).
fn worker_hook() -> Option<Arc<dyn Fn(usize) + Send + Sync>> {
    #[cfg(feature = "dpdk")]
    if api::dpdk::eal().is_some() {
        return Some(Arc::new(|_| {
            if let Some(e) = api::dpdk::eal() {
                let _ = e.register_thread();
            }
        }));
    }
    None
}

fn run(mut c: Config, args: &Args) -> Result<ExitCode, String> {
    if let Some(l) = args.listen {
        c.listen = l;
    }
    if let Some(d) = &args.state_dir {
        c.state_dir = d.clone();
    }
    if let Some(w) = args.workers {
        c.workers = w;
    }
    c.check().map_err(|e| e.to_string())?;
    let log = serve::logger(c.log_level.dropshot(), "sluiced").map_err(|e| e.to_string())?;
    // Each uplink's MTU: its `mtu`, else the interface's; an uplink with
    // no interface (pcap, DPDK, none) has only the former. A frame must
    // fit whichever uplink carries it: the smallest.
    let plan = plan_uplinks(&c)?;
    let limits = HostLimits {
        v2p: c.limits.v2p,
        v2b: c.limits.v2b,
        ports: c.limits.ports,
        underlay_mtu: plan.iter().filter_map(|p| p.mtu).min(),
    };
    // The overlay writes the first uplink's addresses; the switch
    // rewrites those of a frame it sends on the second.
    let host = HostOverlay {
        underlay_ip: c.underlay.address,
        underlay_mac: plan[0].mac,
        next_hop_mac: plan[0].next_hop_mac,
        v2p: Arc::new(V2p::new(limits.v2p)),
        v2b: Arc::new(V2b::new(limits.v2b)),
        mcast: Default::default(),
    };
    let store = StateStore::open(&c.state_dir).map_err(|e| e.to_string())?;
    let token = serve::token_file(&c.token_path())
        .map_err(|e| format!("token file {}: {e}", c.token_path().display()))?;
    let read_token = match &c.api.read_token_file {
        Some(p) => Some(
            serve::token_file(p)
                .map_err(|e| format!("api.read_token_file {}: {e}", p.display()))?,
        ),
        None => None,
    };
    let queues = uplinks(&c, &plan)?;
    let switch = vmm_net::switch::SwitchOptions {
        accept_zero_udp6_checksum: c.underlay.accept_zero_udp6_checksum,
    };
    let workers = Workers::start_uplinks(host.underlay_ip, switch, queues, worker_hook())
        .map_err(|e| e.to_string())?;
    let sluice = Arc::new(
        Sluice::new(host, workers, Box::new(HostDevices), Some(store), limits)
            .map_err(|e| e.to_string())?,
    );
    let listed = sluice.list_ports().unwrap_or_default();
    let ports = listed.len();
    for p in listed.iter().filter(|p| p.guest_error.is_some()) {
        slog::warn!(log, "port started without its guest device (retried every 2 s)";
            "port" => &p.name, "error" => p.guest_error.as_deref().unwrap_or_default());
    }
    api::server::spawn_guest_retry(&sluice, GUEST_RETRY).map_err(|e| e.to_string())?;
    let flow_logs = match &c.flow_logs {
        Some(f) => {
            let fl = Arc::new(
                api::flowlogs::FlowLogs::open(f.clone()).map_err(|e| format!("flow_logs: {e}"))?,
            );
            sluice
                .with_flow_logs(Arc::clone(&fl))
                .map_err(|e| e.to_string())?;
            let t = fl.spawn().map_err(|e| format!("flow_logs: {e}"))?;
            slog::info!(log, "flow logs on";
                "ipfix_collector" => f.ipfix_collector.map(|a| a.to_string()),
                "json_file" => f.json_file.as_ref().map(|p| p.display().to_string()));
            Some((fl, t))
        }
        None => None,
    };
    // Fleet mode: the restored state keeps forwarding while the agent
    // connects; it then applies only what etcd says differs.
    #[cfg(not(feature = "fleet"))]
    if c.fleet.is_some() {
        return Err("this sluiced was built without fleet mode: [fleet] needs \
                    `cargo build --release -p api --features fleet` (which needs protoc: \
                    Debian's protobuf-compiler and libprotobuf-dev)"
            .to_string());
    }
    #[cfg(feature = "fleet")]
    let _fleet = match &c.fleet {
        Some(f) => {
            sluice.set_fleet(format!(
                "etcd {} as host '{}'",
                f.endpoints.join(","),
                f.host
            ));
            let opts = api::fleet::AgentOptions::new(f.endpoints.clone(), &f.host);
            slog::info!(log, "fleet mode"; "host" => &f.host, "etcd" => f.endpoints.join(","));
            Some(api::fleet::Agent::start(Arc::clone(&sluice), opts).map_err(|e| e.to_string())?)
        }
        None => None,
    };
    slog::info!(log, "sluiced started";
        "underlay" => %c.underlay.address,
        "uplinks" => plan.iter().map(|p| p.interface.as_str()).collect::<Vec<_>>().join(","),
        "workers" => c.workers, "ports_restored" => ports, "listen" => %c.listen,
        "state_dir" => %c.state_dir.display());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let auth = Auth {
        token: Some(token),
        read_token,
        require_token_for_reads: c.api.require_token_for_reads,
    };
    let opts = serve::ServeOptions::from_config(c.listen, &c.api);
    rt.block_on(async {
        let server = serve::serve(Arc::clone(&sluice), auth, opts, log.clone())?;
        until_signal().await;
        slog::info!(log, "sluiced stopping");
        server.close().await
    })?;
    drop(rt);
    // What the ports logged until now is exported before exiting.
    if let Some((fl, t)) = flow_logs {
        fl.stop();
        let _ = t.join();
    }
    // The workers stop with the last reference; guest TAPs persist.
    drop(sluice);
    Ok(ExitCode::SUCCESS)
}
