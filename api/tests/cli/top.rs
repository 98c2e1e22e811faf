//! `sluiceadm top --once --json` on a simulated host while vm1's guest
//! sends: the rates are the traffic's, over the interval. (The same
//! against a real sluiced with TAP guests, and the live view under tmux,
//! are in the API tests' `top.rs`: they need root.)

use crate::fixtures::*;
use std::time::{Duration, Instant};

#[test]
fn top_once_json_reports_rates_new_flows_drops_and_the_busiest_flow() {
    let tmp = TempDir::new("top");
    let h = host_with_vm1(&tmp);
    ok(&h, &["set-v2b", "7777", "0.0.0.0/0", "fd00:99::100"]);
    let wire = h.devices.wire("vm1").expect("vm1's wire");
    // Up to 300 ticks of 10 ms (5 s at most): each one packet of the same flow (to :443),
    // one new flow (to :1000+i) and one packet for a VPC address that
    // has no V2P mapping (dropped).
    let sender = std::thread::spawn(move || {
        let end = Instant::now() + Duration::from_secs(5);
        for i in 0..300u16 {
            if Instant::now() > end {
                break;
            }
            wire.send(&syn(5, [93, 184, 216, 34], 443));
            wire.send(&syn(5, [93, 184, 216, 34], 1000 + i));
            wire.send(&syn(5, [10, 0, 0, 99], 22));
            std::thread::sleep(Duration::from_millis(10));
        }
    });
    wait_for("vm1's flows", || {
        ok_json(&h, &["stats", "vm1"])["flows"].as_u64() > Some(5)
    });
    let v = ok_json(&h, &["top", "--once", "--interval", "1"]);
    sender.join().unwrap();
    let s = v["interval_s"].as_f64().unwrap();
    // The interval, and the time the first snapshot's UFT dump took.
    assert!((1.0..4.0).contains(&s), "{v}");
    let vm1 = &v["ports"][0];
    assert_eq!(vm1["name"], "vm1", "{v}");
    // About 300 packets a second sent (the sleep makes it less, the
    // machine's load less still): not a count since start, not nothing.
    let pps = vm1["packets_out_per_s"].as_f64().unwrap();
    assert!((30.0..=330.0).contains(&pps), "{pps} pkt/s out: {v}");
    let bytes = vm1["bytes_out_per_s"].as_f64().unwrap();
    // Every frame sent is a 54-byte SYN (Ethernet, IPv4, TCP).
    assert!(
        (bytes / pps - 54.0).abs() < 0.01,
        "{bytes} B/s for {pps} pkt/s: {v}"
    );
    let new = vm1["new_flows_per_s"].as_f64().unwrap();
    assert!(new > 10.0 && new < pps, "{new} new flows/s: {v}");
    let drops = vm1["drops_per_s"].as_f64().unwrap();
    assert!(drops > 10.0 && drops < pps, "{drops} drops/s: {v}");
    let d = &v["drops"][0];
    assert_eq!(d["at"], "vm1", "{v}");
    assert!(d["per_s"].as_f64().unwrap() > 10.0, "{v}");
    // The busiest flow is the repeated one, at about a third of the rate.
    let f = &v["flows"][0];
    assert_eq!(f["port"], "vm1", "{v}");
    assert!(
        f["key"]
            .as_str()
            .unwrap()
            .ends_with("10.0.0.5:40000 > 93.184.216.34:443"),
        "{v}"
    );
    let fpps = f["packets_out_per_s"].as_f64().unwrap();
    assert!(fpps > pps / 5.0 && fpps < pps / 2.0, "{fpps} of {pps}: {v}");
    assert_eq!(v["workers"].as_array().unwrap().len(), 2, "{v}");
    // --flows 0: no UFT dumps, no flows; the ports' rates all the same.
    let v = ok_json(&h, &["top", "--once", "--interval", "0.2", "--flows", "0"]);
    assert_eq!(v["flows"], serde_json::json!([]), "{v}");
    assert_eq!(v["ports"][0]["name"], "vm1", "{v}");
}

#[test]
fn top_without_a_terminal_says_to_use_once() {
    let tmp = TempDir::new("top-tty");
    let h = host_with_vm1(&tmp);
    // stdin and stdout are not a terminal here: the live view refuses,
    // before touching any terminal mode, and says what scripts use.
    let r = adm(&h, &["top"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("top --once --json"), "{r:?}");
    // A bad interval is a usage error.
    let r = adm(&h, &["top", "--interval", "0"]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stderr.contains("0.1..=60"), "{r:?}");
}
