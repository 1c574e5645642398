"""HTTP routes of orders (``/v1/orders``): place one or a batch, read, list, cancel."""

from collections.abc import Callable

from aiohttp import web

from pyorder.auth import Principal
from pyorder.orders import Answer
from server.keys import IDEMPOTENCY, METRICS, PLATFORM
from server.requests import int_param, json_response, principal
from server.schemas import OrderList, order_out

routes = web.RouteTableDef()
MAX_ORDER_ID = 2**63 - 1


@routes.post("/v1/orders")
async def place_order(request: web.Request) -> web.Response:
    """One order (``OrderIn``): parsed, priced, reserved and answered by the Rust core."""
    orders = request.app[PLATFORM].orders
    return await _place(request, orders.place_json)


@routes.post("/v1/orders/batch")
async def place_orders(request: web.Request) -> web.Response:
    """Up to ``MAX_BATCH_ORDERS`` orders (``OrderBatchIn``), one result per order."""
    orders = request.app[PLATFORM].orders
    return await _place(request, orders.place_batch_json)


async def _place(request: web.Request, place: Callable[[Principal, bytes], Answer]) -> web.Response:
    answers: list[Answer] = []

    async def effect(who: Principal, body: bytes) -> tuple[int, bytes]:
        answer = place(who, body)
        answers.append(answer)
        return answer.status, answer.body

    response = await request.app[IDEMPOTENCY].handle(request, principal(request), effect)
    if answers:
        # It returned, so what it created is durable (a replay runs no effect).
        metrics = request.app[METRICS]
        if answers[0].created:
            metrics.orders_created.inc(answers[0].created)
        if answers[0].stockouts:
            metrics.stockouts.inc(answers[0].stockouts)
    return response


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
