"""Sharded inventory reservation across warehouses, by the Rust core.

A reservation is *pending* until it resolves exactly once into *confirmed* (possibly for fewer
units), *released* or *expired*. For every SKU, per warehouse and in total, at every moment,
``on_hand == available + reserved + sold`` and ``available >= 0``. The full contract is in
``docs/inventory.md``; quantities are whole units and times are ms since the Unix epoch (UTC).

    >>> inv = Inventory()
    >>> sku = inv.add_sku(10)
    >>> r = inv.reserve(sku, 3, buyer=42)
    >>> inv.confirm(r)
    >>> inv.stock(sku)
    StockLevel(on_hand=10, available=7, reserved=0, sold=3)
"""

from enum import IntEnum, StrEnum

from pyorder import _core
from pyorder._core import (
    DEFAULT_TIMEOUT_MS,
    DuplicateSkuError,
    InvalidInventoryStateError,
    InvalidQuantityError,
    Inventory,
    InventoryError,
    OutOfStockError,
    PurchaseLimitError,
    ReservationInfo,
    ReservationResolvedError,
    ReserveBatchResult,
    StockLevel,
    UnknownRegionError,
    UnknownReservationError,
    UnknownSkuError,
    UnknownWarehouseError,
)

__all__ = [
    "DEFAULT_TIMEOUT_MS",
    "DuplicateSkuError",
    "InvalidInventoryStateError",
    "InvalidQuantityError",
    "Inventory",
    "InventoryError",
    "MatchPolicy",
    "OutOfStockError",
    "PurchaseLimitError",
    "ReservationInfo",
    "ReservationResolvedError",
    "ReserveBatchResult",
    "ReserveStatus",
    "StockLevel",
    "UnknownRegionError",
    "UnknownReservationError",
    "UnknownSkuError",
    "UnknownWarehouseError",
]


class ReserveStatus(IntEnum):
    """Outcome code per order (``reserve_batch``) or per reservation (``confirm_batch``)."""

    OK = _core.STATUS_OK
    OUT_OF_STOCK = _core.STATUS_OUT_OF_STOCK
    LIMIT_EXCEEDED = _core.STATUS_LIMIT_EXCEEDED
    UNKNOWN_SKU = _core.STATUS_UNKNOWN_SKU
    INVALID_QUANTITY = _core.STATUS_INVALID_QUANTITY
    DUPLICATE_SKU = _core.STATUS_DUPLICATE_SKU
    UNKNOWN_REGION = _core.STATUS_UNKNOWN_REGION
    UNKNOWN_RESERVATION = _core.STATUS_UNKNOWN_RESERVATION
    ALREADY_CONFIRMED = _core.STATUS_ALREADY_CONFIRMED
    ALREADY_RELEASED = _core.STATUS_ALREADY_RELEASED
    ALREADY_EXPIRED = _core.STATUS_ALREADY_EXPIRED


class MatchPolicy(StrEnum):
    """How an order's lines are matched to warehouses (see ``docs/inventory.md``)."""

    PREFER_ONE_PARCEL = _core.POLICY_PREFER_ONE_PARCEL
    ONE_PARCEL_ONLY = _core.POLICY_ONE_PARCEL_ONLY
    NEAREST_PER_LINE = _core.POLICY_NEAREST_PER_LINE
