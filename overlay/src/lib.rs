//! sluice's Geneve overlay: how tenant traffic crosses the IPv6 underlay.
//!
//! The crate owns the state and the policy the overlay needs, and nothing
//! of the packet engine itself (that is `dataplane`):
//!
//! - [`v2p`]: the virtual-to-physical table, `(VNI, guest IP)` to the
//!   guest's MAC and the underlay address of the host it lives on. It tells
//!   the outbound path where to tunnel a packet to, and the inbound path
//!   whether an encapsulated packet really comes from the host its inner
//!   source lives on.
//! - [`v2b`]: the virtual-to-boundary table, `(VNI, external prefix)` to
//!   the boundary tunnel endpoints (gateways to the internet), looked up by
//!   longest prefix, with a stable per-flow choice among the endpoints.
//! - [`geneve`]: sluice's Geneve options (RFC 8926 §3.5) and the receive
//!   policy for options: unknown critical options drop the packet.
//! - [`mtu`]: how large a guest frame fits in the underlay, and the ICMP
//!   errors (IPv4 fragmentation needed, IPv6 packet too big) the gateway
//!   sends a guest whose packet does not.
//!
//! Both tables are shared by every port of a host (`Arc<V2p>`,
//! `Arc<V2b>`): the control plane writes them, the workers read them on
//! their slow paths without taking a lock. Every entry carries a
//! [`dataplane::Version`]; a lookup returns a [`dataplane::Dep`] on it,
//! which the overlay layer puts into the transform it builds, so a flow
//! compiled from a mapping is re-checked at its next packet once the
//! mapping changes or goes.
//!
//! - [`mcast`]: multicast: M2P (overlay group to underlay group), the
//!   ports subscribed to each group, and the forwarding table.
//! - [`layer`]: the overlay layer a vNIC's port ends with: tunnels by
//!   V2P/V2B outbound, sender-checked decapsulation inbound.

pub mod geneve;
pub mod layer;
pub mod mcast;
pub mod mtu;
pub mod v2b;
pub mod v2p;

pub use geneve::{
    check_options, external_option, OptionError, OptionSummary, EXTERNAL, SLUICE_OPT_CLASS,
};
pub use mtu::{frag_needed_v4, max_inner_frame, max_inner_mtu, packet_too_big_v6};
pub use v2b::{pick, Endpoints, V2b, V2bEntry, V2bError};
pub use v2p::{PhysDest, V2p, V2pEntry, V2pError};

use dataplane::{Dep, Version};

/// A Dep that is already stale: a flow compiled with it is re-checked at
/// its next packet. Lookups fall back to it when they cannot read a value
/// together with a live version (a writer racing them many times over).
pub(crate) fn stale_dep() -> Dep {
    let v = Version::new();
    let d = v.dep();
    v.bump();
    d
}

/// Value of the [`Version`] of an entry that is still installed. The tables
/// never bump a live entry's version in place: a change installs the new
/// value with a fresh `Version` and bumps the old one, once. So a lookup
/// that reads the version after the value, and finds it still at
/// `LIVE`, knows the value was current when it took its [`Dep`]; any later
/// change makes that `Dep` stale.
pub(crate) const LIVE: u64 = 0;

/// How many times a lookup retries when a writer retires the entry it is
/// reading, before falling back to [`stale_dep`]. Each retry means a
/// writer made progress, so this is never hit in practice.
pub(crate) const READ_RETRIES: usize = 8;

/// Serde for MAC addresses as `aa:bb:cc:dd:ee:ff`.
pub(crate) mod mac_serde {
    use dataplane::headers::Mac;
    use serde::{de::Error, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(m: &Mac, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&dataplane::transform::mac_string(m))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Mac, D::Error> {
        let s = String::deserialize(d)?;
        parse(&s).ok_or_else(|| D::Error::custom(format!("'{s}' is not a MAC address")))
    }

    /// Parses `aa:bb:cc:dd:ee:ff` (or with `-`).
    pub fn parse(s: &str) -> Option<Mac> {
        let mut m = [0u8; 6];
        let mut parts = s.split([':', '-']);
        for b in &mut m {
            let p = parts.next()?;
            if p.is_empty() || p.len() > 2 || !p.bytes().all(|c| c.is_ascii_hexdigit()) {
                return None;
            }
            *b = u8::from_str_radix(p, 16).ok()?;
        }
        parts.next().is_none().then_some(m)
    }
}

/// A 64-bit mixer (the splitmix64 finaliser) for picking shards.
#[inline]
pub(crate) fn mix64(mut x: u64) -> u64 {
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    #[test]
    fn mac_parse() {
        assert_eq!(
            super::mac_serde::parse("02:00:0a:0B:00:ff"),
            Some([2, 0, 10, 11, 0, 255])
        );
        for bad in [
            "",
            "02:00:0a:0b:00",
            "02:00:0a:0b:00:ff:01",
            "02::0a:0b:00:ff",
        ] {
            assert_eq!(super::mac_serde::parse(bad), None, "{bad}");
        }
        assert_eq!(super::mac_serde::parse("002:00:0a:0b:00:ff"), None);
        assert_eq!(super::mac_serde::parse("+2:00:0a:0b:00:ff"), None);
    }

    #[test]
    fn stale_dep_is_stale() {
        assert!(!super::stale_dep().is_current());
    }
}
