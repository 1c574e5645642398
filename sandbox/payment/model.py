"""PaymentIntents, charges and refunds, with Stripe's state machines.

PaymentIntent::

    requires_payment_method --(payment method)--> requires_confirmation
    requires_payment_method | requires_confirmation --confirm-->
        requires_action      (the method needs the buyer: until /authenticate)
        processing           (a bank transfer: settles later)
        requires_capture     (capture_method=manual: authorised, not charged)
        succeeded            (charged)
        requires_payment_method (declined: last_payment_error says why)
    requires_action --authenticate--> as confirm (or declined when the buyer fails it)

A card payment asks the buyer to authenticate (3-D Secure) when its method requires it, or when
the PaymentIntent asks for it whatever the card (``request_three_d_secure`` ``any`` or
``challenge``, Stripe's ``payment_method_options.card``).
    processing --settles--> succeeded | requires_payment_method
    requires_capture --capture--> succeeded
    any of requires_* --cancel--> canceled

Refund: ``pending`` --> ``succeeded`` | ``failed``; only a succeeded payment is refunded, and
never for more than was charged less what is refunded or pending. Amounts are integer minor
units; ``created`` times are unix seconds (UTC).
"""

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal

from sandbox.errors import SandboxError, UnexpectedState
from sandbox.payment.methods import MethodType

CaptureMethod = Literal["automatic", "manual"]
ThreeDSecure = Literal["automatic", "any", "challenge"]
"""Stripe's ``request_three_d_secure``: ``automatic`` asks for 3-D Secure only when the card
needs it; ``any`` and ``challenge`` ask for it whatever the card (the sandbox challenges the
buyer for both)."""


class IntentStatus(StrEnum):
    REQUIRES_PAYMENT_METHOD = "requires_payment_method"
    REQUIRES_CONFIRMATION = "requires_confirmation"
    REQUIRES_ACTION = "requires_action"
    PROCESSING = "processing"
    REQUIRES_CAPTURE = "requires_capture"
    SUCCEEDED = "succeeded"
    CANCELED = "canceled"


CANCELABLE = (
    IntentStatus.REQUIRES_PAYMENT_METHOD,
    IntentStatus.REQUIRES_CONFIRMATION,
    IntentStatus.REQUIRES_ACTION,
    IntentStatus.REQUIRES_CAPTURE,
)


class RefundStatus(StrEnum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class IntentStateError(UnexpectedState):
    code = "payment_intent_unexpected_state"


class PaymentDeclined(SandboxError):
    """The charge was declined (card, wallet or bank). The payment is back to
    ``requires_payment_method``; ``details`` hold the decline code and the payment."""

    status = 402
    code = "card_declined"


class AmountTooLarge(SandboxError):
    """A capture or refund for more than is capturable or refundable."""

    status = 422
    code = "amount_too_large"


@dataclass
class PaymentIntent:
    id: str
    amount: int
    currency: str
    capture_method: CaptureMethod
    payment_method_types: list[MethodType]
    metadata: dict[str, str]
    description: str | None
    created: int
    status: IntentStatus
    payment_method: str | None = None
    amount_capturable: int = 0
    amount_received: int = 0
    """Charged (captured), minor units."""
    amount_refunded: int = 0
    """Refunded by succeeded refunds."""
    amount_refund_pending: int = 0
    """In refunds not yet settled: not refundable again until they fail."""
    last_payment_error: dict[str, object] | None = None
    next_action: dict[str, object] | None = None
    return_url: str | None = None
    latest_charge: str | None = None
    canceled_at: int | None = None
    cancellation_reason: str | None = None
    attempt_key: str | None = None
    """The Idempotency-Key of the call that started the current attempt to pay (for the ledger)."""
    request_three_d_secure: ThreeDSecure = "automatic"
    payment_method_details: dict[str, object] | None = None
    """The method of the latest try to pay (Stripe's ``latest_charge.payment_method_details``,
    inlined: the sandbox does not expand): its type and fingerprint, kept after a decline."""

    @property
    def three_d_secure_requested(self) -> bool:
        """Whether the buyer must authenticate a card whatever the card needs."""
        return self.request_three_d_secure != "automatic"

    def require(self, action: str, *allowed: IntentStatus) -> None:
        """Refuse ``action`` (409 ``payment_intent_unexpected_state``) outside ``allowed``."""
        if self.status not in allowed:
            raise IntentStateError(
                f"cannot {action} a PaymentIntent in status {self.status}",
                status=str(self.status),
                allowed=[str(s) for s in allowed],
            )

    @property
    def refundable(self) -> int:
        return self.amount_received - self.amount_refunded - self.amount_refund_pending

    def public(self) -> dict[str, object]:
        return {
            "id": self.id,
            "object": "payment_intent",
            "amount": self.amount,
            "amount_capturable": self.amount_capturable,
            "amount_received": self.amount_received,
            "amount_refunded": self.amount_refunded,
            "currency": self.currency,
            "status": str(self.status),
            "capture_method": self.capture_method,
            "payment_method": self.payment_method,
            "payment_method_types": list(self.payment_method_types),
            "metadata": dict(self.metadata),
            "description": self.description,
            "created": self.created,
            "last_payment_error": self.last_payment_error,
            "next_action": self.next_action,
            "payment_method_options": {
                "card": {"request_three_d_secure": self.request_three_d_secure}
            },
            "payment_method_details": self.payment_method_details,
            "latest_charge": self.latest_charge,
            "canceled_at": self.canceled_at,
            "cancellation_reason": self.cancellation_reason,
        }


@dataclass
class Charge:
    """Money really taken from the buyer: one per succeeded PaymentIntent."""

    id: str
    payment_intent: str
    amount: int
    currency: str
    payment_method: str
    payment_method_type: MethodType
    metadata: dict[str, str]
    idempotency_key: str | None
    created: int
    payment_method_details: dict[str, object]
    amount_refunded: int = 0

    def public(self) -> dict[str, object]:
        return {
            "id": self.id,
            "object": "charge",
            "payment_intent": self.payment_intent,
            "amount": self.amount,
            "amount_refunded": self.amount_refunded,
            "refunded": self.amount_refunded == self.amount,
            "currency": self.currency,
            "payment_method": self.payment_method,
            "payment_method_type": self.payment_method_type,
            "payment_method_details": self.payment_method_details,
            "metadata": dict(self.metadata),
            "created": self.created,
        }

    def ledger(self) -> dict[str, object]:
        return self.public() | {"idempotency_key": self.idempotency_key}


@dataclass
class Refund:
    id: str
    payment_intent: str
    charge: str
    amount: int
    currency: str
    reason: str | None
    metadata: dict[str, str]
    idempotency_key: str | None
    created: int
    status: RefundStatus = RefundStatus.PENDING
    failure_reason: str | None = None

    def public(self) -> dict[str, object]:
        return {
            "id": self.id,
            "object": "refund",
            "payment_intent": self.payment_intent,
            "charge": self.charge,
            "amount": self.amount,
            "currency": self.currency,
            "status": str(self.status),
            "reason": self.reason,
            "failure_reason": self.failure_reason,
            "metadata": dict(self.metadata),
            "created": self.created,
        }

    def ledger(self) -> dict[str, object]:
        return self.public() | {"idempotency_key": self.idempotency_key}


@dataclass(frozen=True)
class Decline:
    """An attempt to pay that was refused: no money moved."""

    payment_intent: str
    amount: int
    currency: str
    payment_method: str
    fingerprint: str
    code: str
    decline_code: str | None
    idempotency_key: str | None
    created: int
    metadata: dict[str, str] = field(default_factory=dict)

    def ledger(self) -> dict[str, object]:
        return {
            "payment_intent": self.payment_intent,
            "amount": self.amount,
            "currency": self.currency,
            "payment_method": self.payment_method,
            "fingerprint": self.fingerprint,
            "code": self.code,
            "decline_code": self.decline_code,
            "idempotency_key": self.idempotency_key,
            "metadata": dict(self.metadata),
            "created": self.created,
        }
