"""Signed webhook delivery with retries: one sender per sandbox instance, one URL.

Events are delivered one at a time, in the order they were published. A delivery that fails
(a non-2xx answer, a refused connection, a timeout) is retried with exponential backoff
(``RetryPolicy``) before the next event is sent, so order holds by default; after
``max_attempts`` the event is marked ``failed`` and the sender moves on. Each attempt is signed
afresh (``pyorder.kernel.signing``), as Stripe does, so a slow retry never carries a stale timestamp.

Two fault knobs act here: ``duplicate_webhook_rate`` delivers a delivered event once more (same
id, same body), and ``reorder_webhook_rate`` holds an event back until the next one has been
delivered (or ``reorder_hold_s`` passes with no next one). Every event and its delivery history
is kept for the ledger.
"""

import asyncio
import contextlib
import logging
import secrets
import time
from dataclasses import dataclass, field
from typing import Literal

import aiohttp
import orjson

from pyorder.kernel.signing import SIGNATURE_HEADER, sign
from sandbox.faults import FaultState

log = logging.getLogger(__name__)

PROVIDER_HEADER = "Provider-Name"
DeliveryState = Literal["pending", "delivered", "failed", "unsent"]
"""``unsent``: no webhook URL was configured when the event was due."""


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 8
    base_delay_s: float = 0.5
    """Wait after the first failed attempt; doubled after each further one."""
    max_delay_s: float = 30.0
    timeout_s: float = 10.0
    """Per attempt, connection to answer."""
    reorder_hold_s: float = 2.0
    """How long an event held back by ``reorder_webhook_rate`` waits for one to overtake it."""

    def delay_s(self, failed_attempts: int) -> float:
        """Backoff after ``failed_attempts`` (>= 1) failures, in seconds."""
        return float(min(self.max_delay_s, self.base_delay_s * 2 ** (failed_attempts - 1)))


@dataclass(frozen=True)
class Event:
    """One event as sent: ``{"id", "object": "event", "type", "created", "provider",
    "data": {"object": ...}}``. The body is a snapshot taken when it happened."""

    id: str
    type: str
    created: int
    """Unix seconds, UTC."""
    body: bytes

    @classmethod
    def new(cls, provider: str, type: str, obj: object) -> "Event":
        event_id = "evt_" + secrets.token_hex(12)
        created = int(time.time())
        doc = {
            "id": event_id,
            "object": "event",
            "type": type,
            "created": created,
            "provider": provider,
            "livemode": False,
            "data": {"object": obj},
        }
        return cls(event_id, type, created, orjson.dumps(doc, option=orjson.OPT_UTC_Z))


@dataclass
class Delivery:
    """An event's delivery history, as the ledger shows it."""

    event: Event
    state: DeliveryState = "pending"
    attempts: int = 0
    deliveries: int = 0
    """Attempts answered 2xx: more than one when duplicated."""
    last_status: int | None = None
    last_error: str | None = None
    statuses: list[int | None] = field(default_factory=list)
    """The answer to each attempt (None: no answer: refused, reset, timed out)."""

    def public(self) -> dict[str, object]:
        return {
            "id": self.event.id,
            "type": self.event.type,
            "created": self.event.created,
            "state": self.state,
            "attempts": self.attempts,
            "deliveries": self.deliveries,
            "last_status": self.last_status,
            "last_error": self.last_error,
            "statuses": list(self.statuses),
        }


class WebhookSender:
    """Queues events and delivers them to ``url``, signed with ``secret``."""

    def __init__(
        self,
        provider: str,
        secret: str,
        url: str | None,
        faults: FaultState,
        policy: RetryPolicy | None = None,
    ) -> None:
        self.provider = provider
        self.secret = secret
        self.url = url
        self.policy = policy or RetryPolicy()
        self._faults = faults
        self._queue: asyncio.Queue[Delivery] = asyncio.Queue()
        self._deliveries: list[Delivery] = []
        self._session: aiohttp.ClientSession | None = None
        self._worker: asyncio.Task[None] | None = None

    def publish(self, event: Event) -> None:
        """Record ``event`` and queue it for delivery."""
        delivery = Delivery(event)
        self._deliveries.append(delivery)
        self._queue.put_nowait(delivery)

    @property
    def deliveries(self) -> list[Delivery]:
        """Every event published, in order."""
        return list(self._deliveries)

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.policy.timeout_s)
        )
        self._worker = asyncio.create_task(self._run(), name=f"webhooks-{self.provider}")

    async def stop(self) -> None:
        """Stop delivering (what is still queued is dropped) and close the HTTP session."""
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
        if self._session is not None:
            await self._session.close()

    async def _run(self) -> None:
        while True:
            delivery = await self._queue.get()
            if self._faults.chance("reorder_webhook_rate"):
                overtaking: Delivery | None = None
                with contextlib.suppress(TimeoutError):
                    overtaking = await asyncio.wait_for(
                        self._queue.get(), self.policy.reorder_hold_s
                    )
                if overtaking is not None:
                    await self._deliver(overtaking)
            await self._deliver(delivery)

    async def _deliver(self, delivery: Delivery) -> None:
        url = self.url
        if url is None:
            delivery.state = "unsent"
            return
        while delivery.attempts < self.policy.max_attempts:
            if await self._attempt(url, delivery):
                delivery.state = "delivered"
                if self._faults.chance("duplicate_webhook_rate"):
                    await self._attempt(url, delivery)
                return
            if delivery.attempts < self.policy.max_attempts:
                await asyncio.sleep(self.policy.delay_s(delivery.attempts))
        delivery.state = "failed"
        log.warning(
            "webhook %s (%s) to %s failed after %d attempts",
            delivery.event.id,
            delivery.event.type,
            url,
            delivery.attempts,
        )

    async def _attempt(self, url: str, delivery: Delivery) -> bool:
        assert self._session is not None, "start() the sender first"
        body = delivery.event.body
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(body, self.secret),
            PROVIDER_HEADER: self.provider,
            "User-Agent": f"pyorder-sandbox/{self.provider}",
        }
        delivery.attempts += 1
        status: int | None = None
        try:
            async with self._session.post(url, data=body, headers=headers) as response:
                await response.read()
                status = response.status
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as exc:
            delivery.last_error = f"{type(exc).__name__}: {exc}"
        delivery.last_status = status
        delivery.statuses.append(status)
        if status is not None and 200 <= status < 300:
            delivery.deliveries += 1
            delivery.last_error = None
            return True
        return False
