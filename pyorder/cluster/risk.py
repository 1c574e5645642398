"""A cluster node's copy of the risk rules, lists and thresholds (``docs/risk.md``, "Several
nodes").

The leader alone changes them (their requests are forwarded to it,
``pyorder.server.forwarding.by_leader``). Every node reads the configuration's version from the
store every ``interval_s`` (one row, one column) and, when it differs from the version it holds,
reads the rules, lists and thresholds and makes a new live policy of them. A node that does not
lead takes any other version; the leader takes only a newer one (a previous leader's changes),
since what it staged itself is ahead of the store until it commits. So a change made on the
leader is live on every node within ``interval_s`` of its commit.
"""

import logging
from collections.abc import Callable

from pyorder.kernel.tasks import Periodic
from pyorder.risk.management import RiskControl
from pyorder.storage.base import Store

log = logging.getLogger(__name__)


class RiskMirror:
    def __init__(
        self,
        store: Store,
        risk: RiskControl,
        leads: Callable[[], bool],
        ready: Callable[[], bool],
        interval_s: float = 1.0,
    ) -> None:
        self._store = store
        self._risk = risk
        self._leads = leads
        self._periodic = Periodic(
            "pyorder-risk-mirror",
            self.refresh,
            ready,
            log,
            "reading the risk rules failed (the live policy stays as it is)",
            interval_s,
        )

    async def refresh(self) -> None:
        """Read the store's configuration into this node's copy if its version moved (see the
        module)."""
        held = self._risk.version
        stored = await self._store.risk_version()
        if stored == held or (stored < held and self._leads()):
            return
        state = await self._store.risk_state()
        if self._risk.version == held:  # nothing staged here meanwhile
            self._risk.load(state)

    @property
    def interval_s(self) -> float:
        return self._periodic.interval_s

    def start(self) -> None:
        self._periodic.start()

    async def stop(self) -> None:
        await self._periodic.stop()
