"""Background tasks: stopping one."""

import asyncio
import contextlib


async def cancelled(task: "asyncio.Task[None] | None") -> None:
    """Cancel ``task`` (if any) and wait until it has stopped."""
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
