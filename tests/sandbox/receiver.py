"""A real webhook receiver on loopback: records every delivery, answers scripted statuses.

async with webhook_receiver() as hooks:
    url = hooks.url("alpha")              # deliveries to it are recorded under "alpha"
    hooks.answer("alpha", 500, 503)       # the next two deliveries fail, then 200s
    await hooks.wait_for(lambda: len(hooks.events("alpha")) >= 3)
"""

import asyncio
import time
from collections import defaultdict, deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from pyorder.kernel.signing import SIGNATURE_HEADER
from sandbox.serving import running


@dataclass(frozen=True)
class Received:
    endpoint: str
    signature: str | None
    provider: str | None
    body: bytes
    status: int
    """What the receiver answered."""
    at: float
    """``time.monotonic()`` seconds."""

    @property
    def event(self) -> dict[str, Any]:
        doc = orjson.loads(self.body)
        assert isinstance(doc, dict)
        return doc


class Receiver:
    def __init__(self) -> None:
        self.received: list[Received] = []
        self._scripted: defaultdict[str, deque[int]] = defaultdict(deque)
        self.base_url = ""

    def url(self, endpoint: str) -> str:
        return f"{self.base_url}/hooks/{endpoint}"

    def answer(self, endpoint: str, *statuses: int) -> None:
        """Answer the next deliveries to ``endpoint`` with ``statuses``, then 200 again."""
        self._scripted[endpoint].extend(statuses)

    def at(self, endpoint: str) -> list[Received]:
        return [r for r in self.received if r.endpoint == endpoint]

    def accepted(self, endpoint: str) -> list[Received]:
        """Deliveries to ``endpoint`` answered 2xx, in order of arrival."""
        return [r for r in self.at(endpoint) if 200 <= r.status < 300]

    def events(self, endpoint: str) -> list[dict[str, Any]]:
        """The events accepted at ``endpoint``, in order of arrival (duplicates included)."""
        return [r.event for r in self.accepted(endpoint)]

    async def wait_for(self, condition: Callable[[], bool], timeout_s: float = 8.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"timed out; received {[r.event['type'] for r in self.received]}"
                )
            await asyncio.sleep(0.01)

    async def handle(self, request: web.Request) -> web.Response:
        endpoint = request.match_info["endpoint"]
        body = await request.read()
        scripted = self._scripted[endpoint]
        status = scripted.popleft() if scripted else 200
        self.received.append(
            Received(
                endpoint,
                request.headers.get(SIGNATURE_HEADER),
                request.headers.get("Provider-Name"),
                body,
                status,
                time.monotonic(),
            )
        )
        return web.Response(status=status, text="ok" if status < 300 else "failing on purpose")


@asynccontextmanager
async def webhook_receiver() -> AsyncIterator[Receiver]:
    receiver = Receiver()
    app = web.Application()
    app.router.add_post("/hooks/{endpoint}", receiver.handle)
    async with running(app) as url:
        receiver.base_url = url
        yield receiver
