"""Throwaway PostgreSQL databases for the storage, end-to-end and crash tests.

PostgreSQL comes from ``PYORDER_TEST_POSTGRES`` (a DSN; ``scripts/postgres.sh`` starts a
throwaway cluster and prints one); each user gets its own database, created with asyncpg on that
cluster and dropped afterwards. Without the variable the PostgreSQL cases are skipped, except
when ``CI=true``: there a missing DSN fails, so CI never passes by skipping them.
"""

import asyncio
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

DSN_ENV = "PYORDER_TEST_POSTGRES"


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


async def _execute(dsn: str, sql: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@contextmanager
def fresh_postgres_database(prefix: str) -> Iterator[str]:
    """A new, empty database on the cluster of ``postgres_dsn()``, dropped (even while still
    connected to) on exit; yields its DSN."""
    dsn = postgres_dsn()
    name = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:10]}"
    asyncio.run(_execute(dsn, f'CREATE DATABASE "{name}"'))
    try:
        yield urlunsplit(urlsplit(dsn)._replace(path="/" + name))
    finally:
        asyncio.run(_execute(dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
