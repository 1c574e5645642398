//! Taking units into reservations: one order, or a batch of orders under one set of locks.

use smallvec::SmallVec;

use super::matching::{reserve_locked, MatchPolicy, OrderRequest, ShardAccess, ShardMap};
use super::reservation::{Line, Reservation};
use super::{status, Inventory, InventoryError, Result, MAX_TIMEOUT_MS};

/// Orders of a batch as parallel arrays (items in CSR form).
pub struct BatchOrders<'a> {
    pub skus: &'a [u32],
    pub quantities: &'a [u32],
    /// `orders + 1` boundaries into the items, starting at 0; `None`: one item per order.
    pub offsets: Option<&'a [u32]>,
    pub buyers: Option<&'a [u64]>,
    pub regions: Option<&'a [u32]>,
}

/// Outcome of a batch: per order a status and reservation id (0 if refused) and the refusing
/// item (-1 if none); per item the serving warehouse (`u32::MAX` if its order was refused).
#[derive(Debug, Default)]
pub struct BatchOutcome {
    pub status: Vec<u8>,
    pub reservation: Vec<u64>,
    pub warehouse: Vec<u32>,
    pub failed_item: Vec<i64>,
}

pub(super) fn check_timeout(timeout_ms: u64) -> Result<()> {
    if timeout_ms == 0 || timeout_ms > MAX_TIMEOUT_MS {
        return Err(InventoryError::argument(format!(
            "timeout_ms must be between 1 and {MAX_TIMEOUT_MS}, got {timeout_ms}"
        )));
    }
    Ok(())
}

impl<'a> BatchOrders<'a> {
    fn order_count(&self) -> usize {
        self.offsets
            .map_or(self.skus.len(), |o| o.len().saturating_sub(1))
    }

    fn items(&self, order: usize) -> std::ops::Range<usize> {
        match self.offsets {
            None => order..order + 1,
            Some(o) => o[order] as usize..o[order + 1] as usize,
        }
    }

    fn validate(&self) -> Result<()> {
        if self.skus.len() != self.quantities.len() {
            return Err(InventoryError::argument(format!(
                "skus and quantities differ in length: {} vs {}",
                self.skus.len(),
                self.quantities.len()
            )));
        }
        if let Some(o) = self.offsets {
            if o.is_empty() || o[0] != 0 || o[o.len() - 1] as usize != self.skus.len() {
                return Err(InventoryError::argument(
                    "order_offsets must start at 0 and end at the number of items",
                ));
            }
            if o.windows(2).any(|w| w[0] > w[1]) {
                return Err(InventoryError::argument("order_offsets must not decrease"));
            }
        }
        let orders = self.order_count();
        for (name, len) in [
            ("buyers", self.buyers.map(<[u64]>::len)),
            ("regions", self.regions.map(<[u32]>::len)),
        ] {
            if let Some(len) = len {
                if len != orders {
                    return Err(InventoryError::argument(format!(
                        "{name} must have one entry per order ({orders}), got {len}"
                    )));
                }
            }
        }
        Ok(())
    }
}

impl Inventory {
    /// Reserve every `(skus[i], quantities[i])` line of one order, all or none.
    /// Returns the reservation id and the serving warehouse of each line.
    #[allow(clippy::too_many_arguments)]
    pub fn reserve(
        &self,
        skus: &[u32],
        quantities: &[u32],
        buyer: u64,
        region: Option<u32>,
        policy: MatchPolicy,
        timeout_ms: u64,
        now_ms: u64,
    ) -> Result<(u64, SmallVec<[u32; 1]>)> {
        check_timeout(timeout_ms)?;
        if skus.len() != quantities.len() {
            return Err(InventoryError::argument(
                "skus and quantities differ in length",
            ));
        }
        let topology = self.topology.load();
        let candidates = match region {
            None => None,
            Some(r) => Some(
                topology
                    .regions
                    .get(&r)
                    .ok_or(InventoryError::UnknownRegion { region: r })?
                    .as_slice(),
            ),
        };
        let req = OrderRequest {
            skus,
            quantities,
            buyer,
            candidates,
            policy,
        };
        let mut warehouses: SmallVec<[u32; 1]> = SmallVec::from_elem(u32::MAX, skus.len());
        let id = self
            .next_reservation
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut res = self.res_shard(id).lock();
        let mut locked = self.lock_skus(skus.iter().copied());
        reserve_locked(&mut locked, self.map, &req, &mut warehouses).map_err(|r| r.error)?;
        let lines = lines(&mut locked, self.map, &req, &warehouses);
        drop(locked);
        res.insert(
            id,
            Reservation {
                buyer,
                deadline_ms: now_ms.saturating_add(timeout_ms),
                lines,
            },
        );
        Ok((id, warehouses))
    }

    /// Reserve a batch of orders; the outcome equals reserving them one after another.
    pub fn reserve_batch(
        &self,
        orders: &BatchOrders<'_>,
        policy: MatchPolicy,
        timeout_ms: u64,
        now_ms: u64,
    ) -> Result<BatchOutcome> {
        check_timeout(timeout_ms)?;
        orders.validate()?;
        let n = orders.order_count();
        let mut out = BatchOutcome {
            status: vec![status::OK; n],
            reservation: vec![0; n],
            warehouse: vec![u32::MAX; orders.skus.len()],
            failed_item: vec![-1; n],
        };
        if n == 0 {
            return Ok(out);
        }
        let topology = self.topology.load();
        let deadline = now_ms.saturating_add(timeout_ms);
        let first_id = self
            .next_reservation
            .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
        let mut res: Vec<_> = self.res_shards.iter().map(|m| m.lock()).collect();
        for shard in res.iter_mut() {
            shard.reserve_capacity(n / self.res_shards.len() + 1);
        }
        let mut locked = self.lock_all_skus();
        for order in 0..n {
            let items = orders.items(order);
            let region = orders.regions.map(|r| r[order]);
            let candidates = match region {
                None => None,
                Some(r) => match topology.regions.get(&r) {
                    Some(list) => Some(list.as_slice()),
                    None => {
                        out.status[order] = status::UNKNOWN_REGION;
                        out.failed_item[order] = items.start as i64;
                        continue;
                    }
                },
            };
            let req = OrderRequest {
                skus: &orders.skus[items.clone()],
                quantities: &orders.quantities[items.clone()],
                buyer: orders.buyers.map_or(0, |b| b[order]),
                candidates,
                policy,
            };
            match reserve_locked(
                &mut locked,
                self.map,
                &req,
                &mut out.warehouse[items.clone()],
            ) {
                Ok(()) => {
                    let id = first_id + order as u64;
                    let lines = lines(&mut locked, self.map, &req, &out.warehouse[items]);
                    res[self.res_index(id)].insert(
                        id,
                        Reservation {
                            buyer: req.buyer,
                            deadline_ms: deadline,
                            lines,
                        },
                    );
                    out.reservation[order] = id;
                }
                Err(refusal) => {
                    out.status[order] = refusal.error.status();
                    out.failed_item[order] = (items.start + refusal.line) as i64;
                    out.warehouse[items].fill(u32::MAX);
                }
            }
        }
        Ok(out)
    }
}

/// The lines of a reserved order, with their purchase-limit count marks (shards still locked).
fn lines<A: ShardAccess>(
    acc: &mut A,
    map: ShardMap,
    req: &OrderRequest<'_>,
    warehouses: &[u32],
) -> SmallVec<[Line; 1]> {
    (0..req.skus.len())
        .map(|i| {
            let sku = req.skus[i];
            Line {
                sku,
                warehouse: warehouses[i],
                quantity: req.quantities[i],
                counted: acc.shard(map.locate(sku).0).count_mark(sku),
            }
        })
        .collect()
}
