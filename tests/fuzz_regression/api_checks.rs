//! The `api_bodies` fuzz target's check, shared like `checks.rs` by the
//! cargo-fuzz target (`fuzz/fuzz_targets/api_bodies.rs`) and the stable
//! regression test. Apart from `checks.rs` because it needs the `api`
//! crate (the other targets do not link the control plane).
//!
//! The input's first byte picks a request, the rest is its JSON body.
//! The body is read as dropshot reads it (`serde_json` into the API's
//! type) and, when it parses, applied to the real control plane: an
//! [`api::server::Sluice`] over simulated devices, one worker, small
//! tables (so "full" is reachable), one port `vm1` to aim port calls at.
//! Whatever the bytes:
//!
//! - nothing panics;
//! - a refusal is the caller's error (400, 404, 409), never a 500;
//! - a refused request changes nothing (the whole state, ports, rules,
//!   V2P, V2B and multicast, is the same before and after);
//! - an accepted one is undone, so every input starts from the same state.

// `seeds` is for the regression test only.
#![allow(dead_code)]

use api::error::ApiError;
use api::server::{HostLimits, SimDevices, Sluice};
use api::types::*;
use dataplane::{IpCidr, Vni};
use overlay::layer::HostOverlay;
use overlay::{V2b, V2p};
use serde::de::DeserializeOwned;
use std::cell::RefCell;
use std::net::Ipv6Addr;
use std::sync::Arc;
use vnic::firewall::FirewallRule;
use vnic::router::RouteEntry;

/// The requests, by the input's first byte (modulo their number).
pub const REQUESTS: &[&str] = &[
    "create_vnic",
    "add_fw_rule",
    "set_fw_rules",
    "add_router_entry",
    "del_router_entry",
    "set_external_ips",
    "set_rate_limit",
    "set_v2p",
    "clear_v2p",
    "set_v2b",
    "clear_v2b",
    "trace",
    "rm_fw_rule",
    "allow_cidr",
    "remove_cidr",
    "attach_subnet",
    "detach_subnet",
    "set_m2p",
    "clear_m2p",
    "mcast_subscribe",
    "mcast_unsubscribe",
    "set_mcast_fwd",
    "clear_mcast_fwd",
];

const UNDERLAY: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x99, 0, 0, 0, 0, 0, 0xa);

/// vm1 as the control plane receives it (the fuzz VPC's configuration).
fn vm1() -> CreateVnic {
    CreateVnic {
        config: crate::checks::vpc_config(),
        guest: GuestSpec::None,
    }
}

fn start() -> Sluice {
    let limits = HostLimits {
        v2p: 16,
        v2b: 8,
        ports: 4,
        underlay_mtu: None,
    };
    let host = HostOverlay {
        underlay_ip: UNDERLAY,
        underlay_mac: [2, 0, 0, 0, 0, 0x10],
        next_hop_mac: [2, 0, 0, 0, 0, 0x20],
        v2p: Arc::new(V2p::new(limits.v2p)),
        v2b: Arc::new(V2b::new(limits.v2b)),
        mcast: Default::default(),
    };
    let uplink = vmm_net::backend::Wire::new();
    let workers = vmm_net::worker::Workers::start(UNDERLAY, vec![Box::new(uplink.backend())])
        .expect("a worker");
    let s = Sluice::new(
        host,
        workers,
        Box::new(Arc::new(SimDevices::default())),
        None,
        limits,
    )
    .expect("a control plane");
    s.create_vnic(vm1(), false).expect("vm1");
    let vni = Vni::new(crate::checks::VNI).expect("VNI");
    s.set_v2b(
        V2bSet {
            routes: vec![V2bRoute {
                vni,
                prefix: "0.0.0.0/0".parse().expect("prefix"),
                endpoints: vec!["fd00:99::bd".parse().expect("address")],
            }],
        },
        false,
    )
    .expect("V2B");
    s
}

thread_local! {
    static SLUICE: RefCell<Option<Sluice>> = const { RefCell::new(None) };
}

fn body<T: DeserializeOwned>(b: &[u8]) -> Option<T> {
    serde_json::from_slice(b).ok()
}

/// Applies request `which` with body `b`; `None` when the body does not
/// parse (dropshot's 400 before any handler runs).
fn apply(s: &Sluice, which: &str, b: &[u8]) -> Option<Result<(), ApiError>> {
    let r = match which {
        "create_vnic" => s.create_vnic(body::<CreateVnic>(b)?, false).map(drop),
        "add_fw_rule" => s.add_fw_rule("vm1", body::<FirewallRule>(b)?).map(drop),
        "set_fw_rules" => s
            .set_fw_rules("vm1", body::<FirewallRules>(b)?.rules)
            .map(drop),
        "add_router_entry" => s.add_route("vm1", body::<RouteEntry>(b)?).map(drop),
        "del_router_entry" => s.del_route("vm1", body::<IpCidr>(b)?).map(drop),
        "set_external_ips" => s
            .set_external_ips("vm1", body::<SetExternalIps>(b)?.external)
            .map(drop),
        "set_rate_limit" => s
            .set_rate_limit("vm1", body::<SetRateLimit>(b)?.rate_limit)
            .map(drop),
        "set_v2p" => s.set_v2p(body::<V2pSet>(b)?, false).map(drop),
        "clear_v2p" => s.clear_v2p(body::<V2pSelector>(b)?).map(drop),
        "set_v2b" => s.set_v2b(body::<V2bSet>(b)?, false).map(drop),
        "clear_v2b" => s.clear_v2b(body::<V2bSelector>(b)?).map(drop),
        "trace" => s.trace("vm1", body::<TraceRequest>(b)?).map(drop),
        "rm_fw_rule" => s.rm_fw_rule("vm1", body::<usize>(b)?).map(drop),
        "allow_cidr" => s
            .allow_cidr("vm1", body::<vnic::config::TransitIp>(b)?)
            .map(drop),
        "remove_cidr" => {
            let q = body::<TransitRemove>(b)?;
            s.remove_cidr("vm1", q.cidr, q.dir).map(drop)
        }
        "attach_subnet" => s.attach_subnet("vm1", body::<AttachSubnet>(b)?).map(drop),
        "detach_subnet" => s
            .detach_subnet("vm1", body::<SubnetCidr>(b)?.cidr)
            .map(drop),
        "set_m2p" => s.set_m2p(body::<M2pSet>(b)?, false).map(drop),
        "clear_m2p" => s.clear_m2p(body::<M2pSelector>(b)?).map(drop),
        "mcast_subscribe" => s
            .mcast_subscribe("vm1", body::<McastSubscribe>(b)?)
            .map(drop),
        "mcast_unsubscribe" => s
            .mcast_unsubscribe("vm1", body::<McastUnsubscribe>(b)?)
            .map(drop),
        "set_mcast_fwd" => s.set_mcast_fwd(body::<McastFwdEntry>(b)?).map(drop),
        "clear_mcast_fwd" => s.clear_mcast_fwd(body::<McastFwdSelector>(b)?).map(drop),
        _ => return None,
    };
    Some(r)
}

/// Puts the control plane back as [`start`] made it.
fn reset(s: &Sluice) {
    for p in s.list_ports().expect("ports") {
        s.delete_vnic(&p.name).expect("delete");
    }
    s.create_vnic(vm1(), false).expect("vm1 again");
    for f in s.dump_mcast_fwd(None) {
        s.clear_mcast_fwd(McastFwdSelector {
            vni: Some(f.vni.get()),
            group: Some(f.group),
            next_hop: None,
        })
        .expect("clear");
    }
    for m in s.dump_m2p(None) {
        s.clear_m2p(M2pSelector {
            vni: Some(m.vni.get()),
            group: None,
        })
        .expect("clear");
    }
    for vni in s
        .dump_v2p(None)
        .iter()
        .map(|m| m.vni)
        .chain(s.dump_v2b(None).iter().map(|r| r.vni))
        .collect::<std::collections::BTreeSet<_>>()
    {
        let v = Some(vni.get());
        s.clear_v2p(V2pSelector { vni: v, ip: None })
            .expect("clear");
        s.clear_v2b(V2bSelector {
            vni: v,
            prefix: None,
        })
        .expect("clear");
    }
    let vni = Vni::new(crate::checks::VNI).expect("VNI");
    s.set_v2b(
        V2bSet {
            routes: vec![V2bRoute {
                vni,
                prefix: "0.0.0.0/0".parse().expect("prefix"),
                endpoints: vec!["fd00:99::bd".parse().expect("address")],
            }],
        },
        false,
    )
    .expect("V2B");
}

/// What the control plane holds, comparable. Port summaries carry
/// epochs and flow counts, which reads do not change either.
fn snapshot(s: &Sluice) -> serde_json::Value {
    serde_json::json!({
        "state": s.state(),
        "ports": s.list_ports().expect("ports"),
    })
}

/// The target. Returns what happened: `unparsed`, `ok` or the refusal's
/// status (`400`, `404`, `409`).
pub fn api_bodies(data: &[u8]) -> &'static str {
    let Some((&first, b)) = data.split_first() else {
        return "unparsed";
    };
    let which = REQUESTS[usize::from(first) % REQUESTS.len()];
    SLUICE.with(|cell| {
        let mut slot = cell.borrow_mut();
        let s = slot.get_or_insert_with(start);
        let before = snapshot(s);
        let outcome = match apply(s, which, b) {
            None => "unparsed",
            Some(Ok(())) => "ok",
            Some(Err(e)) => {
                let status = match &e {
                    ApiError::BadField { field, .. } => {
                        assert!(!field.is_empty(), "{which}: a 400 naming no field: {e}");
                        "400"
                    }
                    ApiError::NotFound(_) => "404",
                    ApiError::Conflict(_) => "409",
                    ApiError::Unauthorized(_) | ApiError::Internal(_) | ApiError::NotSaved(_) => {
                        panic!("{which}: a client's body made a server error: {e}")
                    }
                };
                assert!(!e.to_string().is_empty(), "{which}: an empty message");
                let after = snapshot(s);
                assert_eq!(
                    before, after,
                    "{which}: the refused request ({e}) changed the state"
                );
                status
            }
        };
        if outcome == "ok" && which != "trace" {
            reset(s);
            assert_eq!(snapshot(s), before, "{which}: reset");
        }
        outcome
    })
}

/// One seed per request: a body the API accepts (`fuzz/seeds/api/`).
pub fn seeds() -> Vec<(String, Vec<u8>)> {
    let mut vm2 = serde_json::to_value(vm1()).expect("JSON");
    vm2["config"]["name"] = "vm2".into();
    vm2["config"]["guest_mac"] = "a8:40:25:00:00:02".into();
    vm2["config"]["ipv4"]["addr"] = "10.0.0.6".into();
    vm2["config"]["ipv6"]["addr"] = "fd00:7777::6".into();
    vm2["guest"] = serde_json::json!({ "kind": "tap", "name": "tap-vm2" });
    // Its own external addresses: a host refuses two ports sharing them.
    vm2["config"]["external"] = serde_json::json!({
        "snat": [{ "ip": "203.0.113.10", "first_port": 2112, "last_port": 2175 }],
        "floating": ["2001:db8:f::11"]
    });
    let rule = serde_json::json!({ "direction": "in", "priority": 10, "action": "allow",
        "protocol": "tcp", "ports": { "list": [22, 80] } });
    let bodies = [
        ("create_vnic", vm2),
        ("add_fw_rule", rule.clone()),
        ("set_fw_rules", serde_json::json!({ "rules": [rule] })),
        (
            "add_router_entry",
            serde_json::json!({ "dest": "192.168.0.0/16", "target": { "ip": "10.0.0.9" } }),
        ),
        ("del_router_entry", serde_json::json!("::/0")),
        (
            "set_external_ips",
            serde_json::json!({ "external": { "floating": ["198.51.100.7"] } }),
        ),
        (
            "set_rate_limit",
            serde_json::json!({ "rate_limit": { "packets_per_sec": 1000, "burst_bytes": 9000, "bytes_per_sec": 1000000 } }),
        ),
        (
            "set_v2p",
            serde_json::json!({ "mappings": [{ "vni": 7777, "ip": "10.0.0.9",
                "guest_mac": "a8:40:25:00:00:09", "host": "fd00:99::b" }] }),
        ),
        (
            "clear_v2p",
            serde_json::json!({ "vni": 7777, "ip": "10.0.0.2" }),
        ),
        (
            "set_v2b",
            serde_json::json!({ "routes": [{ "vni": 7777, "prefix": "::/0", "endpoints": ["fd00:99::bd"] }] }),
        ),
        ("clear_v2b", serde_json::json!({ "vni": 7777 })),
        (
            "trace",
            serde_json::json!({ "direction": "out", "packet": { "protocol": "tcp",
                "src": "10.0.0.5", "dst": "198.51.100.7", "dst_port": 443 } }),
        ),
        ("rm_fw_rule", serde_json::json!(0)),
        (
            "allow_cidr",
            serde_json::json!({ "cidr": "172.17.0.0/16", "dir": "out" }),
        ),
        (
            "remove_cidr",
            serde_json::json!({ "cidr": "172.16.0.0/24", "dir": "in" }),
        ),
        (
            "attach_subnet",
            serde_json::json!({ "cidr": "192.168.60.0/24", "external": true }),
        ),
        (
            "detach_subnet",
            serde_json::json!({ "cidr": "192.168.50.0/24" }),
        ),
        (
            "set_m2p",
            serde_json::json!({ "mappings": [{ "vni": crate::checks::VNI,
                "group": "239.1.1.1", "underlay": "ff04::1" }] }),
        ),
        (
            "clear_m2p",
            serde_json::json!({ "vni": crate::checks::VNI }),
        ),
        (
            "mcast_subscribe",
            serde_json::json!({ "group": "239.1.1.1", "sources": ["10.0.0.6"] }),
        ),
        ("mcast_unsubscribe", serde_json::json!({})),
        (
            "set_mcast_fwd",
            serde_json::json!({ "vni": crate::checks::VNI, "group": "ff05::1",
                "next_hop": "fd00:99::b", "replication": "external" }),
        ),
        (
            "clear_mcast_fwd",
            serde_json::json!({ "vni": crate::checks::VNI, "group": "239.1.1.1" }),
        ),
    ];
    bodies
        .into_iter()
        .map(|(which, b)| {
            let i = REQUESTS
                .iter()
                .position(|r| *r == which)
                .expect("a request");
            let mut v = vec![i as u8];
            v.extend_from_slice(&serde_json::to_vec(&b).expect("JSON"));
            (format!("{which}.json"), v)
        })
        .collect()
}
