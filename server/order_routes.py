"""HTTP routes of orders (``/v1/orders``): place one or a batch, read, list, cancel."""

import msgspec
from aiohttp import web

from pyorder.auth import Principal
from pyorder.errors import DomainError, OutOfStock
from pyorder.orders import OrderInput
from server.keys import IDEMPOTENCY, METRICS, PLATFORM
from server.requests import decode, int_param, json_response, principal
from server.schemas import (
    BatchItemOut,
    ErrorBody,
    OrderBatchIn,
    OrderBatchOut,
    OrderIn,
    OrderList,
    order_out,
)

routes = web.RouteTableDef()
MAX_ORDER_ID = 2**63 - 1


def _input(data: OrderIn) -> OrderInput:
    return OrderInput(
        lines=[(line.sku, line.quantity) for line in data.lines],
        address=msgspec.to_builtins(data.address),
    )


@routes.post("/v1/orders")
async def place_order(request: web.Request) -> web.Response:
    orders = request.app[PLATFORM].orders

    outcome: list[int] = []

    async def effect(who: Principal, body: bytes) -> tuple[int, object]:
        data = decode(body, OrderIn)
        try:
            order = orders.place(who, _input(data))
        except OutOfStock:
            outcome.append(0)
            raise
        outcome.append(1)
        return 201, order_out(order)

    try:
        return await request.app[IDEMPOTENCY].handle(request, principal(request), effect)
    finally:
        _count(request, created=sum(outcome), stockouts=len(outcome) - sum(outcome))


@routes.post("/v1/orders/batch")
async def place_orders(request: web.Request) -> web.Response:
    orders = request.app[PLATFORM].orders

    async def effect(who: Principal, body: bytes) -> tuple[int, object]:
        data = decode(body, OrderBatchIn)
        placed = orders.place_many(who, [_input(o) for o in data.orders])
        results: list[BatchItemOut] = []
        for i, p in enumerate(placed):
            if isinstance(p.outcome, DomainError):
                e = p.outcome
                results.append(
                    BatchItemOut(i, e.status, error=ErrorBody(e.code, e.message, e.details))
                )
            else:
                results.append(BatchItemOut(i, 201, order=order_out(p.outcome)))
        created = sum(1 for r in results if r.status == 201)
        counts.append(created)
        counts.append(sum(1 for p in placed if isinstance(p.outcome, OutOfStock)))
        return 200, OrderBatchOut(created, len(results) - created, results)

    counts: list[int] = []
    response = await request.app[IDEMPOTENCY].handle(request, principal(request), effect)
    if counts:
        _count(request, created=counts[0], stockouts=counts[1])
    return response


def _count(request: web.Request, *, created: int, stockouts: int) -> None:
    """Count what this request decided (it returned, so it is durable or was refused)."""
    metrics = request.app[METRICS]
    if created:
        metrics.orders_created.inc(created)
    if stockouts:
        metrics.stockouts.inc(stockouts)


@routes.get("/v1/orders")
async def list_orders(request: web.Request) -> web.Response:
    who = principal(request)
    before = (
        int_param(request, "before", lo=1, hi=MAX_ORDER_ID) if "before" in request.query else None
    )
    limit = int_param(request, "limit", lo=1, hi=200, default=50)
    found = await request.app[PLATFORM].orders.list_for(who, before, limit)
    cursor = str(found[-1].id) if len(found) == limit else None
    return json_response(OrderList([order_out(o) for o in found], cursor))


@routes.get("/v1/orders/{order_id}")
async def get_order(request: web.Request) -> web.Response:
    who = principal(request)
    order_id = int_param(request, "order_id", lo=0, hi=MAX_ORDER_ID)
    return json_response(order_out(await request.app[PLATFORM].orders.get(who, order_id)))


@routes.post("/v1/orders/{order_id}/cancel")
async def cancel_order(request: web.Request) -> web.Response:
    orders = request.app[PLATFORM].orders
    order_id = int_param(request, "order_id", lo=0, hi=MAX_ORDER_ID)

    async def effect(who: Principal, body: bytes) -> tuple[int, object]:
        return 200, order_out(await orders.cancel(who, order_id))

    return await request.app[IDEMPOTENCY].handle(request, principal(request), effect)
