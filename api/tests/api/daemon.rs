//! The `sluiced` binary itself: the demo runs, a configured daemon keeps
//! its token file private, serves with auth, stops cleanly on SIGTERM,
//! and after a `kill -9` in the middle of updates restarts with a
//! complete earlier or later state, never a mix. No root needed: the
//! uplink is `none` and the ports have no guest device.

use crate::client::Client;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const SLUICED: &str = env!("CARGO_BIN_EXE_sluiced");

/// A test's scratch directory, removed when it goes out of scope (after
/// the daemons using it, which the test declares later and so drops
/// first).
pub struct TmpDir(PathBuf);

impl std::ops::Deref for TmpDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<Path> for TmpDir {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl Drop for TmpDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn tmpdir(tag: &str) -> TmpDir {
    let d = std::env::temp_dir().join(format!("sluiced-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    TmpDir(d)
}

/// A free loopback port (bound then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub struct Daemon {
    child: Child,
    pub client: Client,
    /// Removed with the daemon (a real host's test directory).
    dir: Option<TmpDir>,
    /// Held while a real host runs: their TAP names are global.
    _turn: Option<std::sync::MutexGuard<'static, ()>>,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.dir.is_some() {
            // Delete every port, so the persistent TAPs they made go too.
            if let Some(ports) = self.client.get("/ports").body.as_array() {
                for p in ports {
                    let n = p["name"].as_str().unwrap_or_default();
                    let _ = self.client.delete(&format!("/ports/{n}"));
                }
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(d) = &self.dir {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

impl Daemon {
    /// The daemon's process id.
    pub fn child_id(&self) -> u32 {
        self.child.id()
    }
}

static REAL_HOSTS: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// A real `sluiced` (TAP guest devices, real workers; uplink `none`) for
/// the endpoint tests, or `None` (saying so) when not root: TAP devices
/// need CAP_NET_ADMIN.
pub fn real_host(test: &str) -> Option<Daemon> {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout == b"0\n")
        .unwrap_or(false);
    if !root || !Path::new("/dev/net/tun").exists() {
        eprintln!("skipped: needs root (TAP devices of the real daemon): on_daemon::{test}");
        return None;
    }
    let turn = REAL_HOSTS.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tmpdir(&format!("real-{test}"));
    let mut d = start(&dir, free_port());
    d.dir = Some(dir);
    d._turn = Some(turn);
    Some(d)
}

fn config(dir: &Path, port: u16) -> PathBuf {
    let p = dir.join("sluiced.toml");
    std::fs::write(
        &p,
        format!(
            "listen = \"127.0.0.1:{port}\"\nstate_dir = \"{}\"\nworkers = 2\nlog_level = \"warn\"\n\
             [underlay]\ninterface = \"lo\"\naddress = \"fd00:99::a\"\nnext_hop_mac = \"02:00:00:00:00:20\"\n\
             [uplink]\nkind = \"none\"\n",
            dir.join("state").display()
        ),
    )
    .unwrap();
    p
}

pub fn start(dir: &Path, port: u16) -> Daemon {
    let child = Command::new(SLUICED)
        .arg("--config")
        .arg(config(dir, port))
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if ureq::get(&format!("{base}/health")).call().is_ok() {
            break;
        }
        assert!(Instant::now() < deadline, "sluiced did not come up");
        std::thread::sleep(Duration::from_millis(20));
    }
    let token = std::fs::read_to_string(dir.join("state/token")).unwrap();
    Daemon {
        child,
        client: Client::new(base, token.trim()),
        dir: None,
        _turn: None,
    }
}

#[test]
fn the_demo_runs_every_step() {
    let out = Command::new(SLUICED)
        .args(["--demo-exit", "--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert_eq!(text.matches("\nok  ").count(), 6, "{text}");
    assert!(!text.contains("FAIL"), "{text}");
}

#[test]
fn a_configured_daemon_serves_with_auth_and_stops_on_sigterm() {
    let dir = tmpdir("auth");
    let mut d = start(&dir, free_port());
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir.join("state/token"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "the token file is private");
    let mut vm = crate::endpoints::vm("vm1", 5);
    vm["guest"] = json!({ "kind": "none" });
    assert_eq!(d.client.anonymous().post("/ports", vm.clone()).status, 401);
    d.client.ok("POST", "/ports", Some(vm));
    assert_eq!(d.client.anonymous().get("/ports").status, 200);
    let pid = d.child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = d.child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "sluiced ignored SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "clean exit: {status}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn kill_9_during_updates_leaves_a_whole_state() {
    let dir = tmpdir("kill9");
    let port = free_port();
    let d = start(&dir, port);
    let mut vm = crate::endpoints::vm("vm1", 5);
    vm["guest"] = json!({ "kind": "none" });
    d.client.ok("POST", "/ports", Some(vm));
    // Batches of 500 mappings, batch b on host fd00:99::b:<b>: a restart
    // must find batches 0..k whole and nothing of batch k+1.
    let base = d.client.base.clone();
    let token = d.client.token.clone().unwrap();
    let writer = std::thread::spawn(move || {
        let c = Client::new(base, &token);
        let mut done = 0u32;
        for b in 0..200u32 {
            let mappings: Vec<_> = (0..500u32)
                .map(|i| json!({ "vni": 7777, "ip": format!("10.{}.{}.{}", 100 + b / 100, (i / 250) + 2 * (b % 100), i % 250), "guest_mac": "a8:40:25:00:10:01", "host": format!("fd00:99::b:{b:x}") }))
                .collect();
            match ureq::put(&format!("{}/v2p", c.base))
                .set(
                    "Authorization",
                    &format!("Bearer {}", c.token.as_deref().unwrap_or("")),
                )
                .send_json(json!({ "mappings": mappings }))
            {
                Ok(_) => done += 1,
                Err(_) => break,
            }
        }
        done
    });
    std::thread::sleep(Duration::from_millis(700));
    let pid = d.child.id().to_string();
    assert!(Command::new("kill")
        .args(["-KILL", &pid])
        .status()
        .unwrap()
        .success());
    let acked = writer.join().unwrap();
    drop(d);
    let d = start(&dir, port);
    let v2p = d.client.ok("GET", "/v2p", None);
    let entries = v2p.as_array().unwrap();
    let mut per_batch = std::collections::BTreeMap::<String, usize>::new();
    for e in entries {
        *per_batch
            .entry(e["host"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    assert!(
        per_batch.values().all(|&n| n == 500),
        "every batch whole: {per_batch:?}"
    );
    let batches = per_batch.len() as u32;
    assert!(
        batches >= acked,
        "every acknowledged batch survived ({batches} < {acked})"
    );
    assert!(batches <= acked + 1, "at most the one in flight besides");
    assert_eq!(
        d.client.ok("GET", "/ports", None).as_array().unwrap().len(),
        1
    );
    drop(d);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn sluiceadm_drives_a_running_sluiced() {
    let dir = tmpdir("adm");
    let d = start(&dir, free_port());
    let cfg = dir.join("vm1.json");
    std::fs::write(&cfg, crate::endpoints::vm("vm1", 5)["config"].to_string()).unwrap();
    let adm = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_sluiceadm"))
            .arg("--url")
            .arg(&d.client.base)
            .arg("--token-file")
            .arg(dir.join("state/token"))
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (code, _, err) = adm(&[
        "create-vnic",
        "--config",
        cfg.to_str().unwrap(),
        "--no-guest",
    ]);
    assert_eq!(code, Some(0), "{err}");
    let (code, out, _) = adm(&["list-ports"]);
    assert_eq!(code, Some(0));
    assert!(out.contains("vm1") && out.contains("10.0.0.5"), "{out}");
    let (code, out, _) = adm(&[
        "add-fw-rule",
        "vm1",
        "--direction",
        "in",
        "--priority",
        "10",
        "--action",
        "allow",
        "--protocol",
        "tcp",
        "--ports",
        "22",
    ]);
    assert_eq!(code, Some(0), "{out}");
    let (code, out, _) = adm(&["dump-state"]);
    assert_eq!(code, Some(0));
    let state: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(state["ports"][0]["config"]["firewall"][0]["priority"], 10);
    let (code, _, err) = adm(&["delete-vnic", "nope"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("404") && err.contains("nope"), "{err}");
    drop(d);
    std::fs::remove_dir_all(&dir).unwrap();
}
