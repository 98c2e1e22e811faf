//! The API's front door: sluiced owns the accept loop of the configured
//! listen address, because dropshot 0.18 has neither a connection cap
//! nor a deadline for a connection that never sends a request (its
//! HTTP-version sniffing reads without one), and exposes no way to hand
//! it accepted connections. What this module guarantees:
//!
//! - At most `max_connections` client connections are open. When full, a
//!   new connection evicts the one that has been idle longest (no request
//!   in flight), preferring one that never made a request: a client
//!   that makes requests always gets in and keeps its keep-alive
//!   connection; one that only holds sockets open keeps none of them for
//!   long. A connection whose request is waiting in its socket, not yet
//!   parsed, counts as having one in flight (the socket is peeked at):
//!   otherwise a client that has just connected while a flood of
//!   connections is being accepted would be evicted before its first
//!   request is read, and see a reset. If every connection has a request
//!   in flight, the new one is closed.
//! - A request's head must be complete within `header_timeout` of the
//!   connection becoming ready for it (hyper's header read timeout,
//!   re-armed for every request of a keep-alive connection, so it is
//!   also the idle timeout). Dripping or idle connections are closed.
//! - Each client connection is relayed over its own loopback connection
//!   to dropshot, which listens on `127.0.0.1:0`. [`Peers`] maps that
//!   relay connection back to the client's address, which auth and the
//!   per-client limits use; a request that reached dropshot's listener
//!   any other way has no entry and is refused (403).
//! - No other process can reach dropshot's listener when sluiced may
//!   make a network namespace (CAP_SYS_ADMIN, as sluiced has when it
//!   runs TAPs): the listener is bound in a namespace of sluiced's own
//!   ([`crate::private_net`]) and the relay sockets are made there too.
//!   Refusing such connections with 403 is not enough, because dropshot
//!   has no idle timeout: a local process could hold idle connections
//!   to it until sluiced ran out of descriptors. Without the privilege
//!   the listener stays on the host's loopback, with that gap, and
//!   sluiced says so in a warning at start.
//!
//! Why a namespace: dropshot 0.18 binds its listener itself (from
//! `ConfigDropshot::bind_address`, in `build_starter`) and serves only a
//! TCP listener, so it cannot be handed a socket pair, a unix socket or
//! an already-bound listener; but it binds on the thread that builds it,
//! and a socket keeps the namespace it was made in, so building it on a
//! thread inside the private namespace is enough.
//! - A client address has at most `max_open_reads_per_client` reads
//!   without an `Authorization` header in progress, counted until the response's
//!   last byte is sent (or the connection drops), so the memory of
//!   building and sending large dumps is bounded per client (429 beyond).

use crate::lock;
use crate::logging::Every;
use crate::private_net::PrivateNet;
use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify};

/// The front door's limits (`[api] max_connections`, `header_timeout_secs`,
/// `max_open_reads_per_client`).
#[derive(Clone, Copy, Debug)]
pub struct FrontLimits {
    pub max_connections: usize,
    pub header_timeout: Duration,
    pub max_open_reads_per_client: usize,
}

/// Where dropshot listens, and the namespace to connect from.
#[derive(Clone)]
pub struct Backend {
    pub addr: SocketAddr,
    /// Dropshot's private namespace, if it is in one.
    pub net: Option<Arc<PrivateNet>>,
}

impl Backend {
    async fn connect(&self) -> std::io::Result<TcpStream> {
        match &self.net {
            Some(n) => {
                n.tcp_socket(self.addr.is_ipv6())
                    .await?
                    .connect(self.addr)
                    .await
            }
            None => TcpStream::connect(self.addr).await,
        }
    }
}

/// Relay connection (its address as dropshot sees the peer) → the client.
#[derive(Debug, Default)]
pub struct Peers {
    map: Mutex<HashMap<SocketAddr, SocketAddr>>,
}

impl Peers {
    /// The client behind a connection dropshot accepted, or `None` if
    /// that connection did not come through the front door.
    pub fn client(&self, relay: SocketAddr) -> Option<SocketAddr> {
        lock(&self.map).get(&relay).copied()
    }

    fn insert(&self, relay: SocketAddr, client: SocketAddr) {
        lock(&self.map).insert(relay, client);
    }

    fn remove(&self, relay: SocketAddr) {
        lock(&self.map).remove(&relay);
    }
}

/// The default of `[api] max_open_reads_per_client`, reads without a
/// token from one client address at a time: a dump of a large V2P costs
/// ~100 bytes an entry while it is built and sent, so 4 keep a client
/// under half a GB at 1 M entries. Reads with a token are not limited
/// (the operator's own tools).
pub const OPEN_READS_PER_CLIENT: usize = 4;

/// Counts the reads without a token in progress per client address.
#[derive(Debug)]
pub struct ReadLimiter {
    max: usize,
    per_client: Mutex<HashMap<IpAddr, usize>>,
}

/// A read in progress; the count drops with it.
pub struct ReadPermit {
    limiter: Arc<ReadLimiter>,
    ip: IpAddr,
}

impl ReadLimiter {
    /// At most `max` reads at a time per client address.
    pub fn new(max: usize) -> ReadLimiter {
        ReadLimiter {
            max,
            per_client: Mutex::default(),
        }
    }

    pub fn acquire(self: &Arc<Self>, ip: IpAddr) -> Option<ReadPermit> {
        let mut m = lock(&self.per_client);
        let n = m.entry(ip).or_default();
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(ReadPermit {
            limiter: Arc::clone(self),
            ip,
        })
    }
}

impl Drop for ReadPermit {
    fn drop(&mut self) {
        let mut m = lock(&self.limiter.per_client);
        if let Some(n) = m.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.ip);
            }
        }
    }
}

/// A response body that holds a [`ReadPermit`] until it is sent or dropped.
struct Held {
    inner: RespBody,
    _permit: ReadPermit,
}

impl hyper::body::Body for Held {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, hyper::Error>>> {
        std::pin::Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// One client connection's place in the table.
struct Slot {
    in_flight: AtomicUsize,
    /// Requests this connection has made: one that made none is the
    /// first to go when the table is full.
    served: AtomicU64,
    idle_since: Mutex<Instant>,
    evict: Notify,
    /// The client socket (none in unit tests): [`Conns::admit`] peeks at
    /// it so that a connection whose request is waiting to be read is not
    /// evicted.
    sock: Option<Arc<TcpStream>>,
}

/// Whether bytes wait to be read on `sock` (a request hyper has not
/// parsed yet). `MSG_PEEK` takes nothing and touches no waker.
fn has_pending(sock: Option<&TcpStream>) -> bool {
    let Some(sock) = sock else {
        return false;
    };
    let mut b = [0u8; 1];
    let flags = rustix::net::RecvFlags::PEEK | rustix::net::RecvFlags::DONTWAIT;
    matches!(rustix::net::recv(sock, &mut b, flags), Ok((n, _)) if n > 0)
}

/// The client socket as hyper's I/O, shared with its [`Slot`] (which only
/// peeks at it). Reads and writes wait for readiness and then try, as
/// tokio's own `TcpStream` does; only hyper polls them.
struct Shared(Arc<TcpStream>);

impl tokio::io::AsyncRead for Shared {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        loop {
            std::task::ready!(self.0.poll_read_ready(cx))?;
            match self.0.try_read_buf(buf) {
                Ok(_) => return std::task::Poll::Ready(Ok(())),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                Err(e) => return std::task::Poll::Ready(Err(e)),
            }
        }
    }
}

impl tokio::io::AsyncWrite for Shared {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        loop {
            std::task::ready!(self.0.poll_write_ready(cx))?;
            match self.0.try_write(buf) {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                r => return std::task::Poll::Ready(r),
            }
        }
    }

    fn poll_write_vectored(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        loop {
            std::task::ready!(self.0.poll_write_ready(cx))?;
            match self.0.try_write_vectored(bufs) {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                r => return std::task::Poll::Ready(r),
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    /// Half-closes the client's side (a response with `Connection:
    /// close`); the socket itself closes when the connection and its slot
    /// are gone.
    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let r = rustix::net::shutdown(&*self.0, rustix::net::Shutdown::Write)
            .map_err(std::io::Error::from);
        std::task::Poll::Ready(r)
    }
}

#[derive(Default)]
struct Conns {
    next: AtomicU64,
    slots: Mutex<HashMap<u64, Arc<Slot>>>,
}

impl Conns {
    /// A slot for a new connection, evicting the longest-idle one if the
    /// table is full; `None` if every connection is busy.
    /// A place for a new connection on `sock`, and
    /// whether another was evicted for it: the longest idle of those that
    /// never made a request, else the longest idle. A connection with a
    /// request in flight, or with one waiting in its socket that hyper has
    /// not parsed yet (a client that has just connected, or reused its
    /// keep-alive connection, while a flood of connections was accepted),
    /// is never evicted. `None` when every connection is such.
    fn admit(&self, max: usize, sock: Option<Arc<TcpStream>>) -> Option<(u64, Arc<Slot>, bool)> {
        let mut slots = lock(&self.slots);
        let mut evicted = false;
        if slots.len() >= max {
            let mut idle: Vec<_> = slots
                .iter()
                .filter(|(_, s)| s.in_flight.load(Ordering::Acquire) == 0)
                .map(|(id, s)| {
                    let order = (s.served.load(Ordering::Acquire) > 0, *lock(&s.idle_since));
                    (order, *id, s.sock.clone())
                })
                .collect();
            idle.sort_unstable_by_key(|&(order, id, _)| (order, id));
            let victim = idle
                .iter()
                .find(|(_, _, sock)| !has_pending(sock.as_deref()))
                .map(|&(_, id, _)| id)?;
            if let Some(s) = slots.remove(&victim) {
                s.evict.notify_one();
                evicted = true;
            }
        }
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let slot = Arc::new(Slot {
            in_flight: AtomicUsize::new(0),
            served: AtomicU64::new(0),
            idle_since: Mutex::new(Instant::now()),
            evict: Notify::new(),
            sock,
        });
        slots.insert(id, Arc::clone(&slot));
        Some((id, slot, evicted))
    }

    fn leave(&self, id: u64) {
        lock(&self.slots).remove(&id);
    }
}

/// Marks a request in flight on its connection until dropped.
struct Busy(Arc<Slot>);

impl Busy {
    fn new(s: &Arc<Slot>) -> Busy {
        s.in_flight.fetch_add(1, Ordering::AcqRel);
        s.served.fetch_add(1, Ordering::AcqRel);
        Busy(Arc::clone(s))
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        *lock(&self.0.idle_since) = Instant::now();
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

type RespBody = BoxBody<Bytes, hyper::Error>;

/// The front door, running until `stop` says so.
pub async fn run(
    listener: TcpListener,
    backend: Backend,
    limits: FrontLimits,
    peers: Arc<Peers>,
    log: slog::Logger,
    mut stop: watch::Receiver<bool>,
) {
    let conns = Arc::new(Conns::default());
    let reads = Arc::new(ReadLimiter::new(limits.max_open_reads_per_client));
    // A flood of refusals or accept errors logs one line a second.
    let full_log = Every::new(Duration::from_secs(1));
    let err_log = Every::new(Duration::from_secs(1));
    loop {
        let (sock, client) = tokio::select! {
            r = listener.accept() => match r {
                Ok(a) => a,
                Err(e) => {
                    // EMFILE and friends: back off rather than spin.
                    if let Some(n) = err_log.tick() {
                        slog::warn!(log, "accepting an API connection failed"; "error" => %e, "times" => n);
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
            _ = stop.changed() => break,
        };
        let sock = Arc::new(sock);
        let Some((id, slot, evicted)) =
            conns.admit(limits.max_connections, Some(Arc::clone(&sock)))
        else {
            if let Some(n) = full_log.tick() {
                slog::warn!(log, "API connections at max_connections, all busy: closed new connections";
                    "max_connections" => limits.max_connections, "times" => n);
            }
            drop(sock);
            continue;
        };
        if evicted {
            if let Some(n) = full_log.tick() {
                slog::info!(log, "API connections at max_connections: closed the longest-idle ones";
                    "max_connections" => limits.max_connections, "times" => n);
            }
        }
        let _ = sock.set_nodelay(true);
        let (conns, peers, reads) = (Arc::clone(&conns), Arc::clone(&peers), Arc::clone(&reads));
        let backend = backend.clone();
        tokio::spawn(async move {
            serve_connection(sock, client, backend, limits, &slot, peers, reads).await;
            conns.leave(id);
        });
    }
    // Stopping: idle connections go now; those with a request in flight
    // finish it (dropshot waits for its handlers).
    for s in lock(&conns.slots).values() {
        if s.in_flight.load(Ordering::Acquire) == 0 {
            s.evict.notify_one();
        }
    }
}

async fn serve_connection(
    sock: Arc<TcpStream>,
    client: SocketAddr,
    backend: Backend,
    limits: FrontLimits,
    slot: &Arc<Slot>,
    peers: Arc<Peers>,
    reads: Arc<ReadLimiter>,
) {
    let relay = Arc::new(tokio::sync::Mutex::new(None::<Relay>));
    let svc_slot = Arc::clone(slot);
    let svc = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        let (relay, peers, slot) = (
            Arc::clone(&relay),
            Arc::clone(&peers),
            Arc::clone(&svc_slot),
        );
        let reads = Arc::clone(&reads);
        let backend = backend.clone();
        async move {
            let _busy = Busy::new(&slot);
            // Reads without a token: counted per client until sent.
            let open_read = req.method() == http::Method::GET
                && !req.headers().contains_key(http::header::AUTHORIZATION)
                && req.uri().path() != "/health";
            let permit = if open_read {
                match reads.acquire(client.ip()) {
                    Some(p) => Some(p),
                    None => return Ok(too_many_reads(client.ip(), reads.max)),
                }
            } else {
                None
            };
            let resp = forward(&relay, &peers, &backend, client, req).await;
            Ok::<_, std::convert::Infallible>(match permit {
                Some(p) => resp.map(|inner| Held { inner, _permit: p }.boxed()),
                None => resp,
            })
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .serve_connection(TokioIo::new(Shared(sock)), svc);
    tokio::select! {
        _ = conn => {}
        _ = slot.evict.notified() => {}
    }
}

/// One client connection's relay connection to dropshot.
struct Relay {
    sender: hyper::client::conn::http1::SendRequest<Incoming>,
}

async fn forward(
    relay: &tokio::sync::Mutex<Option<Relay>>,
    peers: &Arc<Peers>,
    backend: &Backend,
    client: SocketAddr,
    req: hyper::Request<Incoming>,
) -> hyper::Response<RespBody> {
    let mut r = relay.lock().await;
    if r.as_ref().is_none_or(|r| r.sender.is_closed()) {
        match connect(peers, backend, client).await {
            Ok(n) => *r = Some(n),
            Err(e) => return bad_gateway(&e),
        }
    }
    let Some(relay) = r.as_mut() else {
        return bad_gateway("no relay connection");
    };
    if let Err(e) = relay.sender.ready().await {
        return bad_gateway(&e.to_string());
    }
    match relay.sender.send_request(req).await {
        Ok(resp) => resp.map(|b| b.boxed()),
        Err(e) => bad_gateway(&e.to_string()),
    }
}

async fn connect(
    peers: &Arc<Peers>,
    backend: &Backend,
    client: SocketAddr,
) -> Result<Relay, String> {
    let tcp = backend.connect().await.map_err(|e| e.to_string())?;
    let _ = tcp.set_nodelay(true);
    let local = tcp.local_addr().map_err(|e| e.to_string())?;
    // Before the first request can reach dropshot.
    peers.insert(local, client);
    let (sender, conn) = match hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await {
        Ok(h) => h,
        Err(e) => {
            peers.remove(local);
            return Err(e.to_string());
        }
    };
    let peers = Arc::clone(peers);
    tokio::spawn(async move {
        let _ = conn.await;
        peers.remove(local);
    });
    Ok(Relay { sender })
}

fn bad_gateway(why: &str) -> hyper::Response<RespBody> {
    error(
        http::StatusCode::BAD_GATEWAY,
        "Unavailable",
        format!("the API server is unavailable: {why}"),
    )
}

fn too_many_reads(ip: IpAddr, max: usize) -> hyper::Response<RespBody> {
    error(
        http::StatusCode::TOO_MANY_REQUESTS,
        "TooManyRequests",
        format!(
            "{ip} has {max} reads without a token in progress, the most allowed \
             ([api] max_open_reads_per_client); wait for them or pass the token"
        ),
    )
}

/// An error in dropshot's shape, for what the front door answers itself.
fn error(status: http::StatusCode, code: &str, message: String) -> hyper::Response<RespBody> {
    let body = serde_json::json!({
        "request_id": "",
        "error_code": code,
        "message": message,
    })
    .to_string();
    let mut resp =
        hyper::Response::new(Full::new(Bytes::from(body)).map_err(|e| match e {}).boxed());
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_reads_are_limited_per_client_address() {
        let l = Arc::new(ReadLimiter::new(OPEN_READS_PER_CLIENT));
        let (a, b): (IpAddr, IpAddr) = ("127.0.0.1".parse().unwrap(), "::1".parse().unwrap());
        let held: Vec<_> = (0..OPEN_READS_PER_CLIENT)
            .map(|_| l.acquire(a).unwrap())
            .collect();
        assert!(l.acquire(a).is_none());
        // Another client is not affected; a finished read frees a place.
        let _other = l.acquire(b).unwrap();
        drop(held);
        assert!(l.acquire(a).is_some());
        assert_eq!(lock(&l.per_client).len(), 1);
    }

    #[test]
    fn a_full_table_evicts_the_longest_idle_and_never_a_busy_connection() {
        let c = Conns::default();
        let (a, _sa, _) = c.admit(2, None).unwrap();
        std::thread::sleep(Duration::from_millis(2));
        let (_b, _sb, _) = c.admit(2, None).unwrap();
        // a is the longest idle: it goes.
        let (_c, _sc, evicted) = c.admit(2, None).unwrap();
        assert!(evicted);
        assert!(!lock(&c.slots).contains_key(&a));
        assert_eq!(lock(&c.slots).len(), 2);
        // Everything busy: the newcomer is refused.
        let all: Vec<_> = lock(&c.slots).values().cloned().collect();
        let busy: Vec<_> = all.iter().map(Busy::new).collect();
        assert!(c.admit(2, None).is_none());
        assert_eq!(lock(&c.slots).len(), 2);
        drop(busy);
        assert!(c.admit(2, None).is_some());
    }

    #[test]
    fn a_connection_that_made_requests_outlives_older_ones_that_made_none() {
        let c = Conns::default();
        let (worker, s1, _) = c.admit(2, None).unwrap();
        // The worker makes a request, then a newer connection arrives
        // that makes none: the worker is the longest idle, yet stays.
        drop(Busy::new(&s1));
        std::thread::sleep(Duration::from_millis(2));
        let (idler, _s2, _) = c.admit(2, None).unwrap();
        let (_, _, evicted) = c.admit(2, None).unwrap();
        assert!(evicted);
        let slots = lock(&c.slots);
        assert!(
            slots.contains_key(&worker),
            "the working client kept its connection"
        );
        assert!(!slots.contains_key(&idler));
    }

    #[test]
    fn a_connection_whose_request_waits_unread_is_not_evicted() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .unwrap();
        let _in_rt = rt.enter();
        let c = Conns::default();
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (server, _) = l.accept().unwrap();
        server.set_nonblocking(true).unwrap();
        let server = Arc::new(TcpStream::from_std(server).unwrap());
        // The oldest connection never made a request, but its first one
        // has arrived: the younger idle one goes instead.
        let (waiting, _s1, _) = c.admit(2, Some(Arc::clone(&server))).unwrap();
        std::thread::sleep(Duration::from_millis(2));
        let (idler, _s2, _) = c.admit(2, None).unwrap();
        assert!(!has_pending(Some(&server)));
        std::io::Write::write_all(&mut client, b"GET /ports HTTP/1.1\r\n").unwrap();
        std::thread::sleep(Duration::from_millis(20));
        assert!(has_pending(Some(&server)), "peeking takes nothing");
        assert!(has_pending(Some(&server)));
        let (newest, s3, evicted) = c.admit(2, None).unwrap();
        assert!(evicted);
        let slots: Vec<u64> = lock(&c.slots).keys().copied().collect();
        assert!(
            slots.contains(&waiting),
            "the waiting request kept its connection"
        );
        assert!(!slots.contains(&idler));
        // The other one busy, the waiting one not evictable: the newcomer
        // is refused.
        let busy = Busy::new(&s3);
        assert!(c.admit(2, None).is_none());
        assert!(lock(&c.slots).contains_key(&newest));
        drop(busy);
    }
}
