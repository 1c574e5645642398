"""Request bodies of the payment API (JSON; unknown fields are refused, as at Stripe)."""

from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from sandbox.payment.methods import MethodType
from sandbox.payment.model import CaptureMethod, ThreeDSecure

Money = Annotated[int, Meta(ge=1, le=10**12, description="minor units (cents, fen)")]
Currency = Annotated[str, Meta(pattern="^[A-Za-z]{3}$", description="ISO 4217 code")]
Metadata = Annotated[
    dict[
        Annotated[str, Meta(min_length=1, max_length=40)],
        Annotated[str, Meta(max_length=500)],
    ],
    Meta(max_length=50),
]
PaymentMethodId = Annotated[str, Meta(min_length=1, max_length=100)]
Url = Annotated[str, Meta(max_length=2000)]
ObjectId = Annotated[str, Meta(min_length=1, max_length=100)]


class CardOptionsIn(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    request_three_d_secure: ThreeDSecure = "automatic"


class MethodOptionsIn(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """Stripe's ``payment_method_options``: options per method type (only ``card`` has any)."""

    card: CardOptionsIn | None = None


class CreateIntentIn(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    amount: Money
    currency: Currency
    payment_method_types: Annotated[list[MethodType], Meta(min_length=1, max_length=3)] | None = (
        None
    )
    """Default: every type the provider accepts."""
    payment_method: PaymentMethodId | None = None
    capture_method: CaptureMethod = "automatic"
    confirm: bool = False
    """Confirm at once (needs ``payment_method``)."""
    return_url: Url | None = None
    metadata: Metadata = {}
    description: Annotated[str, Meta(max_length=1000)] | None = None
    payment_method_options: MethodOptionsIn | None = None


class ConfirmIn(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    payment_method: PaymentMethodId | None = None
    return_url: Url | None = None
    payment_method_options: MethodOptionsIn | None = None
    """Replaces the PaymentIntent's options when given."""


class AuthenticateIn(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """The buyer's answer to the challenge (what a 3-D Secure page would collect)."""

    outcome: Literal["approve", "fail"] = "approve"


class CaptureIn(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    amount_to_capture: Money | None = None
    """Default: all that is capturable; the rest of the authorisation is released."""


class CancelIn(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    cancellation_reason: (
        Literal["duplicate", "fraudulent", "requested_by_customer", "abandoned"] | None
    ) = None


class RefundIn(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    payment_intent: ObjectId
    amount: Money | None = None
    """Default: all that is still refundable."""
    reason: Literal["duplicate", "fraudulent", "requested_by_customer"] | None = None
    metadata: Metadata = {}
