"""Signed carrier tracking events whose values no store could hold, of the wrong type, nested
1,000 deep, with U+0000 or huge strings: each is refused 400 ``invalid_event`` (a JSON error,
never a 500) before anything is staged, and orders placed by other buyers in the same moment
are all created and stored. A carrier's malformed answer to a booking is no answer: the booking
is retried with the same Idempotency-Key until the carrier answers well."""

import json
import time
from pathlib import Path
from typing import Any

import pytest

from pyorder.kernel.signing import sign
from tests.server.e2e_lib import Call, order_body
from tests.support.postgres import postgres_dsn

from .lib import SECRET, ShipWorld, ship_world, tracking_event


def _deep(depth: int) -> str:
    return f"@nested-{depth}@"


def _encode(event: dict[str, Any]) -> bytes:
    """JSON of ``event``, markers of ``_deep`` made arrays nested that deep (json.dumps would
    recurse)."""
    body = json.dumps(event).encode()
    for depth in (1000, 5000):
        body = body.replace(f'"{_deep(depth)}"'.encode(), b"[" * depth + b"]" * depth)
    return body


def bad_events(order_id: str) -> list[tuple[str, bytes]]:
    def scan(name: str, **fields: Any) -> dict[str, Any]:
        event = tracking_event(order_id, 1, 1, "picked_up", event_id=f"evt_{name}")
        event["data"]["object"].update(fields)
        return event

    cases = [
        ("sequence_2_63", scan("s63", sequence=2**63)),
        ("sequence_2_64", scan("s64", sequence=2**64)),
        ("sequence_1e308", scan("sfloat", sequence=1e308)),
        ("sequence_float", scan("sfloat2", sequence=2.0)),
        ("sequence_negative", scan("sneg", sequence=-1)),
        ("sequence_text", scan("stext", sequence="abc")),
        ("sequence_nested", scan("snest", sequence=_deep(1000))),
        ("location_nul", scan("locnul", location="hub\u0000")),
        ("location_huge", scan("lochuge", location="x" * 100_000)),
        ("status_nul", scan("stnul", status="picked_up\u0000")),
        ("reference_nul", scan("refnul", reference=f"{order_id}-1\u0000")),
        ("kind_unknown", scan("kind", kind="sideways")),
        ("time_unreadable", scan("time", occurred_at="yesterday")),
        ("time_without_offset", scan("naive", occurred_at="2026-12-02T10:00:00")),
        ("shipment_path", scan("shpath", shipment="../../v1/returns")),
        ("details_reason_object", scan("reason", details={"reason": {"a": 1}})),
        ("body_too_large", scan("big", padding="x" * 300_000)),
        ("unknown_field_nested_5000", scan("deepunknown", padding=_deep(5000))),
    ]
    deep_id = scan("deepid")
    deep_id["id"] = _deep(1000)
    deep_type = scan("deeptype")
    deep_type["type"] = _deep(1000)
    cases += [("id_nested_1000", deep_id), ("type_nested_1000", deep_type)]
    return [(name, _encode(event)) for name, event in cases]


def _signed(w: ShipWorld, body: bytes) -> Call:
    headers = {"Content-Type": "application/json", "Provider-Signature": sign(body, SECRET)}
    return Call("POST", f"/v1/webhooks/carriers/{w.carrier.name}", body=body, headers=headers)


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_bad_tracking_events_are_400_and_orders_placed_meanwhile_are_stored(
    backend: str, tmp_path: Path
) -> None:
    if backend == "postgres":
        postgres_dsn()
    with ship_world(backend, tmp_path, interval_s=3600) as w:
        oid = w.paid_order()
        assert w.ship(oid).status == 202
        w.wait_fulfilment(oid, "shipped")
        events = bad_events(oid)
        buyers = [w.srv.token("buyer", f"meanwhile-{i}") for i in range(40)]
        orders = [
            Call("POST", "/v1/orders", token=t, json=order_body([(w.sku, 1)], w.region))
            for t in buyers
        ]
        hooks = [_signed(w, body) for _, body in events]
        calls: list[Call] = []
        for i, hook in enumerate(hooks):
            calls += [hook, *orders[2 * i : 2 * i + 2]]
        calls += orders[2 * len(hooks) :]
        answers = dict(zip(map(id, calls), w.srv.concurrently(calls), strict=True))
        for (name, _), hook in zip(events, hooks, strict=True):
            resp = answers[id(hook)]
            assert (resp.status, resp.error_code) == (400, "invalid_event"), (name, resp)
        created = [answers[id(c)] for c in orders]
        assert [r.status for r in created] == [201] * len(orders), [str(r) for r in created]
        for r in created:
            assert w.shop.get_order(str(r.json()["id"]))["status"] == "pending_payment"
        log = w.srv.log_path.read_text()
        assert "commit of" not in log, log[-3000:]
        assert "Traceback" not in log, log[-3000:]
        # Nothing about the parcel changed; a well-formed event still applies.
        view = w.tracking(oid)
        assert view["shipments"][0]["status"] == "created"
        assert view["shipments"][0]["events"] == []
        good = tracking_event(oid, 1, 1, "picked_up", event_id="evt_good")
        assert w.webhook(good).status == 200
        assert w.tracking(oid)["shipments"][0]["status"] == "picked_up"


def test_well_formed_events_that_are_not_ours_are_acknowledged(tmp_path: Path) -> None:
    """A reference with non-ASCII digits (``str.isdigit`` takes "²", ``int`` does not), a
    return reference likewise, and a status we do not know: 200, nothing applied."""
    with ship_world("sqlite", tmp_path, interval_s=3600) as w:
        oid = w.paid_order()
        assert w.ship(oid).status == 202
        w.wait_fulfilment(oid, "shipped")
        cases = [
            tracking_event(oid, 1, 1, "picked_up", event_id="evt_sup", reference="²-1"),
            tracking_event(
                oid, 1, 1, "picked_up", event_id="evt_ret", kind="return", reference="return-²"
            ),
            tracking_event(oid, 1, 1, "teleported", event_id="evt_new_status"),
        ]
        for event in cases:
            resp = w.webhook(event)
            assert resp.status == 200, resp
            assert resp.json()["duplicate"] is False
        view = w.tracking(oid)
        assert view["shipments"][0]["status"] == "created"
        assert view["shipments"][0]["events"] == []


def test_a_malformed_booking_answer_is_retried_until_the_carrier_answers_well(
    tmp_path: Path,
) -> None:
    with ship_world(
        "sqlite", tmp_path, interval_s=3600, carrier_args=("--malformed-response-rate", "1")
    ) as w:
        oid = w.paid_order()
        assert w.ship(oid).status == 202
        time.sleep(1.0)
        # Booked at the carrier (the call was carried out), but its answer was not usable.
        assert len(w.carrier.shipments_for(oid)) == 1
        sh = w.tracking(oid)["shipments"][0]
        assert (sh["status"], sh["tracking_number"]) == ("pending", None), sh
        w.carrier.faults(malformed_response_rate=0.0)
        view = w.wait_fulfilment(oid, "shipped")
        assert view["shipments"][0]["status"] == "created"
        [booked] = w.carrier.shipments_for(oid)  # the retry replayed the first booking
        assert view["shipments"][0]["tracking_number"] == booked["tracking_number"]
        log = w.srv.log_path.read_text()
        assert "malformed answer" in log
        assert "Traceback" not in log
