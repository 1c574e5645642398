"""Sandboxes on loopback for the tests, and a small JSON client for their APIs."""

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

from sandbox.carrier.app import create_app as create_carrier_app
from sandbox.carrier.config import CarrierFaults, CarrierSettings
from sandbox.payment.app import create_app as create_payment_app
from sandbox.payment.config import PaymentFaults, PaymentSettings
from sandbox.serving import running
from sandbox.webhooks import RetryPolicy

PAYMENT_SECRET = "whsec_payment_test"
CARRIER_SECRET = "whsec_carrier_test"
FAST_RETRY = RetryPolicy(base_delay_s=0.02, max_delay_s=0.1, timeout_s=2.0, reorder_hold_s=0.5)


def new_key() -> str:
    return uuid.uuid4().hex


@dataclass(frozen=True)
class Reply:
    status: int
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        return orjson.loads(self.body)

    @property
    def error_code(self) -> str:
        """``error.code`` of an error body; fails the test if the body is not one."""
        doc = self.json()
        assert set(doc) == {"error"}, self
        assert set(doc["error"]) == {"code", "message", "details"}, self
        assert doc["error"]["message"], self
        return str(doc["error"]["code"])

    def __str__(self) -> str:
        return f"HTTP {self.status}: {self.body[:600]!r}"


class Api:
    """JSON over HTTP to one sandbox."""

    def __init__(
        self, session: aiohttp.ClientSession, url: str, api_key: str | None = None
    ) -> None:
        self.session = session
        self.url = url
        self.api_key = api_key

    async def call(
        self,
        method: str,
        path: str,
        body: object = None,
        *,
        key: str | None = None,
        raw: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout_s: float = 5.0,
    ) -> Reply:
        sent = dict(headers or {})
        if key is not None:
            sent["Idempotency-Key"] = key
        if self.api_key is not None:
            sent.setdefault("Authorization", f"Bearer {self.api_key}")
        data = raw if raw is not None else (None if body is None else orjson.dumps(body))
        if data is not None:
            sent["Content-Type"] = "application/json"
        async with self.session.request(
            method,
            self.url + path,
            data=data,
            headers=sent,
            timeout=aiohttp.ClientTimeout(total=timeout_s),
        ) as response:
            return Reply(response.status, dict(response.headers), await response.read())

    async def post(self, path: str, body: object = None, **options: Any) -> Reply:
        return await self.call("POST", path, body, **options)

    async def get(self, path: str) -> Reply:
        return await self.call("GET", path)

    async def ok(self, method: str, path: str, body: object = None, **options: Any) -> Any:
        """The JSON of a 200 answer; fails the test on any other status."""
        reply = await self.call(method, path, body, **options)
        assert reply.status == 200, reply
        return reply.json()

    async def ledger(self) -> Any:
        return await self.ok("GET", "/_sandbox/ledger")

    async def faults(self, **patch: object) -> Any:
        return await self.ok("POST", "/_sandbox/faults", patch)


@asynccontextmanager
async def payment_sandbox(
    webhook_url: str | None = None,
    *,
    name: str = "alpha",
    secret: str = PAYMENT_SECRET,
    api_key: str | None = None,
    settings: PaymentSettings | None = None,
    faults: PaymentFaults | None = None,
    retry: RetryPolicy = FAST_RETRY,
    idempotency_retention_s: float = 3600.0,
) -> AsyncIterator[Api]:
    app = create_payment_app(
        name=name,
        secret=secret,
        webhook_url=webhook_url,
        api_key=api_key,
        settings=settings or PaymentSettings(settle_s=0.05, refund_settle_s=0.0),
        faults=faults,
        retry=retry,
        idempotency_retention_s=idempotency_retention_s,
    )
    async with running(app) as url, aiohttp.ClientSession() as session:
        yield Api(session, url, api_key)


@asynccontextmanager
async def carrier_sandbox(
    webhook_url: str | None = None,
    *,
    name: str = "swift",
    secret: str = CARRIER_SECRET,
    settings: CarrierSettings | None = None,
    faults: CarrierFaults | None = None,
    retry: RetryPolicy = FAST_RETRY,
) -> AsyncIterator[Api]:
    app = create_carrier_app(
        name=name,
        secret=secret,
        webhook_url=webhook_url,
        settings=settings or CarrierSettings(event_interval_s=3600, time_scale=3600 / 0.03),
        faults=faults,
        retry=retry,
    )
    async with running(app) as url, aiohttp.ClientSession() as session:
        yield Api(session, url)


async def eventually(check: Callable[[], Awaitable[bool]], timeout_s: float = 8.0) -> None:
    """Poll ``check`` until it is true; fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)
