"""What an event says: its ``data`` (a snapshot of the order, fulfilment or refund it is about)
and the envelope it is sent in.

The objects have the shapes the HTTP API reads them in (``GET /v1/orders/{id}``, its
``/refunds``): money in minor units, times ISO 8601 UTC, order ids as strings (they are 64-bit).
An envelope::

    {"id": "evt_42", "object": "event", "type": "order.paid", "created": 1767225600,
     "order_id": "7412...", "data": {"object": {...order...}, "previous_status": "pending_payment"}}
"""

from dataclasses import replace
from typing import Any

import orjson

from pyorder.events.model import Delivery
from pyorder.logistics.model import Fulfilment, Shipment, ShipmentStatus
from pyorder.logistics.service import iso_ms
from pyorder.model import Order, OrderStatus
from pyorder.payments.model import Refund


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
    """``data`` of order.created: the order as it was created (awaiting payment), whatever it
    has become since (only its status and update time change; the rest is written once)."""
    created = replace(order, status=OrderStatus.PENDING_PAYMENT, updated_ms=order.created_ms)
    return orjson.dumps({"object": order_object(created)})


def object_data(obj: dict[str, Any]) -> bytes:
    """``data`` holding one object (a fulfilment, a refund, a return)."""
    return orjson.dumps({"object": obj})


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
