//! API tests against the simulated host (the real control plane, workers
//! and engine over in-memory devices, served on loopback): every
//! endpoint, every kind of refusal, auth, persistence across restarts,
//! and the OpenAPI document's drift.

mod access;
mod client;
mod daemon;
mod daemon_config;
mod devices;
mod endpoints;
mod files;
#[cfg(feature = "fleet")]
mod fleet;
mod flowlogs;
mod journal;
mod load;
mod mcast;
mod migration;
mod openapi;
mod persistence;
mod rollback;
mod top;
mod transit;
mod validation;
