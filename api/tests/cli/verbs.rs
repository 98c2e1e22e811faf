//! Every verb at least once: its table and its `--json`.

use crate::fixtures::*;
use api::serve::SimHost;
use serde_json::json;

#[test]
fn ports_are_created_from_a_file_or_stdin_listed_and_deleted() {
    let tmp = TempDir::new("ports");
    let h = SimHost::start(None, 2).expect("simulated host");
    let cfg = tmp.file("vm1.json", vm_config("vm1", 5).to_string().as_bytes());
    let out = ok(&h, &["create-vnic", "--config", &cfg, "--tap", "tap-vm1"]);
    assert!(out.starts_with("created port 'vm1'\n"), "{out}");
    assert_eq!(
        header(&out, "NAME"),
        [
            "NAME",
            "VNI",
            "MAC",
            "IPv4",
            "IPv6",
            "GUEST",
            "STATE",
            "WORKER",
            "FLOWS",
            "EPOCH",
            "RATE-LIMIT"
        ]
    );

    let vm2 = vm_config("vm2", 6).to_string();
    let r = adm_in(
        &h,
        &["--json", "create-vnic", "--config", "-", "--no-guest"],
        Some(vm2.as_bytes()),
    );
    assert_eq!(r.code, 0, "{r:?}");
    let s = r.json();
    assert_eq!(s["name"], "vm2");
    assert_eq!(s["guest"], json!({ "kind": "none" }));
    let vm3 = tmp.file("vm3.json", vm_config("vm3", 7).to_string().as_bytes());
    ok(
        &h,
        &[
            "create-vnic",
            "--config",
            &vm3,
            "--vhost-user",
            "/run/sluice/vm3.sock",
        ],
    );

    let out = ok(&h, &["list-ports"]);
    let r = rows(&out, "NAME");
    assert_eq!(r.len(), 3, "{out}");
    assert_eq!(
        r[0][..9],
        [
            "vm1",
            "7777",
            "a8:40:25:00:00:05",
            "10.0.0.5",
            "-",
            "tap:tap-vm1",
            "up",
            r[0][7].as_str(),
            "0/4096"
        ]
    );
    assert_eq!(r[1][5], "none");
    assert_eq!(r[2][5], "vhost-user:/run/sluice/vm3.sock");
    let list = ok_json(&h, &["list-ports"]);
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["vm1", "vm2", "vm3"]);

    assert_eq!(ok(&h, &["delete-vnic", "vm2"]), "deleted port 'vm2'\n");
    assert_eq!(ok(&h, &["--json", "delete-vnic", "vm3"]), "");
    let r = rows(&ok(&h, &["list-ports"]), "NAME");
    assert_eq!(r.len(), 1);
    assert_eq!(r[0][0], "vm1");
}

#[test]
fn firewall_rules_are_added_listed_replaced_and_removed() {
    let tmp = TempDir::new("fw");
    let h = host_with_vm1(&tmp);
    let out = ok(
        &h,
        &[
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
            "22,80",
            "--hosts",
            "subnet=10.0.0.0/24",
        ],
    );
    assert_eq!(
        header(&out, "ID"),
        ["ID", "DIR", "PRIORITY", "ACTION", "HOSTS", "PROTOCOL", "PORTS"]
    );
    assert_eq!(
        rows(&out, "ID"),
        [[
            "0",
            "in",
            "10",
            "allow",
            "subnet=10.0.0.0/24",
            "tcp",
            "22,80"
        ]]
    );
    let rules = ok_json(
        &h,
        &[
            "add-fw-rule",
            "vm1",
            "--direction",
            "out",
            "--priority",
            "5",
            "--action",
            "deny",
            "--hosts",
            "ip=192.0.2.1",
            "--protocol",
            "udp",
            "--ports",
            "5000-5100",
        ],
    );
    assert_eq!(rules[1]["id"], 1);
    assert_eq!(
        rules[1]["rule"],
        json!({ "direction": "out", "priority": 5, "action": "deny",
                "hosts": { "ip": "192.0.2.1" }, "protocol": "udp",
                "ports": { "range": { "first": 5000, "last": 5100 } } })
    );
    let out = ok(&h, &["list-fw-rules", "vm1"]);
    assert_eq!(rows(&out, "ID").len(), 2);
    assert_eq!(
        rows(&out, "ID")[1],
        ["1", "out", "5", "deny", "ip=192.0.2.1", "udp", "5000-5100"]
    );
    assert_eq!(ok_json(&h, &["list-fw-rules", "vm1"]), rules);

    // The live port has them: the firewall layer's rules.
    let out = ok(&h, &["dump-layer", "vm1", "firewall"]);
    assert!(
        out.starts_with("Layer firewall of port vm1: default out allow, in deny\n"),
        "{out}"
    );
    assert_eq!(
        header(&out, "DIR"),
        ["DIR", "ID", "PRIORITY", "PREDICATES", "ACTION", "HITS"]
    );
    let r = rows(&out, "DIR");
    assert!(r.iter().any(|r| r[0] == "in" && r[2] == "10"), "{out}");
    assert!(
        out.contains("Flows (LFT)\nDIR  KEY  FLOW  STATE\n"),
        "{out}"
    );
    let fw = ok_json(&h, &["dump-layer", "vm1", "firewall"]);
    assert_eq!(fw["name"], "firewall");

    assert_eq!(
        rows(&ok(&h, &["rm-fw-rule", "vm1", "0"]), "ID")[0][3],
        "deny"
    );

    // A whole set: an object with "rules", or the bare array.
    let set = json!({ "rules": [
        { "direction": "in", "priority": 1, "action": "allow", "protocol": "icmp" },
        { "direction": "in", "priority": 2, "action": "allow", "protocol": "tcp", "ports": { "list": [443] } },
    ] });
    let f = tmp.file("rules.json", set.to_string().as_bytes());
    let r = rows(&ok(&h, &["set-fw-rules", "vm1", "--file", &f]), "ID");
    assert_eq!(r.len(), 2);
    assert_eq!(r[0], ["0", "in", "1", "allow", "any", "icmp", "any"]);
    let bare = json!([set["rules"][1]]);
    let f = tmp.file("bare.json", bare.to_string().as_bytes());
    assert_eq!(
        rows(&ok(&h, &["set-fw-rules", "vm1", "--file", &f]), "ID").len(),
        1
    );
    let f = tmp.file("none.json", b"[]");
    let out = ok(&h, &["set-fw-rules", "vm1", "--file", &f]);
    assert!(
        out.contains("(no rules: outbound allowed, inbound denied)"),
        "{out}"
    );
}

#[test]
fn routes_are_added_listed_and_deleted() {
    let tmp = TempDir::new("routes");
    let h = host_with_vm1(&tmp);
    let out = ok(
        &h,
        &["add-router-entry", "vm1", "192.168.0.0/16", "ip=10.0.0.9"],
    );
    assert_eq!(header(&out, "DEST"), ["DEST", "TARGET", "CLASS"]);
    let r = rows(&out, "DEST");
    assert!(
        r.contains(&vec![
            "10.0.0.0/24".into(),
            "vpc_subnet=10.0.0.0/24".into(),
            "system".into()
        ]),
        "{out}"
    );
    assert!(
        r.contains(&vec![
            "0.0.0.0/0".into(),
            "internet_gateway".into(),
            "system".into()
        ]),
        "{out}"
    );
    assert!(
        r.contains(&vec![
            "192.168.0.0/16".into(),
            "ip=10.0.0.9".into(),
            "custom".into()
        ]),
        "{out}"
    );
    ok(&h, &["add-router-entry", "vm1", "198.51.100.0/24", "drop"]);
    ok(
        &h,
        &[
            "add-router-entry",
            "vm1",
            "10.1.0.0/24",
            "vpc_subnet=10.1.0.0/24",
        ],
    );
    let routes = ok_json(&h, &["list-routes", "vm1"]);
    let dests: Vec<&str> = routes["routes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["dest"].as_str().unwrap())
        .collect();
    assert!(
        dests.contains(&"198.51.100.0/24") && dests.contains(&"10.1.0.0/24"),
        "{routes}"
    );
    let out = ok(&h, &["del-router-entry", "vm1", "192.168.0.0/16"]);
    assert!(!out.contains("192.168.0.0/16"), "{out}");
    assert_eq!(rows(&ok(&h, &["list-routes", "vm1"]), "DEST").len(), 4);
}

#[test]
fn v2p_and_v2b_are_set_dumped_and_cleared() {
    let h = SimHost::start(None, 1).expect("simulated host");
    let tmp = TempDir::new("v2p");
    let out = ok(
        &h,
        &[
            "set-v2p",
            "7777",
            "10.0.0.6",
            "a8:40:25:00:00:06",
            "fd00:99::b",
        ],
    );
    assert_eq!(out, "set 1 V2P mapping(s), 1 changed\n");
    let many: Vec<_> = (10..20)
        .map(|i| json!({ "vni": 8888, "ip": format!("10.9.0.{i}"), "guest_mac": "a8:40:25:00:10:01", "host": "fd00:99::c" }))
        .collect();
    let f = tmp.file("m.json", json!({ "mappings": many }).to_string().as_bytes());
    assert_eq!(ok_json(&h, &["set-v2p", "--file", &f])["changed"], 10);

    let out = ok(&h, &["dump-v2p", "--vni", "7777"]);
    assert_eq!(header(&out, "VNI"), ["VNI", "IP", "MAC", "HOST"]);
    assert_eq!(
        rows(&out, "VNI"),
        [["7777", "10.0.0.6", "a8:40:25:00:00:06", "fd00:99::b"]]
    );
    assert_eq!(rows(&ok(&h, &["dump-v2p"]), "VNI").len(), 11);
    let all = ok_json(&h, &["dump-v2p", "--vni", "8888"]);
    assert_eq!(all.as_array().unwrap().len(), 10);
    // What dump-v2p --json prints, set-v2p --file takes back.
    let f = tmp.file("dumped.json", all.to_string().as_bytes());
    assert_eq!(ok_json(&h, &["set-v2p", "--file", &f])["changed"], 0);

    assert_eq!(
        ok(&h, &["clear-v2p", "8888", "10.9.0.10"]),
        "cleared 1 V2P mapping(s)\n"
    );
    assert_eq!(ok_json(&h, &["clear-v2p", "8888"])["changed"], 9);
    assert_eq!(rows(&ok(&h, &["dump-v2p"]), "VNI").len(), 1);

    assert_eq!(
        ok(
            &h,
            &["set-v2b", "7777", "0.0.0.0/0", "fd00:99::100,fd00:99::101"]
        ),
        "set 1 V2B route(s)\n"
    );
    ok(&h, &["set-v2b", "7777", "::/0", "fd00:99::100"]);
    let out = ok(&h, &["dump-v2b"]);
    assert_eq!(header(&out, "VNI"), ["VNI", "PREFIX", "ENDPOINTS"]);
    let r = rows(&out, "VNI");
    assert!(
        r.contains(&vec![
            "7777".into(),
            "0.0.0.0/0".into(),
            "fd00:99::100,fd00:99::101".into()
        ]),
        "{out}"
    );
    let v = ok_json(&h, &["dump-v2b", "--vni", "7777"]);
    assert_eq!(v.as_array().unwrap().len(), 2);
    let f = tmp.file(
        "r.json",
        json!([{ "vni": 9999, "prefix": "0.0.0.0/0", "endpoints": ["fd00:99::100"] }])
            .to_string()
            .as_bytes(),
    );
    ok(&h, &["set-v2b", "--file", &f]);
    assert_eq!(
        ok(&h, &["clear-v2b", "7777", "::/0"]),
        "cleared 1 V2B route(s)\n"
    );
    assert_eq!(ok_json(&h, &["clear-v2b", "7777"])["changed"], 1);
    assert_eq!(
        rows(&ok(&h, &["dump-v2b"]), "VNI"),
        [["9999", "0.0.0.0/0", "fd00:99::100"]]
    );
}

#[test]
fn external_ips_are_set_whole() {
    let tmp = TempDir::new("ext");
    let h = host_with_vm1(&tmp);
    let out = ok(
        &h,
        &[
            "set-external-ips",
            "vm1",
            "--snat",
            "203.0.113.10:2048-4095",
            "--ephemeral",
            "203.0.113.20",
            "--floating",
            "203.0.113.50",
            "--floating",
            "203.0.113.51",
        ],
    );
    assert_eq!(header(&out, "KIND"), ["KIND", "ADDRESS", "PORTS"]);
    assert_eq!(
        rows(&out, "KIND"),
        [
            ["floating", "203.0.113.50", "all"],
            ["floating", "203.0.113.51", "all"],
            ["ephemeral", "203.0.113.20", "all"],
            ["snat", "203.0.113.10", "2048-4095"],
        ]
    );
    let cfg = ok_json(
        &h,
        &["set-external-ips", "vm1", "--floating", "203.0.113.50"],
    );
    assert_eq!(cfg["external"]["floating"], json!(["203.0.113.50"]));
    assert_eq!(cfg["external"]["snat"], json!([]));
    let out = ok(&h, &["set-external-ips", "vm1"]);
    assert!(out.contains("(no external IPs"), "{out}");
}

#[test]
fn rate_limits_are_set_listed_and_removed() {
    let tmp = TempDir::new("rate");
    let h = host_with_vm1(&tmp);
    let out = ok(
        &h,
        &[
            "set-rate-limit",
            "vm1",
            "--pps",
            "10000",
            "--burst-packets",
            "500",
            "--bps",
            "12500000",
        ],
    );
    assert_eq!(
        out,
        "rate limit: 10000 packets/s (burst 500), 12500000 bytes/s (burst 1250000)\n"
    );
    let row = &rows(&ok(&h, &["list-ports"]), "NAME")[0];
    assert_eq!(row.last().unwrap(), "10000pps,12500000B/s");
    let cfg = ok_json(&h, &["set-rate-limit", "vm1", "--bps", "1000000"]);
    assert_eq!(cfg["rate_limit"], json!({ "bytes_per_sec": 1000000 }));
    assert_eq!(
        ok(&h, &["set-rate-limit", "vm1", "--none"]),
        "rate limit: none\n"
    );
    let row = &rows(&ok(&h, &["list-ports"]), "NAME")[0];
    assert_eq!(row.last().unwrap(), "-");
}

/// vm1 opens a TCP connection to the internet; the tables, counters,
/// trace and capture show it.
#[test]
fn tables_stats_trace_and_capture_show_traffic() {
    let tmp = TempDir::new("traffic");
    let h = host_with_vm1(&tmp);
    ok(&h, &["set-v2b", "7777", "0.0.0.0/0", "fd00:99::100"]);
    let wire = h.devices.wire("vm1").expect("vm1's wire");
    wire.send(&syn(5, [93, 184, 216, 34], 443));
    wait_for("vm1's flow", || {
        ok_json(&h, &["stats", "vm1"])["flows"] == 1
    });

    let out = ok(&h, &["list-layers", "vm1"]);
    assert_eq!(
        header(&out, "LAYER"),
        [
            "LAYER",
            "RULES-OUT",
            "RULES-IN",
            "FLOWS-OUT",
            "FLOWS-IN",
            "DEFAULT-OUT",
            "DEFAULT-IN"
        ]
    );
    let layers: Vec<String> = rows(&out, "LAYER")
        .into_iter()
        .map(|r| r[0].clone())
        .collect();
    assert_eq!(layers, ["gateway", "firewall", "router", "nat", "overlay"]);
    assert_eq!(
        ok_json(&h, &["list-layers", "vm1"])
            .as_array()
            .unwrap()
            .len(),
        5
    );

    let out = ok(&h, &["dump-uft", "vm1"]);
    assert_eq!(
        header(&out, "DIR"),
        ["DIR", "KEY", "FLOW", "EPOCH", "TRANSFORM"]
    );
    let uft = rows(&out, "DIR");
    assert_eq!(uft.len(), 2, "{out}");
    assert_eq!(uft[0][..4], ["out", "TCP", "10.0.0.5:40000", ">"]);
    assert_eq!(uft[0][4], "93.184.216.34:443");
    assert!(
        out.contains("ip.src=203.0.113.10"),
        "SNAT in the transform: {out}"
    );
    assert_eq!(uft[1][0], "in");
    let j = ok_json(&h, &["dump-uft", "vm1"]);
    assert_eq!(j["outbound"].as_array().unwrap().len(), 1);

    let out = ok(&h, &["dump-layer", "vm1", "nat"]);
    let lft = rows(&out[out.find("Flows (LFT)").unwrap()..], "DIR");
    assert!(!lft.is_empty(), "SNAT state in the NAT layer: {out}");

    let out = ok(&h, &["dump-tcp-flows", "vm1"]);
    assert_eq!(
        header(&out, "FLOW"),
        ["FLOW", "KEY", "ORIGIN", "STATE", "AGE", "IDLE", "PKTS-OUT", "PKTS-IN"]
    );
    let r = rows(&out, "FLOW");
    assert_eq!(r.len(), 1, "{out}");
    assert_eq!(r[0][5], "out", "opened from the guest: {out}");
    assert_eq!(
        ok_json(&h, &["dump-tcp-flows", "vm1"])
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // A spoofed source is dropped, with its reason in the counters.
    wire.send(&syn_from(5, 99, [93, 184, 216, 34], 443));
    wait_for("the drop", || {
        ok_json(&h, &["stats", "vm1"])["stats"]["out"]["packets"] == 2
    });
    let out = ok(&h, &["stats", "vm1"]);
    assert!(
        out.starts_with("Port vm1: flows 1/4096 (UFT out 1, in 1)"),
        "{out}"
    );
    assert_eq!(
        header(&out, "DIR"),
        [
            "DIR",
            "PACKETS",
            "BYTES",
            "UFT-HITS",
            "UFT-MISSES",
            "FORWARDED",
            "HAIRPINS",
            "DROPPED"
        ]
    );
    assert_eq!(rows(&out, "DIR")[0][..2], ["out", "2"]);
    let drops = rows(&out, "PORT");
    assert_eq!(drops.len(), 1, "{out}");
    assert_eq!(drops[0][0], "vm1");
    assert_eq!(drops[0][3], "1");
    let reason = drops[0][2].clone();
    assert!(
        header(&out, "LAYER").contains(&"LFT-HITS".to_string()),
        "{out}"
    );
    let j = ok_json(&h, &["stats", "vm1"]);
    assert_eq!(j["drops"][0]["reason"], reason);

    let out = ok(&h, &["stats"]);
    assert_eq!(
        header(&out, "PORT"),
        [
            "PORT",
            "PKTS-OUT",
            "PKTS-IN",
            "BYTES-OUT",
            "BYTES-IN",
            "FLOWS",
            "UFT-OUT",
            "UFT-IN",
            "DROPS"
        ]
    );
    let r = rows(&out, "PORT");
    assert_eq!(r[0][0], "vm1");
    assert_eq!(r[0][1], "2");
    assert_eq!(r[0][5], "1/4096");
    assert_eq!(r[0][8], "1");
    assert!(
        out.contains(&format!("vm1   {reason}  1")) || out.contains(&reason),
        "{out}"
    );
    assert_eq!(rows(&out, "WORKER").len(), 2, "{out}");
    assert!(
        out.contains("V2P 0/1000000 mappings, V2B 1/65536 routes"),
        "{out}"
    );
    let j = ok_json(&h, &["stats"]);
    assert_eq!(j["workers"].as_array().unwrap().len(), 2);

    assert_eq!(
        ok(&h, &["clear-uft", "vm1"]),
        "cleared the flow tables of port 'vm1'\n"
    );
    assert!(rows(&ok(&h, &["dump-uft", "vm1"]), "DIR").is_empty());

    // Trace: per layer, then the verdict and the tunnel that would leave.
    let out = ok(
        &h,
        &[
            "trace",
            "vm1",
            "--direction",
            "out",
            "--proto",
            "tcp",
            "--src",
            "10.0.0.5",
            "--dst",
            "1.1.1.1",
            "--dport",
            "443",
        ],
    );
    assert_eq!(
        header(&out, "LAYER"),
        ["LAYER", "MATCHED", "ACTION", "TRANSFORM"]
    );
    let steps: Vec<String> = rows(&out, "LAYER")
        .into_iter()
        .map(|r| r[0].clone())
        .collect();
    assert_eq!(
        steps,
        ["gateway", "firewall", "router", "nat", "overlay"],
        "{out}"
    );
    assert!(out.contains("\nverdict: forward\n"), "{out}");
    let output = out.lines().find(|l| l.starts_with("output:")).unwrap();
    assert!(
        output.contains("IPv6 fd00:99::a > fd00:99::100 UDP")
            && output.contains("Geneve VNI 7777")
            && output.contains("IPv4 203.0.113.10:")
            && output.ends_with(" > 1.1.1.1:443 TCP [S] seq 1000 len 0"),
        "{out}"
    );
    let input = out.lines().find(|l| l.starts_with("input:")).unwrap();
    assert!(
        input.contains("IPv4 10.0.0.5:40000 > 1.1.1.1:443 TCP [S]"),
        "{out}"
    );
    let nat = rows(&out, "LAYER")
        .into_iter()
        .find(|r| r[0] == "nat")
        .unwrap();
    assert_eq!(nat[1..3], ["rule", "2"], "{out}");
    assert!(nat.iter().any(|c| c == "ip.src=203.0.113.10"), "{out}");
    let j = ok_json(
        &h,
        &[
            "trace", "vm1", "--proto", "udp", "--src", "10.0.0.5", "--dst", "1.1.1.1", "--sport",
            "5353", "--dport", "53", "--len", "20",
        ],
    );
    assert_eq!(j["trace"]["verdict"], "forward");
    assert_eq!(j["trace"]["steps"].as_array().unwrap().len(), 5);
    let out = ok(
        &h,
        &[
            "trace",
            "vm1",
            "--direction",
            "in",
            "--proto",
            "tcp",
            "--src",
            "93.184.216.34",
            "--dst",
            "10.0.0.5",
            "--dport",
            "22",
            "--flags",
            "S",
        ],
    );
    assert!(out.contains("\nverdict: drop"), "{out}");
    assert!(out.contains("output:  -"), "{out}");
    // A whole frame as hex.
    let frame: String = syn(5, [10, 0, 0, 6], 22)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let out = ok(&h, &["trace", "vm1", "--frame", &frame]);
    assert!(out.contains("verdict:"), "{out}");

    // Capture: frames the guest sends while recording, to a pcap file.
    let sender = {
        let wire = wire.clone();
        std::thread::spawn(move || {
            for _ in 0..100 {
                wire.send(&syn(5, [10, 0, 0, 6], 22));
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        })
    };
    let file = tmp.path().join("vm1.pcap");
    let f = file.display().to_string();
    let out = ok(
        &h,
        &[
            "capture",
            "vm1",
            "--out",
            &f,
            "--packets",
            "3",
            "--seconds",
            "10",
        ],
    );
    assert_eq!(out, format!("captured 3 frame(s) of port 'vm1' to {f}\n"));
    let mut r = pcap_file::pcap::PcapReader::new(std::fs::File::open(&file).unwrap()).unwrap();
    let mut n = 0;
    while let Some(p) = r.next_packet() {
        let p = p.unwrap();
        assert_eq!(p.data.len(), 54);
        n += 1;
    }
    assert_eq!(n, 3);
    let j = ok_json(
        &h,
        &[
            "capture",
            "vm1",
            "--out",
            &f,
            "--packets",
            "1",
            "--seconds",
            "5",
        ],
    );
    assert_eq!(j["packets"], 1);
    sender.join().unwrap();
}

#[test]
fn dump_state_prints_the_state_document() {
    let tmp = TempDir::new("state");
    let h = host_with_vm1(&tmp);
    ok(
        &h,
        &[
            "set-v2p",
            "7777",
            "10.0.0.6",
            "a8:40:25:00:00:06",
            "fd00:99::b",
        ],
    );
    // JSON whatever --json says: it is replay's input.
    for args in [&["dump-state"][..], &["--json", "dump-state"][..]] {
        let out = ok(&h, args);
        let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(doc["version"], 1);
        assert_eq!(doc["underlay_ip"], "fd00:99::a");
        assert_eq!(doc["ports"][0]["config"]["name"], "vm1");
        assert_eq!(doc["v2p"].as_array().unwrap().len(), 1);
        let parsed = api::state::parse(std::path::Path::new("stdout"), out.as_bytes()).unwrap();
        assert_eq!(parsed, h.sluice.state());
    }
}

#[test]
fn every_verb_has_help_with_an_example() {
    let verbs = [
        "list-ports",
        "create-vnic",
        "delete-vnic",
        "list-layers",
        "dump-layer",
        "dump-uft",
        "clear-uft",
        "dump-tcp-flows",
        "list-fw-rules",
        "add-fw-rule",
        "rm-fw-rule",
        "set-fw-rules",
        "list-routes",
        "add-router-entry",
        "del-router-entry",
        "set-v2p",
        "clear-v2p",
        "dump-v2p",
        "set-v2b",
        "clear-v2b",
        "dump-v2b",
        "set-external-ips",
        "set-rate-limit",
        "allow-cidr",
        "remove-cidr",
        "attach-subnet",
        "detach-subnet",
        "stats",
        "capture",
        "trace",
        "dump-state",
        "replay",
    ];
    let top = sluiceadm(&["--help"], None);
    assert_eq!(top.code, 0);
    for v in verbs {
        assert!(
            top.stdout.contains(&format!("  {v} ")),
            "{v} missing from --help"
        );
        let r = sluiceadm(&[v, "--help"], None);
        assert_eq!(r.code, 0, "{v} --help: {r:?}");
        assert!(
            r.stdout.contains(&format!("  sluiceadm {v}")),
            "{v} --help has no example:\n{}",
            r.stdout
        );
    }
}
