"""The payment API's HTTP handlers: read the body, call the provider, answer its JSON."""

from aiohttp import web

from sandbox.bodies import json_response, read
from sandbox.idempotency import HEADER
from sandbox.payment.keys import PROVIDER
from sandbox.payment.schemas import (
    AuthenticateIn,
    CancelIn,
    CaptureIn,
    ConfirmIn,
    CreateIntentIn,
    RefundIn,
)

routes = web.RouteTableDef()


def _key(request: web.Request) -> str | None:
    return request.headers.get(HEADER)


@routes.post("/v1/payment_intents")
async def create_intent(request: web.Request) -> web.Response:
    body = await read(request, CreateIntentIn)
    intent = request.app[PROVIDER].create(body, _key(request))
    return json_response(intent.public())


@routes.get("/v1/payment_intents/{id}")
async def get_intent(request: web.Request) -> web.Response:
    return json_response(request.app[PROVIDER].get(request.match_info["id"]).public())


@routes.post("/v1/payment_intents/{id}/confirm")
async def confirm_intent(request: web.Request) -> web.Response:
    body = await read(request, ConfirmIn)
    intent = request.app[PROVIDER].confirm(
        request.match_info["id"],
        body.payment_method,
        body.return_url,
        _key(request),
        body.payment_method_options,
    )
    return json_response(intent.public())


@routes.post("/v1/payment_intents/{id}/authenticate")
async def authenticate_intent(request: web.Request) -> web.Response:
    body = await read(request, AuthenticateIn)
    intent = request.app[PROVIDER].authenticate(request.match_info["id"], body.outcome == "approve")
    return json_response(intent.public())


@routes.post("/v1/payment_intents/{id}/capture")
async def capture_intent(request: web.Request) -> web.Response:
    body = await read(request, CaptureIn)
    intent = request.app[PROVIDER].capture(
        request.match_info["id"], body.amount_to_capture, _key(request)
    )
    return json_response(intent.public())


@routes.post("/v1/payment_intents/{id}/cancel")
async def cancel_intent(request: web.Request) -> web.Response:
    body = await read(request, CancelIn)
    intent = request.app[PROVIDER].cancel(request.match_info["id"], body.cancellation_reason)
    return json_response(intent.public())


@routes.post("/v1/refunds")
async def create_refund(request: web.Request) -> web.Response:
    body = await read(request, RefundIn)
    return json_response(request.app[PROVIDER].refund(body, _key(request)).public())


@routes.get("/v1/refunds/{id}")
async def get_refund(request: web.Request) -> web.Response:
    return json_response(request.app[PROVIDER].get_refund(request.match_info["id"]).public())


@routes.get("/_sandbox/ledger")
async def ledger(request: web.Request) -> web.Response:
    return json_response(request.app[PROVIDER].ledger())
