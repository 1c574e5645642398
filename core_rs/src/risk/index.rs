//! The index of a key table: `u64` key -> `u32` slot, open addressing with linear probing.
//!
//! Our own rather than `HashMap` for one thing the standard map cannot do: say where a key's
//! entry lives before looking it up, so that a batch can prefetch the entries of the keys it
//! will count next (`prefetch`), overlapping their cache misses.
//!
//! The position of a key is a folded multiply of it with two secret per-process seeds (the core
//! of foldhash and aHash): keys come from client-chosen strings through a fixed hash, and a
//! fixed position function would let a client aim many keys at one probe run.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;

/// Two seeds for `position`, drawn from the OS (through std's `RandomState`) once per table.
pub(crate) fn secret_seeds() -> (u64, u64) {
    let random = RandomState::new();
    (random.hash_one(1_u64), random.hash_one(2_u64) | 1)
}

/// The home position of `key` in a table of `len` entries (a power of two): a folded multiply
/// with the seeds, whose low bits depend on every bit of the key.
#[inline]
pub(crate) fn position(key: u64, seeds: (u64, u64), len: usize) -> usize {
    let product = u128::from(key ^ seeds.0) * u128::from(seeds.1);
    let mixed = (product as u64) ^ ((product >> 64) as u64);
    (mixed as usize) & (len - 1)
}

/// An empty entry's slot.
const EMPTY: u32 = u32::MAX;

#[derive(Clone, Copy, Debug)]
struct Entry {
    key: u64,
    slot: u32,
}

const VACANT: Entry = Entry {
    key: 0,
    slot: EMPTY,
};

#[derive(Debug)]
pub(crate) struct Index {
    /// A power of two long, at most half full (probe runs stay short).
    entries: Vec<Entry>,
    len: usize,
    seeds: (u64, u64),
}

impl Index {
    pub(crate) fn new() -> Self {
        Self {
            entries: vec![VACANT; 16],
            len: 0,
            seeds: secret_seeds(),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Bytes held.
    pub(crate) fn bytes(&self) -> usize {
        self.entries.capacity() * std::mem::size_of::<Entry>()
    }

    #[inline]
    fn home(&self, key: u64) -> usize {
        position(key, self.seeds, self.entries.len())
    }

    #[inline]
    pub(crate) fn get(&self, key: u64) -> Option<u32> {
        let mask = self.entries.len() - 1;
        let mut i = self.home(key);
        loop {
            let e = self.entries[i];
            if e.slot == EMPTY {
                return None;
            }
            if e.key == key {
                return Some(e.slot);
            }
            i = (i + 1) & mask;
        }
    }

    /// Asks the CPU to load the cache line of the key's entry (a hint; nothing changes).
    #[inline]
    pub(crate) fn prefetch(&self, key: u64) {
        super::table::prefetch_lines((&self.entries[self.home(key)] as *const Entry).cast(), 1);
    }

    /// Adds a key that is not in the index.
    pub(crate) fn insert(&mut self, key: u64, slot: u32) {
        if 2 * (self.len + 1) > self.entries.len() {
            self.grow();
        }
        let mask = self.entries.len() - 1;
        let mut i = self.home(key);
        while self.entries[i].slot != EMPTY {
            debug_assert_ne!(self.entries[i].key, key, "inserted twice");
            i = (i + 1) & mask;
        }
        self.entries[i] = Entry { key, slot };
        self.len += 1;
    }

    /// Removes a key that is in the index (backward-shift deletion: no tombstones, so probe
    /// runs never lengthen with churn).
    pub(crate) fn remove(&mut self, key: u64) {
        let mask = self.entries.len() - 1;
        let mut i = self.home(key);
        while self.entries[i].key != key || self.entries[i].slot == EMPTY {
            debug_assert!(
                self.entries[i].slot != EMPTY,
                "removed a key not in the index"
            );
            i = (i + 1) & mask;
        }
        // Move later entries of the run back into the hole when their home allows it.
        let mut hole = i;
        let mut j = i;
        loop {
            j = (j + 1) & mask;
            let e = self.entries[j];
            if e.slot == EMPTY {
                break;
            }
            let home = self.home(e.key);
            // `e` may fill the hole unless its home lies cyclically in (hole, j].
            let stays = if hole <= j {
                hole < home && home <= j
            } else {
                hole < home || home <= j
            };
            if !stays {
                self.entries[hole] = e;
                hole = j;
            }
        }
        self.entries[hole] = VACANT;
        self.len -= 1;
    }

    fn grow(&mut self) {
        let doubled = vec![VACANT; self.entries.len() * 2];
        let old = std::mem::replace(&mut self.entries, doubled);
        self.len = 0;
        for e in old {
            if e.slot != EMPTY {
                self.insert(e.key, e.slot);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn behaves_as_a_map_through_inserts_and_removes() {
        let mut index = Index::new();
        let mut model: HashMap<u64, u32> = HashMap::new();
        let mut x: u64 = 1;
        for step in 0..200_000_u32 {
            // xorshift: keys from a small range, so that inserts and removes collide
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let key = x % 5_000;
            if model.remove(&key).is_some() {
                index.remove(key);
            } else {
                index.insert(key, step);
                model.insert(key, step);
            }
            if step % 1_000 == 0 {
                for k in 0..5_000 {
                    assert_eq!(index.get(k), model.get(&k).copied(), "key {k}");
                }
            }
        }
        assert_eq!(index.len(), model.len());
    }
}
