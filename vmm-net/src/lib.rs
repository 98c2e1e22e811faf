//! Moving frames: guest and uplink backends behind one small trait
//! ([`backend::Backend`]), and the [`switch::Switch`] that connects them
//! to the vNIC ports. No policy is decided here: the ports do that.
//!
//! Today: the switch, an in-memory backend (the test double), a pcap
//! backend, and guest offloads (checksum completion, TCP segmentation)
//! done in software. Still to come (issue 5): TAP and vhost-user guests,
//! AF_PACKET and DPDK uplinks, worker threads owning ports.

pub mod backend;
pub mod offload;
pub mod pcap;
pub mod switch;
