"""``pyorder-server --workers N``: one supervisor, N cluster workers on one port
(``pyorder/server/workers.py``, ``docs/scale-out.md``).

Checked with real processes on loopback and a fresh PostgreSQL database: 3 workers hold 3
distinct node numbers and share the port (orders sent over fresh connections come back with
IDs of more than one node, and are stored); worker k serves /metrics on PORT+k; a worker
SIGKILLed is restarted and the service goes on; SIGTERM to the supervisor stops every worker,
exit 0, with every leased unit given back, also when it comes while the workers start; each
worker drains on it (``pyorder_draining`` 1, ``/readyz`` 503), and a second SIGTERM cuts the
drain short; workers whose supervisor is killed stop too. A start refused by the database (a solo node serves it)
makes the supervisor give up with a non-zero exit; SQLite, ``--node``, ``--port 0`` and a
metrics port range past 65535 are refused at once (exit 2, one line).
"""

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from pyorder.ids import decode_order_id
from tests.server.e2e_lib import Server, Shop, order_body
from tests.support.postgres import fresh_postgres_database
from tests.support.server import ROOT, ServerProcess, free_port, free_ports

STOCK = 500


@pytest.fixture
def dsn() -> Iterator[str]:
    with fresh_postgres_database("pyorder_workers_e2e") as url:
        yield url


def _children(pid: int) -> set[int]:
    """The live child processes of ``pid`` (Linux ``/proc``)."""
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except FileNotFoundError:
        return set()
    return {int(p) for p in text.split()}


async def _fetch(dsn: str, sql: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn)
    try:
        return list(await conn.fetch(sql))
    finally:
        await conn.close()


def _leased_by(dsn: str, pids: set[int]) -> dict[int, int]:
    """Node number -> holder pid, for the node leases these processes hold."""
    rows = asyncio.run(_fetch(dsn, "SELECT node, holder FROM node_leases"))
    held = {int(r["node"]): int(str(r["holder"]).rsplit(":", 1)[1]) for r in rows}
    return {node: pid for node, pid in held.items() if pid in pids}


def _wait_for_workers(
    dsn: str, supervisor: int, count: int, gone: int = 0, timeout_s: float = 20
) -> set[int]:
    """Wait until the supervisor has ``count`` workers (``gone`` not among them: reaped),
    each holding its own node number; returns their pids."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        pids = _children(supervisor)
        if gone not in pids and len(pids) == count and set(_leased_by(dsn, pids).values()) == pids:
            return pids
        time.sleep(0.1)
    raise AssertionError(f"no {count} workers with node leases: {_children(supervisor)}")


def _listening(port: int) -> bool:
    """Whether a socket listens on this TCP port (Linux ``/proc/net/tcp``). Polling the port
    with connections instead could connect the client to itself while nothing listens (the
    port is in the ephemeral range), and take the port from the worker about to bind it."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
                return True
    return False


def _wait_listening(port: int, timeout_s: float = 10) -> None:
    deadline = time.monotonic() + timeout_s
    while not _listening(port):
        assert time.monotonic() < deadline, f"nothing listens on port {port}"
        time.sleep(0.05)


def _place(url: str, token: str, sku: int, count: int) -> list[int]:
    """``count`` one-unit orders, 6 at a time, each over a fresh connection (so the kernel
    picks a worker for each); returns their IDs. A 409 out_of_stock is retried: a worker that
    has just started, or sold its buffer, refills its stock lease within moments
    (docs/scale-out.md, "false out of stock"). Anything else fails the test."""

    async def main() -> list[int]:
        connector = aiohttp.TCPConnector(force_close=True)
        timeout = aiohttp.ClientTimeout(total=10)
        gate = asyncio.Semaphore(6)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

            async def one() -> int:
                async with gate:
                    for _ in range(100):
                        async with session.post(
                            url + "/v1/orders",
                            json=order_body([(sku, 1)], "north"),
                            headers={"Authorization": f"Bearer {token}"},
                        ) as resp:
                            body = await resp.json(content_type=None)
                        if resp.status == 201:
                            return int(body["id"])
                        assert body["error"]["code"] == "out_of_stock", body
                        await asyncio.sleep(0.02)
                    raise AssertionError("out of stock for 2 s")

            return list(await asyncio.gather(*(one() for _ in range(count))))

    return asyncio.run(main())


def test_three_workers_share_a_port_survive_a_kill_and_stop_cleanly(
    dsn: str, tmp_path: Path
) -> None:
    data = tmp_path / "data"  # shared: one token secret for the solo server and the workers
    solo = Server(ServerProcess(data, dsn).start(), "postgres")
    shop = Shop(solo)
    wh = shop.warehouse(regions=["north"])
    sku = shop.sku({wh: STOCK})
    solo.stop()

    metrics = free_ports(3)
    args = ("--workers", "3", "--metrics-listen", f"127.0.0.1:{metrics}")
    sup = ServerProcess(data, dsn, args=args).start()
    assert sup.proc is not None
    try:
        workers = _wait_for_workers(dsn, sup.proc.pid, 3)
        assert len(_leased_by(dsn, workers)) == 3  # 3 distinct node numbers
        for k in range(3):  # worker k serves /metrics on PORT+k
            _wait_listening(metrics + k)
            with urllib.request.urlopen(f"http://127.0.0.1:{metrics + k}/metrics") as resp:
                assert resp.status == 200

        token = sup.token("buyer", "alice")
        ids = _place(sup.url, token, sku, 60)
        assert len({decode_order_id(i)[1] for i in ids}) > 1, "one worker took every connection"

        victim = min(workers)
        os.kill(victim, signal.SIGKILL)
        after = _wait_for_workers(dsn, sup.proc.pid, 3, gone=victim)
        ids += _place(sup.url, token, sku, 30)  # every one 201: the service went on

        sup.proc.send_signal(signal.SIGTERM)
        assert sup.proc.wait(timeout=30) == 0
        assert not any(Path(f"/proc/{pid}").exists() for pid in after), "a worker outlived it"
        stored = asyncio.run(_fetch(dsn, "SELECT id FROM orders"))
        assert set(ids) <= {int(r["id"]) for r in stored}
        stock = asyncio.run(_fetch(dsn, "SELECT leased, reserved FROM stock"))
        assert [(int(r["leased"]), int(r["reserved"])) for r in stock] == [(0, len(ids))]
        leases = asyncio.run(
            _fetch(dsn, "SELECT COALESCE(SUM(units), 0) AS units FROM stock_leases")
        )
        assert int(leases[0]["units"]) == 0

    finally:
        sup.stop()  # after a failure: the supervisor stops its workers


def test_workers_that_keep_being_refused_make_the_supervisor_give_up(
    dsn: str, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    solo = ServerProcess(data, dsn).start()  # a solo node: cluster workers are refused
    try:
        cmd = [sys.executable, "-m", "pyorder.server.main", "--workers", "2"]
        cmd += ["--port", str(free_port()), "--data-dir", str(data), "--database", dsn]
        done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=60)
    finally:
        solo.stop()
    assert done.returncode == 1, done.stderr
    assert "a pyorder node in solo mode serves this database" in done.stderr
    assert "they keep dying" in done.stderr


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ((), "needs --database postgresql://"),
        (("--database", "postgresql://127.0.0.1:1/x", "--node", "3"), "--node names one"),
        (("--database", "postgresql://127.0.0.1:1/x", "--port", "0"), "a fixed --port"),
        (("--database", "postgresql://127.0.0.1:1/x", "--metrics-listen", ":65535"), "PORT+k"),
    ],
)
def test_workers_refuse_what_they_cannot_share(
    tmp_path: Path, extra: tuple[str, ...], message: str
) -> None:
    cmd = [sys.executable, "-m", "pyorder.server.main", "--workers", "2"]
    cmd += ["--data-dir", str(tmp_path), *extra]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1, done.stderr
    assert message in done.stderr


def test_workers_stop_when_their_supervisor_is_killed(dsn: str, tmp_path: Path) -> None:
    sup = ServerProcess(tmp_path / "data", dsn, args=("--workers", "2")).start()
    assert sup.proc is not None
    workers = _wait_for_workers(dsn, sup.proc.pid, 2)
    sup.kill()  # SIGKILL: nobody forwards a signal; each worker notices it was orphaned
    deadline = time.monotonic() + 15
    while any(Path(f"/proc/{pid}").exists() for pid in workers):
        if time.monotonic() > deadline:
            for pid in workers:  # do not leave them serving after the test
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            raise AssertionError("the workers outlived their supervisor")
        time.sleep(0.1)


@pytest.mark.parametrize(
    "moment",
    [b"worker 1 started", b"node lease: node"],  # a worker importing; one starting its platform
)
def test_a_supervisor_stopped_while_its_workers_start_exits_0_with_nothing_leased(
    dsn: str, tmp_path: Path, moment: bytes
) -> None:
    data = tmp_path / "data"
    solo = Server(ServerProcess(data, dsn).start(), "postgres")
    shop = Shop(solo)
    shop.sku({shop.warehouse(regions=["north"]): STOCK})
    solo.stop()
    cmd = [sys.executable, "-m", "pyorder.server.main", "--workers", "2"]
    cmd += ["--port", str(free_port()), "--data-dir", str(data), "--database", dsn]
    with subprocess.Popen(
        cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    ) as sup:  # closes the pipe and waits on the way out
        assert sup.stderr is not None
        try:
            for line in sup.stderr:  # the supervisor's log and its workers'
                if moment in line:
                    break
            sup.send_signal(signal.SIGTERM)
            stderr = sup.stderr.read().decode()
            assert sup.wait(timeout=30) == 0, stderr
            if moment == b"node lease: node":  # that worker was starting: it stopped gracefully
                assert "stopped (0)" in stderr, stderr
        finally:
            if sup.poll() is None:
                sup.kill()
    stock = asyncio.run(_fetch(dsn, "SELECT leased FROM stock"))
    assert [int(r["leased"]) for r in stock] == [0]


def test_every_worker_drains_and_a_second_signal_stops_them_at_once(
    dsn: str, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    solo = Server(ServerProcess(data, dsn).start(), "postgres")
    shop = Shop(solo)
    sku = shop.sku({shop.warehouse(regions=["north"]): STOCK})
    solo.stop()
    metrics = free_ports(2)
    args = ("--workers", "2", "--drain-s", "60", "--metrics-listen", f"127.0.0.1:{metrics}")
    sup = ServerProcess(data, dsn, args=args).start()
    assert sup.proc is not None
    try:
        _wait_for_workers(dsn, sup.proc.pid, 2)
        _place(sup.url, sup.token("buyer", "alice"), sku, 4)  # both workers lease stock
        sup.proc.send_signal(signal.SIGTERM)
        for k in range(2):  # each worker drains: its own /metrics says so
            deadline = time.monotonic() + 5
            while b"\npyorder_draining 1.0\n" not in _get(
                f"http://127.0.0.1:{metrics + k}/metrics"
            ):
                assert time.monotonic() < deadline, f"worker {k} is not draining"
                time.sleep(0.02)
        with pytest.raises(urllib.error.HTTPError) as refused:
            _get(sup.url + "/readyz")
        refused.value.close()
        assert refused.value.code == 503
        began = time.monotonic()
        sup.proc.send_signal(signal.SIGTERM)  # forwarded: the 60 s drain is cut short
        assert sup.proc.wait(timeout=20) == 0
        assert time.monotonic() - began < 15
    finally:
        sup.kill()
    stock = asyncio.run(_fetch(dsn, "SELECT leased FROM stock"))
    assert [int(r["leased"]) for r in stock] == [0]


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=5) as resp:
        body: bytes = resp.read()
        return body
