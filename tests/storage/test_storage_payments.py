"""Payments, attempts, the outbox and webhook events (schema version 3) on both backends: rows
are written whole and the last staged wins, and ``load()`` returns what a restart needs."""

from dataclasses import replace

from pyorder.kernel.outbox import OutboxItem, OutboxKind
from pyorder.model import WriteBatch
from pyorder.payments.model import (
    Attempt,
    AttemptStatus,
    Payment,
    PaymentStatus,
    RefundStatus,
    WebhookEvent,
)
from pyorder.storage.base import Store

from .backends import Backend

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


def test_payment_rows_round_trip_and_upsert(store: Backend) -> None:
    async def body(s: Store) -> None:
        first = WriteBatch(
            payments={7: PAYMENT},
            attempts={(7, 1): ATTEMPT},
            outbox={CHARGE.key: CHARGE},
            webhook_events=[WebhookEvent("card1", "evt_1", "payment_intent.created", 5)],
        )
        await s.commit(first)
        snap = await s.load()
        assert snap.payments == [PAYMENT]
        assert snap.attempts == [ATTEMPT]
        assert snap.outbox == [CHARGE]
        assert await s.webhook_event_seen("card1", "evt_1")
        assert not await s.webhook_event_seen("card2", "evt_1")

        paid = replace(PAYMENT, status=PaymentStatus.CHARGED, charged=999, paid_attempt=1)
        done = replace(
            ATTEMPT, status=AttemptStatus.SUCCEEDED, provider_payment_id="pi_1", amount_received=999
        )
        again = WriteBatch(
            payments={7: paid},
            attempts={(7, 1): done},
            outbox={CHARGE.key: replace(CHARGE, done=True, updated_ms=2)},
            # A duplicate event id is kept once and does not fail the batch.
            webhook_events=[WebhookEvent("card1", "evt_1", "payment_intent.created", 6)],
        )
        await s.commit(again)
        snap = await s.load()
        assert snap.payments == [paid]
        assert snap.attempts == [done]
        assert snap.outbox == []

    store.run(body)
