"""The ``store`` fixture: each test runs against a fresh SQLite file and a fresh PostgreSQL
database.

PostgreSQL comes from ``PYORDER_TEST_POSTGRES`` (a DSN; ``scripts/postgres.sh`` starts a
throwaway cluster and prints one). Without it the PostgreSQL cases are skipped, except when
``CI=true``: there a missing DSN fails, so CI never passes by skipping them.
"""

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from .backends import Backend, PostgresBackend, SqliteBackend, postgres_database

DSN_ENV = "PYORDER_TEST_POSTGRES"


def postgres_dsn() -> str:
    dsn = os.environ.get(DSN_ENV, "").strip()
    if dsn:
        return dsn
    if os.environ.get("CI") == "true":
        pytest.fail(
            f"{DSN_ENV} is not set, and CI must run the PostgreSQL storage tests: start a "
            f'cluster with `export {DSN_ENV}="$(bash scripts/postgres.sh)"` before pytest',
            pytrace=False,
        )
    pytest.skip(f"PostgreSQL tests need {DSN_ENV} (see scripts/postgres.sh)")


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """A clean, empty database of one backend; ``store.run(body)`` opens a Store on it."""
    if request.param == "sqlite":
        yield SqliteBackend(tmp_path / "pyorder.sqlite3")
        return
    with postgres_database(postgres_dsn()) as dsn:
        yield PostgresBackend(dsn)
