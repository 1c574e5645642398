"""An order attempt with its payment attempts and its truth (fraud or not, the scenario or
honest kind, when the label arrives), and the builders of its events."""

import random
from dataclasses import dataclass
from typing import NamedTuple

from pyorder.risk.events import AgentClass, OrderAttempt, PaymentAttempt
from pyorder.risk.sim.config import SECOND_MS
from pyorder.risk.sim.world import Device, Net, Place, Shopper


@dataclass(slots=True)
class Attempt:
    """One order, its payments (time-ordered, after the order) and the truth about it."""

    order: OrderAttempt
    payments: list[PaymentAttempt]
    kind: str
    """The fraud scenario, or the honest kind (``config.HONEST_KINDS``)."""
    fraud: bool
    label_at_ms: int | None = None
    """When the fraud label arrives (a chargeback, a merchant's report); None: never."""


class Account(NamedTuple):
    """What an order says of its account."""

    buyer: int
    created_ms: int
    email_hash: str | None
    phone_hash: str | None


class Client(NamedTuple):
    """Where an order comes from: the device and the network (None: no client context)."""

    device: Device | None
    net: Net | None


NO_CLIENT = Client(None, None)


def account_of(shopper: Shopper) -> Account:
    """What an order on the shopper's account says of it (whoever places the order)."""
    return Account(shopper.buyer, shopper.created_ms, shopper.email_hash, shopper.phone_hash)


def order(
    at_ms: int,
    account: Account,
    client: Client,
    ship: Place | None,
    sku: int,
    quantity: int,
    amount: int,
    release_ms: int | None = None,
) -> OrderAttempt:
    """The event of an order. Without a client context (``NO_CLIENT``) the order carries no
    device, IP, email or phone hash, as a body without a context does."""
    device, net = client
    context = device is not None or net is not None
    return OrderAttempt(
        at_ms=at_ms,
        buyer=account.buyer,
        account_created_ms=account.created_ms,
        amount=amount,
        sku=sku,
        quantity=quantity,
        sku_release_ms=release_ms,
        device=device.id if device is not None else None,
        ip=net.ip if net is not None else None,
        ip_region=net.region if net is not None else None,
        email_hash=account.email_hash if context else None,
        phone_hash=account.phone_hash if context else None,
        agent=device.agent if device is not None else AgentClass.UNKNOWN,
        address=ship.address if ship is not None else None,
        ship_region=ship.region if ship is not None else None,
    )


def payments(
    rng: random.Random,
    placed: OrderAttempt,
    tries: list[tuple[str, bool]],
    first_s: tuple[float, float],
    gap_s: tuple[float, float],
) -> list[PaymentAttempt]:
    """The order's authorisations, one per ``(instrument, authorised)`` in ``tries``: the first
    ``first_s`` seconds after the order, each next ``gap_s`` seconds after the one before
    (uniform ranges), from the order's device and IP."""
    at = placed.at_ms
    made: list[PaymentAttempt] = []
    for i, (instrument, authorised) in enumerate(tries):
        low, high = first_s if i == 0 else gap_s
        at += max(1, round(rng.uniform(low, high) * SECOND_MS))
        made.append(
            PaymentAttempt(
                at_ms=at,
                buyer=placed.buyer,
                amount=placed.amount,
                instrument=instrument,
                authorised=authorised,
                device=placed.device,
                ip=placed.ip,
            )
        )
    return made
