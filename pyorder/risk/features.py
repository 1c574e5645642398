"""Velocity features of orders and payments, computed by the Rust core's ``RiskTracker``
(``docs/risk.md``, "Features: the catalogue").

Serving and training use the same code: the server calls the tracker per event
(``score_and_observe_order``: the order's 40 features before it is counted, and counts it), and
training replays a whole event stream through ``replay`` (or ``RiskTracker.replay`` with columns
built here), which makes the same calls in the core. Features are float64, NaN when missing;
times are ms since the Unix epoch, amounts minor units.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from pyorder._core import RISK_FEATURE_NAMES, RiskTracker
from pyorder.risk.events import OrderAttempt, PaymentAttempt

__all__ = [
    "FEATURE_COUNT",
    "FEATURE_NAMES",
    "OrderColumns",
    "PaymentColumns",
    "RiskTracker",
    "replay",
    "replay_payments",
]

FEATURE_NAMES: Final[tuple[str, ...]] = tuple(RISK_FEATURE_NAMES)
"""The features' names, in the catalogue's order (the columns of every feature matrix): the
core's own list (``core_rs/src/risk/features.rs``), written once."""

FEATURE_COUNT: Final = len(FEATURE_NAMES)

Int64s = npt.NDArray[np.int64]


def _int64(values: Sequence[int]) -> Int64s:
    return np.asarray(values, dtype=np.int64).reshape(len(values))


@dataclass(frozen=True, slots=True)
class OrderColumns:
    """Orders as columns, the replay's input: one item per order, in time order."""

    at_ms: Int64s
    buyer: Int64s
    account_created_ms: Int64s
    amount: Int64s
    sku: Int64s
    quantity: Int64s
    agent: Int64s
    """``AgentClass`` values."""
    sku_release_ms: Sequence[int | None]
    device: Sequence[str | None]
    ip: Sequence[str | None]
    ip_region: Sequence[str | None]
    email_hash: Sequence[str | None]
    phone_hash: Sequence[str | None]
    address: Sequence[str | None]
    ship_region: Sequence[str | None]

    @classmethod
    def of(cls, orders: Sequence[OrderAttempt]) -> "OrderColumns":
        """The columns of ``orders`` (in the order given)."""
        return cls(
            at_ms=_int64([o.at_ms for o in orders]),
            buyer=_int64([o.buyer for o in orders]),
            account_created_ms=_int64([o.account_created_ms for o in orders]),
            amount=_int64([o.amount for o in orders]),
            sku=_int64([o.sku for o in orders]),
            quantity=_int64([o.quantity for o in orders]),
            agent=_int64([int(o.agent) for o in orders]),
            sku_release_ms=[o.sku_release_ms for o in orders],
            device=[o.device for o in orders],
            ip=[o.ip for o in orders],
            ip_region=[o.ip_region for o in orders],
            email_hash=[o.email_hash for o in orders],
            phone_hash=[o.phone_hash for o in orders],
            address=[o.address for o in orders],
            ship_region=[o.ship_region for o in orders],
        )


@dataclass(frozen=True, slots=True)
class PaymentColumns:
    """Payment attempts as columns, the replay's input: one item per attempt, in time order."""

    at_ms: Int64s
    buyer: Int64s
    amount: Int64s
    authorised: npt.NDArray[np.bool_]
    order: Int64s
    """The index (into the replay's orders) of the order each attempt pays; -1 when unknown
    (``replay_payments`` needs every one)."""
    instrument: Sequence[str]
    device: Sequence[str | None]
    ip: Sequence[str | None]

    @classmethod
    def of(
        cls, payments: Sequence[PaymentAttempt], orders: Sequence[int] | None = None
    ) -> "PaymentColumns":
        """The columns of ``payments``; ``orders`` gives the order each pays (by index)."""
        paid = [-1] * len(payments) if orders is None else list(orders)
        if len(paid) != len(payments):
            raise ValueError(f"{len(paid)} orders paid for {len(payments)} payments")
        return cls(
            at_ms=_int64([p.at_ms for p in payments]),
            buyer=_int64([p.buyer for p in payments]),
            amount=_int64([p.amount for p in payments]),
            authorised=np.asarray([p.authorised for p in payments], dtype=np.bool_).reshape(
                len(payments)
            ),
            order=_int64(paid),
            instrument=[p.instrument for p in payments],
            device=[p.device for p in payments],
            ip=[p.ip for p in payments],
        )


def replay(
    orders: Sequence[OrderAttempt],
    payments: Sequence[PaymentAttempt] = (),
    *,
    tracker: RiskTracker | None = None,
) -> npt.NDArray[np.float64]:
    """Each order's features (an orders x 40 matrix, columns ``FEATURE_NAMES``) as a server
    that saw these events would have computed them: orders and payments each in time order,
    orders first at equal times. A new tracker unless one is given (it keeps the counts)."""
    tracker = RiskTracker() if tracker is None else tracker
    return tracker.replay(OrderColumns.of(orders), PaymentColumns.of(payments))


def replay_payments(
    orders: Sequence[OrderAttempt],
    payments: Sequence[PaymentAttempt],
    paid_orders: Sequence[int],
    *,
    tracker: RiskTracker | None = None,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """``replay``, and each payment's features (payments x 40): those of the order it pays
    (``paid_orders[i]``, an index into ``orders``) at the payment's time, with the payment's
    amount and its instrument's features (``docs/risk.md``)."""
    tracker = RiskTracker() if tracker is None else tracker
    return tracker.replay_payments(
        OrderColumns.of(orders), PaymentColumns.of(payments, paid_orders)
    )
