//! Fleet mode: the desired state of many hosts in etcd, each `sluiced`
//! listing and watching its part and applying it through the same calls
//! (and so the same validation) as its API. etcd is the replication;
//! sluice adds none of its own.
//!
//! - [`keys`]: the key layout under `/sluice/v1/`;
//! - [`reconcile`]: one host's desired state and how it is applied;
//! - [`agent`]: the list-then-watch loop against etcd, and the host's
//!   status under a lease;
//! - [`admin`]: what `sluiceadm --etcd` writes and `fleet-status` reads.

#[cfg(feature = "fleet")]
pub mod admin;
#[cfg(feature = "fleet")]
pub mod agent;
pub mod keys;
pub mod reconcile;

#[cfg(feature = "fleet")]
pub use agent::{Agent, AgentOptions};
pub use reconcile::{HostStatus, Reconciler};

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};

/// A fleet agent's gauges, for `/metrics` (the host's [`Sluice`] holds
/// them, so the API renders them without knowing the agent).
///
/// [`Sluice`]: crate::server::Sluice
#[derive(Debug, Default)]
pub struct Gauges {
    pub applied_revision: AtomicI64,
    pub relists: AtomicU64,
    pub sessions: AtomicU64,
    pub refused_keys: AtomicU64,
    pub connected: AtomicBool,
}

impl Gauges {
    /// The Prometheus text of the gauges.
    pub fn render(&self) -> String {
        let mut o = String::new();
        let mut one = |name: &str, kind: &str, help: &str, v: String| {
            o += &format!("# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}\n");
        };
        one(
            "sluice_fleet_applied_revision",
            "gauge",
            "The etcd revision this host has applied the desired state up to.",
            self.applied_revision.load(Ordering::Relaxed).to_string(),
        );
        one(
            "sluice_fleet_relists_total",
            "counter",
            "Listings of the whole desired state (the first sync, then one per compaction the host fell behind).",
            self.relists.load(Ordering::Relaxed).to_string(),
        );
        one(
            "sluice_fleet_sessions_total",
            "counter",
            "Connections to etcd the fleet agent made.",
            self.sessions.load(Ordering::Relaxed).to_string(),
        );
        one(
            "sluice_fleet_refused_keys",
            "gauge",
            "Desired-state keys this host refuses now (named in its status).",
            self.refused_keys.load(Ordering::Relaxed).to_string(),
        );
        one(
            "sluice_fleet_connected",
            "gauge",
            "1 while the fleet agent is connected to etcd and watching.",
            u8::from(self.connected.load(Ordering::Relaxed)).to_string(),
        );
        o
    }
}
