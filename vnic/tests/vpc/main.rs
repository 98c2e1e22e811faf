//! VPC scenarios without root: vNIC ports on two "hosts" wired through an
//! in-memory underlay (the tests hand encapsulated frames from one port to
//! the other), a boundary played by the test, guests played by frames
//! built with etherparse and checked with etherparse.

mod common;
mod mcast;
mod scenarios;
mod transit;
