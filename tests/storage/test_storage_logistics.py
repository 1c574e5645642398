"""Shipments, fulfilments, delivery windows and tracking events (schema version 4) on both
backends: rows are written whole in the batch's transaction, the last staged wins, ``load()``
returns what a restart needs, and a window is never booked past its capacity."""

from dataclasses import replace

import pytest

from pyorder.kernel.outbox import OutboxItem, OutboxKind
from pyorder.logistics.model import (
    DeliveryWindow,
    Fulfilment,
    FulfilmentStatus,
    Shipment,
    ShipmentStatus,
    TrackingEvent,
)
from pyorder.logistics.storage import LOGISTICS
from pyorder.model import WriteBatch
from pyorder.storage.base import StorageError, Store
from pyorder.storage.outbox import OUTBOX

from .backends import Backend
from .records import with_outbox

WINDOW = DeliveryWindow(1, "north", 1_000, 2_000, 2, 1, 5)
PARCEL = Shipment(
    order_id=7,
    parcel=1,
    warehouse=0,
    carrier="swift",
    status=ShipmentStatus.PENDING,
    idempotency_key="pyorder-ship-7-1",
    carrier_shipment_id="",
    tracking_number="",
    window_id=1,
    last_sequence=0,
    last_event_ms=0,
    error="",
    created_ms=5,
    updated_ms=5,
    delivered_ms=0,
)
FULFILMENT = Fulfilment(7, 1, FulfilmentStatus.UNFULFILLED, 1, 4, 0, -1, 5)
SHIP = OutboxItem(7, 1, OutboxKind.SHIP, done=False, created_ms=5, updated_ms=5)


def staged(
    batch: WriteBatch | None = None,
    *,
    shipments: dict[tuple[int, int], Shipment] | None = None,
    fulfilments: dict[int, Fulfilment] | None = None,
    windows: dict[int, DeliveryWindow] | None = None,
    tracking_events: list[TrackingEvent] | None = None,
) -> WriteBatch:
    """``batch`` (a new one if None) with these rows staged in its logistics part."""
    batch = WriteBatch() if batch is None else batch
    part = batch.part(LOGISTICS)
    part.shipments.update(shipments or {})
    part.fulfilments.update(fulfilments or {})
    part.windows.update(windows or {})
    part.tracking_events.extend(tracking_events or [])
    return batch


def test_logistics_rows_round_trip_and_upsert(store: Backend) -> None:
    async def body(s: Store) -> None:
        await s.commit(
            staged(
                with_outbox(SHIP),
                shipments={(7, 1): PARCEL},
                fulfilments={7: FULFILMENT},
                windows={1: WINDOW},
            )
        )
        snap = await s.load()
        stored = snap.part(LOGISTICS)
        assert (stored.shipments, stored.fulfilments, stored.windows) == (
            [PARCEL],
            [FULFILMENT],
            [WINDOW],
        )
        assert snap.part(OUTBOX) == [SHIP]
        delivered = replace(
            PARCEL, status=ShipmentStatus.DELIVERED, last_sequence=4, delivered_ms=9
        )
        done = replace(
            FULFILMENT, status=FulfilmentStatus.DELIVERED, delivered_ms=9, fulfilment_ms=5
        )
        event = TrackingEvent("swift", "evt_1", 7, 1, 4, "delivered", 9, "Hangzhou", 10, True)
        stale = TrackingEvent("swift", "evt_0", 7, 1, 2, "in_transit", 8, "hub", 11, False)
        await s.commit(
            staged(
                with_outbox(replace(SHIP, done=True)),
                shipments={(7, 1): delivered},
                fulfilments={7: done},
                tracking_events=[event, stale, replace(event, received_ms=99)],
            )
        )
        snap = await s.load()
        stored = snap.part(LOGISTICS)
        assert (stored.shipments, stored.fulfilments, snap.part(OUTBOX)) == (
            [delivered],
            [done],
            [],
        )
        assert await s.tracking_events(7) == [stale, event]
        assert await s.tracking_events(8) == []

    store.run(body)


def test_a_window_is_never_booked_past_its_capacity(store: Backend) -> None:
    async def body(s: Store) -> None:
        await s.commit(staged(windows={1: WINDOW}))
        with pytest.raises(StorageError):
            await s.commit(staged(windows={1: replace(WINDOW, booked=3)}))
        s.resume()
        assert (await s.load()).part(LOGISTICS).windows == [WINDOW]

    store.run(body)
