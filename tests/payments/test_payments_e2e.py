"""Payments end to end over loopback: the real server, real payment sandbox processes, their
ledgers as the truth of what was charged (see ``lib``)."""

import json
import random
import signal
import time
from pathlib import Path

import pytest

from pyorder.kernel.signing import compute_signature, sign
from tests.support.postgres import postgres_dsn

from .lib import SECRET, PayWorld, intent_event, pay_world

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
        # (Cancelling a paid order refunds it: tests/payments/test_refunds_e2e.py.)
        # After a restart, the paid order and its payment are what they were.
        w.srv.restart()
        assert w.status(oid) == "paid"
        assert w.payment(oid)["status"] == "charged"
        assert w.shop.totals(w.sku)["sold"] == 1
        _charged_once(w, oid)


def _lose_second_post_seed(rate: float) -> int:
    """A sandbox seed whose lost-response draws keep the first POST's answer (create) and lose
    the second's (confirm)."""
    for seed in range(1, 10_000):
        rng = random.Random(f"{seed}:lost_response_rate")
        if rng.random() >= rate and rng.random() < rate:
            return seed
    raise AssertionError("no seed found")


def test_lost_response_after_charge_charges_once(tmp_path: Path) -> None:
    """The confirmation charges but its answer is lost (connection closed): the server looks
    the payment up at that provider, finds it charged and pays the order; never a second try
    elsewhere. No webhooks: only the look-up can settle it."""
    seed = _lose_second_post_seed(0.5)
    lossy = ("card1", "card", ("--lost-response-rate", "0.5", "--seed", str(seed)))
    spare = ("card2", "card", ())
    with pay_world("sqlite", tmp_path, [lossy, spare], webhooks=False) as w:
        oid = w.order()
        assert w.pay(oid).status == 202
        pay = w.wait(oid, order="paid", payment="charged")
        assert [a["provider"] for a in pay["attempts"]] == ["card1"]
        _charged_once(w, oid)
        assert w.sandboxes["card2"].ledger()["payment_intents"] == []


@pytest.mark.parametrize("outage", ["hang", "503"])
def test_provider_outage_fails_over_and_charges_once(outage: str, tmp_path: Path) -> None:
    """card1 is down (hangs past the 100 ms timeout, or answers 503): the payment fails over
    to card2 and is charged once; card1's circuit opens after repeated failures."""
    down = ("card1", "card", ("--outage", outage))
    with pay_world("sqlite", tmp_path, [down, ("card2", "card", ())]) as w:
        for _ in range(2):
            oid = w.order()
            assert w.pay(oid).status == 202
            pay = w.wait(oid, order="paid", payment="charged")
            assert pay["attempts"][-1]["provider"] == "card2"
            assert pay["attempts"][0]["status"] in ("abandoned", "succeeded")
            _charged_once(w, oid)
        assert w.sandboxes["card1"].ledger()["charges"] == []


def test_duplicate_and_out_of_order_webhooks_apply_once(tmp_path: Path) -> None:
    """Every event delivered twice and held back behind the next: the order is paid once, the
    charge counted once; stale and replayed events change nothing."""
    noisy = (
        "card1",
        "card",
        (
            "--duplicate-webhook-rate",
            "1",
            "--reorder-webhook-rate",
            "1",
            "--reorder-hold-ms",
            "200",
        ),
    )
    with pay_world("sqlite", tmp_path, [noisy], server_args=("--reconcile-interval-s", "60")) as w:
        oid = w.order()
        assert w.pay(oid).status == 202
        pay = w.wait(oid, order="paid", payment="charged")
        pi = pay["attempts"][0]["provider_payment_id"]
        box = w.sandboxes["card1"]
        deadline = time.monotonic() + 10
        while any(h["state"] == "pending" for h in box.ledger()["webhooks"]):
            assert time.monotonic() < deadline, box.ledger()["webhooks"]
            time.sleep(0.05)
        assert all(h["deliveries"] == 2 for h in box.ledger()["webhooks"])
        # A late "processing" and a re-sent "succeeded" (new event ids) are stale or no-ops.
        late = intent_event(oid, 1, "processing", event_id="evt_late", pi=pi)
        assert w.webhook("card1", late).status == 200
        again = intent_event(oid, 1, "succeeded", event_id="evt_again", pi=pi)
        assert w.webhook("card1", again).json()["duplicate"] is False
        assert w.webhook("card1", again).json()["duplicate"] is True
        pay = w.payment(oid)
        assert (pay["status"], pay["charged"], pay["attempts"][0]["status"]) == (
            "charged",
            999,
            "succeeded",
        )
        assert w.shop.totals(w.sku)["sold"] == 1
        _charged_once(w, oid)


def test_bad_signatures_are_refused_and_change_nothing(tmp_path: Path) -> None:
    """A bank transfer stays processing (60 s to settle): hand-made events about it with a
    tampered body, a stale or missing signature, or another secret are 400 and change nothing;
    a well-signed one whose amount differs from the order is flagged, not accepted."""
    bank = ("bank1", "bank_transfer", ("--settle-ms", "60000"))
    with pay_world("sqlite", tmp_path, [bank]) as w:
        oid = w.order()
        assert w.pay(oid, method="bank_transfer").status == 202
        w.wait(oid, order="pending_payment", payment="pending")
        deadline = time.monotonic() + 5
        while w.payment(oid)["attempts"][0]["status"] != "processing":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        pi = w.payment(oid)["attempts"][0]["provider_payment_id"]
        event = intent_event(oid, 1, "succeeded", event_id="evt_forged", pi=pi)
        body = json.dumps(event).encode()
        tampered = body.replace(b'"amount": 999', b'"amount": 998')
        stale_t = int(time.time()) - 400
        stale = f"t={stale_t},v1={compute_signature(body, SECRET, stale_t)}"
        for raw, header in (
            (tampered, sign(body, SECRET)),
            (body, stale),
            (body, sign(body, "whsec_someone_else")),
            (body, ""),
        ):
            resp = w.srv.call(
                "POST",
                "/v1/webhooks/payments/bank1",
                body=raw,
                headers={"Provider-Signature": header, "Content-Type": "application/json"},
            )
            assert (resp.status, resp.error_code) == (400, "invalid_signature"), resp
        pay = w.payment(oid)
        assert (w.status(oid), pay["status"], pay["charged"]) == ("pending_payment", "pending", 0)
        # Signed, but 1 fen short: recorded and flagged; the order is not paid.
        short = intent_event(oid, 1, "succeeded", event_id="evt_short", pi=pi, amount=998)
        assert w.webhook("bank1", short).status == 200
        pay = w.payment(oid)
        assert (w.status(oid), pay["status"], pay["flag"]) == (
            "pending_payment",
            "flagged",
            "amount_mismatch",
        )
        assert w.shop.totals(w.sku)["sold"] == 0


def test_payment_after_expiry_is_refunded(tmp_path: Path) -> None:
    """The order expires (1.5 s) while its bank transfer settles (2.5 s): the charge that lands
    is refunded automatically, through the same provider, once."""
    bank = ("bank1", "bank_transfer", ("--settle-ms", "2500"))
    with pay_world("sqlite", tmp_path, [bank], server_args=("--payment-timeout-s", "1.5")) as w:
        oid = w.order()
        assert w.pay(oid, method="bank_transfer").status == 202
        pay = w.wait(oid, order="expired", payment="refunded", timeout_s=15)
        assert (pay["charged"], pay["refunded"]) == (999, 999)
        box = w.sandboxes["bank1"]
        [charge] = box.charges_for(oid)
        refunds = [r for r in box.refunds() if r["payment_intent"] == charge["payment_intent"]]
        assert [(r["amount"], r["status"]) for r in refunds] == [(999, "succeeded")]
        assert w.shop.totals(w.sku) == {"on_hand": 100, "available": 100, "reserved": 0, "sold": 0}


def test_kill_between_charge_and_recording_pays_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server is killed (SIGKILL) right after the provider confirmed the charge, before
    anything about it was recorded, with no webhooks to help: after the restart the outbox
    call is sent again with the same idempotency keys, the provider answers what it did, and
    the order is paid once."""
    monkeypatch.setenv("PYORDER_FAILPOINT", "after_charge")
    with pay_world("sqlite", tmp_path, [CARD], webhooks=False) as w:
        oid = w.order()
        assert w.pay(oid).status == 202
        proc = w.srv.proc.proc
        assert proc is not None
        assert proc.wait(timeout=10) == -signal.SIGKILL
        _charged_once(w, oid)
        monkeypatch.delenv("PYORDER_FAILPOINT")
        w.srv.start()
        w.wait(oid, order="paid", payment="charged")
        _charged_once(w, oid)
        assert w.shop.totals(w.sku)["sold"] == 1
