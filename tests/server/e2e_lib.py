"""End-to-end helpers: the real ``pyorder-server`` as a child process on loopback, on SQLite
or on a fresh PostgreSQL database, with HTTP clients and catalogue helpers.

``Server.call`` sends one request (http.client); ``Server.concurrently`` sends many at once
(aiohttp inside ``asyncio.run``). ``Shop`` sets up warehouses, regions and SKUs and reads
stock through the API. The fixtures are in ``conftest``.
"""

import asyncio
import contextlib
import http.client
import json
import re
import socket
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import asyncpg
import pytest

from pyorder.auth import Role, TokenIssuer, load_or_create_secret
from tests.support.postgres import fresh_postgres_database, postgres_dsn
from tests.support.server import ServerProcess

BACKENDS = ("sqlite", "postgres")
_NO_BODY = object()

HTTP_ONLY = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
"""For a test of the HTTP layer alone (framing, deadlines, listeners, static files), where no
request reaches the store: it runs on SQLite only, as on PostgreSQL it would take the same
path again (a test whose requests reach the store runs on both)."""


# --- PostgreSQL: one fresh database per server ----------------------------------------------


@contextmanager
def fresh_database(backend: str) -> Iterator[str | None]:
    """None for SQLite (the server's data directory holds it); for PostgreSQL the DSN of a
    new, empty database, dropped afterwards."""
    if backend == "sqlite":
        yield None
        return
    with fresh_postgres_database("pyorder_e2e") as dsn:
        yield dsn


# --- HTTP --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Response:
    status: int
    headers: Mapping[str, str]
    """Lower-cased names."""
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def error_code(self) -> str:
        """``error.code`` of an error body; fails the test if the body is not one."""
        doc = self.json()
        assert isinstance(doc, dict), self
        assert set(doc) == {"error"}, self
        error = doc["error"]
        assert isinstance(error, dict), self
        assert isinstance(error.get("code"), str), self
        assert isinstance(error.get("message"), str), self
        assert error["message"], self
        return str(error["code"])

    def __str__(self) -> str:
        return f"HTTP {self.status}: {self.body[:600]!r}"


@dataclass(frozen=True)
class Call:
    """One request for ``Server.concurrently``."""

    method: str
    path: str
    token: str | None = None
    json: Any = _NO_BODY
    body: bytes | None = None
    headers: Mapping[str, str] = field(default_factory=dict)

    def encoded(self) -> tuple[bytes | None, dict[str, str]]:
        headers = dict(self.headers)
        if self.token is not None:
            headers["Authorization"] = f"Bearer {self.token}"
        body = self.body
        if self.json is not _NO_BODY:
            body = json.dumps(self.json).encode()
        if body is not None:
            headers.setdefault("Content-Type", "application/json")
        return body, headers


class Server:
    """A running server on one backend: tokens, HTTP, and stop/start/restart."""

    def __init__(self, proc: ServerProcess, backend: str) -> None:
        self.proc = proc
        self.backend = backend
        self._issuer = TokenIssuer(load_or_create_secret(proc.data_dir))

    @property
    def url(self) -> str:
        return self.proc.url

    @property
    def log_path(self) -> Path:
        return self.proc.data_dir.parent / f"server-{self.proc.port}.log"

    # tokens
    def token(
        self, role: str, subject: str, ttl_s: int = 3600, account_created_s: int | None = None
    ) -> str:
        return self._issuer.mint(Role(role), subject, ttl_s, account_created_s)

    def admin(self) -> str:
        return self.token("admin", "ops")

    # lifecycle
    def stop(self) -> None:
        self.proc.stop()

    def start(self) -> None:
        self.proc.start()

    def restart(self) -> None:
        self.proc.restart()

    # HTTP
    def call(
        self,
        method: str,
        path: str,
        *,
        token: str | None = None,
        json: Any = _NO_BODY,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float = 30.0,
    ) -> Response:
        data, hdrs = Call(method, path, token, json, body, headers or {}).encoded()
        conn = http.client.HTTPConnection("127.0.0.1", self.proc.port, timeout=timeout)
        try:
            conn.request(method, path, body=data, headers=hdrs)
            resp = conn.getresponse()
            payload = resp.read()
            return Response(resp.status, {k.lower(): v for k, v in resp.getheaders()}, payload)
        finally:
            conn.close()

    def ok(
        self,
        method: str,
        path: str,
        *,
        token: str | None,
        json: Any = _NO_BODY,
        expect: int = 200,
        headers: Mapping[str, str] | None = None,
    ) -> Any:
        """Call and assert the status; returns the decoded body."""
        resp = self.call(method, path, token=token, json=json, headers=headers)
        assert resp.status == expect, f"{method} {path}: {resp}"
        return resp.json()

    async def cut_database_connections(self) -> int:
        """Terminate the server's PostgreSQL connections, as a database restart would: its
        next statements on them fail. Returns how many were cut; SQLite has none (0)."""
        if self.proc.database is None:
            return 0
        name = urlsplit(self.proc.database).path.lstrip("/")
        conn = await asyncpg.connect(postgres_dsn())
        try:
            rows = await conn.fetch(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = $1 AND pid <> pg_backend_pid()",
                name,
            )
        finally:
            await conn.close()
        return len(rows)

    def concurrently(
        self,
        calls: Sequence[Call],
        *,
        connections: int = 200,
        meanwhile: Callable[[], Awaitable[object]] | None = None,
        after_s: float = 0.0,
    ) -> list[Response]:
        """Send every call at once (all released by one gate); responses in call order.

        ``meanwhile`` runs ``after_s`` seconds after the gate opens, while the calls are in
        flight (say, ``cut_database_connections``); calls cut off raise.
        """

        async def one(session: aiohttp.ClientSession, c: Call, gate: asyncio.Event) -> Response:
            data, hdrs = c.encoded()
            await gate.wait()
            async with session.request(c.method, self.url + c.path, data=data, headers=hdrs) as r:
                payload = await r.read()
                return Response(r.status, {k.lower(): v for k, v in r.headers.items()}, payload)

        async def main() -> list[Response]:
            gate = asyncio.Event()
            timeout = aiohttp.ClientTimeout(total=60)
            connector = aiohttp.TCPConnector(limit=connections)
            async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
                tasks = [asyncio.ensure_future(one(session, c, gate)) for c in calls]
                await asyncio.sleep(0)
                gate.set()
                if meanwhile is not None:
                    await asyncio.sleep(after_s)
                    await meanwhile()
                return list(await asyncio.gather(*tasks))

        return asyncio.run(main())


Launch = Callable[..., "Server"]
"""``launch(*args)``: start a server of the test's own with extra command-line options."""


@contextmanager
def running_server(
    backend: str,
    workdir: Path,
    args: Sequence[str] = (),
    *,
    dsn_for_server: Callable[[str], str] | None = None,
    nofile: int | None = None,
) -> Iterator[Server]:
    """A started server with a fresh database; stopped (and the database dropped) afterwards.

    ``dsn_for_server`` rewrites the PostgreSQL DSN the server is given (say, to go through a
    ``CommitReplyDropper``); the tests' own connections use the real one. ``nofile`` is the
    server's open-files limit.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    with fresh_database(backend) as dsn:
        if dsn is not None and dsn_for_server is not None:
            dsn = dsn_for_server(dsn)
        proc = ServerProcess(workdir / "data", database=dsn, args=tuple(args), nofile=nofile)
        try:
            proc.start()
            yield Server(proc, backend)
        finally:
            proc.stop()


_COMMIT = b"Q\x00\x00\x00\x0cCOMMIT;\x00"
"""asyncpg's COMMIT: a simple-protocol Query message of ``COMMIT;``."""
_PARSE = re.compile(rb"P.{4}(__asyncpg_stmt_\w+__)\x00([^\x00]*)\x00", re.DOTALL)
"""A Parse message of a statement asyncpg prepares (its name and text)."""
_BIND = re.compile(rb"B.{4}\x00(__asyncpg_stmt_\w+__)\x00", re.DOTALL)
"""A Bind message (unnamed portal) of a prepared statement: its name."""
_READY = re.compile(rb"Z\x00\x00\x00\x05([ITE])")
"""ReadyForQuery: the session idle (I), in a transaction (T) or in a failed one (E)."""


@dataclass
class _Session:
    """What the relay knows of one connection: its statements that write the commit token,
    and whether the server last said it was outside a transaction."""

    token_writers: set[bytes] = field(default_factory=set)
    idle: bool = True


class CommitReplyDropper:
    """A TCP relay between the server and PostgreSQL that, once armed, lets one COMMIT through
    to PostgreSQL and cuts that connection when the reply comes back, without passing it on:
    the transaction is committed, and the server cannot know it. (A network failure at the
    worst moment.) A batch the store sends as one statement outside a transaction commits with
    that statement: the relay knows it as the execution of a statement writing the commit
    token (``intake_commits``) while the session is idle."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self._upstream = upstream
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._armed = threading.Event()
        self.dropped = threading.Event()
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._spawn(self._accept)

    def dsn(self, dsn: str) -> str:
        """``dsn`` through this relay."""
        parts = urlsplit(dsn)
        netloc = parts.netloc.rsplit("@", 1)
        host = f"127.0.0.1:{self.port}"
        return urlunsplit(
            parts._replace(netloc=f"{netloc[0]}@{host}" if len(netloc) == 2 else host)
        )

    def arm(self) -> None:
        self.dropped.clear()
        self._armed.set()

    def close(self) -> None:
        # Shut down first: a close alone does not wake the accept() blocked in ``_accept``
        # (Linux), whose join would then wait out its timeout.
        _close(self._listener)
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            _close(sock)
        for thread in self._threads:
            thread.join(timeout=5)

    def __enter__(self) -> "CommitReplyDropper":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _spawn(self, target: Callable[..., None], *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self._upstream)
            except OSError:
                _close(client)
                continue
            with self._lock:
                self._sockets += [client, upstream]
            cut, session = threading.Event(), _Session()
            self._spawn(self._pump, client, upstream, cut, True, session)
            self._spawn(self._pump, upstream, client, cut, False, session)

    def _pump(
        self,
        src: socket.socket,
        dst: socket.socket,
        cut: threading.Event,
        to_server: bool,
        session: _Session,
    ) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data or cut.is_set():
                    return
                if not to_server:
                    ready = _READY.findall(data)
                    if ready:
                        session.idle = ready[-1] == b"I"
                else:
                    for name, query in _PARSE.findall(data):
                        if b"INSERT INTO intake_commits" in query:
                            session.token_writers.add(name)
                commits = _COMMIT in data or (
                    session.idle
                    and any(name in session.token_writers for name in _BIND.findall(data))
                )
                if to_server and commits and self._armed.is_set():
                    self._armed.clear()
                    # The reply must not get through: the other direction closes this
                    # connection when it arrives, that is once PostgreSQL has committed.
                    cut.set()
                    dst.sendall(data)
                    self.dropped.set()
                    continue
                dst.sendall(data)
        except OSError:
            return
        finally:
            _close(src)
            _close(dst)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()


# --- the shop: catalogue and order helpers over HTTP ------------------------------------------


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def address(region: str, **extra: str) -> dict[str, str]:
    return {"name": "Li Lei", "line1": "1 Road", "city": "Hangzhou", "region": region, **extra}


def order_body(lines: Sequence[tuple[int, int]], region: str) -> dict[str, Any]:
    return {
        "lines": [{"sku": sku, "quantity": qty} for sku, qty in lines],
        "address": address(region),
    }


class Shop:
    """Catalogue set-up and reads through the API, as an admin unless told otherwise."""

    def __init__(self, srv: Server) -> None:
        self.srv = srv
        self.admin = srv.admin()

    def warehouse(
        self, name: str = "", *, token: str | None = None, regions: Sequence[str] = ()
    ) -> int:
        body = {"name": name or unique("wh"), "regions": list(regions)}
        out = self.srv.ok(
            "POST", "/v1/warehouses", token=token or self.admin, json=body, expect=201
        )
        return int(out["id"])

    def region(self, code: str, warehouses: Sequence[int]) -> None:
        self.srv.ok(
            "PUT", f"/v1/regions/{code}", token=self.admin, json={"warehouses": list(warehouses)}
        )

    def sku(
        self,
        stock: Mapping[int, int],
        *,
        price: int = 100,
        currency: str = "CNY",
        limit: int = 0,
        token: str | None = None,
        title: str = "",
        category: str = "",
        release_ms: int | None = None,
    ) -> int:
        body = {
            "title": title or unique("sku"),
            "price": price,
            "currency": currency,
            "stock": [{"warehouse": w, "units": u} for w, u in stock.items()],
            "limit_per_buyer": limit,
            "category": category,
            "release_ms": release_ms,
        }
        out = self.srv.ok("POST", "/v1/skus", token=token or self.admin, json=body, expect=201)
        return int(out["id"])

    def stock(self, sku: int) -> dict[str, Any]:
        """The SKU as the API shows it (``stock`` totals, ``warehouses`` list)."""
        out: dict[str, Any] = self.srv.ok("GET", f"/v1/skus/{sku}", token=self.admin)
        return out

    def totals(self, sku: int) -> dict[str, int]:
        return {k: int(v) for k, v in self.stock(sku)["stock"].items()}

    def by_warehouse(self, sku: int) -> dict[int, dict[str, int]]:
        return {
            int(w["warehouse"]): {k: int(v) for k, v in w.items() if k != "warehouse"}
            for w in self.stock(sku)["warehouses"]
        }

    def order(
        self,
        token: str,
        lines: Sequence[tuple[int, int]],
        region: str,
        headers: Mapping[str, str] | None = None,
    ) -> Response:
        return self.srv.call(
            "POST", "/v1/orders", token=token, json=order_body(lines, region), headers=headers
        )

    def get_order(self, order_id: str, token: str | None = None) -> dict[str, Any]:
        out: dict[str, Any] = self.srv.ok(
            "GET", f"/v1/orders/{order_id}", token=token or self.admin
        )
        return out

    def all_orders(self, token: str, page: int = 200) -> list[dict[str, Any]]:
        """Every order the caller may list, following the cursor."""
        found: list[dict[str, Any]] = []
        cursor: str | None = None
        while True:
            path = f"/v1/orders?limit={page}" + (f"&before={cursor}" if cursor else "")
            out = self.srv.ok("GET", path, token=token)
            found += out["orders"]
            cursor = out["next_cursor"]
            if cursor is None:
                return found

    def wait_for_status(self, order_id: str, status: str, timeout_s: float = 8.0) -> None:
        deadline = time.monotonic() + timeout_s
        seen = ""
        while time.monotonic() < deadline:
            seen = str(self.get_order(order_id)["status"])
            if seen == status:
                return
            time.sleep(0.1)
        raise AssertionError(f"order {order_id} is {seen!r}, not {status!r}, after {timeout_s} s")


@dataclass
class World:
    """A small catalogue on one server: a platform warehouse ``a`` and merchant X's ``b``.

    Regions: ``north`` = [a, b], ``south`` = [b, a], ``west`` = [b] (nearest first). Each
    region code carries a random suffix so that modules sharing nothing still read clearly.
    """

    shop: Shop
    a: int
    b: int
    north: str
    south: str
    west: str
    merchant_x: str


def build_world(srv: Server) -> World:
    shop = Shop(srv)
    merchant_x = srv.token("merchant", "x")
    a = shop.warehouse("platform-a")
    b = shop.warehouse("merchant-x-b", token=merchant_x)
    tag = uuid.uuid4().hex[:6]
    north, south, west = f"north-{tag}", f"south-{tag}", f"west-{tag}"
    shop.region(north, [a, b])
    shop.region(south, [b, a])
    shop.region(west, [b])
    return World(shop, a, b, north, south, west, merchant_x)
