"""What an event says: its ``data`` (a snapshot of the order, fulfilment or refund it is about)
and the envelope it is sent in.

The objects have the shapes the HTTP API reads them in (``GET /v1/orders/{id}``, its
``/refunds``): money in minor units, times ISO 8601 UTC, order ids as strings (they are 64-bit).
What is staged is the whole snapshot, once per event; each merchant's endpoints are sent its
part of it (``for_merchant``: the cut of ``pyorder.marketplace``, as the API shows it to the
merchant). An envelope::

    {"id": "evt_42", "object": "event", "type": "order.paid", "created": 1767225600,
     "order_id": "7412...", "data": {"object": {...order...}, "previous_status": "pending_payment"}}

order.review_approved and .review_rejected add ``"review"`` (``approved``, ``rejected``) to
``data``.
"""

import logging
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import orjson

from pyorder.events.model import Delivery, EventType
from pyorder.kernel.clock import iso_ms
from pyorder.logistics.model import Fulfilment, Shipment, ShipmentStatus
from pyorder.marketplace import Views, refund_part, warehouses_of
from pyorder.orders.model import Order, OrderStatus
from pyorder.payments.model import Refund

log = logging.getLogger(__name__)


def order_object(order: Order) -> dict[str, Any]:
    """The order as ``GET /v1/orders/{id}`` shows it."""
    return {
        "id": str(order.id),
        "status": order.status.value,
        "buyer": order.buyer,
        "currency": order.currency,
        "total": order.total,
        "lines": [
            {
                "sku": li.sku,
                "quantity": li.quantity,
                "unit_price": li.unit_price,
                "line_total": li.quantity * li.unit_price,
                "warehouse": li.warehouse,
            }
            for li in order.lines
        ],
        "address": order.address,
        "created_at": iso_ms(order.created_ms),
        "payment_deadline": iso_ms(order.deadline_ms),
        "updated_at": iso_ms(order.updated_ms),
    }


def refund_object(r: Refund) -> dict[str, Any]:
    """The refund as ``GET /v1/orders/{id}/refunds`` shows it."""
    return {
        "order_id": str(r.order_id),
        "number": r.number,
        "status": r.status.value,
        "amount": r.amount,
        "currency": r.currency,
        "reason": r.reason,
        "lines": [{"sku": sku, "quantity": q} for sku, q in r.lines],
        "provider": r.provider,
        "provider_refund_id": r.provider_refund_id,
        "requested_by": r.requested_by,
        "error": r.error,
        "created_at": iso_ms(r.created_ms),
        "updated_at": iso_ms(r.updated_ms),
        "settled_at": iso_ms(r.settled_ms) if r.settled_ms else None,
    }


def fulfilment_object(f: Fulfilment, shipments: list[Shipment]) -> dict[str, Any]:
    """An order's fulfilment and its parcels (those the carrier did not refuse)."""
    return {
        "order_id": str(f.order_id),
        "status": f.status.value,
        "paid_at": iso_ms(f.paid_ms) if f.paid_ms else None,
        "delivered_at": iso_ms(f.delivered_ms) if f.delivered_ms else None,
        "fulfilment_ms": f.fulfilment_ms if f.fulfilment_ms >= 0 else None,
        "parcels": [
            {
                "parcel": s.parcel,
                "warehouse": s.warehouse,
                "carrier": s.carrier,
                "status": s.status.value,
                "tracking_number": s.tracking_number or None,
                "delivered_at": iso_ms(s.delivered_ms) if s.delivered_ms else None,
            }
            for s in shipments
            if s.status is not ShipmentStatus.FAILED
        ],
    }


def status_data(order: Order, previous: OrderStatus) -> bytes:
    """``data`` of order.paid / .cancelled / .expired: the order as it now is."""
    return orjson.dumps({"object": order_object(order), "previous_status": previous.value})


def created_data(order: Order) -> bytes:
    """``data`` of order.created: the order as it was created (awaiting payment, or in review
    while it still is), whatever it has become since (only its status, deadline and update
    time change; the rest is written once)."""
    held = order.status if order.status is OrderStatus.IN_REVIEW else OrderStatus.PENDING_PAYMENT
    created = replace(order, status=held, updated_ms=order.created_ms)
    return orjson.dumps({"object": order_object(created)})


def review_required_data(order: Order) -> bytes:
    """``data`` of order.review_required: the order as it was held (in review), whatever it
    has become since."""
    held = replace(order, status=OrderStatus.IN_REVIEW, updated_ms=order.created_ms)
    return orjson.dumps({"object": order_object(held)})


def reviewed_data(order: Order, review: str) -> bytes:
    """``data`` of order.review_approved / .review_rejected: the order as it now is, and the
    review's outcome (``approved``, ``rejected``)."""
    return orjson.dumps(
        {"object": order_object(order), "previous_status": "in_review", "review": review}
    )


def object_data(obj: dict[str, Any]) -> bytes:
    """``data`` holding one object (a fulfilment, a refund, a return)."""
    return orjson.dumps({"object": obj})


# --- what one merchant is sent ---------------------------------------------------------------


Cut = Callable[[Views, str, dict[str, Any], Order], dict[str, Any] | None]


def _order_part(views: Views, merchant: str, data: dict[str, Any], order: Order) -> dict[str, Any]:
    """order.created / .paid / .cancelled / .expired: the merchant's part of the order, with the
    status and update time of the snapshot (the rest of an order never changes)."""
    snapshot = data["object"]
    obj = order_object(views.order_for(merchant, order))
    obj["status"], obj["updated_at"] = snapshot["status"], snapshot["updated_at"]
    return {**data, "object": obj}


def _parcels_part(
    views: Views, merchant: str, data: dict[str, Any], order: Order
) -> dict[str, Any]:
    """order.shipped / .delivered: the parcels holding the merchant's lines."""
    mine = warehouses_of(order, merchant)
    obj = data["object"]
    parcels = [p for p in obj["parcels"] if p["warehouse"] in mine]
    return {**data, "object": {**obj, "parcels": parcels}}


def _refund_part(
    views: Views, merchant: str, data: dict[str, Any], order: Order
) -> dict[str, Any] | None:
    """order.refunded: the merchant's share and lines, or nothing when none are its."""
    obj = data["object"]
    lines = [(int(li["sku"]), int(li["quantity"])) for li in obj["lines"]]
    part = refund_part(order, merchant, int(obj["amount"]), lines, str(obj["requested_by"]))
    if part is None:
        return None
    amount, own = part
    cut = {**obj, "amount": amount, "lines": [{"sku": s, "quantity": q} for s, q in own]}
    return {**data, "object": cut}


CUTS: dict[EventType, Cut] = {
    EventType.ORDER_CREATED: _order_part,
    EventType.ORDER_PAID: _order_part,
    EventType.ORDER_CANCELLED: _order_part,
    EventType.ORDER_EXPIRED: _order_part,
    EventType.ORDER_SHIPPED: _parcels_part,
    EventType.ORDER_DELIVERED: _parcels_part,
    EventType.ORDER_REFUNDED: _refund_part,
    EventType.ORDER_REVIEW_REQUIRED: _order_part,
    EventType.ORDER_REVIEW_APPROVED: _order_part,
    EventType.ORDER_REVIEW_REJECTED: _order_part,
}
"""How each type of event is cut for one merchant: a new type needs its own entry (a type
without one is never sent)."""


def for_merchant(
    views: Views, merchant: str, kind: str, data: bytes | None, order: Order
) -> bytes | None:
    """``data`` of an event of ``order`` as ``merchant`` is sent it; None when nothing of it is
    the merchant's (it is then not sent). ``data`` None: rendered from the order, the
    order.created or .review_required of an order the Rust intake took, or the order.expired
    of an order a dead cluster node took (``pyorder.storage.stock_leases.expire_orphans``)."""
    if data is None:  # rendered from the order's row, as it is now
        mine = views.order_for(merchant, order)
        if kind == EventType.ORDER_EXPIRED.value:  # a dead cluster node's, expired in SQL
            return status_data(mine, OrderStatus.PENDING_PAYMENT)
        if kind == EventType.ORDER_REVIEW_REQUIRED.value:
            return review_required_data(mine)
        return created_data(mine)
    try:
        cut = CUTS[EventType(kind)]
        part = cut(views, merchant, orjson.loads(data), order)
    except (KeyError, TypeError, ValueError, orjson.JSONDecodeError) as exc:
        # Never send what could not be cut: it would show the merchant others' data.
        log.error("event %s of order %d cannot be cut for %s: %r", kind, order.id, merchant, exc)
        return None
    return None if part is None else orjson.dumps(part)


def envelope(delivery: Delivery, data: bytes) -> bytes:
    """The body sent to the endpoint: the same bytes for every attempt of one delivery."""
    return orjson.dumps(
        {
            "id": delivery.event_id,
            "object": "event",
            "type": delivery.type,
            "created": delivery.created_ms // 1000,
            "order_id": str(delivery.order_id),
            "data": orjson.Fragment(data),
        }
    )
