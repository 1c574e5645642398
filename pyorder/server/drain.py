"""Graceful drain of a node behind a load balancer (``docs/operations.md``, "Drain and rolling
restart").

The first SIGTERM or SIGINT (or, for a ``--workers`` worker, its supervisor's death) asks the
server to stop. A node that was serving then **drains** before it stops:

- ``/readyz`` answers ``503`` with ``{"status": "draining"}`` at once, so the balancer's health
  check takes the node out of rotation; ``/healthz`` stays ``200`` (it is alive);
- every other request is served as usual for ``--drain-s`` seconds, the time the balancer
  needs to notice; each answer carries ``Connection: close`` (``pyorder.server.connections``),
  so a keep-alive client's next request opens a new connection, which the balancer sends to
  another node;
- a second signal cuts the wait short.

Then aiohttp stops accepting, lets the requests in flight finish, and the platform closes
(staged commits flushed, stock leases given back, node number released): ``pyorder.server.main``.
"""

import asyncio
import contextlib
import logging
import signal
import time

log = logging.getLogger(__name__)

DEFAULT_DRAIN_S = 3.0
"""Seconds a node keeps serving after the signal: three health checks of a balancer that
checks every second (one to notice, margin for the check in flight and the balancer's own
``fall`` count of 2)."""


class DrainState:
    """Whether this node is draining: read by ``/readyz``, the connection layer (to close
    connections after each answer) and ``/metrics`` (``pyorder_draining``)."""

    __slots__ = ("draining", "since")

    def __init__(self) -> None:
        self.draining = False
        self.since = 0.0
        """When the drain began, ``time.monotonic()`` seconds; 0 before."""

    def begin(self) -> None:
        if not self.draining:
            self.draining = True
            self.since = time.monotonic()


class Shutdown:
    """The stop requests of one server process: the first sets ``requested``, any later one
    sets ``hurry`` (skip what is left of the drain)."""

    def __init__(self) -> None:
        self.requested = asyncio.Event()
        self.hurry = asyncio.Event()

    def request(self) -> None:
        if self.requested.is_set():
            self.hurry.set()
        else:
            self.requested.set()

    def on_signals(self, loop: asyncio.AbstractEventLoop) -> None:
        """SIGINT and SIGTERM request the stop, instead of the default death."""
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.request)

    async def drain(self, state: DrainState, seconds: float) -> None:
        """Mark the node draining and wait ``seconds`` (or until a second stop request)."""
        state.begin()
        if seconds <= 0 or self.hurry.is_set():
            return
        log.info(
            "draining: /readyz answers 503; serving for %g s more (signal again to stop now)",
            seconds,
        )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.hurry.wait(), seconds)
        if self.hurry.is_set():
            log.info("drain cut short by a second signal")
