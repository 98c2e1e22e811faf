//! Multicast control plane (issue 19): M2P (`/m2p`), subscriptions
//! (`/ports/{name}/mcast-subs`, `/mcast-subs`), forwarding (`/mcast-fwd`):
//! every call, its refusals (400 naming the field, 404, 409), the table
//! sizes in `/stats` and `/metrics`, and a restart keeping them.

use crate::client::Client;
use crate::endpoints::{setup, vm};
use api::serve::SimHost;
use serde_json::{json, Value};

fn m2p(vni: u32, group: &str, underlay: &str) -> Value {
    json!({ "mappings": [{ "vni": vni, "group": group, "underlay": underlay }] })
}

fn fwd(group: &str, hop: &str, replication: &str) -> Value {
    json!({ "vni": 7777, "group": group, "next_hop": hop, "replication": replication })
}

#[test]
fn m2p_is_set_dumped_and_cleared() {
    let (_h, c) = setup();
    let r = c.ok("PUT", "/m2p", Some(m2p(7777, "239.1.2.3", "ff04::1:2:3")));
    assert_eq!(r["changed"], 1);
    let r = c.ok("PUT", "/m2p", Some(m2p(7777, "239.1.2.3", "ff04::1:2:3")));
    assert_eq!(r["changed"], 0, "the same mapping again changes nothing");
    c.ok("PUT", "/m2p", Some(m2p(7777, "ff05::db8:1", "ff04::db8:1")));
    c.ok("PUT", "/m2p", Some(m2p(8888, "239.1.2.3", "ff04::8888")));
    assert_eq!(c.ok("GET", "/m2p", None).as_array().unwrap().len(), 3);
    assert_eq!(
        c.ok("GET", "/m2p?vni=8888", None),
        json!([{ "vni": 8888, "group": "239.1.2.3", "underlay": "ff04::8888" }])
    );
    let r = c.ok("DELETE", "/m2p?vni=7777&group=239.1.2.3", None);
    assert_eq!(r["changed"], 1);
    let r = c.ok("DELETE", "/m2p?vni=7777", None);
    assert_eq!(r["changed"], 1);
    assert_eq!(
        c.ok("GET", "/m2p", None).as_array().unwrap().len(),
        1,
        "the other VPC's mapping stays"
    );
}

#[test]
fn bad_groups_are_400_naming_the_field() {
    let (_h, c) = setup();
    c.ok("POST", "/ports", Some(vm("vm1", 5)));
    let cases = [
        (
            m2p(7777, "224.0.0.251", "ff04::1"),
            "mappings[0].group",
            "link-local",
        ),
        (
            m2p(7777, "ff02::fb", "ff04::1"),
            "mappings[0].group",
            "link-local",
        ),
        (
            m2p(7777, "10.0.0.1", "ff04::1"),
            "mappings[0].group",
            "not a multicast",
        ),
        (
            m2p(7777, "239.1.1.1", "ff05::1"),
            "mappings[0].underlay",
            "admin-local",
        ),
        (
            m2p(7777, "239.1.1.1", "fd00::1"),
            "mappings[0].underlay",
            "ff04::/16",
        ),
    ];
    for (body, field, says) in cases {
        let r = c.put("/m2p", body.clone());
        assert_eq!(r.status, 400, "{body}: {}", r.body);
        let m = r.message();
        assert!(m.starts_with(field) && m.contains(says), "{body}: {m}");
    }
    let sub = |body: Value| c.put("/ports/vm1/mcast-subs", body);
    let r = sub(json!({ "group": "224.0.0.1" }));
    assert_eq!(r.status, 400);
    assert!(r.message().starts_with("group:"), "{}", r.message());
    let r = sub(json!({ "group": "239.1.1.1", "sources": ["10.0.0.9", "fd00::9"] }));
    assert_eq!(r.status, 400);
    assert!(
        r.message().starts_with("sources[1]:") && r.message().contains("IPv6"),
        "{}",
        r.message()
    );
    let r = sub(json!({ "group": "239.1.1.1", "sources": ["10.0.0.9", "10.0.0.9"] }));
    assert!(r.message().contains("twice"), "{}", r.message());
    let many: Vec<String> = (1..=17).map(|i| format!("10.0.1.{i}")).collect();
    let r = sub(json!({ "group": "239.1.1.1", "sources": many }));
    assert_eq!(r.status, 400);
    assert!(r.message().starts_with("sources:"), "{}", r.message());
    let r = c.put("/ports/nope/mcast-subs", json!({ "group": "239.1.1.1" }));
    assert_eq!(r.status, 404, "{}", r.body);
    let r = c.put("/mcast-fwd", fwd("239.1.1.1", "ff04::1", "external"));
    assert_eq!(r.status, 400);
    assert!(r.message().starts_with("next_hop:"), "{}", r.message());
    let r = c.put("/mcast-fwd", fwd("239.1.1.1", "fd00:99::b", "underlay"));
    assert_eq!(
        r.status, 409,
        "underlay replication without M2P: {}",
        r.body
    );
    assert!(r.message().contains("set-m2p"), "{}", r.message());
    // Nothing of it stuck.
    assert_eq!(c.ok("GET", "/m2p", None), json!([]));
    assert_eq!(c.ok("GET", "/mcast-subs", None), json!([]));
    assert_eq!(c.ok("GET", "/mcast-fwd", None), json!([]));
}

#[test]
fn subscriptions_follow_their_port() {
    let (_h, c) = setup();
    c.ok("POST", "/ports", Some(vm("vm1", 5)));
    c.ok("POST", "/ports", Some(vm("vm2", 6)));
    let subs = c.ok(
        "PUT",
        "/ports/vm1/mcast-subs",
        Some(json!({ "group": "239.1.1.1", "sources": ["10.0.0.6"] })),
    );
    assert_eq!(
        subs,
        json!([{ "port": "vm1", "group": "239.1.1.1", "sources": ["10.0.0.6"] }])
    );
    // Again: the filter is replaced.
    c.ok(
        "PUT",
        "/ports/vm1/mcast-subs",
        Some(json!({ "group": "239.1.1.1" })),
    );
    c.ok(
        "PUT",
        "/ports/vm1/mcast-subs",
        Some(json!({ "group": "ff05::1" })),
    );
    c.ok(
        "PUT",
        "/ports/vm2/mcast-subs",
        Some(json!({ "group": "239.1.1.1" })),
    );
    let all = c.ok("GET", "/mcast-subs", None);
    assert_eq!(all.as_array().unwrap().len(), 3, "{all}");
    assert_eq!(all[0]["sources"], json!([]));
    assert_eq!(c.get("/mcast-subs?port=nope").status, 404);
    let r = c.ok("DELETE", "/ports/vm1/mcast-subs?group=ff05::1", None);
    assert_eq!(r["changed"], 1);
    let r = c.ok("DELETE", "/ports/vm1/mcast-subs", None);
    assert_eq!(r["changed"], 1, "unsubscribe-all took the last one");
    assert_eq!(c.ok("GET", "/mcast-subs?port=vm1", None), json!([]));
    assert_eq!(c.delete("/ports/nope/mcast-subs").status, 404);
    // A deleted port's subscriptions go with it.
    assert_eq!(c.delete("/ports/vm2").status, 204);
    assert_eq!(c.ok("GET", "/mcast-subs", None), json!([]));
}

#[test]
fn forwarding_entries_are_set_filtered_and_cleared() {
    let (_h, c) = setup();
    c.ok("PUT", "/m2p", Some(m2p(7777, "239.1.1.1", "ff04::1")));
    assert_eq!(
        c.ok(
            "PUT",
            "/mcast-fwd",
            Some(fwd("239.1.1.1", "fd00:99::b", "external"))
        )["changed"],
        1
    );
    c.ok(
        "PUT",
        "/mcast-fwd",
        Some(fwd("239.1.1.1", "fd00:99::c", "underlay")),
    );
    c.ok(
        "PUT",
        "/mcast-fwd",
        Some(fwd("239.1.1.1", "fd00:99::c", "both")),
    );
    c.ok(
        "PUT",
        "/mcast-fwd",
        Some(fwd("239.2.2.2", "fd00:99::b", "external")),
    );
    let all = c.ok("GET", "/mcast-fwd?vni=7777&group=239.1.1.1", None);
    assert_eq!(
        all,
        json!([
            { "vni": 7777, "group": "239.1.1.1", "next_hop": "fd00:99::b", "replication": "external" },
            { "vni": 7777, "group": "239.1.1.1", "next_hop": "fd00:99::c", "replication": "both" },
        ])
    );
    let r = c.ok(
        "DELETE",
        "/mcast-fwd?vni=7777&group=239.1.1.1&next_hop=fd00:99::b",
        None,
    );
    assert_eq!(r["changed"], 1);
    let r = c.ok("DELETE", "/mcast-fwd?vni=7777&group=239.1.1.1", None);
    assert_eq!(r["changed"], 1);
    let r = c.delete("/mcast-fwd?vni=7777");
    assert_eq!(r.status, 400, "a group is required: {}", r.body);
    assert_eq!(c.ok("GET", "/mcast-fwd", None).as_array().unwrap().len(), 1);
}

#[test]
fn table_sizes_are_in_stats_and_metrics() {
    let (_h, c) = setup();
    c.ok("POST", "/ports", Some(vm("vm1", 5)));
    c.ok("PUT", "/m2p", Some(m2p(7777, "239.1.1.1", "ff04::1")));
    c.ok(
        "PUT",
        "/ports/vm1/mcast-subs",
        Some(json!({ "group": "239.1.1.1" })),
    );
    c.ok(
        "PUT",
        "/mcast-fwd",
        Some(fwd("239.1.1.1", "fd00:99::b", "underlay")),
    );
    let s = c.ok("GET", "/stats", None);
    assert_eq!(s["m2p"]["entries"], 1);
    assert_eq!(s["mcast_subs"]["entries"], 1);
    assert_eq!(s["mcast_fwd"]["entries"], 1);
    let m = c.get("/metrics").body.as_str().unwrap().to_string();
    for line in [
        "sluice_table_entries{table=\"m2p\"} 1",
        "sluice_table_entries{table=\"mcast_subs\"} 1",
        "sluice_table_entries{table=\"mcast_fwd\"} 1",
        "sluice_table_limit{table=\"m2p\"} 4096",
    ] {
        assert!(m.contains(line), "{line} in\n{m}");
    }
}

#[test]
fn multicast_state_survives_a_restart() {
    let dir = std::env::temp_dir().join(format!("sluice-api-mcast-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let before = {
        let h = SimHost::start(Some(&dir), 1).unwrap();
        let c = Client::new(h.url(), &h.token);
        c.ok("POST", "/ports", Some(vm("vm1", 5)));
        c.ok("POST", "/ports", Some(vm("vm2", 6)));
        c.ok("PUT", "/m2p", Some(m2p(7777, "239.1.1.1", "ff04::1")));
        c.ok(
            "PUT",
            "/ports/vm1/mcast-subs",
            Some(json!({ "group": "239.1.1.1", "sources": ["10.0.0.6"] })),
        );
        c.ok(
            "PUT",
            "/ports/vm2/mcast-subs",
            Some(json!({ "group": "239.1.1.1" })),
        );
        c.ok(
            "PUT",
            "/mcast-fwd",
            Some(fwd("239.1.1.1", "fd00:99::b", "both")),
        );
        // Deleted after subscribing: its subscription is not restored.
        assert_eq!(c.delete("/ports/vm2").status, 204);
        c.ok("GET", "/state", None)
    };
    assert_eq!(before["mcast"]["subs"].as_array().unwrap().len(), 1);
    let h = SimHost::start(Some(&dir), 2).unwrap();
    let c = Client::new(h.url(), &h.token);
    assert_eq!(c.ok("GET", "/state", None), before);
    assert_eq!(c.ok("GET", "/mcast-fwd", None)[0]["replication"], "both");
    drop(h);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Every change compacts the journal here (a limit of one byte): the
/// snapshot written then holds the multicast change itself.
#[test]
fn a_compaction_during_a_multicast_change_keeps_it() {
    let dir = std::env::temp_dir().join(format!("sluice-api-mcast-compact-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let before = {
        let h = SimHost::start(Some(&dir), 1).unwrap();
        h.sluice.store().unwrap().set_compact_at(1);
        let c = Client::new(h.url(), &h.token);
        c.ok("POST", "/ports", Some(vm("vm1", 5)));
        c.ok("PUT", "/m2p", Some(m2p(7777, "239.1.1.1", "ff04::1")));
        c.ok(
            "PUT",
            "/ports/vm1/mcast-subs",
            Some(json!({ "group": "239.1.1.1" })),
        );
        c.ok(
            "PUT",
            "/mcast-fwd",
            Some(fwd("239.1.1.1", "fd00:99::b", "underlay")),
        );
        let snap: Value =
            serde_json::from_slice(&std::fs::read(dir.join("state.json")).unwrap()).unwrap();
        assert_eq!(snap["mcast"]["fwd"].as_array().unwrap().len(), 1, "{snap}");
        c.ok("GET", "/state", None)
    };
    let h = SimHost::start(Some(&dir), 1).unwrap();
    let c = Client::new(h.url(), &h.token);
    assert_eq!(c.ok("GET", "/state", None), before);
    drop(h);
    std::fs::remove_dir_all(&dir).unwrap();
}
