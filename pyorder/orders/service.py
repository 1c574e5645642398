"""Orders: place (one or many), read, list, cancel, and expire unpaid ones.

Placing goes through the order book in the Rust core (``Engine.book``): it parses and
validates the request body, prices every line from the catalogue (never from the client),
reserves the lines in the inventory (matched to warehouses by the delivery region), assigns
Snowflake IDs and stages the rows in the commit window's ``WriteBatch.placed``, then writes the
response body, all with no Python object per order. The caller acknowledges only after
``await intake.durable()``. An order awaiting payment holds its units until the
payment deadline, then expires and the units return.

In memory an order awaiting payment is only what paying and expiring need (``PendingOrder``:
the book's 32-byte record and its reservation); the order in full (buyer, address, unit
prices, merchants) is read from the staged rows until it commits, then from the store
(``Orders.pending_order``).

``Orders`` reaches the capabilities it ends orders with (logistics: parcels and delivery
windows; payments: refunds) through the ``Shipping`` and ``Refunding`` protocols of ``ports``, wired
by the bootstrap with ``connect``: they are built after orders, since they read orders.
"""

from collections.abc import Callable
from dataclasses import replace
from typing import Any, NamedTuple

from pyorder import inventory as inv
from pyorder.auth import SYSTEM, Principal, Role, buyer_number
from pyorder.engine import Engine
from pyorder.events.publisher import Events
from pyorder.intake import Intake
from pyorder.kernel.clock import now_ms
from pyorder.kernel.errors import (
    DomainError,
    InvalidInput,
    InvalidState,
    MalformedJson,
    NotFound,
    OutOfStock,
    PurchaseLimitExceeded,
)
from pyorder.logistics.model import ShipmentStatus
from pyorder.orders.input import OrderInput, UnknownRegion, address_fields
from pyorder.orders.model import (
    HeldLine,
    Order,
    OrderStatus,
    PendingOrder,
    StatusChange,
    just_placed,
)
from pyorder.orders.ports import Refunding, Shipping
from pyorder.storage.base import Store

CANCEL_REASON = "order_cancelled"
"""The reason recorded on the refund of a paid order cancelled before it shipped."""


_REFUSALS: dict[str, type[DomainError]] = {
    c.code: c
    for c in (InvalidInput, UnknownRegion, MalformedJson, OutOfStock, PurchaseLimitExceeded)
}


class Answer(NamedTuple):
    """What placing decided: the HTTP status and JSON body of the answer, and counts."""

    status: int
    body: bytes
    created: int
    stockouts: int


def _held(t: tuple[Any, ...]) -> PendingOrder:
    oid, reservation, buyer, total, currency, deadline, lines = t
    return PendingOrder(
        oid, reservation, buyer, total, currency, deadline, tuple(HeldLine(*li) for li in lines)
    )


class Orders:
    """Placing, reading and ending orders. ``engine`` gives the current engine (it is replaced
    on every rebuild); ``intake`` stages and commits; ``store`` reads what committed; ``events``
    publishes order events. ``connect`` names the neighbours (before the first request)."""

    def __init__(
        self, engine: Callable[[], Engine], intake: Intake, store: Store, events: Events
    ) -> None:
        self._engine = engine
        self._intake = intake
        self._store = store
        self._events = events
        self._shipping: Shipping | None = None
        self._refunds: Refunding | None = None
        self._cancelled_paid: set[int] = set()
        """Paid orders cancelled by this process: a second cancel racing the first (both read
        the order as paid from the store) is refused here, before it stages anything."""

    def connect(self, shipping: Shipping, refunds: Refunding) -> None:
        """Name the capabilities that orders end with; the bootstrap calls it once."""
        self._shipping = shipping
        self._refunds = refunds

    @property
    def shipping(self) -> Shipping:
        if self._shipping is None:
            raise RuntimeError("Orders.connect() has not been called")
        return self._shipping

    @property
    def refunds(self) -> Refunding:
        if self._refunds is None:
            raise RuntimeError("Orders.connect() has not been called")
        return self._refunds

    # --- placing ---------------------------------------------------------------------------

    def place_json(self, who: Principal, body: bytes) -> Answer:
        """Place the order of a JSON body (the API's ``OrderIn``): 201 and the order, or the
        error (400 not JSON, 422 invalid, 409 out of stock or over a purchase limit)."""
        return self._answer(self._engine().book.place_one, who, body)

    def place_batch_json(self, who: Principal, body: bytes) -> Answer:
        """Place the orders of a JSON batch body (``OrderBatchIn``): 200 and one result per
        order, the same as placing them one by one in order; or 400/422 for the whole body."""
        return self._answer(self._engine().book.place_batch, who, body)

    def _answer(self, place: Any, who: Principal, body: bytes) -> Answer:
        who.require(Role.BUYER)
        answer = Answer._make(
            place(body, who.subject, buyer_number(who.subject), self._intake.batch.placed, now_ms())
        )
        if answer.created:
            self._events.placed()  # order.created, if anyone subscribes: flags the batch
        return answer

    def place(self, who: Principal, order: OrderInput) -> Order:
        """Place one order from Python (no JSON either way): checked, priced, reserved and
        staged by the same Rust path, rules and limits as ``POST /v1/orders``. Returns the order
        (awaiting payment); a refusal raises its DomainError (``OutOfStock``,
        ``PurchaseLimitExceeded``, ``UnknownRegion``, ``InvalidInput`` with the ``details`` the
        API gives, e.g. ``path="$.lines[0].quantity"``) and changes nothing.

        The order is staged; it is durable once ``await intake.durable()`` returns.
        """
        who.require(Role.BUYER)
        placed, refused = self._engine().book.place_order(
            order.lines,
            who.subject,
            buyer_number(who.subject),
            self._intake.batch.placed,
            now_ms(),
            **address_fields(order.address),
        )
        if refused is not None:
            code, message, details = refused
            raise _REFUSALS.get(code, InvalidInput)(message, **details)
        assert placed is not None
        self._events.placed()  # order.created, if anyone subscribes: flags the batch
        return just_placed(placed)

    def pending(self, order_id: int) -> PendingOrder | None:
        """The order as the engine holds it if it awaits payment (staged or committed), else
        None."""
        found = self._engine().book.pending_order(order_id)
        return None if found is None else _held(found)

    async def pending_order(self, order_id: int) -> Order | None:
        """The order in full if it awaits payment, else None: from the staged rows if it has
        not committed yet, else from the store. The caller may act on it at once (no await
        between the last check that it is pending and the return)."""
        for _ in range(3):
            if self.pending(order_id) is None:
                return None
            staged = self._intake.staged_order(order_id)
            if staged is not None:
                return staged
            stored = await self._store.get_order(order_id)
            held = self.pending(order_id)
            if held is None:
                return None
            if (
                stored is not None
                and stored.status is OrderStatus.PENDING_PAYMENT
                and stored.reservation == held.reservation
            ):
                return stored
            # Not in the store as held here: its commit was under way as we looked; again.
            await self._intake.durable()
        raise RuntimeError(f"order {order_id} is pending here but not in the store")

    # --- reading ---------------------------------------------------------------------------

    async def get(self, who: Principal, order_id: int) -> Order:
        """An order as committed: one still waiting for its commit is not shown yet."""
        order = await self._store.get_order(order_id)
        if order is None or not _visible(who, order):
            raise NotFound(f"order {order_id} does not exist")
        return order

    async def list_for(self, who: Principal, before_id: int | None, limit: int) -> list[Order]:
        """The caller's orders, newest first: a buyer's own, a merchant's (containing its SKUs),
        or all for an admin."""
        store = self._store
        if who.role is Role.BUYER:
            return await store.list_orders(buyer=who.subject, before_id=before_id, limit=limit)
        if who.role is Role.MERCHANT:
            return await store.list_orders(merchant=who.key, before_id=before_id, limit=limit)
        return await store.list_orders(before_id=before_id, limit=limit)

    # --- ending ----------------------------------------------------------------------------

    async def cancel(self, who: Principal, order_id: int) -> Order:
        """Cancel an order of the caller's (admins: anyone's). Unpaid: its units are released.
        Paid and not shipped: its units return to available and its charge is refunded in
        full, automatically."""
        who.require(Role.BUYER, Role.ADMIN)
        order = await self.pending_order(order_id)
        engine = self._engine()
        if order is None or not _visible(who, order):
            stored = await self._store.get_order(order_id)
            if stored is not None and stored.status is OrderStatus.PENDING_PAYMENT:
                # Its end (another cancel, an expiry) is staged but not committed yet: wait for
                # it, so the answer names the state the order really ends in.
                await self._intake.durable()
                stored = await self._store.get_order(order_id)
            if stored is None or not _visible(who, stored):
                raise NotFound(f"order {order_id} does not exist")
            if stored.status is OrderStatus.PAID:
                return self._cancel_paid(stored)
            raise InvalidState(
                f"order {order_id} is {stored.status.value}; only unpaid or paid, unshipped"
                " orders can be cancelled",
                status=stored.status.value,
            )
        try:
            engine.inventory.release(order.reservation)
        except inv.ReservationResolvedError as exc:
            # The deadline passed: the core expired it on the spot; record that.
            self._end(order, OrderStatus.EXPIRED, order)
            raise InvalidState(f"order {order_id} expired before it was cancelled") from exc
        ended = self._end(order, OrderStatus.CANCELLED, order)
        assert ended is not None
        return ended

    def _cancel_paid(self, order: Order) -> Order:
        """Cancel a paid order that has not shipped: stage paid -> cancelled, its units moved
        from sold back to available, and a refund of all that is left of its charge (through
        the provider that took it, via the outbox). No await: one step, one batch."""
        if order.id in self._cancelled_paid:
            raise InvalidState(f"order {order.id} is cancelled", status="cancelled")
        if any(s.status is not ShipmentStatus.FAILED for s in self.shipping.shipments_of(order.id)):
            raise InvalidState(
                f"order {order.id} has shipped; return it instead of cancelling it",
                status=order.status.value,
            )
        refunds = self.refunds
        left = refunds.refundable(order.id)
        self._cancelled_paid.add(order.id)
        at = now_ms()
        batch = self._intake.batch
        batch.status_changes.append(
            StatusChange(order.id, OrderStatus.PAID, OrderStatus.CANCELLED, at)
        )
        inventory = self._engine().inventory
        buyer = buyer_number(order.buyer)  # the sale is void: its units stop counting too
        for line in order.lines:
            inventory.return_sold(line.sku, line.quantity, line.warehouse, buyer=buyer)
            batch.add_delta(line.sku, line.warehouse, 0, 0, -line.quantity)
        self.shipping.release_window(order.id)
        cancelled = replace(order, status=OrderStatus.CANCELLED, updated_ms=at)
        self._events.order_changed(cancelled, OrderStatus.PAID)
        if left > 0:
            refunds.issue(order.id, left, CANCEL_REASON, SYSTEM)
        return cancelled

    def forget_cancels(self) -> None:
        """After a rebuild the store is the truth again about which paid orders are cancelled."""
        self._cancelled_paid.clear()

    def expire_due(self, limit: int = 4096) -> int:
        """Expire unpaid orders whose payment deadline passed; returns how many were staged."""
        count, orders = self._engine().book.expire_due(now_ms(), limit)
        for held in orders:
            self._end(_held(held), OrderStatus.EXPIRED)
        return count

    def mark_paid(self, order: PendingOrder) -> None:
        """Confirm the reservation of a pending order whose payment was charged and stage
        pending_payment -> paid with its units moved from reserved to sold. Raises InvalidState
        (after staging the expiry) when its deadline passed before the charge was recorded."""
        try:
            self._engine().inventory.confirm(order.reservation)
        except inv.ReservationResolvedError as exc:
            self._end(order, OrderStatus.EXPIRED)
            raise InvalidState(f"order {order.id} expired before its payment arrived") from exc
        self._end(order, OrderStatus.PAID)

    def _end(
        self, order: PendingOrder | Order, status: OrderStatus, full: Order | None = None
    ) -> Order | None:
        """Stage the end of a pending order whose reservation the core has resolved: released
        (cancelled, expired) or confirmed (paid: the units are sold). Returns the order as it
        now is when given in ``full``; without it, its event (if anyone subscribes) is made
        from the stored order as the batch is handed to the store."""
        engine, batch = self._engine(), self._intake.batch
        engine.book.take_pending(order.id)
        at = now_ms()
        batch.status_changes.append(StatusChange(order.id, OrderStatus.PENDING_PAYMENT, status, at))
        sold = status is OrderStatus.PAID
        if not sold:
            self.shipping.release_window(order.id)
        for line in order.lines:
            batch.add_delta(line.sku, line.warehouse, 0, -line.quantity, line.quantity * sold)
        if full is None:
            self._events.order_ended(order.id, status, OrderStatus.PENDING_PAYMENT, at)
            return None
        ended = replace(full, status=status, updated_ms=at)
        self._events.order_changed(ended, OrderStatus.PENDING_PAYMENT)
        return ended


def _visible(who: Principal, order: Order) -> bool:
    if who.role is Role.ADMIN:
        return True
    if who.role is Role.BUYER:
        return order.buyer == who.subject
    return any(line.merchant == who.key for line in order.lines)
