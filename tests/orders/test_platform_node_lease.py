"""A platform on PostgreSQL leases its node number (``docs/scale-out.md``): a second platform
on the same database is refused while the first runs, and takes over once it stops; a platform
whose lease session is cut stops being ready, claims again with a new epoch, and its orders
after that carry the new epoch's fence."""

import asyncio
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from pyorder import Address, Config, OrderInput, Platform, Principal, Role
from pyorder.intake import IntakeUnavailableError
from pyorder.storage.node_lease import NodeLease, NodeRefusedError
from tests.support.postgres import fresh_postgres_database

MERCHANT = Principal(Role.MERCHANT, "acme")
BUYER = Principal(Role.BUYER, "alice")
HOME = Address(name="Alice", line1="1 Road", city="Shanghai", region="north")


@pytest.fixture
def dsn() -> Iterator[str]:
    with fresh_postgres_database("pyorder_node") as url:
        yield url


def test_a_second_platform_on_the_database_is_refused_until_the_first_stops(
    dsn: str, tmp_path: Path
) -> None:
    async def body() -> None:
        first = Platform(Config(data_dir=tmp_path / "a", database=dsn))
        await first.start()
        wh = first.catalog.create_warehouse(MERCHANT, "west", regions=["north"])
        sku = first.catalog.create_sku(
            MERCHANT, title="tea", price=500, currency="EUR", stock={wh.id: 5}
        ).sku
        await first.intake.durable()
        second = Platform(Config(data_dir=tmp_path / "b", database=dsn))
        with pytest.raises(NodeRefusedError, match="another pyorder node serves this database"):
            await second.start()
        assert first.ready
        first.orders.place(BUYER, OrderInput([(sku.id, 2)], HOME))
        await first.intake.durable()
        await first.stop()

        await second.start()  # the first let go: the second takes over, epoch 2
        assert (second.claim.node, second.claim.epoch) == (0, 2)
        assert second.engine.inventory.stock(sku.id).available == 3
        await second.stop()

    asyncio.run(body())


def test_a_platform_whose_lease_session_is_cut_claims_again_and_goes_on(
    dsn: str, tmp_path: Path
) -> None:
    async def body() -> None:
        platform = Platform(Config(data_dir=tmp_path, database=dsn))
        await platform.start()
        lease = platform.claim
        assert isinstance(lease, NodeLease)
        wh = platform.catalog.create_warehouse(MERCHANT, "west", regions=["north"])
        sku = platform.catalog.create_sku(
            MERCHANT, title="tea", price=500, currency="EUR", stock={wh.id: 5}
        ).sku
        await platform.intake.durable()
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute("SELECT pg_terminate_backend($1)", lease.backend_pid)
        finally:
            await conn.close()
        for _ in range(100):  # the heartbeat (1 s) finds the session gone and claims again
            if lease.claims == 2 and lease.held:
                break
            await asyncio.sleep(0.05)
        assert (lease.held, lease.epoch) == (True, 2)
        # The core was built under epoch 1: its first commit is fenced off (nothing written,
        # the caller hears the intake is unavailable), the intake rebuilds under epoch 2.
        order = platform.orders.place(BUYER, OrderInput([(sku.id, 1)], HOME))
        with pytest.raises(IntakeUnavailableError, match="nothing was acknowledged"):
            await platform.intake.durable()
        for _ in range(100):
            if platform.ready:
                break
            await asyncio.sleep(0.05)
        assert platform.store.fence == (0, 2)
        assert await platform.store.get_order(order.id) is None
        kept = platform.orders.place(BUYER, OrderInput([(sku.id, 2)], HOME))
        await platform.intake.durable()
        stored = await platform.store.get_order(kept.id)
        assert stored is not None
        assert platform.engine.inventory.stock(sku.id).available == 3
        await platform.stop()

    asyncio.run(body())
