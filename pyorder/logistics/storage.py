"""The logistics capability's share of the unit of work (``pyorder.kernel.unit``): its staged
rows, its part of the snapshot, its row codec, its SQL for both stores and the read of an
order's tracking events.

Tables ``shipments``, ``fulfilments``, ``delivery_windows`` and ``tracking_events`` (schema
version 4, ``pyorder.storage.migrations``). A parcel, a fulfilment and a window are written
whole (upserts): the last one staged in a batch wins; a tracking event is inserted once (a
carrier's redelivery of the same event id keeps the first row). On a cluster node the store
counts the windows' places (``pyorder.storage.window_bookings``): its batches insert new windows
only, keep a fulfilment's stored window, and give back the places of orders that ended
(``StagedLogistics.shared_windows``, ``released``). The stores write this part
where the logistics rows always were: after the refunds part, before the returns part. The
outbox rows a booking owes and the carrier webhook events seen are not here: they are the shared
``pyorder.storage.outbox`` part. Times are ms since the Unix epoch (UTC); money is minor units.
"""

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from pyorder.kernel.unit import PartKind, Row, Statement, Write
from pyorder.logistics.model import (
    DeliveryWindow,
    Fulfilment,
    FulfilmentStatus,
    Shipment,
    ShipmentStatus,
    TrackingEvent,
)
from pyorder.storage.codec import insert_new_sql, upsert_sql

SHIPMENT_COLUMNS = (
    "order_id, parcel, warehouse, carrier, status, idempotency_key, carrier_shipment_id,"
    " tracking_number, window_id, last_sequence, last_event_ms, error, created_ms, updated_ms,"
    " delivered_ms"
)
FULFILMENT_COLUMNS = (
    "order_id, parcels, status, window_id, paid_ms, delivered_ms, fulfilment_ms, updated_ms"
)
WINDOW_COLUMNS = "id, region, start_ms, end_ms, capacity, booked, created_ms"
TRACKING_EVENT_COLUMNS = (
    "carrier, event_id, order_id, parcel, sequence, status, occurred_ms, location,"
    " received_ms, applied"
)

SHIPMENTS_SQL = f"SELECT {SHIPMENT_COLUMNS} FROM shipments ORDER BY order_id, parcel"
FULFILMENTS_SQL = f"SELECT {FULFILMENT_COLUMNS} FROM fulfilments ORDER BY order_id"
WINDOWS_SQL = f"SELECT {WINDOW_COLUMNS} FROM delivery_windows ORDER BY id"
TRACKING_EVENTS_OF_ORDER_SQL = (
    f"SELECT {TRACKING_EVENT_COLUMNS} FROM tracking_events WHERE order_id = {{}}"
    " ORDER BY parcel, sequence, received_ms"
)
"""Format with the dialect's placeholder (``?`` or ``$1``)."""


def shipment_row(s: Shipment) -> tuple[Any, ...]:
    return (
        s.order_id,
        s.parcel,
        s.warehouse,
        s.carrier,
        s.status.value,
        s.idempotency_key,
        s.carrier_shipment_id,
        s.tracking_number,
        s.window_id,
        s.last_sequence,
        s.last_event_ms,
        s.error,
        s.created_ms,
        s.updated_ms,
        s.delivered_ms,
    )


def shipment_from_row(r: Row) -> Shipment:
    return Shipment(
        order_id=int(r[0]),
        parcel=int(r[1]),
        warehouse=int(r[2]),
        carrier=r[3],
        status=ShipmentStatus(r[4]),
        idempotency_key=r[5],
        carrier_shipment_id=r[6],
        tracking_number=r[7],
        window_id=int(r[8]),
        last_sequence=int(r[9]),
        last_event_ms=int(r[10]),
        error=r[11],
        created_ms=int(r[12]),
        updated_ms=int(r[13]),
        delivered_ms=int(r[14]),
    )


def fulfilment_row(f: Fulfilment) -> tuple[Any, ...]:
    return (
        f.order_id,
        f.parcels,
        f.status.value,
        f.window_id,
        f.paid_ms,
        f.delivered_ms,
        f.fulfilment_ms,
        f.updated_ms,
    )


def fulfilment_from_row(r: Row) -> Fulfilment:
    return Fulfilment(
        order_id=int(r[0]),
        parcels=int(r[1]),
        status=FulfilmentStatus(r[2]),
        window_id=int(r[3]),
        paid_ms=int(r[4]),
        delivered_ms=int(r[5]),
        fulfilment_ms=int(r[6]),
        updated_ms=int(r[7]),
    )


def window_row(w: DeliveryWindow) -> tuple[Any, ...]:
    return (w.id, w.region, w.start_ms, w.end_ms, w.capacity, w.booked, w.created_ms)


def window_from_row(r: Row) -> DeliveryWindow:
    return DeliveryWindow(
        id=int(r[0]),
        region=r[1],
        start_ms=int(r[2]),
        end_ms=int(r[3]),
        capacity=int(r[4]),
        booked=int(r[5]),
        created_ms=int(r[6]),
    )


def tracking_event_row(e: TrackingEvent) -> tuple[Any, ...]:
    return (
        e.carrier,
        e.event_id,
        e.order_id,
        e.parcel,
        e.sequence,
        e.status,
        e.occurred_ms,
        e.location,
        e.received_ms,
        int(e.applied),
    )


def tracking_event_from_row(r: Row) -> TrackingEvent:
    return TrackingEvent(
        carrier=r[0],
        event_id=r[1],
        order_id=int(r[2]),
        parcel=int(r[3]),
        sequence=int(r[4]),
        status=r[5],
        occurred_ms=int(r[6]),
        location=r[7],
        received_ms=int(r[8]),
        applied=bool(r[9]),
    )


def _both(make: Callable[..., str], *args: str) -> Statement:
    """The statement ``make(*args, placeholder)`` in each store's dialect."""
    return Statement(make(*args, "?"), make(*args, "$"))


def _insert_sql(table: str, columns: str, placeholder: str) -> str:
    """A plain ``INSERT``: a row already there fails the batch."""
    return insert_new_sql(table, columns, placeholder).removesuffix(" ON CONFLICT DO NOTHING")


_UPSERT_SHIPMENT = _both(upsert_sql, "shipments", SHIPMENT_COLUMNS, "order_id, parcel")
_UPSERT_FULFILMENT = _both(upsert_sql, "fulfilments", FULFILMENT_COLUMNS, "order_id")
_UPSERT_WINDOW = _both(upsert_sql, "delivery_windows", WINDOW_COLUMNS, "id")
_INSERT_TRACKING_EVENT = _both(insert_new_sql, "tracking_events", TRACKING_EVENT_COLUMNS)
# A cluster node's (``shared_windows``): the store's rows count the places.
_UPSERT_FULFILMENT_SHARED = Statement(
    upsert_sql("fulfilments", FULFILMENT_COLUMNS, "order_id", "?", kept="window_id"),
    upsert_sql("fulfilments", FULFILMENT_COLUMNS, "order_id", "$", kept="window_id"),
)
_INSERT_WINDOW = _both(_insert_sql, "delivery_windows", WINDOW_COLUMNS)
RELEASE_SQL = (
    Statement(
        "UPDATE delivery_windows SET booked = booked - 1 WHERE booked > 0"
        " AND id = (SELECT window_id FROM fulfilments WHERE order_id = ?)",
        "UPDATE delivery_windows SET booked = booked - 1 WHERE booked > 0"
        " AND id = (SELECT window_id FROM fulfilments WHERE order_id = $1)",
    ),
    Statement(
        "UPDATE fulfilments SET window_id = -1 WHERE order_id = ? AND window_id >= 0",
        "UPDATE fulfilments SET window_id = -1 WHERE order_id = $1 AND window_id >= 0",
    ),
)
"""Give back the place of the window order $1 holds as stored (none: nothing changes), then
clear its fulfilment's window: run in this order, with the order ids as rows. Staged on
cluster nodes (``StagedLogistics.released``) and run by a take-over's expiry of a dead node's
orders (``pyorder.storage.window_bookings.release``)."""


@dataclass(slots=True)
class StagedLogistics:
    """The logistics rows of one batch."""

    shipments: dict[tuple[int, int], Shipment] = field(default_factory=dict)
    """(order id, parcel) -> the parcel's row as it is now (a return parcel: minus the
    return's id)."""
    fulfilments: dict[int, Fulfilment] = field(default_factory=dict)
    """Order id -> its fulfilment row as it is now."""
    windows: dict[int, DeliveryWindow] = field(default_factory=dict)
    """Window id -> the window's row as it is now (its booked count included); on a cluster
    node, new windows only."""
    tracking_events: list[TrackingEvent] = field(default_factory=list)
    """Carriers' tracking events received, applied or not (of orders' and returns' parcels)."""
    shared_windows: bool = False
    """Staged by a cluster node: the store's rows count the windows' places
    (``pyorder.storage.window_bookings``), so windows are inserted (new ones, nothing booked)
    rather than written whole, a fulfilment's upsert keeps its stored ``window_id``, and
    ``released`` gives places back."""
    released: dict[int, int] = field(default_factory=dict)
    """Cluster nodes: order id -> the window it held as the node knew it (for the order of
    the writes), for the orders that ended in this batch: their places go back (``RELEASE_SQL``,
    which reads the window from the store)."""

    def __len__(self) -> int:
        return (
            len(self.shipments)
            + len(self.fulfilments)
            + len(self.windows)
            + len(self.tracking_events)
            + len(self.released)
        )

    def writes(self) -> Iterator[Write]:
        """Parcels, fulfilments, windows, then tracking events: the order they always had; a
        cluster node's released places between fulfilments and windows, in window order (the
        order bookings lock windows in)."""
        shared = self.shared_windows
        if self.shipments:
            yield _UPSERT_SHIPMENT, list(map(shipment_row, self.shipments.values()))
        if self.fulfilments:
            upsert = _UPSERT_FULFILMENT_SHARED if shared else _UPSERT_FULFILMENT
            yield upsert, list(map(fulfilment_row, self.fulfilments.values()))
        if self.released:
            rows = [(o,) for o, _ in sorted(self.released.items(), key=lambda r: (r[1], r[0]))]
            for statement in RELEASE_SQL:
                yield statement, rows
        if self.windows:
            write = _INSERT_WINDOW if shared else _UPSERT_WINDOW
            yield write, list(map(window_row, self.windows.values()))
        if self.tracking_events:
            yield _INSERT_TRACKING_EVENT, list(map(tracking_event_row, self.tracking_events))


@dataclass(frozen=True, slots=True)
class StoredLogistics:
    """What a restart needs of logistics: every parcel, fulfilment and delivery window
    (tracking events are read per order, on demand)."""

    shipments: list[Shipment] = field(default_factory=list)
    """By order id, then parcel."""
    fulfilments: list[Fulfilment] = field(default_factory=list)
    """By order id."""
    windows: list[DeliveryWindow] = field(default_factory=list)
    """By id."""


def _stored(rows: Sequence[Sequence[Row]]) -> StoredLogistics:
    shipments, fulfilments, windows = rows
    return StoredLogistics(
        [shipment_from_row(r) for r in shipments],
        [fulfilment_from_row(r) for r in fulfilments],
        [window_from_row(r) for r in windows],
    )


def _of_orders(stored: StoredLogistics, keep: Callable[[int], bool]) -> StoredLogistics:
    """Parcels and fulfilments of the kept orders; every delivery window (shared)."""
    return StoredLogistics(
        [s for s in stored.shipments if keep(s.order_id)],
        [f for f in stored.fulfilments if keep(f.order_id)],
        stored.windows,
    )


LOGISTICS = PartKind(
    "logistics",
    StagedLogistics,
    (SHIPMENTS_SQL, FULFILMENTS_SQL, WINDOWS_SQL),
    _stored,
    _of_orders,
)
"""The logistics part: registered in ``pyorder.parts``, after the refunds part."""
