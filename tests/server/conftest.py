"""End-to-end fixtures (the helpers they use are in ``e2e_lib``).

Every test runs against both backends through the module-scoped ``backend`` fixture:
``sqlite`` (a data directory under tmp_path) and ``postgres`` (a fresh database per server on
the cluster named by ``PYORDER_TEST_POSTGRES``; ``scripts/postgres.sh`` starts one and prints its
DSN). Without that variable the PostgreSQL cases are skipped, except when ``CI=true``, where
they fail: CI must never pass by skipping them. A test of the HTTP layer alone, whose requests
never reach the store, is marked ``e2e_lib.HTTP_ONLY`` and runs on SQLite only.

``server`` is one server per test module and backend, for tests that do not interfere (each
uses SKUs and subjects of its own); ``launch`` starts servers of a test's own (other options,
restarts); ``world`` is a small catalogue on ``server``.
"""

from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from tests.server.e2e_lib import (
    BACKENDS,
    Launch,
    Server,
    World,
    build_world,
    running_server,
)
from tests.support.postgres import postgres_dsn

# --- fixtures ----------------------------------------------------------------------------------


@pytest.fixture(scope="module", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """The storage backend of every server in the test: "sqlite" or "postgres"."""
    name = str(request.param)
    if name == "postgres":
        postgres_dsn()
    return name


@pytest.fixture(scope="module")
def server(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server per module and backend, with default options."""
    with running_server(backend, tmp_path_factory.mktemp(f"server-{backend}")) as srv:
        yield srv


@pytest.fixture
def launch(backend: str, tmp_path: Path) -> Iterator[Launch]:
    """``launch(*args)`` starts a server of this test's own (fresh database), stopped after."""
    with ExitStack() as stack:
        count = 0

        def start(*args: str) -> Server:
            nonlocal count
            count += 1
            return stack.enter_context(running_server(backend, tmp_path / f"s{count}", args))

        yield start


@pytest.fixture(scope="module")
def world(server: Server) -> World:
    return build_world(server)
