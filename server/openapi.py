"""The OpenAPI 3 document, generated from the msgspec types the handlers really use."""

from dataclasses import dataclass, field
from typing import Any

import msgspec

from pyorder.returns.model import ReturnStatus
from server import schemas as s


@dataclass(frozen=True)
class Op:
    method: str
    path: str
    summary: str
    ok: int
    response: type | None
    body: type | None = None
    errors: tuple[int, ...] = ()
    params: tuple[tuple[str, str, str], ...] = ()
    """(name, in, schema type) for path and query parameters."""
    auth: bool = True
    idempotent_key: bool = False
    extra: dict[str, Any] = field(default_factory=dict)
    sheds: bool = False
    """Answers 503 ``overloaded`` with ``Retry-After`` past the admission bound
    (``server.admission``)."""
    text: str = ""
    """The OK response's media type when it is text, not JSON."""


_AUTH_ERRORS = (401, 403)
_BODY_ERRORS = (400, 413, 422)
_ID = ("integer", 0, 2**31 - 1)

OPERATIONS: tuple[Op, ...] = (
    Op(
        "post",
        "/v1/warehouses",
        "Create a warehouse (merchant, admin)",
        201,
        s.WarehouseOut,
        s.WarehouseIn,
        _AUTH_ERRORS + _BODY_ERRORS + (409,),
        idempotent_key=True,
    ),
    Op(
        "get",
        "/v1/warehouses",
        "List warehouses (merchant: its own and the platform's; admin: all)",
        200,
        s.WarehouseList,
        errors=_AUTH_ERRORS,
    ),
    Op(
        "get",
        "/v1/warehouses/{warehouse_id}",
        "Read a warehouse (merchant: its own or the platform's, another merchant's is 404)",
        200,
        s.WarehouseOut,
        errors=(*_AUTH_ERRORS, 404, 422),
        params=(("warehouse_id", "path", "id"),),
    ),
    Op(
        "put",
        "/v1/regions/{region}",
        "Set the warehouses serving a region, nearest first (admin)",
        200,
        s.RegionOut,
        s.RegionIn,
        _AUTH_ERRORS + _BODY_ERRORS + (409,),
        params=(("region", "path", "region"),),
        idempotent_key=True,
    ),
    Op(
        "get",
        "/v1/regions/{region}",
        "Read the warehouses serving a region",
        200,
        s.RegionOut,
        errors=(401, 404),
        params=(("region", "path", "region"),),
    ),
    Op(
        "post",
        "/v1/skus",
        "Create a SKU with stock per warehouse (merchant, admin)",
        201,
        s.SkuOut,
        s.SkuIn,
        _AUTH_ERRORS + _BODY_ERRORS + (409,),
        idempotent_key=True,
    ),
    Op(
        "get",
        "/v1/skus",
        "List SKUs (merchants: their own)",
        200,
        s.SkuList,
        errors=(401, 422),
        params=(("after", "query", "id"), ("limit", "query", "limit500")),
    ),
    Op(
        "get",
        "/v1/skus/{sku_id}",
        "Read a SKU with its stock",
        200,
        s.SkuOut,
        errors=(401, 404, 422),
        params=(("sku_id", "path", "id"),),
    ),
    Op(
        "post",
        "/v1/skus/{sku_id}/stock",
        "Restock or adjust a SKU in a warehouse (owner)",
        200,
        s.SkuOut,
        s.StockAdjustIn,
        (*_AUTH_ERRORS, *_BODY_ERRORS, 404, 409),
        params=(("sku_id", "path", "id"),),
        idempotent_key=True,
    ),
    Op(
        "post",
        "/v1/orders",
        "Place an order (buyer)",
        201,
        s.OrderOut,
        s.OrderIn,
        (*_AUTH_ERRORS, *_BODY_ERRORS, 409, 503),
        idempotent_key=True,
        sheds=True,
    ),
    Op(
        "post",
        "/v1/orders/batch",
        f"Place up to {s.MAX_BATCH_ORDERS} orders at once (buyer); one result per order",
        200,
        s.OrderBatchOut,
        s.OrderBatchIn,
        (*_AUTH_ERRORS, *_BODY_ERRORS, 409, 503),
        idempotent_key=True,
        sheds=True,
    ),
    Op(
        "get",
        "/v1/orders",
        "List the caller's orders, newest first: a buyer's own, those holding a merchant's"
        " lines (each cut to its part, see OrderOut), all for an admin",
        200,
        s.OrderList,
        errors=(401, 422),
        params=(("before", "query", "order_id"), ("limit", "query", "limit200")),
    ),
    Op(
        "get",
        "/v1/orders/{order_id}",
        "Read an order (its buyer, admin; a merchant of its lines sees its part: its own lines"
        " and their total, the buyer pseudonymised, the address coarse; see OrderOut)",
        200,
        s.OrderOut,
        errors=(401, 404, 422),
        params=(("order_id", "path", "order_id"),),
    ),
    Op(
        "post",
        "/v1/orders/{order_id}/cancel",
        "Cancel an unpaid order (its units return), or a paid one not shipped (its units"
        " return and its charge is refunded in full)",
        200,
        s.OrderOut,
        None,
        (*_AUTH_ERRORS, 404, 409, 422, 503),
        params=(("order_id", "path", "order_id"),),
        idempotent_key=True,
    ),
    Op(
        "post",
        "/v1/orders/{order_id}/payments",
        "Start paying one's own order awaiting payment with a method (buyer); 202, then the"
        " provider is called, and the order becomes paid when the charge is confirmed",
        202,
        s.PaymentOut,
        s.PaymentIn,
        (*_AUTH_ERRORS, *_BODY_ERRORS, 404, 409, 503),
        params=(("order_id", "path", "order_id"),),
        idempotent_key=True,
    ),
    Op(
        "get",
        "/v1/orders/{order_id}/payment",
        "Read an order's payment: status, authorised/charged/refunded amounts, attempts (an"
        " attempt in requires_action carries the provider's next_action for the buyer). A"
        " merchant sees its share of the amounts and no attempts (see PaymentOut)",
        200,
        s.PaymentOut,
        errors=(401, 404, 422, 503),
        params=(("order_id", "path", "order_id"),),
    ),
    Op(
        "post",
        "/v1/orders/{order_id}/refunds",
        "Refund part or all of a paid order's charge by amount or by lines (the merchant of the"
        " lines, admin); 202, then the provider is called; 422 refund_exceeds_charge past what"
        " is left of the charge",
        202,
        s.RefundOut,
        s.RefundIn,
        (*_AUTH_ERRORS, *_BODY_ERRORS, 404, 409, 503),
        params=(("order_id", "path", "order_id"),),
        idempotent_key=True,
    ),
    Op(
        "get",
        "/v1/orders/{order_id}/refunds",
        "Read an order's refunds (pending, succeeded or failed); a merchant those touching its"
        " lines, at its share",
        200,
        s.RefundList,
        errors=(401, 404, 422, 503),
        params=(("order_id", "path", "order_id"),),
    ),
    Op(
        "post",
        "/v1/webhooks/payments/{provider}",
        "A payment provider's signed event (header Provider-Signature: t=<unix>,v1=<hex"
        " HMAC-SHA256 of 't.body'>); the raw body is verified before it is read",
        200,
        s.WebhookAck,
        None,
        (400, 404, 409, 503),
        params=(("provider", "path", "provider"),),
        auth=False,
    ),
    Op(
        "post",
        "/v1/orders/{order_id}/shipments",
        "Ship a paid order (the merchant of its lines, admin): one parcel per serving warehouse"
        " not shipped yet (or only the parcel of `warehouse`); 202, then the carrier is called",
        202,
        s.ShipmentsOut,
        s.ShipIn,
        (*_AUTH_ERRORS, *_BODY_ERRORS, 404, 409, 503),
        params=(("order_id", "path", "order_id"),),
        idempotent_key=True,
    ),
    Op(
        "get",
        "/v1/orders/{order_id}/shipments",
        "Read an order's tracking: fulfilment status, delivery window, parcels and their"
        " tracking events, fulfilment time; a merchant the parcels holding its lines",
        200,
        s.ShipmentsOut,
        errors=(401, 404, 422, 503),
        params=(("order_id", "path", "order_id"),),
    ),
    Op(
        "post",
        "/v1/orders/{order_id}/delivery-window",
        "Pick a delivery window of the order's region for one's own order before it ships"
        " (buyer); 409 window_full when it has no room left",
        200,
        s.ShipmentsOut,
        s.WindowPickIn,
        (*_AUTH_ERRORS, *_BODY_ERRORS, 404, 409, 503),
        params=(("order_id", "path", "order_id"),),
        idempotent_key=True,
    ),
    Op(
        "post",
        "/v1/regions/{region}/delivery-windows",
        "Open a delivery window (UTC start and end) with a capacity in a region (admin)",
        201,
        s.DeliveryWindowOut,
        s.DeliveryWindowIn,
        (*_AUTH_ERRORS, *_BODY_ERRORS, 404, 409, 503),
        params=(("region", "path", "region"),),
        idempotent_key=True,
    ),
    Op(
        "get",
        "/v1/regions/{region}/delivery-windows",
        "A region's delivery windows that have not ended, with their remaining capacity",
        200,
        s.DeliveryWindowList,
        errors=(401, 404, 422),
        params=(("region", "path", "region"),),
    ),
    Op(
        "post",
        "/v1/webhooks/carriers/{carrier}",
        "A carrier's signed tracking event (header Provider-Signature: t=<unix>,v1=<hex"
        " HMAC-SHA256 of 't.body'>); the raw body is verified before it is read",
        200,
        s.WebhookAck,
        None,
        (400, 404, 409, 503),
        params=(("carrier", "path", "provider"),),
        auth=False,
    ),
    Op(
        "post",
        "/v1/orders/{order_id}/returns",
        "Open a 7-day no-reason return (the order's buyer) of delivered units: 201 with one"
        " return per parcel and merchant they came from, each with its parcel back booked with"
        " the carrier (first weight borne by the platform) and its lightning decision. 409"
        " return_window_closed / not_delivered / invalid_state, 422 category_not_returnable /"
        " return_exceeds_purchase",
        201,
        s.ReturnList,
        s.ReturnIn,
        (*_AUTH_ERRORS, *_BODY_ERRORS, 404, 409, 503),
        params=(("order_id", "path", "order_id"),),
        idempotent_key=True,
    ),
    Op(
        "get",
        "/v1/orders/{order_id}/returns",
        "An order's returns (its buyer, the merchant of the returned lines, admin)",
        200,
        s.ReturnList,
        errors=(401, 404, 422, 503),
        params=(("order_id", "path", "order_id"),),
    ),
    Op(
        "get",
        "/v1/returns",
        "The caller's returns by id: a buyer's own, a merchant's (the review queue with"
        " status=in_review), all for an admin",
        200,
        s.ReturnList,
        errors=(401, 422, 503),
        params=(
            ("status", "query", "return_status"),
            ("after", "query", "return_id"),
            ("limit", "query", "limit500"),
        ),
    ),
    Op(
        "get",
        "/v1/returns/{return_id}",
        "Read a return: its lines, parcel back and tracking, decisions with every rule, refund",
        200,
        s.ReturnOut,
        errors=(401, 404, 422, 503),
        params=(("return_id", "path", "return_id"),),
    ),
    Op(
        "post",
        "/v1/returns/{return_id}/approve",
        "Approve a return in review (its merchant, admin): the refund is issued",
        200,
        s.ReturnOut,
        None,
        (*_AUTH_ERRORS, 404, 409, 422, 503),
        params=(("return_id", "path", "return_id"),),
        idempotent_key=True,
    ),
    Op(
        "post",
        "/v1/returns/{return_id}/reject",
        "Reject a return in review (its merchant, admin) with a reason: no refund",
        200,
        s.ReturnOut,
        s.ReturnRejectIn,
        (*_AUTH_ERRORS, *_BODY_ERRORS, 404, 409, 503),
        params=(("return_id", "path", "return_id"),),
        idempotent_key=True,
    ),
    Op(
        "post",
        "/v1/webhook-endpoints",
        "Register a webhook endpoint of one's own (merchant) for events of the orders holding"
        " one's SKUs, of the types in `events` (default: all), each showing the merchant's part"
        " of the order as the API does; 201 with its signing secret, shown"
        " in this answer only. Events are POSTed signed (header Pyorder-Signature: t=<unix>,"
        "v1=<hex HMAC-SHA256 of 't.body'>), retried with backoff; see docs/webhooks.md. 409"
        " too_many_endpoints past 16, 422 invalid_url / unknown_event_type",
        201,
        s.WebhookEndpointCreatedOut,
        s.WebhookEndpointIn,
        (*_AUTH_ERRORS, *_BODY_ERRORS, 409, 503),
        idempotent_key=True,
    ),
    Op(
        "get",
        "/v1/webhook-endpoints",
        "List webhook endpoints, oldest first: a merchant's own, everyone's for an admin",
        200,
        s.WebhookEndpointList,
        errors=_AUTH_ERRORS,
    ),
    Op(
        "get",
        "/v1/webhook-endpoints/{endpoint_id}",
        "Read a webhook endpoint (its merchant, admin); its secret is not shown",
        200,
        s.WebhookEndpointOut,
        errors=(*_AUTH_ERRORS, 404, 422),
        params=(("endpoint_id", "path", "id"),),
    ),
    Op(
        "delete",
        "/v1/webhook-endpoints/{endpoint_id}",
        "Delete a webhook endpoint (its merchant, admin): it receives nothing more, and its"
        " events not delivered yet are cancelled",
        200,
        s.WebhookEndpointOut,
        None,
        (*_AUTH_ERRORS, 404, 409, 422, 503),
        params=(("endpoint_id", "path", "id"),),
        idempotent_key=True,
    ),
    Op(
        "post",
        "/v1/webhook-endpoints/{endpoint_id}/rotate-secret",
        "Give a webhook endpoint a new signing secret (its merchant, admin); 200 with it, shown"
        " in this answer only. Every attempt from then on, retries included, is signed with it",
        200,
        s.WebhookEndpointCreatedOut,
        None,
        (*_AUTH_ERRORS, 404, 409, 422, 503),
        params=(("endpoint_id", "path", "id"),),
        idempotent_key=True,
    ),
    Op(
        "post",
        "/v1/webhook-endpoints/{endpoint_id}/deliveries/{event_id}/retry",
        "Send a failed event (evt_<n> or <n>) again (its merchant, admin): pending, due now,"
        " with a fresh budget of attempts (attempts counts from 0 again; last_status and"
        " last_error stay until the next attempt). 409 invalid_state unless it is failed",
        200,
        s.DeliveryOut,
        None,
        (*_AUTH_ERRORS, 404, 409, 422, 503),
        params=(("endpoint_id", "path", "id"), ("event_id", "path", "event_ref")),
        idempotent_key=True,
    ),
    Op(
        "get",
        "/v1/webhook-endpoints/{endpoint_id}/deliveries",
        "A webhook endpoint's events and their delivery (state, attempts, last status and"
        " error), newest first; `before` (next_cursor) pages back",
        200,
        s.DeliveryList,
        errors=(*_AUTH_ERRORS, 404, 422, 503),
        params=(
            ("endpoint_id", "path", "id"),
            ("before", "query", "event_id"),
            ("limit", "query", "limit200"),
        ),
    ),
    Op("get", "/healthz", "Liveness", 200, s.HealthOut, auth=False),
    Op(
        "get",
        "/metrics",
        "Prometheus metrics (admin, or 'Bearer <--metrics-token>'; docs/server.md)",
        200,
        None,
        errors=_AUTH_ERRORS,
        text="text/plain",
    ),
    Op(
        "get",
        "/readyz",
        "Readiness: the store is open and the core rebuilt",
        200,
        s.HealthOut,
        errors=(503,),
        auth=False,
    ),
)

_PARAM_SCHEMAS: dict[str, dict[str, Any]] = {
    "id": {"type": "integer", "minimum": 0, "maximum": 2**31 - 1},
    "order_id": {"type": "integer", "minimum": 0, "maximum": 2**63 - 1},
    "limit500": {"type": "integer", "minimum": 1, "maximum": 500},
    "limit200": {"type": "integer", "minimum": 1, "maximum": 200},
    "region": {"type": "string", "pattern": "^[A-Za-z0-9_.:-]{1,64}$"},
    "provider": {"type": "string", "pattern": "^[A-Za-z0-9_.-]{1,64}$"},
    "return_id": {"type": "integer", "minimum": 0, "maximum": 2**63 - 1},
    "return_status": {"type": "string", "enum": [x.value for x in ReturnStatus]},
    "event_id": {"type": "integer", "minimum": 1, "maximum": 2**63 - 1},
    "event_ref": {"type": "string", "pattern": "^(evt_)?[0-9]{1,19}$"},
}


def document() -> dict[str, Any]:
    types = {t for op in OPERATIONS for t in (op.response, op.body) if t is not None}
    types.add(s.ErrorOut)
    refs, components = msgspec.json.schema_components(
        sorted(types, key=lambda t: t.__name__), ref_template="#/components/schemas/{name}"
    )
    ref = dict(zip(sorted(types, key=lambda t: t.__name__), refs, strict=True))
    error = {"content": {"application/json": {"schema": ref[s.ErrorOut]}}}
    paths: dict[str, dict[str, Any]] = {}
    for op in OPERATIONS:
        content: dict[str, Any] = {}
        if op.text:
            content = {op.text: {"schema": {"type": "string"}}}
        elif op.response:
            content = {"application/json": {"schema": ref[op.response]}}
        responses: dict[str, Any] = {str(op.ok): {"description": "OK", "content": content}}
        for status in op.errors:
            responses[str(status)] = {"description": "error", **error}
        if op.sheds:
            responses["503"] = {
                "description": "overloaded (error code 'overloaded': retry after Retry-After"
                " seconds) or the write path is unavailable (code 'unavailable')",
                "headers": {
                    "Retry-After": {
                        "description": "seconds to wait before retrying (when overloaded)",
                        "schema": {"type": "integer", "minimum": 0},
                    }
                },
                **error,
            }
        item: dict[str, Any] = {"summary": op.summary, "responses": responses}
        params = [
            {"name": n, "in": where, "required": where == "path", "schema": _PARAM_SCHEMAS[kind]}
            for n, where, kind in op.params
        ]
        if op.idempotent_key:
            params.append(
                {
                    "name": "Idempotency-Key",
                    "in": "header",
                    "required": False,
                    "schema": {"type": "string", "minLength": 1, "maxLength": 255},
                }
            )
        if params:
            item["parameters"] = params
        if op.body is not None:
            item["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": ref[op.body]}},
            }
        if op.auth:
            item["security"] = [{"bearer": []}]
        paths.setdefault(op.path, {})[op.method] = item
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "pyorder",
            "version": "1",
            "description": "Order intake: catalogue, durable orders with group commit, "
            "idempotent POSTs (Idempotency-Key). Money in integer minor units; times UTC.",
        },
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
            },
        },
    }
