"""Reviewed decisions as training rows (``pyorder.risk.labels``): columns by the catalogue's
names whatever the catalogue the features were stored with, the labels without features
counted and left out, and an export written for another catalogue refused."""

import json
import math
from pathlib import Path

import numpy as np
import pytest

from pyorder.risk import labels, ship
from pyorder.risk.features import FEATURE_NAMES
from pyorder.risk.model import MANIFEST_FILE
from pyorder.risk.records import Label


def test_rows_follow_the_catalogue_by_name() -> None:
    found = labels.examples(
        [
            Label(7, 1, {"amount": 59_900.0, "retired_feature": 3.0}),
            Label(8, 0, None),  # held before its features were kept
            Label(9, 0, {"buyer_orders_1m": 2.0}),
        ]
    )
    assert found.ids.tolist() == [7, 9]
    assert found.labels.tolist() == [1.0, 0.0]
    assert found.without_features == 1
    assert found.features.shape == (2, len(FEATURE_NAMES))
    amount, orders = FEATURE_NAMES.index("amount"), FEATURE_NAMES.index("buyer_orders_1m")
    assert found.features[0, amount] == 59_900
    assert found.features[1, orders] == 2
    # Everything not stored (or dropped from the catalogue) is missing.
    assert int(np.isnan(found.features).sum()) == 2 * len(FEATURE_NAMES) - 2
    assert labels.summary(found) == {
        "examples": 2,
        "rejected": 1,
        "approved": 1,
        "without_features": 1,
    }


def test_an_export_round_trips_and_another_catalogues_is_refused(tmp_path: Path) -> None:
    found = labels.examples([Label(1, 1, {"amount": 5.0})])
    labels.write(found, tmp_path)
    features, verdicts = labels.load(tmp_path)
    assert verdicts.tolist() == [1.0]
    assert features[0, FEATURE_NAMES.index("amount")] == 5
    assert math.isnan(features[0, 0])
    (tmp_path / "names.txt").write_text("a,b\n", encoding="utf-8")
    with pytest.raises(SystemExit, match="another feature catalogue"):
        labels.load(tmp_path)


def test_a_missing_sqlite_store_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="no SQLite store"):
        labels.read_labels(str(tmp_path / "none.sqlite3"))


@pytest.mark.long
def test_ship_trains_the_shipped_models_data_plus_the_reviews(tmp_path: Path) -> None:
    """``python -m pyorder.risk.ship --reviews DIR``: the same training rows as without, plus
    the reviewed ones (a rejected order a positive); about 7 s a model."""
    reviews = tmp_path / "reviews"
    labels.write(
        labels.examples([Label(1, 1, {"amount": 59_900.0}), Label(2, 0, {"amount": 100.0})]),
        reviews,
    )
    ship.main(["--out", str(tmp_path / "base")])
    ship.main(["--out", str(tmp_path / "next"), "--reviews", str(reviews)])
    base, after = (
        json.loads((tmp_path / name / MANIFEST_FILE).read_text(encoding="utf-8"))
        for name in ("base", "next")
    )
    assert after["training_rows"] == base["training_rows"] + 2
    assert after["positives"] == base["positives"] + 1
    assert after["version"] != base["version"]
