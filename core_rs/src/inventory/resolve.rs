//! Resolving reservations exactly once: confirm (sell), release, expire.

use super::matching::{ShardAccess, ShardMap};
use super::reservation::{Reservation, ReservationShard, ReservationState};
use super::{status, Inventory, InventoryError, Result};

#[derive(Clone, Copy)]
enum Action<'q> {
    /// Sell; `Some(q)` sells `q[i]` units of line `i`, returning the rest.
    Confirm(Option<&'q [u32]>),
    Release,
}

/// A reservation taken out of its shard, with how it resolves.
struct Taken<'q> {
    reservation: Reservation,
    state: ReservationState,
    quantities: Option<&'q [u32]>,
}

impl Inventory {
    /// Sell a pending reservation (optionally fewer units per line).
    pub fn confirm(&self, id: u64, quantities: Option<&[u32]>, now_ms: u64) -> Result<()> {
        self.resolve(id, Action::Confirm(quantities), now_ms)
    }

    /// Return a pending reservation's units to stock.
    pub fn release(&self, id: u64, now_ms: u64) -> Result<()> {
        self.resolve(id, Action::Release, now_ms)
    }

    /// Confirm many reservations in full; one status code each.
    pub fn confirm_batch(&self, ids: &[u64], now_ms: u64) -> Vec<u8> {
        self.resolve_batch(ids, Action::Confirm(None), now_ms)
    }

    /// Release many reservations; one status code each.
    pub fn release_batch(&self, ids: &[u64], now_ms: u64) -> Vec<u8> {
        self.resolve_batch(ids, Action::Release, now_ms)
    }

    /// A pending reservation in full.
    pub fn reservation(&self, id: u64) -> Result<Reservation> {
        let shard = self.res_shard(id).lock();
        match shard.pending.get(id) {
            Some(r) => Ok(r.clone()),
            None => Err(not_pending(&shard, id)),
        }
    }

    /// Move a pending reservation's deadline (an order approved after review gets its payment
    /// deadline from then).
    pub fn set_deadline(&self, id: u64, deadline_ms: u64) -> Result<()> {
        let mut shard = self.res_shard(id).lock();
        if shard.move_deadline(id, deadline_ms) {
            Ok(())
        } else {
            Err(not_pending(&shard, id))
        }
    }

    pub fn reservation_state(&self, id: u64) -> Result<ReservationState> {
        self.res_shard(id)
            .lock()
            .state_of(id)
            .ok_or(InventoryError::UnknownReservation { reservation: id })
    }

    /// Expire up to `limit` pending reservations with `deadline <= now_ms`, earliest first.
    pub fn expire_due(&self, now_ms: u64, limit: usize) -> Vec<u64> {
        let mut expired = Vec::new();
        self.expire_due_with(now_ms, limit, |id, _| expired.push(id));
        expired
    }

    /// As `expire_due`, handing each expired reservation to `f` (under the reservation locks:
    /// `f` must not call back into the inventory). Returns how many expired.
    pub fn expire_due_with(
        &self,
        now_ms: u64,
        limit: usize,
        mut f: impl FnMut(u64, Reservation),
    ) -> usize {
        let mut shards: Vec<_> = self.res_shards.iter().map(|m| m.lock()).collect();
        let mut expired = 0;
        while expired < limit {
            // The shard holding the globally earliest due reservation.
            let next = shards
                .iter_mut()
                .enumerate()
                .filter_map(|(i, s)| s.peek_due().map(|due| (due, i)))
                .min();
            let Some(((deadline, id), i)) = next else {
                break;
            };
            if deadline > now_ms {
                break;
            }
            let reservation = shards[i]
                .resolve(id, ReservationState::Expired)
                .expect("peeked pending");
            let mut locked = self.lock_skus(reservation.lines.iter().map(|l| l.sku));
            settle(
                &mut locked,
                self.map,
                &reservation,
                ReservationState::Expired,
                None,
            );
            drop(locked);
            f(id, reservation);
            expired += 1;
        }
        for shard in &mut shards {
            shard.trim_resolved(self.resolved_per_shard);
        }
        expired
    }

    /// Earliest deadline of a pending reservation.
    pub fn next_deadline_ms(&self) -> Option<u64> {
        self.res_shards
            .iter()
            .filter_map(|m| m.lock().peek_due().map(|(d, _)| d))
            .min()
    }

    /// Forget the final state of resolved reservations with id <= `up_to`; returns how many.
    pub fn prune_resolved(&self, up_to: u64) -> usize {
        self.res_shards
            .iter()
            .map(|m| m.lock().forget_resolved(up_to))
            .sum()
    }

    fn resolve(&self, id: u64, action: Action<'_>, now_ms: u64) -> Result<()> {
        let mut shard = self.res_shard(id).lock();
        let taken = take(&mut shard, id, action, now_ms)?;
        let mut locked = self.lock_skus(taken.reservation.lines.iter().map(|l| l.sku));
        settle(
            &mut locked,
            self.map,
            &taken.reservation,
            taken.state,
            taken.quantities,
        );
        drop(locked);
        shard.trim_resolved(self.resolved_per_shard);
        outcome(id, taken.state, action)
    }

    /// Resolve many under one set of locks; the outcome equals resolving them in sequence.
    fn resolve_batch(&self, ids: &[u64], action: Action<'_>, now_ms: u64) -> Vec<u8> {
        let mut shards: Vec<_> = self.res_shards.iter().map(|m| m.lock()).collect();
        let mut locked = self.lock_all_skus();
        let codes = ids
            .iter()
            .map(|&id| {
                let shard = &mut shards[self.res_index(id)];
                let result = take(shard, id, action, now_ms).and_then(|taken| {
                    settle(
                        &mut locked,
                        self.map,
                        &taken.reservation,
                        taken.state,
                        taken.quantities,
                    );
                    outcome(id, taken.state, action)
                });
                match result {
                    Ok(()) => status::OK,
                    Err(e) => e.status(),
                }
            })
            .collect();
        for shard in &mut shards {
            shard.trim_resolved(self.resolved_per_shard);
        }
        codes
    }
}

/// Take a pending reservation out of its shard and record how it resolves. A reservation past
/// its deadline resolves as expired whatever was asked. Nothing changes on error.
fn take<'q>(
    shard: &mut ReservationShard,
    id: u64,
    action: Action<'q>,
    now_ms: u64,
) -> Result<Taken<'q>> {
    let Some(reservation) = shard.take(id) else {
        return Err(not_pending(shard, id));
    };
    let (state, quantities) = match action {
        _ if now_ms >= reservation.deadline_ms => (ReservationState::Expired, None),
        Action::Confirm(Some(q)) => {
            if let Err(e) = check_partial(id, &reservation, q) {
                shard.put_back(id, reservation);
                return Err(e);
            }
            (ReservationState::Confirmed, Some(q))
        }
        Action::Confirm(None) => (ReservationState::Confirmed, None),
        Action::Release => (ReservationState::Released, None),
    };
    shard.record(id, state);
    Ok(Taken {
        reservation,
        state,
        quantities,
    })
}

/// What the caller hears: a confirm or release that found the deadline passed is refused
/// (the reservation expired on the spot).
fn outcome(id: u64, state: ReservationState, action: Action<'_>) -> Result<()> {
    let asked = match action {
        Action::Confirm(_) => ReservationState::Confirmed,
        Action::Release => ReservationState::Released,
    };
    if state != asked {
        return Err(InventoryError::AlreadyResolved {
            reservation: id,
            state,
        });
    }
    Ok(())
}

/// Move a resolved reservation's units: reserved → sold (confirmed part) or → available.
fn settle<A: ShardAccess>(
    acc: &mut A,
    map: ShardMap,
    r: &Reservation,
    state: ReservationState,
    quantities: Option<&[u32]>,
) {
    for (i, line) in r.lines.iter().enumerate() {
        let reserved = u64::from(line.quantity);
        let sold = match state {
            ReservationState::Confirmed => quantities.map_or(reserved, |q| u64::from(q[i])),
            _ => 0,
        };
        let (shard_idx, local) = map.locate(line.sku);
        let shard = acc.shard(shard_idx);
        let slot = shard.skus[local]
            .slot_mut(line.warehouse)
            .expect("reserved slot exists");
        slot.reserved -= reserved;
        slot.sold += sold;
        slot.available += reserved - sold;
        shard.uncount_bought(line.sku, r.buyer, reserved - sold, line.counted);
    }
}

fn check_partial(id: u64, r: &Reservation, q: &[u32]) -> Result<()> {
    if q.len() != r.lines.len() {
        return Err(InventoryError::quantity(format!(
            "reservation {id} has {} lines, got {} quantities",
            r.lines.len(),
            q.len()
        )));
    }
    for (line, &q) in r.lines.iter().zip(q) {
        if q > line.quantity {
            return Err(InventoryError::quantity(format!(
                "cannot confirm {q} units of SKU {}: only {} reserved",
                line.sku, line.quantity
            )));
        }
    }
    Ok(())
}

fn not_pending(shard: &ReservationShard, id: u64) -> InventoryError {
    match shard.state_of(id) {
        Some(state) => InventoryError::AlreadyResolved {
            reservation: id,
            state,
        },
        None => InventoryError::UnknownReservation { reservation: id },
    }
}
