//! IP prefixes (CIDRs) and port ranges, as rule predicates use them.

use core::fmt;
use core::net::IpAddr;
use core::str::FromStr;
use serde::{Deserialize, Serialize};

/// An IPv4 or IPv6 prefix. The address is kept masked, so two spellings of
/// one prefix compare equal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct IpCidr {
    addr: IpAddr,
    prefix: u8,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    #[error("prefix length {prefix} is out of range 0..={max}")]
    PrefixLen { prefix: u32, max: u8 },
    #[error("'{0}' is not an IP prefix (expected ADDR/LEN, e.g. 10.0.0.0/24)")]
    Syntax(String),
}

impl IpCidr {
    pub fn new(addr: IpAddr, prefix: u8) -> Result<Self, CidrError> {
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if prefix > max {
            return Err(CidrError::PrefixLen {
                prefix: prefix.into(),
                max,
            });
        }
        Ok(IpCidr {
            addr: mask(addr, prefix),
            prefix,
        })
    }

    /// The prefix that holds exactly `addr`.
    pub fn host(addr: IpAddr) -> Self {
        IpCidr {
            addr,
            prefix: if addr.is_ipv4() { 32 } else { 128 },
        }
    }

    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    pub fn prefix_len(&self) -> u8 {
        self.prefix
    }

    #[inline]
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(a)) => {
                let m = v4_mask(self.prefix);
                u32::from(a) & m == u32::from(net)
            }
            (IpAddr::V6(net), IpAddr::V6(a)) => {
                let m = v6_mask(self.prefix);
                u128::from(a) & m == u128::from(net)
            }
            _ => false,
        }
    }
}

fn v4_mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix))
    }
}

fn v6_mask(prefix: u8) -> u128 {
    if prefix == 0 {
        0
    } else {
        u128::MAX << (128 - u32::from(prefix))
    }
}

fn mask(addr: IpAddr, prefix: u8) -> IpAddr {
    match addr {
        IpAddr::V4(a) => IpAddr::V4((u32::from(a) & v4_mask(prefix)).into()),
        IpAddr::V6(a) => IpAddr::V6((u128::from(a) & v6_mask(prefix)).into()),
    }
}

impl fmt::Display for IpCidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl FromStr for IpCidr {
    type Err = CidrError;
    fn from_str(s: &str) -> Result<Self, CidrError> {
        let syntax = || CidrError::Syntax(s.to_string());
        let (a, p) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = a.parse().map_err(|_| syntax())?;
        match p {
            None => Ok(IpCidr::host(addr)),
            Some(p) => {
                let p: u32 = p.parse().map_err(|_| syntax())?;
                let max = if addr.is_ipv4() { 32 } else { 128 };
                let p = u8::try_from(p)
                    .ok()
                    .filter(|p| *p <= max)
                    .ok_or(CidrError::PrefixLen { prefix: p, max })?;
                IpCidr::new(addr, p)
            }
        }
    }
}

impl TryFrom<String> for IpCidr {
    type Error = CidrError;
    fn try_from(s: String) -> Result<Self, CidrError> {
        s.parse()
    }
}

impl From<IpCidr> for String {
    fn from(c: IpCidr) -> String {
        c.to_string()
    }
}

/// An inclusive range of L4 ports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PortRange {
    pub first: u16,
    pub last: u16,
}

impl PortRange {
    pub const ANY: PortRange = PortRange {
        first: 0,
        last: u16::MAX,
    };

    pub fn new(first: u16, last: u16) -> Result<Self, PortRangeError> {
        if first > last {
            return Err(PortRangeError { first, last });
        }
        Ok(PortRange { first, last })
    }

    pub fn single(p: u16) -> Self {
        PortRange { first: p, last: p }
    }

    #[inline]
    pub fn contains(&self, p: u16) -> bool {
        self.first <= p && p <= self.last
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("port range {first}-{last} is empty: the first port is above the last")]
pub struct PortRangeError {
    pub first: u16,
    pub last: u16,
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.first == self.last {
            write!(f, "{}", self.first)
        } else {
            write!(f, "{}-{}", self.first, self.last)
        }
    }
}

#[cfg(feature = "schema")]
impl schemars::JsonSchema for IpCidr {
    fn schema_name() -> String {
        "IpCidr".to_string()
    }

    fn json_schema(_: &mut schemars::gen::SchemaGenerator) -> schemars::schema::Schema {
        string_schema("An IPv4 or IPv6 prefix, ADDR/LEN (e.g. 10.0.0.0/24, fd00::/64).")
    }
}

/// A JSON Schema for a string with a description (for types serialised
/// as strings).
#[cfg(feature = "schema")]
pub fn string_schema(description: &str) -> schemars::schema::Schema {
    use schemars::schema::{InstanceType, Metadata, SchemaObject};
    SchemaObject {
        instance_type: Some(InstanceType::String.into()),
        metadata: Some(Box::new(Metadata {
            description: Some(description.to_string()),
            ..Default::default()
        })),
        ..Default::default()
    }
    .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_parse_mask_contains() {
        let c: IpCidr = "10.1.2.3/16".parse().unwrap();
        assert_eq!(c.to_string(), "10.1.0.0/16");
        assert!(c.contains("10.1.255.1".parse().unwrap()));
        assert!(!c.contains("10.2.0.1".parse().unwrap()));
        assert!(!c.contains("::1".parse().unwrap()));
        let any: IpCidr = "0.0.0.0/0".parse().unwrap();
        assert!(any.contains("203.0.113.9".parse().unwrap()));
        let v6: IpCidr = "fd00:1::/64".parse().unwrap();
        assert!(v6.contains("fd00:1::99".parse().unwrap()));
        assert!(!v6.contains("fd00:2::99".parse().unwrap()));
        let host: IpCidr = "192.0.2.1".parse().unwrap();
        assert_eq!(host.prefix_len(), 32);
    }

    #[test]
    fn cidr_errors_name_the_problem() {
        assert_eq!(
            "10.0.0.0/33".parse::<IpCidr>().unwrap_err(),
            CidrError::PrefixLen {
                prefix: 33,
                max: 32
            }
        );
        assert!(matches!(
            "10.0.0/8".parse::<IpCidr>(),
            Err(CidrError::Syntax(_))
        ));
        assert!(matches!(
            "::/129".parse::<IpCidr>(),
            Err(CidrError::PrefixLen { .. })
        ));
        assert!("10.0.0.0/99999999999".parse::<IpCidr>().is_err());
    }

    #[test]
    fn port_range() {
        let r = PortRange::new(1000, 2000).unwrap();
        assert!(r.contains(1000) && r.contains(2000) && !r.contains(999));
        assert!(PortRange::new(5, 4).is_err());
        assert_eq!(PortRange::single(80).to_string(), "80");
    }
}
