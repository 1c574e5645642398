"""Request and response bodies of the orders' routes (``pyorder.server.api.orders``), as msgspec
Structs, and the converter from an order.

The Rust order book parses order bodies and renders their answers itself on the hot path
(``core_rs/src/orders/``); it follows these types, which the OpenAPI document publishes, and
``tests/test_order_book.py`` and ``tests/test_order_body_contract.py`` hold it to them."""

from typing import Annotated, Any

import msgspec
from msgspec import Meta

from pyorder.kernel.clock import iso_ms as iso
from pyorder.orders.model import Order
from pyorder.server.bodies import NO_NUL, ErrorBody, Id, OrderId, Quantity, RegionCode, Text, whole

# --- requests (unknown fields are an error) -------------------------------------------------


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


ClientKey = Annotated[str, Meta(min_length=1, max_length=128, pattern=NO_NUL)]


class ContextIn(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """What the client says of itself, for risk control (``docs/risk.md``, "At intake"); every
    field optional. The IP and the user agent come from the connection, not from here."""

    device_id: Annotated[
        ClientKey, Meta(description="an app's install id or a browser's cookie id")
    ] = ""
    email_hash: Annotated[
        ClientKey,
        Meta(description="a hash of the buyer's email address (compared for equality only)"),
    ] = ""
    phone_hash: Annotated[
        ClientKey, Meta(description="a hash of the buyer's phone number (equality only)")
    ] = ""


class OrderIn(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    lines: Annotated[list[LineIn], Meta(min_length=1, max_length=100)]
    address: AddressIn
    context: ContextIn = msgspec.field(default_factory=ContextIn)


MAX_BATCH_ORDERS = 1000


class OrderBatchIn(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    orders: Annotated[list[OrderIn], Meta(min_length=1, max_length=MAX_BATCH_ORDERS)]


# --- responses -----------------------------------------------------------------------------


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


# --- conversions ---------------------------------------------------------------------------


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
