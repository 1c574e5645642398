"""Typed surface of the compiled hot path, ``pyorder._core`` (Rust, built by maturin with pyo3).

Only ``pyorder`` imports this module; everyone else uses ``pyorder.inventory`` and ``pyorder.ids``.
Quantities are whole units, times are milliseconds since the Unix epoch (UTC).
"""

import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Final, Protocol, final

import numpy as np
import numpy.typing as npt

__all__ = [
    "DEFAULT_TIMEOUT_MS",
    "ORDER_ID_EPOCH_MS",
    "ORDER_ID_NODE_BITS",
    "ORDER_ID_SEQUENCE_BITS",
    "ORDER_ID_TIME_BITS",
    "PLACED_DECISION_COLUMNS",
    "PLACED_LINE_COLUMNS",
    "PLACED_ORDER_COLUMNS",
    "POLICY_NEAREST_PER_LINE",
    "POLICY_ONE_PARCEL_ONLY",
    "POLICY_PREFER_ONE_PARCEL",
    "RISK_DECIDED_BY_CODES",
    "RISK_FEATURE_NAMES",
    "RISK_KINDS",
    "RISK_LIST_KINDS",
    "SQLITE_TUNED",
    "STATUS_ALREADY_CONFIRMED",
    "STATUS_ALREADY_EXPIRED",
    "STATUS_ALREADY_RELEASED",
    "STATUS_DUPLICATE_SKU",
    "STATUS_INVALID_QUANTITY",
    "STATUS_LIMIT_EXCEEDED",
    "STATUS_OK",
    "STATUS_OUT_OF_STOCK",
    "STATUS_UNKNOWN_REGION",
    "STATUS_UNKNOWN_RESERVATION",
    "STATUS_UNKNOWN_SKU",
    "ClockMovedBackwardsError",
    "CommitQueue",
    "DuplicateSkuError",
    "InvalidInventoryStateError",
    "InvalidQuantityError",
    "Inventory",
    "InventoryError",
    "OrderBook",
    "OrderIdError",
    "OrderIdGenerator",
    "OrderRows",
    "OutOfStockError",
    "PurchaseLimitError",
    "ReservationInfo",
    "ReservationResolvedError",
    "ReserveBatchResult",
    "RiskEngine",
    "RiskModel",
    "RiskModelError",
    "RiskTracker",
    "RowCountError",
    "SqliteWriteError",
    "SqliteWriter",
    "StockLevel",
    "UnknownRegionError",
    "UnknownReservationError",
    "UnknownSkuError",
    "UnknownWarehouseError",
    "decode_order_id",
    "pg_array_text",
    "pg_copy_binary",
    "sqlite_library",
]

# --- reservation outcome codes (one per order in batch calls) -----------------------------
STATUS_OK: Final[int]
STATUS_OUT_OF_STOCK: Final[int]
STATUS_LIMIT_EXCEEDED: Final[int]
STATUS_UNKNOWN_SKU: Final[int]
STATUS_INVALID_QUANTITY: Final[int]
STATUS_DUPLICATE_SKU: Final[int]
STATUS_UNKNOWN_REGION: Final[int]
STATUS_UNKNOWN_RESERVATION: Final[int]
STATUS_ALREADY_CONFIRMED: Final[int]
STATUS_ALREADY_RELEASED: Final[int]
STATUS_ALREADY_EXPIRED: Final[int]

# --- matching policies ---------------------------------------------------------------------
POLICY_PREFER_ONE_PARCEL: Final[str]
"""Default: the whole order from the nearest warehouse that can serve all of it, else split."""
POLICY_ONE_PARCEL_ONLY: Final[str]
"""The whole order from one warehouse, or refused as out of stock."""
POLICY_NEAREST_PER_LINE: Final[str]
"""Each line from the nearest warehouse that has its stock (a split order when they differ)."""

DEFAULT_TIMEOUT_MS: Final[int]
"""Reservation timeout used when none is given: 15 minutes."""

# --- order IDs -----------------------------------------------------------------------------
ORDER_ID_EPOCH_MS: Final[int]
"""Custom epoch of order IDs: 2026-01-01T00:00:00Z, in ms since the Unix epoch."""
ORDER_ID_TIME_BITS: Final[int]
ORDER_ID_NODE_BITS: Final[int]
ORDER_ID_SEQUENCE_BITS: Final[int]

# --- errors --------------------------------------------------------------------------------
class InventoryError(ValueError):
    """Base of every inventory error; the inventory is unchanged when one is raised."""

class UnknownSkuError(InventoryError):
    sku: int

class UnknownWarehouseError(InventoryError):
    warehouse: int

class UnknownRegionError(InventoryError):
    region: int

class InvalidQuantityError(InventoryError):
    """A quantity that is zero, negative, too large, or more than a line holds."""

class DuplicateSkuError(InventoryError):
    sku: int

class OutOfStockError(InventoryError):
    sku: int

class PurchaseLimitError(InventoryError):
    sku: int
    limit: int

class UnknownReservationError(InventoryError):
    reservation: int

class ReservationResolvedError(InventoryError):
    """The reservation already resolved; ``state`` is "confirmed", "released" or "expired"."""

    reservation: int
    state: str

class InvalidInventoryStateError(InventoryError):
    """An exported state that cannot be rebuilt (inconsistent or malformed arrays)."""

class OrderIdError(RuntimeError):
    """Base of order-ID generation errors."""

class ClockMovedBackwardsError(OrderIdError):
    """The clock stepped back further than the generator is willing to wait."""

    behind_ms: int

# --- inventory -----------------------------------------------------------------------------
@final
class StockLevel:
    """Units of one SKU (in one warehouse or in total): on_hand = available + reserved + sold."""

    on_hand: int
    available: int
    reserved: int
    sold: int
    def __new__(cls, on_hand: int, available: int, reserved: int, sold: int) -> StockLevel: ...
    def __eq__(self, other: object, /) -> bool: ...
    def __hash__(self) -> int: ...

@final
class ReservationInfo:
    """A reservation: its state, owner, deadline and the warehouse serving each line."""

    reservation: int
    state: str
    buyer: int
    deadline_ms: int
    lines: list[tuple[int, int, int]]
    """(sku, warehouse, quantity) per line, in the order they were reserved."""

@final
class ReserveBatchResult:
    """Per-order outcome of ``Inventory.reserve_batch``."""

    status: npt.NDArray[np.uint8]
    """One ``STATUS_*`` code per order."""
    reservation: npt.NDArray[np.uint64]
    """Reservation id per order; 0 where the order was refused."""
    warehouse: npt.NDArray[np.uint32]
    """Serving warehouse per line item; ``0xFFFFFFFF`` where the order was refused."""
    failed_item: npt.NDArray[np.int64]
    """Index of the line item that refused the order, -1 where it succeeded."""

@final
class Inventory:
    """Sharded, thread-safe stock of SKUs across warehouses with two-phase reservations.

    A reservation is *pending* until it resolves exactly once into *confirmed*, *released* or
    *expired*. For every SKU, per warehouse and in total, at every moment:
    ``on_hand == available + reserved + sold`` and ``available >= 0``.
    Warehouse 0 exists from the start, so the single-warehouse case needs no set-up.
    """

    def __new__(cls, shards: int = 64) -> Inventory: ...
    @staticmethod
    def from_state(state: Mapping[str, npt.NDArray[np.generic]], shards: int = 64) -> Inventory:
        """Rebuild an inventory from ``export_state()`` output (or the same arrays from storage)."""
    @property
    def shards(self) -> int: ...
    @property
    def sku_count(self) -> int: ...
    @property
    def warehouse_count(self) -> int: ...
    @property
    def open_reservations(self) -> int: ...
    @property
    def reservation_bytes(self) -> int:
        """Bytes held for pending reservations: their records (48 bytes each, in sorted
        chunks), the deadline index and the final states of recent ones; the lines of
        reservations of two or more lines are not counted."""
    # warehouses and regions
    def add_warehouse(self) -> int:
        """Add a warehouse and return its index."""
    def set_region(self, region: int, warehouses: Sequence[int]) -> None:
        """Set the warehouses serving ``region``, nearest (most preferred) first."""
    def region_warehouses(self, region: int) -> list[int]: ...
    # catalogue
    def add_sku(self, stock: int | Mapping[int, int] = 0, *, limit_per_buyer: int = 0) -> int:
        """Register a SKU with on-hand units (an int for warehouse 0, or {warehouse: units}).

        ``limit_per_buyer`` caps the units one buyer may hold reserved plus bought (0: no cap).
        Returns the SKU's index.
        """
    def add_skus(
        self, on_hand: npt.NDArray[np.int64], warehouse: int = 0
    ) -> npt.NDArray[np.uint32]:
        """Register many SKUs, each with ``on_hand[i]`` units in ``warehouse``; returns their indexes."""
    def restock(self, sku: int, quantity: int, warehouse: int = 0) -> None:
        """Add ``quantity`` (> 0) units on hand; they become available."""
    def adjust(self, sku: int, delta: int, warehouse: int = 0) -> None:
        """Correct on-hand units by ``delta`` (a stock count); never below what is reserved or sold."""
    def return_sold(
        self, sku: int, quantity: int, warehouse: int = 0, *, buyer: int | None = None
    ) -> None:
        """Move ``quantity`` (> 0) sold units back to available (a refund or a return); on hand
        is unchanged. With ``buyer``, the sale is void (a paid order cancelled): the units stop
        counting against that buyer's purchase limit too."""
    def set_purchase_limit(self, sku: int, limit_per_buyer: int) -> None: ...
    def purchase_limit(self, sku: int) -> int: ...
    def bought_by(self, sku: int, buyer: int) -> int:
        """Units of ``sku`` that ``buyer`` holds reserved or has bought (counted by the limit)."""
    def stock(self, sku: int, warehouse: int | None = None) -> StockLevel:
        """Units of ``sku`` in ``warehouse``, or in total when ``warehouse`` is None."""
    def stock_by_warehouse(self, sku: int) -> dict[int, StockLevel]: ...
    # reservations
    def reserve(
        self,
        sku: int,
        quantity: int,
        *,
        buyer: int = 0,
        region: int | None = None,
        timeout_ms: int = ...,
        now_ms: int | None = None,
    ) -> int:
        """Reserve one line; returns the reservation id. Raises OutOfStockError and friends."""
    def reserve_order(
        self,
        lines: Sequence[tuple[int, int]],
        *,
        buyer: int = 0,
        region: int | None = None,
        policy: str = ...,
        timeout_ms: int = ...,
        now_ms: int | None = None,
    ) -> int:
        """Reserve every (sku, quantity) line of one order, all or none; returns the reservation id."""
    def reserve_batch(
        self,
        skus: npt.NDArray[np.uint32],
        quantities: npt.NDArray[np.uint32],
        *,
        order_offsets: npt.NDArray[np.uint32] | None = None,
        buyers: npt.NDArray[np.uint64] | None = None,
        regions: npt.NDArray[np.uint32] | None = None,
        policy: str = ...,
        timeout_ms: int = ...,
        now_ms: int | None = None,
    ) -> ReserveBatchResult:
        """Reserve many orders at once, each all or none, with the GIL released.

        Without ``order_offsets`` each line item is its own order; with them, order ``i`` holds
        items ``order_offsets[i]:order_offsets[i+1]`` (``len == orders + 1``, starting at 0).
        ``buyers`` and ``regions`` are per order; a missing ``regions`` means "any warehouse,
        lowest index first".
        """
    def confirm(
        self,
        reservation: int,
        quantities: int | Sequence[int] | None = None,
        *,
        now_ms: int | None = None,
    ) -> None:
        """Sell a pending reservation, optionally fewer units per line; the rest returns."""
    def release(self, reservation: int, *, now_ms: int | None = None) -> None:
        """Return a pending reservation's units to stock."""
    def confirm_batch(
        self, reservations: npt.NDArray[np.uint64], *, now_ms: int | None = None
    ) -> npt.NDArray[np.uint8]:
        """Confirm many reservations in full; one ``STATUS_*`` code each."""
    def release_batch(
        self, reservations: npt.NDArray[np.uint64], *, now_ms: int | None = None
    ) -> npt.NDArray[np.uint8]: ...
    def reservation(self, reservation: int) -> ReservationInfo:
        """A pending reservation in full; a resolved one raises ReservationResolvedError."""
    def reservation_state(self, reservation: int) -> str:
        """One of pending, confirmed, released, expired; UnknownReservationError if unknown or pruned."""
    def expire_due(self, now_ms: int | None = None, limit: int = 4096) -> npt.NDArray[np.uint64]:
        """Expire up to ``limit`` pending reservations whose deadline passed; returns their ids."""
    def next_deadline_ms(self) -> int | None:
        """Earliest deadline among pending reservations (None when there are none)."""
    def prune_resolved(self, up_to: int) -> int:
        """Forget the final state of resolved reservations with id <= ``up_to``; returns how many."""
    def export_state(self) -> dict[str, npt.NDArray[np.generic]]:
        """A consistent snapshot: stock per (sku, warehouse), limits, buyers' counts, regions,
        and the open reservations with their lines and deadlines."""
    def check_invariants(self) -> None:
        """Raise InvalidInventoryStateError if any counter breaks on_hand = available + reserved + sold."""

# --- order IDs -----------------------------------------------------------------------------
@final
class OrderIdGenerator:
    """Snowflake-style 64-bit order IDs: 0 | 41 bits ms since ORDER_ID_EPOCH_MS | 8 bits node |
    14 bits sequence, of which the low ``gene_bits`` carry a routing gene (e.g. buyer % 2**g).

    Thread-safe; IDs from one generator are unique and increase. ``clock`` returns ms since the
    Unix epoch and replaces the system clock (tests). A clock that steps back by at most
    ``max_backward_ms`` is waited out; further back raises ClockMovedBackwardsError.
    """

    def __new__(
        cls,
        node: int,
        *,
        gene_bits: int = 0,
        max_backward_ms: int = 100,
        clock: Callable[[], int] | None = None,
    ) -> OrderIdGenerator: ...
    @property
    def node(self) -> int: ...
    @property
    def gene_bits(self) -> int: ...
    def next_id(self, gene: int = 0) -> int: ...
    def next_ids(
        self, n: int, *, genes: npt.NDArray[np.uint64] | None = None
    ) -> npt.NDArray[np.uint64]:
        """``n`` IDs into a numpy array, in increasing order; ``genes[i] % 2**gene_bits`` per ID."""

def decode_order_id(order_id: int, gene_bits: int = 0) -> tuple[int, int, int, int]:
    """Split an ID into (unix_ms, node, sequence, gene)."""

# --- risk model ----------------------------------------------------------------------------
class RiskModelError(ValueError):
    """A LightGBM model text that is malformed or uses what the core does not score
    (multiclass, other objectives than binary, linear trees, averaged output), or a row whose
    number of features is not the model's."""

@final
class RiskModel:
    """A LightGBM binary classifier, scored by the core from the library's text model: a row
    (float64, the model's features in order, NaN = missing) gets LightGBM's own probability and
    a 0-99 score, ``floor(100 * p)`` capped at 99. Immutable and thread-safe."""

    @staticmethod
    def from_text(text: str) -> RiskModel:
        """Parse and check the whole text of ``Booster.model_to_string()``; RiskModelError if
        it is malformed or unsupported."""
    @property
    def version(self) -> str:
        """The first 16 hex digits of the SHA-256 of the model text."""
    @property
    def feature_names(self) -> list[str]:
        """The features of a row, in order."""
    @property
    def num_features(self) -> int: ...
    @property
    def num_trees(self) -> int: ...
    def probability(self, row: npt.NDArray[np.float64] | Sequence[float]) -> float:
        """The probability of fraud for one row, in [0, 1]."""
    def score(self, row: npt.NDArray[np.float64] | Sequence[float]) -> int:
        """The 0-99 score of one row."""
    def contributions(
        self, row: npt.NDArray[np.float64] | Sequence[float]
    ) -> tuple[float, list[float]]:
        """Why one row scores what it does: the bias and each feature's contribution to the raw
        score (log-odds; positive pushes towards fraud), which add up to it (Saabas' path
        attribution). Raises ``RiskModelError`` for a model text without ``internal_value``."""
    def predict_proba(self, matrix: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """The probability of each row of a 2-D float64 matrix (rows x features)."""
    def scores(self, matrix: npt.NDArray[np.float64]) -> npt.NDArray[np.uint8]:
        """The 0-99 score of each row of a 2-D float64 matrix."""

_StagedOrder = tuple[
    int, str, str, int, str, str, int, int, int, list[tuple[int, int, int, int, str]], str
]
"""(id, buyer, currency, total, region, address JSON, reservation, created_ms, deadline_ms,
[(sku, warehouse, quantity, unit_price, merchant), ...], status)"""

_HeldOrder = tuple[int, int, int, int, str, int, list[tuple[int, int, int]], str]
"""(id, reservation, buyer number, total, currency, deadline_ms, [(sku, warehouse, quantity),
...], status): a pending order as the book (id, reservation, total, currency, status) and its
reservation hold it; status ``pending_payment``, or ``in_review`` while risk control holds it
(its deadline then the review's)."""

_Client = tuple[str | None, str | None, int, int | None]
"""(IP, the IP's region code, ``AgentClass``, when the buyer's account was made in ms): what
the server knows of a request's client, for risk control (``pyorder.risk.intake``)."""

_Decision = tuple[int, str, str, int, str, bool, int | None, str | None, str, str, str, str | None]
"""A ``risk_decisions`` row in ``PLACED_DECISION_COLUMNS`` order: (id, buyer, merchant, at_ms,
outcome, three_ds, score or None, model version or None, decided_by, fired JSON, reasons
JSON, features JSON of a decision held for review or None)."""

_PlacedOrder = tuple[
    int,
    str,
    str,
    int,
    str,
    dict[str, str],
    int,
    int,
    int,
    list[tuple[int, int, int, int, str]],
    str,
]
"""(id, buyer, currency, total, region, address fields, reservation, created_ms, deadline_ms,
[(sku, warehouse, quantity, unit_price, merchant), ...], status): an order
``OrderBook.place_order`` took, status ``pending_payment`` or ``in_review``."""

_Refusal = tuple[str, str, dict[str, int | str]]
"""(code, message, details): why an order was refused, as the JSON path's ``{"error": ...}``
says it (``details``: ``path``, ``field``, ``sku``)."""

@final
class OrderRows:
    """Orders of one commit window taken by the Rust intake: rows of ``orders`` and
    ``order_lines`` (status ``pending_payment``), with the units they reserve per
    (sku, warehouse). Money in minor units, times in ms since the Unix epoch (UTC)."""

    def __new__(cls) -> OrderRows: ...
    def push(
        self,
        id: int,
        buyer: str,
        currency: str,
        total: int,
        region: str,
        address: str,
        reservation: int,
        created_ms: int,
        deadline_ms: int,
        lines: Sequence[tuple[int, int, int, int, str]],
    ) -> None:
        """Add one order; ``lines`` are (sku, warehouse, quantity, unit_price, merchant)."""
    def __len__(self) -> int:
        """Rows to write: the orders and the risk decisions of attempts blocked (no order)."""
    @property
    def order_count(self) -> int: ...
    @property
    def decision_count(self) -> int: ...
    def take_from(self, other: OrderRows, skip: Sequence[int] = ...) -> int:
        """Move the orders of ``other`` into these rows, in their order, but those whose id is
        in ``skip`` (dropped); ``other`` is left empty. Returns how many moved (shared, not
        copied: no Python object per order)."""
    def find(self, order_id: int) -> _StagedOrder | None:
        """The order ``order_id`` in full if it is one of these, else None."""
    def line_count(self) -> int: ...
    def id_range(self) -> tuple[int, int] | None:
        """(smallest, largest) order id of these orders; None when there are none."""
    def reserved_deltas(self) -> list[tuple[int, int, int]]:
        """(sku, warehouse, units reserved), sorted."""
    def order_risks(self) -> list[tuple[int, bytes | None]]:
        """(order id, its ``risk_packed`` column: the decision of an order risk control
        allowed, MessagePack, ``pyorder.risk.decisions.unpack_order_risk``; else None), in
        order."""
    def order_tuples(
        self,
    ) -> list[tuple[int, str, str, str, int, str, str, int, int, int, int]]:
        """``orders`` rows in ``codec.ORDER_COLUMNS`` order (status ``pending_payment`` or
        ``in_review``)."""
    def line_tuples(self) -> list[tuple[int, int, int, int, int, int, str]]:
        """``order_lines`` rows in ``codec.LINE_COLUMNS`` order."""
    def decision_tuples(self) -> list[_Decision]:
        """``risk_decisions`` rows in ``PLACED_DECISION_COLUMNS`` order."""

@final
class OrderBook:
    """Takes orders from JSON request bodies and holds the orders awaiting payment.

    With the GIL released it parses and validates the body, prices each line from its
    catalogue mirror (``set_sku``), matches and reserves the lines in ``inventory`` by the
    address's region (``set_region``), assigns IDs from ``ids``, stages the rows in ``rows``
    and writes the response body. Refused orders change nothing. Money in minor units; times
    in ms since the Unix epoch (UTC)."""

    def __new__(
        cls, inventory: Inventory, ids: OrderIdGenerator, payment_timeout_ms: int
    ) -> OrderBook: ...
    @property
    def payment_timeout_ms(self) -> int: ...
    @property
    def pending_count(self) -> int: ...
    def set_sku(
        self, sku: int, price: int, currency: str, merchant: str, release_ms: int | None = None
    ) -> None:
        """Make a SKU orderable at ``price`` (minor units of ``currency``), owned by
        ``merchant``, from ``release_ms`` on (ms since the Unix epoch, UTC; None: at once):
        before it, its orders are refused 409 ``not_on_sale``."""
    def set_region(self, code: str, region: int) -> None: ...
    def place_batch(
        self,
        body: bytes,
        buyer: str,
        buyer_number: int,
        rows: OrderRows,
        now_ms: int,
        client: _Client | None = None,
    ) -> tuple[int, bytes, int, int]:
        """(HTTP status, response body, orders created, stock-outs) for ``{"orders": [...]}``.
        With risk control on (``set_risk``), each order is assessed first (``client``: what
        the request says of its client)."""
    def place_one(
        self,
        body: bytes,
        buyer: str,
        buyer_number: int,
        rows: OrderRows,
        now_ms: int,
        client: _Client | None = None,
    ) -> tuple[int, bytes, int, int]:
        """As ``place_batch`` for one order's body; the response is the order or the error."""
    def place_order(
        self,
        lines: Sequence[tuple[int, int]],
        buyer: str,
        buyer_number: int,
        rows: OrderRows,
        now_ms: int,
        *,
        name: str | None = None,
        line1: str | None = None,
        city: str | None = None,
        region: str | None = None,
        postal_code: str | None = None,
        country: str | None = None,
        line2: str | None = None,
        phone: str | None = None,
        device_id: str | None = None,
        email_hash: str | None = None,
        phone_hash: str | None = None,
        client: _Client | None = None,
    ) -> tuple[_PlacedOrder, None] | tuple[None, _Refusal]:
        """Take one order given as values, with no JSON either way (the embedding API):
        ``lines`` as (sku, quantity), the address's fields (None: not given, so the API's
        default, or a refusal for ``name``, ``line1``, ``city`` and ``region``).

        Checked by the rules of the single-order body holding these values (same limits, same
        codes, the message and ``details.path`` of that body: ``$.lines[0].quantity``), then
        priced, reserved, staged in ``rows`` and held as ``place_one`` does. Returns (the
        order, None) or (None, the refusal); a value of the wrong type raises TypeError."""
    @property
    def pending_bytes(self) -> int:
        """Bytes the pending orders' records take in the book (32 per order, plus tombstones
        of chunks not compacted yet); their reservations are the inventory's."""
    def pending_order(self, order_id: int) -> _HeldOrder | None:
        """The order if it awaits payment (its reservation is pending), else None."""
    def take_pending(self, order_id: int) -> tuple[int, int, int, str] | None:
        """Stop holding an order as pending: its (id, reservation, total, currency), or None."""
    def order_of_reservation(self, reservation: int) -> int | None: ...
    def add_pending(
        self, id: int, reservation: int, total: int, currency: str, status: str = ...
    ) -> None:
        """Hold a stored order as pending (at rebuild); its reservation is the inventory's.
        ``status``: ``pending_payment`` (the default) or ``in_review``."""
    def set_risk(self, engine: RiskEngine | None) -> None:
        """Assess every order with ``engine`` from now on (None: risk control off)."""
    @property
    def risk(self) -> RiskEngine | None: ...
    @property
    def review_hold_ms(self) -> int:
        """How long an order held for review keeps its units before it expires unreviewed."""
    @review_hold_ms.setter
    def review_hold_ms(self, ms: int) -> None: ...
    def approve(self, order_id: int, now_ms: int) -> int:
        """An order held for review now awaits payment, its payment deadline starting
        ``now_ms``: returns the new deadline. ValueError if it is not held for review."""
    def expire_due(self, now_ms: int, limit: int) -> tuple[int, list[_HeldOrder]]:
        """Expire up to ``limit`` reservations due at ``now_ms`` (earliest first) and stop
        holding their orders: (reservations expired, the orders they held)."""

# --- storage: the embedded store's writer and PostgreSQL COPY -------------------------------
_SqlValue = int | float | str | bytes | None
_SqlRow = tuple[_SqlValue, ...] | list[_SqlValue]
_Group = tuple[str, Iterable[_SqlRow], int]
"""(sql, parameter rows, expected total of changed rows, or -1 for unchecked)."""

PLACED_ORDER_COLUMNS: Final[tuple[str, ...]]
"""Columns of ``orders`` in the order ``SqliteWriter`` and ``pg_copy_binary`` write them."""
PLACED_LINE_COLUMNS: Final[tuple[str, ...]]
"""Columns of ``order_lines`` in the order ``SqliteWriter`` and ``pg_copy_binary`` write them."""
PLACED_DECISION_COLUMNS: Final[tuple[str, ...]]
"""Columns of ``risk_decisions`` in the order ``SqliteWriter`` and ``pg_copy_binary`` write
them (the review columns follow, written later)."""

class SqliteWriteError(RuntimeError):
    """A write failed and was rolled back; ``sqlite_errorcode`` is SQLite's extended result
    code when SQLite itself failed."""

    sqlite_errorcode: int | None

class RowCountError(SqliteWriteError):
    """Group number ``group`` (counted over ``before`` then ``after``) changed ``actual`` rows,
    not the ``expected`` total."""

    group: int
    sql: str
    expected: int
    actual: int

@final
class SqliteWriter:
    """The embedded store's one writing connection to an SQLite file (WAL, synchronous=FULL,
    foreign_keys=ON, busy timeout), linked to the same system libsqlite3 as ``sqlite3``.
    Calls release the GIL; use it from one thread at a time."""

    def __new__(cls, path: str | os.PathLike[str], busy_timeout_ms: int = ...) -> SqliteWriter: ...
    def commit(
        self, before: Iterable[_Group], rows: OrderRows | None, after: Iterable[_Group]
    ) -> list[int]:
        """One BEGIN IMMEDIATE ... COMMIT without the GIL: ``before``, the orders and lines of
        ``rows`` (status pending_payment), ``after``. Returns the rows each group changed;
        on any error rolls back and raises SqliteWriteError (RowCountError for a count)."""
    def execute(self, sql: str, params: _SqlRow | None = None) -> int:
        """Run one statement (no implicit transaction); returns the rows it changed."""
    def query_one(self, sql: str, params: _SqlRow | None = None) -> tuple[_SqlValue, ...] | None:
        """The first row of a query, or None."""
    def rollback(self) -> None:
        """Roll back the open transaction, if any."""
    @property
    def in_transaction(self) -> bool: ...
    @property
    def closed(self) -> bool: ...
    def close(self) -> None:
        """Close the connection; safe to call twice."""

@final
class CommitQueue:
    """Commits of one ``SqliteWriter`` on a Rust thread that never takes the GIL, in
    submission order; ``fd`` (an eventfd) becomes readable when one has finished. With
    ``checkpoint_path``, a second thread checkpoints its WAL every ``checkpoint_interval_ms``,
    and once the WAL holds ``wal_restart_frames`` pages the commit thread checkpoints the rest
    between two batches, so that the WAL starts over instead of growing under steady load."""

    def __new__(
        cls,
        writer: SqliteWriter,
        checkpoint_path: str | os.PathLike[str] | None = None,
        checkpoint_interval_ms: int = 50,
        wal_restart_frames: int = 4096,
    ) -> CommitQueue: ...
    @property
    def fd(self) -> int: ...
    def submit(
        self, before: Iterable[_Group], rows: OrderRows | None, after: Iterable[_Group]
    ) -> int:
        """Queue one batch (as ``SqliteWriter.commit``); returns its ticket. ``rows`` must not
        change until the batch is done. After a batch fails, every later one fails unwritten
        until ``resume()``."""
    def resume(self) -> None:
        """Write again after a failed batch."""
    def take_done(self) -> list[tuple[int, list[int] | None, BaseException | None]]:
        """Finished batches since the last call, in order: (ticket, rows changed per group,
        None) or (ticket, None, the exception); clears ``fd``."""
    def close(self) -> None:
        """Finish what is queued, then stop the thread; safe to call twice."""

def pg_copy_binary(rows: OrderRows) -> tuple[bytes, bytes, bytes]:
    """The orders, the order lines and the risk decisions of ``rows`` as PostgreSQL binary COPY
    streams, columns in ``PLACED_ORDER_COLUMNS`` / ``PLACED_LINE_COLUMNS`` /
    ``PLACED_DECISION_COLUMNS`` order."""

def pg_array_text(rows: OrderRows) -> tuple[list[str], list[str]]:
    """The orders and the order lines of ``rows`` as PostgreSQL array literals (``{...}``),
    one per column in ``PLACED_ORDER_COLUMNS`` / ``PLACED_LINE_COLUMNS`` order, for a statement
    that unnests them: no Python object per order or value."""

SQLITE_TUNED: Final[bool]
"""Whether importing this module turned off SQLite's memory statistics (a global mutex taken
on every allocation) for the process: false when SQLite was initialised before it (e.g. a
``sqlite3`` connection opened first); correct either way, only slower."""

def sqlite_library() -> str | None:
    """The file that provides the SQLite ``SqliteWriter`` calls (the system libsqlite3)."""

# --- risk features ---------------------------------------------------------------------------
RISK_FEATURE_NAMES: Final[list[str]]
"""The 40 features' names in the catalogue's order (``docs/risk.md``)."""
RISK_DECIDED_BY_CODES: Final[list[str]]
"""The ``decided_by`` texts a packed decision (``orders.risk_packed``) writes as their index:
default, score, scoring_failed."""
RISK_KINDS: Final[list[str]]
"""The kinds of keys tracked: buyer, device, ip, address, email, phone, instrument,
device_sku, ip_sku."""

class _Order(Protocol):
    """Any object with the fields of ``pyorder.risk.events.OrderAttempt`` (read by attribute)."""

    @property
    def at_ms(self) -> int: ...
    @property
    def buyer(self) -> int: ...
    @property
    def account_created_ms(self) -> int: ...
    @property
    def amount(self) -> int: ...
    @property
    def sku(self) -> int: ...
    @property
    def quantity(self) -> int: ...
    @property
    def sku_release_ms(self) -> int | None: ...
    @property
    def device(self) -> str | None: ...
    @property
    def ip(self) -> str | None: ...
    @property
    def ip_region(self) -> str | None: ...
    @property
    def email_hash(self) -> str | None: ...
    @property
    def phone_hash(self) -> str | None: ...
    @property
    def agent(self) -> int: ...
    @property
    def address(self) -> str | None: ...
    @property
    def ship_region(self) -> str | None: ...

class _Payment(Protocol):
    """Any object with the fields of ``pyorder.risk.events.PaymentAttempt``."""

    @property
    def at_ms(self) -> int: ...
    @property
    def buyer(self) -> int: ...
    @property
    def amount(self) -> int: ...
    @property
    def instrument(self) -> str: ...
    @property
    def authorised(self) -> bool: ...
    @property
    def device(self) -> str | None: ...
    @property
    def ip(self) -> str | None: ...

_Int64s = npt.NDArray[np.int64]

class _OrderColumns(Protocol):
    """Orders as columns (``pyorder.risk.features.OrderColumns``): int64 arrays for the fields
    every order has, sequences with None for the optional ones."""

    @property
    def at_ms(self) -> _Int64s: ...
    @property
    def buyer(self) -> _Int64s: ...
    @property
    def account_created_ms(self) -> _Int64s: ...
    @property
    def amount(self) -> _Int64s: ...
    @property
    def sku(self) -> _Int64s: ...
    @property
    def quantity(self) -> _Int64s: ...
    @property
    def agent(self) -> _Int64s: ...
    @property
    def sku_release_ms(self) -> Sequence[int | None]: ...
    @property
    def device(self) -> Sequence[str | None]: ...
    @property
    def ip(self) -> Sequence[str | None]: ...
    @property
    def ip_region(self) -> Sequence[str | None]: ...
    @property
    def email_hash(self) -> Sequence[str | None]: ...
    @property
    def phone_hash(self) -> Sequence[str | None]: ...
    @property
    def address(self) -> Sequence[str | None]: ...
    @property
    def ship_region(self) -> Sequence[str | None]: ...

class _PaymentColumns(Protocol):
    """Payments as columns (``pyorder.risk.features.PaymentColumns``); ``order`` is the index of
    the order each pays (-1 when unknown; only ``replay_payments`` reads it)."""

    @property
    def at_ms(self) -> _Int64s: ...
    @property
    def buyer(self) -> _Int64s: ...
    @property
    def amount(self) -> _Int64s: ...
    @property
    def authorised(self) -> npt.NDArray[np.bool_]: ...
    @property
    def order(self) -> _Int64s: ...
    @property
    def instrument(self) -> Sequence[str]: ...
    @property
    def device(self) -> Sequence[str | None]: ...
    @property
    def ip(self) -> Sequence[str | None]: ...

_Features = npt.NDArray[np.float64]

@final
class RiskTracker:
    """Velocity features of orders and payments in bounded memory (``pyorder.risk.features``,
    ``docs/risk.md``). Features are 40 float64 (``RISK_FEATURE_NAMES``), NaN when missing;
    times are ms since the Unix epoch, amounts minor units. Thread-safe (one lock)."""

    def __new__(
        cls, max_keys: int = 1_000_000, *, limits: Mapping[str, int] | None = None
    ) -> RiskTracker:
        """At most ``max_keys`` keys of each kind (``limits`` overrides it per kind, by the
        names of ``RISK_KINDS``); a new key beyond it evicts one seen least recently."""
    def order_features(self, order: _Order) -> _Features:
        """The order's features before it is counted; it is not counted."""
    def observe_order(self, order: _Order) -> None:
        """Counts the order."""
    def score_and_observe_order(self, order: _Order) -> _Features:
        """The order's features before it is counted, and counts it (one pass)."""
    def payment_features(self, order: _Order, payment: _Payment) -> _Features:
        """The features for scoring ``payment`` of ``order``: the order's at the payment's time
        with the payment's amount and its instrument's features; the payment is not counted."""
    def observe_payment(self, payment: _Payment) -> None:
        """Counts the payment attempt."""
    def score_and_observe_payment(self, order: _Order, payment: _Payment) -> _Features:
        """``payment_features``, then counts the payment."""
    def replay(self, orders: _OrderColumns, payments: _PaymentColumns) -> _Features:
        """Counts every order and payment (each in time order, merged by time, orders first at
        equal times; ValueError when out of order) and returns each order's features, an
        (orders x 40) matrix."""
    def replay_payments(
        self, orders: _OrderColumns, payments: _PaymentColumns
    ) -> tuple[_Features, _Features]:
        """``replay``, and each payment's features (as ``score_and_observe_payment`` of the
        order its ``order`` column names; ValueError when that is not an earlier order)."""
    def sweep(self) -> None:
        """Drops every key idle longer than a day (the tracker also does it as keys arrive)."""
    def stats(self) -> dict[str, dict[str, int]]:
        """Per kind (``RISK_KINDS``): keys tracked, expired, evicted, and bytes held (a pass
        over every key, some ms for a million: for metrics, not per order)."""

RISK_LIST_KINDS: Final[list[str]]
"""The kinds of allow/block lists, in the order they are looked up."""

@final
class RiskEngine:
    """Risk control at intake: the velocity tracker, the model and the policy an ``OrderBook``
    assesses every order with (``OrderBook.set_risk``); see ``pyorder.risk.intake``."""

    def __new__(
        cls,
        model: RiskModel | None = None,
        *,
        failed: bool = False,
        on_failure: str = "allow",
        max_keys: int = 1_000_000,
        sample_allowed: float = 0.0,
    ) -> RiskEngine: ...
    @property
    def model_version(self) -> str | None: ...
    @property
    def sample_allowed(self) -> float:
        """The share of allowed orders whose features are kept in a decision row."""
    def samples(self, order_id: int) -> bool:
        """Whether order ``order_id``, if allowed, keeps its features (a hash of the id)."""
    @property
    def counts(self) -> tuple[int, int, int, int]:
        """Decisions since start: (allowed, reviewed, blocked, decided while the model failed)."""
    @property
    def rule_count(self) -> int: ...
    def tracked_keys(self) -> list[int]:
        """Keys tracked per kind (``RISK_KINDS`` order)."""
    def decide(
        self,
        row: Sequence[float],
        score: int | None,
        keys: Mapping[str, str] = ...,
        merchants: Sequence[str] = ...,
    ) -> tuple[str, bool, list[str], str]:
        """The policy's (outcome, three_ds, fired, decided_by) for one feature row and score."""
    def assess_payment(
        self,
        at_ms: int,
        buyer_number: int,
        amount: int,
        *,
        ip: str | None = None,
        keys: Mapping[str, str] = ...,
    ) -> tuple[int | None, str, bool, list[str], str, str]:
        """A payment about to start as risk control sees it: the buyer's features at
        ``at_ms`` (not counted), the score (None without a model) and the platform policy's
        decision: (score, outcome, three_ds, fired, decided_by, reasons as JSON text)."""
    def observe_payment(
        self,
        at_ms: int,
        buyer_number: int,
        amount: int,
        instrument: str,
        authorised: bool,
        *,
        device: str | None = None,
        ip: str | None = None,
    ) -> None:
        """Count one authorisation of a payment (its instrument fingerprint, authorised or
        declined): later orders' features read it (card testing)."""
    def set_policy(
        self,
        block: int,
        review: int,
        rules: Sequence[tuple[str, str, str | None, Sequence[tuple[str, float]]]],
        allow: Mapping[str, Sequence[str]],
        deny: Mapping[str, Sequence[str]],
    ) -> None:
        """Replace the policy: thresholds, rules (id, action, merchant key or None, program)
        and allow/block lists by kind (``RISK_LIST_KINDS``)."""
