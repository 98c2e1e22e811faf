//! Building a vNIC's port: the layers in order (outbound: gateway,
//! firewall, router, nat, overlay; inbound the reverse), each programmed
//! from the [`VnicConfig`].

use crate::config::{ConfigError, VnicConfig};
use crate::nat::Nat;
use crate::router::{RouteClass, RouteEntry, RouteTarget};
use crate::{firewall, gateway, nat, router};
use dataplane::port::PortError;
use dataplane::{Clock, ParseMode, Port, PortConfig};
use overlay::layer::{self as overlay_layer, HostOverlay};

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("invalid vNIC configuration: {0}")]
    Config(#[from] ConfigError),
    #[error("building the port: {0}")]
    Port(#[from] PortError),
    #[error("the {field} of a vNIC cannot change on a live port; delete and re-create it")]
    Immutable { field: &'static str },
}

/// A vNIC's port with what reconfiguring it needs: its configuration, the
/// host it runs on, and the NAT state that must outlive a rule change
/// (ports handed out to live flows).
pub struct VnicPort {
    pub port: Port,
    config: VnicConfig,
    host: HostOverlay,
    nat: Nat,
}

/// The routes a vNIC gets whatever its configuration says: its own
/// subnets are VPC subnets (system routes, which custom routes of the same
/// length cannot override).
pub fn system_routes(c: &VnicConfig) -> Vec<RouteEntry> {
    let subnets = c
        .ipv4
        .iter()
        .map(|v| v.subnet)
        .chain(c.ipv6.iter().map(|v| v.subnet));
    subnets
        .map(|s| RouteEntry {
            dest: s,
            target: RouteTarget::VpcSubnet(s),
            class: RouteClass::System,
        })
        .collect()
}

impl VnicPort {
    /// Builds the port for `c` on a host. The configuration is validated
    /// first; nothing is built from a bad one.
    pub fn build(
        c: &VnicConfig,
        host: &HostOverlay,
        clock: Box<dyn Clock>,
    ) -> Result<VnicPort, BuildError> {
        c.validate()?;
        let mut pc = PortConfig::new(&c.name);
        pc.flow_limit = c.limits.flows;
        pc.inbound = ParseMode::Geneve;
        pc.mtu = Some(gateway::layer::mtu_check(c));
        pc.source_mac = Some(c.guest_mac.0);
        let mut port = Port::with_clock(pc, clock);
        port.set_rate_limit(c.rate_limit);
        port.add_layer(gateway::layer::layer_config())?;
        port.add_layer(firewall::layer_config())?;
        port.add_layer(router::layer_config())?;
        port.add_layer(nat::layer_config())?;
        port.add_layer(overlay_layer::layer_config())?;
        let nat = Nat::new(
            &c.external,
            c.ipv4.as_ref().map(|v| v.addr),
            c.ipv6.as_ref().map(|v| v.addr),
        );
        let mut v = VnicPort {
            port,
            config: c.clone(),
            host: host.clone(),
            nat,
        };
        v.program()?;
        Ok(v)
    }

    pub fn config(&self) -> &VnicConfig {
        &self.config
    }

    pub fn nat(&self) -> &Nat {
        &self.nat
    }

    /// Applies a new configuration to the live port: every layer's rules
    /// are replaced, each in one step; flows the new rules refuse stop at
    /// their next packet, the others keep their state (NAT ports too).
    pub fn reconfigure(&mut self, c: &VnicConfig) -> Result<(), BuildError> {
        c.validate()?;
        if c.vni != self.config.vni {
            return Err(BuildError::Immutable { field: "vni" });
        }
        if c.limits != self.config.limits {
            return Err(BuildError::Immutable { field: "limits" });
        }
        if c.mtu != self.config.mtu {
            return Err(BuildError::Immutable { field: "mtu" });
        }
        if c.rate_limit != self.config.rate_limit {
            // Only on a change: a firewall edit must not refill the buckets.
            self.port.set_rate_limit(c.rate_limit);
        }
        self.nat.update(
            &c.external,
            c.ipv4.as_ref().map(|v| v.addr),
            c.ipv6.as_ref().map(|v| v.addr),
        );
        self.config = c.clone();
        self.program()
    }

    fn program(&mut self) -> Result<(), BuildError> {
        let c = &self.config;
        let port = &mut self.port;
        gateway::layer::install(port, c)?;
        firewall::install(port, &c.firewall)?;
        let mut routes = system_routes(c);
        routes.extend(c.routes.iter().cloned());
        let gateway_ll = c
            .ipv6
            .is_some()
            .then(|| gateway::link_local_from_mac(c.gateway_mac.0));
        let next_hops = router::install(port, &routes, gateway_ll)?;
        self.nat.install_with(port, &c.external_subnets)?;
        // What the router sends through a next hop may come back from it
        // (the LAN behind a router guest's transit prefixes).
        let return_paths = (routes.iter())
            .filter_map(|r| match r.target {
                RouteTarget::Ip(nh) => Some((r.dest, nh)),
                _ => None,
            })
            .collect();
        overlay_layer::install_with_return_paths(
            port,
            c.vni,
            c.gateway_mac.0,
            &self.host,
            next_hops,
            return_paths,
        )?;
        Ok(())
    }
}
