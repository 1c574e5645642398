"""The ``store`` fixture: each test runs against a fresh SQLite file and a fresh PostgreSQL
database.

PostgreSQL comes from ``PYORDER_TEST_POSTGRES`` (a DSN; ``scripts/postgres.sh`` starts a
throwaway cluster and prints one). Without it the PostgreSQL cases are skipped, except when
``CI=true``: there a missing DSN fails, so CI never passes by skipping them.
"""

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.postgres import fresh_postgres_database

from .backends import Backend, PostgresBackend, SqliteBackend


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """A clean, empty database of one backend; ``store.run(body)`` opens a Store on it."""
    if request.param == "sqlite":
        yield SqliteBackend(tmp_path / "pyorder.sqlite3")
        return
    with fresh_postgres_database("pyorder_t") as dsn:
        yield PostgresBackend(dsn)
