//! The firewall layer: the tenant's rules for what may reach the guest and
//! what the guest may reach.
//!
//! Stateful: a flow a rule allows allows its replies, whichever direction
//! opened it. Defaults: outbound allowed (statefully, so replies come
//! back), inbound denied. The whole rule-set is replaced in one step
//! ([`install`]); flows the new set no longer allows stop passing at their
//! next packet (the engine re-checks every flow after a rule change).

use crate::meta;
use dataplane::{
    Action, DefaultAction, Direction, IpCidr, LayerConfig, Port, PortRange, Predicate, Rule, Vni,
};
use serde::{Deserialize, Serialize};

/// The layer's name in dumps and the API.
pub const LAYER: &str = "firewall";

/// The priority of the built-in "allow outbound" rule: after every tenant
/// rule, which may use 0..=[`MAX_PRIORITY`].
pub const DEFAULT_OUT_PRIORITY: u16 = u16::MAX;
pub const MAX_PRIORITY: u16 = u16::MAX - 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum FwDirection {
    In,
    Out,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum FwAction {
    Allow,
    Deny,
}

/// Which remote hosts a rule is about: the destination of outbound
/// packets, the source of inbound ones (an inbound rule's multicast
/// address or subnet is the group the datagram is sent to).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum HostFilter {
    #[default]
    Any,
    Ip(core::net::IpAddr),
    Subnet(IpCidr),
    /// Hosts of the VPC with this VNI (inbound rules only, for now).
    Vni(Vni),
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum ProtoFilter {
    #[default]
    Any,
    Tcp,
    Udp,
    Icmp,
    Icmp6,
    /// Any IP protocol number.
    Number(u8),
}

/// Destination ports (the remote service outbound, the guest's inbound).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum PortFilter {
    #[default]
    Any,
    List(Vec<u16>),
    Range {
        first: u16,
        last: u16,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct FirewallRule {
    pub direction: FwDirection,
    pub priority: u16,
    pub action: FwAction,
    #[serde(default)]
    pub hosts: HostFilter,
    #[serde(default)]
    pub protocol: ProtoFilter,
    #[serde(default)]
    pub ports: PortFilter,
}

/// A problem with one field of a rule (the caller prefixes the rule's
/// position).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: &'static str,
    pub problem: String,
}

/// Port lists longer than this are refused: a rule is not a port scan.
pub const MAX_PORT_LIST: usize = 64;

impl FirewallRule {
    pub fn validate(&self) -> Result<(), FieldError> {
        let err = |field, problem: String| Err(FieldError { field, problem });
        if self.priority > MAX_PRIORITY {
            return err(
                "priority",
                format!(
                    "{} is above {MAX_PRIORITY} (reserved for the default rule)",
                    self.priority
                ),
            );
        }
        if let (HostFilter::Vni(_), FwDirection::Out) = (&self.hosts, self.direction) {
            return err(
                "hosts",
                "a VNI filter is supported on inbound rules only".to_string(),
            );
        }
        match &self.ports {
            PortFilter::Any => {}
            PortFilter::List(l) if l.is_empty() || l.len() > MAX_PORT_LIST => {
                return err(
                    "ports",
                    format!(
                        "a port list needs 1 to {MAX_PORT_LIST} ports, got {}",
                        l.len()
                    ),
                );
            }
            PortFilter::Range { first, last } if first > last => {
                return err("ports", format!("range {first}-{last} is empty"));
            }
            _ => {
                if !matches!(self.protocol, ProtoFilter::Tcp | ProtoFilter::Udp) {
                    return err(
                        "ports",
                        format!("ports need protocol tcp or udp, not {:?}", self.protocol)
                            .to_lowercase(),
                    );
                }
            }
        }
        Ok(())
    }

    /// The engine rule this firewall rule compiles to.
    pub fn to_rule(&self) -> (Direction, Rule) {
        let dir = match self.direction {
            FwDirection::In => Direction::In,
            FwDirection::Out => Direction::Out,
        };
        let action = match self.action {
            FwAction::Allow => Action::StatefulAllow,
            FwAction::Deny => Action::Deny,
        };
        let mut r = Rule::new(self.priority, action);
        // Inbound, a multicast address or subnet names the group the
        // datagram is sent to: no packet comes from a group (RFC 1112 §4,
        // RFC 4291 §2.7), so that is the only thing it can mean.
        let hosts = |set: Vec<IpCidr>| match dir {
            Direction::Out => Predicate::DstIp(set),
            Direction::In if set.iter().all(is_group) => Predicate::DstIp(set),
            Direction::In => Predicate::SrcIp(set),
        };
        match &self.hosts {
            HostFilter::Any => {}
            HostFilter::Ip(a) => r = r.with(hosts(vec![IpCidr::host(*a)])),
            HostFilter::Subnet(s) => r = r.with(hosts(vec![*s])),
            HostFilter::Vni(v) => r = r.with(Predicate::Meta(meta::SRC_VNI, u64::from(v.get()))),
        }
        let proto = match self.protocol {
            ProtoFilter::Any => None,
            ProtoFilter::Tcp => Some(6),
            ProtoFilter::Udp => Some(17),
            ProtoFilter::Icmp => Some(1),
            ProtoFilter::Icmp6 => Some(58),
            ProtoFilter::Number(n) => Some(n),
        };
        if let Some(p) = proto {
            r = r.with(Predicate::Proto(vec![p]));
        }
        match &self.ports {
            PortFilter::Any => {}
            PortFilter::List(l) => {
                r = r.with(Predicate::DstPort(
                    l.iter().map(|p| PortRange::single(*p)).collect(),
                ))
            }
            PortFilter::Range { first, last } => {
                r = r.with(Predicate::DstPort(vec![PortRange {
                    first: *first,
                    last: *last,
                }]))
            }
        }
        (dir, r)
    }
}

/// Whether a CIDR lies wholly inside multicast (224.0.0.0/4, ff00::/8).
fn is_group(c: &IpCidr) -> bool {
    match c.addr() {
        core::net::IpAddr::V4(a) => a.is_multicast() && c.prefix_len() >= 4,
        core::net::IpAddr::V6(a) => a.is_multicast() && c.prefix_len() >= 8,
    }
}

/// The layer as a port is built with it: inbound denied by default.
pub fn layer_config() -> LayerConfig {
    // Outbound's default is the built-in stateful rule (see `install`);
    // the layer default only catches what that rule cannot (nothing).
    LayerConfig::new(LAYER, DefaultAction::Deny, DefaultAction::Allow)
}

/// Replaces the port's firewall rules with `rules` in one step. The caller
/// has validated them (`VnicConfig::validate` does).
pub fn install(port: &mut Port, rules: &[FirewallRule]) -> Result<(), dataplane::port::PortError> {
    let mut inbound = Vec::new();
    let mut outbound = vec![Rule::new(DEFAULT_OUT_PRIORITY, Action::StatefulAllow)];
    for r in rules {
        match r.to_rule() {
            (Direction::In, rule) => inbound.push(rule),
            (Direction::Out, rule) => outbound.push(rule),
        }
    }
    port.set_rules(LAYER, inbound, outbound).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(json: &str) -> FirewallRule {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn json_forms() {
        let r = rule(
            r#"{"direction":"in","priority":10,"action":"allow","hosts":{"subnet":"10.0.0.0/24"},"protocol":"tcp","ports":{"list":[22,80]}}"#,
        );
        r.validate().unwrap();
        assert_eq!(r.hosts, HostFilter::Subnet("10.0.0.0/24".parse().unwrap()));
        let r =
            rule(r#"{"direction":"out","priority":1,"action":"deny","protocol":{"number":47}}"#);
        assert_eq!(r.protocol, ProtoFilter::Number(47));
        assert_eq!(r.hosts, HostFilter::Any);
        let r = rule(
            r#"{"direction":"in","priority":1,"action":"allow","protocol":"udp","ports":{"range":{"first":5000,"last":6000}}}"#,
        );
        r.validate().unwrap();
        assert!(serde_json::from_str::<FirewallRule>(
            r#"{"direction":"sideways","priority":1,"action":"allow"}"#
        )
        .is_err());
        assert!(serde_json::from_str::<FirewallRule>(
            r#"{"direction":"in","priority":1,"action":"allow","colour":1}"#
        )
        .is_err());
    }

    #[test]
    fn validation_names_the_field() {
        let base = rule(r#"{"direction":"in","priority":1,"action":"allow","protocol":"tcp"}"#);
        let cases: Vec<(&str, FirewallRule)> = vec![
            (
                "priority",
                FirewallRule {
                    priority: u16::MAX,
                    ..base.clone()
                },
            ),
            (
                "ports",
                FirewallRule {
                    ports: PortFilter::List(vec![]),
                    ..base.clone()
                },
            ),
            (
                "ports",
                FirewallRule {
                    ports: PortFilter::Range { first: 9, last: 1 },
                    ..base.clone()
                },
            ),
            (
                "ports",
                FirewallRule {
                    ports: PortFilter::List(vec![1]),
                    protocol: ProtoFilter::Icmp,
                    ..base.clone()
                },
            ),
            (
                "hosts",
                FirewallRule {
                    hosts: HostFilter::Vni(Vni::new(5).unwrap()),
                    direction: FwDirection::Out,
                    ..base.clone()
                },
            ),
        ];
        for (field, r) in cases {
            assert_eq!(r.validate().unwrap_err().field, field, "{r:?}");
        }
    }

    #[test]
    fn compiles_to_engine_predicates() {
        let r = rule(
            r#"{"direction":"out","priority":3,"action":"allow","hosts":{"ip":"192.0.2.9"},"protocol":"tcp","ports":{"list":[443]}}"#,
        );
        let (dir, e) = r.to_rule();
        assert_eq!(dir, Direction::Out);
        assert_eq!(e.priority, 3);
        assert!(matches!(e.action, Action::StatefulAllow));
        assert_eq!(
            e.predicates,
            vec![
                Predicate::DstIp(vec!["192.0.2.9/32".parse().unwrap()]),
                Predicate::Proto(vec![6]),
                Predicate::DstPort(vec![PortRange::single(443)]),
            ]
        );
        let (dir, e) = rule(
            r#"{"direction":"in","priority":3,"action":"deny","hosts":{"subnet":"10.0.0.0/8"}}"#,
        )
        .to_rule();
        assert_eq!(dir, Direction::In);
        assert!(matches!(e.action, Action::Deny));
        assert_eq!(
            e.predicates,
            vec![Predicate::SrcIp(vec!["10.0.0.0/8".parse().unwrap()])]
        );
    }
}
