"""benchmarks/storage_throughput.py still runs (tiny sizes, a fresh process), so it never rots;
PostgreSQL rows only when a test cluster is configured."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.postgres import DSN_ENV

SCRIPT = Path(__file__).resolve().parent.parent.parent / "benchmarks" / "storage_throughput.py"


@pytest.mark.long
def test_storage_benchmark_runs_every_contender() -> None:
    args = ["--orders", "2000", "--batch", "500"]
    dsn = os.environ.get(DSN_ENV, "").strip()
    if dsn:
        args += ["--postgres", dsn]
    done = subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    names = [
        "raw sqlite3 executemany",
        "SqliteStore.commit (Python orders)",
        "SqliteStore.commit (placed rows)",
        "SqliteStore.commit (placed rows) + busy Python",
    ]
    if dsn:
        names += [
            "raw asyncpg COPY",
            "PostgresStore.commit (placed, binary COPY)",
            "PostgresStore.commit (placed, executemany)",
        ]
    rows = {line[:58].strip() for line in done.stdout.splitlines()}
    for name in names:
        assert name in rows, done.stdout
