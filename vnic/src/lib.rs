//! The VPC policy of one vNIC: what `vnic` builds a port from.
//!
//! - [`config`]: the vNIC's configuration as the control plane sends it,
//!   validated field by field.
//! - [`gateway`]: the virtual gateway's replies to the guest's ARP, NDP,
//!   DHCPv4, DHCPv6 and ICMP echo (pure builders; hairpin actions wrap them).
//! - [`firewall`]: the tenant's stateful rules.
//! - [`router`]: longest-prefix routing, its decision passed on as metadata.
//! - [`nat`]: floating, ephemeral and source NAT for internet traffic.
//! - the overlay layer (Geneve tunnels by V2P and V2B, sender checks
//!   inbound) is the `overlay` crate's [`overlay::layer`].
//! - [`port`]: the builder that puts the layers in order (outbound:
//!   gateway, firewall, router, nat, overlay).
#![deny(unsafe_code)]

pub mod config;
pub mod firewall;
pub mod gateway;
pub mod meta;
pub mod nat;
pub mod port;
pub mod router;
