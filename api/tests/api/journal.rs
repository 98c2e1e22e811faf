//! Persistence proportional to the change (issue 17 item 12): a change
//! appends one record to `journal.jsonl` instead of rewriting the whole
//! state; a restart replays the journal over the snapshot (a torn last
//! record ignored); a journal past its limit is compacted into a new
//! snapshot, and a restart after that finds everything.

use crate::client::Client;
use crate::endpoints::vm;
use api::serve::SimHost;
use serde_json::json;
use std::path::{Path, PathBuf};

fn tmpdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("sluice-journal-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn mappings(batch: u32, n: u32) -> serde_json::Value {
    let m: Vec<_> = (0..n)
        .map(|i| json!({ "vni": 7777, "ip": format!("10.{}.{}.{}", 100 + batch, i / 250, i % 250), "guest_mac": "a8:40:25:00:10:01", "host": format!("fd00:99::b:{batch:x}") }))
        .collect();
    json!({ "mappings": m })
}

fn size(p: &Path) -> u64 {
    std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}

fn rule(priority: u32) -> serde_json::Value {
    json!({ "direction": "in", "priority": priority, "action": "allow", "protocol": "tcp", "ports": { "list": [22] } })
}

#[test]
fn an_unrelated_change_appends_a_record_and_leaves_the_snapshot_alone() {
    let dir = tmpdir("append");
    let h = SimHost::start(Some(&dir), 1).unwrap();
    let c = Client::new(h.url(), &h.token);
    c.ok("POST", "/ports", Some(vm("vm1", 5)));
    c.ok("PUT", "/v2p", Some(mappings(0, 20_000)));
    // Compacted now: the snapshot holds the 20 000 mappings.
    h.sluice.store().unwrap().save(&h.sluice.state()).unwrap();
    let snapshot = std::fs::read(dir.join("state.json")).unwrap();
    assert!(snapshot.len() > 1_000_000, "{}", snapshot.len());
    let journal = dir.join("journal.jsonl");
    assert_eq!(size(&journal), 0);
    c.ok("POST", "/ports/vm1/firewall", Some(rule(10)));
    assert_eq!(
        std::fs::read(dir.join("state.json")).unwrap(),
        snapshot,
        "the snapshot is not rewritten"
    );
    let written = size(&journal);
    assert!(
        (1..8192).contains(&written),
        "one record of the port, not the 20 000 mappings: {written} bytes"
    );
    let text = std::fs::read_to_string(&journal).unwrap();
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(text.contains("\"op\":\"port\""), "{text}");
    drop(h);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_restart_replays_the_journal_and_ignores_a_torn_last_record() {
    let dir = tmpdir("replay");
    let before = {
        let h = SimHost::start(Some(&dir), 1).unwrap();
        let c = Client::new(h.url(), &h.token);
        c.ok("POST", "/ports", Some(vm("vm1", 5)));
        c.ok("POST", "/ports", Some(vm("vm2", 6)));
        c.ok("PUT", "/v2p", Some(mappings(0, 300)));
        c.ok("PUT", "/v2p", Some(mappings(1, 300)));
        c.ok("DELETE", "/v2p?vni=7777&ip=10.100.0.7", None);
        c.ok("PUT", "/v2b", Some(json!({ "routes": [{ "vni": 7777, "prefix": "0.0.0.0/0", "endpoints": ["fd00:99::100"] }] })));
        c.ok("POST", "/ports/vm1/firewall", Some(rule(10)));
        c.ok("DELETE", "/ports/vm2", None);
        c.ok("GET", "/state", None)
    };
    assert!(!dir.join("state.json").exists(), "all in the journal");
    // A crash in the middle of the next record's append.
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(dir.join("journal.jsonl"))
        .unwrap();
    std::io::Write::write_all(&mut f, br#"{"op":"delete_port","name":"vm"#).unwrap();
    drop(f);
    let h = SimHost::start(Some(&dir), 2).unwrap();
    let c = Client::new(h.url(), &h.token);
    let after = c.ok("GET", "/state", None);
    assert_eq!(after["ports"], before["ports"]);
    assert_eq!(after["v2b"], before["v2b"]);
    let sorted = |v: &serde_json::Value| {
        let mut a: Vec<String> = v
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e.to_string())
            .collect();
        a.sort();
        a
    };
    assert_eq!(sorted(&after["v2p"]), sorted(&before["v2p"]));
    assert_eq!(after["v2p"].as_array().unwrap().len(), 599);
    // The torn bytes are gone: the next change is a whole record after
    // the last whole one, and a restart reads it.
    c.ok("POST", "/ports/vm1/firewall", Some(rule(11)));
    drop(h);
    let h = SimHost::start(Some(&dir), 1).unwrap();
    let c = Client::new(h.url(), &h.token);
    let fw = c.ok("GET", "/ports/vm1/firewall", None);
    assert_eq!(fw.as_array().unwrap().len(), 2, "{fw}");
    drop(h);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_journal_past_its_limit_is_compacted_and_a_restart_finds_everything() {
    let dir = tmpdir("compact");
    let before = {
        let h = SimHost::start(Some(&dir), 1).unwrap();
        let store = h.sluice.store().unwrap();
        store.set_compact_at(64 << 10);
        let c = Client::new(h.url(), &h.token);
        c.ok("POST", "/ports", Some(vm("vm1", 5)));
        let mut compactions = 0;
        let mut last = 0;
        for b in 0..12 {
            c.ok("PUT", "/v2p", Some(mappings(b, 200)));
            let now = store.journal_len();
            if now < last {
                compactions += 1;
            }
            last = now;
        }
        assert!(compactions >= 2, "compacted {compactions} times");
        assert!(store.journal_len() < 64 << 10);
        // The snapshot alone holds what the journal held before.
        let snap: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("state.json")).unwrap()).unwrap();
        assert!(snap["v2p"].as_array().unwrap().len() >= 1000);
        c.ok("POST", "/ports/vm1/firewall", Some(rule(10)));
        c.ok("GET", "/state", None)
    };
    let h = SimHost::start(Some(&dir), 1).unwrap();
    let c = Client::new(h.url(), &h.token);
    let after = c.ok("GET", "/state", None);
    assert_eq!(after["ports"], before["ports"]);
    assert_eq!(after["v2p"].as_array().unwrap().len(), 2400);
    assert_eq!(
        after["v2p"].as_array().unwrap().len(),
        before["v2p"].as_array().unwrap().len()
    );
    drop(h);
    std::fs::remove_dir_all(&dir).unwrap();
}
