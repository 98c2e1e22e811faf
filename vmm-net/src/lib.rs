//! Moving frames: guest and uplink backends behind one small trait
//! ([`backend::Backend`]), and the [`switch::Switch`] that connects them
//! to the vNIC ports. No policy is decided here: the ports do that.
//!
//! Today: the switch, an in-memory backend (the test double), a pcap
//! backend, the guest backends (vhost-user for VMs, TAP) and the
//! AF_PACKET uplink (`recvmmsg`, or a TPACKET_V3 ring), with guest
//! offloads done in software (checksum completion; TCP super-frames
//! processed whole by the port and cut at the wire, see
//! [`dataplane::Gso`]; runs of segments coalesced for a TAP guest, see
//! [`gro`]); worker threads owning ports; the DPDK uplink behind the
//! `dpdk` feature.

pub mod afpacket;
pub mod backend;
#[cfg(feature = "dpdk")]
pub mod dpdk;
pub mod gro;
pub mod migrated;
pub mod netns;
pub mod offload;
pub mod pcap;
pub mod switch;
mod sys;
pub mod tap;
pub mod uplinks;
pub mod vhost_user;
pub mod worker;
