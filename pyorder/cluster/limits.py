"""A cluster node's purchase-limit claims (``pyorder.storage.limit_claims``,
``docs/scale-out.md`` "Purchase limits across nodes"): what the node claims for orders of
limited SKUs before they are staged, which of its orders have claims alive, and giving claims
up when their orders are refused or their commit fails.

``Orders`` places such orders into rows of their own, asks ``claim`` which of them the cluster
allows, and stages the allowed ones with ``staged``; the claims are deleted by the commit that
writes their orders (the part ``LIMIT_CLAIMS``), or here when that commit fails.
"""

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

from pyorder.intake import Intake
from pyorder.storage.base import NodeClaim, StorageError, Store
from pyorder.storage.limit_claims import LIMIT_CLAIMS

log = logging.getLogger(__name__)


@dataclass(slots=True)
class LimitStats:
    """Counters of a node's limit claims, for metrics."""

    claims: int = 0
    """Claim transactions run (one per request holding a limited SKU)."""
    orders_claimed: int = 0
    """Orders whose limited units were claimed."""
    refused: int = 0
    """Orders refused because the buyer is over a limit across the cluster."""
    released: int = 0
    """Orders whose claims were given up (their commit failed, or the core was rebuilt)."""
    release_failures: int = 0
    """Releases that failed (those claims stop counting after ``CLAIM_TTL_MS``)."""


class LimitClaims:
    """Claims of one cluster node. ``claim`` gives the node's number and epoch now."""

    def __init__(self, store: Store, claim: Callable[[], NodeClaim], intake: Intake) -> None:
        self._store = store
        self._claim = claim
        self._intake = intake
        self.in_flight: set[int] = set()
        """Orders of this node with a claim that may still commit: their claims are alive."""
        self.stats = LimitStats()
        self._releases: set[asyncio.Task[None]] = set()

    async def claim(
        self, buyer: str, orders: list[tuple[int, dict[int, int]]]
    ) -> tuple[dict[int, int], tuple[int, int]]:
        """Claim ``orders`` ((order id, {limited sku: units}), in placing order) for
        ``buyer``. Returns the refused orders (id -> the SKU over its limit) and the (node,
        epoch) the others were claimed under. Raises ``StorageError`` (nothing claimed that
        counts for long: see ``release``)."""
        lease = self._claim()
        fence = (lease.node, lease.epoch)
        ids = [order_id for order_id, _ in orders]
        self.in_flight.update(ids)
        self.stats.claims += 1
        try:
            refused = await self._store.claim_limits(buyer, orders, *fence, sorted(self.in_flight))
        except BaseException:
            # Its COMMIT may have landed with the reply lost: give up whatever it claimed.
            self.in_flight.difference_update(ids)
            self._release_later(ids, fence)
            raise
        self.in_flight.difference_update(refused)
        self.stats.refused += len(refused)
        self.stats.orders_claimed += len(ids) - len(refused)
        return refused, fence

    def staged(self, claimed: dict[int, int], fence: tuple[int, int]) -> None:
        """The orders ``claimed`` (id -> their claim rows) are staged in the intake's batch
        now: their commit deletes the claims; if it fails, they are given up."""
        if not claimed:
            return
        part = self._intake.batch.part(LIMIT_CLAIMS)
        for order_id, rows in claimed.items():
            part.add(order_id, rows)
        ids = list(claimed)
        done = self._intake.durable()

        def settled(fut: "asyncio.Future[None]") -> None:
            self.in_flight.difference_update(ids)
            if fut.cancelled() or fut.exception() is not None:
                self._release_later(ids, fence)

        done.add_done_callback(settled)

    async def release(self, order_ids: list[int], fence: tuple[int, int]) -> None:
        """Give up the claims of ``order_ids`` (made under ``fence``, the node's number and
        epoch then). A release that fails leaves claims that this node drops at its next claim
        of the same (sku, buyer), and that stop counting for all after ``CLAIM_TTL_MS``."""
        self.in_flight.difference_update(order_ids)
        self.stats.released += len(order_ids)
        try:
            await self._store.release_limits(order_ids, *fence)
        except StorageError as e:
            self.stats.release_failures += 1
            log.warning("releasing the limit claims of %d orders failed: %s", len(order_ids), e)

    def _release_later(self, order_ids: list[int], fence: tuple[int, int]) -> None:
        task = asyncio.get_running_loop().create_task(self.release(order_ids, fence))
        self._releases.add(task)
        task.add_done_callback(self._releases.discard)

    async def stop(self) -> None:
        """Wait for the releases under way (at the node's stop, before the store closes)."""
        while self._releases:
            await asyncio.wait(list(self._releases))
