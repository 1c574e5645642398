//! The state kept per key of each kind: which windows and distinct sets, per the catalogue in
//! `docs/risk.md`.

use super::distinct::DistinctSet;
use super::table::KeyState;
use super::window::Window;

/// The 1 min window: 12 buckets of 5 s.
pub(crate) type Min<T> = Window<T, 12, 5_000>;
/// The 1 h window: 12 buckets of 5 min.
pub(crate) type Hour<T> = Window<T, 12, 300_000>;
/// The 24 h window: 24 buckets of 1 h.
pub(crate) type Day<T> = Window<T, 24, 3_600_000>;

/// Counts over 1 min, 1 h and 24 h.
#[derive(Clone, Debug, Default)]
pub(crate) struct Velocity {
    pub(crate) min: Min<u32>,
    pub(crate) hour: Hour<u32>,
    pub(crate) day: Day<u32>,
}

impl Velocity {
    pub(crate) fn advance(&mut self, last_ms: i64, t_ms: i64) {
        self.min.advance(last_ms, t_ms);
        self.hour.advance(last_ms, t_ms);
        self.day.advance(last_ms, t_ms);
    }

    pub(crate) fn add(&mut self, t_ms: i64) {
        self.min.add(t_ms, 1);
        self.hour.add(t_ms, 1);
        self.day.add(t_ms, 1);
    }

    /// The three counts at `t_ms`, as features.
    pub(crate) fn read(&self, last_ms: i64, t_ms: i64, out: &mut [f64]) {
        out[0] = f64::from(self.min.sum_at(last_ms, t_ms));
        out[1] = f64::from(self.hour.sum_at(last_ms, t_ms));
        out[2] = f64::from(self.day.sum_at(last_ms, t_ms));
    }
}

/// A buyer: orders, amounts, declines, devices/addresses/instruments, lifetime totals.
#[derive(Clone, Debug, Default)]
pub(crate) struct Buyer {
    pub(crate) orders: Velocity,
    pub(crate) amount_hour: Hour<i64>,
    pub(crate) amount_day: Day<i64>,
    pub(crate) declines_day: Day<u32>,
    pub(crate) devices: DistinctSet,
    pub(crate) addresses: DistinctSet,
    pub(crate) instruments: DistinctSet,
    /// Orders seen while the buyer was tracked (it restarts after `IDLE_MS` idle).
    pub(crate) orders_total: u64,
    /// Their amounts' sum, minor units (saturating: a mean past 9e18 minor units is no signal).
    pub(crate) amount_total: i64,
}

impl KeyState for Buyer {
    fn advance(&mut self, last_ms: i64, t_ms: i64) {
        self.orders.advance(last_ms, t_ms);
        self.amount_hour.advance(last_ms, t_ms);
        self.amount_day.advance(last_ms, t_ms);
        self.declines_day.advance(last_ms, t_ms);
    }
    fn heap_bytes(&self) -> usize {
        self.devices.heap_bytes() + self.addresses.heap_bytes() + self.instruments.heap_bytes()
    }
}

/// A device or an IP: orders, declines, buyers.
#[derive(Clone, Debug, Default)]
pub(crate) struct Client {
    pub(crate) orders: Velocity,
    pub(crate) declines_hour: Hour<u32>,
    pub(crate) buyers: DistinctSet,
}

impl KeyState for Client {
    fn advance(&mut self, last_ms: i64, t_ms: i64) {
        self.orders.advance(last_ms, t_ms);
        self.declines_hour.advance(last_ms, t_ms);
    }
    fn heap_bytes(&self) -> usize {
        self.buyers.heap_bytes()
    }
}

/// A shipping address: orders, buyers.
#[derive(Clone, Debug, Default)]
pub(crate) struct Address {
    pub(crate) orders: Velocity,
    pub(crate) buyers: DistinctSet,
}

impl KeyState for Address {
    fn advance(&mut self, last_ms: i64, t_ms: i64) {
        self.orders.advance(last_ms, t_ms);
    }
    fn heap_bytes(&self) -> usize {
        self.buyers.heap_bytes()
    }
}

/// An email or phone hash: buyers.
#[derive(Clone, Debug, Default)]
pub(crate) struct Contact {
    pub(crate) buyers: DistinctSet,
}

impl KeyState for Contact {
    fn advance(&mut self, _: i64, _: i64) {}
    fn heap_bytes(&self) -> usize {
        self.buyers.heap_bytes()
    }
}

/// A payment instrument: attempts, declines, buyers.
#[derive(Clone, Debug, Default)]
pub(crate) struct Instrument {
    pub(crate) attempts: Velocity,
    pub(crate) declines_hour: Hour<u32>,
    pub(crate) buyers: DistinctSet,
}

impl KeyState for Instrument {
    fn advance(&mut self, last_ms: i64, t_ms: i64) {
        self.attempts.advance(last_ms, t_ms);
        self.declines_hour.advance(last_ms, t_ms);
    }
    fn heap_bytes(&self) -> usize {
        self.buyers.heap_bytes()
    }
}

/// A (device, SKU) or (IP, SKU) pair: orders in the hour.
#[derive(Clone, Debug, Default)]
pub(crate) struct SkuClient {
    pub(crate) orders_hour: Hour<u32>,
}

impl KeyState for SkuClient {
    /// Its one window is the hour: an hour idle and it counts nothing (12 buckets of 5 min after
    /// its last bucket).
    const IDLE_MS: i64 = 3_600_000;
    fn advance(&mut self, last_ms: i64, t_ms: i64) {
        self.orders_hour.advance(last_ms, t_ms);
    }
    fn heap_bytes(&self) -> usize {
        0
    }
}
