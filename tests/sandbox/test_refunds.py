"""Refunds: partial and full, never more than was charged, idempotent, settling over time."""

from typing import Any

from sandbox.payment.config import PaymentFaults, PaymentSettings
from tests.sandbox.support import Api, eventually, new_key, payment_sandbox

PAID = {
    "amount": 10000,
    "currency": "CNY",
    "payment_method": "pm_card_visa",
    "confirm": True,
    "metadata": {"order_id": "42"},
}


async def _paid(api: Api) -> Any:
    intent = await api.ok("POST", "/v1/payment_intents", PAID, key=new_key())
    assert intent["status"] == "succeeded"
    return intent


async def test_partial_refunds_up_to_what_was_charged_and_no_more() -> None:
    async with payment_sandbox() as api:
        intent = await _paid(api)
        first = await api.ok(
            "POST", "/v1/refunds", {"payment_intent": intent["id"], "amount": 3000}, key=new_key()
        )
        assert first["status"] == "succeeded"
        assert (first["amount"], first["charge"]) == (3000, intent["latest_charge"])
        too_much = await api.post(
            "/v1/refunds", {"payment_intent": intent["id"], "amount": 7001}, key=new_key()
        )
        assert (too_much.status, too_much.error_code) == (422, "amount_too_large")
        details = too_much.json()["error"]["details"]
        assert (details["refundable"], details["charged"]) == (7000, 10000)
        rest = await api.ok("POST", "/v1/refunds", {"payment_intent": intent["id"]})
        assert rest["amount"] == 7000
        done = await api.post("/v1/refunds", {"payment_intent": intent["id"], "amount": 1})
        assert (done.status, done.error_code) == (409, "charge_already_refunded")
        now = await api.ok("GET", f"/v1/payment_intents/{intent['id']}")
        assert (now["amount_received"], now["amount_refunded"]) == (10000, 10000)
        ledger = await api.ledger()
        assert [r["amount"] for r in ledger["refunds"]] == [3000, 7000]
        assert ledger["totals"]["CNY"] == {"charged": 10000, "refunded": 10000, "refund_pending": 0}


async def test_a_refund_with_the_same_key_is_made_once() -> None:
    async with payment_sandbox() as api:
        intent = await _paid(api)
        key = new_key()
        body = {"payment_intent": intent["id"], "amount": 2500, "reason": "requested_by_customer"}
        first = await api.post("/v1/refunds", body, key=key)
        second = await api.post("/v1/refunds", body, key=key)
        assert first.status == second.status == 200
        assert second.body == first.body
        assert second.headers["Idempotent-Replayed"] == "true"
        other = await api.post("/v1/refunds", body | {"amount": 2600}, key=key)
        assert (other.status, other.error_code) == (422, "idempotency_key_reused")
        [refund] = (await api.ledger())["refunds"]
        assert (refund["amount"], refund["idempotency_key"]) == (2500, key)


async def test_only_a_succeeded_payment_is_refunded() -> None:
    async with payment_sandbox() as api:
        unpaid = await api.ok("POST", "/v1/payment_intents", {"amount": 500, "currency": "CNY"})
        refused = await api.post("/v1/refunds", {"payment_intent": unpaid["id"]})
        assert (refused.status, refused.error_code) == (409, "charge_not_refundable")
        missing = await api.post("/v1/refunds", {"payment_intent": "pi_missing"})
        assert (missing.status, missing.error_code) == (404, "resource_missing")
        assert (await api.ledger())["refunds"] == []


async def test_a_pending_refund_counts_against_what_is_refundable_until_it_settles() -> None:
    settings = PaymentSettings(refund_settle_s=0.2)
    async with payment_sandbox(settings=settings) as api:
        intent = await _paid(api)
        refund = await api.ok(
            "POST", "/v1/refunds", {"payment_intent": intent["id"], "amount": 6000}
        )
        assert refund["status"] == "pending"
        over = await api.post("/v1/refunds", {"payment_intent": intent["id"], "amount": 4001})
        assert over.status == 422
        pending = (await api.ledger())["totals"]["CNY"]
        assert (pending["refunded"], pending["refund_pending"]) == (0, 6000)

        async def settled() -> bool:
            now = await api.ok("GET", f"/v1/refunds/{refund['id']}")
            return bool(now["status"] == "succeeded")

        await eventually(settled)
        intent_now = await api.ok("GET", f"/v1/payment_intents/{intent['id']}")
        assert intent_now["amount_refunded"] == 6000


async def test_a_failed_refund_gives_the_amount_back_to_refund() -> None:
    faults = PaymentFaults(refund_failure_rate=1.0)
    async with payment_sandbox(faults=faults) as api:
        intent = await _paid(api)
        failed = await api.ok("POST", "/v1/refunds", {"payment_intent": intent["id"]})
        assert failed["status"] == "failed"
        assert failed["failure_reason"] == "expired_or_canceled_card"
        await api.faults(refund_failure_rate=0.0)
        retried = await api.ok("POST", "/v1/refunds", {"payment_intent": intent["id"]})
        assert (retried["status"], retried["amount"]) == ("succeeded", 10000)
        ledger = await api.ledger()
        assert [r["status"] for r in ledger["refunds"]] == ["failed", "succeeded"]
        assert ledger["totals"]["CNY"]["refunded"] == 10000
