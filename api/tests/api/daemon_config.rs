//! The real `sluiced` and its configuration (issue 16): a misspelt value
//! stops it, naming the accepted ones; `[underlay] mtu` bounds the vNICs'
//! MTU at create and at restore. No root needed (uplink `none`, ports
//! without guest devices).

use crate::client::Client;
use crate::endpoints::vm;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::daemon::{free_port, SLUICED};

fn tmpdir(tag: &str) -> crate::daemon::TmpDir {
    crate::daemon::tmpdir(&format!("cfg-{tag}"))
}

fn config(dir: &Path, port: u16, top: &str, underlay: &str) -> PathBuf {
    let p = dir.join("sluiced.toml");
    std::fs::write(
        &p,
        format!(
            "listen = \"127.0.0.1:{port}\"\nstate_dir = \"{}\"\n{top}\n\
             [underlay]\ninterface = \"lo\"\naddress = \"fd00:99::a\"\nnext_hop_mac = \"02:00:00:00:00:20\"\n{underlay}\n\
             [uplink]\nkind = \"none\"\n",
            dir.join("state").display()
        ),
    )
    .unwrap();
    p
}

/// Runs sluiced until it exits (it must, within 10 s): status, stderr.
fn refused(cfg: &Path) -> (i32, String) {
    let mut child = Command::new(SLUICED)
        .arg("--config")
        .arg(cfg)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            let mut e = String::new();
            use std::io::Read;
            child.stderr.take().unwrap().read_to_string(&mut e).unwrap();
            return (st.code().unwrap_or(-1), e);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("sluiced started with {}", cfg.display());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

struct Running(Child, Client);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(cfg: &Path, dir: &Path, port: u16) -> Running {
    let child = Command::new(SLUICED)
        .arg("--config")
        .arg(cfg)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while ureq::get(&format!("{base}/health")).call().is_err() {
        assert!(Instant::now() < deadline, "sluiced did not come up");
        std::thread::sleep(Duration::from_millis(20));
    }
    let token = std::fs::read_to_string(dir.join("state/token")).unwrap();
    Running(child, Client::new(base, token.trim()))
}

#[test]
fn a_misspelt_log_level_stops_sluiced_naming_the_accepted_ones() {
    let dir = tmpdir("level");
    let cfg = config(&dir, free_port(), "log_level = \"inof\"", "");
    let (code, err) = refused(&cfg);
    assert_ne!(code, 0, "{err}");
    assert!(err.contains("inof"), "{err}");
    for l in ["trace", "debug", "info", "warn", "error", "critical"] {
        assert!(err.contains(l), "{err} does not name {l}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_underlay_mtu_bounds_vnics_at_create_and_at_restore() {
    let dir = tmpdir("mtu");
    let port = free_port();
    let mut p = vm("vm1", 5);
    p["guest"] = json!({ "kind": "none" });
    {
        let cfg = config(&dir, port, "log_level = \"warn\"", "mtu = 9000");
        let d = start(&cfg, &dir, port);
        // 1500 fits a 9000-byte underlay; the state records the MTU.
        d.1.ok("POST", "/ports", Some(p.clone()));
        assert_eq!(d.1.ok("GET", "/state", None)["underlay_mtu"], 9000);
    }
    // The same state on a 1500-byte underlay: not restored.
    let cfg = config(&dir, port, "log_level = \"warn\"", "mtu = 1500");
    let (code, err) = refused(&cfg);
    assert_ne!(code, 0, "{err}");
    assert!(
        err.contains("ports[0].config.mtu: 1500 does not fit the underlay MTU 1500 with the tunnel (at most 1426)"),
        "{err}"
    );
    // Started afresh on it, the port is refused at create.
    for f in ["state/state.json", "state/journal.jsonl"] {
        let _ = std::fs::remove_file(dir.join(f));
    }
    let d = start(&cfg, &dir, port);
    let r = d.1.post("/ports", p.clone());
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(
        r.message(),
        "config.mtu: 1500 does not fit the underlay MTU 1500 with the tunnel (at most 1426)"
    );
    p["config"]["mtu"] = json!(1400);
    d.1.ok("POST", "/ports", Some(p));
    drop(d);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `[flow_logs]` settings out of range, a section logging into nothing
/// and a misspelt key stop sluiced, each naming the setting.
#[test]
fn bad_flow_log_settings_stop_sluiced_naming_the_setting() {
    let dir = tmpdir("flowlogs-bad");
    let port = free_port();
    for (section, want) in [
        (
            "[flow_logs]\njson_file = \"/tmp/f.jsonl\"\ndenied_per_sec = 2000000",
            "flow_logs.denied_per_sec: 2000000 is out of range 0..=1000000",
        ),
        (
            "[flow_logs]\njson_file = \"/tmp/f.jsonl\"\nqueue_records = 1",
            "flow_logs.queue_records: 1 is out of range 16..=1048576",
        ),
        (
            "[flow_logs]\nipfix_collector = \"127.0.0.1:4739\"\nactive_timeout_secs = 0",
            "flow_logs.active_timeout_secs: 0 is out of range 1..=86400",
        ),
        (
            "[flow_logs]\nipfix_collector = \"0.0.0.0:4739\"",
            "flow_logs.ipfix_collector: 0.0.0.0:4739 is not an address to send to",
        ),
        (
            "[flow_logs]\ndenied_per_sec = 10",
            "flow_logs: needs ipfix_collector or json_file (or both)",
        ),
        ("[flow_logs]\njson_fil = \"/tmp/f.jsonl\"", "json_fil"),
    ] {
        // After [uplink]: the section is the file's last.
        let cfg = config(&dir, port, "log_level = \"warn\"", "");
        let mut text = std::fs::read_to_string(&cfg).unwrap();
        text += section;
        std::fs::write(&cfg, text).unwrap();
        let (code, err) = refused(&cfg);
        assert_ne!(code, 0, "{section}: {err}");
        assert!(err.contains(want), "{section}: {err}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// sluiced with `[flow_logs]`: a port's records reach the JSON file and
/// the exporter's counters are in `/metrics`.
#[test]
fn sluiced_exports_flow_logs_to_its_json_file() {
    let dir = tmpdir("flowlogs-on");
    let port = free_port();
    let json_file = dir.join("flows.jsonl");
    let cfg = config(&dir, port, "log_level = \"warn\"", "");
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text += &format!("[flow_logs]\njson_file = \"{}\"\n", json_file.display());
    std::fs::write(&cfg, text).unwrap();
    let d = start(&cfg, &dir, port);
    let mut p = vm("vm1", 5);
    p["guest"] = json!({ "kind": "none" });
    d.1.ok("POST", "/ports", Some(p));
    // No guest, so no packets: the file is open and the counters are
    // exported, all zero.
    let m = match d.1.get("/metrics").body {
        serde_json::Value::String(s) => s,
        other => other.to_string(),
    };
    for fam in [
        "sluice_flow_log_records_total{port=\"vm1\"} 0",
        "sluice_flow_log_dropped_total{port=\"vm1\",reason=\"queue_full\"} 0",
        "sluice_flow_log_dropped_total{port=\"vm1\",reason=\"rate_limited\"} 0",
        "sluice_flow_log_exported_total 0",
        "sluice_flow_log_export_errors_total 0",
    ] {
        assert!(m.contains(fam), "{fam} not in\n{m}");
    }
    assert!(json_file.exists(), "the JSON-lines file is opened at start");
    drop(d);
    std::fs::remove_dir_all(&dir).unwrap();
}
