"""WriteBatch.placed: the Rust intake's orders (an ``OrderRows``, no Python object per order)
commit in the batch's one transaction, after ``orders`` and before ``status_changes``, and read
back exactly like orders written from Python, on both backends; a failing batch leaves none of
them."""

import asyncio
import contextlib
from dataclasses import replace

import pytest

from pyorder._core import PLACED_LINE_COLUMNS, PLACED_ORDER_COLUMNS, pg_copy_binary
from pyorder.catalog.model import StockRow
from pyorder.model import WriteBatch
from pyorder.orders.model import Order, OrderStatus, StatusChange
from pyorder.storage import codec
from pyorder.storage.base import StorageError, Store
from pyorder.storage.postgres import COPY_THRESHOLD

from .backends import Backend
from .records import ON_HAND, catalog, idem, line, order, placed

PENDING = OrderStatus.PENDING_PAYMENT
PAID = OrderStatus.PAID
CANCELLED = OrderStatus.CANCELLED

SMALL = COPY_THRESHOLD - 1
"""Below PostgreSQL's COPY threshold: one INSERT from ``unnest`` of the array literals of
``pg_array_text``, in the statement of the fence and stock UPDATE."""
LARGE = 3 * COPY_THRESHOLD
"""Binary COPY from ``pg_copy_binary``."""


def intake_orders(first_id: int, n: int) -> list[Order]:
    """``n`` pending orders as the intake takes them: one to three lines, SKUs 0..3 in
    warehouses 0 and 1, several buyers, non-ASCII text in the address and the buyer."""
    out = []
    for i in range(first_id, first_id + n):
        lines = [line(i % 4, 1 + i % 3, warehouse=i % 2)]
        if i % 3:
            lines.append(line((i + 1) % 4, 2))
        if i % 5 == 0:
            lines.append(line((i + 2) % 4, 1, warehouse=1))
        out.append(order(i, *lines, buyer=f"bü-{i % 3}", reservation=10 * i))
    return out


def reserved_by(orders: list[Order]) -> dict[tuple[int, int], int]:
    units: dict[tuple[int, int], int] = {}
    for o in orders:
        for ln in o.lines:
            units[ln.sku, ln.warehouse] = units.get((ln.sku, ln.warehouse), 0) + ln.quantity
    return units


async def stock_of(s: Store) -> dict[tuple[int, int], StockRow]:
    return {(r.sku, r.warehouse): r for sku in range(4) for r in await s.get_stock(sku)}


def test_the_writers_column_orders_are_the_codecs() -> None:
    assert (*codec.ORDER_COLUMN_NAMES, "risk_packed") == PLACED_ORDER_COLUMNS
    assert PLACED_LINE_COLUMNS == codec.LINE_COLUMN_NAMES


@pytest.mark.parametrize("n", [1, SMALL, LARGE])
def test_placed_orders_read_back_like_python_orders(store: Backend, n: int) -> None:
    orders = intake_orders(100, n)

    async def body(s: Store) -> None:
        await s.commit(catalog())
        batch = WriteBatch(placed=placed(*orders), token=777)
        assert len(batch) == n
        await s.commit(batch)

        for o in orders:
            assert await s.get_order(o.id) == o
        newest_first = sorted(orders, key=lambda o: -o.id)
        assert await s.list_orders(limit=1000) == newest_first
        buyer_1 = [o for o in newest_first if o.buyer == "bü-1"]
        assert await s.list_orders(buyer="bü-1", limit=1000) == buyer_1
        alpha = [o for o in newest_first if any(ln.merchant == "m-alpha" for ln in o.lines)]
        assert await s.list_orders(merchant="m-alpha") == alpha[:50]
        snap = await s.load()
        assert snap.pending_orders == orders
        assert snap.max_order_id == orders[-1].id
        assert snap.max_reservation == orders[-1].reservation
        # The reserved units went in with the rows (WriteBatch.all_deltas).
        units = reserved_by(orders)
        for key, row in (await stock_of(s)).items():
            assert row == StockRow(*key, on_hand=ON_HAND, reserved=units.get(key, 0), sold=0)
        assert await s.committed(777)

    store.run(body)


@pytest.mark.parametrize("n", [1, SMALL])
def test_text_in_the_array_literals_syntax_reads_back(store: Backend, n: int) -> None:
    """Below the COPY threshold PostgreSQL reads the placed rows from one array literal per
    column (``pg_array_text``): text holding the literal's own syntax (quotes, backslashes,
    braces, commas, the word NULL, spaces, nothing) is data, read back as written."""
    odd = ['a "quoted" one', "back\\slash\\", "{brace},comma", "NULL", "", " spaced ", 'ü\\"']
    orders = [
        replace(
            order(300 + i, buyer=odd[i % len(odd)] or "b"),
            address={"name": odd[i % len(odd)], "lines": [odd[(i + 1) % len(odd)], "NULL"]},
        )
        for i in range(n)
    ]

    async def body(s: Store) -> None:
        await s.commit(catalog())
        await s.commit(WriteBatch(placed=placed(*orders)))
        for o in orders:
            assert await s.get_order(o.id) == o

    store.run(body)


@pytest.mark.parametrize("n", [SMALL, LARGE])
def test_placed_orders_mix_with_python_orders_and_status_changes(store: Backend, n: int) -> None:
    """Python orders go first, then the placed ones, then status changes, which may name a
    placed order of the same batch; deltas of both kinds add up per (sku, warehouse)."""
    intake = intake_orders(200, n)
    python_paid = order(150, line(0, 2), status=PAID)
    python_pending = order(151, line(0, 1, warehouse=1))

    async def body(s: Store) -> None:
        await s.commit(catalog())
        await s.commit(WriteBatch(placed=placed(order(90, line(1, 3)))))
        batch = WriteBatch(
            orders=[python_paid, python_pending],
            placed=placed(*intake),
            status_changes=[
                StatusChange(intake[0].id, PENDING, PAID, 5_000),  # placed in this batch
                StatusChange(90, PENDING, CANCELLED, 5_001),  # placed in an earlier batch
                StatusChange(python_pending.id, PENDING, PAID, 5_002),
            ],
            idempotency=[idem("k-placed")],
        )
        batch.add_delta(0, 0, 0, 0, 2)  # python_paid: 2 sold
        batch.add_delta(0, 1, 0, 1, 0)  # python_pending: 1 reserved
        batch.add_delta(1, 0, 0, -3, 0)  # order 90 cancelled: 3 released
        await s.commit(batch)

        first = await s.get_order(intake[0].id)
        assert first is not None
        assert (first.status, first.updated_ms) == (PAID, 5_000)
        assert first.lines == intake[0].lines
        cancelled = await s.get_order(90)
        assert cancelled is not None
        assert (cancelled.status, cancelled.updated_ms) == (CANCELLED, 5_001)
        assert await s.get_order(python_paid.id) == python_paid
        paid_python = await s.get_order(python_pending.id)
        assert paid_python is not None
        assert paid_python.status == PAID
        for o in intake[1:]:
            assert await s.get_order(o.id) == o
        assert await s.get_idempotency("buyer-1", "k-placed") == idem("k-placed")

        snap = await s.load()
        assert [o.id for o in snap.pending_orders] == [o.id for o in intake[1:]]
        units = reserved_by(intake)
        units[0, 1] = units.get((0, 1), 0) + 1
        stock = await stock_of(s)
        for key, row in stock.items():
            assert (row.reserved, row.sold) == (units.get(key, 0), 2 if key == (0, 0) else 0)

    store.run(body)


@pytest.mark.parametrize("n", [SMALL, LARGE])
def test_a_failing_batch_leaves_no_placed_order(store: Backend, n: int) -> None:
    async def body(s: Store) -> None:
        await s.commit(catalog())
        await s.commit(WriteBatch(placed=placed(order(1)), idempotency=[idem("k1")]))
        before = await s.load()
        stock_before = await stock_of(s)

        # A stock delta whose (sku, warehouse) row does not exist fails the whole batch.
        missing_row = WriteBatch(
            orders=[order(2)],
            placed=placed(*intake_orders(10, n)),
            status_changes=[StatusChange(1, PENDING, PAID, 9)],
            idempotency=[idem("k2")],
            token=4242,
        )
        missing_row.add_delta(0, 5, 0, 1, 0)  # warehouse 5 holds no stock row of SKU 0
        with pytest.raises(StorageError, match="no stock row"):
            await s.commit(missing_row)
        s.resume()

        # So does a placed line of a (sku, warehouse) with no stock row: its reserved units
        # are a delta too.
        stray = WriteBatch(placed=placed(*intake_orders(10, n), order(9, line(2, warehouse=7))))
        with pytest.raises(StorageError, match="no stock row"):
            await s.commit(stray)
        s.resume()

        # A placed order whose id exists (here: after a Python order with that id).
        duplicate = WriteBatch(orders=[order(10)], placed=placed(*intake_orders(10, n)))
        with pytest.raises(StorageError):
            await s.commit(duplicate)
        s.resume()
        # ... or whose id is already stored.
        again = WriteBatch(placed=placed(*intake_orders(20, n), order(1)))
        with pytest.raises(StorageError):
            await s.commit(again)
        s.resume()

        assert await s.load() == before
        assert await stock_of(s) == stock_before
        for i in (2, 9, 10, 11, 20, 19 + n):
            assert await s.get_order(i) is None
        assert await s.get_idempotency("buyer-1", "k2") is None
        assert not await s.committed(4242)

        # The store goes on, and the same rows commit now.
        ok = WriteBatch(placed=placed(*intake_orders(10, n)), token=4243)
        await s.commit(ok)
        assert await s.committed(4243)
        assert await s.get_order(10) == intake_orders(10, 1)[0]

    store.run(body)


def test_empty_placed_rows_write_nothing(store: Backend) -> None:
    async def body(s: Store) -> None:
        await s.commit(catalog())
        empty = WriteBatch(token=55)
        assert len(empty.placed) == 0
        assert empty.all_deltas() is empty.stock_deltas
        await s.commit(empty)
        assert await s.committed(55)
        assert (await s.load()).pending_orders == []
        assert (await stock_of(s))[0, 0].reserved == 0

    store.run(body)


def test_pg_copy_binary_frames_both_tables() -> None:
    """The stream format itself is unit-tested in Rust; here, the binding's framing."""
    header = b"PGCOPY\n\xff\r\n\x00" + bytes(8)
    trailer = b"\xff\xff"
    orders, lines, decisions = pg_copy_binary(placed())
    assert orders == lines == decisions == header + trailer
    orders, lines, _ = pg_copy_binary(placed(order(1, line(0), line(1, 2))))
    assert orders.startswith(header)
    assert orders.endswith(trailer)
    assert orders[19:21] == (12).to_bytes(2, "big")  # 12 columns (risk last)
    assert lines[19:21] == (7).to_bytes(2, "big")  # 7 columns
    assert lines.count(b"m-alpha") == 1
    assert lines.count(b"m-beta") == 1


def test_copy_and_statement_commits_interleave_and_a_cancelled_copy_leaves_all_or_nothing(
    store: Backend,
) -> None:
    """On PostgreSQL a batch written by COPY commits on a thread of its own and a smaller one on
    the event loop, one at a time, in order. A COPY commit whose caller is cancelled mid-way
    ends (committed whole, or rolled back whole) before the next commit starts, and the next
    ones commit by either way."""
    if store.name != "postgres":
        pytest.skip("the COPY thread is PostgreSQL's")
    big = intake_orders(1_000, 6_000)
    then_small, then_large = intake_orders(20_000, SMALL), intake_orders(30_000, LARGE)

    async def body(s: Store) -> None:
        await s.commit(catalog())
        first_large, first_small = intake_orders(100, LARGE), intake_orders(500, SMALL)
        await s.commit(WriteBatch(placed=placed(*first_large)))
        await s.commit(WriteBatch(placed=placed(*first_small)))
        for delay in (0.0, 0.01, 0.03):
            for o in big:
                assert await s.get_order(o.id) is None
            committing = asyncio.create_task(s.commit(WriteBatch(placed=placed(*big))))
            await asyncio.sleep(delay)
            committing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await committing
            found = [await s.get_order(o.id) for o in (big[0], big[-1])]
            if found[0] is not None:  # it committed before the cancel reached it: whole
                assert found == [big[0], big[-1]]
                break
            assert found == [None, None]
        kept = [o for o in big if await s.get_order(o.id) is not None]
        assert kept in ([], big)
        await s.commit(WriteBatch(placed=placed(*then_small)))
        await s.commit(WriteBatch(placed=placed(*then_large)))
        everything = first_large + first_small + kept + then_small + then_large
        units = reserved_by(everything)
        for key, row in (await stock_of(s)).items():
            assert row.reserved == units.get(key, 0), key
        for o in (*first_large[:3], *first_small[:3], *then_small[-3:], *then_large[-3:]):
            assert await s.get_order(o.id) == o

    store.run(body)
