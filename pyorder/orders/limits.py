"""Placed orders as purchase-limit claims see them, and answers rewritten for the orders a
cluster-wide limit refused (``pyorder.cluster.limits``; cluster nodes only, so never on the
solo hot path).

The core answers a placing request's JSON (``OrderBook.place_one``/``place_batch``) before the
limits are claimed across the cluster; an order refused then gets the answer the core gives for
its own limit refusals: status 409, code ``purchase_limit_exceeded``, the same message and
``details.sku``.
"""

from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from pyorder._core import OrderRows

LIMIT_MESSAGE = "SKU {sku} is limited per buyer and this order would exceed the limit"
"""The core's message for an order over a purchase limit (``core_rs/src/orders/book.rs``)."""


def limited_units(rows: "OrderRows", limited: set[int]) -> list[tuple[int, dict[int, int]]]:
    """(order id, {sku: units}) of the orders in ``rows`` holding SKUs of ``limited``, in
    placing order; lines of one SKU from several warehouses are summed."""
    found: dict[int, dict[int, int]] = {}
    for oid, _, sku, _, quantity, _, _ in rows.line_tuples():
        if sku in limited:
            units = found.setdefault(oid, {})
            units[sku] = units.get(sku, 0) + quantity
    return list(found.items())


def _error(sku: int) -> dict[str, Any]:
    return {
        "code": "purchase_limit_exceeded",
        "message": LIMIT_MESSAGE.format(sku=sku),
        "details": {"sku": sku},
    }


def limit_refusals(body: bytes, refused: dict[int, int], many: bool) -> tuple[int, bytes, int]:
    """(status, body, orders created) of a placing answer whose JSON was ``body``, with the
    orders of ``refused`` (id -> the SKU over its limit) refused: a single order's answer
    becomes the 409; a batch's results for them become 409 items, and its counts follow."""
    if not many:
        return 409, orjson.dumps({"error": _error(next(iter(refused.values())))}), 0
    doc = orjson.loads(body)
    results = doc["results"]
    for i, item in enumerate(results):
        order = item.get("order")
        sku = None if order is None else refused.get(int(order["id"]))
        if sku is not None:
            error = _error(sku)
            results[i] = {"index": item["index"], "status": 409, "order": None, "error": error}
    created = sum(1 for item in results if item["status"] == 201)
    doc["created"], doc["failed"] = created, len(results) - created
    return 200, orjson.dumps(doc), created
