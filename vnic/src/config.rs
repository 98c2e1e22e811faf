//! A vNIC's configuration: everything needed to build its port, as the
//! control plane sends it (JSON) and persists it.
//!
//! [`VnicConfig::validate`] checks every field and names the first bad one
//! with the value and what was wrong, so an API client sees
//! "ipv4.addr 10.1.0.5 is outside ipv4.subnet 10.0.0.0/24" rather than a
//! port that silently drops traffic.

use crate::firewall::FirewallRule;
use crate::router::RouteEntry;
use core::fmt;
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use core::str::FromStr;
use dataplane::{IpCidr, RateLimit, Vni};
use serde::{Deserialize, Serialize};

/// A MAC address, written `aa:bb:cc:dd:ee:ff`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct MacAddr(pub [u8; 6]);

#[cfg(feature = "schema")]
impl schemars::JsonSchema for MacAddr {
    fn schema_name() -> String {
        "MacAddr".to_string()
    }

    fn json_schema(_: &mut schemars::gen::SchemaGenerator) -> schemars::schema::Schema {
        dataplane::addr::string_schema("A MAC address, six hex bytes: a8:40:25:00:00:01.")
    }
}

impl MacAddr {
    pub fn is_multicast(&self) -> bool {
        self.0[0] & 1 == 1
    }

    pub fn is_zero(&self) -> bool {
        self.0 == [0; 6]
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = &self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{0}' is not a MAC address (expected six hex bytes like a8:40:25:00:00:01)")]
pub struct MacError(pub String);

impl FromStr for MacAddr {
    type Err = MacError;
    fn from_str(s: &str) -> Result<Self, MacError> {
        let mut m = [0u8; 6];
        let mut parts = s.split(':');
        for b in &mut m {
            let p = parts.next().ok_or_else(|| MacError(s.to_string()))?;
            if p.len() != 2 {
                return Err(MacError(s.to_string()));
            }
            *b = u8::from_str_radix(p, 16).map_err(|_| MacError(s.to_string()))?;
        }
        if parts.next().is_some() {
            return Err(MacError(s.to_string()));
        }
        Ok(MacAddr(m))
    }
}

impl TryFrom<String> for MacAddr {
    type Error = MacError;
    fn try_from(s: String) -> Result<Self, MacError> {
        s.parse()
    }
}

impl From<MacAddr> for String {
    fn from(m: MacAddr) -> String {
        m.to_string()
    }
}

/// The guest's IPv4 settings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Ipv4Config {
    /// The guest's address (what DHCP hands out).
    pub addr: Ipv4Addr,
    /// The VPC subnet the address is in.
    pub subnet: IpCidr,
    /// The virtual gateway's address in that subnet.
    pub gateway: Ipv4Addr,
}

/// The guest's IPv6 settings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Ipv6Config {
    pub addr: Ipv6Addr,
    pub subnet: IpCidr,
    /// The gateway's (non-link-local) address; the link-local one is
    /// derived from the gateway MAC.
    pub gateway: Ipv6Addr,
}

/// What the gateway's DHCP servers hand out besides the address.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, default)]
pub struct DhcpConfig {
    pub dns4: Vec<Ipv4Addr>,
    pub dns6: Vec<Ipv6Addr>,
    pub domain: Option<String>,
    pub hostname: Option<String>,
    /// Lease (and IPv6 valid lifetime), seconds.
    pub lease_secs: u32,
}

impl Default for DhcpConfig {
    fn default() -> Self {
        DhcpConfig {
            dns4: Vec::new(),
            dns6: Vec::new(),
            domain: None,
            hostname: None,
            // A day: guests renew at half, so a restarted gateway is seen
            // within 12 h at worst; nothing depends on expiry here because
            // the address never changes.
            lease_secs: 86_400,
        }
    }
}

/// Source NAT: a shared external address and this vNIC's slice of its
/// ports.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct SnatConfig {
    pub ip: IpAddr,
    pub first_port: u16,
    pub last_port: u16,
}

/// External addresses, in order of preference for outbound internet
/// traffic: a floating IP (1:1, reachable inbound), then the ephemeral IP,
/// then SNAT.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, default)]
pub struct ExternalIps {
    pub snat: Vec<SnatConfig>,
    pub ephemeral: Vec<IpAddr>,
    pub floating: Vec<IpAddr>,
}

/// Which way a transit prefix is allowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum TransitDir {
    /// The guest may receive packets to the prefix.
    In,
    /// The guest may send packets from the prefix.
    Out,
    Both,
}

impl TransitDir {
    pub fn allows_in(self) -> bool {
        matches!(self, TransitDir::In | TransitDir::Both)
    }

    pub fn allows_out(self) -> bool {
        matches!(self, TransitDir::Out | TransitDir::Both)
    }

    /// The direction allowing what both `self` and `other` allow.
    pub fn union(self, other: TransitDir) -> TransitDir {
        TransitDir::from_flags(
            self.allows_in() || other.allows_in(),
            self.allows_out() || other.allows_out(),
        )
        .unwrap_or(TransitDir::Both)
    }

    /// What `self` allows that `other` does not; `None` when nothing is left.
    pub fn minus(self, other: TransitDir) -> Option<TransitDir> {
        TransitDir::from_flags(
            self.allows_in() && !other.allows_in(),
            self.allows_out() && !other.allows_out(),
        )
    }

    fn from_flags(i: bool, o: bool) -> Option<TransitDir> {
        match (i, o) {
            (true, true) => Some(TransitDir::Both),
            (true, false) => Some(TransitDir::In),
            (false, true) => Some(TransitDir::Out),
            (false, false) => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            TransitDir::In => "in",
            TransitDir::Out => "out",
            TransitDir::Both => "both",
        }
    }
}

/// A transit prefix: an exception to the gateway's address checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct TransitIp {
    pub cidr: IpCidr,
    pub dir: TransitDir,
}

/// Per-port limits, fixed at creation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Flows tracked at once (both directions of a flow count once).
    pub flows: u32,
}

impl Default for Limits {
    fn default() -> Self {
        // 64 Ki flows: enough for a busy server VM, and at ~1.2 KB a flow
        // (bench/README.md) 80 MB of tables at worst per port.
        Limits { flows: 65_536 }
    }
}

/// Everything about one vNIC.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct VnicConfig {
    pub name: String,
    pub guest_mac: MacAddr,
    pub gateway_mac: MacAddr,
    pub vni: Vni,
    #[serde(default)]
    pub ipv4: Option<Ipv4Config>,
    #[serde(default)]
    pub ipv6: Option<Ipv6Config>,
    /// The guest's MTU (DHCP option 26, NDP MTU option). Guest frames
    /// plus the 70-byte encapsulation must fit the underlay MTU.
    #[serde(default = "default_mtu")]
    pub mtu: u16,
    #[serde(default)]
    pub dhcp: DhcpConfig,
    #[serde(default)]
    pub external: ExternalIps,
    /// Extra prefixes routed to this guest (it may send from them too).
    #[serde(default)]
    pub attached_subnets: Vec<IpCidr>,
    /// Attached subnets that are external address blocks (OPTE's
    /// `is_external`): like `attached_subnets`, never translated, and
    /// their traffic goes to the internet only, never to a VPC recipient
    /// (dropped as `external_subnet_to_vpc`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub external_subnets: Vec<IpCidr>,
    /// Exceptions to anti-spoofing for a guest acting as a router or VPN
    /// endpoint: it may send from (`out`) and receive for (`in`) these
    /// prefixes, untranslated.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub transit_ips: Vec<TransitIp>,
    #[serde(default)]
    pub firewall: Vec<FirewallRule>,
    #[serde(default)]
    pub routes: Vec<RouteEntry>,
    #[serde(default)]
    pub limits: Limits,
    /// A limit on what the guest sends (packets and bytes per second);
    /// absent: none. Unlike `limits`, it can change on a live port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
}

fn default_mtu() -> u16 {
    1500
}

/// The smallest MTU IPv6 allows (RFC 8200 §5); IPv4's floor is 68 but a
/// guest with an IPv6 address needs 1280.
pub const MIN_MTU_V4: u16 = 576;
pub const MIN_MTU_V6: u16 = 1280;
pub const MAX_MTU: u16 = 9216;

/// A field that failed validation: its path and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct ConfigError {
    /// The field's path, e.g. `ipv4.addr` or `firewall[3].ports`.
    pub field: String,
    pub problem: String,
}

fn bad(field: impl Into<String>, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        field: field.into(),
        problem: problem.into(),
    }
}

impl VnicConfig {
    /// Checks every field; the error names the first bad one.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.name.is_empty() || self.name.len() > 64 {
            return Err(bad(
                "name",
                format!("must be 1 to 64 characters, got {}", self.name.len()),
            ));
        }
        if let Some(c) = self
            .name
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || "-_.".contains(*c)))
        {
            return Err(bad(
                "name",
                format!("'{c}' is not allowed (letters, digits, '-', '_', '.')"),
            ));
        }
        // The name is a segment of the API's paths (`/ports/{name}/uft`),
        // where these two mean "here" and "up one".
        if self.name == "." || self.name == ".." {
            return Err(bad(
                "name",
                format!(
                    "'{}' is a path segment with a meaning; name the port otherwise",
                    self.name
                ),
            ));
        }
        for (f, m) in [
            ("guest_mac", self.guest_mac),
            ("gateway_mac", self.gateway_mac),
        ] {
            if m.is_multicast() || m.is_zero() {
                return Err(bad(f, format!("{m} is not a unicast address")));
            }
        }
        if self.guest_mac == self.gateway_mac {
            return Err(bad(
                "gateway_mac",
                format!("{} is the guest's own MAC", self.gateway_mac),
            ));
        }
        if self.ipv4.is_none() && self.ipv6.is_none() {
            return Err(bad(
                "ipv4",
                "a vNIC needs an IPv4 or an IPv6 configuration, or both",
            ));
        }
        if let Some(v4) = &self.ipv4 {
            check_family(
                "ipv4",
                IpAddr::V4(v4.addr),
                &v4.subnet,
                IpAddr::V4(v4.gateway),
                true,
            )?;
        }
        if let Some(v6) = &self.ipv6 {
            check_family(
                "ipv6",
                IpAddr::V6(v6.addr),
                &v6.subnet,
                IpAddr::V6(v6.gateway),
                false,
            )?;
        }
        let min = if self.ipv6.is_some() {
            MIN_MTU_V6
        } else {
            MIN_MTU_V4
        };
        if !(min..=MAX_MTU).contains(&self.mtu) {
            return Err(bad(
                "mtu",
                format!("{} is out of range {min}..={MAX_MTU}", self.mtu),
            ));
        }
        if self.dhcp.lease_secs < 60 {
            return Err(bad(
                "dhcp.lease_secs",
                format!("{} is below the 60 s minimum", self.dhcp.lease_secs),
            ));
        }
        if let Some(d) = &self.dhcp.domain {
            check_dns_name("dhcp.domain", d)?;
        }
        if let Some(h) = &self.dhcp.hostname {
            check_dns_name("dhcp.hostname", h)?;
        }
        let has = |a: &IpAddr| match a {
            IpAddr::V4(_) => self.ipv4.is_some(),
            IpAddr::V6(_) => self.ipv6.is_some(),
        };
        for (i, s) in self.external.snat.iter().enumerate() {
            if s.first_port > s.last_port || s.first_port < 1024 {
                return Err(bad(
                    format!("external.snat[{i}]"),
                    format!(
                        "port range {}-{} must be within 1024-65535 and not empty",
                        s.first_port, s.last_port
                    ),
                ));
            }
            if !has(&s.ip) {
                return Err(bad(
                    format!("external.snat[{i}].ip"),
                    format!("{} has no matching guest address family", s.ip),
                ));
            }
        }
        for (i, a) in self.external.snat.iter().enumerate() {
            let overlap = self.external.snat[..i].iter().position(|b| {
                a.ip == b.ip && a.first_port <= b.last_port && b.first_port <= a.last_port
            });
            if let Some(j) = overlap {
                return Err(bad(
                    format!("external.snat[{i}]"),
                    format!(
                        "ports {}-{} of {} overlap external.snat[{j}]",
                        a.first_port, a.last_port, a.ip
                    ),
                ));
            }
        }
        for (what, list) in [
            ("ephemeral", &self.external.ephemeral),
            ("floating", &self.external.floating),
        ] {
            for (i, a) in list.iter().enumerate() {
                if !has(a) {
                    return Err(bad(
                        format!("external.{what}[{i}]"),
                        format!("{a} has no matching guest address family"),
                    ));
                }
            }
        }
        self.check_prefixes(&has)?;
        for (i, r) in self.firewall.iter().enumerate() {
            r.validate()
                .map_err(|e| bad(format!("firewall[{i}].{}", e.field), e.problem))?;
        }
        for (i, r) in self.routes.iter().enumerate() {
            r.validate()
                .map_err(|e| bad(format!("routes[{i}].{}", e.field), e.problem))?;
        }
        if self.limits.flows == 0 || self.limits.flows > 4 << 20 {
            return Err(bad(
                "limits.flows",
                format!("{} is out of range 1..=4194304", self.limits.flows),
            ));
        }
        if let Some(r) = &self.rate_limit {
            r.validate()
                .map_err(|e| bad(format!("rate_limit.{}", e.field), e.problem))?;
        }
        Ok(())
    }
}

impl VnicConfig {
    /// Attached subnets (private and external) and transit prefixes: of a
    /// family the guest has, not the default route, and not overlapping
    /// one another (one prefix, one meaning: an address in two would be
    /// both translated-never and internet-only, or in and out at once).
    fn check_prefixes(&self, has: &dyn Fn(&IpAddr) -> bool) -> Result<(), ConfigError> {
        let all: Vec<(String, IpCidr)> = (self.attached_subnets.iter())
            .enumerate()
            .map(|(i, s)| (format!("attached_subnets[{i}]"), *s))
            .chain(
                (self.external_subnets.iter())
                    .enumerate()
                    .map(|(i, s)| (format!("external_subnets[{i}]"), *s)),
            )
            .chain(
                (self.transit_ips.iter())
                    .enumerate()
                    .map(|(i, t)| (format!("transit_ips[{i}].cidr"), t.cidr)),
            )
            .collect();
        for (i, (f, s)) in all.iter().enumerate() {
            if !has(&s.addr()) {
                return Err(bad(
                    f.clone(),
                    format!("{s} has no matching guest address family"),
                ));
            }
            if s.prefix_len() == 0 {
                return Err(bad(
                    f.clone(),
                    format!("{s} is every address; name a narrower prefix"),
                ));
            }
            if let Some((g, o)) = all[..i].iter().find(|(_, o)| overlaps(s, o)) {
                return Err(bad(f.clone(), format!("{s} overlaps {g} ({o})")));
            }
        }
        Ok(())
    }
}

/// Whether two prefixes share an address (one contains the other).
pub fn overlaps(a: &IpCidr, b: &IpCidr) -> bool {
    a.contains(b.addr()) || b.contains(a.addr())
}

impl VnicConfig {
    /// Checks that the guest's frames, tunnelled, fit the underlay's MTU:
    /// Ethernet 14 + the guest MTU + IPv6 40 + UDP 8 + Geneve 8 + the
    /// 4-byte external option sluice may add.
    pub fn check_underlay_mtu(&self, underlay_mtu: u16) -> Result<(), ConfigError> {
        let max = overlay::max_inner_frame(underlay_mtu, 4);
        if 14 + usize::from(self.mtu) > max {
            return Err(bad(
                "mtu",
                format!(
                    "{} does not fit the underlay MTU {underlay_mtu} with the tunnel (at most {})",
                    self.mtu,
                    max.saturating_sub(14)
                ),
            ));
        }
        Ok(())
    }
}

fn check_family(
    name: &str,
    addr: IpAddr,
    subnet: &IpCidr,
    gateway: IpAddr,
    v4: bool,
) -> Result<(), ConfigError> {
    if subnet.addr().is_ipv4() != v4 {
        return Err(bad(
            format!("{name}.subnet"),
            format!("{subnet} is not an {name} prefix"),
        ));
    }
    let (min, max) = if v4 { (8, 30) } else { (8, 126) };
    if !(min..=max).contains(&subnet.prefix_len()) {
        return Err(bad(
            format!("{name}.subnet"),
            format!(
                "prefix length /{} is out of range /{min}../{max}",
                subnet.prefix_len()
            ),
        ));
    }
    if !subnet.contains(addr) {
        return Err(bad(
            format!("{name}.addr"),
            format!("{addr} is outside {name}.subnet {subnet}"),
        ));
    }
    if !subnet.contains(gateway) {
        return Err(bad(
            format!("{name}.gateway"),
            format!("{gateway} is outside {name}.subnet {subnet}"),
        ));
    }
    if addr == gateway {
        return Err(bad(
            format!("{name}.gateway"),
            format!("{gateway} is the guest's own address"),
        ));
    }
    if addr == subnet.addr() {
        return Err(bad(
            format!("{name}.addr"),
            format!("{addr} is the subnet's network address"),
        ));
    }
    Ok(())
}

/// RFC 1035 §2.3.1 names: labels of letters, digits and hyphens, at most
/// 63 bytes each and 253 in all.
fn check_dns_name(field: &str, name: &str) -> Result<(), ConfigError> {
    let ok_label = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if name.is_empty() || name.len() > 253 || !name.split('.').all(ok_label) {
        return Err(bad(field, format!("'{name}' is not a valid DNS name")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn vm1() -> VnicConfig {
        serde_json::from_str(
            r#"{
                "name": "vm1",
                "guest_mac": "a8:40:25:00:00:01",
                "gateway_mac": "a8:40:25:ff:ff:01",
                "vni": 7777,
                "ipv4": { "addr": "10.0.0.5", "subnet": "10.0.0.0/24", "gateway": "10.0.0.1" },
                "ipv6": { "addr": "fd00:1::5", "subnet": "fd00:1::/64", "gateway": "fd00:1::1" },
                "dhcp": { "dns4": ["10.0.0.2"], "domain": "vpc.internal", "hostname": "vm1" },
                "external": { "snat": [{ "ip": "203.0.113.10", "first_port": 1024, "last_port": 2047 }] }
            }"#,
        )
        .unwrap()
    }

    #[test]
    fn a_good_config_validates_and_round_trips() {
        let c = vm1();
        c.validate().unwrap();
        let back: VnicConfig = serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
        assert_eq!(back, c);
        assert_eq!(c.mtu, 1500);
        assert_eq!(c.limits.flows, 65_536);
    }

    #[test]
    fn every_bad_field_is_named() {
        type Breaker = Box<dyn Fn(&mut VnicConfig)>;
        let cases: Vec<(&str, Breaker)> = vec![
            ("name", Box::new(|c| c.name = "bad name".into())),
            ("name", Box::new(|c| c.name = String::new())),
            ("name", Box::new(|c| c.name = ".".into())),
            ("name", Box::new(|c| c.name = "..".into())),
            (
                "guest_mac",
                Box::new(|c| c.guest_mac = MacAddr([1, 0, 0, 0, 0, 1])),
            ),
            ("gateway_mac", Box::new(|c| c.gateway_mac = c.guest_mac)),
            (
                "ipv4.addr",
                Box::new(|c| c.ipv4.as_mut().unwrap().addr = "10.1.0.5".parse().unwrap()),
            ),
            (
                "ipv4.gateway",
                Box::new(|c| c.ipv4.as_mut().unwrap().gateway = "10.0.0.5".parse().unwrap()),
            ),
            (
                "ipv4.subnet",
                Box::new(|c| c.ipv4.as_mut().unwrap().subnet = "fd00::/64".parse().unwrap()),
            ),
            (
                "ipv6.addr",
                Box::new(|c| c.ipv6.as_mut().unwrap().addr = "fd00:2::5".parse().unwrap()),
            ),
            ("mtu", Box::new(|c| c.mtu = 9999)),
            ("mtu", Box::new(|c| c.mtu = 1000)),
            ("dhcp.lease_secs", Box::new(|c| c.dhcp.lease_secs = 5)),
            (
                "dhcp.domain",
                Box::new(|c| c.dhcp.domain = Some("bad_domain!".into())),
            ),
            (
                "external.snat[0]",
                Box::new(|c| c.external.snat[0].last_port = 100),
            ),
            (
                "external.floating[0]",
                Box::new(|c| {
                    c.ipv6 = None;
                    c.external.floating.push("2001:db8::1".parse().unwrap());
                }),
            ),
            ("limits.flows", Box::new(|c| c.limits.flows = 0)),
            (
                "rate_limit.burst_packets",
                Box::new(|c| {
                    c.rate_limit = Some(RateLimit {
                        packets_per_sec: 100,
                        burst_packets: Some(0),
                        ..RateLimit::default()
                    })
                }),
            ),
            (
                "external.snat[1]",
                Box::new(|c| {
                    let mut again = c.external.snat[0].clone();
                    again.first_port = 2000;
                    again.last_port = 3000;
                    c.external.snat.push(again);
                }),
            ),
            (
                "ipv4",
                Box::new(|c| {
                    c.ipv4 = None;
                    c.ipv6 = None;
                }),
            ),
        ];
        for (field, break_it) in cases {
            let mut c = vm1();
            break_it(&mut c);
            let e = c.validate().expect_err(field);
            assert_eq!(e.field, field, "{e}");
            assert!(!e.problem.is_empty());
        }
    }

    #[test]
    fn unknown_fields_and_bad_syntax_are_refused() {
        let mut v: serde_json::Value = serde_json::to_value(vm1()).unwrap();
        v["colour"] = "blue".into();
        let e = serde_json::from_value::<VnicConfig>(v)
            .unwrap_err()
            .to_string();
        assert!(e.contains("colour"), "{e}");
        let mut v: serde_json::Value = serde_json::to_value(vm1()).unwrap();
        v["guest_mac"] = "a8:40:25:00:01".into();
        let e = serde_json::from_value::<VnicConfig>(v)
            .unwrap_err()
            .to_string();
        assert!(e.contains("a8:40:25:00:01"), "{e}");
        let mut v: serde_json::Value = serde_json::to_value(vm1()).unwrap();
        v["vni"] = 16_777_216.into();
        let e = serde_json::from_value::<VnicConfig>(v)
            .unwrap_err()
            .to_string();
        assert!(e.contains("16777216"), "{e}");
    }

    #[test]
    fn mac_syntax() {
        assert_eq!(
            "A8:40:25:00:00:0f".parse::<MacAddr>().unwrap().to_string(),
            "a8:40:25:00:00:0f"
        );
        for bad in [
            "",
            "a8:40:25:00:00",
            "a8:40:25:00:00:01:02",
            "a8-40-25-00-00-01",
            "zz:40:25:00:00:01",
            "a8:40:25:00:00:1",
        ] {
            assert!(bad.parse::<MacAddr>().is_err(), "{bad}");
        }
    }
}
