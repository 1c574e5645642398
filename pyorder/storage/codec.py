"""Records to SQL rows and back, shared by both backends.

Each ``*_COLUMNS`` string lists a table's columns in the order that the matching ``*_row``
function produces and the matching ``*_from_row`` function reads, so a backend's INSERT and
SELECT statements are built from the same list. Rows are positional (``sqlite3`` tuples or
``asyncpg.Record``). Units are those of the records (``pyorder.<capability>.model``): money in
minor units, times in ms since the Unix epoch (UTC).

Only the rows the stores write themselves are here: the catalogue, orders and idempotency
records, and the SQL helpers of the parts (``upsert_sql``, ``insert_new_sql``). Payments,
logistics, returns and events bring their rows as their parts of the unit of work
(``pyorder.<capability>.storage``, see ``pyorder.kernel.unit``); the outbox and webhook-event
rows they share are the ``pyorder.storage.outbox`` part.
"""

from collections.abc import Iterable
from typing import Any

import orjson

from pyorder.catalog.model import Sku, StockRow, Warehouse
from pyorder.kernel.unit import Row
from pyorder.model import IdempotencyRecord
from pyorder.orders.model import Order, OrderLine, OrderStatus, StatusChange, just_placed

WAREHOUSE_COLUMNS = "id, name, owner"
SKU_COLUMNS = (
    "id, merchant, title, price, currency, limit_per_buyer, created_ms, category, release_ms"
)
STOCK_COLUMNS = "sku, warehouse, on_hand, reserved, sold"
ORDER_COLUMNS = (
    "id, buyer, status, currency, total, region, address, reservation,"
    " created_ms, deadline_ms, updated_ms"
)
ORDER_COLUMN_NAMES = tuple(c.strip() for c in ORDER_COLUMNS.split(","))
LINE_COLUMNS = "order_id, line_no, sku, warehouse, quantity, unit_price, merchant"
LINE_COLUMN_NAMES = tuple(c.strip() for c in LINE_COLUMNS.split(","))
IDEMPOTENCY_COLUMNS = "principal, key, fingerprint, status, body, created_ms"

MAX_BIGINT = 2**63 - 1
"""Largest id a column holds; ``before_id=None`` reads as ``id < MAX_BIGINT``."""

HELD = "status IN ('pending_payment', 'in_review')"
"""Orders whose reservation holds their units (``pyorder.orders.model.HOLDING``): the predicate
of the partial index ``orders_pending`` word for word, which SQLite needs to use the index."""

# Parameterless queries of ``load()``, the same text for both backends.
PENDING_ORDERS_SQL = f"SELECT {ORDER_COLUMNS} FROM orders WHERE {HELD} ORDER BY id"
"""The orders held (awaiting payment or in review), which the rebuild holds again."""
PENDING_LINES_SQL = (
    f"SELECT {LINE_COLUMNS} FROM order_lines WHERE order_id IN"
    f" (SELECT id FROM orders WHERE {HELD}) ORDER BY order_id, line_no"
)
"""Lines of the held orders, found through the partial index ``orders_pending``."""
BOUGHT_SQL = (
    "SELECT l.sku, o.buyer, SUM(l.quantity) FROM order_lines l"
    " JOIN orders o ON o.id = l.order_id JOIN skus s ON s.id = l.sku"
    " WHERE o.status = 'paid' AND s.limit_per_buyer > 0"
    " GROUP BY l.sku, o.buyer ORDER BY l.sku, o.buyer"
)
"""(sku, buyer, units) bought in paid orders, for SKUs with a purchase limit (``Snapshot.bought``).
It reads every order line: its cost grows with the history, not with what is pending."""
# The newest order id (the primary key's last entry), and the largest reservation id among
# held orders only: resolved orders' reservations are gone from the core, so new ids need
# only stay clear of held ones, and a restart reads no history.
MAXIMA_SQL = (
    "SELECT (SELECT COALESCE(MAX(id), 0) FROM orders),"
    f" (SELECT COALESCE(MAX(reservation), 0) FROM orders WHERE {HELD})"
)
"""Largest order id and reservation ever stored (0, 0 when empty); the reservation is a scan."""

MAX_PAGE = 1000
"""Most records one list call returns, whatever ``limit`` asks for."""


def page_limit(limit: int) -> int:
    """``limit`` clamped to 0..MAX_PAGE (a negative limit reads as 0)."""
    return max(0, min(limit, MAX_PAGE))


def encode_address(address: dict[str, Any]) -> str:
    """The address as compact JSON text (keys kept in the caller's order)."""
    return orjson.dumps(address).decode()


def decode_address(text: str) -> dict[str, Any]:
    value = orjson.loads(text)
    if not isinstance(value, dict):
        raise ValueError(f"stored address is not a JSON object: {text[:80]!r}")
    return value


def warehouse_row(w: Warehouse) -> tuple[int, str, str]:
    return (w.id, w.name, w.owner)


def warehouse_from_row(r: Row) -> Warehouse:
    return Warehouse(id=r[0], name=r[1], owner=r[2])


def region_rows(regions: dict[str, list[int]]) -> list[tuple[str, int, int]]:
    """(region, rank, warehouse) rows; rank 0 is the nearest warehouse."""
    return [(region, rank, wh) for region, whs in regions.items() for rank, wh in enumerate(whs)]


def sku_row(s: Sku) -> tuple[int, str, str, int, str, int, int, str, int | None]:
    return (
        s.id,
        s.merchant,
        s.title,
        s.price,
        s.currency,
        s.limit_per_buyer,
        s.created_ms,
        s.category,
        s.release_ms,
    )


def sku_from_row(r: Row) -> Sku:
    return Sku(
        id=r[0],
        merchant=r[1],
        title=r[2],
        price=r[3],
        currency=r[4],
        limit_per_buyer=r[5],
        created_ms=r[6],
        category=r[7],
        release_ms=r[8],
    )


def stock_row(s: StockRow) -> tuple[int, int, int, int, int]:
    return (s.sku, s.warehouse, s.on_hand, s.reserved, s.sold)


def stock_from_row(r: Row) -> StockRow:
    return StockRow(sku=r[0], warehouse=r[1], on_hand=r[2], reserved=r[3], sold=r[4])


def delta_rows(deltas: dict[tuple[int, int], list[int]]) -> list[tuple[int, int, int, int, int]]:
    """(d_on_hand, d_reserved, d_sold, sku, warehouse) rows, in the UPDATE's parameter order."""
    return [(d[0], d[1], d[2], sku, wh) for (sku, wh), d in deltas.items()]


def missing_stock_message(deltas: dict[tuple[int, int], list[int]], updated: int) -> str:
    """The error for stock deltas whose (sku, warehouse) row does not exist."""
    return (
        f"{len(deltas) - updated} of {len(deltas)} stock deltas name a (sku, warehouse) with no"
        " stock row; stock rows must be created (WriteBatch.stock_rows) before deltas apply"
    )


def order_row(o: Order) -> tuple[int, str, str, str, int, str, str, int, int, int, int]:
    """The orders row; the address is JSON text (PostgreSQL casts it to jsonb)."""
    return (
        o.id,
        o.buyer,
        o.status.value,
        o.currency,
        o.total,
        o.region,
        encode_address(o.address),
        o.reservation,
        o.created_ms,
        o.deadline_ms,
        o.updated_ms,
    )


def line_rows(orders: Iterable[Order]) -> list[tuple[int, int, int, int, int, int, str]]:
    """order_lines rows of all the orders; ``line_no`` is the line's index in ``Order.lines``."""
    return [
        (o.id, n, ln.sku, ln.warehouse, ln.quantity, ln.unit_price, ln.merchant)
        for o in orders
        for n, ln in enumerate(o.lines)
    ]


def line_from_row(r: Row) -> OrderLine:
    """An OrderLine from a row in ``LINE_COLUMNS`` order (order_id and line_no are skipped)."""
    return OrderLine(sku=r[2], warehouse=r[3], quantity=r[4], unit_price=r[5], merchant=r[6])


def order_from_row(r: Row, lines: tuple[OrderLine, ...]) -> Order:
    return Order(
        id=r[0],
        buyer=r[1],
        status=OrderStatus(r[2]),
        currency=r[3],
        total=r[4],
        region=r[5],
        address=decode_address(r[6]),
        reservation=r[7],
        created_ms=r[8],
        deadline_ms=r[9],
        updated_ms=r[10],
        lines=lines,
    )


def staged_order(t: tuple[Any, ...]) -> Order:
    """An Order from a staged row (``OrderRows.find``): awaiting payment, not committed yet."""
    return just_placed(t, decode_address)


def assemble_orders(order_rows: Iterable[Row], line_rows_: Iterable[Row]) -> list[Order]:
    """Orders (in the order of ``order_rows``) with their lines.

    ``line_rows_`` must be sorted by (order_id, line_no); lines of orders not in ``order_rows``
    are ignored.
    """
    by_order: dict[int, list[OrderLine]] = {}
    for r in line_rows_:
        by_order.setdefault(r[0], []).append(line_from_row(r))
    return [order_from_row(r, tuple(by_order.get(r[0], ()))) for r in order_rows]


def status_change_row(c: StatusChange) -> tuple[str, int, int, str]:
    """(to_status, at_ms, order_id, from_status), in the UPDATE's parameter order."""
    return (c.to_status.value, c.at_ms, c.order_id, c.from_status.value)


def idempotency_row(rec: IdempotencyRecord) -> tuple[str, str, str, int, bytes, int]:
    return (rec.principal, rec.key, rec.fingerprint, rec.status, rec.body, rec.created_ms)


def idempotency_from_row(r: Row) -> IdempotencyRecord:
    return IdempotencyRecord(
        principal=r[0],
        key=r[1],
        fingerprint=r[2],
        status=r[3],
        body=bytes(r[4]),
        created_ms=r[5],
    )


# --- SQL of the parts (``pyorder.kernel.unit``) ------------------------------------------


def upsert_sql(table: str, columns: str, key: str, placeholder: str, kept: str = "") -> str:
    """``INSERT ... ON CONFLICT (key) DO UPDATE`` of every other column but those listed in
    ``kept`` (comma-separated), which a stored row keeps. The same text in both dialects but
    for the placeholders: ``?`` for SQLite, ``$`` for PostgreSQL's ``$1, $2``."""
    names = [c.strip() for c in columns.split(",")]
    keys = {k.strip() for k in f"{key},{kept}".split(",") if k.strip()}
    values = ", ".join("?" if placeholder == "?" else f"${n}" for n in range(1, len(names) + 1))
    updates = ", ".join(f"{c} = excluded.{c}" for c in names if c not in keys)
    return (
        f"INSERT INTO {table} ({columns}) VALUES ({values})"
        f" ON CONFLICT ({key}) DO UPDATE SET {updates}"
    )


def insert_new_sql(table: str, columns: str, placeholder: str) -> str:
    """``INSERT ... ON CONFLICT DO NOTHING`` (a row already there is kept)."""
    n = len(columns.split(","))
    values = ", ".join("?" if placeholder == "?" else f"${i}" for i in range(1, n + 1))
    return f"INSERT INTO {table} ({columns}) VALUES ({values}) ON CONFLICT DO NOTHING"


# --- a read for the returns rules (its rows are in ``pyorder.returns.storage``) -----------------

DELIVERED_ORDERS_SQL = (
    "SELECT COUNT(*) FROM payments p JOIN fulfilments f ON f.order_id = p.order_id"
    " WHERE p.buyer = {} AND p.paid_attempt > 0 AND f.status = 'delivered'"
)
"""The buyer's paid orders whose every parcel was delivered; format with the placeholder."""
