"""Database failover figures (issue 14), on loopback, bounded in time.

Each configuration gets a fresh PostgreSQL primary + streaming standby (``scripts/pg_pair.sh``)
and one ``pyorder-server`` on their multi-host DSN (``target_session_attrs=read-write``):

(a) the throughput cost of synchronous replication: single orders (``POST /v1/orders``, wrk,
    ``--connections``, ``--duration`` s) with ``synchronous_standby_names`` naming the standby
    (a commit returns once the standby has flushed it too) against ``''`` (asynchronous), both
    pairs and servers up at once and their runs alternating, ``--rounds`` each (medians);
(b) ``--failovers`` times, on the synchronous pair: ``--clients`` aiohttp clients place single
    orders; after ``--before`` s the primary's postmaster is SIGKILLed and the standby promoted
    at once (``pg_pair.sh promote``; the first cycle's loss is the original primary, later
    ones need a new standby: ``pg_pair.sh rebuild-standby``); the load goes on ``--after`` s.
    Measured: RTO, from the kill to the first acknowledgement of an order sent after it;
    orders lost, the acknowledged ones (before and after) missing from the new primary (must
    be 0); 503 answers (the in-doubt batches and the recovery).

    python loadtest/failover_bench.py                       # 3 rounds of 3 s per mode
    python loadtest/failover_bench.py --duration 3 --failovers 1

Prints a markdown summary (also to ``--out``, default ``results/failover.md``); exits 1 when an
acknowledged order was lost.
"""

import argparse
import asyncio
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parent))
import http_bench as hb  # a script beside this one

PAIR = hb.ROOT / "scripts" / "pg_pair.sh"


@contextmanager
def pair(sync: bool) -> Iterator[tuple[Path, str]]:
    """A fresh primary + standby (synchronous or not) in a temporary folder: (folder, DSN)."""
    folder = Path(tempfile.mkdtemp(prefix="pyorder-pair-"))
    env = {**os.environ, "PYORDER_PAIR_SYNC": "on" if sync else "off"}
    try:
        up = subprocess.run(
            ["bash", str(PAIR), "up", str(folder)],
            capture_output=True,
            text=True,
            env=env,
            timeout=180,
            check=True,
        )
        yield folder, up.stdout.strip()
    finally:
        subprocess.run(["bash", str(PAIR), "down", str(folder)], capture_output=True, timeout=120)
        subprocess.run(["rm", "-rf", str(folder)], check=False)


def pair_cmd(folder: Path, command: str) -> str:
    """``pg_pair.sh command folder``; its stdout."""
    done = subprocess.run(
        ["bash", str(PAIR), command, str(folder)],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"pg_pair.sh {command} failed:\n{done.stderr}")
    return done.stdout


def primary_pid(folder: Path) -> int:
    for line in pair_cmd(folder, "status").splitlines():
        fields = dict(f.split("=", 1) for f in line.split()[1:] if "=" in f)
        if fields.get("role") == "primary":
            return int(fields["pid"])
    raise RuntimeError(f"no primary in {folder}")


@contextmanager
def server(tmp: Path, dsn: str) -> Iterator[tuple[str, Path]]:
    """A pyorder server on ``dsn``, seeded (``http_bench.seed``): (URL, data directory)."""
    port = hb.free_port()
    url, data = f"http://127.0.0.1:{port}", tmp / "data"
    cmd = [*hb.server_command(), "--port", str(port), "--data-dir", str(data), "--database", dsn]
    with hb.process(cmd, tmp / "server.log", url + "/readyz"):
        yield url, data


def throughput(args: argparse.Namespace) -> list[dict[str, Any]]:
    """(a): both configurations up at once, their wrk runs alternating (``--rounds`` each), so
    that both see nearly the same machine (a shared one is noisy); the medians."""
    with ExitStack() as stack:
        targets = []
        for sync in (True, False):
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="pyorder-fo-")))
            _, dsn = stack.enter_context(pair(sync))
            url, data = stack.enter_context(server(tmp, dsn))
            skus = hb.seed(url, data)
            body = tmp / "single.json"
            body.write_text(json.dumps(hb.order(skus[0], 1)))
            targets.append((sync, url, body, hb.mint(data, "buyer", "bench-buyer")))
        common = {"threads": args.threads, "connections": args.connections}
        runs: dict[bool, list[dict[str, Any]]] = {True: [], False: []}
        for _, url, body, token in targets:
            hb.wrk(url, "/v1/orders", body, token, seconds=1, **common)  # warm-up
        for _ in range(args.rounds):
            for sync, url, body, token in targets:
                runs[sync].append(
                    hb.wrk(url, "/v1/orders", body, token, seconds=args.duration, **common)
                )
        return [
            {
                "mode": "synchronous" if sync else "asynchronous",
                "orders_per_s": statistics.median(r["requests_per_s"] for r in runs[sync]),
                "p50_ms": statistics.median(r["latency_us"]["p50"] for r in runs[sync]) / 1000,
                "p99_ms": statistics.median(r["latency_us"]["p99"] for r in runs[sync]) / 1000,
                "errors": [r["errors"] for r in runs[sync]],
                "command": runs[sync][0]["command"],
            }
            for sync in (True, False)
        ] + [
            {
                "ratios": [
                    a["requests_per_s"] / b["requests_per_s"]
                    for a, b in zip(runs[True], runs[False], strict=True)
                ]
            }
        ]


class Load:
    """Clients placing single orders; what was acknowledged, and when each request was sent."""

    def __init__(self, url: str, token: str, skus: list[int]) -> None:
        self.url, self.token, self.skus = url, token, skus
        self.acked: set[int] = set()
        self.ok: list[tuple[float, float]] = []
        """(sent, answered) times (monotonic) of the acknowledged requests."""
        self.statuses: Counter[int] = Counter()
        self.stop = asyncio.Event()

    async def client(self, session: aiohttp.ClientSession, n: int) -> None:
        headers = {"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"}
        i = 0
        while not self.stop.is_set():
            i += 1
            body = json.dumps(hb.order(self.skus[(n + i) % len(self.skus)], i)).encode()
            sent = time.monotonic()
            try:
                async with session.post(self.url + "/v1/orders", data=body, headers=headers) as r:
                    payload = await r.read()
                    self.statuses[r.status] += 1
                    if r.status == 201:
                        self.acked.add(int(json.loads(payload)["id"]))
                        self.ok.append((sent, time.monotonic()))
                    elif r.status >= 500:
                        await asyncio.sleep(0.01)  # a client backing off a little
            except (aiohttp.ClientError, TimeoutError):
                self.statuses[0] += 1
                await asyncio.sleep(0.01)


async def _stored(dsn: str, ids: set[int]) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return int(
            await conn.fetchval("SELECT count(*) FROM orders WHERE id = ANY($1::bigint[])", ids)
        )
    finally:
        await conn.close()


async def _failovers(
    args: argparse.Namespace, folder: Path, dsn: str, url: str, data: Path
) -> dict[str, Any]:
    skus = await asyncio.to_thread(hb.seed, url, data)
    load = Load(url, hb.mint(data, "buyer", "bench-buyer"), skus)
    timeout = aiohttp.ClientTimeout(total=30)
    connector = aiohttp.TCPConnector(limit=args.clients)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        clients = [asyncio.create_task(load.client(session, n)) for n in range(args.clients)]
        try:
            cycles = await _kill_and_promote(args, folder, load)
        finally:
            load.stop.set()
            await asyncio.gather(*clients)
    stored = await _stored(dsn, load.acked)
    return {
        "cycles": cycles,
        "acked": len(load.acked),
        "lost": len(load.acked) - stored,
        "statuses": dict(load.statuses),
    }


async def _kill_and_promote(
    args: argparse.Namespace, folder: Path, load: Load
) -> list[dict[str, Any]]:
    """The failovers under ``load``; for each, its timings and orders acknowledged."""
    cycles: list[dict[str, Any]] = []
    for cycle in range(args.failovers):
        if cycle:
            await asyncio.to_thread(pair_cmd, folder, "rebuild-standby")
        await asyncio.sleep(args.before)
        acked_before = len(load.acked)
        os.kill(primary_pid(folder), signal.SIGKILL)
        killed = time.monotonic()
        await asyncio.to_thread(pair_cmd, folder, "promote")
        promoted = time.monotonic() - killed
        await asyncio.sleep(args.after)
        after = [answered for sent, answered in load.ok if sent > killed]
        cycles.append(
            {
                "promoted_s": promoted,
                "rto_s": (min(after) - killed) if after else None,
                "acked_before_kill": acked_before,
                "acked_after_kill": len(load.acked) - acked_before,
            }
        )
    return cycles


def failovers(args: argparse.Namespace) -> dict[str, Any]:
    """(b)."""
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="pyorder-fo-")))
        folder, dsn = stack.enter_context(pair(True))
        url, data = stack.enter_context(server(tmp, dsn))
        result: dict[str, Any] = asyncio.run(_failovers(args, folder, dsn, url, data))
        return result


def markdown(r: dict[str, Any]) -> str:
    rows = [
        f"Failover bench, {r['date']}, {r['machine']}; command: `{r['command']}`",
        "",
        "| replication | single orders/s | p50 ms | p99 ms |",
        "|---|---:|---:|---:|",
    ]
    *modes, ratios = r["throughput"]
    for t in modes:
        rows.append(
            f"| {t['mode']} | {t['orders_per_s']:,.0f} | {t['p50_ms']:.2f} | {t['p99_ms']:.2f} |"
        )
    each = ", ".join(f"{x:.2f}" for x in ratios["ratios"])
    rows += [
        "",
        f"synchronous / asynchronous, round by round: {each};"
        f" median {statistics.median(ratios['ratios']):.2f}",
        f"wrk: `{modes[0]['command']}`",
        "",
    ]
    rows += ["| failover | promoted after kill (s) | RTO (s) | acked before | acked after |"]
    rows += ["|---:|---:|---:|---:|---:|"]
    for i, c in enumerate(r["failover"]["cycles"], 1):
        rto = "none" if c["rto_s"] is None else f"{c['rto_s']:.2f}"
        rows.append(
            f"| {i} | {c['promoted_s']:.2f} | {rto} | {c['acked_before_kill']:,}"
            f" | {c['acked_after_kill']:,} |"
        )
    f = r["failover"]
    rows += [
        "",
        f"orders acknowledged: {f['acked']:,}; lost: {f['lost']}; answers: {f['statuses']}",
    ]
    return "\n".join(rows) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--duration", type=float, default=3.0, help="seconds per throughput run")
    p.add_argument("--rounds", type=int, default=3, help="throughput runs per configuration")
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--failovers", type=int, default=2)
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--before", type=float, default=2.0, help="seconds of load before a kill")
    p.add_argument("--after", type=float, default=3.0, help="seconds of load after a kill")
    p.add_argument("--out", type=Path, default=hb.ROOT / "results" / "failover.md")
    args = p.parse_args(argv)
    result: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{os.cpu_count()} cores, {platform.platform()}",
        "command": " ".join(
            ["python loadtest/failover_bench.py", *(sys.argv[1:] if argv is None else argv)]
        ),
        "throughput": throughput(args),
        "failover": failovers(args),
    }
    text = markdown(result)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    return 1 if result["failover"]["lost"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
