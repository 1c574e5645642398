"""A payment that needs the buyer (3-D Secure): the order's payment relays the provider's
``next_action`` while the attempt is ``requires_action``; once the buyer authenticates at the
provider, the order is paid once. The real server and payment sandbox over loopback (``lib``)."""

import time
from pathlib import Path
from typing import Any

import pytest

from tests.support.postgres import postgres_dsn

from .lib import PayWorld, pay_world

CARD = ("card1", "card", ())
AUTH_REQUIRED = "pm_card_authenticationRequired"


def _awaiting_buyer(world: PayWorld, order_id: str, timeout_s: float = 10.0) -> Any:
    """Wait until the order's attempt is requires_action with a next_action; returns it."""
    deadline = time.monotonic() + timeout_s
    attempt: Any = None
    while time.monotonic() < deadline:
        attempt = world.payment(order_id)["attempts"][-1]
        if attempt["status"] == "requires_action" and attempt["next_action"] is not None:
            return attempt
        time.sleep(0.05)
    raise AssertionError(f"order {order_id}: no next_action; {attempt}")


def _authenticate(world: PayWorld, attempt: Any, outcome: str = "approve") -> Any:
    """What the buyer's browser does with the redirect: answer the provider's challenge."""
    action = attempt["next_action"]
    assert action["type"] == "redirect_to_url", action
    url = action["redirect_to_url"]["url"]
    assert url == f"/v1/payment_intents/{attempt['provider_payment_id']}/authenticate"
    return world.sandboxes[attempt["provider"]].admin("POST", url, {"outcome": outcome})


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_next_action_is_relayed_then_paid_once(backend: str, tmp_path: Path) -> None:
    if backend == "postgres":
        postgres_dsn()
    with pay_world(backend, tmp_path, [CARD]) as w:
        oid = w.order()
        assert w.pay(oid, payment_method=AUTH_REQUIRED).status == 202
        attempt = _awaiting_buyer(w, oid)
        pay = w.payment(oid)
        assert (w.status(oid), pay["status"], pay["charged"]) == ("pending_payment", "pending", 0)
        box = w.sandboxes["card1"]
        [intent] = box.ledger()["payment_intents"]
        assert attempt["next_action"] == intent["next_action"]  # as the provider gave it
        assert box.charges_for(oid) == []
        # Whoever may read the order sees it; another buyer does not even see the order.
        admin = w.srv.ok("GET", f"/v1/orders/{oid}/payment", token=w.srv.admin())
        assert admin["attempts"][0]["next_action"] == attempt["next_action"]
        other = w.srv.token("buyer", "someone-else")
        assert w.srv.call("GET", f"/v1/orders/{oid}/payment", token=other).status == 404

        assert _authenticate(w, attempt)["status"] == "succeeded"
        pay = w.wait(oid, order="paid", payment="charged")
        [attempt] = pay["attempts"]
        assert (attempt["status"], attempt["next_action"]) == ("succeeded", None)
        # The succeeded webhook and the reconciler's look-ups both saw the charge: counted once.
        deadline = time.monotonic() + 10
        while any(h["state"] == "pending" for h in box.ledger()["webhooks"]):
            assert time.monotonic() < deadline, box.ledger()["webhooks"]
            time.sleep(0.05)
        time.sleep(0.5)  # a reconciliation round or more
        pay = w.payment(oid)
        assert (pay["status"], pay["charged"], pay["refunded"]) == ("charged", 999, 0)
        assert [c["amount"] for c in box.charges_for(oid)] == [999]
        assert w.shop.totals(w.sku)["sold"] == 1


def test_next_action_is_shown_again_after_a_restart(tmp_path: Path) -> None:
    """next_action is held in memory only: after a restart the reconciler's look-up of the
    attempt fills it again. No webhooks: the confirm answer, then only look-ups, tell it."""
    with pay_world("sqlite", tmp_path, [CARD], webhooks=False) as w:
        oid = w.order()
        assert w.pay(oid, payment_method=AUTH_REQUIRED).status == 202
        before = _awaiting_buyer(w, oid)
        w.srv.restart()
        after = _awaiting_buyer(w, oid)
        assert after["next_action"] == before["next_action"]
        assert _authenticate(w, after)["status"] == "succeeded"
        pay = w.wait(oid, order="paid", payment="charged")
        assert pay["attempts"][0]["next_action"] is None
        assert [c["amount"] for c in w.sandboxes["card1"].charges_for(oid)] == [999]


def test_failed_authentication_fails_the_attempt(tmp_path: Path) -> None:
    """The buyer fails the challenge: the attempt is failed, its next_action gone, nothing is
    charged, and the buyer may pay again."""
    with pay_world("sqlite", tmp_path, [CARD]) as w:
        oid = w.order()
        assert w.pay(oid, payment_method=AUTH_REQUIRED).status == 202
        _authenticate(w, _awaiting_buyer(w, oid), outcome="fail")
        pay = w.wait(oid, order="pending_payment", payment="failed")
        [attempt] = pay["attempts"]
        assert (attempt["status"], attempt["next_action"]) == ("failed", None)
        assert w.sandboxes["card1"].charges_for(oid) == []
        assert w.pay(oid).status == 202
        w.wait(oid, order="paid", payment="charged")
