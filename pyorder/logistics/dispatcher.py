"""Sends the bookings the outbox owes the carrier.

Each pending ``ship`` outbox item gets one task, as in ``pyorder.payments.dispatcher``: it waits
until the item is durable (it was staged with the parcel), calls the carrier's ``POST
/v1/shipments`` with the parcel's deterministic Idempotency-Key (``pyorder-ship-<order>-<n>``),
stages the answer with the item marked done, and waits until that is durable. A crash anywhere
in between leaves the item pending in the store; after the restart it is sent again with the
same key and the carrier answers with the shipment it booked the first time: never two
shipments for one parcel (``PYORDER_FAILPOINT=before_ship`` / ``after_ship`` kill the process
just before the call / just after the carrier booked it, for the crash tests). No answer (refused, timed out, 5xx, 409 while the first call runs)
is retried with backoff; a 4xx refusal fails the parcel.
"""

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

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


class ShipmentDispatcher:
    def __init__(self, platform: "Platform", logistics: Logistics) -> None:
        self._p = platform
        self.logistics = logistics
        self._session: aiohttp.ClientSession | None = None
        self._tasks: dict[tuple[int, int, str], asyncio.Task[None]] = {}
        self._stopping = False
        logistics.on_outbox.append(self.spawn)

    async def start(self) -> None:
        self._session = aiohttp.ClientSession()
        self.resume()

    def resume(self) -> None:
        """Send every pending booking (after a start or a rebuild)."""
        for item in list(self.logistics.outbox.values()):
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
        task = asyncio.create_task(self._run(item.key), name=f"pyorder-ship-{item.key}")
        self._tasks[item.key] = task
        task.add_done_callback(lambda _t: self._tasks.pop(item.key, None))

    async def _run(self, key: tuple[int, int, str]) -> None:
        delay = 0.05
        while True:
            try:
                await self._p.intake.durable()  # the item itself, staged just before
                item = self.logistics.outbox.get(key)
                if item is None:  # done meanwhile, or dropped by a rebuild
                    return
                await self._book(item)
                await self._p.intake.durable()
                return
            except (Retry, IntakeUnavailableError) as exc:
                log.info("booking %s: %s; again in %.2f s", key, exc, delay)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("booking %s failed; again in %.2f s", key, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.logistics.config.retry_max_s)

    async def _book(self, item: OutboxItem) -> None:
        svc = self.logistics
        parcel = (item.order_id, item.attempt)
        sh = svc.shipments.get(parcel)
        if sh is None or sh.status is not ShipmentStatus.PENDING:
            svc.finish_outbox(item)  # a tracking event got there first
            return
        carrier = svc.config.carrier(sh.carrier)
        if carrier is None or self._session is None:
            raise Retry(f"carrier {sh.carrier} is not configured")
        order = await self._p.store.get_order(item.order_id)
        if order is None:
            raise Retry(f"order {item.order_id} is not readable yet")
        timeout_s = (carrier.timeout_ms or svc.config.timeout_ms) / 1000
        client = CarrierClient(self._session, carrier, timeout_s)
        _failpoint("before_ship")
        try:
            status, body = await client.create_shipment(
                svc.carrier_request(order, sh), sh.idempotency_key
            )
        except CarrierUnreachable as exc:
            raise Retry(f"create: {exc}") from exc
        if status == 200:
            _failpoint("after_ship")
            svc.observe_booking(parcel, body)
        elif status >= 500 or status in (409, 429):
            raise Retry(f"create: HTTP {status}")
        else:
            error = body.get("error")
            reason = (
                f"{error.get('code')}: {error.get('message')}" if isinstance(error, dict) else ""
            )
            log.error("order %d parcel %d: the carrier refused it: %s", *parcel, reason)
            svc.fail_booking(parcel, f"HTTP {status} {reason}")
        svc.finish_outbox(item)
