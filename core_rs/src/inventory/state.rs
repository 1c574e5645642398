//! Export a consistent snapshot of the inventory and rebuild one from it (or from storage).

use rustc_hash::{FxHashMap, FxHashSet};
use smallvec::SmallVec;

use super::matching::MAX_LINE_QUANTITY;
use super::reservation::{Line, Reservation};
use super::{check_units, Inventory, InventoryError, Result, Topology};

/// The inventory as flat arrays (see `docs/inventory.md` for the meaning of each).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InventoryState {
    pub sku_count: u64,
    pub warehouse_count: u64,
    pub next_reservation_id: u64,
    pub stock_sku: Vec<u32>,
    pub stock_warehouse: Vec<u32>,
    pub stock_on_hand: Vec<i64>,
    pub stock_sold: Vec<i64>,
    pub limit_sku: Vec<u32>,
    pub limit_units: Vec<u64>,
    pub bought_sku: Vec<u32>,
    pub bought_buyer: Vec<u64>,
    pub bought_units: Vec<u64>,
    pub region_id: Vec<u32>,
    pub region_offsets: Vec<u64>,
    pub region_warehouses: Vec<u32>,
    pub res_id: Vec<u64>,
    pub res_buyer: Vec<u64>,
    pub res_deadline_ms: Vec<u64>,
    pub res_offsets: Vec<u64>,
    pub line_sku: Vec<u32>,
    pub line_warehouse: Vec<u32>,
    pub line_quantity: Vec<u32>,
    /// Per line, 1 if its units count against the SKU's purchase limit. Empty: every line of a
    /// SKU with a limit counts (what a store that does not keep the mark rebuilds).
    pub line_counted: Vec<u8>,
}

impl Inventory {
    /// A consistent snapshot (every lock held while it is taken).
    pub fn export_state(&self) -> InventoryState {
        let _registry = self.registry.lock();
        let res: Vec<_> = self.res_shards.iter().map(|m| m.lock()).collect();
        let skus = self.lock_all_skus();
        let topology = self.topology.load();
        let mut st = InventoryState {
            sku_count: u64::from(self.sku_count()),
            warehouse_count: u64::from(topology.warehouse_count),
            next_reservation_id: self
                .next_reservation
                .load(std::sync::atomic::Ordering::Relaxed),
            ..InventoryState::default()
        };
        for sku in 0..self.sku_count() {
            let (shard, local) = self.map.locate(sku);
            for slot in &skus.guards[shard].skus[local].slots {
                st.stock_sku.push(sku);
                st.stock_warehouse.push(slot.warehouse);
                st.stock_on_hand.push(slot.on_hand() as i64);
                st.stock_sold.push(slot.sold as i64);
            }
        }
        // Pending reservations, by id; their units are counted out of the buyers' totals
        // below so that `bought_units` is what was confirmed.
        let mut pending: Vec<(u64, &Reservation)> =
            res.iter().flat_map(|s| s.pending.iter()).collect();
        pending.sort_unstable_by_key(|&(id, _)| id);
        let mut held_by_pending: FxHashMap<(u32, u64), u64> = FxHashMap::default();
        st.res_offsets.push(0);
        for (id, r) in pending {
            st.res_id.push(id);
            st.res_buyer.push(r.buyer);
            st.res_deadline_ms.push(r.deadline_ms);
            for line in &r.lines {
                st.line_sku.push(line.sku);
                st.line_warehouse.push(line.warehouse);
                st.line_quantity.push(line.quantity);
                let counted = line.counted != 0
                    && line.counted
                        == skus.guards[self.map.locate(line.sku).0].count_mark(line.sku);
                st.line_counted.push(u8::from(counted));
                if !counted {
                    continue;
                }
                *held_by_pending.entry((line.sku, r.buyer)).or_insert(0) +=
                    u64::from(line.quantity);
            }
            st.res_offsets.push(st.line_sku.len() as u64);
        }
        let mut limits: Vec<(u32, u64)> = Vec::new();
        let mut bought: Vec<(u32, u64, u64)> = Vec::new();
        for shard in &skus.guards {
            limits.extend(shard.limits.iter().map(|(&s, &l)| (s, l)));
            for (&(sku, buyer), &held) in &shard.bought {
                let confirmed =
                    held.saturating_sub(held_by_pending.get(&(sku, buyer)).copied().unwrap_or(0));
                if confirmed > 0 {
                    bought.push((sku, buyer, confirmed));
                }
            }
        }
        limits.sort_unstable();
        bought.sort_unstable();
        (st.limit_sku, st.limit_units) = limits.into_iter().unzip();
        for (sku, buyer, units) in bought {
            st.bought_sku.push(sku);
            st.bought_buyer.push(buyer);
            st.bought_units.push(units);
        }
        let mut regions: Vec<(&u32, &Vec<u32>)> = topology.regions.iter().collect();
        regions.sort_unstable();
        st.region_offsets.push(0);
        for (&region, list) in regions {
            st.region_id.push(region);
            st.region_warehouses.extend_from_slice(list);
            st.region_offsets.push(st.region_warehouses.len() as u64);
        }
        st
    }

    /// Rebuild an inventory from a snapshot; available and reserved are recomputed from the
    /// pending reservations. Inconsistent input is refused with `InvalidState`.
    pub fn from_state(st: &InventoryState, shards: usize) -> Result<Inventory> {
        let inv = Inventory::new(shards)?;
        st.check_shapes()?;
        let wc = u32::try_from(st.warehouse_count)
            .ok()
            .filter(|&w| w >= 1)
            .ok_or_else(|| InventoryError::state("warehouse_count must be at least 1"))?;
        let sku_count = u32::try_from(st.sku_count)
            .ok()
            .filter(|&s| s < u32::MAX)
            .ok_or_else(|| InventoryError::state("sku_count out of range"))?;
        let mut topology = Topology {
            warehouse_count: wc,
            regions: FxHashMap::default(),
        };
        for (i, &region) in st.region_id.iter().enumerate() {
            let list = &st.region_warehouses
                [st.region_offsets[i] as usize..st.region_offsets[i + 1] as usize];
            if list.iter().any(|&w| w >= wc) {
                return Err(InventoryError::state(format!(
                    "region {region} names an unknown warehouse"
                )));
            }
            if topology.regions.insert(region, list.to_vec()).is_some() {
                return Err(InventoryError::state(format!(
                    "region {region} appears twice"
                )));
            }
        }
        inv.topology.store(topology.into());
        // SKUs, empty, then their slots.
        inv.add_skus(&vec![0; sku_count as usize], 0)?;
        {
            let mut skus = inv.lock_all_skus();
            for sku in 0..sku_count {
                let (shard, local) = inv.map.locate(sku);
                skus.guards[shard].skus[local].slots.clear();
            }
            for i in 0..st.stock_sku.len() {
                let (sku, wh, on_hand, sold) = (
                    st.stock_sku[i],
                    st.stock_warehouse[i],
                    st.stock_on_hand[i],
                    st.stock_sold[i],
                );
                if sku >= sku_count || wh >= wc {
                    return Err(InventoryError::state(format!(
                        "stock row {i}: unknown SKU {sku} or warehouse {wh}"
                    )));
                }
                if sold < 0 || on_hand < sold {
                    return Err(InventoryError::state(format!(
                        "stock row {i}: SKU {sku} in warehouse {wh} has on_hand {on_hand} < sold {sold}"
                    )));
                }
                check_units(on_hand as u64).map_err(|e| InventoryError::state(e.to_string()))?;
                let (shard, local) = inv.map.locate(sku);
                let entry = &mut skus.guards[shard].skus[local];
                if entry.slot(wh).is_some() {
                    return Err(InventoryError::state(format!(
                        "SKU {sku} has two rows for warehouse {wh}"
                    )));
                }
                let slot = entry.slot_or_open(wh);
                slot.available = (on_hand - sold) as u64;
                slot.sold = sold as u64;
            }
            for (&sku, &limit) in st.limit_sku.iter().zip(&st.limit_units) {
                if sku >= sku_count || limit == 0 {
                    return Err(InventoryError::state(format!(
                        "limit row for SKU {sku}: unknown SKU or zero limit"
                    )));
                }
                skus.guards[inv.map.locate(sku).0].limits.insert(sku, limit);
            }
            for i in 0..st.bought_sku.len() {
                let (sku, buyer, units) =
                    (st.bought_sku[i], st.bought_buyer[i], st.bought_units[i]);
                if sku >= sku_count {
                    return Err(InventoryError::state(format!(
                        "bought row {i}: unknown SKU {sku}"
                    )));
                }
                skus.guards[inv.map.locate(sku).0].count_bought(sku, buyer, units);
            }
            // Pending reservations take their units back out of available.
            let mut seen = FxHashSet::default();
            for i in 0..st.res_id.len() {
                let id = st.res_id[i];
                if id == 0 || id >= st.next_reservation_id || !seen.insert(id) {
                    return Err(InventoryError::state(format!(
                        "reservation id {id} is zero, repeated, or not below next_reservation_id"
                    )));
                }
                let range = st.res_offsets[i] as usize..st.res_offsets[i + 1] as usize;
                if range.is_empty() {
                    return Err(InventoryError::state(format!(
                        "reservation {id} has no lines"
                    )));
                }
                let mut lines: SmallVec<[Line; 1]> = SmallVec::new();
                for j in range {
                    let mut line = Line {
                        sku: st.line_sku[j],
                        warehouse: st.line_warehouse[j],
                        quantity: st.line_quantity[j],
                        counted: 0,
                    };
                    if line.quantity == 0
                        || line.quantity > MAX_LINE_QUANTITY
                        || lines.iter().any(|l| l.sku == line.sku)
                    {
                        return Err(InventoryError::state(format!(
                            "reservation {id}: bad line for SKU {}",
                            line.sku
                        )));
                    }
                    let (shard, local) = inv.map.locate(line.sku);
                    let shard = &mut skus.guards[shard];
                    let slot = shard
                        .skus
                        .get_mut(local)
                        .filter(|_| line.sku < sku_count)
                        .and_then(|e| e.slot_mut(line.warehouse))
                        .ok_or_else(|| {
                            InventoryError::state(format!(
                                "reservation {id} holds SKU {} in warehouse {} which has no stock row",
                                line.sku, line.warehouse
                            ))
                        })?;
                    let q = u64::from(line.quantity);
                    if slot.available < q {
                        return Err(InventoryError::state(format!(
                            "SKU {} in warehouse {}: open reservations hold more than on_hand - sold",
                            line.sku, line.warehouse
                        )));
                    }
                    slot.available -= q;
                    slot.reserved += q;
                    if st.line_counted.get(j).is_none_or(|&c| c != 0) {
                        line.counted = shard.count_mark(line.sku);
                        shard.count_bought(line.sku, st.res_buyer[i], q);
                    }
                    lines.push(line);
                }
                let r = Reservation {
                    buyer: st.res_buyer[i],
                    deadline_ms: st.res_deadline_ms[i],
                    lines,
                };
                inv.res_shard(id).lock().insert(id, r);
            }
        }
        inv.next_reservation.store(
            st.next_reservation_id.max(1),
            std::sync::atomic::Ordering::Relaxed,
        );
        Ok(inv)
    }

    /// Check that every slot's reserved units equal the pending reservations' lines on it.
    pub fn check_invariants(&self) -> Result<()> {
        let res: Vec<_> = self.res_shards.iter().map(|m| m.lock()).collect();
        let skus = self.lock_all_skus();
        let mut held: FxHashMap<(u32, u32), u64> = FxHashMap::default();
        for shard in &res {
            for (_, r) in shard.pending.iter() {
                for line in &r.lines {
                    *held.entry((line.sku, line.warehouse)).or_insert(0) +=
                        u64::from(line.quantity);
                }
            }
        }
        for (shard_idx, shard) in skus.guards.iter().enumerate() {
            for (local, entry) in shard.skus.iter().enumerate() {
                let sku = ((local as u32) << self.map.shift) | shard_idx as u32;
                for slot in &entry.slots {
                    let expected = held.remove(&(sku, slot.warehouse)).unwrap_or(0);
                    if slot.reserved != expected {
                        return Err(InventoryError::state(format!(
                            "SKU {sku} in warehouse {}: reserved {} but pending reservations hold {expected}",
                            slot.warehouse, slot.reserved
                        )));
                    }
                }
            }
        }
        if let Some(((sku, wh), units)) = held.into_iter().next() {
            return Err(InventoryError::state(format!(
                "reservations hold {units} units of SKU {sku} in warehouse {wh} which has no slot"
            )));
        }
        Ok(())
    }
}

impl InventoryState {
    fn check_shapes(&self) -> Result<()> {
        let same = |name: &str, lens: &[usize]| -> Result<()> {
            if lens.windows(2).any(|w| w[0] != w[1]) {
                return Err(InventoryError::state(format!(
                    "{name} arrays differ in length: {lens:?}"
                )));
            }
            Ok(())
        };
        same(
            "stock_*",
            &[
                self.stock_sku.len(),
                self.stock_warehouse.len(),
                self.stock_on_hand.len(),
                self.stock_sold.len(),
            ],
        )?;
        same("limit_*", &[self.limit_sku.len(), self.limit_units.len()])?;
        same(
            "bought_*",
            &[
                self.bought_sku.len(),
                self.bought_buyer.len(),
                self.bought_units.len(),
            ],
        )?;
        same(
            "res_*",
            &[
                self.res_id.len(),
                self.res_buyer.len(),
                self.res_deadline_ms.len(),
                self.res_offsets.len().saturating_sub(1),
            ],
        )?;
        same(
            "line_*",
            &[
                self.line_sku.len(),
                self.line_warehouse.len(),
                self.line_quantity.len(),
            ],
        )?;
        if !self.line_counted.is_empty() && self.line_counted.len() != self.line_sku.len() {
            return Err(InventoryError::state(
                "line_counted must be empty or one per line",
            ));
        }
        same(
            "region_*",
            &[
                self.region_id.len(),
                self.region_offsets.len().saturating_sub(1),
            ],
        )?;
        check_offsets("res_offsets", &self.res_offsets, self.line_sku.len())?;
        check_offsets(
            "region_offsets",
            &self.region_offsets,
            self.region_warehouses.len(),
        )
    }
}

fn check_offsets(name: &str, offsets: &[u64], items: usize) -> Result<()> {
    let ok = !offsets.is_empty()
        && offsets[0] == 0
        && offsets[offsets.len() - 1] as usize == items
        && offsets.windows(2).all(|w| w[0] <= w[1]);
    if !ok {
        return Err(InventoryError::state(format!(
            "{name} must start at 0, not decrease, and end at {items}"
        )));
    }
    Ok(())
}
