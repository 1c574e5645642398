"""Delivery windows on cluster nodes, in process: two cluster platforms on one fresh PostgreSQL
database (``pyorder.storage.window_bookings``, ``Logistics`` on a cluster node).

Window ids of two nodes never collide; a pick books in the store, a window opened on one node
is picked for an order of the other; an order that ends while its booking is in flight keeps no
place, whichever lands first; a booking cut off mid-transaction (a crash) leaves nothing."""

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import asyncpg
import pytest

from pyorder import Address, OrderInput, Platform, Principal, Role
from pyorder.kernel.clock import now_ms
from pyorder.kernel.errors import InvalidState
from pyorder.logistics.model import Fulfilment, WindowBooking
from pyorder.logistics.service import WindowFull
from pyorder.storage import window_bookings
from pyorder.storage.base import StorageError
from tests.support.cluster import solo_catalogue, two_nodes
from tests.support.postgres import fresh_postgres_database

HOME = Address(name="Alice", line1="1 Road", city="Shanghai", region="north")
ALICE = Principal(Role.BUYER, "alice")
ADMIN = Principal(Role.ADMIN, "ops")
HOUR_MS = 3_600_000


@pytest.fixture
def dsn() -> Iterator[str]:
    with fresh_postgres_database("pyorder_windows") as url:
        yield url


async def _order(node: Platform, sku: int) -> int:
    """An order of ALICE's taken by ``node`` once it has leased units."""
    assert node.stock_keeper is not None
    for _ in range(200):
        if node.engine.inventory.stock(sku).available > 0:
            order = await node.orders.place_checked(ALICE, OrderInput([(sku, 1)], HOME))
            await node.intake.durable()
            return order.id
        await node.stock_keeper.refill_now()
        await asyncio.sleep(0.05)
    raise AssertionError("the node never leased stock")


async def _window(node: Platform, capacity: int) -> int:
    start = now_ms() + HOUR_MS
    window = node.logistics.create_window(ADMIN, "north", start, start + HOUR_MS, capacity)
    await node.intake.durable()
    return window.id


async def _counts(dsn: str, window: int) -> tuple[int, int]:
    """(the window's booked count, the fulfilments naming it), as stored."""
    conn = await asyncpg.connect(dsn)
    try:
        row = await conn.fetchrow(
            "SELECT booked, (SELECT count(*) FROM fulfilments WHERE window_id = $1)"
            " FROM delivery_windows WHERE id = $1",
            window,
        )
    finally:
        await conn.close()
    assert row is not None
    return int(row[0]), int(row[1])


Book = Callable[[Fulfilment, int, int], Awaitable[WindowBooking]]


def _held_back(node: Platform, *, before: asyncio.Event, after: asyncio.Event) -> Any:
    """``node``'s store with its bookings held: each waits for ``before`` first, and its answer
    waits for ``after`` once the booking committed."""
    real: Book = node.store.book_window

    async def book(f: Fulfilment, window_id: int, at: int) -> WindowBooking:
        await before.wait()
        booking = await real(f, window_id, at)
        await after.wait()
        return booking

    return mock.patch.object(node.store, "book_window", book)


async def _booking_under_way(node: Platform, order: int) -> None:
    for _ in range(200):
        if order in node.logistics._picking:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the pick never reached its booking")


def test_windows_of_two_nodes_are_picked_across_them(dsn: str, tmp_path: Path) -> None:
    async def body() -> None:
        sku = await solo_catalogue(dsn, tmp_path, 100)
        async with two_nodes(dsn, tmp_path) as (a, b):
            first, second = await _window(a, 1), await _window(b, 1)
            assert (first % 256, second % 256) == (a.claim.node, b.claim.node)
            # Each node lists both (b reads the store: a's window is older than its copy).
            await b.logistics.mirror.fresh()
            for node in (a, b):
                listed = [w.id for w in await node.logistics.list_windows("north")]
                assert sorted(listed) == sorted((first, second))
            # An order of b's picks a's window, then b's: the first place is given back.
            order = await _order(b, sku)
            picked = await b.logistics.pick_window(ALICE, order, first)
            assert picked.window_id == first
            assert b.logistics.windows[first].booked == 1
            assert await _counts(dsn, first) == (1, 1)
            await b.logistics.pick_window(ALICE, order, second)
            assert (await _counts(dsn, first), await _counts(dsn, second)) == ((0, 0), (1, 1))
            # a's order gets the place given back; b's window is full for it.
            other = await _order(a, sku)
            await a.logistics.pick_window(ALICE, other, first)
            assert await _counts(dsn, first) == (1, 1)
            with pytest.raises(WindowFull, match=f"window {second} is full"):
                await a.logistics.pick_window(ALICE, other, second)

    asyncio.run(body())


@pytest.mark.parametrize("lands_first", ["the cancel", "the booking"])
def test_an_order_ended_while_booking_keeps_no_place(
    dsn: str, tmp_path: Path, lands_first: str
) -> None:
    async def body() -> None:
        sku = await solo_catalogue(dsn, tmp_path, 100)
        async with two_nodes(dsn, tmp_path) as (a, _):
            window = await _window(a, 2)
            order = await _order(a, sku)
            before, after = asyncio.Event(), asyncio.Event()
            if lands_first == "the booking":
                before.set()
            with _held_back(a, before=before, after=after):
                pick = asyncio.ensure_future(a.logistics.pick_window(ALICE, order, window))
                await _booking_under_way(a, order)
                if lands_first == "the booking":
                    for _ in range(200):  # the booking commits, its answer is held back
                        if await _counts(dsn, window) == (1, 1):
                            break
                        await asyncio.sleep(0.01)
                    assert await _counts(dsn, window) == (1, 1)
                await a.orders.cancel(ALICE, order)
                await a.intake.durable()
                before.set()
                after.set()
                with pytest.raises(InvalidState, match="will not be delivered"):
                    await pick
            assert await _counts(dsn, window) == (0, 0)
            assert a.logistics.fulfilments.get(order) is None or (
                a.logistics.fulfilments[order].window_id == -1
            )

    asyncio.run(body())


def test_a_booking_cut_off_mid_transaction_leaves_nothing(dsn: str, tmp_path: Path) -> None:
    async def body() -> None:
        sku = await solo_catalogue(dsn, tmp_path, 100)
        async with two_nodes(dsn, tmp_path) as (a, _):
            window = await _window(a, 2)
            order = await _order(a, sku)
            # The session ends right after the place was taken, before the fulfilment names
            # the window (as a node killed there): the transaction rolls back whole.
            crash = (
                "SELECT pg_terminate_backend(pg_backend_pid())"
                " WHERE $1::bigint + $2::bigint + $3::bigint IS NOT NULL"
            )
            with (
                mock.patch.object(window_bookings, "CHOOSE_SQL", crash),
                pytest.raises(StorageError, match=r"connection is closed|terminat"),
            ):
                await a.logistics.pick_window(ALICE, order, window)
            assert await _counts(dsn, window) == (0, 0)
            # The retry books it once.
            await a.logistics.pick_window(ALICE, order, window)
            assert await _counts(dsn, window) == (1, 1)

    asyncio.run(body())
