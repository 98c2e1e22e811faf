//! The fleet's key layout in etcd, versioned under `/sluice/v1/`. Every
//! key a host acts on is read here and nowhere else, so a key that does
//! not parse is refused in one place, with the reason.
//!
//! ```text
//! /sluice/v1/desired/v2p/<vni>/<guest ip>            V2pMapping (JSON)
//! /sluice/v1/desired/v2b/<vni>/<prefix>              V2bRoute   (JSON)
//! /sluice/v1/desired/hosts/<host>/ports/<port>       CreateVnic (JSON: config + guest)
//! /sluice/v1/hosts/<host>                            HostRecord (written by the host)
//! /sluice/v1/status/<host>                           HostStatus (under the host's lease)
//! ```
//!
//! A port's firewall rules, routes and external IPs are fields of its
//! `VnicConfig`: one key per port, so a rule change and the port it is
//! for never disagree. Desired state and status live under different
//! prefixes so a host's watch (of `desired/`) never sees the status
//! writes of the others.

use dataplane::{IpCidr, Vni};
use std::net::IpAddr;

pub const ROOT: &str = "/sluice/v1/";
pub const DESIRED: &str = "/sluice/v1/desired/";
pub const V2P: &str = "/sluice/v1/desired/v2p/";
pub const V2B: &str = "/sluice/v1/desired/v2b/";
pub const DESIRED_HOSTS: &str = "/sluice/v1/desired/hosts/";
pub const HOSTS: &str = "/sluice/v1/hosts/";
pub const STATUS: &str = "/sluice/v1/status/";

/// What a desired-state key names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Key {
    V2p { vni: Vni, ip: IpAddr },
    V2b { vni: Vni, prefix: IpCidr },
    Port { host: String, name: String },
}

pub fn v2p(vni: Vni, ip: IpAddr) -> String {
    format!("{V2P}{}/{ip}", vni.get())
}

pub fn v2p_vni(vni: Vni) -> String {
    format!("{V2P}{}/", vni.get())
}

pub fn v2b(vni: Vni, prefix: IpCidr) -> String {
    format!("{V2B}{}/{prefix}", vni.get())
}

pub fn v2b_vni(vni: Vni) -> String {
    format!("{V2B}{}/", vni.get())
}

pub fn port(host: &str, name: &str) -> String {
    format!("{DESIRED_HOSTS}{host}/ports/{name}")
}

pub fn host_ports(host: &str) -> String {
    format!("{DESIRED_HOSTS}{host}/ports/")
}

pub fn host_record(host: &str) -> String {
    format!("{HOSTS}{host}")
}

pub fn status(host: &str) -> String {
    format!("{STATUS}{host}")
}

/// The end of the range of keys starting with `prefix` (etcd's
/// `WithPrefix`: the prefix with its last byte incremented).
pub fn range_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// A host name as it may appear in a key: what a port name may be (it
/// cannot hold `/`, which would make another key of it).
pub fn host_name_problem(h: &str) -> Option<String> {
    if h.is_empty() || h.len() > 63 {
        return Some(format!("host name '{h}' must be 1-63 characters"));
    }
    if !h
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
    {
        return Some(format!(
            "host name '{h}' may hold only letters, digits, '-', '_' and '.'"
        ));
    }
    None
}

/// Reads a key under [`DESIRED`]; `Err` says why it is not one.
pub fn parse(key: &str) -> Result<Key, String> {
    let bad = |why: &str| Err(format!("key '{key}': {why}"));
    if let Some(rest) = key.strip_prefix(V2P) {
        let Some((vni, ip)) = rest.split_once('/') else {
            return bad("expected /sluice/v1/desired/v2p/<vni>/<ip>");
        };
        let Some(vni) = parse_vni(vni) else {
            return bad("the VNI is not a number below 2^24");
        };
        let Ok(ip) = ip.parse() else {
            return bad("the guest address is not an IP address");
        };
        return Ok(Key::V2p { vni, ip });
    }
    if let Some(rest) = key.strip_prefix(V2B) {
        let Some((vni, prefix)) = rest.split_once('/') else {
            return bad("expected /sluice/v1/desired/v2b/<vni>/<prefix>");
        };
        let Some(vni) = parse_vni(vni) else {
            return bad("the VNI is not a number below 2^24");
        };
        let Ok(prefix) = prefix.parse() else {
            return bad("the prefix is not an address/length");
        };
        return Ok(Key::V2b { vni, prefix });
    }
    if let Some(rest) = key.strip_prefix(DESIRED_HOSTS) {
        let mut it = rest.split('/');
        return match (it.next(), it.next(), it.next(), it.next()) {
            (Some(host), Some("ports"), Some(name), None) if !name.is_empty() => {
                if let Some(p) = host_name_problem(host) {
                    return bad(&p);
                }
                Ok(Key::Port {
                    host: host.to_string(),
                    name: name.to_string(),
                })
            }
            _ => bad("expected /sluice/v1/desired/hosts/<host>/ports/<port>"),
        };
    }
    bad("not a key of sluice's v1 layout")
}

fn parse_vni(s: &str) -> Option<Vni> {
    s.parse::<u32>().ok().and_then(|v| Vni::try_from(v).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip() {
        let vni = Vni::try_from(7777).unwrap();
        let ip: IpAddr = "10.0.0.5".parse().unwrap();
        assert_eq!(parse(&v2p(vni, ip)), Ok(Key::V2p { vni, ip }));
        let prefix: IpCidr = "0.0.0.0/0".parse().unwrap();
        assert_eq!(parse(&v2b(vni, prefix)), Ok(Key::V2b { vni, prefix }));
        assert_eq!(
            parse(&port("h1", "vm1")),
            Ok(Key::Port {
                host: "h1".into(),
                name: "vm1".into()
            })
        );
    }

    #[test]
    fn bad_keys_say_why() {
        for k in [
            "/sluice/v1/desired/v2p/notanumber/10.0.0.1",
            "/sluice/v1/desired/v2p/99999999/10.0.0.1",
            "/sluice/v1/desired/v2p/7/10.0.0.300",
            "/sluice/v1/desired/v2b/7/10.0.0.0/40",
            "/sluice/v1/desired/hosts/h1/ports/",
            "/sluice/v1/desired/hosts/h1/nics/vm1",
            "/sluice/v1/desired/other",
        ] {
            let e = parse(k).unwrap_err();
            assert!(e.contains(k), "{e}");
        }
    }

    #[test]
    fn range_end_is_the_prefix_plus_one() {
        assert_eq!(range_end("/a/"), b"/a0".to_vec());
    }
}
