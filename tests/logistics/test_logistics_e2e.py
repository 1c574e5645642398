"""Logistics end to end over loopback: the real server, a real payment sandbox and a real
carrier sandbox process; the carrier's ledger is the truth of what was booked (see ``lib``)."""

import json
import signal
import time
from pathlib import Path

import pytest

from pyorder.kernel.signing import compute_signature, sign
from tests.support.postgres import postgres_dsn

from .lib import SECRET, ShipWorld, ship_world, tracking_event

JOURNEY = ["picked_up", "in_transit", "out_for_delivery", "delivered"]


def _settled(w: ShipWorld, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not w.carrier.webhooks_settled():
        assert time.monotonic() < deadline, w.carrier.ledger()["webhooks"]
        time.sleep(0.05)


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_pay_ship_track_delivered(backend: str, tmp_path: Path) -> None:
    """Order, window, pay, ship, tracking, delivered: the buyer reads every scan; fulfilment
    time is recorded and in /metrics; one shipment at the carrier, with the window."""
    if backend == "postgres":
        postgres_dsn()
    with ship_world(backend, tmp_path) as w:
        oid = w.order()
        window = w.window(capacity=5)
        picked = w.pick(oid, window)
        assert picked.status == 200, picked
        assert picked.json()["delivery_window"]["remaining"] == 4
        # Shipping an unpaid order is refused and changes nothing.
        early = w.ship(oid)
        assert (early.status, early.error_code) == (409, "invalid_state")
        w.pay(oid)
        assert w.tracking(oid)["fulfilment_status"] == "unfulfilled"
        # Buyers do not ship; other merchants do not see the order; other buyers neither.
        assert w.ship(oid, token=w.buyer).status == 403
        assert w.ship(oid, token=w.srv.token("merchant", "other")).status == 404
        other = w.srv.token("buyer", "eve")
        assert w.srv.call("GET", f"/v1/orders/{oid}/shipments", token=other).status == 404
        assert w.pick(oid, window, token=other).status == 404
        key = f"ship-{oid}"
        shipped = w.ship(oid, key=key)
        assert shipped.status == 202, shipped
        assert [s["status"] for s in shipped.json()["shipments"]] == ["pending"]
        replay = w.ship(oid, key=key)
        assert replay.headers.get("idempotent-replayed") == "true"
        again = w.ship(oid)
        assert (again.status, again.error_code) == (409, "already_shipped")
        late_pick = w.pick(oid, window)
        assert (late_pick.status, late_pick.error_code) == (409, "already_shipped")
        done = w.wait_fulfilment(oid, "delivered")
        _settled(w)
        done = w.tracking(oid)
        [parcel] = done["shipments"]
        assert parcel["status"] == "delivered"
        assert parcel["tracking_number"].startswith("SWIF")
        assert [e["status"] for e in parcel["events"]] == JOURNEY
        assert all(e["applied"] for e in parcel["events"])
        assert done["fulfilment_ms"] is not None
        assert done["fulfilment_ms"] > 0
        assert done["delivered_at"] is not None
        assert done["paid_at"] is not None
        assert w.srv.ok("GET", f"/v1/orders/{oid}/shipments", token=w.merchant) == done
        assert w.srv.ok("GET", f"/v1/orders/{oid}", token=w.buyer)["status"] == "paid"
        [booked] = w.carrier.shipments_for(oid)
        assert booked["delivery_window"] is not None
        assert booked["idempotency_key"] == f"pyorder-ship-{oid}-1"
        assert booked["reference"] == f"{oid}-1"
        assert w.metric("pyorder_fulfilment_seconds_count") == 1.0
        # After a restart, all of it is what it was.
        # (The window has ended by now, so it is no longer listed for the region; the order
        # still says which it is and what it booked.)
        w.srv.restart()
        assert w.tracking(oid) == done
        assert (done["delivery_window"]["id"], done["delivery_window"]["booked"]) == (window, 1)
        assert len(w.carrier.shipments_for(oid)) == 1


def test_split_order_ships_one_parcel_per_warehouse(tmp_path: Path) -> None:
    """Lines matched to two warehouses are two parcels; shipped one at a time, the order is
    partially shipped, partially delivered, then delivered."""
    with ship_world("sqlite", tmp_path, warehouses=2) as w:
        a, b = w.warehouses
        other = w.shop.sku({b: 10}, price=500, token=w.merchant)
        oid = w.paid_order([(w.sku, 1), (other, 2)])
        first = w.ship(oid, warehouse=a)
        assert first.status == 202, first
        assert [s["warehouse"] for s in first.json()["shipments"]] == [a]
        assert w.ship(oid, warehouse=a).error_code == "already_shipped"
        w.wait_fulfilment(oid, "partially_delivered")
        assert w.ship(oid).status == 202
        done = w.wait_fulfilment(oid, "delivered")
        parcels = {s["warehouse"]: s for s in done["shipments"]}
        assert set(parcels) == {a, b}
        assert parcels[b]["lines"] == [{"sku": other, "quantity": 2}]
        assert sorted(s["reference"] for s in w.carrier.shipments_for(oid)) == [
            f"{oid}-1",
            f"{oid}-2",
        ]


def test_auto_ship_on_payment(tmp_path: Path) -> None:
    with ship_world("sqlite", tmp_path, server_args=("--auto-ship",)) as w:
        oid = w.paid_order()
        w.wait_fulfilment(oid, "delivered")
        assert len(w.carrier.shipments_for(oid)) == 1


def test_duplicate_and_out_of_order_tracking_events_apply_once(tmp_path: Path) -> None:
    """Every event delivered twice and held back behind the next: the parcel ends delivered,
    each scan applied at most once, in sequence; hand-made late and replayed events change
    nothing."""
    noisy = (
        "--duplicate-webhook-rate",
        "1",
        "--reorder-webhook-rate",
        "1",
        "--reorder-hold-ms",
        "150",
    )
    with ship_world("sqlite", tmp_path, carrier_args=noisy) as w:
        oid = w.paid_order()
        assert w.ship(oid).status == 202
        done = w.wait_fulfilment(oid, "delivered")
        _settled(w)
        assert all(h["deliveries"] == 2 for h in w.carrier.ledger()["webhooks"])
        done = w.tracking(oid)
        events = done["shipments"][0]["events"]
        assert sorted(e["sequence"] for e in events) == [1, 2, 3, 4]  # once each
        applied = [e["sequence"] for e in events if e["applied"]]
        assert 4 in applied
        assert applied == sorted(applied)
        assert done["shipments"][0]["status"] == "delivered"
        # A late in_transit (new id) is recorded, not applied; a replayed id is a duplicate.
        late = tracking_event(oid, 1, 2, "in_transit", event_id="evt_late")
        assert w.webhook(late).json()["duplicate"] is False
        assert w.webhook(late).json()["duplicate"] is True
        after = w.tracking(oid)
        assert (after["fulfilment_status"], after["shipments"][0]["status"]) == (
            "delivered",
            "delivered",
        )
        assert after["fulfilment_ms"] == done["fulfilment_ms"]
        assert w.metric("pyorder_fulfilment_seconds_count") == 1.0
        assert len(w.carrier.shipments_for(oid)) == 1


def test_bad_signatures_are_refused_and_change_nothing(tmp_path: Path) -> None:
    """The carrier scans once an hour here: hand-made events about a booked parcel with a
    tampered body, a stale, missing or foreign signature are 400 and change nothing; a
    well-signed one applies; an unknown carrier is 404."""
    with ship_world("sqlite", tmp_path, interval_s=3600) as w:
        oid = w.paid_order()
        assert w.ship(oid).status == 202
        w.wait_fulfilment(oid, "shipped")
        event = tracking_event(oid, 1, 1, "picked_up", event_id="evt_forged")
        body = json.dumps(event).encode()
        tampered = body.replace(b'"sequence": 1', b'"sequence": 9')
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
                "/v1/webhooks/carriers/swift",
                body=raw,
                headers={"Provider-Signature": header, "Content-Type": "application/json"},
            )
            assert (resp.status, resp.error_code) == (400, "invalid_signature"), resp
        view = w.tracking(oid)
        assert (view["fulfilment_status"], view["shipments"][0]["status"]) == ("shipped", "created")
        assert view["shipments"][0]["events"] == []
        unknown = w.srv.call("POST", "/v1/webhooks/carriers/nobody", body=body)
        assert unknown.status == 404
        # Signed properly, the same event applies; then an illegal move (back to created's
        # successor after exception) is recorded and ignored.
        assert w.webhook(event).status == 200
        assert w.tracking(oid)["shipments"][0]["status"] == "picked_up"
        failed = tracking_event(oid, 1, 2, "exception", event_id="evt_x", details={"reason": "r"})
        assert w.webhook(failed).status == 200
        back = tracking_event(oid, 1, 3, "out_for_delivery", event_id="evt_back")
        assert w.webhook(back).status == 200
        view = w.tracking(oid)
        assert view["shipments"][0]["status"] == "exception"
        assert [e["applied"] for e in view["shipments"][0]["events"]] == [True, True, False]


def test_window_capacity_is_never_oversold(tmp_path: Path) -> None:
    """N+1 buyers pick a window of capacity N at once: exactly N get it, the other a clear
    409 window_full; a cancelled order gives its place back; the count survives a restart."""
    n = 5
    with ship_world("sqlite", tmp_path) as w:
        window = w.window(capacity=n, start_s=3600)
        buyers = [w.srv.token("buyer", f"b{i}") for i in range(n + 1)]
        orders = [w.order(token=t) for t in buyers]
        from tests.server.e2e_lib import Call

        calls = [
            Call(
                "POST",
                f"/v1/orders/{oid}/delivery-window",
                token=t,
                json={"window": window},
                headers={"Idempotency-Key": f"pick-{oid}"},
            )
            for oid, t in zip(orders, buyers, strict=True)
        ]
        answers = w.srv.concurrently(calls)
        assert sorted(r.status for r in answers) == [200] * n + [409], answers
        [full] = [r for r in answers if r.status == 409]
        assert full.error_code == "window_full"
        listed = w.srv.ok("GET", f"/v1/regions/{w.region}/delivery-windows", token=w.buyer)
        assert [(x["booked"], x["remaining"]) for x in listed["windows"]] == [(n, 0)]
        w.srv.restart()
        listed = w.srv.ok("GET", f"/v1/regions/{w.region}/delivery-windows", token=w.buyer)
        assert listed["windows"][0]["booked"] == n
        # A cancelled order frees its place; the refused buyer then gets it.
        holder = next(i for i, r in enumerate(answers) if r.status == 200)
        loser = next(i for i, r in enumerate(answers) if r.status == 409)
        w.srv.ok(
            "POST",
            f"/v1/orders/{orders[holder]}/cancel",
            token=buyers[holder],
            headers={"Idempotency-Key": "c"},
        )
        assert w.pick(orders[loser], window, token=buyers[loser]).status == 200
        # A window of another region is refused.
        elsewhere = w.shop.warehouse("far", regions=["ship-south"])
        assert elsewhere >= 0
        resp = w.srv.call(
            "POST",
            "/v1/regions/ship-south/delivery-windows",
            token=w.shop.admin,
            json={"start": "2099-01-01T00:00:00Z", "end": "2099-01-01T02:00:00Z", "capacity": 1},
        )
        assert resp.status == 201, resp
        wrong = w.pick(orders[loser], int(resp.json()["id"]), token=buyers[loser])
        assert (wrong.status, wrong.error_code) == (422, "window_unavailable")


@pytest.mark.parametrize("failpoint", ["before_ship", "after_ship"])
def test_kill_around_the_carrier_call_books_one_shipment(
    failpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server is killed (SIGKILL) once the parcel is durable, just before calling the
    carrier or just after the carrier booked it and before the answer is recorded: after the
    restart the booking is sent again with the same Idempotency-Key, and the carrier's ledger
    holds exactly one shipment; the order is delivered."""
    with ship_world("sqlite", tmp_path) as w:
        oid = w.paid_order()
        w.srv.stop()
        monkeypatch.setenv("PYORDER_FAILPOINT", failpoint)
        w.srv.start()
        assert w.ship(oid).status == 202
        proc = w.srv.proc.proc
        assert proc is not None
        assert proc.wait(timeout=10) == -signal.SIGKILL
        expected = 0 if failpoint == "before_ship" else 1
        assert len(w.carrier.shipments_for(oid)) == expected
        monkeypatch.delenv("PYORDER_FAILPOINT")
        w.srv.start()
        w.wait_fulfilment(oid, "delivered")
        assert len(w.carrier.shipments_for(oid)) == 1
