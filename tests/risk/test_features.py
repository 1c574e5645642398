"""The Rust core's risk features equal the plain reference (``reference_features.py``) on
seeded random event streams: missing fields, times on and around bucket edges, jumps of
hours and days, declines, and a device shared by more buyers than a distinct set holds."""

import dataclasses
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from pyorder import _core
from pyorder.risk.events import AgentClass, OrderAttempt, PaymentAttempt
from pyorder.risk.features import (
    FEATURE_COUNT,
    FEATURE_NAMES,
    OrderColumns,
    PaymentColumns,
    RiskTracker,
    replay,
    replay_payments,
)
from tests.risk.reference_features import reference_replay

T0 = 1_700_006_400_000  # a whole day: every bucket edge falls on a round offset from it
DOCS = Path(__file__).resolve().parents[2] / "docs" / "risk.md"


def _maybe(rng: random.Random, values: list[str], missing: float = 0.25) -> str | None:
    return None if rng.random() < missing else rng.choice(values)


def _step(rng: random.Random, dense: bool) -> int:
    """The time to the next event: mostly seconds, often onto or beside a bucket edge,
    sometimes hours or days (unless ``dense``: then seconds only)."""
    r = rng.random() * (0.55 if dense else 1.0)
    if r < 0.55:
        return rng.randrange(0, 4_000)
    if r < 0.75:
        return rng.choice([5_000, 60_000, 300_000, 3_600_000]) * rng.randrange(1, 4) + rng.choice(
            [-1, 0, 1]
        )
    if r < 0.95:
        return rng.randrange(0, 30 * 60_000)
    return rng.choice([86_400_000, 86_400_001, 2 * 86_400_000 + 7, 3 * 3_600_000])


def random_stream(
    seed: int, n: int = 300, buyers: int = 6, dense: bool = False
) -> tuple[list[OrderAttempt], list[PaymentAttempt], list[int]]:
    """Orders and payment attempts in time order, and the order each attempt pays."""
    rng = random.Random(seed)
    devices = [f"dev{i}" for i in range(4)]
    ips = [f"10.0.0.{i}" for i in range(3)]
    regions = ["DE", "FR"]
    addresses = [f"{i} main st" for i in range(3)]
    cards = [f"card{i}" for i in range(4)]
    orders: list[OrderAttempt] = []
    payments: list[PaymentAttempt] = []
    paid: list[int] = []
    t = T0 + rng.choice([0, -1, 1, 4_999])
    for _ in range(n):
        t += _step(rng, dense)
        if orders and rng.random() < 0.35:
            i = rng.randrange(max(0, len(orders) - 5), len(orders))
            o = orders[i]
            payments.append(
                PaymentAttempt(
                    at_ms=max(t, o.at_ms),
                    buyer=o.buyer,
                    amount=o.amount if rng.random() < 0.8 else rng.randrange(1, 50_000),
                    instrument=rng.choice(cards),
                    authorised=rng.random() < 0.6,
                    device=o.device if rng.random() < 0.8 else _maybe(rng, devices),
                    ip=o.ip if rng.random() < 0.8 else _maybe(rng, ips),
                )
            )
            paid.append(i)
            continue
        buyer = rng.randrange(buyers)
        orders.append(
            OrderAttempt(
                at_ms=t,
                buyer=buyer,
                account_created_ms=T0 - rng.randrange(0, 10**10),
                amount=rng.choice([0, 1, 999, 2_500, rng.randrange(1, 10**6)]),
                sku=rng.randrange(3),
                quantity=rng.randrange(1, 4),
                sku_release_ms=None if rng.random() < 0.5 else t - rng.randrange(0, 10**6),
                device=_maybe(rng, devices),
                ip=_maybe(rng, ips),
                ip_region=_maybe(rng, regions),
                email_hash=_maybe(rng, [f"e{b}" for b in range(3)], 0.4),
                phone_hash=_maybe(rng, [f"p{b}" for b in range(3)], 0.6),
                agent=rng.choice(list(AgentClass)),
                address=_maybe(rng, addresses),
                ship_region=_maybe(rng, regions),
            )
        )
    # A payment made at an earlier order's time can come after a later order in the list.
    payments_sorted = sorted(zip(payments, paid, strict=True), key=lambda pp: pp[0].at_ms)
    return orders, [p for p, _ in payments_sorted], [i for _, i in payments_sorted]


def _same(core: npt.NDArray[np.float64], reference: list[list[float]]) -> None:
    expected = np.array(reference, dtype=np.float64).reshape(len(reference), FEATURE_COUNT)
    assert core.shape == expected.shape
    for row in range(len(reference)):
        wrong = [
            f"{name}: core {core[row, k]!r}, reference {expected[row, k]!r}"
            for k, name in enumerate(FEATURE_NAMES)
            if not (
                core[row, k] == expected[row, k]
                or (np.isnan(core[row, k]) and np.isnan(expected[row, k]))
            )
        ]
        assert not wrong, f"row {row}: " + "; ".join(wrong)


@pytest.mark.parametrize("seed", range(40))
def test_the_core_equals_the_reference_on_random_streams(seed: int) -> None:
    orders, payments, paid = random_stream(seed)
    order_rows, payment_rows = reference_replay(orders, payments, paid)
    core_orders, core_payments = replay_payments(orders, payments, paid)
    _same(core_orders, order_rows)
    _same(core_payments, payment_rows)
    # Without the payments' orders: the same order features.
    _same(replay(orders, payments), order_rows)


@pytest.mark.parametrize("seed", range(3))
def test_a_device_farm_saturates_the_distinct_sets_as_the_reference_does(seed: int) -> None:
    # 150 buyers on four devices: sets past their cap of 64 drop the value seen longest ago.
    orders, payments, paid = random_stream(1_000 + seed, n=1_500, buyers=150, dense=True)
    order_rows, payment_rows = reference_replay(orders, payments, paid)
    core_orders, core_payments = replay_payments(orders, payments, paid)
    _same(core_orders, order_rows)
    _same(core_payments, payment_rows)
    assert np.nanmax(core_orders[:, FEATURE_NAMES.index("device_buyers_24h")]) == 64


def test_the_calls_one_by_one_equal_the_replay() -> None:
    orders, payments, paid = random_stream(7)
    rows, payment_rows = replay_payments(orders, payments, paid)
    tracker = RiskTracker()
    merged = sorted(
        [(o.at_ms, 0, i) for i, o in enumerate(orders)]
        + [(p.at_ms, 1, j) for j, p in enumerate(payments)]
    )
    got_orders: list[npt.NDArray[np.float64]] = []
    got_payments: list[npt.NDArray[np.float64]] = []
    for _, kind, i in merged:
        if kind == 0:
            before = tracker.order_features(orders[i])
            got_orders.append(tracker.score_and_observe_order(orders[i]))
            np.testing.assert_array_equal(before, got_orders[-1])
        else:
            order, payment = orders[paid[i]], payments[i]
            before = tracker.payment_features(order, payment)
            got_payments.append(tracker.score_and_observe_payment(order, payment))
            np.testing.assert_array_equal(before, got_payments[-1])
    np.testing.assert_array_equal(np.array(got_orders), rows)
    np.testing.assert_array_equal(np.array(got_payments), payment_rows)
    # observe_order and observe_payment count as the scoring calls do.
    other = RiskTracker()
    for _, kind, i in merged:
        if kind == 0:
            other.observe_order(orders[i])
        else:
            other.observe_payment(payments[i])
    last = orders[-1]
    np.testing.assert_array_equal(other.order_features(last), tracker.order_features(last))


def test_a_replay_continues_from_the_trackers_counts() -> None:
    orders, payments, _ = random_stream(11)
    whole = replay(orders, payments)
    tracker = RiskTracker()
    cut = orders[len(orders) // 2].at_ms
    first = replay(
        [o for o in orders if o.at_ms < cut],
        [p for p in payments if p.at_ms < cut],
        tracker=tracker,
    )
    second = replay(
        [o for o in orders if o.at_ms >= cut],
        [p for p in payments if p.at_ms >= cut],
        tracker=tracker,
    )
    np.testing.assert_array_equal(np.vstack([first, second]), whole)


def test_events_out_of_time_order_are_refused() -> None:
    orders, payments, _ = random_stream(3)
    with pytest.raises(ValueError, match="orders are not in time order"):
        replay(list(reversed(orders)), payments)
    with pytest.raises(ValueError, match="is not an earlier order"):
        replay_payments(orders, payments, [len(orders) - 1] * len(payments))


def test_columns_are_checked() -> None:
    orders, _, _ = random_stream(5, n=20)
    cols = OrderColumns.of(orders)
    short = OrderColumns.of(orders[:-1])
    with pytest.raises(ValueError, match="device has"):
        RiskTracker().replay(dataclasses.replace(cols, device=short.device), PaymentColumns.of([]))
    with pytest.raises(TypeError, match="buyer must be a 1-D numpy array of int64"):
        RiskTracker().replay(
            dataclasses.replace(cols, buyer=cols.buyer.astype(np.int32)),
            PaymentColumns.of([]),
        )
    not_strings: list[Any] = [1] * len(orders)  # wrong on purpose: the core checks each item
    with pytest.raises(TypeError, match="ip must be a str or None"):
        RiskTracker().replay(dataclasses.replace(cols, ip=not_strings), PaymentColumns.of([]))
    with pytest.raises(ValueError, match="agent must be 0 to 3"):
        RiskTracker().replay(dataclasses.replace(cols, agent=cols.agent + 4), PaymentColumns.of([]))


def test_memory_is_bounded_by_the_limits_and_idle_keys_are_dropped() -> None:
    tracker = RiskTracker(1_000, limits={"device": 50})
    for i in range(500):
        tracker.observe_order(
            OrderAttempt(
                at_ms=T0 + i,
                buyer=i % 10,
                account_created_ms=T0,
                amount=1,
                sku=1,
                quantity=1,
                device=f"spray{i}",
            )
        )
    stats = tracker.stats()
    assert stats["device"]["keys"] == 50
    assert stats["device"]["evicted"] == 450
    assert stats["device_sku"]["keys"] == 500
    assert stats["buyer"]["keys"] == 10
    later = OrderAttempt(
        at_ms=T0 + 2 * 86_400_000, buyer=99, account_created_ms=T0, amount=1, sku=1, quantity=1
    )
    tracker.observe_order(later)
    tracker.sweep()
    stats = tracker.stats()
    assert stats["device"]["keys"] == 0
    assert stats["buyer"]["keys"] == 1
    assert stats["buyer"]["expired"] == 10
    with pytest.raises(ValueError, match="unknown kind"):
        RiskTracker(limits={"devices": 5})


def test_the_names_are_the_catalogues() -> None:
    assert list(FEATURE_NAMES) == _core.RISK_FEATURE_NAMES
    names: list[str] = []
    table = re.findall(
        r"^\| [0-9\N{EN DASH}]+ \| `([a-z_0-9{},]+)` \|", DOCS.read_text(), re.MULTILINE
    )
    for name in table:
        if m := re.fullmatch(r"(.*)\{(.*)\}(.*)", name):
            names += [f"{m[1]}{w}{m[3]}" for w in m[2].split(",")]
        else:
            names.append(name)
    assert names == list(FEATURE_NAMES)


def test_a_full_distinct_set_drops_the_value_seen_longest_ago() -> None:
    hour = 3_600_000

    def on_farm(at_ms: int, buyer: int) -> OrderAttempt:
        return OrderAttempt(
            at_ms=at_ms,
            buyer=buyer,
            account_created_ms=T0,
            amount=1,
            sku=1,
            quantity=1,
            device="farm",
        )

    # 64 buyers at hour 0 fill the set; buyer 0 again at hour 5 renews it; 36 new buyers at
    # hour 10 drop the 36 seen longest ago (1 to 36); at hour 25 the hour-0 ones have expired.
    orders = [on_farm(T0 + b, b) for b in range(64)]
    orders.append(on_farm(T0 + 5 * hour, 0))
    orders += [on_farm(T0 + 10 * hour + b, b) for b in range(64, 100)]
    orders.append(on_farm(T0 + 25 * hour, 1_000))
    rows = replay(orders)
    _same(rows, reference_replay(orders, [])[0])
    device_buyers = rows[:, FEATURE_NAMES.index("device_buyers_24h")]
    assert device_buyers[64] == 64
    # buyer 0 (renewed at hour 5) and buyers 37..63 (hour 0, expired) and 64..99 (hour 10)
    # are the set; live at hour 25: buyer 0 and the 36 of hour 10.
    assert device_buyers[-1] == 37
