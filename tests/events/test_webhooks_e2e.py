"""Merchants' webhooks end to end: the real server with a payment and a carrier sandbox on
loopback, and a real receiver (``lib.Receiver``) as the merchants' endpoints. Every event is
checked as a receiver would: its ``Pyorder-Signature`` under the endpoint's secret
(``pyorder.kernel.signing.verify``) and its ``Pyorder-Event-Id`` header."""

import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from tests.logistics.lib import ship_world
from tests.server.e2e_lib import Shop, order_body, running_server
from tests.support.postgres import postgres_dsn

from .lib import FAST_RETRIES, Receiver, deliveries, of_type, register

JOURNEY = ["order.created", "order.paid", "order.shipped", "order.delivered", "order.refunded"]


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_order_events_arrive_signed_in_order_and_are_retried(backend: str, tmp_path: Path) -> None:
    """An order placed alone and two in a batch: order.created of each. The first is paid
    (its first delivery answered 500: sent again after the backoff), shipped, delivered and
    partly refunded: each event arrives signed, in the order it happened."""
    if backend == "postgres":
        postgres_dsn()
    with Receiver() as hooks, ship_world(backend, tmp_path, server_args=FAST_RETRIES) as w:
        ep = register(w.srv, w.merchant, hooks.url("seller"), description="orders")
        secret = ep.pop("secret")
        assert secret.startswith("whsec_")
        assert (ep["events"], ep["enabled"], ep["merchant"]) == (["*"], True, "merchant:seller")
        assert w.srv.ok("GET", f"/v1/webhook-endpoints/{ep['id']}", token=w.merchant) == ep
        assert w.srv.ok("GET", "/v1/webhook-endpoints", token=w.merchant)["endpoints"] == [ep]

        one = w.order()
        batch = w.srv.ok(
            "POST",
            "/v1/orders/batch",
            token=w.buyer,
            json={"orders": [order_body([(w.sku, 1)], w.region)] * 2},
        )
        two = [r["order"]["id"] for r in batch["results"]]
        created = {one, *two}
        hooks.wait_for(lambda: set(of_type(hooks.events("seller"), "order.created")) == created)

        hooks.answer("seller", 500)
        w.pay(one)
        hooks.wait_for(lambda: of_type(hooks.events("seller"), "order.paid") == [one])
        assert w.ship(one).status == 202
        w.wait_fulfilment(one, "delivered")
        refund = w.srv.call(
            "POST",
            f"/v1/orders/{one}/refunds",
            token=w.merchant,
            json={"amount": 300, "reason": "scratched"},
        )
        assert refund.status == 202, refund
        hooks.wait_for(lambda: of_type(hooks.events("seller"), "order.refunded") == [one])

        events = [h.verified(secret) for h in hooks.accepted("seller")]
        assert len({e["id"] for e in events}) == len(events) == 7, events
        assert [e["type"] for e in events if e["order_id"] == one] == JOURNEY
        ids = [int(e["id"].removeprefix("evt_")) for e in events]
        assert ids == sorted(ids), "one endpoint's events arrive in the order they happened"
        by_type = {e["type"]: e for e in events if e["order_id"] == one}
        placed = by_type["order.created"]["data"]["object"]
        assert (placed["id"], placed["status"], placed["total"]) == (one, "pending_payment", 999)
        paid = by_type["order.paid"]["data"]
        assert (paid["object"]["status"], paid["previous_status"]) == ("paid", "pending_payment")
        assert by_type["order.delivered"]["data"]["object"]["status"] == "delivered"
        assert by_type["order.refunded"]["data"]["object"]["amount"] == 300
        assert by_type["order.refunded"]["data"]["object"]["status"] == "succeeded"

        # The failed attempt: the same event, the same bytes, after the backoff.
        [failed] = [h for h in hooks.hits("seller") if h.status == 500]
        [again] = [h for h in hooks.accepted("seller") if h.event["type"] == "order.paid"]
        assert failed.body == again.body
        assert again.at - failed.at >= 0.045
        listed = deliveries(w.srv, w.merchant, ep["id"], page=3)
        assert [d["id"] for d in listed] == [e["id"] for e in reversed(events)]
        assert {d["state"] for d in listed} == {"delivered"}
        attempts = {d["type"]: (d["attempts"], d["last_status"]) for d in listed}
        assert attempts["order.paid"] == (2, 200)
        assert attempts["order.shipped"] == (1, 200)
        assert w.metric('pyorder_webhook_deliveries_total{outcome="retried"}') == 1
        assert w.metric('pyorder_webhook_deliveries_total{outcome="delivered"}') == 7


def _events_of(hooks: Receiver, endpoint: str) -> set[tuple[str, str]]:
    return {(e["type"], e["order_id"]) for e in hooks.events(endpoint)}


def test_merchants_receive_and_read_only_their_own(tmp_path: Path) -> None:
    """Merchant X receives the events of the orders holding X's SKUs, never Y's, and cannot
    see, read or delete Y's endpoints; an endpoint gets only the types it subscribes to."""
    with Receiver() as hooks, running_server("sqlite", tmp_path, FAST_RETRIES) as srv:
        shop = Shop(srv)
        x, y = srv.token("merchant", "x"), srv.token("merchant", "y")
        buyer = srv.token("buyer", "b")
        wh = shop.warehouse(regions=["r1"])
        x_sku, y_sku = shop.sku({wh: 10}, token=x), shop.sku({wh: 10}, token=y)
        ep_x = register(srv, x, hooks.url("x"))
        ep_y = register(srv, y, hooks.url("y"))
        ep_y_cancel = register(srv, y, hooks.url("y-cancel"), ["order.cancelled"])

        def order(lines: list[tuple[int, int]]) -> str:
            resp = shop.order(buyer, lines, "r1")
            assert resp.status == 201, resp
            return str(resp.json()["id"])

        o_x, o_y, o_xy = order([(x_sku, 1)]), order([(y_sku, 1)]), order([(x_sku, 1), (y_sku, 2)])
        srv.ok("POST", f"/v1/orders/{o_y}/cancel", token=buyer)
        created = "order.created"
        want_y = {(created, o_y), (created, o_xy), ("order.cancelled", o_y)}
        hooks.wait_for(lambda: _events_of(hooks, "y") == want_y)
        hooks.wait_for(lambda: _events_of(hooks, "y-cancel") == {("order.cancelled", o_y)})
        hooks.wait_for(lambda: _events_of(hooks, "x") == {(created, o_x), (created, o_xy)})
        # Fanned out in the commit: had X been owed o_y's events, its rows would exist by now.
        assert {d["order_id"] for d in deliveries(srv, x, ep_x["id"])} == {o_x, o_xy}

        for path in (f"/{ep_y['id']}", f"/{ep_y['id']}/deliveries"):
            resp = srv.call("GET", "/v1/webhook-endpoints" + path, token=x)
            assert (resp.status, resp.error_code) == (404, "not_found"), resp
        resp = srv.call("DELETE", f"/v1/webhook-endpoints/{ep_y['id']}", token=x)
        assert resp.status == 404, resp
        assert [e["id"] for e in srv.ok("GET", "/v1/webhook-endpoints", token=x)["endpoints"]] == [
            ep_x["id"]
        ]
        everyone = srv.ok("GET", "/v1/webhook-endpoints", token=srv.admin())["endpoints"]
        assert [e["id"] for e in everyone] == [ep_x["id"], ep_y["id"], ep_y_cancel["id"]]
        assert all("secret" not in e for e in everyone)
        assert srv.call("GET", "/v1/webhook-endpoints", token=buyer).status == 403
        assert srv.call("GET", "/v1/webhook-endpoints").status == 401
        post = {"url": hooks.url("b")}
        for token in (buyer, srv.admin()):
            resp = srv.call("POST", "/v1/webhook-endpoints", token=token, json=post)
            assert (resp.status, resp.error_code) == (403, "forbidden"), resp


def test_registering_is_validated_and_idempotent(tmp_path: Path) -> None:
    with running_server("sqlite", tmp_path) as srv:
        x = srv.token("merchant", "x")

        def post(body: dict[str, Any], key: str | None = None) -> Any:
            headers = {"Idempotency-Key": key} if key else None
            return srv.call("POST", "/v1/webhook-endpoints", token=x, json=body, headers=headers)

        for url in ("ftp://example.com/h", "/relative", "http://", "http://a b/"):
            resp = post({"url": url})
            assert (resp.status, resp.error_code) == (422, "invalid_url"), resp
        resp = post({"url": "https://example.com/h", "events": ["order.created", "order.lost"]})
        assert (resp.status, resp.error_code) == (422, "unknown_event_type"), resp
        resp = post({"url": "https://example.com/h", "extra": 1})
        assert (resp.status, resp.error_code) == (422, "invalid_input"), resp
        body = {"url": "https://example.com/h", "events": ["order.paid", "order.paid"]}
        first, replay = post(body, "k1"), post(body, "k1")
        assert first.status == replay.status == 201, first
        assert replay.headers.get("idempotent-replayed") == "true"
        assert first.json() == replay.json()
        assert first.json()["events"] == ["order.paid"]
        every = post({"url": "https://example.com/h", "events": ["order.paid", "*"]}).json()
        assert every["events"] == ["*"]
        assert every["secret"] != first.json()["secret"]


def test_deleting_an_endpoint_stops_its_deliveries(tmp_path: Path) -> None:
    """An endpoint failing every attempt has an event pending, retried; once deleted it is
    sent nothing more, its pending event is cancelled, and new orders owe it nothing."""
    with Receiver() as hooks, running_server("sqlite", tmp_path, FAST_RETRIES) as srv:
        shop = Shop(srv)
        x, buyer = srv.token("merchant", "x"), srv.token("buyer", "b")
        wh = shop.warehouse(regions=["r1"])
        sku = shop.sku({wh: 10}, token=x)
        ep = register(srv, x, hooks.url("down"))
        hooks.answer("down", *[503] * 1000)
        assert shop.order(buyer, [(sku, 1)], "r1").status == 201
        hooks.wait_for(lambda: len(hooks.hits("down")) >= 3)
        [pending] = deliveries(srv, x, ep["id"])
        assert pending["state"] == "pending", pending
        assert (pending["last_status"], pending["last_error"]) == (503, "HTTP 503")
        assert pending["attempts"] >= 1
        assert pending["next_attempt_at"] is not None

        gone = srv.ok("DELETE", f"/v1/webhook-endpoints/{ep['id']}", token=x)
        assert gone["enabled"] is False
        assert srv.call("GET", f"/v1/webhook-endpoints/{ep['id']}", token=x).status == 404
        assert srv.ok("GET", "/v1/webhook-endpoints", token=x)["endpoints"] == []
        time.sleep(0.1)  # an attempt in flight when it was deleted may still land
        sent = len(hooks.hits("down"))
        assert shop.order(buyer, [(sku, 1)], "r1").status == 201
        time.sleep(0.6)  # several retry periods
        assert len(hooks.hits("down")) == sent
        db = sqlite3.connect(srv.proc.data_dir / "pyorder.sqlite3")
        try:
            rows = db.execute("SELECT state FROM order_events WHERE endpoint_id = ?", (ep["id"],))
            assert [r[0] for r in rows] == ["cancelled"]
        finally:
            db.close()


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_pending_events_survive_a_crash(backend: str, tmp_path: Path) -> None:
    """Events owed to an endpoint that is down, failing with retries, when the server is
    killed (SIGKILL): after a restart, once the endpoint is back, every one is delivered."""
    if backend == "postgres":
        postgres_dsn()
    hooks = Receiver()  # down: connections are refused
    with running_server(backend, tmp_path, FAST_RETRIES) as srv:
        shop = Shop(srv)
        x, buyer = srv.token("merchant", "x"), srv.token("buyer", "b")
        wh = shop.warehouse(regions=["r1"])
        sku = shop.sku({wh: 100}, token=x)
        ep = register(srv, x, hooks.url("x"), ["order.created"])
        secret = ep["secret"]
        single = shop.order(buyer, [(sku, 1)], "r1").json()["id"]
        batch = srv.ok(
            "POST",
            "/v1/orders/batch",
            token=buyer,
            json={"orders": [order_body([(sku, 1)], "r1")] * 20},
        )
        created = {single, *(r["order"]["id"] for r in batch["results"])}
        assert len(created) == 21

        def tried() -> bool:
            return any(d["attempts"] for d in deliveries(srv, x, ep["id"]))

        _wait(tried)
        srv.proc.kill()
        srv.proc.start()
        time.sleep(0.3)  # the restarted server retries against the endpoint still down
        hooks.start()
        try:
            hooks.wait_for(lambda: set(of_type(hooks.events("x"), "order.created")) == created)
            events = [h.verified(secret) for h in hooks.accepted("x")]
        finally:
            hooks.stop()
        assert len({e["id"] for e in events}) == 21, "one event per order, none lost"
        _wait(lambda: {d["state"] for d in deliveries(srv, x, ep["id"])} == {"delivered"})


def _wait(condition: Any, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)
