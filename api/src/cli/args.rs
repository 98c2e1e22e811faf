//! The small argument syntaxes of `sluiceadm`, as clap value parsers: a
//! bad value is a usage error (exit 2) naming what was expected, before
//! any call is made.
//!
//! | syntax | example |
//! |---|---|
//! | hosts | `any`, `ip=10.0.0.6`, `subnet=10.0.0.0/24`, `vni=7777` |
//! | protocol | `any`, `tcp`, `udp`, `icmp`, `icmp6`, `47` |
//! | ports | `any`, `22,80,443`, `8000-8080` |
//! | route target | `drop`, `internet_gateway`, `ip=10.0.0.9`, `vpc_subnet=10.1.0.0/24` |
//! | SNAT | `203.0.113.10:2048-4095`, `[2001:db8::10]:2048-4095` |
//! | replay input | `uplink=in.pcap`, `vm1=guest.pcap` |

use dataplane::{IpCidr, Vni};
use std::net::{IpAddr, Ipv6Addr};
use std::path::PathBuf;
use vnic::config::{MacAddr, SnatConfig};
use vnic::firewall::{HostFilter, PortFilter, ProtoFilter};
use vnic::router::RouteTarget;

pub fn vni(s: &str) -> Result<u32, String> {
    let v: u32 = s
        .parse()
        .map_err(|_| format!("'{s}' is not a VNI (a number 0..=16777215)"))?;
    Vni::new(v).map(Vni::get).map_err(|e| e.to_string())
}

pub fn mac(s: &str) -> Result<MacAddr, String> {
    s.parse().map_err(|e: vnic::config::MacError| e.to_string())
}

pub fn cidr(s: &str) -> Result<IpCidr, String> {
    s.parse()
        .map_err(|e: dataplane::addr::CidrError| e.to_string())
}

pub fn hosts(s: &str) -> Result<HostFilter, String> {
    let bad = || {
        format!("'{s}' is not a host filter (any, ip=ADDR, subnet=ADDR/LEN or vni=N; e.g. subnet=10.0.0.0/24)")
    };
    if s == "any" {
        return Ok(HostFilter::Any);
    }
    match s.split_once('=') {
        Some(("ip", a)) => a.parse().map(HostFilter::Ip).map_err(|_| bad()),
        Some(("subnet", c)) => cidr(c).map(HostFilter::Subnet),
        Some(("vni", v)) => {
            let v = vni(v)?;
            Vni::new(v).map(HostFilter::Vni).map_err(|e| e.to_string())
        }
        _ => Err(bad()),
    }
}

pub fn protocol(s: &str) -> Result<ProtoFilter, String> {
    Ok(match s.to_ascii_lowercase().as_str() {
        "any" => ProtoFilter::Any,
        "tcp" => ProtoFilter::Tcp,
        "udp" => ProtoFilter::Udp,
        "icmp" => ProtoFilter::Icmp,
        "icmp6" | "icmpv6" => ProtoFilter::Icmp6,
        n => ProtoFilter::Number(n.parse().map_err(|_| {
            format!("'{s}' is not a protocol (any, tcp, udp, icmp, icmp6 or a number 0..=255)")
        })?),
    })
}

pub fn ports(s: &str) -> Result<PortFilter, String> {
    let port = |p: &str| {
        p.trim()
            .parse::<u16>()
            .map_err(|_| format!("'{p}' is not a port number (0..=65535)"))
    };
    if s == "any" {
        return Ok(PortFilter::Any);
    }
    if let Some((a, b)) = s.split_once('-') {
        let (first, last) = (port(a)?, port(b)?);
        if first > last {
            return Err(format!("range {first}-{last} is empty"));
        }
        return Ok(PortFilter::Range { first, last });
    }
    s.split(',')
        .map(port)
        .collect::<Result<Vec<u16>, String>>()
        .map(PortFilter::List)
}

pub fn route_target(s: &str) -> Result<RouteTarget, String> {
    let bad = || {
        format!(
            "'{s}' is not a route target (drop, internet_gateway, ip=ADDR or vpc_subnet=ADDR/LEN)"
        )
    };
    match s {
        "drop" => return Ok(RouteTarget::Drop),
        "internet_gateway" | "internet-gateway" | "igw" => return Ok(RouteTarget::InternetGateway),
        _ => {}
    }
    match s.split_once('=') {
        Some(("ip", a)) => a.parse().map(RouteTarget::Ip).map_err(|_| bad()),
        Some(("vpc_subnet" | "vpc-subnet", c)) => cidr(c).map(RouteTarget::VpcSubnet),
        _ => Err(bad()),
    }
}

/// `IP:FIRST-LAST` (an IPv6 address in brackets, or bare: the port range
/// is after the last colon).
pub fn snat(s: &str) -> Result<SnatConfig, String> {
    let bad = || format!("'{s}' is not a SNAT range (IP:FIRST-LAST, e.g. 203.0.113.10:2048-4095)");
    let (ip, range) = s.rsplit_once(':').ok_or_else(bad)?;
    let ip = ip.trim_start_matches('[').trim_end_matches(']');
    let ip: IpAddr = ip.parse().map_err(|_| bad())?;
    let (a, b) = range.split_once('-').ok_or_else(bad)?;
    let first_port = a.parse().map_err(|_| bad())?;
    let last_port = b.parse().map_err(|_| bad())?;
    Ok(SnatConfig {
        ip,
        first_port,
        last_port,
    })
}

/// V2B boundary endpoints, one argument (a type of its own: clap would
/// take a bare `Vec` for "the argument repeats").
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoints(pub Vec<Ipv6Addr>);

/// `ADDR[,ADDR..]`: V2B boundary endpoints.
pub fn endpoints(s: &str) -> Result<Endpoints, String> {
    s.split(',')
        .map(|a| {
            a.trim()
                .parse()
                .map_err(|_| format!("'{a}' is not an IPv6 underlay address"))
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Endpoints)
}

/// `NAME=FILE`: a replay input.
pub fn named_file(s: &str) -> Result<(String, PathBuf), String> {
    match s.split_once('=') {
        Some((n, f)) if !n.is_empty() && !f.is_empty() => Ok((n.to_string(), PathBuf::from(f))),
        _ => Err(format!(
            "'{s}' is not NAME=FILE (e.g. uplink=uplink.pcap or vm1=vm1.pcap)"
        )),
    }
}

/// TCP flags as letters (S, A, F, R, P).
pub fn tcp_flags(s: &str) -> Result<String, String> {
    match s.chars().find(|c| !"SAFRPsafrp".contains(*c)) {
        Some(c) => Err(format!("'{c}' is not a TCP flag (S, A, F, R, P)")),
        None => Ok(s.to_ascii_uppercase()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_syntaxes_parse() {
        assert_eq!(
            hosts("subnet=10.0.0.0/24"),
            Ok(HostFilter::Subnet("10.0.0.0/24".parse().unwrap()))
        );
        assert_eq!(
            hosts("ip=10.0.0.6"),
            Ok(HostFilter::Ip("10.0.0.6".parse().unwrap()))
        );
        assert!(hosts("vni=7777").is_ok());
        assert!(hosts("subnet=10.0.0.0/33").unwrap_err().contains("33"));
        assert!(hosts("10.0.0.0").is_err());
        assert_eq!(ports("22,80"), Ok(PortFilter::List(vec![22, 80])));
        assert_eq!(
            ports("8000-8080"),
            Ok(PortFilter::Range {
                first: 8000,
                last: 8080
            })
        );
        assert!(ports("80-22").is_err());
        assert!(ports("http").is_err());
        assert_eq!(protocol("47"), Ok(ProtoFilter::Number(47)));
        assert!(protocol("sctpx").is_err());
        assert_eq!(route_target("drop"), Ok(RouteTarget::Drop));
        assert_eq!(
            route_target("ip=10.0.0.9"),
            Ok(RouteTarget::Ip("10.0.0.9".parse().unwrap()))
        );
        assert!(route_target("vpc_subnet=10.1.0.0/24").is_ok());
        assert!(route_target("elsewhere").is_err());
        let s = snat("203.0.113.10:2048-4095").unwrap();
        assert_eq!((s.first_port, s.last_port), (2048, 4095));
        let s = snat("[2001:db8::10]:2048-4095").unwrap();
        assert_eq!(s.ip, "2001:db8::10".parse::<IpAddr>().unwrap());
        assert!(snat("203.0.113.10").is_err());
        assert!(vni("16777216").is_err());
        assert_eq!(
            named_file("vm1=a.pcap"),
            Ok(("vm1".into(), "a.pcap".into()))
        );
        assert!(named_file("a.pcap").is_err());
        assert_eq!(tcp_flags("sa"), Ok("SA".into()));
        assert!(tcp_flags("SX").is_err());
        assert_eq!(endpoints("fd00::1,fd00::2").unwrap().0.len(), 2);
    }
}
