//! `sluiced` in fleet mode, programmed with `sluiceadm --etcd`: the
//! daemon applies what the store says, its API refuses local changes
//! with 409 naming the fleet, `fleet-status` shows it caught up, and
//! after a restart without etcd it comes back from its state file.

use super::etcd::Cluster;
use crate::client::Client;
use crate::daemon::{free_port, tmpdir, SLUICED};
use serde_json::{json, Value};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(dir: &Path, port: u16, etcd: &str) -> (Daemon, Client) {
    let cfg = dir.join("sluiced.toml");
    std::fs::write(
        &cfg,
        format!(
            "listen = \"127.0.0.1:{port}\"\nstate_dir = \"{}\"\nlog_level = \"warn\"\n\
             [underlay]\ninterface = \"lo\"\naddress = \"fd00:99::d1\"\nnext_hop_mac = \"02:00:00:00:00:20\"\n\
             [uplink]\nkind = \"none\"\n\
             [fleet]\nendpoints = [\"{etcd}\"]\nhost = \"d1\"\n",
            dir.join("state").display()
        ),
    )
    .unwrap();
    let child = Command::new(SLUICED)
        .arg("--config")
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let d = Daemon(child);
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while ureq::get(&format!("{base}/health")).call().is_err() {
        assert!(Instant::now() < deadline, "sluiced did not come up");
        std::thread::sleep(Duration::from_millis(20));
    }
    let token = std::fs::read_to_string(dir.join("state/token")).unwrap();
    (d, Client::new(base, token.trim()))
}

fn adm(etcd: &str, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_sluiceadm"))
        .args(["--etcd", etcd])
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn until(limit: Duration, what: &str, f: impl Fn() -> bool) {
    let deadline = Instant::now() + limit;
    while !f() {
        assert!(Instant::now() < deadline, "{what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn vm1() -> Value {
    json!({
        "name": "vm1",
        "guest_mac": "a8:40:25:00:00:05",
        "gateway_mac": "a8:40:25:ff:ff:01",
        "vni": 7777,
        "ipv4": { "addr": "10.0.0.5", "subnet": "10.0.0.0/24", "gateway": "10.0.0.1" }
    })
}

#[test]
fn sluiced_in_fleet_mode_applies_sluiceadm_etcd_refuses_local_changes_and_restarts_from_its_cache()
{
    let Some(mut cluster) = Cluster::start(1, "sluiced") else {
        return;
    };
    let etcd = cluster.endpoints()[0].clone();
    let dir = tmpdir("fleet-sluiced");
    let port = free_port();
    let (d, c) = start(&dir, port, &etcd);
    until(Duration::from_secs(10), "d1 never joined", || {
        let (ok, out, _) = adm(&etcd, &["--json", "fleet-status"]);
        ok && serde_json::from_str::<Value>(&out).is_ok_and(|v| v["hosts"][0]["alive"] == true)
    });

    let cfg = dir.join("vm1.json");
    std::fs::write(&cfg, vm1().to_string()).unwrap();
    let cfg_s = cfg.to_str().unwrap();
    // A host that never joined, and a value the API refuses: nothing written.
    let (ok, _, err) = adm(
        &etcd,
        &[
            "--fleet-host",
            "ghost",
            "create-vnic",
            "--config",
            cfg_s,
            "--no-guest",
        ],
    );
    assert!(!ok && err.contains("no host 'ghost'"), "{err}");
    let mut bad = vm1();
    bad["mtu"] = 100.into();
    let bad_cfg = dir.join("bad.json");
    std::fs::write(&bad_cfg, bad.to_string()).unwrap();
    let (ok, _, err) = adm(
        &etcd,
        &[
            "--fleet-host",
            "d1",
            "create-vnic",
            "--config",
            bad_cfg.to_str().unwrap(),
            "--no-guest",
        ],
    );
    assert!(!ok && err.contains("400") && err.contains("mtu"), "{err}");
    // Port verbs need a host.
    let (ok, _, err) = adm(&etcd, &["delete-vnic", "vm1"]);
    assert!(!ok && err.contains("--fleet-host"), "{err}");

    let (ok, out, err) = adm(
        &etcd,
        &[
            "--fleet-host",
            "d1",
            "create-vnic",
            "--config",
            cfg_s,
            "--no-guest",
        ],
    );
    assert!(ok, "{err}");
    assert!(
        out.contains("created port 'vm1'") && out.contains("etcd: 1 key(s) written"),
        "{out}"
    );
    let (ok, _, err) = adm(
        &etcd,
        &[
            "set-v2p",
            "7777",
            "10.0.0.6",
            "a8:40:25:00:00:06",
            "fd00:99::b",
        ],
    );
    assert!(ok, "{err}");
    let (ok, _, err) = adm(
        &etcd,
        &[
            "--fleet-host",
            "d1",
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
        ],
    );
    assert!(ok, "{err}");
    until(
        Duration::from_secs(10),
        "sluiced did not apply the desired state",
        || {
            c.get("/ports/vm1/firewall")
                .body
                .as_array()
                .is_some_and(|r| r.len() == 1)
                && c.get("/v2p?vni=7777")
                    .body
                    .as_array()
                    .is_some_and(|m| m.len() == 1)
        },
    );

    // Local changes are refused, naming the fleet; reads still work.
    let r = c.post(
        "/ports",
        json!({ "config": vm1(), "guest": { "kind": "none" } }),
    );
    assert_eq!(r.status, 409, "{:?}", r.body);
    assert!(
        r.message().contains("fleet") && r.message().contains("d1"),
        "{}",
        r.message()
    );
    let r = c.put("/v2p", json!({ "mappings": [] }));
    assert_eq!(r.status, 409);
    assert_eq!(c.get("/ports").status, 200);
    // So is a migration in or out: a port moved behind the fleet's back
    // would be a port its store does not know (or still places here).
    // Exporting the document is a read.
    assert_eq!(c.get("/ports/vm1/migration").status, 200);
    let r = c.put(
        "/ports/vm2/migration",
        json!({ "document": { "version": 1 } }),
    );
    assert_eq!(r.status, 409, "{:?}", r.body);
    assert!(r.message().contains("fleet"), "{}", r.message());
    let r = c.post(
        "/ports/vm1/migration/cutover",
        json!({ "target_underlay": "fd00:99::b" }),
    );
    assert_eq!(r.status, 409, "{:?}", r.body);
    assert_eq!(c.get("/ports/vm1").status, 200);

    until(
        Duration::from_secs(10),
        "fleet-status never showed d1 caught up",
        || {
            let (_, out, _) = adm(&etcd, &["--json", "fleet-status"]);
            serde_json::from_str::<Value>(&out).is_ok_and(|v| {
                let h = &v["hosts"][0];
                h["host"] == "d1" && h["lag"] == 0 && h["status"]["ports"][0]["name"] == "vm1"
            })
        },
    );
    let m = ureq::get(&format!("http://127.0.0.1:{port}/metrics"))
        .call()
        .unwrap();
    let m = m.into_string().unwrap();
    assert!(m.contains("sluice_fleet_connected 1"), "{m}");
    assert!(m.contains("sluice_fleet_relists_total 1"), "{m}");
    assert!(m.contains("sluice_fleet_refused_keys 0"), "{m}");
    let (ok, table, _) = adm(&etcd, &["fleet-status"]);
    assert!(
        ok && table.contains("HOST") && table.contains("d1"),
        "{table}"
    );

    // Without etcd, a restarted host forwards from its cache.
    cluster.kill(0);
    drop(d);
    let (_d, c) = start(&dir, port, &etcd);
    assert_eq!(
        c.get("/ports/vm1/firewall").body.as_array().map(Vec::len),
        Some(1)
    );
    assert_eq!(
        c.get("/v2p?vni=7777").body.as_array().map(Vec::len),
        Some(1)
    );
    let _ = std::fs::remove_dir_all(&dir);
}
