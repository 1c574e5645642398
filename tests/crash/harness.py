"""Crash-test harness: a load of real HTTP clients, a ledger of what the server answered, and the
checks of the durable state after a ``kill -9`` and a restart.

Every order the clients send carries a unique tag in ``address.line2``, so each row in the
database can be traced back to the request that made it:

- a tag the server acknowledged (2xx) must be in the store exactly once, with the ID, lines,
  total and deadline it was acknowledged with;
- a tag the server refused (4xx) must never be in the store;
- a tag whose request was in flight when the server died (no answer, or a 5xx) may be in the
  store at most once; the first check after the restart pins it down (present or absent), and
  it must stay so;
- nothing else may be in the store.

Stock is checked per (SKU, warehouse), in the database (one consistent read) and through the
API: on_hand is what the test stocked, reserved is the sum of the pending orders' lines on it,
sold the sum of the paid ones', available = on_hand - reserved - sold, and nothing is negative.
"""

import asyncio
import json
import random
import re
import sqlite3
import time
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from tests.support.server import ServerProcess

JSON = dict[str, Any]
Key = tuple[int, int]
"""(sku, warehouse)"""

PENDING, PAID, CANCELLED, EXPIRED = "pending_payment", "paid", "cancelled", "expired"
UNKNOWN_SKU = 1_000_000
"""An SKU id that never exists (a per-order 422)."""


# --- the database, read behind the server's back ---------------------------------------------


@dataclass(frozen=True, slots=True)
class Line:
    sku: int
    warehouse: int
    quantity: int
    unit_price: int


@dataclass(frozen=True, slots=True)
class DbOrder:
    id: int
    buyer: str
    status: str
    total: int
    tag: str
    deadline_ms: int
    lines: tuple[Line, ...]


@dataclass(frozen=True, slots=True)
class DbState:
    orders: dict[int, DbOrder]
    stock: dict[Key, tuple[int, int, int]]
    """(sku, warehouse) -> (on_hand, reserved, sold)"""


_ORDERS_SQL = "SELECT id, buyer, status, total, address, deadline_ms FROM orders"
_LINES_SQL = (
    "SELECT order_id, sku, warehouse, quantity, unit_price FROM order_lines"
    " ORDER BY order_id, line_no"
)
_STOCK_SQL = "SELECT sku, warehouse, on_hand, reserved, sold FROM stock"


def _assemble(
    orders: Iterable[tuple[Any, ...]],
    lines: Iterable[tuple[Any, ...]],
    stock: Iterable[tuple[Any, ...]],
) -> DbState:
    by_order: dict[int, list[Line]] = defaultdict(list)
    for oid, sku, wh, qty, price in lines:
        by_order[int(oid)].append(Line(int(sku), int(wh), int(qty), int(price)))
    out: dict[int, DbOrder] = {}
    for oid, buyer, status, total, address, deadline in orders:
        addr = json.loads(address) if isinstance(address, str | bytes) else address
        tag = str(addr.get("line2", ""))
        oid = int(oid)
        out[oid] = DbOrder(
            oid, str(buyer), str(status), int(total), tag, int(deadline), tuple(by_order[oid])
        )
    rows = {(int(r[0]), int(r[1])): (int(r[2]), int(r[3]), int(r[4])) for r in stock}
    return DbState(out, rows)


class DbReader:
    async def read(self) -> DbState:
        raise NotImplementedError


class SqliteReader(DbReader):
    """Reads the server's SQLite file in one read transaction (WAL: never blocks the server)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    async def read(self) -> DbState:
        return await asyncio.to_thread(self._read)

    def _read(self) -> DbState:
        conn = sqlite3.connect(self.path, timeout=10, isolation_level=None)
        try:
            conn.execute("BEGIN")
            orders = conn.execute(_ORDERS_SQL).fetchall()
            lines = conn.execute(_LINES_SQL).fetchall()
            stock = conn.execute(_STOCK_SQL).fetchall()
            conn.execute("COMMIT")
        finally:
            conn.close()
        return _assemble(orders, lines, stock)


class PostgresReader(DbReader):
    """Reads the server's PostgreSQL database in one repeatable-read transaction."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn

    async def read(self) -> DbState:
        conn = await asyncpg.connect(self.dsn)
        try:
            async with conn.transaction(isolation="repeatable_read", readonly=True):
                orders = [tuple(r) for r in await conn.fetch(_ORDERS_SQL)]
                lines = [tuple(r) for r in await conn.fetch(_LINES_SQL)]
                stock = [tuple(r) for r in await conn.fetch(_STOCK_SQL)]
        finally:
            await conn.close()
        return _assemble(orders, lines, stock)


@dataclass(frozen=True)
class Backend:
    name: str
    database: str | None
    """The DSN for PostgreSQL; None for the embedded SQLite file in ``data_dir``."""
    data_dir: Path
    reader: DbReader


# --- HTTP ------------------------------------------------------------------------------------


class Api:
    """An aiohttp session against one server lifetime, with a bearer token per principal."""

    def __init__(self, server: ServerProcess, connections: int = 64) -> None:
        self.server = server
        self.url = server.url
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=connections),
            timeout=aiohttp.ClientTimeout(total=20),
        )
        self._tokens: dict[tuple[str, str], str] = {}

    async def __aenter__(self) -> "Api":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.session.close()

    def auth(self, role: str, subject: str) -> dict[str, str]:
        token = self._tokens.get((role, subject))
        if token is None:
            token = self._tokens[(role, subject)] = self.server.token(role, subject)
        return {"Authorization": f"Bearer {token}"}

    async def call(
        self,
        method: str,
        path: str,
        who: tuple[str, str],
        body: bytes | None = None,
        key: str | None = None,
    ) -> tuple[int, JSON, bool]:
        """(status, JSON body, replayed?) of one request."""
        headers = self.auth(*who)
        if body is not None:
            headers["Content-Type"] = "application/json"
        if key is not None:
            headers["Idempotency-Key"] = key
        async with self.session.request(method, self.url + path, data=body, headers=headers) as r:
            raw = await r.read()
            try:
                payload = json.loads(raw)
            except ValueError:  # not JSON (a bug of its own): keep it for the report
                payload = {"error": {"code": "not_json"}, "raw": raw[:500].decode(errors="replace")}
            return r.status, payload, r.headers.get("Idempotent-Replayed") == "true"

    async def ok(self, method: str, path: str, who: tuple[str, str], data: object = None) -> JSON:
        """A request that must succeed (2xx)."""
        body = None if data is None else json.dumps(data).encode()
        status, payload, _ = await self.call(method, path, who, body)
        assert 200 <= status < 300, f"{method} {path} -> {status} {payload}"
        return payload

    async def all_orders(self) -> list[JSON]:
        """Every order, through the admin's paginated list (newest first)."""
        out: list[JSON] = []
        cursor: str | None = None
        for _ in range(10_000):
            query = "?limit=200" + (f"&before={cursor}" if cursor else "")
            page = await self.ok("GET", "/v1/orders" + query, ADMIN)
            out.extend(page["orders"])
            cursor = page["next_cursor"]
            if cursor is None:
                return out
        raise AssertionError("order pagination did not end")

    async def all_skus(self) -> list[JSON]:
        out: list[JSON] = []
        cursor: str | None = None
        for _ in range(1_000):
            query = "?limit=500" + (f"&after={cursor}" if cursor else "")
            page = await self.ok("GET", "/v1/skus" + query, ADMIN)
            out.extend(page["skus"])
            cursor = page["next_cursor"]
            if cursor is None:
                return out
        raise AssertionError("SKU pagination did not end")


ADMIN = ("admin", "root")
MERCHANT = ("merchant", "m1")
BUYERS = tuple(("buyer", f"b{i}") for i in range(8))


# --- the catalogue the load runs against -----------------------------------------------------


@dataclass
class Catalog:
    regions: dict[str, list[int]]
    prices: dict[int, int]
    currency: dict[int, str]
    limits: dict[int, int]
    on_hand: dict[Key, int]
    """What the test stocked: the expected on_hand of every stock row."""
    restock: list[tuple[int, int, int]] = field(default_factory=list)
    """(sku, warehouse, units) added between crash cycles."""

    @property
    def skus(self) -> list[int]:
        return sorted(self.prices)


async def seed(api: Api) -> Catalog:
    """Three warehouses, three regions, five SKUs with limited stock (one flash-sale item, one
    with a per-buyer limit, one in another currency)."""
    for name, regions in (("north", ["north"]), ("middle", ["central", "south"]), ("far", [])):
        await api.ok("POST", "/v1/warehouses", ADMIN, {"name": name, "regions": regions})
    await api.ok("PUT", "/v1/regions/central", ADMIN, {"warehouses": [1, 0]})
    await api.ok("PUT", "/v1/regions/south", ADMIN, {"warehouses": [1, 2]})
    await api.ok("PUT", "/v1/regions/north", ADMIN, {"warehouses": [0, 2]})
    specs: list[tuple[str, int, str, dict[int, int], int]] = [
        ("flash", 999, "CNY", {0: 40, 1: 20}, 0),
        ("staple", 150, "CNY", {0: 3000, 1: 3000, 2: 3000}, 0),
        ("far-only", 2500, "CNY", {2: 1500}, 0),
        ("limited", 4000, "CNY", {1: 500}, 5),
        ("import", 700, "USD", {0: 2000}, 0),
    ]
    cat = Catalog({}, {}, {}, {}, {})
    for title, price, currency, stock, limit in specs:
        sku = await api.ok(
            "POST",
            "/v1/skus",
            MERCHANT,
            {
                "title": title,
                "price": price,
                "currency": currency,
                "stock": [{"warehouse": w, "units": u} for w, u in stock.items()],
                "limit_per_buyer": limit,
            },
        )
        sid = int(sku["id"])
        cat.prices[sid], cat.currency[sid], cat.limits[sid] = price, currency, limit
        for w, u in stock.items():
            cat.on_hand[(sid, w)] = u
    for code in ("north", "central", "south"):
        region = await api.ok("GET", f"/v1/regions/{code}", ADMIN)
        cat.regions[code] = list(region["warehouses"])
    assert cat.regions == {"north": [0, 2], "central": [1, 0], "south": [1, 2]}
    staple, flash = cat.skus[1], cat.skus[0]
    cat.restock = [(staple, 0, 1000), (staple, 1, 1000), (staple, 2, 1000), (flash, 0, 15)]
    return cat


async def restock(api: Api, cat: Catalog, times: int = 1) -> None:
    """Add the catalogue's restock units, ``times`` over (while no crash is pending: each one
    acknowledged)."""
    for sku, wh, units in cat.restock:
        delta = units * times
        await api.ok("POST", f"/v1/skus/{sku}/stock", MERCHANT, {"warehouse": wh, "delta": delta})
        cat.on_hand[(sku, wh)] += delta


# --- the ledger ------------------------------------------------------------------------------


class Fate(Enum):
    ACKED = "acked"
    REFUSED = "refused"
    IN_DOUBT = "in_doubt"
    ABSENT = "absent"
    """Was in doubt; not in the store after the restart, so it must never appear."""


@dataclass
class TagState:
    fate: Fate
    order_id: int | None = None
    response: JSON | None = None
    """The acknowledged order as the server returned it."""
    status: int = 0
    """HTTP status of a refusal."""


@dataclass
class Request:
    """One order-creation request, kept to retry it after the crash when it has a key."""

    path: str
    body: bytes
    key: str | None
    buyer: tuple[str, str]
    tags: list[str]


@dataclass
class Ledger:
    cat: Catalog
    tags: dict[str, TagState] = field(default_factory=dict)
    allowed: dict[int, set[str]] = field(default_factory=dict)
    """Order id -> statuses it may have now (pinned down at each check)."""
    by_id: dict[int, str] = field(default_factory=dict)
    """Order id -> tag, for every order known to be durable."""
    in_doubt: list[Request] = field(default_factory=list)
    """Requests with an Idempotency-Key and no definitive answer: retried after the restart."""
    acked_in_run: int = 0
    cancels_acked: int = 0
    retries: Counter[str] = field(default_factory=Counter)
    """How in-doubt keyed requests fared when retried after a restart."""
    refused_codes: Counter[str] = field(default_factory=Counter)
    server_errors: list[str] = field(default_factory=list)
    """5xx answers other than 503 (never expected)."""
    unavailable: int = 0
    """503 answers (the write path failed or was recovering): their effects are in doubt."""
    in_flight: int = 0
    expiring: bool = False
    """Orders may expire on their own (a short payment timeout)."""

    def new_tags(self, tags: Iterable[str]) -> None:
        for tag in tags:
            assert tag not in self.tags, tag
            self.tags[tag] = TagState(Fate.IN_DOUBT)

    def ack(self, tag: str, order: JSON, sent: JSON) -> None:
        oid = int(order["id"])
        assert oid not in self.by_id, (
            f"order id {oid} acknowledged twice ({tag}, {self.by_id[oid]})"
        )
        assert order["status"] == PENDING, order
        assert order["address"]["line2"] == tag, (order, tag)
        got = [(li["sku"], li["quantity"]) for li in order["lines"]]
        assert got == [(li["sku"], li["quantity"]) for li in sent["lines"]], (order, sent)
        for li in order["lines"]:
            assert li["unit_price"] == self.cat.prices[li["sku"]], order
            region = sent["address"]["region"]
            assert li["warehouse"] in self.cat.regions[region], (order, region)
        self.tags[tag] = TagState(Fate.ACKED, oid, order)
        self.by_id[oid] = tag
        self.allowed.setdefault(oid, set()).update(self.fresh_statuses())
        self.acked_in_run += 1

    def fresh_statuses(self) -> set[str]:
        """What a new order may be at the next check."""
        return {PENDING, EXPIRED} if self.expiring else {PENDING}

    def refuse(self, tag: str, status: int, error: JSON) -> None:
        assert 400 <= status < 500, (status, error)
        self.tags[tag] = TagState(Fate.REFUSED, status=status)
        self.refused_codes[f"{status} {error.get('code')}"] += 1


# --- load ------------------------------------------------------------------------------------


def _address(rng: random.Random, tag: str, cat: Catalog) -> JSON:
    region = "nowhere" if rng.random() < 0.02 else rng.choice(sorted(cat.regions))
    return {
        "name": "Crash Test",
        "line1": "1 Loopback Rd",
        "city": "Localhost",
        "region": region,
        "line2": tag,
    }


def _order(rng: random.Random, tag: str, cat: Catalog) -> JSON:
    cny = [s for s in cat.skus if cat.currency[s] == "CNY"]
    roll = rng.random()
    if roll < 0.04:
        skus = [UNKNOWN_SKU]
    elif roll < 0.07:
        skus = [cat.skus[-1], cny[0]]  # two currencies: refused
    elif roll < 0.15:
        skus = [cat.skus[-1]]
    else:
        plain = [s for s in cny if not cat.limits[s]]
        skus = rng.sample(plain, rng.randint(1, 2))
        if rng.random() < 0.1:  # the per-buyer limited SKU
            skus += [s for s in cny if cat.limits[s]]
    lines = [{"sku": s, "quantity": rng.randint(1, 3)} for s in skus]
    return {"lines": lines, "address": _address(rng, tag, cat)}


async def _send(api: Api, ledger: Ledger, req: Request, sent: list[JSON]) -> None:
    """Send one request and record what became of each of its orders."""
    ledger.in_flight += 1
    try:
        status, payload, _ = await api.call("POST", req.path, req.buyer, req.body, req.key)
    except (aiohttp.ClientError, TimeoutError):
        if req.key is not None:  # no answer: each of its orders is in doubt
            ledger.in_doubt.append(req)
        raise
    finally:
        ledger.in_flight -= 1
    record(ledger, req, status, payload, sent)


def record(ledger: Ledger, req: Request, status: int, payload: JSON, sent: list[JSON]) -> None:
    if status >= 500:
        ledger.unavailable += status == 503
        if status != 503:
            ledger.server_errors.append(f"{status} on {req.path}: {payload}")
        if req.key is not None:
            ledger.in_doubt.append(req)
        return
    if req.path.endswith("/batch") and status == 200:
        results = payload["results"]
        assert len(results) == len(req.tags), payload
        for tag, item, order in zip(req.tags, results, sent, strict=True):
            if item["status"] == 201:
                ledger.ack(tag, item["order"], order)
            else:
                ledger.refuse(tag, item["status"], item["error"])
        return
    for tag, order in zip(req.tags, sent, strict=True):
        if status == 201:
            ledger.ack(tag, payload, order)
        else:
            ledger.refuse(tag, status, payload.get("error", {}))


async def order_worker(
    api: Api, ledger: Ledger, rng: random.Random, prefix: str, stop: asyncio.Event, budget: int
) -> None:
    """Place orders (single and batch, some with an Idempotency-Key) until ``stop``, the budget,
    or the first transport error (the server died)."""
    for n in range(budget):
        if stop.is_set():
            return
        buyer = rng.choice(BUYERS)
        if rng.random() < 0.35:
            path = "/v1/orders/batch"
            tags = [f"{prefix}.{n}.{i}" for i in range(rng.randint(2, 40))]
            sent = [_order(rng, t, ledger.cat) for t in tags]
            body = json.dumps({"orders": sent}).encode()
        else:
            path, tags = "/v1/orders", [f"{prefix}.{n}"]
            sent = [_order(rng, tags[0], ledger.cat)]
            body = json.dumps(sent[0]).encode()
        key = f"k-{prefix}.{n}" if rng.random() < 0.3 else None
        ledger.new_tags(tags)
        try:
            await _send(api, ledger, Request(path, body, key, buyer, tags), sent)
        except (aiohttp.ClientError, TimeoutError):
            return


async def place_order(
    api: Api, ledger: Ledger, rng: random.Random, tag: str, sku: int | None = None
) -> int:
    """Place one single order tagged ``tag`` (recorded in the ledger like the workers'): a
    random one, or one unit of ``sku``; its HTTP status, 0 when no answer came."""
    sent = [_order(rng, tag, ledger.cat)]
    if sku is not None:
        sent[0]["lines"] = [{"sku": sku, "quantity": 1}]
    ledger.new_tags([tag])
    req = Request("/v1/orders", json.dumps(sent[0]).encode(), None, rng.choice(BUYERS), [tag])
    try:
        await _send(api, ledger, req, sent)
    except (aiohttp.ClientError, TimeoutError):
        return 0
    state = ledger.tags[tag]
    return 201 if state.fate is Fate.ACKED else state.status or 503


def owner(ledger: Ledger, order_id: int) -> tuple[str, str]:
    ts = ledger.tags[ledger.by_id[order_id]]
    assert ts.response is not None
    return ("buyer", str(ts.response["buyer"]))


async def cancel_worker(
    api: Api,
    ledger: Ledger,
    rng: random.Random,
    order_ids: list[int],
    stop: asyncio.Event,
    budget: int,
) -> None:
    """Cancel orders taken from the shared ``order_ids`` (by their buyer, or by the admin),
    sometimes twice, until ``stop``, the budget, or the first transport error."""
    for n in range(budget):
        if stop.is_set() or not order_ids:
            return
        oid = order_ids.pop(rng.randrange(len(order_ids)))
        if rng.random() < 0.1:
            order_ids.append(oid)  # cancelled again later: 409 invalid_state
        who = ADMIN if rng.random() < 0.2 else owner(ledger, oid)
        key = f"cancel-{oid}-{n}-{rng.getrandbits(64):x}" if rng.random() < 0.3 else None
        ledger.in_flight += 1
        try:
            status, payload, _ = await api.call("POST", f"/v1/orders/{oid}/cancel", who, None, key)
        except (aiohttp.ClientError, TimeoutError):
            ledger.allowed[oid].add(CANCELLED)
            return
        finally:
            ledger.in_flight -= 1
        if status == 200:
            assert payload["status"] == CANCELLED, payload
            assert int(payload["id"]) == oid, payload
            ledger.allowed[oid] = {CANCELLED}
            ledger.cancels_acked += 1
        elif status == 409:
            assert payload["error"]["code"] == "invalid_state", payload
            ledger.refused_codes[f"cancel {status} {payload['error']['code']}"] += 1
        elif status >= 500:
            ledger.unavailable += status == 503
            if status != 503:
                ledger.server_errors.append(f"{status} on cancel {oid}: {payload}")
            ledger.allowed[oid].add(CANCELLED)
        else:
            raise AssertionError(f"cancel of {oid} by {who} -> {status} {payload}")


async def check_cancel_again(api: Api, ledger: Ledger, count: int = 5) -> None:
    """Cancelling an order again after the restart is refused (409 invalid_state), by its buyer
    and by an admin."""
    done = sorted(oid for oid, allowed in ledger.allowed.items() if allowed == {CANCELLED})
    assert done, "no order is known to be cancelled"
    for oid in done[:count]:
        for who in (owner(ledger, oid), ADMIN):
            status, payload, _ = await api.call("POST", f"/v1/orders/{oid}/cancel", who)
            assert status == 409, (oid, who, status, payload)
            assert payload["error"]["code"] == "invalid_state", payload


RETRIES_AT_ONCE = 16
"""In-doubt requests retried concurrently after a restart: each has a key of its own, so the
retries are independent; one at a time, the hundreds a cut connection leaves took seconds."""


async def retry_in_doubt(api: Api, ledger: Ledger, state: DbState) -> int:
    """Retry every in-doubt request that had an Idempotency-Key (``state`` read before): its
    stored first response must be replayed whenever its effect is in the store, and a replay
    must agree with the store. The retry's answer then counts like any other. Returns how many
    requests were retried (``RETRIES_AT_ONCE`` at a time)."""
    by_tag = {o.tag: o for o in state.orders.values()}
    keyed, ledger.in_doubt = ledger.in_doubt, []
    assert len({req.key for req in keyed}) == len(keyed), "two in-doubt requests share a key"
    gate = asyncio.Semaphore(RETRIES_AT_ONCE)

    async def retry(req: Request) -> None:
        assert req.key is not None
        batch = req.path.endswith("/batch")
        sent = json.loads(req.body)
        sent_orders: list[JSON] = sent["orders"] if batch else [sent]
        async with gate:
            status, payload, replayed = await api.call(
                "POST", req.path, req.buyer, req.body, req.key
            )
        assert status < 500, (req.key, status, payload)
        present = [t for t in req.tags if t in by_tag]
        assert replayed or not present, (
            f"the effect of Idempotency-Key {req.key} is stored ({present}) but its response is"
            f" not: the retry ran again and answered {status} {payload}"
        )
        ledger.retries[
            ("replayed" if replayed else "ran again") + (" (stored)" if present else "")
        ] += 1
        if replayed:
            if batch and status == 200:
                results: list[JSON] = payload["results"]
            else:
                results = [{"status": status, "order": payload}] * len(req.tags)
            for tag, item in zip(req.tags, results, strict=True):
                if item["status"] == 201:
                    assert by_tag[tag].id == int(item["order"]["id"]), (tag, item)
                else:
                    assert tag not in by_tag, (tag, item)
        record(ledger, req, status, payload, sent_orders)

    await asyncio.gather(*(retry(req) for req in keyed))
    return len(keyed)


# --- checks ----------------------------------------------------------------------------------


def check_store(ledger: Ledger, state: DbState) -> dict[str, int]:
    """Every invariant of the durable state; resolves the in-doubt tags. Returns counts."""
    cat = ledger.cat
    by_tag: dict[str, DbOrder] = {}
    for order in state.orders.values():
        assert order.tag not in by_tag, f"two stored orders carry tag {order.tag!r}"
        by_tag[order.tag] = order
        assert order.tag in ledger.tags, f"stored order {order} was never asked for"
    counts: Counter[str] = Counter()
    for tag, ts in ledger.tags.items():
        stored = by_tag.get(tag)
        counts[ts.fate.value] += 1
        if ts.fate is Fate.ACKED:
            assert stored is not None, f"acknowledged order {ts.order_id} ({tag}) is lost"
            assert ts.response is not None
            assert stored.id == ts.order_id, (stored, ts)
            sent = [
                Line(li["sku"], li["warehouse"], li["quantity"], li["unit_price"])
                for li in ts.response["lines"]
            ]
            assert list(stored.lines) == sent, (stored, ts.response)
            assert stored.total == ts.response["total"], (stored, ts.response)
            assert stored.buyer == ts.response["buyer"], (stored, ts.response)
        elif ts.fate in (Fate.REFUSED, Fate.ABSENT):
            assert stored is None, f"order {tag} was refused ({ts.status}) but is stored: {stored}"
        else:
            if stored is None:
                ts.fate = Fate.ABSENT
            else:
                ts.fate, ts.order_id = Fate.ACKED, stored.id
                ts.response = {
                    "lines": [
                        {
                            "sku": li.sku,
                            "warehouse": li.warehouse,
                            "quantity": li.quantity,
                            "unit_price": li.unit_price,
                        }
                        for li in stored.lines
                    ],
                    "total": stored.total,
                    "buyer": stored.buyer,
                }
                ledger.by_id[stored.id] = tag
                ledger.allowed.setdefault(stored.id, set()).update(ledger.fresh_statuses())
    reserved: Counter[Key] = Counter()
    sold: Counter[Key] = Counter()
    limited: Counter[tuple[int, str]] = Counter()
    for order in state.orders.values():
        allowed = ledger.allowed.get(order.id, set())
        assert order.status in allowed, f"order {order.id} is {order.status}, expected {allowed}"
        ledger.allowed[order.id] = {order.status} | (
            {EXPIRED} if ledger.expiring and order.status == PENDING else set()
        )
        total = 0
        for li in order.lines:
            total += li.quantity * li.unit_price
            if order.status == PENDING:
                reserved[(li.sku, li.warehouse)] += li.quantity
            elif order.status == PAID:
                sold[(li.sku, li.warehouse)] += li.quantity
            if order.status in (PENDING, PAID) and cat.limits.get(li.sku):
                limited[(li.sku, order.buyer)] += li.quantity
        assert order.total == total, order
    for (sku, buyer), units in limited.items():
        assert units <= cat.limits[sku], f"buyer {buyer} holds {units} of SKU {sku}"
    assert set(state.stock) == set(cat.on_hand), (sorted(state.stock), sorted(cat.on_hand))
    for key, (on_hand, res, sld) in state.stock.items():
        assert on_hand == cat.on_hand[key], f"{key}: on_hand {on_hand} != {cat.on_hand[key]}"
        assert res == reserved[key], f"{key}: reserved {res} != pending orders' {reserved[key]}"
        assert sld == sold[key], f"{key}: sold {sld} != paid orders' {sold[key]}"
        assert min(on_hand, res, sld, on_hand - res - sld) >= 0, (key, on_hand, res, sld)
    counts["stored"] = len(state.orders)
    counts["pending"] = sum(1 for o in state.orders.values() if o.status == PENDING)
    return dict(counts)


async def check_api(api: Api, ledger: Ledger, state: DbState) -> None:
    """The restarted server serves exactly what the store holds (no sweeping may run)."""
    skus = await api.all_skus()
    seen: dict[Key, tuple[int, int, int]] = {}
    for sku in skus:
        totals = [0, 0, 0, 0]
        for w in sku["warehouses"]:
            levels = (w["on_hand"], w["available"], w["reserved"], w["sold"])
            assert levels[0] == levels[1] + levels[2] + levels[3], sku
            assert min(levels) >= 0, sku
            seen[(sku["id"], w["warehouse"])] = (levels[0], levels[2], levels[3])
            totals = [a + b for a, b in zip(totals, levels, strict=True)]
        total = sku["stock"]
        assert totals == [total["on_hand"], total["available"], total["reserved"], total["sold"]]
    assert seen == state.stock, "the server's stock differs from the store's"
    orders = await api.all_orders()
    ids = [int(o["id"]) for o in orders]
    assert ids == sorted(ids, reverse=True), "the list is not newest first"
    assert len(set(ids)) == len(ids), "the list repeats orders"
    assert set(ids) == set(state.orders), "the server lists other orders than the store holds"
    for o in orders:
        stored = state.orders[int(o["id"])]
        assert o["status"] == stored.status, (o, stored)
        tag = ledger.by_id.get(stored.id)
        ts = ledger.tags[tag] if tag else None
        if ts is not None and ts.response is not None and "created_at" in ts.response:
            for k in (
                "buyer",
                "currency",
                "total",
                "lines",
                "address",
                "created_at",
                "payment_deadline",
            ):
                assert o[k] == ts.response[k], (k, o, ts.response)


async def check_new_orders(api: Api, ledger: Ledger, state: DbState, name: str) -> int:
    """The restarted server takes new orders, with IDs above every stored one."""
    newest = max(state.orders, default=0)
    cny = [s for s in ledger.cat.skus if ledger.cat.currency[s] == "CNY"]
    order = {
        "lines": [{"sku": cny[1], "quantity": 1}],
        "address": {"name": "n", "line1": "l", "city": "c", "region": "south", "line2": name},
    }
    ledger.new_tags([name])
    status, payload, _ = await api.call("POST", "/v1/orders", BUYERS[0], json.dumps(order).encode())
    record(ledger, Request("/v1/orders", b"", None, BUYERS[0], [name]), status, payload, [order])
    assert status == 201, payload
    assert int(payload["id"]) > newest, f"new order id {payload['id']} <= stored {newest}"
    return int(payload["id"])


def server_errors_logged(server: ServerProcess, last: int = 5) -> str:
    """The last distinct error lines of the server's log, for failure messages."""
    log = server.data_dir.parent / f"server-{server.port}.log"
    lines = log.read_text(errors="replace").splitlines() if log.exists() else []
    errors = list(dict.fromkeys(ln for ln in lines if re.match(r"[\w.]+(Error|Exception): ", ln)))
    return "\n".join(errors[-last:])


async def terminate_connections(dsn: str) -> int:
    """Terminate every other session on ``dsn``'s database (as a failover would); how many."""
    conn = await asyncpg.connect(dsn)
    try:
        return int(
            await conn.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        )
    finally:
        await conn.close()


# --- a crash -----------------------------------------------------------------------------------


async def kill_during(
    server: ServerProcess,
    ledger: Ledger,
    workers: list[asyncio.Task[None]],
    stop: asyncio.Event,
    rng: random.Random,
    *,
    after_s: tuple[float, float],
    min_answers: int,
    min_cancels: int = 0,
    timeout_s: float = 15.0,
) -> dict[str, float]:
    """Let the workers run for a random time (and until ``min_answers`` more orders or cancels
    were acknowledged, ``min_cancels`` of them cancels), then SIGKILL the server while requests
    are in flight; wait for the workers to notice. Returns what the kill interrupted."""

    def answers() -> int:
        return ledger.acked_in_run + ledger.cancels_acked

    started = time.monotonic()
    delay = rng.uniform(*after_s)
    answered0 = answers()
    cancels0 = ledger.cancels_acked
    while time.monotonic() - started < timeout_s:
        ran = time.monotonic() - started
        if (
            ran >= delay
            and answers() - answered0 >= min_answers
            and ledger.cancels_acked - cancels0 >= min_cancels
            and ledger.in_flight > 0
        ):
            break
        if all(w.done() for w in workers):
            break
        await asyncio.sleep(0.002)
    in_flight = ledger.in_flight
    await asyncio.to_thread(server.kill)
    stop.set()
    done, pending = await asyncio.wait(workers, timeout=30)
    assert not pending, "workers did not stop after the kill"
    for task in done:
        task.result()
    assert in_flight > 0, "the kill found no request in flight"
    return {
        "at_s": round(time.monotonic() - started, 3),
        "in_flight": in_flight,
        "answered": answers() - answered0,
    }
