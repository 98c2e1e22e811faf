//! Partial failures leave nothing half-done (issues 16 and 17.8): a
//! mutating call that fails at any step after it changed something
//! undoes it; a change that cannot be saved is undone and answered 503
//! `NotSaved`, and the same call retried succeeds.

use crate::client::Client;
use crate::endpoints::vm;
use api::serve::SimHost;
use api::server::Step;
use serde_json::json;

fn tmpdir(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("sluice-rollback-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// The host has no trace of vm1: no record, no attached port, no device.
fn no_vm1(h: &SimHost, c: &Client) {
    assert_eq!(c.ok("GET", "/ports", None), json!([]));
    assert!(h.sluice.workers().port_names().is_empty());
    assert!(
        h.devices.wire("vm1").is_none(),
        "vm1's guest device is left"
    );
    assert_eq!(c.ok("GET", "/state", None)["ports"], json!([]));
}

#[test]
fn create_vnic_failing_at_any_step_leaves_nothing_and_can_be_retried() {
    let dir = tmpdir("create");
    let h = SimHost::start(Some(&dir), 1).unwrap();
    let c = Client::new(h.url(), &h.token);
    for step in [Step::OpenGuest, Step::Attach, Step::Save] {
        h.sluice.fail_next(step);
        let r = c.post("/ports", vm("vm1", 5));
        let want = if step == Step::Save { 503 } else { 500 };
        assert_eq!(r.status, want, "{step:?}: {}", r.body);
        no_vm1(&h, &c);
    }
    c.ok("POST", "/ports", Some(vm("vm1", 5)));
    assert!(h.devices.wire("vm1").is_some());
    drop(h);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_change_that_cannot_be_saved_is_undone_answered_503_and_retried() {
    let dir = tmpdir("save");
    let h = SimHost::start(Some(&dir), 1).unwrap();
    let c = Client::new(h.url(), &h.token);
    c.ok("POST", "/ports", Some(vm("vm1", 5)));
    c.ok("PUT", "/v2p", Some(json!({ "mappings": [{ "vni": 7777, "ip": "10.0.0.9", "guest_mac": "a8:40:25:00:00:09", "host": "fd00:99::b" }] })));
    c.ok("PUT", "/v2b", Some(json!({ "routes": [{ "vni": 7777, "prefix": "0.0.0.0/0", "endpoints": ["fd00:99::100"] }] })));
    // Restarted, the host has read its journal and not yet reopened it
    // for appending.
    drop(h);
    let h = SimHost::start(Some(&dir), 1).unwrap();
    let c = Client::new(h.url(), &h.token);
    let before = c.ok("GET", "/state", None);
    let fw_before = c.ok("GET", "/ports/vm1/layers/firewall", None);
    // A real failure to save: the journal's name is a directory (the
    // records it held are put back when the failure is fixed).
    let journal = dir.join("journal.jsonl");
    let kept = dir.join("journal.kept");
    std::fs::rename(&journal, &kept).unwrap();
    std::fs::create_dir_all(&journal).unwrap();
    let rule = json!({ "direction": "in", "priority": 5, "action": "allow", "protocol": "icmp" });
    let changes = [
        ("POST", "/ports/vm1/firewall", Some(rule.clone())),
        (
            "PUT",
            "/ports/vm1/firewall",
            Some(json!({ "rules": [rule.clone()] })),
        ),
        (
            "PUT",
            "/v2p",
            Some(json!({ "mappings": [
            { "vni": 7777, "ip": "10.0.0.9", "guest_mac": "a8:40:25:00:00:0a", "host": "fd00:99::c" },
            { "vni": 7777, "ip": "10.0.0.10", "guest_mac": "a8:40:25:00:00:0b", "host": "fd00:99::c" }] })),
        ),
        ("DELETE", "/v2p?vni=7777", None),
        (
            "PUT",
            "/v2b",
            Some(
                json!({ "routes": [{ "vni": 7777, "prefix": "0.0.0.0/0", "endpoints": ["fd00:99::200"] }] }),
            ),
        ),
        ("DELETE", "/v2b?vni=7777&prefix=0.0.0.0/0", None),
        ("POST", "/ports", Some(vm("vm2", 6))),
        ("DELETE", "/ports/vm1", None),
    ];
    for (m, p, b) in &changes {
        let r = c.call(m, p, b.as_ref());
        assert_eq!(r.status, 503, "{m} {p}: {}", r.body);
        assert_eq!(r.body["error_code"], "NotSaved", "{m} {p}: {}", r.body);
        assert!(
            r.message()
                .starts_with("the change was undone: saving it failed: writing "),
            "{m} {p}: {}",
            r.body
        );
        // The live host is what was saved.
        assert_eq!(c.ok("GET", "/state", None), before, "{m} {p}");
        assert_eq!(
            c.ok("GET", "/ports/vm1/layers/firewall", None)["rules_in"],
            fw_before["rules_in"],
            "{m} {p}"
        );
    }
    assert!(h.devices.wire("vm2").is_none());
    // Fixed, the same calls succeed, and the result is what a restart has.
    std::fs::remove_dir(&journal).unwrap();
    std::fs::rename(&kept, &journal).unwrap();
    for (m, p, b) in &changes[..2] {
        c.ok(m, p, b.clone());
    }
    let after = c.ok("GET", "/state", None);
    let fw = after["ports"][0]["config"]["firewall"].as_array().unwrap();
    assert_eq!(fw.len(), 1, "{after}");
    assert_eq!(fw[0]["protocol"], "icmp", "{after}");
    drop(h);
    let h = SimHost::start(Some(&dir), 1).unwrap();
    let c = Client::new(h.url(), &h.token);
    assert_eq!(c.ok("GET", "/state", None), after);
    drop(h);
    std::fs::remove_dir_all(&dir).unwrap();
}
