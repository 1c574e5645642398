"""How a payment provider instance is set up: accepted methods, delays, and its extra knobs."""

from dataclasses import dataclass

from sandbox.faults import Faults, Rate
from sandbox.payment.methods import METHOD_TYPES, MethodType


class PaymentFaults(Faults, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """The common knobs, and the payment provider's own."""

    decline_rate: Rate = 0.0
    """Each attempt to charge (card, wallet, bank settlement) is declined with this probability."""
    refund_failure_rate: Rate = 0.0
    """Each refund fails at settlement with this probability (the money stays charged)."""


@dataclass(frozen=True)
class PaymentSettings:
    methods: tuple[MethodType, ...] = METHOD_TYPES
    """The payment method types this provider accepts."""
    settle_s: float = 1.0
    """A bank transfer stays ``processing`` this long (seconds) before it settles."""
    refund_settle_s: float = 0.2
    """A refund stays ``pending`` this long (seconds); 0 settles it within the call."""
