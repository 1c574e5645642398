"""The Rust intake's per-order cost: ``OrderBook.place_batch`` on a 1,000-order body.

Skipped by default; run with ``pytest benchmarks/test_bench_intake.py --benchmark-only`` and
compare the ``intake`` group's means. The Rust case parses and validates the body, prices,
reserves (two warehouses, two regions), assigns IDs, stages the rows and renders the response.
The baselines do much less, in Python, on the same bytes:

- ``orjson round trip``: ``orjson.loads`` of the body and ``orjson.dumps`` of the (already
  built) response: the least any Python handler must do per order, with no logic at all.
- ``msgspec typed round trip``: decode into the API's typed ``OrderBatchIn`` (the validation
  the server did in Python before the Rust intake) and encode the response.
"""

from typing import Any

import msgspec
import orjson
import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from pyorder._core import OrderBook, OrderRows
from pyorder.ids import OrderIdGenerator
from pyorder.inventory import Inventory
from pyorder.server.api.orders_bodies import OrderBatchIn

ORDERS = 1000
SKUS = 16
NOW_MS = 1_796_100_000_000

pytestmark = pytest.mark.benchmark(group="intake")


def _order(sku: int, i: int) -> dict[str, Any]:
    """The load test's order (``loadtest/http_bench.py``), about 150 bytes of JSON."""
    return {
        "lines": [{"sku": sku, "quantity": 1 + i % 2}],
        "address": {
            "name": f"Buyer {i:06d}",
            "line1": f"{i % 999} Bench Road",
            "city": "Hangzhou",
            "region": ("east", "west")[i % 2],
            "postal_code": "310000",
        },
    }


BODY = orjson.dumps({"orders": [_order(i % SKUS, i) for i in range(ORDERS)]})


def _book() -> OrderBook:
    return _book_and_inventory()[0]


def _book_and_inventory() -> tuple[OrderBook, Inventory]:
    inventory = Inventory()
    inventory.add_warehouse()
    book = OrderBook(inventory, OrderIdGenerator(3), 15 * 60 * 1000)
    for rid, (code, whs) in enumerate((("east", [0, 1]), ("west", [1, 0]))):
        inventory.set_region(rid, whs)
        book.set_region(code, rid)
    for i in range(SKUS):
        sku = inventory.add_sku({0: 10**15, 1: 10**15})
        book.set_sku(sku, 1999 + i, "CNY", "merchant:bench")
    return book, inventory


def test_rust_place_batch(benchmark: BenchmarkFixture) -> None:
    book = _book()

    def place() -> int:
        status, _body, created, _ = book.place_batch(BODY, "bench", 7, OrderRows(), NOW_MS)
        assert status == 200
        return int(created)

    assert benchmark(place) == ORDERS


ONE = orjson.dumps(_order(3, 1))


def test_rust_place_one(benchmark: BenchmarkFixture) -> None:
    """One order per call (the single route's work): parse, price, reserve, stage, render."""
    book = _book()
    rows = OrderRows()

    def place() -> int:
        status, _body, created, _ = book.place_one(ONE, "bench", 7, rows, NOW_MS)
        assert status == 201
        return int(created)

    assert benchmark(place) == 1


def test_rust_place_order(benchmark: BenchmarkFixture) -> None:
    """The same order given as values (``Orders.place``'s path): no JSON either way."""
    book = _book()
    rows = OrderRows()
    order = _order(3, 1)
    lines = [(line["sku"], line["quantity"]) for line in order["lines"]]
    address = order["address"]

    def place() -> int:
        placed, refused = book.place_order(lines, "bench", 7, rows, NOW_MS, **address)
        assert refused is None
        assert placed is not None
        return 1

    assert benchmark(place) == 1


def _response() -> bytes:
    _, body, _, _ = _book().place_batch(BODY, "bench", 7, OrderRows(), NOW_MS)
    return bytes(body)


def test_baseline_orjson_round_trip(benchmark: BenchmarkFixture) -> None:
    response = orjson.loads(_response())

    def round_trip() -> int:
        orjson.loads(BODY)
        return len(orjson.dumps(response))

    assert benchmark(round_trip) > 0


def test_baseline_msgspec_typed_round_trip(benchmark: BenchmarkFixture) -> None:
    response = msgspec.json.decode(_response())
    decoder = msgspec.json.Decoder(OrderBatchIn)

    def round_trip() -> int:
        decoder.decode(BODY)
        return len(msgspec.json.encode(response))

    assert benchmark(round_trip) > 0
