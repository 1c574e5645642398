"""Durable write throughput of the stores: orders committed per second, in batches.

Each order has one line; every batch also carries one stock delta (the hot SKU), as a group
commit of a flash sale does. Rows go to a fresh database each run; every commit is durable
(SQLite WAL with synchronous=FULL; PostgreSQL with synchronous_commit on). The stores are
measured on both write paths: orders built in Python (``WriteBatch.orders``), and orders as the
Rust intake stages them (``WriteBatch.placed``, a ``pyorder._core.OrderRows`` built with
``push()`` before the clock starts; their reserved units are the batch's delta): SQLite through
the Rust writer with the GIL released, PostgreSQL by binary COPY of bytes built in Rust (or
executemany). Next to the stores, baselines in the same run write the same rows with no store
in between, from tuples built before the clock starts:

- ``raw sqlite3``: one connection, ``BEGIN IMMEDIATE``, ``executemany`` per table, ``COMMIT``.
- ``raw asyncpg COPY``: one connection, a transaction with two ``copy_records_to_table``.

Rows marked ``+ busy Python`` run the SQLite store beside a thread that executes Python
nonstop, as the server's busy event loop does beside the store's writer thread: it wants the
GIL all the time, so a writer that needs the GIL per order slows down, and ``py stalled`` (the
time that thread stood still, in ms per 1,000 orders: pauses over 0.1 ms between two of its
loops) says how long the store kept Python from running. (PostgreSQL's store runs on the
event loop itself, so it has no such row: its Python cost is the ``cpu s`` column.)

    python benchmarks/storage_throughput.py --orders 200000
    python benchmarks/storage_throughput.py --orders 100000 --postgres "$PYORDER_TEST_POSTGRES"

Prints one row per contender: orders, seconds (wall clock), this process's CPU seconds, orders/s,
and the ratio to the baseline of the same backend. On a shared machine the wall-clock figures
move with the neighbours' load; run twice and compare.
"""

import argparse
import asyncio
import contextlib
import os
import sqlite3
import tempfile
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from pyorder._core import OrderRows
from pyorder.catalog.model import Sku, StockRow, Warehouse
from pyorder.model import WriteBatch
from pyorder.orders.model import Order, OrderLine, OrderStatus
from pyorder.storage import codec
from pyorder.storage.base import Store
from pyorder.storage.postgres import PostgresStore
from pyorder.storage.sqlite import SqliteStore

MAX_ORDERS = 2_000_000
T = TypeVar("T")
T0_MS = 1_800_000_000_000


@dataclass(frozen=True, slots=True)
class Result:
    name: str
    orders: int
    seconds: float
    cpu_seconds: float
    """CPU time of this process (not the PostgreSQL server's) over the same span."""
    baseline: str | None = None
    python_stalled: float | None = None
    """With a busy Python thread beside: seconds it stood still (waiting for the GIL)."""

    @property
    def rate(self) -> float:
        return self.orders / self.seconds


def make_orders(n: int) -> list[Order]:
    line = (OrderLine(sku=0, warehouse=0, quantity=1, unit_price=1999, merchant="m-1"),)
    address = {"name": "Li Lei", "city": "Beijing", "line1": "1 Chang'an Ave", "zip": "100000"}
    return [
        Order(
            id=i,
            buyer=f"buyer-{i % 50_000}",
            status=OrderStatus.PENDING_PAYMENT,
            currency="CNY",
            total=1999,
            region="north",
            address=address,
            reservation=i,
            created_ms=T0_MS + i // 100,
            deadline_ms=T0_MS + 900_000 + i // 100,
            updated_ms=T0_MS + i // 100,
            lines=line,
        )
        for i in range(1, n + 1)
    ]


def catalog() -> WriteBatch:
    return WriteBatch(
        warehouses=[Warehouse(0, "north-1", "admin")],
        regions={"north": [0]},
        skus=[Sku(0, "m-1", "flash-sale item", 1999, "CNY", limit_per_buyer=0)],
        stock_rows=[StockRow(0, 0, on_hand=10**12, reserved=0, sold=0)],
    )


def batches(orders: list[Order], size: int) -> list[WriteBatch]:
    out = []
    for start in range(0, len(orders), size):
        chunk = orders[start : start + size]
        b = WriteBatch(orders=chunk)
        b.add_delta(0, 0, 0, len(chunk), 0)
        out.append(b)
    return out


def placed_rows(orders: list[Order], size: int) -> list[OrderRows]:
    """The orders as the Rust intake stages them, one ``OrderRows`` per batch of ``size``."""
    out = []
    for start in range(0, len(orders), size):
        rows = OrderRows()
        for o in orders[start : start + size]:
            rows.push(
                o.id,
                o.buyer,
                o.currency,
                o.total,
                o.region,
                codec.encode_address(o.address),
                o.reservation,
                o.created_ms,
                o.deadline_ms,
                [(ln.sku, ln.warehouse, ln.quantity, ln.unit_price, ln.merchant) for ln in o.lines],
            )
        out.append(rows)
    return out


class BusyPython:
    """A thread running Python nonstop (as a busy event loop does); ``stalled`` adds up its
    pauses longer than ``STALL_S`` between two loops: time it waited for the GIL (or, rarely,
    for a CPU)."""

    STALL_S = 0.0001

    def __init__(self) -> None:
        self.stalled = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        stalled, stopped, clock, limit = 0.0, self._stop.is_set, time.perf_counter, self.STALL_S
        last = clock()
        while not stopped():
            now = clock()
            if now - last > limit:
                stalled += now - last
            last = now
        self.stalled = stalled

    def __enter__(self) -> "BusyPython":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


async def run_store(
    name: str,
    store: Store,
    orders: list[Order],
    work: list[WriteBatch],
    base: str,
    beside_busy_python: bool = False,
) -> Result:
    """Commit ``work`` (batches built before the clock starts) to a fresh ``store``, beside a
    ``BusyPython`` thread if asked."""
    await store.open()
    try:
        await store.commit(catalog())
        busy = BusyPython() if beside_busy_python else None
        with busy or contextlib.nullcontext():
            t0, c0 = time.perf_counter(), time.process_time()
            for b in work:
                await store.commit(b)
            elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
        snap = await store.load()
        assert snap.max_order_id == len(orders), snap.max_order_id
        stock = await store.get_stock(0)
        assert stock[0].reserved == len(orders), stock
    finally:
        await store.close()
    return Result(name, len(orders), elapsed, cpu, base, busy.stalled if busy else None)


async def prepare_schema(store: Store) -> None:
    """Migrate a fresh database (the baselines write into the same schema as the stores)."""
    await store.open()
    await store.close()


def raw_sqlite(path: str, orders: list[Order], size: int) -> Result:
    """The floor: prebuilt tuples, executemany, one durable transaction per batch."""
    order_rows = [codec.order_row(o) for o in orders]
    line_rows = codec.line_rows(orders)
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute(f"INSERT INTO warehouses ({codec.WAREHOUSE_COLUMNS}) VALUES (0, 'w', 'admin')")
        sku = codec.sku_row(Sku(0, "m-1", "t", 1, "CNY"))
        marks = ", ".join("?" * len(sku))
        conn.execute(f"INSERT INTO skus ({codec.SKU_COLUMNS}) VALUES ({marks})", sku)
        conn.execute(
            f"INSERT INTO stock ({codec.STOCK_COLUMNS}) VALUES (0, 0, 1000000000000, 0, 0)"
        )
        t0, c0 = time.perf_counter(), time.process_time()
        for start in range(0, len(orders), size):
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(
                f"INSERT INTO orders ({codec.ORDER_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                order_rows[start : start + size],
            )
            conn.executemany(
                f"INSERT INTO order_lines ({codec.LINE_COLUMNS}) VALUES (?,?,?,?,?,?,?)",
                line_rows[start : start + size],
            )
            conn.execute(
                "UPDATE stock SET reserved = reserved + ? WHERE sku = 0 AND warehouse = 0",
                (size,),
            )
            conn.execute("COMMIT")
        elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
    finally:
        conn.close()
    return Result("raw sqlite3 executemany", len(orders), elapsed, cpu)


async def raw_asyncpg_copy(dsn: str, orders: list[Order], size: int) -> Result:
    """The PostgreSQL floor: prebuilt tuples, two COPYs, one transaction per batch."""
    order_rows = [codec.order_row(o) for o in orders]
    line_rows = codec.line_rows(orders)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            "INSERT INTO warehouses VALUES (0, 'w', 'admin');"
            "INSERT INTO skus VALUES (0, 'm-1', 't', 1, 'CNY', 0, 0);"
            "INSERT INTO stock VALUES (0, 0, 1000000000000, 0, 0)"
        )
        t0, c0 = time.perf_counter(), time.process_time()
        for start in range(0, len(orders), size):
            async with conn.transaction():
                await conn.copy_records_to_table(
                    "orders",
                    records=order_rows[start : start + size],
                    columns=codec.ORDER_COLUMN_NAMES,
                )
                await conn.copy_records_to_table(
                    "order_lines",
                    records=line_rows[start : start + size],
                    columns=codec.LINE_COLUMN_NAMES,
                )
                await conn.execute(
                    "UPDATE stock SET reserved = reserved + $1 WHERE sku = 0 AND warehouse = 0",
                    size,
                )
        elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
    finally:
        await conn.close()
    return Result("raw asyncpg COPY", len(orders), elapsed, cpu)


async def with_pg_database(dsn: str, body: Callable[[str], Awaitable[T]]) -> T:
    """Run ``body`` against a new database on the cluster of ``dsn``, dropped afterwards."""
    name = f"pyorder_bench_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        try:
            return await body(urlunsplit(urlsplit(dsn)._replace(path="/" + name)))
        finally:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


def print_table(results: list[Result], size: int) -> None:
    by_name = {r.name: r for r in results}
    print(f"\nbatches of {size:,} orders (1 line each), durable commits\n")
    print(
        f"{'contender':<58} {'orders':>10} {'seconds':>9} {'cpu s':>7} {'orders/s':>11}"
        f" {'vs baseline':>12} {'py stalled':>11}"
    )
    for r in results:
        ratio = f"{r.rate / by_name[r.baseline].rate:.2f}x" if r.baseline else "baseline"
        stalled = "" if r.python_stalled is None else f"{r.python_stalled / r.orders * 1e6:.1f}"
        print(
            f"{r.name:<58} {r.orders:>10,} {r.seconds:>9.3f} {r.cpu_seconds:>7.2f}"
            f" {r.rate:>11,.0f} {ratio:>12} {stalled:>11}"
        )
    print(
        "\nseconds: wall clock; cpu s: this process only (the PostgreSQL server not counted);"
        "\npy stalled: ms per 1,000 orders that a busy Python thread beside the store stood still"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=100_000, help="orders per contender")
    parser.add_argument("--batch", type=int, default=1_000, help="orders per commit")
    parser.add_argument("--postgres", metavar="DSN", help="also measure PostgreSQL at this DSN")
    parser.add_argument("--dir", type=Path, help="folder for the SQLite files (default: a tmp dir)")
    parser.add_argument(
        "--no-busy", action="store_true", help="skip the runs beside a busy Python thread"
    )
    args = parser.parse_args()
    if not 1 <= args.orders <= MAX_ORDERS:
        parser.error(f"--orders must be 1..{MAX_ORDERS:,}")
    if not 1 <= args.batch <= args.orders:
        parser.error("--batch must be 1..orders")

    orders = make_orders(args.orders)
    placed = placed_rows(orders, args.batch)

    def python_batches() -> list[WriteBatch]:
        return batches(orders, args.batch)

    def placed_batches() -> list[WriteBatch]:
        return [WriteBatch(placed=rows) for rows in placed]

    results: list[Result] = []
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        raw_path = os.path.join(tmp, "raw.sqlite3")
        asyncio.run(prepare_schema(SqliteStore(raw_path)))
        results.append(raw_sqlite(raw_path, orders, args.batch))
        base = results[0].name
        for beside_busy in (False,) if args.no_busy else (False, True):
            for name, work in (
                ("SqliteStore.commit (Python orders)", python_batches),
                ("SqliteStore.commit (placed rows)", placed_batches),
            ):
                store = SqliteStore(os.path.join(tmp, f"store-{len(results)}.sqlite3"))
                name += " + busy Python" if beside_busy else ""
                run = run_store(name, store, orders, work(), base, beside_busy)
                results.append(asyncio.run(run))

    if args.postgres:
        dsn: str = args.postgres

        async def raw(db: str) -> Result:
            await prepare_schema(PostgresStore(db))
            return await raw_asyncpg_copy(db, orders, args.batch)

        def contender(
            name: str, threshold: int, work: Callable[[], list[WriteBatch]]
        ) -> Callable[[str], Awaitable[Result]]:
            async def body(db: str) -> Result:
                store = PostgresStore(db, copy_threshold=threshold)
                return await run_store(name, store, orders, work(), "raw asyncpg COPY")

            return body

        for body in (
            raw,
            contender("PostgresStore.commit (COPY)", 1, python_batches),
            contender("PostgresStore.commit (executemany)", MAX_ORDERS + 1, python_batches),
            contender("PostgresStore.commit (placed, binary COPY)", 1, placed_batches),
            contender("PostgresStore.commit (placed, executemany)", MAX_ORDERS + 1, placed_batches),
        ):
            results.append(asyncio.run(with_pg_database(dsn, body)))

    print_table(results, args.batch)


if __name__ == "__main__":
    main()
