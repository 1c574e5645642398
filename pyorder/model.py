"""What every capability shares: the unit of work (``WriteBatch``, what one durable
transaction writes), the ``Snapshot`` the core is rebuilt from, and the stored first response
to an idempotent request (``IdempotencyRecord``).

Payments, logistics, returns and events stage (and load) their rows as parts
(``pyorder.kernel.unit``, ``WriteBatch.part``, ``Snapshot.part``), and so do the outbox and
webhook-event rows they share (``pyorder.storage.outbox``). The named fields below hold what
the stores write themselves: the catalogue, the orders (the Rust intake's ``placed`` rows among
them), stock deltas and idempotency records, which the order intake's hot path and the SQLite
writer's Rust thread handle without a part.

The records themselves live with their capability (``pyorder.orders.model``,
``pyorder.catalog.model``, ``pyorder.payments.model``, ...). Money is integer minor units with
an ISO 4217 currency code; times are integer milliseconds since the Unix epoch, UTC.
"""

from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

from pyorder._core import OrderRows
from pyorder.catalog.model import Sku, StockRow, Warehouse
from pyorder.kernel.unit import Part, PartKind
from pyorder.orders.model import Order, StatusChange

P = TypeVar("P", bound=Part)
S = TypeVar("S")


@dataclass(frozen=True, slots=True)
class IdempotencyRecord:
    """The stored first response to a request made with an ``Idempotency-Key``."""

    principal: str
    key: str
    fingerprint: str
    """Hash of method, path and body; the same key with another fingerprint is refused."""
    status: int
    body: bytes
    created_ms: int


@dataclass(slots=True)
class WriteBatch:
    """Everything one durable transaction writes (group commit).

    Effects enter in the order the in-memory core applied them, and batches commit in order, so
    the database always holds a prefix of the core's history: after a crash, rebuilding the
    core from it loses only effects that were never acknowledged.
    """

    warehouses: list[Warehouse] = field(default_factory=list)
    regions: dict[str, list[int]] = field(default_factory=dict)
    """Region code -> warehouse ids, nearest first (replaces the region's list)."""
    skus: list[Sku] = field(default_factory=list)
    stock_rows: list[StockRow] = field(default_factory=list)
    """New (sku, warehouse) rows."""
    stock_deltas: dict[tuple[int, int], list[int]] = field(default_factory=dict)
    """(sku, warehouse) -> [d_on_hand, d_reserved, d_sold]: one UPDATE per row per batch."""
    orders: list[Order] = field(default_factory=list)
    placed: OrderRows = field(default_factory=OrderRows)
    """Orders the Rust intake took (rows with no Python object per order); written with
    ``orders``, before ``status_changes``. Their reserved units are in ``all_deltas()``."""
    status_changes: list[StatusChange] = field(default_factory=list)
    idempotency: list[IdempotencyRecord] = field(default_factory=list)
    parts: dict[str, Part] = field(default_factory=dict)
    """The parts of capabilities that stage their own rows (``pyorder.kernel.unit``:
    payments, outbox, refunds, logistics, returns, events), by ``PartKind.name``; ``part()`` makes one on first use."""
    token: int = 0
    """A random id written with the batch (if not 0), to learn afterwards whether a commit
    whose reply was lost did happen (``Store.committed``)."""

    def part(self, kind: PartKind[P, Any]) -> P:
        """The batch's part of ``kind``, made empty on first use."""
        found = self.parts.get(kind.name)
        if found is None:
            found = self.parts[kind.name] = kind.staged()
        return cast(P, found)

    def add_delta(self, sku: int, warehouse: int, on_hand: int, reserved: int, sold: int) -> None:
        d = self.stock_deltas.setdefault((sku, warehouse), [0, 0, 0])
        d[0] += on_hand
        d[1] += reserved
        d[2] += sold

    def all_deltas(self) -> dict[tuple[int, int], list[int]]:
        """``stock_deltas`` plus the units reserved by ``placed``: what the UPDATEs apply."""
        if not len(self.placed):
            return self.stock_deltas
        merged = {k: list(v) for k, v in self.stock_deltas.items()}
        for sku, wh, units in self.placed.reserved_deltas():
            merged.setdefault((sku, wh), [0, 0, 0])[1] += units
        return merged

    def __len__(self) -> int:
        return (
            len(self.placed)
            + len(self.warehouses)
            + len(self.regions)
            + len(self.skus)
            + len(self.stock_rows)
            + len(self.stock_deltas)
            + len(self.orders)
            + len(self.status_changes)
            + len(self.idempotency)
            + sum(map(len, self.parts.values()))
        )


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What the server needs at start to rebuild the in-memory core."""

    warehouses: list[Warehouse]
    regions: dict[str, list[int]]
    skus: list[Sku]
    stock: list[StockRow]
    pending_orders: list[Order]
    max_order_id: int
    max_reservation: int
    """Largest reservation id among the pending orders (new ids only need to avoid those)."""
    bought: list[tuple[int, str, int]] = field(default_factory=list)
    """(sku, buyer, units) bought in paid orders, for SKUs with a purchase limit."""
    parts: dict[str, object] = field(default_factory=dict)
    """The parts of capabilities that load their own rows (``pyorder.kernel.unit``), by
    ``PartKind.name``; read them with ``part()``."""
    stock_leases: list[tuple[int, int, int, int]] = field(default_factory=list)
    """(sku, warehouse, node, units) leased to cluster nodes (``docs/scale-out.md``); empty
    on a store served by one node."""

    def part(self, kind: PartKind[Any, S]) -> S:
        """The snapshot's part of ``kind`` (that of an empty store if it was not loaded)."""
        found = self.parts.get(kind.name)
        return kind.empty() if found is None else cast(S, found)
