//! A key table for kinds whose state is small (the (device, SKU) and (IP, SKU) pairs, email and
//! phone hashes): the slots live in the open-addressing array itself, so that a key costs one
//! cache miss (its slot) rather than two (an index entry, then a slot in a slab).
//!
//! Same contract as `Table` (`table.rs`): keys idle longer than their kind's idle time are
//! dropped by an amortised sweep, and a full table evicts the least recently seen of a sample.
//! Removal shifts the later entries of a probe run back (no tombstones).

use super::index::{position, secret_seeds};
use super::table::{
    eviction_victim, prefetch_lines, KeyState, Prefetch, Slot, TableStats, FREE, SWEEP_STEP,
};

#[derive(Debug)]
pub(crate) struct InlineTable<S> {
    /// A power of two long, at most half full; a free entry has `last_ms == FREE`.
    slots: Vec<Slot<S>>,
    len: usize,
    seeds: (u64, u64),
    cursor: usize,
    max_keys: usize,
    expired: u64,
    evicted: u64,
}

impl<S: KeyState> Prefetch for InlineTable<S> {
    /// Loads the key's home slot: its slot, or the start of the probe run that holds it.
    #[inline]
    fn prefetch_entry(&self, key: u64) {
        let slot: *const Slot<S> = &self.slots[position(key, self.seeds, self.slots.len())];
        prefetch_lines(slot.cast(), std::mem::size_of::<Slot<S>>());
    }
    /// Nothing more: `prefetch_entry` loaded the slot itself.
    #[inline]
    fn prefetch(&self, _key: u64) {}
}

fn free<S: KeyState>() -> Slot<S> {
    Slot {
        key: 0,
        last_ms: FREE,
        state: S::default(),
    }
}

impl<S: KeyState> InlineTable<S> {
    /// An empty table holding at most `max_keys` keys (at least 1).
    pub(crate) fn new(max_keys: usize) -> Self {
        Self {
            slots: (0..16).map(|_| free()).collect(),
            len: 0,
            seeds: secret_seeds(),
            cursor: 0,
            max_keys: max_keys.max(1),
            expired: 0,
            evicted: 0,
        }
    }

    #[inline]
    fn find(&self, key: u64) -> Option<usize> {
        let mask = self.slots.len() - 1;
        let mut i = position(key, self.seeds, self.slots.len());
        loop {
            let s = &self.slots[i];
            if s.last_ms == FREE {
                return None;
            }
            if s.key == key {
                return Some(i);
            }
            i = (i + 1) & mask;
        }
    }

    /// The key's slot if it is tracked and was not idle too long at `t_ms`.
    #[inline]
    pub(crate) fn get(&self, key: u64, t_ms: i64) -> Option<&Slot<S>> {
        let slot = &self.slots[self.find(key)?];
        (t_ms.saturating_sub(slot.last_ms) <= S::IDLE_MS).then_some(slot)
    }

    /// The key's slot, made (empty, at `t_ms`) when it is new or was idle too long.
    #[inline]
    pub(crate) fn get_or_insert(&mut self, key: u64, t_ms: i64) -> &mut Slot<S> {
        let i = match self.find(key) {
            Some(i) => {
                let slot = &mut self.slots[i];
                if t_ms.saturating_sub(slot.last_ms) > S::IDLE_MS {
                    slot.state = S::default();
                    slot.last_ms = t_ms;
                }
                i
            }
            None => self.insert(key, t_ms),
        };
        &mut self.slots[i]
    }

    fn insert(&mut self, key: u64, t_ms: i64) -> usize {
        // First everything that moves entries; then the probe for the new one. Twice the slab
        // table's sweep: this array is two to four times as long as its keys are many.
        self.sweep(t_ms, 2 * SWEEP_STEP);
        if self.len >= self.max_keys {
            self.evict_one();
        }
        if 2 * (self.len + 1) > self.slots.len() {
            self.grow();
        }
        let mask = self.slots.len() - 1;
        let mut i = position(key, self.seeds, self.slots.len());
        while self.slots[i].last_ms != FREE {
            i = (i + 1) & mask;
        }
        self.slots[i] = Slot {
            key,
            last_ms: t_ms,
            state: S::default(),
        };
        self.len += 1;
        i
    }

    /// Empties slot `i`, shifting the later entries of its probe run back.
    fn remove_at(&mut self, i: usize) {
        let mask = self.slots.len() - 1;
        let mut hole = i;
        let mut j = i;
        loop {
            j = (j + 1) & mask;
            if self.slots[j].last_ms == FREE {
                break;
            }
            let home = position(self.slots[j].key, self.seeds, self.slots.len());
            // The entry at j may fill the hole unless its home lies cyclically in (hole, j].
            let stays = if hole <= j {
                hole < home && home <= j
            } else {
                hole < home || home <= j
            };
            if !stays {
                self.slots.swap(hole, j);
                hole = j;
            }
        }
        // The removed slot was swapped along to `hole`: dropping it gives back its heap now.
        self.slots[hole] = free();
        self.len -= 1;
    }

    fn sweep(&mut self, t_ms: i64, steps: usize) {
        for _ in 0..steps {
            if self.cursor >= self.slots.len() {
                self.cursor = 0;
            }
            let last = self.slots[self.cursor].last_ms;
            if last != FREE && t_ms.saturating_sub(last) > S::IDLE_MS {
                // A later entry may shift into the cursor's slot: it is looked at next.
                self.remove_at(self.cursor);
                self.expired += 1;
            } else {
                self.cursor += 1;
            }
        }
    }

    /// Drops every key idle too long at `t_ms` (a whole pass).
    pub(crate) fn sweep_all(&mut self, t_ms: i64) {
        // Removal shifts entries back, possibly past the array's end to its start: pass until
        // a pass drops nothing.
        loop {
            let before = self.expired;
            self.cursor = 0;
            let n = self.slots.len();
            let mut i = 0;
            while i < n {
                let last = self.slots[i].last_ms;
                if last != FREE && t_ms.saturating_sub(last) > S::IDLE_MS {
                    self.remove_at(i);
                    self.expired += 1;
                } else {
                    i += 1;
                }
            }
            if self.expired == before {
                break;
            }
        }
    }

    fn evict_one(&mut self) {
        if let Some(v) = eviction_victim(&self.slots, self.cursor) {
            self.remove_at(v);
            self.evicted += 1;
            self.cursor = v + 1;
        }
    }

    fn grow(&mut self) {
        let doubled = (0..self.slots.len() * 2).map(|_| free()).collect();
        let old = std::mem::replace(&mut self.slots, doubled);
        let mask = self.slots.len() - 1;
        for slot in old.into_iter().filter(|s| s.last_ms != FREE) {
            let mut i = position(slot.key, self.seeds, self.slots.len());
            while self.slots[i].last_ms != FREE {
                i = (i + 1) & mask;
            }
            self.slots[i] = slot;
        }
        self.cursor = 0;
    }

    pub(crate) fn stats(&self) -> TableStats {
        let bytes = self.slots.capacity() * std::mem::size_of::<Slot<S>>()
            + self
                .slots
                .iter()
                .map(|s| s.state.heap_bytes())
                .sum::<usize>();
        TableStats {
            keys: self.len,
            expired: self.expired,
            evicted: self.evicted,
            bytes,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[derive(Default, Debug)]
    struct Count(u32);

    impl KeyState for Count {
        const IDLE_MS: i64 = 1_000;
        fn advance(&mut self, _: i64, _: i64) {}
        fn heap_bytes(&self) -> usize {
            0
        }
    }

    #[test]
    fn behaves_as_a_map_through_inserts_sweeps_and_evictions() {
        // Keys from a small range arriving at increasing times: some are found, some are new,
        // old ones are swept (idle 1 s) or evicted (at most 300 keys).
        let mut table = InlineTable::<Count>::new(300);
        let mut model: HashMap<u64, (i64, u32)> = HashMap::new();
        let mut x: u64 = 7;
        for step in 0..100_000_i64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let key = x % 2_000;
            let t = step / 50; // 50 events a ms: a key idle 1 s has seen 50,000 events pass
            let slot = table.get_or_insert(key, t);
            let expected = match model.get(&key) {
                Some(&(last, n)) if t - last <= Count::IDLE_MS => n,
                _ => 0,
            };
            // An evicted key reads 0 where the model (no limit) may still count.
            assert!(
                slot.state.0 == expected || slot.state.0 == 0,
                "key {key} at {t}"
            );
            slot.state.0 = slot.state.0.max(expected) + 1;
            slot.touch(t);
            model.insert(key, (t, slot.state.0));
            assert!(table.len <= 300);
            if step % 5_000 == 0 {
                for k in 0..2_000 {
                    if let Some(s) = table.get(k, t) {
                        assert_eq!(s.key, k);
                        assert_eq!(s.state.0, model[&k].1, "key {k}");
                    }
                }
            }
        }
        assert!(table.stats().evicted > 0);
        assert!(table.stats().expired > 0 || table.stats().evicted > 0);
    }

    #[test]
    fn sweep_all_drops_every_idle_key() {
        let mut table = InlineTable::<Count>::new(10_000);
        for k in 0..1_000 {
            table.get_or_insert(k, k as i64);
        }
        table.sweep_all(1_000 + 500);
        assert_eq!(table.stats().keys, 500); // keys 0..=499 idle longer than 1 s
        for k in 0..1_000_u64 {
            assert_eq!(table.get(k, 1_500).is_some(), k >= 500, "key {k}");
        }
    }
}
