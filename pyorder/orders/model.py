"""The order records: plain, frozen dataclasses with no framework imports.

Money is integer minor units (cents, fen) with an ISO 4217 currency code; times are integer
milliseconds since the Unix epoch, UTC. Orders carry Snowflake-style IDs (``pyorder.ids``);
warehouses and SKUs are the dense indexes the inventory core assigns.
"""

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, NamedTuple


class OrderStatus(StrEnum):
    """Where an order is. ``pending_payment`` and ``in_review`` hold a reservation; the others
    do not."""

    PENDING_PAYMENT = "pending_payment"
    IN_REVIEW = "in_review"
    """Held by risk control for a reviewer (docs/risk.md, "Review queue"): its units reserved
    until the review hold ends; approved, it awaits payment; rejected, it is cancelled."""
    PAID = "paid"
    CANCELLED = "cancelled"
    """Cancelled unpaid (units released), or paid and unshipped (units returned, refunded)."""
    EXPIRED = "expired"


HOLDING = frozenset({OrderStatus.PENDING_PAYMENT, OrderStatus.IN_REVIEW})
"""The statuses of orders whose reservation holds their units (the order book holds them)."""


@dataclass(frozen=True, slots=True)
class OrderLine:
    sku: int
    warehouse: int
    """The warehouse the inventory matched this line to."""
    quantity: int
    unit_price: int
    merchant: str


@dataclass(frozen=True, slots=True)
class Order:
    id: int
    buyer: str
    """Subject of the buyer's token."""
    status: OrderStatus
    currency: str
    total: int
    """Sum of quantity * unit_price over the lines, in minor units."""
    region: str
    address: dict[str, Any]
    reservation: int
    """The inventory reservation holding the units while the order is pending."""
    created_ms: int
    deadline_ms: int
    """Payment deadline; an unpaid order expires then."""
    updated_ms: int
    lines: tuple[OrderLine, ...]


@dataclass(frozen=True, slots=True)
class StatusChange:
    """A move of an order from one status to another (applied only from ``from_status``)."""

    order_id: int
    from_status: OrderStatus
    to_status: OrderStatus
    at_ms: int


class HeldLine(NamedTuple):
    """A line of a pending order as its reservation holds it."""

    sku: int
    warehouse: int
    quantity: int


@dataclass(frozen=True, slots=True)
class PendingOrder:
    """An order the engine holds (awaiting payment, or in review): what paying, reviewing and
    expiring need."""

    id: int
    reservation: int
    buyer_number: int
    """``pyorder.auth.buyer_number`` of the buyer's subject."""
    total: int
    """Minor units of ``currency``."""
    currency: str
    deadline_ms: int
    """Payment deadline (in review: the end of the review hold), ms since the Unix epoch
    (UTC)."""
    lines: tuple[HeldLine, ...]
    status: OrderStatus = OrderStatus.PENDING_PAYMENT
    """``pending_payment`` or ``in_review``."""


def held_status(t: tuple[Any, ...], at: int) -> OrderStatus:
    """The status in an order book's tuple at index ``at``: ``pending_payment`` or
    ``in_review``."""
    return OrderStatus(t[at])


def just_placed(t: tuple[Any, ...], address: Callable[[Any], dict[str, Any]] = dict) -> Order:
    """An order just placed from the order book's tuple (``place_order``'s answer, or a staged
    row of ``OrderRows.find`` with ``address`` decoding its JSON text): (id, buyer, currency,
    total, region, address, reservation, created_ms, deadline_ms, lines as (sku, warehouse,
    quantity, unit_price, merchant), status): awaiting payment, or in review."""
    oid, buyer, currency, total, region, addr, reservation, created, deadline, lines = t[:10]
    return Order(
        id=oid,
        buyer=buyer,
        status=held_status(t, 10),
        currency=currency,
        total=total,
        region=region,
        address=address(addr),
        reservation=reservation,
        created_ms=created,
        deadline_ms=deadline,
        updated_ms=created,
        lines=tuple(OrderLine(*line) for line in lines),
    )
