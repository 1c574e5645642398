"""Sends the bookings the outbox owes the carrier.

Each pending ``ship`` outbox item gets one task (``pyorder.kernel.outbox.OutboxDispatcher``):
it waits until the item is durable (it was staged with the parcel), calls the carrier's ``POST
/v1/shipments`` with the parcel's deterministic Idempotency-Key (``pyorder-ship-<order>-<n>``),
stages the answer with the item marked done, and waits until that is durable. A crash anywhere
in between leaves the item pending in the store; after the restart it is sent again with the
same key and the carrier answers with the shipment it booked the first time: never two
shipments for one parcel (``PYORDER_FAILPOINT=before_ship`` / ``after_ship`` kill the process
just before the call / just after the carrier booked it, for the crash tests). No answer
(refused, timed out, 5xx, 409 while the first call runs, an answer the carrier's API does not
allow) is retried with backoff; a 4xx refusal fails the parcel.
"""

import logging
from collections.abc import Awaitable, Callable

from pyorder.intake import IntakeUnavailableError
from pyorder.kernel.outbox import OutboxDispatcher, OutboxItem, OutboxOwner, Retry, failpoint
from pyorder.logistics.carriers import CarrierClient, CarrierUnreachable, LogisticsConfig
from pyorder.logistics.model import ShipmentStatus
from pyorder.logistics.service import Logistics
from pyorder.storage.base import Store

log = logging.getLogger(__name__)


class CarrierDispatcher(OutboxDispatcher):
    """The outbox items of ``owner`` that are calls to a carrier of ``config``: ``_send`` is a
    subclass's one call, its answer staged with the item done. ``store`` reads the order a
    booking is for (it is committed: the item waits until it is durable)."""

    label = "booking"

    def __init__(
        self,
        owner: OutboxOwner,
        config: LogisticsConfig,
        store: Store,
        durable: Callable[[], Awaitable[None]],
    ) -> None:
        super().__init__(owner, durable, config.retry_max_s, transient=(IntakeUnavailableError,))
        self.config = config
        self.store = store

    def client(self, carrier_name: str) -> CarrierClient:
        """A client of the named carrier; Retry while it is not configured."""
        config = self.config
        carrier = config.carrier(carrier_name)
        if carrier is None or self._session is None:
            raise Retry(f"carrier {carrier_name} is not configured")
        timeout_s = (carrier.timeout_ms or config.timeout_ms) / 1000
        return CarrierClient(self._session, carrier, timeout_s)


class ShipmentDispatcher(CarrierDispatcher):
    def __init__(
        self, logistics: Logistics, store: Store, durable: Callable[[], Awaitable[None]]
    ) -> None:
        super().__init__(logistics, logistics.config, store, durable)
        self.logistics = logistics

    async def _send(self, item: OutboxItem) -> None:
        svc = self.logistics
        parcel = (item.order_id, item.attempt)
        sh = svc.shipments.get(parcel)
        if sh is None or sh.status is not ShipmentStatus.PENDING:
            svc.finish_outbox(item)  # a tracking event got there first
            return
        client = self.client(sh.carrier)
        order = await self.store.get_order(item.order_id)
        if order is None:
            raise Retry(f"order {item.order_id} is not readable yet")
        failpoint("before_ship")
        try:
            status, shipment, error = await client.create_shipment(
                svc.carrier_request(order, sh), sh.idempotency_key
            )
        except CarrierUnreachable as exc:
            raise Retry(f"create: {exc}") from exc
        if shipment is not None:
            failpoint("after_ship")
            svc.observe_booking(parcel, shipment)
        elif status >= 500 or status in (409, 429):
            raise Retry(f"create: HTTP {status}")
        else:
            reason = error.describe()
            log.error("order %d parcel %d: the carrier refused it: %s", *parcel, reason)
            svc.fail_booking(parcel, f"HTTP {status} {reason}")
        svc.finish_outbox(item)
