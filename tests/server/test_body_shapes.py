"""Regressions: bodies the published schema forbids are refused over HTTP, with the path.

An outside tester created real orders (201) from ``{"lines": [[sku, 1]], ...}``, from an
address given as an array and from the whole body as an array ``[lines, address]``, on the
single and the batch route: the Rust parser took a struct from a JSON array of its fields.
Its siblings: Python's ``$`` (msgspec's patterns) matched before a final newline, so
``"USD\\n"`` passed for a currency on the msgspec-typed routes. The property test of the parser
is ``tests/test_order_body_contract.py``; these run the real server, on both stores.
"""

from typing import Any

import pytest

from tests.server.e2e_lib import Server, World, address, unique

SINGLE, BATCH = "/v1/orders", "/v1/orders/batch"


def _refused(server: Server, path: str, token: str, body: Any) -> dict[str, Any]:
    """The ``error`` of a 422 ``invalid_input`` answer to ``body``."""
    resp = server.call("POST", path, token=token, json=body)
    assert resp.status == 422, resp
    assert resp.headers.get("content-type", "").startswith("application/json"), resp.headers
    error: dict[str, Any] = resp.json()["error"]
    assert error["code"] == "invalid_input", resp
    return error


# (label, the order as the tester sent it, the path named, from the order)
ARRAYS_FOR_OBJECTS: list[tuple[str, Any, str]] = [
    (
        "a line as [sku, quantity]",
        lambda sku, region: {"lines": [[sku, 1]], "address": address(region)},
        ".lines[0]",
    ),
    (
        "the address as an array",
        lambda sku, region: {
            "lines": [{"sku": sku, "quantity": 1}],
            "address": list(address(region).values()),
        },
        ".address",
    ),
    (
        "the order as [lines, address]",
        lambda sku, region: [[{"sku": sku, "quantity": 1}], address(region)],
        "",
    ),
]


@pytest.mark.parametrize("route", [SINGLE, BATCH])
@pytest.mark.parametrize(
    ("shape", "where"),
    [pytest.param(shape, where, id=label) for label, shape, where in ARRAYS_FOR_OBJECTS],
)
def test_arrays_given_for_objects_create_no_order(
    server: Server, world: World, route: str, shape: Any, where: str
) -> None:
    sku = world.shop.sku({world.a: 10})
    buyer = server.token("buyer", unique("arrays"))
    order = shape(sku, world.north)
    body, path = (
        (order, "$" + where) if route == SINGLE else ({"orders": [order]}, "$.orders[0]" + where)
    )
    error = _refused(server, route, buyer, body)
    assert error["details"] == {"path": path}
    assert error["message"].startswith("Expected `object`, got `array`")
    assert world.shop.totals(sku)["reserved"] == 0
    assert server.ok("GET", "/v1/orders", token=buyer)["orders"] == []


def test_the_whole_batch_body_as_an_array_is_refused(server: Server, world: World) -> None:
    sku = world.shop.sku({world.a: 10})
    buyer = server.token("buyer", unique("arrays"))
    order = {"lines": [{"sku": sku, "quantity": 1}], "address": address(world.north)}
    error = _refused(server, BATCH, buyer, [[order]])
    assert error["details"] == {"path": "$"}
    assert world.shop.totals(sku)["reserved"] == 0


def test_a_value_error_names_its_path_on_both_order_routes(server: Server, world: World) -> None:
    sku = world.shop.sku({world.a: 10})
    buyer = server.token("buyer", unique("paths"))
    order = {
        "lines": [{"sku": sku, "quantity": 1}, {"sku": sku, "quantity": 0}],
        "address": address(world.north),
    }
    error = _refused(server, SINGLE, buyer, order)
    assert error["details"] == {"path": "$.lines[1].quantity"}
    assert error["message"] == "Expected `int` >= 1 - at `$.lines[1].quantity`"
    error = _refused(server, BATCH, buyer, {"orders": [order]})
    assert error["details"] == {"path": "$.orders[0].lines[1].quantity"}


@pytest.mark.parametrize("route", [SINGLE, BATCH])
@pytest.mark.parametrize(("field", "value"), [("region", "north\n"), ("country", "CN\n")])
def test_a_final_newline_does_not_pass_a_pattern_in_an_order(
    server: Server, world: World, route: str, field: str, value: str
) -> None:
    sku = world.shop.sku({world.a: 10})
    buyer = server.token("buyer", unique("newline"))
    order = {
        "lines": [{"sku": sku, "quantity": 1}],
        "address": {**address(world.north), field: value},
    }
    body, prefix = (order, "$") if route == SINGLE else ({"orders": [order]}, "$.orders[0]")
    error = _refused(server, route, buyer, body)
    assert error["details"] == {"path": f"{prefix}.address.{field}"}
    assert world.shop.totals(sku)["reserved"] == 0


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({"title": "mug", "price": 1, "currency": "USD\n"}, "$.currency"),
        ({"title": "mug", "price": 1, "currency": "USD", "category": "mugs\n"}, "$.category"),
        ({"title": "mug\u0000", "price": 1, "currency": "USD"}, "$.title"),
        (["mug", 1, "USD"], "$"),
    ],
)
def test_msgspec_routes_refuse_what_the_schema_forbids_with_the_path(
    server: Server, body: Any, path: str
) -> None:
    """The sibling on a msgspec-typed route: a pattern's final newline, U+0000, an array."""
    error = _refused(server, "/v1/skus", server.admin(), body)
    assert error["details"] == {"path": path}
