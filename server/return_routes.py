"""HTTP routes of returns: the buyer opens a no-reason return of a delivered order's units and
reads it; the merchant of its lines (or an admin) works the review queue (``GET
/v1/returns?status=in_review``), approving (the refund is issued) or rejecting. Lightning
refunds need no route: the carrier's pickup scan, posted to the carriers' webhook, issues them.
"""

from collections.abc import Sequence

from aiohttp import web

from pyorder.auth import Principal
from pyorder.kernel.errors import InvalidInput
from pyorder.logistics.model import TrackingEvent
from pyorder.platform import Platform
from pyorder.returns.model import Return, ReturnStatus
from server.keys import IDEMPOTENCY, PLATFORM
from server.order_routes import MAX_ORDER_ID
from server.requests import decode, int_param, json_response, principal
from server.schemas import ReturnIn, ReturnList, ReturnOut, ReturnRejectIn, return_out

routes = web.RouteTableDef()
MAX_RETURN_ID = 2**63 - 1


def _out(
    platform: Platform, who: Principal, ret: Return, events: Sequence[TrackingEvent] = ()
) -> ReturnOut:
    """The return as ``who`` sees it (a merchant: the buyer pseudonymised)."""
    svc = platform.returns
    seen = platform.views.ret(who, ret)
    return return_out(seen, svc.decisions_of(ret.id), svc.refund_of(ret), events)


@routes.post("/v1/orders/{order_id}/returns")
async def open_return(request: web.Request) -> web.Response:
    """Open a return (``ReturnIn``) of one's own delivered order: 201 with the returns it makes
    (one per parcel and merchant); their parcels back are booked once they are durable."""
    platform = request.app[PLATFORM]
    order_id = int_param(request, "order_id", lo=0, hi=MAX_ORDER_ID)

    async def effect(who: Principal, body: bytes) -> tuple[int, object]:
        data = decode(body, ReturnIn)
        lines = [(li.sku, li.quantity) for li in data.lines]
        opened = await platform.returns.open(who, order_id, lines, data.reason)
        return 201, ReturnList([_out(platform, who, r) for r in opened], None)

    return await request.app[IDEMPOTENCY].handle(request, principal(request), effect)


@routes.get("/v1/orders/{order_id}/returns")
async def order_returns(request: web.Request) -> web.Response:
    who = principal(request)
    order_id = int_param(request, "order_id", lo=0, hi=MAX_ORDER_ID)
    platform = request.app[PLATFORM]
    found = await platform.returns.read_order(who, order_id)
    return json_response(ReturnList([_out(platform, who, r) for r in found], None))


@routes.get("/v1/returns")
async def list_returns(request: web.Request) -> web.Response:
    """The caller's returns by id (a buyer's own, a merchant's, all for an admin), filtered
    by ``status``; ``after`` is the cursor."""
    who = principal(request)
    raw = request.query.get("status")
    try:
        status = ReturnStatus(raw) if raw is not None else None
    except ValueError:
        known = ", ".join(s.value for s in ReturnStatus)
        raise InvalidInput(f"status is one of {known}", field="status") from None
    after = int_param(request, "after", lo=0, hi=MAX_RETURN_ID, default=0)
    limit = int_param(request, "limit", lo=1, hi=500, default=50)
    platform = request.app[PLATFORM]
    found = await platform.returns.list(who, status, after, limit)
    cursor = str(found[-1].id) if len(found) == limit else None
    return json_response(ReturnList([_out(platform, who, r) for r in found], cursor))


@routes.get("/v1/returns/{return_id}")
async def get_return(request: web.Request) -> web.Response:
    who = principal(request)
    return_id = int_param(request, "return_id", lo=0, hi=MAX_RETURN_ID)
    platform = request.app[PLATFORM]
    ret, events = await platform.returns.read(who, return_id)
    return json_response(_out(platform, who, ret, events))


@routes.post("/v1/returns/{return_id}/approve")
async def approve_return(request: web.Request) -> web.Response:
    """Approve a return in review (its merchant, admin): its refund is issued."""
    platform = request.app[PLATFORM]
    return_id = int_param(request, "return_id", lo=0, hi=MAX_RETURN_ID)

    async def effect(who: Principal, body: bytes) -> tuple[int, object]:
        return 200, _out(platform, who, platform.returns.approve(who, return_id))

    return await request.app[IDEMPOTENCY].handle(request, principal(request), effect)


@routes.post("/v1/returns/{return_id}/reject")
async def reject_return(request: web.Request) -> web.Response:
    """Reject a return in review (``ReturnRejectIn``; its merchant, admin): no refund."""
    platform = request.app[PLATFORM]
    return_id = int_param(request, "return_id", lo=0, hi=MAX_RETURN_ID)

    async def effect(who: Principal, body: bytes) -> tuple[int, object]:
        data = decode(body, ReturnRejectIn)
        return 200, _out(platform, who, platform.returns.reject(who, return_id, data.reason))

    return await request.app[IDEMPOTENCY].handle(request, principal(request), effect)
