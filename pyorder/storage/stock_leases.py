"""Stock leases in PostgreSQL: what a cluster node may sell, granted from the pool, given back,
and taken back from a dead node (``docs/scale-out.md``).

Per (sku, warehouse) the stock row holds ``on_hand = free + leased + reserved + sold``, with
``free = on_hand - leased - reserved - sold >= 0`` the pool. ``stock_leases(sku, warehouse,
node).units`` is what a node may still sell (its core's ``available``); their sum is
``stock.leased``. A node's commit moves units between its lease and ``reserved``/``sold``
(``PostgresStore``'s stock UPDATE and ``LEASED_DELTAS_SQL``: a reservation takes from the lease, a cancel gives back to it, a payment
moves reserved to sold), so the pool changes only by grants, returns and reclaims, each of which
locks the stock rows in (sku, warehouse) order, after the node's fence.
"""

import math
import time

from asyncpg import Connection
from asyncpg.pool import PoolConnectionProxy

from pyorder.events.storage import EXPIRED_EVENTS_SQL
from pyorder.risk.decisions import EXPIRE_OPEN_SQL
from pyorder.storage import window_bookings
from pyorder.storage.codec import HELD
from pyorder.storage.node_lease import DB_NOW_MS

_Conn = Connection | PoolConnectionProxy

LEASED_DELTAS_SQL = (
    "UPDATE stock_leases AS l SET units = l.units + d.on_hand - d.reserved - d.sold,"
    " updated_ms = $7"
    " FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::bigint[], $5::bigint[])"
    " AS d(on_hand, reserved, sold, sku, warehouse)"
    " WHERE l.sku = d.sku AND l.warehouse = d.warehouse AND l.node = $6"
    " AND d.on_hand - d.reserved - d.sold <> 0"
)
"""The node's lease rows after its commit (same arrays as the stock UPDATE, plus node and
time). A node sells only what it was granted, so its row exists (rows are zeroed, never
deleted), and ``units >= 0`` holds; the caller checks that every changed row was found."""

LEASES_SQL = "SELECT sku, warehouse, node, units FROM stock_leases WHERE units <> 0"
HOLDERS_SQL = "SELECT DISTINCT node FROM stock_leases WHERE units > 0"

_LOCK_FREE = (
    "SELECT s.sku, s.warehouse, s.on_hand - s.leased - s.reserved - s.sold FROM stock s"
    " JOIN unnest($1::bigint[], $2::bigint[]) AS w(sku, warehouse)"
    " ON s.sku = w.sku AND s.warehouse = w.warehouse"
    " ORDER BY s.sku, s.warehouse FOR UPDATE OF s"
)
_ADD_LEASED = (
    "UPDATE stock AS s SET leased = s.leased + d.units"
    " FROM unnest($1::bigint[], $2::bigint[], $3::bigint[]) AS d(sku, warehouse, units)"
    " WHERE s.sku = d.sku AND s.warehouse = d.warehouse"
)
_ADD_UNITS = (
    "INSERT INTO stock_leases (sku, warehouse, node, units, updated_ms)"
    " SELECT d.sku, d.warehouse, $4, d.units, $5"
    " FROM unnest($1::bigint[], $2::bigint[], $3::bigint[]) AS d(sku, warehouse, units)"
    " ON CONFLICT (sku, warehouse, node) DO UPDATE"
    " SET units = stock_leases.units + excluded.units, updated_ms = excluded.updated_ms"
)
_TAKE_UNITS = (
    "UPDATE stock_leases AS l SET units = l.units + d.units, updated_ms = $5"
    " FROM unnest($1::bigint[], $2::bigint[], $3::bigint[]) AS d(sku, warehouse, units)"
    " WHERE l.sku = d.sku AND l.warehouse = d.warehouse AND l.node = $4"
)
_HELD_BY = (
    "SELECT sku, warehouse, units FROM stock_leases WHERE node = $1 AND units > 0"
    " ORDER BY sku, warehouse"
)
_ZERO = "UPDATE stock_leases SET units = 0, updated_ms = $2 WHERE node = $1 AND units > 0"
_ZERO_ROWS = (
    "INSERT INTO stock_leases (sku, warehouse, node, units, updated_ms)"
    " SELECT sku, warehouse, $1, 0, $2 FROM stock ON CONFLICT (sku, warehouse, node) DO NOTHING"
)
ADOPTABLE_SQL = f"SELECT node FROM node_leases WHERE seen_ms < {DB_NOW_MS} - $1"
"""Numbers last seen (a commit, a heartbeat) more than $1 ms ago; those no live session holds
are dead nodes' (``PostgresStore.adopt_dead``)."""

ORPHANS_SQL = f"SELECT DISTINCT (id >> 14) & 255 FROM orders WHERE {HELD} AND deadline_ms < $1"
"""The node numbers of held orders (unpaid, or in review) past their deadline (scanned through
the small partial index ``orders_pending``); those of live nodes are their own to expire."""
_EXPIRE_OF_NODE = (
    "UPDATE orders SET status = 'expired', updated_ms = $2"
    f" WHERE {HELD} AND deadline_ms < $2 AND (id >> 14) & 255 = $1"
    " RETURNING id"
)
_LINES_OF = (
    "SELECT sku, warehouse, SUM(quantity) FROM order_lines WHERE order_id = ANY($1::bigint[])"
    " GROUP BY sku, warehouse ORDER BY sku, warehouse"
)
_RELEASE = (
    "UPDATE stock AS s SET reserved = s.reserved - d.units"
    " FROM unnest($1::bigint[], $2::bigint[], $3::bigint[]) AS d(sku, warehouse, units)"
    " WHERE s.sku = d.sku AND s.warehouse = d.warehouse"
)

Grant = tuple[int, int, int]
"""(sku, warehouse, units)."""


def share(want: int, free: int, nodes: int) -> int:
    """Units to grant: what was asked for, but near sell-out no more than an even share of
    what is left among the live nodes (at least 1, while any is left)."""
    if free <= 0 or want <= 0:
        return 0
    return min(want, free, max(1, math.ceil(free / max(1, nodes))))


async def grant(conn: _Conn, node: int, wants: list[Grant], nodes: int) -> list[Grant]:
    """Lease units to ``node`` from the pool, inside the caller's (fenced) transaction;
    returns what was granted (only rows with units > 0)."""
    if not wants:
        return []
    asked = {(sku, wh): units for sku, wh, units in wants}
    keys = sorted(asked)
    rows = await conn.fetch(_LOCK_FREE, [k[0] for k in keys], [k[1] for k in keys])
    granted = [
        (int(r[0]), int(r[1]), g)
        for r in rows
        if (g := share(asked[(int(r[0]), int(r[1]))], int(r[2]), nodes)) > 0
    ]
    if granted:
        await _move(conn, node, granted, sign=1)
    return granted


async def give_back(conn: _Conn, node: int) -> list[Grant]:
    """Return every unit ``node`` holds to the pool (a graceful stop, or a dead node's lease
    taken back), inside the caller's transaction; returns what was returned."""
    held = [(int(r[0]), int(r[1]), int(r[2])) for r in await conn.fetch(_HELD_BY, node)]
    if held:
        keys = sorted((sku, wh) for sku, wh, _ in held)
        await conn.fetch(_LOCK_FREE, [k[0] for k in keys], [k[1] for k in keys])
        await _move(conn, node, held, sign=-1)
    return held


async def adopt(conn: _Conn, dead: int, adopter: int) -> list[Grant]:
    """Make dead node ``dead``'s orders ``adopter``'s (inside the adoption's transaction): the
    units of its lease go back to the pool, and ``adopter`` gets a lease row (of 0 units) for
    every stock row, since its commits move units of the adopted orders (an expiry, a return
    restocked) in and out of its own lease, and a commit's rows must exist
    (``LEASED_DELTAS_SQL``). Returns what went back to the pool."""
    back = await give_back(conn, dead)
    await conn.execute(_ZERO_ROWS, adopter, time.time_ns() // 1_000_000)
    return back


async def return_units(conn: _Conn, node: int, rows: list[Grant]) -> None:
    """Return ``rows`` (units a node took out of its core) from its lease to the pool, inside
    the caller's (fenced) transaction."""
    keys = sorted((sku, wh) for sku, wh, _ in rows)
    await conn.fetch(_LOCK_FREE, [k[0] for k in keys], [k[1] for k in keys])
    skus, whs, units = [r[0] for r in rows], [r[1] for r in rows], [-r[2] for r in rows]
    await conn.execute(_ADD_LEASED, skus, whs, units)
    # An UPDATE, not the upsert of grants: PostgreSQL checks ``units >= 0`` on the row an
    # upsert proposes to insert, before it finds the one to update.
    await conn.execute(_TAKE_UNITS, skus, whs, units, node, time.time_ns() // 1_000_000)


async def _move(conn: _Conn, node: int, rows: list[Grant], *, sign: int) -> None:
    skus, whs, units = [r[0] for r in rows], [r[1] for r in rows], [sign * r[2] for r in rows]
    now = time.time_ns() // 1_000_000
    await conn.execute(_ADD_LEASED, skus, whs, units)
    if sign > 0:
        await conn.execute(_ADD_UNITS, skus, whs, units, node, now)
    else:
        await conn.execute(_ZERO, node, now)


async def expire_orphans(conn: _Conn, node: int) -> int:
    """Expire the held orders of dead node ``node`` past their deadline (unpaid, or in review
    past the review hold: their review ``expired``), inside the caller's transaction (a
    take-over: the number's lock held, its epoch raised); their units go back to the pool, the
    delivery-window places they held are given back, and their ``order.expired`` webhook
    events are written for the leader to deliver. Returns how many orders expired."""
    now = time.time_ns() // 1_000_000
    expired = [int(r[0]) for r in await conn.fetch(_EXPIRE_OF_NODE, node, now)]
    if not expired:
        return 0
    lines = await conn.fetch(_LINES_OF, expired)
    keys = [(int(r[0]), int(r[1])) for r in lines]
    await conn.fetch(_LOCK_FREE, [k[0] for k in keys], [k[1] for k in keys])
    await conn.execute(
        _RELEASE, [k[0] for k in keys], [k[1] for k in keys], [int(r[2]) for r in lines]
    )
    # After the stock rows, as in a commit (stock, then windows): no lock-order cycle with one.
    await window_bookings.release(conn, expired)
    await conn.execute(EXPIRE_OPEN_SQL, expired, now)
    await conn.execute(EXPIRED_EVENTS_SQL, expired, now)
    return len(expired)
