"""Running a sandbox application: in-process on loopback (tests, embedding) or as a process.

async with running(create_app(secret="whsec_x")) as url:   # e.g. http://127.0.0.1:43117
    ...
"""

import asyncio
import signal
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from aiohttp import web

SHUTDOWN_TIMEOUT_S = 5.0


@asynccontextmanager
async def running(
    app: web.Application, host: str = "127.0.0.1", port: int = 0
) -> AsyncIterator[str]:
    """Serve ``app`` on ``host:port`` (0: a free port) until the block ends; yields its URL."""
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT_S)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound = runner.addresses[0]
        yield f"http://{_host(host)}:{bound[1]}"
    finally:
        await runner.cleanup()


def serve(app: web.Application, host: str, port: int, banner: Callable[[str], str]) -> None:
    """Serve ``app`` on uvloop until SIGINT or SIGTERM; prints ``banner(url)`` once listening
    (the URL has the real port when ``port`` is 0)."""
    import uvloop

    uvloop.run(_serve(app, host, port, banner))


async def _serve(app: web.Application, host: str, port: int, banner: Callable[[str], str]) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with running(app, host, port) as url:
        print(banner(url), flush=True)
        await stop.wait()


def _host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
