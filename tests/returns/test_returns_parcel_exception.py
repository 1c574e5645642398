"""The carrier's exception on a parcel back, end to end over loopback (the real server, a
payment sandbox, a carrier sandbox process): before the pickup scan the return fails and its
units are free again; after it, the exception is recorded and no money moves; an exception that
overtook the pickup scan waits for it. The payment sandbox's ledger is the truth of refunds."""

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.logistics.lib import ShipWorld, ship_world
from tests.support.postgres import postgres_dsn

from .lib import (
    carrier_faults,
    delivered_at,
    delivered_order,
    open_return,
    policy_file,
    read_return,
    refunds_at_provider,
    return_event,
    return_shipment,
    review,
    wait_return,
)

SLOW = 3600.0
"""The carrier scans once an hour: deliveries and the parcel back's scans are hand-made."""


def _booked(w: ShipWorld, units: int) -> tuple[str, int, str]:
    """An order of ``units`` delivered by hand, a return of one unit of it booked with the
    carrier: (order id, return id, the carrier's id of the parcel back)."""
    oid = w.paid_order([(w.sku, units)])
    assert w.ship(oid).status == 202
    w.wait_fulfilment(oid, "shipped")
    delivered_at(w, oid, datetime.now(UTC))
    w.wait_fulfilment(oid, "delivered")
    opened = open_return(w, oid, [(w.sku, 1)])
    assert opened.status == 201, opened
    rid = int(opened.json()["returns"][0]["id"])
    wait_return(w, rid, lambda r: r["status"] == "pickup_booked")
    return oid, rid, return_shipment(w, rid)


def _scan(w: ShipWorld, rid: int, seq: int, status: str, event_id: str, **extra: Any) -> Any:
    resp = w.webhook(return_event(rid, seq, status, event_id=event_id, **extra))
    assert resp.status == 200, resp
    return resp.json()


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_an_exception_before_the_pickup_fails_the_return_and_frees_its_units(
    backend: str, tmp_path: Path
) -> None:
    """The carrier never collects the parcel back (an exception as its first scan): the return
    is pickup_failed with its decision and the carrier's reason, no refund, and the unit may be
    returned again. The exception again (same event, a replay, a scan after it) changes
    nothing, and all of it is the same after a restart."""
    if backend == "postgres":
        postgres_dsn()
    args = ("--returns-config", policy_file(tmp_path / "policy"))
    with ship_world(backend, tmp_path, interval_s=SLOW, server_args=args) as w:
        oid, rid, shipment = _booked(w, units=2)
        # The other unit is returned too; only one is left to return now.
        assert open_return(w, oid, [(w.sku, 2)]).error_code == "return_exceeds_purchase"
        exception = return_event(
            rid, 1, "exception", event_id="evt_not_home", shipment=shipment,
            details={"reason": "buyer_not_home"},
        )  # fmt: skip
        assert w.webhook(exception).json()["duplicate"] is False
        failed = read_return(w, rid)
        assert (failed["status"], failed["parcel_status"], failed["refund"]) == (
            "pickup_failed",
            "exception",
            None,
        )
        assert "buyer_not_home" in failed["error"]
        assert "never collected" in failed["error"]
        last = failed["decisions"][-1]
        assert (last["stage"], last["lightning"], last["failed"]) == (
            "pickup_failed",
            False,
            ["return_picked_up"],
        )
        assert last["rules"] == [
            {
                "rule": "return_picked_up",
                "passed": False,
                "observed": "exception (buyer_not_home)",
                "limit": "picked_up",
            }
        ]
        # The same event again, a replay under another id, and a scan after the exception.
        assert w.webhook(exception).json()["duplicate"] is True
        _scan(w, rid, 1, "exception", "evt_not_home_again", shipment=shipment)
        _scan(w, rid, 2, "return_pickup_scanned", "evt_pickup_after", shipment=shipment)
        after = read_return(w, rid)
        assert [(e["sequence"], e["status"], e["applied"]) for e in after["events"]] == [
            (1, "exception", True),
            (1, "exception", False),
            (2, "picked_up", False),
        ]
        assert {**after, "events": []} == {**failed, "events": []}
        # Not the merchant's to review; the buyer sees it among its failed returns.
        assert review(w, rid, "approve").error_code == "invalid_state"
        mine = w.srv.ok("GET", "/v1/returns?status=pickup_failed", token=w.buyer)["returns"]
        assert [r["id"] for r in mine] == [rid]
        # Its unit is free again: both units are returned in a new return.
        again = open_return(w, oid, [(w.sku, 2)])
        assert again.status == 201, again
        [second] = again.json()["returns"]
        assert (second["status"], second["amount"]) == ("requested", 1998)
        assert second["decisions"][0]["lightning"] is True
        assert refunds_at_provider(w, oid) == []
        w.srv.restart()
        assert read_return(w, rid) == after
        assert open_return(w, oid, [(w.sku, 1)]).error_code == "return_exceeds_purchase"


def test_an_exception_before_the_booking_is_recorded_fails_the_return(tmp_path: Path) -> None:
    """The carrier is down when the return is opened; its exception arrives meanwhile
    (requested -> pickup_failed). Once the carrier is back the booking's answer is recorded,
    and the carrier's own scans of that parcel are stale: the return stays failed."""
    args = ("--returns-config", policy_file(tmp_path / "policy"))
    with ship_world("sqlite", tmp_path, server_args=args) as w:
        oid = delivered_order(w)
        carrier_faults(w, outage="503")
        opened = open_return(w, oid, [(w.sku, 1)])
        assert opened.status == 201, opened
        rid = int(opened.json()["returns"][0]["id"])
        _scan(w, rid, 1, "exception", "evt_early_exception", tracking_number="")
        assert read_return(w, rid)["status"] == "pickup_failed"
        carrier_faults(w, outage="none")
        # The carrier then scans the parcel on its own: picked up, in transit, delivered.
        done = wait_return(w, rid, lambda r: r["shipping_cost"] > 0 and len(r["events"]) == 4)
        assert (done["status"], done["parcel_status"]) == ("pickup_failed", "exception")
        assert done["tracking_number"].startswith("SWIF")
        assert [e["applied"] for e in done["events"]] == [True, False, False, False]
        assert refunds_at_provider(w, oid) == []
        assert w.shop.totals(w.sku)["sold"] == 1


def test_an_exception_after_the_pickup_moves_no_money(tmp_path: Path) -> None:
    """The carrier sandbox loses every parcel back in transit (``exception_rate`` 1) and sends
    each scan twice. The lightning return stays refunded (one refund at the provider) and the
    reviewed one stays in the merchant's queue, both with the exception recorded; neither is
    restocked, and approving the reviewed one still refunds it."""
    args = ("--returns-config", policy_file(tmp_path / "policy"))
    with ship_world("sqlite", tmp_path, server_args=args) as w:
        gadget = w.shop.sku(
            {w.warehouses[0]: 10}, price=500, token=w.merchant, category="electronics"
        )
        quick, slow = delivered_order(w), delivered_order(w, [(gadget, 1)])
        carrier_faults(w, exception_rate=1.0, duplicate_webhook_rate=1.0)
        rids = []
        for oid, sku in ((quick, w.sku), (slow, gadget)):
            opened = open_return(w, oid, [(sku, 1)])
            assert opened.status == 201, opened
            rids.append(int(opened.json()["returns"][0]["id"]))
        lost = [wait_return(w, rid, lambda r: r["parcel_status"] == "exception") for rid in rids]
        refunded, reviewed = lost
        assert (refunded["status"], refunded["refund"]["amount"]) == ("refunded", 999)
        assert (reviewed["status"], reviewed["refund"]) == ("in_review", None)
        for r in lost:
            assert "after the pickup scan" in r["error"]
            assert "parcel_refused" in r["error"]
            assert (r["restocked_at"], r["arrived_at"]) == (None, None)
            assert [d["stage"] for d in r["decisions"]] == ["opened", "picked_up"]
            exceptions = [e for e in r["events"] if e["status"] == "exception"]
            assert sum(e["applied"] for e in exceptions) == 1
        queue = w.srv.ok("GET", "/v1/returns?status=in_review", token=w.merchant)["returns"]
        assert [(q["id"], q["parcel_status"]) for q in queue] == [(rids[1], "exception")]
        approved = review(w, rids[1], "approve")
        assert approved.status == 200, approved
        assert approved.json()["refund"]["amount"] == 500
        deadline = time.monotonic() + 10
        while any(x["status"] != "succeeded" for x in refunds_at_provider(w, quick)):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert [x["amount"] for x in refunds_at_provider(w, quick)] == [999]
        assert [x["amount"] for x in refunds_at_provider(w, slow)] == [500]
        assert w.shop.totals(w.sku)["sold"] == 1
        assert w.shop.totals(gadget)["sold"] == 1


def test_an_exception_that_overtook_the_pickup_scan_waits_for_it(tmp_path: Path) -> None:
    """The exception (sequence 3) arrives before the scans before it: the return waits, the
    exception noted. The late in-transit scan says the parcel was collected: the pickup is
    decided on it and refunded once, as in order; the pickup scan after it is stale."""
    args = ("--returns-config", policy_file(tmp_path / "policy"))
    with ship_world("sqlite", tmp_path, interval_s=SLOW, server_args=args) as w:
        oid, rid, shipment = _booked(w, units=1)
        _scan(w, rid, 3, "exception", "evt_lost", shipment=shipment)
        held = read_return(w, rid)
        assert (held["status"], held["parcel_status"]) == ("pickup_booked", "exception")
        assert "missing" in held["error"]
        _scan(w, rid, 2, "in_transit", "evt_transit", shipment=shipment)
        done = read_return(w, rid)
        assert (done["status"], done["refund"]["amount"]) == ("refunded", 999)
        assert done["parcel_status"] == "exception"
        assert [(d["stage"], d["lightning"]) for d in done["decisions"]] == [
            ("opened", True),
            ("picked_up", True),
        ]
        _scan(w, rid, 1, "return_pickup_scanned", "evt_pickup", shipment=shipment)
        _scan(w, rid, 2, "in_transit", "evt_transit_again", shipment=shipment)
        final = read_return(w, rid)
        assert [(e["sequence"], e["applied"]) for e in final["events"]] == [
            (1, False),
            (2, True),
            (2, False),
            (3, True),
        ]
        assert (final["status"], final["refund"]["number"]) == ("refunded", 1)
        assert [r["amount"] for r in refunds_at_provider(w, oid)] == [999]
        assert final["restocked_at"] is None
