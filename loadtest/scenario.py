"""Load scenarios with locust, end to end, each with a correctness check and a plot.

``flash-sale``: thousands of buyers on one hot SKU. One command starts two payment sandboxes and ``pyorder-server`` wired to them (SQLite in a
temporary folder, or PostgreSQL with ``--database postgresql://...``: a fresh database that is
dropped afterwards), seeds ONE hot SKU with ``--stock`` units and a per-buyer limit, mints
``--buyers`` buyer tokens, and runs locust headless (``loadtest/locustfile_flash_sale.py``) for
``--duration`` seconds with ``--users`` users spawned at ``--spawn-rate``, each clicking "buy"
every 50 ms: most are refused (409), the rest pay by card. Locust's CSV and HTML reports, a
PNG of throughput and latency percentiles over time, and a short summary (JSON and markdown)
go to ``--out``/<scenario>-<store>-<time>/.

Then the check, against the server and the providers' own ledgers: units reserved + sold never
exceed the stock and on_hand = available + reserved + sold; every order that got a 201 exists,
with its units; no buyer holds more than the limit; every paid order was charged exactly once
and no charge lacks an order; the orders that got 201 hold exactly the units the SKU shows
taken. Exit status 1 if any of it fails.

``gateway``: an upstream gateway forwards orders through the batch endpoint
(``--batch-size`` per request, ``loadtest/locustfile_gateway.py``) across 16 SKUs with ample
stock; the check: the units the created orders hold are exactly the units the SKUs show
taken, stock is conserved, and a sample of 200 created orders reads back with its quantity.

    python loadtest/scenario.py flash-sale --users 500 --spawn-rate 250 --duration 20
    python loadtest/scenario.py flash-sale --database "$(bash scripts/postgres.sh)"
    python loadtest/scenario.py gateway --users 4 --batch-size 200 --duration 20

Locust's own ceiling (one process, Python) is far below the server's; ``--processes N`` runs N
locust worker processes. Raw throughput figures come from wrk (``loadtest/http_bench.py``).
"""

import argparse
import csv
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from collections import Counter
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import everyday as everyday_run
import orjson
from click_to_paid import PROVIDERS, Sandbox, child, http, set_knobs
from http_bench import free_port, fresh_database, server_command

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
REGION = "flash-north"
LOCUSTFILES = {
    "flash-sale": "locustfile_flash_sale.py",
    "gateway": "locustfile_gateway.py",
    "everyday": "locustfile_everyday.py",
}
PRICE = 99_900
Json = dict[str, Any]


def seed(url: str, data_dir: Path, args: argparse.Namespace) -> tuple[list[int], list[str], str]:
    """The SKUs (one hot one for the flash sale, 16 for the gateway), the buyers' tokens, and
    an admin token."""
    sys.path.insert(0, str(ROOT))
    from pyorder.auth import Role, TokenIssuer, load_or_create_secret

    issuer = TokenIssuer(load_or_create_secret(data_dir))
    admin, merchant = issuer.mint(Role.ADMIN, "flash"), issuer.mint(Role.MERCHANT, "flash")
    wh = http(url + "/v1/warehouses", "POST", {"name": "flash", "regions": [REGION]}, admin)
    hot = args.scenario == "flash-sale"
    skus = []
    for i in range(1 if hot else 16):
        sku_body = {
            "title": "the hot item" if hot else f"item {i}",
            "price": PRICE + i,
            "currency": "CNY",
            "stock": [{"warehouse": int(wh["id"]), "units": args.stock if hot else 10**12}],
            "limit_per_buyer": args.limit if hot else 0,
        }
        skus.append(int(http(url + "/v1/skus", "POST", sku_body, merchant)["id"]))
    buyers = args.buyers if hot else 8
    tokens = [issuer.mint(Role.BUYER, f"{args.scenario}-buyer-{i}") for i in range(buyers)]
    return skus, tokens, admin


def run_locust(
    url: str, run_dir: Path, env: dict[str, str], args: argparse.Namespace, locustfile: str = ""
) -> int:
    cmd = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(HERE / (locustfile or LOCUSTFILES[args.scenario])),
        "--headless",
        "--host",
        url,
        "--users",
        str(args.users),
        "--spawn-rate",
        str(args.spawn_rate),
        "--run-time",
        f"{args.duration}s",
        "--stop-timeout",
        "5",
        "--csv",
        str(run_dir / "locust"),
        "--csv-full-history",
        "--json-file",
        str(run_dir / "locust_final"),
        "--html",
        str(run_dir / "locust.html"),
        "--only-summary",
        "--exit-code-on-error",
        "0",
    ]
    if args.processes > 1:
        cmd += ["--processes", str(args.processes)]
    with open(run_dir / "locust.log", "wb") as log:
        done = subprocess.run(
            cmd, env=env, stdout=log, stderr=subprocess.STDOUT, timeout=args.duration + 120
        )
    return done.returncode


def locust_stats(run_dir: Path) -> Json:
    """Per request name and aggregated: requests, failures, requests/s, p50/p95/p99 (ms).

    From locust's final JSON (its stats CSV is written every second, so it misses the end)."""
    entries = orjson.loads((run_dir / "locust_final.json").read_bytes())
    merged: dict[str, Json] = {}
    for e in entries:
        for name in (e["name"], "Aggregated"):
            m = merged.setdefault(name, {"n": 0, "fail": 0, "t0": e["start_time"], "t1": 0.0})
            m["n"] += e["num_requests"]
            m["fail"] += e["num_failures"]
            m["t0"] = min(m["t0"], e["start_time"])
            m["t1"] = max(m["t1"], e["last_request_timestamp"] or 0.0)
            hist: Counter[int] = m.setdefault("hist", Counter())
            hist.update({int(k): v for k, v in e["response_times"].items()})
    out: Json = {}
    whole = merged.get("Aggregated", {"t0": 0.0, "t1": 1.0})
    seconds = max(whole["t1"] - whole["t0"], 1e-9)  # rates over the whole run, for every name
    for name, m in sorted(merged.items(), key=lambda kv: kv[0] == "Aggregated"):
        out[name] = {
            "requests": m["n"],
            "failures": m["fail"],
            "requests_per_s": m["n"] / seconds,
            **{f"p{q}_ms": _percentile(m["hist"], q / 100) for q in (50, 95, 99)},
        }
    return out


def _percentile(hist: Counter[int], q: float) -> float:
    """The ``q`` quantile of a histogram of response times (ms -> count), nearest rank."""
    total = sum(hist.values())
    rank, seen = max(1, round(q * total)), 0
    for ms in sorted(hist):
        seen += hist[ms]
        if seen >= rank:
            return float(ms)
    return float("nan")


def plot(run_dir: Path, title: str) -> Path:
    """Throughput and latency percentiles over time, from locust's history CSV."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t, rps, fails, p50, p95, p99 = [], [], [], [], [], []
    with open(run_dir / "locust_stats_history.csv", newline="") as f:
        for row in csv.DictReader(f):
            if row["Name"] != "Aggregated":
                continue
            t.append(int(row["Timestamp"]))
            rps.append(float(row["Requests/s"]))
            fails.append(float(row["Failures/s"]))
            p50.append(_num(row["50%"]))
            p95.append(_num(row["95%"]))
            p99.append(_num(row["99%"]))
    t0 = t[0] if t else 0
    xs = [x - t0 for x in t]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    top.plot(xs, rps, label="requests/s")
    top.plot(xs, fails, label="failures/s")
    top.set_ylabel("requests/s")
    top.legend(loc="upper right")
    top.set_title(title)
    for series, label in ((p50, "p50"), (p95, "p95"), (p99, "p99")):
        bottom.plot(xs, series, label=label)
    bottom.set_ylabel("latency, ms")
    bottom.set_xlabel("seconds since start")
    bottom.legend(loc="upper right")
    fig.tight_layout()
    png = run_dir / "throughput_latency.png"
    fig.savefig(png, dpi=100)
    plt.close(fig)
    return png


def _num(text: str) -> float:
    try:
        return float(text)
    except ValueError:  # "N/A" before the first request
        return float("nan")


def check_flash_sale(
    url: str,
    admin: str,
    sku: int,
    created: list[str],
    boxes: list[Sandbox],
    args: argparse.Namespace,
) -> Json:
    """The sale against the server's stock and orders and the providers' ledgers."""
    problems: list[str] = []
    totals = http(f"{url}/v1/skus/{sku}", token=admin)["stock"]
    taken = totals["reserved"] + totals["sold"]
    if taken > args.stock:
        problems.append(f"oversold: {taken} units taken of {args.stock}")
    if totals["on_hand"] != totals["available"] + totals["reserved"] + totals["sold"]:
        problems.append(f"stock not conserved: {totals}")
    units = 0
    per_buyer: Counter[str] = Counter()
    paid: dict[str, int] = {}
    for oid in created:
        order = http(f"{url}/v1/orders/{oid}", token=admin)
        qty = sum(line["quantity"] for line in order["lines"])
        units += qty
        per_buyer[order["buyer"]] += qty
        if order["status"] == "paid":
            paid[oid] = order["total"]
    if units != taken:
        problems.append(f"the orders that got 201 hold {units} units, the SKU shows {taken} taken")
    over = {b: n for b, n in per_buyer.items() if n > args.limit}
    if over:
        problems.append(
            f"{len(over)} buyers over the limit of {args.limit}, e.g. {next(iter(over.items()))}"
        )
    charges: Counter[str] = Counter()
    charged = 0
    for box in boxes:
        for c in http(box.url + "/_sandbox/ledger")["charges"]:
            charges[str(c.get("metadata", {}).get("order_id", ""))] += 1
            charged += int(c["amount"])
    twice = [oid for oid, n in charges.items() if n > 1]
    if twice:
        problems.append(f"{len(twice)} orders charged more than once, e.g. {twice[0]}")
    orphans = set(charges) - set(created)
    if orphans:
        problems.append(f"{len(orphans)} charges for no order that got 201")
    unpaid_charges = set(charges) - set(paid)
    if unpaid_charges:
        problems.append(f"{len(unpaid_charges)} charged orders are not paid")
    if charged != sum(paid.values()):
        problems.append(f"charged {charged}, the paid orders total {sum(paid.values())}")
    return {
        "ok": not problems,
        "stock": args.stock,
        "units_taken": taken,
        "sku_stock": totals,
        "orders_created": len(created),
        "orders_paid": len(paid),
        "charges": sum(charges.values()),
        "buyers_with_orders": len(per_buyer),
        "problems": problems[:20],
    }


def check_gateway(url: str, admin: str, skus: list[int], created: list[tuple[str, int]]) -> Json:
    """The forwarded orders against the server's stock and a sample read back."""
    problems: list[str] = []
    taken = 0
    for sku in skus:
        totals = http(f"{url}/v1/skus/{sku}", token=admin)["stock"]
        taken += totals["reserved"] + totals["sold"]
        if totals["on_hand"] != totals["available"] + totals["reserved"] + totals["sold"]:
            problems.append(f"SKU {sku}: stock not conserved: {totals}")
    units = sum(q for _, q in created)
    if units != taken:
        problems.append(f"the created orders hold {units} units, the SKUs show {taken} taken")
    ids = {oid for oid, _ in created}
    if len(ids) != len(created):
        problems.append(f"{len(created) - len(ids)} order ids given twice")
    for oid, qty in random.sample(created, min(200, len(created))):
        order = http(f"{url}/v1/orders/{oid}", token=admin)
        if sum(line["quantity"] for line in order["lines"]) != qty:
            problems.append(f"order {oid} reads back with other units than answered")
    return {
        "ok": not problems,
        "orders_created": len(created),
        "units_taken": taken,
        "sample_read_back": min(200, len(created)),
        "problems": problems[:20],
    }


def wait_paid(url: str, admin: str, created: list[str], timeout_s: float = 30) -> None:
    """Give payments started at the end of the run time to settle."""
    deadline = time.monotonic() + timeout_s
    pending = list(created)
    while pending and time.monotonic() < deadline:
        pending = [
            o for o in pending if http(f"{url}/v1/orders/{o}", token=admin)["status"] != "paid"
        ]
        if pending:
            time.sleep(0.2)


def run(args: argparse.Namespace) -> Json:
    storage = "postgresql" if args.database else "sqlite"
    run_dir = args.out / f"{args.scenario}-{storage}-{time.strftime('%Y%m%d-%H%M%S')}"
    run_dir.mkdir(parents=True, exist_ok=True)
    everyday = args.scenario == "everyday"
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="pyorder-flash-")))
        data_dir = tmp / "data"
        database = stack.enter_context(fresh_database(args.database)) if args.database else None
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        boxes = [Sandbox(name, methods, prio) for name, methods, prio in PROVIDERS]
        for box in boxes:
            hook = f"{url}/v1/webhooks/payments/{box.name}"
            log = run_dir / f"sandbox-{box.name}.log"
            stack.enter_context(child(box.command(hook, []), log, box.url + "/healthz"))
            set_knobs(box.url, 0)
        cmd = [*server_command(), "--port", str(port), "--data-dir", str(data_dir)]
        if database:
            cmd += ["--database", database]
        for box in boxes:
            cmd += ["--payment-provider", box.spec()]
        carrier = everyday_run.Carrier()
        if everyday:
            hook = f"{url}/v1/webhooks/carriers/{carrier.name}"
            log = run_dir / f"sandbox-{carrier.name}.log"
            carrier_cmd = carrier.command(hook, args.scan_interval_s)
            stack.enter_context(child(carrier_cmd, log, carrier.url + "/healthz"))
            cmd += ["--carrier", carrier.spec(), "--auto-ship"]
            cmd += ["--payment-timeout-s", str(args.expire_after_s)]
        stack.enter_context(child(cmd, run_dir / "server.log", url + "/readyz"))

        if everyday:
            skus, tokens, admin = everyday_run.seed(
                url, data_dir, args.stock, args.catalogue, args.buyers
            )
        else:
            skus, tokens, admin = seed(url, data_dir, args)
        (tmp / "tokens.txt").write_text("\n".join(tokens))
        created_dir = tmp / "created"
        created_dir.mkdir()
        env = os.environ | {
            "FLASH_TOKENS": str(tmp / "tokens.txt"),
            "FLASH_SKU": str(skus[0]),
            "FLASH_SKUS": ",".join(map(str, skus)),
            "FLASH_BATCH": str(args.batch_size),
            "FLASH_REGION": everyday_run.REGION if everyday else REGION,
            "FLASH_OUT": str(created_dir),
            "EVERYDAY_RETURN_RATE": str(args.return_rate),
        }
        print(f"{args.scenario} on {storage}: {args.users} users, {args.duration} s", flush=True)
        started = time.monotonic()
        code = run_locust(url, run_dir, env, args)
        elapsed = time.monotonic() - started
        lines = [ln.split() for f in created_dir.glob("*.txt") for ln in f.read_text().splitlines()]
        if args.scenario == "flash-sale":
            created = [parts[0] for parts in lines]
            wait_paid(url, admin, created)
            verdict = check_flash_sale(url, admin, skus[0], created, boxes, args)
        elif everyday:
            fates: dict[str, str] = {}
            for oid, what in lines:
                fates[oid] = f"{fates[oid]}+{what}" if oid in fates else what
            orders = everyday_run.settle(url, admin, fates, args.expire_after_s + 30)
            verdict = everyday_run.check(
                url,
                admin,
                skus,
                fates,
                orders,
                [http(box.url + "/_sandbox/ledger") for box in boxes],
                http(carrier.url + "/_sandbox/ledger"),
                lambda oid: everyday_run.returns_of(url, admin, oid),
            )
        else:
            verdict = check_gateway(url, admin, skus, [(p[0], int(p[1])) for p in lines])
    stats = locust_stats(run_dir) if (run_dir / "locust_final.json").exists() else {}
    baseline = run_baseline(run_dir / "baseline", args) if args.baseline else {}
    png = plot(run_dir, f"{args.scenario}, {storage}: {args.users} users")
    return {
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": " ".join(["python", "loadtest/scenario.py", *sys.argv[1:]]),
        "scenario": args.scenario,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "storage": storage,
        "settings": {k: str(v) for k, v in vars(args).items()},
        "locust_exit": code,
        "seconds": round(elapsed, 1),
        "requests": stats,
        "baseline": baseline,
        "check": verdict,
        "files": {"dir": str(run_dir), "plot": png.name, "html": "locust.html"},
    }


def run_baseline(out: Path, args: argparse.Namespace) -> Json:
    """The same locust load on ``bare_server.py``: locust's and HTTP's own ceiling here."""
    out.mkdir()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    batch = str(args.batch_size if args.scenario == "gateway" else 0)
    with child(
        [sys.executable, str(HERE / "bare_server.py"), "--port", str(port)],
        out / "bare.log",
        url + "/healthz",
    ):
        run_locust(url, out, os.environ | {"FLASH_BATCH": batch}, args, "locustfile_baseline.py")
    return locust_stats(out)


def markdown(r: Json) -> str:
    rows = [
        f"# {r['scenario']} ({r['storage']}, {r['when']})",
        "",
        f"`{r['command']}` on {r['machine']['cpus']} cores.",
        "",
        "| request | count | failures | req/s | p50 ms | p95 ms | p99 ms |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, s in r["requests"].items():
        rows.append(
            f"| {name} | {s['requests']:,} | {s['failures']:,} | {s['requests_per_s']:,.0f} |"
            f" {s['p50_ms']:g} | {s['p95_ms']:g} | {s['p99_ms']:g} |"
        )
    base = r.get("baseline") or {}
    if base:
        rows += ["", "Baseline, the same locust load on `loadtest/bare_server.py` (same run):", ""]
        for name, b in base.items():
            s = r["requests"].get(name)
            ratio = f", ratio {s['requests_per_s'] / b['requests_per_s']:.2f}" if s else ""
            rows.append(
                f"- {name}: {b['requests_per_s']:,.0f} req/s, p50/p95/p99"
                f" {b['p50_ms']:g}/{b['p95_ms']:g}/{b['p99_ms']:g} ms{ratio}"
            )
    c = r["check"]
    facts = ", ".join(f"{k} {v}" for k, v in c.items() if k not in ("ok", "problems", "sku_stock"))
    rows += [
        "",
        f"Check: **{'ok' if c['ok'] else 'FAILED'}** ({facts}).",
        *[f"- {p}" for p in c["problems"]],
        "",
        f"Plot: `{r['files']['plot']}`; locust's report: `{r['files']['html']}`.",
    ]
    return "\n".join(rows) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("scenario", choices=sorted(LOCUSTFILES))
    parser.add_argument("--database", help="postgresql://... (a fresh database); default SQLite")
    parser.add_argument("--users", type=int, default=500)
    parser.add_argument("--spawn-rate", type=float, default=250)
    parser.add_argument("--duration", type=int, default=20, help="seconds of load")
    parser.add_argument(
        "--stock", type=int, default=1000, help="units of the hot SKU; everyday: of each SKU"
    )
    parser.add_argument("--limit", type=int, default=2, help="units one buyer may hold")
    parser.add_argument("--buyers", type=int, default=5000)
    parser.add_argument("--batch-size", type=int, default=100, help="gateway: orders per request")
    parser.add_argument("--catalogue", type=int, default=2000, help="everyday: SKUs")
    parser.add_argument(
        "--expire-after-s", type=float, default=6, help="everyday: unpaid orders expire then"
    )
    parser.add_argument(
        "--scan-interval-s", type=float, default=0.5, help="everyday: between carrier scans"
    )
    parser.add_argument(
        "--return-rate", type=float, default=0.3, help="everyday: delivered orders returned"
    )
    parser.add_argument("--processes", type=int, default=1, help="locust worker processes")
    parser.add_argument(
        "--baseline",
        action="store_true",
        help="then run the same locust load on loadtest/bare_server.py (not for everyday)",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "results")
    args = parser.parse_args(argv)
    result = run(args)
    run_dir = Path(result["files"]["dir"])
    (run_dir / "summary.json").write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
    text = markdown(result)
    (run_dir / "summary.md").write_text(text)
    print(text, flush=True)
    print(f"summary: {run_dir}/summary.md", flush=True)
    return 0 if result["check"]["ok"] and result["requests"] else 1


if __name__ == "__main__":
    sys.exit(main())
