"""Races: many Python threads on one hot SKU must neither oversell nor resolve anything twice.

``reserve_batch`` / ``confirm_batch`` / ``release_batch`` release the GIL, so threads using them
really run in parallel with each other and with threads making single calls.
"""

from __future__ import annotations

import contextlib
import random
import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import numpy as np
import pytest

from pyorder.inventory import (
    Inventory,
    OutOfStockError,
    PurchaseLimitError,
    ReservationResolvedError,
    ReserveStatus,
)

T0 = 1_767_225_600_000
DAY_MS = 86_400_000
THREADS = 8
R = TypeVar("R")


def run_threads(n: int, work: Callable[[int], R]) -> list[R]:
    """Run ``work(i)`` for i in range(n) on n threads released together; re-raise failures."""
    barrier = threading.Barrier(n)

    def start(i: int) -> R:
        barrier.wait()
        return work(i)

    with ThreadPoolExecutor(n) as pool:
        return [f.result() for f in [pool.submit(start, i) for i in range(n)]]


@pytest.mark.parametrize("shards", [1, 64])
def test_threads_reserve_exactly_the_stock_of_a_hot_sku(shards: int) -> None:
    units = 60_000
    inv = Inventory(shards=shards)
    sku = inv.add_sku(units)
    inv.add_skus(np.full(100, 10, dtype=np.int64))  # neighbours in other shards

    def reserve_until_sold_out(t: int) -> list[tuple[int, int]]:
        """(reservation id, units) of every reservation this thread made."""
        mine: list[tuple[int, int]] = []
        quantities = np.array([1 + (i + t) % 3 for i in range(256)], dtype=np.uint32)
        skus = np.full(len(quantities), sku, dtype=np.uint32)
        i = 0
        while inv.stock(sku).available > 0:
            if t % 2 == 0:  # batches, with the GIL released
                result = inv.reserve_batch(skus, quantities, timeout_ms=DAY_MS, now_ms=T0)
                ok = result.status == ReserveStatus.OK
                assert set(result.status[~ok].tolist()) <= {ReserveStatus.OUT_OF_STOCK}
                mine += zip(result.reservation[ok].tolist(), quantities[ok].tolist(), strict=True)
            else:  # single calls
                qty = 1 + (i + t) % 3
                i += 1
                with contextlib.suppress(OutOfStockError):
                    mine.append((inv.reserve(sku, qty, timeout_ms=DAY_MS, now_ms=T0), qty))
            level = inv.stock(sku)
            assert level.available >= 0
            assert level.on_hand == units
        return mine

    per_thread = run_threads(THREADS, reserve_until_sold_out)
    made = [r for rs in per_thread for r in rs]
    ids = [rid for rid, _ in made]
    assert len(set(ids)) == len(ids), "a reservation id was handed out twice"
    assert sum(qty for _, qty in made) == units
    level = inv.stock(sku)
    assert (level.on_hand, level.available, level.reserved, level.sold) == (units, 0, units, 0)
    assert inv.open_reservations == len(made)
    inv.check_invariants()


def test_concurrent_confirm_and_release_resolve_each_reservation_once() -> None:
    units = 20_000
    inv = Inventory()
    sku = inv.add_sku(units)
    ids = inv.reserve_batch(
        np.full(units // 2, sku, dtype=np.uint32),
        np.full(units // 2, 2, dtype=np.uint32),
        timeout_ms=DAY_MS,
        now_ms=T0,
    ).reservation.tolist()
    assert 0 not in ids
    assert inv.stock(sku).reserved == units

    def resolve_everything(t: int) -> list[tuple[int, str]]:
        """Try to resolve every reservation, in this thread's own order; return the wins."""
        order = ids[:]
        random.Random(t).shuffle(order)
        wins: list[tuple[int, str]] = []
        lost_to: set[str] = set()
        action = ["confirm", "release"][t % 2]
        if t < 4:  # single calls: the losers get ReservationResolvedError
            for rid in order:
                try:
                    if action == "confirm":
                        inv.confirm(rid, now_ms=T0)
                    else:
                        inv.release(rid, now_ms=T0)
                except ReservationResolvedError as exc:
                    lost_to.add(exc.state)
                else:
                    wins.append((rid, action))
        else:  # batches with the GIL released
            call = inv.confirm_batch if action == "confirm" else inv.release_batch
            for chunk in range(0, len(order), 500):
                part = order[chunk : chunk + 500]
                statuses = call(np.array(part, dtype=np.uint64), now_ms=T0)
                assert set(statuses.tolist()) <= {
                    ReserveStatus.OK,
                    ReserveStatus.ALREADY_CONFIRMED,
                    ReserveStatus.ALREADY_RELEASED,
                }
                wins += [(rid, action) for rid, s in zip(part, statuses, strict=True) if s == 0]
        assert lost_to <= {"confirmed", "released"}
        return wins

    per_thread = run_threads(THREADS, resolve_everything)
    wins = [w for ws in per_thread for w in ws]
    count = Counter(rid for rid, _ in wins)
    assert set(count) == set(ids), "some reservation never resolved"
    assert max(count.values()) == 1, "some reservation resolved twice"
    confirmed = [rid for rid, action in wins if action == "confirm"]
    for rid, action in wins[:200]:
        assert inv.reservation_state(rid) == ("confirmed" if action == "confirm" else "released")
    level = inv.stock(sku)
    sold = 2 * len(confirmed)
    assert (level.on_hand, level.available, level.reserved, level.sold) == (
        units,
        units - sold,
        0,
        sold,
    )
    assert inv.open_reservations == 0
    inv.check_invariants()


def test_concurrent_expiry_and_confirm_resolve_each_reservation_once() -> None:
    inv = Inventory()
    sku = inv.add_sku(10_000)
    ids = inv.reserve_batch(
        np.full(10_000, sku, dtype=np.uint32),
        np.ones(10_000, dtype=np.uint32),
        timeout_ms=100,
        now_ms=T0,
    ).reservation.tolist()

    def work(t: int) -> list[int]:
        if t == 0:
            expired: list[int] = []
            while batch := inv.expire_due(T0 + 100, limit=64).tolist():
                expired += batch
            return expired
        # confirms before the deadline: whichever comes first wins
        statuses = inv.confirm_batch(np.array(ids[t - 1 :: 3], dtype=np.uint64), now_ms=T0 + 99)
        return [rid for rid, s in zip(ids[t - 1 :: 3], statuses, strict=True) if s == 0]

    expired, *confirmed_parts = run_threads(4, work)
    confirmed = [rid for part in confirmed_parts for rid in part]
    assert not set(expired) & set(confirmed)
    assert len(expired) + len(confirmed) == len(ids)
    level = inv.stock(sku)
    assert (level.available, level.reserved, level.sold) == (len(expired), 0, len(confirmed))
    inv.check_invariants()


def test_no_buyer_exceeds_the_limit_on_a_hot_sku() -> None:
    limit = 5
    buyers = 40
    inv = Inventory()
    sku = inv.add_sku(1_000_000, limit_per_buyer=limit)

    def hammer(t: int) -> Counter[int]:
        """Reserve (and confirm half of it) for every buyer; count the units won per buyer."""
        won: Counter[int] = Counter()
        limits_seen: set[int] = set()
        rng = random.Random(t)
        for _ in range(60):
            if t % 2 == 0:
                buyer_ids = np.array([rng.randrange(buyers) for _ in range(64)], dtype=np.uint64)
                qty = np.array([rng.randint(1, 2) for _ in range(64)], dtype=np.uint32)
                result = inv.reserve_batch(
                    np.full(64, sku, dtype=np.uint32),
                    qty,
                    buyers=buyer_ids,
                    timeout_ms=DAY_MS,
                    now_ms=T0,
                )
                ok = result.status == ReserveStatus.OK
                assert set(result.status[~ok].tolist()) <= {ReserveStatus.LIMIT_EXCEEDED}
                for b, q in zip(buyer_ids[ok].tolist(), qty[ok].tolist(), strict=True):
                    won[b] += q
                inv.confirm_batch(np.ascontiguousarray(result.reservation[ok][::2]), now_ms=T0)
            else:
                buyer = rng.randrange(buyers)
                qty_one = rng.randint(1, 2)
                try:
                    rid = inv.reserve(sku, qty_one, buyer=buyer, timeout_ms=DAY_MS, now_ms=T0)
                except PurchaseLimitError as exc:
                    limits_seen.add(exc.limit)
                else:
                    won[buyer] += qty_one
                    if rng.random() < 0.5:
                        inv.confirm(rid, now_ms=T0)
        assert limits_seen <= {limit}
        return won

    total: Counter[int] = Counter()
    for won in run_threads(THREADS, hammer):
        total.update(won)
    assert max(total.values()) <= limit
    for buyer in range(buyers):
        assert inv.bought_by(sku, buyer) == total[buyer]
    level = inv.stock(sku)
    assert level.reserved + level.sold == sum(total.values())
    inv.check_invariants()
