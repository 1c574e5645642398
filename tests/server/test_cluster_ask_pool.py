"""A cluster node about to answer "out of stock" asks the pool first (``StockKeeper.refill_now``,
``POST /v1/orders``): with the periodic refill switched off, every unit of the pool is still
sold through one node, and "out of stock" comes only once the pool is empty (``docs/scale-out.md``,
"Windows and bounds")."""

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from pyorder import Config, Role
from pyorder.cluster.stock import StockLeaseConfig
from pyorder.server.app import create_app
from pyorder.server.keys import ISSUER, PLATFORM
from tests.support.cluster import solo_catalogue
from tests.support.postgres import fresh_postgres_database

STOCK = 13


@pytest.fixture
def dsn() -> Iterator[str]:
    with fresh_postgres_database("pyorder_ask_pool") as url:
        yield url


def test_an_empty_lease_asks_the_pool_before_saying_out_of_stock(dsn: str, tmp_path: Path) -> None:
    async def body() -> None:
        sku = await solo_catalogue(dsn, tmp_path, STOCK)
        app = create_app(Config(data_dir=tmp_path / "node", database=dsn, cluster=True))
        keeper = app[PLATFORM].stock_keeper
        assert keeper is not None
        # No periodic pass: units come only when an order would be refused.
        keeper.config = StockLeaseConfig(interval_s=3600, min_units=4, reclaim_interval_s=3600)
        order = {
            "lines": [{"sku": sku, "quantity": 1}],
            "address": {"name": "Li", "line1": "1 Road", "city": "Hangzhou", "region": "north"},
        }
        async with TestClient(TestServer(app)) as client:
            headers = {"Authorization": f"Bearer {app[ISSUER].mint(Role.BUYER, 'b1')}"}
            for _ in range(STOCK):
                resp = await client.post("/v1/orders", json=order, headers=headers)
                assert resp.status == 201, await resp.text()
            resp = await client.post("/v1/orders", json=order, headers=headers)
            assert resp.status == 409
            assert (await resp.json())["error"]["code"] == "out_of_stock"
            # The pool was asked on demand: a few grants of at least 4, never more than it had.
            assert 1 <= keeper.stats.grants <= STOCK // 4 + 1
            assert keeper.stats.units_granted == STOCK

    asyncio.run(body())


def test_a_batchs_orders_refused_out_of_stock_ask_the_pool_and_are_placed_again(
    dsn: str, tmp_path: Path
) -> None:
    """A batch meets an empty lease: its refused orders ask the pool for the units they need
    and are placed once more, their results in their places; "out of stock" only for what the
    pool does not have."""

    async def body() -> None:
        sku = await solo_catalogue(dsn, tmp_path, 50)
        app = create_app(Config(data_dir=tmp_path / "node", database=dsn, cluster=True))
        keeper = app[PLATFORM].stock_keeper
        assert keeper is not None
        keeper.config = StockLeaseConfig(interval_s=3600, min_units=4, reclaim_interval_s=3600)
        address = {"name": "Li", "line1": "1 Road", "city": "Hangzhou", "region": "north"}

        def batch(quantities: list[int]) -> dict[str, object]:
            return {
                "orders": [
                    {"lines": [{"sku": sku, "quantity": q}], "address": address} for q in quantities
                ]
            }

        async with TestClient(TestServer(app)) as client:
            headers = {"Authorization": f"Bearer {app[ISSUER].mint(Role.BUYER, 'b1')}"}
            resp = await client.post("/v1/orders/batch", json=batch([1] * 30), headers=headers)
            assert resp.status == 200, await resp.text()
            first = await resp.json()
            assert (first["created"], first["failed"]) == (30, 0)
            assert [r["index"] for r in first["results"]] == list(range(30))
            assert len({r["order"]["id"] for r in first["results"]}) == 30
            # 20 units left in the pool: orders of 3, 1, 30 (too many), 9, 8 (the pool is out).
            resp = await client.post(
                "/v1/orders/batch", json=batch([3, 1, 30, 9, 8]), headers=headers
            )
            second = await resp.json()
            statuses = [(r["index"], r["status"]) for r in second["results"]]
            assert statuses == [(0, 201), (1, 201), (2, 409), (3, 201), (4, 409)], second
            assert {second["results"][i]["error"]["code"] for i in (2, 4)} == {"out_of_stock"}
            assert (second["created"], second["failed"]) == (3, 2)
            # The whole pool came here (the refused orders asked for 51); 7 units are left in
            # this node's lease, for the next orders.
            assert keeper.stats.units_granted == 50
            assert app[PLATFORM].engine.inventory.stock(sku).available == 50 - 30 - 13

    asyncio.run(body())
