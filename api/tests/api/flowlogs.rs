//! Flow logs end to end (issue 20): the simulated host of the demo (the
//! real control plane, workers and engine over in-memory guests) with
//! flow logs exporting IPFIX over UDP to a collector on loopback and JSON
//! lines to a file. Known flows are made, the ports' tables cleared (so
//! the flows end now), and what arrived at the collector is written to a
//! pcap that tshark's `cflow` dissector decodes: the flows, with the
//! right counts. As root, tshark also captures on the loopback (`tshark
//! -i lo -f "udp port N"`) and must decode the same records. Needs
//! tshark (skipped without it, failing when `CI` is set); without root
//! the live capture is left out, saying so.

use api::config::FlowLogsSection;
use api::flowlogs::FlowLogs;
use api::serve::SimHost;
use etherparse::PacketBuilder;
use serde_json::Value;
use std::net::UdpSocket;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

const GW_MAC: [u8; 6] = [0xa8, 0x40, 0x25, 0xff, 0xff, 0x01];

fn mac(last: u8) -> [u8; 6] {
    [0xa8, 0x40, 0x25, 0, 0, last]
}

/// tshark, or `None` after saying why; a CI run must have it.
fn tshark(test: &str) -> Option<()> {
    let ok = Command::new("tshark")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if ok {
        return Some(());
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{test} needs tshark and CI is set"
    );
    eprintln!("skipped: needs tshark (apt-get install tshark): {test}");
    None
}

fn ping(from: u8, to: u8, reply: bool, seq: u16) -> Vec<u8> {
    let mut v = Vec::new();
    let b = PacketBuilder::ethernet2(mac(from), GW_MAC).ipv4([10, 0, 0, from], [10, 0, 0, to], 64);
    if reply {
        b.icmpv4_echo_reply(7, seq)
            .write(&mut v, b"sluice")
            .unwrap();
    } else {
        b.icmpv4_echo_request(7, seq)
            .write(&mut v, b"sluice")
            .unwrap();
    }
    v
}

fn udp(from: u8, to: [u8; 4], sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ethernet2(mac(from), GW_MAC)
        .ipv4([10, 0, 0, from], to, 64)
        .udp(sport, dport)
        .write(&mut v, payload)
        .unwrap();
    v
}

fn wait_frames(w: &vmm_net::backend::Wire, n: usize) -> Vec<Vec<u8>> {
    let mut got = Vec::new();
    let end = std::time::Instant::now() + Duration::from_secs(5);
    while got.len() < n && std::time::Instant::now() < end {
        got.extend(w.take());
        std::thread::sleep(Duration::from_millis(2));
    }
    got
}

/// Datagrams as a pcap (Ethernet, IPv4, UDP to `port`), for tshark.
fn pcap(datagrams: &[Vec<u8>], port: u16) -> Vec<u8> {
    let mut f = Vec::new();
    for v in [0xa1b2_c3d4u32, 0x0004_0002, 0, 0, 65535, 1] {
        if v == 0x0004_0002 {
            f.extend_from_slice(&2u16.to_le_bytes());
            f.extend_from_slice(&4u16.to_le_bytes());
        } else {
            f.extend_from_slice(&v.to_le_bytes());
        }
    }
    for (i, d) in datagrams.iter().enumerate() {
        let mut p = Vec::new();
        PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4([127, 0, 0, 1], [127, 0, 0, 1], 64)
            .udp(40000, port)
            .write(&mut p, d)
            .unwrap();
        for v in [1_700_000_000 + i as u32, 0, p.len() as u32, p.len() as u32] {
            f.extend_from_slice(&v.to_le_bytes());
        }
        f.extend_from_slice(&p);
    }
    f
}

/// One decoded record: (src, dst, proto, [packets, reverse packets],
/// [octets, reverse octets]).
type Row = (String, String, String, [u64; 2], [u64; 2]);

/// tshark's `cflow` reading of a pcap of IPFIX to UDP `port`. The
/// reverse counts are RFC 5103's elements (PEN 29305), which tshark shows
/// under the same field names as the plain ones, right after them.
fn decoded(file: &std::path::Path, port: u16) -> Vec<Row> {
    let out = Command::new("tshark")
        .arg("-r")
        .arg(file)
        .args(["-d", &format!("udp.port=={port},cflow")])
        .args(["-T", "fields", "-E", "occurrence=a", "-E", "aggregator=;"])
        .args([
            "-e",
            "cflow.srcaddr",
            "-e",
            "cflow.dstaddr",
            "-e",
            "cflow.protocol",
        ])
        .args(["-e", "cflow.packets", "-e", "cflow.octets"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("tshark -r {}:\n{text}", file.display());
    let mut rows: Vec<Row> = Vec::new();
    for line in text.lines() {
        let cols: Vec<Vec<&str>> = line.split('\t').map(|c| c.split(';').collect()).collect();
        if cols.len() < 5 || cols[0] == [""] {
            continue;
        }
        let n = |c: &Vec<&str>, i: usize| c.get(i).and_then(|v| v.parse().ok()).unwrap_or(u64::MAX);
        for i in 0..cols[0].len() {
            rows.push((
                cols[0][i].to_string(),
                cols[1][i].to_string(),
                cols[2][i].to_string(),
                [n(&cols[3], 2 * i), n(&cols[3], 2 * i + 1)],
                [n(&cols[4], 2 * i), n(&cols[4], 2 * i + 1)],
            ));
        }
    }
    rows
}

/// `tshark -i lo -f "udp port N"` writing a capture, while the test runs.
struct Live {
    child: std::process::Child,
    file: std::path::PathBuf,
    port: u16,
}

impl Live {
    /// Started and capturing, when root; `None` (saying so) otherwise.
    fn start(file: std::path::PathBuf, port: u16) -> Option<Live> {
        let root = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| o.stdout == b"0\n");
        if !root {
            eprintln!("not root: no live capture on lo, the collector's datagrams only");
            return None;
        }
        let mut child = Command::new("tshark")
            .args(["-i", "lo", "-f", &format!("udp port {port}"), "-w"])
            .arg(&file)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // tshark says "Capturing on 'Loopback: lo'" once it captures.
        let err = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for l in std::io::BufReader::new(err).lines().map_while(Result::ok) {
                if l.contains("Capturing on") {
                    let _ = tx.send(());
                }
            }
        });
        rx.recv_timeout(Duration::from_secs(20))
            .expect("tshark started capturing on lo");
        Some(Live { child, file, port })
    }

    /// Stops the capture (SIGINT, as at a terminal) and decodes it.
    fn finish(mut self) -> Vec<Row> {
        std::thread::sleep(Duration::from_millis(500));
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
        decoded(&self.file, self.port)
    }
}

#[test]
fn ipfix_and_json_lines_show_the_flows_made() {
    let test = "ipfix_and_json_lines_show_the_flows_made";
    let Some(()) = tshark(test) else { return };
    let dir = crate::daemon::tmpdir("flowlogs");
    let collector = UdpSocket::bind("127.0.0.1:0").unwrap();
    collector
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let cport = collector.local_addr().unwrap().port();
    let json = dir.join("flows.jsonl");
    let live = Live::start(dir.join("live.pcap"), cport);
    let fl = Arc::new(
        FlowLogs::open(FlowLogsSection {
            ipfix_collector: Some(collector.local_addr().unwrap()),
            json_file: Some(json.clone()),
            ..FlowLogsSection::default()
        })
        .unwrap(),
    );
    let h = SimHost::start(None, 1).unwrap();
    h.sluice.with_flow_logs(fl.clone()).unwrap();
    api::demo::program(&h).unwrap();
    let (vm1, vm2) = (
        h.devices.wire("vm1").unwrap(),
        h.devices.wire("vm2").unwrap(),
    );

    // vm1 pings vm2 twice; vm2 answers both (one flow on each port).
    let mut ping_bytes = 0;
    for seq in 1..=2 {
        let p = ping(5, 6, false, seq);
        ping_bytes += p.len() as u64;
        vm1.send(&p);
        assert_eq!(wait_frames(&vm2, 1).len(), 1, "request {seq} reaches vm2");
        vm2.send(&ping(6, 5, true, seq));
        assert_eq!(wait_frames(&vm1, 1).len(), 1, "reply {seq} reaches vm1");
    }
    // vm1 sends three datagrams to the internet (SNAT, to the boundary).
    let mut dns_bytes = 0;
    for i in 0..3 {
        let d = udp(5, [93, 184, 216, 34], 5353, 53, &vec![b'q'; 10 + i]);
        dns_bytes += d.len() as u64;
        vm1.send(&d);
    }
    assert_eq!(wait_frames(&h.uplink, 3).len(), 3);
    // vm1 to vm2's port 9999: vm2's firewall denies it (a Denied record).
    let knock = udp(5, [10, 0, 0, 6], 4000, 9999, b"knock");
    let knock_bytes = knock.len() as u64;
    vm1.send(&knock);
    std::thread::sleep(Duration::from_millis(100));
    assert!(vm2.take().is_empty(), "denied by vm2's firewall");

    // The flows end now.
    h.sluice.clear_uft("vm1").unwrap();
    h.sluice.clear_uft("vm2").unwrap();
    assert_eq!(
        fl.drain(),
        5,
        "records: vm1 ping, dns, udp; vm2 ping, denied"
    );

    let mut datagrams = Vec::new();
    let mut buf = [0u8; 65536];
    while let Ok(n) = collector.recv(&mut buf) {
        assert!(n <= api::ipfix::MAX_MESSAGE);
        datagrams.push(buf[..n].to_vec());
    }
    assert!(!datagrams.is_empty(), "IPFIX arrived at the collector");
    let file = dir.join("ipfix.pcap");
    std::fs::write(&file, pcap(&datagrams, cport)).unwrap();

    let rows = decoded(&file, cport);
    if let Some(live) = live {
        // What tshark itself captured on the loopback: the same records.
        let mut live_rows = live.finish();
        let mut want = rows.clone();
        live_rows.sort();
        want.sort();
        assert_eq!(live_rows, want, "tshark -i lo saw what the collector got");
    }
    let find = |src: &str, dst: &str, proto: &str| -> Vec<&Row> {
        rows.iter()
            .filter(|r| r.0 == src && r.1 == dst && r.2 == proto)
            .collect()
    };
    assert_eq!(rows.len(), 5, "{rows:?}");
    // The ping, on vm1's port (opened outbound: the guest's requests
    // first) and on vm2's (opened inbound), two packets each way.
    let pings = find("10.0.0.5", "10.0.0.6", "1");
    assert_eq!(pings.len(), 2, "{rows:?}");
    let vm1_ping = pings
        .iter()
        .find(|r| r.4[0] == ping_bytes)
        .unwrap_or_else(|| panic!("vm1's ping record counts {ping_bytes} bytes out: {pings:?}"));
    assert_eq!(vm1_ping.3, [2, 2]);
    assert!(pings.iter().all(|r| r.3 == [2, 2]), "{pings:?}");
    let dns = find("10.0.0.5", "93.184.216.34", "17");
    assert_eq!(dns.len(), 1, "{rows:?}");
    assert_eq!((dns[0].3, dns[0].4), ([3, 0], [dns_bytes, 0]));
    // The datagram to vm2's port 9999: allowed out of vm1, denied into vm2.
    let knock = find("10.0.0.5", "10.0.0.6", "17");
    assert_eq!(knock.len(), 2, "{rows:?}");
    assert!(knock.iter().any(|r| r.4[0] == knock_bytes), "{knock:?}");
    assert!(knock.iter().all(|r| r.3 == [1, 0]), "{knock:?}");

    // The same records as JSON lines.
    let jsonl = std::fs::read_to_string(&json).unwrap();
    eprintln!("JSON lines:\n{jsonl}");
    let lines: Vec<Value> = jsonl
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 5);
    let dns = lines
        .iter()
        .find(|l| l["dst"] == "93.184.216.34")
        .expect("the DNS flow");
    assert_eq!(dns["port"], "vm1");
    assert_eq!(dns["packets"], 3);
    assert_eq!(dns["bytes"], dns_bytes);
    assert_eq!(dns["reason"], "cleared");
    assert_eq!(dns["nat"]["src"], "203.0.113.10");
    assert_eq!(dns["vni"], 7777);
    let denied = lines
        .iter()
        .find(|l| l["reason"] == "denied")
        .expect("the denied datagram");
    assert_eq!(
        (&denied["port"], &denied["dst_port"], &denied["decision"]),
        (
            &Value::from("vm2"),
            &Value::from(9999),
            &Value::from("deny")
        )
    );
    assert_eq!(denied["layer"], "firewall");
    let ping2 = lines
        .iter()
        .find(|l| l["port"] == "vm2" && l["proto"] == 1)
        .expect("vm2's ping");
    assert_eq!(
        (&ping2["packets"], &ping2["reverse_packets"]),
        (&Value::from(2), &Value::from(2))
    );
    assert_eq!(ping2["origin"], "in");

    // A deleted port's live flows end with it, and are logged.
    vm1.send(&ping(5, 6, false, 9));
    assert_eq!(wait_frames(&vm2, 1).len(), 1);
    h.sluice.delete_vnic("vm1").unwrap();
    assert_eq!(fl.drain(), 1, "vm1's last flow");
    let jsonl = std::fs::read_to_string(&json).unwrap();
    let last: Value = serde_json::from_str(jsonl.lines().last().unwrap()).unwrap();
    assert_eq!(
        (&last["port"], &last["reason"]),
        (&Value::from("vm1"), &Value::from("cleared"))
    );
    assert_eq!(last["packets"], 1);

    let m = fl.metrics();
    // vm1: ping, DNS, the datagram to vm2, the flow ended by the delete
    // (its counters stay after the port is gone); vm2: ping, denied.
    for want in [
        "sluice_flow_log_records_total{port=\"vm1\"} 4",
        "sluice_flow_log_records_total{port=\"vm2\"} 2",
        "sluice_flow_log_dropped_total{port=\"vm2\",reason=\"rate_limited\"} 0",
        "sluice_flow_log_exported_total 6",
    ] {
        assert!(m.contains(want), "{want} not in\n{m}");
    }
    assert!(m.contains("sluice_flow_log_export_errors_total 0"), "{m}");
    drop(h);
    std::fs::remove_dir_all(&dir).unwrap();
}
