//! Stock of SKUs per warehouse, split into shards.
//!
//! SKU `s` lives in shard `s & mask` at local index `s >> shift`, so consecutive SKUs spread
//! over all shards and threads working on different SKUs rarely meet on one lock.

use rustc_hash::FxHashMap;
use smallvec::SmallVec;

/// Units of one SKU in one warehouse. `on_hand = available + reserved + sold` by construction:
/// on-hand is never stored, so it cannot drift from its parts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Slot {
    pub warehouse: u32,
    pub available: u64,
    pub reserved: u64,
    pub sold: u64,
}

impl Slot {
    pub fn on_hand(&self) -> u64 {
        self.available + self.reserved + self.sold
    }
}

/// Totals of one SKU, in one warehouse or over all of them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StockLevel {
    pub on_hand: u64,
    pub available: u64,
    pub reserved: u64,
    pub sold: u64,
}

impl StockLevel {
    pub fn add(&mut self, slot: &Slot) {
        self.on_hand += slot.on_hand();
        self.available += slot.available;
        self.reserved += slot.reserved;
        self.sold += slot.sold;
    }
}

/// One SKU: a slot per warehouse that holds it, sorted by warehouse index. One inline slot
/// keeps the single-warehouse case a plain counter with no extra allocation.
#[derive(Debug, Clone, Default)]
pub struct SkuStock {
    pub slots: SmallVec<[Slot; 1]>,
}

impl SkuStock {
    #[inline]
    pub fn slot(&self, warehouse: u32) -> Option<&Slot> {
        self.slots.iter().find(|s| s.warehouse == warehouse)
    }

    #[inline]
    pub fn slot_mut(&mut self, warehouse: u32) -> Option<&mut Slot> {
        self.slots.iter_mut().find(|s| s.warehouse == warehouse)
    }

    /// The slot of `warehouse`, opened (empty) if the SKU had none there.
    pub fn slot_or_open(&mut self, warehouse: u32) -> &mut Slot {
        let pos = match self.slots.binary_search_by_key(&warehouse, |s| s.warehouse) {
            Ok(pos) => pos,
            Err(pos) => {
                self.slots.insert(
                    pos,
                    Slot {
                        warehouse,
                        ..Slot::default()
                    },
                );
                pos
            }
        };
        &mut self.slots[pos]
    }

    #[inline]
    pub fn available_in(&self, warehouse: u32) -> u64 {
        self.slot(warehouse).map_or(0, |s| s.available)
    }

    pub fn total(&self) -> StockLevel {
        let mut level = StockLevel::default();
        for slot in &self.slots {
            level.add(slot);
        }
        level
    }
}

/// One shard of the SKU table with the purchase-limit bookkeeping of its SKUs.
#[derive(Debug, Default)]
pub struct SkuShard {
    pub skus: Vec<SkuStock>,
    /// Units per buyer allowed for SKUs that have a limit (absent: no limit).
    pub limits: FxHashMap<u32, u64>,
    /// Units a buyer holds reserved plus bought, for SKUs with a limit.
    pub bought: FxHashMap<(u32, u64), u64>,
    /// Bumped each time a SKU's limit is removed (absent: 0); see `Line::counted`.
    pub limit_epochs: FxHashMap<u32, u32>,
}

impl SkuShard {
    pub fn held_by(&self, sku: u32, buyer: u64) -> u64 {
        self.bought.get(&(sku, buyer)).copied().unwrap_or(0)
    }

    /// The `Line::counted` mark for units of `sku` reserved now.
    #[inline]
    pub fn count_mark(&self, sku: u32) -> u32 {
        if self.limits.is_empty() || !self.limits.contains_key(&sku) {
            return 0;
        }
        self.limit_epochs.get(&sku).copied().unwrap_or(0) + 1
    }

    /// Count `units` more for the buyer if the SKU has a limit.
    pub fn count_bought(&mut self, sku: u32, buyer: u64, units: u64) {
        if units > 0 && self.limits.contains_key(&sku) {
            *self.bought.entry((sku, buyer)).or_insert(0) += units;
        }
    }

    /// Give back `units` of the buyer's count (released, expired or unsold part of a confirm),
    /// if they were counted under the SKU's current limit (`mark` from `count_mark`).
    pub fn uncount_bought(&mut self, sku: u32, buyer: u64, units: u64, mark: u32) {
        if units == 0 || mark == 0 || mark != self.count_mark(sku) {
            return;
        }
        if let Some(held) = self.bought.get_mut(&(sku, buyer)) {
            *held = held.saturating_sub(units);
            if *held == 0 {
                self.bought.remove(&(sku, buyer));
            }
        }
    }

    /// Give back `units` of the buyer's count for a sale made void (whatever limit it was
    /// counted under: a rebuild counts the paid orders under the limit as it is now).
    pub fn uncount_sale(&mut self, sku: u32, buyer: u64, units: u64) {
        if let Some(held) = self.bought.get_mut(&(sku, buyer)) {
            *held = held.saturating_sub(units);
            if *held == 0 {
                self.bought.remove(&(sku, buyer));
            }
        }
    }

    /// Remove a SKU's limit: its counts go, and units counted under it are never given back.
    pub fn remove_limit(&mut self, sku: u32) {
        if self.limits.remove(&sku).is_some() {
            self.bought.retain(|&(s, _), _| s != sku);
            *self.limit_epochs.entry(sku).or_insert(0) += 1;
        }
    }
}
