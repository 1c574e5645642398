"""Orders: place (one or many), read, list, cancel, review those risk control holds, and
expire unpaid ones.

Placing goes through the order book in the Rust core (``Engine.book``): it parses and
validates the request body, prices every line from the catalogue (never from the client),
reserves the lines in the inventory (matched to warehouses by the delivery region), assigns
Snowflake IDs and stages the rows in the commit window's ``WriteBatch.placed``, then writes the
response body, all with no Python object per order. The caller acknowledges only after
``await intake.durable()``. An order awaiting payment holds its units until the
payment deadline, then expires and the units return. An order risk control holds for review
(``in_review``, docs/risk.md) holds them until a reviewer approves it (it then awaits payment,
with a new deadline) or rejects it (cancelled), or the review hold ends (expired).

In memory an order awaiting payment is only what paying and expiring need (``PendingOrder``:
the book's 32-byte record and its reservation); the order in full (buyer, address, unit
prices, merchants) is read from the staged rows until it commits, then from the store
(``Orders.pending_order``).

``Orders`` reaches the capabilities it ends orders with (logistics: parcels and delivery
windows; payments: refunds) through the ``Shipping`` and ``Refunding`` protocols of ``ports``, wired
by the bootstrap with ``connect``: they are built after orders, since they read orders.
"""

import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any, NamedTuple

from pyorder import inventory as inv
from pyorder._core import OrderRows
from pyorder.auth import SYSTEM, Principal, Role, buyer_number
from pyorder.cluster.limits import LimitClaims
from pyorder.engine import Engine
from pyorder.events.publisher import Events
from pyorder.intake import Intake, IntakeUnavailableError
from pyorder.kernel.clock import now_ms
from pyorder.kernel.errors import (
    DomainError,
    InvalidInput,
    InvalidState,
    MalformedJson,
    NotFound,
    NotOnSale,
    OutOfStock,
    PurchaseLimitExceeded,
    RiskBlocked,
)
from pyorder.logistics.model import ShipmentStatus
from pyorder.orders.input import OrderInput, UnknownRegion, address_fields
from pyorder.orders.limits import LIMIT_MESSAGE, limit_refusals, limited_units
from pyorder.orders.model import (
    HOLDING,
    HeldLine,
    Order,
    OrderStatus,
    PendingOrder,
    StatusChange,
    held_status,
    just_placed,
)
from pyorder.orders.ports import Refunding, Shipping
from pyorder.risk.decisions import REVIEWS, StagedReview
from pyorder.risk.intake import ClientInfo
from pyorder.risk.records import Decision, ReviewOutcome
from pyorder.storage.base import Store

CANCEL_REASON = "order_cancelled"
"""The reason recorded on the refund of a paid order cancelled before it shipped."""


_REFUSALS: dict[str, type[DomainError]] = {
    c.code: c
    for c in (
        InvalidInput,
        UnknownRegion,
        MalformedJson,
        OutOfStock,
        PurchaseLimitExceeded,
        NotOnSale,
        RiskBlocked,
    )
}


class Answer(NamedTuple):
    """What placing decided: the HTTP status and JSON body of the answer, and counts."""

    status: int
    body: bytes
    created: int
    stockouts: int


def _held(t: tuple[Any, ...]) -> PendingOrder:
    """The book's tuple (``OrderBook.pending_order``, ``expire_due``): (id, reservation, buyer
    number, total, currency, deadline_ms, lines, status)."""
    oid, reservation, buyer, total, currency, deadline, lines = t[:7]
    held = tuple(HeldLine(*li) for li in lines)
    return PendingOrder(oid, reservation, buyer, total, currency, deadline, held, held_status(t, 7))


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
        self._limits: LimitClaims | None = None
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

    def place_json(
        self, who: Principal, body: bytes, client: ClientInfo | None = None
    ) -> Answer | Awaitable[Answer]:
        """Place the order of a JSON body (the API's ``OrderIn``): 201 and the order, or the
        error (400 not JSON, 422 invalid, 409 out of stock or over a purchase limit).

        On a cluster node whose catalogue has SKUs with a purchase limit, the answer is
        awaited: an order of such SKUs is staged only once the cluster allows it
        (``pyorder.cluster.limits``). ``client``: what the request says of its client, for
        risk control (``pyorder.risk.intake``); a 422 ``risk_blocked`` answer is its refusal."""
        return self._answer(False, who, body, client)

    def place_batch_json(
        self, who: Principal, body: bytes, client: ClientInfo | None = None
    ) -> Answer | Awaitable[Answer]:
        """Place the orders of a JSON batch body (``OrderBatchIn``): 200 and one result per
        order, the same as placing them one by one in order; or 400/422 for the whole body.
        Awaited on a cluster node with limited SKUs, as ``place_json``."""
        return self._answer(True, who, body, client)

    def _answer(
        self, many: bool, who: Principal, body: bytes, client: ClientInfo | None
    ) -> Answer | Awaitable[Answer]:
        who.require(Role.BUYER)
        engine = self._engine()
        place = engine.book.place_batch if many else engine.book.place_one
        if self._limits is not None and engine.limited:
            return self._answer_claimed(engine, place, many, who, body, client)
        answer = Answer._make(
            place(
                body,
                who.subject,
                buyer_number(who.subject),
                self._intake.batch.placed,
                now_ms(),
                client,
            )
        )
        if answer.created:
            self._events.placed()  # order.created, if anyone subscribes: flags the batch
        return answer

    async def _answer_claimed(
        self,
        engine: Engine,
        place: Any,
        many: bool,
        who: Principal,
        body: bytes,
        client: ClientInfo | None,
    ) -> Answer:
        """``_answer`` on a cluster node with limited SKUs: placed into rows of its own, then
        staged once the limits are claimed; orders over a limit across the cluster are
        answered 409 ``purchase_limit_exceeded`` as the core answers its own refusals."""
        rows = OrderRows()
        answer = Answer._make(
            place(body, who.subject, buyer_number(who.subject), rows, now_ms(), client)
        )
        if not answer.created:
            return answer
        refused = await self._claimed(engine, rows, who.subject)
        if refused:
            status, refused_body, created = limit_refusals(answer.body, refused, many)
            answer = answer._replace(status=status, body=refused_body, created=created)
        if answer.created:
            self._events.placed()  # order.created, if anyone subscribes: flags the batch
        return answer

    def place(self, who: Principal, order: OrderInput) -> Order:
        """Place one order from Python (no JSON either way): checked, priced, reserved and
        staged by the same Rust path, rules and limits as ``POST /v1/orders``. Returns the order
        (awaiting payment, or in review when risk control holds it); a refusal raises its DomainError (``OutOfStock``,
        ``PurchaseLimitExceeded``, ``UnknownRegion``, ``InvalidInput`` with the ``details`` the
        API gives, e.g. ``path="$.lines[0].quantity"``) and changes nothing.

        The order is staged; it is durable once ``await intake.durable()`` returns. On a
        cluster node, an order holding a SKU with a purchase limit must be placed with
        ``place_checked`` (its limit is claimed across the cluster): here it raises
        RuntimeError and changes nothing.
        """
        who.require(Role.BUYER)
        engine = self._engine()
        claims = self._limits is not None and bool(engine.limited)
        rows = OrderRows() if claims else self._intake.batch.placed
        placed = self._place_order(engine, who, order, rows)
        if claims:
            if any(sku in engine.limited for sku, _ in order.lines):
                self._unplace(engine, [placed.id])
                raise RuntimeError(
                    "on a cluster node, an order of a SKU with a purchase limit is placed with"
                    " 'await orders.place_checked(...)'"
                )
            self._stage(rows, set())
        self._events.placed()  # order.created, if anyone subscribes: flags the batch
        return placed

    async def place_checked(self, who: Principal, order: OrderInput) -> Order:
        """``place``, with the purchase limits of a cluster node claimed across the cluster
        first (``pyorder.cluster.limits``); on a solo node it is ``place``."""
        engine = self._engine()
        if self._limits is None or not engine.limited:
            return self.place(who, order)
        who.require(Role.BUYER)
        rows = OrderRows()
        placed = self._place_order(engine, who, order, rows)
        refused = await self._claimed(engine, rows, who.subject)
        if refused:
            sku = refused[placed.id]
            raise PurchaseLimitExceeded(LIMIT_MESSAGE.format(sku=sku), sku=sku)
        self._events.placed()
        return placed

    def _place_order(
        self, engine: Engine, who: Principal, order: OrderInput, rows: OrderRows
    ) -> Order:
        placed, refused = engine.book.place_order(
            order.lines,
            who.subject,
            buyer_number(who.subject),
            rows,
            now_ms(),
            **address_fields(order.address),
            device_id=order.context.device_id,
            email_hash=order.context.email_hash,
            phone_hash=order.context.phone_hash,
            # No connection: only the account's age, when the principal knows it.
            client=None
            if who.account_created_ms is None
            else (None, None, 0, who.account_created_ms),
        )
        if refused is not None:
            code, message, details = refused
            raise _REFUSALS.get(code, InvalidInput)(message, **details)
        assert placed is not None
        taken = just_placed(placed)
        held = engine.book.pending_order(taken.id)
        if held is not None and held_status(held, 7) is OrderStatus.IN_REVIEW:
            taken = replace(taken, status=OrderStatus.IN_REVIEW)  # risk control holds it
        return taken

    # --- purchase limits on cluster nodes (``pyorder.cluster.limits``) ----------------------

    def claim_limits(self, limits: LimitClaims) -> None:
        """Claim purchase limits across the cluster before staging (cluster nodes only; the
        bootstrap calls it once)."""
        self._limits = limits

    async def _claimed(self, engine: Engine, rows: OrderRows, buyer: str) -> dict[int, int]:
        """Claim the limited units of the orders in ``rows`` (placed in ``engine``'s core by
        ``buyer``), stage the orders the cluster allows in the intake's batch, and take the
        others back out of the core. Returns the refused orders (id -> the SKU over its
        limit). Raises ``IntakeUnavailableError`` (nothing staged, nothing left reserved) when
        the core was rebuilt meanwhile, ``StorageError`` when the claim failed."""
        limits = self._limits
        assert limits is not None
        wanted = limited_units(rows, engine.limited)
        if not wanted:
            self._stage(rows, set())
            return {}
        placed = [o[0] for o in rows.order_tuples()]
        try:
            refused, fence = await limits.claim(buyer, wanted)
        except BaseException:
            if self._engine() is engine:
                self._unplace(engine, placed)
            raise
        if self._engine() is not engine or not self._intake.available:
            # Rebuilt meanwhile (or about to be): the orders' reservations are not in the new
            # core, and a batch staged now would be dropped.
            await limits.release([i for i, _ in wanted if i not in refused], fence)
            if self._engine() is engine:
                self._unplace(engine, placed)
            raise IntakeUnavailableError(
                "the write path failed while the purchase limits were claimed; nothing was"
                " placed, retry"
            )
        self._unplace(engine, list(refused))
        self._stage(rows, set(refused))
        limits.staged({i: len(units) for i, units in wanted if i not in refused}, fence)
        return refused

    def _stage(self, rows: OrderRows, skip: set[int]) -> None:
        """Move the orders of ``rows`` but ``skip`` into the intake's batch (shared, not copied)."""
        self._intake.batch.placed.take_from(rows, list(skip))

    @staticmethod
    def _unplace(engine: Engine, order_ids: list[int]) -> None:
        """Take orders placed in ``engine``'s core but never staged back out: their units
        return, and stop counting against the buyer's limits."""
        for oid in order_ids:
            held = engine.book.take_pending(oid)
            if held is not None:
                with contextlib.suppress(inv.ReservationResolvedError):
                    engine.inventory.release(held[1])

    def pending(self, order_id: int) -> PendingOrder | None:
        """The order as the engine holds it if it awaits payment or is in review (staged or
        committed; ``PendingOrder.status`` says which), else None."""
        found = self._engine().book.pending_order(order_id)
        return None if found is None else _held(found)

    async def pending_order(self, order_id: int) -> Order | None:
        """The order in full if it awaits payment or is in review, else None: from the staged
        rows if it has not committed yet, else from the store. The caller may act on it at once (no await
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
            if stored is not None and stored.status is held.status:
                # The core's reservation id: an adopted node's order has one of its own here
                # (``pyorder.cluster.stock.node_view``).
                return replace(stored, reservation=held.reservation)
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
        """Cancel an order of the caller's (admins: anyone's). Unpaid (awaiting payment or in
        review): its units are released. Paid and not shipped: its units return to available and its charge is refunded in
        full, automatically."""
        who.require(Role.BUYER, Role.ADMIN)
        order = await self.pending_order(order_id)
        engine = self._engine()
        if order is None or not _visible(who, order):
            stored = await self._store.get_order(order_id)
            if stored is not None and stored.status in HOLDING:
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

    # --- review (risk control held the order: docs/risk.md, "Review queue") ----------------

    async def approve(self, who: Principal, order_id: int) -> tuple[Order, Decision]:
        """Approve an order in review (an admin, or the merchant whose rules decided it): it
        awaits payment from now, with a new payment deadline (now + the payment timeout), and
        its decision's review is ``approved``. NotFound for another merchant's order or one
        without a decision; InvalidState when it is not in review (decided already, cancelled,
        expired). Returns the order and its decision as they now are (staged)."""
        order, decision = await self._in_review(who, order_id)
        at = now_ms()
        try:
            deadline = self._engine().book.approve(order_id, at)
        except ValueError as exc:  # not held in review: checked just before, with no await
            raise InvalidState(f"order {order_id} is not in review") from exc
        batch = self._intake.batch
        batch.status_changes.append(
            StatusChange(order_id, OrderStatus.IN_REVIEW, OrderStatus.PENDING_PAYMENT, at)
        )
        review = StagedReview(order_id, ReviewOutcome.APPROVED, who.key, at, deadline)
        batch.part(REVIEWS).add(review)
        approved = replace(
            order, status=OrderStatus.PENDING_PAYMENT, deadline_ms=deadline, updated_ms=at
        )
        self._events.reviewed(approved, ReviewOutcome.APPROVED)
        return approved, _reviewed(decision, review)

    async def reject(self, who: Principal, order_id: int) -> tuple[Order, Decision]:
        """Reject an order in review (who may: as ``approve``): it is cancelled, its units
        released, and its decision's review is ``rejected``. Errors as ``approve``; an order
        whose review hold ended as it was rejected is recorded expired (InvalidState). Returns
        the order and its decision as they now are (staged)."""
        order, decision = await self._in_review(who, order_id)
        try:
            self._engine().inventory.release(order.reservation)
        except inv.ReservationResolvedError as exc:
            self._end(order, OrderStatus.EXPIRED, order)
            raise InvalidState(f"order {order_id} expired before it was reviewed") from exc
        rejected = self._end(order, OrderStatus.CANCELLED, order)
        assert rejected is not None
        review = StagedReview(order_id, ReviewOutcome.REJECTED, who.key, rejected.updated_ms)
        self._intake.batch.part(REVIEWS).add(review)
        self._events.reviewed(rejected, ReviewOutcome.REJECTED)
        return rejected, _reviewed(decision, review)

    async def _in_review(self, who: Principal, order_id: int) -> tuple[Order, Decision]:
        """The order in review and its decision, once the caller may review it. On return the
        engine holds it in review, and the caller acts on it at once (no await between the
        last check and the return)."""
        who.require(Role.MERCHANT, Role.ADMIN)
        for _ in range(3):
            order = await self.pending_order(order_id)
            if order is not None and self._intake.staged_order(order_id) is not None:
                await self._intake.durable()  # its decision commits with it
                continue
            decision = await self._store.risk_decision(order_id)
            if decision is None or not _reviews(who, decision):
                raise NotFound(f"order {order_id} has no risk decision")
            held = self.pending(order_id)
            if order is None or held is None or held.status is not OrderStatus.IN_REVIEW:
                ended = decision.review or (order.status.value if order else "not held")
                raise InvalidState(f"order {order_id} is not in review ({ended})", status=ended)
            if order.status is OrderStatus.IN_REVIEW:
                return order, decision
            await self._intake.durable()  # approved meanwhile: its change is under way
        raise InvalidState(f"order {order_id} is not in review")

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
        """Expire unpaid orders whose payment deadline passed, and orders in review whose
        review hold ended (their review: ``expired``); returns how many were staged."""
        count, orders = self._engine().book.expire_due(now_ms(), limit)
        for held in orders:
            self._end(_held(held), OrderStatus.EXPIRED)
        return count

    def mark_paid(self, order: PendingOrder) -> None:
        """Confirm the reservation of a pending order whose payment was charged and stage
        pending_payment -> paid with its units moved from reserved to sold. Raises InvalidState
        (after staging the expiry) when its deadline passed before the charge was recorded,
        and (staging nothing) when it is in review."""
        if order.status is OrderStatus.IN_REVIEW:
            raise InvalidState(
                f"order {order.id} is in review; it can be paid once approved", status="in_review"
            )
        try:
            self._engine().inventory.confirm(order.reservation)
        except inv.ReservationResolvedError as exc:
            self._end(order, OrderStatus.EXPIRED)
            raise InvalidState(f"order {order.id} expired before its payment arrived") from exc
        self._end(order, OrderStatus.PAID)

    def _end(
        self, order: PendingOrder | Order, status: OrderStatus, full: Order | None = None
    ) -> Order | None:
        """Stage the end of a held order (awaiting payment, or in review) whose reservation the
        core has resolved: released (cancelled, expired) or confirmed (paid: the units are
        sold). An order in review that expires has its review ``expired`` too. Returns the
        order as it now is when given in ``full``; without it, its event (if anyone
        subscribes) is made from the stored order as the batch is handed to the store."""
        engine, batch = self._engine(), self._intake.batch
        engine.book.take_pending(order.id)
        at = now_ms()
        was = order.status
        batch.status_changes.append(StatusChange(order.id, was, status, at))
        if was is OrderStatus.IN_REVIEW and status is OrderStatus.EXPIRED:
            review = StagedReview(order.id, ReviewOutcome.EXPIRED, SYSTEM, at)
            batch.part(REVIEWS).add(review)
        sold = status is OrderStatus.PAID
        if not sold:
            self.shipping.release_window(order.id)
        for line in order.lines:
            batch.add_delta(line.sku, line.warehouse, 0, -line.quantity, line.quantity * sold)
        if full is None:
            self._events.order_ended(order.id, status, was, at)
            return None
        ended = replace(full, status=status, updated_ms=at)
        self._events.order_changed(ended, was)
        return ended


def _reviewed(decision: Decision, review: StagedReview) -> Decision:
    return replace(
        decision, review=review.outcome, reviewer=review.reviewer, reviewed_ms=review.at_ms
    )


def _reviews(who: Principal, decision: Decision) -> bool:
    """Whether the caller may review the decision: an admin, or the merchant it is of (the
    merchant of the order's first line, whose rules decided it)."""
    return who.role is Role.ADMIN or decision.merchant == who.key


def _visible(who: Principal, order: Order) -> bool:
    if who.role is Role.ADMIN:
        return True
    if who.role is Role.BUYER:
        return order.buyer == who.subject
    return any(line.merchant == who.key for line in order.lines)
