"""What storing risk decisions adds to a PostgreSQL group commit of placed orders, in one run.

The HTTP benchmark (``loadtest/http_bench.py --server-arg=--risk``) sees risk control's cost on
PostgreSQL batches through the server's whole path, and its noise (a shared machine, wrk beside
the server) is as large as the store's share. This isolates that share: two in-process order
books (the Rust core), one without risk control and one with the server's engine under
``--risk`` (the shipped model, the default policy, ``--sample-allowed`` of the allowed orders
kept with their features, default the server's 1 %), take the same batch bodies; each round
commits ``--size`` orders of each through ``PostgresStore.commit`` (the server's COPY path, a
commit token, a node's fence), the two ways alternating, back to back on one database, so each
commit's time is its latency (the server's group commit runs them back to back under load). The
figure is the median commit time per way and the difference per order, next to the bytes of
an order's row as PostgreSQL stores it and the WAL each commit wrote per order.

    python benchmarks/pg_risk_commit.py --database "$PYORDER_TEST_POSTGRES"
    python benchmarks/pg_risk_commit.py --database "$PYORDER_TEST_POSTGRES" --rounds 60 --sample-allowed 0
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.risk_intake import book
from benchmarks.storage_throughput import with_pg_database
from pyorder._core import (
    ORDER_ID_NODE_BITS,
    ORDER_ID_SEQUENCE_BITS,
    OrderBook,
    OrderRows,
)
from pyorder.auth import buyer_number
from pyorder.catalog.model import Sku, StockRow, Warehouse
from pyorder.model import WriteBatch
from pyorder.risk.intake import RiskSettings, load_engine
from pyorder.storage.postgres import PostgresStore

T0 = 1_800_000_000_000
SKUS = 64
MERCHANT = "merchant:m"  # risk_intake.book's SKUs: theirs, at its price
PER_BODY = 250


@dataclass
class Way:
    """One order book (its ids of node ``node``) and what its commits measured."""

    node: int
    book: OrderBook
    seconds: list[float] = field(default_factory=list)
    wal_bytes: list[int] = field(default_factory=list)


def catalogue() -> WriteBatch:
    return WriteBatch(
        warehouses=[Warehouse(0, "w", "admin")],
        regions={"north": [0]},
        skus=[Sku(s, MERCHANT, f"item {s}", 1_999, "CNY", limit_per_buyer=0) for s in range(SKUS)],
        stock_rows=[StockRow(s, 0, on_hand=10**12, reserved=0, sold=0) for s in range(SKUS)],
    )


def bodies(round_no: int, size: int) -> list[tuple[bytes, str]]:
    """One commit's batch bodies (each one buyer's, as the API's batch is), a context each."""
    out = []
    for b in range(0, size, PER_BODY):
        who = (round_no * 7919 + b) % 100_000
        orders = [
            {
                "lines": [{"sku": (b + k) % SKUS, "quantity": 1}],
                "address": {
                    "name": "Li Lei",
                    "line1": f"{(who * 31 + k) % 100_000} Wensan Road",
                    "city": "Hangzhou",
                    "region": "north",
                },
                "context": {"device_id": f"d{(who + k) % 100_000}"},
            }
            for k in range(min(PER_BODY, size - b))
        ]
        out.append((orjson.dumps({"orders": orders}), f"buyer-{who}"))
    return out


def placed(book: OrderBook, work: list[tuple[bytes, str]], now_ms: int, token: int) -> WriteBatch:
    rows = OrderRows()
    for i, (body, buyer) in enumerate(work):
        client = (f"10.{i % 250}.{(now_ms // 1000) % 250}.1", "north", 1, None)
        status, _, created, _ = book.place_batch(
            body, buyer, buyer_number(buyer), rows, now_ms, client
        )
        if status != 200 or not created:
            raise RuntimeError(f"the batch was refused: {status}")
    return WriteBatch(placed=rows, token=token)


async def wal_lsn(conn: asyncpg.Connection) -> int:
    return int(await conn.fetchval("SELECT pg_current_wal_insert_lsn() - '0/0'::pg_lsn"))


async def measure(dsn: str, size: int, rounds: int, sample_allowed: float) -> None:
    store = PostgresStore(dsn, min_size=1, max_size=2)
    await store.open()
    claim = await store.claim_node(node=None, cluster=False)
    store.fence = (claim.node, claim.epoch) if claim.epoch else None
    # The server's engine with --risk: the shipped model, the default policy and sample.
    engine = load_engine(RiskSettings(enabled=True, sample_allowed=sample_allowed))
    ways = {"off": Way(1, book(None, SKUS, 1)[1]), "risk": Way(2, book(engine, SKUS, 2)[1])}
    watcher = await asyncpg.connect(dsn)
    try:
        await store.commit(catalogue())
        token = 0
        for r in range(rounds + 2):
            work = bodies(r, size)
            # Alternate which way goes first, so that neither always follows the other.
            for name in sorted(ways, reverse=bool(r % 2)):
                way = ways[name]
                token += 1
                batch = placed(way.book, work, T0 + r * 1_000, token)
                lsn = await wal_lsn(watcher)
                t0 = time.perf_counter()
                await store.commit(batch)
                spent = time.perf_counter() - t0
                if r >= 2:  # two rounds to warm up (connections, caches, the COPY thread)
                    way.seconds.append(spent)
                    way.wal_bytes.append(await wal_lsn(watcher) - lsn)
        # Each way's rows by the node number in their ids, whatever the build's columns.
        node_of = f"(id >> {ORDER_ID_SEQUENCE_BITS}) & {(1 << ORDER_ID_NODE_BITS) - 1}"
        row_bytes = {
            name: await watcher.fetchval(
                f"SELECT avg(pg_column_size(o.*)) FROM orders o WHERE {node_of} = $1", way.node
            )
            for name, way in ways.items()
        }
    finally:
        await watcher.close()
        await claim.release()
        await store.close()
    print(
        f"{rounds} rounds of one commit of {size:,} orders per way, alternating, medians"
        f" (allowed orders sampled with their features: {sample_allowed:.1%}):"
    )
    off = statistics.median(ways["off"].seconds)
    for name, way in ways.items():
        m = statistics.median(way.seconds)
        wal = statistics.median(way.wal_bytes) / size
        print(
            f"  {name:>4}: {m * 1e3:7.2f} ms a commit, {m / size * 1e6:5.2f} µs/order"
            f" (+{(m - off) / size * 1e6:5.2f}), WAL {wal:6.0f} B/order,"
            f" row {float(row_bytes[name]):5.0f} B"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--database", required=True, help="a PostgreSQL URL (a database is made)")
    parser.add_argument("--size", type=int, default=2_000, help="orders per commit")
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument(
        "--sample-allowed",
        type=float,
        default=RiskSettings().sample_allowed,
        help="the share of allowed orders whose decision is a row with its features",
    )
    args = parser.parse_args()
    asyncio.run(
        with_pg_database(
            args.database, lambda db: measure(db, args.size, args.rounds, args.sample_allowed)
        )
    )


if __name__ == "__main__":
    main()
