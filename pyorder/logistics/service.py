"""The logistics state: parcels (``Shipment``), each order's ``Fulfilment`` and the delivery
windows, held in memory (rebuilt from the store like the engine) and changed only here,
synchronously on the event loop, each change staged in the intake's batch in the same call as
whatever goes with it, so one transaction records both.

What can change it: a merchant (or admin) shipping a paid order (``ship``), the payment that
pays an order (``on_paid``: the paid time, and with ``auto_ship`` the parcels), the buyer
picking a delivery window (``pick_window``), the carrier's answer to a booking (the dispatcher:
``observe_booking``), and its signed tracking events (``handle_webhook``). A tracking event is
applied only when its sequence is newer than the last one applied to the parcel and its status
is a legal move (``model.SHIPMENT_TRANSITIONS``), so duplicates and late arrivals change
nothing, whatever their order.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any, TypeVar

from pyorder.auth import Principal, Role
from pyorder.cluster.windows import WindowMirror
from pyorder.documents import Event, InvalidDocument, decode
from pyorder.engine import Engine
from pyorder.events.publisher import Events
from pyorder.ids import ORDER_ID_NODE_BITS
from pyorder.inbox import After, Inbox
from pyorder.intake import Intake
from pyorder.kernel.clock import iso_ms, now_ms
from pyorder.kernel.errors import (
    Conflict,
    InvalidEvent,
    InvalidInput,
    InvalidState,
    NotFound,
)
from pyorder.kernel.outbox import OutboxItem, OutboxKind
from pyorder.logistics import schemas as carrier_docs
from pyorder.logistics.carriers import LogisticsConfig
from pyorder.logistics.model import (
    FULFILMENT_ORDER,
    SHIPMENT_TRANSITIONS,
    BookingOutcome,
    DeliveryWindow,
    Fulfilment,
    FulfilmentStatus,
    Shipment,
    ShipmentStatus,
    TrackingEvent,
)
from pyorder.logistics.storage import LOGISTICS, StagedLogistics
from pyorder.model import Snapshot
from pyorder.orders.model import HOLDING, Order, OrderStatus, PendingOrder
from pyorder.orders.service import Orders
from pyorder.storage.base import Store
from pyorder.storage.limits import check_row
from pyorder.storage.outbox import OUTBOX

log = logging.getLogger(__name__)

ParcelKey = tuple[int, int]
MAX_CAPACITY = 1_000_000
NODE_STRIDE = 1 << ORDER_ID_NODE_BITS
"""A cluster node's delivery-window ids are its node number modulo this (256)."""
T = TypeVar("T")


class NoCarrier(InvalidInput):
    code = "carrier_unavailable"


class AlreadyShipped(InvalidState):
    code = "already_shipped"


class WindowFull(Conflict):
    code = "window_full"


class WindowUnavailable(InvalidInput):
    code = "window_unavailable"


def parcel_reference(order_id: int, parcel: int) -> str:
    """The reference a parcel is booked under at the carrier, echoed in its tracking events."""
    return f"{order_id}-{parcel}"


def parse_parcel_reference(text: str | None) -> ParcelKey | None:
    """The parcel of a reference we gave (``<order>-<parcel>``), or None if not one of ours."""
    if text is None:
        return None
    order, _, parcel = text.partition("-")
    if not (_decimal(order) and _decimal(parcel)):
        return None
    return int(order), int(parcel)


def _decimal(text: str) -> bool:
    # ASCII only: str.isdigit() also takes "²", which int() refuses.
    return 0 < len(text) <= 19 and text.isascii() and text.isdigit()


def decode_event(body: bytes) -> tuple[Event, carrier_docs.TrackingEvent | None]:
    """A carrier's webhook body, decoded in full: the event and its scan (None for a type we
    do not apply); ``InvalidEvent`` (400) naming what is wrong and where."""
    try:
        event = decode(body, Event)
    except InvalidDocument as exc:
        raise InvalidEvent(f"not a carrier event: {exc}") from None
    if not event.type.startswith("tracking."):
        return event, None
    try:
        return event, decode(event.data.object, carrier_docs.TrackingEvent)
    except InvalidDocument as exc:
        raise InvalidEvent(f"event {event.id}: data.object: {exc}") from None


ReturnTracking = Callable[[str, str, carrier_docs.TrackingEvent], None]
"""Applies (stages) a tracking event of a return parcel: (carrier, event id, event)."""


class Logistics:
    """Parcels, delivery windows and fulfilment of paid orders. ``config``: the carriers;
    ``engine`` gives the current engine (warehouses, regions; replaced on every rebuild);
    ``orders``: the orders shipped; ``events``: ``order.fulfilment`` events; ``intake``
    stages, ``store`` reads what committed.

    On a cluster node (the store's ``lease_node`` set at the rebuild) the windows' places are
    counted by the store, not here (``pyorder.storage.window_bookings``): a pick books in the
    store, an order that ends gives its place back in its commit, and this copy of the windows
    only shows them (kept fresh for listings by ``pyorder.cluster.windows``)."""

    def __init__(
        self,
        config: LogisticsConfig,
        engine: Callable[[], Engine],
        orders: Orders,
        events: Events,
        intake: Intake,
        store: Store,
    ) -> None:
        self.config = config
        self._engine = engine
        self._orders = orders
        self._events = events
        self._intake = intake
        self._store = store
        self.shipments: dict[ParcelKey, Shipment] = {}
        self.parcels: dict[int, list[int]] = {}
        """Order id -> its parcel numbers, in order."""
        self.fulfilments: dict[int, Fulfilment] = {}
        self.windows: dict[int, DeliveryWindow] = {}
        self.outbox: dict[tuple[int, int, str], OutboxItem] = {}
        """Bookings owed to the carrier, not done yet."""
        self.on_outbox: list[Callable[[OutboxItem], None]] = []
        self._on_delivered: list[Callable[[int], None]] = []
        self._on_return_event: ReturnTracking | None = None
        self._inbox = Inbox(intake, store)
        self._node: int | None = None
        """This cluster node's number (windows counted by the store); None on a node alone."""
        self.mirror = WindowMirror(store, lambda: self.windows)
        """A cluster node's copy of every node's windows, read again for listings."""
        self._picking: dict[int, asyncio.Event] = {}
        """Cluster nodes: orders whose window is being booked in the store (set when done)."""
        self._ended_while_picking: set[int] = set()
        """Cluster nodes: orders of ``_picking`` that ended meanwhile (their commit gives the
        place back, so the pick answers that the order ended)."""

    def subscribe_delivered(self, notify: Callable[[int], None]) -> None:
        """Call ``notify`` with an order's fulfilment time (ms) once its delivery is durable."""
        self._on_delivered.append(notify)

    def route_returns(self, apply: ReturnTracking) -> None:
        """Hand the tracking events of return parcels to ``apply`` (``pyorder.returns``; the
        bootstrap wires it). Without it such events are acknowledged and ignored."""
        self._on_return_event = apply

    # --- state ---------------------------------------------------------------------------------

    def load(self, snap: Snapshot) -> None:
        """Hold exactly what the store holds (at start, and after a failed commit)."""
        stored = snap.part(LOGISTICS)
        self.shipments = {(s.order_id, s.parcel): s for s in stored.shipments}
        self.parcels = {}
        for key in sorted(self.shipments):
            self.parcels.setdefault(key[0], []).append(key[1])
        self.fulfilments = {f.order_id: f for f in stored.fulfilments}
        self.windows = {w.id: w for w in stored.windows}
        self.outbox = {o.key: o for o in snap.part(OUTBOX) if o.kind is OutboxKind.SHIP}
        self._node = self._store.lease_node

    def shipments_of(self, order_id: int) -> list[Shipment]:
        return [self.shipments[(order_id, n)] for n in self.parcels.get(order_id, ())]

    def _part(self) -> StagedLogistics:
        """The batch's logistics part; a cluster node's says the store counts the places."""
        part = self._intake.batch.part(LOGISTICS)
        if self._node is not None:
            part.shared_windows = True
        return part

    def _put_shipment(self, sh: Shipment) -> None:
        sh = replace(sh, updated_ms=now_ms())
        check_row(sh)  # before memory changes: a value no store holds fails this request only
        key = (sh.order_id, sh.parcel)
        if key not in self.shipments:
            self.parcels.setdefault(sh.order_id, []).append(sh.parcel)
        self.shipments[key] = sh
        self._part().shipments[key] = sh

    def _put_fulfilment(self, f: Fulfilment) -> None:
        f = replace(f, updated_ms=now_ms())
        check_row(f)
        self.fulfilments[f.order_id] = f
        self._part().fulfilments[f.order_id] = f

    def _put_window(self, w: DeliveryWindow) -> None:
        """Stage ``w`` whole (a node alone; a cluster node stages new windows only)."""
        check_row(w)
        self._hold(w)
        self._part().windows[w.id] = w

    def _hold(self, w: DeliveryWindow) -> None:
        """Hold ``w`` in memory (a cluster node: as newer than the mirror's reads under way)."""
        self.windows[w.id] = w
        if self._node is not None:
            self.mirror.changed(w.id)

    def _fulfilment(self, order: Order | PendingOrder) -> Fulfilment:
        found = self.fulfilments.get(order.id)
        if found is not None:
            return found
        return Fulfilment(
            order_id=order.id,
            parcels=len({line.warehouse for line in order.lines}),
            status=FulfilmentStatus.UNFULFILLED,
            window_id=-1,
            paid_ms=0,
            delivered_ms=0,
            fulfilment_ms=-1,
            updated_ms=now_ms(),
        )

    def _live(self, order_id: int, warehouse: int) -> Shipment | None:
        """The parcel from ``warehouse`` that counts: the newest one the carrier did not refuse."""
        found = [
            s
            for s in self.shipments_of(order_id)
            if s.warehouse == warehouse and s.status is not ShipmentStatus.FAILED
        ]
        return found[-1] if found else None

    def _refresh(self, order_id: int) -> Fulfilment | None:
        """Stage the order's fulfilment derived again from its parcels (forward only), and
        its event (order.shipped, order.delivered) when that changes its status."""
        f = self.fulfilments.get(order_id)
        if f is None:
            return None
        live: dict[int, Shipment] = {}
        for s in self.shipments_of(order_id):
            if s.status is not ShipmentStatus.FAILED:
                live[s.warehouse] = s
        shipped = sum(s.status is not ShipmentStatus.PENDING for s in live.values())
        delivered = [s for s in live.values() if s.status is ShipmentStatus.DELIVERED]
        if f.parcels and len(delivered) >= f.parcels:
            status = FulfilmentStatus.DELIVERED
        elif delivered:
            status = FulfilmentStatus.PARTIALLY_DELIVERED
        elif f.parcels and shipped >= f.parcels:
            status = FulfilmentStatus.SHIPPED
        elif shipped:
            status = FulfilmentStatus.PARTIALLY_SHIPPED
        else:
            status = FulfilmentStatus.UNFULFILLED
        if FULFILMENT_ORDER.index(status) < FULFILMENT_ORDER.index(f.status):
            return f  # never backwards
        if status is FulfilmentStatus.DELIVERED and f.status is not FulfilmentStatus.DELIVERED:
            at = max(s.delivered_ms for s in delivered)
            took = max(0, at - f.paid_ms) if f.paid_ms else -1
            f = replace(f, delivered_ms=at, fulfilment_ms=took)
        changed = status is not f.status
        if changed or f.order_id not in self._intake.batch.part(LOGISTICS).fulfilments:
            self._put_fulfilment(replace(f, status=status))
        f = self.fulfilments[order_id]
        if changed:
            self._events.fulfilment_changed(f, self.shipments_of(order_id))
        return f

    # --- delivery windows ----------------------------------------------------------------------

    def create_window(
        self, who: Principal, region: str, start_ms: int, end_ms: int, capacity: int
    ) -> DeliveryWindow:
        """A new delivery window of ``region`` (admins): [start_ms, end_ms), ``capacity``
        orders."""
        who.require(Role.ADMIN)
        if region not in self._engine().regions:
            raise NotFound(f"region {region!r} is not served")
        if end_ms <= start_ms:
            raise InvalidInput("a window's end must be after its start", field="end")
        if end_ms <= now_ms():
            raise InvalidInput("the window has already ended", field="end")
        if not 1 <= capacity <= MAX_CAPACITY:
            raise InvalidInput(f"capacity must be 1 to {MAX_CAPACITY}", field="capacity")
        wid = max(self.windows, default=0) + 1
        if self._node is not None:
            # One of this node's own ids (its number modulo 256), above every id it knows: no
            # other node hands it out, and this node knows every one of its own.
            wid += (self._node - wid) % NODE_STRIDE
        window = DeliveryWindow(wid, region, start_ms, end_ms, capacity, 0, now_ms())
        self._put_window(window)
        return window

    def windows_of(self, region: str) -> list[DeliveryWindow]:
        """The region's windows that have not ended, earliest first."""
        now = now_ms()
        found = [w for w in self.windows.values() if w.region == region and w.end_ms > now]
        return sorted(found, key=lambda w: (w.start_ms, w.id))

    async def list_windows(self, region: str) -> list[DeliveryWindow]:
        """``windows_of(region)``; on a cluster node, with the windows of every node, as stored
        at most ``mirror.max_age_s`` ago."""
        if self._node is not None:
            await self.mirror.fresh()
        return self.windows_of(region)

    async def pick_window(self, who: Principal, order_id: int, window_id: int) -> Fulfilment:
        """The buyer's choice of a delivery window for an own order that has not shipped:
        the window's capacity is taken (and the previous window's given back) at once."""
        who.require(Role.BUYER)
        order = await self._after_picks(order_id, lambda: self._buyers_order(who, order_id))
        # From here on, no await (but a cluster node's booking in the store, which orders its
        # picks itself): the check and the booking are one step of the event loop.
        if order.status in HOLDING and self._orders.pending(order_id) is None:
            raise InvalidState(f"order {order_id} no longer awaits payment; retry to see why")
        if order.status not in (*HOLDING, OrderStatus.PAID):
            raise InvalidState(
                f"order {order_id} is {order.status.value}; it will not be delivered",
                status=order.status.value,
            )
        if any(s.status is not ShipmentStatus.FAILED for s in self.shipments_of(order_id)):
            raise AlreadyShipped(f"order {order_id} has shipped; its window cannot change")
        f = self._fulfilment(order)
        if self._node is not None:
            return await self._book(order, f, window_id)
        window = self.windows.get(window_id)
        if window is None or window.region != order.region:
            raise _unavailable(window_id, order.region)
        if window.end_ms <= now_ms():
            raise _ended(window_id)
        if f.window_id == window_id:
            self._put_fulfilment(f)
            return self.fulfilments[order_id]
        if window.booked >= window.capacity:
            raise _full(window)
        self._release(f)
        self._put_window(replace(window, booked=window.booked + 1))
        self._put_fulfilment(replace(f, window_id=window_id))
        return self.fulfilments[order_id]

    async def _after_picks(self, order_id: int, read: Callable[[], Awaitable[T]]) -> T:
        """What ``read()`` gives once no booking of the order's window is under way (cluster
        nodes book in the store: a second pick, or shipping, waits for the first)."""
        while True:
            found = await read()
            busy = self._picking.get(order_id)
            if busy is None:
                return found
            await busy.wait()

    async def _book(self, order: Order, f: Fulfilment, window_id: int) -> Fulfilment:
        """A cluster node's pick: booked in the store (``Store.book_window``), which refuses as
        a node alone would (and an order that ended meanwhile); memory follows what it did."""
        done = asyncio.Event()
        self._picking[order.id] = done
        try:
            booking = await self._store.book_window(f, window_id, now_ms())
        finally:
            del self._picking[order.id]
            done.set()
            ended = order.id in self._ended_while_picking
            self._ended_while_picking.discard(order.id)
        for w in booking.windows:
            self._hold(w)
        outcome = booking.outcome
        if outcome is BookingOutcome.NO_ORDER:
            raise NotFound(f"order {order.id} does not exist")
        if outcome is BookingOutcome.ORDER_ENDED or ended:
            status = booking.status if outcome is BookingOutcome.ORDER_ENDED else "ended"
            # Ended while booking: its commit gives the place back (it runs after the booking).
            raise InvalidState(
                f"order {order.id} is {status}; it will not be delivered", status=status
            )
        if outcome is BookingOutcome.UNAVAILABLE:
            raise _unavailable(window_id, order.region)
        if outcome is BookingOutcome.ENDED:
            raise _ended(window_id)
        if outcome is BookingOutcome.FULL:
            window = booking.window(window_id)
            assert window is not None  # a full window's row comes with the answer
            raise _full(window)
        # Booked (or held already): the store wrote the fulfilment's window; memory follows,
        # as of now (a payment may have changed it meanwhile).
        now = self.fulfilments.get(order.id, f)
        self.fulfilments[order.id] = replace(now, window_id=window_id)
        return self.fulfilments[order.id]

    def _release(self, f: Fulfilment) -> None:
        old = self.windows.get(f.window_id)
        if old is not None and old.booked > 0:
            self._put_window(replace(old, booked=old.booked - 1))

    def release_window(self, order_id: int) -> None:
        """The order ended unpaid (cancelled, expired): give its window's place back."""
        f = self.fulfilments.get(order_id)
        if self._node is not None:
            self._release_shared(order_id, f)
        elif f is not None and f.window_id >= 0:
            self._release(f)
            self._put_fulfilment(replace(f, window_id=-1))

    def _release_shared(self, order_id: int, f: Fulfilment | None) -> None:
        """A cluster node: the order's commit gives its place back in the store (``released``,
        which reads the window there), also when a booking of it is under way."""
        held = -1 if f is None else f.window_id
        picking = order_id in self._picking
        if picking:
            self._ended_while_picking.add(order_id)
        if held < 0 and not picking:
            return
        self._part().released[order_id] = held
        old = self.windows.get(held)
        if old is not None and old.booked > 0:  # the copy shows it until the next read
            self._hold(replace(old, booked=old.booked - 1))
        if f is not None and held >= 0:
            self._put_fulfilment(replace(f, window_id=-1))

    async def _buyers_order(self, who: Principal, order_id: int) -> Order:
        pending = await self._orders.pending_order(order_id)
        if pending is not None and pending.buyer == who.subject:
            return pending
        stored = await self._store.get_order(order_id)
        if stored is None or stored.buyer != who.subject:
            raise NotFound(f"order {order_id} does not exist")
        return stored

    # --- shipping ------------------------------------------------------------------------------

    def on_paid(self, order: Order | PendingOrder) -> None:
        """``order`` was just paid (staged in the same batch): note when, and with
        ``auto_ship`` book its parcels."""
        f = self._fulfilment(order)
        self._put_fulfilment(replace(f, paid_ms=now_ms()))
        carrier = self.config.default_carrier()
        if self.config.auto_ship and carrier is not None:
            for warehouse in sorted({line.warehouse for line in order.lines}):
                self._new_parcel(order, warehouse, carrier.name)

    async def ship(self, who: Principal, order_id: int, warehouse: int | None) -> Order:
        """Book the parcels of a paid order not booked yet (merchants: those holding their
        lines; ``warehouse``: only that one); returns the order. The parcels are staged; the
        carrier is called once they are durable."""
        who.require(Role.MERCHANT, Role.ADMIN)
        # 404 unless visible; after a booking under way (its parcels carry its window).
        order = await self._after_picks(order_id, lambda: self._orders.get(who, order_id))
        carrier = self.config.default_carrier()
        if carrier is None:
            raise NoCarrier("no carrier is configured")
        # From here on, no await: two requests never book the same parcel.
        if order.status is not OrderStatus.PAID:
            raise InvalidState(
                f"order {order_id} is {order.status.value}; only paid orders ship",
                status=order.status.value,
            )
        groups = _by_warehouse(order)
        if who.role is Role.MERCHANT:
            groups = {
                w: lines for w, lines in groups.items() if any(m == who.key for _, _, m in lines)
            }
        if warehouse is not None:
            if warehouse not in groups:
                raise InvalidInput(
                    f"order {order_id} has no parcel of yours from warehouse {warehouse}",
                    field="warehouse",
                )
            groups = {warehouse: groups[warehouse]}
        todo = [w for w in groups if self._live(order_id, w) is None]
        if not todo:
            raise AlreadyShipped(f"the parcels of order {order_id} are already shipped")
        f = self._fulfilment(order)
        if not f.paid_ms:
            f = replace(f, paid_ms=order.updated_ms)  # paid before fulfilment was recorded
        self._put_fulfilment(f)
        for w in todo:
            self._new_parcel(order, w, carrier.name)
        return order

    def _new_parcel(self, order: Order | PendingOrder, warehouse: int, carrier: str) -> Shipment:
        n = max(self.parcels.get(order.id, [0])) + 1
        at = now_ms()
        f = self.fulfilments.get(order.id) or self._fulfilment(order)
        sh = Shipment(
            order_id=order.id,
            parcel=n,
            warehouse=warehouse,
            carrier=carrier,
            status=ShipmentStatus.PENDING,
            idempotency_key=f"pyorder-ship-{order.id}-{n}",
            carrier_shipment_id="",
            tracking_number="",
            window_id=f.window_id,
            last_sequence=0,
            last_event_ms=0,
            error="",
            created_ms=at,
            updated_ms=at,
            delivered_ms=0,
        )
        self._put_shipment(sh)
        self._put_fulfilment(f)
        item = OutboxItem(order.id, n, OutboxKind.SHIP, False, at, at)
        self.outbox[item.key] = item
        self._intake.batch.part(OUTBOX).items[item.key] = item
        for notify in self.on_outbox:
            notify(item)
        return self.shipments[(order.id, n)]

    def finish_outbox(self, item: OutboxItem) -> None:
        self.outbox.pop(item.key, None)
        self._intake.batch.part(OUTBOX).items[item.key] = replace(
            item, done=True, updated_ms=now_ms()
        )

    def carrier_request(self, order: Order, sh: Shipment) -> dict[str, Any]:
        """The body of the carrier's ``POST /v1/shipments`` for parcel ``sh`` of ``order``."""
        lines = _by_warehouse(order).get(sh.warehouse, [])
        units = sum(q for _, q, _ in lines)
        fields = ("name", "line1", "line2", "city", "region", "postal_code", "country", "phone")
        to = {k: order.address[k] for k in fields if order.address.get(k)}
        wh = self._engine().warehouses.get(sh.warehouse)
        name = wh.name if wh is not None else f"warehouse {sh.warehouse}"
        body: dict[str, Any] = {
            "to": to,
            "from": {"name": name, "line1": f"warehouse {sh.warehouse}", "city": name},
            "weight_g": max(1, min(1_000_000, units * self.config.grams_per_unit)),
            "reference": parcel_reference(sh.order_id, sh.parcel),
            "metadata": {"order_id": str(sh.order_id), "parcel": str(sh.parcel)},
        }
        window = self.windows.get(sh.window_id)
        if window is not None:
            body["delivery_window"] = {
                "start": iso_ms(window.start_ms),
                "end": iso_ms(window.end_ms),
            }
        return body

    def observe_booking(self, key: ParcelKey, shipment: carrier_docs.Shipment) -> None:
        """The carrier booked parcel ``key`` (its answer, possibly replayed): record its ids;
        its status only if that is a move forward."""
        sh = self.shipments.get(key)
        if sh is None:
            return
        sh = replace(
            sh,
            carrier_shipment_id=sh.carrier_shipment_id or shipment.id,
            tracking_number=sh.tracking_number or shipment.tracking_number or "",
        )
        if sh.status is ShipmentStatus.PENDING:
            sh = replace(sh, status=ShipmentStatus.CREATED)
        self._put_shipment(sh)
        self._refresh(sh.order_id)

    def fail_booking(self, key: ParcelKey, error: str) -> None:
        """The carrier refused to book parcel ``key``: it failed (another may be shipped)."""
        sh = self.shipments.get(key)
        if sh is None or ShipmentStatus.FAILED not in SHIPMENT_TRANSITIONS[sh.status]:
            return
        self._put_shipment(replace(sh, status=ShipmentStatus.FAILED, error=error[:500]))
        self._refresh(sh.order_id)

    # --- tracking webhooks ---------------------------------------------------------------------

    async def handle_webhook(
        self, carrier: str, body: bytes, headers: dict[str, str]
    ) -> tuple[bool, str]:
        """Verify, de-duplicate and apply one signed tracking event; returns (duplicate?,
        event id) once its effects are durable. Nothing changes for a bad signature (400)."""
        config = self.config.carrier(carrier)
        if config is None:
            raise NotFound(f"no carrier {carrier!r}")

        def apply(event: Event, scan: carrier_docs.TrackingEvent | None) -> After | None:
            if scan is None:
                return None
            delivered = self.observe_event(carrier, event.id, scan)
            if delivered is None:
                return None
            return lambda: self._delivered(delivered.fulfilment_ms)

        source = f"carrier:{carrier}"
        return await self._inbox.receive(source, config.secret, body, headers, decode_event, apply)

    def _delivered(self, fulfilment_ms: int) -> None:
        for notify in self._on_delivered:
            notify(fulfilment_ms)

    def observe_event(
        self, carrier: str, event_id: str, ev: carrier_docs.TrackingEvent
    ) -> Fulfilment | None:
        """Apply a tracking event (staged). Returns the order's fulfilment if this event
        delivered the order, else None."""
        if ev.kind == "return":
            if self._on_return_event is not None:
                self._on_return_event(carrier, event_id, ev)
            return None
        key = parse_parcel_reference(ev.reference)
        sh = self.shipments.get(key) if key is not None else None
        if sh is None or sh.carrier != carrier:
            log.info("tracking event %s of %s: no parcel of ours; ignored", event_id, carrier)
            return None
        shipment_id = ev.shipment or ""
        if sh.carrier_shipment_id and shipment_id and shipment_id != sh.carrier_shipment_id:
            log.warning("tracking event %s: foreign shipment %s", event_id, shipment_id)
            return None
        sequence = ev.sequence
        try:
            status = ShipmentStatus(ev.status)
        except ValueError:
            # A status we do not know: acknowledged (a 4xx would only make the carrier retry).
            log.warning("tracking event %s: unknown status %r; ignored", event_id, ev.status)
            return None
        occurred = ev.occurred_ms() or now_ms()
        applied = sequence > sh.last_sequence and status in SHIPMENT_TRANSITIONS[sh.status]
        row = TrackingEvent(
            carrier=carrier,
            event_id=event_id,
            order_id=sh.order_id,
            parcel=sh.parcel,
            sequence=sequence,
            status=status.value,
            occurred_ms=occurred,
            location=ev.location[:200],
            received_ms=now_ms(),
            applied=applied,
        )
        check_row(row)
        self._intake.batch.part(LOGISTICS).tracking_events.append(row)
        if not applied:
            return None  # stale (older than what we hold, or not a legal move): recorded only
        before = self.fulfilments.get(sh.order_id)
        sh = replace(
            sh,
            status=status,
            last_sequence=sequence,
            last_event_ms=occurred,
            carrier_shipment_id=sh.carrier_shipment_id or shipment_id,
            tracking_number=sh.tracking_number or ev.tracking_number or "",
            delivered_ms=occurred if status is ShipmentStatus.DELIVERED else sh.delivered_ms,
            error=(ev.details.reason if ev.details is not None else None) or sh.error,
        )
        self._put_shipment(sh)
        after = self._refresh(sh.order_id)
        was = before.status if before is not None else None
        delivered = FulfilmentStatus.DELIVERED
        if after is not None and after.status is delivered and was is not delivered:
            return after
        return None

    # --- reading -------------------------------------------------------------------------------

    async def read(
        self, who: Principal, order_id: int
    ) -> tuple[Order, Fulfilment | None, list[Shipment], list[TrackingEvent]]:
        """An order the caller may see, with its fulfilment, parcels and tracking events, as
        committed."""
        order = await self._orders.get(who, order_id)  # 404 unless visible
        # Read first, then wait: once everything staged so far is durable, so is this state
        # (a change staged while waiting is newer than the answer, and not shown).
        fulfilment, shipments = self.fulfilments.get(order_id), self.shipments_of(order_id)
        await self._intake.durable()
        events = await self._store.tracking_events(order_id)
        return order, fulfilment, shipments, events


def _unavailable(window_id: int, region: str) -> WindowUnavailable:
    return WindowUnavailable(f"no delivery window {window_id} in region {region!r}", field="window")


def _ended(window_id: int) -> WindowUnavailable:
    return WindowUnavailable(f"delivery window {window_id} has ended", field="window")


def _full(window: DeliveryWindow) -> WindowFull:
    return WindowFull(
        f"delivery window {window.id} is full ({window.capacity} orders)",
        window=window.id,
        capacity=window.capacity,
    )


def _by_warehouse(order: Order) -> dict[int, list[tuple[int, int, str]]]:
    """The order's lines as parcels: warehouse -> [(sku, quantity, merchant)], by warehouse."""
    groups: dict[int, list[tuple[int, int, str]]] = {}
    for line in order.lines:
        groups.setdefault(line.warehouse, []).append((line.sku, line.quantity, line.merchant))
    return dict(sorted(groups.items()))
