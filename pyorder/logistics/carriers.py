"""Which carriers there are and how to reach them: configuration, and the HTTP client of one
carrier (the API of ``sandbox/carrier``).

A carrier is configured by name, base URL, webhook secret, and optionally an API key, a
priority (lower first: new parcels go to the first) and a per-call timeout. On the command line
one carrier is one comma-separated spec::

    name=swift,url=http://127.0.0.1:9201,secret=whsec_c[,api_key=..][,priority=0][,timeout_ms=2000]

Every call has the carrier's timeout. A call that was answered returns ``(status, shipment)``:
the booked ``Shipment`` on a 200 (decoded in full by ``pyorder.logistics.schemas``), else None
and the carrier's error. One that was not, or whose answer is not what the API promises (not
JSON, a wrong type, a value out of range: ``MalformedAnswer``), raises ``CarrierUnreachable``:
its outcome is unknown, and it is sent again with the same Idempotency-Key.
"""

import logging
from dataclasses import dataclass, fields
from typing import Annotated, Any

import aiohttp
import msgspec
import orjson
from msgspec import Meta

from pyorder.documents import ErrorAnswer, InvalidDocument, config_error, decode, read_answer
from pyorder.logistics.schemas import Shipment

JSON = dict[str, Any]
log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class CarrierConfig:
    name: str
    url: str
    secret: str
    """The webhook signing secret shared with the carrier."""
    api_key: str | None = None
    priority: int = 0
    timeout_ms: int | None = None


@dataclass(frozen=True, slots=True)
class LogisticsConfig:
    carriers: tuple[CarrierConfig, ...] = ()
    timeout_ms: int = 2000
    """How long a carrier has to answer one call (ms)."""
    auto_ship: bool = False
    """Book the parcels of an order as soon as it is paid."""
    retry_max_s: float = 2.0
    """Longest wait between two tries of a carrier call whose outcome is unknown."""
    grams_per_unit: int = 500
    """SKUs carry no weight yet: a parcel weighs this much per unit (its carrier tariff)."""

    def carrier(self, name: str) -> CarrierConfig | None:
        for c in self.carriers:
            if c.name == name:
                return c
        return None

    def default_carrier(self) -> CarrierConfig | None:
        """The carrier new parcels go to: the lowest priority, then name."""
        ranked = sorted(self.carriers, key=lambda c: (c.priority, c.name))
        return ranked[0] if ranked else None


class _CarrierDoc(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """One carrier as configured on the command line (numbers given as text)."""

    name: Annotated[str, Meta(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]
    """Part of its webhook URL, and stored with each parcel."""
    url: Annotated[str, Meta(max_length=2048, pattern=r"^https?://[^\s\x00]+$")]
    secret: Annotated[str, Meta(min_length=1, max_length=512, pattern=r"^[^\s\x00]+$")]
    api_key: Annotated[str, Meta(max_length=512, pattern=r"^[^\s\x00]*$")] | None = None
    priority: Annotated[int, Meta(ge=-1_000_000, le=1_000_000)] = 0
    timeout_ms: Annotated[int, Meta(ge=1, le=600_000)] | None = None


def parse_carrier(spec: str) -> CarrierConfig:
    """A ``CarrierConfig`` from ``name=..,url=..,secret=..[,api_key=..][,priority=N]
    [,timeout_ms=N]``; ValueError naming the field that is missing, unknown or wrong."""
    values: dict[str, str] = {}
    for item in spec.split(","):
        key, sep, value = item.strip().partition("=")
        if not sep or not key:
            raise ValueError(f"carrier spec entries are key=value: {item!r}")
        values[key.strip()] = value.strip()
    unknown = set(values) - {f.name for f in fields(CarrierConfig)}
    if unknown:
        raise ValueError(f"unknown carrier fields: {', '.join(sorted(unknown))}")
    for required in ("name", "url", "secret"):
        if not values.get(required):
            raise ValueError(f"a carrier needs {required}")
    try:
        doc = msgspec.convert(values, _CarrierDoc, strict=False)
    except msgspec.ValidationError as exc:
        raise config_error(exc, "carrier ") from None
    return CarrierConfig(
        name=doc.name,
        url=doc.url.rstrip("/"),
        secret=doc.secret,
        api_key=doc.api_key or None,
        priority=doc.priority,
        timeout_ms=doc.timeout_ms,
    )


class CarrierUnreachable(Exception):
    """No usable answer: the call may or may not have been carried out."""


class MalformedAnswer(CarrierUnreachable):
    """The carrier answered with a document its API does not allow: treated as no answer."""


Booking = tuple[int, Shipment | None, ErrorAnswer]
"""A carrier's answer to a booking: HTTP status, the shipment on a 200, else its error."""


class CarrierClient:
    def __init__(
        self, session: aiohttp.ClientSession, carrier: CarrierConfig, timeout_s: float
    ) -> None:
        self.session = session
        self.carrier = carrier
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)

    async def create_shipment(self, body: JSON, idempotency_key: str) -> Booking:
        """Book a parcel to a buyer (``POST /v1/shipments``)."""
        return await self._post("/v1/shipments", body, idempotency_key)

    async def create_return(self, body: JSON, idempotency_key: str) -> Booking:
        """Book a parcel from a buyer back to a warehouse (``POST /v1/returns``)."""
        return await self._post("/v1/returns", body, idempotency_key)

    async def _post(self, path: str, body: JSON, idempotency_key: str) -> Booking:
        headers = {"Idempotency-Key": idempotency_key, "Content-Type": "application/json"}
        if self.carrier.api_key:
            headers["Authorization"] = f"Bearer {self.carrier.api_key}"
        try:
            async with self.session.post(
                self.carrier.url + path,
                data=orjson.dumps(body),
                headers=headers,
                timeout=self.timeout,
            ) as response:
                status = response.status
                raw = await read_answer(response)
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise CarrierUnreachable(f"{self.carrier.name}: {type(exc).__name__} {exc}") from exc
        try:
            if status == 200:
                return status, decode(raw, Shipment), ErrorAnswer()
            return status, None, decode(raw, ErrorAnswer)
        except InvalidDocument as exc:
            text = f"{self.carrier.name}: HTTP {status}, a malformed answer: {exc}"
            # A peer that breaks its API is worth a person's look, unlike a network blip.
            log.warning("POST %s: %s", path, text)
            raise MalformedAnswer(text) from None
