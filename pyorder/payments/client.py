"""The HTTP client of one payment provider (the Stripe-like API of ``sandbox/payment``).

Every call has the provider's timeout. A call that was answered returns ``(status, body)``;
one that was not (refused, reset, timed out, an answer that is not JSON) raises
``ProviderUnreachable``: its outcome at the provider is *unknown*. Every POST carries an
Idempotency-Key derived from the attempt, so sending it again is safe.
"""

from typing import Any

import aiohttp
import orjson

from pyorder.payments.model import Attempt, Refund
from pyorder.payments.providers import ProviderConfig

JSON = dict[str, Any]


class ProviderUnreachable(Exception):
    """No usable answer: the call may or may not have been carried out."""


def key(attempt: Attempt, step: str) -> str:
    """The provider Idempotency-Key of one step (create, confirm, cancel, refund) of an
    attempt: the same for every resend, different for every attempt."""
    return f"{attempt.idempotency_key}-{step}"


def metadata(attempt: Attempt) -> dict[str, str]:
    return {"order_id": str(attempt.order_id), "attempt": str(attempt.number)}


class ProviderClient:
    def __init__(
        self, session: aiohttp.ClientSession, provider: ProviderConfig, timeout_s: float
    ) -> None:
        self.session = session
        self.provider = provider
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)

    async def call(
        self, method: str, path: str, body: JSON | None = None, idempotency_key: str | None = None
    ) -> tuple[int, JSON]:
        headers: dict[str, str] = {}
        if self.provider.api_key:
            headers["Authorization"] = f"Bearer {self.provider.api_key}"
        if idempotency_key is not None:
            headers["Idempotency-Key"] = idempotency_key
        data = None
        if body is not None:
            data = orjson.dumps(body)
            headers["Content-Type"] = "application/json"
        try:
            async with self.session.request(
                method, self.provider.url + path, data=data, headers=headers, timeout=self.timeout
            ) as response:
                raw = await response.read()
                status = response.status
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise ProviderUnreachable(f"{self.provider.name}: {type(exc).__name__} {exc}") from exc
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise ProviderUnreachable(f"{self.provider.name}: HTTP {status}, not JSON") from exc
        if not isinstance(doc, dict):
            raise ProviderUnreachable(f"{self.provider.name}: HTTP {status}, not an object")
        return status, doc

    async def create(self, attempt: Attempt) -> tuple[int, JSON]:
        body = {
            "amount": attempt.amount,
            "currency": attempt.currency,
            "payment_method_types": [attempt.method],
            "payment_method": attempt.payment_method,
            "metadata": metadata(attempt),
        }
        return await self.call("POST", "/v1/payment_intents", body, key(attempt, "create"))

    async def confirm(self, attempt: Attempt) -> tuple[int, JSON]:
        pi = attempt.provider_payment_id
        return await self.call(
            "POST", f"/v1/payment_intents/{pi}/confirm", {}, key(attempt, "confirm")
        )

    async def get(self, payment_id: str) -> tuple[int, JSON]:
        return await self.call("GET", f"/v1/payment_intents/{payment_id}")

    async def cancel(self, attempt: Attempt) -> tuple[int, JSON]:
        pi = attempt.provider_payment_id
        return await self.call(
            "POST",
            f"/v1/payment_intents/{pi}/cancel",
            {"cancellation_reason": "abandoned"},
            key(attempt, "cancel"),
        )

    async def refund(self, attempt: Attempt) -> tuple[int, JSON]:
        body = {"payment_intent": attempt.provider_payment_id, "metadata": metadata(attempt)}
        return await self.call("POST", "/v1/refunds", body, key(attempt, "refund"))

    async def refund_order(self, refund: Refund, payment_intent: str) -> tuple[int, JSON]:
        """Send a refund of an order (part of its charge), keyed by the refund."""
        body = {
            "payment_intent": payment_intent,
            "amount": refund.amount,
            "metadata": {
                "order_id": str(refund.order_id),
                "attempt": str(refund.attempt),
                "refund": str(refund.number),
            },
        }
        return await self.call("POST", "/v1/refunds", body, refund.idempotency_key)

    async def get_refund(self, refund_id: str) -> tuple[int, JSON]:
        return await self.call("GET", f"/v1/refunds/{refund_id}")
