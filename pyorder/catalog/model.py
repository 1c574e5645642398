"""The catalogue's records: plain, frozen dataclasses with no framework imports.

Warehouses and SKUs are the dense indexes the inventory core assigns; prices are integer minor
units of an ISO 4217 currency; times are integer milliseconds since the Unix epoch, UTC.
"""

from dataclasses import dataclass

from pyorder.inventory import StockLevel


@dataclass(frozen=True, slots=True)
class Warehouse:
    id: int
    name: str
    owner: str
    """Principal key (``role:subject``) of the merchant or admin that created it."""


@dataclass(frozen=True, slots=True)
class Sku:
    id: int
    merchant: str
    """Principal key (``role:subject``) of the owner."""
    title: str
    price: int
    """Unit price in minor units of ``currency``."""
    currency: str
    limit_per_buyer: int = 0
    """Units one buyer may hold reserved plus bought; 0 means no limit."""
    created_ms: int = 0
    category: str = ""
    """The merchant's category (e.g. ``apparel``); return windows and rules go by it."""
    release_ms: int | None = None
    """When it goes on sale (ms since the Unix epoch, UTC), as a flash sale's start: orders
    before then are refused ``not_on_sale``. None: on sale from its creation."""


@dataclass(frozen=True, slots=True)
class StockRow:
    """Durable stock of one SKU in one warehouse: on_hand = available + reserved + sold."""

    sku: int
    warehouse: int
    on_hand: int
    reserved: int
    sold: int


@dataclass(frozen=True, slots=True)
class SkuView:
    """A SKU with its live stock, in total and per warehouse."""

    sku: Sku
    total: StockLevel
    by_warehouse: dict[int, StockLevel]
