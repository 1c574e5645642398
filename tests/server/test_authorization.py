"""Authorization: every endpoint x every kind of caller, against the real server.

The policy is the table ``POLICY`` below: one row per endpoint (on a fixed object where it
takes one), one column per caller, the HTTP status that caller gets. Read it as the spec:
buyers see only their own orders (others' are 404), merchants only their own SKUs and
warehouses (others' are 404; the platform's warehouses too) and the orders that contain their
SKUs, each cut to the merchant's part (the marketplace model, ``docs/marketplace.md``: its own
lines and their total, the buyer pseudonymised, no street address; its share of the payment and
refunds, its parcels; checked below the table), admins everything; regions are ordered by
admins only; webhook endpoints are registered by merchants, each seeing only its own (others'
are 404, buyers none), admins all; orders' risk decisions and the review queue are for admins
and the merchant a decision is of (others' are 404), never buyers (403); fraud reports are made
and read by admins and the merchant an order's decision is of (others' are 404), never buyers;
without a valid token (none, expired, garbage, or signed with another key) every
endpoint but the four public ones (and the providers' and carriers' signed webhooks) is 401.
"""

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from pyorder.auth import Role, TokenIssuer
from tests.server.e2e_lib import Server, Shop, address, order_body, unique
from tests.server.review_lib import decision, record_decisions

CALLERS = (
    "buyer A",
    "buyer B",
    "merchant X",
    "merchant Y",
    "admin",
    "no token",
    "expired",
    "garbage",
    "forged",
)
"""``expired`` is an admin token past its ``exp``; ``forged`` claims admin but is signed with
another secret; ``garbage`` is not a JWT at all."""

ANON = (401, 401, 401, 401)
"""The last four columns for every authenticated endpoint."""

# fmt: off
POLICY: dict[str, tuple[int, ...]] = {
    #                                              A    B    X    Y    admin  none, expired, garbage, forged
    "POST /v1/warehouses":                        (403, 403, 201, 201, 201, *ANON),
    "GET /v1/warehouses":                         (403, 403, 200, 200, 200, *ANON),
    "GET /v1/warehouses/{X's}":                   (403, 403, 200, 404, 200, *ANON),
    "GET /v1/warehouses/{platform's}":            (403, 403, 200, 200, 200, *ANON),
    "PUT /v1/regions/{code}":                     (403, 403, 403, 403, 200, *ANON),
    "GET /v1/regions/{code}":                     (200, 200, 200, 200, 200, *ANON),
    "POST /v1/skus":                              (403, 403, 201, 201, 201, *ANON),
    "GET /v1/skus":                               (200, 200, 200, 200, 200, *ANON),
    "GET /v1/skus/{X's}":                         (200, 200, 200, 404, 200, *ANON),
    "POST /v1/skus/{X's}/stock":                  (403, 403, 200, 404, 200, *ANON),
    "POST /v1/orders":                            (201, 201, 403, 403, 403, *ANON),
    "POST /v1/orders/batch":                      (200, 200, 403, 403, 403, *ANON),
    "GET /v1/orders":                             (200, 200, 200, 200, 200, *ANON),
    "GET /v1/orders/{A's, X's SKU}":              (200, 404, 200, 404, 200, *ANON),
    "GET /v1/orders/{B's, Y's SKU}":              (404, 200, 404, 200, 200, *ANON),
    "GET /v1/orders/{A's, X's and Y's SKUs}":     (200, 404, 200, 200, 200, *ANON),
    # A mixed order of X's and Z's lines: Y, with no line in it, sees none of it.
    "GET /v1/orders/{A's, X's and Z's SKUs}":     (200, 404, 200, 404, 200, *ANON),
    "GET /v1/orders/{A's, X's and Z's SKUs}/payment":   (200, 404, 200, 404, 200, *ANON),
    "GET /v1/orders/{A's, X's and Z's SKUs}/refunds":   (200, 404, 200, 404, 200, *ANON),
    "GET /v1/orders/{A's, X's and Z's SKUs}/shipments": (200, 404, 200, 404, 200, *ANON),
    "GET /v1/orders/{A's, X's and Z's SKUs}/returns":   (200, 404, 200, 404, 200, *ANON),
    "POST /v1/orders/{A's, X's SKU}/cancel":      (200, 404, 403, 403, 200, *ANON),
    "POST /v1/orders/{B's, Y's SKU}/cancel":      (404, 200, 403, 403, 200, *ANON),
    # This server has no payment provider: the owner gets past authorization to a 422.
    "POST /v1/orders/{A's, X's SKU}/payments":    (422, 404, 403, 403, 403, *ANON),
    "GET /v1/orders/{A's, X's SKU}/payment":      (200, 404, 200, 404, 200, *ANON),
    # The order is not paid: who may refund it gets past authorization to a 409.
    "POST /v1/orders/{A's, X's SKU}/refunds":     (403, 403, 409, 404, 409, *ANON),
    "GET /v1/orders/{A's, X's SKU}/refunds":      (200, 404, 200, 404, 200, *ANON),
    # This server has no carrier: who may ship gets past authorization to a 422.
    "POST /v1/orders/{A's, X's SKU}/shipments":   (403, 403, 422, 404, 422, *ANON),
    "GET /v1/orders/{A's, X's SKU}/shipments":    (200, 404, 200, 404, 200, *ANON),
    "POST /v1/orders/{A's, X's SKU}/delivery-window": (200, 404, 403, 403, 403, *ANON),
    "POST /v1/regions/{code}/delivery-windows":   (403, 403, 403, 403, 201, *ANON),
    # The order is not paid (nor delivered): its buyer gets past authorization to a 409.
    "POST /v1/orders/{A's, X's SKU}/returns":     (409, 404, 403, 403, 403, *ANON),
    "GET /v1/orders/{A's, X's SKU}/returns":      (200, 404, 200, 404, 200, *ANON),
    "GET /v1/returns":                            (200, 200, 200, 200, 200, *ANON),
    "GET /v1/returns?status=in_review":           (200, 200, 200, 200, 200, *ANON),
    # No return exists here (no carrier, no payments); tests/returns checks who sees one.
    "GET /v1/returns/{missing}":                  (404, 404, 404, 404, 404, *ANON),
    "POST /v1/returns/{missing}/approve":         (403, 403, 404, 404, 404, *ANON),
    "POST /v1/returns/{missing}/reject":          (403, 403, 404, 404, 404, *ANON),
    "GET /v1/regions/{code}/delivery-windows":    (200, 200, 200, 200, 200, *ANON),
    "POST /v1/webhook-endpoints":                 (403, 403, 201, 201, 403, *ANON),
    "GET /v1/webhook-endpoints":                  (403, 403, 200, 200, 200, *ANON),
    "GET /v1/webhook-endpoints/{X's}":            (403, 403, 200, 404, 200, *ANON),
    "DELETE /v1/webhook-endpoints/{X's}":         (403, 403, 200, 404, 200, *ANON),
    "GET /v1/webhook-endpoints/{X's}/deliveries": (403, 403, 200, 404, 200, *ANON),
    "POST /v1/webhook-endpoints/{X's}/rotate-secret": (403, 403, 200, 404, 200, *ANON),
    # No event is ever owed to it: who may resend gets past authorization to a 404.
    "POST /v1/webhook-endpoints/{X's}/deliveries/{missing}/retry": (403, 403, 404, 404, 404, *ANON),
    # Risk rules: merchants their own (another's are 404), admins the platform's and anyone's;
    # lists and thresholds are the platform's, admins only.
    "GET /v1/risk/rules":                         (403, 403, 200, 200, 200, *ANON),
    "POST /v1/risk/rules":                        (403, 403, 201, 201, 201, *ANON),
    "GET /v1/risk/rules/{X's}":                   (403, 403, 200, 404, 200, *ANON),
    "GET /v1/risk/rules/{platform's}":            (403, 403, 404, 404, 200, *ANON),
    "PUT /v1/risk/rules/{X's}":                   (403, 403, 200, 404, 200, *ANON),
    "DELETE /v1/risk/rules/{X's}":                (403, 403, 200, 404, 200, *ANON),
    "GET /v1/risk/lists":                         (403, 403, 403, 403, 200, *ANON),
    "POST /v1/risk/lists":                        (403, 403, 403, 403, 201, *ANON),
    "DELETE /v1/risk/lists/{list}/{kind}/{value}": (403, 403, 403, 403, 200, *ANON),
    "GET /v1/risk/thresholds":                    (403, 403, 403, 403, 200, *ANON),
    "PUT /v1/risk/thresholds":                    (403, 403, 403, 403, 200, *ANON),
    "GET /v1/risk/audit":                         (403, 403, 200, 200, 200, *ANON),
    # The review queue and decisions: admins, and the merchant an order's decision is of (its
    # first line's); another merchant 404, buyers never (403). The order was allowed, not held:
    # who may review it gets past authorization to a 409.
    "GET /v1/risk/reviews":                       (403, 403, 200, 200, 200, *ANON),
    "POST /v1/risk/reviews/{A's, X's SKU}":       (403, 403, 409, 404, 409, *ANON),
    "GET /v1/orders/{A's, X's SKU}/risk":         (403, 403, 200, 404, 200, *ANON),
    "GET /v1/orders/{A's, X's and Y's SKUs}/risk": (403, 403, 200, 404, 200, *ANON),
    # Fraud reports: admins, and merchants of an order's SKUs (another's 404), never buyers.
    # A fresh order for each caller (its first report is 201); the one read was reported.
    "POST /v1/orders/{A's, X's SKU}/fraud-report": (403, 403, 201, 404, 201, *ANON),
    "GET /v1/orders/{A's, X's SKU}/fraud-report":  (403, 403, 200, 404, 200, *ANON),
    # A mixed order's decision, and so its report, is its first line's merchant's (X's).
    "POST /v1/orders/{A's, X's and Y's SKUs}/fraud-report": (403, 403, 201, 404, 201, *ANON),
    "GET /v1/orders/{A's, X's and Y's SKUs}/fraud-report": (403, 403, 200, 404, 200, *ANON),
    # Providers authenticate by signature, not token; this server knows no provider.
    "POST /v1/webhooks/payments/{name}":          (404, 404, 404, 404, 404, 404, 404, 404, 404),
    "POST /v1/webhooks/carriers/{name}":          (404, 404, 404, 404, 404, 404, 404, 404, 404),
    "GET /healthz":                               (200, 200, 200, 200, 200, 200, 200, 200, 200),
    "GET /readyz":                                (200, 200, 200, 200, 200, 200, 200, 200, 200),
    "GET /metrics":                               (403, 403, 403, 403, 200, *ANON),
    "GET /v1/openapi.json":                       (200, 200, 200, 200, 200, 200, 200, 200, 200),
    "GET /docs":                                  (200, 200, 200, 200, 200, 200, 200, 200, 200),
    "GET /docs/{asset}":                          (200, 200, 200, 200, 200, 200, 200, 200, 200),
}
# fmt: on


@dataclass
class Scene:
    """What the matrix acts on: merchants X, Y and Z with a SKU each in the platform's
    warehouse, and orders of buyers A and B (A's mixed orders hold lines of X and Y, and of X
    and Z)."""

    srv: Server
    shop: Shop
    tokens: dict[str, str | None]
    region: str
    platform_wh: int
    x_wh: int
    y_wh: int
    x_sku: int
    y_sku: int
    a_order_x: str
    b_order_y: str
    a_order_xy: str
    z_sku: int = 0
    a_order_xz: str = ""
    window: int = 0
    x_endpoint: int = 0
    x_rule: str = ""
    platform_rule: str = ""

    def endpoint(self) -> int:
        """A fresh webhook endpoint of merchant X's, its id."""
        return _endpoint(self.srv, self.tokens["merchant X"])

    def rule(self, caller: str = "merchant X") -> str:
        """A fresh risk rule of ``caller``'s (merchant X's: its own; an admin's: the
        platform's), its id."""
        token = self.tokens[caller]
        return str(self.srv.ok("POST", "/v1/risk/rules", token=token, json=_RULE, expect=201)["id"])

    def listed(self) -> str:
        """A fresh value on the platform's block list of IPs, its path."""
        value = unique("ip")
        body = {"list": "block", "kind": "ip", "value": value}
        self.srv.ok("POST", "/v1/risk/lists", token=self.tokens["admin"], json=body, expect=201)
        return f"/v1/risk/lists/block/ip/{value}"

    def order(self, caller: str, lines: list[tuple[int, int]]) -> str:
        """A fresh order of ``caller`` (a buyer), its id."""
        token = self.tokens[caller]
        assert token is not None
        resp = self.shop.order(token, lines, self.region)
        assert resp.status == 201, resp
        return str(resp.json()["id"])


def _tokens(srv: Server) -> dict[str, str | None]:
    return {
        "buyer A": srv.token("buyer", "A"),
        "buyer B": srv.token("buyer", "B"),
        "merchant X": srv.token("merchant", "X"),
        "merchant Y": srv.token("merchant", "Y"),
        "admin": srv.token("admin", "root"),
        "no token": None,
        "expired": srv.token("admin", "root", ttl_s=-120),
        "garbage": "not-a-jwt",
        "forged": TokenIssuer("f" * 48).mint(Role.ADMIN, "root"),
    }


@pytest.fixture(scope="module")
def scene(server: Server) -> Scene:
    tokens = _tokens(server)
    shop = Shop(server)
    x, y = tokens["merchant X"], tokens["merchant Y"]
    platform_wh = shop.warehouse("platform")
    x_wh = shop.warehouse("x-own", token=x)
    y_wh = shop.warehouse("y-own", token=y)
    region = unique("authz")
    shop.region(region, [platform_wh])
    x_sku = shop.sku({platform_wh: 100_000}, token=x)
    y_sku = shop.sku({platform_wh: 100_000}, token=y)
    s = Scene(server, shop, tokens, region, platform_wh, x_wh, y_wh, x_sku, y_sku, "", "", "")
    s.a_order_x = s.order("buyer A", [(x_sku, 1)])
    s.b_order_y = s.order("buyer B", [(y_sku, 1)])
    s.a_order_xy = s.order("buyer A", [(x_sku, 1), (y_sku, 1)])
    s.z_sku = shop.sku({platform_wh: 100_000}, token=server.token("merchant", "Z"))
    s.a_order_xz = s.order("buyer A", [(x_sku, 2), (s.z_sku, 1)])
    s.window = int(
        server.ok(
            "POST",
            f"/v1/regions/{region}/delivery-windows",
            token=tokens["admin"],
            json=_WINDOW,
            expect=201,
        )["id"]
    )
    # Risk control is off on this server: the decisions it would have stored (allowed).
    record_decisions(
        server, [decision(o, "merchant:X", "allow") for o in (s.a_order_x, s.a_order_xy)]
    )
    for reported in (s.a_order_x, s.a_order_xy):
        server.ok(
            "POST",
            f"/v1/orders/{reported}/fraud-report",
            token=tokens["admin"],
            json={"source": "merchant_report"},
            expect=201,
        )
    s.x_endpoint = s.endpoint()
    s.x_rule = s.rule()
    s.platform_rule = s.rule("admin")
    return s


_WINDOW = {"start": "2099-01-01T08:00:00Z", "end": "2099-01-01T10:00:00+00:00", "capacity": 1000}
_HOOK = {"url": "http://127.0.0.1:9/hooks", "events": ["order.refunded"]}
"""A webhook endpoint subscribed to what never happens here (no payments): nothing is sent."""
_RULE = {"action": "review", "condition": "device_buyers_24h >= 50", "description": "farms"}


def _endpoint(srv: Server, token: str | None) -> int:
    out = srv.ok("POST", "/v1/webhook-endpoints", token=token, json=_HOOK, expect=201)
    return int(out["id"])


Request = tuple[str, str, Any]
"""(method, path, JSON body or None)."""

REQUESTS: dict[str, Callable[[Scene, str], Request]] = {
    "POST /v1/warehouses": lambda s, c: ("POST", "/v1/warehouses", {"name": unique("w")}),
    "GET /v1/warehouses": lambda s, c: ("GET", "/v1/warehouses", None),
    "GET /v1/warehouses/{X's}": lambda s, c: ("GET", f"/v1/warehouses/{s.x_wh}", None),
    "GET /v1/warehouses/{platform's}": lambda s, c: (
        "GET",
        f"/v1/warehouses/{s.platform_wh}",
        None,
    ),
    "PUT /v1/regions/{code}": lambda s, c: (
        "PUT",
        f"/v1/regions/{unique('m')}",
        {"warehouses": [s.platform_wh]},
    ),
    "GET /v1/regions/{code}": lambda s, c: ("GET", f"/v1/regions/{s.region}", None),
    "POST /v1/skus": lambda s, c: (
        "POST",
        "/v1/skus",
        {
            "title": "t",
            "price": 1,
            "currency": "CNY",
            "stock": [{"warehouse": s.platform_wh, "units": 1}],
        },
    ),
    "GET /v1/skus": lambda s, c: ("GET", "/v1/skus", None),
    "GET /v1/skus/{X's}": lambda s, c: ("GET", f"/v1/skus/{s.x_sku}", None),
    "POST /v1/skus/{X's}/stock": lambda s, c: (
        "POST",
        f"/v1/skus/{s.x_sku}/stock",
        {"warehouse": s.platform_wh, "delta": 1},
    ),
    "POST /v1/orders": lambda s, c: ("POST", "/v1/orders", order_body([(s.x_sku, 1)], s.region)),
    "POST /v1/orders/batch": lambda s, c: (
        "POST",
        "/v1/orders/batch",
        {"orders": [order_body([(s.x_sku, 1)], s.region)]},
    ),
    "GET /v1/orders": lambda s, c: ("GET", "/v1/orders", None),
    "GET /v1/orders/{A's, X's SKU}": lambda s, c: ("GET", f"/v1/orders/{s.a_order_x}", None),
    "GET /v1/orders/{B's, Y's SKU}": lambda s, c: ("GET", f"/v1/orders/{s.b_order_y}", None),
    "GET /v1/orders/{A's, X's and Y's SKUs}": lambda s, c: (
        "GET",
        f"/v1/orders/{s.a_order_xy}",
        None,
    ),
    "GET /v1/orders/{A's, X's and Z's SKUs}": lambda s, c: (
        "GET",
        f"/v1/orders/{s.a_order_xz}",
        None,
    ),
    "GET /v1/orders/{A's, X's and Z's SKUs}/payment": lambda s, c: (
        "GET",
        f"/v1/orders/{s.a_order_xz}/payment",
        None,
    ),
    "GET /v1/orders/{A's, X's and Z's SKUs}/refunds": lambda s, c: (
        "GET",
        f"/v1/orders/{s.a_order_xz}/refunds",
        None,
    ),
    "GET /v1/orders/{A's, X's and Z's SKUs}/shipments": lambda s, c: (
        "GET",
        f"/v1/orders/{s.a_order_xz}/shipments",
        None,
    ),
    "GET /v1/orders/{A's, X's and Z's SKUs}/returns": lambda s, c: (
        "GET",
        f"/v1/orders/{s.a_order_xz}/returns",
        None,
    ),
    # A fresh order for every caller: cancelling uses it up.
    "POST /v1/orders/{A's, X's SKU}/cancel": lambda s, c: (
        "POST",
        f"/v1/orders/{s.order('buyer A', [(s.x_sku, 1)])}/cancel",
        None,
    ),
    "POST /v1/orders/{B's, Y's SKU}/cancel": lambda s, c: (
        "POST",
        f"/v1/orders/{s.order('buyer B', [(s.y_sku, 1)])}/cancel",
        None,
    ),
    "POST /v1/orders/{A's, X's SKU}/payments": lambda s, c: (
        "POST",
        f"/v1/orders/{s.a_order_x}/payments",
        {"method": "card"},
    ),
    "GET /v1/orders/{A's, X's SKU}/payment": lambda s, c: (
        "GET",
        f"/v1/orders/{s.a_order_x}/payment",
        None,
    ),
    "POST /v1/orders/{A's, X's SKU}/refunds": lambda s, c: (
        "POST",
        f"/v1/orders/{s.a_order_x}/refunds",
        {"amount": 1, "reason": "goodwill"},
    ),
    "GET /v1/orders/{A's, X's SKU}/refunds": lambda s, c: (
        "GET",
        f"/v1/orders/{s.a_order_x}/refunds",
        None,
    ),
    "POST /v1/orders/{A's, X's SKU}/shipments": lambda s, c: (
        "POST",
        f"/v1/orders/{s.a_order_x}/shipments",
        {},
    ),
    "GET /v1/orders/{A's, X's SKU}/shipments": lambda s, c: (
        "GET",
        f"/v1/orders/{s.a_order_x}/shipments",
        None,
    ),
    "POST /v1/orders/{A's, X's SKU}/delivery-window": lambda s, c: (
        "POST",
        f"/v1/orders/{s.a_order_x}/delivery-window",
        {"window": s.window},
    ),
    "POST /v1/regions/{code}/delivery-windows": lambda s, c: (
        "POST",
        f"/v1/regions/{s.region}/delivery-windows",
        _WINDOW,
    ),
    "GET /v1/regions/{code}/delivery-windows": lambda s, c: (
        "GET",
        f"/v1/regions/{s.region}/delivery-windows",
        None,
    ),
    "POST /v1/orders/{A's, X's SKU}/returns": lambda s, c: (
        "POST",
        f"/v1/orders/{s.a_order_x}/returns",
        {"lines": [{"sku": s.x_sku, "quantity": 1}]},
    ),
    "GET /v1/orders/{A's, X's SKU}/returns": lambda s, c: (
        "GET",
        f"/v1/orders/{s.a_order_x}/returns",
        None,
    ),
    "GET /v1/returns": lambda s, c: ("GET", "/v1/returns", None),
    "GET /v1/returns?status=in_review": lambda s, c: ("GET", "/v1/returns?status=in_review", None),
    "GET /v1/returns/{missing}": lambda s, c: ("GET", "/v1/returns/999999", None),
    "POST /v1/returns/{missing}/approve": lambda s, c: ("POST", "/v1/returns/999999/approve", {}),
    "POST /v1/returns/{missing}/reject": lambda s, c: (
        "POST",
        "/v1/returns/999999/reject",
        {"reason": "worn"},
    ),
    "POST /v1/webhook-endpoints": lambda s, c: ("POST", "/v1/webhook-endpoints", _HOOK),
    "GET /v1/webhook-endpoints": lambda s, c: ("GET", "/v1/webhook-endpoints", None),
    "GET /v1/webhook-endpoints/{X's}": lambda s, c: (
        "GET",
        f"/v1/webhook-endpoints/{s.x_endpoint}",
        None,
    ),
    # A fresh endpoint for every caller: deleting uses it up.
    "DELETE /v1/webhook-endpoints/{X's}": lambda s, c: (
        "DELETE",
        f"/v1/webhook-endpoints/{s.endpoint()}",
        None,
    ),
    "GET /v1/webhook-endpoints/{X's}/deliveries": lambda s, c: (
        "GET",
        f"/v1/webhook-endpoints/{s.x_endpoint}/deliveries",
        None,
    ),
    "POST /v1/webhook-endpoints/{X's}/rotate-secret": lambda s, c: (
        "POST",
        f"/v1/webhook-endpoints/{s.x_endpoint}/rotate-secret",
        None,
    ),
    "POST /v1/webhook-endpoints/{X's}/deliveries/{missing}/retry": lambda s, c: (
        "POST",
        f"/v1/webhook-endpoints/{s.x_endpoint}/deliveries/evt_999999/retry",
        None,
    ),
    "GET /v1/risk/rules": lambda s, c: ("GET", "/v1/risk/rules", None),
    "POST /v1/risk/rules": lambda s, c: ("POST", "/v1/risk/rules", _RULE),
    "GET /v1/risk/rules/{X's}": lambda s, c: ("GET", f"/v1/risk/rules/{s.x_rule}", None),
    "GET /v1/risk/rules/{platform's}": lambda s, c: (
        "GET",
        f"/v1/risk/rules/{s.platform_rule}",
        None,
    ),
    "PUT /v1/risk/rules/{X's}": lambda s, c: ("PUT", f"/v1/risk/rules/{s.x_rule}", _RULE),
    # A fresh rule for every caller: deleting uses it up.
    "DELETE /v1/risk/rules/{X's}": lambda s, c: ("DELETE", f"/v1/risk/rules/{s.rule()}", None),
    "GET /v1/risk/lists": lambda s, c: ("GET", "/v1/risk/lists", None),
    "POST /v1/risk/lists": lambda s, c: (
        "POST",
        "/v1/risk/lists",
        {"list": "block", "kind": "device", "value": unique("d")},
    ),
    "DELETE /v1/risk/lists/{list}/{kind}/{value}": lambda s, c: ("DELETE", s.listed(), None),
    "GET /v1/risk/thresholds": lambda s, c: ("GET", "/v1/risk/thresholds", None),
    "PUT /v1/risk/thresholds": lambda s, c: (
        "PUT",
        "/v1/risk/thresholds",
        {"block": 75, "review": 65},
    ),
    "GET /v1/risk/audit": lambda s, c: ("GET", "/v1/risk/audit", None),
    "GET /v1/risk/reviews": lambda s, c: ("GET", "/v1/risk/reviews", None),
    "POST /v1/risk/reviews/{A's, X's SKU}": lambda s, c: (
        "POST",
        f"/v1/risk/reviews/{s.a_order_x}",
        {"outcome": "approve"},
    ),
    "GET /v1/orders/{A's, X's SKU}/risk": lambda s, c: (
        "GET",
        f"/v1/orders/{s.a_order_x}/risk",
        None,
    ),
    "GET /v1/orders/{A's, X's and Y's SKUs}/risk": lambda s, c: (
        "GET",
        f"/v1/orders/{s.a_order_xy}/risk",
        None,
    ),
    "POST /v1/orders/{A's, X's SKU}/fraud-report": lambda s, c: (
        "POST",
        f"/v1/orders/{s.order('buyer A', [(s.x_sku, 1)])}/fraud-report",
        {"source": "chargeback"},
    ),
    "GET /v1/orders/{A's, X's SKU}/fraud-report": lambda s, c: (
        "GET",
        f"/v1/orders/{s.a_order_x}/fraud-report",
        None,
    ),
    "POST /v1/orders/{A's, X's and Y's SKUs}/fraud-report": lambda s, c: (
        "POST",
        f"/v1/orders/{s.order('buyer A', [(s.x_sku, 1), (s.y_sku, 1)])}/fraud-report",
        {"source": "merchant_report"},
    ),
    "GET /v1/orders/{A's, X's and Y's SKUs}/fraud-report": lambda s, c: (
        "GET",
        f"/v1/orders/{s.a_order_xy}/fraud-report",
        None,
    ),
    "POST /v1/webhooks/payments/{name}": lambda s, c: ("POST", "/v1/webhooks/payments/p", {}),
    "POST /v1/webhooks/carriers/{name}": lambda s, c: ("POST", "/v1/webhooks/carriers/c", {}),
    "GET /healthz": lambda s, c: ("GET", "/healthz", None),
    "GET /readyz": lambda s, c: ("GET", "/readyz", None),
    "GET /metrics": lambda s, c: ("GET", "/metrics", None),
    "GET /v1/openapi.json": lambda s, c: ("GET", "/v1/openapi.json", None),
    "GET /docs": lambda s, c: ("GET", "/docs", None),
    "GET /docs/{asset}": lambda s, c: ("GET", "/docs/swagger-ui.css", None),
}


def test_the_policy_covers_every_endpoint_and_caller() -> None:
    from pyorder.server.api import router

    assert set(REQUESTS) == set(POLICY)
    assert all(len(row) == len(CALLERS) for row in POLICY.values())

    def shape(label: str) -> str:
        """Path parameters are written {X's} and so on in the table: compare by shape."""
        return re.sub(r"\{[^}]*\}", "{}", label)

    rows = {shape(label) for label in POLICY}
    for route in router().routes():  # documented or not
        if route.method != "HEAD":
            label = f"{route.method} {route.resource.canonical if route.resource else ''}"
            assert shape(label) in rows, f"{label}: no row"


@pytest.mark.parametrize(
    ("endpoint", "caller", "expected"),
    [
        pytest.param(endpoint, caller, status, id=f"{endpoint} as {caller}")
        for endpoint, row in POLICY.items()
        for caller, status in zip(CALLERS, row, strict=True)
    ],
)
def test_authorization_matrix(scene: Scene, endpoint: str, caller: str, expected: int) -> None:
    method, path, body = REQUESTS[endpoint](scene, caller)
    token = scene.tokens[caller]
    if body is None:
        resp = scene.srv.call(method, path, token=token)
    else:
        resp = scene.srv.call(method, path, token=token, json=body)
    assert resp.status == expected, f"{endpoint} as {caller}: {resp}"
    if expected >= 400:
        code = resp.error_code
        codes = {
            401: {"unauthorized"},
            403: {"forbidden"},
            404: {"not_found"},
            409: {"invalid_state"},
            422: {"payment_method_unavailable", "carrier_unavailable"},
        }
        assert code in codes[expected], resp


# --- what each caller sees in lists -------------------------------------------------------------


def _order_ids(srv: Server, token: str | None) -> set[str]:
    assert token is not None
    return {o["id"] for o in Shop(srv).all_orders(token)}


def test_buyers_list_only_their_own_orders(scene: Scene) -> None:
    a = _order_ids(scene.srv, scene.tokens["buyer A"])
    b = _order_ids(scene.srv, scene.tokens["buyer B"])
    assert {scene.a_order_x, scene.a_order_xy} <= a
    assert scene.b_order_y in b
    assert not a & b
    for order in Shop(scene.srv).all_orders(str(scene.tokens["buyer A"])):
        assert order["buyer"] == "A"


def test_merchants_list_only_orders_holding_their_skus(scene: Scene) -> None:
    x = _order_ids(scene.srv, scene.tokens["merchant X"])
    y = _order_ids(scene.srv, scene.tokens["merchant Y"])
    assert {scene.a_order_x, scene.a_order_xy, scene.a_order_xz} <= x
    assert scene.b_order_y not in x
    assert {scene.b_order_y, scene.a_order_xy} <= y
    assert scene.a_order_x not in y
    assert scene.a_order_xz not in y
    for order in Shop(scene.srv).all_orders(str(scene.tokens["merchant X"])):
        assert {line["sku"] for line in order["lines"]} == {scene.x_sku}, order
        _assert_merchants_part(order)
    admin = _order_ids(scene.srv, scene.tokens["admin"])
    assert x | y <= admin


# --- what a merchant sees of a mixed order (the marketplace model) ----------------------------

_COARSE = {"name", "city", "region", "country"}
"""What a merchant sees of a delivery address (the name masked)."""


def _assert_merchants_part(order: dict[str, Any]) -> None:
    """``order`` is a merchant's part: the total of its lines, a coarse address, a pseudonym."""
    assert order["total"] == sum(li["line_total"] for li in order["lines"]), order
    assert set(order["address"]) <= _COARSE, order
    assert order["address"]["name"].endswith("**"), order
    assert order["buyer"].startswith("buyer_"), order


def _order(scene: Scene, caller: str, order_id: str) -> dict[str, Any]:
    out: dict[str, Any] = scene.srv.ok("GET", f"/v1/orders/{order_id}", token=scene.tokens[caller])
    return out


def test_a_merchant_reads_only_its_part_of_a_mixed_order(scene: Scene) -> None:
    """Merchant X reading A's order of X's and Y's lines sees only X's line, its total, a
    pseudonym for A and no street address; Y likewise its own; A and admins see all of it."""
    whole = _order(scene, "buyer A", scene.a_order_xy)
    assert _order(scene, "admin", scene.a_order_xy) == whole
    assert whole["buyer"] == "A"
    assert address(scene.region).items() <= whole["address"].items()
    assert {li["sku"] for li in whole["lines"]} == {scene.x_sku, scene.y_sku}
    parts = {}
    for caller, sku in (("merchant X", scene.x_sku), ("merchant Y", scene.y_sku)):
        part = _order(scene, caller, scene.a_order_xy)
        _assert_merchants_part(part)
        assert [li["sku"] for li in part["lines"]] == [sku]
        assert part["lines"] == [li for li in whole["lines"] if li["sku"] == sku]
        assert part["total"] < whole["total"]
        assert part["address"] == {
            "name": "L**",
            "city": "Hangzhou",
            "region": scene.region,
            "country": "CN",
        }
        assert part["buyer"] != whole["buyer"]
        for key in ("id", "status", "currency", "created_at", "payment_deadline"):
            assert part[key] == whole[key]
        parts[caller] = part
    assert parts["merchant X"]["buyer"] != parts["merchant Y"]["buyer"], "unlinkable"
    # Stable: the same pseudonym for the same buyer in every order of this merchant.
    assert _order(scene, "merchant X", scene.a_order_x)["buyer"] == parts["merchant X"]["buyer"]


def test_a_merchant_sees_its_share_of_a_mixed_orders_payment_and_parcels(scene: Scene) -> None:
    """No payment provider or carrier here (``tests/marketplace`` pays, ships and refunds a
    mixed order end to end): a merchant sees no attempts, no parcels of others, no refunds."""
    x = scene.tokens["merchant X"]
    path = f"/v1/orders/{scene.a_order_xz}"
    assert scene.srv.ok("GET", path + "/payment", token=x)["attempts"] == []
    assert scene.srv.ok("GET", path + "/shipments", token=x)["shipments"] == []
    assert scene.srv.ok("GET", path + "/refunds", token=x)["refunds"] == []
    assert scene.srv.ok("GET", path + "/returns", token=x)["returns"] == []


def test_merchants_see_only_their_own_and_the_platforms_warehouses(scene: Scene) -> None:
    for caller, own, other in (
        ("merchant X", scene.x_wh, scene.y_wh),
        ("merchant Y", scene.y_wh, scene.x_wh),
    ):
        listed = scene.srv.ok("GET", "/v1/warehouses", token=scene.tokens[caller])["warehouses"]
        ids = {w["id"] for w in listed}
        assert {own, scene.platform_wh} <= ids
        assert other not in ids
        mine = f"merchant:{caller[-1]}"
        assert all(w["owner"] == mine or w["owner"].startswith("admin:") for w in listed), listed
    everyone = scene.srv.ok("GET", "/v1/warehouses", token=scene.tokens["admin"])["warehouses"]
    assert {scene.x_wh, scene.y_wh, scene.platform_wh} <= {w["id"] for w in everyone}


def test_merchants_list_only_their_own_skus(scene: Scene) -> None:
    def listed(caller: str) -> list[dict[str, Any]]:
        out = scene.srv.ok("GET", "/v1/skus?limit=500", token=scene.tokens[caller])
        skus: list[dict[str, Any]] = out["skus"]
        return skus

    x_skus = listed("merchant X")
    assert scene.x_sku in {s["id"] for s in x_skus}
    assert all(s["merchant"] == "merchant:X" for s in x_skus)
    assert scene.x_sku not in {s["id"] for s in listed("merchant Y")}
    for caller in ("buyer A", "admin"):
        assert {scene.x_sku, scene.y_sku} <= {s["id"] for s in listed(caller)}


def test_merchants_stock_only_their_own_or_platform_warehouses(scene: Scene) -> None:
    srv, x = scene.srv, scene.tokens["merchant X"]
    body = {
        "title": "t",
        "price": 1,
        "currency": "CNY",
        "stock": [{"warehouse": scene.y_wh, "units": 1}],
    }
    resp = srv.call("POST", "/v1/skus", token=x, json=body)
    assert resp.status == 403, resp
    path = f"/v1/skus/{scene.x_sku}/stock"
    resp = srv.call("POST", path, token=x, json={"warehouse": scene.y_wh, "delta": 1})
    assert resp.status == 403, resp
    srv.ok("POST", path, token=x, json={"warehouse": scene.x_wh, "delta": 1})
    assert srv.ok("GET", f"/v1/skus/{scene.x_sku}", token=x)["warehouses"][-1]["warehouse"] == (
        scene.x_wh
    )


def test_idempotency_keys_are_scoped_to_the_caller(scene: Scene) -> None:
    key = f"shared-{uuid.uuid4().hex}"
    body = order_body([(scene.x_sku, 1)], scene.region)
    first = scene.srv.call(
        "POST",
        "/v1/orders",
        token=scene.tokens["buyer A"],
        json=body,
        headers={"Idempotency-Key": key},
    )
    second = scene.srv.call(
        "POST",
        "/v1/orders",
        token=scene.tokens["buyer B"],
        json=body,
        headers={"Idempotency-Key": key},
    )
    assert first.status == 201, first
    assert second.status == 201, second
    assert "idempotent-replayed" not in second.headers
    assert first.json()["id"] != second.json()["id"]
    assert second.json()["buyer"] == "B"


@pytest.mark.parametrize(
    "header",
    [
        "Basic QTpi",
        "Bearer",
        "Bearer ",
        "bearer-token",
        "Token {admin}",
        "Bearer {admin}x",
        "Bearer {unknown_role}",
        "Bearer {no_exp}",
        "Bearer {alg_none}",
        "Bearer {bad_account_created}",
    ],
)
def test_malformed_or_unacceptable_tokens_are_401(server: Server, header: str) -> None:
    import jwt

    from pyorder.auth import load_or_create_secret

    secret = load_or_create_secret(server.proc.data_dir)
    values = {
        "admin": server.admin(),
        "unknown_role": jwt.encode({"sub": "r", "role": "root", "exp": 2**33}, secret, "HS256"),
        "no_exp": jwt.encode({"sub": "r", "role": "admin"}, secret, "HS256"),
        "alg_none": jwt.encode({"sub": "r", "role": "admin", "exp": 2**33}, "", "none"),
        "bad_account_created": jwt.encode(
            {"sub": "r", "role": "buyer", "exp": 2**33, "account_created": "yesterday"},
            secret,
            "HS256",
        ),
    }
    resp = server.call("GET", "/v1/orders", headers={"Authorization": header.format(**values)})
    assert resp.status == 401, resp
    assert resp.error_code == "unauthorized"
    resp = server.call(
        "POST",
        "/v1/orders",
        headers={"Authorization": header.format(**values)},
        json={"lines": [{"sku": 0, "quantity": 1}], "address": address("r")},
    )
    assert resp.status == 401, resp
