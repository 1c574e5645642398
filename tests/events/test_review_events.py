"""The review queue's webhook events end to end: a real server and a real receiver as merchant
x's endpoint. Approving an order held for review sends order.review_approved (the order awaiting
payment); rejecting one sends order.review_rejected and order.cancelled (it is cancelled), each
signed, with the merchant's part of the order. (order.review_required is written in SQL with
the orders the book holds: ``tests/storage/test_storage_events.py``.)"""

from pathlib import Path

import pytest

from tests.server.e2e_lib import Shop, running_server, unique
from tests.server.review_lib import hold_for_review
from tests.support.postgres import postgres_dsn

from .lib import FAST_RETRIES, Receiver, of_type, register

REVIEW_EVENTS = ["order.review_approved", "order.review_rejected", "order.cancelled"]


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_approving_and_rejecting_send_their_events(backend: str, tmp_path: Path) -> None:
    if backend == "postgres":
        postgres_dsn()
    with Receiver() as hooks, running_server(backend, tmp_path, FAST_RETRIES) as srv:
        shop = Shop(srv)
        x, buyer = srv.token("merchant", "x"), srv.token("buyer", "A")
        wh = shop.warehouse()
        region = unique("rw")
        shop.region(region, [wh])
        sku = shop.sku({wh: 10}, token=x)
        ep = register(srv, x, hooks.url("x"), events=REVIEW_EVENTS)
        ids = []
        for _ in range(2):
            resp = shop.order(buyer, [(sku, 1)], region)
            assert resp.status == 201, resp
            ids.append(str(resp.json()["id"]))
        approved, rejected = ids
        hold_for_review(srv, ids, "merchant:x")

        srv.ok("POST", f"/v1/risk/reviews/{approved}", token=x, json={"outcome": "approve"})
        srv.ok("POST", f"/v1/risk/reviews/{rejected}", token=x, json={"outcome": "reject"})
        hooks.wait_for(lambda: len(hooks.accepted("x")) >= 3)

        events = [h.verified(ep["secret"]) for h in hooks.accepted("x")]
        assert of_type(events, "order.review_approved") == [approved]
        assert of_type(events, "order.review_rejected") == [rejected]
        assert of_type(events, "order.cancelled") == [rejected]
        by_type = {e["type"]: e["data"] for e in events}
        yes = by_type["order.review_approved"]
        assert (yes["object"]["status"], yes["previous_status"], yes["review"]) == (
            "pending_payment",
            "in_review",
            "approved",
        )
        assert yes["object"]["buyer"] != "A"  # the merchant's part: the buyer pseudonymised
        no = by_type["order.review_rejected"]
        assert (no["object"]["status"], no["review"]) == ("cancelled", "rejected")
        assert by_type["order.cancelled"]["previous_status"] == "in_review"


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_an_order_held_at_intake_is_queued_announced_and_approved(
    backend: str, tmp_path: Path
) -> None:
    """Through risk control at intake (``--risk``, rules only): a review rule holds the order,
    order.review_required arrives, the queue lists it with the rule that held it, and its
    approval is announced."""
    if backend == "postgres":
        postgres_dsn()
    args = (*FAST_RETRIES, "--risk", "--risk-rules-only")
    with Receiver() as hooks, running_server(backend, tmp_path, args) as srv:
        shop = Shop(srv)
        admin, x, buyer = srv.admin(), srv.token("merchant", "x"), srv.token("buyer", "A")
        wh = shop.warehouse()
        region = unique("ri")
        shop.region(region, [wh])
        sku = shop.sku({wh: 10}, token=x)
        kinds = ["order.review_required", "order.review_approved"]
        ep = register(srv, x, hooks.url("x"), events=kinds)
        rule = {"action": "review", "condition": "amount >= 0"}
        rule_id = srv.ok("POST", "/v1/risk/rules", token=admin, json=rule, expect=201)["id"]

        placed = shop.order(buyer, [(sku, 2)], region)
        assert (placed.status, placed.json()["status"]) == (201, "in_review")
        oid = str(placed.json()["id"])
        hooks.wait_for(lambda: of_type(hooks.events("x"), "order.review_required") == [oid])
        [queued] = srv.ok("GET", "/v1/risk/reviews", token=x)["reviews"]
        assert queued["order"]["id"] == oid
        assert queued["order"]["status"] == "in_review"
        decided = queued["decision"]
        assert (decided["outcome"], decided["decided_by"], decided["fired"]) == (
            "review",
            rule_id,
            [rule_id],
        )
        assert shop.totals(sku)["reserved"] == 2

        srv.ok("POST", f"/v1/risk/reviews/{oid}", token=x, json={"outcome": "approve"})
        hooks.wait_for(lambda: of_type(hooks.events("x"), "order.review_approved") == [oid])
        events = [h.verified(ep["secret"]) for h in hooks.accepted("x")]
        held = events[0]["data"]["object"]
        assert (held["id"], held["status"]) == (oid, "in_review")
        assert srv.ok("GET", "/v1/risk/reviews", token=x)["reviews"] == []
        assert shop.get_order(oid, buyer)["status"] == "pending_payment"
