"""Three ``pyorder-server --cluster`` nodes behind a real HAProxy (the configuration
``scripts/cluster.sh`` writes, ``pyorder.server.haproxy``), clients on its front port
(``docs/operations.md``, "Local cluster").

- A node killed (SIGKILL) under load: the clients see only the errors of the writes that were
  in flight on it (unkeyed, so HAProxy may not retry them); HAProxy takes it out within about
  2 s; every acknowledged order is stored and the stock is conserved once its leases are taken
  back.
- Every node restarted in turn (SIGTERM: it drains) under keyed orders and reads: no request
  fails, and the clients never retry (HAProxy retries what met a closed connection).
"""

import asyncio
import json
import random
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from pyorder.server import haproxy
from tests.server.e2e_lib import Server, Shop, order_body
from tests.server.test_cluster import _books, _conserved, _leased_by, _metrics, _stored_ids
from tests.support.balancer import Balancer, haproxy_binary
from tests.support.postgres import fresh_postgres_database
from tests.support.server import ServerProcess

NODES = 3
CLIENTS = 6
DRAIN_S = 3.0
"""The nodes' default drain: the configuration's checks (every 1 s, ``fall 2``) fit in it."""
UNITS = 1_000_000


@dataclass
class Answer:
    method: str
    sent: float
    """``time.monotonic()`` when sent."""
    done: float
    status: int
    """0: a transport error (no HTTP answer)."""
    code: str
    """The error's code, "" for a success or a transport error."""


@dataclass
class Pool:
    """The cluster under test: its nodes, the balancer over them, the hot SKU."""

    dsn: str
    nodes: list[Server]
    balancer: Balancer
    sku: int
    buyer: Server
    """A server whose ``token`` mints buyers' tokens (all nodes share the secret)."""


@pytest.fixture
def pool(tmp_path: Path) -> Iterator[Pool]:
    haproxy_binary()
    with fresh_postgres_database("pyorder_balancer") as dsn:
        data = tmp_path / "data"  # shared: one token secret and pseudonym key for the cluster
        solo = Server(ServerProcess(data, dsn).start(), "postgres")
        shop = Shop(solo)
        sku = shop.sku({shop.warehouse(regions=["north"]): UNITS})
        solo.stop()
        nodes: list[Server] = []
        balancer: Balancer | None = None
        try:
            args = ("--cluster", "--drain-s", str(DRAIN_S))
            for _ in range(NODES):
                nodes.append(Server(ServerProcess(data, dsn, args=args).start(), "postgres"))
            addresses = [f"127.0.0.1:{n.proc.port}" for n in nodes]
            balancer = Balancer(tmp_path / "haproxy", addresses).start()
            yield Pool(dsn, nodes, balancer, sku, solo)
        finally:
            _stop_now(nodes)
            if balancer is not None:
                balancer.stop()


def _stop_now(nodes: list[Server]) -> None:
    """Stop every node at once: a second signal cuts each drain short (sent apart, since the
    kernel merges a signal sent while the same one is still pending); SIGKILL after 15 s."""
    running = [n.proc.proc for n in nodes if n.proc.proc and n.proc.proc.poll() is None]
    for proc in running:
        proc.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    for proc in running:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in running:
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def _client(
    session: aiohttp.ClientSession, pool: Pool, n: int, keyed: bool, stop: asyncio.Event
) -> list[Answer]:
    """Orders (with an ``Idempotency-Key`` when ``keyed``) and reads of earlier ones, through
    the balancer, until ``stop``; never retries."""
    headers = {"Authorization": f"Bearer {pool.buyer.token('buyer', f'buyer-{n}')}"}
    rng = random.Random(n)
    placed: list[str] = []
    answers: list[Answer] = []
    while not stop.is_set():
        read = bool(placed) and rng.random() < 0.4
        method = "GET" if read else "POST"
        if read:
            url, body, extra = f"{pool.balancer.url}/v1/orders/{rng.choice(placed)}", None, {}
        else:
            url, body = f"{pool.balancer.url}/v1/orders", order_body([(pool.sku, 1)], "north")
            extra = {"Idempotency-Key": str(uuid.uuid4())} if keyed else {}
        sent = time.monotonic()
        try:
            async with session.request(
                method, url, json=body, headers={**headers, **extra}
            ) as resp:
                status = resp.status
                text = await resp.text()
        except (aiohttp.ClientError, TimeoutError):
            answers.append(Answer(method, sent, time.monotonic(), 0, ""))
            continue
        # HAProxy's own errors (502, 503, 504) are HTML.
        payload: dict[str, Any] = json.loads(text) if text.startswith("{") else {}
        code = "" if status < 300 else str(payload.get("error", {}).get("code", ""))
        if status == 201:
            placed.append(str(payload["id"]))
            code = str(payload["id"])
        answers.append(Answer(method, sent, time.monotonic(), status, code))
    return answers


def _acknowledged(answers: list[Answer]) -> set[int]:
    return {int(a.code) for a in answers if a.method == "POST" and a.status == 201}


def _failed(answers: list[Answer]) -> list[Answer]:
    """Answers that are neither a success nor a cluster node's "out of stock" while its stock
    lease refills (docs/scale-out.md, "false out of stock": an answer, not a failure)."""
    return [a for a in answers if a.status not in (200, 201) and a.code != "out_of_stock"]


def _node_number(node: Server) -> int:
    text = node.call("GET", "/metrics", token=node.admin()).body.decode()
    return int(_metrics(text)["pyorder_node_number"])


def test_a_node_killed_behind_the_balancer_fails_only_its_requests_in_flight(
    pool: Pool,
) -> None:
    victim = pool.nodes[1]
    victim_number = _node_number(victim)
    victim_address = f"127.0.0.1:{victim.proc.port}"
    marks: dict[str, float] = {}

    async def main() -> list[Answer]:
        stop = asyncio.Event()
        timeout = aiohttp.ClientTimeout(total=10)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            clients = [
                asyncio.create_task(_client(session, pool, n, False, stop)) for n in range(CLIENTS)
            ]
            await asyncio.sleep(1.5)
            marks["killed"] = time.monotonic()
            victim.proc.kill()
            while not pool.balancer.states()[victim_address].startswith("DOWN"):
                assert time.monotonic() - marks["killed"] < 5, "HAProxy kept the dead node up"
                await asyncio.sleep(0.02)
            marks["down"] = time.monotonic()
            await asyncio.sleep(1.5)
            stop.set()
            return [a for done in await asyncio.gather(*clients) for a in done]

    answers = asyncio.run(main())
    killed = marks["killed"]
    failed = _failed(answers)
    out_after_s = marks["down"] - killed
    rto_s = max((a.done for a in failed), default=killed) - killed
    print(
        f"\nrequests: {len(answers)}, failed: {len(failed)} {[(a.status, a.code) for a in failed]},"
        f" node out of rotation after {out_after_s:.2f} s, last failure {rto_s:.3f} s after kill"
    )
    assert out_after_s < 3.0
    assert len([a for a in answers if a.sent > marks["down"]]) > CLIENTS, "no load after the kill"
    # Only writes in flight on the dead node fail: HAProxy retries a read, and redispatches a
    # request whose connection is refused. "In flight" allows for the instant of the kill: a
    # request HAProxy sent on an idle connection to the node as the kernel closed it.
    assert all(a.method == "POST" for a in failed), failed
    assert all(a.sent < killed + 0.1 for a in failed), failed
    assert len(failed) <= CLIENTS
    assert {a.status for a in failed} <= {0, 502, 503, 504}, failed

    acked = _acknowledged(answers)
    stored = asyncio.run(_stored_ids(pool.dsn))
    assert acked <= stored, "an acknowledged order is missing"
    assert len(stored - acked) <= len(failed)  # committed, but the answer died with the node

    async def taken_back() -> None:
        for _ in range(200):
            if await _leased_by(pool.dsn, victim_number) == 0:
                return
            await asyncio.sleep(0.1)
        raise AssertionError("the dead node's stock lease was never taken back")

    asyncio.run(taken_back())
    books = asyncio.run(_books(pool.dsn))
    _conserved(books)
    assert next(b for b in books if b["sku"] == pool.sku)["reserved"] == len(stored)


@pytest.mark.long  # 20 s; the node kill above stays in the default run
def test_a_rolling_restart_behind_the_balancer_fails_no_request(pool: Pool) -> None:
    restarts: list[float] = []

    async def up(address: str) -> None:
        while pool.balancer.states()[address] != "UP":
            await asyncio.sleep(0.05)

    async def main() -> list[Answer]:
        stop = asyncio.Event()
        timeout = aiohttp.ClientTimeout(total=10)
        loop = asyncio.get_running_loop()
        async with aiohttp.ClientSession(timeout=timeout) as session:
            clients = [
                asyncio.create_task(_client(session, pool, n, True, stop)) for n in range(CLIENTS)
            ]
            await asyncio.sleep(1.0)
            for node in pool.nodes:
                began = time.monotonic()
                proc = node.proc.proc
                assert proc is not None
                proc.send_signal(signal.SIGTERM)
                assert await loop.run_in_executor(None, proc.wait, 20) == 0
                await loop.run_in_executor(None, node.proc.start)
                await asyncio.wait_for(up(f"127.0.0.1:{node.proc.port}"), 10)
                restarts.append(time.monotonic() - began)
            await asyncio.sleep(0.5)
            stop.set()
            return [a for done in await asyncio.gather(*clients) for a in done]

    answers = asyncio.run(main())
    failed = _failed(answers)
    refused = [a for a in answers if a.code == "out_of_stock"]
    print(
        f"\nrequests: {len(answers)}, failed: {len(failed)}, false out of stock: {len(refused)},"
        f" restarts took {[round(s, 1) for s in restarts]} s"
    )
    assert failed == []
    assert len(answers) > 20 * CLIENTS

    acked = _acknowledged(answers)
    stored = asyncio.run(_stored_ids(pool.dsn))
    assert acked == stored  # keyed: nothing ran twice, nothing acknowledged was lost
    books = asyncio.run(_books(pool.dsn))
    _conserved(books)
    assert next(b for b in books if b["sku"] == pool.sku)["reserved"] == len(stored)


@pytest.mark.long
def test_the_leader_stays_ready_after_adopting_a_dead_nodes_orders(pool: Pool) -> None:
    """Every node holds pending orders; one is killed and not restarted. After 5 s the leader
    adopts its number (docs/operations.md) and must go on serving. Loading the adopted orders
    rebuilds its core: /readyz may answer 503 for that moment (``Intake.reload``), never long
    enough for the balancer's checks (``fall`` failures ``inter`` apart) to take it out."""

    async def place(seconds: float) -> list[Answer]:
        stop = asyncio.Event()
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            clients = [
                asyncio.create_task(_client(session, pool, n, True, stop)) for n in range(CLIENTS)
            ]
            await asyncio.sleep(seconds)
            stop.set()
            return [a for done in await asyncio.gather(*clients) for a in done]

    assert _failed(asyncio.run(place(1.5))) == []
    pool.nodes[1].proc.kill()
    live = [pool.nodes[0], pool.nodes[2]]
    deadline = time.monotonic() + 10  # the adoption comes 5 s after the death
    since: dict[str, float] = {}  # node -> when its current not-ready stretch began
    longest = 0.0
    while time.monotonic() < deadline:
        for node in live:
            now = time.monotonic()
            if node.call("GET", "/readyz").status == 200:
                since.pop(node.url, None)
            else:
                longest = max(longest, now - since.setdefault(node.url, now))
        time.sleep(0.05)
    print(f"\nlongest not-ready stretch of a live node: {longest:.3f} s")
    assert since == {}, f"{sorted(since)} not ready at the end"
    assert longest < haproxy.CHECK_INTER_S * (haproxy.FALL - 1), f"not ready for {longest:.2f} s"
    assert _failed(asyncio.run(place(1.0))) == []
