"""Sends the bookings the outbox owes the carrier.

Each pending ``ship`` outbox item gets one task, as in ``pyorder.payments.dispatcher``: it waits
until the item is durable (it was staged with the parcel), calls the carrier's ``POST
/v1/shipments`` with the parcel's deterministic Idempotency-Key (``pyorder-ship-<order>-<n>``),
stages the answer with the item marked done, and waits until that is durable. A crash anywhere
in between leaves the item pending in the store; after the restart it is sent again with the
same key and the carrier answers with the shipment it booked the first time: never two
shipments for one parcel (``PYORDER_FAILPOINT=before_ship`` / ``after_ship`` kill the process
just before the call / just after the carrier booked it, for the crash tests). No answer (refused, timed out, 5xx, 409 while the first call runs,
an answer the carrier's API does not allow) is retried with backoff; a 4xx refusal fails the
parcel.
"""

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

import aiohttp

from pyorder.intake import IntakeUnavailableError
from pyorder.logistics.carriers import CarrierClient, CarrierUnreachable
from pyorder.logistics.model import ShipmentStatus
from pyorder.logistics.service import Logistics
from pyorder.payments.dispatcher import Retry, _failpoint
from pyorder.payments.model import OutboxItem

if TYPE_CHECKING:
    from pyorder.platform import Platform

log = logging.getLogger(__name__)


OutboxKey = tuple[int, int, str]


class CarrierOutbox(Protocol):
    """A service whose outbox holds calls owed to a carrier (parcels out, returns back)."""

    outbox: dict[OutboxKey, OutboxItem]
    on_outbox: list[Callable[[OutboxItem], None]]


class CarrierDispatcher:
    """One task per pending outbox item of ``owner``: wait until the item is durable, ``_book``
    it (a subclass's one call to the carrier, its answer staged with the item done), wait until
    that is durable; retried with backoff while the outcome is unknown."""

    label = "booking"
    """How the log and the task names call an item."""

    def __init__(self, platform: "Platform", owner: CarrierOutbox) -> None:
        self._p = platform
        self._owner = owner
        self._session: aiohttp.ClientSession | None = None
        self._tasks: dict[OutboxKey, asyncio.Task[None]] = {}
        self._stopping = False
        owner.on_outbox.append(self.spawn)

    async def start(self) -> None:
        self._session = aiohttp.ClientSession()
        self.resume()

    def resume(self) -> None:
        """Send every pending booking (after a start or a rebuild)."""
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

    def client(self, carrier_name: str) -> CarrierClient:
        """A client of the named carrier; Retry while it is not configured."""
        config = self._p.logistics.config
        carrier = config.carrier(carrier_name)
        if carrier is None or self._session is None:
            raise Retry(f"carrier {carrier_name} is not configured")
        timeout_s = (carrier.timeout_ms or config.timeout_ms) / 1000
        return CarrierClient(self._session, carrier, timeout_s)

    async def _run(self, key: OutboxKey) -> None:
        delay = 0.05
        while True:
            try:
                await self._p.intake.durable()  # the item itself, staged just before
                item = self._owner.outbox.get(key)
                if item is None:  # done meanwhile, or dropped by a rebuild
                    return
                await self._book(item)
                await self._p.intake.durable()
                return
            except (Retry, IntakeUnavailableError) as exc:
                log.info("%s %s: %s; again in %.2f s", self.label, key, exc, delay)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("%s %s failed; again in %.2f s", self.label, key, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, self._p.logistics.config.retry_max_s)

    async def _book(self, item: OutboxItem) -> None:
        raise NotImplementedError


class ShipmentDispatcher(CarrierDispatcher):
    def __init__(self, platform: "Platform", logistics: Logistics) -> None:
        super().__init__(platform, logistics)
        self.logistics = logistics

    async def _book(self, item: OutboxItem) -> None:
        svc = self.logistics
        parcel = (item.order_id, item.attempt)
        sh = svc.shipments.get(parcel)
        if sh is None or sh.status is not ShipmentStatus.PENDING:
            svc.finish_outbox(item)  # a tracking event got there first
            return
        client = self.client(sh.carrier)
        order = await self._p.store.get_order(item.order_id)
        if order is None:
            raise Retry(f"order {item.order_id} is not readable yet")
        _failpoint("before_ship")
        try:
            status, shipment, error = await client.create_shipment(
                svc.carrier_request(order, sh), sh.idempotency_key
            )
        except CarrierUnreachable as exc:
            raise Retry(f"create: {exc}") from exc
        if shipment is not None:
            _failpoint("after_ship")
            svc.observe_booking(parcel, shipment)
        elif status >= 500 or status in (409, 429):
            raise Retry(f"create: HTTP {status}")
        else:
            reason = error.describe()
            log.error("order %d parcel %d: the carrier refused it: %s", *parcel, reason)
            svc.fail_booking(parcel, f"HTTP {status} {reason}")
        svc.finish_outbox(item)
