"""A platform on PostgreSQL leases its node number (``docs/scale-out.md``): a second platform
on the same database is refused while the first runs, and takes over once it stops; a platform
whose lease session is cut stops being ready, claims again with a new epoch, rebuilds under it
by itself, and its orders after that carry the new epoch's fence."""

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
        # The core was built under epoch 1: the platform is not ready until it has rebuilt
        # under epoch 2, which the new claim starts by itself (no commit has to fail first).
        for _ in range(100):
            if platform.ready:
                break
            await asyncio.sleep(0.05)
        assert platform.store.fence == (0, 2)
        placed = platform.orders.place(BUYER, OrderInput([(sku.id, 1)], HOME))
        kept = platform.orders.place(BUYER, OrderInput([(sku.id, 1)], HOME))
        await platform.intake.durable()
        for order in (placed, kept):
            assert await platform.store.get_order(order.id) is not None
        # A commit under the old epoch writes nothing: the store is fenced off.
        platform.store.fence = (0, 1)
        late = platform.orders.place(BUYER, OrderInput([(sku.id, 1)], HOME))
        with pytest.raises(IntakeUnavailableError, match="nothing was acknowledged"):
            await platform.intake.durable()
        for _ in range(100):  # the intake rebuilds, under the lease's epoch
            if platform.ready:
                break
            await asyncio.sleep(0.05)
        assert platform.store.fence == (0, 2)
        assert await platform.store.get_order(late.id) is None
        assert platform.engine.inventory.stock(sku.id).available == 3
        await platform.stop()

    asyncio.run(body())
