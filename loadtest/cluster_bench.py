"""1, 2, 3 ``pyorder-server --cluster`` nodes on one PostgreSQL (issue 13), against one solo
server (no ``--cluster``) as the baseline, in the same run, each bounded in time.

For every configuration (solo x1 first, then ``--nodes``, default 1,2,3 cluster nodes) a fresh
database is created on the PostgreSQL cluster of ``--database`` (or ``PYORDER_TEST_POSTGRES``)
and dropped afterwards. A solo server seeds the catalogue (that of ``http_bench.py``, plus one
hot SKU of ``--stock`` units); for a cluster configuration it is stopped and the nodes start on
the same database and data directory (one token secret). Then:

(a) single orders, ``POST /v1/orders``: one wrk per node at once (``--duration`` s, the
    ``--connections`` split over the nodes; node k orders SKU k unless ``--same-sku``), summed;
    durable = acknowledged and found in the database afterwards;
(b) batches, ``POST /v1/orders/batch`` of ``--batch-size`` orders over 16 SKUs, the same way
    (``--batch-size 0`` skips it);
(c) CPU seconds per durable order during (a) and (b), from ``/proc/<pid>/stat`` (user +
    system): the pyorder server processes; PostgreSQL's backends of the database (found in
    ``pg_stat_activity``, polled every 0.2 s so that backends born during the run count from
    zero); and PostgreSQL's shared background processes (walwriter, checkpointer, background
    writer), which also serve any other database of that cluster;
(d) a flash sale: ``--demand`` x ``--stock`` requests for one unit of the hot SKU, sent
    round-robin over the nodes by ``--sale-clients`` aiohttp clients in this process, while
    the database is sampled every ``--sample-ms`` (``on_hand - reserved - sold`` of the hot
    SKU, summed over its rows; it never rises during a sale: orders are not cancelled and do
    not expire within it). Counted: units sold (from the orders stored: must not exceed the
    stock; it should equal it), every answer by status and error code, the time to sell out,
    and false "out of stock" answers (see ``false_out_of_stock``).

The markdown table and a JSON summary go to ``--out`` (default ``results/``); the exit status
is 1 when a unit was oversold or an acknowledged order is missing from the database.

    python loadtest/cluster_bench.py --database "$PYORDER_TEST_POSTGRES"
    python loadtest/cluster_bench.py --nodes 1,2,3 --duration 5 --stock 2000 --demand 3
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import itertools
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parent))

import http_bench as hb  # a script beside this one

PG_SHARED = ("walwriter", "checkpointer", "background writer")
"""PostgreSQL's background processes that work for every database of the cluster."""


# --- nodes -----------------------------------------------------------------------------------


@dataclass
class Node:
    url: str
    proc: subprocess.Popen[bytes]


def wait_ready(node: Node, timeout_s: float = 60) -> None:
    """Until ``/readyz`` answers 200 (a cluster node claims its lease and number first)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if node.proc.poll() is not None:
            raise RuntimeError(f"{node.url}: the server exited with {node.proc.returncode}")
        try:
            with urllib.request.urlopen(node.url + "/readyz", timeout=1) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{node.url} did not become ready in {timeout_s} s")


def stop(node: Node) -> None:
    """SIGTERM (a cluster node gives its leased units back), SIGKILL after 30 s."""
    if node.proc.poll() is None:
        node.proc.send_signal(signal.SIGTERM)
        try:
            node.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            node.proc.kill()
            node.proc.wait()


@contextmanager
def node(tmp: Path, data: Path, db: str, cluster: bool, extra: list[str]) -> Iterator[Node]:
    port = hb.free_port()
    cmd = [*hb.server_command(), "--port", str(port), "--data-dir", str(data), "--database", db]
    cmd += ["--cluster"] if cluster else []
    with open(tmp / f"server-{port}.log", "ab") as log:
        proc = subprocess.Popen(cmd, cwd=hb.ROOT, stdout=log, stderr=subprocess.STDOUT)
    started = Node(f"http://127.0.0.1:{port}", proc)
    try:
        wait_ready(started)
        yield started
    finally:
        stop(started)


def seed_hot_sku(url: str, data: Path, units: int) -> int:
    """One SKU with ``units`` units in warehouse 0 (which serves both regions); its id."""
    merchant = hb.mint(data, "merchant", "bench")
    body = {"title": "hot item", "price": 999, "currency": "CNY"}
    body["stock"] = [{"warehouse": 0, "units": units}]
    return int(hb.call(url + "/v1/skus", "POST", merchant, body)["id"])


# --- CPU -------------------------------------------------------------------------------------


def proc_cpu(pid: int) -> float | None:
    """User + system CPU seconds of a process so far; None when /proc does not show it (gone,
    or PostgreSQL runs on another machine)."""
    try:
        return hb.cpu_seconds(pid)
    except (OSError, IndexError, ValueError):
        return None


@dataclass
class CpuMeter:
    """CPU seconds used during a window by the server processes and by PostgreSQL's processes
    (see the module doc, (c)). ``poll`` every 0.2 s while the window runs."""

    servers: list[int]
    conn: asyncpg.Connection
    first: dict[int, float] = field(default_factory=dict)
    last: dict[int, float] = field(default_factory=dict)
    group: dict[int, str] = field(default_factory=dict)
    polls: int = 0

    async def poll(self) -> None:
        rows = await self.conn.fetch(
            "SELECT pid, backend_type FROM pg_stat_activity WHERE pid <> pg_backend_pid()"
            " AND (datname = current_database() OR backend_type = ANY($1::text[]))",
            list(PG_SHARED),
        )
        seen = [(pid, "pyorder") for pid in self.servers]
        seen += [
            (int(r["pid"]), "pg_shared" if r["backend_type"] in PG_SHARED else "pg_backends")
            for r in rows
        ]
        for pid, group in seen:
            cpu = proc_cpu(pid)
            if cpu is None:
                continue
            if pid not in self.first:
                # Seen at the first poll: counted from now. Born later: counted from its start.
                self.first[pid] = cpu if self.polls == 0 else 0.0
                self.group[pid] = group
            self.last[pid] = cpu
        self.polls += 1

    def seconds(self) -> dict[str, float | None]:
        out: dict[str, float | None] = {"pyorder": None, "pg_backends": None, "pg_shared": None}
        for pid, group in self.group.items():
            out[group] = (out[group] or 0.0) + self.last[pid] - self.first[pid]
        return out


async def metered(
    servers: list[int], dsn: str, work: asyncio.Future[Any]
) -> tuple[Any, dict[str, float | None]]:
    """``work``'s result and the CPU seconds (by group) spent while it ran."""
    conn = await asyncpg.connect(dsn)
    try:
        meter = CpuMeter(servers, conn)
        await meter.poll()
        while not work.done():
            await asyncio.wait([work], timeout=0.2)
            await meter.poll()
        return work.result(), meter.seconds()
    finally:
        await conn.close()


# --- throughput ------------------------------------------------------------------------------


def wrk_each(
    nodes: list[Node], path: str, bodies: list[Path], token: str, connections: int, seconds: float
) -> list[dict[str, Any]]:
    """One wrk per node, all at once (one thread each), ``connections`` split over them."""
    per_node = max(1, connections // len(nodes))
    with ThreadPoolExecutor(len(nodes)) as pool:
        runs = [
            pool.submit(
                hb.wrk,
                n.url,
                path,
                body,
                token,
                threads=1,
                connections=per_node,
                seconds=seconds,
            )
            for n, body in zip(nodes, bodies, strict=True)
        ]
        return [r.result() for r in runs]


def throughput(
    nodes: list[Node],
    db: str,
    path: str,
    bodies: list[Path],
    token: str,
    *,
    per_request: int,
    connections: int,
    seconds: float,
) -> dict[str, Any]:
    """Orders/s over all nodes, latency per node, CPU per order. An order counts when the
    server answered it created (a batch's answer holds one result per order: some may be
    refused out of stock while a cluster node's lease refills): wrk's 2xx answers times the
    orders per request, less (batches) the stock-outs the nodes counted (``/metrics``).
    Every order the nodes counted created must be in the database afterwards (``missing``
    otherwise)."""
    counter = hb.OrderCounter(None, db)
    before, counts = counter.settled(), order_counts(nodes)

    async def go() -> tuple[Any, dict[str, float | None]]:
        work = asyncio.ensure_future(
            asyncio.to_thread(wrk_each, nodes, path, bodies, token, connections, seconds)
        )
        return await metered([n.proc.pid for n in nodes], db, work)

    runs, cpu = asyncio.run(go())
    known = [v for v in cpu.values() if v is not None]
    cpu["total"] = sum(known) if known else None
    stored = counter.settled() - before
    created, stockouts = (a - b for a, b in zip(order_counts(nodes), counts, strict=True))
    # wrk counts every answer; a non-2xx one placed no order (a single order refused out of
    # stock is a 409). A batch answers 200 with one result per order: its stock-outs (of
    # requests still in flight when wrk stopped too, a few at most) are subtracted.
    answered = per_request * sum(r["requests"] - r["errors"]["status"] for r in runs)
    acknowledged = answered - stockouts if per_request > 1 else answered
    errors = sum(r["errors"]["status"] + r["errors"]["timeout"] for r in runs)
    window_s = max(r["duration_us"] for r in runs) / 1e6
    return {
        "path": path,
        "per_request": per_request,
        "connections_per_node": max(1, connections // len(nodes)),
        "acknowledged_orders": acknowledged,
        "created_by_metrics": created,
        "stockouts": stockouts,
        "stored_orders": stored,
        "missing": max(0, created - stored),
        "errors": errors,
        "orders_per_s": acknowledged / window_s,
        "p50_ms": [r["latency_us"]["p50"] / 1000 for r in runs],
        "p99_ms": [r["latency_us"]["p99"] / 1000 for r in runs],
        "cpu_s": cpu,
        # Per stored order: requests in flight when wrk stopped cost CPU and are stored too.
        "cpu_us_per_order": {
            k: 1e6 * v / stored if v is not None and stored else None for k, v in cpu.items()
        },
        "commands": [r["command"] for r in runs],
    }


def order_counts(nodes: list[Node]) -> tuple[int, int]:
    """Orders answered created and orders refused out of stock so far, over the nodes."""
    created = stockouts = 0
    for n in nodes:
        for line in hb.metrics_text(n.url).splitlines():
            name, _, value = line.partition(" ")
            if name == "pyorder_orders_created_total":
                created += int(float(value))
            elif name == "pyorder_stockouts_total":
                stockouts += int(float(value))
    return created, stockouts


# --- flash sale ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Answer:
    sent_s: float
    answered_s: float
    status: int
    """0: no answer (connection error or timeout)."""
    code: str
    """The error body's ``error.code``, "" for a 2xx."""


async def _buy(
    session: aiohttp.ClientSession, url: str, body: bytes, token: str, t0: float
) -> Answer:
    loop = asyncio.get_running_loop()
    sent = loop.time() - t0
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    try:
        async with session.post(url + "/v1/orders", data=body, headers=headers) as resp:
            payload = await resp.read()
            status = resp.status
    except (aiohttp.ClientError, TimeoutError):
        return Answer(sent, loop.time() - t0, 0, "no answer")
    code = ""
    if status >= 300:
        try:
            code = str(json.loads(payload)["error"]["code"])
        except (ValueError, KeyError, TypeError):
            code = "?"
    return Answer(sent, loop.time() - t0, status, code)


async def _remaining(conn: asyncpg.Connection, sku: int) -> int:
    return int(
        await conn.fetchval(
            "SELECT COALESCE(SUM(on_hand - reserved - sold), 0) FROM stock WHERE sku = $1", sku
        )
    )


async def sale_run(
    urls: list[str],
    db: str,
    sku: int,
    tokens: list[str],
    *,
    requests: int,
    clients: int,
    sample_s: float,
) -> tuple[list[Answer], list[tuple[float, int]]]:
    """``requests`` requests for one unit of ``sku``, round-robin over ``urls``, ``clients`` at
    a time; the answers, and the samples (time the query was sent, units left) taken meanwhile
    and until the units left stop moving after the last answer. Times in s from the start."""
    body = json.dumps(hb.order(sku, 0) | {"lines": [{"sku": sku, "quantity": 1}]}).encode()
    answers: list[Answer] = []
    samples: list[tuple[float, int]] = []
    turn = itertools.count()
    conn = await asyncpg.connect(db)
    loop = asyncio.get_running_loop()
    t0 = loop.time()

    async def client(k: int, session: aiohttp.ClientSession) -> None:
        while (i := next(turn)) < requests:
            url = urls[i % len(urls)]
            answers.append(await _buy(session, url, body, tokens[k % len(tokens)], t0))

    async def sampler(done: asyncio.Event) -> None:
        settled = 0
        while settled < 3:  # three equal samples after the last answer
            at = loop.time() - t0
            samples.append((at, await _remaining(conn, sku)))
            if done.is_set():
                same = len(samples) > 1 and samples[-1][1] == samples[-2][1]
                settled = settled + 1 if same else 0
            await asyncio.sleep(sample_s)

    try:
        done = asyncio.Event()
        sampling = asyncio.create_task(sampler(done))
        connector = aiohttp.TCPConnector(limit=clients)
        timeout = aiohttp.ClientTimeout(total=30)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            await asyncio.gather(*(client(k, session) for k in range(clients)))
        done.set()
        await sampling
    finally:
        await conn.close()
    return answers, samples


def false_out_of_stock(
    answers: list[Answer], samples: list[tuple[float, int]], grace_s: float
) -> list[Answer]:
    """The "out of stock" answers (409 ``out_of_stock``) given while units were still unsold:
    answered at a time t such that a database sample sent at or after t + ``grace_s`` still
    shows ``on_hand - reserved - sold > 0``, or a request that was sent after t got a 201.

    The units left never rise during a sale, so such a later sample proves units were unsold
    at t + grace_s, hence at t. With grace_s = 0 that is the database's view at t, which also
    counts units a node's core had reserved by t but not yet committed (a group commit takes
    milliseconds). With grace_s at least the longest 201 latency, every order reserved by t
    has committed by t + grace_s, so the units shown were in nobody's order at t: in the pool
    or in a node's lease. A 201 sent after t likewise took a unit nobody held at t. The count
    misses the false answers whose proof fell between two samples (``--sample-ms``)."""
    # The last sample time showing units left at or after each time: any sample at
    # time >= t + grace with units > 0 exists iff the last such sample is >= t + grace.
    last_with_units = max((at for at, units in samples if units > 0), default=-1.0)
    sent_201 = sorted(a.sent_s for a in answers if a.status == 201)
    out = []
    for a in answers:
        if a.status != 409 or a.code != "out_of_stock":
            continue
        later_sale = bisect.bisect_right(sent_201, a.answered_s) < len(sent_201)
        if last_with_units >= a.answered_s + grace_s or later_sale:
            out.append(a)
    return out


async def _sold(db: str, sku: int) -> dict[str, int]:
    conn = await asyncpg.connect(db)
    try:
        row = await conn.fetchrow(
            "SELECT COALESCE(SUM(on_hand), 0) AS on_hand, COALESCE(SUM(reserved), 0) AS reserved,"
            " COALESCE(SUM(sold), 0) AS sold,"
            " (SELECT COALESCE(SUM(ol.quantity), 0) FROM order_lines ol WHERE ol.sku = $1)"
            " AS ordered, (SELECT count(DISTINCT ol.order_id) FROM order_lines ol"
            " WHERE ol.sku = $1) AS orders FROM stock WHERE sku = $1",
            sku,
        )
    finally:
        await conn.close()
    assert row is not None
    return {k: int(v) for k, v in dict(row).items()}


def flash_sale(
    nodes: list[Node], db: str, sku: int, tokens: list[str], args: argparse.Namespace
) -> dict[str, Any]:
    requests = round(args.demand * args.stock)
    answers, samples = asyncio.run(
        sale_run(
            [n.url for n in nodes],
            db,
            sku,
            tokens,
            requests=requests,
            clients=args.sale_clients,
            sample_s=args.sample_ms / 1000,
        )
    )
    books = asyncio.run(_sold(db, sku))
    by_answer = Counter(f"{a.status} {a.code}".strip() for a in answers)
    ok = [a for a in answers if a.status == 201]
    slowest_201_s = max((a.answered_s - a.sent_s for a in ok), default=0.0)
    grace_s = max(args.grace_ms / 1000, slowest_201_s)
    strict = false_out_of_stock(answers, samples, grace_s)
    db_view = false_out_of_stock(answers, samples, 0.0)
    sold_out_db = next((at for at, units in samples if units == 0), None)
    return {
        "stock": args.stock,
        "requests": requests,
        "clients": args.sale_clients,
        "answers": dict(sorted(by_answer.items())),
        "acknowledged_units": len(ok),
        "units_sold": books["ordered"],
        "books": books,
        "oversold": books["ordered"] > args.stock or books["reserved"] + books["sold"] > args.stock,
        "missing": max(0, len(ok) - books["orders"]),
        "sold_out": books["ordered"] == args.stock,
        "sell_out_s": max(a.answered_s for a in ok)
        if ok and books["ordered"] == args.stock
        else None,
        "sell_out_db_s": sold_out_db,
        "false_out_of_stock": len(strict),
        "out_of_stock_while_db_had_units": len(db_view),
        "grace_s": grace_s,
        "slowest_201_s": slowest_201_s,
        "samples": len(samples),
        "units_left_series": [[round(at, 4), units] for at, units in samples],
        "sample_ms": args.sample_ms,
        "duration_s": max((a.answered_s for a in answers), default=0.0),
    }


# --- one configuration -----------------------------------------------------------------------


def configuration(args: argparse.Namespace, dsn: str, mode: str, count: int) -> dict[str, Any]:
    """Fresh database, catalogue by a solo server, then ``count`` nodes of ``mode``; measured."""
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="pyorder-cluster-")))
        data = tmp / "data"
        db = stack.enter_context(hb.fresh_database(dsn))
        solo = stack.enter_context(node(tmp, data, db, False, args.server_arg))
        skus = hb.seed(solo.url, data)
        hot = seed_hot_sku(solo.url, data, args.stock)
        nodes = [solo]
        if mode == "cluster":  # the catalogue is read-only on cluster nodes: seeded solo first
            stop(solo)
            nodes = [
                stack.enter_context(node(tmp, data, db, True, args.server_arg))
                for _ in range(count)
            ]
        token = hb.mint(data, "buyer", "bench-buyer")
        singles = []
        for k in range(len(nodes)):
            body = tmp / f"single{k}.json"
            sku = skus[0] if args.same_sku else skus[k % hb.SKUS]
            body.write_text(json.dumps(hb.order(sku, 1)))
            singles.append(body)
        batch = tmp / "batch.json"
        batch.write_text(
            json.dumps({"orders": [hb.order(skus[i % hb.SKUS], i) for i in range(args.batch_size)]})
        )
        label = f"{mode} x{count}"
        print(f"{label}: warm-up, single orders", flush=True)
        common = {"connections": args.connections, "seconds": args.duration}
        wrk_each(nodes, "/v1/orders", singles, token, args.connections, 1)  # warm-up, leases
        single = throughput(nodes, db, "/v1/orders", singles, token, per_request=1, **common)
        result: dict[str, Any] = {"mode": mode, "nodes": count, "single": single}
        if args.batch_size:
            print(f"{label}: batches", flush=True)
            result["batch"] = throughput(
                nodes,
                db,
                "/v1/orders/batch",
                [batch] * len(nodes),
                token,
                per_request=args.batch_size,
                connections=args.batch_connections,
                seconds=args.duration,
            )
        print(f"{label}: flash sale", flush=True)
        buyers = [hb.mint(data, "buyer", f"sale-buyer-{i}") for i in range(args.sale_clients)]
        result["sale"] = flash_sale(nodes, db, hot, buyers, args)
        return result


# --- report ----------------------------------------------------------------------------------


def ratios(rows: list[dict[str, Any]]) -> None:
    """Each row's throughput and CPU per order against the solo row (in place)."""
    base = next((r for r in rows if r["mode"] == "solo"), None)
    if base is None:
        return
    for r in rows:
        for phase in ("single", "batch"):
            if phase not in r or phase not in base:
                continue
            r[phase]["ratio_to_solo"] = r[phase]["orders_per_s"] / base[phase]["orders_per_s"]
            cpu, solo = r[phase]["cpu_us_per_order"], base[phase]["cpu_us_per_order"]
            r[phase]["cpu_ratio_to_solo"] = {
                k: cpu[k] / solo[k] if cpu[k] is not None and solo[k] else None for k in cpu
            }


def _n(x: float | None, fmt: str = ",.0f") -> str:
    return "-" if x is None else format(x, fmt)


def markdown(result: dict[str, Any]) -> str:
    lines = [
        f"# pyorder cluster benchmark ({result['when']}, {result['machine']['cpus']} CPUs)",
        "",
        "| config | single orders/s | x solo | p99 ms (max node) | batch orders/s | x solo "
        "| CPU µs/order pyorder | PG backends | PG shared | total (x solo) | sold / stock "
        "| false OOS "
        "| OOS, DB had units | sell-out s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        s, b, sale = r["single"], r.get("batch"), r["sale"]
        cpu = s["cpu_us_per_order"]
        lines.append(
            f"| {r['mode']} x{r['nodes']} | {s['orders_per_s']:,.0f} "
            f"| {_n(s.get('ratio_to_solo'), '.2f')} | {max(s['p99_ms']):.1f} "
            f"| {_n(b['orders_per_s'] if b else None)} "
            f"| {_n(b.get('ratio_to_solo') if b else None, '.2f')} "
            f"| {_n(cpu['pyorder'])} | {_n(cpu['pg_backends'])} | {_n(cpu['pg_shared'])} "
            f"| {_n(cpu['total'])} ({_n(s.get('cpu_ratio_to_solo', {}).get('total'), '.2f')}) "
            f"| {sale['units_sold']:,} / {sale['stock']:,}"
            f"{' OVERSOLD' if sale['oversold'] else ''} "
            f"| {sale['false_out_of_stock']} | {sale['out_of_stock_while_db_had_units']} "
            f"| {_n(sale['sell_out_s'], '.2f')} |"
        )
    lines += [
        "",
        "CPU µs/order: single orders (CPU seconds during the wrk window / orders stored). "
        "Batch CPU µs/order: "
        + "; ".join(
            f"{r['mode']} x{r['nodes']} "
            + ", ".join(f"{k} {_n(v)}" for k, v in r["batch"]["cpu_us_per_order"].items())
            for r in result["rows"]
            if "batch" in r
        )
        + ".",
        "",
        "Orders refused out of stock during the throughput phases (a cluster node's lease ran"
        " dry before its refill; the pool holds 10^12 units a SKU): "
        + "; ".join(
            f"{r['mode']} x{r['nodes']} single {r['single']['stockouts']:,}"
            + (f", batch {r['batch']['stockouts']:,}" if "batch" in r else "")
            for r in result["rows"]
        )
        + ".",
        "",
        "False OOS: 409 out_of_stock answered at t while a database sample sent at or after "
        "t + grace (max of --grace-ms and the slowest 201 of the sale) still showed "
        "on_hand - reserved - sold > 0, or while a later-sent request still got a 201. "
        "'OOS, DB had units': the same with no grace (the database's view at t, which counts "
        "units reserved in a core but not yet committed).",
        "",
        "Answers of the sale: "
        + "; ".join(f"{r['mode']} x{r['nodes']} {r['sale']['answers']}" for r in result["rows"]),
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--database",
        default=os.environ.get("PYORDER_TEST_POSTGRES"),
        help="postgresql://... DSN of a cluster: a fresh database per configuration is created "
        "there and dropped (default: $PYORDER_TEST_POSTGRES)",
    )
    parser.add_argument("--nodes", default="1,2,3", help="cluster sizes, comma-separated")
    parser.add_argument("--no-solo", action="store_true", help="skip the solo x1 baseline")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per wrk phase")
    parser.add_argument("--connections", type=int, default=48, help="single: over all nodes")
    parser.add_argument("--batch-connections", type=int, default=4, help="batch: over all nodes")
    parser.add_argument("--batch-size", type=int, default=1000, help="orders per batch (0: none)")
    parser.add_argument("--same-sku", action="store_true", help="single: every node, one SKU")
    parser.add_argument("--stock", type=int, default=2000, help="units of the hot SKU")
    parser.add_argument("--demand", type=float, default=3.0, help="sale requests per unit")
    parser.add_argument("--sale-clients", type=int, default=64, help="sale requests at a time")
    parser.add_argument("--sample-ms", type=float, default=20.0, help="database sample period")
    parser.add_argument("--grace-ms", type=float, default=100.0, help="least grace, false OOS")
    parser.add_argument(
        "--server-arg", action="append", default=[], help="extra pyorder-server argument"
    )
    parser.add_argument("--out", type=Path, default=hb.ROOT / "results", help="summary directory")
    args = parser.parse_args(argv)
    if not args.database:
        parser.error("--database or PYORDER_TEST_POSTGRES is required")
    if args.duration < 1:
        parser.error("--duration must be at least 1 s (wrk's resolution)")
    if shutil.which("wrk") is None:
        parser.error("wrk is not installed: apt-get install -y wrk")
    configs = [] if args.no_solo else [("solo", 1)]
    configs += [("cluster", int(n)) for n in args.nodes.split(",") if n.strip()]
    rows = [configuration(args, args.database, mode, n) for mode, n in configs]
    ratios(rows)
    result = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "settings": {
            k: str(v) if isinstance(v, Path) else v
            for k, v in vars(args).items()
            if k != "database"
        },
        "rows": rows,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    stem = f"cluster_bench-{time.strftime('%Y%m%d-%H%M%S')}"
    (args.out / f"{stem}.json").write_text(json.dumps(result, indent=2) + "\n")
    text = markdown(result)
    (args.out / f"{stem}.md").write_text(text)
    print(text)
    print(f"summary: {args.out / stem}.json, .md")
    bad = [
        f"{r['mode']} x{r['nodes']}"
        for r in rows
        if r["sale"]["oversold"]
        or r["sale"]["missing"]
        or r["single"]["missing"]
        or ("batch" in r and r["batch"]["missing"])
    ]
    if bad:
        print(f"FAILED: oversold or acknowledged orders missing in {', '.join(bad)}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
