"""Warehouses, delivery regions and the SKU catalogue, with stock per warehouse.

Each change is applied to the in-memory engine and staged for the group commit; the caller
acknowledges it only after ``await platform.intake.durable()``. Rules: merchants and admins create warehouses; admins order regions; merchants
own their SKUs and stock them in their own warehouses or the platform's (admin-owned) ones.
"""

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from pyorder.auth import Principal, Role
from pyorder.catalog.model import Sku, SkuView, StockRow, Warehouse
from pyorder.engine import Engine
from pyorder.intake import Intake
from pyorder.inventory import InventoryError, StockLevel
from pyorder.kernel.clock import now_ms
from pyorder.kernel.errors import Conflict, Forbidden, InvalidInput, NotFound
from pyorder.storage.base import StockBelowCommitted, Store
from pyorder.storage.limits import check_row, check_value

if TYPE_CHECKING:
    from pyorder.cluster.catalogue import CatalogueSync

T = TypeVar("T")

MAX_UNITS = 1 << 50
"""Largest on-hand count accepted from the API for one SKU in one warehouse."""
MAX_PRICE = 10**12
"""Largest unit price, in minor units."""
CATEGORY = re.compile(r"([a-z0-9][a-z0-9_-]{0,39})?")
"""A SKU's category (``fullmatch``): a short slug such as ``apparel``, or empty for none."""
MAX_RELEASE_MS = 2**53
"""Latest release time accepted (ms since the Unix epoch): exact in a JSON number."""


class CatalogueReadOnly(Conflict):
    """A catalogue change on a cluster node (not shared across nodes yet)."""

    code = "catalogue_read_only"


class Catalog:
    """Warehouses, regions, SKUs and stock. ``engine`` gives the current engine (replaced on
    every rebuild); ``intake`` stages the changes."""

    def __init__(
        self, engine: Callable[[], Engine], intake: Intake, store: Store, *, cluster: bool = False
    ) -> None:
        self._engine = engine
        self._intake = intake
        self._store = store
        self._cluster = cluster
        """On a cluster node every core mirrors the store's catalogue, and SKU and warehouse
        ids are the cores' dense indexes: a change runs through ``run`` (one at a time across
        the cluster, on a core up to date), and stock goes to the pool (``adjust_pool``)."""
        self.sync: CatalogueSync | None = None
        """Set by the platform on a cluster node."""
        self._changing = False

    async def run(self, make: Callable[[], T]) -> T:
        """Make a catalogue change (``make`` calls ``create_warehouse``, ``set_region`` or
        ``create_sku``): at once on a node alone; on a cluster node under the cluster's
        catalogue lock, durable when this returns."""
        if self.sync is None:
            return make()
        self._changing = True
        try:
            return await self.sync.change(make)
        finally:
            self._changing = False

    def _check_writable(self) -> None:
        if self._cluster and not self._changing:
            raise CatalogueReadOnly(
                "on a cluster node, change the catalogue through Catalog.run (the HTTP API does)"
            )

    # --- warehouses and regions ----------------------------------------------------------

    def create_warehouse(self, who: Principal, name: str, regions: list[str]) -> Warehouse:
        who.require(Role.MERCHANT, Role.ADMIN)
        self._check_writable()
        engine, batch = self._engine(), self._intake.batch
        wid = len(engine.warehouses)
        warehouse = Warehouse(wid, name, who.key)
        # Before anything changes: an embedding caller's values are not checked by the API.
        check_row(warehouse)
        check_value(regions, "regions")
        if wid >= engine.inventory.warehouse_count:
            engine.inventory.add_warehouse()
        engine.warehouses[wid] = warehouse
        batch.warehouses.append(warehouse)
        for code in dict.fromkeys(regions):
            listed = [*engine.regions.get(code, []), wid]
            self._set_region(code, listed)
        return warehouse

    def warehouse(self, who: Principal, wid: int) -> Warehouse:
        """A warehouse the caller may see: a merchant its own and the platform's (another
        merchant's is 404, as its SKUs are), an admin any."""
        who.require(Role.MERCHANT, Role.ADMIN)
        warehouse = self._engine().warehouses.get(wid)
        if warehouse is None or not _may_see_warehouse(who, warehouse):
            raise NotFound(f"warehouse {wid} does not exist")
        return warehouse

    def list_warehouses(self, who: Principal) -> list[Warehouse]:
        """The warehouses the caller may see (a merchant: its own and the platform's), by id."""
        who.require(Role.MERCHANT, Role.ADMIN)
        found = (self._engine().warehouses[w] for w in sorted(self._engine().warehouses))
        return [w for w in found if _may_see_warehouse(who, w)]

    def set_region(self, who: Principal, code: str, warehouses: list[int]) -> list[int]:
        who.require(Role.ADMIN)
        self._check_writable()
        if not warehouses:
            raise InvalidInput("a region needs at least one warehouse", field="warehouses")
        if len(set(warehouses)) != len(warehouses):
            raise InvalidInput("a warehouse may appear only once in a region")
        for wid in warehouses:
            if wid not in self._engine().warehouses:
                raise InvalidInput(f"warehouse {wid} does not exist", field="warehouses")
        check_value(code, "region")
        self._set_region(code, warehouses)
        return warehouses

    def region(self, code: str) -> list[int]:
        listed = self._engine().regions.get(code)
        if listed is None:
            raise NotFound(f"region {code!r} is not served")
        return listed

    def _set_region(self, code: str, warehouses: list[int]) -> None:
        engine = self._engine()
        engine.inventory.set_region(engine.region_id(code), warehouses)
        engine.regions[code] = list(warehouses)
        self._intake.batch.regions[code] = list(warehouses)

    # --- SKUs ------------------------------------------------------------------------------

    def create_sku(
        self,
        who: Principal,
        *,
        title: str,
        price: int,
        currency: str,
        stock: dict[int, int],
        limit_per_buyer: int = 0,
        category: str = "",
        release_ms: int | None = None,
    ) -> SkuView:
        """A new SKU with its stock per warehouse; ``release_ms``: when it goes on sale (ms
        since the Unix epoch, UTC; a flash sale's start), None at once."""
        who.require(Role.MERCHANT, Role.ADMIN)
        self._check_writable()
        if not title.strip() or len(title) > 200:
            raise InvalidInput("title must have 1 to 200 characters", field="title")
        if not 0 <= price <= MAX_PRICE:
            raise InvalidInput(
                f"price must be between 0 and {MAX_PRICE} minor units", field="price"
            )
        if len(currency) != 3 or not currency.isalpha() or not currency.isupper():
            raise InvalidInput("currency must be an ISO 4217 code like CNY", field="currency")
        if not 0 <= limit_per_buyer <= MAX_UNITS:
            raise InvalidInput("limit_per_buyer must be >= 0", field="limit_per_buyer")
        if not CATEGORY.fullmatch(category):
            raise InvalidInput(
                "category has at most 40 lower-case letters, digits, _ or -", field="category"
            )
        if release_ms is not None and not 0 <= release_ms <= MAX_RELEASE_MS:
            raise InvalidInput(
                f"release_ms must be between 0 and {MAX_RELEASE_MS} (ms since the Unix epoch)",
                field="release_ms",
            )
        for wid, units in stock.items():
            self._check_stocking(who, wid)
            if not 0 <= units <= MAX_UNITS:
                raise InvalidInput(f"units must be between 0 and {MAX_UNITS}", field="stock")
        check_row(Sku(0, who.key, title, price, currency, limit_per_buyer, 0, category))
        engine, batch = self._engine(), self._intake.batch
        # On a cluster node the units are the pool's: the core gets the rows, empty (its keeper
        # leases from them), and the store the units.
        in_core = {wid: 0 for wid in stock} if self._cluster else stock
        sid = engine.inventory.add_sku(in_core, limit_per_buyer=limit_per_buyer)
        sku = Sku(
            sid, who.key, title, price, currency, limit_per_buyer, now_ms(), category, release_ms
        )
        engine.add_sku(sku)
        batch.skus.append(sku)
        if self._cluster:
            rows = [StockRow(sid, wid, units, 0, 0) for wid, units in sorted(stock.items())]
            batch.stock_rows.extend(rows)
            return _view_of(sku, rows)
        for wid, level in engine.inventory.stock_by_warehouse(sid).items():
            batch.stock_rows.append(StockRow(sid, wid, level.on_hand, 0, 0))
        return self.view(sku)

    def adjust_stock(self, who: Principal, sku_id: int, warehouse: int, delta: int) -> SkuView:
        """Add (restock) or remove (count correction) units; never below reserved + sold."""
        sku = self._owned(who, sku_id)
        if self._cluster:
            raise CatalogueReadOnly(
                "on a cluster node stock changes go to the pool: Catalog.adjust_pool (the HTTP"
                " API does)"
            )
        self._check_stocking(who, warehouse)
        inv = self._engine().inventory
        existed = warehouse in inv.stock_by_warehouse(sku.id)
        if not -MAX_UNITS <= delta <= MAX_UNITS:
            raise InvalidInput(f"delta must be between -{MAX_UNITS} and {MAX_UNITS}", field="delta")
        try:
            inv.adjust(sku.id, delta, warehouse)
        except InventoryError as exc:
            raise InvalidInput(str(exc), field="delta") from exc
        batch = self._intake.batch
        if existed:
            batch.add_delta(sku.id, warehouse, delta, 0, 0)
        elif delta:
            batch.stock_rows.append(StockRow(sku.id, warehouse, delta, 0, 0))
        return self.view(sku)

    async def adjust_pool(self, who: Principal, sku_id: int, warehouse: int, delta: int) -> SkuView:
        """On a cluster node: add (restock) or remove units on hand in the pool of the
        warehouse, never below what is leased, reserved and sold there."""
        sku = self._owned(who, sku_id)
        self._check_stocking(who, warehouse)
        if not -MAX_UNITS <= delta <= MAX_UNITS:
            raise InvalidInput(f"delta must be between -{MAX_UNITS} and {MAX_UNITS}", field="delta")
        try:
            await self._store.adjust_pool(sku.id, warehouse, delta)
        except StockBelowCommitted as exc:
            raise InvalidInput(str(exc), field="delta") from exc
        if self.sync is not None:
            self.sync.stock_keys.add((sku.id, warehouse))
        return await self.pool_view(sku)

    async def pool_view(self, sku: Sku) -> SkuView:
        """The SKU with the stock the store holds (a cluster node's core holds its lease only)."""
        return _view_of(sku, await self._store.get_stock(sku.id))

    async def pool_views(self, skus: list[Sku]) -> list[SkuView]:
        """``pool_view`` of each SKU, read in one query."""
        rows = await self._store.get_stocks([sku.id for sku in skus])
        return [_view_of(sku, rows.get(sku.id, [])) for sku in skus]

    def get_sku(self, who: Principal, sku_id: int) -> SkuView:
        return self.view(self._visible(who, sku_id))

    def list_skus(self, who: Principal, after: int, limit: int) -> list[SkuView]:
        skus = self._engine().skus
        # SKU ids are the core's dense indexes: walk them in order instead of sorting.
        end = self._engine().inventory.sku_count
        ids = (i for i in range(max(after + 1, 0), end) if i in skus)
        if who.role is Role.MERCHANT:
            ids = (i for i in ids if skus[i].merchant == who.key)
        out: list[SkuView] = []
        for i in ids:
            if len(out) == limit:
                break
            out.append(self.view(skus[i]))
        return out

    def view(self, sku: Sku) -> SkuView:
        inv = self._engine().inventory
        return SkuView(sku, inv.stock(sku.id), inv.stock_by_warehouse(sku.id))

    def _owned(self, who: Principal, sku_id: int) -> Sku:
        who.require(Role.MERCHANT, Role.ADMIN)
        return self._visible(who, sku_id)

    def _visible(self, who: Principal, sku_id: int) -> Sku:
        """The SKU, unless it does not exist or belongs to another merchant (both 404)."""
        sku = self._engine().skus.get(sku_id)
        if sku is None or (who.role is Role.MERCHANT and sku.merchant != who.key):
            raise NotFound(f"SKU {sku_id} does not exist")
        return sku

    def _check_stocking(self, who: Principal, wid: int) -> None:
        warehouse = self._engine().warehouses.get(wid)
        if warehouse is None:
            raise InvalidInput(f"warehouse {wid} does not exist", field="warehouse")
        if not _may_see_warehouse(who, warehouse):
            raise Forbidden(f"warehouse {wid} belongs to another merchant")


def _view_of(sku: Sku, rows: list[StockRow]) -> SkuView:
    """A SKU's view from stock rows: what is neither reserved nor sold is available (leased
    units included: they are for sale on some node)."""
    by = {
        r.warehouse: StockLevel(r.on_hand, r.on_hand - r.reserved - r.sold, r.reserved, r.sold)
        for r in rows
    }
    total = StockLevel(
        sum(level.on_hand for level in by.values()),
        sum(level.available for level in by.values()),
        sum(level.reserved for level in by.values()),
        sum(level.sold for level in by.values()),
    )
    return SkuView(sku, total, by)


def _may_see_warehouse(who: Principal, warehouse: Warehouse) -> bool:
    """Merchants see (and stock) their own warehouses and the platform's (admin-owned) ones;
    admins see all."""
    if who.role is not Role.MERCHANT:
        return True
    return warehouse.owner == who.key or warehouse.owner.startswith(f"{Role.ADMIN.value}:")
