"""HTTP routes of payments: the buyer starts paying an order and reads its payment; providers
post signed events to ``/v1/webhooks/payments/{provider}`` (no bearer token: the signature is
the authentication)."""

from aiohttp import web

from pyorder.auth import Principal, Role
from pyorder.marketplace import merchant_of
from pyorder.server.api.payments_bodies import (
    PaymentIn,
    PaymentOut,
    RefundIn,
    RefundList,
    RefundOut,
    payment_out,
    refund_out,
)
from pyorder.server.bodies import WebhookAck
from pyorder.server.forwarding import by_order, by_payment_event, routed
from pyorder.server.keys import IDEMPOTENCY, PLATFORM
from pyorder.server.operations import AUTH_ERRORS, BODY_ERRORS, operation
from pyorder.server.params import ORDER_ID, PARTNER_NAME, TextParam
from pyorder.server.requests import decode, json_response, principal

routes = web.RouteTableDef()
PROVIDER = TextParam(
    "provider", "path", PARTNER_NAME, "a provider name has 1 to 64 letters, digits or _.-"
)


@routes.post("/v1/orders/{order_id}/payments")
@routed(by_order)
@operation(
    "Start paying one's own order awaiting payment with a method (buyer); 202, then the"
    " provider is called, and the order becomes paid when the charge is confirmed",
    202,
    PaymentOut,
    PaymentIn,
    (*AUTH_ERRORS, *BODY_ERRORS, 404, 409, 503),
    (ORDER_ID,),
    idempotent_key=True,
)
async def start_payment(request: web.Request) -> web.Response:
    """Start paying an order (``PaymentIn``): 202 with the payment; the provider is called once
    the attempt is durable, and the order becomes ``paid`` when the charge is confirmed."""
    platform = request.app[PLATFORM]
    order_id = ORDER_ID.get(request)

    clients = platform.clients
    ip = (
        None
        if clients is None
        else clients.info(request.remote, request.headers.get("X-Forwarded-For"), None)[0]
    )

    async def effect(who: Principal, body: bytes) -> tuple[int, object]:
        payment = decode(body, PaymentIn)
        svc = platform.payments
        pay = await svc.start(who, order_id, payment.method, payment.payment_method, ip=ip)
        return 202, payment_out(order_id, pay, svc.attempts_of(order_id))

    return await request.app[IDEMPOTENCY].handle(request, principal(request), effect)


@routes.get("/v1/orders/{order_id}/payment")
@routed(by_order)
@operation(
    "Read an order's payment: status, authorised/charged/refunded amounts, attempts (an"
    " attempt in requires_action carries the provider's next_action for the buyer). A"
    " merchant sees its share of the amounts and no attempts (see PaymentOut)",
    200,
    PaymentOut,
    errors=(401, 404, 422, 503),
    params=(ORDER_ID,),
)
async def get_payment(request: web.Request) -> web.Response:
    """The payment as the caller may see it: a merchant its share (``pyorder.marketplace``)."""
    who = principal(request)
    order_id = ORDER_ID.get(request)
    platform = request.app[PLATFORM]
    pay, attempts, actions = await platform.payments.read(who, order_id)
    if merchant_of(who) is not None:
        refunds = platform.payments.refunds.of(order_id)  # as of the same step as the payment
        order = await platform.orders.get(who, order_id)
        pay, attempts = platform.views.payment(who, order, pay, attempts, refunds)
        actions = {}
    admin = who.role is Role.ADMIN
    return json_response(payment_out(order_id, pay, attempts, actions, with_risk=admin))


@routes.post("/v1/orders/{order_id}/refunds")
@routed(by_order)
@operation(
    "Refund part or all of a paid order's charge by amount or by lines (the merchant of the"
    " lines, admin); 202, then the provider is called; 422 refund_exceeds_charge past what"
    " is left of the charge",
    202,
    RefundOut,
    RefundIn,
    (*AUTH_ERRORS, *BODY_ERRORS, 404, 409, 503),
    (ORDER_ID,),
    idempotent_key=True,
)
async def request_refund(request: web.Request) -> web.Response:
    """Refund part (or all) of a paid order's charge (``RefundIn``; the merchant of the lines
    or an admin): 202 with the refund, sent to the provider once it is durable."""
    platform = request.app[PLATFORM]
    order_id = ORDER_ID.get(request)

    async def effect(who: Principal, body: bytes) -> tuple[int, object]:
        data = decode(body, RefundIn)
        lines = [(li.sku, li.quantity) for li in data.lines]
        refund = await platform.payments.refunds.request(
            who, order_id, data.amount, lines, data.reason
        )
        return 202, refund_out(refund)

    return await request.app[IDEMPOTENCY].handle(request, principal(request), effect)


@routes.get("/v1/orders/{order_id}/refunds")
@routed(by_order)
@operation(
    "Read an order's refunds (pending, succeeded or failed); a merchant those touching its"
    " lines, at its share",
    200,
    RefundList,
    errors=(401, 404, 422, 503),
    params=(ORDER_ID,),
)
async def list_refunds(request: web.Request) -> web.Response:
    who = principal(request)
    order_id = ORDER_ID.get(request)
    platform = request.app[PLATFORM]
    refunds = await platform.payments.read_refunds(who, order_id)
    if merchant_of(who) is not None:  # those touching its lines, at its share
        order = await platform.orders.get(who, order_id)
        refunds = platform.views.refunds(who, order, refunds)
    return json_response(RefundList([refund_out(r) for r in refunds]))


@routes.post("/v1/webhooks/payments/{provider}")
@routed(by_payment_event)
@operation(
    "A payment provider's signed event (header Provider-Signature: t=<unix>,v1=<hex"
    " HMAC-SHA256 of 't.body'>); the raw body is verified before it is read",
    200,
    WebhookAck,
    None,
    (400, 404, 409, 503),
    (PROVIDER,),
    auth=False,
)
async def payment_webhook(request: web.Request) -> web.Response:
    body = await request.read()
    provider = PROVIDER.get(request)
    duplicate, event = await request.app[PLATFORM].payments.handle_webhook(
        provider, body, dict(request.headers)
    )
    return json_response(WebhookAck(True, duplicate, event))
