"""Request and response bodies of the returns' routes (``pyorder.server.api.returns``), as msgspec
Structs, and the converter from a return with its decisions, refund and tracking."""

from collections.abc import Sequence
from typing import Annotated

import msgspec
from msgspec import Meta

from pyorder.kernel.clock import iso_ms as iso
from pyorder.logistics.model import TrackingEvent
from pyorder.payments.model import Refund
from pyorder.returns.model import CostBearer, Decision, Return, ReturnStatus, Stage
from pyorder.server.api.logistics_bodies import TrackingEventOut, tracking_event_out
from pyorder.server.api.payments_bodies import RefundOut, refund_out
from pyorder.server.bodies import NO_NUL, Id, OrderId, Quantity, Text

# --- requests (unknown fields are an error) -------------------------------------------------


class ReturnLineIn(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    sku: Id
    quantity: Quantity


class ReturnIn(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """A no-reason return of units of one delivered parcel (the buyer of the order)."""

    lines: Annotated[list[ReturnLineIn], Meta(min_length=1, max_length=100)]
    reason: Annotated[str, Meta(max_length=500, pattern=NO_NUL)] = ""


class ReturnRejectIn(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    reason: Text


# --- responses -----------------------------------------------------------------------------


class ReturnLineOut(msgspec.Struct):
    sku: int
    quantity: int
    unit_price: int
    category: str


class RuleOut(msgspec.Struct):
    rule: str
    passed: bool
    observed: int | str
    """What the rule saw (an amount, a count, categories, a status)."""
    limit: int | str
    """The configured threshold ('' where the rule has none or it is switched off)."""


class DecisionOut(msgspec.Struct):
    stage: Stage
    lightning: bool
    """Every rule passed: at ``picked_up``, the refund was issued with no person involved."""
    failed: list[str]
    rules: list[RuleOut]
    decided_at: str


class ReturnOut(msgspec.Struct):
    """A return of one parcel's units of one merchant. That merchant sees ``buyer`` as the
    pseudonym its order views show."""

    id: int
    order_id: OrderId
    status: ReturnStatus
    buyer: str
    merchant: str
    warehouse: int
    reason: str
    lines: list[ReturnLineOut]
    amount: int
    """The refund the return is worth (its lines' price), minor units of ``currency``."""
    currency: str
    carrier: str
    tracking_number: str | None
    parcel_status: str
    shipping_cost: int
    """The carrier's first-weight cost of the parcel back, minor units."""
    cost_borne_by: CostBearer
    decisions: list[DecisionOut]
    refund: RefundOut | None
    reviewed_by: str
    review_reason: str
    error: str
    created_at: str
    updated_at: str
    picked_up_at: str | None
    refunded_at: str | None
    arrived_at: str | None
    """When the parcel back was delivered to the warehouse."""
    restocked_at: str | None
    events: list[TrackingEventOut]


class ReturnList(msgspec.Struct):
    returns: list[ReturnOut]
    next_cursor: str | None


# --- conversions ---------------------------------------------------------------------------


def return_out(
    r: Return,
    decisions: list[Decision],
    refund: Refund | None,
    events: Sequence[TrackingEvent] = (),
) -> ReturnOut:
    def at(ms: int) -> str | None:
        return iso(ms) if ms else None

    return ReturnOut(
        id=r.id,
        order_id=str(r.order_id),
        status=r.status,
        buyer=r.buyer,
        merchant=r.merchant,
        warehouse=r.warehouse,
        reason=r.reason,
        lines=[ReturnLineOut(li.sku, li.quantity, li.unit_price, li.category) for li in r.lines],
        amount=r.amount,
        currency=r.currency,
        carrier=r.carrier,
        tracking_number=r.tracking_number or None,
        parcel_status=r.parcel_status.value,
        shipping_cost=r.shipping_cost,
        cost_borne_by=r.cost_borne_by,
        decisions=[
            DecisionOut(
                stage=d.stage,
                lightning=d.lightning,
                failed=d.failed,
                rules=[RuleOut(x.rule, x.passed, x.observed, x.limit) for x in d.rules],
                decided_at=iso(d.decided_ms),
            )
            for d in decisions
        ],
        refund=refund_out(refund) if refund is not None else None,
        reviewed_by=r.reviewed_by,
        review_reason=r.review_reason,
        error=r.error,
        created_at=iso(r.created_ms),
        updated_at=iso(r.updated_ms),
        picked_up_at=at(r.picked_up_ms),
        refunded_at=at(r.refunded_ms),
        arrived_at=at(r.arrived_ms),
        restocked_at=at(r.restocked_ms),
        events=[
            tracking_event_out(e) for e in sorted(events, key=lambda e: (e.sequence, e.received_ms))
        ],
    )
