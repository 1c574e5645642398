"""The returns policy as configuration (JSON and TOML, the documented example, refusals) and
the lightning rules as a pure function of the facts: each rule reports what it saw and its
limit, and one failing rule is enough to send a return to review."""

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from pyorder.returns.config import (
    DAY_MS,
    LightningConfig,
    ReturnsConfig,
    load_returns_config,
    returns_config_from_dict,
)
from pyorder.returns.model import RETURN_TERMINAL, RETURN_TRANSITIONS, ReturnStatus
from pyorder.returns.rules import Facts, evaluate

ROOT = Path(__file__).resolve().parents[2]

PASSING = Facts(
    order_total=1998,
    refund_amount=999,
    refundable=1998,
    recent_returns=0,
    delivered_orders=1,
    categories=frozenset({"apparel"}),
    fulfilment_status="delivered",
)


def test_the_documented_example_file_loads() -> None:
    config = load_returns_config(ROOT / "docs" / "returns.example.toml")
    assert config.window_ms("apparel") == 15 * DAY_MS
    assert config.window_ms("toys") == 7 * DAY_MS
    assert not config.returnable("fresh_food")
    assert config.returnable("apparel")
    assert config.lightning.excluded_categories == {"electronics", "jewellery"}
    assert config.lightning.max_refund_amount == 100_000


def test_json_and_toml_say_the_same(tmp_path: Path) -> None:
    (tmp_path / "p.json").write_text(
        '{"window_days": 0.5, "excluded_categories": ["fresh_food"],'
        ' "lightning": {"max_order_amount": null, "min_delivered_orders": 2}}'
    )
    (tmp_path / "p.toml").write_text(
        'window_days = 0.5\nexcluded_categories = ["fresh_food"]\n'
        "[lightning]\nmin_delivered_orders = 2\n"
    )
    from_json = load_returns_config(tmp_path / "p.json")
    from_toml = load_returns_config(tmp_path / "p.toml")
    assert from_json.window_ms("x") == from_toml.window_ms("x") == DAY_MS // 2
    assert from_json.lightning.max_order_amount is None  # switched off in JSON
    assert from_toml.lightning.max_order_amount == LightningConfig().max_order_amount
    assert from_json.lightning.min_delivered_orders == from_toml.lightning.min_delivered_orders == 2
    assert load_returns_config(tmp_path / "p.json").excluded_categories == {"fresh_food"}


@pytest.mark.parametrize(
    ("doc", "says"),
    [
        ({"window": 7}, "unknown fields: window"),
        ({"window_days": -1}, "window_days must be between 0 and 3650"),
        ({"window_days": True}, "window_days must be a number"),
        ({"excluded_categories": "fresh_food"}, "must be a list"),
        ({"category_window_days": {"apparel": "15"}}, "category_window_days.apparel"),
        ({"lightning": {"max_refund_amount": -5}}, "lightning.max_refund_amount"),
        ({"lightning": {"max_refund_amount": 1.5}}, "lightning.max_refund_amount"),
        ({"lightning": {"enabled": "yes"}}, "lightning.enabled must be true or false"),
        ({"lightning": {"max_returns": 3}}, "lightning: unknown fields: max_returns"),
        ({"lightning": {"max_order_amount": 2**63}}, "lightning.max_order_amount .* to 10"),
        ({"lightning": {"max_recent_returns": 2**64}}, "lightning.max_recent_returns"),
        ({"excluded_categories": ["fresh\u0000food"]}, "excluded_categories: a category"),
        ({"category_window_days": {"a" * 41: 3}}, "category_window_days: a category"),
        ({"window_days": 1e308}, "window_days must be between 0 and 3650"),
        ([], "must be a table"),
    ],
)
def test_a_bad_policy_is_refused_with_what_is_wrong(doc: object, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        returns_config_from_dict(doc)


def test_a_file_that_is_not_json_is_refused(tmp_path: Path) -> None:
    (tmp_path / "p.json").write_text("window_days = 7")
    with pytest.raises(ValueError, match="not readable"):
        load_returns_config(tmp_path / "p.json")
    (tmp_path / "deep.json").write_text('{"lightning": ' + "[" * 5000 + "]" * 5000 + "}")
    with pytest.raises(ValueError, match=r"deep\.json"):
        load_returns_config(tmp_path / "deep.json")


def test_every_rule_passes_and_reports_what_it_saw() -> None:
    rules = evaluate(LightningConfig(), PASSING)
    assert all(r.passed for r in rules)
    seen = {r.rule: (r.observed, r.limit) for r in rules}
    assert seen == {
        "lightning_enabled": (1, 1),
        "order_amount": (1998, 200_000),
        "refund_amount": (999, 100_000),
        "charge_left": (1998, 999),
        "buyer_recent_returns": (0, 3),
        "buyer_delivered_orders": (1, 1),
        "category": ("apparel", ""),
        "order_delivered": ("delivered", "delivered"),
    }


@pytest.mark.parametrize(
    ("config", "facts", "fails"),
    [
        (LightningConfig(enabled=False), PASSING, "lightning_enabled"),
        (LightningConfig(max_order_amount=1000), PASSING, "order_amount"),
        (LightningConfig(max_refund_amount=998), PASSING, "refund_amount"),
        (LightningConfig(), replace(PASSING, refundable=500), "charge_left"),
        (
            LightningConfig(max_recent_returns=0),
            replace(PASSING, recent_returns=1),
            "buyer_recent_returns",
        ),
        (LightningConfig(min_delivered_orders=2), PASSING, "buyer_delivered_orders"),
        (LightningConfig(excluded_categories=frozenset({"apparel"})), PASSING, "category"),
        (
            LightningConfig(),
            replace(PASSING, fulfilment_status="partially_delivered"),
            "order_delivered",
        ),
        (LightningConfig(), replace(PASSING, parcel_status="created"), "return_picked_up"),
    ],
)
def test_one_failing_rule_is_reported_alone(
    config: LightningConfig, facts: Facts, fails: str
) -> None:
    assert [r.rule for r in evaluate(config, facts) if not r.passed] == [fails]


def test_limits_switched_off_always_pass() -> None:
    off = LightningConfig(
        max_order_amount=None,
        max_refund_amount=None,
        max_recent_returns=None,
        min_delivered_orders=None,
        require_order_delivered=False,
    )
    facts = replace(
        PASSING,
        order_total=10**9,
        refund_amount=10**8,
        refundable=10**9,
        recent_returns=99,
        delivered_orders=0,
        fulfilment_status="partially_delivered",
        parcel_status="picked_up",
    )
    rules = evaluate(off, facts)
    assert all(r.passed for r in rules)
    assert [r.rule for r in rules][-1] == "return_picked_up"


def test_the_return_state_machine_ends_where_it_says() -> None:
    assert {
        ReturnStatus.REFUNDED,
        ReturnStatus.REJECTED,
        ReturnStatus.BOOKING_FAILED,
        ReturnStatus.PICKUP_FAILED,
    } == RETURN_TERMINAL
    # Every state is reachable from requested, and none goes back to it.
    reached, todo = {ReturnStatus.REQUESTED}, [ReturnStatus.REQUESTED]
    while todo:
        for nxt in RETURN_TRANSITIONS[todo.pop()]:
            if nxt not in reached:
                reached.add(nxt)
                todo.append(nxt)
    assert reached == set(ReturnStatus)
    assert all(ReturnStatus.REQUESTED not in nxt for nxt in RETURN_TRANSITIONS.values())
    assert ReturnsConfig().window_ms("anything") == 7 * DAY_MS


def test_the_server_refuses_to_start_with_a_bad_policy(tmp_path: Path) -> None:
    bad = tmp_path / "returns.toml"
    bad.write_text("window_days = 7\n[lightning]\nmax_refund = 100\n")
    cmd = [sys.executable, "-m", "pyorder.server.main", "--data-dir", str(tmp_path / "data")]
    out = subprocess.run(
        [*cmd, "--returns-config", str(bad)], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 2, out
    assert "lightning: unknown fields: max_refund" in out.stderr
