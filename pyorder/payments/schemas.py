"""The documents a payment provider sends us, typed and bounded: signed webhook events, and the
answers to our calls (``pyorder.payments.client``). The provider's API is Stripe's
(``sandbox/payment``).

Everything is decoded (``pyorder.documents.decode``), in full, before anything is applied or staged: a wrong type, an
integer out of range (money within ``MAX_MONEY``), a float where an integer belongs, a string
too long, not UTF-8 or holding U+0000, nesting where a scalar belongs or nested too deep
anywhere, or a status we do not know is refused with the path of the value
(``$.data.object.amount_received``). Unknown fields are ignored (providers add fields), but a
document is at most ``MAX_DOCUMENT`` bytes, and no Python object is built for what is ignored.
"""

from enum import StrEnum
from typing import Annotated

import msgspec
from msgspec import Meta

from pyorder.documents import MaybeId, NoNul, ObjectId, Text

MAX_MONEY = 10**15
"""Largest amount (minor units) a provider may report: far above any order we take (the
sandbox refuses more than 10**12), and sums of many stay well inside 64 bits."""

Money = Annotated[int, Meta(ge=0, le=MAX_MONEY, description="minor units (cents, fen)")]
Currency = Annotated[str, Meta(pattern="^[A-Za-z]{3}$", description="ISO 4217 code")]
Url = Annotated[str, Meta(max_length=2048), NoNul]
Metadata = Annotated[
    dict[
        Annotated[str, Meta(min_length=1, max_length=40), NoNul],
        Annotated[str, Meta(max_length=500), NoNul],
    ],
    Meta(max_length=50),
]
"""Stripe's limits: 50 keys of up to 40 characters, values of up to 500."""


class IntentStatus(StrEnum):
    """A PaymentIntent's status at the provider (Stripe's)."""

    REQUIRES_PAYMENT_METHOD = "requires_payment_method"
    REQUIRES_CONFIRMATION = "requires_confirmation"
    REQUIRES_ACTION = "requires_action"
    PROCESSING = "processing"
    REQUIRES_CAPTURE = "requires_capture"
    SUCCEEDED = "succeeded"
    CANCELED = "canceled"


class ProviderRefundStatus(StrEnum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class PaymentError(msgspec.Struct, frozen=True):
    """Why the last try to pay failed (``last_payment_error``)."""

    code: Text | None = None
    decline_code: Text | None = None
    message: Text | None = None


class RedirectToUrl(msgspec.Struct, frozen=True):
    url: Url
    return_url: Url | None = None


class NextAction(msgspec.Struct, frozen=True, omit_defaults=True):
    """What the buyer must do to go on (3-D Secure, a wallet's confirmation). Relayed to the
    buyer as decoded here: its type and, for a redirect, where to."""

    type: Annotated[str, Meta(pattern=r"^[a-z_]{1,64}$")]
    redirect_to_url: RedirectToUrl | None = None


class Instrument(msgspec.Struct, frozen=True):
    """What the provider tells of the instrument paid with (one method type's details)."""

    fingerprint: ObjectId | None = None
    """The same for the same card or account, whoever pays with it."""


class PaymentMethodDetails(msgspec.Struct, frozen=True):
    """Stripe's ``payment_method_details`` of the latest try to pay: the method type, and the
    details of that type (only the fingerprint is read)."""

    type: Annotated[str, Meta(pattern=r"^[a-z_]{1,64}$")]
    card: Instrument | None = None
    wallet: Instrument | None = None
    bank_transfer: Instrument | None = None

    @property
    def fingerprint(self) -> str | None:
        """The fingerprint under the details' own type, or None when it has none."""
        found = {"card": self.card, "wallet": self.wallet, "bank_transfer": self.bank_transfer}
        instrument = found.get(self.type)
        return None if instrument is None else instrument.fingerprint


class PaymentIntent(msgspec.Struct, frozen=True):
    id: ObjectId
    status: IntentStatus
    amount: Money = 0
    amount_received: Money = 0
    currency: Currency | None = None
    metadata: Metadata = {}
    last_payment_error: PaymentError | None = None
    next_action: NextAction | None = None
    payment_method_details: PaymentMethodDetails | None = None


class Refund(msgspec.Struct, frozen=True):
    id: ObjectId
    status: ProviderRefundStatus
    amount: Money = 0
    payment_intent: MaybeId | None = None
    failure_reason: Text | None = None
    metadata: Metadata = {}


class DeclineDetails(msgspec.Struct, frozen=True):
    payment_intent: PaymentIntent | None = None


class Decline(msgspec.Struct, frozen=True):
    """The error body of a refusal (``{"error": {"code", "message", "details"}}``); a declined
    confirmation (402) carries the PaymentIntent in ``details``."""

    code: Text | None = None
    message: Text | None = None
    details: DeclineDetails | None = None


class ErrorAnswer(msgspec.Struct, frozen=True):
    error: Decline | None = None

    def describe(self) -> str:
        """``code: message`` of the error, or "" when the answer carries none."""
        if self.error is None:
            return ""
        return f"{self.error.code}: {self.error.message}"

    def declined_intent(self) -> PaymentIntent | None:
        details = self.error.details if self.error is not None else None
        return details.payment_intent if details is not None else None


def metadata_int(meta: dict[str, str], name: str) -> int | None:
    """A number we put in ``metadata`` (order id, attempt, refund), or None when absent or not
    one of ours (digits only, within 64 bits)."""
    text = meta.get(name)
    if text is None or not (0 < len(text) <= 19 and text.isascii() and text.isdigit()):
        return None
    value = int(text)
    return value if value < 2**63 else None
