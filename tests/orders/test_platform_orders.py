"""The embedded Python API: a ``Platform`` on its SQLite default, orders placed from Python.

The HTTP server is one user of ``Platform``; an application can embed it directly. This runs
the same path as the server (the Rust order book, the group commit, the store) without HTTP.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from pyorder.auth import Principal, Role
from pyorder.kernel.errors import InvalidInput, OutOfStock
from pyorder.orders.input import OrderInput, UnknownRegion
from pyorder.orders.model import OrderStatus
from pyorder.platform import Config, Platform

MERCHANT = Principal(Role.MERCHANT, "acme")
BUYER = Principal(Role.BUYER, "alice")
ADDRESS = {"name": "Alice", "line1": "1 Road", "city": "X", "region": "north"}


def test_place_read_cancel_and_restart(tmp_path: Path) -> None:
    async def body() -> None:
        platform = Platform(Config(data_dir=tmp_path))
        await platform.start()
        wh = platform.catalog.create_warehouse(MERCHANT, "west", ["north"])
        sku = platform.catalog.create_sku(
            MERCHANT, title="phone", price=99_900, currency="CNY", stock={wh.id: 2}
        ).sku
        await platform.intake.durable()

        order = platform.orders.place(BUYER, OrderInput([(sku.id, 2)], ADDRESS))
        assert order.status is OrderStatus.PENDING_PAYMENT
        assert order.total == 2 * 99_900
        assert [(li.sku, li.warehouse, li.quantity) for li in order.lines] == [(sku.id, wh.id, 2)]
        assert order.address["country"] == "CN"
        await platform.intake.durable()
        assert await platform.orders.get(BUYER, order.id) == order

        with pytest.raises(OutOfStock) as refused:
            platform.orders.place(BUYER, OrderInput([(sku.id, 1)], ADDRESS))
        assert refused.value.details == {"sku": sku.id}
        with pytest.raises(UnknownRegion):
            platform.orders.place(BUYER, OrderInput([(sku.id, 1)], {**ADDRESS, "region": "mars"}))
        with pytest.raises(InvalidInput):
            platform.orders.place(BUYER, OrderInput([(sku.id, 0)], ADDRESS))
        await platform.stop()

        # A restart rebuilds the order book: the order is pending, and can be cancelled.
        platform = Platform(Config(data_dir=tmp_path))
        await platform.start()
        assert await platform.orders.pending_order(order.id) == order
        held = platform.orders.pending(order.id)
        assert held is not None
        assert (held.reservation, held.total, held.currency) == (
            order.reservation,
            order.total,
            order.currency,
        )
        assert [tuple(li) for li in held.lines] == [(sku.id, wh.id, 2)]
        cancelled = await platform.orders.cancel(BUYER, order.id)
        assert cancelled.status is OrderStatus.CANCELLED
        await platform.intake.durable()
        assert platform.orders.pending(order.id) is None
        assert platform.engine.inventory.stock(sku.id).available == 2
        stored = await platform.orders.get(BUYER, order.id)
        assert stored.status is OrderStatus.CANCELLED
        await platform.stop()

    asyncio.run(body())
