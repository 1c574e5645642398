"""HTTP routes of orders (``/v1/orders``): place one or a batch, read, list, cancel."""

import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from pyorder.auth import Principal
from pyorder.orders.service import Answer, Orders
from server.idempotency import HEADER
from server.keys import ADMISSION, IDEMPOTENCY, METRICS, PLATFORM
from server.requests import int_param, json_response, principal
from server.schemas import OrderList, order_out

routes = web.RouteTableDef()
MAX_ORDER_ID = 2**63 - 1


Place = Callable[[Orders, Principal, bytes], Answer]


def _placing(place: Place) -> Callable[[web.Request], Awaitable[web.Response]]:
    """The handler placing through ``place``: one coroutine per request, as it is the hot
    path (each nested one is created per request and resumed again after the group commit).
    Past the admission bound it answers 503 before reading the body (``server.admission``)."""
    clock = time.perf_counter

    async def handler(request: web.Request) -> web.Response:
        app = request.app
        admission = app[ADMISSION]
        if admission.in_flight >= admission.limit:
            return admission.refuse()
        admission.in_flight += 1
        started = clock()
        try:
            orders = app[PLATFORM].orders
            who = principal(request)
            if HEADER in request.headers:
                answers: list[Answer] = []

                async def effect(who: Principal, body: bytes) -> tuple[int, bytes]:
                    answer = place(orders, who, body)
                    answers.append(answer)
                    return answer.status, answer.body

                response = await app[IDEMPOTENCY].handle(request, who, effect)
                if answers:  # it returned, so what it created is durable (a replay runs none)
                    _count(app, answers[0])
                return response
            # Without a key there is nothing to store for a replay: place, wait for the group
            # commit, answer.
            answer = place(orders, who, await request.read())
            await app[PLATFORM].intake.durable()
            _count(app, answer)
            return web.Response(
                status=answer.status, body=answer.body, content_type="application/json"
            )
        finally:
            admission.done(started)

    return handler


def _count(app: web.Application, answer: Answer) -> None:
    if answer.created or answer.stockouts:
        counts = app[METRICS].orders
        counts.created += answer.created
        counts.stockouts += answer.stockouts


# One order (``OrderIn``): parsed, priced, reserved and answered by the Rust core.
routes.post("/v1/orders")(_placing(Orders.place_json))
# Up to ``MAX_BATCH_ORDERS`` orders (``OrderBatchIn``), one result per order.
routes.post("/v1/orders/batch")(_placing(Orders.place_batch_json))


@routes.get("/v1/orders")
async def list_orders(request: web.Request) -> web.Response:
    who = principal(request)
    before = (
        int_param(request, "before", lo=1, hi=MAX_ORDER_ID) if "before" in request.query else None
    )
    limit = int_param(request, "limit", lo=1, hi=200, default=50)
    platform = request.app[PLATFORM]
    found = await platform.orders.list_for(who, before, limit)
    cursor = str(found[-1].id) if len(found) == limit else None
    return json_response(
        OrderList([order_out(o) for o in platform.views.orders(who, found)], cursor)
    )


@routes.get("/v1/orders/{order_id}")
async def get_order(request: web.Request) -> web.Response:
    """The order as the caller may see it: a merchant its part (``pyorder.marketplace``)."""
    who = principal(request)
    order_id = int_param(request, "order_id", lo=0, hi=MAX_ORDER_ID)
    platform = request.app[PLATFORM]
    order = await platform.orders.get(who, order_id)
    return json_response(order_out(platform.views.order(who, order)))


@routes.post("/v1/orders/{order_id}/cancel")
async def cancel_order(request: web.Request) -> web.Response:
    orders = request.app[PLATFORM].orders
    order_id = int_param(request, "order_id", lo=0, hi=MAX_ORDER_ID)

    async def effect(who: Principal, body: bytes) -> tuple[int, object]:
        return 200, order_out(await orders.cancel(who, order_id))

    return await request.app[IDEMPOTENCY].handle(request, principal(request), effect)
