"""The returns capability's share of the unit of work (``pyorder.kernel.unit``): its staged
rows, its part of the snapshot, its row codec and its SQL for both stores.

Tables ``returns`` and ``return_decisions`` (schema version 6, ``pyorder.storage.migrations``).
A return's row and a lightning decision are written whole (upserts): the last one staged in a
batch wins. Money is minor units, times ms since the Unix epoch (UTC). The stores write this
part where the returns rows always were: after the logistics part, before the events part.
"""

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from pyorder.kernel.unit import PartKind, Row, Statement, Write
from pyorder.returns.model import (
    CostBearer,
    Decision,
    ParcelStatus,
    Return,
    ReturnLine,
    ReturnStatus,
    RuleResult,
    Stage,
)
from pyorder.storage.codec import upsert_sql

RETURN_COLUMNS = (
    "id, order_id, buyer, merchant, warehouse, status, reason, lines, amount, currency, carrier,"
    " idempotency_key, carrier_shipment_id, tracking_number, shipping_cost, cost_borne_by,"
    " parcel_status, last_sequence, refund_number, reviewed_by, review_reason, error,"
    " created_ms, updated_ms, picked_up_ms, refunded_ms, arrived_ms, restocked_ms"
)
DECISION_COLUMNS = "return_id, stage, lightning, rules, decided_ms"
RETURNS_SQL = f"SELECT {RETURN_COLUMNS} FROM returns ORDER BY id"
DECISIONS_SQL = f"SELECT {DECISION_COLUMNS} FROM return_decisions ORDER BY return_id, decided_ms"
LIST_RETURNS_SQL = (
    f"SELECT {RETURN_COLUMNS} FROM returns WHERE id > {{0}} AND ({{1}} = '' OR buyer = {{1}})"
    " AND ({2} = '' OR merchant = {2}) AND ({3} = '' OR status = {3}) ORDER BY id LIMIT {4}"
)
"""A page of returns by id after {0}: of buyer {1}, of merchant {2}, in status {3} (each ''
for any), at most {4} (``Store.list_returns``; cluster nodes hold their own orders' only)."""


def return_row(r: Return) -> tuple[Any, ...]:
    lines = [[li.sku, li.quantity, li.unit_price, li.category] for li in r.lines]
    return (
        r.id,
        r.order_id,
        r.buyer,
        r.merchant,
        r.warehouse,
        r.status.value,
        r.reason,
        orjson.dumps(lines).decode(),
        r.amount,
        r.currency,
        r.carrier,
        r.idempotency_key,
        r.carrier_shipment_id,
        r.tracking_number,
        r.shipping_cost,
        r.cost_borne_by.value,
        r.parcel_status.value,
        r.last_sequence,
        r.refund_number,
        r.reviewed_by,
        r.review_reason,
        r.error,
        r.created_ms,
        r.updated_ms,
        r.picked_up_ms,
        r.refunded_ms,
        r.arrived_ms,
        r.restocked_ms,
    )


def return_from_row(r: Row) -> Return:
    return Return(
        id=int(r[0]),
        order_id=int(r[1]),
        buyer=r[2],
        merchant=r[3],
        warehouse=int(r[4]),
        status=ReturnStatus(r[5]),
        reason=r[6],
        lines=tuple(
            ReturnLine(int(sku), int(q), int(price), str(cat))
            for sku, q, price, cat in orjson.loads(r[7])
        ),
        amount=int(r[8]),
        currency=r[9],
        carrier=r[10],
        idempotency_key=r[11],
        carrier_shipment_id=r[12],
        tracking_number=r[13],
        shipping_cost=int(r[14]),
        cost_borne_by=CostBearer(r[15]),
        parcel_status=ParcelStatus(r[16]),
        last_sequence=int(r[17]),
        refund_number=int(r[18]),
        reviewed_by=r[19],
        review_reason=r[20],
        error=r[21],
        created_ms=int(r[22]),
        updated_ms=int(r[23]),
        picked_up_ms=int(r[24]),
        refunded_ms=int(r[25]),
        arrived_ms=int(r[26]),
        restocked_ms=int(r[27]),
    )


def decision_row(d: Decision) -> tuple[Any, ...]:
    rules = [[x.rule, x.passed, x.observed, x.limit] for x in d.rules]
    return (
        d.return_id,
        d.stage.value,
        int(d.lightning),
        orjson.dumps(rules).decode(),
        d.decided_ms,
    )


def decision_from_row(r: Row) -> Decision:
    return Decision(
        return_id=int(r[0]),
        stage=Stage(r[1]),
        lightning=bool(r[2]),
        rules=tuple(
            RuleResult(str(rule), bool(passed), observed, limit)
            for rule, passed, observed, limit in orjson.loads(r[3])
        ),
        decided_ms=int(r[4]),
    )


_UPSERT_RETURN = Statement(
    upsert_sql("returns", RETURN_COLUMNS, "id", "?"),
    upsert_sql("returns", RETURN_COLUMNS, "id", "$"),
)
_UPSERT_DECISION = Statement(
    upsert_sql("return_decisions", DECISION_COLUMNS, "return_id, stage", "?"),
    upsert_sql("return_decisions", DECISION_COLUMNS, "return_id, stage", "$"),
)


@dataclass(slots=True)
class StagedReturns:
    """The returns rows of one batch."""

    returns: dict[int, Return] = field(default_factory=dict)
    """Return id -> the return's row as it is now."""
    decisions: dict[tuple[int, str], Decision] = field(default_factory=dict)
    """(return id, stage) -> a lightning decision."""

    def __len__(self) -> int:
        return len(self.returns) + len(self.decisions)

    def writes(self) -> Iterator[Write]:
        """Returns, then their decisions (a decision names its return)."""
        if self.returns:
            yield _UPSERT_RETURN, list(map(return_row, self.returns.values()))
        if self.decisions:
            yield _UPSERT_DECISION, list(map(decision_row, self.decisions.values()))


@dataclass(frozen=True, slots=True)
class StoredReturns:
    """What a restart needs of returns: every return, and every decision, by return."""

    returns: list[Return] = field(default_factory=list)
    """By id."""
    decisions: list[Decision] = field(default_factory=list)
    """By return id, then by when decided."""
    top_id: int = 0
    """The largest return id in the store, also when ``returns`` holds some orders' only (new
    ids are above it)."""


def _stored(rows: Sequence[Sequence[Row]]) -> StoredReturns:
    returns, decisions = rows
    found = [return_from_row(r) for r in returns]
    return StoredReturns(
        found, [decision_from_row(r) for r in decisions], max((r.id for r in found), default=0)
    )


def _of_orders(stored: StoredReturns, keep: Callable[[int], bool]) -> StoredReturns:
    kept = [r for r in stored.returns if keep(r.order_id)]
    ids = {r.id for r in kept}
    return StoredReturns(kept, [d for d in stored.decisions if d.return_id in ids], stored.top_id)


RETURNS = PartKind("returns", StagedReturns, (RETURNS_SQL, DECISIONS_SQL), _stored, _of_orders)
"""The returns part: registered in ``pyorder.parts``."""
