//! Giving chains back to the guest, a burst at a time.
//!
//! The guest sees a used entry only once the used ring's index covers it,
//! so entries are written first and the index is stored once, with
//! release ordering, for the whole burst: the guest finds every buffer
//! of a merged frame at the same time (Linux drops a frame whose
//! `num_buffers` are not all there yet), and pays one cache miss on the
//! index per burst instead of one per chain. Whether to interrupt it is
//! decided for the whole range published, as Linux's `virtqueue_kick_prepare`
//! does (EVENT_IDX: `used_event` inside the range; else the ring's
//! `NO_INTERRUPT` flag clear).

use std::sync::atomic::{fence, Ordering};
use virtio_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

/// The guest asks not to be interrupted (split ring, no EVENT_IDX).
const VRING_AVAIL_F_NO_INTERRUPT: u16 = 1;

/// Chains taken from one ring and not yet published: (head, bytes
/// written).
pub(super) type Used = Vec<(u16, u32)>;

/// Writes the entries of `used` after the queue's next used index, then
/// publishes them all and empties `used`. `Ok(true)`: the guest asked to
/// be interrupted for one of them. An `Err` means the ring lies outside
/// guest memory (it was checked when it started, so only a reset races
/// with this); the entries are lost either way.
pub(super) fn publish(
    mem: &GuestMemoryMmap,
    q: &mut Queue,
    used: &mut Used,
) -> Result<bool, vm_memory::GuestMemoryError> {
    if used.is_empty() {
        return Ok(false);
    }
    let size = q.size().max(1);
    let ring = q.used_ring();
    let old = q.next_used();
    let mut new = old;
    let mut r = Ok(());
    for &(head, len) in used.iter() {
        // Offsets are below 4 + 8 * 65536: no overflow but at the very
        // top of the address space, where `is_valid` put no ring.
        let at = ring.saturating_add(4 + 8 * u64::from(new % size));
        let mut e = [0u8; 8];
        e[..4].copy_from_slice(&u32::from(head).to_le_bytes());
        e[4..].copy_from_slice(&len.to_le_bytes());
        r = r.and(mem.write_slice(&e, GuestAddress(at)));
        new = new.wrapping_add(1);
    }
    used.clear();
    r?;
    mem.store(
        new.to_le(),
        GuestAddress(ring.saturating_add(2)),
        Ordering::Release,
    )?;
    q.set_next_used(new);
    // The index store must be visible before the guest's event index or
    // flags are read (the other half of the guest's own barrier).
    fence(Ordering::SeqCst);
    let avail = q.avail_ring();
    if q.event_idx_enabled() {
        let at = avail.saturating_add(4 + 2 * u64::from(size));
        let event: u16 = u16::from_le(mem.load(GuestAddress(at), Ordering::Acquire)?);
        // VIRTIO 1.2, 2.7.10: interrupt when used_event is in [old, new).
        Ok(new.wrapping_sub(event).wrapping_sub(1) < new.wrapping_sub(old))
    } else {
        let flags: u16 = u16::from_le(mem.load(GuestAddress(avail), Ordering::Acquire)?);
        Ok(flags & VRING_AVAIL_F_NO_INTERRUPT == 0)
    }
}
