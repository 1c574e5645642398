"""Export and restore: ``export_state()`` -> ``Inventory.from_state()`` keeps everything the
contract lists, and a restore refuses inconsistent arrays with InvalidInventoryStateError.

Each refusal is also checked against the reference model, so the model's ``from_state`` (the
specification) and the core's stay in step.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from pyorder.inventory import (
    InvalidInventoryStateError,
    Inventory,
    PurchaseLimitError,
    ReservationResolvedError,
    UnknownReservationError,
)
from tests.reference_inventory import STATE_DTYPES, ReferenceInventory, normalize_state

T0 = 1_767_225_600_000
State = dict[str, npt.NDArray[np.generic]]


def levels(inv: Inventory) -> dict[int, dict[int, tuple[int, int, int, int]]]:
    return {
        sku: {
            w: (s.on_hand, s.available, s.reserved, s.sold)
            for w, s in inv.stock_by_warehouse(sku).items()
            if (s.on_hand, s.sold) != (0, 0)
        }
        for sku in range(inv.sku_count)
    }


def build() -> tuple[Inventory, dict[str, int]]:
    """Two warehouses, a region, a limit, pending, confirmed, partial and released orders."""
    inv = Inventory()
    inv.add_warehouse()
    inv.set_region(7, [1, 0])
    a = inv.add_sku({0: 10, 1: 4})
    b = inv.add_sku({1: 6}, limit_per_buyer=5)
    c = inv.add_sku(3)
    ids = {
        "pending": inv.reserve_order([(a, 2), (b, 3)], buyer=11, region=7, now_ms=T0),
        "pending_late": inv.reserve(a, 1, buyer=12, timeout_ms=50, now_ms=T0),
        "confirmed": inv.reserve(b, 2, buyer=11, now_ms=T0),
        "partial": inv.reserve(c, 3, buyer=13, now_ms=T0),
        "released": inv.reserve(a, 4, buyer=13, now_ms=T0),
    }
    inv.confirm(ids["confirmed"], now_ms=T0)
    inv.confirm(ids["partial"], 1, now_ms=T0)
    inv.release(ids["released"], now_ms=T0)
    return inv, ids


@pytest.fixture
def state() -> State:
    return build()[0].export_state()


def test_export_has_every_key_as_a_one_dimensional_array_of_its_dtype(state: State) -> None:
    for key, dtype in STATE_DTYPES.items():
        assert isinstance(state[key], np.ndarray), key
        assert state[key].dtype == dtype, f"{key}: {state[key].dtype}"
        assert state[key].ndim == 1, key
    for key in ("sku_count", "warehouse_count", "next_reservation_id"):
        assert state[key].shape == (1,), key
    assert state["sku_count"][0] == 3
    assert state["warehouse_count"][0] == 2


def test_export_lists_exactly_the_pending_reservations() -> None:
    inv, ids = build()
    exported = normalize_state(inv.export_state())["pending"]
    assert exported == {
        ids["pending"]: (11, T0 + 15 * 60 * 1000, [(0, 1, 2), (1, 1, 3)]),
        ids["pending_late"]: (12, T0 + 50, [(0, 0, 1)]),
    }


def test_export_counts_only_confirmed_units_as_bought() -> None:
    inv, _ = build()
    bought = normalize_state(inv.export_state())["bought"]
    assert isinstance(bought, dict)
    assert bought.get((1, 11)) == 2  # SKU b: 2 confirmed; the 3 pending are not exported


def test_export_counts_confirmed_units_despite_uncounted_pending_ones() -> None:
    """A reservation made before the limit was set is not counted, so it must not be taken off
    the confirmed units of ``bought_units`` either."""
    inv = Inventory()
    sku = inv.add_sku(100)
    inv.reserve(sku, 3, buyer=7, now_ms=T0)  # before the limit: not counted
    inv.set_purchase_limit(sku, 5)
    inv.confirm(inv.reserve(sku, 2, buyer=7, now_ms=T0), now_ms=T0)  # counted, confirmed
    assert inv.bought_by(sku, 7) == 2
    state = inv.export_state()
    assert normalize_state(state)["bought"] == {(sku, 7): 2}
    # Restored with the marks, the uncounted reservation stays uncounted ...
    assert Inventory.from_state(state).bought_by(sku, 7) == 2
    # ... and without them (a store that does not keep them) every pending line counts.
    unmarked = {k: v for k, v in state.items() if k != "line_counted"}
    assert Inventory.from_state(unmarked).bought_by(sku, 7) == 5


def test_round_trip_keeps_stock_limits_regions_buyers_and_pending() -> None:
    inv, ids = build()
    state = inv.export_state()
    back = Inventory.from_state(state)
    assert normalize_state(back.export_state()) == normalize_state(state)
    assert levels(back) == levels(inv)
    assert back.sku_count == inv.sku_count
    assert back.warehouse_count == inv.warehouse_count
    assert back.region_warehouses(7) == [1, 0]
    assert back.purchase_limit(1) == 5
    assert back.open_reservations == inv.open_reservations == 2
    assert back.next_deadline_ms() == inv.next_deadline_ms()
    for sku in range(3):
        for buyer in (11, 12, 13):
            assert back.bought_by(sku, buyer) == inv.bought_by(sku, buyer)
    for key in ("pending", "pending_late"):
        original, restored = inv.reservation(ids[key]), back.reservation(ids[key])
        assert (restored.state, restored.buyer, restored.deadline_ms, restored.lines) == (
            original.state,
            original.buyer,
            original.deadline_ms,
            original.lines,
        )


def test_restore_adds_open_reservations_back_to_the_buyers_count() -> None:
    inv, _ = build()
    back = Inventory.from_state(inv.export_state())
    assert back.bought_by(1, 11) == 5  # 2 confirmed + 3 pending
    with pytest.raises(PurchaseLimitError):
        back.reserve(1, 1, buyer=11, now_ms=T0)


@pytest.mark.parametrize("shards", [1, 2, 64])
def test_restore_with_another_shard_count(state: State, shards: int) -> None:
    back = Inventory.from_state(state, shards=shards)
    assert back.shards == shards
    assert normalize_state(back.export_state()) == normalize_state(state)


def test_restored_pending_reservations_resolve_to_their_warehouses() -> None:
    inv, ids = build()
    back = Inventory.from_state(inv.export_state())
    back.confirm(ids["pending"], [1, 3], now_ms=T0)
    assert back.stock(0, 1).sold == 1
    assert back.stock(0, 1).available == 4 - 1
    assert back.stock(1, 1).sold == 2 + 3
    with pytest.raises(ReservationResolvedError) as exc:
        back.release(ids["pending_late"], now_ms=T0 + 50)
    assert exc.value.state == "expired"
    assert back.stock(0, 0).available == 10
    back.check_invariants()


def test_resolved_reservations_are_unknown_after_restore() -> None:
    inv, ids = build()
    back = Inventory.from_state(inv.export_state())
    for key in ("confirmed", "partial", "released"):
        with pytest.raises(UnknownReservationError):
            back.reservation_state(ids[key])
        with pytest.raises(UnknownReservationError):
            back.confirm(ids[key], now_ms=T0)


def test_restore_never_hands_out_an_old_id_again() -> None:
    inv, ids = build()
    state = inv.export_state()
    assert state["next_reservation_id"][0] > max(ids.values())
    back = Inventory.from_state(state)
    assert back.reserve(2, 1, now_ms=T0) >= state["next_reservation_id"][0]


def test_restore_honours_a_next_reservation_id_from_storage(state: State) -> None:
    state = dict(state)
    state["next_reservation_id"] = np.array([10**7], dtype=np.uint64)
    back = Inventory.from_state(state)
    assert back.reserve(2, 1, now_ms=T0) >= 10**7


FAR_NEXT_ID = """
import resource, sys
import numpy as np
sys.path.insert(0, {root!r})
import tests.test_inventory_state as t
from pyorder.inventory import Inventory

resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))  # 2 GiB of address space
inv, ids = t.build()
state = dict(inv.export_state())  # holds pending reservations with small ids
state["next_reservation_id"] = np.array([{next_id}], dtype=np.uint64)
back = Inventory.from_state(state)
rid = back.reserve(2, 1, now_ms=t.T0)
back.confirm(rid, now_ms=t.T0)
back.release(ids["pending"], now_ms=t.T0)
assert back.reservation_state(rid) == "confirmed"
print("ok", rid)
"""


@pytest.mark.parametrize("next_id", [10**12, 2**62])
def test_far_next_reservation_id_after_restore_needs_no_memory_for_the_gap(next_id: int) -> None:
    """Ids from storage may jump far ahead of the restored pending ones (they are u64): the
    memory kept for resolved states must not grow with the gap. Run in a child process with
    2 GiB of address space, so a failure cannot take the machine's memory with it."""
    code = FAR_NEXT_ID.format(root=str(Path(__file__).resolve().parents[1]), next_id=next_id)
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, (done.returncode, done.stdout, done.stderr[-2000:])
    assert done.stdout.startswith("ok")


def test_export_is_a_snapshot_not_a_view() -> None:
    inv, _ = build()
    state = inv.export_state()
    frozen = normalize_state(state)
    inv.reserve(0, 1, now_ms=T0)
    inv.restock(2, 5)
    assert normalize_state(state) == frozen
    state["stock_on_hand"][:] = 0
    assert inv.stock(0).on_hand == 14


def test_empty_inventory_round_trip() -> None:
    state = Inventory().export_state()
    back = Inventory.from_state(state)
    assert (back.sku_count, back.warehouse_count, back.open_reservations) == (0, 1, 0)


def test_core_restores_the_reference_models_arrays() -> None:
    """The arrays a server would rebuild from storage: written here by the reference model."""
    model = ReferenceInventory()
    model.add_warehouse()
    model.set_region(3, [1])
    a = model.add_sku({0: 5, 1: 5}, limit_per_buyer=4)
    rid = model.reserve(a, 2, buyer=9, region=3, now_ms=T0)
    model.confirm(model.reserve(a, 1, buyer=9, now_ms=T0), now_ms=T0)
    inv = Inventory.from_state(model.export_state())
    assert normalize_state(inv.export_state()) == normalize_state(model.export_state())
    assert inv.reservation(rid).lines == [(a, 1, 2)]
    assert inv.bought_by(a, 9) == 3


# ---------------------------------------------------------------------------- refusals
def put(**arrays: list[int]) -> Callable[[State], None]:
    """Replace arrays (with their exported dtype)."""

    def change(s: State) -> None:
        for key, values in arrays.items():
            s[key] = np.array(values, dtype=STATE_DTYPES[key])

    return change


def drop(key: str) -> Callable[[State], None]:
    def change(s: State) -> None:
        del s[key]

    return change


def edit(key: str, index: int, value: int) -> Callable[[State], None]:
    def change(s: State) -> None:
        s[key] = s[key].copy()
        s[key][index] = value

    return change


def small() -> State:
    """SKU 0: 5 on hand in warehouse 0, 1 sold; one pending reservation of 2 units (id 1)."""
    return {
        "sku_count": np.array([2], dtype=np.uint64),
        "warehouse_count": np.array([2], dtype=np.uint64),
        "next_reservation_id": np.array([5], dtype=np.uint64),
        "stock_sku": np.array([0, 1], dtype=np.uint32),
        "stock_warehouse": np.array([0, 1], dtype=np.uint32),
        "stock_on_hand": np.array([5, 3], dtype=np.int64),
        "stock_sold": np.array([1, 0], dtype=np.int64),
        "limit_sku": np.array([0], dtype=np.uint32),
        "limit_units": np.array([9], dtype=np.uint64),
        "bought_sku": np.array([0], dtype=np.uint32),
        "bought_buyer": np.array([4], dtype=np.uint64),
        "bought_units": np.array([1], dtype=np.uint64),
        "region_id": np.array([7], dtype=np.uint32),
        "region_offsets": np.array([0, 2], dtype=np.uint64),
        "region_warehouses": np.array([1, 0], dtype=np.uint32),
        "res_id": np.array([1], dtype=np.uint64),
        "res_buyer": np.array([4], dtype=np.uint64),
        "res_deadline_ms": np.array([T0], dtype=np.uint64),
        "res_offsets": np.array([0, 1], dtype=np.uint64),
        "line_sku": np.array([0], dtype=np.uint32),
        "line_warehouse": np.array([0], dtype=np.uint32),
        "line_quantity": np.array([2], dtype=np.uint32),
    }


def test_restore_counts_pending_lines_by_their_marks() -> None:
    """docs: ``line_counted`` (optional) says whether a pending line counts against the limit;
    without it every pending line of a SKU with a limit counts."""
    unmarked = small()  # no line_counted: the pending 2 units count, plus 1 confirmed
    assert Inventory.from_state(unmarked).bought_by(0, 4) == 3
    marked = small()
    marked["line_counted"] = np.array([0], dtype=np.uint8)
    assert Inventory.from_state(marked).bought_by(0, 4) == 1
    assert ReferenceInventory.from_state(marked).bought_by(0, 4) == 1
    marked["line_counted"] = np.array([1], dtype=np.uint8)
    back = Inventory.from_state(marked)
    assert back.bought_by(0, 4) == 3
    back.release(1, now_ms=T0 - 1)
    assert back.bought_by(0, 4) == 1


def test_small_state_is_consistent() -> None:
    inv = Inventory.from_state(small())
    s = inv.stock(0, 0)
    assert (s.on_hand, s.available, s.reserved, s.sold) == (5, 2, 2, 1)
    assert inv.bought_by(0, 4) == 3
    assert normalize_state(inv.export_state(), marks=False) == normalize_state(small())
    ReferenceInventory.from_state(small()).check_invariants()


BAD_STATES: dict[str, Callable[[State], None]] = {
    "reserved-more-than-on-hand": edit("line_quantity", 0, 6),
    "reserved-more-than-on-hand-minus-sold": edit("line_quantity", 0, 5),
    "two-reservations-more-than-on-hand": put(
        res_id=[1, 2],
        res_buyer=[4, 4],
        res_deadline_ms=[T0, T0],
        res_offsets=[0, 1, 2],
        line_sku=[0, 0],
        line_warehouse=[0, 0],
        line_quantity=[2, 3],
    ),
    "sold-more-than-on-hand": edit("stock_sold", 0, 6),
    "negative-on-hand": edit("stock_on_hand", 1, -1),
    "negative-sold": edit("stock_sold", 1, -1),
    "stock-of-unknown-sku": edit("stock_sku", 1, 2),
    "stock-in-unknown-warehouse": edit("stock_warehouse", 1, 2),
    "two-rows-for-one-slot": put(stock_sku=[0, 0], stock_warehouse=[0, 0]),
    "line-in-warehouse-without-stock": edit("line_warehouse", 0, 1),
    "line-of-unknown-sku": edit("line_sku", 0, 9),
    "line-of-zero-units": edit("line_quantity", 0, 0),
    "reservation-id-not-below-next": edit("res_id", 0, 5),
    "reservation-id-zero": edit("res_id", 0, 0),
    "same-reservation-twice": put(
        res_id=[1, 1],
        res_buyer=[4, 4],
        res_deadline_ms=[T0, T0],
        res_offsets=[0, 1, 2],
        line_sku=[0, 0],
        line_warehouse=[0, 0],
        line_quantity=[1, 1],
    ),
    "reservation-without-lines": put(
        res_offsets=[0, 0, 1], res_id=[1, 2], res_buyer=[4, 4], res_deadline_ms=[T0, T0]
    ),
    "same-sku-twice-in-a-reservation": put(
        res_offsets=[0, 2], line_sku=[0, 0], line_warehouse=[0, 0], line_quantity=[1, 1]
    ),
    "res-offsets-too-short": put(res_offsets=[0]),
    "res-offsets-not-from-zero": put(res_offsets=[1, 1]),
    "res-offsets-past-the-lines": put(res_offsets=[0, 2]),
    "res-offsets-short-of-the-lines": put(
        line_sku=[0, 1], line_warehouse=[0, 1], line_quantity=[1, 1]
    ),
    "res-arrays-differ-in-length": put(res_buyer=[4, 4]),
    "line-arrays-differ-in-length": put(line_warehouse=[0, 0]),
    "line-counted-differs-in-length": put(line_counted=[1, 1]),
    "stock-arrays-differ-in-length": put(stock_on_hand=[5]),
    "limit-arrays-differ-in-length": put(limit_units=[9, 9]),
    "bought-arrays-differ-in-length": put(bought_units=[]),
    "limit-of-unknown-sku": edit("limit_sku", 0, 2),
    "bought-of-unknown-sku": edit("bought_sku", 0, 2),
    "limit-of-zero": edit("limit_units", 0, 0),
    "region-in-unknown-warehouse": edit("region_warehouses", 0, 2),
    "region-offsets-too-long": put(region_offsets=[0, 1, 2]),
    "region-offsets-past-the-end": put(region_offsets=[0, 3]),
    "no-warehouse-at-all": put(warehouse_count=[0]),
    "scalar-with-two-values": put(sku_count=[2, 2]),
    "scalar-empty": put(next_reservation_id=[]),
    "missing-stock": drop("stock_on_hand"),
    "missing-reservations": drop("res_id"),
}


@pytest.mark.parametrize("change", BAD_STATES.values(), ids=BAD_STATES.keys())
def test_restore_refuses_inconsistent_arrays(change: Callable[[State], None]) -> None:
    bad = small()
    change(bad)
    with pytest.raises(InvalidInventoryStateError):
        Inventory.from_state(bad)
    with pytest.raises(InvalidInventoryStateError):
        ReferenceInventory.from_state(bad)
