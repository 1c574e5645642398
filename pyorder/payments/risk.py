"""What payments ask of risk control, as a protocol of their own: the platform wires risk
control's side in (``pyorder.risk.payments``), so payments import nothing of risk control and
run without it (``Payments.risk`` None)."""

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class StartCheck:
    """What risk control says of a payment about to start."""

    three_ds: bool
    """Ask the provider for 3-D Secure whatever the card."""
    record: str = ""
    """The check as JSON text, stored with the attempt (empty: none was made)."""


NO_CHECK = StartCheck(False)
"""Risk control is off."""


class PaymentRisk(Protocol):
    """Risk control as payments see it."""

    async def at_start(
        self, order_id: int, buyer: str, buyer_number: int, amount: int, ip: str | None
    ) -> StartCheck:
        """Risk control's check of the payment of ``amount`` minor units that the buyer
        ``buyer`` (``buyer_number``: ``pyorder.auth.buyer_number``) starts for ``order_id``
        from ``ip`` (when known)."""

    def authorisation(
        self,
        at_ms: int,
        buyer_number: int,
        amount: int,
        instrument: str,
        authorised: bool,
        ip: str | None,
    ) -> None:
        """Count one authorisation (authorised or declined) of ``amount`` minor units with the
        instrument of fingerprint ``instrument`` by the buyer ``buyer_number``
        (``pyorder.auth.buyer_number``) at ``at_ms`` (ms since the Unix epoch), started from
        ``ip`` when known, for later orders' velocity features."""
