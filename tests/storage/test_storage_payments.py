"""Payments, attempts, the outbox and webhook events (schema version 3; the attempts' ``three_ds``
of version 15) on both backends: rows
are written whole and the last staged wins, and ``load()`` returns what a restart needs."""

from dataclasses import replace

from pyorder.kernel.inbox import WebhookEvent
from pyorder.kernel.outbox import OutboxItem, OutboxKind
from pyorder.model import WriteBatch
from pyorder.payments.model import (
    Attempt,
    AttemptStatus,
    Payment,
    PaymentStatus,
    RefundStatus,
)
from pyorder.payments.storage import PAYMENTS
from pyorder.storage.base import Store
from pyorder.storage.outbox import OUTBOX

from .backends import Backend
from .records import with_outbox

PAYMENT = Payment(
    order_id=7,
    buyer="b-1",
    currency="CNY",
    amount=999,
    method="card",
    status=PaymentStatus.PENDING,
    authorized=0,
    charged=0,
    refunded=0,
    attempts=1,
    paid_attempt=0,
    flag="",
    created_ms=1,
    updated_ms=1,
)
ATTEMPT = Attempt(
    order_id=7,
    number=1,
    provider="card1",
    method="card",
    payment_method="pm_card_visa",
    idempotency_key="pyorder-7-1",
    provider_payment_id="",
    status=AttemptStatus.PENDING,
    amount=999,
    currency="CNY",
    amount_received=0,
    refund_id="",
    refund_status=RefundStatus.NONE,
    amount_refunded=0,
    error="",
    created_ms=1,
    updated_ms=1,
)
CHARGE = OutboxItem(7, 1, OutboxKind.CHARGE, done=False, created_ms=1, updated_ms=1)


def staged(
    payments: dict[int, Payment],
    attempts: dict[tuple[int, int], Attempt],
    item: OutboxItem,
    webhook_events: list[WebhookEvent],
) -> WriteBatch:
    """A batch of payments and attempts (the payments part), an outbox row and webhook events
    (the shared outbox part)."""
    batch = with_outbox(item)
    batch.part(PAYMENTS).payments.update(payments)
    batch.part(PAYMENTS).attempts.update(attempts)
    batch.part(OUTBOX).webhook_events.extend(webhook_events)
    return batch


def test_payment_rows_round_trip_and_upsert(store: Backend) -> None:
    async def body(s: Store) -> None:
        first = staged(
            {7: PAYMENT},
            {(7, 1): ATTEMPT},
            CHARGE,
            [WebhookEvent("card1", "evt_1", "payment_intent.created", 5)],
        )
        await s.commit(first)
        snap = await s.load()
        assert snap.part(PAYMENTS).payments == [PAYMENT]
        assert snap.part(PAYMENTS).attempts == [ATTEMPT]
        assert snap.part(OUTBOX) == [CHARGE]
        assert await s.webhook_event_seen("card1", "evt_1")
        assert not await s.webhook_event_seen("card2", "evt_1")

        paid = replace(PAYMENT, status=PaymentStatus.CHARGED, charged=999, paid_attempt=1)
        done = replace(
            ATTEMPT,
            status=AttemptStatus.SUCCEEDED,
            provider_payment_id="pi_1",
            amount_received=999,
            three_ds=True,  # schema version 15: a bool in both stores' own types
        )
        again = staged(
            {7: paid},
            {(7, 1): done},
            replace(CHARGE, done=True, updated_ms=2),
            # A duplicate event id is kept once and does not fail the batch.
            [WebhookEvent("card1", "evt_1", "payment_intent.created", 6)],
        )
        await s.commit(again)
        snap = await s.load()
        assert snap.part(PAYMENTS).payments == [paid]
        assert snap.part(PAYMENTS).attempts == [done]
        assert snap.part(OUTBOX) == []

    store.run(body)
