"""Sends the outbox to the providers, and reconciles what was left unsettled.

Each pending outbox item gets one task. It first waits until the item is durable (it was
staged with the change that caused it), then makes the calls, stages their outcome with the
item marked done, and waits until that is durable. A crash anywhere in between leaves the item
pending in the store, so after the restart it is sent again with the same provider
Idempotency-Keys: the provider answers with what it did the first time, and nothing is charged
or refunded twice.

A charge (``OutboxKind.CHARGE``) creates the PaymentIntent, then confirms it:

- a creation that fails (refused, timed out, 5xx, circuit open) moved no money: the attempt is
  abandoned and the next provider of the method is tried (failover);
- a confirmation without an answer may have charged: the PaymentIntent is looked up at that
  provider. If it was not confirmed, it is cancelled there first (so a confirmation still on
  its way cannot charge later), and only then is the next provider tried. If the look-up fails
  too, the item stays pending and is tried again later: never two providers at once.

The reconciler looks up, on start and every ``reconcile_interval_s``, attempts and refunds that
are under way at a provider with no outbox call pending (lost answers, missed webhooks).
"""

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from pyorder.intake import IntakeUnavailableError
from pyorder.kernel.outbox import OutboxDispatcher, OutboxItem, OutboxKind, Retry, failpoint
from pyorder.payments.client import Answer, ProviderClient, ProviderUnreachable
from pyorder.payments.model import TERMINAL, Attempt, AttemptStatus, RefundStatus
from pyorder.payments.schemas import ErrorAnswer, PaymentIntent
from pyorder.payments.service import Payments

log = logging.getLogger(__name__)

_UNDER_WAY = (
    AttemptStatus.REQUIRES_CONFIRMATION,
    AttemptStatus.REQUIRES_ACTION,
    AttemptStatus.PROCESSING,
    AttemptStatus.REQUIRES_CAPTURE,
)


class Dispatcher(OutboxDispatcher):
    """Sends the payments' outbox (``pyorder.kernel.outbox``) and runs the reconciler.

    ``failpoint("after_charge")`` kills the process as soon as a provider has confirmed a
    charge, before anything about it is recorded; ``after_refund`` likewise once a provider
    has accepted a refund of an order (the crash tests)."""

    def __init__(self, payments: Payments, durable: Callable[[], Awaitable[None]]) -> None:
        super().__init__(
            payments,
            durable,
            payments.router.config.retry_max_s,
            transient=(IntakeUnavailableError,),
        )
        self.payments = payments
        self.router = payments.router
        self._reconciler: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await super().start()
        self._reconciler = asyncio.create_task(self._reconcile_forever(), name="pyorder-reconcile")

    async def stop(self) -> None:
        self._stopping = True
        if self._reconciler is not None:
            self._reconciler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reconciler
            self._reconciler = None
        await super().stop()

    def client(self, provider: str) -> ProviderClient:
        config = self.router.provider(provider)
        if config is None or self._session is None:
            raise Retry(f"provider {provider} is not configured")
        return ProviderClient(self._session, config, self.router.timeout_s(config))

    # --- one outbox item ----------------------------------------------------------------------

    async def _send(self, item: OutboxItem) -> None:
        if item.kind is OutboxKind.ORDER_REFUND:
            await self._order_refund(item)
            return
        att = self.payments.attempts[(item.order_id, item.attempt)]
        if item.kind is OutboxKind.CHARGE:
            await self._charge(item, att)
        else:
            await self._refund(item, att)

    async def _charge(self, item: OutboxItem, att: Attempt) -> None:
        svc = self.payments
        if att.status in TERMINAL or att.status not in (
            AttemptStatus.PENDING,
            AttemptStatus.REQUIRES_PAYMENT_METHOD,
            AttemptStatus.REQUIRES_CONFIRMATION,
        ):
            svc.finish_outbox(item)  # a webhook or look-up got there first
            return
        client = self.client(att.provider)
        breaker = self.router.breakers[att.provider]
        if not att.provider_payment_id:
            if not breaker.allow():
                self._fail_over(item, att, "circuit open")
                return
            try:
                created = await client.create(att)
            except ProviderUnreachable as exc:
                breaker.failure()
                self._fail_over(item, att, f"create: {exc}")
                return
            if created.status >= 500:
                breaker.failure()
                self._fail_over(item, att, f"create: HTTP {created.status}")
                return
            breaker.success()
            if created.doc is None:
                self._fail_over(item, att, f"create: HTTP {created.status} {_error(created)}")
                return
            att = svc.observe_intent(att.provider, created.doc) or att
        if att.status is not AttemptStatus.REQUIRES_CONFIRMATION:
            svc.finish_outbox(item)
            return
        try:
            confirmed = await client.confirm(att)
        except ProviderUnreachable as exc:
            breaker.failure()
            log.info("order %d attempt %d: confirm: %s", att.order_id, att.number, exc)
            confirmed = Answer(0, None, ErrorAnswer())
        declined = confirmed.error.declined_intent() if confirmed.status == 402 else None
        intent = confirmed.doc or declined
        if intent is not None:
            breaker.success()
            failpoint("after_charge")
            svc.observe_intent(att.provider, intent)
            svc.finish_outbox(item)
            return
        if confirmed.status >= 500:
            breaker.failure()
        # The confirmation may or may not have happened: look it up before anything else.
        await self._settle_unknown(item, att, client)

    async def _settle_unknown(self, item: OutboxItem, att: Attempt, client: ProviderClient) -> None:
        svc = self.payments
        intent = await self._look_up(client, att)
        att = svc.observe_intent(att.provider, intent) or att
        if att.status in (
            AttemptStatus.REQUIRES_CONFIRMATION,
            AttemptStatus.REQUIRES_PAYMENT_METHOD,
        ):
            # Not confirmed (yet): cancel it there so that it never can be, then fail over.
            try:
                cancelled = (await client.cancel(att)).doc
            except ProviderUnreachable as exc:
                raise Retry(f"cancel: {exc}") from exc
            if cancelled is None:
                cancelled = await self._look_up(client, att)
            att = svc.observe_intent(att.provider, cancelled) or att
        if att.status in (AttemptStatus.CANCELED, AttemptStatus.ABANDONED):
            self._fail_over(item, att, "not confirmed; cancelled at the provider")
            return
        if att.status in (AttemptStatus.REQUIRES_CONFIRMATION, AttemptStatus.PENDING):
            raise Retry(f"attempt {att.number} still {att.status.value}")
        svc.finish_outbox(item)

    async def _look_up(self, client: ProviderClient, att: Attempt) -> PaymentIntent:
        try:
            found = await client.get(att.provider_payment_id)
        except ProviderUnreachable as exc:
            raise Retry(f"look-up: {exc}") from exc
        if found.doc is None:
            raise Retry(f"look-up: HTTP {found.status} {_error(found)}")
        return found.doc

    def _fail_over(self, item: OutboxItem, att: Attempt, reason: str) -> None:
        self.payments.finish_outbox(item)
        self.payments.fail_over(att, reason)

    async def _refund(self, item: OutboxItem, att: Attempt) -> None:
        svc = self.payments
        if att.refund_status is not RefundStatus.NONE:
            svc.finish_outbox(item)
            return
        client = self.client(att.provider)
        try:
            answer = await client.refund(att)
        except ProviderUnreachable as exc:
            self.router.breakers[att.provider].failure()
            raise Retry(f"refund: {exc}") from exc
        if answer.status >= 500:
            raise Retry(f"refund: HTTP {answer.status}")
        if answer.doc is not None:
            svc.observe_refund(att.provider, answer.doc)
        else:
            reason = _error(answer)
            log.error("order %d attempt %d: refund refused: %s", att.order_id, att.number, reason)
            svc.refund_refused(att, reason)
        svc.finish_outbox(item)

    async def _order_refund(self, item: OutboxItem) -> None:
        svc = self.payments
        refund = svc.refunds.refunds[(item.order_id, item.attempt)]
        if refund.status is not RefundStatus.PENDING or refund.provider_refund_id:
            svc.finish_outbox(item)  # answered before (a webhook or an earlier try got there)
            return
        att = svc.attempts[(refund.order_id, refund.attempt)]
        client = self.client(refund.provider)
        try:
            answer = await client.refund_order(refund, att.provider_payment_id)
        except ProviderUnreachable as exc:
            self.router.breakers[refund.provider].failure()
            raise Retry(f"refund: {exc}") from exc
        if answer.status >= 500:
            raise Retry(f"refund: HTTP {answer.status}")
        if answer.doc is not None:
            failpoint("after_refund")
            svc.refunds.observe(refund.provider, answer.doc)
        else:
            reason = _error(answer) or f"HTTP {answer.status}"
            log.error("order %d refund %d refused: %s", refund.order_id, refund.number, reason)
            svc.refunds.refused(refund, reason)
        svc.finish_outbox(item)

    # --- reconciliation --------------------------------------------------------------------------

    async def _reconcile_forever(self) -> None:
        while True:
            try:
                await self.reconcile()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("reconciliation failed")
            await asyncio.sleep(self.router.config.reconcile_interval_s)

    async def reconcile(self) -> int:
        """Look up every attempt and refund under way with no outbox call pending; returns how
        many were looked up."""
        svc = self.payments
        busy = {(o, a) for (o, a, k) in svc.outbox if k != OutboxKind.ORDER_REFUND.value}
        todo = [
            a
            for a in list(svc.attempts.values())
            if (a.order_id, a.number) not in busy
            and a.provider_payment_id
            and (a.status in _UNDER_WAY or a.refund_status is RefundStatus.PENDING)
        ]
        for att in todo:
            try:
                client = self.client(att.provider)
                if att.refund_status is RefundStatus.PENDING and att.refund_id:
                    found_refund = (await client.get_refund(att.refund_id)).doc
                    if found_refund is not None:
                        svc.observe_refund(att.provider, found_refund)
                else:
                    found = (await client.get(att.provider_payment_id)).doc
                    if found is not None:
                        svc.observe_intent(att.provider, found)
            except (ProviderUnreachable, Retry) as exc:
                log.info("reconcile order %d attempt %d: %s", att.order_id, att.number, exc)
        sending = {(o, a) for (o, a, k) in svc.outbox if k == OutboxKind.ORDER_REFUND.value}
        refunds = [
            r
            for r in list(svc.refunds.refunds.values())
            if r.status is RefundStatus.PENDING
            and r.provider_refund_id
            and (r.order_id, r.number) not in sending
        ]
        for refund in refunds:
            try:
                client = self.client(refund.provider)
                answer = await client.get_refund(refund.provider_refund_id)
                if answer.doc is not None:
                    svc.refunds.observe(refund.provider, answer.doc)
            except (ProviderUnreachable, Retry) as exc:
                log.info("reconcile refund %d of order %d: %s", refund.number, refund.order_id, exc)
        if todo or refunds:
            await self._durable()
        return len(todo) + len(refunds)


def _error(answer: Answer[Any]) -> str:
    """``code: message`` of a refusal, or ""."""
    return answer.error.describe()
