"""The honest evaluation of risk scoring at order intake (``docs/risk.md``, "Evaluation").

One command, any seed and prevalence::

    python -m pyorder.risk.evaluate --seed 0 --prevalence 0.005 [--days 14 --train-days 10]

1. Generate a data set (``pyorder.risk.sim``) and compute every order's features the way the
   server does (``pyorder.risk.features.replay``: the Rust core, in time order).
2. **Train on earlier days, test on later ones.** The model is trained at the end of day
   ``--train-days`` on the orders before it, with the labels known by then: a fraud whose
   chargeback has not arrived yet counts as honest, as it would in production, except in the
   last ``MATURE_DAYS`` before the split, where only known fraud trains (the rest is not yet
   known to be honest). It is tested on the orders after it, against the truth (every
   fraud, labelled in time or not).
3. Report, for the model and for the **rules-only baseline** (``baseline.toml``: one review
   rule per known pattern, orders ranked by how many fire), on the test days:
   - average precision, next to the prevalence (what a random ranking scores);
   - precision and recall at a review budget of 0.5 % of orders (the top-ranked ones);
   - recall per scenario at that budget;
   - at the block threshold (model score >= 75): the share of honest orders blocked, and the
     fraud caught.

Accuracy is not reported: at a fraud rate of a few per thousand, flagging nothing scores
99.5 %.
"""

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from importlib import resources

import numpy as np
import numpy.typing as npt

from pyorder._core import RiskModel
from pyorder.risk.events import PaymentAttempt
from pyorder.risk.features import FEATURE_NAMES, replay
from pyorder.risk.policy import Policy, load_policy
from pyorder.risk.sim import SimConfig, Simulation, simulate
from pyorder.risk.train import train

DAY_MS = 86_400_000
REVIEW_BUDGET = 0.005
"""The share of orders a review team can look at: the top-ranked ones."""
BLOCK_SCORE = 75
MATURE_DAYS = 4
"""An order younger than this at training time is not yet known to be honest (its chargeback
may still come): it trains only as a known fraud."""


@dataclass(frozen=True, slots=True)
class Ranking:
    """One ranker's figures on the test days."""

    average_precision: float
    precision_at_budget: float
    recall_at_budget: float
    recall_by_scenario: dict[str, float]
    honest_blocked: float | None = None
    """The share of honest orders at or over the block threshold (the model only)."""
    fraud_blocked: float | None = None


@dataclass(frozen=True, slots=True)
class Report:
    seed: int
    prevalence: float
    days: int
    train_days: int
    train_orders: int
    train_fraud_known: int
    """Fraud labels that had arrived by the end of training (the model's positives)."""
    test_orders: int
    test_fraud: int
    test_prevalence: float
    model_version: str
    model: Ranking
    rules: Ranking

    @property
    def ratio(self) -> float:
        """The model's average precision over the rules-only baseline's."""
        return self.model.average_precision / max(self.rules.average_precision, 1e-12)


def average_precision(truth: npt.NDArray[np.bool_], scores: npt.NDArray[np.float64]) -> float:
    """Average precision: the mean, over the positives, of the precision at the rank where each
    is found; tied scores form one step (so a ranker with ties gets no credit for the order
    within a tie). 0 when there is no positive."""
    positives = int(truth.sum())
    if not positives:
        return 0.0
    order = np.argsort(-scores, kind="stable")
    ranked_scores, ranked_truth = scores[order], truth[order]
    # The last index of each run of equal scores: precision and recall are taken there.
    ends = np.flatnonzero(np.r_[ranked_scores[1:] != ranked_scores[:-1], True])
    hits = np.cumsum(ranked_truth)[ends]
    seen = ends + 1
    recall_steps = np.diff(np.r_[0, hits]) / positives
    return float(np.sum(recall_steps * hits / seen))


def at_budget(
    truth: npt.NDArray[np.bool_],
    scores: npt.NDArray[np.float64],
    scenario: Sequence[str],
    budget: float = REVIEW_BUDGET,
) -> tuple[float, float, dict[str, float]]:
    """Precision, recall and recall per fraud scenario when the top ``budget`` share of orders
    is reviewed (ties broken by order: earlier first)."""
    count = max(1, round(len(scores) * budget))
    top = np.zeros(len(scores), dtype=bool)
    top[np.argsort(-scores, kind="stable")[:count]] = True
    caught = truth & top
    by: dict[str, list[int]] = {}
    for i in map(int, np.flatnonzero(truth)):
        tally = by.setdefault(scenario[i], [0, 0])
        tally[0] += int(caught[i])
        tally[1] += 1
    positives = int(truth.sum())
    return (
        float(caught.sum() / count),
        float(caught.sum() / positives) if positives else 0.0,
        {name: round(c / n, 4) for name, (c, n) in sorted(by.items())},
    )


def rule_points(policy: Policy, features: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """How many of ``policy``'s rules fire for each row (the baseline's ranking)."""
    points = np.zeros(len(features), dtype=np.float64)
    no_scores = np.zeros(len(features), dtype=np.float64)
    for compiled in policy.compiled_rules():
        points += compiled.condition.mask(features, no_scores)
    return points


def baseline_policy() -> Policy:
    text = resources.files("pyorder.risk").joinpath("baseline.toml").read_text("utf-8")
    return load_policy(text, FEATURE_NAMES)


def order_features(sim: Simulation) -> npt.NDArray[np.float64]:
    """Every order's features, computed by the core over the whole stream in time order."""
    payments = [e for e in sim.events if isinstance(e, PaymentAttempt)]
    return replay(sim.orders, payments)


def evaluate(config: SimConfig, train_days: int, seed: int = 0) -> Report:
    if not 1 <= train_days < config.days:
        raise ValueError(f"train_days must be within 1..{config.days - 1}")
    sim = simulate(config)
    features = order_features(sim)
    at = np.array([o.at_ms for o in sim.orders], dtype=np.int64)
    fraud = np.array(sim.labels.fraud, dtype=bool)
    known_at = np.array([-1 if t is None else t for t in sim.labels.label_at_ms], dtype=np.int64)
    split = config.start_ms + train_days * DAY_MS
    train_rows = at < split
    test_rows = ~train_rows
    known = fraud & (known_at >= 0) & (known_at <= split)  # what the learner knew at the split
    # Orders of the last MATURE_DAYS before the split train only if known fraud: the others'
    # chargebacks may still come, so they are not yet known to be honest.
    learn = train_rows & ((at < split - MATURE_DAYS * DAY_MS) | known)
    trained = train(
        features[learn],
        known[learn].astype(np.float64),
        feature_names=FEATURE_NAMES,
        seed=seed,
    )
    model = RiskModel.from_text(trained.text)
    test_features, truth = features[test_rows], fraud[test_rows]
    scenario = [s for s, t in zip(sim.labels.scenario, test_rows, strict=True) if t]
    probabilities = model.predict_proba(test_features)
    scores = model.scores(test_features).astype(np.float64)
    precision, recall, by = at_budget(truth, probabilities, scenario)
    blocked = scores >= BLOCK_SCORE
    honest = ~truth
    model_ranking = Ranking(
        average_precision=round(average_precision(truth, probabilities), 4),
        precision_at_budget=round(precision, 4),
        recall_at_budget=round(recall, 4),
        recall_by_scenario=by,
        honest_blocked=round(float((blocked & honest).sum() / max(1, honest.sum())), 6),
        fraud_blocked=round(float((blocked & truth).sum() / max(1, truth.sum())), 4),
    )
    points = rule_points(baseline_policy(), test_features)
    r_precision, r_recall, r_by = at_budget(truth, points, scenario)
    rules_ranking = Ranking(
        average_precision=round(average_precision(truth, points), 4),
        precision_at_budget=round(r_precision, 4),
        recall_at_budget=round(r_recall, 4),
        recall_by_scenario=r_by,
    )
    return Report(
        seed=config.seed,
        prevalence=config.prevalence,
        days=config.days,
        train_days=train_days,
        train_orders=int(train_rows.sum()),
        train_fraud_known=int(known[train_rows].sum()),
        test_orders=int(test_rows.sum()),
        test_fraud=int(truth.sum()),
        test_prevalence=round(float(truth.mean()), 5),
        model_version=model.version,
        model=model_ranking,
        rules=rules_ranking,
    )


def render(report: Report) -> str:
    """The report as a markdown table (what docs/risk.md quotes)."""
    m, r = report.model, report.rules
    lines = [
        f"seed {report.seed}, prevalence {report.prevalence}: trained on days 0-"
        f"{report.train_days - 1} ({report.train_orders:,} orders, {report.train_fraud_known}"
        f" fraud labels known by then), tested on days {report.train_days}-{report.days - 1}"
        f" ({report.test_orders:,} orders, {report.test_fraud} fraud, prevalence"
        f" {report.test_prevalence:.3%}); model {report.model_version}",
        "",
        "| | average precision | precision at 0.5 % reviewed | recall at 0.5 % reviewed |",
        "|---|---|---|---|",
        f"| random ranking | {report.test_prevalence:.4f} | {report.test_prevalence:.4f} | 0.005 |",
        f"| rules only | {r.average_precision:.4f} | {r.precision_at_budget:.4f}"
        f" | {r.recall_at_budget:.4f} |",
        f"| model | {m.average_precision:.4f} | {m.precision_at_budget:.4f}"
        f" | {m.recall_at_budget:.4f} |",
        "",
        f"Model over rules, average precision: {report.ratio:.2f}x. At the block threshold"
        f" (score >= {BLOCK_SCORE}): {m.honest_blocked:.4%} of honest orders blocked,"
        f" {m.fraud_blocked:.1%} of fraud.",
        "",
        "| recall at 0.5 % reviewed, by scenario | rules only | model |",
        "|---|---|---|",
    ]
    for name in sorted(set(m.recall_by_scenario) | set(r.recall_by_scenario)):
        lines.append(
            f"| {name} | {r.recall_by_scenario.get(name, 0.0):.3f}"
            f" | {m.recall_by_scenario.get(name, 0.0):.3f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--prevalence", type=float, default=0.005)
    parser.add_argument("--days", type=int, default=14)
    parser.add_argument("--train-days", type=int, default=10)
    parser.add_argument("--shoppers", type=int, default=SimConfig().shoppers)
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    config = SimConfig(
        seed=args.seed, prevalence=args.prevalence, days=args.days, shoppers=args.shoppers
    )
    report = evaluate(config, args.train_days, seed=args.seed)
    if args.json:
        sys.stdout.write(json.dumps(asdict(report), indent=1) + "\n")
    else:
        sys.stdout.write(render(report))


if __name__ == "__main__":
    main()
