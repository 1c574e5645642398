"""What forwarding costs (issue 13, ``docs/scale-out.md``, "Requests routed to the order's
node"): two ``pyorder-server --cluster`` nodes on one PostgreSQL, a buyer's order taken on
node A, and wrk reading that order's refunds (``GET /v1/orders/{id}/refunds``: served by the
order's node) through A itself (served there) and through B (forwarded to A and answered
back), the two interleaved for ``--rounds`` rounds of ``--duration`` s each, with the same
``--connections``. Beside them, in each round, the order itself through B (``GET
/v1/orders/{id}``: read from the store by any node, never forwarded): what B costs on its own.

Reported per round and as medians: requests/s and wrk's latency p50/p99 of each, and the ratio
forwarded / local of the requests/s. The markdown table and a JSON summary go to ``--out``.

    python loadtest/forward_bench.py --database "$PYORDER_TEST_POSTGRES"
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import cluster_bench as cb  # scripts beside this one
import http_bench as hb


def run(args: argparse.Namespace, dsn: str) -> dict[str, Any]:
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="pyorder-forward-")))
        data = tmp / "data"
        db = stack.enter_context(hb.fresh_database(dsn))
        solo = stack.enter_context(cb.node(tmp, data, db, False, []))
        skus = hb.seed(solo.url, data)
        cb.stop(solo)
        a = stack.enter_context(cb.node(tmp, data, db, True, []))
        b = stack.enter_context(cb.node(tmp, data, db, True, []))
        buyer = hb.mint(data, "buyer", "forward-bench")
        order = hb.call(a.url + "/v1/orders", "POST", buyer, hb.order(skus[0], 1))
        oid = order["id"]
        empty = tmp / "empty"
        empty.write_text("")

        def measure(node: cb.Node, path: str) -> dict[str, Any]:
            return hb.wrk(
                node.url,
                path,
                empty,
                buyer,
                threads=1,
                connections=args.connections,
                seconds=args.duration,
                method="GET",
            )

        refunds, order_path = f"/v1/orders/{oid}/refunds", f"/v1/orders/{oid}"
        measure(b, refunds)  # warm-up: connections between the nodes, caches
        rounds = []
        for i in range(args.rounds):
            row: dict[str, Any] = {
                "local": measure(a, refunds),
                "forwarded": measure(b, refunds),
                "never_forwarded": measure(b, order_path),
            }
            row["ratio"] = row["forwarded"]["requests_per_s"] / row["local"]["requests_per_s"]
            for kind in ("local", "forwarded", "never_forwarded"):
                errors = sum(row[kind]["errors"].values())
                if errors:
                    raise SystemExit(f"round {i + 1}, {kind}: {errors} wrk errors: {row[kind]}")
            rounds.append(row)
            print(f"round {i + 1}: forwarded / local = {row['ratio']:.2f}", flush=True)
        text = hb.metrics_text(b.url)
        forwarded = sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("pyorder_forwarded_requests_total{")
        )
        return {
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "cores": os.cpu_count(),
            "connections": args.connections,
            "duration_s": args.duration,
            "rounds": rounds,
            "median_ratio": statistics.median(float(r["ratio"]) for r in rounds),
            "forwarded_by_b": forwarded,
        }


def markdown(result: dict[str, Any]) -> str:
    lines = [
        f"Forwarding cost, {result['date']}, {result['cores']} cores, wrk -c"
        f"{result['connections']} -d{result['duration_s']}s per measurement",
        "",
        "| round | local (A) req/s, p50 / p99 | forwarded (B -> A) req/s, p50 / p99 | forwarded"
        " / local | never forwarded (B) req/s, p50 / p99 |",
        "|---|---|---|---|---|",
    ]

    def cell(w: dict[str, Any]) -> str:
        lat = w["latency_us"]
        return f"{w['requests_per_s']:,.0f}, {lat['p50'] / 1000:.1f} / {lat['p99'] / 1000:.1f} ms"

    for i, r in enumerate(result["rounds"], 1):
        lines.append(
            f"| {i} | {cell(r['local'])} | {cell(r['forwarded'])} | {r['ratio']:.2f} |"
            f" {cell(r['never_forwarded'])} |"
        )
    lines += ["", f"Median forwarded / local: **{result['median_ratio']:.2f}**"]
    lines.append(f"Requests B forwarded (its /metrics): {result['forwarded_by_b']:,.0f}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", default=os.environ.get("PYORDER_TEST_POSTGRES"))
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--duration", type=float, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=hb.ROOT / "results")
    args = parser.parse_args(argv)
    if not args.database:
        parser.error("--database postgresql://... (or PYORDER_TEST_POSTGRES) is required")
    result = run(args, args.database)
    report = markdown(result)
    print(report)
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    (args.out / f"forward_bench-{stamp}.md").write_text(report)
    (args.out / f"forward_bench-{stamp}.json").write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
