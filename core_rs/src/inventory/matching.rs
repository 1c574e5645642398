//! Matching an order's lines to warehouses, and reserving them, on already-locked shards.

use super::error::InventoryError;
use super::stock::{SkuShard, SkuStock};

/// Largest quantity of one line; keeps every sum far from overflow.
pub const MAX_LINE_QUANTITY: u32 = 1_000_000_000;

/// Most lines in one order; bounds the per-order work (duplicate check is quadratic).
pub const MAX_ORDER_LINES: usize = 1000;

/// How lines are matched to warehouses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MatchPolicy {
    /// The whole order from the nearest warehouse that can serve all of it, else split.
    #[default]
    PreferOneParcel,
    /// The whole order from one warehouse, or refused.
    OneParcelOnly,
    /// Each line from the nearest warehouse that holds its quantity.
    NearestPerLine,
}

impl MatchPolicy {
    pub const NAMES: [&'static str; 3] =
        ["prefer_one_parcel", "one_parcel_only", "nearest_per_line"];

    pub fn parse(name: &str) -> Result<Self, InventoryError> {
        match name {
            "prefer_one_parcel" => Ok(Self::PreferOneParcel),
            "one_parcel_only" => Ok(Self::OneParcelOnly),
            "nearest_per_line" => Ok(Self::NearestPerLine),
            other => Err(InventoryError::argument(format!(
                "unknown matching policy {other:?}; expected one of {:?}",
                Self::NAMES
            ))),
        }
    }
}

/// Access to the SKU shards a caller has locked.
pub trait ShardAccess {
    /// The shard of `sku`; `None` only if the caller did not lock it (a bug) or it is out of range.
    fn shard(&mut self, shard: usize) -> &mut SkuShard;
}

/// Maps a SKU index to (shard, local index).
#[derive(Debug, Clone, Copy)]
pub struct ShardMap {
    pub shift: u32,
    pub mask: u32,
}

impl ShardMap {
    #[inline]
    pub fn locate(&self, sku: u32) -> (usize, usize) {
        ((sku & self.mask) as usize, (sku >> self.shift) as usize)
    }
}

/// One order to reserve: lines as parallel slices.
pub struct OrderRequest<'a> {
    pub skus: &'a [u32],
    pub quantities: &'a [u32],
    pub buyer: u64,
    /// Warehouses in order of preference, or `None` for "any, lowest index first".
    pub candidates: Option<&'a [u32]>,
    pub policy: MatchPolicy,
}

/// Why an order was refused, with the index of the line that refused it.
pub struct Refusal {
    pub error: InventoryError,
    pub line: usize,
}

fn stock<A: ShardAccess>(acc: &mut A, map: ShardMap, sku: u32) -> Option<&mut SkuStock> {
    let (shard, local) = map.locate(sku);
    acc.shard(shard).skus.get_mut(local)
}

/// Validate, check limits, match and reserve one order on locked shards. On success the serving
/// warehouse of each line is in `warehouses`; on refusal nothing changed.
pub fn reserve_locked<A: ShardAccess>(
    acc: &mut A,
    map: ShardMap,
    req: &OrderRequest<'_>,
    warehouses: &mut [u32],
) -> Result<(), Refusal> {
    let n = req.skus.len();
    if n == 1 {
        return reserve_one_line(acc, map, req, warehouses);
    }
    if n == 0 {
        return Err(Refusal {
            error: InventoryError::quantity("an order needs at least one line"),
            line: 0,
        });
    }
    if n > MAX_ORDER_LINES {
        return Err(Refusal {
            error: InventoryError::quantity(format!(
                "an order has at most {MAX_ORDER_LINES} lines, got {n}"
            )),
            line: 0,
        });
    }
    // 1. Shape of every line.
    for i in 0..n {
        let sku = req.skus[i];
        if stock(acc, map, sku).is_none() {
            return Err(Refusal {
                error: InventoryError::UnknownSku { sku },
                line: i,
            });
        }
        let q = req.quantities[i];
        if q == 0 || q > MAX_LINE_QUANTITY {
            return Err(Refusal {
                error: bad_quantity(sku),
                line: i,
            });
        }
        if req.skus[..i].contains(&sku) {
            return Err(Refusal {
                error: InventoryError::DuplicateSku { sku },
                line: i,
            });
        }
    }
    // 2. Purchase limits.
    for i in 0..n {
        let sku = req.skus[i];
        let (shard, _) = map.locate(sku);
        let shard = acc.shard(shard);
        if let Some(&limit) = shard.limits.get(&sku) {
            let held = shard.held_by(sku, req.buyer);
            let requested = u64::from(req.quantities[i]);
            if held + requested > limit {
                return Err(Refusal {
                    error: InventoryError::PurchaseLimit {
                        sku,
                        buyer: req.buyer,
                        limit,
                        held,
                        requested,
                    },
                    line: i,
                });
            }
        }
    }
    // 3. Matching.
    match_lines(acc, map, req, warehouses)?;
    // 4. Apply.
    for (i, &wh) in warehouses.iter().enumerate().take(n) {
        let (sku, q) = (req.skus[i], u64::from(req.quantities[i]));
        let (shard, local) = map.locate(sku);
        let shard = acc.shard(shard);
        let slot = shard.skus[local].slot_mut(wh).expect("matched slot exists");
        slot.available -= q;
        slot.reserved += q;
        shard.count_bought(sku, req.buyer, q);
    }
    Ok(())
}

/// `reserve_locked` for the common one-line order: the same checks in the same order, with
/// one lookup of the SKU instead of one per phase.
#[inline]
fn reserve_one_line<A: ShardAccess>(
    acc: &mut A,
    map: ShardMap,
    req: &OrderRequest<'_>,
    warehouses: &mut [u32],
) -> Result<(), Refusal> {
    let (sku, q) = (req.skus[0], req.quantities[0]);
    let refuse = |error| Err(Refusal { error, line: 0 });
    let (shard, local) = map.locate(sku);
    let SkuShard {
        skus,
        limits,
        bought,
        ..
    } = acc.shard(shard);
    let Some(entry) = skus.get_mut(local) else {
        return refuse(InventoryError::UnknownSku { sku });
    };
    if q == 0 || q > MAX_LINE_QUANTITY {
        return refuse(bad_quantity(sku));
    }
    let q64 = u64::from(q);
    let limited = !limits.is_empty() && limits.contains_key(&sku);
    if limited {
        let limit = limits[&sku];
        let held = bought.get(&(sku, req.buyer)).copied().unwrap_or(0);
        if held + q64 > limit {
            return refuse(InventoryError::PurchaseLimit {
                sku,
                buyer: req.buyer,
                limit,
                held,
                requested: q64,
            });
        }
    }
    let slot = match req.candidates {
        None => entry.slots.iter_mut().find(|s| s.available >= q64),
        Some(list) => match list.iter().find(|&&wh| entry.available_in(wh) >= q64) {
            Some(&wh) => entry.slot_mut(wh),
            None => None,
        },
    };
    let Some(slot) = slot else {
        return refuse(InventoryError::OutOfStock { sku });
    };
    slot.available -= q64;
    slot.reserved += q64;
    warehouses[0] = slot.warehouse;
    if limited {
        *bought.entry((sku, req.buyer)).or_insert(0) += q64;
    }
    Ok(())
}

fn bad_quantity(sku: u32) -> InventoryError {
    InventoryError::quantity(format!(
        "quantity of SKU {sku} must be between 1 and {MAX_LINE_QUANTITY}"
    ))
}

fn can_serve<A: ShardAccess>(
    acc: &mut A,
    map: ShardMap,
    req: &OrderRequest<'_>,
    line: usize,
    wh: u32,
) -> bool {
    let q = u64::from(req.quantities[line]);
    stock(acc, map, req.skus[line]).is_some_and(|s| s.available_in(wh) >= q)
}

/// The nearest candidate warehouse holding the full quantity of one line.
fn nearest_for_line<A: ShardAccess>(
    acc: &mut A,
    map: ShardMap,
    req: &OrderRequest<'_>,
    line: usize,
) -> Option<u32> {
    let q = u64::from(req.quantities[line]);
    let s = stock(acc, map, req.skus[line])?;
    match req.candidates {
        // Slots are sorted by warehouse index: "lowest index first".
        None => s
            .slots
            .iter()
            .find(|slot| slot.available >= q)
            .map(|slot| slot.warehouse),
        Some(list) => list.iter().copied().find(|&wh| s.available_in(wh) >= q),
    }
}

/// The nearest candidate warehouse that can serve every line.
fn one_parcel<A: ShardAccess>(acc: &mut A, map: ShardMap, req: &OrderRequest<'_>) -> Option<u32> {
    let n = req.skus.len();
    match req.candidates {
        None => {
            // A warehouse serving everything must hold line 0; try those in index order.
            let first: smallvec::SmallVec<[u32; 4]> = stock(acc, map, req.skus[0])?
                .slots
                .iter()
                .filter(|slot| slot.available >= u64::from(req.quantities[0]))
                .map(|slot| slot.warehouse)
                .collect();
            first
                .into_iter()
                .find(|&wh| (1..n).all(|i| can_serve(acc, map, req, i, wh)))
        }
        Some(list) => list
            .iter()
            .copied()
            .find(|&wh| (0..n).all(|i| can_serve(acc, map, req, i, wh))),
    }
}

fn match_lines<A: ShardAccess>(
    acc: &mut A,
    map: ShardMap,
    req: &OrderRequest<'_>,
    warehouses: &mut [u32],
) -> Result<(), Refusal> {
    let n = req.skus.len();
    if n == 1 {
        // One line: every policy means "nearest warehouse holding it".
        return match nearest_for_line(acc, map, req, 0) {
            Some(wh) => {
                warehouses[0] = wh;
                Ok(())
            }
            None => Err(Refusal {
                error: InventoryError::OutOfStock { sku: req.skus[0] },
                line: 0,
            }),
        };
    }
    if req.policy != MatchPolicy::NearestPerLine {
        if let Some(wh) = one_parcel(acc, map, req) {
            warehouses[..n].fill(wh);
            return Ok(());
        }
    }
    for (i, out) in warehouses.iter_mut().enumerate().take(n) {
        match nearest_for_line(acc, map, req, i) {
            Some(wh) => *out = wh,
            None => {
                return Err(Refusal {
                    error: InventoryError::OutOfStock { sku: req.skus[i] },
                    line: i,
                })
            }
        }
    }
    if req.policy == MatchPolicy::OneParcelOnly {
        // Every line could be served somewhere, but no single warehouse serves them all:
        // blame the first line the nearest candidate cannot serve.
        let nearest = req.candidates.map_or(Some(0), |list| list.first().copied());
        let line = match nearest {
            Some(wh) => (0..n)
                .find(|&i| !can_serve(acc, map, req, i, wh))
                .unwrap_or(0),
            None => 0,
        };
        return Err(Refusal {
            error: InventoryError::OutOfStock {
                sku: req.skus[line],
            },
            line,
        });
    }
    Ok(())
}
