"""Fixtures of the crash tests: a fresh database of each backend and real server processes.

PostgreSQL: see ``tests.crash.databases`` (``PYORDER_TEST_POSTGRES``; skipped without it,
failed without it when ``CI=true``); every test gets a database of its own.
"""

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.postgres import fresh_postgres_database
from tests.support.server import ServerProcess

from .harness import Backend, PostgresReader, SqliteReader


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """A fresh, empty database of one backend and a data directory for the server."""
    data_dir = tmp_path / "data"
    if request.param == "sqlite":
        yield Backend("sqlite", None, data_dir, SqliteReader(data_dir / "pyorder.sqlite3"))
        return
    with fresh_postgres_database("pyorder_crash") as dsn:
        yield Backend("postgres", dsn, data_dir, PostgresReader(dsn))


@pytest.fixture
def launch(backend: Backend) -> Iterator[Callable[..., ServerProcess]]:
    """Start a server on ``backend`` (extra CLI args allowed); every one is killed at the end."""
    started: list[ServerProcess] = []

    def start(*args: str) -> ServerProcess:
        server = ServerProcess(backend.data_dir, database=backend.database, args=args)
        started.append(server)
        return server.start()

    yield start
    for server in started:
        server.kill()
