//! The tracker: per-key state of every kind, and the features of orders and payments.

use super::events::{pair_hash, OrderEvent, PaymentEvent};
use super::features::*;
use super::inline::InlineTable;
use super::state::{Address, Buyer, Client, Contact, Instrument, SkuClient};
use super::table::{Prefetch, Table, TableStats};

/// The kinds of keys, in the order of [`Limits`] and [`RiskTracker::stats`].
pub const KINDS: [&str; 9] = [
    "buyer",
    "device",
    "ip",
    "address",
    "email",
    "phone",
    "instrument",
    "device_sku",
    "ip_sku",
];

/// The most keys each kind tracks at once; a new key beyond it evicts a least recently seen one
/// (so that a client spraying device ids cannot grow memory without bound). Indexed as
/// [`KINDS`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits(pub [usize; 9]);

impl Default for Limits {
    /// A million keys of each kind (`docs/risk.md` gives the bytes per key to size this).
    fn default() -> Self {
        Self([1_000_000; 9])
    }
}

/// How many orders a batch counts per group (see `score_and_observe_orders`): few, so that the
/// slots loaded for a group (8 keys an order, up to 18 cache lines a key) are still in L1 or L2
/// when it is counted; measured against 4 and 16 (`tests/risk_figures.rs`), within the noise.
const PREFETCH_GROUP: usize = 8;

#[derive(Clone, Copy)]
enum Stage {
    Entry,
    Slot,
}

/// Why a replay refused its events.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReplayError {
    #[error("{what} are not in time order: item {index} is earlier than the one before it")]
    Unsorted { what: &'static str, index: usize },
    #[error("payment {payment} pays order {order}, which is not an earlier order of the replay")]
    UnknownOrder { payment: usize, order: i64 },
}

/// A key's state as it reads at `t` when it is not tracked: empty.
#[derive(Default)]
struct Empty {
    buyer: Buyer,
    client: Client,
    address: Address,
    contact: Contact,
    instrument: Instrument,
    sku_client: SkuClient,
}

/// Per-key state of every kind; see the module `risk`.
///
/// Events are taken in time order. An event earlier than the latest one taken counts as at the
/// latest time (a clock that steps back across threads by a few ms shifts it by as much); the
/// account age and the seconds since release still use the event's own time.
pub struct RiskTracker {
    now_ms: i64,
    buyers: Table<Buyer>,
    devices: Table<Client>,
    ips: Table<Client>,
    addresses: Table<Address>,
    // Small states live in their table's array: one cache miss a key instead of two.
    emails: InlineTable<Contact>,
    phones: InlineTable<Contact>,
    instruments: Table<Instrument>,
    device_skus: InlineTable<SkuClient>,
    ip_skus: InlineTable<SkuClient>,
    empty: Empty,
}

/// Reads a key's features and, when observing, counts the event in it: one lookup either way.
///
/// Written like two closures: `|s, last| { read }` runs with `s` the key's state (or an empty
/// one) and `last` its newest event time; `|s| { write }` runs with `s` mutable, its windows
/// moved to `$t`, only when observing.
macro_rules! visit {
    ($observe:expr, $table:expr, $empty:expr, $key:expr, $t:expr,
     |$rs:ident, $last:ident| $read:block, |$ws:ident| $write:block) => {{
        if $observe {
            let slot = $table.get_or_insert($key, $t);
            // Moved to the event's time first: the windows then read their running totals.
            slot.touch($t);
            {
                let ($rs, $last) = (&slot.state, slot.last_ms);
                $read
            }
            let $ws = &mut slot.state;
            $write
        } else {
            let ($rs, $last) = match $table.get($key, $t) {
                Some(slot) => (&slot.state, slot.last_ms),
                None => ($empty, $t),
            };
            $read
        }
    }};
}

#[inline]
fn count(n: usize) -> f64 {
    // Counts are capped (distinct sets at 64) or far below 2^53.
    n as f64
}

impl Default for RiskTracker {
    fn default() -> Self {
        Self::new(Limits::default())
    }
}

impl RiskTracker {
    /// An empty tracker holding at most `limits` keys of each kind.
    pub fn new(limits: Limits) -> Self {
        let [buyer, device, ip, address, email, phone, instrument, device_sku, ip_sku] = limits.0;
        Self {
            now_ms: i64::MIN,
            buyers: Table::new(buyer),
            devices: Table::new(device),
            ips: Table::new(ip),
            addresses: Table::new(address),
            emails: InlineTable::new(email),
            phones: InlineTable::new(phone),
            instruments: Table::new(instrument),
            device_skus: InlineTable::new(device_sku),
            ip_skus: InlineTable::new(ip_sku),
            empty: Empty::default(),
        }
    }

    /// The time an event at `at_ms` is counted at: never before an event already taken.
    #[inline]
    fn time(&self, at_ms: i64) -> i64 {
        at_ms.max(self.now_ms)
    }

    /// The order's features, before it is counted; it is not counted, and nothing changes
    /// (`&mut` only because it shares its code with the counting pass).
    pub fn order_features(&mut self, order: &OrderEvent) -> Features {
        let t = self.time(order.at_ms);
        self.order_pass(order, order.at_ms, t, order.amount, false)
    }

    /// Counts the order.
    pub fn observe_order(&mut self, order: &OrderEvent) {
        self.score_and_observe_order(order);
    }

    /// The order's features before it is counted, and counts it: one lookup per key (the hot
    /// path's call, once per order).
    pub fn score_and_observe_order(&mut self, order: &OrderEvent) -> Features {
        let t = self.time(order.at_ms);
        self.now_ms = t;
        self.order_pass(order, order.at_ms, t, order.amount, true)
    }

    /// [`Self::score_and_observe_order`] of each order in turn, into `out` (one row per order):
    /// the batch path's call. It counts the orders in groups; while it counts one group, the
    /// slots of the next and the index entries of the one after are loading into cache, so
    /// that their cache misses overlap with the work instead of stalling it.
    pub fn score_and_observe_orders(&mut self, orders: &[OrderEvent], out: &mut [Features]) {
        let n = orders.len().min(out.len());
        let range = |g: usize| (g * PREFETCH_GROUP).min(n)..((g + 1) * PREFETCH_GROUP).min(n);
        let prefetch = |this: &Self, g: usize, stage: Stage| {
            for i in range(g) {
                this.prefetch(&orders[i], i.checked_sub(1).map(|j| &orders[j]), stage);
            }
        };
        prefetch(self, 0, Stage::Entry);
        prefetch(self, 1, Stage::Entry);
        prefetch(self, 0, Stage::Slot);
        for g in 0..n.div_ceil(PREFETCH_GROUP) {
            prefetch(self, g + 2, Stage::Entry);
            prefetch(self, g + 1, Stage::Slot);
            for i in range(g) {
                let o = &orders[i];
                let t = self.time(o.at_ms);
                self.now_ms = t;
                self.order_pass_into(o, o.at_ms, t, o.amount, true, &mut out[i]);
            }
        }
    }

    /// Loads the index entries (`Stage::Entry`) or the slots (`Stage::Slot`) of the order's keys
    /// into cache: hints, with no effect on any result. A key of `prev`, the order before it in
    /// the batch, was loaded for that order and is skipped (a batch is one buyer's, from one
    /// connection: its buyer and IP are the same throughout).
    fn prefetch(&self, o: &OrderEvent, prev: Option<&OrderEvent>, stage: Stage) {
        fn one(table: &impl Prefetch, key: u64, stage: Stage) {
            match stage {
                Stage::Entry => table.prefetch_entry(key),
                Stage::Slot => table.prefetch(key),
            }
        }
        let new = |key: fn(&OrderEvent) -> Option<u64>| prev.is_none_or(|p| key(p) != key(o));
        let same_sku = prev.is_some_and(|p| p.sku == o.sku);
        if new(|e| Some(e.buyer)) {
            one(&self.buyers, o.buyer, stage);
        }
        if let Some(device) = o.device {
            let new_device = new(|e| e.device);
            if new_device {
                one(&self.devices, device, stage);
            }
            if new_device || !same_sku {
                one(&self.device_skus, pair_hash(device, o.sku), stage);
            }
        }
        if let Some(ip) = o.ip {
            let new_ip = new(|e| e.ip);
            if new_ip {
                one(&self.ips, ip, stage);
            }
            if new_ip || !same_sku {
                one(&self.ip_skus, pair_hash(ip, o.sku), stage);
            }
        }
        if let Some(address) = o.address.filter(|_| new(|e| e.address)) {
            one(&self.addresses, address, stage);
        }
        if let Some(email) = o.email.filter(|_| new(|e| e.email)) {
            one(&self.emails, email, stage);
        }
        if let Some(phone) = o.phone.filter(|_| new(|e| e.phone)) {
            one(&self.phones, phone, stage);
        }
    }

    /// The features for scoring a payment of `order`, before the payment is counted: the order's
    /// features at the payment's time (everything counted before it, the order itself
    /// included), with the payment's amount and its instrument's features filled in.
    pub fn payment_features(&mut self, order: &OrderEvent, payment: &PaymentEvent) -> Features {
        let t = self.time(payment.at_ms);
        let mut f = self.order_pass(order, payment.at_ms, t, payment.amount, false);
        let empty = &self.empty.instrument;
        visit!(
            false,
            self.instruments,
            empty,
            payment.instrument,
            t,
            |s, last| {
                s.attempts.read(
                    last,
                    t,
                    &mut f[INSTRUMENT_ATTEMPTS..INSTRUMENT_ATTEMPTS + 3],
                );
                f[INSTRUMENT_BUYERS] = count(s.buyers.count_at(t));
                f[INSTRUMENT_DECLINES_1H] = f64::from(s.declines_hour.sum_at(last, t));
            },
            |_s| {}
        );
        f
    }

    /// The payment's features ([`Self::payment_features`]), then counts the payment.
    pub fn score_and_observe_payment(
        &mut self,
        order: &OrderEvent,
        payment: &PaymentEvent,
    ) -> Features {
        let f = self.payment_features(order, payment);
        self.observe_payment(payment);
        f
    }

    /// Counts a payment attempt: its instrument's attempts and buyers, the buyer's instruments,
    /// and, when declined, the declines of its instrument, buyer, device and IP.
    pub fn observe_payment(&mut self, p: &PaymentEvent) {
        let t = self.time(p.at_ms);
        self.now_ms = t;
        let declined = !p.authorised;
        let slot = self.instruments.get_or_insert(p.instrument, t);
        slot.touch(t);
        slot.state.attempts.add(t);
        slot.state.buyers.see(p.buyer, t);
        if declined {
            slot.state.declines_hour.add(t, 1);
        }
        let slot = self.buyers.get_or_insert(p.buyer, t);
        slot.touch(t);
        slot.state.instruments.see(p.instrument, t);
        if declined {
            slot.state.declines_day.add(t, 1);
            for (table, key) in [(&mut self.devices, p.device), (&mut self.ips, p.ip)] {
                if let Some(key) = key {
                    let slot = table.get_or_insert(key, t);
                    slot.touch(t);
                    slot.state.declines_hour.add(t, 1);
                }
            }
        }
    }

    /// The features of `o` at `t` (its windows) and `at_ms` (its own time, for ages), with
    /// `amount`; counting it when `observe`.
    fn order_pass(
        &mut self,
        o: &OrderEvent,
        at_ms: i64,
        t: i64,
        amount: i64,
        observe: bool,
    ) -> Features {
        let mut f = [f64::NAN; FEATURE_COUNT];
        self.order_pass_into(o, at_ms, t, amount, observe, &mut f);
        f
    }

    /// `order_pass` into `f` (every feature written, NaN where missing): the batch path's
    /// rows are filled where they lie, not copied.
    fn order_pass_into(
        &mut self,
        o: &OrderEvent,
        at_ms: i64,
        t: i64,
        amount: i64,
        observe: bool,
        f: &mut Features,
    ) {
        f.fill(f64::NAN);
        let e = &self.empty;

        visit!(
            observe,
            self.buyers,
            &e.buyer,
            o.buyer,
            t,
            |s, last| {
                s.orders
                    .read(last, t, &mut f[BUYER_ORDERS..BUYER_ORDERS + 3]);
                f[BUYER_AMOUNT_1H] = s.amount_hour.sum_at(last, t) as f64;
                f[BUYER_AMOUNT_24H] = s.amount_day.sum_at(last, t) as f64;
                f[BUYER_DEVICES] = count(s.devices.count_at(t));
                f[BUYER_ADDRESSES] = count(s.addresses.count_at(t));
                f[BUYER_INSTRUMENTS] = count(s.instruments.count_at(t));
                f[BUYER_ORDERS_TOTAL] = s.orders_total as f64;
                f[BUYER_DECLINES_24H] = f64::from(s.declines_day.sum_at(last, t));
                if s.orders_total > 0 && s.amount_total > 0 {
                    let mean = s.amount_total as f64 / s.orders_total as f64;
                    f[AMOUNT_VS_BUYER_MEAN] = amount as f64 / mean;
                }
            },
            |s| {
                s.orders.add(t);
                s.amount_hour.add(t, amount);
                s.amount_day.add(t, amount);
                if let Some(device) = o.device {
                    s.devices.see(device, t);
                }
                if let Some(address) = o.address {
                    s.addresses.see(address, t);
                }
                s.orders_total += 1;
                s.amount_total = s.amount_total.saturating_add(amount);
            }
        );

        for (table, key, orders, buyers, declines, pairs, sku_orders) in [
            (
                &mut self.devices,
                o.device,
                DEVICE_ORDERS,
                DEVICE_BUYERS,
                DEVICE_DECLINES_1H,
                &mut self.device_skus,
                DEVICE_SKU_ORDERS_1H,
            ),
            (
                &mut self.ips,
                o.ip,
                IP_ORDERS,
                IP_BUYERS,
                IP_DECLINES_1H,
                &mut self.ip_skus,
                IP_SKU_ORDERS_1H,
            ),
        ] {
            let Some(key) = key else { continue };
            visit!(
                observe,
                table,
                &e.client,
                key,
                t,
                |s, last| {
                    s.orders.read(last, t, &mut f[orders..orders + 3]);
                    f[buyers] = count(s.buyers.count_at(t));
                    f[declines] = f64::from(s.declines_hour.sum_at(last, t));
                },
                |s| {
                    s.orders.add(t);
                    s.buyers.see(o.buyer, t);
                }
            );
            visit!(
                observe,
                pairs,
                &e.sku_client,
                pair_hash(key, o.sku),
                t,
                |s, last| {
                    f[sku_orders] = f64::from(s.orders_hour.sum_at(last, t));
                },
                |s| {
                    s.orders_hour.add(t, 1);
                }
            );
        }

        if let Some(address) = o.address {
            visit!(
                observe,
                self.addresses,
                &e.address,
                address,
                t,
                |s, last| {
                    s.orders
                        .read(last, t, &mut f[ADDRESS_ORDERS..ADDRESS_ORDERS + 3]);
                    f[ADDRESS_BUYERS] = count(s.buyers.count_at(t));
                },
                |s| {
                    s.orders.add(t);
                    s.buyers.see(o.buyer, t);
                }
            );
        }

        for (table, key, feature) in [
            (&mut self.emails, o.email, EMAIL_BUYERS),
            (&mut self.phones, o.phone, PHONE_BUYERS),
        ] {
            let Some(key) = key else { continue };
            visit!(
                observe,
                table,
                &e.contact,
                key,
                t,
                |s, _last| {
                    f[feature] = count(s.buyers.count_at(t));
                },
                |s| {
                    s.buyers.see(o.buyer, t);
                }
            );
        }

        // Times are ms: exact in f64 below 2^53 ms (285,000 years); saturating, so that absurd
        // times from a client give absurd features, never a panic.
        f[ACCOUNT_AGE_S] = o
            .account_created_ms
            .map_or(f64::NAN, |c| at_ms.saturating_sub(c) as f64 / 1000.0);
        f[AMOUNT] = amount as f64;
        f[QUANTITY] = o.quantity as f64;
        if let (Some(ip), Some(ship)) = (o.ip_region, o.ship_region) {
            f[IP_REGION_MISMATCH] = if ip == ship { 0.0 } else { 1.0 };
        }
        if let Some(release) = o.sku_release_ms {
            f[SECONDS_SINCE_RELEASE] = at_ms.saturating_sub(release) as f64 / 1000.0;
        }
        f[AGENT_CLASS] = f64::from(o.agent);
    }

    /// Replays an event stream: orders and payments, each in time order, merged by time (at
    /// equal times orders first). Returns each order's features (as
    /// [`Self::score_and_observe_order`] gives them), and, when `payment_order` names the order
    /// each payment pays (an index into `orders`), each payment's features (as
    /// [`Self::score_and_observe_payment`]); else no payment features.
    pub fn replay(
        &mut self,
        orders: &[OrderEvent],
        payments: &[PaymentEvent],
        payment_order: Option<&[i64]>,
    ) -> Result<(Vec<Features>, Vec<Features>), ReplayError> {
        if let Some(index) = orders.windows(2).position(|w| w[1].at_ms < w[0].at_ms) {
            return Err(ReplayError::Unsorted {
                what: "orders",
                index: index + 1,
            });
        }
        if let Some(index) = payments.windows(2).position(|w| w[1].at_ms < w[0].at_ms) {
            return Err(ReplayError::Unsorted {
                what: "payments",
                index: index + 1,
            });
        }
        let mut order_rows = vec![[f64::NAN; FEATURE_COUNT]; orders.len()];
        let mut payment_rows = Vec::with_capacity(payment_order.map_or(0, |_| payments.len()));
        let mut next = 0;
        for (j, p) in payments.iter().enumerate() {
            // The orders up to the payment's time, as one batch.
            let end = next + orders[next..].partition_point(|o| o.at_ms <= p.at_ms);
            self.score_and_observe_orders(&orders[next..end], &mut order_rows[next..end]);
            next = end;
            match payment_order {
                Some(paid) => {
                    let order = paid.get(j).copied().unwrap_or(-1);
                    let known = usize::try_from(order).ok().filter(|&i| i < next);
                    let Some(i) = known else {
                        return Err(ReplayError::UnknownOrder { payment: j, order });
                    };
                    payment_rows.push(self.score_and_observe_payment(&orders[i], p));
                }
                None => self.observe_payment(p),
            }
        }
        self.score_and_observe_orders(&orders[next..], &mut order_rows[next..]);
        Ok((order_rows, payment_rows))
    }

    /// Drops every key idle longer than a day at the latest time taken (the amortised sweep
    /// does this as keys arrive; this is a whole pass, for tests and a quiet period).
    pub fn sweep(&mut self) {
        let t = self.now_ms;
        self.buyers.sweep_all(t);
        self.devices.sweep_all(t);
        self.ips.sweep_all(t);
        self.addresses.sweep_all(t);
        self.emails.sweep_all(t);
        self.phones.sweep_all(t);
        self.instruments.sweep_all(t);
        self.device_skus.sweep_all(t);
        self.ip_skus.sweep_all(t);
    }

    /// Keys, drops and bytes per kind, in the order of [`KINDS`]: a pass over every key (for
    /// metrics, not per order).
    pub fn stats(&self) -> [TableStats; 9] {
        [
            self.buyers.stats(),
            self.devices.stats(),
            self.ips.stats(),
            self.addresses.stats(),
            self.emails.stats(),
            self.phones.stats(),
            self.instruments.stats(),
            self.device_skus.stats(),
            self.ip_skus.stats(),
        ]
    }
}
