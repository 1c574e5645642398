"""Payment events pushed to a real receiver: signed, retried, duplicated, reordered on demand."""

import itertools
import time
from typing import Any

import pytest

from pyorder.kernel.signing import SignatureMismatch, StaleSignature, verify
from sandbox.payment.config import PaymentFaults, PaymentSettings
from sandbox.webhooks import RetryPolicy
from tests.sandbox.receiver import Received, webhook_receiver
from tests.sandbox.support import PAYMENT_SECRET, Api, eventually, new_key, payment_sandbox

PAY = {
    "amount": 5000,
    "currency": "CNY",
    "payment_method": "pm_card_visa",
    "confirm": True,
    "metadata": {"order_id": "77"},
}


async def _delivered(api: Api, count: int) -> list[Any]:
    """The ledger's webhooks once ``count`` of them are delivered."""

    async def done() -> bool:
        hooks = (await api.ledger())["webhooks"]
        return len([h for h in hooks if h["state"] == "delivered"]) >= count

    await eventually(done)
    return list((await api.ledger())["webhooks"])


def _types(received: list[Received]) -> list[str]:
    return [r.event["type"] for r in received]


async def test_events_are_signed_with_the_providers_secret_and_carry_ids() -> None:
    async with webhook_receiver() as hooks, payment_sandbox(hooks.url("alpha")) as api:
        intent = await api.ok("POST", "/v1/payment_intents", PAY, key=new_key())
        await api.ok("POST", "/v1/refunds", {"payment_intent": intent["id"], "amount": 1000})
        expected = [
            "payment_intent.created",
            "payment_intent.succeeded",
            "refund.created",
            "refund.succeeded",
            "charge.refunded",
        ]
        await hooks.wait_for(lambda: len(hooks.accepted("alpha")) == len(expected))
        received = hooks.accepted("alpha")
        assert _types(received) == expected
        for delivery in received:
            assert delivery.provider == "alpha"
            assert abs(verify(delivery.body, delivery.signature, PAYMENT_SECRET) - time.time()) < 5
            event = delivery.event
            assert event["id"].startswith("evt_")
            assert event["object"] == "event"
            assert event["provider"] == "alpha"
            assert abs(event["created"] - time.time()) < 5
        assert len({r.event["id"] for r in received}) == len(expected)
        succeeded = received[1].event["data"]["object"]
        assert (succeeded["id"], succeeded["status"], succeeded["amount_received"]) == (
            intent["id"],
            "succeeded",
            5000,
        )
        assert received[4].event["data"]["object"]["amount_refunded"] == 1000
        ledger = await _delivered(api, len(expected))
        assert [h["id"] for h in ledger] == [r.event["id"] for r in received]


async def test_tampered_stale_or_foreign_deliveries_fail_verification() -> None:
    async with webhook_receiver() as hooks, payment_sandbox(hooks.url("alpha")) as api:
        await api.ok("POST", "/v1/payment_intents", PAY)
        await hooks.wait_for(lambda: len(hooks.accepted("alpha")) == 2)
        delivery = hooks.accepted("alpha")[1]
        assert delivery.signature is not None
        timestamp = verify(delivery.body, delivery.signature, PAYMENT_SECRET)
        tampered = delivery.body.replace(b'"amount":5000', b'"amount":1')
        assert tampered != delivery.body
        with pytest.raises(SignatureMismatch):
            verify(tampered, delivery.signature, PAYMENT_SECRET)
        with pytest.raises(SignatureMismatch):
            verify(delivery.body, delivery.signature, "whsec_someone_else")
        with pytest.raises(StaleSignature):
            verify(delivery.body, delivery.signature, PAYMENT_SECRET, now=timestamp + 301)


async def test_failed_deliveries_are_retried_with_backoff_then_in_order() -> None:
    retry = RetryPolicy(base_delay_s=0.05, max_delay_s=1.0, timeout_s=2.0)
    async with webhook_receiver() as hooks, payment_sandbox(hooks.url("alpha"), retry=retry) as api:
        hooks.answer("alpha", 500, 503, 404)
        await api.ok("POST", "/v1/payment_intents", PAY)
        await hooks.wait_for(lambda: len(hooks.accepted("alpha")) == 2)
        attempts = hooks.at("alpha")
        assert [a.status for a in attempts] == [500, 503, 404, 200, 200]
        assert _types(attempts) == ["payment_intent.created"] * 4 + ["payment_intent.succeeded"]
        gaps = [b.at - a.at for a, b in itertools.pairwise(attempts[:4])]
        # 50 ms, 100 ms, 200 ms: exponential (a little slack for the clock).
        for gap, wait in zip(gaps, [0.05, 0.1, 0.2], strict=True):
            assert gap >= wait * 0.9
        # Each attempt is signed afresh, and every one verifies.
        for attempt in attempts:
            verify(attempt.body, attempt.signature, PAYMENT_SECRET)
        [created, _] = await _delivered(api, 2)
        assert (created["attempts"], created["deliveries"]) == (4, 1)
        assert created["statuses"] == [500, 503, 404, 200]


async def test_a_delivery_that_never_succeeds_is_given_up() -> None:
    retry = RetryPolicy(max_attempts=3, base_delay_s=0.01, timeout_s=1.0)
    async with webhook_receiver() as hooks, payment_sandbox(hooks.url("alpha"), retry=retry) as api:
        hooks.answer("alpha", 500, 500, 500)
        await api.ok("POST", "/v1/payment_intents", PAY)
        [created, succeeded] = await _delivered(api, 1)
        assert (created["state"], created["attempts"], created["last_status"]) == ("failed", 3, 500)
        assert succeeded["state"] == "delivered"


async def test_an_unreachable_endpoint_is_retried_then_given_up() -> None:
    retry = RetryPolicy(max_attempts=2, base_delay_s=0.01, timeout_s=1.0)
    async with payment_sandbox("http://127.0.0.1:9/hooks", retry=retry) as api:
        await api.ok("POST", "/v1/payment_intents", PAY)

        async def given_up() -> bool:
            hooks = (await api.ledger())["webhooks"]
            return all(h["state"] == "failed" for h in hooks)

        await eventually(given_up)
        [hook, _] = (await api.ledger())["webhooks"]
        assert hook["last_status"] is None
        assert "Connect" in hook["last_error"]


async def test_duplicate_delivery_sends_the_same_event_twice() -> None:
    faults = PaymentFaults(duplicate_webhook_rate=1.0)
    async with (
        webhook_receiver() as hooks,
        payment_sandbox(hooks.url("alpha"), faults=faults) as api,
    ):
        await api.ok("POST", "/v1/payment_intents", PAY)
        await hooks.wait_for(lambda: len(hooks.accepted("alpha")) == 4)
        received = hooks.accepted("alpha")
        ids = [r.event["id"] for r in received]
        assert ids[0] == ids[1] != ids[2] == ids[3]
        assert received[0].body == received[1].body
        for delivery in received:
            verify(delivery.body, delivery.signature, PAYMENT_SECRET)
        hooks_ledger = await _delivered(api, 2)
        assert [h["deliveries"] for h in hooks_ledger] == [2, 2]


async def test_out_of_order_delivery_lets_a_later_event_overtake() -> None:
    faults = PaymentFaults(reorder_webhook_rate=1.0)
    async with (
        webhook_receiver() as hooks,
        payment_sandbox(hooks.url("alpha"), faults=faults) as api,
    ):
        await api.ok("POST", "/v1/payment_intents", PAY)
        await hooks.wait_for(lambda: len(hooks.accepted("alpha")) == 2)
        assert _types(hooks.accepted("alpha")) == [
            "payment_intent.succeeded",
            "payment_intent.created",
        ]
        ledger = await api.ledger()
        assert [h["type"] for h in ledger["webhooks"]] == [
            "payment_intent.created",
            "payment_intent.succeeded",
        ]


async def test_a_lone_held_back_event_is_still_delivered() -> None:
    faults = PaymentFaults(reorder_webhook_rate=1.0)
    retry = RetryPolicy(reorder_hold_s=0.1)
    async with (
        webhook_receiver() as hooks,
        payment_sandbox(hooks.url("alpha"), faults=faults, retry=retry) as api,
    ):
        await api.ok("POST", "/v1/payment_intents", {"amount": 100, "currency": "CNY"})
        await hooks.wait_for(lambda: len(hooks.accepted("alpha")) == 1)
        assert _types(hooks.accepted("alpha")) == ["payment_intent.created"]


async def test_events_without_a_url_are_recorded_and_the_url_can_be_set_later() -> None:
    async with webhook_receiver() as hooks, payment_sandbox() as api:
        await api.ok("POST", "/v1/payment_intents", PAY)

        async def recorded() -> bool:
            return [h["state"] for h in (await api.ledger())["webhooks"]] == ["unsent", "unsent"]

        await eventually(recorded)
        assert await api.ok("GET", "/_sandbox/webhook") == {"url": None}
        await api.ok("POST", "/_sandbox/webhook", {"url": hooks.url("late")})
        await api.ok("POST", "/v1/payment_intents", PAY)
        await hooks.wait_for(lambda: len(hooks.accepted("late")) == 2)
        bad = await api.post("/_sandbox/webhook", {"url": "ftp://x"})
        assert bad.status == 422


async def test_several_providers_side_by_side() -> None:
    async with (
        webhook_receiver() as hooks,
        payment_sandbox(
            hooks.url("cards"),
            name="cards",
            secret="whsec_cards",
            settings=PaymentSettings(methods=("card",)),
        ) as cards,
        payment_sandbox(
            hooks.url("wallets"),
            name="wallets",
            secret="whsec_wallets",
            settings=PaymentSettings(methods=("wallet",)),
        ) as wallets,
    ):
        assert (await cards.post("/v1/payment_intents", PAY)).status == 200
        wallet_pay = PAY | {"payment_method": "pm_wallet"}
        assert (await cards.post("/v1/payment_intents", wallet_pay)).status == 422
        assert (await wallets.post("/v1/payment_intents", wallet_pay)).status == 200
        await hooks.wait_for(
            lambda: len(hooks.accepted("cards")) == 2 == len(hooks.accepted("wallets"))
        )
        for endpoint, secret, other in [
            ("cards", "whsec_cards", "whsec_wallets"),
            ("wallets", "whsec_wallets", "whsec_cards"),
        ]:
            for delivery in hooks.accepted(endpoint):
                assert delivery.provider == endpoint
                verify(delivery.body, delivery.signature, secret)
                with pytest.raises(SignatureMismatch):
                    verify(delivery.body, delivery.signature, other)
        assert (await cards.ledger())["provider"] == "cards"
        assert len((await cards.ledger())["charges"]) == 1
        assert len((await wallets.ledger())["charges"]) == 1
