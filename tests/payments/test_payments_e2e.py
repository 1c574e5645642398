"""Payments end to end over loopback: the real server, real payment sandbox processes, their
ledgers as the truth of what was charged (see ``lib``)."""

from pathlib import Path

import pytest

from tests.support.postgres import postgres_dsn

from .lib import PayWorld, pay_world

CARD = ("card1", "card", ())


def _charged_once(world: PayWorld, order_id: str) -> None:
    charges = [c for box in world.sandboxes.values() for c in box.charges_for(order_id)]
    assert len(charges) == 1, charges
    assert charges[0]["amount"] == 999


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_order_pay_webhook_paid_once(backend: str, tmp_path: Path) -> None:
    if backend == "postgres":
        postgres_dsn()
    with pay_world(backend, tmp_path, [CARD]) as w:
        oid = w.order()
        other = w.srv.token("buyer", "someone-else")
        # Buyers pay only their own orders; the order is not revealed to others.
        assert w.pay(oid, token=other).status == 404
        assert w.srv.call("GET", f"/v1/orders/{oid}/payment", token=other).status == 404
        started = w.pay(oid)
        assert started.status == 202, started
        assert started.json()["status"] == "pending"
        pay = w.wait(oid, order="paid", payment="charged")
        assert (pay["charged"], pay["refunded"], pay["amount"]) == (999, 0, 999)
        [attempt] = pay["attempts"]
        assert (attempt["provider"], attempt["status"]) == ("card1", "succeeded")
        _charged_once(w, oid)
        assert w.shop.totals(w.sku) == {"on_hand": 100, "available": 99, "reserved": 0, "sold": 1}
        # Illegal moves are refused and change nothing.
        again = w.pay(oid)
        assert (again.status, again.error_code) == (409, "invalid_state")
        cancel = w.srv.call(
            "POST", f"/v1/orders/{oid}/cancel", token=w.buyer, headers={"Idempotency-Key": "c1"}
        )
        assert cancel.status == 409
        # After a restart, the paid order and its payment are what they were.
        w.srv.restart()
        assert w.status(oid) == "paid"
        assert w.payment(oid)["status"] == "charged"
        assert w.shop.totals(w.sku)["sold"] == 1
        _charged_once(w, oid)
