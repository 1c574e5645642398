"""Sends the return bookings the outbox owes the carrier.

As ``pyorder.logistics.dispatcher`` does for parcels out: each pending ``return_booking`` item
gets one task that waits until the item is durable (it was staged with the return), calls the
carrier's ``POST /v1/returns`` with the return's deterministic Idempotency-Key
(``pyorder-return-<id>``), stages the answer (its tracking number and first-weight cost) with
the item marked done, and waits until that is durable. After a crash the item is sent again
with the same key, and the carrier answers with the parcel it booked the first time
(``PYORDER_FAILPOINT=after_return_booking`` kills the process just after the carrier booked
it, for the crash test). No answer is retried with backoff; a 4xx refusal fails the booking.
"""

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

import aiohttp

from pyorder.intake import IntakeUnavailableError
from pyorder.logistics.carriers import CarrierClient, CarrierUnreachable
from pyorder.payments.dispatcher import Retry, _failpoint
from pyorder.payments.model import OutboxItem
from pyorder.returns.service import Returns

if TYPE_CHECKING:
    from pyorder.platform import Platform

log = logging.getLogger(__name__)


class ReturnDispatcher:
    def __init__(self, platform: "Platform", returns: Returns) -> None:
        self._p = platform
        self.returns = returns
        self._session: aiohttp.ClientSession | None = None
        self._tasks: dict[tuple[int, int, str], asyncio.Task[None]] = {}
        self._stopping = False
        returns.on_outbox.append(self.spawn)

    async def start(self) -> None:
        self._session = aiohttp.ClientSession()
        self.resume()

    def resume(self) -> None:
        """Send every pending booking (after a start or a rebuild)."""
        for item in list(self.returns.outbox.values()):
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
        task = asyncio.create_task(self._run(item.key), name=f"pyorder-return-{item.key}")
        self._tasks[item.key] = task
        task.add_done_callback(lambda _t: self._tasks.pop(item.key, None))

    async def _run(self, key: tuple[int, int, str]) -> None:
        delay = 0.05
        retry_max_s = self._p.logistics.config.retry_max_s
        while True:
            try:
                await self._p.intake.durable()  # the item itself, staged just before
                item = self.returns.outbox.get(key)
                if item is None:  # done meanwhile, or dropped by a rebuild
                    return
                await self._book(item)
                await self._p.intake.durable()
                return
            except (Retry, IntakeUnavailableError) as exc:
                log.info("return booking %s: %s; again in %.2f s", key, exc, delay)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("return booking %s failed; again in %.2f s", key, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, retry_max_s)

    async def _book(self, item: OutboxItem) -> None:
        svc = self.returns
        ret = svc.returns.get(item.attempt)
        if ret is None:  # never expected: the item was staged with the return
            svc.finish_outbox(item)
            return
        # Sent even when a tracking event got here first: the call is idempotent, and its
        # answer carries the first-weight cost to record.
        config = self._p.logistics.config
        carrier = config.carrier(ret.carrier)
        if carrier is None or self._session is None:
            raise Retry(f"carrier {ret.carrier} is not configured")
        order = await self._p.store.get_order(item.order_id)
        if order is None:
            raise Retry(f"order {item.order_id} is not readable")
        client = CarrierClient(
            self._session, carrier, (carrier.timeout_ms or config.timeout_ms) / 1000
        )
        try:
            status, body = await client.create_return(
                svc.carrier_request(order, ret), ret.idempotency_key
            )
        except CarrierUnreachable as exc:
            raise Retry(f"create: {exc}") from exc
        if status == 200:
            _failpoint("after_return_booking")
            svc.observe_booking(ret.id, body)
        elif status >= 500 or status in (409, 429):
            raise Retry(f"create: HTTP {status}")
        else:
            error = body.get("error")
            reason = (
                f"{error.get('code')}: {error.get('message')}" if isinstance(error, dict) else ""
            )
            log.error("return %d: the carrier refused it: %s", ret.id, reason)
            svc.fail_booking(ret.id, f"HTTP {status} {reason}")
        svc.finish_outbox(item)
