"""``scripts/cluster.sh``: ``up`` starts the sandboxes, three cluster nodes and HAProxy in front
of them on a given database; an order goes through the front; ``status`` shows every node up
in HAProxy; a second ``up`` changes nothing; ``down`` stops every process it started.

The nodes inherit the suite's ``PYORDER_DRAIN_S=0`` (``tests/conftest.py``), so ``down`` is
quick; the drain behind HAProxy is ``tests/server/test_balancer.py``'s."""

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from pyorder.auth import Role, TokenIssuer, load_or_create_secret
from tests.server.e2e_lib import order_body
from tests.support.balancer import haproxy_binary
from tests.support.pg_pair import PgPair
from tests.support.postgres import fresh_postgres_database
from tests.support.server import ROOT, free_ports


def _free_run(n: int) -> int:
    """The first of ``n`` consecutive free loopback ports, below the kernel's ephemeral range
    (32768 up): there no process of the cluster (a node's peer listener on port 0, a client's
    connection) takes one of them between this check and the script's binds."""
    return free_ports(n)


def _script(command: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "scripts/cluster.sh", command],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _call(url: str, token: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_cluster_script_up_status_down(tmp_path: Path) -> None:
    haproxy_binary()
    state = tmp_path / "cluster"
    front = _free_run(4)  # the front, then nodes 1-3
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "PYORDER_CLUSTER_DIR": str(state),
        "PYORDER_CLUSTER_PORT": str(front),
        "PYORDER_CLUSTER_STATS_PORT": str(_free_run(1)),
        "PYORDER_CLUSTER_SANDBOX_PORT": str(_free_run(3)),
    }
    with fresh_postgres_database("pyorder_cluster_script") as dsn:
        env["PYORDER_CLUSTER_DSN"] = dsn
        try:
            up = _script("up", env)
            assert up.returncode == 0, up.stderr
            pids = {p.stem: int(p.read_text()) for p in state.glob("*.pid")}
            assert set(pids) == {"card1", "card2", "swift", "node1", "node2", "node3", "haproxy"}

            deadline = time.monotonic() + 10
            while True:
                status = _script("status", env)
                lines = [line.split() for line in status.stdout.splitlines()]
                seen = {w[1]: w[2:] for w in lines if w[0] == "haproxy" and w[1] != "pid"}
                if status.returncode == 0 and all(s[:1] == ["UP"] for s in seen.values()):
                    break
                assert time.monotonic() < deadline, status.stdout
                time.sleep(0.2)
            assert set(seen) == {"n1", "n2", "n3"}

            again = _script("up", env)
            assert again.returncode == 0, again.stderr
            assert {p.stem: int(p.read_text()) for p in state.glob("*.pid")} == pids

            issuer = TokenIssuer(load_or_create_secret(state / "data"))
            admin, buyer = issuer.mint(Role.ADMIN, "ops"), issuer.mint(Role.BUYER, "b1")
            url = f"http://127.0.0.1:{front}"
            code, wh = _call(url + "/v1/warehouses", admin, {"name": "w", "regions": ["north"]})
            assert code == 201, wh
            stock = [{"warehouse": wh["id"], "units": 5}]
            code, sku = _call(
                url + "/v1/skus",
                admin,
                {"title": "t", "price": 100, "currency": "CNY", "stock": stock},
            )
            assert code == 201, sku
            for _ in range(50):  # a node sells a new SKU once its stock lease is granted
                code, order = _call(
                    url + "/v1/orders", buyer, order_body([(sku["id"], 1)], "north")
                )
                if code == 201:
                    break
                time.sleep(0.1)
            assert code == 201, order
            assert _call(f"{url}/v1/orders/{order['id']}", buyer)[0] == 200
        finally:
            down = _script("down", env)
        assert down.returncode == 0, down.stderr
        for name, pid in pids.items():
            assert not _running(pid), f"{name} (pid {pid}) still runs after down"
        assert not list(state.glob("*.pid"))
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", front), timeout=1).close()


@pytest.mark.long
def test_cluster_script_on_its_own_primary_and_standby_fails_over() -> None:
    """By default ``up`` starts a PostgreSQL primary and its synchronous standby
    (``scripts/pg_pair.sh``) and gives the nodes the multi-host DSN: an order through the front,
    the primary killed and the standby promoted, orders through the front again, the first
    one still there; ``down`` stops the pair too."""
    haproxy_binary()
    # Not under pytest's tmp_path: as root, the postgres OS user must reach the pair's folder.
    state = Path(tempfile.mkdtemp(prefix="pyorder-cluster-"))
    state.chmod(0o755)
    front, pg = _free_run(4), _free_run(2)
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "PYORDER_CLUSTER_DIR": str(state),
        "PYORDER_CLUSTER_PORT": str(front),
        "PYORDER_CLUSTER_STATS_PORT": str(_free_run(1)),
        "PYORDER_CLUSTER_SANDBOX_PORT": str(_free_run(3)),
        "PYORDER_CLUSTER_PG_PORT": str(pg),
    }
    env.pop("PYORDER_CLUSTER_DSN", None)
    pair = PgPair(state / "pg-pair", "")
    try:
        up = _script("up", env)
        assert up.returncode == 0, up.stderr
        dsn = (state / "dsn").read_text().strip()
        assert f"127.0.0.1:{pg},127.0.0.1:{pg + 1}" in dsn, dsn
        assert "target_session_attrs=read-write" in dsn
        issuer = TokenIssuer(load_or_create_secret(state / "data"))
        admin, buyer = issuer.mint(Role.ADMIN, "ops"), issuer.mint(Role.BUYER, "b1")
        url = f"http://127.0.0.1:{front}"
        code, wh = _call(url + "/v1/warehouses", admin, {"name": "w", "regions": ["north"]})
        assert code == 201, wh
        stock = [{"warehouse": wh["id"], "units": 50}]
        code, sku = _call(
            url + "/v1/skus", admin, {"title": "t", "price": 100, "currency": "CNY", "stock": stock}
        )
        assert code == 201, sku
        first = _order_within(url, buyer, sku["id"], 10)
        pair.kill_primary()
        pair.promote()
        _order_within(url, buyer, sku["id"], 20)  # the nodes found the new primary
        assert _call(f"{url}/v1/orders/{first['id']}", buyer)[0] == 200
        servers = [int(w[4:]) for w in pair.status().split() if w.startswith("pid=")]
        assert servers, pair.status()
    finally:
        down = _script("down", env)
        shutil.rmtree(state, ignore_errors=True)
    assert down.returncode == 0, down.stderr
    for pid in servers:
        assert not _running(pid), f"PostgreSQL (pid {pid}) still runs after down"


def _order_within(url: str, buyer: str, sku: int, seconds: float) -> Any:
    """The first order through the front answered 201 within ``seconds`` (a node sells a new
    SKU once its stock lease is granted; after a failover, once it has rebuilt)."""
    deadline = time.monotonic() + seconds
    while True:
        code, order = _call(url + "/v1/orders", buyer, order_body([(sku, 1)], "north"))
        if code == 201:
            return order
        assert time.monotonic() < deadline, (code, order)
        time.sleep(0.1)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not reaped yet: setsid children of the script's shell) is not running.
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.rsplit(")", 1)[1].split()[0] != "Z"
