//! `sluiceadm` tested as a user runs it: the real binary, against a
//! simulated host (the real control plane, workers and engine over
//! in-memory devices, on loopback), checking what it prints — tables
//! and `--json` — and how it exits. `replay` runs offline on a state
//! document and captures made here, its outputs read back with
//! independent parsers (pcap-file, etherparse).

mod errors;
mod fixtures;
mod mcast;
mod migrate;
mod replay;
mod top;
mod transit;
mod verbs;
