"""Purchase limits across nodes (issue 13): two ``pyorder-server --cluster`` processes on one
fresh PostgreSQL database, on loopback. A buyer over a SKU's limit on node A is over it on node
B, for single orders and batches, until A's order is cancelled or expires; many orders of one
buyer racing over both nodes take exactly the limit.
"""

import asyncio
import json
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from tests.server.e2e_lib import Response, Server, Shop, order_body, unique
from tests.support.postgres import fresh_postgres_database, postgres_dsn
from tests.support.server import ServerProcess

LIMIT = 3
PAYMENT_TIMEOUT_S = 5


@dataclass
class Cluster:
    dsn: str
    a: Server
    b: Server
    sku: int
    region: str


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    """Two cluster nodes on one fresh database, sharing one data directory (one token secret);
    unpaid orders expire after ``PAYMENT_TIMEOUT_S``. The catalogue (one SKU limited to
    ``LIMIT`` per buyer) is made first by a solo server."""
    postgres_dsn()
    data = tmp_path / "data"
    with fresh_postgres_database("pyorder_limits") as dsn, ExitStack() as stack:
        solo = Server(ServerProcess(data, dsn).start(), "postgres")
        try:
            shop = Shop(solo)
            warehouse = shop.warehouse()
            region = unique("north")
            shop.region(region, [warehouse])
            sku = shop.sku({warehouse: 1_000}, limit=LIMIT)
        finally:
            solo.stop()
        nodes: list[Server] = []
        for _ in range(2):
            args = ("--cluster", "--payment-timeout-s", str(PAYMENT_TIMEOUT_S))
            proc = ServerProcess(data, dsn, args=args)
            stack.callback(proc.stop)
            nodes.append(Server(proc.start(), "postgres"))
        # Wait for both nodes to lease units, so that no answer here is a (stock) 409.
        deadline = time.monotonic() + 30  # readiness, not a bound under test (a loaded machine)
        while _fetchval(dsn, _STOCKED, sku) < 2:
            assert time.monotonic() < deadline, "the nodes never leased stock"
            time.sleep(0.05)
        yield Cluster(dsn, nodes[0], nodes[1], sku, region)


_STOCKED = "SELECT count(DISTINCT node) FROM stock_leases WHERE sku = $1 AND units > 0"


def _fetchval(dsn: str, sql: str, *args: object) -> Any:
    async def run() -> Any:
        conn = await asyncpg.connect(dsn)
        try:
            return await conn.fetchval(sql, *args)
        finally:
            await conn.close()

    return asyncio.run(run())


def _order(node: Server, token: str, cluster: Cluster, units: int) -> Response:
    """One order of ``units``, sent again while it is out of stock (it changed nothing): a node
    idle for 2 s has given its units back, and asking the pool may meet a refill under way."""
    body = order_body([(cluster.sku, units)], cluster.region)
    deadline = time.monotonic() + 10
    while True:
        response = node.call("POST", "/v1/orders", token=token, json=body)
        if response.status != 409 or response.error_code != "out_of_stock":
            return response
        assert time.monotonic() < deadline, "the node never leased stock again"
        time.sleep(0.1)


def _batch(node: Server, token: str, cluster: Cluster, *units: int) -> list[int]:
    """A batch of one-line orders of ``units`` each: the statuses of its results, in order.

    A node that sold nothing for 2 s has given its units back, and a batch does not ask the
    pool (it wakes the refill): a batch of which every order was out of stock, so nothing
    changed, is sent again."""
    body = {"orders": [order_body([(cluster.sku, n)], cluster.region) for n in units]}
    deadline = time.monotonic() + 10
    while True:
        out = node.ok("POST", "/v1/orders/batch", token=token, json=body)
        codes = {r["error"]["code"] if r["error"] else None for r in out["results"]}
        if codes != {"out_of_stock"}:
            break
        assert time.monotonic() < deadline, "the node never leased stock again"
        time.sleep(0.1)
    assert out["created"] + out["failed"] == len(units)
    assert out["created"] == sum(1 for r in out["results"] if r["status"] == 201)
    for r in out["results"]:
        if r["status"] == 409:
            assert r["error"]["code"] == "purchase_limit_exceeded", r
            assert r["error"]["details"] == {"sku": cluster.sku}
    return [int(r["status"]) for r in out["results"]]


def _refused(response: Response) -> bool:
    if response.status == 201:
        return False
    assert (response.status, response.error_code) == (409, "purchase_limit_exceeded"), response
    return True


def test_a_buyer_over_the_limit_on_one_node_is_over_it_on_the_other(cluster: Cluster) -> None:
    a, b = cluster.a, cluster.b
    alice = a.token("buyer", unique("alice"))

    first = _order(a, alice, cluster, 2)
    assert first.status == 201, first
    assert _refused(_order(b, alice, cluster, 2))
    # A batch on the other node: the order that fits is taken, the next is over the limit
    # across the cluster (node b's core alone knows none of alice's units).
    assert _batch(b, alice, cluster, 1, 1) == [201, 409]
    assert _refused(_order(a, alice, cluster, 1))
    assert _refused(_order(b, alice, cluster, 1))
    # Nothing of the refused orders was kept: no claim, and alice's orders are the two taken.
    assert _fetchval(cluster.dsn, "SELECT count(*) FROM limit_claims") == 0
    assert _fetchval(cluster.dsn, "SELECT count(*) FROM orders") == 2

    # Cancelled on its node: its units stop counting on the other. (On a machine slow enough
    # for its deadline to pass first, it has expired instead: its units stop counting too.)
    out = a.call("POST", f"/v1/orders/{first.json()['id']}/cancel", token=alice)
    if out.status != 200:
        assert (out.status, out.error_code) == (409, "invalid_state"), out
        assert "expired" in out.json()["error"]["message"], out
    assert _batch(b, alice, cluster, 2, 1) == [201, 409]

    # Another buyer is not affected.
    bob = a.token("buyer", unique("bob"))
    assert _order(b, bob, cluster, LIMIT).status == 201

    # Once b's orders expire (unpaid), alice can buy the limit on a.
    deadline = time.monotonic() + PAYMENT_TIMEOUT_S + 15
    while _refused(_order(a, alice, cluster, LIMIT)):
        assert time.monotonic() < deadline, "expired orders kept counting"
        time.sleep(0.25)
    assert _refused(_order(b, alice, cluster, 1))
    assert _batch(b, alice, cluster, 1) == [409]


def test_one_buyer_racing_over_both_nodes_takes_exactly_the_limit(cluster: Cluster) -> None:
    carol = cluster.a.token("buyer", unique("carol"))
    body = order_body([(cluster.sku, 1)], cluster.region)
    # 24 orders of one unit, alternating between the nodes, all released at once.
    responses = _fan_out([(cluster.a, cluster.b)[i % 2] for i in range(24)], carol, body)
    created = [r for r in responses if not _refused(r)]
    assert len(created) == LIMIT
    units = _fetchval(
        cluster.dsn,
        "SELECT COALESCE(SUM(l.quantity), 0) FROM order_lines l JOIN orders o"
        " ON o.id = l.order_id WHERE o.buyer = $1 AND o.status = 'pending_payment'",
        created[0].json()["buyer"],
    )
    assert units == LIMIT
    assert _fetchval(cluster.dsn, "SELECT count(*) FROM limit_claims") == 0
    # The nodes count what they claimed and refused (the core's own refusals are not counted:
    # those orders never reached a claim).
    metrics = [
        _metrics(n.call("GET", "/metrics", token=n.admin()).body.decode())
        for n in (
            cluster.a,
            cluster.b,
        )
    ]
    assert sum(m["pyorder_limit_claims_total"] for m in metrics) >= LIMIT
    refusals = sum(m["pyorder_limit_refusals_total"] for m in metrics)
    assert 0 < refusals <= len(responses) - LIMIT


def _metrics(text: str) -> dict[str, float]:
    """Unlabelled samples of a Prometheus text page, by name."""
    found: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#") and "{" not in line:
            name, _, value = line.partition(" ")
            found[name] = float(value)
    return found


def _fan_out(nodes: list[Server], token: str, body: dict[str, Any]) -> list[Response]:
    """POST /v1/orders with ``body`` once to each of ``nodes``, all released at once."""
    data = json.dumps(body).encode()
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    async def one(session: aiohttp.ClientSession, url: str, gate: asyncio.Event) -> Response:
        await gate.wait()
        async with session.post(url + "/v1/orders", data=data, headers=headers) as r:
            payload = await r.read()
            return Response(r.status, {k.lower(): v for k, v in r.headers.items()}, payload)

    async def main() -> list[Response]:
        gate = asyncio.Event()
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
            tasks = [asyncio.ensure_future(one(session, n.url, gate)) for n in nodes]
            await asyncio.sleep(0)
            gate.set()
            return list(await asyncio.gather(*tasks))

    return asyncio.run(main())
