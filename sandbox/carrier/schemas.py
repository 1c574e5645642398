"""Request bodies of the carrier API (JSON; unknown fields are refused)."""

from datetime import datetime
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

Text = Annotated[str, Meta(min_length=1, max_length=200)]
Grams = Annotated[int, Meta(ge=1, le=1_000_000, description="parcel weight, grams")]
UtcTime = Annotated[datetime, Meta(tz=True, description="ISO 8601 with an offset; kept as UTC")]
Metadata = Annotated[
    dict[
        Annotated[str, Meta(min_length=1, max_length=40)],
        Annotated[str, Meta(max_length=500)],
    ],
    Meta(max_length=50),
]
Scenario = Literal["deliver", "exception"]
"""Force the journey's end; default: delivered, unless the ``exception_rate`` knob says not."""


class AddressIn(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    name: Text
    line1: Text
    city: Text
    line2: Text | None = None
    region: Text | None = None
    postal_code: Annotated[str, Meta(max_length=20)] | None = None
    country: Annotated[str, Meta(pattern="^[A-Z]{2}$")] = "CN"
    phone: Annotated[str, Meta(max_length=40)] | None = None


class WindowIn(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    start: UtcTime
    end: UtcTime


class ShipmentIn(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """A parcel from a warehouse (``from``, optional) to the buyer (``to``)."""

    to: AddressIn
    weight_g: Grams
    from_: AddressIn | None = msgspec.field(default=None, name="from")
    delivery_window: WindowIn | None = None
    reference: Text | None = None
    """The platform's reference (an order id)."""
    metadata: Metadata = {}
    scenario: Scenario | None = None


class ReturnIn(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """A parcel picked up from the buyer (``from``) back to a warehouse (``to``)."""

    from_: AddressIn = msgspec.field(name="from")
    to: AddressIn
    weight_g: Grams
    reference: Text | None = None
    original_tracking_number: Text | None = None
    metadata: Metadata = {}
    scenario: Scenario | None = None


class QuoteIn(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    weight_g: Grams
    from_: AddressIn | None = msgspec.field(default=None, name="from")
    to: AddressIn | None = None
