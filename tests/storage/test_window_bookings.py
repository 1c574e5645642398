"""Delivery windows booked in PostgreSQL (``pyorder.storage.window_bookings``), store level: two
stores on one fresh database stand for two cluster nodes.

Concurrent bookings never take more places than a window has; a booking refuses as a node alone
refuses a pick, and changes nothing then; a re-pick gives the previous place back; a cluster
node's commits never write the places (new windows inserted, fulfilments' windows kept), give
places back for the orders that ended, and a take-over's expiry of a dead node's orders gives
theirs back. After each step a window's ``booked`` is the number of fulfilments naming it."""

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import pytest

from pyorder.kernel.clock import now_ms
from pyorder.logistics.model import (
    BookingOutcome,
    DeliveryWindow,
    Fulfilment,
    FulfilmentStatus,
)
from pyorder.logistics.storage import LOGISTICS
from pyorder.model import WriteBatch
from pyorder.storage import stock_leases
from pyorder.storage.base import StorageError
from pyorder.storage.postgres import PostgresStore
from tests.support.postgres import fresh_postgres_database

HOUR_MS = 3_600_000
NODE = 7
"""The node number in the test orders' ids (as a dead node's, for the take-over's expiry)."""


@pytest.fixture
def dsn() -> Iterator[str]:
    with fresh_postgres_database("pyorder_windows") as url:
        yield url


@asynccontextmanager
async def two_stores(dsn: str) -> AsyncIterator[tuple[PostgresStore, PostgresStore]]:
    stores = (PostgresStore(dsn, max_size=4), PostgresStore(dsn, max_size=4))
    for s in stores:
        await s.open()
    try:
        yield stores
    finally:
        for s in stores:
            await s.close()


def order_id(n: int) -> int:
    """The id of test order ``n``: minted by node ``NODE`` (its bits 14-21)."""
    return (1 << 30) | (NODE << 14) | n


def fulfilment(order: int) -> Fulfilment:
    """What a node holds for an order with no fulfilment row yet (``Logistics._fulfilment``)."""
    return Fulfilment(order, 1, FulfilmentStatus.UNFULFILLED, -1, 0, 0, -1, now_ms())


def window(wid: int, capacity: int, region: str = "north", end_ms: int = 0) -> DeliveryWindow:
    at = now_ms()
    return DeliveryWindow(wid, region, at, end_ms or at + HOUR_MS, capacity, 0, at)


async def open_windows(store: PostgresStore, *windows: DeliveryWindow) -> None:
    """Windows opened as a cluster node opens them: inserted by a commit."""
    batch = WriteBatch()
    part = batch.part(LOGISTICS)
    part.shared_windows = True
    part.windows.update({w.id: w for w in windows})
    await store.commit(batch)


async def place_orders(dsn: str, *numbers: int, region: str = "north") -> None:
    """Unpaid orders ``numbers`` of region ``region``, past their payment deadline."""
    at = now_ms()
    await execute(
        dsn,
        "INSERT INTO orders (id, buyer, status, currency, total, region, address, reservation,"
        " created_ms, deadline_ms, updated_ms) SELECT n, 'b', 'pending_payment', 'CNY', 100, $2,"
        " '{}'::jsonb, 0, $3::bigint, $3::bigint - 1, $3::bigint FROM unnest($1::bigint[]) AS n",
        [order_id(n) for n in numbers],
        region,
        at,
    )


async def execute(dsn: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn)
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


async def counts(dsn: str) -> dict[int, tuple[int, int]]:
    """Window id -> (booked, fulfilments naming it)."""
    rows = await execute(
        dsn,
        "SELECT w.id, w.booked, (SELECT count(*) FROM fulfilments f WHERE f.window_id = w.id)"
        " FROM delivery_windows w ORDER BY w.id",
    )
    return {int(r[0]): (int(r[1]), int(r[2])) for r in rows}


async def held(dsn: str, n: int) -> int:
    rows = await execute(dsn, "SELECT window_id FROM fulfilments WHERE order_id = $1", order_id(n))
    return int(rows[0][0]) if rows else -1


def test_concurrent_bookings_of_two_nodes_never_exceed_the_capacity(dsn: str) -> None:
    async def body() -> None:
        async with two_stores(dsn) as (a, b):
            await open_windows(a, window(1, 5))
            await place_orders(dsn, *range(14))
            bookings = await asyncio.gather(
                *(
                    (a, b)[n % 2].book_window(fulfilment(order_id(n)), 1, now_ms())
                    for n in range(14)
                )
            )
            outcomes = [x.outcome for x in bookings]
            assert outcomes.count(BookingOutcome.BOOKED) == 5
            assert outcomes.count(BookingOutcome.FULL) == 9
            assert await counts(dsn) == {1: (5, 5)}
            # Each answer carries the window as it left it: the last place taken shows it full.
            booked = sorted(x.windows[0].booked for x in bookings if x.outcome == "booked")
            assert booked == [1, 2, 3, 4, 5]
            full = next(x for x in bookings if x.outcome is BookingOutcome.FULL)
            assert (full.windows[0].booked, full.windows[0].capacity) == (5, 5)

    asyncio.run(body())


def test_a_booking_refuses_as_a_pick_does_and_a_re_pick_gives_the_place_back(dsn: str) -> None:
    async def body() -> None:
        async with two_stores(dsn) as (a, _):
            ended_at = now_ms() - 1
            await open_windows(
                a,
                window(1, 1),
                window(2, 2),
                window(3, 1, region="south"),
                DeliveryWindow(4, "north", ended_at - HOUR_MS, ended_at, 5, 0, ended_at - HOUR_MS),
            )
            await place_orders(dsn, 1, 2, 3)

            async def book(n: int, wid: int) -> BookingOutcome:
                return (await a.book_window(fulfilment(order_id(n)), wid, now_ms())).outcome

            assert await book(1, 1) is BookingOutcome.BOOKED
            assert await book(2, 1) is BookingOutcome.FULL
            assert await book(1, 1) is BookingOutcome.HELD  # again: nothing changes
            assert await counts(dsn) == {1: (1, 1), 2: (0, 0), 3: (0, 0), 4: (0, 0)}
            # Refused, nothing written: another region's window, an ended one, none such.
            assert await book(2, 3) is BookingOutcome.UNAVAILABLE
            assert await book(2, 4) is BookingOutcome.ENDED
            assert await book(2, 99) is BookingOutcome.UNAVAILABLE
            assert await held(dsn, 2) == -1
            # A re-pick: window 1's place is given back in the same transaction...
            moved = await a.book_window(fulfilment(order_id(1)), 2, now_ms())
            assert moved.outcome is BookingOutcome.BOOKED
            assert {w.id: w.booked for w in moved.windows} == {2: 1, 1: 0}
            assert await held(dsn, 1) == 2
            assert await counts(dsn) == {1: (0, 0), 2: (1, 1), 3: (0, 0), 4: (0, 0)}
            # ... so the order refused before gets it now.
            assert await book(2, 1) is BookingOutcome.BOOKED
            # A full window refuses a re-pick and the order keeps its place.
            assert await book(1, 1) is BookingOutcome.FULL
            assert await held(dsn, 1) == 2
            # An order that ended (or is not stored) books nothing.
            await execute(dsn, "UPDATE orders SET status = 'cancelled' WHERE id = $1", order_id(3))
            ended = await a.book_window(fulfilment(order_id(3)), 2, now_ms())
            assert (ended.outcome, ended.status) == (BookingOutcome.ORDER_ENDED, "cancelled")
            assert await book(50, 2) is BookingOutcome.NO_ORDER
            assert await counts(dsn) == {1: (1, 1), 2: (1, 1), 3: (0, 0), 4: (0, 0)}

    asyncio.run(body())


def test_a_cluster_nodes_commits_never_write_the_places(dsn: str) -> None:
    async def body() -> None:
        async with two_stores(dsn) as (a, _):
            await open_windows(a, window(1, 3))
            await place_orders(dsn, 1, 2)
            for n in (1, 2):
                booked = await a.book_window(fulfilment(order_id(n)), 1, now_ms())
                assert booked.outcome is BookingOutcome.BOOKED
            # A commit of a fulfilment as the node held it before the booking (a payment staged
            # meanwhile) and of the window with a stale count: the store's counts stay.
            batch = WriteBatch()
            part = batch.part(LOGISTICS)
            part.shared_windows = True
            part.fulfilments[order_id(1)] = fulfilment(order_id(1))
            await a.commit(batch)
            assert await held(dsn, 1) == 1
            assert await counts(dsn) == {1: (2, 2)}
            # Order 1 ends: its commit gives the place back; a release of an order holding
            # none changes nothing.
            batch = WriteBatch()
            part = batch.part(LOGISTICS)
            part.shared_windows = True
            part.released.update({order_id(1): 1, order_id(5): -1})
            await a.commit(batch)
            assert (await held(dsn, 1), await held(dsn, 2)) == (-1, 1)
            assert await counts(dsn) == {1: (1, 1)}
            # A window is inserted, never written over: an id taken fails the commit.
            with pytest.raises(StorageError):
                await open_windows(a, window(1, 9))
            assert await counts(dsn) == {1: (1, 1)}

    asyncio.run(body())


def test_a_take_over_expiry_gives_the_dead_nodes_places_back(dsn: str) -> None:
    async def body() -> None:
        async with two_stores(dsn) as (a, _):
            await open_windows(a, window(1, 3), window(2, 3))
            await place_orders(dsn, 1, 2, 3)
            for n, wid in ((1, 1), (2, 2), (3, 1)):
                booked = await a.book_window(fulfilment(order_id(n)), wid, now_ms())
                assert booked.outcome is BookingOutcome.BOOKED
            paid = order_id(3)
            await execute(dsn, "UPDATE orders SET status = 'paid' WHERE id = $1", paid)
            conn = await asyncpg.connect(dsn)
            try:
                async with conn.transaction():
                    assert await stock_leases.expire_orphans(conn, NODE) == 2
            finally:
                await conn.close()
            assert [await held(dsn, n) for n in (1, 2, 3)] == [-1, -1, 1]
            assert await counts(dsn) == {1: (1, 1), 2: (0, 0)}

    asyncio.run(body())
