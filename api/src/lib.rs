//! sluice's control plane: the HTTP API (a dropshot trait, [`api`], and
//! its implementation, [`http`]), the model of a host it drives
//! ([`server::Sluice`]), persisted state ([`state`]), metrics, the
//! daemon's configuration ([`config`]) and the CLI's client ([`client`]).
//! The binaries are `sluiced` (the daemon) and `sluiceadm` (the CLI).

pub mod api;
pub mod body;
pub mod cli;
pub mod client;
pub mod config;
pub mod demo;
pub mod devices;
pub mod dpdk;
pub mod error;
pub mod fleet;
pub mod flowlogs;
pub mod front;
pub mod http;
pub mod ipfix;
pub mod journal;
pub mod logging;
pub mod metrics;
pub mod migration;
pub mod private_net;
pub mod replay;
pub mod serve;
pub mod server;
pub mod state;
pub mod trace;
pub mod types;
pub mod validate;

/// Locks `m`. A mutex poisoned by a panicking thread is taken as it is,
/// so one failed call does not make every later call fail too.
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
