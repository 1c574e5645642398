"""HTTP routes of orders (``/v1/orders``): place one or a batch, read, list, cancel."""

import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from pyorder.auth import Principal
from pyorder.cluster.stock import StockKeeper
from pyorder.orders import stockouts
from pyorder.orders.service import Answer, Orders
from pyorder.risk.intake import ClientInfo
from pyorder.server.api.orders_bodies import (
    MAX_BATCH_ORDERS,
    OrderBatchIn,
    OrderBatchOut,
    OrderIn,
    OrderList,
    OrderOut,
    order_out,
)
from pyorder.server.forwarding import by_order, routed
from pyorder.server.idempotency import HEADER
from pyorder.server.keys import ADMISSION, IDEMPOTENCY, METRICS, PLATFORM
from pyorder.server.operations import AUTH_ERRORS, BODY_ERRORS, operation
from pyorder.server.params import LIMIT_200, MAX_ORDER_ID, ORDER_ID, IntParam
from pyorder.server.requests import json_response, principal

routes = web.RouteTableDef()
ORDER_BEFORE = IntParam("before", "query", 1, MAX_ORDER_ID)


Place = Callable[[Orders, Principal, bytes, ClientInfo | None], Answer | Awaitable[Answer]]
"""``Orders.place_json`` or ``place_batch_json``: the answer, or on a cluster node with limited
SKUs its awaitable (the limits are claimed across the cluster first)."""


async def _answer(placing: Answer | Awaitable[Answer]) -> Answer:
    return placing if isinstance(placing, Answer) else await placing


def _placing(place: Place, *, many: bool) -> Callable[[web.Request], Awaitable[web.Response]]:
    """The handler placing through ``place``: one coroutine per request, as it is the hot
    path (each nested one is created per request and resumed again after the group commit).
    Past the admission bound it answers 503 before reading the body (``pyorder.server.admission``).

    ``many``: ``place`` takes a batch. On a cluster node, orders refused out of stock ask the
    pool for more first (``StockKeeper.refill_now``) and are placed once more if any came
    (``_out_of_stock``)."""
    clock = time.perf_counter

    async def handler(request: web.Request) -> web.Response:
        app = request.app
        admission = app[ADMISSION]
        if admission.in_flight >= admission.limit:
            return admission.refuse()
        admission.in_flight += 1
        started = clock()
        try:
            platform = app[PLATFORM]
            orders = platform.orders
            who = principal(request)
            clients = platform.clients
            client = (
                None
                if clients is None
                else clients.info(
                    request.remote,
                    request.headers.get("X-Forwarded-For"),
                    request.headers.get("User-Agent"),
                    who.account_created_ms,
                )
            )
            if HEADER in request.headers:
                answers: list[Answer] = []

                async def effect(who: Principal, body: bytes) -> tuple[int, bytes]:
                    answer = await _answer(place(orders, who, body, client))
                    if answer.stockouts and (keeper := app[PLATFORM].stock_keeper):
                        answer = await _out_of_stock(
                            keeper, place, orders, who, body, client, answer, many
                        )
                    answers.append(answer)
                    return answer.status, answer.body

                response = await app[IDEMPOTENCY].handle(request, who, effect)
                if answers:  # it returned, so what it created is durable (a replay runs none)
                    _count(app, answers[0])
                return response
            # Without a key there is nothing to store for a replay: place, wait for the group
            # commit, answer.
            body = await request.read()
            answer = place(orders, who, body, client)
            if not isinstance(answer, Answer):  # a cluster node claiming purchase limits
                answer = await answer
            if answer.stockouts and (keeper := app[PLATFORM].stock_keeper):
                answer = await _out_of_stock(keeper, place, orders, who, body, client, answer, many)
            await app[PLATFORM].intake.durable()
            _count(app, answer)
            return web.Response(
                status=answer.status, body=answer.body, content_type="application/json"
            )
        finally:
            admission.done(started)

    return handler


ASK_POOL_TRIES = 3
"""How many times orders refused out of stock ask the pool and are placed again (units
granted may go to the orders that queued with them)."""


async def _out_of_stock(
    keeper: StockKeeper,
    place: Place,
    orders: Orders,
    who: Principal,
    body: bytes,
    client: ClientInfo | None,
    answer: Answer,
    many: bool,
) -> Answer:
    """Some of what ``answer`` placed met an empty row of a cluster node (``keeper``'s): the
    refused orders ask the pool for more and are placed once more if any came, up to
    ``ASK_POOL_TRIES`` times. One order is placed again whole (nothing of the refused attempt
    was staged); a batch's refused orders are placed again as a batch of their own, after the
    pool was asked for the units they need, and their results take their places in the
    answer. So "out of stock" is said while units remain only when other nodes hold them."""
    for _ in range(ASK_POOL_TRIES):
        if many:
            again = stockouts.refused(answer.body, body)
            if again is None or not await keeper.refill_now(again.wanted):
                break
            answer = again.merge(answer, await _answer(place(orders, who, again.body, client)))
        else:
            if not await keeper.refill_now():
                break
            answer = await _answer(place(orders, who, body, client))
        if not answer.stockouts:
            break
    return answer


def _count(app: web.Application, answer: Answer) -> None:
    if answer.created or answer.stockouts:
        counts = app[METRICS].orders
        counts.created += answer.created
        counts.stockouts += answer.stockouts


# One order (``OrderIn``): parsed, priced, reserved and answered by the Rust core.
routes.post("/v1/orders")(
    operation(
        "Place an order (buyer)",
        201,
        OrderOut,
        OrderIn,
        (*AUTH_ERRORS, *BODY_ERRORS, 409, 503),
        idempotent_key=True,
        sheds=True,
    )(_placing(Orders.place_json, many=False))
)
# Up to ``MAX_BATCH_ORDERS`` orders (``OrderBatchIn``), one result per order.
routes.post("/v1/orders/batch")(
    operation(
        f"Place up to {MAX_BATCH_ORDERS} orders at once (buyer); one result per order",
        200,
        OrderBatchOut,
        OrderBatchIn,
        (*AUTH_ERRORS, *BODY_ERRORS, 409, 503),
        idempotent_key=True,
        sheds=True,
    )(_placing(Orders.place_batch_json, many=True))
)


@routes.get("/v1/orders")
@operation(
    "List the caller's orders, newest first: a buyer's own, those holding a merchant's"
    " lines (each cut to its part, see OrderOut), all for an admin",
    200,
    OrderList,
    errors=(401, 422),
    params=(ORDER_BEFORE, LIMIT_200),
)
async def list_orders(request: web.Request) -> web.Response:
    who = principal(request)
    before = ORDER_BEFORE.optional(request)
    limit = LIMIT_200.get(request)
    platform = request.app[PLATFORM]
    found = await platform.orders.list_for(who, before, limit)
    cursor = str(found[-1].id) if len(found) == limit else None
    return json_response(
        OrderList([order_out(o) for o in platform.views.orders(who, found)], cursor)
    )


@routes.get("/v1/orders/{order_id}")
@operation(
    "Read an order (its buyer, admin; a merchant of its lines sees its part: its own lines"
    " and their total, the buyer pseudonymised, the address coarse; see OrderOut)",
    200,
    OrderOut,
    errors=(401, 404, 422),
    params=(ORDER_ID,),
)
async def get_order(request: web.Request) -> web.Response:
    """The order as the caller may see it: a merchant its part (``pyorder.marketplace``)."""
    who = principal(request)
    order_id = ORDER_ID.get(request)
    platform = request.app[PLATFORM]
    order = await platform.orders.get(who, order_id)
    return json_response(order_out(platform.views.order(who, order)))


@routes.post("/v1/orders/{order_id}/cancel")
@routed(by_order)
@operation(
    "Cancel an unpaid order (its units return), or a paid one not shipped (its units"
    " return and its charge is refunded in full)",
    200,
    OrderOut,
    None,
    (*AUTH_ERRORS, 404, 409, 422, 503),
    (ORDER_ID,),
    idempotent_key=True,
)
async def cancel_order(request: web.Request) -> web.Response:
    orders = request.app[PLATFORM].orders
    order_id = ORDER_ID.get(request)

    async def effect(who: Principal, body: bytes) -> tuple[int, object]:
        return 200, order_out(await orders.cancel(who, order_id))

    return await request.app[IDEMPOTENCY].handle(request, principal(request), effect)
