//! The orders awaiting payment, as the order book keeps them: 32 bytes each.
//!
//! Only what paying and expiring need that the inventory's reservation does not already hold:
//! the order id, its reservation, its total and currency. The buyer number, the deadline and
//! the lines are the reservation's; the address, titles, merchants and unit prices stay in the
//! store (and in the staged rows until they commit).
//!
//! Orders are placed with increasing ids and increasing reservation ids (one book, one
//! generator, both under the book's lock), so the records are appended to a log of fixed-size
//! chunks that stays sorted by both keys: a lookup by either is a binary search, there is no
//! hash-table slack and no table to move when it grows. A record that is taken out leaves a
//! tombstone; a chunk is compacted when three quarters of it are tombstones and dropped when
//! empty, so the log holds at most about four times its live records, and in a flash sale
//! (most orders still pending) barely more than them. The rare record that does not sort after
//! the last one (a rebuild out of order, a caller adding by hand) goes to a small side map.

use std::collections::VecDeque;

use rustc_hash::FxHashMap;

/// One order awaiting payment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PendingOrder {
    pub id: i64,
    /// The inventory reservation holding its units (ids start at 1). In the log, a record
    /// taken out keeps it negated (a tombstone that still sorts by it).
    pub reservation: i64,
    /// Sum of the lines, minor units of `currency`.
    pub total: i64,
    /// ISO 4217 code, three ASCII capitals.
    pub currency: [u8; 3],
    /// Held for review by risk control (status `in_review`), not yet awaiting payment.
    pub in_review: bool,
}

impl PendingOrder {
    pub fn currency_str(&self) -> &str {
        // Built only from validated ASCII codes.
        std::str::from_utf8(&self.currency).unwrap_or("XXX")
    }

    fn is_live(&self) -> bool {
        self.reservation > 0
    }
}

/// Records per chunk: 128 KiB of records, allocated once at full size.
const CHUNK: usize = 4096;

#[derive(Debug)]
struct Chunk {
    records: Vec<PendingOrder>,
    live: usize,
}

impl Chunk {
    fn new() -> Self {
        Self {
            records: Vec::with_capacity(CHUNK),
            live: 0,
        }
    }

    fn find_id(&self, id: i64) -> Option<usize> {
        self.records
            .binary_search_by_key(&id, |r| r.id)
            .ok()
            .filter(|&i| self.records[i].is_live())
    }

    fn find_reservation(&self, reservation: i64) -> Option<usize> {
        self.records
            .binary_search_by_key(&reservation, |r| r.reservation.abs())
            .ok()
            .filter(|&i| self.records[i].is_live())
    }
}

/// The pending orders of a book, by id and by reservation.
#[derive(Debug, Default)]
pub struct PendingOrders {
    chunks: VecDeque<Chunk>,
    /// Records that do not sort after the log's last: order id -> record.
    others: FxHashMap<i64, PendingOrder>,
    /// Reservation -> order id, for `others`.
    others_by_reservation: FxHashMap<i64, i64>,
    live: usize,
}

impl PendingOrders {
    pub fn len(&self) -> usize {
        self.live
    }

    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// Hold `order`, in place of any order held with its id.
    pub fn insert(&mut self, order: PendingOrder) {
        self.remove(order.id);
        let last = self.chunks.back().and_then(|c| c.records.last());
        let in_order = order.is_live()
            && last.is_none_or(|l| order.id > l.id && order.reservation > l.reservation.abs());
        if !in_order {
            self.others_by_reservation
                .insert(order.reservation, order.id);
            self.others.insert(order.id, order);
        } else {
            if self.chunks.back().is_none_or(|c| c.records.len() == CHUNK) {
                self.chunks.push_back(Chunk::new());
            }
            let chunk = self.chunks.back_mut().unwrap_or_else(|| unreachable!());
            chunk.records.push(order);
            chunk.live += 1;
        }
        self.live += 1;
    }

    pub fn get(&self, id: i64) -> Option<&PendingOrder> {
        if let Some((c, i)) = self.locate_id(id) {
            return Some(&self.chunks[c].records[i]);
        }
        self.others.get(&id)
    }

    /// Mark a held order as awaiting payment after its review; false if it is not held in
    /// review.
    pub fn approve(&mut self, id: i64) -> bool {
        let record = match self.locate_id(id) {
            Some((c, i)) => &mut self.chunks[c].records[i],
            None => match self.others.get_mut(&id) {
                Some(r) => r,
                None => return false,
            },
        };
        std::mem::replace(&mut record.in_review, false)
    }

    /// The order holding `reservation`.
    pub fn order_of_reservation(&self, reservation: i64) -> Option<i64> {
        if reservation <= 0 {
            return None;
        }
        if let Some((c, i)) = self.locate_reservation(reservation) {
            return Some(self.chunks[c].records[i].id);
        }
        self.others_by_reservation.get(&reservation).copied()
    }

    /// Stop holding an order; returns it.
    pub fn remove(&mut self, id: i64) -> Option<PendingOrder> {
        let Some((c, i)) = self.locate_id(id) else {
            let order = self.others.remove(&id)?;
            self.others_by_reservation.remove(&order.reservation);
            self.live -= 1;
            return Some(order);
        };
        let last = c + 1 == self.chunks.len();
        let chunk = &mut self.chunks[c];
        let order = chunk.records[i];
        chunk.records[i].reservation = -order.reservation;
        chunk.live -= 1;
        self.live -= 1;
        if chunk.live == 0 && !(last && chunk.records.len() < CHUNK) {
            self.chunks.remove(c);
        } else if chunk.live * 4 < chunk.records.len() && chunk.records.len() >= 64 && !last {
            chunk.records.retain(PendingOrder::is_live);
            chunk.records.shrink_to_fit();
        }
        Some(order)
    }

    /// Bytes held by the records (not counting the allocator's own overhead).
    pub fn heap_bytes(&self) -> usize {
        let records: usize = self
            .chunks
            .iter()
            .map(|c| c.records.capacity() * std::mem::size_of::<PendingOrder>())
            .sum();
        records
            + self.chunks.capacity() * std::mem::size_of::<Chunk>()
            + self.others.capacity() * (8 + std::mem::size_of::<PendingOrder>() + 1)
            + self.others_by_reservation.capacity() * 17
    }

    /// (chunk, index) of the live record with order id `id` in the log.
    fn locate_id(&self, id: i64) -> Option<(usize, usize)> {
        // The last chunk whose first id is <= id.
        let c = self
            .chunks
            .partition_point(|ch| ch.records.first().is_some_and(|r| r.id <= id));
        let c = c.checked_sub(1)?;
        self.chunks[c].find_id(id).map(|i| (c, i))
    }

    /// (chunk, index) of the live record holding `reservation` in the log.
    fn locate_reservation(&self, reservation: i64) -> Option<(usize, usize)> {
        // Ids and reservations sort together, tombstones included (by |reservation|).
        let c = self.chunks.partition_point(|ch| {
            ch.records
                .first()
                .is_some_and(|r| r.reservation.abs() <= reservation)
        });
        let c = c.checked_sub(1)?;
        self.chunks[c].find_reservation(reservation).map(|i| (c, i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(id: i64, reservation: i64) -> PendingOrder {
        PendingOrder {
            in_review: false,
            id,
            reservation,
            total: id * 10,
            currency: *b"CNY",
        }
    }

    #[test]
    fn finds_by_id_and_reservation_across_chunks_and_tombstones() {
        let mut log = PendingOrders::default();
        let n = 3 * CHUNK as i64 + 17;
        for k in 1..=n {
            log.insert(order(1000 + 3 * k, 2 * k));
        }
        assert_eq!(log.len(), n as usize);
        for k in (1..=n).step_by(2) {
            assert_eq!(log.remove(1000 + 3 * k), Some(order(1000 + 3 * k, 2 * k)));
        }
        for k in 1..=n {
            let held = k % 2 == 0;
            assert_eq!(log.get(1000 + 3 * k).is_some(), held, "{k}");
            assert_eq!(log.order_of_reservation(2 * k).is_some(), held, "{k}");
            assert_eq!(log.get(1000 + 3 * k + 1), None);
            assert_eq!(log.order_of_reservation(2 * k + 1), None);
        }
        assert_eq!(log.remove(1000 + 3), None, "taken once");
        assert_eq!(log.order_of_reservation(4), Some(1006));
    }

    #[test]
    fn compacts_and_drops_chunks_as_orders_leave() {
        let mut log = PendingOrders::default();
        let n = 4 * CHUNK as i64;
        for k in 1..=n {
            log.insert(order(k, k));
        }
        let full = log.heap_bytes();
        // Pay all but one in eight, in no particular chunk order.
        for k in (1..=n).rev().filter(|k| k % 8 != 0) {
            log.remove(k);
        }
        assert_eq!(log.len(), (n / 8) as usize);
        assert!(
            log.heap_bytes() < full / 2,
            "{} of {full}",
            log.heap_bytes()
        );
        for k in 1..=n {
            assert_eq!(log.get(k).is_some(), k % 8 == 0);
            assert_eq!(log.order_of_reservation(k), (k % 8 == 0).then_some(k));
        }
        for k in (8..=n).step_by(8) {
            log.remove(k);
        }
        assert!(log.is_empty());
        assert!(log.chunks.len() <= 1);
    }

    #[test]
    fn out_of_order_records_are_held_too() {
        let mut log = PendingOrders::default();
        log.insert(order(10, 10));
        log.insert(order(5, 20)); // older id, newer reservation
        log.insert(order(20, 3)); // newer id, older reservation
        log.insert(order(30, 30));
        for (id, r) in [(10, 10), (5, 20), (20, 3), (30, 30)] {
            assert_eq!(log.get(id).map(|o| o.reservation), Some(r));
            assert_eq!(log.order_of_reservation(r), Some(id));
        }
        log.insert(order(10, 11)); // the same id again replaces it
        assert_eq!(log.len(), 4);
        assert_eq!(log.order_of_reservation(10), None);
        assert_eq!(log.order_of_reservation(11), Some(10));
        for id in [10, 5, 20, 30] {
            assert!(log.remove(id).is_some());
        }
        assert!(log.is_empty());
    }
}
