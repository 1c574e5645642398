"""A thread running an event loop of its own (``PostgresStore``'s big commits).

The server's event loop parses requests and runs the order book between a commit's round
trips; a commit on that loop waits for each of those turns before it sends its next statement
or the next part of a COPY stream, and the database sits idle meanwhile. On a loop of its own
the commit goes on as soon as the database answers: the thread needs the GIL only for the
client library's own work, and the order book and the COPY rendering (``pyorder._core``)
release it.
"""

import asyncio
import contextlib
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class LoopThread:
    """An event loop (the policy's: uvloop in the server) run by a daemon thread named
    ``name``, from ``start`` to ``stop``."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError(f"{self.name} is already running")
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=self._serve, args=(loop,), name=self.name, daemon=True)
        self._loop, self._thread = loop, thread
        thread.start()

    @staticmethod
    def _serve(loop: asyncio.AbstractEventLoop) -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_forever()
        finally:
            loop.close()

    async def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the thread's loop and return (or raise) what it does. Cancelling
        the caller cancels ``coro`` and waits until it has ended (its cleanup included), so
        that what the caller guards, a lock say, is not released while ``coro`` still runs."""
        loop = self._loop
        if loop is None:
            coro.close()
            raise RuntimeError(f"{self.name} is not running")
        caller = asyncio.get_running_loop()
        ended: asyncio.Future[T] = caller.create_future()
        started: list[asyncio.Task[T]] = []

        def settle(task: "asyncio.Task[T]") -> None:  # on the caller's loop
            if ended.done():
                return
            if task.cancelled():
                ended.cancel()
            elif (error := task.exception()) is not None:
                ended.set_exception(error)
            else:
                ended.set_result(task.result())

        def start() -> None:  # on the thread's loop
            task = loop.create_task(coro)
            started.append(task)
            task.add_done_callback(lambda t: caller.call_soon_threadsafe(settle, t))

        loop.call_soon_threadsafe(start)
        try:
            return await asyncio.shield(ended)
        except asyncio.CancelledError:
            if not ended.done():  # the caller was cancelled: cancel coro, wait for its end
                loop.call_soon_threadsafe(lambda: started[0].cancel())  # after start: FIFO
                while not ended.done():
                    with contextlib.suppress(asyncio.CancelledError):
                        await asyncio.shield(ended)
            raise

    def call_soon(self, fn: Callable[[], object]) -> None:
        """Call ``fn`` on the thread's loop, after what was handed to it before (nothing when
        the thread is not running)."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(fn)

    def stop(self) -> None:
        """Stop the loop (what is still on it is dropped: ``run`` what must finish first) and
        wait for the thread; safe to call twice."""
        loop, thread = self._loop, self._thread
        self._loop = self._thread = None
        if loop is None or thread is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
