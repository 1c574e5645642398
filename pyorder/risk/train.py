"""Training the risk model offline: a gradient-boosted tree binary classifier (fraud = 1) on a
float64 feature matrix, written as a versioned model directory that the Rust core scores.

    python -m pyorder.risk.train --features F.npy --labels y.npy --out DIR [--seed N]

Why LightGBM (from PyPI, ``pip install pyorder[risk]``):

* its text model format (``Booster.model_to_string()``) is plain, documented lines of arrays,
  so the core reads and scores it with no LightGBM at run time (``core_rs/src/model/``);
* it handles missing values natively (NaN follows the side learnt for it at each split), and a
  feature of a missing client-context field is NaN (``docs/risk.md``);
* it trains fast on one core (histograms, leaf-wise growth), and is deterministic for a seed
  with ``deterministic=True`` and one thread.

The directory holds ``model.txt`` (the text model, as LightGBM writes it) and ``manifest.json``:
the version (the first 16 hex digits of the SHA-256 of ``model.txt``, the same the core
reports), the feature names in column order, the categorical features, the training rows, the
positives and the prevalence, the seed and parameters, the library's version and the training
time (UTC). The same data and seed give the same ``model.txt``, so the same version.
"""

import argparse
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import numpy.typing as npt

from pyorder.risk.model import MANIFEST_FILE, MODEL_FILE, RiskModel

CATEGORICAL_FEATURES = ("agent_class",)
"""Features that are classes rather than quantities (``docs/risk.md``), split as categories
when present among the feature names."""

NUM_TREES = 20
"""Boosting rounds. With the trees' size below (15 leaves, depth 5), the core's time to score a
row and attribute its score to the features grows with trees x depth (``docs/risk.md``,
"Model"), and issue 15's budget is 1 µs per order for all of risk control. With the monotone
counts below, 20 rounds at a step of 0.25 ranked as 25 at 0.2 on five seeds (average precision
0.755/0.743, 0.582/0.575, 0.583/0.581, 0.548/0.567, 0.768/0.752: mean 0.647/0.644; 15 at 0.3:
0.617), and 25 at 0.2 had ranked as 50 at 0.1 before the counts were constrained (mean
0.663/0.661; ``python -m pyorder.risk.evaluate``, 2026-12-03), at 40 % of the cost per order;
as 50 at 0.1 had ranked as 100 at 0.05."""

PARAMS: Mapping[str, Any] = {
    "objective": "binary",
    "boosting": "gbdt",
    # An L2 penalty on leaf values: with a few hundred positives, a step of 0.1 without it
    # overfit them, and the test-day average precision swung from 0.04 to 0.79 with small
    # changes of the other settings; with it, it holds at 0.60-0.77 on five seeds
    # (``pyorder.risk.evaluate``, docs/risk.md).
    "learning_rate": 0.25,
    "lambda_l2": 10.0,
    "num_leaves": 15,
    "max_depth": 5,
    "min_data_in_leaf": 50,
    # Each tree sees 80 % of the rows and 90 % of the features (drawn from the seed): less
    # overfitting to the few positives.
    "bagging_fraction": 0.8,
    "bagging_freq": 1,
    "feature_fraction": 0.9,
    "max_bin": 255,
    # Determinism: the same data and seed give the same text model.
    "deterministic": True,
    "num_threads": 1,
    "force_row_wise": True,
    "verbosity": -1,
}
"""LightGBM's parameters (the seed is added per run). No class reweighting: the probability
stays calibrated to the prevalence, so that score thresholds mean what they say."""


MONOTONE_INCREASING = (
    "device_orders_1m",
    "device_orders_1h",
    "device_orders_24h",
    "ip_orders_1m",
    "ip_orders_1h",
    "ip_orders_24h",
    "address_orders_1m",
    "address_orders_1h",
    "address_orders_24h",
    "device_buyers_24h",
    "ip_buyers_24h",
    "address_buyers_24h",
    "email_buyers_24h",
    "phone_buyers_24h",
    "instrument_buyers_24h",
    "instrument_declines_1h",
    "device_declines_1h",
    "ip_declines_1h",
    "buyer_declines_24h",
    "device_sku_orders_1h",
    "ip_sku_orders_1h",
)
"""Features whose risk only grows with them (more accounts on one device, more declines, more
orders of one SKU from one device): the trees may not lower a score as they grow. Without it,
the few positives at the top of a range leave the range beyond them to chance: the first
model let a scalper's 37th account on one address through with a lower score than its 5th
(``tests/server/test_risk_intake.py``). The IP and address order counts over 24 h were left free
at first (offices and households share them honestly), and the model learnt that many orders
from one IP or to one address in a day lower the risk: a farm of 20 accounts on one device, IP
and address, ordering within a minute, scored 93 at its 4th account and 56 from its 17th on
(allowed), 69 with the 50 trees before. Constrained too, the farm scores 95-97 from its 4th
account to its 20th (the shipped 20 trees); an office's many orders can no longer lower its
score (the address's count can still raise it, by up to 0.23 in log-odds). It cost average precision on the evaluation's seeds (0.763 -> 0.743, 0.601 -> 0.575,
0.609 -> 0.581, 0.582 -> 0.567 on seeds 0-3, 25 trees), whose honest offices and households the
free counts had told apart: a price worth paying for a model that a growing farm cannot talk
down."""


def generic_names(count: int) -> list[str]:
    """``f0``, ``f1``, ...: names for a matrix whose features are not named."""
    return [f"f{i}" for i in range(count)]


@dataclass(frozen=True, slots=True)
class Manifest:
    """What ``manifest.json`` says of a trained model."""

    version: str
    feature_names: list[str]
    categorical_features: list[str]
    training_rows: int
    positives: int
    prevalence: float
    """Positives / training rows."""
    seed: int
    num_trees: int
    params: dict[str, Any]
    library: str
    """``lightgbm X.Y.Z``."""
    trained_at: str
    """ISO 8601, UTC."""
    model_file: str = MODEL_FILE


@dataclass(frozen=True, slots=True)
class TrainedModel:
    text: str
    """LightGBM's text model (``model.txt``)."""
    manifest: Manifest


def train(
    features: npt.NDArray[np.float64],
    labels: npt.ArrayLike,
    *,
    feature_names: Sequence[str] | None = None,
    categorical: Sequence[str] = CATEGORICAL_FEATURES,
    seed: int = 0,
    num_trees: int = NUM_TREES,
    params: Mapping[str, Any] | None = None,
) -> TrainedModel:
    """Train a binary classifier on ``features`` (rows x features, float64, NaN = missing) and
    ``labels`` (0/1 per row).

    ``feature_names`` name the columns (default ``f0``, ``f1``, ...); the names of
    ``categorical`` that are among them are split as categories (non-negative integer values).
    ``params`` override :data:`PARAMS`.
    """
    matrix = np.asarray(features, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    if matrix.ndim != 2:
        raise ValueError(f"features must be a 2-D matrix, got {matrix.ndim} dimensions")
    rows, columns = matrix.shape
    if y.shape != (rows,):
        raise ValueError(f"labels must be one per row: {y.shape} for {rows} rows")
    if not np.isin(y, (0.0, 1.0)).all():
        raise ValueError("labels must be 0 or 1")
    names = list(feature_names) if feature_names is not None else generic_names(columns)
    if len(names) != columns:
        raise ValueError(f"{len(names)} feature names for {columns} columns")
    if any(not n or any(c.isspace() for c in n) for n in names):
        raise ValueError("feature names must be non-empty and without spaces")
    categories = [n for n in categorical if n in names]
    settings = {**PARAMS, **(params or {}), "seed": seed}
    if "monotone_constraints" not in settings and any(n in MONOTONE_INCREASING for n in names):
        settings["monotone_constraints"] = [int(n in MONOTONE_INCREASING) for n in names]
    dataset = lgb.Dataset(
        matrix,
        label=y,
        feature_name=names,
        categorical_feature=categories or "auto",
        free_raw_data=True,
    )
    booster = lgb.train(settings, dataset, num_boost_round=num_trees)
    text = booster.model_to_string()
    # Loading it into the core checks, before anything is written, that the core scores it;
    # the core's version is the hash of the text.
    version = RiskModel.from_text(text).version
    positives = int(y.sum())
    manifest = Manifest(
        version=version,
        feature_names=names,
        categorical_features=categories,
        training_rows=rows,
        positives=positives,
        prevalence=positives / rows if rows else 0.0,
        seed=seed,
        num_trees=booster.num_trees(),
        params=settings,
        library=f"lightgbm {lgb.__version__}",
        trained_at=datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
    )
    return TrainedModel(text=text, manifest=manifest)


def write(model: TrainedModel, directory: Path) -> None:
    """Write ``model.txt`` and ``manifest.json`` into ``directory`` (made if missing)."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / MODEL_FILE).write_bytes(model.text.encode())
    manifest = json.dumps(asdict(model.manifest), indent=2, sort_keys=True) + "\n"
    (directory / MANIFEST_FILE).write_text(manifest, encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m pyorder.risk.train",
        description="Train the risk model (LightGBM) and write model.txt and manifest.json.",
    )
    parser.add_argument("--features", type=Path, required=True, help="float64 matrix (.npy)")
    parser.add_argument("--labels", type=Path, required=True, help="0/1 per row (.npy)")
    parser.add_argument("--out", type=Path, required=True, help="the model directory")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--trees", type=int, default=NUM_TREES)
    parser.add_argument("--names", help="the feature names, comma-separated (default f0, f1, ...)")
    args = parser.parse_args(argv)
    trained = train(
        np.load(args.features),
        np.load(args.labels),
        feature_names=args.names.split(",") if args.names else None,
        seed=args.seed,
        num_trees=args.trees,
    )
    write(trained, args.out)
    m = trained.manifest
    print(
        f"model {m.version}: {m.num_trees} trees over {len(m.feature_names)} features, "
        f"{m.training_rows:,} rows, prevalence {m.prevalence:.4%} -> {args.out}"
    )


if __name__ == "__main__":
    main()
