"""Slow connections against a server at a low open-files limit, on loopback, bounded in time:
does a normal client still get its orders placed?

Starts the server of a checkout (``--root``) under ``--nofile`` open files, opens ``--slow``
connections that each send part of a request's headers and then one byte every
``--byte-every-s``, and, while they are held, places ``--orders`` single orders one at a time
(a new connection each, 10 s timeout). Prints how many were placed, how many slow connections
the server closed, and how long the slow ones were held.

    python loadtest/slow_clients.py --slow 5000 --nofile 1024 --orders 300
    python loadtest/slow_clients.py --root /work/main --slow 5000 --nofile 1024 --orders 300
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import http_bench as hb  # a script beside this one


async def slow_connection(port: int, every_s: float, stop_at: float, closed: list[float]) -> None:
    opened = time.monotonic()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return
    try:
        writer.write(b"POST /v1/orders HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        while time.monotonic() < stop_at:
            await asyncio.sleep(every_s)
            if reader.at_eof():
                break
            writer.write(b"a")
            await writer.drain()
        else:
            return
    except OSError:
        pass
    closed.append(time.monotonic() - opened)
    writer.close()


async def place(port: int, request: bytes) -> int:
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 10)
        writer.write(request)
        line = await asyncio.wait_for(reader.readline(), 10)
        writer.close()
        return int(line.split()[1])
    except (OSError, TimeoutError, IndexError, ValueError):
        return 0


async def run(args: argparse.Namespace, port: int, request: bytes) -> dict[str, Any]:
    stop_at = time.monotonic() + args.hold_s
    closed: list[float] = []
    slow = [
        asyncio.create_task(slow_connection(port, args.byte_every_s, stop_at, closed))
        for _ in range(args.slow)
    ]
    await asyncio.sleep(2)  # let them connect
    statuses: dict[int, int] = {}
    started = time.monotonic()
    for _ in range(args.orders):
        status = await place(port, request)
        statuses[status] = statuses.get(status, 0) + 1
    placing_s = time.monotonic() - started
    await asyncio.gather(*slow)
    return {
        "orders": statuses,
        "placing_s": round(placing_s, 1),
        "slow_closed_by_server": len(closed),
        "slow_held_s_max": round(max(closed), 1) if closed else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=str(hb.ROOT))
    parser.add_argument("--slow", type=int, default=5000)
    parser.add_argument("--nofile", type=int, default=1024, help="the server's open-files limit")
    parser.add_argument("--orders", type=int, default=300)
    parser.add_argument("--byte-every-s", type=float, default=1.0)
    parser.add_argument("--hold-s", type=float, default=60, help="how long the slow ones try")
    args = parser.parse_args()
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="pyorder-slow-")))
        port, data = hb.free_port(), tmp / "data"
        url = f"http://127.0.0.1:{port}"
        cmd = [
            sys.executable,
            "-m",
            "pyorder.server.main",
            "--port",
            str(port),
            "--data-dir",
            str(data),
        ]
        cmd = ["prlimit", f"--nofile={args.nofile}:{args.nofile}", "--", *cmd]
        stack.enter_context(hb.process(cmd, tmp / "server.log", url + "/readyz", args.root))
        skus = hb.seed(url, data)
        token = hb.mint(data, "buyer", "patient")
        body = json.dumps(hb.order(skus[0], 1)).encode()
        request = (
            f"POST /v1/orders HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n"
        ).encode() + body
        result = asyncio.run(run(args, port, request))
    result["command"] = " ".join(sys.argv)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
