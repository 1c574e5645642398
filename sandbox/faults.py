"""Fault knobs: what can go wrong between the platform and a provider, switched per instance.

The knobs are set from the command line and changed at run time through
``POST /_sandbox/faults`` (a partial update); ``GET /_sandbox/faults`` reads them. Random
outcomes (declines, lost responses, duplicated or reordered webhooks, latency) come from one
generator per knob, seeded from ``seed`` and the knob's name, so a run with the same seed and
the same sequence of calls sees the same faults, and one knob never shifts another's draws.

Two middlewares apply them to the provider's API (``/v1/...``); the admin
endpoints (``/_sandbox/...``) and ``/healthz`` are never faulted, so a test can always lift an
outage.
"""

import asyncio
import json
import random
from collections.abc import Mapping
from typing import Annotated, Literal

import msgspec
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from msgspec import Meta

from sandbox.bodies import error_response

Rate = Annotated[float, Meta(ge=0.0, le=1.0, description="probability per call or event, 0..1")]
Millis = Annotated[int, Meta(ge=0, le=600_000)]
# A list, not a tuple: msgspec 0.23 mis-validates (and can crash on) ``int | tuple[int, int]``
# when the ints carry constraints.
MillisRange = Annotated[list[Millis], Meta(min_length=2, max_length=2)]
Outage = Literal["none", "hang", "503"]
"""``hang``: requests are held until the client gives up, the outage is lifted or the server
stops, then answered 503; ``503``: every request is answered 503 at once. Nothing is recorded."""
LostResponseMode = Literal["close", "500"]
"""How a lost response is lost: the connection is closed without an answer, or a 500 is sent."""


class Faults(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """The knobs every sandbox has."""

    latency_ms: Millis | MillisRange = 0
    """Added before each API call: fixed, or ``[low, high]`` drawn uniformly (milliseconds)."""
    outage: Outage = "none"
    lost_response_rate: Rate = 0.0
    """A state-changing call (POST) that succeeded is carried out and recorded, and its stored
    answer is replayed to a retry with the same Idempotency-Key, but this answer is lost."""
    lost_response_mode: LostResponseMode = "close"
    malformed_response_rate: Rate = 0.0
    """A call that succeeded (2xx) is carried out and recorded, but its answer is malformed, as
    a buggy or hostile peer's might be: every integer at the top level of its JSON object
    becomes 2**64 (beyond 64 bits)."""
    duplicate_webhook_rate: Rate = 0.0
    """An event delivered successfully is delivered once more, same id and body."""
    reorder_webhook_rate: Rate = 0.0
    """An event is held back and delivered after the one that follows it."""
    seed: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.latency_ms, list) and self.latency_ms[0] > self.latency_ms[1]:
            raise ValueError("latency_ms as [low, high] needs low <= high")

    @property
    def latency_range_ms(self) -> tuple[int, int]:
        if isinstance(self.latency_ms, list):
            return self.latency_ms[0], self.latency_ms[1]
        return self.latency_ms, self.latency_ms


class FaultState:
    """The knobs in force and the seeded draws behind them."""

    def __init__(self, settings: Faults) -> None:
        self.settings = settings
        self.stopping = False
        """Set when the server shuts down: hung requests are let go."""
        self._rngs: dict[str, random.Random] = {}

    def update(self, patch: Mapping[str, object]) -> Faults:
        """Apply a partial update (validated like a body; ``ValidationError`` if not valid).
        Setting ``seed`` restarts every knob's sequence of draws."""
        merged = msgspec.structs.asdict(self.settings) | dict(patch)
        self.settings = msgspec.convert(merged, type(self.settings))
        if "seed" in patch:
            self._rngs.clear()
        return self.settings

    def _rng(self, knob: str) -> random.Random:
        rng = self._rngs.get(knob)
        if rng is None:
            rng = self._rngs[knob] = random.Random(f"{self.settings.seed}:{knob}")
        return rng

    def chance(self, knob: str) -> bool:
        """One draw for the rate knob ``knob`` (a field name): True with its probability."""
        rate = getattr(self.settings, knob)
        if not isinstance(rate, float):
            raise TypeError(f"{knob} is not a rate knob")
        if rate <= 0.0:
            return False
        return rate >= 1.0 or self._rng(knob).random() < rate

    def latency_s(self) -> float:
        """The latency to add to one call, in seconds."""
        low, high = self.settings.latency_range_ms
        if high == 0:
            return 0.0
        return (low if low == high else self._rng("latency_ms").uniform(low, high)) / 1000


def faulted(path: str) -> bool:
    """Whether a path is the provider's API, which faults apply to."""
    return path.startswith("/v1/")


def fault_middleware(state: FaultState) -> Middleware:
    """The outermost middleware: outages (before anything is recorded) and lost responses
    (after the answer is recorded and stored for its Idempotency-Key)."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not faulted(request.path):
            return await handler(request)
        outage = state.settings.outage
        if outage != "none":
            if outage == "hang":
                await _hang(request, state)
            return error_response(
                503, "unavailable", "the provider is unavailable (sandbox outage)"
            )
        response = await handler(request)
        if (
            200 <= response.status < 300
            and isinstance(response, web.Response)
            and state.chance("malformed_response_rate")
        ):
            return _malformed(response)
        if (
            request.method == "POST"
            and 200 <= response.status < 300
            and state.chance("lost_response_rate")
        ):
            if state.settings.lost_response_mode == "500":
                return error_response(500, "internal", "internal error (sandbox lost response)")
            if request.transport is not None:
                request.transport.abort()  # the client sees the connection drop, no answer
        return response

    return middleware


def latency_middleware(state: FaultState) -> Middleware:
    """The innermost middleware: the provider takes ``latency_ms`` to process a call (inside
    its Idempotency-Key, so a duplicate sent meanwhile finds the key in use)."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if faulted(request.path):
            delay = state.latency_s()
            if delay:
                await asyncio.sleep(delay)
        return await handler(request)

    return middleware


def _malformed(response: web.Response) -> web.Response:
    """``response`` with every integer at the top level of its JSON object set to 2**64."""
    if not isinstance(response.body, bytes):
        return response
    doc = json.loads(response.body)  # the stdlib's json: orjson refuses ints beyond 64 bits
    if isinstance(doc, dict):
        doc = {
            k: 2**64 if isinstance(v, int) and not isinstance(v, bool) else v
            for k, v in doc.items()
        }
    return web.Response(
        status=response.status, body=json.dumps(doc).encode(), content_type="application/json"
    )


async def _hang(request: web.Request, state: FaultState) -> None:
    """Hold the request while the hang lasts, the client is connected and the server runs."""
    while state.settings.outage == "hang" and not state.stopping:
        transport = request.transport
        if transport is None or transport.is_closing():
            return
        await asyncio.sleep(0.05)
