"""pyorder: an order-intake platform with a Rust hot path.

Embedding it (README, "Embedding pyorder in Python"; ``examples/embed.py``): build a
``Platform`` from a ``Config`` (SQLite in ``data_dir``, or PostgreSQL by URL), ``await
platform.start()``, then call its services as a ``Principal``: ``platform.catalog`` (warehouses,
regions, SKUs), ``platform.orders.place(who, OrderInput(...))`` and ``cancel``/``get``,
``platform.payments.start``, ``platform.logistics.ship``, ``platform.payments.refunds.request``,
``platform.returns.open``. A refusal raises a ``DomainError`` (its ``code`` and ``details`` are
the HTTP API's). ``await platform.intake.durable()`` waits until what was staged is committed.

The names below are imported on first use (PEP 562), so ``import pyorder`` stays cheap: the
platform pulls in asyncio, aiohttp, numpy and the stores. The lower layers live in submodules
named after what they do: ``pyorder.inventory`` (sharded stock reservation across warehouses)
and ``pyorder.ids`` (order IDs).
"""

import importlib

# The core first: importing it configures SQLite for the process (``_core.SQLITE_TUNED``),
# which only works before anything initialises SQLite, and importing ``sqlite3`` does.
from pyorder import _core  # noqa: F401

# For type checkers, which read the branch (mypy and pyright take this name as typing's
# constant); not ``from typing import TYPE_CHECKING``, whose import costs ~10 ms (re, enum).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from pyorder.auth import Principal, Role
    from pyorder.catalog.model import Sku, StockRow, Warehouse
    from pyorder.kernel.errors import (
        Conflict,
        DomainError,
        Forbidden,
        InvalidInput,
        InvalidState,
        MalformedJson,
        NotFound,
        NotOnSale,
        OutOfStock,
        PurchaseLimitExceeded,
        Unauthorized,
        Unavailable,
    )
    from pyorder.logistics.model import Shipment, ShipmentStatus
    from pyorder.orders.input import Address, OrderInput, UnknownRegion
    from pyorder.orders.model import Order, OrderLine, OrderStatus, PendingOrder
    from pyorder.payments.model import Payment, PaymentStatus, Refund
    from pyorder.platform import Config, Platform, open_store
    from pyorder.returns.model import Return

__version__ = "0.1.0"

_WHERE: dict[str, str] = {
    # the bootstrap and its configuration
    "Config": "pyorder.platform",
    "Platform": "pyorder.platform",
    "open_store": "pyorder.platform",
    # who calls
    "Principal": "pyorder.auth",
    "Role": "pyorder.auth",
    # what a caller gives
    "Address": "pyorder.orders.input",
    "OrderInput": "pyorder.orders.input",
    # what the services answer
    "Order": "pyorder.orders.model",
    "OrderLine": "pyorder.orders.model",
    "OrderStatus": "pyorder.orders.model",
    "PendingOrder": "pyorder.orders.model",
    "Sku": "pyorder.catalog.model",
    "StockRow": "pyorder.catalog.model",
    "Warehouse": "pyorder.catalog.model",
    "Payment": "pyorder.payments.model",
    "PaymentStatus": "pyorder.payments.model",
    "Refund": "pyorder.payments.model",
    "Shipment": "pyorder.logistics.model",
    "ShipmentStatus": "pyorder.logistics.model",
    "Return": "pyorder.returns.model",
    # refusals: the domain errors
    "DomainError": "pyorder.kernel.errors",
    "Conflict": "pyorder.kernel.errors",
    "Forbidden": "pyorder.kernel.errors",
    "InvalidInput": "pyorder.kernel.errors",
    "InvalidState": "pyorder.kernel.errors",
    "MalformedJson": "pyorder.kernel.errors",
    "NotFound": "pyorder.kernel.errors",
    "NotOnSale": "pyorder.kernel.errors",
    "OutOfStock": "pyorder.kernel.errors",
    "PurchaseLimitExceeded": "pyorder.kernel.errors",
    "Unauthorized": "pyorder.kernel.errors",
    "Unavailable": "pyorder.kernel.errors",
    "UnknownRegion": "pyorder.orders.input",
}

__all__ = [
    "Address",
    "Config",
    "Conflict",
    "DomainError",
    "Forbidden",
    "InvalidInput",
    "InvalidState",
    "MalformedJson",
    "NotFound",
    "NotOnSale",
    "Order",
    "OrderInput",
    "OrderLine",
    "OrderStatus",
    "OutOfStock",
    "Payment",
    "PaymentStatus",
    "PendingOrder",
    "Platform",
    "Principal",
    "PurchaseLimitExceeded",
    "Refund",
    "Return",
    "Role",
    "Shipment",
    "ShipmentStatus",
    "Sku",
    "StockRow",
    "Unauthorized",
    "Unavailable",
    "UnknownRegion",
    "Warehouse",
    "__version__",
    "open_store",
]
"""The exported names: ``__version__`` and those of ``_WHERE`` (``tests/test_embedding.py``
checks that the two agree and that each resolves)."""


def __getattr__(name: str) -> object:
    """Import an exported name on first use and keep it (later lookups skip this)."""
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'pyorder' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_WHERE})
