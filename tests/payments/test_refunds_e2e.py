"""Refunds end to end over loopback: the real server and a real payment sandbox process, whose
ledger is the truth of what was refunded. Cancelling a paid, unshipped order refunds it in full;
partial refunds (by line or amount) never add up to more than the charge, even when they race;
a crash between sending a refund and recording it refunds once."""

import contextlib
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.support.postgres import postgres_dsn

from .lib import PayWorld, pay_world

CARD = ("card1", "card", ())


def _paid(w: PayWorld, quantity: int = 1) -> str:
    oid = w.order(quantity)
    assert w.pay(oid).status == 202
    w.wait(oid, order="paid", payment="charged")
    return oid


def _refunds_at_provider(w: PayWorld, oid: str) -> list[Any]:
    box = w.sandboxes["card1"]
    [charge] = box.charges_for(oid)
    return [r for r in box.refunds() if r["payment_intent"] == charge["payment_intent"]]


def _cancel(w: PayWorld, oid: str) -> Any:
    return w.srv.call("POST", f"/v1/orders/{oid}/cancel", token=w.buyer)


def _refund(w: PayWorld, oid: str, **body: Any) -> Any:
    return w.srv.call(
        "POST",
        f"/v1/orders/{oid}/refunds",
        token=w.shop.admin,
        json={"reason": "requested_by_customer", **body},
    )


def _refunds(w: PayWorld, oid: str) -> list[Any]:
    out: list[Any] = w.srv.ok("GET", f"/v1/orders/{oid}/refunds", token=w.buyer)["refunds"]
    return out


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_cancel_paid_order_refunds_in_full_once(backend: str, tmp_path: Path) -> None:
    if backend == "postgres":
        postgres_dsn()
    with pay_world(backend, tmp_path, [CARD]) as w:
        oid = _paid(w)
        assert w.shop.totals(w.sku)["sold"] == 1
        cancel = _cancel(w, oid)
        assert cancel.status == 200, cancel
        assert cancel.json()["status"] == "cancelled"
        pay = w.wait(oid, order="cancelled", payment="refunded")
        assert (pay["charged"], pay["refunded"]) == (999, 999)
        [refund] = _refunds(w, oid)
        assert (refund["status"], refund["amount"], refund["reason"]) == (
            "succeeded",
            999,
            "order_cancelled",
        )
        [at_provider] = _refunds_at_provider(w, oid)
        assert (at_provider["amount"], at_provider["status"]) == (999, "succeeded")
        assert at_provider["idempotency_key"] == f"pyorder-{oid}-refund-1"
        assert w.shop.totals(w.sku) == {"on_hand": 100, "available": 100, "reserved": 0, "sold": 0}
        # A second cancel is refused and changes nothing; so is a refund of a cancelled order.
        again = _cancel(w, oid)
        assert (again.status, again.error_code) == (409, "invalid_state")
        assert _refund(w, oid, amount=1).status == 409
        w.srv.restart()
        assert w.status(oid) == "cancelled"
        assert w.payment(oid)["status"] == "refunded"
        assert w.shop.totals(w.sku)["available"] == 100
        assert len(_refunds_at_provider(w, oid)) == 1


def test_partial_refunds_never_exceed_the_charge(tmp_path: Path) -> None:
    with pay_world("sqlite", tmp_path, [CARD]) as w:
        oid = _paid(w, quantity=3)  # 2997
        one = _refund(w, oid, lines=[{"sku": w.sku, "quantity": 1}])
        assert one.status == 202, one
        assert (one.json()["amount"], one.json()["status"]) == (999, "pending")
        assert _refund(w, oid, amount=1500).status == 202
        over = _refund(w, oid, amount=600)  # 999 + 1500 + 600 > 2997
        assert (over.status, over.error_code) == (422, "refund_exceeds_charge"), over
        by_line = _refund(w, oid, lines=[{"sku": w.sku, "quantity": 1}])
        assert (by_line.status, by_line.error_code) == (422, "refund_exceeds_charge")
        too_many = _refund(w, oid, lines=[{"sku": w.sku, "quantity": 3}])
        assert too_many.status == 422
        assert len(_refunds(w, oid)) == 2
        pay = w.wait(oid, order="paid", payment="partially_refunded")
        assert pay["refunded"] == 2499
        assert _refund(w, oid, amount=498).status == 202
        pay = w.wait(oid, order="paid", payment="refunded")
        assert pay["refunded"] == 2997
        at_provider = _refunds_at_provider(w, oid)
        assert sorted(r["amount"] for r in at_provider) == [498, 999, 1500]
        assert all(r["status"] == "succeeded" for r in at_provider)
        assert _refund(w, oid, amount=1).status == 422


def test_concurrent_partial_refunds_never_exceed_the_charge(tmp_path: Path) -> None:
    with pay_world("sqlite", tmp_path, [CARD]) as w:
        oid = _paid(w)  # 999
        with ThreadPoolExecutor(12) as pool:
            answers = list(pool.map(lambda _i: _refund(w, oid, amount=300), range(12)))
        statuses = sorted(a.status for a in answers)
        assert statuses == [202] * 3 + [422] * 9, answers
        deadline = time.monotonic() + 10
        while any(r["status"] == "pending" for r in _refunds(w, oid)):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert sum(r["amount"] for r in _refunds_at_provider(w, oid)) == 900
        assert w.payment(oid)["refunded"] == 900


def test_kill_between_refund_and_recording_refunds_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server is killed (SIGKILL) right after the provider accepted the refund of a
    cancelled order, before that was recorded, with no webhooks to help: after the restart the
    outbox call is resent with the same idempotency key and the provider has one refund."""
    with pay_world("sqlite", tmp_path, [CARD], webhooks=False) as w:
        oid = _paid(w)
        w.srv.stop()
        monkeypatch.setenv("PYORDER_FAILPOINT", "after_refund")
        w.srv.start()
        with contextlib.suppress(OSError):  # the answer may be lost with the process
            _cancel(w, oid)
        proc = w.srv.proc.proc
        assert proc is not None
        assert proc.wait(timeout=10) == -signal.SIGKILL
        assert len(_refunds_at_provider(w, oid)) == 1
        monkeypatch.delenv("PYORDER_FAILPOINT")
        w.srv.start()
        pay = w.wait(oid, order="cancelled", payment="refunded")
        assert pay["refunded"] == 999
        [refund] = _refunds_at_provider(w, oid)
        assert (refund["amount"], refund["status"]) == (999, "succeeded")
        assert w.shop.totals(w.sku) == {"on_hand": 100, "available": 100, "reserved": 0, "sold": 0}


def test_a_cancelled_purchase_stops_counting_against_the_limit(tmp_path: Path) -> None:
    """A paid order cancelled is a void sale: the buyer may buy the units again at once, as a
    restart (which counts the paid orders) would also allow; nothing more."""
    with pay_world("sqlite", tmp_path, [CARD]) as w:
        wh = w.shop.warehouse("pay-limited", regions=[w.region])
        sku = w.shop.sku({wh: 10}, price=999, limit=1)

        def order() -> Any:
            return w.shop.order(w.buyer, [(sku, 1)], w.region)

        first = order()
        assert first.status == 201, first
        oid = str(first.json()["id"])
        assert w.pay(oid).status == 202
        w.wait(oid, order="paid", payment="charged")
        assert order().error_code == "purchase_limit_exceeded"
        assert _cancel(w, oid).status == 200
        second = order()
        assert second.status == 201, second
        assert order().error_code == "purchase_limit_exceeded"  # the second one counts
        w.srv.restart()
        assert order().error_code == "purchase_limit_exceeded"
        assert w.shop.totals(sku) == {"on_hand": 10, "available": 9, "reserved": 1, "sold": 0}
