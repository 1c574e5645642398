"""The model the platform ships (``pyorder/risk/models/default/``), made by one command:

    python -m pyorder.risk.ship [--seed 0] [--out pyorder/risk/models/default]

It trains on the synthetic data of ``--seed`` (``pyorder.risk.sim``, 14 days), on what was
known at the end of the last day (orders of the last ``MATURE_DAYS`` only if known fraud, as
in the evaluation), with the feature the platform cannot compute blanked (NaN) so that the
model does not lean on it: the buyer's account age (buyers are token subjects; the platform
keeps no accounts). The seconds since a SKU's release are the catalogue's (``Sku.release_ms``,
missing for a SKU without one, as for the generator's ordinary items). The features of payment
instruments are missing at intake already.
"""

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Final

import numpy as np

from pyorder.risk.evaluate import DAY_MS, MATURE_DAYS, order_features
from pyorder.risk.features import FEATURE_NAMES
from pyorder.risk.intake import DEFAULT_MODEL
from pyorder.risk.sim import SimConfig, simulate
from pyorder.risk.train import train, write

OUT: Final = DEFAULT_MODEL.parent

UNKNOWN_ON_THE_PLATFORM: Final = ("account_age_s",)
"""Features the platform's intake leaves missing (see the module's docs)."""


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m pyorder.risk.ship", description=__doc__)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    config = SimConfig(seed=args.seed)
    sim = simulate(config)
    features = order_features(sim)
    for name in UNKNOWN_ON_THE_PLATFORM:
        features[:, FEATURE_NAMES.index(name)] = np.nan
    at = np.array([o.at_ms for o in sim.orders], dtype=np.int64)
    fraud = np.array(sim.labels.fraud, dtype=bool)
    known_at = np.array([-1 if t is None else t for t in sim.labels.label_at_ms], dtype=np.int64)
    end = config.start_ms + config.days * DAY_MS
    known = fraud & (known_at >= 0) & (known_at <= end)
    learn = (at < end - MATURE_DAYS * DAY_MS) | known
    trained = train(
        features[learn],
        known[learn].astype(np.float64),
        feature_names=FEATURE_NAMES,
        seed=args.seed,
    )
    write(trained, args.out)
    print(
        f"{args.out}: version {trained.manifest.version}, {trained.manifest.training_rows} "
        f"rows, {trained.manifest.positives} positives"
    )


if __name__ == "__main__":
    main()
