//! Who may reach the real `sluiced`, and what a client may hold (issue
//! 17 items 5, 7, 11): the `Bearer` scheme in any case (RFC 9110
//! §11.1), local clients of a `[::]` listen, a token for reads, a read
//! token, the token checked before a body is read, body and header
//! timeouts, the connection cap, and bodies with trailing data.

use crate::client::Client;
use serde_json::json;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub use crate::daemon::{free_port, tmpdir, SLUICED};

/// A configured `sluiced` (uplink `none`, no root) with `extra` TOML
/// lines (an `[api]` section, say), killed when dropped.
pub struct Sluiced {
    pub child: Child,
    pub client: Client,
    pub addr: SocketAddr,
}

impl Drop for Sluiced {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn write_config(dir: &Path, listen: &str, extra: &str) -> PathBuf {
    let p = dir.join("sluiced.toml");
    std::fs::write(
        &p,
        format!(
            "listen = \"{listen}\"\nstate_dir = \"{}\"\nworkers = 1\nlog_level = \"warn\"\n\
             [underlay]\ninterface = \"lo\"\naddress = \"fd00:99::a\"\nnext_hop_mac = \"02:00:00:00:00:20\"\n\
             [uplink]\nkind = \"none\"\n{extra}",
            dir.join("state").display()
        ),
    )
    .unwrap();
    p
}

/// Runs `sluiced --config` (through `wrap`, e.g. `prlimit ...`, if
/// given) and waits for it to answer on `addr`.
pub fn start_wrapped(dir: &Path, listen: &str, extra: &str, wrap: &[&str]) -> Sluiced {
    let cfg = write_config(dir, listen, extra);
    let mut cmd = match wrap.split_first() {
        Some((w, rest)) => {
            let mut c = Command::new(w);
            c.args(rest).arg(SLUICED);
            c
        }
        None => Command::new(SLUICED),
    };
    let child = cmd
        .arg("--config")
        .arg(cfg)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let port = listen.rsplit(':').next().unwrap();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let base = format!("http://{addr}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while ureq::get(&format!("{base}/health")).call().is_err() {
        assert!(Instant::now() < deadline, "sluiced did not come up");
        std::thread::sleep(Duration::from_millis(20));
    }
    let token = std::fs::read_to_string(dir.join("state/token")).unwrap();
    Sluiced {
        child,
        client: Client::new(base, token.trim()),
        addr,
    }
}

pub fn start(dir: &Path, extra: &str) -> Sluiced {
    start_wrapped(dir, &format!("127.0.0.1:{}", free_port()), extra, &[])
}

fn vm_none(name: &str, last: u8) -> serde_json::Value {
    let mut vm = crate::endpoints::vm(name, last);
    vm["guest"] = json!({ "kind": "none" });
    vm
}

/// Sends `head` (and `body`) on a raw connection and reads what comes
/// back within `wait`: the status line's code, or `None` if nothing.
fn raw(addr: SocketAddr, head: &str, body: &[u8], wait: Duration) -> Option<u16> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(head.as_bytes()).unwrap();
    let _ = s.write_all(body);
    s.set_read_timeout(Some(wait)).unwrap();
    let mut buf = [0u8; 512];
    let n = s.read(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf[..n]);
    text.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
}

/// Whether the server closed `s` within `within` (a read returns 0 or
/// a reset).
fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    s.set_read_timeout(Some(within)).unwrap();
    let mut b = [0u8; 64];
    match s.read(&mut b) {
        Ok(0) => true,
        Ok(_) => true, // an error response, then the close
        Err(e) => !matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
    }
}

#[test]
fn the_bearer_scheme_is_case_insensitive() {
    let dir = tmpdir("bearer");
    let d = start(&dir, "");
    let token = d.client.token.clone().unwrap();
    for scheme in ["bearer", "BEARER", "Bearer", "bEaReR"] {
        let r = ureq::post(&format!("{}/ports", d.client.base))
            .set("Authorization", &format!("{scheme}  {token}"))
            .send_json(vm_none(&format!("vm-{scheme}"), 5 + scheme.len() as u8));
        match r {
            Ok(r) => assert_eq!(r.status(), 201, "{scheme}"),
            // A 409 (the same address twice) still means the token passed.
            Err(ureq::Error::Status(409, _)) => {}
            Err(e) => panic!("scheme {scheme}: {e}"),
        }
    }
    let r = ureq::post(&format!("{}/ports", d.client.base))
        .set("Authorization", &format!("Basic {token}"))
        .send_json(vm_none("vm9", 9));
    assert!(
        matches!(r, Err(ureq::Error::Status(401, _))),
        "another scheme is not a bearer token"
    );
}

#[test]
fn a_dual_stack_listen_sees_local_clients_as_local() {
    let dir = tmpdir("dualstack");
    let port = free_port();
    let d = start_wrapped(&dir, &format!("[::]:{port}"), "", &[]);
    // 127.0.0.1 arrives as ::ffff:127.0.0.1 on a [::] socket.
    assert_eq!(d.client.anonymous().get("/ports").status, 200);
    let v6 = Client {
        base: format!("http://[::1]:{port}"),
        token: None,
    };
    assert_eq!(v6.get("/ports").status, 200);
    // Mutations still need the token, local or not.
    assert_eq!(v6.post("/ports", vm_none("vm1", 5)).status, 401);
}

#[test]
fn reads_can_require_a_token_and_a_read_token_reads_only() {
    let dir = tmpdir("readtoken");
    let rt = dir.join("read-token");
    let d = start(
        &dir,
        &format!(
            "[api]\nrequire_token_for_reads = true\nread_token_file = \"{}\"\n",
            rt.display()
        ),
    );
    let anon = d.client.anonymous();
    let r = anon.get("/ports");
    assert_eq!(r.status, 401, "{}", r.body);
    assert!(
        r.message().contains("require_token_for_reads"),
        "{}",
        r.message()
    );
    assert_eq!(anon.get("/v2p").status, 401);
    assert_eq!(anon.get("/metrics").status, 401);
    assert_eq!(d.client.get("/ports").status, 200);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&rt).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "sluiced made the read token private");
    let reader = Client::new(
        d.client.base.clone(),
        std::fs::read_to_string(&rt).unwrap().trim(),
    );
    assert_eq!(reader.get("/ports").status, 200);
    assert_eq!(reader.get("/v2p").status, 200);
    let r = reader.post("/ports", vm_none("vm1", 5));
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.message().contains("read token"), "{}", r.message());
    assert_eq!(reader.delete("/ports/vm1").status, 403);
    assert_eq!(d.client.get("/ports").body, json!([]));
}

#[test]
fn the_token_is_checked_before_a_body_is_read() {
    let dir = tmpdir("early401");
    let d = start(&dir, "");
    // 31 MB announced, none of it sent: the answer comes anyway.
    let head = format!(
        "PUT /v2p HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        31 << 20
    );
    let t = Instant::now();
    assert_eq!(
        raw(d.addr, &head, b"{\"mappings\": [", Duration::from_secs(5)),
        Some(401)
    );
    assert!(t.elapsed() < Duration::from_secs(5));
    let post = head.replacen("PUT /v2p", "POST /ports", 1);
    assert_eq!(raw(d.addr, &post, b"", Duration::from_secs(5)), Some(401));
}

#[test]
fn a_body_that_does_not_arrive_in_time_is_408() {
    let dir = tmpdir("body408");
    let d = start(&dir, "[api]\nbody_timeout_secs = 1\n");
    let token = d.client.token.clone().unwrap();
    let head = format!(
        "PUT /v2p HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
    );
    let t = Instant::now();
    assert_eq!(
        raw(d.addr, &head, b"{\"mappings\"", Duration::from_secs(10)),
        Some(408)
    );
    assert!(t.elapsed() >= Duration::from_millis(900));
    // The daemon is fine afterwards.
    assert_eq!(d.client.get("/v2p").status, 200);
}

#[test]
fn a_body_with_trailing_data_is_refused() {
    let dir = tmpdir("trailing");
    let d = start(&dir, "");
    let token = d.client.token.clone().unwrap();
    let one = vm_none("vm1", 5).to_string();
    for body in [
        format!("{one} garbage"),
        format!("{one}{one}"),
        format!("{one}\n{{}}"),
    ] {
        let r = ureq::post(&format!("{}/ports", d.client.base))
            .set("Authorization", &format!("Bearer {token}"))
            .set("Content-Type", "application/json")
            .send_string(&body);
        let Err(ureq::Error::Status(400, r)) = r else {
            panic!("accepted a body with trailing data: {r:?}");
        };
        let msg = r.into_string().unwrap();
        assert!(msg.contains("data after the JSON document"), "{msg}");
    }
    assert_eq!(
        d.client.get("/ports").body,
        json!([]),
        "nothing was created"
    );
    // Trailing whitespace is no second document.
    let r = ureq::post(&format!("{}/ports", d.client.base))
        .set("Authorization", &format!("Bearer {token}"))
        .set("Content-Type", "application/json")
        .send_string(&format!("{one}\n\n"));
    assert_eq!(r.unwrap().status(), 201);
}

#[test]
fn idle_and_dripping_connections_are_closed_after_the_header_timeout() {
    let dir = tmpdir("headertimeout");
    let d = start(&dir, "[api]\nheader_timeout_secs = 1\n");
    let mut idle = TcpStream::connect(d.addr).unwrap();
    let t = Instant::now();
    assert!(
        closed_within(&mut idle, Duration::from_secs(5)),
        "an idle connection stays open"
    );
    assert!(t.elapsed() >= Duration::from_millis(900));

    let mut drip = TcpStream::connect(d.addr).unwrap();
    drip.write_all(b"GET /ports HTTP/1.1\r\n").unwrap();
    let t = Instant::now();
    let mut closed = false;
    while t.elapsed() < Duration::from_secs(5) {
        if drip.write_all(b"X-Drip: 1\r\n").is_err() {
            closed = true;
            break;
        }
        if closed_within(&mut drip, Duration::from_millis(200)) {
            closed = true;
            break;
        }
    }
    assert!(closed, "a dripping connection stays open");
    // A keep-alive connection between requests is closed the same way.
    let mut ka = TcpStream::connect(d.addr).unwrap();
    ka.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    ka.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut b = [0u8; 256];
    let n = ka.read(&mut b).unwrap();
    assert!(String::from_utf8_lossy(&b[..n]).starts_with("HTTP/1.1 204"));
    assert!(closed_within(&mut ka, Duration::from_secs(5)));
}

/// sluiced's open descriptors.
pub fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

#[test]
fn the_connection_cap_holds_and_a_working_client_still_gets_in() {
    let dir = tmpdir("maxconn");
    let d = start(
        &dir,
        "[api]\nmax_connections = 8\nheader_timeout_secs = 60\n",
    );
    let pid = d.child.id();
    let before = fds(pid);
    let mut idle: Vec<TcpStream> = (0..40)
        .map(|_| TcpStream::connect(d.addr).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    // At most 8 held, whatever the clients do.
    let held = fds(pid);
    assert!(
        held <= before + 8,
        "{held} descriptors open, {before} before"
    );
    // A client with requests to make gets in every time.
    for i in 0..20 {
        let r = d.client.get("/ports");
        assert_eq!(r.status, 200, "request {i}");
    }
    // The evicted idle connections were closed, the last ones kept.
    let mut closed = 0;
    for s in idle.iter_mut() {
        closed += usize::from(closed_within(s, Duration::from_millis(20)));
    }
    assert!(closed >= 32, "{closed} of 40 idle connections closed");
}

#[test]
fn the_api_keys_are_checked() {
    let dir = tmpdir("apikeys");
    for (extra, want) in [
        ("[api]\nmax_connections = 0\n", "api.max_connections"),
        (
            "[api]\nheader_timeout_secs = 0\n",
            "api.header_timeout_secs",
        ),
        (
            "[api]\nbody_timeout_secs = 99999\n",
            "api.body_timeout_secs",
        ),
        (
            "[api]\nmax_open_reads_per_client = 0\n",
            "api.max_open_reads_per_client",
        ),
        ("[api]\ncolour = 1\n", "colour"),
    ] {
        let cfg = write_config(&dir, "127.0.0.1:0", extra);
        let out = Command::new(SLUICED)
            .arg("--config")
            .arg(&cfg)
            .output()
            .unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(want), "{extra}: {err}");
    }
}

#[test]
fn requests_that_bypass_the_front_door_are_refused() {
    let h = api::serve::SimHost::start(None, 1).unwrap();
    let inside = h.internal_addr().unwrap();
    assert_ne!(inside, h.addr);
    let c = Client::new(format!("http://{inside}"), &h.token);
    for path in ["/ports", "/v2p", "/metrics"] {
        let r = c.get(path);
        assert_eq!(r.status, 403, "{path}: {}", r.body);
        assert!(r.message().contains("internal"), "{}", r.message());
    }
    assert_eq!(c.post("/ports", vm_none("vm1", 5)).status, 403);
    // Through the front door, the same calls work.
    let front = Client::new(h.url(), &h.token);
    assert_eq!(front.get("/ports").status, 200);
}

#[test]
fn reads_without_a_token_are_limited_per_client_until_their_response_is_sent() {
    use api::types::{V2pMapping, V2pSet};
    let h = api::serve::SimHost::start(None, 1).unwrap();
    // A dump of ~20 MB: more than the sockets between here and dropshot
    // buffer, so a client that does not read holds its read open.
    let mappings = (0..200_000u32)
        .map(|i| V2pMapping {
            vni: api::serve::SimHost::vni(),
            ip: std::net::Ipv4Addr::from(0x0a00_0000 + i).into(),
            guest_mac: vnic::config::MacAddr([0xa8, 0x40, 0x25, 0, 0x10, 1]),
            host: "fd00:99::b".parse().unwrap(),
        })
        .collect();
    h.sluice.set_v2p(V2pSet { mappings }, false).unwrap();
    let mut stuck: Vec<TcpStream> = (0..4)
        .map(|_| {
            let mut s = TcpStream::connect(h.addr).unwrap();
            s.write_all(b"GET /v2p HTTP/1.1\r\nHost: x\r\n\r\n")
                .unwrap();
            s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
            let mut b = [0u8; 12];
            s.read_exact(&mut b).unwrap();
            assert_eq!(&b, b"HTTP/1.1 200");
            s
        })
        .collect();
    let anon = Client {
        base: h.url(),
        token: None,
    };
    let r = anon.get("/ports");
    assert_eq!(r.status, 429, "{}", r.body);
    assert!(
        r.message().contains("reads without a token"),
        "{}",
        r.message()
    );
    // The token holder is not limited; health is never limited.
    assert_eq!(Client::new(h.url(), &h.token).get("/ports").status, 200);
    assert_eq!(anon.get("/health").status, 204);
    // A client that goes away frees its place.
    stuck.pop();
    let deadline = Instant::now() + Duration::from_secs(10);
    while anon.get("/ports").status != 200 {
        assert!(Instant::now() < deadline, "the place was not freed");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn max_open_reads_per_client_is_the_configured_number() {
    use api::types::{V2pMapping, V2pSet};
    let dir = tmpdir("openreads");
    let d = start(&dir, "[api]\nmax_open_reads_per_client = 1\n");
    // A dump of ~20 MB, more than the sockets on the way buffer (see
    // the test above): a client that does not read holds its read open.
    let mappings = (0..200_000u32)
        .map(|i| V2pMapping {
            vni: api::serve::SimHost::vni(),
            ip: std::net::Ipv4Addr::from(0x0a00_0000 + i).into(),
            guest_mac: vnic::config::MacAddr([0xa8, 0x40, 0x25, 0, 0x10, 1]),
            host: "fd00:99::b".parse().unwrap(),
        })
        .collect();
    let set = serde_json::to_value(V2pSet { mappings }).unwrap();
    assert_eq!(d.client.put("/v2p", set).status, 200);
    let mut stuck = TcpStream::connect(d.addr).unwrap();
    stuck
        .write_all(b"GET /v2p HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    stuck
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut b = [0u8; 12];
    stuck.read_exact(&mut b).unwrap();
    assert_eq!(&b, b"HTTP/1.1 200");
    // One read held: with the default of 4 the next would be served.
    let anon = d.client.anonymous();
    let r = anon.get("/ports");
    assert_eq!(r.status, 429, "{}", r.body);
    assert!(
        r.message().contains("1 reads without a token")
            && r.message().contains("max_open_reads_per_client"),
        "{}",
        r.message()
    );
    drop(stuck);
    let deadline = Instant::now() + Duration::from_secs(10);
    while anon.get("/ports").status != 200 {
        assert!(Instant::now() < deadline, "the place was not freed");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The TCP ports sluiced `pid` listens on, as seen from each of its
/// threads' network namespaces (`/proc/PID/task/TID/net/tcp*`), matched
/// to its own sockets by inode: `(port, in the test's namespace?)`.
fn listening_ports(pid: u32) -> Vec<(u16, bool)> {
    let inodes: std::collections::HashSet<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|l| {
            let l = l.to_string_lossy().into_owned();
            Some(l.strip_prefix("socket:[")?.strip_suffix(']')?.to_string())
        })
        .collect();
    let ours = std::fs::read_link("/proc/self/ns/net").unwrap();
    let mut found = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let task = task.unwrap().path();
        let Ok(ns) = std::fs::read_link(task.join("ns/net")) else {
            continue;
        };
        for table in ["net/tcp", "net/tcp6"] {
            let text = std::fs::read_to_string(task.join(table)).unwrap_or_default();
            for line in text.lines().skip(1) {
                let f: Vec<&str> = line.split_whitespace().collect();
                // local_address, st (0A: LISTEN), inode.
                if f.len() > 9 && f[3] == "0A" && inodes.contains(f[9]) {
                    let port = f[1].rsplit(':').next().unwrap();
                    let entry = (u16::from_str_radix(port, 16).unwrap(), ns == ours);
                    if !found.contains(&entry) {
                        found.push(entry);
                    }
                }
            }
        }
    }
    found
}

/// Issue 17 item 5: a local process holding idle connections to
/// dropshot's internal port (which has no idle timeout) could use up
/// sluiced's descriptors and take the API down. As root, that port is
/// in a network namespace of sluiced's own: connections to it from here
/// are refused, and the API stays up. Needs root (CAP_SYS_ADMIN).
#[test]
fn idle_connections_to_the_internal_port_cannot_take_the_api_down() {
    let root = std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"));
    if !root {
        assert!(
            std::env::var_os("CI").is_none(),
            "this test needs root (a private network namespace) and CI is set"
        );
        eprintln!("skipped: needs root (a private network namespace)");
        return;
    }
    let dir = tmpdir("internal");
    let listen = format!("127.0.0.1:{}", free_port());
    // 200 descriptors: 300 held connections would be more than sluiced has.
    let d = start_wrapped(&dir, &listen, "", &["prlimit", "--nofile=200"]);
    let pid = d.child.id();
    let ports = listening_ports(pid);
    let internal: Vec<u16> = ports
        .iter()
        .filter(|(p, _)| *p != d.addr.port())
        .map(|(p, _)| *p)
        .collect();
    assert_eq!(internal.len(), 1, "sluiced's listeners: {ports:?}");
    let internal = SocketAddr::from(([127, 0, 0, 1], internal[0]));
    assert!(
        ports.contains(&(d.addr.port(), true)),
        "the API address is in the host's namespace: {ports:?}"
    );
    // A local process tries to hold 300 idle connections to it.
    let held: Vec<TcpStream> = (0..300)
        .filter_map(|_| TcpStream::connect_timeout(&internal, Duration::from_millis(50)).ok())
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    // An authenticated client is still served, every time.
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(3))
        .build();
    let token = std::fs::read_to_string(dir.join("state/token")).unwrap();
    for i in 0..20 {
        let r = agent
            .get(&format!("http://{}/ports", d.addr))
            .set("Authorization", &format!("Bearer {}", token.trim()))
            .call();
        assert!(
            matches!(&r, Ok(resp) if resp.status() == 200),
            "request {i} with {} idle connections to {internal} held: {r:?}",
            held.len()
        );
    }
    assert!(
        held.is_empty(),
        "{} connections to the internal port {internal} made from outside sluiced",
        held.len()
    );
    assert!(fds(pid) < 100, "{} descriptors open", fds(pid));
}
