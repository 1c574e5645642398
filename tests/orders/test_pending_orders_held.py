"""Orders awaiting payment are held in memory only as what paying and expiring need; the order
in full comes from the staged rows until it commits, then from the store. These check that
every reader still sees the whole order: the events of orders that end (their snapshot is made
as the batch is handed to the store), ``Orders.pending_order``, and a restart. Both stores."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import orjson
import pytest

from pyorder.auth import Principal, Role, buyer_number
from pyorder.orders.input import OrderInput
from pyorder.orders.model import OrderStatus
from pyorder.platform import Config, Platform
from tests.support.postgres import fresh_postgres_database, postgres_dsn

MERCHANT = Principal(Role.MERCHANT, "acme")
BUYER = Principal(Role.BUYER, "alice")
ADDRESS = {"name": "Alice", "line1": "1 Road", "city": "X", "region": "north"}
TIMEOUT_MS = 50


@contextmanager
def config(backend: str, tmp_path: Path) -> Iterator[Config]:
    if backend == "sqlite":
        yield Config(data_dir=tmp_path, payment_timeout_ms=TIMEOUT_MS, sweep_interval_s=3600)
        return
    postgres_dsn()
    with fresh_postgres_database("held") as dsn:
        yield Config(
            data_dir=tmp_path, database=dsn, payment_timeout_ms=TIMEOUT_MS, sweep_interval_s=3600
        )


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_ended_orders_events_hold_the_whole_order(backend: str, tmp_path: Path) -> None:
    async def body(cfg: Config) -> None:
        platform = Platform(cfg)
        await platform.start()
        wh = platform.catalog.create_warehouse(MERCHANT, "west", ["north"])
        sku = platform.catalog.create_sku(
            MERCHANT, title="phone", price=500, currency="CNY", stock={wh.id: 10}
        ).sku
        endpoint = platform.webhooks.create(
            MERCHANT, "http://127.0.0.1:9/hooks", ["order.expired", "order.cancelled"], "t"
        )
        await platform.intake.durable()

        # Committed before it expires: its event is made from the stored order.
        committed = platform.orders.place(BUYER, OrderInput([(sku.id, 2)], ADDRESS))
        await platform.intake.durable()
        held = platform.orders.pending(committed.id)
        assert held is not None
        assert (held.buyer_number, held.total, held.currency) == (
            buyer_number("alice"),
            1000,
            "CNY",
        )
        assert await platform.orders.pending_order(committed.id) == committed
        time.sleep(TIMEOUT_MS / 1000 + 0.01)
        # Placed and expired in one batch: its event is made from the staged rows.
        staged = platform.orders.place(BUYER, OrderInput([(sku.id, 1)], ADDRESS))
        assert await platform.orders.pending_order(staged.id) == staged
        time.sleep(TIMEOUT_MS / 1000 + 0.01)
        assert platform.orders.expire_due() == 2
        assert platform.orders.pending(committed.id) is None
        assert platform.orders.pending(staged.id) is None
        assert await platform.orders.pending_order(staged.id) is None
        await platform.intake.durable()
        assert platform.engine.inventory.stock(sku.id).reserved == 0

        listed = await platform.store.deliveries(endpoint.id, None, 10)
        by_order = {d.order_id: d for d in listed}
        assert set(by_order) == {committed.id, staged.id}
        for order in (committed, staged):
            d = by_order[order.id]
            assert d.type == "order.expired"
            assert d.payload is not None
            data = orjson.loads(d.payload)
            assert data["previous_status"] == "pending_payment"
            obj = data["object"]
            assert (obj["id"], obj["status"], obj["buyer"]) == (str(order.id), "expired", "alice")
            assert obj["address"] == order.address
            assert obj["total"] == order.total
            stored = await platform.store.get_order(order.id)
            assert stored is not None
            assert stored.status is OrderStatus.EXPIRED
        await platform.stop()

        # A restart holds the pending ones again, as compactly, and they end the same way.
        cfg = replace(cfg, payment_timeout_ms=60_000)
        platform = Platform(cfg)
        await platform.start()
        again = platform.orders.place(BUYER, OrderInput([(sku.id, 3)], ADDRESS))
        await platform.stop()
        platform = Platform(cfg)
        await platform.start()
        assert platform.engine.book.pending_count == 1
        assert await platform.orders.pending_order(again.id) == again
        cancelled = await platform.orders.cancel(BUYER, again.id)
        assert cancelled.status is OrderStatus.CANCELLED
        assert cancelled.address == again.address
        await platform.intake.durable()
        assert platform.engine.book.pending_count == 0
        await platform.stop()

    with config(backend, tmp_path) as cfg:
        asyncio.run(body(cfg))
