"""The sandbox tests are ``async def``: this runs each in a fresh event loop (no plugin needed),
with a deadline so a hung server fails the test instead of the run."""

import asyncio
import inspect

import pytest

TEST_DEADLINE_S = 20.0


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    test = pyfuncitem.obj
    if not inspect.iscoroutinefunction(test):
        return None
    names = inspect.signature(test).parameters
    kwargs = {name: value for name, value in pyfuncitem.funcargs.items() if name in names}

    async def run() -> None:
        async with asyncio.timeout(TEST_DEADLINE_S):
            await test(**kwargs)

    asyncio.run(run())
    return True
