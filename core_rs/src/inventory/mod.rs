//! Sharded inventory with two-phase reservations across warehouses.
//!
//! Semantics are specified in `docs/inventory.md`. Concurrency design:
//! - SKU stock is split into `shards` mutex-protected shards (SKU `s` in shard `s % shards`);
//!   reservations into as many shards by id. Threads on different SKUs take different locks.
//! - Lock order is fixed: reservation shard(s) first, then SKU shards in ascending index. Every
//!   multi-lock operation follows it, so there is no deadlock, and each operation is atomic
//!   (all lines or none, and a snapshot sees no half-done reservation).
//! - Batch calls lock every shard they touch once for the whole batch, which amortises locking
//!   to nothing per order and makes a batch's outcome equal to its orders applied in sequence.
//! - Warehouses and regions change rarely and are read on every reservation: they sit behind an
//!   `ArcSwap`, so reads take no lock.

mod error;
mod matching;
mod pending;
mod reservation;
mod reserve;
mod resolve;
mod state;
mod stock;

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use parking_lot::{Mutex, MutexGuard};
use rustc_hash::FxHashMap;
use smallvec::SmallVec;

pub use error::{status, InventoryError};
pub use matching::{MatchPolicy, MAX_LINE_QUANTITY, MAX_ORDER_LINES};
pub use reservation::{Line, Reservation, ReservationState};
pub use reserve::{BatchOrders, BatchOutcome};
pub use state::InventoryState;
pub use stock::{Slot, StockLevel};

use matching::{ShardAccess, ShardMap};
use reservation::{IdLayout, ReservationShard};
use stock::SkuShard;

/// Default reservation timeout: 15 minutes.
pub const DEFAULT_TIMEOUT_MS: u64 = 15 * 60 * 1000;
/// Longest reservation timeout accepted: 30 days.
pub const MAX_TIMEOUT_MS: u64 = 30 * 24 * 60 * 60 * 1000;
/// Most units on hand in one warehouse slot; sums of slots stay far from overflow.
pub const MAX_STOCK: u64 = 1 << 60;
/// Resolved reservations whose final state is remembered (the most recent ones, by id).
pub const DEFAULT_RESOLVED_MEMORY: usize = 1 << 20;

pub type Result<T> = std::result::Result<T, InventoryError>;

/// Milliseconds since the Unix epoch (UTC), from the system clock.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Warehouses and the regions they serve.
#[derive(Debug, Clone, Default)]
pub struct Topology {
    pub warehouse_count: u32,
    pub regions: FxHashMap<u32, Vec<u32>>,
}

/// The inventory: thread-safe, every method takes `&self`.
pub struct Inventory {
    sku_shards: Box<[Mutex<SkuShard>]>,
    res_shards: Box<[Mutex<ReservationShard>]>,
    map: ShardMap,
    ids: IdLayout,
    topology: ArcSwap<Topology>,
    next_reservation: AtomicU64,
    sku_count: AtomicU32,
    /// Serialises SKU registration and topology changes (never held with a reservation lock).
    registry: Mutex<()>,
    resolved_per_shard: usize,
}

/// Locks held on a few SKU shards (single-order paths), in ascending shard order.
struct FewShards<'a> {
    guards: SmallVec<[(usize, MutexGuard<'a, SkuShard>); 4]>,
}

impl ShardAccess for FewShards<'_> {
    #[inline]
    fn shard(&mut self, shard: usize) -> &mut SkuShard {
        let pos = self
            .guards
            .iter()
            .position(|(i, _)| *i == shard)
            .expect("shard locked by caller");
        &mut self.guards[pos].1
    }
}

/// Locks held on every SKU shard (batches, snapshots).
struct AllShards<'a> {
    guards: Vec<MutexGuard<'a, SkuShard>>,
}

impl ShardAccess for AllShards<'_> {
    #[inline]
    fn shard(&mut self, shard: usize) -> &mut SkuShard {
        &mut self.guards[shard]
    }
}

impl Inventory {
    /// An empty inventory with warehouse 0 and `shards` shards (a power of two, 1..=1024).
    pub fn new(shards: usize) -> Result<Self> {
        if !(1..=1024).contains(&shards) || !shards.is_power_of_two() {
            return Err(InventoryError::argument(format!(
                "shards must be a power of two between 1 and 1024, got {shards}"
            )));
        }
        Ok(Self {
            sku_shards: (0..shards)
                .map(|_| Mutex::new(SkuShard::default()))
                .collect(),
            res_shards: (0..shards)
                .map(|i| {
                    Mutex::new(ReservationShard::new(
                        i,
                        IdLayout::new(shards.trailing_zeros()),
                    ))
                })
                .collect(),
            ids: IdLayout::new(shards.trailing_zeros()),
            map: ShardMap {
                shift: shards.trailing_zeros(),
                mask: (shards - 1) as u32,
            },
            topology: ArcSwap::from_pointee(Topology {
                warehouse_count: 1,
                regions: FxHashMap::default(),
            }),
            next_reservation: AtomicU64::new(1),
            sku_count: AtomicU32::new(0),
            registry: Mutex::new(()),
            resolved_per_shard: DEFAULT_RESOLVED_MEMORY.div_ceil(shards),
        })
    }

    pub fn shards(&self) -> usize {
        self.sku_shards.len()
    }

    pub fn sku_count(&self) -> u32 {
        self.sku_count.load(Ordering::Acquire)
    }

    pub fn warehouse_count(&self) -> u32 {
        self.topology.load().warehouse_count
    }

    pub fn open_reservations(&self) -> usize {
        self.res_shards.iter().map(|s| s.lock().pending.len()).sum()
    }

    /// Bytes held for pending reservations (their records, deadline index and the final
    /// states of recent ones), not counting the lines of reservations of two or more lines.
    pub fn reservation_bytes(&self) -> usize {
        self.res_shards.iter().map(|s| s.lock().heap_bytes()).sum()
    }

    // --- warehouses and regions ---------------------------------------------------------

    /// Add a warehouse; returns its index.
    pub fn add_warehouse(&self) -> Result<u32> {
        let _registry = self.registry.lock();
        let mut topology = Topology::clone(&self.topology.load());
        if topology.warehouse_count >= u32::MAX - 1 {
            return Err(InventoryError::argument("too many warehouses"));
        }
        let index = topology.warehouse_count;
        topology.warehouse_count += 1;
        self.topology.store(topology.into());
        Ok(index)
    }

    /// Set the warehouses serving `region`, most preferred (nearest) first.
    pub fn set_region(&self, region: u32, warehouses: &[u32]) -> Result<()> {
        let _registry = self.registry.lock();
        let mut topology = Topology::clone(&self.topology.load());
        for (i, &wh) in warehouses.iter().enumerate() {
            if wh >= topology.warehouse_count {
                return Err(InventoryError::UnknownWarehouse { warehouse: wh });
            }
            if warehouses[..i].contains(&wh) {
                return Err(InventoryError::argument(format!(
                    "warehouse {wh} is listed twice for region {region}"
                )));
            }
        }
        topology.regions.insert(region, warehouses.to_vec());
        self.topology.store(topology.into());
        Ok(())
    }

    pub fn region_warehouses(&self, region: u32) -> Result<Vec<u32>> {
        self.topology
            .load()
            .regions
            .get(&region)
            .cloned()
            .ok_or(InventoryError::UnknownRegion { region })
    }

    fn check_warehouse(&self, warehouse: u32) -> Result<()> {
        if warehouse >= self.warehouse_count() {
            return Err(InventoryError::UnknownWarehouse { warehouse });
        }
        Ok(())
    }

    // --- catalogue ----------------------------------------------------------------------

    /// Register a SKU with `(warehouse, units)` on hand and a per-buyer limit (0: none).
    pub fn add_sku(&self, stock: &[(u32, u64)], limit_per_buyer: u64) -> Result<u32> {
        for (i, &(wh, units)) in stock.iter().enumerate() {
            self.check_warehouse(wh)?;
            check_units(units)?;
            if stock[..i].iter().any(|&(w, _)| w == wh) {
                return Err(InventoryError::argument(format!(
                    "warehouse {wh} is given twice"
                )));
            }
        }
        let _registry = self.registry.lock();
        let sku = self.sku_count.load(Ordering::Acquire);
        if sku == u32::MAX {
            return Err(InventoryError::argument("the catalogue is full"));
        }
        let (shard, local) = self.map.locate(sku);
        let mut shard = self.sku_shards[shard].lock();
        debug_assert_eq!(shard.skus.len(), local);
        let mut entry = stock::SkuStock::default();
        for &(wh, units) in stock {
            entry.slot_or_open(wh).available = units;
        }
        shard.skus.push(entry);
        if limit_per_buyer > 0 {
            shard.limits.insert(sku, limit_per_buyer);
        }
        self.sku_count.store(sku + 1, Ordering::Release);
        Ok(sku)
    }

    /// Register `on_hand.len()` SKUs, each with its units in `warehouse`; returns the first index.
    pub fn add_skus(&self, on_hand: &[i64], warehouse: u32) -> Result<u32> {
        self.check_warehouse(warehouse)?;
        for &units in on_hand {
            if units < 0 {
                return Err(InventoryError::quantity(format!(
                    "on-hand units must be >= 0, got {units}"
                )));
            }
            check_units(units as u64)?;
        }
        let _registry = self.registry.lock();
        let first = self.sku_count.load(Ordering::Acquire);
        if u64::from(first) + on_hand.len() as u64 >= u64::from(u32::MAX) {
            return Err(InventoryError::argument("the catalogue is full"));
        }
        let mut all = self.lock_all_skus();
        for (i, &units) in on_hand.iter().enumerate() {
            let (shard, _) = self.map.locate(first + i as u32);
            let mut entry = stock::SkuStock::default();
            entry.slot_or_open(warehouse).available = units as u64;
            all.guards[shard].skus.push(entry);
        }
        self.sku_count
            .store(first + on_hand.len() as u32, Ordering::Release);
        Ok(first)
    }

    /// Add `quantity` units on hand in `warehouse`; they become available.
    pub fn restock(&self, sku: u32, quantity: u64, warehouse: u32) -> Result<()> {
        if quantity == 0 {
            return Err(InventoryError::quantity("a restock adds at least 1 unit"));
        }
        self.adjust(sku, i64::try_from(quantity).unwrap_or(i64::MAX), warehouse)
    }

    /// Correct units on hand in `warehouse` by `delta`; on hand never drops below reserved + sold.
    pub fn adjust(&self, sku: u32, delta: i64, warehouse: u32) -> Result<()> {
        self.check_warehouse(warehouse)?;
        self.with_sku(sku, |shard, local| {
            let entry = &mut shard.skus[local];
            let available = entry.slot(warehouse).map_or(0, |s| s.available);
            let on_hand = entry.slot(warehouse).map_or(0, |s| s.on_hand());
            let new_available = i128::from(available) + i128::from(delta);
            if new_available < 0 {
                return Err(InventoryError::quantity(format!(
                    "cannot remove {} units of SKU {sku} in warehouse {warehouse}: only {available} available",
                    -delta
                )));
            }
            if i128::from(on_hand) + i128::from(delta) > i128::from(MAX_STOCK) {
                return Err(InventoryError::quantity(format!("on-hand units would exceed {MAX_STOCK}")));
            }
            if delta != 0 {
                entry.slot_or_open(warehouse).available = new_available as u64;
            }
            Ok(())
        })
    }

    /// Return `quantity` sold units in `warehouse` to available (a refunded sale or a return):
    /// on hand is unchanged. Refused if fewer than `quantity` units are sold there.
    ///
    /// With `buyer`, the sale is void (a paid order cancelled): the units also stop counting
    /// against the buyer's purchase limit, as a rebuild from the store would count them. A
    /// return passes no buyer: the units were bought, and still count.
    pub fn return_sold(
        &self,
        sku: u32,
        quantity: u64,
        warehouse: u32,
        buyer: Option<u64>,
    ) -> Result<()> {
        self.check_warehouse(warehouse)?;
        if quantity == 0 {
            return Err(InventoryError::quantity("a return moves at least 1 unit"));
        }
        self.with_sku(sku, |shard, local| {
            let Some(slot) = shard.skus[local].slot_mut(warehouse) else {
                return Err(InventoryError::quantity(format!(
                    "SKU {sku} has no stock in warehouse {warehouse}"
                )));
            };
            if slot.sold < quantity {
                return Err(InventoryError::quantity(format!(
                    "cannot return {quantity} units of SKU {sku} in warehouse {warehouse}: only {} sold",
                    slot.sold
                )));
            }
            slot.sold -= quantity;
            slot.available += quantity;
            if let Some(buyer) = buyer {
                shard.uncount_sale(sku, buyer, quantity);
            }
            Ok(())
        })
    }

    /// Cap the units one buyer may hold reserved plus bought (0 removes the cap). Counting
    /// starts when a cap is set: set it before the sale opens.
    pub fn set_purchase_limit(&self, sku: u32, limit_per_buyer: u64) -> Result<()> {
        self.with_sku(sku, |shard, _| {
            if limit_per_buyer == 0 {
                shard.remove_limit(sku);
            } else {
                shard.limits.insert(sku, limit_per_buyer);
            }
            Ok(())
        })
    }

    pub fn purchase_limit(&self, sku: u32) -> Result<u64> {
        self.with_sku(sku, |shard, _| {
            Ok(shard.limits.get(&sku).copied().unwrap_or(0))
        })
    }

    /// Units of `sku` the buyer holds reserved or bought, counted while the SKU has a limit.
    pub fn bought_by(&self, sku: u32, buyer: u64) -> Result<u64> {
        self.with_sku(sku, |shard, _| Ok(shard.held_by(sku, buyer)))
    }

    /// Units of `sku` in `warehouse`, or in total.
    pub fn stock(&self, sku: u32, warehouse: Option<u32>) -> Result<StockLevel> {
        if let Some(wh) = warehouse {
            self.check_warehouse(wh)?;
        }
        self.with_sku(sku, |shard, local| {
            let entry = &shard.skus[local];
            Ok(match warehouse {
                None => entry.total(),
                Some(wh) => {
                    let mut level = StockLevel::default();
                    if let Some(slot) = entry.slot(wh) {
                        level.add(slot);
                    }
                    level
                }
            })
        })
    }

    /// Units of `sku` per warehouse holding it, by warehouse index.
    pub fn stock_by_warehouse(&self, sku: u32) -> Result<Vec<(u32, StockLevel)>> {
        self.with_sku(sku, |shard, local| {
            Ok(shard.skus[local]
                .slots
                .iter()
                .map(|slot| {
                    let mut level = StockLevel::default();
                    level.add(slot);
                    (slot.warehouse, level)
                })
                .collect())
        })
    }

    // --- locking helpers -----------------------------------------------------------------

    fn with_sku<T>(
        &self,
        sku: u32,
        f: impl FnOnce(&mut SkuShard, usize) -> Result<T>,
    ) -> Result<T> {
        let (shard, local) = self.map.locate(sku);
        let mut shard = self.sku_shards[shard].lock();
        if local >= shard.skus.len() {
            return Err(InventoryError::UnknownSku { sku });
        }
        f(&mut shard, local)
    }

    fn lock_all_skus(&self) -> AllShards<'_> {
        AllShards {
            guards: self.sku_shards.iter().map(|m| m.lock()).collect(),
        }
    }

    fn lock_skus<'a>(&'a self, skus: impl Iterator<Item = u32>) -> FewShards<'a> {
        let mut idx: SmallVec<[usize; 4]> = skus.map(|s| self.map.locate(s).0).collect();
        idx.sort_unstable();
        idx.dedup();
        FewShards {
            guards: idx
                .into_iter()
                .map(|i| (i, self.sku_shards[i].lock()))
                .collect(),
        }
    }

    fn res_shard(&self, id: u64) -> &Mutex<ReservationShard> {
        &self.res_shards[self.res_index(id)]
    }

    /// Reservation `id` lives in shard `(id / RUN) % shards`: runs of consecutive ids share a
    /// shard, so a batch writes each shard's table sequentially instead of striding over all.
    #[inline]
    fn res_index(&self, id: u64) -> usize {
        self.ids.shard(id)
    }
}

fn check_units(units: u64) -> Result<()> {
    if units > MAX_STOCK {
        return Err(InventoryError::quantity(format!(
            "on-hand units must be at most {MAX_STOCK}, got {units}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
