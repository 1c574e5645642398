"""Returns: the buyer opens a no-reason return of a delivered parcel's units, the carrier picks
the parcel up, and the refund is issued at the pickup scan when every lightning rule holds, or
after the merchant's review otherwise.

Like the other services it holds its state in memory (rebuilt from the store) and changes it
only synchronously on the event loop, staging every change in the intake's batch in the same
call as whatever goes with it: a return with its booking (outbox, ``OutboxKind.RETURN_BOOKING``)
and its decision; a pickup scan with the tracking event, the return's move, its decision and
the refund (``Refunds.issue``, with its own outbox call); an arrival at the warehouse with the
units back in stock. One transaction records each step, so a crash never keeps half of one.

Tracking events of a return parcel come through ``Logistics.handle_webhook`` (verified and
de-duplicated there) and are applied only when their sequence is newer than the last applied
and their status a legal move (``model.PARCEL_TRANSITIONS``): duplicates and late arrivals
change nothing, and a return is refunded at most once whatever the order of arrival. The
carrier's exception before the pickup scan fails the return (``pickup_failed``: its units may be
returned again); after it, it is recorded on the return and moves no money.
"""

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any

from pyorder.auth import SYSTEM, Principal, Role
from pyorder.engine import Engine
from pyorder.intake import Intake
from pyorder.inventory import InventoryError
from pyorder.kernel.clock import iso_ms, now_ms
from pyorder.kernel.errors import DomainError, InvalidInput, InvalidState, NotFound
from pyorder.kernel.outbox import OutboxItem, OutboxKind
from pyorder.logistics import schemas as carrier_docs
from pyorder.logistics.model import TrackingEvent
from pyorder.logistics.service import Logistics
from pyorder.logistics.storage import LOGISTICS
from pyorder.model import Snapshot
from pyorder.orders.model import Order, OrderStatus
from pyorder.orders.service import Orders
from pyorder.payments.model import Refund
from pyorder.payments.refunds import RefundExceedsCharge
from pyorder.payments.service import Payments
from pyorder.returns import policy
from pyorder.returns.config import DAY_MS, ReturnsConfig
from pyorder.returns.model import (
    HOLDS_UNITS,
    PARCEL_TRANSITIONS,
    RETURN_TRANSITIONS,
    CostBearer,
    Decision,
    ParcelStatus,
    Return,
    ReturnLine,
    ReturnStatus,
    RuleResult,
    Stage,
    parse_return_reference,
    return_reference,
)
from pyorder.returns.rules import Facts, evaluate
from pyorder.returns.storage import RETURNS
from pyorder.storage.base import Store
from pyorder.storage.limits import check_row
from pyorder.storage.outbox import OUTBOX

log = logging.getLogger(__name__)

ID_STRIDE = 256
"""Node numbers (``pyorder.ids``): a cluster node's return ids are its number modulo this."""


_SCANS = {
    "created": ParcelStatus.CREATED,
    "return_pickup_scanned": ParcelStatus.PICKED_UP,
    "picked_up": ParcelStatus.PICKED_UP,
    "in_transit": ParcelStatus.IN_TRANSIT,
    "delivered": ParcelStatus.DELIVERED,
    "exception": ParcelStatus.EXCEPTION,
}
"""The carrier's statuses of a return parcel, as ours."""
_PICKED = frozenset({ParcelStatus.PICKED_UP, ParcelStatus.IN_TRANSIT, ParcelStatus.DELIVERED})


class Returns:
    """Returns of delivered orders. ``config``: windows and rules; ``engine`` gives the
    current engine (stock, SKUs, warehouses; replaced on every rebuild); ``orders`` who may
    see which order; ``payments`` refund them; ``logistics`` knows the parcels out and the
    carriers; ``intake`` stages, ``store`` reads what committed."""

    def __init__(
        self,
        config: ReturnsConfig,
        engine: Callable[[], Engine],
        orders: Orders,
        payments: Payments,
        logistics: Logistics,
        intake: Intake,
        store: Store,
    ) -> None:
        self.config = config
        self._engine = engine
        self._orders = orders
        self._payments = payments
        self._logistics = logistics
        self._intake = intake
        self._store = store
        self.returns: dict[int, Return] = {}
        self.by_order: dict[int, list[int]] = {}
        self.by_buyer: dict[str, list[int]] = {}
        self.decisions: dict[int, list[Decision]] = {}
        self.outbox: dict[tuple[int, int, str], OutboxItem] = {}
        """Bookings owed to the carrier, not done yet."""
        self._top_id = 0
        """The largest return id handed out (by any node, as of the last load)."""
        self._node: int | None = None
        """A cluster node's number: its new ids are those equal to it modulo ``ID_STRIDE``, so
        nodes never hand out the same one; None: a node alone (ids 1, 2, 3, ...)."""
        self.on_outbox: list[Callable[[OutboxItem], None]] = []
        self._on_lightning: list[Callable[[float], None]] = []
        self._notices: set[asyncio.Task[None]] = set()

    def subscribe_lightning(self, notify: Callable[[float], None]) -> None:
        """Call ``notify`` with the seconds from a pickup scan to its lightning refund, once
        that refund is durable."""
        self._on_lightning.append(notify)

    # --- state ---------------------------------------------------------------------------------

    def load(self, snap: Snapshot, node: int | None = None) -> None:
        """Hold exactly what the store holds (at start, and after a failed commit); ``node``:
        the number of a cluster node, which holds its own orders' returns only."""
        stored = snap.part(RETURNS)
        self.returns = {r.id: r for r in stored.returns}
        self._top_id = max(stored.top_id, max(self.returns, default=0))
        self._node = node
        self.by_order, self.by_buyer, self.decisions = {}, {}, {}
        for rid in sorted(self.returns):
            r = self.returns[rid]
            self.by_order.setdefault(r.order_id, []).append(rid)
            self.by_buyer.setdefault(r.buyer, []).append(rid)
        for d in stored.decisions:
            self.decisions.setdefault(d.return_id, []).append(d)
        self.outbox = {o.key: o for o in snap.part(OUTBOX) if o.kind is OutboxKind.RETURN_BOOKING}

    def of_order(self, order_id: int) -> list[Return]:
        return [self.returns[i] for i in self.by_order.get(order_id, ())]

    def _put(self, ret: Return) -> Return:
        ret = replace(ret, updated_ms=now_ms())
        check_row(ret)  # before memory changes: a value no store holds fails this request only
        if ret.id not in self.returns:
            self.by_order.setdefault(ret.order_id, []).append(ret.id)
            self.by_buyer.setdefault(ret.buyer, []).append(ret.id)
        self.returns[ret.id] = ret
        self._intake.batch.part(RETURNS).returns[ret.id] = ret
        return ret

    def _record(self, decision: Decision) -> Decision:
        check_row(decision)
        found = self.decisions.setdefault(decision.return_id, [])
        found[:] = [d for d in found if d.stage is not decision.stage] + [decision]
        staged = self._intake.batch.part(RETURNS).decisions
        staged[(decision.return_id, decision.stage.value)] = decision
        return decision

    @staticmethod
    def _check(ret: Return, *path: ReturnStatus) -> None:
        """Refuse (InvalidState, nothing changed) unless ``ret`` can move along ``path``."""
        at = ret.status
        for to in path:
            if to not in RETURN_TRANSITIONS[at]:
                raise InvalidState(
                    f"return {ret.id} is {ret.status.value}; it cannot become {to.value}",
                    status=ret.status.value,
                )
            at = to

    def _move(self, ret: Return, to: ReturnStatus, **changes: Any) -> Return:
        self._check(ret, to)
        return self._put(replace(ret, status=to, **changes))

    def _new_id(self) -> int:
        """The next return id: above every id handed out; on a cluster node, one of its own."""
        rid = self._top_id + 1
        if self._node is not None:
            rid += (self._node - rid) % ID_STRIDE
        self._top_id = rid
        return rid

    def stop(self) -> None:
        for task in self._notices:
            task.cancel()

    # --- the buyer opens a return --------------------------------------------------------------

    async def open(
        self, who: Principal, order_id: int, lines: Iterable[tuple[int, int]], reason: str
    ) -> list[Return]:
        """Returns of ``lines`` ((sku, quantity)) of the buyer's own delivered order: one per
        parcel and merchant the units came from, each staged with its booking with the carrier
        and its lightning decision. Refused as a whole (nothing staged) when one part is not
        delivered, past its window, of an excluded category, or more units than bought and not
        yet returned."""
        who.require(Role.BUYER)
        order = await self._store.get_order(order_id)
        if order is None or order.buyer != who.subject:
            raise NotFound(f"order {order_id} does not exist")
        delivered_orders = await self._store.delivered_orders(order.buyer)
        # From here on, no await: the checks and the staging are one step of the event loop.
        if order.status is not OrderStatus.PAID:
            raise InvalidState(
                f"order {order_id} is {order.status.value}; only paid, delivered orders are"
                " returned",
                status=order.status.value,
            )
        refunds = self._payments.refunds
        taken = policy.taken_units(order, self.of_order(order_id), refunds.of(order_id))
        parts = policy.allocate(order, policy.merge_lines(lines), taken)
        logistics, skus, at = self._logistics, self._engine().skus, now_ms()
        planned: list[tuple[policy.Place, list[ReturnLine], str]] = []
        for place, units in sorted(parts.items()):
            parcel = policy.delivered_parcel(order, logistics.shipments_of(order_id), place[0])
            carrier = logistics.config.carrier(parcel.carrier) or logistics.config.default_carrier()
            if carrier is None:
                raise InvalidInput("no carrier is configured to take returns", field="carrier")
            priced = policy.price_lines(
                self.config,
                order,
                place,
                units,
                categories={s: skus[s].category for s in units if s in skus},
                delivered_ms=parcel.delivered_ms,
                at_ms=at,
            )
            planned.append((place, priced, carrier.name))
        amount = sum(li.quantity * li.unit_price for _, priced, _ in planned for li in priced)
        refundable = refunds.refundable(order_id)
        if amount > refundable:
            raise RefundExceedsCharge(
                f"cannot return goods worth {amount}: {refundable} of the order's charge is left"
                " to refund",
                refundable=refundable,
                amount=amount,
            )
        return [
            self._stage(order, place, priced, carrier, reason, delivered_orders, at)
            for place, priced, carrier in planned
        ]

    def _stage(
        self,
        order: Order,
        place: policy.Place,
        lines: list[ReturnLine],
        carrier: str,
        reason: str,
        delivered_orders: int,
        at: int,
    ) -> Return:
        """Stage a new return with its booking (outbox) and its ``opened`` decision."""
        rid = self._new_id()
        cost_borne_by = (
            CostBearer.PLATFORM if self.config.platform_pays_first_weight else CostBearer.BUYER
        )
        ret = Return(
            id=rid,
            order_id=order.id,
            buyer=order.buyer,
            merchant=place[1],
            warehouse=place[0],
            status=ReturnStatus.REQUESTED,
            reason=reason[:500],
            lines=tuple(lines),
            amount=sum(li.quantity * li.unit_price for li in lines),
            currency=order.currency,
            carrier=carrier,
            idempotency_key=f"pyorder-return-{rid}",
            carrier_shipment_id="",
            tracking_number="",
            shipping_cost=0,
            cost_borne_by=cost_borne_by,
            parcel_status=ParcelStatus.PENDING,
            last_sequence=0,
            refund_number=0,
            reviewed_by="",
            review_reason="",
            error="",
            created_ms=at,
            updated_ms=at,
            picked_up_ms=0,
            refunded_ms=0,
            arrived_ms=0,
            restocked_ms=0,
        )
        ret = self._put(ret)
        self._decide(ret, order.total, Stage.OPENED, delivered_orders, at)
        item = OutboxItem(order.id, rid, OutboxKind.RETURN_BOOKING, False, at, at)
        self.outbox[item.key] = item
        self._intake.batch.part(OUTBOX).items[item.key] = item
        for notify in self.on_outbox:
            notify(item)
        return ret

    # --- the lightning decision ----------------------------------------------------------------

    def _decide(
        self,
        ret: Return,
        order_total: int,
        stage: Stage,
        delivered_orders: int,
        at: int,
        scan: ParcelStatus | None = None,
    ) -> Decision:
        """Evaluate the lightning rules and record the decision; at ``picked_up``, ``scan`` is
        the status of the scan that says the parcel was collected."""
        f = self._logistics.fulfilments.get(ret.order_id)
        facts = Facts(
            order_total=order_total,
            refund_amount=ret.amount,
            refundable=self._payments.refunds.refundable(ret.order_id),
            recent_returns=self._recent_returns(ret),
            delivered_orders=delivered_orders,
            categories=frozenset(li.category for li in ret.lines),
            fulfilment_status=f.status.value if f is not None else "unfulfilled",
            parcel_status=(scan or ret.parcel_status).value if stage is Stage.PICKED_UP else None,
        )
        rules = evaluate(self.config.lightning, facts)
        decision = Decision(ret.id, stage, all(r.passed for r in rules), rules, at)
        return self._record(decision)

    def _recent_returns(self, ret: Return) -> int:
        """The buyer's returns of other orders (units held) opened in the history span before
        ``ret`` (the returns of one order, one per parcel, are one return to the buyer)."""
        since = ret.created_ms - int(self.config.lightning.history_days * DAY_MS)
        return sum(
            1
            for i in self.by_buyer.get(ret.buyer, ())
            if i < ret.id
            and self.returns[i].order_id != ret.order_id
            and self.returns[i].status in HOLDS_UNITS
            and self.returns[i].created_ms >= since
        )

    def decisions_of(self, return_id: int) -> list[Decision]:
        return list(self.decisions.get(return_id, ()))

    # --- the carrier ---------------------------------------------------------------------------

    def carrier_request(self, order: Order, ret: Return) -> dict[str, Any]:
        """The body of the carrier's ``POST /v1/returns``: from the buyer's address to the
        warehouse the units were sold from."""
        fields = ("name", "line1", "line2", "city", "region", "postal_code", "country", "phone")
        sender = {k: order.address[k] for k in fields if order.address.get(k)}
        wh = self._engine().warehouses.get(ret.warehouse)
        name = wh.name if wh is not None else f"warehouse {ret.warehouse}"
        grams = self._logistics.config.grams_per_unit
        body: dict[str, Any] = {
            "from": sender,
            "to": {"name": name, "line1": f"warehouse {ret.warehouse}", "city": name},
            "weight_g": max(1, min(1_000_000, ret.units * grams)),
            "reference": return_reference(ret.id),
            "metadata": {"order_id": str(ret.order_id), "return_id": str(ret.id)},
        }
        original = [
            s.tracking_number
            for s in self._logistics.shipments_of(ret.order_id)
            if s.warehouse == ret.warehouse and s.tracking_number
        ]
        if original:
            body["original_tracking_number"] = original[-1]
        return body

    def observe_booking(self, return_id: int, shipment: carrier_docs.Shipment) -> None:
        """The carrier booked the parcel back (its answer, possibly replayed): its ids and the
        first-weight cost the platform bears."""
        ret = self.returns.get(return_id)
        if ret is None:
            return
        ret = replace(
            ret,
            carrier_shipment_id=ret.carrier_shipment_id or shipment.id,
            tracking_number=ret.tracking_number or shipment.tracking_number or "",
            shipping_cost=shipment.first_weight_cost,
        )
        if ret.parcel_status is ParcelStatus.PENDING:
            ret = replace(ret, parcel_status=ParcelStatus.CREATED)
        if ret.status is ReturnStatus.REQUESTED:
            ret = replace(ret, status=ReturnStatus.PICKUP_BOOKED)
        self._put(ret)

    def fail_booking(self, return_id: int, error: str) -> None:
        """The carrier refused to book the parcel back: the return failed; its units are free."""
        ret = self.returns.get(return_id)
        if ret is None or ReturnStatus.BOOKING_FAILED not in RETURN_TRANSITIONS[ret.status]:
            return
        self._move(
            ret, ReturnStatus.BOOKING_FAILED, parcel_status=ParcelStatus.FAILED, error=error[:500]
        )

    def finish_outbox(self, item: OutboxItem) -> None:
        self.outbox.pop(item.key, None)
        self._intake.batch.part(OUTBOX).items[item.key] = replace(
            item, done=True, updated_ms=now_ms()
        )

    def observe_tracking(self, carrier: str, event_id: str, ev: carrier_docs.TrackingEvent) -> None:
        """Apply a tracking event of a return parcel (staged; called by ``Logistics``). The
        pickup scan decides the return, refunding it at once when every rule holds; the arrival
        at the warehouse puts refunded units back in stock; an exception before the pickup
        fails the return (its units free again), one after it is recorded and moves no money."""
        rid = parse_return_reference(ev.reference)
        ret = self.returns.get(rid) if rid is not None else None
        if ret is None or ret.carrier != carrier:
            log.info(
                "return tracking event %s of %s: no return of ours; ignored", event_id, carrier
            )
            return
        shipment_id = ev.shipment or ""
        if ret.carrier_shipment_id and shipment_id and shipment_id != ret.carrier_shipment_id:
            log.warning("return tracking event %s: foreign shipment %s", event_id, shipment_id)
            return
        sequence = ev.sequence
        status = _SCANS.get(ev.status)
        if status is None:
            log.warning("return tracking event %s: unknown status %r; ignored", event_id, ev)
            return
        at = now_ms()
        occurred = ev.occurred_ms() or at
        applied = sequence > ret.last_sequence and status in PARCEL_TRANSITIONS[ret.parcel_status]
        # An exception held for the scans missing before it (``_on_exception``): a late scan
        # that says the parcel was collected decides the pickup on it, once.
        late_pickup = not applied and status in _PICKED and _held(ret)
        self._intake.batch.part(LOGISTICS).tracking_events.append(
            TrackingEvent(
                carrier=carrier,
                event_id=event_id,
                order_id=ret.order_id,
                parcel=-ret.id,  # a return parcel: minus the return's id
                sequence=sequence,
                status=status.value,
                occurred_ms=occurred,
                location=ev.location[:200],
                received_ms=at,
                applied=applied or late_pickup,
            )
        )
        if late_pickup:
            ret = self._on_pickup(ret, status, occurred, at)
            note = f"a {status.value} scan (sequence {sequence}) came late: lost after the pickup"
            self._put(replace(ret, error=_join(ret.error, note)))
            return
        if not applied:
            return  # stale or a duplicate: recorded only
        before = ret.last_sequence
        ret = self._put(
            replace(
                ret,
                parcel_status=status,
                last_sequence=sequence,
                carrier_shipment_id=ret.carrier_shipment_id or shipment_id,
                tracking_number=ret.tracking_number or ev.tracking_number or "",
                arrived_ms=occurred if status is ParcelStatus.DELIVERED else ret.arrived_ms,
            )
        )
        if status is ParcelStatus.EXCEPTION:
            reason = (ev.details.reason if ev.details is not None else None) or ""
            self._on_exception(ret, reason[:100], sequence == before + 1, occurred, at)
            return
        pickup = status in _PICKED and not ret.picked_up_ms
        if pickup and ReturnStatus.PICKED_UP in RETURN_TRANSITIONS[ret.status]:
            ret = self._on_pickup(ret, status, occurred, at)
        self._restock(ret)

    def _on_pickup(self, ret: Return, scan: ParcelStatus, scanned_ms: int, at: int) -> Return:
        """The parcel back was picked up (``scan`` says so): decide, and refund at once when
        every rule holds."""
        ret = self._move(ret, ReturnStatus.PICKED_UP, picked_up_ms=at)
        # No await here: the buyer's delivered orders are those counted when it was opened.
        decision = self._decide(
            ret, self._order_total(ret), Stage.PICKED_UP, self._delivered(ret), at, scan
        )
        if decision.lightning:
            try:
                refund = self._refund(ret, SYSTEM)
            except DomainError as exc:  # e.g. a partial refund since took what was left
                log.warning("return %d: lightning refund refused: %s", ret.id, exc.message)
                return self._move(ret, ReturnStatus.IN_REVIEW, error=exc.message[:500])
            ret = self._move(
                ret, ReturnStatus.REFUNDED, refund_number=refund.number, refunded_ms=at
            )
            self._notify(max(0, at - scanned_ms) / 1000)
            return ret
        return self._move(ret, ReturnStatus.IN_REVIEW)

    def _on_exception(
        self, ret: Return, reason: str, contiguous: bool, occurred: int, at: int
    ) -> Return:
        """The carrier reported an exception on the parcel back (already applied to it).

        After the pickup scan the parcel was lost on the way: that is recorded on the return,
        which stays where it is (a refund issued stands; a return in review stays there for the
        merchant to decide). Before it, the parcel was never collected: the return fails, with
        its decision, and its units may be returned again. When scans are missing before the
        exception (``contiguous`` is false: a pickup scan may have been overtaken), the return
        waits for them; a late one that says the parcel was collected decides the pickup."""
        note = (
            f"the carrier reported an exception ({reason or 'no reason given'})"
            f" at {iso_ms(occurred)}"
        )
        if ret.picked_up_ms:
            log.warning("return %d: the parcel back was lost after the pickup: %s", ret.id, note)
            lost = f"{note} after the pickup scan: the parcel back is lost, nothing is restocked"
            return self._put(replace(ret, error=_join(ret.error, lost)))
        if not contiguous:
            log.warning("return %d: %s, before scans not received yet", ret.id, note)
            held = f"{note}; scans before it are missing: the return waits for them"
            return self._put(replace(ret, error=_join(ret.error, held)))
        if ReturnStatus.PICKUP_FAILED not in RETURN_TRANSITIONS[ret.status]:
            return ret  # never expected: a return not picked up is requested or booked
        log.warning("return %d: the parcel back was never collected: %s", ret.id, note)
        failed = f"{note} before the pickup scan: the parcel was never collected"
        ret = self._move(ret, ReturnStatus.PICKUP_FAILED, error=_join(ret.error, failed))
        seen = f"exception ({reason})" if reason else "exception"
        rule = RuleResult("return_picked_up", False, seen, ParcelStatus.PICKED_UP.value)
        self._record(Decision(ret.id, Stage.PICKUP_FAILED, False, (rule,), at))
        return ret

    def _delivered(self, ret: Return) -> int:
        for d in self.decisions_of(ret.id):
            for r in d.rules:
                if d.stage is Stage.OPENED and r.rule == "buyer_delivered_orders":
                    return int(r.observed)
        return 0

    def _order_total(self, ret: Return) -> int:
        pay = self._payments.payments.get(ret.order_id)
        return pay.amount if pay is not None else ret.amount

    def _refund(self, ret: Return, requested_by: str) -> Refund:
        lines = tuple((li.sku, li.quantity) for li in ret.lines)
        return self._payments.refunds.issue(
            ret.order_id, ret.amount, f"return {ret.id}", requested_by, lines
        )

    def _restock(self, ret: Return) -> None:
        """Refunded units delivered back to the warehouse become available again (once)."""
        if ret.status is not ReturnStatus.REFUNDED or not ret.arrived_ms or ret.restocked_ms:
            return
        inventory, batch = self._engine().inventory, self._intake.batch
        for li in ret.lines:
            try:
                inventory.return_sold(li.sku, li.quantity, ret.warehouse)
            except InventoryError as exc:  # never expected: the units were sold from there
                log.error("return %d: SKU %d not restocked: %s", ret.id, li.sku, exc)
                continue
            batch.add_delta(li.sku, ret.warehouse, 0, 0, -li.quantity)
        self._put(replace(ret, restocked_ms=now_ms()))

    def _notify(self, seconds: float) -> None:
        async def when_durable() -> None:
            with contextlib.suppress(Exception):
                await self._intake.durable()
                for notify in self._on_lightning:
                    notify(seconds)

        if not self._on_lightning:
            return
        task = asyncio.get_running_loop().create_task(when_durable())
        self._notices.add(task)
        task.add_done_callback(self._notices.discard)

    # --- the merchant's review -----------------------------------------------------------------

    def approve(self, who: Principal, return_id: int) -> Return:
        """The merchant (or an admin) approves a return in review: its refund is issued."""
        ret = self._reviewable(who, return_id)
        self._check(ret, ReturnStatus.APPROVED, ReturnStatus.REFUNDED)
        refund = self._refund(ret, who.key)  # may refuse (nothing staged yet)
        at = now_ms()
        ret = self._move(ret, ReturnStatus.APPROVED, reviewed_by=who.key)
        ret = self._move(ret, ReturnStatus.REFUNDED, refund_number=refund.number, refunded_ms=at)
        self._restock(ret)
        return self.returns[ret.id]

    def reject(self, who: Principal, return_id: int, reason: str) -> Return:
        """The merchant (or an admin) rejects a return in review: no refund, no restock."""
        ret = self._reviewable(who, return_id)
        return self._move(
            ret, ReturnStatus.REJECTED, reviewed_by=who.key, review_reason=reason[:500]
        )

    def _reviewable(self, who: Principal, return_id: int) -> Return:
        who.require(Role.MERCHANT, Role.ADMIN)
        return self._visible(who, return_id)

    # --- reading -------------------------------------------------------------------------------

    def _visible(self, who: Principal, return_id: int) -> Return:
        ret = self.returns.get(return_id)
        if ret is None or not _may_see(who, ret):
            raise NotFound(f"return {return_id} does not exist")
        return ret

    def refund_of(self, ret: Return) -> Refund | None:
        if not ret.refund_number:
            return None
        return self._payments.refunds.refunds.get((ret.order_id, ret.refund_number))

    async def read(self, who: Principal, return_id: int) -> tuple[Return, list[TrackingEvent]]:
        """A return the caller may see (buyer, merchant of its lines, admin) and its parcel's
        tracking events, as committed."""
        ret = self._visible(who, return_id)
        # Read first, then wait: once everything staged so far is durable, so is this state.
        await self._intake.durable()
        events = await self._store.tracking_events(ret.order_id)
        return ret, [e for e in events if e.parcel == -ret.id]

    async def read_order(self, who: Principal, order_id: int) -> list[Return]:
        """The returns of an order the caller may see (a merchant: its own), as committed."""
        await self._orders.get(who, order_id)  # 404 unless visible
        found = [r for r in self.of_order(order_id) if _may_see(who, r)]
        await self._intake.durable()
        return found

    async def list(
        self, who: Principal, status: ReturnStatus | None, after: int, limit: int
    ) -> list[Return]:
        """The caller's returns by id after ``after`` (a buyer's own, a merchant's review
        queue with ``status=in_review``, all for an admin), at most ``limit``. A cluster node
        holds its own orders' returns only: it reads the list from the store."""
        if self._node is not None:
            await self._intake.durable()  # its own staged returns are in what it reads
            return await self._store.list_returns(
                buyer=who.subject if who.role is Role.BUYER else "",
                merchant=who.key if who.role is Role.MERCHANT else "",
                status="" if status is None else status.value,
                after=after,
                limit=limit,
            )
        if who.role is Role.BUYER:
            ids: Iterable[int] = self.by_buyer.get(who.subject, ())
        else:
            ids = sorted(self.returns)
        found: list[Return] = []
        for i in ids:
            ret = self.returns[i]
            if i <= after or not _may_see(who, ret):
                continue
            if status is not None and ret.status is not status:
                continue
            found.append(ret)
            if len(found) == limit:
                break
        await self._intake.durable()
        return found


def _may_see(who: Principal, ret: Return) -> bool:
    if who.role is Role.ADMIN:
        return True
    if who.role is Role.MERCHANT:
        return ret.merchant == who.key
    return ret.buyer == who.subject


def _held(ret: Return) -> bool:
    """An exception came before any pickup scan, with scans missing before it: the return
    waits for them (``Returns._on_exception``)."""
    return (
        ret.parcel_status is ParcelStatus.EXCEPTION
        and not ret.picked_up_ms
        and ReturnStatus.PICKED_UP in RETURN_TRANSITIONS[ret.status]
    )


def _join(error: str, note: str) -> str:
    """``note`` after what ``error`` already says (at most 500 characters, the newest kept)."""
    return (f"{error}; {note}" if error else note)[-500:]
