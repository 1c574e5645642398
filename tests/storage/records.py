"""Small builders of model records for the storage tests."""

import asyncio
import sqlite3

import asyncpg

from pyorder._core import OrderRows
from pyorder.catalog.model import Sku, StockRow, Warehouse
from pyorder.kernel.outbox import OutboxItem
from pyorder.model import IdempotencyRecord, WriteBatch
from pyorder.orders.model import Order, OrderLine, OrderStatus
from pyorder.risk import decisions
from pyorder.risk.records import Decision
from pyorder.storage import codec
from pyorder.storage.outbox import OUTBOX

from .backends import Backend

MERCHANTS = ("m-alpha", "m-beta")
ON_HAND = 1_000


def catalog(n_skus: int = 4, n_warehouses: int = 2, limit_per_buyer: int = 0) -> WriteBatch:
    """Warehouses 0..n-1, region "east" (nearest first: 0, 1, ...), SKUs owned alternately by
    the two merchants, and ON_HAND units of every SKU in every warehouse."""
    return WriteBatch(
        warehouses=[Warehouse(w, f"warehouse {w}", "admin") for w in range(n_warehouses)],
        regions={"east": list(range(n_warehouses))},
        skus=[
            Sku(
                id=s,
                merchant=MERCHANTS[s % 2],
                title=f"item {s} — ünïcödé",
                price=100 * (s + 1),
                currency="CNY",
                limit_per_buyer=limit_per_buyer,
                created_ms=1_700_000_000_000 + s,
            )
            for s in range(n_skus)
        ],
        stock_rows=[
            StockRow(sku=s, warehouse=w, on_hand=ON_HAND, reserved=0, sold=0)
            for s in range(n_skus)
            for w in range(n_warehouses)
        ],
    )


def line(sku: int, quantity: int = 1, warehouse: int = 0) -> OrderLine:
    return OrderLine(
        sku=sku,
        warehouse=warehouse,
        quantity=quantity,
        unit_price=100 * (sku + 1),
        merchant=MERCHANTS[sku % 2],
    )


def order(
    order_id: int,
    *lines: OrderLine,
    buyer: str = "buyer-1",
    status: OrderStatus = OrderStatus.PENDING_PAYMENT,
    reservation: int | None = None,
) -> Order:
    """An order (one line of SKU 0 when no lines are given); reservation defaults to its id."""
    lines = lines or (line(0),)
    return Order(
        id=order_id,
        buyer=buyer,
        status=status,
        currency="CNY",
        total=sum(ln.quantity * ln.unit_price for ln in lines),
        region="east",
        address={"name": "王小明", "city": "Beijing", "lines": ["1 Road", "Apt 2"], "zip": None},
        reservation=order_id if reservation is None else reservation,
        created_ms=1_800_000_000_000 + order_id,
        deadline_ms=1_800_000_900_000 + order_id,
        updated_ms=1_800_000_000_000 + order_id,
        lines=lines,
    )


def idem(key: str, created_ms: int = 1_000, principal: str = "buyer-1") -> IdempotencyRecord:
    return IdempotencyRecord(
        principal=principal,
        key=key,
        fingerprint=f"sha256:{key}",
        status=201,
        body=b'{"ok":true}\x00\xff',
        created_ms=created_ms,
    )


def placed(*orders: Order) -> OrderRows:
    """The orders as the Rust intake stages them (``WriteBatch.placed``); each must be pending,
    with ``updated_ms == created_ms``, as the intake writes every new order."""
    rows = OrderRows()
    for o in orders:
        assert o.status == OrderStatus.PENDING_PAYMENT, o
        assert o.updated_ms == o.created_ms, o
        rows.push(
            o.id,
            o.buyer,
            o.currency,
            o.total,
            o.region,
            codec.encode_address(o.address),
            o.reservation,
            o.created_ms,
            o.deadline_ms,
            [(ln.sku, ln.warehouse, ln.quantity, ln.unit_price, ln.merchant) for ln in o.lines],
        )
    return rows


def with_outbox(*items: OutboxItem, batch: WriteBatch | None = None) -> WriteBatch:
    """``batch`` (a new one if None) with ``items`` staged in its outbox part."""
    batch = WriteBatch() if batch is None else batch
    batch.part(OUTBOX).items.update((item.key, item) for item in items)
    return batch


def write_decisions(store: Backend, found: list[Decision]) -> None:
    """Insert decisions as the writers do: the placed columns, by name (PostgreSQL through the
    store's own statement, with ``three_ds`` as the core gives it)."""
    rows = [decisions.decision_row(d) for d in found]
    if store.name == "sqlite":
        names = ", ".join(decisions.PLACED_COLUMNS)
        sql = f"INSERT INTO risk_decisions ({names}) VALUES ({', '.join('?' * len(names.split(',')))})"
        conn = sqlite3.connect(store.location, isolation_level=None)
        try:
            conn.executemany(sql, rows)
        finally:
            conn.close()
        return

    async def insert() -> None:
        conn = await asyncpg.connect(store.location)
        try:
            columns = [list(c) for c in zip(*rows, strict=True)]
            await conn.execute(decisions.INSERT_PLACED_SQL, *columns)
        finally:
            await conn.close()

    asyncio.run(insert())
