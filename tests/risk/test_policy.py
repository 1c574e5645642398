"""Decisions (``pyorder.risk.policy``): Radar's order (3-D Secure, allow, block, review),
thresholds, lists, merchants' own rules, the TOML configuration, and that a whole matrix is
decided as row by row."""

import math
import random

import numpy as np
import pytest

from pyorder.risk.policy import ListKind, Outcome, Policy, Thresholds, load_policy
from pyorder.risk.rules import RuleError

NAMES = ["device_buyers_24h", "agent_class", "amount", "ip_region_mismatch"]

CONFIG = """
[thresholds]
block = 80
review = 60

[[rules]]
id = "3ds-big"
action = "request_3ds"
when = "amount >= 50000"

[[rules]]
id = "regulars"
action = "allow"
when = "device_buyers_24h == 1 and agent_class == 1 and score < 90"

[[rules]]
id = "device-farm"
action = "block"
when = "device_buyers_24h >= 5"

[[rules]]
id = "far-away"
action = "review"
when = "ip_region_mismatch == 1"

[[rules]]
id = "m7-bots"
action = "block"
when = "agent_class == 3"
merchant = 7

[lists.allow]
buyer = ["vip"]

[lists.block]
ip = ["10.6.6.6"]
"""


def _row(
    device_buyers: float = 2, agent: float = 2, amount: float = 100, far: float = 0
) -> list[float]:
    return [device_buyers, agent, amount, far]


@pytest.fixture
def policy() -> Policy:
    return load_policy(CONFIG, NAMES)


def test_the_order_is_3ds_then_allow_then_block_then_review(policy: Policy) -> None:
    d = policy.decide(_row(), 10)
    assert (d.outcome, d.decided_by, d.fired, d.three_ds) == (Outcome.ALLOW, "default", (), False)
    d = policy.decide(_row(far=1), 10)
    assert (d.outcome, d.decided_by) == (Outcome.REVIEW, "far-away")
    d = policy.decide(_row(device_buyers=6, far=1), 10)  # block comes before review
    assert (d.outcome, d.decided_by, d.fired) == (Outcome.BLOCK, "device-farm", ("device-farm",))
    d = policy.decide(_row(device_buyers=1, agent=1), 85)  # allow comes before the threshold
    assert (d.outcome, d.decided_by) == (Outcome.ALLOW, "regulars")
    d = policy.decide(_row(amount=60000, far=1), 10)  # 3-D Secure noted, the rest still runs
    assert (d.outcome, d.three_ds, d.fired) == (Outcome.REVIEW, True, ("3ds-big", "far-away"))


def test_thresholds(policy: Policy) -> None:
    assert policy.decide(_row(), 59).outcome is Outcome.ALLOW
    assert policy.decide(_row(), 60).outcome is Outcome.REVIEW
    d = policy.decide(_row(), 80)
    assert (d.outcome, d.decided_by) == (Outcome.BLOCK, "score")
    assert Policy(tuple(NAMES)).thresholds == Thresholds(75, 65)  # Radar's defaults
    with pytest.raises(RuleError, match="review"):
        Thresholds(block=60, review=70)


def test_lists(policy: Policy) -> None:
    blocked_ip = {ListKind.IP: "10.6.6.6"}
    d = policy.decide(_row(), 10, blocked_ip)
    assert (d.outcome, d.decided_by, d.fired) == (
        Outcome.BLOCK,
        "list:block:ip",
        ("list:block:ip",),
    )
    # An allow-listed buyer is allowed from a blocked IP, whatever the score and rules.
    d = policy.decide(_row(device_buyers=9), 99, {**blocked_ip, ListKind.BUYER: "vip"})
    assert (d.outcome, d.decided_by) == (Outcome.ALLOW, "list:allow:buyer")
    assert policy.decide(_row(), 10, {ListKind.BUYER: None}).outcome is Outcome.ALLOW


def test_a_merchants_rules_apply_to_its_own_orders_only(policy: Policy) -> None:
    bot = _row(agent=3)
    assert policy.decide(bot, 10, merchant=7).decided_by == "m7-bots"
    assert policy.decide(bot, 10, merchant=8).outcome is Outcome.ALLOW
    assert policy.decide(bot, 10).outcome is Outcome.ALLOW


@pytest.mark.parametrize(
    ("config", "says"),
    [
        ("[[rules]]\nid='a'\naction='block'\nwhen='nope > 1'", "rule 'a': .*unknown feature"),
        ("[[rules]]\nid='a'\naction='ban'\nwhen='amount > 1'", "needs id, action"),
        ("[[rules]]\nid='a'\naction='block'", "needs id, action"),
        (
            "[[rules]]\nid='a'\naction='block'\nwhen='amount>1'\n"
            "[[rules]]\nid='a'\naction='review'\nwhen='amount>2'",
            "two rules are called 'a'",
        ),
        ("[lists.block]\ncolour = ['red']", "lists are of"),
        ("rules = [", "not TOML"),
    ],
)
def test_a_bad_configuration_is_refused(config: str, says: str) -> None:
    with pytest.raises(RuleError, match=says):
        load_policy(config, NAMES)


def test_a_matrix_is_decided_as_row_by_row(policy: Policy) -> None:
    rng = random.Random(3)
    rows = [
        [
            rng.choice([math.nan, 0.0, 1.0, 3.0, 6.0]),
            float(rng.randrange(4)),
            rng.choice([100.0, 60000.0, math.nan]),
            rng.choice([0.0, 1.0, math.nan]),
        ]
        for _ in range(2000)
    ]
    scores = [rng.randrange(100) for _ in rows]
    for merchant in (None, 7):
        one_by_one = [
            policy.decide(r, s, merchant=merchant).outcome
            for r, s in zip(rows, scores, strict=True)
        ]
        many = policy.decide_many(
            np.array(rows, dtype=np.float64), np.array(scores, dtype=np.float64), merchant
        )
        assert many.tolist() == [int(o) for o in one_by_one]


def test_a_policy_rebuilt_with_one_more_rule_reuses_the_others_compiled_conditions() -> None:
    from pyorder.risk.rules import Action, Rule

    names = ("a", "b")
    first = Policy(names, rules=((Rule("r1", Action.BLOCK, "a > 1 and b < 2"), None),))
    second = first.with_rules(
        [*first.rules, (Rule("r2", Action.REVIEW, "missing(b)"), "merchant:m")]
    )
    assert second.compiled_rules()[0].condition is first.compiled_rules()[0].condition
    assert second.decide([2.0, 1.0], 0, merchant="merchant:m").decided_by == "r1"
    assert second.decide([0.0, math.nan], 0, merchant="merchant:m").decided_by == "r2"
    assert second.decide([0.0, math.nan], 0, merchant="merchant:other").decided_by == "default"
