"""HTTP routes of merchants' webhook endpoints (``/v1/webhook-endpoints``): register one (its
signing secret is shown in that answer only), list and read them, delete one (it receives
nothing more; its events not delivered yet are cancelled), and read its deliveries, newest
first. Merchants see their own endpoints (others' are 404), admins everyone's; buyers none."""

from aiohttp import web

from pyorder.auth import Principal
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
