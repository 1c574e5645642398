"""The outbox: calls owed to providers and carriers, written with the change that causes them.

An ``OutboxItem`` is staged in the same batch as the state change that owes the call, so the
call is never lost and never made for a change that did not commit. ``OutboxDispatcher`` sends
a capability's pending items, one task each: it waits until the item is durable, makes the
call (a subclass's ``_send``, which stages the outcome with the item marked done), and waits
until that is durable. A crash anywhere in between leaves the item pending in the store, so
after the restart it is sent again under the same deterministic Idempotency-Key, and the far
side answers with what it did the first time. ``Retry`` (outcome unknown) and the transient
errors the owner names are retried with exponential backoff.

``failpoint`` is the crash tests' hook: ``PYORDER_FAILPOINT=<name>`` kills the process
(SIGKILL) at the named point.
"""

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

import aiohttp

log = logging.getLogger(__name__)

FAILPOINT_ENV = "PYORDER_FAILPOINT"
"""Test hook: the name of the point at which ``failpoint`` kills the process (the crash
tests): ``after_charge``, ``after_refund``, ``before_ship``, ``after_ship``,
``after_return_booking``."""

OutboxKey = tuple[int, int, str]
"""(order id, attempt / parcel / refund / return number, kind)."""

_FIRST_DELAY_S = 0.05
"""The first wait before an item is tried again; doubled each time up to the owner's cap."""


class OutboxKind(StrEnum):
    CHARGE = "charge"
    """Create and confirm the attempt's PaymentIntent."""
    REFUND = "refund"
    """Refund all of the attempt's charge."""
    ORDER_REFUND = "order_refund"
    """Send a ``Refund`` of an order: ``attempt`` is the refund's number."""
    SHIP = "ship"
    """Book a parcel with the carrier (``pyorder.logistics``): ``attempt`` is the parcel."""
    RETURN_BOOKING = "return_booking"
    """Book a return's parcel back with the carrier (``pyorder.returns``): ``attempt`` is the
    return's id."""


@dataclass(frozen=True, slots=True)
class OutboxItem:
    """A call owed to a provider, written with the state change that causes it; ``done`` once
    its outcome is recorded. Keyed by (order, attempt, kind): one of each per attempt (for
    ``ship``, per parcel)."""

    order_id: int
    attempt: int
    kind: OutboxKind
    done: bool
    created_ms: int
    updated_ms: int

    @property
    def key(self) -> OutboxKey:
        return (self.order_id, self.attempt, self.kind.value)


class Retry(Exception):
    """The outcome is unknown and could not be looked up: try the item again later."""


def failpoint(name: str) -> None:
    """Kill the process (SIGKILL) here if ``PYORDER_FAILPOINT`` names this point."""
    if os.environ.get(FAILPOINT_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)


class OutboxOwner(Protocol):
    """A service whose outbox holds calls owed to the outside (payments, parcels, returns)."""

    outbox: dict[OutboxKey, OutboxItem]
    """Its items not done yet."""
    on_outbox: list[Callable[[OutboxItem], None]]
    """Called with each item it stages."""


class OutboxDispatcher:
    """One task per pending outbox item of ``owner``: wait until the item is durable
    (``durable``), ``_send`` it (a subclass's call, its outcome staged with the item done),
    wait until that is durable; retried with backoff, from 0.05 s up to ``retry_max_s``, while
    the outcome is unknown (``Retry``) or the write path is down (``transient``)."""

    label = "outbox"
    """How the log and the task names call an item."""

    def __init__(
        self,
        owner: OutboxOwner,
        durable: Callable[[], Awaitable[None]],
        retry_max_s: float,
        transient: tuple[type[Exception], ...] = (),
    ) -> None:
        self._owner = owner
        self._durable = durable
        self._retry_max_s = retry_max_s
        self._retryable: tuple[type[Exception], ...] = (Retry, *transient)
        self._session: aiohttp.ClientSession | None = None
        self._tasks: dict[OutboxKey, asyncio.Task[None]] = {}
        self._stopping = False
        owner.on_outbox.append(self.spawn)

    async def start(self) -> None:
        self._session = aiohttp.ClientSession()
        self.resume()

    def resume(self) -> None:
        """Send every pending outbox item (after a start or a rebuild)."""
        for item in list(self._owner.outbox.values()):
            self.spawn(item)

    async def stop(self) -> None:
        self._stopping = True
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        if self._session is not None:
            await self._session.close()
            self._session = None

    def spawn(self, item: OutboxItem) -> None:
        if self._stopping or self._session is None or item.key in self._tasks:
            return
        name = f"pyorder-{self.label.replace(' ', '-')}-{item.key}"
        task = asyncio.create_task(self._run(item.key), name=name)
        self._tasks[item.key] = task
        task.add_done_callback(lambda _t: self._tasks.pop(item.key, None))

    async def _run(self, key: OutboxKey) -> None:
        delay = _FIRST_DELAY_S
        while True:
            try:
                await self._durable()  # the item itself, staged just before
                item = self._owner.outbox.get(key)
                if item is None:  # done meanwhile, or dropped by a rebuild
                    return
                await self._send(item)
                await self._durable()
                return
            except self._retryable as exc:
                log.info("%s %s: %s; again in %.2f s", self.label, key, exc, delay)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("%s %s failed; again in %.2f s", self.label, key, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, self._retry_max_s)

    async def _send(self, item: OutboxItem) -> None:
        """Make the item's call and stage its outcome with the item marked done; raise
        ``Retry`` when the outcome is unknown."""
        raise NotImplementedError
