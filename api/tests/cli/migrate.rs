//! `migrate-out` from one simulated host to another, `migrate-in` from a
//! file, and `--abort`.

use crate::fixtures::*;
use api::serve::SimHost;

#[test]
fn migrate_out_moves_a_port_and_reports_the_gap_and_migrate_in_imports_a_file() {
    let tmp = TempDir::new("migrate");
    let a = SimHost::start(None, 1).expect("simulated host A");
    let b = SimHost::start(None, 1).expect("simulated host B");
    let cfg = tmp.file("vm1.json", vm_config("vm1", 5).to_string().as_bytes());
    ok(&a, &["create-vnic", "--config", &cfg, "--no-guest"]);
    let (url_b, tok_b) = (b.url(), b.token.clone());
    let tok_file = tmp.file("b.token", tok_b.as_bytes());
    let r = ok_json(
        &a,
        &[
            "migrate-out",
            "vm1",
            "--to",
            &url_b,
            "--target-underlay",
            "fd00:99::b",
            "--to-token-file",
            &tok_file,
            "--grace",
            "5",
        ],
    );
    assert_eq!(r["port"], "vm1", "{r}");
    assert_eq!(r["flows_refused"], 0, "{r}");
    assert!(r["gap_ms"].as_f64().unwrap() > 0.0, "{r}");
    // On B: the port, and the V2P pointing at B, on both hosts.
    let ports = ok_json(&b, &["list-ports"]);
    assert_eq!(ports[0]["name"], "vm1");
    for h in [&a, &b] {
        let v2p = ok_json(h, &["dump-v2p"]);
        assert_eq!(v2p[0]["host"], "fd00:99::b", "{v2p}");
    }
    // A: cut over; an abort resumes it; a second abort has nothing to do.
    let out = ok(&a, &["migrate-out", "vm1", "--abort"]);
    assert!(out.starts_with("aborted the cut-over of 'vm1'"), "{out}");
    let e = fails(&a, &["migrate-out", "vm1", "--abort"]);
    assert!(e.contains("409") && e.contains("not cut over"), "{e}");

    // migrate-in from a file: B's document into a third host.
    let doc = b.sluice.export_migration("vm1", None).unwrap();
    let file = tmp.file(
        "vm1.migration.json",
        serde_json::to_string(&doc).unwrap().as_bytes(),
    );
    let c = SimHost::start(None, 1).expect("simulated host C");
    let out = ok(&c, &["migrate-in", "--file", &file]);
    assert!(out.starts_with("imported port 'vm1'"), "{out}");
    // The same again is refused: the port exists.
    let e = fails(&c, &["migrate-in", "--file", &file]);
    assert!(e.contains("409") && e.contains("vm1"), "{e}");
    let help = adm(&c, &["migrate-out", "--help"]);
    assert!(help.stdout.contains("Examples:"), "{}", help.stdout);
}
