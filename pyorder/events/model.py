"""The order events' records: webhook endpoints, the events owed to them, and the retry policy.

An order event is one row per (event, endpoint) in the ``order_events`` table, written in the
same transaction as the state change it tells of; its delivery moves through ``DeliveryState``
(``DELIVERY_TRANSITIONS``). Times are ms since the Unix epoch, UTC.
"""

from dataclasses import dataclass
from enum import StrEnum


class EventType(StrEnum):
    """What an event tells a merchant about one of its orders (an order holding its lines)."""

    ORDER_CREATED = "order.created"
    ORDER_PAID = "order.paid"
    ORDER_CANCELLED = "order.cancelled"
    ORDER_EXPIRED = "order.expired"
    ORDER_SHIPPED = "order.shipped"
    """Every parcel of the order is booked with the carrier (fulfilment ``shipped``)."""
    ORDER_DELIVERED = "order.delivered"
    """Every parcel of the order is delivered (fulfilment ``delivered``)."""
    ORDER_REFUNDED = "order.refunded"
    """A refund of (part of) the order's charge succeeded at the provider."""
    ORDER_REVIEW_REQUIRED = "order.review_required"
    """Risk control held the order for review (status ``in_review``, docs/risk.md)."""
    ORDER_REVIEW_APPROVED = "order.review_approved"
    """A reviewer approved the order held for review: it awaits payment."""
    ORDER_REVIEW_REJECTED = "order.review_rejected"
    """A reviewer rejected the order held for review: it is cancelled."""


ALL_TYPES = "*"
"""An endpoint subscribed to ``*`` receives every type, present and future."""


class DeliveryState(StrEnum):
    PENDING = "pending"
    """Not delivered yet: never tried, or tried and due again at ``next_attempt_ms``."""
    DELIVERED = "delivered"
    """The endpoint answered 2xx."""
    FAILED = "failed"
    """Every attempt failed (``WebhooksConfig.max_attempts``); not tried again unless resent
    through the API (``Endpoints.resend``)."""
    CANCELLED = "cancelled"
    """The endpoint was deleted before it was delivered."""


DELIVERY_TRANSITIONS: dict[DeliveryState, frozenset[DeliveryState]] = {
    DeliveryState.PENDING: frozenset(
        {
            DeliveryState.PENDING,
            DeliveryState.DELIVERED,
            DeliveryState.FAILED,
            DeliveryState.CANCELLED,
        }
    ),
    DeliveryState.DELIVERED: frozenset(),
    DeliveryState.FAILED: frozenset({DeliveryState.PENDING}),
    DeliveryState.CANCELLED: frozenset(),
}
"""Legal moves of a delivery (``pending -> pending`` is a failed attempt with a retry due,
``failed -> pending`` a resend by its merchant or an admin)."""


@dataclass(frozen=True, slots=True)
class WebhookEndpoint:
    """A URL a merchant receives its orders' events at, signed with ``secret``."""

    id: int
    merchant: str
    """Principal key (``merchant:<subject>``) of the owner."""
    url: str
    secret: str
    """``whsec_...``: the HMAC-SHA256 key of the ``Pyorder-Signature`` header."""
    event_types: tuple[str, ...]
    """``EventType`` values, or ``("*",)`` for all."""
    description: str
    enabled: bool
    """False once deleted (the row stays, with its deliveries)."""
    created_ms: int
    updated_ms: int

    def subscribes(self, event_type: str) -> bool:
        return ALL_TYPES in self.event_types or event_type in self.event_types


@dataclass(frozen=True, slots=True)
class OrderEvent:
    """An event as staged with its state change: fanned out at commit, one ``Delivery`` per
    enabled endpoint subscribed to ``type`` of every merchant holding a line of the order (or
    of ``merchant`` alone)."""

    order_id: int
    type: EventType
    payload: bytes
    """JSON of the event's ``data`` (``{"object": ..., ...}``), a snapshot taken when staged."""
    at_ms: int
    merchant: str = ""
    """Only to this merchant's endpoints (a principal key), for an event that does not concern
    every merchant of the order (a refund of some lines); empty: to all of them."""


@dataclass(frozen=True, slots=True)
class OrderEnded:
    """An order awaiting payment just ended (paid, cancelled, expired) with only its held part
    in memory: its ``OrderEvent`` is made from the order in full as the batch is handed to the
    store (``Events.resolve_ended``), and commits in the same batch as the change."""

    order_id: int
    type: EventType
    status: str
    """The ``OrderStatus`` value it moved to."""
    previous: str
    at_ms: int


@dataclass(frozen=True, slots=True)
class Delivery:
    """One event owed to one endpoint (a row of ``order_events``). Its id is the event id the
    receiver sees (``evt_<id>``) and de-duplicates by."""

    id: int
    endpoint_id: int
    merchant: str
    order_id: int
    type: str
    payload: bytes | None
    """JSON of the event's ``data``; None for ``order.created`` of an order the Rust intake
    took: rendered at delivery from the order's row (what an order was created as never
    changes)."""
    created_ms: int
    state: DeliveryState
    attempts: int
    """Attempts since it was written or last resent: a resend starts a fresh budget of
    ``max_attempts`` from 0, keeping ``last_status`` and ``last_error`` until the next one."""
    next_attempt_ms: int
    last_status: int
    """HTTP status of the last attempt; 0 before any, or when it got no answer."""
    last_error: str
    updated_ms: int
    delivered_ms: int
    """When it was delivered; 0 until then."""

    @property
    def event_id(self) -> str:
        return f"evt_{self.id}"


@dataclass(frozen=True, slots=True)
class WebhooksConfig:
    """How events are delivered: one attempt at a time per endpoint, in event order, each
    with ``timeout_ms``; after a failed attempt the event is tried again ``base_delay_ms``
    later, the wait doubling each time up to ``max_delay_ms``, and after ``max_attempts``
    failed attempts it is ``failed`` and the next event goes."""

    timeout_ms: int = 5_000
    base_delay_ms: int = 500
    max_delay_ms: int = 300_000
    max_attempts: int = 20
    page: int = 100
    """Pending events read from the store at a time, per endpoint."""

    def delay_ms(self, failed_attempts: int) -> int:
        """The wait after ``failed_attempts`` (>= 1) failed attempts, in ms."""
        exponent = min(max(failed_attempts, 1) - 1, 62)
        return int(min(self.max_delay_ms, self.base_delay_ms * 2**exponent))
