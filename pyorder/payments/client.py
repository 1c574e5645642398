"""The HTTP client of one payment provider (the Stripe-like API of ``sandbox/payment``).

Every call has the provider's timeout. A call that was answered returns an ``Answer``: its
HTTP status and, decoded in full by ``pyorder.payments.schemas``, the object on a 200 or the
error otherwise. One that was not (refused, reset, timed out) raises ``ProviderUnreachable``,
and so does an answer that is not what the API promises (``MalformedAnswer``: not JSON, a wrong
type, an amount out of range, an unknown status, ...): its outcome at the provider is
*unknown*, so the dispatcher treats it as a failed call, looked up or retried, never applied.
Every POST carries an Idempotency-Key derived from the attempt, so sending it again is safe.
"""

import logging
from dataclasses import dataclass
from typing import Any, Final, Generic, TypeVar

import aiohttp
import orjson

from pyorder.documents import InvalidDocument, decode, read_answer
from pyorder.payments.model import Attempt, Refund
from pyorder.payments.providers import ProviderConfig
from pyorder.payments.schemas import ErrorAnswer, PaymentIntent
from pyorder.payments.schemas import Refund as ProviderRefund

JSON = dict[str, Any]
log = logging.getLogger(__name__)
T = TypeVar("T")


class ProviderUnreachable(Exception):
    """No usable answer: the call may or may not have been carried out."""


class MalformedAnswer(ProviderUnreachable):
    """The provider answered with a document its API does not allow (the message says what
    and where): treated as no answer."""


@dataclass(frozen=True, slots=True)
class Answer(Generic[T]):
    """A provider's answer: ``doc`` on a 200, else ``error`` (its ``{"error": ...}`` body)."""

    status: int
    doc: T | None
    error: ErrorAnswer


def key(attempt: Attempt, step: str) -> str:
    """The provider Idempotency-Key of one step (create, confirm, cancel, refund) of an
    attempt: the same for every resend, different for every attempt."""
    return f"{attempt.idempotency_key}-{step}"


def metadata(attempt: Attempt) -> dict[str, str]:
    return {"order_id": str(attempt.order_id), "attempt": str(attempt.number)}


THREE_DS: Final = {"payment_method_options": {"card": {"request_three_d_secure": "any"}}}
"""Asks for 3-D Secure whatever the card (Stripe's option): in the body of an attempt's
create and confirm when it asks for it (``Attempt.three_ds``), so every resend under the same
Idempotency-Key carries the same body."""


def three_ds(attempt: Attempt) -> JSON:
    """The body fields that ask for 3-D Secure, for an attempt that does; else none."""
    return dict(THREE_DS) if attempt.three_ds else {}


class ProviderClient:
    def __init__(
        self, session: aiohttp.ClientSession, provider: ProviderConfig, timeout_s: float
    ) -> None:
        self.session = session
        self.provider = provider
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)

    async def call(
        self,
        method: str,
        path: str,
        kind: type[T],
        body: JSON | None = None,
        idempotency_key: str | None = None,
    ) -> Answer[T]:
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
                status = response.status
                raw = await read_answer(response)
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise ProviderUnreachable(f"{self.provider.name}: {type(exc).__name__} {exc}") from exc
        try:
            if status == 200:
                return Answer(status, decode(raw, kind), ErrorAnswer())
            return Answer(status, None, decode(raw, ErrorAnswer))
        except InvalidDocument as exc:
            text = f"{self.provider.name}: HTTP {status}, a malformed answer: {exc}"
            # A peer that breaks its API is worth a person's look, unlike a network blip.
            log.warning("%s %s: %s", method, path, text)
            raise MalformedAnswer(text) from None

    async def create(self, attempt: Attempt) -> Answer[PaymentIntent]:
        body = {
            "amount": attempt.amount,
            "currency": attempt.currency,
            "payment_method_types": [attempt.method],
            "payment_method": attempt.payment_method,
            "metadata": metadata(attempt),
            **three_ds(attempt),
        }
        path = "/v1/payment_intents"
        return await self.call("POST", path, PaymentIntent, body, key(attempt, "create"))

    async def confirm(self, attempt: Attempt) -> Answer[PaymentIntent]:
        path = f"/v1/payment_intents/{attempt.provider_payment_id}/confirm"
        body = three_ds(attempt)
        return await self.call("POST", path, PaymentIntent, body, key(attempt, "confirm"))

    async def get(self, payment_id: str) -> Answer[PaymentIntent]:
        return await self.call("GET", f"/v1/payment_intents/{payment_id}", PaymentIntent)

    async def cancel(self, attempt: Attempt) -> Answer[PaymentIntent]:
        return await self.call(
            "POST",
            f"/v1/payment_intents/{attempt.provider_payment_id}/cancel",
            PaymentIntent,
            {"cancellation_reason": "abandoned"},
            key(attempt, "cancel"),
        )

    async def refund(self, attempt: Attempt) -> Answer[ProviderRefund]:
        body = {"payment_intent": attempt.provider_payment_id, "metadata": metadata(attempt)}
        return await self.call("POST", "/v1/refunds", ProviderRefund, body, key(attempt, "refund"))

    async def refund_order(self, refund: Refund, payment_intent: str) -> Answer[ProviderRefund]:
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
        return await self.call("POST", "/v1/refunds", ProviderRefund, body, refund.idempotency_key)

    async def get_refund(self, refund_id: str) -> Answer[ProviderRefund]:
        return await self.call("GET", f"/v1/refunds/{refund_id}", ProviderRefund)
