"""Delivery windows booked in PostgreSQL, so that a window's capacity is shared by every
cluster node (``docs/scale-out.md``, "Delivery windows across nodes").

A solo node counts a window's ``booked`` in memory and writes the row whole with its commit
(``pyorder.logistics.storage``). Cluster nodes cannot: each would count against its own copy.
So on a cluster node **the store's rows are the count**, kept true by the statements here
alone:

* ``book`` (a pick: one transaction of the order's node, fenced like its commits) locks the
  order's row and its fulfilment row, then the old and the new window's rows in id order, takes a place of the new window with the conditional
  ``UPDATE ... SET booked = booked + 1 WHERE id = $1 AND booked < capacity``, gives the old
  window's place back, and writes the new ``window_id`` on the fulfilment (made if the order
  has none yet), all in that one transaction. A place is therefore taken exactly when a fulfilment names the window: no crash
  between the two can leak one, and however many nodes pick at once, the row lock and the
  condition never book past the capacity.
* an order that ends unpaid (cancel, expiry) or a paid order cancelled gives its place back in
  the commit that ends it (``RELEASE`` statements, staged in the logistics part), and a dead
  node's orders expired by a take-over in the take-over's transaction (``release``).
* a cluster node's commits never write ``booked`` nor a fulfilment's ``window_id``: a new
  window is inserted (``booked`` 0), never upserted, and the fulfilment upsert leaves
  ``window_id`` as stored (``StagedLogistics.shared_windows``).

So at every commit, a window's ``booked`` is the number of fulfilments that name it.

Times are ms since the Unix epoch (UTC); a window's end is compared with the picking node's
clock, as on a solo node.
"""

from dataclasses import replace

from asyncpg import Connection
from asyncpg.pool import PoolConnectionProxy

from pyorder.logistics.model import BookingOutcome, Fulfilment, WindowBooking
from pyorder.logistics.storage import (
    FULFILMENT_COLUMNS,
    RELEASE_SQL,
    WINDOW_COLUMNS,
    fulfilment_row,
    window_from_row,
)

_Conn = Connection | PoolConnectionProxy

ORDER_SQL = "SELECT status, region FROM orders WHERE id = $1 FOR SHARE"
"""The order's status and region, its row locked against an end (cancel, expiry) until the
booking commits: an order that ended first is refused, one that ends after gives the place
back in the commit that ends it."""
_VALUES = ", ".join(f"${n}" for n in range(1, len(FULFILMENT_COLUMNS.split(",")) + 1))
NEW_FULFILMENT_SQL = (
    f"INSERT INTO fulfilments ({FULFILMENT_COLUMNS}) VALUES ({_VALUES})"
    " ON CONFLICT (order_id) DO NOTHING"
)
"""The order's fulfilment row (with no window) when it has none yet: an unpaid order's first
pick."""
HELD_SQL = "SELECT window_id FROM fulfilments WHERE order_id = $1 FOR UPDATE"
"""The window the order holds now (-1, or no row: none), its fulfilment row locked until
COMMIT."""
LOCK_WINDOWS_SQL = (
    f"SELECT {WINDOW_COLUMNS} FROM delivery_windows WHERE id = ANY($1::bigint[])"
    " ORDER BY id FOR UPDATE"
)
"""The rows of the windows $1 (the old and the new), locked in id order: two picks that swap
two windows wait for each other rather than deadlock."""
TAKE_SQL = (
    "UPDATE delivery_windows SET booked = booked + 1 WHERE id = $1 AND booked < capacity"
    f" RETURNING {WINDOW_COLUMNS}"
)
"""Take a place of window $1 if it has one left: the one conditional statement that keeps a
window from being booked past its capacity."""
GIVE_SQL = (
    "UPDATE delivery_windows SET booked = booked - 1 WHERE id = $1 AND booked > 0"
    f" RETURNING {WINDOW_COLUMNS}"
)
CHOOSE_SQL = "UPDATE fulfilments SET window_id = $2, updated_ms = $3 WHERE order_id = $1"

LIVE_WINDOWS_SQL = f"SELECT {WINDOW_COLUMNS} FROM delivery_windows WHERE end_ms > $1 ORDER BY id"
"""The windows that have not ended at $1: what a cluster node mirrors for its listings."""

_HOLDERS_SQL = (
    "SELECT order_id FROM fulfilments WHERE order_id = ANY($1::bigint[]) AND window_id >= 0"
    " ORDER BY window_id, order_id"
)

ORDER_LIVE = ("pending_payment", "in_review", "paid")
"""The statuses of orders that will be delivered (unless a review rejects one), so may hold a
window."""


async def book(conn: _Conn, fulfilment: Fulfilment, window_id: int, now_ms: int) -> WindowBooking:
    """Book window ``window_id`` for the order of ``fulfilment`` (the node's row, written with
    no window if the store has none yet) inside the caller's fenced transaction, checked as a
    solo node checks a pick: the window is of the order's region and has not ended. Nothing
    else is written unless the outcome is ``BOOKED``."""
    order_id = fulfilment.order_id
    order = await conn.fetchrow(ORDER_SQL, order_id)
    if order is None:
        return WindowBooking(BookingOutcome.NO_ORDER)
    status, region = str(order[0]), str(order[1])
    if status not in ORDER_LIVE:
        return WindowBooking(BookingOutcome.ORDER_ENDED, status)
    held_row = await conn.fetchrow(HELD_SQL, order_id)
    held = -1 if held_row is None else int(held_row[0])
    ids = sorted({window_id, held} - {-1})
    locked = {w.id: w for w in map(window_from_row, await conn.fetch(LOCK_WINDOWS_SQL, ids))}
    found = locked.get(window_id)
    if found is None or found.region != region:
        return WindowBooking(BookingOutcome.UNAVAILABLE, status)
    if found.end_ms <= now_ms:
        return WindowBooking(BookingOutcome.ENDED, status, (found,))
    if held == window_id:
        return WindowBooking(BookingOutcome.HELD, status, (found,))
    taken = await conn.fetchrow(TAKE_SQL, window_id)
    if taken is None:
        return WindowBooking(BookingOutcome.FULL, status, (found,))
    if held_row is None:  # no other node writes this order's row: the fence orders them
        await conn.execute(NEW_FULFILMENT_SQL, *fulfilment_row(replace(fulfilment, window_id=-1)))
    windows = [window_from_row(taken)]
    if held in locked:
        given = await conn.fetchrow(GIVE_SQL, held)
        if given is not None:
            windows.append(window_from_row(given))
    await conn.execute(CHOOSE_SQL, order_id, window_id, now_ms)
    return WindowBooking(BookingOutcome.BOOKED, status, tuple(windows))


async def release(conn: _Conn, order_ids: list[int]) -> int:
    """Give back the places the orders ``order_ids`` hold (they ended), inside the caller's
    transaction (a take-over's expiry of a dead node's orders); returns how many. In window
    order, as a commit's releases go."""
    holders = [(int(r[0]),) for r in await conn.fetch(_HOLDERS_SQL, order_ids)]
    for statement in RELEASE_SQL:
        await conn.executemany(statement.postgres, holders)
    return len(holders)
