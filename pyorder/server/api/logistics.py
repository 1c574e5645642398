"""HTTP routes of logistics: merchants ship paid orders, buyers read tracking and pick a
delivery window, admins open delivery windows per region; carriers post signed tracking
events to ``/v1/webhooks/carriers/{carrier}`` (no bearer token: the signature is the
authentication)."""

from datetime import datetime

from aiohttp import web

from pyorder.auth import Principal
from pyorder.server.api.logistics_bodies import (
    DeliveryWindowIn,
    DeliveryWindowList,
    DeliveryWindowOut,
    ShipIn,
    ShipmentsOut,
    WindowPickIn,
    shipments_out,
    window_out,
)
from pyorder.server.bodies import WebhookAck
from pyorder.server.forwarding import by_carrier_event, by_order, routed
from pyorder.server.keys import IDEMPOTENCY, PLATFORM
from pyorder.server.operations import AUTH_ERRORS, BODY_ERRORS, operation
from pyorder.server.params import ORDER_ID, PARTNER_NAME, REGION, TextParam
from pyorder.server.requests import decode, json_response, principal

routes = web.RouteTableDef()
CARRIER = TextParam(
    "carrier", "path", PARTNER_NAME, "a carrier name has 1 to 64 letters, digits or _.-"
)


def _ms(value: datetime) -> int:
    return int(value.timestamp() * 1000)


@routes.post("/v1/orders/{order_id}/shipments")
@routed(by_order)
@operation(
    "Ship a paid order (the merchant of its lines, admin): one parcel per serving warehouse"
    " not shipped yet (or only the parcel of `warehouse`); 202, then the carrier is called",
    202,
    ShipmentsOut,
    ShipIn,
    (*AUTH_ERRORS, *BODY_ERRORS, 404, 409, 503),
    (ORDER_ID,),
    idempotent_key=True,
)
async def ship_order(request: web.Request) -> web.Response:
    """Ship a paid order (``ShipIn``, may be empty): 202 with its parcels; the carrier is
    called once they are durable."""
    platform = request.app[PLATFORM]
    order_id = ORDER_ID.get(request)

    async def effect(who: Principal, body: bytes) -> tuple[int, object]:
        data = decode(body if body.strip() else b"{}", ShipIn)
        svc = platform.logistics
        order = await svc.ship(who, order_id, data.warehouse)
        order, parcels = platform.views.shipments(who, order, svc.shipments_of(order_id))
        return 202, shipments_out(order, svc.fulfilments.get(order_id), parcels, [], svc.windows)

    return await request.app[IDEMPOTENCY].handle(request, principal(request), effect)


@routes.get("/v1/orders/{order_id}/shipments")
@routed(by_order)
@operation(
    "Read an order's tracking: fulfilment status, delivery window, parcels and their"
    " tracking events, fulfilment time; a merchant the parcels holding its lines",
    200,
    ShipmentsOut,
    errors=(401, 404, 422, 503),
    params=(ORDER_ID,),
)
async def get_shipments(request: web.Request) -> web.Response:
    who = principal(request)
    order_id = ORDER_ID.get(request)
    platform = request.app[PLATFORM]
    svc = platform.logistics
    order, fulfilment, shipments, events = await svc.read(who, order_id)
    # A merchant: the parcels holding its lines, each showing only those.
    order, shipments = platform.views.shipments(who, order, shipments)
    return json_response(shipments_out(order, fulfilment, shipments, events, svc.windows))


@routes.post("/v1/orders/{order_id}/delivery-window")
@routed(by_order)
@operation(
    "Pick a delivery window of the order's region for one's own order before it ships"
    " (buyer); 409 window_full when it has no room left",
    200,
    ShipmentsOut,
    WindowPickIn,
    (*AUTH_ERRORS, *BODY_ERRORS, 404, 409, 503),
    (ORDER_ID,),
    idempotent_key=True,
)
async def pick_window(request: web.Request) -> web.Response:
    """The buyer picks a delivery window (``WindowPickIn``) for an own order not shipped yet;
    409 ``window_full`` when it has no room left."""
    platform = request.app[PLATFORM]
    order_id = ORDER_ID.get(request)

    async def effect(who: Principal, body: bytes) -> tuple[int, object]:
        data = decode(body, WindowPickIn)
        svc = platform.logistics
        await svc.pick_window(who, order_id, data.window)
        order = await platform.orders.pending_order(order_id) or await platform.store.get_order(
            order_id
        )
        assert order is not None
        return 200, shipments_out(
            order, svc.fulfilments.get(order_id), svc.shipments_of(order_id), [], svc.windows
        )

    return await request.app[IDEMPOTENCY].handle(request, principal(request), effect)


@routes.post("/v1/regions/{region}/delivery-windows")
@operation(
    "Open a delivery window (UTC start and end) with a capacity in a region (admin)",
    201,
    DeliveryWindowOut,
    DeliveryWindowIn,
    (*AUTH_ERRORS, *BODY_ERRORS, 404, 409, 503),
    (REGION,),
    idempotent_key=True,
)
async def create_window(request: web.Request) -> web.Response:
    platform = request.app[PLATFORM]
    code = REGION.get(request)

    async def effect(who: Principal, body: bytes) -> tuple[int, object]:
        data = decode(body, DeliveryWindowIn)
        REGION.check(code)
        window = platform.logistics.create_window(
            who, code, _ms(data.start), _ms(data.end), data.capacity
        )
        return 201, window_out(window)

    return await request.app[IDEMPOTENCY].handle(request, principal(request), effect)


@routes.get("/v1/regions/{region}/delivery-windows")
@operation(
    "A region's delivery windows that have not ended, with their remaining capacity",
    200,
    DeliveryWindowList,
    errors=(401, 404, 422, 503),
    params=(REGION,),
)
async def list_windows(request: web.Request) -> web.Response:
    principal(request)
    code = REGION.get(request)
    REGION.check(code)
    request.app[PLATFORM].catalog.region(code)  # 404 unless served
    found = await request.app[PLATFORM].logistics.list_windows(code)
    return json_response(DeliveryWindowList(code, [window_out(w) for w in found]))


@routes.post("/v1/webhooks/carriers/{carrier}")
@routed(by_carrier_event)
@operation(
    "A carrier's signed tracking event (header Provider-Signature: t=<unix>,v1=<hex"
    " HMAC-SHA256 of 't.body'>); the raw body is verified before it is read",
    200,
    WebhookAck,
    None,
    (400, 404, 409, 503),
    (CARRIER,),
    auth=False,
)
async def carrier_webhook(request: web.Request) -> web.Response:
    body = await request.read()
    carrier = CARRIER.get(request)
    duplicate, event = await request.app[PLATFORM].logistics.handle_webhook(
        carrier, body, dict(request.headers)
    )
    return json_response(WebhookAck(True, duplicate, event))
