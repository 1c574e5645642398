"""A score's reasons (``RiskModel.contributions``, ``pyorder.risk.explain``) on models trained
by LightGBM: they add up to the raw score, and they name the features that matter."""

import math

import numpy as np
import pytest

from pyorder._core import RiskModel
from pyorder.risk.explain import reasons
from pyorder.risk.train import train

NAMES = ["noise_a", "velocity", "noise_b", "age"]


@pytest.fixture(scope="module")
def model() -> RiskModel:
    rng = np.random.default_rng(5)
    rows = 20_000
    x = rng.random((rows, 4))
    x[rng.random(rows) < 0.1, 2] = np.nan
    logit = -6 + 8 * (x[:, 1] > 0.9) + 2 * (x[:, 3] < 0.1)
    y = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(np.float64)
    trained = train(x, y, feature_names=NAMES, categorical=(), seed=1)
    return RiskModel.from_text(trained.text)


def test_contributions_add_up_to_the_raw_score(model: RiskModel) -> None:
    rng = np.random.default_rng(6)
    x = rng.random((1000, 4))
    x[::7, 0] = np.nan
    for row in x:
        bias, contributions = model.contributions(row)
        raw = bias + sum(contributions)
        p = model.probability(row)
        assert raw == pytest.approx(math.log(p / (1 - p)), abs=1e-9)


def test_the_reasons_name_what_drives_the_score(model: RiskModel) -> None:
    risky = [0.5, 0.95, 0.5, 0.05]  # high velocity, new account
    found = reasons(model, risky)
    assert [r.feature for r in found[:2]] == ["velocity", "age"]
    assert found[0].value == 0.95
    assert all(r.contribution > 0 for r in found)
    assert found[0].describe().startswith("velocity = 0.95 (+")
    calm = [0.5, 0.1, math.nan, 0.9]
    assert all(r.feature not in ("velocity", "age") for r in reasons(model, calm))
    assert len(reasons(model, risky, top=1)) == 1


def test_a_row_of_the_wrong_width_is_refused(model: RiskModel) -> None:
    with pytest.raises(ValueError, match="4"):
        model.contributions([1.0, 2.0])
