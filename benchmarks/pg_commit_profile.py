"""Where one PostgreSQL group commit's time goes: per statement, one commit at a time.

Commits ``--commits`` batches of ``--size`` one-line orders as the Rust intake stages them
(``WriteBatch.placed``, their reserved units as the batch's stock delta, spread over 16 SKUs),
each with a commit token and under a node lease's fence, as the server's single-order path does
(groups of ~16 orders per commit under 32 clients). Commits run back to back on one connection,
so each one's time is its latency. The connection ``PostgresStore.commit`` gets records
the wall-clock time of every statement it runs; the rest of ``commit`` (BEGIN and COMMIT when
it opens a transaction, acquiring the connection) is the difference.

    python benchmarks/pg_commit_profile.py --database "$PYORDER_TEST_POSTGRES"
    python benchmarks/pg_commit_profile.py --database "$PYORDER_TEST_POSTGRES" --no-sync

``--no-sync`` sets ``synchronous_commit = off`` on the session: a throwaway measurement of what
the COMMIT's WAL flush costs, never a setting for the store. ``--json`` prints the medians as one
JSON object (for A/B scripts running two builds in turn). Times are medians in ms per commit.
"""

import argparse
import asyncio
import contextlib
import json
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, cast

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.storage_throughput import with_pg_database
from pyorder._core import OrderRows
from pyorder.catalog.model import Sku, StockRow, Warehouse
from pyorder.model import WriteBatch
from pyorder.storage import codec
from pyorder.storage.postgres import PostgresStore

SKUS = 16
T0_MS = 1_800_000_000_000


_TIMED = frozenset(
    ("execute", "executemany", "fetch", "fetchrow", "copy_to_table", "copy_records_to_table")
)


class Timed:
    """An asyncpg connection whose statements add their wall-clock time to ``spent``, under the
    call's name and the first words of its SQL (or its table); the rest passes through."""

    def __init__(self, conn: Any, spent: dict[str, float]) -> None:
        self._conn = conn
        self._spent = spent

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._conn, name)
        if name not in _TIMED:
            return attr

        async def timed(*args: Any, **kwargs: Any) -> Any:
            what = args[0] if args and isinstance(args[0], str) else ""
            label = f"{name} {' '.join(what.split()[:3])[:40]}"
            t0 = time.perf_counter()
            try:
                return await cast(Callable[..., Awaitable[Any]], attr)(*args, **kwargs)
            finally:
                self._spent[label] += time.perf_counter() - t0

        return timed


class TimedPool:
    """The store's pool, handing out ``Timed`` connections (``synchronous_commit`` off on each
    when ``sync`` is false: a setting the pool resets on release)."""

    def __init__(self, pool: asyncpg.Pool, spent: dict[str, float], sync: bool) -> None:
        self._pool, self.spent, self._sync = pool, spent, sync

    @contextlib.asynccontextmanager
    async def acquire(self) -> AsyncIterator[Timed]:
        async with self._pool.acquire() as conn:
            if not self._sync:
                await conn.execute("SET synchronous_commit = off")
            yield Timed(conn, self.spent)


def catalogue() -> WriteBatch:
    return WriteBatch(
        warehouses=[Warehouse(0, "w", "admin")],
        regions={"east": [0]},
        skus=[Sku(s, "m-1", f"item {s}", 1999, "CNY", limit_per_buyer=0) for s in range(SKUS)],
        stock_rows=[StockRow(s, 0, on_hand=10**12, reserved=0, sold=0) for s in range(SKUS)],
    )


def batch(first_id: int, size: int, token: int) -> WriteBatch:
    """``size`` one-line orders from ``first_id`` on, SKUs in turn, as placed rows."""
    rows = OrderRows()
    address = codec.encode_address({"name": "Li Lei", "city": "Beijing", "zip": "100000"})
    b = WriteBatch()
    for i in range(first_id, first_id + size):
        sku = i % SKUS
        rows.push(i, f"buyer-{i}", "CNY", 1999, "east", address, i, T0_MS, T0_MS + 900_000,
                  [(sku, 0, 1, 1999, "m-1")])  # fmt: skip
        b.add_delta(sku, 0, 0, 1, 0)
    b.placed = rows
    b.token = token
    return b


async def profile(
    dsn: str, size: int, commits: int, sync: bool, copy_threshold: int | None
) -> dict[str, float]:
    store = PostgresStore(dsn, min_size=1, max_size=1)
    if copy_threshold is not None:
        store.copy_threshold = copy_threshold
    await store.open()
    claim = await store.claim_node(node=None, cluster=False)
    store.fence = (claim.node, claim.epoch) if claim.epoch else None
    per_commit: dict[str, list[float]] = defaultdict(list)
    try:
        await store.commit(catalogue())
        timed = TimedPool(store._p(), defaultdict(float), sync)
        store._p = lambda: timed  # type: ignore[assignment,method-assign,return-value]
        # Commits run on connections of their own: the event loop's, and the COPY thread's.
        for writer in (store._writer, store._copy_writer):

            async def timed_writer(get: Any = writer.get) -> Any:
                conn = await get()
                if not sync:
                    await conn.execute("SET synchronous_commit = off")
                return Timed(conn, timed.spent)

            writer.get = timed_writer  # type: ignore[method-assign]
        for n in range(commits):
            timed.spent = defaultdict(float)
            work = batch(1 + n * size, size, n + 1)
            t0 = time.perf_counter()
            await store.commit(work)
            total = time.perf_counter() - t0
            per_commit["(commit total)"].append(total)
            per_commit["(BEGIN, COMMIT, the rest)"].append(total - sum(timed.spent.values()))
            for k, v in timed.spent.items():
                per_commit[k].append(v)
    finally:
        await claim.release()
        await store.close()
    return {k: statistics.median(v) * 1000 for k, v in per_commit.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--database", required=True, help="a PostgreSQL URL (a database is made)")
    parser.add_argument("--size", type=int, default=16, help="orders per commit")
    parser.add_argument("--commits", type=int, default=400)
    parser.add_argument("--no-sync", action="store_true", help="synchronous_commit = off")
    parser.add_argument(
        "--copy-threshold", type=int, help="orders from which COPY is used (the store's default)"
    )
    parser.add_argument("--json", action="store_true", help="one JSON object of the medians")
    args = parser.parse_args()
    medians = asyncio.run(
        with_pg_database(
            args.database,
            lambda db: profile(db, args.size, args.commits, not args.no_sync, args.copy_threshold),
        )
    )
    if args.json:
        print(json.dumps(medians))
        return
    for label, ms in sorted(medians.items(), key=lambda kv: -kv[1]):
        print(f"{ms:8.3f} ms  {label}")


if __name__ == "__main__":
    main()
