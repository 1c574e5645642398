"""HTTP benchmarks of pyorder with wrk, on loopback, bounded in time.

Starts ``pyorder-server`` on a data directory in a temporary folder (SQLite by default, or
PostgreSQL with ``--database postgresql://...``: a fresh database is created on that cluster and
dropped afterwards), seeds warehouses, regions and a catalogue with plenty of stock, and
measures with wrk (``apt-get install -y wrk``):

(a) single-order creation, ``POST /v1/orders`` (durable: answered after the group commit):
    requests/s, p50 and p99;
(b) the same body against a bare aiohttp + uvloop + orjson handler (``loadtest/bare_server.py``)
    in the same run, and the ratio (a)/(b) (target >= 0.6);
(c) batch intake, ``POST /v1/orders/batch`` with ``--batch-size`` orders per request: durable
    orders/s (acknowledged within wrk's window, each checked
    to be in the database) and p50/p99 per request
    (target 150,000 orders/s and p99 < 50 ms);
With ``--server-arg=--risk`` every order is assessed by risk control, the benchmark's buyer
allow-listed so that its orders are placed after being scored in full: run it with and without
to measure what risk control adds (issue 15: at most 1 ms on the single order's p99).
(d) on PostgreSQL, the floor of (c) in the same run: raw asyncpg COPY of the same rows into the
    same database, one transaction per ``--batch-size`` orders (two COPYs and the stock UPDATE
    of the batch's SKUs), rows built off the clock as copies of a row the server stored in (c)
    (the same address, and with ``--risk`` the same decision text); the ratio (c)/(d) (issue
    13: >= 0.95), and PostgreSQL's CPU per order in (c), (d) and (d') (all its processes).
    (d') when the server's commits in (c) held more orders than a request (its group commit
    merged requests), the same floor at the commits' mean size, to the hundred: a bigger
    transaction is faster by itself, and (c)/(d') compares the same transactions.

A JSON and a markdown summary go to ``--out`` (default ``results/``, which git ignores).

    python loadtest/http_bench.py                      # SQLite, 5 s per phase
    python loadtest/http_bench.py --database "$PYORDER_TEST_POSTGRES"
"""

import argparse
import asyncio
import json
import os
import platform
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parents[1]
LUA = Path(__file__).resolve().parent / "post.lua"
STOCK = 10**12
"""Units per SKU and warehouse: no benchmark run gets near it."""
SKUS = 16
REGIONS = ("east", "west")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(url: str, proc: subprocess.Popen[bytes], timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: the server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except urllib.error.HTTPError:
            return  # it answers (a 404/405 from the bare server is an answer)
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.05)
    raise RuntimeError(f"{url} did not become ready in {timeout_s} s")


@contextmanager
def process(
    cmd: list[str], log: Path, ready_url: str, cwd: Path | str = ROOT
) -> Iterator[subprocess.Popen[bytes]]:
    """A child process, stopped with SIGTERM (then SIGKILL) on exit."""
    with open(log, "ab") as out:
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_ready(ready_url, proc)
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


METRICS_TOKEN = "loadtest-metrics"
"""The ``--metrics-token`` of the servers the load tests start (``server_command``)."""


def server_command() -> list[str]:
    installed = shutil.which("pyorder-server")
    cmd = [installed] if installed else [sys.executable, "-m", "pyorder.server.main"]
    return [*cmd, "--metrics-token", METRICS_TOKEN]


def metrics_text(url: str) -> str:
    """The Prometheus text of a server started with ``server_command``."""
    req = urllib.request.Request(
        url + "/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        return str(resp.read().decode())


def call(url: str, method: str, token: str, body: object) -> Any:
    req = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        method=method,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())


def mint(data_dir: Path, role: str, subject: str) -> str:
    sys.path.insert(0, str(ROOT))
    from pyorder.auth import Role, TokenIssuer, load_or_create_secret

    return TokenIssuer(load_or_create_secret(data_dir)).mint(Role(role), subject)


def seed(url: str, data_dir: Path) -> list[int]:
    """Two warehouses serving two regions, SKUS SKUs with STOCK units in each; their ids."""
    admin, merchant = mint(data_dir, "admin", "bench"), mint(data_dir, "merchant", "bench")
    call(url + "/v1/warehouses", "POST", admin, {"name": "east", "regions": ["east", "west"]})
    call(url + "/v1/warehouses", "POST", admin, {"name": "west", "regions": ["west", "east"]})
    stock = [{"warehouse": 0, "units": STOCK}, {"warehouse": 1, "units": STOCK}]
    return [
        int(
            call(
                url + "/v1/skus",
                "POST",
                merchant,
                {
                    "title": f"bench item {i}",
                    "price": 1999 + i,
                    "currency": "CNY",
                    "stock": stock,
                },
            )["id"]
        )
        for i in range(SKUS)
    ]


def order(sku: int, i: int) -> dict[str, Any]:
    """One order of about 170 bytes of JSON."""
    return {
        "lines": [{"sku": sku, "quantity": 1 + i % 2}],
        "address": {
            "name": f"Buyer {i:06d}",
            "line1": f"{i % 999} Bench Road",
            "city": "Hangzhou",
            "region": REGIONS[i % 2],
            "postal_code": "310000",
        },
    }


def wrk(
    url: str,
    path: str,
    body: Path,
    token: str,
    *,
    threads: int,
    connections: int,
    seconds: float,
    method: str = "POST",
) -> dict[str, Any]:
    """One wrk run (``method`` with ``body``; a GET sends none); its JSON summary (see
    post.lua) with requests/s added."""
    cmd = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "10s",
        "-s",
        str(LUA),
        url,
        "--",
        path,
        str(body),
        token,
        method,
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60, check=True)
    line = next(ln for ln in out.stdout.splitlines() if ln.startswith('{"wrk_summary"'))
    summary: dict[str, Any] = json.loads(line)["wrk_summary"]
    summary["requests_per_s"] = summary["requests"] / (summary["duration_us"] / 1e6)
    summary["command"] = " ".join(cmd[:-2] + (["$TOKEN"] if token else ["''"]) + [method])
    return summary


def cpu_seconds(pid: int, thread: int | None = None) -> float:
    """User + system CPU time of a process (or of one of its threads) so far (Linux /proc)."""
    stat = Path(f"/proc/{pid}/stat" if thread is None else f"/proc/{pid}/task/{thread}/stat")
    return _stat_cpu(stat.read_text().rsplit(")", 1)[1].split())


def _stat_cpu(fields: list[str]) -> float:
    """User + system CPU seconds from the fields of ``/proc/.../stat`` after the command."""
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def postgres_cpu() -> dict[tuple[int, int], float]:
    """User + system CPU time so far of each PostgreSQL process on this machine, by pid and start
    time (a pid reused by a later process is another key; the benchmark's cluster is meant to
    be the only one busy)."""
    out: dict[tuple[int, int], float] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
            if text[text.index("(") + 1 : text.rindex(")")] != "postgres":
                continue
            fields = text.rsplit(")", 1)[1].split()
            out[(int(stat.parent.name), int(fields[19]))] = _stat_cpu(fields)
        except (OSError, ValueError):  # gone meanwhile
            continue
    return out


def postgres_cpu_since(before: dict[tuple[int, int], float]) -> float:
    """CPU seconds PostgreSQL's processes spent since ``before`` (``postgres_cpu``): those that
    lived throughout and those started since (one that ended meanwhile is not counted)."""
    return sum(t - before.get(k, 0.0) for k, t in postgres_cpu().items())


def commit_stats(url: str) -> dict[str, float]:
    """Sums and counts of the server's group-commit histograms (from /metrics)."""
    text = metrics_text(url)
    out: dict[str, float] = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name in (
            "pyorder_commit_seconds_sum",
            "pyorder_commit_seconds_count",
            "pyorder_commit_batch_items_sum",
        ):
            out[name] = float(value)
    return out


def server_load(
    pid: int, cpu_before: float, url: str, commits_before: dict[str, float], run: dict[str, Any]
) -> dict[str, float]:
    """What the server did during one wrk run: CPU cores used, commits and their mean size and
    duration (the window includes a little time after wrk's last request)."""
    seconds = run["duration_us"] / 1e6
    after = commit_stats(url)
    d = {k: after.get(k, 0.0) - commits_before.get(k, 0.0) for k in after}
    count = d.get("pyorder_commit_seconds_count", 0.0)
    return {
        "cpu_cores": (cpu_seconds(pid) - cpu_before) / seconds,
        "commits_per_s": count / seconds,
        "mean_commit_ms": 1000 * d.get("pyorder_commit_seconds_sum", 0.0) / count if count else 0.0,
        "mean_commit_items": d.get("pyorder_commit_batch_items_sum", 0.0) / count if count else 0.0,
    }


class OrderCounter:
    """Counts the orders in the server's database (durable orders)."""

    def __init__(self, sqlite_path: Path | None, dsn: str | None) -> None:
        self.sqlite_path, self.dsn = sqlite_path, dsn

    def settled(self, timeout_s: float = 10.0) -> int:
        """The count once requests left in flight by a finished wrk run have committed."""
        deadline = time.monotonic() + timeout_s
        last = self.count()
        while time.monotonic() < deadline:
            time.sleep(0.25)
            now = self.count()
            if now == last:
                return now
            last = now
        return last

    def count(self) -> int:
        if self.dsn is not None:
            return asyncio.run(_pg_count(self.dsn))
        assert self.sqlite_path is not None
        conn = sqlite3.connect(self.sqlite_path, timeout=30)
        try:
            return int(conn.execute("SELECT count(*) FROM orders").fetchone()[0])
        finally:
            conn.close()


async def raw_copy(
    dsn: str, skus: list[int], batch_size: int, seconds: float, first: int = 2**62
) -> dict[str, Any]:
    """Phase (d): raw asyncpg COPY of ``batch_size`` one-line orders per transaction (orders,
    lines, then the stock UPDATE of their SKUs in warehouse 0) for about ``seconds`` of database
    time; each batch's tuples are built before its clock starts, copies of the last order the
    server stored before ``first`` and of its line. Ids far above the server's."""
    import asyncpg

    sys.path.insert(0, str(ROOT))
    from pyorder._core import PLACED_ORDER_COLUMNS
    from pyorder.storage import codec

    conn = await asyncpg.connect(dsn)
    spent, orders = 0.0, 0
    pg_cpu = postgres_cpu()
    # The server's own rows as the template (its stored address, its risk decision when it
    # runs with --risk, its line's merchant), so that the floor writes the same bytes.
    columns = PLACED_ORDER_COLUMNS
    template = await conn.fetchrow(
        f"SELECT {', '.join(columns)} FROM orders WHERE id < $1 ORDER BY id DESC LIMIT 1", first
    )
    if template is None:
        raise RuntimeError("(d) copies the server's rows, and it stored none")
    priced = await conn.fetchrow(
        "SELECT unit_price, merchant FROM order_lines WHERE order_id = $1 LIMIT 1", template["id"]
    )
    if priced is None:
        raise RuntimeError(f"order {template['id']} has no line")
    head, tail, price = tuple(template)[1:7], tuple(template)[8:], tuple(priced)
    try:
        while spent < seconds:
            ids = range(first + orders, first + orders + batch_size)
            rows = [(i, *head, i, *tail) for i in ids]
            lines = [(i, 0, skus[i % len(skus)], 0, 1, *price) for i in ids]
            units: dict[int, int] = {}
            for line in lines:
                units[line[2]] = units.get(line[2], 0) + 1
            t0 = time.perf_counter()
            async with conn.transaction():
                await conn.copy_records_to_table("orders", records=rows, columns=columns)
                await conn.copy_records_to_table(
                    "order_lines", records=lines, columns=codec.LINE_COLUMN_NAMES
                )
                await conn.execute(
                    "UPDATE stock AS s SET reserved = s.reserved + d.n"
                    " FROM unnest($1::bigint[], $2::bigint[]) AS d(sku, n)"
                    " WHERE s.sku = d.sku AND s.warehouse = 0",
                    list(units),
                    list(units.values()),
                )
            spent += time.perf_counter() - t0
            orders += batch_size
        pg_spent = postgres_cpu_since(pg_cpu)  # while its backend lives: one gone is not counted
    finally:
        await conn.close()
    return {
        "orders": orders,
        "seconds": spent,
        "durable_orders_per_s": orders / spent,
        "postgres_cpu_us_per_order": 1e6 * pg_spent / orders,
    }


async def _pg_count(dsn: str) -> int:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM orders"))
    finally:
        await conn.close()


async def _pg_execute(dsn: str, sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@contextmanager
def fresh_database(dsn: str) -> Iterator[str]:
    name = f"pyorder_bench_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    asyncio.run(_pg_execute(dsn, f'CREATE DATABASE "{name}"'))
    try:
        yield urlunsplit(urlsplit(dsn)._replace(path="/" + name))
    finally:
        asyncio.run(_pg_execute(dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def run(args: argparse.Namespace) -> dict[str, Any]:
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install -y wrk")
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="pyorder-bench-")))
        data_dir = tmp / "data"
        database = stack.enter_context(fresh_database(args.database)) if args.database else None
        port, bare_port = free_port(), free_port()
        url, bare_url = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{bare_port}"
        cmd = [*server_command(), "--port", str(port), "--data-dir", str(data_dir)]
        if database:
            cmd += ["--database", database]
        cmd += args.server_arg
        server = stack.enter_context(process(cmd, tmp / "server.log", url + "/readyz"))
        bare_cmd = [
            sys.executable,
            str(ROOT / "loadtest" / "bare_server.py"),
            "--port",
            str(bare_port),
        ]
        stack.enter_context(process(bare_cmd, tmp / "bare.log", bare_url + "/"))
        skus = seed(url, data_dir)
        buyer = mint(data_dir, "buyer", "bench-buyer")
        if "--risk" in args.server_arg:
            # Every order is assessed in full (features, score, reasons, decision), and the
            # one buyer of the benchmark, ordering thousands a second, is allow-listed so that
            # its orders are still placed (an allow list decides after the score is taken).
            entry = {"list": "allow", "kind": "buyer", "value": "bench-buyer"}
            call(url + "/v1/risk/lists", "POST", mint(data_dir, "admin", "bench"), entry)
        single = tmp / "single.json"
        single.write_text(json.dumps(order(skus[0], 1)))
        batch = tmp / "batch.json"
        batch.write_text(
            json.dumps({"orders": [order(skus[i % SKUS], i) for i in range(args.batch_size)]})
        )
        counter = OrderCounter(None if database else data_dir / "pyorder.sqlite3", database)
        common = {"threads": args.threads, "seconds": args.duration}

        print(
            f"pyorder on {'PostgreSQL' if database else 'SQLite'}; wrk -t{args.threads}, "
            f"{args.duration:g} s per phase",
            flush=True,
        )
        wrk(
            url,
            "/v1/orders",
            single,
            buyer,
            connections=args.connections,
            threads=args.threads,
            seconds=1,
        )  # warm-up
        before, cpu, commits = counter.settled(), cpu_seconds(server.pid), commit_stats(url)
        a = wrk(url, "/v1/orders", single, buyer, connections=args.connections, **common)
        a["server"] = server_load(server.pid, cpu, url, commits, a)
        a["durable_orders"] = counter.settled() - before
        if a["errors"]["status"] or a["durable_orders"] < a["requests"]:
            raise SystemExit(
                f"single phase: {a['errors']} errors, {a['durable_orders']} orders "
                f"stored for {a['requests']} acknowledged"
            )
        a["durable_orders_per_s"] = a["requests_per_s"]
        b = wrk(bare_url, "/v1/orders", single, "", connections=args.connections, **common)
        pairs = []
        for _ in range(args.pairs):
            # Short (a), (b) pairs back to back: each ratio sees nearly the same machine, so
            # their median resists the noise of a shared machine better than (a)/(b) above.
            short = {"threads": args.threads, "seconds": args.pair_seconds}
            before = counter.settled()
            pa = wrk(url, "/v1/orders", single, buyer, connections=args.connections, **short)
            if pa["errors"]["status"] or counter.settled() - before < pa["requests"]:
                raise SystemExit(f"single pair: {pa['errors']} errors or orders not stored")
            pb = wrk(bare_url, "/v1/orders", single, "", connections=args.connections, **short)
            pairs.append(pa["requests_per_s"] / pb["requests_per_s"])
        before, cpu, commits = counter.settled(), cpu_seconds(server.pid), commit_stats(url)
        pg_cpu = postgres_cpu() if database else {}
        c = wrk(url, "/v1/orders/batch", batch, buyer, connections=args.batch_connections, **common)
        c["server"] = server_load(server.pid, cpu, url, commits, c)
        if database:  # per order acknowledged (a little after wrk's window is in the sum)
            spent = postgres_cpu_since(pg_cpu)
            c["server"]["postgres_cpu_us_per_order"] = (
                1e6 * spent / (c["requests"] * args.batch_size)
            )
        c["durable_orders"] = counter.settled() - before
        # Orders acknowledged within wrk's window (each answered batch created all of its
        # orders, checked against the database; requests still in flight when wrk stopped
        # commit too but are not counted).
        acknowledged = c["requests"] * args.batch_size
        if c["errors"]["status"] or c["durable_orders"] < acknowledged:
            raise SystemExit(
                f"batch phase: {c['errors']} errors, {c['durable_orders']} orders "
                f"stored for {acknowledged} acknowledged"
            )
        c["durable_orders_per_s"] = acknowledged / (c["duration_us"] / 1e6)
        c["batch_size"] = args.batch_size
        c["body_bytes"] = batch.stat().st_size
        d = d_same = None
        if database:
            d = asyncio.run(raw_copy(database, skus, args.batch_size, args.duration))
            # The server's group commit merges requests: the floor at its commits' own size
            # too (to the hundred), since a bigger transaction alone is faster.
            size = round(c["server"]["mean_commit_items"] / 100) * 100
            if size > args.batch_size:
                d_same = asyncio.run(
                    raw_copy(database, skus, size, args.duration, first=2**62 + 2**40)
                )
                d_same["batch_size"] = size
    return {
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "storage": "postgresql" if args.database else "sqlite",
        "single": a,
        "bare": b,
        "ratio_single_to_bare": a["requests_per_s"] / b["requests_per_s"],
        "paired_ratios": pairs,
        "paired_ratio_median": statistics.median(pairs) if pairs else None,
        "pair_seconds": args.pair_seconds,
        "batch": c,
        "raw_copy": d,
        "ratio_batch_to_raw_copy": d and c["durable_orders_per_s"] / d["durable_orders_per_s"],
        "raw_copy_commit_size": d_same,
        "ratio_batch_to_raw_copy_commit_size": d_same
        and c["durable_orders_per_s"] / d_same["durable_orders_per_s"],
        "targets": {"ratio": 0.6, "batch_orders_per_s": 150_000, "batch_p99_ms": 50},
    }


def markdown(r: dict[str, Any]) -> str:
    a, b, c = r["single"], r["bare"], r["batch"]

    def ms(us: float) -> str:
        return f"{us / 1000:.2f}"

    return "\n".join(
        [
            f"# pyorder HTTP benchmark ({r['storage']}, {r['when']})",
            "",
            "| phase | requests/s | p50 ms | p99 ms | errors (non-2xx, timeouts) | durable orders/s |",
            "|---|---|---|---|---|---|",
            f"| (a) POST /v1/orders | {a['requests_per_s']:,.0f} | {ms(a['latency_us']['p50'])} | "
            f"{ms(a['latency_us']['p99'])} | {a['errors']['status']}, {a['errors']['timeout']} | "
            f"{a['durable_orders_per_s']:,.0f} |",
            f"| (b) bare handler | {b['requests_per_s']:,.0f} | {ms(b['latency_us']['p50'])} | "
            f"{ms(b['latency_us']['p99'])} | {b['errors']['status']}, {b['errors']['timeout']} | - |",
            f"| (c) POST /v1/orders/batch x{c['batch_size']} | {c['requests_per_s']:,.1f} | "
            f"{ms(c['latency_us']['p50'])} | {ms(c['latency_us']['p99'])} | "
            f"{c['errors']['status']}, {c['errors']['timeout']} | {c['durable_orders_per_s']:,.0f} |",
            "",
            f"Ratio (a)/(b): **{r['ratio_single_to_bare']:.2f}** (target >= 0.6). "
            f"Batch: **{c['durable_orders_per_s']:,.0f} durable orders/s** (target 150,000), "
            f"p99 **{ms(c['latency_us']['p99'])} ms** per request (target < 50 ms).",
            "",
            *_raw_copy(r),
            *_paired(r),
            "Server during (a): {cpu_cores:.2f} cores, {commits_per_s:,.0f} commits/s of "
            "{mean_commit_items:,.0f} items, {mean_commit_ms:.2f} ms each.".format(**a["server"]),
            "Server during (c): {cpu_cores:.2f} cores, {commits_per_s:,.0f} commits/s of "
            "{mean_commit_items:,.0f} items, {mean_commit_ms:.2f} ms each.".format(**c["server"])
            + _postgres_cpu(c["server"]),
            "",
            "Commands: " + "; ".join(f"`{x['command']}`" for x in (a, b, c)),
            "",
        ]
    )


def _raw_copy(r: dict[str, Any]) -> list[str]:
    """(d), and (d') when it was measured: the floors and (c)'s ratio to each."""
    out = []
    for key, tag, what, why in (
        ("raw_copy", "d", "raw asyncpg COPY of the same rows", "target >= 0.95"),
        ("raw_copy_commit_size", "d'", "the same", "the server's mean commit"),
    ):
        d = r.get(key)
        if not d:
            continue
        size = d.get("batch_size", r["batch"]["batch_size"])
        out += [
            f"({tag}) {what}, {size:,} per transaction ({why}): {d['durable_orders_per_s']:,.0f}"
            f" orders/s; ratio (c)/({tag}): **{r['ratio_batch_to_' + key]:.2f}**; PostgreSQL's CPU"
            f" {d['postgres_cpu_us_per_order']:.1f} µs an order.",
            "",
        ]
    return out


def _postgres_cpu(server: dict[str, float]) -> str:
    if "postgres_cpu_us_per_order" not in server:
        return ""
    return f" PostgreSQL's CPU: {server['postgres_cpu_us_per_order']:.1f} µs an order."


def _paired(r: dict[str, Any]) -> list[str]:
    pairs = r["paired_ratios"]
    if not pairs:
        return []
    each = ", ".join(f"{x:.2f}" for x in pairs)
    return [
        f"Ratio (a)/(b) over {len(pairs)} pairs of {r['pair_seconds']:g} s back to back: "
        f"median **{r['paired_ratio_median']:.2f}** ({each}).",
        "",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="pyorder HTTP benchmarks with wrk (loopback).")
    parser.add_argument(
        "--database",
        help="postgresql://... DSN of a cluster (a fresh database "
        "is created there and dropped); default: SQLite in a temporary folder",
    )
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per phase (>= 1)")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections, (a) and (b)")
    parser.add_argument("--batch-connections", type=int, default=4, help="wrk connections, (c)")
    parser.add_argument("--batch-size", type=int, default=1000, help="orders per batch request")
    parser.add_argument(
        "--pairs",
        type=int,
        default=5,
        help="then this many short (a), (b) pairs back to back: the median of their ratios",
    )
    parser.add_argument("--pair-seconds", type=float, default=2.0, help="seconds per pair phase")
    parser.add_argument(
        "--server-arg",
        action="append",
        default=[],
        help="extra pyorder-server argument (repeatable), e.g. --server-arg=--commit-window-ms=2",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "results", help="summary directory")
    args = parser.parse_args(argv)
    if args.duration < 1:
        parser.error("--duration must be at least 1 s (wrk's resolution)")
    result = run(args)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = f"http_bench-{result['storage']}-{time.strftime('%Y%m%d-%H%M%S')}"
    (args.out / f"{stem}.json").write_text(json.dumps(result, indent=2) + "\n")
    text = markdown(result)
    (args.out / f"{stem}.md").write_text(text)
    print(text)
    print(f"summary: {args.out / stem}.json, .md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
