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

pub mod admin;
pub mod agent;
pub mod keys;
pub mod reconcile;

pub use agent::{Agent, AgentOptions};
pub use reconcile::{HostStatus, Reconciler};
