//! Moving frames: guest and uplink backends behind one small trait
//! ([`backend::Backend`]), and the [`switch::Switch`] that connects them
//! to the vNIC ports. No policy is decided here: the ports do that.
//!
//! Today: the switch, an in-memory backend (the test double) and a pcap
//! backend. Still to come (issue 5): TAP and vhost-user guests, AF_PACKET
//! and DPDK uplinks, worker threads owning ports, segmentation of large
//! guest segments.

pub mod backend;
#[cfg(feature = "dpdk")]
pub mod dpdk;
pub mod pcap;
pub mod switch;
