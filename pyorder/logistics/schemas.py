"""The documents a carrier sends us, typed and bounded: signed tracking events (webhooks), and
its answers to our bookings (``pyorder.logistics.carriers``). The carrier's API is that of
``sandbox/carrier``.

Everything is decoded (``pyorder.documents.decode``) in full before anything is applied or
staged: a wrong type, a sequence out of range (``MAX_SEQUENCE``), a float where an integer
belongs, a string too long or holding U+0000, a time without an offset, nesting where a scalar
belongs or nested too deep anywhere, or a parcel kind we do not know is refused with the path of
the value. A tracking *status* we do not know is well-formed (``Status``) and acknowledged, but
not applied: carriers add scans, and refusing one would only make the carrier retry it.
"""

from datetime import datetime
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from pyorder.documents import MaybeId, NoNul, ObjectId, Text
from pyorder.kernel.clock import datetime_ms

MAX_SEQUENCE = 2**31 - 1
"""Largest tracking sequence (1, 2, ... per parcel at the carrier)."""
MAX_COST = 10**12
"""Largest cost of a parcel a carrier may report (minor units)."""

Sequence = Annotated[int, Meta(ge=0, le=MAX_SEQUENCE)]
Status = Annotated[str, Meta(pattern=r"^[a-z_]{1,64}$")]
TrackingNumber = Annotated[str, Meta(pattern=r"^[A-Za-z0-9_-]{0,64}$")]
Reference = Annotated[str, Meta(max_length=200), NoNul]
Location = Annotated[str, Meta(max_length=1000), NoNul]
UtcTime = Annotated[datetime, Meta(tz=True)]


class ScanDetails(msgspec.Struct, frozen=True):
    reason: Text | None = None
    """Why a parcel could not go on (an ``exception`` scan)."""
    window_met: bool | None = None


class TrackingEvent(msgspec.Struct, frozen=True):
    """One scan of a parcel (``data.object`` of a ``tracking.*`` event)."""

    status: Status
    shipment: MaybeId | None = None
    tracking_number: TrackingNumber | None = None
    kind: Literal["outbound", "return"] = "outbound"
    reference: Reference | None = None
    sequence: Sequence = 0
    occurred_at: UtcTime | None = None
    location: Location = ""
    details: ScanDetails | None = None

    def occurred_ms(self) -> int:
        """When it happened (ms since the epoch, UTC), or 0 if the carrier did not say."""
        at = self.occurred_at
        return 0 if at is None else datetime_ms(at)


class Shipment(msgspec.Struct, frozen=True):
    """The carrier's answer to a booking (``POST /v1/shipments`` or ``/v1/returns``)."""

    id: ObjectId
    tracking_number: TrackingNumber | None = None
    first_weight_cost: Annotated[int, Meta(ge=0, le=MAX_COST)] = 0
