//! Every endpoint, with the refusals each can give (400 naming the
//! field, 401, 404, 409): against the simulated host, and the tests that
//! need no simulated device also against the real daemon (`sluiced` with
//! TAP guests; as root, see [`crate::daemon::real_host`]).

use crate::client::Client;
use api::serve::SimHost;
use serde_json::{json, Value};

pub fn vm(name: &str, last: u8) -> Value {
    json!({
        "config": {
            "name": name,
            "guest_mac": format!("a8:40:25:00:00:{last:02x}"),
            "gateway_mac": "a8:40:25:ff:ff:01",
            "vni": 7777,
            "ipv4": { "addr": format!("10.0.0.{last}"), "subnet": "10.0.0.0/24", "gateway": "10.0.0.1" },
            "external": { "snat": [snat_range(last)] },
            "routes": [{ "dest": "0.0.0.0/0", "target": "internet_gateway", "class": "system" }],
            "limits": { "flows": 4096 }
        },
        "guest": { "kind": "tap", "name": format!("tap-{name}") }
    })
}

pub fn setup() -> (SimHost, Client) {
    let h = SimHost::start(None, 2).expect("simulated host");
    let c = Client::new(h.url(), &h.token);
    (h, c)
}

fn ports_are_created_listed_read_and_deleted(c: &Client) {
    let s = c.ok("POST", "/ports", Some(vm("vm1", 5)));
    assert_eq!(s["name"], "vm1");
    assert_eq!(s["ipv4"], "10.0.0.5");
    assert_eq!(s["flow_limit"], 4096);
    c.ok("POST", "/ports", Some(vm("vm2", 6)));
    let list = c.ok("GET", "/ports", None);
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["vm1", "vm2"]);
    let workers: Vec<u64> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["worker"].as_u64().unwrap())
        .collect();
    assert_ne!(workers[0], workers[1], "two ports spread over two workers");
    let d = c.ok("GET", "/ports/vm1", None);
    assert_eq!(d["config"]["vni"], 7777);
    assert_eq!(c.delete("/ports/vm1").status, 204);
    assert_eq!(c.get("/ports/vm1").status, 404);
    assert_eq!(c.delete("/ports/vm1").status, 404);
    assert_eq!(c.ok("GET", "/ports", None).as_array().unwrap().len(), 1);
}

fn bad_fields_are_named(c: &Client) {
    let mut bad = vm("vm1", 5);
    bad["config"]["ipv4"]["addr"] = json!("10.9.9.9");
    let r = c.post("/ports", bad);
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.message().contains("ipv4"), "{}", r.message());

    let mut bad = vm("vm1", 5);
    bad["config"]["guest_mac"] = json!("not-a-mac");
    let r = c.post("/ports", bad);
    assert_eq!(r.status, 400);
    assert!(r.message().contains("not-a-mac"), "{}", r.message());

    let mut bad = vm("vm1", 5);
    bad["config"]["colour"] = json!("blue");
    let r = c.post("/ports", bad);
    assert_eq!(r.status, 400);
    assert!(r.message().contains("colour"), "{}", r.message());

    let mut bad = vm("vm1", 5);
    bad["guest"] = json!({ "kind": "tap", "name": "a-name-far-too-long-for-linux" });
    let r = c.post("/ports", bad);
    assert_eq!(r.status, 400);
    assert!(r.message().starts_with("guest.name"), "{}", r.message());

    let mut bad = vm("vm1", 5);
    bad["guest"] = json!({ "kind": "tap", "name": "tap0", "netns": "run/netns/g1" });
    let r = c.post("/ports", bad);
    assert_eq!(r.status, 400);
    assert!(r.message().starts_with("guest.netns"), "{}", r.message());

    let mut bad = vm("vm1", 5);
    bad["config"]["vni"] = json!(1 << 24);
    let r = c.post("/ports", bad);
    assert_eq!(r.status, 400);
    assert!(r.message().contains("16777216"), "{}", r.message());

    let r = c.call("POST", "/ports", Some(&json!("just a string")));
    assert_eq!(r.status, 400);
    assert!(
        c.ok("GET", "/ports", None).as_array().unwrap().is_empty(),
        "nothing was created"
    );
}

fn conflicts_are_409(c: &Client) {
    c.ok("POST", "/ports", Some(vm("vm1", 5)));
    let r = c.post("/ports", vm("vm1", 6));
    assert_eq!(r.status, 409);
    assert!(r.message().contains("named 'vm1'"), "{}", r.message());
    let mut same_mac = vm("vm2", 6);
    same_mac["config"]["guest_mac"] = json!("a8:40:25:00:00:05");
    let r = c.post("/ports", same_mac);
    assert_eq!(r.status, 409);
    assert!(r.message().contains("MAC"), "{}", r.message());
    let mut same_ip = vm("vm2", 6);
    same_ip["config"]["ipv4"]["addr"] = json!("10.0.0.5");
    assert_eq!(c.post("/ports", same_ip).status, 409);
    let mut same_tap = vm("vm2", 6);
    same_tap["guest"]["name"] = json!("tap-vm1");
    assert_eq!(c.post("/ports", same_tap).status, 409);
}

fn mutations_need_the_token_and_change_nothing_without_it(c: &Client) {
    let anon = c.anonymous();
    let r = anon.post("/ports", vm("vm1", 5));
    assert_eq!(r.status, 401);
    assert!(r.message().contains("Bearer"), "{}", r.message());
    let wrong = Client::new(c.base.clone(), "0000");
    assert_eq!(wrong.post("/ports", vm("vm1", 5)).status, 401);
    assert_eq!(wrong.put("/v2p", json!({ "mappings": [] })).status, 401);
    // Reads from loopback are open.
    assert_eq!(anon.get("/ports").status, 200);
    assert!(anon
        .ok("GET", "/ports", None)
        .as_array()
        .unwrap()
        .is_empty());
    c.ok("POST", "/ports", Some(vm("vm1", 5)));
    assert_eq!(anon.delete("/ports/vm1").status, 401);
    assert_eq!(anon.delete("/ports/vm1/uft").status, 401);
    let trace = json!({ "direction": "out", "packet": { "protocol": "icmp", "src": "10.0.0.5", "dst": "10.0.0.1" } });
    assert_eq!(anon.post("/ports/vm1/trace", trace).status, 401);
    assert_eq!(c.get("/ports/vm1").status, 200, "still there");
}

fn firewall_rules_are_added_removed_and_replaced(c: &Client) {
    c.ok("POST", "/ports", Some(vm("vm1", 5)));
    let rule = json!({ "direction": "in", "priority": 10, "action": "allow", "protocol": "tcp", "ports": { "list": [22] } });
    let rules = c.ok("POST", "/ports/vm1/firewall", Some(rule.clone()));
    assert_eq!(rules.as_array().unwrap().len(), 1);
    assert_eq!(rules[0]["id"], 0);
    let rules = c.ok(
        "POST",
        "/ports/vm1/firewall",
        Some(json!({ "direction": "in", "priority": 20, "action": "deny" })),
    );
    assert_eq!(rules.as_array().unwrap().len(), 2);
    let r = c.post(
        "/ports/vm1/firewall",
        json!({ "direction": "sideways", "priority": 1, "action": "allow" }),
    );
    assert_eq!(r.status, 400);
    assert!(r.message().contains("sideways"), "{}", r.message());
    let r = c.post("/ports/vm1/firewall", json!({ "direction": "in", "priority": 1, "action": "allow", "ports": { "range": { "first": 90, "last": 80 } } }));
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(c.delete("/ports/vm1/firewall/7").status, 404);
    let rules = c.ok("DELETE", "/ports/vm1/firewall/0", None);
    assert_eq!(rules.as_array().unwrap().len(), 1);
    assert_eq!(rules[0]["rule"]["action"], "deny");
    let many: Vec<Value> = (0..100)
        .map(|i| json!({ "direction": "in", "priority": i, "action": "allow", "protocol": "udp", "ports": { "list": [1000 + i] } }))
        .collect();
    let rules = c.ok("PUT", "/ports/vm1/firewall", Some(json!({ "rules": many })));
    assert_eq!(rules.as_array().unwrap().len(), 100);
    let fw = c.ok("GET", "/ports/vm1/layers/firewall", None);
    assert_eq!(
        fw["rules_in"].as_array().unwrap().len(),
        100,
        "the live port has the new set"
    );
    assert_eq!(c.get("/ports/nope/firewall").status, 404);
}

fn routes_and_external_ips(c: &Client) {
    c.ok("POST", "/ports", Some(vm("vm1", 5)));
    let r = c.ok(
        "POST",
        "/ports/vm1/routes",
        Some(json!({ "dest": "192.168.0.0/16", "target": { "ip": "10.0.0.9" } })),
    );
    assert!(r["routes"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["dest"] == "192.168.0.0/16"));
    let r = c.post(
        "/ports/vm1/routes",
        json!({ "dest": "192.168.0.0/33", "target": "drop" }),
    );
    assert_eq!(r.status, 400);
    assert!(r.message().contains("33"), "{}", r.message());
    let r = c.post(
        "/ports/vm1/routes",
        json!({ "dest": "172.16.0.0/12", "target": "drop", "class": "system" }),
    );
    assert_eq!(r.status, 400);
    assert!(r.message().starts_with("class"), "{}", r.message());
    let r = c.ok("DELETE", "/ports/vm1/routes?dest=192.168.0.0/16", None);
    assert!(!r["routes"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["dest"] == "192.168.0.0/16"));
    assert_eq!(
        c.delete("/ports/vm1/routes?dest=192.168.0.0/16").status,
        404
    );
    let cfg = c.ok(
        "PUT",
        "/ports/vm1/external-ips",
        Some(json!({ "external": { "floating": ["198.51.100.7"] } })),
    );
    assert_eq!(cfg["external"]["floating"][0], "198.51.100.7");
    let r = c.put("/ports/vm1/external-ips", json!({ "external": { "snat": [{ "ip": "203.0.113.10", "first_port": 5000, "last_port": 10 }] } }));
    assert_eq!(r.status, 400, "{}", r.body);
}

fn rate_limits_are_set_shown_checked_and_cleared(c: &Client) {
    c.ok("POST", "/ports", Some(vm("vm1", 5)));
    let cfg = c.ok(
        "PUT",
        "/ports/vm1/rate-limit",
        Some(json!({ "rate_limit": { "packets_per_sec": 1000, "bytes_per_sec": 1250000 } })),
    );
    assert_eq!(cfg["rate_limit"]["packets_per_sec"], 1000);
    let ports = c.ok("GET", "/ports", None);
    assert_eq!(ports[0]["rate_limit"]["bytes_per_sec"], 1_250_000);
    assert_eq!(
        c.ok("GET", "/ports/vm1", None)["config"]["rate_limit"]["packets_per_sec"],
        1000
    );
    for (body, field) in [
        (json!({ "rate_limit": {} }), "rate_limit.packets_per_sec"),
        (
            json!({ "rate_limit": { "packets_per_sec": 10, "burst_packets": 0 } }),
            "rate_limit.burst_packets",
        ),
        (
            json!({ "rate_limit": { "bytes_per_sec": 10, "burst_packets": 5 } }),
            "rate_limit.burst_packets",
        ),
        (
            json!({ "rate_limit": { "bytes_per_sec": 2_000_000_000_000u64 } }),
            "rate_limit.bytes_per_sec",
        ),
    ] {
        let r = c.put("/ports/vm1/rate-limit", body);
        assert_eq!(r.status, 400, "{}", r.body);
        assert!(r.message().starts_with(field), "{}", r.message());
    }
    let r = c.put(
        "/ports/vm1/rate-limit",
        json!({ "rate_limit": { "pps": 10 } }),
    );
    assert_eq!(r.status, 400);
    assert!(r.message().contains("pps"), "{}", r.message());
    assert_eq!(
        c.put("/ports/nope/rate-limit", json!({ "rate_limit": null }))
            .status,
        404
    );
    // Refusals changed nothing; null removes the limit.
    assert_eq!(
        c.ok("GET", "/ports/vm1", None)["config"]["rate_limit"]["packets_per_sec"],
        1000
    );
    let cfg = c.ok(
        "PUT",
        "/ports/vm1/rate-limit",
        Some(json!({ "rate_limit": null })),
    );
    assert!(cfg.get("rate_limit").is_none(), "{cfg}");
    assert!(c.ok("GET", "/ports", None)[0].get("rate_limit").is_none());
}

fn v2p_and_v2b_tables(c: &Client) {
    let mappings: Vec<Value> = (0..1000u32)
        .map(|i| json!({ "vni": 7777, "ip": format!("10.1.{}.{}", i / 256, i % 256), "guest_mac": "a8:40:25:00:10:01", "host": "fd00:99::b" }))
        .collect();
    let r = c.ok("PUT", "/v2p", Some(json!({ "mappings": mappings })));
    assert_eq!(r["changed"], 1000);
    assert_eq!(
        c.ok("GET", "/v2p?vni=7777", None).as_array().unwrap().len(),
        1000
    );
    assert_eq!(
        c.ok("GET", "/v2p?vni=8888", None).as_array().unwrap().len(),
        0
    );
    let r = c.put("/v2p", json!({ "mappings": [{ "vni": 7777, "ip": "10.2.0.1", "guest_mac": "ff:ff:ff:ff:ff:ff", "host": "fd00:99::b" }] }));
    assert_eq!(r.status, 400);
    assert!(
        r.message().contains("mappings[0].guest_mac"),
        "{}",
        r.message()
    );
    let r = c.ok("DELETE", "/v2p?vni=7777&ip=10.1.0.1", None);
    assert_eq!(r["changed"], 1);
    let r = c.ok("DELETE", "/v2p?vni=7777", None);
    assert_eq!(r["changed"], 999);
    let r = c.delete("/v2p");
    assert_eq!(r.status, 400);
    assert!(r.message().starts_with("vni"), "{}", r.message());

    let r = c.ok("PUT", "/v2b", Some(json!({ "routes": [{ "vni": 7777, "prefix": "0.0.0.0/0", "endpoints": ["fd00:99::100"] }] })));
    assert_eq!(r["changed"], 1);
    assert_eq!(c.ok("GET", "/v2b", None).as_array().unwrap().len(), 1);
    let r = c.put(
        "/v2b",
        json!({ "routes": [{ "vni": 7777, "prefix": "::/0", "endpoints": [] }] }),
    );
    assert_eq!(r.status, 400);
    assert!(
        r.message().contains("routes[0].endpoints"),
        "{}",
        r.message()
    );
    assert_eq!(
        c.ok("DELETE", "/v2b?vni=7777&prefix=0.0.0.0/0", None)["changed"],
        1
    );
}

#[test]
fn a_full_v2p_table_is_409_and_changes_nothing() {
    let h = SimHost::start_with(
        None,
        1,
        api::server::HostLimits {
            v2p: 10,
            v2b: 4,
            ports: 4,
            underlay_mtu: None,
        },
    )
    .unwrap();
    let c = Client::new(h.url(), &h.token);
    let m = |i: u32| json!({ "vni": 7777, "ip": format!("10.1.0.{i}"), "guest_mac": "a8:40:25:00:10:01", "host": "fd00:99::b" });
    c.ok(
        "PUT",
        "/v2p",
        Some(json!({ "mappings": (0..8).map(m).collect::<Vec<_>>() })),
    );
    let r = c.put(
        "/v2p",
        json!({ "mappings": (8..12).map(m).collect::<Vec<_>>() }),
    );
    assert_eq!(r.status, 409);
    assert!(r.message().contains("full"), "{}", r.message());
    assert_eq!(
        c.ok("GET", "/v2p", None).as_array().unwrap().len(),
        8,
        "all or nothing"
    );
}

/// dropshot refuses a body over the limit with 400 (not 413) while
/// reading it, and reads no more than the limit: memory stays bounded.
fn a_body_too_large_is_refused(c: &Client) {
    let big = "x".repeat(api::serve::MAX_BODY_BYTES + 1);
    let r = c.put("/v2p", json!({ "mappings": [], "pad": big }));
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(
        r.message(),
        format!(
            "request body exceeded maximum size of {} bytes",
            api::serve::MAX_BODY_BYTES
        )
    );
    assert_eq!(c.ok("GET", "/v2p", None), json!([]), "nothing applied");
}

/// A guest over its limit is held to it, and the drops show in the
/// port's counters and the metrics under `rate_limited`.
#[test]
fn a_guest_over_its_rate_limit_is_counted_as_rate_limited() {
    let (h, c) = setup();
    c.ok("POST", "/ports", Some(vm("vm1", 5)));
    c.ok(
        "PUT",
        "/ports/vm1/rate-limit",
        Some(json!({ "rate_limit": { "packets_per_sec": 1, "burst_packets": 1 } })),
    );
    let wire = h.devices.wire("vm1").unwrap();
    for p in 0..10 {
        wire.send(&syn(5, [10, 0, 0, 6], 1000 + p));
    }
    send_and_wait(&h, &c, "vm1", &syn(5, [10, 0, 0, 6], 22), 11);
    let s = c.ok("GET", "/ports/vm1/stats", None);
    let limited = s["drops"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["reason"] == "rate_limited")
        .map(|d| d["count"].as_u64().unwrap())
        .unwrap_or(0);
    // One token and a refill of one a second: all but a few of the 11
    // frames sent at once are over the limit.
    assert!(limited >= 5, "{s}");
    let m = c.get("/metrics").body.as_str().unwrap().to_string();
    assert!(
        m.contains(&format!(
            "sluice_drops_total{{port=\"vm1\",reason=\"rate_limited\"}} {limited}"
        )),
        "{m}"
    );
}

/// Sends a frame from a guest's wire and waits (bounded) for the port to
/// count it.
fn send_and_wait(h: &SimHost, c: &Client, port: &str, frame: &[u8], out_packets: u64) {
    h.devices.wire(port).unwrap().send(frame);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let s = c.ok("GET", &format!("/ports/{port}/stats"), None);
        if s["stats"]["out"]["packets"].as_u64() == Some(out_packets) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "port never counted the frame: {s}"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

fn syn(src_last: u8, dst: [u8; 4], dport: u16) -> Vec<u8> {
    syn_from(src_last, src_last, dst, dport)
}

/// A SYN from guest MAC `mac_last` with source address 10.0.0.`ip_last`.
fn syn_from(mac_last: u8, ip_last: u8, dst: [u8; 4], dport: u16) -> Vec<u8> {
    sluice_test_support::build::Tcp::new(
        (
            [0xa8, 0x40, 0x25, 0, 0, mac_last],
            [0xa8, 0x40, 0x25, 0xff, 0xff, 1],
        ),
        (std::net::Ipv4Addr::new(10, 0, 0, ip_last), 40000).into(),
        (std::net::Ipv4Addr::from(dst), dport).into(),
    )
    .seq(1)
    .flags("S")
    .build()
}

#[test]
fn tables_stats_metrics_and_clearing_flows() {
    let (h, c) = setup();
    c.ok("POST", "/ports", Some(vm("vm1", 5)));
    c.ok("PUT", "/v2b", Some(json!({ "routes": [{ "vni": 7777, "prefix": "0.0.0.0/0", "endpoints": ["fd00:99::100"] }] })));
    send_and_wait(&h, &c, "vm1", &syn(5, [93, 184, 216, 34], 443), 1);
    let tunnel = {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            if let Some(f) = h.uplink.take().pop() {
                break f;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "nothing on the uplink"
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    };
    assert_eq!(
        &tunnel[12..14],
        &[0x86, 0xdd],
        "an IPv6 tunnel on the uplink"
    );

    let uft = c.ok("GET", "/ports/vm1/uft", None);
    assert_eq!(uft["outbound"].as_array().unwrap().len(), 1, "{uft}");
    assert_eq!(
        uft["inbound"].as_array().unwrap().len(),
        1,
        "the reply's entry too"
    );
    let tcp = c.ok("GET", "/ports/vm1/tcp-flows", None);
    assert_eq!(tcp.as_array().unwrap().len(), 1, "{tcp}");
    let layers = c.ok("GET", "/ports/vm1/layers", None);
    let names: Vec<&str> = layers
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["gateway", "firewall", "router", "nat", "overlay"]);
    assert_eq!(c.get("/ports/vm1/layers/nope").status, 404);
    let nat = c.ok("GET", "/ports/vm1/layers/nat", None);
    assert!(
        !nat["lft_out"].as_array().unwrap().is_empty(),
        "SNAT state: {nat}"
    );

    let stats = c.ok("GET", "/stats", None);
    assert_eq!(stats["ports"][0]["flows"], 1);
    assert_eq!(stats["workers"].as_array().unwrap().len(), 2);
    let metrics = c.get("/metrics");
    assert_eq!(metrics.status, 200);
    let text = metrics.body.as_str().unwrap().to_string();
    assert!(
        text.contains("sluice_port_packets_total{port=\"vm1\",dir=\"out\"} 1"),
        "{text}"
    );
    assert!(text.contains("sluice_flows{port=\"vm1\"} 1"), "{text}");
    assert!(
        text.contains("sluice_flow_limit{port=\"vm1\"} 4096"),
        "{text}"
    );
    assert!(
        text.contains("sluice_worker_busy_ratio{worker=\"0\"}"),
        "{text}"
    );
    assert!(
        text.contains("sluice_layer_packets_total{port=\"vm1\",layer=\"nat\",dir=\"out\"}"),
        "{text}"
    );

    // A spoofed source is dropped with its reason, which metrics show.
    let spoof = syn_from(5, 99, [93, 184, 216, 34], 443);
    send_and_wait(&h, &c, "vm1", &spoof, 2);
    let text = c.get("/metrics").body.as_str().unwrap().to_string();
    assert!(
        text.contains("sluice_drops_total{port=\"vm1\",reason=\"spoofed_source_ip\"} 1"),
        "{text}"
    );

    assert_eq!(c.delete("/ports/vm1/uft").status, 204);
    let uft = c.ok("GET", "/ports/vm1/uft", None);
    assert!(uft["outbound"].as_array().unwrap().is_empty());
    assert_eq!(c.ok("GET", "/ports/vm1/stats", None)["flows"], 0);
}

fn trace_shows_each_layer_and_the_packet_that_leaves(c: &Client) {
    c.ok("POST", "/ports", Some(vm("vm1", 5)));
    c.ok("PUT", "/v2b", Some(json!({ "routes": [{ "vni": 7777, "prefix": "0.0.0.0/0", "endpoints": ["fd00:99::100"] }] })));
    let t = c.ok("POST", "/ports/vm1/trace", Some(json!({
        "direction": "out",
        "packet": { "protocol": "tcp", "src": "10.0.0.5", "dst": "93.184.216.34", "dst_port": 443 }
    })));
    let steps = t["trace"]["steps"].as_array().unwrap();
    let layers: Vec<&str> = steps.iter().map(|s| s["layer"].as_str().unwrap()).collect();
    assert_eq!(
        layers,
        ["gateway", "firewall", "router", "nat", "overlay"],
        "{t}"
    );
    assert_eq!(t["trace"]["verdict"], "forward");
    assert_eq!(t["trace"]["fate"], "forward", "{t}");
    assert!(t["trace"].get("drop_reason").is_none(), "{t}");
    let out = api::trace::unhex(t["trace"]["output"].as_str().unwrap()).unwrap();
    let p = etherparse::SlicedPacket::from_ethernet(&out).unwrap();
    assert!(
        matches!(p.net, Some(etherparse::NetSlice::Ipv6(_))),
        "tunnelled"
    );
    // The trace left no flow behind.
    assert_eq!(c.ok("GET", "/ports/vm1/stats", None)["flows"], 0);

    // Inbound from the internet to a closed port: the firewall says no.
    let t = c.ok("POST", "/ports/vm1/trace", Some(json!({
        "direction": "in",
        "packet": { "protocol": "tcp", "src": "93.184.216.34", "dst": "10.0.0.5", "dst_port": 22 }
    })));
    assert!(
        t["trace"]["verdict"].as_str().unwrap().starts_with("drop"),
        "{t}"
    );
    // ... and says so as values, with the reason's name as the drop
    // table and metrics print it.
    assert_eq!(t["trace"]["fate"], "drop", "{t}");
    assert_eq!(t["trace"]["drop_reason"], "default_denied", "{t}");

    let r = c.post("/ports/vm1/trace", json!({ "direction": "out", "packet": { "protocol": "tcp", "src": "10.0.0.5", "dst": "::1" } }));
    assert_eq!(r.status, 400);
    assert!(r.message().starts_with("packet.dst"), "{}", r.message());
    let r = c.post("/ports/vm1/trace", json!({ "direction": "out", "packet": { "protocol": "tcp", "src": "10.0.0.5", "dst": "10.0.0.6", "tcp_flags": "SX" } }));
    assert_eq!(r.status, 400);
    assert!(r.message().contains("'X'"), "{}", r.message());
    let r = c.post(
        "/ports/vm1/trace",
        json!({ "direction": "out", "frame_hex": "abc" }),
    );
    assert_eq!(r.status, 400);
    assert_eq!(
        c.post(
            "/ports/nope/trace",
            json!({ "direction": "out", "frame_hex": "00" })
        )
        .status,
        404
    );
}

#[test]
fn capture_records_a_port_to_pcap() {
    let (h, c) = setup();
    c.ok("POST", "/ports", Some(vm("vm1", 5)));
    let wire = h.devices.wire("vm1").unwrap();
    let frame = syn(5, [10, 0, 0, 6], 22);
    let sender = std::thread::spawn(move || {
        for _ in 0..50 {
            wire.send(&frame);
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    });
    let r = c.ok(
        "POST",
        "/ports/vm1/capture",
        Some(json!({ "packets": 3, "seconds": 10 })),
    );
    assert_eq!(r["packets"], 3, "{r}");
    use base64::Engine as _;
    let pcap = base64::engine::general_purpose::STANDARD
        .decode(r["pcap_base64"].as_str().unwrap())
        .unwrap();
    assert_eq!(&pcap[0..4], &0xa1b2_c3d4u32.to_le_bytes());
    assert_eq!(pcap.len(), 24 + 3 * (16 + 54));
    let r = c.post("/ports/vm1/capture", json!({ "packets": 0 }));
    assert_eq!(r.status, 400);
    assert!(r.message().starts_with("packets"), "{}", r.message());
    sender.join().unwrap();
}

fn dump_state_is_the_whole_desired_state(c: &Client) {
    c.ok("POST", "/ports", Some(vm("vm1", 5)));
    c.ok("PUT", "/v2p", Some(json!({ "mappings": [{ "vni": 7777, "ip": "10.0.0.6", "guest_mac": "a8:40:25:00:00:06", "host": "fd00:99::b" }] })));
    let s = c.ok("GET", "/state", None);
    assert_eq!(s["version"], 1);
    assert_eq!(s["ports"][0]["config"]["name"], "vm1");
    assert_eq!(s["ports"][0]["guest"]["kind"], "tap");
    assert_eq!(s["v2p"].as_array().unwrap().len(), 1);
    assert_eq!(c.get("/health").status, 204);
}

/// A TCP segment of an established flow vm5:40000 → vm6:5201.
fn data_segment(seq: u32) -> Vec<u8> {
    let mut v = Vec::new();
    etherparse::PacketBuilder::ethernet2(
        [0xa8, 0x40, 0x25, 0, 0, 5],
        [0xa8, 0x40, 0x25, 0xff, 0xff, 1],
    )
    .ipv4([10, 0, 0, 5], [10, 0, 0, 6], 64)
    .tcp(40000, 5201, seq, 64240)
    .ack(1)
    .write(&mut v, &[0u8; 100])
    .unwrap();
    v
}

#[test]
fn bulk_calls_100k_v2p_mappings_and_a_10k_rule_set_replaced_under_traffic() {
    // One worker: both ports on it, so nothing between them can overflow
    // (across workers, a full handoff queue drops and counts; that is
    // load, not what this test is about).
    let h = SimHost::start(None, 1).expect("simulated host");
    let c = Client::new(h.url(), &h.token);
    // 100 000 mappings in one call (its speed is measured in bench/, not here).
    let mappings: Vec<Value> = (0..100_000u32)
        .map(|i| json!({ "vni": 7777, "ip": format!("10.{}.{}.{}", 100 + i / 65536, (i / 256) % 256, i % 256), "guest_mac": "a8:40:25:00:10:01", "host": "fd00:99::b" }))
        .collect();
    assert_eq!(
        c.ok("PUT", "/v2p", Some(json!({ "mappings": mappings })))["changed"],
        100_000
    );
    c.ok("PUT", "/v2p", Some(json!({ "mappings": [
        { "vni": 7777, "ip": "10.0.0.5", "guest_mac": "a8:40:25:00:00:05", "host": api::serve::SIM_UNDERLAY },
        { "vni": 7777, "ip": "10.0.0.6", "guest_mac": "a8:40:25:00:00:06", "host": api::serve::SIM_UNDERLAY }
    ] })));

    // vm5 → vm6 on this host, TCP 5201 allowed in at vm6.
    c.ok("POST", "/ports", Some(vm("vm5", 5)));
    let mut v6 = vm("vm6", 6);
    v6["config"]["firewall"] = json!([{ "direction": "in", "priority": 100, "action": "allow", "protocol": "tcp", "ports": { "list": [5201] } }]);
    c.ok("POST", "/ports", Some(v6));
    let (w5, w6) = (
        h.devices.wire("vm5").unwrap(),
        h.devices.wire("vm6").unwrap(),
    );
    let mut syn = Vec::new();
    etherparse::PacketBuilder::ethernet2(
        [0xa8, 0x40, 0x25, 0, 0, 5],
        [0xa8, 0x40, 0x25, 0xff, 0xff, 1],
    )
    .ipv4([10, 0, 0, 5], [10, 0, 0, 6], 64)
    .tcp(40000, 5201, 0, 64240)
    .syn()
    .write(&mut syn, &[])
    .unwrap();
    // The three-way handshake (RFC 9293 §3.5), so the flow is established
    // (a half-open one would expire in seconds).
    let wait = |w: &vmm_net::backend::Wire, what: &str| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while w.take().is_empty() {
            assert!(std::time::Instant::now() < deadline, "{what} never arrived");
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
    };
    w5.send(&syn);
    wait(&w6, "the SYN");
    let mut synack = Vec::new();
    etherparse::PacketBuilder::ethernet2(
        [0xa8, 0x40, 0x25, 0, 0, 6],
        [0xa8, 0x40, 0x25, 0xff, 0xff, 1],
    )
    .ipv4([10, 0, 0, 6], [10, 0, 0, 5], 64)
    .tcp(5201, 40000, 0, 64240)
    .syn()
    .ack(1)
    .write(&mut synack, &[])
    .unwrap();
    w6.send(&synack);
    wait(&w5, "the SYN-ACK");

    // Traffic flows while the 10 000-rule set replaces the old one.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sender = {
        let (w5, stop) = (w5.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut sent = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && sent < 200_000 {
                w5.send(&data_segment(1 + sent * 100));
                sent += 1;
                if sent.is_multiple_of(64) {
                    std::thread::sleep(std::time::Duration::from_micros(200));
                }
            }
            sent
        })
    };
    let mut rules: Vec<Value> = (0..9_999u32)
        .map(|i| json!({ "direction": "in", "priority": 200 + i % 1000, "action": "deny", "protocol": "udp", "hosts": { "ip": format!("192.0.{}.{}", i / 256, i % 256) }, "ports": { "list": [10000 + (i % 5000) as u16] } }))
        .collect();
    rules.push(json!({ "direction": "in", "priority": 100, "action": "allow", "protocol": "tcp", "ports": { "list": [5201] } }));
    let epoch_before = c.ok("GET", "/ports/vm6", None)["summary"]["epoch"]
        .as_u64()
        .unwrap();
    let r = c.ok(
        "PUT",
        "/ports/vm6/firewall",
        Some(json!({ "rules": rules })),
    );
    assert_eq!(r.as_array().unwrap().len(), 10_000);
    std::thread::sleep(std::time::Duration::from_millis(100));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let sent = sender.join().unwrap();
    let epoch_after = c.ok("GET", "/ports/vm6", None)["summary"]["epoch"]
        .as_u64()
        .unwrap();
    assert!(
        epoch_after > epoch_before,
        "the rule set changed under traffic"
    );

    let mut got = 0u32;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while got < sent && std::time::Instant::now() < deadline {
        got += w6.take().len() as u32;
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let stats = c.ok("GET", "/ports/vm6/stats", None);
    assert_eq!(
        got,
        sent,
        "every packet of the allowed established flow arrived: {stats} {}",
        c.ok("GET", "/ports/vm5/stats", None)
    );
    assert!(stats["drops"].as_array().unwrap().is_empty(), "{stats}");
}

/// `GET /underlay` lists the uplinks with their state and counters;
/// `PUT /underlay` chooses which carry traffic, refusing unknown names,
/// repeats and an empty set with a 400 naming `uplinks`; both in
/// `/metrics`.
fn underlay_is_read_and_its_uplinks_chosen(c: &Client) {
    let u = c.ok("GET", "/underlay", None);
    assert!(u["address"].is_string(), "{u}");
    let names: Vec<String> = (u["uplinks"].as_array().unwrap().iter())
        .map(|l| l["name"].as_str().unwrap().to_string())
        .collect();
    assert!(!names.is_empty(), "{u}");
    for l in u["uplinks"].as_array().unwrap() {
        assert_eq!(l["in_use"], true, "all in use at start: {u}");
        assert!(
            l["stats"]["tx"].is_u64() && l["link_up"].is_boolean(),
            "{l}"
        );
    }
    let set = c.ok("PUT", "/underlay", Some(json!({ "uplinks": [names[0]] })));
    assert_eq!(set["uplinks"][0]["in_use"], true, "{set}");
    for bad in [
        json!([]),
        json!(["no-such-uplink"]),
        json!([names[0], names[0]]),
    ] {
        let r = c.put("/underlay", json!({ "uplinks": bad }));
        assert_eq!(r.status, 400, "{bad}: {}", r.body);
        assert!(r.message().starts_with("uplinks: "), "{}", r.message());
    }
    let r = c.put("/underlay", json!({ "uplinks": ["no-such-uplink"] }));
    assert!(
        r.message()
            .contains("no uplink named 'no-such-uplink' (configured: "),
        "{}",
        r.message()
    );
    c.ok("PUT", "/underlay", Some(json!({ "uplinks": names })));
    let m = match c.get("/metrics").body {
        Value::String(s) => s,
        other => other.to_string(),
    };
    let live = format!("sluice_uplink_live{{uplink=\"{}\"}} ", names[0]);
    assert!(m.lines().any(|l| l.starts_with(&live)), "{live} in\n{m}");
    let tx = format!(
        "sluice_uplink_frames_total{{uplink=\"{}\",kind=\"tx\"}} ",
        names[0]
    );
    assert!(m.lines().any(|l| l.starts_with(&tx)), "{tx}");
}

/// Runs each test against the simulated host and against the real
/// daemon.
macro_rules! on_both {
    ($($name:ident),* $(,)?) => {
        mod on_sim {
            $( #[test] fn $name() { let (_h, c) = super::setup(); super::$name(&c); } )*
        }
        mod on_daemon {
            $( #[test] fn $name() {
                let Some(d) = crate::daemon::real_host(stringify!($name)) else { return };
                super::$name(&d.client);
            } )*
        }
    };
}

on_both!(
    ports_are_created_listed_read_and_deleted,
    bad_fields_are_named,
    conflicts_are_409,
    mutations_need_the_token_and_change_nothing_without_it,
    firewall_rules_are_added_removed_and_replaced,
    routes_and_external_ips,
    rate_limits_are_set_shown_checked_and_cleared,
    v2p_and_v2b_tables,
    a_body_too_large_is_refused,
    trace_shows_each_layer_and_the_packet_that_leaves,
    dump_state_is_the_whole_desired_state,
    underlay_is_read_and_its_uplinks_chosen,
);

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

/// A tunnel from host B (fd00:99::b) to the simulated host, Geneve
/// `flags` (0x80: the O bit), VNI 7777, carrying a SYN to vm1 (10.0.0.5).
fn tunnel_to_vm1(flags: u8) -> Vec<u8> {
    let mut inner = Vec::new();
    etherparse::PacketBuilder::ethernet2(
        [0xa8, 0x40, 0x25, 0xff, 0xff, 1],
        [0xa8, 0x40, 0x25, 0, 0, 5],
    )
    .ipv4([10, 0, 0, 6], [10, 0, 0, 5], 64)
    .tcp(40000, 22, 1, 64240)
    .syn()
    .write(&mut inner, &[])
    .unwrap();
    // VNI 7777 (0x1e61).
    sluice_test_support::Geneve::new(
        "fd00:99::b".parse().unwrap(),
        api::serve::SIM_UNDERLAY,
        7777,
    )
    .hop_limit(63)
    .sport(40001)
    .flags(flags)
    .wrap(&inner)
}

#[test]
fn switch_drops_are_in_stats_and_metrics_by_name() {
    let (h, c) = setup();
    c.ok("POST", "/ports", Some(vm("vm1", 5)));
    // RFC 8926 §3.4: a control packet never reaches the guest.
    h.uplink.send(&tunnel_to_vm1(0x80));
    // Damaged on the way: the outer UDP checksum no longer matches.
    let mut damaged = tunnel_to_vm1(0);
    *damaged.last_mut().unwrap() ^= 0x10;
    h.uplink.send(&damaged);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let drops = loop {
        let stats = c.ok("GET", "/stats", None);
        let mut drops: Vec<(String, u64)> = stats["workers"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|w| w["drops"].as_array().unwrap().clone())
            .map(|d| {
                (
                    d["reason"].as_str().unwrap().to_string(),
                    d["count"].as_u64().unwrap(),
                )
            })
            .collect();
        drops.sort();
        if drops.len() >= 2 {
            break drops;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the switch's drops never showed: {stats}"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    };
    assert_eq!(
        drops,
        [
            ("geneve_control".to_string(), 1),
            ("outer_udp_checksum".to_string(), 1)
        ]
    );
    assert!(
        h.devices.wire("vm1").unwrap().take().is_empty(),
        "vm1 got neither"
    );
    let text = c.get("/metrics").body.as_str().unwrap().to_string();
    for reason in ["geneve_control", "outer_udp_checksum"] {
        assert!(
            text.lines().any(
                |l| l.starts_with("sluice_drops_total{layer=\"switch\",worker=")
                    && l.ends_with(&format!(",reason=\"{reason}\"}} 1"))
            ),
            "{text}"
        );
    }

    // A well-formed tunnel from a vouched host passes the switch; vm1's
    // firewall (inbound denied by default) drops it, and says so.
    c.ok(
        "PUT",
        "/v2p",
        Some(json!({ "mappings": [{ "vni": 7777, "ip": "10.0.0.6", "guest_mac": "a8:40:25:00:00:06", "host": "fd00:99::b" }] })),
    );
    h.uplink.send(&tunnel_to_vm1(0));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let text = loop {
        let text = c.get("/metrics").body.as_str().unwrap().to_string();
        if text.contains("reason=\"default_denied\"") {
            break text;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no default_denied: {text}"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    };
    assert!(
        text.contains(
            "sluice_drops_total{port=\"vm1\",layer=\"firewall\",reason=\"default_denied\"} 1"
        ),
        "{text}"
    );
    let stats: api::types::HostStats = serde_json::from_value(c.ok("GET", "/stats", None)).unwrap();
    let table = api::cli::show::host_stats(&stats);
    let rows: Vec<Vec<&str>> = table
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    for want in [
        ["vm1", "firewall", "default_denied", "1"],
        ["(switch)", "switch", "geneve_control", "1"],
        ["(switch)", "switch", "outer_udp_checksum", "1"],
    ] {
        assert!(
            rows.iter().any(|r| r[..] == want[..]),
            "{want:?} in\n{table}"
        );
    }
}
