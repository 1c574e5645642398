"""The evaluation's metrics (``pyorder.risk.evaluate``), on cases worked by hand."""

import numpy as np
import pytest

from pyorder.risk.evaluate import at_budget, average_precision


def _ap(truth: list[int], scores: list[float]) -> float:
    return average_precision(np.array(truth, dtype=bool), np.array(scores, dtype=np.float64))


def test_average_precision_by_hand() -> None:
    assert _ap([1, 0, 1, 0], [0.9, 0.8, 0.7, 0.1]) == pytest.approx((1 / 1 + 2 / 3) / 2)
    assert _ap([1, 1, 0, 0], [4, 3, 2, 1]) == pytest.approx(1.0)
    assert _ap([0, 0, 1, 1], [4, 3, 2, 1]) == pytest.approx((1 / 3 + 2 / 4) / 2)
    assert _ap([0, 0, 0], [1, 2, 3]) == 0.0


def test_a_tie_is_one_step_so_ties_earn_nothing() -> None:
    # Every order tied: precision is the prevalence, whatever the order of the rows.
    assert _ap([1, 0, 0, 0], [1, 1, 1, 1]) == pytest.approx(0.25)
    assert _ap([0, 0, 0, 1], [1, 1, 1, 1]) == pytest.approx(0.25)
    # A tie at the top with one positive of two, then a positive alone.
    assert _ap([1, 0, 1], [2, 2, 1]) == pytest.approx((0.5 * 1 / 2) + (0.5 * 2 / 3))


def test_a_random_ranking_scores_about_the_prevalence() -> None:
    rng = np.random.default_rng(1)
    truth = rng.random(200_000) < 0.005
    assert _ap(truth.tolist(), rng.random(200_000).tolist()) == pytest.approx(0.005, abs=0.002)


def test_at_budget() -> None:
    truth = np.array([1, 0, 1, 0, 0, 0, 0, 0, 0, 1], dtype=bool)
    scores = np.array([9, 8, 7, 6, 5, 4, 3, 2, 1, 0], dtype=np.float64)
    scenario = ["a", "h", "b", "h", "h", "h", "h", "h", "h", "a"]
    precision, recall, by = at_budget(truth, scores, scenario, budget=0.3)
    assert precision == pytest.approx(2 / 3)
    assert recall == pytest.approx(2 / 3)
    assert by == {"a": 0.5, "b": 1.0}
