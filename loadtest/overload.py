"""Overload run of single orders, on loopback, bounded in time: what the accepted requests see
when far more clients than the server can serve flood it, and how it recovers.

Starts the server of a checkout (``--root``, default this one) on a fresh SQLite data
directory (or a fresh PostgreSQL database, ``--database DSN``) with the catalogue of
``http_bench.py``, then, with its own closed-loop HTTP/1.1 client (no think time, keep-alive,
one request in flight per connection):

1. **before**: ``--baseline-connections`` clients for ``--baseline-s``: the normal p50/p99
   (32 connections saturate the server: more only queue);
2. **flood**: ``--connections`` clients for ``--flood-s``: per status (201, 503, other) the
   count and the latency percentiles, the share refused, the server's RSS every 0.5 s. A
   client refused with ``503`` waits its ``Retry-After`` before it sends again, as the API
   asks; ``--storm`` makes them ignore it and send again at once (a retry storm);
3. **after**: the baseline again at once, and RSS when it ends; ``last_refused_after_s`` is
   when its last non-201 answer came (recovery).

Then every order answered 201 is counted in the database (nothing acknowledged may be lost),
and ``accepted_p99_ratio`` is the flood's 201 p99 over the one before it.
The client parses only the status line and Content-Length of each answer, so that one Python
process can keep thousands of connections busy. A JSON summary is printed last.

    python loadtest/overload.py --connections 160 --flood-s 30    # 5x the saturating clients
    python loadtest/overload.py --connections 2000 --flood-s 20 --storm
    python loadtest/overload.py --root /work/main --connections 2000   # the baseline build
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

sys.path.insert(0, str(Path(__file__).resolve().parent))

import http_bench as hb  # a script beside this one


@dataclass
class Tally:
    """Latencies (seconds) by status, of the requests after the first on each connection
    (``first``: of the first ones, which also wait for the server to accept the connection);
    connection errors by kind."""

    latency: dict[int, list[float]] = field(default_factory=lambda: defaultdict(list))
    first: dict[int, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    started: float = field(default_factory=time.perf_counter)
    last_refused: float | None = None
    """When the last answer other than 201 came (perf_counter seconds)."""

    def summary(self, seconds: float) -> dict[str, Any]:
        out = self._percentiles(self.latency, seconds)
        out["first_on_connection"] = self._percentiles(self.first, seconds)
        out["errors"] = dict(self.errors)
        if self.last_refused is not None:
            out["last_refused_after_s"] = round(self.last_refused - self.started, 3)
        return out

    @staticmethod
    def _percentiles(latency: dict[int, list[float]], seconds: float) -> dict[str, Any]:
        total = sum(len(v) for v in latency.values())
        out: dict[str, Any] = {"requests": total, "per_s": round(total / seconds)}
        for status, values in sorted(latency.items()):
            values.sort()
            out[str(status)] = {
                "count": len(values),
                "share": round(len(values) / total, 4) if total else 0,
                "p50_ms": round(1000 * values[len(values) // 2], 2),
                "p99_ms": round(1000 * values[min(len(values) - 1, int(len(values) * 0.99))], 2),
                "max_ms": round(1000 * values[-1], 2),
            }
        return out


class Client(asyncio.Protocol):
    """One connection sending ``request`` again as soon as each answer is complete; after a
    ``503`` with ``Retry-After``, only once that time has passed (unless ``storm``: a client
    that ignores it and retries at once)."""

    def __init__(self, request: bytes, tally: Tally, stop_at: float, storm: bool) -> None:
        self.request = request
        self.tally = tally
        self.stop_at = stop_at
        self.storm = storm
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None
        self.buf = b""
        self.sent = 0.0
        self.resume_at = 0.0
        """Not before then may this client send again (``Retry-After``), perf_counter s."""
        self.answered = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.send()

    def send(self) -> None:
        assert self.transport is not None
        self.sent = time.perf_counter()
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            return
        head = self.buf[:end].lower()
        at = head.find(b"content-length:")
        length = int(head[at + 15 : head.find(b"\r\n", at)]) if at >= 0 else 0
        if len(self.buf) < end + 4 + length:
            return
        now = time.perf_counter()
        into = self.tally.latency if self.answered else self.tally.first
        status = int(self.buf[9:12])
        into[status].append(now - self.sent)
        if status != 201:
            self.tally.last_refused = now
        self.answered += 1
        self.buf = self.buf[end + 4 + length :]
        assert self.transport is not None
        wait = _retry_after(head) if not self.storm else 0.0
        self.resume_at = now + wait
        if b"connection: close" in head or now + wait >= self.stop_at:
            self.transport.close()
        elif wait:
            asyncio.get_running_loop().call_later(wait, self._resend)
        else:
            self.send()

    def _resend(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.send()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.buf or (exc is not None and time.perf_counter() < self.stop_at):
            self.tally.errors["reset"] += 1
        if not self.closed.done():
            self.closed.set_result(None)


def _retry_after(head: bytes) -> float:
    """The ``Retry-After`` of an answer's (lower-cased) head, in seconds; 0 when none."""
    at = head.find(b"retry-after:")
    if at < 0:
        return 0.0
    end = head.find(b"\r\n", at)
    return float(head[at + 12 : end if end >= 0 else len(head)])


async def load(
    url: str, request: bytes, connections: int, seconds: float, storm: bool = False
) -> Tally:
    """``connections`` clients for ``seconds``, reconnecting when the server closes."""
    host, port = url.split("//", 1)[1].split(":")
    loop = asyncio.get_running_loop()
    tally = Tally()
    stop_at = time.perf_counter() + seconds

    async def slot() -> None:
        while time.perf_counter() < stop_at:
            try:
                _, proto = await loop.create_connection(
                    lambda: Client(request, tally, stop_at, storm), host, int(port)
                )
            except OSError as exc:
                tally.errors[type(exc).__name__] += 1
                await asyncio.sleep(0.05)
                continue
            await proto.closed
            await asyncio.sleep(max(0.0, proto.resume_at - time.perf_counter()))

    await asyncio.gather(*(slot() for _ in range(connections)))
    return tally


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


async def sample_rss(pid: int, every_s: float, into: list[float]) -> None:
    while True:
        into.append(rss_mb(pid))
        await asyncio.sleep(every_s)


async def run(args: argparse.Namespace, url: str, pid: int, request: bytes) -> dict[str, Any]:
    out: dict[str, Any] = {"rss_mb_start": rss_mb(pid)}
    before = await load(url, request, args.baseline_connections, args.baseline_s)
    out["before"] = before.summary(args.baseline_s)
    out["rss_mb_before_flood"] = rss_mb(pid)
    samples: list[float] = []
    sampler = asyncio.create_task(sample_rss(pid, 0.5, samples))
    flood = await load(url, request, args.connections, args.flood_s, args.storm)
    sampler.cancel()
    out["flood"] = flood.summary(args.flood_s)
    out["rss_mb_flood_max"] = max(samples)
    out["rss_mb_flood_median"] = statistics.median(samples)
    after = await load(url, request, args.baseline_connections, args.baseline_s)
    out["after"] = after.summary(args.baseline_s)
    out["rss_mb_after"] = rss_mb(pid)
    await asyncio.sleep(args.settle_s)
    out[f"rss_mb_after_{args.settle_s:g}s_idle"] = rss_mb(pid)
    out["acknowledged"] = sum(
        len(t.latency.get(201, [])) + len(t.first.get(201, [])) for t in (before, flood, after)
    )
    return out


def _ratio(result: dict[str, Any]) -> float | None:
    """The flood's accepted (201) p99 over the p99 before it: issue 14's figure."""
    before = result["before"].get("201", {}).get("p99_ms")
    flood = result["flood"].get("201", {}).get("p99_ms")
    return round(flood / before, 2) if before and flood else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=str(hb.ROOT), help="checkout whose server to run")
    parser.add_argument("--connections", type=int, default=2000)
    parser.add_argument("--flood-s", type=float, default=20)
    parser.add_argument("--baseline-connections", type=int, default=32)
    parser.add_argument("--baseline-s", type=float, default=5)
    parser.add_argument(
        "--storm",
        action="store_true",
        help="flood clients ignore Retry-After and send again at once (a retry storm)",
    )
    parser.add_argument("--settle-s", type=float, default=10, help="idle wait before last RSS")
    parser.add_argument("--server-arg", action="append", default=[], help="(repeatable)")
    parser.add_argument(
        "--database",
        help="a PostgreSQL DSN: the server runs on a fresh database made on it (default SQLite)",
    )
    args = parser.parse_args()
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if args.connections + 64 > hard:
        parser.error(f"--connections {args.connections} needs an open-files limit above {hard}")
    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:  # pragma: no cover
        pass
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="pyorder-overload-")))
        port, data = hb.free_port(), tmp / "data"
        url = f"http://127.0.0.1:{port}"
        database = stack.enter_context(hb.fresh_database(args.database)) if args.database else None
        cmd = [
            sys.executable,
            "-m",
            "pyorder.server.main",
            "--port",
            str(port),
            "--data-dir",
            str(data),
        ]
        cmd += ["--database", database] if database else []
        cmd += args.server_arg
        proc = stack.enter_context(hb.process(cmd, tmp / "server.log", url + "/readyz", args.root))
        skus = hb.seed(url, data)
        token = hb.mint(data, "buyer", "overload")
        body = json.dumps(hb.order(skus[0], 1)).encode()
        request = (
            f"POST /v1/orders HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode() + body
        result = asyncio.run(run(args, url, proc.pid, request))
        counter = hb.OrderCounter(None if database else data / "pyorder.sqlite3", database)
        result["orders_in_database"] = counter.settled()
    result["storage"] = "postgresql" if database else "sqlite"
    result["accepted_p99_ratio"] = _ratio(result)
    result["root"] = args.root
    result["command"] = " ".join(sys.argv)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
