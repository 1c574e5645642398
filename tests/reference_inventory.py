"""The inventory contract of ``docs/inventory.md``, written out in plain Python.

This is the specification in code: the property tests drive the Rust ``pyorder.inventory.Inventory``
and this model side by side and demand the same results, the same exceptions and the same stock
after every step. It is also the pure-Python baseline of the benchmarks, so it keeps to plain dicts
and lists and copies nothing per call.

The model cannot predict the core's reservation ids (unique and increasing, not necessarily
dense), so it either takes the id from the caller (``reservation_id=``) or hands out its own
dense ids from 1; a test that lets the model choose maps its ids to the core's.

Behaviour the contract leaves open is decided here the way an order-system engineer would expect
and marked "Not in the contract" where it happens.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Final, NamedTuple, TypeVar

import numpy as np
import numpy.typing as npt

from pyorder.inventory import (
    DuplicateSkuError,
    InvalidInventoryStateError,
    InvalidQuantityError,
    InventoryError,
    MatchPolicy,
    OutOfStockError,
    PurchaseLimitError,
    ReservationResolvedError,
    ReserveStatus,
    UnknownRegionError,
    UnknownReservationError,
    UnknownSkuError,
    UnknownWarehouseError,
)

MAX_QUANTITY: Final = 1_000_000_000
"""Largest quantity of one order line."""
MAX_LINES: Final = 1000
"""Most lines in one order."""
MAX_TIMEOUT_MS: Final = 30 * 24 * 60 * 60 * 1000
"""Longest reservation timeout: 30 days."""
DEFAULT_TIMEOUT_MS: Final = 15 * 60 * 1000
NO_WAREHOUSE: Final = 0xFFFF_FFFF
"""Serving warehouse reported for the items of a refused order in a batch."""
U32_MAX: Final = 0xFFFF_FFFF
U64_MAX: Final = 0xFFFF_FFFF_FFFF_FFFF

NOT_COUNTED: Final = -1

PENDING: Final = "pending"
CONFIRMED: Final = "confirmed"
RELEASED: Final = "released"
EXPIRED: Final = "expired"

_ALREADY: Final = {
    CONFIRMED: ReserveStatus.ALREADY_CONFIRMED,
    RELEASED: ReserveStatus.ALREADY_RELEASED,
    EXPIRED: ReserveStatus.ALREADY_EXPIRED,
}
_POLICIES: Final = frozenset(p.value for p in MatchPolicy)

E = TypeVar("E", bound=InventoryError)


def _error(cls: type[E], message: str, **attrs: object) -> E:
    """``cls(message)`` with ``attrs`` set on the instance, as the core does."""
    exc = cls(message)
    for name, value in attrs.items():
        setattr(exc, name, value)
    return exc


def _ints(values: Iterable[int] | npt.NDArray[np.integer]) -> list[int]:
    """Plain Python ints (numpy's ``tolist`` is the fast way out of an array)."""
    if isinstance(values, np.ndarray):
        out: list[int] = values.tolist()
        return out
    return [int(x) for x in values]


def clock_ms() -> int:
    """Milliseconds since the Unix epoch (the clock used when ``now_ms`` is not given)."""
    return time.time_ns() // 1_000_000


class Level(NamedTuple):
    """Units of one SKU in one warehouse or in total; ``on_hand = available + reserved + sold``."""

    on_hand: int
    available: int
    reserved: int
    sold: int


class Slot:
    """Units of one SKU in one warehouse. On-hand is derived, so it cannot drift from its parts."""

    __slots__ = ("available", "reserved", "sold")

    def __init__(self, on_hand: int = 0) -> None:
        self.available = on_hand
        self.reserved = 0
        self.sold = 0

    @property
    def on_hand(self) -> int:
        return self.available + self.reserved + self.sold

    def level(self) -> Level:
        return Level(self.on_hand, self.available, self.reserved, self.sold)


@dataclass(slots=True)
class Reservation:
    """A pending reservation: lines are ``(sku, warehouse, quantity)`` in the order reserved.

    ``counted[i]`` is the limit epoch of line i's SKU when its units were counted for the
    buyer, or ``NOT_COUNTED`` (the SKU had no limit then): only units still counted are given
    back on release, expiry or a partial confirm.
    """

    reservation: int
    buyer: int
    deadline_ms: int
    lines: list[tuple[int, int, int]]
    counted: list[int]


@dataclass(slots=True)
class Info:
    """What ``reservation(id)`` reports (the fields of the core's ``ReservationInfo``)."""

    reservation: int
    state: str
    buyer: int
    deadline_ms: int
    lines: list[tuple[int, int, int]]


@dataclass(slots=True)
class BatchResult:
    """Per-order outcome of ``reserve_batch`` (the fields of the core's ``ReserveBatchResult``)."""

    status: list[int]
    reservation: list[int]
    warehouse: list[int]
    failed_item: list[int]


class Refusal(NamedTuple):
    """Why an order was refused: a status and the index of the line (within the order) to blame."""

    status: ReserveStatus
    line: int


StateArrays = dict[str, npt.NDArray[np.generic]]

STATE_DTYPES: Final[dict[str, type[np.generic]]] = {
    "sku_count": np.uint64,
    "warehouse_count": np.uint64,
    "next_reservation_id": np.uint64,
    "stock_sku": np.uint32,
    "stock_warehouse": np.uint32,
    "stock_on_hand": np.int64,
    "stock_sold": np.int64,
    "limit_sku": np.uint32,
    "limit_units": np.uint64,
    "bought_sku": np.uint32,
    "bought_buyer": np.uint64,
    "bought_units": np.uint64,
    "region_id": np.uint32,
    "region_offsets": np.uint64,
    "region_warehouses": np.uint32,
    "res_id": np.uint64,
    "res_buyer": np.uint64,
    "res_deadline_ms": np.uint64,
    "res_offsets": np.uint64,
    "line_sku": np.uint32,
    "line_warehouse": np.uint32,
    "line_quantity": np.uint32,
    "line_counted": np.uint8,
}
"""Every key of an exported state and its dtype (docs/inventory.md, "Export and restore")."""
OPTIONAL_STATE_KEYS: Final = frozenset({"line_counted"})
"""Keys a restore does without: with no ``line_counted``, every pending line of a SKU with a
limit counts against it."""


class ReferenceInventory:
    """Stock of SKUs across warehouses with two-phase reservations, as in docs/inventory.md."""

    def __init__(self) -> None:
        self._warehouses = 1  # warehouse 0 exists from the start
        self._regions: dict[int, list[int]] = {}
        self._stock: list[dict[int, Slot]] = []  # per SKU: warehouse -> slot
        self._limit: list[int] = []  # per SKU: units per buyer, 0 = no limit
        # Per SKU, only while it has a limit: buyer -> units reserved + confirmed since then.
        self._bought: list[dict[int, int]] = []
        # Per SKU: bumped whenever a limit is removed, which drops its counts; units counted in
        # an earlier epoch are no longer part of any count.
        self._epoch: list[int] = []
        self._pending: dict[int, Reservation] = {}
        self._resolved: dict[int, str] = {}  # final state of resolved reservations
        self._due: list[tuple[int, int]] = []  # heap of (deadline, id); stale entries skipped
        self._next_id = 1

    # ------------------------------------------------------------------ sizes
    @property
    def sku_count(self) -> int:
        return len(self._stock)

    @property
    def warehouse_count(self) -> int:
        return self._warehouses

    @property
    def open_reservations(self) -> int:
        return len(self._pending)

    # ------------------------------------------------------------------ checks
    def _check_sku(self, sku: int) -> None:
        if not 0 <= sku < len(self._stock):
            raise _error(UnknownSkuError, f"unknown SKU {sku}", sku=sku)

    def _check_warehouse(self, warehouse: int) -> None:
        if not 0 <= warehouse < self._warehouses:
            raise _error(
                UnknownWarehouseError, f"unknown warehouse {warehouse}", warehouse=warehouse
            )

    @staticmethod
    def _check_timeout(timeout_ms: int) -> None:
        if not 1 <= timeout_ms <= MAX_TIMEOUT_MS:
            raise InventoryError(f"timeout_ms must be in 1..={MAX_TIMEOUT_MS}, got {timeout_ms}")

    @staticmethod
    def _check_policy(policy: str) -> str:
        policy = str(policy.value if isinstance(policy, MatchPolicy) else policy)
        if policy not in _POLICIES:
            raise InventoryError(f"unknown matching policy {policy!r}")
        return policy

    # ------------------------------------------------------------------ warehouses and regions
    def add_warehouse(self) -> int:
        self._warehouses += 1
        return self._warehouses - 1

    def set_region(self, region: int, warehouses: Sequence[int]) -> None:
        if not 0 <= region <= U32_MAX:
            raise InventoryError(f"region must be a u32, got {region}")
        for w in warehouses:
            self._check_warehouse(w)
        if len(set(warehouses)) != len(warehouses):
            # Not in the contract: a warehouse listed twice is a configuration mistake.
            raise InventoryError(f"region {region} lists a warehouse twice: {list(warehouses)}")
        self._regions[region] = list(warehouses)

    def region_warehouses(self, region: int) -> list[int]:
        if region not in self._regions:
            raise _error(UnknownRegionError, f"unknown region {region}", region=region)
        return list(self._regions[region])

    # ------------------------------------------------------------------ catalogue
    def add_sku(self, stock: int | Mapping[int, int] = 0, *, limit_per_buyer: int = 0) -> int:
        units = {0: stock} if isinstance(stock, int) else dict(stock)
        for w, n in units.items():
            self._check_warehouse(w)
            if n < 0:
                raise InvalidQuantityError(f"on-hand units must be >= 0, got {n}")
        if limit_per_buyer < 0:
            raise InventoryError(f"limit_per_buyer must be >= 0, got {limit_per_buyer}")
        self._stock.append({w: Slot(units[w]) for w in sorted(units)})
        self._limit.append(limit_per_buyer)
        self._bought.append({})
        self._epoch.append(0)
        return len(self._stock) - 1

    def add_skus(self, on_hand: Iterable[int], warehouse: int = 0) -> npt.NDArray[np.uint32]:
        units = _ints(on_hand)
        self._check_warehouse(warehouse)
        if any(n < 0 for n in units):
            raise InvalidQuantityError("on-hand units must be >= 0")
        first = len(self._stock)
        self._stock.extend({warehouse: Slot(n)} for n in units)
        self._limit.extend(0 for _ in units)
        self._bought.extend({} for _ in units)
        self._epoch.extend(0 for _ in units)
        return np.arange(first, first + len(units), dtype=np.uint32)

    def restock(self, sku: int, quantity: int, warehouse: int = 0) -> None:
        """Add units on hand; they become available. (Not in the contract: the order in which
        a bad SKU, warehouse and quantity are reported; the tests accept any when several are
        bad at once.)"""
        self._check_sku(sku)
        self._check_warehouse(warehouse)
        if quantity < 1:
            raise InvalidQuantityError(f"restock quantity must be > 0, got {quantity}")
        slots = self._stock[sku]
        if warehouse not in slots:  # restocking opens the warehouse for the SKU
            slots[warehouse] = Slot()
            self._stock[sku] = slots = dict(sorted(slots.items()))
        slots[warehouse].available += quantity

    def adjust(self, sku: int, delta: int, warehouse: int = 0) -> None:
        """A stock count: on-hand moves by ``delta`` but never below reserved + sold.

        Not in the contract: going below is an InvalidQuantityError (a quantity that is more
        than there is); a positive count in a warehouse not holding the SKU opens it there,
        like ``restock``; ``delta == 0`` changes nothing."""
        self._check_sku(sku)
        self._check_warehouse(warehouse)
        slot = self._stock[sku].get(warehouse)
        if slot is None:
            if delta < 0:
                raise InvalidQuantityError(
                    f"SKU {sku} holds no units in warehouse {warehouse} to adjust by {delta}"
                )
            if delta == 0:
                return
            self.restock(sku, delta, warehouse)
            return
        if slot.available + delta < 0:
            raise InvalidQuantityError(
                f"adjusting SKU {sku} by {delta} in warehouse {warehouse} would leave on-hand "
                f"{slot.on_hand + delta} below reserved + sold {slot.reserved + slot.sold}"
            )
        slot.available += delta

    def set_purchase_limit(self, sku: int, limit_per_buyer: int) -> None:
        """Counting happens only while the SKU has a limit: setting one starts the count from
        zero, changing it keeps the counts, setting 0 removes the limit and its counts."""
        self._check_sku(sku)
        if limit_per_buyer < 0:
            raise InventoryError(f"limit_per_buyer must be >= 0, got {limit_per_buyer}")
        if limit_per_buyer == 0 and self._limit[sku] > 0:
            self._bought[sku] = {}
            self._epoch[sku] += 1
        self._limit[sku] = limit_per_buyer

    def purchase_limit(self, sku: int) -> int:
        self._check_sku(sku)
        return self._limit[sku]

    def bought_by(self, sku: int, buyer: int) -> int:
        """Units of ``sku`` that ``buyer`` holds reserved plus has bought since the SKU's limit
        was set (0 for a SKU without a limit)."""
        self._check_sku(sku)
        return self._bought[sku].get(buyer, 0)

    def stock(self, sku: int, warehouse: int | None = None) -> Level:
        self._check_sku(sku)
        slots = self._stock[sku]
        if warehouse is not None:
            self._check_warehouse(warehouse)
            slot = slots.get(warehouse)
            return slot.level() if slot is not None else Level(0, 0, 0, 0)
        a = r = s = 0
        for slot in slots.values():
            a += slot.available
            r += slot.reserved
            s += slot.sold
        return Level(a + r + s, a, r, s)

    def stock_by_warehouse(self, sku: int) -> dict[int, Level]:
        self._check_sku(sku)
        return {w: slot.level() for w, slot in self._stock[sku].items()}

    # ------------------------------------------------------------------ reserving
    def _refuse(
        self, lines: Sequence[tuple[int, int]], buyer: int, region: int | None
    ) -> Refusal | None:
        """Validation steps 1-4 of the contract, in order; None when the order may be matched."""
        if region is not None and region not in self._regions:
            return Refusal(ReserveStatus.UNKNOWN_REGION, 0)
        if not lines or len(lines) > MAX_LINES:
            return Refusal(ReserveStatus.INVALID_QUANTITY, 0)
        n_skus = len(self._stock)
        seen: set[int] = set()
        for i, (sku, qty) in enumerate(lines):
            if not 0 <= sku < n_skus:
                return Refusal(ReserveStatus.UNKNOWN_SKU, i)
            if not 1 <= qty <= MAX_QUANTITY:
                return Refusal(ReserveStatus.INVALID_QUANTITY, i)
            if sku in seen:
                return Refusal(ReserveStatus.DUPLICATE_SKU, i)
            seen.add(sku)
        for i, (sku, qty) in enumerate(lines):
            limit = self._limit[sku]
            if limit > 0 and self._bought[sku].get(buyer, 0) + qty > limit:
                return Refusal(ReserveStatus.LIMIT_EXCEEDED, i)
        return None

    def _serves(self, sku: int, qty: int, warehouse: int) -> bool:
        slot = self._stock[sku].get(warehouse)
        return slot is not None and slot.available >= qty

    def _nearest(self, sku: int, qty: int, candidates: Iterable[int]) -> int | None:
        """The first candidate warehouse holding ``qty`` available units of ``sku``."""
        slots = self._stock[sku]
        for w in candidates:
            slot = slots.get(w)
            if slot is not None and slot.available >= qty:
                return w
        return None

    def _match(
        self, lines: Sequence[tuple[int, int]], region: int | None, policy: str
    ) -> list[int] | int:
        """Serving warehouse per line, or the index of the line that refuses the order."""
        candidates: Sequence[int] = (
            range(self._warehouses) if region is None else self._regions[region]
        )
        if policy != MatchPolicy.NEAREST_PER_LINE:
            for w in candidates:  # one parcel from the nearest warehouse serving every line
                if all(self._serves(sku, qty, w) for sku, qty in lines):
                    return [w] * len(lines)
        chosen: list[int] = []
        for i, (sku, qty) in enumerate(lines):
            nearest = self._nearest(sku, qty, candidates)
            if nearest is None:
                return i  # the first line no candidate can serve
            chosen.append(nearest)
        if policy == MatchPolicy.ONE_PARCEL_ONLY:
            # Every line could be served somewhere, but no one warehouse serves them all: blame
            # the first line the nearest candidate cannot serve (no candidates: the first line).
            if not candidates:
                return 0
            first = candidates[0]
            return next(
                i for i, (sku, qty) in enumerate(lines) if not self._serves(sku, qty, first)
            )
        return chosen

    def _raise_refusal(
        self, refusal: Refusal, lines: Sequence[tuple[int, int]], buyer: int, region: int | None
    ) -> InventoryError:
        status, i = refusal
        if status == ReserveStatus.UNKNOWN_REGION:
            return _error(UnknownRegionError, f"unknown region {region}", region=region)
        if not lines or len(lines) > MAX_LINES:
            return InvalidQuantityError(f"an order has 1 to {MAX_LINES} lines, got {len(lines)}")
        sku, qty = lines[i]
        if status == ReserveStatus.UNKNOWN_SKU:
            return _error(UnknownSkuError, f"unknown SKU {sku}", sku=sku)
        if status == ReserveStatus.INVALID_QUANTITY:
            return InvalidQuantityError(
                f"quantity of SKU {sku} must be between 1 and {MAX_QUANTITY}, got {qty}"
            )
        if status == ReserveStatus.DUPLICATE_SKU:
            return _error(DuplicateSkuError, f"SKU {sku} appears twice in one order", sku=sku)
        if status == ReserveStatus.LIMIT_EXCEEDED:
            limit = self._limit[sku]
            return _error(
                PurchaseLimitError,
                f"purchase limit of SKU {sku} is {limit} units per buyer: buyer {buyer} holds "
                f"{self._bought[sku].get(buyer, 0)}, asked for {qty} more",
                sku=sku,
                limit=limit,
            )
        return _error(OutOfStockError, f"SKU {sku} is out of stock for this order", sku=sku)

    def _try_reserve(
        self,
        lines: Sequence[tuple[int, int]],
        buyer: int,
        region: int | None,
        policy: str,
        deadline_ms: int,
        reservation_id: int | None,
    ) -> tuple[int, list[int]] | Refusal:
        """Reserve one order, all lines or none: (id, warehouse per line) or why it was refused."""
        refusal = self._refuse(lines, buyer, region)
        if refusal is not None:
            return refusal
        chosen = self._match(lines, region, policy)
        if isinstance(chosen, int):
            return Refusal(ReserveStatus.OUT_OF_STOCK, chosen)
        rid = self._take_id(reservation_id)
        reserved: list[tuple[int, int, int]] = []
        counted: list[int] = []
        for (sku, qty), w in zip(lines, chosen, strict=True):
            slot = self._stock[sku][w]
            slot.available -= qty
            slot.reserved += qty
            reserved.append((sku, w, qty))
            if self._limit[sku] > 0:
                bought = self._bought[sku]
                bought[buyer] = bought.get(buyer, 0) + qty
                counted.append(self._epoch[sku])
            else:
                counted.append(NOT_COUNTED)
        self._pending[rid] = Reservation(rid, buyer, deadline_ms, reserved, counted)
        heapq.heappush(self._due, (deadline_ms, rid))
        return rid, chosen

    def _take_id(self, reservation_id: int | None) -> int:
        if reservation_id is None:
            reservation_id = self._next_id
        elif reservation_id < self._next_id:
            raise ValueError(
                f"reservation id {reservation_id} is not above every id handed out before "
                f"(next is {self._next_id})"
            )
        self._next_id = reservation_id + 1
        return reservation_id

    def reserve(
        self,
        sku: int,
        quantity: int,
        *,
        buyer: int = 0,
        region: int | None = None,
        timeout_ms: int = DEFAULT_TIMEOUT_MS,
        now_ms: int | None = None,
        reservation_id: int | None = None,
    ) -> int:
        """Reserve one line; returns the reservation id."""
        return self.reserve_order(
            [(sku, quantity)],
            buyer=buyer,
            region=region,
            timeout_ms=timeout_ms,
            now_ms=now_ms,
            reservation_id=reservation_id,
        )

    def reserve_order(
        self,
        lines: Sequence[tuple[int, int]],
        *,
        buyer: int = 0,
        region: int | None = None,
        policy: str = MatchPolicy.PREFER_ONE_PARCEL,
        timeout_ms: int = DEFAULT_TIMEOUT_MS,
        now_ms: int | None = None,
        reservation_id: int | None = None,
    ) -> int:
        """Reserve every ``(sku, quantity)`` line of one order, all or none."""
        self._check_timeout(timeout_ms)
        policy = self._check_policy(policy)
        now = clock_ms() if now_ms is None else now_ms
        outcome = self._try_reserve(lines, buyer, region, policy, now + timeout_ms, reservation_id)
        if isinstance(outcome, Refusal):
            raise self._raise_refusal(outcome, lines, buyer, region)
        return outcome[0]

    def reserve_batch(
        self,
        skus: Sequence[int] | npt.NDArray[np.uint32],
        quantities: Sequence[int] | npt.NDArray[np.uint32],
        *,
        order_offsets: Sequence[int] | npt.NDArray[np.uint32] | None = None,
        buyers: Sequence[int] | npt.NDArray[np.uint64] | None = None,
        regions: Sequence[int] | npt.NDArray[np.uint32] | None = None,
        policy: str = MatchPolicy.PREFER_ONE_PARCEL,
        timeout_ms: int = DEFAULT_TIMEOUT_MS,
        now_ms: int | None = None,
        reservation_ids: Sequence[int] | npt.NDArray[np.uint64] | None = None,
    ) -> BatchResult:
        """Reserve many orders, exactly as if one after another, in order.

        ``failed_item`` is the index (into ``skus``) of the item that refused an order; an
        order refused as a whole (unknown region, no lines) blames its first item position
        (not in the contract, which names no item for those).
        ``reservation_ids[k]``, when given and not 0, is the id order ``k`` gets if it succeeds.
        """
        sku_list = _ints(skus)
        qty_list = _ints(quantities)
        if len(sku_list) != len(qty_list):
            raise InventoryError("skus and quantities differ in length")
        if order_offsets is None:
            offsets = list(range(len(sku_list) + 1))
        else:
            offsets = _ints(order_offsets)
            if (
                not offsets
                or offsets[0] != 0
                or offsets[-1] != len(sku_list)
                or any(a > b for a, b in pairwise(offsets))
            ):
                raise InventoryError("order_offsets must rise from 0 to len(skus)")
        n_orders = len(offsets) - 1
        buyer_list = [0] * n_orders if buyers is None else _ints(buyers)
        region_list: list[int | None] = [None] * n_orders
        if regions is not None:
            region_list = list(_ints(regions))
        if len(buyer_list) != n_orders or len(region_list) != n_orders:
            raise InventoryError("buyers and regions need one entry per order")
        self._check_timeout(timeout_ms)
        policy = self._check_policy(policy)
        deadline = (clock_ms() if now_ms is None else now_ms) + timeout_ms

        result = BatchResult([], [], [NO_WAREHOUSE] * len(sku_list), [])
        for k in range(n_orders):
            start, end = offsets[k], offsets[k + 1]
            lines = list(zip(sku_list[start:end], qty_list[start:end], strict=True))
            rid = None if reservation_ids is None else int(reservation_ids[k]) or None
            outcome = self._try_reserve(lines, buyer_list[k], region_list[k], policy, deadline, rid)
            if isinstance(outcome, Refusal):
                result.status.append(outcome.status)
                result.reservation.append(0)
                result.failed_item.append(start + outcome.line)
            else:
                result.status.append(ReserveStatus.OK)
                result.reservation.append(outcome[0])
                result.warehouse[start:end] = outcome[1]
                result.failed_item.append(-1)
        return result

    # ------------------------------------------------------------------ resolving
    def _pending_or_raise(self, reservation: int, now: int) -> Reservation:
        """The pending reservation, expiring it on the spot when its deadline has passed."""
        res = self._pending.get(reservation)
        if res is None:
            state = self._resolved.get(reservation)
            if state is None:
                raise _error(
                    UnknownReservationError,
                    f"unknown reservation {reservation}",
                    reservation=reservation,
                )
            raise self._resolved_error(reservation, state)
        if now >= res.deadline_ms:
            self._resolve(res, EXPIRED, None)
            raise self._resolved_error(reservation, EXPIRED)
        return res

    @staticmethod
    def _resolved_error(reservation: int, state: str) -> ReservationResolvedError:
        return _error(
            ReservationResolvedError,
            f"reservation {reservation} is already {state}",
            reservation=reservation,
            state=state,
        )

    def _still_counted(self, sku: int, epoch: int) -> bool:
        """Whether units counted in ``epoch`` are part of the SKU's current count."""
        return epoch == self._epoch[sku] and self._limit[sku] > 0

    def _resolve(self, res: Reservation, state: str, sold: Sequence[int] | None) -> None:
        """Resolve a pending reservation: ``sold[i]`` units of line i are sold (none when
        ``sold`` is None), the rest return to available in the line's warehouse."""
        for i, (sku, w, qty) in enumerate(res.lines):
            q = 0 if sold is None else sold[i]
            slot = self._stock[sku][w]
            slot.reserved -= qty
            slot.sold += q
            slot.available += qty - q
            if q != qty and self._still_counted(sku, res.counted[i]):
                bought = self._bought[sku]
                left = bought[res.buyer] - (qty - q)
                if left:
                    bought[res.buyer] = left
                else:
                    del bought[res.buyer]
        del self._pending[res.reservation]
        self._resolved[res.reservation] = state

    def confirm(
        self,
        reservation: int,
        quantities: int | Sequence[int] | None = None,
        *,
        now_ms: int | None = None,
    ) -> None:
        """Sell a pending reservation; ``quantities`` (per line, ``0 <= q <= reserved``) sells
        fewer units and returns the rest. An int stands for the one line of a single-line
        reservation (not in the contract: with several lines an int is refused)."""
        now = clock_ms() if now_ms is None else now_ms
        res = self._pending_or_raise(reservation, now)
        if quantities is None:
            sold = [qty for _, _, qty in res.lines]
        else:
            sold = [quantities] if isinstance(quantities, int) else [int(q) for q in quantities]
            if len(sold) != len(res.lines):
                raise InvalidQuantityError(
                    f"reservation {reservation} has {len(res.lines)} lines, "
                    f"got {len(sold)} quantities"
                )
            for (sku, _, qty), q in zip(res.lines, sold, strict=True):
                if not 0 <= q <= qty:
                    raise InvalidQuantityError(
                        f"confirmed quantity of SKU {sku} must be between 0 and {qty}, got {q}"
                    )
        self._resolve(res, CONFIRMED, sold)

    def release(self, reservation: int, *, now_ms: int | None = None) -> None:
        """Return a pending reservation's units to stock."""
        now = clock_ms() if now_ms is None else now_ms
        res = self._pending_or_raise(reservation, now)
        self._resolve(res, RELEASED, None)

    def _batch_resolve(self, reservations: Iterable[int], now: int, confirm: bool) -> list[int]:
        statuses: list[int] = []
        for rid in _ints(reservations):
            res = self._pending.get(rid)
            if res is None:
                state = self._resolved.get(rid)
                statuses.append(
                    ReserveStatus.UNKNOWN_RESERVATION if state is None else _ALREADY[state]
                )
            elif now >= res.deadline_ms:
                self._resolve(res, EXPIRED, None)
                statuses.append(ReserveStatus.ALREADY_EXPIRED)
            else:
                sold = [qty for _, _, qty in res.lines] if confirm else None
                self._resolve(res, CONFIRMED if confirm else RELEASED, sold)
                statuses.append(ReserveStatus.OK)
        return statuses

    def confirm_batch(self, reservations: Iterable[int], *, now_ms: int | None = None) -> list[int]:
        """Confirm many reservations in full; one status each, as if one after another."""
        return self._batch_resolve(reservations, clock_ms() if now_ms is None else now_ms, True)

    def release_batch(self, reservations: Iterable[int], *, now_ms: int | None = None) -> list[int]:
        return self._batch_resolve(reservations, clock_ms() if now_ms is None else now_ms, False)

    # ------------------------------------------------------------------ queries and expiry
    def reservation(self, reservation: int) -> Info:
        """A pending reservation in full; a resolved one raises ReservationResolvedError."""
        res = self._pending.get(reservation)
        if res is None:
            self.reservation_state(reservation)  # raises UnknownReservationError if unknown
            raise self._resolved_error(reservation, self._resolved[reservation])
        return Info(res.reservation, PENDING, res.buyer, res.deadline_ms, list(res.lines))

    def reservation_state(self, reservation: int) -> str:
        """The stored state. Not in the contract: a pending reservation past its deadline
        stays "pending" here until expire_due, confirm or release expires it, since this call
        takes no clock."""
        if reservation in self._pending:
            return PENDING
        state = self._resolved.get(reservation)
        if state is None:
            raise _error(
                UnknownReservationError,
                f"unknown reservation {reservation}",
                reservation=reservation,
            )
        return state

    def _peek_due(self) -> tuple[int, int] | None:
        due = self._due
        while due and due[0][1] not in self._pending:
            heapq.heappop(due)  # stale: resolved since it was pushed
        return due[0] if due else None

    def expire_due(self, now_ms: int | None = None, limit: int = 4096) -> list[int]:
        """Expire at most ``limit`` pending reservations with ``deadline <= now``, earliest
        (deadline, id) first; returns their ids."""
        if limit < 0:
            raise InventoryError(f"limit must be >= 0, got {limit}")
        now = clock_ms() if now_ms is None else now_ms
        expired: list[int] = []
        while len(expired) < limit:
            top = self._peek_due()
            if top is None or top[0] > now:
                break
            heapq.heappop(self._due)
            self._resolve(self._pending[top[1]], EXPIRED, None)
            expired.append(top[1])
        if len(self._due) > 2 * len(self._pending) + 1024:
            self._due = [(r.deadline_ms, r.reservation) for r in self._pending.values()]
            heapq.heapify(self._due)
        return expired

    def next_deadline_ms(self) -> int | None:
        top = self._peek_due()
        return None if top is None else top[0]

    def prune_resolved(self, up_to: int) -> int:
        """Forget the final state of resolved reservations with id <= ``up_to``."""
        gone = [rid for rid in self._resolved if rid <= up_to]
        for rid in gone:
            del self._resolved[rid]
        return len(gone)

    def check_invariants(self) -> None:
        for sku, slots in enumerate(self._stock):
            for w, slot in slots.items():
                if min(slot.available, slot.reserved, slot.sold) < 0:
                    raise InvalidInventoryStateError(f"negative counter of SKU {sku} in {w}")
        held: dict[tuple[int, int], int] = {}
        for res in self._pending.values():
            for sku, w, qty in res.lines:
                held[sku, w] = held.get((sku, w), 0) + qty
        counted: dict[tuple[int, int], int] = {}
        for res in self._pending.values():
            for (sku, _, qty), epoch in zip(res.lines, res.counted, strict=True):
                if self._still_counted(sku, epoch):
                    counted[sku, res.buyer] = counted.get((sku, res.buyer), 0) + qty
        for (sku, buyer), units in counted.items():
            if self._bought[sku].get(buyer, 0) < units:
                raise InvalidInventoryStateError(
                    f"SKU {sku}: buyer {buyer} counted below the units they hold reserved"
                )
        for sku, slots in enumerate(self._stock):
            if self._limit[sku] == 0 and self._bought[sku]:
                raise InvalidInventoryStateError(f"SKU {sku} counts buyers without a limit")
            for w, slot in slots.items():
                if slot.reserved != held.get((sku, w), 0):
                    raise InvalidInventoryStateError(
                        f"SKU {sku} in warehouse {w}: reserved {slot.reserved} but pending "
                        f"reservations hold {held.get((sku, w), 0)}"
                    )

    # ------------------------------------------------------------------ export and restore
    def export_state(self) -> StateArrays:
        """The state as the arrays of docs/inventory.md ("Export and restore")."""
        pending_held: dict[tuple[int, int], int] = {}  # counted units of pending reservations
        for res in self._pending.values():
            for (sku, _, qty), epoch in zip(res.lines, res.counted, strict=True):
                if self._still_counted(sku, epoch):
                    pending_held[sku, res.buyer] = pending_held.get((sku, res.buyer), 0) + qty
        cols: dict[str, list[int]] = {key: [] for key in STATE_DTYPES}
        cols["sku_count"].append(len(self._stock))
        cols["warehouse_count"].append(self._warehouses)
        cols["next_reservation_id"].append(self._next_id)
        for sku, slots in enumerate(self._stock):
            for w, slot in slots.items():
                cols["stock_sku"].append(sku)
                cols["stock_warehouse"].append(w)
                cols["stock_on_hand"].append(slot.on_hand)
                cols["stock_sold"].append(slot.sold)
            if self._limit[sku] > 0:
                cols["limit_sku"].append(sku)
                cols["limit_units"].append(self._limit[sku])
            for buyer, units in sorted(self._bought[sku].items()):
                confirmed = units - pending_held.get((sku, buyer), 0)
                if confirmed > 0:
                    cols["bought_sku"].append(sku)
                    cols["bought_buyer"].append(buyer)
                    cols["bought_units"].append(confirmed)
        cols["region_offsets"].append(0)
        for region, warehouses in sorted(self._regions.items()):
            cols["region_id"].append(region)
            cols["region_warehouses"].extend(warehouses)
            cols["region_offsets"].append(len(cols["region_warehouses"]))
        cols["res_offsets"].append(0)
        for rid in sorted(self._pending):
            res = self._pending[rid]
            cols["res_id"].append(rid)
            cols["res_buyer"].append(res.buyer)
            cols["res_deadline_ms"].append(res.deadline_ms)
            for (sku, w, qty), epoch in zip(res.lines, res.counted, strict=True):
                cols["line_counted"].append(int(self._still_counted(sku, epoch)))
                cols["line_sku"].append(sku)
                cols["line_warehouse"].append(w)
                cols["line_quantity"].append(qty)
            cols["res_offsets"].append(len(cols["line_sku"]))
        return {key: np.array(cols[key], dtype=dtype) for key, dtype in STATE_DTYPES.items()}

    @classmethod
    def from_state(cls, state: Mapping[str, npt.NDArray[np.generic]]) -> ReferenceInventory:
        """Rebuild from exported arrays; available and reserved are recomputed from the pending
        reservations. Inconsistent input raises InvalidInventoryStateError. Resolved
        reservations are not part of the state: after a restore they are unknown."""

        def bad(message: str) -> InvalidInventoryStateError:
            return InvalidInventoryStateError(f"invalid inventory state: {message}")

        missing = [k for k in STATE_DTYPES if k not in state and k not in OPTIONAL_STATE_KEYS]
        if missing:
            raise bad(f"missing arrays {missing}")
        a = {
            key: [int(x) for x in np.asarray(state[key]).ravel()]
            for key in STATE_DTYPES
            if key in state
        }
        has_counted = "line_counted" in a
        for key in ("sku_count", "warehouse_count", "next_reservation_id"):
            if len(a[key]) != 1:
                raise bad(f"{key} must hold one value")

        def same_length(*keys: str) -> int:
            n = len(a[keys[0]])
            if any(len(a[k]) != n for k in keys):
                raise bad(f"arrays {keys} differ in length")
            return n

        def csr(offsets: list[int], n_rows: int, n_items: int, what: str) -> None:
            if (
                len(offsets) != n_rows + 1
                or offsets[0] != 0
                or offsets[-1] != n_items
                or any(x > y for x, y in pairwise(offsets))
            ):
                raise bad(f"malformed {what} offsets")

        inv = cls()
        n_skus, inv._warehouses = a["sku_count"][0], a["warehouse_count"][0]
        inv._next_id = a["next_reservation_id"][0]
        if inv._warehouses < 1:
            raise bad("there is always at least warehouse 0")
        inv._stock = [{} for _ in range(n_skus)]
        inv._limit = [0] * n_skus
        inv._bought = [{} for _ in range(n_skus)]
        inv._epoch = [0] * n_skus

        def check_sku(sku: int) -> None:
            if not 0 <= sku < n_skus:
                raise bad(f"SKU {sku} out of range")

        def check_warehouse(w: int) -> None:
            if not 0 <= w < inv._warehouses:
                raise bad(f"warehouse {w} out of range")

        n = same_length("stock_sku", "stock_warehouse", "stock_on_hand", "stock_sold")
        for i in range(n):
            sku, w = a["stock_sku"][i], a["stock_warehouse"][i]
            on_hand, sold = a["stock_on_hand"][i], a["stock_sold"][i]
            check_sku(sku)
            check_warehouse(w)
            if w in inv._stock[sku]:
                raise bad(f"two rows for SKU {sku} in warehouse {w}")
            if not 0 <= sold <= on_hand:
                raise bad(f"SKU {sku} in warehouse {w}: sold {sold} of on-hand {on_hand}")
            slot = inv._stock[sku][w] = Slot(on_hand - sold)
            slot.sold = sold
        for sku in range(n_skus):
            inv._stock[sku] = dict(sorted(inv._stock[sku].items()))

        for i in range(same_length("limit_sku", "limit_units")):
            check_sku(a["limit_sku"][i])
            if a["limit_units"][i] == 0:
                raise bad(f"limit row {i} of SKU {a['limit_sku'][i]} is 0 (only limits > 0)")
            inv._limit[a["limit_sku"][i]] = a["limit_units"][i]
        for i in range(same_length("bought_sku", "bought_buyer", "bought_units")):
            sku, buyer = a["bought_sku"][i], a["bought_buyer"][i]
            check_sku(sku)
            if buyer in inv._bought[sku]:
                raise bad(f"two rows for buyer {buyer} of SKU {sku}")
            if a["bought_units"][i] > 0 and inv._limit[sku] > 0:  # counts exist with a limit
                inv._bought[sku][buyer] = a["bought_units"][i]

        n_regions = len(a["region_id"])
        csr(a["region_offsets"], n_regions, len(a["region_warehouses"]), "region")
        for i, region in enumerate(a["region_id"]):
            if region in inv._regions:
                raise bad(f"region {region} given twice")
            warehouses = a["region_warehouses"][a["region_offsets"][i] : a["region_offsets"][i + 1]]
            for w in warehouses:
                check_warehouse(w)
            inv._regions[region] = warehouses

        n_res = same_length("res_id", "res_buyer", "res_deadline_ms")
        n_lines = same_length(
            "line_sku",
            "line_warehouse",
            "line_quantity",
            *(["line_counted"] if has_counted else []),
        )
        csr(a["res_offsets"], n_res, n_lines, "reservation")
        for i in range(n_res):
            rid, buyer = a["res_id"][i], a["res_buyer"][i]
            if not 1 <= rid < inv._next_id or rid in inv._pending:
                raise bad(f"reservation id {rid} repeated or not below next_reservation_id")
            start, end = a["res_offsets"][i], a["res_offsets"][i + 1]
            if start == end:
                raise bad(f"reservation {rid} has no lines")
            lines: list[tuple[int, int, int]] = []
            counted: list[int] = []
            for j in range(start, end):
                sku, w, qty = a["line_sku"][j], a["line_warehouse"][j], a["line_quantity"][j]
                check_sku(sku)
                held = inv._stock[sku].get(w)
                if held is None:
                    raise bad(f"reservation {rid} holds SKU {sku} in warehouse {w}, not stocked")
                if not 1 <= qty <= MAX_QUANTITY or any(s == sku for s, _, _ in lines):
                    raise bad(f"reservation {rid}: bad line for SKU {sku}")
                if qty > held.available:
                    raise bad(f"SKU {sku} in warehouse {w}: reserved more than on hand - sold")
                held.available -= qty
                held.reserved += qty
                lines.append((sku, w, qty))
                if has_counted and a["line_counted"][j] not in (0, 1):
                    raise bad(f"line_counted[{j}] must be 0 or 1")
                # Open reservations are added back to the counts: those marked as counted, or
                # (no marks kept) every line of a SKU with a limit.
                if inv._limit[sku] > 0 and (not has_counted or a["line_counted"][j]):
                    inv._bought[sku][buyer] = inv._bought[sku].get(buyer, 0) + qty
                    counted.append(0)
                else:
                    counted.append(NOT_COUNTED)
            inv._pending[rid] = Reservation(rid, buyer, a["res_deadline_ms"][i], lines, counted)
            inv._due.append((a["res_deadline_ms"][i], rid))
        heapq.heapify(inv._due)
        return inv


def normalize_state(
    state: Mapping[str, npt.NDArray[np.generic]], *, marks: bool = True
) -> dict[str, object]:
    """An exported state as plain values, independent of row order; all-zero rows dropped (the
    contract does not say whether an empty (sku, warehouse) slot is exported). ``counted``
    holds the ``line_counted`` marks per pending reservation (None without them, or with
    ``marks=False`` to compare with a state that does not keep them)."""
    a = {key: [int(x) for x in state[key]] for key in STATE_DTYPES if key in state}
    marks_of = a.get("line_counted") if marks else None
    counted: dict[int, list[int]] | None = None if marks_of is None else {}
    pending: dict[int, tuple[int, int, list[tuple[int, int, int]]]] = {}
    for i, rid in enumerate(a["res_id"]):
        lo, hi = a["res_offsets"][i], a["res_offsets"][i + 1]
        lines = list(
            zip(
                a["line_sku"][lo:hi],
                a["line_warehouse"][lo:hi],
                a["line_quantity"][lo:hi],
                strict=True,
            )
        )
        pending[rid] = (a["res_buyer"][i], a["res_deadline_ms"][i], lines)
        if counted is not None and marks_of is not None:
            counted[rid] = marks_of[lo:hi]
    regions: dict[int, list[int]] = {}
    for i, region in enumerate(a["region_id"]):
        lo, hi = a["region_offsets"][i], a["region_offsets"][i + 1]
        regions[region] = a["region_warehouses"][lo:hi]
    return {
        "sku_count": a["sku_count"],
        "warehouse_count": a["warehouse_count"],
        "stock": {
            (sku, w): (on_hand, sold)
            for sku, w, on_hand, sold in zip(
                a["stock_sku"],
                a["stock_warehouse"],
                a["stock_on_hand"],
                a["stock_sold"],
                strict=True,
            )
            if (on_hand, sold) != (0, 0)
        },
        "limits": {s: n for s, n in zip(a["limit_sku"], a["limit_units"], strict=True) if n},
        "bought": {
            (s, b): n
            for s, b, n in zip(a["bought_sku"], a["bought_buyer"], a["bought_units"], strict=True)
            if n
        },
        "regions": regions,
        "pending": pending,
        "counted": counted,
    }
