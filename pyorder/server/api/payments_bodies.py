"""Request and response bodies of the payments' routes (``pyorder.server.api.payments``): paying an
order, its payment and attempts, refunds, as msgspec Structs, and the converters from the
records. Returns show their refund with ``RefundOut``."""

from collections.abc import Mapping
from typing import Annotated, Any, Literal

import msgspec
import orjson
from msgspec import Meta

from pyorder.kernel.clock import iso_ms as iso
from pyorder.payments.model import Attempt, Payment, Refund
from pyorder.server.bodies import Id, OrderId, Quantity, Text, whole

# --- requests (unknown fields are an error) -------------------------------------------------


class RefundLineIn(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    sku: Id
    quantity: Quantity


class RefundIn(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """A refund by ``amount`` (minor units), by ``lines`` (their price), or both (then the
    amount, at most what the lines cost)."""

    reason: Text
    amount: Annotated[int, Meta(ge=1, le=10**12, description="minor units (cents, fen)")] | None = (
        None
    )
    lines: Annotated[list[RefundLineIn], Meta(max_length=100)] = []


class PaymentIn(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    method: Literal["card", "wallet", "bank_transfer"]
    payment_method: (
        Annotated[
            str,
            Meta(
                min_length=1,
                max_length=100,
                pattern=whole("[A-Za-z0-9_]+"),
                description="the provider's payment method id (default: one per method)",
            ),
        ]
        | None
    ) = None


# --- responses -----------------------------------------------------------------------------


class AttemptOut(msgspec.Struct):
    number: int
    provider: str
    method: str
    status: str
    amount: int
    currency: str
    amount_received: int
    provider_payment_id: str
    refund_status: str
    amount_refunded: int
    error: str
    created_at: str
    updated_at: str
    three_ds: Annotated[
        bool,
        Meta(
            description="3-D Secure was asked of the provider for this attempt, whatever the"
            " card (the order's risk decision, or risk control's check of the payment,"
            " requested it)"
        ),
    ] = False
    risk: (
        Annotated[
            dict[str, Any],
            Meta(
                description="risk control's check when the payment started (admins only):"
                " at_ms, outcome, score, model, decided_by, fired, reasons, order_three_ds,"
                " three_ds"
            ),
        ]
        | None
    ) = None
    next_action: (
        Annotated[
            dict[str, Any],
            Meta(
                description="what the buyer must do to go on (3-D Secure, a wallet's"
                " confirmation), relayed as the provider gave it (at the sandbox:"
                ' {"type": "redirect_to_url", "redirect_to_url": {"url", "return_url"}});'
                " null unless the attempt is requires_action"
            ),
        ]
        | None
    ) = None


class PaymentOut(msgspec.Struct):
    """An order's payment. A merchant sees its part: the amounts are its share (split over the
    merchants of the order by line value), ``refunded`` and ``status`` count only the refunds
    touching its lines, and ``attempts`` is empty (they are the buyer's and the platform's)."""

    order_id: OrderId
    status: str
    method: str
    currency: str
    amount: int
    authorized: int
    charged: int
    refunded: int
    flag: str
    attempts: list[AttemptOut]


class RefundLineOut(msgspec.Struct):
    sku: int
    quantity: int


class RefundOut(msgspec.Struct):
    """A refund of (part of) an order's charge. A merchant sees only the refunds touching its
    lines, each with ``amount`` its share and ``lines`` its own."""

    order_id: OrderId
    number: int
    status: str
    amount: int
    currency: str
    reason: str
    lines: list[RefundLineOut]
    provider: str
    provider_refund_id: str
    requested_by: str
    error: str
    created_at: str
    updated_at: str
    settled_at: str | None


class RefundList(msgspec.Struct):
    refunds: list[RefundOut]


# --- conversions ---------------------------------------------------------------------------


def refund_out(r: Refund) -> RefundOut:
    return RefundOut(
        order_id=str(r.order_id),
        number=r.number,
        status=r.status.value,
        amount=r.amount,
        currency=r.currency,
        reason=r.reason,
        lines=[RefundLineOut(sku, q) for sku, q in r.lines],
        provider=r.provider,
        provider_refund_id=r.provider_refund_id,
        requested_by=r.requested_by,
        error=r.error,
        created_at=iso(r.created_ms),
        updated_at=iso(r.updated_ms),
        settled_at=iso(r.settled_ms) if r.settled_ms else None,
    )


def payment_out(
    order_id: int,
    pay: Payment | None,
    attempts: list[Attempt],
    next_actions: Mapping[int, dict[str, Any]] | None = None,
    *,
    with_risk: bool = False,
) -> PaymentOut:
    """The payment of an order; ``next_actions``: the provider's ``next_action`` of the
    attempts awaiting the buyer, by attempt number; ``with_risk``: with risk control's checks
    (for admins: a buyer never sees why it was challenged)."""
    actions = next_actions or {}
    if pay is None:
        return PaymentOut(str(order_id), "none", "", "", 0, 0, 0, 0, "", [])
    return PaymentOut(
        order_id=str(order_id),
        status=pay.status.value,
        method=pay.method,
        currency=pay.currency,
        amount=pay.amount,
        authorized=pay.authorized,
        charged=pay.charged,
        refunded=pay.refunded,
        flag=pay.flag,
        attempts=[
            AttemptOut(
                number=a.number,
                provider=a.provider,
                method=a.method,
                status=a.status.value,
                amount=a.amount,
                currency=a.currency,
                amount_received=a.amount_received,
                provider_payment_id=a.provider_payment_id,
                refund_status=a.refund_status.value,
                amount_refunded=a.amount_refunded,
                error=a.error,
                created_at=iso(a.created_ms),
                updated_at=iso(a.updated_ms),
                three_ds=a.three_ds,
                risk=orjson.loads(a.risk) if with_risk and a.risk else None,
                next_action=actions.get(a.number),
            )
            for a in attempts
        ],
    )
