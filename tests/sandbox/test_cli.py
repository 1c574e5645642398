"""The console scripts as real processes: flags, the printed URL, webhooks, a clean stop."""

import asyncio
import re
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp

from pyorder.kernel.signing import verify
from tests.sandbox.receiver import webhook_receiver
from tests.sandbox.support import Api

ROOT = Path(__file__).resolve().parents[2]


@asynccontextmanager
async def sandbox_process(module: str, *args: str) -> AsyncIterator[tuple[str, list[str]]]:
    """``python -m module --port 0 args``; yields its URL and the lines it printed at start."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", module, "--port", "0", *args,
        cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None
    try:
        first = (await asyncio.wait_for(proc.stdout.readline(), 10)).decode()
        match = re.search(r"listening on (http://\S+)", first)
        assert match, first
        lines = [first]
        if "--secret" not in args:
            lines.append((await proc.stdout.readline()).decode())
        yield match.group(1), lines
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(proc.communicate(), 10)
    assert proc.returncode == 0, stderr.decode()


async def test_payment_sandbox_process() -> None:
    async with (
        webhook_receiver() as hooks,
        sandbox_process(
            "sandbox.payment.main",
            "--name",
            "beta",
            "--secret",
            "whsec_beta",
            "--methods",
            "card",
            "--webhook-url",
            hooks.url("beta"),
            "--api-key",
            "sk_beta",
            "--decline-rate",
            "1",
            "--seed",
            "3",
            "--latency-ms",
            "1-5",
            "--webhook-backoff-ms",
            "20",
        ) as (url, lines),  # fmt: skip
        aiohttp.ClientSession() as session,
    ):
        assert "payment sandbox 'beta'" in lines[0]
        assert "methods: card" in lines[0]
        api = Api(session, url, api_key="sk_beta")
        knobs = await api.ok("GET", "/_sandbox/faults")
        assert (knobs["decline_rate"], knobs["seed"], knobs["latency_ms"]) == (1.0, 3, [1, 5])
        pay = {"amount": 300, "currency": "CNY", "payment_method": "pm_card_visa", "confirm": True}
        assert (await api.post("/v1/payment_intents", pay)).status == 402
        await api.faults(decline_rate=0.0)
        assert (await api.post("/v1/payment_intents", pay)).status == 200
        await hooks.wait_for(lambda: len(hooks.events("beta")) == 4)
        for delivery in hooks.accepted("beta"):
            verify(delivery.body, delivery.signature, "whsec_beta")
        assert [e["type"] for e in hooks.events("beta")] == [
            "payment_intent.created",
            "payment_intent.payment_failed",
            "payment_intent.created",
            "payment_intent.succeeded",
        ]


async def test_carrier_sandbox_process_with_a_generated_secret() -> None:
    async with (
        webhook_receiver() as hooks,
        sandbox_process(
            "sandbox.carrier.main",
            "--name",
            "kite",
            "--webhook-url",
            hooks.url("kite"),
            "--event-interval-s",
            "3600",
            "--time-scale",
            "72000",
            "--first-weight-cost",
            "1000",
            "--exception-rate",
            "0",
        ) as (url, lines),  # fmt: skip
        aiohttp.ClientSession() as session,
    ):
        assert "carrier sandbox 'kite'" in lines[0]
        assert "a scan every 0.05 s" in lines[0]
        secret = lines[1].split("webhook secret:")[1].strip()
        api = Api(session, url)
        parcel = {
            "to": {"name": "Bo", "line1": "2 Lane", "city": "Xi'an"},
            "weight_g": 1500,
        }
        shipment = await api.ok("POST", "/v1/shipments", parcel)
        assert shipment["tracking_number"].startswith("KITE")
        assert shipment["cost"] == 1000 + 500
        await hooks.wait_for(lambda: len(hooks.events("kite")) == 4)
        for delivery in hooks.accepted("kite"):
            verify(delivery.body, delivery.signature, secret)


async def test_bad_flags_are_refused() -> None:
    for module, flag in [
        ("sandbox.payment.main", "--decline-rate=2"),
        ("sandbox.payment.main", "--methods=cash"),
        ("sandbox.carrier.main", "--latency-ms=fast"),
    ]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", module, flag, cwd=ROOT,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        _, stderr = await proc.communicate()
        assert proc.returncode == 2, (module, flag)
        assert b"error" in stderr
