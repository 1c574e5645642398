"""Shipments, their tracking events, and the journey a parcel is planned to take.

Outbound (warehouse to buyer)::

    created --> picked_up --> in_transit --> out_for_delivery --> delivered
    created --> canceled (before pickup only)
    picked_up | in_transit --> exception (the parcel cannot be delivered)

Return (buyer back to a warehouse)::

    created --> return_pickup_scanned --> in_transit --> delivered | exception

Times are UTC datetimes in carrier time: a shipment's clock starts at its creation and runs
``time_scale`` times faster than the real one (``config.CarrierSettings``).
"""

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Literal

from sandbox.bodies import iso

Kind = Literal["outbound", "return"]


class ShipmentStatus(StrEnum):
    CREATED = "created"
    PICKED_UP = "picked_up"
    RETURN_PICKUP_SCANNED = "return_pickup_scanned"
    IN_TRANSIT = "in_transit"
    OUT_FOR_DELIVERY = "out_for_delivery"
    DELIVERED = "delivered"
    EXCEPTION = "exception"
    CANCELED = "canceled"


TERMINAL = (ShipmentStatus.DELIVERED, ShipmentStatus.EXCEPTION, ShipmentStatus.CANCELED)


@dataclass(frozen=True)
class Window:
    """A delivery window the buyer chose, UTC."""

    start: datetime
    end: datetime

    def public(self) -> dict[str, str]:
        return {"start": iso(self.start), "end": iso(self.end)}


@dataclass(frozen=True)
class Scan:
    """One planned step: its status, when (carrier seconds after creation), where, and notes."""

    status: ShipmentStatus
    after_s: float
    location: str
    details: dict[str, object] = field(default_factory=dict)


def plan_journey(
    kind: Kind,
    *,
    created_at: datetime,
    interval_s: float,
    window: Window | None,
    origin: str,
    destination: str,
    fails: bool,
) -> list[Scan]:
    """The scans of a parcel's journey, in order, one ``interval_s`` apart (carrier seconds).

    With a delivery window, the parcel is delivered at the window's middle, or as soon as it
    can be when that is later (``details.window_met`` says whether it made the window).
    """
    i = interval_s
    first = ShipmentStatus.PICKED_UP if kind == "outbound" else ShipmentStatus.RETURN_PICKUP_SCANNED
    scans = [
        Scan(first, i, origin),
        Scan(ShipmentStatus.IN_TRANSIT, 2 * i, "sorting centre"),
    ]
    if fails:
        reason = "address_not_found" if kind == "outbound" else "parcel_refused"
        return [*scans, Scan(ShipmentStatus.EXCEPTION, 3 * i, "sorting centre", {"reason": reason})]
    if kind == "return":
        return [*scans, Scan(ShipmentStatus.DELIVERED, 3 * i, destination)]
    deliver_s = 4 * i
    details: dict[str, object] = {}
    if window is not None:
        middle = window.start + (window.end - window.start) / 2
        deliver_s = max(deliver_s, (middle - created_at).total_seconds())
        delivered_at = created_at + timedelta(seconds=deliver_s)
        details["window_met"] = window.start <= delivered_at <= window.end
    out_s = max(3 * i, deliver_s - i)
    return [
        *scans,
        Scan(ShipmentStatus.OUT_FOR_DELIVERY, out_s, destination),
        Scan(ShipmentStatus.DELIVERED, deliver_s, destination, details),
    ]


@dataclass(frozen=True)
class TrackingEvent:
    id: str
    shipment: str
    tracking_number: str
    kind: Kind
    reference: str | None
    sequence: int
    """1, 2, ... per shipment: the order the carrier scanned it in."""
    status: ShipmentStatus
    occurred_at: datetime
    location: str
    details: dict[str, object]

    def public(self) -> dict[str, object]:
        return {
            "id": self.id,
            "object": "tracking_event",
            "shipment": self.shipment,
            "tracking_number": self.tracking_number,
            "kind": self.kind,
            "reference": self.reference,
            "sequence": self.sequence,
            "status": str(self.status),
            "occurred_at": iso(self.occurred_at),
            "location": self.location,
            "details": dict(self.details),
        }


@dataclass
class Shipment:
    id: str
    kind: Kind
    tracking_number: str
    sender: dict[str, object] | None
    recipient: dict[str, object]
    weight_g: int
    window: Window | None
    reference: str | None
    original_tracking_number: str | None
    metadata: dict[str, str]
    currency: str
    cost: int
    """What the carrier bills for it, minor units."""
    first_weight_cost: int
    idempotency_key: str | None
    created_at: datetime
    journey: list[Scan]
    status: ShipmentStatus = ShipmentStatus.CREATED
    events: list[TrackingEvent] = field(default_factory=list)
    canceled_at: datetime | None = None

    @property
    def next_scan(self) -> Scan | None:
        if self.status in TERMINAL or len(self.events) >= len(self.journey):
            return None
        return self.journey[len(self.events)]

    def public(self) -> dict[str, object]:
        delivered = [e for e in self.events if e.status is ShipmentStatus.DELIVERED]
        return {
            "id": self.id,
            "object": "shipment",
            "kind": self.kind,
            "tracking_number": self.tracking_number,
            "status": str(self.status),
            "from": self.sender,
            "to": self.recipient,
            "weight_g": self.weight_g,
            "delivery_window": None if self.window is None else self.window.public(),
            "reference": self.reference,
            "original_tracking_number": self.original_tracking_number,
            "metadata": dict(self.metadata),
            "currency": self.currency,
            "cost": self.cost,
            "first_weight_cost": self.first_weight_cost,
            "created_at": iso(self.created_at),
            "estimated_delivery_at": self._estimate(),
            "delivered_at": iso(delivered[0].occurred_at) if delivered else None,
            "canceled_at": None if self.canceled_at is None else iso(self.canceled_at),
            "events": [e.public() for e in self.events],
        }

    def _estimate(self) -> str | None:
        last = self.journey[-1]
        if last.status is not ShipmentStatus.DELIVERED:
            return None
        return iso(self.created_at + timedelta(seconds=last.after_s))

    def ledger(self) -> dict[str, object]:
        row = self.public()
        del row["events"]
        return row | {"idempotency_key": self.idempotency_key, "scans": len(self.events)}
