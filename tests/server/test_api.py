"""End-to-end API tests: every endpoint of the OpenAPI document and its documented errors,
over HTTP against the real server, on SQLite and on PostgreSQL."""

import gzip
import json
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pytest

from pyorder.server.api import reference_document, router
from pyorder.server.openapi import operations
from tests.server.e2e_lib import (
    Call,
    Launch,
    Response,
    Server,
    Shop,
    World,
    address,
    build_world,
    order_body,
    unique,
)

MAX_ID = 2**31 - 1


def assert_error(resp: Response, status: int, code: str | None = None) -> None:
    """``resp`` is the JSON error ``{"error": {"code", "message"}}`` with ``status``."""
    assert resp.status == status, resp
    assert resp.headers.get("content-type", "").startswith("application/json"), resp.headers
    got = resp.error_code
    if code is not None:
        assert got == code, resp


def metric(text: str, name: str) -> float:
    """Sum of the samples of ``name`` (any labels) in Prometheus text."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        sample, _, value = line.rpartition(" ")
        if sample == name or sample.startswith(name + "{"):
            total += float(value)
    return total


def iso(ts: str) -> datetime:
    return datetime.fromisoformat(ts)


# --- health, metrics, documents, routing ------------------------------------------------------


def test_healthz_and_readyz(server: Server) -> None:
    assert server.ok("GET", "/healthz", token=None) == {"status": "ok"}
    assert server.ok("GET", "/readyz", token=None) == {"status": "ready"}


def test_metrics_is_prometheus_text_with_requests_and_commits(server: Server, world: World) -> None:
    sku = world.shop.sku({world.a: 5})
    buyer = server.token("buyer", unique("metrics"))
    assert world.shop.order(buyer, [(sku, 1)], world.north).status == 201
    resp = server.call("GET", "/metrics", token=server.admin())
    assert resp.status == 200, resp
    assert resp.headers["content-type"].startswith("text/plain"), resp.headers
    text = resp.body.decode()
    assert "pyorder_http_requests_total{" in text
    assert 'route="/v1/orders"' in text
    assert metric(text, "pyorder_http_requests_total") > 0
    assert "pyorder_commit_seconds_bucket{" in text
    assert metric(text, "pyorder_commit_seconds_count") >= 1
    assert "pyorder_http_request_seconds_bucket{" in text


def test_metrics_count_orders_created_and_stockouts(server: Server, world: World) -> None:
    """The issue asks /metrics for "orders created" and "stock-outs"; the counters exist
    (pyorder_orders_created_total, pyorder_stockouts_total) but must also move."""
    sku = world.shop.sku({world.a: 1})
    buyer = server.token("buyer", unique("metrics"))
    before = server.call("GET", "/metrics", token=server.admin()).body.decode()
    assert world.shop.order(buyer, [(sku, 1)], world.north).status == 201
    assert_error(world.shop.order(buyer, [(sku, 1)], world.north), 409, "out_of_stock")
    after = server.call("GET", "/metrics", token=server.admin()).body.decode()
    created = metric(after, "pyorder_orders_created_total") - metric(
        before, "pyorder_orders_created_total"
    )
    stockouts = metric(after, "pyorder_stockouts_total") - metric(before, "pyorder_stockouts_total")
    assert created == 1, "pyorder_orders_created_total did not count the order created"
    assert stockouts == 1, "pyorder_stockouts_total did not count the order refused"


def test_openapi_document_lists_every_operation(server: Server) -> None:
    """The served document is the one generated from the routes (``pyorder.server.openapi``), with
    every operation's OK and error statuses; ``tests/server/test_contract.py`` checks it
    against the router."""
    doc = server.ok("GET", "/v1/openapi.json", token=None)
    assert str(doc["openapi"]).startswith("3.")
    assert doc == json.loads(json.dumps(reference_document()))
    for method, path, op in operations(router().routes()):
        responses = doc["paths"][path][method]["responses"]
        assert str(op.ok) in responses
        for status in op.errors:
            assert str(status) in responses


def test_unknown_route_and_method_are_json_errors(server: Server) -> None:
    assert_error(server.call("GET", "/v1/nothing-here"), 404)
    resp = server.call("DELETE", "/v1/orders", token=server.admin())
    assert_error(resp, 405)
    assert "GET" in resp.headers.get("allow", ""), resp.headers


# --- warehouses --------------------------------------------------------------------------------


def test_warehouse_create_list_get(server: Server) -> None:
    sub = unique("owner")
    merchant = server.token("merchant", sub)
    name = unique("depot")
    created = server.ok("POST", "/v1/warehouses", token=merchant, json={"name": name}, expect=201)
    assert set(created) == {"id", "name", "owner"}
    assert isinstance(created["id"], int)
    assert created["name"] == name
    assert created["owner"] == f"merchant:{sub}"
    listed = server.ok("GET", "/v1/warehouses", token=merchant)["warehouses"]
    assert created in listed
    ids = [w["id"] for w in listed]
    assert ids == sorted(ids)
    assert server.ok("GET", f"/v1/warehouses/{created['id']}", token=merchant) == created
    by_admin = server.ok(
        "POST", "/v1/warehouses", token=server.admin(), json={"name": unique("hub")}, expect=201
    )
    assert by_admin["owner"] == "admin:ops"


def test_warehouse_created_with_regions_joins_them_last(server: Server) -> None:
    region = unique("reg")
    admin = server.admin()
    first = server.ok(
        "POST", "/v1/warehouses", token=admin, json={"name": "one", "regions": [region]}, expect=201
    )
    second = server.ok(
        "POST",
        "/v1/warehouses",
        token=server.token("merchant", "x"),
        json={"name": "two", "regions": [region, region]},
        expect=201,
    )
    got = server.ok("GET", f"/v1/regions/{region}", token=server.token("buyer", "a"))
    assert got == {"region": region, "warehouses": [first["id"], second["id"]]}


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({}, 422, "invalid_input"),
        ({"name": ""}, 422, "invalid_input"),
        ({"name": 5}, 422, "invalid_input"),
        ({"name": "x" * 201}, 422, "invalid_input"),
        ({"name": "x", "owner": "merchant:y"}, 422, "invalid_input"),
        ({"name": "x", "regions": ["bad code!"]}, 422, "invalid_input"),
        ({"name": "x", "regions": "east"}, 422, "invalid_input"),
        (b"{", 400, "malformed_json"),
        (b"", 400, None),
        (b"[]", 422, "invalid_input"),
    ],
    ids=repr,
)
def test_warehouse_create_refuses_bad_bodies(
    server: Server, body: object, status: int, code: str | None
) -> None:
    token = server.admin()
    if isinstance(body, bytes):
        resp = server.call("POST", "/v1/warehouses", token=token, body=body)
    else:
        resp = server.call("POST", "/v1/warehouses", token=token, json=body)
    assert_error(resp, status, code)


def test_warehouse_read_errors(server: Server) -> None:
    token = server.admin()
    assert_error(server.call("GET", f"/v1/warehouses/{MAX_ID}", token=token), 404, "not_found")
    for bad in ("abc", str(MAX_ID + 1), "-1", "1.5"):
        assert_error(server.call("GET", f"/v1/warehouses/{bad}", token=token), 422)


# --- regions -----------------------------------------------------------------------------------


def test_region_put_and_get(server: Server, world: World) -> None:
    code = unique("r")
    admin = server.admin()
    buyer = server.token("buyer", "a")
    put = server.ok(
        "PUT", f"/v1/regions/{code}", token=admin, json={"warehouses": [world.b, world.a]}
    )
    assert put == {"region": code, "warehouses": [world.b, world.a]}
    assert server.ok("GET", f"/v1/regions/{code}", token=buyer) == put
    server.ok("PUT", f"/v1/regions/{code}", token=admin, json={"warehouses": [world.a]})
    assert server.ok("GET", f"/v1/regions/{code}", token=buyer)["warehouses"] == [world.a]


def test_region_errors(server: Server, world: World) -> None:
    admin = server.admin()
    code = unique("r")
    path = f"/v1/regions/{code}"
    merchant = world.merchant_x
    assert_error(
        server.call("PUT", path, token=merchant, json={"warehouses": [world.a]}), 403, "forbidden"
    )
    assert_error(server.call("PUT", path, token=admin, json={"warehouses": [MAX_ID]}), 422)
    assert_error(
        server.call("PUT", path, token=admin, json={"warehouses": [world.a, world.a]}), 422
    )
    assert_error(server.call("PUT", path, token=admin, json={"warehouses": "a"}), 422)
    assert_error(server.call("PUT", path, token=admin, json={"warehouses": [], "x": 1}), 422)
    assert_error(server.call("PUT", path, token=admin, body=b"{oops"), 400, "malformed_json")
    assert_error(
        server.call("PUT", "/v1/regions/bad*code", token=admin, json={"warehouses": [world.a]}), 422
    )
    assert_error(
        server.call("PUT", "/v1/regions/" + "r" * 65, token=admin, json={"warehouses": [world.a]}),
        422,
    )
    # None of the refused requests created the region.
    assert_error(server.call("GET", path, token=admin), 404, "not_found")


# --- SKUs --------------------------------------------------------------------------------------


def test_sku_create_and_get_with_stock_per_warehouse(server: Server, world: World) -> None:
    body = {
        "title": "Blue mug",
        "price": 1999,
        "currency": "CNY",
        "stock": [{"warehouse": world.a, "units": 7}, {"warehouse": world.b, "units": 3}],
        "limit_per_buyer": 4,
        "category": "kitchen",
    }
    created = server.ok("POST", "/v1/skus", token=world.merchant_x, json=body, expect=201)
    assert isinstance(created["id"], int)
    expected = {
        "id": created["id"],
        "merchant": "merchant:x",
        "title": "Blue mug",
        "price": 1999,
        "currency": "CNY",
        "limit_per_buyer": 4,
        "category": "kitchen",
        "release_ms": None,
        "stock": {"on_hand": 10, "available": 10, "reserved": 0, "sold": 0},
        "warehouses": sorted(
            [
                {"warehouse": world.a, "on_hand": 7, "available": 7, "reserved": 0, "sold": 0},
                {"warehouse": world.b, "on_hand": 3, "available": 3, "reserved": 0, "sold": 0},
            ],
            key=lambda w: w["warehouse"],
        ),
    }
    assert created == expected
    assert server.ok("GET", f"/v1/skus/{created['id']}", token=world.merchant_x) == expected
    assert (
        server.ok("GET", f"/v1/skus/{created['id']}", token=server.token("buyer", "a")) == expected
    )


def test_sku_list_pages_with_a_cursor(server: Server, world: World) -> None:
    merchant = server.token("merchant", unique("lister"))
    shop = Shop(server)
    mine = [shop.sku({world.a: 1}, token=merchant) for _ in range(3)]
    page1 = server.ok("GET", "/v1/skus?limit=2", token=merchant)
    assert [s["id"] for s in page1["skus"]] == mine[:2]
    assert isinstance(page1["next_cursor"], str)
    page2 = server.ok("GET", f"/v1/skus?limit=2&after={page1['next_cursor']}", token=merchant)
    assert [s["id"] for s in page2["skus"]] == mine[2:]
    assert page2["next_cursor"] is None
    everything = server.ok("GET", "/v1/skus", token=merchant)
    assert [s["id"] for s in everything["skus"]] == mine
    assert everything["next_cursor"] is None
    assert everything["skus"][0]["stock"]["on_hand"] == 1


@pytest.mark.parametrize(
    ("change", "status", "code"),
    [
        ({"currency": "cny"}, 422, "invalid_input"),
        ({"currency": "YUAN"}, 422, "invalid_input"),
        ({"price": -1}, 422, "invalid_input"),
        ({"price": 1.5}, 422, "invalid_input"),
        ({"price": "100"}, 422, "invalid_input"),
        ({"price": 10**13}, 422, "invalid_input"),
        ({"price": 10**40}, 422, "invalid_input"),
        ({"title": ""}, 422, "invalid_input"),
        ({"title": "t" * 201}, 422, "invalid_input"),
        ({"title": None}, 422, "invalid_input"),
        ({"limit_per_buyer": -1}, 422, "invalid_input"),
        ({"category": "Kitchen Ware"}, 422, "invalid_input"),
        ({"category": "k" * 41}, 422, "invalid_input"),
        ({"stock": [{"warehouse": 0, "units": -1}]}, 422, "invalid_input"),
        ({"stock": [{"warehouse": MAX_ID, "units": 1}]}, 422, "invalid_input"),
        ({"stock": [{"warehouse": 0}]}, 422, "invalid_input"),
        ({"stock": [{"warehouse": 0, "units": 1, "bin": "A1"}]}, 422, "invalid_input"),
        ({"stock": {"0": 1}}, 422, "invalid_input"),
        ({"merchant": "merchant:y"}, 422, "invalid_input"),
    ],
    ids=repr,
)
def test_sku_create_refuses_bad_bodies(
    server: Server, world: World, change: dict[str, Any], status: int, code: str
) -> None:
    body = {"title": "t", "price": 100, "currency": "CNY", "stock": [], **change}
    assert_error(server.call("POST", "/v1/skus", token=world.merchant_x, json=body), status, code)


def test_sku_read_and_list_errors(server: Server, world: World) -> None:
    token = world.merchant_x
    assert_error(
        server.call("POST", "/v1/skus", token=token, body=b'{"title": '), 400, "malformed_json"
    )
    assert_error(server.call("GET", f"/v1/skus/{MAX_ID}", token=token), 404, "not_found")
    for bad in ("x", "-1", str(MAX_ID + 1)):
        assert_error(server.call("GET", f"/v1/skus/{bad}", token=token), 422)
    for query in ("limit=0", "limit=501", "limit=x", "after=-1", "after="):
        assert_error(server.call("GET", f"/v1/skus?{query}", token=token), 422)


def test_stock_adjust(server: Server, world: World) -> None:
    shop = world.shop
    token = world.merchant_x
    sku = shop.sku({world.a: 5}, token=token)
    path = f"/v1/skus/{sku}/stock"

    out = server.ok("POST", path, token=token, json={"warehouse": world.a, "delta": 5})
    assert out["stock"]["on_hand"] == 10
    out = server.ok("POST", path, token=token, json={"warehouse": world.a, "delta": -2})
    assert out["stock"] == {"on_hand": 8, "available": 8, "reserved": 0, "sold": 0}
    # Stocking a warehouse the SKU was not in yet adds it.
    out = server.ok("POST", path, token=token, json={"warehouse": world.b, "delta": 4})
    assert {w["warehouse"]: w["on_hand"] for w in out["warehouses"]} == {world.a: 8, world.b: 4}
    assert out["stock"]["on_hand"] == 12

    # Reserve all 8 units of warehouse a: nothing there may be removed any more.
    buyer = server.token("buyer", unique("adj"))
    assert shop.order(buyer, [(sku, 8)], world.north).status == 201
    assert_error(
        server.call("POST", path, token=token, json={"warehouse": world.a, "delta": -1}), 422
    )
    server.ok("POST", path, token=token, json={"warehouse": world.b, "delta": -4})
    assert_error(
        server.call("POST", path, token=token, json={"warehouse": world.b, "delta": -1}), 422
    )
    assert shop.totals(sku) == {"on_hand": 8, "available": 0, "reserved": 8, "sold": 0}
    assert shop.by_warehouse(sku)[world.a] == {
        "on_hand": 8,
        "available": 0,
        "reserved": 8,
        "sold": 0,
    }

    # Bad requests change nothing.
    for body in (
        {"warehouse": world.a, "delta": 1.5},
        {"warehouse": world.a, "delta": "1"},
        {"warehouse": world.a},
        {"warehouse": world.a, "delta": 1, "note": "x"},
        {"warehouse": MAX_ID, "delta": 1},
        {"warehouse": world.a, "delta": 2**60},
    ):
        assert_error(server.call("POST", path, token=token, json=body), 422)
    assert_error(server.call("POST", path, token=token, body=b'{"delta": '), 400, "malformed_json")
    assert_error(
        server.call(
            "POST", f"/v1/skus/{MAX_ID}/stock", token=token, json={"warehouse": world.a, "delta": 1}
        ),
        404,
        "not_found",
    )
    assert shop.totals(sku) == {"on_hand": 8, "available": 0, "reserved": 8, "sold": 0}


# --- orders: create ----------------------------------------------------------------------------


def test_order_create(server: Server, world: World) -> None:
    shop = world.shop
    mug = shop.sku({world.a: 10}, price=1250)
    tea = shop.sku({world.a: 10}, price=399)
    sub = unique("buyer")
    buyer = server.token("buyer", sub)
    addr = address(world.north, postal_code="310000", phone="+86 1", line2="Flat 2")
    resp = server.call(
        "POST",
        "/v1/orders",
        token=buyer,
        json={
            "lines": [{"sku": mug, "quantity": 2}, {"sku": tea, "quantity": 3}],
            "address": addr,
        },
    )
    assert resp.status == 201, resp
    order = resp.json()
    assert isinstance(order["id"], str)
    assert order["id"].isdigit()
    assert int(order["id"]) > 0
    assert order["status"] == "pending_payment"
    assert order["buyer"] == sub
    assert order["currency"] == "CNY"
    assert order["total"] == 2 * 1250 + 3 * 399
    assert order["lines"] == [
        {"sku": mug, "quantity": 2, "unit_price": 1250, "line_total": 2500, "warehouse": world.a},
        {"sku": tea, "quantity": 3, "unit_price": 399, "line_total": 1197, "warehouse": world.a},
    ]
    for key, value in addr.items():
        assert order["address"][key] == value
    created = iso(order["created_at"])
    assert iso(order["payment_deadline"]) - created == timedelta(minutes=15)
    assert iso(order["updated_at"]) >= created
    assert shop.totals(mug) == {"on_hand": 10, "available": 8, "reserved": 2, "sold": 0}
    assert shop.totals(tea) == {"on_hand": 10, "available": 7, "reserved": 3, "sold": 0}


def test_order_prices_and_totals_are_never_taken_from_the_client(
    server: Server, world: World
) -> None:
    sku = world.shop.sku({world.a: 10}, price=500)
    buyer = server.token("buyer", unique("cheap"))
    with_price = {
        "lines": [{"sku": sku, "quantity": 1, "unit_price": 1}],
        "address": address(world.north),
    }
    assert_error(server.call("POST", "/v1/orders", token=buyer, json=with_price), 422)
    with_total = {**order_body([(sku, 1)], world.north), "total": 1}
    assert_error(server.call("POST", "/v1/orders", token=buyer, json=with_total), 422)
    with_currency = {**order_body([(sku, 1)], world.north), "currency": "USD"}
    assert_error(server.call("POST", "/v1/orders", token=buyer, json=with_currency), 422)
    assert world.shop.totals(sku)["reserved"] == 0
    order = world.shop.order(buyer, [(sku, 2)], world.north).json()
    assert order["total"] == 1000


def test_order_lines_go_to_the_nearest_warehouse_of_the_region(
    server: Server, world: World
) -> None:
    sku = world.shop.sku({world.a: 5, world.b: 5})
    buyer = server.token("buyer", unique("near"))
    for region, expected in ((world.north, world.a), (world.south, world.b), (world.west, world.b)):
        resp = world.shop.order(buyer, [(sku, 1)], region)
        assert resp.status == 201, resp
        assert resp.json()["lines"][0]["warehouse"] == expected, region
    assert world.shop.by_warehouse(sku)[world.a]["reserved"] == 1
    assert world.shop.by_warehouse(sku)[world.b]["reserved"] == 2


def test_order_ships_in_one_parcel_when_one_warehouse_has_everything(
    server: Server, world: World
) -> None:
    # Region north prefers a; only b holds both SKUs, so b serves the whole order.
    shop = world.shop
    p = shop.sku({world.a: 5, world.b: 5})
    q = shop.sku({world.b: 5})
    buyer = server.token("buyer", unique("parcel"))
    resp = shop.order(buyer, [(p, 1), (q, 1)], world.north)
    assert resp.status == 201, resp
    assert [line["warehouse"] for line in resp.json()["lines"]] == [world.b, world.b]
    assert shop.by_warehouse(p)[world.a]["reserved"] == 0
    assert shop.by_warehouse(p)[world.b]["reserved"] == 1


def test_order_is_split_when_no_warehouse_has_everything(server: Server, world: World) -> None:
    shop = world.shop
    p = shop.sku({world.a: 5})
    q = shop.sku({world.b: 5})
    buyer = server.token("buyer", unique("split"))
    resp = shop.order(buyer, [(p, 2), (q, 3)], world.north)
    assert resp.status == 201, resp
    assert [(line["sku"], line["warehouse"]) for line in resp.json()["lines"]] == [
        (p, world.a),
        (q, world.b),
    ]


@pytest.mark.parametrize("endpoint", ["/v1/orders", "/v1/orders/batch"])
def test_each_line_keeps_its_own_warehouse_whatever_the_line_order(
    server: Server, world: World, endpoint: str
) -> None:
    """Lines listed in any order (here: a higher SKU id first) are matched, reported and held
    per line: the response, the order read back and the per-warehouse stock agree."""
    shop = world.shop
    p = shop.sku({world.a: 5})  # only in a
    q = shop.sku({world.b: 5})  # only in b
    r = shop.sku({world.a: 5, world.b: 5})
    assert p < q < r
    buyer = server.token("buyer", unique("order-of-lines"))
    body = order_body([(r, 3), (q, 2), (p, 1)], world.north)
    if endpoint == "/v1/orders":
        order = server.ok("POST", endpoint, token=buyer, json=body, expect=201)
    else:
        out = server.ok("POST", endpoint, token=buyer, json={"orders": [body]})
        order = out["results"][0]["order"]
    got = [(line["sku"], line["quantity"], line["warehouse"]) for line in order["lines"]]
    # No warehouse holds all three: split; r goes to the nearest with stock, a.
    assert got == [(r, 3, world.a), (q, 2, world.b), (p, 1, world.a)]
    assert shop.get_order(order["id"])["lines"] == order["lines"]
    assert shop.by_warehouse(p)[world.a]["reserved"] == 1
    assert shop.by_warehouse(q)[world.b]["reserved"] == 2
    assert shop.by_warehouse(r) == {
        world.a: {"on_hand": 5, "available": 2, "reserved": 3, "sold": 0},
        world.b: {"on_hand": 5, "available": 5, "reserved": 0, "sold": 0},
    }
    srv_cancel = server.ok("POST", f"/v1/orders/{order['id']}/cancel", token=buyer)
    assert srv_cancel["status"] == "cancelled"
    for sku in (p, q, r):
        assert shop.totals(sku)["reserved"] == 0


def test_out_of_stock_is_409_naming_the_sku_and_changes_nothing(
    server: Server, world: World
) -> None:
    shop = world.shop
    plenty = shop.sku({world.a: 5})
    scarce = shop.sku({world.a: 1})
    buyer = server.token("buyer", unique("oos"))
    resp = shop.order(buyer, [(plenty, 2), (scarce, 2)], world.north)
    assert_error(resp, 409, "out_of_stock")
    assert resp.json()["error"]["details"]["sku"] == scarce
    assert str(scarce) in resp.json()["error"]["message"]
    assert shop.totals(plenty) == {"on_hand": 5, "available": 5, "reserved": 0, "sold": 0}
    assert shop.totals(scarce) == {"on_hand": 1, "available": 1, "reserved": 0, "sold": 0}
    # Stock that exists, but in no warehouse serving the region, is out of stock there.
    resp = shop.order(buyer, [(plenty, 1)], world.west)
    assert_error(resp, 409, "out_of_stock")
    assert resp.json()["error"]["details"]["sku"] == plenty


def test_purchase_limit_is_409_and_counts_per_buyer(server: Server, world: World) -> None:
    shop = world.shop
    sku = shop.sku({world.a: 10}, limit=2)
    one = server.token("buyer", unique("lim"))
    two = server.token("buyer", unique("lim"))
    resp = shop.order(one, [(sku, 3)], world.north)
    assert_error(resp, 409, "purchase_limit_exceeded")
    assert resp.json()["error"]["details"]["sku"] == sku
    first = shop.order(one, [(sku, 2)], world.north)
    assert first.status == 201, first
    assert_error(shop.order(one, [(sku, 1)], world.north), 409, "purchase_limit_exceeded")
    assert shop.order(two, [(sku, 2)], world.north).status == 201
    # Cancelling gives the buyer's allowance back.
    server.ok("POST", f"/v1/orders/{first.json()['id']}/cancel", token=one)
    assert shop.order(one, [(sku, 1)], world.north).status == 201
    assert shop.totals(sku)["reserved"] == 3


@dataclass(frozen=True)
class Goods:
    cny: int
    cny2: int
    usd: int
    region: str


@pytest.fixture(scope="module")
def goods(server: Server, world: World) -> Goods:
    shop = world.shop
    return Goods(
        cny=shop.sku({world.a: 100}),
        cny2=shop.sku({world.a: 100}),
        usd=shop.sku({world.a: 100}, currency="USD"),
        region=world.north,
    )


def _line(sku: object, qty: object) -> dict[str, object]:
    return {"sku": sku, "quantity": qty}


BadOrder = Callable[[Goods], Any]

BAD_ORDERS: list[tuple[str, BadOrder, int, str | None]] = [
    ("unknown sku", lambda g: order_body([(MAX_ID, 1)], g.region), 422, "invalid_input"),
    ("quantity 0", lambda g: order_body([(g.cny, 0)], g.region), 422, "invalid_input"),
    ("quantity -1", lambda g: order_body([(g.cny, -1)], g.region), 422, "invalid_input"),
    ("quantity 10001", lambda g: order_body([(g.cny, 10_001)], g.region), 422, "invalid_input"),
    ("quantity 10**30", lambda g: order_body([(g.cny, 10**30)], g.region), 422, "invalid_input"),
    (
        "quantity 1.5",
        lambda g: {"lines": [_line(g.cny, 1.5)], "address": address(g.region)},
        422,
        "invalid_input",
    ),
    (
        "quantity '2'",
        lambda g: {"lines": [_line(g.cny, "2")], "address": address(g.region)},
        422,
        "invalid_input",
    ),
    (
        "quantity true",
        lambda g: {"lines": [_line(g.cny, True)], "address": address(g.region)},
        422,
        "invalid_input",
    ),
    (
        "sku '1'",
        lambda g: {"lines": [_line(str(g.cny), 1)], "address": address(g.region)},
        422,
        "invalid_input",
    ),
    ("sku 2**31", lambda g: order_body([(MAX_ID + 1, 1)], g.region), 422, "invalid_input"),
    ("no lines", lambda g: order_body([], g.region), 422, "invalid_input"),
    ("lines missing", lambda g: {"address": address(g.region)}, 422, "invalid_input"),
    ("101 lines", lambda g: order_body([(g.cny, 1)] * 101, g.region), 422, "invalid_input"),
    ("sku twice", lambda g: order_body([(g.cny, 1), (g.cny, 1)], g.region), 422, "invalid_input"),
    (
        "mixed currencies",
        lambda g: order_body([(g.cny, 1), (g.usd, 1)], g.region),
        422,
        "invalid_input",
    ),
    (
        "unknown region",
        lambda g: order_body([(g.cny, 1)], unique("nowhere")),
        422,
        "unknown_region",
    ),
    (
        "region missing",
        lambda g: {"lines": [_line(g.cny, 1)], "address": {"name": "n", "line1": "l", "city": "c"}},
        422,
        "invalid_input",
    ),
    ("bad region code", lambda g: order_body([(g.cny, 1)], "no such/region"), 422, "invalid_input"),
    (
        "address a string",
        lambda g: {"lines": [_line(g.cny, 1)], "address": "Hangzhou"},
        422,
        "invalid_input",
    ),
    (
        "unknown top field",
        lambda g: {**order_body([(g.cny, 1)], g.region), "coupon": "X"},
        422,
        "invalid_input",
    ),
    (
        "unknown line field",
        lambda g: {
            "lines": [{"sku": g.cny, "quantity": 1, "gift": True}],
            "address": address(g.region),
        },
        422,
        "invalid_input",
    ),
    (
        "unknown address field",
        lambda g: {"lines": [_line(g.cny, 1)], "address": {**address(g.region), "floor": 3}},
        422,
        "invalid_input",
    ),
    (
        "country lower case",
        lambda g: {"lines": [_line(g.cny, 1)], "address": {**address(g.region), "country": "cn"}},
        422,
        "invalid_input",
    ),
    (
        "name too long",
        lambda g: {"lines": [_line(g.cny, 1)], "address": {**address(g.region), "name": "n" * 201}},
        422,
        "invalid_input",
    ),
    ("body an array", lambda g: [order_body([(g.cny, 1)], g.region)], 422, "invalid_input"),
    ("body null", lambda g: None, 422, "invalid_input"),
    ("body a number", lambda g: 7, 422, "invalid_input"),
    ("malformed json", lambda g: b'{"lines": [', 400, "malformed_json"),
    ("not json", lambda g: b"lines=1&sku=2", 400, "malformed_json"),
    ("empty body", lambda g: b"", 400, None),
    ("NaN", lambda g: b'{"lines": [{"sku": 0, "quantity": NaN}]}', 400, "malformed_json"),
]


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [pytest.param(b, s, c, id=label) for label, b, s, c in BAD_ORDERS],
)
def test_order_refuses_invalid_input(
    server: Server, goods: Goods, body: BadOrder, status: int, code: str | None
) -> None:
    payload = body(goods)
    buyer = server.token("buyer", "invalid-input")
    if isinstance(payload, bytes):
        resp = server.call("POST", "/v1/orders", token=buyer, body=payload)
    else:
        resp = server.call("POST", "/v1/orders", token=buyer, json=payload)
    assert_error(resp, status, code)
    for sku in (goods.cny, goods.cny2, goods.usd):
        assert Shop(server).totals(sku)["reserved"] == 0


def test_bodies_over_the_limit_get_413(launch: Launch) -> None:
    srv = launch("--max-body-bytes", "1024")
    world = build_world(srv)
    skus = [world.shop.sku({world.a: 10}) for _ in range(2)]
    buyer = srv.token("buyer", "big")
    small = order_body([(skus[0], 1)], world.north)
    assert len(json.dumps(small)) < 1024
    assert srv.call("POST", "/v1/orders", token=buyer, json=small).status == 201
    big = {**order_body([(skus[0], 1)], world.north)}
    big["address"] = address(world.north, line2="x" * 200, phone="1" * 40)
    big["lines"] = [{"sku": skus[1], "quantity": 1}] * 40
    assert len(json.dumps(big)) > 1024
    assert_error(srv.call("POST", "/v1/orders", token=buyer, json=big), 413, "body_too_large")
    # Refused before parsing: an oversized body that is not even JSON is 413, not 400.
    assert_error(
        srv.call("POST", "/v1/orders", token=buyer, body=b"{" * 5000), 413, "body_too_large"
    )
    batch = {"orders": [small] * 20}
    assert_error(
        srv.call("POST", "/v1/orders/batch", token=buyer, json=batch), 413, "body_too_large"
    )
    assert world.shop.totals(skus[1])["reserved"] == 0
    assert world.shop.totals(skus[0])["reserved"] == 1
    assert srv.ok("GET", "/readyz", token=None) == {"status": "ready"}


# --- orders: batch -----------------------------------------------------------------------------


def test_batch_gives_one_result_per_order_with_single_order_semantics(
    server: Server, world: World
) -> None:
    shop = world.shop
    three = shop.sku({world.a: 3}, price=700)
    limited = shop.sku({world.a: 10}, limit=1)
    plenty = shop.sku({world.a: 10})
    buyer = server.token("buyer", unique("batch"))
    orders = [
        order_body([(three, 1)], world.north),  # 0: created
        order_body([(three, 1)], world.north),  # 1: created
        order_body([(MAX_ID, 1)], world.north),  # 2: unknown SKU
        order_body([(three, 1)], unique("nowhere")),  # 3: unknown region
        order_body([(three, 1)], world.north),  # 4: created, the last unit
        order_body([(three, 1)], world.north),  # 5: out of stock
        order_body([(limited, 1)], world.north),  # 6: created
        order_body([(limited, 1)], world.north),  # 7: over the buyer's limit
        order_body([(plenty, 1), (three, 1)], world.north),  # 8: out of stock, nothing held
    ]
    out = server.ok("POST", "/v1/orders/batch", token=buyer, json={"orders": orders})
    expected = [
        (201, None),
        (201, None),
        (422, "invalid_input"),
        (422, "unknown_region"),
        (201, None),
        (409, "out_of_stock"),
        (201, None),
        (409, "purchase_limit_exceeded"),
        (409, "out_of_stock"),
    ]
    results = out["results"]
    assert [r["index"] for r in results] == list(range(len(orders)))
    assert [(r["status"], (r.get("error") or {}).get("code")) for r in results] == expected
    assert out["created"] == 4
    assert out["failed"] == 5
    for r in results:
        if r["status"] == 201:
            assert r.get("error") is None
            order = r["order"]
            assert order["status"] == "pending_payment"
            assert order["id"].isdigit()
            assert shop.get_order(order["id"], buyer) == order
        else:
            assert r.get("order") is None
            assert r["error"]["message"]
    assert results[5]["error"]["details"]["sku"] == three
    assert results[0]["order"]["total"] == 700
    assert len({r["order"]["id"] for r in results if r["status"] == 201}) == 4
    assert shop.totals(three) == {"on_hand": 3, "available": 0, "reserved": 3, "sold": 0}
    assert shop.totals(limited) == {"on_hand": 10, "available": 9, "reserved": 1, "sold": 0}
    assert shop.totals(plenty) == {"on_hand": 10, "available": 10, "reserved": 0, "sold": 0}


def test_batch_size_limits(server: Server, world: World) -> None:
    sku = world.shop.sku({world.a: 1000})
    buyer = server.token("buyer", unique("bulk"))
    one = order_body([(sku, 1)], world.north)
    assert_error(
        server.call("POST", "/v1/orders/batch", token=buyer, json={"orders": [one] * 1001}),
        422,
        "invalid_input",
    )
    assert_error(server.call("POST", "/v1/orders/batch", token=buyer, json={"orders": []}), 422)
    assert_error(server.call("POST", "/v1/orders/batch", token=buyer, json={}), 422)
    assert_error(server.call("POST", "/v1/orders/batch", token=buyer, json=[one]), 422)
    assert_error(
        server.call(
            "POST", "/v1/orders/batch", token=buyer, json={"orders": [one], "atomic": True}
        ),
        422,
    )
    assert_error(
        server.call("POST", "/v1/orders/batch", token=buyer, body=b'{"orders": [{'),
        400,
        "malformed_json",
    )
    assert world.shop.totals(sku)["reserved"] == 0
    out = server.ok("POST", "/v1/orders/batch", token=buyer, json={"orders": [one] * 1000})
    assert out["created"] == 1000
    assert out["failed"] == 0
    assert world.shop.totals(sku) == {"on_hand": 1000, "available": 0, "reserved": 1000, "sold": 0}


# --- orders: read, list, cancel ----------------------------------------------------------------


def test_read_one_order(server: Server, world: World) -> None:
    sku = world.shop.sku({world.a: 5})
    buyer = server.token("buyer", unique("reader"))
    created = world.shop.order(buyer, [(sku, 1)], world.north).json()
    assert server.ok("GET", f"/v1/orders/{created['id']}", token=buyer) == created
    assert_error(server.call("GET", "/v1/orders/1", token=buyer), 404, "not_found")
    for bad in ("abc", "-1", str(2**63), "1e3", "%20"):
        assert_error(server.call("GET", f"/v1/orders/{bad}", token=buyer), 422)


def test_list_orders_newest_first_with_cursor(server: Server, world: World) -> None:
    sku = world.shop.sku({world.a: 10})
    buyer = server.token("buyer", unique("pager"))
    ids = [world.shop.order(buyer, [(sku, 1)], world.north).json()["id"] for _ in range(5)]
    newest_first = list(reversed(ids))
    assert [int(i) for i in ids] == sorted(int(i) for i in ids)

    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        path = "/v1/orders?limit=2" + (f"&before={cursor}" if cursor else "")
        page = server.ok("GET", path, token=buyer)
        assert len(page["orders"]) <= 2
        seen += [o["id"] for o in page["orders"]]
        cursor = page["next_cursor"]
        pages += 1
        if cursor is None:
            break
        assert isinstance(cursor, str)
    assert seen == newest_first
    assert pages == 3
    everything = server.ok("GET", "/v1/orders", token=buyer)
    assert [o["id"] for o in everything["orders"]] == newest_first
    assert everything["next_cursor"] is None
    assert everything["orders"][0] == world.shop.get_order(ids[-1])
    for query in ("limit=0", "limit=201", "limit=two", "before=abc", "before=-5", "before=0"):
        assert_error(server.call("GET", f"/v1/orders?{query}", token=buyer), 422)


def test_cancel_returns_the_units(server: Server, world: World) -> None:
    shop = world.shop
    sku = shop.sku({world.a: 4})
    buyer = server.token("buyer", unique("canceller"))
    other = server.token("buyer", unique("other"))
    order = shop.order(buyer, [(sku, 3)], world.north).json()
    assert shop.totals(sku) == {"on_hand": 4, "available": 1, "reserved": 3, "sold": 0}
    path = f"/v1/orders/{order['id']}/cancel"

    assert_error(server.call("POST", path, token=other), 404, "not_found")
    cancelled = server.ok("POST", path, token=buyer)
    assert cancelled["status"] == "cancelled"
    assert cancelled["id"] == order["id"]
    assert cancelled["lines"] == order["lines"]
    assert shop.totals(sku) == {"on_hand": 4, "available": 4, "reserved": 0, "sold": 0}
    assert shop.get_order(order["id"], buyer)["status"] == "cancelled"
    listed = server.ok("GET", "/v1/orders", token=buyer)["orders"]
    assert [(o["id"], o["status"]) for o in listed] == [(order["id"], "cancelled")]

    assert_error(server.call("POST", "/v1/orders/1/cancel", token=buyer), 404, "not_found")
    assert_error(server.call("POST", "/v1/orders/xyz/cancel", token=buyer), 422)


def test_cancelling_twice_is_409_invalid_state_not_500(server: Server, world: World) -> None:
    """InvalidState carries a ``status`` detail that collides with error_response's ``status``
    parameter; with an Idempotency-Key the error takes another path, so check both."""
    shop = world.shop
    sku = shop.sku({world.a: 4})
    buyer = server.token("buyer", unique("twice"))
    for headers in ({"Idempotency-Key": unique("k")}, {}):
        order = shop.order(buyer, [(sku, 1)], world.north).json()
        path = f"/v1/orders/{order['id']}/cancel"
        assert server.call("POST", path, token=buyer).status == 200
        again = server.call("POST", path, token=buyer, headers=headers)
        assert_error(again, 409, "invalid_state")
        assert again.json()["error"]["details"].get("status") == "cancelled", again
    assert shop.totals(sku) == {"on_hand": 4, "available": 4, "reserved": 0, "sold": 0}


# --- restart -----------------------------------------------------------------------------------


def test_graceful_restart_keeps_everything(launch: Launch) -> None:
    srv = launch()
    world = build_world(srv)
    shop = world.shop
    sku = shop.sku({world.a: 10, world.b: 5}, price=300, limit=6, token=world.merchant_x)
    buyer = srv.token("buyer", "restarter")
    pending = shop.order(buyer, [(sku, 2)], world.north).json()
    cancelled = shop.order(buyer, [(sku, 1)], world.south).json()
    srv.ok("POST", f"/v1/orders/{cancelled['id']}/cancel", token=buyer)
    keyed = shop.order(buyer, [(sku, 3)], world.north, headers={"Idempotency-Key": "k-1"})
    assert keyed.status == 201
    only_a = shop.sku({world.a: 4})
    only_b = shop.sku({world.b: 4})
    split = shop.order(srv.token("buyer", "splitter"), [(only_b, 2), (only_a, 1)], world.north)
    assert split.status == 201, split
    admin = srv.admin()
    before = {
        "warehouses": srv.ok("GET", "/v1/warehouses", token=admin),
        "regions": [
            srv.ok("GET", f"/v1/regions/{r}", token=admin)
            for r in (world.north, world.south, world.west)
        ],
        "skus": srv.ok("GET", "/v1/skus", token=admin),
        "orders": srv.ok("GET", "/v1/orders", token=buyer),
        "merchant orders": srv.ok("GET", "/v1/orders", token=world.merchant_x),
        "pending": shop.get_order(pending["id"]),
        "cancelled": shop.get_order(cancelled["id"]),
    }
    assert before["skus"]["skus"][0]["stock"]["reserved"] == 5
    assert shop.by_warehouse(only_b)[world.b]["reserved"] == 2
    assert shop.by_warehouse(only_a)[world.a]["reserved"] == 1

    srv.stop()
    srv.start()

    after = {
        "warehouses": srv.ok("GET", "/v1/warehouses", token=admin),
        "regions": [
            srv.ok("GET", f"/v1/regions/{r}", token=admin)
            for r in (world.north, world.south, world.west)
        ],
        "skus": srv.ok("GET", "/v1/skus", token=admin),
        "orders": srv.ok("GET", "/v1/orders", token=buyer),
        "merchant orders": srv.ok("GET", "/v1/orders", token=world.merchant_x),
        "pending": shop.get_order(pending["id"]),
        "cancelled": shop.get_order(cancelled["id"]),
    }
    assert after == before
    replay = shop.order(buyer, [(sku, 3)], world.north, headers={"Idempotency-Key": "k-1"})
    assert replay.status == 201
    assert replay.headers.get("idempotent-replayed") == "true"
    assert replay.body == keyed.body
    # The core was rebuilt with the reservations and the buyer's limit (5 of 6 held).
    assert_error(shop.order(buyer, [(sku, 2)], world.north), 409, "purchase_limit_exceeded")
    newer = shop.order(buyer, [(sku, 1)], world.north).json()
    assert int(newer["id"]) > max(int(o["id"]) for o in before["orders"]["orders"])
    srv.ok("POST", f"/v1/orders/{pending['id']}/cancel", token=buyer)
    assert shop.totals(sku) == {"on_hand": 15, "available": 11, "reserved": 4, "sold": 0}


def test_a_region_put_with_no_warehouses_is_refused_or_survives_a_restart(launch: Launch) -> None:
    """PUT /v1/regions/{code} with an empty list: refusing it (422) is a fine policy; but if
    it is accepted, a restart must not turn the region into an unknown one."""
    srv = launch()
    world = build_world(srv)
    sku = world.shop.sku({world.a: 5})
    buyer = srv.token("buyer", "empty-region")
    admin = srv.admin()
    put = srv.call("PUT", f"/v1/regions/{world.west}", token=admin, json={"warehouses": []})
    before = srv.ok("GET", f"/v1/regions/{world.west}", token=admin)
    if put.status != 200:
        assert_error(put, 422)
        assert before == {"region": world.west, "warehouses": [world.b]}
        return
    assert before == {"region": world.west, "warehouses": []}
    assert_error(world.shop.order(buyer, [(sku, 1)], world.west), 409, "out_of_stock")

    srv.restart()

    assert srv.call("GET", f"/v1/regions/{world.west}", token=admin).json() == before
    assert_error(world.shop.order(buyer, [(sku, 1)], world.west), 409, "out_of_stock")


# --- robustness: no 5xx on odd input -----------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/v1/skus/%C2%B2",  # "²": str.isdigit() is true, int() refuses it
        "/v1/orders/%C2%B2",
        "/v1/warehouses/%C2%B2",
        "/v1/orders?before=%C2%B2",
        "/v1/skus?limit=%C2%B9",
    ],
)
def test_superscript_digits_in_ids_are_422_not_500(server: Server, path: str) -> None:
    resp = server.call("GET", path, token=server.admin())
    assert resp.status == 422, resp


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/warehouses", b'{"name": "dock\xff"}'),
        ("/v1/skus", b'{"title": "\xc3\x28", "price": 1, "currency": "CNY"}'),
        (
            "/v1/orders",
            b'{"lines": [{"sku": 0, "quantity": 1}], "address": {"name": "\xff",'
            b' "line1": "l", "city": "c", "region": "r"}}',
        ),
        (
            "/v1/orders/batch",
            b'{"orders": [{"lines": [{"sku": 0, "quantity": 1}], "address":'
            b' {"name": "n", "line1": "\xfe", "city": "c", "region": "r"}}]}',
        ),
    ],
    ids=["warehouse", "sku", "order", "batch"],
)
def test_invalid_utf8_in_a_json_string_is_4xx_not_500(
    server: Server, path: str, body: bytes
) -> None:
    token = server.admin() if path in ("/v1/warehouses", "/v1/skus") else server.token("buyer", "u")
    resp = server.call("POST", path, token=token, body=body)
    assert 400 <= resp.status < 500, resp
    resp.error_code  # noqa: B018 - asserts the JSON error shape


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
def test_a_body_not_in_its_declared_content_encoding_is_4xx_not_500(
    server: Server, world: World, encoding: str
) -> None:
    sku = world.shop.sku({world.a: 5})
    buyer = server.token("buyer", unique("enc"))
    body = json.dumps(order_body([(sku, 1)], world.north)).encode()
    packed = gzip.compress(body) if encoding == "gzip" else zlib.compress(body)
    ok = server.call(
        "POST", "/v1/orders", token=buyer, body=packed, headers={"Content-Encoding": encoding}
    )
    assert ok.status == 201, ok
    resp = server.call(
        "POST",
        "/v1/orders",
        token=buyer,
        body=b"\x1f\x8b not compressed",
        headers={"Content-Encoding": encoding},
    )
    assert 400 <= resp.status < 500, resp
    assert world.shop.totals(sku)["reserved"] == 1


def test_nul_characters_in_text_are_not_a_server_error(launch: Launch) -> None:
    """A NUL (\\u0000) is valid JSON; whatever the server decides, it must not be a 5xx, and it
    must not take the write path down for anyone else. (Its own server: on failure it breaks the
    write path.)"""
    server = launch()
    world = build_world(server)
    shop = world.shop
    admin = server.admin()
    sku = shop.sku({world.a: 10})
    buyer = server.token("buyer", unique("nul"))
    statuses = {
        "warehouse name": server.call(
            "POST", "/v1/warehouses", token=admin, json={"name": "dock\u0000"}
        ).status,
        "sku title": server.call(
            "POST",
            "/v1/skus",
            token=admin,
            json={"title": "mug\u0000", "price": 1, "currency": "CNY"},
        ).status,
        "address": server.call(
            "POST",
            "/v1/orders",
            token=buyer,
            json={
                "lines": [{"sku": sku, "quantity": 1}],
                "address": {**address(world.north), "name": "Li\u0000Lei"},
            },
        ).status,
    }
    try:
        assert all(s < 500 for s in statuses.values()), statuses
        assert server.ok("GET", "/readyz", token=None) == {"status": "ready"}
        ok = shop.order(buyer, [(sku, 1)], world.north)
        assert ok.status == 201, ok
    finally:
        server.proc.kill()  # its graceful stop may hang: see the test below


def test_graceful_stop_after_a_failed_commit_exits_cleanly(launch: Launch) -> None:
    """SIGTERM must flush and exit (code 0) even after commits failed: on PostgreSQL the
    server's connections are cut while orders pour in, so commits fail and orders race the
    recovery. On SQLite nothing is cut and this is a plain graceful stop under load."""
    srv = launch()
    world = build_world(srv)
    sku = world.shop.sku({world.a: 1000})
    orders = [
        Call("POST", "/v1/orders", srv.token("buyer", f"s{i}"), order_body([(sku, 1)], world.north))
        for i in range(200)
    ]
    srv.concurrently(orders, connections=10, meanwhile=srv.cut_database_connections, after_s=0.05)
    assert srv.proc.proc is not None
    started = time.monotonic()
    srv.stop()
    elapsed = time.monotonic() - started
    assert srv.proc.proc.returncode == 0, (
        f"the server did not exit by itself on SIGTERM (exit {srv.proc.proc.returncode} after "
        f"{elapsed:.1f} s); log: {srv.log_path}"
    )
