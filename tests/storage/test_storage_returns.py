"""Returns and their lightning decisions (schema version 6) on both backends: rows are written
whole in the batch's transaction with the booking owed (outbox), the last staged wins,
``load()`` returns what a restart needs, a SKU keeps its category, and the buyer's delivered
orders are counted for the rules."""

from dataclasses import replace

import pytest

from pyorder.catalog.model import Sku
from pyorder.kernel.outbox import OutboxItem, OutboxKind
from pyorder.logistics.model import Fulfilment, FulfilmentStatus
from pyorder.logistics.storage import LOGISTICS
from pyorder.model import WriteBatch
from pyorder.payments.model import Payment, PaymentStatus
from pyorder.payments.storage import PAYMENTS
from pyorder.returns.model import (
    CostBearer,
    Decision,
    ParcelStatus,
    Return,
    ReturnLine,
    ReturnStatus,
    RuleResult,
    Stage,
)
from pyorder.returns.storage import RETURNS
from pyorder.storage.base import StorageError, Store
from pyorder.storage.outbox import OUTBOX

from .backends import Backend
from .records import with_outbox

RETURN = Return(
    id=1,
    order_id=7,
    buyer="bob",
    merchant="merchant:seller",
    warehouse=0,
    status=ReturnStatus.REQUESTED,
    reason="too small",
    lines=(ReturnLine(3, 2, 999, "apparel"), ReturnLine(4, 1, 50, "")),
    amount=2048,
    currency="CNY",
    carrier="swift",
    idempotency_key="pyorder-return-1",
    carrier_shipment_id="",
    tracking_number="",
    shipping_cost=0,
    cost_borne_by=CostBearer.PLATFORM,
    parcel_status=ParcelStatus.PENDING,
    last_sequence=0,
    refund_number=0,
    reviewed_by="",
    review_reason="",
    error="",
    created_ms=5,
    updated_ms=5,
    picked_up_ms=0,
    refunded_ms=0,
    arrived_ms=0,
    restocked_ms=0,
)
OPENED = Decision(
    1,
    Stage.OPENED,
    False,
    (
        RuleResult("refund_amount", False, 2048, 1000),
        RuleResult("category", True, "apparel", "electronics"),
        RuleResult("order_amount", True, 2048, ""),
    ),
    5,
)
BOOKING = OutboxItem(7, 1, OutboxKind.RETURN_BOOKING, done=False, created_ms=5, updated_ms=5)


def _batch(
    returns: dict[int, Return],
    decisions: dict[tuple[int, str], Decision],
    outbox: dict[tuple[int, int, str], OutboxItem],
) -> WriteBatch:
    """A batch of returns and decisions (the returns part) with outbox rows."""
    batch = with_outbox(*outbox.values())
    staged = batch.part(RETURNS)
    staged.returns.update(returns)
    staged.decisions.update(decisions)
    return batch


def test_return_rows_round_trip_and_upsert(store: Backend) -> None:
    async def body(s: Store) -> None:
        await s.commit(_batch({1: RETURN}, {(1, "opened"): OPENED}, outbox={BOOKING.key: BOOKING}))
        snap = await s.load()
        assert (snap.part(RETURNS).returns, snap.part(RETURNS).decisions, snap.part(OUTBOX)) == (
            [RETURN],
            [OPENED],
            [BOOKING],
        )
        booked = replace(
            RETURN,
            status=ReturnStatus.IN_REVIEW,
            parcel_status=ParcelStatus.PICKED_UP,
            tracking_number="SWIF000000000001",
            shipping_cost=1200,
            last_sequence=1,
            picked_up_ms=9,
            updated_ms=9,
        )
        picked = replace(OPENED, stage=Stage.PICKED_UP, decided_ms=9)
        await s.commit(
            _batch(
                {1: booked},
                {(1, "picked_up"): picked},
                outbox={BOOKING.key: replace(BOOKING, done=True)},
            )
        )
        snap = await s.load()
        assert (snap.part(RETURNS).returns, snap.part(RETURNS).decisions, snap.part(OUTBOX)) == (
            [booked],
            [OPENED, picked],
            [],
        )

    store.run(body)


def test_a_return_is_refunded_by_an_amount_above_zero(store: Backend) -> None:
    """The table refuses a return worth nothing; the whole batch with it is not written."""

    async def body(s: Store) -> None:
        with pytest.raises(StorageError):
            await s.commit(
                _batch({1: replace(RETURN, amount=0)}, {}, outbox={BOOKING.key: BOOKING})
            )
        snap = await s.load()
        assert (snap.part(RETURNS).returns, snap.part(OUTBOX)) == ([], [])

    store.run(body)


def test_sku_category_and_delivered_orders_of_a_buyer(store: Backend) -> None:
    def paid(order_id: int, buyer: str, attempt: int) -> Payment:
        status = PaymentStatus.CHARGED if attempt else PaymentStatus.PENDING
        return Payment(order_id, buyer, "CNY", 10, "card", status, 10, 10, 0, 1, attempt, "", 1, 1)

    def fulfilment(order_id: int, status: FulfilmentStatus) -> Fulfilment:
        return Fulfilment(order_id, 1, status, -1, 1, 2, 1, 2)

    async def body(s: Store) -> None:
        sku = Sku(0, "merchant:seller", "shirt", 999, "CNY", 0, 1, category="apparel")
        batch = WriteBatch(skus=[sku])
        batch.part(PAYMENTS).payments.update(
            {
                1: paid(1, "bob", 1),
                2: paid(2, "bob", 1),
                3: paid(3, "bob", 0),
                4: paid(4, "eve", 1),
            }
        )
        batch.part(LOGISTICS).fulfilments.update(
            {
                1: fulfilment(1, FulfilmentStatus.DELIVERED),
                2: fulfilment(2, FulfilmentStatus.SHIPPED),
                3: fulfilment(3, FulfilmentStatus.DELIVERED),
                4: fulfilment(4, FulfilmentStatus.DELIVERED),
            }
        )
        await s.commit(batch)
        assert await s.get_sku(0) == sku
        assert (await s.load()).skus == [sku]
        # Paid and every parcel delivered: bob's order 1 only (2 is on its way, 3 unpaid).
        assert await s.delivered_orders("bob") == 1
        assert await s.delivered_orders("eve") == 1
        assert await s.delivered_orders("nobody") == 0

    store.run(body)


def test_returns_are_listed_by_buyer_merchant_and_status_a_page_at_a_time(store: Backend) -> None:
    async def body(s: Store) -> None:
        rows = {
            i: replace(
                RETURN,
                id=i,
                buyer="bob" if i % 2 else "ann",
                merchant="merchant:seller" if i < 5 else "merchant:other",
                status=ReturnStatus.REFUNDED if i % 3 == 0 else ReturnStatus.REQUESTED,
            )
            for i in range(1, 9)
        }
        await s.commit(_batch(rows, {}, outbox={}))

        async def ids(**query: object) -> list[int]:
            found = await s.list_returns(
                **{"buyer": "", "merchant": "", "status": "", "after": 0, "limit": 50, **query}  # type: ignore[arg-type]
            )
            assert found == [rows[r.id] for r in found]  # whole rows, decoded
            return [r.id for r in found]

        assert await ids() == list(range(1, 9))
        assert await ids(buyer="bob") == [1, 3, 5, 7]
        assert await ids(merchant="merchant:other") == [5, 6, 7, 8]
        assert await ids(status="refunded") == [3, 6]
        assert await ids(buyer="ann", status="refunded") == [6]
        assert await ids(after=2, limit=3) == [3, 4, 5]
        assert await ids(buyer="eve") == []

    store.run(body)
