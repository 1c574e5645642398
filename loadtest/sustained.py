"""Sustained batch intake: one pyorder server on SQLite, fed batches at full rate until it holds
``--pending`` orders awaiting payment (or ``--max-seconds`` pass), reported per 10 s window.

A flash sale whose buyers pay slowly leaves every order pending until its deadline: the book
and the database grow together. This runs wrk (``loadtest/post.lua``, 1,000-order bodies, the
load test's orders, 4 connections) in back-to-back windows against one server on loopback with
a payment deadline longer than the run, and prints per window: orders/s, p99 latency, the
server's CPU, its mean commit time and size, its resident memory, the pending orders and the
database's size on disk. At the end: disk bytes per order, resident bytes per pending order, and
the first and last windows' rates. The data directory is a temporary folder, deleted at the end
(20 million orders take several GB).

    python loadtest/sustained.py --pending 20000000
    python loadtest/sustained.py --pending 2000000 --window 5   # a quick look
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import urllib.request
from contextlib import ExitStack
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from http_bench import (  # a script beside this one
    SKUS,
    commit_stats,
    cpu_seconds,
    free_port,
    mint,
    order,
    process,
    seed,
    server_command,
    wrk,
)


def rss_bytes(pid: int) -> int:
    """Resident memory of a process (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def disk_bytes(data_dir: Path) -> int:
    """Bytes of the SQLite database, its WAL and shared memory file."""
    return sum(p.stat().st_size for p in data_dir.glob("pyorder.sqlite3*"))


def open_reservations(url: str) -> int:
    with urllib.request.urlopen(url + "/metrics", timeout=10) as resp:
        for line in resp.read().decode().splitlines():
            if line.startswith("pyorder_open_reservations "):
                return int(float(line.split()[1]))
    return -1


def run(args: argparse.Namespace) -> dict[str, Any]:
    windows: list[dict[str, Any]] = []
    with ExitStack() as stack:
        tmp = Path(
            stack.enter_context(
                tempfile.TemporaryDirectory(prefix="pyorder-sustained-", dir=args.dir)
            )
        )
        data_dir = tmp / "data"
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        cmd = [*server_command(), "--port", str(port), "--data-dir", str(data_dir)]
        cmd += ["--payment-timeout-s", str(args.max_seconds + 3600)]
        server = stack.enter_context(process(cmd, tmp / "server.log", url + "/readyz"))
        skus = seed(url, data_dir)
        buyer = mint(data_dir, "buyer", "bench-buyer")
        batch = tmp / "batch.json"
        batch.write_text(
            json.dumps({"orders": [order(skus[i % SKUS], i) for i in range(args.batch_size)]})
        )
        rss0, disk0 = rss_bytes(server.pid), disk_bytes(data_dir)
        print(
            f"pyorder on SQLite, wrk -t2 -c{args.connections}, {args.batch_size}-order bodies,"
            f" {args.window:g} s windows, until {args.pending:,} pending or {args.max_seconds} s;"
            f" server RSS at start {rss0 / 2**20:.0f} MiB",
            flush=True,
        )
        print(
            "window  orders/s  p99 ms  cpu  commit ms  items/commit  RSS MiB   pending  disk MiB",
            flush=True,
        )
        started = time.monotonic()
        pending = 0
        while pending < args.pending and time.monotonic() - started < args.max_seconds:
            cpu, commits = cpu_seconds(server.pid), commit_stats(url)
            w = wrk(
                url,
                "/v1/orders/batch",
                batch,
                buyer,
                threads=2,
                connections=args.connections,
                seconds=args.window,
            )
            seconds = w["duration_us"] / 1e6
            after = commit_stats(url)
            count = after["pyorder_commit_seconds_count"] - commits["pyorder_commit_seconds_count"]
            pending = open_reservations(url)
            row = {
                "window": len(windows) + 1,
                "orders_per_s": w["requests"] * args.batch_size / seconds,
                "p99_ms": w["latency_us"]["p99"] / 1000,
                "errors": sum(w["errors"].values()),
                "cpu_cores": (cpu_seconds(server.pid) - cpu) / seconds,
                "mean_commit_ms": 1000
                * (after["pyorder_commit_seconds_sum"] - commits["pyorder_commit_seconds_sum"])
                / max(1.0, count),
                "mean_commit_items": (
                    after["pyorder_commit_batch_items_sum"]
                    - commits["pyorder_commit_batch_items_sum"]
                )
                / max(1.0, count),
                "rss_bytes": rss_bytes(server.pid),
                "pending": pending,
                "disk_bytes": disk_bytes(data_dir),
            }
            windows.append(row)
            print(
                f"{row['window']:6d} {row['orders_per_s']:9,.0f} {row['p99_ms']:7.1f}"
                f" {row['cpu_cores']:4.2f} {row['mean_commit_ms']:10.1f}"
                f" {row['mean_commit_items']:13,.0f} {row['rss_bytes'] / 2**20:8.0f}"
                f" {row['pending']:9,d} {row['disk_bytes'] / 2**20:9.0f}",
                flush=True,
            )
        last = windows[-1]
        rates = [w["orders_per_s"] for w in windows]
        third = max(1, len(rates) // 3)
        summary = {
            "windows": windows,
            "pending": last["pending"],
            "seconds": time.monotonic() - started,
            "disk_bytes_per_order": (last["disk_bytes"] - disk0) / max(1, last["pending"]),
            "rss_bytes_per_pending_order": (last["rss_bytes"] - rss0) / max(1, last["pending"]),
            "first_third_median_orders_per_s": statistics.median(rates[:third]),
            "last_third_median_orders_per_s": statistics.median(rates[-third:]),
            "errors": sum(w["errors"] for w in windows),
        }
        print(
            f"{last['pending']:,} pending orders in {summary['seconds']:.0f} s;"
            f" disk {summary['disk_bytes_per_order']:.0f} bytes per order;"
            f" server RSS +{summary['rss_bytes_per_pending_order']:.0f} bytes per pending order;"
            f" orders/s median of the first third of windows"
            f" {summary['first_third_median_orders_per_s']:,.0f}, of the last third"
            f" {summary['last_third_median_orders_per_s']:,.0f}"
            f" ({summary['last_third_median_orders_per_s'] / summary['first_third_median_orders_per_s']:.2f}x);"
            f" wrk errors {summary['errors']}",
            flush=True,
        )
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pending", type=int, default=20_000_000, help="stop at this many")
    parser.add_argument("--max-seconds", type=int, default=600, help="stop after this long")
    parser.add_argument("--window", type=float, default=10.0, help="seconds per wrk run")
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--dir", default=None, help="where the temporary data folder goes")
    parser.add_argument("--out", type=Path, default=None, help="write the summary as JSON here")
    args = parser.parse_args(argv)
    summary = run(args)
    if args.out is not None:
        args.out.write_text(json.dumps(summary, indent=2))
    return 0 if summary["errors"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
