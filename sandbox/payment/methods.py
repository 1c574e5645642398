"""The test payment methods a buyer can pay with, and how each behaves.

As in Stripe's test mode, the payment method's id decides the outcome, so a test picks a
scenario by picking a method. Each method has a type (``card``, ``wallet``, ``bank_transfer``);
a provider accepts only the types it was started with.

Each method stands for one instrument (the test card number, wallet account or bank account it
represents), and a payment made with it reports that instrument's ``fingerprint``, as Stripe's
``payment_method_details.card.fingerprint``: the same for the same instrument whoever pays
with it and at whichever sandbox, so that a risk engine can count an instrument across buyers.
"""

import hashlib
from dataclasses import dataclass
from typing import Literal

MethodType = Literal["card", "wallet", "bank_transfer"]
METHOD_TYPES: tuple[MethodType, ...] = ("card", "wallet", "bank_transfer")


@dataclass(frozen=True)
class MethodSpec:
    """How one test payment method behaves."""

    type: MethodType
    instrument: str
    """The card number (Stripe's test number), wallet account or IBAN it stands for."""
    requires_action: bool = False
    """The buyer must authenticate (3-D Secure, a wallet's confirmation) before the charge."""
    decline_code: str | None = None
    """Always declined with this code (besides the ``decline_rate`` knob, which applies to all)."""
    settles_later: bool = False
    """Confirming leaves the payment ``processing``; it settles (or fails) after a delay."""

    @property
    def fingerprint(self) -> str:
        """16 hex digits of the SHA-256 of the instrument: the same instrument, the same
        fingerprint, and nothing of the number can be read back from it."""
        return hashlib.sha256(f"{self.type}:{self.instrument}".encode()).hexdigest()[:16]

    def details(self) -> dict[str, object]:
        """Stripe's ``payment_method_details`` of a payment with this method: its type, and
        under the type its fingerprint."""
        return {"type": self.type, self.type: {"fingerprint": self.fingerprint}}


PAYMENT_METHODS: dict[str, MethodSpec] = {
    "pm_card_visa": MethodSpec("card", "4242424242424242"),
    "pm_card_mastercard": MethodSpec("card", "5555555555554444"),
    "pm_card_authenticationRequired": MethodSpec("card", "4000002760003184", requires_action=True),
    "pm_card_chargeDeclined": MethodSpec(
        "card", "4000000000000002", decline_code="generic_decline"
    ),
    "pm_card_chargeDeclinedInsufficientFunds": MethodSpec(
        "card", "4000000000009995", decline_code="insufficient_funds"
    ),
    "pm_wallet": MethodSpec("wallet", "wallet-0001"),
    "pm_wallet_authenticationRequired": MethodSpec("wallet", "wallet-0002", requires_action=True),
    "pm_wallet_declined": MethodSpec("wallet", "wallet-0003", decline_code="generic_decline"),
    "pm_bank_transfer": MethodSpec("bank_transfer", "DE89370400440532013000", settles_later=True),
    "pm_bank_transfer_insufficientFunds": MethodSpec(
        "bank_transfer",
        "DE02120300000000202051",
        settles_later=True,
        decline_code="insufficient_funds",
    ),
}
