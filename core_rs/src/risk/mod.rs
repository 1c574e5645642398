//! Risk signals: the velocity features of orders and payments (`docs/risk.md`, "Features").
//!
//! A [`RiskTracker`] keeps per-key state (buyer, device, IP, shipping address, email hash, phone
//! hash, payment instrument, and the (device, SKU) and (IP, SKU) pairs) in bounded memory:
//! bucketed windows of fixed size per key, distinct sets whose counts saturate at 64, keys dropped after
//! a day idle (an hour for the SKU pairs) and evicted at a configured maximum per kind. Its features of an order are taken
//! before the order is counted, in the same pass that counts it
//! ([`RiskTracker::score_and_observe_order`]), so that training (a replay of an event stream)
//! and serving compute them with the same code.

mod distinct;
mod engine;
mod events;
mod features;
mod index;
mod inline;
mod packed;
mod policy;
mod state;
mod table;
#[cfg(test)]
mod tests;
mod tracker;
mod window;

pub use distinct::DISTINCT_CAP;
pub use engine::{
    features_json, reasons_json, strings_json, Assessment, Reasons, RiskEngine, Subject, REASONS,
    SAMPLE_SCALE,
};
pub use events::{key_hash, pair_hash, OrderEvent, PaymentEvent};
pub use features::{Features, FEATURE_COUNT, FEATURE_NAMES};
pub use packed::{PackedRisk, DECIDED_BY_CODES};
pub use policy::{
    Action, DecidedBy, Decision, ListKeys, Op, Outcome, Policy, Program, ProgramError, Rule,
    LIST_KINDS,
};
pub use table::{TableStats, IDLE_MS};
pub use tracker::{Limits, ReplayError, RiskTracker, KINDS};
