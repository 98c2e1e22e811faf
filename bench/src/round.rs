//! Worker-round cases: the path production runs, a real
//! [`Switch`](vmm_net::switch::Switch) polled round after round over
//! in-memory devices (no kernel), so the cost outside the engine (RX,
//! the outer checks and demultiplexing, the round's bookkeeping, TX) is
//! measured beside the engine-only cases.
//!
//! - `round-out-tcp4`: vm1's established TCP segments to vm2 (another
//!   host) from its guest device through `Switch::poll` to the uplink:
//!   the round counterpart of `vpc-out-tcp4`.
//! - `round-in-tcp4`: vm2's tunnelled replies from the uplink through the
//!   outer checks and the demultiplexing to vm1's guest device (the
//!   uplink vouches for the outer UDP checksum, as a NIC does): the
//!   round counterpart of `vpc-in-tcp4`.
//!
//! - `round-flood-out` / `round-flood-in`: the same flow's frames in
//!   turn with frames the switch or the port refuses (truncated,
//!   spoofed, denied, for no port here): what an attacker's flood costs,
//!   and that it allocates nothing (`bench/tests/no_alloc.rs`).
//!
//! The devices recycle their buffers (what one transmits the other
//! receives into), as production backends do through their pools.

use crate::cases::{
    vpc_guest_flood, vpc_guest_tcp, vpc_host_a, vpc_vnic, vpc_wire_flood, vpc_wire_reply,
};
use dataplane::packet::DEFAULT_HEADROOM;
use dataplane::PacketBuf;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};
use vmm_net::backend::{Backend, SharedPool};
use vmm_net::switch::{Switch, BURST};

/// The worker-round cases (`engine-loop --case round-...`).
pub const ROUND_CASES: &[&str] = &[
    "round-out-tcp4",
    "round-in-tcp4",
    "round-flood-out",
    "round-flood-in",
];

/// What both devices of a case share: recycled buffers, each side's
/// frame to receive and how many are still to come, and the frames sent.
#[derive(Default)]
struct Shared {
    pool: Vec<PacketBuf>,
    /// Each side's frames, received in turn.
    frames: [Vec<Vec<u8>>; 2],
    next: [usize; 2],
    left: [u64; 2],
    vouch: [bool; 2],
    sent: u64,
}

const GUEST: usize = 0;
const UPLINK: usize = 1;

/// One device end, `side` of the shared state.
struct Dev {
    shared: Arc<Mutex<Shared>>,
    side: usize,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Backend for Dev {
    fn rx_burst(&mut self, bufs: &mut Vec<PacketBuf>, max: usize) -> io::Result<usize> {
        let mut s = lock(&self.shared);
        let s = &mut *s;
        let n = s.left[self.side].min(max as u64) as usize;
        for _ in 0..n {
            // As production backends (`BufPool`): the process's shared
            // pool when the device's own is empty, where the switch puts
            // the buffers of frames that went no further.
            let mut p = s.pool.pop().unwrap_or_else(SharedPool::get);
            p.reset(DEFAULT_HEADROOM);
            let frames = &s.frames[self.side];
            let i = Some(s.next[self.side])
                .filter(|&i| i < frames.len())
                .unwrap_or(0);
            p.set_frame(frames.get(i).map_or(&[][..], |f| f))
                .map_err(io::Error::other)?;
            s.next[self.side] = i + 1;
            p.set_l4_csum_valid(s.vouch[self.side]);
            bufs.push(p);
        }
        s.left[self.side] -= n as u64;
        Ok(n)
    }

    fn tx_burst(&mut self, pkts: &mut Vec<PacketBuf>) -> io::Result<usize> {
        let n = pkts.len();
        let mut s = lock(&self.shared);
        s.sent += n as u64;
        s.pool.append(pkts);
        Ok(n)
    }
}

/// A switch on host A with vm1 attached, its flow to vm2 established.
pub struct Round {
    pub switch: Switch,
    shared: Arc<Mutex<Shared>>,
    side: usize,
}

impl Round {
    /// The case `name`, set up, or `None` if there is no such case.
    pub fn with(name: &str) -> Option<Round> {
        let (side, flood) = match name {
            "round-out-tcp4" => (GUEST, false),
            "round-in-tcp4" => (UPLINK, false),
            "round-flood-out" => (GUEST, true),
            "round-flood-in" => (UPLINK, true),
            _ => return None,
        };
        let shared = Arc::new(Mutex::new(Shared {
            pool: Vec::with_capacity(4 * BURST),
            frames: [vec![vpc_guest_tcp(true)], vec![vpc_wire_reply()]],
            vouch: [false, true],
            ..Shared::default()
        }));
        let dev = |side| {
            Box::new(Dev {
                shared: shared.clone(),
                side,
            })
        };
        let mut switch = Switch::new(vpc_host_a(), dev(UPLINK));
        switch
            .attach(vpc_vnic(), dev(GUEST))
            .expect("vm1 attaches to an empty switch");
        let mut r = Round {
            switch,
            shared,
            side,
        };
        // Establish vm1 -> vm2:22 both ways (the SYN out, the SYN-ACK
        // in), then send established segments.
        assert_eq!(r.send(GUEST, 1), 1, "vm1's SYN reaches the uplink");
        assert_eq!(r.send(UPLINK, 1), 1, "vm2's SYN-ACK reaches vm1");
        let mut s = lock(&r.shared);
        s.frames[GUEST] = vec![vpc_guest_tcp(false)];
        if flood {
            s.frames = [vpc_guest_flood(), vpc_wire_flood()];
        }
        s.next = [0, 0];
        drop(s);
        Some(r)
    }

    /// Sends `n` frames from this case's device through whole rounds;
    /// returns how many the other device transmitted.
    pub fn run(&mut self, n: u64) -> u64 {
        self.send(self.side, n)
    }

    fn send(&mut self, side: usize, n: u64) -> u64 {
        let before = {
            let mut s = lock(&self.shared);
            s.left[side] = n;
            s.sent
        };
        loop {
            // Errors are counted by the switch (io_errors); these devices
            // return none.
            let _ = self.switch.poll();
            if lock(&self.shared).left[side] == 0 {
                break;
            }
        }
        lock(&self.shared).sent - before
    }
}
