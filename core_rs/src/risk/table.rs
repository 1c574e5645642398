//! Per-key state of one kind (buyers, devices, IPs ...) in bounded memory.
//!
//! Slots live in a slab (`Vec`) indexed by a hash map from the key. Keys idle longer than
//! `IDLE_MS` are dropped by an amortised sweep (a cursor that visits `SWEEP_STEP` slots per new
//! key), and a table at its `max_keys` evicts before inserting: the least recently seen of the
//! `EVICT_SAMPLE` slots at the cursor (sampled LRU, as Redis does: exact LRU would need a linked
//! list whose neighbours are two more cache misses per key touched).

use super::index::Index;

/// A key idle longer than this (ms) is forgotten: its windows are all empty by then (the longest
/// is 24 h), so only a buyer's lifetime count and mean restart. A kind whose windows are all
/// shorter forgets sooner ([`KeyState::IDLE_MS`]).
pub const IDLE_MS: i64 = 86_400_000;
/// Slots the sweep visits per key inserted: more than one, so that the sweep passes the whole
/// slab at least once while it doubles.
pub(crate) const SWEEP_STEP: usize = 2;
/// Slots compared to choose the one to evict from a full table.
pub(crate) const EVICT_SAMPLE: usize = 8;
/// `last_ms` of a free slot.
pub(crate) const FREE: i64 = i64::MIN;

/// Prefetches the cache lines of `len` bytes at `at` (a hint: no effect on the result).
#[inline]
pub(crate) fn prefetch_lines(at: *const u8, len: usize) {
    #[cfg(target_arch = "x86_64")]
    for offset in (0..len).step_by(64) {
        // SAFETY: a prefetch never faults and reads nothing architecturally; `at + offset` stays
        // within the slot it was given.
        unsafe {
            use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
            _mm_prefetch::<_MM_HINT_T0>(at.add(offset).cast());
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (at, len);
}

/// The state of one key: windows that move with its time, distinct sets, totals.
pub(crate) trait KeyState: Default {
    /// How long (ms) a key of this kind is kept idle: its longest window, so that forgetting
    /// it changes no feature.
    const IDLE_MS: i64 = IDLE_MS;
    /// Moves the windows' newest bucket from `last_ms` to `t_ms` (`t_ms >= last_ms`).
    fn advance(&mut self, last_ms: i64, t_ms: i64);
    /// Heap bytes held beyond the struct (distinct sets that spilled).
    fn heap_bytes(&self) -> usize;
}

/// A table that can load a key's entry (`prefetch_entry`) and then its slot (`prefetch`) into
/// cache ahead of use: hints with no effect on any result.
pub(crate) trait Prefetch {
    fn prefetch_entry(&self, key: u64);
    fn prefetch(&self, key: u64);
}

impl<S: KeyState> Prefetch for Table<S> {
    #[inline]
    fn prefetch_entry(&self, key: u64) {
        self.index.prefetch(key);
    }
    #[inline]
    fn prefetch(&self, key: u64) {
        if let Some(i) = self.index.get(key) {
            let slot: *const Slot<S> = &self.slots[i as usize];
            prefetch_lines(slot.cast(), std::mem::size_of::<Slot<S>>());
        }
    }
}

/// One tracked key and its state.
#[derive(Debug)]
pub(crate) struct Slot<S> {
    pub(crate) key: u64,
    /// The key's newest event (ms); `FREE` for a free slot.
    pub(crate) last_ms: i64,
    pub(crate) state: S,
}

impl<S: KeyState> Slot<S> {
    /// Moves the key's windows to `t_ms`, its newest event.
    #[inline]
    pub(crate) fn touch(&mut self, t_ms: i64) {
        if t_ms > self.last_ms {
            self.state.advance(self.last_ms, t_ms);
            self.last_ms = t_ms;
        }
    }
}

/// What a table holds and has dropped, for metrics and the memory figure.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TableStats {
    /// Keys tracked now.
    pub keys: usize,
    /// Keys dropped by the sweep after their kind's idle time.
    pub expired: u64,
    /// Keys evicted while still live because the table was at its maximum.
    pub evicted: u64,
    /// Bytes held: the slab, the index (estimated from its capacity) and spilled sets.
    pub bytes: usize,
}

/// The least recently seen of the first `EVICT_SAMPLE` live slots from `cursor` on (wrapping),
/// a free slot being one with `last_ms == FREE`; None when every slot is free. Both tables evict
/// with it.
pub(crate) fn eviction_victim<S>(slots: &[Slot<S>], cursor: usize) -> Option<usize> {
    let n = slots.len();
    let mut victim: Option<usize> = None;
    let mut seen = 0;
    for k in 0..n {
        let i = (cursor + k) % n;
        let last = slots[i].last_ms;
        if last == FREE {
            continue;
        }
        if victim.is_none_or(|v| last < slots[v].last_ms) {
            victim = Some(i);
        }
        seen += 1;
        if seen == EVICT_SAMPLE {
            break;
        }
    }
    victim
}

/// The keys of one kind.
#[derive(Debug)]
pub(crate) struct Table<S> {
    index: Index,
    slots: Vec<Slot<S>>,
    free: Vec<u32>,
    cursor: usize,
    max_keys: usize,
    expired: u64,
    evicted: u64,
}

impl<S: KeyState> Table<S> {
    /// An empty table holding at most `max_keys` keys (at least 1).
    pub(crate) fn new(max_keys: usize) -> Self {
        Self {
            index: Index::new(),
            slots: Vec::new(),
            free: Vec::new(),
            cursor: 0,
            // Slots are numbered by u32 (u32::MAX marks an empty index entry).
            max_keys: max_keys.clamp(1, u32::MAX as usize - 1),
            expired: 0,
            evicted: 0,
        }
    }

    /// The key's slot if it is tracked and was not idle longer than `IDLE_MS` at `t_ms`.
    #[inline]
    pub(crate) fn get(&self, key: u64, t_ms: i64) -> Option<&Slot<S>> {
        let i = self.index.get(key)?;
        let slot = &self.slots[i as usize];
        (t_ms.saturating_sub(slot.last_ms) <= S::IDLE_MS).then_some(slot)
    }

    /// The key's slot, made (empty, at `t_ms`) when it is new or was idle longer than `IDLE_MS`.
    #[inline]
    pub(crate) fn get_or_insert(&mut self, key: u64, t_ms: i64) -> &mut Slot<S> {
        let i = match self.index.get(key) {
            Some(i) => {
                let slot = &mut self.slots[i as usize];
                if t_ms.saturating_sub(slot.last_ms) > S::IDLE_MS {
                    // Not yet swept: the same as dropped and made again.
                    slot.state = S::default();
                    slot.last_ms = t_ms;
                }
                i
            }
            None => self.insert(key, t_ms),
        };
        &mut self.slots[i as usize]
    }

    fn insert(&mut self, key: u64, t_ms: i64) -> u32 {
        self.sweep(t_ms, SWEEP_STEP);
        if self.index.len() >= self.max_keys {
            self.evict_one();
        }
        let slot = Slot {
            key,
            last_ms: t_ms,
            state: S::default(),
        };
        let i = match self.free.pop() {
            Some(i) => {
                self.slots[i as usize] = slot;
                i
            }
            None => {
                self.slots.push(slot);
                // max_keys (below u32::MAX) bounds the slab.
                (self.slots.len() - 1) as u32
            }
        };
        self.index.insert(key, i);
        i
    }

    fn release(&mut self, i: usize) {
        let slot = &mut self.slots[i];
        self.index.remove(slot.key);
        slot.last_ms = FREE;
        slot.state = S::default(); // gives back a spilled set's heap now, not at reuse
        self.free.push(i as u32);
    }

    /// Visits `steps` slots at the cursor, dropping those idle longer than `IDLE_MS` at `t_ms`.
    fn sweep(&mut self, t_ms: i64, steps: usize) {
        for _ in 0..steps.min(self.slots.len()) {
            if self.cursor >= self.slots.len() {
                self.cursor = 0;
            }
            let last = self.slots[self.cursor].last_ms;
            if last != FREE && t_ms.saturating_sub(last) > S::IDLE_MS {
                self.release(self.cursor);
                self.expired += 1;
            }
            self.cursor += 1;
        }
    }

    /// Drops every key idle longer than `IDLE_MS` at `t_ms` (a whole pass; tests and metrics).
    pub(crate) fn sweep_all(&mut self, t_ms: i64) {
        self.sweep(t_ms, self.slots.len());
    }

    /// Evicts the least recently seen of the next `EVICT_SAMPLE` live slots at the cursor.
    fn evict_one(&mut self) {
        if let Some(v) = eviction_victim(&self.slots, self.cursor) {
            self.release(v);
            self.evicted += 1;
            self.cursor = v + 1;
        }
    }

    pub(crate) fn stats(&self) -> TableStats {
        let bytes = self.slots.capacity() * std::mem::size_of::<Slot<S>>()
            + self.free.capacity() * std::mem::size_of::<u32>()
            + self.index.bytes()
            + self
                .slots
                .iter()
                .map(|s| s.state.heap_bytes())
                .sum::<usize>();
        TableStats {
            keys: self.index.len(),
            expired: self.expired,
            evicted: self.evicted,
            bytes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default, Debug)]
    struct Count(u32);

    impl KeyState for Count {
        fn advance(&mut self, _: i64, _: i64) {}
        fn heap_bytes(&self) -> usize {
            0
        }
    }

    #[test]
    fn a_key_idle_longer_than_a_day_reads_as_new() {
        let mut t = Table::<Count>::new(10);
        t.get_or_insert(1, 0).state.0 = 5;
        assert_eq!(t.get(1, IDLE_MS).map(|s| s.state.0), Some(5));
        assert!(t.get(1, IDLE_MS + 1).is_none());
        let slot = t.get_or_insert(1, IDLE_MS + 1);
        assert_eq!(slot.state.0, 0);
        assert_eq!(slot.last_ms, IDLE_MS + 1);
    }

    #[test]
    fn the_sweep_drops_idle_keys_as_new_keys_arrive() {
        let mut t = Table::<Count>::new(1_000);
        for k in 0..100 {
            t.get_or_insert(k, 0);
        }
        assert_eq!(t.stats().keys, 100);
        // A day later, 60 new keys sweep 120 slots: every old key is visited and dropped.
        for k in 1_000..1_060 {
            t.get_or_insert(k, IDLE_MS + 1);
        }
        let stats = t.stats();
        assert_eq!(stats.keys, 60);
        assert_eq!(stats.expired, 100);
        assert_eq!(stats.evicted, 0);
        // The slab did not grow: the new keys reused the freed slots.
        assert_eq!(t.slots.len(), 100);
        assert!(t.get(5, IDLE_MS + 1).is_none());
    }

    #[test]
    fn sweep_all_drops_every_idle_key() {
        let mut t = Table::<Count>::new(1_000);
        for k in 0..10 {
            t.get_or_insert(k, k as i64);
        }
        t.sweep_all(IDLE_MS + 4);
        assert_eq!(t.stats().keys, 6); // keys 0..=3 were idle longer than a day
        assert!(t.get(4, IDLE_MS + 4).is_some());
    }

    #[test]
    fn a_full_table_evicts_and_never_grows() {
        let mut t = Table::<Count>::new(16);
        for k in 0..16 {
            t.get_or_insert(k, k as i64);
        }
        // A spray of 10,000 new keys: the table stays at its maximum.
        for k in 100..10_100 {
            t.get_or_insert(k, k as i64);
            // key 3 stays hot, touched at every new key's time
            t.get_or_insert(3, k as i64).touch(k as i64);
        }
        let stats = t.stats();
        assert_eq!(stats.keys, 16);
        assert_eq!(stats.evicted, 10_000);
        assert_eq!(t.slots.len(), 16);
        assert!(
            t.get(3, 10_100).is_some(),
            "the most recently seen key is never the victim"
        );
        assert!(t.get(10_099, 10_100).is_some());
    }

    #[test]
    fn eviction_takes_the_least_recently_seen_of_the_sample() {
        let mut t = Table::<Count>::new(4);
        for (k, at) in [(1, 10), (2, 5), (3, 20), (4, 30)] {
            t.get_or_insert(k, at);
        }
        t.get_or_insert(5, 40);
        assert!(t.get(2, 40).is_none());
        for k in [1, 3, 4, 5] {
            assert!(t.get(k, 40).is_some());
        }
    }
}
