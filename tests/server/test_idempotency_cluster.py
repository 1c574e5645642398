"""Idempotency-Keys across nodes (issue 13): three ``pyorder-server --cluster`` processes on
one fresh PostgreSQL database, on loopback.

The same key sent 20 times at once, spread over the three nodes, creates one order; and a key
claimed by a node killed in the middle of its request is free again within a bound
(``key_claims.CLAIM_GRACE_MS`` after the kill, plus a heartbeat). Stock is not what these
tests are about: the SKU has stock to spare, and no test reads it.
"""

import asyncio
import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from pyorder.storage.key_claims import CLAIM_GRACE_MS
from tests.server.e2e_lib import Response, Server, Shop, order_body, unique
from tests.support.postgres import fresh_postgres_database, postgres_dsn
from tests.support.server import ServerProcess

NODES = 3
SENDS = 20


@dataclass
class Cluster:
    dsn: str
    nodes: list[Server]
    sku: int
    region: str


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    """Three cluster nodes on one fresh database, sharing one data directory (one token
    secret). The catalogue is made first by a solo server (cluster nodes keep it read-only)."""
    postgres_dsn()
    data = tmp_path / "data"
    with fresh_postgres_database("pyorder_idem") as dsn, ExitStack() as stack:
        solo = Server(ServerProcess(data, dsn).start(), "postgres")
        try:
            shop = Shop(solo)
            warehouse = shop.warehouse()
            region = unique("north")
            shop.region(region, [warehouse])
            sku = shop.sku({warehouse: 1_000})
        finally:
            solo.stop()
        nodes: list[Server] = []
        for _ in range(NODES):
            # No idle give-back while the test waits for the last node of a slow start.
            proc = ServerProcess(data, dsn, args=("--cluster", "--stock-idle-s", "600"))
            stack.callback(proc.stop)
            nodes.append(Server(proc.start(), "postgres"))
        # A node sells from the units it leased; its keeper leases some soon after the start.
        # Wait for that, so that no answer here is a (stock) 409 of a node not stocked yet.
        deadline = time.monotonic() + 30  # readiness, not a bound under test (a loaded machine)
        while _nodes_stocked(dsn, sku) < NODES:
            assert time.monotonic() < deadline, "the nodes never leased stock"
            time.sleep(0.05)
        yield Cluster(dsn, nodes, sku, region)


def _nodes_stocked(dsn: str, sku: int) -> int:
    sql = "SELECT count(DISTINCT node) FROM stock_leases WHERE sku = $1 AND units > 0"
    return int(asyncio.run(_fetchval(dsn, sql, sku)))


def _fan_out(cluster: Cluster, token: str, body: bytes, key: str) -> list[Response]:
    """``SENDS`` POST /v1/orders with one key, node ``i % NODES`` for the i-th, all released
    at once; responses in send order."""

    async def one(session: aiohttp.ClientSession, url: str, gate: asyncio.Event) -> Response:
        headers = {
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/json",
            "Idempotency-Key": key,
        }
        await gate.wait()
        async with session.post(url + "/v1/orders", data=body, headers=headers) as r:
            payload = await r.read()
            return Response(r.status, {k.lower(): v for k, v in r.headers.items()}, payload)

    async def main() -> list[Response]:
        gate = asyncio.Event()
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
            urls = [cluster.nodes[i % NODES].url for i in range(SENDS)]
            tasks = [asyncio.ensure_future(one(session, url, gate)) for url in urls]
            await asyncio.sleep(0)
            gate.set()
            return list(await asyncio.gather(*tasks))

    return asyncio.run(main())


async def _fetchval(dsn: str, sql: str, *args: object) -> Any:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval(sql, *args)
    finally:
        await conn.close()


def _orders(dsn: str) -> int:
    return int(asyncio.run(_fetchval(dsn, "SELECT count(*) FROM orders")))


def _post(node: Server, token: str, body: bytes, key: str) -> Response:
    return node.call("POST", "/v1/orders", token=token, body=body, headers={"Idempotency-Key": key})


def test_one_key_sent_20_times_over_3_nodes_creates_one_order(cluster: Cluster) -> None:
    buyer = cluster.nodes[0].token("buyer", unique("idem"))
    key = unique("key")
    body = json.dumps(order_body([(cluster.sku, 2)], cluster.region)).encode()
    responses = _fan_out(cluster, buyer, body, key)

    statuses = Counter(r.status for r in responses)
    assert set(statuses) <= {201, 409}, responses
    assert statuses[201] >= 1, [r.body for r in responses]
    assert {r.error_code for r in responses if r.status == 409} <= {"idempotency_key_in_use"}
    created = [r for r in responses if r.status == 201]
    assert len({r.body for r in created}) == 1, "every 201 carries the same body"
    originals = [r for r in created if r.headers.get("idempotent-replayed") != "true"]
    assert len(originals) == 1, "exactly one response is not a replay"
    assert _orders(cluster.dsn) == 1

    # Later retries, on every node, replay the same response and create nothing.
    for node in cluster.nodes:
        again = _post(node, buyer, body, key)
        assert again.status == 201, again
        assert again.headers.get("idempotent-replayed") == "true"
        assert again.body == created[0].body
    order = created[0].json()
    for node in cluster.nodes:
        assert node.ok("GET", f"/v1/orders/{order['id']}", token=buyer) == order
    assert _orders(cluster.dsn) == 1


def test_a_key_claimed_by_a_killed_node_is_free_again_within_a_bound(cluster: Cluster) -> None:
    """Node 0 claims a key and is killed while its commit waits (the test holds a lock on
    ``orders``): its claim blocks the key on the other nodes (409) while it lives, and no
    longer than ``CLAIM_GRACE_MS`` + a heartbeat + slack after it dies; then the key runs once."""
    victim, other, third = cluster.nodes
    buyer = victim.token("buyer", unique("killed"))
    key = unique("key")
    body = json.dumps(order_body([(cluster.sku, 1)], cluster.region)).encode()

    async def scenario() -> float:
        blocker = await asyncpg.connect(cluster.dsn)
        tx = blocker.transaction()
        await tx.start()
        await blocker.execute("LOCK TABLE orders IN SHARE MODE")  # commits wait: no order lands
        stuck = threading.Thread(target=_post_ignoring_errors, args=(victim, buyer, body, key))
        stuck.start()
        try:
            deadline = time.monotonic() + 15
            while (
                await blocker.fetchval(
                    "SELECT count(*) FROM idempotency_claims WHERE key = $1", key
                )
                == 0
            ):
                assert time.monotonic() < deadline, "node 0 never claimed the key"
                await asyncio.sleep(0.05)
            busy = await asyncio.to_thread(_post, other, buyer, body, key)
            assert busy.status == 409, busy
            assert busy.error_code == "idempotency_key_in_use"
            await asyncio.to_thread(victim.proc.kill)
            killed_at = time.monotonic()
        finally:
            await tx.rollback()
            await blocker.close()
            await asyncio.to_thread(stuck.join, 30)
        return killed_at

    killed_at = asyncio.run(scenario())
    bound_s = CLAIM_GRACE_MS / 1000 + 1 + 10  # grace, a heartbeat, slack for a loaded machine
    while True:
        resp = _post(other, buyer, body, key)
        if resp.status == 201:
            break
        assert resp.status == 409, resp
        assert resp.error_code == "idempotency_key_in_use"
        assert time.monotonic() - killed_at < bound_s, "the dead node's claim still blocks"
        time.sleep(0.25)
    assert resp.headers.get("idempotent-replayed") != "true", resp
    assert _orders(cluster.dsn) == 1
    replay = _post(third, buyer, body, key)
    assert replay.status == 201, replay
    assert replay.headers.get("idempotent-replayed") == "true"
    assert replay.body == resp.body


def _post_ignoring_errors(node: Server, token: str, body: bytes, key: str) -> None:
    """The request of the node about to be killed: its connection is cut, nothing to check."""
    with suppress(OSError):
        _post(node, token, body, key)
