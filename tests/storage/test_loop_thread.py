"""``LoopThread``: a coroutine run on the thread's own event loop, its result or error handed
back, and a cancelled caller that waits until the coroutine has ended (its cleanup included),
so that a lock the caller holds is not released while the coroutine still runs."""

import asyncio
import threading

import pytest

from pyorder.storage.loop_thread import LoopThread


def test_a_coroutine_runs_on_the_thread_and_its_result_or_error_comes_back() -> None:
    async def main() -> None:
        thread = LoopThread("test-loop")
        thread.start()
        try:

            async def where() -> int:
                await asyncio.sleep(0)
                return threading.get_ident()

            assert await thread.run(where()) != threading.get_ident()

            async def fails() -> None:
                raise ValueError("on the thread")

            with pytest.raises(ValueError, match="on the thread"):
                await thread.run(fails())
        finally:
            thread.stop()
        thread.stop()  # twice is fine
        never = asyncio.sleep(0)
        with pytest.raises(RuntimeError, match="not running"):
            await thread.run(never)

    asyncio.run(main())


@pytest.mark.parametrize("after_s", [0.0, 0.05])
def test_a_cancelled_caller_waits_for_the_coroutine_to_end(after_s: float) -> None:
    """Cancelled before the coroutine started (0 s) or while it waits (0.05 s): the caller's
    CancelledError comes only after the coroutine's cleanup has run, and a lock held around the
    call is free only then."""
    events: list[str] = []

    async def work() -> None:
        try:
            events.append("started")
            await asyncio.sleep(10)
        finally:
            await asyncio.sleep(0.1)  # a cleanup that takes a while (a ROLLBACK, say)
            events.append("cleaned up")

    async def main() -> None:
        thread = LoopThread("test-loop")
        thread.start()
        lock = asyncio.Lock()

        async def guarded() -> None:
            async with lock:
                await thread.run(work())

        try:
            task = asyncio.create_task(guarded())
            await asyncio.sleep(after_s)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert not lock.locked()
            if events:  # it had started: its cleanup ran before the caller saw the cancel
                assert events == ["started", "cleaned up"], events
        finally:
            thread.stop()

    asyncio.run(main())
    if after_s:
        assert events == ["started", "cleaned up"]
