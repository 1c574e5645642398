"""Lightning refunds: the time from the carrier's return pickup scan to the refund, on loopback.

Starts a payment sandbox (``card1``), a carrier sandbox (``swift``, scanning a parcel every
``--scan-interval-ms`` of real time: ``--time-scale 1``, so its clock is the wall clock) and
``pyorder-server`` wired to both with ``--auto-ship`` and a returns policy under which every
return passes the lightning rules, on a temporary data directory (SQLite by default, or
PostgreSQL with ``--database postgresql://...``: a fresh database on that cluster, dropped
afterwards). Then ``--returns`` buyers, ``--concurrency`` at a time, each:

    POST /v1/orders -> POST /v1/orders/{id}/payments -> paid -> (auto-shipped, scanned) ->
    delivered -> POST /v1/orders/{id}/returns -> (booked, pickup scan) -> GET /v1/returns/{id}
    every --poll-interval-ms until it is ``refunded``, then until its refund ``succeeded``

For each return, from the pickup scan (the ``occurred_at`` the carrier gives it, on the
machine's clock) to:

- ``issued``: the refund's creation at the server (staged with the scan, in its transaction);
- ``visible``: the first poll that saw the return ``refunded`` (reads show only durable state, so
  this bounds the commit from above; the poll interval is the uncertainty);
- ``succeeded``: the server recording the provider's ``succeeded`` (its answer to the refund
  call or its webhook; with ``--refund-settle-ms 0`` the provider settles at once).

p50/p95/p99 of each go to stdout, and a JSON and a markdown summary to ``--out`` (default
``results/``). Correctness, from the sandboxes' own ledgers: each return's order has exactly one
refund at the provider, of the order's price, succeeded; each return has one parcel back at the
carrier; and the server's ``pyorder_lightning_refunds_total`` counts every return. Exit 1 if not.

    python loadtest/lightning_refund.py --returns 300 --concurrency 16
    python loadtest/lightning_refund.py --returns 300 --database "$(bash scripts/postgres.sh)"
"""

import argparse
import asyncio
import os
import platform
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from click_to_paid import child, dist, http, log_summary, set_knobs
from http_bench import free_port, fresh_database, metrics_text, server_command

ROOT = Path(__file__).resolve().parents[1]
SECRET = "whsec_lightning_bench"
PRICE = 1999
REGION = "bench-returns"
POLICY = {
    "window_days": 7,
    "lightning": {
        "max_order_amount": 200_000,
        "max_refund_amount": 100_000,
        "max_recent_returns": 3,
        "min_delivered_orders": 1,
    },
}
"""Every return of this benchmark passes every rule (one order per buyer, 1999 each)."""
Json = dict[str, Any]


def ms(text: str) -> float:
    """Milliseconds since the epoch of an ISO 8601 time with an offset (``...Z``)."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000


@dataclass
class Flow:
    buyer: str
    order_id: str = ""
    return_id: int = 0
    error: str = ""
    scan_ms: float = 0.0
    issued_ms: float = 0.0
    visible_ms: float = 0.0
    visible_uncertainty_ms: float = 0.0
    succeeded_ms: float = 0.0
    polls: int = 0
    timeline: dict[str, float] = field(default_factory=dict)


class Client:
    def __init__(self, session: aiohttp.ClientSession, url: str, token: str) -> None:
        self.session, self.url = session, url
        self.headers = {"Authorization": f"Bearer {token}"}

    async def call(self, method: str, path: str, body: object = None, key: str = "") -> Any:
        headers = dict(self.headers)
        if key:
            headers["Idempotency-Key"] = key
        data = None if body is None else orjson.dumps(body)
        if data is not None:
            headers["Content-Type"] = "application/json"
        async with self.session.request(
            method, self.url + path, data=data, headers=headers
        ) as resp:
            out = orjson.loads(await resp.read())
            if resp.status >= 400:
                raise RuntimeError(f"{method} {path}: HTTP {resp.status} {out}")
            return out

    async def until(
        self, path: str, done: Any, interval_s: float, timeout_s: float
    ) -> tuple[Any, float, float, int]:
        """Poll ``path`` until ``done(body)``: (body, wall ms when seen, wall ms when the poll
        before it was sent, polls)."""
        deadline = time.monotonic() + timeout_s
        before, polls = time.time() * 1000, 0
        while True:
            sent = time.time() * 1000
            body = await self.call("GET", path)
            polls += 1
            if done(body):
                return body, time.time() * 1000, before, polls
            if time.monotonic() > deadline:
                raise TimeoutError(f"{path}: not there after {timeout_s} s: {body}")
            before = sent
            await asyncio.sleep(interval_s)


async def one(
    args: argparse.Namespace, http_: aiohttp.ClientSession, url: str, sku: int, flow: Flow
) -> None:
    c = Client(http_, url, flow.buyer)
    slow = 0.02
    t = flow.timeline
    order = await c.call(
        "POST",
        "/v1/orders",
        {
            "lines": [{"sku": sku, "quantity": 1}],
            "address": {"name": "Bench", "line1": "1 Road", "city": "Hangzhou", "region": REGION},
        },
        key=f"order-{flow.buyer}",
    )
    flow.order_id = oid = str(order["id"])
    t["ordered"] = time.time() * 1000
    await c.call("POST", f"/v1/orders/{oid}/payments", {"method": "card"}, key=f"pay-{oid}")
    await c.until(f"/v1/orders/{oid}", lambda o: o["status"] == "paid", slow, args.flow_timeout_s)
    t["paid"] = time.time() * 1000
    await c.until(
        f"/v1/orders/{oid}/shipments",
        lambda s: s["fulfilment_status"] == "delivered",
        slow,
        args.flow_timeout_s,
    )
    t["delivered"] = time.time() * 1000
    opened = await c.call(
        "POST",
        f"/v1/orders/{oid}/returns",
        {"lines": [{"sku": sku, "quantity": 1}]},
        key=f"ret-{oid}",
    )
    [made] = opened["returns"]
    flow.return_id = rid = int(made["id"])
    t["opened"] = time.time() * 1000
    poll = args.poll_interval_ms / 1000
    path = f"/v1/returns/{rid}"
    ret, seen, before, polls = await c.until(
        path, lambda r: r["status"] == "refunded", poll, args.flow_timeout_s
    )
    if ret["refund"]["status"] != "succeeded":
        ret, _, _, more = await c.until(
            path, lambda r: r["refund"]["status"] == "succeeded", poll, args.flow_timeout_s
        )
        polls += more
    [scan] = [e for e in ret["events"] if e["status"] == "picked_up" and e["applied"]]
    flow.scan_ms = ms(scan["occurred_at"])
    flow.issued_ms = ms(ret["refund"]["created_at"]) - flow.scan_ms
    flow.visible_ms = seen - flow.scan_ms
    flow.visible_uncertainty_ms = seen - max(before, flow.scan_ms)
    flow.succeeded_ms = ms(ret["refund"]["settled_at"]) - flow.scan_ms
    flow.polls = polls


async def measure(args: argparse.Namespace, url: str, sku: int, tokens: list[str]) -> Json:
    flows = [Flow(token) for token in tokens]
    gate = asyncio.Semaphore(args.concurrency)
    conn = aiohttp.TCPConnector(limit=args.concurrency * 2)
    async with aiohttp.ClientSession(connector=conn) as session:

        async def guarded(flow: Flow) -> None:
            async with gate:
                try:
                    await one(args, session, url, sku, flow)
                except Exception as exc:  # one flow's failure is reported, not fatal
                    flow.error = f"{type(exc).__name__}: {exc}"[:300]

        started = time.perf_counter()
        await asyncio.gather(*(guarded(f) for f in flows))
        elapsed = time.perf_counter() - started
    ok = [f for f in flows if not f.error]
    errors: dict[str, int] = {}
    for f in flows:
        if f.error:
            errors[f.error[:120]] = errors.get(f.error[:120], 0) + 1
    return {
        "flows": len(flows),
        "refunded": len(ok),
        "errors": errors,
        "elapsed_s": elapsed,
        "scan_to_issued_ms": dist([f.issued_ms for f in ok]),
        "scan_to_visible_ms": dist([f.visible_ms for f in ok]),
        "visible_uncertainty_ms": dist([f.visible_uncertainty_ms for f in ok]),
        "scan_to_succeeded_ms": dist([f.succeeded_ms for f in ok]),
        "polls_per_return": dist([float(f.polls) for f in ok]),
        "rows": [
            {
                "order": f.order_id,
                "return": f.return_id,
                "issued_ms": f.issued_ms,
                "visible_ms": f.visible_ms,
                "succeeded_ms": f.succeeded_ms,
                "error": f.error,
            }
            for f in flows
        ],
    }


def check(result: Json, pay_url: str, carrier_url: str, server_url: str) -> Json:
    """What the sandboxes' ledgers say against what the server said."""
    pay = http(pay_url + "/_sandbox/ledger")
    carrier = http(carrier_url + "/_sandbox/ledger")
    intents = {c["payment_intent"]: c["metadata"].get("order_id") for c in pay["charges"]}
    refunds: dict[str, list[Json]] = {}
    for r in pay["refunds"]:
        refunds.setdefault(str(intents.get(r["payment_intent"])), []).append(r)
    backs: dict[str, int] = {}
    for s in carrier["shipments"]:
        if s["kind"] == "return":
            oid = s["metadata"].get("order_id", "")
            backs[oid] = backs.get(oid, 0) + 1
    problems: list[str] = []
    done = [row for row in result["rows"] if not row["error"]]
    for row in done:
        found = refunds.get(row["order"], [])
        if [(r["amount"], r["status"]) for r in found] != [(PRICE, "succeeded")]:
            problems.append(f"order {row['order']}: refunds at the provider {found}")
        if backs.get(row["order"]) != 1:
            problems.append(f"order {row['order']}: {backs.get(row['order'], 0)} parcels back")
    with_return = {row["order"] for row in result["rows"] if row["return"]}
    strays = sorted(set(refunds) - with_return)
    if strays:
        problems.append(f"refunds of orders without a return: {strays[:5]}")
    counted = metric(server_url, "pyorder_lightning_refunds_total")
    if counted != len(done):
        problems.append(f"pyorder_lightning_refunds_total is {counted}, not {len(done)}")
    if result["errors"]:
        problems.append(f"{sum(result['errors'].values())} flows failed")
    return {
        "ok": not problems,
        "problems": problems[:20],
        "provider_refunds": sum(len(v) for v in refunds.values()),
        "parcels_back": sum(backs.values()),
        "lightning_refunds_metric": counted,
    }


def metric(url: str, name: str) -> float:
    """A counter's value from the server's ``/metrics`` (0 if absent)."""
    for line in metrics_text(url).splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


def run(args: argparse.Namespace) -> Json:
    sys.path.insert(0, str(ROOT))
    from pyorder.auth import Role, TokenIssuer, load_or_create_secret

    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="pyorder-lightning-")))
        data_dir = tmp / "data"
        database = stack.enter_context(fresh_database(args.database)) if args.database else None
        port, pay_port, carrier_port = free_port(), free_port(), free_port()
        url = f"http://127.0.0.1:{port}"
        pay_url, carrier_url = f"http://127.0.0.1:{pay_port}", f"http://127.0.0.1:{carrier_port}"
        pay_cmd = [sys.executable, "-m", "sandbox.payment.main", "--port", str(pay_port)]
        pay_cmd += ["--name", "card1", "--secret", SECRET, "--methods", "card"]
        pay_cmd += ["--webhook-url", f"{url}/v1/webhooks/payments/card1"]
        pay_cmd += ["--refund-settle-ms", str(args.refund_settle_ms)]
        stack.enter_context(child(pay_cmd, tmp / "sandbox-card1.log", pay_url + "/healthz"))
        interval = args.scan_interval_ms / 1000
        carrier_cmd = [sys.executable, "-m", "sandbox.carrier.main", "--port", str(carrier_port)]
        carrier_cmd += ["--name", "swift", "--secret", SECRET]
        carrier_cmd += ["--webhook-url", f"{url}/v1/webhooks/carriers/swift"]
        carrier_cmd += ["--event-interval-s", str(interval), "--time-scale", "1"]
        stack.enter_context(child(carrier_cmd, tmp / "carrier-swift.log", carrier_url + "/healthz"))
        knobs = {"card1": set_knobs(pay_url, 0), "swift": set_knobs(carrier_url, 0)}
        policy = tmp / "returns.json"
        policy.write_bytes(orjson.dumps(POLICY))
        cmd = [*server_command(), "--port", str(port), "--data-dir", str(data_dir)]
        if database:
            cmd += ["--database", database]
        cmd += ["--payment-provider", f"name=card1,url={pay_url},secret={SECRET},methods=card"]
        cmd += ["--carrier", f"name=swift,url={carrier_url},secret={SECRET}", "--auto-ship"]
        cmd += ["--returns-config", str(policy), *args.server_arg]
        stack.enter_context(child(cmd, tmp / "server.log", url + "/readyz"))

        issuer = TokenIssuer(load_or_create_secret(data_dir))
        admin, merchant = issuer.mint(Role.ADMIN, "bench"), issuer.mint(Role.MERCHANT, "bench")
        wh = http(url + "/v1/warehouses", "POST", {"name": "returns", "regions": [REGION]}, admin)
        sku_body = {
            "title": "lightning item",
            "price": PRICE,
            "currency": "CNY",
            "stock": [{"warehouse": int(wh["id"]), "units": 10**9}],
        }
        sku = int(http(url + "/v1/skus", "POST", sku_body, merchant)["id"])
        tokens = [issuer.mint(Role.BUYER, f"lightning-{i}") for i in range(args.returns)]
        storage = "postgresql" if database else "sqlite"
        print(
            f"lightning refunds on {storage}: {args.returns} returns, {args.concurrency} at a"
            f" time, a scan every {args.scan_interval_ms:g} ms, poll every"
            f" {args.poll_interval_ms:g} ms",
            flush=True,
        )
        import uvloop

        result = uvloop.run(measure(args, url, sku, tokens))
        time.sleep(0.5)  # the last webhooks (the parcels' arrival) settle
        result["correctness"] = check(result, pay_url, carrier_url, url)
        result["logs"] = {
            name: log_summary(tmp / f"{name}.log")
            for name in ("server", "sandbox-card1", "carrier-swift")
        }
        result["sandbox_knobs"] = knobs
    return {
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": " ".join(["python", "loadtest/lightning_refund.py", *sys.argv[1:]]),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "storage": storage,
        "settings": {
            "returns": args.returns,
            "concurrency": args.concurrency,
            "scan_interval_ms": args.scan_interval_ms,
            "poll_interval_ms": args.poll_interval_ms,
            "refund_settle_ms": args.refund_settle_ms,
            "policy": POLICY,
            "server_args": args.server_arg,
        },
        **result,
    }


def markdown(r: Json) -> str:
    s, ok = r["settings"], r["correctness"]

    def row(name: str, d: Json) -> str:
        if not d.get("n"):
            return f"| {name} | 0 | - | - | - | - |"
        return (
            f"| {name} | {d['n']} | {d['p50']:.1f} | {d['p95']:.1f} | {d['p99']:.1f} |"
            f" {d['max']:.1f} |"
        )

    lines = [
        f"# Lightning refunds ({r['storage']}, {r['when']})",
        "",
        f"`{r['command']}`",
        "",
        f"{s['returns']} returns, {s['concurrency']} at a time; the carrier scans every"
        f" {s['scan_interval_ms']:g} ms; polls every {s['poll_interval_ms']:g} ms; the provider"
        f" settles refunds after {s['refund_settle_ms']:g} ms. {r['refunded']} refunded in"
        f" {r['elapsed_s']:.1f} s; {r['machine']['cpus']} CPUs.",
        "",
        "| from the pickup scan to (ms) | n | p50 | p95 | p99 | max |",
        "|---|---|---|---|---|---|",
        row("refund issued (staged with the scan)", r["scan_to_issued_ms"]),
        row("return seen refunded (durable; + poll)", r["scan_to_visible_ms"]),
        row("refund succeeded at the provider", r["scan_to_succeeded_ms"]),
        row("poll uncertainty of 'seen'", r["visible_uncertainty_ms"]),
        "",
        f"Ledgers: {'ok' if ok['ok'] else 'PROBLEMS'} — {ok['provider_refunds']} refunds at the"
        f" provider, {ok['parcels_back']} parcels back at the carrier,"
        f" pyorder_lightning_refunds_total {ok['lightning_refunds_metric']:g}.",
    ]
    if not ok["ok"]:
        lines += ["", *(f"- {p}" for p in ok["problems"])]
    if r["errors"]:
        lines += ["", "Errors:", *(f"- {n} x {e}" for e, n in r["errors"].items())]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Lightning refunds: time from the carrier's return pickup scan to the"
        " refund issued and succeeded, through the payment and carrier sandboxes."
    )
    parser.add_argument("--returns", type=int, default=300, help="orders delivered and returned")
    parser.add_argument("--concurrency", type=int, default=16, help="flows at a time")
    parser.add_argument(
        "--database",
        help="postgresql://... DSN of a cluster (a fresh database is created there and "
        "dropped); default: SQLite in a temporary folder",
    )
    parser.add_argument(
        "--scan-interval-ms",
        type=float,
        default=200.0,
        help="real time between two scans of a parcel (the pickup comes one interval after"
        " the booking)",
    )
    parser.add_argument("--poll-interval-ms", type=float, default=5.0, help="while waiting")
    parser.add_argument(
        "--refund-settle-ms",
        type=int,
        default=0,
        help="the payment sandbox settles a refund after this (0: at once)",
    )
    parser.add_argument("--flow-timeout-s", type=float, default=60.0, help="per wait")
    parser.add_argument(
        "--server-arg", action="append", default=[], help="extra pyorder-server argument"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "results", help="summary directory")
    args = parser.parse_args(argv)
    if args.returns < 1 or args.concurrency < 1:
        parser.error("--returns and --concurrency must be at least 1")
    result = run(args)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = f"lightning_refund-{result['storage']}-{time.strftime('%Y%m%d-%H%M%S')}"
    (args.out / f"{stem}.json").write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
    text = markdown(result)
    (args.out / f"{stem}.md").write_text(text)
    print(text)
    print(f"summary: {args.out / stem}.json, .md")
    return 0 if result["correctness"]["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
