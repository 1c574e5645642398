//! Pending reservations, their deadline index, and the final state of resolved ones.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

use smallvec::SmallVec;

use super::pending::PendingReservations;

/// Where a reservation is in its life. It leaves `Pending` exactly once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ReservationState {
    Pending = 0,
    Confirmed = 1,
    Released = 2,
    Expired = 3,
}

impl ReservationState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Confirmed => "confirmed",
            Self::Released => "released",
            Self::Expired => "expired",
        }
    }

    fn from_u8(v: u8) -> Self {
        match v {
            1 => Self::Confirmed,
            2 => Self::Released,
            3 => Self::Expired,
            _ => Self::Pending,
        }
    }
}

/// One reserved line: `quantity` units of `sku` held in `warehouse`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Line {
    pub sku: u32,
    pub warehouse: u32,
    pub quantity: u32,
    /// The SKU's limit epoch + 1 when the units were counted against a purchase limit, 0 when
    /// the SKU had no limit. Only units counted in the current epoch are given back, so a
    /// reservation made before a limit can never lower the count of units made under it.
    pub counted: u32,
}

/// A pending reservation. Most orders have one line, which stays inline.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reservation {
    pub buyer: u64,
    pub deadline_ms: u64,
    pub lines: SmallVec<[Line; 1]>,
}

/// Consecutive ids come in runs of `2^RUN_BITS` per shard (see `Inventory::res_index`).
pub const RUN_BITS: u32 = 4;
const RUN_MASK: u64 = (1 << RUN_BITS) - 1;

/// Where ids live: shard `(id >> RUN_BITS) % 2^shift`, at a dense index within the shard.
#[derive(Debug, Clone, Copy, Default)]
pub struct IdLayout {
    shift: u32,
}

impl IdLayout {
    pub fn new(shift: u32) -> Self {
        Self { shift }
    }

    #[inline]
    pub fn shard(&self, id: u64) -> usize {
        ((id >> RUN_BITS) & ((1u64 << self.shift) - 1)) as usize
    }

    /// Dense index of `id` among the ids of its shard (monotonic in `id` within a shard).
    #[inline]
    pub fn dense(&self, id: u64) -> u64 {
        ((id >> (self.shift + RUN_BITS)) << RUN_BITS) | (id & RUN_MASK)
    }

    /// The id at dense index `j` of `shard`.
    #[inline]
    pub fn id(&self, shard: usize, j: u64) -> u64 {
        ((j >> RUN_BITS) << (self.shift + RUN_BITS)) | ((shard as u64) << RUN_BITS) | (j & RUN_MASK)
    }
}

/// State byte of an id that is not (or no longer) known to the shard.
const UNKNOWN: u8 = u8::MAX;
/// Larger jumps of the dense index restart the state window instead of filling the gap.
const MAX_STATE_GAP: u64 = 1 << 22;

/// One shard of the reservation table.
///
/// The deadline index is a min-heap with lazy deletion: resolving a reservation leaves its heap
/// entry behind as stale; stale entries are skipped when popped, and the heap is rebuilt in
/// place when stale entries outnumber live ones, so memory stays proportional to the pending
/// reservations and each operation is amortised O(log n).
///
/// The final states of resolved reservations sit in a ring of one byte per id, indexed by the
/// dense index: the most recent ids are remembered at a byte each and in sequential memory.
#[derive(Debug)]
pub struct ReservationShard {
    index: usize,
    layout: IdLayout,
    /// By id, in a sorted log: no hash-table slack, and never a table to move as it grows.
    pub pending: PendingReservations,
    deadlines: BinaryHeap<Reverse<(u64, u64)>>,
    stale: usize,
    /// `states[k]` is the state of the id at dense index `base + k` (`UNKNOWN` if none).
    states: VecDeque<u8>,
    base: u64,
}

impl ReservationShard {
    pub fn new(index: usize, layout: IdLayout) -> Self {
        Self {
            index,
            layout,
            pending: PendingReservations::new(layout),
            deadlines: BinaryHeap::new(),
            stale: 0,
            states: VecDeque::new(),
            base: 0,
        }
    }

    pub fn insert(&mut self, id: u64, reservation: Reservation) {
        self.deadlines.push(Reverse((reservation.deadline_ms, id)));
        self.pending.insert(id, reservation);
        self.set_state(id, ReservationState::Pending as u8);
    }

    /// Take a pending reservation out, remembering how it resolved.
    pub fn resolve(&mut self, id: u64, state: ReservationState) -> Option<Reservation> {
        let reservation = self.pending.remove(id)?;
        self.record(id, state);
        Some(reservation)
    }

    /// Take a pending reservation out to decide its fate: `record` it or `put_back`.
    pub fn take(&mut self, id: u64) -> Option<Reservation> {
        self.pending.remove(id)
    }

    /// Undo a `take` that led to no resolution (its deadline entry never left the heap).
    pub fn put_back(&mut self, id: u64, reservation: Reservation) {
        self.pending.insert(id, reservation);
    }

    /// Remember the final state of a taken reservation.
    pub fn record(&mut self, id: u64, state: ReservationState) {
        self.set_state(id, state as u8);
        self.stale += 1;
        if self.stale > 1024 && self.stale > self.pending.len() {
            self.rebuild_index();
        }
    }

    pub fn state_of(&self, id: u64) -> Option<ReservationState> {
        if self.pending.contains_key(id) {
            return Some(ReservationState::Pending);
        }
        let j = self.layout.dense(id);
        let k = usize::try_from(j.checked_sub(self.base)?).ok()?;
        match self.states.get(k).copied() {
            Some(s) if s != UNKNOWN && s != ReservationState::Pending as u8 => {
                Some(ReservationState::from_u8(s))
            }
            _ => None,
        }
    }

    /// Move a pending reservation's deadline; false if it is not pending. Its old heap entry
    /// stays behind, stale (its deadline no longer the reservation's).
    pub fn move_deadline(&mut self, id: u64, deadline_ms: u64) -> bool {
        let Some(mut reservation) = self.pending.remove(id) else {
            return false;
        };
        reservation.deadline_ms = deadline_ms;
        self.pending.insert(id, reservation);
        self.deadlines.push(Reverse((deadline_ms, id)));
        self.stale += 1;
        true
    }

    /// Earliest (deadline, id) of a pending reservation, dropping stale entries on the way
    /// (of reservations resolved, or whose deadline moved).
    pub fn peek_due(&mut self) -> Option<(u64, u64)> {
        while let Some(&Reverse((deadline, id))) = self.deadlines.peek() {
            if self
                .pending
                .get(id)
                .is_some_and(|r| r.deadline_ms == deadline)
            {
                return Some((deadline, id));
            }
            self.deadlines.pop();
            self.stale = self.stale.saturating_sub(1);
        }
        None
    }

    /// Forget the final state of resolved reservations with id <= `up_to`; returns how many.
    pub fn forget_resolved(&mut self, up_to: u64) -> usize {
        let mut forgotten = 0;
        for (k, s) in self.states.iter_mut().enumerate() {
            let id = self.layout.id(self.index, self.base + k as u64);
            if id > up_to {
                break;
            }
            if *s != UNKNOWN && *s != ReservationState::Pending as u8 {
                *s = UNKNOWN;
                forgotten += 1;
            }
        }
        while self.states.front().is_some_and(|&s| s == UNKNOWN) {
            self.states.pop_front();
            self.base += 1;
        }
        forgotten
    }

    /// Bytes held for the pending reservations: their log and their deadline index.
    pub fn heap_bytes(&self) -> usize {
        self.pending.heap_bytes()
            + self.deadlines.capacity() * std::mem::size_of::<Reverse<(u64, u64)>>()
            + self.states.capacity()
    }

    pub fn reserve_capacity(&mut self, additional: usize) {
        self.deadlines.reserve(additional);
    }

    /// Keep the final state of about the `keep` most recent ids: when twice that many are
    /// held, the older half is forgotten (amortised O(1)). Pending ones stay in `pending`.
    pub fn trim_resolved(&mut self, keep: usize) {
        if self.states.len() > keep.saturating_mul(2) {
            let drop = self.states.len() - keep;
            self.states.drain(..drop);
            self.base += drop as u64;
        }
    }

    fn set_state(&mut self, id: u64, state: u8) {
        let j = self.layout.dense(id);
        if self.states.is_empty() {
            self.base = j;
        }
        if j < self.base {
            // Older than every remembered id (restored or long-lived): a pending one is still
            // known through `pending`; only its final state will not be remembered.
            return;
        }
        let gap = j - self.base;
        if gap >= MAX_STATE_GAP {
            // A jump far ahead (a restore with a distant next id): nothing in between exists;
            // start the window at the new id rather than filling the gap.
            self.states.clear();
            self.base = j;
        }
        let k = (j - self.base) as usize;
        if k >= self.states.len() {
            self.states.resize(k + 1, UNKNOWN);
        }
        self.states[k] = state;
    }

    fn rebuild_index(&mut self) {
        // In place: keeping the allocation avoids faulting in fresh pages on every rebuild.
        let pending = &self.pending;
        self.deadlines.retain(|Reverse((deadline, id))| {
            pending.get(*id).is_some_and(|r| r.deadline_ms == *deadline)
        });
        self.stale = 0;
    }
}

#[cfg(test)]
impl ReservationShard {
    pub fn deadline_entries(&self) -> usize {
        self.deadlines.len()
    }
}
