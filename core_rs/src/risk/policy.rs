//! Decisions inside the core: thresholds, allow/block lists and rules in Stripe Radar's order,
//! the same decision as `pyorder.risk.policy.Policy.decide` (`docs/risk.md`, "Rules and
//! decisions"; `tests/risk/test_decide_core.py` holds the two equal on random rows).
//!
//! Rules are compiled by `pyorder.risk.rules.program` into a postfix program of [`Op`]s over
//! the order's feature row and its score, so that a decision needs no Python: the batch path
//! decides every order in the pass that places it.

use std::borrow::Cow;
use std::sync::Arc;

use rustc_hash::FxHashMap;
use smallvec::SmallVec;

use super::events::key_hash;
use super::features::{Features, FEATURE_COUNT};

/// The kinds of values a list holds, in the order they are looked up.
pub const LIST_KINDS: [&str; 7] = [
    "buyer",
    "device",
    "ip",
    "address",
    "instrument",
    "email",
    "phone",
];

/// What a rule does when its condition holds (`pyorder.risk.rules.Action`), in Radar's order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Action {
    Request3ds,
    Allow,
    Block,
    Review,
}

impl Action {
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "request_3ds" => Self::Request3ds,
            "allow" => Self::Allow,
            "block" => Self::Block,
            "review" => Self::Review,
            _ => return None,
        })
    }
}

/// A decision's outcome, by severity (`pyorder.risk.policy.Outcome`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    Allow = 0,
    Review = 1,
    Block = 2,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Review => "review",
            Self::Block => "block",
        }
    }
}

/// One step of a condition's postfix program. Values are `f64`; a truth is 1.0 or 0.0.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Op {
    /// Push the feature of this column.
    Feature(u16),
    /// Push the score (NaN when the order was not scored).
    Score,
    Number(f64),
    /// Push whether the feature of this column is missing.
    Missing(u16),
    Neg,
    Add,
    Sub,
    Mul,
    /// Division; by zero gives NaN (a missing value), as in the Python compiler.
    Div,
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    /// Not equal, and false when either side is NaN (as every comparison with NaN).
    Ne,
    /// Pops this many truths, pushes whether all hold.
    And(u16),
    Or(u16),
    Not,
}

/// Why a program cannot run: it would read past its stack or a row.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid rule program: {0}")]
pub struct ProgramError(pub String);

/// A condition as a checked program: every step finds its operands, and it leaves one truth.
/// It runs as the expression tree the steps build, so that `and` and `or` stop at the first
/// operand that decides them (a rule `device_buyers_24h >= 5 and agent_class == 3` reads one
/// feature for most orders).
#[derive(Clone, Debug)]
pub struct Program {
    root: Expr,
    /// A comparison that must hold for the condition to hold: the condition itself, or the first
    /// operand of its top-level `and`. Kept inline, it rules out most orders for most rules
    /// without reading the expression tree (a load from elsewhere in memory per rule).
    guard: Option<(Op, usize, f64)>,
}

#[derive(Clone, Debug)]
enum Expr {
    Feature(usize),
    Score,
    Number(f64),
    Missing(usize),
    /// A comparison of a feature with a number (`device_buyers_24h >= 5`), the commonest
    /// condition: one step, where `Binary` would take three.
    Compare(Op, usize, f64),
    Neg(Box<Expr>),
    Not(Box<Expr>),
    /// An arithmetic or comparison step (`Op::Add` ... `Op::Ne`) and its operands.
    Binary(Op, Box<[Expr; 2]>),
    All(Box<[Expr]>),
    Any(Box<[Expr]>),
}

impl Program {
    pub fn new(ops: Vec<Op>) -> Result<Self, ProgramError> {
        let mut stack: Vec<Expr> = Vec::new();
        for (i, op) in ops.iter().enumerate() {
            let lacks = || ProgramError(format!("step {i} ({op:?}) lacks operands"));
            let e = match *op {
                Op::Feature(c) | Op::Missing(c) => {
                    if usize::from(c) >= FEATURE_COUNT {
                        return Err(ProgramError(format!("step {i} reads column {c}")));
                    }
                    if matches!(op, Op::Feature(_)) {
                        Expr::Feature(usize::from(c))
                    } else {
                        Expr::Missing(usize::from(c))
                    }
                }
                Op::Score => Expr::Score,
                Op::Number(x) => Expr::Number(x),
                Op::Neg => Expr::Neg(Box::new(stack.pop().ok_or_else(lacks)?)),
                Op::Not => Expr::Not(Box::new(stack.pop().ok_or_else(lacks)?)),
                Op::And(n) | Op::Or(n) => {
                    let n = usize::from(n);
                    if n == 0 {
                        return Err(ProgramError(format!("step {i} joins nothing")));
                    }
                    let at = stack.len().checked_sub(n).ok_or_else(lacks)?;
                    let parts: Box<[Expr]> = stack.drain(at..).collect();
                    if matches!(op, Op::And(_)) {
                        Expr::All(parts)
                    } else {
                        Expr::Any(parts)
                    }
                }
                binary => {
                    let b = stack.pop().ok_or_else(lacks)?;
                    let a = stack.pop().ok_or_else(lacks)?;
                    match (a, b) {
                        (Expr::Feature(c), Expr::Number(x)) if is_comparison(binary) => {
                            Expr::Compare(binary, c, x)
                        }
                        (a, b) => Expr::Binary(binary, Box::new([a, b])),
                    }
                }
            };
            stack.push(e);
        }
        match (stack.pop(), stack.is_empty()) {
            (Some(root), true) => {
                let guard = match &root {
                    Expr::Compare(op, c, x) => Some((*op, *c, *x)),
                    Expr::All(parts) => match parts.first() {
                        Some(Expr::Compare(op, c, x)) => Some((*op, *c, *x)),
                        _ => None,
                    },
                    _ => None,
                };
                Ok(Self { root, guard })
            }
            (None, _) => Err(ProgramError("it leaves 0 values, not 1".into())),
            (Some(_), false) => Err(ProgramError(format!(
                "it leaves {} values, not 1",
                stack.len() + 1
            ))),
        }
    }

    /// Whether the condition holds for `row` scored `score` (NaN: not scored).
    pub fn holds(&self, row: &Features, score: f64) -> bool {
        if let Some((op, c, x)) = self.guard {
            if !compare(op, row[c], x) {
                return false;
            }
        }
        test(&self.root, row, score)
    }
}

fn test(e: &Expr, row: &Features, score: f64) -> bool {
    match e {
        Expr::All(parts) => parts.iter().all(|p| test_inline(p, row, score)),
        Expr::Any(parts) => parts.iter().any(|p| test_inline(p, row, score)),
        Expr::Not(inner) => !test(inner, row, score),
        Expr::Missing(c) => row[*c].is_nan(),
        Expr::Compare(op, c, x) => compare(*op, row[*c], *x),
        Expr::Binary(op, ab) if is_comparison(*op) => {
            compare(*op, value(&ab[0], row, score), value(&ab[1], row, score))
        }
        other => value(other, row, score) != 0.0,
    }
}

/// `test`, with the commonest part of an `and` or `or` (a comparison) decided in place.
#[inline(always)]
fn test_inline(e: &Expr, row: &Features, score: f64) -> bool {
    match e {
        Expr::Compare(op, c, x) => compare(*op, row[*c], *x),
        other => test(other, row, score),
    }
}

/// `a op b` for a comparison step: false when either side is NaN, `!=` included.
#[inline]
fn compare(op: Op, a: f64, b: f64) -> bool {
    match op {
        Op::Lt => a < b,
        Op::Le => a <= b,
        Op::Gt => a > b,
        Op::Ge => a >= b,
        Op::Eq => a == b,
        _ => a != b && !a.is_nan() && !b.is_nan(),
    }
}

fn is_comparison(op: Op) -> bool {
    matches!(op, Op::Lt | Op::Le | Op::Gt | Op::Ge | Op::Eq | Op::Ne)
}

fn value(e: &Expr, row: &Features, score: f64) -> f64 {
    match e {
        Expr::Feature(c) => row[*c],
        Expr::Score => score,
        Expr::Number(x) => *x,
        Expr::Neg(inner) => -value(inner, row, score),
        Expr::Binary(op, ab) if !is_comparison(*op) => {
            let (a, b) = (value(&ab[0], row, score), value(&ab[1], row, score));
            match op {
                Op::Add => a + b,
                Op::Sub => a - b,
                Op::Mul => a * b,
                _ => {
                    if b == 0.0 {
                        f64::NAN // division by zero: a missing value, as in the Python compiler
                    } else {
                        a / b
                    }
                }
            }
        }
        truth => {
            if test(truth, row, score) {
                1.0
            } else {
                0.0
            }
        }
    }
}

/// A rule: its id, action, owner (None: the platform's; else a merchant key) and condition.
#[derive(Clone, Debug)]
pub struct Rule {
    pub id: Arc<str>,
    pub action: Action,
    pub merchant: Option<Arc<str>>,
    pub condition: Program,
}

/// The values of an order the lists are checked against, as keys ([`key_hash`]), in
/// [`LIST_KINDS`] order (None: not given).
pub type ListKeys = [Option<u64>; 7];

/// What decided an outcome.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DecidedBy {
    /// Nothing fired: allowed.
    Default,
    /// A threshold of the score.
    Score,
    Rule(Arc<str>),
    /// An allow (true) or block list of the kind at this index of [`LIST_KINDS`].
    List {
        allow: bool,
        kind: usize,
    },
    /// Scoring failed and the configured failure outcome decided.
    Failure,
}

impl DecidedBy {
    /// As `Decision.decided_by` writes it.
    pub fn text(&self) -> String {
        self.as_text().into_owned()
    }

    /// As `text`, borrowed where it can be (all but the lists).
    pub fn as_text(&self) -> Cow<'_, str> {
        match self {
            Self::Default => Cow::Borrowed("default"),
            Self::Score => Cow::Borrowed("score"),
            Self::Failure => Cow::Borrowed("scoring_failed"),
            Self::Rule(id) => Cow::Borrowed(id),
            Self::List { allow, kind } => Cow::Owned(format!(
                "list:{}:{}",
                if *allow { "allow" } else { "block" },
                LIST_KINDS[*kind]
            )),
        }
    }
}

/// A decision (`pyorder.risk.policy.Decision`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub outcome: Outcome,
    pub three_ds: bool,
    /// The request-3-D-Secure rules that fired, then the rule that decided, if one did.
    pub fired: SmallVec<[Arc<str>; 2]>,
    pub decided_by: DecidedBy,
}

/// Thresholds, lists and rules: immutable; a change makes a new one.
#[derive(Clone, Debug)]
pub struct Policy {
    pub block: u8,
    pub review: u8,
    /// Sorted by action (Radar's order), stable: their given order within an action.
    rules: Vec<Rule>,
    /// Where each action's rules start in `rules` (and where they end: `rules.len()`).
    starts: [usize; 5],
    /// Per kind, the listed values: whether each is on the allow list, the block list or
    /// both (one lookup per value of an order for both lists).
    lists: [FxHashMap<u64, Listed>; 7],
}

/// Which lists a value is on.
#[derive(Clone, Copy, Debug, Default)]
struct Listed {
    allow: bool,
    block: bool,
}

impl Default for Policy {
    /// Radar's default thresholds (block at 75, review at 65), no rules, no lists.
    fn default() -> Self {
        Self::new(75, 65, Vec::new(), Default::default(), Default::default())
    }
}

impl Policy {
    /// A policy of `rules` (any order) and lists of values (strings, hashed here) per kind.
    pub fn new(
        block: u8,
        review: u8,
        mut rules: Vec<Rule>,
        allow: [Vec<String>; 7],
        deny: [Vec<String>; 7],
    ) -> Self {
        rules.sort_by_key(|r| r.action);
        let mut lists: [FxHashMap<u64, Listed>; 7] = Default::default();
        for (k, values) in allow.iter().enumerate() {
            for v in values {
                lists[k].entry(key_hash(v)).or_default().allow = true;
            }
        }
        for (k, values) in deny.iter().enumerate() {
            for v in values {
                lists[k].entry(key_hash(v)).or_default().block = true;
            }
        }
        let start = |a: Action| {
            rules
                .iter()
                .position(|r| r.action >= a)
                .unwrap_or(rules.len())
        };
        let starts = [
            0,
            start(Action::Allow),
            start(Action::Block),
            start(Action::Review),
            rules.len(),
        ];
        Self {
            block,
            review,
            starts,
            rules,
            lists,
        }
    }

    /// The first kind (in [`LIST_KINDS`] order) whose value is on the allow list, and the
    /// first on the block list.
    fn listed(&self, keys: &ListKeys) -> (Option<usize>, Option<usize>) {
        let (mut allowed, mut blocked) = (None, None);
        for (k, key) in keys.iter().enumerate() {
            let Some(on) = key.and_then(|key| self.lists[k].get(&key)) else {
                continue;
            };
            if on.allow && allowed.is_none() {
                allowed = Some(k);
            }
            if on.block && blocked.is_none() {
                blocked = Some(k);
            }
        }
        (allowed, blocked)
    }

    pub fn rule_count(&self) -> usize {
        self.rules.len()
    }

    /// The decision for one order: its features, its score (None: not scored, so no
    /// threshold applies and `score` reads NaN in conditions), the values the lists check,
    /// and the merchants of its lines (whose own rules apply).
    pub fn decide(
        &self,
        row: &Features,
        score: Option<u8>,
        keys: &ListKeys,
        merchants: &[&str],
    ) -> Decision {
        let s = score.map_or(f64::NAN, f64::from);
        let mine = |r: &&Rule| r.merchant.as_deref().is_none_or(|m| merchants.contains(&m));
        let of = |action: Action| {
            let a = action as usize;
            self.rules[self.starts[a]..self.starts[a + 1]]
                .iter()
                .filter(mine)
        };
        let first = |action: Action| {
            of(action)
                .find(|r| r.condition.holds(row, s))
                .map(|r| Arc::clone(&r.id))
        };
        let mut fired: SmallVec<[Arc<str>; 2]> = of(Action::Request3ds)
            .filter(|r| r.condition.holds(row, s))
            .map(|r| Arc::clone(&r.id))
            .collect();
        let three_ds = !fired.is_empty();
        let (allowed, blocked) = self.listed(keys);
        let (outcome, by) = if let Some(kind) = allowed {
            (Outcome::Allow, DecidedBy::List { allow: true, kind })
        } else if let Some(rule) = first(Action::Allow) {
            (Outcome::Allow, DecidedBy::Rule(rule))
        } else if let Some(kind) = blocked {
            (Outcome::Block, DecidedBy::List { allow: false, kind })
        } else if let Some(rule) = first(Action::Block) {
            (Outcome::Block, DecidedBy::Rule(rule))
        } else if score.is_some_and(|s| s >= self.block) {
            (Outcome::Block, DecidedBy::Score)
        } else if let Some(rule) = first(Action::Review) {
            (Outcome::Review, DecidedBy::Rule(rule))
        } else if score.is_some_and(|s| s >= self.review) {
            (Outcome::Review, DecidedBy::Score)
        } else {
            (Outcome::Allow, DecidedBy::Default)
        };
        if let DecidedBy::Rule(id) = &by {
            fired.push(Arc::clone(id));
        } else if let DecidedBy::List { .. } = by {
            fired.push(Arc::from(by.text()));
        }
        Decision {
            outcome,
            three_ds,
            fired,
            decided_by: by,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row() -> Features {
        let mut r = [f64::NAN; FEATURE_COUNT];
        r[0] = 3.0;
        r[1] = 0.0;
        r
    }

    fn rule(id: &str, action: Action, ops: Vec<Op>) -> Rule {
        Rule {
            id: Arc::from(id),
            action,
            merchant: None,
            condition: Program::new(ops).unwrap(),
        }
    }

    #[test]
    fn programs_are_checked_and_nan_is_never_equal_or_unequal() {
        assert!(Program::new(vec![Op::Add]).is_err());
        assert!(Program::new(vec![Op::Number(1.0), Op::Number(2.0)]).is_err());
        assert!(Program::new(vec![Op::Feature(40)]).is_err());
        let r = row();
        let holds = |ops: Vec<Op>| Program::new(ops).unwrap().holds(&r, 50.0);
        // column 2 is missing: both == and != are false, missing() is true.
        assert!(!holds(vec![Op::Feature(2), Op::Number(1.0), Op::Eq]));
        assert!(!holds(vec![Op::Feature(2), Op::Number(1.0), Op::Ne]));
        assert!(holds(vec![Op::Missing(2)]));
        // 3 / 0 is missing, so not > 1; 3 / 1 > 1.
        assert!(!holds(vec![
            Op::Feature(0),
            Op::Feature(1),
            Op::Div,
            Op::Number(1.0),
            Op::Gt
        ]));
        assert!(holds(vec![
            Op::Feature(0),
            Op::Number(1.0),
            Op::Div,
            Op::Number(1.0),
            Op::Gt,
            Op::Score,
            Op::Number(50.0),
            Op::Ge,
            Op::And(2),
        ]));
        assert!(holds(vec![Op::Missing(0), Op::Not]));
    }

    #[test]
    fn radar_order_and_merchant_rules() {
        let yes = || vec![Op::Number(1.0)];
        let mut allow = <[Vec<String>; 7]>::default();
        allow[2] = vec!["10.0.0.1".into()];
        let mut deny = <[Vec<String>; 7]>::default();
        deny[1] = vec!["bad-device".into()];
        let mut own = rule("mine", Action::Review, yes());
        own.merchant = Some(Arc::from("merchant:a"));
        let p = Policy::new(
            75,
            65,
            vec![own, rule("3ds", Action::Request3ds, yes())],
            allow,
            deny,
        );
        let keys = |device: &str, ip: &str| {
            let mut k: ListKeys = [None; 7];
            k[1] = Some(key_hash(device));
            k[2] = Some(key_hash(ip));
            k
        };
        let r = row();
        // The block list wins over a score below the threshold; the 3-D Secure rule is noted.
        let d = p.decide(&r, Some(10), &keys("bad-device", "x"), &[]);
        assert_eq!(
            (d.outcome, d.decided_by.text()),
            (Outcome::Block, "list:block:device".into())
        );
        assert!(d.three_ds);
        assert_eq!(
            d.fired.iter().map(|f| &**f).collect::<Vec<_>>(),
            ["3ds", "list:block:device"]
        );
        // The allow list wins over everything.
        let d = p.decide(&r, Some(99), &keys("bad-device", "10.0.0.1"), &[]);
        assert_eq!(d.decided_by.text(), "list:allow:ip");
        // Thresholds; the merchant's own rule only on its orders.
        assert_eq!(
            p.decide(&r, Some(80), &keys("d", "i"), &[]).outcome,
            Outcome::Block
        );
        assert_eq!(
            p.decide(&r, Some(70), &keys("d", "i"), &[]).decided_by,
            DecidedBy::Score
        );
        assert_eq!(
            p.decide(&r, Some(10), &keys("d", "i"), &[]).outcome,
            Outcome::Allow
        );
        let d = p.decide(&r, Some(10), &keys("d", "i"), &["merchant:a"]);
        assert_eq!(
            (d.outcome, d.decided_by.text()),
            (Outcome::Review, "mine".into())
        );
        // Not scored: no threshold applies.
        assert_eq!(
            p.decide(&r, None, &keys("d", "i"), &[]).outcome,
            Outcome::Allow
        );
    }
}
