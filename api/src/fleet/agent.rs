//! The fleet agent of one host: lists the host's desired state at a
//! revision, applies it ([`Reconciler::resync`]), then watches from the
//! next revision and applies each change as it comes.
//!
//! - A lost connection (a member down, no leader, the network) is
//!   retried; the watch resumes from the last applied revision, so no
//!   change is missed or applied twice.
//! - If etcd compacted past that revision, the agent lists again and
//!   applies only the difference (flows on entries that did not change
//!   keep going).
//! - The host's status (`/sluice/v1/status/<host>`) is written under a
//!   lease kept alive by the agent: a dead host's status disappears
//!   with it.
//!
//! The agent runs on a thread of its own (with its own single-threaded
//! runtime): applying calls into [`Sluice`], which waits for workers.

use crate::fleet::keys;
use crate::fleet::reconcile::{Event, HostStatus, Reconciler};
use crate::lock;
use crate::server::Sluice;
use etcd_client::{Client, ConnectOptions, EventType, GetOptions, PutOptions, WatchOptions};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Keys per page of a listing: 100 000 V2P mappings are ~15 MB, past
/// gRPC's 4 MB message limit in one response.
const LIST_PAGE: i64 = 5_000;
/// A unary call to etcd that takes longer is given up and retried.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// Between two attempts to reach the store.
const RETRY: Duration = Duration::from_millis(200);

#[derive(Clone, Debug)]
pub struct AgentOptions {
    pub endpoints: Vec<String>,
    pub host: String,
    /// The status lease's time to live: a host silent this long is gone.
    pub lease_ttl: Duration,
    /// The status is written at most this often (and only on a change):
    /// `fleet-status` may be this much behind.
    pub status_every: Duration,
}

impl AgentOptions {
    pub fn new(endpoints: Vec<String>, host: &str) -> AgentOptions {
        AgentOptions {
            endpoints,
            host: host.to_string(),
            lease_ttl: Duration::from_secs(10),
            // 100 hosts writing theirs ten times a second loaded etcd
            // (and so everyone's convergence) more than the changes did.
            status_every: Duration::from_secs(1),
        }
    }
}

/// `/sluice/v1/hosts/<host>`: a host that joined the fleet (kept when
/// it is down, so ports can be given to it; `sluiceadm --etcd` refuses
/// ports for hosts without one).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostRecord {
    pub underlay_ip: std::net::Ipv6Addr,
}

struct Shared {
    rec: Mutex<Reconciler>,
    stop: AtomicBool,
    /// Tests and operators: `false` drops the connection and keeps it
    /// down until `true`.
    connect: AtomicBool,
    g: Arc<crate::fleet::Gauges>,
    last_error: Mutex<Option<String>>,
}

/// A running agent. Dropping it stops it.
pub struct Agent {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Agent {
    pub fn start(sluice: Arc<Sluice>, opts: AgentOptions) -> std::io::Result<Agent> {
        let shared = Arc::new(Shared {
            rec: Mutex::new(Reconciler::new(Arc::clone(&sluice), &opts.host)),
            stop: AtomicBool::new(false),
            connect: AtomicBool::new(true),
            g: Arc::clone(sluice.fleet_gauges()),
            last_error: Mutex::new(None),
        });
        let s = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name(format!("fleet-{}", opts.host))
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        *lock(&s.last_error) = Some(format!("no runtime: {e}"));
                        return;
                    }
                };
                rt.block_on(run(&s, &opts));
            })?;
        Ok(Agent {
            shared,
            thread: Some(thread),
        })
    }

    /// The revision the host has applied everything up to (0: not yet
    /// synchronised).
    pub fn applied_revision(&self) -> i64 {
        self.shared.g.applied_revision.load(Ordering::Acquire)
    }

    /// How many times the agent listed the whole desired state (the
    /// first sync, then once per compaction it fell behind).
    pub fn relists(&self) -> u64 {
        self.shared.g.relists.load(Ordering::Relaxed)
    }

    /// How many connections to the store the agent made.
    pub fn sessions(&self) -> u64 {
        self.shared.g.sessions.load(Ordering::Relaxed)
    }

    pub fn last_error(&self) -> Option<String> {
        lock(&self.shared.last_error).clone()
    }

    pub fn status(&self) -> HostStatus {
        lock(&self.shared.rec).status()
    }

    /// Drops the connection to the store (`false`) until allowed again.
    pub fn set_connected(&self, yes: bool) {
        self.shared.connect.store(yes, Ordering::Release);
    }

    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.halt();
    }
}

async fn run(s: &Shared, opts: &AgentOptions) {
    let mut need_list = true;
    while !s.stop.load(Ordering::Acquire) {
        if !s.connect.load(Ordering::Acquire) {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        }
        s.g.sessions.fetch_add(1, Ordering::Relaxed);
        let r = session(s, opts, &mut need_list).await;
        s.g.connected.store(false, Ordering::Relaxed);
        match r {
            Ok(()) => {}
            Err(e) => {
                *lock(&s.last_error) = Some(e);
                tokio::time::sleep(RETRY).await;
            }
        }
    }
}

fn err(what: &str) -> impl Fn(etcd_client::Error) -> String + '_ {
    move |e| format!("{what}: {e}")
}

async fn timed<T>(
    what: &str,
    f: impl std::future::Future<Output = Result<T, etcd_client::Error>>,
) -> Result<T, String> {
    match tokio::time::timeout(CALL_TIMEOUT, f).await {
        Ok(r) => r.map_err(err(what)),
        Err(_) => Err(format!("{what}: no answer in {CALL_TIMEOUT:?}")),
    }
}

/// One connection to the store: sync if needed, then watch until the
/// connection fails (`Err`), or the agent is stopped or disconnected.
async fn session(s: &Shared, opts: &AgentOptions, need_list: &mut bool) -> Result<(), String> {
    let copts = ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(2))
        .with_keep_alive(Duration::from_secs(1), Duration::from_secs(2))
        // A member cut off from the others must not feed a stale watch.
        .with_require_leader(true);
    let mut client = timed(
        "connecting to etcd",
        Client::connect(opts.endpoints.clone(), Some(copts)),
    )
    .await?;
    let underlay_ip = lock(&s.rec).sluice().host().underlay_ip;
    let record = serde_json::to_vec(&HostRecord { underlay_ip }).unwrap_or_default();
    timed(
        "registering the host",
        client.put(keys::host_record(&opts.host), record, None),
    )
    .await?;
    let ttl = i64::try_from(opts.lease_ttl.as_secs().max(1)).unwrap_or(10);
    let lease = timed("granting the status lease", client.lease_grant(ttl, None)).await?;
    let (mut keeper, mut acks) = timed(
        "keeping the lease alive",
        client.lease_keep_alive(lease.id()),
    )
    .await?;
    let mut written: Option<HostStatus> = None;
    let mut last_ka = Instant::now();
    let mut last_status = Instant::now()
        .checked_sub(opts.status_every)
        .unwrap_or_else(Instant::now);
    let ka_every = opts.lease_ttl / 3;
    loop {
        if *need_list {
            let (kvs, rev) = list(&mut client).await?;
            let mut rec = lock(&s.rec);
            rec.resync(kvs, rev);
            s.g.applied_revision
                .store(rec.revision(), Ordering::Release);
            s.g.refused_keys
                .store(rec.refused().len() as u64, Ordering::Relaxed);
            s.g.relists.fetch_add(1, Ordering::Relaxed);
            *need_list = false;
        }
        let from = lock(&s.rec).revision() + 1;
        let wopts = WatchOptions::new()
            .with_prefix()
            .with_start_revision(from)
            .with_progress_notify();
        let mut stream = timed("watching", client.watch(keys::DESIRED, Some(wopts))).await?;
        s.g.connected.store(true, Ordering::Relaxed);
        // Stop, disconnect and the lease are looked at this often.
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        loop {
            tokio::select! {
                msg = stream.message() => {
                    let Some(resp) = msg.map_err(err("the watch"))? else {
                        return Err("the watch ended".into());
                    };
                    if resp.compact_revision() > 0 {
                        // Compacted past our revision: list again.
                        *need_list = true;
                        break;
                    }
                    if resp.canceled() {
                        return Err(format!("the watch was cancelled: {}", resp.cancel_reason()));
                    }
                    if resp.created() {
                        // Its header is the store's revision now, not
                        // how far the events sent so far go.
                        continue;
                    }
                    // Without events, a progress notice: every event up
                    // to its revision has been sent.
                    let mut last = resp.header().map(|h| h.revision()).unwrap_or(0);
                    let events: Vec<Event> = resp
                        .events()
                        .iter()
                        .filter_map(|ev| {
                            let kv = ev.kv()?;
                            let key = String::from_utf8_lossy(kv.key()).into_owned();
                            Some(match ev.event_type() {
                                EventType::Put => Event::Put { key, value: kv.value().to_vec() },
                                EventType::Delete => Event::Delete { key },
                            })
                        })
                        .collect();
                    if let Some(kv) = resp.events().last().and_then(|e| e.kv()) {
                        // A response may not carry every event up to its
                        // header's revision; its last event's does.
                        last = kv.mod_revision();
                    }
                    let mut rec = lock(&s.rec);
                    rec.apply(events, last);
                    s.g.applied_revision.store(rec.revision(), Ordering::Release);
            s.g.refused_keys.store(rec.refused().len() as u64, Ordering::Relaxed);
                }
                _ = tick.tick() => {
                    if s.stop.load(Ordering::Acquire) || !s.connect.load(Ordering::Acquire) {
                        let _ = client.lease_revoke(lease.id()).await;
                        return Ok(());
                    }
                    if last_ka.elapsed() >= ka_every {
                        timed("keeping the lease alive", keeper.keep_alive()).await?;
                        // The answers are read so the stream does not fill.
                        let _ = tokio::time::timeout(Duration::from_millis(50), acks.message()).await;
                        last_ka = Instant::now();
                    }
                    if last_status.elapsed() < opts.status_every {
                        continue;
                    }
                    last_status = Instant::now();
                    let now = lock(&s.rec).status();
                    if written.as_ref() != Some(&now) {
                        let v = serde_json::to_vec(&now).unwrap_or_default();
                        let p = PutOptions::new().with_lease(lease.id());
                        timed("writing the status", client.put(keys::status(&opts.host), v, Some(p))).await?;
                        written = Some(now);
                    }
                }
            }
        }
    }
}

/// Every desired-state key at one revision, in pages.
pub async fn list(client: &mut Client) -> Result<(Vec<(String, Vec<u8>)>, i64), String> {
    let end = keys::range_end(keys::DESIRED);
    let mut start = keys::DESIRED.as_bytes().to_vec();
    let mut rev = 0;
    let mut out = Vec::new();
    loop {
        let mut o = GetOptions::new()
            .with_range(end.clone())
            .with_limit(LIST_PAGE);
        if rev > 0 {
            o = o.with_revision(rev);
        }
        let mut r = timed(
            "listing the desired state",
            client.get(start.clone(), Some(o)),
        )
        .await?;
        if rev == 0 {
            rev = r.header().map(|h| h.revision()).unwrap_or(0);
        }
        let more = r.more();
        let kvs = r.take_kvs();
        let last = kvs.last().map(|kv| kv.key().to_vec());
        for kv in kvs {
            let (k, v) = kv.into_key_value();
            out.push((String::from_utf8_lossy(&k).into_owned(), v));
        }
        match (more, last) {
            (true, Some(mut l)) => {
                l.push(0);
                start = l;
            }
            _ => return Ok((out, rev)),
        }
    }
}
