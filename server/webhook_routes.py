"""HTTP routes of merchants' webhook endpoints (``/v1/webhook-endpoints``): register one (its
signing secret is shown in that answer only), list and read them, delete one (it receives
nothing more; its events not delivered yet are cancelled), give one a new secret, read its
deliveries, newest first, and send a failed one again. Merchants see their own endpoints
(others' are 404), admins everyone's; buyers none."""

from aiohttp import web

from pyorder.auth import Principal
from pyorder.kernel.errors import InvalidInput
from server.keys import IDEMPOTENCY, PLATFORM
from server.requests import decode, int_param, json_response, principal
from server.schemas import (
    DeliveryList,
    WebhookEndpointIn,
    WebhookEndpointList,
    delivery_out,
    endpoint_created_out,
    endpoint_out,
)

routes = web.RouteTableDef()
MAX_ENDPOINT_ID = 2**31 - 1
MAX_EVENT_ID = 2**63 - 1
EVENT_PREFIX = "evt_"


@routes.post("/v1/webhook-endpoints")
async def create_endpoint(request: web.Request) -> web.Response:
    """Register an endpoint of the calling merchant (``WebhookEndpointIn``): 201 with its
    secret, once it is durable."""
    webhooks = request.app[PLATFORM].webhooks

    async def effect(who: Principal, body: bytes) -> tuple[int, object]:
        data = decode(body, WebhookEndpointIn)
        endpoint = webhooks.create(who, data.url, data.events, data.description)
        return 201, endpoint_created_out(endpoint)

    return await request.app[IDEMPOTENCY].handle(request, principal(request), effect)


@routes.get("/v1/webhook-endpoints")
async def list_endpoints(request: web.Request) -> web.Response:
    found = request.app[PLATFORM].webhooks.visible(principal(request))
    return json_response(WebhookEndpointList([endpoint_out(e) for e in found]))


@routes.get("/v1/webhook-endpoints/{endpoint_id}")
async def get_endpoint(request: web.Request) -> web.Response:
    who = principal(request)
    endpoint_id = int_param(request, "endpoint_id", lo=0, hi=MAX_ENDPOINT_ID)
    return json_response(endpoint_out(request.app[PLATFORM].webhooks.get(who, endpoint_id)))


@routes.delete("/v1/webhook-endpoints/{endpoint_id}")
async def delete_endpoint(request: web.Request) -> web.Response:
    """Delete (disable) an endpoint: 200 with it, once that and the cancelling of its pending
    events are durable."""
    webhooks = request.app[PLATFORM].webhooks
    endpoint_id = int_param(request, "endpoint_id", lo=0, hi=MAX_ENDPOINT_ID)

    async def effect(who: Principal, body: bytes) -> tuple[int, object]:
        return 200, endpoint_out(webhooks.delete(who, endpoint_id))

    return await request.app[IDEMPOTENCY].handle(request, principal(request), effect)


@routes.post("/v1/webhook-endpoints/{endpoint_id}/rotate-secret")
async def rotate_secret(request: web.Request) -> web.Response:
    """Give an endpoint a new secret: 200 with it (shown in this answer only), once durable;
    every attempt from then on is signed with it."""
    webhooks = request.app[PLATFORM].webhooks
    endpoint_id = int_param(request, "endpoint_id", lo=0, hi=MAX_ENDPOINT_ID)

    async def effect(who: Principal, body: bytes) -> tuple[int, object]:
        return 200, endpoint_created_out(webhooks.rotate_secret(who, endpoint_id))

    return await request.app[IDEMPOTENCY].handle(request, principal(request), effect)


@routes.post("/v1/webhook-endpoints/{endpoint_id}/deliveries/{event_id}/retry")
async def resend_delivery(request: web.Request) -> web.Response:
    """Send a failed event (``evt_<n>`` or ``<n>``) again: 200 with its delivery, pending and
    due now, once durable. 409 ``invalid_state`` unless it is failed."""
    webhooks = request.app[PLATFORM].webhooks
    endpoint_id = int_param(request, "endpoint_id", lo=0, hi=MAX_ENDPOINT_ID)
    event_id = _event_id(request.match_info["event_id"])

    async def effect(who: Principal, body: bytes) -> tuple[int, object]:
        return 200, delivery_out(await webhooks.resend(who, endpoint_id, event_id))

    return await request.app[IDEMPOTENCY].handle(request, principal(request), effect)


def _event_id(raw: str) -> int:
    """The number of an event id given as ``evt_<n>`` (as listed) or ``<n>``; 422 otherwise."""
    digits = raw.removeprefix(EVENT_PREFIX)
    if not (digits.isascii() and digits.isdigit()) or len(digits) > 19:
        raise InvalidInput("event_id must be evt_<n> or <n>", field="event_id")
    value = int(digits)
    if not 1 <= value <= MAX_EVENT_ID:
        raise InvalidInput(f"event_id must be between 1 and {MAX_EVENT_ID}", field="event_id")
    return value


@routes.get("/v1/webhook-endpoints/{endpoint_id}/deliveries")
async def list_deliveries(request: web.Request) -> web.Response:
    """The endpoint's events and their delivery, newest first; ``before`` (an event's number,
    ``next_cursor``) pages back."""
    who = principal(request)
    endpoint_id = int_param(request, "endpoint_id", lo=0, hi=MAX_ENDPOINT_ID)
    before = (
        int_param(request, "before", lo=1, hi=MAX_EVENT_ID) if "before" in request.query else None
    )
    limit = int_param(request, "limit", lo=1, hi=200, default=50)
    found = await request.app[PLATFORM].webhooks.deliveries(who, endpoint_id, before, limit)
    cursor = str(found[-1].id) if len(found) == limit else None
    return json_response(DeliveryList([delivery_out(d) for d in found], cursor))
