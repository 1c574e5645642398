"""The carrier API's HTTP handlers."""

from aiohttp import web

from sandbox.bodies import json_response, read
from sandbox.carrier.keys import CARRIER
from sandbox.carrier.schemas import QuoteIn, ReturnIn, ShipmentIn
from sandbox.idempotency import HEADER

routes = web.RouteTableDef()


@routes.post("/v1/shipments")
async def create_shipment(request: web.Request) -> web.Response:
    body = await read(request, ShipmentIn)
    shipment = request.app[CARRIER].ship(body, request.headers.get(HEADER))
    return json_response(shipment.public())


@routes.post("/v1/returns")
async def create_return(request: web.Request) -> web.Response:
    body = await read(request, ReturnIn)
    shipment = request.app[CARRIER].ship_return(body, request.headers.get(HEADER))
    return json_response(shipment.public())


@routes.post("/v1/return_quotes")
async def quote_return(request: web.Request) -> web.Response:
    body = await read(request, QuoteIn)
    return json_response(request.app[CARRIER].quote(body.weight_g).public())


@routes.get("/v1/shipments/{id}")
async def get_shipment(request: web.Request) -> web.Response:
    return json_response(request.app[CARRIER].get(request.match_info["id"]).public())


@routes.post("/v1/shipments/{id}/cancel")
async def cancel_shipment(request: web.Request) -> web.Response:
    return json_response(request.app[CARRIER].cancel(request.match_info["id"]).public())


@routes.get("/v1/tracking/{tracking_number}")
async def track(request: web.Request) -> web.Response:
    shipment = request.app[CARRIER].track(request.match_info["tracking_number"])
    return json_response(shipment.public())


@routes.get("/_sandbox/ledger")
async def ledger(request: web.Request) -> web.Response:
    return json_response(request.app[CARRIER].ledger())
