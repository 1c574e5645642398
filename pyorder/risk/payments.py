"""Risk control at payment (``docs/risk.md``, "At payment"): the side of
``pyorder.payments.risk.PaymentRisk`` the platform hands to payments when risk control is on.

3-D Secure is looked up in the order's stored decision when its payment starts (one read by
primary key per payment started, not per order placed: the decision committed with the order
before the buyer had its answer, so it is there, on every node and after any restart, and
intake keeps no Python object per order). Authorisations go to the core's velocity tracker.
"""

from pyorder._core import RiskEngine
from pyorder.storage.base import Store


class RiskAtPayment:
    """``PaymentRisk`` over the core's ``engine`` and the decisions in ``store``."""

    def __init__(self, engine: RiskEngine, store: Store) -> None:
        self._engine = engine
        self._store = store

    async def wants_three_ds(self, order_id: int) -> bool:
        decision = await self._store.risk_decision(order_id)
        return decision is not None and decision.three_ds

    def authorisation(
        self,
        at_ms: int,
        buyer_number: int,
        amount: int,
        instrument: str,
        authorised: bool,
        ip: str | None,
    ) -> None:
        self._engine.observe_payment(at_ms, buyer_number, amount, instrument, authorised, ip=ip)
