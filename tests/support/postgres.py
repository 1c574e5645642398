"""Throwaway PostgreSQL databases for the storage, end-to-end and crash tests.

PostgreSQL comes from ``PYORDER_TEST_POSTGRES`` (a DSN; ``scripts/postgres.sh`` starts a
throwaway cluster and prints one); each user gets its own database, created with asyncpg on that
cluster and dropped afterwards. Without the variable the PostgreSQL cases are skipped, except
when ``CI=true``: there a missing DSN fails, so CI never passes by skipping them.

The creating and dropping happen off the test's path (``_Databases``): the next database is made
while a test runs and only renamed when a test asks for it, and a used one is dropped while the
next test runs. Each took a few tenths of a second (a ``CREATE DATABASE`` copies and syncs the
template, a ``DROP`` checkpoints), some 150 times a run.
"""

import asyncio
import atexit
import contextlib
import os
import threading
import uuid
from collections.abc import Coroutine, Iterator
from concurrent.futures import Future
from concurrent.futures import wait as wait_all
from contextlib import contextmanager
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

DSN_ENV = "PYORDER_TEST_POSTGRES"
T = TypeVar("T")


def postgres_dsn() -> str:
    """The cluster's DSN; skips the test without one (fails it when ``CI=true``)."""
    dsn = os.environ.get(DSN_ENV, "").strip()
    if dsn:
        return dsn
    if os.environ.get("CI") == "true":
        pytest.fail(
            f"{DSN_ENV} is not set, and CI must run the PostgreSQL cases: start a cluster"
            f' with `export {DSN_ENV}="$(bash scripts/postgres.sh)"` before pytest',
            pytrace=False,
        )
    pytest.skip(f"PostgreSQL cases need {DSN_ENV} (see scripts/postgres.sh)")


class _Session:
    """One connection to the cluster, used by one statement at a time."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.conn: asyncpg.Connection | None = None
        self.lock = asyncio.Lock()

    async def execute(self, sql: str) -> None:
        async with self.lock:
            if self.conn is None or self.conn.is_closed():
                self.conn = await asyncpg.connect(self.dsn)
            await self.conn.execute(sql)

    async def close(self) -> None:
        async with self.lock:
            if self.conn is not None:
                await self.conn.close()


class _Databases:
    """Fresh databases on one cluster, made and dropped by a thread of their own.

    One spare database is always being made (from ``template1``, like any ``CREATE
    DATABASE``); ``take`` renames it to the name asked for, and starts the next. ``drop``
    returns at once; the drop runs on a second connection, so a rename never waits behind it.
    At exit the spare is dropped and every drop is waited for.
    """

    def __init__(self, dsn: str) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="pyorder-test-databases", daemon=True
        )
        self._thread.start()
        self._maker = _Session(dsn)
        self._dropper = _Session(dsn)
        self._spare: Future[str] | None = None
        self._drops: list[Future[None]] = []
        atexit.register(self.close)

    def _submit(self, coro: Coroutine[Any, Any, T]) -> Future[T]:
        return asyncio.run_coroutine_threadsafe(coro, self._loop)

    async def _create(self) -> str:
        name = f"pyorder_spare_{os.getpid()}_{uuid.uuid4().hex[:10]}"
        await self._maker.execute(f'CREATE DATABASE "{name}"')
        return name

    def take(self, name: str) -> None:
        """Make database ``name`` (new and empty) now, from the spare."""
        spare, self._spare = self._spare or self._submit(self._create()), None
        try:
            self._submit(
                self._maker.execute(f'ALTER DATABASE "{spare.result()}" RENAME TO "{name}"')
            ).result()
        finally:
            self._spare = self._submit(self._create())

    def drop(self, name: str) -> None:
        """Drop database ``name`` (even while still connected to) in the background; raises
        the error of an earlier drop that failed."""
        for done in [d for d in self._drops if d.done()]:
            self._drops.remove(done)
            done.result()
        self._drops.append(
            self._submit(self._dropper.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        )

    def close(self) -> None:
        """Drop the spare, wait for every drop, and end the thread."""
        if self._spare is not None:
            with contextlib.suppress(Exception):  # a spare never made leaves nothing to drop
                self.drop(self._spare.result(timeout=60))
            self._spare = None
        wait_all(self._drops, timeout=60)
        for session in (self._maker, self._dropper):
            self._submit(session.close()).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)


_clusters: dict[str, _Databases] = {}


@contextmanager
def fresh_postgres_database(prefix: str) -> Iterator[str]:
    """A new, empty database on the cluster of ``postgres_dsn()``, dropped (even while still
    connected to) on exit; yields its DSN."""
    dsn = postgres_dsn()
    databases = _clusters.get(dsn)
    if databases is None:
        databases = _clusters[dsn] = _Databases(dsn)
    name = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:10]}"
    databases.take(name)
    try:
        yield urlunsplit(urlsplit(dsn)._replace(path="/" + name))
    finally:
        databases.drop(name)
