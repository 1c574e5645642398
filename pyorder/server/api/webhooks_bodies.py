"""Request and response bodies of the merchants' webhook endpoints' routes
(``pyorder.server.api.webhooks``): an endpoint, its secret, its deliveries, as msgspec Structs, and
the converters from the records."""

from typing import Annotated

import msgspec
from msgspec import Meta

from pyorder.events.endpoints import MAX_URL_LENGTH
from pyorder.events.model import ALL_TYPES, Delivery, DeliveryState, EventType, WebhookEndpoint
from pyorder.kernel.clock import iso_ms as iso
from pyorder.server.bodies import NO_NUL, OrderId

EventTypeName = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=64,
        pattern=NO_NUL,
        description="an order event type ("
        + ", ".join(t.value for t in EventType)
        + f"), or {ALL_TYPES} for every type, present and future",
    ),
]


# --- requests (unknown fields are an error) -------------------------------------------------


class WebhookEndpointIn(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """A URL of the calling merchant's to receive its orders' events at."""

    url: Annotated[
        str,
        Meta(
            min_length=1,
            max_length=MAX_URL_LENGTH,
            pattern=NO_NUL,
            description="absolute http:// or https:// URL the events are POSTed to",
        ),
    ]
    events: Annotated[list[EventTypeName], Meta(min_length=1, max_length=32)] | None = None
    """The types subscribed to; default (absent or null): every type."""
    description: Annotated[str, Meta(max_length=500, pattern=NO_NUL)] = ""


# --- responses -----------------------------------------------------------------------------


class WebhookEndpointOut(msgspec.Struct):
    id: int
    merchant: str
    url: str
    events: list[str]
    description: str
    enabled: bool
    """False once deleted (shown only in the answer to the DELETE)."""
    created_at: str
    updated_at: str


class WebhookEndpointCreatedOut(WebhookEndpointOut):
    """An endpoint just registered, or just given a new secret."""

    secret: str
    """``whsec_...``: the key of the ``Pyorder-Signature`` HMAC. Shown in this answer only."""


class WebhookEndpointList(msgspec.Struct):
    endpoints: list[WebhookEndpointOut]


class DeliveryOut(msgspec.Struct):
    id: str
    """The event id (``evt_<n>``), also sent as the ``Pyorder-Event-Id`` header."""
    type: str
    order_id: OrderId
    state: DeliveryState
    attempts: int
    last_status: int | None
    """HTTP status of the last attempt; null before any, or when it got no answer. A resent
    event keeps it (and ``last_error``) until its next attempt."""
    last_error: str
    next_attempt_at: str | None
    """When a pending event is tried next; null once it is no longer pending."""
    created_at: str
    updated_at: str
    delivered_at: str | None


class DeliveryList(msgspec.Struct):
    deliveries: list[DeliveryOut]
    next_cursor: str | None
    """Pass as ``before`` for the next (older) page; null on the last page."""


# --- conversions ---------------------------------------------------------------------------


def endpoint_out(e: WebhookEndpoint) -> WebhookEndpointOut:
    return WebhookEndpointOut(
        id=e.id,
        merchant=e.merchant,
        url=e.url,
        events=list(e.event_types),
        description=e.description,
        enabled=e.enabled,
        created_at=iso(e.created_ms),
        updated_at=iso(e.updated_ms),
    )


def endpoint_created_out(e: WebhookEndpoint) -> WebhookEndpointCreatedOut:
    return WebhookEndpointCreatedOut(**msgspec.structs.asdict(endpoint_out(e)), secret=e.secret)


def delivery_out(d: Delivery) -> DeliveryOut:
    pending = d.state is DeliveryState.PENDING
    return DeliveryOut(
        id=d.event_id,
        type=d.type,
        order_id=str(d.order_id),
        state=d.state,
        attempts=d.attempts,
        last_status=d.last_status or None,
        last_error=d.last_error,
        next_attempt_at=iso(d.next_attempt_ms) if pending else None,
        created_at=iso(d.created_ms),
        updated_at=iso(d.updated_ms),
        delivered_at=iso(d.delivered_ms) if d.delivered_ms else None,
    )
