//! Bindings of risk control at intake (`crate::risk::RiskEngine`): `RiskEngine`, which an
//! `OrderBook` assesses every order with (`OrderBook.set_risk`), its policy set from
//! `pyorder.risk.policy.Policy` by `pyorder.risk.intake`.

use std::collections::HashMap;
use std::sync::Arc;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use super::model::RiskModel;
use crate::risk::{
    self, Action, Limits, Op, Outcome, Policy, Program, Rule, FEATURE_NAMES, KINDS, LIST_KINDS,
};

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<RiskEngine>()?;
    m.add("RISK_LIST_KINDS", LIST_KINDS.to_vec())?;
    Ok(())
}

/// (score, outcome, three_ds, fired, decided_by, reasons JSON) of `RiskEngine.assess_payment`.
type PaymentAssessment = (Option<u8>, &'static str, bool, Vec<String>, String, String);

/// Risk control's state at intake: the velocity tracker, the model, the policy.
#[pyclass(frozen, module = "pyorder._core")]
pub(crate) struct RiskEngine {
    pub(crate) inner: Arc<risk::RiskEngine>,
}

fn outcome(name: &str) -> PyResult<Outcome> {
    match name {
        "allow" => Ok(Outcome::Allow),
        "review" => Ok(Outcome::Review),
        "block" => Ok(Outcome::Block),
        other => Err(PyValueError::new_err(format!(
            "on_failure must be allow, review or block, got {other:?}"
        ))),
    }
}

/// One step of a program as `pyorder.risk.rules.program` writes it: (name, argument).
fn op((name, arg): (String, f64)) -> PyResult<Op> {
    let column = || {
        if arg >= 0.0 && arg < FEATURE_NAMES.len() as f64 && arg.fract() == 0.0 {
            Ok(arg as u16)
        } else {
            Err(PyValueError::new_err(format!("{name}: no column {arg}")))
        }
    };
    let count = || {
        if (1.0..=f64::from(u16::MAX)).contains(&arg) && arg.fract() == 0.0 {
            Ok(arg as u16)
        } else {
            Err(PyValueError::new_err(format!("{name}: bad count {arg}")))
        }
    };
    Ok(match name.as_str() {
        "feature" => Op::Feature(column()?),
        "missing" => Op::Missing(column()?),
        "score" => Op::Score,
        "number" => Op::Number(arg),
        "neg" => Op::Neg,
        "add" => Op::Add,
        "sub" => Op::Sub,
        "mul" => Op::Mul,
        "div" => Op::Div,
        "lt" => Op::Lt,
        "le" => Op::Le,
        "gt" => Op::Gt,
        "ge" => Op::Ge,
        "eq" => Op::Eq,
        "ne" => Op::Ne,
        "and" => Op::And(count()?),
        "or" => Op::Or(count()?),
        "not" => Op::Not,
        other => return Err(PyValueError::new_err(format!("unknown step {other:?}"))),
    })
}

/// A list kind's index in `LIST_KINDS`.
fn list_kind(kind: &str) -> PyResult<usize> {
    LIST_KINDS
        .iter()
        .position(|k| *k == kind)
        .ok_or_else(|| PyValueError::new_err(format!("no list kind {kind:?}")))
}

/// Lists by kind name into `LIST_KINDS` order.
fn lists(by_kind: HashMap<String, Vec<String>>) -> PyResult<[Vec<String>; 7]> {
    let mut out: [Vec<String>; 7] = Default::default();
    for (kind, values) in by_kind {
        out[list_kind(&kind)?] = values;
    }
    Ok(out)
}

/// A rule as (id, action, merchant or None, program).
type RuleTuple = (String, String, Option<String>, Vec<(String, f64)>);

#[pymethods]
impl RiskEngine {
    /// An engine scoring with `model` (None: rules and lists only). `failed`: a model was
    /// configured and could not be loaded, so orders the policy would allow by default get
    /// `on_failure` (allow: fail open; review or block: fail closed). `max_keys`: the most
    /// keys the tracker keeps per kind (`RISK_KINDS`). `sample_allowed`: the share (0 to 1) of
    /// the allowed orders whose features are kept in a decision row (`sample_allowed`).
    #[new]
    #[pyo3(signature = (
        model=None, *, failed=false, on_failure="allow", max_keys=1_000_000, sample_allowed=0.0
    ))]
    fn new(
        model: Option<&RiskModel>,
        failed: bool,
        on_failure: &str,
        max_keys: usize,
        sample_allowed: f64,
    ) -> PyResult<Self> {
        if !(0.0..=1.0).contains(&sample_allowed) {
            return Err(PyValueError::new_err(format!(
                "sample_allowed is a share from 0 to 1, not {sample_allowed}"
            )));
        }
        let model = model.map(|m| m.inner.clone());
        if let Some(m) = &model {
            if m.feature_names() != FEATURE_NAMES {
                return Err(PyValueError::new_err(
                    "the model was not trained on the core's features (RISK_FEATURE_NAMES, \
                     in that order)",
                ));
            }
        }
        let engine = risk::RiskEngine::new(
            model,
            Limits([max_keys.max(1); KINDS.len()]),
            failed,
            outcome(on_failure)?,
        );
        engine.set_sample((sample_allowed * f64::from(risk::SAMPLE_SCALE)).round() as u32);
        Ok(Self {
            inner: Arc::new(engine),
        })
    }

    /// The share of the allowed orders whose features are kept: their decision is a
    /// `risk_decisions` row with the features instead of the order's `risk_packed` column, so that a
    /// fraud report (or none, once the order is old enough) labels it for training. Which
    /// orders: a hash of the id below the rate (the same on every node).
    #[getter]
    fn sample_allowed(&self) -> f64 {
        f64::from(self.inner.sample()) / f64::from(risk::SAMPLE_SCALE)
    }

    /// Whether order `order_id`, if allowed, keeps its features.
    fn samples(&self, order_id: i64) -> bool {
        self.inner.samples(order_id)
    }

    /// The model's version (the hash of its text), or None without a model.
    #[getter]
    fn model_version(&self) -> Option<String> {
        self.inner.model_version().map(|v| v.as_str().to_owned())
    }

    /// Decisions since start: (allowed, reviewed, blocked, decided while the model failed).
    #[getter]
    fn counts(&self) -> (u64, u64, u64, u64) {
        let [a, r, b, f] = self.inner.counts();
        (a, r, b, f)
    }

    #[getter]
    fn rule_count(&self) -> usize {
        self.inner.policy().rule_count()
    }

    /// Keys tracked per kind (`RISK_KINDS` order).
    fn tracked_keys(&self) -> Vec<usize> {
        self.inner
            .tracker()
            .lock()
            .stats()
            .iter()
            .map(|s| s.keys)
            .collect()
    }

    /// The policy's decision for one feature row (`RISK_FEATURE_NAMES` order, NaN missing)
    /// and score (None: not scored), the list values by kind and the order's merchants, as
    /// (outcome, three_ds, fired, decided_by): what an order with these features would get
    /// (`tests/risk/test_decide_core.py` holds it equal to `Policy.decide`).
    #[pyo3(signature = (row, score, keys=HashMap::new(), merchants=Vec::new()))]
    fn decide(
        &self,
        row: Vec<f64>,
        score: Option<u8>,
        keys: HashMap<String, String>,
        merchants: Vec<String>,
    ) -> PyResult<(&'static str, bool, Vec<String>, String)> {
        let row: risk::Features = row.try_into().map_err(|r: Vec<f64>| {
            PyValueError::new_err(format!(
                "a row has {} features, not {}",
                FEATURE_NAMES.len(),
                r.len()
            ))
        })?;
        let mut list_keys: risk::ListKeys = [None; 7];
        for (kind, value) in keys {
            list_keys[list_kind(&kind)?] = Some(risk::key_hash(&value));
        }
        let merchants: Vec<&str> = merchants.iter().map(String::as_str).collect();
        let d = self
            .inner
            .policy()
            .decide(&row, score, &list_keys, &merchants);
        Ok((
            d.outcome.as_str(),
            d.three_ds,
            d.fired.iter().map(|f| f.to_string()).collect(),
            d.decided_by.text(),
        ))
    }

    /// Risk control's view of a payment about to start (`crate::risk::RiskEngine::
    /// assess_payment`): the buyer `buyer_number` paying `amount` minor units from `ip` at
    /// `at_ms`, its features not counted, decided by the platform's rules and lists (`keys`:
    /// list values by kind). Returns (score or None, outcome, three_ds, fired, decided_by,
    /// reasons as JSON).
    #[pyo3(signature = (at_ms, buyer_number, amount, *, ip=None, keys=HashMap::new()))]
    fn assess_payment(
        &self,
        at_ms: i64,
        buyer_number: u64,
        amount: i64,
        ip: Option<&str>,
        keys: HashMap<String, String>,
    ) -> PyResult<PaymentAssessment> {
        let mut list_keys: risk::ListKeys = [None; 7];
        for (kind, value) in keys {
            list_keys[list_kind(&kind)?] = Some(risk::key_hash(&value));
        }
        let event = risk::OrderEvent {
            at_ms,
            buyer: buyer_number,
            amount,
            ip: ip.map(risk::key_hash),
            ..risk::OrderEvent::default()
        };
        let a = self.inner.assess_payment(&event, &list_keys);
        let d = a.decision;
        Ok((
            a.score,
            d.outcome.as_str(),
            d.three_ds,
            d.fired.iter().map(|f| f.to_string()).collect(),
            d.decided_by.text(),
            risk::reasons_json(&a.reasons),
        ))
    }

    /// Count one authorisation of a payment (the provider's answer): its instrument's attempts
    /// and buyers, the buyer's instruments and, when declined, the declines of the instrument,
    /// the buyer, the device and the IP, which later orders' features read (card testing).
    /// `instrument`: the provider's fingerprint of the card or account.
    #[pyo3(signature = (at_ms, buyer_number, amount, instrument, authorised, *, device=None, ip=None))]
    #[allow(clippy::too_many_arguments)]
    fn observe_payment(
        &self,
        at_ms: i64,
        buyer_number: u64,
        amount: i64,
        instrument: &str,
        authorised: bool,
        device: Option<&str>,
        ip: Option<&str>,
    ) {
        let payment = risk::PaymentEvent {
            at_ms,
            buyer: buyer_number,
            amount,
            instrument: risk::key_hash(instrument),
            authorised,
            device: device.map(risk::key_hash),
            ip: ip.map(risk::key_hash),
        };
        self.inner.tracker().lock().observe_payment(&payment);
    }

    /// Replace the policy: thresholds, rules as (id, action, merchant key or None, program)
    /// and allow/block lists by kind (`RISK_LIST_KINDS`). All checked before anything changes.
    fn set_policy(
        &self,
        block: u8,
        review: u8,
        rules: Vec<RuleTuple>,
        allow: HashMap<String, Vec<String>>,
        deny: HashMap<String, Vec<String>>,
    ) -> PyResult<()> {
        if !(review <= block && block <= 100) {
            return Err(PyValueError::new_err(format!(
                "thresholds need review ({review}) <= block ({block}) <= 100"
            )));
        }
        let rules = rules
            .into_iter()
            .map(|(id, action, merchant, program)| {
                let action = Action::parse(&action).ok_or_else(|| {
                    PyValueError::new_err(format!("rule {id:?}: no action {action:?}"))
                })?;
                let ops = program.into_iter().map(op).collect::<PyResult<Vec<_>>>()?;
                let condition = Program::new(ops)
                    .map_err(|e| PyValueError::new_err(format!("rule {id:?}: {e}")))?;
                Ok(Rule {
                    id: Arc::from(id),
                    action,
                    merchant: merchant.map(Arc::from),
                    condition,
                })
            })
            .collect::<PyResult<Vec<_>>>()?;
        self.inner.set_policy(Policy::new(
            block,
            review,
            rules,
            lists(allow)?,
            lists(deny)?,
        ));
        Ok(())
    }
}
