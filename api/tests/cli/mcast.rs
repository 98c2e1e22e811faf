//! The multicast verbs (issue 19): `set-m2p`, `clear-m2p`, `dump-m2p`,
//! `mcast-subscribe`, `mcast-unsubscribe`, `mcast-unsubscribe-all`,
//! `dump-mcast-subs`, `set-mcast-fwd`, `clear-mcast-fwd`,
//! `dump-mcast-fwd`: their tables, `--json`, refusals and `--help`.

use crate::fixtures::*;
use serde_json::json;

#[test]
fn m2p_and_forwarding_from_the_cli() {
    let tmp = TempDir::new("mcast-m2p");
    let h = host_with_vm1(&tmp);
    let out = ok(
        &h,
        &["set-m2p", "239.1.2.3", "ff04::1:2:3", "--vni", "7777"],
    );
    assert_eq!(out, "set 1 M2P mapping, 1 changed\n");
    // Without --vni: VNI 77.
    ok(&h, &["set-m2p", "ff05::db8:1", "ff04::db8:1"]);
    let out = ok(&h, &["dump-m2p"]);
    assert_eq!(
        rows(&out, "VNI"),
        [
            ["77", "ff05::db8:1", "ff04::db8:1"],
            ["7777", "239.1.2.3", "ff04::1:2:3"]
        ]
    );
    let j = ok_json(&h, &["dump-m2p", "--vni", "7777"]);
    assert_eq!(
        j,
        json!([{ "vni": 7777, "group": "239.1.2.3", "underlay": "ff04::1:2:3" }])
    );

    let set = |hop: &str, r: &str| {
        ok(
            &h,
            &[
                "set-mcast-fwd",
                "239.1.2.3",
                hop,
                "--replication",
                r,
                "--vni",
                "7777",
            ],
        )
    };
    set("fd00:99::b", "external");
    set("fd00:99::c", "underlay");
    let out = ok(&h, &["dump-mcast-fwd", "--vni", "7777"]);
    assert_eq!(
        header(&out, "VNI"),
        ["VNI", "GROUP", "NEXT-HOP", "REPLICATION"]
    );
    assert_eq!(
        rows(&out, "VNI"),
        [
            ["7777", "239.1.2.3", "fd00:99::b", "external"],
            ["7777", "239.1.2.3", "fd00:99::c", "underlay"],
        ]
    );
    let j = ok_json(
        &h,
        &[
            "clear-mcast-fwd",
            "239.1.2.3",
            "fd00:99::b",
            "--vni",
            "7777",
        ],
    );
    assert_eq!(j, json!({ "changed": 1 }));
    let out = ok(&h, &["clear-mcast-fwd", "239.1.2.3", "--vni", "7777"]);
    assert_eq!(out, "cleared 1 forwarding entr(y/ies)\n");
    let out = ok(&h, &["clear-m2p", "--vni", "7777"]);
    assert_eq!(out, "cleared 1 M2P mapping(s)\n");

    // Refusals in the server's words; usage errors exit 2.
    let e = fails(&h, &["set-m2p", "224.0.0.251", "ff04::1"]);
    assert!(
        e.contains("400") && e.contains("mappings[0].group") && e.contains("link-local"),
        "{e}"
    );
    let e = fails(&h, &["set-m2p", "239.1.1.1", "ff0e::1"]);
    assert!(e.contains("admin-local"), "{e}");
    let e = fails(
        &h,
        &[
            "set-mcast-fwd",
            "239.9.9.9",
            "fd00:99::b",
            "--replication",
            "both",
        ],
    );
    assert!(e.contains("409") && e.contains("set-m2p first"), "{e}");
    for args in [
        &["set-m2p", "239.1.1.1", "239.1.1.2"][..],
        &["set-m2p", "239.1.1.1", "ff04::1", "--vni", "16777216"][..],
        &["set-mcast-fwd", "239.1.1.1", "fd00::1"][..],
        &[
            "set-mcast-fwd",
            "239.1.1.1",
            "fd00::1",
            "--replication",
            "flood",
        ][..],
    ] {
        assert_eq!(adm(&h, args).code, 2, "{args:?}");
    }
}

#[test]
fn subscriptions_from_the_cli() {
    let tmp = TempDir::new("mcast-subs");
    let h = host_with_vm1(&tmp);
    let out = ok(
        &h,
        &[
            "mcast-subscribe",
            "vm1",
            "239.1.2.3",
            "--sources",
            "10.0.0.6,10.0.0.7",
        ],
    );
    assert_eq!(
        rows(&out, "PORT"),
        [["vm1", "239.1.2.3", "10.0.0.6,10.0.0.7"]]
    );
    let j = ok_json(&h, &["mcast-subscribe", "vm1", "ff05::1"]);
    assert_eq!(j.as_array().unwrap().len(), 2, "{j}");
    let out = ok(&h, &["dump-mcast-subs", "--port", "vm1"]);
    assert_eq!(
        rows(&out, "PORT"),
        [
            ["vm1", "239.1.2.3", "10.0.0.6,10.0.0.7"],
            ["vm1", "ff05::1", "any"]
        ]
    );
    let out = ok(&h, &["mcast-unsubscribe", "vm1", "239.1.2.3"]);
    assert_eq!(out, "removed 1 subscription(s)\n");
    let out = ok(&h, &["mcast-unsubscribe-all", "vm1"]);
    assert_eq!(out, "removed 1 subscription(s)\n");
    assert_eq!(ok_json(&h, &["dump-mcast-subs"]), json!([]));
    let e = fails(&h, &["mcast-subscribe", "nope", "239.1.2.3"]);
    assert!(e.contains("404") && e.contains("nope"), "{e}");
    let e = fails(
        &h,
        &[
            "mcast-subscribe",
            "vm1",
            "239.1.2.3",
            "--sources",
            "fd00::1",
        ],
    );
    assert!(e.contains("sources[0]"), "{e}");
    assert_eq!(
        adm(
            &h,
            &["mcast-subscribe", "vm1", "239.1.2.3", "--sources", "x"]
        )
        .code,
        2
    );
}

#[test]
fn every_multicast_verb_has_help_with_examples() {
    for verb in [
        "set-m2p",
        "clear-m2p",
        "dump-m2p",
        "mcast-subscribe",
        "mcast-unsubscribe",
        "mcast-unsubscribe-all",
        "dump-mcast-subs",
        "set-mcast-fwd",
        "clear-mcast-fwd",
        "dump-mcast-fwd",
    ] {
        let r = sluiceadm(&[verb, "--help"], None);
        assert_eq!(r.code, 0, "{verb}: {}", r.stderr);
        assert!(
            r.stdout.contains("Examples:") && r.stdout.contains(&format!("sluiceadm {verb}"))
                || r.stdout.contains(&format!("sluiceadm --json {verb}")),
            "{verb}:\n{}",
            r.stdout
        );
    }
}

/// With fleet mode built in, the store refuses the verbs saying why;
/// without it, `--etcd` is refused as a whole.
#[test]
fn the_fleet_store_refuses_multicast_verbs_saying_why() {
    for args in [
        &["set-m2p", "239.1.1.1", "ff04::1"][..],
        &["mcast-subscribe", "vm1", "239.1.1.1"][..],
        &["dump-mcast-fwd"][..],
    ] {
        let mut a = vec!["--etcd", "http://127.0.0.1:9"];
        a.extend_from_slice(args);
        let r = sluiceadm(&a, None);
        assert_eq!(r.code, 1, "{args:?}: {}", r.stderr);
        let why = if cfg!(feature = "fleet") {
            "multicast state"
        } else {
            "built without fleet mode"
        };
        assert!(r.stderr.contains(why), "{args:?}: {}", r.stderr);
    }
}
