"""Order events end to end: a real aiohttp receiver on loopback standing in for merchants'
endpoints, and helpers to register endpoints and read their deliveries through the API.

The receiver runs on an event loop of its own in a thread, so the synchronous ``Server``
helpers drive the server meanwhile. It keeps its port across ``stop()`` and ``start()``: an
endpoint's URL stays the same while the merchant's side is down.

    with Receiver() as hooks:
        url = hooks.url("x")            # deliveries to it are recorded under "x"
        hooks.answer("x", 500)          # the next delivery to "x" fails, then 200s
        hooks.down("x")                 # every delivery to "x" fails until hooks.up("x")
        hooks.wait_for(lambda: len(hooks.events("x")) >= 3)
"""

import asyncio
import json
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from pyorder.events.dispatcher import EVENT_ID_HEADER, EVENT_TYPE_HEADER, SIGNATURE_HEADER
from pyorder.kernel.signing import verify
from tests.server.e2e_lib import Server
from tests.support.server import free_port

FAST_RETRIES = ("--webhook-retry-base-ms", "50", "--webhook-retry-max-ms", "200")
"""Server options: a failed delivery is tried again after 50, 100, 200, 200 ... ms."""


@dataclass(frozen=True)
class Hit:
    """One request the receiver got, and what it answered."""

    endpoint: str
    headers: dict[str, str]
    """Lower-cased names."""
    body: bytes
    status: int
    at: float
    """``time.monotonic()`` seconds."""

    @property
    def event(self) -> dict[str, Any]:
        doc = json.loads(self.body)
        assert isinstance(doc, dict), self.body
        return doc

    def verified(self, secret: str) -> dict[str, Any]:
        """The event, once its signature (under ``secret``) and headers are checked."""
        verify(self.body, self.headers.get(SIGNATURE_HEADER.lower()), secret)
        event = self.event
        assert self.headers.get(EVENT_ID_HEADER.lower()) == event["id"], self
        assert self.headers.get(EVENT_TYPE_HEADER.lower()) == event["type"], self
        assert self.headers.get("content-type") == "application/json", self
        return event


class Receiver:
    def __init__(self) -> None:
        self.port = free_port()
        self._lock = threading.Lock()
        self._hits: list[Hit] = []
        self._scripted: defaultdict[str, deque[int]] = defaultdict(deque)
        self._down: dict[str, int] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stop: asyncio.Event | None = None

    def url(self, endpoint: str) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/{endpoint}"

    def answer(self, endpoint: str, *statuses: int) -> None:
        """Answer the next deliveries to ``endpoint`` with ``statuses``, then 200 again."""
        with self._lock:
            self._scripted[endpoint].extend(statuses)

    def down(self, endpoint: str, status: int = 500) -> None:
        """Answer every delivery to ``endpoint`` with ``status`` until ``up()``."""
        with self._lock:
            self._down[endpoint] = status

    def up(self, endpoint: str) -> None:
        with self._lock:
            self._down.pop(endpoint, None)

    def hits(self, endpoint: str) -> list[Hit]:
        with self._lock:
            return [h for h in self._hits if h.endpoint == endpoint]

    def accepted(self, endpoint: str) -> list[Hit]:
        """Deliveries to ``endpoint`` answered 2xx, in order of arrival (duplicates too)."""
        return [h for h in self.hits(endpoint) if 200 <= h.status < 300]

    def events(self, endpoint: str) -> list[dict[str, Any]]:
        return [h.event for h in self.accepted(endpoint)]

    def wait_for(self, condition: Callable[[], bool], timeout_s: float = 15.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not condition():
            if time.monotonic() > deadline:
                with self._lock:
                    seen = [(h.endpoint, h.status, h.event["type"]) for h in self._hits]
                raise AssertionError(f"timed out; received {seen}")
            time.sleep(0.02)

    # --- serving ----------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.Response:
        endpoint = request.match_info["endpoint"]
        body = await request.read()
        with self._lock:
            scripted = self._scripted[endpoint]
            status = scripted.popleft() if scripted else self._down.get(endpoint, 200)
            headers = {k.lower(): v for k, v in request.headers.items()}
            self._hits.append(Hit(endpoint, headers, body, status, time.monotonic()))
        return web.Response(status=status, text="ok" if status < 300 else "failing on purpose")

    async def _serve(self, ready: threading.Event) -> None:
        app = web.Application()
        app.router.add_post("/hooks/{endpoint}", self._handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        self._stop = asyncio.Event()
        try:
            await web.TCPSite(runner, "127.0.0.1", self.port, reuse_address=True).start()
            ready.set()
            await self._stop.wait()
        finally:
            await runner.cleanup()

    def start(self) -> None:
        ready = threading.Event()
        self._loop = asyncio.new_event_loop()
        loop = self._loop
        self._thread = threading.Thread(
            target=lambda: loop.run_until_complete(self._serve(ready)), daemon=True
        )
        self._thread.start()
        assert ready.wait(10), "the receiver did not start"

    def stop(self) -> None:
        """Stop listening (connections are refused) until ``start()``."""
        if self._loop is None or self._thread is None or self._stop is None:
            return
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)
        self._loop.close()
        self._loop = self._thread = self._stop = None

    def __enter__(self) -> "Receiver":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --- the API -------------------------------------------------------------------------------------


def register(
    srv: Server, token: str, url: str, events: list[str] | None = None, description: str = ""
) -> dict[str, Any]:
    """Register an endpoint (201 expected); its body, with the secret."""
    body: dict[str, Any] = {"url": url, "description": description}
    if events is not None:
        body["events"] = events
    out: dict[str, Any] = srv.ok(
        "POST", "/v1/webhook-endpoints", token=token, json=body, expect=201
    )
    return out


def deliveries(srv: Server, token: str, endpoint_id: int, page: int = 50) -> list[dict[str, Any]]:
    """Every delivery of the endpoint, newest first, following the cursor."""
    found: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        path = f"/v1/webhook-endpoints/{endpoint_id}/deliveries?limit={page}"
        out = srv.ok("GET", path + (f"&before={cursor}" if cursor else ""), token=token)
        found += out["deliveries"]
        cursor = out["next_cursor"]
        if cursor is None:
            return found


def of_type(events: list[dict[str, Any]], kind: str) -> list[str]:
    """The order ids of the events of type ``kind``, in order."""
    return [e["order_id"] for e in events if e["type"] == kind]
