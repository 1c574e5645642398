"""The embedded store: one SQLite file in WAL mode, ``synchronous=FULL`` (fsync'd at commit).

Threads: every write (``commit``, ``purge_idempotency``, migrations) goes through ONE writing
connection, the Rust ``pyorder._core.SqliteWriter``. Commits go through its ``CommitQueue``: the
event loop converts a batch's few Python-built statement groups to owned values and hands the
batch to a Rust thread that never takes the GIL; it writes batches one after another in
submission order, each in one ``BEGIN IMMEDIATE ... COMMIT`` that also inserts the orders of
``WriteBatch.placed`` (Rust-owned rows, no Python object per order) through cached prepared
statements, and signals each finished batch on an eventfd the loop watches. (A Python writer
thread had to win the GIL back from the busy loop after every commit.) The rare other writes
(migrations, purges) run on a single-worker executor thread, through the same connection. Reads run on a second, read-only ``sqlite3`` connection in another single-worker
executor; in WAL mode they never wait for the writer and see only committed transactions.

Both connections use the same SQLite library: the writer links the system ``libsqlite3``, the
one Python's ``_sqlite3`` loads. Two copies of SQLite in one process keep separate POSIX lock
bookkeeping, and closing the file in one drops the locks the other holds, which can corrupt the
database (sqlite.org, "How To Corrupt An SQLite Database File", section 2.2.1).

One process at a time: ``open`` takes an exclusive lock on ``<database>.lock``
(``pyorder.storage.lockfile``) and holds it until ``close``; a second store on the same file,
in another process or this one, is refused with ``StoreInUseError``. Several nodes need
PostgreSQL.

Cancelling a coroutine that awaits ``commit`` does not stop the transaction already handed to
the writer thread: it still commits (or rolls back) on its own.
"""

import asyncio
import os
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from pyorder._core import CommitQueue, RowCountError, SqliteWriteError, SqliteWriter
from pyorder.catalog.model import Sku, StockRow
from pyorder.events import storage as events
from pyorder.events.model import Delivery, WebhookEndpoint
from pyorder.kernel.unit import Row
from pyorder.logistics import storage as logistics
from pyorder.logistics.model import TrackingEvent
from pyorder.model import IdempotencyRecord, Snapshot, WriteBatch
from pyorder.orders.model import Order
from pyorder.parts import PARTS
from pyorder.returns import storage as returns
from pyorder.returns.model import Return
from pyorder.risk import decisions, fraud
from pyorder.risk import storage as risk
from pyorder.risk.records import AuditEntry, Decision, FraudReport, Label, RiskState
from pyorder.risk.storage import RISK
from pyorder.storage import codec, parts
from pyorder.storage.base import StorageError, Store
from pyorder.storage.lockfile import ProcessLock
from pyorder.storage.migrations import BOOTSTRAP, CURRENT_VERSION_SQL, pending

T = TypeVar("T")

Group = tuple[str, list[tuple[Any, ...]], int]
"""One statement of a batch for ``SqliteWriter.commit``: (sql, parameter rows, expected total
of changed rows, or -1 for unchecked)."""

_AUTOCHECKPOINT_PAGES = 50_000
"""The writer's own checkpoint threshold (pages, ~200 MB of WAL): a backstop only."""
_WAL_RESTART_PAGES = 16_384
"""WAL size (pages, ~64 MB) at which the commit thread has it start over (``CommitQueue``):
each restart holds one batch back for the checkpoint of the last pages (5-20 ms measured under
batch intake), so not too often; the file stays this size and later commits overwrite it."""
_CHECKPOINT_INTERVAL_MS = 20
"""How often the checkpoint thread copies the WAL into the database."""

BUSY_TIMEOUT_MS = 10_000
"""How long a connection waits for another's lock before failing (both connections)."""

_UPSERT_WAREHOUSE = (
    f"INSERT INTO warehouses ({codec.WAREHOUSE_COLUMNS}) VALUES (?, ?, ?)"
    " ON CONFLICT (id) DO UPDATE SET name = excluded.name, owner = excluded.owner"
)
_DELETE_REGION = "DELETE FROM regions WHERE region = ?"
_INSERT_REGION = "INSERT INTO regions (region, rank, warehouse) VALUES (?, ?, ?)"
_UPSERT_SKU = codec.upsert_sql("skus", codec.SKU_COLUMNS, "id", "?")
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
# DO NOTHING, as on PostgreSQL: a key's first stored response stays, and a second one never
# fails the batch of unrelated orders it shares a commit with.
_INSERT_IDEMPOTENCY = (
    f"INSERT INTO idempotency ({codec.IDEMPOTENCY_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (principal, key) DO NOTHING"
)
_INSERT_TOKEN = "INSERT INTO intake_commits (token, committed_ms) VALUES (?, ?)"
_PURGE_IDEMPOTENCY = "DELETE FROM idempotency WHERE created_ms < ?"
_PURGE_TOKENS = "DELETE FROM intake_commits WHERE committed_ms < ?"

_SELECT_ORDER = f"SELECT {codec.ORDER_COLUMNS} FROM orders"
_SELECT_LINES = f"SELECT {codec.LINE_COLUMNS} FROM order_lines"
_IN_CHUNK = 500
"""Ids per ``IN (...)`` list (SQLite limits the parameters of a statement)."""


def _connect_reader(path: str) -> sqlite3.Connection:
    """The read-only connection: autocommit mode (explicit BEGIN/COMMIT), WAL, the same
    pragmas as the writer (``SqliteWriter``), and ``query_only``."""
    conn = sqlite3.connect(path, isolation_level=None, cached_statements=64)
    try:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise StorageError(f"{path}: cannot use WAL journal mode (got {mode!r})")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("PRAGMA query_only = ON")
    except BaseException:
        conn.close()
        raise
    return conn


def _migrate(writer: SqliteWriter) -> None:
    """Apply pending migrations, each in its own BEGIN IMMEDIATE transaction."""
    while True:
        writer.execute("BEGIN IMMEDIATE")
        try:
            writer.execute(BOOTSTRAP["sqlite"])
            row = writer.query_one(CURRENT_VERSION_SQL)
            current = row[0] if row else None
            if not isinstance(current, int):
                raise StorageError(f"unreadable schema version: {row!r}")
            todo = pending(current)
            if todo:
                step = todo[0]
                for stmt in step.statements("sqlite"):
                    writer.execute(stmt)
                writer.execute(
                    "INSERT INTO schema_migrations (version, applied_ms) VALUES (?, ?)",
                    (step.version, time.time_ns() // 1_000_000),
                )
            writer.execute("COMMIT")
        except BaseException:
            writer.rollback()
            raise
        if not todo:
            return


def _placeholders(n: int) -> str:
    return ", ".join("?" * n)


class SqliteStore(Store):
    """A ``Store`` in one SQLite file at ``path`` (created if missing)."""

    pipeline_depth = 2
    """The next batch waits in the commit queue while one is written (see ``CommitQueue``)."""

    replies_can_be_lost = False
    """The writer is in this process: a commit's error is its outcome, so batches carry no
    token (two B-tree pages fewer written per commit). Reading a token back would not tell
    more: after a failed fsync it shows what this process sees, not what is on disk."""

    def resume(self) -> None:
        if self._queue is not None:
            self._queue.resume()

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._path = os.fspath(path)
        self._lock = ProcessLock(self._path)
        self._writer: SqliteWriter | None = None
        self._queue: CommitQueue | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._committing: dict[int, tuple[asyncio.Future[None], WriteBatch, dict[Any, Any]]] = {}
        self._reader: sqlite3.Connection | None = None
        self._write_pool: ThreadPoolExecutor | None = None
        self._read_pool: ThreadPoolExecutor | None = None

    # --- lifecycle -----------------------------------------------------------------------------

    async def open(self) -> None:
        if self._write_pool is not None or self._lock.held:
            raise RuntimeError("SqliteStore is already open")
        self._lock.acquire()  # before the first connection: a refused store touches nothing
        self._write_pool = ThreadPoolExecutor(1, thread_name_prefix="pyorder-sqlite-writer")
        self._read_pool = ThreadPoolExecutor(1, thread_name_prefix="pyorder-sqlite-reader")
        try:
            await self._on_writer(self._open_writer)
            await self._on_reader(self._open_reader)
            # Checkpoints run on a thread of their own; the writer keeps a far automatic one
            # only as a bound on the WAL should that thread fall behind.
            self._w().query_one(f"PRAGMA wal_autocheckpoint = {_AUTOCHECKPOINT_PAGES}")
            self._queue = CommitQueue(
                self._w(), self._path, _CHECKPOINT_INTERVAL_MS, _WAL_RESTART_PAGES
            )
            self._loop = asyncio.get_running_loop()
            self._loop.add_reader(self._queue.fd, self._on_committed)
        except BaseException as e:
            await self.close()
            if isinstance(e, sqlite3.Error | SqliteWriteError):
                raise StorageError(f"{self._path}: cannot open: {e}") from e
            raise

    def _open_writer(self) -> None:
        writer = SqliteWriter(self._path, busy_timeout_ms=BUSY_TIMEOUT_MS)
        try:
            _migrate(writer)
        except BaseException:
            writer.close()
            raise
        self._writer = writer

    def _open_reader(self) -> None:
        self._reader = _connect_reader(self._path)

    async def close(self) -> None:
        """Finish queued commits, close both connections, stop the threads, then release the
        lock on the file (no write of this store can follow); safe to call twice."""
        loop = asyncio.get_running_loop()
        if self._queue is not None:
            queue, self._queue = self._queue, None
            if self._loop is not None:
                self._loop.remove_reader(queue.fd)
            await loop.run_in_executor(None, queue.close)
            self._settle(queue)
        for pool, attr in ((self._read_pool, "_reader"), (self._write_pool, "_writer")):
            if pool is None:
                continue
            await loop.run_in_executor(pool, self._close_connection, attr)
            pool.shutdown(wait=True)
        self._read_pool = self._write_pool = None
        self._lock.release()

    def _close_connection(self, attr: str) -> None:
        conn: sqlite3.Connection | SqliteWriter | None = getattr(self, attr)
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

    def _w(self) -> SqliteWriter:
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
        """Write the batch in one transaction on the commit thread; returns once committed."""
        if self._queue is None:
            raise StorageError("SqliteStore is not open")
        deltas = batch.all_deltas()
        try:
            before, after = _groups(batch, deltas)
            placed = batch.placed if len(batch.placed) else None
            ticket = self._queue.submit(before, placed, after)
        except Exception as e:
            raise StorageError(f"commit of a batch of {len(batch)} failed: {e}") from e
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._committing[ticket] = (done, batch, deltas)
        await done

    def _on_committed(self) -> None:
        if self._queue is not None:
            self._settle(self._queue)

    def _settle(self, queue: CommitQueue) -> None:
        """Resolve the futures of the batches the commit thread has finished."""
        for ticket, _counts, error in queue.take_done():
            done, batch, deltas = self._committing.pop(ticket)
            if done.done():  # the caller was cancelled; the batch committed (or not) anyway
                continue
            if error is None:
                done.set_result(None)
                continue
            reason: object = error
            if isinstance(error, RowCountError) and error.sql == _UPDATE_STOCK:
                # The one checked count: a stock delta whose (sku, warehouse) row is missing.
                reason = codec.missing_stock_message(deltas, error.actual)
            failure = StorageError(f"commit of a batch of {len(batch)} failed: {reason}")
            failure.__cause__ = error
            done.set_exception(failure)

    async def purge_idempotency(self, older_than_ms: int) -> int:
        def purge() -> int:
            ms = [(older_than_ms,)]
            try:
                counts = self._w().commit(
                    [(_PURGE_IDEMPOTENCY, ms, -1), (_PURGE_TOKENS, ms, -1)], None, []
                )
            except SqliteWriteError as e:
                raise StorageError(f"purge of idempotency records failed: {e}") from e
            return counts[0]

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
            loaded = {
                kind.name: kind.snapshot([conn.execute(sql).fetchall() for sql in kind.loads])
                for kind in PARTS
            }
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
            parts=loaded,
        )

    async def delivered_orders(self, buyer: str) -> int:
        sql = codec.DELIVERED_ORDERS_SQL.format("?")
        return await self._on_reader(lambda: int(self._r().execute(sql, (buyer,)).fetchone()[0]))

    async def list_returns(
        self, *, buyer: str, merchant: str, status: str, after: int, limit: int
    ) -> list[Return]:
        sql = returns.LIST_RETURNS_SQL.format("?1", "?2", "?3", "?4", "?5")
        args = (after, buyer, merchant, status, limit)
        return await self._on_reader(
            lambda: [returns.return_from_row(r) for r in self._r().execute(sql, args)]
        )

    async def tracking_events(self, order_id: int) -> list[TrackingEvent]:
        sql = logistics.TRACKING_EVENTS_OF_ORDER_SQL.format("?")
        return await self._on_reader(
            lambda: [
                logistics.tracking_event_from_row(r) for r in self._r().execute(sql, (order_id,))
            ]
        )

    async def webhook_event_seen(self, provider: str, event_id: str) -> bool:
        sql = "SELECT 1 FROM webhook_events WHERE provider = ? AND event_id = ?"
        return await self._on_reader(
            lambda: self._r().execute(sql, (provider, event_id)).fetchone() is not None
        )

    async def webhook_endpoints(self) -> list[WebhookEndpoint]:
        return await self._on_reader(
            lambda: [events.endpoint_from_row(r) for r in self._r().execute(events.ENDPOINTS_SQL)]
        )

    async def pending_deliveries(self, endpoint_id: int, limit: int) -> list[Delivery]:
        sql, params = events.PENDING_SQL.format("?", "?"), (endpoint_id, codec.page_limit(limit))
        return await self._on_reader(
            lambda: [events.delivery_from_row(r) for r in self._r().execute(sql, params)]
        )

    async def deliveries(
        self, endpoint_id: int, before_id: int | None, limit: int
    ) -> list[Delivery]:
        before = codec.MAX_BIGINT if before_id is None else before_id
        sql = events.DELIVERIES_SQL.format("?", "?", "?")
        params = (endpoint_id, before, codec.page_limit(limit))
        return await self._on_reader(
            lambda: [events.delivery_from_row(r) for r in self._r().execute(sql, params)]
        )

    async def risk_state(self) -> RiskState:
        def read() -> RiskState:
            conn = self._r()
            conn.execute("BEGIN")  # one read snapshot of the three tables
            try:
                return risk.state_from_rows([conn.execute(sql).fetchall() for sql in RISK.loads])
            finally:
                conn.execute("COMMIT")

        return await self._on_reader(read)

    async def risk_version(self) -> int:
        return await self._on_reader(lambda: int(self._r().execute(risk.VERSION_SQL).fetchone()[0]))

    async def risk_audit(self, owner: str, before_id: int | None, limit: int) -> list[AuditEntry]:
        before = codec.MAX_BIGINT if before_id is None else before_id
        sql = risk.AUDIT_SQL.format("?1", "?2", "?3")
        params = (before, owner, codec.page_limit(limit))
        return await self._on_reader(
            lambda: [risk.audit_from_row(r) for r in self._r().execute(sql, params)]
        )

    async def risk_decision(self, order_id: int) -> Decision | None:
        sql = decisions.DECISION_SQL.format("?")
        in_order = decisions.ORDER_RISK_SQL.format("?")

        def get() -> Decision | None:
            # An allowed order's (most decisions) first: one read for them.
            row = self._r().execute(in_order, (order_id,)).fetchone()
            if row is not None:
                return decisions.decision_from_order(row)
            row = self._r().execute(sql, (order_id,)).fetchone()
            return None if row is None else decisions.decision_from_row(row)

        return await self._on_reader(get)

    async def open_reviews(
        self, merchant: str, before_id: int | None, limit: int
    ) -> list[Decision]:
        before = codec.MAX_BIGINT if before_id is None else before_id
        sql = decisions.OPEN_SQL.format("?1", "?2", "?3")
        params = (before, merchant, codec.page_limit(limit))
        return await self._on_reader(
            lambda: [decisions.decision_from_row(r) for r in self._r().execute(sql, params)]
        )

    async def review_labels(self, after_id: int, limit: int) -> list[Label]:
        sql = decisions.LABELS_SQL.format("?", "?")
        params = (after_id, codec.page_limit(limit))
        return await self._on_reader(
            lambda: [decisions.label_from_row(r) for r in self._r().execute(sql, params)]
        )

    async def fraud_report(self, order_id: int) -> FraudReport | None:
        sql = fraud.REPORT_SQL.format("?")

        def get() -> FraudReport | None:
            row = self._r().execute(sql, (order_id,)).fetchone()
            return None if row is None else fraud.report_from_row(row)

        return await self._on_reader(get)

    async def get_order(self, order_id: int) -> Order | None:
        def get() -> Order | None:
            orders = self._orders_with_lines(
                self._r().execute(f"{_SELECT_ORDER} WHERE id = ?", (order_id,)).fetchall()
            )
            return orders[0] if orders else None

        return await self._on_reader(get)

    async def get_orders(self, order_ids: list[int]) -> dict[int, Order]:
        ids = list(dict.fromkeys(order_ids))

        def get() -> dict[int, Order]:
            found: dict[int, Order] = {}
            for i in range(0, len(ids), _IN_CHUNK):
                chunk = ids[i : i + _IN_CHUNK]
                sql = f"{_SELECT_ORDER} WHERE id IN ({_placeholders(len(chunk))})"
                rows = self._r().execute(sql, chunk).fetchall()
                found.update((o.id, o) for o in self._orders_with_lines(rows))
            return found

        return await self._on_reader(get) if ids else {}

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

    def _orders_with_lines(self, order_rows: list[Row]) -> list[Order]:
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


def _groups(
    batch: WriteBatch, deltas: dict[tuple[int, int], list[int]]
) -> tuple[list[Group], list[Group]]:
    """The statement groups of ``batch`` around its placed orders, in dependency order:
    catalogue, stock rows, stock ``deltas`` (checked: one row each), Python-built orders and
    lines; then, after the placed orders, status changes, idempotency records, the registered
    parts (``pyorder.parts``: payments and attempts, outbox rows and webhook events, refunds,
    logistics, returns, then the events and their fan-outs) and the token."""
    before: list[Group] = []
    if batch.warehouses:
        before.append((_UPSERT_WAREHOUSE, list(map(codec.warehouse_row, batch.warehouses)), -1))
    if batch.regions:
        before.append((_DELETE_REGION, [(r,) for r in batch.regions], -1))
        before.append((_INSERT_REGION, codec.region_rows(batch.regions), -1))
    if batch.skus:
        before.append((_UPSERT_SKU, list(map(codec.sku_row, batch.skus)), -1))
    if batch.stock_rows:
        before.append((_INSERT_STOCK, list(map(codec.stock_row, batch.stock_rows)), -1))
    if deltas:
        before.append((_UPDATE_STOCK, codec.delta_rows(deltas), len(deltas)))
    if batch.orders:
        before.append((_INSERT_ORDER, list(map(codec.order_row, batch.orders)), -1))
        before.append((_INSERT_LINE, codec.line_rows(batch.orders), -1))
    after: list[Group] = []
    if batch.status_changes:
        rows = list(map(codec.status_change_row, batch.status_changes))
        after.append((_UPDATE_STATUS, rows, -1))
    if batch.idempotency:
        after.append((_INSERT_IDEMPOTENCY, list(map(codec.idempotency_row, batch.idempotency)), -1))
    after.extend((statement.sqlite, rows, -1) for statement, rows in parts.writes(batch))
    if batch.token:
        after.append((_INSERT_TOKEN, [(batch.token, time.time_ns() // 1_000_000)], -1))
    return before, after
