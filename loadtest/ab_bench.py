"""A/B of two (or more) builds of pyorder on one machine: their servers side by side, wrk runs
interleaved between them, medians of orders/s and of CPU time per order.

On a shared, noisy machine the throughput of one run moves more than most changes do; runs of
the builds back to back (in alternating order) see nearly the same machine, and CPU time per
order (from ``/proc``: the event loop's thread, and the whole process with its commit and
checkpoint threads) moves less than throughput. Each build is a directory holding ``pyorder/``
(with its built ``_core`` extension and ``pyorder/server/``; older builds: ``server/``), e.g. from
``git archive <commit> pyorder | tar -x -C DIR`` plus a copy of that commit's ``_core``:

    python loadtest/ab_bench.py /tmp/before . --reps 8             # single orders
    python loadtest/ab_bench.py /tmp/before . --path /v1/orders/batch

Each server gets a fresh SQLite data directory and the catalogue of ``http_bench.py``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import http_bench as hb  # a script beside this one

BATCH = "/v1/orders/batch"
BATCH_ORDERS = 1000


@dataclass
class Build:
    root: str
    url: str
    proc: subprocess.Popen[bytes]
    token: str
    body: Path
    per_s: list[float] = field(default_factory=list)
    loop_us: list[float] = field(default_factory=list)
    all_us: list[float] = field(default_factory=list)


def start(stack: ExitStack, tmp: Path, i: int, root: str, path: str) -> Build:
    port = hb.free_port()
    url, data = f"http://127.0.0.1:{port}", tmp / f"data{i}"
    # Builds before the server moved into the package (issue 12) hold it as a top-level ``server``.
    module = (
        "pyorder.server.main" if (Path(root) / "pyorder" / "server").is_dir() else "server.main"
    )
    cmd = [sys.executable, "-m", module, "--port", str(port), "--data-dir", str(data)]
    proc = stack.enter_context(hb.process(cmd, tmp / f"server{i}.log", url + "/readyz", cwd=root))
    skus = hb.seed(url, data)
    token = hb.mint(data, "buyer", "ab-buyer")
    body = tmp / f"body{i}.json"
    if path == BATCH:
        orders = [hb.order(skus[j % hb.SKUS], j) for j in range(BATCH_ORDERS)]
        body.write_text(json.dumps({"orders": orders}))
    else:
        body.write_text(json.dumps(hb.order(skus[0], 1)))
    return Build(root, url, proc, token, body)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "roots",
        nargs="+",
        help="directories holding pyorder/ (with pyorder/server/, or server/ beside it)",
    )
    parser.add_argument("--path", default="/v1/orders", choices=["/v1/orders", BATCH])
    parser.add_argument("--reps", type=int, default=8, help="runs per build")
    parser.add_argument("--seconds", type=float, default=3)
    parser.add_argument("--connections", type=int, help="default 32 single, 4 batch")
    args = parser.parse_args()
    per_request = BATCH_ORDERS if args.path == BATCH else 1
    connections = args.connections or (4 if args.path == BATCH else 32)
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="pyorder-ab-")))
        builds = [start(stack, tmp, i, r, args.path) for i, r in enumerate(args.roots)]
        for b in builds:  # warm-up
            hb.wrk(b.url, args.path, b.body, b.token, threads=2, connections=connections, seconds=1)
        for rep in range(args.reps):
            for b in builds if rep % 2 == 0 else builds[::-1]:
                pid = b.proc.pid
                before = hb.cpu_seconds(pid), hb.cpu_seconds(pid, thread=pid)
                run = hb.wrk(
                    b.url,
                    args.path,
                    b.body,
                    b.token,
                    threads=2,
                    connections=connections,
                    seconds=args.seconds,
                )
                after = hb.cpu_seconds(pid), hb.cpu_seconds(pid, thread=pid)
                orders = run["requests"] * per_request
                b.per_s.append(run["requests_per_s"] * per_request)
                b.all_us.append(1e6 * (after[0] - before[0]) / orders)
                b.loop_us.append(1e6 * (after[1] - before[1]) / orders)
                print(
                    f"{b.root}: {b.per_s[-1]:,.0f} orders/s, CPU per order: event loop "
                    f"{b.loop_us[-1]:.1f} us, process {b.all_us[-1]:.1f} us, "
                    f"p99 {run['latency_us']['p99'] / 1000:.1f} ms",
                    flush=True,
                )
    print(f"\n{args.path}, wrk -t2 -c{connections}, {args.reps} runs of {args.seconds:g} s each:")
    print("| build | orders/s (median) | event loop CPU µs/order | process CPU µs/order |")
    print("|---|---|---|---|")
    for b in builds:
        print(
            f"| {b.root} | {statistics.median(b.per_s):,.0f} | "
            f"{statistics.median(b.loop_us):.1f} | {statistics.median(b.all_us):.1f} |"
        )


if __name__ == "__main__":
    main()
