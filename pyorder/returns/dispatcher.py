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

import logging
from collections.abc import Awaitable, Callable

from pyorder.kernel.outbox import OutboxItem, Retry, failpoint
from pyorder.logistics.carriers import CarrierUnreachable, LogisticsConfig
from pyorder.logistics.dispatcher import CarrierDispatcher
from pyorder.returns.service import Returns
from pyorder.storage.base import Store

log = logging.getLogger(__name__)


class ReturnDispatcher(CarrierDispatcher):
    label = "return booking"

    def __init__(
        self,
        returns: Returns,
        config: LogisticsConfig,
        store: Store,
        durable: Callable[[], Awaitable[None]],
    ) -> None:
        super().__init__(returns, config, store, durable)
        self.returns = returns

    async def _send(self, item: OutboxItem) -> None:
        svc = self.returns
        ret = svc.returns.get(item.attempt)
        if ret is None:  # never expected: the item was staged with the return
            svc.finish_outbox(item)
            return
        # Sent even when a tracking event got here first: the call is idempotent, and its
        # answer carries the first-weight cost to record.
        client = self.client(ret.carrier)
        order = await self.store.get_order(item.order_id)
        if order is None:
            raise Retry(f"order {item.order_id} is not readable")
        try:
            status, shipment, error = await client.create_return(
                svc.carrier_request(order, ret), ret.idempotency_key
            )
        except CarrierUnreachable as exc:
            raise Retry(f"create: {exc}") from exc
        if shipment is not None:
            failpoint("after_return_booking")
            svc.observe_booking(ret.id, shipment)
        elif status >= 500 or status in (409, 429):
            raise Retry(f"create: HTTP {status}")
        else:
            reason = error.describe()
            log.error("return %d: the carrier refused it: %s", ret.id, reason)
            svc.fail_booking(ret.id, f"HTTP {status} {reason}")
        svc.finish_outbox(item)
