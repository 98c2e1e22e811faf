//! Time for the engine. The engine never reads the system clock itself:
//! it asks a [`Clock`], so tests move time by hand and replays run on
//! capture timestamps.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// Nanoseconds since an arbitrary origin fixed by the clock.
pub type Moment = u64;

pub const NANOS_PER_SEC: u64 = 1_000_000_000;

pub trait Clock: Send {
    fn now(&self) -> Moment;
}

/// The monotonic system clock.
#[derive(Debug, Clone, Copy)]
pub struct MonotonicClock {
    origin: Instant,
}

impl MonotonicClock {
    pub fn new() -> Self {
        MonotonicClock {
            origin: Instant::now(),
        }
    }
}

impl Default for MonotonicClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for MonotonicClock {
    fn now(&self) -> Moment {
        self.origin.elapsed().as_nanos() as u64
    }
}

/// A clock that moves only when told to. Clones share the same time.
#[derive(Debug, Clone, Default)]
pub struct ManualClock(Arc<AtomicU64>);

impl ManualClock {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn set(&self, t: Moment) {
        self.0.store(t, Ordering::Relaxed);
    }

    pub fn advance_secs(&self, s: u64) {
        self.0.fetch_add(s * NANOS_PER_SEC, Ordering::Relaxed);
    }

    pub fn advance_nanos(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Moment {
        self.0.load(Ordering::Relaxed)
    }
}
