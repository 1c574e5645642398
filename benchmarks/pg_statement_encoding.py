"""What a small batch's INSERT costs the client and PostgreSQL, by how its rows are sent.

The single-order path commits about 16 orders at a time (one statement of CTEs, below the COPY
threshold). Their orders and lines go in by ``unnest`` of one array per column, sent two ways:

* ``lists``: a Python list per column (``OrderRows.order_tuples()`` zipped into columns), which
  asyncpg encodes as binary arrays, checking each value against ``collections.abc`` classes;
* ``literals``: one text per column, the array literal built in Rust
  (``pyorder._core.pg_array_text``), which PostgreSQL's ``array_in`` reads.

Each round runs ``--statements`` statements per way (each in a transaction rolled back, so the
tables stay empty), interleaved round by round. It reports the medians over rounds of this
process's CPU per statement (``time.process_time``: encoding, the driver, the event loop) and
of the PostgreSQL backend's (``/proc/PID/schedstat``: time on a CPU, in ns), so that the two
costs, which share the machine's cores, can be added. The database must be on this machine.

    python benchmarks/pg_statement_encoding.py --database "$PYORDER_TEST_POSTGRES"
"""

import argparse
import asyncio
import statistics
import time
from collections.abc import Callable

import asyncpg

from pyorder._core import OrderRows
from pyorder.catalog.model import Sku, StockRow, Warehouse
from pyorder.model import WriteBatch
from pyorder.storage.postgres import PostgresStore, _OneTrip

ADDRESS = '{"name": "王小明", "line1": "1 Road \\"A\\"", "city": "Beijing", "region": "east"}'


def rows(n: int) -> OrderRows:
    """``n`` one-line orders as the Rust intake stages them."""
    out = OrderRows()
    for i in range(1, n + 1):
        lines = [(i % 4, 0, 1, 1_999, "merchant:m")]
        created = 1_800_000_000_000 + i
        out.push(
            i, f"buyer-{i}", "CNY", 1_999, "east", ADDRESS, i, created, created + 900_000, lines
        )
    return out


def catalogue() -> WriteBatch:
    return WriteBatch(
        warehouses=[Warehouse(0, "w", "admin")],
        regions={"east": [0]},
        skus=[Sku(s, "merchant:m", f"item {s}", 1_999, "CNY") for s in range(4)],
        stock_rows=[StockRow(s, 0, 10**9, 0, 0) for s in range(4)],
    )


async def run(
    dsn: str, orders: int, statements: int, rounds: int
) -> dict[str, tuple[float, float]]:
    name = f"pyorder_encoding_{int(time.time())}"
    admin = await asyncpg.connect(dsn)
    await admin.execute(f"CREATE DATABASE {name}")
    target = dsn.rsplit("/", 1)[0] + "/" + name
    try:
        store = PostgresStore(target)
        await store.open()
        await store.commit(catalogue())
        await store.close()
        conn = await asyncpg.connect(target)
        backend = conn.get_server_pid()
        placed = rows(orders)

        def server_s() -> float:
            with open(f"/proc/{backend}/schedstat") as f:
                return int(f.read().split()[0]) / 1e9

        ways: dict[str, Callable[[_OneTrip], None]] = {
            "lists": lambda t: t.add_rows(placed.order_tuples(), placed.line_tuples()),
            "literals": lambda t: t.add_placed(placed),
        }
        client: dict[str, list[float]] = {w: [] for w in ways}
        server: dict[str, list[float]] = {w: [] for w in ways}
        for _ in range(rounds):
            for way, add in ways.items():
                spent, pg = 0.0, 0.0
                for _ in range(statements):
                    # Rolled back: the next statement inserts the same ids.
                    tx = conn.transaction()
                    await tx.start()
                    c0, s0 = time.process_time(), server_s()
                    trip = _OneTrip()
                    add(trip)
                    await conn.fetchrow(trip.sql(), *trip.args)
                    spent += time.process_time() - c0
                    pg += server_s() - s0
                    await tx.rollback()
                client[way].append(spent / statements * 1e6)
                server[way].append(pg / statements * 1e6)
        await conn.close()
        return {w: (statistics.median(client[w]), statistics.median(server[w])) for w in ways}
    finally:
        await admin.execute(f"DROP DATABASE IF EXISTS {name}")
        await admin.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", required=True, help="postgresql://... of a local cluster")
    parser.add_argument("--orders", type=int, default=16, help="orders per statement")
    parser.add_argument("--statements", type=int, default=20, help="statements per way and round")
    parser.add_argument("--rounds", type=int, default=60)
    args = parser.parse_args()
    result = asyncio.run(run(args.database, args.orders, args.statements, args.rounds))
    print(f"{args.orders} orders per statement; medians of {args.rounds} rounds, µs per statement")
    print("| rows sent as | client CPU | PostgreSQL backend CPU | sum |")
    print("|---|---|---|---|")
    for way, (c, s) in result.items():
        print(f"| {way} | {c:.0f} | {s:.0f} | {c + s:.0f} |")


if __name__ == "__main__":
    main()
