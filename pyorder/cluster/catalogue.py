"""The catalogue on cluster nodes (``docs/scale-out.md``): every node's core mirrors the one in
the store, and changes are made one at a time across the cluster.

Warehouse and SKU ids are the cores' dense indexes, so two nodes adding a SKU at once would
both pick the same id. A change therefore runs under the store's catalogue lock (a PostgreSQL
advisory lock): the node first brings its core up to date with the store, makes the change
(staged as on a solo node) and waits for it to be durable before it lets go. Every node brings
its core up to date every ``interval_s`` too, so a SKU created on one node is sold on the others
within about a second.

Stock is the pool's, not a node's: a new SKU enters every core with no units (the keeper leases
them), and a merchant's stock change goes to the pool row directly (``Store.adjust_pool``).
"""

import logging
from collections.abc import Callable
from typing import TypeVar

from pyorder.engine import Engine
from pyorder.intake import Intake
from pyorder.kernel.tasks import Periodic
from pyorder.storage.base import Catalogue, StorageError, Store

log = logging.getLogger(__name__)
T = TypeVar("T")


def mirror(engine: Engine, catalogue: Catalogue) -> int:
    """Bring ``engine``'s core up to date with ``catalogue`` (what the store holds): new
    warehouses, regions as stored, new SKUs with no units. Returns how many things changed."""
    changed = 0
    inventory = engine.inventory
    for warehouse in sorted(catalogue.warehouses, key=lambda w: w.id):
        if warehouse.id not in engine.warehouses:
            while inventory.warehouse_count <= warehouse.id:
                inventory.add_warehouse()
            engine.warehouses[warehouse.id] = warehouse
            changed += 1
    for code, warehouses in sorted(catalogue.regions.items()):
        if engine.regions.get(code) != warehouses:
            inventory.set_region(engine.region_id(code), warehouses)
            engine.regions[code] = list(warehouses)
            changed += 1
    for sku in sorted(catalogue.skus, key=lambda s: s.id):
        if sku.id in engine.skus:
            continue
        if sku.id != inventory.sku_count:
            raise StorageError(
                f"SKU {sku.id} does not follow the core's {inventory.sku_count - 1}: the"
                " catalogue was changed outside the catalogue lock"
            )
        inventory.add_sku(0, limit_per_buyer=sku.limit_per_buyer)
        engine.add_sku(sku)
        changed += 1
    return changed


class CatalogueSync:
    """Keeps a cluster node's core mirroring the store's catalogue (see the module doc)."""

    def __init__(
        self,
        store: Store,
        engine: Callable[[], Engine],
        intake: Intake,
        ready: Callable[[], bool],
        interval_s: float = 1.0,
    ) -> None:
        self._store = store
        self._engine = engine
        self._intake = intake
        self.stock_keys: set[tuple[int, int]] = set()
        """(sku, warehouse) rows the store holds: the keeper leases for these, also before the
        core has a row for them."""
        self._periodic = Periodic(
            "pyorder-catalogue-sync", self._pass, ready, log, "catalogue refresh failed", interval_s
        )

    async def refresh(self) -> int:
        """Mirror the store's catalogue now; returns how many things changed."""
        catalogue = await self._store.load_catalogue()
        self.stock_keys = set(catalogue.stock_keys)
        return mirror(self._engine(), catalogue)

    async def change(self, make: Callable[[], T]) -> T:
        """Run ``make`` (a catalogue change, staged as on a solo node) under the catalogue
        lock, on a core up to date with the store, and wait until it is durable."""
        async with self._store.catalogue_lock():
            await self.refresh()
            made = make()
            await self._intake.durable()
            return made

    @property
    def interval_s(self) -> float:
        return self._periodic.interval_s

    def start(self) -> None:
        self._periodic.start()

    async def stop(self) -> None:
        await self._periodic.stop()

    async def _pass(self) -> None:
        if await self.refresh():
            log.info("catalogue: mirrored changes made on other nodes")
