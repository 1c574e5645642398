//! Risk control at order intake: the tracker, the model and the policy together, deciding the
//! orders of one placing pass (`crate::orders::book`) with no Python object per order.
//!
//! For each order (after its catalogue checks, before it reserves anything): its features
//! (taken before it is counted, and it is counted: an attempt refused by risk control still
//! counts, as in the replay the model was trained on), its score by the model, the policy's
//! decision, and the three features that pushed its score up most (the reasons).

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use parking_lot::Mutex;
use smallvec::SmallVec;

use super::events::OrderEvent;
use super::features::{Features, FEATURE_COUNT, FEATURE_NAMES};
use super::policy::{DecidedBy, Decision, ListKeys, Outcome, Policy};
use super::tracker::{Limits, RiskTracker};
use crate::model::{score_of, ModelVersion, RiskModel};

/// How many reasons a decision keeps.
pub const REASONS: usize = 3;

/// A decision's reasons: (feature column, the feature's value, its contribution to the raw
/// score), largest first, at most `REASONS` (inline: no allocation).
pub type Reasons = SmallVec<[(u16, f64, f64); REASONS]>;

/// One order's assessment: its score (None: not scored), the decision and its reasons.
#[derive(Clone, Debug)]
pub struct Assessment {
    pub score: Option<u8>,
    pub decision: Decision,
    pub reasons: Reasons,
    /// The features it was decided on, kept when it is held for review (the reviewer's
    /// verdict makes them a labelled example for training, `DecisionRow::features_json`) and
    /// when it is allowed and sampled (`RiskEngine::samples`: a fraud report or its absence
    /// labels it later).
    pub features: Option<Box<Features>>,
}

/// What one order brings to its assessment besides its event.
pub struct Subject<'a> {
    pub keys: ListKeys,
    /// The merchants of its lines (whose own rules apply).
    pub merchants: SmallVec<[&'a str; 2]>,
    /// Keep its features if it is allowed (`RiskEngine::samples` of its id).
    pub sampled: bool,
}

/// Samples are counted in millionths of the allowed orders.
pub const SAMPLE_SCALE: u32 = 1_000_000;

/// Risk control's state: see the module's docs.
pub struct RiskEngine {
    tracker: Mutex<RiskTracker>,
    model: Option<RiskModel>,
    model_version: Option<ModelVersion>,
    policy: ArcSwap<Policy>,
    /// A model was configured but could not be loaded: orders are decided by `on_failure`
    /// (where the policy would allow them by default).
    failed: bool,
    on_failure: Outcome,
    /// Decisions per outcome (allow, review, block), and of them decided by a failure.
    decided: [AtomicU64; 3],
    failures: AtomicU64,
    /// Millionths of the allowed orders whose features are kept (`samples`).
    sample: AtomicU32,
}

impl RiskEngine {
    /// An engine scoring with `model` (None: rules and lists only); `failed` says a model was
    /// configured and could not be loaded, so that `on_failure` decides instead.
    pub fn new(
        model: Option<RiskModel>,
        limits: Limits,
        failed: bool,
        on_failure: Outcome,
    ) -> Self {
        let model_version = model.as_ref().map(RiskModel::version_id);
        Self {
            tracker: Mutex::new(RiskTracker::new(limits)),
            model,
            model_version,
            policy: ArcSwap::from_pointee(Policy::default()),
            failed,
            on_failure,
            decided: Default::default(),
            failures: AtomicU64::new(0),
            sample: AtomicU32::new(0),
        }
    }

    /// Keep the features of `per_million` millionths of the allowed orders (at most all).
    pub fn set_sample(&self, per_million: u32) {
        self.sample
            .store(per_million.min(SAMPLE_SCALE), Ordering::Relaxed);
    }

    pub fn sample(&self) -> u32 {
        self.sample.load(Ordering::Relaxed)
    }

    /// Whether order `id`, if allowed, keeps its features: a hash of the id (ids are
    /// sequences per node, so their low bits alone would sample in stripes) below the rate.
    /// The same id is always sampled or never, on every node.
    pub fn samples(&self, id: i64) -> bool {
        let rate = self.sample();
        rate > 0 && (splitmix64(id as u64) % u64::from(SAMPLE_SCALE)) < u64::from(rate)
    }

    pub fn model_version(&self) -> Option<ModelVersion> {
        self.model_version
    }

    /// Swap in a new policy; decisions already under way keep the old one.
    pub fn set_policy(&self, policy: Policy) {
        self.policy.store(Arc::new(policy));
    }

    pub fn policy(&self) -> Arc<Policy> {
        self.policy.load_full()
    }

    pub fn tracker(&self) -> &Mutex<RiskTracker> {
        &self.tracker
    }

    /// (allowed, reviewed, blocked, decided by a failure) since start.
    pub fn counts(&self) -> [u64; 4] {
        let [a, r, b] = &self.decided;
        [
            a.load(Ordering::Relaxed),
            r.load(Ordering::Relaxed),
            b.load(Ordering::Relaxed),
            self.failures.load(Ordering::Relaxed),
        ]
    }

    /// Assess `events` (one per order, in the order they are placed), each with its
    /// `subjects` entry: counts them in the tracker and decides each.
    pub fn assess(&self, events: &[OrderEvent], subjects: &[Subject<'_>]) -> Vec<Assessment> {
        let mut rows: Vec<Features> = vec![[f64::NAN; FEATURE_COUNT]; events.len()];
        {
            let mut tracker = self.tracker.lock();
            if events.len() == 1 {
                rows[0] = tracker.score_and_observe_order(&events[0]);
            } else {
                tracker.score_and_observe_orders(events, &mut rows);
            }
        }
        let policy = self.policy.load();
        rows.iter()
            .zip(subjects)
            .map(|(row, subject)| self.assess_one(&policy, row, subject))
            .collect()
    }

    /// A payment about to start, as risk control sees it then: `event` (the order's buyer and
    /// amount, the payment request's IP; the instrument is not known before the provider
    /// answers) with the features of now, not counted, scored and decided by the platform's
    /// rules and lists (`keys`). Not counted in the decisions per outcome (those are orders').
    pub fn assess_payment(&self, event: &OrderEvent, keys: &ListKeys) -> Assessment {
        let row = self.tracker.lock().order_features(event);
        let (score, reasons) = self.score(&row);
        let decision = self.policy.load().decide(&row, score, keys, &[]);
        Assessment {
            score,
            decision,
            reasons,
            features: None,
        }
    }

    /// The model's score of `row` (None without a model, or for a model that cannot score it)
    /// and the reasons: the features that raised it most.
    fn score(&self, row: &Features) -> (Option<u8>, Reasons) {
        let mut reasons = Reasons::new();
        let score = self.model.as_ref().and_then(|model| {
            // The model's features are the catalogue's (checked when it is loaded), so a row
            // always fits; a model that cannot explain itself still scores.
            let mut contributions = [0.0; FEATURE_COUNT];
            let p = model
                .probability_and_contributions(row, &mut contributions)
                .ok()?;
            reasons = top_reasons(row, &contributions);
            Some(score_of(p))
        });
        (score, reasons)
    }

    fn assess_one(&self, policy: &Policy, row: &Features, subject: &Subject<'_>) -> Assessment {
        let (score, reasons) = self.score(row);
        let mut decision = policy.decide(row, score, &subject.keys, &subject.merchants);
        if self.failed
            && score.is_none()
            && decision.decided_by == DecidedBy::Default
            && self.on_failure != Outcome::Allow
        {
            decision.outcome = self.on_failure;
            decision.decided_by = DecidedBy::Failure;
        }
        if self.failed && score.is_none() {
            self.failures.fetch_add(1, Ordering::Relaxed);
        }
        self.decided[decision.outcome as usize].fetch_add(1, Ordering::Relaxed);
        let keep = match decision.outcome {
            Outcome::Review => true,
            Outcome::Allow => subject.sampled,
            Outcome::Block => false,
        };
        let features = keep.then(|| Box::new(*row));
        Assessment {
            score,
            decision,
            reasons,
            features,
        }
    }
}

/// SplitMix64's finaliser: every bit of `x` moves every bit of the result.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The `REASONS` features with the largest positive contributions (those that raised the
/// score), largest first.
fn top_reasons(row: &Features, contributions: &[f64]) -> Reasons {
    // The three largest so far, largest first (0.0 where fewer were found: a contribution
    // must be above it to enter); once three are found, most contributions fall below the
    // third, so the scan takes one predictable branch per feature.
    let mut top = [(0usize, 0.0f64); REASONS];
    for (i, &c) in contributions.iter().enumerate() {
        if c > top[REASONS - 1].1 {
            let mut at = REASONS - 1;
            while at > 0 && c > top[at - 1].1 {
                top[at] = top[at - 1];
                at -= 1;
            }
            top[at] = (i, c);
        }
    }
    top.iter()
        .take_while(|&&(_, c)| c > 0.0)
        .map(|&(i, c)| (i as u16, row[i], c))
        .collect()
}

/// The reasons as JSON: `[{"feature": name, "value": v | null, "contribution": c}, ...]`.
pub fn reasons_json(reasons: &[(u16, f64, f64)]) -> String {
    let mut out = String::from("[");
    for (i, &(column, value, contribution)) in reasons.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str("{\"feature\":\"");
        out.push_str(FEATURE_NAMES[usize::from(column)]);
        out.push_str("\",\"value\":");
        push_number(&mut out, value);
        out.push_str(",\"contribution\":");
        push_number(&mut out, (contribution * 1e6).round() / 1e6);
        out.push('}');
    }
    out.push(']');
    out
}

/// A feature vector as a JSON object of the catalogue's names: `{"buyer_orders_1m": 3, ...}`,
/// a missing feature (NaN) left out, so that a reader maps it by name whatever the catalogue
/// it was written with.
pub fn features_json(row: &Features) -> String {
    let mut out = String::with_capacity(FEATURE_COUNT * 24);
    out.push('{');
    for (name, &value) in FEATURE_NAMES.iter().zip(row) {
        if !value.is_finite() {
            continue;
        }
        if out.len() > 1 {
            out.push(',');
        }
        out.push('"');
        out.push_str(name);
        out.push_str("\":");
        push_number(&mut out, value);
    }
    out.push('}');
    out
}

fn push_number(out: &mut String, v: f64) {
    if !v.is_finite() {
        out.push_str("null");
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        // Counts and amounts, most values: as integers ("7", not "7.0").
        out.push_str(itoa::Buffer::new().format(v as i64));
    } else {
        // The shortest text that reads back as `v`; valid JSON ("0.25", "1e-7").
        out.push_str(ryu::Buffer::new().format_finite(v));
    }
}

/// A JSON array of strings (rule ids: checked plain text, but escaped all the same).
pub fn strings_json<'a>(items: impl IntoIterator<Item = &'a str>) -> String {
    let mut items = items.into_iter().peekable();
    if items.peek().is_none() {
        return String::from("[]");
    }
    let mut out = String::from("[");
    for (i, s) in items.enumerate() {
        if i > 0 {
            out.push(',');
        }
        crate::orders::parse::push_json_str(&mut out, s);
    }
    out.push(']');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_the_largest_positive_contributions() {
        let mut row = [0.0; FEATURE_COUNT];
        row[3] = 7.0;
        row[5] = f64::NAN;
        let mut c = vec![0.0; FEATURE_COUNT];
        c[1] = 0.5;
        c[3] = 2.0;
        c[5] = 1.0;
        c[7] = -3.0;
        c[9] = 0.25;
        let top = top_reasons(&row, &c);
        assert_eq!(top.iter().map(|r| r.0).collect::<Vec<_>>(), vec![3, 5, 1]);
        assert_eq!(
            reasons_json(&top[..1]),
            r#"[{"feature":"device_orders_1m","value":7,"contribution":2}]"#
        );
        assert!(reasons_json(&top).contains(r#""value":null"#));
        assert_eq!(strings_json(["a", "b\"c"]), r#"["a","b\"c"]"#);
    }

    #[test]
    fn features_are_named_and_missing_ones_left_out() {
        let mut row = [f64::NAN; FEATURE_COUNT];
        assert_eq!(features_json(&row), "{}");
        row[0] = 3.0;
        row[3] = 0.25;
        assert_eq!(
            features_json(&row),
            r#"{"buyer_orders_1m":3,"device_orders_1m":0.25}"#
        );
    }

    /// The sample is a share of the ids, near the rate over many ids (ids of one node are
    /// consecutive), the same for an id every time, none at 0 and all at the scale.
    #[test]
    fn sampling_takes_the_rate_of_the_ids_and_always_the_same_ones() {
        let engine = RiskEngine::new(None, Limits::default(), false, Outcome::Allow);
        let base: i64 = 7 << 40;
        let count = |e: &RiskEngine| (0..200_000).filter(|&i| e.samples(base + i)).count();
        assert_eq!(count(&engine), 0);
        engine.set_sample(10_000); // 1 %
        let taken = count(&engine);
        assert!(
            (1_700..=2_300).contains(&taken),
            "{taken} of 200,000 at 1 %"
        );
        let again: Vec<i64> = (0..2_000).filter(|&i| engine.samples(base + i)).collect();
        assert_eq!(
            again,
            (0..2_000)
                .filter(|&i| engine.samples(base + i))
                .collect::<Vec<_>>()
        );
        engine.set_sample(SAMPLE_SCALE * 2);
        assert_eq!(engine.sample(), SAMPLE_SCALE);
        assert_eq!(count(&engine), 200_000);
    }
}
