"""Delivery windows across nodes (issue 13): two ``pyorder-server --cluster`` processes on one
fresh PostgreSQL database, on loopback.

A window opened through one node is listed by the other within a second or so; picks for
orders of both nodes, sent through both nodes at once, take exactly its capacity (the others
409 ``window_full``) and the database's count is the number of orders holding it; a re-pick and
a cancel give places back, which orders of the other node then take.
"""

import asyncio
import json
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from pyorder._core import decode_order_id
from tests.server.e2e_lib import Response, Server, Shop, order_body, unique
from tests.support.postgres import fresh_postgres_database, postgres_dsn
from tests.support.server import ServerProcess

CAPACITY = 6
ORDERS_PER_NODE = 8  # 16 picks for 6 places


@dataclass
class Cluster:
    dsn: str
    a: Server
    b: Server
    sku: int
    region: str


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    """Two cluster nodes on one fresh database, sharing one data directory (one token secret).
    The catalogue (one SKU of 1,000 units in one warehouse serving a region) is made first by a
    solo server."""
    postgres_dsn()
    data = tmp_path / "data"
    with fresh_postgres_database("pyorder_windows") as dsn, ExitStack() as stack:
        solo = Server(ServerProcess(data, dsn).start(), "postgres")
        try:
            shop = Shop(solo)
            region = unique("north")
            warehouse = shop.warehouse(regions=[region])
            sku = shop.sku({warehouse: 1_000})
        finally:
            solo.stop()
        nodes: list[Server] = []
        for _ in range(2):
            proc = ServerProcess(data, dsn, args=("--cluster",))
            stack.callback(proc.stop)
            nodes.append(Server(proc.start(), "postgres"))
        yield Cluster(dsn, nodes[0], nodes[1], sku, region)


def _fetch(dsn: str, sql: str, *args: object) -> list[asyncpg.Record]:
    async def run() -> list[asyncpg.Record]:
        conn = await asyncpg.connect(dsn)
        try:
            return list(await conn.fetch(sql, *args))
        finally:
            await conn.close()

    return asyncio.run(run())


def _counts(dsn: str, window: int) -> tuple[int, int]:
    """(the window's booked count, the fulfilments naming it), as stored."""
    [row] = _fetch(
        dsn,
        "SELECT booked, (SELECT count(*) FROM fulfilments WHERE window_id = $1)"
        " FROM delivery_windows WHERE id = $1",
        window,
    )
    return int(row[0]), int(row[1])


def _open(node: Server, region: str, capacity: int) -> int:
    start = datetime.now(UTC) + timedelta(hours=1)
    body = {
        "start": start.isoformat(),
        "end": (start + timedelta(hours=2)).isoformat(),
        "capacity": capacity,
    }
    out = node.ok(
        "POST",
        f"/v1/regions/{region}/delivery-windows",
        token=node.admin(),
        json=body,
        expect=201,
        headers={"Idempotency-Key": unique("open")},
    )
    return int(out["id"])


def _listed(node: Server, region: str, buyer: str) -> dict[int, tuple[int, int]]:
    """Window id -> (booked, remaining), as ``node`` lists the region's windows."""
    out = node.ok("GET", f"/v1/regions/{region}/delivery-windows", token=buyer)
    return {int(w["id"]): (int(w["booked"]), int(w["remaining"])) for w in out["windows"]}


def _eventually_listed(
    node: Server, region: str, buyer: str, window: int, booked: int, within_s: float = 5.0
) -> None:
    deadline = time.monotonic() + within_s
    seen: dict[int, tuple[int, int]] = {}
    while time.monotonic() < deadline:
        seen = _listed(node, region, buyer)
        if window in seen and seen[window][0] == booked:
            return
        time.sleep(0.1)
    raise AssertionError(f"window {window} with {booked} booked never listed: {seen}")


def _order(node: Server, buyer: str, cluster: Cluster) -> int:
    """An order taken by ``node`` (asked again while its node has not leased stock yet)."""
    body = order_body([(cluster.sku, 1)], cluster.region)
    deadline = time.monotonic() + 15
    while True:
        response = node.call("POST", "/v1/orders", token=buyer, json=body)
        if response.status == 201:
            return int(response.json()["id"])
        assert (response.status, response.error_code) == (409, "out_of_stock"), response
        assert time.monotonic() < deadline, "the node never leased stock"
        time.sleep(0.1)


def _pick(node: Server, buyer: str, order: int, window: int) -> Response:
    return node.call(
        "POST",
        f"/v1/orders/{order}/delivery-window",
        token=buyer,
        json={"window": window},
        headers={"Idempotency-Key": unique("pick")},
    )


def _picks_at_once(picks: list[tuple[Server, str, int, int]]) -> list[Response]:
    """(node, buyer token, order, window) picks, all released at once; answers in order."""

    async def one(
        session: aiohttp.ClientSession, pick: tuple[Server, str, int, int], gate: asyncio.Event
    ) -> Response:
        node, buyer, order, window = pick
        headers = {
            "Authorization": f"Bearer {buyer}",
            "Content-Type": "application/json",
            "Idempotency-Key": unique("pick"),
        }
        data = json.dumps({"window": window}).encode()
        await gate.wait()
        url = f"{node.url}/v1/orders/{order}/delivery-window"
        async with session.post(url, data=data, headers=headers) as r:
            payload = await r.read()
            return Response(r.status, {k.lower(): v for k, v in r.headers.items()}, payload)

    async def main() -> list[Response]:
        gate = asyncio.Event()
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
            tasks = [asyncio.ensure_future(one(session, p, gate)) for p in picks]
            await asyncio.sleep(0)
            gate.set()
            return list(await asyncio.gather(*tasks))

    return asyncio.run(main())


def test_a_windows_capacity_is_shared_by_the_cluster(cluster: Cluster) -> None:
    a, b, region, dsn = cluster.a, cluster.b, cluster.region, cluster.dsn
    buyers = [a.token("buyer", unique("alice")), a.token("buyer", unique("bob"))]
    orders: list[tuple[Server, str, int]] = []  # (its node, its buyer's token, id)
    for i in range(ORDERS_PER_NODE):
        for node in (a, b):
            buyer = buyers[i % 2]
            orders.append((node, buyer, _order(node, buyer, cluster)))
    node_of = {a: decode_order_id(orders[0][2])[1], b: decode_order_id(orders[1][2])[1]}
    assert node_of[a] != node_of[b]

    # Opened through A (an id of A's own), listed through B within about a second.
    window = _open(a, region, CAPACITY)
    assert window % 256 == node_of[a]
    _eventually_listed(b, region, buyers[0], window, 0)

    # Every order picks it at once, half through its own node and half through the other.
    picks = [
        (n if k % 4 < 2 else (b if n is a else a), t, o, window)
        for k, (n, t, o) in enumerate(orders)
    ]
    answers = _picks_at_once(picks)
    won = [o for (_, _, o, _), r in zip(picks, answers, strict=True) if r.status == 200]
    for r in answers:
        if r.status != 200:
            assert (r.status, r.error_code) == (409, "window_full"), r
            assert r.json()["error"]["details"] == {"window": window, "capacity": CAPACITY}
    assert len(won) == CAPACITY
    assert {decode_order_id(o)[1] for o in won} <= set(node_of.values())
    assert _counts(dsn, window) == (CAPACITY, CAPACITY)
    for node in (a, b):
        _eventually_listed(node, region, buyers[0], window, CAPACITY)
    # Each winner's tracking, read on its node (through either), names the window.
    token = {o: t for _, t, o in orders}
    for o in won:
        tracking = b.ok("GET", f"/v1/orders/{o}/shipments", token=token[o])
        assert tracking["delivery_window"]["id"] == window, tracking

    # A re-pick (to a window opened through B) gives its place back, which a losing order of
    # the other node takes, through the node that is not its own.
    second = _open(b, region, CAPACITY)
    assert second % 256 == node_of[b]
    assert second != window
    mover = won[0]
    assert _pick(a, token[mover], mover, second).status == 200
    assert _counts(dsn, window) == (CAPACITY - 1, CAPACITY - 1)
    assert _counts(dsn, second) == (1, 1)
    loser = next(o for _, _, o in orders if o not in won and _node(o) != _node(mover))
    via = a if _node(loser) == node_of[b] else b
    assert _pick(via, token[loser], loser, window).status == 200
    assert _counts(dsn, window) == (CAPACITY, CAPACITY)
    full = _pick(b, token[mover], mover, window)
    assert (full.status, full.error_code) == (409, "window_full")

    # A cancelled order (through the other node) gives its place back too.
    holder = won[1]
    other = a if _node(holder) == node_of[b] else b
    cancelled = other.call("POST", f"/v1/orders/{holder}/cancel", token=token[holder])
    assert cancelled.status == 200, cancelled
    assert _counts(dsn, window) == (CAPACITY - 1, CAPACITY - 1)
    for node in (a, b):
        _eventually_listed(node, region, buyers[0], window, CAPACITY - 1)
        _eventually_listed(node, region, buyers[0], second, 1)


def _node(order: int) -> int:
    return int(decode_order_id(order)[1])
