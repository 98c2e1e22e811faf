//! Shared set-up for sluice's benchmarks: the engine cases (a port, its
//! flows, the packets to send) and an allocation-counting allocator.
//!
//! Every case is built the same way for the criterion benches and for the
//! `engine-loop` binary, so their figures describe the same work.

pub mod alloc;
pub mod cases;
pub mod flows;
pub mod round;
