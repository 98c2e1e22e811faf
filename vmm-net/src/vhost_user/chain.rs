//! Walking a descriptor chain the guest posted, trusting nothing in it.
//!
//! Every field of a split-ring descriptor is the guest's to write, and a
//! buggy or hostile driver can make a chain that loops, names a descriptor
//! past the table, points outside guest memory, wraps the address space or
//! nests indirect tables. [`walk`] follows a chain from its head and
//! either returns every piece of it in the wanted direction, each checked
//! to lie in guest memory, or refuses the whole chain with a
//! [`ChainError`] (the caller counts it and gives the chain back used,
//! with nothing written). Nothing here panics or allocates: the pieces go
//! into the caller's vector, up to a limit it sets.
//!
//! The rust-vmm `DescriptorChain` iterator stops quietly at the first bad
//! descriptor, which makes a broken chain look like a short one; walking
//! it here tells the two apart.

use virtio_queue::desc::split::Descriptor;
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap};

/// Size of one split-ring descriptor in guest memory.
const DESC_SIZE: u64 = 16;

/// One piece of guest memory a chain names, checked to lie in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Seg {
    pub(super) addr: u64,
    pub(super) len: u32,
}

/// Why a chain was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum ChainError {
    /// More descriptors than the queue has entries: a loop, or a chain
    /// the spec forbids ("MUST NOT create a descriptor chain longer than
    /// the Queue Size"), or more pieces than the caller takes.
    TooLong,
    /// A head or `next` index past the descriptor (or indirect) table.
    BadIndex,
    /// An indirect table nested, chained, empty, misaligned or outside
    /// guest memory.
    BadIndirect,
    /// `addr + len` past the end of the address space.
    Overflow,
    /// A buffer (or the descriptor itself) outside guest memory.
    OutOfMemory,
    /// A descriptor of length zero (no driver posts one).
    ZeroLength,
    /// No descriptor in the wanted direction.
    Empty,
}

/// Follows the chain at `head` in the descriptor table at `table` of
/// `qsize` entries and appends its pieces that are device-writable (or,
/// with `writable` false, device-readable) to `out`, at most `max` in
/// all; the others are skipped. Returns the bytes they hold.
pub(super) fn walk(
    mem: &GuestMemoryMmap,
    mut table: GuestAddress,
    qsize: u16,
    head: u16,
    writable: bool,
    out: &mut Vec<Seg>,
    max: usize,
) -> Result<u64, ChainError> {
    let start = out.len();
    // The walk itself, in a closure so that every error path can leave
    // `out` as it found it.
    let mut walk_into = || -> Result<u64, ChainError> {
        let mut size = qsize;
        let mut index = head;
        let mut indirect = false;
        // Descriptors read, direct and indirect together: a chain may not
        // have more than the queue has entries.
        let mut budget = qsize;
        let mut total = 0u64;
        let mut found = false;
        loop {
            if index >= size {
                return Err(ChainError::BadIndex);
            }
            // `index < size <= u16::MAX`: the product fits; the sum is checked.
            let at = table
                .0
                .checked_add(u64::from(index) * DESC_SIZE)
                .ok_or(ChainError::Overflow)?;
            let d: Descriptor = mem
                .read_obj(GuestAddress(at))
                .map_err(|_| ChainError::OutOfMemory)?;
            if d.refers_to_indirect_table() {
                // A chain may end in one indirect table (VIRTIO 1.2,
                // 2.7.5.3: no INDIRECT with NEXT, none inside a table).
                if indirect || d.has_next() {
                    return Err(ChainError::BadIndirect);
                }
                let len = u64::from(d.len());
                if len == 0 || !len.is_multiple_of(DESC_SIZE) {
                    return Err(ChainError::BadIndirect);
                }
                let n = u16::try_from(len / DESC_SIZE).map_err(|_| ChainError::TooLong)?;
                if d.addr().0.checked_add(len).is_none() {
                    return Err(ChainError::Overflow);
                }
                // `len` is at most 16 * u16::MAX: it fits a usize.
                if !mem.check_range(d.addr(), len as usize) {
                    return Err(ChainError::BadIndirect);
                }
                table = d.addr();
                size = n;
                index = 0;
                indirect = true;
                continue;
            }
            budget = budget.checked_sub(1).ok_or(ChainError::TooLong)?;
            let len = d.len();
            if len == 0 {
                return Err(ChainError::ZeroLength);
            }
            let addr = d.addr().0;
            if addr.checked_add(u64::from(len)).is_none() {
                return Err(ChainError::Overflow);
            }
            if !mem.check_range(GuestAddress(addr), len as usize) {
                return Err(ChainError::OutOfMemory);
            }
            if d.is_write_only() == writable {
                if out.len() >= max {
                    return Err(ChainError::TooLong);
                }
                out.push(Seg { addr, len });
                total += u64::from(len);
                found = true;
            }
            if !d.has_next() {
                break;
            }
            index = d.next();
        }
        if !found {
            return Err(ChainError::Empty);
        }
        Ok(total)
    };
    let r = walk_into();
    if r.is_err() {
        out.truncate(start);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::GuestMemoryMmap;

    const MEM: usize = 0x10000;
    const TABLE: u64 = 0x1000;
    const Q: u16 = 8;
    const NEXT: u16 = 1;
    const WRITE: u16 = 2;
    const INDIRECT: u16 = 4;

    fn mem() -> GuestMemoryMmap {
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), MEM)]).unwrap()
    }

    fn put(m: &GuestMemoryMmap, table: u64, i: u16, addr: u64, len: u32, flags: u16, next: u16) {
        let d = Descriptor::new(addr, len, flags, next);
        m.write_obj(d, GuestAddress(table + 16 * u64::from(i)))
            .unwrap();
    }

    fn run(m: &GuestMemoryMmap, head: u16, writable: bool) -> Result<(u64, Vec<Seg>), ChainError> {
        let mut out = Vec::with_capacity(16);
        walk(m, GuestAddress(TABLE), Q, head, writable, &mut out, 16).map(|n| (n, out))
    }

    #[test]
    fn a_good_chain_gives_its_pieces_in_the_wanted_direction() {
        let m = mem();
        put(&m, TABLE, 0, 0x4000, 12, NEXT, 3);
        put(&m, TABLE, 3, 0x5000, 100, NEXT | WRITE, 1);
        put(&m, TABLE, 1, 0x6000, 200, WRITE, 0);
        let (n, segs) = run(&m, 0, true).unwrap();
        assert_eq!(n, 300);
        assert_eq!(
            segs,
            [
                Seg {
                    addr: 0x5000,
                    len: 100
                },
                Seg {
                    addr: 0x6000,
                    len: 200
                }
            ]
        );
        assert_eq!(run(&m, 0, false).unwrap().0, 12);
    }

    #[test]
    fn broken_chains_are_refused() {
        let m = mem();
        // A loop: 0 -> 1 -> 0.
        put(&m, TABLE, 0, 0x4000, 10, NEXT | WRITE, 1);
        put(&m, TABLE, 1, 0x4100, 10, NEXT | WRITE, 0);
        assert_eq!(run(&m, 0, true).unwrap_err(), ChainError::TooLong);
        // A next index past the table, and a head past it.
        put(&m, TABLE, 0, 0x4000, 10, NEXT | WRITE, Q);
        assert_eq!(run(&m, 0, true).unwrap_err(), ChainError::BadIndex);
        assert_eq!(run(&m, Q, true).unwrap_err(), ChainError::BadIndex);
        // Lengths past guest memory, addresses that wrap, zero lengths.
        put(&m, TABLE, 0, MEM as u64 - 10, 11, WRITE, 0);
        assert_eq!(run(&m, 0, true).unwrap_err(), ChainError::OutOfMemory);
        put(&m, TABLE, 0, u64::MAX - 10, 100, WRITE, 0);
        assert_eq!(run(&m, 0, true).unwrap_err(), ChainError::Overflow);
        put(&m, TABLE, 0, 0x4000, 0, WRITE, 0);
        assert_eq!(run(&m, 0, true).unwrap_err(), ChainError::ZeroLength);
        // Nothing in the wanted direction.
        put(&m, TABLE, 0, 0x4000, 10, 0, 0);
        assert_eq!(run(&m, 0, true).unwrap_err(), ChainError::Empty);
        // A descriptor table outside memory.
        let mut out = Vec::with_capacity(4);
        let far = GuestAddress(MEM as u64);
        assert_eq!(
            walk(&m, far, Q, 0, true, &mut out, 4),
            Err(ChainError::OutOfMemory)
        );
        let wrap = GuestAddress(u64::MAX - 8);
        assert_eq!(
            walk(&m, wrap, Q, 1, true, &mut out, 4),
            Err(ChainError::Overflow)
        );
        // More pieces than the caller takes.
        for i in 0..5 {
            put(&m, TABLE, i, 0x4000, 10, NEXT | WRITE, i + 1);
        }
        put(&m, TABLE, 5, 0x4000, 10, WRITE, 0);
        assert_eq!(
            walk(&m, GuestAddress(TABLE), Q, 0, true, &mut out, 4),
            Err(ChainError::TooLong)
        );
        assert!(out.is_empty(), "nothing is left of a refused chain");
    }

    #[test]
    fn indirect_tables_are_followed_and_checked() {
        let m = mem();
        let ind = 0x2000;
        put(&m, ind, 0, 0x4000, 12, NEXT | WRITE, 1);
        put(&m, ind, 1, 0x5000, 1500, WRITE, 0);
        put(&m, TABLE, 0, ind, 32, INDIRECT, 0);
        assert_eq!(run(&m, 0, true).unwrap().0, 1512);
        // Longer than the queue (9 entries for a queue of 8).
        for i in 0..9 {
            put(&m, ind, i, 0x4000, 10, NEXT | WRITE, i + 1);
        }
        put(&m, TABLE, 0, ind, 16 * 9, INDIRECT, 0);
        assert_eq!(run(&m, 0, true).unwrap_err(), ChainError::TooLong);
        // A table of length 0, one not a multiple of 16, one outside
        // memory, one chained, one nested.
        for (addr, len, flags) in [
            (ind, 0, INDIRECT),
            (ind, 20, INDIRECT),
            (MEM as u64 - 16, 32, INDIRECT),
            (ind, 32, INDIRECT | NEXT),
        ] {
            put(&m, TABLE, 0, addr, len, flags, 1);
            assert_eq!(
                run(&m, 0, true).unwrap_err(),
                ChainError::BadIndirect,
                "{len}"
            );
        }
        put(&m, ind, 0, ind, 32, INDIRECT, 0);
        put(&m, TABLE, 0, ind, 32, INDIRECT, 0);
        assert_eq!(run(&m, 0, true).unwrap_err(), ChainError::BadIndirect);
        put(&m, TABLE, 0, u64::MAX - 8, 32, INDIRECT, 0);
        assert_eq!(run(&m, 0, true).unwrap_err(), ChainError::Overflow);
    }
}
