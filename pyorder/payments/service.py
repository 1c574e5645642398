"""The payment state: one ``Payment`` per order, its ``Attempt``s and the outbox, held in memory
(rebuilt from the store like the engine) and changed only here, synchronously on the event loop,
each change staged in the intake's batch *in the same call* as the order change that goes with
it, so one transaction records both.

What can change a payment: the buyer starting one (``start``), an answer of the provider to a
call of the outbox (``Dispatcher``), a signed webhook (``handle_webhook``) and a look-up by the
reconciler. All three report what the provider says about a PaymentIntent or a Refund
(``observe_intent``, ``observe_refund``); an observation is applied only when it is a legal move
from where the attempt is (``model.TRANSITIONS``), so duplicates and late arrivals change
nothing, whatever their order. Money seen is never ignored: a charge is recorded once (the
attempt's move to ``succeeded``) and it pays the order only if the order still awaits payment,
no other attempt paid it and the amount and currency match; otherwise it is refunded through
the same provider (the outbox), or, on a mismatch, flagged for a person.

With risk control on (``risk``, wired by the platform): an attempt asks its provider for 3-D
Secure when the order's risk decision asked for it, and every authorisation (an attempt's move
to ``succeeded`` or ``failed``) is counted for later orders' velocity features, with the
instrument's fingerprint the provider reported.
"""

import logging
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import msgspec

from pyorder.auth import Principal, Role, buyer_number
from pyorder.documents import Event, InvalidDocument, decode
from pyorder.events.publisher import Events
from pyorder.inbox import Inbox
from pyorder.intake import Intake
from pyorder.kernel.clock import now_ms
from pyorder.kernel.errors import (
    Conflict,
    InvalidEvent,
    InvalidInput,
    InvalidState,
    NotFound,
)
from pyorder.kernel.outbox import OutboxItem, OutboxKind
from pyorder.model import Snapshot
from pyorder.orders.model import OrderStatus, PendingOrder
from pyorder.orders.service import Orders
from pyorder.payments.model import (
    TERMINAL,
    TRANSITIONS,
    Attempt,
    AttemptStatus,
    Payment,
    PaymentStatus,
    Refund,
    RefundStatus,
)
from pyorder.payments.providers import DEFAULT_PAYMENT_METHOD, Router
from pyorder.payments.refunds import Refunds
from pyorder.payments.risk import NO_CHECK, PaymentRisk, StartCheck
from pyorder.payments.schemas import PaymentIntent, metadata_int
from pyorder.payments.schemas import Refund as ProviderRefund
from pyorder.payments.storage import PAYMENTS, REFUNDS
from pyorder.storage.base import Store
from pyorder.storage.limits import check_row
from pyorder.storage.outbox import OUTBOX

log = logging.getLogger(__name__)

AttemptKey = tuple[int, int]

MAX_PAYER_IPS = 100_000
"""Client IPs of attempts under way kept for risk control (about 210 bytes each, 21 MB in all:
measured with tracemalloc for IPv4 addresses)."""


class PaymentInProgress(Conflict):
    code = "payment_in_progress"


class NoProvider(InvalidInput):
    code = "payment_method_unavailable"


REFUND_EVENTS = ("refund.created", "refund.succeeded", "refund.failed")


def attempt_status(intent: PaymentIntent) -> AttemptStatus:
    """Our status for a PaymentIntent as the provider shows it (a decline is ``failed``)."""
    if intent.status == "requires_payment_method" and intent.last_payment_error is not None:
        return AttemptStatus.FAILED
    return AttemptStatus(intent.status.value)


def decode_event(body: bytes) -> tuple[Event, PaymentIntent | ProviderRefund | None]:
    """A provider's webhook body, decoded in full: the event and its object (None for a type
    we do not apply); ``InvalidEvent`` (400) naming what is wrong and where."""
    try:
        event = decode(body, Event)
    except InvalidDocument as exc:
        raise InvalidEvent(f"not a provider event: {exc}") from None
    try:
        if event.type.startswith("payment_intent."):
            return event, decode(event.data.object, PaymentIntent)
        if event.type in REFUND_EVENTS:
            return event, decode(event.data.object, ProviderRefund)
    except InvalidDocument as exc:
        raise InvalidEvent(f"event {event.id}: data.object: {exc}") from None
    return event, None


class Payments:
    """The payments of orders. ``router`` picks providers; ``orders`` are what is paid
    (pending ones marked paid); ``on_paid`` is told of each order once it is paid (logistics
    books its parcels); ``refunds`` are made with ``events`` told; ``intake`` stages, ``store``
    reads what committed."""

    def __init__(
        self,
        router: Router,
        orders: Orders,
        events: Events,
        intake: Intake,
        store: Store,
        on_paid: Callable[[PendingOrder], None],
    ) -> None:
        self.router = router
        self._orders = orders
        self._intake = intake
        self._store = store
        self._on_paid = on_paid
        self.payments: dict[int, Payment] = {}
        self.attempts: dict[AttemptKey, Attempt] = {}
        self.outbox: dict[tuple[int, int, str], OutboxItem] = {}
        """Outbox items not done yet."""
        self.next_actions: dict[AttemptKey, dict[str, Any]] = {}
        """What the buyer must do for each attempt in ``requires_action`` (the provider's
        ``next_action``, as it gave it). Memory only, never stored: after a restart the
        reconciler's look-up of the attempt fills it again."""
        self._inbox = Inbox(intake, store)
        self.on_outbox: list[Callable[[OutboxItem], None]] = []
        """Callbacks given each new outbox item (the dispatcher), once staged."""
        self.refunds = Refunds(self, orders, events, intake)
        self.risk: PaymentRisk | None = None
        """Risk control (``pyorder.payments.risk``), set by the platform when it is on."""
        self._payer_ips: dict[AttemptKey, str] = {}
        """The client IP of the request that started each attempt under way, for counting its
        authorisation: memory only (an attempt that ends after a restart counts without it),
        and at most ``MAX_PAYER_IPS``, oldest dropped first (a challenge never answered leaves
        its attempt under way for good)."""

    # --- state ---------------------------------------------------------------------------------

    def load(self, snap: Snapshot) -> None:
        """Hold exactly what the store holds (at start, and after a failed commit)."""
        stored = snap.part(PAYMENTS)
        self.payments = {p.order_id: p for p in stored.payments}
        self.attempts = {(a.order_id, a.number): a for a in stored.attempts}
        carriers = (OutboxKind.SHIP, OutboxKind.RETURN_BOOKING)  # other services' calls
        self.outbox = {o.key: o for o in snap.part(OUTBOX) if o.kind not in carriers}
        self.next_actions = {
            k: action
            for k, action in self.next_actions.items()
            if k in self.attempts and self.attempts[k].status is AttemptStatus.REQUIRES_ACTION
        }
        self._payer_ips = {
            k: ip
            for k, ip in self._payer_ips.items()
            if k in self.attempts and self.attempts[k].status not in TERMINAL
        }
        self.refunds.load(snap.part(REFUNDS))

    def attempts_of(self, order_id: int) -> list[Attempt]:
        pay = self.payments.get(order_id)
        n = pay.attempts if pay is not None else 0
        return [
            self.attempts[(order_id, i)] for i in range(1, n + 1) if (order_id, i) in self.attempts
        ]

    def _put_attempt(self, att: Attempt) -> None:
        att = replace(att, updated_ms=now_ms())
        check_row(att)  # before memory changes: a value no store holds fails this request only
        self.attempts[(att.order_id, att.number)] = att
        self._intake.batch.part(PAYMENTS).attempts[(att.order_id, att.number)] = att
        self._refresh(att.order_id)

    def _put_payment(self, pay: Payment) -> None:
        check_row(pay)
        self.payments[pay.order_id] = pay
        self._intake.batch.part(PAYMENTS).payments[pay.order_id] = pay

    def refresh(self, order_id: int, **changes: Any) -> Payment:
        """Stage the payment with ``changes`` and its status derived again."""
        return self._refresh(order_id, **changes)

    def _refresh(self, order_id: int, **changes: Any) -> Payment:
        """Stage the payment with ``changes`` and its status derived again."""
        pay = replace(self.payments[order_id], **changes)
        pay = replace(pay, status=self._derive(pay), updated_ms=now_ms())
        self._put_payment(pay)
        return pay

    def _derive(self, pay: Payment) -> PaymentStatus:
        atts = self.attempts_of(pay.order_id)
        if pay.flag:
            return PaymentStatus.FLAGGED
        if pay.charged > 0 and pay.refunded >= pay.charged:
            return PaymentStatus.REFUNDED
        unpaid_charge = pay.charged - pay.refunded > (pay.amount if pay.paid_attempt else 0)
        if unpaid_charge or any(a.refund_status is RefundStatus.PENDING for a in atts):
            return PaymentStatus.REFUND_PENDING
        if self.refunds.pending(pay.order_id):
            return PaymentStatus.REFUND_PENDING
        if pay.paid_attempt:
            return PaymentStatus.PARTIALLY_REFUNDED if pay.refunded else PaymentStatus.CHARGED
        if not atts:
            return PaymentStatus.NONE
        if atts[-1].status in TERMINAL:
            return PaymentStatus.FAILED
        return PaymentStatus.PENDING

    def _stage_outbox(self, att: Attempt, kind: OutboxKind) -> None:
        self.stage_item(OutboxItem(att.order_id, att.number, kind, False, now_ms(), now_ms()))

    def stage_item(self, item: OutboxItem) -> None:
        """Stage a call owed to a provider (once per key) and hand it to the dispatcher."""
        staged = self._intake.batch.part(OUTBOX).items
        if item.key in self.outbox or item.key in staged:
            return
        self.outbox[item.key] = item
        staged[item.key] = item
        for notify in self.on_outbox:
            notify(item)

    def finish_outbox(self, item: OutboxItem) -> None:
        """Stage ``item`` as done (its outcome is recorded in the same batch)."""
        self.outbox.pop(item.key, None)
        self._intake.batch.part(OUTBOX).items[item.key] = replace(
            item, done=True, updated_ms=now_ms()
        )

    # --- the buyer -----------------------------------------------------------------------------

    async def start(
        self,
        who: Principal,
        order_id: int,
        method: str,
        payment_method: str | None,
        *,
        ip: str | None = None,
    ) -> Payment:
        """Start paying a pending order of the caller's with ``method``: stage attempt n+1 at
        the first available provider of the method, and the call it owes (the outbox). The
        provider is called once this is durable. ``ip``: the client's, for risk control."""
        who.require(Role.BUYER)
        number = buyer_number(who.subject)
        # Before the checks below: no await may come between them and the staging.
        if self.risk is None:
            check = NO_CHECK
        else:
            held = self._orders.pending(order_id)
            amount = held.total if held is not None else 0
            check = await self.risk.at_start(order_id, who.subject, number, amount, ip)
        # The engine's record of a pending order holds what starting a payment needs (buyer
        # number, total, currency): no store read on the way to the provider.
        order = self._orders.pending(order_id)
        if order is None or order.buyer_number != number:
            stored = await self._store.get_order(order_id)
            if stored is None or stored.buyer != who.subject:
                raise NotFound(f"order {order_id} does not exist")
            raise InvalidState(
                f"order {order_id} is {stored.status.value}; only orders awaiting payment can"
                " be paid",
                status=stored.status.value,
            )
        if order.status is OrderStatus.IN_REVIEW:
            raise InvalidState(
                f"order {order_id} is in review; it can be paid once approved",
                status=order.status.value,
            )
        providers = self.router.candidates(method)
        if not providers:
            raise NoProvider(f"no payment provider takes {method}", method=method)
        pay = self.payments.get(order_id)
        if pay is not None:
            last = self.attempts_of(order_id)[-1:]
            if last and last[0].status not in TERMINAL:
                raise PaymentInProgress(
                    f"attempt {last[0].number} of order {order_id} is {last[0].status.value};"
                    " wait for it to end",
                    attempt=last[0].number,
                    status=last[0].status.value,
                )
            if pay.flag or pay.paid_attempt:
                raise InvalidState(f"the payment of order {order_id} is {pay.status.value}")
        at = now_ms()
        if pay is None:
            pay = Payment(
                order_id=order_id,
                buyer=who.subject,
                currency=order.currency,
                amount=order.total,
                method=method,
                status=PaymentStatus.PENDING,
                authorized=0,
                charged=0,
                refunded=0,
                attempts=0,
                paid_attempt=0,
                flag="",
                created_ms=at,
                updated_ms=at,
            )
        self._put_payment(replace(pay, method=method))
        self._new_attempt(order_id, providers[0].name, method, payment_method, check, ip)
        return self.payments[order_id]

    def _new_attempt(
        self,
        order_id: int,
        provider: str,
        method: str,
        payment_method: str | None,
        check: StartCheck,
        ip: str | None,
    ) -> Attempt:
        pay = self.payments[order_id]
        n = pay.attempts + 1
        at = now_ms()
        att = Attempt(
            order_id=order_id,
            number=n,
            provider=provider,
            method=method,
            payment_method=payment_method or DEFAULT_PAYMENT_METHOD[method],
            idempotency_key=f"pyorder-{order_id}-{n}",
            provider_payment_id="",
            status=AttemptStatus.PENDING,
            amount=pay.amount,
            currency=pay.currency,
            amount_received=0,
            refund_id="",
            refund_status=RefundStatus.NONE,
            amount_refunded=0,
            error="",
            created_ms=at,
            updated_ms=at,
            three_ds=check.three_ds,
            risk=check.record,
        )
        self._put_payment(replace(pay, attempts=n))
        if ip is not None and self.risk is not None:
            self._payer_ips[(order_id, n)] = ip
            if len(self._payer_ips) > MAX_PAYER_IPS:
                del self._payer_ips[next(iter(self._payer_ips))]
        self._put_attempt(att)
        self._stage_outbox(att, OutboxKind.CHARGE)
        return att

    def fail_over(self, att: Attempt, reason: str) -> Attempt | None:
        """``att`` ended at its provider without moving money (never confirmed, or cancelled
        there): stage it abandoned and attempt n+1 at the next provider of the method, if the
        order still awaits payment and one is left. Returns the new attempt."""
        ip = self._payer_ips.pop((att.order_id, att.number), None)
        if att.status not in TERMINAL:
            att = replace(att, status=AttemptStatus.ABANDONED, error=reason[:500])
            self._put_attempt(att)
        tried = [a.provider for a in self.attempts_of(att.order_id) if a.status in _NO_MONEY]
        nxt = self.router.candidates(att.method, exclude=tried)
        if not nxt or self._orders.pending(att.order_id) is None:
            log.warning("payment of order %d: no provider left after %s", att.order_id, reason)
            return None
        log.info(
            "payment of order %d: attempt %d at %s failed (%s); failing over to %s",
            att.order_id,
            att.number,
            att.provider,
            reason,
            nxt[0].name,
        )
        check = StartCheck(att.three_ds, att.risk)  # the same payment: the same check
        return self._new_attempt(
            att.order_id, nxt[0].name, att.method, att.payment_method, check, ip
        )

    # --- observations ---------------------------------------------------------------------------

    def attempt_for(self, provider: str, metadata: dict[str, str], pid: str) -> Attempt | None:
        """The attempt an object of the provider belongs to (by its metadata), or None;
        ``pid``: the PaymentIntent the object is or belongs to."""
        order_id, number = metadata_int(metadata, "order_id"), metadata_int(metadata, "attempt")
        if order_id is None or number is None:
            return None
        att = self.attempts.get((order_id, number))
        if att is None or att.provider != provider:
            return None
        if att.provider_payment_id and pid != att.provider_payment_id:
            log.warning("order %d attempt %d: foreign PaymentIntent %s", order_id, number, pid)
            return None
        return att

    def observe_intent(self, provider: str, intent: PaymentIntent) -> Attempt | None:
        """Apply what ``provider`` says about a PaymentIntent of ours (staged), and keep its
        ``next_action`` while the attempt awaits the buyer."""
        att = self._apply_intent(provider, intent)
        if att is not None:
            self._note_next_action(att, intent)
        return att

    def _note_next_action(self, att: Attempt, intent: PaymentIntent) -> None:
        key = (att.order_id, att.number)
        action = intent.next_action
        if att.status is not AttemptStatus.REQUIRES_ACTION:
            self.next_actions.pop(key, None)
        elif intent.status == AttemptStatus.REQUIRES_ACTION.value and action is not None:
            self.next_actions[key] = msgspec.to_builtins(action)

    def _apply_intent(self, provider: str, intent: PaymentIntent) -> Attempt | None:
        att = self.attempt_for(provider, intent.metadata, intent.id)
        if att is None:
            return None
        new = attempt_status(intent)
        if not att.provider_payment_id:
            att = replace(att, provider_payment_id=intent.id)
            self._put_attempt(att)
        if new is AttemptStatus.SUCCEEDED:
            if att.status is not AttemptStatus.SUCCEEDED:
                self._count_authorisation(att, intent, authorised=True)
                att = self._charged(att, intent)
            return att
        if new in TRANSITIONS[att.status]:
            error = ""
            err = intent.last_payment_error
            if new is AttemptStatus.FAILED:
                self._count_authorisation(att, intent, authorised=False)
                if err is not None:
                    error = err.decline_code or err.code or "declined"
            att = replace(att, status=new, error=error or att.error)
            self._put_attempt(att)
        return att

    def _count_authorisation(self, att: Attempt, intent: PaymentIntent, authorised: bool) -> None:
        """Tell risk control of an attempt's authorisation, once: its move to ``succeeded``
        or ``failed`` (declined, or the buyer failed the challenge) happens once, whichever
        observation brings it. A provider that reports no fingerprint counts under one key per
        provider ("unknown instrument"), so that the buyer's declines still count."""
        ip = self._payer_ips.pop((att.order_id, att.number), None)
        if self.risk is None:
            return
        details = intent.payment_method_details
        instrument = details.fingerprint if details is not None else None
        self.risk.authorisation(
            now_ms(),
            buyer_number(self.payments[att.order_id].buyer),
            att.amount,
            instrument or f"unknown:{att.provider}",
            authorised,
            ip,
        )

    def _charged(self, att: Attempt, intent: PaymentIntent) -> Attempt:
        """Money moved: record it once, then pay the order, refund it or flag it."""
        received = intent.amount_received
        currency = (intent.currency or "").upper()
        att = replace(att, status=AttemptStatus.SUCCEEDED, amount_received=received)
        pay = self.payments[att.order_id]
        self._put_attempt(att)
        pay = self._refresh(att.order_id, charged=pay.charged + received)
        if received != att.amount or currency != att.currency:
            log.error(
                "order %d attempt %d: charged %d %s for %d %s; flagged",
                att.order_id,
                att.number,
                received,
                currency,
                att.amount,
                att.currency,
            )
            error = f"amount_mismatch: charged {received} {currency}, expected {att.amount} {att.currency}"
            att = replace(att, error=error)
            self._put_attempt(att)
            self._refresh(att.order_id, flag="amount_mismatch")
            return att
        order = self._orders.pending(att.order_id)
        if pay.paid_attempt == 0 and order is not None and not pay.flag:
            try:
                self._orders.mark_paid(order)
            except InvalidState:
                log.info("order %d expired as its charge arrived; refunding", att.order_id)
            else:
                self._refresh(att.order_id, paid_attempt=att.number)
                self._on_paid(order)
                return att
        log.info(
            "order %d attempt %d charged but the order cannot take it; refunding",
            att.order_id,
            att.number,
        )
        self._stage_outbox(att, OutboxKind.REFUND)
        self._refresh(att.order_id)
        return att

    def observe_refund(self, provider: str, refund: ProviderRefund) -> Attempt | None:
        """Apply what ``provider`` says about a refund of ours (staged)."""
        if "refund" in refund.metadata:
            self.refunds.observe(provider, refund)
            return None
        att = self.attempt_for(provider, refund.metadata, refund.payment_intent or "")
        if att is None:
            return None
        if att.refund_id and refund.id != att.refund_id:
            return None
        status = RefundStatus(refund.status.value)
        if att.refund_status in (RefundStatus.SUCCEEDED, RefundStatus.FAILED):
            return att  # final; a late "pending" changes nothing
        if status is att.refund_status and att.refund_id:
            return att
        att = replace(att, refund_id=refund.id, refund_status=status)
        if status is RefundStatus.SUCCEEDED:
            att = replace(att, amount_refunded=refund.amount)
        elif status is RefundStatus.FAILED:
            att = replace(att, error=f"refund failed: {refund.failure_reason}")
        self._put_attempt(att)
        if status is RefundStatus.SUCCEEDED:
            pay = self.payments[att.order_id]
            self._refresh(att.order_id, refunded=pay.refunded + refund.amount)
        return att

    def refund_refused(self, att: Attempt, reason: str) -> None:
        """The provider refused (a 4xx) the automatic refund of ``att``: it failed."""
        if att.refund_status in (RefundStatus.SUCCEEDED, RefundStatus.FAILED):
            return
        failed = RefundStatus.FAILED
        self._put_attempt(replace(att, refund_status=failed, error=f"refund failed: {reason}"))

    # --- webhooks -------------------------------------------------------------------------------

    async def handle_webhook(
        self, provider: str, body: bytes, headers: dict[str, str]
    ) -> tuple[bool, str]:
        """Verify, de-duplicate and apply one signed event; returns (duplicate?, event id) once
        its effects are durable. Nothing changes for a bad signature (400)."""
        config = self.router.provider(provider)
        if config is None:
            raise NotFound(f"no payment provider {provider!r}")

        def apply(_: Event, obj: PaymentIntent | ProviderRefund | None) -> None:
            if isinstance(obj, PaymentIntent):
                self.observe_intent(provider, obj)
            elif isinstance(obj, ProviderRefund):
                self.observe_refund(provider, obj)

        return await self._inbox.receive(
            provider, config.secret, body, headers, decode_event, apply
        )

    # --- reading --------------------------------------------------------------------------------

    async def read(
        self, who: Principal, order_id: int
    ) -> tuple[Payment | None, list[Attempt], dict[int, dict[str, Any]]]:
        """The payment of an order the caller may see, as committed, its attempts, and the
        provider's ``next_action`` of those awaiting the buyer (by attempt number)."""
        await self._orders.get(who, order_id)  # 404 unless visible
        # Read first, then wait: once everything staged so far is durable, so is this state
        # (a change staged while waiting is newer than the answer, and not shown).
        pay, attempts = self.payments.get(order_id), self.attempts_of(order_id)
        actions = {
            a.number: self.next_actions[(order_id, a.number)]
            for a in attempts
            if (order_id, a.number) in self.next_actions
        }
        await self._intake.durable()
        return pay, attempts, actions

    async def read_refunds(self, who: Principal, order_id: int) -> list[Refund]:
        """The refunds of an order the caller may see, as committed."""
        await self._orders.get(who, order_id)  # 404 unless visible
        refunds = self.refunds.of(order_id)
        await self._intake.durable()
        return refunds


_NO_MONEY = (AttemptStatus.ABANDONED, AttemptStatus.CANCELED)
