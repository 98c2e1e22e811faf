//! The port's connection table: one hash table for both directions of
//! every flow, holding 8-byte entries (the flow's slab index, the
//! direction, and 32 bits of the key's hash). The keys themselves live
//! once, in the flow record (`FlowRec::keys`), which a lookup reads to
//! confirm a match: a hit touches the entry's group and the record, as
//! before, but a flow costs two 8-byte entries instead of two
//! `(FlowKey, slot)` buckets of 52 bytes each.
//!
//! The stored hash lets the table grow without reading any flow record,
//! and filters almost every wrong candidate before its record is read.
//!
//! Invariant (kept by `Port`): an entry `(id, dir)` exists exactly when
//! flow `id` is live and `keys[dir]` is `Some(k)`, and it was hashed from
//! that `k`.

use crate::flow::{Direction, FlowHashBuilder, FlowKey};
use core::hash::BuildHasher;
use hashbrown::HashTable;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Entry {
    /// Flow id << 1 | direction index.
    id_dir: u32,
    hash: u32,
}

impl Entry {
    fn id(self) -> u32 {
        self.id_dir >> 1
    }
}

pub(super) struct Conns {
    table: HashTable<Entry>,
    hasher: FlowHashBuilder,
    len: [usize; 2],
}

/// Spreads a stored 32-bit hash over the 64 bits the table reads (its
/// control byte from the top bits, the bucket from the low bits): a
/// multiply by an odd constant keeps the low bits the key's and mixes
/// every bit into the top ones.
#[inline(always)]
fn wide(h: u32) -> u64 {
    u64::from(h).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ u64::from(h)
}

#[inline(always)]
fn id_dir(id: u32, dir: Direction) -> u32 {
    (id << 1) | dir.index() as u32
}

impl Conns {
    pub(super) fn new(hasher: FlowHashBuilder) -> Conns {
        Conns {
            table: HashTable::new(),
            hasher,
            len: [0; 2],
        }
    }

    #[inline(always)]
    fn hash(&self, dir: Direction, k: &FlowKey) -> u32 {
        let h = self.hasher.hash_one(k);
        // The direction is part of the key: the same 5-tuple may be one
        // flow's outbound key and another's inbound one.
        let h = h ^ ((dir.index() as u64) << 63);
        (h ^ (h >> 32)) as u32
    }

    /// The flow whose packets going `dir` have key `k`. `key_of(id)` is
    /// that flow's key for `dir` (its record's `keys[dir]`).
    #[inline]
    pub(super) fn find(
        &self,
        dir: Direction,
        k: &FlowKey,
        key_of: impl Fn(u32) -> Option<FlowKey>,
    ) -> Option<u32> {
        let h = self.hash(dir, k);
        let d = dir.index() as u32;
        self.table
            .find(wide(h), |e| {
                e.hash == h && e.id_dir & 1 == d && key_of(e.id()).as_ref() == Some(k)
            })
            .map(|e| e.id())
    }

    /// Adds flow `id`'s entry for key `k` going `dir`. The caller has
    /// made sure no other entry has that key and direction.
    pub(super) fn insert(&mut self, dir: Direction, k: &FlowKey, id: u32) {
        let h = self.hash(dir, k);
        let e = Entry {
            id_dir: id_dir(id, dir),
            hash: h,
        };
        self.table.insert_unique(wide(h), e, |e| wide(e.hash));
        self.len[dir.index()] += 1;
    }

    /// Removes flow `id`'s entry for key `k` going `dir`, if it has one.
    pub(super) fn remove(&mut self, dir: Direction, k: &FlowKey, id: u32) -> bool {
        let h = self.hash(dir, k);
        let want = id_dir(id, dir);
        match self.table.find_entry(wide(h), |e| e.id_dir == want) {
            Ok(o) => {
                o.remove();
                self.len[dir.index()] -= 1;
                true
            }
            Err(_) => false,
        }
    }

    pub(super) fn len(&self, dir: Direction) -> usize {
        self.len[dir.index()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: u16) -> FlowKey {
        FlowKey::new(
            "10.0.0.1".parse().unwrap(),
            "10.0.0.2".parse().unwrap(),
            17,
            i,
            53,
        )
    }

    #[test]
    fn both_directions_of_a_key_are_distinct_entries() {
        let mut c = Conns::new(FlowHashBuilder::with_seed(7));
        let keys: Vec<[Option<FlowKey>; 2]> = (0..1000u16)
            .map(|i| [Some(key(i).reverse()), Some(key(i))])
            .collect();
        for (id, k) in keys.iter().enumerate() {
            c.insert(Direction::In, &k[0].unwrap(), id as u32);
            c.insert(Direction::Out, &k[1].unwrap(), id as u32);
        }
        let keys = &keys;
        let of = |d: Direction| move |id: u32| keys[id as usize][d.index()];
        assert_eq!((c.len(Direction::In), c.len(Direction::Out)), (1000, 1000));
        assert_eq!(
            c.find(Direction::Out, &key(17), of(Direction::Out)),
            Some(17)
        );
        assert_eq!(
            c.find(Direction::In, &key(17).reverse(), of(Direction::In)),
            Some(17)
        );
        // The outbound key is not an inbound one.
        assert_eq!(c.find(Direction::In, &key(17), of(Direction::In)), None);
        // Sizes the memory budget of issue 13 rests on.
        assert_eq!(core::mem::size_of::<Entry>(), 8);
        assert!(c.remove(Direction::Out, &key(17), 17));
        assert!(!c.remove(Direction::Out, &key(17), 17));
        assert_eq!(c.find(Direction::Out, &key(17), of(Direction::Out)), None);
        assert_eq!(
            c.find(Direction::Out, &key(18), of(Direction::Out)),
            Some(18)
        );
        assert_eq!(c.len(Direction::Out), 999);
    }
}
