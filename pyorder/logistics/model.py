"""The logistics domain's records: plain, frozen dataclasses, written whole by the stores.

An order's fulfilment status is separate from its order status and its payment status
(Saleor's split): the order says where the order is (``paid``), the payment where the money is,
the fulfilment where the goods are. A paid order ships as one parcel per warehouse its lines
were matched to; each parcel is a ``Shipment`` at the carrier. Times are ms since the Unix
epoch, UTC.
"""

from dataclasses import dataclass
from enum import StrEnum


class ShipmentStatus(StrEnum):
    """A parcel. ``pending``: recorded with its outbox call, not booked at the carrier yet;
    ``failed``: the carrier refused to book it (another parcel may be shipped from the same
    warehouse). The others are the carrier's own tracking statuses."""

    PENDING = "pending"
    CREATED = "created"
    PICKED_UP = "picked_up"
    IN_TRANSIT = "in_transit"
    OUT_FOR_DELIVERY = "out_for_delivery"
    DELIVERED = "delivered"
    EXCEPTION = "exception"
    FAILED = "failed"


_JOURNEY = (
    ShipmentStatus.PENDING,
    ShipmentStatus.CREATED,
    ShipmentStatus.PICKED_UP,
    ShipmentStatus.IN_TRANSIT,
    ShipmentStatus.OUT_FOR_DELIVERY,
    ShipmentStatus.DELIVERED,
)
SHIPMENT_TERMINAL = frozenset(
    {ShipmentStatus.DELIVERED, ShipmentStatus.EXCEPTION, ShipmentStatus.FAILED}
)

SHIPMENT_TRANSITIONS: dict[ShipmentStatus, frozenset[ShipmentStatus]] = {
    **{
        s: frozenset(_JOURNEY[i + 1 :])
        | (frozenset({ShipmentStatus.EXCEPTION}) if i > 0 else frozenset({ShipmentStatus.FAILED}))
        for i, s in enumerate(_JOURNEY[:-1])
    },
    **{s: frozenset() for s in SHIPMENT_TERMINAL},
}
"""Legal moves of a parcel: forward along the journey (a reordered webhook may skip steps),
to ``exception`` once booked, to ``failed`` only before. Anything else is stale and ignored."""


class FulfilmentStatus(StrEnum):
    """An order's goods, derived from its parcels (one per serving warehouse). A parcel counts
    as shipped once the carrier has booked it (it has a tracking number)."""

    UNFULFILLED = "unfulfilled"
    PARTIALLY_SHIPPED = "partially_shipped"
    SHIPPED = "shipped"
    PARTIALLY_DELIVERED = "partially_delivered"
    DELIVERED = "delivered"


FULFILMENT_ORDER = tuple(FulfilmentStatus)
"""The statuses in the only direction an order's fulfilment moves (it may skip some)."""


@dataclass(frozen=True, slots=True)
class Shipment:
    """One parcel of an order, from one warehouse, at one carrier. Its carrier
    Idempotency-Key derives from (order, parcel): ``pyorder-ship-<order>-<parcel>``."""

    order_id: int
    parcel: int
    """1, 2, ... per order; a parcel the carrier refused (``failed``) is replaced by a new one."""
    warehouse: int
    carrier: str
    status: ShipmentStatus
    idempotency_key: str
    carrier_shipment_id: str
    tracking_number: str
    window_id: int
    """The delivery window sent with it; -1 for none."""
    last_sequence: int
    """The carrier's sequence number of the last tracking event applied (0: none)."""
    last_event_ms: int
    """When that event happened (the carrier's ``occurred_at``)."""
    error: str
    created_ms: int
    updated_ms: int
    delivered_ms: int
    """When the carrier says it was delivered; 0 until then."""


@dataclass(frozen=True, slots=True)
class Fulfilment:
    """The goods side of one order."""

    order_id: int
    parcels: int
    """How many parcels the order ships as: the warehouses its lines were matched to."""
    status: FulfilmentStatus
    window_id: int
    """The delivery window the buyer picked; -1 for none."""
    paid_ms: int
    """When the order was paid; 0 while it is not."""
    delivered_ms: int
    """When its last parcel was delivered; 0 until then."""
    fulfilment_ms: int
    """delivered_ms - paid_ms once delivered; -1 until then."""
    updated_ms: int


@dataclass(frozen=True, slots=True)
class DeliveryWindow:
    """A time slot a region's buyers may have their parcels delivered in, with a capacity."""

    id: int
    region: str
    start_ms: int
    end_ms: int
    capacity: int
    booked: int
    """Orders holding it; never above ``capacity``."""
    created_ms: int

    @property
    def remaining(self) -> int:
        return max(0, self.capacity - self.booked)


class BookingOutcome(StrEnum):
    """What booking a window in the store did (cluster nodes, ``WindowBooking``)."""

    BOOKED = "booked"
    """The place was taken (and the previous window's given back)."""
    HELD = "held"
    """The order already held this window: nothing changed."""
    FULL = "full"
    """The window has no place left: nothing changed."""
    UNAVAILABLE = "unavailable"
    """No such window in the order's region: nothing changed."""
    ENDED = "ended"
    """The window has ended: nothing changed."""
    ORDER_ENDED = "order_ended"
    """The order was cancelled or expired (``WindowBooking.status``): nothing changed."""
    NO_ORDER = "no_order"
    """The order is not stored: nothing changed."""


@dataclass(frozen=True, slots=True)
class WindowBooking:
    """What a booking in the store did (``pyorder.storage.window_bookings``): its outcome, the
    order's status, and the rows of the windows it read or changed as it left them (the new
    window's, and the previous one's when a place was given back)."""

    outcome: BookingOutcome
    status: str = ""
    windows: tuple[DeliveryWindow, ...] = ()

    def window(self, window_id: int) -> DeliveryWindow | None:
        return next((w for w in self.windows if w.id == window_id), None)


@dataclass(frozen=True, slots=True)
class TrackingEvent:
    """A carrier's tracking event applied to (or recorded for) a parcel."""

    carrier: str
    event_id: str
    order_id: int
    parcel: int
    sequence: int
    status: str
    occurred_ms: int
    location: str
    received_ms: int
    applied: bool
    """False when it was stale (an older sequence, or not a legal move): kept, not applied."""
