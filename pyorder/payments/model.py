"""The payment domain's records: plain, frozen dataclasses, written whole by the stores.

Order status (``pyorder.orders.model.OrderStatus``) stays separate from payment status (Saleor's
split): a ``Payment`` per order tracks what was authorised, charged and refunded, in integer
minor units of the order's currency; each try at a provider is an ``Attempt`` whose status
follows Stripe's PaymentIntent states. Times are ms since the Unix epoch, UTC.
"""

from dataclasses import dataclass
from enum import StrEnum


class AttemptStatus(StrEnum):
    """An attempt: Stripe's PaymentIntent states, plus three of ours.

    ``pending``: staged with its outbox row, not at the provider yet. ``failed``: declined (the
    PaymentIntent went back to ``requires_payment_method`` with an error; we never reuse it).
    ``abandoned``: never confirmed at the provider (its creation failed, or it was cancelled
    there before any money moved), so another provider may be tried.
    """

    PENDING = "pending"
    REQUIRES_PAYMENT_METHOD = "requires_payment_method"
    REQUIRES_CONFIRMATION = "requires_confirmation"
    REQUIRES_ACTION = "requires_action"
    PROCESSING = "processing"
    REQUIRES_CAPTURE = "requires_capture"
    SUCCEEDED = "succeeded"
    CANCELED = "canceled"
    FAILED = "failed"
    ABANDONED = "abandoned"


TERMINAL = frozenset(
    {AttemptStatus.SUCCEEDED, AttemptStatus.CANCELED, AttemptStatus.FAILED, AttemptStatus.ABANDONED}
)
"""Statuses an attempt never leaves (except that money seen is never ignored: a charge
observed on any attempt is recorded, and refunded when it cannot pay the order)."""

_OPEN = (
    AttemptStatus.PENDING,
    AttemptStatus.REQUIRES_PAYMENT_METHOD,
    AttemptStatus.REQUIRES_CONFIRMATION,
)
TRANSITIONS: dict[AttemptStatus, frozenset[AttemptStatus]] = {
    **{
        s: frozenset(
            {
                AttemptStatus.REQUIRES_CONFIRMATION,
                AttemptStatus.REQUIRES_ACTION,
                AttemptStatus.PROCESSING,
                AttemptStatus.REQUIRES_CAPTURE,
                AttemptStatus.SUCCEEDED,
                AttemptStatus.FAILED,
                AttemptStatus.CANCELED,
                AttemptStatus.ABANDONED,
            }
            - {s}
        )
        for s in _OPEN
    },
    AttemptStatus.REQUIRES_ACTION: frozenset(
        {
            AttemptStatus.PROCESSING,
            AttemptStatus.REQUIRES_CAPTURE,
            AttemptStatus.SUCCEEDED,
            AttemptStatus.FAILED,
            AttemptStatus.CANCELED,
        }
    ),
    AttemptStatus.PROCESSING: frozenset({AttemptStatus.SUCCEEDED, AttemptStatus.FAILED}),
    AttemptStatus.REQUIRES_CAPTURE: frozenset({AttemptStatus.SUCCEEDED, AttemptStatus.CANCELED}),
    **{s: frozenset() for s in TERMINAL},
}
"""Legal moves of an attempt. Provider observations (webhooks, answers, look-ups) that are not
a legal move from where the attempt is are stale (arrived out of order) and are ignored."""


class PaymentStatus(StrEnum):
    """An order's payment, derived from its attempts and amounts."""

    NONE = "none"
    PENDING = "pending"
    """An attempt is under way."""
    FAILED = "failed"
    """The last attempt was declined or no provider could take it; nothing is charged."""
    CHARGED = "charged"
    REFUND_PENDING = "refund_pending"
    PARTIALLY_REFUNDED = "partially_refunded"
    """The charge paid the order and part of it was refunded (a partial refund)."""
    REFUNDED = "refunded"
    FLAGGED = "flagged"
    """A charge did not match the order (amount or currency): recorded, the order not paid."""


class RefundStatus(StrEnum):
    """Stripe's Refund states (``NONE``: an attempt with no automatic refund)."""

    NONE = ""
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


REFUND_TRANSITIONS: dict[RefundStatus, frozenset[RefundStatus]] = {
    RefundStatus.PENDING: frozenset({RefundStatus.SUCCEEDED, RefundStatus.FAILED}),
    RefundStatus.SUCCEEDED: frozenset(),
    RefundStatus.FAILED: frozenset(),
}
"""Legal moves of a ``Refund``: pending, then succeeded or failed, once."""


@dataclass(frozen=True, slots=True)
class Payment:
    """The payment side of one order (amounts in minor units of ``currency``)."""

    order_id: int
    buyer: str
    currency: str
    amount: int
    """What the order costs (its total)."""
    method: str
    status: PaymentStatus
    authorized: int
    charged: int
    refunded: int
    attempts: int
    """How many attempts were made (they are numbered 1, 2, ...)."""
    paid_attempt: int
    """The attempt whose charge paid the order; 0 while none did."""
    flag: str
    """Why the payment needs a person (``amount_mismatch``), or empty."""
    created_ms: int
    updated_ms: int


@dataclass(frozen=True, slots=True)
class Attempt:
    """One try at one provider. Its provider idempotency keys derive from (order, number)."""

    order_id: int
    number: int
    provider: str
    method: str
    payment_method: str
    """The provider's payment method id (in the sandbox, the test scenario)."""
    idempotency_key: str
    """Prefix of every provider call's key for this attempt (``<prefix>-create``, ...)."""
    provider_payment_id: str
    status: AttemptStatus
    amount: int
    currency: str
    amount_received: int
    refund_id: str
    refund_status: RefundStatus
    amount_refunded: int
    error: str
    created_ms: int
    updated_ms: int
    three_ds: bool = False
    """Ask the provider for 3-D Secure whatever the card (the order's risk decision asked for
    it): sent with every call that creates or confirms it, so a resend asks again."""
    risk: str = ""
    """Risk control's check when the payment started (``pyorder.payments.risk.StartCheck``),
    JSON text; empty when risk control is off."""


@dataclass(frozen=True, slots=True)
class Refund:
    """A refund of (part of) the charge that paid an order, through the provider that took it:
    on cancel (all that is left), or asked for by the merchant or an admin (by amount or by
    lines). Its provider Idempotency-Key derives from (order, number)."""

    order_id: int
    number: int
    """1, 2, ... per order."""
    attempt: int
    """The attempt whose charge it refunds (the one that paid the order)."""
    provider: str
    amount: int
    currency: str
    status: RefundStatus
    reason: str
    lines: tuple[tuple[int, int], ...]
    """(sku, quantity) refunded by line; empty for a refund by amount."""
    idempotency_key: str
    provider_refund_id: str
    requested_by: str
    """Principal key (``role:subject``) of who asked; ``system`` for automatic ones."""
    error: str
    created_ms: int
    updated_ms: int
    settled_ms: int
    """When it succeeded or failed; 0 while pending."""
