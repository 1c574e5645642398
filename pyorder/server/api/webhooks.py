"""HTTP routes of merchants' webhook endpoints (``/v1/webhook-endpoints``): register one (its
signing secret is shown in that answer only), list and read them, delete one (it receives
nothing more; its events not delivered yet are cancelled), give one a new secret, read its
deliveries, newest first, and send a failed one again. Merchants see their own endpoints
(others' are 404), admins everyone's; buyers none."""

from aiohttp import web

from pyorder.auth import Principal
from pyorder.server.api.webhooks_bodies import (
    DeliveryList,
    DeliveryOut,
    WebhookEndpointCreatedOut,
    WebhookEndpointIn,
    WebhookEndpointList,
    WebhookEndpointOut,
    delivery_out,
    endpoint_created_out,
    endpoint_out,
)
from pyorder.server.forwarding import by_leader, routed
from pyorder.server.keys import IDEMPOTENCY, PLATFORM
from pyorder.server.operations import AUTH_ERRORS, BODY_ERRORS, operation
from pyorder.server.params import LIMIT_200, MAX_ID, IntParam, PrefixedIntParam
from pyorder.server.requests import decode, json_response, principal

routes = web.RouteTableDef()
MAX_EVENT_ID = 2**63 - 1
EVENT_PREFIX = "evt_"
ENDPOINT_ID = IntParam("endpoint_id", "path", 0, MAX_ID)
EVENT_REF = PrefixedIntParam("event_id", "path", EVENT_PREFIX, 1, MAX_EVENT_ID)
"""An event as listed (``evt_<n>``) or by its number."""
EVENT_BEFORE = IntParam("before", "query", 1, MAX_EVENT_ID)


@routes.post("/v1/webhook-endpoints")
@routed(by_leader)
@operation(
    "Register a webhook endpoint of one's own (merchant) for events of the orders holding"
    " one's SKUs, of the types in `events` (default: all), each showing the merchant's part"
    " of the order as the API does; 201 with its signing secret, shown"
    " in this answer only. Events are POSTed signed (header Pyorder-Signature: t=<unix>,"
    "v1=<hex HMAC-SHA256 of 't.body'>), retried with backoff; see docs/webhooks.md. 409"
    " too_many_endpoints past 16, 422 invalid_url / unknown_event_type",
    201,
    WebhookEndpointCreatedOut,
    WebhookEndpointIn,
    (*AUTH_ERRORS, *BODY_ERRORS, 409, 503),
    idempotent_key=True,
)
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
@routed(by_leader)
@operation(
    "List webhook endpoints, oldest first: a merchant's own, everyone's for an admin",
    200,
    WebhookEndpointList,
    errors=AUTH_ERRORS,
)
async def list_endpoints(request: web.Request) -> web.Response:
    found = request.app[PLATFORM].webhooks.visible(principal(request))
    return json_response(WebhookEndpointList([endpoint_out(e) for e in found]))


@routes.get("/v1/webhook-endpoints/{endpoint_id}")
@routed(by_leader)
@operation(
    "Read a webhook endpoint (its merchant, admin); its secret is not shown",
    200,
    WebhookEndpointOut,
    errors=(*AUTH_ERRORS, 404, 422),
    params=(ENDPOINT_ID,),
)
async def get_endpoint(request: web.Request) -> web.Response:
    who = principal(request)
    endpoint_id = ENDPOINT_ID.get(request)
    return json_response(endpoint_out(request.app[PLATFORM].webhooks.get(who, endpoint_id)))


@routes.delete("/v1/webhook-endpoints/{endpoint_id}")
@routed(by_leader)
@operation(
    "Delete a webhook endpoint (its merchant, admin): it receives nothing more, and its"
    " events not delivered yet are cancelled",
    200,
    WebhookEndpointOut,
    None,
    (*AUTH_ERRORS, 404, 409, 422, 503),
    (ENDPOINT_ID,),
    idempotent_key=True,
)
async def delete_endpoint(request: web.Request) -> web.Response:
    """Delete (disable) an endpoint: 200 with it, once that and the cancelling of its pending
    events are durable."""
    webhooks = request.app[PLATFORM].webhooks
    endpoint_id = ENDPOINT_ID.get(request)

    async def effect(who: Principal, body: bytes) -> tuple[int, object]:
        return 200, endpoint_out(webhooks.delete(who, endpoint_id))

    return await request.app[IDEMPOTENCY].handle(request, principal(request), effect)


@routes.post("/v1/webhook-endpoints/{endpoint_id}/rotate-secret")
@routed(by_leader)
@operation(
    "Give a webhook endpoint a new signing secret (its merchant, admin); 200 with it, shown"
    " in this answer only. Every attempt from then on, retries included, is signed with it",
    200,
    WebhookEndpointCreatedOut,
    None,
    (*AUTH_ERRORS, 404, 409, 422, 503),
    (ENDPOINT_ID,),
    idempotent_key=True,
)
async def rotate_secret(request: web.Request) -> web.Response:
    """Give an endpoint a new secret: 200 with it (shown in this answer only), once durable;
    every attempt from then on is signed with it."""
    webhooks = request.app[PLATFORM].webhooks
    endpoint_id = ENDPOINT_ID.get(request)

    async def effect(who: Principal, body: bytes) -> tuple[int, object]:
        return 200, endpoint_created_out(webhooks.rotate_secret(who, endpoint_id))

    return await request.app[IDEMPOTENCY].handle(request, principal(request), effect)


@routes.post("/v1/webhook-endpoints/{endpoint_id}/deliveries/{event_id}/retry")
@routed(by_leader)
@operation(
    "Send a failed event (evt_<n> or <n>) again (its merchant, admin): pending, due now,"
    " with a fresh budget of attempts (attempts counts from 0 again; last_status and"
    " last_error stay until the next attempt). 409 invalid_state unless it is failed",
    200,
    DeliveryOut,
    None,
    (*AUTH_ERRORS, 404, 409, 422, 503),
    (ENDPOINT_ID, EVENT_REF),
    idempotent_key=True,
)
async def resend_delivery(request: web.Request) -> web.Response:
    """Send a failed event (``evt_<n>`` or ``<n>``) again: 200 with its delivery, pending and
    due now, once durable. 409 ``invalid_state`` unless it is failed."""
    webhooks = request.app[PLATFORM].webhooks
    endpoint_id = ENDPOINT_ID.get(request)
    event_id = EVENT_REF.get(request)

    async def effect(who: Principal, body: bytes) -> tuple[int, object]:
        return 200, delivery_out(await webhooks.resend(who, endpoint_id, event_id))

    return await request.app[IDEMPOTENCY].handle(request, principal(request), effect)


@routes.get("/v1/webhook-endpoints/{endpoint_id}/deliveries")
@routed(by_leader)
@operation(
    "A webhook endpoint's events and their delivery (state, attempts, last status and"
    " error), newest first; `before` (next_cursor) pages back",
    200,
    DeliveryList,
    errors=(*AUTH_ERRORS, 404, 422, 503),
    params=(ENDPOINT_ID, EVENT_BEFORE, LIMIT_200),
)
async def list_deliveries(request: web.Request) -> web.Response:
    """The endpoint's events and their delivery, newest first; ``before`` (an event's number,
    ``next_cursor``) pages back."""
    who = principal(request)
    endpoint_id = ENDPOINT_ID.get(request)
    before = EVENT_BEFORE.optional(request)
    limit = LIMIT_200.get(request)
    found = await request.app[PLATFORM].webhooks.deliveries(who, endpoint_id, before, limit)
    cursor = str(found[-1].id) if len(found) == limit else None
    return json_response(DeliveryList([delivery_out(d) for d in found], cursor))
