"""Which carriers there are and how to reach them: configuration, and the HTTP client of one
carrier (the API of ``sandbox/carrier``).

A carrier is configured by name, base URL, webhook secret, and optionally an API key, a
priority (lower first: new parcels go to the first) and a per-call timeout. On the command line
one carrier is one comma-separated spec::

    name=swift,url=http://127.0.0.1:9201,secret=whsec_c[,api_key=..][,priority=0][,timeout_ms=2000]

Every call has the carrier's timeout. A call that was answered returns ``(status, body)``; one
that was not raises ``CarrierUnreachable``: its outcome is unknown, and it is sent again with
the same Idempotency-Key.
"""

from dataclasses import dataclass, fields
from typing import Any

import aiohttp
import orjson

JSON = dict[str, Any]


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


def parse_carrier(spec: str) -> CarrierConfig:
    """A ``CarrierConfig`` from ``name=..,url=..,secret=..[,api_key=..][,priority=N]
    [,timeout_ms=N]``; ValueError if a field is missing or unknown."""
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
    timeout = values.get("timeout_ms")
    return CarrierConfig(
        name=values["name"],
        url=values["url"].rstrip("/"),
        secret=values["secret"],
        api_key=values.get("api_key") or None,
        priority=int(values.get("priority", "0")),
        timeout_ms=None if timeout is None else int(timeout),
    )


class CarrierUnreachable(Exception):
    """No usable answer: the call may or may not have been carried out."""


class CarrierClient:
    def __init__(
        self, session: aiohttp.ClientSession, carrier: CarrierConfig, timeout_s: float
    ) -> None:
        self.session = session
        self.carrier = carrier
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)

    async def create_shipment(self, body: JSON, idempotency_key: str) -> tuple[int, JSON]:
        """Book a parcel to a buyer (``POST /v1/shipments``)."""
        return await self._post("/v1/shipments", body, idempotency_key)

    async def create_return(self, body: JSON, idempotency_key: str) -> tuple[int, JSON]:
        """Book a parcel from a buyer back to a warehouse (``POST /v1/returns``)."""
        return await self._post("/v1/returns", body, idempotency_key)

    async def _post(self, path: str, body: JSON, idempotency_key: str) -> tuple[int, JSON]:
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
                raw = await response.read()
                status = response.status
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise CarrierUnreachable(f"{self.carrier.name}: {type(exc).__name__} {exc}") from exc
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise CarrierUnreachable(f"{self.carrier.name}: HTTP {status}, not JSON") from exc
        if not isinstance(doc, dict):
            raise CarrierUnreachable(f"{self.carrier.name}: HTTP {status}, not an object")
        return status, doc
