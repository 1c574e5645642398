"""A thread running an event loop of its own (``PostgresStore``'s big commits).

The server's event loop parses requests and runs the order book between a commit's round
trips; a commit on that loop waits for each of those turns before it sends its next statement
or the next part of a COPY stream, and the database sits idle meanwhile. On a loop of its own
the commit goes on as soon as the database answers: the thread needs the GIL only for the
client library's own work, and the order book and the COPY rendering (``pyorder._core``)
release it.
"""

import asyncio
import threading
from collections.abc import Coroutine
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
        the caller cancels ``coro`` on its loop (it finishes its cleanup there)."""
        if self._loop is None:
            coro.close()
            raise RuntimeError(f"{self.name} is not running")
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self._loop))

    def stop(self) -> None:
        """Stop the loop (what is still on it is dropped: ``run`` what must finish first) and
        wait for the thread; safe to call twice."""
        loop, thread = self._loop, self._thread
        self._loop = self._thread = None
        if loop is None or thread is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
