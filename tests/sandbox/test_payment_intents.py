"""The payment sandbox's PaymentIntent API: the state machine, idempotency, methods, API key."""

import asyncio

import pytest

from sandbox.payment.config import PaymentFaults, PaymentSettings
from tests.sandbox.support import Api, eventually, new_key, payment_sandbox

ORDER = {"amount": 99900, "currency": "cny", "metadata": {"order_id": "7001"}}


async def test_create_then_read_a_payment_intent() -> None:
    async with payment_sandbox() as api:
        created = await api.ok("POST", "/v1/payment_intents", ORDER, key=new_key())
        assert created["id"].startswith("pi_")
        assert created["object"] == "payment_intent"
        assert created["status"] == "requires_payment_method"
        assert (created["amount"], created["currency"]) == (99900, "CNY")
        assert created["metadata"] == {"order_id": "7001"}
        assert created["payment_method_types"] == ["card", "wallet", "bank_transfer"]
        assert await api.ok("GET", f"/v1/payment_intents/{created['id']}") == created
        missing = await api.get("/v1/payment_intents/pi_nope")
        assert (missing.status, missing.error_code) == (404, "resource_missing")


async def test_confirm_charges_once_and_the_ledger_shows_it() -> None:
    async with payment_sandbox() as api:
        intent = await api.ok(
            "POST", "/v1/payment_intents", ORDER | {"payment_method": "pm_card_visa"}
        )
        assert intent["status"] == "requires_confirmation"
        key = new_key()
        paid = await api.ok("POST", f"/v1/payment_intents/{intent['id']}/confirm", key=key)
        assert paid["status"] == "succeeded"
        assert paid["amount_received"] == 99900
        assert paid["latest_charge"].startswith("ch_")
        ledger = await api.ledger()
        [charge] = ledger["charges"]
        assert charge["payment_intent"] == intent["id"]
        assert (charge["amount"], charge["currency"]) == (99900, "CNY")
        assert charge["idempotency_key"] == key
        assert charge["metadata"] == {"order_id": "7001"}
        assert ledger["totals"] == {"CNY": {"charged": 99900, "refunded": 0, "refund_pending": 0}}
        again = await api.post(f"/v1/payment_intents/{intent['id']}/confirm", key=new_key())
        assert (again.status, again.error_code) == (409, "payment_intent_unexpected_state")
        assert len((await api.ledger())["charges"]) == 1


async def test_create_with_confirm_in_one_call() -> None:
    async with payment_sandbox() as api:
        body = ORDER | {"payment_method": "pm_wallet", "confirm": True}
        paid = await api.ok("POST", "/v1/payment_intents", body, key=new_key())
        assert paid["status"] == "succeeded"
        [charge] = (await api.ledger())["charges"]
        assert charge["payment_method_type"] == "wallet"


async def test_same_key_same_body_replays_the_first_answer() -> None:
    async with payment_sandbox() as api:
        key = new_key()
        body = ORDER | {"payment_method": "pm_card_visa", "confirm": True}
        first = await api.post("/v1/payment_intents", body, key=key)
        # The same parameters in another order and spacing are the same request.
        reordered = b'{ "confirm": true, "payment_method": "pm_card_visa", ' + (
            b'"metadata": {"order_id": "7001"}, "currency": "cny", "amount": 99900}'
        )
        second = await api.post("/v1/payment_intents", raw=reordered, key=key)
        assert first.status == second.status == 200
        assert second.body == first.body
        assert second.headers.get("Idempotent-Replayed") == "true"
        assert "Idempotent-Replayed" not in first.headers
        ledger = await api.ledger()
        assert len(ledger["payment_intents"]) == 1
        assert len(ledger["charges"]) == 1


async def test_same_key_different_body_or_path_is_refused() -> None:
    async with payment_sandbox() as api:
        key = new_key()
        await api.ok("POST", "/v1/payment_intents", ORDER, key=key)
        other = await api.post("/v1/payment_intents", ORDER | {"amount": 1}, key=key)
        assert (other.status, other.error_code) == (422, "idempotency_key_reused")
        intent = (await api.ledger())["payment_intents"][0]
        elsewhere = await api.post(f"/v1/payment_intents/{intent['id']}/cancel", key=key)
        assert (elsewhere.status, elsewhere.error_code) == (422, "idempotency_key_reused")
        assert len((await api.ledger())["payment_intents"]) == 1


async def test_a_duplicate_while_the_first_runs_is_409() -> None:
    async with payment_sandbox(faults=PaymentFaults(latency_ms=300)) as api:
        key = new_key()
        first = asyncio.create_task(api.post("/v1/payment_intents", ORDER, key=key))
        await asyncio.sleep(0.1)
        # The duplicate waits out its own latency, then finds the first one still running.
        await api.faults(latency_ms=0)
        second = await api.post("/v1/payment_intents", ORDER, key=key)
        assert (second.status, second.error_code) == (409, "idempotency_key_in_use")
        assert (await first).status == 200
        third = await api.post("/v1/payment_intents", ORDER, key=key)
        assert third.headers.get("Idempotent-Replayed") == "true"


async def test_invalid_requests_store_nothing_so_the_key_can_be_used_again() -> None:
    async with payment_sandbox() as api:
        key = new_key()
        bad = await api.post("/v1/payment_intents", {"amount": -5, "currency": "cny"}, key=key)
        assert (bad.status, bad.error_code) == (422, "invalid_input")
        malformed = await api.post("/v1/payment_intents", raw=b"{not json", key=key)
        assert (malformed.status, malformed.error_code) == (400, "malformed_json")
        unknown = await api.post("/v1/payment_intents", ORDER | {"colour": "red"}, key=key)
        assert unknown.status == 422
        good = await api.post("/v1/payment_intents", ORDER, key=key)
        assert good.status == 200
        assert "Idempotent-Replayed" not in good.headers


async def test_a_decline_is_stored_and_replayed_a_new_key_retries() -> None:
    async with payment_sandbox() as api:
        intent = await api.ok("POST", "/v1/payment_intents", ORDER)
        key = new_key()
        path = f"/v1/payment_intents/{intent['id']}/confirm"
        declined = await api.post(path, {"payment_method": "pm_card_chargeDeclined"}, key=key)
        assert (declined.status, declined.error_code) == (402, "card_declined")
        details = declined.json()["error"]["details"]
        assert details["decline_code"] == "generic_decline"
        assert details["payment_intent"]["status"] == "requires_payment_method"
        assert details["payment_intent"]["last_payment_error"]["code"] == "card_declined"
        replay = await api.post(path, {"payment_method": "pm_card_chargeDeclined"}, key=key)
        assert (replay.status, replay.body) == (402, declined.body)
        paid = await api.ok("POST", path, {"payment_method": "pm_card_visa"}, key=new_key())
        assert paid["status"] == "succeeded"
        assert paid["last_payment_error"] is None
        ledger = await api.ledger()
        assert [d["decline_code"] for d in ledger["declines"]] == ["generic_decline"]
        assert len(ledger["charges"]) == 1


async def test_requires_action_until_the_buyer_authenticates() -> None:
    async with payment_sandbox() as api:
        body = ORDER | {"payment_method": "pm_card_authenticationRequired", "confirm": True}
        intent = await api.ok("POST", "/v1/payment_intents", body, key=new_key())
        assert intent["status"] == "requires_action"
        action = intent["next_action"]
        assert action["type"] == "redirect_to_url"
        url = action["redirect_to_url"]["url"]
        assert url == f"/v1/payment_intents/{intent['id']}/authenticate"
        assert (await api.ledger())["charges"] == []
        capture = await api.post(f"/v1/payment_intents/{intent['id']}/capture")
        assert capture.status == 409
        paid = await api.ok("POST", url, {"outcome": "approve"})
        assert paid["status"] == "succeeded"
        assert paid["next_action"] is None
        assert len((await api.ledger())["charges"]) == 1
        again = await api.post(url, {"outcome": "approve"})
        assert (again.status, again.error_code) == (409, "payment_intent_unexpected_state")


async def test_a_failed_authentication_returns_to_requires_payment_method() -> None:
    async with payment_sandbox() as api:
        body = ORDER | {"payment_method": "pm_card_authenticationRequired", "confirm": True}
        intent = await api.ok("POST", "/v1/payment_intents", body)
        failed = await api.ok(
            "POST", f"/v1/payment_intents/{intent['id']}/authenticate", {"outcome": "fail"}
        )
        assert failed["status"] == "requires_payment_method"
        assert failed["last_payment_error"]["code"] == "payment_intent_authentication_failure"
        ledger = await api.ledger()
        assert ledger["charges"] == []
        assert [d["code"] for d in ledger["declines"]] == ["payment_intent_authentication_failure"]


THREE_DS = {"payment_method_options": {"card": {"request_three_d_secure": "any"}}}


async def test_three_d_secure_asked_for_challenges_a_card_that_would_not_need_it() -> None:
    """Stripe's request_three_d_secure=any: pm_card_visa goes through the buyer's challenge,
    then is charged; the option is on the PaymentIntent; other method types are not asked."""
    async with payment_sandbox() as api:
        body = ORDER | {"payment_method": "pm_card_visa", "confirm": True} | THREE_DS
        intent = await api.ok("POST", "/v1/payment_intents", body, key=new_key())
        assert intent["status"] == "requires_action"
        assert intent["payment_method_options"] == {"card": {"request_three_d_secure": "any"}}
        url = intent["next_action"]["redirect_to_url"]["url"]
        assert url == f"/v1/payment_intents/{intent['id']}/authenticate"
        assert (await api.ledger())["charges"] == []
        paid = await api.ok("POST", url, {"outcome": "approve"})
        assert (paid["status"], paid["amount_received"]) == ("succeeded", 99900)

        # Given at confirm instead of create; a wallet has no card options to apply.
        created = await api.ok("POST", "/v1/payment_intents", ORDER, key=new_key())
        path = f"/v1/payment_intents/{created['id']}/confirm"
        asked = await api.ok("POST", path, {"payment_method": "pm_card_visa"} | THREE_DS)
        assert asked["status"] == "requires_action"
        wallet = ORDER | {"payment_method": "pm_wallet", "confirm": True} | THREE_DS
        assert (await api.ok("POST", "/v1/payment_intents", wallet))["status"] == "succeeded"
        # automatic (the default) asks only when the card needs it.
        auto = {"payment_method_options": {"card": {"request_three_d_secure": "automatic"}}}
        plain = ORDER | {"payment_method": "pm_card_visa", "confirm": True} | auto
        assert (await api.ok("POST", "/v1/payment_intents", plain))["status"] == "succeeded"
        bad = {"payment_method_options": {"card": {"request_three_d_secure": "always"}}}
        refused = await api.post("/v1/payment_intents", ORDER | bad)
        assert refused.status == 422, refused


async def test_three_d_secure_then_a_declining_card_is_declined_after_the_challenge() -> None:
    async with payment_sandbox() as api:
        body = ORDER | {"payment_method": "pm_card_chargeDeclined", "confirm": True} | THREE_DS
        intent = await api.ok("POST", "/v1/payment_intents", body)
        assert intent["status"] == "requires_action"
        url = intent["next_action"]["redirect_to_url"]["url"]
        declined = await api.ok("POST", url, {"outcome": "approve"})
        assert declined["status"] == "requires_payment_method"
        assert declined["last_payment_error"]["decline_code"] == "generic_decline"


async def test_every_try_reports_its_instruments_fingerprint() -> None:
    """payment_method_details.<type>.fingerprint: the same card gives the same fingerprint on
    every payment (and on a charge, and after a decline); different cards differ."""
    async with payment_sandbox() as api:

        async def pay(method: str) -> dict[str, object]:
            body = ORDER | {"payment_method": method}
            intent = await api.ok("POST", "/v1/payment_intents", body)
            confirmed = await api.post(f"/v1/payment_intents/{intent['id']}/confirm")
            doc = confirmed.json()
            found = doc["error"]["details"]["payment_intent"] if "error" in doc else doc
            assert isinstance(found, dict)
            return found

        visa1, visa2 = await pay("pm_card_visa"), await pay("pm_card_visa")
        declined = await pay("pm_card_chargeDeclined")
        wallet = await pay("pm_wallet")
        details = visa1["payment_method_details"]
        assert isinstance(details, dict)
        assert details["type"] == "card"
        fingerprint = details["card"]["fingerprint"]
        assert len(fingerprint) == 16
        assert visa2["payment_method_details"] == details
        assert declined["status"] == "requires_payment_method"
        declined_details = declined["payment_method_details"]
        assert isinstance(declined_details, dict)
        assert declined_details["card"]["fingerprint"] not in ("", fingerprint)
        assert isinstance(wallet["payment_method_details"], dict)
        assert set(wallet["payment_method_details"]) == {"type", "wallet"}
        ledger = await api.ledger()
        assert [c["payment_method_details"] for c in ledger["charges"][:2]] == [details] * 2
        [decline] = ledger["declines"]
        assert decline["fingerprint"] == declined_details["card"]["fingerprint"]


async def test_manual_capture_authorises_then_charges_what_is_captured() -> None:
    async with payment_sandbox() as api:
        body = ORDER | {
            "payment_method": "pm_card_visa",
            "confirm": True,
            "capture_method": "manual",
        }
        intent = await api.ok("POST", "/v1/payment_intents", body)
        assert intent["status"] == "requires_capture"
        assert (intent["amount_capturable"], intent["amount_received"]) == (99900, 0)
        assert (await api.ledger())["charges"] == []
        path = f"/v1/payment_intents/{intent['id']}/capture"
        too_much = await api.post(path, {"amount_to_capture": 100000})
        assert (too_much.status, too_much.error_code) == (422, "amount_too_large")
        captured = await api.ok("POST", path, {"amount_to_capture": 90000}, key=new_key())
        assert captured["status"] == "succeeded"
        assert (captured["amount_received"], captured["amount_capturable"]) == (90000, 0)
        [charge] = (await api.ledger())["charges"]
        assert charge["amount"] == 90000


async def test_cancel_before_payment_and_not_after() -> None:
    async with payment_sandbox() as api:
        intent = await api.ok("POST", "/v1/payment_intents", ORDER)
        canceled = await api.ok(
            "POST",
            f"/v1/payment_intents/{intent['id']}/cancel",
            {"cancellation_reason": "abandoned"},
        )
        assert canceled["status"] == "canceled"
        assert canceled["cancellation_reason"] == "abandoned"
        assert canceled["canceled_at"] >= intent["created"]
        confirm = await api.post(
            f"/v1/payment_intents/{intent['id']}/confirm", {"payment_method": "pm_card_visa"}
        )
        assert confirm.status == 409
        paid = await api.ok(
            "POST",
            "/v1/payment_intents",
            ORDER | {"payment_method": "pm_card_visa", "confirm": True},
        )
        late = await api.post(f"/v1/payment_intents/{paid['id']}/cancel")
        assert (late.status, late.error_code) == (409, "payment_intent_unexpected_state")


async def test_a_bank_transfer_is_processing_then_settles() -> None:
    settings = PaymentSettings(settle_s=0.1, refund_settle_s=0)
    async with payment_sandbox(settings=settings) as api:
        body = ORDER | {"payment_method": "pm_bank_transfer", "confirm": True}
        intent = await api.ok("POST", "/v1/payment_intents", body)
        assert intent["status"] == "processing"
        assert (await api.ledger())["charges"] == []

        async def settled() -> bool:
            now = await api.ok("GET", f"/v1/payment_intents/{intent['id']}")
            return bool(now["status"] == "succeeded")

        await eventually(settled)
        assert len((await api.ledger())["charges"]) == 1
        failing = ORDER | {"payment_method": "pm_bank_transfer_insufficientFunds", "confirm": True}
        doomed = await api.ok("POST", "/v1/payment_intents", failing)
        assert doomed["status"] == "processing"

        async def failed() -> bool:
            now = await api.ok("GET", f"/v1/payment_intents/{doomed['id']}")
            return bool(now["status"] == "requires_payment_method")

        await eventually(failed)
        ledger = await api.ledger()
        assert len(ledger["charges"]) == 1
        assert [d["decline_code"] for d in ledger["declines"]] == ["insufficient_funds"]


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"payment_method": "pm_card_unknown"}, "resource_missing"),
        ({"payment_method": "pm_wallet"}, "payment_method_unsupported"),
        ({"payment_method_types": ["wallet"]}, "payment_method_unsupported"),
        ({"confirm": True}, "invalid_input"),
    ],
)
async def test_methods_the_provider_does_not_take_are_refused(
    body: dict[str, object], code: str
) -> None:
    async with payment_sandbox(settings=PaymentSettings(methods=("card",))) as api:
        reply = await api.post("/v1/payment_intents", ORDER | body)
        assert (reply.status, reply.error_code) == (422, code)
        assert (await api.ledger())["payment_intents"] == []


async def test_an_api_key_guards_the_api_but_not_the_buyers_step() -> None:
    async with payment_sandbox(api_key="sk_test_alpha") as api:
        anonymous = Api(api.session, api.url)
        denied = await anonymous.post("/v1/payment_intents", ORDER)
        assert (denied.status, denied.error_code) == (401, "unauthorized")
        wrong = await anonymous.post(
            "/v1/payment_intents", ORDER, headers={"Authorization": "Bearer sk_test_beta"}
        )
        assert wrong.status == 401
        body = ORDER | {"payment_method": "pm_card_authenticationRequired", "confirm": True}
        intent = await api.ok("POST", "/v1/payment_intents", body)
        url = intent["next_action"]["redirect_to_url"]["url"]
        assert (await anonymous.ok("POST", url))["status"] == "succeeded"
        assert (await anonymous.get("/_sandbox/ledger")).status == 200
