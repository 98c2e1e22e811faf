//! Live migration of a port between two simulated hosts: the export and
//! import round trip keeps the flows (TCP state, SNAT translation) so the
//! target's first packet is a UFT hit with the same external address and
//! port; imports that conflict with a target port or carry another
//! document version are refused; a cut-over forwards to the target and
//! an abort resumes the source.

use crate::client::Client;
use crate::endpoints::{setup, vm};
use api::serve::SimHost;
use dataplane::headers::{self, L3, L4};
use dataplane::ParseMode;
use serde_json::{json, Value};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

const INTERNET: [u8; 4] = [93, 184, 216, 34];

fn v2b(c: &Client) {
    c.ok(
        "PUT",
        "/v2b",
        Some(json!({ "routes": [{ "vni": 7777, "prefix": "0.0.0.0/0", "endpoints": ["fd00:99::100"] }] })),
    );
}

/// A TCP segment from vm1 (10.0.0.5:40000) to the internet.
fn from_guest(flags: &str, seq: u32) -> Vec<u8> {
    let b = sluice_test_support::build::Tcp::new(
        (
            [0xa8, 0x40, 0x25, 0, 0, 5],
            [0xa8, 0x40, 0x25, 0xff, 0xff, 1],
        ),
        (Ipv4Addr::new(10, 0, 0, 5), 40000).into(),
        (Ipv4Addr::from(INTERNET), 443).into(),
    )
    .seq(seq);
    if flags.contains('A') {
        b.flags_acking(flags, 100).build()
    } else {
        b.flags(flags).build()
    }
}

/// The next tunnel the host sends on its uplink (bounded wait).
fn next_tunnel(h: &SimHost) -> Vec<u8> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(f) = h.uplink.take().pop() {
            return f;
        }
        assert!(Instant::now() < deadline, "nothing on the uplink");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The inner source (address, port) of a tunnel.
fn inner_source(f: &[u8]) -> (IpAddr, u16) {
    let p = headers::parse(f, ParseMode::Geneve).expect("a Geneve tunnel");
    let L3::Ipv4(ip) = p.hdrs.inner.l3 else {
        panic!("not IPv4 inside: {:?}", p.hdrs)
    };
    let L4::Tcp(t) = p.hdrs.inner.l4 else {
        panic!("not TCP inside: {:?}", p.hdrs)
    };
    (ip.src, t.src)
}

fn out_stats(c: &Client) -> Value {
    c.ok("GET", "/ports/vm1/stats", None)["stats"]["out"].clone()
}

/// vm1 on host A with one SNAT'd TCP flow to the internet; returns the
/// external (address, port) the flow got.
fn source_with_a_flow() -> (SimHost, Client, (IpAddr, u16)) {
    let (h, c) = setup();
    c.ok("POST", "/ports", Some(vm("vm1", 5)));
    v2b(&c);
    h.devices.wire("vm1").unwrap().send(&from_guest("S", 1));
    let ext = inner_source(&next_tunnel(&h));
    assert_eq!(ext.0, IpAddr::V4(Ipv4Addr::new(203, 0, 113, 10)), "SNAT'd");
    (h, c, ext)
}

#[test]
fn an_exported_port_is_imported_with_its_flows_and_nat_translation() {
    let (_a, ca, ext) = source_with_a_flow();
    _a.devices.wire("vm1").unwrap().send(&from_guest("A", 2));
    next_tunnel(&_a);
    let src_tcp = ca.ok("GET", "/ports/vm1/tcp-flows", None);

    let doc = ca.ok("GET", "/ports/vm1/migration", None);
    assert_eq!(doc["version"], 1);
    assert_eq!(doc["cut_over"], false);
    assert_eq!(doc["port"]["config"]["name"], "vm1");
    let flows = doc["state"]["flows"].as_array().unwrap();
    assert_eq!(flows.len(), 1, "{doc}");
    let p = &flows[0]["packets"];
    assert_eq!(p[0].as_u64().unwrap() + p[1].as_u64().unwrap(), 2, "{doc}");
    let nat = flows[0]["state"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["layer"] == "nat")
        .unwrap_or_else(|| panic!("no NAT state in {doc}"));
    assert_eq!(nat["rewrite"]["out"]["l4_src"], ext.1);
    // Exporting changes nothing on the source.
    assert_eq!(
        ca.ok("GET", "/ports/vm1/migration/status", None)["target_underlay"],
        Value::Null
    );

    let (b, cb) = setup();
    v2b(&cb);
    let r = cb.ok(
        "PUT",
        "/ports/vm1/migration",
        Some(json!({ "document": doc })),
    );
    assert_eq!(r["flows_imported"], 1, "{r}");
    assert_eq!(r["flows_refused"], 0, "{r}");
    let tcp = cb.ok("GET", "/ports/vm1/tcp-flows", None);
    assert_eq!(tcp.as_array().unwrap().len(), 1, "{tcp}");
    assert_eq!(tcp[0]["state"], src_tcp[0]["state"], "{tcp} {src_tcp}");
    assert_eq!(tcp[0]["key"], src_tcp[0]["key"]);
    assert_eq!(tcp[0]["packets_out"], 2);
    let uft = cb.ok("GET", "/ports/vm1/uft", None);
    assert_eq!(uft["outbound"].as_array().unwrap().len(), 1, "{uft}");
    assert_eq!(uft["inbound"].as_array().unwrap().len(), 1, "{uft}");
    // The counters came along.
    let before = out_stats(&cb);
    assert_eq!(before["packets"], 2, "{before}");

    // The guest's next segment on the target: a UFT hit, same translation.
    b.devices.wire("vm1").unwrap().send(&from_guest("A", 3));
    let f = next_tunnel(&b);
    assert_eq!(inner_source(&f), ext, "the same external address and port");
    let after = out_stats(&cb);
    assert_eq!(
        after["uft_hits"].as_u64(),
        before["uft_hits"].as_u64().map(|n| n + 1)
    );
    assert_eq!(after["uft_misses"], before["uft_misses"], "no layer walk");
    // The target's pool holds the port: a new flow gets another one.
    let nat = cb.ok("GET", "/ports/vm1/layers/nat", None);
    assert!(nat.to_string().contains(&format!(":{}", ext.1)), "{nat}");
}

#[test]
fn an_import_conflicting_with_a_target_port_is_refused_naming_it() {
    let (_a, ca, _) = source_with_a_flow();
    let doc = ca.ok("GET", "/ports/vm1/migration", None);
    let (_b, cb) = setup();
    // Another port on the target with vm1's address and MAC.
    let mut other = vm("other", 5);
    other["config"]["external"] = json!({});
    cb.ok("POST", "/ports", Some(other));
    let r = cb.put("/ports/vm1/migration", json!({ "document": doc }));
    assert_eq!(r.status, 409, "{}", r.body);
    assert!(r.message().contains("other"), "{}", r.message());
    assert_eq!(cb.get("/ports/vm1").status, 404, "nothing was created");

    // The same name.
    let (_c, cc) = setup();
    cc.ok("POST", "/ports", Some(vm("vm1", 7)));
    let r = cc.put("/ports/vm1/migration", json!({ "document": doc }));
    assert_eq!(r.status, 409, "{}", r.body);
    assert!(r.message().contains("vm1"), "{}", r.message());
}

#[test]
fn an_import_of_another_document_version_is_refused() {
    let (_a, ca, _) = source_with_a_flow();
    let mut doc = ca.ok("GET", "/ports/vm1/migration", None);
    doc["version"] = json!(2);
    let (_b, cb) = setup();
    let r = cb.put("/ports/vm1/migration", json!({ "document": doc }));
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.message().contains("document.version"), "{}", r.message());
    assert!(r.message().contains('2'), "{}", r.message());
    assert_eq!(cb.get("/ports/vm1").status, 404);
    let r = cb.put(
        "/ports/vm2/migration",
        json!({ "document": { "version": 1 } }),
    );
    assert_eq!(r.status, 400, "{}", r.body);
}

#[test]
fn a_cut_over_forwards_to_the_target_and_an_abort_resumes_the_source() {
    let (a, ca, _) = source_with_a_flow();
    let target: Ipv6Addr = "fd00:99::b".parse().unwrap();
    let doc = ca.ok(
        "POST",
        "/ports/vm1/migration/cutover",
        Some(json!({ "target_underlay": target, "grace_secs": 60 })),
    );
    assert_eq!(doc["cut_over"], true);
    assert_eq!(doc["state"]["flows"].as_array().unwrap().len(), 1);
    // A second cut-over is refused.
    let r = ca.post(
        "/ports/vm1/migration/cutover",
        json!({ "target_underlay": target }),
    );
    assert_eq!(r.status, 409, "{}", r.body);

    // A tunnel for the guest arrives at the source: sent on to the target.
    let inner = sluice_test_support::build::Tcp::new(
        (
            [0xa8, 0x40, 0x25, 0xff, 0xff, 1],
            [0xa8, 0x40, 0x25, 0, 0, 5],
        ),
        (Ipv4Addr::from(INTERNET), 443).into(),
        (Ipv4Addr::new(203, 0, 113, 10), 2048).into(),
    )
    .seq(9)
    .flags_acking("SA", 2)
    .build();
    let from: Ipv6Addr = "fd00:99::100".parse().unwrap();
    let t = sluice_test_support::Geneve::new(from, api::serve::SIM_UNDERLAY, 7777)
        .macs([2, 0, 0, 0, 0, 0x20], a.sluice.host().underlay_mac)
        .wrap(&inner);
    let in_before = ca.ok("GET", "/ports/vm1/stats", None)["stats"]["in"]["packets"].clone();
    a.uplink.send(&t);
    let f = next_tunnel(&a);
    assert_eq!(
        &f[38..54],
        &target.octets(),
        "outer destination: the target"
    );
    assert_eq!(&f[22..38], &from.octets(), "outer source kept");
    sluice_test_support::assert_checksums(&f);
    let st = ca.ok("GET", "/ports/vm1/migration/status", None);
    assert_eq!(st["forwarded"], 1, "{st}");
    assert_eq!(st["target_underlay"], "fd00:99::b");
    let m = ca.get("/metrics").body.as_str().unwrap().to_string();
    assert!(
        m.contains("sluice_port_migration_forwarded_total{port=\"vm1\"} 1"),
        "{m}"
    );
    assert_eq!(
        ca.ok("GET", "/ports/vm1/stats", None)["stats"]["in"]["packets"],
        in_before,
        "the source port processed nothing"
    );
    // The guest's frames are not forwarded by the source any more.
    let out_before = out_stats(&ca)["packets"].clone();
    if let Some(w) = a.devices.wire("vm1") {
        w.send(&from_guest("A", 5));
    }
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(out_stats(&ca)["packets"], out_before);

    // Abort: forwarding stops, the guest device comes back, the port works.
    let st = ca.ok("DELETE", "/ports/vm1/migration", None);
    assert_eq!(st["forwarded"], 1, "{st}");
    assert_eq!(
        ca.ok("GET", "/ports/vm1/migration/status", None)["target_underlay"],
        Value::Null
    );
    a.sluice.retry_failed_guests();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(w) = a.devices.wire("vm1") {
            w.send(&from_guest("A", 6));
        }
        std::thread::sleep(Duration::from_millis(20));
        if out_stats(&ca)["packets"] != out_before {
            break;
        }
        assert!(Instant::now() < deadline, "the source never resumed");
    }
    assert_eq!(
        ca.delete("/ports/vm1/migration").status,
        409,
        "nothing left to abort"
    );
}
