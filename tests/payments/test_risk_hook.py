"""What payments tell risk control and ask of it (``pyorder.payments.risk.PaymentRisk``), in
process on SQLite, with a recording stand-in for risk control: its check when a payment starts
(the order, the buyer, the amount and the IP asked; 3-D Secure taken from the answer, which is
stored with the attempt), and each authorisation counted once, with the provider's fingerprint or, when
the provider reports none, the provider's "unknown instrument" key (the end-to-end run with the
real sandbox is ``test_risk_payments_e2e.py``)."""

import asyncio
from dataclasses import dataclass, field
from pathlib import Path

from pyorder.auth import Principal, Role, buyer_number
from pyorder.orders.input import OrderInput
from pyorder.payments.providers import PaymentsConfig, ProviderConfig
from pyorder.payments.risk import PaymentRisk, StartCheck
from pyorder.payments.schemas import (
    Instrument,
    IntentStatus,
    PaymentError,
    PaymentIntent,
    PaymentMethodDetails,
)
from pyorder.platform import Config, Platform
from pyorder.risk.intake import RiskSettings

MERCHANT = Principal(Role.MERCHANT, "acme")
BUYER = Principal(Role.BUYER, "alice")
ADDRESS = {"name": "Alice", "line1": "1 Road", "city": "X", "region": "north"}

Counted = tuple[int, int, str, bool, str | None]
"""(buyer number, amount, instrument, authorised, ip) of one counted authorisation."""


@dataclass
class Recorder:
    """Risk control that asks 3-D Secure for the orders in ``three_ds`` and records what it is
    told."""

    three_ds: set[int] = field(default_factory=set)
    asked: list[tuple[int, str, int, int, str | None]] = field(default_factory=list)
    counted: list[Counted] = field(default_factory=list)

    async def at_start(
        self, order_id: int, buyer: str, buyer_number: int, amount: int, ip: str | None
    ) -> StartCheck:
        self.asked.append((order_id, buyer, buyer_number, amount, ip))
        return StartCheck(order_id in self.three_ds, f'{{"order": {order_id}}}')

    def authorisation(
        self,
        at_ms: int,
        buyer_number: int,
        amount: int,
        instrument: str,
        authorised: bool,
        ip: str | None,
    ) -> None:
        assert at_ms > 0
        self.counted.append((buyer_number, amount, instrument, authorised, ip))


def _intent(order_id: int, status: IntentStatus, fingerprint: str | None) -> PaymentIntent:
    declined = status is IntentStatus.REQUIRES_PAYMENT_METHOD
    details = (
        None
        if fingerprint is None
        else PaymentMethodDetails("card", card=Instrument(fingerprint=fingerprint))
    )
    return PaymentIntent(
        id=f"pi_{order_id}",
        status=status,
        amount=999,
        amount_received=0 if declined else 999,
        currency="CNY",
        metadata={"order_id": str(order_id), "attempt": "1"},
        last_payment_error=PaymentError("card_declined", "generic_decline") if declined else None,
        payment_method_details=details,
    )


def test_three_ds_is_asked_and_each_authorisation_counted_once(tmp_path: Path) -> None:
    # Nothing listens there; each intent below is observed before the dispatcher sends anything
    # (it waits until the attempt is durable, and nothing awaits in between).
    nowhere = ProviderConfig("nowhere", "http://127.0.0.1:9", "whsec_x", ("card",))
    config = Config(
        data_dir=tmp_path,
        payments=PaymentsConfig(providers=(nowhere,), retry_max_s=0.05),
        risk=RiskSettings(enabled=True, model=None),
    )

    async def body() -> None:
        platform = Platform(config)
        await platform.start()
        try:
            risk = Recorder()
            wired: PaymentRisk | None = platform.payments.risk
            assert wired is not None  # the platform wires risk control in when it is on
            platform.payments.risk = risk
            svc = platform.payments
            wh = platform.catalog.create_warehouse(MERCHANT, "west", ["north"])
            sku = platform.catalog.create_sku(
                MERCHANT, title="phone", price=999, currency="CNY", stock={wh.id: 10}
            ).sku
            declined, paid = (
                platform.orders.place(BUYER, OrderInput([(sku.id, 1)], ADDRESS)) for _ in "ab"
            )
            await platform.intake.durable()
            risk.three_ds.add(declined.id)
            alice = buyer_number(BUYER.subject)

            await svc.start(BUYER, declined.id, "card", None, ip="198.51.100.7")
            [att] = svc.attempts_of(declined.id)
            assert att.three_ds
            assert att.risk == f'{{"order": {declined.id}}}'  # stored with the attempt
            no_fingerprint = _intent(declined.id, IntentStatus.REQUIRES_PAYMENT_METHOD, None)
            svc.observe_intent("nowhere", no_fingerprint)
            svc.observe_intent("nowhere", no_fingerprint)  # again: a webhook after the answer
            assert risk.counted == [(alice, 999, "unknown:nowhere", False, "198.51.100.7")]

            await svc.start(BUYER, paid.id, "card", None)
            [att] = svc.attempts_of(paid.id)
            assert not att.three_ds
            charged = _intent(paid.id, IntentStatus.SUCCEEDED, "fp_4242")
            svc.observe_intent("nowhere", charged)
            svc.observe_intent("nowhere", charged)
            assert risk.counted[1:] == [(alice, 999, "fp_4242", True, None)]
            assert risk.asked == [
                (declined.id, "alice", alice, 999, "198.51.100.7"),
                (paid.id, "alice", alice, 999, None),
            ]
            await platform.intake.durable()
            assert svc.payments[paid.id].paid_attempt == 1
        finally:
            await platform.stop()

    asyncio.run(body())
