"""Test handles on one database of each backend: open a Store on it, or query it raw."""

import asyncio
import os
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import asyncpg

from pyorder.storage.base import Store
from pyorder.storage.postgres import PostgresStore
from pyorder.storage.sqlite import SqliteStore

T = TypeVar("T")


class Backend:
    """One clean database. ``run`` opens a fresh Store on it inside ``asyncio.run``."""

    name: str
    location: str
    """The SQLite path or the PostgreSQL DSN."""

    def make(self) -> Store:
        raise NotImplementedError

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        """Run one statement outside the Store, committed; rows as tuples."""
        raise NotImplementedError

    def blob(self, data: bytes) -> str:
        """``data`` as an SQL literal of the backend's binary type, for ``query``."""
        raise NotImplementedError

    def run(self, body: Callable[[Store], Awaitable[T]]) -> T:
        async def main() -> T:
            store = self.make()
            await store.open()
            try:
                return await body(store)
            finally:
                await store.close()

        return asyncio.run(main())


class SqliteBackend(Backend):
    name = "sqlite"

    def __init__(self, path: Path) -> None:
        self.location = os.fspath(path)

    def make(self) -> Store:
        return SqliteStore(self.location)

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        conn = sqlite3.connect(self.location, isolation_level=None)
        try:
            return [tuple(r) for r in conn.execute(sql).fetchall()]
        finally:
            conn.close()

    def blob(self, data: bytes) -> str:
        return f"X'{data.hex()}'"


class PostgresBackend(Backend):
    name = "postgres"

    def __init__(self, dsn: str) -> None:
        self.location = dsn

    def make(self) -> Store:
        return PostgresStore(self.location, max_size=2)

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        return asyncio.run(_pg_fetch(self.location, sql))

    def blob(self, data: bytes) -> str:
        return f"'\\x{data.hex()}'::bytea"


async def _pg_fetch(dsn: str, sql: str) -> list[tuple[Any, ...]]:
    conn = await asyncpg.connect(dsn)
    try:
        return [tuple(r) for r in await conn.fetch(sql)]
    finally:
        await conn.close()
