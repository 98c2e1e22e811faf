//! `sluiceadm top` against a real `sluiced` carrying real traffic: two
//! TAP guests in network namespaces of their own (`sltop-*`), vm1
//! sending iperf3 TCP at 50 Mbit/s to vm2 on the same host. `--once
//! --json` must report that rate; under `tmux`, as a person would see it,
//! the view shows the ports with non-zero rates, its sort keys reorder
//! them, and `q` exits with the terminal put back (canonical mode, echo,
//! the screen as it was).
//!
//! Needs root (TAPs, namespaces), iperf3 and python3 (the denied UDP);
//! the tmux test needs tmux (`scripts/test.sh` installs all three).
//! Each says "skipped: ..." without them, and fails instead when CI is set.

use crate::daemon::{real_host, Daemon};
use serde_json::{json, Value};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SLUICEADM: &str = env!("CARGO_BIN_EXE_sluiceadm");

/// Says why the test cannot run, or fails when CI is set.
fn skip(test: &str, why: &str) {
    assert!(
        std::env::var_os("CI").is_none(),
        "{test}: {why}, and CI is set"
    );
    eprintln!("skipped: {why}: {test}");
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout == b"0\n")
        && Path::new("/dev/net/tun").exists()
}

fn ip(args: &[&str]) {
    let ok = Command::new("ip").args(args).status().unwrap().success();
    assert!(ok, "ip {}", args.join(" "));
}

/// A namespace `sltop-<tag><n>-<pid>`, deleted when dropped; `n` counts
/// the namespaces made, so a test starting while the last one's are
/// being deleted never has its own deleted by name.
struct Netns(String);

static NAMESPACES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

impl Netns {
    fn new(tag: &str) -> Netns {
        let i = NAMESPACES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let n = format!("sltop-{tag}{i}-{}", std::process::id());
        let _ = Command::new("ip")
            .args(["netns", "del", &n])
            .stderr(Stdio::null())
            .status();
        ip(&["netns", "add", &n]);
        ip(&["-n", &n, "link", "set", "lo", "up"]);
        Netns(n)
    }

    fn path(&self) -> String {
        format!("/run/netns/{}", self.0)
    }

    fn spawn(&self, args: &[&str]) -> Child {
        Command::new("ip")
            .args(["netns", "exec", &self.0])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// Killed and reaped when dropped (`ip netns exec` execs its command, so
/// the pid is the tool's own).
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The host: sluiced with vm1 (10.0.0.5) and vm2 (10.0.0.6) on TAPs in
/// their namespaces, V2P to this host, vm2 open to iperf3. Fields drop
/// in order: the traffic, then the daemon (deleting its ports and TAPs),
/// then the namespaces.
struct Host {
    traffic: Vec<Proc>,
    d: Daemon,
    ns: [Netns; 2],
}

fn vm(name: &str, last: u8, ns: &Netns) -> Value {
    json!({
        "config": {
            "name": name,
            "guest_mac": format!("a8:40:25:00:00:{last:02x}"),
            "gateway_mac": "a8:40:25:ff:ff:01",
            "vni": 7777,
            "ipv4": { "addr": format!("10.0.0.{last}"), "subnet": "10.0.0.0/24", "gateway": "10.0.0.1" },
            "routes": [{ "dest": "0.0.0.0/0", "target": "internet_gateway", "class": "system" }],
            "limits": { "flows": 4096 }
        },
        "guest": { "kind": "tap", "name": format!("sltop{last}"), "netns": ns.path() }
    })
}

impl Host {
    /// `None` (having said why) when root or iperf3 is missing.
    fn start(test: &str) -> Option<Host> {
        if !is_root() {
            skip(test, "needs root (TAP devices, network namespaces)");
            return None;
        }
        for tool in ["iperf3", "python3"] {
            if !have(tool) {
                skip(test, &format!("{tool} missing"));
                return None;
            }
        }
        let d = real_host(test)?;
        let ns = [Netns::new("a"), Netns::new("b")];
        let c = &d.client;
        for (name, last, n) in [("vm1", 5u8, &ns[0]), ("vm2", 6, &ns[1])] {
            c.ok("POST", "/ports", Some(vm(name, last, n)));
            let tap = format!("sltop{last}");
            let mac = format!("a8:40:25:00:00:{last:02x}");
            let addr = format!("10.0.0.{last}/24");
            ip(&["-n", &n.0, "link", "set", &tap, "address", &mac]);
            ip(&["-n", &n.0, "addr", "add", &addr, "dev", &tap]);
            ip(&["-n", &n.0, "link", "set", &tap, "up"]);
        }
        let mapping = |last: u8| {
            json!({ "vni": 7777, "ip": format!("10.0.0.{last}"),
                    "guest_mac": format!("a8:40:25:00:00:{last:02x}"), "host": "fd00:99::a" })
        };
        c.ok(
            "PUT",
            "/v2p",
            Some(json!({ "mappings": [mapping(5), mapping(6)] })),
        );
        c.ok(
            "POST",
            "/ports/vm2/firewall",
            Some(
                json!({ "direction": "in", "priority": 10, "action": "allow",
                          "protocol": "tcp", "ports": { "list": [5201] } }),
            ),
        );
        Some(Host {
            traffic: Vec::new(),
            d,
            ns,
        })
    }

    /// vm1 sends iperf3 TCP to vm2 at 50 Mbit/s for `secs` seconds; waits
    /// until the flow shows in vm1's UFT.
    fn traffic(&mut self, secs: u32) {
        let server = self.ns[1].spawn(&["iperf3", "-s", "-1"]);
        self.traffic.push(Proc(server));
        std::thread::sleep(Duration::from_millis(500));
        let t = secs.to_string();
        let client = self.ns[0].spawn(&[
            "iperf3",
            "-c",
            "10.0.0.6",
            "-t",
            &t,
            "-b",
            "50M",
            "--connect-timeout",
            "3000",
        ]);
        self.traffic.push(Proc(client));
        // And UDP to a port vm2's firewall does not open: 100 a second
        // (at most `secs` seconds' worth), dropped inbound at vm2.
        let n = (secs * 100).to_string();
        let denied = self.ns[0].spawn(&[
            "python3",
            "-c",
            "import socket, sys, time\n\
             s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
             for _ in range(int(sys.argv[1])):\n    \
                 s.sendto(b'x' * 64, ('10.0.0.6', 9999)); time.sleep(0.01)\n",
            &n,
        ]);
        self.traffic.push(Proc(denied));
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let uft = self.d.client.ok("GET", "/ports/vm1/uft", None);
            let busy = uft["outbound"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["key"]["dst_port"] == 5201 && e["packets"].as_u64() > Some(100));
            if busy {
                break;
            }
            assert!(Instant::now() < deadline, "no iperf3 flow on vm1: {uft}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn adm(&self) -> Vec<String> {
        vec![
            "--url".into(),
            self.d.client.base.clone(),
            "--token".into(),
            self.d.client.token.clone().unwrap_or_default(),
        ]
    }
}

fn port<'a>(v: &'a Value, name: &str) -> &'a Value {
    v["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("no port {name} in {v}"))
}

#[test]
fn top_once_json_reports_the_rates_of_real_traffic() {
    let test = "top_once_json_reports_the_rates_of_real_traffic";
    let Some(mut h) = Host::start(test) else {
        return;
    };
    h.traffic(8);
    let mut args = h.adm();
    args.extend(["--json", "top", "--once", "--interval", "2"].map(String::from));
    let out = Command::new(SLUICEADM).args(&args).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let interval = v["interval_s"].as_f64().unwrap();
    // The interval, and the time the first snapshot's UFT dumps took.
    assert!((2.0..5.0).contains(&interval), "{v}");
    // 50 Mbit/s is 6.25 MB/s of TCP payload; frames add their headers,
    // and iperf3 paces in bursts, so a wide band: what it rules out is a
    // rate not divided by the interval, or one direction for the other.
    let vm1 = port(&v, "vm1");
    let out_bps = vm1["bytes_out_per_s"].as_f64().unwrap();
    assert!(
        (3.0e6..12.0e6).contains(&out_bps),
        "vm1 out {out_bps} B/s: {v}"
    );
    assert!(
        vm1["bytes_in_per_s"].as_f64().unwrap() < out_bps / 10.0,
        "{v}"
    );
    assert!(vm1["packets_out_per_s"].as_f64().unwrap() > 10.0, "{v}");
    assert!(
        vm1["packets_in_per_s"].as_f64().unwrap() > 10.0,
        "ACKs: {v}"
    );
    let vm2 = port(&v, "vm2");
    let in_bps = vm2["bytes_in_per_s"].as_f64().unwrap();
    assert!(
        (3.0e6..12.0e6).contains(&in_bps),
        "vm2 in {in_bps} B/s: {v}"
    );
    assert!(vm2["flows"].as_u64().unwrap() >= 1, "{v}");
    // The busiest flow is the iperf3 data connection, on one port or the
    // other, at the port's rate.
    let f = &v["flows"][0];
    assert!(f["key"].as_str().unwrap().contains(":5201"), "{v}");
    let f_bps = f["bytes_out_per_s"].as_f64().unwrap() + f["bytes_in_per_s"].as_f64().unwrap();
    assert!(f_bps > out_bps * 0.8, "busiest flow {f_bps} B/s: {v}");
    // The denied UDP: about 100 a second, by vm2's firewall (its
    // inbound default).
    let denied = v["drops"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["at"] == "vm2" && d["layer"] == "firewall")
        .unwrap_or_else(|| panic!("no firewall drops at vm2: {v}"));
    assert_eq!(denied["reason"], "default_denied", "{v}");
    let per_s = denied["per_s"].as_f64().unwrap();
    assert!((20.0..=110.0).contains(&per_s), "{per_s} drops/s: {v}");
    // Two workers, one port each, doing some work.
    let workers = v["workers"].as_array().unwrap();
    assert_eq!(workers.len(), 2, "{v}");
    assert!(
        workers
            .iter()
            .all(|w| (0.0..=1.0).contains(&w["busy_ratio"].as_f64().unwrap())),
        "{v}"
    );
    assert!(
        workers
            .iter()
            .any(|w| w["busy_ratio"].as_f64().unwrap() > 0.0),
        "{v}"
    );
    // The busy and idle time behind the ratio are in /metrics.
    let metrics = ureq::get(&format!("{}/metrics", h.d.client.base))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    for family in [
        "sluice_worker_busy_seconds_total{worker=\"0\"}",
        "sluice_worker_idle_seconds_total{worker=\"1\"}",
    ] {
        assert!(metrics.contains(family), "{family} in\n{metrics}");
    }
}

/// A tmux session running a shell, killed when dropped.
struct Tmux(String);

impl Tmux {
    fn new(tag: &str) -> Tmux {
        let name = format!("sltop-{tag}-{}", std::process::id());
        let ok = Command::new("tmux")
            .args([
                "new-session",
                "-d",
                "-s",
                &name,
                "-x",
                "150",
                "-y",
                "45",
                "sh",
            ])
            .env_remove("TMUX")
            .status()
            .unwrap()
            .success();
        assert!(ok, "tmux new-session");
        Tmux(name)
    }

    fn send(&self, keys: &[&str]) {
        let ok = Command::new("tmux")
            .args(["send-keys", "-t", &self.0])
            .args(keys)
            .status()
            .unwrap()
            .success();
        assert!(ok, "tmux send-keys {keys:?}");
    }

    fn screen(&self) -> String {
        let out = Command::new("tmux")
            .args(["capture-pane", "-p", "-t", &self.0])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Waits (10 s at most) for the screen to satisfy `cond`.
    fn wait_for(&self, what: &str, cond: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let s = self.screen();
            if cond(&s) {
                return s;
            }
            assert!(Instant::now() < deadline, "{what}; the screen:\n{s}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["kill-session", "-t", &self.0])
            .status();
    }
}
/// The shell line that runs top, then prints its exit status and
/// whether the terminal is back in canonical mode with echo (stty prints
/// `-icanon`, `-echo` when not). The markers are split by quotes so the
/// typed line itself does not contain them.
fn top_command(args: &str) -> String {
    format!(
        "clear; {SLUICEADM} {args} top --interval 0.5; \
         echo top-exi''ted=$? mo''des: $(stty -a | tr ' ' '\\n' | grep -x -e -icanon -e icanon -e -echo -e echo | tr '\\n' ' ')"
    )
}

/// Waits for top to exit; checks it exited 0 and put the terminal back.
fn exited_and_restored(t: &Tmux) {
    let s = t.wait_for("top exited", |s| s.contains("top-exited="));
    let line = s
        .lines()
        .find(|l| l.starts_with("top-exited="))
        .unwrap_or_default();
    assert!(line.starts_with("top-exited=0 "), "{s}");
    assert!(!s.contains("sluiceadm top - "), "the view is gone: {s}");
    let modes: Vec<&str> = line.split_whitespace().skip(2).collect();
    assert!(
        modes.contains(&"icanon") && modes.contains(&"echo"),
        "terminal modes after top: {modes:?}\n{s}"
    );
}

/// The pid of the `sluiceadm` the pane's shell runs.
fn top_pid(t: &Tmux) -> String {
    let out = Command::new("tmux")
        .args(["display-message", "-p", "-t", &t.0, "#{pane_pid}"])
        .output()
        .unwrap();
    let shell = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let children =
        std::fs::read_to_string(format!("/proc/{shell}/task/{shell}/children")).unwrap_or_default();
    children
        .split_whitespace()
        .find(|c| {
            std::fs::read_to_string(format!("/proc/{c}/comm"))
                .is_ok_and(|n| n.trim() == "sluiceadm")
        })
        .unwrap_or_else(|| panic!("no sluiceadm among the shell's children {children:?}"))
        .to_string()
}

/// The port rows of the screen, in order, with their columns.
fn port_rows(screen: &str) -> Vec<Vec<String>> {
    screen
        .lines()
        .skip_while(|l| !l.starts_with("PORT"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .map(|l| l.split_whitespace().map(String::from).collect())
        .collect()
}

/// vm2's firewall drops row: `vm2 firewall default_denied RATE`.
fn drop_row(screen: &str) -> Option<Vec<String>> {
    screen
        .lines()
        .map(|l| l.split_whitespace().map(String::from).collect::<Vec<_>>())
        .find(|r| r.len() == 4 && r[0] == "vm2" && r[1] == "firewall" && r[2] == "default_denied")
}

fn order(screen: &str) -> Vec<String> {
    port_rows(screen)
        .into_iter()
        .map(|r| r[0].clone())
        .collect()
}

#[test]
fn top_under_tmux_shows_rates_sorts_on_keys_and_quits_on_q() {
    let test = "top_under_tmux_shows_rates_sorts_on_keys_and_quits_on_q";
    if !have("tmux") {
        return skip(test, "tmux missing");
    }
    let Some(mut h) = Host::start(test) else {
        return;
    };
    h.traffic(15);
    let t = Tmux::new("person");
    let args = h.adm().join(" ");
    t.send(&[&top_command(&args), "Enter"]);
    // The view, with both ports, vm1 sending (a non-zero PKT/S OUT) and
    // vm2's firewall dropping the UDP.
    let s = t.wait_for("the live view with vm1 sending", |s| {
        port_rows(s)
            .iter()
            .any(|r| r[0] == "vm1" && r.len() > 2 && r[2] != "0")
            && order(s).len() == 2
            && drop_row(s).is_some()
    });
    assert!(s.contains("sluiceadm top - "), "{s}");
    assert!(s.contains("q:quit"), "the help line: {s}");
    assert!(s.contains("[b:bytes]"), "sorted by bytes at first: {s}");
    assert!(
        s.contains(":5201"),
        "the iperf3 flow among the busiest: {s}"
    );
    assert!(s.contains("WORKERS busy: w0"), "{s}");
    let drops = drop_row(&s).unwrap();
    assert_ne!(drops.last().map(String::as_str), Some("0"), "{s}");
    // Sort by name: vm1 then vm2, the help line says so.
    t.send(&["n"]);
    let s = t.wait_for("sorted by name", |s| s.contains("[n:name]"));
    assert_eq!(order(&s), ["vm1", "vm2"], "{s}");
    assert!(s.contains("PORT*"), "the sorted column is marked: {s}");
    // Reversed: vm2 first.
    t.send(&["r"]);
    let s = t.wait_for("reversed", |s| s.contains("[n:name reversed]"));
    assert_eq!(order(&s), ["vm2", "vm1"], "{s}");
    // By drops (only vm2 has any), then quit.
    t.send(&["d"]);
    let s = t.wait_for("sorted by drops", |s| s.contains("[d:drops]"));
    assert_eq!(order(&s), ["vm2", "vm1"], "{s}");
    t.send(&["q"]);
    exited_and_restored(&t);
    // Again, stopped by SIGTERM this time: the terminal is put back too.
    t.send(&[&top_command(&args), "Enter"]);
    t.wait_for("the live view again", |s| s.contains("q:quit"));
    let pid = top_pid(&t);
    let ok = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -TERM {pid}");
    exited_and_restored(&t);
}
