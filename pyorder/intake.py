"""Durable intake by group commit: effects staged in core order, one transaction per window.

The in-memory core (inventory, order IDs) decides; the store makes decisions durable. A caller
applies its effect to the core and, *without awaiting in between*, stages the rows in
``intake.batch``, then awaits ``intake.durable()``. The event loop runs callers one at a time,
so staging order equals the core's order; batches commit one after another, so the database
always holds a prefix of the core's history and a crash loses only unacknowledged effects.

Up to ``store.pipeline_depth`` batches are in flight at once (the store writes them in order
and none after a failed one), so the next batch is ready the moment the previous is durable.
At depth 1 the commit runs in the intake's own task, which hands the next batch over as soon
as it returns.
A failed commit is treated like a crash: every waiter of that batch and of the batches after
it fails, and ``on_failure`` rebuilds the core from the store.
"""

import asyncio
import collections
import logging
import random
import secrets
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pyorder.kernel.unit import Part, PartKind
from pyorder.model import WriteBatch
from pyorder.orders.model import Order
from pyorder.storage.base import Store
from pyorder.storage.codec import staged_order

log = logging.getLogger(__name__)
P = TypeVar("P", bound=Part)
REBUILD_RETRY_S = (0.1, 1.0)
"""Waits between tries of a rebuild after a failed commit (s): the first, doubled after each
failure up to the second. A database failover's new primary is often up within a second, and
the node takes writes again at the first try that reaches it."""


class IntakeUnavailableError(Exception):
    """The write path is down or recovering; nothing was acknowledged."""


@dataclass(slots=True)
class CommitStats:
    """Counters of the commit loop, for metrics."""

    batches: int = 0
    items: int = 0
    failures: int = 0
    last_batch_items: int = 0
    last_commit_s: float = 0.0
    observers: list[Callable[[int, float], None]] = field(default_factory=list)


class Intake:
    """Group-commit writer over a ``Store``."""

    def __init__(
        self,
        store: Store,
        *,
        window_s: float = 0.001,
        on_failure: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.store = store
        self.window_s = window_s
        self.on_failure = on_failure
        self.prepare: Callable[[WriteBatch], Awaitable[None] | None] | None = None
        """Completes a batch as it is handed over, before it is written: returns the work to
        await, or None when the batch needs none (``Events.resolve_ended``: the events of
        orders ended with no full ``Order`` at hand); batches are still handed to the store in
        order."""
        self.stats = CommitStats()
        self._tokens = random.Random(secrets.randbits(128))
        """Batch tokens: unique with overwhelming odds; they need not be unpredictable."""
        self.batch = WriteBatch()
        self._waiters: list[asyncio.Future[None]] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._in_flight: collections.deque[asyncio.Task[None]] = collections.deque()
        self._handed: list[WriteBatch] = []
        """Batches handed over and not settled yet, oldest first: their orders are not in the
        store yet (or not known to be)."""
        self._last_outcome: asyncio.Future[bool] | None = None
        """Whether the batch handed over last committed (set once its waiters are answered)."""
        self._closing = False
        self._recovering = False
        self._recovered = asyncio.Event()
        self._rebuilding: asyncio.Future[None] | None = None
        """A reload's rebuild (held: it runs on when the reload is cancelled)."""
        self._error = IntakeUnavailableError(
            "the write path failed; nothing was acknowledged, retry"
        )
        self.available = True

    def durable(self) -> asyncio.Future[None]:
        """A future resolved when everything staged so far has committed."""
        if not self.available:
            raise IntakeUnavailableError("the write path is recovering; retry shortly")
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        self._wake.set()
        return fut

    def staged_parts(self, kind: PartKind[P, Any]) -> Iterator[P]:
        """The part ``kind`` of every batch not settled yet (staged, or being written),
        newest first; a batch that has none is skipped."""
        for batch in (self.batch, *reversed(self._handed)):
            if kind.name in batch.parts:
                yield batch.part(kind)

    def staged_order(self, order_id: int) -> Order | None:
        """The order ``order_id`` in full if it was placed in a batch not settled yet (staged,
        or being written), else None: then it is in the store, if it exists."""
        for batch in (self.batch, *reversed(self._handed)):
            found = batch.placed.find(order_id)
            if found is not None:
                return staged_order(found)
            for order in batch.orders:
                if order.id == order_id:
                    return order
        return None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="pyorder-intake")

    async def close(self) -> None:
        """Flush what is staged, then stop."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await self._task
            self._task = None

    async def _run(self) -> None:
        arrived_while_committing = False
        depth = max(1, self.store.pipeline_depth)
        while True:
            await self._wake.wait()
            if not self.available:
                await self._recovered.wait()
                continue
            if not self._waiters and not len(self.batch):
                self._wake.clear()
                if self._closing:
                    await self._drain()
                    return
                continue
            if self.window_s > 0 and not self._closing and not arrived_while_committing:
                # Let concurrent requests join this transaction. Work that queued up during
                # the previous commit has waited long enough: it goes at once.
                await asyncio.sleep(self.window_s)
            arrived_while_committing = False
            while len(self._in_flight) >= depth:
                await asyncio.wait([self._in_flight[0]])
                arrived_while_committing = True
            if not self.available:
                continue
            batch, waiters = self.batch, self._waiters
            self.batch, self._waiters = WriteBatch(), []
            self._wake.clear()
            self._handed.append(batch)
            if self.prepare is not None:
                try:
                    pending = self.prepare(batch)
                    if pending is not None:
                        await pending
                except Exception:  # the events of this batch are lost, not its changes
                    log.exception("could not complete a batch of %d before writing", len(batch))
            # Up to ``depth`` commits in flight: the store writes them in order (and none after
            # a failed one), so the next batch is ready the moment the previous one is durable.
            prior, outcome = self._last_outcome, asyncio.get_running_loop().create_future()
            self._last_outcome = outcome
            if depth == 1:
                # One at a time: commit here. A task of its own would cost two turns of a busy
                # event loop per commit (its start, then waking this loop when it ends), each
                # behind every HTTP callback ready at that moment, while the next batch waits.
                try:
                    await self._commit(batch, waiters, prior, outcome)
                except Exception:  # a bug, not a failed commit (those are handled inside):
                    # keep the intake alive, as a commit task's error would have.
                    log.exception("the commit of a batch of %d items raised", len(batch))
                arrived_while_committing = bool(self._waiters or len(self.batch))
                if self._closing:
                    self._wake.set()
                continue
            task = asyncio.create_task(self._commit(batch, waiters, prior, outcome))
            self._in_flight.append(task)
            task.add_done_callback(self._in_flight.remove)
            if self._closing:
                # close() may have woken us while we slept out the window: look again.
                self._wake.set()

    async def _drain(self) -> None:
        while self._in_flight:
            await asyncio.wait(list(self._in_flight))

    async def _commit(
        self,
        batch: WriteBatch,
        waiters: list[asyncio.Future[None]],
        prior: "asyncio.Future[bool] | None",
        outcome: "asyncio.Future[bool]",
    ) -> None:
        try:
            await self._commit_batch(batch, waiters, prior, outcome)
        finally:
            self._handed.remove(batch)
            if not outcome.done():
                outcome.set_result(False)

    async def _commit_batch(
        self,
        batch: WriteBatch,
        waiters: list[asyncio.Future[None]],
        prior: "asyncio.Future[bool] | None",
        outcome: "asyncio.Future[bool]",
    ) -> None:
        items = len(batch)
        if not items:
            # Only waiters: what they wait for is in the batches handed over before, which
            # may still be in flight. Answer them with the previous batch's outcome.
            ok = True if prior is None else await asyncio.shield(prior)
            if ok:
                for fut in waiters:
                    if not fut.done():
                        fut.set_result(None)
            else:
                self._fail_all(waiters, self._error)
            outcome.set_result(ok)
            return
        started = time.perf_counter()
        if self.store.replies_can_be_lost:
            batch.token = self._tokens.getrandbits(63) or 1
        try:
            await self.store.commit(batch)
        except Exception:  # the batch may or may not have committed (a lost reply)
            self.stats.failures += 1
            if self._recovering:
                # An earlier batch failed first; this one was refused after it (or is in doubt).
                outcome.set_result(await self._settle_failed(batch, waiters))
                return
            log.exception("commit of %d items failed; rebuilding from the store", items)
            await self._fail(batch, waiters, outcome)
            return
        elapsed = time.perf_counter() - started
        self.stats.batches += 1
        self.stats.items += items
        self.stats.last_batch_items = items
        self.stats.last_commit_s = elapsed
        for observe in self.stats.observers:
            observe(items, elapsed)
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)
        outcome.set_result(True)

    async def _fail(
        self,
        batch: WriteBatch,
        waiters: list[asyncio.Future[None]],
        outcome: "asyncio.Future[bool]",
    ) -> None:
        """A commit failed: answer its waiters with what really happened, fail everything
        staged after it (it may build on it), and rebuild the core from the store."""
        self.available = False
        self._recovering = True
        self._recovered.clear()
        self._fail_all(self._waiters, self._error)
        self._waiters, self.batch = [], WriteBatch()
        outcome.set_result(await self._settle_failed(batch, waiters))
        # Commits handed over after this one fail too (the store writes none after a failed
        # one); let them finish before the store writes again.
        others = [t for t in self._in_flight if t is not asyncio.current_task()]
        if others:
            await asyncio.wait(others)
        await self._rebuild()

    async def reload(self) -> None:
        """Rebuild the core from the store now, with nothing failed (a cluster node adopting a
        dead node's orders, ``docs/scale-out.md``): what is staged is committed first; requests
        meanwhile are refused (503, as during a recovery) and nothing acknowledged is lost. A
        recovery already running rebuilds anyway."""
        for round_ in range(5):  # under load there is always more: a few rounds, then refuse
            if not self.available:
                return
            if not self._handed and (round_ == 4 or not (len(self.batch) or self._waiters)):
                break
            try:  # what is staged and handed over commits (at depth 1 the loop runs it)
                await self.durable()
            except Exception:  # that commit failed: its recovery rebuilds
                return
        while self._handed:  # the last round's commit is being answered
            await asyncio.sleep(0.001)
        if not self.available:
            return
        # No commit in flight, and none starts from here (the loop hands a batch over only
        # while available): what is staged now is refused, as during a recovery.
        self.available = False
        self._recovering = True
        self._recovered.clear()
        # Shielded: a stop that cancels the reload must not leave the intake half rebuilt,
        # refusing work for good and its ``close`` waiting for a recovery that never ends.
        self._rebuilding = asyncio.ensure_future(self._rebuild())
        await asyncio.shield(self._rebuilding)

    async def _rebuild(self) -> None:
        """Rebuild through ``on_failure`` until it succeeds, then take writes again; once
        the intake is closing, a failed rebuild is the last (the process stops without it,
        its staged work refused: nothing of it was acknowledged)."""
        pause = REBUILD_RETRY_S[0]
        while self.on_failure is not None:
            try:
                await self.on_failure()
                break
            except Exception:  # the store is still down: keep refusing writes, retry
                if self._closing:
                    log.exception("rebuild from the store failed while stopping; giving up")
                    break
                log.exception("rebuild from the store failed; retrying in %.1f s", pause)
                await asyncio.sleep(pause)
                pause = min(pause * 2, REBUILD_RETRY_S[1])
        # Whatever was staged while recovering was decided by the old core: drop it.
        self._fail_all(self._waiters, self._error)
        self._waiters, self.batch = [], WriteBatch()
        # The failed batch's waiters have their answer; a waiter from now on waits for work
        # staged after the rebuild, so an empty batch must not answer it with that failure.
        self._last_outcome = None
        self.store.resume()
        self._recovering = False
        self.available = True
        self._recovered.set()

    async def _settle_failed(self, batch: WriteBatch, waiters: list[asyncio.Future[None]]) -> bool:
        """Answer the waiters of a failed commit; returns whether it did commit after all."""
        if len(batch) and await self._did_commit(batch.token):
            # The connection died after COMMIT: the batch is durable; say so.
            for fut in waiters:
                if not fut.done():
                    fut.set_result(None)
            return True
        self._fail_all(waiters, self._error)
        return False

    async def _did_commit(self, token: int, patience_s: float = 5.0) -> bool:
        """Whether the batch with ``token`` committed; False when the store cannot tell us
        within ``patience_s`` (its waiters then hear 503 and stay in doubt)."""
        deadline = time.monotonic() + patience_s
        while True:
            try:
                return await self.store.committed(token)
            except Exception:
                if time.monotonic() >= deadline:
                    log.exception("cannot tell whether batch %d committed", token)
                    return False
                await asyncio.sleep(0.2)

    @staticmethod
    def _fail_all(waiters: list[asyncio.Future[None]], error: Exception) -> None:
        for fut in waiters:
            if not fut.done():
                fut.set_exception(error)
