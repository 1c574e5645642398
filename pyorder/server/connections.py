"""The HTTP/1.1 connection layer: aiohttp's ``RequestHandler`` with deadlines, a connection cap
and JSON answers to malformed requests.

aiohttp alone waits for a request's headers and body as long as the client likes (its
keep-alive timer is the only bound), accepts connections until the process runs out of file
descriptors, and answers a request it cannot parse in ``text/plain``, logging a traceback at
ERROR. Here:

- **Header deadline**: once the first byte of a request arrives, its headers must be complete
  within ``header_timeout_s``; else the connection gets ``408`` (JSON) and is closed.
- **Body deadline**: once the headers are in, the body must be complete within
  ``body_timeout_s``; else reading it fails with ``BodyTimeoutError`` (the handler answers
  ``408``) and the connection is closed after the answer.
- **Idle keep-alive** connections are closed after ``keepalive_timeout_s`` (aiohttp's timer).
- **Connection cap**: past ``max_connections`` open connections, the ones waiting longest for a
  request (idle keep-alive or slow headers) are closed to make room; only when every connection
  is busy in a handler is the new one refused (``503`` JSON, then closed). A flood of slow or
  idle connections so cannot starve a client that sends its request at once.
- **Load shedding at the door**: while the placing routes are past their admission bound
  (``pyorder.server.admission``), a placing request that arrives whole on an otherwise idle
  connection is answered ``503 overloaded`` from here, straight after the parser, without a
  request object, a task or a handler: a refusal must cost far less than an order, or refusing
  under a flood takes the event loop from the orders admitted (others go through the handler,
  which refuses them the same way). The refused connection is then not read for
  ``Retry-After`` to twice that, at random (its next request waits in the kernel's buffer,
  costing nothing; the pause doubles, to 4x, while the client is refused in a row; the
  randomness keeps clients refused together from all coming back in one loop iteration), and
  that
  next request, having waited, is refused too if the server refused anything meanwhile: a
  client that honours ``Retry-After`` sees no difference, one that ignores it cannot keep the
  event loop busy with refusals, and no admitted request has waited in such a pause.
- **Draining** (``pyorder.server.drain``): while the node drains before a stop, every answer
  carries ``Connection: close`` and its connection closes after it, so that a keep-alive
  client's next request opens a new connection, which the load balancer sends to another
  node; the door's refusals are left to the handler meanwhile (its answers close too).
- **Malformed requests** (what the parser refuses) get the JSON error shape with the right
  status (400, 414, 431), are counted by kind in ``ConnectionStats`` and logged at DEBUG: they
  are the client's mistake, not the server's.

Relies on aiohttp's ``RequestHandler`` internals (``_messages``, ``_waiter``,
``_request_in_progress``, ``_process_keepalive``, ``finish_response``, ``handle_error``,
``log_exception``): the aiohttp versions it was checked against are pinned in
``pyproject.toml``.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import random
import resource
import time
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, cast

import msgspec
from aiohttp import http_exceptions, web
from aiohttp.http_parser import HttpRequestParser
from aiohttp.streams import StreamReader
from aiohttp.web_protocol import RequestHandler, RequestPayloadError, _ErrInfo
from aiohttp.web_request import BaseRequest
from aiohttp.web_response import StreamResponse
from aiohttp.web_server import Server

from pyorder.server.admission import RETRY_AFTER_S, Admission
from pyorder.server.bodies import ErrorBody, ErrorOut
from pyorder.server.drain import DrainState
from pyorder.server.errors import BodyTimeoutError, error_response
from pyorder.server.metrics import ConnectionStats, HttpStats

log = logging.getLogger(__name__)

SHED_PATHS = frozenset({"/v1/orders", "/v1/orders/batch"})
"""The placing routes, refused at the door when overloaded."""

REFUSALS_FORGOTTEN_S = 10.0
"""A connection's refusals count as in a row unless this long apart."""

STALE_WINDOW_S = 0.1
"""A request read this soon after a refusal's pause ends was sent during the pause."""

FILES_RESERVED = 128
"""File descriptors kept for everything but client connections (the store's files and
connections, calls to providers and carriers, webhooks), at most a quarter of the limit."""


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    """Bounds on client connections; times in seconds."""

    header_timeout_s: float = 10.0
    """From a request's first byte to the end of its headers."""
    body_timeout_s: float = 30.0
    """From the end of a request's headers to the end of its body."""
    keepalive_timeout_s: float = 15.0
    """How long an idle keep-alive connection is kept open."""
    max_connections: int = 4096
    """Open client connections; lowered to fit the open-files limit (``fitted``)."""

    def fitted(self) -> ConnectionLimits:
        """These limits with ``max_connections`` at most what the open-files limit allows."""
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft == resource.RLIM_INFINITY:
            return self
        room = soft - min(FILES_RESERVED, soft // 4)
        if room >= self.max_connections:
            return self
        return ConnectionLimits(
            self.header_timeout_s, self.body_timeout_s, self.keepalive_timeout_s, max(1, room)
        )


def raise_open_files_limit() -> int:
    """Raise the soft open-files limit to the hard one (as Go's runtime does); the new soft
    limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):  # pragma: no cover - the hard limit is ours to use
            pass
    return soft


def canned(
    status: int, reason: str, code: str, message: str, extra: str = "", *, keep_alive: bool = False
) -> bytes:
    """A whole HTTP/1.1 response with a JSON error body (and ``Connection: close`` unless
    ``keep_alive``), for the places that answer below aiohttp's request handling."""
    details = {"retry_after_s": RETRY_AFTER_S} if code == "overloaded" else {}
    body = msgspec.json.encode(ErrorOut(ErrorBody(code, message, details)))
    close = "" if keep_alive else "Connection: close\r\n"
    head = (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n{close}{extra}\r\n"
    )
    return head.encode() + body


class GuardedServer(Server):
    """aiohttp's low-level ``Server`` making ``GuardedRequestHandler`` connections and keeping
    their number at most ``limits.max_connections``."""

    def __init__(
        self,
        handler: Any,
        *,
        limits: ConnectionLimits,
        stats: ConnectionStats,
        admission: Admission | None = None,
        http: HttpStats | None = None,
        drain: DrainState | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(handler, **kwargs)
        self.limits = limits
        self.stats = stats
        self.admission = admission
        self.http = http
        self.drain = drain or DrainState()
        self.overloaded = canned(
            503,
            "Service Unavailable",
            "overloaded",
            "the server is at capacity; retry after the time in Retry-After",
            f"Retry-After: {RETRY_AFTER_S}\r\n",
            keep_alive=True,
        )
        self._refusal = canned(
            503,
            "Service Unavailable",
            "too_many_connections",
            "every connection is busy; retry shortly",
            "Retry-After: 1\r\n",
        )
        stats.open_connections = lambda: len(self._connections)

    def __call__(self) -> RequestHandler:
        return GuardedRequestHandler(self, loop=self._loop, **self._kwargs)

    def connection_made(self, handler: RequestHandler, transport: asyncio.Transport) -> None:
        super().connection_made(handler, transport)
        if len(self._connections) > self.limits.max_connections:
            self._make_room(handler, transport)

    def _make_room(self, new: RequestHandler, transport: asyncio.Transport) -> None:
        """Close the connections waiting longest for a request; refuse ``new`` if all are
        busy. Evicts a small batch at once, so a flood of new connections scans the table
        once per batch rather than once per connection."""
        waiting: list[GuardedRequestHandler] = []
        live = 0
        for conn in self._connections:
            if conn.transport is None:
                continue  # closing: leaves the table when its task ends
            live += 1
            if conn is not new and isinstance(conn, GuardedRequestHandler) and conn.waiting:
                waiting.append(conn)
        excess = live - self.limits.max_connections
        if excess <= 0:
            return
        if not waiting:
            self.stats.closed["refused"] += 1
            transport.write(self._refusal)
            new.force_close()
            return
        batch = max(excess, self.limits.max_connections // 64)
        for conn in heapq.nsmallest(batch, waiting, key=GuardedRequestHandler.idle_since):
            self.stats.closed["evicted"] += 1
            conn.force_close()


class GuardedRequestHandler(RequestHandler):
    """One client connection (see the module for what it adds to aiohttp's)."""

    __slots__ = (
        "_deadline",
        "_guard",
        "_limits",
        "_paused_at",
        "_refusals",
        "_shed_all",
        "_stale",
        "_stats",
        "_timed_body",
    )

    def __init__(self, manager: GuardedServer, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._guard = manager
        self._limits = manager.limits
        self._stats = manager.stats
        self._deadline: asyncio.TimerHandle | None = None
        self._timed_body: StreamReader | None = None
        self._shed_all = False
        """The last bytes parsed were whole requests, all refused at the door."""
        self._paused_at = 0.0
        """When (``time.monotonic()``) reading was last paused after a refusal."""
        self._refusals = 0
        """Requests refused at the door in a row: each doubles the pause after it (to 4x)."""
        self._stale = 0.0
        """When (loop time) reading resumed after a refusal's pause, until the next request:
        a request read at once then has waited in the kernel's buffer during the pause."""
        if manager.admission is not None:
            self._parser = cast("HttpRequestParser", _SheddingParser(self._parser, self))

    @property
    def waiting(self) -> bool:
        """Whether the connection waits for a request (idle, or its headers still coming)."""
        return self._waiter is not None and not self._messages and not self._request_in_progress

    def idle_since(self) -> float:
        """When (loop time) the connection last finished a request or was opened: aiohttp
        sets the keep-alive deadline from it."""
        return self._next_keepalive_close_time - self._keepalive_timeout

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._timed_body is not None and self._messages:
            self._framing_lost()
        if self._request_in_progress or self._upgraded:
            return  # the body of a request being handled: its deadline is armed if needed
        messages = self._messages
        if not messages:
            if self._shed_all:
                self._shed_all = False
                return
            # Part of a request's headers (or a lingering body's end): start its deadline.
            if self._deadline is None and self.transport is not None and not self._close:
                self._deadline = self._loop.call_later(
                    self._limits.header_timeout_s, self._headers_timed_out
                )
            return
        payload = messages[-1][1]
        if payload is self._timed_body:
            return
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        if not payload.is_eof():
            self._timed_body = payload
            self._deadline = self._loop.call_later(
                self._limits.body_timeout_s, self._body_timed_out, payload
            )
            payload.on_eof(self._body_received)

    def shed(self, messages: Sequence[_Message]) -> Sequence[_Message]:
        """``messages`` just parsed, less the placing requests answered 503 here (called by
        ``_SheddingParser`` while the admission bound is reached). Only on a connection with
        nothing in progress or queued, so that answers keep their order, and only requests
        whose body is whole (nothing left to drain) and which keep the connection open."""
        stale = self._stale and self._loop.time() - self._stale < STALE_WINDOW_S
        self._stale = 0.0
        if self._request_in_progress or self._messages or self._upgraded:
            return messages
        guard = self._guard
        admission, transport = guard.admission, self.transport
        if admission is None or transport is None:
            return messages
        full = admission.in_flight >= admission.limit
        if stale and not full:
            # It may have waited out the pause in the kernel's buffer: refuse it if the server
            # refused others since the pause began, so that no admitted request carries it.
            full = admission.refused_at > self._paused_at
        kept: list[_Message] = []
        for msg, payload in messages:
            if (
                kept
                or not full
                or isinstance(msg, _ErrInfo)
                or msg.method != "POST"
                or msg.path not in SHED_PATHS
                or msg.should_close
                or not payload.is_eof()
            ):
                kept.append((msg, payload))
                continue
            admission.shed += 1
            admission.refused_at = time.monotonic()
            if guard.http is not None:
                guard.http.observe("POST", msg.path, 503, 0.0)
            transport.write(guard.overloaded)
            cast(_SheddingParser, self._parser).message_consumed()
        if not kept:
            self._shed_all = True
            # Answered: the keep-alive clock restarts, as after any answer.
            self._next_keepalive_close_time = self._loop.time() + self._keepalive_timeout
            if not (self._reading_paused or self._buffer_paused):
                # Honour Retry-After for the client (doubling while it does not): its next
                # request waits in the kernel.
                now = time.monotonic()
                if now - self._paused_at > REFUSALS_FORGOTTEN_S:
                    self._refusals = 0
                # Up to twice as long, at random: clients refused together (a shrinking bound
                # refuses many at once) would otherwise all be read again in one loop
                # iteration a second later, and the admitted requests wait behind them.
                pause = (RETRY_AFTER_S << min(self._refusals, 2)) * (1.0 + random.random())
                self._refusals += 1
                self._paused_at = now
                self._pause_transport_reading()
                self._loop.call_later(pause, self._resume_after_refusal)
        else:
            self._refusals = 0
        return kept

    def _resume_after_refusal(self) -> None:
        if self.transport is not None and not (self._reading_paused or self._buffer_paused):
            self._stale = self._loop.time()
            self._resume_transport_reading()

    def _framing_lost(self) -> None:
        """If the parser failed in the body of the request being read (a broken chunk),
        aiohttp queues a 400 for *after* that request, whose body then never ends: fail the
        body instead, so its handler answers 400 at once (``pyorder.server.errors``)."""
        error = self._messages[-1][0]
        body = self._timed_body
        if isinstance(error, _ErrInfo) and body is not None and not body.is_eof():
            self._stop_deadline()
            body.set_exception(RequestPayloadError(classify(error.exc, error.message)[2]))

    def connection_lost(self, exc: BaseException | None) -> None:
        self._stop_deadline()
        super().connection_lost(exc)

    def _stop_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        self._timed_body = None

    def _body_received(self) -> None:
        self._stop_deadline()

    def _headers_timed_out(self) -> None:
        self._deadline = None
        transport = self.transport
        if transport is None or self._messages or self._request_in_progress:
            return
        self._stats.closed["header_timeout"] += 1
        transport.write(
            canned(
                408,
                "Request Timeout",
                "request_timeout",
                f"the request's headers did not arrive within {self._limits.header_timeout_s:g} s",
            )
        )
        self.force_close()

    def _body_timed_out(self, payload: StreamReader) -> None:
        self._deadline = None
        self._timed_body = None
        if self.transport is None or payload.is_eof() or payload.exception() is not None:
            return
        self._stats.closed["body_timeout"] += 1
        # The handler reading the body answers 408 (pyorder.server.errors); the connection closes
        # after that answer, its framing lost.
        payload.set_exception(
            BodyTimeoutError(
                f"the request's body did not arrive within {self._limits.body_timeout_s:g} s"
            )
        )
        self.close()

    def _process_keepalive(self) -> None:
        closing = self._force_close
        super()._process_keepalive()
        if self._force_close and not closing:
            self._stats.closed["idle"] += 1

    def finish_response(
        self, request: BaseRequest, resp: StreamResponse, start_time: float | None
    ) -> Coroutine[Any, Any, tuple[StreamResponse, bool]]:
        """Send ``resp``; while the node drains, with ``Connection: close``, and the connection
        closes after it (aiohttp ends a connection whose answer does not keep it alive).
        Not a coroutine itself: it hands aiohttp's on, one coroutine per response as before."""
        if self._guard.drain.draining and isinstance(resp, StreamResponse) and not resp.prepared:
            resp.force_close()
        return super().finish_response(request, resp, start_time)

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> StreamResponse:
        """The answer to a request aiohttp could not parse (or, with 500, one whose handler
        failed outside ``pyorder.server.handling``'s wrapper): JSON, and the connection closes."""
        if request.writer.output_size > 0:
            raise ConnectionError("a response was already sent; cannot send an error")
        if status >= 500:
            self.logger.error("error handling request from %s", request.remote, exc_info=exc)
            resp = error_response(status, "internal", "internal error; it has been logged")
        else:
            status, code, text = classify(exc, message)
            self._stats.protocol_errors[code] += 1
            self.logger.debug("malformed request from %s: %s", request.remote, text)
            resp = error_response(status, code, text)
        resp.force_close()
        return resp

    def log_exception(self, *args: Any, **kw: Any) -> None:
        """aiohttp's own error logging: what the client caused (a broken body, a reset
        connection, a missed deadline) is counted and logged at DEBUG, the rest at ERROR."""
        exc = kw.get("exc_info")
        if isinstance(exc, CLIENT_FAULTS):
            self._stats.protocol_errors["bad_body" if isinstance(exc, _BODY) else "reset"] += 1
            self.logger.debug(*args, **kw)
            return
        super().log_exception(*args, **kw)


_Message = tuple[Any, StreamReader]
"""(``RawRequestMessage`` or aiohttp's parse error, body) as the parser hands them over."""


class _SheddingParser:
    """aiohttp's request parser (C), its messages passed through
    ``GuardedRequestHandler.shed`` while the admission bound is reached."""

    __slots__ = ("_conn", "_inner", "message_consumed")

    def __init__(self, inner: Any, conn: GuardedRequestHandler) -> None:
        self._inner = inner
        self._conn = conn
        self.message_consumed = inner.message_consumed

    def feed_data(self, data: bytes) -> tuple[Sequence[_Message], bool, bytes]:
        messages, upgraded, tail = self._inner.feed_data(data)
        conn = self._conn
        admission = conn._guard.admission
        if (
            messages
            and admission is not None
            and (conn._stale or admission.in_flight >= admission.limit)
            and not conn._guard.drain.draining  # the handler's refusals close the connection
        ):
            messages = conn.shed(messages)
        return messages, upgraded, tail

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


_BODY = (RequestPayloadError, http_exceptions.HttpProcessingError, BodyTimeoutError)
CLIENT_FAULTS = (*_BODY, ConnectionError)
"""Exceptions that reach aiohttp's logging because of what a client sent or did."""


def classify(exc: BaseException | None, message: str | None) -> tuple[int, str, str]:
    """(status, error code, message) for a request the parser refused."""
    # aiohttp's text: "what:\n  more:\n\n  b'<the raw line>'\n  ^": keep the words only.
    raw = message or (str(exc) if exc else "") or "malformed request"
    words = [line.strip().rstrip(":") for line in raw.split("\n\n", 1)[0].split("\n")]
    text = ": ".join(w for w in words if w)
    if isinstance(exc, http_exceptions.LineTooLong):
        # The C parser reports the request line from a bytearray, a header from bytes.
        if isinstance(exc.args[0], bytearray):
            return 414, "uri_too_long", "the request line (method, path and query) is too long"
        return 431, "header_too_large", "a request header is too long"
    if isinstance(exc, http_exceptions.BadHttpMethod):
        return 400, "bad_method", text
    if isinstance(exc, http_exceptions.BadStatusLine):
        return 400, "bad_request_line", text
    if isinstance(exc, http_exceptions.InvalidURLError):
        return 400, "bad_path", text
    if isinstance(exc, http_exceptions.InvalidHeader):
        return 400, "bad_header", text
    if text == "Too many headers received":
        return 431, "too_many_headers", "the request has too many headers"
    if isinstance(exc, http_exceptions.PayloadEncodingError) or any(
        k in text for k in ("chunk", "Transfer-Encoding", "Content-Length")
    ):
        return 400, "bad_framing", text
    return 400, "malformed_request", text


class GuardedAppRunner(web.AppRunner):
    """``web.AppRunner`` serving through ``GuardedServer``."""

    def __init__(
        self,
        app: web.Application,
        *,
        limits: ConnectionLimits,
        stats: ConnectionStats,
        admission: Admission | None = None,
        http: HttpStats | None = None,
        drain: DrainState | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(app, keepalive_timeout=limits.keepalive_timeout_s, **kwargs)
        self._limits = limits
        self._stats = stats
        self._admission = admission
        self._http = http
        self._drain = drain

    async def _make_server(self) -> Server:
        stock = await super()._make_server()
        return GuardedServer(
            stock.request_handler,
            request_factory=stock.request_factory,
            handler_cancellation=stock.handler_cancellation,
            loop=stock._loop,
            limits=self._limits,
            stats=self._stats,
            admission=self._admission,
            http=self._http,
            drain=self._drain,
            **stock._kwargs,
        )
