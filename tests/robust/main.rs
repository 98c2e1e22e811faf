//! Robustness and tenant isolation (issue 7): a guest cannot crash the
//! dataplane, starve its neighbours on the same worker, or see another
//! tenant's packets; full tables end in a counted drop with a reason.
//!
//! Everything runs in process on one host's switch (one worker's) with
//! in-memory wires and a simulated clock.

mod common;
mod exhaustion;
mod isolation;
mod rate;
mod soak;
