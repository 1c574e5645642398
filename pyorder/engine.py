"""The in-memory decision state: inventory, order IDs, and a mirror of the catalogue.

It is rebuilt from the store at start and after a failed commit (``Engine.rebuild``); between
those, every change is applied here first and then staged for the group commit.
"""

import time
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from pyorder._core import OrderBook
from pyorder.auth import buyer_number
from pyorder.catalog.model import Sku, Warehouse
from pyorder.ids import OrderIdGenerator
from pyorder.inventory import Inventory
from pyorder.model import Snapshot
from pyorder.orders.model import Order, OrderStatus


@dataclass
class Engine:
    inventory: Inventory
    ids: OrderIdGenerator
    book: OrderBook
    """Takes orders (Rust: parse, price, reserve, ID, stage) and holds those awaiting payment."""
    warehouses: dict[int, Warehouse] = field(default_factory=dict)
    regions: dict[str, list[int]] = field(default_factory=dict)
    region_ids: dict[str, int] = field(default_factory=dict)
    """Region code -> the integer the inventory core knows the region by."""
    skus: dict[int, Sku] = field(default_factory=dict)
    limited: set[int] = field(default_factory=set)
    """SKUs with a per-buyer purchase limit (``Sku.limit_per_buyer`` > 0)."""

    def region_id(self, code: str) -> int:
        """The core's integer for a region code, assigned on first use."""
        rid = self.region_ids.get(code)
        if rid is None:
            rid = self.region_ids[code] = len(self.region_ids)
            self.book.set_region(code, rid)
        return rid

    def add_sku(self, sku: Sku) -> None:
        """Mirror a SKU (already in the inventory) so orders can be taken for it."""
        self.skus[sku.id] = sku
        if sku.limit_per_buyer > 0:
            self.limited.add(sku.id)
        else:
            self.limited.discard(sku.id)
        self.book.set_sku(sku.id, sku.price, sku.currency, sku.merchant, sku.release_ms)

    def add_pending(self, order: Order) -> None:
        """Hold a stored order awaiting payment or in review (its reservation is in the
        inventory, due at the payment deadline or at the end of the review hold)."""
        book = self.book
        if order.status is OrderStatus.IN_REVIEW:
            book.add_pending(order.id, order.reservation, order.total, order.currency, "in_review")
        else:  # the book's default status: awaiting payment
            book.add_pending(order.id, order.reservation, order.total, order.currency)

    @classmethod
    def rebuild(cls, snap: Snapshot, *, node: int, payment_timeout_ms: int) -> "Engine":
        """A fresh engine holding exactly what the store holds."""
        sku_count = max((s.id for s in snap.skus), default=-1) + 1
        wh_count = max(1, max((w.id for w in snap.warehouses), default=-1) + 1)
        region_codes = sorted(snap.regions)
        region_warehouses = [snap.regions[c] for c in region_codes]
        limited = {s.id: s.limit_per_buyer for s in snap.skus if s.limit_per_buyer > 0}
        pending = sorted(snap.pending_orders, key=lambda o: o.reservation)
        lines = [line for o in pending for line in o.lines]
        state: dict[str, npt.NDArray[np.generic]] = {
            "sku_count": np.array([sku_count], np.uint64),
            "warehouse_count": np.array([wh_count], np.uint64),
            "next_reservation_id": np.array([snap.max_reservation + 1], np.uint64),
            "stock_sku": np.array([r.sku for r in snap.stock], np.uint32),
            "stock_warehouse": np.array([r.warehouse for r in snap.stock], np.uint32),
            "stock_on_hand": np.array([r.on_hand for r in snap.stock], np.int64),
            "stock_sold": np.array([r.sold for r in snap.stock], np.int64),
            "limit_sku": np.array(list(limited), np.uint32),
            "limit_units": np.array(list(limited.values()), np.uint64),
            "bought_sku": np.array([b[0] for b in snap.bought], np.uint32),
            "bought_buyer": np.array([buyer_number(b[1]) for b in snap.bought], np.uint64),
            "bought_units": np.array([b[2] for b in snap.bought], np.uint64),
            "region_id": np.arange(len(region_codes), dtype=np.uint32),
            "region_offsets": np.cumsum([0, *map(len, region_warehouses)], dtype=np.uint64),
            "region_warehouses": np.array([w for ws in region_warehouses for w in ws], np.uint32),
            "res_id": np.array([o.reservation for o in pending], np.uint64),
            "res_buyer": np.array([buyer_number(o.buyer) for o in pending], np.uint64),
            "res_deadline_ms": np.array([o.deadline_ms for o in pending], np.uint64),
            "res_offsets": np.cumsum([0, *(len(o.lines) for o in pending)], dtype=np.uint64),
            "line_sku": np.array([li.sku for li in lines], np.uint32),
            "line_warehouse": np.array([li.warehouse for li in lines], np.uint32),
            "line_quantity": np.array([li.quantity for li in lines], np.uint32),
        }
        inventory, ids = Inventory.from_state(state), OrderIdGenerator(node)
        engine = cls(
            inventory=inventory,
            ids=ids,
            book=OrderBook(inventory, ids, payment_timeout_ms),
            warehouses={w.id: w for w in snap.warehouses},
            regions={c: list(ws) for c, ws in snap.regions.items()},
        )
        for code in region_codes:
            engine.region_id(code)
        for sku in snap.skus:
            engine.add_sku(sku)
        for order in pending:
            engine.add_pending(order)
        engine._skip_past(snap.max_order_id)
        return engine

    def _skip_past(self, max_order_id: int, wait_s: float = 5.0) -> None:
        """Never hand out an ID at or below one already stored (a clock stepped back across
        a restart): wait for the clock to pass it, briefly, or refuse to start."""
        deadline = time.monotonic() + wait_s
        while self.ids.next_id() <= max_order_id:
            if time.monotonic() > deadline:
                raise RuntimeError(
                    "the clock is behind the newest stored order ID; refusing to reuse IDs"
                )
            time.sleep(0.001)
