"""Order events, staged with the state changes they tell of: the outbox of merchants' webhooks.

Each ``publish`` call is made by the service changing an order, in the same synchronous step
that stages the change, so the event is in the same ``WriteBatch`` and commits (or is lost)
with it: a crash never keeps a change without its event, nor an event without its change. It
stages an ``OrderEvent`` (the order id, the type and a snapshot of ``data``), which the store
fans out at commit to the subscribed endpoints of the order's merchants.

When no enabled endpoint subscribes to a type, nothing is made or staged: the check is one
dictionary lookup, so the order paths cost the same as without webhooks. The orders the Rust
intake takes are not given a Python object each even then: ``placed`` only flags the batch,
and the store writes their ``order.created`` rows in SQL.

Returns hook: a service of returns publishes with ``publish(order_id, type, obj)`` once its
types are added to ``EventType``.
"""

import logging
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

from pyorder.engine import Engine
from pyorder.events import payloads
from pyorder.events.endpoints import Endpoints
from pyorder.events.model import EventType, OrderEnded, OrderEvent
from pyorder.events.storage import EVENTS, StagedEvents
from pyorder.intake import Intake
from pyorder.kernel.clock import now_ms
from pyorder.logistics.model import Fulfilment, FulfilmentStatus, Shipment
from pyorder.marketplace import refund_recipients
from pyorder.model import WriteBatch
from pyorder.orders.model import Order, OrderStatus
from pyorder.payments.model import Refund, RefundStatus
from pyorder.risk.records import ReviewOutcome
from pyorder.storage.base import Store

log = logging.getLogger(__name__)

_BY_STATUS = {
    OrderStatus.PAID: EventType.ORDER_PAID,
    OrderStatus.CANCELLED: EventType.ORDER_CANCELLED,
    OrderStatus.EXPIRED: EventType.ORDER_EXPIRED,
}
_BY_REVIEW = {
    ReviewOutcome.APPROVED: EventType.ORDER_REVIEW_APPROVED,
    ReviewOutcome.REJECTED: EventType.ORDER_REVIEW_REJECTED,
}
_BY_FULFILMENT = {
    FulfilmentStatus.SHIPPED: EventType.ORDER_SHIPPED,
    FulfilmentStatus.DELIVERED: EventType.ORDER_DELIVERED,
}


class Events:
    """Stages the order events that merchants' endpoints subscribe to. ``endpoints``: who
    subscribes to what; ``engine`` gives the current engine (SKUs; replaced on every
    rebuild); ``intake`` stages, ``store`` reads what committed."""

    def __init__(
        self, endpoints: Endpoints, engine: Callable[[], Engine], intake: Intake, store: Store
    ) -> None:
        self._endpoints = endpoints
        self._engine = engine
        self._intake = intake
        self._store = store
        self.on_staged: list[Callable[[frozenset[int]], None]] = []
        """Callbacks given the endpoints that may have new events once the batch commits."""

    def placed(self) -> None:
        """The Rust intake just staged orders in ``batch.placed``: have their order.created,
        and the order.review_required of those held for review, written at commit, if anyone
        subscribes to them."""
        wanting = self._endpoints.wanting(EventType.ORDER_CREATED)
        if wanting:
            batch = self._intake.batch
            batch.part(EVENTS).created = batch.placed
            self._notify(wanting)
        held = self._endpoints.wanting(EventType.ORDER_REVIEW_REQUIRED)
        if held:
            batch = self._intake.batch
            batch.part(EVENTS).review_required = batch.placed
            self._notify(held)

    def reviewed(self, order: Order, review: ReviewOutcome) -> None:
        """``order`` (as it now is) was just approved or rejected by a reviewer."""
        kind = _BY_REVIEW.get(review)
        if kind is not None and self._endpoints.wanting(kind):
            self._stage(order.id, kind, payloads.reviewed_data(order, review.value))

    def order_changed(self, order: Order, previous: OrderStatus) -> None:
        """``order`` (as it now is) just moved from ``previous`` to its status."""
        kind = _BY_STATUS.get(order.status)
        if kind is not None and self._endpoints.wanting(kind):
            self._stage(order.id, kind, payloads.status_data(order, previous))

    def order_ended(
        self, order_id: int, status: OrderStatus, previous: OrderStatus, at_ms: int
    ) -> None:
        """As ``order_changed`` for an order ended with only its held part in memory (an
        expiry, a payment): the event's snapshot is made as the batch is handed to the store
        (``resolve_ended``), from the order in full, and commits with the change."""
        kind = _BY_STATUS.get(status)
        if kind is not None and self._endpoints.wanting(kind):
            ended = OrderEnded(order_id, kind, status.value, previous.value, at_ms)
            self._intake.batch.part(EVENTS).ended.append(ended)
            self._notify(self._endpoints.wanting(kind))

    def resolve_ended(self, batch: WriteBatch) -> Awaitable[None] | None:
        """The ``Intake.prepare`` of a batch handed over: if it holds events of ended orders
        (``StagedEvents.ended``), the work that makes them; else None (nothing to await)."""
        staged = batch.parts.get(EVENTS.name)
        if not isinstance(staged, StagedEvents) or not staged.ended:
            return None
        return self._resolve(staged)

    async def _resolve(self, part: StagedEvents) -> None:
        """Make the ``OrderEvent`` of each ended order from the order in full: staged (placed
        in this batch or one still being written) or in the store."""
        staged = {e.order_id: self._intake.staged_order(e.order_id) for e in part.ended}
        missing = [oid for oid, order in staged.items() if order is None]
        stored = await self._store.get_orders(missing) if missing else {}
        for e in part.ended:
            order = staged[e.order_id] or stored.get(e.order_id)
            if order is None:
                log.error("order %d ended but is neither staged nor stored", e.order_id)
                continue
            now = replace(order, status=OrderStatus(e.status), updated_ms=e.at_ms)
            data = payloads.status_data(now, OrderStatus(e.previous))
            part.events.append(OrderEvent(e.order_id, e.type, data, e.at_ms))
        part.ended.clear()

    def fulfilment_changed(self, fulfilment: Fulfilment, shipments: list[Shipment]) -> None:
        """The order's fulfilment just moved to its status (order.shipped / .delivered)."""
        kind = _BY_FULFILMENT.get(fulfilment.status)
        if kind is not None and self._endpoints.wanting(kind):
            obj = payloads.fulfilment_object(fulfilment, shipments)
            self._stage(fulfilment.order_id, kind, payloads.object_data(obj))

    def refunded(self, refund: Refund) -> None:
        """A refund of the order just succeeded at the provider: to the merchants whose lines
        it touches (each is sent its share, ``payloads.for_merchant``)."""
        kind = EventType.ORDER_REFUNDED
        if refund.status is not RefundStatus.SUCCEEDED or not self._endpoints.wanting(kind):
            return
        payload = payloads.object_data(payloads.refund_object(refund))
        recipients = refund_recipients(refund, self._owner)
        if recipients is None:
            self._stage(refund.order_id, kind, payload)
            return
        for merchant in sorted(recipients):
            self._stage(refund.order_id, kind, payload, merchant)

    def _owner(self, sku: int) -> str | None:
        """The merchant of a SKU (the owner of a SKU never changes)."""
        sku_row = self._engine().skus.get(sku)
        return None if sku_row is None else sku_row.merchant

    def publish(self, order_id: int, kind: EventType, obj: dict[str, Any]) -> None:
        """Stage an event about ``obj`` (JSON-ready) of the order: the generic entry point."""
        if self._endpoints.wanting(kind):
            self._stage(order_id, kind, payloads.object_data(obj))

    def _stage(self, order_id: int, kind: EventType, payload: bytes, merchant: str = "") -> None:
        event = OrderEvent(order_id, kind, payload, now_ms(), merchant)
        self._intake.batch.part(EVENTS).events.append(event)
        self._notify(self._endpoints.wanting(kind))

    def _notify(self, endpoints: frozenset[int]) -> None:
        for notify in self.on_staged:
            notify(endpoints)
