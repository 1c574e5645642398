"""A cluster node's share of the stock: the core sells from its leases, refilled in the
background before they run dry (``docs/scale-out.md``; the SQL is ``storage/stock_leases``).

``node_view`` turns the store's snapshot into what one node's core holds: per (sku, warehouse)
``on_hand`` is the node's leased units plus the units its own pending orders reserve (``sold``
is 0: what is sold is nobody's to sell), and only the node's own pending orders and outbox
items (the node number in their orders' IDs); no paid units per buyer, as purchase limits are
counted by the database across nodes (``pyorder.cluster.limits``). ``StockKeeper`` watches
each row's ``available`` and sales rate, asks the pool for more at a low-water mark (Meituan
Leaf's double buffer, applied to stock), adds what it gets to the core, takes dead nodes'
leases back to the pool, and gives everything back at a graceful stop.
"""

import asyncio
import logging
import math
import time
from collections import Counter
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field, replace

from pyorder.catalog.model import StockRow
from pyorder.engine import Engine
from pyorder.ids import decode_order_id
from pyorder.inventory import StockLevel
from pyorder.kernel.tasks import cancelled
from pyorder.model import Snapshot
from pyorder.orders.model import Order
from pyorder.parts import PARTS
from pyorder.storage.base import NodeClaim, StorageError, Store

log = logging.getLogger(__name__)


def node_view(snap: Snapshot, node: int, adopted: Collection[int] = ()) -> Snapshot:
    """What ``node``'s core holds of the store's snapshot (see the module doc): its lease, and
    the orders of its own number and of the dead nodes' numbers it ``adopted``."""
    numbers = frozenset((node, *adopted))

    def ours(order_id: int) -> bool:
        return decode_order_id(order_id)[1] in numbers

    mine = _unique_reservations(node, [o for o in snap.pending_orders if ours(o.id)])
    reserved: Counter[tuple[int, int]] = Counter()
    for order in mine:
        for line in order.lines:
            reserved[(line.sku, line.warehouse)] += line.quantity
    leased = {(s, w): u for s, w, n, u in snap.stock_leases if n == node}
    stock = []
    for r in snap.stock:
        key = (r.sku, r.warehouse)
        stock.append(StockRow(r.sku, r.warehouse, leased.get(key, 0) + reserved[key], 0, 0))
    # The state of this node's orders only (payments, refunds, parcels, returns, the calls owed
    # to providers and carriers): each node serves its own orders, and the others forward
    # their requests to it (``pyorder.server.forwarding``).
    parts = dict(snap.parts)
    for kind in PARTS:
        if kind.of_orders is not None and kind.name in parts:
            parts[kind.name] = kind.of_orders(parts[kind.name], ours)
    # Purchase limits: the database is the authority across nodes (``pyorder.cluster.limits``
    # claims every order of a limited SKU), and the core counts only what this node decides
    # from now on. Other nodes' paid orders as of now would go on counting here after a
    # cancel on their node had made the sale void: a refusal the database would not make.
    return replace(
        snap,
        stock=stock,
        parts=parts,
        bought=[],
        pending_orders=mine,
        max_reservation=max((o.reservation for o in mine), default=0),
    )


def _unique_reservations(node: int, orders: list[Order]) -> list[Order]:
    """``orders`` with the reservation ids of adopted nodes' orders renumbered above this
    node's own: every node numbers its reservations from 1, and one core holds each id once.
    In memory only (the stored ids stay; ``Orders.pending_order`` reads the core's)."""
    own = [o for o in orders if decode_order_id(o.id)[1] == node]
    adopted = sorted((o for o in orders if decode_order_id(o.id)[1] != node), key=lambda o: o.id)
    if not adopted:
        return orders
    base = max((o.reservation for o in own), default=0)
    return own + [replace(o, reservation=base + i) for i, o in enumerate(adopted, 1)]


@dataclass(frozen=True, slots=True)
class StockLeaseConfig:
    interval_s: float = 0.05
    """How often the keeper looks at every row."""
    min_units: int = 8
    """The smallest buffer a row is refilled to."""
    buffer_s: float = 1.0
    """A row is refilled to what it sells in this long (at its recent rate), at least
    ``min_units``; a refill is asked for once fewer than half of that are left."""
    max_units: int = 100_000
    """The largest buffer a row is refilled to (near sell-out the pool's share caps it)."""
    idle_s: float = 2.0
    """A row that sold nothing for this long gives its units back to the pool, where the
    nodes that sell it can lease them (near sell-out, an idle node's lease would otherwise hold
    the last units)."""
    exhausted_s: float = 0.2
    """How long a row the pool had nothing for is not asked for again."""
    reclaim_interval_s: float = 1.0
    """How often dead nodes' leases are looked for and taken back."""
    adopt_after_s: float = 5.0
    """How long a node must have been dead (no live session, no commit or heartbeat) before
    the leader adopts its number and serves its orders: time for a restarted node (a
    ``--workers`` supervisor restarts one within about a second) to take it back first."""


@dataclass(slots=True)
class _Row:
    available: int = 0
    rate: float = 0.0
    """Units sold per second, smoothed (exponential, ``_ALPHA`` per look)."""
    exhausted_until: float = 0.0
    dormant: bool = False
    """Its idle units went back to the pool: periodic passes leave it alone until demand
    shows (an order refused, a batch that met an empty row), else they would lease the units
    straight back and keep them from the nodes that sell the SKU."""
    """Monotonic time before which the pool is not asked again (it had none for the row)."""
    last_sale: float = field(default_factory=time.monotonic)
    """Monotonic time this row last sold (or was leased)."""
    unrated: int = 0
    """Units sold before urgent passes since the last periodic look (each pass moves
    ``available`` on): counted in the next look's rate."""
    ran_dry: bool = False
    """An urgent pass found the row empty since the last look (it boosts the buffer)."""
    boost: int = 0
    """Extra buffer after the row ran dry: what was sold says nothing of the demand that found
    it empty, so each time a look finds it emptied since the last one this doubles (up to
    ``max_units``); it halves again while the row keeps some."""


_ALPHA = 0.3


@dataclass(slots=True)
class KeeperStats:
    grants: int = 0
    units_granted: int = 0
    returned: int = 0
    reclaimed: int = 0
    """Units of dead nodes' leases taken back to the pool (for the while, or by adopting)."""
    orphans_expired: int = 0
    adopted: int = 0
    failures: int = 0
    rows: dict[tuple[int, int], _Row] = field(default_factory=dict)


class StockKeeper:
    """Refills a cluster node's leases (see the module doc). ``engine`` is the platform's
    accessor (a rebuild replaces the engine); ``ready`` says whether the node serves now."""

    def __init__(
        self,
        store: Store,
        claim: Callable[[], NodeClaim],
        engine: Callable[[], Engine],
        ready: Callable[[], bool],
        config: StockLeaseConfig | None = None,
        keys: Callable[[], set[tuple[int, int]]] = set,
    ) -> None:
        self._store = store
        self._claim = claim
        self._engine = engine
        self._ready = ready
        self._keys = keys
        """(sku, warehouse) rows of the store, some maybe not in the core yet (a SKU stocked
        in a new warehouse on another node): leasing for one makes its row in the core."""
        self.config = config or StockLeaseConfig()
        self.stats = KeeperStats()
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        """One pass at a time (the periodic one, or one asked for by ``refill_now``)."""
        self._demand = False
        """Demand met an empty row since the last pass: dormant rows are leased for again."""
        self._wanted: Counter[int] = Counter()
        """Units per SKU that refused orders asked for since the last pass (``refill_now``):
        a row with fewer asks for at least that many, whatever its rate says."""
        self._passes = 0
        """Passes started (``refill_now`` waits for one that starts after it was called)."""
        self.on_adopted: list[Callable[[], None]] = []
        """Called after this node adopted dead nodes' numbers (their orders are loaded by a
        rebuild: ``Intake.reload``)."""
        self.on_orphans_expired: list[Callable[[], None]] = []
        """Called after dead nodes' unpaid orders were expired here (their ``order.expired``
        events are pending in the store: the leader's deliveries resume)."""

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="pyorder-stock-leases")

    async def stop(self) -> None:
        task, self._task = self._task, None
        await cancelled(task)

    async def give_back(self) -> None:
        """Return every leased unit to the pool (after the last commit of a graceful stop)."""
        back = await self._store.give_back_stock()
        self.stats.returned += sum(units for _, _, units in back)

    async def _give_back_idle(self, engine: Engine, idle: list[tuple[int, int, int]]) -> None:
        """Take idle rows' units out of the core at once (no await before: none of them can be
        sold after this), then out of the lease. Should the second step fail, they stay in the
        lease, unsold, until this node stops or is rebuilt."""
        for sku, wh, units in idle:
            engine.inventory.adjust(sku, -units, wh)
            row = self.stats.rows[(sku, wh)]
            row.available -= units
            row.last_sale = time.monotonic()
            row.dormant = True
        await self._store.return_stock(idle)
        self.stats.returned += sum(units for _, _, units in idle)

    async def _run(self) -> None:
        next_reclaim = 0.0
        last = time.monotonic()
        while True:
            await asyncio.sleep(self.config.interval_s)
            if not self._ready():
                continue
            now = time.monotonic()
            try:
                await self.refill(now - last)
                if now >= next_reclaim:
                    next_reclaim = now + self.config.reclaim_interval_s
                    back = await self._store.reclaim_stock(self._claim())
                    self.stats.reclaimed += sum(units for _, _, units in back)
                    if back:
                        log.info("took back %d units from dead nodes' leases", len(back))
                    if self._claim().leader:  # one node does the dead nodes' expiries
                        expired = await self._store.expire_orphans(self._claim())
                        self.stats.orphans_expired += expired
                        if expired:
                            log.info("expired %d unpaid orders of dead nodes", expired)
                            for notify in self.on_orphans_expired:  # their order.expired
                                notify()
                        adopt_ms = int(self.config.adopt_after_s * 1000)
                        adopted = await self._store.adopt_dead(self._claim(), adopt_ms)
                        if adopted:  # their leases' units back to the pool too
                            self.stats.adopted += len(adopted)
                            self.stats.reclaimed += sum(adopted.values())
                            log.info("adopted dead nodes %s: serving their orders", sorted(adopted))
                            for notify in self.on_adopted:
                                notify()
            except (StorageError, OSError) as e:  # the store is down or we are fenced
                self.stats.failures += 1
                log.warning("stock lease refill failed: %s", e)
            except Exception:  # never let the keeper die: the node would stop refilling
                self.stats.failures += 1
                log.exception("stock lease refill failed")
            last = now

    async def refill_now(self, wanted: Mapping[int, int] | None = None) -> int:
        """Ask the pool at once (a node about to answer "out of stock"): one pass, shared by
        every caller while it runs; rows the pool had nothing for lately are not asked again
        for ``exhausted_s``. The pass is one that starts after the call: a pass running at the
        time may have looked at the row before it ran dry. Returns the units granted since the
        call, of any row (0: the answer stands; more: place again, and the core decides: a
        pass may have found the row refilled already, and asked for nothing). ``wanted``: units
        per SKU the refused orders need (a batch's), asked for at least."""
        asked_at, before = self._passes, self.stats.units_granted
        self._demand = True  # dormant rows too: demand met an empty row
        if wanted:
            self._wanted.update(wanted)
        async with self._lock:
            if self._passes == asked_at:  # none started since the ask: it may not have seen
                await self._refill(0.0)  # the row empty
            return self.stats.units_granted - before

    async def refill(self, elapsed_s: float) -> int:
        """Ask the pool for the rows below their low-water mark; add what comes to the core.
        ``elapsed_s`` since the last periodic pass (0: an urgent pass, which learns no rate).
        Returns the units granted."""
        async with self._lock:
            return await self._refill(elapsed_s)

    async def _refill(self, elapsed_s: float) -> int:
        self._passes += 1
        engine = self._engine()
        inventory = engine.inventory
        wants: list[tuple[int, int, int]] = []
        rows = self.stats.rows
        now = time.monotonic()
        empty = StockLevel(0, 0, 0, 0)
        idle: list[tuple[int, int, int]] = []
        # An urgent pass (orders about to be refused) or one after one asked is demand.
        demand, self._demand = elapsed_s == 0 or self._demand, False
        wanted, self._wanted = self._wanted, Counter()
        levels = {
            (sku, wh): level
            for sku in engine.skus
            for wh, level in inventory.stock_by_warehouse(sku).items()
        }
        for key in self._keys():
            if key[0] in engine.skus and key[1] in engine.warehouses:
                levels.setdefault(key, empty)
        for (sku, wh), level in levels.items():
            row = rows.setdefault((sku, wh), _Row(level.available))
            sold = max(0, row.available - level.available)
            if elapsed_s > 0:
                sold, row.unrated = sold + row.unrated, 0
                row.rate += _ALPHA * (sold / elapsed_s - row.rate)
                if sold:
                    row.last_sale = now
                elif level.available and now - row.last_sale > self.config.idle_s:
                    idle.append((sku, wh, level.available))
                if (level.available == 0 and row.available > 0) or row.ran_dry:  # since
                    row.boost = min(
                        self.config.max_units, max(self.config.min_units, 2 * row.boost)
                    )
                elif level.available > 0:
                    row.boost //= 2
                row.ran_dry = False
            else:  # an urgent pass: its sales count at the next look, for the rate
                row.unrated += sold
                row.ran_dry = row.ran_dry or level.available == 0
            row.available = level.available
            target = min(
                self.config.max_units,
                max(self.config.min_units, math.ceil(row.rate * self.config.buffer_s)) + row.boost,
            )
            if row.dormant and not demand:
                continue
            short = wanted.get(sku, 0) > level.available  # a batch refused for want of it
            if (level.available * 2 < target or short) and row.exhausted_until <= now:
                need = max(target, wanted.get(sku, 0))
                wants.append((sku, wh, need - level.available))
        if idle:
            await self._give_back_idle(engine, idle)
        if not wants:
            return 0
        granted = await self._store.grant_stock(wants, await self._store.live_nodes())
        got = {(sku, wh) for sku, wh, _ in granted}
        for sku, wh, _ in wants:
            if (sku, wh) not in got:  # the pool had none: do not ask again at once
                rows[(sku, wh)].exhausted_until = now + self.config.exhausted_s
        if self._engine() is not engine:
            # Rebuilt meanwhile: the new core was loaded from the store, with or without these
            # units; without, they stay in the lease (given back at stop), never sold twice.
            return 0
        total = 0
        for sku, wh, units in granted:
            engine.inventory.restock(sku, units, wh)
            rows[(sku, wh)].available += units
            rows[(sku, wh)].last_sale = now
            rows[(sku, wh)].dormant = False
            total += units
        self.stats.grants += len(granted)
        self.stats.units_granted += total
        return total
