//! Transit prefixes and attached subnets on a live port (issue 19):
//! `POST`/`DELETE /ports/{name}/transit-ips` and
//! `/ports/{name}/attached-subnets`, their refusals (400 naming the field,
//! 404), their effect on traffic and `/metrics`, and a restart keeping them.

use crate::client::Client;
use crate::endpoints::{setup, vm};
use api::serve::SimHost;
use serde_json::{json, Value};
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

fn prefixes(cfg: &Value) -> (Value, Value, Value) {
    (
        cfg["attached_subnets"].clone(),
        cfg.get("external_subnets").cloned().unwrap_or(json!([])),
        cfg.get("transit_ips").cloned().unwrap_or(json!([])),
    )
}

#[test]
fn transit_prefixes_are_allowed_merged_and_removed_by_direction() {
    let (_h, c) = setup();
    c.ok("POST", "/ports", Some(vm("vm1", 5)));
    let t = |cidr: &str, dir: &str| json!({ "cidr": cidr, "dir": dir });
    c.ok(
        "POST",
        "/ports/vm1/transit-ips",
        Some(t("172.16.0.0/24", "in")),
    );
    let cfg = c.ok(
        "POST",
        "/ports/vm1/transit-ips",
        Some(t("172.16.0.0/24", "out")),
    );
    assert_eq!(
        prefixes(&cfg).2,
        json!([{ "cidr": "172.16.0.0/24", "dir": "both" }]),
        "in then out is both"
    );
    let cfg = c.ok(
        "DELETE",
        "/ports/vm1/transit-ips?cidr=172.16.0.0/24&dir=in",
        None,
    );
    assert_eq!(
        prefixes(&cfg).2,
        json!([{ "cidr": "172.16.0.0/24", "dir": "out" }])
    );
    let r = c.delete("/ports/vm1/transit-ips?cidr=172.16.0.0/24&dir=in");
    assert_eq!(r.status, 404, "nothing left to remove inbound: {}", r.body);
    let cfg = c.ok(
        "DELETE",
        "/ports/vm1/transit-ips?cidr=172.16.0.0/24&dir=both",
        None,
    );
    assert_eq!(prefixes(&cfg).2, json!([]));
    assert_eq!(
        c.delete("/ports/vm1/transit-ips?cidr=172.16.0.0/24&dir=out")
            .status,
        404
    );
    assert_eq!(
        c.post("/ports/nope/transit-ips", t("172.16.0.0/24", "in"))
            .status,
        404
    );
    // The port's record is what the last call answered.
    assert_eq!(
        prefixes(&c.ok("GET", "/ports/vm1", None)["config"]).2,
        json!([])
    );
}

#[test]
fn attached_subnets_are_attached_moved_and_detached() {
    let (_h, c) = setup();
    c.ok("POST", "/ports", Some(vm("vm1", 5)));
    let a = |cidr: &str, external: bool| json!({ "cidr": cidr, "external": external });
    c.ok(
        "POST",
        "/ports/vm1/attached-subnets",
        Some(a("192.168.50.0/24", false)),
    );
    let cfg = c.ok(
        "POST",
        "/ports/vm1/attached-subnets",
        Some(a("198.18.0.0/24", true)),
    );
    assert_eq!(
        prefixes(&cfg),
        (
            json!(["192.168.50.0/24"]),
            json!(["198.18.0.0/24"]),
            json!([])
        )
    );
    // Attached again as external: moved, not doubled.
    let cfg = c.ok(
        "POST",
        "/ports/vm1/attached-subnets",
        Some(a("192.168.50.0/24", true)),
    );
    assert_eq!(
        prefixes(&cfg),
        (
            json!([]),
            json!(["198.18.0.0/24", "192.168.50.0/24"]),
            json!([])
        )
    );
    let cfg = c.ok(
        "DELETE",
        "/ports/vm1/attached-subnets?cidr=198.18.0.0/24",
        None,
    );
    assert_eq!(prefixes(&cfg).1, json!(["192.168.50.0/24"]));
    assert_eq!(
        c.delete("/ports/vm1/attached-subnets?cidr=198.18.0.0/24")
            .status,
        404
    );
    assert_eq!(
        c.delete("/ports/nope/attached-subnets?cidr=198.18.0.0/24")
            .status,
        404
    );
}

#[test]
fn bad_prefixes_are_400_naming_the_field_and_change_nothing() {
    let (_h, c) = setup();
    c.ok("POST", "/ports", Some(vm("vm1", 5)));
    c.ok(
        "POST",
        "/ports/vm1/attached-subnets",
        Some(json!({ "cidr": "192.168.0.0/16" })),
    );
    let before = c.ok("GET", "/ports/vm1", None);
    for (path, body, field) in [
        (
            "/ports/vm1/transit-ips",
            json!({ "cidr": "172.16.0.0/33", "dir": "in" }),
            "cidr",
        ),
        (
            "/ports/vm1/transit-ips",
            json!({ "cidr": "172.16.0.0/24", "dir": "sideways" }),
            "dir",
        ),
        (
            "/ports/vm1/transit-ips",
            json!({ "cidr": "192.168.4.0/24", "dir": "in" }),
            "transit_ips[0].cidr",
        ),
        (
            "/ports/vm1/transit-ips",
            json!({ "cidr": "2001:db8::/64", "dir": "out" }),
            "transit_ips[0].cidr",
        ),
        (
            "/ports/vm1/transit-ips",
            json!({ "cidr": "0.0.0.0/0", "dir": "out" }),
            "transit_ips[0].cidr",
        ),
        (
            "/ports/vm1/attached-subnets",
            json!({ "cidr": "192.168.7.0/24", "external": true }),
            "external_subnets[0]",
        ),
        (
            "/ports/vm1/attached-subnets",
            json!({ "cidr": "not-a-prefix" }),
            "cidr",
        ),
    ] {
        let r = c.post(path, body.clone());
        assert_eq!(r.status, 400, "{body}: {}", r.body);
        assert!(r.message().contains(field), "{body}: {}", r.message());
    }
    let r = c.delete("/ports/vm1/transit-ips?cidr=10.0.0.0/99&dir=in");
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(c.ok("GET", "/ports/vm1", None), before, "nothing changed");
}

#[test]
fn the_transit_prefix_limit_is_enforced() {
    let (_h, c) = setup();
    c.ok("POST", "/ports", Some(vm("vm1", 5)));
    let max = api::validate::MAX_TRANSIT_IPS;
    for i in 0..max {
        let cidr = format!("172.{}.{}.0/24", 16 + i / 256, i % 256);
        c.ok(
            "POST",
            "/ports/vm1/transit-ips",
            Some(json!({ "cidr": cidr, "dir": "both" })),
        );
    }
    let r = c.post(
        "/ports/vm1/transit-ips",
        json!({ "cidr": "172.31.0.0/24", "dir": "both" }),
    );
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.message().contains("transit_ips"), "{}", r.message());
    assert!(r.message().contains(&max.to_string()), "{}", r.message());
}

/// A SYN from vm1's wire (MAC ...:05) with any source address.
fn syn(src: [u8; 4], dst: [u8; 4], dport: u16) -> Vec<u8> {
    sluice_test_support::build::Tcp::new(
        (
            [0xa8, 0x40, 0x25, 0, 0, 5],
            [0xa8, 0x40, 0x25, 0xff, 0xff, 1],
        ),
        (Ipv4Addr::from(src), 40000).into(),
        (Ipv4Addr::from(dst), dport).into(),
    )
    .seq(1)
    .flags("S")
    .build()
}

/// The port's count of drops for `reason`, waited for (bounded).
fn wait_drops(c: &Client, reason: &str, want: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = c.ok("GET", "/ports/vm1/stats", None);
        let n = (s["drops"].as_array().unwrap().iter())
            .find(|d| d["reason"] == reason)
            .map_or(0, |d| d["count"].as_u64().unwrap());
        if n >= want || Instant::now() > deadline {
            return n;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// An external attached subnet's packet to a VPC address is dropped
/// with its own reason, counted in the port's stats and `/metrics`; a
/// transit source the guest was not allowed is a spoof until allowed.
#[test]
fn drops_of_prefix_traffic_are_named_in_stats_and_metrics() {
    let (h, c) = setup();
    c.ok("POST", "/ports", Some(vm("vm1", 5)));
    let wire = h.devices.wire("vm1").unwrap();
    wire.send(&syn([172, 16, 0, 5], [10, 0, 0, 6], 22));
    assert_eq!(wait_drops(&c, "spoofed_source_ip", 1), 1);

    c.ok(
        "POST",
        "/ports/vm1/attached-subnets",
        Some(json!({ "cidr": "198.18.0.0/24", "external": true })),
    );
    wire.send(&syn([198, 18, 0, 4], [10, 0, 0, 6], 22));
    assert_eq!(wait_drops(&c, "external_subnet_to_vpc", 1), 1);
    let m = c.get("/metrics").body.as_str().unwrap().to_string();
    assert!(
        m.contains("sluice_drops_total{port=\"vm1\",reason=\"external_subnet_to_vpc\"} 1"),
        "{m}"
    );
    // Allowed out, the transit source is no spoof any more.
    c.ok(
        "POST",
        "/ports/vm1/transit-ips",
        Some(json!({ "cidr": "172.16.0.0/24", "dir": "out" })),
    );
    wire.send(&syn([172, 16, 0, 5], [10, 0, 0, 6], 23));
    wire.send(&syn([198, 18, 0, 4], [10, 0, 0, 6], 23));
    assert_eq!(wait_drops(&c, "external_subnet_to_vpc", 2), 2);
    assert_eq!(wait_drops(&c, "spoofed_source_ip", 1), 1, "not a spoof now");
}

#[test]
fn prefixes_survive_a_restart() {
    let dir = std::env::temp_dir().join(format!("sluice-api-transit-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let before = {
        let h = SimHost::start(Some(&dir), 1).unwrap();
        let c = Client::new(h.url(), &h.token);
        c.ok("POST", "/ports", Some(vm("vm1", 5)));
        c.ok(
            "POST",
            "/ports/vm1/transit-ips",
            Some(json!({ "cidr": "172.16.0.0/24", "dir": "in" })),
        );
        c.ok(
            "POST",
            "/ports/vm1/attached-subnets",
            Some(json!({ "cidr": "198.18.0.0/24", "external": true })),
        );
        c.ok("GET", "/state", None)
    };
    let h = SimHost::start(Some(&dir), 2).unwrap();
    let c = Client::new(h.url(), &h.token);
    assert_eq!(c.ok("GET", "/state", None), before);
    let cfg = c.ok("GET", "/ports/vm1", None)["config"].clone();
    assert_eq!(
        prefixes(&cfg),
        (
            json!([]),
            json!(["198.18.0.0/24"]),
            json!([{ "cidr": "172.16.0.0/24", "dir": "in" }])
        )
    );
    // The live port has them too: the gateway's inbound rule names the prefix.
    let gw = c.ok("GET", "/ports/vm1/layers/gateway", None);
    assert!(gw["rules_in"].to_string().contains("172.16.0.0/24"), "{gw}");
    drop(h);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Through the daemon's path (the worker's reconfiguration job): a flow
/// established before `attach-subnet` and `allow-cidr` keeps passing
/// after them, as the same flow.
#[test]
fn a_live_change_keeps_the_ports_other_flows() {
    let (h, c) = setup();
    c.ok("POST", "/ports", Some(vm("vm1", 5)));
    c.ok("PUT", "/v2p", Some(json!({ "mappings": [{ "vni": 7777, "ip": "10.0.0.6", "guest_mac": "a8:40:25:00:00:06", "host": "fd00:99::b" }] })));
    let wire = h.devices.wire("vm1").unwrap();
    let sent = |n: u64| {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let s = c.ok("GET", "/ports/vm1/stats", None);
            if s["stats"]["out"]["packets"].as_u64() == Some(n) {
                return s;
            }
            assert!(Instant::now() < deadline, "never counted: {s}");
            std::thread::sleep(Duration::from_millis(5));
        }
    };
    wire.send(&syn([10, 0, 0, 5], [10, 0, 0, 6], 22));
    sent(1);
    c.ok(
        "POST",
        "/ports/vm1/attached-subnets",
        Some(json!({ "cidr": "192.168.50.0/24" })),
    );
    c.ok(
        "POST",
        "/ports/vm1/transit-ips",
        Some(json!({ "cidr": "172.16.0.0/24", "dir": "both" })),
    );
    wire.send(&syn([10, 0, 0, 5], [10, 0, 0, 6], 22));
    let s = sent(2);
    assert_eq!(s["drops"], json!([]), "{s}");
    let st = &s["stats"];
    assert_eq!(st["out"]["forwarded"], 2, "{s}");
    assert_eq!(st["flows_created"], 1, "the same flow, not a new one: {s}");
    // Its UFT entry was made under the old epoch: re-checked against the
    // new rules and kept (a miss that revalidates, not a new flow).
    assert_eq!(st["revalidations"], 1, "{s}");
    assert_eq!(s["flows"], 1, "{s}");
}
