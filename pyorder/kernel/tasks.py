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
