"""The core decides as ``Policy.decide`` does: rules compiled to the core's programs
(``pyorder.risk.rules.program``), lists hashed, thresholds, merchants' own rules, Radar's order,
on random rows with missing values and on random conditions of the whole language."""

import math
import random

import pytest

from pyorder._core import RiskEngine
from pyorder.risk.features import FEATURE_NAMES
from pyorder.risk.intake import set_policy
from pyorder.risk.policy import ListKind, Policy, Thresholds
from pyorder.risk.rules import Action, Rule, RuleError, compile_condition, program

NAMES = FEATURE_NAMES
USED = ["buyer_orders_1m", "device_buyers_24h", "amount", "agent_class", "ip_region_mismatch"]


def _value(rng: random.Random) -> str:
    """A random value expression of the language."""
    kind = rng.randrange(6)
    if kind == 0:
        return str(rng.choice([0, 1, 2, 3, 5, 0.5, 100, 5000]))
    if kind == 1:
        return "score"
    if kind == 2:
        return f"-{rng.choice(USED)}"
    if kind == 3:
        op = rng.choice(["+", "-", "*", "/"])
        return f"({rng.choice(USED)} {op} {_value(rng)})"
    return rng.choice(USED)


def _condition(rng: random.Random, depth: int = 0) -> str:
    """A random condition: comparisons (chained too), and/or/not, missing()."""
    kind = rng.randrange(6 if depth < 2 else 3)
    if kind == 0:
        return f"missing({rng.choice(USED)})"
    if kind in (1, 2):
        ops = [rng.choice(["<", "<=", ">", ">=", "==", "!="]) for _ in range(rng.choice([1, 1, 2]))]
        parts = [_value(rng)]
        for op in ops:
            parts += [op, _value(rng)]
        return " ".join(parts)
    if kind == 3:
        return f"not ({_condition(rng, depth + 1)})"
    join = rng.choice([" and ", " or "])
    return join.join(f"({_condition(rng, depth + 1)})" for _ in range(rng.randint(2, 3)))


def _row(rng: random.Random) -> list[float]:
    row = [math.nan] * len(NAMES)
    for name in USED:
        if rng.random() < 0.8:
            row[NAMES.index(name)] = float(rng.choice([0, 1, 2, 3, 5, 6, 100, 4999, 5000, 70000]))
    return row


def test_random_conditions_hold_alike_in_the_core_and_in_python() -> None:
    rng = random.Random(7)
    engine = RiskEngine()
    for _ in range(300):
        text = _condition(rng)
        condition = compile_condition(text, NAMES)
        policy = Policy(NAMES, Thresholds(100, 100), ((Rule("r", Action.REVIEW, text), None),))
        set_policy(engine, policy)
        for _ in range(20):
            row, score = _row(rng), rng.choice([None, 0, 50, 64, 65, 99])
            s = math.nan if score is None else float(score)
            expected = condition.holds(row, s)
            outcome, _, fired, _ = engine.decide(row, score)
            assert (outcome == "review") == expected, (text, row, score)
            assert fired == (["r"] if expected else [])


def test_decisions_equal_the_python_policy() -> None:
    rng = random.Random(11)
    rules = (
        (Rule("3ds-big", Action.REQUEST_3DS, "amount >= 50000"), None),
        (Rule("regulars", Action.ALLOW, "device_buyers_24h == 1 and score < 90"), None),
        (Rule("farm", Action.BLOCK, "device_buyers_24h >= 5"), None),
        (Rule("far", Action.REVIEW, "ip_region_mismatch == 1"), None),
        (Rule("mine", Action.BLOCK, "buyer_orders_1m >= 3"), "merchant:a"),
        (Rule("other", Action.REVIEW, "missing(agent_class)"), "merchant:b"),
    )
    policy = Policy(
        NAMES,
        Thresholds(75, 65),
        rules,
        allow={ListKind.BUYER: frozenset({"vip"}), ListKind.IP: frozenset({"10.0.0.1"})},
        block={ListKind.DEVICE: frozenset({"bad"}), ListKind.EMAIL: frozenset({"e1"})},
    )
    engine = RiskEngine()
    set_policy(engine, policy)
    assert engine.rule_count == len(rules)
    seen = set()
    for _ in range(3000):
        row = _row(rng)
        score = rng.choice([None, 10, 64, 65, 74, 75, 99])
        keys = {
            ListKind.BUYER: rng.choice(["vip", "b1", None]),
            ListKind.DEVICE: rng.choice(["bad", "d1", None]),
            ListKind.IP: rng.choice(["10.0.0.1", "10.0.0.2", None]),
            ListKind.EMAIL: rng.choice(["e1", "e2", None]),
        }
        merchant = rng.choice([None, "merchant:a", "merchant:b"])
        # Python's Policy takes a score always; "not scored" is NaN in conditions and no
        # threshold, which a score of -1 gives it only for thresholds: compare scored rows.
        if score is None:
            continue
        d = policy.decide(row, score, keys, merchant)
        got = engine.decide(
            row,
            score,
            {k.value: v for k, v in keys.items() if v is not None},
            [] if merchant is None else [merchant],
        )
        assert got == (d.outcome.name.lower(), d.three_ds, list(d.fired), d.decided_by)
        seen.add(d.decided_by)
    # Every way of deciding was met.
    assert {"default", "score", "regulars", "farm", "far", "mine", "other"} <= seen
    assert {"list:allow:buyer", "list:allow:ip", "list:block:device", "list:block:email"} <= seen


def test_a_program_is_refused_as_its_condition_is() -> None:
    with pytest.raises(RuleError, match="unknown feature"):
        program("nope > 1", NAMES)
    with pytest.raises(RuleError):
        program("__import__('os')", NAMES)
    assert program("amount > 2 * 3", NAMES) == [
        ("feature", float(NAMES.index("amount"))),
        ("number", 2.0),
        ("number", 3.0),
        ("mul", 0.0),
        ("gt", 0.0),
    ]


def test_the_core_refuses_a_bad_program_or_threshold() -> None:
    engine = RiskEngine()
    with pytest.raises(ValueError, match="lacks operands"):
        engine.set_policy(75, 65, [("r", "block", None, [("add", 0.0)])], {}, {})
    with pytest.raises(ValueError, match="no column"):
        engine.set_policy(75, 65, [("r", "block", None, [("feature", 99.0)])], {}, {})
    with pytest.raises(ValueError, match="thresholds"):
        engine.set_policy(60, 65, [], {}, {})
    with pytest.raises(ValueError, match="no list kind"):
        engine.set_policy(75, 65, [], {"shoe": ["x"]}, {})
