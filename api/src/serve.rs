//! Serving the API, and an in-process simulated host for tests: the real
//! control plane and engine over in-memory devices, on loopback.

use crate::front::{Backend, FrontLimits, Peers};
use crate::http::{Auth, Ctx, RequestLimits};
use crate::private_net::PrivateNet;
use crate::server::{HostLimits, SimDevices, Sluice};
use crate::state::StateStore;
use dataplane::Vni;
use dropshot::{ConfigDropshot, ConfigLogging, ConfigLoggingLevel, HttpServer, ServerBuilder};
use overlay::layer::HostOverlay;
use overlay::{V2b, V2p};
use std::net::{Ipv6Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use vmm_net::backend::Wire;
use vmm_net::worker::Workers;

/// The largest request body: a bulk V2P call of 100 000 mappings is about
/// 12 MB of JSON; anything much larger is a mistake or an attack.
pub const MAX_BODY_BYTES: usize = 32 << 20;

pub fn logger(level: ConfigLoggingLevel, name: &str) -> std::io::Result<slog::Logger> {
    ConfigLogging::StderrTerminal { level }.to_logger(name)
}

/// How the API is served (`listen` and the `[api]` limits).
#[derive(Clone, Copy, Debug)]
pub struct ServeOptions {
    pub listen: SocketAddr,
    pub front: FrontLimits,
    pub request: RequestLimits,
    /// Put dropshot's listener in a network namespace of its own when
    /// permitted (see crate::front); sluiced always asks, the simulated
    /// host does not (its tests reach the internal port directly).
    pub private_internal: bool,
}

impl ServeOptions {
    /// `listen` with the default limits.
    pub fn on(listen: SocketAddr) -> ServeOptions {
        Self::from_config(listen, &crate::config::ApiSection::default())
    }

    pub fn from_config(listen: SocketAddr, a: &crate::config::ApiSection) -> ServeOptions {
        ServeOptions {
            listen,
            front: FrontLimits {
                max_connections: a.max_connections,
                header_timeout: Duration::from_secs(a.header_timeout_secs),
                max_open_reads_per_client: a.max_open_reads_per_client,
            },
            request: RequestLimits {
                body_timeout: Duration::from_secs(a.body_timeout_secs),
            },
            private_internal: true,
        }
    }
}

/// The running API: the front door on the listen address, dropshot
/// behind it on loopback (a private namespace's if permitted).
pub struct Server {
    dropshot: HttpServer<Arc<Ctx>>,
    front: tokio::task::JoinHandle<()>,
    stop: tokio::sync::watch::Sender<bool>,
    addr: SocketAddr,
}

impl Server {
    /// The address clients use.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Dropshot's own listener (loopback), which only the front door
    /// may use: tests show that a request arriving there directly is
    /// refused.
    pub fn internal_addr(&self) -> SocketAddr {
        self.dropshot.local_addr()
    }

    /// Stops accepting, then stops dropshot (waiting for its handlers).
    pub async fn close(self) -> Result<(), String> {
        let _ = self.stop.send(true);
        let _ = self.front.await;
        self.dropshot.close().await
    }
}

/// Starts the HTTP server (on the current tokio runtime).
pub fn serve(
    sluice: Arc<Sluice>,
    auth: Auth,
    opts: ServeOptions,
    log: slog::Logger,
) -> Result<Server, String> {
    let log = crate::logging::logger(log);
    let listen = opts.listen;
    let front = std::net::TcpListener::bind(listen)
        .and_then(|l| l.set_nonblocking(true).map(|()| l))
        .and_then(tokio::net::TcpListener::from_std)
        .map_err(|e| format!("starting the API server on {listen}: {e}"))?;
    let addr = front
        .local_addr()
        .map_err(|e| format!("starting the API server on {listen}: {e}"))?;
    let config = ConfigDropshot {
        // Only the front door connects here (see crate::front).
        bind_address: SocketAddr::from(([127, 0, 0, 1], 0)),
        default_request_body_max_bytes: MAX_BODY_BYTES,
        ..Default::default()
    };
    let peers = Arc::new(Peers::default());
    let ctx = Ctx {
        sluice,
        auth,
        limits: opts.request,
        peers: Arc::clone(&peers),
    };
    let builder = ServerBuilder::new(crate::http::api(), Arc::new(ctx), log.clone()).config(config);
    let net = if opts.private_internal {
        match PrivateNet::new() {
            Ok(n) => Some(Arc::new(n)),
            Err(e) => {
                slog::warn!(log, "no private network namespace for the internal API listener \
                    (needs CAP_SYS_ADMIN): it listens on the host's loopback, where local \
                    processes can open connections to it"; "error" => %e);
                None
            }
        }
    } else {
        None
    };
    let starter = match &net {
        Some(n) => {
            // Bound inside the namespace; registered with this runtime.
            let rt = tokio::runtime::Handle::current();
            n.run(move || {
                let _g = rt.enter();
                builder.build_starter()
            })
            .map_err(|e| format!("starting the API server: {e}"))?
        }
        None => builder.build_starter(),
    }
    .map_err(|e| format!("starting the API server: {e}"))?;
    let dropshot = starter.start();
    let private = net.is_some();
    slog::info!(log, "API serving"; "listen" => %addr,
        "internal_listen" => %dropshot.local_addr(),
        "internal_namespace" => if private { "private" } else { "host" });
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let front = tokio::spawn(crate::front::run(
        front,
        Backend {
            addr: dropshot.local_addr(),
            net,
        },
        opts.front,
        peers,
        log,
        stopped,
    ));
    Ok(Server {
        dropshot,
        front,
        stop,
        addr,
    })
}

/// Makes a random token (32 bytes from the kernel, hex).
pub fn new_token() -> std::io::Result<String> {
    let mut b = [0u8; 32];
    std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom")?, &mut b)?;
    Ok(crate::trace::hex(&b))
}

/// The shortest token accepted from a file: 128 bits as hex. Shorter
/// ones can be guessed by whoever can reach the API.
pub const MIN_TOKEN_CHARS: usize = 32;

/// Reads the token file, creating it (mode 0600) with a new token first
/// if it does not exist. An existing file is used only if it is a
/// regular file (not a symbolic link: it is never followed), owned by
/// this user, readable by nobody else, and holds at least
/// [`MIN_TOKEN_CHARS`] characters; anything else is refused with what
/// is wrong and how to fix it.
pub fn token_file(path: &Path) -> std::io::Result<String> {
    use std::io::{Error, ErrorKind, Read, Write};
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let refuse = |msg: String| Err(Error::new(ErrorKind::PermissionDenied, msg));
    match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
    {
        Ok(mut f) => {
            let m = f.metadata()?;
            if !m.is_file() {
                return refuse("it is not a regular file".into());
            }
            let me = effective_uid()?;
            if m.uid() != me {
                return refuse(format!(
                    "it is owned by uid {}, not by this user (uid {me})",
                    m.uid()
                ));
            }
            if m.mode() & 0o077 != 0 {
                return refuse(format!(
                    "its mode {:o} lets others read it; chmod 600 it (and replace the token: it may have been read)",
                    m.mode() & 0o777
                ));
            }
            let mut t = String::new();
            f.read_to_string(&mut t)?;
            let t = t.trim();
            if t.chars().count() < MIN_TOKEN_CHARS || t.chars().any(char::is_whitespace) {
                return refuse(format!(
                    "the token is {} characters; it must be one word of at least {MIN_TOKEN_CHARS} \
                     (delete the file and sluiced makes a good one)",
                    t.chars().count()
                ));
            }
            return Ok(t.to_string());
        }
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return refuse(
                "it is a symbolic link; sluiced does not follow one for its token".into(),
            );
        }
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let t = new_token()?;
    // O_EXCL: never through a link or over a file planted meanwhile.
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_NOFOLLOW)
        .mode(0o600)
        .open(path)?;
    f.write_all(t.as_bytes())?;
    f.write_all(b"\n")?;
    f.sync_all()?;
    Ok(t)
}

/// This process's effective uid (from /proc: no unsafe call needed).
pub fn effective_uid() -> std::io::Result<u32> {
    let s = std::fs::read_to_string("/proc/self/status")?;
    s.lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|u| u.parse().ok())
        .ok_or_else(|| std::io::Error::other("no effective uid in /proc/self/status"))
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
    server: Option<Server>,
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
            mcast: Default::default(),
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
            read_token: None,
            require_token_for_reads: false,
        };
        let server = {
            let _g = rt.enter();
            let opts = ServeOptions {
                private_internal: false,
                ..ServeOptions::on(listen)
            };
            serve(Arc::clone(&sluice), auth, opts, log)?
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

    /// See [`Server::internal_addr`].
    pub fn internal_addr(&self) -> Option<SocketAddr> {
        self.server.as_ref().map(Server::internal_addr)
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
