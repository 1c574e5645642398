"""Request and response bodies of the logistics' routes (``pyorder.server.api.logistics``): delivery
windows, shipping, an order's parcels and their tracking, as msgspec Structs, and the
converters from the records. Returns show their parcel's tracking with ``TrackingEventOut``."""

from datetime import datetime
from typing import Annotated

import msgspec
from msgspec import Meta

from pyorder.kernel.clock import iso_ms as iso
from pyorder.logistics.model import DeliveryWindow, Fulfilment, Shipment, TrackingEvent
from pyorder.orders.model import Order
from pyorder.server.bodies import Id, OrderId

UtcTime = Annotated[
    datetime, Meta(tz=True, description="ISO 8601 with an offset (Z for UTC); kept as UTC")
]
WindowId = Annotated[int, Meta(ge=1, le=2**53)]


# --- requests (unknown fields are an error) -------------------------------------------------


class DeliveryWindowIn(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    start: UtcTime
    end: UtcTime
    capacity: Annotated[int, Meta(ge=1, le=1_000_000, description="orders it can take")]


class WindowPickIn(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    window: WindowId


class ShipIn(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    warehouse: Id | None = None
    """Ship only the parcel from this warehouse (default: every parcel not shipped yet)."""


# --- responses -----------------------------------------------------------------------------


class DeliveryWindowOut(msgspec.Struct):
    id: int
    region: str
    start: str
    end: str
    capacity: int
    booked: int
    remaining: int


class DeliveryWindowList(msgspec.Struct):
    region: str
    windows: list[DeliveryWindowOut]


class ParcelLineOut(msgspec.Struct):
    sku: int
    quantity: int


class TrackingEventOut(msgspec.Struct):
    sequence: int
    status: str
    occurred_at: str
    location: str
    applied: bool
    """False for an event that arrived late (older than the parcel's state): shown, not applied."""


class ShipmentOut(msgspec.Struct):
    parcel: int
    warehouse: int
    carrier: str
    status: str
    tracking_number: str | None
    lines: list[ParcelLineOut]
    delivery_window: DeliveryWindowOut | None
    error: str
    created_at: str
    updated_at: str
    delivered_at: str | None
    events: list[TrackingEventOut]


class ShipmentsOut(msgspec.Struct):
    """An order's fulfilment and parcels. A merchant sees only the parcels holding its lines,
    each listing only those lines."""

    order_id: OrderId
    order_status: str
    fulfilment_status: str
    delivery_window: DeliveryWindowOut | None
    paid_at: str | None
    delivered_at: str | None
    fulfilment_ms: int | None
    """Paid to delivered (the last parcel), milliseconds; null until delivered."""
    shipments: list[ShipmentOut]


# --- conversions ---------------------------------------------------------------------------


def window_out(w: DeliveryWindow) -> DeliveryWindowOut:
    return DeliveryWindowOut(
        w.id, w.region, iso(w.start_ms), iso(w.end_ms), w.capacity, w.booked, w.remaining
    )


def tracking_event_out(e: TrackingEvent) -> TrackingEventOut:
    return TrackingEventOut(e.sequence, e.status, iso(e.occurred_ms), e.location, e.applied)


def shipments_out(
    order: Order,
    fulfilment: Fulfilment | None,
    shipments: list[Shipment],
    events: list[TrackingEvent],
    windows: dict[int, DeliveryWindow],
) -> ShipmentsOut:
    def window(wid: int) -> DeliveryWindowOut | None:
        found = windows.get(wid)
        return None if found is None else window_out(found)

    by_parcel: dict[int, list[TrackingEventOut]] = {}
    for e in sorted(events, key=lambda e: (e.parcel, e.sequence, e.received_ms)):
        by_parcel.setdefault(e.parcel, []).append(tracking_event_out(e))
    f = fulfilment
    return ShipmentsOut(
        order_id=str(order.id),
        order_status=order.status.value,
        fulfilment_status=f.status.value if f is not None else "unfulfilled",
        delivery_window=window(f.window_id) if f is not None else None,
        paid_at=iso(f.paid_ms) if f is not None and f.paid_ms else None,
        delivered_at=iso(f.delivered_ms) if f is not None and f.delivered_ms else None,
        fulfilment_ms=f.fulfilment_ms if f is not None and f.fulfilment_ms >= 0 else None,
        shipments=[
            ShipmentOut(
                parcel=s.parcel,
                warehouse=s.warehouse,
                carrier=s.carrier,
                status=s.status.value,
                tracking_number=s.tracking_number or None,
                lines=[
                    ParcelLineOut(li.sku, li.quantity)
                    for li in order.lines
                    if li.warehouse == s.warehouse
                ],
                delivery_window=window(s.window_id),
                error=s.error,
                created_at=iso(s.created_ms),
                updated_at=iso(s.updated_ms),
                delivered_at=iso(s.delivered_ms) if s.delivered_ms else None,
                events=by_parcel.get(s.parcel, []),
            )
            for s in shipments
        ],
    )
