"""Scoring time of the risk model in the Rust core, per row, for a model of the default size.

Trains the default model (``pyorder.risk.train``: 100 trees of at most 15 leaves, depth 5) on
a seeded synthetic matrix shaped like the feature catalogue (40 features: counts, amounts,
15 % missing, ``agent_class`` a category), then scores fresh rows three ways:

* ``core, batch``: ``RiskModel.predict_proba`` over the matrix, the GIL released, one Rust
  loop: the cost of scoring inside the core, which is what the order path pays per order;
* ``core, one call``: ``RiskModel.score(row)`` from Python per row, the Python call included;
* ``LightGBM``: ``Booster.predict`` on one thread, for reference.

Each is the best of ``--repeat`` runs (the machine is shared). It checks that the core's
probabilities equal LightGBM's. Times only; nothing is asserted about them.

    python benchmarks/risk_model.py
    python benchmarks/risk_model.py --trees 200 --leaves 31 --depth -1
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable

import lightgbm as lgb
import numpy as np
import numpy.typing as npt

from pyorder.risk import train as training
from pyorder.risk.model import RiskModel

FEATURES = 40


def synthetic(
    seed: int, rows: int
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], list[str]]:
    """Counts (Poisson), amounts (log-normal), a class, 15 % missing; labels from a logistic
    function of a few of them (prevalence about 1.5 %)."""
    rng = np.random.default_rng(seed)
    x = rng.poisson(rng.gamma(0.5, 2.0, FEATURES), size=(rows, FEATURES)).astype(np.float64)
    x[:, 20:30] = rng.lognormal(7.0, 1.5, size=(rows, 10))
    x[:, 39] = rng.integers(0, 4, rows)
    x[rng.random(x.shape) < 0.15] = np.nan
    v = np.nan_to_num(x)
    z = 0.4 * v[:, 0] + 0.3 * v[:, 17] - 0.5 * np.log1p(v[:, 26]) + 1.5 * (v[:, 39] == 3) - 3.5
    y = (rng.random(rows) < 1 / (1 + np.exp(-z))).astype(np.float64)
    names = [*(f"f{i}" for i in range(FEATURES - 1)), "agent_class"]
    return x, y, names


def best_seconds(run: Callable[[], object], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train-rows", type=int, default=100_000)
    parser.add_argument("--rows", type=int, default=100_000, help="rows scored")
    parser.add_argument("--trees", type=int, default=training.NUM_TREES)
    parser.add_argument("--leaves", type=int, default=int(training.PARAMS["num_leaves"]))
    parser.add_argument("--depth", type=int, default=int(training.PARAMS["max_depth"]))
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    x, y, names = synthetic(args.seed, args.train_rows)
    trained = training.train(
        x,
        y,
        feature_names=names,
        seed=args.seed,
        num_trees=args.trees,
        params={"num_leaves": args.leaves, "max_depth": args.depth},
    )
    core = RiskModel.from_text(trained.text)
    booster = lgb.Booster(model_str=trained.text)
    rows, _, _ = synthetic(args.seed + 1, args.rows)
    depth = f"depth <= {args.depth}" if args.depth > 0 else "depth unlimited"
    print(
        f"model: {core.num_trees} trees, <= {args.leaves} leaves, {depth}, "
        f"{core.num_features} features, prevalence {trained.manifest.prevalence:.2%}"
    )

    ours = core.predict_proba(rows)
    theirs = booster.predict(rows, num_threads=1)
    equal = bool(np.array_equal(ours, theirs))
    print(f"probabilities equal to LightGBM's on {args.rows:,} rows: {'yes' if equal else 'NO'}")

    batch = best_seconds(lambda: core.predict_proba(rows), args.repeat) / args.rows
    single_rows = list(rows[: min(args.rows, 20_000)])

    def one_call_each() -> None:
        for row in single_rows:
            core.score(row)

    single = best_seconds(one_call_each, args.repeat) / len(single_rows)
    reference = best_seconds(lambda: booster.predict(rows, num_threads=1), args.repeat) / args.rows
    print(f"core, batch:    {batch * 1e9:8.0f} ns per row")
    print(f"core, one call: {single * 1e9:8.0f} ns per row (Python call included)")
    print(f"LightGBM:       {reference * 1e9:8.0f} ns per row (one thread)")
    return 0 if equal else 1


if __name__ == "__main__":
    sys.exit(main())
