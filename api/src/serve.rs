//! Serving the API, and an in-process simulated host for tests: the real
//! control plane and engine over in-memory devices, on loopback.

use crate::http::{Auth, Ctx};
use crate::server::{HostLimits, SimDevices, Sluice};
use crate::state::StateStore;
use dataplane::Vni;
use dropshot::{ConfigDropshot, ConfigLogging, ConfigLoggingLevel, HttpServer, ServerBuilder};
use overlay::layer::HostOverlay;
use overlay::{V2b, V2p};
use std::net::{Ipv6Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use vmm_net::backend::Wire;
use vmm_net::worker::Workers;

/// The largest request body: a bulk V2P call of 100 000 mappings is about
/// 12 MB of JSON; anything much larger is a mistake or an attack.
pub const MAX_BODY_BYTES: usize = 32 << 20;

pub fn logger(level: ConfigLoggingLevel, name: &str) -> std::io::Result<slog::Logger> {
    ConfigLogging::StderrTerminal { level }.to_logger(name)
}

/// Starts the HTTP server (on the current tokio runtime).
pub fn serve(
    sluice: Arc<Sluice>,
    auth: Auth,
    listen: SocketAddr,
    log: slog::Logger,
) -> Result<HttpServer<Arc<Ctx>>, String> {
    let config = ConfigDropshot {
        bind_address: listen,
        default_request_body_max_bytes: MAX_BODY_BYTES,
        ..Default::default()
    };
    ServerBuilder::new(crate::http::api(), Arc::new(Ctx { sluice, auth }), log)
        .config(config)
        .start()
        .map_err(|e| format!("starting the API server on {listen}: {e}"))
}

/// Makes a random token (32 bytes from the kernel, hex).
pub fn new_token() -> std::io::Result<String> {
    let mut b = [0u8; 32];
    std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom")?, &mut b)?;
    Ok(crate::trace::hex(&b))
}

/// Reads the token file, creating it (mode 0600) with a new token first
/// if it does not exist.
pub fn token_file(path: &Path) -> std::io::Result<String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::read_to_string(path) {
        Ok(t) if !t.trim().is_empty() => return Ok(t.trim().to_string()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let t = new_token()?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(t.as_bytes())?;
    f.write_all(b"\n")?;
    f.sync_all()?;
    crate::state::set_mode(path, 0o600)?;
    Ok(t)
}

/// A simulated host served on loopback: the real control plane, workers
/// and engine; in-memory wires for the uplink and every guest.
pub struct SimHost {
    pub addr: SocketAddr,
    pub token: String,
    pub sluice: Arc<Sluice>,
    pub devices: Arc<SimDevices>,
    /// The uplink's far side (the underlay).
    pub uplink: Wire,
    server: Option<HttpServer<Arc<Ctx>>>,
    rt: Option<tokio::runtime::Runtime>,
}

/// The simulated host's underlay address.
pub const SIM_UNDERLAY: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x99, 0, 0, 0, 0, 0, 0xa);

impl SimHost {
    /// Starts one, persisting to `state_dir` if given, with `workers`
    /// workers.
    pub fn start(state_dir: Option<&Path>, workers: usize) -> Result<SimHost, String> {
        Self::start_with(state_dir, workers, HostLimits::default())
    }

    pub fn start_with(
        state_dir: Option<&Path>,
        workers: usize,
        limits: HostLimits,
    ) -> Result<SimHost, String> {
        let listen = SocketAddr::from(([127, 0, 0, 1], 0));
        Self::start_on(state_dir, workers, limits, listen, ConfigLoggingLevel::Warn)
    }

    /// The same, served on `listen`, logging at `level`.
    pub fn start_on(
        state_dir: Option<&Path>,
        workers: usize,
        limits: HostLimits,
        listen: SocketAddr,
        level: ConfigLoggingLevel,
    ) -> Result<SimHost, String> {
        let uplink = Wire::new();
        let host = HostOverlay {
            underlay_ip: SIM_UNDERLAY,
            underlay_mac: [2, 0, 0, 0, 0, 0x10],
            next_hop_mac: [2, 0, 0, 0, 0, 0x20],
            v2p: Arc::new(V2p::new(limits.v2p)),
            v2b: Arc::new(V2b::new(limits.v2b)),
        };
        // Every worker's uplink queue is the same wire: frames from the
        // underlay land on whichever worker polls first, as with fanout.
        let queues = (0..workers.max(1))
            .map(|_| Box::new(uplink.backend()) as Box<dyn vmm_net::backend::Backend>)
            .collect();
        let workers = Workers::start(host.underlay_ip, queues).map_err(|e| e.to_string())?;
        let store = match state_dir {
            Some(d) => Some(StateStore::open(d).map_err(|e| e.to_string())?),
            None => None,
        };
        let devices = Arc::new(SimDevices::default());
        let sluice = Arc::new(
            Sluice::new(host, workers, Box::new(Arc::clone(&devices)), store, limits)
                .map_err(|e| e.to_string())?,
        );
        let token = new_token().map_err(|e| e.to_string())?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        let log = logger(level, "sluiced-sim").map_err(|e| e.to_string())?;
        let auth = Auth {
            token: Some(token.clone()),
            open_loopback_reads: true,
        };
        let server = {
            let _g = rt.enter();
            serve(Arc::clone(&sluice), auth, listen, log)?
        };
        Ok(SimHost {
            addr: server.local_addr(),
            token,
            sluice,
            devices,
            uplink,
            server: Some(server),
            rt: Some(rt),
        })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The VPC most tests use.
    pub fn vni() -> Vni {
        Vni::new(7777).unwrap_or_default()
    }
}

impl Drop for SimHost {
    fn drop(&mut self) {
        if let (Some(s), Some(rt)) = (self.server.take(), self.rt.take()) {
            let _ = rt.block_on(s.close());
            rt.shutdown_background();
        }
    }
}
