//! The vocabulary of the CLI tests: running `sluiceadm`, canned vNIC
//! configurations, and reading its tables.

use api::serve::SimHost;
use serde_json::{json, Value};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// What a run of `sluiceadm` did.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// The stdout as JSON (the run used `--json`).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}", self.stdout))
    }
}

/// Runs the binary with `args` (and `stdin`, if given), with none of the
/// SLUICE_* variables of the environment the tests run in.
pub fn sluiceadm(args: &[&str], stdin: Option<&[u8]>) -> Run {
    let mut c = Command::new(env!("CARGO_BIN_EXE_sluiceadm"));
    c.args(args)
        .env_remove("SLUICE_URL")
        .env_remove("SLUICE_TOKEN")
        .env_remove("SLUICE_TOKEN_FILE")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().expect("sluiceadm runs");
    if let Some(input) = stdin {
        let mut s = child.stdin.take().expect("stdin");
        s.write_all(input).expect("writing stdin");
    }
    let out = child.wait_with_output().expect("sluiceadm finishes");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `sluiceadm --url URL --token TOKEN args...` against a simulated host.
pub fn adm(h: &SimHost, args: &[&str]) -> Run {
    adm_in(h, args, None)
}

pub fn adm_in(h: &SimHost, args: &[&str], stdin: Option<&[u8]>) -> Run {
    let url = h.url();
    let mut all = vec!["--url", url.as_str(), "--token", h.token.as_str()];
    all.extend_from_slice(args);
    sluiceadm(&all, stdin)
}

/// A run that must succeed: its stdout.
pub fn ok(h: &SimHost, args: &[&str]) -> String {
    let r = adm(h, args);
    assert_eq!(
        r.code, 0,
        "sluiceadm {args:?} failed: {}{}",
        r.stdout, r.stderr
    );
    assert!(r.stderr.is_empty(), "sluiceadm {args:?}: {}", r.stderr);
    r.stdout
}

/// A `--json` run that must succeed: its JSON.
pub fn ok_json(h: &SimHost, args: &[&str]) -> Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let out = ok(h, &all);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}):\n{out}"))
}

/// A run that must fail with exit status 1: its stderr.
pub fn fails(h: &SimHost, args: &[&str]) -> String {
    let r = adm(h, args);
    assert_eq!(r.code, 1, "sluiceadm {args:?}: {r:?}");
    r.stderr
}

/// The rows of a table (by its header's first word), each split on
/// whitespace; the header row excluded. Stops at the first blank line.
pub fn rows(text: &str, first_column: &str) -> Vec<Vec<String>> {
    let mut lines = text
        .lines()
        .skip_while(|l| l.split_whitespace().next() != Some(first_column));
    assert!(
        lines.next().is_some(),
        "no table headed {first_column}:\n{text}"
    );
    lines
        .take_while(|l| !l.trim().is_empty())
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .collect()
}

/// The header row of a table starting with `first_column`.
pub fn header(text: &str, first_column: &str) -> Vec<String> {
    text.lines()
        .find(|l| l.split_whitespace().next() == Some(first_column))
        .unwrap_or_else(|| panic!("no table headed {first_column}:\n{text}"))
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

/// vm `name`: 10.0.0.`last`/24 in VPC 7777, MAC a8:40:25:00:00:`last`,
/// SNAT and a default route to the internet.
pub fn vm_config(name: &str, last: u8) -> Value {
    json!({
        "name": name,
        "guest_mac": format!("a8:40:25:00:00:{last:02x}"),
        "gateway_mac": "a8:40:25:ff:ff:01",
        "vni": 7777,
        "ipv4": { "addr": format!("10.0.0.{last}"), "subnet": "10.0.0.0/24", "gateway": "10.0.0.1" },
        "external": { "snat": [snat_range(last)] },
        "routes": [{ "dest": "0.0.0.0/0", "target": "internet_gateway", "class": "system" }],
        "limits": { "flows": 4096 }
    })
}

/// A folder for a test's files, removed when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("sluiceadm-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("temp dir");
        TempDir(p)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Writes `content` to `name` in the folder; its path as a string.
    pub fn file(&self, name: &str, content: &[u8]) -> String {
        let p = self.0.join(name);
        std::fs::write(&p, content).expect("writing a test file");
        p.display().to_string()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Starts a simulated host with vm1 (a TAP guest) on it.
pub fn host_with_vm1(tmp: &TempDir) -> SimHost {
    let h = SimHost::start(None, 2).expect("simulated host");
    let cfg = tmp.file("vm1.json", vm_config("vm1", 5).to_string().as_bytes());
    ok(&h, &["create-vnic", "--config", &cfg, "--tap", "tap-vm1"]);
    h
}

/// A TCP SYN from vm `last` (its MAC and 10.0.0.`last`) to `dst`.
pub fn syn(last: u8, dst: [u8; 4], dport: u16) -> Vec<u8> {
    syn_from(last, last, dst, dport)
}

/// A TCP SYN from the MAC of vm `mac_last` with source 10.0.0.`ip_last`.
pub fn syn_from(mac_last: u8, ip_last: u8, dst: [u8; 4], dport: u16) -> Vec<u8> {
    sluice_test_support::tcp_syn(
        (
            [0xa8, 0x40, 0x25, 0, 0, mac_last],
            [0xa8, 0x40, 0x25, 0xff, 0xff, 1],
        ),
        (std::net::Ipv4Addr::new(10, 0, 0, ip_last), 40000).into(),
        (std::net::Ipv4Addr::from(dst), dport).into(),
    )
}

/// Waits (bounded) until `cond` holds.
pub fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !cond() {
        assert!(std::time::Instant::now() < deadline, "timed out: {what}");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// A port's SNAT ports on 203.0.113.10: vm1's (`last` 5) 2048-4095, the
/// others 128 each above it (two ports of one host never share one).
pub fn snat_range(last: u8) -> Value {
    let (first, end) = if last == 5 {
        (2048, 4095)
    } else {
        let f = 4096 + u16::from(last) * 128;
        (f, f + 127)
    };
    json!({ "ip": "203.0.113.10", "first_port": first, "last_port": end })
}
