"""Three cluster nodes (platforms) on one PostgreSQL sell one hot SKU from stock leases
(``docs/scale-out.md``): demand above stock, buyers spread over the nodes, exactly the stock
sold and not a unit more; the pool accounting holds after every step; a node that stops gives
its unsold units back and the others sell them; the catalogue is read-only on cluster nodes."""

import asyncio
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import asyncpg
import pytest

from pyorder import Address, Config, OrderInput, OutOfStock, Platform, Principal, Role
from pyorder.catalog.model import SkuView
from pyorder.catalog.service import CatalogueReadOnly
from pyorder.kernel.errors import InvalidInput
from pyorder.orders.input import UnknownRegion
from tests.support.cluster import solo_catalogue
from tests.support.postgres import fresh_postgres_database

MERCHANT = Principal(Role.MERCHANT, "acme")
HOME = Address(name="Alice", line1="1 Road", city="Shanghai", region="north")
STOCK = 60


@pytest.fixture
def dsn() -> Iterator[str]:
    with fresh_postgres_database("pyorder_cluster") as url:
        yield url


async def _books(dsn: str, sku: int) -> dict[str, int]:
    conn = await asyncpg.connect(dsn)
    try:
        # One snapshot: the nodes' keepers and commits run meanwhile.
        row = await conn.fetchrow(
            "SELECT s.on_hand, s.leased, s.reserved, s.sold,"
            " (SELECT COALESCE(SUM(units), 0) FROM stock_leases l WHERE l.sku = s.sku),"
            " (SELECT COALESCE(SUM(ol.quantity), 0) FROM order_lines ol JOIN orders o"
            "  ON o.id = ol.order_id WHERE ol.sku = s.sku AND o.status = 'pending_payment')"
            " FROM stock s WHERE s.sku = $1",
            sku,
        )
    finally:
        await conn.close()
    assert row is not None
    keys = ("on_hand", "leased", "reserved", "sold", "leases", "ordered")
    return dict(zip(keys, map(int, row), strict=True))


def _check(books: dict[str, int]) -> None:
    """The pool's accounting: nothing oversold, the leases add up, the reservations match."""
    assert books["leased"] == books["leases"]
    assert books["reserved"] == books["ordered"]
    assert books["leased"] + books["reserved"] + books["sold"] <= books["on_hand"] == STOCK


def test_three_nodes_sell_the_stock_exactly_once(dsn: str, tmp_path: Path) -> None:
    async def body() -> None:
        sku = await solo_catalogue(dsn, tmp_path, STOCK)
        nodes = [
            Platform(Config(data_dir=tmp_path / f"n{i}", database=dsn, cluster=True))
            for i in range(3)
        ]
        for node in nodes:
            await node.start()
        assert sorted(n.claim.node for n in nodes) == [0, 1, 2]
        with pytest.raises(CatalogueReadOnly):  # outside Catalog.run: no lock, no mirror
            nodes[0].catalog.create_warehouse(MERCHANT, "east", regions=["south"])

        sold, refused, buyer = 0, 0, 0
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        while sold < STOCK and loop.time() < deadline:
            for node in nodes:
                buyer += 1
                who = Principal(Role.BUYER, f"b{buyer}")
                try:
                    node.orders.place(who, OrderInput([(sku, 1)], HOME))
                except OutOfStock:
                    refused += 1  # this node's lease is empty now; a refill may come
                    continue
                await node.intake.durable()
                sold += 1
                _check(await _books(dsn, sku))
            await asyncio.sleep(0.01)
        assert sold == STOCK
        # Demand goes on: nobody can sell another unit.
        for node in nodes:
            for _ in range(3):
                with pytest.raises(OutOfStock):
                    node.orders.place(Principal(Role.BUYER, "late"), OrderInput([(sku, 1)], HOME))
                await asyncio.sleep(0.06)
        books = await _books(dsn, sku)
        _check(books)
        assert books["reserved"] == STOCK
        for node in nodes:
            await node.stop()
        assert (await _books(dsn, sku))["leased"] == 0

    asyncio.run(body())


def test_a_stopped_nodes_units_go_back_and_the_others_sell_them(dsn: str, tmp_path: Path) -> None:
    async def body() -> None:
        sku = await solo_catalogue(dsn, tmp_path, STOCK)
        first = Platform(Config(data_dir=tmp_path / "a", database=dsn, cluster=True))
        await first.start()
        for _ in range(100):  # the keeper leases a first buffer
            if first.engine.inventory.stock(sku).available:
                break
            await asyncio.sleep(0.02)
        held = first.engine.inventory.stock(sku).available
        assert held > 0
        assert (await _books(dsn, sku))["leased"] == held
        await first.stop()
        books = await _books(dsn, sku)
        assert books["leased"] == 0
        _check(books)

        second = Platform(Config(data_dir=tmp_path / "b", database=dsn, cluster=True))
        await second.start()
        sold = 0
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        while sold < STOCK and loop.time() < deadline:
            try:
                second.orders.place(Principal(Role.BUYER, f"b{sold}"), OrderInput([(sku, 1)], HOME))
            except OutOfStock:
                await asyncio.sleep(0.02)
                continue
            await second.intake.durable()
            sold += 1
        assert sold == STOCK
        _check(await _books(dsn, sku))
        await second.stop()

    asyncio.run(body())


def test_a_sku_made_on_one_node_is_sold_on_the_others_and_restocked_through_the_pool(
    dsn: str, tmp_path: Path
) -> None:
    async def body() -> None:
        await solo_catalogue(dsn, tmp_path, STOCK)
        a, b = (Platform(Config(data_dir=tmp_path / n, database=dsn, cluster=True)) for n in "ab")
        for node in (a, b):
            keeper = node.stock_keeper
            assert keeper is not None
            # An idle lease goes back soon: near sell-out the other node needs its units.
            keeper.config = replace(keeper.config, idle_s=0.3)
            await node.start()
        wh = await a.catalog.run(lambda: a.catalog.create_warehouse(MERCHANT, "east", ["south"]))
        made = await a.catalog.run(
            lambda: a.catalog.create_sku(
                MERCHANT, title="tea", price=500, currency="EUR", stock={wh.id: 4}
            )
        )
        assert made.total.on_hand == 4

        # Two SKUs made at once on both nodes get distinct ids (the catalogue lock).
        def twin(node: Platform) -> Callable[[], SkuView]:
            return lambda: node.catalog.create_sku(
                MERCHANT, title="twin", price=1, currency="EUR", stock={wh.id: 1}
            )

        twins = await asyncio.gather(*(n.catalog.run(twin(n)) for n in (a, b)))
        assert twins[0].sku.id != twins[1].sku.id
        south = Address(name="Bo", line1="2 Road", city="Wuhan", region="south")
        sku = made.sku.id

        async def sell(node: Platform, n: int, prefix: str) -> int:
            sold = 0
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 10
            while sold < n and loop.time() < deadline:
                who = Principal(Role.BUYER, f"{prefix}{sold}")
                try:  # a node mirrors the catalogue within a second
                    node.orders.place(who, OrderInput([(sku, 1)], south))
                except (OutOfStock, UnknownRegion):
                    # What the HTTP API does before it answers "out of stock": ask the pool
                    # (an idle row's units went back there and wait for demand).
                    assert node.stock_keeper is not None
                    await node.stock_keeper.refill_now()
                    await asyncio.sleep(0.05)
                    continue
                await node.intake.durable()
                sold += 1
            return sold

        assert await sell(b, 4, "s") == 4
        view = await b.catalog.adjust_pool(MERCHANT, sku, wh.id, 3)
        assert (view.total.on_hand, view.total.reserved) == (7, 4)
        assert await sell(a, 3, "r") == 3
        view = await a.catalog.pool_view(made.sku)
        assert (view.total.on_hand, view.total.reserved, view.total.available) == (7, 7, 0)
        with pytest.raises(InvalidInput, match="in the pool"):
            await a.catalog.adjust_pool(MERCHANT, sku, wh.id, -1)
        await a.stop()
        await b.stop()

    asyncio.run(body())
