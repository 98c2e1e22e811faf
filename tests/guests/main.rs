//! Guests played by real TCP/IP stacks: each VM is a smoltcp interface
//! whose device queues are the guest side of its vNIC's sluice port; a
//! simulated fabric carries what the ports forward across an IPv6
//! underlay to other hosts' ports, to a boundary and an internet host.
//!
//! Unlike `vnic/tests/vpc`, where the tests build every frame by hand,
//! here the guests behave as real ones do: DHCP, ARP and NDP, TCP with
//! its retransmissions, windows and FINs, checksums verified on receipt.
//! `world` is the harness (`World::new`, `add_guest`, `step`,
//! `run_until`); `scenarios` the tests, each citing the RFC it exercises.
//! `GUESTS_TRACE=1` prints every frame as the fabric moves it.

mod scenarios;
mod world;
