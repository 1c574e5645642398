"""The group-commit intake's pipeline, against a scripted store whose commits the test ends.

The real stores are exercised end to end in tests/storage, tests/server and tests/crash; here a
store that only records what it is handed shows the intake's own rules: batches are handed over
in staging order, at most ``pipeline_depth`` at once; a waiter is answered only after its batch
is durable; and after a failed commit, every waiter of that batch and of the batches after it
fails, the core is rebuilt once, and the store resumes only when nothing is in flight.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from pyorder.intake import Intake, IntakeUnavailableError
from pyorder.model import WriteBatch
from pyorder.orders.model import OrderStatus, StatusChange
from pyorder.storage.base import StorageError, Store


class ScriptedStore(Store):
    """Commits wait until the test ends them (``finish``); ``committed`` answers from a set."""

    def __init__(self, depth: int) -> None:
        self.pipeline_depth = depth
        self.handed: list[tuple[WriteBatch, asyncio.Future[None]]] = []
        self.durable_tokens: set[int] = set()
        self.resumed = 0
        self.events: list[str] = []

    async def commit(self, batch: WriteBatch) -> None:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.handed.append((batch, done))
        self.events.append(f"commit {len(self.handed)}")
        await done

    def finish(self, index: int, error: Exception | None = None) -> None:
        batch, done = self.handed[index]
        if error is None:
            self.durable_tokens.add(batch.token)
            done.set_result(None)
        else:
            done.set_exception(error)

    def resume(self) -> None:
        self.resumed += 1
        self.events.append("resume")

    async def committed(self, token: int) -> bool:
        return token in self.durable_tokens

    async def open(self) -> None: ...
    async def close(self) -> None: ...
    async def schema_version(self) -> int:
        return 0

    async def load(self) -> Any:
        raise NotImplementedError

    async def get_order(self, order_id: int) -> Any:
        raise NotImplementedError

    async def get_orders(self, order_ids: list[int]) -> Any:
        raise NotImplementedError

    async def list_orders(self, **kwargs: Any) -> Any:
        raise NotImplementedError

    async def get_sku(self, sku_id: int) -> Any:
        raise NotImplementedError

    async def list_skus(self, **kwargs: Any) -> Any:
        raise NotImplementedError

    async def get_stock(self, sku_id: int) -> Any:
        raise NotImplementedError

    async def get_idempotency(self, principal: str, key: str) -> Any:
        raise NotImplementedError

    async def purge_idempotency(self, older_than_ms: int) -> int:
        return 0


def stage(intake: Intake, order_id: int) -> asyncio.Future[None]:
    change = StatusChange(order_id, OrderStatus.PENDING_PAYMENT, OrderStatus.CANCELLED, 0)
    intake.batch.status_changes.append(change)
    return intake.durable()


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


def ids(batch: WriteBatch) -> list[int]:
    return [c.order_id for c in batch.status_changes]


def test_batches_go_in_order_at_most_depth_at_once_and_answer_after_commit() -> None:
    async def body() -> None:
        store = ScriptedStore(depth=2)
        intake = Intake(store, window_s=0)
        intake.start()
        first = stage(intake, 1)
        await settle()
        second = stage(intake, 2)
        await settle()
        third = stage(intake, 3)
        await settle()
        # Two in flight; the third waits for a slot.
        assert [ids(b) for b, _ in store.handed] == [[1], [2]]
        store.finish(0)
        await settle()
        assert first.done()
        assert not second.done()
        assert [ids(b) for b, _ in store.handed] == [[1], [2], [3]]
        store.finish(1)
        store.finish(2)
        await settle()
        assert second.done()
        assert third.done()
        await intake.close()

    asyncio.run(body())


def test_at_depth_one_what_arrived_during_a_commit_goes_next_in_one_batch() -> None:
    """One commit at a time (PostgreSQL): the intake runs it in its own task, and the work
    staged meanwhile is handed over as one batch when it returns, with no window."""

    async def body() -> None:
        store = ScriptedStore(depth=1)
        intake = Intake(store, window_s=0.05)  # far longer than settle()
        intake.start()
        first = stage(intake, 1)
        await asyncio.sleep(0.1)  # the first batch waits out its window: nothing was in flight
        second, third = stage(intake, 2), stage(intake, 3)
        await settle()
        assert [ids(b) for b, _ in store.handed] == [[1]]  # one in flight
        store.finish(0)
        await settle()
        assert first.done()
        assert [ids(b) for b, _ in store.handed] == [[1], [2, 3]]
        assert not second.done()
        store.finish(1)
        await settle()
        assert second.done()
        assert third.done()
        await intake.close()

    asyncio.run(body())


@pytest.mark.parametrize("depth", [1, 2])
def test_a_failed_commit_fails_what_follows_rebuilds_once_then_resumes(depth: int) -> None:
    async def body() -> None:
        store = ScriptedStore(depth=depth)
        rebuilds: list[int] = []

        async def rebuild() -> None:
            rebuilds.append(len(store.handed))
            store.events.append("rebuild")

        intake = Intake(store, window_s=0, on_failure=rebuild)
        intake.start()
        first = stage(intake, 1)
        await settle()
        second = stage(intake, 2)
        await settle()
        staged = stage(intake, 3) if depth == 2 else None
        store.finish(0, StorageError("disk full"))
        await settle()
        with pytest.raises(IntakeUnavailableError):
            await first
        if depth == 2:
            # The second batch was handed over behind the failed one: the store refuses it.
            assert not second.done()
            assert store.resumed == 0, "no resume while a batch is still in flight"
            store.finish(1, StorageError("not written: an earlier batch failed"))
            await settle()
        with pytest.raises(IntakeUnavailableError):
            await second
        if staged is not None:
            with pytest.raises(IntakeUnavailableError):
                await staged
        assert len(rebuilds) == 1
        assert store.events[-2:] == ["rebuild", "resume"]
        assert intake.available
        # A waiter with nothing staged waits for nothing: answered, not failed with the old
        # batch (a read that awaits durable() right after the recovery).
        idle = intake.durable()
        await settle()
        assert idle.done()
        assert idle.exception() is None
        # It takes work again.
        after = stage(intake, 4)
        await settle()
        store.finish(len(store.handed) - 1)
        await settle()
        assert after.done()
        assert after.exception() is None
        assert ids(store.handed[-1][0]) == [4]
        await intake.close()

    asyncio.run(body())


def test_a_batch_whose_reply_was_lost_but_committed_is_answered_as_durable() -> None:
    async def body() -> None:
        store = ScriptedStore(depth=2)

        async def rebuild() -> None:
            pass

        intake = Intake(store, window_s=0, on_failure=rebuild)
        intake.start()
        first = stage(intake, 1)
        await settle()
        batch, _ = store.handed[0]
        store.durable_tokens.add(batch.token)  # it committed; the reply was lost
        store.finish(0, StorageError("connection lost during COMMIT"))
        await settle()
        await first  # no error: it is durable
        await intake.close()

    asyncio.run(body())


def test_a_reload_cancelled_mid_rebuild_still_rebuilds_and_the_intake_closes() -> None:
    """A platform that stops during a reload (an adoption's) cancels it: the rebuild runs to its
    end all the same, so the intake serves again and ``close`` does not wait forever."""

    async def body() -> None:
        store = ScriptedStore(depth=1)
        rebuilding = asyncio.Event()
        go_on = asyncio.Event()

        async def rebuild() -> None:
            rebuilding.set()
            await go_on.wait()

        intake = Intake(store, window_s=0, on_failure=rebuild)
        intake.start()
        reload = asyncio.create_task(intake.reload())
        await asyncio.wait_for(rebuilding.wait(), 1)
        reload.cancel()
        with pytest.raises(asyncio.CancelledError):
            await reload
        assert not intake.available
        go_on.set()
        await asyncio.wait_for(intake.close(), 2)
        assert intake.available

    asyncio.run(body())


def test_a_rebuild_that_keeps_failing_does_not_keep_a_stop_waiting() -> None:
    """The store stays down after a failed commit: the intake retries its rebuild every second
    until it is closed; then one more failure ends it, and ``close`` returns."""

    async def body() -> None:
        store = ScriptedStore(depth=1)
        tries = 0

        async def rebuild() -> None:
            nonlocal tries
            tries += 1
            raise StorageError("the store is down")

        intake = Intake(store, window_s=0, on_failure=rebuild)
        intake.start()
        staged = stage(intake, 1)
        await settle()
        store.finish(0, StorageError("connection lost"))
        with pytest.raises(IntakeUnavailableError):
            await staged
        await settle()
        assert tries == 1
        assert not intake.available
        await asyncio.wait_for(intake.close(), 3)
        assert tries == 2

    asyncio.run(body())


def test_a_reload_commits_what_is_staged_then_rebuilds_refusing_work_meanwhile() -> None:
    async def body() -> None:
        store = ScriptedStore(depth=1)
        rebuilt = asyncio.Event()
        go_on = asyncio.Event()

        async def rebuild() -> None:
            store.events.append("rebuild")
            rebuilt.set()
            await go_on.wait()

        intake = Intake(store, window_s=0, on_failure=rebuild)
        intake.start()
        staged = stage(intake, 1)
        reload = asyncio.create_task(intake.reload())
        await settle()
        # What was staged is written and answered first, and nothing is rebuilt before that.
        assert [ids(b) for b, _ in store.handed] == [[1]]
        assert "rebuild" not in store.events
        store.finish(0)
        await settle()
        assert staged.done()
        assert staged.exception() is None
        await asyncio.wait_for(rebuilt.wait(), 1)
        # While it rebuilds, work is refused (503), not queued for a core about to be replaced.
        assert not intake.available
        with pytest.raises(IntakeUnavailableError):
            stage(intake, 2)
        go_on.set()
        await reload
        assert store.events[-2:] == ["rebuild", "resume"]
        assert intake.available
        after = stage(intake, 3)
        await settle()
        store.finish(len(store.handed) - 1)
        await settle()
        assert after.exception() is None
        assert ids(store.handed[-1][0]) == [3]  # the staged row of the refused work is gone
        await intake.close()

    asyncio.run(body())
