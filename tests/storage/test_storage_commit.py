"""commit(): every record type round-trips; a batch is all or nothing; status changes apply only
from the expected status; stock deltas aggregate; load() rebuilds exactly what the core needs."""

import asyncio
import time

import pytest

from pyorder.catalog.model import Sku, StockRow, Warehouse
from pyorder.model import WriteBatch
from pyorder.orders.model import OrderStatus, StatusChange
from pyorder.storage.base import StorageError, Store
from pyorder.storage.postgres import COPY_THRESHOLD

from .backends import Backend
from .records import ON_HAND, catalog, idem, line, order

PENDING = OrderStatus.PENDING_PAYMENT
PAID = OrderStatus.PAID
EXPIRED = OrderStatus.EXPIRED


def test_every_record_type_round_trips(store: Backend) -> None:
    async def body(s: Store) -> None:
        cat = catalog()
        await s.commit(cat)
        multi = order(10, line(1, 2), line(0, 1, warehouse=1), line(3, 5), buyer="b-ä")
        batch = WriteBatch(orders=[multi, order(11, status=PAID)], idempotency=[idem("k1")])
        batch.add_delta(1, 0, 0, 2, 0)
        await s.commit(batch)

        assert await s.get_order(10) == multi
        assert await s.get_order(11) == order(11, status=PAID)
        assert await s.get_order(12) is None
        found = await s.get_orders([11, 12, 10, 11])
        assert found == {10: multi, 11: order(11, status=PAID)}
        assert await s.get_orders([]) == {}
        assert await s.get_idempotency("buyer-1", "k1") == idem("k1")
        assert await s.get_idempotency("buyer-1", "k2") is None
        assert await s.get_idempotency("buyer-2", "k1") is None
        for sku in cat.skus:
            assert await s.get_sku(sku.id) == sku
        assert await s.get_sku(99) is None
        assert await s.get_stock(1) == [
            StockRow(1, 0, ON_HAND, 2, 0),
            StockRow(1, 1, ON_HAND, 0, 0),
        ]
        assert await s.get_stock(99) == []

        # A large batch (PostgreSQL writes it by COPY rather than in one statement) round-trips too.
        big = [
            order(i, line(i % 4, i), line((i + 1) % 4), buyer=f"b{i}")
            for i in range(20, 20 + COPY_THRESHOLD)
        ]
        assert len(big) >= COPY_THRESHOLD
        await s.commit(WriteBatch(orders=big))
        for o in big:
            assert await s.get_order(o.id) == o

        snap = await s.load()
        assert snap.warehouses == cat.warehouses
        assert snap.regions == cat.regions
        assert snap.skus == cat.skus
        assert len(snap.stock) == len(cat.stock_rows)
        assert snap.pending_orders == [multi, *big]

    store.run(body)


def test_warehouses_and_skus_upsert_and_a_region_replaces_its_list(store: Backend) -> None:
    async def body(s: Store) -> None:
        await s.commit(catalog(n_warehouses=3))
        renamed = Warehouse(1, "renamed", "merchant-x")
        repriced = Sku(2, "m-alpha", "new title", 999, "CNY", limit_per_buyer=2, created_ms=5)
        await s.commit(
            WriteBatch(warehouses=[renamed], skus=[repriced], regions={"east": [2, 0], "west": [1]})
        )
        snap = await s.load()
        assert snap.warehouses[1] == renamed
        assert await s.get_sku(2) == repriced
        assert snap.regions == {"east": [2, 0], "west": [1]}

    store.run(body)


def test_a_failing_batch_leaves_nothing_and_the_store_goes_on(store: Backend) -> None:
    async def body(s: Store) -> None:
        await s.commit(catalog())
        await s.commit(WriteBatch(orders=[order(1)], idempotency=[idem("k1")]))
        before = await s.load()

        bad = WriteBatch(
            warehouses=[Warehouse(7, "new", "admin")],
            skus=[Sku(7, "m-alpha", "new", 1, "CNY")],
            stock_rows=[StockRow(7, 7, 5, 0, 0)],
            orders=[order(2), order(1)],  # order 1 exists: the primary key fails the batch
            status_changes=[StatusChange(1, PENDING, PAID, 99)],
            idempotency=[idem("k2")],
        )
        bad.add_delta(0, 0, 0, 1, 0)
        with pytest.raises(StorageError):
            await s.commit(bad)
        s.resume()
        assert await s.load() == before
        assert await s.get_order(2) is None
        assert await s.get_idempotency("buyer-1", "k2") is None

        big_bad = WriteBatch(orders=[order(i) for i in range(100, 100 + COPY_THRESHOLD)])
        big_bad.orders.append(order(1))
        with pytest.raises(StorageError):
            await s.commit(big_bad)
        s.resume()
        assert await s.load() == before

        # A key stored already never fails a batch (two nodes may have run the same key; the
        # batch's other orders are unrelated): the first response stays, the rest commits.
        dup_key = WriteBatch(orders=[order(3)], idempotency=[idem("k1", created_ms=5)])
        await s.commit(dup_key)
        assert await s.get_order(3) == order(3)
        assert await s.get_idempotency("buyer-1", "k1") == idem("k1")

        missing_row = WriteBatch(orders=[order(4)])
        missing_row.add_delta(0, 5, 0, 1, 0)  # warehouse 5 holds no stock row of SKU 0
        with pytest.raises(StorageError, match="no stock row"):
            await s.commit(missing_row)
        s.resume()
        assert await s.get_order(4) is None

        await s.commit(WriteBatch(orders=[order(2)]))  # the store still works
        assert await s.get_order(2) == order(2)

    store.run(body)


def test_status_changes_apply_only_from_the_expected_status(store: Backend) -> None:
    async def body(s: Store) -> None:
        await s.commit(catalog())
        await s.commit(WriteBatch(orders=[order(1), order(2)]))
        await s.commit(
            WriteBatch(
                status_changes=[
                    StatusChange(1, PENDING, PAID, 500),
                    StatusChange(1, PENDING, EXPIRED, 600),  # too late: already paid
                    StatusChange(2, PAID, EXPIRED, 700),  # 2 is not paid: no change
                    StatusChange(404, PENDING, PAID, 800),  # no such order: no change
                ]
            )
        )
        one, two = await s.get_order(1), await s.get_order(2)
        assert one is not None
        assert two is not None
        assert (one.status, one.updated_ms) == (PAID, 500)
        assert (two.status, two.updated_ms) == (PENDING, order(2).updated_ms)

        # An order created and paid in the same batch ends paid.
        await s.commit(
            WriteBatch(orders=[order(3)], status_changes=[StatusChange(3, PENDING, PAID, 900)])
        )
        three = await s.get_order(3)
        assert three is not None
        assert three.status == PAID

    store.run(body)


def test_stock_deltas_aggregate_within_and_across_batches(store: Backend) -> None:
    async def body(s: Store) -> None:
        await s.commit(catalog())
        batch = WriteBatch()
        for _ in range(5):
            batch.add_delta(0, 0, 0, 1, 0)  # five reservations
        batch.add_delta(0, 0, 0, -2, 2)  # two of them paid
        batch.add_delta(0, 1, 10, 0, 0)  # restock in warehouse 1
        assert len(batch.stock_deltas) == 2
        await s.commit(batch)
        again = WriteBatch()
        again.add_delta(0, 0, -1, -1, 0)  # one released and written off
        await s.commit(again)
        assert await s.get_stock(0) == [
            StockRow(0, 0, ON_HAND - 1, 2, 2),
            StockRow(0, 1, ON_HAND + 10, 0, 0),
        ]

    store.run(body)


def test_load_returns_exactly_the_pending_orders_and_the_maxima(store: Backend) -> None:
    async def body(s: Store) -> None:
        empty = await s.load()
        assert (empty.max_order_id, empty.max_reservation) == (0, 0)
        assert empty.pending_orders == []
        assert empty.warehouses == []
        assert empty.bought == []

        await s.commit(catalog(limit_per_buyer=3))
        pending = [order(i, line(1), line(2, 3), reservation=i * 10) for i in (5, 2, 9)]
        paid = order(12, line(1, 2), line(2), status=PAID, reservation=500, buyer="b2")
        await s.commit(WriteBatch(orders=[*pending, paid, order(7, reservation=70)]))
        await s.commit(
            WriteBatch(
                status_changes=[
                    StatusChange(7, PENDING, EXPIRED, 1),
                    StatusChange(9, PENDING, PAID, 1),
                ]
            )
        )
        snap = await s.load()
        assert snap.pending_orders == sorted(pending[:2], key=lambda o: o.id)
        assert snap.max_order_id == 12
        # Only pending orders' reservations count (resolved ones are gone from the core):
        # pending are 5 and 2, reservations 50 and 20.
        assert snap.max_reservation == 50
        # Units bought in paid orders, per (sku, buyer): order 9 (buyer-1) and 12 (b2).
        assert sorted(snap.bought) == [
            (1, "b2", 2),
            (1, "buyer-1", 1),
            (2, "b2", 1),
            (2, "buyer-1", 3),
        ]

    store.run(body)


def test_commit_does_not_block_the_event_loop(store: Backend) -> None:
    async def body(s: Store) -> None:
        await s.commit(catalog())
        big = WriteBatch(orders=[order(i) for i in range(1, 20_001)])
        ticks = 0
        done = False

        async def ticker() -> None:
            nonlocal ticks
            while not done:
                ticks += 1
                await asyncio.sleep(0.001)

        task = asyncio.create_task(ticker())
        t0 = time.perf_counter()
        await s.commit(big)
        elapsed = time.perf_counter() - t0
        done = True
        await task
        # The loop kept turning during the commit (a blocked loop would tick once or twice).
        assert ticks >= min(3, int(elapsed * 200)), (ticks, elapsed)
        assert (await s.load()).max_order_id == 20_000

    store.run(body)


def test_a_batch_token_tells_whether_the_batch_committed(store: Backend) -> None:
    """A commit whose reply was lost is resolved by its token (``Store.committed``)."""

    async def scenario(s: Store) -> tuple[bool, bool]:
        batch = WriteBatch(token=12345)
        batch.warehouses.append(Warehouse(0, "w", "admin:root"))
        await s.commit(batch)
        return await s.committed(12345), await s.committed(54321)

    assert store.run(scenario) == (True, False)


def test_after_a_failed_batch_nothing_is_written_until_resume(store: Backend) -> None:
    """A store that takes several batches in flight writes none handed over after a failed
    one until ``resume()``: they were decided on top of it (the database stays a prefix)."""

    async def body(s: Store) -> None:
        await s.commit(catalog())
        await s.commit(WriteBatch(orders=[order(1)]))
        bad = WriteBatch(orders=[order(1)])  # the primary key fails it
        after = WriteBatch(orders=[order(2)])
        results = await asyncio.gather(s.commit(bad), s.commit(after), return_exceptions=True)
        assert isinstance(results[0], StorageError)
        if s.pipeline_depth > 1:
            assert isinstance(results[1], StorageError)
            assert "earlier batch failed" in str(results[1])
            assert await s.get_order(2) is None
            s.resume()
            await s.commit(after)
        assert await s.get_order(2) == order(2)

    store.run(body)


def test_get_orders_reads_more_than_one_statements_worth(store: Backend) -> None:
    """More ids than SQLite takes parameters in one ``IN`` list at once (it reads in chunks)."""

    async def body(s: Store) -> None:
        await s.commit(catalog())
        placed = [order(i) for i in range(100, 1300)]
        await s.commit(WriteBatch(orders=placed))
        found = await s.get_orders([o.id for o in reversed(placed)] + [5, 99_999])
        assert found == {o.id: o for o in placed}

    store.run(body)
