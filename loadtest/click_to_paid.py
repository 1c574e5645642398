"""Click-to-paid latency through the payment sandboxes, on loopback, bounded in count and time.

Starts two payment sandbox processes (``card1``, priority 0, and ``card2``, priority 1, as
``scripts/dev.sh`` does) and ``pyorder-server`` wired to them on a temporary data directory
(SQLite by default, or PostgreSQL with ``--database postgresql://...``: a fresh database is
created on that cluster and dropped afterwards), seeds one warehouse, region and SKU with
plenty of stock through the API, then runs ``--orders`` buyers' flows with ``--concurrency``
clients (aiohttp, one request at a time each):

    POST /v1/orders  ->  POST /v1/orders/{id}/payments {"method": "card"}  ->
    GET /v1/orders/{id} every --poll-interval-ms until it is ``paid``

and reports p50/p95/p99 of click-to-paid (the order request sent -> ``paid`` observed) and of
its parts (order created, payment accepted, paid after acceptance), and paid orders/s. Polling
adds up to one poll interval plus one round trip: the interval and the measured uncertainty
(``paid`` observed minus the send time of the last poll that did not see it) are reported,
with the lower bound of click-to-paid it gives. ``--poll-endpoint payment`` polls
``GET /v1/orders/{id}/payment`` instead (status ``charged``).

The order becomes ``paid`` when the server sees the charge confirmed: the provider's answer to
its confirm call or the signed webhook, whichever is applied first (in practice the answer; the
webhooks, sent one at a time per provider, lag behind under load: the summary says how long
they took to drain after the last flow).

Baseline, in the same run: the sandbox's own create + confirm round trip, measured directly
(client -> a third sandbox process with the same knobs and no webhook URL, no pyorder), same
count and concurrency, so the report says how much pyorder adds.

Also reported: CPU cores of each process and of the rest of the machine (``others``: other
work disturbs the figures; with PostgreSQL it includes the database server), the server's
group commits, its log's fail-overs and provider timeouts, and event-loop stalls of each
process (``GET /healthz`` every 10 ms).

Correctness, from the providers' own ledgers (``GET /_sandbox/ledger``): every paid order was
charged exactly once, no charge lacks a paid order, the total charged equals the sum of the
paid orders' totals, nothing was refunded; and every flow ended paid. The server's view of each
payment (``GET /v1/orders/{id}/payment``) is cross-checked against the ledgers too. The exit
status is 1 if any of this fails.

The sandboxes' fault knobs are set explicitly: every ``*_rate`` knob 0, no outage, and latency
0 unless ``--provider-latency-ms`` (``50`` or ``20-200``) is given. pyorder's provider timeout
is 100 ms by default: with provider latency near that, pass
``--server-arg=--provider-timeout-ms=1000`` or payments fail over.

A JSON (with every order's timestamps) and a markdown summary go to ``--out`` (default
``results/``, which git ignores).

    python loadtest/click_to_paid.py --orders 2000 --concurrency 32
    python loadtest/click_to_paid.py --database "$(bash scripts/postgres.sh)"
"""

import argparse
import asyncio
import contextlib
import math
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from http_bench import commit_stats, cpu_seconds, free_port, fresh_database, server_command

ROOT = Path(__file__).resolve().parents[1]
SECRET = "whsec_click_to_paid_bench"
STOCK = 10**12
"""Units of the one SKU: no run gets near it."""
PRICE = 1999
CURRENCY = "CNY"
REGION = "bench-north"
PROVIDERS = (("card1", "card,wallet", 0), ("card2", "card,bank_transfer", 1))
"""Name, methods, priority: the layout of ``scripts/dev.sh``."""
Json = dict[str, Any]


# --- processes ---------------------------------------------------------------------------------


@contextmanager
def child(cmd: list[str], log: Path, ready_url: str, timeout_s: float = 30) -> Iterator[int]:
    """A child process, ready once ``ready_url`` answers 200; SIGTERM (then SIGKILL) on exit.
    Yields its pid."""
    with open(log, "ab") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{cmd[:3]} exited with {proc.returncode}; see {log}")
            try:
                with urllib.request.urlopen(ready_url, timeout=1) as resp:
                    if resp.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{ready_url} not ready in {timeout_s} s; see {log}")
            time.sleep(0.05)
        yield proc.pid
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def http(url: str, method: str = "GET", body: object = None, token: str | None = None) -> Any:
    data = None if body is None else orjson.dumps(body)
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(req, timeout=30) as resp:
        return orjson.loads(resp.read())


def parse_latency(text: str) -> int | list[int]:
    """``50`` or ``20-200`` (milliseconds), as the sandbox's ``latency_ms`` knob."""
    low, sep, high = text.partition("-")
    return [int(low), int(high)] if sep else int(low)


def set_knobs(url: str, latency: int | list[int]) -> Json:
    """Every ``*_rate`` knob 0, no outage, ``latency``; the knobs in force."""
    knobs: Json = http(url + "/_sandbox/faults")
    patch: Json = {k: 0.0 for k in knobs if k.endswith("_rate")}
    patch |= {"outage": "none", "latency_ms": latency}
    result: Json = http(url + "/_sandbox/faults", "POST", patch)
    return result


@dataclass
class Sandbox:
    name: str
    methods: str
    priority: int
    port: int = field(default_factory=free_port)
    pid: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self, webhook_url: str | None, extra: Sequence[str]) -> list[str]:
        cmd = [sys.executable, "-m", "sandbox.payment.main", "--port", str(self.port)]
        cmd += ["--name", self.name, "--secret", SECRET, "--methods", self.methods]
        if webhook_url:
            cmd += ["--webhook-url", webhook_url]
        return cmd + list(extra)

    def spec(self) -> str:
        methods = self.methods.replace(",", "+")
        return (
            f"name={self.name},url={self.url},secret={SECRET},methods={methods},"
            f"priority={self.priority}"
        )


# --- statistics --------------------------------------------------------------------------------


def percentile(xs: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of sorted ``xs`` (0 < q <= 1)."""
    return xs[max(0, min(len(xs) - 1, math.ceil(q * len(xs)) - 1))]


def dist(values: Sequence[float]) -> Json:
    """Count, mean, min, p50, p95, p99 and max of ``values`` (milliseconds)."""
    xs = sorted(values)
    if not xs:
        return {"n": 0}
    out: Json = {"n": len(xs), "mean": sum(xs) / len(xs), "min": xs[0]}
    out |= {f"p{round(q * 100)}": percentile(xs, q) for q in (0.5, 0.95, 0.99)}
    out["max"] = xs[-1]
    return out


# --- the flows ---------------------------------------------------------------------------------


@dataclass
class Flow:
    """One buyer's flow; times in ms since the phase's start (perf_counter)."""

    index: int
    sent: float = 0.0
    created: float = 0.0
    accepted: float = 0.0
    paid: float = 0.0
    last_miss: float = 0.0
    """Send time of the last poll that did not see ``paid`` (or of the payment request)."""
    polls: int = 0
    order_id: str = ""
    total: int = 0
    error: str = ""

    def row(self) -> list[Any]:
        r = [self.order_id, self.sent, self.created, self.accepted, self.paid, self.polls]
        return [round(x, 3) if isinstance(x, float) else x for x in r] + [self.error]


@dataclass
class BaseFlow:
    index: int
    sent: float = 0.0
    created: float = 0.0
    confirmed: float = 0.0
    error: str = ""


@dataclass
class Phase:
    """Workers pulling flow indexes until they run out or the deadline passes."""

    count: int
    deadline: float
    started: int = 0

    def take(self) -> int | None:
        if self.started >= self.count or time.monotonic() > self.deadline:
            return None
        self.started += 1
        return self.started - 1


class Client:
    """The buyers' side: an aiohttp session on loopback and the timing of each step."""

    def __init__(self, args: argparse.Namespace, url: str, sku: int, tokens: list[str]) -> None:
        self.args = args
        self.url = url
        self.sku = sku
        self.tokens = tokens
        self.t0 = time.perf_counter()
        self.statuses: Counter[str] = Counter()
        """Unexpected answers, as ``step status code``."""
        self.poll_path = "/payment" if args.poll_endpoint == "payment" else ""
        self.paid_status = "charged" if args.poll_endpoint == "payment" else "paid"
        self.poll_rtts: list[float] = []

    def now(self) -> float:
        return (time.perf_counter() - self.t0) * 1000

    async def request(
        self,
        session: aiohttp.ClientSession,
        method: str,
        path: str,
        token: str,
        body: object = None,
        key: str | None = None,
    ) -> tuple[int, Json]:
        headers = {"Authorization": f"Bearer {token}"}
        if key is not None and self.args.idempotency_keys:
            headers["Idempotency-Key"] = key
        data = None
        if body is not None:
            data = orjson.dumps(body)
            headers["Content-Type"] = "application/json"
        async with session.request(method, self.url + path, data=data, headers=headers) as resp:
            raw = await resp.read()
            return resp.status, orjson.loads(raw) if raw else {}

    def unexpected(self, step: str, status: int, body: Json) -> str:
        err = body.get("error")
        code = err.get("code") if isinstance(err, dict) else body.get("status", "")
        what = f"{step} {status} {code}"
        self.statuses[what] += 1
        return what

    async def flow(self, session: aiohttp.ClientSession, f: Flow) -> None:
        token = self.tokens[f.index]
        order = {
            "lines": [{"sku": self.sku, "quantity": 1}],
            "address": {
                "name": f"Buyer {f.index:06d}",
                "line1": f"{f.index % 999} Bench Road",
                "city": "Hangzhou",
                "region": REGION,
                "postal_code": "310000",
            },
        }
        try:
            f.sent = self.now()
            status, body = await self.request(
                session, "POST", "/v1/orders", token, order, f"order-{f.index}"
            )
            f.created = self.now()
            if status != 201:
                f.error = self.unexpected("order", status, body)
                return
            f.order_id, f.total = str(body["id"]), int(body["total"])
            path = f"/v1/orders/{f.order_id}"
            status, body = await self.request(
                session, "POST", path + "/payments", token, {"method": "card"}, f"pay-{f.index}"
            )
            f.accepted = self.now()
            if status != 202:
                f.error = self.unexpected("payment", status, body)
                return
            f.last_miss = f.created
            deadline = f.sent + self.args.order_timeout_s * 1000
            while True:
                sent = self.now()
                status, body = await self.request(session, "GET", path + self.poll_path, token)
                self.poll_rtts.append(self.now() - sent)
                f.polls += 1
                if status != 200:
                    f.error = self.unexpected("poll", status, body)
                    return
                if body["status"] == self.paid_status:
                    f.paid = self.now()
                    return
                if body["status"] not in ("pending_payment", "pending"):
                    f.error = self.unexpected("poll", status, body)
                    return
                f.last_miss = sent
                if self.now() > deadline:
                    f.error = f"not paid within {self.args.order_timeout_s} s"
                    return
                await asyncio.sleep(self.args.poll_interval_ms / 1000)
        except (aiohttp.ClientError, TimeoutError, KeyError, ValueError) as exc:
            f.error = f"{type(exc).__name__}: {exc}"
            self.statuses[f.error[:80]] += 1

    async def run(
        self, session: aiohttp.ClientSession, first: int, count: int, deadline: float
    ) -> tuple[list[Flow], bool]:
        """Flows ``first .. first+count-1``; (the flows started, whether all were)."""
        phase = Phase(count, deadline)
        flows: list[Flow] = []

        async def worker() -> None:
            while (i := phase.take()) is not None:
                f = Flow(first + i)
                flows.append(f)
                await self.flow(session, f)

        await asyncio.gather(*(worker() for _ in range(self.args.concurrency)))
        return sorted(flows, key=lambda f: f.index), phase.started == count


class Baseline:
    """Create + confirm straight at a sandbox, as pyorder's dispatcher does for one attempt."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.t0 = time.perf_counter()
        self.statuses: Counter[str] = Counter()

    def now(self) -> float:
        return (time.perf_counter() - self.t0) * 1000

    async def post(
        self, session: aiohttp.ClientSession, path: str, body: Json, key: str
    ) -> tuple[int, Json]:
        headers = {"Idempotency-Key": key, "Content-Type": "application/json"}
        async with session.post(self.url + path, data=orjson.dumps(body), headers=headers) as r:
            return r.status, orjson.loads(await r.read())

    async def flow(self, session: aiohttp.ClientSession, f: BaseFlow) -> None:
        intent = {
            "amount": PRICE,
            "currency": CURRENCY,
            "payment_method_types": ["card"],
            "payment_method": "pm_card_visa",
            "metadata": {"order_id": f"baseline-{f.index}", "attempt": "1"},
        }
        try:
            f.sent = self.now()
            status, body = await self.post(
                session, "/v1/payment_intents", intent, f"base-{f.index}-create"
            )
            f.created = self.now()
            if status != 200:
                f.error = f"create {status}"
                return
            status, body = await self.post(
                session,
                f"/v1/payment_intents/{body['id']}/confirm",
                {},
                f"base-{f.index}-confirm",
            )
            f.confirmed = self.now()
            if status != 200 or body.get("status") != "succeeded":
                f.error = f"confirm {status} {body.get('status')}"
        except (aiohttp.ClientError, TimeoutError, KeyError, ValueError) as exc:
            f.error = f"{type(exc).__name__}: {exc}"
        if f.error:
            self.statuses[f.error[:80]] += 1

    async def run(
        self,
        session: aiohttp.ClientSession,
        first: int,
        count: int,
        concurrency: int,
        deadline: float,
    ) -> list[BaseFlow]:
        phase = Phase(count, deadline)
        flows: list[BaseFlow] = []

        async def worker() -> None:
            while (i := phase.take()) is not None:
                f = BaseFlow(first + i)
                flows.append(f)
                await self.flow(session, f)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return flows


# --- the run -----------------------------------------------------------------------------------


def session(concurrency: int, timeout_s: float) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=concurrency),
        timeout=aiohttp.ClientTimeout(total=timeout_s),
    )


def cpu_of(pids: dict[str, int]) -> dict[str, float]:
    """CPU seconds of each process and of the client so far, and the machine's counters
    (``machine_*``, from /proc/stat: all CPUs, in clock ticks converted to seconds)."""
    out = {name: cpu_seconds(pid) for name, pid in pids.items()}
    out["client"] = time.process_time()
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    tick = os.sysconf("SC_CLK_TCK")
    user, nice, system, _idle, iowait, irq, softirq, steal = (x / tick for x in fields)
    out["machine_busy"] = user + nice + system + irq + softirq
    out["machine_iowait"] = iowait
    out["machine_steal"] = steal
    return out


def cores(before: dict[str, float], after: dict[str, float], seconds: float) -> dict[str, float]:
    """CPU cores used over ``seconds``; ``others``: the machine's busy CPU not used by the
    benchmark's own processes (other work on the machine disturbs the figures)."""
    if seconds <= 0:
        return {}
    out = {k: (after[k] - before[k]) / seconds for k in before}
    ours = sum(v for k, v in out.items() if not k.startswith("machine_"))
    out["others"] = max(0.0, out["machine_busy"] - ours)
    return out


def measured_span(flows: Sequence[Flow]) -> float:
    """Seconds from the first order sent to the last ``paid`` observed."""
    paid = [f for f in flows if f.paid]
    if not paid:
        return 0.0
    return (max(f.paid for f in paid) - min(f.sent for f in flows)) / 1000


async def ledgers(http_session: aiohttp.ClientSession, boxes: Sequence[Sandbox]) -> dict[str, Json]:
    out: dict[str, Json] = {}
    for box in boxes:
        async with http_session.get(box.url + "/_sandbox/ledger") as resp:
            out[box.name] = orjson.loads(await resp.read())
    return out


async def drain_webhooks(
    http_session: aiohttp.ClientSession, boxes: Sequence[Sandbox], timeout_s: float
) -> tuple[float | None, dict[str, Json]]:
    """Wait until no webhook is pending at any sandbox: (seconds it took, or None if it did
    not within ``timeout_s``; the ledgers then)."""
    start = time.perf_counter()
    while True:
        books = await ledgers(http_session, boxes)
        pending = sum(1 for b in books.values() for h in b["webhooks"] if h["state"] == "pending")
        waited = time.perf_counter() - start
        if pending == 0:
            return waited, books
        if waited > timeout_s:
            return None, books
        await asyncio.sleep(0.1)


async def server_payments(
    client: Client, http_session: aiohttp.ClientSession, flows: Sequence[Flow]
) -> dict[str, Json]:
    """The server's view of each paid order's payment."""
    out: dict[str, Json] = {}
    todo = iter([f for f in flows if f.paid])

    async def worker() -> None:
        for f in todo:
            status, body = await client.request(
                http_session, "GET", f"/v1/orders/{f.order_id}/payment", client.tokens[f.index]
            )
            out[f.order_id] = body if status == 200 else {"status": f"HTTP {status}"}

    await asyncio.gather(*(worker() for _ in range(client.args.concurrency)))
    return out


def check(flows: Sequence[Flow], books: dict[str, Json], payments: dict[str, Json]) -> Json:
    """The providers' ledgers against the orders observed paid, and the server's payments."""
    problems: list[str] = []
    paid = {f.order_id: f.total for f in flows if f.paid}
    charges: dict[str, list[Json]] = {}
    refunds = 0
    by_provider: Counter[str] = Counter()
    for name, book in books.items():
        refunds += len(book["refunds"])
        for c in book["charges"]:
            oid = str(c.get("metadata", {}).get("order_id", ""))
            charges.setdefault(oid, []).append(c | {"provider": name})
            by_provider[name] += 1
    for oid, total in paid.items():
        mine = charges.get(oid, [])
        if len(mine) != 1:
            problems.append(f"order {oid}: paid, charged {len(mine)} times")
            continue
        c = mine[0]
        if c["amount"] != total or str(c["currency"]).upper() != CURRENCY:
            problems.append(f"order {oid}: total {total}, charged {c['amount']} {c['currency']}")
        pay = payments.get(oid, {})
        attempts = pay.get("attempts") or []
        won = [a for a in attempts if a.get("status") == "succeeded"]
        if pay.get("status") != "charged" or pay.get("charged") != total:
            problems.append(
                f"order {oid}: the server says {pay.get('status')} {pay.get('charged')}"
            )
        elif len(won) != 1 or won[0]["provider"] != c["provider"]:
            problems.append(f"order {oid}: server attempts {attempts} vs charge at {c['provider']}")
    orphans = sorted(set(charges) - set(paid))
    problems += [f"charge without a paid order: {oid} ({len(charges[oid])})" for oid in orphans]
    charged = sum(c["amount"] for cs in charges.values() for c in cs)
    expected = sum(paid.values())
    if charged != expected:
        problems.append(f"charged {charged} in all, the paid orders total {expected}")
    if refunds:
        problems.append(f"{refunds} refunds (none expected)")
    failed = [f for f in flows if not f.paid]
    if failed:
        problems.append(f"{len(failed)} flows did not end paid, e.g. {failed[0].error}")
    attempts_hist = Counter(len(p.get("attempts") or []) for p in payments.values())
    return {
        "ok": not problems,
        "paid_orders": len(paid),
        "flows": len(flows),
        "charges": sum(by_provider.values()),
        "charges_by_provider": dict(by_provider),
        "charged_total": charged,
        "paid_orders_total": expected,
        "refunds": refunds,
        "attempts_per_payment": {str(k): v for k, v in sorted(attempts_hist.items())},
        "problems": problems[:50],
        "problem_count": len(problems),
    }


def webhook_stats(books: dict[str, Json]) -> dict[str, Json]:
    out: dict[str, Json] = {}
    for name, book in books.items():
        hooks = book["webhooks"]
        statuses: Counter[str] = Counter(
            str(s) for h in hooks for s in h["statuses"] if s is None or not 200 <= s < 300
        )
        out[name] = {
            "events": len(hooks),
            "by_state": dict(Counter(h["state"] for h in hooks)),
            "by_type": dict(Counter(h["type"] for h in hooks)),
            "attempts": sum(h["attempts"] for h in hooks),
            "retried": sum(1 for h in hooks if h["attempts"] > 1),
            "non_2xx_answers": dict(statuses),
            "payment_intents": len(book["payment_intents"]),
            "intents_by_status": dict(Counter(p["status"] for p in book["payment_intents"])),
        }
    return out


LOG_LINE = re.compile(r"\b(WARNING|ERROR|CRITICAL)\b")


def log_summary(path: Path) -> Json:
    """Warnings and errors in a process's log: counts, and the first few lines."""
    if not path.exists():
        return {}
    lines = path.read_text(errors="replace").splitlines()
    bad = [ln for ln in lines if LOG_LINE.search(ln)]
    fail_overs = sum(1 for ln in lines if "failing over" in ln)
    levels = Counter(m.group(1) for ln in bad if (m := LOG_LINE.search(ln)))
    return {
        "lines": len(lines),
        "levels": dict(levels),
        "fail_overs": fail_overs,
        "provider_timeouts": sum(1 for ln in lines if "TimeoutError" in ln),
        "first": [ln[:300] for ln in bad[:8]],
    }


class Monitor:
    """Pings ``/healthz`` of each process every ``interval_s`` on its own connections: a
    process whose event loop stalls (a GC pause, a blocking call) answers late. A stall seen
    by every process at once is the client's own."""

    def __init__(self, urls: dict[str, str], interval_s: float = 0.01) -> None:
        self.urls = urls
        self.interval_s = interval_s
        self.rtts: dict[str, list[float]] = {name: [] for name in urls}
        self._task: asyncio.Task[None] | None = None

    async def _ping(self, http_session: aiohttp.ClientSession, name: str) -> None:
        while True:
            t = time.perf_counter()
            try:
                async with http_session.get(self.urls[name] + "/healthz") as resp:
                    await resp.read()
            except (aiohttp.ClientError, TimeoutError):
                pass
            self.rtts[name].append((time.perf_counter() - t) * 1000)
            await asyncio.sleep(self.interval_s)

    async def _run(self) -> None:
        async with session(len(self.urls), 30) as http_session:
            await asyncio.gather(*(self._ping(http_session, name) for name in self.urls))

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> dict[str, Json]:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        out: dict[str, Json] = {}
        for name, rtts in self.rtts.items():
            out[name] = dist(rtts) | {
                "over_50ms": sum(1 for x in rtts if x > 50),
                "over_100ms": sum(1 for x in rtts if x > 100),
            }
        return out


async def measure(
    args: argparse.Namespace,
    url: str,
    sku: int,
    tokens: list[str],
    boxes: Sequence[Sandbox],
    base_box: Sandbox,
    pids: dict[str, int],
) -> Json:
    n, c, w = args.orders, args.concurrency, args.warmup
    result: Json = {}
    async with session(c, args.order_timeout_s) as http_session:
        # (b) the baseline first, while pyorder is idle.
        base = Baseline(base_box.url)
        deadline = time.monotonic() + args.time_limit_s
        await base.run(http_session, 0, w, c, deadline)
        cpu0, t0 = cpu_of(pids), time.perf_counter()
        base.t0 = time.perf_counter()
        bflows = await base.run(http_session, w, n, c, time.monotonic() + args.time_limit_s)
        b_cpu = cores(cpu0, cpu_of(pids), time.perf_counter() - t0)
        ok = [f for f in bflows if not f.error]
        span = (max(f.confirmed for f in ok) - min(f.sent for f in ok)) / 1000 if ok else 0.0
        result["baseline"] = {
            "flows": len(bflows),
            "errors": dict(base.statuses),
            "create_confirm_ms": dist([f.confirmed - f.sent for f in ok]),
            "create_ms": dist([f.created - f.sent for f in ok]),
            "confirm_ms": dist([f.confirmed - f.created for f in ok]),
            "seconds": span,
            "flows_per_s": len(ok) / span if span else 0.0,
            "cpu_cores": b_cpu,
        }
        print(
            f"baseline: {len(ok)} create+confirm at the sandbox, "
            f"{result['baseline']['flows_per_s']:,.0f}/s",
            flush=True,
        )

        # (a) pyorder: warm-up, then the measured flows.
        client = Client(args, url, sku, tokens)
        warm, _ = await client.run(http_session, 0, w, time.monotonic() + args.time_limit_s)
        commits0, cpu0 = commit_stats(url), cpu_of(pids)
        monitor = Monitor({"server": url} | {b.name: b.url for b in boxes})
        monitor.start()
        client.t0, t0 = time.perf_counter(), time.perf_counter()
        flows, complete = await client.run(http_session, w, n, time.monotonic() + args.time_limit_s)
        wall = time.perf_counter() - t0
        a_cpu = cores(cpu0, cpu_of(pids), wall)
        healthz = await monitor.stop()
        commits1 = commit_stats(url)
        print(f"pyorder: {sum(1 for f in flows if f.paid)} of {len(flows)} paid", flush=True)
        drained, books = await drain_webhooks(http_session, boxes, args.webhook_drain_s)
        hooks_span = time.perf_counter() - t0
        payments = await server_payments(client, http_session, [*warm, *flows])

    paid = [f for f in flows if f.paid]
    span = measured_span(flows)
    d = {k: commits1.get(k, 0.0) - commits0.get(k, 0.0) for k in commits1}
    count = d.get("pyorder_commit_seconds_count", 0.0)
    result["pyorder"] = {
        "flows": len(flows),
        "complete": complete,
        "paid": len(paid),
        "errors": dict(client.statuses),
        "click_to_paid_ms": dist([f.paid - f.sent for f in paid]),
        "click_to_paid_lower_bound_ms": dist([f.last_miss - f.sent for f in paid]),
        "order_created_ms": dist([f.created - f.sent for f in paid]),
        "payment_accepted_ms": dist([f.accepted - f.created for f in paid]),
        "paid_after_accept_ms": dist([f.paid - f.accepted for f in paid]),
        "poll_uncertainty_ms": dist([f.paid - f.last_miss for f in paid]),
        "polls_per_order": dist([float(f.polls) for f in paid]),
        "poll_rtt_ms": dist(client.poll_rtts),
        "healthz_rtt_ms": healthz,
        "seconds": span,
        "paid_orders_per_s": len(paid) / span if span else 0.0,
        "cpu_cores": a_cpu,
        "commits": {
            "per_s": count / wall if wall else 0.0,
            "mean_ms": 1000 * d.get("pyorder_commit_seconds_sum", 0.0) / count if count else 0.0,
            "mean_items": d.get("pyorder_commit_batch_items_sum", 0.0) / count if count else 0.0,
        },
        "orders": {
            "columns": ["order_id", "sent", "created", "accepted", "paid", "polls", "error"],
            "rows": [f.row() for f in flows],
        },
    }
    delivered = sum(1 for b in books.values() for h in b["webhooks"] if h["state"] == "delivered")
    result["webhooks"] = {
        "drained_after_s": drained,
        "delivered_per_s": delivered / hooks_span,
        "by_provider": webhook_stats(books),
    }
    result["correctness"] = check([*warm, *flows], books, payments)
    return result


def run(args: argparse.Namespace) -> Json:
    sys.path.insert(0, str(ROOT))
    from pyorder.auth import Role, TokenIssuer, load_or_create_secret

    latency = parse_latency(args.provider_latency_ms) if args.provider_latency_ms else 0
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="pyorder-c2p-")))
        data_dir = tmp / "data"
        database = stack.enter_context(fresh_database(args.database)) if args.database else None
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        boxes = [Sandbox(name, methods, prio) for name, methods, prio in PROVIDERS]
        base_box = Sandbox("baseline", "card", 0)
        pids: dict[str, int] = {}
        knobs: dict[str, Json] = {}
        for box in [*boxes, base_box]:
            hook = f"{url}/v1/webhooks/payments/{box.name}" if box is not base_box else None
            cmd = box.command(hook, args.sandbox_arg)
            log = tmp / f"sandbox-{box.name}.log"
            pids[box.name] = stack.enter_context(child(cmd, log, box.url + "/healthz"))
            knobs[box.name] = set_knobs(box.url, latency)
        cmd = [*server_command(), "--port", str(port), "--data-dir", str(data_dir)]
        if database:
            cmd += ["--database", database]
        for box in boxes:
            cmd += ["--payment-provider", box.spec()]
        cmd += args.server_arg
        pids["server"] = stack.enter_context(child(cmd, tmp / "server.log", url + "/readyz"))
        if args.keep_logs:
            stack.callback(keep_logs, tmp, args.out)

        issuer = TokenIssuer(load_or_create_secret(data_dir))
        admin, merchant = issuer.mint(Role.ADMIN, "bench"), issuer.mint(Role.MERCHANT, "bench")
        wh = http(url + "/v1/warehouses", "POST", {"name": "c2p", "regions": [REGION]}, admin)
        sku_body = {
            "title": "click-to-paid item",
            "price": PRICE,
            "currency": CURRENCY,
            "stock": [{"warehouse": int(wh["id"]), "units": STOCK}],
        }
        sku = int(http(url + "/v1/skus", "POST", sku_body, merchant)["id"])
        tokens = [
            issuer.mint(Role.BUYER, f"c2p-buyer-{i}") for i in range(args.warmup + args.orders)
        ]

        storage = "postgresql" if database else "sqlite"
        print(
            f"click-to-paid on {storage}: {args.orders} orders, {args.concurrency} clients, "
            f"poll every {args.poll_interval_ms:g} ms ({args.poll_endpoint}), provider latency "
            f"{latency} ms",
            flush=True,
        )
        import uvloop

        result = uvloop.run(measure(args, url, sku, tokens, boxes, base_box, pids))
        result["logs"] = {
            name: log_summary(tmp / f"{name}.log")
            for name in ["server", *(f"sandbox-{b.name}" for b in [*boxes, base_box])]
        }
        result["sandbox_knobs"] = knobs

    a, b = result["pyorder"], result["baseline"]
    ratios: Json = {}
    for q in ("p50", "p95", "p99"):
        x, y = a["click_to_paid_ms"].get(q), b["create_confirm_ms"].get(q)
        if x is not None and y:
            ratios[q] = {"ratio": x / y, "added_ms": x - y}
    if b["flows_per_s"]:
        ratios["throughput"] = a["paid_orders_per_s"] / b["flows_per_s"]
    return {
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": " ".join(["python", "loadtest/click_to_paid.py", *sys.argv[1:]]),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "storage": storage,
        "settings": {
            "orders": args.orders,
            "concurrency": args.concurrency,
            "warmup": args.warmup,
            "poll_interval_ms": args.poll_interval_ms,
            "poll_endpoint": args.poll_endpoint,
            "idempotency_keys": args.idempotency_keys,
            "provider_latency_ms": latency,
            "providers": [b.spec().replace(SECRET, "…") for b in boxes],
            "server_args": args.server_arg,
            "sandbox_args": args.sandbox_arg,
        },
        **result,
        "vs_baseline": ratios,
    }


def keep_logs(tmp: Path, out: Path) -> None:
    dest = out / f"click_to_paid-logs-{time.strftime('%Y%m%d-%H%M%S')}"
    dest.mkdir(parents=True, exist_ok=True)
    for log in tmp.glob("*.log"):
        shutil.copy(log, dest / log.name)


def markdown(r: Json) -> str:
    a, b, ok = r["pyorder"], r["baseline"], r["correctness"]
    s = r["settings"]

    def row(name: str, d: Json) -> str:
        if not d.get("n"):
            return f"| {name} | 0 | - | - | - | - | - |"
        return (
            f"| {name} | {d['n']} | {d['p50']:.2f} | {d['p95']:.2f} | {d['p99']:.2f} | "
            f"{d['mean']:.2f} | {d['max']:.2f} |"
        )

    vs = r["vs_baseline"]
    ratio_text = ", ".join(
        f"{q} x{vs[q]['ratio']:.1f} (+{vs[q]['added_ms']:.2f} ms)"
        for q in ("p50", "p95", "p99")
        if q in vs
    )
    hooks = r["webhooks"]
    drained = hooks["drained_after_s"]
    hook_lines = [
        f"- {name}: {h['events']} events {h['by_state']}, {h['attempts']} delivery attempts, "
        f"{h['retried']} retried, non-2xx answers {h['non_2xx_answers'] or 'none'}"
        for name, h in hooks["by_provider"].items()
    ]
    cpu = ", ".join(f"{k} {v:.2f}" for k, v in a["cpu_cores"].items())
    levels = r["logs"].get("server", {}).get("levels") or "no warnings"
    bcpu = ", ".join(f"{k} {v:.2f}" for k, v in b["cpu_cores"].items())
    return "\n".join(
        [
            f"# Click-to-paid through the sandbox ({r['storage']}, {r['when']})",
            "",
            f"{s['orders']} orders, {s['concurrency']} concurrent clients (+{s['warmup']} warm-up), "
            f"poll `GET /v1/orders/{{id}}{'/payment' if s['poll_endpoint'] == 'payment' else ''}` "
            f"every {s['poll_interval_ms']:g} ms, provider latency {s['provider_latency_ms']} ms, "
            f"Idempotency-Keys {'on' if s['idempotency_keys'] else 'off'}; "
            f"{r['machine']['cpus']} CPUs.",
            "",
            "| ms | n | p50 | p95 | p99 | mean | max |",
            "|---|---|---|---|---|---|---|",
            row("**click-to-paid** (order sent -> paid seen)", a["click_to_paid_ms"]),
            row(
                "click-to-paid, lower bound (-> last miss sent)", a["click_to_paid_lower_bound_ms"]
            ),
            row("order created (POST /v1/orders)", a["order_created_ms"]),
            row("payment accepted (POST .../payments, 202)", a["payment_accepted_ms"]),
            row("paid after acceptance (polling)", a["paid_after_accept_ms"]),
            row("poll uncertainty (paid seen - last miss sent)", a["poll_uncertainty_ms"]),
            row("one poll's round trip", a["poll_rtt_ms"]),
            row("baseline: sandbox create+confirm, direct", b["create_confirm_ms"]),
            row("baseline: create", b["create_ms"]),
            row("baseline: confirm", b["confirm_ms"]),
            "",
            f"**{a['paid_orders_per_s']:,.0f} paid orders/s** ({a['paid']} paid of {a['flows']} in "
            f"{a['seconds']:.2f} s); baseline {b['flows_per_s']:,.0f} create+confirm/s "
            f"(throughput ratio {vs.get('throughput', 0):.2f}). "
            f"Click-to-paid vs the sandbox alone: {ratio_text}.",
            f"Polls per order: mean {a['polls_per_order'].get('mean', 0):.1f}, "
            f"p99 {a['polls_per_order'].get('p99', 0):.0f}. Errors: {a['errors'] or 'none'} "
            f"(baseline: {b['errors'] or 'none'}).",
            "",
            f"Correctness (providers' ledgers): **{'OK' if ok['ok'] else 'FAILED'}** - "
            f"{ok['paid_orders']} paid orders (incl. warm-up), {ok['charges']} charges "
            f"{ok['charges_by_provider']}, charged {ok['charged_total']:,} = order totals "
            f"{ok['paid_orders_total']:,}, {ok['refunds']} refunds; attempts per payment "
            f"{ok['attempts_per_payment']}.",
            *(f"- {p}" for p in ok["problems"][:10]),
            "",
            "Webhooks: "
            + (
                f"all delivered {drained:.2f} s after the last flow ended "
                f"(~{hooks['delivered_per_s']:,.0f} events/s, one at a time per provider)"
                if drained is not None
                else "still pending when the wait ended"
            )
            + ".",
            *hook_lines,
            "",
            f"CPU cores during the flows: {cpu}. During the baseline: {bcpu}.",
            "Server commits during the flows: {per_s:,.0f}/s of {mean_items:,.1f} items, "
            "{mean_ms:.2f} ms each.".format(**a["commits"]),
            "Server log: {levels}, {fail_overs} fail-overs, {provider_timeouts} provider "
            "timeouts.".format(**(r["logs"].get("server") or {}) | {"levels": levels}),
            "Event-loop stalls (GET /healthz every 10 ms during the flows): "
            + "; ".join(
                f"{k} p99 {v.get('p99', 0):.1f} ms, max {v.get('max', 0):.1f} ms, "
                f"{v['over_50ms']} > 50 ms"
                for k, v in a["healthz_rtt_ms"].items()
            )
            + ".",
            "",
            f"Command: `{r['command']}`",
            "",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Click-to-paid latency (order -> payment -> webhook -> paid) through the "
        "payment sandboxes, with a direct sandbox baseline and a ledger check."
    )
    parser.add_argument("--orders", type=int, default=2000, help="measured flows")
    parser.add_argument("--concurrency", type=int, default=32, help="concurrent clients")
    parser.add_argument(
        "--warmup", type=int, help="flows before measuring, each phase (default: --concurrency)"
    )
    parser.add_argument(
        "--database",
        help="postgresql://... DSN of a cluster (a fresh database is created there and "
        "dropped); default: SQLite in a temporary folder",
    )
    parser.add_argument("--poll-interval-ms", type=float, default=2.0)
    parser.add_argument(
        "--poll-endpoint",
        choices=["order", "payment"],
        default="order",
        help="poll GET /v1/orders/{id} (status paid, read from the store: committed) or "
        ".../payment (status charged; it reads the in-memory payment, which can show a charge "
        "whose commit is still under way, so it is a little optimistic)",
    )
    parser.add_argument(
        "--provider-latency-ms",
        help="the sandboxes' latency_ms knob: 50 or 20-200 (default 0); mind pyorder's 100 ms "
        "provider timeout (--server-arg=--provider-timeout-ms=...)",
    )
    parser.add_argument(
        "--no-idempotency-keys",
        dest="idempotency_keys",
        action="store_false",
        help="send the POSTs without an Idempotency-Key (default: with one, as a buyer's app would)",
    )
    parser.add_argument("--order-timeout-s", type=float, default=30.0, help="per flow")
    parser.add_argument(
        "--time-limit-s", type=float, default=300.0, help="no flow starts after this, per phase"
    )
    parser.add_argument(
        "--webhook-drain-s", type=float, default=60.0, help="wait for webhooks still queued"
    )
    parser.add_argument(
        "--server-arg", action="append", default=[], help="extra pyorder-server argument"
    )
    parser.add_argument(
        "--sandbox-arg", action="append", default=[], help="extra payment sandbox argument"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "results", help="summary directory")
    parser.add_argument(
        "--keep-logs", action="store_true", help="copy the processes' logs to --out"
    )
    args = parser.parse_args(argv)
    if args.warmup is None:
        args.warmup = args.concurrency
    if args.orders < 1 or args.concurrency < 1 or args.warmup < 0:
        parser.error("--orders and --concurrency must be at least 1, --warmup at least 0")
    result = run(args)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = f"click_to_paid-{result['storage']}-{time.strftime('%Y%m%d-%H%M%S')}"
    (args.out / f"{stem}.json").write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
    text = markdown(result)
    (args.out / f"{stem}.md").write_text(text)
    print(text)
    print(f"summary: {args.out / stem}.json, .md")
    return 0 if result["correctness"]["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
