"""A cluster node's copy of the merchants' webhook endpoints (``docs/scale-out.md``).

Every node stages its own orders' events, and stages one only when some endpoint wants its
type (``Endpoints.wanting``); the leader alone changes endpoints (their requests are forwarded
to it, ``pyorder.server.forwarding``) and delivers. So each node reads the endpoints from the
store every ``interval_s``: a node that does not lead takes the store's list as it is; the
leader keeps what it holds (its own changes, staged or committed) and adds the endpoints it
does not know, those a previous leader made. An endpoint made on the leader is therefore
known to the others within ``interval_s`` of its commit, and its events of orders taken on
them before that are not staged: a window of one second after its registration.

The leader delivers every node's events, but is woken only by those it stages itself; so on
the leader each pass also wakes the deliveries (``on_pass``), which read what the other nodes
committed: their events go out within ``interval_s`` of their commit.
"""

import logging
from collections.abc import Callable

from pyorder.events.endpoints import Endpoints
from pyorder.kernel.tasks import Periodic
from pyorder.storage.base import Store

log = logging.getLogger(__name__)


class EndpointMirror:
    def __init__(
        self,
        store: Store,
        endpoints: Endpoints,
        leads: Callable[[], bool],
        ready: Callable[[], bool],
        interval_s: float = 1.0,
    ) -> None:
        self._store = store
        self._endpoints = endpoints
        self._leads = leads
        self._periodic = Periodic(
            "pyorder-endpoint-mirror",
            self.refresh,
            ready,
            log,
            "reading the webhook endpoints failed (the copy stays as it is)",
            interval_s,
        )
        self.on_pass: list[Callable[[], None]] = []
        """Called on the leader after each pass (its deliveries read the store again)."""

    async def refresh(self) -> None:
        """Read the store's endpoints into this node's copy (see the module)."""
        found = await self._store.webhook_endpoints()
        if self._leads():
            self._endpoints.add_unknown(found)
            for notify in self.on_pass:
                notify()
        else:
            self._endpoints.load(found)

    @property
    def interval_s(self) -> float:
        return self._periodic.interval_s

    def start(self) -> None:
        self._periodic.start()

    async def stop(self) -> None:
        await self._periodic.stop()
