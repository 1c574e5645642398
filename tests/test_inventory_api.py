"""Example-based tests of the inventory API, one behaviour of docs/inventory.md each.

Every error test checks the exception class, its attributes, that the message names the SKU or
state, and that the inventory is unchanged afterwards (``snapshot`` before == after).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from pyorder.inventory import (
    DuplicateSkuError,
    InvalidQuantityError,
    Inventory,
    InventoryError,
    MatchPolicy,
    OutOfStockError,
    PurchaseLimitError,
    ReservationInfo,
    ReservationResolvedError,
    ReserveBatchResult,
    ReserveStatus,
    StockLevel,
    UnknownRegionError,
    UnknownReservationError,
    UnknownSkuError,
    UnknownWarehouseError,
)
from tests.reference_inventory import MAX_QUANTITY, MAX_TIMEOUT_MS, normalize_state

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
DAY_MS = 86_400_000
NO_WAREHOUSE = 0xFFFF_FFFF


def level(inv: Inventory, sku: int, warehouse: int | None = None) -> tuple[int, int, int, int]:
    s = inv.stock(sku, warehouse)
    assert s.on_hand == s.available + s.reserved + s.sold
    return (s.on_hand, s.available, s.reserved, s.sold)


def snapshot(inv: Inventory) -> object:
    """Everything observable about the stock: export plus per-SKU levels and buyers' counts."""
    levels = {
        sku: (level(inv, sku), {w: str(s) for w, s in inv.stock_by_warehouse(sku).items()})
        for sku in range(inv.sku_count)
    }
    bought = {(sku, b): inv.bought_by(sku, b) for sku in range(inv.sku_count) for b in range(4)}
    return normalize_state(inv.export_state()), levels, bought, inv.open_reservations


@pytest.fixture
def inv() -> Inventory:
    return Inventory()


@pytest.fixture
def unchanged(inv: Inventory) -> Iterator[None]:
    """Asserts the inventory did not change during the test body (for error tests)."""
    before = snapshot(inv)
    yield
    assert snapshot(inv) == before


# ---------------------------------------------------------------------------- basics
def test_warehouse_zero_exists_so_single_warehouse_needs_no_setup(inv: Inventory) -> None:
    assert inv.warehouse_count == 1
    sku = inv.add_sku(5)
    rid = inv.reserve(sku, 2, now_ms=T0)
    assert inv.reservation(rid).lines == [(sku, 0, 2)]
    assert level(inv, sku, 0) == (5, 3, 2, 0)


def test_add_warehouse_returns_next_index(inv: Inventory) -> None:
    assert [inv.add_warehouse() for _ in range(3)] == [1, 2, 3]
    assert inv.warehouse_count == 4


def test_skus_are_numbered_from_zero(inv: Inventory) -> None:
    assert inv.add_sku(1) == 0
    assert inv.add_sku() == 1
    ids = inv.add_skus(np.array([3, 0, 7], dtype=np.int64))
    assert ids.dtype == np.uint32
    assert ids.tolist() == [2, 3, 4]
    assert inv.sku_count == 5
    assert level(inv, 4) == (7, 7, 0, 0)


def test_add_sku_with_stock_per_warehouse(inv: Inventory) -> None:
    inv.add_warehouse()
    inv.add_warehouse()
    sku = inv.add_sku({0: 1, 2: 5})
    assert level(inv, sku) == (6, 6, 0, 0)
    assert level(inv, sku, 1) == (0, 0, 0, 0)
    assert level(inv, sku, 2) == (5, 5, 0, 0)
    assert inv.stock_by_warehouse(sku) == {
        0: StockLevel(1, 1, 0, 0),
        2: StockLevel(5, 5, 0, 0),
    }


def test_add_skus_into_another_warehouse(inv: Inventory) -> None:
    w = inv.add_warehouse()
    (sku,) = inv.add_skus(np.array([4], dtype=np.int64), w).tolist()
    assert level(inv, sku, w) == (4, 4, 0, 0)
    assert level(inv, sku, 0) == (0, 0, 0, 0)


def test_add_sku_into_unknown_warehouse_is_refused(inv: Inventory, unchanged: None) -> None:
    with pytest.raises(UnknownWarehouseError, match="7") as exc:
        inv.add_sku({7: 1})
    assert exc.value.warehouse == 7
    with pytest.raises(UnknownWarehouseError):
        inv.add_skus(np.array([1, 2], dtype=np.int64), 3)


def test_stock_level_value_semantics() -> None:
    a = StockLevel(10, 5, 3, 2)
    assert (a.on_hand, a.available, a.reserved, a.sold) == (10, 5, 3, 2)
    assert a == StockLevel(10, 5, 3, 2)
    assert a != StockLevel(10, 6, 2, 2)
    assert hash(a) == hash(StockLevel(10, 5, 3, 2))


def test_stock_of_unknown_sku_or_warehouse(inv: Inventory) -> None:
    sku = inv.add_sku(1)
    with pytest.raises(UnknownSkuError):
        inv.stock(sku + 1)
    with pytest.raises(UnknownWarehouseError):
        inv.stock(sku, 1)


def test_reservation_lifecycle_reserve_confirm(inv: Inventory) -> None:
    sku = inv.add_sku(10)
    rid = inv.reserve(sku, 3, buyer=9, timeout_ms=1000, now_ms=T0)
    assert level(inv, sku) == (10, 7, 3, 0)
    info = inv.reservation(rid)
    assert isinstance(info, ReservationInfo)
    assert (info.reservation, info.state, info.buyer, info.deadline_ms) == (
        rid,
        "pending",
        9,
        T0 + 1000,
    )
    assert inv.reservation_state(rid) == "pending"
    assert inv.open_reservations == 1
    inv.confirm(rid, now_ms=T0 + 999)
    assert level(inv, sku) == (10, 7, 0, 3)
    assert inv.reservation_state(rid) == "confirmed"
    assert inv.open_reservations == 0


def test_release_returns_units(inv: Inventory) -> None:
    sku = inv.add_sku(10)
    rid = inv.reserve(sku, 4, now_ms=T0)
    inv.release(rid, now_ms=T0)
    assert level(inv, sku) == (10, 10, 0, 0)
    assert inv.reservation_state(rid) == "released"


def test_partial_confirm_sells_fewer_and_returns_the_rest(inv: Inventory) -> None:
    a, b = inv.add_sku(10, limit_per_buyer=100), inv.add_sku(10, limit_per_buyer=100)
    rid = inv.reserve_order([(a, 4), (b, 3)], buyer=1, now_ms=T0)
    inv.confirm(rid, [1, 0], now_ms=T0)
    assert level(inv, a) == (10, 9, 0, 1)
    assert level(inv, b) == (10, 10, 0, 0)
    assert inv.reservation_state(rid) == "confirmed"
    assert inv.bought_by(a, 1) == 1
    assert inv.bought_by(b, 1) == 0


def test_confirm_with_an_int_for_a_single_line(inv: Inventory) -> None:
    sku = inv.add_sku(10)
    rid = inv.reserve(sku, 4, now_ms=T0)
    inv.confirm(rid, 2, now_ms=T0)
    assert level(inv, sku) == (10, 8, 0, 2)


@pytest.mark.parametrize("quantities", [[5], [-1], [1, 1], []])
def test_confirm_with_invalid_quantities_is_refused(inv: Inventory, quantities: list[int]) -> None:
    sku = inv.add_sku(10)
    rid = inv.reserve(sku, 4, now_ms=T0)
    before = snapshot(inv)
    with pytest.raises(InventoryError):
        inv.confirm(rid, quantities, now_ms=T0)
    assert snapshot(inv) == before
    assert inv.reservation_state(rid) == "pending"


def test_confirm_more_than_a_line_holds_is_invalid_quantity(inv: Inventory) -> None:
    sku = inv.add_sku(10)
    rid = inv.reserve(sku, 4, now_ms=T0)
    with pytest.raises(InvalidQuantityError):
        inv.confirm(rid, [5], now_ms=T0)
    inv.confirm(rid, [4], now_ms=T0)


def test_reservation_ids_are_unique_increasing_and_never_zero(inv: Inventory) -> None:
    skus = inv.add_skus(np.full(50, 100, dtype=np.int64)).tolist()
    ids = [inv.reserve(s, 1, now_ms=T0) for s in skus for _ in range(3)]
    result = inv.reserve_batch(
        np.array(skus, dtype=np.uint32), np.ones(len(skus), dtype=np.uint32), now_ms=T0
    )
    ids += result.reservation.tolist()
    assert 0 not in ids
    assert ids == sorted(set(ids))


def test_default_timeout_is_fifteen_minutes(inv: Inventory) -> None:
    sku = inv.add_sku(1)
    rid = inv.reserve(sku, 1, now_ms=T0)
    assert inv.reservation(rid).deadline_ms == T0 + 15 * 60 * 1000


def test_now_defaults_to_the_wall_clock(inv: Inventory) -> None:
    import time

    sku = inv.add_sku(1)
    before = time.time_ns() // 1_000_000
    rid = inv.reserve(sku, 1, timeout_ms=1000)
    after = time.time_ns() // 1_000_000
    assert before + 1000 <= inv.reservation(rid).deadline_ms <= after + 1000


@pytest.mark.parametrize("timeout_ms", [0, -1, MAX_TIMEOUT_MS + 1])
def test_timeout_outside_one_ms_to_thirty_days_is_refused(inv: Inventory, timeout_ms: int) -> None:
    sku = inv.add_sku(5)
    before = snapshot(inv)
    with pytest.raises(InventoryError) as exc:
        inv.reserve(sku, 1, timeout_ms=timeout_ms, now_ms=T0)
    assert type(exc.value) is InventoryError
    with pytest.raises(InventoryError):
        inv.reserve_batch(
            np.array([sku], dtype=np.uint32),
            np.array([1], dtype=np.uint32),
            timeout_ms=timeout_ms,
            now_ms=T0,
        )
    assert snapshot(inv) == before


def test_timeout_of_thirty_days_and_of_one_ms_are_allowed(inv: Inventory) -> None:
    sku = inv.add_sku(5)
    assert inv.reservation(
        inv.reserve(sku, 1, timeout_ms=MAX_TIMEOUT_MS, now_ms=T0)
    ).deadline_ms == (T0 + MAX_TIMEOUT_MS)
    assert inv.reservation(inv.reserve(sku, 1, timeout_ms=1, now_ms=T0)).deadline_ms == T0 + 1


def test_unknown_policy_is_an_invalid_argument(inv: Inventory) -> None:
    sku = inv.add_sku(5)
    before = snapshot(inv)
    with pytest.raises(InventoryError) as exc:
        inv.reserve_order([(sku, 1)], policy="cheapest", now_ms=T0)
    assert type(exc.value) is InventoryError
    assert snapshot(inv) == before


def test_policy_accepts_enum_and_plain_strings(inv: Inventory) -> None:
    sku = inv.add_sku(6)
    for policy in [*MatchPolicy, "prefer_one_parcel", "one_parcel_only", "nearest_per_line"]:
        inv.reserve_order([(sku, 1)], policy=policy, now_ms=T0)
    assert level(inv, sku) == (6, 0, 6, 0)


def test_status_codes_and_policy_names() -> None:
    assert ReserveStatus.OK.value == 0
    assert len({int(s) for s in ReserveStatus}) == len(ReserveStatus) == 11
    assert MatchPolicy.PREFER_ONE_PARCEL.value == "prefer_one_parcel"
    assert MatchPolicy.ONE_PARCEL_ONLY.value == "one_parcel_only"
    assert MatchPolicy.NEAREST_PER_LINE.value == "nearest_per_line"


# ---------------------------------------------------------------------------- errors
def test_every_error_is_an_inventory_error_and_a_value_error() -> None:
    for cls in (
        UnknownSkuError,
        UnknownWarehouseError,
        UnknownRegionError,
        InvalidQuantityError,
        DuplicateSkuError,
        OutOfStockError,
        PurchaseLimitError,
        UnknownReservationError,
        ReservationResolvedError,
    ):
        assert issubclass(cls, InventoryError)
        assert issubclass(cls, ValueError)


@pytest.fixture
def stocked() -> Inventory:
    inv = Inventory()
    inv.add_sku(5)  # SKU 0
    inv.add_sku(5, limit_per_buyer=2)  # SKU 1
    inv.add_sku(0)  # SKU 2
    inv.reserve(0, 1, buyer=3, now_ms=T0)
    return inv


@pytest.fixture
def same_after(stocked: Inventory) -> Iterator[Inventory]:
    before = snapshot(stocked)
    yield stocked
    assert snapshot(stocked) == before


def test_unknown_sku_error_leaves_state_unchanged(same_after: Inventory) -> None:
    with pytest.raises(UnknownSkuError, match="17") as exc:
        same_after.reserve_order([(0, 1), (17, 1)], now_ms=T0)
    assert exc.value.sku == 17
    assert "17" in str(exc.value)


@pytest.mark.parametrize("quantity", [0, -1, -(2**40), MAX_QUANTITY + 1, 2**32, 2**40, 2**70])
def test_invalid_quantity_is_refused(same_after: Inventory, quantity: int) -> None:
    with pytest.raises(InvalidQuantityError):
        same_after.reserve(0, quantity, now_ms=T0)
    with pytest.raises(InvalidQuantityError):
        same_after.reserve_order([(0, 1), (2, quantity)], now_ms=T0)


def test_largest_line_quantity_is_allowed(inv: Inventory) -> None:
    sku = inv.add_sku(MAX_QUANTITY)
    inv.reserve(sku, MAX_QUANTITY, now_ms=T0)
    assert level(inv, sku) == (MAX_QUANTITY, 0, MAX_QUANTITY, 0)


def test_empty_order_is_invalid_quantity(same_after: Inventory) -> None:
    with pytest.raises(InvalidQuantityError):
        same_after.reserve_order([], now_ms=T0)


def test_duplicate_sku_error_names_the_sku(same_after: Inventory) -> None:
    with pytest.raises(DuplicateSkuError, match="0") as exc:
        same_after.reserve_order([(0, 1), (2, 1), (0, 1)], now_ms=T0)
    assert exc.value.sku == 0


def test_out_of_stock_error_names_the_sku(same_after: Inventory) -> None:
    with pytest.raises(OutOfStockError, match="2") as exc:
        same_after.reserve_order([(0, 1), (2, 1)], now_ms=T0)
    assert exc.value.sku == 2
    with pytest.raises(OutOfStockError) as exc:
        same_after.reserve(0, 5, now_ms=T0)  # 4 left
    assert exc.value.sku == 0


def test_purchase_limit_error_names_sku_and_limit(same_after: Inventory) -> None:
    with pytest.raises(PurchaseLimitError) as exc:
        same_after.reserve(1, 3, buyer=7, now_ms=T0)
    assert exc.value.sku == 1
    assert exc.value.limit == 2
    assert "1" in str(exc.value)
    assert "2" in str(exc.value)


def test_unknown_region_error_names_the_region(same_after: Inventory) -> None:
    with pytest.raises(UnknownRegionError, match="31") as exc:
        same_after.reserve(0, 1, region=31, now_ms=T0)
    assert exc.value.region == 31
    with pytest.raises(UnknownRegionError):
        same_after.region_warehouses(31)


def test_unknown_reservation_error_names_the_reservation(same_after: Inventory) -> None:
    for call in (
        lambda: same_after.confirm(987_654, now_ms=T0),
        lambda: same_after.release(987_654, now_ms=T0),
        lambda: same_after.reservation(987_654),
        lambda: same_after.reservation_state(987_654),
    ):
        with pytest.raises(UnknownReservationError, match="987654") as exc:
            call()
        assert exc.value.reservation == 987_654


def test_unknown_warehouse_error_names_the_warehouse(same_after: Inventory) -> None:
    with pytest.raises(UnknownWarehouseError, match="9") as exc:
        same_after.restock(0, 1, 9)
    assert exc.value.warehouse == 9
    with pytest.raises(UnknownWarehouseError):
        same_after.set_region(1, [0, 9])
    with pytest.raises(UnknownWarehouseError):
        same_after.adjust(0, 1, 9)


@pytest.mark.parametrize("resolve", ["confirm", "release", "expire"])
def test_resolved_error_names_the_state(inv: Inventory, resolve: str) -> None:
    sku = inv.add_sku(5)
    rid = inv.reserve(sku, 2, timeout_ms=10, now_ms=T0)
    state = {"confirm": "confirmed", "release": "released", "expire": "expired"}[resolve]
    if resolve == "confirm":
        inv.confirm(rid, now_ms=T0)
    elif resolve == "release":
        inv.release(rid, now_ms=T0)
    else:
        assert inv.expire_due(T0 + 10).tolist() == [rid]
    before = snapshot(inv)
    for call in (
        lambda: inv.confirm(rid, now_ms=T0 + 1),
        lambda: inv.release(rid, now_ms=T0 + 1),
        lambda: inv.reservation(rid),
    ):
        with pytest.raises(ReservationResolvedError, match=state) as exc:
            call()
        assert exc.value.state == state
        assert exc.value.reservation == rid
    assert snapshot(inv) == before


# ---------------------------------------------------------------------------- validation order
def test_unknown_region_is_reported_before_an_empty_order(same_after: Inventory) -> None:
    with pytest.raises(UnknownRegionError):
        same_after.reserve_order([], region=5, now_ms=T0)


def test_unknown_region_is_reported_before_bad_lines(same_after: Inventory) -> None:
    with pytest.raises(UnknownRegionError):
        same_after.reserve_order([(99, 0)], region=5, now_ms=T0)


def test_lines_are_checked_in_order(same_after: Inventory) -> None:
    with pytest.raises(InvalidQuantityError):
        same_after.reserve_order([(0, 0), (99, 1)], now_ms=T0)
    with pytest.raises(UnknownSkuError):
        same_after.reserve_order([(99, 0), (0, 0)], now_ms=T0)
    with pytest.raises(UnknownSkuError):
        same_after.reserve_order([(0, 1), (99, 1), (0, 1)], now_ms=T0)


def test_quantity_is_checked_before_duplicate_on_the_same_line(same_after: Inventory) -> None:
    with pytest.raises(InvalidQuantityError):
        same_after.reserve_order([(0, 1), (0, 0)], now_ms=T0)


def test_duplicate_is_reported_before_purchase_limits(same_after: Inventory) -> None:
    with pytest.raises(DuplicateSkuError):
        same_after.reserve_order([(1, 5), (0, 1), (0, 1)], now_ms=T0)


def test_purchase_limit_is_reported_before_stock(same_after: Inventory) -> None:
    with pytest.raises(PurchaseLimitError):
        same_after.reserve_order([(2, 1), (1, 3)], now_ms=T0)  # SKU 2 has no stock at all


def test_out_of_stock_blames_the_first_line_no_warehouse_serves(inv: Inventory) -> None:
    a, b, c = inv.add_sku(5), inv.add_sku(0), inv.add_sku(0)
    with pytest.raises(OutOfStockError) as exc:
        inv.reserve_order([(a, 1), (b, 1), (c, 1)], now_ms=T0)
    assert exc.value.sku == b


# ---------------------------------------------------------------------------- purchase limits
def test_purchase_limit_counts_reserved_and_confirmed_units(inv: Inventory) -> None:
    sku = inv.add_sku(100, limit_per_buyer=5)
    assert inv.purchase_limit(sku) == 5
    r1 = inv.reserve(sku, 2, buyer=1, now_ms=T0)
    inv.reserve(sku, 2, buyer=1, now_ms=T0)
    inv.confirm(r1, now_ms=T0)
    assert inv.bought_by(sku, 1) == 4
    with pytest.raises(PurchaseLimitError):
        inv.reserve(sku, 2, buyer=1, now_ms=T0)
    inv.reserve(sku, 1, buyer=1, now_ms=T0)
    assert inv.bought_by(sku, 1) == 5


def test_release_expiry_and_unsold_part_give_the_limit_back(inv: Inventory) -> None:
    sku = inv.add_sku(100, limit_per_buyer=5)
    r1 = inv.reserve(sku, 5, buyer=1, timeout_ms=10, now_ms=T0)
    inv.release(r1, now_ms=T0)
    assert inv.bought_by(sku, 1) == 0
    r2 = inv.reserve(sku, 5, buyer=1, timeout_ms=10, now_ms=T0)
    inv.expire_due(T0 + 10)
    assert inv.reservation_state(r2) == "expired"
    assert inv.bought_by(sku, 1) == 0
    r3 = inv.reserve(sku, 5, buyer=1, now_ms=T0 + 10)
    inv.confirm(r3, [2], now_ms=T0 + 10)
    assert inv.bought_by(sku, 1) == 2
    inv.reserve(sku, 3, buyer=1, now_ms=T0 + 10)


def test_buyer_zero_is_a_buyer_like_any_other(inv: Inventory) -> None:
    sku = inv.add_sku(100, limit_per_buyer=2)
    inv.reserve(sku, 2, now_ms=T0)  # buyer 0 by default
    with pytest.raises(PurchaseLimitError):
        inv.reserve(sku, 1, buyer=0, now_ms=T0)
    inv.reserve(sku, 2, buyer=1, now_ms=T0)


def test_limits_are_per_sku(inv: Inventory) -> None:
    a = inv.add_sku(100, limit_per_buyer=1)
    b = inv.add_sku(100)
    inv.reserve_order([(a, 1), (b, 50)], buyer=4, now_ms=T0)
    with pytest.raises(PurchaseLimitError) as exc:
        inv.reserve_order([(b, 1), (a, 1)], buyer=4, now_ms=T0)
    assert exc.value.sku == a


def test_limit_zero_means_no_limit(inv: Inventory) -> None:
    sku = inv.add_sku(100, limit_per_buyer=1)
    inv.set_purchase_limit(sku, 0)
    assert inv.purchase_limit(sku) == 0
    inv.reserve(sku, 60, buyer=1, now_ms=T0)


def test_bought_by_is_zero_for_a_sku_without_a_limit(inv: Inventory) -> None:
    """docs: counting happens only while the SKU has a limit."""
    sku = inv.add_sku(100)
    rid = inv.reserve(sku, 3, buyer=7, now_ms=T0)
    inv.confirm(rid, now_ms=T0)
    assert inv.bought_by(sku, 7) == 0


def test_setting_a_limit_starts_the_count_from_zero(inv: Inventory) -> None:
    sku = inv.add_sku(100)
    inv.reserve(sku, 3, buyer=7, now_ms=T0)
    inv.set_purchase_limit(sku, 4)
    assert inv.bought_by(sku, 7) == 0
    inv.reserve(sku, 4, buyer=7, now_ms=T0)
    with pytest.raises(PurchaseLimitError):
        inv.reserve(sku, 1, buyer=7, now_ms=T0)


def test_changing_a_limit_keeps_the_counts(inv: Inventory) -> None:
    sku = inv.add_sku(100, limit_per_buyer=3)
    inv.reserve(sku, 3, buyer=7, now_ms=T0)
    inv.set_purchase_limit(sku, 5)
    assert inv.bought_by(sku, 7) == 3
    with pytest.raises(PurchaseLimitError):
        inv.reserve(sku, 3, buyer=7, now_ms=T0)
    inv.reserve(sku, 2, buyer=7, now_ms=T0)


def test_removing_a_limit_drops_its_counts(inv: Inventory) -> None:
    sku = inv.add_sku(100, limit_per_buyer=3)
    inv.reserve(sku, 3, buyer=7, now_ms=T0)
    inv.set_purchase_limit(sku, 0)
    assert inv.bought_by(sku, 7) == 0
    inv.set_purchase_limit(sku, 3)
    assert inv.bought_by(sku, 7) == 0
    inv.reserve(sku, 3, buyer=7, now_ms=T0)


def test_releasing_units_held_before_the_limit_keeps_the_count(inv: Inventory) -> None:
    """Only counted units are given back: releasing a reservation made before the limit was set
    must not lower the count of units reserved after it (the buyer would then get past it)."""
    sku = inv.add_sku(100)
    early = inv.reserve(sku, 3, buyer=7, now_ms=T0)
    inv.set_purchase_limit(sku, 5)
    inv.reserve(sku, 2, buyer=7, now_ms=T0)  # counted: 2
    inv.release(early, now_ms=T0)  # was never counted: still 2
    assert inv.bought_by(sku, 7) == 2
    inv.reserve(sku, 3, buyer=7, now_ms=T0)  # counted: 5
    with pytest.raises(PurchaseLimitError):
        inv.reserve(sku, 1, buyer=7, now_ms=T0)
    assert inv.bought_by(sku, 7) == 5


@pytest.mark.parametrize("resolve", ["release", "expire", "partial_confirm"])
def test_units_counted_under_a_removed_limit_do_not_lower_the_new_count(
    inv: Inventory, resolve: str
) -> None:
    sku = inv.add_sku(100, limit_per_buyer=5)
    old = inv.reserve(sku, 3, buyer=7, timeout_ms=10, now_ms=T0)  # counted under the old limit
    inv.set_purchase_limit(sku, 0)  # drops the counts
    inv.set_purchase_limit(sku, 5)  # counts from zero
    inv.reserve(sku, 4, buyer=7, now_ms=T0)  # counted: 4
    if resolve == "release":
        inv.release(old, now_ms=T0)
    elif resolve == "expire":
        inv.expire_due(T0 + 10)
    else:
        inv.confirm(old, [1], now_ms=T0)
    assert inv.bought_by(sku, 7) == 4
    with pytest.raises(PurchaseLimitError):
        inv.reserve(sku, 2, buyer=7, now_ms=T0 + 10)


# ---------------------------------------------------------------------------- matching
@pytest.fixture
def three() -> Inventory:
    """Warehouses 0, 1, 2; region 1 prefers 2, then 0, then 1; region 2 prefers 1 only."""
    inv = Inventory()
    inv.add_warehouse()
    inv.add_warehouse()
    inv.set_region(1, [2, 0, 1])
    inv.set_region(2, [1])
    return inv


def lines_of(inv: Inventory, rid: int) -> list[tuple[int, int, int]]:
    return [tuple(line) for line in inv.reservation(rid).lines]  # type: ignore[misc]


def test_region_preferences_are_kept_in_order(three: Inventory) -> None:
    assert three.region_warehouses(1) == [2, 0, 1]
    three.set_region(1, [0])
    assert three.region_warehouses(1) == [0]


def test_one_parcel_from_nearest_warehouse_serving_every_line(three: Inventory) -> None:
    a = three.add_sku({0: 5, 1: 5, 2: 1})
    b = three.add_sku({0: 5, 1: 5, 2: 5})
    rid = three.reserve_order([(a, 2), (b, 2)], region=1, now_ms=T0)
    assert lines_of(three, rid) == [(a, 0, 2), (b, 0, 2)]  # 2 lacks a; 0 is next


def test_prefer_one_parcel_splits_when_no_warehouse_serves_all(three: Inventory) -> None:
    a = three.add_sku({2: 5})
    b = three.add_sku({1: 5})
    rid = three.reserve_order([(a, 1), (b, 1)], region=1, now_ms=T0)
    assert lines_of(three, rid) == [(a, 2, 1), (b, 1, 1)]


def test_nearest_per_line_does_not_look_for_one_parcel(three: Inventory) -> None:
    a = three.add_sku({0: 5, 2: 5})
    b = three.add_sku({0: 5})
    order = [(a, 1), (b, 1)]
    near = three.reserve_order(order, region=1, policy=MatchPolicy.NEAREST_PER_LINE, now_ms=T0)
    assert lines_of(three, near) == [(a, 2, 1), (b, 0, 1)]
    one = three.reserve_order(order, region=1, now_ms=T0)
    assert lines_of(three, one) == [(a, 0, 1), (b, 0, 1)]


def test_one_parcel_only_refuses_a_split(three: Inventory) -> None:
    a = three.add_sku({2: 5, 1: 5})
    b = three.add_sku({0: 5, 1: 1})
    c = three.add_sku({1: 5})
    before = snapshot(three)
    with pytest.raises(OutOfStockError) as exc:
        three.reserve_order(
            [(a, 1), (c, 1), (b, 2)], region=1, policy=MatchPolicy.ONE_PARCEL_ONLY, now_ms=T0
        )
    # every line is servable somewhere; the nearest candidate (2) cannot serve c first
    assert exc.value.sku == c
    assert snapshot(three) == before
    rid = three.reserve_order(
        [(a, 1), (c, 1), (b, 1)], region=1, policy=MatchPolicy.ONE_PARCEL_ONLY, now_ms=T0
    )
    assert lines_of(three, rid) == [(a, 1, 1), (c, 1, 1), (b, 1, 1)]


def test_one_parcel_only_blames_a_line_no_warehouse_serves(three: Inventory) -> None:
    a = three.add_sku({1: 5})
    b = three.add_sku({0: 5})
    c = three.add_sku({0: 1})
    with pytest.raises(OutOfStockError) as exc:
        three.reserve_order([(a, 1), (b, 1), (c, 2)], policy=MatchPolicy.ONE_PARCEL_ONLY, now_ms=T0)
    assert exc.value.sku == c


def test_without_region_every_warehouse_lowest_index_first(three: Inventory) -> None:
    a = three.add_sku({1: 5, 2: 5})
    rid = three.reserve(a, 5, now_ms=T0)
    assert lines_of(three, rid) == [(a, 1, 5)]
    rid = three.reserve(a, 1, now_ms=T0)
    assert lines_of(three, rid) == [(a, 2, 1)]


def test_region_skips_warehouses_not_holding_the_sku(three: Inventory) -> None:
    a = three.add_sku({1: 5})
    rid = three.reserve(a, 1, region=1, now_ms=T0)
    assert lines_of(three, rid) == [(a, 1, 1)]


def test_region_never_uses_warehouses_outside_its_list(three: Inventory) -> None:
    a = three.add_sku({0: 5, 2: 5})
    with pytest.raises(OutOfStockError):
        three.reserve(a, 1, region=2, now_ms=T0)


def test_region_with_no_warehouses_refuses_the_first_line(three: Inventory) -> None:
    a, b = three.add_sku(5), three.add_sku(5)
    three.set_region(9, [])
    for policy in MatchPolicy:
        with pytest.raises(OutOfStockError) as exc:
            three.reserve_order([(a, 1), (b, 1)], region=9, policy=policy, now_ms=T0)
        assert exc.value.sku == a


def test_a_line_is_never_split_across_warehouses(three: Inventory) -> None:
    a = three.add_sku({0: 2, 1: 2, 2: 2})
    with pytest.raises(OutOfStockError):
        three.reserve(a, 3, now_ms=T0)
    assert level(three, a) == (6, 6, 0, 0)


@pytest.mark.parametrize("resolve", ["release", "expire", "late_confirm", "partial_confirm"])
def test_units_return_to_exactly_the_recorded_warehouses(three: Inventory, resolve: str) -> None:
    a = three.add_sku({0: 5, 1: 5, 2: 5})
    b = three.add_sku({1: 5})
    rid = three.reserve_order(
        [(a, 2), (b, 3)], region=1, policy=MatchPolicy.NEAREST_PER_LINE, timeout_ms=50, now_ms=T0
    )
    assert lines_of(three, rid) == [(a, 2, 2), (b, 1, 3)]
    three.set_region(1, [1, 0])  # preferences change; the reservation keeps its warehouses
    three.restock(b, 1, 0)
    if resolve == "release":
        three.release(rid, now_ms=T0)
    elif resolve == "expire":
        assert three.expire_due(T0 + 50).tolist() == [rid]
    elif resolve == "late_confirm":
        with pytest.raises(ReservationResolvedError):
            three.confirm(rid, now_ms=T0 + 50)
    else:
        three.confirm(rid, [1, 2], now_ms=T0)
    sold_a, sold_b = (1, 2) if resolve == "partial_confirm" else (0, 0)
    assert level(three, a, 2) == (5, 5 - sold_a, 0, sold_a)
    assert level(three, a, 0) == (5, 5, 0, 0)
    assert level(three, a, 1) == (5, 5, 0, 0)
    assert level(three, b, 1) == (5, 5 - sold_b, 0, sold_b)
    assert level(three, b, 0) == (1, 1, 0, 0)


def test_confirm_sells_from_the_recorded_warehouses(three: Inventory) -> None:
    a = three.add_sku({0: 5, 2: 5})
    rid = three.reserve(a, 2, region=1, now_ms=T0)
    three.confirm(rid, now_ms=T0)
    assert level(three, a, 2) == (5, 3, 0, 2)
    assert level(three, a, 0) == (5, 5, 0, 0)


# ---------------------------------------------------------------------------- stock changes
def test_restock_opens_a_warehouse_for_a_sku(three: Inventory) -> None:
    a = three.add_sku(1)
    three.restock(a, 4, 2)
    assert level(three, a, 2) == (4, 4, 0, 0)
    assert level(three, a) == (5, 5, 0, 0)
    assert lines_of(three, three.reserve(a, 3, now_ms=T0)) == [(a, 2, 3)]


@pytest.mark.parametrize("quantity", [0, -1])
def test_restock_needs_a_positive_quantity(same_after: Inventory, quantity: int) -> None:
    with pytest.raises(InvalidQuantityError):
        same_after.restock(0, quantity)


def test_restock_of_unknown_sku(same_after: Inventory) -> None:
    with pytest.raises(UnknownSkuError):
        same_after.restock(99, 1)


def test_adjust_corrects_on_hand(inv: Inventory) -> None:
    sku = inv.add_sku(10)
    inv.adjust(sku, -3)
    assert level(inv, sku) == (7, 7, 0, 0)
    inv.adjust(sku, 5)
    assert level(inv, sku) == (12, 12, 0, 0)


def test_adjust_never_goes_below_reserved_plus_sold(inv: Inventory) -> None:
    sku = inv.add_sku(10)
    inv.confirm(inv.reserve(sku, 3, now_ms=T0), now_ms=T0)
    inv.reserve(sku, 4, now_ms=T0)
    before = snapshot(inv)
    with pytest.raises(InventoryError):
        inv.adjust(sku, -4)
    assert snapshot(inv) == before
    inv.adjust(sku, -3)
    assert level(inv, sku) == (7, 0, 4, 3)


# ---------------------------------------------------------------------------- expiry
def test_reservation_expires_at_its_deadline_exactly(inv: Inventory) -> None:
    sku = inv.add_sku(5)
    rid = inv.reserve(sku, 2, timeout_ms=100, now_ms=T0)
    with pytest.raises(ReservationResolvedError) as exc:
        inv.confirm(rid, now_ms=T0 + 100)
    assert exc.value.state == "expired"
    assert inv.reservation_state(rid) == "expired"
    assert level(inv, sku) == (5, 5, 0, 0)  # expired on the spot: units are back


def test_late_release_also_expires_on_the_spot(inv: Inventory) -> None:
    sku = inv.add_sku(5)
    rid = inv.reserve(sku, 2, timeout_ms=100, now_ms=T0)
    with pytest.raises(ReservationResolvedError) as exc:
        inv.release(rid, now_ms=T0 + 5000)
    assert exc.value.state == "expired"
    assert level(inv, sku) == (5, 5, 0, 0)
    assert inv.expire_due(T0 + 5000).tolist() == []


def test_confirm_one_ms_before_the_deadline_sells(inv: Inventory) -> None:
    sku = inv.add_sku(5)
    rid = inv.reserve(sku, 2, timeout_ms=100, now_ms=T0)
    inv.confirm(rid, now_ms=T0 + 99)
    assert level(inv, sku) == (5, 3, 0, 2)


def test_expire_due_takes_earliest_deadline_then_lowest_id_up_to_limit(inv: Inventory) -> None:
    sku = inv.add_sku(100)
    r_late = inv.reserve(sku, 1, timeout_ms=30, now_ms=T0)
    r_a = inv.reserve(sku, 1, timeout_ms=20, now_ms=T0)
    r_b = inv.reserve(sku, 1, timeout_ms=10, now_ms=T0 + 10)  # same deadline as r_a
    r_early = inv.reserve(sku, 1, timeout_ms=5, now_ms=T0)
    r_future = inv.reserve(sku, 1, timeout_ms=31, now_ms=T0)
    assert inv.next_deadline_ms() == T0 + 5
    assert inv.expire_due(T0 + 30, limit=2).tolist() == [r_early, r_a]
    assert level(inv, sku) == (100, 97, 3, 0)
    assert inv.expire_due(T0 + 30, limit=2).tolist() == [r_b, r_late]
    assert inv.expire_due(T0 + 30, limit=2).tolist() == []
    assert inv.reservation_state(r_future) == "pending"
    assert inv.next_deadline_ms() == T0 + 31
    assert level(inv, sku) == (100, 99, 1, 0)


def test_expire_due_result_dtype(inv: Inventory) -> None:
    assert inv.expire_due(T0).dtype == np.uint64


def test_next_deadline_is_none_without_pending_reservations(inv: Inventory) -> None:
    sku = inv.add_sku(5)
    assert inv.next_deadline_ms() is None
    rid = inv.reserve(sku, 1, timeout_ms=10, now_ms=T0)
    assert inv.next_deadline_ms() == T0 + 10
    inv.release(rid, now_ms=T0)
    assert inv.next_deadline_ms() is None


def test_pending_past_deadline_counts_until_expired(inv: Inventory) -> None:
    sku = inv.add_sku(5)
    rid = inv.reserve(sku, 1, timeout_ms=10, now_ms=T0)
    assert inv.reservation_state(rid) == "pending"  # no clock: expired only when acted on
    assert inv.open_reservations == 1
    assert inv.next_deadline_ms() == T0 + 10


# ---------------------------------------------------------------------------- prune
def test_prune_resolved_forgets_resolved_up_to_an_id(inv: Inventory) -> None:
    sku = inv.add_sku(100)
    ids = [inv.reserve(sku, 1, now_ms=T0) for _ in range(6)]
    inv.confirm(ids[0], now_ms=T0)
    inv.release(ids[1], now_ms=T0)
    inv.confirm(ids[4], now_ms=T0)
    assert inv.prune_resolved(ids[3]) == 2
    for rid in ids[:2]:
        with pytest.raises(UnknownReservationError):
            inv.reservation_state(rid)
        with pytest.raises(UnknownReservationError):
            inv.confirm(rid, now_ms=T0)
    assert [inv.reservation_state(r) for r in ids[2:]] == [
        "pending",
        "pending",
        "confirmed",
        "pending",
    ]
    assert inv.prune_resolved(ids[3]) == 0
    assert level(inv, sku) == (100, 95, 3, 2)


def test_resolved_states_are_remembered_for_recent_ids_only(inv: Inventory) -> None:
    """docs: the final state is remembered for about the 1,048,576 most recent ids, then
    forgotten (bounded memory; the order store keeps the history)."""
    sku = inv.add_sku(10**9)
    n = 2_500_000
    ids = inv.reserve_batch(
        np.full(n, sku, dtype=np.uint32), np.ones(n, dtype=np.uint32), now_ms=T0
    ).reservation
    inv.confirm_batch(ids, now_ms=T0)
    last = int(ids[-1])
    assert inv.reservation_state(last) == "confirmed"
    assert inv.confirm_batch(ids[-1:], now_ms=T0).tolist() == [ReserveStatus.ALREADY_CONFIRMED]
    with pytest.raises(UnknownReservationError):
        inv.reservation_state(int(ids[0]))
    assert inv.prune_resolved(last) >= 1
    with pytest.raises(UnknownReservationError):
        inv.reservation_state(last)


@pytest.mark.parametrize("limit", [-1, 2**64])
def test_expire_due_with_an_invalid_limit_is_an_invalid_argument(
    same_after: Inventory, limit: int
) -> None:
    with pytest.raises(InventoryError):
        same_after.expire_due(T0, limit)


# ---------------------------------------------------------------------------- batches
def u32(values: list[int]) -> np.ndarray[tuple[int], np.dtype[np.uint32]]:
    return np.array(values, dtype=np.uint32)


def u64(values: list[int]) -> np.ndarray[tuple[int], np.dtype[np.uint64]]:
    return np.array(values, dtype=np.uint64)


def test_batch_of_single_line_orders_until_out_of_stock(inv: Inventory) -> None:
    sku = inv.add_sku(5)
    result = inv.reserve_batch(u32([sku] * 4), u32([2, 2, 2, 1]), now_ms=T0)
    assert isinstance(result, ReserveBatchResult)
    assert result.status.dtype == np.uint8
    assert result.reservation.dtype == np.uint64
    assert result.warehouse.dtype == np.uint32
    assert result.failed_item.dtype == np.int64
    assert result.status.tolist() == [ReserveStatus.OK, ReserveStatus.OK, 1, ReserveStatus.OK]
    assert result.status[2] == ReserveStatus.OUT_OF_STOCK
    assert result.reservation[2] == 0
    assert all(result.reservation[[0, 1, 3]] > 0)
    assert result.warehouse.tolist() == [0, 0, NO_WAREHOUSE, 0]
    assert result.failed_item.tolist() == [-1, -1, 2, -1]
    assert level(inv, sku) == (5, 0, 5, 0)


def test_batch_orders_with_offsets_are_all_or_none(three: Inventory) -> None:
    a = three.add_sku({0: 3, 2: 3})
    b = three.add_sku({1: 3})
    skus = u32([a, b, a, b, a])
    qtys = u32([1, 1, 5, 1, 1])
    offsets = u32([0, 2, 4, 5])
    result = three.reserve_batch(skus, qtys, order_offsets=offsets, now_ms=T0)
    assert result.status.tolist() == [ReserveStatus.OK, ReserveStatus.OUT_OF_STOCK, 0]
    assert result.failed_item.tolist() == [-1, 2, -1]
    assert result.warehouse.tolist() == [0, 1, NO_WAREHOUSE, NO_WAREHOUSE, 0]
    assert level(three, a) == (6, 4, 2, 0)
    assert level(three, b) == (3, 2, 1, 0)
    assert lines_of(three, int(result.reservation[0])) == [(a, 0, 1), (b, 1, 1)]


def test_batch_buyers_and_regions_are_per_order(three: Inventory) -> None:
    a = three.add_sku({0: 10, 1: 10, 2: 10}, limit_per_buyer=2)
    result = three.reserve_batch(
        u32([a, a, a, a]),
        u32([2, 1, 1, 1]),
        buyers=u64([5, 5, 6, 6]),
        regions=u32([1, 1, 2, 7]),
        now_ms=T0,
    )
    assert result.status.tolist() == [
        ReserveStatus.OK,
        ReserveStatus.LIMIT_EXCEEDED,  # buyer 5 already holds 2 from the order before
        ReserveStatus.OK,
        ReserveStatus.UNKNOWN_REGION,
    ]
    assert result.warehouse.tolist() == [2, NO_WAREHOUSE, 1, NO_WAREHOUSE]
    assert result.failed_item.tolist()[:3] == [-1, 1, -1]
    assert three.bought_by(a, 5) == 2
    assert three.bought_by(a, 6) == 1


def test_batch_reports_each_validation_status(inv: Inventory) -> None:
    a = inv.add_sku(5)
    b = inv.add_sku(5)
    skus = u32([a, 99, a, a, b, a, a, b])
    qtys = u32([1, 1, 0, 1, 1, 1, MAX_QUANTITY + 1, 1])
    offsets = u32([0, 2, 3, 6, 8])
    result = inv.reserve_batch(skus, qtys, order_offsets=offsets, now_ms=T0)
    assert result.status.tolist() == [
        ReserveStatus.UNKNOWN_SKU,
        ReserveStatus.INVALID_QUANTITY,
        ReserveStatus.DUPLICATE_SKU,
        ReserveStatus.INVALID_QUANTITY,
    ]
    assert result.failed_item.tolist() == [1, 2, 5, 6]
    assert result.reservation.tolist() == [0, 0, 0, 0]
    assert level(inv, a) == (5, 5, 0, 0)


def test_batch_with_an_empty_order(inv: Inventory) -> None:
    a = inv.add_sku(5)
    result = inv.reserve_batch(u32([a]), u32([1]), order_offsets=u32([0, 0, 1]), now_ms=T0)
    assert result.status.tolist() == [ReserveStatus.INVALID_QUANTITY, ReserveStatus.OK]


def test_empty_batch(inv: Inventory) -> None:
    result = inv.reserve_batch(u32([]), u32([]), now_ms=T0)
    assert len(result.status) == len(result.reservation) == len(result.failed_item) == 0
    result = inv.reserve_batch(u32([]), u32([]), order_offsets=u32([0]), now_ms=T0)
    assert len(result.status) == 0


def build_three() -> Inventory:
    inv = Inventory()
    inv.add_warehouse()
    inv.add_warehouse()
    inv.set_region(1, [2, 0, 1])
    inv.set_region(2, [1])
    inv.add_sku({0: 4, 2: 2})
    inv.add_sku({1: 3, 2: 1}, limit_per_buyer=3)
    inv.add_sku({0: 1})
    return inv


def test_batch_equals_reserving_one_after_another() -> None:
    batched, one_by_one = build_three(), build_three()
    rng = np.random.default_rng(7)
    orders = [
        [(int(s), int(rng.integers(1, 3))) for s in rng.choice(3, rng.integers(1, 4), False)]
        for _ in range(40)
    ]
    buyer_list = rng.integers(0, 3, len(orders)).tolist()
    region_list = rng.choice([1, 2], len(orders)).tolist()
    flat = [line for order in orders for line in order]
    offsets = np.cumsum([0, *map(len, orders)]).astype(np.uint32)
    for policy in MatchPolicy:
        result = batched.reserve_batch(
            u32([s for s, _ in flat]),
            u32([q for _, q in flat]),
            order_offsets=offsets,
            buyers=u64(buyer_list),
            regions=u32(region_list),
            policy=policy,
            timeout_ms=1000,
            now_ms=T0,
        )
        for k, order in enumerate(orders):
            try:
                rid = one_by_one.reserve_order(
                    order,
                    buyer=buyer_list[k],
                    region=region_list[k],
                    policy=policy,
                    timeout_ms=1000,
                    now_ms=T0,
                )
            except OutOfStockError:
                assert result.status[k] == ReserveStatus.OUT_OF_STOCK
            except PurchaseLimitError:
                assert result.status[k] == ReserveStatus.LIMIT_EXCEEDED
            else:
                assert result.status[k] == ReserveStatus.OK
                assert lines_of(batched, int(result.reservation[k])) == lines_of(one_by_one, rid)
        for sku in range(3):
            assert batched.stock_by_warehouse(sku) == one_by_one.stock_by_warehouse(sku)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"skus": [0, 0], "quantities": [1]},
        {"skus": [0, 0], "quantities": [1, 1], "order_offsets": [1, 2]},
        {"skus": [0, 0], "quantities": [1, 1], "order_offsets": [0, 1]},
        {"skus": [0, 0], "quantities": [1, 1], "order_offsets": [0, 3]},
        {"skus": [0, 0], "quantities": [1, 1], "order_offsets": [0, 2, 1, 2]},
        {"skus": [0, 0], "quantities": [1, 1], "order_offsets": []},
        {"skus": [0, 0], "quantities": [1, 1], "buyers": [1]},
        {"skus": [0, 0], "quantities": [1, 1], "regions": [1, 1, 1]},
        {"skus": [0, 0], "quantities": [1, 1], "order_offsets": [0, 2], "buyers": [1, 2]},
    ],
    ids=[
        "quantities-short",
        "offsets-not-from-zero",
        "offsets-not-to-the-end",
        "offsets-past-the-end",
        "offsets-falling",
        "offsets-empty",
        "buyers-short",
        "regions-long",
        "buyers-per-item-not-per-order",
    ],
)
def test_malformed_batch_arrays_raise_before_anything_changes(
    three: Inventory, kwargs: dict[str, list[int]]
) -> None:
    three.add_sku(100)
    before = snapshot(three)
    arrays: dict[str, np.ndarray[tuple[int], np.dtype[np.generic]]] = {
        "skus": u32(kwargs["skus"]),
        "quantities": u32(kwargs["quantities"]),
    }
    if "order_offsets" in kwargs:
        arrays["order_offsets"] = u32(kwargs["order_offsets"])
    if "buyers" in kwargs:
        arrays["buyers"] = u64(kwargs["buyers"])
    if "regions" in kwargs:
        arrays["regions"] = u32(kwargs["regions"])
    with pytest.raises(InventoryError):
        three.reserve_batch(now_ms=T0, **arrays)  # type: ignore[arg-type]
    assert snapshot(three) == before


def test_confirm_and_release_batch_statuses(inv: Inventory) -> None:
    sku = inv.add_sku(10)
    r = [inv.reserve(sku, 1, timeout_ms=100, now_ms=T0) for _ in range(6)]
    inv.confirm(r[0], now_ms=T0)
    inv.release(r[1], now_ms=T0)
    inv.expire_due(T0 + 100, limit=0)
    statuses = inv.confirm_batch(u64([r[0], r[1], r[2], r[2], 2**62, r[3]]), now_ms=T0 + 50)
    assert statuses.dtype == np.uint8
    assert statuses.tolist() == [
        ReserveStatus.ALREADY_CONFIRMED,
        ReserveStatus.ALREADY_RELEASED,
        ReserveStatus.OK,
        ReserveStatus.ALREADY_CONFIRMED,  # the same id twice: the second finds it confirmed
        ReserveStatus.UNKNOWN_RESERVATION,
        ReserveStatus.OK,
    ]
    statuses = inv.release_batch(u64([r[4], r[3], r[4]]), now_ms=T0 + 50)
    assert statuses.tolist() == [
        ReserveStatus.OK,
        ReserveStatus.ALREADY_CONFIRMED,
        ReserveStatus.ALREADY_RELEASED,
    ]
    statuses = inv.confirm_batch(u64([r[5], r[5]]), now_ms=T0 + 100)  # at the deadline
    assert statuses.tolist() == [ReserveStatus.ALREADY_EXPIRED, ReserveStatus.ALREADY_EXPIRED]
    assert level(inv, sku) == (10, 7, 0, 3)


def test_release_batch_at_deadline_expires(inv: Inventory) -> None:
    sku = inv.add_sku(10)
    rid = inv.reserve(sku, 4, timeout_ms=100, now_ms=T0)
    assert inv.release_batch(u64([rid]), now_ms=T0 + 100).tolist() == [
        ReserveStatus.ALREADY_EXPIRED
    ]
    assert inv.reservation_state(rid) == "expired"
    assert level(inv, sku) == (10, 10, 0, 0)


# ---------------------------------------------------------------------------- integer ranges
def test_buyers_in_the_upper_half_of_u64_are_distinct_buyers(inv: Inventory) -> None:
    """Buyers are u64 (batch ``buyers`` arrays, ``bought_buyer``): 2**63 and 2**64 - 1 are two
    buyers, and the single-call API must not fold them into one."""
    sku = inv.add_sku(10, limit_per_buyer=1)
    top = 2**64 - 1
    rid = inv.reserve(sku, 1, buyer=2**63, now_ms=T0)
    assert inv.reservation(rid).buyer == 2**63
    inv.reserve(sku, 1, buyer=top, now_ms=T0)  # another buyer: within their own limit
    assert inv.bought_by(sku, 2**63) == 1
    assert inv.bought_by(sku, top) == 1
    assert inv.bought_by(sku, 2**63 - 1) == 0


def test_single_and_batch_calls_agree_on_a_large_buyer(inv: Inventory) -> None:
    sku = inv.add_sku(10, limit_per_buyer=1)
    result = inv.reserve_batch(u32([sku]), u32([1]), buyers=u64([2**64 - 1]), now_ms=T0)
    assert result.status.tolist() == [ReserveStatus.OK]
    assert inv.bought_by(sku, 2**64 - 1) == 1
    with pytest.raises(PurchaseLimitError):
        inv.reserve(sku, 1, buyer=2**64 - 1, now_ms=T0)


@pytest.mark.parametrize("buyer", [-1, 2**64, 2**70])
def test_buyer_outside_u64_is_an_invalid_argument(same_after: Inventory, buyer: int) -> None:
    with pytest.raises(InventoryError):
        same_after.reserve(0, 1, buyer=buyer, now_ms=T0)


@pytest.mark.parametrize("rid", [2**63, 2**64 - 1])
def test_unknown_large_reservation_id_is_reported_as_asked(inv: Inventory, rid: int) -> None:
    with pytest.raises(UnknownReservationError) as exc:
        inv.reservation_state(rid)
    assert exc.value.reservation == rid


def test_batch_calls_accept_strided_arrays(inv: Inventory) -> None:
    """Any 1-D array of the right dtype will do, not only contiguous ones (e.g. ``a[::2]``)."""
    sku = inv.add_sku(10)
    result = inv.reserve_batch(u32([sku] * 8)[::2], u32([1] * 8)[::2], now_ms=T0)
    assert result.status.tolist() == [ReserveStatus.OK] * 4
    statuses = inv.confirm_batch(result.reservation[::2], now_ms=T0)
    assert statuses.tolist() == [ReserveStatus.OK] * 2
    statuses = inv.release_batch(result.reservation[1::2], now_ms=T0)
    assert statuses.tolist() == [ReserveStatus.OK] * 2
    assert level(inv, sku) == (10, 8, 0, 2)
