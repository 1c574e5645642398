"""The review queue over HTTP on a real server, both stores (docs/risk.md, "Review queue"):
orders risk control held (``in_review``) keep their units reserved, cannot be paid, are listed
for their merchant and admins, approved (awaiting payment, a new deadline) or rejected
(cancelled, units back) once, cancelled by their buyer, expire with the review hold, and keep
all of it across a restart. Buyers never see a decision.

The orders are put in review the way a restart finds them (``review_lib.hold_for_review``: the
store's rows, the order ``in_review`` and its decision), so that this tests the review's own
path; placing an order that the policy holds is ``test_risk_intake``'s."""

import time
from datetime import datetime
from typing import Any

from tests.server.e2e_lib import Launch, Server, Shop, unique
from tests.server.review_lib import hold_for_review

TIMEOUT_S = 900


def _status(srv: Server, method: str, path: str, token: str, json: Any = None) -> tuple[int, str]:
    resp = srv.call(method, path, token=token, json=json)
    code = resp.error_code if resp.status >= 400 else ""
    return resp.status, code


def _queue(srv: Server, token: str) -> list[str]:
    out = srv.ok("GET", "/v1/risk/reviews", token=token)
    return [r["order"]["id"] for r in out["reviews"]]


def test_the_queue_is_empty_and_buyers_see_nothing(launch: Launch) -> None:
    srv = launch()
    admin, x, buyer = srv.admin(), srv.token("merchant", "x"), srv.token("buyer", "A")
    assert srv.ok("GET", "/v1/risk/reviews", token=admin) == {"reviews": [], "next_cursor": None}
    assert _queue(srv, x) == []
    assert _status(srv, "GET", "/v1/risk/reviews", buyer) == (403, "forbidden")
    assert _status(srv, "GET", "/v1/orders/123/risk", buyer) == (403, "forbidden")
    assert _status(srv, "GET", "/v1/orders/123/risk", x) == (404, "not_found")
    review = {"outcome": "approve"}
    assert _status(srv, "POST", "/v1/risk/reviews/123", x, review) == (404, "not_found")
    assert _status(srv, "POST", "/v1/risk/reviews/123", admin, {"outcome": "maybe"}) == (
        422,
        "invalid_input",
    )
    assert _status(srv, "GET", "/v1/risk/reviews?limit=0", admin)[0] == 422


def test_review_approve_reject_cancel_and_restart(launch: Launch) -> None:
    srv = launch("--payment-timeout-s", str(TIMEOUT_S))
    shop = Shop(srv)
    admin, buyer = srv.admin(), srv.token("buyer", "A")
    x, y = srv.token("merchant", "x"), srv.token("merchant", "y")
    wh = shop.warehouse()
    region = unique("rv")
    shop.region(region, [wh])
    sku = shop.sku({wh: 10}, token=x)
    ids = []
    for _ in range(4):
        resp = shop.order(buyer, [(sku, 2)], region)
        assert resp.status == 201, resp
        ids.append(str(resp.json()["id"]))
    approved, rejected, cancelled, left = ids
    hold_for_review(srv, ids, "merchant:x")

    # held: in review, units reserved, listed for x and admins, newest first; paying refused
    assert shop.get_order(approved, buyer)["status"] == "in_review"
    assert shop.totals(sku)["reserved"] == 8
    assert _queue(srv, admin) == ids[::-1]
    assert _queue(srv, x) == ids[::-1]
    assert _queue(srv, y) == []
    page = srv.ok("GET", "/v1/risk/reviews?limit=3", token=x)
    rest = srv.ok("GET", f"/v1/risk/reviews?limit=3&before={page['next_cursor']}", token=x)
    assert [r["order"]["id"] for r in page["reviews"] + rest["reviews"]] == ids[::-1]
    item = page["reviews"][0]
    assert item["order"]["buyer"] != "A"  # the merchant's part: the buyer pseudonymised
    assert item["decision"]["score"] == 71
    assert item["decision"]["reasons"][1] == {
        "feature": "ip_region_mismatch",
        "value": None,
        "contribution": 0.2,
    }
    pay = srv.call("POST", f"/v1/orders/{approved}/payments", token=buyer, json={"method": "card"})
    assert (pay.status, pay.error_code) == (409, "invalid_state")
    assert "in review" in pay.json()["error"]["message"]

    # approve: another merchant 404, x 200 (awaiting payment from now), then 409
    path = f"/v1/risk/reviews/{approved}"
    assert _status(srv, "POST", path, y, {"outcome": "approve"}) == (404, "not_found")
    before = time.time()
    out = srv.ok("POST", path, token=x, json={"outcome": "approve"})
    assert out["order"]["status"] == "pending_payment"
    assert out["decision"]["review"] == "approved"
    assert out["decision"]["reviewer"] == "merchant:x"
    deadline = shop.get_order(approved, buyer)["payment_deadline"]
    due = datetime.fromisoformat(deadline.replace("Z", "+00:00")).timestamp()
    assert before + TIMEOUT_S - 5 <= due <= time.time() + TIMEOUT_S + 5
    assert _status(srv, "POST", path, x, {"outcome": "reject"}) == (409, "invalid_state")
    assert _status(srv, "POST", path, admin, {"outcome": "approve"}) == (409, "invalid_state")

    # reject (an admin): cancelled, its units back
    out = srv.ok("POST", f"/v1/risk/reviews/{rejected}", token=admin, json={"outcome": "reject"})
    assert out["order"]["status"] == "cancelled"
    assert (out["decision"]["review"], out["decision"]["reviewer"]) == ("rejected", "admin:ops")
    assert shop.totals(sku)["reserved"] == 6

    # the buyer cancels an order in review: it leaves the queue, with no review
    srv.ok("POST", f"/v1/orders/{cancelled}/cancel", token=buyer)
    assert shop.totals(sku)["reserved"] == 4
    assert _queue(srv, x) == [left]

    # the decision: x and admins; the buyer never (403), another merchant 404
    risk = srv.ok("GET", f"/v1/orders/{approved}/risk", token=x)
    assert (risk["outcome"], risk["review"]) == ("review", "approved")
    assert srv.ok("GET", f"/v1/orders/{rejected}/risk", token=admin)["review"] == "rejected"
    assert srv.ok("GET", f"/v1/orders/{cancelled}/risk", token=admin)["review"] is None
    assert _status(srv, "GET", f"/v1/orders/{approved}/risk", buyer) == (403, "forbidden")
    assert _status(srv, "GET", f"/v1/orders/{approved}/risk", y) == (404, "not_found")

    # a restart keeps it all: the one left is still held, the approved one awaits payment
    srv.restart()
    assert _queue(srv, admin) == [left]
    assert [shop.get_order(i)["status"] for i in ids] == [
        "pending_payment",
        "cancelled",
        "cancelled",
        "in_review",
    ]
    assert shop.get_order(approved)["payment_deadline"] == deadline
    assert shop.totals(sku)["reserved"] == 4
    out = srv.ok("POST", f"/v1/risk/reviews/{left}", token=x, json={"outcome": "approve"})
    assert out["order"]["status"] == "pending_payment"


def test_the_review_hold_expires(launch: Launch) -> None:
    srv = launch()
    shop = Shop(srv)
    buyer, x = srv.token("buyer", "A"), srv.token("merchant", "x")
    wh = shop.warehouse()
    region = unique("rx")
    shop.region(region, [wh])
    sku = shop.sku({wh: 10}, token=x)
    resp = shop.order(buyer, [(sku, 3)], region)
    assert resp.status == 201, resp
    oid = str(resp.json()["id"])
    hold_for_review(srv, [oid], "merchant:x", hold_ms=1_500)
    shop.wait_for_status(oid, "expired")
    assert shop.totals(sku)["reserved"] == 0
    risk = srv.ok("GET", f"/v1/orders/{oid}/risk", token=x)
    assert (risk["review"], risk["reviewer"]) == ("expired", "system")
    assert _queue(srv, x) == []
    review = {"outcome": "approve"}
    assert _status(srv, "POST", f"/v1/risk/reviews/{oid}", x, review) == (409, "invalid_state")
