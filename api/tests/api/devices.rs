//! Guest devices and names (issue 17): a device is identified by what it
//! is, not by how its path is spelled; names that would be path segments
//! with a meaning, and TAP names the kernel would rename or refuse, are
//! refused with the reason; a guest device missing at start leaves its
//! port failed (and retried), never the daemon down.

use crate::endpoints::{setup, vm};
use serde_json::{json, Value};
use std::process::Command;

/// Root, or `None` after saying why; a CI run must have it.
fn root(test: &str) -> Option<()> {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout == b"0\n")
        .unwrap_or(false);
    if root && std::path::Path::new("/dev/net/tun").exists() {
        return Some(());
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{test} needs root (network namespaces and TAPs) and CI is set"
    );
    eprintln!("skipped: needs root (network namespaces and TAPs): {test}");
    None
}

/// A network namespace made for a test (`ip netns add`), deleted with it.
struct Netns(String);

impl Netns {
    fn new(tag: &str) -> Netns {
        let n = format!("sluice-{tag}-{}", std::process::id());
        let _ = Command::new("ip")
            .args(["netns", "del", &n])
            .stderr(std::process::Stdio::null())
            .status();
        let ok = Command::new("ip")
            .args(["netns", "add", &n])
            .status()
            .unwrap()
            .success();
        assert!(ok, "ip netns add {n}");
        Netns(n)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// Port `name` in VNI `vni` (its own MAC and address) on `guest`.
fn port_on(name: &str, vni: u32, last: u8, guest: Value) -> Value {
    let mut p = vm(name, last);
    p["config"]["vni"] = json!(vni);
    p["guest"] = guest;
    p
}

#[test]
fn one_tap_spelled_three_ways_is_one_device() {
    let Some(()) = root("one_tap_spelled_three_ways_is_one_device") else {
        return;
    };
    let Some(d) = crate::daemon::real_host("one_tap_spelled_three_ways") else {
        return;
    };
    let ns = Netns::new("devid");
    let c = &d.client;
    let tap = |path: String| json!({ "kind": "tap", "name": "sl-shared", "netns": path });
    c.ok(
        "POST",
        "/ports",
        Some(port_on("a", 100, 5, tap(format!("/run/netns/{}", ns.0)))),
    );
    for (i, spelling) in [
        format!("/var/run/netns/{}", ns.0),
        format!("/run/netns/../netns/{}", ns.0),
        format!("/run/netns/./{}", ns.0),
    ]
    .into_iter()
    .enumerate()
    {
        let r = c.post(
            "/ports",
            port_on(
                &format!("b{i}"),
                101 + i as u32,
                6 + i as u8,
                tap(spelling.clone()),
            ),
        );
        assert_eq!(r.status, 409, "{spelling}: {}", r.body);
        assert!(
            r.message().contains("port 'a' uses the same guest device"),
            "{spelling}: {}",
            r.message()
        );
    }
    // Another TAP in that namespace is another device.
    let other =
        json!({ "kind": "tap", "name": "sl-other", "netns": format!("/var/run/netns/{}", ns.0) });
    c.ok("POST", "/ports", Some(port_on("c", 102, 9, other)));
    assert_eq!(c.ok("GET", "/ports", None).as_array().unwrap().len(), 2);
    // The ports go (and their TAPs) before the namespace does.
    drop(d);
}

#[test]
fn one_socket_spelled_two_ways_is_one_device() {
    let (_h, c) = setup();
    let dir = std::env::temp_dir().join(format!("sluice-sock-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    let sock = |p: &str| json!({ "kind": "vhost_user", "socket": dir.join(p) });
    c.ok(
        "POST",
        "/ports",
        Some(port_on("a", 100, 5, sock("vm.sock"))),
    );
    let r = c.post("/ports", port_on("b", 101, 6, sock("sub/../vm.sock")));
    assert_eq!(r.status, 409, "{}", r.body);
    assert!(r.message().contains("same guest device"), "{}", r.message());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn port_names_that_are_path_segments_are_refused() {
    let (_h, c) = setup();
    for name in [".", ".."] {
        let r = c.post("/ports", vm(name, 5));
        assert_eq!(r.status, 400, "{name}: {}", r.body);
        assert!(
            r.message().contains("config.name") && r.message().contains("path segment"),
            "{name}: {}",
            r.message()
        );
    }
    assert_eq!(c.ok("GET", "/ports", None).as_array().unwrap().len(), 0);
}

#[test]
fn sluiceadm_clear_uft_dot_touches_no_other_port() {
    let (h, c) = setup();
    let dir = std::env::temp_dir().join(format!("sluice-adm-dot-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let token = dir.join("token");
    std::fs::write(&token, &h.token).unwrap();
    // `/ports/./uft` is `/ports/uft` to a URL parser: the port "uft".
    c.ok("POST", "/ports", Some(vm("uft", 5)));
    for args in [
        ["clear-uft", "."],
        ["clear-uft", ".."],
        ["delete-vnic", "."],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_sluiceadm"))
            .arg("--url")
            .arg(h.url())
            .arg("--token-file")
            .arg(&token)
            .args(args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} refused: {err}");
        assert!(err.contains("path segment"), "{args:?}: {err}");
    }
    let ports = c.ok("GET", "/ports", None);
    assert_eq!(ports[0]["name"], "uft", "the port 'uft' is still there");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn tap_names_the_kernel_would_rename_or_refuse_are_refused() {
    let (_h, c) = setup();
    for (name, says) in [
        ("x%d", "template"),
        ("tap%", "template"),
        ("a:b", "':'"),
        ("a/b", "'/'"),
        ("a b", "white space"),
        ("a\nb", "white space"),
        (".", "path segment"),
        ("..", "path segment"),
        ("", "1 to 15"),
        ("tap-0123456789ab", "1 to 15"),
    ] {
        let mut p = vm("vm1", 5);
        p["guest"] = json!({ "kind": "tap", "name": name });
        let r = c.post("/ports", p);
        assert_eq!(r.status, 400, "{name:?}: {}", r.body);
        assert!(
            r.message().contains("guest.name") && r.message().contains(says),
            "{name:?}: {}",
            r.message()
        );
    }
    assert_eq!(c.ok("GET", "/ports", None).as_array().unwrap().len(), 0);
}

/// `GET /ports`, the port named `name`.
fn listed(c: &crate::client::Client, name: &str) -> Value {
    let ports = c.ok("GET", "/ports", None);
    ports
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("no port {name} in {ports}"))
}

fn metrics(c: &crate::client::Client) -> String {
    match c.get("/metrics").body {
        Value::String(s) => s,
        other => other.to_string(),
    }
}

#[test]
fn a_guest_namespace_missing_at_start_fails_that_port_only_until_it_is_back() {
    let test = "a_guest_namespace_missing_at_start_fails_that_port_only_until_it_is_back";
    let Some(()) = root(test) else { return };
    let dir = crate::daemon::tmpdir("guest-failed");
    let port = crate::daemon::free_port();
    let ns = Netns::new("gone");
    let ns_name = ns.0.clone();
    let ns_path = format!("/run/netns/{ns_name}");
    let d = crate::daemon::start(&dir, port);
    let lost = json!({ "kind": "tap", "name": "sl-lost", "netns": ns_path });
    d.client
        .ok("POST", "/ports", Some(port_on("lost", 100, 5, lost)));
    let kept = json!({ "kind": "tap", "name": "sl-kept" });
    d.client
        .ok("POST", "/ports", Some(port_on("kept", 101, 6, kept)));
    // The daemon stops (SIGKILL), the namespace goes with its TAP.
    drop(d);
    drop(ns);
    let d = crate::daemon::start(&dir, port);
    let c = &d.client;
    let p = listed(c, "lost");
    assert_eq!(p["state"], "guest_failed", "{p}");
    let why = p["guest_error"].as_str().unwrap_or_default();
    assert!(why.contains("sl-lost") && why.contains(&ns_path), "{p}");
    assert_eq!(listed(c, "kept")["state"], "up");
    let m = metrics(c);
    assert!(
        m.contains("sluice_port_guest_failed{port=\"lost\"} 1")
            && m.contains("sluice_port_guest_failed{port=\"kept\"} 0"),
        "{m}"
    );
    let stats = c.ok("GET", "/stats", None);
    let sp = stats["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "lost")
        .cloned()
        .unwrap();
    assert!(sp["guest_error"].as_str().is_some(), "{sp}");
    let out = Command::new(env!("CARGO_BIN_EXE_sluiceadm"))
        .arg("--url")
        .arg(&c.base)
        .arg("list-ports")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("STATE") && text.contains("guest-failed") && text.contains(&ns_path),
        "{text}"
    );
    // The namespace is back: the retry opens the TAP in it.
    let ns = Netns::new("gone");
    assert_eq!(ns.0, ns_name);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while listed(c, "lost")["state"] != "up" {
        assert!(
            std::time::Instant::now() < deadline,
            "the port did not recover: {}",
            listed(c, "lost")
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert!(metrics(c).contains("sluice_port_guest_failed{port=\"lost\"} 0"));
    let link = Command::new("ip")
        .args(["-n", &ns_name, "link", "show", "sl-lost"])
        .output()
        .unwrap();
    assert!(link.status.success(), "the TAP is back in {ns_name}");
    for n in ["lost", "kept"] {
        c.ok("DELETE", &format!("/ports/{n}"), None);
    }
    drop(d);
    drop(ns);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_saved_state_with_two_ports_on_one_device_starts_with_the_second_failed() {
    // What a sluiced that compared paths as text could have saved.
    let dir = std::env::temp_dir().join(format!("sluice-shared-dev-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    let sock = |p: &str| json!({ "kind": "vhost_user", "socket": dir.join(p) });
    let mut state = {
        let h = api::serve::SimHost::start(Some(&dir.join("state")), 1).unwrap();
        let c = crate::client::Client::new(h.url(), &h.token);
        c.ok(
            "POST",
            "/ports",
            Some(port_on("a", 100, 5, sock("vm.sock"))),
        );
        c.ok("GET", "/state", None)
    };
    state["ports"]
        .as_array_mut()
        .unwrap()
        .push(port_on("b", 101, 6, sock("sub/../vm.sock")));
    std::fs::write(dir.join("state/state.json"), state.to_string()).unwrap();
    let h = api::serve::SimHost::start(Some(&dir.join("state")), 1).expect("starts");
    let c = crate::client::Client::new(h.url(), &h.token);
    assert_eq!(listed(&c, "a")["state"], "up");
    let b = listed(&c, "b");
    assert_eq!(b["state"], "guest_failed", "{b}");
    assert!(
        b["guest_error"]
            .as_str()
            .unwrap_or_default()
            .contains("port 'a' uses the same guest device"),
        "{b}"
    );
    // Retrying does not hand it the device either.
    h.sluice.retry_failed_guests();
    assert_eq!(listed(&c, "b")["state"], "guest_failed");
    // Once 'a' is gone, it is b's.
    c.ok("DELETE", "/ports/a", None);
    assert_eq!(h.sluice.retry_failed_guests(), 0);
    assert_eq!(listed(&c, "b")["state"], "up");
    drop(h);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_socket_directory_missing_at_start_fails_that_port_only_until_it_is_back() {
    // vhost-user needs no root: this runs everywhere.
    let dir = crate::daemon::tmpdir("sock-failed");
    let socks = dir.join("vms");
    std::fs::create_dir_all(&socks).unwrap();
    let port = crate::daemon::free_port();
    let d = crate::daemon::start(&dir, port);
    let sock = json!({ "kind": "vhost_user", "socket": socks.join("vm1.sock") });
    d.client
        .ok("POST", "/ports", Some(port_on("lost", 100, 5, sock)));
    let mut kept = vm("kept", 6);
    kept["config"]["vni"] = json!(101);
    kept["guest"] = json!({ "kind": "none" });
    d.client.ok("POST", "/ports", Some(kept));
    drop(d);
    std::fs::remove_dir_all(&socks).unwrap();
    let d = crate::daemon::start(&dir, port);
    let c = &d.client;
    let p = listed(c, "lost");
    assert_eq!(p["state"], "guest_failed", "{p}");
    assert!(
        p["guest_error"]
            .as_str()
            .unwrap_or_default()
            .contains(&*socks.to_string_lossy()),
        "{p}"
    );
    assert_eq!(listed(c, "kept")["state"], "up");
    assert!(metrics(c).contains("sluice_port_guest_failed{port=\"lost\"} 1"));
    std::fs::create_dir_all(&socks).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while listed(c, "lost")["state"] != "up" {
        assert!(
            std::time::Instant::now() < deadline,
            "the port did not recover: {}",
            listed(c, "lost")
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert!(metrics(c).contains("sluice_port_guest_failed{port=\"lost\"} 0"));
    use std::os::unix::fs::FileTypeExt;
    let m = std::fs::symlink_metadata(socks.join("vm1.sock")).unwrap();
    assert!(m.file_type().is_socket(), "sluiced listens on it again");
    drop(d);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_guest_namespace_deleted_while_running_fails_that_port_until_it_is_back() {
    let test = "a_guest_namespace_deleted_while_running_fails_that_port_until_it_is_back";
    let Some(()) = root(test) else { return };
    let dir = crate::daemon::tmpdir("guest-lost");
    let port = crate::daemon::free_port();
    let ns = Netns::new("lost");
    let ns_name = ns.0.clone();
    let ns_path = format!("/run/netns/{ns_name}");
    let d = crate::daemon::start(&dir, port);
    let c = &d.client;
    let lost = json!({ "kind": "tap", "name": "sl-gone", "netns": ns_path });
    c.ok("POST", "/ports", Some(port_on("lost", 100, 5, lost)));
    let kept = json!({ "kind": "tap", "name": "sl-stay" });
    c.ok("POST", "/ports", Some(port_on("kept", 101, 6, kept)));
    assert_eq!(listed(c, "lost")["state"], "up");
    // The guest's namespace goes while sluiced runs (and holds its TAP).
    drop(ns);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while listed(c, "lost")["state"] != "guest_failed" {
        assert!(
            std::time::Instant::now() < deadline,
            "the port still looks up: {}",
            listed(c, "lost")
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let p = listed(c, "lost");
    let why = p["guest_error"].as_str().unwrap_or_default();
    assert!(why.contains("sl-gone") && why.contains(&ns_path), "{p}");
    assert_eq!(listed(c, "kept")["state"], "up");
    assert!(metrics(c).contains("sluice_port_guest_failed{port=\"lost\"} 1"));
    // The namespace is back: the retry makes the TAP in it again.
    let ns = Netns::new("lost");
    assert_eq!(ns.0, ns_name);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while listed(c, "lost")["state"] != "up" {
        assert!(
            std::time::Instant::now() < deadline,
            "the port did not recover: {}",
            listed(c, "lost")
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let link = Command::new("ip")
        .args(["-n", &ns_name, "link", "show", "sl-gone"])
        .output()
        .unwrap();
    assert!(link.status.success(), "the TAP is back in {ns_name}");
    // The TAP in sluiced's own namespace was never touched.
    assert_eq!(listed(c, "kept")["state"], "up");
    for n in ["lost", "kept"] {
        c.ok("DELETE", &format!("/ports/{n}"), None);
    }
    drop(d);
    drop(ns);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_guest_device_lost_while_running_fails_that_port_until_it_is_back() {
    let (h, c) = setup();
    c.ok("POST", "/ports", Some(vm("vm1", 5)));
    c.ok("POST", "/ports", Some(vm("vm2", 6)));
    assert!(h.sluice.check_guests().is_empty(), "nothing is lost yet");
    h.devices.set_gone("vm1", true);
    assert_eq!(h.sluice.check_guests(), vec!["vm1".to_string()]);
    let p = listed(&c, "vm1");
    assert_eq!(p["state"], "guest_failed", "{p}");
    assert!(
        p["guest_error"]
            .as_str()
            .unwrap_or_default()
            .contains("lost while running"),
        "{p}"
    );
    assert_eq!(listed(&c, "vm2")["state"], "up");
    assert!(metrics(&c).contains("sluice_port_guest_failed{port=\"vm1\"} 1"));
    // Marked once; retried while gone, it stays failed.
    assert!(h.sluice.check_guests().is_empty());
    assert_eq!(h.sluice.retry_failed_guests(), 1);
    assert_eq!(listed(&c, "vm1")["state"], "guest_failed");
    // Back: the retry moves the port onto it.
    h.devices.set_gone("vm1", false);
    assert_eq!(h.sluice.retry_failed_guests(), 0);
    assert_eq!(listed(&c, "vm1")["state"], "up");
    // Deleting a port lost and back removes it as usual.
    c.ok("DELETE", "/ports/vm1", None);
    assert!(h.devices.wire("vm1").is_none());
}

/// Accepts the next connection on `l` within 15 s.
fn accepted(l: &std::os::unix::net::UnixListener, what: &str) -> std::os::unix::net::UnixStream {
    l.set_nonblocking(true).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        match l.accept() {
            Ok((s, _)) => return s,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                assert!(std::time::Instant::now() < deadline, "timed out: {what}");
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            Err(e) => panic!("{what}: {e}"),
        }
    }
}

#[test]
fn a_vhost_user_client_port_connects_to_the_vmm_and_again_after_a_daemon_restart() {
    // The VMM's side is a listening socket of this test (QEMU's
    // `server=on`); no root needed.
    let dir = crate::daemon::tmpdir("vhost-client");
    let vmm_sock = dir.join("vm1.sock");
    let vmm = std::os::unix::net::UnixListener::bind(&vmm_sock).unwrap();
    let port = crate::daemon::free_port();
    let d = crate::daemon::start(&dir, port);
    let guest = json!({ "kind": "vhost_user", "socket": vmm_sock, "mode": "client", "queues": 2 });
    d.client.ok(
        "POST",
        "/ports",
        Some(port_on("vm1", 100, 5, guest.clone())),
    );
    let _c1 = accepted(&vmm, "sluiced connects to the VMM's socket");
    let p = listed(&d.client, "vm1");
    assert_eq!(p["guest"], guest, "{p}");
    assert_eq!(p["state"], "up", "{p}");

    // A restart: the restored port connects to the same, still running,
    // VMM.
    drop(d);
    let d = crate::daemon::start(&dir, port);
    let _c2 = accepted(&vmm, "the restarted sluiced connects again");
    assert_eq!(listed(&d.client, "vm1")["guest"], guest);

    // Deleting the port leaves the VMM's socket alone.
    d.client.ok("DELETE", "/ports/vm1", None);
    assert!(
        vmm_sock.exists(),
        "the VMM's socket is not sluice's to remove"
    );

    // Bad queue counts and modes are refused, naming the field.
    for (g, want) in [
        (
            json!({ "kind": "vhost_user", "socket": vmm_sock, "queues": 0 }),
            "guest.queues",
        ),
        (
            json!({ "kind": "vhost_user", "socket": vmm_sock, "queues": 17 }),
            "guest.queues",
        ),
        (
            json!({ "kind": "vhost_user", "socket": vmm_sock, "mode": "both" }),
            "expected `server` or `client`",
        ),
    ] {
        let r = d.client.post("/ports", port_on("vm2", 101, 6, g.clone()));
        assert_eq!(r.status, 400, "{g}: {}", r.body);
        assert!(r.body.to_string().contains(want), "{g}: {}", r.body);
    }
    // Server mode with the default queue count is written as before.
    let plain = json!({ "kind": "vhost_user", "socket": dir.join("vm3.sock") });
    d.client.ok(
        "POST",
        "/ports",
        Some(port_on("vm3", 102, 7, plain.clone())),
    );
    assert_eq!(listed(&d.client, "vm3")["guest"], plain);
    drop(d);
    let _ = std::fs::remove_dir_all(&dir);
}
