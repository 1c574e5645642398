"""The rule language (``pyorder.risk.rules``): what it accepts, what it refuses, and that one
row's answer equals the matrix's, missing values included."""

import math
import random

import numpy as np
import pytest

from pyorder.risk.rules import RuleError, compile_condition

NAMES = ["device_buyers_24h", "agent_class", "amount", "buyer_amount_24h", "ip_region_mismatch"]
NAN = math.nan


def _row(**values: float) -> list[float]:
    return [values.get(n, NAN) for n in NAMES]


@pytest.mark.parametrize(
    ("text", "row", "score", "expected"),
    [
        (
            "device_buyers_24h >= 5 and agent_class == 3",
            _row(device_buyers_24h=5, agent_class=3),
            0,
            True,
        ),
        (
            "device_buyers_24h >= 5 and agent_class == 3",
            _row(device_buyers_24h=4, agent_class=3),
            0,
            False,
        ),
        ("amount > 3 * buyer_amount_24h", _row(amount=400, buyer_amount_24h=100), 0, True),
        ("amount > 3 * buyer_amount_24h", _row(amount=300, buyer_amount_24h=100), 0, False),
        ("score >= 65 or ip_region_mismatch == 1", _row(ip_region_mismatch=0), 70, True),
        ("not score >= 65", _row(), 70, False),
        ("10 < amount <= 20", _row(amount=20), 0, True),
        ("10 < amount <= 20", _row(amount=10), 0, False),
        ("-amount < -5", _row(amount=6), 0, True),
        ("amount / buyer_amount_24h > 2", _row(amount=5, buyer_amount_24h=0), 0, False),
        # A missing feature: every comparison is false, != too; missing() tells.
        ("amount < 3", _row(), 0, False),
        ("amount >= 3", _row(), 0, False),
        ("amount != 3", _row(), 0, False),
        ("missing(amount)", _row(), 0, True),
        ("missing(amount)", _row(amount=1), 0, False),
        ("not missing(amount) and amount != 3", _row(amount=1), 0, True),
    ],
)
def test_a_condition_on_one_row(text: str, row: list[float], score: float, expected: bool) -> None:
    cond = compile_condition(text, NAMES)
    assert cond.holds(row, score) is expected
    matrix = np.array([row], dtype=np.float64)
    assert cond.mask(matrix, np.array([score], dtype=np.float64)).tolist() == [expected]


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("amount >", "does not parse"),
        ("unknown_feature > 1", "unknown feature 'unknown_feature'"),
        ("amount", "must be a comparison"),
        ("__import__('os').system('true')", "the one function is missing"),
        ("amount.real > 1", "a value must be"),
        ("amount > 'ten'", "a value must be"),
        ("amount in [1, 2]", "not a comparison of numbers"),
        ("amount ** 2 > 4", "a value must be"),
        ("missing(unknown)", "unknown feature"),
        ("lambda: 1", "must be a comparison"),
        ("amount > True", "a value must be"),
    ],
)
def test_anything_outside_the_language_is_refused(text: str, says: str) -> None:
    with pytest.raises(RuleError) as caught:
        compile_condition(text, NAMES)
    assert says in str(caught.value)


def test_one_row_at_a_time_equals_the_matrix() -> None:
    rng = random.Random(7)
    texts = [
        "device_buyers_24h >= 3 and (agent_class == 3 or score > 50)",
        "amount > 2 * buyer_amount_24h or missing(ip_region_mismatch)",
        "not (amount / buyer_amount_24h <= 1.5) and ip_region_mismatch != 0",
        "0 < device_buyers_24h - agent_class < 4",
    ]
    rows = [
        [rng.choice([NAN, 0.0, 1.0, 2.0, 3.0, 5.0, 100.0, 250.0]) for _ in NAMES]
        for _ in range(500)
    ]
    scores = [float(rng.randrange(100)) for _ in rows]
    matrix = np.array(rows, dtype=np.float64)
    vector = np.array(scores, dtype=np.float64)
    for text in texts:
        cond = compile_condition(text, NAMES)
        one_by_one = [cond.holds(r, s) for r, s in zip(rows, scores, strict=True)]
        assert cond.mask(matrix, vector).tolist() == one_by_one, text
