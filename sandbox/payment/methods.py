"""The test payment methods a buyer can pay with, and how each behaves.

As in Stripe's test mode, the payment method's id decides the outcome, so a test picks a
scenario by picking a method. Each method has a type (``card``, ``wallet``, ``bank_transfer``);
a provider accepts only the types it was started with.
"""

from dataclasses import dataclass
from typing import Literal

MethodType = Literal["card", "wallet", "bank_transfer"]
METHOD_TYPES: tuple[MethodType, ...] = ("card", "wallet", "bank_transfer")


@dataclass(frozen=True)
class MethodSpec:
    """How one test payment method behaves."""

    type: MethodType
    requires_action: bool = False
    """The buyer must authenticate (3-D Secure, a wallet's confirmation) before the charge."""
    decline_code: str | None = None
    """Always declined with this code (besides the ``decline_rate`` knob, which applies to all)."""
    settles_later: bool = False
    """Confirming leaves the payment ``processing``; it settles (or fails) after a delay."""


PAYMENT_METHODS: dict[str, MethodSpec] = {
    "pm_card_visa": MethodSpec("card"),
    "pm_card_mastercard": MethodSpec("card"),
    "pm_card_authenticationRequired": MethodSpec("card", requires_action=True),
    "pm_card_chargeDeclined": MethodSpec("card", decline_code="generic_decline"),
    "pm_card_chargeDeclinedInsufficientFunds": MethodSpec(
        "card", decline_code="insufficient_funds"
    ),
    "pm_wallet": MethodSpec("wallet"),
    "pm_wallet_authenticationRequired": MethodSpec("wallet", requires_action=True),
    "pm_wallet_declined": MethodSpec("wallet", decline_code="generic_decline"),
    "pm_bank_transfer": MethodSpec("bank_transfer", settles_later=True),
    "pm_bank_transfer_insufficientFunds": MethodSpec(
        "bank_transfer", settles_later=True, decline_code="insufficient_funds"
    ),
}
