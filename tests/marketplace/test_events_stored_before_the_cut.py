"""Events stored before merchants' views were cut (whole snapshots, and a refund of one
merchant's lines fanned out to every merchant of the order) are cut when they are sent, or not
sent at all: an upgrade sends no merchant another's data from its outbox."""

import json
import sqlite3
import time
from pathlib import Path

from tests.events.lib import FAST_RETRIES, Receiver, deliveries, of_type, register
from tests.server.e2e_lib import Shop, running_server


def test_whole_snapshots_in_the_outbox_are_cut_or_not_sent(tmp_path: Path) -> None:
    with Receiver() as hooks, running_server("sqlite", tmp_path, FAST_RETRIES) as srv:
        shop = Shop(srv)
        x, y = srv.token("merchant", "x"), srv.token("merchant", "y")
        buyer = srv.token("buyer", "b")
        wh = shop.warehouse(regions=["r1"])
        x_sku = shop.sku({wh: 10}, price=700, token=x)
        y_sku = shop.sku({wh: 10}, price=300, token=y)
        ep = register(srv, x, hooks.url("x"), ["order.paid", "order.refunded"])
        placed = shop.order(buyer, [(x_sku, 1), (y_sku, 2)], "r1")
        assert placed.status == 201, placed
        oid = placed.json()["id"]
        whole = srv.ok("GET", f"/v1/orders/{oid}", token=buyer)
        mine = srv.ok("GET", f"/v1/orders/{oid}", token=x)
        refund = {
            "order_id": oid,
            "number": 1,
            "status": "succeeded",
            "amount": 600,
            "currency": "CNY",
            "reason": "broken",
            "lines": [{"sku": y_sku, "quantity": 2}],
            "provider": "card1",
            "provider_refund_id": "re_1",
            "requested_by": "merchant:y",
            "error": "",
            "created_at": whole["created_at"],
            "updated_at": whole["created_at"],
            "settled_at": whole["created_at"],
        }
        stored = [
            ("order.paid", {"object": {**whole, "status": "paid"}, "previous_status": "x"}),
            ("order.refunded", {"object": refund}),
        ]
        srv.stop()
        db = sqlite3.connect(srv.proc.data_dir / "pyorder.sqlite3")
        try:
            now = int(time.time() * 1000)
            with db:
                db.executemany(
                    "INSERT INTO order_events (endpoint_id, merchant, order_id, type, payload,"
                    " created_ms, state, attempts, next_attempt_ms, last_status, last_error,"
                    " updated_ms, delivered_ms)"
                    " VALUES (?, 'merchant:x', ?, ?, ?, ?, 'pending', 0, ?, 0, '', ?, 0)",
                    [
                        (ep["id"], int(oid), kind, json.dumps(data), now, now, now)
                        for kind, data in stored
                    ],
                )
        finally:
            db.close()
        srv.start()

        hooks.wait_for(lambda: of_type(hooks.events("x"), "order.paid") == [oid])

        def states() -> dict[str, tuple[str, int, str]]:
            return {
                d["type"]: (d["state"], d["attempts"], d["last_error"])
                for d in deliveries(srv, x, ep["id"])
            }

        hooks.wait_for(lambda: states().get("order.refunded", ("",))[0] == "cancelled")
        assert states()["order.refunded"][1] == 0, "never sent"
        assert states()["order.refunded"][2], "says why"
        [event] = hooks.events("x")
        obj = event["data"]["object"]
        assert obj == {**mine, "status": "paid"}
        assert [li["sku"] for li in obj["lines"]] == [x_sku]
        assert obj["total"] == 700
        assert "line1" not in obj["address"]
        assert obj["buyer"] != "b"
