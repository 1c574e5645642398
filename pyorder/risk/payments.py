"""Risk control at payment (``docs/risk.md``, "At payment"): the side of
``pyorder.payments.risk.PaymentRisk`` the platform hands to payments when risk control is on.

When a payment starts, 3-D Secure is asked if the order's stored decision asked for it (one read
by primary key per payment started, not per order placed: the decision committed with the order
before the buyer had its answer, so it is there, on every node and after any restart, and intake
keeps no Python object per order), or if the payment itself, assessed then, would be reviewed
or blocked or fires a ``request_3ds`` rule: the buyer's features at that moment (the declines of
card testing since the order, the IP's velocity), scored by the model and decided by the
platform's rules and lists (``RiskEngine.assess_payment``). A payment is never refused by risk
control: stepping up to the issuer's authentication stops a card that is not the buyer's, and
lets its holder pay. The check is stored with the attempt (``Attempt.risk``). Authorisations go
to the core's velocity tracker.
"""

import orjson

from pyorder._core import RiskEngine
from pyorder.kernel.clock import now_ms
from pyorder.payments.risk import StartCheck
from pyorder.storage.base import Store


class RiskAtPayment:
    """``PaymentRisk`` over the core's ``engine`` and the decisions in ``store``."""

    def __init__(self, engine: RiskEngine, store: Store) -> None:
        self._engine = engine
        self._store = store

    async def at_start(
        self, order_id: int, buyer: str, buyer_number: int, amount: int, ip: str | None
    ) -> StartCheck:
        decision = await self._store.risk_decision(order_id)
        ordered = decision is not None and decision.three_ds
        at = now_ms()
        keys = {"buyer": buyer} if ip is None else {"buyer": buyer, "ip": ip}
        score, outcome, three_ds, fired, decided_by, reasons = self._engine.assess_payment(
            at, buyer_number, amount, ip=ip, keys=keys
        )
        step_up = three_ds or outcome != "allow"
        record = {
            "at_ms": at,
            "outcome": outcome,
            "score": score,
            "model": self._engine.model_version,
            "decided_by": decided_by,
            "fired": fired,
            "reasons": orjson.loads(reasons),
            "order_three_ds": ordered,
            "three_ds": ordered or step_up,
        }
        return StartCheck(ordered or step_up, orjson.dumps(record).decode())

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
