//! `allow-cidr`, `remove-cidr`, `attach-subnet`, `detach-subnet`: their
//! table, their `--json`, their refusals (issue 19).

use crate::fixtures::*;
use serde_json::json;

#[test]
fn transit_prefixes_and_attached_subnets_from_the_cli() {
    let tmp = TempDir::new("transit");
    let h = host_with_vm1(&tmp);
    let out = ok(&h, &["allow-cidr", "vm1", "172.16.0.0/24", "--dir", "in"]);
    assert_eq!(rows(&out, "KIND"), [["transit", "172.16.0.0/24", "in"]]);
    let cfg = ok_json(&h, &["allow-cidr", "vm1", "172.16.0.0/24", "--dir", "out"]);
    assert_eq!(
        cfg["transit_ips"],
        json!([{ "cidr": "172.16.0.0/24", "dir": "both" }])
    );
    let out = ok(&h, &["attach-subnet", "vm1", "192.168.50.0/24"]);
    let out2 = ok(&h, &["attach-subnet", "vm1", "198.18.0.0/24", "--external"]);
    assert_eq!(rows(&out, "KIND").len(), 2, "{out}");
    assert_eq!(
        rows(&out2, "KIND"),
        [
            ["attached", "192.168.50.0/24", "both"],
            ["external", "198.18.0.0/24", "both"],
            ["transit", "172.16.0.0/24", "both"],
        ]
    );
    let out = ok(&h, &["remove-cidr", "vm1", "172.16.0.0/24", "--dir", "in"]);
    assert!(rows(&out, "KIND").contains(&vec![
        "transit".to_string(),
        "172.16.0.0/24".into(),
        "out".into()
    ]));
    let cfg = ok_json(
        &h,
        &["remove-cidr", "vm1", "172.16.0.0/24", "--dir", "both"],
    );
    assert!(cfg.get("transit_ips").is_none(), "{cfg}");
    let cfg = ok_json(&h, &["detach-subnet", "vm1", "198.18.0.0/24"]);
    assert!(cfg.get("external_subnets").is_none(), "{cfg}");
    let out = ok(&h, &["detach-subnet", "vm1", "192.168.50.0/24"]);
    assert_eq!(
        out,
        "KIND  PREFIX  DIR\n(no attached subnets or transit prefixes)\n"
    );

    // Refusals: 404 and 400 in the server's words, usage errors exit 2.
    let e = fails(&h, &["detach-subnet", "vm1", "192.168.50.0/24"]);
    assert!(
        e.contains("404 Not Found: port 'vm1' has no attached subnet 192.168.50.0/24"),
        "{e}"
    );
    let e = fails(&h, &["remove-cidr", "vm1", "10.9.0.0/16", "--dir", "in"]);
    assert!(e.contains("404 Not Found"), "{e}");
    let e = fails(&h, &["allow-cidr", "vm1", "2001:db8::/64", "--dir", "in"]);
    assert!(
        e.contains("400") && e.contains("transit_ips[0].cidr"),
        "{e}"
    );
    for args in [
        &["allow-cidr", "vm1", "172.16.0.0/24"][..],
        &["allow-cidr", "vm1", "172.16.0.0/24", "--dir", "up"][..],
        &["attach-subnet", "vm1", "10.0.0.0/40"][..],
    ] {
        assert_eq!(adm(&h, args).code, 2, "{args:?}");
    }
}
