"""Load shedding for the placing routes: a bound on the requests in flight that adapts to the
delay they see, and a cheap ``503`` past it.

Past its capacity a server that takes every request only makes every request slower (and holds
every body in memory): 2,000 clients flooding single orders took p99 from 3.5 ms to 786 ms.
``Admission`` lets at most ``limit`` placing requests be in flight (admitted, not yet answered);
the next one is answered ``503 overloaded`` with ``Retry-After`` before its body is read,
parsed or staged. ``limit`` moves between ``min_limit`` and ``max_limit`` by AIMD on the delay
the admitted requests see, as TCP's congestion window does (and Netflix's concurrency-limits):
every ``interval_s``, if even the fastest request of the interval took longer than
``target_s`` (a standing queue, not a burst: CoDel's test), the limit shrinks by a quarter;
if the limit was reached while requests stayed fast, it grows by a sixteenth. So the bound
follows what the machine really sustains (a slower disk, PostgreSQL, a busy core), where a
fixed count would be either too low for a fast store or too high for a slow one.

Used from the event loop only; the hot path is two integer compares and a clock read.
"""

from __future__ import annotations

import time

import msgspec
from aiohttp import web

from pyorder.server.bodies import ErrorBody, ErrorOut

RETRY_AFTER_S = 1
"""What ``Retry-After`` tells a refused client to wait, whole seconds."""


class Admission:
    """The in-flight bound of the placing routes (see the module)."""

    __slots__ = (
        "_body",
        "_grew",
        "_window_end",
        "_window_min",
        "in_flight",
        "interval_s",
        "limit",
        "max_limit",
        "min_limit",
        "refused_at",
        "shed",
        "target_s",
    )

    def __init__(
        self,
        *,
        max_limit: int = 1024,
        min_limit: int = 32,
        target_s: float = 0.01,
        interval_s: float = 0.1,
    ) -> None:
        if not 1 <= min_limit <= max_limit:
            raise ValueError(f"need 1 <= min_limit ({min_limit}) <= max_limit ({max_limit})")
        self.max_limit = max_limit
        self.min_limit = min_limit
        self.target_s = target_s
        self.interval_s = interval_s
        self.limit = max_limit
        """Requests admitted at most at once, now."""
        self.in_flight = 0
        self.shed = 0
        """Requests refused since start."""
        self.refused_at = float("-inf")
        """When (``time.monotonic()``) a request was last refused."""
        self._window_end = time.perf_counter() + interval_s
        self._window_min = float("inf")
        self._grew = False
        self._body = msgspec.json.encode(
            ErrorOut(
                ErrorBody(
                    "overloaded",
                    "the server is at capacity; retry after the time in Retry-After",
                    {"retry_after_s": RETRY_AFTER_S},
                )
            )
        )

    def refuse(self) -> web.Response:
        """Count a refused request; its ``503`` answer."""
        self.shed += 1
        self.refused_at = time.monotonic()
        return web.Response(
            status=503,
            body=self._body,
            content_type="application/json",
            headers={"Retry-After": str(RETRY_AFTER_S)},
        )

    def done(self, started: float) -> None:
        """An admitted request (admitted at ``started``, ``time.perf_counter()``) is answered."""
        now = time.perf_counter()
        if self.in_flight >= self.limit:
            self._grew = True  # the bound was what held requests back in this interval
        self.in_flight -= 1
        took = now - started
        if took < self._window_min:
            self._window_min = took
        if now >= self._window_end:
            self._adapt(now)

    def _adapt(self, now: float) -> None:
        if self._window_min > self.target_s:
            self.limit = max(self.min_limit, self.limit - max(1, self.limit // 4))
        elif self._grew:
            self.limit = min(self.max_limit, self.limit + max(1, self.limit // 16))
        self._window_end = now + self.interval_s
        self._window_min = float("inf")
        self._grew = False
