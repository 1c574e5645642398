"""Background tasks: one repeated at an interval, stopping one."""

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable


async def cancelled(task: "asyncio.Task[None] | None") -> None:
    """Cancel ``task`` (if any) and wait until it has stopped."""
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def every(
    interval_s: float,
    ready: Callable[[], bool],
    step: Callable[[], Awaitable[None]],
    log: logging.Logger,
    failure: str,
) -> None:
    """Run ``step`` every ``interval_s`` while ``ready()``, forever; a failed step is logged
    (``failure``) and the next one tries again (the store may be away for a while)."""
    while True:
        await asyncio.sleep(interval_s)
        if not ready():
            continue
        try:
            await step()
        except Exception:
            log.exception(failure)


class Periodic:
    """``every`` as one named task, started once and stopped (the mirrors of a cluster node:
    catalogue, webhook endpoints, risk rules). ``interval_s`` is read when it starts."""

    def __init__(
        self,
        name: str,
        step: Callable[[], Awaitable[None]],
        ready: Callable[[], bool],
        log: logging.Logger,
        failure: str,
        interval_s: float,
    ) -> None:
        self.name = name
        self.interval_s = interval_s
        self._step, self._ready, self._log, self._failure = step, ready, log, failure
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(
                every(self.interval_s, self._ready, self._step, self._log, self._failure),
                name=self.name,
            )

    async def stop(self) -> None:
        task, self._task = self._task, None
        await cancelled(task)
