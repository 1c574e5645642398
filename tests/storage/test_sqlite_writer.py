"""The Rust SQLite writer (``pyorder._core.SqliteWriter``) under SqliteStore: one SQLite library
in the process, locks seen across it and Python's ``sqlite3``, the GIL released during a
commit, errors that roll back and say why."""

import asyncio
import os
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from pyorder._core import (
    CommitQueue,
    RowCountError,
    SqliteWriteError,
    SqliteWriter,
    sqlite_library,
)
from pyorder.model import WriteBatch
from pyorder.storage.base import StorageError
from pyorder.storage.sqlite import SqliteStore

from .records import catalog, order, placed

SQLITE_BUSY = 5


def migrated(path: Path) -> str:
    """A database file with the store's schema and catalogue (SKU 0 in warehouses 0 and 1)."""

    async def setup() -> None:
        store = SqliteStore(path)
        await store.open()
        try:
            await store.commit(catalog())
        finally:
            await store.close()

    asyncio.run(setup())
    return os.fspath(path)


def count(path: str, sql: str) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute(sql).fetchone()[0])
    finally:
        conn.close()


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs /proc (Linux)")
def test_one_sqlite_library_in_the_process(tmp_path: Path) -> None:
    """The writer calls the libsqlite3 that Python's sqlite3 loaded, not a copy of its own:
    two copies keep separate POSIX lock bookkeeping, which can corrupt the database."""
    sqlite3.connect(":memory:").close()
    writer = SqliteWriter(tmp_path / "x.sqlite3")
    writer.close()
    mapped = {
        os.path.realpath(line.split(maxsplit=5)[5].strip())
        for line in Path("/proc/self/maps").read_text().splitlines()
        if len(line.split(maxsplit=5)) == 6 and "libsqlite3" in os.path.basename(line)
    }
    assert len(mapped) == 1, mapped
    library = sqlite_library()
    assert library is not None
    assert os.path.realpath(library) in mapped


def test_locks_are_shared_with_pythons_sqlite3(tmp_path: Path) -> None:
    """Within one process, a write lock taken through one library is seen by the other (with
    two copies of SQLite both would 'hold' it)."""
    path = migrated(tmp_path / "db.sqlite3")
    py = sqlite3.connect(path, isolation_level=None, timeout=0.05)
    writer = SqliteWriter(path, busy_timeout_ms=50)
    try:
        py.execute("BEGIN IMMEDIATE")
        with pytest.raises(SqliteWriteError) as err:
            writer.commit([], placed(order(1)), [])
        assert err.value.sqlite_errorcode is not None
        assert err.value.sqlite_errorcode & 0xFF == SQLITE_BUSY
        py.execute("ROLLBACK")

        writer.execute("BEGIN IMMEDIATE")
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            py.execute("BEGIN IMMEDIATE")
        writer.rollback()
        writer.commit([], placed(order(1)), [])
    finally:
        py.close()
        writer.close()
    assert count(path, "SELECT COUNT(*) FROM orders") == 1


def test_commit_releases_the_gil_for_the_transaction(tmp_path: Path) -> None:
    """Another Python thread keeps running while the writer inserts and fsyncs; had it held the
    GIL, that thread would stall for the whole commit."""
    path = migrated(tmp_path / "db.sqlite3")
    rows = placed(*(order(i) for i in range(1, 40_001)))
    writer = SqliteWriter(path)
    done = threading.Event()
    span: list[float] = []

    def commit() -> None:
        try:
            t0 = time.perf_counter()
            writer.commit([], rows, [])
            span.extend((t0, time.perf_counter()))
        finally:
            done.set()

    thread = threading.Thread(target=commit)
    ticks, max_gap = 0, 0.0
    last = time.perf_counter()
    thread.start()
    while not done.is_set():
        now = time.perf_counter()
        max_gap, last, ticks = max(max_gap, now - last), now, ticks + 1
    thread.join()
    writer.close()
    elapsed = span[1] - span[0]
    assert count(path, "SELECT COUNT(*) FROM order_lines") == 40_000
    assert ticks > 100, (ticks, elapsed)
    # Holding the GIL, the commit would be one gap as long as itself.
    assert max_gap < elapsed / 2, (max_gap, elapsed)


def test_the_wal_starts_over_under_steady_commits(tmp_path: Path) -> None:
    """Commits one after another, as under load, never let a passive checkpoint catch up, so
    SQLite alone would append every commit to an ever longer WAL; the commit queue has it
    start over once it holds ``wal_restart_frames`` pages, and nothing committed is lost."""
    path = migrated(tmp_path / "db.sqlite3")
    wal = Path(path + "-wal")
    writer = SqliteWriter(path)
    queue = CommitQueue(writer, path, checkpoint_interval_ms=2, wal_restart_frames=16)
    commits, per_commit = 400, 40
    sql = "INSERT INTO intake_commits (token, committed_ms) VALUES (?, ?)"
    largest = 0
    restarts: set[bytes] = set()
    try:
        for c in range(commits):
            rows = [(c * per_commit + i + 1, 10**12 + i) for i in range(per_commit)]
            queue.submit([(sql, rows, -1)], None, [])
            while not (done := queue.take_done()):
                time.sleep(0.0002)
            assert done[0][2] is None, done
            largest = max(largest, wal.stat().st_size)
            restarts.add(wal.read_bytes()[12:16])  # the WAL header's checkpoint sequence
    finally:
        queue.close()
        writer.close()
    assert count(path, "SELECT COUNT(*) FROM intake_commits") == commits * per_commit
    # SQLite counts in the WAL's header each time the WAL starts over.
    assert len(restarts) > 1, restarts
    # Each commit appends at least two 4 KiB pages (the table and its index): without starting
    # over the WAL passes 3.2 MB (4.4 MB measured).
    assert largest < commits * 2 * 4096, largest


def test_errors_roll_back_and_say_why(tmp_path: Path) -> None:
    path = migrated(tmp_path / "db.sqlite3")
    writer = SqliteWriter(path)
    update = "UPDATE stock SET reserved = reserved + ? WHERE sku = ? AND warehouse = ?"
    before = [(update, [(1, 0, 0), (1, 0, 9)], 2)]  # (0, 9) has no stock row
    with pytest.raises(RowCountError) as err:
        writer.commit(before, placed(order(1)), [])
    assert (err.value.group, err.value.sql) == (0, update)
    assert (err.value.expected, err.value.actual) == (2, 1)
    assert err.value.sqlite_errorcode is None
    assert not writer.in_transaction

    # Parameters that SQLite cannot bind are refused before the transaction begins.
    with pytest.raises(TypeError, match=r"before\[0\]"):
        writer.commit([(update, [(1, 0, object())], -1)], placed(order(2)), [])  # type: ignore[list-item]
    with pytest.raises(OverflowError):
        writer.commit([(update, [(2**63, 0, 0)], -1)], None, [])
    with pytest.raises(TypeError, match="tuple or a list"):
        writer.commit([(update, ["abc"], -1)], None, [])  # type: ignore[list-item]
    assert not writer.in_transaction

    # A constraint error names the order; the batch's groups roll back with it.
    writer.commit([], placed(order(3)), [])
    with pytest.raises(SqliteWriteError, match="order 3") as failed:
        writer.commit([(update, [(5, 0, 0)], 1)], placed(order(4), order(3)), [])
    assert failed.value.sqlite_errorcode == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY
    assert count(path, "SELECT COUNT(*) FROM orders") == 1
    assert count(path, "SELECT reserved FROM stock WHERE sku = 0 AND warehouse = 0") == 0

    # Counts come back per group, before then after.
    token = ("INSERT INTO intake_commits (token, committed_ms) VALUES (?, ?)", [(1, 0)], 1)
    assert writer.commit([(update, [(1, 0, 0), (1, 0, 1)], 2)], None, [token]) == [2, 1]

    writer.close()
    assert writer.closed
    writer.close()  # twice is fine
    with pytest.raises(SqliteWriteError, match="closed"):
        writer.commit([], None, [])


def test_store_commit_keeps_the_writer_usable_after_python_errors(tmp_path: Path) -> None:
    """A batch whose Python rows cannot be converted fails as StorageError, nothing written."""

    async def body() -> None:
        store = SqliteStore(tmp_path / "db.sqlite3")
        await store.open()
        try:
            await store.commit(catalog())
            bad = WriteBatch(placed=placed(order(1)))
            bad.add_delta(0, 0, 0, 2**63, 0)  # out of SQLite's integer range
            with pytest.raises(StorageError):
                await store.commit(bad)
            assert await store.get_order(1) is None
            await store.commit(WriteBatch(placed=placed(order(1))))
            assert await store.get_order(1) == order(1)
        finally:
            await store.close()

    asyncio.run(body())


_MEMORY_USED = """
import ctypes, sys
{imports}
from pyorder._core import SQLITE_TUNED, sqlite_library
conn = sqlite3.connect(":memory:")
conn.execute("CREATE TABLE t (x)")
conn.executemany("INSERT INTO t VALUES (?)", [(i,) for i in range(1000)])
lib = ctypes.CDLL(sqlite_library())
lib.sqlite3_memory_used.restype = ctypes.c_int64
print(SQLITE_TUNED, lib.sqlite3_memory_used())
"""


@pytest.mark.parametrize(
    ("imports", "tuned"),
    [("import pyorder.storage.sqlite\nimport sqlite3", True), ("import sqlite3", False)],
)
def test_importing_pyorder_turns_sqlites_memory_statistics_off(imports: str, tuned: bool) -> None:
    """Imported before anything initialises SQLite, the core turns its memory statistics off
    for the process (no global mutex per allocation): SQLite then reports 0 bytes in use.
    After ``import sqlite3`` it is too late, and says so."""
    script = _MEMORY_USED.format(imports=imports)
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    ).stdout.split()
    assert out[0] == str(tuned)
    assert (int(out[1]) == 0) is tuned, out
