"""An SQLite database is served by one store at a time (``pyorder.storage.lockfile``): a second
store, in this process or another, is refused with a message naming the holder; the lock goes
with ``close`` and with the holder's death (SIGKILL), and a closed store opens again."""

import asyncio
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from pyorder.model import WriteBatch
from pyorder.storage.base import StorageError, StoreInUseError
from pyorder.storage.sqlite import SqliteStore

from .records import catalog, order

ROOT = Path(__file__).resolve().parents[2]

HOLDER = """
import asyncio, sys
from pyorder.storage.sqlite import SqliteStore

async def main() -> None:
    store = SqliteStore(sys.argv[1])
    await store.open()
    print("open", flush=True)
    await asyncio.Event().wait()  # until killed

asyncio.run(main())
"""
"""A child process that opens a store on the file named by its argument and holds it."""


def test_a_second_store_in_the_process_is_refused_until_the_first_closes(tmp_path: Path) -> None:
    path = tmp_path / "pyorder.sqlite3"

    async def body() -> None:
        first, second = SqliteStore(path), SqliteStore(path)
        await first.open()
        try:
            with pytest.raises(StoreInUseError) as refused:
                await second.open()
            assert isinstance(refused.value, StorageError)
            message = str(refused.value)
            assert "another store in this process" in message
            assert f"pid {os.getpid()} host {socket.gethostname()}" in message
            assert "single-process" in message
            assert "PostgreSQL" in message
            await second.close()  # a refused store closes like any other
            await first.commit(catalog())  # the holder is unaffected
        finally:
            await first.close()
        await second.open()
        try:
            assert len(await second.get_stock(0)) == 2  # it serves what the first wrote
        finally:
            await second.close()

    asyncio.run(body())


def test_a_closed_store_opens_again(tmp_path: Path) -> None:
    """Tests and tools reopen stores: the lock of a closed store is not held against itself."""
    store = SqliteStore(tmp_path / "pyorder.sqlite3")

    async def body() -> None:
        for i in range(3):
            await store.open()
            try:
                await store.commit(catalog() if i == 0 else WriteBatch(orders=[order(i)]))
            finally:
                await store.close()
        await store.close()  # twice is safe
        await store.open()
        try:
            assert (await store.get_order(2)) is not None
        finally:
            await store.close()

    asyncio.run(body())
    assert (tmp_path / "pyorder.sqlite3.lock").read_text() == ""  # no holder


def test_another_process_holds_the_database_until_it_is_killed(tmp_path: Path) -> None:
    path = tmp_path / "pyorder.sqlite3"
    with subprocess.Popen(
        [sys.executable, "-c", HOLDER, os.fspath(path)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    ) as child:
        try:
            assert child.stdout is not None
            assert child.stdout.readline().strip() == "open"
            with pytest.raises(StoreInUseError) as refused:
                asyncio.run(SqliteStore(path).open())
            message = str(refused.value)
            assert "another process" in message
            assert f"pid {child.pid} host {socket.gethostname()}" in message
            assert "single-process" in message
            assert "PostgreSQL" in message
        finally:
            child.send_signal(signal.SIGKILL)  # no chance to close: the kernel drops the lock
            child.wait(timeout=30)

    async def reopen() -> int:
        store = SqliteStore(path)
        await store.open()
        try:
            return await store.schema_version()
        finally:
            await store.close()

    assert asyncio.run(reopen()) > 0
