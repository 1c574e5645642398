"""Risk decisions and their reviews in the store (schema version 14): the decision of an order,
the open review queue (newest first, by merchant, paged, only orders still in review), a
review staged with its order's status change (an approval's new deadline with it), and the
labels of reviewed decisions for training."""

import asyncio
from dataclasses import replace

import asyncpg
import msgspec
import orjson
import pytest

from pyorder._core import ORDER_ID_SEQUENCE_BITS
from pyorder.model import WriteBatch
from pyorder.orders.model import OrderStatus, StatusChange
from pyorder.risk.decisions import REVIEWS, StagedReview, unpack_order_risk
from pyorder.risk.features import FEATURE_NAMES
from pyorder.risk.records import Decision, Label, Reason, ReviewOutcome
from pyorder.risk.reviews import Reviews
from pyorder.storage import stock_leases
from pyorder.storage.base import Store

from .backends import Backend
from .records import MERCHANTS, catalog, line, order, write_decisions

ALPHA, BETA = (f"merchant:{m}" for m in MERCHANTS)
IN_REVIEW, PENDING = OrderStatus.IN_REVIEW, OrderStatus.PENDING_PAYMENT


FEATURES = {"buyer_orders_1m": 3.0, "device_buyers_24h": 12.0, "amount_vs_buyer_mean": 0.25}
"""What the core keeps of a decision held for review."""


def decision(order_id: int, merchant: str = ALPHA, outcome: str = "review") -> Decision:
    """A stored decision; one held for review has its features, except 5's (held before schema
    version 18 kept them)."""
    return Decision(
        id=order_id,
        buyer="buyer-1",
        merchant=merchant,
        at_ms=1_800_000_000_000 + order_id,
        outcome=outcome,
        three_ds=order_id % 2 == 0,
        score=70 if outcome == "review" else None,
        model="gbt-2026-01" if outcome == "review" else None,
        decided_by="score" if outcome == "review" else "rule_3",
        fired=("rule_3",) if outcome != "review" else (),
        reasons=(
            Reason("device_buyers_24h", 7.0, 1.25),
            Reason("ip_region_mismatch", None, 0.5),
        ),
        features=FEATURES if outcome == "review" and order_id != 5 else None,
    )


def fill(store: Backend) -> None:
    """Orders 1-6: 1, 2, 4 and 5 in review (5 of beta's), 3 allowed and pending, 6 was in
    review and its buyer cancelled it; a blocked attempt 7 has a decision and no order."""

    async def orders(s: Store) -> None:
        await s.commit(catalog())
        await s.commit(
            WriteBatch(
                orders=[
                    order(1, status=IN_REVIEW),
                    order(2, status=IN_REVIEW),
                    order(3),
                    order(4, status=IN_REVIEW),
                    order(5, line(1), status=IN_REVIEW),
                    order(6, status=OrderStatus.CANCELLED),
                ]
            )
        )

    store.run(orders)
    write_decisions(
        store,
        [
            decision(1),
            decision(2),
            decision(3, outcome="allow"),
            decision(4),
            decision(5, BETA),
            decision(6),
            decision(7, outcome="block"),
        ],
    )


def test_a_decision_reads_back_as_written(store: Backend) -> None:
    fill(store)

    async def read(s: Store) -> tuple[Decision | None, Decision | None, Decision | None]:
        return await s.risk_decision(2), await s.risk_decision(7), await s.risk_decision(99)

    held, blocked, missing = store.run(read)
    assert held == decision(2)
    assert held.three_ds
    assert held.open
    assert held.reasons[1].value is None
    assert blocked == decision(7, outcome="block")
    assert not blocked.open
    assert missing is None


def test_the_open_queue_is_newest_first_by_merchant_and_pages(store: Backend) -> None:
    fill(store)

    async def queue(s: Store) -> tuple[list[int], ...]:
        every = await s.open_reviews("", None, 50)
        alpha = await s.open_reviews(ALPHA, None, 50)
        first = await s.open_reviews("", None, 2)
        rest = await s.open_reviews("", first[-1].id, 2)
        return tuple([d.id for d in found] for found in (every, alpha, first, rest))

    every, alpha, first, rest = store.run(queue)
    assert every == [5, 4, 2, 1]  # not 6: cancelled by its buyer; 3, 7: never held
    assert alpha == [4, 2, 1]
    assert (first, rest) == ([5, 4], [2, 1])


def test_a_review_commits_with_its_status_change(store: Backend) -> None:
    fill(store)
    at = 1_800_000_500_000
    deadline = at + 900_000

    async def review(s: Store) -> None:
        batch = WriteBatch(
            status_changes=[
                StatusChange(1, IN_REVIEW, PENDING, at),
                StatusChange(2, IN_REVIEW, OrderStatus.CANCELLED, at),
                StatusChange(4, IN_REVIEW, OrderStatus.EXPIRED, at),
            ]
        )
        part = batch.part(REVIEWS)
        part.add(StagedReview(1, ReviewOutcome.APPROVED, ALPHA, at, deadline))
        part.add(StagedReview(2, ReviewOutcome.REJECTED, "admin:ops", at))
        part.add(StagedReview(4, ReviewOutcome.EXPIRED, "system", at))
        await s.commit(batch)

    store.run(review)

    async def read(s: Store) -> tuple[list[Decision], list[int], list[Label]]:
        found = [await s.risk_decision(i) for i in (1, 2, 4)]
        orders = await s.get_orders([1, 2])
        queue = [d.id for d in await s.open_reviews("", None, 50)]
        assert orders[1].status is PENDING
        assert orders[1].deadline_ms == deadline
        assert orders[1].updated_ms == at
        assert orders[2].status is OrderStatus.CANCELLED
        assert orders[2].deadline_ms == order(2).deadline_ms  # only an approval moves it
        return [d for d in found if d is not None], queue, await s.review_labels(0, 50)

    found, queue, labels = store.run(read)
    assert [(d.review, d.reviewer, d.reviewed_ms) for d in found] == [
        (ReviewOutcome.APPROVED, ALPHA, at),
        (ReviewOutcome.REJECTED, "admin:ops", at),
        (ReviewOutcome.EXPIRED, "system", at),
    ]
    assert queue == [5]
    assert labels == [(1, 0, FEATURES), (2, 1, FEATURES)]  # the expired review teaches nothing


def test_a_second_review_does_not_overwrite_the_first(store: Backend) -> None:
    fill(store)

    async def twice(s: Store) -> Decision | None:
        for outcome, who in ((ReviewOutcome.REJECTED, ALPHA), (ReviewOutcome.APPROVED, "x")):
            batch = WriteBatch()
            batch.part(REVIEWS).add(StagedReview(5, outcome, who, 5))
            await s.commit(batch)
        return await s.risk_decision(5)

    found = store.run(twice)
    assert found is not None
    assert (found.review, found.reviewer) == (ReviewOutcome.REJECTED, ALPHA)


def test_labels_page_by_id(store: Backend) -> None:
    fill(store)

    async def label(s: Store) -> tuple[list[Label], list[Label]]:
        batch = WriteBatch()
        for oid, outcome in ((1, ReviewOutcome.REJECTED), (2, ReviewOutcome.APPROVED)):
            batch.part(REVIEWS).add(StagedReview(oid, outcome, ALPHA, 9))
        batch.part(REVIEWS).add(StagedReview(5, ReviewOutcome.REJECTED, BETA, 9))
        await s.commit(batch)
        first = await s.review_labels(0, 2)
        assert [lb[:2] for lb in await Reviews(s).labels(page=1)] == [(1, 1), (2, 0), (5, 1)]
        return first, await s.review_labels(first[-1][0], 2)

    first, second = store.run(label)
    assert first == [(1, 1, FEATURES), (2, 0, FEATURES)]
    assert second == [(5, 1, None)]  # held before its features were kept


def test_an_allowed_decision_is_never_reviewed(store: Backend) -> None:
    fill(store)

    async def review(s: Store) -> Decision | None:
        batch = WriteBatch()
        batch.part(REVIEWS).add(StagedReview(3, ReviewOutcome.APPROVED, ALPHA, 9))
        await s.commit(batch)
        return await s.risk_decision(3)

    assert store.run(review) == replace(decision(3, outcome="allow"))


def test_an_allowed_orders_decision_in_its_row_reads_packed_or_as_json(store: Backend) -> None:
    """An allowed order keeps its decision in its row: ``risk_packed`` (MessagePack, schema
    version 21, what the core writes) or, for an order placed under versions 19 and 20,
    ``risk`` (JSON text); either is read before a ``risk_decisions`` row."""
    fill(store)
    model = "0c3390a79a400244"
    text = f'[12,"{model}","default",1,["r1"],[["device_buyers_24h",7,1.25],["ip_region_mismatch",null,0.5]]]'
    store.query(f"UPDATE orders SET risk = '{text}' WHERE id = 3")
    column = [FEATURE_NAMES.index("device_buyers_24h"), FEATURE_NAMES.index("ip_region_mismatch")]
    packed = msgspec.msgpack.encode(
        [
            12,
            bytes.fromhex(model),
            0,
            True,
            ["r1"],
            [[column[0], 7, 1_250_000], [column[1], None, 500_000]],
        ]
    )
    assert len(packed) < len(text) / 2

    async def read(s: Store) -> Decision | None:
        return await s.risk_decision(3)

    want = replace(
        decision(3, outcome="allow"),
        merchant=MERCHANTS[0],  # the order's first line's
        at_ms=order(3).created_ms,
        three_ds=True,
        score=12,
        model=model,
        decided_by="default",
        fired=("r1",),
    )
    assert store.run(read) == want
    store.query(f"UPDATE orders SET risk = NULL, risk_packed = {store.blob(packed)} WHERE id = 3")
    assert store.run(read) == want
    assert unpack_order_risk(packed) == orjson.loads(text)


def test_a_take_over_expires_a_dead_nodes_reviews(store: Backend) -> None:
    """A dead cluster node's orders past their deadline, in review or awaiting payment, expire
    in the take-over's transaction (``stock_leases.expire_orphans``), their units back and their
    open reviews ``expired``; orders of other nodes, and those not due, are left."""
    if store.name == "sqlite":
        pytest.skip("cluster nodes run on PostgreSQL only")
    node = 7

    def oid(n: int, of: int = node) -> int:
        return (of << ORDER_ID_SEQUENCE_BITS) | n

    due, later, paying, other = oid(1), oid(2), oid(3), oid(4, of=8)

    async def body(s: Store) -> None:
        await s.commit(catalog())
        batch = WriteBatch(
            orders=[
                replace(order(due, status=IN_REVIEW), deadline_ms=1_000),
                order(later, status=IN_REVIEW),
                replace(order(paying), deadline_ms=1_000),
                replace(order(other, status=IN_REVIEW), deadline_ms=1_000),
            ]
        )
        batch.add_delta(0, 0, 0, 4, 0)
        await s.commit(batch)

    store.run(body)
    write_decisions(store, [decision(i) for i in (due, later, other)])

    async def take_over() -> int:
        conn = await asyncpg.connect(store.location)
        try:
            async with conn.transaction():
                return await stock_leases.expire_orphans(conn, node)
        finally:
            await conn.close()

    assert asyncio.run(take_over()) == 2
    rows = store.query(f"SELECT id, status FROM orders WHERE id >= {due} ORDER BY id")
    assert rows == [
        (due, "expired"),
        (later, "in_review"),
        (paying, "expired"),
        (other, "in_review"),
    ]
    reviews = store.query(
        f"SELECT id, review, reviewer FROM risk_decisions WHERE id >= {due} ORDER BY id"
    )
    assert reviews == [(due, "expired", "system"), (later, None, None), (other, None, None)]
    assert store.query("SELECT reserved FROM stock WHERE sku = 0 AND warehouse = 0") == [(2,)]
