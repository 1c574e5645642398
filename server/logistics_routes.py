"""HTTP routes of logistics: merchants ship paid orders, buyers read tracking and pick a
delivery window, admins open delivery windows per region; carriers post signed tracking
events to ``/v1/webhooks/carriers/{carrier}`` (no bearer token: the signature is the
authentication)."""

from datetime import datetime

from aiohttp import web

from pyorder.auth import Principal
from server.catalog_routes import _check_region_code
from server.keys import IDEMPOTENCY, PLATFORM
from server.order_routes import MAX_ORDER_ID
from server.requests import decode, int_param, json_response, principal
from server.schemas import (
    DeliveryWindowIn,
    DeliveryWindowList,
    ShipIn,
    WebhookAck,
    WindowPickIn,
    shipments_out,
    window_out,
)

routes = web.RouteTableDef()


def _ms(value: datetime) -> int:
    return int(value.timestamp() * 1000)


@routes.post("/v1/orders/{order_id}/shipments")
async def ship_order(request: web.Request) -> web.Response:
    """Ship a paid order (``ShipIn``, may be empty): 202 with its parcels; the carrier is
    called once they are durable."""
    platform = request.app[PLATFORM]
    order_id = int_param(request, "order_id", lo=0, hi=MAX_ORDER_ID)

    async def effect(who: Principal, body: bytes) -> tuple[int, object]:
        data = decode(body if body.strip() else b"{}", ShipIn)
        svc = platform.logistics
        order = await svc.ship(who, order_id, data.warehouse)
        order, parcels = platform.views.shipments(who, order, svc.shipments_of(order_id))
        return 202, shipments_out(order, svc.fulfilments.get(order_id), parcels, [], svc.windows)

    return await request.app[IDEMPOTENCY].handle(request, principal(request), effect)


@routes.get("/v1/orders/{order_id}/shipments")
async def get_shipments(request: web.Request) -> web.Response:
    who = principal(request)
    order_id = int_param(request, "order_id", lo=0, hi=MAX_ORDER_ID)
    platform = request.app[PLATFORM]
    svc = platform.logistics
    order, fulfilment, shipments, events = await svc.read(who, order_id)
    # A merchant: the parcels holding its lines, each showing only those.
    order, shipments = platform.views.shipments(who, order, shipments)
    return json_response(shipments_out(order, fulfilment, shipments, events, svc.windows))


@routes.post("/v1/orders/{order_id}/delivery-window")
async def pick_window(request: web.Request) -> web.Response:
    """The buyer picks a delivery window (``WindowPickIn``) for an own order not shipped yet;
    409 ``window_full`` when it has no room left."""
    platform = request.app[PLATFORM]
    order_id = int_param(request, "order_id", lo=0, hi=MAX_ORDER_ID)

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
async def create_window(request: web.Request) -> web.Response:
    platform = request.app[PLATFORM]
    code = request.match_info["region"]

    async def effect(who: Principal, body: bytes) -> tuple[int, object]:
        data = decode(body, DeliveryWindowIn)
        _check_region_code(code)
        window = platform.logistics.create_window(
            who, code, _ms(data.start), _ms(data.end), data.capacity
        )
        return 201, window_out(window)

    return await request.app[IDEMPOTENCY].handle(request, principal(request), effect)


@routes.get("/v1/regions/{region}/delivery-windows")
async def list_windows(request: web.Request) -> web.Response:
    principal(request)
    code = request.match_info["region"]
    _check_region_code(code)
    request.app[PLATFORM].catalog.region(code)  # 404 unless served
    found = request.app[PLATFORM].logistics.windows_of(code)
    return json_response(DeliveryWindowList(code, [window_out(w) for w in found]))


@routes.post("/v1/webhooks/carriers/{carrier}")
async def carrier_webhook(request: web.Request) -> web.Response:
    body = await request.read()
    carrier = request.match_info["carrier"]
    duplicate, event = await request.app[PLATFORM].logistics.handle_webhook(
        carrier, body, dict(request.headers)
    )
    return json_response(WebhookAck(True, duplicate, event))
