"""``StockKeeper.refill_now`` (``pyorder.cluster.stock``), against a pool in memory: a node
about to answer "out of stock" is answered by a pass that starts after it asked, never by one
that was already running (that pass looked at the row before it ran dry)."""

import asyncio
from typing import cast

from pyorder.catalog.model import Sku, StockRow, Warehouse
from pyorder.cluster.stock import StockKeeper, StockLeaseConfig
from pyorder.engine import Engine
from pyorder.model import Snapshot
from pyorder.storage.base import NodeClaim, Store

HOT, COLD, WH = 1, 2, 0


class Pool:
    """The store's side of leases: ``grant_stock`` from a dict of free units; each call can be
    held until the test lets it go."""

    def __init__(self, free: dict[tuple[int, int], int]) -> None:
        self.free = free
        self.asked: list[list[tuple[int, int, int]]] = []
        self.gates: list[asyncio.Event] = []

    async def live_nodes(self) -> int:
        return 1

    async def grant_stock(
        self, wants: list[tuple[int, int, int]], nodes: int
    ) -> list[tuple[int, int, int]]:
        self.asked.append(wants)
        gate = asyncio.Event()
        self.gates.append(gate)
        await gate.wait()
        granted = []
        for sku, wh, units in wants:
            got = min(units, self.free.get((sku, wh), 0))
            if got:
                self.free[(sku, wh)] -= got
                granted.append((sku, wh, got))
        return granted


def _engine() -> Engine:
    snap = Snapshot(
        warehouses=[Warehouse(WH, "w", "m")],
        regions={"north": [WH]},
        skus=[Sku(HOT, "m", "hot", 100, "EUR"), Sku(COLD, "m", "cold", 100, "EUR")],
        stock=[StockRow(HOT, WH, 0, 0, 0), StockRow(COLD, WH, 0, 0, 0)],
        pending_orders=[],
        max_order_id=0,
        max_reservation=0,
    )
    return Engine.rebuild(snap, node=0, payment_timeout_ms=60_000)


def test_an_urgent_ask_waits_for_a_pass_that_starts_after_it() -> None:
    async def body() -> None:
        engine = _engine()
        engine.inventory.restock(HOT, 50, WH)  # HOT well stocked; COLD empty
        pool = Pool({(HOT, WH): 1000, (COLD, WH): 1000})
        keeper = StockKeeper(
            cast(Store, pool),
            lambda: NodeClaim(0),
            lambda: engine,
            lambda: True,
            StockLeaseConfig(min_units=8, idle_s=3600),
        )
        # A pass runs; it sees COLD empty and asks for it, not for HOT (50 left).
        running = asyncio.create_task(keeper.refill(0.0))
        await asyncio.sleep(0)
        assert pool.asked == [[(COLD, WH, 8)]]
        # Meanwhile HOT runs dry, and an order for it is about to be refused.
        engine.inventory.adjust(HOT, -50, WH)
        urgent = [asyncio.create_task(keeper.refill_now()) for _ in range(3)]
        await asyncio.sleep(0)
        pool.gates[0].set()
        assert await running == 8
        # The running pass did not stand in for the urgent asks: one more pass, shared by the
        # three, asks for HOT.
        for _ in range(100):
            if len(pool.gates) == 2:
                break
            await asyncio.sleep(0)
        assert pool.asked[1:] == [[(HOT, WH, 8)]]
        pool.gates[1].set()
        assert await asyncio.gather(*urgent) == [8, 8, 8]
        assert len(pool.asked) == 2
        assert engine.inventory.stock(HOT).available == 8

    asyncio.run(body())
