"""Fault knobs: declines by rate (seeded), lost responses, outages, latency, the admin endpoint."""

import asyncio
import json
import time

import aiohttp
import pytest

from sandbox.payment.config import PaymentFaults
from tests.sandbox.support import Api, new_key, payment_sandbox

ORDER = {"amount": 1999, "currency": "CNY", "metadata": {"order_id": "9"}}
PAY = ORDER | {"payment_method": "pm_card_visa", "confirm": True}


async def _outcomes(api: Api, count: int) -> list[int]:
    return [(await api.post("/v1/payment_intents", PAY)).status for _ in range(count)]


async def test_decline_rate_is_deterministic_for_a_seed() -> None:
    faults = PaymentFaults(decline_rate=0.5, seed=7)
    async with payment_sandbox(faults=faults) as one, payment_sandbox(faults=faults) as two:
        first = await _outcomes(one, 40)
        assert first == await _outcomes(two, 40)
        assert set(first) == {200, 402}
        assert 8 <= first.count(402) <= 32
        ledger = await one.ledger()
        assert len(ledger["declines"]) == first.count(402)
        assert len(ledger["charges"]) == first.count(200)
        # Resetting the seed replays the same sequence; another seed gives another one.
        await one.faults(seed=7)
        assert await _outcomes(one, 40) == first
        await one.faults(seed=8)
        assert await _outcomes(one, 40) != first


async def test_decline_rate_one_declines_everything_zero_nothing() -> None:
    async with payment_sandbox(faults=PaymentFaults(decline_rate=1.0)) as api:
        assert await _outcomes(api, 5) == [402] * 5
        await api.faults(decline_rate=0.0)
        assert await _outcomes(api, 5) == [200] * 5


@pytest.mark.parametrize("mode", ["close", "500"])
async def test_a_lost_response_charges_once_and_the_retry_gets_the_charge(mode: str) -> None:
    async with payment_sandbox() as api:
        intent = await api.ok("POST", "/v1/payment_intents", ORDER)
        await api.faults(lost_response_rate=1.0, lost_response_mode=mode)
        key = new_key()
        path = f"/v1/payment_intents/{intent['id']}/confirm"
        body = {"payment_method": "pm_card_visa"}
        if mode == "close":
            with pytest.raises(aiohttp.ServerDisconnectedError):
                await api.post(path, body, key=key)
        else:
            lost = await api.post(path, body, key=key)
            assert (lost.status, lost.error_code) == (500, "internal")
        [charge] = (await api.ledger())["charges"]
        assert (charge["payment_intent"], charge["idempotency_key"]) == (intent["id"], key)
        await api.faults(lost_response_rate=0.0)
        retry = await api.post(path, body, key=key)
        assert retry.status == 200
        assert retry.headers["Idempotent-Replayed"] == "true"
        assert retry.json()["status"] == "succeeded"
        assert retry.json()["latest_charge"] == charge["id"]
        assert len((await api.ledger())["charges"]) == 1


async def test_lost_responses_are_drawn_by_rate_only_on_successful_posts() -> None:
    faults = PaymentFaults(lost_response_rate=1.0, lost_response_mode="500")
    async with payment_sandbox(faults=faults) as api:
        reads = await api.get("/v1/payment_intents/pi_missing")
        assert reads.status == 404
        refused = await api.post("/v1/payment_intents", {"amount": 0, "currency": "CNY"})
        assert refused.status == 422
        assert (await api.get("/_sandbox/ledger")).status == 200


async def test_outage_503_records_nothing() -> None:
    async with payment_sandbox(faults=PaymentFaults(outage="503")) as api:
        down = await api.post("/v1/payment_intents", PAY, key=new_key())
        assert (down.status, down.error_code) == (503, "unavailable")
        assert (await api.get("/healthz")).status == 200
        ledger = await api.ledger()
        assert (ledger["payment_intents"], ledger["charges"]) == ([], [])
        await api.faults(outage="none")
        assert (await api.post("/v1/payment_intents", PAY)).status == 200


async def test_outage_hang_holds_calls_until_the_client_gives_up_or_it_is_lifted() -> None:
    async with payment_sandbox(faults=PaymentFaults(outage="hang")) as api:
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            await api.post("/v1/payment_intents", PAY, timeout_s=0.3)
        assert time.monotonic() - started >= 0.3
        held = asyncio.create_task(api.post("/v1/payment_intents", PAY, timeout_s=5))
        await asyncio.sleep(0.2)
        assert not held.done()
        await api.faults(outage="none")
        answer = await held
        assert (answer.status, answer.error_code) == (503, "unavailable")
        ledger = await api.ledger()
        assert ledger["charges"] == []
        assert (await api.post("/v1/payment_intents", PAY)).status == 200


async def test_a_server_stops_promptly_while_calls_hang() -> None:
    started = time.monotonic()
    async with payment_sandbox(faults=PaymentFaults(outage="hang")) as api:
        held = asyncio.create_task(api.post("/v1/payment_intents", PAY, timeout_s=10))
        await asyncio.sleep(0.1)
    with pytest.raises(aiohttp.ClientError):
        await held
    assert time.monotonic() - started < 3


async def test_latency_fixed_and_range() -> None:
    async with payment_sandbox(faults=PaymentFaults(latency_ms=150)) as api:
        started = time.monotonic()
        await api.ok("POST", "/v1/payment_intents", ORDER)
        assert time.monotonic() - started >= 0.15
        started = time.monotonic()
        await api.ledger()  # admin endpoints are never slowed
        assert time.monotonic() - started < 0.15
        settings = await api.faults(latency_ms=[50, 80])
        assert settings["latency_ms"] == [50, 80]
        started = time.monotonic()
        await api.ok(
            "GET", "/v1/payment_intents/" + (await api.ledger())["payment_intents"][0]["id"]
        )
        assert time.monotonic() - started >= 0.05


async def test_a_malformed_response_is_recorded_but_answered_with_ints_of_2_64() -> None:
    async with payment_sandbox(faults=PaymentFaults(malformed_response_rate=1.0)) as api:
        reply = await api.post("/v1/payment_intents", ORDER)
        assert reply.status == 200
        body = json.loads(reply.body)
        assert (body["amount"], body["amount_received"], body["created"]) == (2**64,) * 3
        assert isinstance(body["id"], str)
        [intent] = (await api.ledger())["payment_intents"]  # carried out and recorded
        assert intent["amount"] == ORDER["amount"]


async def test_the_admin_endpoint_reads_validates_and_updates_knobs() -> None:
    async with payment_sandbox() as api:
        knobs = await api.ok("GET", "/_sandbox/faults")
        assert knobs == {
            "latency_ms": 0,
            "outage": "none",
            "lost_response_rate": 0.0,
            "lost_response_mode": "close",
            "malformed_response_rate": 0.0,
            "duplicate_webhook_rate": 0.0,
            "reorder_webhook_rate": 0.0,
            "seed": 0,
            "decline_rate": 0.0,
            "refund_failure_rate": 0.0,
        }
        for bad in (
            {"decline_rate": 1.5},
            {"outage": "sometimes"},
            {"latency_ms": [80, 50]},
            {"exception_rate": 0.5},
            {"seed": "x"},
        ):
            reply = await api.post("/_sandbox/faults", bad)
            assert (reply.status, reply.error_code) == (422, "invalid_input"), bad
        assert await api.ok("GET", "/_sandbox/faults") == knobs
        changed = await api.faults(decline_rate=0.25, outage="503")
        assert (changed["decline_rate"], changed["outage"], changed["seed"]) == (0.25, "503", 0)
