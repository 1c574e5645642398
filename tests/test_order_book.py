"""The Rust intake (``OrderBook``) against the Python definitions it replaces on the hot path.

Its answers must be byte-for-byte what the API's msgspec types render
(``pyorder.server.api.orders_bodies``), its validation must accept and refuse what
``OrderIn``/``OrderBatchIn`` accept and refuse (400 for not-JSON, 422 for invalid), and a batch
must decide exactly as the same orders placed one by one.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import msgspec
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyorder._core import OrderBook, OrderRows
from pyorder.ids import OrderIdGenerator
from pyorder.inventory import Inventory
from pyorder.kernel.clock import iso_ms as iso
from pyorder.server.api.orders_bodies import OrderBatchIn, OrderIn, order_out
from pyorder.storage.codec import staged_order

T0 = 1_796_100_000_000  # 2026-12-01 ~04:40Z
TIMEOUT = 15 * 60 * 1000
ADDRESS = {"name": "Alice", "line1": "1 Road", "city": "X", "region": "north"}


@dataclass
class Shop:
    inventory: Inventory
    book: OrderBook
    rows: OrderRows

    def batch(self, orders: list[dict[str, Any]], buyer: str = "alice") -> tuple[int, Any]:
        return self.batch_raw(orjson.dumps({"orders": orders}), buyer)

    def batch_raw(self, body: bytes, buyer: str = "alice") -> tuple[int, Any]:
        status, out, _, _ = self.book.place_batch(body, buyer, _number(buyer), self.rows, T0)
        return status, orjson.loads(out)

    def one(self, order: dict[str, Any], buyer: str = "alice") -> tuple[int, Any]:
        return self.one_raw(orjson.dumps(order), buyer)

    def one_raw(self, body: bytes, buyer: str = "alice") -> tuple[int, Any]:
        status, out, _, _ = self.book.place_one(body, buyer, _number(buyer), self.rows, T0)
        return status, orjson.loads(out)


def _number(buyer: str) -> int:
    return sum(buyer.encode()) + 1


def make_shop(stock: list[dict[int, int]], limits: dict[int, int] | None = None) -> Shop:
    """Warehouses 0..2; region north = [0, 1], south = [2]; SKU i with ``stock[i]``, price
    100 * (i + 1) CNY, except SKU 3 (if any), priced in USD."""
    inventory = Inventory()
    inventory.add_warehouse()
    inventory.add_warehouse()
    ids = OrderIdGenerator(1)
    book = OrderBook(inventory, ids, TIMEOUT)
    for code, rid, whs in (("north", 0, [0, 1]), ("south", 1, [2])):
        inventory.set_region(rid, whs)
        book.set_region(code, rid)
    for i, units in enumerate(stock):
        sku = inventory.add_sku(units, limit_per_buyer=(limits or {}).get(i, 0))
        book.set_sku(sku, 100 * (i + 1), "USD" if i == 3 else "CNY", f"merchant:m{i % 2}")
    return Shop(inventory, book, OrderRows())


def order(*lines: tuple[int, int], region: str = "north", **address: str) -> dict[str, Any]:
    return {
        "lines": [{"sku": s, "quantity": q} for s, q in lines],
        "address": {**ADDRESS, "region": region, **address},
    }


def test_answers_are_what_the_api_types_render() -> None:
    shop = make_shop([{0: 5}, {1: 5}, {0: 1, 2: 9}])
    status, out = shop.batch(
        [
            order((0, 2), (1, 1), phone="+86 1", line2='"quoted" \\ \n'),
            order((2, 1), region="south", name="张三"),
        ]
    )
    assert status == 200
    assert out["created"] == 2
    for result in out["results"]:
        staged = shop.rows.find(int(result["order"]["id"]))
        assert staged is not None
        expected = msgspec.json.encode(order_out(staged_order(staged)))
        assert orjson.dumps(result["order"]) == orjson.dumps(orjson.loads(expected))
    first = out["results"][0]["order"]
    assert first["lines"] == [
        {"sku": 0, "quantity": 2, "unit_price": 100, "line_total": 200, "warehouse": 0},
        {"sku": 1, "quantity": 1, "unit_price": 200, "line_total": 200, "warehouse": 1},
    ]
    assert first["total"] == 400
    assert first["address"]["country"] == "CN"
    assert first["created_at"] == iso(T0)
    assert first["payment_deadline"] == iso(T0 + TIMEOUT)
    # The single-order answer is the same rendering, byte for byte.
    status, body, created, stockouts = shop.book.place_one(
        orjson.dumps(order((0, 1))), "alice", 1, shop.rows, T0
    )
    assert (status, created, stockouts) == (201, 1, 0)
    staged = shop.rows.find(int(orjson.loads(body)["id"]))
    assert staged is not None
    assert body == msgspec.json.encode(order_out(staged_order(staged)))


@given(st.integers(min_value=0, max_value=4_102_444_800_000))
def test_timestamps_render_as_python_does(ms: int) -> None:
    shop = make_shop([{0: 1}])
    status, body, _, _ = shop.book.place_one(orjson.dumps(order((0, 1))), "a", 1, shop.rows, ms)
    assert status == 201
    assert orjson.loads(body)["created_at"] == iso(ms)


def test_refusals_name_code_status_and_sku_and_change_nothing() -> None:
    shop = make_shop([{0: 3}, {0: 10}, {2: 5}, {0: 5}], limits={1: 1})
    before = [shop.inventory.stock(s) for s in range(4)]
    status, out = shop.batch(
        [
            order((99, 1)),
            order((0, 1), region="nowhere"),
            order((0, 4)),
            order((1, 2)),
            order((0, 1), (0, 1)),
            order((0, 1), (3, 1)),
            order((2, 1)),  # SKU 2 is stocked only in the south
        ]
    )
    assert status == 200
    got = [
        (r["status"], r["error"]["code"], r["error"]["details"], r["order"]) for r in out["results"]
    ]
    assert got == [
        (422, "invalid_input", {"field": "lines", "sku": 99}, None),
        (422, "unknown_region", {"field": "address.region"}, None),
        (409, "out_of_stock", {"sku": 0}, None),
        (409, "purchase_limit_exceeded", {"sku": 1}, None),
        (422, "invalid_input", {"field": "lines"}, None),
        (422, "invalid_input", {"field": "lines"}, None),
        (409, "out_of_stock", {"sku": 2}, None),
    ]
    assert "SKU 0 is out of stock" in out["results"][2]["error"]["message"]
    assert (out["created"], out["failed"]) == (0, 7)
    assert [shop.inventory.stock(s) for s in range(4)] == before
    assert len(shop.rows) == 0
    assert shop.book.pending_count == 0
    status, err = shop.one(order((0, 4)))
    assert status == 409
    assert err == {
        "error": {
            "code": "out_of_stock",
            "message": "SKU 0 is out of stock for this order",
            "details": {"sku": 0},
        }
    }


BAD_BODIES: list[bytes] = [
    b"",
    b"{",
    b'{"orders": [{',
    b"\xff\xfe",
    b'{"orders": [{"lines": [{"sku": 0, "quantity": 1}], "address": {"name": "a", "line1": "b", "city": "c", "region": "north"}}]} trailing',
    b"null",
    b"[]",
    b"{}",
    b'{"orders": []}',
    b'{"orders": {}}',
    b'{"orders": [1]}',
    b'{"orders": [{"lines": [], "address": {}}]}',
    b'{"orders": [{"lines": [{"sku": 0, "quantity": 1}]}]}',
    b'{"orders": [{"lines": [{"sku": 0, "quantity": 1, "x": 1}], "address": {"name": "a", "line1": "b", "city": "c", "region": "north"}}]}',
    b'{"orders": [{"lines": [{"sku": 0, "quantity": true}], "address": {"name": "a", "line1": "b", "city": "c", "region": "north"}}]}',
    b'{"orders": [{"lines": [{"sku": 0, "quantity": 1.5}], "address": {"name": "a", "line1": "b", "city": "c", "region": "north"}}]}',
    b'{"orders": [{"lines": [{"sku": 0, "quantity": 99999999999999999999999}], "address": {"name": "a", "line1": "b", "city": "c", "region": "north"}}]}',
    b'{"orders": [{"lines": [{"sku": -1, "quantity": 1}], "address": {"name": "a", "line1": "b", "city": "c", "region": "north"}}]}',
    b'{"orders": [{"lines": [{"sku": 0, "quantity": 1}], "address": {"name": "", "line1": "b", "city": "c", "region": "north"}}]}',
    b'{"orders": [{"lines": [{"sku": 0, "quantity": 1}], "address": {"name": "a", "line1": "b", "city": "c", "region": "no rth"}}]}',
    b'{"orders": [{"lines": [{"sku": 0, "quantity": 1}], "address": {"name": "a", "line1": "b", "city": "c", "region": "north", "country": "cn"}}]}',
    b'{"orders": [{"lines": [{"sku": 0, "quantity": 1}], "address": {"name": "a\\u0000", "line1": "b", "city": "c", "region": "north"}}]}',
    b'{"orders": [{"lines": [{"sku": 0, "quantity": 1}], "address": {"name": "a", "line1": "b", "city": "c", "region": "north", "zip": "1"}}]}',
    b'{"orders": [{"lines": [{"sku": 0, "quantity": 1}], "address": {"name": "\\ud800", "line1": "b", "city": "c", "region": "north"}}]}',
]


def _api_status(body: bytes, kind: type[Any]) -> int:
    """What the API's msgspec types say of a body: 200 (valid), 400 or 422."""
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return 400
    try:
        msgspec.json.decode(body, type=kind)
    except msgspec.ValidationError:
        return 422
    except msgspec.DecodeError:
        return 400
    if b"\\u0000" in body:
        return 422
    return 200


@pytest.mark.parametrize("body", BAD_BODIES, ids=range(len(BAD_BODIES)))
def test_bad_bodies_are_refused_as_the_schema_refuses_them(body: bytes) -> None:
    shop = make_shop([{0: 5}])
    expected = _api_status(body, OrderBatchIn)
    assert expected != 200, "every body here is bad"
    status, out = shop.batch_raw(body)
    assert status == expected, out
    assert out["error"]["code"] == ("malformed_json" if status == 400 else "invalid_input")
    assert out["error"]["message"]
    assert shop.inventory.stock(0).reserved == 0


def test_a_batch_over_the_maximum_is_422() -> None:
    shop = make_shop([{0: 5000}])
    status, out = shop.batch([order((0, 1))] * 1001)
    assert status == 422
    assert "$.orders" in out["error"]["message"]
    assert shop.inventory.stock(0).reserved == 0


line = st.tuples(st.integers(0, 5), st.integers(1, 4))
an_order = st.tuples(
    st.lists(line, min_size=1, max_size=3), st.sampled_from(["north", "south", "mars"])
)


@settings(max_examples=60, deadline=None)
@given(st.lists(an_order, min_size=1, max_size=30))
def test_a_batch_decides_as_the_same_orders_one_by_one(orders: list[Any]) -> None:
    stock = [{0: 6}, {1: 4}, {0: 2, 1: 2, 2: 3}, {0: 9}, {2: 1}]
    bodies = [order(*lines, region=region) for lines, region in orders]
    batch, single = make_shop(stock, {2: 3}), make_shop(stock, {2: 3})
    status, out = batch.batch(bodies)
    assert status == 200
    one_by_one = [single.one(b) for b in bodies]
    for result, (status, got) in zip(out["results"], one_by_one, strict=True):
        assert result["status"] == status
        if status == 201:
            assert _without_ids(result["order"]) == _without_ids(got)
        else:
            assert result["error"] == got["error"]
    for sku in range(len(stock)):
        assert batch.inventory.stock_by_warehouse(sku) == single.inventory.stock_by_warehouse(sku)
    assert len(batch.rows) == len(single.rows) == out["created"]
    assert batch.rows.reserved_deltas() == single.rows.reserved_deltas()
    batch.inventory.check_invariants()


def _without_ids(o: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in o.items() if k != "id"}


def test_rows_and_pending_orders_match_the_answers() -> None:
    shop = make_shop([{0: 5}, {1: 5}])
    _, out = shop.batch([order((0, 2), (1, 1)), order((1, 1))], buyer="bob")
    ids = [int(r["order"]["id"]) for r in out["results"]]
    assert ids == sorted(ids)
    rows = shop.rows.order_tuples()
    assert [r[0] for r in rows] == ids
    first = rows[0]
    assert first[1:6] == ("bob", "pending_payment", "CNY", 400, "north")
    assert orjson.loads(first[6]) == out["results"][0]["order"]["address"]
    assert first[8:] == (T0, T0 + TIMEOUT, T0)
    assert shop.rows.line_tuples()[:2] == [
        (ids[0], 0, 0, 0, 2, 100, "merchant:m0"),
        (ids[0], 1, 1, 1, 1, 200, "merchant:m1"),
    ]
    assert shop.rows.reserved_deltas() == [(0, 0, 2), (1, 1, 2)]
    pending = shop.book.pending_order(ids[0])
    assert pending is not None
    reservation = pending[1]
    # What paying and expiring need: the book's record, and its reservation's part.
    assert pending == (
        ids[0],
        reservation,
        _number("bob"),
        400,
        "CNY",
        T0 + TIMEOUT,
        [(0, 0, 2), (1, 1, 1)],
        "pending_payment",
    )
    assert shop.book.order_of_reservation(reservation) == ids[0]
    taken = shop.book.take_pending(ids[0])
    assert taken == (ids[0], reservation, 400, "CNY")
    assert shop.book.pending_order(ids[0]) is None
    assert shop.book.order_of_reservation(reservation) is None
    assert shop.book.take_pending(ids[0]) is None
    shop.book.add_pending(*taken)
    assert shop.book.pending_order(ids[0]) == pending
    # The staged rows hold the order in full until it commits.
    staged = shop.rows.find(ids[0])
    assert staged is not None
    assert staged_order(staged).address == out["results"][0]["order"]["address"]
    assert shop.rows.find(ids[1] + 1) is None


def test_expiry_stops_holding_the_orders_and_returns_their_units() -> None:
    shop = make_shop([{0: 5}, {1: 5}])
    _, out = shop.batch([order((0, 2), (1, 1)), order((1, 1))], buyer="bob")
    ids = [int(r["order"]["id"]) for r in out["results"]]
    assert shop.book.expire_due(T0 + TIMEOUT - 1, 10) == (0, [])
    count, expired = shop.book.expire_due(T0 + TIMEOUT, 1)
    assert count == 1
    assert [e[0] for e in expired] == ids[:1]
    assert expired[0][6] == [(0, 0, 2), (1, 1, 1)]
    assert shop.book.pending_order(ids[0]) is None
    assert shop.book.pending_count == 1
    assert shop.book.expire_due(T0 + TIMEOUT, 10)[0] == 1
    assert shop.book.pending_count == 0
    assert shop.inventory.stock(1).reserved == 0


def test_single_body_validation_matches_order_in() -> None:
    shop = make_shop([{0: 5}])
    for body in [b"{", b'{"lines": []}', b'{"orders": []}', orjson.dumps(order((0, 0)))]:
        status, _ = shop.one_raw(body)
        assert status == _api_status(body, OrderIn)


def test_placing_releases_the_gil() -> None:
    """Another thread runs while a big batch is taken (the commit thread needs the GIL)."""
    shop = make_shop([{0: 10**9}])
    body = orjson.dumps({"orders": [order((0, 1))] * 1000})
    ticks = 0
    stop = threading.Event()

    def spin() -> None:
        nonlocal ticks
        while not stop.is_set():
            ticks += 1

    t = threading.Thread(target=spin)
    t.start()
    try:
        for _ in range(20):
            status, _out, created, _ = shop.book.place_batch(body, "a", 1, shop.rows, T0)
            assert (status, created) == (200, 1000)
    finally:
        stop.set()
        t.join()
    assert ticks > 0


def test_rows_move_to_other_rows_but_the_skipped_orders() -> None:
    """``OrderRows.take_from`` (a cluster node stages the orders the cluster's purchase limits
    allow, placed into rows of their own first): the orders move in their order, a skipped one
    is dropped, the source is left empty, and the reserved units follow."""
    shop = make_shop([{0: 10}])
    status, out = shop.batch([order((0, 1)), order((0, 2)), order((0, 3))])
    assert (status, out["created"]) == (200, 3)
    ids = [int(r["order"]["id"]) for r in out["results"]]
    batch = OrderRows()
    assert batch.take_from(shop.rows, [ids[1]]) == 2
    assert len(shop.rows) == 0
    assert shop.rows.reserved_deltas() == []
    assert [o[0] for o in batch.order_tuples()] == [ids[0], ids[2]]
    assert batch.reserved_deltas() == [(0, 0, 4)]
    assert batch.find(ids[1]) is None
    with pytest.raises(ValueError, match="themselves"):
        batch.take_from(batch)
