//! Per-packet metadata: small values a layer sets for later layers (a
//! routing decision, a NAT class), without touching the packet. Fixed size,
//! so carrying it costs no allocation.

use core::fmt;

/// A metadata slot. The crate that builds the layers assigns meanings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub struct MetaKey(pub u8);

pub const META_SLOTS: usize = 16;

#[derive(Clone, Copy, Default, PartialEq, Eq)]
pub struct Meta {
    set: u16,
    vals: [u64; META_SLOTS],
}

impl Meta {
    /// Sets a slot. Keys beyond [`META_SLOTS`] are ignored (they are
    /// constants chosen by the layer builder, checked by its tests).
    pub fn set(&mut self, k: MetaKey, v: u64) {
        let i = usize::from(k.0);
        if i < META_SLOTS {
            self.vals[i] = v;
            self.set |= 1 << i;
        }
    }

    pub fn get(&self, k: MetaKey) -> Option<u64> {
        let i = usize::from(k.0);
        (i < META_SLOTS && self.set & (1 << i) != 0).then(|| self.vals[i])
    }

    pub fn clear(&mut self) {
        self.set = 0;
    }
}

impl fmt::Debug for Meta {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut m = f.debug_map();
        for i in 0..META_SLOTS {
            if self.set & (1 << i) != 0 {
                m.entry(&i, &self.vals[i]);
            }
        }
        m.finish()
    }
}
