"""The returns domain's records: plain, frozen dataclasses, written whole by the stores.

A ``Return`` is a buyer's 7-day no-reason return of some units of one delivered parcel: the
parcel back (booked with the carrier, its first-weight cost borne by the platform), the
lightning decision, the merchant's review when there is one, and the refund it led to (a
``pyorder.payments.model.Refund``). Money is integer minor units of the order's currency;
times are ms since the Unix epoch, UTC.
"""

from dataclasses import dataclass
from enum import StrEnum


class ReturnStatus(StrEnum):
    """Where a return is (``RETURN_TRANSITIONS`` says how it moves)."""

    REQUESTED = "requested"
    """Opened; its booking with the carrier is owed (outbox)."""
    PICKUP_BOOKED = "pickup_booked"
    """The carrier booked the parcel back; it waits for the pickup scan."""
    BOOKING_FAILED = "booking_failed"
    """The carrier refused the booking; the units may be returned again."""
    PICKUP_FAILED = "pickup_failed"
    """The carrier reported an exception before collecting the parcel back; the units may be
    returned again."""
    PICKED_UP = "picked_up"
    """The carrier scanned the pickup; the lightning decision is taken in the same step."""
    IN_REVIEW = "in_review"
    """A rule failed: the merchant approves or rejects it."""
    APPROVED = "approved"
    """The merchant approved it; the refund is issued in the same step."""
    REJECTED = "rejected"
    REFUNDED = "refunded"
    """The refund is issued (its provider state is the refund's own)."""


RETURN_TRANSITIONS: dict[ReturnStatus, frozenset[ReturnStatus]] = {
    ReturnStatus.REQUESTED: frozenset(
        {
            ReturnStatus.PICKUP_BOOKED,
            ReturnStatus.BOOKING_FAILED,
            ReturnStatus.PICKED_UP,
            ReturnStatus.PICKUP_FAILED,
        }
    ),
    ReturnStatus.PICKUP_BOOKED: frozenset({ReturnStatus.PICKED_UP, ReturnStatus.PICKUP_FAILED}),
    ReturnStatus.PICKED_UP: frozenset({ReturnStatus.REFUNDED, ReturnStatus.IN_REVIEW}),
    ReturnStatus.IN_REVIEW: frozenset({ReturnStatus.APPROVED, ReturnStatus.REJECTED}),
    ReturnStatus.APPROVED: frozenset({ReturnStatus.REFUNDED}),
    ReturnStatus.BOOKING_FAILED: frozenset(),
    ReturnStatus.PICKUP_FAILED: frozenset(),
    ReturnStatus.REJECTED: frozenset(),
    ReturnStatus.REFUNDED: frozenset(),
}
"""Legal moves of a return. ``requested -> picked_up`` (and ``requested -> pickup_failed``): the
carrier's scan can arrive before its answer to the booking is recorded (a lost answer, a
crash). Anything else is refused (``InvalidState``) and changes nothing. An exception after the
pickup scan moves no return: the refund, issued or not, is decided on the pickup."""

RETURN_TERMINAL = frozenset(s for s, nxt in RETURN_TRANSITIONS.items() if not nxt)

HOLDS_UNITS = frozenset(
    set(ReturnStatus) - {ReturnStatus.BOOKING_FAILED, ReturnStatus.PICKUP_FAILED}
)
"""Statuses whose units count as returned: a refused booking, or a parcel the carrier never
collected, gives them back to the buyer."""


class ParcelStatus(StrEnum):
    """The parcel back, as the carrier tracks it (``return_pickup_scanned`` is ``picked_up``)."""

    PENDING = "pending"
    CREATED = "created"
    PICKED_UP = "picked_up"
    IN_TRANSIT = "in_transit"
    DELIVERED = "delivered"
    """At the warehouse."""
    EXCEPTION = "exception"
    """The carrier cannot carry it on: before the pickup scan, never collected; after it, lost
    on the way (``Return.error`` says which, with the carrier's reason)."""
    FAILED = "failed"
    """The booking was refused."""


_JOURNEY = (
    ParcelStatus.PENDING,
    ParcelStatus.CREATED,
    ParcelStatus.PICKED_UP,
    ParcelStatus.IN_TRANSIT,
    ParcelStatus.DELIVERED,
)
PARCEL_TRANSITIONS: dict[ParcelStatus, frozenset[ParcelStatus]] = {
    **{
        s: frozenset(_JOURNEY[i + 1 :])
        | frozenset({ParcelStatus.EXCEPTION})
        | (frozenset({ParcelStatus.FAILED}) if i == 0 else frozenset())
        for i, s in enumerate(_JOURNEY[:-1])
    },
    ParcelStatus.DELIVERED: frozenset(),
    ParcelStatus.EXCEPTION: frozenset(),
    ParcelStatus.FAILED: frozenset(),
}
"""Legal moves of the parcel back: forward (a reordered event may skip steps), to
``exception`` from any step before delivery (also before the booking's answer is recorded, as
a scan may be), to ``failed`` only before booking. Other tracking events are stale."""


class CostBearer(StrEnum):
    PLATFORM = "platform"
    BUYER = "buyer"


class Stage(StrEnum):
    """When a return was decided on: the lightning rules at opening and at the pickup scan,
    or the pickup failing (the carrier's exception before the scan: no refund)."""

    OPENED = "opened"
    PICKED_UP = "picked_up"
    PICKUP_FAILED = "pickup_failed"


@dataclass(frozen=True, slots=True)
class ReturnLine:
    sku: int
    quantity: int
    unit_price: int
    category: str
    """The SKU's category when the return was opened."""


@dataclass(frozen=True, slots=True)
class RuleResult:
    """One lightning rule as evaluated: what it saw and the limit it held that to."""

    rule: str
    passed: bool
    observed: int | str
    limit: int | str
    """The threshold from the configuration (``""`` where the rule has none)."""


@dataclass(frozen=True, slots=True)
class Decision:
    """One evaluation of the lightning rules for a return; ``lightning`` iff every rule passed.
    At ``pickup_failed`` its one rule, ``return_picked_up``, failed, with the carrier's
    exception as what it saw."""

    return_id: int
    stage: Stage
    lightning: bool
    rules: tuple[RuleResult, ...]
    decided_ms: int

    @property
    def failed(self) -> list[str]:
        return [r.rule for r in self.rules if not r.passed]


@dataclass(frozen=True, slots=True)
class Return:
    """A no-reason return of units of one parcel (one warehouse, one merchant). Its carrier
    Idempotency-Key is ``pyorder-return-<id>``; its parcel's reference ``return-<id>``."""

    id: int
    order_id: int
    buyer: str
    merchant: str
    """Principal key of the merchant whose lines these are (who reviews it)."""
    warehouse: int
    """Where the units were sold from and go back to."""
    status: ReturnStatus
    reason: str
    lines: tuple[ReturnLine, ...]
    amount: int
    """What refunding it costs: the lines' price (minor units)."""
    currency: str
    carrier: str
    idempotency_key: str
    carrier_shipment_id: str
    tracking_number: str
    shipping_cost: int
    """The carrier's first-weight cost of the parcel back (0 until booked)."""
    cost_borne_by: CostBearer
    parcel_status: ParcelStatus
    last_sequence: int
    """The carrier's sequence number of the last tracking event applied (0: none)."""
    refund_number: int
    """The order's refund it led to (``Refund.number``); 0 while none."""
    reviewed_by: str
    review_reason: str
    error: str
    created_ms: int
    updated_ms: int
    picked_up_ms: int
    """When the pickup scan arrived (0 before)."""
    refunded_ms: int
    arrived_ms: int
    """When the parcel was delivered to the warehouse (0 before)."""
    restocked_ms: int
    """When its units went back to available stock (0 before)."""

    @property
    def units(self) -> int:
        return sum(line.quantity for line in self.lines)


def return_reference(return_id: int) -> str:
    """The reference a return parcel is booked under, echoed in its tracking events."""
    return f"return-{return_id}"


def parse_return_reference(text: object) -> int | None:
    if not isinstance(text, str) or not text.startswith("return-"):
        return None
    digits = text.removeprefix("return-")
    # ASCII only: str.isdigit() also takes "²", which int() refuses.
    ok = 0 < len(digits) <= 19 and digits.isascii() and digits.isdigit()
    return int(digits) if ok else None
