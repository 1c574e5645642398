"""The marketplace model end to end (``docs/marketplace.md``): one order of two merchants' lines,
paid, shipped, delivered, refunded in part by each side and returned in part, on the real
server with the payment and carrier sandboxes and a real webhook receiver, on both stores.

Merchant X sells 2 x 999 from warehouse 0; merchant Y sells 300 from warehouse 0 (the same
parcel as X's) and 1,200 from warehouse 1; merchant Z holds no line. Every view each merchant
gets, through the API and through its webhooks, must be its part and nothing of the other's:
its lines and their total, the buyer as its own pseudonym, no street address, its share of the
payment and refunds, the parcels holding its lines."""

import time
from pathlib import Path
from typing import Any

import pytest

from tests.events.lib import FAST_RETRIES, Receiver, register
from tests.logistics.lib import ShipWorld, ship_world
from tests.returns.lib import open_return, policy_file, wait_return
from tests.support.postgres import postgres_dsn

X_TOTAL, Y_TOTAL = 2 * 999, 300 + 1200
GOODWILL = 100
"""An admin's refund by amount alone: split by subtotal, largest remainder (X 57, Y 43)."""
X_GOODWILL, Y_GOODWILL = 57, 43
COARSE = {"name", "city", "region", "country"}


def _refunds(w: ShipWorld, oid: str, token: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = w.srv.ok("GET", f"/v1/orders/{oid}/refunds", token=token)["refunds"]
    return out


def _settled(w: ShipWorld, oid: str, count: int) -> bool:
    found = _refunds(w, oid, w.shop.admin)
    return len(found) == count and all(r["status"] == "succeeded" for r in found)


def _wait(condition: Any, what: str) -> None:
    deadline = time.monotonic() + 20
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _assert_part(order: dict[str, Any], skus: set[int], total: int, pseudonym: str) -> None:
    assert {li["sku"] for li in order["lines"]} == skus, order
    assert order["total"] == total, order
    assert set(order["address"]) <= COARSE, order
    assert order["address"]["name"] == "L**", order
    assert order["buyer"] == pseudonym, order


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_each_merchant_sees_and_is_sent_only_its_part_of_a_mixed_order(
    backend: str, tmp_path: Path
) -> None:
    if backend == "postgres":
        postgres_dsn()
    args = (*FAST_RETRIES, "--returns-config", policy_file(tmp_path / "policy"))
    with Receiver() as hooks, ship_world(backend, tmp_path, warehouses=2, server_args=args) as w:
        srv, shop = w.srv, w.shop
        x, admin, buyer = w.merchant, shop.admin, w.buyer
        y, z = srv.token("merchant", "y"), srv.token("merchant", "z")
        wh0, wh1 = w.warehouses
        y_near = shop.sku({wh0: 100}, price=300, token=y)
        y_far = shop.sku({wh1: 100}, price=1200, token=y)
        shop.sku({wh0: 100}, price=5, token=z)
        secrets = {
            name: register(srv, token, hooks.url(name))["secret"]
            for name, token in (("x", x), ("y", y), ("z", z))
        }

        oid = w.order([(w.sku, 2), (y_near, 1), (y_far, 1)])
        w.pay(oid)
        assert w.ship(oid, token=x).status == 202  # warehouse 0: X's and Y's near line
        shipped = w.ship(oid, token=y)  # what is left of Y's: warehouse 1
        assert shipped.status == 202, shipped
        assert [s["warehouse"] for s in shipped.json()["shipments"]] == [wh0, wh1]
        w.wait_fulfilment(oid, "delivered")
        by_y = srv.call(
            "POST",
            f"/v1/orders/{oid}/refunds",
            token=y,
            json={"lines": [{"sku": y_far, "quantity": 1}], "reason": "broken"},
        )
        assert by_y.status == 202, by_y
        goodwill = srv.call(
            "POST",
            f"/v1/orders/{oid}/refunds",
            token=admin,
            json={"amount": GOODWILL, "reason": "late"},
        )
        assert goodwill.status == 202, goodwill
        _wait(lambda: _settled(w, oid, 2), "two refunds")
        opened = open_return(w, oid, [(w.sku, 1)])
        assert opened.status == 201, opened
        [ret] = opened.json()["returns"]
        wait_return(w, int(ret["id"]), lambda r: r["status"] == "refunded")
        _wait(lambda: _settled(w, oid, 3), "the return's refund")

        # --- the order ----------------------------------------------------------------------
        whole = srv.ok("GET", f"/v1/orders/{oid}", token=buyer)
        assert whole["total"] == X_TOTAL + Y_TOTAL
        assert whole["buyer"] == "bob"
        assert srv.ok("GET", f"/v1/orders/{oid}", token=admin) == whole
        x_order = srv.ok("GET", f"/v1/orders/{oid}", token=x)
        y_order = srv.ok("GET", f"/v1/orders/{oid}", token=y)
        px, py = x_order["buyer"], y_order["buyer"]
        assert px.startswith("buyer_")
        assert py.startswith("buyer_")
        assert len({px, py, "bob"}) == 3
        _assert_part(x_order, {w.sku}, X_TOTAL, px)
        _assert_part(y_order, {y_near, y_far}, Y_TOTAL, py)
        assert srv.call("GET", f"/v1/orders/{oid}", token=z).status == 404
        [listed] = [o for o in srv.ok("GET", "/v1/orders", token=x)["orders"] if o["id"] == oid]
        assert listed == x_order
        assert oid not in {o["id"] for o in srv.ok("GET", "/v1/orders", token=z)["orders"]}

        # --- the payment and refunds -----------------------------------------------------------
        pay = srv.ok("GET", f"/v1/orders/{oid}/payment", token=buyer)
        assert pay["amount"] == pay["charged"] == X_TOTAL + Y_TOTAL
        assert pay["refunded"] == 1200 + GOODWILL + 999
        assert pay["attempts"]
        x_pay = srv.ok("GET", f"/v1/orders/{oid}/payment", token=x)
        y_pay = srv.ok("GET", f"/v1/orders/{oid}/payment", token=y)
        assert (x_pay["amount"], x_pay["charged"], x_pay["refunded"]) == (
            X_TOTAL,
            X_TOTAL,
            X_GOODWILL + 999,
        )
        assert (y_pay["amount"], y_pay["charged"], y_pay["refunded"]) == (
            Y_TOTAL,
            Y_TOTAL,
            1200 + Y_GOODWILL,
        )
        assert x_pay["attempts"] == y_pay["attempts"] == []
        assert x_pay["status"] == y_pay["status"] == "partially_refunded"
        assert srv.call("GET", f"/v1/orders/{oid}/payment", token=z).status == 404

        def amounts(token: str) -> list[tuple[int, int, list[int]]]:
            return [
                (r["number"], r["amount"], [li["sku"] for li in r["lines"]])
                for r in _refunds(w, oid, token)
            ]

        assert amounts(buyer) == [(1, 1200, [y_far]), (2, GOODWILL, []), (3, 999, [w.sku])]
        assert amounts(x) == [(2, X_GOODWILL, []), (3, 999, [w.sku])]
        assert amounts(y) == [(1, 1200, [y_far]), (2, Y_GOODWILL, [])]
        assert srv.call("GET", f"/v1/orders/{oid}/refunds", token=z).status == 404

        # --- parcels ---------------------------------------------------------------------------
        def parcels(token: str) -> dict[int, list[int]]:
            out = srv.ok("GET", f"/v1/orders/{oid}/shipments", token=token)
            return {s["warehouse"]: [li["sku"] for li in s["lines"]] for s in out["shipments"]}

        assert parcels(buyer) == {wh0: [w.sku, y_near], wh1: [y_far]}
        assert parcels(x) == {wh0: [w.sku]}
        assert parcels(y) == {wh0: [y_near], wh1: [y_far]}
        assert srv.call("GET", f"/v1/orders/{oid}/shipments", token=z).status == 404

        # --- returns ---------------------------------------------------------------------------
        x_returns = srv.ok("GET", f"/v1/orders/{oid}/returns", token=x)["returns"]
        assert [(r["id"], r["buyer"]) for r in x_returns] == [(ret["id"], px)]
        assert srv.ok("GET", f"/v1/returns/{ret['id']}", token=x)["buyer"] == px
        assert srv.ok("GET", f"/v1/returns/{ret['id']}", token=buyer)["buyer"] == "bob"
        assert srv.ok("GET", f"/v1/orders/{oid}/returns", token=y)["returns"] == []
        assert srv.call("GET", f"/v1/returns/{ret['id']}", token=y).status == 404
        assert ret["id"] not in {r["id"] for r in srv.ok("GET", "/v1/returns", token=y)["returns"]}

        # --- webhooks --------------------------------------------------------------------------
        journey = ["order.created", "order.paid", "order.shipped", "order.delivered"]
        want = {"x": [*journey, "order.refunded", "order.refunded"]}
        want["y"] = [*journey, "order.refunded", "order.refunded"]
        hooks.wait_for(lambda: [e["type"] for e in hooks.events("x")] == want["x"])
        hooks.wait_for(lambda: [e["type"] for e in hooks.events("y")] == want["y"])
        assert hooks.hits("z") == []
        sent = {n: [h.verified(secrets[n]) for h in hooks.accepted(n)] for n in ("x", "y")}
        for name, skus, total, pseudonym in (
            ("x", {w.sku}, X_TOTAL, px),
            ("y", {y_near, y_far}, Y_TOTAL, py),
        ):
            events = {e["type"]: e["data"]["object"] for e in sent[name]}
            for kind in ("order.created", "order.paid"):
                _assert_part(events[kind], skus, total, pseudonym)
            assert events["order.created"]["status"] == "pending_payment"
            assert events["order.paid"]["status"] == "paid"
            mine = {wh0} if name == "x" else {wh0, wh1}
            for kind in ("order.shipped", "order.delivered"):
                assert {p["warehouse"] for p in events[kind]["parcels"]} == mine
        refunds = {
            n: [
                (e["data"]["object"]["amount"], [li["sku"] for li in e["data"]["object"]["lines"]])
                for e in sent[n]
                if e["type"] == "order.refunded"
            ]
            for n in ("x", "y")
        }
        assert refunds["x"] == [(X_GOODWILL, []), (999, [w.sku])]
        assert refunds["y"] == [(1200, [y_far]), (Y_GOODWILL, [])]
        for n in ("x", "y"):
            assert all(b"Road" not in h.body and b"bob" not in h.body for h in hooks.hits(n))

        # --- what is left for X to refund: its lines, less its share of every refund ----------
        left = X_TOTAL - X_GOODWILL - 999
        too_much = srv.call(
            "POST",
            f"/v1/orders/{oid}/refunds",
            token=x,
            json={"amount": left + 1, "reason": "goodwill"},
        )
        assert too_much.status == 422, too_much
        assert too_much.error_code == "refund_exceeds_charge"
        assert too_much.json()["error"]["details"]["refundable"] == left
