//! Scenario tests for the engine: ports built from canned layers, driven
//! with packets built by etherparse, checked with etherparse and counters.
//! One binary for all scenarios (link time).

mod common;
mod compose;
mod expiry;
mod flowlog;
mod lookup_expiry;
mod malformed;
mod props;
mod rules;
mod stateful;
