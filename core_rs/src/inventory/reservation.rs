//! Pending reservations, their deadline index, and the final state of resolved ones.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use rustc_hash::FxHashMap;
use smallvec::SmallVec;

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
}

/// A pending reservation. Most orders have one line, which stays inline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    pub buyer: u64,
    pub deadline_ms: u64,
    pub lines: SmallVec<[Line; 1]>,
}

/// One shard of the reservation table (reservation `id` lives in shard `id & mask`).
///
/// The deadline index is a min-heap with lazy deletion: resolving a reservation leaves its heap
/// entry behind as stale; stale entries are skipped when popped, and the heap is rebuilt from
/// the pending map when stale entries outnumber live ones, so memory stays proportional to the
/// pending reservations and each operation is amortised O(log n).
#[derive(Debug, Default)]
pub struct ReservationShard {
    pub pending: FxHashMap<u64, Reservation>,
    deadlines: BinaryHeap<Reverse<(u64, u64)>>,
    stale: usize,
    resolved: FxHashMap<u64, u8>,
}

impl ReservationShard {
    pub fn insert(&mut self, id: u64, reservation: Reservation) {
        self.deadlines.push(Reverse((reservation.deadline_ms, id)));
        self.pending.insert(id, reservation);
    }

    /// Take a pending reservation out, remembering how it resolved.
    pub fn resolve(&mut self, id: u64, state: ReservationState) -> Option<Reservation> {
        let reservation = self.pending.remove(&id)?;
        self.resolved.insert(id, state as u8);
        self.stale += 1;
        if self.stale > 1024 && self.stale > self.pending.len() {
            self.rebuild_index();
        }
        Some(reservation)
    }

    pub fn state_of(&self, id: u64) -> Option<ReservationState> {
        if self.pending.contains_key(&id) {
            Some(ReservationState::Pending)
        } else {
            self.resolved.get(&id).map(|&s| ReservationState::from_u8(s))
        }
    }

    /// Earliest (deadline, id) of a pending reservation, dropping stale entries on the way.
    pub fn peek_due(&mut self) -> Option<(u64, u64)> {
        while let Some(&Reverse((deadline, id))) = self.deadlines.peek() {
            if self.pending.contains_key(&id) {
                return Some((deadline, id));
            }
            self.deadlines.pop();
            self.stale = self.stale.saturating_sub(1);
        }
        None
    }

    pub fn forget_resolved(&mut self, up_to: u64) -> usize {
        let before = self.resolved.len();
        self.resolved.retain(|&id, _| id > up_to);
        self.resolved.shrink_to_fit();
        before - self.resolved.len()
    }

    pub fn reserve_capacity(&mut self, additional: usize) {
        self.pending.reserve(additional);
        self.deadlines.reserve(additional);
    }

    fn rebuild_index(&mut self) {
        self.deadlines = self.pending.iter().map(|(&id, r)| Reverse((r.deadline_ms, id))).collect();
        self.stale = 0;
    }
}

impl ReservationShard {
    /// Keep the final state of at most about `keep` resolved reservations, the newest by id:
    /// when twice that many are held, the older half is forgotten (amortised O(1)).
    pub fn trim_resolved(&mut self, keep: usize) {
        if self.resolved.len() <= keep.saturating_mul(2) {
            return;
        }
        let mut ids: Vec<u64> = self.resolved.keys().copied().collect();
        let cut = ids.len() - keep;
        let (_, &mut threshold, _) = ids.select_nth_unstable(cut);
        self.resolved.retain(|&id, _| id >= threshold);
    }
}
