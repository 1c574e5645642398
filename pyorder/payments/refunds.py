"""Refunds of paid orders: in full when a paid, unshipped order is cancelled, and partial ones
(by amount or by line) asked for by the merchant of the lines or an admin.

A ``Refund`` goes through the provider whose charge paid the order, as an outbox call written in
the same batch as the refund itself (``OutboxKind.ORDER_REFUND``), with the provider
Idempotency-Key ``pyorder-<order>-refund-<n>``: resent after a crash, it refunds once. Its
states are Stripe's (``pending`` -> ``succeeded`` | ``failed``, ``model.REFUND_TRANSITIONS``);
the provider's answer, its ``refund.*`` webhooks and the reconciler's look-ups settle it.

**Never more than was charged.** What is still refundable is the paid charge less every refund
not failed (pending ones count). The check and the staging of the refund happen in one step of
the event loop (no await in between), so concurrent requests cannot both pass it; the provider
refuses an excess too.
"""

import logging
from dataclasses import replace
from typing import Any, Protocol

from pyorder.auth import Principal, Role
from pyorder.events.publisher import Events
from pyorder.intake import Intake
from pyorder.kernel.clock import now_ms
from pyorder.kernel.errors import InvalidInput, InvalidState
from pyorder.kernel.outbox import OutboxItem, OutboxKind
from pyorder.marketplace import refund_shares
from pyorder.orders.model import Order, OrderStatus
from pyorder.orders.service import Orders
from pyorder.payments.model import REFUND_TRANSITIONS, Attempt, Payment, Refund, RefundStatus
from pyorder.payments.schemas import Refund as ProviderRefund
from pyorder.payments.schemas import metadata_int
from pyorder.payments.storage import REFUNDS
from pyorder.storage.limits import check_row

log = logging.getLogger(__name__)


class RefundExceedsCharge(InvalidInput):
    code = "refund_exceeds_charge"


class NotRefundable(InvalidInput):
    code = "not_refundable"


class Ledger(Protocol):
    """What refunds need of the payments they refund (``pyorder.payments.service.Payments``,
    which holds its ``Refunds``)."""

    payments: dict[int, Payment]
    attempts: dict[tuple[int, int], Attempt]

    def stage_item(self, item: OutboxItem) -> None:
        """Stage a call owed to a provider and hand it to the dispatcher."""
        ...

    def refresh(self, order_id: int, **changes: Any) -> Payment:
        """Stage the order's payment with ``changes`` and its status derived again."""
        ...


class Refunds:
    """The refunds of paid orders. ``payments``: the charges they refund; ``orders``: who may
    see which order; ``events``: ``order.refunded`` and the like; ``intake``: staging."""

    def __init__(self, payments: Ledger, orders: Orders, events: Events, intake: Intake) -> None:
        self._pay = payments
        self._orders = orders
        self._events = events
        self._intake = intake
        self.refunds: dict[tuple[int, int], Refund] = {}
        self.count: dict[int, int] = {}
        """Order id -> how many refunds it has (they are numbered 1, 2, ...)."""

    def load(self, refunds: list[Refund]) -> None:
        self.refunds = {(r.order_id, r.number): r for r in refunds}
        self.count = {}
        for oid, n in self.refunds:
            self.count[oid] = max(self.count.get(oid, 0), n)

    def of(self, order_id: int) -> list[Refund]:
        n = self.count.get(order_id, 0)
        return [self.refunds[(order_id, i)] for i in range(1, n + 1)]

    def pending(self, order_id: int) -> bool:
        return any(r.status is RefundStatus.PENDING for r in self.of(order_id))

    def refundable(self, order_id: int) -> int:
        """What of the charge that paid the order can still be refunded (minor units)."""
        pay = self._pay.payments.get(order_id)
        if pay is None or not pay.paid_attempt:
            return 0
        att = self._pay.attempts[(order_id, pay.paid_attempt)]
        taken = sum(r.amount for r in self.of(order_id) if r.status is not RefundStatus.FAILED)
        return max(0, att.amount_received - taken)

    def _put(self, refund: Refund) -> Refund:
        refund = replace(refund, updated_ms=now_ms())
        check_row(refund)
        key = (refund.order_id, refund.number)
        self.refunds[key] = refund
        self._intake.batch.part(REFUNDS).refunds[key] = refund
        return refund

    # --- issuing -------------------------------------------------------------------------------

    def issue(
        self,
        order_id: int,
        amount: int,
        reason: str,
        requested_by: str,
        lines: tuple[tuple[int, int], ...] = (),
    ) -> Refund:
        """Stage a refund of ``amount`` of the order's charge and its provider call (outbox).
        Raises RefundExceedsCharge (nothing staged) when more than is left is asked for."""
        pay = self._pay.payments.get(order_id)
        if pay is None or not pay.paid_attempt:
            raise NotRefundable(f"order {order_id} has no charge to refund")
        left = self.refundable(order_id)
        if amount <= 0 or amount > left:
            raise RefundExceedsCharge(
                f"cannot refund {amount}: {left} of the {pay.amount} charged is left to refund",
                refundable=left,
                amount=amount,
            )
        att = self._pay.attempts[(order_id, pay.paid_attempt)]
        n = self.count.get(order_id, 0) + 1
        at = now_ms()
        refund = Refund(
            order_id=order_id,
            number=n,
            attempt=att.number,
            provider=att.provider,
            amount=amount,
            currency=att.currency,
            status=RefundStatus.PENDING,
            reason=reason[:200],
            lines=lines,
            idempotency_key=f"pyorder-{order_id}-refund-{n}",
            provider_refund_id="",
            requested_by=requested_by,
            error="",
            created_ms=at,
            updated_ms=at,
            settled_ms=0,
        )
        self.count[order_id] = n
        self._put(refund)
        item = OutboxItem(order_id, n, OutboxKind.ORDER_REFUND, False, at, at)
        self._pay.stage_item(item)
        self._pay.refresh(order_id)
        return refund

    async def request(
        self,
        who: Principal,
        order_id: int,
        amount: int | None,
        lines: list[tuple[int, int]],
        reason: str,
    ) -> Refund:
        """A partial (or whole) refund of a paid order, by ``amount`` or by ``lines`` ((sku,
        quantity): their price), asked for by the merchant of the lines or an admin. A merchant
        refunds at most the value of its own lines, less its share of the earlier refunds
        (``pyorder.marketplace.refund_shares``)."""
        who.require(Role.MERCHANT, Role.ADMIN)
        order = await self._orders.get(who, order_id)  # 404 unless visible
        # From here on, no await: the check and the staging are one step.
        if order.status is not OrderStatus.PAID:
            raise InvalidState(
                f"order {order_id} is {order.status.value}; only paid orders are refunded this way",
                status=order.status.value,
            )
        if amount is None and not lines:
            raise InvalidInput("a refund needs an amount or lines", field="amount")
        mine = [li for li in order.lines if who.role is Role.ADMIN or li.merchant == who.key]
        by_line = self._price_lines(order, mine, lines)
        if amount is None:
            amount = by_line
        elif lines and amount > by_line:
            raise InvalidInput(
                f"amount {amount} is more than the {by_line} the lines cost", field="amount"
            )
        if who.role is Role.MERCHANT:
            # Every refund not failed counts at its share of the merchant's part (its own, an
            # admin's goodwill, a return's): together they never pass the value of its lines.
            own = sum(li.quantity * li.unit_price for li in mine)
            done = sum(
                refund_shares(order, r.amount, r.lines, r.requested_by).get(who.key, 0)
                for r in self.of(order_id)
                if r.status is not RefundStatus.FAILED
            )
            room = own - done
            pay = self._pay.payments.get(order_id)
            if pay is not None and pay.paid_attempt:
                # Refused here, not by ``issue``, whose answer tells the order's whole charge.
                room = min(room, self.refundable(order_id))
            room = max(0, room)
            if amount > room:
                raise RefundExceedsCharge(
                    f"cannot refund {amount}: your lines in order {order_id} leave {room} to"
                    " refund",
                    refundable=room,
                    amount=amount,
                )
        return self.issue(order_id, amount, reason, who.key, tuple(lines))

    def _price_lines(self, order: Order, mine: list[Any], lines: list[tuple[int, int]]) -> int:
        """The price of refunding ``lines``; each must be a line of the caller's in the order,
        and not refunded past its quantity (earlier refunds by line count)."""
        bought: dict[int, tuple[int, int]] = {}
        for li in mine:
            q, price = bought.get(li.sku, (0, li.unit_price))
            bought[li.sku] = (q + li.quantity, price)
        already: dict[int, int] = {}
        for r in self.of(order.id):
            if r.status is not RefundStatus.FAILED:
                for sku, q in r.lines:
                    already[sku] = already.get(sku, 0) + q
        asked: dict[int, int] = {}
        for sku, q in lines:
            asked[sku] = asked.get(sku, 0) + q
        total = 0
        for sku, q in asked.items():
            if sku not in bought:
                raise InvalidInput(
                    f"order {order.id} has no line of SKU {sku} of yours", field="lines"
                )
            left = bought[sku][0] - already.get(sku, 0)
            if q > left:
                raise RefundExceedsCharge(
                    f"cannot refund {q} of SKU {sku}: {left} left to refund", sku=sku, left=left
                )
            total += q * bought[sku][1]
        return total

    # --- what the provider says -----------------------------------------------------------------

    def observe(self, provider: str, obj: ProviderRefund) -> Refund | None:
        """Apply what ``provider`` says about a refund of ours (staged): only a legal move."""
        order_id, number = (
            metadata_int(obj.metadata, "order_id"),
            metadata_int(obj.metadata, "refund"),
        )
        if order_id is None or number is None:
            return None
        return self._settle(
            provider, (order_id, number), obj.id, obj.status.value, obj.failure_reason
        )

    def _settle(
        self,
        provider: str,
        key: tuple[int, int],
        rid: str,
        status_text: str,
        failure_reason: str | None,
    ) -> Refund | None:
        refund = self.refunds.get(key)
        if refund is None or refund.provider != provider:
            return None
        if refund.provider_refund_id and rid and rid != refund.provider_refund_id:
            log.warning("refund %s of order %d: foreign refund %s", key[1], key[0], rid)
            return None
        status = RefundStatus(status_text)
        if not refund.provider_refund_id and rid:
            refund = replace(refund, provider_refund_id=rid)
            self._put(refund)
        if status not in REFUND_TRANSITIONS[refund.status]:
            return refund  # the same state again, or stale
        refund = replace(refund, status=status, settled_ms=now_ms())
        if status is RefundStatus.FAILED:
            refund = replace(refund, error=(failure_reason or "failed")[:500])
        refund = self._put(refund)
        if status is RefundStatus.SUCCEEDED:
            pay = self._pay.payments[refund.order_id]
            self._pay.refresh(refund.order_id, refunded=pay.refunded + refund.amount)
            self._events.refunded(refund)
        else:
            self._pay.refresh(refund.order_id)
        return refund

    def refused(self, refund: Refund, error: str) -> None:
        """The provider refused to refund (a 4xx): the refund failed."""
        key = (refund.order_id, refund.number)
        self._settle(refund.provider, key, "", RefundStatus.FAILED.value, error)
