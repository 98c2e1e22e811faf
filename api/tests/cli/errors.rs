//! Failures: the server's refusals reach the operator in its own words
//! with exit status 1; usage errors are clap's, exit status 2, before
//! any call.

use crate::fixtures::*;
use api::serve::SimHost;

#[test]
fn refusals_print_the_status_and_the_servers_message() {
    let tmp = TempDir::new("refusals");
    let h = host_with_vm1(&tmp);

    // 404: an unknown port, rule or route.
    let e = fails(&h, &["dump-uft", "nope"]);
    assert_eq!(e, "sluiceadm: error: 404 Not Found: no port named 'nope'\n");
    let e = fails(&h, &["rm-fw-rule", "vm1", "7"]);
    assert!(
        e.starts_with("sluiceadm: error: 404 Not Found: port 'vm1' has no firewall rule 7"),
        "{e}"
    );
    let e = fails(&h, &["dump-layer", "vm1", "bridge"]);
    assert!(
        e.contains("404 Not Found: port 'vm1' has no layer 'bridge'"),
        "{e}"
    );
    let e = fails(&h, &["del-router-entry", "vm1", "192.168.0.0/16"]);
    assert!(
        e.contains("404 Not Found: port 'vm1' has no custom route to 192.168.0.0/16"),
        "{e}"
    );

    // 400: the field is named.
    let e = fails(
        &h,
        &[
            "set-rate-limit",
            "vm1",
            "--pps",
            "10",
            "--burst-packets",
            "0",
        ],
    );
    assert_eq!(
        e,
        "sluiceadm: error: 400 Bad Request: rate_limit.burst_packets: 0 is out of range 1..=1000000000\n"
    );
    let e = fails(
        &h,
        &[
            "add-fw-rule",
            "vm1",
            "--direction",
            "in",
            "--priority",
            "65535",
            "--action",
            "allow",
        ],
    );
    assert!(
        e.starts_with("sluiceadm: error: 400 Bad Request: firewall[0].priority: 65535"),
        "{e}"
    );
    let e = fails(
        &h,
        &[
            "add-fw-rule",
            "vm1",
            "--direction",
            "in",
            "--priority",
            "1",
            "--action",
            "allow",
            "--ports",
            "22",
        ],
    );
    assert!(
        e.starts_with("sluiceadm: error: 400 Bad Request: firewall[0].ports: "),
        "{e}"
    );
    let mut bad = vm_config("vm2", 6);
    bad["ipv4"]["addr"] = serde_json::json!("10.9.9.9");
    let f = tmp.file("bad.json", bad.to_string().as_bytes());
    let e = fails(&h, &["create-vnic", "--config", &f, "--tap", "tap-vm2"]);
    assert!(
        e.starts_with("sluiceadm: error: 400 Bad Request: config.ipv4"),
        "{e}"
    );
    let e = fails(
        &h,
        &[
            "set-v2p",
            "7777",
            "10.0.0.6",
            "ff:ff:ff:ff:ff:ff",
            "fd00:99::b",
        ],
    );
    assert!(e.contains("400 Bad Request: mappings[0].guest_mac"), "{e}");
    let e = fails(
        &h,
        &["capture", "vm1", "--out", "/dev/null", "--packets", "0"],
    );
    assert!(
        e.contains("400 Bad Request: packets: 0 is out of range"),
        "{e}"
    );

    // 409: a duplicate.
    let f = tmp.file("vm1-again.json", vm_config("vm1", 5).to_string().as_bytes());
    let e = fails(&h, &["create-vnic", "--config", &f, "--no-guest"]);
    assert_eq!(
        e,
        "sluiceadm: error: 409 Conflict: a port named 'vm1' exists already\n"
    );

    // --json changes nothing about failures.
    let r = adm(&h, &["--json", "list-fw-rules", "nope"]);
    assert_eq!((r.code, r.stdout.as_str()), (1, ""));
    assert!(r.stderr.contains("404 Not Found"), "{r:?}");
}

#[test]
fn changes_need_the_right_token_reads_do_not() {
    let tmp = TempDir::new("token");
    let h = host_with_vm1(&tmp);
    let url = h.url();

    let r = sluiceadm(
        &["--url", &url, "--token", "0000", "delete-vnic", "vm1"],
        None,
    );
    assert_eq!(r.code, 1);
    assert_eq!(
        r.stderr,
        "sluiceadm: error: 401 Unauthorized: the bearer token is wrong\n"
    );

    // No token file: reads work, changes are refused with a hint.
    let missing = tmp.path().join("no-such-token");
    let m = missing.display().to_string();
    let r = sluiceadm(&["--url", &url, "--token-file", &m, "list-ports"], None);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(rows(&r.stdout, "NAME").len(), 1);
    let r = sluiceadm(
        &["--url", &url, "--token-file", &m, "clear-uft", "vm1"],
        None,
    );
    assert_eq!(r.code, 1);
    let lines: Vec<&str> = r.stderr.lines().collect();
    assert!(
        lines[0].starts_with(
            "sluiceadm: error: 401 Unauthorized: this call needs 'Authorization: Bearer TOKEN'"
        ),
        "{r:?}"
    );
    assert!(
        lines[1].starts_with(&format!(
            "sluiceadm: note: no token was sent (reading {m}: "
        )),
        "{r:?}"
    );

    // The token from a file, and the address and file from the environment.
    let tf = tmp.file("token", format!("{}\n", h.token).as_bytes());
    let r = sluiceadm(
        &["--url", &url, "--token-file", &tf, "clear-uft", "vm1"],
        None,
    );
    assert_eq!(r.code, 0, "{r:?}");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sluiceadm"))
        .args(["delete-vnic", "vm1"])
        .env("SLUICE_URL", &url)
        .env("SLUICE_TOKEN_FILE", &tf)
        .env_remove("SLUICE_TOKEN")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "deleted port 'vm1'\n");
}

#[test]
fn usage_errors_exit_2_before_any_call() {
    // No daemon at this address: a usage error must not get that far.
    let url = "http://127.0.0.1:9";
    for args in [
        &["frobnicate"][..],
        &[
            "add-fw-rule",
            "vm1",
            "--direction",
            "in",
            "--priority",
            "1",
            "--action",
            "allow",
            "--ports",
            "90-80",
        ],
        &[
            "add-fw-rule",
            "vm1",
            "--direction",
            "sideways",
            "--priority",
            "1",
            "--action",
            "allow",
        ],
        &[
            "add-fw-rule",
            "vm1",
            "--direction",
            "in",
            "--priority",
            "1",
            "--action",
            "allow",
            "--hosts",
            "10.0.0.0/8",
        ],
        &["create-vnic", "--config", "vm1.json"],
        &[
            "create-vnic",
            "--config",
            "vm1.json",
            "--tap",
            "t",
            "--no-guest",
        ],
        &["set-v2p", "7777", "10.0.0.6"],
        &[
            "set-v2p",
            "16777216",
            "10.0.0.6",
            "a8:40:25:00:00:06",
            "fd00::1",
        ],
        &["set-v2p", "7777", "10.0.0.6", "a8:40:25:00:00", "fd00::1"],
        &["set-v2b", "7777", "0.0.0.0/0", "10.0.0.1"],
        &["add-router-entry", "vm1", "10.0.0.0/8", "elsewhere"],
        &["set-external-ips", "vm1", "--snat", "203.0.113.10"],
        &["set-rate-limit", "vm1"],
        &["set-rate-limit", "vm1", "--none", "--pps", "5"],
        &[
            "set-rate-limit",
            "vm1",
            "--bps",
            "5",
            "--burst-packets",
            "5",
        ],
        &["trace", "vm1", "--proto", "tcp", "--src", "10.0.0.5"],
        &["trace", "vm1", "--frame", "00", "--proto", "tcp"],
        &[
            "trace", "vm1", "--proto", "tcp", "--src", "10.0.0.5", "--dst", "10.0.0.6", "--flags",
            "SX",
        ],
        &[
            "replay",
            "--state",
            "s.json",
            "--in",
            "vm1.pcap",
            "--out-dir",
            "o",
        ],
        &["clear-v2p"],
    ] {
        let mut all = vec!["--url", url];
        all.extend_from_slice(args);
        let r = sluiceadm(&all, None);
        assert_eq!(r.code, 2, "{args:?}: {r:?}");
        assert!(r.stderr.starts_with("error: "), "{args:?}: {}", r.stderr);
        assert!(!r.stderr.contains("cannot reach"), "{args:?}");
    }
    let r = sluiceadm(
        &[
            "--url",
            url,
            "add-fw-rule",
            "vm1",
            "--direction",
            "in",
            "--priority",
            "1",
            "--action",
            "allow",
            "--ports",
            "90-80",
        ],
        None,
    );
    assert!(r.stderr.contains("range 90-80 is empty"), "{}", r.stderr);
}

#[test]
fn local_problems_exit_1_naming_the_file_or_the_daemon() {
    let r = sluiceadm(&["--url", "http://127.0.0.1:9", "list-ports"], None);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr
            .starts_with("sluiceadm: error: cannot reach sluiced at http://127.0.0.1:9: "),
        "{}",
        r.stderr
    );

    let h = SimHost::start(None, 1).expect("simulated host");
    let tmp = TempDir::new("files");
    let missing = tmp.path().join("missing.json").display().to_string();
    let e = fails(&h, &["create-vnic", "--config", &missing, "--no-guest"]);
    assert!(
        e.starts_with(&format!("sluiceadm: error: reading {missing}: ")),
        "{e}"
    );
    let mut cfg = vm_config("vm1", 5);
    cfg["colour"] = serde_json::json!("blue");
    let f = tmp.file("colour.json", cfg.to_string().as_bytes());
    let e = fails(&h, &["create-vnic", "--config", &f, "--no-guest"]);
    assert!(
        e.starts_with(&format!("sluiceadm: error: {f}: unknown field `colour`")),
        "{e}"
    );
    let f = tmp.file("junk.json", b"{not json");
    let e = fails(&h, &["set-v2p", "--file", &f]);
    assert!(e.contains(&f), "{e}");
    assert!(
        rows(&ok(&h, &["list-ports"]), "NAME").is_empty(),
        "nothing was created"
    );
}
