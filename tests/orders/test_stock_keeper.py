"""``StockKeeper.refill_now`` (``pyorder.cluster.stock``), against a pool in memory: a node
about to answer "out of stock" is answered by a pass that starts after it asked, never by one
that was already running (that pass looked at the row before it ran dry)."""

import asyncio
from typing import cast

import pytest

from pyorder.catalog.model import Sku, StockRow, Warehouse
from pyorder.cluster.stock import StockKeeper, StockLeaseConfig
from pyorder.engine import Engine
from pyorder.model import Snapshot
from pyorder.storage.base import NodeClaim, Store

HOT, COLD, WH = 1, 2, 0


class Pool:
    """The store's side of leases: ``grant_stock`` from a dict of free units; each call can be
    held until the test lets it go."""

    def __init__(self, free: dict[tuple[int, int], int], *, hold: bool = True) -> None:
        self.free = free
        self.hold = hold
        self.asked: list[list[tuple[int, int, int]]] = []
        self.gates: list[asyncio.Event] = []

    async def live_nodes(self) -> int:
        return 1

    async def grant_stock(
        self, wants: list[tuple[int, int, int]], nodes: int
    ) -> list[tuple[int, int, int]]:
        self.asked.append(wants)
        gate = asyncio.Event()
        if not self.hold:
            gate.set()
        self.gates.append(gate)
        await gate.wait()
        granted = []
        for sku, wh, units in wants:
            got = min(units, self.free.get((sku, wh), 0))
            if got:
                self.free[(sku, wh)] -= got
                granted.append((sku, wh, got))
        return granted


def _keeper(pool: Pool, engine: Engine) -> StockKeeper:
    return StockKeeper(
        cast(Store, pool),
        lambda: NodeClaim(0),
        lambda: engine,
        lambda: True,
        StockLeaseConfig(min_units=8, idle_s=3600),
    )


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
        keeper = _keeper(pool, engine)
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
        # Each hears what was granted since it asked: the running pass's 8 (COLD), the new
        # pass's 8 (HOT); more than 0, so each order is placed again.
        assert await asyncio.gather(*urgent) == [16, 16, 16]
        assert len(pool.asked) == 2
        assert engine.inventory.stock(HOT).available == 8

    asyncio.run(body())


def test_sales_before_urgent_passes_count_in_the_rate() -> None:
    """An urgent pass moves a row's last seen level on; what sold before it still counts in the
    next periodic look's rate (which sizes the buffer), and a row it found empty boosts it."""

    async def body() -> None:
        engine = _engine()
        engine.inventory.restock(HOT, 100, WH)
        engine.inventory.restock(COLD, 100, WH)
        keeper = _keeper(Pool({}, hold=False), engine)
        await keeper.refill(1.0)  # the first look: levels known, nothing sold yet
        engine.inventory.adjust(HOT, -40, WH)
        engine.inventory.adjust(COLD, -100, WH)  # ran dry
        await keeper.refill_now()  # the pool has none: nothing granted
        engine.inventory.adjust(HOT, -20, WH)
        await keeper.refill(1.0)
        hot, cold = keeper.stats.rows[(HOT, WH)], keeper.stats.rows[(COLD, WH)]
        assert hot.rate == pytest.approx(0.3 * 60)  # 40 before the urgent pass, 20 after
        assert cold.rate == pytest.approx(0.3 * 100)
        assert (hot.boost, cold.boost) == (0, 8)

    asyncio.run(body())
