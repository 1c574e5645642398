"""The model the platform ships (``pyorder/risk/models/default/``), made by one command:

    python -m pyorder.risk.ship [--seed 0] [--out pyorder/risk/models/default] [--check 1 2 3]

It trains on the synthetic data of ``--seed`` (``pyorder.risk.sim``, 14 days), on what was
known at the end of the last day (orders of the last ``MATURE_DAYS`` only if known fraud, as
in the evaluation), with every feature the platform computes at intake. The buyer's account age
comes from the token's ``account_created`` claim when its issuer sends one (``pyorder.auth``),
so it is blanked (NaN) on ``AGE_MISSING_SHARE`` of the training rows, drawn at random: the
model learns where an order without it goes, and ranks one with it by it. The seconds since a
SKU's release are the catalogue's (``Sku.release_ms``, missing for a SKU without one, as for the
generator's ordinary items). The features of payment instruments are missing at intake already.

``--reviews DIR`` adds the verdicts of a deployment's reviewers, exported by ``python -m
pyorder.risk.labels``, to the training rows (a rejected order as fraud, an approved one as
honest): the feedback of the review queue into the next model version.

``--check SEED ...`` then scores the whole generated data of other seeds (never seen in
training) with the written model, with and without the account's age, and prints per seed the
average precision, the honest orders scored at or above the review and block thresholds, and
the fraud at or above the block threshold.
"""

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Final

import numpy as np

from pyorder._core import RiskModel
from pyorder.risk import labels
from pyorder.risk.evaluate import DAY_MS, MATURE_DAYS, average_precision, order_features
from pyorder.risk.features import FEATURE_NAMES
from pyorder.risk.intake import DEFAULT_MODEL
from pyorder.risk.policy import Thresholds
from pyorder.risk.sim import SimConfig, simulate
from pyorder.risk.train import train, write

OUT: Final = DEFAULT_MODEL.parent

DEFAULT_THRESHOLDS: Final = Thresholds()
REVIEW_SCORE, BLOCK_SCORE = DEFAULT_THRESHOLDS.review, DEFAULT_THRESHOLDS.block
AGE_MISSING_SHARE: Final = 0.5
"""The share of training rows without the account's age (see the module's docs)."""


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m pyorder.risk.ship", description=__doc__)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--check", type=int, nargs="*", default=[], metavar="SEED")
    parser.add_argument(
        "--reviews", type=Path, help="reviewed decisions (python -m pyorder.risk.labels --out)"
    )
    args = parser.parse_args(argv)
    config = SimConfig(seed=args.seed)
    sim = simulate(config)
    features = order_features(sim)
    without_age = np.random.default_rng(args.seed).random(len(features)) < AGE_MISSING_SHARE
    features[without_age, FEATURE_NAMES.index("account_age_s")] = np.nan
    at = np.array([o.at_ms for o in sim.orders], dtype=np.int64)
    fraud = np.array(sim.labels.fraud, dtype=bool)
    known_at = np.array([-1 if t is None else t for t in sim.labels.label_at_ms], dtype=np.int64)
    end = config.start_ms + config.days * DAY_MS
    known = fraud & (known_at >= 0) & (known_at <= end)
    learn = (at < end - MATURE_DAYS * DAY_MS) | known
    rows, y = features[learn], known[learn].astype(np.float64)
    if args.reviews is not None:
        reviewed, verdicts = labels.load(args.reviews)
        rows, y = np.vstack([rows, reviewed]), np.concatenate([y, verdicts])
        print(f"{args.reviews}: {len(verdicts)} reviewed orders, {int(verdicts.sum())} rejected")
    trained = train(rows, y, feature_names=FEATURE_NAMES, seed=args.seed)
    write(trained, args.out)
    print(
        f"{args.out}: version {trained.manifest.version}, {trained.manifest.training_rows} "
        f"rows, {trained.manifest.positives} positives"
    )
    model = RiskModel.from_text(trained.text)
    for seed in args.check:
        for line in check(model, seed):
            print(line)


def check(model: RiskModel, seed: int) -> list[str]:
    """``model`` on the generated data of ``seed``, with and without the account's age."""
    sim = simulate(SimConfig(seed=seed))
    features = order_features(sim)
    fraud = np.array(sim.labels.fraud, dtype=bool)
    honest = ~fraud
    no_age = features.copy()
    no_age[:, FEATURE_NAMES.index("account_age_s")] = np.nan
    lines = []
    for label, rows in (("with the account's age", features), ("without it", no_age)):
        scores = model.scores(rows)
        ap = average_precision(fraud, model.predict_proba(rows))
        lines.append(
            f"seed {seed}, {label}: average precision {ap:.3f}; honest orders scored"
            f" >= {REVIEW_SCORE}: {int((honest & (scores >= REVIEW_SCORE)).sum())},"
            f" >= {BLOCK_SCORE}: {int((honest & (scores >= BLOCK_SCORE)).sum())}"
            f" of {int(honest.sum())}; fraud >= {BLOCK_SCORE}:"
            f" {int((fraud & (scores >= BLOCK_SCORE)).sum())} of {int(fraud.sum())}"
        )
    return lines


if __name__ == "__main__":
    main()
