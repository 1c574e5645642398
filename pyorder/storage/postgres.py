"""The server store: PostgreSQL through an asyncpg pool, default ``synchronous_commit`` (on).

``commit`` runs the whole batch in one transaction on a connection of its own (outside the
pool: no session reset per commit); when it returns, PostgreSQL has flushed the commit record
to its WAL. Neighbouring writes go as one statement of CTEs (``_OneTrip``, docs/storage.md), and
a batch that fits one statement, as the single-order path's does, is sent without BEGIN and
COMMIT: PostgreSQL runs it as its own transaction, one round trip in all. Orders and order lines
go in by COPY once a batch holds ``copy_threshold`` orders or more (Python-built orders with
``copy_records_to_table``, the Rust intake's ``WriteBatch.placed`` with
``copy_to_table(format='binary')`` from the bytes ``pyorder._core.pg_copy_binary`` builds, no
Python object per order), by one ``INSERT ... SELECT FROM unnest`` per table below that (the
Rust intake's rows as one array literal per column, ``pyorder._core.pg_array_text``). The risk
decisions staged with the Rust intake's orders (``OrderRows.decision_tuples()``) go in by one
``INSERT ... SELECT FROM unnest``, in the orders' statement below the COPY threshold. Stock
deltas (``WriteBatch.all_deltas()``, the placed orders' reserved units included) are one
UPDATE joining ``unnest`` arrays, so each (sku, warehouse) row is updated once; the rows are
first locked in (sku, warehouse) order and counted, so that two writers of the same stock rows
wait for each other instead of deadlocking, and a delta without its row fails the batch before
anything is written.

A transaction PostgreSQL aborts for a conflict (40001 serialization failure, 40P01 deadlock) has
rolled back whole, and ``commit`` runs it again, a bounded number of times after a jittered wait
(``pyorder.storage.retry``); ``conflict_retries`` counts those runs.

A ``StorageError`` from a connection lost while COMMIT (or a one-statement commit) was in
flight cannot say whether the server committed; after such an error the caller should reload (``load``) before going on.
"""

import asyncio
import contextlib
import functools
import re
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from typing import TypeVar

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from pyorder._core import (
    PLACED_DECISION_COLUMNS,
    PLACED_ORDER_COLUMNS,
    OrderRows,
    pg_array_text,
    pg_copy_binary,
)
from pyorder.catalog.model import Sku, StockRow
from pyorder.events import storage as events
from pyorder.events.model import Delivery, WebhookEndpoint
from pyorder.kernel.unit import Write
from pyorder.logistics import storage as logistics
from pyorder.logistics.model import DeliveryWindow, Fulfilment, TrackingEvent, WindowBooking
from pyorder.model import IdempotencyRecord, Snapshot, WriteBatch
from pyorder.orders.model import Order
from pyorder.parts import PARTS
from pyorder.returns import storage as returns
from pyorder.returns.model import Return
from pyorder.risk import decisions, fraud
from pyorder.risk import storage as risk
from pyorder.risk.records import AuditEntry, Decision, FraudReport, Label, RiskState
from pyorder.risk.storage import RISK
from pyorder.storage import (
    codec,
    key_claims,
    limit_claims,
    parts,
    replication,
    stock_leases,
    window_bookings,
)
from pyorder.storage.base import (
    Catalogue,
    KeyClaim,
    NodeClaim,
    StockBelowCommitted,
    StorageError,
    Store,
)
from pyorder.storage.loop_thread import LoopThread
from pyorder.storage.migrations import BOOTSTRAP, CURRENT_VERSION_SQL, pending
from pyorder.storage.node_lease import (
    CONNECT_TIMEOUT_S,
    FENCE_SQL,
    LEADER_NODE_SQL,
    LIVE_NODES_SQL,
    PEER_URL_SQL,
    FencedError,
    LeaseConfig,
    NodeLease,
)
from pyorder.storage.replication import Standby
from pyorder.storage.retry import RetryPolicy, is_conflict

COPY_THRESHOLD = 64
"""Orders per batch from which COPY beats one INSERT from ``unnest`` arrays: below it the orders
and lines ride in the statement of the fence and stock UPDATE (one round trip; a COPY costs
two). Measured on 2 cores, loopback, fsync on, one line per order, one commit at a time
(``benchmarks/pg_commit_profile.py``): the single statement was faster up to 32 orders per
batch (0.68 against 1.0 ms at 4, 1.1 against 1.4 ms at 32), even at 64 and 128 within the
noise, and COPY ahead from 256 on; COPY from Rust also builds no Python object per order."""

_CATALOGUE_LOCK = 0x7079_6361_7461_6C67
"""Advisory lock key held while a cluster node changes the catalogue (``pyorder.cluster``)."""
_MIGRATION_LOCK = 0x7079_6F72_6465_72
"""Advisory lock key held while migrating, so concurrent openers apply each step once."""

_UPSERT_WAREHOUSE = (
    f"INSERT INTO warehouses ({codec.WAREHOUSE_COLUMNS}) VALUES ($1, $2, $3)"
    " ON CONFLICT (id) DO UPDATE SET name = excluded.name, owner = excluded.owner"
)
_DELETE_REGIONS = "DELETE FROM regions WHERE region = ANY($1::text[])"
_INSERT_REGION = "INSERT INTO regions (region, rank, warehouse) VALUES ($1, $2, $3)"
_UPSERT_SKU = codec.upsert_sql("skus", codec.SKU_COLUMNS, "id", "$")
_INSERT_STOCK = f"INSERT INTO stock ({codec.STOCK_COLUMNS}) VALUES ($1, $2, $3, $4, $5)"
_DELTAS = (
    "unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::bigint[], $5::bigint[])"
    " AS d(on_hand, reserved, sold, sku, warehouse)"
)
_LOCK_STOCK = (
    f"SELECT 1 FROM (SELECT 1 FROM {_DELTAS}"
    " JOIN stock AS l ON l.sku = d.sku AND l.warehouse = d.warehouse"
    " ORDER BY d.sku, d.warehouse FOR NO KEY UPDATE OF l) AS locked"
)
"""The stock rows of the deltas, locked, one row each (their number is checked). A join alone
would lock the rows in whatever order its plan meets them (the arrays' order, or the table's
under a hash join), and two writers meeting two rows in opposite orders deadlock. This locks
them sorted (its plan is a LockRows over a Sort: rows are locked in (sku, warehouse) order),
with the lock the UPDATE takes anyway; a subquery with a locking clause is never merged into
the outer query, so the order holds. It runs in the statement of the UPDATE (``_OneTrip``),
before it: the UPDATE waits for its count. The lock's cost, measured against the bare join
(docs/storage.md): about 0.1 ms per commit (the second join's planning and index probes; the
locks themselves cost nothing measurable)."""
_SET_DELTAS = (
    "UPDATE stock AS s SET on_hand = s.on_hand + d.on_hand, reserved = s.reserved + d.reserved,"
    " sold = s.sold + d.sold"
)
_UPDATE_STOCK = f"{_SET_DELTAS} FROM {_DELTAS} WHERE s.sku = d.sku AND s.warehouse = d.warehouse"
"""The stock deltas, one row each, after ``_LOCK_STOCK`` locked and counted the rows."""
_UPDATE_STOCK_LEASED = (
    f"{_SET_DELTAS}, leased = s.leased + d.on_hand - d.reserved - d.sold"
    f" FROM {_DELTAS} WHERE s.sku = d.sku AND s.warehouse = d.warehouse"
)
"""The stock UPDATE of a cluster node's commit (``stock_leases``): what its core's
``available`` changed by (``on_hand - reserved - sold``) is its lease's change too."""
_FIND_LEASES = (
    f"SELECT 1 FROM stock_leases AS l JOIN {_DELTAS}"
    " ON l.sku = d.sku AND l.warehouse = d.warehouse"
    " WHERE l.node = $6 AND d.on_hand - d.reserved - d.sold <> 0"
)
"""A cluster node's lease rows that its commit changes (``stock_leases.LEASED_DELTAS_SQL``, same
parameters), counted before they are written: one per delta that changes its core's
``available``. Lease rows are zeroed, never deleted, and only their node (under its fence) adds
them, so the count still holds when the UPDATE runs."""

_ORDER_TYPES = ("bigint", "text", "text", "text", "bigint", "text", "text") + ("bigint",) * 4
_LINE_TYPES = ("bigint", "int", "bigint", "bigint", "bigint", "bigint", "text")


def _unnest(columns: str, types: tuple[str, ...], alias: str, literals: bool = False) -> str:
    """``unnest`` of one array parameter per column, in ``columns`` order, named ``alias``;
    ``literals``: each parameter is the array's literal as text (``pyorder._core.pg_array_text``)."""
    cast = "::text::" if literals else "::"
    arrays = ", ".join(f"${n}{cast}{t}[]" for n, t in enumerate(types, 1))
    return f"unnest({arrays}) AS {alias}({columns})"


_PLACED_ORDER_COLUMNS = ", ".join(PLACED_ORDER_COLUMNS)
"""The Rust intake's orders: ``codec.ORDER_COLUMNS`` and ``risk_packed`` (an allowed order's
risk decision, MessagePack, or NULL)."""


def _insert_orders(literals: bool) -> str:
    """A batch's orders in one statement, one array per column (the address as JSON text):
    built in Python (``codec.ORDER_COLUMNS``), or placed by the Rust intake (``literals``,
    ``_PLACED_ORDER_COLUMNS``)."""
    columns, types = (
        (_PLACED_ORDER_COLUMNS, (*_ORDER_TYPES, "bytea"))
        if literals
        else (codec.ORDER_COLUMNS, _ORDER_TYPES)
    )
    return (
        f"INSERT INTO orders ({columns})"
        f" SELECT {columns.replace('address', 'address::jsonb')}"
        f" FROM {_unnest(columns, types, 'o', literals)}"
    )


def _insert_lines(literals: bool) -> str:
    return (
        f"INSERT INTO order_lines ({codec.LINE_COLUMNS}) SELECT {codec.LINE_COLUMNS}"
        f" FROM {_unnest(codec.LINE_COLUMNS, _LINE_TYPES, 'l', literals)}"
    )


_INSERT_ORDERS, _INSERT_LINES = _insert_orders(False), _insert_lines(False)
"""Orders and lines from lists of values (orders built in Python)."""
_INSERT_PLACED_ORDERS, _INSERT_PLACED_LINES = _insert_orders(True), _insert_lines(True)
"""Orders and lines the Rust intake placed, from its array literals: the driver then encodes
one text per column instead of checking every value (~5 µs per single order of the event loop,
a third of the Python it ran more than the bare handler; BENCHMARKS.md)."""
_INSERT_TOKEN = "INSERT INTO intake_commits (token, committed_ms) SELECT $1::bigint, $2::bigint"
_UPDATE_STATUS = "UPDATE orders SET status = $1, updated_ms = $2 WHERE id = $3 AND status = $4"
# DO NOTHING: a key's first stored response stays, and a second one (two nodes ran the same
# key, which the claims of ``key_claims`` keep to a residual window) never fails the batch of
# unrelated orders it shares a commit with.
_INSERT_IDEMPOTENCY = (
    f"INSERT INTO idempotency ({codec.IDEMPOTENCY_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)"
    " ON CONFLICT (principal, key) DO NOTHING"
)

# The address is read back as JSON text (asyncpg's default for jsonb) and decoded by the codec.
_SELECT_ORDER = f"SELECT {codec.ORDER_COLUMNS} FROM orders"
_SELECT_LINES = f"SELECT {codec.LINE_COLUMNS} FROM order_lines"


class _OneTrip:
    """Writes of one batch sent as one statement, so they cost one round trip: each is a CTE
    (data-modifying, or a SELECT that locks and counts rows), and the main query returns how
    many rows each counted one changed or found.

    Each one's SQL numbers its parameters from ``$1`` and has no RETURNING clause. It runs only
    once every counted one added before it has run and found the rows expected of it: its
    condition reads their counts, a condition without columns, which PostgreSQL evaluates once,
    before the CTE reads a row. So the fence row is locked before any stock row, the stock rows
    (in their sorted order) before the lease rows, as in separate statements, and a failed
    check leaves everything after it unwritten: the caller raises, and with the counts checked
    before the writes (``_LOCK_STOCK``, ``_FIND_LEASES``) the statement wrote nothing but the
    fence's ``seen_ms``, so it is whole without a transaction around it."""

    def __init__(self) -> None:
        self.ctes: list[str] = []
        self.args: list[object] = []
        self.expected: dict[str, int] = {}
        """Rows each counted one must find or change, by name."""
        self._numbers: dict[str, int] = {}
        """The parameter holding each counted one's expected count, once a later one needs it:
        the statement's text depends on the batch's shape only, so asyncpg prepares it once."""

    def add(self, name: str, sql: str, args: Sequence[object], expect: int | None = None) -> None:
        """Add ``sql`` (a write, or a SELECT that locks or counts) with ``args``; ``expect``: the
        rows it must return or change (checked by the caller, and by every one added later
        before it runs). ``sql`` ends in its top-level WHERE clause if it has one."""
        for counted, rows in self.expected.items():
            if counted not in self._numbers:
                self.args.append(rows)
                self._numbers[counted] = len(self.args)
        gate = " AND ".join(
            f"(SELECT count(*) FROM {n}) = ${self._numbers[n]}::bigint" for n in self.expected
        )
        cte = _cte(sql, len(self.args), gate, expect is not None)
        self.ctes.append(f"{name} AS ({cte})")
        self.args.extend(args)
        if expect is not None:
            self.expected[name] = expect

    def add_rows(
        self, orders: Sequence[Sequence[object]], lines: Sequence[Sequence[object]]
    ) -> None:
        """Orders and their lines (rows in ``codec.ORDER_COLUMNS`` / ``LINE_COLUMNS`` order)."""
        n = len(self.ctes)
        self.add(f"new_orders{n}", _INSERT_ORDERS, [list(c) for c in zip(*orders, strict=True)])
        self.add(f"new_lines{n}", _INSERT_LINES, [list(c) for c in zip(*lines, strict=True)])

    def add_placed(self, placed: OrderRows) -> None:
        """The orders and lines of ``placed`` (the Rust intake's), as array literals."""
        orders, lines = pg_array_text(placed)
        n = len(self.ctes)
        self.add(f"new_orders{n}", _INSERT_PLACED_ORDERS, orders)
        self.add(f"new_lines{n}", _INSERT_PLACED_LINES, lines)

    def sql(self) -> str:
        counts = ", ".join(f"(SELECT count(*) FROM {n}) AS {n}" for n in self.expected)
        return f"WITH {', '.join(self.ctes)} SELECT {counts or 'NULL AS nothing'}"


@functools.lru_cache(maxsize=256)
def _cte(sql: str, offset: int, gate: str, counted: bool) -> str:
    """``sql`` with its parameters numbered from ``offset + 1``, run only when ``gate`` holds;
    ``counted``: it returns a row per row found or written (a SELECT returns its own)."""
    shifted = re.sub(r"\$(\d+)", lambda m: f"${int(m[1]) + offset}", sql)
    if gate:
        has_where = " WHERE " in sql.rsplit(")", 1)[-1]  # not one inside a subquery
        shifted += (" AND " if has_where else " WHERE ") + gate
    return shifted + " RETURNING 1" if counted and not sql.startswith("SELECT") else shifted


def _decision_columns(placed: OrderRows) -> list[list[object]]:
    """The risk decisions staged with ``placed`` (blocked attempts included) as one list per
    column of ``decisions.INSERT_PLACED_SQL``; empty when there are none."""
    rows = placed.decision_tuples() if placed.decision_count else []
    return [list(c) for c in zip(*rows, strict=True)] if rows else []


_Conn = asyncpg.Connection | PoolConnectionProxy
_DB_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.InternalClientError, OSError)
"""What a statement can fail with (the server refused, the connection is gone or busy)."""
T = TypeVar("T")


def _rowcount(status: str) -> int:
    """Rows affected, from a command status such as ``UPDATE 3`` or ``DELETE 0``."""
    return int(status.rsplit(" ", 1)[-1])


async def _migrate(conn: _Conn) -> None:
    """Apply pending migrations, each in its own transaction under an advisory lock."""
    while True:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
            await conn.execute(BOOTSTRAP["postgres"])
            current = int(await conn.fetchval(CURRENT_VERSION_SQL))
            todo = pending(current)
            if not todo:
                return
            step = todo[0]
            for stmt in step.statements("postgres"):
                await conn.execute(stmt)
            await conn.execute(
                "INSERT INTO schema_migrations (version, applied_ms) VALUES ($1, $2)",
                step.version,
                time.time_ns() // 1_000_000,
            )


class _Connection:
    """A connection of the commits, outside the pool: made when first needed, and again after
    one was lost or cancelled in the middle of a statement."""

    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        self._conn: asyncpg.Connection | None = None

    async def get(self) -> asyncpg.Connection:
        if self._conn is None or self._conn.is_closed():
            self._conn = await asyncpg.connect(self._dsn, timeout=CONNECT_TIMEOUT_S)
        return self._conn

    def drop(self, conn: asyncpg.Connection | None = None) -> None:
        """Terminate ``conn`` (by default the current one), and forget it if it is the current
        one: the next ``get`` connects afresh. On the connection's own loop."""
        conn = conn or self._conn
        if conn is self._conn:
            self._conn = None
        if conn is not None:
            conn.terminate()

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.close()


class PostgresStore(Store):
    """A ``Store`` in the PostgreSQL database named by ``dsn`` (a libpq-style URL).

    ``min_size``/``max_size`` bound the asyncpg pool (connections); ``copy_threshold`` is the
    number of orders in a batch from which orders and lines are written by COPY; ``retry``
    bounds the runs of a commit aborted by a conflict (``pyorder.storage.retry``).
    """

    def __init__(
        self,
        dsn: str,
        *,
        min_size: int = 1,
        max_size: int = 4,
        copy_threshold: int = COPY_THRESHOLD,
        retry: RetryPolicy = RetryPolicy(),  # noqa: B008 - frozen: one shared default is fine
    ) -> None:
        self._dsn = dsn
        self._min_size = min_size
        self._max_size = max_size
        self.copy_threshold = copy_threshold
        self._pool: asyncpg.Pool | None = None
        self._writer = _Connection(dsn)
        """The connection of ``commit``, outside the pool: a pooled connection costs a round
        trip more per commit (the pool resets its session on release)."""
        self._copy_writer = _Connection(dsn)
        """The connection of the commits written by COPY, on ``_copy_thread``'s loop."""
        self._copy_thread = LoopThread("pyorder-pg-copy")
        """Commits written by COPY run on an event loop of their own (``loop_thread``)."""
        self._writing = asyncio.Lock()
        """Held by the commit being written, on whichever loop: one at a time, in order."""
        self.retry = retry
        self.conflict_retries: Counter[str] = Counter()
        """Commits run again after a conflict abort, by SQLSTATE ("40001", "40P01"), since the
        store was made."""
        self.conflict_failures = 0
        """Commits given up after ``retry.max_attempts`` conflict aborts in a row."""

    # --- lifecycle -----------------------------------------------------------------------------

    async def open(self) -> None:
        if self._pool is not None:
            raise RuntimeError("PostgresStore is already open")
        try:
            pool = await asyncpg.create_pool(
                self._dsn,
                min_size=self._min_size,
                max_size=self._max_size,
                timeout=CONNECT_TIMEOUT_S,
            )
        except _DB_ERRORS as e:
            raise StorageError(f"cannot connect to PostgreSQL: {e}") from e
        try:
            async with pool.acquire() as conn:
                await _migrate(conn)
        except BaseException as e:
            await pool.close()
            if isinstance(e, _DB_ERRORS):
                raise StorageError(f"cannot migrate the PostgreSQL schema: {e}") from e
            raise
        if not self._copy_thread.running:  # a close that failed part-way left it
            self._copy_thread.start()
        self._pool = pool

    async def close(self) -> None:
        """Close the pool (waits for connections in use to be released) and the commits'
        connection (after the commit in flight); safe to call twice."""
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()
        async with self._writing:
            try:
                await self._writer.close()
            finally:
                if self._copy_thread.running:
                    try:
                        await self._copy_thread.run(self._copy_writer.close())
                    finally:
                        self._copy_thread.stop()

    async def claim_node(self, *, node: int | None, cluster: bool, url: str = "") -> NodeClaim:
        """Lease a node number from the database (``node_lease``): refused while another node
        serves it in solo mode, or, in cluster mode, while a solo node does."""
        lease = NodeLease(self._dsn, LeaseConfig(cluster=cluster, node=node, url=url))
        await lease.acquire()
        return lease

    def _p(self) -> asyncpg.Pool:
        if self._pool is None:
            raise StorageError("PostgresStore is not open")
        return self._pool

    async def schema_version(self) -> int:
        return int(await self._p().fetchval(CURRENT_VERSION_SQL))

    # --- writes --------------------------------------------------------------------------------

    def resume(self) -> None:
        """After a failed commit (the intake rebuilt the core): both commits' connections are
        made afresh at their next use. The one that did not fail may be as dead (a failover to
        another host), and finding out would fail one more commit."""
        self._writer.drop()
        self._copy_thread.call_soon(self._copy_writer.drop)

    async def commit(self, batch: WriteBatch) -> None:
        """One transaction, run again (``self.retry``) while PostgreSQL aborts it for a conflict:
        such an abort rolled it back whole (``pyorder.storage.retry``). Any other error, and
        the last conflict, raise ``StorageError``. A batch sent as one statement (the
        single-order path's: ``_one_statement``) is that statement's own transaction, which
        saves the round trips of BEGIN and COMMIT. A batch written by COPY is written on a
        thread of its own (``loop_thread``): its round trips and its COPY streams' transfer
        do not wait for the turns of an event loop busy with requests."""
        self._p()
        writes = list(parts.writes(batch))  # the registered parts; refused before anything runs
        alone = self._one_statement(batch, writes)
        async with self._writing:
            if self._copied(batch):
                await self._copy_thread.run(
                    self._commit_on(self._copy_writer, batch, writes, alone)
                )
            else:
                await self._commit_on(self._writer, batch, writes, alone)

    def _copied(self, batch: WriteBatch) -> bool:
        """Whether ``_write_batch`` writes the batch's orders by COPY."""
        threshold = self.copy_threshold
        return len(batch.orders) >= threshold or len(batch.placed) >= threshold

    async def _commit_on(
        self, writer: "_Connection", batch: WriteBatch, writes: list[Write], alone: bool
    ) -> None:
        streams = None
        if len(batch.placed) >= self.copy_threshold:
            # The COPY streams, built once whatever the retries, on a worker thread (the GIL
            # released) while BEGIN and the first statement make their round trips.
            loop = asyncio.get_running_loop()
            streams = loop.run_in_executor(None, pg_copy_binary, batch.placed)
        attempt = 1
        while True:
            try:
                conn = await writer.get()
                try:
                    if alone:  # PostgreSQL runs it as its own transaction: no BEGIN, COMMIT
                        await self._write_batch(conn, batch, writes, streams)
                    else:
                        async with conn.transaction():
                            await self._write_batch(conn, batch, writes, streams)
                except (StorageError, asyncpg.PostgresError):
                    raise  # refused by the store's checks or the server: the session is fine
                except BaseException:
                    # Lost, or cancelled in the middle of a statement: start afresh.
                    writer.drop(conn)
                    raise
                return
            except StorageError:
                raise
            except Exception as e:
                if is_conflict(e) and attempt < self.retry.max_attempts:
                    self.conflict_retries[getattr(e, "sqlstate", "")] += 1
                    await asyncio.sleep(self.retry.delay_s(attempt))
                    attempt += 1
                    continue
                if is_conflict(e):
                    self.conflict_failures += 1
                tries = f" (tried {attempt} times)" if attempt > 1 else ""
                raise StorageError(f"commit of a batch of {len(batch)} failed{tries}: {e}") from e

    def _one_statement(self, batch: WriteBatch, writes: list[Write]) -> bool:
        """Whether ``_write_batch`` sends ``batch`` as one statement (``_OneTrip``): no catalogue
        rows (the deltas may need them written first), fewer orders than ``copy_threshold``,
        and no rows written by statements of their own (status changes, idempotency records,
        the parts' writes). Such a statement writes all or nothing, its checks made before
        its writes, so it needs no transaction around it."""
        catalogue = batch.warehouses or batch.regions or batch.skus or batch.stock_rows
        separate = batch.status_changes or batch.idempotency or writes
        return (
            not (catalogue or separate)
            and len(batch.orders) < self.copy_threshold
            and len(batch.placed) < self.copy_threshold
        )

    async def _write_batch(
        self,
        conn: _Conn,
        batch: WriteBatch,
        writes: list[Write] | None = None,
        streams: "Awaitable[tuple[bytes, bytes, bytes]] | None" = None,
    ) -> None:
        """Every statement of one batch, inside the caller's transaction, in dependency order.

        Neighbouring writes that need no answer in between share one round trip
        (``_OneTrip``): the fence, the stock UPDATE (and a cluster node's lease rows), small
        batches' orders and lines, and the token (in the first statement with other writes,
        or the last). Their checks are read from the statement's counts; a failed one raises,
        and the caller's transaction rolls everything back. ``streams``: the placed orders'
        COPY streams being built (``_commit_on``), else they are built here."""
        token = [batch.token] if batch.token else []

        async def send(trip: _OneTrip, last: bool = False) -> None:
            """Send ``trip``; the first one with other writes (or the last) carries the token
            too: inside the transaction its place changes nothing, and it needs no round trip
            of its own."""
            if token and (trip.ctes or last):
                trip.add("token_row", _INSERT_TOKEN, (token.pop(), time.time_ns() // 1_000_000))
            await self._run(conn, trip, batch)

        trip = _OneTrip()
        if self.fence is not None:
            trip.add("fence_rows", FENCE_SQL, self.fence, expect=1)
        if batch.warehouses or batch.regions or batch.skus or batch.stock_rows:
            # The catalogue's rows come after the fence and before the deltas that may use them.
            await send(trip)
            trip = _OneTrip()
            if batch.warehouses:
                await conn.executemany(
                    _UPSERT_WAREHOUSE, [codec.warehouse_row(w) for w in batch.warehouses]
                )
            if batch.regions:
                await conn.execute(_DELETE_REGIONS, list(batch.regions))
                await conn.executemany(_INSERT_REGION, codec.region_rows(batch.regions))
            if batch.skus:
                await conn.executemany(_UPSERT_SKU, [codec.sku_row(s) for s in batch.skus])
            if batch.stock_rows:
                await conn.executemany(
                    _INSERT_STOCK, [codec.stock_row(s) for s in batch.stock_rows]
                )
        deltas = batch.all_deltas()
        if deltas:
            columns = [list(col) for col in zip(*codec.delta_rows(deltas), strict=True)]
            node = self.lease_node
            update = _UPDATE_STOCK if node is None else _UPDATE_STOCK_LEASED
            trip.add("stock_found", _LOCK_STOCK, columns, expect=len(deltas))
            if node is not None:  # a cluster node: its lease changes as its core's available
                changed = sum(1 for d in deltas.values() if d[0] - d[1] - d[2])
                trip.add("leases_found", _FIND_LEASES, [*columns, node], changed)
            trip.add("stock_rows", update, columns)
            if node is not None:
                now = time.time_ns() // 1_000_000
                trip.add("lease_rows", stock_leases.LEASED_DELTAS_SQL, [*columns, node, now])
        if batch.orders:
            order_rows = [codec.order_row(o) for o in batch.orders]
            line_rows = codec.line_rows(batch.orders)
            if len(batch.orders) >= self.copy_threshold:
                await send(trip)
                trip = _OneTrip()
                await conn.copy_records_to_table(
                    "orders", records=order_rows, columns=codec.ORDER_COLUMN_NAMES
                )
                await conn.copy_records_to_table(
                    "order_lines", records=line_rows, columns=codec.LINE_COLUMN_NAMES
                )
            else:
                trip.add_rows(order_rows, line_rows)
        if len(batch.placed) >= self.copy_threshold:  # orders, lines and decisions
            await send(trip)
            trip = _OneTrip()
            copies = pg_copy_binary(batch.placed) if streams is None else await streams
            await self._write_placed(conn, copies, batch.placed.decision_count)
        elif len(batch.placed):
            if batch.placed.order_count:
                trip.add_placed(batch.placed)
            if decided := _decision_columns(batch.placed):  # in the orders' statement
                trip.add(f"new_decisions{len(trip.ctes)}", decisions.INSERT_PLACED_SQL, decided)
        if writes is None:
            writes = list(parts.writes(batch))  # the registered parts (pyorder.parts)
        await send(trip, last=True)  # the token, if no statement carried it yet
        if batch.status_changes:
            await conn.executemany(
                _UPDATE_STATUS, [codec.status_change_row(c) for c in batch.status_changes]
            )
        if batch.idempotency:
            await conn.executemany(
                _INSERT_IDEMPOTENCY, [codec.idempotency_row(r) for r in batch.idempotency]
            )
        for statement, rows in writes:
            await conn.executemany(statement.postgres, rows)

    async def _run(self, conn: _Conn, trip: "_OneTrip", batch: WriteBatch) -> None:
        """Send ``trip`` (nothing when empty) and check its counts: the fence's row, one stock
        row per delta, and a cluster node's lease row per delta that changes its lease."""
        if not trip.ctes:
            return
        row = await conn.fetchrow(trip.sql(), *trip.args)
        assert row is not None  # the statement's main query always returns one row
        found = dict(row.items())
        if found.get("fence_rows", 1) != 1:
            assert self.fence is not None
            node, epoch = self.fence
            raise FencedError(
                f"node {node} lost its lease (epoch {epoch} is no longer current): "
                "the batch was not written"
            )
        if found.get("stock_found") != trip.expected.get("stock_found"):
            deltas = batch.all_deltas()
            raise StorageError(codec.missing_stock_message(deltas, found["stock_found"]))
        if found.get("leases_found") != trip.expected.get("leases_found"):
            raise StorageError(
                f"node {self.lease_node} changed {trip.expected['leases_found']} stock rows it"
                f" holds no lease on ({found['leases_found']} found): the batch was not written"
            )

    async def _check_fence(self, conn: _Conn) -> None:
        """First in every transaction of a lease holder: the fence holds the lease row's lock
        until COMMIT (a claim of the number waits for it)."""
        if self.fence is not None and _rowcount(await conn.execute(FENCE_SQL, *self.fence)) != 1:
            node, epoch = self.fence
            raise FencedError(
                f"node {node} lost its lease (epoch {epoch} is no longer current): "
                "the batch was not written"
            )

    async def grant_stock(
        self, wants: list[stock_leases.Grant], nodes: int
    ) -> list[stock_leases.Grant]:
        node = self._lease_node()
        async with self._fenced("stock lease grant") as conn:
            return await stock_leases.grant(conn, node, wants, nodes)

    async def return_stock(self, rows: list[stock_leases.Grant]) -> None:
        node = self._lease_node()
        async with self._fenced("returning idle stock leases") as conn:
            await stock_leases.return_units(conn, node, rows)

    async def give_back_stock(self) -> list[stock_leases.Grant]:
        node = self._lease_node()
        async with self._fenced("giving stock leases back") as conn:
            return await stock_leases.give_back(conn, node)

    async def reclaim_stock(self, claim: NodeClaim) -> list[stock_leases.Grant]:
        back = await self._take_over_dead(
            claim,
            "taking dead nodes' stock leases back",
            stock_leases.HOLDERS_SQL,
            (),
            stock_leases.give_back,
        )
        return [grant for returned in back for grant in returned]

    async def adopt_dead(self, claim: NodeClaim, after_ms: int) -> dict[int, int]:
        if not isinstance(claim, NodeLease):
            return {}
        adopted: dict[int, int] = {}
        with _db_errors("adopting dead nodes"):
            async with self._p().acquire() as conn:
                listed = {int(r[0]) for r in await conn.fetch(stock_leases.ADOPTABLE_SQL, after_ms)}
                live = {int(r[0]) for r in await conn.fetch(LIVE_NODES_SQL)}
            for dead in sorted(listed - live):
                work = functools.partial(stock_leases.adopt, dead=dead, adopter=claim.node)
                back = await claim.adopt(dead, work)
                if back is not None:
                    adopted[dead] = sum(units for _, _, units in back)
        return adopted

    async def expire_orphans(self, claim: NodeClaim) -> int:
        """Expire the unpaid orders of dead nodes past their deadline (their units back to the
        pool), through ``claim``: each dead number is taken over for the while."""
        now = time.time_ns() // 1_000_000
        expired = await self._take_over_dead(
            claim,
            "expiring dead nodes' unpaid orders",
            stock_leases.ORPHANS_SQL,
            (now,),
            stock_leases.expire_orphans,
        )
        return sum(expired)

    async def _take_over_dead(
        self,
        claim: NodeClaim,
        what: str,
        nodes_sql: str,
        args: tuple[object, ...],
        work: Callable[[asyncpg.Connection, int], Awaitable[T]],
    ) -> list[T]:
        """``work(conn, node)`` for each node number ``nodes_sql`` lists that no live node holds,
        each taken over through ``claim`` (the caller's lease) for the while."""
        if not isinstance(claim, NodeLease):
            return []
        done: list[T] = []
        with _db_errors(what):
            async with self._p().acquire() as conn:
                listed = {int(r[0]) for r in await conn.fetch(nodes_sql, *args)}
                live = {int(r[0]) for r in await conn.fetch(LIVE_NODES_SQL)}
            for dead in sorted(listed - live):
                result = await claim.take_over(dead, functools.partial(_for_node, work, dead))
                if result is not None:
                    done.append(result)
        return done

    @contextlib.asynccontextmanager
    async def _fenced(self, what: str) -> AsyncIterator[_Conn]:
        """A transaction of this node's, its fence checked first; the database's failures as
        ``StorageError`` naming ``what``."""
        with _db_errors(what):
            async with self._p().acquire() as conn, conn.transaction():
                await self._check_fence(conn)
                yield conn

    async def load_catalogue(self) -> Catalogue:
        with _db_errors("reading the catalogue"):
            async with (
                self._p().acquire() as conn,
                conn.transaction(isolation="repeatable_read", readonly=True),
            ):
                warehouses = await conn.fetch(
                    f"SELECT {codec.WAREHOUSE_COLUMNS} FROM warehouses ORDER BY id"
                )
                regions: dict[str, list[int]] = {}
                for r in await conn.fetch(
                    "SELECT region, warehouse FROM regions ORDER BY region, rank"
                ):
                    regions.setdefault(r[0], []).append(int(r[1]))
                skus = await conn.fetch(f"SELECT {codec.SKU_COLUMNS} FROM skus ORDER BY id")
                keys = await conn.fetch("SELECT sku, warehouse FROM stock ORDER BY sku, warehouse")
        return Catalogue(
            [codec.warehouse_from_row(r) for r in warehouses],
            regions,
            [codec.sku_from_row(r) for r in skus],
            [(int(r[0]), int(r[1])) for r in keys],
        )

    @contextlib.asynccontextmanager
    async def catalogue_lock(self) -> AsyncIterator[None]:
        async with self._p().acquire() as conn:
            await conn.execute("SELECT pg_advisory_lock($1)", _CATALOGUE_LOCK)
            try:
                yield
            finally:
                await conn.execute("SELECT pg_advisory_unlock($1)", _CATALOGUE_LOCK)

    async def adjust_pool(self, sku: int, warehouse: int, delta: int) -> StockRow:
        async with self._fenced("changing the stock pool") as conn:
            row = await conn.fetchrow(
                f"SELECT {codec.STOCK_COLUMNS}, leased FROM stock"
                " WHERE sku = $1 AND warehouse = $2 FOR UPDATE",
                sku,
                warehouse,
            )
            if row is None:
                if delta < 0:
                    raise StockBelowCommitted(f"SKU {sku} has no stock in warehouse {warehouse}")
                await conn.execute(_INSERT_STOCK, sku, warehouse, delta, 0, 0)
                return StockRow(sku, warehouse, delta, 0, 0)
            on_hand, reserved, sold, leased = int(row[2]), int(row[3]), int(row[4]), int(row[5])
            if on_hand + delta < leased + reserved + sold:
                raise StockBelowCommitted(
                    f"{-delta} units cannot be removed: only"
                    f" {on_hand - leased - reserved - sold} are in the pool (the rest are"
                    " leased to nodes, reserved or sold)"
                )
            await conn.execute(
                "UPDATE stock SET on_hand = on_hand + $3 WHERE sku = $1 AND warehouse = $2",
                sku,
                warehouse,
                delta,
            )
            return StockRow(sku, warehouse, on_hand + delta, reserved, sold)

    async def live_nodes(self) -> int:
        async with self._p().acquire() as conn:
            return len(await conn.fetch(LIVE_NODES_SQL))

    async def peer_url(self, node: int) -> str | None:
        with _db_errors(f"reading node {node}'s address"):
            async with self._p().acquire() as conn:
                found = await conn.fetchval(PEER_URL_SQL, node)
        return None if found is None else str(found)

    async def order_of_return(self, return_id: int) -> int | None:
        with _db_errors(f"finding the order of return {return_id}"):
            async with self._p().acquire() as conn:
                found = await conn.fetchval("SELECT order_id FROM returns WHERE id = $1", return_id)
        return None if found is None else int(found)

    async def leader_node(self) -> int | None:
        with _db_errors("finding the leader"):
            async with self._p().acquire() as conn:
                found = await conn.fetchval(LEADER_NODE_SQL)
        return None if found is None else int(found)

    async def standbys(self) -> list[Standby]:
        with _db_errors("reading the standbys"):
            async with self._p().acquire() as conn:
                rows = await conn.fetch(replication.STANDBYS_SQL)
        return [replication.standby_from_row(tuple(r)) for r in rows]

    def _lease_node(self) -> int:
        if self.lease_node is None:
            raise StorageError("stock leases need a cluster node (lease_node is not set)")
        return self.lease_node

    async def _write_placed(
        self, conn: _Conn, streams: tuple[bytes, bytes, bytes], decided: int
    ) -> None:
        """The Rust intake's orders, their lines and its ``decided`` risk decisions by binary
        COPY (batches of ``copy_threshold`` orders or more) from their ``pg_copy_binary``
        streams, inside the caller's transaction."""
        orders, lines, decisions = streams
        # asyncpg sends an object supporting the buffer protocol as one CopyData message
        # (documented). A memoryview, not the bytes themselves: asyncpg first tries
        # os.fspath(source), which takes bytes for a file name. asyncpg-stubs list only
        # paths, files and async iterables, hence the ignores.
        await conn.copy_to_table(
            "orders",
            source=memoryview(orders),  # type: ignore[arg-type]
            columns=PLACED_ORDER_COLUMNS,
            format="binary",
        )
        await conn.copy_to_table(
            "order_lines",
            source=memoryview(lines),  # type: ignore[arg-type]
            columns=codec.LINE_COLUMN_NAMES,
            format="binary",
        )
        if decided:
            await conn.copy_to_table(
                "risk_decisions",
                source=memoryview(decisions),  # type: ignore[arg-type]
                columns=PLACED_DECISION_COLUMNS,
                format="binary",
            )

    async def purge_idempotency(self, older_than_ms: int) -> int:
        try:
            status = await self._p().execute(
                "DELETE FROM idempotency WHERE created_ms < $1", older_than_ms
            )
            await self._p().execute(
                "DELETE FROM intake_commits WHERE committed_ms < $1", older_than_ms
            )
            await self._p().execute(key_claims.PURGE_SQL, older_than_ms)
        except _DB_ERRORS as e:
            raise StorageError(f"purge of idempotency records failed: {e}") from e
        return _rowcount(status)

    async def claim_idempotency(
        self, principal: str, key: str, node: int, epoch: int, fresh_after_ms: int
    ) -> KeyClaim:
        try:
            row = await self._p().fetchrow(
                key_claims.CLAIM_SQL, principal, key, node, epoch, fresh_after_ms
            )
        except _DB_ERRORS as e:
            raise StorageError(f"claiming an idempotency key failed: {e}") from e
        assert row is not None  # the statement always returns one row
        return key_claims.key_claim_from_row(row)

    async def release_idempotency(self, principal: str, key: str, node: int, epoch: int) -> None:
        try:
            await self._p().execute(key_claims.RELEASE_SQL, principal, key, node, epoch)
        except _DB_ERRORS as e:
            raise StorageError(f"releasing an idempotency key failed: {e}") from e

    async def committed(self, token: int) -> bool:
        try:
            row = await self._p().fetchrow("SELECT 1 FROM intake_commits WHERE token = $1", token)
        except _DB_ERRORS as e:
            raise StorageError(f"reading commit token failed: {e}") from e
        return row is not None

    # --- reads ---------------------------------------------------------------------------------

    async def load(self) -> Snapshot:
        async with (
            self._p().acquire() as conn,
            conn.transaction(isolation="repeatable_read", readonly=True),
        ):
            warehouses = [
                codec.warehouse_from_row(r)
                for r in await conn.fetch(
                    f"SELECT {codec.WAREHOUSE_COLUMNS} FROM warehouses ORDER BY id"
                )
            ]
            regions: dict[str, list[int]] = {}
            for r in await conn.fetch(
                "SELECT region, warehouse FROM regions ORDER BY region, rank"
            ):
                regions.setdefault(r[0], []).append(r[1])
            skus = [
                codec.sku_from_row(r)
                for r in await conn.fetch(f"SELECT {codec.SKU_COLUMNS} FROM skus ORDER BY id")
            ]
            stock = [
                codec.stock_from_row(r)
                for r in await conn.fetch(
                    f"SELECT {codec.STOCK_COLUMNS} FROM stock ORDER BY sku, warehouse"
                )
            ]
            order_rows = await conn.fetch(codec.PENDING_ORDERS_SQL)
            line_rows = await conn.fetch(codec.PENDING_LINES_SQL)
            bought = [(int(r[0]), str(r[1]), int(r[2])) for r in await conn.fetch(codec.BOUGHT_SQL)]
            maxima = await conn.fetchrow(codec.MAXIMA_SQL)
            leases = [
                (int(r[0]), int(r[1]), int(r[2]), int(r[3]))
                for r in await conn.fetch(stock_leases.LEASES_SQL)
            ]
            loaded = {
                kind.name: kind.snapshot([await conn.fetch(sql) for sql in kind.loads])
                for kind in PARTS
            }
        assert maxima is not None
        return Snapshot(
            warehouses=warehouses,
            regions=regions,
            skus=skus,
            stock=stock,
            pending_orders=codec.assemble_orders(order_rows, line_rows),
            max_order_id=int(maxima[0]),
            max_reservation=int(maxima[1]),
            bought=bought,
            parts=loaded,
            stock_leases=leases,
        )

    async def list_returns(
        self, *, buyer: str, merchant: str, status: str, after: int, limit: int
    ) -> list[Return]:
        sql = returns.LIST_RETURNS_SQL.format("$1", "$2", "$3", "$4", "$5")
        rows = await self._p().fetch(sql, after, buyer, merchant, status, limit)
        return [returns.return_from_row(r) for r in rows]

    async def delivered_orders(self, buyer: str) -> int:
        sql = codec.DELIVERED_ORDERS_SQL.format("$1")
        return int(await self._p().fetchval(sql, buyer))

    async def tracking_events(self, order_id: int) -> list[TrackingEvent]:
        rows = await self._p().fetch(logistics.TRACKING_EVENTS_OF_ORDER_SQL.format("$1"), order_id)
        return [logistics.tracking_event_from_row(r) for r in rows]

    async def webhook_event_seen(self, provider: str, event_id: str) -> bool:
        row = await self._p().fetchrow(
            "SELECT 1 FROM webhook_events WHERE provider = $1 AND event_id = $2",
            provider,
            event_id,
        )
        return row is not None

    async def webhook_endpoints(self) -> list[WebhookEndpoint]:
        return [events.endpoint_from_row(r) for r in await self._p().fetch(events.ENDPOINTS_SQL)]

    async def pending_deliveries(self, endpoint_id: int, limit: int) -> list[Delivery]:
        sql = events.PENDING_SQL.format("$1", "$2")
        rows = await self._p().fetch(sql, endpoint_id, codec.page_limit(limit))
        return [events.delivery_from_row(r) for r in rows]

    async def deliveries(
        self, endpoint_id: int, before_id: int | None, limit: int
    ) -> list[Delivery]:
        before = codec.MAX_BIGINT if before_id is None else before_id
        sql = events.DELIVERIES_SQL.format("$1", "$2", "$3")
        rows = await self._p().fetch(sql, endpoint_id, before, codec.page_limit(limit))
        return [events.delivery_from_row(r) for r in rows]

    async def risk_state(self) -> RiskState:
        async with (
            self._p().acquire() as conn,
            conn.transaction(isolation="repeatable_read", readonly=True),
        ):
            return risk.state_from_rows([await conn.fetch(sql) for sql in RISK.loads])

    async def risk_version(self) -> int:
        return int(await self._p().fetchval(risk.VERSION_SQL))

    async def risk_audit(self, owner: str, before_id: int | None, limit: int) -> list[AuditEntry]:
        before = codec.MAX_BIGINT if before_id is None else before_id
        sql = risk.AUDIT_SQL.format("$1", "$2", "$3")
        rows = await self._p().fetch(sql, before, owner, codec.page_limit(limit))
        return [risk.audit_from_row(r) for r in rows]

    async def risk_decision(self, order_id: int) -> Decision | None:
        # An allowed order's (most decisions) first: one read for them.
        row = await self._p().fetchrow(decisions.ORDER_RISK_SQL.format("$1"), order_id)
        if row is not None:
            return decisions.decision_from_order(row)
        row = await self._p().fetchrow(decisions.DECISION_SQL.format("$1"), order_id)
        return None if row is None else decisions.decision_from_row(row)

    async def open_reviews(
        self, merchant: str, before_id: int | None, limit: int
    ) -> list[Decision]:
        before = codec.MAX_BIGINT if before_id is None else before_id
        sql = decisions.OPEN_SQL.format("$1", "$2", "$3")
        rows = await self._p().fetch(sql, before, merchant, codec.page_limit(limit))
        return [decisions.decision_from_row(r) for r in rows]

    async def review_labels(self, after_id: int, limit: int) -> list[Label]:
        sql = decisions.LABELS_SQL.format("$1", "$2")
        rows = await self._p().fetch(sql, after_id, codec.page_limit(limit))
        return [decisions.label_from_row(r) for r in rows]

    async def fraud_report(self, order_id: int) -> FraudReport | None:
        row = await self._p().fetchrow(fraud.REPORT_SQL.format("$1"), order_id)
        return None if row is None else fraud.report_from_row(row)

    async def get_order(self, order_id: int) -> Order | None:
        async with self._p().acquire() as conn:
            orders = await _orders_with_lines(
                conn, await conn.fetch(f"{_SELECT_ORDER} WHERE id = $1", order_id)
            )
        return orders[0] if orders else None

    async def get_orders(self, order_ids: list[int]) -> dict[int, Order]:
        ids = list(dict.fromkeys(order_ids))
        if not ids:
            return {}
        async with self._p().acquire() as conn:
            rows = await conn.fetch(f"{_SELECT_ORDER} WHERE id = ANY($1::bigint[])", ids)
            orders = await _orders_with_lines(conn, rows)
        return {o.id: o for o in orders}

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
        args: tuple[object, ...]
        if merchant is not None and buyer is not None:
            sql = (
                f"{_SELECT_ORDER} WHERE buyer = $1 AND id < $2 AND EXISTS (SELECT 1 FROM"
                " order_lines l WHERE l.order_id = orders.id AND l.merchant = $3)"
                " ORDER BY id DESC LIMIT $4"
            )
            args = (buyer, before, merchant, n)
        elif merchant is not None:
            sql = (
                f"{_SELECT_ORDER} WHERE id IN (SELECT DISTINCT order_id FROM order_lines"
                " WHERE merchant = $1 AND order_id < $2 ORDER BY order_id DESC LIMIT $3)"
                " ORDER BY id DESC"
            )
            args = (merchant, before, n)
        elif buyer is not None:
            sql = f"{_SELECT_ORDER} WHERE buyer = $1 AND id < $2 ORDER BY id DESC LIMIT $3"
            args = (buyer, before, n)
        else:
            sql = f"{_SELECT_ORDER} WHERE id < $1 ORDER BY id DESC LIMIT $2"
            args = (before, n)
        async with self._p().acquire() as conn:
            return await _orders_with_lines(conn, await conn.fetch(sql, *args))

    async def get_sku(self, sku_id: int) -> Sku | None:
        row = await self._p().fetchrow(
            f"SELECT {codec.SKU_COLUMNS} FROM skus WHERE id = $1", sku_id
        )
        return None if row is None else codec.sku_from_row(row)

    async def list_skus(
        self, *, merchant: str | None = None, after_id: int = -1, limit: int = 50
    ) -> list[Sku]:
        """SKUs in ascending id after ``after_id``, of one merchant or of all."""
        n = codec.page_limit(limit)
        if merchant is None:
            rows = await self._p().fetch(
                f"SELECT {codec.SKU_COLUMNS} FROM skus WHERE id > $1 ORDER BY id LIMIT $2",
                after_id,
                n,
            )
        else:
            rows = await self._p().fetch(
                f"SELECT {codec.SKU_COLUMNS} FROM skus WHERE merchant = $1 AND id > $2"
                " ORDER BY id LIMIT $3",
                merchant,
                after_id,
                n,
            )
        return [codec.sku_from_row(r) for r in rows]

    async def get_stock(self, sku_id: int) -> list[StockRow]:
        """The SKU's stock rows, one per warehouse, by warehouse id."""
        rows = await self._p().fetch(
            f"SELECT {codec.STOCK_COLUMNS} FROM stock WHERE sku = $1 ORDER BY warehouse", sku_id
        )
        return [codec.stock_from_row(r) for r in rows]

    async def get_stocks(self, sku_ids: list[int]) -> dict[int, list[StockRow]]:
        """The SKUs' stock rows in one query."""
        rows = await self._p().fetch(
            f"SELECT {codec.STOCK_COLUMNS} FROM stock WHERE sku = ANY($1::bigint[])"
            " ORDER BY sku, warehouse",
            sku_ids,
        )
        found: dict[int, list[StockRow]] = {}
        for r in rows:
            row = codec.stock_from_row(r)
            found.setdefault(row.sku, []).append(row)
        return found

    async def get_idempotency(self, principal: str, key: str) -> IdempotencyRecord | None:
        row = await self._p().fetchrow(
            f"SELECT {codec.IDEMPOTENCY_COLUMNS} FROM idempotency WHERE principal = $1 AND key = $2",
            principal,
            key,
        )
        return None if row is None else codec.idempotency_from_row(row)

    # --- purchase limits across nodes (``pyorder.storage.limit_claims``) ---------------------

    async def claim_limits(
        self,
        buyer: str,
        orders: list[tuple[int, dict[int, int]]],
        node: int,
        epoch: int,
        in_flight: list[int],
    ) -> dict[int, int]:
        skus = sorted({sku for _, lines in orders for sku in lines})
        with _db_errors("claiming purchase limits"):
            async with self._p().acquire() as conn, conn.transaction():
                keys = limit_claims.lock_keys(skus, buyer)
                await conn.execute(limit_claims.LOCK_SQL, limit_claims.LOCK_CLASS, keys)
                # Each statement below takes its own snapshot, after the locks are held.
                await conn.execute(limit_claims.DROP_DEAD_SQL, skus, buyer, node, epoch, in_flight)
                held = {
                    int(r[0]): (int(r[1]), int(r[2]))
                    for r in await conn.fetch(limit_claims.HELD_SQL, skus, buyer)
                }
                decision = limit_claims.decide(orders, held)
                columns = limit_claims.claim_columns(decision.accepted)
                if columns[0]:
                    await conn.execute(limit_claims.INSERT_SQL, *columns, buyer, node, epoch)
        return decision.refused

    async def release_limits(self, order_ids: list[int], node: int, epoch: int) -> None:
        with _db_errors("releasing purchase-limit claims"):
            await self._p().execute(limit_claims.RELEASE_SQL, order_ids, node, epoch)

    # --- delivery windows across nodes (``pyorder.storage.window_bookings``) -----------------

    async def book_window(
        self, fulfilment: Fulfilment, window_id: int, now_ms: int
    ) -> WindowBooking:
        attempt = 1
        while True:
            try:
                async with self._fenced("booking a delivery window") as conn:
                    return await window_bookings.book(conn, fulfilment, window_id, now_ms)
            except StorageError as e:
                # Two picks only wait for each other (both lock windows in id order), but a
                # commit's releases lock them in the order its node knew, which may be stale:
                # a deadlock (or a serialization failure) is retried, as commits are.
                cause = e.__cause__
                if cause is None or not is_conflict(cause) or attempt >= self.retry.max_attempts:
                    raise
                self.conflict_retries[getattr(cause, "sqlstate", "")] += 1
                await asyncio.sleep(self.retry.delay_s(attempt))
                attempt += 1

    async def delivery_windows(self, ending_after_ms: int) -> list[DeliveryWindow]:
        with _db_errors("reading the delivery windows"):
            async with self._p().acquire() as conn:
                rows = await conn.fetch(window_bookings.LIVE_WINDOWS_SQL, ending_after_ms)
        return [logistics.window_from_row(r) for r in rows]


async def _for_node(
    work: Callable[[asyncpg.Connection, int], Awaitable[T]], node: int, conn: asyncpg.Connection
) -> T:
    return await work(conn, node)


@contextlib.contextmanager
def _db_errors(what: str) -> Iterator[None]:
    """The database's failures (refused, connection gone or busy) as ``StorageError``."""
    try:
        yield
    except _DB_ERRORS as e:
        raise StorageError(f"{what} failed: {e}") from e


async def _orders_with_lines(conn: _Conn, order_rows: list[asyncpg.Record]) -> list[Order]:
    if not order_rows:
        return []
    line_rows = await conn.fetch(
        f"{_SELECT_LINES} WHERE order_id = ANY($1::bigint[]) ORDER BY order_id, line_no",
        [r[0] for r in order_rows],
    )
    return codec.assemble_orders(order_rows, line_rows)
