"""What merchants' webhooks cost the batch path: no webhook endpoint, against one endpoint
subscribed to ``order.created``.

Two measures, each run once without the endpoint and once with it:

- ``store``: durable commits of the Rust intake's rows (``WriteBatch.placed``, built before the
  clock starts), ``--batch`` orders per commit. With the endpoint, each commit also runs the
  fan-out ``INSERT ... SELECT`` writing one ``order_events`` row per order
  (``pyorder/events/storage.py``).
- ``server``: the real ``pyorder-server`` (a child process, fresh database), ``--clients``
  clients posting ``POST /v1/orders/batch`` of ``--batch`` orders at once; orders/s
  acknowledged. With the endpoint (a receiver in this process, answering 200 at once), the
  server also sends every ``order.created``. The run reports how fast those go out, and how
  long after the last acknowledged order the last one arrives.

    python benchmarks/webhook_cost.py --orders 200000 --batch 1000
    python benchmarks/webhook_cost.py --postgres "$PYORDER_TEST_POSTGRES"
"""

import argparse
import asyncio
import os
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from benchmarks.storage_throughput import catalog, make_orders, placed_rows
from pyorder._core import ORDER_ID_NODE_BITS, ORDER_ID_SEQUENCE_BITS, OrderRows
from pyorder.events.model import EventType, WebhookEndpoint
from pyorder.events.storage import EVENTS
from pyorder.model import WriteBatch
from pyorder.storage.base import Store
from pyorder.storage.postgres import PostgresStore
from pyorder.storage.sqlite import SqliteStore
from tests.support.postgres import fresh_postgres_database
from tests.support.server import ServerProcess

ID_TIME_SHIFT = ORDER_ID_NODE_BITS + ORDER_ID_SEQUENCE_BITS
MERCHANT = "m-1"
"""The merchant of the only SKU of ``storage_throughput.catalog``."""


@dataclass(frozen=True)
class Row:
    measure: str
    backend: str
    endpoint: bool
    orders: int
    seconds: float
    events_per_s: float | None = None
    tail_s: float | None = None
    """Server: from the last acknowledged order to the last event received."""

    @property
    def rate(self) -> float:
        return self.orders / self.seconds


# --- the store -------------------------------------------------------------------------------


def _endpoint(merchant: str) -> WebhookEndpoint:
    return WebhookEndpoint(
        id=1,
        merchant=merchant,
        url="http://127.0.0.1:9/hook",
        secret="whsec_bench",
        event_types=(EventType.ORDER_CREATED.value,),
        description="",
        enabled=True,
        created_ms=0,
        updated_ms=0,
    )


async def store_run(store: Store, placed: list[OrderRows], n: int, subscribed: bool) -> float:
    """Seconds to commit every batch of ``placed``; checks the events written."""
    await store.open()
    try:
        setup = catalog()
        if subscribed:
            setup.part(EVENTS).endpoints[1] = _endpoint(MERCHANT)
        await store.commit(setup)
        work = [WriteBatch(placed=rows) for rows in placed]
        if subscribed:
            for batch in work:
                batch.part(EVENTS).created = batch.placed
        t0 = time.perf_counter()
        for batch in work:
            await store.commit(batch)
        elapsed = time.perf_counter() - t0
        assert await count_events(store) == (n if subscribed else 0)
    finally:
        await store.close()
    return elapsed


async def count_events(store: Store) -> int:
    n, before = 0, None
    while page := await store.deliveries(1, before, 1000):
        n, before = n + len(page), page[-1].id
    return n


def measure_store(args: argparse.Namespace) -> list[Row]:
    # Order ids as one node's generator makes them (time, node 0, sequence): the fan-out of
    # order.created selects a batch's orders by id range and node bits.
    orders = [
        replace(o, id=((o.id // 1000 + 1) << ID_TIME_SHIFT) | o.id % 1000)
        for o in make_orders(args.orders)
    ]
    rows: list[Row] = []
    for subscribed in (False, True):
        placed = placed_rows(orders, args.batch)  # OrderRows are consumed by a commit
        with tempfile.TemporaryDirectory() as tmp:
            store = SqliteStore(os.path.join(tmp, "bench.sqlite3"))
            seconds = asyncio.run(store_run(store, placed, args.orders, subscribed))
        rows.append(Row("store", "sqlite", subscribed, args.orders, seconds))
        if args.postgres:
            placed = placed_rows(orders, args.batch)
            with fresh_postgres_database("pyorder_bench") as dsn:
                run = store_run(PostgresStore(dsn), placed, args.orders, subscribed)
                seconds = asyncio.run(run)
            rows.append(Row("store", "postgres", subscribed, args.orders, seconds))
    return rows


# --- the server ------------------------------------------------------------------------------


class Counter:
    """The merchant's side: counts the events it gets, answers 200."""

    def __init__(self) -> None:
        self.seen: set[str] = set()
        self.first = self.last = 0.0

    async def handle(self, request: web.Request) -> web.Response:
        await request.read()
        now = time.perf_counter()
        self.first = self.first or now
        self.last = now
        self.seen.add(request.headers["Pyorder-Event-Id"])
        return web.Response(text="ok")


async def server_run(proc: ServerProcess, args: argparse.Namespace, subscribed: bool) -> Row:
    admin, merchant = proc.token("admin", "ops"), proc.token("merchant", "m")
    buyers = [proc.token("buyer", f"b{i}") for i in range(args.clients)]
    counter = Counter()
    hooks = web.Application()
    hooks.router.add_post("/hook", counter.handle)
    runner = web.AppRunner(hooks, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    hook_port = runner.addresses[0][1]
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as http:

        async def post(path: str, token: str, body: object, expect: int) -> Any:
            headers = {"Authorization": f"Bearer {token}"}
            async with http.post(proc.url + path, json=body, headers=headers) as resp:
                assert resp.status == expect, (path, resp.status, await resp.text())
                return await resp.json()

        wh = await post("/v1/warehouses", admin, {"name": "w", "regions": ["r"]}, 201)
        stock = [{"warehouse": wh["id"], "units": 10**12}]
        sku = await post(
            "/v1/skus", merchant, {"title": "t", "price": 1, "currency": "CNY", "stock": stock}, 201
        )
        if subscribed:
            url = f"http://127.0.0.1:{hook_port}/hook"
            body = {"url": url, "events": [EventType.ORDER_CREATED.value]}
            await post("/v1/webhook-endpoints", merchant, body, 201)
        order = {
            "lines": [{"sku": sku["id"], "quantity": 1}],
            "address": {"name": "n", "line1": "l", "city": "c", "region": "r"},
        }
        batch = {"orders": [order] * args.batch}
        per_client = max(1, args.orders // (args.batch * args.clients))

        async def client(token: str) -> None:
            for _ in range(per_client):
                out = await post("/v1/orders/batch", token, batch, 200)
                assert out["created"] == args.batch, out

        t0 = time.perf_counter()
        await asyncio.gather(*(client(t) for t in buyers))
        acked = time.perf_counter()
    n = per_client * args.clients * args.batch
    events_per_s = tail_s = None
    if subscribed:
        deadline = time.perf_counter() + args.drain_s
        while len(counter.seen) < n and time.perf_counter() < deadline:
            await asyncio.sleep(0.05)
        assert len(counter.seen) == n, f"{len(counter.seen)} of {n} events in {args.drain_s} s"
        events_per_s = n / (counter.last - t0)
        tail_s = max(0.0, counter.last - acked)
    await runner.cleanup()
    backend = "postgres" if proc.database else "sqlite"
    return Row("server", backend, subscribed, n, acked - t0, events_per_s, tail_s)


def measure_server(args: argparse.Namespace) -> list[Row]:
    rows: list[Row] = []
    backends: list[str | None] = [None, "postgres"] if args.postgres else [None]
    for backend in backends:
        for subscribed in (False, True):
            with tempfile.TemporaryDirectory() as tmp:

                def run_on(database: str | None, on: bool = subscribed, where: str = tmp) -> Row:
                    proc = ServerProcess(Path(where) / "data", database=database)
                    proc.start()
                    try:
                        return asyncio.run(server_run(proc, args, on))
                    finally:
                        proc.stop()

                if backend is None:
                    rows.append(run_on(None))
                else:
                    with fresh_postgres_database("pyorder_bench") as dsn:
                        rows.append(run_on(dsn))
    return rows


def print_rows(rows: list[Row], args: argparse.Namespace) -> None:
    print(f"\nbatches of {args.batch:,} orders (1 line each); endpoint: one, order.created\n")
    print(
        f"{'measure':<8} {'backend':<9} {'endpoint':<9} {'orders':>9} {'seconds':>8}"
        f" {'orders/s':>10} {'vs none':>8} {'events/s':>9} {'tail s':>7}"
    )
    base = {(r.measure, r.backend): r.rate for r in rows if not r.endpoint}
    for r in rows:
        ratio = f"{r.rate / base[(r.measure, r.backend)]:.2f}x" if r.endpoint else ""
        events = f"{r.events_per_s:,.0f}" if r.events_per_s is not None else ""
        tail = f"{r.tail_s:.2f}" if r.tail_s is not None else ""
        print(
            f"{r.measure:<8} {r.backend:<9} {'yes' if r.endpoint else 'none':<9} {r.orders:>9,}"
            f" {r.seconds:>8.3f} {r.rate:>10,.0f} {ratio:>8} {events:>9} {tail:>7}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=100_000, help="orders per run")
    parser.add_argument("--batch", type=int, default=1_000, help="orders per commit / request")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients (server)")
    parser.add_argument("--postgres", metavar="DSN", help="also measure PostgreSQL at this DSN")
    parser.add_argument("--only", choices=["store", "server"], help="one measure only")
    parser.add_argument(
        "--drain-s", type=float, default=600, help="longest wait for the events (server)"
    )
    args = parser.parse_args()
    if not 1 <= args.batch <= args.orders:
        parser.error("--batch must be 1..orders")
    if args.postgres:
        os.environ.setdefault("PYORDER_TEST_POSTGRES", args.postgres)
    rows: list[Row] = []
    if args.only in (None, "store"):
        rows += measure_store(args)
    if args.only in (None, "server"):
        rows += measure_server(args)
    print_rows(rows, args)


if __name__ == "__main__":
    main()
