//! Frames for tests, built and checked independently of sluice's own
//! code: one home for the builders and checksum inspectors that the test
//! crates (`dataplane`, `vnic`, `vmm-net`, `api`, `sluice-tests`,
//! `fuzz/`) used to carry a copy each of.
//!
//! The crate depends on no sluice crate (only on byte-level crates), so
//! any of them can dev-depend on it without a cycle, and what it builds or
//! accepts is never decided by the code under test.
//!
//! - [`build`]: Ethernet / ARP / IPv4 / IPv6 / TCP / UDP frames (through
//!   etherparse) and Geneve tunnels (by hand: etherparse has no Geneve).
//! - [`inspect`]: checksum verification of a frame, written here from
//!   RFC 1071 / 768 / 793 / 4443 (not etherparse's, not sluice's), that
//!   says which checksum is wrong.

pub mod build;
pub mod checksum;
pub mod inspect;

pub use build::{arp_request, tcp_syn, udp, Geneve, BROADCAST_MAC, GENEVE_PORT, TEB};
pub use inspect::{assert_checksums, check_checksums, fill_outer_udp, Bad, Checked};
