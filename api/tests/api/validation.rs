//! One validation everywhere (issue 16): each desired state the API
//! refuses is refused by `sluiceadm replay --state` and by a restart of
//! `sluiced` from a saved state, with the same message (the document's
//! paths only say where in it).

use crate::client::Client;
use crate::endpoints::vm;
use api::replay::{self, ReplayOptions};
use api::serve::SimHost;
use api::server::HostLimits;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

fn tmpdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("sluice-validate-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A state document with these ports (`vm()` bodies), V2P and V2B.
fn doc(ports: &[Value], v2p: Value, v2b: Value) -> Value {
    json!({
        "version": 1,
        "underlay_ip": "fd00:99::a",
        "ports": ports,
        "v2p": v2p,
        "v2b": v2b,
    })
}

fn mapping(host: &str, mac: &str) -> Value {
    json!({ "vni": 7777, "ip": "10.0.0.9", "guest_mac": mac, "host": host })
}

fn with_guest_none(mut p: Value) -> Value {
    p["guest"] = json!({ "kind": "none" });
    p
}

/// What replay says of `doc` (it must refuse it).
fn replay_refusal(dir: &Path, tag: &str, doc: &Value, underlay_mtu: Option<u16>) -> String {
    let state = dir.join(format!("{tag}.json"));
    std::fs::write(&state, doc.to_string()).unwrap();
    let mut o = ReplayOptions::new(state, vec![], dir.join(format!("{tag}-out")));
    o.underlay_mtu = underlay_mtu;
    match replay::run(&o) {
        Ok(_) => panic!("replay took {tag}: {doc}"),
        Err(e) => e.to_string(),
    }
}

/// What a host restarting from `doc` says (it must refuse to start).
fn restore_refusal(dir: &Path, tag: &str, doc: &Value, limits: HostLimits) -> String {
    let sd = dir.join(format!("{tag}-state"));
    std::fs::create_dir_all(&sd).unwrap();
    std::fs::write(sd.join("state.json"), doc.to_string()).unwrap();
    match SimHost::start_with(Some(&sd), 1, limits) {
        Ok(_) => panic!("a host restored {tag}: {doc}"),
        Err(e) => e,
    }
}

struct Case {
    tag: &'static str,
    /// The API calls, the last of which is refused.
    calls: Vec<(&'static str, &'static str, Value)>,
    /// The same desired state as a document.
    doc: Value,
    underlay_mtu: Option<u16>,
    /// The refusal's status.
    status: u16,
}

fn cases() -> Vec<Case> {
    let vm1 = vm("vm1", 5);
    let mut vm1_again = vm("vm1", 6);
    vm1_again["guest"] = json!({ "kind": "tap", "name": "tap-other" });
    let mut same_ip = vm("vm2", 6);
    same_ip["config"]["ipv4"]["addr"] = json!("10.0.0.5");
    let mut float1 = vm("vm1", 5);
    float1["config"]["external"]["floating"] = json!(["203.0.113.50"]);
    let mut float2 = vm("vm2", 6);
    float2["config"]["external"]["floating"] = json!(["203.0.113.50"]);
    let mut snat2 = vm("vm2", 6);
    snat2["config"]["external"]["snat"] =
        json!([{ "ip": "203.0.113.10", "first_port": 4000, "last_port": 5000 }]);
    let mut bcast = vm("vm1", 5);
    bcast["config"]["ipv4"]["addr"] = json!("10.0.0.255");
    let mut dup_eph = vm("vm1", 5);
    dup_eph["config"]["external"]["ephemeral"] = json!(["203.0.113.7", "203.0.113.7"]);
    let v2b_bad = |ep: &str| json!([{ "vni": 7777, "prefix": "0.0.0.0/0", "endpoints": [ep] }]);
    vec![
        Case {
            tag: "same-name",
            calls: vec![
                ("POST", "/ports", vm1.clone()),
                ("POST", "/ports", vm1_again.clone()),
            ],
            doc: doc(&[vm1.clone(), vm1_again], json!([]), json!([])),
            underlay_mtu: None,
            status: 409,
        },
        Case {
            tag: "same-vni-ip",
            calls: vec![
                ("POST", "/ports", vm1.clone()),
                ("POST", "/ports", same_ip.clone()),
            ],
            doc: doc(&[vm1.clone(), same_ip], json!([]), json!([])),
            underlay_mtu: None,
            status: 409,
        },
        Case {
            tag: "v2p-host-unspecified",
            calls: vec![(
                "PUT",
                "/v2p",
                json!({ "mappings": [mapping("::", "a8:40:25:00:00:09")] }),
            )],
            doc: doc(&[], json!([mapping("::", "a8:40:25:00:00:09")]), json!([])),
            underlay_mtu: None,
            status: 400,
        },
        Case {
            tag: "v2p-multicast-mac",
            calls: vec![(
                "PUT",
                "/v2p",
                json!({ "mappings": [mapping("fd00:99::b", "01:00:5e:00:00:01")] }),
            )],
            doc: doc(
                &[],
                json!([mapping("fd00:99::b", "01:00:5e:00:00:01")]),
                json!([]),
            ),
            underlay_mtu: None,
            status: 400,
        },
        Case {
            tag: "v2p-multicast-ip",
            calls: vec![(
                "PUT",
                "/v2p",
                json!({ "mappings": [{ "vni": 7777, "ip": "224.0.0.1", "guest_mac": "a8:40:25:00:00:09", "host": "fd00:99::b" }] }),
            )],
            doc: doc(
                &[],
                json!([{ "vni": 7777, "ip": "224.0.0.1", "guest_mac": "a8:40:25:00:00:09", "host": "fd00:99::b" }]),
                json!([]),
            ),
            underlay_mtu: None,
            status: 400,
        },
        Case {
            tag: "v2b-unspecified-endpoint",
            calls: vec![("PUT", "/v2b", json!({ "routes": v2b_bad("::") }))],
            doc: doc(&[], json!([]), v2b_bad("::")),
            underlay_mtu: None,
            status: 400,
        },
        Case {
            tag: "v2b-multicast-endpoint",
            calls: vec![("PUT", "/v2b", json!({ "routes": v2b_bad("ff02::1") }))],
            doc: doc(&[], json!([]), v2b_bad("ff02::1")),
            underlay_mtu: None,
            status: 400,
        },
        Case {
            tag: "mtu-over-underlay",
            // 1500 + the tunnel's 74 bytes do not fit a 1500-byte underlay.
            calls: vec![("POST", "/ports", vm1.clone())],
            doc: doc(std::slice::from_ref(&vm1), json!([]), json!([])),
            underlay_mtu: Some(1500),
            status: 400,
        },
        Case {
            tag: "same-floating-ip",
            calls: vec![
                ("POST", "/ports", float1.clone()),
                ("POST", "/ports", float2.clone()),
            ],
            doc: doc(&[float1, float2], json!([]), json!([])),
            underlay_mtu: None,
            status: 409,
        },
        Case {
            tag: "overlapping-snat",
            calls: vec![
                ("POST", "/ports", vm1.clone()),
                ("POST", "/ports", snat2.clone()),
            ],
            doc: doc(&[vm1.clone(), snat2], json!([]), json!([])),
            underlay_mtu: None,
            status: 409,
        },
        Case {
            tag: "broadcast-guest",
            calls: vec![("POST", "/ports", bcast.clone())],
            doc: doc(&[bcast], json!([]), json!([])),
            underlay_mtu: None,
            status: 400,
        },
        Case {
            tag: "duplicate-ephemeral",
            calls: vec![("POST", "/ports", dup_eph.clone())],
            doc: doc(&[dup_eph], json!([]), json!([])),
            underlay_mtu: None,
            status: 400,
        },
    ]
}

/// The message without the field path (`config.mtu: ...` → `...`): a
/// document names the field by its place in the document.
fn problem(msg: &str) -> &str {
    match msg.split_once(": ") {
        Some((field, rest)) if !field.contains(' ') => rest,
        _ => msg,
    }
}

#[test]
fn replay_and_restore_refuse_what_the_api_refuses_with_the_same_message() {
    let dir = tmpdir("cases");
    for case in cases() {
        let limits = HostLimits {
            underlay_mtu: case.underlay_mtu,
            ..HostLimits::default()
        };
        let h = SimHost::start_with(None, 1, limits).unwrap();
        let c = Client::new(h.url(), &h.token);
        let (last, first) = case.calls.split_last().unwrap();
        for (m, p, b) in first {
            c.ok(m, p, Some(b.clone()));
        }
        let r = c.call(last.0, last.1, Some(&last.2));
        assert_eq!(r.status, case.status, "{}: {}", case.tag, r.body);
        let api = r.message();
        let want = problem(&api);
        assert!(!want.is_empty(), "{}: {}", case.tag, r.body);
        drop(h);

        let by_replay = replay_refusal(&dir, case.tag, &case.doc, case.underlay_mtu);
        assert!(
            by_replay.contains("is not a valid desired state") && by_replay.ends_with(want),
            "{}: the API said '{api}', replay '{by_replay}'",
            case.tag
        );
        // A restore checks a document with guests as the host would open
        // them; these are simulated.
        let mut restored = case.doc.clone();
        if let Some(ps) = restored["ports"].as_array_mut() {
            for p in ps.iter_mut() {
                *p = with_guest_none(p.clone());
            }
        }
        let by_restore = restore_refusal(&dir, case.tag, &restored, limits);
        assert!(
            by_restore.contains(want),
            "{}: the API said '{api}', a restore '{by_restore}'",
            case.tag
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn replay_validates_before_it_touches_any_file_and_stays_in_its_out_dir() {
    let dir = tmpdir("escape");
    let out = dir.join("out");
    std::fs::create_dir_all(&out).unwrap();
    // What a crafted document would have removed: ../victim.out.pcap.
    let victim = dir.join("victim.out.pcap");
    std::fs::write(&victim, b"keep me").unwrap();
    let abs = format!("{}/victim", dir.display());
    for name in ["../victim", abs.as_str()] {
        let mut p = vm("x", 5);
        p["config"]["name"] = json!(name);
        let state = dir.join("escape.json");
        std::fs::write(&state, doc(&[p], json!([]), json!([])).to_string()).unwrap();
        let e = replay::run(&ReplayOptions::new(state, vec![], out.clone()))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("is not a valid desired state: ports[0].config.name"),
            "{name}: {e}"
        );
        assert_eq!(std::fs::read(&victim).unwrap(), b"keep me", "{name}");
    }
    // A bad capture is refused before a previous output is removed.
    // (The uplink comes first: its output was removed before vm1's input
    // was opened.)
    let kept = out.join("uplink.out.pcap");
    std::fs::write(&kept, b"an earlier run's").unwrap();
    let state = dir.join("ok.json");
    std::fs::write(
        &state,
        doc(&[vm("vm1", 5)], json!([]), json!([])).to_string(),
    )
    .unwrap();
    let bad = dir.join("bad.pcap");
    std::fs::write(&bad, b"not a capture").unwrap();
    let o = ReplayOptions::new(state, vec![("vm1".into(), bad)], out.clone());
    assert!(replay::run(&o).is_err());
    assert_eq!(std::fs::read(&kept).unwrap(), b"an earlier run's");
    // A bad document is refused before the out-dir is made.
    let fresh = dir.join("not-made");
    let mut p = vm("vm1", 5);
    p["config"]["ipv4"]["addr"] = json!("10.0.0.255");
    let state = dir.join("bcast.json");
    std::fs::write(&state, doc(&[p], json!([]), json!([])).to_string()).unwrap();
    assert!(replay::run(&ReplayOptions::new(state, vec![], fresh.clone())).is_err());
    assert!(!fresh.exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_state_document_needs_only_version_and_guests_default_to_none() {
    let dir = tmpdir("minimal");
    let state = dir.join("min.json");
    std::fs::write(&state, r#"{"version": 1, "underlay_ip": "fd00:99::a"}"#).unwrap();
    let r = replay::run(&ReplayOptions::new(state, vec![], dir.join("out"))).unwrap();
    assert_eq!(r.frames, 0);
    let mut p = vm("vm1", 5);
    p.as_object_mut().unwrap().remove("guest");
    let state = dir.join("noguest.json");
    std::fs::write(
        &state,
        json!({ "version": 1, "underlay_ip": "fd00:99::a", "ports": [p] }).to_string(),
    )
    .unwrap();
    let r = replay::run(&ReplayOptions::new(state, vec![], dir.join("out"))).unwrap();
    assert_eq!(r.ports.len(), 1);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_underlay_mtu_is_checked_at_create_and_saved() {
    let limits = HostLimits {
        underlay_mtu: Some(1500),
        ..HostLimits::default()
    };
    let h = SimHost::start_with(None, 1, limits).unwrap();
    let c = Client::new(h.url(), &h.token);
    let mut p = vm("vm1", 5);
    p["config"]["mtu"] = json!(9000);
    let r = c.post("/ports", p.clone());
    assert_eq!(r.status, 400);
    assert_eq!(
        r.message(),
        "config.mtu: 9000 does not fit the underlay MTU 1500 with the tunnel (at most 1426)"
    );
    p["config"]["mtu"] = json!(1426);
    c.ok("POST", "/ports", Some(p));
    assert_eq!(c.ok("GET", "/state", None)["underlay_mtu"], 1500);
}

#[test]
fn a_reconfiguration_is_checked_against_the_other_ports_too() {
    let (_h, c) = crate::endpoints::setup();
    let mut p1 = vm("vm1", 5);
    p1["config"]["external"]["floating"] = json!(["203.0.113.50"]);
    c.ok("POST", "/ports", Some(p1));
    c.ok("POST", "/ports", Some(vm("vm2", 6)));
    let r = c.put(
        "/ports/vm2/external-ips",
        json!({ "external": { "floating": ["203.0.113.50"] } }),
    );
    assert_eq!(r.status, 409, "{}", r.body);
    assert_eq!(
        r.message(),
        "port 'vm1' has external address 203.0.113.50 already"
    );
    let r = c.put(
        "/ports/vm2/external-ips",
        json!({ "external": { "ephemeral": ["203.0.113.60", "203.0.113.60"] } }),
    );
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(
        r.message(),
        "external.ephemeral[1]: 203.0.113.60 is external.ephemeral[0] already"
    );
    let many: Vec<Value> = (0..=api::validate::MAX_FW_RULES)
        .map(|i| json!({ "direction": "in", "priority": 10, "action": "allow", "protocol": "tcp", "ports": { "list": [i % 65535 + 1] } }))
        .collect();
    let r = c.put("/ports/vm2/firewall", json!({ "rules": many }));
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(
        r.message(),
        "firewall: 16385 entries is more than the limit of 16384"
    );
    // `{}` does not silently remove a rate limit: removing one is `null`.
    let r = c.put("/ports/vm2/rate-limit", json!({}));
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.message().contains("rate_limit"), "{}", r.body);
    c.ok(
        "PUT",
        "/ports/vm2/rate-limit",
        Some(json!({ "rate_limit": null })),
    );
}

#[test]
fn captures_at_once_are_limited() {
    let (h, c) = crate::endpoints::setup();
    c.ok("POST", "/ports", Some(vm("vm1", 5)));
    let long = || api::types::CaptureRequest {
        packets: Some(100_000),
        seconds: Some(3),
    };
    let running: Vec<_> = (0..api::server::MAX_CAPTURES)
        .map(|_| {
            let s = std::sync::Arc::clone(&h.sluice);
            std::thread::spawn(move || s.capture("vm1", long()).map(|r| r.packets))
        })
        .collect();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    while h.sluice.captures_running() < api::server::MAX_CAPTURES {
        assert!(
            std::time::Instant::now() < deadline,
            "the captures did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let refused = h
        .sluice
        .capture(
            "vm1",
            api::types::CaptureRequest {
                packets: Some(1),
                seconds: Some(1),
            },
        )
        .unwrap_err()
        .to_string();
    assert_eq!(
        refused,
        "8 captures are running, the limit: retry when one ends"
    );
    for t in running {
        t.join().unwrap().unwrap();
    }
    // The slots are given back.
    let r = c.post("/ports/vm1/capture", json!({ "packets": 1, "seconds": 1 }));
    assert_eq!(r.status, 200, "{}", r.body);
}
