//! State survives a restart; a state file from another version is
//! refused with a clear message.

use crate::client::Client;
use crate::endpoints::vm;
use api::serve::SimHost;
use serde_json::json;

fn tmpdir(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("sluice-api-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

#[test]
fn a_restarted_host_has_its_ports_rules_and_tables_back() {
    let dir = tmpdir("restart");
    let before = {
        let h = SimHost::start(Some(&dir), 1).unwrap();
        let c = Client::new(h.url(), &h.token);
        c.ok("POST", "/ports", Some(vm("vm1", 5)));
        c.ok("POST", "/ports", Some(vm("vm2", 6)));
        c.ok(
            "POST",
            "/ports/vm1/firewall",
            Some(
                json!({ "direction": "in", "priority": 5, "action": "allow", "protocol": "icmp" }),
            ),
        );
        c.ok("PUT", "/v2p", Some(json!({ "mappings": [{ "vni": 7777, "ip": "10.0.0.9", "guest_mac": "a8:40:25:00:00:09", "host": "fd00:99::b" }] })));
        c.ok("PUT", "/v2b", Some(json!({ "routes": [{ "vni": 7777, "prefix": "0.0.0.0/0", "endpoints": ["fd00:99::100"] }] })));
        c.ok("DELETE", "/ports/vm2", None);
        c.ok("GET", "/state", None)
    };
    let h = SimHost::start(Some(&dir), 2).unwrap();
    let c = Client::new(h.url(), &h.token);
    assert_eq!(c.ok("GET", "/state", None), before);
    let fw = c.ok("GET", "/ports/vm1/layers/firewall", None);
    assert!(
        fw["rules_in"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r.to_string().contains("ip.proto=1")),
        "the live port has the restored rule: {fw}"
    );
    assert_eq!(c.ok("GET", "/ports", None).as_array().unwrap().len(), 1);
    drop(h);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_state_file_of_another_version_is_refused_not_misread() {
    let dir = tmpdir("version");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("state.json"), br#"{"version": 99, "ports": []}"#).unwrap();
    let e = SimHost::start(Some(&dir), 1).err().expect("refused");
    assert!(
        e.contains("version 99") && e.contains("reads version 1"),
        "{e}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
