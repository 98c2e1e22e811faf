//! A global allocator wrapper that counts allocations and live bytes, so
//! benchmarks can report allocations per packet and memory per flow.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

pub struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);
static LIVE: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    // Const-initialised, no destructor: reading it never allocates.
    static THREAD_ALLOCS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

fn count() {
    ALLOCS.fetch_add(1, Ordering::Relaxed);
    // During thread teardown the slot may be gone: then only the total counts.
    let _ = THREAD_ALLOCS.try_with(|c| c.set(c.get() + 1));
}

// The wrapper only forwards to the system allocator and counts; it adds
// no unsafety of its own beyond the trait's contract, which it passes on.
#[allow(unsafe_code)]
// SAFETY: every method forwards to `System` with the caller's arguments
// unchanged, so `System`'s guarantees hold for the caller.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        count();
        LIVE.fetch_add(l.size(), Ordering::Relaxed);
        // SAFETY: forwarded unchanged (see the impl comment).
        unsafe { System.alloc(l) }
    }

    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size(), Ordering::Relaxed);
        // SAFETY: forwarded unchanged (see the impl comment).
        unsafe { System.dealloc(p, l) }
    }

    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        count();
        LIVE.fetch_add(new, Ordering::Relaxed);
        LIVE.fetch_sub(l.size(), Ordering::Relaxed);
        // SAFETY: forwarded unchanged (see the impl comment).
        unsafe { System.realloc(p, l, new) }
    }
}

/// Allocations made so far in the whole process (only counted where
/// `Counting` is the global allocator).
pub fn allocations() -> u64 {
    ALLOCS.load(Ordering::Relaxed)
}

/// Allocations made so far by the calling thread: what a test measures,
/// unaffected by the test harness's own threads (which allocate, e.g. to
/// report a test that runs long on a loaded machine).
pub fn thread_allocations() -> u64 {
    THREAD_ALLOCS.with(|c| c.get())
}

/// Heap bytes currently allocated.
pub fn live_bytes() -> usize {
    LIVE.load(Ordering::Relaxed)
}
