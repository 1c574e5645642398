//! Resolving reservations exactly once: confirm (sell), release, expire.

use super::reservation::{Reservation, ReservationShard, ReservationState};
use super::{status, Inventory, InventoryError, Result};

#[derive(Clone, Copy)]
enum Action<'q> {
    /// Sell; `Some(q)` sells `q[i]` units of line `i`, returning the rest.
    Confirm(Option<&'q [u32]>),
    Release,
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
        ids.iter().map(|&id| code(self.resolve(id, Action::Confirm(None), now_ms))).collect()
    }

    /// Release many reservations; one status code each.
    pub fn release_batch(&self, ids: &[u64], now_ms: u64) -> Vec<u8> {
        ids.iter().map(|&id| code(self.resolve(id, Action::Release, now_ms))).collect()
    }

    /// A pending reservation in full.
    pub fn reservation(&self, id: u64) -> Result<Reservation> {
        let shard = self.res_shard(id).lock();
        match shard.pending.get(&id) {
            Some(r) => Ok(r.clone()),
            None => Err(not_pending(&shard, id)),
        }
    }

    pub fn reservation_state(&self, id: u64) -> Result<ReservationState> {
        self.res_shard(id).lock().state_of(id).ok_or(InventoryError::UnknownReservation { reservation: id })
    }

    /// Expire up to `limit` pending reservations with `deadline <= now_ms`, earliest first.
    pub fn expire_due(&self, now_ms: u64, limit: usize) -> Vec<u64> {
        let mut shards: Vec<_> = self.res_shards.iter().map(|m| m.lock()).collect();
        let mut expired = Vec::new();
        while expired.len() < limit {
            // The shard holding the globally earliest due reservation.
            let next = shards
                .iter_mut()
                .enumerate()
                .filter_map(|(i, s)| s.peek_due().map(|due| (due, i)))
                .min();
            let Some(((deadline, id), i)) = next else { break };
            if deadline > now_ms {
                break;
            }
            let reservation = shards[i].resolve(id, ReservationState::Expired).expect("peeked pending");
            self.settle(&reservation, ReservationState::Expired, None);
            expired.push(id);
        }
        for shard in &mut shards {
            shard.trim_resolved(self.resolved_per_shard);
        }
        expired
    }

    /// Earliest deadline of a pending reservation.
    pub fn next_deadline_ms(&self) -> Option<u64> {
        self.res_shards.iter().filter_map(|m| m.lock().peek_due().map(|(d, _)| d)).min()
    }

    /// Forget the final state of resolved reservations with id <= `up_to`; returns how many.
    pub fn prune_resolved(&self, up_to: u64) -> usize {
        self.res_shards.iter().map(|m| m.lock().forget_resolved(up_to)).sum()
    }

    fn resolve(&self, id: u64, action: Action<'_>, now_ms: u64) -> Result<()> {
        let mut shard = self.res_shard(id).lock();
        let Some(reservation) = shard.pending.get(&id) else {
            return Err(not_pending(&shard, id));
        };
        let expired = now_ms >= reservation.deadline_ms;
        let (state, quantities) = match action {
            _ if expired => (ReservationState::Expired, None),
            Action::Confirm(q) => {
                if let Some(q) = q {
                    check_partial(id, reservation, q)?;
                }
                (ReservationState::Confirmed, q)
            }
            Action::Release => (ReservationState::Released, None),
        };
        let reservation = shard.resolve(id, state).expect("pending above");
        self.settle(&reservation, state, quantities);
        shard.trim_resolved(self.resolved_per_shard);
        if expired {
            return Err(InventoryError::AlreadyResolved { reservation: id, state });
        }
        Ok(())
    }

    /// Move a resolved reservation's units: reserved → sold (confirmed part) or → available.
    fn settle(&self, r: &Reservation, state: ReservationState, quantities: Option<&[u32]>) {
        let mut locked = self.lock_skus(r.lines.iter().map(|l| l.sku));
        for (i, line) in r.lines.iter().enumerate() {
            let reserved = u64::from(line.quantity);
            let sold = match state {
                ReservationState::Confirmed => quantities.map_or(reserved, |q| u64::from(q[i])),
                _ => 0,
            };
            let (shard_idx, local) = self.map.locate(line.sku);
            let shard = super::matching::ShardAccess::shard(&mut locked, shard_idx);
            let slot = shard.skus[local].slot_mut(line.warehouse).expect("reserved slot exists");
            slot.reserved -= reserved;
            slot.sold += sold;
            slot.available += reserved - sold;
            shard.uncount_bought(line.sku, r.buyer, reserved - sold);
        }
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
        Some(state) => InventoryError::AlreadyResolved { reservation: id, state },
        None => InventoryError::UnknownReservation { reservation: id },
    }
}

fn code(result: Result<()>) -> u8 {
    match result {
        Ok(()) => status::OK,
        Err(e) => e.status(),
    }
}
