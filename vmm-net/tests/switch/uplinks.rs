//! A host with two uplinks: its tunnels spread over both by their outer
//! flow (each flow always on the same one), a link that goes down (or an
//! uplink the operator takes out of use) carries nothing until it
//! returns, its flows moving to the other one without the port setting
//! them up again, and what leaves on the second uplink carries its own
//! outer Ethernet addresses.

use super::*;
use std::collections::HashMap;
use vmm_net::uplinks::{UplinkDevice, NO_LIVE_UPLINK};

const MAC_1: [u8; 6] = [2, 0, 0, 0, 0, 0x10];
const HOP_1: [u8; 6] = [2, 0, 0, 0, 0, 0x20];
const MAC_2: [u8; 6] = [2, 0, 0, 0, 0, 0x11];
const HOP_2: [u8; 6] = [2, 0, 0, 0, 0, 0x21];
const FLOWS: u16 = 32;

fn two_uplinks() -> (Switch, Wire, Wire) {
    let (u1, u2) = (Wire::new(), Wire::new());
    let dev = |name: &str, w: &Wire, mac, next_hop_mac| UplinkDevice {
        name: name.into(),
        backend: Box::new(w.backend()),
        mac,
        next_hop_mac,
    };
    let sw = Switch::with_uplinks(
        host_ip('a'),
        vec![dev("u1", &u1, MAC_1, HOP_1), dev("u2", &u2, MAC_2, HOP_2)],
    );
    (sw, u1, u2)
}

/// vm1 (10.0.0.11) to vm2 (10.0.0.12, host b) from TCP port `sport`.
fn tcp_out(sport: u16, flags: &str) -> Vec<u8> {
    Tcp::new(
        (mac(1), GW_MAC),
        (Ipv4Addr::new(10, 0, 0, 11), sport).into(),
        (Ipv4Addr::new(10, 0, 0, 12), 22).into(),
    )
    .seq(1)
    .window(1000)
    .flags_acking(flags, 1)
    .payload(b"x")
    .build()
}

/// The inner TCP source port of a tunnel (IPv4 inner, no IP options).
fn inner_sport(t: &[u8]) -> u16 {
    let inner = 70 + usize::from(t[62] & 0x3f) * 4;
    let l4 = inner + 14 + 20;
    u16::from_be_bytes([t[l4], t[l4 + 1]])
}

/// One packet of each flow through the switch; which uplink each left on.
fn send_all(sw: &mut Switch, vm1: &Wire, u1: &Wire, u2: &Wire, flags: &str) -> HashMap<u16, u8> {
    for s in 0..FLOWS {
        vm1.send(&tcp_out(40_000 + s, flags));
    }
    sw.poll().unwrap();
    let mut on = HashMap::new();
    for (k, w) in [(1u8, u1), (2, u2)] {
        for f in w.take() {
            let (dst, src) = (&f[0..6], &f[6..12]);
            let want = if k == 1 {
                (HOP_1, MAC_1)
            } else {
                (HOP_2, MAC_2)
            };
            assert_eq!((dst, src), (&want.0[..], &want.1[..]), "uplink {k}'s MACs");
            assert_checksums(&f);
            assert!(
                on.insert(inner_sport(&f), k).is_none(),
                "one frame per flow"
            );
        }
    }
    assert_eq!(
        on.len(),
        usize::from(FLOWS),
        "every flow sent: {:?}",
        sw.stats()
    );
    on
}

fn count(on: &HashMap<u16, u8>, k: u8) -> usize {
    on.values().filter(|&&v| v == k).count()
}

fn misses(sw: &Switch) -> u64 {
    let s = sw.port("vm1").unwrap().port.stats();
    s.dir.iter().map(|d| d.uft_misses).sum()
}

#[test]
fn flows_spread_over_both_uplinks_each_always_on_the_same_one() {
    let cloud = Cloud::new();
    let (mut a, u1, u2) = two_uplinks();
    let vm1 = cloud.guest(&mut a, 'a', 1);
    cloud.guest_port('b', 2); // vm2's V2P entry
    let first = send_all(&mut a, &vm1, &u1, &u2, "S");
    assert!(
        count(&first, 1) > 0 && count(&first, 2) > 0,
        "both used: {first:?}"
    );
    for _ in 0..3 {
        assert_eq!(
            send_all(&mut a, &vm1, &u1, &u2, "A"),
            first,
            "stable per flow"
        );
    }
    let st = a.uplinks();
    assert_eq!(st[0].stats.tx as usize, 4 * count(&first, 1));
    assert_eq!(st[1].stats.tx as usize, 4 * count(&first, 2));
    assert_eq!(
        st[1].stats.rewritten, st[1].stats.tx,
        "uplink 2's addresses"
    );
    assert_eq!(
        st[0].stats.rewritten, 0,
        "uplink 1 sends as the overlay wrote"
    );
    assert_eq!(a.stats().uplink_tx, u64::from(FLOWS) * 4);
}

#[test]
fn a_link_that_goes_down_hands_its_flows_to_the_other_and_gets_them_back() {
    let cloud = Cloud::new();
    let (mut a, u1, u2) = two_uplinks();
    let vm1 = cloud.guest(&mut a, 'a', 1);
    cloud.guest_port('b', 2);
    let first = send_all(&mut a, &vm1, &u1, &u2, "S");
    let set_up = misses(&a);
    u2.set_link(false);
    assert!(a.check_links(), "the change is seen");
    let down = send_all(&mut a, &vm1, &u1, &u2, "A");
    assert_eq!(
        count(&down, 1),
        usize::from(FLOWS),
        "all on uplink 1: {down:?}"
    );
    for (s, k) in &first {
        if *k == 1 {
            assert_eq!(down[s], 1, "uplink 1's own flows stay");
        }
    }
    assert!(!a.uplinks()[1].link_up);
    u2.set_link(true);
    assert!(a.check_links());
    assert!(!a.check_links(), "nothing more changed");
    assert_eq!(
        send_all(&mut a, &vm1, &u1, &u2, "A"),
        first,
        "back where they were"
    );
    assert_eq!(
        misses(&a),
        set_up,
        "no flow set up again: the port saw only hits"
    );
    let st = a.uplinks()[1].stats;
    assert_eq!((st.link_downs, st.link_ups), (1, 1));
    // Both down: nothing to send on, every frame counted.
    u1.set_link(false);
    u2.set_link(false);
    a.check_links();
    for s in 0..4 {
        vm1.send(&tcp_out(40_000 + s, "A"));
    }
    a.poll().unwrap();
    assert!(u1.take().is_empty() && u2.take().is_empty());
    assert_eq!(
        a.stats()
            .drops
            .get(dataplane::DropReason::Policy(NO_LIVE_UPLINK)),
        4
    );
}

#[test]
fn the_operator_chooses_which_uplinks_carry_traffic() {
    let cloud = Cloud::new();
    let (mut a, u1, u2) = two_uplinks();
    let vm1 = cloud.guest(&mut a, 'a', 1);
    cloud.guest_port('b', 2);
    let first = send_all(&mut a, &vm1, &u1, &u2, "S");
    a.set_uplinks_in_use(&["u2".into()]).unwrap();
    let only = send_all(&mut a, &vm1, &u1, &u2, "A");
    assert_eq!(
        count(&only, 2),
        usize::from(FLOWS),
        "all on u2 (its MACs checked)"
    );
    let st = a.uplinks();
    assert!(!st[0].in_use && st[1].in_use);
    // Refused, changing nothing.
    for bad in [
        vec![],
        vec!["u3".to_string()],
        vec!["u2".into(), "u2".into()],
    ] {
        assert!(a.set_uplinks_in_use(&bad).is_err(), "{bad:?}");
    }
    let e = a.set_uplinks_in_use(&["eth9".into()]).unwrap_err();
    assert_eq!(e.to_string(), "no uplink named 'eth9' (configured: u1, u2)");
    assert_eq!(
        count(&send_all(&mut a, &vm1, &u1, &u2, "A"), 2),
        usize::from(FLOWS)
    );
    a.set_uplinks_in_use(&["u2".into(), "u1".into()]).unwrap();
    assert_eq!(send_all(&mut a, &vm1, &u1, &u2, "A"), first);
}

#[test]
fn tunnels_are_received_on_either_uplink() {
    let cloud = Cloud::new();
    let (mut a, u1, u2) = two_uplinks();
    let vm1 = cloud.guest(&mut a, 'a', 1);
    let up_b = Wire::new();
    let mut b = Switch::new(host_ip('b'), Box::new(up_b.backend()));
    let vm2 = cloud.guest(&mut b, 'b', 2);
    // Whatever the state of the uplinks: a down or unused one still
    // receives (the far host chose the path).
    a.set_uplinks_in_use(&["u1".into()]).unwrap();
    for (i, w) in [&u1, &u2, &u2].into_iter().enumerate() {
        vm2.send(&tcp(2, 1, i == 0));
        b.poll().unwrap();
        assert_eq!(underlay(&up_b, w), 1);
        a.poll().unwrap();
        assert_eq!(vm1.take().len(), 1, "delivered: {:?}", a.stats());
    }
    let st = a.uplinks();
    assert_eq!((st[0].stats.rx, st[1].stats.rx), (1, 2));
    assert_eq!(a.stats().uplink_rx, 3);
}
