"""Load shedding for the placing routes: a bound on the requests in flight that adapts to the
delay they see, and a cheap ``503`` past it.

Past its capacity a server that takes every request only makes every request slower (and holds
every body in memory): 2,000 clients flooding single orders took p99 from 3.5 ms to 786 ms.
``Admission`` lets at most ``limit`` placing requests be in flight (admitted, not yet answered);
the next one is answered ``503 overloaded`` with ``Retry-After`` before its body is read,
parsed or staged. ``limit`` moves between ``min_limit`` and ``max_limit`` by AIMD on the delay
the admitted requests see, as TCP's congestion window does (and Netflix's concurrency-limits):
every ``interval_s``, if the requests answered in the interval took longer than the target on
average, the limit shrinks by a quarter; if the limit was reached while requests stayed fast,
it grows by a sixteenth. ``min_limit`` keeps enough requests in flight for group commit to
fill its batches however slow the store is.

**The target follows the store.** What "slow" means depends on the store and the machine
(SQLite on a local disk answers in ~1.5 ms, PostgreSQL with a synchronous standby in several),
so the target is ``factor`` times the **normal** latency: the mean latency of the intervals in
which nothing was refused, requests were within the target, and no more than ``min_limit``
were in flight at once, smoothed. Without that last condition the normal latency crept up
under a flood: refused clients wait out ``Retry-After``, so some intervals of a flood refuse
nobody, and their latency, just within the target, became the new normal (the target went
from 4 to 10 ms in 10 s of a 160-client flood). Until such an interval
has been seen (a node started straight into a flood) the configured ``target_s`` holds. Under
a flood no interval is normal, so the normal latency keeps its value from before the flood
and cannot drift up with the queue. With ``factor`` 2 the admitted requests' p99 stays within
about 3x of its normal value at any load (``loadtest/overload.py``, BENCHMARKS.md).

**Why the mean and not CoDel's minimum:** with closed-loop clients (each sends again once
answered) a saturated server's queue is standing, yet the fastest request of an interval (one
that arrived just as a batch began) stays fast: a 2-core machine at 160 connections saw p50
6.4 ms and p99 14 ms while the minimum stayed under 3 ms, so the minimum test never shed. By
Little's law the mean is the requests in flight over the throughput: what the limit controls.

Used from the event loop only; the hot path is two integer compares and a clock read.
"""

from __future__ import annotations

import time

import msgspec
from aiohttp import web

from pyorder.server.bodies import ErrorBody, ErrorOut

RETRY_AFTER_S = 1
"""What ``Retry-After`` tells a refused client to wait, whole seconds."""
NORMAL_MIN_REQUESTS = 16
"""Fewer requests in an interval say too little of the normal latency to count."""
NORMAL_WEIGHT = 0.1
"""The weight of each normal interval's mean in the smoothed normal latency."""


class Admission:
    """The in-flight bound of the placing routes (see the module)."""

    __slots__ = (
        "_body",
        "_grew",
        "_window_count",
        "_window_end",
        "_window_peak",
        "_window_shed",
        "_window_sum",
        "factor",
        "in_flight",
        "interval_s",
        "limit",
        "max_limit",
        "min_limit",
        "normal_s",
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
        factor: float = 2.0,
        interval_s: float = 0.1,
    ) -> None:
        if not 1 <= min_limit <= max_limit:
            raise ValueError(f"need 1 <= min_limit ({min_limit}) <= max_limit ({max_limit})")
        self.max_limit = max_limit
        self.min_limit = min_limit
        self.target_s = target_s
        """The mean latency past which the limit shrinks until a normal latency is known."""
        self.factor = factor
        self.normal_s: float | None = None
        """The admitted requests' mean latency while the bound held nobody back, smoothed
        (seconds); None until such an interval was seen."""
        self.interval_s = interval_s
        self.limit = max_limit
        """Requests admitted at most at once, now."""
        self.in_flight = 0
        self.shed = 0
        """Requests refused since start."""
        self.refused_at = float("-inf")
        """When (``time.monotonic()``) a request was last refused."""
        self._window_end = time.perf_counter() + interval_s
        self._window_sum = 0.0
        self._window_count = 0
        self._window_peak = 0
        self._window_shed = 0
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
        if self.in_flight > self._window_peak:
            self._window_peak = self.in_flight
        self.in_flight -= 1
        self._window_sum += now - started
        self._window_count += 1
        if now >= self._window_end:
            self._adapt(now)

    @property
    def target(self) -> float:
        """The mean latency (seconds) past which the limit shrinks, now."""
        return self.target_s if self.normal_s is None else self.factor * self.normal_s

    def _adapt(self, now: float) -> None:
        count = self._window_count
        mean = self._window_sum / count
        if mean > self.target:
            self.limit = max(self.min_limit, self.limit - max(1, self.limit // 4))
        elif self._grew:
            self.limit = min(self.max_limit, self.limit + max(1, self.limit // 16))
        elif (
            self.shed == self._window_shed
            and self._window_peak <= self.min_limit
            and count >= NORMAL_MIN_REQUESTS
        ):  # a normal interval: fast, nobody held back, no more in flight than min_limit
            normal = self.normal_s
            self.normal_s = mean if normal is None else normal + NORMAL_WEIGHT * (mean - normal)
        self._window_end = now + self.interval_s
        self._window_sum = 0.0
        self._window_count = 0
        self._window_peak = 0
        self._window_shed = self.shed
        self._grew = False
