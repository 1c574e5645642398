//! The pending reservations of one shard, by id: a log of fixed-size chunks sorted by id.
//!
//! Reservation ids are handed out in increasing order and almost always inserted in that
//! order, so appending keeps the log sorted and a lookup is a binary search: 48 bytes per
//! reservation with no hash-table slack (a hash map at its usual fill spends 1.2-2.1 times
//! that, and twice more for the old table while it grows). A resolved reservation leaves a
//! tombstone (its id with the top bit set); a chunk is compacted once three quarters of it are
//! tombstones and dropped when empty, so the log stays within about four times its live
//! reservations, and close to them while most are pending (a flash sale's buyers paying
//! slowly). The few inserted out of order (two threads racing for one shard, a `put_back`
//! whose tombstone was compacted away) go to a small side map.

use std::collections::VecDeque;

use rustc_hash::FxHashMap;

use super::reservation::{IdLayout, Reservation};

const CHUNK: usize = 1024;
const TOMBSTONE: u64 = 1 << 63;

#[derive(Debug)]
struct Slot {
    /// The reservation id; with `TOMBSTONE` set once it left.
    id: u64,
    reservation: Reservation,
}

#[derive(Debug)]
struct Chunk {
    slots: Vec<Slot>,
    live: usize,
}

impl Chunk {
    fn first_id(&self) -> u64 {
        self.slots.first().map_or(u64::MAX, |s| s.id & !TOMBSTONE)
    }

    /// Index of the slot with `id` (live or not).
    fn find(&self, id: u64) -> Option<usize> {
        self.slots
            .binary_search_by_key(&id, |s| s.id & !TOMBSTONE)
            .ok()
    }
}

/// Pending reservations by id.
#[derive(Debug, Default)]
pub struct PendingReservations {
    /// How the shard's ids map to dense positions: consecutive ids of the shard are
    /// consecutive positions, so a lookup first tries where an unbroken log would hold `id`.
    layout: IdLayout,
    chunks: VecDeque<Chunk>,
    others: FxHashMap<u64, Reservation>,
    live: usize,
}

impl PendingReservations {
    pub fn new(layout: IdLayout) -> Self {
        Self {
            layout,
            ..Self::default()
        }
    }

    pub fn len(&self) -> usize {
        self.live
    }

    #[allow(dead_code)] // clippy wants it beside `len`
    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// Hold `reservation` as pending under `id` (< 2^63), in place of any held under it.
    pub fn insert(&mut self, id: u64, reservation: Reservation) {
        debug_assert!(id & TOMBSTONE == 0);
        let last = self.chunks.back().and_then(|c| c.slots.last());
        let in_order = last.is_none_or(|s| s.id & !TOMBSTONE < id);
        if in_order && !self.others.contains_key(&id) {
            if self.chunks.back().is_none_or(|c| c.slots.len() == CHUNK) {
                self.chunks.push_back(Chunk {
                    slots: Vec::with_capacity(CHUNK),
                    live: 0,
                });
            }
            let chunk = self.chunks.back_mut().unwrap_or_else(|| unreachable!());
            chunk.slots.push(Slot { id, reservation });
            chunk.live += 1;
            self.live += 1;
            return;
        }
        if let Some((c, i)) = self.locate(id) {
            let chunk = &mut self.chunks[c];
            let slot = &mut chunk.slots[i];
            if slot.id & TOMBSTONE == 0 {
                slot.reservation = reservation;
                return;
            }
            // Back where it was (a take that led to no resolution).
            *slot = Slot { id, reservation };
            chunk.live += 1;
            self.live += 1;
            return;
        }
        // Out of order: it stays aside.
        if self.others.insert(id, reservation).is_none() {
            self.live += 1;
        }
    }

    pub fn get(&self, id: u64) -> Option<&Reservation> {
        match self.locate(id) {
            Some((c, i)) => {
                let slot = &self.chunks[c].slots[i];
                (slot.id & TOMBSTONE == 0).then_some(&slot.reservation)
            }
            None => self.others.get(&id),
        }
    }

    pub fn contains_key(&self, id: u64) -> bool {
        self.get(id).is_some()
    }

    /// Stop holding the reservation `id`; returns it.
    pub fn remove(&mut self, id: u64) -> Option<Reservation> {
        let Some((c, i)) = self.locate(id) else {
            let r = self.others.remove(&id)?;
            self.live -= 1;
            return Some(r);
        };
        let last = c + 1 == self.chunks.len();
        let chunk = &mut self.chunks[c];
        let slot = &mut chunk.slots[i];
        if slot.id & TOMBSTONE != 0 {
            return None;
        }
        slot.id |= TOMBSTONE;
        let reservation = std::mem::take(&mut slot.reservation);
        chunk.live -= 1;
        self.live -= 1;
        if chunk.live == 0 && !(last && chunk.slots.len() < CHUNK) {
            self.chunks.remove(c);
        } else if c > 0 && !last && chunk.slots.len() >= 64 && chunk.live * 4 < chunk.slots.len() {
            // Not the first chunk: that one drains in order as the oldest expire.
            chunk.slots.retain(|s| s.id & TOMBSTONE == 0);
            chunk.slots.shrink_to_fit();
        }
        Some(reservation)
    }

    /// Every pending reservation, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (u64, &Reservation)> {
        self.chunks
            .iter()
            .flat_map(|c| c.slots.iter())
            .filter(|s| s.id & TOMBSTONE == 0)
            .map(|s| (s.id, &s.reservation))
            .chain(self.others.iter().map(|(&id, r)| (id, r)))
    }

    /// Bytes of the slots allocated (the lines of reservations with more than one line not
    /// counted).
    pub fn heap_bytes(&self) -> usize {
        self.chunks
            .iter()
            .map(|c| c.slots.capacity() * std::mem::size_of::<Slot>())
            .sum::<usize>()
            + self.others.capacity() * (std::mem::size_of::<Slot>() + 1)
    }

    /// (chunk, index) of the slot of `id` in the log, live or a tombstone.
    fn locate(&self, id: u64) -> Option<(usize, usize)> {
        // Where an unbroken log (full chunks, no gaps, nothing compacted) holds it: the usual
        // case, one probe instead of two binary searches.
        let d = self.layout.dense(id);
        let base = self.layout.dense(self.chunks.front()?.first_id());
        if let Some(c) = d.checked_sub(base).map(|k| (k / CHUNK as u64) as usize) {
            if let Some(ch) = self.chunks.get(c) {
                let i = d.wrapping_sub(self.layout.dense(ch.first_id())) as usize;
                if ch.slots.get(i).is_some_and(|s| s.id & !TOMBSTONE == id) {
                    return Some((c, i));
                }
            }
        }
        let c = self.chunks.partition_point(|ch| ch.first_id() <= id);
        let c = c.checked_sub(1)?;
        self.chunks[c].find(id).map(|i| (c, i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(buyer: u64) -> Reservation {
        Reservation {
            buyer,
            deadline_ms: buyer,
            lines: Default::default(),
        }
    }

    #[test]
    fn holds_takes_and_puts_back_in_and_out_of_order() {
        let mut log = PendingReservations::default();
        let n = 5 * CHUNK as u64 + 3;
        for id in (1..=n).map(|k| 2 * k) {
            log.insert(id, res(id));
        }
        log.insert(7, res(7)); // out of order
        assert_eq!(log.len(), n as usize + 1);
        for id in (2..=2 * n).step_by(4) {
            assert_eq!(log.remove(id).map(|r| r.buyer), Some(id));
            assert!(log.remove(id).is_none());
        }
        for id in 1..=2 * n {
            let held = (id % 4 == 0) || id == 7;
            assert_eq!(log.contains_key(id), held, "{id}");
        }
        log.insert(6, res(60)); // put back where it was
        assert_eq!(log.get(6).map(|r| r.buyer), Some(60));
        let mut ids: Vec<u64> = log.iter().map(|(id, _)| id).collect();
        ids.sort_unstable();
        assert_eq!(ids.len(), log.len());
        for id in ids {
            assert!(log.remove(id).is_some());
        }
        assert!(log.is_empty());
        assert!(log.chunks.len() <= 1);
        assert!(log.others.is_empty());
        assert!(log.heap_bytes() <= CHUNK * 48 + log.others.capacity() * 49);
    }

    #[test]
    fn finds_ids_of_a_sharded_layout_with_gaps() {
        let layout = IdLayout::new(2);
        let mut log = PendingReservations::new(layout);
        // Shard 1's ids in order, a third of them never reserved (refused orders).
        let ids: Vec<u64> = (0..3 * CHUNK as u64)
            .map(|j| layout.id(1, j))
            .filter(|id| id % 3 != 0)
            .collect();
        for &id in &ids {
            log.insert(id, res(id));
        }
        for &id in &ids {
            assert_eq!(log.get(id).map(|r| r.buyer), Some(id));
            assert!(!log.contains_key(id + 16), "another shard's id");
        }
        for &id in ids.iter().step_by(2) {
            assert!(log.remove(id).is_some());
        }
        for (k, &id) in ids.iter().enumerate() {
            assert_eq!(log.contains_key(id), k % 2 == 1);
        }
    }
}
