"""The payment provider: PaymentIntents through their state machine, charges, refunds, and the
ledger of what was really charged. Every change publishes its event to the webhook sender.

Declines come from the test payment method (``methods``) or the ``decline_rate`` knob, drawn
once per attempt to charge. Bank transfers and refunds settle on timers. A card payment asks the
buyer to authenticate when its method needs it or the PaymentIntent asks for 3-D Secure
(``payment_method_options.card.request_three_d_secure``); every try to pay reports the method's
``payment_method_details`` (its instrument's fingerprint).
"""

import secrets
import time
from collections import defaultdict

from sandbox.errors import InvalidInput, NotFound, UnexpectedState
from sandbox.instance import Instance
from sandbox.payment.config import PaymentSettings
from sandbox.payment.methods import PAYMENT_METHODS, MethodSpec, MethodType
from sandbox.payment.model import (
    CANCELABLE,
    AmountTooLarge,
    Charge,
    Decline,
    IntentStatus,
    PaymentDeclined,
    PaymentIntent,
    Refund,
    RefundStatus,
)
from sandbox.payment.schemas import CreateIntentIn, MethodOptionsIn, RefundIn


class UnsupportedMethod(InvalidInput):
    code = "payment_method_unsupported"


class NoSuchPaymentMethod(InvalidInput):
    code = "resource_missing"


class NotRefundable(UnexpectedState):
    code = "charge_not_refundable"


class AlreadyRefunded(UnexpectedState):
    code = "charge_already_refunded"


def _id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"


def _now() -> int:
    return int(time.time())


def _set_options(intent: PaymentIntent, options: MethodOptionsIn | None) -> None:
    """Take the options of a create or confirm call (absent: keep the PaymentIntent's)."""
    if options is not None:
        card = options.card
        intent.request_three_d_secure = "automatic" if card is None else card.request_three_d_secure


class PaymentProvider:
    def __init__(self, instance: Instance, settings: PaymentSettings) -> None:
        self.instance = instance
        self.settings = settings
        self.intents: dict[str, PaymentIntent] = {}
        self.refunds: dict[str, Refund] = {}
        self.charges: dict[str, Charge] = {}
        self.declines: list[Decline] = []

    # --- PaymentIntents --------------------------------------------------------------------

    def create(self, body: CreateIntentIn, key: str | None) -> PaymentIntent:
        types = list(body.payment_method_types or self.settings.methods)
        for kind in types:
            if kind not in self.settings.methods:
                raise UnsupportedMethod(
                    f"{self.instance.name} does not accept {kind}",
                    accepted=list(self.settings.methods),
                )
        if body.payment_method is not None:
            self._check_capture(body.capture_method, self._method(body.payment_method, types))
        elif body.confirm:
            raise InvalidInput("confirm=true needs a payment_method")
        intent = PaymentIntent(
            id=_id("pi"),
            amount=body.amount,
            currency=body.currency.upper(),
            capture_method=body.capture_method,
            payment_method_types=types,
            metadata=dict(body.metadata),
            description=body.description,
            created=_now(),
            status=IntentStatus.REQUIRES_PAYMENT_METHOD,
            payment_method=body.payment_method,
            return_url=body.return_url,
        )
        _set_options(intent, body.payment_method_options)
        if body.payment_method is not None:
            intent.status = IntentStatus.REQUIRES_CONFIRMATION
        self.intents[intent.id] = intent
        self._publish("payment_intent.created", intent)
        if body.confirm:
            self._confirm(intent, key)
        return intent

    def get(self, intent_id: str) -> PaymentIntent:
        intent = self.intents.get(intent_id)
        if intent is None:
            raise NotFound(f"no such PaymentIntent: {intent_id}", id=intent_id)
        return intent

    def confirm(
        self,
        intent_id: str,
        payment_method: str | None,
        return_url: str | None,
        key: str | None,
        options: MethodOptionsIn | None = None,
    ) -> PaymentIntent:
        """Try to pay. A synchronous decline raises ``PaymentDeclined`` (402) after recording
        it; a method that needs the buyer, or a card when 3-D Secure is asked for, leaves the
        payment ``requires_action``. ``options`` replace the PaymentIntent's when given."""
        intent = self.get(intent_id)
        intent.require(
            "confirm", IntentStatus.REQUIRES_PAYMENT_METHOD, IntentStatus.REQUIRES_CONFIRMATION
        )
        method_id = payment_method or intent.payment_method
        if method_id is None:
            raise InvalidInput("a payment_method is needed to confirm")
        self._check_capture(
            intent.capture_method, self._method(method_id, intent.payment_method_types)
        )
        intent.payment_method = method_id
        if return_url is not None:
            intent.return_url = return_url
        _set_options(intent, options)
        self._confirm(intent, key)
        return intent

    def authenticate(self, intent_id: str, approve: bool) -> PaymentIntent:
        """The buyer's step for ``requires_action``: approve and the payment proceeds (it can
        still be declined); fail and it returns to ``requires_payment_method``."""
        intent = self.get(intent_id)
        intent.require("authenticate", IntentStatus.REQUIRES_ACTION)
        intent.next_action = None
        if not approve:
            self._decline(intent, "payment_intent_authentication_failure", None)
        else:
            self._proceed(intent)
        return intent

    def capture(self, intent_id: str, amount: int | None, key: str | None) -> PaymentIntent:
        """Charge an authorised payment, all of it or less (the rest is released)."""
        intent = self.get(intent_id)
        intent.require("capture", IntentStatus.REQUIRES_CAPTURE)
        amount = intent.amount_capturable if amount is None else amount
        if amount > intent.amount_capturable:
            raise AmountTooLarge(
                f"cannot capture {amount}: {intent.amount_capturable} is capturable",
                requested=amount,
                capturable=intent.amount_capturable,
            )
        intent.attempt_key = key
        self._charge(intent, amount)
        return intent

    def cancel(self, intent_id: str, reason: str | None) -> PaymentIntent:
        intent = self.get(intent_id)
        intent.require("cancel", *CANCELABLE)
        intent.status = IntentStatus.CANCELED
        intent.amount_capturable = 0
        intent.next_action = None
        intent.canceled_at = _now()
        intent.cancellation_reason = reason
        self._publish("payment_intent.canceled", intent)
        return intent

    # --- refunds ---------------------------------------------------------------------------

    def refund(self, body: RefundIn, key: str | None) -> Refund:
        """Refund a succeeded payment, all that is left by default; never more than was charged
        less what is refunded or pending. Settles now or after ``refund_settle_s``."""
        intent = self.get(body.payment_intent)
        if intent.status is not IntentStatus.SUCCEEDED or intent.latest_charge is None:
            raise NotRefundable(
                f"PaymentIntent {intent.id} has no successful charge to refund",
                status=str(intent.status),
            )
        refundable = intent.refundable
        if refundable == 0:
            raise AlreadyRefunded(f"the charge of {intent.id} is already fully refunded")
        amount = refundable if body.amount is None else body.amount
        if amount > refundable:
            raise AmountTooLarge(
                f"cannot refund {amount}: {refundable} of {intent.amount_received} is refundable",
                requested=amount,
                refundable=refundable,
                charged=intent.amount_received,
            )
        refund = Refund(
            id=_id("re"),
            payment_intent=intent.id,
            charge=intent.latest_charge,
            amount=amount,
            currency=intent.currency,
            reason=body.reason,
            metadata=dict(body.metadata),
            idempotency_key=key,
            created=_now(),
        )
        intent.amount_refund_pending += amount
        self.refunds[refund.id] = refund
        self.instance.publish("refund.created", refund.public())
        if self.settings.refund_settle_s <= 0:
            self._settle_refund(refund.id)
        else:
            self.instance.timers.after(
                self.settings.refund_settle_s, lambda: self._settle_refund(refund.id)
            )
        return refund

    def get_refund(self, refund_id: str) -> Refund:
        refund = self.refunds.get(refund_id)
        if refund is None:
            raise NotFound(f"no such refund: {refund_id}", id=refund_id)
        return refund

    # --- the ledger ------------------------------------------------------------------------

    def ledger(self) -> dict[str, object]:
        """Everything that moved money or tried to, and every webhook event."""
        totals: defaultdict[str, dict[str, int]] = defaultdict(
            lambda: {"charged": 0, "refunded": 0, "refund_pending": 0}
        )
        for charge in self.charges.values():
            totals[charge.currency]["charged"] += charge.amount
        for refund in self.refunds.values():
            if refund.status is RefundStatus.SUCCEEDED:
                totals[refund.currency]["refunded"] += refund.amount
            elif refund.status is RefundStatus.PENDING:
                totals[refund.currency]["refund_pending"] += refund.amount
        return {
            "provider": self.instance.name,
            "methods": list(self.settings.methods),
            "charges": [c.ledger() for c in self.charges.values()],
            "refunds": [r.ledger() for r in self.refunds.values()],
            "declines": [d.ledger() for d in self.declines],
            "totals": dict(totals),
            "payment_intents": [i.public() for i in self.intents.values()],
            "webhooks": [d.public() for d in self.instance.sender.deliveries],
        }

    # --- steps -----------------------------------------------------------------------------

    def _method(self, method_id: str, types: list[MethodType]) -> MethodSpec:
        spec = PAYMENT_METHODS.get(method_id)
        if spec is None:
            raise NoSuchPaymentMethod(
                f"no such payment method: {method_id}", known=sorted(PAYMENT_METHODS)
            )
        if spec.type not in self.settings.methods or spec.type not in types:
            raise UnsupportedMethod(
                f"{method_id} is a {spec.type}; this payment accepts {', '.join(types)}",
                accepted=[t for t in types if t in self.settings.methods],
            )
        return spec

    @staticmethod
    def _check_capture(capture_method: str, spec: MethodSpec) -> None:
        if capture_method == "manual" and spec.settles_later:
            raise InvalidInput(f"{spec.type} payments cannot be captured manually")

    def _confirm(self, intent: PaymentIntent, key: str | None) -> None:
        intent.attempt_key = key
        intent.last_payment_error = None
        assert intent.payment_method is not None
        spec = PAYMENT_METHODS[intent.payment_method]
        intent.payment_method_details = spec.details()
        challenge = spec.type == "card" and intent.three_d_secure_requested
        if spec.requires_action or challenge:
            intent.status = IntentStatus.REQUIRES_ACTION
            intent.next_action = {
                "type": "redirect_to_url",
                "redirect_to_url": {
                    "url": f"/v1/payment_intents/{intent.id}/authenticate",
                    "return_url": intent.return_url,
                },
            }
            self._publish("payment_intent.requires_action", intent)
            return
        self._proceed(intent)
        if intent.status is IntentStatus.REQUIRES_PAYMENT_METHOD:
            error: dict[str, object] = intent.last_payment_error or {}
            raise PaymentDeclined(
                str(error.get("message", "the payment was declined")),
                decline_code=error.get("decline_code"),
                payment_intent=intent.public(),
            )

    def _proceed(self, intent: PaymentIntent) -> None:
        """Past any buyer action: process a bank transfer, or authorise (and capture) now."""
        assert intent.payment_method is not None
        spec = PAYMENT_METHODS[intent.payment_method]
        if spec.settles_later:
            intent.status = IntentStatus.PROCESSING
            self._publish("payment_intent.processing", intent)
            intent_id = intent.id
            self.instance.timers.after(self.settings.settle_s, lambda: self._settle(intent_id))
            return
        self._authorise(intent, spec)

    def _settle(self, intent_id: str) -> None:
        intent = self.intents[intent_id]
        if intent.status is IntentStatus.PROCESSING and intent.payment_method is not None:
            self._authorise(intent, PAYMENT_METHODS[intent.payment_method])

    def _authorise(self, intent: PaymentIntent, spec: MethodSpec) -> None:
        decline_code = spec.decline_code
        if decline_code is None and self.instance.faults.chance("decline_rate"):
            decline_code = "generic_decline"
        if decline_code is not None:
            self._decline(intent, "card_declined", decline_code)
        elif intent.capture_method == "manual":
            intent.status = IntentStatus.REQUIRES_CAPTURE
            intent.amount_capturable = intent.amount
            self._publish("payment_intent.amount_capturable_updated", intent)
        else:
            self._charge(intent, intent.amount)

    def _decline(self, intent: PaymentIntent, code: str, decline_code: str | None) -> None:
        assert intent.payment_method is not None
        message = (
            "the buyer failed to authenticate"
            if decline_code is None
            else f"the payment was declined ({decline_code})"
        )
        self.declines.append(
            Decline(
                payment_intent=intent.id,
                amount=intent.amount,
                currency=intent.currency,
                payment_method=intent.payment_method,
                fingerprint=PAYMENT_METHODS[intent.payment_method].fingerprint,
                code=code,
                decline_code=decline_code,
                idempotency_key=intent.attempt_key,
                created=_now(),
                metadata=dict(intent.metadata),
            )
        )
        intent.last_payment_error = {
            "code": code,
            "decline_code": decline_code,
            "message": message,
            "payment_method": intent.payment_method,
        }
        intent.status = IntentStatus.REQUIRES_PAYMENT_METHOD
        intent.payment_method = None
        intent.next_action = None
        self._publish("payment_intent.payment_failed", intent)

    def _charge(self, intent: PaymentIntent, amount: int) -> None:
        assert intent.payment_method is not None
        spec = PAYMENT_METHODS[intent.payment_method]
        charge = Charge(
            id=_id("ch"),
            payment_intent=intent.id,
            amount=amount,
            currency=intent.currency,
            payment_method=intent.payment_method,
            payment_method_type=spec.type,
            metadata=dict(intent.metadata),
            idempotency_key=intent.attempt_key,
            created=_now(),
            payment_method_details=spec.details(),
        )
        self.charges[charge.id] = charge
        intent.latest_charge = charge.id
        intent.amount_received = amount
        intent.amount_capturable = 0
        intent.status = IntentStatus.SUCCEEDED
        self._publish("payment_intent.succeeded", intent)

    def _settle_refund(self, refund_id: str) -> None:
        refund = self.refunds[refund_id]
        if refund.status is not RefundStatus.PENDING:
            return
        intent = self.intents[refund.payment_intent]
        intent.amount_refund_pending -= refund.amount
        if self.instance.faults.chance("refund_failure_rate"):
            refund.status = RefundStatus.FAILED
            refund.failure_reason = "expired_or_canceled_card"
            self.instance.publish("refund.failed", refund.public())
            return
        refund.status = RefundStatus.SUCCEEDED
        intent.amount_refunded += refund.amount
        charge = self.charges[refund.charge]
        charge.amount_refunded += refund.amount
        self.instance.publish("refund.succeeded", refund.public())
        self.instance.publish("charge.refunded", charge.public())

    def _publish(self, type: str, intent: PaymentIntent) -> None:
        self.instance.publish(type, intent.public())
