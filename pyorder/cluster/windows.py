"""Delivery windows on cluster nodes (``docs/scale-out.md``, "Delivery windows across nodes"):
a node's copy of the windows every node opens, for its listings.

The places themselves are counted by the store (``pyorder.storage.window_bookings``): a pick
books in PostgreSQL, wherever the window was opened, and a node's copy only shows them. So the
copy is read again on demand, when a listing finds it older than ``max_age_s``: a window opened
on another node (or a place taken there) is listed here within that, with no background task.
One read serves the listings that wait for it meanwhile.
"""

import asyncio
import time
from collections.abc import Callable

from pyorder.kernel.clock import now_ms
from pyorder.logistics.model import DeliveryWindow
from pyorder.storage.base import Store


class WindowMirror:
    """Keeps a cluster node's copy of the delivery windows (``windows()``, the dict the node
    holds them in) no older than ``max_age_s`` seconds when it lists them."""

    def __init__(
        self,
        store: Store,
        windows: Callable[[], dict[int, DeliveryWindow]],
        max_age_s: float = 1.0,
    ) -> None:
        self._store = store
        self._windows = windows
        self.max_age_s = max_age_s
        self._read_at = -float("inf")
        """When the last read that landed began (``time.monotonic``)."""
        self._reading: asyncio.Future[None] | None = None
        self._changed: dict[int, float] = {}
        """Window id -> when this node last changed its copy of it (a pick, a release, a new
        window): a read begun before that is older than the copy, and does not replace it."""

    def changed(self, window_id: int) -> None:
        """This node just changed its copy of window ``window_id`` (made it, or saw it in a
        booking): newer than any read under way."""
        self._changed[window_id] = time.monotonic()

    async def fresh(self) -> None:
        """Read the store's windows that have not ended, unless the last read began less than
        ``max_age_s`` ago; a caller that finds a read under way waits for that one. Raises
        ``StorageError`` when the store cannot be read (the listing answers 503)."""
        if time.monotonic() - self._read_at < self.max_age_s:
            return
        if self._reading is None:
            self._reading = asyncio.ensure_future(self._read())
        reading = self._reading
        try:
            await asyncio.shield(reading)
        finally:
            if reading.done() and self._reading is reading:
                self._reading = None

    async def _read(self) -> None:
        began = time.monotonic()
        rows = await self._store.delivery_windows(now_ms())
        held = self._windows()
        for w in rows:
            if self._changed.get(w.id, -float("inf")) < began:
                held[w.id] = w
        self._read_at = began
        # Changes older than this read are in it: forget them (the dict stays small).
        self._changed = {k: t for k, t in self._changed.items() if t >= began}
