"""Returns and lightning refunds end to end over loopback: the real server, a real payment
sandbox and a real carrier sandbox process. The carrier books the parcel back and scans it; the
payment sandbox's own ledger is the truth of what was refunded."""

import signal
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.logistics.lib import ship_world
from tests.support.postgres import postgres_dsn

from .lib import (
    LIGHTNING,
    carrier_faults,
    delivered_at,
    delivered_order,
    open_return,
    policy_file,
    read_return,
    refunds_at_provider,
    return_event,
    review,
    wait_return,
)


def _server_args(tmp_path: Path, policy: dict[str, Any] = LIGHTNING) -> tuple[str, ...]:
    return ("--returns-config", policy_file(tmp_path / "policy", policy))


PATIENT = ("--webhook-max-attempts", "100")
"""The carrier keeps retrying its tracking webhooks while the server restarts."""


def _rules(decision: Any) -> dict[str, bool]:
    return {r["rule"]: r["passed"] for r in decision["rules"]}


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_lightning_refund_at_the_pickup_scan(backend: str, tmp_path: Path) -> None:
    """order -> pay -> webhook -> ship -> tracking -> delivered -> return -> pickup scan ->
    refunded with no person involved: exactly one refund of the line's price at the provider,
    the parcel back booked once with its first-weight cost borne by the platform, the units
    back in stock once the parcel reaches the warehouse, and all of it the same after a
    restart."""
    if backend == "postgres":
        postgres_dsn()
    with ship_world(backend, tmp_path, server_args=_server_args(tmp_path)) as w:
        oid = delivered_order(w, [(w.sku, 2)])
        assert w.shop.totals(w.sku)["sold"] == 2
        key = f"return-{oid}"
        opened = open_return(w, oid, [(w.sku, 1)], key=key)
        assert opened.status == 201, opened
        [ret] = opened.json()["returns"]
        assert (ret["status"], ret["amount"], ret["currency"]) == ("requested", 999, "CNY")
        assert ret["cost_borne_by"] == "platform"
        [decision] = ret["decisions"]
        assert (decision["stage"], decision["lightning"], decision["failed"]) == (
            "opened",
            True,
            [],
        )
        assert _rules(decision) == {
            "lightning_enabled": True,
            "order_amount": True,
            "refund_amount": True,
            "charge_left": True,
            "buyer_recent_returns": True,
            "buyer_delivered_orders": True,
            "category": True,
            "order_delivered": True,
        }
        seen = {r["rule"]: (r["observed"], r["limit"]) for r in decision["rules"]}
        assert seen["order_amount"] == (1998, 100_000)
        assert seen["buyer_delivered_orders"] == (1, 1)
        replay = open_return(w, oid, [(w.sku, 1)], key=key)
        assert replay.headers.get("idempotent-replayed") == "true"
        rid = int(ret["id"])
        done = wait_return(w, rid, lambda r: r["restocked_at"] is not None)
        assert done["status"] == "refunded"
        assert done["refund"]["amount"] == 999
        assert done["refund"]["requested_by"] == "system"
        assert done["parcel_status"] == "delivered"
        assert done["shipping_cost"] == 1200  # the sandbox tariff's first weight
        assert done["tracking_number"].startswith("SWIF")
        statuses = [e["status"] for e in done["events"]]
        assert statuses == ["picked_up", "in_transit", "delivered"]
        stages = [(d["stage"], d["lightning"]) for d in done["decisions"]]
        assert stages == [("opened", True), ("picked_up", True)]
        assert _rules(done["decisions"][1])["return_picked_up"] is True
        # The provider's own ledger: one refund, of the returned line's price, succeeded.
        deadline = time.monotonic() + 10
        while refunds_at_provider(w, oid)[0]["status"] != "succeeded":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        [refund] = refunds_at_provider(w, oid)
        assert (refund["amount"], refund["idempotency_key"]) == (999, f"pyorder-{oid}-refund-1")
        # The carrier's ledger: one parcel back, booked under the return's key.
        backs = [s for s in w.carrier.ledger()["shipments"] if s["kind"] == "return"]
        assert [(s["reference"], s["idempotency_key"]) for s in backs] == [
            (f"return-{rid}", f"pyorder-return-{rid}")
        ]
        assert backs[0]["first_weight_cost"] == 1200
        assert w.shop.totals(w.sku) == {"on_hand": 100, "available": 99, "reserved": 0, "sold": 1}
        assert w.srv.ok("GET", f"/v1/orders/{oid}/payment", token=w.buyer)["refunded"] == 999
        assert w.metric("pyorder_lightning_refunds_total") == 1.0
        assert w.metric("pyorder_scan_to_refund_seconds_count") == 1.0
        listed = w.srv.ok("GET", f"/v1/orders/{oid}/returns", token=w.buyer)["returns"]
        assert [r["id"] for r in listed] == [rid]
        w.srv.restart()
        after = read_return(w, rid)
        assert after == done
        assert len(refunds_at_provider(w, oid)) == 1
        assert w.shop.totals(w.sku)["available"] == 99


REVIEWED = {**LIGHTNING, "lightning": {**LIGHTNING["lightning"], "max_refund_amount": 500}}
"""A policy under which a 999 return fails one rule (``refund_amount``) and is reviewed."""


def test_a_return_that_fails_a_rule_is_reviewed(tmp_path: Path) -> None:
    """Failing one rule, returns wait in the merchant's review queue after the pickup scan:
    approved, one is refunded (one refund at the provider, units back in stock); rejected, the
    other is not (nothing at the provider, nothing restocked). Only the merchant of the lines
    (or an admin) reviews, and only once."""
    with ship_world("sqlite", tmp_path, server_args=_server_args(tmp_path, REVIEWED)) as w:
        first, second = delivered_order(w), delivered_order(w)
        ids = []
        for oid in (first, second):
            opened = open_return(w, oid, [(w.sku, 1)])
            assert opened.status == 201, opened
            [ret] = opened.json()["returns"]
            [decision] = ret["decisions"]
            assert (decision["lightning"], decision["failed"]) == (False, ["refund_amount"])
            ids.append(int(ret["id"]))
        for rid in ids:
            done = wait_return(w, rid, lambda r: r["status"] == "in_review")
            assert done["refund"] is None
            assert done["decisions"][1]["failed"] == ["refund_amount"]
        queue = w.srv.ok("GET", "/v1/returns?status=in_review", token=w.merchant)["returns"]
        assert [r["id"] for r in queue] == ids
        assert w.srv.ok("GET", "/v1/returns?status=in_review", token=w.shop.admin)["returns"]
        other = w.srv.token("merchant", "someone-else")
        assert w.srv.ok("GET", "/v1/returns?status=in_review", token=other)["returns"] == []
        eve = w.srv.token("buyer", "eve")
        assert w.srv.call("GET", f"/v1/returns/{ids[0]}", token=eve).status == 404
        assert w.srv.call("GET", f"/v1/returns/{ids[0]}", token=other).status == 404
        assert review(w, ids[0], "approve", token=w.buyer).status == 403
        assert review(w, ids[0], "approve", token=other).status == 404
        approved = review(w, ids[0], "approve")
        assert approved.status == 200, approved
        body = approved.json()
        assert (body["status"], body["refund"]["amount"]) == ("refunded", 999)
        assert body["reviewed_by"] == "merchant:seller"
        again = review(w, ids[0], "approve")
        assert (again.status, again.error_code) == (409, "invalid_state")
        rejected = review(w, ids[1], "reject", reason="the item was worn")
        assert rejected.status == 200, rejected
        assert (rejected.json()["status"], rejected.json()["review_reason"]) == (
            "rejected",
            "the item was worn",
        )
        late = review(w, ids[1], "approve")
        assert (late.status, late.error_code) == (409, "invalid_state")
        assert review(w, ids[1], "reject", reason="twice").status == 409
        wait_return(w, ids[0], lambda r: r["restocked_at"] is not None)
        gone = wait_return(w, ids[1], lambda r: r["parcel_status"] == "delivered")
        assert (gone["status"], gone["restocked_at"], gone["refund"]) == ("rejected", None, None)
        deadline = time.monotonic() + 10
        while refunds_at_provider(w, first)[0]["status"] != "succeeded":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert [r["amount"] for r in refunds_at_provider(w, first)] == [999]
        assert refunds_at_provider(w, second) == []
        # One unit came back to stock (the approved one); the rejected one is still sold.
        assert w.shop.totals(w.sku) == {"on_hand": 100, "available": 99, "reserved": 0, "sold": 1}
        assert w.metric("pyorder_lightning_refunds_total") == 0.0


def test_returns_refused_clearly_change_nothing(tmp_path: Path) -> None:
    """The carrier scans once an hour here, so deliveries are hand-made: a return after its
    category's window, of an excluded category, of more units than bought (or left), of goods
    not delivered (also when only one of two parcels is), of someone else's order: each refused
    with its code, and none booked at the carrier."""
    with ship_world(
        "sqlite", tmp_path, warehouses=2, interval_s=3600, server_args=_server_args(tmp_path)
    ) as w:
        a, b = w.warehouses
        sofa = w.shop.sku({a: 10}, price=5000, token=w.merchant, category="furniture")
        fish = w.shop.sku({a: 10}, price=300, token=w.merchant, category="fresh_food")
        oid = w.paid_order([(w.sku, 1), (sofa, 1), (fish, 1)])
        assert w.ship(oid).status == 202
        w.wait_fulfilment(oid, "shipped")
        early = open_return(w, oid, [(w.sku, 1)])
        assert (early.status, early.error_code) == (409, "not_delivered"), early
        delivered_at(w, oid, datetime.now(UTC) - timedelta(days=8))
        w.wait_fulfilment(oid, "delivered")
        late = open_return(w, oid, [(w.sku, 1)])
        assert (late.status, late.error_code) == (409, "return_window_closed"), late
        assert "7 days after delivery" in late.json()["error"]["message"]
        fresh = open_return(w, oid, [(fish, 1)])
        assert (fresh.status, fresh.error_code) == (422, "category_not_returnable"), fresh
        too_many = open_return(w, oid, [(sofa, 2)])
        assert (too_many.status, too_many.error_code) == (422, "return_exceeds_purchase")
        assert too_many.json()["error"]["details"]["left"] == 1
        unknown = open_return(w, oid, [(10_000, 1)])
        assert (unknown.status, unknown.error_code) == (422, "invalid_input")
        eve = open_return(w, oid, [(sofa, 1)], token=w.srv.token("buyer", "eve"))
        assert eve.status == 404
        assert open_return(w, oid, [(sofa, 1)], token=w.merchant).status == 403
        # The sofa's category has a 30-day window: it is returned; then nothing is left of it.
        sofa_back = open_return(w, oid, [(sofa, 1)])
        assert sofa_back.status == 201, sofa_back
        spent = open_return(w, oid, [(sofa, 1)])
        assert (spent.status, spent.error_code) == (422, "return_exceeds_purchase")
        # A return across two parcels, one of them not delivered, is refused as a whole.
        other = w.shop.sku({b: 10}, price=100, token=w.merchant)
        split = w.paid_order([(sofa, 1), (other, 1)])
        assert w.ship(split).status == 202
        w.wait_fulfilment(split, "shipped")
        delivered_at(w, split, datetime.now(UTC), parcel=1)
        w.wait_fulfilment(split, "partially_delivered")
        spans = open_return(w, split, [(sofa, 1), (other, 1)])
        assert (spans.status, spans.error_code) == (409, "not_delivered"), spans
        unpaid = w.order()
        assert open_return(w, unpaid, [(w.sku, 1)]).error_code == "invalid_state"
        rid = int(sofa_back.json()["returns"][0]["id"])
        booked = wait_return(w, rid, lambda r: r["status"] == "pickup_booked")
        assert booked["shipping_cost"] == 1200
        backs = [s for s in w.carrier.ledger()["shipments"] if s["kind"] == "return"]
        assert [s["reference"] for s in backs] == [f"return-{rid}"]
        mine = w.srv.ok("GET", f"/v1/orders/{oid}/returns", token=w.buyer)["returns"]
        assert [r["id"] for r in mine] == [rid]
        assert w.srv.ok("GET", "/v1/returns", token=w.buyer)["returns"] == mine
        # Not in review: approving or rejecting it is an illegal move that changes nothing.
        assert review(w, rid, "approve").error_code == "invalid_state"
        assert review(w, rid, "reject", reason="no").error_code == "invalid_state"
        assert read_return(w, rid)["status"] == "pickup_booked"


def test_duplicate_and_reordered_pickup_scans_refund_once(tmp_path: Path) -> None:
    """The carrier delivers every scan twice and holds each back behind the next; hand-made
    late and replayed pickup scans follow. The return is refunded once, at one scan, and its
    units restocked once."""
    noisy = (
        "--duplicate-webhook-rate",
        "1",
        "--reorder-webhook-rate",
        "1",
        "--reorder-hold-ms",
        "150",
    )
    with ship_world(
        "sqlite", tmp_path, carrier_args=noisy, server_args=_server_args(tmp_path)
    ) as w:
        oid = delivered_order(w)
        opened = open_return(w, oid, [(w.sku, 1)])
        assert opened.status == 201, opened
        rid = int(opened.json()["returns"][0]["id"])
        done = wait_return(w, rid, lambda r: r["restocked_at"] is not None)
        deadline = time.monotonic() + 10
        while any(h["state"] == "pending" for h in w.carrier.ledger()["webhooks"]):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        late = return_event(rid, 1, "return_pickup_scanned", event_id="evt_late_pickup")
        assert w.webhook(late).json()["duplicate"] is False
        assert w.webhook(late).json()["duplicate"] is True
        after = read_return(w, rid)
        assert after["status"] == "refunded"
        assert after["refund"]["number"] == 1
        assert [(d["stage"], d["lightning"]) for d in after["decisions"]] == [
            ("opened", True),
            ("picked_up", True),
        ]
        events = after["events"]
        assert {e["sequence"] for e in events} == {1, 2, 3}
        applied = [e["sequence"] for e in events if e["applied"]]
        assert applied == sorted(set(applied))  # each scan applied at most once, in order
        assert 3 in applied
        pickups = [e for e in events if e["status"] == "picked_up"]
        assert len(pickups) >= 2  # the carrier's (maybe twice) and the hand-made late one
        assert sum(e["applied"] for e in pickups) <= 1
        assert done["refund"]["number"] == 1
        assert len(refunds_at_provider(w, oid)) == 1
        refunds = w.srv.ok("GET", f"/v1/orders/{oid}/refunds", token=w.buyer)["refunds"]
        assert [r["amount"] for r in refunds] == [999]
        assert w.shop.totals(w.sku) == {"on_hand": 100, "available": 100, "reserved": 0, "sold": 0}
        assert w.metric("pyorder_lightning_refunds_total") == 1.0


def test_kill_after_the_lightning_refund_was_sent_refunds_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server is killed (SIGKILL) right after the provider accepted the lightning refund
    the pickup scan issued, before the answer was recorded: after the restart the outbox call
    is resent with the same key, and the provider holds one refund."""
    with ship_world(
        "sqlite", tmp_path, carrier_args=PATIENT, server_args=_server_args(tmp_path)
    ) as w:
        oid = delivered_order(w)
        w.srv.stop()
        monkeypatch.setenv("PYORDER_FAILPOINT", "after_refund")
        w.srv.start()
        opened = open_return(w, oid, [(w.sku, 1)])
        assert opened.status == 201, opened
        rid = int(opened.json()["returns"][0]["id"])
        proc = w.srv.proc.proc
        assert proc is not None
        assert proc.wait(timeout=15) == -signal.SIGKILL
        assert len(refunds_at_provider(w, oid)) == 1
        monkeypatch.delenv("PYORDER_FAILPOINT")
        w.srv.start()
        done = wait_return(w, rid, lambda r: r["refund"]["status"] == "succeeded")
        assert (done["status"], done["refund"]["amount"]) == ("refunded", 999)
        [refund] = refunds_at_provider(w, oid)
        assert (refund["amount"], refund["idempotency_key"]) == (999, f"pyorder-{oid}-refund-1")
        wait_return(w, rid, lambda r: r["restocked_at"] is not None)
        assert w.shop.totals(w.sku)["sold"] == 0


def test_kill_after_the_carrier_booked_the_parcel_back_books_it_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server is killed (SIGKILL) just after the carrier booked the parcel back, before
    the answer was recorded: after the restart the booking is sent again with the same key,
    the carrier holds one parcel back, and the return goes on to its lightning refund (the
    carrier retries the scans it could not deliver meanwhile)."""
    with ship_world(
        "sqlite", tmp_path, carrier_args=PATIENT, server_args=_server_args(tmp_path)
    ) as w:
        oid = delivered_order(w)
        w.srv.stop()
        monkeypatch.setenv("PYORDER_FAILPOINT", "after_return_booking")
        w.srv.start()
        opened = open_return(w, oid, [(w.sku, 1)])
        assert opened.status == 201, opened
        rid = int(opened.json()["returns"][0]["id"])
        proc = w.srv.proc.proc
        assert proc is not None
        assert proc.wait(timeout=15) == -signal.SIGKILL
        monkeypatch.delenv("PYORDER_FAILPOINT")
        w.srv.start()
        done = wait_return(w, rid, lambda r: r["restocked_at"] is not None)
        assert (done["status"], done["shipping_cost"]) == ("refunded", 1200)
        backs = [s for s in w.carrier.ledger()["shipments"] if s["kind"] == "return"]
        assert [s["idempotency_key"] for s in backs] == [f"pyorder-return-{rid}"]
        assert [r["amount"] for r in refunds_at_provider(w, oid)] == [999]


def test_a_pickup_scan_before_the_booking_is_recorded_refunds_once(tmp_path: Path) -> None:
    """The carrier is down when the return is opened, so its booking is retried; a pickup scan
    arrives meanwhile (requested -> picked_up): the return is refunded at once. Once the carrier
    is back, the booking goes through with the same key and its first-weight cost is recorded;
    the carrier's own pickup scan is then stale and changes nothing."""
    with ship_world("sqlite", tmp_path, server_args=_server_args(tmp_path)) as w:
        oid = delivered_order(w)
        carrier_faults(w, outage="503")
        opened = open_return(w, oid, [(w.sku, 1)])
        assert opened.status == 201, opened
        rid = int(opened.json()["returns"][0]["id"])
        time.sleep(0.3)  # a few refused bookings
        assert read_return(w, rid)["status"] == "requested"
        early = return_event(
            rid, 1, "return_pickup_scanned", event_id="evt_early", tracking_number=""
        )
        assert w.webhook(early).status == 200
        refunded = read_return(w, rid)
        assert (refunded["status"], refunded["refund"]["amount"]) == ("refunded", 999)
        assert refunded["shipping_cost"] == 0  # not booked yet
        carrier_faults(w, outage="none")
        done = wait_return(w, rid, lambda r: r["restocked_at"] is not None)
        assert (done["status"], done["shipping_cost"]) == ("refunded", 1200)
        assert done["tracking_number"].startswith("SWIF")
        carrier_pickup = [e for e in done["events"] if e["status"] == "picked_up"]
        assert [e["applied"] for e in carrier_pickup] == [True, False]
        assert [r["amount"] for r in refunds_at_provider(w, oid)] == [999]
        backs = [s for s in w.carrier.ledger()["shipments"] if s["kind"] == "return"]
        assert len(backs) == 1


def test_a_return_across_parcels_and_merchants_is_one_return_each(tmp_path: Path) -> None:
    """An order of two merchants' SKUs from two warehouses (two parcels), returned whole: one
    return per parcel and merchant, each with its own parcel back, decision and lightning
    refund; each merchant sees only its own."""
    with ship_world("sqlite", tmp_path, warehouses=2, server_args=_server_args(tmp_path)) as w:
        a, b = w.warehouses
        rival = w.srv.token("merchant", "rival")
        theirs = w.shop.sku({a: 10}, price=500, token=rival)
        far = w.shop.sku({b: 10}, price=300, token=w.merchant)
        oid = w.paid_order([(w.sku, 1), (theirs, 1), (far, 1)])
        assert w.ship(oid, token=w.shop.admin).status == 202
        w.wait_fulfilment(oid, "delivered")
        opened = open_return(w, oid, [(w.sku, 1), (theirs, 1), (far, 1)])
        assert opened.status == 201, opened
        made = opened.json()["returns"]
        assert sorted((r["warehouse"], r["merchant"], r["amount"]) for r in made) == [
            (a, "merchant:rival", 500),
            (a, "merchant:seller", 999),
            (b, "merchant:seller", 300),
        ]
        assert all(r["decisions"][0]["lightning"] for r in made)
        for r in made:
            wait_return(w, int(r["id"]), lambda x: x["restocked_at"] is not None)
        deadline = time.monotonic() + 10
        while any(x["status"] != "succeeded" for x in refunds_at_provider(w, oid)):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert sorted(x["amount"] for x in refunds_at_provider(w, oid)) == [300, 500, 999]
        pay = w.srv.ok("GET", f"/v1/orders/{oid}/payment", token=w.buyer)
        assert (pay["refunded"], pay["status"]) == (1799, "refunded")
        backs = [s for s in w.carrier.ledger()["shipments"] if s["kind"] == "return"]
        assert len(backs) == 3
        seen_by = {
            who: [
                r["amount"]
                for r in w.srv.ok("GET", f"/v1/orders/{oid}/returns", token=t)["returns"]
            ]
            for who, t in (("seller", w.merchant), ("rival", rival), ("buyer", w.buyer))
        }
        assert sorted(seen_by["seller"]) == [300, 999]
        assert seen_by["rival"] == [500]
        assert sorted(seen_by["buyer"]) == [300, 500, 999]
        again = open_return(w, oid, [(theirs, 1)])
        assert (again.status, again.error_code) == (422, "return_exceeds_purchase")
