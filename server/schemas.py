"""Request and response bodies of the HTTP API, as msgspec Structs.

msgspec decodes JSON straight into these types in one pass, refusing unknown fields, wrong
types and out-of-range values (so handlers never see bad input), and the same types generate
the OpenAPI document's schemas, so the document cannot drift from the code.
"""

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from pyorder.catalog.model import SkuView, Warehouse
from pyorder.events.endpoints import MAX_URL_LENGTH
from pyorder.events.model import ALL_TYPES, Delivery, DeliveryState, EventType, WebhookEndpoint
from pyorder.inventory import StockLevel
from pyorder.kernel.clock import iso_ms as iso
from pyorder.logistics.model import DeliveryWindow, Fulfilment, Shipment, TrackingEvent
from pyorder.orders.model import Order
from pyorder.payments.model import Attempt, Payment, Refund
from pyorder.returns.model import CostBearer, Decision, Return, ReturnStatus, Stage


def whole(regex: str) -> str:
    """A pattern that ``regex`` must match the whole string for, read the same by Python's
    ``re`` (which msgspec validates with) and by JSON Schema's ECMA-262 dialect (what the
    OpenAPI document promises): Python's ``$`` also matches before a final newline, so
    ``^[A-Z]{3}$`` alone would let ``"USD\\n"`` through msgspec; ``(?!\\n)`` refuses it."""
    return f"^{regex}$(?!\\n)"


NO_NUL = r"^[^\x00]*$"
"""Pattern of free text: no U+0000 (text columns, PostgreSQL's above all, cannot store it).
The newline that Python's ``$`` lets through is text like any other here."""

Id = Annotated[int, Meta(ge=0, le=2**31 - 1)]
Units = Annotated[int, Meta(ge=0, le=2**50)]
Quantity = Annotated[int, Meta(ge=1, le=10_000)]
Money = Annotated[int, Meta(ge=0, le=10**12, description="minor units (cents, fen)")]
Currency = Annotated[str, Meta(pattern=whole("[A-Z]{3}"), description="ISO 4217 code")]
Text = Annotated[str, Meta(min_length=1, max_length=200, pattern=NO_NUL)]
RegionCode = Annotated[str, Meta(min_length=1, max_length=64, pattern=whole("[A-Za-z0-9_.:-]+"))]
OrderId = Annotated[
    str, Meta(pattern=whole("[0-9]{1,19}"), description="64-bit order ID, as a string")
]
Category = Annotated[
    str,
    Meta(
        pattern=whole("([a-z0-9][a-z0-9_-]{0,39})?"),
        description="a SKU's category: lower-case letters, digits, _ and -, at most 40; ''"
        " for none. Return windows and the lightning-refund rules go by it.",
    ),
]


# --- requests (unknown fields are an error) -------------------------------------------------


class WarehouseIn(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    name: Text
    regions: Annotated[list[RegionCode], Meta(max_length=1000)] = []


class RegionIn(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    warehouses: Annotated[list[Id], Meta(max_length=1000)]


class StockEntry(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    warehouse: Id
    units: Units


class SkuIn(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    title: Text
    price: Money
    currency: Currency
    stock: Annotated[list[StockEntry], Meta(max_length=1000)] = []
    limit_per_buyer: Units = 0
    category: Category = ""


class StockAdjustIn(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    warehouse: Id
    delta: Annotated[int, Meta(ge=-(2**50), le=2**50, description="units to add (< 0: remove)")]


class LineIn(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    sku: Id
    quantity: Quantity


class AddressIn(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    name: Text
    line1: Text
    city: Text
    region: RegionCode
    postal_code: Annotated[str, Meta(max_length=20, pattern=NO_NUL)] = ""
    country: Annotated[str, Meta(pattern=whole("[A-Z]{2}"))] = "CN"
    line2: Annotated[str, Meta(max_length=200, pattern=NO_NUL)] = ""
    phone: Annotated[str, Meta(max_length=40, pattern=NO_NUL)] = ""


class OrderIn(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    lines: Annotated[list[LineIn], Meta(min_length=1, max_length=100)]
    address: AddressIn


MAX_BATCH_ORDERS = 1000


class OrderBatchIn(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    orders: Annotated[list[OrderIn], Meta(min_length=1, max_length=MAX_BATCH_ORDERS)]


class RefundLineIn(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    sku: Id
    quantity: Quantity


class RefundIn(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """A refund by ``amount`` (minor units), by ``lines`` (their price), or both (then the
    amount, at most what the lines cost)."""

    reason: Text
    amount: Annotated[int, Meta(ge=1, le=10**12, description="minor units (cents, fen)")] | None = (
        None
    )
    lines: Annotated[list[RefundLineIn], Meta(max_length=100)] = []


class PaymentIn(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    method: Literal["card", "wallet", "bank_transfer"]
    payment_method: (
        Annotated[
            str,
            Meta(
                min_length=1,
                max_length=100,
                pattern=whole("[A-Za-z0-9_]+"),
                description="the provider's payment method id (default: one per method)",
            ),
        ]
        | None
    ) = None


UtcTime = Annotated[
    datetime, Meta(tz=True, description="ISO 8601 with an offset (Z for UTC); kept as UTC")
]
WindowId = Annotated[int, Meta(ge=1, le=2**53)]


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


class ErrorBody(msgspec.Struct):
    code: str
    message: str
    details: dict[str, Any] = {}


class ErrorOut(msgspec.Struct):
    error: ErrorBody


class WarehouseOut(msgspec.Struct):
    id: int
    name: str
    owner: str


class WarehouseList(msgspec.Struct):
    warehouses: list[WarehouseOut]


class RegionOut(msgspec.Struct):
    region: str
    warehouses: list[int]


class StockOut(msgspec.Struct):
    on_hand: int
    available: int
    reserved: int
    sold: int


class WarehouseStockOut(StockOut):
    warehouse: int


class SkuOut(msgspec.Struct):
    id: int
    merchant: str
    title: str
    price: int
    currency: str
    limit_per_buyer: int
    category: str
    stock: StockOut
    warehouses: list[WarehouseStockOut]


class SkuList(msgspec.Struct):
    skus: list[SkuOut]
    next_cursor: str | None


class LineOut(msgspec.Struct):
    sku: int
    quantity: int
    unit_price: int
    line_total: int
    warehouse: int


class OrderOut(msgspec.Struct):
    """An order. Its buyer and admins see all of it. A merchant sees its part (the marketplace
    model, docs/marketplace.md): only its own lines; ``total`` the sum of those lines (not the
    order's); ``buyer`` a pseudonym (``buyer_<hex>``, stable for this merchant, different for
    every other); ``address`` only ``name`` masked (first character and ``**``), ``city``,
    ``region`` and ``country`` (the platform books the carrier with the full address)."""

    id: OrderId
    status: str
    buyer: str
    currency: str
    total: Annotated[
        int, Meta(description="sum of the lines shown (line_total), minor units of currency")
    ]
    lines: list[LineOut]
    address: dict[str, Any]
    created_at: str
    payment_deadline: str
    updated_at: str


class OrderList(msgspec.Struct):
    orders: list[OrderOut]
    next_cursor: str | None


class BatchItemOut(msgspec.Struct):
    index: int
    status: int
    order: OrderOut | None = None
    error: ErrorBody | None = None


class OrderBatchOut(msgspec.Struct):
    created: int
    failed: int
    results: list[BatchItemOut]


class AttemptOut(msgspec.Struct):
    number: int
    provider: str
    method: str
    status: str
    amount: int
    currency: str
    amount_received: int
    provider_payment_id: str
    refund_status: str
    amount_refunded: int
    error: str
    created_at: str
    updated_at: str
    next_action: (
        Annotated[
            dict[str, Any],
            Meta(
                description="what the buyer must do to go on (3-D Secure, a wallet's"
                " confirmation), relayed as the provider gave it (at the sandbox:"
                ' {"type": "redirect_to_url", "redirect_to_url": {"url", "return_url"}});'
                " null unless the attempt is requires_action"
            ),
        ]
        | None
    ) = None


class PaymentOut(msgspec.Struct):
    """An order's payment. A merchant sees its part: the amounts are its share (split over the
    merchants of the order by line value), ``refunded`` and ``status`` count only the refunds
    touching its lines, and ``attempts`` is empty (they are the buyer's and the platform's)."""

    order_id: OrderId
    status: str
    method: str
    currency: str
    amount: int
    authorized: int
    charged: int
    refunded: int
    flag: str
    attempts: list[AttemptOut]


class RefundLineOut(msgspec.Struct):
    sku: int
    quantity: int


class RefundOut(msgspec.Struct):
    """A refund of (part of) an order's charge. A merchant sees only the refunds touching its
    lines, each with ``amount`` its share and ``lines`` its own."""

    order_id: OrderId
    number: int
    status: str
    amount: int
    currency: str
    reason: str
    lines: list[RefundLineOut]
    provider: str
    provider_refund_id: str
    requested_by: str
    error: str
    created_at: str
    updated_at: str
    settled_at: str | None


class RefundList(msgspec.Struct):
    refunds: list[RefundOut]


class WebhookAck(msgspec.Struct):
    received: bool
    duplicate: bool
    event: str


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


class HealthOut(msgspec.Struct):
    status: str


# --- conversions ---------------------------------------------------------------------------


def stock_out(level: StockLevel) -> StockOut:
    return StockOut(level.on_hand, level.available, level.reserved, level.sold)


def sku_out(view: SkuView) -> SkuOut:
    s = view.sku
    return SkuOut(
        id=s.id,
        merchant=s.merchant,
        title=s.title,
        price=s.price,
        currency=s.currency,
        limit_per_buyer=s.limit_per_buyer,
        category=s.category,
        stock=stock_out(view.total),
        warehouses=[
            WarehouseStockOut(lv.on_hand, lv.available, lv.reserved, lv.sold, warehouse=w)
            for w, lv in sorted(view.by_warehouse.items())
        ],
    )


def warehouse_out(w: Warehouse) -> WarehouseOut:
    return WarehouseOut(w.id, w.name, w.owner)


def order_out(o: Order) -> OrderOut:
    return OrderOut(
        id=str(o.id),
        status=o.status.value,
        buyer=o.buyer,
        currency=o.currency,
        total=o.total,
        lines=[
            LineOut(li.sku, li.quantity, li.unit_price, li.quantity * li.unit_price, li.warehouse)
            for li in o.lines
        ],
        address=o.address,
        created_at=iso(o.created_ms),
        payment_deadline=iso(o.deadline_ms),
        updated_at=iso(o.updated_ms),
    )


def refund_out(r: Refund) -> RefundOut:
    return RefundOut(
        order_id=str(r.order_id),
        number=r.number,
        status=r.status.value,
        amount=r.amount,
        currency=r.currency,
        reason=r.reason,
        lines=[RefundLineOut(sku, q) for sku, q in r.lines],
        provider=r.provider,
        provider_refund_id=r.provider_refund_id,
        requested_by=r.requested_by,
        error=r.error,
        created_at=iso(r.created_ms),
        updated_at=iso(r.updated_ms),
        settled_at=iso(r.settled_ms) if r.settled_ms else None,
    )


def payment_out(
    order_id: int,
    pay: Payment | None,
    attempts: list[Attempt],
    next_actions: Mapping[int, dict[str, Any]] | None = None,
) -> PaymentOut:
    """The payment of an order; ``next_actions``: the provider's ``next_action`` of the
    attempts awaiting the buyer, by attempt number."""
    actions = next_actions or {}
    if pay is None:
        return PaymentOut(str(order_id), "none", "", "", 0, 0, 0, 0, "", [])
    return PaymentOut(
        order_id=str(order_id),
        status=pay.status.value,
        method=pay.method,
        currency=pay.currency,
        amount=pay.amount,
        authorized=pay.authorized,
        charged=pay.charged,
        refunded=pay.refunded,
        flag=pay.flag,
        attempts=[
            AttemptOut(
                number=a.number,
                provider=a.provider,
                method=a.method,
                status=a.status.value,
                amount=a.amount,
                currency=a.currency,
                amount_received=a.amount_received,
                provider_payment_id=a.provider_payment_id,
                refund_status=a.refund_status.value,
                amount_refunded=a.amount_refunded,
                error=a.error,
                created_at=iso(a.created_ms),
                updated_at=iso(a.updated_ms),
                next_action=actions.get(a.number),
            )
            for a in attempts
        ],
    )


def window_out(w: DeliveryWindow) -> DeliveryWindowOut:
    return DeliveryWindowOut(
        w.id, w.region, iso(w.start_ms), iso(w.end_ms), w.capacity, w.booked, w.remaining
    )


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
        by_parcel.setdefault(e.parcel, []).append(
            TrackingEventOut(e.sequence, e.status, iso(e.occurred_ms), e.location, e.applied)
        )
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


# --- returns ----------------------------------------------------------------------------------


class ReturnLineIn(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    sku: Id
    quantity: Quantity


class ReturnIn(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """A no-reason return of units of one delivered parcel (the buyer of the order)."""

    lines: Annotated[list[ReturnLineIn], Meta(min_length=1, max_length=100)]
    reason: Annotated[str, Meta(max_length=500, pattern=NO_NUL)] = ""


class ReturnRejectIn(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    reason: Text


class ReturnLineOut(msgspec.Struct):
    sku: int
    quantity: int
    unit_price: int
    category: str


class RuleOut(msgspec.Struct):
    rule: str
    passed: bool
    observed: int | str
    """What the rule saw (an amount, a count, categories, a status)."""
    limit: int | str
    """The configured threshold ('' where the rule has none or it is switched off)."""


class DecisionOut(msgspec.Struct):
    stage: Stage
    lightning: bool
    """Every rule passed: at ``picked_up``, the refund was issued with no person involved."""
    failed: list[str]
    rules: list[RuleOut]
    decided_at: str


class ReturnOut(msgspec.Struct):
    """A return of one parcel's units of one merchant. That merchant sees ``buyer`` as the
    pseudonym its order views show."""

    id: int
    order_id: OrderId
    status: ReturnStatus
    buyer: str
    merchant: str
    warehouse: int
    reason: str
    lines: list[ReturnLineOut]
    amount: int
    """The refund the return is worth (its lines' price), minor units of ``currency``."""
    currency: str
    carrier: str
    tracking_number: str | None
    parcel_status: str
    shipping_cost: int
    """The carrier's first-weight cost of the parcel back, minor units."""
    cost_borne_by: CostBearer
    decisions: list[DecisionOut]
    refund: RefundOut | None
    reviewed_by: str
    review_reason: str
    error: str
    created_at: str
    updated_at: str
    picked_up_at: str | None
    refunded_at: str | None
    arrived_at: str | None
    """When the parcel back was delivered to the warehouse."""
    restocked_at: str | None
    events: list[TrackingEventOut]


class ReturnList(msgspec.Struct):
    returns: list[ReturnOut]
    next_cursor: str | None


def return_out(
    r: Return,
    decisions: list[Decision],
    refund: Refund | None,
    events: Sequence[TrackingEvent] = (),
) -> ReturnOut:
    def at(ms: int) -> str | None:
        return iso(ms) if ms else None

    return ReturnOut(
        id=r.id,
        order_id=str(r.order_id),
        status=r.status,
        buyer=r.buyer,
        merchant=r.merchant,
        warehouse=r.warehouse,
        reason=r.reason,
        lines=[ReturnLineOut(li.sku, li.quantity, li.unit_price, li.category) for li in r.lines],
        amount=r.amount,
        currency=r.currency,
        carrier=r.carrier,
        tracking_number=r.tracking_number or None,
        parcel_status=r.parcel_status.value,
        shipping_cost=r.shipping_cost,
        cost_borne_by=r.cost_borne_by,
        decisions=[
            DecisionOut(
                stage=d.stage,
                lightning=d.lightning,
                failed=d.failed,
                rules=[RuleOut(x.rule, x.passed, x.observed, x.limit) for x in d.rules],
                decided_at=iso(d.decided_ms),
            )
            for d in decisions
        ],
        refund=refund_out(refund) if refund is not None else None,
        reviewed_by=r.reviewed_by,
        review_reason=r.review_reason,
        error=r.error,
        created_at=iso(r.created_ms),
        updated_at=iso(r.updated_ms),
        picked_up_at=at(r.picked_up_ms),
        refunded_at=at(r.refunded_ms),
        arrived_at=at(r.arrived_ms),
        restocked_at=at(r.restocked_ms),
        events=[
            TrackingEventOut(e.sequence, e.status, iso(e.occurred_ms), e.location, e.applied)
            for e in sorted(events, key=lambda e: (e.sequence, e.received_ms))
        ],
    )


# --- webhook endpoints ------------------------------------------------------------------------

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
