"""Request and response bodies of the review queue's routes (``pyorder.server.api.reviews``):
risk decisions, reviews and the queue, as msgspec Structs, and the converters from the records
(``pyorder.risk.records``)."""

from typing import Annotated, Literal

import msgspec

from pyorder.kernel.clock import iso_ms as iso
from pyorder.orders.model import Order
from pyorder.risk.records import Decision, FraudReport, FraudSource
from pyorder.risk.reports import MAX_NOTE
from pyorder.server.api.orders_bodies import OrderOut, order_out
from pyorder.server.bodies import OrderId

# --- requests (unknown fields are an error) -------------------------------------------------


class ReviewIn(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """A reviewer's decision on an order held for review."""

    outcome: Literal["approve", "reject"]
    """``approve``: it awaits payment, with a new payment deadline; ``reject``: it is
    cancelled and its units released."""


class FraudReportIn(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """A report that an order was fraudulent."""

    source: FraudSource
    """``chargeback`` (the card's issuer took the payment back as fraud) or
    ``merchant_report`` (found fraudulent without one: promo abuse, scalping, a taken-over
    account)."""
    note: Annotated[str, msgspec.Meta(max_length=MAX_NOTE)] = ""
    """Free text for whoever trains or audits, up to 500 characters."""


# --- responses -----------------------------------------------------------------------------


class FraudReportOut(msgspec.Struct):
    """An order's fraud report: the first one made (a later report is answered with it)."""

    order_id: OrderId
    merchant: str
    """The merchant of the order's first line."""
    source: FraudSource
    reporter: str
    """``<role>:<subject>`` of who reported it."""
    reported_at: str
    note: str


class RiskReasonOut(msgspec.Struct):
    feature: str
    """A feature of the catalogue (docs/risk.md)."""
    value: float | None
    """Its value for the order; null when missing."""
    contribution: float
    """Its part of the score's log-odds: positive pushes towards fraud."""


class RiskDecisionOut(msgspec.Struct):
    """Risk control's decision on an order at intake, with its review once there is one."""

    order_id: OrderId
    merchant: str
    """Whose rules applied and who reviews it: the merchant of the order's first line."""
    decided_at: str
    outcome: str
    """``allow``, ``review`` (held for a reviewer) or ``block`` (refused 422 ``risk_blocked``:
    no order has the id)."""
    three_ds: bool
    """3-D Secure is requested when the order is paid."""
    score: int | None
    """0-99; null when the order was not scored."""
    model: str | None
    """The model's version."""
    decided_by: str
    """A rule id (``rule_<n>``), ``list:<list>:<kind>``, ``score`` or ``default``."""
    fired: list[str]
    """The rules that fired."""
    reasons: list[RiskReasonOut]
    """Up to three, the strongest first."""
    features: dict[str, float] | None
    """For an admin, of an order held for review or among the allowed ones sampled for labels
    (``--risk-sample-allowed``): every feature it was decided on (by name, a
    missing one absent: docs/risk.md has the catalogue), what a reviewer weighs beyond the
    reasons; null for the other decisions, and for a merchant (the counts span every
    merchant's orders)."""
    review: str | None
    """``approved``, ``rejected``, ``expired`` (nobody decided within the review hold); null
    while the order awaits its review (or was never held for one)."""
    reviewer: str | None
    """``<role>:<subject>`` of the reviewer; ``system`` when the review hold expired."""
    reviewed_at: str | None


class ReviewOut(msgspec.Struct):
    """An order held for review (the caller's view of it: a merchant sees its part) and its
    decision."""

    order: OrderOut
    decision: RiskDecisionOut


class ReviewList(msgspec.Struct):
    reviews: list[ReviewOut]
    next_cursor: str | None
    """Pass as ``before`` for the next (older) page; null on the last page."""


# --- conversions ---------------------------------------------------------------------------


def decision_out(d: Decision, admin: bool) -> RiskDecisionOut:
    """``d`` as ``admin`` (or a merchant) may read it."""
    return RiskDecisionOut(
        order_id=str(d.id),
        merchant=d.merchant,
        decided_at=iso(d.at_ms),
        outcome=d.outcome,
        three_ds=d.three_ds,
        score=d.score,
        model=d.model,
        decided_by=d.decided_by,
        fired=list(d.fired),
        reasons=[RiskReasonOut(r.feature, r.value, r.contribution) for r in d.reasons],
        features=None if d.features is None or not admin else dict(d.features),
        review=None if d.review is None else d.review.value,
        reviewer=d.reviewer,
        reviewed_at=None if d.reviewed_ms is None else iso(d.reviewed_ms),
    )


def review_out(order: Order, d: Decision, admin: bool) -> ReviewOut:
    return ReviewOut(order_out(order), decision_out(d, admin))


def fraud_report_out(r: FraudReport) -> FraudReportOut:
    return FraudReportOut(
        order_id=str(r.order_id),
        merchant=r.merchant,
        source=r.source,
        reporter=r.reporter,
        reported_at=iso(r.reported_ms),
        note=r.note,
    )
