"""The carrier sandbox: shipments, tracking events over scaled time, returns, quotes."""

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from pyorder.kernel.signing import SignatureMismatch, verify
from sandbox.bodies import iso
from sandbox.carrier.config import CarrierFaults, CarrierSettings
from sandbox.carrier.tariff import Tariff
from tests.sandbox.receiver import Receiver, webhook_receiver
from tests.sandbox.support import (
    CARRIER_SECRET,
    PAYMENT_SECRET,
    carrier_sandbox,
    eventually,
    new_key,
)

WAREHOUSE = {"name": "West DC", "line1": "1 Depot Road", "city": "Chengdu", "region": "west"}
BUYER = {"name": "Alice", "line1": "9 Garden St", "city": "Shanghai", "region": "east"}
PARCEL = {"to": BUYER, "from": WAREHOUSE, "weight_g": 800, "reference": "order-7001"}
OUTBOUND = ["picked_up", "in_transit", "out_for_delivery", "delivered"]


def _statuses(hooks: Receiver, endpoint: str = "swift") -> list[str]:
    return [e["data"]["object"]["status"] for e in hooks.events(endpoint)]


def _parse(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


async def test_a_shipment_is_scanned_in_order_to_delivery() -> None:
    async with webhook_receiver() as hooks, carrier_sandbox(hooks.url("swift")) as api:
        shipment = await api.ok("POST", "/v1/shipments", PARCEL, key=new_key())
        assert shipment["status"] == "created"
        assert shipment["tracking_number"].startswith("SWIF")
        assert (shipment["kind"], shipment["reference"]) == ("outbound", "order-7001")
        assert shipment["events"] == []
        await hooks.wait_for(lambda: len(hooks.events("swift")) == 4)
        assert _statuses(hooks) == OUTBOUND
        received = hooks.accepted("swift")
        for delivery in received:
            verify(delivery.body, delivery.signature, CARRIER_SECRET)
            with pytest.raises(SignatureMismatch):
                verify(delivery.body, delivery.signature, PAYMENT_SECRET)
        events = [r.event for r in received]
        assert [e["type"] for e in events] == [f"tracking.{s}" for s in OUTBOUND]
        scans = [e["data"]["object"] for e in events]
        assert [s["sequence"] for s in scans] == [1, 2, 3, 4]
        assert {s["shipment"] for s in scans} == {shipment["id"]}
        assert {s["tracking_number"] for s in scans} == {shipment["tracking_number"]}
        assert [s["location"] for s in scans] == [
            "Chengdu",
            "sorting centre",
            "Shanghai",
            "Shanghai",
        ]
        # Carrier time: an hour between scans, however fast the test runs.
        created = _parse(shipment["created_at"])
        assert [_parse(s["occurred_at"]) - created for s in scans] == [
            timedelta(hours=h) for h in (1, 2, 3, 4)
        ]
        now = await api.ok("GET", f"/v1/shipments/{shipment['id']}")
        assert now["status"] == "delivered"
        assert now["delivered_at"] == scans[-1]["occurred_at"] == now["estimated_delivery_at"]
        assert [e["id"] for e in now["events"]] == [s["id"] for s in scans]
        assert await api.ok("GET", f"/v1/tracking/{shipment['tracking_number']}") == now


async def test_a_delivery_window_is_met() -> None:
    async with webhook_receiver() as hooks, carrier_sandbox(hooks.url("swift")) as api:
        start = datetime.now(UTC) + timedelta(hours=10)
        window = {"start": iso(start), "end": iso(start + timedelta(hours=2))}
        shipment = await api.ok("POST", "/v1/shipments", PARCEL | {"delivery_window": window})
        assert shipment["delivery_window"] == window
        await hooks.wait_for(lambda: len(hooks.events("swift")) == 4, timeout_s=10)
        delivered = hooks.events("swift")[-1]["data"]["object"]
        assert delivered["status"] == "delivered"
        assert delivered["details"] == {"window_met": True}
        assert start <= _parse(delivered["occurred_at"]) <= start + timedelta(hours=2)
        out = hooks.events("swift")[-2]["data"]["object"]
        assert _parse(out["occurred_at"]) < _parse(delivered["occurred_at"])


async def test_a_window_that_is_too_soon_is_missed_and_a_reversed_one_refused() -> None:
    async with carrier_sandbox() as api:
        start = datetime.now(UTC) + timedelta(minutes=30)
        soon = {"start": iso(start), "end": iso(start + timedelta(hours=1))}
        shipment = await api.ok("POST", "/v1/shipments", PARCEL | {"delivery_window": soon})

        async def delivered() -> bool:
            now = await api.ok("GET", f"/v1/shipments/{shipment['id']}")
            return bool(now["status"] == "delivered")

        await eventually(delivered)
        last = (await api.ok("GET", f"/v1/shipments/{shipment['id']}"))["events"][-1]
        assert last["details"] == {"window_met": False}
        backwards = {"start": soon["end"], "end": soon["start"]}
        refused = await api.post("/v1/shipments", PARCEL | {"delivery_window": backwards})
        assert (refused.status, refused.error_code) == (422, "invalid_input")
        naive = {"start": "2026-11-11T09:00:00", "end": "2026-11-11T12:00:00"}
        assert (await api.post("/v1/shipments", PARCEL | {"delivery_window": naive})).status == 422


async def test_an_exception_ends_the_journey() -> None:
    async with webhook_receiver() as hooks, carrier_sandbox(hooks.url("swift")) as api:
        await api.ok("POST", "/v1/shipments", PARCEL | {"scenario": "exception"})
        await hooks.wait_for(lambda: len(hooks.events("swift")) == 3)
        assert _statuses(hooks) == ["picked_up", "in_transit", "exception"]
        assert hooks.events("swift")[-1]["data"]["object"]["details"] == {
            "reason": "address_not_found"
        }
        [shipment] = (await api.ledger())["shipments"]
        assert shipment["status"] == "exception"
        assert shipment["estimated_delivery_at"] is None


async def test_exception_rate_applies_unless_a_scenario_is_given() -> None:
    async with carrier_sandbox(faults=CarrierFaults(exception_rate=1.0)) as api:
        doomed = await api.ok("POST", "/v1/shipments", PARCEL)
        forced = await api.ok("POST", "/v1/shipments", PARCEL | {"scenario": "deliver"})

        async def done() -> bool:
            rows = (await api.ledger())["shipments"]
            return all(r["status"] in ("delivered", "exception") for r in rows)

        await eventually(done)
        final = {r["id"]: r["status"] for r in (await api.ledger())["shipments"]}
        assert final == {doomed["id"]: "exception", forced["id"]: "delivered"}


async def test_a_return_starts_with_the_pickup_scan_and_ends_at_the_warehouse() -> None:
    async with webhook_receiver() as hooks, carrier_sandbox(hooks.url("swift")) as api:
        outbound = await api.ok("POST", "/v1/shipments", PARCEL)
        await hooks.wait_for(lambda: len(hooks.events("swift")) == 4)
        body = {
            "from": BUYER,
            "to": WAREHOUSE,
            "weight_g": 2300,
            "reference": "order-7001",
            "original_tracking_number": outbound["tracking_number"],
        }
        key = new_key()
        returned = await api.ok("POST", "/v1/returns", body, key=key)
        assert (returned["kind"], returned["status"]) == ("return", "created")
        assert returned["original_tracking_number"] == outbound["tracking_number"]
        assert (returned["cost"], returned["first_weight_cost"]) == (1200 + 2 * 500, 1200)
        await hooks.wait_for(lambda: len(hooks.events("swift")) == 7)
        scans = [e["data"]["object"] for e in hooks.events("swift")[4:]]
        assert [s["status"] for s in scans] == ["return_pickup_scanned", "in_transit", "delivered"]
        assert {s["kind"] for s in scans} == {"return"}
        assert [s["location"] for s in scans] == ["Shanghai", "sorting centre", "Chengdu"]
        replay = await api.post("/v1/returns", body, key=key)
        assert replay.headers["Idempotent-Replayed"] == "true"
        assert replay.json()["id"] == returned["id"]
        ledger = await api.ledger()
        assert [s["kind"] for s in ledger["shipments"]] == ["outbound", "return"]
        assert ledger["shipments"][1]["idempotency_key"] == key
        assert ledger["totals"] == {"CNY": {"cost": 1200 + 2200, "shipments": 2}}


@pytest.mark.parametrize(
    ("weight_g", "total"),
    [(1, 1200), (1000, 1200), (1001, 1700), (2000, 1700), (2001, 2200), (10_500, 1200 + 10 * 500)],
)
async def test_return_quotes_price_the_first_weight_and_each_started_kilogram(
    weight_g: int, total: int
) -> None:
    async with carrier_sandbox() as api:
        quote = await api.ok("POST", "/v1/return_quotes", {"weight_g": weight_g, "from": BUYER})
        assert quote == {
            "object": "quote",
            "currency": "CNY",
            "weight_g": weight_g,
            "first_weight_g": 1000,
            "first_weight_cost": 1200,
            "additional_weight_cost": total - 1200,
            "total_cost": total,
        }


async def test_a_tariff_of_ones_own() -> None:
    tariff = Tariff(
        currency="USD", first_weight_g=500, first_weight_cost=899, additional_cost_per_kg=250
    )
    async with carrier_sandbox(settings=CarrierSettings(tariff=tariff)) as api:
        quote = await api.ok("POST", "/v1/return_quotes", {"weight_g": 1600})
        assert (quote["currency"], quote["first_weight_cost"], quote["total_cost"]) == (
            "USD",
            899,
            899 + 2 * 250,
        )
        bad = await api.post("/v1/return_quotes", {"weight_g": 0})
        assert bad.status == 422


async def test_create_is_idempotent_by_key() -> None:
    async with carrier_sandbox() as api:
        key = new_key()
        first = await api.post("/v1/shipments", PARCEL, key=key)
        second = await api.post("/v1/shipments", PARCEL, key=key)
        assert second.body == first.body
        assert second.headers["Idempotent-Replayed"] == "true"
        other = await api.post("/v1/shipments", PARCEL | {"weight_g": 801}, key=key)
        assert (other.status, other.error_code) == (422, "idempotency_key_reused")
        assert len((await api.ledger())["shipments"]) == 1


async def test_cancel_before_pickup_stops_the_journey_and_the_bill() -> None:
    slow = CarrierSettings(event_interval_s=3600, time_scale=3600 / 0.3)
    async with (
        webhook_receiver() as hooks,
        carrier_sandbox(hooks.url("swift"), settings=slow) as api,
    ):
        shipment = await api.ok("POST", "/v1/shipments", PARCEL)
        canceled = await api.ok("POST", f"/v1/shipments/{shipment['id']}/cancel")
        assert (canceled["status"], canceled["cost"]) == ("canceled", 0)
        other = await api.ok("POST", "/v1/shipments", PARCEL)
        await hooks.wait_for(lambda: len(hooks.events("swift")) == 1, timeout_s=3)
        late = await api.post(f"/v1/shipments/{other['id']}/cancel")
        assert (late.status, late.error_code) == (409, "shipment_unexpected_state")
        assert {e["data"]["object"]["shipment"] for e in hooks.events("swift")} == {other["id"]}
        ledger = await api.ledger()
        assert ledger["totals"]["CNY"] == {"cost": 1200, "shipments": 1}


async def test_carrier_events_can_be_duplicated_and_reordered() -> None:
    faults = CarrierFaults(duplicate_webhook_rate=1.0, reorder_webhook_rate=1.0)
    async with (
        webhook_receiver() as hooks,
        carrier_sandbox(hooks.url("swift"), faults=faults) as api,
    ):
        shipment = await api.ok("POST", "/v1/shipments", PARCEL)
        await hooks.wait_for(lambda: len(hooks.events("swift")) == 8)
        sequences = [e["data"]["object"]["sequence"] for e in hooks.events("swift")]
        assert sorted(sequences) == [1, 1, 2, 2, 3, 3, 4, 4]
        assert sequences != sorted(sequences)
        ledger = await api.ledger()
        assert [e["sequence"] for e in ledger["events"]] == [1, 2, 3, 4]
        assert {e["shipment"] for e in ledger["events"]} == {shipment["id"]}
        assert [h["deliveries"] for h in ledger["webhooks"]] == [2, 2, 2, 2]


async def test_carrier_outage_and_unknown_objects() -> None:
    async with carrier_sandbox(faults=CarrierFaults(outage="503")) as api:
        assert (await api.post("/v1/shipments", PARCEL)).status == 503
        assert (await api.ledger())["shipments"] == []
        await api.faults(outage="none", latency_ms=[10, 20])
        started = time.monotonic()
        assert (await api.post("/v1/shipments", PARCEL)).status == 200
        assert time.monotonic() - started >= 0.01
        for path in ("/v1/shipments/shp_nope", "/v1/tracking/XX000"):
            reply = await api.get(path)
            assert (reply.status, reply.error_code) == (404, "resource_missing")
        unknown_field = await api.post("/v1/shipments", PARCEL | {"fragile": True})
        assert unknown_field.status == 422
        knobs: dict[str, Any] = await api.ok("GET", "/_sandbox/faults")
        assert "exception_rate" in knobs
        assert "decline_rate" not in knobs
