"""Graceful drain (``pyorder.server.drain``, docs/operations.md): on SIGTERM the real server
answers ``/readyz`` 503 at once, keeps serving orders for ``--drain-s`` with ``Connection:
close`` on every answer, then stops accepting and exits 0 with every acknowledged order
stored; a second signal cuts the wait short.

The clients model a load balancer: they send orders until ``BALANCER_LAG_S`` after they saw
``/readyz`` answer 503 (the health checks it takes to notice), then send nothing more to the
node. So no request may fail.

Both backends; on PostgreSQL the node runs in cluster mode, and its stock lease must be back
in the pool after the stop.
"""

import asyncio
import os
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass

import aiohttp
import asyncpg
import pytest

from pyorder.server.drain import DrainState, Shutdown
from tests.server.e2e_lib import Launch, Server, Shop, order_body

DRAIN_S = 1.5
BALANCER_LAG_S = 0.7
"""How long after /readyz turned 503 the clients still send: a balancer checking every
0.25 s that takes a node out after 2 failed checks, with slack for a loaded machine."""
CLIENTS = 4


@dataclass
class Answer:
    sent: float
    """When the request was sent, ``time.monotonic()``."""
    status: int
    connection: str
    """The response's ``Connection`` header, lower-cased ("" if none)."""
    outcome: str
    """The order's id (201), else the error's code."""


@dataclass
class Watch:
    signalled: float = 0.0
    draining: float = 0.0
    """When ``/readyz`` was first seen 503 draining (0: not yet)."""


def _args(backend: str, *extra: str) -> list[str]:
    return [*extra, "--cluster"] if backend == "postgres" else list(extra)


def _proc(srv: Server) -> subprocess.Popen[bytes]:
    assert srv.proc.proc is not None
    return srv.proc.proc


async def _readyz(session: aiohttp.ClientSession, url: str) -> tuple[int, str]:
    async with session.get(url + "/readyz") as resp:
        return resp.status, (await resp.json())["status"]


async def _client(
    session: aiohttp.ClientSession, srv: Server, token: str, sku: int, watch: Watch
) -> list[Answer]:
    answers: list[Answer] = []
    while not (watch.draining and time.monotonic() > watch.draining + BALANCER_LAG_S):
        sent = time.monotonic()
        async with session.post(
            srv.url + "/v1/orders",
            json=order_body([(sku, 1)], "north"),
            headers={"Authorization": f"Bearer {token}", "Idempotency-Key": str(uuid.uuid4())},
        ) as resp:
            body = await resp.json()
            connection = resp.headers.get("Connection", "").lower()
        outcome = body["id"] if resp.status == 201 else body["error"]["code"]
        answers.append(Answer(sent, resp.status, connection, outcome))
    return answers


async def _drive(srv: Server, token: str, sku: int) -> tuple[list[Answer], Watch]:
    """Orders from ``CLIENTS`` keep-alive clients; SIGTERM after 0.5 s of them; /readyz polled
    from the signal on. Returns every answer (a connection error fails the test)."""
    watch = Watch()
    timeout = aiohttp.ClientTimeout(total=10)
    async with (
        aiohttp.ClientSession(timeout=timeout) as orders,
        aiohttp.ClientSession(timeout=timeout) as checks,
    ):
        clients = [
            asyncio.create_task(_client(orders, srv, token, sku, watch)) for _ in range(CLIENTS)
        ]
        await asyncio.sleep(0.5)
        assert await _readyz(checks, srv.url) == (200, "ready")
        watch.signalled = time.monotonic()
        _proc(srv).send_signal(signal.SIGTERM)
        while await _readyz(checks, srv.url) != (503, "draining"):
            await asyncio.sleep(0.005)
        watch.draining = time.monotonic()
        answers = [a for done in await asyncio.gather(*clients) for a in done]
    return answers, watch


async def _leased(dsn: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval("SELECT COALESCE(SUM(leased), 0) FROM stock"))
    finally:
        await conn.close()


def test_sigterm_drains_then_stops_with_no_request_failed(backend: str, launch: Launch) -> None:
    srv = launch(*_args(backend, "--drain-s", str(DRAIN_S)))
    shop = Shop(srv)
    sku = shop.sku({shop.warehouse(regions=["north"]): 100_000})
    token = srv.token("buyer", "alice")
    _first_order(shop, token, sku)

    answers, watch = asyncio.run(_drive(srv, token, sku))
    code = _proc(srv).wait(timeout=DRAIN_S + 8)
    stopped = time.monotonic()

    assert code == 0
    assert watch.draining - watch.signalled < 0.2, "readyz still said ready after the signal"
    # It kept serving for the drain period, then stopped accepting.
    assert stopped - watch.signalled >= DRAIN_S
    with pytest.raises(aiohttp.ClientConnectionError):
        asyncio.run(_readyz_once(srv.url))

    # A cluster node may say out of stock while its stock lease refills (docs/scale-out.md,
    # "false out of stock"): an answer, not a failure. Nothing else but 201.
    refusals = {(a.status, a.outcome) for a in answers if a.status != 201}
    assert refusals <= ({(409, "out_of_stock")} if backend == "postgres" else set())
    during = [a for a in answers if a.sent > watch.draining]
    assert len(during) >= CLIENTS, "no orders placed while draining"
    assert {a.connection for a in during} == {"close"}
    before = [a for a in answers if a.sent < watch.signalled - 0.1]
    assert before
    assert {a.connection for a in before} == {""}, "connections closed before the drain"

    if srv.proc.database is not None:  # cluster mode: the lease went back to the pool
        assert asyncio.run(_leased(srv.proc.database)) == 0
    # Restarted to read what was stored, without the drain: the test's end stops it at once.
    srv.proc.args = tuple(_args(backend))
    srv.start()
    stored = {o["id"] for o in shop.all_orders(shop.admin)}
    acknowledged = {a.outcome for a in answers if a.status == 201}
    assert acknowledged <= stored
    assert shop.totals(sku)["reserved"] == len(acknowledged) + 1  # and the first order


def _first_order(shop: Shop, token: str, sku: int) -> None:
    """One order placed: a cluster node answers out of stock until its first stock lease of a
    new SKU is granted (docs/scale-out.md, "false out of stock"), which is not what is tested."""
    deadline = time.monotonic() + 5
    while shop.order(token, [(sku, 1)], "north").status != 201:
        assert time.monotonic() < deadline, "no stock lease granted in 5 s"
        time.sleep(0.05)


async def _readyz_once(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session:
        return await _readyz(session, url)


def test_a_second_signal_cuts_the_drain_short(backend: str, launch: Launch) -> None:
    srv = launch(*_args(backend, "--drain-s", "60"))
    proc = _proc(srv)
    proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 5
    while srv.call("GET", "/readyz").json() != {"status": "draining"}:
        assert time.monotonic() < deadline
    assert srv.call("GET", "/healthz").status == 200  # alive, only not ready
    metrics = srv.call("GET", "/metrics", token=srv.admin())
    assert b"\npyorder_draining 1.0\n" in metrics.body
    began = time.monotonic()
    os.kill(proc.pid, signal.SIGINT)
    assert proc.wait(timeout=10) == 0
    assert time.monotonic() - began < 8


def test_the_first_stop_request_drains_and_a_second_cuts_it_short() -> None:
    async def main() -> None:
        stop, state = Shutdown(), DrainState()
        stop.request()
        assert stop.requested.is_set()
        assert not stop.hurry.is_set()
        drain = asyncio.create_task(stop.drain(state, 60))
        await asyncio.sleep(0.01)
        assert state.draining
        assert not drain.done()
        stop.request()
        await asyncio.wait_for(drain, 1)
        assert state.since > 0

    asyncio.run(main())
