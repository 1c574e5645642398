"""Risk control at payment, end to end: the real server (``--risk``, rules and lists only) and
a real payment sandbox over loopback (``lib``).

- A ``request_3ds`` rule: a big order's payment goes through the provider's 3-D Secure
  challenge (a card that would not need one), a small order's does not; a retry after a failed
  challenge asks again, and so does the attempt after a restart (it is stored).
- A check of each payment when it starts: after two declined cards on one order, a review rule
  on ``buyer_declines_24h`` sends the next attempt through 3-D Secure; admins read the checks.
- Card testing: a buyer's declined authorisations with one card (the sandbox's declining test
  card) are counted with its fingerprint and the request's IP, and rules over
  ``buyer_declines_24h`` and ``ip_declines_1h`` then block that buyer's, and that IP's, next
  orders, while other buyers elsewhere order as before.
"""

import time
from pathlib import Path
from typing import Any

import pytest

from tests.support.postgres import postgres_dsn

from .lib import PayWorld, pay_world

CARD = ("card1", "card", ())
RISK = ("--risk", "--risk-rules-only", "--trusted-proxy", "127.0.0.0/8")
DECLINING = "pm_card_chargeDeclined"
BIG = 60
"""Units of the big order: 60 x 999 = 59,940 minor units, over the rule's 50,000."""


def _backend(backend: str) -> str:
    if backend == "postgres":
        postgres_dsn()
    return backend


def _rule(world: PayWorld, action: str, condition: str) -> None:
    world.srv.ok(
        "POST",
        "/v1/risk/rules",
        token=world.srv.admin(),
        json={"action": action, "condition": condition},
        expect=201,
    )


def _attempt_in(world: PayWorld, order_id: str, status: str, timeout_s: float = 10.0) -> Any:
    """Wait until the order's last attempt is in ``status``; returns it."""
    deadline = time.monotonic() + timeout_s
    attempt: Any = None
    while time.monotonic() < deadline:
        attempts = world.payment(order_id)["attempts"]
        attempt = attempts[-1] if attempts else None
        shown = attempt is not None and attempt["status"] == status
        if shown and (status != "requires_action" or attempt["next_action"] is not None):
            return attempt
        time.sleep(0.05)
    raise AssertionError(f"order {order_id}: last attempt {attempt}, not {status}")


def _authenticate(world: PayWorld, attempt: Any, outcome: str = "approve") -> Any:
    """What the buyer's browser does with the redirect: answer the provider's challenge."""
    action = attempt["next_action"]
    assert action["type"] == "redirect_to_url", action
    url = action["redirect_to_url"]["url"]
    assert url == f"/v1/payment_intents/{attempt['provider_payment_id']}/authenticate"
    return world.sandboxes[attempt["provider"]].admin("POST", url, {"outcome": outcome})


def _intent(world: PayWorld, attempt: Any) -> Any:
    box = world.sandboxes[attempt["provider"]]
    [intent] = [
        i for i in box.ledger()["payment_intents"] if i["id"] == attempt["provider_payment_id"]
    ]
    return intent


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_request_3ds_rule_sends_a_big_orders_payment_through_3d_secure(
    backend: str, tmp_path: Path
) -> None:
    with pay_world(_backend(backend), tmp_path, [CARD], server_args=RISK) as w:
        _rule(w, "request_3ds", "amount >= 50000")
        big, small = w.order(BIG), w.order(1)
        for oid, asked in ((big, True), (small, False)):
            decision = w.srv.ok("GET", f"/v1/orders/{oid}/risk", token=w.srv.admin())
            assert (decision["outcome"], decision["three_ds"]) == ("allow", asked), decision

        # The big order: a card that needs no challenge (pm_card_visa, the default) gets one.
        assert w.pay(big).status == 202
        attempt = _attempt_in(w, big, "requires_action")
        assert attempt["three_ds"] is True
        intent = _intent(w, attempt)
        assert intent["payment_method"] == "pm_card_visa"
        assert intent["payment_method_options"] == {"card": {"request_three_d_secure": "any"}}
        assert attempt["next_action"] == intent["next_action"]
        assert w.sandboxes["card1"].charges_for(big) == []
        assert w.status(big) == "pending_payment"
        assert _authenticate(w, attempt)["status"] == "succeeded"
        pay = w.wait(big, order="paid", payment="charged")
        assert (pay["charged"], pay["attempts"][-1]["next_action"]) == (BIG * 999, None)

        # The small order: no rule fired, no challenge, paid at once.
        assert w.pay(small).status == 202
        pay = w.wait(small, order="paid", payment="charged")
        [attempt] = pay["attempts"]
        assert attempt["three_ds"] is False
        intent = _intent(w, attempt)
        assert intent["payment_method_options"] == {"card": {"request_three_d_secure": "automatic"}}
        assert intent["next_action"] is None
        assert [c["amount"] for c in w.sandboxes["card1"].charges_for(small)] == [999]


def test_3d_secure_is_asked_again_on_a_retry_and_after_a_restart(tmp_path: Path) -> None:
    """The buyer fails the challenge and pays again: the new attempt asks for 3-D Secure too.
    Its request is stored with the attempt: after a restart, with the rule deleted meanwhile,
    the attempt under way still shows it, and the provider's challenge completes the payment
    (no webhooks: the reconciler's look-ups tell the server)."""
    with pay_world("sqlite", tmp_path, [CARD], server_args=RISK, webhooks=False) as w:
        _rule(w, "request_3ds", "amount >= 50000")
        oid = w.order(BIG)
        assert w.pay(oid).status == 202
        _authenticate(w, _attempt_in(w, oid, "requires_action"), outcome="fail")
        assert _attempt_in(w, oid, "failed")["three_ds"] is True

        assert w.pay(oid).status == 202
        second = _attempt_in(w, oid, "requires_action")
        assert (second["number"], second["three_ds"]) == (2, True)
        w.srv.restart()
        after = _attempt_in(w, oid, "requires_action")
        assert (after["number"], after["three_ds"]) == (2, True)
        assert _authenticate(w, after)["status"] == "succeeded"
        pay = w.wait(oid, order="paid", payment="charged")
        assert [a["three_ds"] for a in pay["attempts"]] == [True, True]
        assert [c["amount"] for c in w.sandboxes["card1"].charges_for(oid)] == [BIG * 999]


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_declines_of_card_testing_block_the_buyers_and_the_ips_next_orders(
    backend: str, tmp_path: Path
) -> None:
    with pay_world(_backend(backend), tmp_path, [CARD], server_args=RISK) as w:
        _rule(w, "block", "buyer_declines_24h >= 3")
        _rule(w, "block", "ip_declines_1h >= 3")
        tester_ip = {"X-Forwarded-For": "198.51.100.7"}

        def order(buyer: str, headers: dict[str, str]) -> Any:
            token = w.srv.token("buyer", buyer)
            return w.shop.order(token, [(w.sku, 1)], w.region, headers=headers)

        def decline(order_id: str) -> None:
            resp = w.srv.call(
                "POST",
                f"/v1/orders/{order_id}/payments",
                token=w.buyer,
                json={"method": "card", "payment_method": DECLINING},
                headers={"Idempotency-Key": f"pay-{time.monotonic_ns()}", **tester_ip},
            )
            assert resp.status == 202, resp
            w.wait(order_id, order="pending_payment", payment="failed")

        first = w.order()
        for _ in range(2):
            decline(first)
        # Two declines: under both rules, the buyer still orders.
        second = order("payer", tester_ip)
        assert second.status == 201, second
        decline(str(second.json()["id"]))

        # Three: the buyer is blocked, so is another account from the same IP; nothing reserved.
        reserved = w.shop.totals(w.sku)["reserved"]
        blocked = order("payer", {"X-Forwarded-For": "192.0.2.1"})
        assert (blocked.status, blocked.error_code) == (422, "risk_blocked"), blocked
        same_ip = order("accomplice", tester_ip)
        assert (same_ip.status, same_ip.error_code) == (422, "risk_blocked"), same_ip
        assert w.shop.totals(w.sku)["reserved"] == reserved
        other = order("someone-else", {"X-Forwarded-For": "192.0.2.1"})
        assert other.status == 201, other

        # One card, one fingerprint: the sandbox counted three declines of it.
        declines = w.sandboxes["card1"].ledger()["declines"]
        assert len(declines) == 3
        assert len({d["fingerprint"] for d in declines}) == 1


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_card_testing_on_one_order_steps_up_its_next_attempt_to_3d_secure(
    backend: str, tmp_path: Path
) -> None:
    """Each payment is assessed when it starts. After two declined cards on one order, a review
    rule on ``buyer_declines_24h`` sends the buyer's next attempt of the same order through 3-D
    Secure (with a card that would need none), which its holder passes and pays. The check is
    stored with each attempt, shown to admins and never to the buyer."""
    with pay_world(_backend(backend), tmp_path, [CARD], server_args=RISK) as w:
        _rule(w, "review", "buyer_declines_24h >= 2")
        oid = w.order()
        for _ in range(2):
            assert w.pay(oid, payment_method=DECLINING).status == 202
            w.wait(oid, order="pending_payment", payment="failed")
        assert [a["three_ds"] for a in w.payment(oid)["attempts"]] == [False, False]

        assert w.pay(oid).status == 202
        third = _attempt_in(w, oid, "requires_action")
        assert (third["number"], third["three_ds"]) == (3, True)
        assert _intent(w, third)["payment_method_options"] == {
            "card": {"request_three_d_secure": "any"}
        }
        assert _authenticate(w, third)["status"] == "succeeded"
        pay = w.wait(oid, order="paid", payment="charged")
        assert all(a["risk"] is None for a in pay["attempts"])  # the buyer's view

        admin = w.srv.ok("GET", f"/v1/orders/{oid}/payment", token=w.srv.admin())
        checks = [a["risk"] for a in admin["attempts"]]
        assert [c["outcome"] for c in checks] == ["allow", "allow", "review"]
        assert [c["three_ds"] for c in checks] == [False, False, True]
        assert checks[2]["decided_by"].startswith("rule")
        assert len(checks[2]["fired"]) == 1
        assert checks[2]["order_three_ds"] is False  # the order itself was allowed plainly
