"""The embedded store: one SQLite file in WAL mode, ``synchronous=FULL`` (fsync'd at commit).

Threads: every write (``commit``, ``purge_idempotency``, migrations) runs on ONE writer
connection owned by one dedicated thread (a single-worker executor), so a commit never blocks
the event loop and writes are serialised in submission order. Reads run on a second, read-only
connection in another single-worker executor; in WAL mode they never wait for the writer and
see only committed transactions.

Cancelling a coroutine that awaits ``commit`` does not stop the transaction already handed to
the writer thread: it still commits (or rolls back) on its own.
"""

import asyncio
import contextlib
import os
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from pyorder.model import IdempotencyRecord, Order, Sku, Snapshot, StockRow, WriteBatch
from pyorder.storage import codec
from pyorder.storage.base import StorageError, Store
from pyorder.storage.migrations import BOOTSTRAP, CURRENT_VERSION_SQL, pending

T = TypeVar("T")

_UPSERT_WAREHOUSE = (
    f"INSERT INTO warehouses ({codec.WAREHOUSE_COLUMNS}) VALUES (?, ?, ?)"
    " ON CONFLICT (id) DO UPDATE SET name = excluded.name, owner = excluded.owner"
)
_DELETE_REGION = "DELETE FROM regions WHERE region = ?"
_INSERT_REGION = "INSERT INTO regions (region, rank, warehouse) VALUES (?, ?, ?)"
_UPSERT_SKU = (
    f"INSERT INTO skus ({codec.SKU_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (id) DO UPDATE SET merchant = excluded.merchant, title = excluded.title,"
    " price = excluded.price, currency = excluded.currency,"
    " limit_per_buyer = excluded.limit_per_buyer, created_ms = excluded.created_ms"
)
_INSERT_STOCK = f"INSERT INTO stock ({codec.STOCK_COLUMNS}) VALUES (?, ?, ?, ?, ?)"
_UPDATE_STOCK = (
    "UPDATE stock SET on_hand = on_hand + ?, reserved = reserved + ?, sold = sold + ?"
    " WHERE sku = ? AND warehouse = ?"
)
_INSERT_ORDER = (
    f"INSERT INTO orders ({codec.ORDER_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_INSERT_LINE = f"INSERT INTO order_lines ({codec.LINE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)"
_UPDATE_STATUS = "UPDATE orders SET status = ?, updated_ms = ? WHERE id = ? AND status = ?"
_INSERT_IDEMPOTENCY = (
    f"INSERT INTO idempotency ({codec.IDEMPOTENCY_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)"
)

_INSERT_TOKEN = "INSERT INTO intake_commits (token, committed_ms) VALUES (?, ?)"
_SELECT_ORDER = f"SELECT {codec.ORDER_COLUMNS} FROM orders"
_SELECT_LINES = f"SELECT {codec.LINE_COLUMNS} FROM order_lines"


def _connect(path: str, *, readonly: bool) -> sqlite3.Connection:
    """A connection in autocommit mode (explicit BEGIN/COMMIT), WAL, synchronous=FULL."""
    conn = sqlite3.connect(path, isolation_level=None, cached_statements=64)
    try:
        conn.execute("PRAGMA busy_timeout = 10000")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise StorageError(f"{path}: cannot use WAL journal mode (got {mode!r})")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = ON")
        if readonly:
            conn.execute("PRAGMA query_only = ON")
    except BaseException:
        conn.close()
        raise
    return conn


def _migrate(conn: sqlite3.Connection) -> None:
    """Apply pending migrations, each in its own BEGIN IMMEDIATE transaction."""
    while True:
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute(BOOTSTRAP["sqlite"])
            current = int(conn.execute(CURRENT_VERSION_SQL).fetchone()[0])
            todo = pending(current)
            if todo:
                step = todo[0]
                for stmt in step.statements("sqlite"):
                    conn.execute(stmt)
                conn.execute(
                    "INSERT INTO schema_migrations (version, applied_ms) VALUES (?, ?)",
                    (step.version, time.time_ns() // 1_000_000),
                )
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        if not todo:
            return


def _placeholders(n: int) -> str:
    return ", ".join("?" * n)


class SqliteStore(Store):
    """A ``Store`` in one SQLite file at ``path`` (created if missing)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._path = os.fspath(path)
        self._writer: sqlite3.Connection | None = None
        self._reader: sqlite3.Connection | None = None
        self._write_pool: ThreadPoolExecutor | None = None
        self._read_pool: ThreadPoolExecutor | None = None

    # --- lifecycle -----------------------------------------------------------------------------

    async def open(self) -> None:
        if self._write_pool is not None:
            raise RuntimeError("SqliteStore is already open")
        self._write_pool = ThreadPoolExecutor(1, thread_name_prefix="pyorder-sqlite-writer")
        self._read_pool = ThreadPoolExecutor(1, thread_name_prefix="pyorder-sqlite-reader")
        try:
            await self._on_writer(self._open_writer)
            await self._on_reader(self._open_reader)
        except BaseException as e:
            await self.close()
            if isinstance(e, sqlite3.Error):
                raise StorageError(f"{self._path}: cannot open: {e}") from e
            raise

    def _open_writer(self) -> None:
        conn = _connect(self._path, readonly=False)
        try:
            _migrate(conn)
        except BaseException:
            conn.close()
            raise
        self._writer = conn

    def _open_reader(self) -> None:
        self._reader = _connect(self._path, readonly=True)

    async def close(self) -> None:
        """Close both connections and stop both threads; safe to call twice."""
        loop = asyncio.get_running_loop()
        for pool, attr in ((self._read_pool, "_reader"), (self._write_pool, "_writer")):
            if pool is None:
                continue
            await loop.run_in_executor(pool, self._close_connection, attr)
            pool.shutdown(wait=True)
        self._read_pool = self._write_pool = None

    def _close_connection(self, attr: str) -> None:
        conn: sqlite3.Connection | None = getattr(self, attr)
        setattr(self, attr, None)
        if conn is not None:
            conn.close()

    async def _on_writer(self, fn: Callable[[], T]) -> T:
        if self._write_pool is None:
            raise StorageError("SqliteStore is not open")
        return await asyncio.get_running_loop().run_in_executor(self._write_pool, fn)

    async def _on_reader(self, fn: Callable[[], T]) -> T:
        if self._read_pool is None:
            raise StorageError("SqliteStore is not open")
        return await asyncio.get_running_loop().run_in_executor(self._read_pool, fn)

    def _w(self) -> sqlite3.Connection:
        if self._writer is None:
            raise StorageError("SqliteStore is not open")
        return self._writer

    def _r(self) -> sqlite3.Connection:
        if self._reader is None:
            raise StorageError("SqliteStore is not open")
        return self._reader

    async def schema_version(self) -> int:
        return await self._on_reader(
            lambda: int(self._r().execute(CURRENT_VERSION_SQL).fetchone()[0])
        )

    # --- writes --------------------------------------------------------------------------------

    async def commit(self, batch: WriteBatch) -> None:
        await self._on_writer(lambda: self._commit(batch))

    def _commit(self, batch: WriteBatch) -> None:
        conn = self._w()
        try:
            conn.execute("BEGIN IMMEDIATE")
            _write_batch(conn, batch)
            conn.execute("COMMIT")
        except BaseException as e:
            _rollback(conn)
            if isinstance(e, Exception):
                raise StorageError(f"commit of a batch of {len(batch)} failed: {e}") from e
            raise

    async def purge_idempotency(self, older_than_ms: int) -> int:
        def purge() -> int:
            conn = self._w()
            try:
                cur = conn.execute("DELETE FROM idempotency WHERE created_ms < ?", (older_than_ms,))
                conn.execute("DELETE FROM intake_commits WHERE committed_ms < ?", (older_than_ms,))
            except sqlite3.Error as e:
                raise StorageError(f"purge of idempotency records failed: {e}") from e
            return cur.rowcount

        return await self._on_writer(purge)

    # --- reads ---------------------------------------------------------------------------------

    async def committed(self, token: int) -> bool:
        def find() -> bool:
            sql = "SELECT 1 FROM intake_commits WHERE token = ?"
            try:
                return self._r().execute(sql, (token,)).fetchone() is not None
            except sqlite3.Error as e:
                raise StorageError(f"reading commit token failed: {e}") from e

        return await self._on_reader(find)

    async def load(self) -> Snapshot:
        return await self._on_reader(self._load)

    def _load(self) -> Snapshot:
        conn = self._r()
        conn.execute("BEGIN")  # one read snapshot for every table
        try:
            warehouses = [
                codec.warehouse_from_row(r)
                for r in conn.execute(
                    f"SELECT {codec.WAREHOUSE_COLUMNS} FROM warehouses ORDER BY id"
                )
            ]
            regions: dict[str, list[int]] = {}
            for region, wh in conn.execute(
                "SELECT region, warehouse FROM regions ORDER BY region, rank"
            ):
                regions.setdefault(region, []).append(wh)
            skus = [
                codec.sku_from_row(r)
                for r in conn.execute(f"SELECT {codec.SKU_COLUMNS} FROM skus ORDER BY id")
            ]
            stock = [
                codec.stock_from_row(r)
                for r in conn.execute(
                    f"SELECT {codec.STOCK_COLUMNS} FROM stock ORDER BY sku, warehouse"
                )
            ]
            order_rows = conn.execute(codec.PENDING_ORDERS_SQL).fetchall()
            line_rows = conn.execute(codec.PENDING_LINES_SQL).fetchall()
            bought = [(int(r[0]), str(r[1]), int(r[2])) for r in conn.execute(codec.BOUGHT_SQL)]
            max_order_id, max_reservation = conn.execute(codec.MAXIMA_SQL).fetchone()
        finally:
            conn.execute("COMMIT")
        return Snapshot(
            warehouses=warehouses,
            regions=regions,
            skus=skus,
            stock=stock,
            pending_orders=codec.assemble_orders(order_rows, line_rows),
            max_order_id=int(max_order_id),
            max_reservation=int(max_reservation),
            bought=bought,
        )

    async def get_order(self, order_id: int) -> Order | None:
        def get() -> Order | None:
            orders = self._orders_with_lines(
                self._r().execute(f"{_SELECT_ORDER} WHERE id = ?", (order_id,)).fetchall()
            )
            return orders[0] if orders else None

        return await self._on_reader(get)

    async def list_orders(
        self,
        *,
        buyer: str | None = None,
        merchant: str | None = None,
        before_id: int | None = None,
        limit: int = 50,
    ) -> list[Order]:
        """Orders newest first (by id), at most ``codec.page_limit(limit)`` of them.

        ``buyer`` and ``merchant`` together select the buyer's orders that contain the
        merchant's SKUs. ``before_id`` is the cursor: only orders with a smaller id.
        """
        n = codec.page_limit(limit)
        before = codec.MAX_BIGINT if before_id is None else before_id
        if n == 0:
            return []
        if merchant is not None:
            sql = (
                f"{_SELECT_ORDER} WHERE id IN (SELECT DISTINCT order_id FROM order_lines"
                " WHERE merchant = ? AND order_id < ? ORDER BY order_id DESC LIMIT ?)"
            )
            params: tuple[object, ...] = (merchant, before, n)
            if buyer is not None:
                # The buyer filter cannot sit in the subquery's LIMIT; page by the buyer's orders.
                sql = (
                    f"{_SELECT_ORDER} WHERE buyer = ? AND id < ? AND EXISTS (SELECT 1 FROM"
                    " order_lines l WHERE l.order_id = orders.id AND l.merchant = ?)"
                    " ORDER BY id DESC LIMIT ?"
                )
                params = (buyer, before, merchant, n)
            else:
                sql += " ORDER BY id DESC"
        elif buyer is not None:
            sql = f"{_SELECT_ORDER} WHERE buyer = ? AND id < ? ORDER BY id DESC LIMIT ?"
            params = (buyer, before, n)
        else:
            sql = f"{_SELECT_ORDER} WHERE id < ? ORDER BY id DESC LIMIT ?"
            params = (before, n)
        return await self._on_reader(
            lambda: self._orders_with_lines(self._r().execute(sql, params).fetchall())
        )

    def _orders_with_lines(self, order_rows: list[codec.Row]) -> list[Order]:
        if not order_rows:
            return []
        ids = [r[0] for r in order_rows]
        line_rows = self._r().execute(
            f"{_SELECT_LINES} WHERE order_id IN ({_placeholders(len(ids))})"
            " ORDER BY order_id, line_no",
            ids,
        )
        return codec.assemble_orders(order_rows, line_rows)

    async def get_sku(self, sku_id: int) -> Sku | None:
        def get() -> Sku | None:
            row = (
                self._r()
                .execute(f"SELECT {codec.SKU_COLUMNS} FROM skus WHERE id = ?", (sku_id,))
                .fetchone()
            )
            return None if row is None else codec.sku_from_row(row)

        return await self._on_reader(get)

    async def list_skus(
        self, *, merchant: str | None = None, after_id: int = -1, limit: int = 50
    ) -> list[Sku]:
        """SKUs in ascending id after ``after_id``, of one merchant or of all."""
        n = codec.page_limit(limit)
        if merchant is None:
            sql = f"SELECT {codec.SKU_COLUMNS} FROM skus WHERE id > ? ORDER BY id LIMIT ?"
            params: tuple[object, ...] = (after_id, n)
        else:
            sql = (
                f"SELECT {codec.SKU_COLUMNS} FROM skus WHERE merchant = ? AND id > ?"
                " ORDER BY id LIMIT ?"
            )
            params = (merchant, after_id, n)
        return await self._on_reader(
            lambda: [codec.sku_from_row(r) for r in self._r().execute(sql, params)]
        )

    async def get_stock(self, sku_id: int) -> list[StockRow]:
        """The SKU's stock rows, one per warehouse, by warehouse id."""
        sql = f"SELECT {codec.STOCK_COLUMNS} FROM stock WHERE sku = ? ORDER BY warehouse"
        return await self._on_reader(
            lambda: [codec.stock_from_row(r) for r in self._r().execute(sql, (sku_id,))]
        )

    async def get_idempotency(self, principal: str, key: str) -> IdempotencyRecord | None:
        sql = f"SELECT {codec.IDEMPOTENCY_COLUMNS} FROM idempotency WHERE principal = ? AND key = ?"

        def get() -> IdempotencyRecord | None:
            row = self._r().execute(sql, (principal, key)).fetchone()
            return None if row is None else codec.idempotency_from_row(row)

        return await self._on_reader(get)


def _write_batch(conn: sqlite3.Connection, batch: WriteBatch) -> None:
    """Every statement of one batch, inside the caller's transaction, in dependency order."""
    if batch.warehouses:
        conn.executemany(_UPSERT_WAREHOUSE, map(codec.warehouse_row, batch.warehouses))
    if batch.regions:
        conn.executemany(_DELETE_REGION, [(r,) for r in batch.regions])
        conn.executemany(_INSERT_REGION, codec.region_rows(batch.regions))
    if batch.skus:
        conn.executemany(_UPSERT_SKU, map(codec.sku_row, batch.skus))
    if batch.stock_rows:
        conn.executemany(_INSERT_STOCK, map(codec.stock_row, batch.stock_rows))
    if batch.stock_deltas:
        updated = conn.executemany(_UPDATE_STOCK, codec.delta_rows(batch.stock_deltas)).rowcount
        if updated != len(batch.stock_deltas):
            raise StorageError(codec.missing_stock_message(batch.stock_deltas, updated))
    if batch.orders:
        conn.executemany(_INSERT_ORDER, map(codec.order_row, batch.orders))
        conn.executemany(_INSERT_LINE, codec.line_rows(batch.orders))
    if batch.status_changes:
        conn.executemany(_UPDATE_STATUS, map(codec.status_change_row, batch.status_changes))
    if batch.idempotency:
        conn.executemany(_INSERT_IDEMPOTENCY, map(codec.idempotency_row, batch.idempotency))
    if batch.token:
        conn.execute(_INSERT_TOKEN, (batch.token, time.time_ns() // 1_000_000))


def _rollback(conn: sqlite3.Connection) -> None:
    if conn.in_transaction:
        # If even ROLLBACK fails the connection is broken; the transaction did not commit.
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")
