"""Request and response bodies of the catalogue's routes (``pyorder.server.api.catalog``): warehouses,
regions, SKUs and their stock, as msgspec Structs, and the converters from the records."""

from typing import Annotated

import msgspec
from msgspec import Meta

from pyorder.catalog.model import SkuView, Warehouse
from pyorder.catalog.service import MAX_RELEASE_MS
from pyorder.inventory import StockLevel
from pyorder.server.bodies import Id, RegionCode, Text, whole

Units = Annotated[int, Meta(ge=0, le=2**50)]
ReleaseMs = Annotated[
    int,
    Meta(
        ge=0,
        le=MAX_RELEASE_MS,
        description="when the SKU goes on sale, ms since the Unix epoch (UTC), a flash sale's"
        " start: orders before it are refused 409 not_on_sale",
    ),
]
Money = Annotated[int, Meta(ge=0, le=10**12, description="minor units (cents, fen)")]
Currency = Annotated[str, Meta(pattern=whole("[A-Z]{3}"), description="ISO 4217 code")]
Category = Annotated[
    str,
    Meta(
        pattern=whole("([a-z0-9][a-z0-9_-]{0,39})?"),
        description="a SKU's category: lower-case letters, digits, _ and -, at most 40; ''"
        " for none. Return windows and the lightning-refund rules go by it.",
    ),
]


# --- requests (unknown fields are an error) -------------------------------------------------


class WarehouseIn(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    name: Text
    regions: Annotated[list[RegionCode], Meta(max_length=1000)] = []


class RegionIn(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    warehouses: Annotated[list[Id], Meta(max_length=1000)]


class StockEntry(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    warehouse: Id
    units: Units


class SkuIn(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    title: Text
    price: Money
    currency: Currency
    stock: Annotated[list[StockEntry], Meta(max_length=1000)] = []
    limit_per_buyer: Units = 0
    category: Category = ""
    release_ms: ReleaseMs | None = None


class StockAdjustIn(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    warehouse: Id
    delta: Annotated[int, Meta(ge=-(2**50), le=2**50, description="units to add (< 0: remove)")]


# --- responses -----------------------------------------------------------------------------


class WarehouseOut(msgspec.Struct):
    id: int
    name: str
    owner: str


class WarehouseList(msgspec.Struct):
    warehouses: list[WarehouseOut]


class RegionOut(msgspec.Struct):
    region: str
    warehouses: list[int]


class StockOut(msgspec.Struct):
    on_hand: int
    available: int
    reserved: int
    sold: int


class WarehouseStockOut(StockOut):
    warehouse: int


class SkuOut(msgspec.Struct):
    id: int
    merchant: str
    title: str
    price: int
    currency: str
    limit_per_buyer: int
    category: str
    release_ms: int | None
    stock: StockOut
    warehouses: list[WarehouseStockOut]


class SkuList(msgspec.Struct):
    skus: list[SkuOut]
    next_cursor: str | None


# --- conversions ---------------------------------------------------------------------------


def stock_out(level: StockLevel) -> StockOut:
    return StockOut(level.on_hand, level.available, level.reserved, level.sold)


def sku_out(view: SkuView) -> SkuOut:
    s = view.sku
    return SkuOut(
        id=s.id,
        merchant=s.merchant,
        title=s.title,
        price=s.price,
        currency=s.currency,
        limit_per_buyer=s.limit_per_buyer,
        category=s.category,
        release_ms=s.release_ms,
        stock=stock_out(view.total),
        warehouses=[
            WarehouseStockOut(lv.on_hand, lv.available, lv.reserved, lv.sold, warehouse=w)
            for w, lv in sorted(view.by_warehouse.items())
        ],
    )


def warehouse_out(w: Warehouse) -> WarehouseOut:
    return WarehouseOut(w.id, w.name, w.owner)
