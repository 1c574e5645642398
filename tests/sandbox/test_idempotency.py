"""Idempotency-Key rules the payment and carrier APIs share (beyond replay, in the API tests)."""

import asyncio

import pytest

from tests.sandbox.support import new_key, payment_sandbox

ORDER = {"amount": 700, "currency": "CNY"}


@pytest.mark.parametrize("key", ["k" * 256, "tab\tkey"])
async def test_keys_must_be_1_to_255_printable_characters(key: str) -> None:
    async with payment_sandbox() as api:
        reply = await api.post("/v1/payment_intents", ORDER, key=key)
        assert (reply.status, reply.error_code) == (422, "invalid_input")
        assert (await api.ledger())["payment_intents"] == []
        assert (await api.post("/v1/payment_intents", ORDER, key="k" * 255)).status == 200


async def test_answers_are_replayed_only_for_the_retention_period() -> None:
    async with payment_sandbox(idempotency_retention_s=0.2) as api:
        key = new_key()
        first = await api.ok("POST", "/v1/payment_intents", ORDER, key=key)
        replay = await api.post("/v1/payment_intents", ORDER, key=key)
        assert replay.json()["id"] == first["id"]
        await asyncio.sleep(0.3)
        fresh = await api.ok("POST", "/v1/payment_intents", ORDER | {"amount": 800}, key=key)
        assert fresh["id"] != first["id"]
        assert len((await api.ledger())["payment_intents"]) == 2


async def test_keys_do_not_apply_to_reads_or_admin_calls() -> None:
    async with payment_sandbox() as api:
        key = new_key()
        intent = await api.ok("POST", "/v1/payment_intents", ORDER, key=key)
        read = await api.call("GET", f"/v1/payment_intents/{intent['id']}", key=key)
        assert read.status == 200
        assert "Idempotent-Replayed" not in read.headers
        admin = await api.post("/_sandbox/faults", {"seed": 1}, key=key)
        assert admin.status == 200
        assert "Idempotent-Replayed" not in admin.headers
