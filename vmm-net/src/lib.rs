//! Moving frames: guest and uplink backends behind one small trait
//! ([`backend::Backend`]), and the [`switch::Switch`] that connects them
//! to the vNIC ports. No policy is decided here: the ports do that.
//!
//! Today: the switch and an in-memory backend (the test double). Still to
//! come (issue 5): TAP and vhost-user guests, AF_PACKET, DPDK and pcap
//! uplinks, worker threads owning ports, segmentation of large guest
//! segments.

pub mod backend;
pub mod switch;
