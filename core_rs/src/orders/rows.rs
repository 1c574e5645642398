//! Orders taken by the Rust intake, as rows for the group commit.
//!
//! A `NewOrder` is one order exactly as the `orders` and `order_lines` tables store it (see
//! `pyorder/storage/codec.py` for the column order): status `pending_payment`, `updated_ms`
//! equal to `created_ms`. Money is integer minor units; times are ms since the Unix epoch, UTC.
//! `OrderRows` collects the orders of one commit window plus the stock counters they move
//! (one delta per (sku, warehouse), however many orders touched it: hot-row batching).

use std::borrow::Cow;
use std::sync::Arc;

use rustc_hash::FxHashMap;
use smallvec::SmallVec;

use crate::model::ModelVersion;
use crate::risk::{
    features_json, reasons_json, strings_json, DecidedBy, Features, Outcome, PackedRisk, Reasons,
};

/// The status a new order is stored with, unless risk control holds it for review.
pub const PENDING_PAYMENT: &str = "pending_payment";
/// The status of an order risk control holds for review (its units reserved).
pub const IN_REVIEW: &str = "in_review";

/// One line of a new order: `quantity` units of `sku`, served from `warehouse`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewLine {
    pub sku: u32,
    pub warehouse: u32,
    pub quantity: u32,
    /// Unit price in minor units of the order's currency, from the catalogue.
    pub unit_price: i64,
    /// Principal key (`merchant:<subject>`) of the SKU's owner.
    pub merchant: Arc<str>,
}

/// One new order, as stored (columns of `orders`, lines of `order_lines`).
#[derive(Debug, Clone, PartialEq)]
pub struct NewOrder {
    pub id: i64,
    /// Subject of the buyer's token.
    pub buyer: Arc<str>,
    /// ISO 4217 code, three ASCII capitals.
    pub currency: [u8; 3],
    /// Sum of quantity * unit_price over the lines, minor units.
    pub total: i64,
    pub region: Arc<str>,
    /// The shipping address as compact JSON text (an object).
    pub address: Box<str>,
    pub reservation: i64,
    pub created_ms: i64,
    /// Payment deadline; the order expires then if unpaid. In review: the review's deadline.
    pub deadline_ms: i64,
    pub lines: SmallVec<[NewLine; 1]>,
    /// `PENDING_PAYMENT` or `IN_REVIEW`.
    pub status: &'static str,
    /// Risk control's decision when it allowed the order (`orders.risk_packed`); a decision
    /// held for review, or allowed and sampled with its features, has a `DecisionRow` of its
    /// own, and without risk control there is none.
    pub risk: Option<OrderRisk>,
}

/// What risk control decided of an order, as stored: an allowed order's in its own row
/// (`NewOrder::risk`, the `orders.risk_packed` column) rather than a `risk_decisions` row of
/// its own (most orders are allowed, and a second row per order cost the batch path through
/// HTTP 40 % of its throughput, BENCHMARKS.md); a held or blocked one's, and an allowed one
/// sampled with its features (`RiskEngine::samples`), in its `DecisionRow`.
///
/// What decided, the rules that fired and the reasons are kept as data and rendered to the
/// columns' text only by the writers (`decided_by_text`, `fired_json`, `reasons_json`,
/// `json`): the order path makes no string per decision.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderRisk {
    pub three_ds: bool,
    /// 0-99; None when not scored.
    pub score: Option<u8>,
    /// The model's version; None when not scored.
    pub model: Option<ModelVersion>,
    pub decided_by: DecidedBy,
    /// The rule ids that fired (request-3-D-Secure rules, then what decided, if a rule or list).
    pub fired: SmallVec<[Arc<str>; 2]>,
    /// Up to three reasons (feature column, value, contribution), largest first.
    pub reasons: Reasons,
}

impl OrderRisk {
    /// The `decided_by` column: a rule id, `list:block:device`, `score`, `default`,
    /// `scoring_failed`.
    pub fn decided_by_text(&self) -> Cow<'_, str> {
        self.decided_by.as_text()
    }

    /// The `fired` column: a JSON array of the rule ids.
    pub fn fired_json(&self) -> Cow<'static, str> {
        if self.fired.is_empty() {
            return Cow::Borrowed("[]");
        }
        Cow::Owned(strings_json(self.fired.iter().map(|f| &**f)))
    }

    /// The `reasons` column: `[{"feature", "value", "contribution"}]` (`risk::reasons_json`).
    pub fn reasons_json(&self) -> Cow<'static, str> {
        if self.reasons.is_empty() {
            return Cow::Borrowed("[]");
        }
        Cow::Owned(reasons_json(&self.reasons))
    }

    /// The whole decision as an order's `risk_packed` column: MessagePack
    /// (`risk::PackedRisk`, written by `PackedRisk::write`).
    pub fn packed(&self) -> PackedRisk<'_> {
        PackedRisk {
            score: self.score,
            model: self.model.as_ref().map(ModelVersion::as_str),
            decided_by: &self.decided_by,
            three_ds: self.three_ds,
            fired: &self.fired,
            reasons: &self.reasons,
        }
    }
}

/// One risk decision, as the `risk_decisions` table stores it (`DECISION_COLUMNS`): of an
/// order held for review (same id), or of an attempt blocked before it became one (the id it
/// was given).
#[derive(Debug, Clone, PartialEq)]
pub struct DecisionRow {
    pub id: i64,
    pub buyer: Arc<str>,
    /// The first line's merchant (principal key).
    pub merchant: Arc<str>,
    pub at_ms: i64,
    /// Allow, review or block (`Outcome::as_str` in the stored column).
    pub outcome: Outcome,
    /// Its score, model, what decided, the rules fired and the reasons.
    pub risk: OrderRisk,
    /// The features it was decided on, for a decision held for review (its verdict is a
    /// label for training) or allowed and sampled (a fraud report, or none, labels it); None
    /// otherwise.
    pub features: Option<Box<Features>>,
}

impl DecisionRow {
    /// The `features` column: `{"name": value}` of a decision held for review
    /// (`risk::features_json`), else NULL.
    pub fn features_json(&self) -> Option<String> {
        self.features.as_deref().map(features_json)
    }
}

impl NewOrder {
    /// The `risk_packed` column (`OrderRisk::packed`), or None for NULL.
    pub fn risk_packed(&self) -> Option<Vec<u8>> {
        self.risk.as_ref().map(|r| {
            let mut out = Vec::with_capacity(48);
            r.packed().write(&mut out);
            out
        })
    }

    pub fn currency_str(&self) -> &str {
        // Built only from validated ASCII codes.
        std::str::from_utf8(&self.currency).unwrap_or("XXX")
    }
}

/// The orders of one commit window, in the order the core took them, and the reserved-unit
/// deltas they add per (sku, warehouse).
#[derive(Debug, Default)]
pub struct OrderRows {
    pub orders: Vec<Arc<NewOrder>>,
    /// The risk decisions of these orders and of the attempts blocked in the same window.
    pub decisions: Vec<DecisionRow>,
    /// (sku, warehouse) -> units reserved by these orders.
    pub reserved: FxHashMap<(u32, u32), i64>,
}

impl OrderRows {
    pub fn push(&mut self, order: Arc<NewOrder>) {
        for line in &order.lines {
            *self.reserved.entry((line.sku, line.warehouse)).or_insert(0) +=
                i64::from(line.quantity);
        }
        self.orders.push(order);
    }

    pub fn len(&self) -> usize {
        self.orders.len()
    }

    pub fn is_empty(&self) -> bool {
        self.orders.is_empty()
    }

    /// Decisions with no order among these rows (attempts blocked): rows to write all the same.
    pub fn blocked(&self) -> usize {
        self.decisions
            .iter()
            .filter(|d| d.outcome == Outcome::Block)
            .count()
    }

    pub fn line_count(&self) -> usize {
        self.orders.iter().map(|o| o.lines.len()).sum()
    }

    /// The smallest and the largest order id, or None when there is no order. The rows of one
    /// generator are in increasing id order, but nothing here relies on it.
    pub fn id_range(&self) -> Option<(i64, i64)> {
        let ids = self.orders.iter().map(|o| o.id);
        Some((ids.clone().min()?, ids.max()?))
    }

    /// Move every order of `other` into these rows, in its order, but those whose id is in
    /// `skip` (dropped); `other` is left empty. Returns how many orders moved.
    pub fn take_from(&mut self, other: &mut OrderRows, skip: &[i64]) -> usize {
        let before = self.orders.len();
        for order in other.orders.drain(..) {
            if !skip.contains(&order.id) {
                self.push(order);
            }
        }
        // A skipped order's decision goes with it (no order has its id).
        self.decisions
            .extend(other.decisions.drain(..).filter(|d| !skip.contains(&d.id)));
        other.reserved.clear();
        self.orders.len() - before
    }

    /// The reserved deltas as (sku, warehouse, units), sorted (a stable UPDATE order).
    pub fn reserved_deltas(&self) -> Vec<(u32, u32, i64)> {
        let mut out: Vec<_> = self
            .reserved
            .iter()
            .map(|(&(s, w), &d)| (s, w, d))
            .collect();
        out.sort_unstable();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(id: i64) -> Arc<NewOrder> {
        Arc::new(NewOrder {
            id,
            buyer: Arc::from("b"),
            currency: *b"CNY",
            total: 100,
            region: Arc::from("east"),
            address: Box::from("{}"),
            reservation: id,
            created_ms: 1,
            deadline_ms: 2,
            status: PENDING_PAYMENT,
            risk: None,
            lines: SmallVec::from_vec(vec![NewLine {
                sku: 0,
                warehouse: 0,
                quantity: 1,
                unit_price: 100,
                merchant: Arc::from("merchant:m"),
            }]),
        })
    }

    #[test]
    fn take_from_moves_all_but_the_skipped_orders() {
        let mut rows = OrderRows::default();
        rows.push(order(1));
        let mut other = OrderRows::default();
        for id in [5, 6, 7] {
            other.push(order(id));
        }
        assert_eq!(rows.take_from(&mut other, &[6]), 2);
        assert!(other.is_empty());
        assert!(other.reserved.is_empty());
        let ids: Vec<i64> = rows.orders.iter().map(|o| o.id).collect();
        assert_eq!(ids, vec![1, 5, 7]);
        // The skipped order's units are not reserved here.
        assert_eq!(rows.reserved_deltas(), vec![(0, 0, 3)]);
    }

    #[test]
    fn id_range_spans_every_order() {
        let mut rows = OrderRows::default();
        assert_eq!(rows.id_range(), None);
        for id in [7, 3, 9] {
            rows.push(order(id));
        }
        assert_eq!(rows.id_range(), Some((3, 9)));
    }
}
