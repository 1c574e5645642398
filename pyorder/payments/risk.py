"""What payments ask of risk control, as a protocol of their own: the platform wires risk
control's side in (``pyorder.risk.payments``), so payments import nothing of risk control and
run without it (``Payments.risk`` None)."""

from typing import Protocol


class PaymentRisk(Protocol):
    """Risk control as payments see it."""

    async def wants_three_ds(self, order_id: int) -> bool:
        """Whether the order's risk decision asked for 3-D Secure at payment."""

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
