"""HTTP routes of the review queue, of orders' risk decisions and of their fraud reports
(docs/risk.md, "Review queue", "Fraud reports"): an admin reviews any order risk control held
(``in_review``), a merchant those it reviews (the decision's merchant: that of the order's
first line), another merchant's being 404; buyers nothing (403), so that a decision's reasons
never reach the buyer. Fraud reports likewise: an admin any order, the decision's merchant its
own. A review or a report is answered once it is durable; in cluster mode a review runs on the
order's node (its core holds the order), a report and the reads on any node (of what
committed)."""

from aiohttp import web

from pyorder.auth import Principal, Role
from pyorder.server.api.reviews_bodies import (
    FraudReportIn,
    FraudReportOut,
    ReviewIn,
    ReviewList,
    ReviewOut,
    RiskDecisionOut,
    decision_out,
    fraud_report_out,
    review_out,
)
from pyorder.server.forwarding import by_order, routed
from pyorder.server.keys import IDEMPOTENCY, PLATFORM
from pyorder.server.operations import AUTH_ERRORS, BODY_ERRORS, operation
from pyorder.server.params import LIMIT_200, MAX_ORDER_ID, ORDER_ID, IntParam
from pyorder.server.requests import decode, json_response, principal

routes = web.RouteTableDef()
REVIEW_BEFORE = IntParam("before", "query", 1, MAX_ORDER_ID)


@routes.get("/v1/risk/reviews")
@operation(
    "The open review queue, newest first: the orders held for review (in_review) and their"
    " decisions; every one for an admin, those a merchant reviews (its part of each order)."
    " `before` (next_cursor) pages back",
    200,
    ReviewList,
    errors=(*AUTH_ERRORS, 422, 503),
    params=(REVIEW_BEFORE, LIMIT_200),
)
async def list_reviews(request: web.Request) -> web.Response:
    who = principal(request)
    before = REVIEW_BEFORE.optional(request)
    limit = LIMIT_200.get(request)
    platform = request.app[PLATFORM]
    found = await platform.reviews.queue(who, before, limit)
    orders = await platform.store.get_orders([d.id for d in found])
    # An order the queue listed and then dropped from the store is impossible (orders are
    # never deleted); one that left review since is still shown, as of its order now.
    held = [(orders[d.id], d) for d in found if d.id in orders]
    seen = platform.views.orders(who, [o for o, _ in held])
    cursor = str(found[-1].id) if len(found) == limit else None
    admin = who.role is Role.ADMIN
    reviews = [review_out(o, d, admin) for o, (_, d) in zip(seen, held, strict=True)]
    return json_response(ReviewList(reviews, cursor))


@routes.post("/v1/risk/reviews/{order_id}")
@routed(by_order)
@operation(
    "Review an order held for review (an admin, or the merchant that reviews it): approve"
    " (it awaits payment from now, with a new payment deadline) or reject (it is cancelled,"
    " its units released). 409 invalid_state when it is not in review (reviewed already,"
    " cancelled, expired)",
    200,
    ReviewOut,
    ReviewIn,
    (*AUTH_ERRORS, *BODY_ERRORS, 404, 409, 503),
    (ORDER_ID,),
    idempotent_key=True,
)
async def review(request: web.Request) -> web.Response:
    platform = request.app[PLATFORM]
    order_id = ORDER_ID.get(request)

    async def effect(who: Principal, body: bytes) -> tuple[int, object]:
        data = decode(body, ReviewIn)
        orders = platform.orders
        decide = orders.approve if data.outcome == "approve" else orders.reject
        order, decision = await decide(who, order_id)
        return 200, review_out(platform.views.order(who, order), decision, who.role is Role.ADMIN)

    return await request.app[IDEMPOTENCY].handle(request, principal(request), effect)


@routes.get("/v1/orders/{order_id}/risk")
@operation(
    "The risk decision of an order (its score, model, rules fired, top reasons) and its review:"
    " for an admin, or the merchant that reviews it; never the buyer (403)",
    200,
    RiskDecisionOut,
    errors=(*AUTH_ERRORS, 404, 422, 503),
    params=(ORDER_ID,),
)
async def get_decision(request: web.Request) -> web.Response:
    who = principal(request)
    found = await request.app[PLATFORM].reviews.decision(who, ORDER_ID.get(request))
    return json_response(decision_out(found, who.role is Role.ADMIN))


@routes.post("/v1/orders/{order_id}/fraud-report")
@operation(
    "Report an order as fraudulent (an admin, or the merchant of its first line, whose risk"
    " decision it was): a chargeback or the"
    " merchant's own finding, kept as a training label for risk control (docs/risk.md, \"Fraud"
    ' reports"). 201 with the report; 200 with the first report when the order has one already',
    201,
    FraudReportOut,
    FraudReportIn,
    (*AUTH_ERRORS, *BODY_ERRORS, 404, 409, 503),
    (ORDER_ID,),
    idempotent_key=True,
    also_ok=(200,),
)
async def report_fraud(request: web.Request) -> web.Response:
    platform = request.app[PLATFORM]
    order_id = ORDER_ID.get(request)

    async def effect(who: Principal, body: bytes) -> tuple[int, object]:
        data = decode(body, FraudReportIn)
        report, made = await platform.fraud.report(who, order_id, data.source, data.note)
        return (201 if made else 200), fraud_report_out(report)

    return await request.app[IDEMPOTENCY].handle(request, principal(request), effect)


@routes.get("/v1/orders/{order_id}/fraud-report")
@operation(
    "The fraud report of an order: for an admin, or the merchant of its first line; 404 when it"
    " has none",
    200,
    FraudReportOut,
    errors=(*AUTH_ERRORS, 404, 422, 503),
    params=(ORDER_ID,),
)
async def get_fraud_report(request: web.Request) -> web.Response:
    found = await request.app[PLATFORM].fraud.get(principal(request), ORDER_ID.get(request))
    return json_response(fraud_report_out(found))
