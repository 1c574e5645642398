"""HTTP routes of returns: the buyer opens a no-reason return of a delivered order's units and
reads it; the merchant of its lines (or an admin) works the review queue (``GET
/v1/returns?status=in_review``), approving (the refund is issued) or rejecting. Lightning
refunds need no route: the carrier's pickup scan, posted to the carriers' webhook, issues them.
"""

from collections.abc import Sequence

from aiohttp import web

from pyorder.auth import Principal
from pyorder.logistics.model import TrackingEvent
from pyorder.platform import Platform
from pyorder.returns.model import Return, ReturnStatus
from pyorder.server.api.returns_bodies import (
    ReturnIn,
    ReturnList,
    ReturnOut,
    ReturnRejectIn,
    return_out,
)
from pyorder.server.forwarding import by_order, by_return, routed
from pyorder.server.keys import IDEMPOTENCY, PLATFORM
from pyorder.server.operations import AUTH_ERRORS, BODY_ERRORS, operation
from pyorder.server.params import LIMIT_500, ORDER_ID, EnumParam, IntParam
from pyorder.server.requests import decode, json_response, principal

routes = web.RouteTableDef()
MAX_RETURN_ID = 2**63 - 1
RETURN_ID = IntParam("return_id", "path", 0, MAX_RETURN_ID)
RETURN_AFTER = IntParam("after", "query", 0, MAX_RETURN_ID, default=0)
RETURN_STATUS = EnumParam("status", "query", ReturnStatus)


def _out(
    platform: Platform, who: Principal, ret: Return, events: Sequence[TrackingEvent] = ()
) -> ReturnOut:
    """The return as ``who`` sees it (a merchant: the buyer pseudonymised)."""
    svc = platform.returns
    seen = platform.views.ret(who, ret)
    return return_out(seen, svc.decisions_of(ret.id), svc.refund_of(ret), events)


@routes.post("/v1/orders/{order_id}/returns")
@routed(by_order)
@operation(
    "Open a 7-day no-reason return (the order's buyer) of delivered units: 201 with one"
    " return per parcel and merchant they came from, each with its parcel back booked with"
    " the carrier (first weight borne by the platform) and its lightning decision. 409"
    " return_window_closed / not_delivered / invalid_state, 422 category_not_returnable /"
    " return_exceeds_purchase",
    201,
    ReturnList,
    ReturnIn,
    (*AUTH_ERRORS, *BODY_ERRORS, 404, 409, 503),
    (ORDER_ID,),
    idempotent_key=True,
)
async def open_return(request: web.Request) -> web.Response:
    """Open a return (``ReturnIn``) of one's own delivered order: 201 with the returns it makes
    (one per parcel and merchant); their parcels back are booked once they are durable."""
    platform = request.app[PLATFORM]
    order_id = ORDER_ID.get(request)

    async def effect(who: Principal, body: bytes) -> tuple[int, object]:
        data = decode(body, ReturnIn)
        lines = [(li.sku, li.quantity) for li in data.lines]
        opened = await platform.returns.open(who, order_id, lines, data.reason)
        return 201, ReturnList([_out(platform, who, r) for r in opened], None)

    return await request.app[IDEMPOTENCY].handle(request, principal(request), effect)


@routes.get("/v1/orders/{order_id}/returns")
@routed(by_order)
@operation(
    "An order's returns (its buyer, the merchant of the returned lines, admin)",
    200,
    ReturnList,
    errors=(401, 404, 422, 503),
    params=(ORDER_ID,),
)
async def order_returns(request: web.Request) -> web.Response:
    who = principal(request)
    order_id = ORDER_ID.get(request)
    platform = request.app[PLATFORM]
    found = await platform.returns.read_order(who, order_id)
    return json_response(ReturnList([_out(platform, who, r) for r in found], None))


@routes.get("/v1/returns")
@operation(
    "The caller's returns by id: a buyer's own, a merchant's (the review queue with"
    " status=in_review), all for an admin",
    200,
    ReturnList,
    errors=(401, 422, 503),
    params=(RETURN_STATUS, RETURN_AFTER, LIMIT_500),
)
async def list_returns(request: web.Request) -> web.Response:
    """The caller's returns by id (a buyer's own, a merchant's, all for an admin), filtered
    by ``status``; ``after`` is the cursor."""
    who = principal(request)
    status = RETURN_STATUS.optional(request)
    after = RETURN_AFTER.get(request)
    limit = LIMIT_500.get(request)
    platform = request.app[PLATFORM]
    found = await platform.returns.list(who, status, after, limit)
    cursor = str(found[-1].id) if len(found) == limit else None
    return json_response(ReturnList([_out(platform, who, r) for r in found], cursor))


@routes.get("/v1/returns/{return_id}")
@routed(by_return)
@operation(
    "Read a return: its lines, parcel back and tracking, decisions with every rule, refund",
    200,
    ReturnOut,
    errors=(401, 404, 422, 503),
    params=(RETURN_ID,),
)
async def get_return(request: web.Request) -> web.Response:
    who = principal(request)
    return_id = RETURN_ID.get(request)
    platform = request.app[PLATFORM]
    ret, events = await platform.returns.read(who, return_id)
    return json_response(_out(platform, who, ret, events))


@routes.post("/v1/returns/{return_id}/approve")
@routed(by_return)
@operation(
    "Approve a return in review (its merchant, admin): the refund is issued",
    200,
    ReturnOut,
    None,
    (*AUTH_ERRORS, 404, 409, 422, 503),
    (RETURN_ID,),
    idempotent_key=True,
)
async def approve_return(request: web.Request) -> web.Response:
    """Approve a return in review (its merchant, admin): its refund is issued."""
    platform = request.app[PLATFORM]
    return_id = RETURN_ID.get(request)

    async def effect(who: Principal, body: bytes) -> tuple[int, object]:
        return 200, _out(platform, who, platform.returns.approve(who, return_id))

    return await request.app[IDEMPOTENCY].handle(request, principal(request), effect)


@routes.post("/v1/returns/{return_id}/reject")
@routed(by_return)
@operation(
    "Reject a return in review (its merchant, admin) with a reason: no refund",
    200,
    ReturnOut,
    ReturnRejectIn,
    (*AUTH_ERRORS, *BODY_ERRORS, 404, 409, 503),
    (RETURN_ID,),
    idempotent_key=True,
)
async def reject_return(request: web.Request) -> web.Response:
    """Reject a return in review (``ReturnRejectIn``; its merchant, admin): no refund."""
    platform = request.app[PLATFORM]
    return_id = RETURN_ID.get(request)

    async def effect(who: Principal, body: bytes) -> tuple[int, object]:
        data = decode(body, ReturnRejectIn)
        return 200, _out(platform, who, platform.returns.reject(who, return_id, data.reason))

    return await request.app[IDEMPOTENCY].handle(request, principal(request), effect)
