//! Building a vNIC's port: the layers in order (outbound: gateway,
//! firewall, router, nat, overlay; inbound the reverse), each programmed
//! from the [`VnicConfig`].

use crate::config::{ConfigError, VnicConfig};
use crate::router::{RouteClass, RouteEntry, RouteTarget};
use crate::{firewall, gateway, router};
use dataplane::port::PortError;
use dataplane::{Clock, ParseMode, Port, PortConfig};
use overlay::layer::{self as overlay_layer, HostOverlay};

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("invalid vNIC configuration: {0}")]
    Config(#[from] ConfigError),
    #[error("building the port: {0}")]
    Port(#[from] PortError),
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

/// Builds the port for `c` on a host. The configuration is validated
/// first; nothing is built from a bad one.
pub fn build(
    c: &VnicConfig,
    host: &HostOverlay,
    clock: Box<dyn Clock>,
) -> Result<Port, BuildError> {
    c.validate()?;
    let mut pc = PortConfig::new(&c.name);
    pc.flow_limit = c.limits.flows;
    pc.inbound = ParseMode::Geneve;
    let mut port = Port::with_clock(pc, clock);
    port.add_layer(gateway::layer::layer_config())?;
    port.add_layer(firewall::layer_config())?;
    port.add_layer(router::layer_config())?;
    port.add_layer(dataplane::LayerConfig::new(
        "nat",
        dataplane::DefaultAction::Allow,
        dataplane::DefaultAction::Allow,
    ))?; // NAT_LAYER
    port.add_layer(overlay_layer::layer_config())?;
    program(&mut port, c, host)?;
    Ok(port)
}

/// (Re)programs every layer of an existing port from `c`.
pub fn program(port: &mut Port, c: &VnicConfig, host: &HostOverlay) -> Result<(), BuildError> {
    c.validate()?;
    gateway::layer::install(port, c)?;
    firewall::install(port, &c.firewall)?;
    let mut routes = system_routes(c);
    routes.extend(c.routes.iter().cloned());
    let next_hops = router::install(port, &routes)?;
    // NAT_INSTALL
    overlay_layer::install(port, c.vni, c.gateway_mac.0, host, next_hops)?;
    Ok(())
}
